/*
 * device_setup.c - the device a run computes on (core/run.h): the backend
 * every rank uses (train.device), the GPU of each rank, the matmul
 * precision, the comms for the backend's memory, and the host copies of the
 * parameters and optimizer state that checkpoints, init and resume read and
 * write.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/run.h"
#include "kernels/backends.h"

/* Every rank probes and takes its GPU; then all agree: any rank without one
 * is an error for cuda, the CPU everywhere for auto. Returns 1 when every
 * rank has its GPU. */
static int take_gpus(mt_run *r, mt_err *e) {
    mt_comm *c = r->comm;
    char why[256] = "";
    int have = mt_backend_probe("cuda", why, sizeof why) > 0;
    if (have && mt_backend_select_device("cuda", c->local_rank, r->gpu, sizeof r->gpu) < 0) {
        snprintf(why, sizeof why, "%s", r->gpu);
        have = 0;
    }
    int first = have ? INT_MAX : c->rank;
    mt_coll_min_ints(c->world, &first, 1);
    if (first == INT_MAX) return 1;
    mt_coll_bcast(c->world, first, why, sizeof why); /* that rank says why */
    r->gpu[0] = '\0';
    if (r->cfg.train.device == MT_DEVICE_CUDA) {
        mt_err_set(e, MT_ERR_USAGE, "train.device = cuda, but rank %d cannot use a GPU: %s", first,
                   why);
        mt_err_hint(e, "run where every rank sees a GPU, or set train.device = cpu "
                       "(auto falls back to the CPU)");
    } else if (c->rank == 0) {
        printf("device: train.device = auto: rank %d cannot use a GPU (%s); training on the CPU\n",
               first, why);
    }
    return 0;
}

/* Rank 0 prints one line per rank: host, local rank, the GPU it took. */
static void print_gpus(const mt_run *r) {
    const mt_comm *c = r->comm;
    char host[64] = "?";
    gethostname(host, sizeof host - 1);
    const char *vis = getenv("CUDA_VISIBLE_DEVICES");
    char line[512], *all = c->rank == 0 ? malloc((size_t)c->size * sizeof line) : NULL;
    snprintf(line, sizeof line, "device: rank %d (%s, local rank %d of %d%s%s): %s", c->rank, host,
             c->local_rank, c->local_size, vis ? ", CUDA_VISIBLE_DEVICES=" : "", vis ? vis : "",
             r->gpu);
    mt_coll_gather(c->world, 0, line, sizeof line, all);
    for (int k = 0; all && k < c->size; k++) printf("%s\n", all + (size_t)k * sizeof line);
    free(all);
}

/* Whether a training step of this run waits for the device on the host
 * before the step's read (parallel/xcomm.h, mt_xcomm_watch_each): the
 * unfused loss returns values, ZeRO-1 and the deterministic sums copy to
 * the host, and a group without NCCL sums through host copies. */
static int host_waits_in_step(const mt_run *r) {
    const mt_comm *c = r->comm;
    const mt_config *cfg = &r->cfg;
    if (!cfg->train.fused || cfg->parallel.deterministic || cfg->parallel.zero) return 1;
    const mt_xcomm *x[4] = {&c->xdp, &c->xtp, &c->xemb, &c->xpp};
    for (int i = 0; i < 4; i++)
        if (x[i]->size > 1 && !x[i]->nccl) return 1;
    return 0;
}

