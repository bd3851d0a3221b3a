/*
 * cublaslt_standin.c - a host stand-in of exactly the cuBLASLt and CUDA
 * runtime functions kernels/cuda/matmul_lt.c calls, so that file's call
 * sites run on a machine without a GPU (tests/test_matmul_lt.c). "Device"
 * memory is host memory.
 *
 * It keeps every attribute matmul_lt.c sets (compute and scale type,
 * transposes, epilogue, bias and aux pointers, aux lead; each layout's type,
 * rows, cols and lead; the workspace and alignment preferences) and
 * computes cuBLASLt's column-major D = alpha op(A) op(B) + beta C and its
 * epilogue in double, as cuBLASLt documents them (cublasLt.h); A and B may
 * be CUDA_R_16BF (bf16 bits, read as their values) with an fp32 C and D
 * and CUBLAS_COMPUTE_32F, the one mixed combination it takes. Anything it
 * does not understand - another attribute, epilogue, type or pointer mode,
 * shapes that do not fit, a lead shorter than the rows, an aux lead that is
 * not a multiple of 8, a pointer less aligned than the preference said, a
 * missing bias or aux pointer - is rejected: one line, then abort (the
 * test fails). As the real heuristic's answer holds for the problem it was
 * asked about, the stand-in's algorithm records that problem (m, n, k, the
 * transposes, leads, epilogue, compute type) and the alignment it assumed
 * of A, B, C, D and of the bias and aux pointers (cuBLASLt reads the
 * latter from the descriptor: cublasLt.h), and cublasLtMatmul rejects it
 * for any other problem or a less aligned pointer: a cache that reused an
 * algorithm across keys it should tell apart fails here.
 *
 * The unfused mt_cuda_* ops matmul_lt.c falls back on (and accumulates the
 * bias gradients with) are the CPU backend's, counted; mt_cuda_check and
 * mt_cublas_check are backend_cuda.c's in spirit: one line, then abort.
 */
#include <cublasLt.h>
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cublaslt_standin.h"
#include "kernels/backend.h"
#include "kernels/bf16.h"
#include "kernels/cuda/cuda_ops.h"

mt_standin_stats mt_standin;
int mt_standin_no_algo;

#define MAGIC_DESC   0x4c54444553ul
#define MAGIC_LAYOUT 0x4c544c4159ul
#define MAGIC_PREF   0x4c54505246ul
#define MAGIC_ALGO   0x4c54414c47ul

static void reject(const char *fmt, const char *what, long v) {
    mt_standin.rejected++;
    fprintf(stderr, "mpitrain: error: cuBLASLt stand-in: ");
    fprintf(stderr, fmt, what, v);
    fprintf(stderr, "\n");
    fflush(stdout);
    abort();
}

typedef struct {
    unsigned long magic;
    cublasComputeType_t compute;
    cudaDataType_t scale;
    int32_t ta, tb;
    uint32_t epi;
    const float *bias; /* or the bias gradient, written */
    float *aux;
    int64_t aux_ld;
} desc;

typedef struct {
    unsigned long magic;
    cudaDataType type; /* CUDA_R_32F, or CUDA_R_16BF (bf16 bits) for A and B */
    uint64_t rows, cols;
    int64_t ld;
} layout;

typedef struct {
    unsigned long magic;
    uint64_t workspace;
    uint32_t align[4]; /* A, B, C, D; 256 as cuBLASLt's default */
} pref;

static desc *D_(cublasLtMatmulDesc_t d) {
    desc *p = (desc *)d;
    if (!p || p->magic != MAGIC_DESC) reject("%s: not a descriptor of mine (%ld)", "desc", 0);
    return p;
}

static layout *L_(cublasLtMatrixLayout_t l) {
    layout *p = (layout *)l;
    if (!p || p->magic != MAGIC_LAYOUT) reject("%s: not a layout of mine (%ld)", "layout", 0);
    return p;
}

/* ---- CUDA runtime ---- */

