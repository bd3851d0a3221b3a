/*
 * flash_attention.cu - flash-style causal multi-head attention on the GPU,
 * the device twins of mt_cpu_flash_attention_forward/backward
 * (kernels/cpu/flash_attention.c); contract in kernels/backend.h:
 *   qkv, dqkv (B,T,3C): row (b,t) = q | k | v, head h at channels h*hs
 *   out, dout (B,T,C):  head h at channels h*hs
 *   lse (B,NH,T):       log-sum-exp of the row's scaled causal scores
 * with hs = C/NH and scale = 1/sqrt(hs). No (T,T) matrix is stored.
 *
 * Kernels, each one block of FA_THREADS threads per tile of one (b,h) pair
 * (grid x: tiles along T, y: head, z: batch):
 *   fa_forward_kernel  one block per query tile of BR rows; loops over the
 *                      key tiles of BC rows up to the diagonal with an online
 *                      softmax (running max m, running sum l, the output
 *                      accumulator rescaled when m grows); writes out and lse.
 *   fa_rowdot_kernel   D = rowsum(dout * out) per (b,h,t), in double as the CPU.
 *   fa_dkdv_kernel     one block per key tile; loops over the query tiles from
 *                      the diagonal to T, recomputing P = exp(scale S - lse):
 *                      dV += P^T dO, dK += dS^T Q, dS = P (dP - D) scale,
 *                      dP = dO V^T.
 *   fa_dq_kernel       one block per query tile; loops over the key tiles up
 *                      to the diagonal: dQ += dS K.
 * The backward is the FlashAttention-2 split: every element of dQ, dK, dV is
 * owned by one thread of one block and summed in a fixed order (key or query
 * tiles in order, then the tile's rows in order), so there are no atomics and
 * the bits do not depend on scheduling; the price is that the dQ kernel
 * recomputes S, P and dP a second time.
 *
 * Thread mapping, the same in every kernel: FA_THREADS = 128 threads are 8
 * groups of 16 lanes, g = tid / 16, lane = tid % 16 (a group is half a
 * warp). A tile (R rows, N columns) held in registers gives group g the
 * R/8 consecutive rows g*R/8 + i and lane the N/16 columns lane + 16 j, so a
 * row's reductions (max, sum) are a 16-lane shuffle tree inside one half
 * warp, and reading a row-major shared tile along its columns touches
 * consecutive words. Shared tiles of head-size rows are padded to D + 1
 * columns (D + 1 odd: the 16 lanes reading 16 rows at one column hit 16
 * banks).
 *
 * Head sizes: the tiles hold D = 32, 64 or 128 columns (the smallest that
 * holds hs, chosen per call); columns hs..D-1 and rows past T are loaded as
 * zeros, which add exact zeros to every dot product, and are never written
 * back. Tile sizes per D (fa_cfg) keep every kernel's static shared memory
 * under 48 KB.
 *
 * Masking: score (t,s) (query row t, key row s) is used iff s <= t, t < T and
 * s < T. The first key tile a query row meets (keys 0..) always holds key 0,
 * which every row sees, so the running max is finite after it and a later
 * tile that is wholly masked for a row (possible when BR > BC) leaves m and l
 * alone (its max -inf, its exp terms 0) instead of computing exp(-inf + inf).
 *
 * bf16 matmul mode (mt_cuda_precision_bf16) with hs <= 64 runs the
 * tensor-core kernels of flash_attention_tc.cu instead (the rowdot kernel
 * stays); the kernels here then serve hs 65..128. Their rule, as the CPU:
 * the q, k, v and dout tiles are rounded to bf16 (mt_bf16_round of
 * kernels/bf16.h, round to nearest even) as they are loaded, and P (before
 * P V and P^T dO) and dS (before dS K and dS^T Q) are rounded as they are
 * stored for those products; the softmax, its statistics, D and all sums
 * stay fp32 (the product of two bf16 values is exact in fp32, so the FMA
 * rounds only the sum).
 */
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/bf16.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_ops.h"

#define FA_THREADS      128 /* threads per block: 8 groups of 16 lanes */
#define FA_GROUPS       8
#define FA_LANES        16
#define FA_MAX_HS       MT_CUDA_FLASH_MAX_HEAD /* largest head size (fa_cfg<128>) */
#define FA_ROWDOT_WARPS 8                      /* rows (warps) per block of fa_rowdot_kernel */