/* The backend every rank computes with, the same verdict on every rank. */
int mt_run_setup_device(mt_run *r, mt_err *e) {
    mt_comm *c = r->comm;
    const mt_config *cfg = &r->cfg;
    r->be = mt_backend_cpu();
    int cuda = cfg->train.device != MT_DEVICE_CPU && take_gpus(r, e);
    if (e->code) return e->code; /* every rank set the same error */
    const char *staged = getenv("MPITRAIN_TEST_STAGED");
    if (cuda) {
        r->be = mt_backend_get("cuda");
        print_gpus(r);
    } else if (staged && strcmp(staged, "1") == 0) {
        r->be = mt_backend_cpu_staged(); /* the device paths, on the CPU (tests) */
        if (c->rank == 0)
            printf("device: cpu-staged (MPITRAIN_TEST_STAGED=1: host memory treated as a "
                   "device's)\n");
    }
    char why[512];
    /* (MPITRAIN_CPU_SBGEMM concerns bf16 matmuls only: an fp32 run ignores it) */
    if (!cuda && cfg->train.precision == MT_PREC_BF16 &&
        mt_backend_cpu_bf16_check(why, sizeof why) < 0)
        mt_err_set(e, MT_ERR_USAGE, "%s", why); /* before set_precision would exit */
    else if (cfg->train.precision == MT_PREC_BF16 && !r->be->set_precision)
        mt_err_set(e, MT_ERR_USAGE, "train.precision = bf16: the %s backend has no bf16 matmuls",
                   r->be->name);
    else if (r->be->set_precision)
        r->be->set_precision(cfg->train.precision == MT_PREC_BF16);
    if (mt_comm_agree(c, e) || mt_comm_use_device(c, r->be, e)) return e->code;
    mt_xcomm_watch_each(host_waits_in_step(r));
    if (c->rank == 0 && !cuda && cfg->train.precision == MT_PREC_BF16)
        printf("bf16 matmuls: %s\n", mt_backend_cpu_bf16_path());
    if (c->rank == 0) {
        const mt_xcomm *x[4] = {&c->xdp, &c->xtp, &c->xemb, &c->xpp};
        const char *what[4] = {"data-parallel gradient sums", "tensor-parallel sums",
                               "tied-embedding sums", "pipeline messages"};
        for (int i = 0; i < 4; i++)
            if (x[i]->size > 1 && !r->be->host_memory)
                printf("comms: %s: %s\n", what[i], x[i]->how);
    }
    fflush(stdout);
    return MT_OK;
}

/* Host copies of the parameters and optimizer state when they live in
 * device memory; otherwise hp and hopt are the real ones. */
int mt_run_host_views(mt_run *r, mt_err *e) {
    if (!r->params.be) {
        r->hp = &r->params;
        r->hopt = &r->opt;
        return MT_OK;
    }
    r->hp_store = r->params;
    r->hp_store.be = NULL;
    r->hp_store.grad = NULL;
    r->hp_store.data = mt_alloc_floats(r->params.numel);
    r->hopt_store = r->opt;
    r->hopt_store.m = mt_alloc_floats(r->opt.numel);
    r->hopt_store.v = r->opt.v ? mt_alloc_floats(r->opt.numel) : NULL;
    r->hp = &r->hp_store;
    r->hopt = &r->hopt_store;
    if (!r->hp_store.data || !r->hopt_store.m || (r->opt.v && !r->hopt_store.v))
        return mt_err_set(e, MT_ERR_INTERNAL, "out of host memory for the parameters' copy");
    return MT_OK;
}

void mt_run_state_to_host(mt_run *r) {
    if (r->hp == &r->params) return;
    const mt_backend *be = r->be;
    size_t n = r->params.numel, ns = r->opt.numel;
    be->to_host(r->hp->data, r->params.data, n);
    be->to_host(r->hopt->m, r->opt.m, ns);
    if (r->opt.v) be->to_host(r->hopt->v, r->opt.v, ns);
    r->hopt->t = r->opt.t;
}

void mt_run_state_to_device(mt_run *r) {
    if (r->hp == &r->params) return;
    const mt_backend *be = r->be;
    size_t n = r->params.numel, ns = r->opt.numel;
    be->to_device(r->params.data, r->hp->data, n);
    be->to_device(r->opt.m, r->hopt->m, ns);
    if (r->opt.v) be->to_device(r->opt.v, r->hopt->v, ns);
    r->opt.t = r->hopt->t;
}
