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
 *     back bitwise the fp32 results;
 *   - the bf16 path (kernels/cpu/sbgemm_cpu.h): which one this process took
 *     and why; MPITRAIN_CPU_SBGEMM with a bad value is exit 2 and one error
 *     line. On the sbgemm path (ctest test_backend_bf16_on forces it):
 *     products at many shapes (square, thin, K = 1, M = 1, N = 1, every
 *     transpose pair, padded leads, beta 0 over a NaN C, beta 1, alpha != 1)
 *     against a double reference of the bf16-rounded operands and against
 *     the emulation, bitwise the same at 1, 2 and 3 threads, one kernel
 *     call per tile of the emulation's plan. Where the OpenBLAS loaded has
 *     no cblas_sbgemm (Debian 12's), the path runs on a stand-in kernel of
 *     this file's (fp32 sums in k order), which tests everything but
 *     OpenBLAS's own kernel; it says so. On the emulation path (auto here,
 *     or off) the bitwise checks above are the emulation's.
 *   - times (printed, not checked): fp32, the emulation and the sbgemm path
 *     at the GPT bench's 1024 x 768 x 256.
 */
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/rng.h"
#include "kernels/backend.h"
#include "kernels/backends.h"
#include "kernels/bf16.h"
#include "kernels/cpu/sbgemm_cpu.h"
#include "test_util.h"

#define BF16_MIN_ERR 1e-5 /* bf16 vs fp32: at least this (the mode changes something) */
#define BF16_MAX_ERR 1e-2 /* and at most this (test_backend_cmp's bf16 tolerance) */
#define REF_TOL      1e-5 /* bf16 op vs double reference with the same bf16 factors */
#define REF_TOL_DSC  1e-4 /* the same where the reference rounds its own d(scores) */
#define SB_EMU_TOL   1e-6 /* sbgemm vs the emulation: only the fp32 sums' order differs */

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
            /* the emulation is sgemm on pre-rounded operands; sbgemm sums in another order */
            if (!mt_cpu_bf16_native())
                CHECK(same(cbf, cref, nc),
                      "matmul ta%d tb%d: bf16 differs from fp32 on pre-rounded operands (%.2e)", ta,
                      tb, mt_test_nerr(cbf, cref, nc));
            else
                CHECK(mt_test_nerr(cbf, cref, nc) <= SB_EMU_TOL,
                      "matmul ta%d tb%d: sbgemm vs fp32 on pre-rounded operands %.2e > %.0e", ta,
                      tb, mt_test_nerr(cbf, cref, nc), SB_EMU_TOL);
            CHECK(same(cbf, cbf4, nc), "matmul ta%d tb%d: bf16 with 4 threads differs from 1", ta,
                  tb);
            CHECK(same(cback, c32, nc),
                  "matmul ta%d tb%d: fp32 after set_precision(0) differs from fp32 before", ta, tb);
            double e = mt_test_nerr(cbf, c32, nc);
            CHECK(e > BF16_MIN_ERR && e < BF16_MAX_ERR,
                  "matmul ta%d tb%d: bf16 vs fp32 normalized error %.2e outside (%.0e, %.0e)", ta,
                  tb, e, BF16_MIN_ERR, BF16_MAX_ERR);
            printf(
                "  matmul ta%d tb%d: bf16 = fp32(pre-rounded) bitwise: %s (%.2e); vs fp32 %.2e\n",
                ta, tb, same(cbf, cref, nc) ? "yes" : "no", mt_test_nerr(cbf, cref, nc), e);
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

/* ---- the bf16 path: emulation or cblas_sbgemm (kernels/cpu/sbgemm_cpu.h) ---- */

/* A stand-in for cblas_sbgemm where the OpenBLAS loaded has none: row-major
 * C = alpha op(A) op(B) + beta C over bf16 bit patterns, each element's
 * products summed in fp32 in k order (one lane of an AVX512-BF16 kernel
 * sums so), C not read when beta is 0 (BLAS). It checks the path around the
 * kernel, not OpenBLAS's kernel. standin_noop: return at once (timing the
 * path without a kernel). */
