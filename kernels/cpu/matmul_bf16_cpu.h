/*
 * matmul_bf16_cpu.h - the CPU backend's product of bfloat16 operands
 * (mt_backend.matmul_bf16; contract in kernels/backend.h), defined in
 * matmul_bf16_cpu.c and hooked into the table in backend_cpu.c. Internal to
 * kernels/cpu.
 */
#ifndef MT_MATMUL_BF16_CPU_H
#define MT_MATMUL_BF16_CPU_H

#include <stdint.h>

void mt_cpu_matmul_bf16(int epi, int trans_a, int trans_b, int M, int N, int K, float alpha,
                        const uint16_t *A, int lda, const uint16_t *B, int ldb, float beta,
                        const float *bias, float *pre, float *C, float *db, int ldc);

#endif
