/*
 * test_xent_adamw.c - the CPU backend's fused cross-entropy (xent_fused,
 * kernels/cpu/xent_cpu.c) and multi-tensor AdamW (adamw_multi,
 * kernels/cpu/adamw_cpu.c) against the unfused ops they replace.
 *
 * xent_fused vs softmax_xent_forward + softmax_xent_backward (scale 1) +
 * count_correct: loss relative error <= 1e-6 and dlogits normalized error
 * <= 1e-6 (the fused exp is a polynomial, ~2e-7 relative, and the row sums
 * run in another order), the count equal; random, tied (first arg-max wins)
 * and large (|z| up to 80, and 1000) logits; a finite-difference check of the
 * mean loss's gradient as in test_gradcheck.c; bitwise the same at 1, 2 and
 * 3 threads.
 *
 * adamw_multi vs be->scale(g, gscale) (unless gscale is 1) then adamw_update
 * per segment: BITWISE equal, also on a CPU where MT_VEC's AVX2 + FMA copy
 * runs, because adamw_cpu.c is built with -ffp-contract=off (no FMA
 * contraction: every product and sum rounds as in adamw_update). Segments
 * with wd 0 and 0.1, lengths 0, 1, 5, 13 and others not multiples of 8 or of
 * the kernel's chunk; the buffers hold a signalling NaN between segments,
 * which must stay as it was; bitwise the same at 1, 2 and 3 threads.
 */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "kernels/backend.h"
#include "test_util.h"

#define XENT_TOL 1e-6
#define GRAD_TOL 2e-3
#define ELEM_TOL 2e-2
#define FD_H     1e-2f

static const mt_backend *be;

/* ==== cross-entropy ==== */

static void fill_labels(int32_t *y, int N, int V, uint64_t stream) {
    for (int i = 0; i < N; i++) {
        int l = (int)(mt_rng_uniform(7, stream, (uint64_t)i) * (float)V);
        y[i] = l < V ? l : V - 1;
    }
}

/* xent_fused on a copy of z(N,V): f(N,V) receives the gradient, *correct
 * the hits; returns the loss (both overwritten in the op's output) */
static double fused(float *f, const float *z, const int32_t *y, int N, int V, int64_t *correct) {
    memcpy(f, z, (size_t)N * V * sizeof(float));
    double out[2] = {7.0, 3.0}; /* overwritten, not added to */
    be->xent_fused(f, y, N, V, V, out);
    *correct = (int64_t)out[1];
    CHECK(out[1] == (double)*correct, "xent_fused: hits %.17g not a whole number", out[1]);
    return out[0];
}

/* xent_fused against the unfused ops on logits z(N,V), labels y(N) */
static void compare_xent(const char *what, const float *z, const int32_t *y, int N, int V) {
    size_t nv = (size_t)N * V;
    float *d = mt_test_falloc(nv), *f = mt_test_falloc(nv);
    double lref = be->softmax_xent_forward(d, z, y, N, V, V);
    be->softmax_xent_backward(d, d, y, N, V, V, 1.0f);
    int64_t cref = be->count_correct(z, y, N, V, V), c;
    double loss = fused(f, z, y, N, V, &c);
    size_t bad = 0;
    for (size_t i = 0; i < nv; i++) bad += !isfinite(f[i]);
    double lerr = fabs(loss - lref) / fabs(lref), derr = mt_test_nerr(f, d, nv);
    printf("%-22s N=%-3d V=%-6d loss %.6e rel err %.1e, dlogits nerr %.1e, correct %lld/%lld\n",
           what, N, V, loss, lerr, derr, (long long)c, (long long)cref);
    CHECK(isfinite(loss) && bad == 0, "%s (%d,%d): loss %g, %zu non-finite dlogits", what, N, V,
          loss, bad);
    CHECK(lerr <= XENT_TOL, "%s (%d,%d): loss %.9e vs unfused %.9e (rel %.2e > %.0e)", what, N, V,
          loss, lref, lerr, XENT_TOL);
    CHECK(derr <= XENT_TOL, "%s (%d,%d): dlogits normalized error %.2e > %.0e", what, N, V, derr,
          XENT_TOL);
    CHECK(c == cref, "%s (%d,%d): correct %lld vs count_correct %lld", what, N, V, (long long)c,
          (long long)cref);
    free(d), free(f);
}

