/*
 * test_backend_bf16.c - the CPU backend's bf16 matmul mode (set_precision in
 * kernels/backend.h), the reference the CUDA bf16 path is compared with
 * (tests/test_backend_cmp.c). Needs no GPU:
 *   - mt_bf16_round (kernels/bf16.h) on known values, and against an
 *     independent nearest-value search on random bit patterns;
 *   - bf16 matmul equals the fp32 matmul (the same sgemm tiles) on
 *     pre-rounded operands, bitwise (every transpose pair, odd sizes, padded
 *     leads);
 *   - attention in bf16 against a double reference whose every product has
 *     bf16 factors, and the att it returns equals the fp32 forward on
 *     pre-rounded qkv, bitwise;
 *   - bf16 really changes results (normalized error vs fp32 in (1e-5, 1e-2));
 *   - results do not depend on the thread count; set_precision(0) gives
 *     back bitwise the fp32 results.
 */
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "kernels/backend.h"
#include "kernels/bf16.h"
#include "test_util.h"

#define BF16_MIN_ERR 1e-5 /* bf16 vs fp32: at least this (the mode changes something) */
#define BF16_MAX_ERR 1e-2 /* and at most this (test_backend_cmp's bf16 tolerance) */
#define REF_TOL      1e-5 /* bf16 op vs double reference with the same bf16 factors */
#define REF_TOL_DSC  1e-4 /* the same where the reference rounds its own d(scores) */

static const mt_backend *be;
static uint64_t draw;

