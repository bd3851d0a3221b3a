/*
 * trainer.c - the training loop: data parallelism over replicas, each a
 * tensor- and pipeline-parallel split of the model (docs/PARALLEL.md).
 *
 * Every global batch of train.global_batch samples is split evenly: replica
 * r takes positions [r*B/P, (r+1)*B/P) of it, in parallel.microbatches
 * micro-batches that run through its pipeline. The sample order of epoch e is a
 * permutation drawn from (seed, e) alone, so it is the same on every rank
 * and at every world size. Each rank's gradient is scaled by 1/B (the global
 * batch) and the gradients are summed with one all-reduce, so every rank
 * holds the mean gradient of the global batch and takes the same step.
 * Errors are agreed on at phase boundaries and, during the loop, through a
 * flag carried by the per-step reduction, so no rank is left waiting.
 */
#include "trainer.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/config.h"
#include "core/gpt.h"
#include "core/lineage.h"
#include "core/mlp.h"
#include "core/optim.h"
#include "core/params.h"
#include "core/resume.h"
#include "core/state_views.h"
#include "base/rng.h"
#include "core/version.h"
#include "io/checkpoint.h"
#include "io/dataset.h"
#include "io/files.h"
#include "io/metrics.h"
#include "io/modelfile.h"
#include "io/registry.h"
#include "io/tokens.h"
#include "io/rundir.h"
#include "io/sha256.h"
#include "kernels/backend.h"
#include "core/stage.h"
#include "parallel/threads.h"

#define EVAL_CHUNK  256
#define TIMING_SKIP 5 /* first steps excluded from ms/step (warm-up) */

typedef struct {
    mt_comm *comm;
    mt_config cfg;
    char *config_text; /* resolved INI */
    const mt_backend *be;
    int threads;
    int gpt;                 /* model.kind = gpt */
    mt_dataset train, test;  /* mlp */
    mt_token_set tok[2];     /* gpt: train and validation shards */
    int64_t n_train, n_eval; /* samples (mlp) or sequences (gpt) */
    int T;                   /* gpt: tokens per sequence */
    mt_params params;
    mt_stage st;          /* the model stage this rank runs, and its pipeline */
    int64_t mb_rows;      /* samples (mlp) or sequences (gpt) per micro-batch */
    double busy_fraction; /* of the timed loop spent computing (the rest: pipeline bubble) */
    int32_t *xt, *yt;     /* gpt: (local_batch, T) this step's inputs and targets */
    /* data files for the lineage: path, SHA-256, size */
    int nfiles;
    char (*file_path)[MT_TOKENS_PATH], (*file_sha)[72];
    const char **file_path_p, **file_sha_p;
    int64_t *file_bytes;
    mt_optim opt;
    /* train.device: the GPU this rank uses ("" on the CPU), and host copies
     * of the parameters and optimizer state for checkpoints, init and resume
     * (hp, hopt: the real ones when the backend's memory is host memory) */
    char gpu[256];
    mt_params *hp, hp_store;
    mt_optim *hopt, hopt_store;
    /* the batch in the backend's memory (the host buffers themselves on the CPU) */
    float *dxb;
    int32_t *dyb, *dxt, *dyt;
    int64_t local_batch, steps_per_epoch;
    float *xb;      /* (local_batch, D) this step's inputs */
    int32_t *yb;    /* (local_batch) this step's labels */
    int64_t *order; /* (train.n) sample order of the current epoch */
    int64_t order_epoch;
    char run_dir[1024], run_id[37], data_sha[65];
    mt_metrics metrics;
    /* checkpoints */
    int64_t start_step;                /* 0, or the step of the checkpoint resumed */
    char resume_path[MT_CKPT_PATH];    /* "" for a fresh start */
    mt_ckpt_meta resumed;              /* what that checkpoint recorded */
    char resume_sha[72];               /* that file's SHA-256 */
    char ckpt_dir[MT_CKPT_PATH];       /* "" when this run writes none */
    char ckpt_last[MT_CKPT_PATH + 64]; /* newest checkpoint this run wrote */
    char ckpt_last_sha[72];            /* its SHA-256 and size, for the registry */
    int64_t ckpt_last_bytes;
    double ckpt_time;  /* seconds spent writing checkpoints */
    int64_t stop_step; /* where an early stop ended the run */
    int64_t step_done; /* steps completed so far */
    struct {
        double loss, train_acc, grad_norm, lr, test_loss, test_acc;
    } last; /* newest metrics, NaN until measured */
    /* registry (rank 0) */
    char registry[MT_CFG_STR_LEN + 32]; /* "" when registry.enabled is false */
    char hosts[4096];                   /* distinct host names of the ranks */
    int registered;                     /* START is in the registry */
    mt_err retire_err;                  /* a DELETE record that could not be written */
} trainer;

/* ---- set-up ---- */

static char *read_config(const char *path, mt_err *e) {
    char *buf;
    size_t len;
    if (mt_file_read(path, "config file", MT_ERR_USAGE, &buf, &len, e)) return NULL;
    if (strlen(buf) != len) {
        free(buf);
        mt_err_set(e, MT_ERR_USAGE, "config file %s contains a NUL byte (not a text file?)", path);
        return NULL;
    }
    return buf;
}

/* Rank 0 reads the file and shares its text, so every rank parses the same
 * bytes and reaches the same verdict. */
static int load_config(trainer *t, const mt_train_args *a, mt_err *e) {
    mt_comm *c = t->comm;
    char *text = NULL;
    if (c->rank == 0) text = read_config(a->config_path, e);
    if (mt_comm_agree(c, e)) return e->code;
    mt_comm_bcast_text(c->world, 0, &text);
    mt_config_defaults(&t->cfg);
    int rc = mt_config_parse(&t->cfg, text, a->config_path, e);
    free(text);
    for (int i = 0; !rc && i < a->n_overrides; i++) rc = mt_config_set(&t->cfg, a->overrides[i], e);
    if (!rc) rc = mt_config_validate(&t->cfg, e);
    /* the same verdict on every rank: all parsed the same text */
    if (!rc) rc = mt_comm_layout(c, (int)t->cfg.parallel.tp, (int)t->cfg.parallel.pp, e);
    if (!rc && t->cfg.train.global_batch % c->dp_size != 0) {
        mt_err_set(e, MT_ERR_USAGE,
                   "train.global_batch = %lld is not divisible by the %d data-parallel replicas "
                   "(%d ranks / (tp %d x pp %d))",
                   (long long)t->cfg.train.global_batch, c->dp_size, c->size, c->tp_size,
                   c->pp_size);
        mt_err_hint(e, "choose a global batch that is a multiple of the replica count");
    } else if (!rc && (t->cfg.train.global_batch / c->dp_size) % t->cfg.parallel.microbatches) {
        mt_err_set(e, MT_ERR_USAGE,
                   "each data-parallel replica's %lld samples per step (train.global_batch / %d) "
                   "do not split into parallel.microbatches = %lld equal micro-batches",
                   (long long)(t->cfg.train.global_batch / c->dp_size), c->dp_size,
                   (long long)t->cfg.parallel.microbatches);
        mt_err_hint(e, "choose a global batch that is a multiple of replicas x microbatches");
    }
    if (mt_comm_agree(c, e)) return e->code;
    size_t need = mt_config_format(&t->cfg, NULL, 0) + 1;
    t->config_text = malloc(need);
    mt_config_format(&t->cfg, t->config_text, need);
    return MT_OK;
}

static int load_tokens(trainer *t, mt_err *e) {
    const mt_config *cfg = &t->cfg;
    t->T = (int)(cfg->train.seq_len ? cfg->train.seq_len : cfg->model.block_size);
    const char *pat[2] = {cfg->data.train_tokens, cfg->data.val_tokens};
    const char *key[2] = {"data.train_tokens", "data.val_tokens"};
    int64_t n[2] = {0, 0};
    for (int k = 0; k < 2 && !e->code; k++) {
        if (mt_tokens_open(&t->tok[k], pat[k], (int)cfg->model.vocab_size, e)) break;
        n[k] = mt_tokens_windows(&t->tok[k], t->T);
        if (n[k] == 0) {
            mt_err_set(e, MT_ERR_USAGE,
                       "%s (%s) holds %lld tokens: not one sequence of %d + 1 tokens "
                       "(model.block_size / train.seq_len is larger than the data)",
                       key[k], pat[k], (long long)t->tok[k].total, t->T);
            mt_err_hint(e, "use more data, or a smaller model.block_size or train.seq_len");
        }
    }
    t->n_train = n[0];
    t->n_eval =
        cfg->train.eval_windows && cfg->train.eval_windows < n[1] ? cfg->train.eval_windows : n[1];
    if (!e->code && t->n_train < cfg->train.global_batch)
        mt_err_set(e, MT_ERR_USAGE,
                   "train.global_batch = %lld is larger than the %lld sequences of %d tokens in "
                   "%s",
                   (long long)cfg->train.global_batch, (long long)t->n_train, t->T,
                   cfg->data.train_tokens);
    return mt_comm_agree(t->comm, e);
}