/* Logits uniform in [lo, hi), or quantized to steps of q (q > 0: ties).
 * Labels: every third row's the first arg-max (a hit), every third row's
 * the last one (a miss when tied), the rest random. */
static void check_xent_random(const char *what, int N, int V, float lo, float hi, float q,
                              uint64_t stream) {
    size_t nv = (size_t)N * V;
    float *z = mt_test_falloc(nv);
    int32_t *y = mt_test_ialloc((size_t)N);
    mt_test_fill(z, nv, stream, lo, hi);
    if (q > 0)
        for (size_t i = 0; i < nv; i++) z[i] = roundf(z[i] / q) * q;
    fill_labels(y, N, V, stream + 1);
    for (int r = 0; r < N; r++) {
        const float *zr = z + (size_t)r * V;
        int first = 0, last = 0;
        for (int c = 1; c < V; c++) {
            if (zr[c] > zr[first]) first = c;
            if (zr[c] >= zr[last]) last = c;
        }
        if (r % 3 < 2) y[r] = r % 3 ? last : first;
    }
    compare_xent(what, z, y, N, V);
    free(z), free(y);
}

/* Ties placed on purpose: one row per pair a < b of V columns, both at the
 * row's maximum 1 (the rest 0); the label is a (a hit: the first arg-max) on
 * even rows and b (a miss) on odd ones. The pairs cross the kernel's 8 lanes
 * and its tail of V mod 8. A last row is all equal with label 0 (a hit). */
static void check_xent_ties(int V) {
    int N = V * (V - 1) / 2 + 1, r = 0;
    float *z = mt_test_falloc((size_t)N * V);
    int32_t *y = mt_test_ialloc((size_t)N);
    for (int a = 0; a < V; a++)
        for (int b = a + 1; b < V; b++, r++) {
            z[(size_t)r * V + a] = z[(size_t)r * V + b] = 1.0f;
            y[r] = r % 2 ? b : a;
        }
    for (int c = 0; c < V; c++) z[(size_t)r * V + c] = 0.5f;
    y[r] = 0;
    int64_t want = (N - 1 + 1) / 2 + 1, c;
    float *f = mt_test_falloc((size_t)N * V);
    fused(f, z, y, N, V, &c);
    printf("%-22s N=%-3d V=%-6d correct %lld (want %lld)\n", "ties placed", N, V, (long long)c,
           (long long)want);
    CHECK(c == want, "ties (V=%d): correct %lld, want %lld (first arg-max on ties)", V,
          (long long)c, (long long)want);
    compare_xent("ties placed", z, y, N, V);
    free(z), free(y), free(f);
}

/* Logits far apart: exp underflows to 0 for most, nothing overflows. */
static void check_xent_extreme(void) {
    enum { V = 5 };
    float z[2 * V] = {1000.0f, -1000.0f, 0.0f, 500.0f, 999.0f, -80.0f, 80.0f, 80.0f, -80.0f, 0.0f};
    int32_t y[2] = {1, 3};
    compare_xent("extreme |z| 1000, 80", z, y, 2, V);
    float f[2 * V];
    int64_t c;
    double loss = fused(f, z, y, 2, V, &c);
    /* row 0: 1000 + log(1 + e^-1) + 1000; row 1: 80 + log 2 + 80 */
    double want = 2000.0 + log1p(exp(-1.0)) + 160.0 + log(2.0);
    CHECK(fabs(loss - want) <= 1e-9 * want, "extreme logits: loss %.12f, want %.12f", loss, want);
}

/* the mean loss of xent_fused on a copy of logits gz(gN,gV) */
static float *gz, *gf;
static int32_t *gy;
static int gN, gV;

