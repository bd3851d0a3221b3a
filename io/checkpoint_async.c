/*
 * checkpoint_async.c - background checkpoint jobs (see checkpoint.h): a
 * whole checkpoint written by a thread while training goes on
 * (checkpoint.async), or the SHA-256 of one just written, taken by rank 0's
 * thread.
 *
 * A write job is mt_ckpt_write itself, run in a thread of every rank over a
 * duplicate of the world communicator, from staging memory: at the step
 * boundary each rank copies the rows it writes of every tensor (its share
 * of the chunks, the same rows mt_ckpt_write takes from the live buffers),
 * and nothing else; the staging memory stays allocated for the next job.
 * So the file is the one a synchronous write of that step makes, byte for
 * byte in every dataset. The design and the rules it needs (MPI_THREAD_MULTIPLE,
 * HDF5 in one thread at a time, signals in the main thread) are argued in
 * docs/CHECKPOINT_FORMAT.md, "Asynchronous checkpoints".
 */
#include <errno.h>
#include <pthread.h>
#include <sys/resource.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "io/checkpoint.h"
#include "io/checkpoint_private.h"
#include "parallel/watchdog.h"

#define HASH_NICE 10 /* a hash job's nice value above the training's (19 at most) */

struct mt_ckpt_bg {
    mt_comm main;   /* the caller's grid: the main thread agrees over its world */
    mt_comm comm;   /* the same, world replaced by wcomm: the thread's */
    MPI_Comm wcomm; /* duplicate of the world: the write jobs' collective I/O */
    pthread_t thread;
    int running;     /* a thread was started and not yet joined */
    atomic_int busy; /* the thread still works */
    /* the job */
    int write; /* 1: write, then rank 0 hashes; 0: hash only */
    char path[MT_CKPT_PATH];
    mt_ckpt_meta meta;
    const char *config_text;
    double timeout_s;
    mt_ckpt_done_fn done; /* rank 0's publication, after the hash */
    void *ctx;
    mt_tensor_view *staged; /* the views over the staging copy */
    int n, cap;
    float *stage; /* staging memory (floats), kept for the next job */
    size_t stage_cap;
    mt_ckpt_bg_result res;
    mt_err err;
};

/* The thread's own clock (MPI_Wtime is an MPI call, which a hash job's
 * thread may not make under MPI_THREAD_FUNNELED). */
static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int mt_ckpt_bg_open(mt_ckpt_bg **bg, const mt_comm *c, int writes, mt_err *e) {
    mt_ckpt_bg *b = calloc(1, sizeof *b);
    if (!b) mt_err_set(e, MT_ERR_CKPT, "out of memory for the checkpoint writer");
    if (mt_comm_agree(c, e)) {
        free(b);
        return e->code;
    }
    b->main = b->comm = *c;
    b->wcomm = MPI_COMM_NULL;
    if (writes) mt_comm_dup_world(c, "ckpt", &b->wcomm);
    b->comm.world = b->wcomm;
    mt_ckpt_tune_malloc(); /* here, on the main thread, before any job */
    *bg = b;
    return MT_OK;
}

