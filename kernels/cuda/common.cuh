/*
 * common.cuh - the helpers the CUDA kernel files (the .cu files of
 * kernels/cuda) share, one copy each: launch sizes, the grid-stride loop,
 * the lazily grown work buffer, the fixed-order block reductions and column
 * sums, and the element formulas two files must agree on (scale).
 * Private to kernels/cuda; the ops themselves are declared in cuda_ops.h.
 *
 * Launch sizes and reductions are part of the determinism rule of
 * cuda_ops.h: a grid depends on the problem's size alone, never on the
 * device, and a reduction adds in an order fixed by the block and grid
 * sizes; changing one of these helpers changes the bits of the ops that
 * use it.
 */
#ifndef MT_CUDA_COMMON_CUH
#define MT_CUDA_COMMON_CUH

#include <cuda_runtime.h>
#include <stddef.h>

#include "kernels/cuda/cuda_ops.h"

/* ---- launch sizes ---- */

/* Threads per block of the elementwise, per-column and sumsq kernels; a
 * power of two, which optim.cu's block trees need. */
#define MT_CUDA_THREADS 256
/* Most blocks along a grid dimension (gridDim.y's limit; x keeps it too):
 * grid-stride loops take the rest. */
#define MT_CUDA_MAX_BLOCKS 65535
/* Most threads per block (the hardware's limit; a power of two). */
#define MT_CUDA_MAX_THREADS 1024

/* for (i = this thread's first index; i < n; i += the grid's thread count):
 * every index in [0, n) is taken by exactly one thread. */
#define MT_CUDA_GRID_STRIDE(i, n)                                                                  \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                        \
         i += (size_t)gridDim.x * blockDim.x)

/* Blocks of MT_CUDA_THREADS for a grid-stride loop over n elements (n > 0):
 * one per MT_CUDA_THREADS elements, at most max_blocks. */
static inline unsigned mt_cuda_blocks_for(size_t n, size_t max_blocks = MT_CUDA_MAX_BLOCKS) {
    size_t b = (n + MT_CUDA_THREADS - 1) / MT_CUDA_THREADS;
    return b < max_blocks ? (unsigned)b : (unsigned)max_blocks;
}

/* Blocks along a grid dimension for n rows (n > 0), one row each, at most
 * MT_CUDA_MAX_BLOCKS: the kernel's row loop strides by the grid for the rest. */
static inline unsigned mt_cuda_row_blocks(size_t n) {
    return n < MT_CUDA_MAX_BLOCKS ? (unsigned)n : MT_CUDA_MAX_BLOCKS;
}

/* Blocks covering n columns (n > 0) with one thread per column, threads per block. */
static inline unsigned mt_cuda_col_blocks(size_t n, unsigned threads = MT_CUDA_THREADS) {
    return (unsigned)((n + threads - 1) / threads);
}

/* ---- work buffer ---- */

/* A device work buffer, grown on demand and never freed. Each file keeps its
 * own (a static mt_cuda_work), as cuda_ops.h says: no two files share one. */
typedef struct {
    void *buf;  /* device memory, cap bytes */
    size_t cap; /* bytes */
} mt_cuda_work;

/* w's buffer, grown to at least bytes; what it held is lost when it grows. */
static inline void *mt_cuda_work_get(mt_cuda_work *w, size_t bytes) {
    if (bytes > w->cap) {
        /* cudaFree synchronises, so no kernel still in flight uses the old buffer. */
        if (w->buf) MT_CUDA_CHECK(cudaFree(w->buf));
        w->buf = NULL;
        w->cap = 0;
        MT_CUDA_CHECK(cudaMalloc(&w->buf, bytes));
        w->cap = bytes;
    }
    return w->buf;
}

/* ---- block reductions ----
 * Each adds in a fixed order, so the same inputs give the same bits. The
 * two sums add in different orders: they are not interchangeable. */

