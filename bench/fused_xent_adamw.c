/*
 * fused_xent_adamw.c - time per call of the CPU backend's fused cross-entropy and
 * multi-tensor AdamW against the unfused ops they replace, at 1 and 2
 * OpenMP threads (or the counts given).
 *
 *   fused_xent_adamw [threads...]      default: 1 2
 *
 * Cross-entropy at (N, V) = (1024, 256) and (1024, 50304): unfused is
 * softmax_xent_forward into a probability buffer, count_correct on the
 * logits, softmax_xent_backward (scale 1) in place; fused is xent_fused,
 * run again on its own output (the kernel has no data-dependent branches, so
 * the values do not change its time). AdamW over the tensors of the GPT bench
 * model (4 layers, 4 heads, n_embd 256, block 128, vocab 256): one
 * adamw_update per tensor, as mt_optim_step calls it, against one
 * adamw_multi. Each op is timed in 15 runs of enough calls to fill about
 * 30 ms; printed: the fastest run's time per call and the median's (on a
 * machine shared with other work the fastest is the least disturbed).
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/gpt.h"
#include "core/params.h"
#include "kernels/backend.h"

#define RUNS 15

typedef void (*bench_fn)(void *ctx);

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* seconds per call of fn(ctx): *best the fastest run's, *median the median's */
static void time_per_call(bench_fn fn, void *ctx, double *best, double *median) {
    fn(ctx); /* warm the caches and the thread pool */
    double t0 = omp_get_wtime();
    fn(ctx);
    double once = omp_get_wtime() - t0;
    int calls = once > 0 ? (int)(0.03 / once) + 1 : 1000;
    double run[RUNS];
    for (int r = 0; r < RUNS; r++) {
        t0 = omp_get_wtime();
        for (int c = 0; c < calls; c++) fn(ctx);
        run[r] = (omp_get_wtime() - t0) / calls;
    }
    qsort(run, RUNS, sizeof run[0], cmp_double);
    *best = run[0];
    *median = run[RUNS / 2];
}

static void *xalloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "fused_xent_adamw: out of memory (%zu bytes)\n", bytes);
        exit(1);
    }
    return p;
}

/* ---- cross-entropy ---- */

typedef struct {
    const mt_backend *be;
    int N, V;
    float *logits, *probs; /* (N,V) each */
    int32_t *labels;       /* (N) */
} xent_ctx;

static void xent_unfused(void *c) {
    xent_ctx *x = c;
    x->be->softmax_xent_forward(x->probs, x->logits, x->labels, x->N, x->V, x->V);
    x->be->count_correct(x->logits, x->labels, x->N, x->V, x->V);
    x->be->softmax_xent_backward(x->probs, x->probs, x->labels, x->N, x->V, x->V, 1.0f);
}

static void xent_fused(void *c) {
    xent_ctx *x = c;
    double totals[2]; /* loss sum, hits (the CPU's memory is the host's) */
    x->be->xent_fused(x->logits, x->labels, x->N, x->V, x->V, totals);
}

static void bench_xent(const mt_backend *be, int N, int V, int threads) {
    size_t nv = (size_t)N * V;
    xent_ctx x = {be,
                  N,
                  V,
                  xalloc(nv * sizeof(float)),
                  xalloc(nv * sizeof(float)),
                  xalloc((size_t)N * sizeof(int32_t))};
    for (size_t i = 0; i < nv; i++) x.logits[i] = (float)((i * 2654435761u) % 1000) / 100.0f;
    for (int r = 0; r < N; r++) x.labels[r] = (int32_t)((r * 7919u) % (unsigned)V);
    double tu, tf, mu, mf;
    time_per_call(xent_unfused, &x, &tu, &mu);
    time_per_call(xent_fused, &x, &tf, &mf);
    printf("cross-entropy (%4d, %5d) %d thr: unfused %8.3f ms  fused %8.3f ms  (%.2fx)  "
           "medians %8.3f %8.3f ms\n",
           N, V, threads, tu * 1e3, tf * 1e3, tu / tf, mu * 1e3, mf * 1e3);
    free(x.logits), free(x.probs), free(x.labels);
}

