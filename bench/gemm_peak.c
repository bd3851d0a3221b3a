/*
 * gemm_peak.c - the card's matmul rate, measured with one large cuBLAS GEMM
 * per precision: the yardstick for mpitrain's MFU (model FLOP utilisation).
 *
 * C (M x N) = A (M x K) B (K x N), column-major, no transposes, default
 * M = N = K = 8192; inputs random non-zero values in [-1, 1] made on the host
 * and copied (zeros would run faster than real data on some cards). Each
 * case: warm-up calls (at least --warmup, and 0.25 s), then --iters timed
 * calls, each between two CUDA events; the median time gives
 * TFLOP/s = 2 M N K / time. Cases:
 *   bf16             A, B, C bf16 (CUDA_R_16BF), CUBLAS_COMPUTE_32F: what
 *                    PyTorch's bf16 autocast runs, the card's bf16 rate
 *   bf16_f32out      A, B bf16, C fp32, CUBLAS_COMPUTE_32F
 *   fp32in_fast16bf  A, B, C fp32, CUBLAS_COMPUTE_32F_FAST_16BF: cuBLAS
 *                    rounds the inputs to bf16 inside (mpitrain's bf16 mode)
 *   fp32in_tf32      A, B, C fp32, CUBLAS_COMPUTE_32F_FAST_TF32
 *   fp32             cublasSgemm with CUBLAS_PEDANTIC_MATH: true fp32, no
 *                    tensor-core rounding (mpitrain's fp32 mode)
 * After the timed calls a few entries of C are checked against a host dot
 * product of the same (rounded) inputs, so a failed or misconfigured call
 * cannot pass as fast. Prints one line per case, then one JSON line.
 *
 * usage: gemm_peak [--m M] [--n N] [--k K] [--iters N] [--warmup N]
 * Exit status: 0 done, 1 a CUDA/cuBLAS call failed or a result was wrong,
 * 2 bad arguments, 77 no usable CUDA device.
 */
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EXIT_SKIP 77

static void cuda_check(cudaError_t err, const char *what, int line) {
    if (err == cudaSuccess) return;
    fprintf(stderr, "gemm_peak: error: %s failed: %s (%s, code %d) at line %d\n", what,
            cudaGetErrorString(err), cudaGetErrorName(err), (int)err, line);
    exit(1);
}

static void blas_check(cublasStatus_t st, const char *what, int line) {
    if (st == CUBLAS_STATUS_SUCCESS) return;
    fprintf(stderr, "gemm_peak: error: %s failed: %s (code %d) at line %d\n", what,
            cublasGetStatusString(st), (int)st, line);
    exit(1);
}

#define CK(call) cuda_check((call), #call, __LINE__)
#define BK(call) blas_check((call), #call, __LINE__)

/* ---- host data ---- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng_next(void) { /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

/* Uniform in [-1, -1/64] U [1/64, 1]: never zero, not even after bf16 rounding. */
static float rand_nonzero(void) {
    float u = (float)(rng_next() >> 40) / 16777216.0f; /* [0, 1) */
    float mag = 1.0f / 64.0f + u * (1.0f - 1.0f / 64.0f);
    return (rng_next() >> 63) ? -mag : mag;
}

static uint16_t f32_to_bf16(float f) { /* round to nearest even; inputs are finite */
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static void *xmalloc(size_t bytes) {
    void *p = malloc(bytes);
    if (!p) {
        fprintf(stderr, "gemm_peak: error: out of host memory (%zu bytes)\n", bytes);
        exit(1);
    }
    return p;
}

/* ---- options ---- */

typedef struct {
    int m, n, k, iters, warmup;
} options;

static void usage(FILE *f) {
    fprintf(f, "usage: gemm_peak [--m M] [--n N] [--k K] [--iters N] [--warmup N]\n"
               "  one large cuBLAS GEMM per precision (bf16, fp32 inputs with bf16 or tf32\n"
               "  tensor cores, pedantic fp32); median of --iters timed calls (default 50)\n"
               "  after --warmup calls (default 10); M = N = K = 8192 by default.\n"
               "  Ends with one JSON line. Exit 77 when no CUDA device can be used.\n");
}

static int parse_int(const char *opt, const char *s, int lo, int *out) {
    char *end = NULL;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || !*s || *end || errno || v < lo || v > INT_MAX) {
        fprintf(stderr, "gemm_peak: error: %s needs an integer >= %d, got '%s'\n", opt, lo,
                s ? s : "");
        return 1;
    }
    *out = (int)v;
    return 0;
}

