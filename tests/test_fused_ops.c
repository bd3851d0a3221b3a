/*
 * test_fused_ops.c - the CPU backend's fused element-wise ops
 * (kernels/cpu/fused_cpu.c): residual_layernorm_forward, bias_gelu_forward
 * and gelu_bias_backward, each
 *   - against the unfused composition it replaces (add + layernorm_forward;
 *     bias_add + gelu_forward; gelu_backward + bias_grad with beta 1):
 *     normalized error ||fused - unfused|| / ||unfused|| <= 1e-6 and every
 *     element within 1e-6 * max(1, |unfused|) (db: 1e-6 * its column's sum
 *     of |terms|, a float sum's condition) (FMA contraction and the
 *     LayerNorm's partial sums move the last bits); the maximum absolute
 *     difference and the count of elements whose bits differ are printed;
 *   - by finite differences (as test_gpt_ops.c: L = sum(r * y), central
 *     differences with h = 1e-2, normalized error <= 2e-3, every element
 *     within 2e-2 * max|num| + 1e-5), the forwards against double references
 *     (the GELU over [-12, 12] as test_gradcheck.c checks the unfused one);
 *   - bitwise at 1, 2 and 3 OpenMP threads;
 *   - with outputs poisoned with NaN first (every element must be written),
 *     res aliasing a or b, dx aliasing dy, and odd shapes: N = 1, C = 1,
 *     C = 3, C not a multiple of 8 or 64, N * C over 1 << 15 (threads used),
 *     GELU inputs over [-10, 10] with some of |x| up to 1000.
 */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "test_util.h"

#define FUSED_TOL 1e-6 /* against the unfused composition */
#define GRAD_TOL  2e-3
#define ELEM_TOL  2e-2
#define FD_H      1e-2f

static const mt_backend *be;

static long not_finite(const float *x, size_t n) {
    long k = 0;
    for (size_t i = 0; i < n; i++) k += !isfinite(x[i]);
    return k;
}

/* fused(n) against unfused(n): the bounds of the header comment, each
 * element's relative to tol(i) = max(1, scale[i]) (scale NULL: |unfused|);
 * and no element left unwritten (NaN from the poison). The norm of the
 * reference is taken as at least 0.01 per element: a small case whose
 * values all lie in the GELU's far tail (|g| < 1e-15 for x < -8) differs
 * there by the exp's conditioning, |x| units in the last place of the
 * tail value, not by anything the op does. */
static void vs_unfused(const char *what, const float *fused, const float *unfused, size_t n,
                       const double *scale) {
    double d2 = 0, r2 = 0, maxd = 0, worst = 0;
    long differ = 0, bad = not_finite(fused, n);
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)fused[i] - unfused[i]);
        d2 += d * d;
        r2 += (double)unfused[i] * unfused[i];
        maxd = fmax(maxd, d);
        worst = fmax(worst, d / fmax(1.0, scale ? scale[i] : fabs((double)unfused[i])));
        differ += memcmp(&fused[i], &unfused[i], sizeof(float)) != 0;
    }
    double nerr = sqrt(d2) / fmax(sqrt(r2), 1e-2 * sqrt((double)n));
    printf("%-30s n=%-7zu nerr %.2e, max abs diff %.2e, worst element %.2e, %ld differ in bits\n",
           what, n, nerr, maxd, worst, differ);
    CHECK(bad == 0, "%s: %ld elements not finite (left unwritten?)", what, bad);
    CHECK(nerr <= FUSED_TOL, "%s: normalized error %.3e > %.0e", what, nerr, FUSED_TOL);
    CHECK(worst <= FUSED_TOL, "%s: an element is off by %.3e of its bound", what, worst);
}

/* Bitwise comparison of several buffers, reported on one line. */
typedef struct {
    long differ;
    double maxd;
} bits;

static void bits_add(bits *b, const float *x, const float *y, size_t n) {
    b->differ += (long)mt_test_bits_differ(x, y, n);
    b->maxd = fmax(b->maxd, mt_test_max_abs_diff(x, y, n));
}

