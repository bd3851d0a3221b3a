/*
 * matmul_lt.c - the CUDA backend's matrix products with their neighbours
 * folded in (backend.h: matmul_bias, matmul_bias_gelu, matmul_dgelu,
 * matmul_wgrad_bgrad), each one cublasLtMatmul with an epilogue:
 *
 *   matmul_bias         CUBLASLT_EPILOGUE_BIAS
 *   matmul_bias_gelu    CUBLASLT_EPILOGUE_GELU_AUX_BIAS (aux: the pre-activation)
 *   matmul_dgelu        CUBLASLT_EPILOGUE_DGELU (aux: the pre-activation read),
 *                       with db: CUBLASLT_EPILOGUE_DGELU_BGRAD
 *   matmul_wgrad_bgrad  CUBLASLT_EPILOGUE_BGRADB, beta 1 (dW accumulates)
 *
 * and matmul_bf16, the same products (its MT_EPI_NONE: DEFAULT with its
 * alpha and beta) of bf16 operands read as such (CUDA_R_16BF layouts for
 * A and B, fp32 C and D, CUBLAS_COMPUTE_32F: see mt_cuda_matmul_bf16).
 *
 * Row-major to column-major as mt_cuda_matmul: row-major C(M,N) is
 * column-major C^T (N rows, M columns), the same buffer and lead, and
 * C^T = op(B)^T op(A)^T: cuBLASLt's A is our B (its transpose flag our
 * trans_b), its B our A, m = N, n = M. An epilogue's bias (and DGELU_BGRAD's
 * bias gradient) runs along cuBLASLt's m, the column-major rows: one value
 * per row-major COLUMN, as bias(N) is. The weight gradient dW(out,in) +=
 * dy^T x is column-major dW^T(in, out) = x^T(in, K) dy(K, out): cuBLASLt's
 * A = x (not transposed), B = dy (transposed), and BGRADB sums op(B) over k
 * for each of the n = out columns: colsum(dy), db's shape.
 *
 * The bias gradients of cuBLASLt OVERWRITE their vector, the GPT's
 * accumulate over micro-batches: the epilogue writes a scratch vector of
 * this file's, then mt_cuda_accumulate adds it to db (backend.h's contract).
 *
 * Precision as mt_cuda_matmul: fp32 computes with CUBLAS_COMPUTE_32F (in
 * cuBLASLt true fp32: TF32 only with CUBLAS_COMPUTE_32F_FAST_TF32, and
 * cuBLASLt has no handle math mode to change that); bf16 mode with
 * CUBLAS_COMPUTE_32F_FAST_16BF (fp32 operands rounded to bf16 inside, fp32
 * accumulation). cuBLASLt's GELU is the tanh form ours is (kernels/cpu's
 * mt_vgelu), but its own evaluation (possibly a hardware tanh, ~2^-11
 * relative), which fp32's contract (the composition within fp32 rounding,
 * test_backend_cmp's 1e-5) may not hold: the GELU epilogues (GELU_AUX_BIAS,
 * DGELU, DGELU_BGRAD) run in bf16 mode only (1e-2, far above it); in fp32
 * mode matmul_bias_gelu is the BIAS epilogue then gelu.cu's GELU, and
 * matmul_dgelu the product then gelu.cu's GELU' (and bias gradient).
 *
 * One handle and one 32 MiB workspace, made at the first call and kept
 * (mt_cuda_lt_release frees them). Descriptors, layouts and the algorithm
 * (cublasLtMatmulAlgoGetHeuristic's first answer, or that there is none)
 * are cached by everything they depend on - transposes, m, n, k, leads,
 * epilogue, precision, the aux lead and the alignment of every pointer
 * (lt_key) - in a table of LT_CACHE entries, round-robin evicted: a
 * product pays that host work (tens of microseconds) once per key, then
 * only sets its bias and aux pointers on the cached descriptor. Each
 * pointer's real alignment is given to the heuristic (a weight inside the
 * parameter buffer need not be 256-byte aligned, the default it assumes).
 * Where cuBLASLt offers no algorithm for an epilogue (or the GELU aux lead
 * is not a multiple of 8, its rule), the op runs its composition on the
 * backend's unfused ops instead: the same contract, unfused speed.
 *
 * Determinism: one key runs one algorithm (the cached one; after an
 * eviction the heuristic is asked again, and for one shape, workspace and
 * device it answers the same), and cuBLASLt's reductions (split-K
 * included) are in a fixed order: the same inputs give the same bits.
 *
 * tests/test_matmul_lt.c compiles this file for the host against the real
 * headers, linked with a stand-in of the functions it calls
 * (tests/cublaslt_standin.c): keep to those, or extend the stand-in.
 */
