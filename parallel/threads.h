/*
 * threads.h - compute threads per rank. One owner of the cores: OpenMP.
 * mpitrain links the OpenMP build of OpenBLAS, so sgemm and our own loops
 * run on the same team of threads and never compete. Default: the CPUs this
 * rank may run on (its affinity mask) and at most the node's online CPUs
 * divided by the ranks on the node, so `mpirun -np 2` on 2 cores runs one
 * thread per rank instead of oversubscribing.
 */
#ifndef MT_THREADS_H
#define MT_THREADS_H

#include <stddef.h>

/* Chooses the thread count: requested > 0 wins, then OMP_NUM_THREADS, then
 * the rule above. why receives a short explanation for the log. */
int mt_threads_choose(int requested, int local_ranks, char *why, size_t why_len);
/* Applies n to OpenBLAS and OpenMP. */
void mt_threads_apply(int n);
/* 1 if the OpenBLAS loaded at run time is its OpenMP build. */
int mt_threads_blas_openmp(void);

#endif
