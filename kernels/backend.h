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

typedef struct mt_backend {
    const char *name;

    /* memory */
    float *(*alloc)(size_t n); /* zeroed, n floats */
    void (*free)(void *p);
    void (*to_device)(float *dst, const float *src, size_t n);
    void (*to_host)(float *dst, const float *src, size_t n);
    void (*synchronize)(void);

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

    /* Softmax cross-entropy over logits(B,C) with labels(B) in [0,C):
     * probs(B,C) = softmax(logits); returns the SUM of the B losses (double). */
    double (*softmax_xent_forward)(float *probs, const float *logits, const int32_t *labels, int B,
                                   int C);
    /* dlogits(B,C) = (probs - onehot(labels)) * scale (dlogits may alias probs) */
    void (*softmax_xent_backward)(float *dlogits, const float *probs, const int32_t *labels, int B,
                                  int C, float scale);
    /* number of rows whose arg-max (first on ties) equals the label */
    int64_t (*count_correct)(const float *logits, const int32_t *labels, int B, int C);

    /* sum of squares in double, fixed reduction order */
    double (*sumsq)(const float *x, size_t n);
    /* x *= s */
    void (*scale)(float *x, float s, size_t n);

    /* AdamW on n elements (PyTorch's formulation): p *= 1 - lr*wd, then the
     * Adam step with bias corrections bc1 = 1 - beta1^t, bc2 = 1 - beta2^t. */
    void (*adamw_update)(float *p, const float *g, float *m, float *v, size_t n, float lr,
                         float beta1, float beta2, float eps, float wd, float bc1, float bc2);
    /* SGD with momentum (PyTorch's): g += wd*p; buf = mom*buf + g; p -= lr*buf */
    void (*sgd_update)(float *p, const float *g, float *buf, size_t n, float lr, float momentum,
                       float wd);
} mt_backend;

/* The CPU backend (OpenBLAS sgemm + C loops with OpenMP). */
const mt_backend *mt_backend_cpu(void);
/* Chooses a backend by name ("cpu"); NULL if unknown or not built. */
const mt_backend *mt_backend_get(const char *name);

#endif