static void *run(void *arg) {
    mt_ckpt_bg *b = arg;
    mt_watchdog_unwatched_thread();
    /* A hash job has the whole checkpoint interval and no partner: on a host
     * whose cores the training fills it runs in the training's gaps (Linux
     * takes a thread id here: this thread only). A write job stays at the
     * training's priority: its collective I/O waits for the slowest rank's
     * thread, and starved writers made every next checkpoint wait
     * (docs/BENCHMARKS.md). */
    int base = 0, niced = 0;
    if (!b->write) { /* relative to the process's own nice value, at most 19 */
        errno = 0;
        base = getpriority(PRIO_PROCESS, (id_t)gettid());
        niced = errno == 0;
        if (niced)
            setpriority(PRIO_PROCESS, (id_t)gettid(),
                        base + HASH_NICE > 19 ? 19 : base + HASH_NICE);
    }
    mt_err e = {0};
    mt_ckpt_bg_result *res = &b->res;
    if (b->write)
        mt_ckpt_write(&b->comm, b->path, &b->meta, b->config_text, b->staged, b->n, b->timeout_s,
                      &res->write_s, NULL, &e);
    if (!e.code && b->comm.rank == 0) {
        double t0 = seconds();
        if (mt_ckpt_write_sidecar(b->path, res->sha256, &e)) e.code = MT_ERR_CKPT;
        res->hash_s = seconds() - t0;
        /* the publication (`latest`, the registry's lock) at the training's
         * priority: root may lower a nice value, other users cannot (then
         * it stays at the hash's; best effort) */
        if (niced) setpriority(PRIO_PROCESS, (id_t)gettid(), base);
        if (!e.code && b->done) b->done(res, b->ctx, &e);
    }
    b->err = e;
    atomic_store(&b->busy, 0);
    return NULL;
}

/* Starts the thread on the job set in b, with every signal blocked in it. */
static int start(mt_ckpt_bg *b, mt_err *e) {
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    atomic_store(&b->busy, 1);
    int rc = pthread_create(&b->thread, NULL, run, b);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc) {
        atomic_store(&b->busy, 0);
        return mt_err_set(e, MT_ERR_CKPT, "cannot start the checkpoint writer thread: %s",
                          strerror(rc));
    }
    b->running = 1;
    return MT_OK;
}

static int set_path(mt_ckpt_bg *b, const char *path, mt_err *e) {
    if (b->running)
        return mt_err_set(e, MT_ERR_INTERNAL, "a checkpoint job is still running (%s)", b->path);
    if (strlen(path) >= sizeof b->path)
        return mt_err_set(e, MT_ERR_CKPT,
                          "checkpoint path too long (%zu characters, at most %d): %.60s...",
                          strlen(path), MT_CKPT_PATH - 1, path);
    snprintf(b->path, sizeof b->path, "%s", path);
    memset(&b->res, 0, sizeof b->res);
    memset(&b->err, 0, sizeof b->err);
    return MT_OK;
}

/* Elements [*lo, *hi) of v's block that this rank writes (none: equal). */
static void written(const mt_comm *c, const mt_tensor_view *v, size_t *lo, size_t *hi) {
    *lo = *hi = 0;
    if (!v->held || v->mirror || !v->data) return;
    mt_ckpt_geom g;
    mt_ckpt_geometry(v, c->dp_size, c->tp_size, &g);
    hsize_t a = 0, z = 0;
    mt_ckpt_share(&g, mt_ckpt_writer(&g, c->dp_rank, c->tp_rank, c->tp_size), &a, &z);
    if (z > a) *lo = (size_t)(a * g.inner), *hi = (size_t)(z * g.inner);
}

/* The staged views of views and, when copy, the copy of what this rank
 * writes (views are checked: each range holds the rows it writes). */
