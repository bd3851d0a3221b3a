/*
 * comm.h - the process grid over MPI, and how ranks agree on an error.
 * Host-buffer collectives are parallel/collectives.h; sums and exchanges
 * of buffers in the backend's memory are each group's xcomm (xcomm.h).
 *
 * The grid: world = pp x dp x tp ranks, tensor-parallel rank fastest, so a
 * tensor-parallel group is tp consecutive ranks (one node under any
 * block placement), then the data-parallel rank, then the pipeline stage:
 *   world rank = (pp_rank * dp + dp_rank) * tp + tp_rank
 * Before mt_comm_layout the grid is pure data parallelism. The node
 * communicator (MPI_COMM_TYPE_SHARED) gives the local rank and the number
 * of ranks on this node, used for thread counts and GPU choice.
 * mt_comm_agree is how ranks agree on an error at a phase boundary
 * (DESIGN decision 6): every rank ends up with the same code and message.
 */
#ifndef MT_COMM_H
#define MT_COMM_H

#include <mpi.h>
#include <stddef.h>

#include "base/error.h"
#include "kernels/backend.h"
#include "parallel/collectives.h"
#include "parallel/xcomm.h"

typedef struct {
    MPI_Comm world;
    int rank, size;
    int thread_multiple; /* MPI gave MPI_THREAD_MULTIPLE (checkpoint.async needs it) */
    MPI_Comm node;       /* ranks sharing this node's memory */
    int local_rank, local_size;
    MPI_Comm dp; /* data-parallel group: same tp rank and stage */
    int dp_rank, dp_size;
    MPI_Comm tp; /* tensor-parallel group: same dp rank and stage */
    int tp_rank, tp_size;
    MPI_Comm pp; /* one pipeline: same dp and tp rank; rank = stage */
    int pp_rank, pp_size;
    MPI_Comm mp;    /* model-parallel group: every rank of one replica (tp x pp) */
    MPI_Comm emb;   /* first and last stage of one pipeline (tied embedding);
                     * MPI_COMM_NULL on other stages and when pp = 1 */
    int prev, next; /* world ranks of the neighbouring stages; -1 at the ends */
    /* sums of buffers in the backend's memory over dp, tp and emb, and the
     * pipeline's messages over pp (xcomm.h): host MPI after mt_comm_layout,
     * device-aware after mt_comm_use_device */
    mt_xcomm xdp, xtp, xemb, xpp;
} mt_comm;

/* MPI_Init_thread and the communicators. MPI_THREAD_MULTIPLE is asked for
 * (an asynchronous checkpoint's writer thread calls MPI while training
 * goes on); FUNNELED is the least accepted. */
int mt_comm_init(mt_comm *c, int *argc, char ***argv, mt_err *e);
void mt_comm_finalize(mt_comm *c);
/* Collective: the grid of tp x pp model-parallel ranks and world / (tp x pp)
 * data-parallel replicas. MT_ERR_USAGE on every rank when the world size is
 * not a multiple of tp x pp. */
int mt_comm_layout(mt_comm *c, int tp, int pp, mt_err *e);

/* Collective: xdp, xtp, xemb and xpp take buffers in be's memory (NCCL for CUDA
 * when built with it; see xcomm.h). Call after mt_comm_layout. */
int mt_comm_use_device(mt_comm *c, const mt_backend *be, mt_err *e);

/* Collective over the world: if any rank has e set, every rank's e becomes
 * the error of the lowest such rank (naming that rank when it is not 0) and
 * the code is returned on all ranks; otherwise returns MT_OK. */
int mt_comm_agree(const mt_comm *c, mt_err *e);
/* Collective over c->world: a duplicate of it named name (a thread's own
 * communicator, so that its collectives never meet the training's), and
 * its release. */
void mt_comm_dup_world(const mt_comm *c, const char *name, MPI_Comm *out);
void mt_comm_free_dup(MPI_Comm *comm);

#endif
