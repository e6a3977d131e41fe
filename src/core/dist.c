/* dist.c: the MPI layer of data-parallel training (see derf/dist.h): start/stop, rank and size,
 * batch shares, the gradient all-reduce, metric reductions, rank 0's state to everyone, and aborting
 * the whole job with a message. Compiled with -DDERF_MPI when the Makefile finds MPI; without it every
 * function is the one-process version. */
#include "derf/dist.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "derf/io.h"
#ifdef DERF_MPI
#include <mpi.h>
#endif

static int g_rank = 0, g_size = 1, g_started = 0;
static int g_local_rank = 0, g_local_size = 1; /* among the processes on this machine */
static void (*g_before_finalize)(void);

/* Processes the launcher says it started (0: not launched by an MPI launcher). */
static int launched_size(void) {
    const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MPI_LOCALNRANKS"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v) return atoi(v) > 0 ? atoi(v) : 1;
    }
    return getenv("PMIX_RANK") || getenv("PMI_RANK") ? 1 : 0;
}

int derf_dist_built_with_mpi(void) {
#ifdef DERF_MPI
    return 1;
#else
    return 0;
#endif
}

int derf_dist_init(int *argc, char ***argv, char *err, size_t errlen) {
    int n = launched_size();
    if (n == 0 || g_started) return 0;
#ifdef DERF_MPI
    int provided = 0;
    /* OpenMP threads compute, only the main thread talks to MPI */
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        derf_io_errf(err, errlen, "MPI_Init failed (launched by an MPI launcher for %d processes)", n);
        return -1;
    }
    g_started = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    /* the processes sharing this machine (its GPUs): rank and count among them */
    MPI_Comm node;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_rank, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
        MPI_Comm_rank(node, &g_local_rank);
        MPI_Comm_size(node, &g_local_size);
        MPI_Comm_free(&node);
    }
    return 0;
#else
    (void)argc; (void)argv;
    if (n > 1) {
        derf_io_errf(err, errlen, "launched as one of %d MPI processes, but this derf was built without MPI "
                     "(install libopenmpi-dev, then 'make clean && make'); each process would train alone", n);
        return -1;
    }
    return 0;
#endif
}

void derf_dist_finalize(void) {
    if (g_before_finalize) g_before_finalize();
    g_before_finalize = NULL;
#ifdef DERF_MPI
    if (g_started) MPI_Finalize();
#endif
    g_started = 0;
    g_rank = 0;
    g_size = 1;
    g_local_rank = 0;
    g_local_size = 1;
}

int derf_dist_rank(void) { return g_rank; }
int derf_dist_size(void) { return g_size; }
int derf_dist_local_rank(void) { return g_local_rank; }
int derf_dist_local_size(void) { return g_local_size; }
void derf_dist_before_finalize(void (*fn)(void)) { g_before_finalize = fn; }

int derf_dist_gpu(int local_rank, int local_size, int ngpu, char *err, size_t errlen) {
    if (ngpu < 1) {
        derf_io_errf(err, errlen, "no CUDA device on this machine");
        return -1;
    }
    if (local_size > ngpu) {
        derf_io_errf(err, errlen, "this machine has %d GPU%s but mpirun started %d processes on it: one GPU per process "
                     "(NCCL refuses two on one GPU); start at most %d here (-np, or slots=%d in the hostfile), and do not "
                     "hide the GPUs with CUDA_VISIBLE_DEVICES", ngpu, ngpu == 1 ? "" : "s", local_size, ngpu, ngpu);
        return -1;
    }
    return local_rank;
}

int derf_dist_shard(int B, int *off, int *b, char *err, size_t errlen) {
    if (B % g_size) {
        derf_io_errf(err, errlen, "the batch of %d does not split evenly over %d processes: use a --batch that "
                     "is a multiple of %d", B, g_size, g_size);
        return -1;
    }
    *b = B / g_size;
    *off = g_rank * *b;
    return 0;
}

void derf_dist_range(int n, int *lo, int *hi) {
    *lo = (int)((long long)n * g_rank / g_size);
    *hi = (int)((long long)n * (g_rank + 1) / g_size);
}

void derf_dist_mean_floats(float *x, size_t n) {
    if (g_size == 1) return;
#ifdef DERF_MPI
    const size_t chunk = (size_t)1 << 30; /* MPI counts are ints */
    for (size_t i = 0; i < n; i += chunk) {
        int c = (int)(n - i < chunk ? n - i : chunk);
        MPI_Allreduce(MPI_IN_PLACE, x + i, c, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    }
    const float s = 1.0f / (float)g_size;
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) x[i] *= s;
#endif
}

void derf_dist_sum_doubles(double *x, int n) {
    if (g_size == 1) return;
#ifdef DERF_MPI
    MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
#endif
}

float derf_dist_mean_float(float x) {
    if (g_size == 1) return x;
    double d = x;
    derf_dist_sum_doubles(&d, 1);
    return (float)(d / g_size);
}

void derf_dist_bcast(void *buf, size_t bytes) {
    if (g_size == 1) return;
#ifdef DERF_MPI
    const size_t chunk = (size_t)1 << 30;
    for (size_t i = 0; i < bytes; i += chunk) {
        int c = (int)(bytes - i < chunk ? bytes - i : chunk);
        MPI_Bcast((char *)buf + i, c, MPI_BYTE, 0, MPI_COMM_WORLD);
    }
#endif
}

/* Order-free hash: the sum of a strong mix of (index, bits) of every element. */
int derf_dist_same(const float *x, size_t n) {
    if (g_size == 1) return 1;
    uint64_t h = 0;
#pragma omp parallel for reduction(+ : h) schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, x + i, sizeof bits);
        uint64_t z = ((uint64_t)i << 32 | bits) + 0x9e3779b97f4a7c15ULL;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        h += z ^ (z >> 31);
    }
#ifdef DERF_MPI
    uint64_t lo = h, hi = h;
    MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
    return lo == hi;
#else
    return 1;
#endif
}

void derf_dist_abort(int code, const char *fmt, ...) {
    char msg[DERF_ERRLEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (code == 0) code = 1;
    fflush(stdout);
    if (g_size > 1) fprintf(stderr, "derf (rank %d of %d): %s\n", g_rank, g_size, msg);
    else fprintf(stderr, "derf: %s\n", msg);
    fflush(stderr);
#ifdef DERF_MPI
    if (g_started) MPI_Abort(MPI_COMM_WORLD, code);
#endif
    exit(code);
}

int derf_dist_fail_hook(int step, char *err, size_t errlen) {
    const char *r = getenv("DERF_TEST_FAIL_RANK"), *s = getenv("DERF_TEST_FAIL_STEP");
    if (!r || atoi(r) != g_rank || step != (s ? atoi(s) : 1)) return 0;
    derf_io_errf(err, errlen, "failure injected at step %d on rank %d (DERF_TEST_FAIL_RANK)", step, g_rank);
    return -1;
}

void derf_dist_perturb_hook(int step, float *x) {
    const char *r = getenv("DERF_TEST_PERTURB_RANK");
    if (r && atoi(r) == g_rank && step == 1) x[0] += 1e-3f;
}