static int stage(mt_ckpt_bg *b, const mt_tensor_view *views, int n, int copy, mt_err *e) {
    const mt_comm *c = &b->comm;
    size_t need = 0;
    for (int i = 0; i < n; i++) {
        size_t lo, hi;
        written(c, &views[i], &lo, &hi);
        need += hi - lo;
    }
    if (n > b->cap) {
        mt_tensor_view *s = realloc(b->staged, (size_t)n * sizeof *s);
        if (!s) return mt_err_set(e, MT_ERR_CKPT, "out of memory staging a checkpoint");
        b->staged = s, b->cap = n;
    }
    if (copy && need > b->stage_cap) {
        free(b->stage);
        b->stage_cap = 0;
        b->stage = malloc(need * sizeof(float));
        if (!b->stage)
            return mt_err_set(e, MT_ERR_CKPT,
                              "out of memory staging a checkpoint (%.1f MB for this rank's share; "
                              "checkpoint.async keeps a copy of it)",
                              (double)need * sizeof(float) / 1e6);
        b->stage_cap = need;
    }
    double t0 = seconds();
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        const mt_tensor_view *v = &views[i];
        mt_tensor_view *s = &b->staged[i];
        size_t lo, hi;
        written(c, v, &lo, &hi);
        *s = *v;
        s->begin = (int64_t)lo, s->count = (int64_t)(hi - lo), s->data = NULL;
        if (hi == lo) continue;
        const float *from = v->data + (lo - (size_t)v->begin);
        if (copy) {
            memcpy(b->stage + off, from, (hi - lo) * sizeof(float));
            s->data = b->stage + off;
            off += hi - lo;
        } else {
            s->data = (float *)from; /* the caller keeps it unchanged until the wait */
        }
    }
    b->n = n;
    b->res.stage_s = seconds() - t0;
    b->res.stage_mb = copy ? (double)need * sizeof(float) / 1e6 : 0.0;
    return MT_OK;
}

int mt_ckpt_bg_write(mt_ckpt_bg *bg, const char *path, const mt_ckpt_meta *meta,
                     const char *config_text, const mt_tensor_view *views, int n, int copy,
                     double timeout_s, mt_ckpt_done_fn done, void *ctx, mt_err *e) {
    const mt_comm *c = &bg->comm;
    if (c->world == MPI_COMM_NULL)
        mt_err_set(e, MT_ERR_INTERNAL, "a checkpoint writer set up for hashes was asked to write");
    else if (!c->thread_multiple)
        mt_err_set(e, MT_ERR_USAGE,
                   "checkpoint.async needs an MPI library with MPI_THREAD_MULTIPLE; this one "
                   "gives less");
    if (!e->code && !set_path(bg, path, e) && !mt_ckpt_check_views(c, views, n, 1, e))
        stage(bg, views, n, copy, e);
    /* every rank's thread joins the collective write, or none starts; the
     * main thread agrees over its own world, never over the thread's */
    if (mt_comm_agree(&bg->main, e)) return e->code;
    bg->write = 1;
    bg->meta = *meta;
    bg->config_text = config_text;
    bg->timeout_s = timeout_s;
    bg->done = done, bg->ctx = ctx;
    start(bg, e);
    if (mt_comm_agree(&bg->main, e) && bg->running) { /* another rank's thread did not start */
        fprintf(stderr, "mpitrain: error: a checkpoint writer thread did not start; exiting\n");
        _exit(MT_ERR_CKPT); /* this rank's thread waits in a collective for ever */
    }
    return e->code;
}

int mt_ckpt_bg_hash(mt_ckpt_bg *bg, const char *path, mt_ckpt_done_fn done, void *ctx, mt_err *e) {
    if (set_path(bg, path, e)) return e->code;
    bg->write = 0;
    bg->n = 0;
    bg->done = done, bg->ctx = ctx;
    return start(bg, e);
}

int mt_ckpt_bg_busy(const mt_ckpt_bg *bg) {
    return bg && atomic_load(&((mt_ckpt_bg *)bg)->busy);
}

int mt_ckpt_bg_wait(mt_ckpt_bg *bg, mt_ckpt_bg_result *res, mt_err *e) {
    if (!bg || !bg->running) {
        memset(res, 0, sizeof *res);
        return MT_OK;
    }
    pthread_join(bg->thread, NULL);
    bg->running = 0;
    *res = bg->res;
    if (bg->err.code && !e->code) *e = bg->err;
    return e->code;
}

void mt_ckpt_bg_close(mt_ckpt_bg *bg) {
    if (!bg) return;
    mt_ckpt_bg_result res;
    mt_err ignored = {0};
    mt_ckpt_bg_wait(bg, &res, &ignored);
    mt_comm_free_dup(&bg->wcomm);
    free(bg->staged);
    free(bg->stage);
    free(bg);
}
