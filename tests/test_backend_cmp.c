/*
 * test_backend_cmp.c - every op of the CUDA backend against the CPU
 * backend (the reference). For each op: random inputs (never zeros), the
 * output buffers poisoned with NaN before each run on both backends (an
 * element an op forgets to write fails the comparison), then the normalized
 * error ||gpu - cpu|| / ||cpu|| against the fp32 tolerance 1e-5. Integer
 * results (count_correct) must be equal, dropout masks bitwise equal, and
 * the ops whose sums a GPU could order differently from run to run (the
 * reductions: bias_grad, layernorm_backward, embedding_backward, the fused
 * ops, flash attention, the products with epilogues, sumsq_multi) are run
 * twice on the same inputs and must give bitwise the same output (the
 * backend's determinism rule).
 *
 * Then everything again in bf16 matmul mode (set_precision(1) on both
 * backends): the CPU rounds the operands and runs sgemm (the reference), the
 * CUDA backend uses bf16 tensor cores, so the ops with products (matmul,
 * attention) are held to the bf16 tolerance 1e-2 and every other op still to
 * fp32's 1e-5 (the precision must not reach them). fp32 is restored after.
 * The CPU's bf16 rounding and matmul are checked on their own, with no GPU,
 * by tests/test_backend_bf16.c.
 *
 * The fused ops (train.fused) are compared with the CPU's unfused ops they
 * replace, so the self-check below tests the CPU's fused ops against their
 * specification; a backend that lacks one fails (the CPU and the CUDA
 * backend have every one; the self-check's CPU table gets the four products
 * with epilogues composed from its own ops, tests/matmul_compose.c).
 *
 * Without a usable GPU (or in a build without the CUDA backend) it prints
 * why and exits 77, which ctest reports as skipped.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "kernels/backend.h"
#include "kernels/backends.h"
#include "kernels/bf16.h"
#include "matmul_compose.h"
#include "test_util.h"

#define TOL_FP32 1e-5
#define TOL_BF16 1e-2 /* bf16 operands: 8 significant bits, 2^-9 relative rounding */

static const mt_backend *cpu, *gpu;
static double tol_mm = TOL_FP32; /* tolerance of the ops with products, per precision */
static uint64_t draw;            /* counter of the random inputs */

/* n floats uniform in [lo, hi), never exactly 0 */
static float *rnd(size_t n, float lo, float hi) {
    float *x = malloc((n ? n : 1) * sizeof *x);
    uint64_t d0 = draw; /* counter-based: any thread count draws the same values */
#pragma omp parallel for if (n > (1 << 16))
    for (size_t i = 0; i < n; i++) {
        float u = mt_rng_uniform(42, 7, d0 + i);
        x[i] = lo + (hi - lo) * u;
        if (x[i] == 0.0f) x[i] = 1e-3f;
    }
    draw += n;
    return x;
}

static int32_t *rnd_int(size_t n, int below) {
    int32_t *x = malloc((n ? n : 1) * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = (int32_t)mt_rng_below(42, 8, draw++, (uint64_t)below);
    return x;
}

static float *nan_buf(size_t n) {
    float *x = malloc((n ? n : 1) * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = NAN;
    return x;
}

/* device copies: int32 data travel as their bits through the float copy */
static float *up(const void *h, size_t n) {
    float *d = gpu->alloc(n);
    gpu->to_device(d, (const float *)h, n);
    return d;
}

static float *down(const float *d, size_t n) {
    float *h = malloc((n ? n : 1) * sizeof *h);
    gpu->to_host(h, d, n);
    return h;
}

static void expect(const char *op, const char *what, const float *g, const float *c, size_t n,
                   double tol) {
    double e = mt_test_nerr(g, c, n);
    CHECK(e <= tol, "%s: %s: normalized error %.2e > %.0e", op, what, e, tol);
    printf("  %-22s %-8s normalized error %.2e\n", op, what, e);
}

/* Runs of the same CUDA op must be bitwise equal. */
static void expect_same(const char *op, const float *a, const float *b, size_t n) {
    CHECK(memcmp(a, b, n * sizeof *a) == 0, "%s: two CUDA runs differ (not deterministic)", op);
}

/* n floats of a (rows, cols) matrix with lead ld, the padding NaN (an op that
 * reads past cols fails) */
static float *rnd_padded(int rows, int cols, int ld) {
    return mt_test_nan_pad(rnd((size_t)rows * ld, -1, 1), rows, cols, ld);
}

/* Odd sizes, every transpose pair, leads wider than the rows (A, B and C):
 * the padding of C must come back untouched. */
/* Whether the padding columns N..ldc of C(M, ldc) came back as they
 * started (C0) from both the backend (g) and the CPU (c); clear: zero them
 * in g and c afterwards, so a comparison over the whole buffer leaves them
 * out. */
static int pad_kept(float *g, float *c, const float *C0, int M, int N, int ldc, int clear) {
    int kept = 1;
    for (int r = 0; r < M; r++)
        for (int k = N; k < ldc; k++) {
            size_t i = (size_t)r * ldc + k;
            kept &= g[i] == C0[i] && c[i] == C0[i];
            if (clear) g[i] = c[i] = 0;
        }
    return kept;
}

static void test_matmul(void) {
    int M = 37, N = 29, K = 53;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
            int lda = ac + 3, ldb = bc + 5, ldc = N + 2;
            size_t nc = (size_t)M * ldc;
            float *A = rnd_padded(ar, ac, lda), *B = rnd_padded(br, bc, ldb);
            float *C0 = rnd(nc, -1, 1), *Cc = mt_test_copy(C0, nc);
            cpu->matmul(ta, tb, M, N, K, 0.7f, A, lda, B, ldb, 0.3f, Cc, ldc);
            float *dA = up(A, (size_t)ar * lda), *dB = up(B, (size_t)br * ldb), *dC = up(C0, nc);
            gpu->matmul(ta, tb, M, N, K, 0.7f, dA, lda, dB, ldb, 0.3f, dC, ldc);
            float *g = down(dC, nc);
            CHECK(pad_kept(g, Cc, C0, M, N, ldc, 0),
                  "matmul ta%d tb%d: C's padding (columns N..ldc) was written", ta, tb);
            for (int r = 0; r < M; r++) /* the padding compared, it is left out of the error */
                for (int c = N; c < ldc; c++) g[(size_t)r * ldc + c] = Cc[(size_t)r * ldc + c] = 0;
            char what[16];
            snprintf(what, sizeof what, "ta%d tb%d", ta, tb);
            expect("matmul", what, g, Cc, nc, tol_mm);
            free(A), free(B), free(C0), free(Cc), free(g);
            gpu->free(dA), gpu->free(dB), gpu->free(dC);
        }
}

/* y = f(x) ops of n elements: out poisoned, then compared */
typedef void (*unary_fn)(float *y, const float *x, size_t n);
typedef void (*binary_fn)(float *dx, const float *dy, const float *x, size_t n);

static void test_unary(const char *op, unary_fn c, unary_fn g, float lo, float hi) {
    size_t n = 10007;
    float *x = rnd(n, lo, hi), *yc = nan_buf(n), *y0 = nan_buf(n);
    c(yc, x, n);
    float *dx = up(x, n), *dy = up(y0, n);
    g(dy, dx, n);
    float *r1 = down(dy, n);
    gpu->to_device(dy, y0, n);
    g(dy, dx, n);
    float *r2 = down(dy, n);
    expect(op, "y", r1, yc, n, TOL_FP32);
    expect_same(op, r1, r2, n);
    free(x), free(yc), free(y0), free(r1), free(r2);
    gpu->free(dx), gpu->free(dy);
}

static void test_binary(const char *op, binary_fn c, binary_fn g, float lo, float hi) {
    size_t n = 10007;
    float *x = rnd(n, lo, hi), *dyv = rnd(n, -1, 1), *dxc = nan_buf(n), *p0 = nan_buf(n);
    c(dxc, dyv, x, n);
    float *dx = up(x, n), *ddy = up(dyv, n), *ddx = up(p0, n);
    g(ddx, ddy, dx, n);
    float *r = down(ddx, n);
    expect(op, "dx", r, dxc, n, TOL_FP32);
    free(x), free(dyv), free(dxc), free(p0), free(r);
    gpu->free(dx), gpu->free(ddy), gpu->free(ddx);
}

static void test_bias(int rows, int cols) {
    size_t n = (size_t)rows * cols;
    float *y = rnd(n, -1, 1), *b = rnd((size_t)cols, -1, 1), *yc = mt_test_copy(y, n);
    cpu->bias_add(yc, b, rows, cols);
    float *dyb = up(y, n), *db = up(b, (size_t)cols);
    gpu->bias_add(dyb, db, rows, cols);
    float *g = down(dyb, n);
    expect("bias_add", "y", g, yc, n, TOL_FP32);
    /* db = beta db + column sums of y (a random start: beta 0 must ignore it) */
    for (int beta = 0; beta < 2; beta++) {
        float *d0 = rnd((size_t)cols, -1, 1), *dc = mt_test_copy(d0, (size_t)cols);
        cpu->bias_grad(dc, y, rows, cols, (float)beta);
        float *dd = up(d0, (size_t)cols), *dy = up(y, n);
        gpu->bias_grad(dd, dy, rows, cols, (float)beta);
        float *r = down(dd, (size_t)cols);
        expect("bias_grad", beta ? "beta 1" : "beta 0", r, dc, (size_t)cols, TOL_FP32);
        gpu->to_device(dd, d0, (size_t)cols); /* again: the same bits */
        gpu->bias_grad(dd, dy, rows, cols, (float)beta);
        float *r2 = down(dd, (size_t)cols);
        expect_same("bias_grad", r, r2, (size_t)cols);
        free(r2);
        free(d0), free(dc), free(r);
        gpu->free(dd), gpu->free(dy);
    }
    free(y), free(b), free(yc), free(g);
    gpu->free(dyb), gpu->free(db);
}

static void test_add_scale(void) {
    size_t n = 10007;
    float *a = rnd(n, -1, 1), *b = rnd(n, -1, 1), *oc = nan_buf(n), *o0 = nan_buf(n);
    cpu->add(oc, a, b, n);
    float *da = up(a, n), *db = up(b, n), *dout = up(o0, n);
    gpu->add(dout, da, db, n);
    float *r = down(dout, n);
    expect("add", "out", r, oc, n, TOL_FP32);
    float *ac = mt_test_copy(a, n);
    cpu->accumulate(ac, b, n);
    gpu->accumulate(da, db, n);
    float *r2 = down(da, n);
    expect("accumulate", "dst", r2, ac, n, TOL_FP32);
    cpu->scale(ac, -0.37f, n);
    gpu->scale(da, -0.37f, n);
    float *r3 = down(da, n);
    expect("scale", "x", r3, ac, n, TOL_FP32);
    /* scale by 0 clears NaN and Inf too (train.nan_policy = skip) */
    ac[0] = NAN, ac[1] = INFINITY, ac[2] = -INFINITY, ac[3] = -2.5f;
    gpu->to_device(da, ac, 4);
    cpu->scale(ac, 0.0f, n);
    gpu->scale(da, 0.0f, n);
    float *r4 = down(da, n);
    expect("scale by 0", "x", r4, ac, n, 0.0);
    CHECK(ac[0] == 0.0f && ac[1] == 0.0f && ac[2] == 0.0f && ac[3] == 0.0f,
          "scale by 0 left %g %g %g %g", ac[0], ac[1], ac[2], ac[3]);
    free(r4);
    free(a), free(b), free(oc), free(o0), free(r), free(ac), free(r2), free(r3);
    gpu->free(da), gpu->free(db), gpu->free(dout);
}

/* bfloat16 storage: CUDA and CPU give bitwise the same 16-bit patterns (odd
 * n, special values included), and back to fp32 they are mt_bf16_round(x). */
static void test_bf16_storage(void) {
    size_t n = 10007, nh = (n + 1) / 2; /* floats holding n halves */
    float *x = rnd(n, -3, 3);
    x[0] = NAN, x[1] = INFINITY, x[2] = -INFINITY, x[3] = FLT_MAX, x[4] = 1.0f + 0x1p-8f;
    x[5] = -0.0f, x[6] = 1e-40f; /* subnormal */
    float *hc = nan_buf(nh), *h0 = nan_buf(nh), *back = nan_buf(n), *b0 = nan_buf(n);
    cpu->to_bf16((uint16_t *)hc, x, n);
    float *dx = up(x, n), *dh = up(h0, nh), *dback = up(b0, n);
    gpu->to_bf16((uint16_t *)dh, dx, n);
    float *g = down(dh, nh);
    CHECK(memcmp(g, hc, n * sizeof(uint16_t)) == 0, "to_bf16: CUDA bits differ from the CPU's");
    gpu->from_bf16(dback, (const uint16_t *)dh, n);
    cpu->from_bf16(back, (const uint16_t *)hc, n);
    float *gb = down(dback, n);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        float want = mt_bf16_round(x[i]);
        if (memcmp(&gb[i], &want, sizeof want) != 0 || memcmp(&back[i], &want, sizeof want) != 0)
            bad++;
    }
    CHECK(bad == 0, "from_bf16(to_bf16(x)) != mt_bf16_round(x) at %zu elements", bad);
    printf("  %-22s %-8s bitwise equal, round trip = mt_bf16_round\n", "to_bf16/from_bf16", "x");
    free(x), free(hc), free(h0), free(back), free(b0), free(g), free(gb);
    gpu->free(dx), gpu->free(dh), gpu->free(dback);
}