#include <cublasLt.h>
#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/cuda/cuda_ops.h"

#define LT_WORKSPACE ((size_t)32 << 20)

static cublasLtHandle_t lt;
static void *lt_ws;  /* (LT_WORKSPACE bytes) device */
static float *lt_db; /* (lt_db_n) device: a bias gradient before it is accumulated */
static size_t lt_db_n;
static float *lt_wide; /* (lt_wide_n) device: matmul_bf16's fallback, its operands widened */
static size_t lt_wide_n;

static cublasLtHandle_t lt_handle(void) {
    if (!lt) {
        MT_CUBLAS_CHECK(cublasLtCreate(&lt));
        MT_CUDA_CHECK(cudaMalloc(&lt_ws, LT_WORKSPACE));
    }
    return lt;
}

/* The scratch bias gradient, n floats (grown; cudaFree synchronises, so no
 * product in flight still writes the old one). */
static float *db_scratch(size_t n) {
    if (n > lt_db_n) {
        if (lt_db) MT_CUDA_CHECK(cudaFree(lt_db));
        lt_db = NULL;
        lt_db_n = 0;
        MT_CUDA_CHECK(cudaMalloc((void **)&lt_db, n * sizeof(float)));
        lt_db_n = n;
    }
    return lt_db;
}

/* One product in cuBLASLt's column-major terms: D(m,n) = alpha op(a)
 * op(b) + beta D, then the epilogue. */
typedef struct {
    int ta, tb;  /* op(a) = a^T, op(b) = b^T */
    int m, n, k; /* D(m,n), op(a)(m,k), op(b)(k,n) */
    int ab16;    /* a and b: 1 bf16 bits (CUDA_R_16BF), 0 fp32 */
    const void *a;
    int lda;
    const void *b;
    int ldb;
    float alpha; /* 1 but for matmul_bf16's MT_EPI_NONE */
    float beta;  /* D also serves as C (0: C is not read) */
    float *d;
    int ldd;
    cublasLtEpilogue_t epi;
    void *bias; /* bias read, or bias gradient written (NULL: none) */
    void *aux;  /* the GELU input: written (GELU_AUX_BIAS) or read (DGELU) */
    int64_t aux_ld;
} lt_call;

/* The largest power of two dividing p's address, at most 256 (the
 * heuristic's default assumption); 256 for NULL (no such operand). A bf16
 * operand may be 2-byte aligned only (a slice starting at an odd column). */
static uint32_t align_of(const void *p) {
    uint32_t a = 256;
    while (a > 2 && (uintptr_t)p % a) a /= 2;
    return a;
}

static void set_desc(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr, const void *v,
                     size_t n) {
    MT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d, attr, v, n));
}

static void set_pref(cublasLtMatmulPreference_t p, cublasLtMatmulPreferenceAttributes_t attr,
                     const void *v, size_t n) {
    MT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(p, attr, v, n));
}

/* The stored (rows, cols) of an operand that is (r, c) after op, of the
 * given element type. */
static cublasLtMatrixLayout_t layout(cudaDataType_t type, int trans, int r, int c, int ld) {
    cublasLtMatrixLayout_t l;
    MT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l, type, (uint64_t)(trans ? c : r),
                                               (uint64_t)(trans ? r : c), ld));
    return l;
}

