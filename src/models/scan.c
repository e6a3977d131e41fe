/* scan.c: Mamba's selective scan and its exact adjoint (see scan.h): plain per-channel loops (the _ref forms,
 * the fallback without AVX-512) and the AVX-512 forms with 16 channels per vector.
 *
 * Vector form, one sequence b and a block of 16 channels [e0, e0+16) at a time: the states s[n] are vectors
 * over the block's channels, so a step is, per state n, one exp (derf_exp16s), one fma for s and one for y, with
 * B_t[n] and C_t[n] broadcast: y needs no sum across lanes. The forward keeps the states before every 64th step
 * (the checkpoints); the backward goes over 64-step segments from the last: it recomputes the segment's states
 * and factors exp(delta A) from its checkpoint into a small per-thread buffer that stays in cache (the whole
 * sequence's, 2 MB per block at T = 1024, did not: a third of the time went to memory), then runs the adjoint
 * backwards over the segment; dB_t[n] and
 * dC_t[n] are sums over channels, i.e. across the lanes: 16 of them at once by a transposing reduction. The
 * dA_log sums run in float for 32 steps and then go into double accumulators (the _ref forms sum each term in
 * double). Lanes past E in the last block are loaded as 0 and stay 0. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "models/scan.h"
#include "norms/fastmath.h"

/* ------------------------------------------------------------------------------- reference forms */

void derf_scan_forward_ref(float *y, const float *x, const float *delta, const float *dbc, int Sd, int R, const float *A_log,
                           const float *D, int NB, int T, int E, int N) {
#pragma omp parallel
    {
        float *s = malloc(sizeof(float) * (size_t)N), *A = malloc(sizeof(float) * (size_t)N);
#pragma omp for schedule(static)
        for (int be = 0; be < NB * E; be++) {
            const int b = be / E, e = be % E;
            for (int n = 0; n < N; n++) { s[n] = 0; A[n] = -expf(A_log[(size_t)e * N + n]); }
            for (int t = 0; t < T; t++) {
                const size_t r = (size_t)b * T + t;
                const float dt = delta[r * E + e], xv = x[r * E + e];
                const float *Bt = dbc + r * Sd + R, *Ct = Bt + N;
                float acc = 0;
                for (int n = 0; n < N; n++) {
                    s[n] = derf_fast_expf(dt * A[n]) * s[n] + dt * Bt[n] * xv;
                    acc += Ct[n] * s[n];
                }
                y[r * E + e] = acc + D[e] * xv;
            }
        }
        free(s);
        free(A);
    }
}