/* Columns C..ld-1 of rows ld apart (a padded vocabulary): filled with a
 * value that would win every row if an op read it, and expected to be 0 in
 * every op's output. */
static void fill_pad(float *x, int B, int C, int ld, float v) {
    for (int b = 0; b < B; b++)
        for (int c = C; c < ld; c++) x[(size_t)b * ld + c] = v;
}

static void expect_pad_zero(const char *op, const float *x, int B, int C, int ld) {
    size_t bad = 0;
    for (int b = 0; b < B; b++)
        for (int c = C; c < ld; c++) bad += x[(size_t)b * ld + c] != 0.0f;
    CHECK(bad == 0, "%s: %zu padding elements (columns %d..%d) are not 0", op, bad, C, ld - 1);
}

static void test_softmax(int B, int C, int ld) {
    size_t n = (size_t)B * ld;
    float *logits = rnd(n, -4, 4), *pc = nan_buf(n), *p0 = nan_buf(n);
    fill_pad(logits, B, C, ld, 50.0f);
    int32_t *lab = rnd_int((size_t)B, C);
    double lc = cpu->softmax_xent_forward(pc, logits, lab, B, C, ld);
    expect_pad_zero("softmax_xent_forward (CPU)", pc, B, C, ld);
    float *dl = up(logits, n), *dp = up(p0, n), *dlab = up(lab, (size_t)B);
    double lg = gpu->softmax_xent_forward(dp, dl, (const int32_t *)dlab, B, C, ld);
    double lg2 = gpu->softmax_xent_forward(dp, dl, (const int32_t *)dlab, B, C, ld);
    float *pg = down(dp, n);
    expect("softmax_xent_forward", "probs", pg, pc, n, TOL_FP32);
    CHECK(fabs(lg - lc) <= TOL_FP32 * fabs(lc), "softmax_xent_forward: loss %.9g vs CPU %.9g", lg,
          lc);
    CHECK(lg == lg2, "softmax_xent_forward: two CUDA runs give %.17g and %.17g", lg, lg2);
    printf("  %-22s %-8s relative error %.2e\n", "softmax_xent_forward", "loss",
           fabs(lg - lc) / fabs(lc));
    float *dc = nan_buf(n);
    cpu->softmax_xent_backward(dc, pc, lab, B, C, ld, 0.25f);
    expect_pad_zero("softmax_xent_backward (CPU)", dc, B, C, ld);
    float *dd = up(p0, n);
    gpu->softmax_xent_backward(dd, dp, (const int32_t *)dlab, B, C, ld, 0.25f);
    float *dg = down(dd, n);
    expect("softmax_xent_backward", "dlogits", dg, dc, n, TOL_FP32);
    /* count_correct, with ties: row 0 has its maximum twice, the first wins */
    logits[0 * ld + 5] = logits[0 * ld + 9] = 10.0f;
    lab[0] = 5;
    lab[1] = 3;
    logits[1 * ld + 3] = 10.0f;
    gpu->to_device(dl, logits, n);
    gpu->to_device(dlab, (const float *)lab, (size_t)B);
    int64_t cc = cpu->count_correct(logits, lab, B, C, ld);
    int64_t cg = gpu->count_correct(dl, (const int32_t *)dlab, B, C, ld);
    CHECK(cc == cg && cc >= 2, "count_correct: CUDA %lld, CPU %lld", (long long)cg, (long long)cc);
    printf("  %-22s %-8s %lld = %lld\n", "count_correct", "hits", (long long)cg, (long long)cc);
    free(logits), free(pc), free(p0), free(lab), free(pg), free(dc), free(dg);
    gpu->free(dl), gpu->free(dp), gpu->free(dlab), gpu->free(dd);
}

static void test_layernorm(int N, int C) {
    size_t n = (size_t)N * C;
    float *x = rnd(n, -2, 2), *w = rnd((size_t)C, 0.5f, 1.5f), *b = rnd((size_t)C, -0.5f, 0.5f);
    float *oc = nan_buf(n), *mc = nan_buf((size_t)N), *rc = nan_buf((size_t)N);
    cpu->layernorm_forward(oc, mc, rc, x, w, b, N, C);
    float *dx = up(x, n), *dw = up(w, (size_t)C), *db = up(b, (size_t)C);
    float *po = nan_buf(n), *pm = nan_buf((size_t)N);
    float *dout = up(po, n), *dm = up(pm, (size_t)N), *dr = up(pm, (size_t)N);
    gpu->layernorm_forward(dout, dm, dr, dx, dw, db, N, C);
    float *go = down(dout, n), *gm = down(dm, (size_t)N), *gr = down(dr, (size_t)N);
    expect("layernorm_forward", "out", go, oc, n, TOL_FP32);
    expect("layernorm_forward", "mean", gm, mc, (size_t)N, TOL_FP32);
    expect("layernorm_forward", "rstd", gr, rc, (size_t)N, TOL_FP32);
    /* backward accumulates into random dx, dw, db */
    float *g = rnd(n, -1, 1), *ax = rnd(n, -1, 1), *aw = rnd((size_t)C, -1, 1);
    float *ab = rnd((size_t)C, -1, 1);
    float *cx = mt_test_copy(ax, n), *cw = mt_test_copy(aw, (size_t)C),
          *cb = mt_test_copy(ab, (size_t)C);
    cpu->layernorm_backward(cx, cw, cb, g, x, w, mc, rc, N, C);
    float *dg = up(g, n), *gx = up(ax, n), *gw = up(aw, (size_t)C), *gb = up(ab, (size_t)C);
    gpu->layernorm_backward(gx, gw, gb, dg, dx, dw, dm, dr, N, C);
    float *rx = down(gx, n), *rw = down(gw, (size_t)C), *rb = down(gb, (size_t)C);
    expect("layernorm_backward", "dx", rx, cx, n, TOL_FP32);
    expect("layernorm_backward", "dw", rw, cw, (size_t)C, TOL_FP32);
    expect("layernorm_backward", "db", rb, cb, (size_t)C, TOL_FP32);
    /* its column sums (dw, db) again from the same start: the same bits */
    gpu->to_device(gx, ax, n), gpu->to_device(gw, aw, (size_t)C), gpu->to_device(gb, ab, (size_t)C);
    gpu->layernorm_backward(gx, gw, gb, dg, dx, dw, dm, dr, N, C);
    float *sx = down(gx, n), *sw = down(gw, (size_t)C), *sb = down(gb, (size_t)C);
    expect_same("layernorm_backward dx", rx, sx, n);
    expect_same("layernorm_backward dw", rw, sw, (size_t)C);
    expect_same("layernorm_backward db", rb, sb, (size_t)C);
    free(sx), free(sw), free(sb);
    float *all[] = {x, w, b, oc, mc, rc, po, pm, go, gm, gr, g, ax, aw, ab, cx, cw, cb, rx, rw, rb};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
    float *dev[] = {dx, dw, db, dout, dm, dr, dg, gx, gw, gb};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++) gpu->free(dev[i]);
}