static double mean_loss(void) {
    int64_t c;
    return fused(gf, gz, gy, gN, gV, &c) / gN;
}

/* d(mean loss)/dlogits: the op's output / N against central differences */
static void check_xent_grad(int N, int V) {
    size_t nv = (size_t)N * V;
    gN = N, gV = V, gz = mt_test_falloc(nv), gf = mt_test_falloc(nv),
    gy = mt_test_ialloc((size_t)N);
    double *ana = mt_test_dalloc(nv), *num = mt_test_dalloc(nv);
    mt_test_fill(gz, nv, 41, -4, 4);
    fill_labels(gy, N, V, 42);
    mean_loss();
    for (size_t i = 0; i < nv; i++) ana[i] = (double)gf[i] / N;
    mt_test_numeric(gz, nv, num, mean_loss, FD_H);
    char what[64];
    snprintf(what, sizeof what, "xent_fused d/dlogits %dx%d", N, V);
    mt_test_grad_compare(what, ana, num, nv, GRAD_TOL, ELEM_TOL);
    free(gz), free(gf), free(gy), free(ana), free(num);
}

/* the same loss, dlogits and count at 1, 2 and 3 threads */
static void check_xent_threads(int N, int V) {
    size_t nv = (size_t)N * V;
    float *z = mt_test_falloc(nv), *f[3];
    int32_t *y = mt_test_ialloc((size_t)N);
    double loss[3];
    int64_t c[3];
    mt_test_fill(z, nv, 51, -6, 6);
    fill_labels(y, N, V, 52);
    for (int k = 0; k < 3; k++) {
        f[k] = mt_test_falloc(nv);
        omp_set_num_threads(k + 1);
        loss[k] = fused(f[k], z, y, N, V, &c[k]);
    }
    omp_set_num_threads(2);
    for (int k = 1; k < 3; k++) {
        int same = memcmp(&loss[k], &loss[0], sizeof loss[0]) == 0 && c[k] == c[0] &&
                   memcmp(f[k], f[0], nv * sizeof(float)) == 0;
        printf("xent_fused (%d,%d) %d vs 1 threads: loss, dlogits, correct %s\n", N, V, k + 1,
               same ? "bitwise identical" : "DIFFERENT");
        CHECK(same,
              "xent_fused (%d,%d) at %d threads: loss %.17g vs %.17g, correct %lld vs %lld, "
              "dlogits max diff %.3e",
              N, V, k + 1, loss[k], loss[0], (long long)c[k], (long long)c[0],
              mt_test_max_abs_diff(f[k], f[0], nv));
    }
    for (int k = 0; k < 3; k++) free(f[k]);
    free(z), free(y);
}

/* ==== AdamW ==== */

enum { NSEG = 9, P_GAP = 3, S_GAP = 5 };
/* lengths: 0, 1, not multiples of 8, and across the kernel's 8192-element chunks */
static const size_t seg_n[NSEG] = {13, 0, 70001, 8192, 5, 8193, 40000, 1, 16};

typedef struct {
    size_t p_off[NSEG], s_off[NSEG], n[NSEG];
    float wd[NSEG];
    size_t np, ns;        /* buffer lengths: segments with poisoned gaps */
    float *p, *g, *m, *v; /* (np), (np), (ns), (ns) */
} aw_set;

/* A signalling NaN: an op that reads it and writes the result back leaves a
 * quiet NaN, other bits (a quiet NaN would pass through arithmetic as it
 * was, so a write past a segment could go unseen). */
#define POISON_BITS 0x7FA00BADu

static float *poison_alloc(size_t n) {
    float *x = mt_test_falloc(n);
    uint32_t bits = POISON_BITS;
    for (size_t i = 0; i < n; i++) memcpy(x + i, &bits, sizeof bits);
    return x;
}

/* segments P_GAP (p, g) and S_GAP (m, v) floats apart, the states in reverse
 * order; a signalling NaN in every gap. bad: some gradients NaN or Inf. */
