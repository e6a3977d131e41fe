/* threads.c: the default OpenMP thread count (--threads auto): the CPUs this process may use, shared among the
 * node's MPI ranks; see derf/threads.h. (Counting only the CPUs idle at start was tried and measured: once
 * waiting threads stop spinning it gained nothing under busy-loop load, and a run started beside a short job
 * would keep the fewer threads for hours; docs/performance.md, "Busy machines".) */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "derf/threads.h"

int derf_cpus_allowed(void) {
    cpu_set_t set;
    int n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 0;
    if (n < 1) n = 1;
    FILE *f = fopen("/sys/fs/cgroup/cpu.max", "r");    /* "max 100000" or "QUOTA PERIOD" (microseconds) */
    if (f) {
        char q[32] = "";
        long period = 0;
        if (fscanf(f, "%31s %ld", q, &period) == 2 && strcmp(q, "max") && period > 0) {
            long quota = atol(q), c = (quota + period - 1) / period;
            if (c >= 1 && c < n) n = (int)c;
        }
        fclose(f);
    }
    return n;
}

int derf_threads_auto(void) {
    const int n = derf_cpus_allowed();
    const char *local = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");   /* Open MPI; MPICH (Hydra): MPI_LOCALNRANKS */
    if (!local) local = getenv("MPI_LOCALNRANKS");
    const int k = local ? atoi(local) : 1;
    return k > 1 ? (n / k > 1 ? n / k : 1) : n;
}
