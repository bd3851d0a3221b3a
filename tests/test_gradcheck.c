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

static const mt_backend *be;

/* Compares analytic and numeric gradients; prints both errors (test_util.h). */
static void compare(const char *what, const double *ana, const double *num, size_t n) {
    mt_test_grad_compare(what, ana, num, n, GRAD_TOL, ELEM_TOL);
}

/* ---- elementwise activations ---- */

typedef void (*fwd_fn)(float *, const float *, size_t);
typedef void (*bwd_fn)(float *, const float *, const float *, size_t);

static double act_loss(fwd_fn f, const float *x, const float *r, float *y, size_t n) {
    f(y, x, n);
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)r[i] * y[i];
    return s;
}

static void check_activation(const char *name, fwd_fn f, bwd_fn b, int avoid_zero) {
    enum { N = 257 };
    float x[N], r[N], y[N], dx[N];
    double ana[N], num[N];
    mt_test_fill(x, N, 1, -3.0f, 3.0f);
    if (avoid_zero)
        for (int i = 0; i < N; i++)
            if (fabsf(x[i]) < 0.05f) x[i] = x[i] < 0 ? -0.05f : 0.05f;
    mt_test_fill(r, N, 2, -1.0f, 1.0f);
    b(dx, r, x, N);
    for (int i = 0; i < N; i++) ana[i] = dx[i];
    const float h = 1e-2f;
    for (int i = 0; i < N; i++) {
        float keep = x[i];
        x[i] = keep + h;
        double lp = act_loss(f, x, r, y, N);
        x[i] = keep - h;
        double lm = act_loss(f, x, r, y, N);
        x[i] = keep;
        num[i] = (lp - lm) / (2.0 * h);
    }
    compare(name, ana, num, N);
}

/* ---- linear: y = x W^T + b ---- */

enum { LB = 5, LIN = 7, LOUT = 6 };

static double linear_loss(const float *x, const float *W, const float *bias, const float *r) {
    float y[LB * LOUT];
    be->matmul(0, 1, LB, LOUT, LIN, 1.0f, x, LIN, W, LIN, 0.0f, y, LOUT);
    be->bias_add(y, bias, LB, LOUT);
    double s = 0;
    for (int i = 0; i < LB * LOUT; i++) s += (double)r[i] * y[i];
    return s;
}

static void numeric(float *v, size_t n, double *num, const float *x, const float *W,
                    const float *bias, const float *r) {
    const float h = 1e-2f;
    for (size_t i = 0; i < n; i++) {
        float keep = v[i];
        v[i] = keep + h;
        double lp = linear_loss(x, W, bias, r);
        v[i] = keep - h;
        double lm = linear_loss(x, W, bias, r);
        v[i] = keep;
        num[i] = (lp - lm) / (2.0 * h);
    }
}

static void check_linear(void) {
    float x[LB * LIN], W[LOUT * LIN], bias[LOUT], r[LB * LOUT];
    float dx[LB * LIN], dW[LOUT * LIN], db[LOUT];
    double ana[LOUT * LIN + LB * LIN], num[LOUT * LIN + LB * LIN];
    mt_test_fill(x, LB * LIN, 3, -1, 1);
    mt_test_fill(W, LOUT * LIN, 4, -1, 1);
    mt_test_fill(bias, LOUT, 5, -1, 1);
    mt_test_fill(r, LB * LOUT, 6, -1, 1);
    /* backward with dy = r: dx = dy W, dW = dy^T x, db = sum dy */
    be->matmul(0, 0, LB, LIN, LOUT, 1.0f, r, LOUT, W, LIN, 0.0f, dx, LIN);
    be->matmul(1, 0, LOUT, LIN, LB, 1.0f, r, LOUT, x, LIN, 0.0f, dW, LIN);
    be->bias_grad(db, r, LB, LOUT, 0.0f);
    for (int i = 0; i < LB * LIN; i++) ana[i] = dx[i];
    numeric(x, LB * LIN, num, x, W, bias, r);
    compare("linear d/dx", ana, num, LB * LIN);
    for (int i = 0; i < LOUT * LIN; i++) ana[i] = dW[i];
    numeric(W, LOUT * LIN, num, x, W, bias, r);
    compare("linear d/dW", ana, num, LOUT * LIN);
    for (int i = 0; i < LOUT; i++) ana[i] = db[i];
    numeric(bias, LOUT, num, x, W, bias, r);
    compare("linear d/db", ana, num, LOUT);
    /* accumulation: beta = 1 adds to what is there */
    float db2[LOUT];
    for (int i = 0; i < LOUT; i++) db2[i] = 1.0f;
    be->bias_grad(db2, r, LB, LOUT, 1.0f);
    double worst = 0;
    for (int i = 0; i < LOUT; i++) worst = fmax(worst, fabs(db2[i] - (db[i] + 1.0f)));
    CHECK(worst < 1e-6, "bias_grad with beta=1 does not accumulate (off by %.3e)", worst);
}

