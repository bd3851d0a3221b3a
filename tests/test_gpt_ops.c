/*
 * test_gpt_ops.c - checks of the CPU transformer ops (kernels/cpu/gpt_cpu.c):
 * finite-difference gradients of every op with a backward, forwards against
 * naive references, dropout statistics, accumulate semantics and determinism.
 *
 * Gradient checks follow test_gradcheck.c: for y = f(x), L = sum(r * y) with
 * fixed random r; the op's backward with dy = r gives dL/dx, compared with
 * central differences (L(x + h) - L(x - h)) / 2h (h = 1e-2, L in double from
 * the float op) by normalized error ||ana - num|| / ||num|| <= 2e-3 and every
 * element within 2e-2 * max|num| + 1e-5.
 */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "kernels/backend.h"
#include "test_util.h"

#define GRAD_TOL 2e-3
#define ELEM_TOL 2e-2
#define FD_H     1e-2f

static const mt_backend *be;

/* Reports whether two runs' outputs a and b match bitwise. */
static void same_bits(const char *what, const float *a, const float *b, size_t n) {
    int same = memcmp(a, b, n * sizeof(float)) == 0;
    printf("%-30s n=%-7zu bitwise %s\n", what, n, same ? "identical" : "DIFFERENT");
    CHECK(same, "%s: results differ (max abs diff %.3e)", what, mt_test_max_abs_diff(a, b, n));
}

/* ---- add, accumulate ---- */

typedef struct {
    float *a, *b, *r, *y;
    size_t n;
} add_state;
static add_state ad;

static double add_loss(void) {
    be->add(ad.y, ad.a, ad.b, ad.n);
    return mt_test_dot(ad.r, ad.y, ad.n);
}

static void check_add(void) {
    enum { N = 97 };
    float a[N], b[N], r[N], y[N], da[N] = {0}, dst[N];
    double num[N];
    ad = (add_state){a, b, r, y, N};
    mt_test_fill(a, N, 11, -1, 1);
    mt_test_fill(b, N, 12, -1, 1);
    mt_test_fill(r, N, 13, -1, 1);
    /* dL/da = dL/db = dy = r, formed with accumulate into zero */
    be->accumulate(da, r, N);
    mt_test_numeric(a, N, num, add_loss, FD_H);
    mt_test_grad_compare_f("add d/da", da, num, N, GRAD_TOL, ELEM_TOL);
    mt_test_numeric(b, N, num, add_loss, FD_H);
    mt_test_grad_compare_f("add d/db", da, num, N, GRAD_TOL, ELEM_TOL);
    /* exact semantics, and out aliasing a */
    int bad = 0;
    memcpy(dst, a, sizeof dst);
    be->accumulate(dst, b, N);
    for (int i = 0; i < N; i++) bad += dst[i] != a[i] + b[i];
    memcpy(y, a, sizeof y);
    be->add(y, y, b, N);
    for (int i = 0; i < N; i++) bad += y[i] != a[i] + b[i];
    printf("%-30s %d elements differ from a + b\n", "add/accumulate exact", bad);
    CHECK(bad == 0, "add/accumulate: %d elements differ from a + b", bad);
}

/* ---- LayerNorm ---- */

typedef struct {
    float *x, *w, *b, *r, *out, *mean, *rstd;
    int N, C;
} ln_state;
static ln_state ln;

static double ln_loss(void) {
    be->layernorm_forward(ln.out, ln.mean, ln.rstd, ln.x, ln.w, ln.b, ln.N, ln.C);
    return mt_test_dot(ln.r, ln.out, (size_t)ln.N * ln.C);
}

