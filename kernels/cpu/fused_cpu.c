/*
 * fused_cpu.c - the CPU backend's fused element-wise ops (contracts in
 * kernels/backend.h): residual add + LayerNorm forward, bias + GELU forward,
 * GELU backward + bias gradient. Each does in one sweep over the data what
 * two unfused ops do in two, and its inner loop is an MT_VEC function
 * (kernels/cpu/vec.h: an AVX2 copy chosen at load time where the CPU has
 * it) called from a plain OpenMP loop.
 *
 * Numerics: the GELU is backend_cpu.c's, the same function (mt_vgelu and
 * mt_vgelu_grad, kernels/cpu/vmath.h), and the LayerNorm normalizes with the
 * saved float mean and rstd as gpt_cpu.c's does, so that layernorm_backward
 * sees the same xhat. Two things move the last bits against the unfused
 * ops (tests/test_fused_ops.c measures by how much): the AVX2 copies
 * contract a * b + c into FMAs (this file is built with -ffp-contract=fast;
 * the GELUs take 30 % less time), and a LayerNorm row's statistics are
 * summed in double in LN_LANES interleaved partial sums (a vector loop;
 * gpt_cpu.c adds one element after the other), which can move the float
 * mean or rstd by a unit in the last place, rarely. On a CPU without AVX2
 * the GELUs give the unfused ops' bits.
 *
 * Determinism: every output element is computed by one thread in a fixed
 * order, rows of the forwards are independent, and the bias gradient is
 * split by columns, each column's rows summed in order (as cpu_bias_grad):
 * results do not depend on the thread count, bitwise.
 */
#include "kernels/cpu/fused_cpu.h"

#include <math.h>
#include <omp.h>

#include "kernels/cpu/vec.h"
#include "kernels/cpu/vmath.h"

#define LN_EPS   1e-5
#define LN_LANES 8    /* partial sums of a LayerNorm row's statistics */
#define COL_MAX  1024 /* columns per task of the bias gradient, at most */

/* ---- bias + GELU ---- */

/* One row: h(C) += bias(C), g(C) = gelu(h). g never aliases h (h is kept). */
static MT_VEC void bias_gelu_row(float *restrict h, float *restrict g, const float *restrict bias,
                                 int C) {
    for (int c = 0; c < C; c++) {
        float v = h[c] + bias[c];
        h[c] = v;
        g[c] = mt_vgelu(v);
    }
}

void mt_cpu_bias_gelu_forward(float *h, float *g, const float *bias, int N, int C) {
    /* the GELU is heavy enough per element to use threads 4 times sooner */
#pragma omp parallel for schedule(static) if ((size_t)N * C >= MT_OMP_MIN / 4)
    for (int r = 0; r < N; r++) bias_gelu_row(h + (size_t)r * C, g + (size_t)r * C, bias, C);
}

/* Columns [0, w) (w <= COL_MAX) of the (N, C) matrices dx, dy, h, each
 * pointer already at the block's first column: dx = dy * gelu'(h) and db(w)
 * += the column sums of dx, each column's rows added in order. dx may alias
 * dy exactly: each element is read before it is written, in the same
 * iteration (ivdep: no dependence across iterations). */
static MT_VEC void gelu_bias_cols(float *dx, float *db, const float *dy, const float *h, int N,
                                  int C, int w) {
    float acc[COL_MAX];
    for (int c = 0; c < w; c++) acc[c] = db[c];
    for (int r = 0; r < N; r++) {
        const float *dyr = dy + (size_t)r * C, *hr = h + (size_t)r * C;
        float *dxr = dx + (size_t)r * C;
#pragma GCC ivdep
        for (int c = 0; c < w; c++) {
            float d = dyr[c] * mt_vgelu_grad(hr[c]);
            dxr[c] = d;
            acc[c] += d;
        }
    }
    for (int c = 0; c < w; c++) db[c] = acc[c];
}

