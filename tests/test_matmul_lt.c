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
 * nothing, and the aux lead rule), and leaked descriptors. What it cannot:
 * cuBLASLt's own numerics and which epilogues it supports for fp32 (that
 * needs a GPU: tests/test_backend_cmp.c).
 *
 * Runs in fp32 and in bf16 matmul mode (the stand-in rounds the operands
 * to bf16 for CUBLAS_COMPUTE_32F_FAST_16BF, as the CPU's bf16 matmul does),
 * then with no algorithm offered (every op through its fallback).
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
    }
    mt_cuda_set_precision(0);
    printf("no algorithm offered (the stand-in's heuristic finds none): the fallbacks:\n");
    mt_cuda_lt_release(); /* (else the shapes above keep their cached algorithms) */
    mt_standin_no_algo = 1;
    mt_standin_stats before = mt_standin;
    test_all();
    counts("no algorithm", &before);
    CHECK(mt_standin.matmuls == before.matmuls && mt_standin.fallbacks > before.fallbacks,
          "without an algorithm %ld products still ran through cuBLASLt",
          mt_standin.matmuls - before.matmuls);
    mt_standin_no_algo = 0;
    mt_cuda_lt_release();
    CHECK(mt_standin.live == 0, "%ld cuBLASLt descriptors, layouts or preferences not destroyed",
          mt_standin.live);
    CHECK(mt_standin.rejected == 0, "the stand-in rejected %ld calls", mt_standin.rejected);
    return mt_test_finish("matmul_lt");
}