static void check_layernorm(void) {
    enum { N = 6, C = 16 };
    float x[N * C], w[C], b[C], r[N * C], out[N * C], mean[N], rstd[N];
    float dx[N * C] = {0}, dw[C] = {0}, db[C] = {0};
    double num[N * C];
    ln = (ln_state){x, w, b, r, out, mean, rstd, N, C};
    mt_test_fill(x, N * C, 21, -2, 2);
    for (int i = 0; i < N * C; i++) x[i] += 0.5f * (float)(i / C); /* per-row offsets */
    mt_test_fill(w, C, 22, 0.5f, 1.5f);
    mt_test_fill(b, C, 23, -0.5f, 0.5f);
    mt_test_fill(r, N * C, 24, -1, 1);

    /* forward against a double-precision reference */
    be->layernorm_forward(out, mean, rstd, x, w, b, N, C);
    double worst = 0, worst_stat = 0, maxref = 0;
    for (int n = 0; n < N; n++) {
        double m = 0, v = 0;
        for (int c = 0; c < C; c++) m += x[n * C + c];
        m /= C;
        for (int c = 0; c < C; c++) v += (x[n * C + c] - m) * (x[n * C + c] - m);
        double rs = 1.0 / sqrt(v / C + 1e-5);
        worst_stat = fmax(worst_stat, fmax(fabs(mean[n] - m), fabs(rstd[n] - rs) / rs));
        for (int c = 0; c < C; c++) {
            double ref = (x[n * C + c] - m) * rs * w[c] + b[c];
            maxref = fmax(maxref, fabs(ref));
            worst = fmax(worst, fabs(out[n * C + c] - ref));
        }
    }
    printf("%-30s max abs diff %.2e (bound 1e-5), mean/rstd diff %.2e\n", "layernorm forward",
           worst, worst_stat);
    CHECK(maxref > 0.5 && worst <= 1e-5, "layernorm forward off by %.3e", worst);
    CHECK(worst_stat <= 1e-6, "layernorm mean/rstd off by %.3e", worst_stat);

    be->layernorm_backward(dx, dw, db, r, x, w, mean, rstd, N, C);
    mt_test_numeric(x, N * C, num, ln_loss, FD_H);
    mt_test_grad_compare_f("layernorm d/dx", dx, num, N * C, GRAD_TOL, ELEM_TOL);
    mt_test_numeric(w, C, num, ln_loss, FD_H);
    mt_test_grad_compare_f("layernorm d/dw", dw, num, C, GRAD_TOL, ELEM_TOL);
    mt_test_numeric(b, C, num, ln_loss, FD_H);
    mt_test_grad_compare_f("layernorm d/db", db, num, C, GRAD_TOL, ELEM_TOL);
}

/* Larger LayerNorm (parallel branches taken): determinism, accumulation. */
static void check_layernorm_det(void) {
    enum { N = 512, C = 200 };
    size_t nc = (size_t)N * C;
    float *x = mt_test_falloc(nc), *w = mt_test_falloc(C), *b = mt_test_falloc(C),
          *dout = mt_test_falloc(nc);
    float *out = mt_test_falloc(nc), *mean = mt_test_falloc(N), *rstd = mt_test_falloc(N);
    float *g[2][3]; /* [run][dx, dw, db] */
    for (int k = 0; k < 2; k++)
        g[k][0] = mt_test_falloc(nc), g[k][1] = mt_test_falloc(C), g[k][2] = mt_test_falloc(C);
    mt_test_fill(x, nc, 31, -3, 3);
    mt_test_fill(w, C, 32, 0.5f, 1.5f);
    mt_test_fill(b, C, 33, -1, 1);
    mt_test_fill(dout, nc, 34, -1, 1);
    be->layernorm_forward(out, mean, rstd, x, w, b, N, C);
    const char *names[3] = {"dx", "dw", "db"};
    size_t sizes[3] = {nc, C, C};
    char what[64];
    for (int mode = 0; mode < 2; mode++) {
        /* mode 0: two runs on 2 threads; mode 1: 1 thread vs 2 threads */
        for (int k = 0; k < 2; k++) {
            omp_set_num_threads(mode == 1 && k == 0 ? 1 : 2);
            for (int j = 0; j < 3; j++) memset(g[k][j], 0, sizes[j] * sizeof(float));
            be->layernorm_backward(g[k][0], g[k][1], g[k][2], dout, x, w, mean, rstd, N, C);
        }
        for (int j = 0; j < 3; j++) {
            snprintf(what, sizeof what, "layernorm bwd %s %s", names[j],
                     mode ? "1 vs 2 thr" : "2 thr twice");
            same_bits(what, g[0][j], g[1][j], sizes[j]);
        }
    }
    omp_set_num_threads(2);
    /* A second call adds the same gradient again: exactly twice the first. */
    be->layernorm_backward(g[0][0], g[0][1], g[0][2], dout, x, w, mean, rstd, N, C);
    double worst = 0;
    for (int j = 0; j < 3; j++)
        for (size_t i = 0; i < sizes[j]; i++)
            worst = fmax(worst, fabs((double)g[0][j][i] - 2.0 * g[1][j][i]));
    printf("%-30s max |g2 - 2 g1| %.2e\n", "layernorm bwd accumulates", worst);
    CHECK(worst == 0.0, "layernorm_backward twice is not twice the gradient (off by %.3e)", worst);
    free(x), free(w), free(b), free(dout), free(out), free(mean), free(rstd);
    for (int k = 0; k < 2; k++)
        for (int j = 0; j < 3; j++) free(g[k][j]);
}