static int load_data(trainer *t, mt_err *e) {
    const mt_config *cfg = &t->cfg;
    if (t->gpt) return load_tokens(t, e);
    const mt_cfg_intlist *l = &cfg->model.layers;
    int64_t dim = l->v[0], classes = l->v[l->n - 1];
    if (!mt_dataset_load(&t->train, cfg->data.path, cfg->data.train_images, cfg->data.train_labels,
                         dim, classes, e))
        mt_dataset_load(&t->test, cfg->data.path, cfg->data.test_images, cfg->data.test_labels, dim,
                        classes, e);
    t->n_train = t->train.n;
    t->n_eval = t->test.n;
    if (!e->code && t->train.n < cfg->train.global_batch)
        mt_err_set(e, MT_ERR_USAGE,
                   "train.global_batch = %lld is larger than the %lld training samples in %s",
                   (long long)cfg->train.global_batch, (long long)t->train.n, cfg->data.path);
    return mt_comm_agree(t->comm, e);
}

/* ---- device ---- */

/* The backend every rank computes with (train.device), the GPU each rank
 * uses (printed per rank by rank 0), the matmul precision, and the comms
 * for the backend's memory. The same verdict on every rank. */
static int setup_device(trainer *t, mt_err *e) {
    mt_comm *c = t->comm;
    const mt_config *cfg = &t->cfg;
    int want = cfg->train.device, cuda = 0;
    t->be = mt_backend_cpu();
    if (want != MT_DEVICE_CPU) {
        /* every rank probes and takes its GPU; then all agree: any rank
         * without one is an error for cuda, the CPU everywhere for auto */
        char why[256] = "";
        int have = mt_backend_probe("cuda", why, sizeof why) > 0;
        if (have && mt_backend_select_device("cuda", c->local_rank, t->gpu, sizeof t->gpu) < 0) {
            snprintf(why, sizeof why, "%s", t->gpu);
            have = 0;
        }
        int lack = have ? INT_MAX : c->rank, first = INT_MAX;
        MPI_Allreduce(&lack, &first, 1, MPI_INT, MPI_MIN, c->world);
        if (first != INT_MAX) { /* that rank says why */
            MPI_Bcast(why, sizeof why, MPI_CHAR, first, c->world);
            t->gpu[0] = '\0';
            if (want == MT_DEVICE_CUDA) {
                mt_err_set(e, MT_ERR_USAGE, "train.device = cuda, but rank %d cannot use a GPU: %s",
                           first, why);
                mt_err_hint(e, "run where every rank sees a GPU, or set train.device = cpu "
                               "(auto falls back to the CPU)");
                return e->code;
            }
            if (c->rank == 0)
                printf("device: train.device = auto: rank %d cannot use a GPU (%s); training on "
                       "the CPU\n",
                       first, why);
        } else {
            cuda = 1;
        }
    }
    if (cuda) {
        t->be = mt_backend_get("cuda");
        char host[64] = "?";
        gethostname(host, sizeof host - 1);
        const char *vis = getenv("CUDA_VISIBLE_DEVICES");
        char line[512], *all = c->rank == 0 ? malloc((size_t)c->size * sizeof line) : NULL;
        snprintf(line, sizeof line, "device: rank %d (%s, local rank %d of %d%s%s): %s", c->rank,
                 host, c->local_rank, c->local_size, vis ? ", CUDA_VISIBLE_DEVICES=" : "",
                 vis ? vis : "", t->gpu);
        MPI_Gather(line, sizeof line, MPI_CHAR, all, sizeof line, MPI_CHAR, 0, c->world);
        for (int r = 0; all && r < c->size; r++) printf("%s\n", all + (size_t)r * sizeof line);
        free(all);
    } else if (getenv("MPITRAIN_TEST_STAGED") && strcmp(getenv("MPITRAIN_TEST_STAGED"), "1") == 0) {
        t->be = mt_backend_cpu_staged(); /* the device paths, on the CPU (tests) */
        if (c->rank == 0)
            printf("device: cpu-staged (MPITRAIN_TEST_STAGED=1: host memory treated as a "
                   "device's)\n");
    }
    if (cfg->train.precision == MT_PREC_BF16 && !t->be->set_precision)
        mt_err_set(e, MT_ERR_USAGE, "train.precision = bf16: the %s backend has no bf16 matmuls",
                   t->be->name);
    else if (t->be->set_precision)
        t->be->set_precision(cfg->train.precision == MT_PREC_BF16);
    if (mt_comm_agree(c, e) || mt_comm_use_device(c, t->be, e)) return e->code;
    if (c->rank == 0) {
        const mt_xcomm *x[4] = {&c->xdp, &c->xtp, &c->xemb, &c->xpp};
        const char *what[4] = {"data-parallel gradient sums", "tensor-parallel sums",
                               "tied-embedding sums", "pipeline messages"};
        for (int i = 0; i < 4; i++)
            if (x[i]->size > 1 && !t->be->host_memory)
                printf("comms: %s: %s\n", what[i], x[i]->how);
    }
    fflush(stdout);
    return MT_OK;
}

/* Host copies of the parameters and optimizer state when they live in
 * device memory; otherwise hp and hopt are the real ones. */
static int host_views(trainer *t, mt_err *e) {
    if (!t->params.be) {
        t->hp = &t->params;
        t->hopt = &t->opt;
        return MT_OK;
    }
    t->hp_store = t->params;
    t->hp_store.be = NULL;
    t->hp_store.grad = NULL;
    t->hp_store.data = mt_alloc_floats(t->params.numel);
    t->hopt_store = t->opt;
    t->hopt_store.m = mt_alloc_floats(t->params.numel);
    t->hopt_store.v = t->opt.v ? mt_alloc_floats(t->params.numel) : NULL;
    t->hp = &t->hp_store;
    t->hopt = &t->hopt_store;
    if (!t->hp_store.data || !t->hopt_store.m || (t->opt.v && !t->hopt_store.v))
        return mt_err_set(e, MT_ERR_INTERNAL, "out of host memory for the parameters' copy");
    return MT_OK;
}

/* Parameters and optimizer state: device -> host copies (before a
 * checkpoint or the model file), host copies -> device (after init or a
 * resume). Nothing to do when they are the same memory. */
static void params_to_host(trainer *t) {
    if (t->hp == &t->params) return;
    const mt_backend *be = t->be;
    size_t n = t->params.numel;
    be->to_host(t->hp->data, t->params.data, n);
    be->to_host(t->hopt->m, t->opt.m, n);
    if (t->opt.v) be->to_host(t->hopt->v, t->opt.v, n);
    t->hopt->t = t->opt.t;
}

static void params_to_device(trainer *t) {
    if (t->hp == &t->params) return;
    const mt_backend *be = t->be;
    size_t n = t->params.numel;
    be->to_device(t->params.data, t->hp->data, n);
    be->to_device(t->opt.m, t->hopt->m, n);
    if (t->opt.v) be->to_device(t->opt.v, t->hopt->v, n);
    t->opt.t = t->hopt->t;
}

/* Device twins of the batch buffers (rows rows). */
static int batch_buffers(trainer *t, int64_t rows, mt_err *e) {
    if (t->be->host_memory) {
        t->dxb = t->xb, t->dyb = t->yb, t->dxt = t->xt, t->dyt = t->yt;
        return MT_OK;
    }
    const mt_backend *be = t->be;
    size_t r = (size_t)rows;
    int bad = 0; /* int32 buffers are allocated as floats: the same 4 bytes */
    if (t->gpt) {
        bad |= !(t->dxt = (int32_t *)be->alloc(r * (size_t)t->T));
        bad |= !(t->dyt = (int32_t *)be->alloc(r * (size_t)t->T));
    } else {
        bad |= !(t->dxb = be->alloc(r * (size_t)t->train.dim));
        bad |= !(t->dyb = (int32_t *)be->alloc(r));
    }
    if (bad) return mt_err_set(e, MT_ERR_INTERNAL, "out of %s memory for the batch", be->name);
    return MT_OK;
}

static void upload_i32(const trainer *t, int32_t *dst, const int32_t *src, size_t n) {
    t->be->to_device((float *)dst, (const float *)src, n);
}

/* gpt: the first rows sequences of xt, yt into the backend's memory */
static void upload_tokens(const trainer *t, int64_t rows) {
    if (t->be->host_memory) return;
    upload_i32(t, t->dxt, t->xt, (size_t)rows * (size_t)t->T);
    upload_i32(t, t->dyt, t->yt, (size_t)rows * (size_t)t->T);
}

static int build(trainer *t, mt_err *e) {
    t->local_batch = t->cfg.train.global_batch / t->comm->dp_size;
    t->mb_rows = t->local_batch / t->cfg.parallel.microbatches;
    t->steps_per_epoch = t->n_train / t->cfg.train.global_batch;
    mt_params_init(&t->params);
    const mt_config *cfg = &t->cfg;
    /* evaluation runs batches of a micro-batch (gpt) or EVAL_CHUNK samples (mlp) */
    int64_t eval_rows = t->gpt ? t->mb_rows : EVAL_CHUNK;
    if (!mt_stage_build(&t->st, t->comm, cfg, t->be, &t->params, t->mb_rows, eval_rows, t->T, e) &&
        !mt_optim_init(&t->opt, cfg, &t->params, t->be, e) && !host_views(t, e)) {
        mt_params_init_values(t->hp, (uint64_t)cfg->run.seed);
        params_to_device(t);
        size_t nb = (size_t)t->local_batch;
        if (t->gpt) {
            t->xt = malloc(nb * (size_t)t->T * sizeof(int32_t));
            t->yt = malloc(nb * (size_t)t->T * sizeof(int32_t));
        } else {
            t->xb = malloc(nb * (size_t)t->train.dim * sizeof(float));
            t->yb = malloc(nb * sizeof(int32_t));
        }
        t->order = malloc((size_t)t->n_train * sizeof(int64_t));
        t->order_epoch = -1;
        if (!(t->gpt ? t->xt && t->yt : t->xb && t->yb) || !t->order)
            mt_err_set(e, MT_ERR_INTERNAL, "out of memory for the batch buffers");
        else /* evaluation batches: up to eval_rows (mlp) */
            batch_buffers(t, t->local_batch > eval_rows ? t->local_batch : eval_rows, e);
    }
    return mt_comm_agree(t->comm, e);
}

