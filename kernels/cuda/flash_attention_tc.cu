/*
 * flash_attention_tc.cu - the bf16 tensor-core forward of the flash attention
 * (flash_attention.cu calls it in bf16 matmul mode for head sizes up to 64;
 * fp32 mode and larger heads use flash_attention.cu's FMA kernels).
 * Same contract and numerics rule as there: the q, k, v tiles are rounded to
 * bf16 (round to nearest even, mt_bf16_bits of kernels/bf16.h) as they are
 * loaded and P is rounded before P V; the products run on the tensor cores
 * (nvcuda::wmma, 16x16x16, bf16 in, fp32 accumulate: a product of two bf16
 * values is exact in fp32); the softmax, m, l and the output accumulator
 * stay fp32. Only the order of the sums differs from the CPU's (the tensor
 * core adds a 16-term chunk in its own fixed order).
 *
 * One block of 4 warps per (query tile of 64 rows, head, batch); key tiles
 * of 64 rows up to the diagonal. Warp w owns query rows 16w..16w+15:
 *   S (16 x 64) = Q K^T       wmma into the warp's rows of the fp32 tile s
 *   online softmax            lane pair (2i, 2i+1) owns row 16w + i: lane
 *                             parity h takes the columns 2j + h (j < 32),
 *                             the pair combines max and sum by one shuffle;
 *                             P rounded to bf16 into p
 *   O_tile (16 x D) = P V     wmma into the same rows of s (S is consumed)
 *   o = o * corr + O_tile     each lane its row's columns 2j + h, in registers
 * Determinism: every element has one owner and a fixed order of sums.
 *
 * Shared memory (static, under 48 KB): q and k-or-v bf16 (64, D+8), p bf16
 * (64, 72), s fp32 (64, max(64, D)+4); the leads keep wmma's rules (a
 * multiple of 8 bf16 or 4 floats, every fragment pointer 32-byte aligned)
 * and shift successive rows by 4 banks. D = 64: 44 KB; D = 32: 36 KB.
 */
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <mma.h>
#include <type_traits>

#include "kernels/bf16.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_ops.h"

#define FA_TC_WARPS 4
#define FA_TC_BR    64 /* query rows per tile: 16 per warp */
#define FA_TC_BC    64 /* key rows per tile */

/* The tiles of one block; every member's size is a multiple of 32 bytes, so
 * each starts 32-byte aligned after the first. */
template <int D> struct fa_tc_smem {
    enum { LQ = D + 8, LP = FA_TC_BC + 8, LS = (FA_TC_BC > D ? FA_TC_BC : D) + 4 };
    __nv_bfloat16 q[FA_TC_BR * LQ];  /* the query tile */
    __nv_bfloat16 kv[FA_TC_BC * LQ]; /* the key tile, then the value tile */
    __nv_bfloat16 p[FA_TC_BR * LP];  /* P, bf16 */
    float s[FA_TC_BR * LS];          /* S, then P V (per warp: its 16 rows) */
};

/* x rounded to bf16 exactly as mt_bf16_round (the CPU's rounding) */
static __device__ __nv_bfloat16 fa_tc_bf16(float x) {
    __nv_bfloat16_raw r;
    r.x = mt_bf16_bits(x);
    return __nv_bfloat16(r);
}

/* dst(ROWS, D), lead D+8, bf16 = rows [r0, r0+ROWS) and columns [0,hs) of a
 * matrix with lead ld, zeros past n rows and hs columns (coalesced reads). */
template <int ROWS, int D>
static __device__ void fa_tc_load(__nv_bfloat16 *dst, const float *src, int ld, int r0, int n,
                                  int hs) {
    for (int e = threadIdx.x; e < ROWS * D; e += FA_TC_WARPS * 32) {
        int r = e / D, c = e % D;
        float x = r0 + r < n && c < hs ? src[(size_t)(r0 + r) * ld + c] : 0.0f;
        dst[r * (D + 8) + c] = fa_tc_bf16(x);
    }
}

/* c(16, 16*NB) = a(16, 16*KB) b(16*KB, 16*NB) on the tensor cores, by one
 * warp: a row-major (lead la), b row-major (lead lb) or, with BT, b^T
 * stored row-major (b(k,n) = bt[n*lb + k]); c fp32 row-major (lead lc). */
template <int KB, int NB, bool BT>
static __device__ void fa_tc_mm(float *c, int lc, const __nv_bfloat16 *a, int la,
                                const __nv_bfloat16 *b, int lb) {
    using namespace nvcuda;
    typedef typename std::conditional<BT, wmma::col_major, wmma::row_major>::type blay;
    for (int n = 0; n < NB; n++) {
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
        wmma::fill_fragment(acc, 0.0f);
        for (int k = 0; k < KB; k++) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa;
            wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, blay> fb;
            wmma::load_matrix_sync(fa, a + 16 * k, la);
            wmma::load_matrix_sync(fb, BT ? b + 16 * n * lb + 16 * k : b + 16 * k * lb + 16 * n,
                                   lb);
            wmma::mma_sync(acc, fa, fb, acc);
        }
        wmma::store_matrix_sync(c + 16 * n, acc, lc, wmma::mem_row_major);
    }
}

