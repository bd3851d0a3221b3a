/*
 * loss.cu - CUDA twins of the CPU's softmax cross-entropy forward and
 * backward, of count_correct, and of the fused cross-entropy xent_fused
 * (kernels/cpu/xent_cpu.c), all in kernels/backend.h. Labels are device int32.
 *
 * One block per row of logits(B,C), rows ld floats apart (ld > C: a padded
 * vocabulary, whose columns C..ld-1 are never read and are set to 0 in every
 * output). Reductions along a row go through a
 * fixed shared-memory tree over a block size that depends only on C, and the
 * B per-row results are summed by one block in a fixed order, so the results
 * are bitwise reproducible (no atomics). The row sums are double as on the
 * CPU; the CPU adds in index order and this file in a tree, which moves a
 * double sum by about 1e-16 relative.
 *
 * The row helpers (row_max, row_exp_sum, row_argmax) serve the unfused and
 * the fused kernels alike, so xent_fused is meant to give the bits of
 * softmax_xent_forward + softmax_xent_backward (scale 1) + count_correct
 * here: the same trees, the same expf, the same products and sums.
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

/* ---- row reductions: one block per row of z(C), thread t taking the
 * elements t, t + blockDim.x, ... (blockDim.x = row_threads(C), a power of
 * two; threads past C keep the identity); every thread gets the result ---- */

/* max of z(C): exact in any order (the CPU's comparison; NaNs never win, -inf
 * when every element is NaN). shf: blockDim.x floats. */
static __device__ float row_max(const float *z, int C, float *shf) {
    unsigned t = threadIdx.x;
    float mx = -INFINITY;
    for (int c = t; c < C; c += blockDim.x) mx = z[c] > mx ? z[c] : mx;
    shf[t] = mx;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s /= 2) {
        if (t < s) shf[t] = shf[t + s] > shf[t] ? shf[t + s] : shf[t];
        __syncthreads();
    }
    mx = shf[0];
    __syncthreads(); /* before shf is written again */
    return mx;
}

/* sum of e = expf(z - mx) over z(C) in double (each thread's elements in
 * index order, then mt_cuda_block_sum_tree); each e also stored in p(C)
 * unless p is NULL. shd: blockDim.x doubles. */
static __device__ double row_exp_sum(float *p, const float *z, int C, float mx, double *shd) {
    double sum = 0.0;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float e = expf(z[c] - mx);
        if (p) p[c] = e;
        sum += e;
    }
    return mt_cuda_block_sum_tree(sum, shd);
}

/* The first arg-max of z(C), as the CPU's count_correct scan (best = 0;
 * best = c when z[c] > z[best]): the first index of the maximum, never a
 * NaN, 0 when z[0] is NaN. Each thread keeps the first maximum of its
 * non-NaN elements (index C: none yet), the tree keeps the larger value and
 * on equal values the smaller index (so -0 and +0 tie as on the CPU). *mx:
 * the maximum (-inf when every element is NaN), row_max's value (a zero's
 * sign aside, which no use of it sees). shv, shi: blockDim.x each. */
static __device__ int row_argmax(const float *z, int C, float *mx, float *shv, int *shi) {
    unsigned t = threadIdx.x;
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
    *mx = shv[0];
    int best = isnan(z[0]) ? 0 : shi[0];
    __syncthreads(); /* before shv, shi are written again */
    return best;
}

/* ---- softmax cross-entropy ---- */

/* Row b, as the CPU: mx = max z; p = expf(z - mx); sum in double;
 * p *= (float)(1 / sum); loss(b) = log(sum) + mx - z[label] (no log(0)).
 * A label outside [0, C) (a caller bug) gives a NaN loss instead of a read
 * out of bounds. */
static __global__ void softmax_xent_rows(float *probs, double *loss, const float *logits,
                                         const int32_t *labels, int B, int C, int ld) {
    __shared__ float shf[MT_CUDA_MAX_THREADS];
    __shared__ double shd[MT_CUDA_MAX_THREADS];
    unsigned t = threadIdx.x;
    for (int b = blockIdx.x; b < B; b += gridDim.x) {
        const float *z = logits + (size_t)b * ld;
        float *p = probs + (size_t)b * ld;
        float mx = row_max(z, C, shf);
        double sum = row_exp_sum(p, z, C, mx, shd);
        float inv = (float)(1.0 / sum);
        for (int c = t; c < C; c += blockDim.x) p[c] *= inv;      /* this thread's own p[c] */
        for (int c = C + t; c < ld; c += blockDim.x) p[c] = 0.0f; /* the padding */
        if (t == 0) {
            int y = labels[b];
            loss[b] = y >= 0 && y < C ? log(sum) + (double)mx - (double)z[y] : (double)NAN;
        }
    }
}