/* ---- checkpoints ---- */

static int writes_checkpoints(const mt_config *cfg) {
    return cfg->checkpoint.every_steps > 0 || cfg->checkpoint.every_seconds > 0 ||
           cfg->checkpoint.save_final || cfg->checkpoint.save_initial ||
           cfg->train.exit_after_steps > 0;
}

/* Rank 0 picks and checks the checkpoint; then every rank reads its part. */
static int resume(trainer *t, mt_err *e) {
    const mt_comm *c = t->comm;
    mt_ckpt_info info = {0};
    if (c->rank == 0) {
        if (!mt_resume_find(&t->cfg, t->resume_path, sizeof t->resume_path, &info, stdout, e) &&
            t->resume_path[0])
            mt_resume_check(&t->cfg, t->hp, t->resume_path, &info, stdout, e);
        t->resumed = info.meta;
        snprintf(t->resume_sha, sizeof t->resume_sha, "%s", info.file_sha256);
        mt_ckpt_info_free(&info);
        /* without a .sha256 beside it, hash it here: the registry names the parent by it */
        if (!e->code && t->resume_path[0] && !t->resume_sha[0] && t->cfg.registry.enabled)
            mt_sha256_file(t->resume_path, t->resume_sha, e);
        fflush(stdout);
    }
    if (mt_comm_agree(c, e)) return e->code;
    MPI_Bcast(t->resume_path, sizeof t->resume_path, MPI_CHAR, 0, c->world);
    if (!t->resume_path[0]) return MT_OK;
    MPI_Bcast(&t->resumed, sizeof t->resumed, MPI_BYTE, 0, c->world);
    mt_state_views sv;
    mt_state_views_build(&sv, t->hp, t->hopt, e);
    if (mt_comm_agree(c, e)) return e->code;
    int64_t optim_steps = 0;
    mt_ckpt_load(c, t->resume_path, mt_state_optim_kind(t->hopt), sv.v, sv.n, &optim_steps, e);
    mt_state_views_free(&sv);
    if (e->code) return e->code;
    t->hopt->t = optim_steps;
    params_to_device(t);
    t->start_step = t->step_done = t->resumed.step;
    if (t->start_step > t->cfg.train.steps) {
        mt_err_set(e, MT_ERR_USAGE, "checkpoint %s is at step %lld, beyond train.steps = %lld",
                   t->resume_path, (long long)t->start_step, (long long)t->cfg.train.steps);
        mt_err_hint(e, "raise train.steps to train further");
    }
    t->last.loss = t->resumed.loss;
    t->last.train_acc = t->resumed.train_acc;
    t->last.grad_norm = t->resumed.grad_norm;
    t->last.lr = t->resumed.lr_last;
    t->last.test_loss = t->resumed.test_loss;
    t->last.test_acc = t->resumed.test_acc;
    return mt_comm_agree(c, e);
}

/* Same file, by device and inode (paths may differ in spelling). */
static int same_dir(const char *a, const char *b) {
    struct stat x, y;
    return stat(a, &x) == 0 && stat(b, &y) == 0 && x.st_dev == y.st_dev && x.st_ino == y.st_ino;
}

/* A named checkpoint.dir is shared between runs: a run may only write into
 * one that holds checkpoints when it continues from one of them. */
static int check_ckpt_dir(trainer *t, mt_err *e) {
    const char *dir = t->cfg.checkpoint.dir;
    if (t->comm->rank == 0 && dir[0] && writes_checkpoints(&t->cfg)) {
        int64_t *steps;
        int n;
        char from[MT_CKPT_PATH];
        mt_file_dir(t->resume_path, from, sizeof from);
        if (!mt_ckpt_list(dir, &steps, &n, e) && n > 0 &&
            !(t->resume_path[0] && same_dir(from, dir))) {
            mt_err_set(e, MT_ERR_USAGE,
                       "checkpoint.dir %s already holds %d checkpoint(s) of another run (newest "
                       "step %lld); this run would mix with them",
                       dir, n, (long long)steps[n - 1]);
            mt_err_hint(e, "set checkpoint.resume = auto to continue them, or choose another "
                           "checkpoint.dir");
        }
        free(steps);
        if (!e->code) mt_mkdirs(dir, e);
    }
    return mt_comm_agree(t->comm, e);
}

/* ---- registry ---- */

static void lineage_of(const trainer *t, mt_lineage *l) {
    memset(l, 0, sizeof *l);
    l->cfg = &t->cfg;
    l->config_text = t->config_text;
    l->run_id = t->run_id;
    l->run_dir = t->run_dir;
    l->data_sha256 = t->data_sha;
    l->data_name = t->gpt ? t->cfg.data.train_tokens : t->cfg.data.path;
    l->nfiles = t->nfiles;
    l->file_path = t->file_path_p;
    l->file_sha256 = t->file_sha_p;
    l->file_bytes = t->file_bytes;
    l->split_name[0] = "train";
    l->split_name[1] = t->gpt ? "val" : "test";
    l->split_src[0] = t->gpt ? t->cfg.data.train_tokens : t->cfg.data.train_images;
    l->split_src[1] = t->gpt ? t->cfg.data.val_tokens : t->cfg.data.test_images;
    l->split_unit = t->gpt ? "sequences" : "samples";
    l->split_n[0] = t->n_train;
    l->split_n[1] = t->gpt ? mt_tokens_windows(&t->tok[1], t->T) : t->n_eval;
    l->world = t->comm->size;
    l->dp = t->comm->dp_size;
    l->tp = t->comm->tp_size;
    l->pp = t->comm->pp_size;
    l->threads = t->threads;
    l->device = t->be ? t->be->name : "cpu";
    l->precision = mt_config_enum_name("train", "precision", t->cfg.train.precision);
    l->gpu = t->gpu;
    l->hosts = t->hosts;
    l->parent_ckpt = t->resume_path;
    l->parent_sha256 = t->resume_sha;
    l->parent_run_id = t->resumed.run_id;
    l->parent_step = t->resumed.step;
}

static mt_lineage_metrics metrics_at(const trainer *t, int64_t step) {
    mt_lineage_metrics m = {step,       t->last.loss,      t->last.train_acc, t->last.grad_norm,
                            t->last.lr, t->last.test_loss, t->last.test_acc};
    return m;
}

/* Rank 0: appends ev to the registry (and deletes it); *version gets a
 * CHECKPOINT's model version. */
static int registry_append(trainer *t, cJSON *ev, int64_t *version, mt_err *e) {
    int64_t v = 0;
    if (t->registry[0]) mt_registry_append(t->registry, ev, &v, e);
    cJSON_Delete(ev);
    if (version) *version = v;
    return e->code;
}

/* Every rank's host name, gathered on rank 0 as a list of distinct names. */
static void gather_hosts(trainer *t) {
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    const mt_comm *c = t->comm;
    char *all = c->rank == 0 ? calloc((size_t)c->size, sizeof host) : NULL;
    MPI_Gather(host, sizeof host, MPI_CHAR, all, sizeof host, MPI_CHAR, 0, c->world);
    if (c->rank != 0) return;
    size_t len = 0;
    for (int r = 0; all && r < c->size; r++) {
        const char *h = all + (size_t)r * sizeof host;
        int seen = 0;
        for (int q = 0; q < r && !seen; q++) seen = strcmp(h, all + (size_t)q * sizeof host) == 0;
        if (!seen && len + strlen(h) + 2 < sizeof t->hosts)
            len += (size_t)snprintf(t->hosts + len, sizeof t->hosts - len, "%s\n", h);
    }
    free(all);
}

/* Retention deleting a checkpoint: a DELETE record, so the registry knows
 * why that version's artifact is gone. */
static void on_ckpt_removed(const char *path, const char *sha256, void *ctx) {
    trainer *t = ctx;
    if (!t->registry[0] || t->retire_err.code) return;
    char why[160];
    snprintf(why, sizeof why,
             "retention: checkpoint.keep_last = %lld, checkpoint.keep_every = %lld",
             (long long)t->cfg.checkpoint.keep_last, (long long)t->cfg.checkpoint.keep_every);
    mt_lineage l;
    lineage_of(t, &l);
    registry_append(t, mt_lineage_delete_event(&l, path, sha256, why), NULL, &t->retire_err);
}