static void aw_init(aw_set *a, int bad) {
    size_t ps = P_GAP, ss = S_GAP;
    for (int i = 0; i < NSEG; i++) {
        a->n[i] = seg_n[i];
        a->wd[i] = i % 2 ? 0.0f : 0.1f;
        a->p_off[i] = ps;
        ps += seg_n[i] + P_GAP;
    }
    for (int i = NSEG - 1; i >= 0; i--) {
        a->s_off[i] = ss;
        ss += seg_n[i] + S_GAP;
    }
    a->np = ps, a->ns = ss;
    a->p = poison_alloc(ps), a->g = poison_alloc(ps), a->m = poison_alloc(ss),
    a->v = poison_alloc(ss);
    for (int i = 0; i < NSEG; i++) {
        mt_test_fill(a->p + a->p_off[i], a->n[i], 60 + i, -1, 1);
        mt_test_fill(a->g + a->p_off[i], a->n[i], 70 + i, -1, 1);
        mt_test_fill(a->m + a->s_off[i], a->n[i], 80 + i, -0.1f, 0.1f);
        mt_test_fill(a->v + a->s_off[i], a->n[i], 90 + i, 0, 0.01f);
        if (bad && a->n[i] > 3) {
            a->g[a->p_off[i] + 1] = NAN;
            a->g[a->p_off[i] + 2] = INFINITY;
            a->g[a->p_off[i] + 3] = -INFINITY;
        }
    }
}

static aw_set aw_copy(const aw_set *a) {
    aw_set b = *a;
    b.p = mt_test_copy(a->p, a->np), b.g = mt_test_copy(a->g, a->np);
    b.m = mt_test_copy(a->m, a->ns), b.v = mt_test_copy(a->v, a->ns);
    return b;
}

static void aw_free(aw_set *a) {
    free(a->p), free(a->g), free(a->m), free(a->v);
}

#define LR    1e-3f
#define BETA1 0.9f
#define BETA2 0.95f
#define EPS   1e-8f

static float bias_corr(float beta, int t) {
    return (float)(1.0 - pow(beta, t));
}

/* step t the unfused way: scale (unless gscale is 1), then per segment */
static void aw_step_ref(aw_set *a, float gscale, int t) {
    for (int i = 0; i < NSEG; i++) {
        float *g = a->g + a->p_off[i];
        if (gscale != 1.0f) be->scale(g, gscale, a->n[i]);
        be->adamw_update(a->p + a->p_off[i], g, a->m + a->s_off[i], a->v + a->s_off[i], a->n[i], LR,
                         BETA1, BETA2, EPS, a->wd[i], bias_corr(BETA1, t), bias_corr(BETA2, t));
    }
}

static void aw_step_fused(aw_set *a, float gscale, int t) {
    be->adamw_multi(a->p, a->g, a->m, a->v, NSEG, a->p_off, a->s_off, a->n, a->wd, gscale, LR,
                    BETA1, BETA2, EPS, bias_corr(BETA1, t), bias_corr(BETA2, t));
}

/* gap elements of x (segments at off[i], n[i]) no longer the poison */
static size_t gaps_touched(const float *x, size_t len, const size_t *off, const size_t *n) {
    float *want = poison_alloc(len);
    for (int i = 0; i < NSEG; i++) memcpy(want + off[i], x + off[i], n[i] * sizeof(float));
    size_t k = mt_test_bits_differ(x, want, len);
    free(want);
    return k;
}

