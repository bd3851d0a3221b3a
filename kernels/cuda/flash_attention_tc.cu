/*
 * flash_attention_tc.cu - the flash attention on bf16 tensor cores, forward
 * and backward (flash_attention.cu calls them in bf16 matmul mode for head
 * sizes up to 64, after its own D = rowsum(dout * out) kernel for the
 * backward; fp32 mode and larger heads use flash_attention.cu's FMA
 * kernels). Same contract, split and numerics rule as there: the q, k, v
 * and dout tiles are rounded to bf16 (round to nearest even, mt_bf16_bits
 * of kernels/bf16.h) as they are loaded, P and dS as they are stored for
 * their products; the products run on the tensor cores (nvcuda::wmma,
 * 16x16x16, bf16 in, fp32 accumulate: a product of two bf16 values is
 * exact in fp32); the softmax, m, l, D and the accumulators stay fp32. Only the order of the sums
 * differs from the CPU's (the tensor core adds a 16-term chunk in its own fixed order).
 *
 * Forward: one block of 4 warps per (query tile of 64 rows, head, batch);
 * key tiles of 64 rows up to the diagonal. Warp w owns query rows
 * 16w..16w+15:
 *   S (16 x 64) = Q K^T       wmma into the warp's rows of the fp32 tile s
 *   online softmax            lane pair (2i, 2i+1) owns row 16w + i: lane
 *                             parity h takes the columns 2j + h (j < 32),
 *                             the pair combines max and sum by one shuffle;
 *                             P rounded to bf16 into p
 *   O_tile (16 x D) = P V     wmma into the same rows of s (S is consumed)
 *   o = o * corr + O_tile     each lane its row's columns 2j + h, in registers
 * The backward kernels (fa_dkdv_tc_kernel, fa_dq_tc_kernel) keep dK, dV
 * and dQ in accumulator fragments (they are never rescaled); see there.
 * Determinism: every element has one owner and a fixed order of sums.
 *
 * Forward shared memory (static, under 48 KB): q and k-or-v bf16
 * (64, D+8), p bf16 (64, 72), s fp32 (64, max(64, D)+4); the leads keep
 * wmma's rules (a multiple of 8 bf16 or 4 floats, every fragment pointer
 * 32-byte aligned) and shift successive rows by 4 banks. D = 64: 44 KB;
 * D = 32: 36 KB (the backward's: fa_tc_bsmem).
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

typedef nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float> fa_tc_acc;

/* acc[n] += a(16, 16*KB) b(16*KB, 16n..16n+15) for n < NB on the tensor
 * cores, by one warp: a row-major (lead la), b row-major (lead lb) or, with
 * BT, b^T stored row-major (b(k,n) = bt[n*lb + k]); the k blocks in order. */
template <int KB, int NB, bool BT>
static __device__ void fa_tc_mma(fa_tc_acc (&acc)[NB], const __nv_bfloat16 *a, int la,
                                 const __nv_bfloat16 *b, int lb) {
    using namespace nvcuda;
    typedef typename std::conditional<BT, wmma::col_major, wmma::row_major>::type blay;
#pragma unroll
    for (int n = 0; n < NB; n++)
#pragma unroll
        for (int k = 0; k < KB; k++) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa;
            wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, blay> fb;
            wmma::load_matrix_sync(fa, a + 16 * k, la);
            wmma::load_matrix_sync(fb, BT ? b + 16 * n * lb + 16 * k : b + 16 * k * lb + 16 * n,
                                   lb);
            wmma::mma_sync(acc[n], fa, fb, acc[n]);
        }
}