/* Writes the checkpoint of step done, points `latest` at it, applies retention. */
static int save_checkpoint(trainer *t, int64_t done, mt_err *e) {
    const mt_comm *c = t->comm;
    const mt_config *cfg = &t->cfg;
    double t0 = MPI_Wtime();
    mt_ckpt_meta m;
    memset(&m, 0, sizeof m);
    mt_version_info v;
    mt_version_get(&v);
    m.step = done;
    m.epoch = done / t->steps_per_epoch;
    m.step_in_epoch = done % t->steps_per_epoch;
    m.samples_seen = done * cfg->train.global_batch;
    m.seed = cfg->run.seed;
    m.optim_steps = t->opt.t;
    m.lr_last = t->last.lr;
    m.lr_next = mt_lr_at(cfg, done);
    m.loss = t->last.loss;
    m.train_acc = t->last.train_acc;
    m.grad_norm = t->last.grad_norm;
    m.test_loss = t->last.test_loss;
    m.test_acc = t->last.test_acc;
    m.world = c->size;
    m.dp = c->dp_size;
    m.tp = c->tp_size;
    m.pp = c->pp_size;
    m.code_dirty = v.dirty;
    m.hyper = mt_state_hyper(t->hopt);
    snprintf(m.optim_kind, sizeof m.optim_kind, "%s",
             mt_config_enum_name("optim", "kind", cfg->optim.kind));
    snprintf(m.model_kind, sizeof m.model_kind, "%s",
             mt_config_enum_name("model", "kind", cfg->model.kind));
    snprintf(m.run_id, sizeof m.run_id, "%s", t->run_id);
    snprintf(m.run_name, sizeof m.run_name, "%s", mt_lineage_model_name(cfg));
    time_t now = time(NULL);
    strftime(m.created_utc, sizeof m.created_utc, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    snprintf(m.mpitrain_version, sizeof m.mpitrain_version, "%s", v.version);
    snprintf(m.code_commit, sizeof m.code_commit, "%s", v.commit);
    snprintf(m.data_sha256, sizeof m.data_sha256, "%s", t->data_sha);
    snprintf(m.resumed_from, sizeof m.resumed_from, "%s", t->resume_path);

    char name[64], path[MT_CKPT_PATH + 64], sha[72] = "";
    mt_ckpt_name(done, name, sizeof name);
    snprintf(path, sizeof path, "%s/%s", t->ckpt_dir, name);
    double write_s = 0.0;
    params_to_host(t);
    mt_state_views sv;
    mt_state_views_build(&sv, t->hp, t->hopt, e);
    if (mt_comm_agree(c, e)) return e->code;
    mt_ckpt_write(c, path, &m, t->config_text, sv.v, sv.n, cfg->checkpoint.timeout, &write_s, sha,
                  e);
    mt_state_views_free(&sv);
    if (e->code) return e->code;
    if (c->rank == 0) {
        double hash_s = MPI_Wtime() - t0 - write_s;
        struct stat st = {0};
        stat(path, &st);
        double mb = (double)st.st_size / 1e6;
        printf("checkpoint: step %lld -> %s (%.1f MB in %.3f s = %.1f MB/s; sha256 %.3f s)\n",
               (long long)done, path, mb, write_s, mb / write_s, hash_s);
        /* the file is valid and durable: point `latest` at it, register it as a
         * model version, then apply retention */
        mt_ckpt_set_latest(t->ckpt_dir, name, e);
        if (!e->code && t->registry[0]) {
            mt_lineage l;
            lineage_of(t, &l);
            cJSON *ev = mt_lineage_event(&l, "CHECKPOINT");
            mt_lineage_add_output(ev, "checkpoint", path, sha, (int64_t)st.st_size);
            mt_lineage_add_model(ev, &l, path, sha, (int64_t)st.st_size, done);
            mt_lineage_metrics mm = metrics_at(t, done);
            mt_lineage_add_metrics(ev, &mm);
            int64_t version;
            if (!registry_append(t, ev, &version, e))
                printf("registry: %s version %lld (step %lld) in %s\n", mt_lineage_model_name(cfg),
                       (long long)version, (long long)done, t->registry);
        }
        if (!e->code)
            mt_ckpt_retain(t->ckpt_dir, cfg->checkpoint.keep_last, cfg->checkpoint.keep_every,
                           stdout, on_ckpt_removed, t, e);
        if (!e->code && t->retire_err.code) *e = t->retire_err;
        fflush(stdout);
        snprintf(t->ckpt_last, sizeof t->ckpt_last, "%s", path);
        snprintf(t->ckpt_last_sha, sizeof t->ckpt_last_sha, "%s", sha);
        t->ckpt_last_bytes = (int64_t)st.st_size;
    }
    t->ckpt_time += MPI_Wtime() - t0;
    return mt_comm_agree(c, e);
}

static cJSON *run_record(const trainer *t) {
    mt_version_info v;
    mt_version_get(&v);
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "run_id", t->run_id);
    cJSON_AddStringToObject(r, "run_dir", t->run_dir);
    cJSON *code = cJSON_AddObjectToObject(r, "code");
    cJSON_AddStringToObject(code, "mpitrain_version", v.version);
    cJSON_AddStringToObject(code, "commit", v.commit);
    cJSON_AddStringToObject(code, "branch", v.branch);
    cJSON_AddBoolToObject(code, "dirty", v.dirty);
    cJSON *lib = cJSON_AddObjectToObject(r, "libraries");
    cJSON_AddStringToObject(lib, "mpi", v.mpi);
    cJSON_AddStringToObject(lib, "hdf5", v.hdf5);
    cJSON_AddStringToObject(lib, "blas", v.blas);
    cJSON_AddStringToObject(lib, "compiler", v.compiler);
    mt_backend_versions bv;
    mt_backend_versions_get(&bv);
    if (bv.cuda_runtime[0]) cJSON_AddStringToObject(lib, "cuda_runtime", bv.cuda_runtime);
    if (bv.cuda_driver[0]) cJSON_AddStringToObject(lib, "cuda_driver", bv.cuda_driver);
    if (bv.cublas[0]) cJSON_AddStringToObject(lib, "cublas", bv.cublas);
    if (bv.nccl[0]) cJSON_AddStringToObject(lib, "nccl", bv.nccl);
    cJSON *data = cJSON_AddObjectToObject(r, "data");
    if (t->gpt) {
        cJSON_AddStringToObject(data, "train_tokens", t->cfg.data.train_tokens);
        cJSON_AddStringToObject(data, "val_tokens", t->cfg.data.val_tokens);
        cJSON_AddStringToObject(data, "sha256", t->data_sha);
        cJSON_AddNumberToObject(data, "seq_len", t->T);
        cJSON_AddNumberToObject(data, "train_sequences", (double)t->n_train);
        cJSON_AddNumberToObject(data, "val_sequences", (double)t->n_eval);
    } else {
        cJSON_AddStringToObject(data, "path", t->cfg.data.path);
        cJSON_AddStringToObject(data, "sha256", t->data_sha);
        cJSON_AddNumberToObject(data, "train_samples", (double)t->train.n);
        cJSON_AddNumberToObject(data, "test_samples", (double)t->test.n);
    }
    cJSON *lay = cJSON_AddObjectToObject(r, "layout");
    cJSON_AddNumberToObject(lay, "world", t->comm->size);
    cJSON_AddNumberToObject(lay, "dp", t->comm->dp_size);
    cJSON_AddNumberToObject(lay, "tp", t->comm->tp_size);
    cJSON_AddNumberToObject(lay, "pp", t->comm->pp_size);
    cJSON_AddNumberToObject(lay, "microbatches", (double)t->cfg.parallel.microbatches);
    cJSON_AddStringToObject(lay, "schedule",
                            mt_config_enum_name("parallel", "schedule", t->cfg.parallel.schedule));
    cJSON_AddNumberToObject(lay, "threads_per_rank", t->threads);
    cJSON_AddStringToObject(lay, "device", t->be ? t->be->name : "cpu");
    cJSON_AddStringToObject(lay, "precision",
                            mt_config_enum_name("train", "precision", t->cfg.train.precision));
    if (t->gpu[0]) cJSON_AddStringToObject(lay, "gpu", t->gpu);
    if (t->be && !t->be->host_memory) {
        cJSON *cm = cJSON_AddObjectToObject(lay, "comms");
        cJSON_AddStringToObject(cm, "dp", t->comm->xdp.how);
        cJSON_AddStringToObject(cm, "tp", t->comm->xtp.how);
        cJSON_AddStringToObject(cm, "emb", t->comm->xemb.how);
        cJSON_AddStringToObject(cm, "pp", t->comm->xpp.how);
    }
    cJSON_AddStringToObject(r, "host", host);
    /* The scheduler's view, when there is one (Slurm today). */
    cJSON *sched = cJSON_AddObjectToObject(r, "scheduler");
    static const char *slurm_vars[] = {"SLURM_JOB_ID",       "SLURM_RESTART_COUNT",
                                       "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID",
                                       "SLURM_JOB_NAME",     "SLURM_JOB_PARTITION"};
    for (size_t i = 0; i < sizeof slurm_vars / sizeof slurm_vars[0]; i++) {
        const char *val = getenv(slurm_vars[i]);
        if (val) cJSON_AddStringToObject(sched, slurm_vars[i], val);
    }
    cJSON_AddNumberToObject(r, "parameters", (double)mt_params_global_count(&t->params));
    if (t->resume_path[0]) {
        cJSON *par = cJSON_AddObjectToObject(r, "parent");
        cJSON_AddStringToObject(par, "checkpoint", t->resume_path);
        cJSON_AddStringToObject(par, "run_id", t->resumed.run_id);
        cJSON_AddNumberToObject(par, "step", (double)t->resumed.step);
    }
    if (t->ckpt_dir[0]) cJSON_AddStringToObject(r, "checkpoint_dir", t->ckpt_dir);
    if (t->registry[0]) {
        cJSON *reg = cJSON_AddObjectToObject(r, "registry");
        cJSON_AddStringToObject(reg, "path", t->registry);
        cJSON_AddStringToObject(reg, "model_name", mt_lineage_model_name(&t->cfg));
    }
    return r;
}