/* parallel over b (each b owns its rows of ddbc) */
void derf_scan_backward_ref(float *dx, float *ddelta, float *ddbc, float *dA_log, float *dD, const float *dy, const float *x,
                            const float *delta, const float *dbc, int Sd, int R, const float *A_log, const float *D, int NB,
                            int T, int E, int N) {
#pragma omp parallel
    {
        float *S = malloc(sizeof(float) * (size_t)(T + 1) * N), *G = malloc(sizeof(float) * (size_t)N),
              *A = malloc(sizeof(float) * (size_t)N);
        double *dAl = calloc((size_t)E * N, sizeof(double)), *dDl = calloc((size_t)E, sizeof(double));
#pragma omp for schedule(static)
        for (int b = 0; b < NB; b++)
            for (int e = 0; e < E; e++) {
                for (int n = 0; n < N; n++) { S[n] = 0; A[n] = -expf(A_log[(size_t)e * N + n]); G[n] = 0; }
                for (int t = 0; t < T; t++) { /* S[t+1] = s_t, S[0] = s_{-1} = 0 */
                    const size_t r = (size_t)b * T + t;
                    const float dt = delta[r * E + e], xv = x[r * E + e];
                    const float *Bt = dbc + r * Sd + R;
                    for (int n = 0; n < N; n++)
                        S[(size_t)(t + 1) * N + n] = derf_fast_expf(dt * A[n]) * S[(size_t)t * N + n] + dt * Bt[n] * xv;
                }
                for (int t = T - 1; t >= 0; t--) {
                    const size_t r = (size_t)b * T + t;
                    const float dt = delta[r * E + e], xv = x[r * E + e], g = dy[r * E + e];
                    const float *Bt = dbc + r * Sd + R, *Ct = Bt + N, *st = S + (size_t)(t + 1) * N, *sp = S + (size_t)t * N;
                    float *dBt = ddbc + r * Sd + R, *dCt = dBt + N;
                    float ddt = 0, dxv = D[e] * g;
                    dDl[e] += (double)g * xv;
                    for (int n = 0; n < N; n++) {
                        dCt[n] += g * st[n];
                        G[n] += Ct[n] * g;                         /* dL/ds_t */
                        const float ab = derf_fast_expf(dt * A[n]);
                        ddt += G[n] * (A[n] * ab * sp[n] + Bt[n] * xv);
                        dAl[(size_t)e * N + n] += (double)G[n] * dt * ab * sp[n] * A[n]; /* dA * dA/dA_log (= A) */
                        dBt[n] += G[n] * dt * xv;
                        dxv += G[n] * dt * Bt[n];
                        G[n] *= ab;                                 /* carried to s_{t-1} */
                    }
                    ddelta[r * E + e] = ddt;
                    dx[r * E + e] = dxv;
                }
            }
#pragma omp critical(derf_scan_reduce)
        {
            for (size_t i = 0; i < (size_t)E * N; i++) dA_log[i] += (float)dAl[i];
            for (int e = 0; e < E; e++) dD[e] += (float)dDl[e];
        }
        free(S); free(G); free(A); free(dAl); free(dDl);
    }
}

#if !defined(__AVX512F__)

size_t derf_scan_ckpt_floats(int NB, int T, int E, int N) { return 1; }
void derf_scan_forward(float *y, const float *x, const float *delta, const float *dbc, int Sd, int R, const float *A_log,
                       const float *D, int NB, int T, int E, int N, float *ckpt) {
    derf_scan_forward_ref(y, x, delta, dbc, Sd, R, A_log, D, NB, T, E, N);
}
void derf_scan_backward(float *dx, float *ddelta, float *ddbc, float *dA_log, float *dD, const float *dy, const float *x,
                        const float *delta, const float *dbc, int Sd, int R, const float *A_log, const float *D, int NB, int T,
                        int E, int N, const float *ckpt) {
    derf_scan_backward_ref(dx, ddelta, ddbc, dA_log, dD, dy, x, delta, dbc, Sd, R, A_log, D, NB, T, E, N);
}

#else /* AVX-512 */

#define INLINE static inline __attribute__((always_inline))
#define DERF_SCAN_SEG 64 /* the backward's segment (steps): its states and factors, 2 x 64 x N x 64 bytes, stay in cache */

static void *xalloc(size_t bytes) {
    void *p = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!p) { fprintf(stderr, "derf: out of memory in the selective scan (%zu bytes)\n", bytes); abort(); }
    return p;
}

static __mmask16 lane_mask(int cnt) { return cnt >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << cnt) - 1); }

/* A[n] lanes i < cnt: -exp(A_log[e0+i, n]); other lanes 0 */
static void load_A(__m512 *A, const float *A_log, int e0, int cnt, int N) {
    for (int n = 0; n < N; n++) {
        float a[16] = {0};
        for (int i = 0; i < cnt; i++) a[i] = -expf(A_log[(size_t)(e0 + i) * N + n]);
        A[n] = _mm512_loadu_ps(a);
    }
}

/* out[p] = sum over the 16 lanes of v[p], p = 0..15. The vectors enter in the order in[4j+k] = v[4k+j]:
 * four levels of halving (512 -> 256 -> 128 bits across 128-bit lanes, then 4 -> 2 -> 1 within them) leave
 * the total of in[4j+k] at position 4k+j, i.e. v[p]'s at p. 45 instructions for 16 sums. */