static int parse_options(int argc, char **argv, options *o) {
    o->m = o->n = o->k = 8192;
    o->iters = 50;
    o->warmup = 10;
    for (int i = 1; i < argc; i += 2) { /* every option takes a value */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int *dst = NULL, lo = 1;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(a, "--m")) {
            dst = &o->m;
        } else if (!strcmp(a, "--n")) {
            dst = &o->n;
        } else if (!strcmp(a, "--k")) {
            dst = &o->k;
        } else if (!strcmp(a, "--iters")) {
            dst = &o->iters;
        } else if (!strcmp(a, "--warmup")) {
            dst = &o->warmup;
            lo = 0;
        } else {
            fprintf(stderr, "gemm_peak: error: unknown argument '%s'\n", a);
            usage(stderr);
            return 1;
        }
        if (parse_int(a, v, lo, dst)) return 1;
    }
    return 0;
}

/* ---- one case ---- */

typedef enum { CASE_EX, CASE_SGEMM } case_api;

typedef struct {
    const char *key;  /* JSON key stem */
    const char *what; /* human-readable description */
    case_api api;
    cudaDataType_t ab_type, c_type;
    cublasComputeType_t compute;
    double tol_rel; /* allowed |c - ref| / |ref| beyond the rounding of the sum */
} gemm_case;

typedef struct {
    const options *o;
    cublasHandle_t h;
    cudaEvent_t ev0, ev1;
    const void *a16, *b16, *a32, *b32; /* device inputs */
    void *c;                           /* device output, fp32-sized */
    const uint16_t *ha16, *hb16;       /* host copies for the check */
    const float *ha32, *hb32;
} bench;

static double wall_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_float(const void *x, const void *y) {
    float a = *(const float *)x, b = *(const float *)y;
    return (a > b) - (a < b);
}

static void run_once(const bench *b, const gemm_case *gc) {
    const options *o = b->o;
    const float one = 1.0f, zero = 0.0f;
    if (gc->api == CASE_SGEMM) {
        BK(cublasSgemm(b->h, CUBLAS_OP_N, CUBLAS_OP_N, o->m, o->n, o->k, &one, b->a32, o->m, b->b32,
                       o->k, &zero, b->c, o->m));
        return;
    }
    int bf = gc->ab_type == CUDA_R_16BF;
    BK(cublasGemmEx(b->h, CUBLAS_OP_N, CUBLAS_OP_N, o->m, o->n, o->k, &one, bf ? b->a16 : b->a32,
                    gc->ab_type, o->m, bf ? b->b16 : b->b32, gc->ab_type, o->k, &zero, b->c,
                    gc->c_type, o->m, gc->compute, CUBLAS_GEMM_DEFAULT));
}

/* Checks a few entries of C against a host dot product in double of the
 * same inputs. Returns the number of bad entries (printed). */
static int check_result(const bench *b, const gemm_case *gc) {
    const options *o = b->o;
    const int samples = 16;
    int bad = 0, bf_in = gc->ab_type == CUDA_R_16BF && gc->api == CASE_EX;
    size_t esz = gc->c_type == CUDA_R_16BF ? 2 : 4;
    for (int s = 0; s < samples; s++) {
        size_t i = s == 0 ? 0 : s == 1 ? (size_t)o->m - 1 : rng_next() % (size_t)o->m;
        size_t j = s == 0 ? 0 : s == 1 ? (size_t)o->n - 1 : rng_next() % (size_t)o->n;
        unsigned char raw[4] = {0};
        CK(cudaMemcpy(raw, (const char *)b->c + (j * (size_t)o->m + i) * esz, esz,
                      cudaMemcpyDeviceToHost));
        float got;
        if (esz == 2) {
            uint16_t h;
            memcpy(&h, raw, sizeof h);
            got = bf16_to_f32(h);
        } else {
            memcpy(&got, raw, sizeof got);
        }
        double ref = 0.0, sq = 0.0;
        for (size_t k = 0; k < (size_t)o->k; k++) {
            size_t ia = k * (size_t)o->m + i, ib = j * (size_t)o->k + k;
            double x = bf_in ? bf16_to_f32(b->ha16[ia]) : b->ha32[ia];
            double y = bf_in ? bf16_to_f32(b->hb16[ib]) : b->hb32[ib];
            ref += x * y;
            sq += x * y * x * y;
        }
        /* the products' rounding (bf16 inputs of fast_16bf, tf32) is a random
         * walk of size ~ 2^-8 sqrt(sum (xy)^2); the output's rounding ~ 2^-8 |ref|;
         * garbage is off by ~ sqrt(sum (xy)^2) */
        double tol = 0.05 * sqrt(sq) + gc->tol_rel * fabs(ref);
        if (!(fabs((double)got - ref) <= tol)) {
            if (bad < 3)
                fprintf(stderr,
                        "gemm_peak: %s: C[%zu,%zu] = %.6g, host reference %.6g (tolerance %.3g)\n",
                        gc->key, i, j, got, ref, tol);
            bad++;
        }
    }
    return bad;
}