static long standin_calls;
static int standin_noop;

static void standin_sbgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb,
                           blasint M, blasint N, blasint K, float alpha, const bfloat16 *A,
                           blasint lda, const bfloat16 *B, blasint ldb, float beta, float *C,
                           blasint ldc) {
#pragma omp atomic
    standin_calls++;
    if (standin_noop) return;
    if (order != CblasRowMajor) abort();
    for (blasint i = 0; i < M; i++)
        for (blasint j = 0; j < N; j++) {
            float acc = 0.0f;
            for (blasint k = 0; k < K; k++) {
                uint16_t a = ta == CblasTrans ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                uint16_t b = tb == CblasTrans ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                acc += mt_bf16_value(a) * mt_bf16_value(b);
            }
            float *c = C + (size_t)i * ldc + j;
            *c = beta == 0.0f ? alpha * acc : alpha * acc + beta * *c;
        }
}

/* MPITRAIN_CPU_SBGEMM with a bad value: the check says why; a process whose
 * first bf16 call meets it prints one error line and exits 2. Runs first,
 * before this process chooses its own path (the child does the choosing). */
static void test_env_bad(void) {
    const char *keep = getenv("MPITRAIN_CPU_SBGEMM");
    char *saved = keep ? strdup(keep) : NULL, why[512] = "";
    setenv("MPITRAIN_CPU_SBGEMM", "fast", 1);
    int rc = mt_backend_cpu_bf16_check(why, sizeof why);
    CHECK(rc < 0 && strstr(why, "MPITRAIN_CPU_SBGEMM") && strstr(why, "auto, on or off"),
          "MPITRAIN_CPU_SBGEMM=fast: check returned %d, '%s'", rc, why);
    const char *fine[] = {"auto", "off", ""};
    for (int i = 0; i < 3; i++) {
        setenv("MPITRAIN_CPU_SBGEMM", fine[i], 1);
        CHECK(mt_backend_cpu_bf16_check(why, sizeof why) == 0,
              "MPITRAIN_CPU_SBGEMM='%s' refused: %s", fine[i], why);
    }
    int fds[2];
    if (pipe(fds) != 0) abort();
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        setenv("MPITRAIN_CPU_SBGEMM", "fast", 1);
        mt_backend_cpu()->set_precision(1);
        _exit(0); /* not reached: set_precision(1) exits 2 */
    }
    close(fds[1]);
    char err[1024] = "";
    size_t got = 0;
    ssize_t r;
    while (got < sizeof err - 1 && (r = read(fds[0], err + got, sizeof err - 1 - got)) > 0)
        got += (size_t)r;
    err[got] = '\0';
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    int lines = 0;
    for (char *c = err; *c; c++) lines += *c == '\n';
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 2 && lines == 1 &&
              strncmp(err, "mpitrain: error: MPITRAIN_CPU_SBGEMM", 36) == 0,
          "MPITRAIN_CPU_SBGEMM=fast: exit %d, %d stderr lines: %s",
          WIFEXITED(status) ? WEXITSTATUS(status) : -1, lines, err);
    printf("  MPITRAIN_CPU_SBGEMM=fast: exit %d, %d line: %s", WEXITSTATUS(status), lines, err);
    if (saved)
        setenv("MPITRAIN_CPU_SBGEMM", saved, 1);
    else
        unsetenv("MPITRAIN_CPU_SBGEMM");
    free(saved);
}

/* ||a - b|| / ||b|| and max |a - b| over the (M,N) region of lead ld of a;
 * b is a packed (M,N) double reference */
static double region_err(const float *a, int ld, const double *b, int M, int N, double *maxabs) {
    double d = 0, r = 0, mx = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double e = (double)a[(size_t)i * ld + j] - b[(size_t)i * N + j];
            d += e * e;
            r += b[(size_t)i * N + j] * b[(size_t)i * N + j];
            mx = fabs(e) > mx || isnan(e) ? fabs(e) : mx;
        }
    *maxabs = mx;
    return r > 0 ? sqrt(d / r) : sqrt(d);
}