INLINE __m512 hsum16(const __m512 *v) {
    __m512 a[8], b[4], c[2];
    for (int i = 0; i < 8; i++) { /* pair (in[2i], in[2i+1]) */
        const __m512 p = v[4 * ((2 * i) & 3) + (2 * i) / 4], q = v[4 * ((2 * i + 1) & 3) + (2 * i + 1) / 4];
        a[i] = _mm512_add_ps(_mm512_shuffle_f32x4(p, q, 0x44), _mm512_shuffle_f32x4(p, q, 0xEE));
    }
    for (int i = 0; i < 4; i++)
        b[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0x88), _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0xDD));
    for (int i = 0; i < 2; i++)
        c[i] = _mm512_add_ps(_mm512_shuffle_ps(b[2 * i], b[2 * i + 1], 0x44), _mm512_shuffle_ps(b[2 * i], b[2 * i + 1], 0xEE));
    return _mm512_add_ps(_mm512_shuffle_ps(c[0], c[1], 0x88), _mm512_shuffle_ps(c[0], c[1], 0xDD));
}

/* row[n] += sum over lanes of v[n], n < N */
INLINE void add_lane_sums(float *row, const __m512 *v, int N) {
    for (int n0 = 0; n0 < N; n0 += 16) {
        const int cnt = N - n0 < 16 ? N - n0 : 16;
        __m512 in[16];
        for (int i = 0; i < 16; i++) in[i] = i < cnt ? v[n0 + i] : _mm512_setzero_ps();
        const __mmask16 m = lane_mask(cnt);
        _mm512_mask_storeu_ps(row + n0, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, row + n0), hsum16(in)));
    }
}

/* one (sequence, channel block): x, delta, y point at [b, 0, e0]; bc at dbc[b*T] + R; y may be NULL (states only);
 * cp (NULL: none) gets the state before every DERF_SCAN_SEG-th step */
