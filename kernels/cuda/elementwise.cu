/*
 * elementwise.cu - CUDA twins of the CPU's elementwise ops (kernels/backend.h):
 * bias add and bias gradient, ReLU, add, accumulate, scale, bfloat16
 * storage conversions, dropout (GELU is gelu.cu).
 *
 * Each output element is written by one thread with the CPU's formula, so the
 * results are bitwise the CPU's except bias_grad over more than
 * MT_CUDA_COL_ROWS rows (summed in fixed chunks, common.cuh). nvcc fuses a * b + c
 * into one rounding (-fmad=true) where the CPU (ISO C, no contraction) rounds
 * twice; products whose rounding matters for equality go through __fmul_rn,
 * which is never fused.
 */
#include <cuda_runtime.h>
#include <stdint.h>

#include "kernels/bf16.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_ops.h"

/* Work buffer for bias_grad's partial sums: grown on demand, never freed. */
static mt_cuda_work work;

/* ---- bias ---- */

static __global__ void bias_add_kernel(float *y, const float *b, size_t n, size_t cols) {
    MT_CUDA_GRID_STRIDE(i, n) y[i] += b[i % cols];
}

void mt_cuda_bias_add(float *y, const float *b, int rows, int cols) {
    size_t n = (size_t)(rows > 0 ? rows : 0) * (size_t)(cols > 0 ? cols : 0);
    if (n == 0) return;
    bias_add_kernel<<<mt_cuda_blocks_for(n), MT_CUDA_THREADS>>>(y, b, n, (size_t)cols);
    MT_CUDA_LAUNCHED("bias_add_kernel");
}

/* bias_grad, pass 1 (common.cuh's column sums over row chunks): thread
 * (k, c) sums rows [k*MT_CUDA_COL_ROWS, (k+1)*MT_CUDA_COL_ROWS) of
 * column c in row order into part(nchunks, cols); chunk 0 starts from beta*db
 * (0 when beta == 0, as the CPU, so a NaN in an unset db does not leak in).
 * With a single chunk part is db itself and the result is bitwise the CPU's
 * (which sums all rows in order). A warp reads 32 adjacent columns of a row:
 * coalesced. */
static __global__ void bias_grad_partial(float *part, const float *db, const float *dy, int rows,
                                         int cols, int nchunks, float beta) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    for (int k = blockIdx.y; k < nchunks; k += gridDim.y) {
        int r0 = k * MT_CUDA_COL_ROWS;
        int r1 = rows - r0 < MT_CUDA_COL_ROWS ? rows : r0 + MT_CUDA_COL_ROWS;
        float acc = k == 0 && beta != 0.0f ? __fmul_rn(beta, db[c]) : 0.0f;
        for (int r = r0; r < r1; r++) acc += dy[(size_t)r * cols + c];
        part[(size_t)k * cols + c] = acc;
    }
}

/* Rows in chunks (common.cuh), pass 2 by mt_cuda_colsum_chunks: the result
 * is the same on every GPU and every run. */
void mt_cuda_bias_grad(float *db, const float *dy, int rows, int cols, float beta) {
    if (cols <= 0) return;
    if (rows < 0) rows = 0;
    int nchunks = mt_cuda_col_chunks(rows);
    size_t part_bytes = (size_t)nchunks * cols * sizeof(float);
    float *part = nchunks == 1 ? db : (float *)mt_cuda_work_get(&work, part_bytes);
    unsigned col_blocks = mt_cuda_col_blocks(cols);
    dim3 grid(col_blocks, mt_cuda_row_blocks(nchunks));
    bias_grad_partial<<<grid, MT_CUDA_THREADS>>>(part, db, dy, rows, cols, nchunks, beta);
    MT_CUDA_LAUNCHED("bias_grad_partial");
    if (nchunks == 1) return;
    mt_cuda_colsum_chunks<float><<<col_blocks, MT_CUDA_THREADS>>>(db, part, cols, nchunks);
    MT_CUDA_LAUNCHED("mt_cuda_colsum_chunks (bias_grad)");
}

/* ---- activations ---- */