/* 256-byte aligned, as cudaMalloc's memory is */
cudaError_t cudaMalloc(void **p, size_t n) {
    *p = aligned_alloc(256, (n + 255) / 256 * 256 + (n == 0) * 256);
    mt_standin.handles += *p != NULL;
    return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}

cudaError_t cudaFree(void *p) {
    mt_standin.handles -= p != NULL;
    free(p);
    return cudaSuccess;
}

/* ---- cuBLASLt ---- */

static char the_handle;

cublasStatus_t cublasLtCreate(cublasLtHandle_t *h) {
    *h = (cublasLtHandle_t)(void *)&the_handle;
    mt_standin.handles++;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) {
    if (h != (cublasLtHandle_t)(void *)&the_handle)
        reject("%s: unknown handle (%ld)", "destroy", 0);
    mt_standin.handles--;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t compute,
                                        cudaDataType_t scale) {
    if (compute != CUBLAS_COMPUTE_32F && compute != CUBLAS_COMPUTE_32F_FAST_16BF)
        reject("%s: compute type %ld", "cublasLtMatmulDescCreate", (long)compute);
    if (scale != CUDA_R_32F) reject("%s: scale type %ld", "cublasLtMatmulDescCreate", (long)scale);
    desc *p = calloc(1, sizeof *p);
    p->magic = MAGIC_DESC;
    p->compute = compute;
    p->scale = scale;
    p->ta = p->tb = CUBLAS_OP_N;
    p->epi = CUBLASLT_EPILOGUE_DEFAULT;
    mt_standin.live++;
    mt_standin.descs++;
    *d = (cublasLtMatmulDesc_t)(void *)p;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
    D_(d)->magic = 0;
    free(d);
    mt_standin.live--;
    return CUBLAS_STATUS_SUCCESS;
}

static void need_size(size_t got, size_t want, const char *what) {
    if (got != want) reject("%s: attribute size %ld", what, (long)got);
}

cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d,
                                              cublasLtMatmulDescAttributes_t attr, const void *v,
                                              size_t n) {
    desc *p = D_(d);
    switch (attr) {
    case CUBLASLT_MATMUL_DESC_TRANSA:
    case CUBLASLT_MATMUL_DESC_TRANSB: {
        need_size(n, sizeof(int32_t), "TRANSA/B");
        int32_t t;
        memcpy(&t, v, sizeof t);
        if (t != CUBLAS_OP_N && t != CUBLAS_OP_T) reject("%s: operation %ld", "TRANSA/B", t);
        *(attr == CUBLASLT_MATMUL_DESC_TRANSA ? &p->ta : &p->tb) = t;
        return CUBLAS_STATUS_SUCCESS;
    }
    case CUBLASLT_MATMUL_DESC_EPILOGUE: {
        need_size(n, sizeof(uint32_t), "EPILOGUE");
        uint32_t e;
        memcpy(&e, v, sizeof e);
        if (e != CUBLASLT_EPILOGUE_DEFAULT && e != CUBLASLT_EPILOGUE_BIAS &&
            e != CUBLASLT_EPILOGUE_GELU_AUX_BIAS && e != CUBLASLT_EPILOGUE_DGELU &&
            e != CUBLASLT_EPILOGUE_DGELU_BGRAD && e != CUBLASLT_EPILOGUE_BGRADA &&
            e != CUBLASLT_EPILOGUE_BGRADB)
            reject("%s: epilogue %ld not understood", "EPILOGUE", (long)e);
        p->epi = e;
        return CUBLAS_STATUS_SUCCESS;
    }
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER:
        need_size(n, sizeof(void *), "BIAS_POINTER");
        memcpy(&p->bias, v, sizeof p->bias);
        return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER:
        need_size(n, sizeof(void *), "EPILOGUE_AUX_POINTER");
        memcpy(&p->aux, v, sizeof p->aux);
        return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD:
        need_size(n, sizeof(int64_t), "EPILOGUE_AUX_LD");
        memcpy(&p->aux_ld, v, sizeof p->aux_ld);
        return CUBLAS_STATUS_SUCCESS;
    default:
        reject("%s: attribute %ld not understood", "cublasLtMatmulDescSetAttribute", (long)attr);
    }
    return CUBLAS_STATUS_NOT_SUPPORTED;
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType type,
                                          uint64_t rows, uint64_t cols, int64_t ld) {
    if (type != CUDA_R_32F && type != CUDA_R_16BF)
        reject("%s: data type %ld", "cublasLtMatrixLayoutCreate", (long)type);
    if (ld < 1 || (uint64_t)ld < rows)
        reject("%s: lead %ld shorter than the rows", "cublasLtMatrixLayoutCreate", (long)ld);
    layout *p = calloc(1, sizeof *p);
    *p = (layout){MAGIC_LAYOUT, type, rows, cols, ld};
    mt_standin.live++;
    *l = (cublasLtMatrixLayout_t)(void *)p;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
    L_(l)->magic = 0;
    free(l);
    mt_standin.live--;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *pr) {
    pref *p = calloc(1, sizeof *p);
    *p = (pref){MAGIC_PREF, 0, {256, 256, 256, 256}};
    mt_standin.live++;
    *pr = (cublasLtMatmulPreference_t)(void *)p;
    return CUBLAS_STATUS_SUCCESS;
}