/* c(16, 16*NB) = a b as fa_tc_mma, stored fp32 row-major (lead lc). */
template <int KB, int NB, bool BT>
static __device__ void fa_tc_mm(float *c, int lc, const __nv_bfloat16 *a, int la,
                                const __nv_bfloat16 *b, int lb) {
#pragma unroll
    for (int n = 0; n < NB; n++) {
        fa_tc_acc acc[1];
        nvcuda::wmma::fill_fragment(acc[0], 0.0f);
        fa_tc_mma<KB, 1, BT>(acc, a, la, BT ? b + 16 * n * lb : b + 16 * n, lb);
        nvcuda::wmma::store_matrix_sync(c + 16 * n, acc[0], lc, nvcuda::wmma::mem_row_major);
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

/* ---- backward: dK/dV per key tile, dQ per query tile, as flash_attention.cu ---- */

#define FA_TC_BBR 32 /* dK/dV kernel: query rows per tile (key rows: FA_TC_BC) */
#define FA_TC_BBC 32 /* dQ kernel: key rows per tile (query rows: FA_TC_BR) */

/* Shared tiles of the backward kernels: a (64, D) pair that stays (k and v
 * of the key tile, or q and dout of the query tile) and a (NR, D) pair
 * loaded per step, x and y (q and dout, or k and v); ps holds a warp's P^T,
 * then dS^T (or its dS) in bf16, sf a warp's fp32 products (scores, then dP,
 * then 16x16 output blocks on their way out). NR = 32:
 *   D = 64: 46 KB; D = 32: 34 KB. */
template <int D, int NR> struct fa_tc_bsmem {
    enum { LQ = D + 8, LP = NR + 8, LS = NR + 4 };
    __nv_bfloat16 a0[64 * LQ], a1[64 * LQ]; /* the fixed tile pair */
    __nv_bfloat16 x[NR * LQ], y[NR * LQ];   /* the streamed tile pair */
    __nv_bfloat16 ps[64 * LP];              /* per warp 16 rows: P^T or dS */
    float sf[64 * LS];                      /* per warp 16 rows: fp32 products */
    float lse[64], d[64];                   /* lse and D of the query rows */
};

/* The warp's output fragments acc[n] (16 rows from row r0 of dst, columns
 * 16n..), through its 16 x 16 block of sf, into dst rows < T and columns <
 * hs (lead ld); lane pair i writes row i, lane parity the columns 2j + par. */
template <int NB>
static __device__ void fa_tc_store(float *dst, int ld, const fa_tc_acc (&acc)[NB], float *sfw,
                                   int lsf, int r0, int T, int hs, int lane) {
    int i = lane / 2, par = lane & 1;
#pragma unroll
    for (int n = 0; n < NB; n++) {
        nvcuda::wmma::store_matrix_sync(sfw, acc[n], lsf, nvcuda::wmma::mem_row_major);
        __syncwarp();
#pragma unroll
        for (int j = 0; j < 8; j++) {
            int c = 16 * n + 2 * j + par;
            if (r0 + i < T && c < hs) dst[(size_t)(r0 + i) * ld + c] = sfw[i * lsf + 2 * j + par];
        }
        __syncwarp(); /* read before the next block overwrites it */
    }
}

/* Block (key tile x, head y, batch z): key rows [s0, s0+64); warp w owns
 * key rows s0 + 16w + i (i < 16) of dK and dV, kept in accumulator
 * fragments over the whole loop (no rescaling, so their layout never
 * matters). Per query tile of 32 rows (from the one holding row s0):
 *   S^T (16 x 32) = K Q^T into sf; lane pair i, parity par: key row i,
 *   query columns 2j + par; P^T = exp(scale S^T - lse) in registers, bf16
 *   into ps; dV += P^T dO. dP^T = V dO^T into sf; dS^T = P^T (dP^T - D)
 *   scale, bf16 into ps; dK += dS^T Q. */
template <int D>
static __global__ void __launch_bounds__(FA_TC_WARPS * 32)
    fa_dkdv_tc_kernel(float *dqkv, const float *dout, const float *qkv, const float *lse,
                      const float *dd, int T, int C, int NH, float scale) {
    constexpr int NR = FA_TC_BBR, BC = FA_TC_BC, NJ = NR / 2;
    typedef fa_tc_bsmem<D, NR> sm_t;
    constexpr int LQ = sm_t::LQ, LP = sm_t::LP, LS = sm_t::LS;
    __shared__ __align__(128) sm_t sm;
    int hs = C / NH, C3 = 3 * C, h = blockIdx.y, b = blockIdx.z, s0 = blockIdx.x * BC;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, par = lane & 1, i = lane / 2;
    int sk = s0 + 16 * warp + i; /* this lane pair's key row */
    size_t qoff = (size_t)b * T * C3 + (size_t)h * hs, ooff = (size_t)b * T * C + (size_t)h * hs;
    const float *hl = lse + ((size_t)b * NH + h) * T, *hd = dd + ((size_t)b * NH + h) * T;
    float *sfw = sm.sf + 16 * warp * LS, *srow = sfw + i * LS;
    __nv_bfloat16 *psw = sm.ps + 16 * warp * LP;

    fa_tc_load<BC, D>(sm.a0, qkv + qoff + C, C3, s0, T, hs);
    fa_tc_load<BC, D>(sm.a1, qkv + qoff + 2 * C, C3, s0, T, hs);
    fa_tc_acc dk[D / 16], dv[D / 16];
#pragma unroll
    for (int n = 0; n < D / 16; n++)
        nvcuda::wmma::fill_fragment(dk[n], 0.0f), nvcuda::wmma::fill_fragment(dv[n], 0.0f);
    for (int t0 = s0 / NR * NR; t0 < T; t0 += NR) {
        __syncthreads(); /* the last step's products are done with x, y, lse, d */
        fa_tc_load<NR, D>(sm.x, qkv + qoff, C3, t0, T, hs);
        fa_tc_load<NR, D>(sm.y, dout + ooff, C, t0, T, hs);
        for (int r = threadIdx.x; r < NR; r += FA_TC_WARPS * 32) {
            sm.lse[r] = t0 + r < T ? hl[t0 + r] : 0.0f;
            sm.d[r] = t0 + r < T ? hd[t0 + r] : 0.0f;
        }
        __syncthreads();
        fa_tc_mm<D / 16, NR / 16, true>(sfw, LS, sm.a0 + 16 * warp * LQ, LQ, sm.x, LQ);
        __syncwarp();
        float p[NJ];
#pragma unroll
        for (int j = 0; j < NJ; j++) {
            int c = 2 * j + par, t = t0 + c;
            p[j] = sk <= t && t < T && sk < T ? expf(srow[c] * scale - sm.lse[c]) : 0.0f;
            psw[i * LP + c] = fa_tc_bf16(p[j]);
        }
        __syncwarp();
        fa_tc_mma<NR / 16, D / 16, false>(dv, psw, LP, sm.y, LQ); /* dV += P^T dO */
        fa_tc_mm<D / 16, NR / 16, true>(sfw, LS, sm.a1 + 16 * warp * LQ, LQ, sm.y, LQ);
        __syncwarp(); /* dP^T in sf; every lane is done reading ps */
#pragma unroll
        for (int j = 0; j < NJ; j++) {
            int c = 2 * j + par; /* p is 0 where masked, so dS is too */
            psw[i * LP + c] = fa_tc_bf16(p[j] * (srow[c] - sm.d[c]) * scale);
        }
        __syncwarp();
        fa_tc_mma<NR / 16, D / 16, false>(dk, psw, LP, sm.x, LQ); /* dK += dS^T Q */
    }
    __syncwarp();
    fa_tc_store<D / 16>(dqkv + qoff + C, C3, dk, sfw, LS, s0 + 16 * warp, T, hs, lane);
    fa_tc_store<D / 16>(dqkv + qoff + 2 * C, C3, dv, sfw, LS, s0 + 16 * warp, T, hs, lane);
}

/* Block (query tile x, head y, batch z): query rows [t0, t0+64); warp w
 * owns query rows t0 + 16w + i of dQ (accumulator fragments). Per key tile
 * of 32 rows up to the diagonal: S = Q K^T, P = exp(scale S - lse) in
 * registers (lane pair i: row i, key columns 2j + par), dP = dO V^T,
 * dS = P (dP - D) scale bf16 into ps, dQ += dS K. */
template <int D>
static __global__ void __launch_bounds__(FA_TC_WARPS * 32)
    fa_dq_tc_kernel(float *dqkv, const float *dout, const float *qkv, const float *lse,
                    const float *dd, int T, int C, int NH, float scale) {
    constexpr int NR = FA_TC_BBC, BR = FA_TC_BR, NJ = NR / 2;
    typedef fa_tc_bsmem<D, NR> sm_t;
    constexpr int LQ = sm_t::LQ, LP = sm_t::LP, LS = sm_t::LS;
    __shared__ __align__(128) sm_t sm;
    int hs = C / NH, C3 = 3 * C, h = blockIdx.y, b = blockIdx.z, t0 = blockIdx.x * BR;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, par = lane & 1, i = lane / 2;
    int r = 16 * warp + i, t = t0 + r; /* this lane pair's query row */
    size_t qoff = (size_t)b * T * C3 + (size_t)h * hs, ooff = (size_t)b * T * C + (size_t)h * hs;
    float *sfw = sm.sf + 16 * warp * LS, *srow = sfw + i * LS;
    __nv_bfloat16 *psw = sm.ps + 16 * warp * LP;

    fa_tc_load<BR, D>(sm.a0, qkv + qoff, C3, t0, T, hs);
    fa_tc_load<BR, D>(sm.a1, dout + ooff, C, t0, T, hs);
    for (int e = threadIdx.x; e < BR; e += FA_TC_WARPS * 32) {
        sm.lse[e] = t0 + e < T ? lse[((size_t)b * NH + h) * T + t0 + e] : 0.0f;
        sm.d[e] = t0 + e < T ? dd[((size_t)b * NH + h) * T + t0 + e] : 0.0f;
    }
    fa_tc_acc dq[D / 16];
#pragma unroll
    for (int n = 0; n < D / 16; n++) nvcuda::wmma::fill_fragment(dq[n], 0.0f);
    int tend = min(t0 + BR, T);
    for (int s0 = 0; s0 < tend; s0 += NR) {
        __syncthreads(); /* the last step's dS K is done with x (and a0, a1 are loaded) */
        fa_tc_load<NR, D>(sm.x, qkv + qoff + C, C3, s0, T, hs);
        fa_tc_load<NR, D>(sm.y, qkv + qoff + 2 * C, C3, s0, T, hs);
        __syncthreads();
        fa_tc_mm<D / 16, NR / 16, true>(sfw, LS, sm.a0 + 16 * warp * LQ, LQ, sm.x, LQ);
        __syncwarp();
        float p[NJ];
#pragma unroll
        for (int j = 0; j < NJ; j++) {
            int sk = s0 + 2 * j + par;
            p[j] = sk <= t && t < T && sk < T ? expf(srow[2 * j + par] * scale - sm.lse[r]) : 0.0f;
        }
        __syncwarp(); /* every lane has read S */
        fa_tc_mm<D / 16, NR / 16, true>(sfw, LS, sm.a1 + 16 * warp * LQ, LQ, sm.y, LQ);
        __syncwarp();
#pragma unroll
        for (int j = 0; j < NJ; j++) {
            int c = 2 * j + par; /* p is 0 where masked, so dS is too */
            psw[i * LP + c] = fa_tc_bf16(p[j] * (srow[c] - sm.d[r]) * scale);
        }
        __syncwarp();
        fa_tc_mma<NR / 16, D / 16, false>(dq, psw, LP, sm.x, LQ); /* dQ += dS K */
    }
    __syncwarp();
    fa_tc_store<D / 16>(dqkv + qoff, C3, dq, sfw, LS, t0 + 16 * warp, T, hs, lane);
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

template <int D>
static void fa_backward_tc(float *dqkv, const float *dout, const float *qkv, const float *lse,
                           const float *dd, int B, int T, int C, int NH, float scale) {
    dim3 gk((unsigned)((T + FA_TC_BC - 1) / FA_TC_BC), (unsigned)NH, (unsigned)B);
    fa_dkdv_tc_kernel<D><<<gk, FA_TC_WARPS * 32>>>(dqkv, dout, qkv, lse, dd, T, C, NH, scale);
    MT_CUDA_LAUNCHED("fa_dkdv_tc_kernel");
    dim3 gq((unsigned)((T + FA_TC_BR - 1) / FA_TC_BR), (unsigned)NH, (unsigned)B);
    fa_dq_tc_kernel<D><<<gq, FA_TC_WARPS * 32>>>(dqkv, dout, qkv, lse, dd, T, C, NH, scale);
    MT_CUDA_LAUNCHED("fa_dq_tc_kernel");
}

extern "C" void mt_cuda_flash_attention_backward_tc(float *dqkv, const float *dout,
                                                    const float *qkv, const float *lse,
                                                    const float *d, int B, int T, int C, int NH) {
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    if (hs <= 32)
        fa_backward_tc<32>(dqkv, dout, qkv, lse, d, B, T, C, NH, scale);
    else
        fa_backward_tc<64>(dqkv, dout, qkv, lse, d, B, T, C, NH, scale);
}
