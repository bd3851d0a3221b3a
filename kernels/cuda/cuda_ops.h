/*
 * cuda_ops.h - the CUDA backend's ops, one small .cu file per family, each
 * the device twin of the CPU op of the same name in kernels/backend.h (same
 * arguments and semantics; every pointer is device memory unless noted).
 * backend_cuda.c assembles them into the mt_backend table.
 *
 * Rules every op keeps (the backend comparison test checks them against the
 * CPU backend):
 *   - Deterministic: the same inputs give bitwise the same outputs; no float
 *     atomics; reductions in a fixed order (a fixed tree per block, then a
 *     fixed-order pass over the blocks' partial sums).
 *   - fp32 throughout (fp32 accumulation; double where the CPU op returns or
 *     accumulates double); in bf16 matmul mode the operands of products
 *     (matmul, attention's products) are rounded to bf16, nothing else.
 *   - Launches go to the default stream; ops that return a value to the host
 *     (softmax_xent_forward, count_correct, sumsq) synchronise; xent_fused
 *     and sumsq_multi leave their totals in device memory and do not.
 *   - Work buffers: the file's own lazily grown device buffer, never freed
 *     (a static mt_cuda_work of common.cuh, one per file and process; ops
 *     are called from one thread). adamw_multi also keeps its segment
 *     table on the device between calls (a cache, uploaded again only when
 *     the host arrays describing the segments change).
 */
#ifndef MT_CUDA_OPS_H
#define MT_CUDA_OPS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* elementwise.cu */
void mt_cuda_bias_add(float *y, const float *b, int rows, int cols);
void mt_cuda_bias_grad(float *db, const float *dy, int rows, int cols, float beta);
void mt_cuda_relu_forward(float *y, const float *x, size_t n);
void mt_cuda_relu_backward(float *dx, const float *dy, const float *x, size_t n);
void mt_cuda_add(float *out, const float *a, const float *b, size_t n);
void mt_cuda_accumulate(float *dst, const float *src, size_t n);
void mt_cuda_scale(float *x, float s, size_t n);
void mt_cuda_to_bf16(uint16_t *dst, const float *src, size_t n);
void mt_cuda_from_bf16(float *dst, const uint16_t *src, size_t n);
void mt_cuda_dropout_forward(float *y, const float *x, size_t n, float p, uint64_t seed,
                             uint64_t stream, uint64_t offset);
void mt_cuda_dropout_backward(float *dx, const float *dy, size_t n, float p, uint64_t seed,
                              uint64_t stream, uint64_t offset);

/* gelu.cu (the fused ops' db accumulates, as kernels/backend.h says) */
void mt_cuda_gelu_forward(float *y, const float *x, size_t n);
void mt_cuda_gelu_backward(float *dx, const float *dy, const float *x, size_t n);
void mt_cuda_bias_gelu_forward(float *h, float *g, const float *bias, int N, int C);
void mt_cuda_gelu_bias_backward(float *dx, float *db, const float *dy, const float *h, int N,
                                int C);

/* loss.cu (labels are device int32) */
double mt_cuda_softmax_xent_forward(float *probs, const float *logits, const int32_t *labels, int B,
                                    int C, int ld);
void mt_cuda_softmax_xent_backward(float *dlogits, const float *probs, const int32_t *labels, int B,
                                   int C, int ld, float scale);
int64_t mt_cuda_count_correct(const float *logits, const int32_t *labels, int B, int C, int ld);
/* out (2 doubles, device memory): the loss sum and the hits, nothing waits */
void mt_cuda_xent_fused(float *logits, const int32_t *labels, int N, int V, int ld, double *out);

/* optim.cu */
double mt_cuda_sumsq(const float *x, size_t n);
void mt_cuda_sumsq_multi(double *out, const float *x, int nseg, const size_t *off, const size_t *n);
void mt_cuda_adamw_update(float *p, const float *g, float *m, float *v, size_t n, float lr,
                          float beta1, float beta2, float eps, float wd, float bc1, float bc2);