/* ---- attention ---- */

typedef struct {
    float *qkv, *r, *out, *att;
    int B, T, C, NH;
} att_state;
static att_state at;

static double att_loss(void) {
    be->attention_forward(at.out, at.att, at.qkv, at.B, at.T, at.C, at.NH);
    return mt_test_dot(at.r, at.out, (size_t)at.B * at.T * at.C);
}

/* Naive reference in double: out(B,T,C), att(B,NH,T,T). */
static void attention_ref(double *out, double *att, const float *qkv, int B, int T, int C, int NH) {
    int hs = C / NH;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                const float *q = qkv + ((size_t)b * T + t) * 3 * C + h * hs;
                double *a = att + (((size_t)b * NH + h) * T + t) * T;
                double mx = -INFINITY, sum = 0;
                for (int s = 0; s < T; s++) {
                    const float *k = qkv + ((size_t)b * T + s) * 3 * C + C + h * hs;
                    double d = 0;
                    for (int i = 0; i < hs; i++) d += (double)q[i] * k[i];
                    a[s] = d / sqrt((double)hs);
                    if (s <= t && a[s] > mx) mx = a[s];
                }
                for (int s = 0; s < T; s++) {
                    a[s] = s <= t ? exp(a[s] - mx) : 0.0;
                    sum += a[s];
                }
                for (int s = 0; s < T; s++) a[s] /= sum;
                for (int i = 0; i < hs; i++) {
                    double o = 0;
                    for (int s = 0; s < T; s++)
                        o += a[s] * qkv[((size_t)b * T + s) * 3 * C + 2 * C + h * hs + i];
                    out[((size_t)b * T + t) * C + h * hs + i] = o;
                }
            }
}

static void check_attention(int B, int T, int C, int NH) {
    size_t nqkv = (size_t)B * T * 3 * C, nout = (size_t)B * T * C, natt = (size_t)B * NH * T * T;
    float *qkv = mt_test_falloc(nqkv), *r = mt_test_falloc(nout), *out = mt_test_falloc(nout),
          *att = mt_test_falloc(natt);
    float *dqkv = mt_test_falloc(nqkv), *datt = mt_test_falloc(natt);
    double *num = mt_test_dalloc(nqkv), *rout = mt_test_dalloc(nout), *ratt = mt_test_dalloc(natt);
    at = (att_state){qkv, r, out, att, B, T, C, NH};
    mt_test_fill(qkv, nqkv, 41, -1.5f, 1.5f);
    mt_test_fill(r, nout, 42, -1, 1);
    char what[64];

    be->attention_forward(out, att, qkv, B, T, C, NH);
    attention_ref(rout, ratt, qkv, B, T, C, NH);
    double d_out = 0, d_att = 0, maxref = 0, rowsum = 0;
    long masked_nonzero = 0;
    for (size_t i = 0; i < nout; i++) {
        d_out = fmax(d_out, fabs(out[i] - rout[i]));
        maxref = fmax(maxref, fabs(rout[i]));
    }
    for (size_t i = 0; i < natt; i++) d_att = fmax(d_att, fabs(att[i] - ratt[i]));
    for (size_t row = 0; row < (size_t)B * NH * T; row++) {
        int t = (int)(row % T);
        double s = 0;
        for (int j = 0; j < T; j++) {
            s += att[row * T + j];
            masked_nonzero += j > t && att[row * T + j] != 0.0f;
        }
        rowsum = fmax(rowsum, fabs(s - 1.0));
    }
    snprintf(what, sizeof what, "attention fwd B%d T%d C%d NH%d", B, T, C, NH);
    printf("%-30s out diff %.2e, att diff %.2e (bound 1e-5), |rowsum-1| %.2e, masked!=0: %ld\n",
           what, d_out, d_att, rowsum, masked_nonzero);
    CHECK(maxref > 0.1 && d_out <= 1e-5, "%s: out off by %.3e", what, d_out);
    CHECK(d_att <= 1e-5, "%s: att off by %.3e", what, d_att);
    CHECK(rowsum <= 1e-5, "%s: an att row sums to 1 +- %.3e", what, rowsum);
    CHECK(masked_nonzero == 0, "%s: %ld masked entries are not 0", what, masked_nonzero);

    /* backward OVERWRITES dqkv: start it (and the scratch) from NaN */
    mt_test_poison(dqkv, nqkv);
    mt_test_poison(datt, natt);
    be->attention_backward(dqkv, datt, r, qkv, att, B, T, C, NH);
    mt_test_numeric(qkv, nqkv, num, att_loss, FD_H);
    snprintf(what, sizeof what, "attention d/dqkv T%d", T);
    mt_test_grad_compare_f(what, dqkv, num, nqkv, GRAD_TOL, ELEM_TOL);
    free(qkv), free(r), free(out), free(att), free(dqkv), free(datt);
    free(num), free(rout), free(ratt);
}

