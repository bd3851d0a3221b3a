/*
 * test_matmul_lt.c - the CUDA backend's products with cuBLASLt epilogues
 * (kernels/cuda/matmul_lt.c) run on the host: that file, compiled here for
 * the CPU against the real CUDA headers, linked with a stand-in of the
 * cuBLASLt and runtime functions it calls (tests/cublaslt_standin.c), which
 * keeps every attribute it is given and computes cuBLASLt's column-major
 * product and epilogue in double. Each op is compared with the CPU
 * backend's composition of unfused ops that backend.h specifies it by
 * (tests/matmul_compose.c), normalized error within 1e-5, at several
 * shapes: the GPT's transposes (x W^T forward, dy W backward, dy^T x for
 * the weights), every transpose pair, non-square and odd sizes, leads wider
 * than the rows (the padding must come back untouched), and micro-batch
 * accumulation (the accumulating outputs start random and take two calls).
 *
 * What it catches without a GPU: the row-major to column-major swap, the
 * transposes, lead dimensions, the epilogue chosen and its bias, aux and
 * lead, the bias gradient's accumulation, the alignment preferences, the
 * fallback to the unfused ops (the stand-in's heuristic made to find
 * nothing, and the aux lead rule), leaked descriptors, and the cache of
 * descriptors, layouts and algorithms: one heuristic question per key,
 * each call's own bias and aux pointers, keys that differ in one field
 * alone kept apart (the stand-in rejects an algorithm used for another
 * problem or a less aligned pointer), eviction past the table's size, a
 * cached "no algorithm", and the release. What it cannot:
 * cuBLASLt's own numerics and which epilogues it supports for fp32 (that
 * needs a GPU: tests/test_backend_cmp.c).
 *
 * Runs in fp32 and in bf16 matmul mode (the stand-in rounds the operands
 * to bf16 for CUBLAS_COMPUTE_32F_FAST_16BF, as the CPU's bf16 matmul does),
 * then with no algorithm offered (every op through its fallback).
 *
 * matmul_bf16 (bf16 operands, CUDA_R_16BF layouts) is compared with the
 * CPU backend's, the reference, for each epilogue at the GPT's transposes,
 * every transpose pair, odd sizes, alpha and beta with MT_EPI_NONE (beta 0
 * with a NaN C, which must not be read), a 2-byte aligned operand, K = 0,
 * in both modes and with no algorithm (its operands widened to fp32 for
 * the fp32-operand ops); and the cache keeps fp32 and bf16 operands of one
 * shape apart.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cublaslt_standin.h"
#include "kernels/backend.h"
#include "kernels/cuda/cuda_ops.h"
#include "matmul_compose.h"
#include "test_util.h"

#define TOL 1e-5

static const mt_backend *cpu;
static uint64_t draw;

/* rows x ld floats uniform in [-1, 1), the padding (columns cols..ld) NaN */
static float *rnd(int rows, int cols, int ld) {
    size_t n = (size_t)rows * ld;
    float *x = malloc((n ? n : 1) * sizeof *x);
    mt_test_fill(x, n, 1000 + draw++, -1.0f, 1.0f);
    return mt_test_nan_pad(x, rows, cols, ld);
}

/* (rows, cols) of x and y with lead ld: the normalized error over the
 * matrix; the padding must be bitwise what it was (start) in both */
static void expect(const char *op, const char *what, const float *x, const float *y,
                   const float *start, int rows, int cols, int ld) {
    size_t n = (size_t)rows * cols, bad_pad = 0;
    float *a = malloc((n ? n : 1) * sizeof *a), *b = malloc((n ? n : 1) * sizeof *b);
    for (int r = 0; r < rows; r++) {
        memcpy(a + (size_t)r * cols, x + (size_t)r * ld, (size_t)cols * sizeof *a);
        memcpy(b + (size_t)r * cols, y + (size_t)r * ld, (size_t)cols * sizeof *b);
        if (start)
            for (int c = cols; c < ld; c++) {
                size_t i = (size_t)r * ld + c;
                bad_pad +=
                    memcmp(&x[i], &start[i], sizeof *x) || memcmp(&y[i], &start[i], sizeof *y);
            }
    }
    double e = mt_test_nerr(a, b, n);
    CHECK(e <= TOL, "%s: %s: normalized error %.2e > %.0e", op, what, e, TOL);
    CHECK(bad_pad == 0, "%s: %s: %zu padding elements written", op, what, bad_pad);
    printf("  %-20s %-30s normalized error %.2e\n", op, what, e);
    free(a), free(b);
}

static float *copy(const float *x, size_t n) {
    return mt_test_copy(x, n ? n : 1);
}

