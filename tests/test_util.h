/*
 * test_util.h - what the C test programs share: assertion helpers (each check
 * prints what it compared and by how much, and the program exits non-zero if
 * any check failed), random fills, normalized errors, and the comparison of
 * analytic with numeric gradients.
 */
#ifndef MT_TEST_UTIL_H
#define MT_TEST_UTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

#endif
