/* backend_cuda.c - the CUDA backend's table, memory and cuBLAS matmul (see
 * backend_cuda.h); the other ops are the .cu files of cuda_ops.h. */
#include "kernels/cuda/backend_cuda.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_ops.h"

int mt_cuda_sync_mode(void) {
    static int mode = -1; /* (a benign race: every thread computes the same) */
    if (mode < 0) {
        const char *v = getenv("MPITRAIN_CUDA_SYNC");
        mode = v && strcmp(v, "1") == 0;
    }
    return mode;
}

void mt_cuda_check(int err, const char *what, const char *file, int line) {
    if (err == 0) return;
    cudaError_t e = (cudaError_t)err;
    /* A kernel's fault surfaces at the next call that synchronises: say how
     * to find the kernel, unless that mode is on already or this is plain
     * out of memory. */
    int hint = !mt_cuda_sync_mode() && e != cudaErrorMemoryAllocation;
    fprintf(stderr, "mpitrain: error: CUDA call %s failed: %s (%s) at %s:%d%s\n", what,
            cudaGetErrorName(e), cudaGetErrorString(e), file, line,
            hint ? "; a kernel before it may have failed: MPITRAIN_CUDA_SYNC=1 names it" : "");
    abort();
}

void mt_cublas_check(int status, const char *what, const char *file, int line) {
    if (status == CUBLAS_STATUS_SUCCESS) return;
    cublasStatus_t st = (cublasStatus_t)status;
    fprintf(stderr, "mpitrain: error: cuBLAS call %s failed: %s (%s) at %s:%d\n", what,
            cublasGetStatusName(st), cublasGetStatusString(st), file, line);
    abort();
}

void mt_cuda_launched(const char *kernel, const char *file, int line) {
    cudaError_t e = cudaGetLastError();
    const char *when = "to launch";
    if (e == cudaSuccess && mt_cuda_sync_mode()) {
        e = cudaDeviceSynchronize();
        when = "while running";
    }
    if (e == cudaSuccess) return;
    fprintf(stderr, "mpitrain: error: CUDA kernel %s failed %s: %s (%s) at %s:%d\n", kernel, when,
            cudaGetErrorName(e), cudaGetErrorString(e), file, line);
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

/* The legacy default stream has run dry: the kernels, the NCCL calls
 * queued on it and the buckets' side stream joined into it by an event. An
 * error other than "not ready" counts as done (the next wait reports it). */
static int cuda_queue_done(void) {
    return cudaStreamQuery(0) != cudaErrorNotReady;
}

/* Pinned host memory: a copy from it is queued and the host goes on. */
static float *cuda_host_alloc(size_t n) {
    void *p = NULL;
    size_t bytes = (n ? n : 1) * sizeof(float);
    if (cudaMallocHost(&p, bytes) != cudaSuccess) {
        cudaGetLastError();
        return NULL; /* callers report out of memory */
    }
    memset(p, 0, bytes);
    return p;
}

static void cuda_host_free(void *p) {
    if (p) MT_CUDA_CHECK(cudaFreeHost(p));
}

/* Behind the kernels queued so far on the legacy default stream, theirs. */
static void cuda_to_device_async(float *dst, const float *src, size_t n) {
    MT_CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyHostToDevice, 0));
}

/* The timer's marks: events recorded on the default stream, made as the
 * marks of a step first need them and kept (a step has a few per
 * micro-batch: the pipeline's busy time). */
static cudaEvent_t *marks;
static int marks_n, marks_cap, marks_broken;

static int cuda_timer_mark(void) {
    if (marks_broken) return -1;
    if (marks_n == marks_cap) {
        int cap = marks_cap ? 2 * marks_cap : 64;
        cudaEvent_t *m = realloc(marks, (size_t)cap * sizeof *m);
        if (!m) { /* no timing then, rather than no training */
            marks_broken = 1;
            return -1;
        }
        marks = m;
        for (int i = marks_cap; i < cap; i++) MT_CUDA_CHECK(cudaEventCreate(&marks[i]));
        marks_cap = cap;
    }
    MT_CUDA_CHECK(cudaEventRecord(marks[marks_n], 0));
    return marks_n++;
}

static double cuda_timer_seconds(int a, int b) {
    if (a < 0 || b < 0 || a >= marks_n || b >= marks_n) return 0.0;
    float ms = 0.0f;
    MT_CUDA_CHECK(cudaEventSynchronize(marks[b]));
    MT_CUDA_CHECK(cudaEventElapsedTime(&ms, marks[a], marks[b]));
    return 1e-3 * (double)ms;
}

static void cuda_timer_reset(void) {
    marks_n = 0;
}

/* Matmul precision (set_precision in kernels/backend.h): 1 bf16 operands with
 * fp32 accumulation, 0 true fp32. Read by every matmul, including attention's
 * products (mt_cuda_matmul_batched); mt_cuda_precision_bf16 reads it. */
static int cuda_bf16;

void mt_cuda_set_precision(int bf16) {
    cuda_bf16 = bf16 != 0;
}

int mt_cuda_precision_bf16(void) {
    return cuda_bf16;
}

