/*
 * embedding.cu - CUDA twins of the CPU's token + position embedding forward
 * and backward (kernels/backend.h). Tokens are device int32 in [0, V).
 *
 * The backward is deterministic without atomics and sums in the CPU's order,
 * so its result is bitwise the CPU's: dwpe row t is owned by the threads of
 * channel c summing over b in order; for dwte the positions are sorted by
 * token (a stable radix sort, so positions stay in increasing order within a
 * token, as the CPU's qsort of token << 32 | position), and each token's run
 * is summed by one thread per channel from 0 in position order, then added to
 * dwte once. Every dwte/dwpe element has exactly one writer.
 */
#include <cuda_runtime.h>
#include <stdint.h>

#include <cub/device/device_radix_sort.cuh>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_ops.h"

/* Work buffer for the backward's sort: grown on demand, never freed. */
static mt_cuda_work work;

/* Byte offsets in the work buffer start on 256 bytes (cudaMalloc's alignment). */
static size_t align256(size_t bytes) {
    return (bytes + 255) & ~(size_t)255;
}

/* ---- forward ---- */

/* out(n,C): row i = wte[tokens[i]] + wpe[i % T]; x over channels, y over rows. */
static __global__ void embedding_forward_kernel(float *out, const int32_t *tokens, const float *wte,
                                                const float *wpe, int n, int T, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    for (int i = blockIdx.y; i < n; i += gridDim.y)
        out[(size_t)i * C + c] = wte[(size_t)tokens[i] * C + c] + wpe[(size_t)(i % T) * C + c];
}

void mt_cuda_embedding_forward(float *out, const int32_t *tokens, const float *wte,
                               const float *wpe, int B, int T, int C) {
    if (B <= 0 || T <= 0 || C <= 0) return;
    int n = B * T;
    dim3 grid(mt_cuda_col_blocks(C), mt_cuda_row_blocks((size_t)n));
    embedding_forward_kernel<<<grid, MT_CUDA_THREADS>>>(out, tokens, wte, wpe, n, T, C);
    MT_CUDA_LAUNCHED("embedding_forward_kernel");
}

/* ---- backward ---- */

static __global__ void iota_kernel(int32_t *x, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        x[i] = i;
}

/* dwte(V,C) += dout rows by token. tok(n), pos(n): the tokens sorted and the
 * positions they came from. The block at sorted index i works only when i
 * starts a token's run (so no two blocks share a token); channel c sums the
 * run's dout rows in position order from 0, then adds to dwte once, as the
 * CPU. A long run (a frequent token) is summed serially, as on the CPU. */
static __global__ void dwte_kernel(float *dwte, const float *dout, const int32_t *tok,
                                   const int32_t *pos, int n, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    for (int i = blockIdx.y; i < n; i += gridDim.y) {
        int32_t k = tok[i];
        if (i > 0 && tok[i - 1] == k) continue; /* not the start of a run */
        float acc = 0.0f;
        for (int j = i; j < n && tok[j] == k; j++) acc += dout[(size_t)pos[j] * C + c];
        dwte[(size_t)k * C + c] += acc;
    }
}

/* dwpe(T,C) += dout(B,T,C) summed over b in order; thread (t, c) owns dwpe[t][c]. */
static __global__ void dwpe_kernel(float *dwpe, const float *dout, int B, int T, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    for (int t = blockIdx.y; t < T; t += gridDim.y) {
        float acc = 0.0f;
        for (int b = 0; b < B; b++) acc += dout[((size_t)b * T + t) * C + c];
        dwpe[(size_t)t * C + c] += acc;
    }
}

void mt_cuda_embedding_backward(float *dwte, float *dwpe, const float *dout, const int32_t *tokens,
                                int B, int T, int C) {
    if (B <= 0 || T <= 0 || C <= 0) return;
    int n = B * T;
    /* Work buffer: pos_in(n) = 0..n-1, tok(n) and pos(n) = the sort's output,
     * then CUB's temporary storage. */
    size_t sort_bytes = 0;
    MT_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(NULL, sort_bytes, tokens, (int32_t *)NULL,
                                                  (const int32_t *)NULL, (int32_t *)NULL, n));
    size_t arr = align256((size_t)n * sizeof(int32_t));
    char *w = (char *)mt_cuda_work_get(&work, 3 * arr + sort_bytes);
    int32_t *pos_in = (int32_t *)w, *tok = (int32_t *)(w + arr), *pos = (int32_t *)(w + 2 * arr);
    iota_kernel<<<mt_cuda_blocks_for((size_t)n), MT_CUDA_THREADS>>>(pos_in, n);
    MT_CUDA_LAUNCHED("iota_kernel");
    /* All 32 key bits: V is not known here; tokens are >= 0, so signed order
     * is the CPU's unsigned order. Radix sort is stable. */
    MT_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(w + 3 * arr, sort_bytes, tokens, tok, pos_in, pos,
                                                  n, 0, 32, (cudaStream_t)0));
    dwte_kernel<<<dim3(mt_cuda_col_blocks(C), mt_cuda_row_blocks((size_t)n)), MT_CUDA_THREADS>>>(
        dwte, dout, tok, pos, n, C);
    MT_CUDA_LAUNCHED("dwte_kernel");
    dwpe_kernel<<<dim3(mt_cuda_col_blocks(C), mt_cuda_row_blocks((size_t)T)), MT_CUDA_THREADS>>>(
        dwpe, dout, B, T, C);
    MT_CUDA_LAUNCHED("dwpe_kernel");
}