/* matmul_bias and matmul_bias_gelu at one shape; pad widens every lead */
static void test_forward(int ta, int tb, int M, int N, int K, int pad) {
    int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
    int lda = ac + pad, ldb = bc + pad, ldc = N + 8 * pad; /* (8: the GELU aux lead rule) */
    float *A = rnd(ar, ac, lda), *B = rnd(br, bc, ldb), *bias = rnd(1, N, N);
    size_t nc = (size_t)M * ldc;
    float *start = rnd(M, N, ldc);
    char what[64];
    snprintf(what, sizeof what, "ta%d tb%d %dx%dx%d ld+%d", ta, tb, M, N, K, pad);
    float *c1 = copy(start, nc), *c2 = copy(start, nc);
    mt_cuda_matmul_bias(ta, tb, M, N, K, A, lda, B, ldb, bias, c1, ldc);
    mt_compose_matmul_bias(cpu, ta, tb, M, N, K, A, lda, B, ldb, bias, c2, ldc);
    expect("matmul_bias", what, c1, c2, start, M, N, ldc);
    float *p1 = copy(start, nc), *p2 = copy(start, nc), *o1 = copy(start, nc),
          *o2 = copy(start, nc);
    mt_cuda_matmul_bias_gelu(ta, tb, M, N, K, A, lda, B, ldb, bias, p1, o1, ldc);
    mt_compose_matmul_bias_gelu(cpu, ta, tb, M, N, K, A, lda, B, ldb, bias, p2, o2, ldc);
    expect("matmul_bias_gelu", what, p1, p2, start, M, N, ldc);
    expect("matmul_bias_gelu", "  (gelu)", o1, o2, start, M, N, ldc);
    float *all[] = {A, B, bias, start, c1, c2, p1, p2, o1, o2};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
}

/* matmul_dgelu with and without db; with db twice (micro-batches) */
static void test_dgelu(int ta, int tb, int M, int N, int K, int pad) {
    int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
    int lda = ac + pad, ldb = bc + pad, ldc = N + 8 * pad;
    float *A = rnd(ar, ac, lda), *B = rnd(br, bc, ldb), *pre = rnd(M, N, ldc);
    for (size_t i = 0; i < (size_t)M * ldc; i++) pre[i] *= 4.0f; /* GELU's curved part */
    size_t nc = (size_t)M * ldc;
    float *start = rnd(M, N, ldc), *db0 = rnd(1, N, N);
    char what[64];
    snprintf(what, sizeof what, "ta%d tb%d %dx%dx%d ld+%d", ta, tb, M, N, K, pad);
    float *d1 = copy(start, nc), *d2 = copy(start, nc);
    mt_cuda_matmul_dgelu(ta, tb, M, N, K, A, lda, B, ldb, pre, d1, NULL, ldc);
    mt_compose_matmul_dgelu(cpu, ta, tb, M, N, K, A, lda, B, ldb, pre, d2, NULL, ldc);
    expect("matmul_dgelu", what, d1, d2, start, M, N, ldc);
    float *b1 = copy(db0, (size_t)N), *b2 = copy(db0, (size_t)N);
    for (int mb = 0; mb < 2; mb++) { /* db accumulates over two micro-batches */
        mt_cuda_matmul_dgelu(ta, tb, M, N, K, A, lda, B, ldb, pre, d1, b1, ldc);
        mt_compose_matmul_dgelu(cpu, ta, tb, M, N, K, A, lda, B, ldb, pre, d2, b2, ldc);
        A[0] += 0.25f; /* (another micro-batch) */
    }
    expect("matmul_dgelu", "  (with db: dpre)", d1, d2, start, M, N, ldc);
    expect("matmul_dgelu", "  (db += twice)", b1, b2, NULL, 1, N, N);
    float *all[] = {A, B, pre, start, db0, d1, d2, b1, b2};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
}

/* matmul_wgrad_bgrad: dW(M,N) += dy(K,M)^T x(K,N), db(M) += colsum dy, twice */
static void test_wgrad(int M, int N, int K, int pad) {
    int ldx = N + pad, lddw = N + pad;
    float *dy = rnd(K, M, M), *x = rnd(K, N, ldx), *w0 = rnd(M, N, lddw), *db0 = rnd(1, M, M);
    size_t nw = (size_t)M * lddw;
    float *w1 = copy(w0, nw), *w2 = copy(w0, nw), *b1 = copy(db0, (size_t)M),
          *b2 = copy(db0, (size_t)M);
    for (int mb = 0; mb < 2; mb++) {
        mt_cuda_matmul_wgrad_bgrad(M, N, K, dy, M, x, ldx, w1, lddw, b1);
        mt_compose_matmul_wgrad_bgrad(cpu, M, N, K, dy, M, x, ldx, w2, lddw, b2);
        dy[0] -= 0.5f; /* (another micro-batch) */
    }
    char what[64];
    snprintf(what, sizeof what, "%dx%dx%d ld+%d, dW += twice", M, N, K, pad);
    expect("matmul_wgrad_bgrad", what, w1, w2, w0, M, N, lddw);
    expect("matmul_wgrad_bgrad", "  (db += twice)", b1, b2, NULL, 1, M, M);
    float *all[] = {dy, x, w0, db0, w1, w2, b1, b2};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
}

static void test_all(void) {
    /* the GPT's: qkv / fc forward x(N,C) W(out,C)^T; fcproj's dx = dy(N,C) W(C,4C) */
    test_forward(0, 1, 37, 24, 16, 0);
    test_forward(0, 1, 37, 24, 16, 1);
    test_dgelu(0, 0, 37, 32, 16, 0);
    test_dgelu(0, 0, 37, 32, 16, 3);
    for (int ta = 0; ta < 2; ta++) /* every transpose pair, non-square */
        for (int tb = 0; tb < 2; tb++) {
            test_forward(ta, tb, 13, 40, 29, ta + 2 * tb);
            test_dgelu(ta, tb, 13, 40, 29, 2 - ta);
        }
    test_forward(0, 1, 7, 29, 5, 0); /* N odd: the GELU aux lead rule sends these to the fallback */
    test_dgelu(0, 0, 7, 29, 5, 1);
    test_forward(1, 0, 1, 8, 1, 0); /* one row, K = 1 */
    test_wgrad(24, 16, 37, 0);      /* the GPT's dW(out,in) += dy^T x */
    test_wgrad(19, 33, 7, 5);
    test_wgrad(1, 1, 1, 0);
}