/* Two runs (and 1 vs 2 threads) of attention forward + backward. */
static void check_attention_det(void) {
    enum { B = 2, T = 100, C = 32, NH = 4 };
    size_t nqkv = (size_t)B * T * 3 * C, nout = (size_t)B * T * C, natt = (size_t)B * NH * T * T;
    float *qkv = mt_test_falloc(nqkv), *dout = mt_test_falloc(nout);
    float *out[2], *att[2], *dqkv[2], *datt[2];
    mt_test_fill(qkv, nqkv, 51, -2, 2);
    mt_test_fill(dout, nout, 52, -1, 1);
    for (int mode = 0; mode < 2; mode++) {
        for (int k = 0; k < 2; k++) {
            omp_set_num_threads(mode == 1 && k == 0 ? 1 : 2);
            out[k] = mt_test_falloc(nout), att[k] = mt_test_falloc(natt);
            dqkv[k] = mt_test_falloc(nqkv), datt[k] = mt_test_falloc(natt);
            be->attention_forward(out[k], att[k], qkv, B, T, C, NH);
            be->attention_backward(dqkv[k], datt[k], dout, qkv, att[k], B, T, C, NH);
        }
        const char *tag = mode ? "1 vs 2 thr" : "2 thr twice";
        char what[64];
        snprintf(what, sizeof what, "attention out %s", tag);
        same_bits(what, out[0], out[1], nout);
        snprintf(what, sizeof what, "attention att %s", tag);
        same_bits(what, att[0], att[1], natt);
        snprintf(what, sizeof what, "attention dqkv %s", tag);
        same_bits(what, dqkv[0], dqkv[1], nqkv);
        for (int k = 0; k < 2; k++) free(out[k]), free(att[k]), free(dqkv[k]), free(datt[k]);
    }
    omp_set_num_threads(2);
    free(qkv), free(dout);
}

/* ---- embedding ---- */

typedef struct {
    const int32_t *tok;
    float *wte, *wpe, *r, *out;
    int B, T, C;
} emb_state;
static emb_state em;

static double emb_loss(void) {
    be->embedding_forward(em.out, em.tok, em.wte, em.wpe, em.B, em.T, em.C);
    return mt_test_dot(em.r, em.out, (size_t)em.B * em.T * em.C);
}