static uint32_t bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static float from_bits(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

static float *rnd(size_t n, float lo, float hi) {
    float *x = malloc((n ? n : 1) * sizeof *x);
    if (!x) abort();
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * mt_rng_uniform(5, 3, draw++);
    return x;
}

static float *rounded(const float *x, size_t n) {
    float *y = mt_test_copy(x, n);
    for (size_t i = 0; i < n; i++) y[i] = mt_bf16_round(y[i]);
    return y;
}

static int same(const float *a, const float *b, size_t n) {
    return memcmp(a, b, n * sizeof *a) == 0;
}

/* ---- rounding ---- */

/* Nearest bf16 to finite x by search: the two bf16 values around x (the
 * truncation and the next one out), the nearer one, on a tie the one with
 * an even last bit; the value past the largest bf16 stands for 2^128, which
 * IEEE rounding turns into Inf. Independent of mt_bf16_round's bit trick. */
static float ref_round(float x) {
    uint32_t lo = bits(x) & 0xffff0000u, hi = lo + 0x10000u;
    double a = from_bits(lo), sign = x < 0 ? -1.0 : 1.0;
    double b = (hi & 0x7fffffffu) == 0x7f800000u ? sign * ldexp(1.0, 128) : from_bits(hi);
    double da = fabs((double)x - a), db = fabs(b - (double)x);
    if (da < db || (da == db && !((lo >> 16) & 1u))) return from_bits(lo);
    return from_bits(hi);
}

static void check_round(const char *what, float x, float want) {
    float got = mt_bf16_round(x);
    CHECK(bits(got) == bits(want), "bf16 round %s: %.9g (0x%08x) -> 0x%08x, want 0x%08x", what,
          (double)x, bits(x), bits(got), bits(want));
}

static void test_round(void) {
    float e8 = ldexpf(1, -8), e9 = ldexpf(1, -9);
    check_round("1", 1.0f, 1.0f);
    check_round("1 + 2^-9 (below half: down)", 1 + e9, 1.0f);
    check_round("1 + 2^-8 (tie: to even 1)", 1 + e8, 1.0f);
    check_round("1 + 3*2^-9 (above half: up)", 1 + 3 * e9, 1 + ldexpf(1, -7));
    check_round("1 + 3*2^-8 (tie: to even 1 + 2^-6)", 1 + 3 * e8, 1 + ldexpf(1, -6));
    check_round("-(1 + 2^-8)", -(1 + e8), -1.0f);
    check_round("-(1 + 3*2^-9)", -(1 + 3 * e9), -(1 + ldexpf(1, -7)));
    check_round("pi", 3.14159265f, 3.140625f);
    check_round("-pi", -3.14159265f, -3.140625f);
    check_round("2 - 2^-9 (up into the next exponent)", 2 - e9, 2.0f);
    check_round("0", 0.0f, 0.0f);
    check_round("-0", -0.0f, -0.0f);
    check_round("subnormal tie 0x00008000 (to even 0)", from_bits(0x00008000u), 0.0f);
    check_round("subnormal tie 0x00018000 (to even)", from_bits(0x00018000u),
                from_bits(0x00020000u));
    check_round("subnormal 0x00017fff", from_bits(0x00017fffu), from_bits(0x00010000u));
    check_round("largest below the overflow midpoint", from_bits(0x7f7f7fffu),
                from_bits(0x7f7f0000u));
    check_round("overflow midpoint (tie: to even, Inf)", from_bits(0x7f7f8000u), INFINITY);
    check_round("FLT_MAX (past the midpoint: Inf)", FLT_MAX, INFINITY);
    check_round("-FLT_MAX", -FLT_MAX, -INFINITY);
    check_round("Inf", INFINITY, INFINITY);
    check_round("-Inf", -INFINITY, -INFINITY);
    /* NaN stays NaN, quiet and representable in bf16 (low 16 bits 0), sign
     * kept, even when its payload sits only in the low bits (signalling
     * 0x7f800001: a plain rounding would make it Inf) */
    uint32_t nans[] = {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xff800001u, 0x7fffffffu};
    for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++) {
        float r = mt_bf16_round(from_bits(nans[i]));
        CHECK(isnan(r) && (bits(r) & 0xffffu) == 0 && (bits(r) >> 31) == (nans[i] >> 31),
              "bf16 round NaN 0x%08x -> 0x%08x, want a bf16 NaN of the same sign", nans[i],
              bits(r));
    }
    /* random bit patterns over every exponent, and every low half of a few
     * high halves (all the ties and carries), against the search */
    long bad = 0, n = 0;
    for (uint64_t i = 0; i < 2000000; i++, n++) {
        float x = from_bits((uint32_t)mt_rng_u64(5, 4, i));
        if (isnan(x)) continue;
        if (bits(mt_bf16_round(x)) != bits(ref_round(x)) && bad++ < 5)
            printf("  mismatch: 0x%08x -> 0x%08x, search 0x%08x\n", bits(x), bits(mt_bf16_round(x)),
                   bits(ref_round(x)));
    }
    uint32_t highs[] = {0x3f80u, 0x3f81u, 0xbf80u, 0x7f7fu, 0xff7fu, 0x0000u, 0x0001u, 0x407fu};
    for (size_t h = 0; h < sizeof highs / sizeof highs[0]; h++)
        for (uint32_t low = 0; low < 0x10000u; low++, n++) {
            float x = from_bits(highs[h] << 16 | low);
            if (bits(mt_bf16_round(x)) != bits(ref_round(x)) && bad++ < 5)
                printf("  mismatch: 0x%08x -> 0x%08x, search 0x%08x\n", bits(x),
                       bits(mt_bf16_round(x)), bits(ref_round(x)));
        }
    CHECK(bad == 0, "bf16 round: %ld of %ld values differ from the nearest-value search", bad, n);
    printf("  bf16 rounding: known values, and %ld values against the search: %ld differ\n", n,
           bad);
}

/* ---- matmul ---- */

/* (rows, cols) with lead ld, padding NaN: a read past cols poisons C */
static float *rnd_padded(int rows, int cols, int ld) {
    return mt_test_nan_pad(rnd((size_t)rows * ld, -1, 1), rows, cols, ld);
}

