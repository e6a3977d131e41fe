/* simd.h: AVX-512 helpers shared by the norm kernels (pointwise.c, rownorm.c): the lane mask of a
 * row's 16-channel tail, and software prefetch of the rows ahead.
 *
 * Why the prefetch: at 8192 x 768 the tensors live beyond L2 (in L3 or DRAM). A kernel that reads
 * x and dy and read-modify-writes dx streams three or four arrays at once, and the hardware
 * prefetchers of the development machine (a 2-vCPU Xeon VM) do not keep up: the Derf backward ran at
 * 1.1 ns per element on one thread against 0.57 ns in cache. Touching each stream DERF_PF_AHEAD
 * floats ahead (one prefetch per 64-byte line, i.e. per 16-lane step) brought it to 0.66 ns
 * (docs/performance.md). Prefetches past the end of an array are harmless (no fault). */
#ifndef DERF_NORMS_SIMD_H
#define DERF_NORMS_SIMD_H
#if defined(__AVX512F__)
#include <immintrin.h>

/* lanes [0, left) of a 16-lane step, all 16 when left >= 16 */
static inline __mmask16 derf_lane_mask(int left) {
    return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
}

/* prefetch distance in floats (4 KB: about one 768-wide row) */
#define DERF_PF_AHEAD 1024
/* for reading, and for an array that is about to be written (prefetchw: the line arrives owned) */
#define DERF_PF_R(p) _mm_prefetch((const char *)(p) + 4 * DERF_PF_AHEAD, _MM_HINT_T0)
#define DERF_PF_W(p) _mm_prefetch((const char *)(p) + 4 * DERF_PF_AHEAD, _MM_HINT_ET0)
#endif
#endif
