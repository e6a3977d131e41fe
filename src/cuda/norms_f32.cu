/* norms_f32.cu: the norm kernels (norms.cuh) for float32 activations. */
#include "cuda/norms.cuh"
DERF_NORMS_INSTANTIATE(float, f32)