void mt_cuda_sgd_update(float *p, const float *g, float *buf, size_t n, float lr, float momentum,
                        float wd);
/* p_off, s_off, n, wd are HOST arrays (nseg each); p, g, m, v device */
void mt_cuda_adamw_multi(float *p, const float *g, float *m, float *v, int nseg,
                         const size_t *p_off, const size_t *s_off, const size_t *n, const float *wd,
                         float gscale, float lr, float beta1, float beta2, float eps, float bc1,
                         float bc2);

/* embedding.cu (tokens are device int32) */
void mt_cuda_embedding_forward(float *out, const int32_t *tokens, const float *wte,
                               const float *wpe, int B, int T, int C);
void mt_cuda_embedding_backward(float *dwte, float *dwpe, const float *dout, const int32_t *tokens,
                                int B, int T, int C);

/* layernorm.cu */
void mt_cuda_layernorm_forward(float *out, float *mean, float *rstd, const float *x, const float *w,
                               const float *b, int N, int C);
void mt_cuda_layernorm_backward(float *dx, float *dw, float *db, const float *dout, const float *x,
                                const float *w, const float *mean, const float *rstd, int N, int C);
void mt_cuda_residual_layernorm_forward(float *res, float *out, float *mean, float *rstd,
                                        const float *a, const float *b, const float *w,
                                        const float *bias, int N, int C);

/* attention.cu (its products are mt_cuda_matmul_batched calls) */
void mt_cuda_attention_forward(float *out, float *att, const float *qkv, int B, int T, int C,
                               int NH);
void mt_cuda_attention_backward(float *dqkv, float *datt, const float *dout, const float *qkv,
                                const float *att, int B, int T, int C, int NH);

/* flash_attention.cu: the fused flash attention of kernels/backend.h (causal,
 * no (T,T) matrix; lse (B,NH,T)); the backward OVERWRITES dqkv and is
 * deterministic without atomics (dK/dV and dQ in separate kernels).
 * Supported: head sizes hs = C/NH from 1 to 128 (tiles padded to 32, 64 or
 * 128 columns), any T >= 1, B and NH up to 65535; another hs aborts with one
 * error line (the table's flash_max_head tells the GPT, which then runs the
 * unfused attention, which has no such limit). Work buffer: D (B,NH,T)
 * floats of the backward. */
#define MT_CUDA_FLASH_MAX_HEAD 128
void mt_cuda_flash_attention_forward(float *out, float *lse, const float *qkv, int B, int T, int C,
                                     int NH);
void mt_cuda_flash_attention_backward(float *dqkv, const float *dout, const float *qkv,
                                      const float *out, const float *lse, int B, int T, int C,
                                      int NH);
/* flash_attention_tc.cu: the same on bf16 tensor cores (wmma), called by
 * the two above in bf16 mode for hs <= 64 (B, T >= 1); first the forward: */
void mt_cuda_flash_attention_forward_tc(float *out, float *lse, const float *qkv, int B, int T,
                                        int C, int NH);
/* ... and the backward's dK/dV and dQ kernels, from the rows' lse and
 * D = rowsum(dout * out) (B,NH,T), which the caller computed. */
void mt_cuda_flash_attention_backward_tc(float *dqkv, const float *dout, const float *qkv,
                                         const float *lse, const float *d, int B, int T, int C,
                                         int NH);

/* backend_cuda.c: row-major C(M,N) = alpha op(A) op(B) + beta C through
 * cuBLAS, as the CPU backend's matmul: SGEMM in fp32 (no TF32), GemmEx with
 * CUBLAS_COMPUTE_32F_FAST_16BF (bf16 operands, fp32 accumulation) in bf16 */
void mt_cuda_matmul(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                    int lda, const float *B, int ldb, float beta, float *C, int ldc);
/* backend_cuda.c: batch independent mt_cuda_matmul problems in one call
 * (cublasGemmStridedBatchedEx, same precision rule); problem i reads
 * A + i*strideA, B + i*strideB and writes C + i*strideC (strides in floats). */
