/*
 * test_flash_attention.c - the CPU backend's flash attention
 * (kernels/cpu/flash_attention.c) against the unfused attention ops:
 *   - forward out vs attention_forward (normalized error <= 1e-5), lse vs a
 *     log-sum-exp computed in double from the scores;
 *   - backward dqkv vs attention_backward (<= 1e-5);
 *   - finite-difference gradients of L = sum(r * out) w.r.t. qkv (as
 *     test_gpt_ops.c: h = 1e-2, normalized error <= 2e-3, every element within
 *     2e-2 * max|num| + 1e-5; every element on small shapes, an even spread
 *     of FD_MAX of them on large ones);
 *   - bitwise the same results at 1, 2 and 3 OpenMP threads;
 *   - bf16 matmul mode vs the unfused ops in bf16 mode (<= 1e-2);
 *   - outputs fully written (poisoned with NaN first), nothing written past
 *     them (guard regions), inputs left alone.
 * Shapes (B,T,C,NH) cross the 64-row tile (T = 1, 7, 33, 65, 70, 128, 130)
 * and cover head sizes 4 to 64; one more has large scores (qkv in [-8, 8]).
 *
 * test_flash_attention --bench [B T C NH [reps]]: times fused and unfused
 * forward and backward at OMP_NUM_THREADS threads, best of reps (the GPT
 * bench shape and T = 1024 when no shape is given); no checks.
 */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "test_util.h"

#define OUT_TOL  1e-5 /* flash vs unfused, normalized */
#define BF16_TOL 1e-2 /* the same in bf16 matmul mode */
#define GRAD_TOL 2e-3
#define ELEM_TOL 2e-2
#define FD_H     1e-2f
#define FD_MAX   3000 /* elements of qkv checked by finite differences at most */
#define GUARD    64   /* floats after every output, checked untouched */

static const mt_backend *be;

/* n floats followed by GUARD floats of a sentinel */
static float *galloc(size_t n) {
    float *p = malloc((n + GUARD) * sizeof(float));
    if (!p) abort();
    for (size_t i = 0; i < n + GUARD; i++) p[i] = -12345.0f;
    return p;
}

static int guard_ok(const float *p, size_t n) {
    for (size_t i = n; i < n + GUARD; i++)
        if (p[i] != -12345.0f) return 0;
    return 1;
}

/* One problem: inputs, the unfused results, and the flash outputs. */
typedef struct {
    int B, T, C, NH;
    size_t nqkv, nout, nlse, natt;
    float *qkv, *dout;         /* inputs */
    float *out_ref, *dqkv_ref; /* unfused */
    float *out, *lse, *dqkv;   /* flash (with guards) */
} problem;