/* three steps each way from the same state; the gradient as it was each step */
static void check_adamw(float gscale, int bad) {
    aw_set a0, r, f;
    aw_init(&a0, bad);
    r = aw_copy(&a0), f = aw_copy(&a0);
    for (int t = 1; t <= 3; t++) {
        memcpy(r.g, a0.g, a0.np * sizeof(float)); /* the reference scales its copy */
        aw_step_ref(&r, gscale, t);
        aw_step_fused(&f, gscale, t);
    }
    size_t dp = mt_test_bits_differ(f.p, r.p, a0.np), dm = mt_test_bits_differ(f.m, r.m, a0.ns);
    size_t dv = mt_test_bits_differ(f.v, r.v, a0.ns), dg = mt_test_bits_differ(f.g, a0.g, a0.np);
    size_t gaps = gaps_touched(f.p, a0.np, a0.p_off, a0.n) +
                  gaps_touched(f.m, a0.ns, a0.s_off, a0.n) +
                  gaps_touched(f.v, a0.ns, a0.s_off, a0.n);
    size_t moved = 0; /* state elements the steps left as they were: none (m *= beta1 at least) */
    for (int i = 0; i < NSEG; i++)
        moved += a0.n[i] - mt_test_bits_differ(f.m + a0.s_off[i], a0.m + a0.s_off[i], a0.n[i]);
    printf("adamw_multi gscale %-4g%s 3 steps: p/m/v elements differing bitwise %zu/%zu/%zu, "
           "gap elements touched %zu, m unchanged %zu\n",
           gscale, bad ? " (NaN/Inf g)" : "", dp, dm, dv, gaps, moved);
    CHECK(dp == 0 && dm == 0 && dv == 0,
          "adamw_multi (gscale %g) vs scale + adamw_update: %zu p, %zu m, %zu v elements differ "
          "(max |dp| %.3e)",
          gscale, dp, dm, dv, mt_test_max_abs_diff(f.p, r.p, a0.np));
    CHECK(gaps == 0, "adamw_multi wrote %zu elements between segments", gaps);
    CHECK(dg == 0, "adamw_multi changed %zu gradient elements", dg);
    CHECK(moved == 0, "adamw_multi left %zu moments unchanged (not written?)", moved);
    aw_free(&a0), aw_free(&r), aw_free(&f);
}

static void check_adamw_threads(void) {
    aw_set a0, f[3];
    aw_init(&a0, 0);
    for (int k = 0; k < 3; k++) {
        f[k] = aw_copy(&a0);
        omp_set_num_threads(k + 1);
        aw_step_fused(&f[k], 0.37f, 1);
    }
    omp_set_num_threads(2);
    for (int k = 1; k < 3; k++) {
        size_t d = mt_test_bits_differ(f[k].p, f[0].p, a0.np) +
                   mt_test_bits_differ(f[k].m, f[0].m, a0.ns) +
                   mt_test_bits_differ(f[k].v, f[0].v, a0.ns);
        printf("adamw_multi %d vs 1 threads: %zu elements differ\n", k + 1, d);
        CHECK(d == 0, "adamw_multi at %d threads: %zu elements differ from 1 thread", k + 1, d);
    }
    for (int k = 0; k < 3; k++) aw_free(&f[k]);
    aw_free(&a0);
}

int main(void) {
    be = mt_backend_cpu();
    omp_set_num_threads(2);
    static const int shapes[][2] = {{1, 2}, {3, 7}, {17, 257}, {64, 1000}, {4, 50257}};
    for (int i = 0; i < 5; i++)
        check_xent_random("random [-3,3)", shapes[i][0], shapes[i][1], -3, 3, 0, 100 + 2 * i);
    for (int i = 1; i < 5; i++)
        check_xent_random("large [-80,80)", shapes[i][0], shapes[i][1], -80, 80, 0, 110 + 2 * i);
    check_xent_random("ties (steps of 0.5)", 17, 257, -2, 2, 0.5f, 120);
    check_xent_random("ties (steps of 0.5)", 64, 1000, -2, 2, 0.5f, 122);
    check_xent_ties(7);
    check_xent_ties(21);
    check_xent_ties(40);
    check_xent_extreme();
    check_xent_grad(6, 5);
    check_xent_grad(3, 37);
    check_xent_threads(67, 1000);
    check_xent_threads(1031, 40); /* many rows: a loss sum in another order shows */
    check_xent_threads(5, 50257);
    check_adamw(1.0f, 0);
    check_adamw(0.37f, 0);
    check_adamw(0.0f, 1);
    check_adamw_threads();
    return mt_test_finish("xent_adamw");
}
