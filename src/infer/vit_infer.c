/* vit_infer.c: forward-only ViT (derf/infer.h): the weights in a named table (timm names, as the
 * training model's checkpoints), one scratch arena for the largest batch reused by every layer, the
 * same CPU ops as src/models/vit.c, and folding of every norm's gamma/beta into the linear layer it
 * feeds (norm1 -> attn.qkv, norm2 -> mlp.fc1, fc_norm / norm -> head).
 *
 *   x = [cls ; patch_embed(img)] + pos
 *   per block: x += proj(Attn(qkv(norm1(x))));  x += fc2(GELU(fc1(norm2(x))))
 *   logits = head(fc_norm(mean of patch tokens))   (pool avg)  or head(norm(token 0))   (pool cls) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "derf/infer.h"
#include "derf/io.h"
#include "infer/models.h"

static const char *st_get(void *ctx, const char *key) { return derf_safetensors_meta(ctx, key); }

static void register_weights(derf_infer_vit *m) {
    const derf_vit_config *c = &m->cfg;
    const int D = c->dim, H = c->mlp_ratio * D, P = c->patch, V = c->classes;
    iw_table *t = &m->w;
    char n[128];
    m->cls = iw_add(t, "cls_token", 3, 1, 1, D, 0, 0);
    m->pos = iw_add(t, "pos_embed", 3, 1, m->T, D, 0, 0);
    m->pe_w = iw_add(t, "patch_embed.proj.weight", 4, D, c->chans, P, P, 0);
    m->pe_b = iw_add(t, "patch_embed.proj.bias", 1, D, 0, 0, 0, 0);
    for (int l = 0; l < c->depth; l++) {
        vblk *b = &m->blk[l];
#define NM(s) (snprintf(n, sizeof n, "blocks.%d.%s", l, s), n)
        b->n1 = iw_add_norm(t, &c->norm, D, NM("norm1"));
        b->qkv_w = iw_add(t, NM("attn.qkv.weight"), 2, 3 * D, D, 0, 0, 0);
        b->qkv_b = iw_add(t, NM("attn.qkv.bias"), 1, 3 * D, 0, 0, 0, 0);
        b->proj_w = iw_add(t, NM("attn.proj.weight"), 2, D, D, 0, 0, 0);
        b->proj_b = iw_add(t, NM("attn.proj.bias"), 1, D, 0, 0, 0, 0);
        b->n2 = iw_add_norm(t, &c->norm, D, NM("norm2"));
        b->fc1_w = iw_add(t, NM("mlp.fc1.weight"), 2, H, D, 0, 0, 0);
        b->fc1_b = iw_add(t, NM("mlp.fc1.bias"), 1, H, 0, 0, 0, 0);
        b->fc2_w = iw_add(t, NM("mlp.fc2.weight"), 2, D, H, 0, 0, 0);
        b->fc2_b = iw_add(t, NM("mlp.fc2.bias"), 1, D, 0, 0, 0, 0);
#undef NM
    }
    m->fnorm = iw_add_norm(t, &c->norm, D, c->pool == DERF_POOL_AVG ? "fc_norm" : "norm");
    m->head_w = iw_add(t, "head.weight", 2, V, D, 0, 0, 0);
    m->head_b = iw_add(t, "head.bias", 1, V, 0, 0, 0, 0);
}

/* The scratch arena for max_batch: one buffer per role, reused by every layer. */
static int carve(derf_infer_vit *m) {
    const derf_vit_config *c = &m->cfg;
    const size_t B = (size_t)m->max_batch, T = (size_t)m->T, D = (size_t)c->dim, H = (size_t)c->mlp_ratio * D;
    const size_t NP = T - 1, K = (size_t)c->chans * c->patch * c->patch, NH = (size_t)c->heads;
    const size_t sizes[13] = {B * NP * K, B * NP * D, B * T * D, B * T * D, 2 * B * T, 3 * B * T * D,
                              B * NH * T * T, B * T * D, B * T * D, B * T * H, B * D, B * D, B * (size_t)c->classes};
    float **dst[13] = {&m->cols, &m->pe, &m->x, &m->h, &m->st, &m->qkv, &m->att, &m->atty, &m->br, &m->fc,
                       &m->pooled, &m->fn, &m->logits};
    size_t total = 0;
    for (int i = 0; i < 13; i++) total += (sizes[i] + 15) & ~(size_t)15;
    m->arena = aligned_alloc(64, total * sizeof(float));
    if (!m->arena) return -1;
    m->arena_floats = total;
    size_t cur = 0;
    for (int i = 0; i < 13; i++) {
        *dst[i] = m->arena + cur;
        cur += (sizes[i] + 15) & ~(size_t)15;
    }
    return 0;
}

