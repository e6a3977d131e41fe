/* norms_bf16.cu: the norm kernels (norms.cuh) for bfloat16 activations. */
#include "cuda/norms.cuh"
DERF_NORMS_INSTANTIATE(bf16, bf16)