/* Rank 0: the SHA-256 of every data file; t->data_sha is that of the file
 * (mlp) or of the manifest "SHA256  PATH\n" of every shard, training then
 * validation (gpt). */
static int hash_data(trainer *t, mt_err *e) {
    int n = t->gpt ? t->tok[0].n + t->tok[1].n : 1;
    t->nfiles = n;
    t->file_path = calloc((size_t)n, sizeof *t->file_path);
    t->file_sha = calloc((size_t)n, sizeof *t->file_sha);
    t->file_path_p = calloc((size_t)n, sizeof *t->file_path_p);
    t->file_sha_p = calloc((size_t)n, sizeof *t->file_sha_p);
    t->file_bytes = calloc((size_t)n, sizeof *t->file_bytes);
    if (!t->file_path || !t->file_sha || !t->file_path_p || !t->file_sha_p || !t->file_bytes)
        return mt_err_set(e, MT_ERR_INTERNAL, "out of memory");
    size_t mlen = 0;
    char *manifest = NULL;
    for (int i = 0; i < n && !e->code; i++) {
        const char *path = !t->gpt           ? t->cfg.data.path
                           : i < t->tok[0].n ? t->tok[0].shard[i].path
                                             : t->tok[1].shard[i - t->tok[0].n].path;
        snprintf(t->file_path[i], sizeof t->file_path[i], "%s", path);
        t->file_path_p[i] = t->file_path[i];
        t->file_sha_p[i] = t->file_sha[i];
        struct stat st = {0};
        stat(path, &st);
        t->file_bytes[i] = (int64_t)st.st_size;
        if (mt_sha256_file(path, t->file_sha[i], e)) break;
        size_t add = strlen(t->file_sha[i]) + strlen(path) + 4;
        char *m = realloc(manifest, mlen + add);
        if (!m) {
            mt_err_set(e, MT_ERR_INTERNAL, "out of memory");
            break;
        }
        manifest = m;
        mlen += (size_t)snprintf(manifest + mlen, add, "%s  %s\n", t->file_sha[i], path);
    }
    if (!e->code) {
        if (t->gpt)
            mt_sha256_buf(manifest, mlen, t->data_sha);
        else
            snprintf(t->data_sha, sizeof t->data_sha, "%s", t->file_sha[0]);
    }
    free(manifest);
    return e->code;
}

/* Rank 0 claims the run folder and writes the resolved config and run record. */
static int open_run(trainer *t, mt_err *e) {
    const mt_comm *c = t->comm;
    if (c->rank == 0) mt_uuid4(t->run_id);
    MPI_Bcast(t->run_id, sizeof t->run_id, MPI_CHAR, 0, c->world);
    gather_hosts(t);
    if (c->rank == 0) {
        char path[1100];
        if (t->cfg.registry.enabled)
            mt_lineage_registry_path(&t->cfg, t->registry, sizeof t->registry);
        if (!hash_data(t, e) &&
            !mt_rundir_create(t->cfg.run.dir, t->cfg.run.name, t->run_dir, sizeof t->run_dir, e) &&
            t->registry[0] && mt_registry_writable(t->registry, e)) {
            rmdir(t->run_dir); /* still empty: a bad registry leaves nothing behind */
            t->run_dir[0] = '\0';
        }
        if (!e->code) {
            snprintf(path, sizeof path, "%s/config.ini", t->run_dir);
            if (!mt_file_write_atomic(path, t->config_text, strlen(t->config_text), e)) {
                cJSON *r = run_record(t);
                char *s = cJSON_Print(r);
                snprintf(path, sizeof path, "%s/run.json", t->run_dir);
                mt_file_write_atomic(path, s, strlen(s), e);
                free(s);
                cJSON_Delete(r);
            }
            snprintf(path, sizeof path, "%s/metrics.jsonl", t->run_dir);
            if (!e->code) mt_metrics_open(&t->metrics, path, e);
            if (!e->code && writes_checkpoints(&t->cfg)) {
                mt_resume_ckpt_dir(&t->cfg, t->run_dir, t->ckpt_dir, sizeof t->ckpt_dir);
                mt_mkdirs(t->ckpt_dir, e);
            }
            if (!e->code && t->registry[0]) {
                mt_lineage l;
                lineage_of(t, &l);
                t->registered = !registry_append(t, mt_lineage_event(&l, "START"), NULL, e);
            }
        }
    }
    MPI_Bcast(t->run_dir, sizeof t->run_dir, MPI_CHAR, 0, c->world);
    MPI_Bcast(t->ckpt_dir, sizeof t->ckpt_dir, MPI_CHAR, 0, c->world);
    return mt_comm_agree(c, e);
}

/* What the split bought: each rank's share of the model and its memory. */
enum { MEM_RANK, MEM_STAGE, MEM_TP, MEM_DP, MEM_L0, MEM_L1, MEM_PARAMS, MEM_STATE, MEM_ACT, MEM_N };

/* Collective: every rank's row, gathered on rank 0 into rows (world x MEM_N). */
static void gather_memory(const trainer *t, double *rows) {
    const mt_comm *c = t->comm;
    int nstate = t->cfg.optim.kind == MT_OPTIM_ADAMW ? 2 : 1;
    double n = (double)mt_params_count(&t->params);
    double mine[MEM_N] = {c->rank,
                          c->pp_rank,
                          c->tp_rank,
                          c->dp_rank,
                          t->st.sp.first[c->pp_rank],
                          t->st.sp.first[c->pp_rank + 1],
                          n,
                          4.0 * n * (2 + nstate),
                          mt_stage_act_bytes(&t->st)};
    MPI_Gather(mine, MEM_N, MPI_DOUBLE, rows, MEM_N, MPI_DOUBLE, 0, c->world);
}

static void print_memory(const trainer *t, const double *rows) {
    const mt_comm *c = t->comm;
    printf("per rank (one replica; the others match; memory is an estimate of what mpitrain "
           "allocates):\n");
    printf("  %4s %5s %3s %9s %12s %14s %13s %10s\n", "rank", "stage", "tp", "layers", "parameters",
           "weights+grad+", "activations", "total");
    printf("  %4s %5s %3s %9s %12s %14s %13s %10s\n", "", "", "", "", "", "optimizer MB", "MB",
           "MB");
    for (int r = 0; r < c->size; r++) {
        const double *x = rows + (size_t)r * MEM_N;
        if (x[MEM_DP] != 0) continue;
        char layers[32];
        snprintf(layers, sizeof layers, "%d-%d", (int)x[MEM_L0], (int)x[MEM_L1] - 1);
        printf("  %4d %5d %3d %9s %12.0f %14.1f %13.1f %10.1f\n", (int)x[MEM_RANK],
               (int)x[MEM_STAGE], (int)x[MEM_TP], layers, x[MEM_PARAMS], x[MEM_STATE] / 1e6,
               x[MEM_ACT] / 1e6, (x[MEM_STATE] + x[MEM_ACT]) / 1e6);
    }
}

static void print_header(const trainer *t, const double *mem) {
    mt_version_info v;
    mt_version_get(&v);
    const mt_config *cfg = &t->cfg;
    printf("mpitrain %s (%.12s%s) | %s | HDF5 %s\n", v.version, v.commit, v.dirty ? "-dirty" : "",
           v.mpi, v.hdf5);
    printf("resolved config:\n%s\n", t->config_text);
    const mt_comm *c = t->comm;
    printf("layout: world %d = dp %d x tp %d x pp %d | %lld micro-batch(es) of %lld per replica, "
           "schedule %s | %d thread(s) per rank | backend %s\n",
           c->size, c->dp_size, c->tp_size, c->pp_size, (long long)cfg->parallel.microbatches,
           (long long)t->mb_rows,
           mt_config_enum_name("parallel", "schedule", cfg->parallel.schedule), t->threads,
           t->be->name);
    print_memory(t, mem);
    if (t->gpt) {
        printf("data: %s: %lld tokens in %d shard(s), %lld sequences of %d; %s: %lld tokens, %lld "
               "sequences for validation (sha256 %.16s...)\n",
               cfg->data.train_tokens, (long long)t->tok[0].total, t->tok[0].n,
               (long long)t->n_train, t->T, cfg->data.val_tokens, (long long)t->tok[1].total,
               (long long)t->n_eval, t->data_sha);
        printf("model: gpt %lld layers, %lld heads, n_embd %lld, block_size %lld, vocab %lld, "
               "dropout %g | %zu parameters | optimizer %s\n",
               (long long)cfg->model.n_layer, (long long)cfg->model.n_head,
               (long long)cfg->model.n_embd, (long long)cfg->model.block_size,
               (long long)cfg->model.vocab_size, cfg->model.dropout,
               mt_params_global_count(&t->params),
               mt_config_enum_name("optim", "kind", cfg->optim.kind));
    } else {
        printf("data: %s: %lld train, %lld test samples of %lld inputs (sha256 %.16s...)\n",
               cfg->data.path, (long long)t->train.n, (long long)t->test.n, (long long)t->train.dim,
               t->data_sha);
        printf("model: mlp ");
        for (int i = 0; i < cfg->model.layers.n; i++)
            printf("%s%lld", i ? "-" : "", (long long)cfg->model.layers.v[i]);
        printf(" %s | %zu parameters | optimizer %s\n",
               mt_config_enum_name("model", "activation", cfg->model.activation),
               mt_params_global_count(&t->params),
               mt_config_enum_name("optim", "kind", cfg->optim.kind));
    }
    printf("training: %lld steps of %lld %s (%lld per replica), %lld steps per epoch\n",
           (long long)cfg->train.steps, (long long)cfg->train.global_batch,
           t->gpt ? "sequences" : "samples", (long long)t->local_batch,
           (long long)t->steps_per_epoch);
    printf("run folder: %s (run id %s)\n", t->run_dir, t->run_id);
    if (t->ckpt_dir[0])
        printf("checkpoints: %s (every %lld steps, every %g s, keep last %lld, keep every %lld, "
               "final %s)\n",
               t->ckpt_dir, (long long)cfg->checkpoint.every_steps, cfg->checkpoint.every_seconds,
               (long long)cfg->checkpoint.keep_last, (long long)cfg->checkpoint.keep_every,
               cfg->checkpoint.save_final ? "yes" : "no");
    if (t->resume_path[0]) {
        printf("resume: from %s (step %lld of run %s, epoch %lld, %lld samples seen, next lr "
               "%.3e)\n",
               t->resume_path, (long long)t->resumed.step, t->resumed.run_id,
               (long long)t->resumed.epoch, (long long)t->resumed.samples_seen,
               mt_lr_at(cfg, t->resumed.step));
        if (strcmp(t->resumed.data_sha256, t->data_sha) != 0)
            printf("warning: the data file differs from the one the checkpoint was trained on "
                   "(sha256 %.16s... then, %.16s... now)\n",
                   t->resumed.data_sha256, t->data_sha);
    }
    if (!mt_threads_blas_openmp())
        printf("warning: the OpenBLAS loaded is not its OpenMP build; with more than one thread "
               "per rank its threads and mpitrain's compete for the cores\n");
    fflush(stdout);
}