derf_infer_vit *derf_infer_vit_load(const char *path, int max_batch, char *err, size_t errlen) {
    if (max_batch < 1) { derf_io_errf(err, errlen, "inference batch must be at least 1, not %d", max_batch); return NULL; }
    derf_safetensors st;
    if (derf_safetensors_read(&st, path, (size_t)1 << 36, err, errlen)) return NULL;
    derf_infer_vit *m = calloc(1, sizeof *m);
    char e[DERF_ERRLEN];
    if (!m) { derf_safetensors_free(&st); derf_io_errf(err, errlen, "out of memory"); return NULL; }
    if (derf_vit_config_from_meta(&m->cfg, st_get, &st, e, sizeof e)) {
        derf_io_errf(err, errlen, "%s: %s", path, e);
        goto fail;
    }
    if (iw_folded_meta(&st, &m->cfg.norm, &m->folded, &m->trained, path, err, errlen)) goto fail;
    m->max_batch = max_batch;
    m->T = 1 + (m->cfg.img / m->cfg.patch) * (m->cfg.img / m->cfg.patch);
    m->blk = calloc((size_t)m->cfg.depth, sizeof *m->blk);
    if (!m->blk) { derf_io_errf(err, errlen, "out of memory"); goto fail; }
    register_weights(m);
    if (iw_load(&m->w, &st, path, err, errlen)) goto fail;
    if (carve(m)) { derf_io_errf(err, errlen, "out of memory for a batch of %d", max_batch); goto fail; }
    derf_safetensors_free(&st);
    return m;
fail:
    derf_safetensors_free(&st);
    derf_infer_vit_free(m);
    return NULL;
}

const derf_vit_config *derf_infer_vit_config(const derf_infer_vit *m) { return &m->cfg; }
int derf_infer_vit_folded(const derf_infer_vit *m) { return m->folded; }
size_t derf_infer_vit_bytes(const derf_infer_vit *m) { return m->w.bytes + m->arena_floats * sizeof(float); }

void derf_infer_vit_fold(derf_infer_vit *m) {
    if (m->folded) return;
    const derf_vit_config *c = &m->cfg;
    const int D = c->dim, H = c->mlp_ratio * D;
    char n[128];
    for (int l = 0; l < c->depth; l++) {
        vblk *b = &m->blk[l];
        int oc1 = 3 * D, oc2 = H;
        snprintf(n, sizeof n, "blocks.%d.norm1", l);
        iw_fold_norm(&m->w, &c->norm, D, b->n1, n, &b->qkv_w, &b->qkv_b, &oc1, 1);
        snprintf(n, sizeof n, "blocks.%d.norm2", l);
        iw_fold_norm(&m->w, &c->norm, D, b->n2, n, &b->fc1_w, &b->fc1_b, &oc2, 1);
    }
    int V = c->classes;
    iw_fold_norm(&m->w, &c->norm, D, m->fnorm, c->pool == DERF_POOL_AVG ? "fc_norm" : "norm",
                 &m->head_w, &m->head_b, &V, 1);
    m->cfg.norm = derf_norm_folded(&c->norm);   /* alpha and s stay at the front of each block */
    m->folded = 1;
}