static void bits_report(const char *what, bits b) {
    printf("%-44s bitwise %s\n", what, b.differ ? "DIFFERENT" : "identical");
    CHECK(b.differ == 0, "%s: %ld elements differ (max abs diff %.3e)", what, b.differ, b.maxd);
}

/* GELU pre-activations h(n) over [-10, 10]; every 7th element one of
 * |x| = 15 .. 1000 (the exp's clamp at -87 and 87 is reached from |x| ~ 6) */
static void fill_gelu_input(float *h, size_t n, uint64_t stream) {
    static const float big[] = {-1000, -100, -45, -30, -15, 15, 30, 45, 100, 1000};
    mt_test_fill(h, n, stream, -10, 10);
    for (size_t i = 3; i < n; i += 7) h[i] = big[(i / 7) % 10];
}

/* ---- bias + GELU: forward and backward against the unfused ops ---- */

/* Buffers of one (N, C) case: inputs h0 (pre-bias), bias, dy, db0; the
 * outputs of the unfused ops (u*) and of the fused ones at 1 thread (f*). */
typedef struct {
    int N, C;
    float *h0, *bias, *dy, *db0;
    float *uh, *ug, *udx, *udb;
    float *fh, *fg, *fdx, *fdb;
} gelu_case;

static gelu_case gelu_case_new(int N, int C) {
    size_t n = (size_t)N * C;
    gelu_case k = {.N = N, .C = C};
    k.h0 = mt_test_falloc(n), k.bias = mt_test_falloc(C);
    k.dy = mt_test_falloc(n), k.db0 = mt_test_falloc(C);
    k.uh = mt_test_falloc(n), k.ug = mt_test_falloc(n);
    k.udx = mt_test_falloc(n), k.udb = mt_test_falloc(C);
    k.fh = mt_test_falloc(n), k.fg = mt_test_falloc(n);
    k.fdx = mt_test_falloc(n), k.fdb = mt_test_falloc(C);
    fill_gelu_input(k.h0, n, 101);
    mt_test_fill(k.bias, C, 102, -0.5f, 0.5f);
    mt_test_fill(k.dy, n, 103, -1, 1);
    mt_test_fill(k.db0, C, 104, -1, 1); /* nonzero: the op must add to it */
    return k;
}

static void gelu_case_free(gelu_case *k) {
    float *p[] = {k->h0,  k->bias, k->dy, k->db0, k->uh,  k->ug,
                  k->udx, k->udb,  k->fh, k->fg,  k->fdx, k->fdb};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) free(p[i]);
}

/* the fused pair at the current thread count into h, g, dx, db */
static void gelu_fused(const gelu_case *k, float *h, float *g, float *dx, float *db) {
    size_t n = (size_t)k->N * k->C;
    memcpy(h, k->h0, n * sizeof(float));
    mt_test_poison(g, n);
    be->bias_gelu_forward(h, g, k->bias, k->N, k->C);
    mt_test_poison(dx, n);
    memcpy(db, k->db0, k->C * sizeof(float));
    be->gelu_bias_backward(dx, db, k->dy, h, k->N, k->C);
}

