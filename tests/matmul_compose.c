/* matmul_compose.c - the products with epilogues as compositions of a
 * backend's unfused ops (see matmul_compose.h). */
#include "matmul_compose.h"

#include <stddef.h>

long mt_compose_calls[4];

/* Rows of a (M,N) matrix with row stride ldc, as the unfused ops take them:
 * all at once when packed, else one call per row. */
#define ROWS(ldc, N, M) ((ldc) == (N) ? 1 : (M))
#define PER(ldc, N, M)  ((ldc) == (N) ? (M) : 1)

void mt_compose_matmul_bias(const mt_backend *be, int trans_a, int trans_b, int M, int N, int K,
                            const float *A, int lda, const float *B, int ldb, const float *bias,
                            float *C, int ldc) {
    be->matmul(trans_a, trans_b, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, ldc);
    for (int r = 0; r < ROWS(ldc, N, M); r++)
        be->bias_add(C + (size_t)r * ldc, bias, PER(ldc, N, M), N);
}

void mt_compose_matmul_bias_gelu(const mt_backend *be, int trans_a, int trans_b, int M, int N,
                                 int K, const float *A, int lda, const float *B, int ldb,
                                 const float *bias, float *pre, float *out, int ldc) {
    be->matmul(trans_a, trans_b, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, pre, ldc);
    for (int r = 0; r < ROWS(ldc, N, M); r++) {
        size_t o = (size_t)r * ldc;
        int rows = PER(ldc, N, M);
        if (be->bias_gelu_forward) {
            be->bias_gelu_forward(pre + o, out + o, bias, rows, N);
        } else {
            be->bias_add(pre + o, bias, rows, N);
            be->gelu_forward(out + o, pre + o, (size_t)rows * (size_t)N);
        }
    }
}

void mt_compose_matmul_dgelu(const mt_backend *be, int trans_a, int trans_b, int M, int N, int K,
                             const float *A, int lda, const float *B, int ldb, const float *pre,
                             float *dpre, float *db, int ldc) {
    be->matmul(trans_a, trans_b, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, dpre, ldc);
    for (int r = 0; r < ROWS(ldc, N, M); r++) {
        size_t o = (size_t)r * ldc;
        int rows = PER(ldc, N, M);
        if (db && be->gelu_bias_backward) {
            be->gelu_bias_backward(dpre + o, db, dpre + o, pre + o, rows, N);
            continue;
        }
        be->gelu_backward(dpre + o, dpre + o, pre + o, (size_t)rows * (size_t)N);
        if (db) be->bias_grad(db, dpre + o, rows, N, 1.0f);
    }
}

void mt_compose_matmul_wgrad_bgrad(const mt_backend *be, int M, int N, int K, const float *dy,
                                   int lddy, const float *x, int ldx, float *dW, int lddw,
                                   float *db) {
    be->matmul(1, 0, M, N, K, 1.0f, dy, lddy, x, ldx, 1.0f, dW, lddw);
    be->bias_grad(db, dy, K, M, 1.0f);
}

static void c_bias(int ta, int tb, int M, int N, int K, const float *A, int lda, const float *B,
                   int ldb, const float *bias, float *C, int ldc) {
    mt_compose_calls[0]++;
    mt_compose_matmul_bias(mt_backend_cpu(), ta, tb, M, N, K, A, lda, B, ldb, bias, C, ldc);
}

static void c_bias_gelu(int ta, int tb, int M, int N, int K, const float *A, int lda,
                        const float *B, int ldb, const float *bias, float *pre, float *out,
                        int ldc) {
    mt_compose_calls[1]++;
    mt_compose_matmul_bias_gelu(mt_backend_cpu(), ta, tb, M, N, K, A, lda, B, ldb, bias, pre, out,
                                ldc);
}

static void c_dgelu(int ta, int tb, int M, int N, int K, const float *A, int lda, const float *B,
                    int ldb, const float *pre, float *dpre, float *db, int ldc) {
    mt_compose_calls[2]++;
    mt_compose_matmul_dgelu(mt_backend_cpu(), ta, tb, M, N, K, A, lda, B, ldb, pre, dpre, db, ldc);
}

static void c_wgrad(int M, int N, int K, const float *dy, int lddy, const float *x, int ldx,
                    float *dW, int lddw, float *db) {
    mt_compose_calls[3]++;
    mt_compose_matmul_wgrad_bgrad(mt_backend_cpu(), M, N, K, dy, lddy, x, ldx, dW, lddw, db);
}

const mt_backend *mt_compose_backend(void) {
    static mt_backend be;
    if (!be.name) {
        be = *mt_backend_cpu();
        be.name = "cpu-composed";
        be.matmul_bias = c_bias;
        be.matmul_bias_gelu = c_bias_gelu;
        be.matmul_dgelu = c_dgelu;
        be.matmul_wgrad_bgrad = c_wgrad;
    }
    return &be;
}
