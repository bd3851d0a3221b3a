/*
 * backend.h - the one compute interface: a struct of function pointers over
 * raw float buffers, chosen once at start-up. The CPU backend (kernels/cpu)
 * is the reference every other backend (CUDA, later) is tested against.
 *
 * Conventions: matrices are row-major; shapes are given in the comment of
 * each op as (rows, cols). Ops are deterministic: the same inputs and thread
 * count give bitwise the same outputs (no float atomics, fixed reduction
 * order). Buffers passed to ops live in the backend's memory (host for CPU).
 */
#ifndef MT_BACKEND_H
#define MT_BACKEND_H

#include <stddef.h>
#include <stdint.h>

/* The epilogues of matmul_bf16 (below). */
enum { MT_EPI_NONE = 0, MT_EPI_BIAS = 1, MT_EPI_BIAS_GELU = 2, MT_EPI_DGELU = 3 };

typedef struct mt_backend {
    const char *name;
    /* 1: the backend's buffers are host memory (the CPU backend), so the host
     * may read and write them and MPI may send them as they are; 0: device
     * memory, reached only through ops, to_device and to_host. */
    int host_memory;
    /* The multiple the GPT pads its vocabulary to with model.vocab_pad = 0
     * (auto): the LM head's products have a dimension of the vocabulary's
     * size, fast when aligned to the GEMM's tiles (128 on GPUs); 0 or 1:
     * no padding (the CPU, whose numbers stay those of the plain V). */
    int vocab_align;

    /* Precision of every later matmul, including those inside attention:
     * 0 fp32; 1 bf16 operands (A and B each rounded to bfloat16, round to
     * nearest even) with fp32 accumulation and an fp32 C. Process-wide. */
    void (*set_precision)(int bf16);

    /* memory */
    float *(*alloc)(size_t n); /* zeroed, n floats */
    void (*free)(void *p);
    void (*to_device)(float *dst, const float *src, size_t n);
    void (*to_host)(float *dst, const float *src, size_t n);
    void (*synchronize)(void);
    /* Copies that do not make the host wait (NULL: to_device serves): n
     * floats of host memory from host_alloc (pinned on a GPU) queued to
     * the device after the work queued so far; the host must not write src
     * again before its next call that waits (to_host, synchronize), which
     * the trainer makes once per step. */
    /* 1 when the work queued so far has finished (a poll that does not
     * wait: the watchdog's deadline applies while the host waits for a
     * device, parallel/watchdog.h); NULL: a host-memory backend, whose work
     * is done when its calls return. */
    int (*queue_done)(void);
    float *(*host_alloc)(size_t n); /* zeroed, n floats */
    void (*host_free)(void *p);
    void (*to_device_async)(float *dst, const float *src, size_t n);
    /* Timing the device's work without waiting for it (NULL: the host's
     * clock around the calls times it, as on the CPU, where the work is
     * done when the call returns). timer_mark() records the moment the
     * work queued so far is done and returns its number (0, 1, ... since
     * timer_reset()); timer_seconds(a, b) is the time from mark a to mark
     * b, waiting for b if it has not passed (after the step's read it has).
     * A mark of -1 (the backend could not make one) times as 0. */
    int (*timer_mark)(void);
    double (*timer_seconds)(int a, int b);
    void (*timer_reset)(void);

    /* C(M,N) = alpha * op(A) * op(B) + beta * C; op(A) is (M,K), op(B) is (K,N);
     * trans_a: A is stored (K,M); trans_b: B is stored (N,K). */
    void (*matmul)(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                   int lda, const float *B, int ldb, float beta, float *C, int ldc);
    /* y(rows,cols) += b(cols) on every row */
    void (*bias_add)(float *y, const float *b, int rows, int cols);
    /* db(cols) = beta * db + sum over rows of dy(rows,cols) */
    void (*bias_grad)(float *db, const float *dy, int rows, int cols, float beta);

    /* y = act(x), n elements; dx = dy * act'(x) (dx may alias dy) */
    void (*relu_forward)(float *y, const float *x, size_t n);
    void (*relu_backward)(float *dx, const float *dy, const float *x, size_t n);
    void (*gelu_forward)(float *y, const float *x, size_t n);
    void (*gelu_backward)(float *dx, const float *dy, const float *x, size_t n);

    /* The loss ops take rows ld >= C floats apart (a padded vocabulary: the
     * LM head's product is (B, ld)); columns C..ld-1 are padding, never
     * read, and every output row has them set to 0 (no probability, no
     * gradient). ld = C: plain (B,C) matrices. */
    /* Softmax cross-entropy over logits(B,C) with labels(B) in [0,C):
     * probs(B,C) = softmax(logits); returns the SUM of the B losses (double). */
    double (*softmax_xent_forward)(float *probs, const float *logits, const int32_t *labels, int B,
                                   int C, int ld);
    /* dlogits(B,C) = (probs - onehot(labels)) * scale (dlogits may alias probs) */
    void (*softmax_xent_backward)(float *dlogits, const float *probs, const int32_t *labels, int B,
                                  int C, int ld, float scale);
    /* number of rows whose arg-max (first on ties) over columns 0..C-1
     * equals the label (no output, so padding is only skipped) */
    int64_t (*count_correct)(const float *logits, const int32_t *labels, int B, int C, int ld);

    /* ---- transformer ops (GPT). N = B*T rows of C channels. ---- */

    /* out(N,C) = a(N,C) + b(N,C) elementwise (n = N*C); out may alias a or b */
    void (*add)(float *out, const float *a, const float *b, size_t n);
    /* dst(n) += src(n) */
    void (*accumulate)(float *dst, const float *src, size_t n);

    /* LayerNorm over each row of x(N,C), eps 1e-5, biased variance (PyTorch's):
     * out(N,C) = (x - mean) * rstd * w(C) + b(C); saves mean(N), rstd(N). */
    void (*layernorm_forward)(float *out, float *mean, float *rstd, const float *x, const float *w,
                              const float *b, int N, int C);
    /* ACCUMULATES: dx(N,C) += dL/dx, dw(C) += dL/dw, db(C) += dL/db, from
     * dout(N,C) and the forward's x, w, mean, rstd. */
    void (*layernorm_backward)(float *dx, float *dw, float *db, const float *dout, const float *x,
                               const float *w, const float *mean, const float *rstd, int N, int C);

    /* Causal multi-head self-attention, NH heads of hs = C/NH channels.
     * qkv(B,T,3C): row (b,t) holds q (channels [0,C)), k ([C,2C)), v ([2C,3C));
     * head h uses channels [h*hs, (h+1)*hs) of each third.
     * att(B,NH,T,T): softmax(q k^T / sqrt(hs)) over keys s <= t (entries s > t
     * are 0); out(B,T,C): head h's att @ v in channels [h*hs, (h+1)*hs). */
    void (*attention_forward)(float *out, float *att, const float *qkv, int B, int T, int C,
                              int NH);
    /* OVERWRITES dqkv(B,T,3C) with dL/dqkv from dout(B,T,C) and the forward's
     * qkv and att; datt(B,NH,T,T) is scratch. */
    void (*attention_backward)(float *dqkv, float *datt, const float *dout, const float *qkv,
                               const float *att, int B, int T, int C, int NH);

    /* out(B*T,C) = wte[tokens[b,t]] + wpe[t]; wte(V,C), wpe(maxT,C), tokens(B,T)
     * each in [0,V) (checked by the caller) */
    void (*embedding_forward)(float *out, const int32_t *tokens, const float *wte, const float *wpe,
                              int B, int T, int C);
    /* ACCUMULATES: dwte(V,C) += rows of dout(B*T,C) by token, dwpe(T,C) +=
     * dout summed over b; deterministic (no float atomics) */
    void (*embedding_backward)(float *dwte, float *dwpe, const float *dout, const int32_t *tokens,
                               int B, int T, int C);

    /* Inverted dropout with a counter-based mask: element i is kept when
     * mt_rng_uniform(seed, stream, offset + i) >= p, then scaled by 1/(1-p);
     * y = x when p == 0. The backward recomputes the mask:
     * dx = dy * mask / (1-p) (dx may alias dy). */
    void (*dropout_forward)(float *y, const float *x, size_t n, float p, uint64_t seed,
                            uint64_t stream, uint64_t offset);
    void (*dropout_backward)(float *dx, const float *dy, size_t n, float p, uint64_t seed,
                             uint64_t stream, uint64_t offset);

    /* bfloat16 storage (activations kept for the backward in bf16 mode):
     * dst[i] = the top 16 bits of src[i] rounded to bfloat16 (kernels/bf16.h,
     * round to nearest even), and back: dst[i] = src[i] << 16 as fp32 (exact). */
    void (*to_bf16)(uint16_t *dst, const float *src, size_t n);
    void (*from_bf16)(float *dst, const uint16_t *src, size_t n);

    /* sum of squares in double, fixed reduction order */
    double (*sumsq)(const float *x, size_t n);
    /* x *= s; with s = 0 a NaN or Inf becomes 0 as well (scale by 0 clears a
     * buffer, even after a NaN step: train.nan_policy = skip relies on it) */
    void (*scale)(float *x, float s, size_t n);

    /* AdamW on n elements (PyTorch's formulation): p *= 1 - lr*wd, then the
     * Adam step with bias corrections bc1 = 1 - beta1^t, bc2 = 1 - beta2^t. */
    void (*adamw_update)(float *p, const float *g, float *m, float *v, size_t n, float lr,
                         float beta1, float beta2, float eps, float wd, float bc1, float bc2);
    /* SGD with momentum (PyTorch's): g += wd*p; buf = mom*buf + g; p -= lr*buf */
    void (*sgd_update)(float *p, const float *g, float *buf, size_t n, float lr, float momentum,
                       float wd);

    /* ---- fused ops (train.fused = true). A backend that leaves one NULL
     * runs the unfused ops above in its place (the CUDA backend until the GPU
     * issue). Each is specified by the composition of unfused ops it
     * replaces, and tests/test_backend_cmp.c compares it with that
     * composition on the CPU backend (within fp32 rounding: a fused op may
     * sum in another order). ---- */

    /* Flash-style causal attention: attention_forward's out(B,T,C) without
     * storing att; lse(B,NH,T) receives each query row's log-sum-exp of its
     * scaled scores (max + log(sum exp(score - max)), natural log), all the
     * backward needs. Tiled over queries and keys with an online softmax;
     * memory beyond out and lse: O(tile^2) per thread. */
    void (*flash_attention_forward)(float *out, float *lse, const float *qkv, int B, int T, int C,
                                    int NH);
    /* OVERWRITES dqkv(B,T,3C) with dL/dqkv from dout(B,T,C) and the forward's
     * qkv, out and lse; the probabilities are recomputed tile by tile. */
    void (*flash_attention_backward)(float *dqkv, const float *dout, const float *qkv,
                                     const float *out, const float *lse, int B, int T, int C,
                                     int NH);
    /* the largest head size C/NH the two flash ops take (0: any); a model
     * whose heads are larger runs the unfused attention */
    int flash_max_head;

    /* res(N,C) = a + b (add), then layernorm_forward of res into out, mean,
     * rstd; res may alias a or b. */
    void (*residual_layernorm_forward)(float *res, float *out, float *mean, float *rstd,
                                       const float *a, const float *b, const float *w,
                                       const float *bias, int N, int C);

    /* h(N,C) += bias(C) on every row (h keeps the pre-activation for the
     * backward), then g(N,C) = gelu(h): bias_add then gelu_forward. */
    void (*bias_gelu_forward)(float *h, float *g, const float *bias, int N, int C);
    /* dx(N,C) = dy * gelu'(h) (gelu_backward; dx may alias dy), then
     * ACCUMULATES db(C) += column sums of dx (bias_grad with beta 1). */
    void (*gelu_bias_backward)(float *dx, float *db, const float *dy, const float *h, int N, int C);

    /* Matrix products with their neighbours folded in (cuBLASLt epilogues
     * on the GPU). Shapes and transposes as matmul's; C, pre, out and dpre
     * are (M,N) with row stride ldc (bias_add, gelu_* and bias_grad below
     * then act on each row's N values). The CPU backend has none of these
     * (its unfused ops are the reference). */

    /* C(M,N) = op(A) op(B) + bias(N) on every row: matmul with alpha 1,
     * beta 0, then bias_add. */
    void (*matmul_bias)(int trans_a, int trans_b, int M, int N, int K, const float *A, int lda,
                        const float *B, int ldb, const float *bias, float *C, int ldc);
    /* pre(M,N) = op(A) op(B) + bias(N) (matmul_bias; kept for the
     * backward), then out(M,N) = gelu(pre) (gelu_forward, the tanh form):
     * matmul then bias_gelu_forward. out never aliases pre. */
    void (*matmul_bias_gelu)(int trans_a, int trans_b, int M, int N, int K, const float *A, int lda,
                             const float *B, int ldb, const float *bias, float *pre, float *out,
                             int ldc);
    /* dpre(M,N) = (op(A) op(B)) * gelu'(pre): matmul with alpha 1, beta 0
     * into dpre, then gelu_backward(dpre, dpre, pre); with db non-NULL it
     * then ACCUMULATES db(N) += column sums of dpre (bias_grad with beta 1;
     * together: gelu_bias_backward). */
    void (*matmul_dgelu)(int trans_a, int trans_b, int M, int N, int K, const float *A, int lda,
                         const float *B, int ldb, const float *pre, float *dpre, float *db,
                         int ldc);
    /* A linear layer's parameter gradients from dy(K,M) (row stride lddy)
     * and its input x(K,N) (row stride ldx): ACCUMULATES
     * dW(M,N) += dy^T x (matmul(1, 0, M, N, K, 1, dy, lddy, x, ldx, 1, dW,
     * lddw)) and db(M) += column sums of dy (bias_grad(db, dy, K, M, 1);
     * lddy == M). */
    void (*matmul_wgrad_bgrad)(int M, int N, int K, const float *dy, int lddy, const float *x,
                               int ldx, float *dW, int lddw, float *db);

    /* One product of bfloat16 operands: A and B hold bf16 bits
     * (kernels/bf16.h), shapes, transposes and leads as matmul's; fp32
     * accumulation into the fp32 C, then the epilogue epi:
     *   MT_EPI_NONE       C = alpha op(A) op(B) + beta C (matmul)
     *   MT_EPI_BIAS       C = op(A) op(B) + bias(N) on every row (matmul_bias)
     *   MT_EPI_BIAS_GELU  pre = op(A) op(B) + bias, C = gelu(pre)
     *                     (matmul_bias_gelu with C as its out; pre never C)
     *   MT_EPI_DGELU      C = (op(A) op(B)) * gelu'(pre), then with db
     *                     non-NULL db(N) += column sums of C (matmul_dgelu
     *                     with C as its dpre)
     * alpha and beta count with MT_EPI_NONE only (the others: 1 and 0);
     * with an epilogue ldc == N (packed rows); bias, pre and db NULL where
     * unused. Specified by widening A and B to fp32 (exact) and running the
     * fp32-operand op (or its composition of unfused ops) in the precision
     * set: in bf16 mode rounding the operands is then the identity, so the
     * CPU's result is bitwise the fp32-operand op's on the same values. The
     * GPT's linear layers in bf16 (train.precision = bf16, train.fused)
     * read their weights and stored inputs as bf16 through it (no
     * conversion inside the product, half the operand bytes). NULL: the
     * model converts nothing and calls the fp32-operand ops. */
    void (*matmul_bf16)(int epi, int trans_a, int trans_b, int M, int N, int K, float alpha,
                        const uint16_t *A, int lda, const uint16_t *B, int ldb, float beta,
                        const float *bias, float *pre, float *C, float *db, int ldc);

    /* Softmax cross-entropy in one pass, no probability matrix: out[0] =
     * the SUM of the N losses (as softmax_xent_forward returns it) and
     * out[1] = the rows whose arg-max (first on ties) is the label
     * (count_correct on the logits before they are overwritten), both
     * OVERWRITTEN in the backend's memory (no wait for the host: the
     * trainer reads a step's losses in one copy, core/step_stats.h); the
     * logits(N,V) (rows ld apart, columns V..ld-1 set to 0 as the loss ops
     * above) are OVERWRITTEN with probs - onehot(labels), unscaled
     * (softmax_xent_backward with scale 1; the caller folds its scale into
     * the next matmul's alpha). */
    void (*xent_fused)(float *logits, const int32_t *labels, int N, int V, int ld, double *out);

    /* out[i] = sumsq of the n[i] elements at x + off[i], for i < nseg: each
     * bitwise the backend's sumsq of that segment, written to out in the
     * backend's memory (no wait; off and n are host arrays). NULL: the
     * caller calls sumsq per segment. */
    void (*sumsq_multi)(double *out, const float *x, int nseg, const size_t *off, const size_t *n);

    /* AdamW over many tensors in one pass: for each segment i, adamw_update
     * of the n[i] elements at p + p_off[i] (gradient g + p_off[i], state m, v
     * + s_off[i]) with weight decay wd[i], the gradient first multiplied by
     * gscale (the clip factor; 1 = none). p_off, s_off, n and wd are host
     * arrays (the backend's memory holds p, g, m, v only). */
    void (*adamw_multi)(float *p, const float *g, float *m, float *v, int nseg, const size_t *p_off,
                        const size_t *s_off, const size_t *n, const float *wd, float gscale,
                        float lr, float beta1, float beta2, float eps, float bc1, float bc2);
} mt_backend;

/* The CPU backend (OpenBLAS sgemm + C loops with OpenMP). */
const mt_backend *mt_backend_cpu(void);
/* The CPU backend's BLAS (openblas_get_config: version, kernels, threading). */
void mt_backend_blas_version(char *buf, size_t n);

#endif