/* alpha op(Ar) op(Br) + beta C0 in double (C0 not read when beta is 0) */
static double *ref_matmul(int ta, int tb, int M, int N, int K, float alpha, const float *Ar,
                          int lda, const float *Br, int ldb, float beta, const float *C0, int ldc) {
    double *ref = malloc((size_t)M * N * sizeof *ref);
    if (!ref) abort();
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double acc = 0;
            for (int k = 0; k < K; k++)
                acc += (double)(ta ? Ar[(size_t)k * lda + i] : Ar[(size_t)i * lda + k]) *
                       (double)(tb ? Br[(size_t)j * ldb + k] : Br[(size_t)k * ldb + j]);
            ref[(size_t)i * N + j] =
                alpha * acc + (beta != 0.0f ? (double)beta * C0[(size_t)i * ldc + j] : 0.0);
        }
    return ref;
}

typedef struct {
    const char *what;
    int M, N, K;
    float alpha, beta;
    int pad; /* added to every lead */
} sb_shape;

static const sb_shape sb_shapes[] = {
    {"square", 192, 192, 192, 1.0f, 0.0f, 0},
    {"square, 4 tiles, padded", 256, 256, 256, 0.7f, 0.3f, 5},
    {"2 row tiles (600x229x700)", 600, 229, 700, -1.5f, 1.0f, 3},
    {"4 column tiles", 64, 512, 256, 0.7f, 0.3f, 2},
    {"2 x 2 tiles", 128, 512, 256, 1.0f, 1.0f, 1},
    {"thin M", 600, 7, 300, 1.0f, 1.0f, 1},
    {"thin N", 5, 400, 333, 2.0f, 0.0f, 2},
    {"K = 1", 100, 90, 1, 0.5f, 1.0f, 4},
    {"M = 1", 1, 513, 257, 1.0f, 0.0f, 3},
    {"N = 1", 300, 1, 129, -0.25f, 1.0f, 0},
};

/* One shape and transpose pair on the sbgemm path: against the double
 * reference and the emulation (fp32 sgemm on pre-rounded operands, which
 * the off/auto runs prove bitwise equal to it), inputs and C's padding
 * untouched, bitwise equal at 1, 2 and 3 threads, one kernel call per tile
 * (stand-in only). Returns the error against the emulation. */