/* Block (query tile x, head y, batch z) of fa_forward_tc; the mapping above. */
template <int D>
static __global__ void __launch_bounds__(FA_TC_WARPS * 32)
    fa_forward_tc_kernel(float *out, float *lse, const float *qkv, int T, int C, int NH,
                         float scale) {
    typedef fa_tc_smem<D> sm_t;
    constexpr int BR = FA_TC_BR, BC = FA_TC_BC, LQ = sm_t::LQ, LP = sm_t::LP, LS = sm_t::LS;
    constexpr int HC = BC / 2, HD = D / 2; /* a lane's columns of S and of O */
    __shared__ __align__(128) sm_t sm;
    int hs = C / NH, C3 = 3 * C, h = blockIdx.y, b = blockIdx.z, t0 = blockIdx.x * BR;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, par = lane & 1;
    int r = 16 * warp + lane / 2, t = t0 + r; /* this lane pair's row */
    const float *q = qkv + (size_t)b * T * C3 + (size_t)h * hs, *k = q + C, *v = q + 2 * C;
    float *sw = sm.s + 16 * warp * LS, *srow = sm.s + r * LS; /* the warp's rows, this row */

    fa_tc_load<BR, D>(sm.q, q, C3, t0, T, hs);
    float m = -INFINITY, l = 0.0f, o[HD];
#pragma unroll
    for (int j = 0; j < HD; j++) o[j] = 0.0f;
    int tend = min(t0 + BR, T); /* keys [0, tend): the last tile is the diagonal one */
    for (int s0 = 0; s0 < tend; s0 += BC) {
        __syncthreads(); /* the last tile's P V is done with kv (and q is loaded) */
        fa_tc_load<BC, D>(sm.kv, k, C3, s0, T, hs);
        __syncthreads();
        fa_tc_mm<D / 16, BC / 16, true>(sw, LS, sm.q + 16 * warp * LQ, LQ, sm.kv, LQ);
        __syncwarp();
        /* the online softmax of row t, columns 2j + par; key 0 is in the
         * first tile and seen by every row, so m is finite after it */
        float sv[HC], mx = -INFINITY;
#pragma unroll
        for (int j = 0; j < HC; j++) {
            int sk = s0 + 2 * j + par;
            sv[j] = sk <= t && sk < T ? srow[2 * j + par] * scale : -INFINITY;
            mx = fmaxf(mx, sv[j]);
        }
        float mnew = fmaxf(m, fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1)));
        float corr = expf(m - mnew), sum = 0.0f; /* corr 0 on the first tile */
#pragma unroll
        for (int j = 0; j < HC; j++) {
            float pj = expf(sv[j] - mnew); /* masked: exp(-inf) = 0 */
            sum += pj;
            sm.p[r * LP + 2 * j + par] = fa_tc_bf16(pj);
        }
        l = l * corr + (sum + __shfl_xor_sync(0xffffffffu, sum, 1));
        m = mnew;
        __syncthreads(); /* every warp is done with the key tile */
        fa_tc_load<BC, D>(sm.kv, v, C3, s0, T, hs);
        __syncthreads();
        fa_tc_mm<BC / 16, D / 16, false>(sw, LS, sm.p + 16 * warp * LP, LP, sm.kv, LQ);
        __syncwarp();
#pragma unroll
        for (int j = 0; j < HD; j++) o[j] = o[j] * corr + srow[2 * j + par];
    }
    if (t >= T) return;
    float inv = 1.0f / l; /* as the CPU: out = acc * (1 / l) */
    float *orow = out + ((size_t)b * T + t) * C + (size_t)h * hs;
#pragma unroll
    for (int j = 0; j < HD; j++)
        if (2 * j + par < hs) orow[2 * j + par] = o[j] * inv;
    if (par == 0) lse[((size_t)b * NH + h) * T + t] = m + logf(l);
}

template <int D>
static void fa_forward_tc(float *out, float *lse, const float *qkv, int B, int T, int C, int NH,
                          float scale) {
    dim3 grid((unsigned)((T + FA_TC_BR - 1) / FA_TC_BR), (unsigned)NH, (unsigned)B);
    fa_forward_tc_kernel<D><<<grid, FA_TC_WARPS * 32>>>(out, lse, qkv, T, C, NH, scale);
    MT_CUDA_LAUNCHED("fa_forward_tc_kernel");
}

extern "C" void mt_cuda_flash_attention_forward_tc(float *out, float *lse, const float *qkv, int B,
                                                   int T, int C, int NH) {
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    if (hs <= 32)
        fa_forward_tc<32>(out, lse, qkv, B, T, C, NH, scale);
    else
        fa_forward_tc<64>(out, lse, qkv, B, T, C, NH, scale);
}