static void check_bias_gelu(int N, int C) {
    size_t n = (size_t)N * C;
    gelu_case k = gelu_case_new(N, C);
    char what[80];

    omp_set_num_threads(1);
    memcpy(k.uh, k.h0, n * sizeof(float));
    be->bias_add(k.uh, k.bias, N, C);
    be->gelu_forward(k.ug, k.uh, n);
    be->gelu_backward(k.udx, k.dy, k.uh, n);
    memcpy(k.udb, k.db0, C * sizeof(float));
    be->bias_grad(k.udb, k.udx, N, C, 1.0f);
    gelu_fused(&k, k.fh, k.fg, k.fdx, k.fdb);

    bits hb = {0};
    bits_add(&hb, k.fh, k.uh, n); /* h + bias: one add either way */
    snprintf(what, sizeof what, "bias_gelu %dx%d h = h + bias", N, C);
    bits_report(what, hb);
    snprintf(what, sizeof what, "bias_gelu g %dx%d", N, C);
    vs_unfused(what, k.fg, k.ug, n, NULL);
    snprintf(what, sizeof what, "gelu_bias_bwd dx %dx%d", N, C);
    vs_unfused(what, k.fdx, k.udx, n, NULL);
    /* db: a float sum over N rows, whose rounding follows its addends'
     * last bits: bounded by the column's sum of |terms| */
    double *colabs = mt_test_dalloc(C);
    for (int c = 0; c < C; c++) colabs[c] = fabs(k.db0[c]);
    for (size_t i = 0; i < n; i++) colabs[i % C] += fabs(k.udx[i]);
    snprintf(what, sizeof what, "gelu_bias_bwd db %dx%d", N, C);
    vs_unfused(what, k.fdb, k.udb, C, colabs);
    free(colabs);

    /* 2 and 3 threads give the bits of 1; so does dx aliasing dy */
    float *h = mt_test_falloc(n), *g = mt_test_falloc(n), *dx = mt_test_falloc(n),
          *db = mt_test_falloc(C);
    for (int t = 2; t <= 4; t++) {
        bits b = {0};
        if (t <= 3) {
            omp_set_num_threads(t);
            gelu_fused(&k, h, g, dx, db);
            bits_add(&b, h, k.fh, n);
            bits_add(&b, g, k.fg, n);
            snprintf(what, sizeof what, "bias_gelu+bwd %dx%d h g dx db, %d thr", N, C, t);
        } else {
            memcpy(dx, k.dy, n * sizeof(float));
            memcpy(db, k.db0, C * sizeof(float));
            be->gelu_bias_backward(dx, db, dx, k.fh, N, C);
            snprintf(what, sizeof what, "gelu_bias_bwd %dx%d dx = dy, 3 thr", N, C);
        }
        bits_add(&b, dx, k.fdx, n);
        bits_add(&b, db, k.fdb, C);
        bits_report(what, b);
    }
    omp_set_num_threads(2);
    free(h), free(g), free(dx), free(db);
    gelu_case_free(&k);
}

/* The fused GELU against double precision over [-12, 12] (as
 * test_gradcheck.c checks the unfused one), forward relative where |g| >
 * 1e-3 and absolute, derivative absolute (it is O(1) and crosses 0): the
 * nerr above is ruled by the large values and would let a less accurate
 * exp through. One row of N points, bias 0, dy 1. */
static void check_gelu_accuracy(void) {
    enum { N = 100001 };
    float *h = mt_test_falloc(N), *g = mt_test_falloc(N), *bias = mt_test_falloc(N),
          *ones = mt_test_falloc(N), *d = mt_test_falloc(N);
    float *db = mt_test_falloc(N);
    for (int i = 0; i < N; i++) h[i] = -12.0f + 24.0f * (float)i / (N - 1), ones[i] = 1.0f;
    be->bias_gelu_forward(h, g, bias, 1, N);
    be->gelu_bias_backward(d, db, ones, h, 1, N);
    double rel, abs_err, dabs;
    mt_test_gelu_errors(h, g, d, N, &rel, &abs_err, &dabs);
    printf("%-36s forward max rel %.2e (bound 2e-6), max abs %.2e (bound 2e-6); derivative max "
           "abs %.2e (bound 4e-7)\n",
           "fused gelu accuracy on [-12, 12]", rel, abs_err, dabs);
    CHECK(rel <= 2e-6 && abs_err <= 2e-6, "fused gelu forward: rel %.2e abs %.2e", rel, abs_err);
    CHECK(dabs <= 4e-7, "fused gelu derivative: max abs error %.2e", dabs);
    free(h), free(g), free(bias), free(ones), free(d), free(db);
}

/* ---- bias + GELU: finite differences of the pair ---- */

typedef struct {
    float *hpre, *bias, *r, *h, *g;
    int N, C;
} bg_state;
static bg_state bg;