static double sb_case(const sb_shape *sh, int ta, int tb, double *max_emu) {
    int M = sh->M, N = sh->N, K = sh->K;
    int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
    int lda = ac + sh->pad, ldb = bc + sh->pad, ldc = N + sh->pad;
    size_t na = (size_t)ar * lda, nb = (size_t)br * ldb, nc = (size_t)M * ldc;
    float *A = rnd_padded(ar, ac, lda), *B = rnd_padded(br, bc, ldb), *C0 = rnd(nc, -1, 1);
    if (sh->beta == 0.0f)
        for (size_t i = 0; i < nc; i++) C0[i] = NAN; /* beta 0: C must not be read */
    float *A0 = mt_test_copy(A, na), *B0 = mt_test_copy(B, nb);
    float *Ar = rounded(A, na), *Br = rounded(B, nb);
    float *c[3] = {mt_test_copy(C0, nc), mt_test_copy(C0, nc), mt_test_copy(C0, nc)};
    float *cemu = mt_test_copy(C0, nc);

    be->set_precision(1);
    long calls0 = standin_calls;
    for (int t = 0; t < 3; t++) {
        omp_set_num_threads(t + 1);
        be->matmul(ta, tb, M, N, K, sh->alpha, A, lda, B, ldb, sh->beta, c[t], ldc);
        if (t == 0) calls0 = standin_calls - calls0;
    }
    omp_set_num_threads(1);
    be->set_precision(0);
    be->matmul(ta, tb, M, N, K, sh->alpha, Ar, lda, Br, ldb, sh->beta, cemu, ldc);

    double *ref = ref_matmul(ta, tb, M, N, K, sh->alpha, Ar, lda, Br, ldb, sh->beta, C0, ldc);
    double *emu = malloc((size_t)M * N * sizeof *emu);
    if (!emu) abort();
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) emu[(size_t)i * N + j] = cemu[(size_t)i * ldc + j];
    double max_ref, e_ref = region_err(c[0], ldc, ref, M, N, &max_ref);
    double e_emu = region_err(c[0], ldc, emu, M, N, max_emu);
    int pad_kept = 1;
    for (int i = 0; i < M; i++)
        for (int j = N; j < ldc; j++)
            pad_kept &= bits(c[0][(size_t)i * ldc + j]) == bits(C0[(size_t)i * ldc + j]);
    CHECK(same(A, A0, na) && same(B, B0, nb), "sbgemm %s ta%d tb%d: inputs changed", sh->what, ta,
          tb);
    CHECK(pad_kept, "sbgemm %s ta%d tb%d: C's padding past N written", sh->what, ta, tb);
    CHECK(e_ref <= REF_TOL, "sbgemm %s ta%d tb%d: vs double reference %.2e > %.0e (max %.2e)",
          sh->what, ta, tb, e_ref, REF_TOL, max_ref);
    CHECK(e_emu <= SB_EMU_TOL, "sbgemm %s ta%d tb%d: vs emulation %.2e > %.0e (max %.2e)", sh->what,
          ta, tb, e_emu, SB_EMU_TOL, *max_emu);
    CHECK(same(c[0], c[1], nc) && same(c[0], c[2], nc),
          "sbgemm %s ta%d tb%d: 2 or 3 threads differ from 1", sh->what, ta, tb);
    if (!mt_cpu_sbgemm_loaded()) { /* the stand-in counts its calls: one per tile */
        int tm, tn;
        mt_cpu_tile_plan(M, N, K, &tm, &tn);
        long tiles = (long)((M + tm - 1) / tm) * ((N + tn - 1) / tn);
        CHECK(calls0 == tiles, "sbgemm %s ta%d tb%d: %ld kernel calls, the plan has %ld tiles",
              sh->what, ta, tb, calls0, tiles);
    }
    printf("  sbgemm %-24s ta%d tb%d: vs ref %.2e (max %.1e), vs emulation %.2e (max %.1e); "
           "%ld call(s); 1 = 2 = 3 threads: %s\n",
           sh->what, ta, tb, e_ref, max_ref, e_emu, *max_emu, calls0,
           same(c[0], c[1], nc) && same(c[0], c[2], nc) ? "yes" : "no");
    float *all[] = {A, B, C0, A0, B0, Ar, Br, c[0], c[1], c[2], cemu};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
    free(ref), free(emu);
    return e_emu;
}

static void test_sbgemm(void) {
    double worst = 0, worst_max = 0;
    for (size_t s = 0; s < sizeof sb_shapes / sizeof sb_shapes[0]; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                double mx, e = sb_case(&sb_shapes[s], ta, tb, &mx);
                worst = e > worst ? e : worst;
                worst_max = mx > worst_max ? mx : worst_max;
            }
    printf("  sbgemm vs emulation over all shapes: normalized error at most %.2e, max abs %.2e\n",
           worst, worst_max);
}

/* best of 5 of one product C(M,N) = A(M,K) B(K,N), in ms */
static double time_matmul(int M, int N, int K, const float *A, const float *B, float *C) {
    double best = 1e30;
    for (int r = 0; r < 5; r++) {
        double t0 = mt_test_now();
        be->matmul(0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, C, N);
        double t = mt_test_now() - t0;
        best = t < best ? t : best;
    }
    return 1e3 * best;
}

