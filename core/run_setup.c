/*
 * run_setup.c - setting a run up (core/run.h): the configuration every rank
 * agrees on, the data, the model stage, its optimizer and the gradient's
 * reductions; and releasing them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fault.h"
#include "core/models.h"
#include "core/run.h"
#include "core/state_views.h"
#include "kernels/backends.h"

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

static int power_of_two(int64_t n) {
    return n > 0 && (n & (n - 1)) == 0;
}

/* parallel.deterministic's demands: the sum's tree (core/gradtree.h,
 * parallel/detsum.h) is a complete binary tree over the global batch's
 * micro-batches, each replica's a contiguous, aligned subtree. */
static int check_deterministic(const mt_run *r, mt_err *e) {
    const mt_comm *c = r->comm;
    int64_t m = r->cfg.parallel.microbatches;
    if (!r->cfg.parallel.deterministic) return MT_OK;
    if (!power_of_two(c->dp_size) || !power_of_two(m)) {
        mt_err_set(e, MT_ERR_USAGE,
                   "parallel.deterministic needs a power of two of data-parallel replicas and of "
                   "parallel.microbatches; this run has %d replicas (%d ranks / (tp %d x pp %d)) "
                   "and %lld micro-batches",
                   c->dp_size, c->size, c->tp_size, c->pp_size, (long long)m);
        mt_err_hint(e, "run 1, 2, 4, 8, ... replicas with 1, 2, 4, ... micro-batches each, or "
                       "set parallel.deterministic = false");
    }
    return e->code;
}

/* The layout's demands on the batch: whole micro-batches on every replica. */
static int check_batch(const mt_run *r, mt_err *e) {
    const mt_comm *c = r->comm;
    int64_t B = r->cfg.train.global_batch, m = r->cfg.parallel.microbatches;
    if (B % c->dp_size != 0) {
        mt_err_set(e, MT_ERR_USAGE,
                   "train.global_batch = %lld is not divisible by the %d data-parallel replicas "
                   "(%d ranks / (tp %d x pp %d))",
                   (long long)B, c->dp_size, c->size, c->tp_size, c->pp_size);
        mt_err_hint(e, "choose a global batch that is a multiple of the replica count");
    } else if ((B / c->dp_size) % m) {
        mt_err_set(e, MT_ERR_USAGE,
                   "each data-parallel replica's %lld samples per step (train.global_batch / %d) "
                   "do not split into parallel.microbatches = %lld equal micro-batches",
                   (long long)(B / c->dp_size), c->dp_size, (long long)m);
        mt_err_hint(e, "choose a global batch that is a multiple of replicas x microbatches");
    }
    return e->code ? e->code : check_deterministic(r, e);
}

/* Rank 0 reads the file and shares its text, so every rank parses the same
 * bytes and reaches the same verdict. */
int mt_run_load_config(mt_run *r, const char *path, const char **overrides, int n, mt_err *e) {
    mt_comm *c = r->comm;
    char *text = NULL;
    if (c->rank == 0) text = read_config(path, e);
    if (mt_comm_agree(c, e)) return e->code;
    mt_coll_bcast_text(c->world, 0, &text);
    mt_config_defaults(&r->cfg);
    int rc = mt_config_parse(&r->cfg, text, path, e);
    free(text);
    for (int i = 0; !rc && i < n; i++) rc = mt_config_set(&r->cfg, overrides[i], e);
    if (!rc) rc = mt_config_validate(&r->cfg, e);
    if (!rc) rc = mt_model_check(&r->cfg, e);
    /* the same verdict on every rank: all parsed the same text */
    if (!rc) rc = mt_comm_layout(c, (int)r->cfg.parallel.tp, (int)r->cfg.parallel.pp, e);
    if (!rc) rc = check_batch(r, e);
    if (!rc) rc = mt_fault_init(getenv("MPITRAIN_FAULT"), c->rank, e);
    if (!rc) mt_config_text(&r->cfg, &r->config_text, e);
    if (mt_comm_agree(c, e)) return e->code;
    return mt_run_time_budget(r, e);
}

int mt_run_open_data(mt_run *r, mt_err *e) {
    mt_batches_open(&r->data, &r->cfg, e);
    return mt_comm_agree(r->comm, e);
}

/* parallel.bucket_mb and overlap: the data-parallel sum in buckets cut at
 * the held tensors' starts, told by the stage what the backward has made
 * final. parallel.deterministic and ZeRO keep their own reductions. */
static int setup_buckets(mt_run *r, mt_err *e) {
    const mt_params *p = &r->params;
    if (r->cfg.parallel.deterministic || r->cfg.parallel.zero) return MT_OK;
    size_t *starts = malloc((size_t)(p->n > 0 ? p->n : 1) * sizeof *starts);
    if (!starts) return mt_err_set(e, MT_ERR_INTERNAL, "out of memory");
    int n = 0;
    for (int i = 0; i < p->n; i++)
        if (p->v[i].numel) starts[n++] = p->v[i].offset;
    int rc = mt_gradsync_buckets(&r->sync, starts, n, r->cfg.parallel.bucket_mb,
                                 r->cfg.parallel.overlap, e);
    free(starts);
    if (!rc) mt_stage_on_grad_ready(&r->st, mt_gradsync_ready, &r->sync);
    return rc;
}