/* ---- stopping on a signal ---- */

/* The first SIGTERM, SIGUSR1 or SIGUSR2 (Slurm's warning of a time limit or
 * preemption, scancel --signal, or mpirun forwarding USR1/USR2) asks for a
 * checkpoint at the end of the current step and exit status 75. */
static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig) {
    if (!stop_signal) stop_signal = sig;
}

static void catch_stop_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL);
}

/* ---- the loop ---- */

static void gather_batch(trainer *t, int64_t step) {
    int64_t epoch = step / t->steps_per_epoch, b = step % t->steps_per_epoch;
    if (epoch != t->order_epoch) {
        if (t->cfg.train.shuffle)
            mt_rng_permutation((uint64_t)t->cfg.run.seed,
                               mt_rng_substream(mt_rng_stream("order/epoch"), (uint64_t)epoch),
                               t->order, t->n_train);
        else
            for (int64_t i = 0; i < t->n_train; i++) t->order[i] = i;
        t->order_epoch = epoch;
    }
    int64_t first = b * t->cfg.train.global_batch + t->comm->dp_rank * t->local_batch;
    size_t nb = (size_t)t->local_batch;
    if (t->gpt) {
        for (int64_t j = 0; j < t->local_batch; j++)
            mt_tokens_window(&t->tok[0], t->order[first + j], t->T, t->xt + (size_t)j * t->T,
                             t->yt + (size_t)j * t->T);
        upload_tokens(t, t->local_batch);
        return;
    }
    size_t D = (size_t)t->train.dim;
    for (int64_t j = 0; j < t->local_batch; j++) {
        int64_t s = t->order[first + j];
        memcpy(t->xb + (size_t)j * D, t->train.x + (size_t)s * D, D * sizeof(float));
        t->yb[j] = t->train.y[s];
    }
    if (!t->be->host_memory) {
        t->be->to_device(t->dxb, t->xb, nb * D);
        upload_i32(t, t->dyb, t->yb, nb);
    }
}

typedef struct {
    double loss;
    double accuracy;
    int64_t correct, total;
} eval_result;

/* Each data-parallel replica evaluates its contiguous share of the split
 * (mlp: d; gpt: the first n_eval validation sequences) through its
 * pipeline; losses and hits are summed over the replicas. */
static eval_result evaluate(trainer *t, const mt_dataset *d) {
    const mt_comm *c = t->comm;
    int64_t n = t->gpt ? t->n_eval : d->n, chunk = t->gpt ? t->mb_rows : EVAL_CHUNK;
    int64_t lo = n * c->dp_rank / c->dp_size, hi = n * (c->dp_rank + 1) / c->dp_size;
    int T = t->T;
    t->st.loss = t->st.correct = 0.0;
    for (int64_t i = lo; i < hi; i += chunk) {
        int64_t k = hi - i < chunk ? hi - i : chunk;
        if (t->gpt) {
            for (int64_t j = 0; j < k; j++)
                mt_tokens_window(&t->tok[1], i + j, T, t->xt + (size_t)j * T,
                                 t->yt + (size_t)j * T);
            upload_tokens(t, k);
            mt_stage_eval(&t->st, NULL, t->dxt, t->dyt, k);
        } else if (t->be->host_memory) {
            mt_stage_eval(&t->st, d->x + (size_t)i * (size_t)d->dim, NULL, d->y + i, k);
        } else {
            t->be->to_device(t->dxb, d->x + (size_t)i * (size_t)d->dim, (size_t)k * (size_t)d->dim);
            upload_i32(t, t->dyb, d->y + i, (size_t)k);
            mt_stage_eval(&t->st, t->dxb, NULL, t->dyb, k);
        }
    }
    double sums[2] = {0.0, 0.0};
    if (mt_stage_reports(&t->st)) sums[0] = t->st.loss, sums[1] = t->st.correct;
    mt_comm_sum_doubles(c->world, sums, 2);
    double units = t->gpt ? (double)n * T : (double)n;
    eval_result r = {sums[0] / units, sums[1] / units, (int64_t)sums[1], (int64_t)units};
    return r;
}

static void fmt_duration(double s, char *buf, size_t n) {
    if (s < 60)
        snprintf(buf, n, "%.0fs", s);
    else if (s < 3600)
        snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else
        snprintf(buf, n, "%dh%02dm", (int)(s / 3600), ((int)s % 3600) / 60);
}

/* Trains from t->start_step. *stopped is set when the run ends early: -1 for
 * train.exit_after_steps, else the number of the signal that stopped it. */