/* Tile sizes per padded head size D: BR query rows and BC key rows per tile
 * in the forward, BBR and BBC in the backward (both of its kernels). BR, BBR
 * multiples of 8, BC, BBC multiples of 16 (the thread mapping). Shared
 * floats (lead D+1 for head-size tiles, columns+1 for score tiles):
 *   forward:  q (BR), k or v (BC), P (BR x BC)
 *   backward: q, dout (BBR), k, v (BBC), P and dS (BBR x BBC)
 *   D = 32:  fwd 64 x 64: 33.5 KB   bwd 32 x 64: 41.9 KB
 *   D = 64:  fwd 64 x 32: 33.4 KB   bwd 32 x 32: 41.7 KB
 *   D = 128: fwd 32 x 32: 37.2 KB   bwd 16 x 16: 35.1 KB */
template <int D> struct fa_cfg;
template <> struct fa_cfg<32> {
    enum { BR = 64, BC = 64, BBR = 32, BBC = 64 };
};
template <> struct fa_cfg<64> {
    enum { BR = 64, BC = 32, BBR = 32, BBC = 32 };
};
template <> struct fa_cfg<128> {
    enum { BR = 32, BC = 32, BBR = 16, BBC = 16 };
};

/* Work buffer: D (B,NH,T) of the backward. Grown, never freed. */
static mt_cuda_work work;

/* ---- tile helpers (all threads of the block call them) ---- */

/* dst(ROWS, D), lead D+1 = rows [r0, r0+ROWS) and columns [0,hs) of a
 * matrix with lead ld; rows >= n and columns >= hs are zeros; rounded to
 * bf16 when bf. Consecutive threads read consecutive columns (coalesced). */
template <int ROWS, int D>
static __device__ void fa_load(float *dst, const float *src, int ld, int r0, int n, int hs,
                               int bf) {
    for (int e = threadIdx.x; e < ROWS * D; e += FA_THREADS) {
        int r = e / D, c = e % D;
        float x = 0.0f;
        if (r0 + r < n && c < hs) x = src[(size_t)(r0 + r) * ld + c];
        dst[r * (D + 1) + c] = bf ? mt_bf16_round(x) : x;
    }
}

/* dst[r] = src[r0 + r] for r < ROWS (0 past n): a tile's lse or D. */
template <int ROWS>
static __device__ void fa_load_vec(float *dst, const float *src, int r0, int n) {
    for (int r = threadIdx.x; r < ROWS; r += FA_THREADS) dst[r] = r0 + r < n ? src[r0 + r] : 0.0f;
}

/* s[i][j] = sum over d < D, in order, of a(g*RM + i, d) * b(lane + 16 j, d):
 * A B^T with a, b (rows, D) of lead D+1 in shared memory (S = Q K^T with
 * rows queries and columns keys, or dP = dO V^T). */
template <int RM, int CN, int D>
static __device__ void fa_abt(float (&s)[RM][CN], const float *a, const float *b, int g, int lane) {
#pragma unroll
    for (int i = 0; i < RM; i++)
#pragma unroll
        for (int j = 0; j < CN; j++) s[i][j] = 0.0f;
#pragma unroll 4
    for (int d = 0; d < D; d++) {
        float av[RM], bv[CN];
#pragma unroll
        for (int i = 0; i < RM; i++) av[i] = a[(g * RM + i) * (D + 1) + d];
#pragma unroll
        for (int j = 0; j < CN; j++) bv[j] = b[(lane + FA_LANES * j) * (D + 1) + d];
#pragma unroll
        for (int i = 0; i < RM; i++)
#pragma unroll
            for (int j = 0; j < CN; j++) s[i][j] = fmaf(av[i], bv[j], s[i][j]);
    }
}

/* o[i][j] += sum over c < NC, in order, of p(g*RM + i, c) * x(c, lane + 16 j):
 * P X with p (rows, NC) of lead NC+1 and x (NC, D) of lead D+1 (O += P V,
 * dQ += dS K). */
