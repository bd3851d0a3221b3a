/*
 * attention.cu - CUDA causal multi-head self-attention, forward and backward,
 * the device twins of mt_cpu_attention_forward/backward (kernels/cpu/gpt_cpu.c);
 * contract in kernels/backend.h. Per (b,h) pair, with no copies (lead
 * dimension 3C for the q/k/v slices of qkv and dqkv, C for out/dout):
 *   q, k, v, dq, dk, dv, out, dout  (T,hs)    att, datt  (T,T) at (b*NH+h)*T*T
 *
 * First version: plain kernels, correct and deterministic before fast.
 *   scores  S[t,s] = alpha * sum_d A[t,d] B[s,d], s <= t  (32x32 shared tiles)
 *   rows    O[t,d] = sum_{s<=t} P[t,s] M[s,d]    (one thread per output)
 *   cols    O[s,d] = sum_{t>=s} P[t,s] M[t,d]    (one thread per output)
 *   softmax forward/backward: one block per (b,h,t) row.
 * Every output element is written by exactly one thread, every sum runs in a
 * fixed order (dot products in index order; row sums through a fixed block
 * tree), and there are no atomics, so results are bitwise reproducible. The
 * full att/datt (T,T) matrices go through global memory; a fused flash-style
 * kernel (online softmax over key tiles, tensor cores) should replace this.
 *
 * Causal mask: scores are only computed for s <= t (tiles wholly above the
 * diagonal are skipped); the softmax kernels then write exact zeros above the
 * diagonal of att and datt, and the rows/cols sums never read those entries.
 *
 * bf16 matmul mode (mt_cuda_precision_bf16): the scores, rows and cols kernels
 * round both factors of every product to bf16 as they load them (mt_bf16_round,
 * the CPU backend's rounding), with fp32 accumulation; att and datt stay fp32
 * in memory and the softmax kernels are unchanged, as on the CPU. The product
 * of two bf16 values is exact in fp32, so only the summation order differs
 * from the CPU's.
 */
#include <cuda_runtime.h>

#include "kernels/bf16.h"
#include "kernels/cuda/cuda_ops.h"

#define ATT_TILE    32  /* scores tile: ATT_TILE x ATT_TILE outputs, one thread each */
#define ATT_THREADS 256 /* threads per block of the row kernels (a multiple of 32) */

/* Sum of v over the block (blockDim.x a multiple of 32, at most 1024), in a
 * fixed order: a shuffle tree within each warp, then warp 0 adds the warps'
 * sums with the same tree. Every thread gets the result. sh: 32 doubles. */
static __device__ double block_sum(double v, double *sh) {
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

/* Maximum of v over the block, as the CPU's (a > m ? a : m); max is exact, so
 * the order does not change the result. sh: 32 floats. */
static __device__ float block_max(float v, float *sh) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1) {
        float u = __shfl_down_sync(0xffffffffu, v, o);
        v = u > v ? u : v;
    }
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < nwarps ? sh[lane] : sh[0];
        for (int o = 16; o > 0; o >>= 1) {
            float u = __shfl_down_sync(0xffffffffu, v, o);
            v = u > v ? u : v;
        }
        if (lane == 0) sh[0] = v;
    }
    __syncthreads();
    float r = sh[0];
    __syncthreads();
    return r;
}

/* A factor of a product: x itself, or x rounded to bf16 in bf16 mode. */
static __device__ __forceinline__ float factor(float x, int bf16) {
    return bf16 ? mt_bf16_round(x) : x;
}

/* S[t,s] = alpha * sum_{d<hs} A[t,d] B[s,d] for s <= t, per (b,h) = blockIdx.x.
 * A, B: (T,hs) at base + b*T*ld + h*hs with lead lda/ldb; S: (T,T) at bh*T*T.
 * Entries s > t are not written. grid (B*NH, tiles of t, tiles of s), block
 * (ATT_TILE, ATT_TILE); thread (x,y) computes S[t0+y, s0+x], d in order. */