/* ---- matmul_bf16: bf16 operands, against the CPU backend's (the reference) ---- */

/* x (n floats) as bf16 bits in a 256-byte aligned buffer, off elements
 * past the boundary (off odd: a 2-byte aligned operand, as a slice of a
 * bf16 weight at an odd column is); free with free_bits(p, off) */
static uint16_t *bits_of(const float *x, size_t n, int off) {
    size_t bytes = ((n + (size_t)off) * sizeof(uint16_t) + 255) / 256 * 256;
    uint16_t *base = aligned_alloc(256, bytes ? bytes : 256);
    if (!base) abort();
    cpu->to_bf16(base + off, x, n);
    return base + off;
}

static void free_bits(uint16_t *p, int off) {
    free(p - off);
}

static const char *const epi_name[] = {"NONE", "BIAS", "BIAS_GELU", "DGELU"};

/* mt_cuda_matmul_bf16 against mt_backend_cpu()->matmul_bf16 at one shape:
 * with an epilogue ldc == N (backend.h), MT_EPI_NONE with alpha, beta and
 * C's lead widened by pad (beta 0: C starts all NaN, which must not be
 * read); DGELU without db, then with db over two micro-batches; A placed
 * aoff bf16 elements past 256-byte alignment. */
static void test_bf16(int epi, int ta, int tb, int M, int N, int K, int pad, float alpha,
                      float beta, int aoff) {
    int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
    int lda = ac + pad, ldb = bc + pad, ldc = epi == MT_EPI_NONE ? N + pad : N;
    float *fa = rnd(ar, ac, lda), *fb = rnd(br, bc, ldb);
    uint16_t *A = bits_of(fa, (size_t)ar * lda, aoff), *B = bits_of(fb, (size_t)br * ldb, 0);
    size_t nc = (size_t)M * ldc;
    float *bias = rnd(1, N, N), *pre = rnd(M, N, ldc), *start = rnd(M, N, ldc);
    for (size_t i = 0; i < nc; i++) pre[i] *= 4.0f; /* GELU's curved part */
    if (epi == MT_EPI_NONE && beta == 0.0f)
        for (size_t i = 0; i < nc; i++) start[i] = NAN;
    float *c1 = copy(start, nc), *c2 = copy(start, nc), *p1 = copy(pre, nc), *p2 = copy(pre, nc);
    float *db1 = NULL, *db2 = NULL;
    char what[80];
    snprintf(what, sizeof what, "%s ta%d tb%d %dx%dx%d ld+%d", epi_name[epi], ta, tb, M, N, K, pad);
    if (epi == MT_EPI_NONE)
        snprintf(what + strlen(what), sizeof what - strlen(what), " a%g b%g", alpha, beta);
    if (aoff) snprintf(what + strlen(what), sizeof what - strlen(what), " A+%d", aoff);
    mt_cuda_matmul_bf16(epi, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, bias, p1, c1, NULL, ldc);
    cpu->matmul_bf16(epi, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, bias, p2, c2, NULL, ldc);
    expect("matmul_bf16", what, c1, c2, epi == MT_EPI_NONE ? start : NULL, M, N, ldc);
    if (epi == MT_EPI_BIAS_GELU) expect("matmul_bf16", "  (pre)", p1, p2, NULL, M, N, ldc);
    if (epi == MT_EPI_DGELU) {
        db1 = rnd(1, N, N), db2 = copy(db1, (size_t)N);
        for (int mb = 0; mb < 2; mb++) {
            mt_cuda_matmul_bf16(epi, ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, NULL, p1, c1, db1,
                                ldc);
            cpu->matmul_bf16(epi, ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, NULL, p2, c2, db2,
                             ldc);
            A[0] ^= 0x0100; /* (another micro-batch) */
        }
        expect("matmul_bf16", "  (with db: dpre)", c1, c2, NULL, M, N, ldc);
        expect("matmul_bf16", "  (db += twice)", db1, db2, NULL, 1, N, N);
    }
    free_bits(A, aoff), free_bits(B, 0);
    float *all[] = {fa, fb, bias, pre, start, c1, c2, p1, p2, db1, db2};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
}

static void test_all_bf16(void) {
    /* the GPT's: qkv / fc forward x W^T with their epilogues; dy W (the
     * fc's with GELU', the others plain); the weight gradient dy^T x */
    test_bf16(MT_EPI_BIAS, 0, 1, 37, 24, 16, 0, 1.0f, 0.0f, 0);
    test_bf16(MT_EPI_BIAS_GELU, 0, 1, 37, 32, 16, 0, 1.0f, 0.0f, 0);
    test_bf16(MT_EPI_DGELU, 0, 0, 37, 16, 32, 0, 1.0f, 0.0f, 0);
    test_bf16(MT_EPI_NONE, 0, 0, 37, 16, 24, 0, 1.0f, 0.0f, 0);
    test_bf16(MT_EPI_NONE, 1, 0, 24, 16, 37, 0, 1.0f, 1.0f, 0); /* dW += dy^T x */
    for (int epi = 0; epi < 4; epi++) /* every transpose pair, odd sizes */
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                test_bf16(epi, ta, tb, 13, 40, 29, ta + 2 * tb, 1.0f, 0.0f, 0);
    test_bf16(MT_EPI_NONE, 0, 1, 13, 29, 7, 3, 0.5f, -1.5f, 0); /* alpha, beta, wide C */
    test_bf16(MT_EPI_NONE, 1, 1, 9, 11, 5, 1, -2.0f, 0.25f, 1); /* A 2-byte aligned */
    test_bf16(MT_EPI_BIAS, 0, 1, 7, 29, 5, 0, 1.0f, 0.0f, 1);
    /* N odd: the GELU aux lead rule sends these to the widened fallback
     * in bf16 mode */
    test_bf16(MT_EPI_BIAS_GELU, 0, 1, 7, 29, 5, 1, 1.0f, 0.0f, 0);
    test_bf16(MT_EPI_DGELU, 0, 0, 7, 29, 5, 1, 1.0f, 0.0f, 0);
    test_bf16(MT_EPI_BIAS, 1, 0, 1, 8, 1, 0, 1.0f, 0.0f, 0); /* one row, K = 1 */
    test_bf16(MT_EPI_NONE, 0, 0, 5, 6, 0, 0, 1.0f, 0.5f, 0); /* K = 0: C = beta C */
}