static int train_loop(trainer *t, double *ms_per_step, eval_result *final_eval, int *stopped,
                      mt_err *e) {
    const mt_config *cfg = &t->cfg;
    const mt_comm *c = t->comm;
    const mt_backend *be = t->be;
    int64_t steps = cfg->train.steps, B = cfg->train.global_batch, start = t->start_step;
    /* units averaged over: samples (mlp) or tokens (gpt) of the global batch */
    int64_t units = t->gpt ? B * t->T : B;
    float scale = 1.0f / (float)units;
    double t_start = MPI_Wtime(), t_timed = 0.0, t_log = t_start, eval_time = 0.0;
    double t_ckpt = t_start, ckpt_time0 = t->ckpt_time; /* last checkpoint; time spent before */
    int64_t log_from = start, end_step = steps;
    *ms_per_step = 0.0;
    if (start == 0 && cfg->checkpoint.save_initial && save_checkpoint(t, 0, e)) return e->code;
    if (start == steps) { /* resumed at the end: only the final evaluation is left */
        *final_eval = evaluate(t, &t->test);
        return mt_comm_agree(c, e);
    }
    for (int64_t step = start; step < steps; step++) {
        if (step - start == TIMING_SKIP)
            t_timed = MPI_Wtime(), eval_time = 0.0, ckpt_time0 = t->ckpt_time,
            t->st.pipe.busy_s = 0.0;
        gather_batch(t, step);
        /* every micro-batch through this replica's pipeline; the gradient of
         * the step accumulates over them */
        t->st.loss = t->st.correct = 0.0;
        if (t->gpt) { /* dropout masks follow the global sequence index */
            int64_t seq0 = (step % t->steps_per_epoch) * B + c->dp_rank * t->local_batch;
            mt_gpt_dropout drop = {1, (uint64_t)cfg->run.seed, (uint64_t)step,
                                   (step / t->steps_per_epoch) * t->n_train + seq0};
            mt_stage_train(&t->st, c, NULL, t->dxt, t->dyt, &drop, scale);
        } else {
            mt_stage_train(&t->st, c, t->dxb, NULL, t->dyb, NULL, scale);
        }
        int reports = mt_stage_reports(&t->st);
        double loss_sum = reports ? t->st.loss : 0.0;
        int64_t correct = reports ? (int64_t)t->st.correct : 0;
        mt_xcomm_sum(&c->xdp, t->params.grad, t->params.numel);
        /* loss, correct, a flag for an error any rank met last step, and rank 0's
         * verdict on the wall-clock checkpoint interval */
        double every_s = cfg->checkpoint.every_seconds;
        int time_due = c->rank == 0 && every_s > 0 && MPI_Wtime() - t_ckpt >= every_s;
        double red[5] = {loss_sum, (double)correct, e->code ? 1.0 : 0.0, time_due ? 1.0 : 0.0,
                         stop_signal ? 1.0 : 0.0};
        mt_comm_sum_doubles(c->world, red, 5);
        if (red[2] > 0) return mt_comm_agree(c, e);
        double loss = red[0] / (double)units;
        double norm = mt_optim_clip(&t->params, be, cfg->optim.grad_clip, c->mp, c->tp_rank);
        if (!isfinite(loss) || !isfinite(norm)) {
            mt_err_set(e, MT_ERR_NUMERIC, "%s is %s at step %lld",
                       isfinite(loss) ? "gradient norm" : "loss",
                       isnan(isfinite(loss) ? norm : loss) ? "NaN" : "infinite",
                       (long long)step + 1);
            mt_err_hint(e, "lower optim.lr, or set optim.grad_clip (e.g. 1.0)");
            return e->code; /* every rank saw the same reduced values */
        }
        double lr = mt_lr_at(cfg, step);
        mt_optim_step(&t->opt, &t->params, be, (float)lr);
        t->last.loss = loss;
        t->last.train_acc = red[1] / (double)units;
        t->last.grad_norm = norm;
        t->last.lr = lr;

        int64_t done = step + 1;
        t->step_done = done;
        int last = done == steps;
        int do_eval = last || (cfg->train.eval_every > 0 && done % cfg->train.eval_every == 0);
        int do_log = last || done % cfg->run.log_every == 0 || done == 1;
        eval_result ev = {0};
        if (do_eval) {
            double t0 = MPI_Wtime();
            ev = evaluate(t, &t->test);
            eval_time += MPI_Wtime() - t0;
            if (last) *final_eval = ev;
            t->last.test_loss = ev.loss;
            t->last.test_acc = ev.accuracy;
        }
        if (c->rank == 0 && (do_log || do_eval)) {
            double now = MPI_Wtime();
            double rate = (double)(done - log_from) * (double)units / (now - t_log);
            double per_step = (now - t_start) / (double)done;
            char eta[32];
            fmt_duration(per_step * (double)(steps - done), eta, sizeof eta);
            int64_t epoch = step / t->steps_per_epoch;
            if (do_log)
                printf("step %*lld/%lld | epoch %lld | loss %.4f | acc %5.1f%% | lr %.2e | "
                       "%.0f %s/s | eta %s\n",
                       (int)snprintf(NULL, 0, "%lld", (long long)steps), (long long)done,
                       (long long)steps, (long long)epoch, loss, 100.0 * red[1] / (double)units, lr,
                       rate, t->gpt ? "tokens" : "samples", eta);
            if (do_eval && t->gpt)
                printf("eval  step %lld: val loss %.4f | val next-token accuracy %.2f%% "
                       "(%lld/%lld tokens)\n",
                       (long long)done, ev.loss, 100.0 * ev.accuracy, (long long)ev.correct,
                       (long long)ev.total);
            else if (do_eval)
                printf("eval  step %lld: test loss %.4f | test accuracy %.2f%% (%lld/%lld)\n",
                       (long long)done, ev.loss, 100.0 * ev.accuracy, (long long)ev.correct,
                       (long long)ev.total);
            fflush(stdout);
            cJSON *m = cJSON_CreateObject();
            cJSON_AddStringToObject(m, "run_id", t->run_id);
            cJSON_AddNumberToObject(m, "step", (double)done);
            cJSON_AddNumberToObject(m, "epoch", (double)epoch);
            cJSON_AddNumberToObject(m, "samples", (double)(done * B));
            cJSON_AddNumberToObject(m, "loss", loss);
            cJSON_AddNumberToObject(m, "train_acc", red[1] / (double)units);
            cJSON_AddNumberToObject(m, "lr", lr);
            cJSON_AddNumberToObject(m, "grad_norm", norm);
            cJSON_AddNumberToObject(m, "samples_per_s", rate * (double)B / (double)units);
            if (t->gpt) cJSON_AddNumberToObject(m, "tokens_per_s", rate);
            cJSON_AddNumberToObject(m, "time_s", now - t_start);
            if (do_eval) {
                cJSON_AddNumberToObject(m, "test_loss", ev.loss);
                cJSON_AddNumberToObject(m, "test_acc", ev.accuracy);
            }
            mt_metrics_write(&t->metrics, m, e); /* a failure stops all ranks next step */
            cJSON_Delete(m);
            t_log = MPI_Wtime();
            log_from = done;
        }
        int stop =
            cfg->train.exit_after_steps > 0 && done - start == cfg->train.exit_after_steps && !last;
        if (red[4] > 0) { /* a signal on some rank: which one (the highest, if several) */
            int sig = stop_signal;
            MPI_Allreduce(MPI_IN_PLACE, &sig, 1, MPI_INT, MPI_MAX, c->world);
            stop = last ? 0 : sig;
        } else if (stop) {
            stop = -1;
        }
        const int64_t every = cfg->checkpoint.every_steps;
        if ((every > 0 && done % every == 0) || red[3] > 0 ||
            (last && cfg->checkpoint.save_final) || stop) {
            if (save_checkpoint(t, done, e)) return e->code;
            t_ckpt = MPI_Wtime();
        }
        if (stop) {
            *stopped = stop;
            t->stop_step = end_step = done;
            break;
        }
    }
    double end = MPI_Wtime(), other = eval_time + (t->ckpt_time - ckpt_time0);
    int64_t ran = end_step - start, timed = ran - TIMING_SKIP;
    *ms_per_step = timed > 0 ? 1e3 * (end - t_timed - other) / (double)timed
                             : 1e3 * (end - t_start - other) / (double)ran;
    double loop_s = (timed > 0 ? end - t_timed : end - t_start) - other;
    t->busy_fraction = loop_s > 0 ? t->st.pipe.busy_s / loop_s : 0.0;
    return mt_comm_agree(c, e);
}

/* A run ended early (how: see train_loop's *stopped): its checkpoint is the
 * result. A signal ends with MT_ERR_STOPPED (75), so a job script can requeue. */
static int finish_stopped(trainer *t, double ms_per_step, int how, int64_t step, mt_err *e) {
    const mt_comm *c = t->comm;
    char why[64];
    if (how < 0)
        snprintf(why, sizeof why, "train.exit_after_steps = %lld",
                 (long long)t->cfg.train.exit_after_steps);
    else
        snprintf(why, sizeof why, "signal SIG%s", sigabbrev_np(how) ? sigabbrev_np(how) : "?");
    if (c->rank == 0) {
        cJSON *r = run_record(t);
        cJSON *res = cJSON_AddObjectToObject(r, "result");
        cJSON_AddStringToObject(res, "status", "stopped");
        cJSON_AddStringToObject(res, "reason", why);
        cJSON_AddNumberToObject(res, "steps", (double)step);
        cJSON_AddStringToObject(res, "checkpoint", t->ckpt_last);
        cJSON_AddNumberToObject(res, "ms_per_step", ms_per_step);
        char *s = cJSON_Print(r);
        char path[1100];
        snprintf(path, sizeof path, "%s/run.json", t->run_dir);
        mt_file_write_atomic(path, s, strlen(s), e);
        free(s);
        cJSON_Delete(r);
        mt_metrics_close(&t->metrics, e);
        if (!e->code && t->registry[0]) {
            mt_lineage l;
            lineage_of(t, &l);
            cJSON *ev = mt_lineage_event(&l, "ABORT");
            if (t->ckpt_last[0])
                mt_lineage_add_output(ev, "checkpoint", t->ckpt_last, t->ckpt_last_sha,
                                      t->ckpt_last_bytes);
            mt_lineage_metrics mm = metrics_at(t, step);
            mt_lineage_add_metrics(ev, &mm);
            char msg[160];
            snprintf(msg, sizeof msg, "stopped at step %lld of %lld by %s", (long long)step,
                     (long long)t->cfg.train.steps, why);
            mt_lineage_add_result(ev, "stopped", how > 0 ? MT_ERR_STOPPED : 0, msg);
            if (e->code)
                cJSON_Delete(ev);
            else
                registry_append(t, ev, NULL, e);
        }
    }
    if (mt_comm_agree(c, e)) return e->code;
    if (c->rank == 0) {
        printf("time: %.3f ms/step\n", ms_per_step);
        printf("stopped at step %lld of %lld (%s); checkpoint %s\n", (long long)step,
               (long long)t->cfg.train.steps, why, t->ckpt_last);
        printf("continue with: --set checkpoint.resume=auto\n");
        fflush(stdout);
    }
    if (how > 0) {
        mt_err_set(e, MT_ERR_STOPPED,
                   "stopped by %s at step %lld after writing checkpoint %s (exit status 75: "
                   "requeue the job)",
                   why, (long long)step, t->ckpt_last);
        mt_err_hint(e, "resume with --set checkpoint.resume=auto");
    }
    return e->code;
}

/* Collective: the pipeline's record (per stage: most micro-batches of
 * activations held at once, fraction of the step spent computing) as JSON
 * on rank 0 (NULL elsewhere). */