/* *np: the gradient norm's partial sums a step reads (parallel/gradsync.h). */
static int norm_parts(mt_run *r, int *np, mt_err *e) {
    *np = mt_gradsync_norm_parts(&r->sync);
    if (*np < 0)
        return mt_err_set(e, MT_ERR_INTERNAL, "out of memory for the gradient norm's spans");
    return MT_OK;
}

/* The model stage, the optimizer, the initial weights (a function of
 * run.seed and each element's global index only: every layout starts from
 * the same model), the batch buffers and the gradient's reductions. */
int mt_run_build(mt_run *r, mt_err *e) {
    const mt_config *cfg = &r->cfg;
    const mt_comm *c = r->comm;
    int64_t local_batch = cfg->train.global_batch / c->dp_size;
    r->mb_rows = local_batch / cfg->parallel.microbatches;
    mt_params_init(&r->params);
    int64_t eval_rows = mt_batches_eval_rows(&r->data, r->mb_rows);
    int zero = cfg->parallel.zero == 1, np = 0;
    if (!mt_stage_build(&r->st, c, cfg, r->be, &r->params, r->mb_rows, eval_rows, e) &&
        (!zero || !mt_state_zero_pieces(&r->params, c, &r->zero_pieces, e)) &&
        !mt_optim_init(&r->opt, cfg, &r->params, r->be,
                       zero ? r->zero_pieces + (size_t)c->dp_rank * (size_t)r->params.n : NULL,
                       e) &&
        !mt_run_host_views(r, e)) {
        mt_params_init_values(r->hp, (uint64_t)cfg->run.seed);
        mt_run_state_to_device(r);
        mt_gradsync_init(&r->sync, c, r->be, r->params.grad, r->params.numel);
        if (!mt_params_gradsync(&r->params, c->tp_rank, &r->sync, e) &&
            (!cfg->parallel.deterministic || !mt_gradsync_deterministic(&r->sync, e)) &&
            (!zero || !mt_gradsync_zero(&r->sync, r->zero_pieces, r->params.n, e)) &&
            !setup_buckets(r, e) && !norm_parts(r, &np, e) &&
            !mt_step_stats_init(&r->stats, r->be, (int)cfg->parallel.microbatches, np, e)) {
            mt_stage_use_stats(&r->st, &r->stats);
            mt_batches_alloc(&r->data, r->be, c->dp_rank, c->dp_size, r->mb_rows, e);
        }
    }
    if (mt_comm_agree(c, e)) return e->code;
    if (c->rank == 0 && cfg->train.fused) {
        char ran[256], lacks[256];
        mt_run_fused_ops(r, ran, lacks, sizeof ran);
        if (lacks[0])
            printf("fused ops (train.fused = true): %s; the %s backend lacks %s (the unfused "
                   "ops run instead)\n",
                   ran, r->be->name, lacks);
        else
            printf("fused ops (train.fused = true): %s\n", ran);
    }
    return MT_OK;
}

/* appends word to the space-separated list in buf (n bytes) */
static void add_word(char *buf, size_t n, const char *word, size_t len) {
    size_t at = strlen(buf);
    snprintf(buf + at, at < n ? n - at : 0, "%s%.*s", at ? " " : "", (int)len, word);
}

void mt_run_fused_ops(const mt_run *r, char *ran, char *lacks, size_t n) {
    ran[0] = lacks[0] = '\0';
    if (!r->cfg.train.fused) {
        snprintf(ran, n, "off");
        return;
    }
    char want[256];
    const mt_model_ops *model = mt_model_of(&r->cfg);
    snprintf(want, sizeof want, "%s%s", model && model->fused_ops ? model->fused_ops : "",
             r->cfg.optim.kind == MT_OPTIM_ADAMW ? " adamw_multi" : "");
    for (const char *w = want; *w;) {
        size_t len = strcspn(w, " ");
        char op[64];
        snprintf(op, sizeof op, "%.*s", (int)len, w);
        int has = model && model->runs_fused && strcmp(op, "adamw_multi")
                      ? model->runs_fused(&r->cfg, r->be, op)
                      : mt_backend_has_fused(r->be, op);
        if (len && has >= 0) add_word(has ? ran : lacks, n, w, len);
        w += len + (w[len] == ' ');
    }
    if (!ran[0]) snprintf(ran, n, "none");
}

void mt_run_release(mt_run *r) {
    mt_ckpt_bg_close(r->ckpt_bg); /* its thread reads the state and the config text */
    if (r->metrics.f) fclose(r->metrics.f);
    if (r->be) {
        mt_stage_free(&r->st);
        if (r->opt.m) mt_optim_free(&r->opt, r->be);
    }
    if (r->hp == &r->hp_store) {
        free(r->hp_store.data);
        free(r->hopt_store.m);
        free(r->hopt_store.v);
    }
    mt_gradsync_free(&r->sync);
    if (r->stats.be) mt_step_stats_free(&r->stats);
    free(r->zero_pieces);
    mt_params_free(&r->params);
    mt_batches_close(&r->data);
    free(r->config_text);
}