/* Sum of v over the block (blockDim.x a multiple of 32, at most 1024), in a
 * fixed order: a shuffle tree within each warp, then warp 0 adds the warps'
 * sums with the same tree. Every thread gets the result. sh: 32 doubles. */
static inline __device__ double mt_cuda_block_sum_shfl(double v, double *sh) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < nwarps ? sh[lane] : 0.0;
        for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
        if (lane == 0) sh[0] = v;
    }
    __syncthreads();
    double r = sh[0];
    __syncthreads(); /* sh may be reused by the next call */
    return r;
}

/* Sum of v over the block by a pairwise tree in shared memory (thread t adds
 * t + s for s = blockDim/2, ..., 1; blockDim.x a power of two, at most
 * MT_CUDA_MAX_THREADS). Every thread gets the result. sh: blockDim.x Ts. */
template <typename T> static __device__ T mt_cuda_block_sum_tree(T v, T *sh) {
    unsigned t = threadIdx.x;
    sh[t] = v;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s /= 2) {
        if (t < s) sh[t] += sh[t + s];
        __syncthreads();
    }
    T r = sh[0];
    __syncthreads(); /* before sh is written again */
    return r;
}

/* out[0] = sum of x(n) by one block (launch <<<1, threads>>>, threads a power
 * of two up to MT_CUDA_MAX_THREADS): each thread adds its strided elements in
 * index order, then mt_cuda_block_sum_tree. The order depends on n and the
 * block size alone. */
template <typename T> static __global__ void mt_cuda_sum_kernel(T *out, const T *x, int n) {
    __shared__ T sh[MT_CUDA_MAX_THREADS];
    T s = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) s += x[i];
    s = mt_cuda_block_sum_tree(s, sh);
    if (threadIdx.x == 0) out[0] = s;
}

/* ---- column sums over row chunks ----
 * A (rows, cols) column sum with one thread per column over every row would
 * leave the GPU nearly idle for a few hundred columns and thousands of rows,
 * so the rows are cut into chunks of MT_CUDA_COL_ROWS: pass 1 (the op's own
 * kernel, which may compute the summed values on the fly) writes each
 * chunk's column sums, its rows added in order, into part(nchunks, cols);
 * pass 2, mt_cuda_colsum_chunks, adds the chunks in chunk order. The chunking
 * depends on rows alone, so the order (and the bits) is the same on every
 * GPU and run. elementwise.cu's bias_grad and gelu.cu's gelu_bias_backward
 * sum this way, so the fused op's db is the unfused one's, bit for bit. */

#define MT_CUDA_COL_ROWS 128 /* rows per chunk of a column sum */

/* Chunks of MT_CUDA_COL_ROWS covering rows (rows >= 0): at least 1. */
static inline int mt_cuda_col_chunks(int rows) {
    return rows <= MT_CUDA_COL_ROWS
               ? 1
               : (int)(((size_t)rows + MT_CUDA_COL_ROWS - 1) / MT_CUDA_COL_ROWS);
}

/* Pass 2: out(c) = the nchunks partial sums of column c, part(nchunks, cols),
 * added in chunk order (the first one as the start); one thread per column,
 * grid mt_cuda_col_blocks(cols). A warp reads 32 adjacent columns: coalesced. */
template <typename T>
static __global__ void mt_cuda_colsum_chunks(T *out, const T *part, int cols, int nchunks) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    T acc = part[c];
    for (int k = 1; k < nchunks; k++) acc += part[(size_t)k * cols + c];
    out[c] = acc;
}

/* ---- element formulas ---- */

/* x * s as the scale op (kernels/backend.h): with s = 0 a NaN or Inf becomes
 * 0 as well (a finite x keeps x * 0, sign included). __fmul_rn: never fused
 * into an add by the caller's code, so the value is the one scale stores. */
static inline __device__ float mt_cuda_scale_elem(float x, float s) {
    return s == 0.0f && !isfinite(x) ? 0.0f : __fmul_rn(x, s);
}

#endif