static pref *P_(cublasLtMatmulPreference_t pr) {
    pref *p = (pref *)pr;
    if (!p || p->magic != MAGIC_PREF) reject("%s: not a preference of mine (%ld)", "pref", 0);
    return p;
}

cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pr) {
    P_(pr)->magic = 0;
    free(pr);
    mt_standin.live--;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pr,
                                                    cublasLtMatmulPreferenceAttributes_t attr,
                                                    const void *v, size_t n) {
    pref *p = P_(pr);
    if (attr == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES) {
        need_size(n, sizeof(uint64_t), "MAX_WORKSPACE_BYTES");
        memcpy(&p->workspace, v, sizeof p->workspace);
        return CUBLAS_STATUS_SUCCESS;
    }
    int i = attr == CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES   ? 0
            : attr == CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES ? 1
            : attr == CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES ? 2
            : attr == CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES ? 3
                                                                 : -1;
    if (i < 0) reject("%s: attribute %ld not understood", "PreferenceSetAttribute", (long)attr);
    need_size(n, sizeof(uint32_t), "MIN_ALIGNMENT");
    memcpy(&p->align[i], v, sizeof p->align[i]);
    return CUBLAS_STATUS_SUCCESS;
}

/* The problem's m, n, k from the layouts, checked against each other and
 * the epilogue's needs. */
static void shape(const desc *d, const layout *a, const layout *b, const layout *c,
                  const layout *dd, uint64_t *m, uint64_t *n, uint64_t *k) {
    *m = dd->rows, *n = dd->cols;
    uint64_t am = d->ta == CUBLAS_OP_N ? a->rows : a->cols, ak = d->ta ? a->rows : a->cols;
    uint64_t bk = d->tb == CUBLAS_OP_N ? b->rows : b->cols, bn = d->tb ? b->rows : b->cols;
    if (am != *m || bn != *n || ak != bk)
        reject("%s: shapes do not fit (op(A) rows %ld ...)", "matmul", (long)am);
    if (c->rows != dd->rows || c->cols != dd->cols || c->ld != dd->ld)
        reject("%s: C and D layouts differ (%ld)", "matmul", 0);
    *k = ak;
    /* the type combinations matmul_lt.c uses (cuBLAS's table of
     * cublasLtMatmul's types): A, B, C, D fp32 with CUBLAS_COMPUTE_32F or
     * _FAST_16BF; A, B 16BF with C, D fp32 and CUBLAS_COMPUTE_32F */
    if (a->type != b->type || c->type != CUDA_R_32F || dd->type != CUDA_R_32F ||
        (a->type == CUDA_R_16BF && d->compute != CUBLAS_COMPUTE_32F))
        reject("%s: A/B type %ld with that C/D type or compute type", "matmul", (long)a->type);
    uint32_t e = d->epi;
    int aux = e == CUBLASLT_EPILOGUE_GELU_AUX_BIAS || e == CUBLASLT_EPILOGUE_DGELU ||
              e == CUBLASLT_EPILOGUE_DGELU_BGRAD;
    if (e != CUBLASLT_EPILOGUE_DEFAULT && e != CUBLASLT_EPILOGUE_DGELU && !d->bias)
        reject("%s: epilogue %ld without a bias pointer", "matmul", (long)e);
    if (aux && (!d->aux || d->aux_ld % 8 != 0 || (uint64_t)d->aux_ld < *m))
        reject("%s: GELU aux pointer or lead %ld not usable", "matmul", (long)d->aux_ld);
    if (!aux && d->aux) reject("%s: aux pointer set with epilogue %ld", "matmul", (long)e);
}