/* Median TFLOP/s of the case, or a negative value when its result is wrong. */
static double time_case(const bench *b, const gemm_case *gc, double *median_ms) {
    const options *o = b->o;
    BK(cublasSetMathMode(b->h, gc->api == CASE_SGEMM ? CUBLAS_PEDANTIC_MATH : CUBLAS_DEFAULT_MATH));
    CK(cudaMemset(b->c, 0, (size_t)o->m * (size_t)o->n * sizeof(float)));
    /* warm-up: at least --warmup calls and, when there are any, 0.25 s of them,
     * so the clocks have ramped up and cuBLAS has picked its kernel */
    double t0 = wall_s();
    for (int i = 0; i < o->warmup; i++) run_once(b, gc);
    CK(cudaDeviceSynchronize());
    for (int extra = 0; o->warmup > 0 && extra < 1000 && wall_s() - t0 < 0.25; extra++) {
        run_once(b, gc);
        CK(cudaDeviceSynchronize());
    }
    float *ms = xmalloc((size_t)o->iters * sizeof *ms);
    for (int i = 0; i < o->iters; i++) {
        CK(cudaEventRecord(b->ev0, 0));
        run_once(b, gc);
        CK(cudaEventRecord(b->ev1, 0));
        CK(cudaEventSynchronize(b->ev1));
        CK(cudaEventElapsedTime(&ms[i], b->ev0, b->ev1));
    }
    CK(cudaGetLastError());
    qsort(ms, (size_t)o->iters, sizeof *ms, cmp_float);
    int n = o->iters;
    double med = n % 2 ? ms[n / 2] : 0.5 * ((double)ms[n / 2 - 1] + ms[n / 2]);
    double lo = ms[0], hi = ms[n - 1];
    free(ms);
    double flops = 2.0 * o->m * (double)o->n * o->k;
    double tflops = med > 0 ? flops / (med * 1e-3) / 1e12 : 0.0;
    int bad = check_result(b, gc);
    printf("%-16s %8.1f TFLOP/s  median %.3f ms (min %.3f, max %.3f) over %d calls | %s%s\n",
           gc->key, tflops, med, lo, hi, o->iters, gc->what, bad ? " | WRONG RESULT" : "");
    fflush(stdout);
    *median_ms = med;
    return bad ? -1.0 : tflops;
}