/* ---- the cache of descriptors, layouts and algorithms (matmul_lt.c) ---- */

#define LT_TABLE 64 /* matmul_lt.c's LT_CACHE: keep in step */

/* x (n floats, freed) moved to off floats past a 256-byte boundary: the
 * alignment matmul_lt.c's key sees is then exactly 256 (off 0) or off's,
 * not malloc's chance (16, sometimes more); free with unplace(p, off) */
static float *place(float *x, size_t n, int off) {
    size_t bytes = ((n + (size_t)off) * sizeof *x + 255) / 256 * 256;
    float *base = aligned_alloc(256, bytes ? bytes : 256);
    if (!base) abort();
    memcpy(base + off, x, n * sizeof *x);
    free(x);
    return base + off;
}

static void unplace(float *p, int off) {
    free(p - off);
}

/* the normalized error of (rows, cols) of x against y, both with lead ld,
 * the worst row's; infinite when x's padding (columns cols..ld) is not
 * bitwise start's (a product run with a wider layout writes there) */
static double nerr_ld(const float *x, const float *y, const float *start, int rows, int cols,
                      int ld) {
    double worst = 0;
    for (int r = 0; r < rows; r++) {
        size_t o = (size_t)r * ld;
        double e = mt_test_nerr(x + o, y + o, (size_t)cols);
        worst = e > worst ? e : worst;
        if (memcmp(x + o + cols, start + o + cols, (size_t)(ld - cols) * sizeof *x))
            return INFINITY;
    }
    return worst;
}

/* One product of the cache checks: kind 0 matmul_bias, 1 matmul_bias_gelu,
 * 2 matmul_dgelu with db (1 and 2 take their GELU epilogue in bf16 mode
 * only); every buffer not named in off at 256-byte alignment. */
typedef struct {
    int kind, bf16, ta, tb, M, N, K;
    int pad[3]; /* the leads of A, B, C widened by pad[0], pad[1], 8 pad[2] */
    int off[3]; /* A, the bias, the GELU aux placed off[i] floats past 256-byte alignment */
} lt_case;

/* Runs p through matmul_lt.c and the CPU composition (fresh inputs);
 * returns the normalized error, the worst over its outputs. keep (NULL:
 * none) takes the GELU aux buffers, pre-activation written (kind 1) and
 * read (kind 2), instead of freeing them, so that the next call's cannot
 * be at the same address (free with unplace(keep[i], 0): off[2] 0 only). */
static double run_case(const lt_case *p, float **keep) {
    mt_cuda_set_precision(p->bf16);
    int ar = p->ta ? p->K : p->M, ac = p->ta ? p->M : p->K, br = p->tb ? p->N : p->K,
        bc = p->tb ? p->K : p->N;
    int lda = ac + p->pad[0], ldb = bc + p->pad[1], ldc = p->N + 8 * p->pad[2];
    int pre_off = p->kind == 2 ? p->off[2] : 0, x1_off = p->kind == 1 ? p->off[2] : 0;
    size_t nc = (size_t)p->M * ldc;
    float *A = place(rnd(ar, ac, lda), (size_t)ar * lda, p->off[0]);
    float *B = place(rnd(br, bc, ldb), (size_t)br * ldb, 0);
    float *bias = place(rnd(1, p->N, p->N), (size_t)p->N, p->off[1]);
    float *pre = place(rnd(p->M, p->N, ldc), nc, pre_off), *start = rnd(p->M, p->N, ldc);
    uint32_t mark = 0x7fe5a5a5u; /* a NaN no arithmetic makes from the inputs' NaN padding */
    for (size_t i = 0; i < nc; i++)
        if ((int)(i % (size_t)ldc) >= p->N) memcpy(&start[i], &mark, sizeof mark);
    float *x1 = place(copy(start, nc), nc, x1_off), *x2 = copy(start, nc);
    float *y1 = place(copy(start, nc), nc, 0), *y2 = copy(start, nc);
    float *pre2 = copy(pre, nc), *db1 = place(copy(bias, (size_t)p->N), (size_t)p->N, 0),
          *db2 = copy(bias, (size_t)p->N);
    double e;
    if (p->kind == 0) {
        mt_cuda_matmul_bias(p->ta, p->tb, p->M, p->N, p->K, A, lda, B, ldb, bias, x1, ldc);
        mt_compose_matmul_bias(cpu, p->ta, p->tb, p->M, p->N, p->K, A, lda, B, ldb, bias, x2, ldc);
        e = nerr_ld(x1, x2, start, p->M, p->N, ldc);
    } else if (p->kind == 1) {
        mt_cuda_matmul_bias_gelu(p->ta, p->tb, p->M, p->N, p->K, A, lda, B, ldb, bias, x1, y1, ldc);
        mt_compose_matmul_bias_gelu(cpu, p->ta, p->tb, p->M, p->N, p->K, A, lda, B, ldb, bias, x2,
                                    y2, ldc);
        double e2 = nerr_ld(y1, y2, start, p->M, p->N, ldc);
        e = nerr_ld(x1, x2, start, p->M, p->N, ldc);
        e = e2 > e ? e2 : e;
    } else {
        mt_cuda_matmul_dgelu(p->ta, p->tb, p->M, p->N, p->K, A, lda, B, ldb, pre, x1, db1, ldc);
        mt_compose_matmul_dgelu(cpu, p->ta, p->tb, p->M, p->N, p->K, A, lda, B, ldb, pre2, x2, db2,
                                ldc);
        double e2 = mt_test_nerr(db1, db2, (size_t)p->N);
        e = nerr_ld(x1, x2, start, p->M, p->N, ldc);
        e = e2 > e ? e2 : e;
    }
    if (keep) {
        keep[0] = x1, keep[1] = pre;
    } else {
        unplace(x1, x1_off), unplace(pre, pre_off);
    }
    unplace(A, p->off[0]), unplace(B, 0), unplace(bias, p->off[1]), unplace(y1, 0), unplace(db1, 0);
    free(start), free(x2), free(y2), free(pre2), free(db2);
    return e;
}

