/*
 * test_util.h - what the C test programs share: assertion helpers (each check
 * prints what it compared and by how much, and the program exits non-zero if
 * any check failed), buffers (zeroed, NaN-poisoned, copied), random fills,
 * differences (normalized, largest, in bits), a monotonic clock, the GELU's
 * double-precision reference, and gradients: central differences and the
 * comparison of analytic with numeric ones. Everything here is static
 * inline: each test program is one file that includes it.
 */
#ifndef MT_TEST_UTIL_H
#define MT_TEST_UTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/rng.h"

static int mt_test_failures = 0;
static int mt_test_checks = 0;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        mt_test_checks++;                                                                          \
        if (!(cond)) {                                                                             \
            mt_test_failures++;                                                                    \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                            \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
        }                                                                                          \
    } while (0)

static inline int mt_test_finish(const char *name) {
    printf("%s: %d checks, %d passed, %d failed\n", name, mt_test_checks,
           mt_test_checks - mt_test_failures, mt_test_failures);
    return mt_test_failures ? 1 : 0;
}

/* x[i] uniform in [lo, hi): mt_rng_uniform(7, stream, i), so every test
 * draws the same inputs on every run */
static inline void mt_test_fill(float *x, size_t n, uint64_t stream, float lo, float hi) {
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * mt_rng_uniform(7, stream, i);
}

/* a malloc'ed copy of x[n] (aborts when out of memory) */
static inline float *mt_test_copy(const float *x, size_t n) {
    float *y = malloc((n ? n : 1) * sizeof *y);
    if (!y) abort();
    memcpy(y, x, n * sizeof *y);
    return y;
}

/* zeroed buffers of n floats, doubles, int32s (calloc; at least one
 * element, so n = 0 is not NULL; aborts when out of memory) */
static inline float *mt_test_falloc(size_t n) {
    float *p = calloc(n ? n : 1, sizeof(float));
    if (!p) abort();
    return p;
}

static inline double *mt_test_dalloc(size_t n) {
    double *p = calloc(n ? n : 1, sizeof(double));
    if (!p) abort();
    return p;
}

static inline int32_t *mt_test_ialloc(size_t n) {
    int32_t *p = calloc(n ? n : 1, sizeof(int32_t));
    if (!p) abort();
    return p;
}

/* x(n) all NaN, so an element an op does not write stays NaN; returns x */
static inline float *mt_test_poison(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = NAN;
    return x;
}

/* seconds on the monotonic clock (for timings) */
static inline double mt_test_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* x is (rows, ld): its columns cols..ld-1 become NaN, so an op that reads
 * past cols poisons its result; returns x */
static inline float *mt_test_nan_pad(float *x, int rows, int cols, int ld) {
    for (int r = 0; r < rows; r++)
        for (int c = cols; c < ld; c++) x[(size_t)r * ld + c] = NAN;
    return x;
}

/* ||a - b|| / ||b|| in double (||a - b|| where b is all zero; a NaN anywhere
 * gives NaN) */
static inline double mt_test_nerr(const float *a, const float *b, size_t n) {
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        double e = (double)a[i] - (double)b[i];
        d += e * e;
        r += (double)b[i] * (double)b[i];
    }
    return r > 0 ? sqrt(d / r) : sqrt(d);
}

/* the same against a double reference b */
static inline double mt_test_nerr_d(const float *a, const double *b, size_t n) {
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        r += b[i] * b[i];
    }
    return r > 0 ? sqrt(d / r) : sqrt(d);
}

/* max |a[i] - b[i]| in double (a NaN difference is passed over) */
static inline double mt_test_max_abs_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

/* elements of a(n) and b(n) whose bits differ */
static inline size_t mt_test_bits_differ(const float *a, const float *b, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += memcmp(a + i, b + i, sizeof(float)) != 0;
    return k;
}

/* sum of r[i] * y[i] in double: a loss L = r . y whose gradient dL/dy is r */
static inline double mt_test_dot(const float *r, const float *y, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)r[i] * y[i];
    return s;
}

/* num[i] = dL/dv[i] by central differences of step h, L = loss(), which
 * reads v (through the test's globals); v is restored after each element */
static inline void mt_test_numeric(float *v, size_t n, double *num, double (*loss)(void), float h) {
    for (size_t i = 0; i < n; i++) {
        float keep = v[i];
        v[i] = keep + h;
        double lp = loss();
        v[i] = keep - h;
        double lm = loss();
        v[i] = keep;
        num[i] = (lp - lm) / (2.0 * h);
    }
}

/* Analytic gradient ana[n] against numeric num[n] (central differences):
 * the normalized error ||ana - num|| / ||num|| at most grad_tol, every
 * element within elem_tol * max|num| (+ 1e-5 absolute), and num not all zero
 * (or the check could not fail). Prints both errors. */
static inline void mt_test_grad_compare(const char *what, const double *ana, const double *num,
                                        size_t n, double grad_tol, double elem_tol) {
    double d2 = 0, n2 = 0, maxn = 0, worst = 0;
    for (size_t i = 0; i < n; i++) {
        d2 += (ana[i] - num[i]) * (ana[i] - num[i]);
        n2 += num[i] * num[i];
        if (fabs(num[i]) > maxn) maxn = fabs(num[i]);
    }
    for (size_t i = 0; i < n; i++) {
        double ex = fabs(ana[i] - num[i]) / (elem_tol * maxn + 1e-5);
        if (ex > worst) worst = ex;
    }
    double rel = n2 > 0 ? sqrt(d2 / n2) : sqrt(d2);
    printf("%-30s n=%-5zu normalized error %.2e (bound %.0e), worst element %.2f of its bound\n",
           what, n, rel, grad_tol, worst);
    CHECK(n2 > 0, "%s: numeric gradient is all zero (test cannot fail)", what);
    CHECK(rel <= grad_tol, "%s: normalized error %.3e > %.0e", what, rel, grad_tol);
    CHECK(worst <= 1.0, "%s: an element is off by %.2f times its bound", what, worst);
}

/* GELU (tanh form) in double at the points x(n), against g(n) = gelu(x)
 * and d(n) = gelu'(x) as an op computed them: *rel the largest relative
 * error of g where |gelu| > 1e-3, *abs_err its largest absolute error,
 * *dabs the derivative's largest absolute error (it is O(1) and crosses 0) */
static inline void mt_test_gelu_errors(const float *x, const float *g, const float *d, size_t n,
                                       double *rel, double *abs_err, double *dabs) {
    *rel = *abs_err = *dabs = 0;
    for (size_t i = 0; i < n; i++) {
        double v = x[i], k = sqrt(2.0 / M_PI), u = k * (v + 0.044715 * v * v * v);
        double t = tanh(u), ref = 0.5 * v * (1 + t);
        double dref = 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * k * (1 + 3 * 0.044715 * v * v);
        double e = fabs(g[i] - ref);
        *abs_err = fmax(*abs_err, e);
        if (fabs(ref) > 1e-3) *rel = fmax(*rel, e / fabs(ref));
        *dabs = fmax(*dabs, fabs(d[i] - dref));
    }
}

/* the same for a float analytic gradient (exact in double) */
static inline void mt_test_grad_compare_f(const char *what, const float *ana_f, const double *num,
                                          size_t n, double grad_tol, double elem_tol) {
    double *ana = mt_test_dalloc(n);
    for (size_t i = 0; i < n; i++) ana[i] = ana_f[i];
    mt_test_grad_compare(what, ana, num, n, grad_tol, elem_tol);
    free(ana);
}

#endif
