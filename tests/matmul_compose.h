/*
 * matmul_compose.h - the compositions kernels/backend.h specifies the
 * products with epilogues by (matmul_bias, matmul_bias_gelu, matmul_dgelu,
 * matmul_wgrad_bgrad), on a host-memory backend's unfused ops, shared by
 * the tests that need them (test_matmul_lt, test_backend_cmp,
 * test_gpt_model) instead of one copy each.
 *
 * Where the backend has the fused bias + GELU ops, matmul_bias_gelu and
 * matmul_dgelu (with db) compose with them, as the GPT does without the
 * product ops: a model run through mt_compose_backend() then computes the
 * same float operations in the same order as on the plain CPU backend.
 */
#ifndef MT_MATMUL_COMPOSE_H
#define MT_MATMUL_COMPOSE_H

#include "kernels/backend.h"

void mt_compose_matmul_bias(const mt_backend *be, int trans_a, int trans_b, int M, int N, int K,
                            const float *A, int lda, const float *B, int ldb, const float *bias,
                            float *C, int ldc);
void mt_compose_matmul_bias_gelu(const mt_backend *be, int trans_a, int trans_b, int M, int N,
                                 int K, const float *A, int lda, const float *B, int ldb,
                                 const float *bias, float *pre, float *out, int ldc);
void mt_compose_matmul_dgelu(const mt_backend *be, int trans_a, int trans_b, int M, int N, int K,
                             const float *A, int lda, const float *B, int ldb, const float *pre,
                             float *dpre, float *db, int ldc);
void mt_compose_matmul_wgrad_bgrad(const mt_backend *be, int M, int N, int K, const float *dy,
                                   int lddy, const float *x, int ldx, float *dW, int lddw,
                                   float *db);

/* The CPU backend's table ("cpu-composed") with the four product ops filled
 * by the compositions above on the CPU's own ops. */
const mt_backend *mt_compose_backend(void);
/* Calls of the composed backend's product ops so far, in the order above. */
extern long mt_compose_calls[4];

#endif
