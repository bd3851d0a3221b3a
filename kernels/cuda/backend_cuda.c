/* backend_cuda.c - the CUDA backend's table, memory and cuBLAS matmul (see
 * backend_cuda.h); the other ops are the .cu files of cuda_ops.h. */
#include "kernels/cuda/backend_cuda.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/cuda/cuda_ops.h"

void mt_cuda_check(int err, const char *what, const char *file, int line) {
    if (err == 0) return;
    /* cudaError_t and cublasStatus_t both use 0 for success; the runtime's
     * message is only meaningful for the former */
    fprintf(stderr, "mpitrain: error: CUDA call %s failed with code %d (%s) at %s:%d\n", what, err,
            cudaGetErrorString((cudaError_t)err), file, line);
    abort();
}

int mt_cuda_probe(char *why, size_t n) {
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) { /* no driver reads as error 35, not as 0 devices */
        snprintf(why, n, "no usable CUDA device (%s)", cudaGetErrorString(err));
        cudaGetLastError(); /* clear it */
        return 0;
    }
    if (count == 0) snprintf(why, n, "no CUDA device");
    return count;
}

static float *cuda_alloc(size_t n) {
    void *p = NULL;
    size_t bytes = (n ? n : 1) * sizeof(float);
    if (cudaMalloc(&p, bytes) != cudaSuccess) {
        cudaGetLastError();
        return NULL; /* callers report out of memory */
    }
    MT_CUDA_CHECK(cudaMemset(p, 0, bytes));
    return p;
}

static void cuda_free(void *p) {
    if (p) MT_CUDA_CHECK(cudaFree(p));
}

static void cuda_to_device(float *dst, const float *src, size_t n) {
    MT_CUDA_CHECK(cudaMemcpy(dst, src, n * sizeof(float), cudaMemcpyHostToDevice));
}

static void cuda_to_host(float *dst, const float *src, size_t n) {
    MT_CUDA_CHECK(cudaMemcpy(dst, src, n * sizeof(float), cudaMemcpyDeviceToHost));
}

static void cuda_synchronize(void) {
    MT_CUDA_CHECK(cudaDeviceSynchronize());
}

static cublasHandle_t blas(void) {
    static cublasHandle_t h;
    if (!h) {
        MT_CUDA_CHECK(cublasCreate(&h));
        /* fp32 means fp32: no TF32 tensor-core rounding in the reference precision */
        MT_CUDA_CHECK(cublasSetMathMode(h, CUBLAS_PEDANTIC_MATH));
    }
    return h;
}

/* Row-major C = alpha op(A) op(B) + beta C is column-major
 * C^T = alpha op(B)^T op(A)^T + beta C^T: the same buffers, operands swapped. */
void mt_cuda_matmul(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                    int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    if (M == 0 || N == 0) return;
    MT_CUDA_CHECK(cublasSgemm(blas(), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                              trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha, B, ldb, A, lda,
                              &beta, C, ldc));
}

static const mt_backend cuda_backend = {
    .name = "cuda",
    .alloc = cuda_alloc,
    .free = cuda_free,
    .to_device = cuda_to_device,
    .to_host = cuda_to_host,
    .synchronize = cuda_synchronize,
    .matmul = mt_cuda_matmul,
    .bias_add = mt_cuda_bias_add,
    .bias_grad = mt_cuda_bias_grad,
    .relu_forward = mt_cuda_relu_forward,
    .relu_backward = mt_cuda_relu_backward,
    .gelu_forward = mt_cuda_gelu_forward,
    .gelu_backward = mt_cuda_gelu_backward,
    .softmax_xent_forward = mt_cuda_softmax_xent_forward,
    .softmax_xent_backward = mt_cuda_softmax_xent_backward,
    .count_correct = mt_cuda_count_correct,
    .add = mt_cuda_add,
    .accumulate = mt_cuda_accumulate,
    .layernorm_forward = mt_cuda_layernorm_forward,
    .layernorm_backward = mt_cuda_layernorm_backward,
    .attention_forward = mt_cuda_attention_forward,
    .attention_backward = mt_cuda_attention_backward,
    .embedding_forward = mt_cuda_embedding_forward,
    .embedding_backward = mt_cuda_embedding_backward,
    .dropout_forward = mt_cuda_dropout_forward,
    .dropout_backward = mt_cuda_dropout_backward,
    .sumsq = mt_cuda_sumsq,
    .scale = mt_cuda_scale,
    .adamw_update = mt_cuda_adamw_update,
    .sgd_update = mt_cuda_sgd_update,
};

const mt_backend *mt_backend_cuda(void) {
    return &cuda_backend;
}