/* L = sum(r * g), g from the forward on a fresh copy of the pre-activation */
static double bg_loss(void) {
    size_t n = (size_t)bg.N * bg.C;
    memcpy(bg.h, bg.hpre, n * sizeof(float));
    be->bias_gelu_forward(bg.h, bg.g, bg.bias, bg.N, bg.C);
    return mt_test_dot(bg.r, bg.g, n);
}

static void check_bias_gelu_grad(void) {
    enum { N = 5, C = 7 };
    float hpre[N * C], bias[C], r[N * C], h[N * C], g[N * C], dx[N * C], db[C] = {0};
    double num[N * C];
    bg = (bg_state){hpre, bias, r, h, g, N, C};
    mt_test_fill(hpre, N * C, 111, -4, 4);
    mt_test_fill(bias, C, 112, -1, 1);
    mt_test_fill(r, N * C, 113, -1, 1);
    bg_loss(); /* h = hpre + bias, for the backward */
    mt_test_poison(dx, N * C);
    be->gelu_bias_backward(dx, db, r, h, N, C);
    mt_test_numeric(hpre, N * C, num, bg_loss, FD_H);
    mt_test_grad_compare_f("bias_gelu pair d/dh_pre", dx, num, N * C, GRAD_TOL, ELEM_TOL);
    mt_test_numeric(bias, C, num, bg_loss, FD_H);
    mt_test_grad_compare_f("bias_gelu pair d/dbias", db, num, C, GRAD_TOL, ELEM_TOL);
}

/* ---- residual + LayerNorm ---- */

typedef struct {
    int N, C;
    float *a, *b, *w, *bias;
    float *ures, *uout, *umean, *urstd;
    float *fres, *fout, *fmean, *frstd;
} ln_case;

static ln_case ln_case_new(int N, int C) {
    size_t n = (size_t)N * C;
    ln_case k = {.N = N, .C = C};
    k.a = mt_test_falloc(n), k.b = mt_test_falloc(n);
    k.w = mt_test_falloc(C), k.bias = mt_test_falloc(C);
    k.ures = mt_test_falloc(n), k.uout = mt_test_falloc(n);
    k.umean = mt_test_falloc(N), k.urstd = mt_test_falloc(N);
    k.fres = mt_test_falloc(n), k.fout = mt_test_falloc(n);
    k.fmean = mt_test_falloc(N), k.frstd = mt_test_falloc(N);
    mt_test_fill(k.a, n, 121, -2, 2);
    for (size_t i = 0; i < n; i++) k.a[i] += 0.5f * (float)(i / C % 5); /* per-row offsets */
    mt_test_fill(k.b, n, 122, -1, 1);
    mt_test_fill(k.w, C, 123, 0.5f, 1.5f);
    mt_test_fill(k.bias, C, 124, -0.5f, 0.5f);
    return k;
}

static void ln_case_free(ln_case *k) {
    float *p[] = {k->a,     k->b,     k->w,    k->bias, k->ures,  k->uout,
                  k->umean, k->urstd, k->fres, k->fout, k->fmean, k->frstd};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) free(p[i]);
}

/* the fused op at the current thread count, outputs poisoned first */
static void ln_fused(const ln_case *k, float *res, float *out, float *mean, float *rstd) {
    size_t n = (size_t)k->N * k->C;
    mt_test_poison(res, n);
    mt_test_poison(out, n);
    mt_test_poison(mean, k->N);
    mt_test_poison(rstd, k->N);
    be->residual_layernorm_forward(res, out, mean, rstd, k->a, k->b, k->w, k->bias, k->N, k->C);
}