static __global__ void att_scores_kernel(float *S, const float *A, int lda, const float *Bm,
                                         int ldb, float alpha, int T, int NH, int hs, int bf16) {
    __shared__ float as[ATT_TILE][ATT_TILE + 1]; /* +1: no bank conflicts on bs[x][kk] */
    __shared__ float bs[ATT_TILE][ATT_TILE + 1];
    int bh = blockIdx.x, b = bh / NH, h = bh % NH;
    int t0 = blockIdx.y * ATT_TILE, s0 = blockIdx.z * ATT_TILE;
    if (s0 > t0 + ATT_TILE - 1) return; /* whole tile above the diagonal (uniform per block) */
    int x = threadIdx.x, y = threadIdx.y;
    const float *a = A + (size_t)b * T * lda + (size_t)h * hs;
    const float *bm = Bm + (size_t)b * T * ldb + (size_t)h * hs;
    int t = t0 + y, s = s0 + x;

    float acc = 0.0f;
    for (int d0 = 0; d0 < hs; d0 += ATT_TILE) {
        int d = d0 + x;
        as[y][x] = (t < T && d < hs) ? factor(a[(size_t)t * lda + d], bf16) : 0.0f;
        bs[y][x] = (s0 + y < T && d < hs) ? factor(bm[(size_t)(s0 + y) * ldb + d], bf16) : 0.0f;
        __syncthreads();
        int kmax = min(ATT_TILE, hs - d0);
        for (int kk = 0; kk < kmax; kk++) acc = fmaf(as[y][kk], bs[x][kk], acc);
        __syncthreads();
    }
    if (t < T && s <= t) S[(size_t)bh * T * T + (size_t)t * T + s] = alpha * acc;
}

/* Causal softmax of each row in place: row (bh,t) = blockIdx.x of att (B,NH,T,T)
 * holds scores for s <= t; as the CPU's softmax_causal_row: max-subtracted
 * expf, the sum in double, multiplied by the float inverse; s > t set to 0.
 * Each thread touches only its own strided entries, so no sync between passes. */
static __global__ void att_softmax_kernel(float *att, int T) {
    __shared__ float shf[32];
    __shared__ double shd[32];
    size_t row = blockIdx.x;
    int t = (int)(row % T);
    float *a = att + row * T;

    float mx = a[0];
    for (int s = threadIdx.x; s <= t; s += blockDim.x) mx = a[s] > mx ? a[s] : mx;
    mx = block_max(mx, shf);
    double sum = 0.0;
    for (int s = threadIdx.x; s <= t; s += blockDim.x) {
        float e = expf(a[s] - mx);
        a[s] = e;
        sum += e;
    }
    float inv = (float)(1.0 / block_sum(sum, shd));
    for (int s = threadIdx.x; s < T; s += blockDim.x) a[s] = s <= t ? a[s] * inv : 0.0f;
}

/* Softmax backward in place on row (bh,t) = blockIdx.x of datt:
 * datt[s] = att[s] * (datt[s] - sum_{s'<=t} att[s'] datt[s']) * scale for s <= t,
 * 0 for s > t (the scale is the forward's 1/sqrt(hs)); the dot in double. */
static __global__ void att_softmax_backward_kernel(float *datt, const float *att, int T,
                                                   float scale) {
    __shared__ double sh[32];
    size_t row = blockIdx.x;
    int t = (int)(row % T);
    const float *a = att + row * T;
    float *da = datt + row * T;

    double dot = 0.0;
    for (int s = threadIdx.x; s <= t; s += blockDim.x) dot += (double)a[s] * da[s];
    float df = (float)block_sum(dot, sh);
    for (int s = threadIdx.x; s < T; s += blockDim.x)
        da[s] = s <= t ? __fmul_rn(__fmul_rn(a[s], __fsub_rn(da[s], df)), scale) : 0.0f;
}

/* O[t,d] = sum_{s=0..t} P[t,s] M[s,d], s in order; one thread per (bh,t,d),
 * d fastest (a warp reads one P entry and a contiguous piece of M's row).
 * P: (T,T) at bh*T*T; M, O: (T,hs) at base + b*T*ld + h*hs. */
static __global__ void att_rows_kernel(float *O, int ldo, const float *P, const float *M, int ldm,
                                       int T, int NH, int hs, size_t total, int bf16) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    int d = (int)(i % hs);
    int t = (int)((i / hs) % T);
    size_t bh = i / ((size_t)hs * T);
    int b = (int)(bh / NH), h = (int)(bh % NH);
    const float *p = P + bh * T * T + (size_t)t * T;
    const float *m = M + (size_t)b * T * ldm + (size_t)h * hs + d;
    float acc = 0.0f;
    for (int s = 0; s <= t; s++)
        acc = fmaf(factor(p[s], bf16), factor(m[(size_t)s * ldm], bf16), acc);
    O[(size_t)b * T * ldo + (size_t)h * hs + (size_t)t * ldo + d] = acc;
}