static void test_attention(int B, int T, int C, int NH) {
    size_t nq = (size_t)B * T * 3 * C, no = (size_t)B * T * C, na = (size_t)B * NH * T * T;
    float *qkv = rnd(nq, -1, 1), *oc = nan_buf(no), *ac = nan_buf(na);
    cpu->attention_forward(oc, ac, qkv, B, T, C, NH);
    float *po = nan_buf(no), *pa = nan_buf(na);
    float *dq = up(qkv, nq), *dout = up(po, no), *datt = up(pa, na);
    gpu->attention_forward(dout, datt, dq, B, T, C, NH);
    float *go = down(dout, no), *ga = down(datt, na);
    expect("attention_forward", "out", go, oc, no, tol_mm);
    expect("attention_forward", "att", ga, ac, na, tol_mm);
    float *dy = rnd(no, -1, 1), *dqc = nan_buf(nq), *scratch = nan_buf(na);
    cpu->attention_backward(dqc, scratch, dy, qkv, ac, B, T, C, NH);
    float *pq = nan_buf(nq);
    float *ddy = up(dy, no), *ddq = up(pq, nq), *dscr = up(pa, na);
    gpu->attention_backward(ddq, dscr, ddy, dq, datt, B, T, C, NH);
    float *gq = down(ddq, nq);
    expect("attention_backward", "dqkv", gq, dqc, nq, tol_mm);
    gpu->to_device(ddq, pq, nq);
    gpu->attention_backward(ddq, dscr, ddy, dq, datt, B, T, C, NH);
    float *gq2 = down(ddq, nq);
    expect_same("attention_backward", gq, gq2, nq);
    float *all[] = {qkv, oc, ac, po, pa, go, ga, dy, dqc, scratch, pq, gq, gq2};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
    float *dev[] = {dq, dout, datt, ddy, ddq, dscr};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++) gpu->free(dev[i]);
}

/* V tokens of width C, B x T positions of maxT (T <= maxT) */
static void test_embedding(int V, int B, int T, int C, int maxT) {
    size_t n = (size_t)B * T * C;
    float *wte = rnd((size_t)V * C, -1, 1), *wpe = rnd((size_t)maxT * C, -1, 1);
    int32_t *tok =
        rnd_int((size_t)B * T, V > 64 ? V : 7); /* small V: few distinct tokens, many repeats */
    float *oc = nan_buf(n);
    cpu->embedding_forward(oc, tok, wte, wpe, B, T, C);
    float *dwte = up(wte, (size_t)V * C), *dwpe = up(wpe, (size_t)maxT * C);
    float *dtok = up(tok, (size_t)B * T), *p0 = nan_buf(n), *dout = up(p0, n);
    gpu->embedding_forward(dout, (const int32_t *)dtok, dwte, dwpe, B, T, C);
    float *go = down(dout, n);
    expect("embedding_forward", "out", go, oc, n, TOL_FP32);
    float *g = rnd(n, -1, 1), *cw = mt_test_copy(wte, (size_t)V * C),
          *cp = mt_test_copy(wpe, (size_t)maxT * C);
    cpu->embedding_backward(cw, cp, g, tok, B, T, C);
    float *dg = up(g, n);
    gpu->embedding_backward(dwte, dwpe, dg, (const int32_t *)dtok, B, T, C);
    float *rw = down(dwte, (size_t)V * C), *rp = down(dwpe, (size_t)maxT * C);
    expect("embedding_backward", "dwte", rw, cw, (size_t)V * C, TOL_FP32);
    expect("embedding_backward", "dwpe", rp, cp, (size_t)maxT * C, TOL_FP32);
    /* again from the same start (repeated tokens: the sums' order is fixed) */
    gpu->to_device(dwte, wte, (size_t)V * C), gpu->to_device(dwpe, wpe, (size_t)maxT * C);
    gpu->embedding_backward(dwte, dwpe, dg, (const int32_t *)dtok, B, T, C);
    float *sw = down(dwte, (size_t)V * C), *sp = down(dwpe, (size_t)maxT * C);
    expect_same("embedding_backward dwte", rw, sw, (size_t)V * C);
    expect_same("embedding_backward dwpe", rp, sp, (size_t)maxT * C);
    free(sw), free(sp);
    free(wte), free(wpe), free(tok), free(oc), free(p0), free(go), free(g), free(cw), free(cp);
    free(rw), free(rp);
    gpu->free(dwte), gpu->free(dwpe), gpu->free(dtok), gpu->free(dout), gpu->free(dg);
}

static void test_dropout(void) {
    size_t n = 10007;
    float *x = rnd(n, -1, 1), *yc = nan_buf(n), *p0 = nan_buf(n);
    uint64_t seed = 99, stream = mt_rng_stream("dropout/test"), off = 12345;
    cpu->dropout_forward(yc, x, n, 0.1f, seed, stream, off);
    float *dx = up(x, n), *dy = up(p0, n);
    gpu->dropout_forward(dy, dx, n, 0.1f, seed, stream, off);
    float *g = down(dy, n);
    CHECK(memcmp(g, yc, n * sizeof *g) == 0,
          "dropout_forward: the CUDA mask differs from the CPU's");
    float *bc = nan_buf(n);
    cpu->dropout_backward(bc, x, n, 0.1f, seed, stream, off);
    gpu->to_device(dy, p0, n);
    gpu->dropout_backward(dy, dx, n, 0.1f, seed, stream, off);
    float *gb = down(dy, n);
    CHECK(memcmp(gb, bc, n * sizeof *gb) == 0, "dropout_backward: differs from the CPU's");
    printf("  %-22s %-8s bitwise equal masks: %s\n", "dropout", "y, dx",
           memcmp(g, yc, n * sizeof *g) == 0 && memcmp(gb, bc, n * sizeof *gb) == 0 ? "yes" : "no");
    free(x), free(yc), free(p0), free(g), free(bc), free(gb);
    gpu->free(dx), gpu->free(dy);
}

static void test_optim(size_t n) {
    float *x = rnd(n, -1, 1);
    double sc = cpu->sumsq(x, n);
    float *dx = up(x, n);
    double sg = gpu->sumsq(dx, n), sg2 = gpu->sumsq(dx, n);
    CHECK(fabs(sg - sc) <= 1e-9 * sc, "sumsq: %.17g vs CPU %.17g", sg, sc);
    CHECK(sg == sg2, "sumsq: two CUDA runs differ");
    printf("  %-22s %-8s relative error %.2e\n", "sumsq", "sum", fabs(sg - sc) / sc);
    float *g = rnd(n, -1, 1), *m = rnd(n, -0.1f, 0.1f), *v = rnd(n, 0.001f, 0.01f);
    float *cx = mt_test_copy(x, n), *cm = mt_test_copy(m, n), *cv = mt_test_copy(v, n);
    cpu->adamw_update(cx, g, cm, cv, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, 0.3f);
    float *dg = up(g, n), *dm = up(m, n), *dv = up(v, n);
    gpu->adamw_update(dx, dg, dm, dv, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, 0.3f);
    float *rx = down(dx, n), *rm = down(dm, n), *rv = down(dv, n);
    expect("adamw_update", "p", rx, cx, n, TOL_FP32);
    expect("adamw_update", "m", rm, cm, n, TOL_FP32);
    expect("adamw_update", "v", rv, cv, n, TOL_FP32);
    float *sx = mt_test_copy(x, n), *sb = mt_test_copy(m, n);
    cpu->sgd_update(sx, g, sb, n, 0.01f, 0.9f, 1e-4f);
    gpu->to_device(dx, x, n);
    gpu->to_device(dm, m, n);
    gpu->sgd_update(dx, dg, dm, n, 0.01f, 0.9f, 1e-4f);
    float *qx = down(dx, n), *qb = down(dm, n);
    expect("sgd_update", "p", qx, sx, n, TOL_FP32);
    expect("sgd_update", "buf", qb, sb, n, TOL_FP32);
    float *all[] = {x, g, m, v, cx, cm, cv, rx, rm, rv, sx, sb, qx, qb};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
    gpu->free(dx), gpu->free(dg), gpu->free(dm), gpu->free(dv);
}

/* ---- fused ops (train.fused): each against the CPU's UNFUSED composition
 * it replaces (backend.h), so the self-check compares the CPU's fused ops
 * with their specification. A backend without one prints so (the model
 * then runs the unfused ops); the CPU backend must have them all. ---- */

static int has(const char *op, const void *fn) {
    if (fn) return 1;
    /* the CPU (their specification) and the CUDA backend have every one */
    CHECK(0, "%s: the %s backend lacks this op", op, gpu->name);
    return 0;
}

/* log-sum-exp of each query row's scaled causal scores, in double */
static void lse_ref(float *lse, const float *qkv, int B, int T, int C, int NH) {
    int hs = C / NH;
    double sc = 1.0 / sqrt((double)hs);
    double *row = malloc((size_t)T * sizeof *row);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                const float *q = qkv + ((size_t)b * T + t) * 3 * C + (size_t)h * hs;
                double mx = -INFINITY, sum = 0;
                for (int u = 0; u <= t; u++) {
                    const float *k = qkv + ((size_t)b * T + u) * 3 * C + C + (size_t)h * hs;
                    double d = 0;
                    for (int c = 0; c < hs; c++) d += (double)q[c] * k[c];
                    row[u] = d * sc;
                    mx = fmax(mx, row[u]);
                }
                for (int u = 0; u <= t; u++) sum += exp(row[u] - mx);
                lse[((size_t)b * NH + h) * T + t] = (float)(mx + log(sum));
            }
    free(row);
}

static void test_flash(int B, int T, int C, int NH) {
    if (!has("flash_attention", (const void *)gpu->flash_attention_forward) ||
        !has("flash_attention", (const void *)gpu->flash_attention_backward))
        return;
    size_t nq = (size_t)B * T * 3 * C, no = (size_t)B * T * C, na = (size_t)B * NH * T * T;
    size_t nl = (size_t)B * NH * T;
    float *qkv = rnd(nq, -1, 1), *dy = rnd(no, -1, 1), *oc = nan_buf(no), *ac = nan_buf(na);
    float *dqc = nan_buf(nq), *scr = nan_buf(na), *lc = nan_buf(nl);
    cpu->attention_forward(oc, ac, qkv, B, T, C, NH);
    cpu->attention_backward(dqc, scr, dy, qkv, ac, B, T, C, NH);
    lse_ref(lc, qkv, B, T, C, NH);
    float *po = nan_buf(no), *pl = nan_buf(nl), *pq = nan_buf(nq);
    float *dq = up(qkv, nq), *ddy = up(dy, no), *dout = up(po, no), *dl = up(pl, nl);
    float *ddq = up(pq, nq);
    gpu->flash_attention_forward(dout, dl, dq, B, T, C, NH);
    gpu->flash_attention_backward(ddq, ddy, dq, dout, dl, B, T, C, NH);
    float *go = down(dout, no), *gl = down(dl, nl), *gq = down(ddq, nq);
    char what[64];
    snprintf(what, sizeof what, "flash_attention T%d", T);
    expect(what, "out", go, oc, no, tol_mm);
    /* lse: bf16 operands change the scores themselves */
    expect(what, "lse", gl, lc, nl, tol_mm == TOL_FP32 ? 1e-6 : tol_mm);
    expect(what, "dqkv", gq, dqc, nq, tol_mm);
    gpu->to_device(ddq, pq, nq);
    gpu->flash_attention_backward(ddq, ddy, dq, dout, dl, B, T, C, NH);
    float *gq2 = down(ddq, nq);
    expect_same("flash_attention_backward", gq, gq2, nq);
    gpu->flash_attention_forward(dout, dl, dq, B, T, C, NH);
    float *go2 = down(dout, no), *gl2 = down(dl, nl);
    expect_same("flash_attention_forward out", go, go2, no);
    expect_same("flash_attention_forward lse", gl, gl2, nl);
    free(go2), free(gl2);
    float *all[] = {qkv, dy, oc, ac, dqc, scr, lc, po, pl, pq, go, gl, gq, gq2};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
    float *dev[] = {dq, ddy, dout, dl, ddq};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++) gpu->free(dev[i]);
}

