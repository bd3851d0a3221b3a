/*
 * backend_cpu.c - the CPU backend: matmuls through OpenBLAS sgemm, the rest
 * plain C loops, split across OpenMP threads only where the work is large
 * enough to pay for waking them (MT_OMP_MIN elements).
 *
 * Invariant: results do not depend on the thread count (run.threads,
 * OMP_NUM_THREADS), bitwise. Reductions use fixed blocks summed in order; a
 * matmul is cut into tiles whose shape depends only on (M, N, K), each tile
 * one single-threaded sgemm (see mt_cpu_tiles_run). OpenBLAS's own threading is
 * never used: its multi-threaded sgemm splits the work by its thread count,
 * and the bits change with it (0.3.21, 64x256x784: 2 and 3 threads each
 * differ from 1). Checked by tests/test_core.c (matmuls), test_learning.sh
 * and test_gpt_train.sh (whole trainings).
 */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/bf16.h"
#include "kernels/cpu/adamw_cpu.h"
#include "kernels/cpu/flash_attention.h"
#include "kernels/cpu/fused_cpu.h"
#include "kernels/cpu/gpt_cpu.h"
#include "kernels/cpu/sbgemm_cpu.h"
#include "kernels/cpu/vmath.h"
#include "kernels/cpu/matmul_bf16_cpu.h"
#include "kernels/cpu/xent_cpu.h"

#define SUMSQ_BLOCK 4096

static float *cpu_alloc(size_t n) {
    size_t bytes = ((n * sizeof(float)) + 63) & ~(size_t)63;
    float *x = aligned_alloc(64, bytes ? bytes : 64);
    if (x) memset(x, 0, bytes ? bytes : 64);
    return x;
}

static void cpu_free(void *p) {
    free(p);
}

static void cpu_copy(float *dst, const float *src, size_t n) {
    if (dst != src) memcpy(dst, src, n * sizeof(float));
}

static void cpu_synchronize(void) {}

/* ---- matmul precision ----
 * bf16 mode emulates bf16 operands with fp32 accumulation: A and B are
 * rounded to bf16 (kernels/bf16.h) into a scratch copy with the same lead
 * dimensions, and the very same sgemm tiles run on the copies. Products
 * of two bf16 values are exact in fp32, so this differs from a tensor-core
 * bf16 GEMM only in the order of the fp32 sums. fp32 mode makes no copy.
 * Where the CPU has AVX512-BF16 and OpenBLAS cblas_sbgemm (or where
 * MPITRAIN_CPU_SBGEMM = on), bf16 mode takes cblas_sbgemm on bf16 copies
 * instead, the same tiles (sbgemm_cpu.c); the path is chosen once, at the
 * first set_precision(1). */

static int cpu_bf16; /* the precision set_precision chose: 1 bf16 operands, 0 fp32 */

void mt_cpu_set_precision(int bf16) {
    cpu_bf16 = bf16 != 0;
    if (cpu_bf16) mt_cpu_bf16_native(); /* chooses the path (or exits 2) now, not mid-step */
}

int mt_cpu_precision_bf16(void) {
    return cpu_bf16;
}

float *mt_cpu_scratch(float **buf, size_t *cap, size_t n) {
    if (n <= *cap) return *buf;
    size_t bytes = ((n * sizeof(float)) + 63) & ~(size_t)63;
    float *p = aligned_alloc(64, bytes);
    if (!p) {
        fprintf(stderr,
                "mpitrain: error: out of memory for a %zu-byte bf16 matmul scratch buffer\n",
                bytes);
        abort();
    }
    free(*buf);
    *buf = p;
    *cap = n;
    return p;
}

void mt_cpu_bf16_round_block(float *dst, int ldd, const float *src, int lds, int rows, int cols) {
    /* threads only from outside a parallel region (attention rounds per thread) */
#pragma omp parallel for schedule(static) if ((size_t)rows * cols >= MT_OMP_MIN &&                 \
                                              !omp_in_parallel())
    for (int r = 0; r < rows; r++) {
        const float *sr = src + (size_t)r * lds;
        float *dr = dst + (size_t)r * ldd;
        for (int c = 0; c < cols; c++) dr[c] = mt_bf16_round(sr[c]);
    }
}

/* Floats a row-major (rows, cols) matrix with lead ld spans: up to the last
 * element read, so a copy keeps the layout without the final row's padding. */