#define DELTA(field, since) (mt_standin.field - (since).field)

/* (1) One shape N times: one heuristic question, one descriptor, and each
 * call's own bias, aux and output pointers (set per call on the cached
 * descriptor): a call that ran with the previous call's bias or GELU
 * input would differ from its composition. */
static void test_cache_repeat(void) {
    mt_cuda_lt_release();
    mt_cuda_set_precision(0);
    enum { REPS = 6 };
    int M = 37, N = 24, K = 16;
    float *A = place(rnd(M, K, K), (size_t)M * K, 0), *B = place(rnd(N, K, K), (size_t)N * K, 0);
    float *bias[2] = {place(rnd(1, N, N), (size_t)N, 0), place(rnd(1, N, N), (size_t)N, 0)};
    float *out[REPS], *ref = mt_test_falloc((size_t)M * N);
    mt_standin_stats s = mt_standin;
    for (int r = 0; r < REPS; r++) {
        out[r] = place(mt_test_falloc((size_t)M * N), (size_t)M * N, 0);
        mt_cuda_matmul_bias(0, 1, M, N, K, A, K, B, K, bias[r % 2], out[r], N);
    }
    CHECK(DELTA(heuristics, s) == 1 && DELTA(descs, s) == 1 && DELTA(matmuls, s) == REPS,
          "cache: %d calls of one shape asked the heuristic %ld times, made %ld descriptors, ran "
          "%ld products (expected 1, 1, %d)",
          REPS, DELTA(heuristics, s), DELTA(descs, s), DELTA(matmuls, s), REPS);
    long same = 0;
    double worst = 0;
    for (int r = 0; r < REPS; r++) {
        mt_compose_matmul_bias(cpu, 0, 1, M, N, K, A, K, B, K, bias[r % 2], ref, N);
        double e = mt_test_nerr(out[r], ref, (size_t)M * N);
        worst = e > worst ? e : worst;
        same += r >= 2 && memcmp(out[r], out[r % 2], (size_t)M * N * sizeof *ref) == 0;
    }
    CHECK(worst <= TOL, "cache: a repeated matmul_bias (two bias vectors in turn) off by %.2e",
          worst);
    CHECK(same == REPS - 2, "cache: %ld of %d repeats bitwise the first with their bias", same,
          REPS - 2);
    printf("  repeated matmul_bias x%d: %ld heuristic, %ld descriptor; error %.2e, repeats "
           "bitwise the first %ld/%d\n",
           REPS, DELTA(heuristics, s), DELTA(descs, s), worst, same, REPS - 2);
    for (int r = 0; r < REPS; r++) unplace(out[r], 0);
    unplace(A, 0), unplace(B, 0), unplace(bias[0], 0), unplace(bias[1], 0), free(ref);

    /* bf16: the GELU epilogues' aux pointer (written, then read) per call */
    lt_case g[2] = {{1, 1, 0, 1, 13, 40, 29, {0, 0, 0}, {0, 0, 0}},
                    {2, 1, 0, 0, 13, 40, 29, {0, 0, 0}, {0, 0, 0}}};
    for (int i = 0; i < 2; i++) {
        s = mt_standin;
        double w = 0;
        float *aux[3][2];
        for (int r = 0; r < 3; r++) {
            double e = run_case(&g[i], aux[r]);
            w = e > w ? e : w;
        }
        int a = i ? 1 : 0; /* the aux buffer: pre written (bias_gelu), read (dgelu) */
        CHECK(aux[0][a] != aux[1][a] && aux[1][a] != aux[2][a] && aux[0][a] != aux[2][a],
              "cache: the repeated calls' aux buffers share an address (the test proves nothing)");
        for (int r = 0; r < 3; r++) unplace(aux[r][0], 0), unplace(aux[r][1], 0); /* (off 0) */
        CHECK(w <= TOL && DELTA(heuristics, s) == 1 && DELTA(matmuls, s) == 3,
              "cache: %s x3 (new aux buffers each): error %.2e, %ld heuristic calls, %ld products "
              "(expected 1, 3)",
              i ? "matmul_dgelu" : "matmul_bias_gelu", w, DELTA(heuristics, s), DELTA(matmuls, s));
        printf("  repeated %-16s x3, new aux each: %ld heuristic, error %.2e\n",
               i ? "matmul_dgelu" : "matmul_bias_gelu", DELTA(heuristics, s), w);
    }
}