static void test_matmul(void) {
    int M = 600, N = 229, K = 700; /* two matmul tiles (backend_cpu.c's plan) */
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
            int lda = ac + 3, ldb = bc + 5, ldc = N + 2;
            size_t na = (size_t)ar * lda, nb = (size_t)br * ldb, nc = (size_t)M * ldc;
            float *A = rnd_padded(ar, ac, lda), *B = rnd_padded(br, bc, ldb), *C0 = rnd(nc, -1, 1);
            float *A0 = mt_test_copy(A, na), *B0 = mt_test_copy(B, nb);
            float *Ar = rounded(A, na), *Br = rounded(B, nb);
            float *c32 = mt_test_copy(C0, nc), *cbf = mt_test_copy(C0, nc),
                  *cref = mt_test_copy(C0, nc);
            float *cbf4 = mt_test_copy(C0, nc), *cback = mt_test_copy(C0, nc);

            be->matmul(ta, tb, M, N, K, 0.7f, A, lda, B, ldb, 0.3f, c32, ldc);
            be->set_precision(1);
            be->matmul(ta, tb, M, N, K, 0.7f, A, lda, B, ldb, 0.3f, cbf, ldc);
            omp_set_num_threads(4);
            be->matmul(ta, tb, M, N, K, 0.7f, A, lda, B, ldb, 0.3f, cbf4, ldc);
            omp_set_num_threads(1);
            be->set_precision(0);
            be->matmul(ta, tb, M, N, K, 0.7f, A, lda, B, ldb, 0.3f, cback, ldc);
            be->matmul(ta, tb, M, N, K, 0.7f, Ar, lda, Br, ldb, 0.3f, cref, ldc);

            CHECK(same(A, A0, na) && same(B, B0, nb),
                  "matmul ta%d tb%d: bf16 mode changed its inputs", ta, tb);
            CHECK(same(cbf, cref, nc),
                  "matmul ta%d tb%d: bf16 differs from fp32 on pre-rounded operands (%.2e)", ta, tb,
                  mt_test_nerr(cbf, cref, nc));
            CHECK(same(cbf, cbf4, nc), "matmul ta%d tb%d: bf16 with 4 threads differs from 1", ta,
                  tb);
            CHECK(same(cback, c32, nc),
                  "matmul ta%d tb%d: fp32 after set_precision(0) differs from fp32 before", ta, tb);
            double e = mt_test_nerr(cbf, c32, nc);
            CHECK(e > BF16_MIN_ERR && e < BF16_MAX_ERR,
                  "matmul ta%d tb%d: bf16 vs fp32 normalized error %.2e outside (%.0e, %.0e)", ta,
                  tb, e, BF16_MIN_ERR, BF16_MAX_ERR);
            printf("  matmul ta%d tb%d: bf16 = fp32(pre-rounded) bitwise: %s; vs fp32 %.2e\n", ta,
                   tb, same(cbf, cref, nc) ? "yes" : "no", e);
            float *all[] = {A, B, C0, A0, B0, Ar, Br, c32, cbf, cref, cbf4, cback};
            for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
        }
}

/* ---- attention ---- */

enum { AB = 2, AT = 75, AC = 48, ANH = 4 }; /* T > the CPU's 64-row blocks: two of them */
#define AHS (AC / ANH)

/* Double reference of attention with bf16 factors in every product (r() on
 * both), from the op's own fp32 att (so the softmax is not re-derived):
 * out = r(att) r(v); datt = r(dout) r(v)^T; dsc = att (datt - rowdot) scale;
 * dq = r(dsc) r(k), dk = r(dsc)^T r(q), dv = r(att)^T r(dout).
 * dqkv (B,T,3C) and out (B,T,C) in double. */
