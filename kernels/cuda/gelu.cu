/*
 * gelu.cu - CUDA GELU (tanh form): the device twins of gelu_forward and
 * gelu_backward, and of the two fused ops built on them, bias_gelu_forward
 * (bias_add then gelu_forward) and gelu_bias_backward (gelu_backward then
 * bias_grad with beta 1); contracts in kernels/backend.h.
 *
 * One formula: gelu() and gelu_grad() below serve all four kernels, so a
 * fused op computes each element with the unfused op's float operations,
 * and gelu_bias_backward sums db in bias_grad's order (common.cuh's column
 * sums over row chunks): the fused ops are meant to give the unfused CUDA
 * ops' bits. Against the CPU: expf here, the CPU's own polynomial exp there
 * (about 2e-7 relative apart), and nvcc contracts the formula's a * b + c
 * into FMAs where the CPU's unfused ops round twice.
 *
 * Determinism: every element is computed by one thread; db's column sums
 * have a fixed order (rows in order within a chunk, chunks in order). dx may
 * alias dy and h is read and written in place: each element is read and then
 * written by the same thread, so no pointer here is __restrict__.
 */
#include <cuda_runtime.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_ops.h"

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_C 0.044715f

/* Work buffer for gelu_bias_backward's partial column sums: grown on demand,
 * never freed. */
static mt_cuda_work work;

/* ---- the formula ---- */

/* exp(x) with x clamped to [-87, 87] as the CPU's gelu_exp: for v below about
 * -10 the exp would overflow to inf, and the backward's e * sg would then be
 * inf * 0 = NaN. The comparisons (not fminf/fmaxf) keep a NaN a NaN. */
static __device__ __forceinline__ float gelu_exp(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 87.0f ? 87.0f : x;
    return expf(x);
}

/* GELU, tanh form, as the CPU: v * s with s = 1 / (1 + exp(-2u)) =
 * (1 + tanh(u)) / 2, u = K (v + C v^3); no cancellation for negative v. */
static __device__ __forceinline__ float gelu(float v) {
    float u = GELU_K * (v + GELU_C * v * v * v);
    return v / (1.0f + gelu_exp(-2.0f * u));
}

/* dL/dv = dy * gelu'(v), gelu'(v) = s + 2 v s (1 - s) du/dv, with 1 - s = e s
 * computed without cancellation. __fmul_rn: the product is rounded on its
 * own, never fused into the caller's next add (gelu_bias_backward sums it),
 * so both backward kernels get the same bits. */
static __device__ __forceinline__ float gelu_backward_elem(float dy, float v) {
    float u = GELU_K * (v + GELU_C * v * v * v);
    float e = gelu_exp(-2.0f * u);
    float sg = 1.0f / (1.0f + e);
    float du = GELU_K * (1.0f + 3.0f * GELU_C * v * v);
    return __fmul_rn(dy, sg + 2.0f * v * sg * (e * sg) * du);
}

/* ---- unfused ---- */

static __global__ void gelu_forward_kernel(float *y, const float *x, size_t n) {
    MT_CUDA_GRID_STRIDE(i, n) y[i] = gelu(x[i]);
}

static __global__ void gelu_backward_kernel(float *dx, const float *dy, const float *x, size_t n) {
    MT_CUDA_GRID_STRIDE(i, n) dx[i] = gelu_backward_elem(dy[i], x[i]);
}

void mt_cuda_gelu_forward(float *y, const float *x, size_t n) {
    if (n == 0) return;
    gelu_forward_kernel<<<mt_cuda_blocks_for(n), MT_CUDA_THREADS>>>(y, x, n);
    MT_CUDA_LAUNCHED("gelu_forward_kernel");
}

void mt_cuda_gelu_backward(float *dx, const float *dy, const float *x, size_t n) {
    if (n == 0) return;
    gelu_backward_kernel<<<mt_cuda_blocks_for(n), MT_CUDA_THREADS>>>(dx, dy, x, n);
    MT_CUDA_LAUNCHED("gelu_backward_kernel");
}