static void check_embedding(void) {
    enum { B = 2, T = 4, C = 6, V = 5 };
    int32_t tok[B * T] = {3, 1, 3, 0, 1, 1, 4, 3}; /* repeats; token 2 unused */
    float wte[V * C], wpe[T * C], r[B * T * C], out[B * T * C];
    float dwte[V * C] = {0}, dwpe[T * C] = {0};
    double num[V * C];
    em = (emb_state){tok, wte, wpe, r, out, B, T, C};
    mt_test_fill(wte, V * C, 61, -1, 1);
    mt_test_fill(wpe, T * C, 62, -1, 1);
    mt_test_fill(r, B * T * C, 63, -1, 1);
    be->embedding_forward(out, tok, wte, wpe, B, T, C);
    int bad = 0;
    for (int i = 0; i < B * T; i++)
        for (int c = 0; c < C; c++)
            bad += out[i * C + c] != wte[tok[i] * C + c] + wpe[(i % T) * C + c];
    printf("%-30s %d elements differ from wte[tok] + wpe[t]\n", "embedding forward exact", bad);
    CHECK(bad == 0, "embedding forward: %d elements differ", bad);
    be->embedding_backward(dwte, dwpe, r, tok, B, T, C);
    mt_test_numeric(wte, V * C, num, emb_loss, FD_H);
    mt_test_grad_compare_f("embedding d/dwte", dwte, num, V * C, GRAD_TOL, ELEM_TOL);
    mt_test_numeric(wpe, T * C, num, emb_loss, FD_H);
    mt_test_grad_compare_f("embedding d/dwpe", dwpe, num, T * C, GRAD_TOL, ELEM_TOL);
}

/* Larger embedding backward (parallel branch taken): reference, determinism,
 * accumulation. */
static void check_embedding_det(void) {
    enum { B = 8, T = 64, C = 200, V = 37 };
    size_t n = (size_t)B * T;
    int32_t *tok = malloc(n * sizeof(int32_t));
    float *dout = mt_test_falloc(n * C), *g[2][2]; /* [run][dwte, dwpe] */
    double *ref = mt_test_dalloc((size_t)V * C);
    if (!tok) abort();
    for (size_t i = 0; i < n; i++) tok[i] = (int32_t)mt_rng_below(7, 71, i, V);
    mt_test_fill(dout, n * C, 72, -1, 1);
    for (int k = 0; k < 2; k++)
        g[k][0] = mt_test_falloc((size_t)V * C), g[k][1] = mt_test_falloc((size_t)T * C);
    be->embedding_backward(g[0][0], g[0][1], dout, tok, B, T, C);
    for (size_t i = 0; i < n; i++)
        for (int c = 0; c < C; c++) ref[(size_t)tok[i] * C + c] += dout[i * C + c];
    double worst = 0;
    for (size_t i = 0; i < (size_t)V * C; i++) worst = fmax(worst, fabs(g[0][0][i] - ref[i]));
    printf("%-30s max abs diff %.2e (bound 1e-5)\n", "embedding bwd vs reference", worst);
    CHECK(worst <= 1e-5, "embedding_backward dwte off by %.3e from the double reference", worst);

    const char *names[2] = {"dwte", "dwpe"};
    size_t sizes[2] = {(size_t)V * C, (size_t)T * C};
    char what[64];
    for (int mode = 0; mode < 2; mode++) {
        for (int k = 0; k < 2; k++) {
            omp_set_num_threads(mode == 1 && k == 0 ? 1 : 2);
            for (int j = 0; j < 2; j++) memset(g[k][j], 0, sizes[j] * sizeof(float));
            be->embedding_backward(g[k][0], g[k][1], dout, tok, B, T, C);
        }
        for (int j = 0; j < 2; j++) {
            snprintf(what, sizeof what, "embedding bwd %s %s", names[j],
                     mode ? "1 vs 2 thr" : "2 thr twice");
            same_bits(what, g[0][j], g[1][j], sizes[j]);
        }
    }
    omp_set_num_threads(2);
    be->embedding_backward(g[0][0], g[0][1], dout, tok, B, T, C);
    worst = 0;
    for (int j = 0; j < 2; j++)
        for (size_t i = 0; i < sizes[j]; i++)
            worst = fmax(worst, fabs((double)g[0][j][i] - 2.0 * g[1][j][i]));
    printf("%-30s max |g2 - 2 g1| %.2e\n", "embedding bwd accumulates", worst);
    CHECK(worst == 0.0, "embedding_backward twice is not twice the gradient (off by %.3e)", worst);
    free(tok), free(dout), free(ref);
    for (int k = 0; k < 2; k++) free(g[k][0]), free(g[k][1]);
}

/* ---- dropout ---- */