INLINE void fwd_block(float *y, const float *x, const float *delta, const float *bc, int Sd, const __m512 *A, __m512 Dv, int T,
                      int E, int N, __mmask16 m, __m512 *s, __m512 *cp) {
    for (int n = 0; n < N; n++) s[n] = _mm512_setzero_ps();
    for (int t = 0; t < T; t++) {
        if (cp && t % DERF_SCAN_SEG == 0)
            for (int n = 0; n < N; n++) cp[(size_t)(t / DERF_SCAN_SEG) * N + n] = s[n];
        const size_t o = (size_t)t * E;
        const __m512 dt = _mm512_maskz_loadu_ps(m, delta + o), xv = _mm512_maskz_loadu_ps(m, x + o), dtx = _mm512_mul_ps(dt, xv);
        const float *Bt = bc + (size_t)t * Sd, *Ct = Bt + N;
        /* y = D x + sum_n C s in 4 partial sums: a 16-long chain of dependent fmas would cost 64 cycles a step */
        __m512 acc[4] = {_mm512_mul_ps(Dv, xv), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
#pragma GCC unroll 16
        for (int n = 0; n < N; n++) {
            const __m512 a = derf_exp16s(_mm512_mul_ps(dt, A[n]));
            s[n] = _mm512_fmadd_ps(a, s[n], _mm512_mul_ps(dtx, _mm512_set1_ps(Bt[n])));
            acc[n & 3] = _mm512_fmadd_ps(_mm512_set1_ps(Ct[n]), s[n], acc[n & 3]);
        }
        if (y) _mm512_mask_storeu_ps(y + o, m, _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
    }
}

static void fwd16(float *y, const float *x, const float *delta, const float *bc, int Sd, const __m512 *A, __m512 Dv, int T, int E,
                  __mmask16 m, __m512 *cp) {
    __m512 s[16], Al[16];
    for (int n = 0; n < 16; n++) Al[n] = A[n];
    fwd_block(y, x, delta, bc, Sd, Al, Dv, T, E, 16, m, s, cp);
}

size_t derf_scan_ckpt_floats(int NB, int T, int E, int N) {
    return (size_t)NB * ((E + 15) / 16) * ((T + DERF_SCAN_SEG - 1) / DERF_SCAN_SEG) * N * 16;
}

void derf_scan_forward(float *y, const float *x, const float *delta, const float *dbc, int Sd, int R, const float *A_log,
                       const float *D, int NB, int T, int E, int N, float *ckpt) {
    const int nblk = (E + 15) / 16, nseg = (T + DERF_SCAN_SEG - 1) / DERF_SCAN_SEG;
#pragma omp parallel
    {
        __m512 *A = xalloc(sizeof(__m512) * (size_t)N), *s = xalloc(sizeof(__m512) * (size_t)N);
#pragma omp for schedule(static)
        for (int bk = 0; bk < NB * nblk; bk++) {
            const int b = bk / nblk, e0 = bk % nblk * 16, cnt = E - e0 < 16 ? E - e0 : 16;
            const __mmask16 m = lane_mask(cnt);
            const size_t off = (size_t)b * T * E + e0;
            const float *bc = dbc + (size_t)b * T * Sd + R;
            load_A(A, A_log, e0, cnt, N);
            const __m512 Dv = _mm512_maskz_loadu_ps(m, D + e0);
            __m512 *cp = ckpt ? (__m512 *)ckpt + (size_t)bk * nseg * N : NULL;
            if (N == 16) fwd16(y + off, x + off, delta + off, bc, Sd, A, Dv, T, E, m, cp);
            else fwd_block(y + off, x + off, delta + off, bc, Sd, A, Dv, T, E, N, m, s, cp);
        }
        free(A);
        free(s);
    }
}

/* per-thread work space of the backward */
typedef struct {
    __m512 *S, *Ab, *A, *G, *w, *vc, *vb, *s, *cp; /* (SEG+1)N, SEG N, N, N, N, N, N, N, nseg N */
    double *dAl, *dDl;                             /* [E,N], [E] */
} bwd_ws;

/* w (sums of delta * dL/dA over the steps since the last flush) and dDv into the thread's double sums */
static void flush(bwd_ws *ws, __m512 *w, __m512 *dDv, int e0, int cnt, int N) {
    for (int n = 0; n < N; n++) {
        float v[16];
        _mm512_storeu_ps(v, w[n]);
        for (int i = 0; i < cnt; i++) ws->dAl[(size_t)(e0 + i) * N + n] += v[i];
        w[n] = _mm512_setzero_ps();
    }
    float v[16];
    _mm512_storeu_ps(v, *dDv);
    for (int i = 0; i < cnt; i++) ws->dDl[e0 + i] += v[i];
    *dDv = _mm512_setzero_ps();
}

/* The block's steps in segments of DERF_SCAN_SEG from the last: the segment's states (from its checkpoint cp)
 * and factors recomputed into S, Ab (small enough to stay in cache), then the adjoint backwards over it. */
INLINE void bwd_block(float *dx, float *ddelta, float *dbc_out, const float *dy, const float *x, const float *delta, const float *bc,
                      int Sd, __m512 Dv, int T, int E, int N, __mmask16 m, int e0, int cnt, bwd_ws *ws, const __m512 *A,
                      __m512 *G, __m512 *w, __m512 *vc, __m512 *vb, const __m512 *cp) {
    __m512 *S = ws->S, *Ab = ws->Ab;
    __m512 dDv = _mm512_setzero_ps();
    for (int n = 0; n < N; n++) G[n] = w[n] = _mm512_setzero_ps();
    int since = 0;
    for (int t0 = (T - 1) / DERF_SCAN_SEG * DERF_SCAN_SEG; t0 >= 0; t0 -= DERF_SCAN_SEG) {
        const int t1 = T - t0 < DERF_SCAN_SEG ? T : t0 + DERF_SCAN_SEG;
        for (int n = 0; n < N; n++) S[n] = cp[(size_t)(t0 / DERF_SCAN_SEG) * N + n];
        for (int t = t0; t < t1; t++) { /* S[t-t0+1] = s_t, Ab[t-t0] = exp(delta_t A) */
            const size_t o = (size_t)t * E;
            const __m512 dt = _mm512_maskz_loadu_ps(m, delta + o), dtx = _mm512_mul_ps(dt, _mm512_maskz_loadu_ps(m, x + o));
            const float *Bt = bc + (size_t)t * Sd;
            const __m512 *sp = S + (size_t)(t - t0) * N;
            __m512 *st = S + (size_t)(t - t0 + 1) * N, *ab = Ab + (size_t)(t - t0) * N;
#pragma GCC unroll 16
            for (int n = 0; n < N; n++) {
                const __m512 a = derf_exp16s(_mm512_mul_ps(dt, A[n]));
                ab[n] = a;
                st[n] = _mm512_fmadd_ps(a, sp[n], _mm512_mul_ps(dtx, _mm512_set1_ps(Bt[n])));
            }
        }
        for (int t = t1 - 1; t >= t0; t--) {
            const size_t o = (size_t)t * E;
            const __m512 g = _mm512_maskz_loadu_ps(m, dy + o), dt = _mm512_maskz_loadu_ps(m, delta + o),
                         xv = _mm512_maskz_loadu_ps(m, x + o), dtx = _mm512_mul_ps(dt, xv);
            const float *Bt = bc + (size_t)t * Sd, *Ct = Bt + N;
            const __m512 *st = S + (size_t)(t - t0 + 1) * N, *sp = S + (size_t)(t - t0) * N, *ab = Ab + (size_t)(t - t0) * N;
            __m512 p[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()}, q[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
#pragma GCC unroll 16
            for (int n = 0; n < N; n++) {
                vc[n] = _mm512_mul_ps(g, st[n]);                                   /* dC_t[n] */
                const __m512 Gn = _mm512_fmadd_ps(_mm512_set1_ps(Ct[n]), g, G[n]); /* dL/ds_t */
                const __m512 Gab = _mm512_mul_ps(Gn, ab[n]), u = _mm512_mul_ps(Gab, sp[n]);
                p[n & 1] = _mm512_fmadd_ps(A[n], u, p[n & 1]);                     /* sum_n A dL/dAbar Abar s_{t-1} */
                w[n] = _mm512_fmadd_ps(dt, u, w[n]);                               /* dA_log = A sum_t delta u */
                q[n & 1] = _mm512_fmadd_ps(_mm512_set1_ps(Bt[n]), Gn, q[n & 1]);   /* sum_n B G */
                vb[n] = _mm512_mul_ps(Gn, dtx);                                    /* dB_t[n] */
                G[n] = Gab;                                                        /* carried to s_{t-1} */
            }
            float *dBt = dbc_out + (size_t)t * Sd;
            add_lane_sums(dBt + N, vc, N);
            add_lane_sums(dBt, vb, N);
            const __m512 ps = _mm512_add_ps(p[0], p[1]), qs = _mm512_add_ps(q[0], q[1]);
            _mm512_mask_storeu_ps(ddelta + o, m, _mm512_fmadd_ps(xv, qs, ps));
            _mm512_mask_storeu_ps(dx + o, m, _mm512_fmadd_ps(dt, qs, _mm512_mul_ps(Dv, g)));
            dDv = _mm512_fmadd_ps(g, xv, dDv);
            if (++since == 32 || t == 0) { flush(ws, w, &dDv, e0, cnt, N); since = 0; }
        }
    }
}

static void bwd16(float *dx, float *ddelta, float *dbc_out, const float *dy, const float *x, const float *delta, const float *bc,
                  int Sd, __m512 Dv, int T, int E, __mmask16 m, int e0, int cnt, bwd_ws *ws, const __m512 *cp) {
    __m512 A[16], G[16], w[16], vc[16], vb[16];
    for (int n = 0; n < 16; n++) A[n] = ws->A[n];
    bwd_block(dx, ddelta, dbc_out, dy, x, delta, bc, Sd, Dv, T, E, 16, m, e0, cnt, ws, A, G, w, vc, vb, cp);
}

void derf_scan_backward(float *dx, float *ddelta, float *ddbc, float *dA_log, float *dD, const float *dy, const float *x,
                        const float *delta, const float *dbc, int Sd, int R, const float *A_log, const float *D, int NB, int T,
                        int E, int N, const float *ckpt) {
    const int nblk = (E + 15) / 16, nseg = (T + DERF_SCAN_SEG - 1) / DERF_SCAN_SEG;
#pragma omp parallel
    {
        bwd_ws ws;
        const size_t v = sizeof(__m512);
        ws.S = xalloc(v * (size_t)(DERF_SCAN_SEG + 1) * N);
        ws.Ab = xalloc(v * (size_t)DERF_SCAN_SEG * N);
        ws.A = xalloc(v * (size_t)N);
        ws.G = xalloc(v * (size_t)N);
        ws.w = xalloc(v * (size_t)N);
        ws.vc = xalloc(v * (size_t)N);
        ws.vb = xalloc(v * (size_t)N);
        ws.s = xalloc(v * (size_t)N);
        ws.cp = ckpt ? NULL : xalloc(v * (size_t)nseg * N);
        ws.dAl = calloc((size_t)E * N, sizeof(double));
        ws.dDl = calloc((size_t)E, sizeof(double));
        if (!ws.dAl || !ws.dDl) { fprintf(stderr, "derf: out of memory in the selective scan\n"); abort(); }
#pragma omp for schedule(static)
        for (int b = 0; b < NB; b++)
            for (int k = 0; k < nblk; k++) {
                const int e0 = k * 16, cnt = E - e0 < 16 ? E - e0 : 16;
                const __mmask16 m = lane_mask(cnt);
                const size_t off = (size_t)b * T * E + e0, roff = (size_t)b * T * Sd + R;
                load_A(ws.A, A_log, e0, cnt, N);
                const __m512 Dv = _mm512_maskz_loadu_ps(m, D + e0);
                const __m512 *cp = ckpt ? (const __m512 *)ckpt + ((size_t)b * nblk + k) * nseg * N : ws.cp;
                if (!ckpt) fwd_block(NULL, x + off, delta + off, dbc + roff, Sd, ws.A, Dv, T, E, N, m, ws.s, ws.cp);
                if (N == 16)
                    bwd16(dx + off, ddelta + off, ddbc + roff, dy + off, x + off, delta + off, dbc + roff, Sd, Dv, T, E, m, e0, cnt, &ws,
                          cp);
                else
                    bwd_block(dx + off, ddelta + off, ddbc + roff, dy + off, x + off, delta + off, dbc + roff, Sd, Dv, T, E, N, m, e0,
                              cnt, &ws, ws.A, ws.G, ws.w, ws.vc, ws.vb, cp);
            }
        /* dA_log = A * sum_t delta u */
#pragma omp critical(derf_scan_reduce)
        {
            for (int e = 0; e < E; e++) {
                for (int n = 0; n < N; n++) {
                    const size_t i = (size_t)e * N + n;
                    dA_log[i] += (float)(-exp((double)A_log[i]) * ws.dAl[i]);
                }
                dD[e] += (float)ws.dDl[e];
            }
        }
        free(ws.S); free(ws.Ab); free(ws.A); free(ws.G); free(ws.w); free(ws.vc); free(ws.vb); free(ws.s); free(ws.cp);
        free(ws.dAl); free(ws.dDl);
    }
}

#endif