static void attention_ref(double *out, double *dqkv, const float *qkv, const float *att,
                          const float *dout) {
    int C3 = 3 * AC;
    float scale = 1.0f / sqrtf((float)AHS);
    float *rs = malloc((size_t)AT * AT * sizeof *rs);
    double *datt = malloc((size_t)AT * AT * sizeof *datt);
    if (!rs || !datt) abort();
    for (int b = 0; b < AB; b++)
        for (int h = 0; h < ANH; h++) {
            const float *q = qkv + (size_t)b * AT * C3 + h * AHS, *k = q + AC, *v = q + 2 * AC;
            const float *a = att + ((size_t)b * ANH + h) * AT * AT;
            const float *dr = dout + (size_t)b * AT * AC + h * AHS;
            double *o = out + (size_t)b * AT * AC + h * AHS;
            double *dq = dqkv + (size_t)b * AT * C3 + h * AHS, *dk = dq + AC, *dv = dq + 2 * AC;
#define R(x) ((double)mt_bf16_round(x))
            for (int t = 0; t < AT; t++)
                for (int d = 0; d < AHS; d++) {
                    double s = 0;
                    for (int u = 0; u <= t; u++) s += R(a[t * AT + u]) * R(v[u * C3 + d]);
                    o[t * AC + d] = s;
                }
            for (int t = 0; t < AT; t++) {
                double rowdot = 0;
                for (int u = 0; u <= t; u++) {
                    double s = 0;
                    for (int d = 0; d < AHS; d++) s += R(dr[t * AC + d]) * R(v[u * C3 + d]);
                    datt[t * AT + u] = s;
                    rowdot += a[t * AT + u] * s;
                }
                for (int u = 0; u <= t; u++)
                    rs[t * AT + u] =
                        mt_bf16_round((float)(a[t * AT + u] * (datt[t * AT + u] - rowdot) * scale));
            }
            for (int t = 0; t < AT; t++)
                for (int d = 0; d < AHS; d++) {
                    double s = 0;
                    for (int u = 0; u <= t; u++) s += rs[t * AT + u] * R(k[u * C3 + d]);
                    dq[t * C3 + d] = s;
                }
            for (int u = 0; u < AT; u++)
                for (int d = 0; d < AHS; d++) {
                    double sk = 0, sv = 0;
                    for (int t = u; t < AT; t++) {
                        sk += rs[t * AT + u] * R(q[t * C3 + d]);
                        sv += R(a[t * AT + u]) * R(dr[t * AC + d]);
                    }
                    dk[u * C3 + d] = sk;
                    dv[u * C3 + d] = sv;
                }
#undef R
        }
    free(rs), free(datt);
}

/* The d{q,k,v} third of dqkv (B,T,3C) as a packed (B*T, C) copy */
static void third(float *dst, const float *dqkv, int which) {
    for (int r = 0; r < AB * AT; r++)
        memcpy(dst + (size_t)r * AC, dqkv + (size_t)r * 3 * AC + which * AC, AC * sizeof *dst);
}

static void third_d(double *dst, const double *dqkv, int which) {
    for (int r = 0; r < AB * AT; r++)
        memcpy(dst + (size_t)r * AC, dqkv + (size_t)r * 3 * AC + which * AC, AC * sizeof *dst);
}