/* Everything the descriptor, the layouts and the heuristic's answer depend
 * on (int64_t fields only: no padding, so memcmp compares keys). Not the
 * pointers themselves (set per call), but their alignment, which the
 * heuristic is told (A, B, C = D) or reads from the descriptor's bias and
 * aux pointers (cublasLt.h on BIAS_POINTER and EPILOGUE_AUX_POINTER: the
 * heuristic "depend[s] on its value to determine expected pointer
 * alignment"). Not alpha or beta: cublasLtMatmulAlgoGetHeuristic takes
 * neither, so they cannot change its answer; cublasLtMatmul takes them per
 * call (matmul_bf16's MT_EPI_NONE passes its own). The operands' type
 * (fp32 or bf16) is: it makes other layouts and another compute type. The
 * bias and aux presence and the aux lead follow from the epilogue and ldd
 * in today's calls; they are in the key all the same, so that a new call
 * site cannot share an entry it should not. */
typedef struct {
    int64_t ta, tb, m, n, k, lda, ldb, ldd;
    int64_t ab16;                         /* the operands' type: 1 CUDA_R_16BF, 0 CUDA_R_32F */
    int64_t epi, bf16, bias, aux, aux_ld; /* bias, aux: 1 when present */
    int64_t align[5];                     /* A, B, D, bias, aux */
} lt_key;

/* One cached product: its descriptor (pointer attributes rewritten per
 * call), layouts, and the heuristic's first algorithm, or none (found 0:
 * the op falls back, without asking again). */
typedef struct {
    int used;
    lt_key key;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, ld; /* A, B, and C = D */
    int found;
    cublasLtMatmulAlgo_t algo;
} lt_entry;

#define LT_CACHE 64 /* entries; a GPT step has far fewer distinct products */

static lt_entry lt_cache[LT_CACHE];
static int lt_victim; /* the next entry evicted when the table is full (round-robin) */

static lt_key key_of(const lt_call *c) {
    lt_key k;
    memset(&k, 0, sizeof k);
    k.ta = c->ta, k.tb = c->tb, k.m = c->m, k.n = c->n, k.k = c->k, k.ab16 = c->ab16;
    k.lda = c->lda, k.ldb = c->ldb, k.ldd = c->ldd;
    k.epi = (int64_t)c->epi, k.bf16 = mt_cuda_precision_bf16();
    k.bias = c->bias != NULL, k.aux = c->aux != NULL, k.aux_ld = c->aux ? c->aux_ld : 0;
    k.align[0] = align_of(c->a), k.align[1] = align_of(c->b), k.align[2] = align_of(c->d);
    k.align[3] = align_of(c->bias), k.align[4] = align_of(c->aux);
    return k;
}

static void entry_free(lt_entry *e) {
    if (!e->used) return;
    MT_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(e->la));
    MT_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(e->lb));
    MT_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(e->ld));
    MT_CUBLAS_CHECK(cublasLtMatmulDescDestroy(e->desc));
    e->used = 0;
}

/* Fills e for c: the descriptor (with c's bias and aux pointers, which the
 * heuristic reads for their alignment), the layouts, and the heuristic's
 * answer with each operand's real alignment (a weight inside the parameter
 * buffer need not be 256-byte aligned, the default it assumes). */