/* ---- softmax cross-entropy ---- */

static void check_softmax_xent(void) {
    enum { B = 6, C = 5 };
    float z[B * C], p[B * C], d[B * C];
    int32_t y[B] = {0, 4, 2, 2, 1, 3};
    double ana[B * C], num[B * C];
    mt_test_fill(z, B * C, 8, -4, 4);
    double loss = be->softmax_xent_forward(p, z, y, B, C);
    /* reference loss in double */
    double ref = 0;
    for (int b = 0; b < B; b++) {
        double s = 0;
        for (int c = 0; c < C; c++) s += exp((double)z[b * C + c]);
        ref += log(s) - z[b * C + y[b]];
    }
    printf("%-28s loss %.9f, double reference %.9f\n", "softmax_xent forward", loss, ref);
    CHECK(fabs(loss - ref) <= 1e-5 * fabs(ref), "xent loss %.9f vs reference %.9f", loss, ref);
    be->softmax_xent_backward(d, p, y, B, C, 1.0f);
    for (int i = 0; i < B * C; i++) ana[i] = d[i];
    const float h = 1e-2f;
    for (int i = 0; i < B * C; i++) {
        float keep = z[i];
        z[i] = keep + h;
        double lp = be->softmax_xent_forward(p, z, y, B, C);
        z[i] = keep - h;
        double lm = be->softmax_xent_forward(p, z, y, B, C);
        z[i] = keep;
        num[i] = (lp - lm) / (2.0 * h);
    }
    compare("softmax_xent d/dlogits", ana, num, B * C);
    /* Extreme logits stay finite. */
    float big[C] = {1000.0f, -1000.0f, 0.0f, 500.0f, 999.0f};
    int32_t yb[1] = {1};
    double lb = be->softmax_xent_forward(p, big, yb, 1, C);
    double want = 2000.0 + log1p(exp(-1.0)); /* logsumexp = 1000 + log(1 + e^-1), minus -1000 */
    CHECK(isfinite(lb) && fabs(lb - want) < 1e-3, "xent of extreme logits = %f (want %f)", lb,
          want);
    int64_t correct = be->count_correct(z, y, B, C);
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
    mt_mlp_forward(&m, be, &p, x, y, B);
    mt_mlp_backward(&m, be, &p, x, y, B, 1.0f / B, 0);
    /* Keep ReLU inputs away from 0 where the derivative jumps: with h small
     * (1e-3) relative to the margin below, no unit crosses zero. */
    size_t n = p.numel;
    double *ana = calloc(n, sizeof(double)), *num = calloc(n, sizeof(double));
    for (size_t i = 0; i < n; i++) ana[i] = p.grad[i];
    const float h = activation == MT_ACT_RELU ? 1e-3f : 1e-2f;
    for (size_t i = 0; i < n; i++) {
        float keep = p.data[i];
        p.data[i] = keep + h;
        double lp = mt_mlp_forward(&m, be, &p, x, y, B) / B;
        p.data[i] = keep - h;
        double lm = mt_mlp_forward(&m, be, &p, x, y, B) / B;
        p.data[i] = keep;
        num[i] = (lp - lm) / (2.0 * h);
    }
    /* Padding between tensors has no gradient either way; compare all. */
    compare(activation == MT_ACT_RELU ? "mlp 6-5-4-3 relu, all params"
                                      : "mlp 6-5-4-3 gelu, all params",
            ana, num, n);
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
    float *x = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float));
    float *ones = malloc(N * sizeof(float)), *d = malloc(N * sizeof(float));
    for (int i = 0; i < N; i++) x[i] = -12.0f + 24.0f * (float)i / (N - 1), ones[i] = 1.0f;
    be->gelu_forward(y, x, N);
    be->gelu_backward(d, ones, x, N);
    double rel = 0, abs_err = 0, drel = 0;
    for (int i = 0; i < N; i++) {
        double v = x[i], k = sqrt(2.0 / M_PI), u = k * (v + 0.044715 * v * v * v);
        double t = tanh(u), ref = 0.5 * v * (1 + t);
        double dref = 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * k * (1 + 3 * 0.044715 * v * v);
        double e = fabs(y[i] - ref);
        abs_err = fmax(abs_err, e);
        if (fabs(ref) > 1e-3) rel = fmax(rel, e / fabs(ref));
        drel = fmax(drel, fabs(d[i] - dref)); /* the derivative is O(1) and crosses 0 */
    }
    printf("gelu accuracy on [-12, 12]    forward max rel %.2e, max abs %.2e; derivative max abs %.2e\n",
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
