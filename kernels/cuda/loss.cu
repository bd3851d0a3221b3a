/*
 * loss.cu - CUDA twins of the CPU's softmax cross-entropy forward and
 * backward and of count_correct (kernels/backend.h). Labels are device int32.
 *
 * One block per row of logits(B,C). Reductions along a row go through a
 * fixed shared-memory tree over a block size that depends only on C, and the
 * B per-row results are summed by one block in a fixed order, so the results
 * are bitwise reproducible (no atomics). The row sums are double as on the
 * CPU; the CPU adds in index order and this file in a tree, which moves a
 * double sum by about 1e-16 relative.
 */
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_ops.h"

/* Work buffer for per-row losses / hits and their total: grown on demand,
 * never freed; both ops run on the default stream, so sharing it is safe. */
static mt_cuda_work work;

/* Threads per row: the smallest power of two >= C, from 32 to MT_CUDA_MAX_THREADS.
 * A function of C alone, so the reduction tree is the same on every run. */
static int row_threads(int C) {
    int t = 32;
    while (t < C && t < MT_CUDA_MAX_THREADS) t *= 2;
    return t;
}

/* ---- softmax cross-entropy ---- */

/* Row b, as the CPU: mx = max z; p = expf(z - mx); sum in double;
 * p *= (float)(1 / sum); loss(b) = log(sum) + mx - z[label] (no log(0)).
 * A label outside [0, C) (a caller bug) gives a NaN loss instead of a read
 * out of bounds. */
static __global__ void softmax_xent_rows(float *probs, double *loss, const float *logits,
                                         const int32_t *labels, int B, int C) {
    __shared__ float shf[MT_CUDA_MAX_THREADS];
    __shared__ double shd[MT_CUDA_MAX_THREADS];
    unsigned t = threadIdx.x;
    for (int b = blockIdx.x; b < B; b += gridDim.x) {
        const float *z = logits + (size_t)b * C;
        float *p = probs + (size_t)b * C;
        /* max: exact in any order (the CPU's comparison, -inf for idle threads) */
        float mx = -INFINITY;
        for (int c = t; c < C; c += blockDim.x) mx = z[c] > mx ? z[c] : mx;
        shf[t] = mx;
        __syncthreads();
        for (unsigned s = blockDim.x / 2; s > 0; s /= 2) {
            if (t < s) shf[t] = shf[t + s] > shf[t] ? shf[t + s] : shf[t];
            __syncthreads();
        }
        mx = shf[0];
        __syncthreads();
        double sum = 0.0;
        for (int c = t; c < C; c += blockDim.x) {
            float e = expf(z[c] - mx);
            p[c] = e;
            sum += e;
        }
        sum = mt_cuda_block_sum_tree(sum, shd);
        float inv = (float)(1.0 / sum);
        for (int c = t; c < C; c += blockDim.x) p[c] *= inv; /* this thread's own p[c] */
        if (t == 0) {
            int y = labels[b];
            loss[b] = y >= 0 && y < C ? log(sum) + (double)mx - (double)z[y] : (double)NAN;
        }
    }
}

double mt_cuda_softmax_xent_forward(float *probs, const float *logits, const int32_t *labels, int B,
                                    int C) {
    if (B <= 0 || C <= 0) return 0.0;
    /* (B) rows, then total */
    double *loss = (double *)mt_cuda_work_get(&work, ((size_t)B + 1) * sizeof(double));
    softmax_xent_rows<<<mt_cuda_row_blocks(B), row_threads(C)>>>(probs, loss, logits, labels, B, C);
    MT_CUDA_LAUNCHED("softmax_xent_rows");
    mt_cuda_sum_kernel<double><<<1, MT_CUDA_MAX_THREADS>>>(loss + B, loss, B);
    MT_CUDA_LAUNCHED("mt_cuda_sum_kernel (softmax_xent_forward's loss)");
    double total = 0.0;
    MT_CUDA_CHECK(cudaMemcpy(&total, loss + B, sizeof(double), cudaMemcpyDeviceToHost));
    return total;
}