/* out, mean, rstd of k (fused) against LayerNorm in double of its res */
static void ln_vs_double(const ln_case *k) {
    int N = k->N, C = k->C;
    double worst = 0, worst_stat = 0, maxref = 0;
    for (int r = 0; r < N; r++) {
        const float *x = k->fres + (size_t)r * C;
        double m = 0, v = 0;
        for (int c = 0; c < C; c++) m += x[c];
        m /= C;
        for (int c = 0; c < C; c++) v += (x[c] - m) * (x[c] - m);
        double rs = 1.0 / sqrt(v / C + 1e-5);
        worst_stat = fmax(worst_stat, fmax(fabs(k->fmean[r] - m), fabs(k->frstd[r] - rs) / rs));
        for (int c = 0; c < C; c++) {
            double ref = (x[c] - m) * rs * k->w[c] + k->bias[c];
            maxref = fmax(maxref, fabs(ref));
            worst = fmax(worst, fabs(k->fout[(size_t)r * C + c] - ref));
        }
    }
    char what[80];
    snprintf(what, sizeof what, "residual_ln %dx%d vs double", N, C);
    printf("%-36s max abs diff %.2e (bound 1e-5), mean/rstd diff %.2e (bound 1e-6)\n", what, worst,
           worst_stat);
    CHECK(worst <= 1e-5, "%s: out off by %.3e", what, worst);
    CHECK(C == 1 || maxref > 0.4, "%s: |out| at most %.3e (a weak test)", what, maxref);
    CHECK(worst_stat <= 1e-6, "%s: mean/rstd off by %.3e", what, worst_stat);
}

static void check_residual_ln(int N, int C) {
    size_t n = (size_t)N * C;
    ln_case k = ln_case_new(N, C);
    char what[80];

    omp_set_num_threads(1);
    be->add(k.ures, k.a, k.b, n);
    be->layernorm_forward(k.uout, k.umean, k.urstd, k.ures, k.w, k.bias, N, C);
    ln_fused(&k, k.fres, k.fout, k.fmean, k.frstd);
    bits rb = {0};
    bits_add(&rb, k.fres, k.ures, n); /* a + b: one add either way */
    snprintf(what, sizeof what, "residual_ln %dx%d res = a + b", N, C);
    bits_report(what, rb);
    snprintf(what, sizeof what, "residual_ln out %dx%d", N, C);
    vs_unfused(what, k.fout, k.uout, n, NULL);
    snprintf(what, sizeof what, "residual_ln mean %dx%d", N, C);
    vs_unfused(what, k.fmean, k.umean, N, NULL);
    snprintf(what, sizeof what, "residual_ln rstd %dx%d", N, C);
    vs_unfused(what, k.frstd, k.urstd, N, NULL);
    ln_vs_double(&k);

    /* 2 and 3 threads give the bits of 1; so do res aliasing a, and b */
    float *res = mt_test_falloc(n), *out = mt_test_falloc(n), *mean = mt_test_falloc(N),
          *rstd = mt_test_falloc(N);
    for (int t = 2; t <= 5; t++) {
        if (t <= 3) {
            omp_set_num_threads(t);
            ln_fused(&k, res, out, mean, rstd);
            snprintf(what, sizeof what, "residual_ln %dx%d res out mean rstd, %d thr", N, C, t);
        } else {
            int on_b = t == 5; /* res aliases a (t 4), then b (t 5) */
            memcpy(res, on_b ? k.b : k.a, n * sizeof(float));
            mt_test_poison(out, n);
            mt_test_poison(mean, N);
            mt_test_poison(rstd, N);
            be->residual_layernorm_forward(res, out, mean, rstd, on_b ? k.a : res, on_b ? res : k.b,
                                           k.w, k.bias, N, C);
            snprintf(what, sizeof what, "residual_ln %dx%d res = %s, 3 thr", N, C,
                     on_b ? "b" : "a");
        }
        bits b = {0};
        bits_add(&b, res, k.fres, n);
        bits_add(&b, out, k.fout, n);
        bits_add(&b, mean, k.fmean, N);
        bits_add(&b, rstd, k.frstd, N);
        bits_report(what, b);
    }
    omp_set_num_threads(2);
    free(res), free(out), free(mean), free(rstd);
    ln_case_free(&k);
}