static void entry_make(lt_entry *e, const lt_key *k, const lt_call *c) {
    /* bf16 operands: CUBLAS_COMPUTE_32F (fp32 accumulation of products that
     * are exact in fp32: the same in either precision mode) */
    cublasComputeType_t ct =
        k->bf16 && !k->ab16 ? CUBLAS_COMPUTE_32F_FAST_16BF : CUBLAS_COMPUTE_32F;
    cudaDataType_t ab = k->ab16 ? CUDA_R_16BF : CUDA_R_32F;
    MT_CUBLAS_CHECK(cublasLtMatmulDescCreate(&e->desc, ct, CUDA_R_32F));
    int32_t ta = c->ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb = c->tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    uint32_t epi = (uint32_t)c->epi;
    set_desc(e->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
    set_desc(e->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
    set_desc(e->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi);
    if (c->bias) set_desc(e->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &c->bias, sizeof c->bias);
    if (c->aux) {
        set_desc(e->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &c->aux, sizeof c->aux);
        set_desc(e->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &c->aux_ld, sizeof c->aux_ld);
    }
    e->la = layout(ab, c->ta, c->m, c->k, c->lda);
    e->lb = layout(ab, c->tb, c->k, c->n, c->ldb);
    e->ld = layout(CUDA_R_32F, 0, c->m, c->n, c->ldd);
    cublasLtMatmulPreference_t pref;
    MT_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    uint64_t ws = LT_WORKSPACE;
    uint32_t al[4] = {(uint32_t)k->align[0], (uint32_t)k->align[1], (uint32_t)k->align[2],
                      (uint32_t)k->align[2]};
    set_pref(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al[0], sizeof al[0]);
    set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al[1], sizeof al[1]);
    set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al[2], sizeof al[2]);
    set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al[3], sizeof al[3]);
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(lt_handle(), e->desc, e->la, e->lb, e->ld,
                                                       e->ld, pref, 1, &res, &found);
    if (st != CUBLAS_STATUS_NOT_SUPPORTED) MT_CUBLAS_CHECK(st); /* (NOT_SUPPORTED: none) */
    MT_CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
    e->found = st == CUBLAS_STATUS_SUCCESS && found > 0;
    if (e->found) e->algo = res.algo;
    e->key = *k;
    e->used = 1;
}

/* c's entry: found in the table, or made in a free one, or in place of
 * the round-robin victim (destroyed at once: see lt_run on why a product
 * in flight does not need its descriptor). A linear search: 64 keys of
 * 144 bytes compared take a microsecond at most, against the tens saved. */
static lt_entry *entry_for(const lt_call *c) {
    lt_key k = key_of(c);
    lt_entry *free_e = NULL;
    for (int i = 0; i < LT_CACHE; i++) {
        lt_entry *e = &lt_cache[i];
        if (e->used && memcmp(&e->key, &k, sizeof k) == 0) return e;
        if (!e->used && !free_e) free_e = e;
    }
    if (!free_e) {
        free_e = &lt_cache[lt_victim];
        lt_victim = (lt_victim + 1) % LT_CACHE;
        entry_free(free_e);
    }
    entry_make(free_e, &k, c);
    return free_e;
}

/* Runs c; 0 (nothing run) when cuBLASLt has no algorithm for it. Only the
 * bias and aux pointers change between calls with one key: they are set
 * on the cached descriptor before each cublasLtMatmul. That call takes
 * what it needs from the descriptor when it enqueues the product (this
 * file destroyed each call's descriptor right after it before the cache,
 * as NVIDIA's cuBLASLt samples do, without a synchronisation; the cuBLAS
 * guide: "these options can be used repeatedly for different inputs",
 * like an FFT plan), so rewriting a pointer for the next call does not
 * reach a product still in flight. */
static int lt_run(const lt_call *c) {
    if (c->aux && c->aux_ld % 8 != 0) return 0; /* the GELU aux lead's rule (cublasLt.h) */
    lt_entry *e = entry_for(c);
    if (!e->found) return 0;
    if (c->bias) set_desc(e->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &c->bias, sizeof c->bias);
    if (c->aux)
        set_desc(e->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &c->aux, sizeof c->aux);
    MT_CUBLAS_CHECK(cublasLtMatmul(lt_handle(), e->desc, &c->alpha, c->a, e->la, c->b, e->lb,
                                   &c->beta, c->d, e->ld, c->d, e->ld, &e->algo, lt_ws,
                                   LT_WORKSPACE, 0));
    return 1;
}