const float *derf_infer_vit_forward(derf_infer_vit *m, const float *images, int B) {
    const derf_vit_config *c = &m->cfg;
    const derf_norm_spec *ns = &c->norm;
    const int T = m->T, NP = T - 1, D = c->dim, H = c->mlp_ratio * D, NH = c->heads, V = c->classes, BT = B * T;
    if (B < 1 || B > m->max_batch) {
        fprintf(stderr, "derf: ViT inference with batch %d, loaded for 1..%d\n", B, m->max_batch);
        abort();
    }
    const size_t btd = (size_t)BT * D;
    derf_patch_embed_forward(m->pe, m->cols, images, m->pe_w, m->pe_b, B, c->chans, c->img, c->img, c->patch, D);
    for (int b = 0; b < B; b++) {
        memcpy(m->x + (size_t)b * T * D, m->cls, (size_t)D * sizeof(float));
        memcpy(m->x + ((size_t)b * T + 1) * D, m->pe + (size_t)b * NP * D, (size_t)NP * D * sizeof(float));
    }
    derf_add_pos_forward(m->x, m->pos, B, T, D);
    for (int l = 0; l < c->depth; l++) {
        const vblk *w = &m->blk[l];
        derf_norm_forward(ns, m->h, m->st, m->x, w->n1, BT, D);
        iw_linear(m->qkv, m->h, w->qkv_w, w->qkv_b, BT, D, 3 * D);
        derf_attention_forward(m->atty, m->att, m->qkv, B, T, D, NH, 0);
        iw_linear(m->br, m->atty, w->proj_w, w->proj_b, BT, D, D);
        derf_residual_forward(m->x, m->x, m->br, btd);
        derf_norm_forward(ns, m->h, m->st, m->x, w->n2, BT, D);
        iw_linear(m->fc, m->h, w->fc1_w, w->fc1_b, BT, D, H);
        derf_gelu_forward(m->fc, m->fc, (size_t)BT * H, c->gelu);
        iw_linear(m->br, m->fc, w->fc2_w, w->fc2_b, BT, H, D);
        derf_residual_forward(m->x, m->x, m->br, btd);
    }
    if (c->pool == DERF_POOL_AVG) {
        derf_mean_pool_forward(m->pooled, m->x, B, T, 1, D);
    } else {
        for (int b = 0; b < B; b++) memcpy(m->pooled + (size_t)b * D, m->x + (size_t)b * T * D, (size_t)D * sizeof(float));
    }
    derf_norm_forward(ns, m->fn, m->st, m->pooled, m->fnorm, B, D);
    iw_linear(m->logits, m->fn, m->head_w, m->head_b, B, D, V);
    return m->logits;
}

int derf_infer_vit_save(const derf_infer_vit *m, const char *path, char *err, size_t errlen) {
    char keys[48][32], vals[48][128];
    const int n = derf_vit_config_to_meta(&m->cfg, keys, vals, 48);
    return iw_write_model(&m->w, path, keys, vals, n, m->folded, &m->trained, err, errlen);
}

void derf_infer_vit_free(derf_infer_vit *m) {
    if (!m) return;
    iw_free(&m->w);
    free(m->blk);
    free(m->arena);
    free(m);
}

const char *derf_infer_model_kind(const char *path, char *buf, size_t buflen, char *err, size_t errlen) {
    derf_safetensors st;
    if (derf_safetensors_read(&st, path, (size_t)1 << 36, err, errlen)) return NULL;
    const char *k = derf_safetensors_meta(&st, "model");
    if (k && !strcmp(k, "dit")) {
        derf_io_errf(err, errlen, "%s is a DiT: its norms have no gamma/beta to fold (adaLN-Zero scales and shifts them per "
                     "sample from the timestep and class), so there is nothing to export; derf sample-dit runs it as it is", path);
        derf_safetensors_free(&st);
        return NULL;
    }
    if (!k || (strcmp(k, "vit") && strcmp(k, "gpt2"))) {
        derf_io_errf(err, errlen, "%s: model '%s' in the metadata; only ViT (derf train) and GPT-2 (derf train-lm) "
                     "checkpoints run on the inference path", path, k ? k : "(none)");
        derf_safetensors_free(&st);
        return NULL;
    }
    snprintf(buf, buflen, "%s", k);
    derf_safetensors_free(&st);
    return buf;
}