double mt_cuda_softmax_xent_forward(float *probs, const float *logits, const int32_t *labels, int B,
                                    int C, int ld) {
    if (B <= 0 || C <= 0) return 0.0;
    /* (B) rows, then total */
    double *loss = (double *)mt_cuda_work_get(&work, ((size_t)B + 1) * sizeof(double));
    softmax_xent_rows<<<mt_cuda_row_blocks(B), row_threads(C)>>>(probs, loss, logits, labels, B, C,
                                                                 ld);
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
 * alias probs: each element is read and written by one thread. Padding
 * columns (C..ld-1) get 0. */
static __global__ void softmax_xent_backward_kernel(float *dlogits, const float *probs,
                                                    const int32_t *labels, int B, int C, int ld,
                                                    float scale) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= ld) return;
    for (int b = blockIdx.y; b < B; b += gridDim.y) {
        size_t i = (size_t)b * ld + c;
        if (c >= C) {
            dlogits[i] = 0.0f;
            continue;
        }
        float d = __fmul_rn(probs[i], scale);
        dlogits[i] = c == labels[b] ? d - scale : d;
    }
}

void mt_cuda_softmax_xent_backward(float *dlogits, const float *probs, const int32_t *labels, int B,
                                   int C, int ld, float scale) {
    if (B <= 0 || C <= 0) return;
    dim3 grid(mt_cuda_col_blocks(ld), mt_cuda_row_blocks(B));
    softmax_xent_backward_kernel<<<grid, MT_CUDA_THREADS>>>(dlogits, probs, labels, B, C, ld,
                                                            scale);
    MT_CUDA_LAUNCHED("softmax_xent_backward_kernel");
}

/* ---- count_correct ---- */

/* hit(b) = 1 when row b's first arg-max (row_argmax) is its label. */
static __global__ void argmax_rows(long long *hit, const float *logits, const int32_t *labels,
                                   int B, int C, int ld) {
    __shared__ float shv[MT_CUDA_MAX_THREADS];
    __shared__ int shi[MT_CUDA_MAX_THREADS];
    for (int b = blockIdx.x; b < B; b += gridDim.x) {
        float mx;
        int best = row_argmax(logits + (size_t)b * ld, C, &mx, shv, shi);
        if (threadIdx.x == 0) hit[b] = best == labels[b];
    }
}

int64_t mt_cuda_count_correct(const float *logits, const int32_t *labels, int B, int C, int ld) {
    if (B <= 0 || C <= 0) return 0;
    /* (B), total */
    long long *hit = (long long *)mt_cuda_work_get(&work, ((size_t)B + 1) * sizeof(long long));
    argmax_rows<<<mt_cuda_row_blocks(B), row_threads(C)>>>(hit, logits, labels, B, C, ld);
    MT_CUDA_LAUNCHED("argmax_rows");
    mt_cuda_sum_kernel<long long><<<1, MT_CUDA_MAX_THREADS>>>(hit + B, hit, B);
    MT_CUDA_LAUNCHED("mt_cuda_sum_kernel (count_correct's hits)");
    long long total = 0;
    MT_CUDA_CHECK(cudaMemcpy(&total, hit + B, sizeof(long long), cudaMemcpyDeviceToHost));
    return (int64_t)total;
}

/* ---- fused cross-entropy ---- */

