/* patch_embed.c: ViT patch embedding, a convolution with kernel = stride = P (timm
 * patch_embed.proj), as im2col into a scratch buffer followed by the linear op (sgemm). */
#include "derf/ops.h"

/* img[B,Cin,H,W] -> cols[B*NP, Cin*P*P] (row = patch (py,px) row-major, col = (ci,ky,kx))
 * -> out[B*NP, D] = cols @ w[D,Cin*P*P]^T + b[D] */
void derf_patch_embed_forward(float *out, float *cols, const float *img, const float *w, const float *b,
                              int B, int Cin, int H, int W, int P, int D) {
    const int GH = H / P, GW = W / P, NP = GH * GW, K = Cin * P * P;
    #pragma omp parallel for collapse(2) schedule(static)
    for (int bb = 0; bb < B; bb++)
        for (int pi = 0; pi < NP; pi++) {
            const int py = pi / GW, px = pi % GW;
            float *row = cols + ((size_t)bb * NP + pi) * K;
            for (int ci = 0; ci < Cin; ci++)
                for (int ky = 0; ky < P; ky++) {
                    const float *src = img + (((size_t)bb * Cin + ci) * H + (size_t)py * P + ky) * W
                                     + (size_t)px * P;
                    float *dst = row + ((size_t)ci * P + ky) * P;
                    for (int kx = 0; kx < P; kx++) dst[kx] = src[kx];
                }
        }
    derf_linear_forward(out, cols, w, b, B * NP, K, D);
}

/* dout[B,NP,D], cols from forward -> dw[D,Cin*P*P] += dout^T cols; db[D] += sum dout */
void derf_patch_embed_backward(float *dw, float *db, const float *dout, const float *cols,
                               int B, int Cin, int H, int W, int P, int D) {
    const int NP = (H / P) * (W / P), K = Cin * P * P;
    derf_linear_backward(NULL, dw, db, dout, cols, NULL, B * NP, K, D);
}
