/*
 * attention.cu - CUDA causal multi-head self-attention, forward and backward,
 * the device twins of mt_cpu_attention_forward/backward (kernels/cpu/gpt_cpu.c);
 * contract in kernels/backend.h. Per (b,h) pair, with no copies (lead
 * dimension 3C for the q/k/v slices of qkv and dqkv, C for out/dout):
 *   q, k, v, dq, dk, dv, out, dout  (T,hs)    att, datt  (T,T) at (b*NH+h)*T*T
 *
 * The four kinds of product are cuBLAS GEMMs (mt_cuda_matmul_batched in
 * backend_cuda.c): for each b, one strided-batched call covers the NH heads
 * (head h's q/k/v/out slices are hs floats after head h-1's, its att/datt
 * T*T after). In between, two kernels of this file, one block per (b,h,t) row:
 *   forward:  att = scale q k^T (GEMM), causal softmax of each row (kernel),
 *             out = att v (GEMM)
 *   backward: dv = att^T dout, datt = dout v^T (GEMMs), in place
 *             datt = softmax backward * scale (kernel, so datt is d(scores)),
 *             dq = datt k, dk = datt^T q (GEMMs)
 * The GEMMs are over the full (T,T) matrices: the score GEMMs also fill the
 * entries s > t, which the softmax kernels never read (they overwrite them
 * with exact zeros), so the att/datt products after them add only exact zeros
 * (twice the flops of a triangular schedule, in return for plain GEMMs). The
 * full att/datt go through global memory; a fused flash-style kernel (online
 * softmax over key tiles) would avoid that.
 *
 * Determinism: the softmax kernels write every element from one thread and
 * reduce in a fixed order (a fixed block tree), without atomics; cuBLAS GEMMs
 * on the default stream are bitwise reproducible on one GPU model.
 *
 * bf16 matmul mode (mt_cuda_precision_bf16): the GEMMs compute with
 * CUBLAS_COMPUTE_32F_FAST_16BF, which rounds both operands of every product to
 * bf16 (att, datt, q, k, v and dout as each GEMM reads them) with fp32
 * accumulation into fp32 outputs; att and datt stay fp32 in memory and the
 * softmax kernels are unchanged. The CPU emulation rounds the same operands
 * (copies of qkv, dout and att blocks, d(scores) in place in datt), so only
 * the summation order differs from the CPU's. fp32 mode computes in true fp32
 * (CUBLAS_COMPUTE_32F_PEDANTIC, no TF32).
 */
#include <cuda_runtime.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_ops.h"

#define ATT_THREADS 256 /* threads per block of the softmax kernels (a multiple of 32) */

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
    float inv = (float)(1.0 / mt_cuda_block_sum_shfl(sum, shd));
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
    float df = (float)mt_cuda_block_sum_shfl(dot, sh);
    for (int s = threadIdx.x; s < T; s += blockDim.x)
        da[s] = s <= t ? __fmul_rn(__fmul_rn(a[s], __fsub_rn(da[s], df)), scale) : 0.0f;
}

extern "C" void mt_cuda_attention_forward(float *out, float *att, const float *qkv, int B, int T,
                                          int C, int NH) {
    int hs = NH > 0 ? C / NH : 0, C3 = 3 * C;
    if (B <= 0 || T <= 0 || hs <= 0) return;
    float scale = 1.0f / sqrtf((float)hs);
    long long TT = (long long)T * T;
    size_t rows = (size_t)B * NH * T;

    /* att = scale * q k^T, every (s,t): the softmax reads only s <= t */
    for (int b = 0; b < B; b++) {
        const float *q = qkv + (size_t)b * T * C3;
        mt_cuda_matmul_batched(0, 1, T, T, hs, scale, q, C3, hs, q + C, C3, hs, 0.0f,
                               att + (size_t)b * NH * TT, T, TT, NH);
    }
    /* the causal softmax of each row; s > t become exact zeros */
    att_softmax_kernel<<<(unsigned)rows, ATT_THREADS>>>(att, T);
    MT_CUDA_LAUNCHED("att_softmax_kernel");
    /* out = att v */
    for (int b = 0; b < B; b++) {
        const float *v = qkv + (size_t)b * T * C3 + 2 * C;
        mt_cuda_matmul_batched(0, 0, T, hs, T, 1.0f, att + (size_t)b * NH * TT, T, TT, v, C3, hs,
                               0.0f, out + (size_t)b * T * C, C, hs, NH);
    }
}

extern "C" void mt_cuda_attention_backward(float *dqkv, float *datt, const float *dout,
                                           const float *qkv, const float *att, int B, int T, int C,
                                           int NH) {
    int hs = NH > 0 ? C / NH : 0, C3 = 3 * C;
    if (B <= 0 || T <= 0 || hs <= 0) return;
    float scale = 1.0f / sqrtf((float)hs);
    long long TT = (long long)T * T;
    size_t rows = (size_t)B * NH * T;

    /* dv = att^T dout (reads only att and dout); datt = dout v^T, every (s,t) */
    for (int b = 0; b < B; b++) {
        const float *v = qkv + (size_t)b * T * C3 + 2 * C;
        const float *a = att + (size_t)b * NH * TT, *dr = dout + (size_t)b * T * C;
        float *dv = dqkv + (size_t)b * T * C3 + 2 * C;
        mt_cuda_matmul_batched(1, 0, T, hs, T, 1.0f, a, T, TT, dr, C, hs, 0.0f, dv, C3, hs, NH);
        mt_cuda_matmul_batched(0, 1, T, T, hs, 1.0f, dr, C, hs, v, C3, hs, 0.0f,
                               datt + (size_t)b * NH * TT, T, TT, NH);
    }
    /* in place: datt = d(scores) = softmax backward * scale, s > t exact zeros */
    att_softmax_backward_kernel<<<(unsigned)rows, ATT_THREADS>>>(datt, att, T, scale);
    MT_CUDA_LAUNCHED("att_softmax_backward_kernel");
    /* dq = dscores k, dk = dscores^T q */
    for (int b = 0; b < B; b++) {
        const float *q = qkv + (size_t)b * T * C3;
        const float *ds = datt + (size_t)b * NH * TT;
        float *dq = dqkv + (size_t)b * T * C3;
        mt_cuda_matmul_batched(0, 0, T, hs, T, 1.0f, ds, T, TT, q + C, C3, hs, 0.0f, dq, C3, hs,
                               NH);
        mt_cuda_matmul_batched(1, 0, T, hs, T, 1.0f, ds, T, TT, q, C3, hs, 0.0f, dq + C, C3, hs,
                               NH);
    }
}