/* Finite differences of L = sum(r * out) through the fused forward. The op
 * has no backward of its own: a training step runs layernorm_backward on
 * its res, mean and rstd (tests/test_gpt_ops.c checks that op), and the
 * add's backward is the identity, dL/da = dL/db = dL/dres. This checks
 * that the pair gives the fused forward's gradient. */
typedef struct {
    float *a, *b, *w, *bias, *r, *res, *out, *mean, *rstd;
    int N, C;
} rl_state;
static rl_state rl;

static double rl_loss(void) {
    be->residual_layernorm_forward(rl.res, rl.out, rl.mean, rl.rstd, rl.a, rl.b, rl.w, rl.bias,
                                   rl.N, rl.C);
    return mt_test_dot(rl.r, rl.out, (size_t)rl.N * rl.C);
}

static void check_residual_ln_grad(void) {
    enum { N = 4, C = 11 };
    float a[N * C], b[N * C], w[C], bias[C], r[N * C], res[N * C], out[N * C], mean[N], rstd[N];
    float dres[N * C] = {0}, dw[C] = {0}, dbias[C] = {0};
    double num[N * C];
    rl = (rl_state){a, b, w, bias, r, res, out, mean, rstd, N, C};
    mt_test_fill(a, N * C, 131, -2, 2);
    mt_test_fill(b, N * C, 132, -1, 1);
    mt_test_fill(w, C, 133, 0.5f, 1.5f);
    mt_test_fill(bias, C, 134, -0.5f, 0.5f);
    mt_test_fill(r, N * C, 135, -1, 1);
    rl_loss();
    be->layernorm_backward(dres, dw, dbias, r, res, w, mean, rstd, N, C);
    mt_test_numeric(a, N * C, num, rl_loss, FD_H);
    mt_test_grad_compare_f("residual_ln d/da", dres, num, N * C, GRAD_TOL, ELEM_TOL);
    mt_test_numeric(b, N * C, num, rl_loss, FD_H);
    mt_test_grad_compare_f("residual_ln d/db", dres, num, N * C, GRAD_TOL, ELEM_TOL);
    mt_test_numeric(w, C, num, rl_loss, FD_H);
    mt_test_grad_compare_f("residual_ln d/dw", dw, num, C, GRAD_TOL, ELEM_TOL);
    mt_test_numeric(bias, C, num, rl_loss, FD_H);
    mt_test_grad_compare_f("residual_ln d/dbias", dbias, num, C, GRAD_TOL, ELEM_TOL);
}

int main(void) {
    be = mt_backend_cpu();
    CHECK(be->residual_layernorm_forward && be->bias_gelu_forward && be->gelu_bias_backward,
          "the CPU backend lacks a fused op");
    if (mt_test_failures) return mt_test_finish("fused_ops");
    /* N*C over 1 << 15 engages the threads: 37 x 1029, 1 x 40000, 3000 x 13,
     * 64 x 1000, and the GPT bench's 1024 x 1024 (GELU) and 1024 x 256 */
    static const int gelu_shapes[][2] = {{1, 1},     {1, 3},      {3, 1},     {5, 7},
                                         {2, 100},   {37, 1029},  {1, 40000}, {3000, 13},
                                         {64, 1000}, {1024, 1024}};
    static const int ln_shapes[][2] = {{1, 1},     {1, 3},     {3, 1},     {5, 7},     {4, 100},
                                       {37, 1029}, {1, 40000}, {3000, 13}, {1024, 256}};
    for (size_t i = 0; i < sizeof gelu_shapes / sizeof gelu_shapes[0]; i++)
        check_bias_gelu(gelu_shapes[i][0], gelu_shapes[i][1]);
    check_gelu_accuracy();
    check_bias_gelu_grad();
    for (size_t i = 0; i < sizeof ln_shapes / sizeof ln_shapes[0]; i++)
        check_residual_ln(ln_shapes[i][0], ln_shapes[i][1]);
    check_residual_ln_grad();
    return mt_test_finish("fused_ops");
}