static void test_residual_layernorm(int N, int C) {
    if (!has("residual_layernorm", (const void *)gpu->residual_layernorm_forward)) return;
    size_t n = (size_t)N * C;
    float *a = rnd(n, -2, 2), *b = rnd(n, -2, 2), *w = rnd((size_t)C, 0.5f, 1.5f);
    float *bias = rnd((size_t)C, -0.5f, 0.5f);
    float *rc = nan_buf(n), *oc = nan_buf(n), *mc = nan_buf((size_t)N), *sc = nan_buf((size_t)N);
    cpu->add(rc, a, b, n);
    cpu->layernorm_forward(oc, mc, sc, rc, w, bias, N, C);
    float *pn = nan_buf(n), *pr = nan_buf((size_t)N);
    float *da = up(a, n), *db = up(b, n), *dw = up(w, (size_t)C), *dbias = up(bias, (size_t)C);
    float *dres = up(pn, n), *dout = up(pn, n), *dm = up(pr, (size_t)N), *ds = up(pr, (size_t)N);
    gpu->residual_layernorm_forward(dres, dout, dm, ds, da, db, dw, dbias, N, C);
    float *gr = down(dres, n), *go = down(dout, n), *gm = down(dm, (size_t)N),
          *gs = down(ds, (size_t)N);
    expect("residual_layernorm", "res", gr, rc, n, TOL_FP32);
    expect("residual_layernorm", "out", go, oc, n, TOL_FP32);
    expect("residual_layernorm", "mean", gm, mc, (size_t)N, TOL_FP32);
    expect("residual_layernorm", "rstd", gs, sc, (size_t)N, TOL_FP32);
    /* res aliasing a, as the model calls it */
    gpu->residual_layernorm_forward(da, dout, dm, ds, da, db, dw, dbias, N, C);
    float *ga = down(da, n), *go2 = down(dout, n);
    expect("residual_layernorm", "res=a", ga, rc, n, TOL_FP32);
    expect_same("residual_layernorm out (twice)", go, go2, n);
    free(go2);
    float *all[] = {a, b, w, bias, rc, oc, mc, sc, pn, pr, gr, go, gm, gs, ga};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
    float *dev[] = {da, db, dw, dbias, dres, dout, dm, ds};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++) gpu->free(dev[i]);
}

static void test_bias_gelu(int N, int C) {
    if (!has("bias_gelu", (const void *)gpu->bias_gelu_forward) ||
        !has("bias_gelu", (const void *)gpu->gelu_bias_backward))
        return;
    size_t n = (size_t)N * C;
    float *h = rnd(n, -5, 5), *bias = rnd((size_t)C, -1, 1), *dy = rnd(n, -1, 1);
    float *db0 = rnd((size_t)C, -1, 1);
    float *hc = mt_test_copy(h, n), *gc = nan_buf(n), *dxc = nan_buf(n);
    float *dbc = mt_test_copy(db0, (size_t)C), *tmp = nan_buf((size_t)C);
    cpu->bias_add(hc, bias, N, C);
    cpu->gelu_forward(gc, hc, n);
    cpu->gelu_backward(dxc, dy, hc, n);
    cpu->bias_grad(tmp, dxc, N, C, 0.0f); /* db0 + colsum, as the op accumulates */
    for (int c = 0; c < C; c++) dbc[c] = db0[c] + tmp[c];
    float *pn = nan_buf(n);
    float *dh = up(h, n), *dbias = up(bias, (size_t)C), *dg = up(pn, n), *ddy = up(dy, n);
    float *ddb = up(db0, (size_t)C);
    gpu->bias_gelu_forward(dh, dg, dbias, N, C);
    gpu->gelu_bias_backward(ddy, ddb, ddy, dh, N, C); /* dx aliasing dy, as the model calls it */
    float *gh = down(dh, n), *gg = down(dg, n), *gx = down(ddy, n), *gb = down(ddb, (size_t)C);
    expect("bias_gelu_forward", "h", gh, hc, n, TOL_FP32);
    expect("bias_gelu_forward", "gelu", gg, gc, n, TOL_FP32);
    expect("gelu_bias_backward", "dx", gx, dxc, n, TOL_FP32);
    expect("gelu_bias_backward", "db", gb, dbc, (size_t)C, TOL_FP32);
    /* both again from the same inputs: the same bits */
    gpu->to_device(dh, h, n), gpu->to_device(ddy, dy, n), gpu->to_device(ddb, db0, (size_t)C);
    gpu->bias_gelu_forward(dh, dg, dbias, N, C);
    gpu->gelu_bias_backward(ddy, ddb, ddy, dh, N, C);
    float *sg = down(dg, n), *sx = down(ddy, n), *sb = down(ddb, (size_t)C);
    expect_same("bias_gelu_forward", gg, sg, n);
    expect_same("gelu_bias_backward dx", gx, sx, n);
    expect_same("gelu_bias_backward db", gb, sb, (size_t)C);
    free(sg), free(sx), free(sb);
    float *all[] = {h, bias, dy, db0, hc, gc, dxc, dbc, tmp, pn, gh, gg, gx, gb};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
    float *dev[] = {dh, dbias, dg, ddy, ddb};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++) gpu->free(dev[i]);
}

static void test_xent_fused(int N, int V, int ld) {
    if (!has("xent_fused", (const void *)gpu->xent_fused)) return;
    size_t n = (size_t)N * ld;
    float *z = rnd(n, -6, 6), *pc = nan_buf(n);
    fill_pad(z, N, V, ld, 50.0f);
    int32_t *lab = rnd_int((size_t)N, V);
    z[0 * ld + 1] = z[0 * ld + 2] = 9.0f; /* a tie: the first wins */
    lab[0] = 1;
    if (N > 1) z[1 * ld + V - 1] = 9.5f, lab[1] = V - 1; /* the last column: a partial block */
    double lc = cpu->softmax_xent_forward(pc, z, lab, N, V, ld);
    int64_t cc = cpu->count_correct(z, lab, N, V, ld);
    cpu->softmax_xent_backward(pc, pc, lab, N, V, ld, 1.0f);
    float *dz = up(z, n), *dlab = up(lab, (size_t)N);
    /* the totals stay in the backend's memory: 2 doubles, read back here */
    double *dtot = (double *)gpu->alloc(4), tot[2];
    gpu->xent_fused(dz, (const int32_t *)dlab, N, V, ld, dtot);
    gpu->to_host((float *)tot, (const float *)dtot, 4);
    double lg = tot[0];
    int64_t cg = (int64_t)tot[1];
    CHECK(tot[1] == (double)cg, "xent_fused: a hit count %.17g that is not a whole number", tot[1]);
    float *gz = down(dz, n);
    CHECK(fabs(lg - lc) <= TOL_FP32 * fabs(lc), "xent_fused: loss %.9g vs unfused %.9g", lg, lc);
    CHECK(cg == cc && cc >= 1, "xent_fused: %lld rows correct, unfused %lld", (long long)cg,
          (long long)cc);
    printf("  %-22s %-8s relative error %.2e, correct %lld = %lld\n", "xent_fused", "loss",
           fabs(lg - lc) / fabs(lc), (long long)cg, (long long)cc);
    expect("xent_fused", "dlogits", gz, pc, n, TOL_FP32);
    gpu->to_device(dz, z, n);
    gpu->xent_fused(dz, (const int32_t *)dlab, N, V, ld, dtot); /* overwrites the totals */
    gpu->to_host((float *)tot, (const float *)dtot, 4);
    float *gz2 = down(dz, n);
    CHECK(tot[0] == lg && tot[1] == (double)cg, "xent_fused: two runs differ (not deterministic)");
    expect_same("xent_fused", gz, gz2, n);
    free(z), free(pc), free(lab), free(gz), free(gz2);
    gpu->free(dz), gpu->free(dlab), gpu->free(dtot);
}

/* gs: the gradient scale; wd0: the first tensor's weight decay (a new
 * value makes a device backend rebuild a cached segment table) */
static void test_adamw_multi(float gs, float wd0) {
    if (!has("adamw_multi", (const void *)gpu->adamw_multi)) return;
    /* four tensors in a flat buffer of 10000 (one of 1 element, one of 9000:
     * several chunks of a device backend), one empty, state elsewhere */
    enum { NSEG = 5 };
    size_t po[NSEG] = {0, 300, 301, 600, 1000}, so[NSEG] = {500, 0, 480, 100, 1000},
           sn[NSEG] = {300, 1, 0, 379, 9000};
    float wd[NSEG] = {wd0, 0.0f, 0.1f, 0.05f, 0.1f};
    size_t n = 10000;
    float *x = rnd(n, -1, 1), *g = rnd(n, -1, 1), *m = rnd(n, -0.1f, 0.1f);
    float *v = rnd(n, 0.001f, 0.01f);
    float *cx = mt_test_copy(x, n), *cg = mt_test_copy(g, n), *cm = mt_test_copy(m, n),
          *cv = mt_test_copy(v, n);
    for (int i = 0; i < NSEG; i++) {
        if (gs != 1.0f) cpu->scale(cg + po[i], gs, sn[i]);
        cpu->adamw_update(cx + po[i], cg + po[i], cm + so[i], cv + so[i], sn[i], 1e-3f, 0.9f, 0.95f,
                          1e-8f, wd[i], 0.5f, 0.3f);
    }
    float *dx = up(x, n), *dg = up(g, n), *dm = up(m, n), *dv = up(v, n);
    gpu->adamw_multi(dx, dg, dm, dv, NSEG, po, so, sn, wd, gs, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.5f,
                     0.3f);
    float *rx = down(dx, n), *rg = down(dg, n), *rm = down(dm, n), *rv = down(dv, n);
    expect("adamw_multi", "p", rx, cx, n, TOL_FP32);
    expect("adamw_multi", "m", rm, cm, n, TOL_FP32);
    expect("adamw_multi", "v", rv, cv, n, TOL_FP32);
    CHECK(memcmp(rg, g, n * sizeof *g) == 0, "adamw_multi: changed the gradient");
    /* bitwise the backend's own scale + adamw_update per tensor (backend.h) */
    gpu->to_device(dx, x, n), gpu->to_device(dm, m, n), gpu->to_device(dv, v, n);
    for (int i = 0; i < NSEG; i++) {
        if (gs != 1.0f) gpu->scale(dg + po[i], gs, sn[i]);
        gpu->adamw_update(dx + po[i], dg + po[i], dm + so[i], dv + so[i], sn[i], 1e-3f, 0.9f, 0.95f,
                          1e-8f, wd[i], 0.5f, 0.3f);
    }
    float *ux = down(dx, n), *um = down(dm, n), *uv = down(dv, n);
    CHECK(!memcmp(ux, rx, n * sizeof *ux) && !memcmp(um, rm, n * sizeof *um) &&
              !memcmp(uv, rv, n * sizeof *uv),
          "adamw_multi (gscale %g): not bitwise this backend's scale + adamw_update", gs);
    float *all[] = {x, g, m, v, cx, cg, cm, cv, rx, rg, rm, rv, ux, um, uv};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
    gpu->free(dx), gpu->free(dg), gpu->free(dm), gpu->free(dv);
}

