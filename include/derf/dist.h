/* derf/dist.h: data-parallel training over several processes (MPI; see docs/distributed.md).
 *
 * The layer is started only when derf runs under an MPI launcher (mpirun sets OMPI_COMM_WORLD_SIZE,
 * PMIX_RANK or PMI_SIZE in the environment); a plain `derf` never calls MPI and is one process of one.
 * Built without MPI (no mpicc / MPI headers at build time; `make MPI=0`) every call below is the
 * one-process version, and derf_dist_init refuses a launch of several processes with one clear line.
 *
 * Collectives must be called by every process in the same order (the trainers do). The trainers use
 * it as: split each global batch into equal contiguous shares (derf_dist_shard), average the gradient
 * slab once per optimizer step (derf_dist_mean_floats), reduce metrics (derf_dist_sum_doubles,
 * derf_dist_mean_float), start every process from rank 0's state (derf_dist_bcast). Only rank 0 writes
 * files and progress lines. A process that fails ends the whole job (derf_dist_abort), never hangs it. */
#ifndef DERF_DIST_H
#define DERF_DIST_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Starts MPI if launched under an MPI launcher. Returns 0, or -1 with one error line (a launch of
 * several processes by a derf built without MPI; MPI_Init failing). Call once, first thing in main. */
int derf_dist_init(int *argc, char ***argv, char *err, size_t errlen);
void derf_dist_finalize(void);      /* after the last collective; no-op when not started */
int derf_dist_rank(void);           /* 0 .. size-1; 0 when not started */
int derf_dist_size(void);           /* number of processes; 1 when not started */
int derf_dist_built_with_mpi(void); /* 1 if this derf was compiled with MPI support */
/* Rank among the processes on this machine and their number (MPI_Comm_split_type shared); 0 and 1
 * when not started. GPU runs give local rank i the machine's GPU i. */
int derf_dist_local_rank(void);
int derf_dist_local_size(void);
/* The GPU a process of local rank r (of local_size on a machine with ngpu GPUs) uses: r; or -1 with
 * one error line when the machine has fewer GPUs than processes (or none). */
int derf_dist_gpu(int local_rank, int local_size, int ngpu, char *err, size_t errlen);
/* fn runs in derf_dist_finalize, before MPI_Finalize (the NCCL communicator is destroyed there). */
void derf_dist_before_finalize(void (*fn)(void));

/* This process's share of a global batch of B: samples [*off, *off + *b). Fails with one error line
 * when B does not split evenly over the processes (every share must be the same size so the mean
 * of the per-process mean gradients is the mean over the global batch). */
int derf_dist_shard(int B, int *off, int *b, char *err, size_t errlen);

/* Contiguous share [lo, hi) of n items for this process (shares differ by at most one; eval sets). */
void derf_dist_range(int n, int *lo, int *hi);

/* In place: x[n] = the mean over the processes of x[n] (one all-reduce). */
void derf_dist_mean_floats(float *x, size_t n);
/* In place: x[n] = the sum over the processes (double; metrics and counts). */
void derf_dist_sum_doubles(double *x, int n);
/* The mean over the processes of one value. */
float derf_dist_mean_float(float x);
/* Copies rank 0's bytes into every other process's buf. */
void derf_dist_bcast(void *buf, size_t bytes);
/* 1 if every process holds the same n floats, bit for bit (a 64-bit hash compared over the processes). */
int derf_dist_same(const float *x, size_t n);

/* Ends the whole job: prints "derf (rank R of N): message" on stderr and aborts every process with
 * exit status `code` (MPI_Abort). When not started, prints "derf: message" and exits. */
void derf_dist_abort(int code, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));

/* Test hook: when the environment has DERF_TEST_FAIL_RANK=R and this is rank R, fails (returns -1
 * with one error line) at step DERF_TEST_FAIL_STEP (default 1) so the tests can check that one
 * failing process stops the job. Returns 0 otherwise. */
int derf_dist_fail_hook(int step, char *err, size_t errlen);
/* Test hook: with DERF_TEST_PERTURB_RANK=R, rank R adds 1e-3 to x[0] at step 1 (weights that drift apart). */
void derf_dist_perturb_hook(int step, float *x);

#ifdef __cplusplus
}
#endif
#endif