/* ---- AdamW ---- */

typedef struct {
    const mt_backend *be;
    mt_params *p;
    float *m, *v; /* (numel) each */
    int nseg;
    size_t *off, *n; /* (nseg) each: the tensors, parameters and states alike */
    float *wd;       /* (nseg) */
} adamw_ctx;

static void adamw_per_tensor(void *c) {
    adamw_ctx *a = c;
    for (int i = 0; i < a->nseg; i++)
        a->be->adamw_update(a->p->data + a->off[i], a->p->grad + a->off[i], a->m + a->off[i],
                            a->v + a->off[i], a->n[i], 1e-3f, 0.9f, 0.95f, 1e-8f, a->wd[i], 0.1f,
                            0.05f);
}

static void adamw_one_pass(void *c) {
    adamw_ctx *a = c;
    a->be->adamw_multi(a->p->data, a->p->grad, a->m, a->v, a->nseg, a->off, a->off, a->n, a->wd,
                       1.0f, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.05f);
}

static void bench_adamw(const mt_backend *be, mt_params *p, int threads) {
    adamw_ctx a = {be,
                   p,
                   xalloc(p->numel * sizeof(float)),
                   xalloc(p->numel * sizeof(float)),
                   p->n,
                   xalloc((size_t)p->n * sizeof(size_t)),
                   xalloc((size_t)p->n * sizeof(size_t)),
                   xalloc((size_t)p->n * sizeof(float))};
    for (int i = 0; i < p->n; i++) {
        a.off[i] = p->v[i].offset;
        a.n[i] = p->v[i].numel;
        a.wd[i] = p->v[i].decay ? 0.1f : 0.0f;
    }
    for (size_t i = 0; i < p->numel; i++) {
        p->grad[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
        a.m[i] = 0.0f;
        a.v[i] = 1e-4f;
    }
    double tu, tf, mu, mf;
    time_per_call(adamw_per_tensor, &a, &tu, &mu);
    time_per_call(adamw_one_pass, &a, &tf, &mf);
    printf("AdamW %zu params, %d tensors %d thr: per tensor %6.3f ms  one pass %6.3f ms  "
           "(%.2fx)  medians %6.3f %6.3f ms\n",
           p->numel, p->n, threads, tu * 1e3, tf * 1e3, tu / tf, mu * 1e3, mf * 1e3);
    free(a.m), free(a.v), free(a.off), free(a.n), free(a.wd);
}

int main(int argc, char **argv) {
    const mt_backend *be = mt_backend_cpu();
    mt_gpt_config cfg = {4, 4, 256, 128, 256, 0.0f, 0, 0, 1};
    mt_gpt model;
    mt_params p;
    mt_err e = {0};
    mt_params_init(&p);
    if (mt_gpt_build(&model, &cfg, &p, &e) || mt_params_alloc(&p, &e)) {
        fprintf(stderr, "fused_cpu: the GPT bench model: %s\n", e.msg);
        return 1;
    }
    mt_params_init_values(&p, 1);
    int def[2] = {1, 2}, nt = argc > 1 ? argc - 1 : 2;
    for (int k = 0; k < nt; k++) {
        int threads = argc > 1 ? atoi(argv[k + 1]) : def[k];
        if (threads < 1) {
            fprintf(stderr, "fused_cpu: '%s' is not a thread count\n", argv[k + 1]);
            return 2;
        }
        omp_set_num_threads(threads);
        bench_xent(be, 1024, 256, threads);
        bench_xent(be, 1024, 50304, threads);
        bench_adamw(be, &p, threads);
    }
    mt_params_free(&p);
    return 0;
}