/* The products with cuBLASLt epilogues (matmul_bias, matmul_bias_gelu,
 * matmul_dgelu, matmul_wgrad_bgrad) at the GPT's uses: x(rows,in) times a
 * weight W(out,in)^T (+ bias, GELU), dy(rows,in) times the fcproj weight
 * W2(in,out) (dGELU, bias gradient), dW(out,in) += dy2(rows,out)^T x; the
 * accumulating outputs start random. Each against its CPU composition
 * (tests/matmul_compose.c), and run twice for the bits; out = 29 is not a
 * multiple of 8 (cuBLASLt's GELU aux lead rule: the CUDA ops' fallback).
 * The CPU backend has none (its unfused ops are their specification): the
 * self-check says so, and tests/test_matmul_lt.c runs the CUDA call sites
 * on a host stand-in of cuBLASLt instead. */
/* 1 when the backend compared has all four (else says which it lacks) */
static int have_epilogues(void) {
    const char *ops[] = {"matmul_bias", "matmul_bias_gelu", "matmul_dgelu", "matmul_wgrad_bgrad"};
    const void *fn[] = {(const void *)gpu->matmul_bias, (const void *)gpu->matmul_bias_gelu,
                        (const void *)gpu->matmul_dgelu, (const void *)gpu->matmul_wgrad_bgrad};
    int have = 0;
    for (int i = 0; i < 4; i++) {
        have += fn[i] != NULL;
        /* the CUDA backend has all four; the self-check's composed CPU table too */
        CHECK(fn[i] != NULL, "%s: the %s backend lacks this op", ops[i], gpu->name);
    }
    return have == 4;
}

static void epilogues_at(int rows, int in, int out);

static void test_matmul_epilogues(void) {
    if (!have_epilogues()) return;
    epilogues_at(37, 48, 64);
    epilogues_at(19, 24, 29);
}

/* the four ops at rows x in -> out: matmul_bias and matmul_bias_gelu
 * (rows,in)(in,out) as a linear layer, matmul_dgelu (rows,in)(in,out) as
 * the input gradient of a layer out -> in, matmul_wgrad_bgrad (out,in) +=
 * dy(rows,out)^T x(rows,in) */
static void epilogues_at(int rows, int in, int out) {
    const char *name[7] = {"matmul_bias",       "matmul_bias_gelu", "matmul_bias_gelu",
                           "matmul_dgelu",      "matmul_dgelu",     "matmul_wgrad_bgrad",
                           "matmul_wgrad_bgrad"};
    const char *what[7] = {"y", "pre", "gelu", "dpre", "db +=", "dW +=", "db +="};
    size_t nx = (size_t)rows * in, nw = (size_t)out * in, ny = (size_t)rows * out;
    size_t no = (size_t)out, n[7] = {ny, ny, ny, ny, no, nw, no};
    float *x = rnd(nx, -1, 1), *W = rnd(nw, -1, 1), *W2 = rnd(nw, -1, 1), *b = rnd(no, -1, 1);
    float *dy = rnd(nx, -1, 1), *dy2 = rnd(ny, -1, 1), *pre = rnd(ny, -4, 4);
    float *db0 = rnd(no, -1, 1), *dw0 = rnd(nw, -1, 1), *p = nan_buf(ny);
    float *c[7] = {nan_buf(ny),           nan_buf(ny),           nan_buf(ny),          nan_buf(ny),
                   mt_test_copy(db0, no), mt_test_copy(dw0, nw), mt_test_copy(db0, no)};
    mt_compose_matmul_bias(cpu, 0, 1, rows, out, in, x, in, W, in, b, c[0], out);
    mt_compose_matmul_bias_gelu(cpu, 0, 1, rows, out, in, x, in, W, in, b, c[1], c[2], out);
    mt_compose_matmul_dgelu(cpu, 0, 0, rows, out, in, dy, in, W2, out, pre, c[3], c[4], out);
    mt_compose_matmul_wgrad_bgrad(cpu, out, in, rows, dy2, out, x, in, c[5], in, c[6]);
    float *dx = up(x, nx), *dW = up(W, nw), *dW2 = up(W2, nw), *dbias = up(b, no);
    float *ddy = up(dy, nx), *ddy2 = up(dy2, ny), *dpre = up(pre, ny), *r[2][7];
    for (int run = 0; run < 2; run++) {
        float *g[7] = {up(p, ny),   up(p, ny),   up(p, ny),  up(p, ny),
                       up(db0, no), up(dw0, nw), up(db0, no)};
        gpu->matmul_bias(0, 1, rows, out, in, dx, in, dW, in, dbias, g[0], out);
        gpu->matmul_bias_gelu(0, 1, rows, out, in, dx, in, dW, in, dbias, g[1], g[2], out);
        gpu->matmul_dgelu(0, 0, rows, out, in, ddy, in, dW2, out, dpre, g[3], g[4], out);
        gpu->matmul_wgrad_bgrad(out, in, rows, ddy2, out, dx, in, g[5], in, g[6]);
        for (int i = 0; i < 7; i++) r[run][i] = down(g[i], n[i]), gpu->free(g[i]);
    }
    for (int i = 0; i < 7; i++) {
        char w[48];
        snprintf(w, sizeof w, "%s %dx%dx%d", what[i], rows, out, in);
        /* the weight gradient's db involves no product: fp32's bound in
         * both modes (a bias gradient from bf16-rounded dy would pass 1e-2) */
        expect(name[i], w, r[0][i], c[i], n[i], i == 6 ? TOL_FP32 : tol_mm);
        expect_same(name[i], r[0][i], r[1][i], n[i]);
        free(r[0][i]), free(r[1][i]), free(c[i]);
    }
    float *all[] = {x, W, W2, b, dy, dy2, pre, db0, dw0, p};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
    float *dev[] = {dx, dW, dW2, dbias, ddy, ddy2, dpre};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++) gpu->free(dev[i]);
}

/* ---- matmul_bf16: bf16 operands (backend.h), against the CPU's (the
 * reference: A and B widened, then its fp32-operand op in the precision
 * set), so the tolerances are the products' (tol_mm) ---- */

/* n uniform values in [lo, hi) as bf16 bits (one spare element when n is
 * odd, so that up16 copies whole floats) */
static uint16_t *rnd16(size_t n, float lo, float hi) {
    float *x = rnd(n, lo, hi);
    uint16_t *h = calloc(n + 2, sizeof *h);
    if (!h) abort();
    cpu->to_bf16(h, x, n);
    free(x);
    return h;
}

/* a device copy of n bf16 values (the backend's memory counts floats) */
static uint16_t *up16(const uint16_t *h, size_t n) {
    return (uint16_t *)up(h, (n + 1) / 2);
}

/* the product at rows x in -> out as the GPT calls it, each epilogue at
 * its use (as epilogues_at): MT_EPI_BIAS and MT_EPI_BIAS_GELU as a
 * linear layer x(rows,in) W(out,in)^T, MT_EPI_DGELU as the input gradient
 * dy(rows,in) W2(in,out) of a layer out -> in (with db), and MT_EPI_NONE
 * as a layer's input gradient dx = dy2(rows,out) W (beta 0: dx starts
 * NaN) and its weight gradient dW(out,in) += dy2^T x (alpha 1, beta 1); the
 * accumulating outputs start random. Run twice: bitwise the same. */
static void bf16_at(int rows, int in, int out) {
    const char *what[7] = {"BIAS y",      "BIAS_GELU pre", "BIAS_GELU out", "DGELU dpre",
                           "DGELU db +=", "NONE dx",       "NONE dW +="};
    size_t nx = (size_t)rows * in, nw = (size_t)out * in, ny = (size_t)rows * out;
    size_t no = (size_t)out, n[7] = {ny, ny, ny, ny, no, nx, nw};
    uint16_t *x = rnd16(nx, -1, 1), *W = rnd16(nw, -1, 1), *W2 = rnd16(nw, -1, 1);
    uint16_t *dy = rnd16(nx, -1, 1), *dy2 = rnd16(ny, -1, 1);
    float *b = rnd(no, -1, 1), *pre = rnd(ny, -4, 4), *db0 = rnd(no, -1, 1), *dw0 = rnd(nw, -1, 1);
    float *c[7] = {nan_buf(ny),           nan_buf(ny), nan_buf(ny),          nan_buf(ny),
                   mt_test_copy(db0, no), nan_buf(nx), mt_test_copy(dw0, nw)};
    cpu->matmul_bf16(MT_EPI_BIAS, 0, 1, rows, out, in, 1, x, in, W, in, 0, b, NULL, c[0], NULL,
                     out);
    cpu->matmul_bf16(MT_EPI_BIAS_GELU, 0, 1, rows, out, in, 1, x, in, W, in, 0, b, c[1], c[2], NULL,
                     out);
    cpu->matmul_bf16(MT_EPI_DGELU, 0, 0, rows, out, in, 1, dy, in, W2, out, 0, NULL, pre, c[3],
                     c[4], out);
    cpu->matmul_bf16(MT_EPI_NONE, 0, 0, rows, in, out, 1, dy2, out, W, in, 0, NULL, NULL, c[5],
                     NULL, in);
    cpu->matmul_bf16(MT_EPI_NONE, 1, 0, out, in, rows, 1, dy2, out, x, in, 1, NULL, NULL, c[6],
                     NULL, in);
    uint16_t *dx = up16(x, nx), *dW = up16(W, nw), *dW2 = up16(W2, nw), *ddy = up16(dy, nx),
             *ddy2 = up16(dy2, ny);
    float *dbias = up(b, no), *dpre = up(pre, ny), *r[2][7];
    for (int run = 0; run < 2; run++) {
        float *g[7], *p = nan_buf(nx > ny ? nx : ny); /* outputs poisoned, sums random */
        for (int i = 0; i < 7; i++) g[i] = up(i == 4 ? db0 : i == 6 ? dw0 : p, n[i]);
        free(p);
        gpu->matmul_bf16(MT_EPI_BIAS, 0, 1, rows, out, in, 1, dx, in, dW, in, 0, dbias, NULL, g[0],
                         NULL, out);
        gpu->matmul_bf16(MT_EPI_BIAS_GELU, 0, 1, rows, out, in, 1, dx, in, dW, in, 0, dbias, g[1],
                         g[2], NULL, out);
        gpu->matmul_bf16(MT_EPI_DGELU, 0, 0, rows, out, in, 1, ddy, in, dW2, out, 0, NULL, dpre,
                         g[3], g[4], out);
        gpu->matmul_bf16(MT_EPI_NONE, 0, 0, rows, in, out, 1, ddy2, out, dW, in, 0, NULL, NULL,
                         g[5], NULL, in);
        gpu->matmul_bf16(MT_EPI_NONE, 1, 0, out, in, rows, 1, ddy2, out, dx, in, 1, NULL, NULL,
                         g[6], NULL, in);
        for (int i = 0; i < 7; i++) r[run][i] = down(g[i], n[i]), gpu->free(g[i]);
    }
    for (int i = 0; i < 7; i++) {
        char w[48];
        snprintf(w, sizeof w, "%s %dx%dx%d", what[i], rows, out, in);
        expect("matmul_bf16", w, r[0][i], c[i], n[i], tol_mm);
        expect_same("matmul_bf16", r[0][i], r[1][i], n[i]);
        free(r[0][i]), free(r[1][i]), free(c[i]);
    }
    void *all[] = {x, W, W2, dy, dy2, b, pre, db0, dw0};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
    void *dev[] = {dx, dW, dW2, ddy, ddy2, dbias, dpre};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++) gpu->free(dev[i]);
}

