/* parity.h: what the model parity tests (test_vit, test_gpt2, test_dit, test_wav2vec, test_hyena, test_caduceus) share: the Python that has torch,
 * writing one slab of a parameter table as safetensors (derf_ckpt_save), and running a tools/
 * parity script over case folders ROOT/case0..caseN-1 with its report in ROOT/parity.log. */
#ifndef DERF_TEST_PARITY_H
#define DERF_TEST_PARITY_H

#include "derf/optim.h"
#include <stdint.h>
#include "derf/safetensors.h"

const char *parity_python(void);   /* $DERF_TORCH_PYTHON or /usr/bin/python3 */
int parity_have_torch(void);       /* 1 if it imports torch and numpy */
/* 0, or -1 with the error printed */
int parity_write_slab(const char *path, const derf_params *p, const float *slab, const derf_st_meta *meta, int nmeta);
/* Writes DIR/params.safetensors (the params slab, with the nk config key/value pairs as __metadata__)
 * and DIR/grads.safetensors (the grads slab). 0, or -1 with the error printed. */
int parity_write_model(const char *dir, const derf_params *p, char keys[][32], char vals[][128], int nk);
/* A sequence-model case (test_hyena, test_caduceus): params.safetensors (params with the model config as metadata,
 * nk key/value pairs), grads.safetensors, and batch.safetensors holding tokens [B,T], targets ([B,T], or [B] when
 * ncls > 0), logits ([B,T,V] or [B,ncls]) and loss [1] (ids as floats). 0, or -1 with the error printed. */
int parity_write_seq_case(const char *dir, const derf_params *p, char keys[][32], char vals[][128], int nk,
                          const int32_t *tok, const int32_t *tgt, const float *logits, float loss, int B, int T, int V, int ncls);
/* Creates ROOT/case<i> (failing the calling test if it cannot) and returns its path (a static buffer, valid until
 * the next call). */
const char *parity_case_dir(const char *root, int i);
/* Runs `python script ROOT/case0 ...`; prints the failing lines (or the summary line on success).
 * Removes ROOT on success unless DERF_KEEP_PARITY is set. Returns the script's exit status. */
int parity_run(const char *script, const char *root, int ncases);
/* Skips the calling cmocka test when the parity Python has no torch; fails it instead when CI=true. */
void parity_require_torch(void);

#endif