/* The largest power of two dividing p's address, at most 256 (256 for NULL). */
static uint64_t align_of(const void *p) {
    uint64_t a = 256;
    while (a > 1 && (uintptr_t)p % a) a /= 2;
    return a;
}

/* The problem an algorithm was found for (FNV-1a over what defines it). */
static uint64_t problem(const desc *d, const layout *a, const layout *b, const layout *dd) {
    uint64_t v[] = {(uint64_t)d->compute, (uint64_t)a->type, (uint64_t)b->type,
                    (uint64_t)d->ta,      (uint64_t)d->tb,   d->epi,
                    (uint64_t)d->aux_ld,  a->rows,           a->cols,
                    (uint64_t)a->ld,      b->rows,           b->cols,
                    (uint64_t)b->ld,      dd->rows,          dd->cols,
                    (uint64_t)dd->ld};
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        for (int byte = 0; byte < 8; byte++)
            h = (h ^ ((v[i] >> (8 * byte)) & 0xff)) * 1099511628211ull;
    return h;
}

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t op,
                                              cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                                              cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t dd,
                                              cublasLtMatmulPreference_t pr, int requested,
                                              cublasLtMatmulHeuristicResult_t res[], int *found) {
    if (h != (cublasLtHandle_t)(void *)&the_handle) reject("%s: unknown handle (%ld)", "heur", 0);
    uint64_t m, n, k;
    shape(D_(op), L_(a), L_(b), L_(c), L_(dd), &m, &n, &k);
    pref *p = P_(pr);
    if (requested < 1) reject("%s: %ld algorithms requested", "heuristic", requested);
    mt_standin.heuristics++;
    *found = 0;
    if (mt_standin_no_algo) return CUBLAS_STATUS_SUCCESS;
    memset(&res[0], 0, sizeof res[0]);
    res[0].algo.data[0] = MAGIC_ALGO;
    for (int i = 0; i < 4; i++) res[0].algo.data[1 + i] = p->align[i];
    res[0].algo.data[5] = p->workspace;
    res[0].algo.data[6] = problem(D_(op), L_(a), L_(b), L_(dd));
    res[0].algo.data[7] = align_of(D_(op)->bias) | align_of(D_(op)->aux) << 16;
    res[0].state = CUBLAS_STATUS_SUCCESS;
    *found = 1;
    return CUBLAS_STATUS_SUCCESS;
}