/* MT_EPI_NONE at odd sizes, every transpose pair, leads wider than the
 * rows, alpha 0.7 and beta 0.3 (C's padding must come back untouched),
 * then alpha -1.5 with beta 0 (C starts NaN: it must not be read) */
static void bf16_none_odd(void) {
    int M = 37, N = 29, K = 53;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int zero = 0; zero < 2; zero++) {
                int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
                int lda = ac + 3, ldb = bc + 5, ldc = N + 2;
                size_t na = (size_t)ar * lda, nb = (size_t)br * ldb, nc = (size_t)M * ldc;
                float al = zero ? -1.5f : 0.7f, be = zero ? 0.0f : 0.3f;
                uint16_t *A = rnd16(na, -1, 1), *B = rnd16(nb, -1, 1);
                float *C0 = rnd(nc, -1, 1);
                if (zero)
                    for (size_t i = 0; i < nc; i++)
                        if ((int)(i % (size_t)ldc) < N) C0[i] = NAN;
                float *Cc = mt_test_copy(C0, nc);
                cpu->matmul_bf16(MT_EPI_NONE, ta, tb, M, N, K, al, A, lda, B, ldb, be, NULL, NULL,
                                 Cc, NULL, ldc);
                uint16_t *dA = up16(A, na), *dB = up16(B, nb);
                float *dC = up(C0, nc);
                gpu->matmul_bf16(MT_EPI_NONE, ta, tb, M, N, K, al, dA, lda, dB, ldb, be, NULL, NULL,
                                 dC, NULL, ldc);
                float *g = down(dC, nc);
                CHECK(pad_kept(g, Cc, C0, M, N, ldc, 1),
                      "matmul_bf16 NONE ta%d tb%d: C's padding was written", ta, tb);
                char what[48];
                snprintf(what, sizeof what, "NONE ta%d tb%d a%g b%g", ta, tb, al, be);
                expect("matmul_bf16", what, g, Cc, nc, tol_mm);
                free(A), free(B), free(C0), free(Cc), free(g);
                gpu->free(dA), gpu->free(dB), gpu->free(dC);
            }
}

static void test_matmul_bf16(void) {
    if (!has("matmul_bf16", (const void *)gpu->matmul_bf16)) return;
    bf16_none_odd();
    bf16_at(37, 48, 64);
    bf16_at(19, 24, 29); /* out 29: the GELU aux lead rule (the CUDA op's fallback) */
    bf16_at(1, 8, 3);    /* one row */
}

/* sumsq_multi: each segment within fp32 of the CPU's sumsq and bitwise the
 * backend's own sumsq of that segment (empty segments 0) */
static void test_sumsq_multi(size_t total) {
    if (!has("sumsq_multi", (const void *)gpu->sumsq_multi)) return;
    size_t off[6] = {0, 7, 7, 1000, 1001, total / 2},
           n[6] = {7, 0, 993, 1, total / 2 - 1001, total / 2};
    float *x = rnd(total, -2, 2), *dx = up(x, total);
    double got[6], *dgot = (double *)up((const float *)(double[6]){NAN, NAN, NAN, NAN, NAN, NAN},
                                        12); /* NaN: each must be written, the empty one too */
    gpu->sumsq_multi(dgot, dx, 6, off, n);   /* into the backend's memory */
    gpu->to_host((float *)got, (const float *)dgot, 12);
    gpu->free(dgot);
    for (int i = 0; i < 6; i++) {
        double want = cpu->sumsq(x + off[i], n[i]), own = gpu->sumsq(dx + off[i], n[i]);
        double rel = fabs(got[i] - want) / (want > 0 ? want : 1.0);
        CHECK(rel <= TOL_FP32, "sumsq_multi: segment %d (%zu at %zu): %.17g vs the CPU's %.17g", i,
              n[i], off[i], got[i], want);
        CHECK(got[i] == own,
              "sumsq_multi: segment %d: %.17g, not bitwise the backend's sumsq %.17g", i, got[i],
              own);
    }
    printf("  %-22s 6 segments over %zu floats: within %.0e of the CPU, bitwise its own sumsq\n",
           "sumsq_multi", total, TOL_FP32);
    free(x);
    gpu->free(dx);
}

static void test_all(void) {
    test_matmul();
    test_unary("relu_forward", cpu->relu_forward, gpu->relu_forward, -2, 2);
    test_unary("gelu_forward", cpu->gelu_forward, gpu->gelu_forward, -6, 6);
    test_binary("relu_backward", cpu->relu_backward, gpu->relu_backward, -2, 2);
    test_binary("gelu_backward", cpu->gelu_backward, gpu->gelu_backward, -6, 6);
    test_bias(33, 47);
    test_bias(301, 19); /* more rows than one pass of the CUDA column sums */
    test_add_scale();
    test_bf16_storage();
    test_softmax(19, 257, 257);
    test_softmax(5, 2053, 2053); /* rows wider than a block: several elements per thread */
    test_softmax(7, 300, 384);   /* a padded vocabulary: rows 384 apart, 84 columns of padding */
    test_layernorm(23, 96);
    test_attention(2, 17, 48, 4);
    test_embedding(50, 3, 11, 40, 16);
    test_dropout();
    test_optim(100003);
    test_flash(2, 17, 48, 4);
    test_flash(1, 130, 32, 2);  /* past two key tiles, T not a multiple of one */
    test_flash(4, 1, 64, 4);    /* T = 1: one query, one key */
    test_flash(2, 300, 128, 2); /* hs 64 (GPT-2's), B 2, T >= 256 not a multiple of 64 */
    test_flash(1, 67, 256, 2);  /* hs 128, the largest head the CUDA kernels take */
    test_residual_layernorm(23, 96);
    test_bias_gelu(37, 200);
    test_xent_fused(19, 257, 257);
    test_xent_fused(3, 5000, 5000);
    test_xent_fused(64, 50257, 50257); /* GPT-2's vocabulary: 49 or 50 elements a thread */
    test_xent_fused(1, 3, 3);          /* one row, narrower than a warp */
    test_xent_fused(16, 50257, 50304); /* padded to 393 x 128, as the GPT on CUDA */
    test_residual_layernorm(1, 769);
    test_bias_gelu(300, 77); /* more rows than one chunk of a device column sum */
    test_adamw_multi(0.37f, 0.1f);
    test_adamw_multi(1.0f, 0.2f);
    test_matmul_epilogues();
    test_matmul_bf16();
    test_sumsq_multi(5000);
}

/* ---- the GPT-2 124M shapes (--shapes gpt2): the ops whose work grows with
 * the model, at the sizes core/gpt.c calls them with: N = B x T tokens
 * (--batch, --seq; default 4 x 1024), n_embd 768, 12 heads of 64, the
 * vocabulary 50257 (--vocab) and its padded 50304 (rounded up to 128), 12
 * layers. Same tolerances as the
 * small shapes. ---- */
enum { G_C = 768, G_NH = 12, G_L = 12 };
static int g_B = 4, g_T = 1024, g_V = 50257, g_Vp = 50304; /* g_Vp: g_V rounded up to 128 */

/* one matmul C = op(A) op(B) + beta C with tight leads; beta 0: C starts
 * poisoned (every element must be written) */
static void test_mm(const char *layer, const char *what, int ta, int tb, int M, int N, int K,
                    float beta) {
    int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
    size_t na = (size_t)ar * ac, nb = (size_t)br * bc, nc = (size_t)M * N;
    float *A = rnd(na, -1, 1), *Bm = rnd(nb, -1, 1);
    float *C0 = beta != 0.0f ? rnd(nc, -1, 1) : nan_buf(nc), *Cc = mt_test_copy(C0, nc);
    cpu->matmul(ta, tb, M, N, K, 1.0f, A, ac, Bm, bc, beta, Cc, N);
    float *dA = up(A, na), *dB = up(Bm, nb), *dC = up(C0, nc);
    gpu->matmul(ta, tb, M, N, K, 1.0f, dA, ac, dB, bc, beta, dC, N);
    float *g = down(dC, nc);
    char op[64], shape[48];
    snprintf(op, sizeof op, "matmul %s %s", layer, what);
    snprintf(shape, sizeof shape, "%dx%dx%d", M, N, K);
    expect(op, shape, g, Cc, nc, tol_mm);
    free(A), free(Bm), free(C0), free(Cc), free(g);
    gpu->free(dA), gpu->free(dB), gpu->free(dC);
}

/* a linear layer of N tokens, in -> out, as core/gpt.c calls it: forward
 * y = x W^T, weight gradient dW += dy^T x, input gradient dx = dy W */
static void test_linear(const char *layer, int N, int in, int out) {
    test_mm(layer, "fwd", 0, 1, N, out, in, 0.0f);
    test_mm(layer, "dW", 1, 0, out, in, N, 1.0f);
    test_mm(layer, "dx", 0, 0, N, in, out, 0.0f);
}