/* O[s,d] = sum_{t=s..T-1} P[t,s] M[t,d], t in order (the transposed product:
 * key s is seen only by queries t >= s); one thread per (bh,s,d), layout as
 * att_rows_kernel. */
static __global__ void att_cols_kernel(float *O, int ldo, const float *P, const float *M, int ldm,
                                       int T, int NH, int hs, size_t total, int bf16) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    int d = (int)(i % hs);
    int s = (int)((i / hs) % T);
    size_t bh = i / ((size_t)hs * T);
    int b = (int)(bh / NH), h = (int)(bh % NH);
    const float *p = P + bh * T * T + s;
    const float *m = M + (size_t)b * T * ldm + (size_t)h * hs + d;
    float acc = 0.0f;
    for (int t = s; t < T; t++)
        acc = fmaf(factor(p[(size_t)t * T], bf16), factor(m[(size_t)t * ldm], bf16), acc);
    O[(size_t)b * T * ldo + (size_t)h * hs + (size_t)s * ldo + d] = acc;
}

static void launch_scores(float *S, const float *A, int lda, const float *Bm, int ldb, float alpha,
                          int B, int T, int NH, int hs) {
    int tiles = (T + ATT_TILE - 1) / ATT_TILE;
    att_scores_kernel<<<dim3(B * NH, tiles, tiles), dim3(ATT_TILE, ATT_TILE)>>>(
        S, A, lda, Bm, ldb, alpha, T, NH, hs, mt_cuda_precision_bf16());
    MT_CUDA_CHECK(cudaGetLastError());
}

static unsigned blocks_for(size_t n) {
    return (unsigned)((n + ATT_THREADS - 1) / ATT_THREADS);
}

extern "C" void mt_cuda_attention_forward(float *out, float *att, const float *qkv, int B, int T,
                                          int C, int NH) {
    int hs = NH > 0 ? C / NH : 0, C3 = 3 * C;
    if (B <= 0 || T <= 0 || hs <= 0) return;
    float scale = 1.0f / sqrtf((float)hs);
    size_t rows = (size_t)B * NH * T, total = rows * hs;
    int bf16 = mt_cuda_precision_bf16();

    /* att = scale * q k^T (s <= t), then the causal softmax of each row */
    launch_scores(att, qkv, C3, qkv + C, C3, scale, B, T, NH, hs);
    att_softmax_kernel<<<(unsigned)rows, ATT_THREADS>>>(att, T);
    MT_CUDA_CHECK(cudaGetLastError());
    /* out = att v */
    att_rows_kernel<<<blocks_for(total), ATT_THREADS>>>(out, C, att, qkv + 2 * C, C3, T, NH, hs,
                                                        total, bf16);
    MT_CUDA_CHECK(cudaGetLastError());
}

extern "C" void mt_cuda_attention_backward(float *dqkv, float *datt, const float *dout,
                                           const float *qkv, const float *att, int B, int T, int C,
                                           int NH) {
    int hs = NH > 0 ? C / NH : 0, C3 = 3 * C;
    if (B <= 0 || T <= 0 || hs <= 0) return;
    float scale = 1.0f / sqrtf((float)hs);
    size_t rows = (size_t)B * NH * T, total = rows * hs;
    int bf16 = mt_cuda_precision_bf16();
    const float *q = qkv, *k = qkv + C, *v = qkv + 2 * C;
    float *dq = dqkv, *dk = dqkv + C, *dv = dqkv + 2 * C;

    /* dv = att^T dout (reads only att, so it goes first) */
    att_cols_kernel<<<blocks_for(total), ATT_THREADS>>>(dv, C3, att, dout, C, T, NH, hs, total,
                                                        bf16);
    MT_CUDA_CHECK(cudaGetLastError());
    /* datt = dout v^T (s <= t), then in place d(scores) = softmax backward * scale */
    launch_scores(datt, dout, C, v, C3, 1.0f, B, T, NH, hs);
    att_softmax_backward_kernel<<<(unsigned)rows, ATT_THREADS>>>(datt, att, T, scale);
    MT_CUDA_CHECK(cudaGetLastError());
    /* dq = dscores k, dk = dscores^T q */
    att_rows_kernel<<<blocks_for(total), ATT_THREADS>>>(dq, C3, datt, k, C3, T, NH, hs, total,
                                                        bf16);
    MT_CUDA_CHECK(cudaGetLastError());
    att_cols_kernel<<<blocks_for(total), ATT_THREADS>>>(dk, C3, datt, q, C3, T, NH, hs, total,
                                                        bf16);
    MT_CUDA_CHECK(cudaGetLastError());
}