/* ---- fused ---- */

/* h(N,C) += bias(C), g(N,C) = gelu(h). Thread mapping: grid
 * (mt_cuda_col_blocks(C), mt_cuda_row_blocks(N)); thread x takes column c
 * (idle past C in the last column block) and rows blockIdx.y, + gridDim.y,
 * ...; a warp touches 32 adjacent columns of a row (coalesced) and bias[c] is
 * read once. v = h + bias is bias_add's add, then the gelu above. */
static __global__ void bias_gelu_forward_kernel(float *h, float *g, const float *bias, int N,
                                                int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float bc = bias[c];
    for (int r = blockIdx.y; r < N; r += gridDim.y) {
        size_t i = (size_t)r * C + c;
        float v = h[i] + bc;
        h[i] = v;
        g[i] = gelu(v);
    }
}

/* dx(N,C) = dy * gelu'(h) and the column sums of dx, pass 1 (common.cuh):
 * thread (c, k) of grid (mt_cuda_col_blocks(C), mt_cuda_row_blocks(nchunks))
 * takes column c (idle past C) and the chunks k = blockIdx.y, + gridDim.y,
 * ...; for chunk k it walks rows [k*MT_CUDA_COL_ROWS, min(.. + MT_CUDA_COL_ROWS,
 * N)) in order, writing each dx and adding it to the chunk's sum, which it
 * stores in part[k*C + c]. Chunk 0 starts from db[c] (bias_grad's beta 1:
 * the old db first, then the rows in order); with a single chunk part is db
 * itself, written in place by the thread that read it. */
static __global__ void gelu_bias_backward_partial(float *dx, float *part, const float *db,
                                                  const float *dy, const float *h, int N, int C,
                                                  int nchunks) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    for (int k = blockIdx.y; k < nchunks; k += gridDim.y) {
        int r0 = k * MT_CUDA_COL_ROWS;
        int r1 = N - r0 < MT_CUDA_COL_ROWS ? N : r0 + MT_CUDA_COL_ROWS;
        float acc = k == 0 ? db[c] : 0.0f;
        for (int r = r0; r < r1; r++) {
            size_t i = (size_t)r * C + c;
            float d = gelu_backward_elem(dy[i], h[i]);
            dx[i] = d;
            acc += d;
        }
        part[(size_t)k * C + c] = acc;
    }
}

void mt_cuda_bias_gelu_forward(float *h, float *g, const float *bias, int N, int C) {
    if (N <= 0 || C <= 0) return;
    dim3 grid(mt_cuda_col_blocks(C), mt_cuda_row_blocks(N));
    bias_gelu_forward_kernel<<<grid, MT_CUDA_THREADS>>>(h, g, bias, N, C);
    MT_CUDA_LAUNCHED("bias_gelu_forward_kernel");
}

void mt_cuda_gelu_bias_backward(float *dx, float *db, const float *dy, const float *h, int N,
                                int C) {
    if (N <= 0 || C <= 0) return; /* no rows: db += nothing */
    int nchunks = mt_cuda_col_chunks(N);
    size_t part_bytes = (size_t)nchunks * C * sizeof(float);
    float *part = nchunks == 1 ? db : (float *)mt_cuda_work_get(&work, part_bytes);
    unsigned col_blocks = mt_cuda_col_blocks(C);
    dim3 grid(col_blocks, mt_cuda_row_blocks(nchunks));
    gelu_bias_backward_partial<<<grid, MT_CUDA_THREADS>>>(dx, part, db, dy, h, N, C, nchunks);
    MT_CUDA_LAUNCHED("gelu_bias_backward_partial");
    if (nchunks == 1) return;
    mt_cuda_colsum_chunks<float><<<col_blocks, MT_CUDA_THREADS>>>(db, part, C, nchunks);
    MT_CUDA_LAUNCHED("mt_cuda_colsum_chunks (gelu_bias_backward)");
}
