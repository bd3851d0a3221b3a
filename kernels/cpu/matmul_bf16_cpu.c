/*
 * matmul_bf16_cpu.c - the CPU's product of bfloat16 operands, as backend.h
 * specifies it: A and B widened to fp32 (exact: a bf16 value is an fp32
 * value) into a scratch copy with the same leads, then the CPU backend's own
 * matmul in the precision set (bf16 mode rounds the operands again, which
 * changes nothing, so the result is bitwise the fp32-operand product's) and
 * the epilogue as the composition of its unfused and fused ops that the
 * cuBLASLt ops are specified by. The CPU gains nothing from bf16 operands
 * (it emulates bf16, or converts for cblas_sbgemm); this is the reference
 * the CUDA backend's cuBLASLt version is compared with, and what lets the
 * GPT take the same path on both.
 */
#include "matmul_bf16_cpu.h"

#include <stddef.h>

#include "kernels/backend.h"
#include "kernels/bf16.h"
#include "kernels/cpu/gpt_cpu.h"

/* rows x cols of bf16 bits (lead ld) widened into dst (lead ld) */
static void widen(float *dst, const uint16_t *src, int rows, int cols, int ld) {
#pragma omp parallel for schedule(static) if ((size_t)rows * cols >= (1u << 15))
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            dst[(size_t)r * ld + c] = mt_bf16_value(src[(size_t)r * ld + c]);
}

/* floats a stored (rows, cols) operand with lead ld spans */
static size_t span(int rows, int cols, int ld) {
    return rows > 0 && cols > 0 ? (size_t)(rows - 1) * (size_t)ld + (size_t)cols : 0;
}

void mt_cpu_matmul_bf16(int epi, int trans_a, int trans_b, int M, int N, int K, float alpha,
                        const uint16_t *A, int lda, const uint16_t *B, int ldb, float beta,
                        const float *bias, float *pre, float *C, float *db, int ldc) {
    const mt_backend *be = mt_backend_cpu();
    /* A is stored (M,K), or (K,M) when transposed; B (K,N), or (N,K) */
    int ar = trans_a ? K : M, ac = trans_a ? M : K;
    int br = trans_b ? N : K, bc = trans_b ? K : N;
    static float *scratch; /* [A's copy | B's copy], grown on demand, never freed */
    static size_t cap;
    size_t na = (span(ar, ac, lda) + 15) & ~(size_t)15;
    float *s = mt_cpu_scratch(&scratch, &cap, na + span(br, bc, ldb));
    widen(s, A, ar, ac, lda);
    widen(s + na, B, br, bc, ldb);
    const float *a = s, *b = s + na;
    size_t n = (size_t)M * (size_t)N;
    switch (epi) {
    case MT_EPI_BIAS:
        be->matmul(trans_a, trans_b, M, N, K, 1.0f, a, lda, b, ldb, 0.0f, C, ldc);
        be->bias_add(C, bias, M, N);
        break;
    case MT_EPI_BIAS_GELU:
        be->matmul(trans_a, trans_b, M, N, K, 1.0f, a, lda, b, ldb, 0.0f, pre, ldc);
        be->bias_gelu_forward(pre, C, bias, M, N);
        break;
    case MT_EPI_DGELU:
        be->matmul(trans_a, trans_b, M, N, K, 1.0f, a, lda, b, ldb, 0.0f, C, ldc);
        if (db)
            be->gelu_bias_backward(C, db, C, pre, M, N);
        else
            be->gelu_backward(C, C, pre, n);
        break;
    default:
        be->matmul(trans_a, trans_b, M, N, K, alpha, a, lda, b, ldb, beta, C, ldc);
    }
}
