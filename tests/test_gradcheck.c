/*
 * test_gradcheck.c - finite-difference checks of every CPU op's backward and
 * of the whole MLP.
 *
 * For an op y = f(x) we take the scalar L = sum(r * y) with fixed random r,
 * get dL/dx from the op's backward (dy = r) and compare it with central
 * differences (L(x + h) - L(x - h)) / 2h computed in double from the float
 * op. Error measure per gradient: normalized error
 *   ||analytic - numeric||_2 / ||numeric||_2  <=  GRAD_TOL (2e-3),
 * and every element within 2e-2 * max|numeric| + 1e-5. The bound covers
 * float rounding of L divided by h (h = 1e-2 for smooth ops, inputs kept
 * away from ReLU's kink) and the O(h^2) truncation of central differences.
 */
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/mlp.h"
#include "core/params.h"
#include "base/rng.h"
#include "kernels/backend.h"
#include "test_util.h"

#define GRAD_TOL 2e-3
#define ELEM_TOL 2e-2
#define FD_H     1e-2f

static const mt_backend *be;

/* ---- elementwise activations ---- */

typedef void (*fwd_fn)(float *, const float *, size_t);
typedef void (*bwd_fn)(float *, const float *, const float *, size_t);

typedef struct {
    fwd_fn f;
    const float *x, *r; /* (n) */
    float *y;           /* (n) */
    size_t n;
} act_state;
static act_state act;

static double act_loss(void) {
    act.f(act.y, act.x, act.n);
    return mt_test_dot(act.r, act.y, act.n);
}

static void check_activation(const char *name, fwd_fn f, bwd_fn b, int avoid_zero) {
    enum { N = 257 };
    float x[N], r[N], y[N], dx[N];
    double num[N];
    act = (act_state){f, x, r, y, N};
    mt_test_fill(x, N, 1, -3.0f, 3.0f);
    if (avoid_zero)
        for (int i = 0; i < N; i++)
            if (fabsf(x[i]) < 0.05f) x[i] = x[i] < 0 ? -0.05f : 0.05f;
    mt_test_fill(r, N, 2, -1.0f, 1.0f);
    b(dx, r, x, N);
    mt_test_numeric(x, N, num, act_loss, FD_H);
    mt_test_grad_compare_f(name, dx, num, N, GRAD_TOL, ELEM_TOL);
}

/* ---- linear: y = x W^T + b ---- */

enum { LB = 5, LIN = 7, LOUT = 6 };

typedef struct {
    const float *x, *W, *bias, *r; /* (LB,LIN), (LOUT,LIN), (LOUT), (LB,LOUT) */
} lin_state;
static lin_state lin;

static double linear_loss(void) {
    float y[LB * LOUT];
    be->matmul(0, 1, LB, LOUT, LIN, 1.0f, lin.x, LIN, lin.W, LIN, 0.0f, y, LOUT);
    be->bias_add(y, lin.bias, LB, LOUT);
    return mt_test_dot(lin.r, y, LB * LOUT);
}

