/* sumsq_exact.c - an exact sum of squares of floats (see sumsq_exact.h). */
#include "sumsq_exact.h"

#include <math.h>
#include <string.h>

_Static_assert(sizeof(mt_sumsq) % sizeof(uint64_t) == 0, "mt_sumsq is summed as uint64 words");

/* Squares of one exponent are summed in a uint64 (each < 2^48) for this
 * many elements, then shifted into the digits. */
#define FLUSH_EVERY 65536

void mt_sumsq_zero(mt_sumsq *s) {
    memset(s, 0, sizeof *s);
}

/* Adds v * 2^shift (in units of the lowest digit) to the digits. */
static void add_shifted(mt_sumsq *s, uint64_t v, unsigned shift) {
    unsigned k = shift / 32;
    unsigned __int128 w = (unsigned __int128)v << (shift % 32);
    for (; w; w >>= 32, k++) s->limb[k] += (uint64_t)(w & 0xffffffffu);
}

static void flush(mt_sumsq *s, uint64_t *by_exp) {
    for (unsigned e = 1; e < 255; e++)
        if (by_exp[e]) add_shifted(s, by_exp[e], 2 * e), by_exp[e] = 0;
    mt_sumsq_normalise(s);
}

void mt_sumsq_add(mt_sumsq *s, const float *x, size_t n) {
    uint64_t by_exp[256] = {0};
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], sizeof u);
        uint32_t e = (u >> 23) & 0xffu, m = u & 0x7fffffu;
        if (e == 255) {
            if (m)
                s->nan++;
            else
                s->inf++;
            continue;
        }
        if (e)
            m |= 0x800000u;
        else
            e = 1;
        by_exp[e] += (uint64_t)m * m;
        if ((i + 1) % FLUSH_EVERY == 0) flush(s, by_exp);
    }
    flush(s, by_exp);
}

void mt_sumsq_normalise(mt_sumsq *s) {
    uint64_t carry = 0;
    for (int k = 0; k < MT_SUMSQ_LIMBS; k++) {
        uint64_t v = s->limb[k] + carry;
        carry = v >> 32;
        s->limb[k] = k == MT_SUMSQ_LIMBS - 1 ? v : (v & 0xffffffffu);
    }
}

double mt_sumsq_value(const mt_sumsq *s) {
    if (s->nan) return NAN;
    if (s->inf) return INFINITY;
    mt_sumsq c = *s;
    mt_sumsq_normalise(&c);
    int top = MT_SUMSQ_LIMBS - 1;
    while (top > 0 && !c.limb[top]) top--;
    /* the top three digits (at least 65 significant bits) as one double,
     * in a fixed sequence of operations */
    double v = 0.0;
    for (int k = top; k >= 0 && k > top - 3; k--) v = v * 4294967296.0 + (double)c.limb[k];
    int low = top >= 2 ? top - 2 : 0;
    return ldexp(v, 32 * low - 300);
}