/* qkv uniform in [-range, range), dout in [-1, 1) */
static problem make_problem(int B, int T, int C, int NH, float range) {
    problem p = {B, T, C, NH, 0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    p.nqkv = (size_t)B * T * 3 * C, p.nout = (size_t)B * T * C, p.nlse = (size_t)B * NH * T;
    p.natt = (size_t)B * NH * T * T;
    p.qkv = galloc(p.nqkv), p.dout = galloc(p.nout);
    p.out_ref = galloc(p.nout), p.dqkv_ref = galloc(p.nqkv);
    p.out = galloc(p.nout), p.lse = galloc(p.nlse), p.dqkv = galloc(p.nqkv);
    mt_test_fill(p.qkv, p.nqkv, 101, -range, range);
    mt_test_fill(p.dout, p.nout, 102, -1, 1);
    return p;
}

static void free_problem(problem *p) {
    free(p->qkv), free(p->dout), free(p->out_ref), free(p->dqkv_ref);
    free(p->out), free(p->lse), free(p->dqkv);
}

/* out_ref, dqkv_ref from the unfused ops at the current precision */
static void run_unfused(problem *p) {
    float *att = galloc(p->natt), *datt = galloc(p->natt);
    be->attention_forward(p->out_ref, att, p->qkv, p->B, p->T, p->C, p->NH);
    be->attention_backward(p->dqkv_ref, datt, p->dout, p->qkv, att, p->B, p->T, p->C, p->NH);
    free(att), free(datt);
}

/* out, lse, dqkv from the flash ops, each output poisoned with NaN first */
static void run_flash(problem *p) {
    mt_test_poison(p->out, p->nout);
    mt_test_poison(p->lse, p->nlse);
    mt_test_poison(p->dqkv, p->nqkv);
    be->flash_attention_forward(p->out, p->lse, p->qkv, p->B, p->T, p->C, p->NH);
    be->flash_attention_backward(p->dqkv, p->dout, p->qkv, p->out, p->lse, p->B, p->T, p->C, p->NH);
}

/* lse(B,NH,T) in double from qkv: max + log(sum exp(score - max)) over s <= t */
static void lse_ref(double *lse, const float *qkv, int B, int T, int C, int NH) {
    int hs = C / NH;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                const float *q = qkv + ((size_t)b * T + t) * 3 * C + h * hs;
                double *sc = malloc((size_t)(t + 1) * sizeof(double)), mx = -INFINITY, sum = 0;
                if (!sc) abort();
                for (int s = 0; s <= t; s++) {
                    const float *k = qkv + ((size_t)b * T + s) * 3 * C + C + h * hs;
                    double d = 0;
                    for (int i = 0; i < hs; i++) d += (double)q[i] * k[i];
                    sc[s] = d / sqrt((double)hs);
                    mx = fmax(mx, sc[s]);
                }
                for (int s = 0; s <= t; s++) sum += exp(sc[s] - mx);
                lse[((size_t)b * NH + h) * T + t] = mx + log(sum);
                free(sc);
            }
}

static const char *shape_name(const problem *p) {
    static char buf[64];
    snprintf(buf, sizeof buf, "B%d T%d C%d NH%d", p->B, p->T, p->C, p->NH);
    return buf;
}

/* (a), (b), (g): flash vs unfused in fp32, lse vs double, guards and inputs */
static void check_vs_unfused(problem *p) {
    float *qkv0 = mt_test_copy(p->qkv, p->nqkv), *dout0 = mt_test_copy(p->dout, p->nout);
    run_unfused(p);
    run_flash(p);
    double *lref = malloc(p->nlse * sizeof(double));
    if (!lref) abort();
    lse_ref(lref, p->qkv, p->B, p->T, p->C, p->NH);
    double e_out = mt_test_nerr(p->out, p->out_ref, p->nout);
    double e_lse = mt_test_nerr_d(p->lse, lref, p->nlse), m_lse = 0;
    for (size_t i = 0; i < p->nlse; i++) m_lse = fmax(m_lse, fabs(p->lse[i] - lref[i]));
    double e_dq = mt_test_nerr(p->dqkv, p->dqkv_ref, p->nqkv);
    const char *s = shape_name(p);
    printf("%-22s out %.2e, lse %.2e (max abs %.2e), dqkv %.2e (bound %.0e)\n", s, e_out, e_lse,
           m_lse, e_dq, OUT_TOL);
    CHECK(e_out <= OUT_TOL, "%s: forward out off the unfused by %.3e", s, e_out);
    CHECK(e_lse <= OUT_TOL, "%s: lse off the double reference by %.3e", s, e_lse);
    CHECK(e_dq <= OUT_TOL, "%s: dqkv off the unfused by %.3e", s, e_dq);
    int guards = guard_ok(p->out, p->nout) + guard_ok(p->lse, p->nlse) + guard_ok(p->dqkv, p->nqkv);
    int inputs = !memcmp(qkv0, p->qkv, p->nqkv * sizeof(float)) +
                 !memcmp(dout0, p->dout, p->nout * sizeof(float));
    CHECK(guards == 3, "%s: %d of 3 outputs' guard regions were written", s, 3 - guards);
    CHECK(inputs == 2, "%s: %d of 2 inputs were changed", s, 2 - inputs);
    free(qkv0), free(dout0), free(lref);
}