static cJSON *pipeline_record(const trainer *t) {
    const mt_comm *c = t->comm;
    /* stage, whether this rank speaks for it (replica 0, tensor-parallel rank 0), counters */
    double mine[4] = {c->pp_rank, c->tp_rank == 0 && c->dp_rank == 0, t->st.pipe.peak,
                      t->busy_fraction};
    double *all = c->rank == 0 ? calloc((size_t)c->size, sizeof mine) : NULL;
    MPI_Gather(mine, 4, MPI_DOUBLE, all, 4, MPI_DOUBLE, 0, c->world);
    if (c->rank != 0) return NULL;
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "schedule",
                            mt_config_enum_name("parallel", "schedule", t->cfg.parallel.schedule));
    cJSON_AddNumberToObject(p, "microbatches", (double)t->cfg.parallel.microbatches);
    cJSON *peak = cJSON_AddArrayToObject(p, "peak_held");
    cJSON *busy = cJSON_AddArrayToObject(p, "busy_fraction");
    for (int s = 0; s < c->pp_size; s++)
        for (int r = 0; all && r < c->size; r++) {
            const double *x = all + 4 * (size_t)r;
            if ((int)x[0] != s || x[1] == 0) continue;
            cJSON_AddItemToArray(peak, cJSON_CreateNumber(x[2]));
            cJSON_AddItemToArray(busy, cJSON_CreateNumber(x[3]));
        }
    double m = (double)t->cfg.parallel.microbatches, pp = c->pp_size;
    cJSON_AddNumberToObject(p, "bubble_theory", (pp - 1) / (m + pp - 1));
    free(all);
    return p;
}

static int finish_run(trainer *t, double ms_per_step, const eval_result *ev, mt_err *e) {
    const mt_comm *c = t->comm;
    char model_path[1100];
    snprintf(model_path, sizeof model_path, "%s/model.h5", t->run_dir);
    mt_version_info v;
    mt_version_get(&v);
    mt_modelfile_meta meta = {t->config_text,
                              t->run_id,
                              mt_config_enum_name("model", "kind", t->cfg.model.kind),
                              (long long)t->cfg.train.steps,
                              v.version,
                              v.commit};
    /* collective: rank 0 gathers each tensor from the ranks holding it */
    params_to_host(t);
    mt_state_views sv;
    mt_state_views_build(&sv, t->hp, NULL, e);
    if (mt_comm_agree(c, e)) return e->code;
    mt_modelfile_write(c, model_path, sv.v, sv.n, &meta, e);
    mt_state_views_free(&sv);
    if (e->code) return e->code;
    cJSON *pipe = pipeline_record(t);
    if (c->rank == 0) {
        {
            cJSON *r = run_record(t);
            cJSON *res = cJSON_AddObjectToObject(r, "result");
            if (c->pp_size > 1) {
                char *ps = cJSON_PrintUnformatted(pipe);
                printf("pipeline: %s\n", ps);
                free(ps);
            }
            cJSON_AddItemToObject(res, "pipeline", pipe);
            cJSON_AddStringToObject(res, "status", "completed");
            cJSON_AddNumberToObject(res, "steps", (double)t->cfg.train.steps);
            cJSON_AddNumberToObject(res, "test_loss", ev->loss);
            cJSON_AddNumberToObject(res, "test_accuracy", ev->accuracy);
            cJSON_AddNumberToObject(res, "ms_per_step", ms_per_step);
            cJSON_AddStringToObject(res, "model", model_path);
            char *s = cJSON_Print(r);
            char path[1100];
            snprintf(path, sizeof path, "%s/run.json", t->run_dir);
            mt_file_write_atomic(path, s, strlen(s), e);
            free(s);
            cJSON_Delete(r);
        }
        mt_metrics_close(&t->metrics, e);
        char sha[72] = "";
        if (!e->code && t->registry[0] && !mt_sha256_file(model_path, sha, e)) {
            mt_lineage l;
            lineage_of(t, &l);
            cJSON *rec = mt_lineage_event(&l, "COMPLETE");
            struct stat st = {0};
            stat(model_path, &st);
            mt_lineage_add_output(rec, "model", model_path, sha, (int64_t)st.st_size);
            if (t->ckpt_last[0])
                mt_lineage_add_output(rec, "checkpoint", t->ckpt_last, t->ckpt_last_sha,
                                      t->ckpt_last_bytes);
            mt_lineage_metrics mm = metrics_at(t, t->cfg.train.steps);
            mm.test_loss = ev->loss;
            mm.test_acc = ev->accuracy;
            mt_lineage_add_metrics(rec, &mm);
            mt_lineage_add_result(rec, "completed", 0, NULL);
            if (e->code)
                cJSON_Delete(rec);
            else
                registry_append(t, rec, NULL, e);
        }
    }
    if (mt_comm_agree(c, e)) return e->code;
    if (c->rank == 0) {
        double units = (double)t->cfg.train.global_batch * (t->gpt ? t->T : 1);
        printf("time: %.3f ms/step (%lld steps, first %d excluded), %.0f %s/s\n", ms_per_step,
               (long long)t->cfg.train.steps, TIMING_SKIP, 1e3 * units / ms_per_step,
               t->gpt ? "tokens" : "samples");
        if (t->gpt)
            printf("final val loss %.4f | val next-token accuracy %.2f%% (%lld/%lld tokens)\n",
                   ev->loss, 100.0 * ev->accuracy, (long long)ev->correct, (long long)ev->total);
        else
            printf("final test accuracy: %.2f%% (%lld/%lld), test loss %.4f\n",
                   100.0 * ev->accuracy, (long long)ev->correct, (long long)ev->total, ev->loss);
        printf("run files: %s (config.ini, run.json, metrics.jsonl, model.h5%s)\n", t->run_dir,
               t->ckpt_dir[0] && strncmp(t->ckpt_dir, t->run_dir, strlen(t->run_dir)) == 0
                   ? ", checkpoints/"
                   : "");
        if (t->ckpt_last[0]) printf("last checkpoint: %s\n", t->ckpt_last);
        fflush(stdout);
    }
    return MT_OK;
}

/* After the run folder exists, a failure is recorded in run.json too. */
static void record_failure(trainer *t, const mt_err *e) {
    if (t->comm->rank != 0 || !t->run_dir[0] || e->code == MT_ERR_STOPPED) return;
    cJSON *r = run_record(t);
    cJSON *res = cJSON_AddObjectToObject(r, "result");
    cJSON_AddStringToObject(res, "status", "failed");
    cJSON_AddNumberToObject(res, "exit_code", e->code);
    cJSON_AddStringToObject(res, "error", e->msg);
    char *s = cJSON_Print(r);
    char path[1100];
    snprintf(path, sizeof path, "%s/run.json", t->run_dir);
    mt_err ignored = {0}; /* the original error is the one to report */
    mt_file_write_atomic(path, s, strlen(s), &ignored);
    free(s);
    cJSON_Delete(r);
    if (t->registered) {
        mt_lineage l;
        lineage_of(t, &l);
        cJSON *ev = mt_lineage_event(&l, "FAIL");
        mt_lineage_metrics mm = metrics_at(t, t->step_done);
        mt_lineage_add_metrics(ev, &mm);
        mt_lineage_add_result(ev, "failed", e->code, e->msg);
        mt_err quiet = {0};
        if (registry_append(t, ev, NULL, &quiet))
            fprintf(stderr, "mpitrain: warning: could not record the failure in the registry: %s\n",
                    quiet.msg);
    }
}

static void release(trainer *t) {
    if (t->metrics.f) fclose(t->metrics.f);
    free(t->xb);
    free(t->yb);
    free(t->order);
    if (t->be) {
        mt_stage_free(&t->st);
        if (t->opt.m) mt_optim_free(&t->opt, t->be);
        if (!t->be->host_memory) {
            t->be->free(t->dxb), t->be->free(t->dyb);
            t->be->free(t->dxt), t->be->free(t->dyt);
        }
    }
    if (t->hp == &t->hp_store) {
        free(t->hp_store.data);
        free(t->hopt_store.m);
        free(t->hopt_store.v);
    }
    mt_params_free(&t->params);
    mt_dataset_free(&t->train);
    mt_dataset_free(&t->test);
    mt_tokens_close(&t->tok[0]);
    mt_tokens_close(&t->tok[1]);
    free(t->xt);
    free(t->yt);
    free(t->file_path);
    free(t->file_sha);
    free(t->file_path_p);
    free(t->file_sha_p);
    free(t->file_bytes);
    free(t->config_text);
}

int mt_train(mt_comm *comm, const mt_train_args *args, mt_err *e) {
    trainer t;
    memset(&t, 0, sizeof t);
    t.comm = comm;
    double ms = 0.0;
    eval_result ev = {0};
    t.last.loss = t.last.train_acc = t.last.grad_norm = t.last.lr = NAN;
    t.last.test_loss = t.last.test_acc = NAN;
    catch_stop_signals();
    if (!load_config(&t, args, e)) {
        t.gpt = t.cfg.model.kind == MT_MODEL_GPT;
        char why[128];
        t.threads = mt_threads_choose((int)t.cfg.run.threads, comm->local_size, why, sizeof why);
        mt_threads_apply(t.threads);
        if (!setup_device(&t, e) && !load_data(&t, e) && !build(&t, e) && !resume(&t, e) &&
            !check_ckpt_dir(&t, e) && !open_run(&t, e)) {
            double *mem = comm->rank == 0 ? calloc((size_t)comm->size, MEM_N * sizeof *mem) : NULL;
            gather_memory(&t, mem);
            if (comm->rank == 0) print_header(&t, mem);
            free(mem);
            int stopped = 0;
            if (!train_loop(&t, &ms, &ev, &stopped, e)) {
                if (stopped)
                    finish_stopped(&t, ms, stopped, t.stop_step, e);
                else
                    finish_run(&t, ms, &ev, e);
            }
            if (e->code) record_failure(&t, e);
        }
    }
    release(&t);
    return e->code;
}
