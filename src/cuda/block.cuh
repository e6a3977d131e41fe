/* block.cuh: what the GPU models (GPT-2: gpt2.cu, ViT: vit.cu) share: the master weights (fp32
 * params, grads, AdamW m and v in an aligned copy of the host model's derf_params layout (the host's
 * slabs, the checkpoint format, stay packed; upload / download move between the two), and a copy of the weights in the
 * activation dtype for the matrix products), and the pre-norm Transformer block
 *     xmid = x + keep1 * proj(Attn(qkv(norm1(x))));   xout = xmid + keep2 * fc2(GELU(fc1(norm2(xmid))))
 * (keep: per-sample drop-path scales on the device, or NULL for none), its backward, and the store of
 * the activations every block keeps for the backward. */
#ifndef DERF_CUDA_BLOCK_CUH
#define DERF_CUDA_BLOCK_CUH
#include "cuda/common.cuh"

struct cu_master {
    const derf_params *host;   /* the host model's tensor table and slabs (the checkpoint format) */
    derf_params lay;           /* the device slabs' layout: host's tensors, each at a multiple of 64
                                  floats (256-byte fp32 / 128-byte bf16 alignment for cuBLASLt), 0 between */
    derf_dtype dt;
    size_t es;                 /* bytes per activation element */
    float *params, *grads, *m, *v;
    char *wdt;                 /* the weights in dt (== params when dt is fp32) */
};
void derf_cu_master_alloc(cu_master *w, const derf_params *host, derf_dtype dt);
void derf_cu_master_free(cu_master *w);
void derf_cu_master_upload(cu_master *w);    /* host params, m, v -> device (and the dt copy) */
void derf_cu_master_download(cu_master *w);  /* device params, grads, m, v -> host */
void derf_cu_master_put(const cu_master *w, float *dev, const float *host_slab); /* any slab (EMA) -> device */
void derf_cu_master_get(const cu_master *w, float *host_slab, const float *dev); /* and back */
void derf_cu_master_refresh(cu_master *w);   /* the dt copy from params (after AdamW, or a swap of params) */
const void *derf_cu_master_wd(const cu_master *w, const float *p); /* the dt copy of weight p (NULL: NULL) */
void derf_cu_master_zero_grad(cu_master *w);
float derf_cu_master_clip(cu_master *w, float max_norm);
void derf_cu_master_adamw(cu_master *w, const derf_adamw_cfg *cfg, int step);

struct cu_block_shape {
    int B, T, C, H, NH, causal;
    derf_gelu_kind gelu;
    derf_dtype dt;
};

/* one block's parameters: norms and biases fp32 (NULL: absent), matrices in the activation dtype */
struct cu_block_w {
    const float *n1, *n2, *qkv_b, *proj_b, *fc1_b, *fc2_b;
    const void *qkv_w, *proj_w, *fc1_w, *fc2_w;
};
/* its fp32 gradients (NULL: absent) */
struct cu_block_g {
    float *n1, *n2, *qkv_w, *qkv_b, *proj_w, *proj_b, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
};
/* one block's activations (x: its input, xout: its output) */
struct cu_block_acts {
    char *x, *xmid, *xout, *ln1, *qkv, *att, *atty, *ln2, *fch, *fcg;
    float *st1, *st2;
};

/* The activations of L blocks at the maximum shape (B x T tokens), per block l at [l * slice], and the
 * backward's scratch (shared by all blocks). */
struct cu_block_store {
    size_t es, btc, bth, batt, bst;
    char *res, *xmid, *ln1, *qkv, *att, *atty, *ln2, *fch, *fcg; /* res: L + 1 slices */
    float *st1, *st2;
    char *branch, *dres, *dln, *dqkv, *datty, *dfcg, *dfch;
};
void derf_cu_block_store_alloc(cu_block_store *s, const derf_norm_spec *ns, int L, size_t B, size_t T, size_t C,
                               size_t H, size_t NH, derf_dtype dt);
void derf_cu_block_store_free(cu_block_store *s);
cu_block_acts derf_cu_block_layer(const cu_block_store *s, int l);
char *derf_cu_block_res(const cu_block_store *s, int l); /* the residual stream entering block l */

/* a.x -> a.xout; s->branch is the branch scratch */
void derf_cu_block_forward(const derf_norm_spec *ns, const cu_block_shape &sh, const cu_block_w &w,
                           const cu_block_acts &a, cu_block_store *s, const float *keep1, const float *keep2);
/* s->dres: dL/dxout in, dL/dx out; g += the block's parameter gradients */
void derf_cu_block_backward(const derf_norm_spec *ns, const cu_block_shape &sh, const cu_block_w &w,
                            const cu_block_g &g, const cu_block_acts &a, cu_block_store *s, const float *keep1,
                            const float *keep2);
#endif