/* (c): L = sum(r * out), r = dout; the flash backward against central
 * differences on every step-th element of qkv */
static void check_gradient(problem *p) {
    size_t step = (p->nqkv + FD_MAX - 1) / FD_MAX, n = (p->nqkv + step - 1) / step;
    double *ana = malloc(n * sizeof(double)), *num = malloc(n * sizeof(double));
    if (!ana || !num) abort();
    run_flash(p);
    omp_set_num_threads(1); /* thousands of small forwards: no barrier spinning */
    for (size_t j = 0; j < n; j++) {
        size_t i = j * step;
        float keep = p->qkv[i];
        double l[2];
        for (int side = 0; side < 2; side++) {
            p->qkv[i] = keep + (side ? -FD_H : FD_H);
            be->flash_attention_forward(p->out, p->lse, p->qkv, p->B, p->T, p->C, p->NH);
            l[side] = 0;
            for (size_t o = 0; o < p->nout; o++) l[side] += (double)p->dout[o] * p->out[o];
        }
        p->qkv[i] = keep;
        num[j] = (l[0] - l[1]) / (2.0 * FD_H);
        ana[j] = p->dqkv[i];
    }
    omp_set_num_threads(2);
    char what[80];
    snprintf(what, sizeof what, "d/dqkv %s", shape_name(p));
    mt_test_grad_compare(what, ana, num, n, GRAD_TOL, ELEM_TOL);
    free(ana), free(num);
}

/* (e): forward and backward at 1, 2, 3 threads, bitwise */
static void check_threads(problem *p) {
    float *out1 = NULL, *lse1 = NULL, *dq1 = NULL;
    int same = 1;
    for (int th = 1; th <= 3; th++) {
        omp_set_num_threads(th);
        run_flash(p);
        if (th == 1) {
            out1 = mt_test_copy(p->out, p->nout), lse1 = mt_test_copy(p->lse, p->nlse);
            dq1 = mt_test_copy(p->dqkv, p->nqkv);
            continue;
        }
        int ok = !memcmp(out1, p->out, p->nout * sizeof(float)) &&
                 !memcmp(lse1, p->lse, p->nlse * sizeof(float)) &&
                 !memcmp(dq1, p->dqkv, p->nqkv * sizeof(float));
        CHECK(ok, "%s: %d threads differ from 1 (out %.3e, dqkv %.3e)", shape_name(p), th,
              mt_test_nerr(p->out, out1, p->nout), mt_test_nerr(p->dqkv, dq1, p->nqkv));
        same &= ok;
    }
    omp_set_num_threads(2);
    printf("%-22s out, lse, dqkv at 1/2/3 threads: bitwise %s\n", shape_name(p),
           same ? "identical" : "DIFFERENT");
    free(out1), free(lse1), free(dq1);
}

/* (f): bf16 mode, flash vs unfused; and bf16 does change the results */
static void check_bf16(problem *p) {
    run_flash(p);
    float *out32 = mt_test_copy(p->out, p->nout), *dq32 = mt_test_copy(p->dqkv, p->nqkv);
    be->set_precision(1);
    run_unfused(p);
    run_flash(p);
    be->set_precision(0);
    double e_out = mt_test_nerr(p->out, p->out_ref, p->nout);
    double e_dq = mt_test_nerr(p->dqkv, p->dqkv_ref, p->nqkv);
    double c_out = mt_test_nerr(p->out, out32, p->nout),
           c_dq = mt_test_nerr(p->dqkv, dq32, p->nqkv);
    const char *s = shape_name(p);
    printf("%-22s bf16: out %.2e, dqkv %.2e (bound %.0e); vs fp32 %.2e, %.2e\n", s, e_out, e_dq,
           BF16_TOL, c_out, c_dq);
    CHECK(e_out <= BF16_TOL, "%s: bf16 out off the unfused bf16 by %.3e", s, e_out);
    CHECK(e_dq <= BF16_TOL, "%s: bf16 dqkv off the unfused bf16 by %.3e", s, e_dq);
    CHECK(c_out > OUT_TOL && c_dq > OUT_TOL, "%s: bf16 mode changes nothing (%.3e, %.3e)", s, c_out,
          c_dq);
    free(out32), free(dq32);
}