static size_t span(int rows, int cols, int ld) {
    return rows > 0 && cols > 0 ? (size_t)(rows - 1) * ld + cols : 0;
}

/* ---- matmul tiles ----
 * C(M,N) is cut into tiles of tm x tn (the last row and column of tiles
 * smaller), each computed by one single-threaded sgemm over the whole K, so
 * every element of C is summed in an order fixed by (M, N, K) alone; OpenMP
 * threads share out the tiles. The plan: about one tile per TILE_WORK
 * multiply-adds (at most TILE_MAX), cut first along the rows, then along the
 * columns, never thinner than TILE_MIN_SIDE (a thin tile repacks the other
 * operand for little work) unless the side itself is shorter; a small
 * product in a few smaller tiles (SMALL_*). Measured on the GPT bench's 15 shapes (1024
 * rows, 2-core EPYC, docs/BENCHMARKS.md): these tiles 85-86 GFLOP/s at 1
 * thread against one whole sgemm's 87-88; tiles of 2^24 multiply-adds and 64
 * rows lost about 10 %. Up to 256 tiles: a big product keeps many cores
 * busy, a small one few. TILE_MIN_SIDE was 256 until issue 19: the GPT's
 * 256 x 256 x 1024 weight gradients (c_proj, the LM head) were then one tile,
 * one thread working while the others waited, and 768 x 256 x 1024 three
 * tiles for two threads; at 128 the GPT bench step took 3-5 % less at 2
 * threads and the same at 1 (a deliberate change of the bits of those
 * products, still independent of the thread count). */
#define TILE_WORK     (1L << 25) /* multiply-adds per tile: about 0.4 ms of one core */
#define TILE_MIN_SIDE 128        /* rows and columns of a tile at least */
/* A product under TILE_WORK (the MLP's: 64 x 256 x 784) still gets up to
 * SMALL_TILES tiles of SMALL_WORK, no side under SMALL_SIDE, so that a few
 * threads share it (one tile lost 44 % of the MNIST MLP's step at 2 threads). */
#define SMALL_WORK  (1L << 21)
#define SMALL_TILES 4
#define SMALL_SIDE  64
#define TILE_MAX    256 /* tiles of one product at most */
#define TILE_ROUND  16  /* tile sides: multiples of 16 */

static long round_up(long x, long r) {
    return (x + r - 1) / r * r;
}

/* *tm, *tn: the tile shape for C(M,N) = op(A)(M,K) op(B)(K,N); M, N > 0 */
static void tile_plan(int M, int N, int K, int *tm, int *tn) {
    double work = (double)M * (double)N * (double)(K > 0 ? K : 1);
    long want = (long)(work / (double)TILE_WORK);
    int side = TILE_MIN_SIDE;
    if (want < 1) { /* a small product */
        want = (long)(work / (double)SMALL_WORK);
        if (want > SMALL_TILES) want = SMALL_TILES;
        if (want < 1) want = 1;
        side = SMALL_SIDE;
    }
    if (want > TILE_MAX) want = TILE_MAX;
    long mt = want, most = M / side; /* row tiles */
    if (mt > most) mt = most > 1 ? most : 1;
    long m = round_up((M + mt - 1) / mt, TILE_ROUND); /* long: M near INT_MAX */
    if (m > M) m = M;
    long nt = want / ((M + m - 1) / m), nmost = N / side; /* column tiles */
    if (nt > nmost) nt = nmost;
    if (nt < 1) nt = 1;
    long n = round_up((N + nt - 1) / nt, TILE_ROUND);
    if (n > N) n = N;
    *tm = (int)m;
    *tn = (int)n;
}

void mt_cpu_tile_plan(int M, int N, int K, int *tm, int *tn) {
    tile_plan(M, N, K, tm, tn);
}

void mt_cpu_blas_serial(void) {
    /* In an active parallel region OpenBLAS (OpenMP build) runs one thread by
     * itself; in a team of one (an if clause, or OMP_NUM_THREADS=1) it would
     * fork as many as omp_get_max_threads() of the calling task says, which
     * this sets to 1 for this region's implicit task only (OpenMP gives each
     * its own copy of the setting; the caller's is untouched). */
    if (!omp_in_parallel()) omp_set_num_threads(1);
}

