/*
 * optim.cu - CUDA twins of the CPU's optimizer ops (kernels/backend.h): the
 * sum of squares (for gradient-norm clipping), AdamW, the multi-tensor AdamW
 * (adamw_multi, the twin of kernels/cpu/adamw_cpu.c's) and SGD with momentum.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Each segment's sumsq as mt_cuda_sumsq computes it (the same grid and
 * trees, so the same bits), the totals into out in the device's memory:
 * nothing waits. The block sums' area is reused segment after segment (the
 * kernels run in order on the default stream). */
void mt_cuda_sumsq_multi(double *out, const float *x, int nseg, const size_t *off,
                         const size_t *n) {
    if (nseg <= 0) return;
    double *part = (double *)mt_cuda_work_get(&work, SUMSQ_BLOCKS * sizeof(double));
    MT_CUDA_CHECK(cudaMemsetAsync(out, 0, (size_t)nseg * sizeof(double), 0)); /* empty ones: 0 */
    for (int s = 0; s < nseg; s++) {
        if (n[s] == 0) continue;
        unsigned nb = mt_cuda_blocks_for(n[s], SUMSQ_BLOCKS);
        sumsq_blocks<<<nb, MT_CUDA_THREADS>>>(part, x + off[s], n[s]);
        MT_CUDA_LAUNCHED("sumsq_blocks (sumsq_multi)");
        mt_cuda_sum_kernel<double><<<1, MT_CUDA_THREADS>>>(out + s, part, (int)nb);
        MT_CUDA_LAUNCHED("mt_cuda_sum_kernel (sumsq_multi)");
    }
}

/* ---- AdamW ----
 * adamw_update and adamw_multi share their arithmetic, so that adamw_multi
 * gives the bits of scale(g, gscale) (when gscale != 1) then adamw_update on
 * each segment: the same host constants (adamw_consts_of), the same decay
 * (adamw_decay, on the device for both, since adamw_multi's weight decay is
 * per segment), the same gradient scaling (common.cuh's mt_cuda_scale_elem,
 * the scale op's formula) and the same element step (adamw_elem). */

/* The step's constants, from the host (the CPU computes the same floats). */
typedef struct {
    float beta1, beta2;
    float omb1, omb2; /* 1 - beta1, 1 - beta2 */
    float eps;
    float step;         /* lr / bc1 */
    float inv_sqrt_bc2; /* 1 / sqrt(bc2) */
} adamw_consts;

static adamw_consts adamw_consts_of(float lr, float beta1, float beta2, float eps, float bc1,
                                    float bc2) {
    adamw_consts k = {beta1, beta2, 1.0f - beta1, 1.0f - beta2, eps, lr / bc1, 1.0f / sqrtf(bc2)};
    return k;
}

/* p *= decay first: decay = 1 - lr * wd, rounded twice as the CPU's */
static __device__ __forceinline__ float adamw_decay(float lr, float wd) {
    return __fsub_rn(1.0f, __fmul_rn(lr, wd));
}

/* One element, the CPU's loop body (mt_adamw_elem): every product that feeds
 * an add through __fmul_rn, never fused (the CPU rounds twice). */
static __device__ __forceinline__ void adamw_elem(float *p, float *m, float *v, float gi,
                                                  const adamw_consts &k, float decay) {
    float mi = __fmul_rn(k.beta1, *m) + __fmul_rn(k.omb1, gi);
    float vi = __fmul_rn(k.beta2, *v) + __fmul_rn(__fmul_rn(k.omb2, gi), gi);
    *m = mi;
    *v = vi;
    float denom = __fmul_rn(sqrtf(vi), k.inv_sqrt_bc2) + k.eps;
    *p = __fmul_rn(*p, decay) - __fmul_rn(k.step, mi / denom);
}

static __global__ void adamw_kernel(float *p, const float *g, float *m, float *v, size_t n,
                                    adamw_consts k, float lr, float wd) {
    float decay = adamw_decay(lr, wd);
    MT_CUDA_GRID_STRIDE(i, n) adamw_elem(&p[i], &m[i], &v[i], g[i], k, decay);
}

void mt_cuda_adamw_update(float *p, const float *g, float *m, float *v, size_t n, float lr,
                          float beta1, float beta2, float eps, float wd, float bc1, float bc2) {
    if (n == 0) return;
    adamw_consts k = adamw_consts_of(lr, beta1, beta2, eps, bc1, bc2);
    adamw_kernel<<<mt_cuda_blocks_for(n), MT_CUDA_THREADS>>>(p, g, m, v, n, k, lr, wd);
    MT_CUDA_LAUNCHED("adamw_kernel");
}

/* ---- multi-tensor AdamW ----
 * The segments are cut into chunks of ADAMW_CHUNK elements (a segment's last
 * chunk shorter, a chunk never spanning two segments, empty segments none),
 * listed in segment order in a device table; block j takes chunks j,
 * j + gridDim.x, ..., its threads the chunk's elements i = threadIdx.x,
 * + blockDim.x, ... Each element's update is independent, so the chunking
 * changes no bit. The table depends on the host arrays p_off, s_off, n, wd
 * alone, which are the same every step: it is built and uploaded (one
 * cudaMemcpy) only when they differ from the last call's, kept in host
 * copies here. */

