/*
 * layernorm.cu - CUDA LayerNorm forward/backward, the device twins of
 * mt_cpu_layernorm_forward/backward (kernels/cpu/gpt_cpu.c), and the fused
 * residual add + LayerNorm forward (residual_layernorm_forward, the twin of
 * kernels/cpu/fused_cpu.c's); contracts in kernels/backend.h. x, a, b, res,
 * out, dout, dx: (N,C); w, b, dw, db: (C); mean, rstd: (N).
 *
 * Numerics follow the CPU op step by step: row statistics in double (two
 * passes), per-element math in float with the CPU's order of operations. The
 * element formulas use __fadd_rn/__fmul_rn so nvcc cannot contract them into
 * FMAs (the CPU build is ISO C17, which does not contract either); with that,
 * the forward usually matches the CPU bitwise.
 *
 * Determinism: every reduction has a fixed order. Row sums: each thread adds
 * its strided elements in index order, then a fixed shuffle tree per warp and
 * a fixed tree over the warps. dw/db (column sums over N rows): one thread per
 * (column, fixed block of rows) sums its rows in order into a partial, then one
 * thread per column adds the partials in block order. No atomics.
 */
#include <cuda_runtime.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_ops.h"

#define LN_EPS      1e-5
#define LN_THREADS  256 /* threads per row block (a multiple of 32) */
#define LN_MAXPARTS 256 /* most row blocks in the dw/db partial sums */

/* Work buffer: dw and db partials, (2, nparts, C). Grown, never freed. */
static mt_cuda_work work;

/* The LayerNorm of one row xr(C) into o(C), *mean, *rstd, by the whole block
 * (thread t takes columns t, t + blockDim.x, ... in every sweep). sh: 32
 * doubles. xr may have been written by this same thread just before (the
 * fused op's res): a thread reads only the columns it wrote. */
static __device__ void ln_row_forward(float *o, float *mean, float *rstd, const float *xr,
                                      const float *w, const float *b, int C, double *sh) {
    /* Two passes in double, as the CPU: no cancellation when |mean| >> std. */
    double s = 0.0;
    for (int c = threadIdx.x; c < C; c += blockDim.x) s += xr[c];
    double m = mt_cuda_block_sum_shfl(s, sh) / C;
    double v = 0.0;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        double d = (double)xr[c] - m;
        v += d * d;
    }
    v = mt_cuda_block_sum_shfl(v, sh);
    float mf = (float)m;
    float rs = (float)(1.0 / sqrt(v / C + LN_EPS));

    /* Normalize with the saved float mean/rstd so the backward sees the same xhat. */
    for (int c = threadIdx.x; c < C; c += blockDim.x)
        o[c] = __fadd_rn(__fmul_rn(__fmul_rn(__fsub_rn(xr[c], mf), rs), w[c]), b[c]);
    if (threadIdx.x == 0) {
        *mean = mf;
        *rstd = rs;
    }
}

/* One block per row. */
static __global__ void ln_forward_kernel(float *out, float *mean, float *rstd, const float *x,
                                         const float *w, const float *b, int C) {
    __shared__ double sh[32];
    size_t row = blockIdx.x;
    ln_row_forward(out + row * C, mean + row, rstd + row, x + row * C, w, b, C, sh);
}

/* res = a + b, then the LayerNorm of res: one block per row (blockIdx.x),
 * thread t takes columns t, t + blockDim.x, ... in both steps, so a and b
 * are read once and each res element is read back by the thread that wrote
 * it (no barrier needed before ln_row_forward). res may alias a or b: each
 * element is read before it is written, by one thread. The add is the add
 * op's (one rounding) and the row is ln_forward_kernel's: the same bits as
 * the unfused add then layernorm_forward. */
static __global__ void residual_ln_forward_kernel(float *res, float *out, float *mean, float *rstd,
                                                  const float *a, const float *b, const float *w,
                                                  const float *bias, int C) {
    __shared__ double sh[32];
    size_t row = blockIdx.x;
    float *rr = res + row * C;
    const float *ar = a + row * C, *br = b + row * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) rr[c] = ar[c] + br[c];
    ln_row_forward(out + row * C, mean + row, rstd + row, rr, w, bias, C, sh);
}