typedef struct {
    float *x, *r, *y, p;
    size_t n;
} drop_state;
static drop_state dr;

static double drop_loss(void) {
    be->dropout_forward(dr.y, dr.x, dr.n, dr.p, 5, 77, 1000);
    return mt_test_dot(dr.r, dr.y, dr.n);
}

static void check_dropout(void) {
    enum { N = 257 };
    float x[N], r[N], y[N], dx[N];
    double num[N];
    dr = (drop_state){x, r, y, 0.3f, N};
    mt_test_fill(x, N, 81, -1, 1);
    mt_test_fill(r, N, 82, -1, 1);
    be->dropout_backward(dx, r, N, 0.3f, 5, 77, 1000);
    mt_test_numeric(x, N, num, drop_loss, FD_H);
    mt_test_grad_compare_f("dropout p=0.3 d/dx", dx, num, N, GRAD_TOL, ELEM_TOL);

    /* p = 0: an exact copy, also in place */
    be->dropout_forward(y, x, N, 0.0f, 5, 77, 0);
    int bad = memcmp(y, x, sizeof y) != 0;
    be->dropout_forward(y, y, N, 0.0f, 5, 77, 0);
    bad += memcmp(y, x, sizeof y) != 0;
    be->dropout_backward(dx, r, N, 0.0f, 5, 77, 0);
    bad += memcmp(dx, r, sizeof dx) != 0;
    printf("%-30s %s\n", "dropout p=0", bad ? "NOT identity" : "identity");
    CHECK(bad == 0, "dropout with p=0 is not the identity");

    /* p = 0.5 on 1e5 elements: kept fraction, kept values, same mask both ways */
    enum { M = 100000 };
    float *a = mt_test_falloc(M), *b = mt_test_falloc(M), *ones = mt_test_falloc(M),
          *da = mt_test_falloc(M);
    mt_test_fill(a, M, 83, 0.5f, 2.0f); /* nonzero, so dropped and kept are told apart */
    for (size_t i = 0; i < M; i++) ones[i] = 1.0f;
    const float p = 0.5f;
    be->dropout_forward(b, a, M, p, 9, 3, 0);
    be->dropout_backward(da, ones, M, p, 9, 3, 0);
    long kept = 0, wrong_val = 0, mask_diff = 0;
    for (size_t i = 0; i < M; i++) {
        kept += b[i] != 0.0f;
        if (b[i] != 0.0f && fabs(b[i] - a[i] / (1.0 - p)) > 1e-6 * fabs(a[i])) wrong_val++;
        mask_diff += (b[i] != 0.0f) != (da[i] != 0.0f);
        if (da[i] != 0.0f && fabs(da[i] - 1.0 / (1.0 - p)) > 1e-6) wrong_val++;
    }
    double frac = (double)kept / M;
    printf("%-30s kept %.4f (want 0.5 +- 0.01), %ld wrong values, %ld mask mismatches\n",
           "dropout p=0.5 n=1e5", frac, wrong_val, mask_diff);
    CHECK(fabs(frac - 0.5) <= 0.01, "dropout kept fraction %.4f", frac);
    CHECK(wrong_val == 0, "dropout: %ld kept values are not x/(1-p)", wrong_val);
    CHECK(mask_diff == 0, "dropout forward and backward masks differ in %ld places", mask_diff);
    /* a slice at offset o drops the same elements as the whole tensor */
    be->dropout_forward(da, a + 12345, 1000, p, 9, 3, 12345);
    int slice = memcmp(da, b + 12345, 1000 * sizeof(float)) == 0;
    printf("%-30s %s\n", "dropout slice at offset", slice ? "matches" : "DIFFERS");
    CHECK(slice, "dropout of a slice with offset differs from the slice of the whole");
    free(a), free(b), free(ones), free(da);
}

int main(void) {
    be = mt_backend_cpu();
    omp_set_num_threads(2);
    check_add();
    check_layernorm();
    check_layernorm_det();
    check_attention(2, 5, 8, 2);
    check_attention(1, 70, 8, 2); /* crosses the 64-row causal block */
    check_attention_det();
    check_embedding();
    check_embedding_det();
    check_dropout();
    return mt_test_finish("gpt_ops");
}
