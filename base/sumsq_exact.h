/*
 * sumsq_exact.h - the sum of squares of floats, exactly: in integers, so
 * the result does not depend on the order of the additions, on how the
 * elements are split over ranks or threads, or on the number of either.
 *
 * A finite float x is m * 2^(e - 150) with an integer mantissa m < 2^24
 * and a biased exponent e (1 .. 254; a subnormal counts as e = 1 with no
 * implicit bit), so x^2 = m^2 * 2^(2 e - 300) with m^2 < 2^48: an integer
 * shifted left by 2 e bits of a fixed-point number whose lowest bit is
 * 2^-300. The accumulator holds that number in 32-bit digits (kept in
 * 64-bit limbs so that sums of accumulators need no carries until
 * normalised), which covers any count of elements a process can hold.
 * Infinities and NaNs are counted apart. parallel.deterministic's global
 * gradient norm uses it (parallel/gradsync.h).
 */
#ifndef MT_SUMSQ_EXACT_H
#define MT_SUMSQ_EXACT_H

#include <stddef.h>
#include <stdint.h>

#define MT_SUMSQ_LIMBS 22 /* 32-bit digits: 2^-300 .. 2^404, squares reach 2^256 */

typedef struct {
    uint64_t limb[MT_SUMSQ_LIMBS]; /* digit k weighs 2^(32 k - 300) */
    uint64_t inf, nan;             /* elements that were infinite, NaN */
} mt_sumsq;

#define MT_SUMSQ_WORDS ((int)(sizeof(mt_sumsq) / sizeof(uint64_t))) /* for a sum over ranks */

void mt_sumsq_zero(mt_sumsq *s);
/* Adds the squares of x[0 .. n) (host memory). */
void mt_sumsq_add(mt_sumsq *s, const float *x, size_t n);
/* Carries every digit into the next, so each is < 2^32: the canonical
 * form (a sum of accumulators, word by word, is then exact). */
void mt_sumsq_normalise(mt_sumsq *s);
/* The value as a double (NaN if any element was NaN, infinity if any was
 * infinite): a function of the exact sum only. */
double mt_sumsq_value(const mt_sumsq *s);

#endif
