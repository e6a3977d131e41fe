/* parity.c: shared helpers of the model parity tests (see parity.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>
#include "derf/io.h"
#include "derf/train.h"
#include "parity.h"

const char *parity_python(void) {
    const char *py = getenv("DERF_TORCH_PYTHON");
    return py && *py ? py : "/usr/bin/python3";
}

int parity_have_torch(void) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "%s -c 'import torch, numpy' >/dev/null 2>&1", parity_python());
    return access(parity_python(), X_OK) == 0 && system(cmd) == 0;
}

int parity_write_slab(const char *path, const derf_params *p, const float *slab, const derf_st_meta *meta, int nmeta) {
    char err[512];
    derf_ckpt_slab s = {"", slab};
    if (derf_ckpt_save(path, p, &s, 1, meta, nmeta, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    return 0;
}

int parity_write_model(const char *dir, const derf_params *p, char keys[][32], char vals[][128], int nk) {
    derf_st_meta meta[64];
    char path[4200];
    if (nk < 0 || nk > 64) {
        fprintf(stderr, "parity_write_model: %d metadata entries\n", nk);
        return -1;
    }
    for (int i = 0; i < nk; i++) meta[i] = (derf_st_meta){keys[i], vals[i]};
    snprintf(path, sizeof path, "%s/params.safetensors", dir);
    if (parity_write_slab(path, p, p->params, meta, nk)) return -1;
    snprintf(path, sizeof path, "%s/grads.safetensors", dir);
    return parity_write_slab(path, p, p->grads, NULL, 0);
}

int parity_write_seq_case(const char *dir, const derf_params *p, char keys[][32], char vals[][128], int nk,
                          const int32_t *tok, const int32_t *tgt, const float *logits, float loss, int B, int T, int V, int ncls) {
    char path[4200], err[512];
    if (parity_write_model(dir, p, keys, vals, nk)) return -1;
    const int nt = ncls ? B : B * T;
    float *tokf = malloc(sizeof(float) * (size_t)B * T), *tgtf = malloc(sizeof(float) * (size_t)nt);
    for (int i = 0; i < B * T; i++) tokf[i] = (float)tok[i];
    for (int i = 0; i < nt; i++) tgtf[i] = (float)tgt[i];
    int64_t sh_bt[2] = {B, T}, sh_b[1] = {B}, sh_log[3] = {B, T, V}, sh_cls[2] = {B, ncls}, sh_1[1] = {1};
    derf_st_tensor_in bt[4] = {{"tokens", 2, sh_bt, tokf}, {"targets", ncls ? 1 : 2, ncls ? sh_b : sh_bt, tgtf},
                               {"logits", ncls ? 2 : 3, ncls ? sh_cls : sh_log, logits}, {"loss", 1, sh_1, &loss}};
    snprintf(path, sizeof path, "%s/batch.safetensors", dir);
    int rc = derf_safetensors_write(path, bt, 4, NULL, 0, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    free(tokf);
    free(tgtf);
    return rc;
}

const char *parity_case_dir(const char *root, int i) {
    static char dir[512];
    char err[DERF_ERRLEN];
    snprintf(dir, sizeof dir, "%s/case%d", root, i);
    if (derf_io_mkdirs(dir, err, sizeof err)) fail_msg("%s", err);
    return dir;
}

int parity_run(const char *script, const char *root, int ncases) {
    char cmd[8192], show[700];
    int n = snprintf(cmd, sizeof cmd, "%s %s", parity_python(), script);
    for (int i = 0; i < ncases; i++) n += snprintf(cmd + n, sizeof cmd - (size_t)n, " %s/case%d", root, i);
    snprintf(cmd + n, sizeof cmd - (size_t)n, " > %s/parity.log 2>&1", root);
    int rc = system(cmd);
    snprintf(show, sizeof show, rc ? "grep -v '^ok ' %s/parity.log" : "tail -n 1 %s/parity.log", root);
    fflush(stdout);
    if (system(show)) {}
    if (rc) fprintf(stderr, "%s failed (status %d); inputs and parity.log kept in %s\n", script, rc, root);
    else if (getenv("DERF_KEEP_PARITY")) fprintf(stderr, "parity inputs and log kept in %s\n", root);
    else {
        snprintf(show, sizeof show, "rm -rf %s", root);
        if (system(show)) {}
    }
    return rc;
}

void parity_require_torch(void) {
    if (parity_have_torch()) return;
    const char *ci = getenv("CI");
    if (ci && strcmp(ci, "true") == 0) fail_msg("%s cannot import torch (CI=true: required)", parity_python());
    print_message("SKIP: %s cannot import torch and numpy\n", parity_python());
    skip();
}