static void check_shape(int B, int T, int C, int NH) {
    problem p = make_problem(B, T, C, NH, 1.5f);
    check_vs_unfused(&p);
    check_gradient(&p);
    check_threads(&p);
    check_bf16(&p);
    free_problem(&p);
}

/* Large scores (qkv in [-8, 8]): the running max moves by tens between key
 * tiles, many probabilities underflow, the online rescaling matters. */
static void check_peaked(int B, int T, int C, int NH) {
    problem p = make_problem(B, T, C, NH, 8.0f);
    printf("peaked scores: ");
    check_vs_unfused(&p);
    free_problem(&p);
}

/* ---- --bench ---- */

/* Best of reps (after a warm-up) of unfused and flash forward and backward;
 * att + datt is what the unfused pair needs and flash does not (lse needs
 * B*NH*T floats). */
static void bench(int B, int T, int C, int NH, int reps) {
    problem p = make_problem(B, T, C, NH, 1.5f);
    float *att = galloc(p.natt), *datt = galloc(p.natt);
    double best[4] = {1e30, 1e30, 1e30, 1e30}; /* seconds: unfused fwd, bwd, flash fwd, bwd */
    for (int r = 0; r < reps + 1; r++) {
        double t[5];
        t[0] = mt_test_now();
        be->attention_forward(p.out_ref, att, p.qkv, B, T, C, NH);
        t[1] = mt_test_now();
        be->attention_backward(p.dqkv_ref, datt, p.dout, p.qkv, att, B, T, C, NH);
        t[2] = mt_test_now();
        be->flash_attention_forward(p.out, p.lse, p.qkv, B, T, C, NH);
        t[3] = mt_test_now();
        be->flash_attention_backward(p.dqkv, p.dout, p.qkv, p.out, p.lse, B, T, C, NH);
        t[4] = mt_test_now();
        for (int i = 0; r > 0 && i < 4; i++) best[i] = fmin(best[i], t[i + 1] - t[i]);
    }
    double tu = best[0] + best[1], tf = best[2] + best[3];
    printf("B%d T%d C%d NH%d threads %d: unfused %.3f ms (fwd %.3f + bwd %.3f), flash %.3f ms "
           "(fwd %.3f + bwd %.3f): %.2fx; att + datt %.1f MiB not needed\n",
           B, T, C, NH, omp_get_max_threads(), tu * 1e3, best[0] * 1e3, best[1] * 1e3, tf * 1e3,
           best[2] * 1e3, best[3] * 1e3, tu / tf, 2.0 * (double)p.natt * sizeof(float) / 1048576.0);
    free(att), free(datt);
    free_problem(&p);
}

int main(int argc, char **argv) {
    be = mt_backend_cpu();
    if (argc > 1 && !strcmp(argv[1], "--bench")) {
        if (argc >= 6) {
            bench(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atoi(argv[5]),
                  argc > 6 ? atoi(argv[6]) : 20);
        } else {
            bench(8, 128, 256, 4, 20);
            bench(1, 1024, 256, 4, 10);
        }
        return 0;
    }
    omp_set_num_threads(2);
    check_shape(2, 1, 8, 2);
    check_shape(1, 7, 12, 3);
    check_shape(2, 65, 16, 2); /* T not a multiple of the 64-row tile */
    check_shape(1, 130, 32, 4);
    check_shape(2, 128, 64, 4);
    check_shape(1, 70, 128, 2); /* hs 64, the GPT bench's */
    check_shape(1, 33, 60, 3);  /* hs 20: a column tail in the tile products */
    check_peaked(1, 130, 32, 4);
    return mt_test_finish("flash_attention");
}