static void check_linear(void) {
    float x[LB * LIN], W[LOUT * LIN], bias[LOUT], r[LB * LOUT];
    float dx[LB * LIN], dW[LOUT * LIN], db[LOUT];
    double num[LOUT * LIN + LB * LIN];
    lin = (lin_state){x, W, bias, r};
    mt_test_fill(x, LB * LIN, 3, -1, 1);
    mt_test_fill(W, LOUT * LIN, 4, -1, 1);
    mt_test_fill(bias, LOUT, 5, -1, 1);
    mt_test_fill(r, LB * LOUT, 6, -1, 1);
    /* backward with dy = r: dx = dy W, dW = dy^T x, db = sum dy */
    be->matmul(0, 0, LB, LIN, LOUT, 1.0f, r, LOUT, W, LIN, 0.0f, dx, LIN);
    be->matmul(1, 0, LOUT, LIN, LB, 1.0f, r, LOUT, x, LIN, 0.0f, dW, LIN);
    be->bias_grad(db, r, LB, LOUT, 0.0f);
    mt_test_numeric(x, LB * LIN, num, linear_loss, FD_H);
    mt_test_grad_compare_f("linear d/dx", dx, num, LB * LIN, GRAD_TOL, ELEM_TOL);
    mt_test_numeric(W, LOUT * LIN, num, linear_loss, FD_H);
    mt_test_grad_compare_f("linear d/dW", dW, num, LOUT * LIN, GRAD_TOL, ELEM_TOL);
    mt_test_numeric(bias, LOUT, num, linear_loss, FD_H);
    mt_test_grad_compare_f("linear d/db", db, num, LOUT, GRAD_TOL, ELEM_TOL);
    /* accumulation: beta = 1 adds to what is there */
    float db2[LOUT];
    for (int i = 0; i < LOUT; i++) db2[i] = 1.0f;
    be->bias_grad(db2, r, LB, LOUT, 1.0f);
    double worst = 0;
    for (int i = 0; i < LOUT; i++) worst = fmax(worst, fabs(db2[i] - (db[i] + 1.0f)));
    CHECK(worst < 1e-6, "bias_grad with beta=1 does not accumulate (off by %.3e)", worst);
}

/* ---- softmax cross-entropy ---- */

enum { XB = 6, XC = 5 };

typedef struct {
    float *p, *z;     /* (XB,XC) */
    const int32_t *y; /* (XB) */
} xent_state;
static xent_state xe;

static double xent_loss(void) {
    return be->softmax_xent_forward(xe.p, xe.z, xe.y, XB, XC, XC);
}

static void check_softmax_xent(void) {
    enum { B = XB, C = XC };
    float z[B * C], p[B * C], d[B * C];
    int32_t y[B] = {0, 4, 2, 2, 1, 3};
    double num[B * C];
    xe = (xent_state){p, z, y};
    mt_test_fill(z, B * C, 8, -4, 4);
    double loss = be->softmax_xent_forward(p, z, y, B, C, C);
    /* reference loss in double */
    double ref = 0;
    for (int b = 0; b < B; b++) {
        double s = 0;
        for (int c = 0; c < C; c++) s += exp((double)z[b * C + c]);
        ref += log(s) - z[b * C + y[b]];
    }
    printf("%-28s loss %.9f, double reference %.9f\n", "softmax_xent forward", loss, ref);
    CHECK(fabs(loss - ref) <= 1e-5 * fabs(ref), "xent loss %.9f vs reference %.9f", loss, ref);
    be->softmax_xent_backward(d, p, y, B, C, C, 1.0f);
    mt_test_numeric(z, B * C, num, xent_loss, FD_H);
    mt_test_grad_compare_f("softmax_xent d/dlogits", d, num, B * C, GRAD_TOL, ELEM_TOL);
    /* Extreme logits stay finite. */
    float big[C] = {1000.0f, -1000.0f, 0.0f, 500.0f, 999.0f};
    int32_t yb[1] = {1};
    double lb = be->softmax_xent_forward(p, big, yb, 1, C, C);
    double want = 2000.0 + log1p(exp(-1.0)); /* logsumexp = 1000 + log(1 + e^-1), minus -1000 */
    CHECK(isfinite(lb) && fabs(lb - want) < 1e-3, "xent of extreme logits = %f (want %f)", lb,
          want);
    int64_t correct = be->count_correct(z, y, B, C, C);
    int64_t ref_correct = 0;
    for (int b = 0; b < B; b++) {
        int best = 0;
        for (int c = 1; c < C; c++)
            if (z[b * C + c] > z[b * C + best]) best = c;
        ref_correct += best == y[b];
    }
    CHECK(correct == ref_correct, "count_correct %lld vs %lld", (long long)correct,
          (long long)ref_correct);
}

/* ---- the whole MLP ---- */

typedef struct {
    mt_mlp *m;
    mt_params *p;
    const float *x;   /* (B,6) */
    const int32_t *y; /* (B) */
    int B;
} mlp_state;
static mlp_state ml;

/* the mean loss over the batch */
static double mlp_loss(void) {
    return mt_mlp_forward(ml.m, be, ml.p, ml.x, ml.y, ml.B) / ml.B;
}