/* dx += dL/dx; one block per row. */
static __global__ void ln_backward_dx_kernel(float *dx, const float *dout, const float *x,
                                             const float *w, const float *mean, const float *rstd,
                                             int C) {
    __shared__ double sh[32];
    size_t row = blockIdx.x;
    const float *xr = x + row * C, *dr = dout + row * C;
    float *dxr = dx + row * C;
    float mf = mean[row], rs = rstd[row];

    double sd = 0.0, sdx = 0.0; /* sums of dnorm and dnorm * xhat */
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float xhat = __fmul_rn(__fsub_rn(xr[c], mf), rs);
        float dn = __fmul_rn(dr[c], w[c]);
        sd += dn;
        sdx += (double)dn * xhat;
    }
    sd = mt_cuda_block_sum_shfl(sd, sh);
    sdx = mt_cuda_block_sum_shfl(sdx, sh);
    float md = (float)(sd / C), mdx = (float)(sdx / C);

    /* rs * ((dn - md) - xhat * mdx), rounded as the CPU does */
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float xhat = __fmul_rn(__fsub_rn(xr[c], mf), rs);
        float dn = __fmul_rn(dr[c], w[c]);
        float g = __fsub_rn(__fsub_rn(dn, md), __fmul_rn(xhat, mdx));
        dxr[c] = __fadd_rn(dxr[c], __fmul_rn(rs, g));
    }
}

/* Partials of dw, db: thread (c, p) sums rows [p*rows_per, min((p+1)*rows_per, N))
 * of column c in row order (float, as the CPU) into pw[p*C + c], pb[p*C + c].
 * grid (ceil(C/LN_THREADS), nparts). */
static __global__ void ln_backward_partial_kernel(float *pw, float *pb, const float *dout,
                                                  const float *x, const float *mean,
                                                  const float *rstd, int N, int C, int rows_per) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    int p = blockIdx.y;
    if (c >= C) return;
    int r0 = p * rows_per, r1 = min(r0 + rows_per, N);
    float aw = 0.0f, ab = 0.0f;
    for (int r = r0; r < r1; r++) {
        size_t i = (size_t)r * C + c;
        float d = dout[i];
        float xhat = __fmul_rn(__fsub_rn(x[i], mean[r]), rstd[r]);
        aw = __fadd_rn(aw, __fmul_rn(d, xhat));
        ab = __fadd_rn(ab, d);
    }
    pw[(size_t)p * C + c] = aw;
    pb[(size_t)p * C + c] = ab;
}

/* dw[c] += sum of the partials of column c in block order; one thread per column. */
static __global__ void ln_backward_reduce_kernel(float *dw, float *db, const float *pw,
                                                 const float *pb, int nparts, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float aw = 0.0f, ab = 0.0f;
    for (int p = 0; p < nparts; p++) {
        aw = __fadd_rn(aw, pw[(size_t)p * C + c]);
        ab = __fadd_rn(ab, pb[(size_t)p * C + c]);
    }
    dw[c] = __fadd_rn(dw[c], aw);
    db[c] = __fadd_rn(db[c], ab);
}

extern "C" void mt_cuda_layernorm_forward(float *out, float *mean, float *rstd, const float *x,
                                          const float *w, const float *b, int N, int C) {
    if (N <= 0 || C <= 0) return;
    ln_forward_kernel<<<N, LN_THREADS>>>(out, mean, rstd, x, w, b, C);
    MT_CUDA_LAUNCHED("ln_forward_kernel");
}

extern "C" void mt_cuda_residual_layernorm_forward(float *res, float *out, float *mean, float *rstd,
                                                   const float *a, const float *b, const float *w,
                                                   const float *bias, int N, int C) {
    if (N <= 0 || C <= 0) return;
    residual_ln_forward_kernel<<<N, LN_THREADS>>>(res, out, mean, rstd, a, b, w, bias, C);
    MT_CUDA_LAUNCHED("residual_ln_forward_kernel");
}

extern "C" void mt_cuda_layernorm_backward(float *dx, float *dw, float *db, const float *dout,
                                           const float *x, const float *w, const float *mean,
                                           const float *rstd, int N, int C) {
    if (N <= 0 || C <= 0) return;
    ln_backward_dx_kernel<<<N, LN_THREADS>>>(dx, dout, x, w, mean, rstd, C);
    MT_CUDA_LAUNCHED("ln_backward_dx_kernel");

    /* The row split depends only on N, so the summation order (and the
     * result) is the same on every call with the same shapes. */
    int nparts = N < LN_MAXPARTS ? N : LN_MAXPARTS;
    int rows_per = (N + nparts - 1) / nparts;
    nparts = (N + rows_per - 1) / rows_per;
    float *pw = (float *)mt_cuda_work_get(&work, (size_t)2 * nparts * C * sizeof(float));
    float *pb = pw + (size_t)nparts * C;
    unsigned cblocks = mt_cuda_col_blocks(C, LN_THREADS);
    ln_backward_partial_kernel<<<dim3(cblocks, nparts), LN_THREADS>>>(pw, pb, dout, x, mean, rstd,
                                                                      N, C, rows_per);
    MT_CUDA_LAUNCHED("ln_backward_partial_kernel");
    ln_backward_reduce_kernel<<<cblocks, LN_THREADS>>>(dw, db, pw, pb, nparts, C);
    MT_CUDA_LAUNCHED("ln_backward_reduce_kernel");
}