void mt_cpu_gelu_bias_backward(float *dx, float *db, const float *dy, const float *h, int N,
                               int C) {
    /* One block of columns per thread, as wide as it can be (whole vectors,
     * at most COL_MAX): long row segments run faster than cpu_bias_grad's
     * blocks of 64 (1 thread, 1024 x 1024: 1.06 ns per element in one block,
     * 1.24 in blocks of 256, 1.56 in blocks of 64). A column's bits do not
     * depend on the block it falls in (its elements, then its sum over the
     * rows in order, the initial db[c] first: cpu_bias_grad's order with
     * beta 1), so the width may follow the thread count. */
    if (N <= 0 || C <= 0) return;
    int threads = (size_t)N * C >= MT_OMP_MIN / 4 ? omp_get_max_threads() : 1;
    int bw = ((C + threads - 1) / threads + 7) / 8 * 8;
    if (bw > COL_MAX) bw = COL_MAX;
    int nb = (C + bw - 1) / bw;
#pragma omp parallel for schedule(static) if (nb > 1 && threads > 1)
    for (int k = 0; k < nb; k++) {
        int c0 = k * bw, w = C - c0 < bw ? C - c0 : bw;
        gelu_bias_cols(dx + c0, db + c0, dy + c0, h + c0, N, C, w);
    }
}

/* ---- residual + LayerNorm ---- */

/* sum of x(n) in double, LN_LANES interleaved partial sums (a vector loop,
 * in a fixed order) added pairwise, then the tail in order */
static inline double row_sum(const float *x, int n) {
    double acc[LN_LANES] = {0};
    int c = 0;
    for (; c + LN_LANES <= n; c += LN_LANES)
        for (int j = 0; j < LN_LANES; j++) acc[j] += (double)x[c + j];
    for (int half = LN_LANES / 2; half > 0; half /= 2)
        for (int j = 0; j < half; j++) acc[j] += acc[j + half];
    double s = acc[0];
    for (; c < n; c++) s += (double)x[c];
    return s;
}

/* sum of (x - m)^2 over x(n) in double, in row_sum's order */
static inline double row_sqdev(const float *x, int n, double m) {
    double acc[LN_LANES] = {0};
    int c = 0;
    for (; c + LN_LANES <= n; c += LN_LANES)
        for (int j = 0; j < LN_LANES; j++) {
            double d = (double)x[c + j] - m;
            acc[j] += d * d;
        }
    for (int half = LN_LANES / 2; half > 0; half /= 2)
        for (int j = 0; j < half; j++) acc[j] += acc[j + half];
    double s = acc[0];
    for (; c < n; c++) {
        double d = (double)x[c] - m;
        s += d * d;
    }
    return s;
}

/* One row of C: res = a + b (res may alias a or b exactly), then its
 * LayerNorm into out, *mean, *rstd. The row is read from memory once; the
 * statistics and the normalization reread res from cache. Two passes for
 * the statistics, as gpt_cpu.c: no cancellation when |mean| >> std. */
static MT_VEC void residual_ln_row(float *res, float *out, float *mean, float *rstd, const float *a,
                                   const float *b, const float *w, const float *bias, int C) {
#pragma GCC ivdep
    for (int c = 0; c < C; c++) res[c] = a[c] + b[c];
    double m = row_sum(res, C) / C;
    double v = row_sqdev(res, C, m);
    float mf = (float)m;
    float rs = (float)(1.0 / sqrt(v / C + LN_EPS));
    for (int c = 0; c < C; c++) out[c] = (res[c] - mf) * rs * w[c] + bias[c];
    *mean = mf;
    *rstd = rs;
}

void mt_cpu_residual_layernorm_forward(float *res, float *out, float *mean, float *rstd,
                                       const float *a, const float *b, const float *w,
                                       const float *bias, int N, int C) {
#pragma omp parallel for schedule(static) if ((size_t)N * C >= MT_OMP_MIN)
    for (int r = 0; r < N; r++) {
        size_t o = (size_t)r * C;
        residual_ln_row(res + o, out + o, mean + r, rstd + r, a + o, b + o, w, bias, C);
    }
}