/* (2) Products that differ in one thing each, interleaved, twice: each a
 * cache entry of its own (one heuristic question each in the first round,
 * none in the second) and each right (another's layout, transposes,
 * epilogue or precision would not match its composition; another's
 * alignment, the stand-in rejects). */
static void test_cache_keys(void) {
    mt_cuda_lt_release();
    static const lt_case c[] = {
        /* each differs from one above in what its comment says alone (in
         * cuBLASLt's terms our M is its n, ta its tb, A its B) */
        {0, 0, 1, 0, 13, 40, 29, {0, 0, 0}, {0, 0, 0}},  /* the first */
        {0, 0, 1, 0, 13, 40, 30, {0, 0, 0}, {0, 0, 0}},  /* K */
        {0, 0, 0, 0, 13, 40, 29, {0, 0, 0}, {0, 0, 0}},  /* ta (and A's lead) */
        {0, 0, 0, 0, 14, 40, 29, {0, 0, 0}, {0, 0, 0}},  /* M */
        {0, 0, 0, 0, 29, 40, 29, {0, 0, 0}, {0, 0, 0}},  /* (M = K) */
        {0, 0, 1, 0, 29, 40, 29, {0, 0, 0}, {0, 0, 0}},  /* ta */
        {0, 0, 0, 0, 13, 29, 29, {0, 0, 0}, {0, 0, 0}},  /* (N = K) */
        {0, 0, 0, 1, 13, 29, 29, {0, 0, 0}, {0, 0, 0}},  /* tb */
        {0, 0, 1, 0, 13, 32, 29, {0, 8, 1}, {0, 0, 0}},  /* N (the leads the first's) */
        {0, 0, 1, 0, 40, 13, 29, {0, 0, 0}, {0, 0, 0}},  /* M and N swapped (the first's) */
        {0, 0, 1, 0, 13, 40, 29, {1, 0, 0}, {0, 0, 0}},  /* A's lead */
        {0, 0, 1, 0, 13, 40, 29, {0, 1, 0}, {0, 0, 0}},  /* B's lead */
        {0, 0, 1, 0, 13, 40, 29, {0, 0, 1}, {0, 0, 0}},  /* C's lead */
        {0, 1, 1, 0, 13, 40, 29, {0, 0, 0}, {0, 0, 0}},  /* precision */
        {1, 1, 1, 0, 13, 40, 29, {0, 0, 0}, {0, 0, 0}},  /* epilogue GELU_AUX_BIAS */
        {2, 1, 1, 0, 13, 40, 29, {0, 0, 0}, {0, 0, 0}},  /* epilogue DGELU_BGRAD */
        {1, 1, 1, 0, 13, 40, 29, {0, 0, 2}, {0, 0, 0}},  /* aux lead (= C's) 56 */
        {0, 0, 1, 0, 13, 40, 29, {0, 0, 0}, {1, 0, 0}},  /* A 4-byte aligned */
        {0, 0, 1, 0, 13, 40, 29, {0, 0, 0}, {12, 0, 0}}, /* A 16-byte aligned */
        {0, 0, 1, 0, 13, 40, 29, {0, 0, 0}, {0, 2, 0}},  /* the bias 8-byte aligned */
        {1, 1, 1, 0, 13, 40, 29, {0, 0, 0}, {0, 0, 4}},  /* the aux 16-byte aligned */
    };
    int n = (int)(sizeof c / sizeof c[0]);
    for (int round = 0; round < 2; round++) {
        mt_standin_stats s = mt_standin;
        double worst = 0;
        for (int i = 0; i < n; i++) {
            double e = run_case(&c[i], NULL);
            CHECK(e <= TOL, "cache: interleaved case %d (round %d) off by %.2e", i, round, e);
            worst = e > worst ? e : worst;
        }
        long want = round == 0 ? n : 0;
        CHECK(DELTA(heuristics, s) == want && DELTA(matmuls, s) == n,
              "cache: %d distinct products, round %d: %ld heuristic calls, %ld products (expected "
              "%ld, %d)",
              n, round, DELTA(heuristics, s), DELTA(matmuls, s), want, n);
        printf("  %d distinct products interleaved, round %d: %ld heuristic calls, worst error "
               "%.2e\n",
               n, round, DELTA(heuristics, s), worst);
    }
    mt_cuda_set_precision(0);
}

/* (3) More keys than the table holds: still right, objects bounded by the
 * table (a descriptor and three layouts an entry), the newest kept and
 * the oldest evicted, and nothing left after the release. */