void mt_cuda_matmul_batched(int trans_a, int trans_b, int M, int N, int K, float alpha,
                            const float *A, int lda, long long strideA, const float *B, int ldb,
                            long long strideB, float beta, float *C, int ldc, long long strideC,
                            int batch);
/* matmul_lt.c: the products with cuBLASLt epilogues (backend.h's
 * matmul_bias, matmul_bias_gelu, matmul_dgelu, matmul_wgrad_bgrad; same
 * precision rule as mt_cuda_matmul) */
void mt_cuda_matmul_bias(int trans_a, int trans_b, int M, int N, int K, const float *A, int lda,
                         const float *B, int ldb, const float *bias, float *C, int ldc);
void mt_cuda_matmul_bias_gelu(int trans_a, int trans_b, int M, int N, int K, const float *A,
                              int lda, const float *B, int ldb, const float *bias, float *pre,
                              float *out, int ldc);
void mt_cuda_matmul_dgelu(int trans_a, int trans_b, int M, int N, int K, const float *A, int lda,
                          const float *B, int ldb, const float *pre, float *dpre, float *db,
                          int ldc);
void mt_cuda_matmul_wgrad_bgrad(int M, int N, int K, const float *dy, int lddy, const float *x,
                                int ldx, float *dW, int lddw, float *db);
/* matmul_lt.c: backend.h's matmul_bf16 (A and B device bf16 bits; fp32
 * accumulation into the fp32 C in either precision; the epilogues as the
 * four above, the GELU ones from cuBLASLt in bf16 mode only) */
void mt_cuda_matmul_bf16(int epi, int trans_a, int trans_b, int M, int N, int K, float alpha,
                         const uint16_t *A, int lda, const uint16_t *B, int ldb, float beta,
                         const float *bias, float *pre, float *C, float *db, int ldc);
/* matmul_lt.c: frees its cuBLASLt handle, workspace, scratch and cached
 * descriptors and algorithms (made again at the next product) */
void mt_cuda_lt_release(void);
/* The matmul precision (set_precision in kernels/backend.h): 1 bf16, 0 fp32.
 * A kernel with products of its own must round their operands with
 * mt_bf16_round (kernels/bf16.h) when it is 1 (flash_attention.cu does;
 * attention.cu's products go through mt_cuda_matmul_batched). */
void mt_cuda_set_precision(int bf16);
int mt_cuda_precision_bf16(void);
/* Errors where they happen: each aborts that rank with one line naming
 * what failed, with the library's own name and text for the status (used
 * by every file):
 *   mt_cuda_check    a CUDA runtime call (cudaError_t);
 *   mt_cublas_check  a cuBLAS call (cublasStatus_t, by cublasGetStatusName
 *                    and cublasGetStatusString, not the runtime's strings);
 *   mt_cuda_launched right after a kernel launch, naming the kernel: the
 *                    launch's own error (bad configuration), and with
 *                    MPITRAIN_CUDA_SYNC=1 (a debug mode, slow) a device
 *                    synchronisation, so that a fault inside the kernel is
 *                    reported under its name instead of at the next call
 *                    that synchronises. */
void mt_cuda_check(int err, const char *what, const char *file, int line);
void mt_cublas_check(int status, const char *what, const char *file, int line);
void mt_cuda_launched(const char *kernel, const char *file, int line);
/* 1 when MPITRAIN_CUDA_SYNC=1 (read once) */
int mt_cuda_sync_mode(void);

#ifdef __cplusplus
}
#endif

#define MT_CUDA_CHECK(call)      mt_cuda_check((int)(call), #call, __FILE__, __LINE__)
#define MT_CUBLAS_CHECK(call)    mt_cublas_check((int)(call), #call, __FILE__, __LINE__)
#define MT_CUDA_LAUNCHED(kernel) mt_cuda_launched(kernel, __FILE__, __LINE__)

#endif