void mt_cuda_lt_release(void) {
    for (int i = 0; i < LT_CACHE; i++) entry_free(&lt_cache[i]);
    lt_victim = 0;
    if (lt_db) MT_CUDA_CHECK(cudaFree(lt_db)); /* (synchronises: nothing in flight uses them) */
    lt_db = NULL;
    lt_db_n = 0;
    if (lt_wide) MT_CUDA_CHECK(cudaFree(lt_wide));
    lt_wide = NULL;
    lt_wide_n = 0;
    if (lt_ws) MT_CUDA_CHECK(cudaFree(lt_ws));
    lt_ws = NULL;
    if (lt) MT_CUBLAS_CHECK(cublasLtDestroy(lt));
    lt = NULL;
}

/* Our row-major call as cuBLASLt's column-major one (see the top). */
static lt_call row_major(int trans_a, int trans_b, int M, int N, int K, const void *A, int lda,
                         const void *B, int ldb, float *C, int ldc) {
    lt_call c;
    memset(&c, 0, sizeof c);
    c.ta = trans_b, c.tb = trans_a, c.m = N, c.n = M, c.k = K;
    c.a = B, c.lda = ldb, c.b = A, c.ldb = lda;
    c.alpha = 1.0f, c.beta = 0.0f, c.d = C, c.ldd = ldc;
    c.epi = CUBLASLT_EPILOGUE_DEFAULT;
    return c;
}

/* The unfused fallbacks act on each row's N values (row stride ldc). */
static void rows_bias_add(float *C, const float *bias, int M, int N, int ldc) {
    if (ldc == N) {
        mt_cuda_bias_add(C, bias, M, N);
        return;
    }
    for (int r = 0; r < M; r++) mt_cuda_bias_add(C + (size_t)r * ldc, bias, 1, N);
}

void mt_cuda_matmul_bias(int trans_a, int trans_b, int M, int N, int K, const float *A, int lda,
                         const float *B, int ldb, const float *bias, float *C, int ldc) {
    if (M == 0 || N == 0) return;
    lt_call c = row_major(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc);
    c.epi = CUBLASLT_EPILOGUE_BIAS;
    c.bias = (void *)bias;
    if (lt_run(&c)) return;
    mt_cuda_matmul(trans_a, trans_b, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, ldc);
    rows_bias_add(C, bias, M, N, ldc);
}

/* out = gelu(pre), each row's N values (row stride ldc) */
static void rows_gelu_forward(float *out, const float *pre, int M, int N, int ldc) {
    int rows = ldc == N ? 1 : M; /* packed rows: one call */
    size_t n = ldc == N ? (size_t)M * (size_t)N : (size_t)N;
    for (int r = 0; r < rows; r++)
        mt_cuda_gelu_forward(out + (size_t)r * ldc, pre + (size_t)r * ldc, n);
}

/* dpre *= gelu'(pre), then with db non-NULL db += column sums of dpre
 * (matmul_dgelu after its product; each row's N values, stride ldc) */
static void rows_dgelu(float *dpre, const float *pre, float *db, int M, int N, int ldc) {
    if (db && ldc == N) { /* gelu.cu's fused pass: GELU' and the bias gradient */
        mt_cuda_gelu_bias_backward(dpre, db, dpre, pre, M, N);
        return;
    }
    int rows = ldc == N ? 1 : M; /* packed rows: one call */
    size_t n = ldc == N ? (size_t)M * (size_t)N : (size_t)N;
    for (int r = 0; r < rows; r++) {
        size_t o = (size_t)r * ldc;
        mt_cuda_gelu_backward(dpre + o, dpre + o, pre + o, n);
        if (db) mt_cuda_bias_grad(db, dpre + o, ldc == N ? M : 1, N, 1.0f);
    }
}

/* c with the GELU epilogue of matmul_bias_gelu (out = c.d, aux pre) */
static int lt_bias_gelu(lt_call *c, const float *bias, float *pre, int ldc) {
    c->epi = CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
    c->bias = (void *)bias;
    c->aux = pre, c->aux_ld = ldc;
    return lt_run(c);
}

/* c with the GELU' epilogue of matmul_dgelu (dpre = c.d), the bias
 * gradient through the scratch vector then accumulated into db */