static __global__ void relu_forward_kernel(float *y, const float *x, size_t n) {
    MT_CUDA_GRID_STRIDE(i, n) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

static __global__ void relu_backward_kernel(float *dx, const float *dy, const float *x, size_t n) {
    MT_CUDA_GRID_STRIDE(i, n) dx[i] = x[i] > 0.0f ? dy[i] : 0.0f;
}

void mt_cuda_relu_forward(float *y, const float *x, size_t n) {
    if (n == 0) return;
    relu_forward_kernel<<<mt_cuda_blocks_for(n), MT_CUDA_THREADS>>>(y, x, n);
    MT_CUDA_LAUNCHED("relu_forward_kernel");
}

void mt_cuda_relu_backward(float *dx, const float *dy, const float *x, size_t n) {
    if (n == 0) return;
    relu_backward_kernel<<<mt_cuda_blocks_for(n), MT_CUDA_THREADS>>>(dx, dy, x, n);
    MT_CUDA_LAUNCHED("relu_backward_kernel");
}

/* ---- add, accumulate, scale ---- */

static __global__ void add_kernel(float *out, const float *a, const float *b, size_t n) {
    MT_CUDA_GRID_STRIDE(i, n) out[i] = a[i] + b[i];
}

static __global__ void accumulate_kernel(float *dst, const float *src, size_t n) {
    MT_CUDA_GRID_STRIDE(i, n) dst[i] += src[i];
}

/* as the CPU's: with s = 0, NaN and Inf become 0 (a finite x keeps x * 0);
 * the formula is optim.cu's too (adamw_multi's gradient scaling) */
static __global__ void scale_kernel(float *x, float s, size_t n) {
    MT_CUDA_GRID_STRIDE(i, n) x[i] = mt_cuda_scale_elem(x[i], s);
}

void mt_cuda_add(float *out, const float *a, const float *b, size_t n) {
    if (n == 0) return;
    add_kernel<<<mt_cuda_blocks_for(n), MT_CUDA_THREADS>>>(out, a, b, n);
    MT_CUDA_LAUNCHED("add_kernel");
}

void mt_cuda_accumulate(float *dst, const float *src, size_t n) {
    if (n == 0) return;
    accumulate_kernel<<<mt_cuda_blocks_for(n), MT_CUDA_THREADS>>>(dst, src, n);
    MT_CUDA_LAUNCHED("accumulate_kernel");
}

void mt_cuda_scale(float *x, float s, size_t n) {
    if (n == 0) return;
    scale_kernel<<<mt_cuda_blocks_for(n), MT_CUDA_THREADS>>>(x, s, n);
    MT_CUDA_LAUNCHED("scale_kernel");
}

/* ---- bfloat16 storage ---- */

static __global__ void to_bf16_kernel(uint16_t *dst, const float *src, size_t n) {
    MT_CUDA_GRID_STRIDE(i, n) dst[i] = mt_bf16_bits(src[i]);
}

static __global__ void from_bf16_kernel(float *dst, const uint16_t *src, size_t n) {
    MT_CUDA_GRID_STRIDE(i, n) dst[i] = mt_bf16_value(src[i]);
}

void mt_cuda_to_bf16(uint16_t *dst, const float *src, size_t n) {
    if (n == 0) return;
    to_bf16_kernel<<<mt_cuda_blocks_for(n), MT_CUDA_THREADS>>>(dst, src, n);
    MT_CUDA_LAUNCHED("to_bf16_kernel");
}

void mt_cuda_from_bf16(float *dst, const uint16_t *src, size_t n) {
    if (n == 0) return;
    from_bf16_kernel<<<mt_cuda_blocks_for(n), MT_CUDA_THREADS>>>(dst, src, n);
    MT_CUDA_LAUNCHED("from_bf16_kernel");
}

/* ---- dropout ----
 * The mask must equal the CPU's bit for bit, so this is core/rng.c's
 * mt_rng_u64 / mt_rng_uniform, word for word, split in two: the key depends
 * only on (seed, stream) and is computed once on the host (the same code
 * runs there), the per-element part on the device. */

static __host__ __device__ uint64_t rng_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static __host__ __device__ uint64_t rng_key(uint64_t seed, uint64_t stream) {
    return rng_mix64(seed ^ 0x6a09e667f3bcc909ULL) ^ stream;
}

/* mt_rng_uniform(seed, stream, index) for key = rng_key(seed, stream): the
 * top 24 bits (exact in a float) times 2^-24, in [0, 1). */
static __device__ float rng_uniform(uint64_t key, uint64_t index) {
    uint64_t r = rng_mix64(rng_mix64(key + index * 0x9e3779b97f4a7c15ULL) ^ key);
    return (float)(r >> 40) * (1.0f / 16777216.0f);
}

/* Element i is kept when uniform(offset + i) >= p; the index wraps mod 2^64
 * exactly as the CPU's uint64_t arithmetic does. */
static __global__ void dropout_kernel(float *y, const float *x, size_t n, float p, float scale,
                                      uint64_t key, uint64_t offset) {
    MT_CUDA_GRID_STRIDE(i, n) y[i] = rng_uniform(key, offset + i) >= p ? x[i] * scale : 0.0f;
}

static void dropout_apply(float *y, const float *x, size_t n, float p, uint64_t seed,
                          uint64_t stream, uint64_t offset) {
    if (n == 0) return;
    if (p == 0.0f) {
        if (y != x)
            MT_CUDA_CHECK(cudaMemcpyAsync(y, x, n * sizeof(float), cudaMemcpyDeviceToDevice, 0));
        return;
    }
    float scale = 1.0f / (1.0f - p); /* on the host, as the CPU computes it */
    dropout_kernel<<<mt_cuda_blocks_for(n), MT_CUDA_THREADS>>>(y, x, n, p, scale,
                                                               rng_key(seed, stream), offset);
    MT_CUDA_LAUNCHED("dropout_kernel");
}

void mt_cuda_dropout_forward(float *y, const float *x, size_t n, float p, uint64_t seed,
                             uint64_t stream, uint64_t offset) {
    dropout_apply(y, x, n, p, seed, stream, offset);
}

void mt_cuda_dropout_backward(float *dx, const float *dy, size_t n, float p, uint64_t seed,
                              uint64_t stream, uint64_t offset) {
    dropout_apply(dx, dy, n, p, seed, stream, offset);
}