static void check_mlp(int activation) {
    mt_config cfg;
    mt_config_defaults(&cfg);
    int64_t sizes[] = {6, 5, 4, 3};
    cfg.model.layers.n = 4;
    memcpy(cfg.model.layers.v, sizes, sizeof sizes);
    cfg.model.activation = activation;
    mt_err e = {0};
    mt_params p;
    mt_mlp m;
    mt_params_init(&p);
    mt_mlp_build(&m, &cfg, &p, &e);
    mt_params_alloc(&p, &e);
    mt_mlp_alloc(&m, be, 4, &e);
    CHECK(e.code == 0, "building the MLP failed: %s", e.msg);
    mt_params_init_values(&p, 99);
    enum { B = 4 };
    float x[B * 6];
    int32_t y[B] = {0, 2, 1, 2};
    mt_test_fill(x, B * 6, 9, -1, 1);
    ml = (mlp_state){&m, &p, x, y, B};
    mt_mlp_forward(&m, be, &p, x, y, B);
    mt_mlp_backward(&m, be, &p, x, y, B, 1.0f / B, 0);
    /* Keep ReLU inputs away from 0 where the derivative jumps: with h small
     * (1e-3) relative to the margin below, no unit crosses zero. */
    size_t n = p.numel;
    double *ana = mt_test_dalloc(n), *num = mt_test_dalloc(n);
    for (size_t i = 0; i < n; i++) ana[i] = p.grad[i];
    mt_test_numeric(p.data, n, num, mlp_loss, activation == MT_ACT_RELU ? 1e-3f : FD_H);
    /* Padding between tensors has no gradient either way; compare all. */
    mt_test_grad_compare(activation == MT_ACT_RELU ? "mlp 6-5-4-3 relu, all params"
                                                   : "mlp 6-5-4-3 gelu, all params",
                         ana, num, n, GRAD_TOL, ELEM_TOL);
    /* Accumulate: a second backward with accumulate=1 doubles the gradient. */
    mt_mlp_forward(&m, be, &p, x, y, B);
    mt_mlp_backward(&m, be, &p, x, y, B, 1.0f / B, 1);
    double worst = 0;
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs(p.grad[i] - 2.0 * ana[i]));
    CHECK(worst < 1e-6, "gradient accumulation off by %.3e", worst);
    free(ana);
    free(num);
    mt_mlp_free(&m, be);
    mt_params_free(&p);
}

/* GELU (tanh form) against double precision over [-12, 12], forward and
 * derivative: the vectorized exp must not cost accuracy. */
static void check_gelu_accuracy(void) {
    enum { N = 100001 };
    float *x = mt_test_falloc(N), *y = mt_test_falloc(N);
    float *ones = mt_test_falloc(N), *d = mt_test_falloc(N);
    for (int i = 0; i < N; i++) x[i] = -12.0f + 24.0f * (float)i / (N - 1), ones[i] = 1.0f;
    be->gelu_forward(y, x, N);
    be->gelu_backward(d, ones, x, N);
    double rel, abs_err, drel;
    mt_test_gelu_errors(x, y, d, N, &rel, &abs_err, &drel);
    printf("gelu accuracy on [-12, 12]    forward max rel %.2e, max abs %.2e; derivative max abs "
           "%.2e\n",
           rel, abs_err, drel);
    CHECK(rel <= 1e-5 && abs_err <= 2e-6, "gelu forward: rel %.2e abs %.2e", rel, abs_err);
    CHECK(drel <= 1e-6, "gelu derivative: max abs error %.2e", drel);
    free(x), free(y), free(ones), free(d);
}

int main(void) {
    be = mt_backend_cpu();
    check_gelu_accuracy();
    check_activation("relu", be->relu_forward, be->relu_backward, 1);
    check_activation("gelu", be->gelu_forward, be->gelu_backward, 0);
    check_linear();
    check_softmax_xent();
    check_mlp(MT_ACT_RELU);
    check_mlp(MT_ACT_GELU);
    return mt_test_finish("gradcheck");
}