/* The handle, its math mode matching the precision. fp32: CUBLAS_PEDANTIC_MATH,
 * so cublasSgemm computes in fp32 proper (no TF32 tensor-core rounding). bf16:
 * the GEMM names its compute type explicitly (CUBLAS_COMPUTE_32F_FAST_16BF),
 * and cublas_api.h documents the pedantic mode as acting on cublas<T> calls
 * and on Ex calls given a cudaDataType compute type only; the handle is still
 * switched to CUBLAS_DEFAULT_MATH for bf16, so the bf16 path does not depend
 * on that reading, and back to pedantic for fp32. */
static cublasHandle_t blas(void) {
    static cublasHandle_t h;
    static int mode_bf16 = -1; /* the precision h's math mode was set for */
    if (!h) MT_CUBLAS_CHECK(cublasCreate(&h));
    if (mode_bf16 != cuda_bf16) {
        MT_CUBLAS_CHECK(
            cublasSetMathMode(h, cuda_bf16 ? CUBLAS_DEFAULT_MATH : CUBLAS_PEDANTIC_MATH));
        mode_bf16 = cuda_bf16;
    }
    return h;
}

/* Row-major C = alpha op(A) op(B) + beta C is column-major
 * C^T = alpha op(B)^T op(A)^T + beta C^T: the same buffers, operands swapped.
 * bf16: the fp32 A and B are converted to bf16 inside cuBLAS and multiplied
 * on the tensor cores with fp32 accumulation into the fp32 C. */
void mt_cuda_matmul(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                    int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    if (M == 0 || N == 0) return;
    cublasOperation_t opa = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t opb = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasHandle_t h = blas();
    if (cuda_bf16)
        MT_CUBLAS_CHECK(cublasGemmEx(h, opb, opa, N, M, K, &alpha, B, CUDA_R_32F, ldb, A,
                                     CUDA_R_32F, lda, &beta, C, CUDA_R_32F, ldc,
                                     CUBLAS_COMPUTE_32F_FAST_16BF, CUBLAS_GEMM_DEFAULT));
    else
        MT_CUBLAS_CHECK(cublasSgemm(h, opb, opa, N, M, K, &alpha, B, ldb, A, lda, &beta, C, ldc));
}

/* mt_cuda_matmul on batch independent problems in one cuBLAS call: problem i
 * reads A + i*strideA and B + i*strideB and writes C + i*strideC (strides in
 * floats). The same row-major to column-major swap; fp32 computes with
 * CUBLAS_COMPUTE_32F_PEDANTIC, what the pedantic handle makes of cublasSgemm
 * (true fp32, no TF32), bf16 with CUBLAS_COMPUTE_32F_FAST_16BF. */
void mt_cuda_matmul_batched(int trans_a, int trans_b, int M, int N, int K, float alpha,
                            const float *A, int lda, long long strideA, const float *B, int ldb,
                            long long strideB, float beta, float *C, int ldc, long long strideC,
                            int batch) {
    if (M == 0 || N == 0 || batch <= 0) return;
    cublasOperation_t opa = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t opb = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasHandle_t h = blas();
    cublasComputeType_t ct = cuda_bf16 ? CUBLAS_COMPUTE_32F_FAST_16BF : CUBLAS_COMPUTE_32F_PEDANTIC;
    MT_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        h, opb, opa, N, M, K, &alpha, B, CUDA_R_32F, ldb, strideB, A, CUDA_R_32F, lda, strideA,
        &beta, C, CUDA_R_32F, ldc, strideC, batch, ct, CUBLAS_GEMM_DEFAULT));
}

static const mt_backend cuda_backend = {
    .name = "cuda",
    .host_memory = 0,
    .set_precision = mt_cuda_set_precision,
    .alloc = cuda_alloc,
    .free = cuda_free,
    .to_device = cuda_to_device,
    .to_host = cuda_to_host,
    .synchronize = cuda_synchronize,
    .queue_done = cuda_queue_done,
    .host_alloc = cuda_host_alloc,
    .host_free = cuda_host_free,
    .to_device_async = cuda_to_device_async,
    .timer_mark = cuda_timer_mark,
    .timer_seconds = cuda_timer_seconds,
    .timer_reset = cuda_timer_reset,
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
    .to_bf16 = mt_cuda_to_bf16,
    .from_bf16 = mt_cuda_from_bf16,
    .adamw_update = mt_cuda_adamw_update,
    .sgd_update = mt_cuda_sgd_update,
    .residual_layernorm_forward = mt_cuda_residual_layernorm_forward,
    .bias_gelu_forward = mt_cuda_bias_gelu_forward,
    .gelu_bias_backward = mt_cuda_gelu_bias_backward,
    .xent_fused = mt_cuda_xent_fused,
    .sumsq_multi = mt_cuda_sumsq_multi,
    .adamw_multi = mt_cuda_adamw_multi,
    .matmul_bias = mt_cuda_matmul_bias,
    .matmul_bias_gelu = mt_cuda_matmul_bias_gelu,
    .matmul_dgelu = mt_cuda_matmul_dgelu,
    .matmul_wgrad_bgrad = mt_cuda_matmul_wgrad_bgrad,
    .matmul_bf16 = mt_cuda_matmul_bf16,
    .flash_attention_forward = mt_cuda_flash_attention_forward,
    .flash_attention_backward = mt_cuda_flash_attention_backward,
    .flash_max_head = MT_CUDA_FLASH_MAX_HEAD,
    .vocab_align = 128, /* cuBLAS's tiles: GPT-2's 50257 becomes 50304 = 393 x 128 */
};

const mt_backend *mt_backend_cuda(void) {
    return &cuda_backend;
}