#define ADAMW_CHUNK (MT_CUDA_THREADS * 16) /* elements per chunk: 16 per thread */

typedef struct {
    size_t p;   /* first element in p and g */
    size_t s;   /* first element in m and v */
    unsigned n; /* elements, 1 to ADAMW_CHUNK */
    float wd;   /* the segment's weight decay */
} adamw_chunk;

/* The cached table and the arrays it was built from (host copies, nseg each). */
static struct {
    int nseg;
    size_t *p_off, *s_off, *n;
    float *wd;
    size_t nchunks;
    mt_cuda_work table; /* device: nchunks adamw_chunk (a cache, not scratch) */
} plan;

static __global__ void adamw_multi_kernel(float *p, const float *g, float *m, float *v,
                                          const adamw_chunk *table, size_t nchunks, float gscale,
                                          adamw_consts k, float lr) {
    for (size_t j = blockIdx.x; j < nchunks; j += gridDim.x) {
        adamw_chunk ch = table[j]; /* the same 24 bytes for the whole block: a broadcast */
        float decay = adamw_decay(lr, ch.wd);
        for (unsigned i = threadIdx.x; i < ch.n; i += blockDim.x) {
            float gi = g[ch.p + i];
            /* scale's formula, skipped at 1 where the unfused path skips scale */
            if (gscale != 1.0f) gi = mt_cuda_scale_elem(gi, gscale);
            adamw_elem(&p[ch.p + i], &m[ch.s + i], &v[ch.s + i], gi, k, decay);
        }
    }
}

static void *plan_copy(void *old, const void *src, size_t bytes) {
    void *c = realloc(old, bytes ? bytes : 1);
    if (!c) {
        fprintf(stderr, "mpitrain: error: out of memory for the AdamW segment table (%zu bytes)\n",
                bytes);
        abort();
    }
    memcpy(c, src, bytes);
    return c;
}

/* The device chunk table for these segments: the cached one when the arrays
 * are the last call's, else built, uploaded and remembered. */
static const adamw_chunk *plan_table(int nseg, const size_t *p_off, const size_t *s_off,
                                     const size_t *n, const float *wd) {
    size_t zb = (size_t)nseg * sizeof(size_t), fb = (size_t)nseg * sizeof(float);
    if (plan.table.buf && plan.nseg == nseg && !memcmp(plan.p_off, p_off, zb) &&
        !memcmp(plan.s_off, s_off, zb) && !memcmp(plan.n, n, zb) && !memcmp(plan.wd, wd, fb))
        return (const adamw_chunk *)plan.table.buf;
    size_t nchunks = 0;
    for (int s = 0; s < nseg; s++) nchunks += (n[s] + ADAMW_CHUNK - 1) / ADAMW_CHUNK;
    adamw_chunk *h = (adamw_chunk *)malloc((nchunks ? nchunks : 1) * sizeof *h);
    if (!h) {
        fprintf(stderr, "mpitrain: error: out of memory for %zu AdamW chunks\n", nchunks);
        abort();
    }
    size_t j = 0;
    for (int s = 0; s < nseg; s++)
        for (size_t i0 = 0; i0 < n[s]; i0 += ADAMW_CHUNK) { /* the last chunk shorter */
            size_t len = n[s] - i0 < ADAMW_CHUNK ? n[s] - i0 : ADAMW_CHUNK;
            adamw_chunk c = {p_off[s] + i0, s_off[s] + i0, (unsigned)len, wd[s]};
            h[j++] = c;
        }
    /* the old table may still be read by a kernel in flight: the copy below
     * (from pageable memory) waits for the default stream's work first, and
     * a grown buffer's cudaFree synchronises */
    void *d = mt_cuda_work_get(&plan.table, (nchunks ? nchunks : 1) * sizeof *h);
    MT_CUDA_CHECK(cudaMemcpy(d, h, nchunks * sizeof *h, cudaMemcpyHostToDevice));
    free(h);
    plan.p_off = (size_t *)plan_copy(plan.p_off, p_off, zb);
    plan.s_off = (size_t *)plan_copy(plan.s_off, s_off, zb);
    plan.n = (size_t *)plan_copy(plan.n, n, zb);
    plan.wd = (float *)plan_copy(plan.wd, wd, fb);
    plan.nseg = nseg;
    plan.nchunks = nchunks;
    return (const adamw_chunk *)d;
}

void mt_cuda_adamw_multi(float *p, const float *g, float *m, float *v, int nseg,
                         const size_t *p_off, const size_t *s_off, const size_t *n, const float *wd,
                         float gscale, float lr, float beta1, float beta2, float eps, float bc1,
                         float bc2) {
    if (nseg <= 0) return;
    const adamw_chunk *table = plan_table(nseg, p_off, s_off, n, wd);
    if (plan.nchunks == 0) return; /* every segment empty */
    adamw_consts k = adamw_consts_of(lr, beta1, beta2, eps, bc1, bc2);
    adamw_multi_kernel<<<mt_cuda_row_blocks(plan.nchunks), MT_CUDA_THREADS>>>(
        p, g, m, v, table, plan.nchunks, gscale, k, lr);
    MT_CUDA_LAUNCHED("adamw_multi_kernel");
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