static void test_attention(void) {
    size_t nq = (size_t)AB * AT * 3 * AC, no = (size_t)AB * AT * AC,
           na = (size_t)AB * ANH * AT * AT;
    float *qkv = rnd(nq, -2, 2), *dout = rnd(no, -1, 1), *qkvr = rounded(qkv, nq);
    float *o32 = rnd(no, 0, 1), *a32 = rnd(na, 0, 1), *obf = rnd(no, 0, 1), *abf = rnd(na, 0, 1);
    float *o4 = rnd(no, 0, 1), *a4 = rnd(na, 0, 1), *ob = rnd(no, 0, 1), *ab = rnd(na, 0, 1);
    float *ar = rnd(na, 0, 1), *orr = rnd(no, 0, 1), *scr = rnd(na, 0, 1);
    float *g32 = rnd(nq, 0, 1), *gbf = rnd(nq, 0, 1), *g4 = rnd(nq, 0, 1), *gb = rnd(nq, 0, 1);

    be->attention_forward(o32, a32, qkv, AB, AT, AC, ANH);
    be->attention_backward(g32, scr, dout, qkv, a32, AB, AT, AC, ANH);
    be->attention_forward(orr, ar, qkvr, AB, AT, AC, ANH); /* fp32 on pre-rounded qkv */
    be->set_precision(1);
    be->attention_forward(obf, abf, qkv, AB, AT, AC, ANH);
    be->attention_backward(gbf, scr, dout, qkv, abf, AB, AT, AC, ANH);
    omp_set_num_threads(3);
    be->attention_forward(o4, a4, qkv, AB, AT, AC, ANH);
    be->attention_backward(g4, scr, dout, qkv, abf, AB, AT, AC, ANH);
    omp_set_num_threads(1);
    be->set_precision(0);
    be->attention_forward(ob, ab, qkv, AB, AT, AC, ANH);
    be->attention_backward(gb, scr, dout, qkv, a32, AB, AT, AC, ANH);

    /* the scores product sees bf16 q and k, nothing else changes att */
    CHECK(same(abf, ar, na), "attention bf16: att differs from fp32 on pre-rounded qkv (%.2e)",
          mt_test_nerr(abf, ar, na));
    /* every product has bf16 factors: against the double reference */
    double *oref = malloc(no * sizeof *oref), *gref = malloc(nq * sizeof *gref);
    double *tref = malloc(no * sizeof *tref);
    float *t = malloc(no * sizeof *t);
    if (!oref || !gref || !tref || !t) abort();
    attention_ref(oref, gref, qkv, abf, dout);
    double e = mt_test_nerr_d(obf, oref, no);
    CHECK(e <= REF_TOL, "attention bf16: out vs reference %.2e > %.0e", e, REF_TOL);
    printf("  attention bf16: att = fp32(pre-rounded qkv) bitwise: %s; out vs ref %.2e\n",
           same(abf, ar, na) ? "yes" : "no", e);
    const char *names[] = {"dq", "dk", "dv"};
    double tols[] = {REF_TOL_DSC, REF_TOL_DSC, REF_TOL};
    for (int w = 0; w < 3; w++) {
        third(t, gbf, w);
        third_d(tref, gref, w);
        e = mt_test_nerr_d(t, tref, no);
        CHECK(e <= tols[w], "attention bf16: %s vs reference %.2e > %.0e", names[w], e, tols[w]);
        printf("  attention bf16: %s vs ref %.2e\n", names[w], e);
    }
    /* the mode changes something, not much */
    double eo = mt_test_nerr(obf, o32, no), eg = mt_test_nerr(gbf, g32, nq);
    CHECK(eo > BF16_MIN_ERR && eo < BF16_MAX_ERR && eg > BF16_MIN_ERR && eg < BF16_MAX_ERR,
          "attention: bf16 vs fp32 normalized errors out %.2e, dqkv %.2e outside (%.0e, %.0e)", eo,
          eg, BF16_MIN_ERR, BF16_MAX_ERR);
    printf("  attention bf16 vs fp32: out %.2e, dqkv %.2e\n", eo, eg);
    CHECK(same(obf, o4, no) && same(abf, a4, na) && same(gbf, g4, nq),
          "attention bf16: 3 threads differ from 1");
    CHECK(same(ob, o32, no) && same(ab, a32, na) && same(gb, g32, nq),
          "attention: fp32 after set_precision(0) differs from fp32 before");
    float *all[] = {qkv, dout, qkvr, o32, a32, obf, abf, o4, a4, ob,
                    ab,  ar,   orr,  scr, g32, gbf, g4,  gb, t};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
    free(oref), free(gref), free(tref);
}

int main(void) {
    be = mt_backend_cpu();
    omp_set_num_threads(1);
    CHECK(be->host_memory == 1 && be->set_precision != NULL,
          "cpu backend: host_memory %d, set_precision %s", be->host_memory,
          be->set_precision ? "set" : "NULL");
    if (!be->set_precision) return mt_test_finish("backend_bf16");
    printf("CPU bf16 matmul mode (bf16 operands, fp32 accumulation):\n");
    test_round();
    test_matmul();
    test_attention();
    return mt_test_finish("backend_bf16");
}