/* the ops with products (matmul, attention): run in both precisions */
static void test_gpt2_products(void) {
    int N = g_B * g_T;
    test_linear("qkv", N, G_C, 3 * G_C);
    test_linear("attn.proj", N, G_C, G_C);
    test_linear("fc", N, G_C, 4 * G_C);
    test_linear("mlp.proj", N, 4 * G_C, G_C);
    test_linear("lm_head V", N, G_C, g_V);
    test_linear("lm_head Vp", N, G_C, g_Vp);
    test_attention(g_B, g_T, G_C, G_NH);
    test_flash(g_B, g_T, G_C, G_NH);
    if (have_epilogues()) {            /* each linear layer's shape, rows x in -> out */
        epilogues_at(N, G_C, 3 * G_C); /* attn.c_attn */
        epilogues_at(N, G_C, G_C);     /* attn.c_proj */
        epilogues_at(N, G_C, 4 * G_C); /* mlp.c_fc (and c_proj's dx, dgelu) */
        epilogues_at(N, 4 * G_C, G_C); /* mlp.c_proj */
    }
    if (has("matmul_bf16", (const void *)gpu->matmul_bf16)) { /* the same, bf16 operands */
        bf16_at(N, G_C, 3 * G_C);
        bf16_at(N, G_C, G_C);
        bf16_at(N, G_C, 4 * G_C);
        bf16_at(N, 4 * G_C, G_C);
    }
}

static void test_gpt2(void) {
    int N = g_B * g_T;
    test_gpt2_products();
    test_layernorm(N, G_C);
    test_residual_layernorm(N, G_C);
    test_bias(N, 3 * G_C);
    test_bias_gelu(N, 4 * G_C);
    test_softmax(N, g_V, g_V);
    test_softmax(N, g_V, g_Vp); /* the GPT's padded logits: V columns, rows Vp apart */
    test_xent_fused(N, g_V, g_V);
    test_xent_fused(N, g_V, g_Vp);
    test_embedding(g_V, g_B, g_T, G_C, g_T);
    test_optim((size_t)g_Vp * G_C);       /* the largest tensor, wte */
    test_sumsq_multi((size_t)g_Vp * G_C); /* the gradient norm's segments */
}

/* ---- --time: each op's median time at the GPT-2 shapes, on the GPU
 * backend and on the CPU (synchronised after every call) ---- */
enum {
    OP_QKV,
    OP_FC,
    OP_PROJ,
    OP_HEAD,
    OP_HEAD_DW,
    OP_HEAD_DX,
    OP_HEAD_BF16,
    OP_FC_BF16,
    OP_LN_F,
    OP_LN_B,
    OP_ATT_F,
    OP_ATT_B,
    OP_FLASH_F,
    OP_FLASH_B,
    OP_XENT_F,
    OP_XENT_B,
    OP_XENT_FUSED,
    OP_BIAS_GELU,
    OP_GELU_BIAS_B,
    OP_EMB_F,
    OP_EMB_B,
    OP_ADAMW,
    OP_RESLN,
    OP_FC_BIAS_GELU,
    OP_FC_DGELU,
    OP_QKV_WGRAD,
    OP_ADAMW_MULTI,
    OP_BF16_FC_GELU,
    OP_BF16_QKV_DW,
    OP_COUNT
};
static const char *op_names[OP_COUNT] = {
    "matmul qkv fwd",      "matmul fc fwd",          "matmul mlp.proj fwd", "matmul lm_head fwd",
    "matmul lm_head dW",   "matmul lm_head dx",      "matmul lm_head bf16", "matmul fc fwd bf16",
    "layernorm_forward",   "layernorm_backward",     "attention_forward",   "attention_backward",
    "flash_attention_fwd", "flash_attention_bwd",    "softmax_xent_fwd",    "softmax_xent_bwd",
    "xent_fused",          "bias_gelu_forward",      "gelu_bias_backward",  "embedding_forward",
    "embedding_backward",  "adamw_update (all)",     "residual_layernorm",  "matmul_bias_gelu fc",
    "matmul_dgelu fc",     "matmul_wgrad_bgrad qkv", "adamw_multi (all)",   "matmul_bf16 fc gelu",
    "matmul_bf16 qkv dW"};

typedef struct {
    float *x, *x2, *x3, *w, *w2, *l, *l2, *att, *att2, *lse, *mean, *rstd, *p, *g, *m, *v;
    int32_t *lab;
    double *tot;         /* (2) xent_fused's totals */
    uint16_t *x16, *w16; /* x and w as bf16 (matmul_bf16's operands) */
} op_bufs;

/* parameters of the GPT-2 model at block size T (core/gpt.c's count) */
static size_t gpt2_params(int T) {
    return (size_t)g_Vp * G_C + (size_t)T * G_C + (size_t)G_L * (12 * G_C * G_C + 13 * G_C) +
           2 * G_C;
}

/* n floats of be, filled with a cheap pattern in [-0.5, 0.5] from host staging h */
static float *pattern(const mt_backend *be, float *h, size_t n) {
    for (size_t i = 0; i < n; i++) h[i] = (float)((i * 2654435761u) % 1001) * 1e-3f - 0.5f;
    float *d = be->alloc(n);
    be->to_device(d, h, n);
    return d;
}

/* runs op once on be; 0 when be lacks it */
static int run_op(const mt_backend *be, int op, op_bufs *b) {
    int B = g_B, T = g_T, N = B * T, C = G_C;
    switch (op) {
    case OP_QKV:
        be->matmul(0, 1, N, 3 * C, C, 1, b->x, C, b->w, C, 0, b->x2, 3 * C);
        break;
    case OP_FC:
    case OP_FC_BF16:
        be->matmul(0, 1, N, 4 * C, C, 1, b->x, C, b->w, C, 0, b->x2, 4 * C);
        break;
    case OP_PROJ:
        be->matmul(0, 1, N, C, 4 * C, 1, b->x, 4 * C, b->w, 4 * C, 0, b->x2, C);
        break;
    case OP_HEAD:
    case OP_HEAD_BF16:
        be->matmul(0, 1, N, g_Vp, C, 1, b->x, C, b->w, C, 0, b->l, g_Vp);
        break;
    case OP_HEAD_DW:
        be->matmul(1, 0, g_Vp, C, N, 1, b->l, g_Vp, b->x, C, 1, b->w2, C);
        break;
    case OP_HEAD_DX:
        be->matmul(0, 0, N, C, g_Vp, 1, b->l, g_Vp, b->w, C, 0, b->x2, C);
        break;
    case OP_LN_F:
        be->layernorm_forward(b->x2, b->mean, b->rstd, b->x, b->w, b->w2, N, C);
        break;
    case OP_LN_B:
        be->layernorm_backward(b->x2, b->g, b->m, b->x, b->x, b->w, b->mean, b->rstd, N, C);
        break;
    case OP_ATT_F:
        be->attention_forward(b->x2, b->att, b->x, B, T, C, G_NH);
        break;
    case OP_ATT_B:
        be->attention_backward(b->x3, b->att2, b->x2, b->x, b->att, B, T, C, G_NH);
        break;
    case OP_FLASH_F:
        if (!be->flash_attention_forward) return 0;
        be->flash_attention_forward(b->x2, b->lse, b->x, B, T, C, G_NH);
        break;
    case OP_FLASH_B:
        if (!be->flash_attention_backward) return 0;
        be->flash_attention_backward(b->x3, b->x2, b->x, b->x2, b->lse, B, T, C, G_NH);
        break;
    case OP_XENT_F:
        be->softmax_xent_forward(b->l2, b->l, b->lab, N, g_V, g_Vp); /* the GPT's padded rows */
        break;
    case OP_XENT_B:
        be->softmax_xent_backward(b->l2, b->l2, b->lab, N, g_V, g_Vp, 1.0f);
        break;
    case OP_XENT_FUSED:
        if (!be->xent_fused) return 0;
        be->xent_fused(b->l, b->lab, N, g_V, g_Vp, b->tot);
        break;
    case OP_BIAS_GELU:
        if (!be->bias_gelu_forward) return 0;
        be->bias_gelu_forward(b->x, b->x2, b->w, N, 4 * C);
        break;
    case OP_GELU_BIAS_B:
        if (!be->gelu_bias_backward) return 0;
        be->gelu_bias_backward(b->x2, b->w2, b->x2, b->x, N, 4 * C);
        break;
    case OP_EMB_F:
        be->embedding_forward(b->x2, b->lab, b->w, b->w2, B, T, C);
        break;
    case OP_EMB_B:
        be->embedding_backward(b->w, b->w2, b->x2, b->lab, B, T, C);
        break;
    case OP_ADAMW: {
        size_t n = gpt2_params(T);
        be->adamw_update(b->p, b->g, b->m, b->v, n, 1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, 0.3f);
        break;
    }
    case OP_RESLN:
        if (!be->residual_layernorm_forward) return 0;
        be->residual_layernorm_forward(b->x3, b->x2, b->mean, b->rstd, b->x, b->x3, b->w, b->w2, N,
                                       C);
        break;
    case OP_FC_BIAS_GELU: /* fc with its bias and GELU in the product (vs fc fwd + bias_gelu) */
        if (!be->matmul_bias_gelu) return 0;
        be->matmul_bias_gelu(0, 1, N, 4 * C, C, b->x, C, b->w, C, b->w2, b->x2, b->x3, 4 * C);
        break;
    case OP_FC_DGELU: /* c_proj's dx with GELU' and c_fc's bias gradient */
        if (!be->matmul_dgelu) return 0;
        be->matmul_dgelu(0, 0, N, 4 * C, C, b->x, C, b->w, 4 * C, b->x2, b->x3, b->w2, 4 * C);
        break;
    case OP_QKV_WGRAD: /* dW(3C, C) += dy^T x with db(3C) */
        if (!be->matmul_wgrad_bgrad) return 0;
        be->matmul_wgrad_bgrad(3 * C, C, N, b->x2, 3 * C, b->x, C, b->w, C, b->w2);
        break;
    case OP_BF16_FC_GELU: /* matmul_bias_gelu fc with bf16 operands (the GPT in bf16) */
        if (!be->matmul_bf16) return 0;
        be->matmul_bf16(MT_EPI_BIAS_GELU, 0, 1, N, 4 * C, C, 1, b->x16, C, b->w16, C, 0, b->w2,
                        b->x2, b->x3, NULL, 4 * C);
        break;
    case OP_BF16_QKV_DW: /* dW(3C, C) += dy^T x, bf16 dy and x */
        if (!be->matmul_bf16) return 0;
        be->matmul_bf16(MT_EPI_NONE, 1, 0, 3 * C, C, N, 1, b->x16, 3 * C, b->x16, C, 1, NULL, NULL,
                        b->w, NULL, C);
        break;
    case OP_ADAMW_MULTI: { /* the same elements as adamw_update (all), as one segment */
        size_t n = gpt2_params(T), off = 0;
        float wd = 0.1f;
        if (!be->adamw_multi) return 0;
        be->adamw_multi(b->p, b->g, b->m, b->v, 1, &off, &off, &n, &wd, 1.0f, 1e-4f, 0.9f, 0.95f,
                        1e-8f, 0.5f, 0.3f);
        break;
    }
    }
    return 1;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* median ms of reps runs of every op on be (after one untimed run) into ms[];
 * -1 where be lacks the op */
static void time_backend(const mt_backend *be, int reps, double *ms) {
    int N = g_B * g_T;
    size_t nx = (size_t)N * 4 * G_C, nw = (size_t)(g_Vp > 4 * G_C ? g_Vp : 4 * G_C) * G_C;
    size_t nl = (size_t)N * g_Vp;
    size_t na = (size_t)g_B * G_NH * g_T * g_T, np = gpt2_params(g_T);
    size_t nh = nl > np ? nl : np;
    nh = nh > na ? nh : na;
    nh = nh > nx ? nh : nx;
    nh = nh > nw ? nh : nw;
    float *h = malloc(nh * sizeof *h);
    if (!h) abort();
    op_bufs b = {0};
    b.x = pattern(be, h, nx), b.x2 = pattern(be, h, nx), b.x3 = pattern(be, h, nx);
    b.w = pattern(be, h, nw);
    b.w2 = pattern(be, h, nw), b.l = pattern(be, h, nl), b.l2 = pattern(be, h, nl);
    b.att = pattern(be, h, na), b.att2 = pattern(be, h, na);
    b.lse = pattern(be, h, (size_t)g_B * G_NH * g_T), b.mean = pattern(be, h, (size_t)N);
    b.rstd = pattern(be, h, (size_t)N), b.p = pattern(be, h, np), b.g = pattern(be, h, np);
    b.m = pattern(be, h, np), b.v = pattern(be, h, np);
    for (size_t i = 0; i < np; i++) h[i] = 1e-3f + (float)(i % 7) * 1e-4f; /* v > 0 */
    be->to_device(b.v, h, np);
    int32_t *lab = (int32_t *)h;
    for (int i = 0; i < N; i++) lab[i] = (int32_t)(((unsigned)i * 2654435761u) % g_V);
    b.lab = (int32_t *)be->alloc((size_t)N);
    be->to_device((float *)b.lab, h, (size_t)N);
    b.tot = (double *)be->alloc(4);
    b.x16 = (uint16_t *)be->alloc(nx / 2 + 1), b.w16 = (uint16_t *)be->alloc(nw / 2 + 1);
    be->to_bf16(b.x16, b.x, nx);
    be->to_bf16(b.w16, b.w, nw);
    double *t = malloc((size_t)reps * sizeof *t);
    for (int op = 0; op < OP_COUNT; op++) {
        int bf16 =
            op == OP_HEAD_BF16 || op == OP_FC_BF16 || op == OP_BF16_FC_GELU || op == OP_BF16_QKV_DW;
        be->set_precision(bf16);
        if (!run_op(be, op, &b)) {
            ms[op] = -1;
            continue;
        }
        if (be->synchronize) be->synchronize();
        for (int r = 0; r < reps; r++) {
            double t0 = mt_test_now();
            run_op(be, op, &b);
            if (be->synchronize) be->synchronize();
            t[r] = (mt_test_now() - t0) * 1e3;
        }
        qsort(t, (size_t)reps, sizeof *t, cmp_double);
        ms[op] = reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
    }
    be->set_precision(0);
    float *all[] = {b.x,
                    b.x2,
                    b.x3,
                    b.w,
                    b.w2,
                    b.l,
                    b.l2,
                    b.att,
                    b.att2,
                    b.lse,
                    b.mean,
                    b.rstd,
                    b.p,
                    b.g,
                    b.m,
                    b.v,
                    (float *)b.lab,
                    (float *)b.tot,
                    (float *)b.x16,
                    (float *)b.w16};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) be->free(all[i]);
    free(h), free(t);
}