/* Row b of z(N,V), one block per row (rows blockIdx.x, + gridDim.x, ...),
 * thread t taking the elements t, t + blockDim.x, ... in each of three
 * sweeps; threads past V (V not a multiple of the block, or V < 32) hold the
 * reductions' identities:
 *   1. row_argmax: the max mx and the first arg-max (count_correct's);
 *   2. row_exp_sum: sum = the sum of expf(z - mx) in double;
 *   3. z = expf(z - mx) * (float)(1 / sum), minus 1 at the label: the exp
 *      recomputed (the same expression, the same bits) rather than stored
 *      in sweep 2, which saves a write of the row.
 * Padding columns V..ld-1 (rows are ld apart) are set to 0: no gradient.
 * loss(b) = log(sum) + mx - z[label] and hit(b), as softmax_xent_rows and
 * argmax_rows compute them. z[label] is read before sweep 1, and its owner
 * overwrites it in sweep 3 only, after the barriers of two reductions. A
 * label outside [0, V) (a caller bug) gives a NaN loss, no hit and no -1,
 * instead of an access out of bounds. */
static __global__ void __launch_bounds__(MT_CUDA_MAX_THREADS)
    xent_fused_rows(float *logits, double *loss, long long *hit, const int32_t *labels, int N,
                    int V, int ld) {
    __shared__ float shv[MT_CUDA_MAX_THREADS];
    __shared__ int shi[MT_CUDA_MAX_THREADS];
    __shared__ double shd[MT_CUDA_MAX_THREADS];
    for (int b = blockIdx.x; b < N; b += gridDim.x) {
        float *z = logits + (size_t)b * ld;
        int y = labels[b];
        int ok = y >= 0 && y < V;
        float zl = ok ? z[y] : 0.0f;
        float mx;
        int best = row_argmax(z, V, &mx, shv, shi);
        double sum = row_exp_sum(NULL, z, V, mx, shd);
        float inv = (float)(1.0 / sum);
        /* softmax_xent_rows' e * inv, then softmax_xent_backward's (scale 1)
         * minus 1 at the label; __fmul_rn keeps the product rounded on its
         * own there, not fused into the subtraction */
        for (int c = threadIdx.x; c < V; c += blockDim.x) {
            float p = __fmul_rn(expf(z[c] - mx), inv);
            z[c] = c == y ? p - 1.0f : p;
        }
        for (int c = V + threadIdx.x; c < ld; c += blockDim.x) z[c] = 0.0f;
        if (threadIdx.x == 0) {
            loss[b] = ok ? log(sum) + (double)mx - (double)zl : (double)NAN;
            hit[b] = best == y;
        }
    }
}

/* out[0], out[1] = the sums of loss(N) and hit(N) by one block of
 * MT_CUDA_MAX_THREADS: each thread adds its strided elements in index
 * order, then the tree; mt_cuda_sum_kernel's order, so the loss is
 * softmax_xent_forward's. */
static __global__ void xent_fused_totals(double *out, const double *loss, const long long *hit,
                                         int N) {
    __shared__ double shd[MT_CUDA_MAX_THREADS];
    __shared__ long long shl[MT_CUDA_MAX_THREADS];
    double s = 0.0;
    long long h = 0;
    for (int i = threadIdx.x; i < N; i += blockDim.x) {
        s += loss[i];
        h += hit[i];
    }
    s = mt_cuda_block_sum_tree(s, shd);
    h = mt_cuda_block_sum_tree(h, shl);
    if (threadIdx.x == 0) {
        out[0] = s;
        out[1] = (double)h;
    }
}

/* The totals stay in the device's memory (out): nothing here waits. */
void mt_cuda_xent_fused(float *logits, const int32_t *labels, int N, int V, int ld, double *out) {
    if (N <= 0 || V <= 0) {
        MT_CUDA_CHECK(cudaMemsetAsync(out, 0, 2 * sizeof(double), 0));
        return;
    }
    /* loss(N) doubles, then hit(N) long longs: 8-byte aligned (the buffer
     * itself is cudaMalloc's) */
    size_t bytes = (size_t)N * (sizeof(double) + sizeof(long long));
    double *loss = (double *)mt_cuda_work_get(&work, bytes);
    long long *hit = (long long *)(loss + N);
    xent_fused_rows<<<mt_cuda_row_blocks(N), row_threads(V)>>>(logits, loss, hit, labels, N, V, ld);
    MT_CUDA_LAUNCHED("xent_fused_rows");
    xent_fused_totals<<<1, MT_CUDA_MAX_THREADS>>>(out, loss, hit, N);
    MT_CUDA_LAUNCHED("xent_fused_totals");
}