template <int RM, int DN, int NC, int D>
static __device__ void fa_ab(float (&o)[RM][DN], const float *p, const float *x, int g, int lane) {
#pragma unroll 4
    for (int c = 0; c < NC; c++) {
        float pv[RM], xv[DN];
#pragma unroll
        for (int i = 0; i < RM; i++) pv[i] = p[(g * RM + i) * (NC + 1) + c];
#pragma unroll
        for (int j = 0; j < DN; j++) xv[j] = x[c * (D + 1) + lane + FA_LANES * j];
#pragma unroll
        for (int i = 0; i < RM; i++)
#pragma unroll
            for (int j = 0; j < DN; j++) o[i][j] = fmaf(pv[i], xv[j], o[i][j]);
    }
}

/* o[i][j] += sum over r < NR, in order, of p(r, g*KM + i) * x(r, lane + 16 j):
 * P^T X with p (NR, cols) of lead lp and x (NR, D) of lead D+1 (dV += P^T dO,
 * dK += dS^T Q; rows of o are keys). */
template <int KM, int DN, int NR, int D>
static __device__ void fa_atb(float (&o)[KM][DN], const float *p, int lp, const float *x, int g,
                              int lane) {
#pragma unroll 4
    for (int r = 0; r < NR; r++) {
        float pv[KM], xv[DN];
#pragma unroll
        for (int i = 0; i < KM; i++) pv[i] = p[r * lp + g * KM + i];
#pragma unroll
        for (int j = 0; j < DN; j++) xv[j] = x[r * (D + 1) + lane + FA_LANES * j];
#pragma unroll
        for (int i = 0; i < KM; i++)
#pragma unroll
            for (int j = 0; j < DN; j++) o[i][j] = fmaf(pv[i], xv[j], o[i][j]);
    }
}

/* Max and sum over the 16 lanes of a group (a butterfly: every lane ends with
 * bitwise the same value, since a + b == b + a exactly). */