static int lt_dgelu(lt_call *c, const float *pre, float *db, int N, int ldc) {
    c->epi = db ? CUBLASLT_EPILOGUE_DGELU_BGRAD : CUBLASLT_EPILOGUE_DGELU;
    c->aux = (void *)pre, c->aux_ld = ldc;
    c->bias = db ? db_scratch((size_t)N) : NULL;
    if (!lt_run(c)) return 0;
    if (db) mt_cuda_accumulate(db, c->bias, (size_t)N);
    return 1;
}

void mt_cuda_matmul_bias_gelu(int trans_a, int trans_b, int M, int N, int K, const float *A,
                              int lda, const float *B, int ldb, const float *bias, float *pre,
                              float *out, int ldc) {
    if (M == 0 || N == 0) return;
    if (mt_cuda_precision_bf16()) { /* cuBLASLt's own GELU: bf16 mode only (see the top) */
        lt_call c = row_major(trans_a, trans_b, M, N, K, A, lda, B, ldb, out, ldc);
        if (lt_bias_gelu(&c, bias, pre, ldc)) return;
    }
    mt_cuda_matmul_bias(trans_a, trans_b, M, N, K, A, lda, B, ldb, bias, pre, ldc);
    rows_gelu_forward(out, pre, M, N, ldc);
}

void mt_cuda_matmul_dgelu(int trans_a, int trans_b, int M, int N, int K, const float *A, int lda,
                          const float *B, int ldb, const float *pre, float *dpre, float *db,
                          int ldc) {
    if (M == 0 || N == 0) return;
    if (mt_cuda_precision_bf16()) { /* cuBLASLt's own GELU': bf16 mode only (see the top) */
        lt_call c = row_major(trans_a, trans_b, M, N, K, A, lda, B, ldb, dpre, ldc);
        if (lt_dgelu(&c, pre, db, N, ldc)) return;
    }
    mt_cuda_matmul(trans_a, trans_b, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, dpre, ldc);
    rows_dgelu(dpre, pre, db, M, N, ldc);
}

void mt_cuda_matmul_wgrad_bgrad(int M, int N, int K, const float *dy, int lddy, const float *x,
                                int ldx, float *dW, int lddw, float *db) {
    if (M == 0 || K == 0) return; /* nothing to add */
    /* dW^T(N, M) = x^T op: cuBLASLt's a = x (N x K column-major, not
     * transposed), b = dy (M x K column-major, transposed to K x M) */
    lt_call c = row_major(1, 0, M, N, K, dy, lddy, x, ldx, dW, lddw);
    c.beta = 1.0f;
    c.epi = CUBLASLT_EPILOGUE_BGRADB;
    c.bias = db_scratch((size_t)M);
    if (N > 0 && lt_run(&c)) {
        mt_cuda_accumulate(db, c.bias, (size_t)M);
        return;
    }
    mt_cuda_matmul(1, 0, M, N, K, 1.0f, dy, lddy, x, ldx, 1.0f, dW, lddw);
    mt_cuda_bias_grad(db, dy, K, M, 1.0f);
}

/* ---- matmul_bf16: bf16 operands (backend.h) ---- */

/* elements a stored (rows, cols) operand with lead ld spans */
static size_t span(int rows, int cols, int ld) {
    return rows > 0 && cols > 0 ? (size_t)(rows - 1) * (size_t)ld + (size_t)cols : 0;
}

/* The fallback's fp32 copy of both operands, n floats (grown as
 * db_scratch; cudaFree synchronises, so no product in flight still reads
 * the old one). */
static float *wide_scratch(size_t n) {
    if (n > lt_wide_n) {
        if (lt_wide) MT_CUDA_CHECK(cudaFree(lt_wide));
        lt_wide = NULL;
        lt_wide_n = 0;
        MT_CUDA_CHECK(cudaMalloc((void **)&lt_wide, n * sizeof(float)));
        lt_wide_n = n;
    }
    return lt_wide;
}

/* backend.h's specification itself: A and B widened to fp32 (exact) with
 * their leads, then the fp32-operand op of the epilogue (which takes its
 * own cuBLASLt path or its unfused fallback) */
