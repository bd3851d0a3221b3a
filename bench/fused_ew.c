/*
 * fused_ew.c - ns per element of the CPU backend's fused element-wise ops
 * against the unfused pairs they replace (kernels/cpu/fused_cpu.c):
 *   bias_gelu_forward           vs bias_add + gelu_forward       (N, C)
 *   gelu_bias_backward          vs gelu_backward + bias_grad(1)  (N, C)
 *   residual_layernorm_forward  vs add + layernorm_forward       (N, Cln)
 * at the thread count OpenMP gives (OMP_NUM_THREADS). Each call is timed
 * alone, unfused and fused calls alternating; h is restored before each
 * call of the forwards (untimed), since they add the bias into h. Prints
 * the minimum and the median of the repetitions, one line per op:
 *
 *   op=bias_gelu N=1024 C=1024 threads=1 unfused_ns=.. fused_ns=.. (min; median ..) speedup=..
 *
 * usage: fused_ew [--rows N] [--cols C] [--ln-cols Cln] [--reps R]
 * (defaults: the GPT bench's 1024 rows, C 1024 for the MLP's GELU, 256 for
 * LayerNorm, 50 repetitions). Exit status 0, or 2 on bad arguments.
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/rng.h"
#include "kernels/backend.h"

#define MAX_REPS 1000

static const mt_backend *be;
static int N = 1024, C = 1024, CLN = 256, REPS = 50;

typedef struct {
    float *h0, *h, *g, *bias, *dy, *dx, *db, *a, *b, *res, *out, *mean, *rstd, *w;
} bufs;
static bufs B;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static float *fill(size_t n, uint64_t stream, float lo, float hi) {
    float *x = be->alloc(n);
    if (!x) {
        fprintf(stderr, "fused_ew: error: out of memory for %zu floats\n", n);
        exit(1);
    }
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * mt_rng_uniform(3, stream, i);
    return x;
}

static void run_op(int op, int fused) {
    size_t n = (size_t)N * C;
    switch (op) {
    case 0:
        if (fused)
            be->bias_gelu_forward(B.h, B.g, B.bias, N, C);
        else
            be->bias_add(B.h, B.bias, N, C), be->gelu_forward(B.g, B.h, n);
        break;
    case 1:
        if (fused)
            be->gelu_bias_backward(B.dx, B.db, B.dy, B.h0, N, C);
        else
            be->gelu_backward(B.dx, B.dy, B.h0, n), be->bias_grad(B.db, B.dx, N, C, 1.0f);
        break;
    default:
        if (fused)
            be->residual_layernorm_forward(B.res, B.out, B.mean, B.rstd, B.a, B.b, B.w, B.bias, N,
                                           CLN);
        else
            be->add(B.res, B.a, B.b, (size_t)N * CLN),
                be->layernorm_forward(B.out, B.mean, B.rstd, B.res, B.w, B.bias, N, CLN);
    }
}

static int cmp_double(const void *pa, const void *pb) {
    double a = *(const double *)pa, b = *(const double *)pb;
    return (a > b) - (a < b);
}

/* t[2][REPS]: seconds of REPS calls of the unfused [0] and fused [1]
 * version of op, the two alternating (after 3 untimed each), so that a
 * neighbour's load on a shared machine falls on both alike */
static void time_op(int op, double t[2][MAX_REPS]) {
    for (int k = -3; k < REPS; k++)
        for (int fused = 0; fused < 2; fused++) {
            if (op == 0) memcpy(B.h, B.h0, (size_t)N * C * sizeof(float));
            double t0 = now();
            run_op(op, fused);
            if (k >= 0) t[fused][k] = now() - t0;
        }
    for (int fused = 0; fused < 2; fused++)
        qsort(t[fused], (size_t)REPS, sizeof(double), cmp_double);
}

static int arg_int(const char *s, int lo, int hi) {
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || v < lo || v > hi) {
        fprintf(stderr, "fused_ew: error: '%s' is not an integer in [%d, %d]\n", s, lo, hi);
        exit(2);
    }
    return (int)v;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i += 2) {
        if (i + 1 >= argc) {
            fprintf(stderr, "usage: fused_ew [--rows N] [--cols C] [--ln-cols Cln] [--reps R]\n");
            return 2;
        }
        if (!strcmp(argv[i], "--rows"))
            N = arg_int(argv[i + 1], 1, 1 << 20);
        else if (!strcmp(argv[i], "--cols"))
            C = arg_int(argv[i + 1], 1, 1 << 20);
        else if (!strcmp(argv[i], "--ln-cols"))
            CLN = arg_int(argv[i + 1], 1, 1 << 20);
        else if (!strcmp(argv[i], "--reps"))
            REPS = arg_int(argv[i + 1], 1, MAX_REPS);
        else {
            fprintf(stderr, "fused_ew: error: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    be = mt_backend_cpu();
    size_t n = (size_t)N * C, nl = (size_t)N * CLN;
    int cmax = C > CLN ? C : CLN;
    B.h0 = fill(n, 1, -4, 4), B.h = fill(n, 1, -4, 4), B.g = fill(n, 2, 0, 0);
    B.bias = fill((size_t)cmax, 3, -0.5f, 0.5f), B.dy = fill(n, 4, -1, 1), B.dx = fill(n, 5, 0, 0);
    B.db = fill((size_t)C, 6, 0, 0), B.a = fill(nl, 7, -2, 2), B.b = fill(nl, 8, -2, 2);
    B.res = fill(nl, 9, 0, 0), B.out = fill(nl, 10, 0, 0), B.mean = fill((size_t)N, 11, 0, 0);
    B.rstd = fill((size_t)N, 12, 0, 0), B.w = fill((size_t)CLN, 13, 0.5f, 1.5f);
    const char *names[3] = {"bias_gelu", "gelu_bias_bwd", "residual_ln"};
    static double t[2][MAX_REPS];
    for (int op = 0; op < 3; op++) {
        time_op(op, t);
        double el = op == 2 ? (double)nl : (double)n;
        printf("op=%s N=%d C=%d threads=%d unfused_ns=%.3f fused_ns=%.3f (min; median %.3f / "
               "%.3f) speedup=%.2f\n",
               names[op], N, op == 2 ? CLN : C, omp_get_max_threads(), 1e9 * t[0][0] / el,
               1e9 * t[1][0] / el, 1e9 * t[0][REPS / 2] / el, 1e9 * t[1][REPS / 2] / el,
               t[0][0] / t[1][0]);
    }
    return 0;
}