static __device__ float fa_group_max(float v) {
#pragma unroll
    for (int o = FA_LANES / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

static __device__ float fa_group_sum(float v) {
#pragma unroll
    for (int o = FA_LANES / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* o (RM rows g*RM + i of a tile from row r0, DN columns lane + 16 j) into
 * dst rows < T, columns < hs, lead ld. */
template <int RM, int DN>
static __device__ void fa_store(float *dst, int ld, const float (&o)[RM][DN], int r0, int T, int hs,
                                int g, int lane) {
#pragma unroll
    for (int i = 0; i < RM; i++) {
        int t = r0 + g * RM + i;
        if (t >= T) continue;
#pragma unroll
        for (int j = 0; j < DN; j++) {
            int c = lane + FA_LANES * j;
            if (c < hs) dst[(size_t)t * ld + c] = o[i][j];
        }
    }
}

/* ---- forward ---- */

/* Block (query tile x, head y, batch z): query rows [t0, t0+BR) of head h.
 * Thread (g, lane) owns rows g*RM + i of the tile: their m, l (replicated
 * over the group's 16 lanes, bitwise equal), score columns lane + 16 j of
 * each key tile and output columns lane + 16 j. Shared: q (BR, D) for the
 * whole block; kv holds the key tile, then the value tile; p (BR, BC) the
 * probabilities (bf16-rounded in bf16 mode), then read by P V. */
template <int D>
static __global__ void __launch_bounds__(FA_THREADS)
    fa_forward_kernel(float *out, float *lse, const float *qkv, int T, int C, int NH, float scale,
                      int bf) {
    constexpr int BR = fa_cfg<D>::BR, BC = fa_cfg<D>::BC;
    constexpr int RM = BR / FA_GROUPS, CN = BC / FA_LANES, DN = D / FA_LANES;
    __shared__ float qs[BR * (D + 1)], kv[BC * (D + 1)], ps[BR * (BC + 1)];
    int hs = C / NH, C3 = 3 * C, h = blockIdx.y, b = blockIdx.z;
    int t0 = blockIdx.x * BR, g = threadIdx.x / FA_LANES, lane = threadIdx.x % FA_LANES;
    const float *q = qkv + (size_t)b * T * C3 + (size_t)h * hs, *k = q + C, *v = q + 2 * C;

    fa_load<BR, D>(qs, q, C3, t0, T, hs, bf);
    float m[RM], l[RM], o[RM][DN];
#pragma unroll
    for (int i = 0; i < RM; i++) {
        m[i] = -INFINITY, l[i] = 0.0f;
#pragma unroll
        for (int j = 0; j < DN; j++) o[i][j] = 0.0f;
    }
    int tend = min(t0 + BR, T); /* keys [0, tend): the last tile is the diagonal one */
    for (int s0 = 0; s0 < tend; s0 += BC) {
        __syncthreads(); /* the last tile's P V is done with kv and ps (and qs is loaded) */
        fa_load<BC, D>(kv, k, C3, s0, T, hs, bf);
        __syncthreads();
        float s[RM][CN];
        fa_abt<RM, CN, D>(s, qs, kv, g, lane);
#pragma unroll
        for (int i = 0; i < RM; i++) {
            int r = g * RM + i, t = t0 + r;
            float mx = -INFINITY;
#pragma unroll
            for (int j = 0; j < CN; j++) {
                int sk = s0 + lane + FA_LANES * j;
                s[i][j] = sk <= t && sk < T ? s[i][j] * scale : -INFINITY;
                mx = fmaxf(mx, s[i][j]);
            }
            /* finite: key 0 was in the first tile (see the file comment) */
            float mnew = fmaxf(m[i], fa_group_max(mx));
            float corr = expf(m[i] - mnew); /* 0 on the first tile (m = -inf) */
            float sum = 0.0f;
#pragma unroll
            for (int j = 0; j < CN; j++) {
                float p = expf(s[i][j] - mnew); /* masked: exp(-inf) = 0 */
                sum += p;
                ps[r * (BC + 1) + lane + FA_LANES * j] = bf ? mt_bf16_round(p) : p;
            }
            l[i] = l[i] * corr + fa_group_sum(sum);
            m[i] = mnew;
#pragma unroll
            for (int j = 0; j < DN; j++) o[i][j] *= corr;
        }
        __syncthreads(); /* every thread is done with the key tile; p is complete */
        fa_load<BC, D>(kv, v, C3, s0, T, hs, bf);
        __syncthreads();
        fa_ab<RM, DN, BC, D>(o, ps, kv, g, lane);
    }
#pragma unroll
    for (int i = 0; i < RM; i++) {
        int t = t0 + g * RM + i;
        float inv = 1.0f / l[i]; /* as the CPU: out = acc * (1 / l) */
#pragma unroll
        for (int j = 0; j < DN; j++) o[i][j] *= inv;
        if (lane == 0 && t < T) lse[((size_t)b * NH + h) * T + t] = m[i] + logf(l[i]);
    }
    fa_store<RM, DN>(out + (size_t)b * T * C + (size_t)h * hs, C, o, t0, T, hs, g, lane);
}

/* ---- backward ---- */

/* d[(b*NH + h)*T + t] = sum over c < hs of dout . out at row (b,t), head h:
 * one warp per (b,h,t), each lane adding its strided channels in double,
 * then a fixed shuffle tree (the CPU adds in double too). */
static __global__ void fa_rowdot_kernel(float *d, const float *dout, const float *out, int B, int T,
                                        int C, int NH) {
    int hs = C / NH, lane = threadIdx.x & 31;
    size_t row = (size_t)blockIdx.x * FA_ROWDOT_WARPS + (threadIdx.x >> 5);
    if (row >= (size_t)B * NH * T) return; /* the whole warp leaves together */
    size_t t = row % T, bh = row / T, b = bh / NH, h = bh % NH;
    size_t off = (b * T + t) * C + h * hs;
    double s = 0.0;
    for (int c = lane; c < hs; c += 32) s += (double)dout[off + c] * out[off + c];
    for (int o = 16; o > 0; o >>= 1) s += __shfl_down_sync(0xffffffffu, s, o);
    if (lane == 0) d[row] = (float)s;
}

/* The scores of one (query tile, key tile) pair in registers, rows queries
 * g*RM + i (from t0), columns keys lane + 16 j (from s0): p = exp(scale S -
 * lse) and ds = p (dP - D) scale, both 0 where masked. Shared: q, dout
 * (query rows), k, v (key rows), lse and dd (the tile's lse and D). */
template <int RM, int CN, int D>
static __device__ void fa_probs(float (&p)[RM][CN], float (&ds)[RM][CN], const float *qs,
                                const float *dos, const float *ks, const float *vs,
                                const float *lse, const float *dd, int t0, int s0, int T,
                                float scale, int g, int lane) {
    fa_abt<RM, CN, D>(p, qs, ks, g, lane);
    fa_abt<RM, CN, D>(ds, dos, vs, g, lane);
#pragma unroll
    for (int i = 0; i < RM; i++) {
        int r = g * RM + i, t = t0 + r;
#pragma unroll
        for (int j = 0; j < CN; j++) {
            int sk = s0 + lane + FA_LANES * j;
            int seen = sk <= t && t < T && sk < T;
            p[i][j] = seen ? expf(p[i][j] * scale - lse[r]) : 0.0f;
            ds[i][j] = seen ? p[i][j] * (ds[i][j] - dd[r]) * scale : 0.0f;
        }
    }
}

/* Shared tiles of the backward kernels (floats). */
template <int D> struct fa_bwd_smem {
    enum { BR = fa_cfg<D>::BBR, BC = fa_cfg<D>::BBC };
    float q[BR * (D + 1)], dout[BR * (D + 1)], k[BC * (D + 1)], v[BC * (D + 1)];
    float p[BR * (BC + 1)], ds[BR * (BC + 1)], lse[BR], d[BR];
};

/* Block (key tile x, head y, batch z): key rows [s0, s0+BC) of head h.
 * Thread (g, lane) owns dK and dV rows g*KM + i of the tile, columns lane +
 * 16 j. The key and value tiles stay in shared memory; the query tiles from
 * the one holding row s0 (the first that sees a key of this tile) to the
 * last are loaded in order, with their dout, lse and D. */
template <int D>
static __global__ void __launch_bounds__(FA_THREADS)
    fa_dkdv_kernel(float *dqkv, const float *dout, const float *qkv, const float *lse,
                   const float *dd, int T, int C, int NH, float scale, int bf) {
    constexpr int BR = fa_cfg<D>::BBR, BC = fa_cfg<D>::BBC;
    constexpr int RM = BR / FA_GROUPS, CN = BC / FA_LANES, KM = BC / FA_GROUPS;
    constexpr int DN = D / FA_LANES;
    __shared__ fa_bwd_smem<D> sm;
    int hs = C / NH, C3 = 3 * C, h = blockIdx.y, b = blockIdx.z;
    int s0 = blockIdx.x * BC, g = threadIdx.x / FA_LANES, lane = threadIdx.x % FA_LANES;
    size_t qoff = (size_t)b * T * C3 + (size_t)h * hs, ooff = (size_t)b * T * C + (size_t)h * hs;
    const float *hl = lse + ((size_t)b * NH + h) * T, *hd = dd + ((size_t)b * NH + h) * T;

    fa_load<BC, D>(sm.k, qkv + qoff + C, C3, s0, T, hs, bf);
    fa_load<BC, D>(sm.v, qkv + qoff + 2 * C, C3, s0, T, hs, bf);
    float dk[KM][DN], dv[KM][DN];
#pragma unroll
    for (int i = 0; i < KM; i++)
#pragma unroll
        for (int j = 0; j < DN; j++) dk[i][j] = 0.0f, dv[i][j] = 0.0f;
    for (int t0 = s0 / BR * BR; t0 < T; t0 += BR) {
        __syncthreads(); /* the last tile's products are done with q, dout, p, ds */
        fa_load<BR, D>(sm.q, qkv + qoff, C3, t0, T, hs, bf);
        fa_load<BR, D>(sm.dout, dout + ooff, C, t0, T, hs, bf);
        fa_load_vec<BR>(sm.lse, hl, t0, T);
        fa_load_vec<BR>(sm.d, hd, t0, T);
        __syncthreads();
        float p[RM][CN], ds[RM][CN];
        fa_probs<RM, CN, D>(p, ds, sm.q, sm.dout, sm.k, sm.v, sm.lse, sm.d, t0, s0, T, scale, g,
                            lane);
#pragma unroll
        for (int i = 0; i < RM; i++)
#pragma unroll
            for (int j = 0; j < CN; j++) {
                int e = (g * RM + i) * (BC + 1) + lane + FA_LANES * j;
                sm.p[e] = bf ? mt_bf16_round(p[i][j]) : p[i][j];
                sm.ds[e] = bf ? mt_bf16_round(ds[i][j]) : ds[i][j];
            }
        __syncthreads();
        fa_atb<KM, DN, BR, D>(dv, sm.p, BC + 1, sm.dout, g, lane); /* dV += P^T dO */
        fa_atb<KM, DN, BR, D>(dk, sm.ds, BC + 1, sm.q, g, lane);   /* dK += dS^T Q */
    }
    fa_store<KM, DN>(dqkv + qoff + C, C3, dk, s0, T, hs, g, lane);
    fa_store<KM, DN>(dqkv + qoff + 2 * C, C3, dv, s0, T, hs, g, lane);
}

/* Block (query tile x, head y, batch z): query rows [t0, t0+BR) of head h.
 * Thread (g, lane) owns dQ rows g*RM + i, columns lane + 16 j (the rows of
 * its scores). The query, dout, lse and D tiles stay in shared memory; the
 * key tiles from 0 to the diagonal one are loaded in order. */
template <int D>
static __global__ void __launch_bounds__(FA_THREADS)
    fa_dq_kernel(float *dqkv, const float *dout, const float *qkv, const float *lse,
                 const float *dd, int T, int C, int NH, float scale, int bf) {
    constexpr int BR = fa_cfg<D>::BBR, BC = fa_cfg<D>::BBC;
    constexpr int RM = BR / FA_GROUPS, CN = BC / FA_LANES, DN = D / FA_LANES;
    __shared__ fa_bwd_smem<D> sm;
    int hs = C / NH, C3 = 3 * C, h = blockIdx.y, b = blockIdx.z;
    int t0 = blockIdx.x * BR, g = threadIdx.x / FA_LANES, lane = threadIdx.x % FA_LANES;
    size_t qoff = (size_t)b * T * C3 + (size_t)h * hs, ooff = (size_t)b * T * C + (size_t)h * hs;

    fa_load<BR, D>(sm.q, qkv + qoff, C3, t0, T, hs, bf);
    fa_load<BR, D>(sm.dout, dout + ooff, C, t0, T, hs, bf);
    fa_load_vec<BR>(sm.lse, lse + ((size_t)b * NH + h) * T, t0, T);
    fa_load_vec<BR>(sm.d, dd + ((size_t)b * NH + h) * T, t0, T);
    float dq[RM][DN];
#pragma unroll
    for (int i = 0; i < RM; i++)
#pragma unroll
        for (int j = 0; j < DN; j++) dq[i][j] = 0.0f;
    int tend = min(t0 + BR, T);
    for (int s0 = 0; s0 < tend; s0 += BC) {
        __syncthreads(); /* the last tile's dS K is done with k and ds */
        fa_load<BC, D>(sm.k, qkv + qoff + C, C3, s0, T, hs, bf);
        fa_load<BC, D>(sm.v, qkv + qoff + 2 * C, C3, s0, T, hs, bf);
        __syncthreads();
        float p[RM][CN], ds[RM][CN];
        fa_probs<RM, CN, D>(p, ds, sm.q, sm.dout, sm.k, sm.v, sm.lse, sm.d, t0, s0, T, scale, g,
                            lane);
#pragma unroll
        for (int i = 0; i < RM; i++)
#pragma unroll
            for (int j = 0; j < CN; j++) {
                float x = ds[i][j];
                sm.ds[(g * RM + i) * (BC + 1) + lane + FA_LANES * j] = bf ? mt_bf16_round(x) : x;
            }
        __syncthreads();
        fa_ab<RM, DN, BC, D>(dq, sm.ds, sm.k, g, lane); /* dQ += dS K */
    }
    fa_store<RM, DN>(dqkv + qoff, C3, dq, t0, T, hs, g, lane);
}

/* ---- host side ---- */

/* The padded head size D for hs, or abort: one line naming what is
 * supported (the unfused attention has no such limit). */
static int fa_head_dim(int hs, int B, int NH, const char *op) {
    if (hs >= 1 && hs <= FA_MAX_HS && B <= MT_CUDA_MAX_BLOCKS && NH <= MT_CUDA_MAX_BLOCKS)
        return hs <= 32 ? 32 : hs <= 64 ? 64 : 128;
    fprintf(stderr,
            "mpitrain: error: CUDA %s supports head sizes 1..%d and B, NH up to %d, not hs %d "
            "(B %d, NH %d); set train.fused = false to run the unfused attention\n",
            op, FA_MAX_HS, MT_CUDA_MAX_BLOCKS, hs, B, NH);
    abort();
}

template <int D>
static void fa_forward(float *out, float *lse, const float *qkv, int B, int T, int C, int NH,
                       float scale, int bf) {
    dim3 grid((unsigned)((T + fa_cfg<D>::BR - 1) / fa_cfg<D>::BR), (unsigned)NH, (unsigned)B);
    fa_forward_kernel<D><<<grid, FA_THREADS>>>(out, lse, qkv, T, C, NH, scale, bf);
    MT_CUDA_LAUNCHED("fa_forward_kernel");
}

template <int D>
static void fa_backward(float *dqkv, const float *dout, const float *qkv, const float *lse,
                        const float *dd, int B, int T, int C, int NH, float scale, int bf) {
    constexpr int BR = fa_cfg<D>::BBR, BC = fa_cfg<D>::BBC;
    dim3 gk((unsigned)((T + BC - 1) / BC), (unsigned)NH, (unsigned)B);
    fa_dkdv_kernel<D><<<gk, FA_THREADS>>>(dqkv, dout, qkv, lse, dd, T, C, NH, scale, bf);
    MT_CUDA_LAUNCHED("fa_dkdv_kernel");
    dim3 gq((unsigned)((T + BR - 1) / BR), (unsigned)NH, (unsigned)B);
    fa_dq_kernel<D><<<gq, FA_THREADS>>>(dqkv, dout, qkv, lse, dd, T, C, NH, scale, bf);
    MT_CUDA_LAUNCHED("fa_dq_kernel");
}

extern "C" void mt_cuda_flash_attention_forward(float *out, float *lse, const float *qkv, int B,
                                                int T, int C, int NH) {
    if (B <= 0 || T <= 0 || NH <= 0) return;
    int hs = C / NH, D = fa_head_dim(hs, B, NH, "flash_attention_forward");
    int bf = mt_cuda_precision_bf16();
    if (bf && D <= 64) { /* the tensor cores (flash_attention_tc.cu) */
        mt_cuda_flash_attention_forward_tc(out, lse, qkv, B, T, C, NH);
        return;
    }
    float scale = 1.0f / sqrtf((float)hs);
    if (D == 32)
        fa_forward<32>(out, lse, qkv, B, T, C, NH, scale, bf);
    else if (D == 64)
        fa_forward<64>(out, lse, qkv, B, T, C, NH, scale, bf);
    else
        fa_forward<128>(out, lse, qkv, B, T, C, NH, scale, bf);
}

extern "C" void mt_cuda_flash_attention_backward(float *dqkv, const float *dout, const float *qkv,
                                                 const float *out, const float *lse, int B, int T,
                                                 int C, int NH) {
    if (B <= 0 || T <= 0 || NH <= 0) return;
    int hs = C / NH, D = fa_head_dim(hs, B, NH, "flash_attention_backward");
    int bf = mt_cuda_precision_bf16();
    float scale = 1.0f / sqrtf((float)hs);
    size_t rows = (size_t)B * NH * T;
    float *dd = (float *)mt_cuda_work_get(&work, rows * sizeof(float));
    unsigned blocks = (unsigned)((rows + FA_ROWDOT_WARPS - 1) / FA_ROWDOT_WARPS);
    fa_rowdot_kernel<<<blocks, 32 * FA_ROWDOT_WARPS>>>(dd, dout, out, B, T, C, NH);
    MT_CUDA_LAUNCHED("fa_rowdot_kernel");
    if (bf && D <= 64) { /* the tensor cores (flash_attention_tc.cu) */
        mt_cuda_flash_attention_backward_tc(dqkv, dout, qkv, lse, dd, B, T, C, NH);
        return;
    }
    if (D == 32)
        fa_backward<32>(dqkv, dout, qkv, lse, dd, B, T, C, NH, scale, bf);
    else if (D == 64)
        fa_backward<64>(dqkv, dout, qkv, lse, dd, B, T, C, NH, scale, bf);
    else
        fa_backward<128>(dqkv, dout, qkv, lse, dd, B, T, C, NH, scale, bf);
}