static void test_cache_overflow(void) {
    mt_cuda_lt_release();
    enum { SHAPES = LT_TABLE * 2 + 22 };
    mt_standin_stats s = mt_standin;
    double worst = 0;
    long most = 0;
    for (int i = 0; i < SHAPES; i++) {
        lt_case p = {0, 0, 0, 1, 1 + i, 8, 4, {0, 0, 0}, {0, 0, 0}};
        double e = run_case(&p, NULL);
        worst = e > worst ? e : worst;
        most = mt_standin.live > most ? mt_standin.live : most;
    }
    CHECK(worst <= TOL, "cache: %d shapes through a %d-entry table: off by %.2e", SHAPES, LT_TABLE,
          worst);
    CHECK(DELTA(descs, s) == SHAPES && most <= 4 * LT_TABLE && mt_standin.live == 4 * LT_TABLE,
          "cache: %d shapes made %ld descriptors, at most %ld objects live, %ld now (expected %d, "
          "at most %d, %d)",
          SHAPES, DELTA(descs, s), most, mt_standin.live, SHAPES, 4 * LT_TABLE, 4 * LT_TABLE);
    s = mt_standin;
    lt_case last = {0, 0, 0, 1, SHAPES, 8, 4, {0, 0, 0}, {0, 0, 0}},
            first = {0, 0, 0, 1, 1, 8, 4, {0, 0, 0}, {0, 0, 0}};
    double e = run_case(&last, NULL);
    long kept = DELTA(descs, s);
    e += run_case(&first, NULL);
    long evicted = DELTA(descs, s) - kept;
    CHECK(e <= TOL && kept == 0 && evicted == 1,
          "cache: after %d shapes the newest made %ld descriptors (expected 0), the oldest %ld "
          "(expected 1: evicted); error %.2e",
          SHAPES, kept, evicted, e);
    mt_cuda_lt_release();
    CHECK(mt_standin.live == 0 && mt_standin.handles == 0,
          "cache: after mt_cuda_lt_release %ld descriptors/layouts and %ld handles/buffers left",
          mt_standin.live, mt_standin.handles);
    printf("  %d shapes, %d-entry table: error %.2e, at most %ld objects live; released: %ld\n",
           SHAPES, LT_TABLE, worst, most, mt_standin.live);
}

/* (4) "No algorithm" is cached too: asked once, the fallback each time
 * (right), still so when an algorithm would now be offered, until the
 * release. */
static void test_cache_none(void) {
    mt_cuda_lt_release();
    lt_case p = {0, 0, 0, 1, 13, 40, 29, {0, 0, 0}, {0, 0, 0}};
    mt_standin_stats s = mt_standin;
    mt_standin_no_algo = 1;
    double worst = 0;
    for (int r = 0; r < 3; r++) worst = fmax(worst, run_case(&p, NULL));
    mt_standin_no_algo = 0;
    worst = fmax(worst, run_case(&p, NULL)); /* (the cached answer: none) */
    CHECK(worst <= TOL && DELTA(heuristics, s) == 1 && DELTA(matmuls, s) == 0 &&
              DELTA(fallbacks, s) >= 8,
          "cache: no algorithm x4: error %.2e, %ld heuristic calls, %ld products, %ld fallback ops "
          "(expected 1, 0, at least 8)",
          worst, DELTA(heuristics, s), DELTA(matmuls, s), DELTA(fallbacks, s));
    mt_cuda_lt_release();
    s = mt_standin;
    double e = run_case(&p, NULL);
    CHECK(e <= TOL && DELTA(heuristics, s) == 1 && DELTA(matmuls, s) == 1,
          "cache: after the release the heuristic was asked %ld times, %ld products ran "
          "(expected 1, 1)",
          DELTA(heuristics, s), DELTA(matmuls, s));
    printf("  no algorithm x4: asked once, fallback each time, error %.2e\n", worst);
}

/* (5) One shape with fp32 operands (matmul_bias) and bf16 operands
 * (matmul_bf16, MT_EPI_BIAS), the same alignments, interleaved twice: two
 * entries (two heuristic questions, then none), each right (the stand-in
 * rejects an algorithm found for the other's operand type). */
static void test_cache_bf16(void) {
    mt_cuda_lt_release();
    int M = 13, N = 40, K = 29;
    float *fa = place(rnd(M, K, K), (size_t)M * K, 0), *fb = place(rnd(N, K, K), (size_t)N * K, 0);
    uint16_t *A = bits_of(fa, (size_t)M * K, 0), *B = bits_of(fb, (size_t)N * K, 0);
    float *bias = place(rnd(1, N, N), (size_t)N, 0);
    float *x1 = place(mt_test_falloc((size_t)M * N), (size_t)M * N, 0),
          *x2 = mt_test_falloc((size_t)M * N);
    for (int bf16 = 0; bf16 < 2; bf16++) {
        mt_cuda_set_precision(bf16);
        mt_standin_stats s = mt_standin;
        double worst = 0;
        for (int round = 0; round < 2; round++) {
            mt_cuda_matmul_bias(0, 1, M, N, K, fa, K, fb, K, bias, x1, N);
            mt_compose_matmul_bias(cpu, 0, 1, M, N, K, fa, K, fb, K, bias, x2, N);
            worst = fmax(worst, mt_test_nerr(x1, x2, (size_t)M * N));
            mt_cuda_matmul_bf16(MT_EPI_BIAS, 0, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, bias, NULL, x1,
                                NULL, N);
            cpu->matmul_bf16(MT_EPI_BIAS, 0, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, bias, NULL, x2,
                             NULL, N);
            worst = fmax(worst, mt_test_nerr(x1, x2, (size_t)M * N));
        }
        CHECK(worst <= TOL && DELTA(heuristics, s) == 2 && DELTA(matmuls, s) == 4 &&
                  DELTA(widened, s) == 0,
              "cache: one shape, fp32 and bf16 operands x2 (%s): error %.2e, %ld heuristic "
              "calls, %ld products, %ld widened (expected 2, 4, 0)",
              bf16 ? "bf16 mode" : "fp32", worst, DELTA(heuristics, s), DELTA(matmuls, s),
              DELTA(widened, s));
        printf("  one shape, fp32 and bf16 operands x2 (%s): %ld heuristic calls, error %.2e\n",
               bf16 ? "bf16 mode" : "fp32", DELTA(heuristics, s), worst);
    }
    mt_cuda_set_precision(0);
    unplace(fa, 0), unplace(fb, 0), unplace(bias, 0), unplace(x1, 0), free(x2);
    free_bits(A, 0), free_bits(B, 0);
}

