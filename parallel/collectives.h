/*
 * collectives.h - collectives on host buffers over one MPI communicator, in
 * pieces that fit MPI's int counts: the building blocks of the comm
 * interfaces above it (comm.h, xcomm.h) and of every other layer's
 * communication. Nothing outside parallel/ calls MPI itself, except io/,
 * which hands communicators to parallel HDF5 (docs/ARCHITECTURE.md).
 */
#ifndef MT_COLLECTIVES_H
#define MT_COLLECTIVES_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

/* In-place sums over comm. */
void mt_coll_sum_floats(MPI_Comm comm, float *buf, size_t n);
void mt_coll_sum_doubles(MPI_Comm comm, double *buf, size_t n);
/* Integers: exact, so the result does not depend on the order of the adds. */
void mt_coll_sum_u64(MPI_Comm comm, uint64_t *buf, size_t n);
/* Frees the sums' scratch buffer (at the end, before MPI_Finalize). */
void mt_coll_release(void);
/* In-place extremes of n ints over comm. */
void mt_coll_min_ints(MPI_Comm comm, int *buf, int n);
void mt_coll_max_ints(MPI_Comm comm, int *buf, int n);
void mt_coll_max_doubles(MPI_Comm comm, double *buf, int n);
/* Rank root's n bytes at buf to every rank's buf. */
void mt_coll_bcast(MPI_Comm comm, int root, void *buf, size_t n);
/* Rank root's text (malloc'd, NUL-terminated) is given to every rank in
 * *text (malloc'd on the others). */
void mt_coll_bcast_text(MPI_Comm comm, int root, char **text);
/* Every rank's n bytes of mine, gathered in rank order into all (size x n
 * bytes) on rank root; all is not touched elsewhere (may be NULL there). */
void mt_coll_gather(MPI_Comm comm, int root, const void *mine, size_t n, void *all);
/* Blocking point to point of n floats (rank order of comm). */
void mt_coll_send_floats(MPI_Comm comm, int to, const float *buf, size_t n);
void mt_coll_recv_floats(MPI_Comm comm, int from, float *buf, size_t n);
/* Seconds on a monotonic wall clock (MPI_Wtime). */
double mt_wtime(void);
/* The MPI library's version text (MPI_Get_library_version), first line. */
void mt_coll_mpi_version(char *buf, size_t n);

#endif