/* d = p * scale, minus scale at the label: __fmul_rn keeps the product
 * rounded on its own as on the CPU (a fused p * scale - scale differs in the
 * last bits, and at p ~ 1 that is a large relative difference). dlogits may
 * alias probs: each element is read and written by one thread. */
static __global__ void softmax_xent_backward_kernel(float *dlogits, const float *probs,
                                                    const int32_t *labels, int B, int C,
                                                    float scale) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    for (int b = blockIdx.y; b < B; b += gridDim.y) {
        size_t i = (size_t)b * C + c;
        float d = __fmul_rn(probs[i], scale);
        dlogits[i] = c == labels[b] ? d - scale : d;
    }
}

void mt_cuda_softmax_xent_backward(float *dlogits, const float *probs, const int32_t *labels, int B,
                                   int C, float scale) {
    if (B <= 0 || C <= 0) return;
    dim3 grid(mt_cuda_col_blocks(C), mt_cuda_row_blocks(B));
    softmax_xent_backward_kernel<<<grid, MT_CUDA_THREADS>>>(dlogits, probs, labels, B, C, scale);
    MT_CUDA_LAUNCHED("softmax_xent_backward_kernel");
}

/* ---- count_correct ---- */

/* hit(b) = 1 when row b's arg-max is its label. The CPU's scan (best = 0;
 * best = c when z[c] > z[best]) returns the first index of the maximum, never
 * picks a NaN, and returns 0 when z[0] is NaN. Here: each thread keeps the
 * first maximum of its strided non-NaN elements (index C: none yet), the tree
 * keeps the larger value and on equal values the smaller index (so -0 and +0
 * tie as on the CPU), and a NaN z[0] gives 0. */
static __global__ void argmax_rows(long long *hit, const float *logits, const int32_t *labels,
                                   int B, int C) {
    __shared__ float shv[MT_CUDA_MAX_THREADS];
    __shared__ int shi[MT_CUDA_MAX_THREADS];
    unsigned t = threadIdx.x;
    for (int b = blockIdx.x; b < B; b += gridDim.x) {
        const float *z = logits + (size_t)b * C;
        float bv = -INFINITY;
        int bi = C;
        for (int c = t; c < C; c += blockDim.x) {
            float v = z[c];
            if (bi == C ? !isnan(v) : v > bv) {
                bv = v;
                bi = c;
            }
        }
        shv[t] = bv;
        shi[t] = bi;
        __syncthreads();
        for (unsigned s = blockDim.x / 2; s > 0; s /= 2) {
            if (t < s) {
                float ov = shv[t + s];
                int oi = shi[t + s];
                if (oi < C && (shi[t] == C || ov > shv[t] || (ov == shv[t] && oi < shi[t]))) {
                    shv[t] = ov;
                    shi[t] = oi;
                }
            }
            __syncthreads();
        }
        if (t == 0) {
            int best = isnan(z[0]) ? 0 : shi[0];
            hit[b] = best == labels[b];
        }
        __syncthreads(); /* before shv/shi are written for the next row */
    }
}

int64_t mt_cuda_count_correct(const float *logits, const int32_t *labels, int B, int C) {
    if (B <= 0 || C <= 0) return 0;
    /* (B), total */
    long long *hit = (long long *)mt_cuda_work_get(&work, ((size_t)B + 1) * sizeof(long long));
    argmax_rows<<<mt_cuda_row_blocks(B), row_threads(C)>>>(hit, logits, labels, B, C);
    MT_CUDA_LAUNCHED("argmax_rows");
    mt_cuda_sum_kernel<long long><<<1, MT_CUDA_MAX_THREADS>>>(hit + B, hit, B);
    MT_CUDA_LAUNCHED("mt_cuda_sum_kernel (count_correct's hits)");
    long long total = 0;
    MT_CUDA_CHECK(cudaMemcpy(&total, hit + B, sizeof(long long), cudaMemcpyDeviceToHost));
    return (int64_t)total;
}