int main(int argc, char **argv) {
    options o;
    if (parse_options(argc, argv, &o)) return 2;

    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess || count == 0) {
        printf("gemm_peak: no usable CUDA device (%s)\n",
               err != cudaSuccess ? cudaGetErrorString(err) : "no CUDA device");
        return EXIT_SKIP;
    }
    int dev = 0;
    CK(cudaSetDevice(dev));
    struct cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, dev));
    int rt = 0, drv = 0;
    CK(cudaRuntimeGetVersion(&rt));
    CK(cudaDriverGetVersion(&drv));

    size_t mk = (size_t)o.m * o.k, kn = (size_t)o.k * o.n, mn = (size_t)o.m * o.n;
    size_t need = (mk + kn) * 6 + mn * 4;
    size_t free_b = 0, total_b = 0;
    CK(cudaMemGetInfo(&free_b, &total_b));
    if (need > free_b) {
        fprintf(stderr,
                "gemm_peak: error: %d x %d x %d needs %.2f GB of device memory, %.2f GB free\n",
                o.m, o.n, o.k, need / 1e9, free_b / 1e9);
        return 2;
    }

    cublasHandle_t h;
    BK(cublasCreate(&h));
    int blas_ver = 0;
    BK(cublasGetVersion(h, &blas_ver));
    printf("gemm_peak: %s (sm_%d%d, %d SMs, %.1f GB), CUDA runtime %d, driver %d, cuBLAS %d\n",
           prop.name, prop.major, prop.minor, prop.multiProcessorCount, prop.totalGlobalMem / 1e9,
           rt, drv, blas_ver);
    printf("gemm_peak: C = A B, M %d N %d K %d (column-major, no transposes), %d warm-up + %d "
           "timed calls per case, median\n",
           o.m, o.n, o.k, o.warmup, o.iters);
    fflush(stdout);

    /* host inputs: fp32 and their bf16 roundings */
    float *ha32 = xmalloc(mk * sizeof *ha32), *hb32 = xmalloc(kn * sizeof *hb32);
    uint16_t *ha16 = xmalloc(mk * sizeof *ha16), *hb16 = xmalloc(kn * sizeof *hb16);
    for (size_t i = 0; i < mk; i++) ha16[i] = f32_to_bf16(ha32[i] = rand_nonzero());
    for (size_t i = 0; i < kn; i++) hb16[i] = f32_to_bf16(hb32[i] = rand_nonzero());

    void *a32, *b32, *a16, *b16, *c;
    CK(cudaMalloc(&a32, mk * sizeof(float)));
    CK(cudaMalloc(&b32, kn * sizeof(float)));
    CK(cudaMalloc(&a16, mk * sizeof(uint16_t)));
    CK(cudaMalloc(&b16, kn * sizeof(uint16_t)));
    CK(cudaMalloc(&c, mn * sizeof(float)));
    CK(cudaMemcpy(a32, ha32, mk * sizeof(float), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(b32, hb32, kn * sizeof(float), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(a16, ha16, mk * sizeof(uint16_t), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(b16, hb16, kn * sizeof(uint16_t), cudaMemcpyHostToDevice));

    bench b = {&o, h, NULL, NULL, a16, b16, a32, b32, c, ha16, hb16, ha32, hb32};
    CK(cudaEventCreate(&b.ev0));
    CK(cudaEventCreate(&b.ev1));

    const double r_bf16 = 1.0 / 128, r_f32 = 1e-4;
    const gemm_case cases[] = {
        {"bf16", "A, B, C bf16, CUBLAS_COMPUTE_32F (cublasGemmEx)", CASE_EX, CUDA_R_16BF,
         CUDA_R_16BF, CUBLAS_COMPUTE_32F, r_bf16},
        {"bf16_f32out", "A, B bf16, C fp32, CUBLAS_COMPUTE_32F (cublasGemmEx)", CASE_EX,
         CUDA_R_16BF, CUDA_R_32F, CUBLAS_COMPUTE_32F, r_f32},
        {"fp32in_fast16bf", "A, B, C fp32, CUBLAS_COMPUTE_32F_FAST_16BF (cublasGemmEx)", CASE_EX,
         CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F_FAST_16BF, r_f32},
        {"fp32in_tf32", "A, B, C fp32, CUBLAS_COMPUTE_32F_FAST_TF32 (cublasGemmEx)", CASE_EX,
         CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F_FAST_TF32, r_f32},
        {"fp32", "cublasSgemm, CUBLAS_PEDANTIC_MATH (no tensor cores)", CASE_SGEMM, CUDA_R_32F,
         CUDA_R_32F, CUBLAS_COMPUTE_32F_PEDANTIC, r_f32},
    };
    enum { NCASES = sizeof cases / sizeof cases[0] };
    double tf[NCASES], ms[NCASES];
    int wrong = 0;
    for (int i = 0; i < NCASES; i++) {
        tf[i] = time_case(&b, &cases[i], &ms[i]);
        wrong += tf[i] < 0;
    }

    /* JSON: the GPU name has no quotes or backslashes in practice; escape anyway */
    char name[2 * sizeof prop.name];
    size_t w = 0;
    for (size_t i = 0; prop.name[i] && i < sizeof prop.name && w + 2 < sizeof name; i++) {
        char ch = prop.name[i];
        if (ch == '"' || ch == '\\') name[w++] = '\\';
        name[w++] = (ch >= 32 && ch < 127) ? ch : '?';
    }
    name[w] = '\0';
    printf("{\"gpu\":\"%s\",\"sm\":\"%d%d\",\"m\":%d,\"n\":%d,\"k\":%d,\"iters\":%d,"
           "\"cuda_runtime\":%d,\"cuda_driver\":%d,\"cublas\":%d",
           name, prop.major, prop.minor, o.m, o.n, o.k, o.iters, rt, drv, blas_ver);
    for (int i = 0; i < NCASES; i++) {
        if (tf[i] < 0)
            printf(",\"%s_tflops\":null", cases[i].key);
        else
            printf(",\"%s_tflops\":%.2f", cases[i].key, tf[i]);
        printf(",\"%s_ms\":%.4f", cases[i].key, ms[i]);
    }
    printf(",\"ok\":%s}\n", wrong ? "false" : "true");

    CK(cudaEventDestroy(b.ev0));
    CK(cudaEventDestroy(b.ev1));
    CK(cudaFree(a32));
    CK(cudaFree(b32));
    CK(cudaFree(a16));
    CK(cudaFree(b16));
    CK(cudaFree(c));
    BK(cublasDestroy(h));
    free(ha32), free(hb32), free(ha16), free(hb16);
    if (wrong) {
        fprintf(stderr, "gemm_peak: error: %d case(s) gave wrong results\n", wrong);
        return 1;
    }
    return 0;
}
