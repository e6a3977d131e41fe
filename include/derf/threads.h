/* derf/threads.h: how many OpenMP threads derf uses when the user does not say (--threads 0 / auto, the
 * default of every command). docs/performance.md ("Busy machines") has the measurements behind it. */
#ifndef DERF_THREADS_H
#define DERF_THREADS_H

/* CPUs this process may run on: its affinity mask, capped by a cgroup v2 CPU quota (cpu.max) if one is set. */
int derf_cpus_allowed(void);

/* The thread count for --threads auto: the allowed CPUs, shared among the node's ranks under an MPI launcher
 * (OMPI_COMM_WORLD_LOCAL_SIZE or MPI_LOCALNRANKS), at least 1. */
int derf_threads_auto(void);

#endif