/* Times at the GPT bench's 1024 x 768 x 256, 1 and 2 threads: fp32, sgemm
 * on pre-rounded operands (the emulation less its rounding), and bf16 mode
 * on this process's path; with the stand-in kernel the path is timed with a
 * kernel that returns at once (its rounding into bf16 copies alone), since
 * the stand-in is no OpenBLAS. Printed, not checked. */
static void test_timing(void) {
    int M = 1024, N = 768, K = 256;
    float *A = rnd((size_t)M * K, -1, 1), *B = rnd((size_t)K * N, -1, 1);
    float *Ar = rounded(A, (size_t)M * K), *Br = rounded(B, (size_t)K * N);
    float *C = rnd((size_t)M * N, -1, 1);
    int standin = mt_cpu_bf16_native() && !mt_cpu_sbgemm_loaded();
    double gflop = 2e-9 * M * N * K;
    for (int t = 1; t <= 2; t++) {
        omp_set_num_threads(t);
        double f32 = time_matmul(M, N, K, A, B, C), pre = time_matmul(M, N, K, Ar, Br, C);
        be->set_precision(1);
        standin_noop = standin;
        double bf = time_matmul(M, N, K, A, B, C);
        standin_noop = 0;
        be->set_precision(0);
        printf("  time %dx%dx%d, %d thread(s): fp32 %.2f ms (%.1f GFLOP/s), sgemm on pre-rounded "
               "%.2f ms; bf16 mode (%s) %.2f ms%s\n",
               M, N, K, t, f32, gflop / f32 * 1e3, pre,
               mt_cpu_bf16_native() ? "sbgemm" : "emulated", bf,
               standin ? " (stand-in kernel returning at once: the bf16 copies alone)" : "");
    }
    omp_set_num_threads(1);
    free(A), free(B), free(Ar), free(Br), free(C);
}

/* What MPITRAIN_CPU_SBGEMM = auto picks on this machine, and why; the path
 * this process took is the one its setting asks for */
static void check_path(const char *env) {
    int cpu = 0, lib = mt_cpu_sbgemm_loaded();
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    cpu = __builtin_cpu_supports("avx512bf16") != 0;
#endif
    printf("  auto on this machine: %s (the CPU %s AVX512-BF16; the OpenBLAS loaded %s "
           "cblas_sbgemm)\n",
           cpu && lib ? "sbgemm" : "emulated", cpu ? "has" : "has no", lib ? "has" : "has no");
    int want = env && strcmp(env, "on") == 0 ? 1 : env && strcmp(env, "off") == 0 ? 0 : cpu && lib;
    CHECK(mt_cpu_bf16_native() == want, "MPITRAIN_CPU_SBGEMM=%s took the %s path", env ? env : "",
          mt_cpu_bf16_native() ? "sbgemm" : "emulated");
}

int main(void) {
    test_env_bad(); /* first: its child process makes the choice, this one has not yet */
    be = mt_backend_cpu();
    omp_set_num_threads(1);
    const char *env = getenv("MPITRAIN_CPU_SBGEMM");
    if (env && strcmp(env, "on") == 0 && !mt_cpu_sbgemm_loaded()) {
        mt_cpu_sbgemm_use(standin_sbgemm);
        printf("the OpenBLAS loaded has no cblas_sbgemm: the sbgemm path runs on this test's "
               "stand-in kernel (OpenBLAS's own kernel is not tested here)\n");
    }
    CHECK(be->host_memory == 1 && be->set_precision != NULL,
          "cpu backend: host_memory %d, set_precision %s", be->host_memory,
          be->set_precision ? "set" : "NULL");
    if (!be->set_precision) return mt_test_finish("backend_bf16");
    printf("CPU bf16 matmul mode (bf16 operands, fp32 accumulation):\n");
    printf("  path: %s\n", mt_cpu_bf16_path());
    check_path(env);
    test_round();
    test_matmul();
    if (mt_cpu_bf16_native())
        test_sbgemm();
    else
        printf("  sbgemm checks: not on this path (ctest test_backend_bf16_on forces it)\n");
    test_attention();
    test_timing();
    return mt_test_finish("backend_bf16");
}
