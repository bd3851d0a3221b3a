/* threads.c - choose and apply compute threads per rank (see threads.h). */
#include "threads.h"

#include <omp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* From OpenBLAS (cblas.h declares it, but not in every vendor's header). */
void openblas_set_num_threads(int num_threads);
int openblas_get_parallel(void); /* 0 sequential, 1 pthreads, 2 OpenMP */

int mt_threads_choose(int requested, int local_ranks, char *why, size_t why_len) {
    if (requested > 0) {
        snprintf(why, why_len, "run.threads");
        return requested;
    }
    const char *env = getenv("OMP_NUM_THREADS");
    if (env && atoi(env) > 0) {
        snprintf(why, why_len, "OMP_NUM_THREADS");
        return atoi(env);
    }
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (online < 1) online = 1;
    int n = (int)(online / (local_ranks > 0 ? local_ranks : 1));
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) < n) n = CPU_COUNT(&set);
    if (n < 1) n = 1;
    snprintf(why, why_len, "%ld cores / %d ranks on this node", online, local_ranks);
    return n;
}

void mt_threads_apply(int n) {
    openblas_set_num_threads(n);
    omp_set_num_threads(n);
}

int mt_threads_blas_openmp(void) {
    return openblas_get_parallel() == 2;
}