static void counts(const char *when, mt_standin_stats *before) {
    mt_standin_stats *s = &mt_standin;
    printf("  (%s: %ld cublasLtMatmul: BIAS %ld, GELU_AUX_BIAS %ld, DGELU %ld, BGRADB %ld; "
           "%ld unfused fallback ops)\n",
           when, s->matmuls - before->matmuls, s->epilogue[0] - before->epilogue[0],
           s->epilogue[1] - before->epilogue[1], s->epilogue[2] - before->epilogue[2],
           s->epilogue[3] - before->epilogue[3], s->fallbacks - before->fallbacks);
}

int main(void) {
    cpu = mt_backend_cpu();
    for (int bf16 = 0; bf16 < 2; bf16++) {
        mt_cuda_set_precision(bf16); /* the CPU's too: both round the operands */
        printf("%s: matmul_lt.c through the stand-in against the CPU compositions:\n",
               bf16 ? "bf16 matmuls" : "fp32");
        mt_standin_stats before = mt_standin;
        test_all();
        counts(bf16 ? "bf16" : "fp32", &before);
        long used[4];
        for (int i = 0; i < 4; i++) used[i] = mt_standin.epilogue[i] - before.epilogue[i];
        /* the GELU epilogues in bf16 mode only (matmul_lt.c's top), the
         * others in both */
        CHECK(used[0] > 0 && used[3] > 0 &&
                  (bf16 ? used[1] > 0 && used[2] > 0 : used[1] == 0 && used[2] == 0),
              "%s: epilogues used BIAS %ld, GELU_AUX_BIAS %ld, DGELU %ld, BGRADB %ld (expected "
              "all; the GELU ones in bf16 mode only)",
              bf16 ? "bf16" : "fp32", used[0], used[1], used[2], used[3]);
        /* bf16: only the odd-N GELU shapes fall back (matmul_bias_gelu and
         * matmul_dgelu x2 there, at least one unfused matmul each); fp32
         * runs every GELU op on the unfused kernels, so it proves nothing */
        if (bf16)
            CHECK(mt_standin.fallbacks - before.fallbacks >= 3,
                  "the odd lead (29, not a multiple of 8) did not take the fallback");
        printf("%s: matmul_bf16 through the stand-in against the CPU backend's:\n",
               bf16 ? "bf16 matmuls" : "fp32");
        before = mt_standin;
        test_all_bf16();
        counts(bf16 ? "bf16, matmul_bf16" : "fp32, matmul_bf16", &before);
        for (int i = 0; i < 3; i++) used[i] = mt_standin.epilogue[i] - before.epilogue[i];
        long widened = mt_standin.widened - before.widened;
        /* bf16 operands take the same epilogues as fp32 ones; in bf16 mode
         * the odd N's GELU products are widened (the aux lead rule: one
         * BIAS_GELU and three DGELU calls, two operands each; K = 0 has
         * nothing to widen), in fp32 mode none (no GELU epilogue) */
        CHECK(used[0] > 0 && (bf16 ? used[1] > 0 && used[2] > 0 : used[1] == 0 && used[2] == 0) &&
                  widened == (bf16 ? 8 : 0),
              "%s: matmul_bf16 used BIAS %ld, GELU_AUX_BIAS %ld, DGELU %ld, widened %ld operands "
              "(expected the GELU ones in bf16 mode only; 8 operands widened in bf16 mode, none "
              "in fp32)",
              bf16 ? "bf16" : "fp32", used[0], used[1], used[2], widened);
    }
    mt_cuda_set_precision(0);
    printf("no algorithm offered (the stand-in's heuristic finds none): the fallbacks:\n");
    mt_cuda_lt_release(); /* (else the shapes above keep their cached algorithms) */
    mt_standin_no_algo = 1;
    mt_standin_stats before = mt_standin;
    test_all();
    test_all_bf16();
    counts("no algorithm", &before);
    CHECK(mt_standin.matmuls == before.matmuls && mt_standin.fallbacks > before.fallbacks,
          "without an algorithm %ld products still ran through cuBLASLt",
          mt_standin.matmuls - before.matmuls);
    CHECK(mt_standin.widened - before.widened >= 40,
          "without an algorithm matmul_bf16 widened its operands %ld times (expected at least 40: "
          "every call but K = 0's, two operands each)",
          mt_standin.widened - before.widened);
    mt_standin_no_algo = 0;
    printf("the cache of descriptors, layouts and algorithms:\n");
    test_cache_repeat();
    test_cache_keys();
    test_cache_overflow();
    test_cache_none();
    test_cache_bf16();
    mt_cuda_lt_release();
    CHECK(mt_standin.live == 0, "%ld cuBLASLt descriptors, layouts or preferences not destroyed",
          mt_standin.live);
    CHECK(mt_standin.rejected == 0, "the stand-in rejected %ld calls", mt_standin.rejected);
    return mt_test_finish("matmul_lt");
}