void mt_cpu_tiles_run(const mt_cpu_gemm *g, mt_cpu_tile_fn tile) {
    int M = g->M, N = g->N;
    if (M <= 0 || N <= 0) return;
    int tm, tn;
    tile_plan(M, N, g->K, &tm, &tn);
    int mt = (int)(((long)M + tm - 1) / tm), nt = (int)(((long)N + tn - 1) / tn);
#pragma omp parallel if (mt * nt > 1)
    {
        mt_cpu_blas_serial();
#pragma omp for schedule(dynamic)
        for (int t = 0; t < mt * nt; t++) {
            int i0 = t / nt * tm, j0 = t % nt * tn;
            int m = M - i0 < tm ? M - i0 : tm, n = N - j0 < tn ? N - j0 : tn;
            /* rows i0.. of op(A): A stored (K,M) when transposed; columns j0.. of op(B) */
            size_t a = g->trans_a ? (size_t)i0 : (size_t)i0 * g->lda;
            size_t b = g->trans_b ? (size_t)j0 * g->ldb : (size_t)j0;
            tile(g, m, n, a, b, (size_t)i0 * g->ldc + j0);
        }
    }
}

/* one tile by a single-threaded sgemm (A and B floats) */
static void sgemm_tile(const mt_cpu_gemm *g, int m, int n, size_t a, size_t b, size_t c) {
    cblas_sgemm(CblasRowMajor, g->trans_a ? CblasTrans : CblasNoTrans,
                g->trans_b ? CblasTrans : CblasNoTrans, m, n, g->K, g->alpha,
                (const float *)g->A + a, g->lda, (const float *)g->B + b, g->ldb, g->beta, g->C + c,
                g->ldc);
}

