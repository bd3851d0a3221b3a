/*
 * optim.cu - CUDA twins of the CPU's optimizer ops (kernels/backend.h): the
 * sum of squares (for gradient-norm clipping), AdamW and SGD with momentum.
 *
 * sumsq is a double sum by a fixed reduction: a grid whose size depends only
 * on n, per-block trees, then one block over the block sums, so the result is
 * bitwise reproducible (no atomics); it differs from the CPU's order, which
 * moves a double sum by about 1e-16 relative. The updates are per element
 * and bitwise the CPU's: nvcc would fuse a * b + c into one rounding where
 * the CPU (ISO C, no contraction) rounds twice, so every product that feeds
 * an add goes through __fmul_rn, which is never fused.
 */
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_ops.h"

#define SUMSQ_BLOCKS 1024 /* at most this many block sums in sumsq */

/* Work buffer for sumsq's block sums and total: grown on demand, never freed. */
static mt_cuda_work work;

/* ---- sum of squares ---- */

/* part(gridDim.x): each thread sums x^2 over its grid-stride elements (x*x is
 * exact in double, so a fused multiply-add changes nothing), then the tree. */
static __global__ void sumsq_blocks(double *part, const float *x, size_t n) {
    __shared__ double sh[MT_CUDA_THREADS];
    double s = 0.0;
    MT_CUDA_GRID_STRIDE(i, n) s += (double)x[i] * (double)x[i];
    s = mt_cuda_block_sum_tree(s, sh);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}

double mt_cuda_sumsq(const float *x, size_t n) {
    if (n == 0) return 0.0;
    /* The grid depends on n alone (never on the device), so the tree does too. */
    unsigned nb = mt_cuda_blocks_for(n, SUMSQ_BLOCKS);
    /* (nb), then total */
    double *part = (double *)mt_cuda_work_get(&work, ((size_t)nb + 1) * sizeof(double));
    sumsq_blocks<<<nb, MT_CUDA_THREADS>>>(part, x, n);
    MT_CUDA_LAUNCHED("sumsq_blocks");
    /* total = the nb block sums added by one block of MT_CUDA_THREADS threads */
    mt_cuda_sum_kernel<double><<<1, MT_CUDA_THREADS>>>(part + nb, part, (int)nb);
    MT_CUDA_LAUNCHED("mt_cuda_sum_kernel (sumsq)");
    double total = 0.0;
    MT_CUDA_CHECK(cudaMemcpy(&total, part + nb, sizeof(double), cudaMemcpyDeviceToHost));
    return total;
}

/* ---- AdamW ---- */

/* The CPU's loop body with step = lr / bc1, inv_sqrt_bc2 = 1 / sqrt(bc2),
 * decay = 1 - lr * wd computed on the host as the CPU computes them. */
static __global__ void adamw_kernel(float *p, const float *g, float *m, float *v, size_t n,
                                    float beta1, float beta2, float omb1, float omb2, float eps,
                                    float step, float inv_sqrt_bc2, float decay) {
    MT_CUDA_GRID_STRIDE(i, n) {
        float gi = g[i];
        float mi = __fmul_rn(beta1, m[i]) + __fmul_rn(omb1, gi);
        float vi = __fmul_rn(beta2, v[i]) + __fmul_rn(__fmul_rn(omb2, gi), gi);
        m[i] = mi;
        v[i] = vi;
        float denom = __fmul_rn(sqrtf(vi), inv_sqrt_bc2) + eps;
        p[i] = __fmul_rn(p[i], decay) - __fmul_rn(step, mi / denom);
    }
}

void mt_cuda_adamw_update(float *p, const float *g, float *m, float *v, size_t n, float lr,
                          float beta1, float beta2, float eps, float wd, float bc1, float bc2) {
    if (n == 0) return;
    float step = lr / bc1;
    float inv_sqrt_bc2 = 1.0f / sqrtf(bc2);
    float decay = 1.0f - lr * wd;
    adamw_kernel<<<mt_cuda_blocks_for(n), MT_CUDA_THREADS>>>(
        p, g, m, v, n, beta1, beta2, 1.0f - beta1, 1.0f - beta2, eps, step, inv_sqrt_bc2, decay);
    MT_CUDA_LAUNCHED("adamw_kernel");
}

/* ---- SGD with momentum ---- */

/* The CPU's loop body: g += wd * p; buf = momentum * buf + g; p -= lr * buf. */
static __global__ void sgd_kernel(float *p, const float *g, float *buf, size_t n, float lr,
                                  float momentum, float wd) {
    MT_CUDA_GRID_STRIDE(i, n) {
        float gi = g[i] + __fmul_rn(wd, p[i]);
        float b = __fmul_rn(momentum, buf[i]) + gi;
        buf[i] = b;
        p[i] = p[i] - __fmul_rn(lr, b);
    }
}

void mt_cuda_sgd_update(float *p, const float *g, float *buf, size_t n, float lr, float momentum,
                        float wd) {
    if (n == 0) return;
    sgd_kernel<<<mt_cuda_blocks_for(n), MT_CUDA_THREADS>>>(p, g, buf, n, lr, momentum, wd);
    MT_CUDA_LAUNCHED("sgd_kernel");
}
