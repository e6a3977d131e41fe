/* parity.h: what the model parity tests (test_vit, test_gpt2) share: the Python that has torch,
 * writing one slab of a parameter table as safetensors (derf_ckpt_save), and running a tools/
 * parity script over case folders ROOT/case0..caseN-1 with its report in ROOT/parity.log. */
#ifndef DERF_TEST_PARITY_H
#define DERF_TEST_PARITY_H

#include "derf/optim.h"
#include "derf/safetensors.h"

const char *parity_python(void);   /* $DERF_TORCH_PYTHON or /usr/bin/python3 */
int parity_have_torch(void);       /* 1 if it imports torch and numpy */
/* 0, or -1 with the error printed */
int parity_write_slab(const char *path, const derf_params *p, const float *slab, const derf_st_meta *meta, int nmeta);
/* Runs `python script ROOT/case0 ...`; prints the failing lines (or the summary line on success).
 * Removes ROOT on success unless DERF_KEEP_PARITY is set. Returns the script's exit status. */
int parity_run(const char *script, const char *root, int ncases);
/* Writes DIR/params.safetensors (with the model config as metadata: keys/vals as *_config_to_meta makes them)
 * and DIR/grads.safetensors. 0, or -1 with the error printed. */
int parity_write_model(const char *dir, const derf_params *p, char keys[][32], char vals[][128], int nk);
/* Skips the calling cmocka test when the parity Python has no torch; fails it instead when CI=true. */
void parity_require_torch(void);

#endif