static void cpu_matmul(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                       int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    if (cpu_bf16 && M > 0 && N > 0 && K > 0) {
        if (mt_cpu_bf16_native()) {
            mt_cpu_sbgemm_matmul(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
            return;
        }
        /* A is stored (M,K), or (K,M) when transposed; B (K,N), or (N,K). */
        static float *scratch; /* [A's copy | B's copy], grown on demand, never freed */
        static size_t cap;
        int ar = trans_a ? K : M, ac = trans_a ? M : K;
        int br = trans_b ? N : K, bc = trans_b ? K : N;
        size_t na = (span(ar, ac, lda) + 15) & ~(size_t)15; /* B's copy 64-byte aligned */
        float *s = mt_cpu_scratch(&scratch, &cap, na + span(br, bc, ldb));
        mt_cpu_bf16_round_block(s, lda, A, lda, ar, ac);
        mt_cpu_bf16_round_block(s + na, ldb, B, ldb, br, bc);
        A = s;
        B = s + na;
    }
    mt_cpu_gemm g = {trans_a, trans_b, M, N, K, alpha, beta, A, lda, B, ldb, C, ldc};
    mt_cpu_tiles_run(&g, sgemm_tile);
}

static void cpu_bias_add(float *y, const float *b, int rows, int cols) {
#pragma omp parallel for schedule(static) if ((size_t)rows * cols >= MT_OMP_MIN)
    for (int r = 0; r < rows; r++) {
        float *yr = y + (size_t)r * cols;
        for (int c = 0; c < cols; c++) yr[c] += b[c];
    }
}

static void cpu_bias_grad(float *db, const float *dy, int rows, int cols, float beta) {
    /* Columns are independent; each sums its rows in order. */
#pragma omp parallel for schedule(static) if ((size_t)rows * cols >= MT_OMP_MIN && cols >= 64)
    for (int c0 = 0; c0 < cols; c0 += 64) {
        int c1 = c0 + 64 < cols ? c0 + 64 : cols;
        float acc[64];
        for (int c = c0; c < c1; c++) acc[c - c0] = beta == 0.0f ? 0.0f : beta * db[c];
        for (int r = 0; r < rows; r++) {
            const float *dr = dy + (size_t)r * cols;
            for (int c = c0; c < c1; c++) acc[c - c0] += dr[c];
        }
        for (int c = c0; c < c1; c++) db[c] = acc[c - c0];
    }
}

static void cpu_relu_forward(float *y, const float *x, size_t n) {
#pragma omp parallel for schedule(static) if (n >= MT_OMP_MIN)
    for (size_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

static void cpu_relu_backward(float *dx, const float *dy, const float *x, size_t n) {
#pragma omp parallel for schedule(static) if (n >= MT_OMP_MIN)
    for (size_t i = 0; i < n; i++) dx[i] = x[i] > 0.0f ? dy[i] : 0.0f;
}

/* GELU, tanh form: mt_vgelu and its derivative (kernels/cpu/vmath.h), the
 * fused ops' too. */
static void cpu_gelu_forward(float *y, const float *x, size_t n) {
#pragma omp parallel for simd schedule(static) if (n >= MT_OMP_MIN / 4)
    for (size_t i = 0; i < n; i++) y[i] = mt_vgelu(x[i]);
}

static void cpu_gelu_backward(float *dx, const float *dy, const float *x, size_t n) {
#pragma omp parallel for simd schedule(static) if (n >= MT_OMP_MIN / 4)
    for (size_t i = 0; i < n; i++) dx[i] = dy[i] * mt_vgelu_grad(x[i]);
}

/* columns C..ld-1 of each of B rows ld apart: the padding set to 0 */
static void zero_pad(float *x, int B, int C, int ld) {
    for (int b = 0; b < B && ld > C; b++)
        memset(x + (size_t)b * ld + C, 0, (size_t)(ld - C) * sizeof(float));
}

static double cpu_softmax_xent_forward(float *probs, const float *logits, const int32_t *labels,
                                       int B, int C, int ld) {
    double total = 0.0;
    for (int b = 0; b < B; b++) {
        const float *z = logits + (size_t)b * ld;
        float *p = probs + (size_t)b * ld;
        float mx = z[0];
        for (int c = 1; c < C; c++) mx = z[c] > mx ? z[c] : mx;
        double sum = 0.0;
        for (int c = 0; c < C; c++) {
            p[c] = expf(z[c] - mx);
            sum += p[c];
        }
        float inv = (float)(1.0 / sum);
        for (int c = 0; c < C; c++) p[c] *= inv;
        /* loss = logsumexp(z) - z[y], computed without log(0) */
        total += log(sum) + (double)mx - (double)z[labels[b]];
    }
    zero_pad(probs, B, C, ld);
    return total;
}

static void cpu_softmax_xent_backward(float *dlogits, const float *probs, const int32_t *labels,
                                      int B, int C, int ld, float scale) {
    for (int b = 0; b < B; b++) {
        const float *p = probs + (size_t)b * ld;
        float *d = dlogits + (size_t)b * ld;
        for (int c = 0; c < C; c++) d[c] = p[c] * scale;
        d[labels[b]] -= scale;
    }
    zero_pad(dlogits, B, C, ld);
}

static int64_t cpu_count_correct(const float *logits, const int32_t *labels, int B, int C, int ld) {
    int64_t n = 0;
    for (int b = 0; b < B; b++) {
        const float *z = logits + (size_t)b * ld;
        int best = 0;
        for (int c = 1; c < C; c++)
            if (z[c] > z[best]) best = c;
        n += best == labels[b];
    }
    return n;
}

static double cpu_sumsq(const float *x, size_t n) {
    size_t nb = (n + SUMSQ_BLOCK - 1) / SUMSQ_BLOCK;
    double stack[64];
    double *part = nb <= 64 ? stack : malloc(nb * sizeof(double));
    if (!part) abort();
#pragma omp parallel for schedule(static) if (n >= MT_OMP_MIN)
    for (size_t blk = 0; blk < nb; blk++) {
        size_t i0 = blk * SUMSQ_BLOCK, i1 = i0 + SUMSQ_BLOCK < n ? i0 + SUMSQ_BLOCK : n;
        /* 8 interleaved partial sums: vectorizes, and the order is fixed. */
        double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        size_t i = i0;
        for (; i + 8 <= i1; i += 8)
            for (int j = 0; j < 8; j++) acc[j] += (double)x[i + j] * (double)x[i + j];
        double s =
            ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
        for (; i < i1; i++) s += (double)x[i] * x[i];
        part[blk] = s;
    }
    double total = 0.0;
    for (size_t blk = 0; blk < nb; blk++) total += part[blk];
    if (part != stack) free(part);
    return total;
}

static void cpu_sumsq_multi(double *out, const float *x, int nseg, const size_t *off,
                            const size_t *n) {
    for (int i = 0; i < nseg; i++) out[i] = cpu_sumsq(x + off[i], n[i]);
}

static void cpu_to_bf16(uint16_t *dst, const float *src, size_t n) {
#pragma omp parallel for schedule(static) if (n >= MT_OMP_MIN)
    for (size_t i = 0; i < n; i++) dst[i] = mt_bf16_bits(src[i]);
}

static void cpu_from_bf16(float *dst, const uint16_t *src, size_t n) {
#pragma omp parallel for schedule(static) if (n >= MT_OMP_MIN)
    for (size_t i = 0; i < n; i++) dst[i] = mt_bf16_value(src[i]);
}

static void cpu_scale(float *x, float s, size_t n) {
    if (s == 0.0f) { /* x * 0 keeps a finite value's sign of zero, and turns NaN/Inf into 0 */
#pragma omp parallel for schedule(static) if (n >= MT_OMP_MIN)
        for (size_t i = 0; i < n; i++) x[i] = isfinite(x[i]) ? x[i] * 0.0f : 0.0f;
        return;
    }
#pragma omp parallel for schedule(static) if (n >= MT_OMP_MIN)
    for (size_t i = 0; i < n; i++) x[i] *= s;
}

static void cpu_adamw_update(float *p, const float *g, float *m, float *v, size_t n, float lr,
                             float beta1, float beta2, float eps, float wd, float bc1, float bc2) {
    float step = lr / bc1;
    float inv_sqrt_bc2 = 1.0f / sqrtf(bc2);
    float decay = 1.0f - lr * wd;
#pragma omp parallel for simd schedule(static) if (n >= MT_OMP_MIN)
    for (size_t i = 0; i < n; i++)
        mt_adamw_elem(&p[i], &m[i], &v[i], g[i], beta1, beta2, eps, step, inv_sqrt_bc2, decay);
}

static void cpu_sgd_update(float *p, const float *g, float *buf, size_t n, float lr, float momentum,
                           float wd) {
#pragma omp parallel for schedule(static) if (n >= MT_OMP_MIN)
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] + wd * p[i];
        float b = momentum * buf[i] + gi;
        buf[i] = b;
        p[i] -= lr * b;
    }
}

static const mt_backend cpu_backend = {
    .name = "cpu",
    .host_memory = 1,
    .vocab_align = 1, /* the CPU's numbers stay those of the plain vocabulary */
    .set_precision = mt_cpu_set_precision,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .to_device = cpu_copy,
    .to_host = cpu_copy,
    .synchronize = cpu_synchronize,
    .matmul = cpu_matmul,
    .bias_add = cpu_bias_add,
    .bias_grad = cpu_bias_grad,
    .relu_forward = cpu_relu_forward,
    .relu_backward = cpu_relu_backward,
    .gelu_forward = cpu_gelu_forward,
    .gelu_backward = cpu_gelu_backward,
    .softmax_xent_forward = cpu_softmax_xent_forward,
    .softmax_xent_backward = cpu_softmax_xent_backward,
    .count_correct = cpu_count_correct,
    .add = mt_cpu_add,
    .accumulate = mt_cpu_accumulate,
    .layernorm_forward = mt_cpu_layernorm_forward,
    .layernorm_backward = mt_cpu_layernorm_backward,
    .attention_forward = mt_cpu_attention_forward,
    .attention_backward = mt_cpu_attention_backward,
    .flash_attention_forward = mt_cpu_flash_attention_forward,
    .flash_attention_backward = mt_cpu_flash_attention_backward,
    .embedding_forward = mt_cpu_embedding_forward,
    .embedding_backward = mt_cpu_embedding_backward,
    .dropout_forward = mt_cpu_dropout_forward,
    .dropout_backward = mt_cpu_dropout_backward,
    .sumsq = cpu_sumsq,
    .scale = cpu_scale,
    .to_bf16 = cpu_to_bf16,
    .from_bf16 = cpu_from_bf16,
    .adamw_update = cpu_adamw_update,
    .sgd_update = cpu_sgd_update,
    .residual_layernorm_forward = mt_cpu_residual_layernorm_forward,
    .bias_gelu_forward = mt_cpu_bias_gelu_forward,
    .gelu_bias_backward = mt_cpu_gelu_bias_backward,
    .xent_fused = mt_cpu_xent_fused,
    .matmul_bf16 = mt_cpu_matmul_bf16,
    .sumsq_multi = cpu_sumsq_multi,
    .adamw_multi = mt_cpu_adamw_multi,
};

const mt_backend *mt_backend_cpu(void) {
    return &cpu_backend;
}

char *openblas_get_config(void);

void mt_backend_blas_version(char *buf, size_t n) {
    snprintf(buf, n, "%s", openblas_get_config());
}