static void time_ops(void) {
    double mg[OP_COUNT], mc[OP_COUNT];
    printf("op times at the GPT-2 124M shapes: B %d, T %d, n_embd %d, %d heads, vocab %d "
           "(padded), adamw over %zu parameters; median ms of %d %s runs and %d %s runs\n",
           g_B, g_T, G_C, G_NH, g_Vp, gpt2_params(g_T), gpu != cpu ? 10 : 3, gpu->name, 3,
           cpu->name);
    if (gpu != cpu) time_backend(gpu, 10, mg);
    time_backend(cpu, 3, mc);
    for (int op = 0; op < OP_COUNT; op++) {
        char a[48] = "", c[32];
        if (gpu != cpu && mg[op] >= 0)
            snprintf(a, sizeof a, "%s %10.3f ms  ", gpu->name, mg[op]);
        else if (gpu != cpu)
            snprintf(a, sizeof a, "%s %10s ms  ", gpu->name, "-");
        if (mc[op] >= 0)
            snprintf(c, sizeof c, "%10.3f", mc[op]);
        else
            snprintf(c, sizeof c, "%10s", "-");
        printf("time %-22s %s%s %s ms\n", op_names[op], a, cpu->name, c);
    }
}

static int shapes_gpt2; /* --shapes gpt2 */

/* Every op in fp32, then in bf16 matmul mode, then fp32 restored; at the
 * GPT-2 shapes the bf16 and restored passes run only the ops with products. */
static void test_both_precisions(const char *who) {
    tol_mm = TOL_FP32;
    if (shapes_gpt2)
        printf("%s at the GPT-2 124M shapes (B %d, T %d, n_embd %d, %d heads, vocab %d and %d):\n",
               who, g_B, g_T, G_C, G_NH, g_V, g_Vp);
    printf("%s, fp32: tolerance %.0e for every op (normalized error):\n", who, TOL_FP32);
    if (shapes_gpt2)
        test_gpt2();
    else
        test_all();
    cpu->set_precision(1);
    gpu->set_precision(1);
    tol_mm = TOL_BF16;
    printf("%s, bf16 matmuls (set_precision(1) on both): tolerance %.0e for matmul and "
           "attention, %.0e for every other op:\n",
           who, TOL_BF16, TOL_FP32);
    if (shapes_gpt2)
        test_gpt2_products();
    else
        test_all();
    cpu->set_precision(0);
    gpu->set_precision(0);
    tol_mm = TOL_FP32;
    printf("%s, fp32 restored: tolerance %.0e:\n", who, TOL_FP32);
    if (shapes_gpt2) {
        test_linear("fc", g_B * g_T, G_C, 4 * G_C);
        test_attention(g_B, g_T, G_C, G_NH);
    } else {
        test_matmul();
        test_attention(2, 17, 48, 4);
        test_flash(2, 17, 48, 4);
    }
}

static int usage_error(const char *msg, const char *arg) {
    printf("mpitrain: error: test_backend_cmp: %s%s%s (usage: test_backend_cmp [--shapes "
           "small|gpt2] [--batch B] [--seq T] [--vocab V] [--time])\n",
           msg, arg ? " " : "", arg ? arg : "");
    return 2;
}

/* a positive int <= max from text, or 0 */
static int parse_pos(const char *text, int max) {
    char *end;
    long v = strtol(text, &end, 10);
    return *text && !*end && v > 0 && v <= max ? (int)v : 0;
}

/* usage: test_backend_cmp [--shapes small|gpt2] [--batch B] [--seq T] [--vocab V] [--time]
 *   --shapes small  every op at small, odd shapes (the default)
 *   --shapes gpt2   the shape-dependent ops at the GPT-2 124M shapes, B 4 x T 1024,
 *                   vocabulary 50257 (and padded 50304) unless --batch / --seq /
 *                   --vocab say otherwise (a scaled-down dry run on the CPU)
 *   --time          no comparison: each op's median time at the GPT-2 shapes on
 *                   the GPU backend and the CPU ("time OP ... ms" lines) */
int main(int argc, char **argv) {
    /* line by line: a CUDA error aborts the process, and the log must still
     * say which op ran last */
    setvbuf(stdout, NULL, _IOLBF, 0);
    char why[256] = "";
    int timing = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--time")) {
            timing = 1;
        } else if (!strcmp(a, "--shapes") || !strcmp(a, "--batch") || !strcmp(a, "--seq") ||
                   !strcmp(a, "--vocab")) {
            if (!v) return usage_error("missing the value of", a);
            i++;
            if (!strcmp(a, "--shapes")) {
                if (strcmp(v, "small") && strcmp(v, "gpt2"))
                    return usage_error("--shapes: small or gpt2, not", v);
                shapes_gpt2 = !strcmp(v, "gpt2");
            } else if (!strcmp(a, "--vocab")) {
                if (!(g_V = parse_pos(v, 65536))) return usage_error("--vocab: 1..65536, not", v);
                g_Vp = (g_V + 127) / 128 * 128;
            } else if (!strcmp(a, "--batch")) {
                if (!(g_B = parse_pos(v, 64))) return usage_error("--batch: 1..64, not", v);
            } else if (!(g_T = parse_pos(v, 1024))) {
                return usage_error("--seq: 1..1024 (GPT-2's block size), not", v);
            }
        } else {
            return usage_error("unknown argument", a);
        }
    }
    /* MT_BACKEND_CMP_SELF=1 checks the harness itself, on any machine: the
     * CPU backend compared with itself must pass every check. Its table with
     * the four product ops composed from its own (tests/matmul_compose.c),
     * so that the harness of those runs too. */
    if (getenv("MT_BACKEND_CMP_SELF")) {
        cpu = gpu = mt_compose_backend();
        if (timing) {
            time_ops();
            return 0;
        }
        printf("harness self-check: the CPU backend (its product ops composed) against itself\n");
        test_both_precisions("CPU vs CPU");
        return mt_test_finish("backend_cmp (self-check)");
    }
    if (mt_backend_probe("cuda", why, sizeof why) <= 0) {
        printf("test_backend_cmp: SKIPPED: %s; the CUDA backend is compared with the CPU only "
               "on a machine with a GPU\n",
               why);
        return 77;
    }
    cpu = mt_backend_cpu();
    gpu = mt_backend_get("cuda");
    if (timing) {
        time_ops();
        return 0;
    }
    test_both_precisions("CUDA vs CPU");
    return mt_test_finish("backend_cmp");
}