static void bf16_widened(int epi, int ta, int tb, int M, int N, int K, float alpha,
                         const uint16_t *A, int lda, const uint16_t *B, int ldb, float beta,
                         const float *bias, float *pre, float *C, float *db, int ldc) {
    size_t na = span(ta ? K : M, ta ? M : K, lda), nb = span(tb ? N : K, tb ? K : N, ldb);
    size_t oa = (na + 63) & ~(size_t)63; /* B's copy 256-byte aligned too */
    float *w = wide_scratch(oa + nb > 0 ? oa + nb : 1), *wa = w, *wb = w + oa;
    mt_cuda_from_bf16(wa, A, na);
    mt_cuda_from_bf16(wb, B, nb);
    switch (epi) {
    case MT_EPI_BIAS:
        mt_cuda_matmul_bias(ta, tb, M, N, K, wa, lda, wb, ldb, bias, C, ldc);
        break;
    case MT_EPI_BIAS_GELU:
        mt_cuda_matmul_bias_gelu(ta, tb, M, N, K, wa, lda, wb, ldb, bias, pre, C, ldc);
        break;
    case MT_EPI_DGELU:
        mt_cuda_matmul_dgelu(ta, tb, M, N, K, wa, lda, wb, ldb, pre, C, db, ldc);
        break;
    default:
        mt_cuda_matmul(ta, tb, M, N, K, alpha, wa, lda, wb, ldb, beta, C, ldc);
    }
}

/* cuBLASLt reads the bf16 operands itself (CUDA_R_16BF layouts, fp32 C
 * and D, CUBLAS_COMPUTE_32F): the epilogue as the fp32-operand op of the
 * same name takes it, the GELU ones in bf16 mode only (see the top); in
 * fp32 mode BIAS_GELU is the BIAS epilogue then gelu.cu's GELU, and DGELU
 * the plain product then gelu.cu's GELU' (and bias gradient). The bias
 * and aux types are left at their default, D's type (cublasLt.h on
 * CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE: "the same type as the elements of
 * output matrix (Dtype)"; on EPILOGUE_AUX_DATA_TYPE: "the same as the type
 * of elements of the output matrix"), fp32 here as our bias, pre and db
 * are. Whether cuBLASLt has a kernel for a combination (16BF operands with
 * an fp32 D and these epilogues) is the heuristic's answer: where it has
 * none, or K is 0, or the GELU aux lead rule fails, the operands are
 * widened into a scratch buffer and the fp32-operand op runs. */
void mt_cuda_matmul_bf16(int epi, int trans_a, int trans_b, int M, int N, int K, float alpha,
                         const uint16_t *A, int lda, const uint16_t *B, int ldb, float beta,
                         const float *bias, float *pre, float *C, float *db, int ldc) {
    if (M == 0 || N == 0) return;
    int bf16 = mt_cuda_precision_bf16();
    if (K > 0) {
        lt_call c = row_major(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc);
        c.ab16 = 1;
        switch (epi) {
        case MT_EPI_BIAS:
            c.epi = CUBLASLT_EPILOGUE_BIAS;
            c.bias = (void *)bias;
            if (lt_run(&c)) return;
            break;
        case MT_EPI_BIAS_GELU:
            if (bf16) {
                if (lt_bias_gelu(&c, bias, pre, ldc)) return;
                break;
            }
            c.epi = CUBLASLT_EPILOGUE_BIAS;
            c.bias = (void *)bias;
            c.d = pre;
            if (!lt_run(&c)) break;
            rows_gelu_forward(C, pre, M, N, ldc);
            return;
        case MT_EPI_DGELU:
            if (bf16) {
                if (lt_dgelu(&c, pre, db, N, ldc)) return;
                break;
            }
            if (!lt_run(&c)) break;
            rows_dgelu(C, pre, db, M, N, ldc);
            return;
        default:
            c.alpha = alpha, c.beta = beta;
            if (lt_run(&c)) return;
        }
    }
    bf16_widened(epi, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, bias, pre, C, db,
                 ldc);
}
