/* comm.c - the MPI process grid and error agreement (see comm.h). */
#include "comm.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parallel/collectives.h"
#include "parallel/watchdog.h"

int mt_comm_init(mt_comm *c, int *argc, char ***argv, mt_err *e) {
    memset(c, 0, sizeof *c);
    /* Open MPI 4.1's shared-file-pointer component "lockedfile" formats the
     * file name into a fixed buffer when parallel HDF5 opens a file, and
     * aborts the process (glibc's buffer-overflow check) for a checkpoint path
     * longer than about 250 characters. mpitrain never uses shared file
     * pointers, so leave that component out unless the user chose the
     * sharedfp components themselves. Read by MPI_Init from the environment. */
    setenv("OMPI_MCA_sharedfp", "^lockedfile", 0);
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS)
        return mt_err_set(e, MT_ERR_COMM, "MPI_Init_thread failed");
    c->world = MPI_COMM_WORLD;
    c->thread_multiple = provided >= MPI_THREAD_MULTIPLE;
    MPI_Comm_rank(c->world, &c->rank);
    MPI_Comm_size(c->world, &c->size);
    MPI_Comm_split_type(c->world, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &c->node);
    MPI_Comm_rank(c->node, &c->local_rank);
    MPI_Comm_size(c->node, &c->local_size);
    MPI_Comm_set_name(c->node, "node");
    c->tp = c->pp = c->mp = c->emb = MPI_COMM_NULL;
    c->dp = MPI_COMM_NULL;
    mt_err ignored = {0};
    mt_comm_layout(c, 1, 1, &ignored);
    mt_watchdog_init(c->world);
    if (provided < MPI_THREAD_FUNNELED)
        return mt_err_set(e, MT_ERR_COMM, "the MPI library does not support MPI_THREAD_FUNNELED");
    return MT_OK;
}

static void comm_free(MPI_Comm *c) {
    if (*c != MPI_COMM_NULL && *c != 0) MPI_Comm_free(c);
    *c = MPI_COMM_NULL;
}

int mt_comm_layout(mt_comm *c, int tp, int pp, mt_err *e) {
    if (tp < 1 || pp < 1 || c->size % (tp * pp) != 0) {
        mt_err_set(e, MT_ERR_USAGE,
                   "the %d ranks cannot be split into parallel.tp = %d x parallel.pp = %d "
                   "model-parallel ranks times data-parallel replicas (%d is not a multiple of %d)",
                   c->size, tp, pp, c->size, tp * pp);
        mt_err_hint(e, "start a multiple of tp x pp ranks, or change parallel.tp / parallel.pp");
        return e->code;
    }
    MPI_Comm *all[] = {&c->dp, &c->tp, &c->pp, &c->mp, &c->emb};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) comm_free(all[i]);
    mt_xcomm_free(&c->xdp), mt_xcomm_free(&c->xtp), mt_xcomm_free(&c->xemb);
    mt_xcomm_free(&c->xpp);
    int dp = c->size / (tp * pp);
    c->tp_size = tp, c->pp_size = pp, c->dp_size = dp;
    c->tp_rank = c->rank % tp;
    c->dp_rank = (c->rank / tp) % dp;
    c->pp_rank = c->rank / (tp * dp);
    /* colour: what the group shares; key: the rank inside it */
    MPI_Comm_split(c->world, c->pp_rank * tp + c->tp_rank, c->dp_rank, &c->dp);
    MPI_Comm_split(c->world, c->pp_rank * dp + c->dp_rank, c->tp_rank, &c->tp);
    MPI_Comm_split(c->world, c->dp_rank * tp + c->tp_rank, c->pp_rank, &c->pp);
    MPI_Comm_split(c->world, c->dp_rank, c->pp_rank * tp + c->tp_rank, &c->mp);
    int ends = pp > 1 && (c->pp_rank == 0 || c->pp_rank == pp - 1);
    MPI_Comm_split(c->world, ends ? c->dp_rank * tp + c->tp_rank : MPI_UNDEFINED, c->pp_rank,
                   &c->emb);
    c->prev = c->pp_rank > 0 ? c->rank - tp * dp : -1;
    c->next = c->pp_rank < pp - 1 ? c->rank + tp * dp : -1;
    /* the names the watchdog's error line gives them */
    MPI_Comm_set_name(c->dp, "dp"), MPI_Comm_set_name(c->tp, "tp");
    MPI_Comm_set_name(c->pp, "pp"), MPI_Comm_set_name(c->mp, "mp");
    if (c->emb != MPI_COMM_NULL) MPI_Comm_set_name(c->emb, "emb");
    mt_xcomm_host(&c->xdp, c->dp);
    mt_xcomm_host(&c->xtp, c->tp);
    mt_xcomm_host(&c->xemb, c->emb);
    mt_xcomm_host(&c->xpp, c->pp);
    return MT_OK;
}

int mt_comm_use_device(mt_comm *c, const mt_backend *be, mt_err *e) {
    int nccl = !be->host_memory && strcmp(be->name, "cuda") == 0;
    int node = c->rank; /* the node's name: the world rank of its first rank */
    MPI_Bcast(&node, 1, MPI_INT, 0, c->node);
    /* all four on every rank, whatever happens: each is collective */
    mt_xcomm_device(&c->xdp, be, nccl, node, e);
    mt_xcomm_device(&c->xtp, be, nccl, node, e);
    mt_xcomm_device(&c->xemb, be, nccl, node, e);
    mt_xcomm_device(&c->xpp, be, nccl, node, e);
    return mt_comm_agree(c, e);
}

void mt_comm_finalize(mt_comm *c) {
    mt_xcomm_free(&c->xdp), mt_xcomm_free(&c->xtp), mt_xcomm_free(&c->xemb);
    mt_xcomm_free(&c->xpp);
    MPI_Comm *all[] = {&c->node, &c->dp, &c->tp, &c->pp, &c->mp, &c->emb};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) comm_free(all[i]);
    mt_watchdog_free();
    mt_coll_release();
    MPI_Finalize();
}

int mt_comm_agree(const mt_comm *c, mt_err *e) {
    int first = e->code != MT_OK ? c->rank : INT_MAX;
    mt_coll_min_ints(c->world, &first, 1);
    if (first == INT_MAX) return MT_OK;
    if (c->rank == first && first != 0) {
        size_t len = strlen(e->msg);
        snprintf(e->msg + len, sizeof e->msg - len, " [rank %d]", first);
    }
    mt_coll_bcast(c->world, first, e, sizeof *e);
    return e->code;
}

void mt_comm_dup_world(const mt_comm *c, const char *name, MPI_Comm *out) {
    MPI_Comm_dup(c->world, out);
    MPI_Comm_set_name(*out, name);
}

void mt_comm_free_dup(MPI_Comm *comm) {
    comm_free(comm);
}