static double gelu(double v) {
    return 0.5 * v * (1.0 + tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
}

static double gelu_grad(double v) {
    double u = 0.7978845608028654 * (v + 0.044715 * v * v * v), t = tanh(u);
    return 0.5 * (1.0 + t) +
           0.5 * v * (1.0 - t * t) * 0.7978845608028654 * (1.0 + 3.0 * 0.044715 * v * v);
}

static void aligned(const void *ptr, uint64_t align, const char *which) {
    if ((uintptr_t)ptr % align)
        reject("%s: pointer less aligned than the preference's %ld", which, (long)align);
}

/* element (i, j) of op(X), X column-major with lead ld, fp32 or (type
 * CUDA_R_16BF) bf16 bits read as their value */
static double at(const void *x, cudaDataType type, int64_t ld, int32_t t, uint64_t i, uint64_t j,
                 int bf16) {
    uint64_t o = t == CUBLAS_OP_N ? i + j * (uint64_t)ld : j + i * (uint64_t)ld;
    float v = type == CUDA_R_16BF ? mt_bf16_value(((const uint16_t *)x)[o]) : ((const float *)x)[o];
    return bf16 ? mt_bf16_round(v) : v;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t op, const void *alpha,
                              const void *A, cublasLtMatrixLayout_t Al, const void *B,
                              cublasLtMatrixLayout_t Bl, const void *beta, const void *C,
                              cublasLtMatrixLayout_t Cl, void *D, cublasLtMatrixLayout_t Dl,
                              const cublasLtMatmulAlgo_t *algo, void *ws, size_t ws_bytes,
                              cudaStream_t stream) {
    desc *d = D_(op);
    const layout *a = L_(Al), *b = L_(Bl), *dl = L_(Dl);
    uint64_t m, n, k;
    shape(d, a, b, L_(Cl), dl, &m, &n, &k);
    if (h != (cublasLtHandle_t)(void *)&the_handle || !algo || algo->data[0] != MAGIC_ALGO)
        reject("%s: unknown handle or an algorithm not from the heuristic (%ld)", "matmul", 0);
    if (stream != 0) reject("%s: stream %ld (the backend uses the default)", "matmul", 1);
    if (ws_bytes > algo->data[5] || (ws_bytes && !ws))
        reject("%s: workspace of %ld bytes not the preference's", "matmul", (long)ws_bytes);
    if (algo->data[6] != problem(d, a, b, dl))
        reject("%s: an algorithm found for another problem (m %ld ...)", "matmul", (long)m);
    const void *ptr[4] = {A, B, C, D};
    for (int i = 0; i < 4; i++) aligned(ptr[i], algo->data[1 + i], "matmul A/B/C/D");
    if (d->bias) aligned(d->bias, algo->data[7] & 0xffff, "matmul bias (heuristic's)");
    if (d->aux) aligned(d->aux, algo->data[7] >> 16, "matmul aux (heuristic's)");
    float al, be;
    memcpy(&al, alpha, sizeof al);
    memcpy(&be, beta, sizeof be);
    int bf16 = d->compute == CUBLAS_COMPUTE_32F_FAST_16BF;
    const float *fc = C;
    int64_t ld = dl->ld;
    uint64_t mn = m * n;
    double *out = malloc((mn ? mn : 1) * sizeof *out);
    for (uint64_t j = 0; j < n; j++)
        for (uint64_t i = 0; i < m; i++) {
            double s = 0;
            for (uint64_t p = 0; p < k; p++)
                s += at(A, a->type, a->ld, d->ta, i, p, bf16) *
                     at(B, b->type, b->ld, d->tb, p, j, bf16);
            s *= al;
            if (be != 0.0f) s += (double)be * fc[i + j * (uint64_t)ld];
            out[i + j * m] = s;
        }
    uint32_t e = d->epi;
    float *bias = (float *)d->bias; /* (written by the gradient epilogues) */
    if (e == CUBLASLT_EPILOGUE_BGRADA || e == CUBLASLT_EPILOGUE_BGRADB) {
        int isa = e == CUBLASLT_EPILOGUE_BGRADA;
        for (uint64_t r = 0; r < (isa ? m : n); r++) {
            double s = 0; /* over k: op(A)'s rows, op(B)'s columns */
            for (uint64_t p = 0; p < k; p++)
                s += isa ? at(A, a->type, a->ld, d->ta, r, p, 0)
                         : at(B, b->type, b->ld, d->tb, p, r, 0);
            bias[r] = (float)s;
        }
        mt_standin.epilogue[3]++;
    }
    for (uint64_t j = 0; j < n; j++)
        for (uint64_t i = 0; i < m; i++) {
            double v = out[i + j * m];
            if (e == CUBLASLT_EPILOGUE_BIAS) v += bias[i];
            if (e == CUBLASLT_EPILOGUE_GELU_AUX_BIAS) {
                v += bias[i];
                d->aux[i + j * (uint64_t)d->aux_ld] = (float)v;
                v = gelu((float)v); /* (of the stored pre-activation) */
            }
            if (e == CUBLASLT_EPILOGUE_DGELU || e == CUBLASLT_EPILOGUE_DGELU_BGRAD)
                v *= gelu_grad(d->aux[i + j * (uint64_t)d->aux_ld]);
            out[i + j * m] = v;
        }
    if (e == CUBLASLT_EPILOGUE_DGELU_BGRAD)
        for (uint64_t i = 0; i < m; i++) {
            double s = 0;
            for (uint64_t j = 0; j < n; j++) s += (float)out[i + j * m];
            bias[i] = (float)s;
        }
    mt_standin.epilogue[0] += e == CUBLASLT_EPILOGUE_BIAS;
    mt_standin.epilogue[1] += e == CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
    mt_standin.epilogue[2] += e == CUBLASLT_EPILOGUE_DGELU || e == CUBLASLT_EPILOGUE_DGELU_BGRAD;
    float *fd = D;
    for (uint64_t j = 0; j < n; j++)
        for (uint64_t i = 0; i < m; i++) fd[i + j * (uint64_t)ld] = (float)out[i + j * m];
    free(out);
    mt_standin.matmuls++;
    return CUBLAS_STATUS_SUCCESS;
}

/* ---- the CUDA backend's pieces matmul_lt.c uses, on the CPU backend ---- */

static int bf16_mode;

void mt_cuda_set_precision(int bf16) {
    bf16_mode = bf16 != 0;
    mt_backend_cpu()->set_precision(bf16_mode);
}

int mt_cuda_precision_bf16(void) {
    return bf16_mode;
}

void mt_cuda_matmul(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                    int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    mt_standin.fallbacks++;
    mt_backend_cpu()->matmul(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void mt_cuda_bias_add(float *y, const float *b, int rows, int cols) {
    mt_standin.fallbacks++;
    mt_backend_cpu()->bias_add(y, b, rows, cols);
}

void mt_cuda_bias_grad(float *db, const float *dy, int rows, int cols, float beta) {
    mt_standin.fallbacks++;
    mt_backend_cpu()->bias_grad(db, dy, rows, cols, beta);
}

void mt_cuda_gelu_forward(float *y, const float *x, size_t n) {
    mt_standin.fallbacks++;
    mt_backend_cpu()->gelu_forward(y, x, n);
}

void mt_cuda_gelu_backward(float *dx, const float *dy, const float *x, size_t n) {
    mt_standin.fallbacks++;
    mt_backend_cpu()->gelu_backward(dx, dy, x, n);
}

/* (not a fallback: the bias gradients' accumulation) */
void mt_cuda_gelu_bias_backward(float *dx, float *db, const float *dy, const float *h, int N,
                                int C) {
    mt_standin.fallbacks++;
    mt_backend_cpu()->gelu_bias_backward(dx, db, dy, h, N, C);
}

/* (matmul_bf16's fallback widening its operands) */
void mt_cuda_from_bf16(float *dst, const uint16_t *src, size_t n) {
    mt_standin.widened += n > 0;
    mt_backend_cpu()->from_bf16(dst, src, n);
}

void mt_cuda_accumulate(float *dst, const float *src, size_t n) {
    mt_backend_cpu()->accumulate(dst, src, n);
}

void mt_cuda_check(int err, const char *what, const char *file, int line) {
    if (err == 0) return;
    fprintf(stderr, "mpitrain: error: CUDA call %s failed: error %d at %s:%d\n", what, err, file,
            line);
    abort();
}

void mt_cublas_check(int status, const char *what, const char *file, int line) {
    if (status == CUBLAS_STATUS_SUCCESS) return;
    fprintf(stderr, "mpitrain: error: cuBLAS call %s failed: status %d at %s:%d\n", what, status,
            file, line);
    abort();
}
