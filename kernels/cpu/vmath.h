/*
 * vmath.h - what the CPU kernel files share: the element count below which
 * an OpenMP loop stays on one thread, an int min, and the branch-free exps
 * and GELU that their loops vectorize (glibc's expf and tanhf are scalar
 * calls). Internal to kernels/cpu.
 *
 * Bits: everything here is static inline, so it is compiled with the flags
 * of the file that includes it (CMakeLists.txt): in fused_cpu.c, xent_cpu.c
 * and flash_attention.c (-ffp-contract=fast) the AVX2 copy of an MT_VEC loop
 * contracts a * b + c into FMAs; in backend_cpu.c (ISO C: nothing
 * contracted) the same function gives the baseline's bits. So the unfused
 * and the fused GELU share mt_vgelu and still differ by the FMAs alone, as
 * they always did; and a call moved to a file with other flags may change
 * its bits (scripts/compare_numbers.sh tells).
 *
 * Three exps, one method: x = k ln2 + r with k the nearest integer (adding
 * and taking away 1.5 * 2^23 rounds it), ln2 in a high part whose product
 * with k is exact and the rest, so r is exact and |r| <= ln2/2; exp(r) by
 * mt_vexp_poly; 2^k built in the exponent field. Relative error about 2e-7.
 * They are kept apart because their steps differ, and so do their bits:
 *   mt_vexp_gelu   clamps x to [-87, 87] (2^k stays a normal float), k to
 *                  int by a conversion;
 *   mt_vexp_xent   for x <= 0: 0 below -87, no upper clamp, k read from the
 *                  sum's low mantissa bits (no float-to-int conversion, so a
 *                  NaN is no undefined behaviour). On [-87, 0] it gives
 *                  mt_vexp_gelu's bits (every float there, both flag sets),
 *                  below -87 0 instead of exp(-87);
 *   mt_vexp_flash  0 below -87, clamps at 88, ln2 split with a 9-bit high
 *                  part: its r, and so its bits, differ from mt_vexp_xent's
 *                  on 136,432 of the floats in [-87, 0] (50,446 with FMA).
 * Merging any two would change the bits of a trained model.
 */
#ifndef MT_VMATH_H
#define MT_VMATH_H

#include <stdint.h>
#include <string.h>

#define MT_OMP_MIN (1 << 15) /* elements below which threads cost more than they save */

static inline int mt_imin(int a, int b) {
    return a < b ? a : b;
}

#define MT_GELU_K 0.7978845608028654f /* sqrt(2/pi) */
#define MT_GELU_C 0.044715f

/* exp(r) for |r| <= ln2/2: its Taylor polynomial to r^7 (truncation under
 * 6e-9 relative), by Horner's rule from r^7 down */
static inline float mt_vexp_poly(float r) {
    float p = 1.0f / 720.0f + r * (1.0f / 5040.0f);
    p = 1.0f / 120.0f + r * p;
    p = 1.0f / 24.0f + r * p;
    p = 1.0f / 6.0f + r * p;
    p = 0.5f + r * p;
    p = 1.0f + r * p;
    return 1.0f + r * p;
}

/* exp(x), x clamped to [-87, 87]; the GELUs' (unfused and fused). (The
 * clamps if-convert only with -fno-trapping-math: CMakeLists.txt.) */
static inline float mt_vexp_gelu(float x) {
    const float shift = 12582912.0f;             /* 1.5 * 2^23 */
    const float log2e = 1.44269504f;             /* 1 / ln2 */
    const float ln2_hi = 0.693145751953125f;     /* 12 significant bits */
    const float ln2_lo = 1.4286068203094173e-6f; /* ln2 - ln2_hi */
    /* Both tests on the x given: clamping in two steps, GCC 12 threads the
     * second test through the first and splits the GELU around the exp into
     * three paths (x low, high, in range), whose blend costs a second
     * division per vector. */
    int low = (x < -87.0f), high = (x > 87.0f);
    x = low ? -87.0f : x;
    x = high ? 87.0f : x;
    float k = (x * log2e + shift) - shift;
    float r = x - k * ln2_hi;
    r = r - k * ln2_lo;
    float p = mt_vexp_poly(r);
    int32_t e = ((int32_t)k + 127) << 23;
    float two_k;
    memcpy(&two_k, &e, sizeof two_k);
    return p * two_k;
}

/* exp(x) for x = z - max <= 0, the cross-entropy's: 0 below -87 (2^k would
 * leave the normal range; such a probability is under 1e-37 of the row's
 * largest); NaN stays NaN. */
static inline float mt_vexp_xent(float x) {
    float xc = x < -87.0f ? -87.0f : x;
    float t = xc * 1.44269504f + 12582912.0f;
    float k = t - 12582912.0f;
    float r = xc - k * 0.693145751953125f; /* ln2, high bits: k * this is exact */
    r = r - k * 1.4286068203094173e-6f;    /* ln2, the rest */
    float p = mt_vexp_poly(r);
    uint32_t tb;
    memcpy(&tb, &t, sizeof tb);
    uint32_t bits = (tb - 0x4B400000u + 127u) << 23; /* (k + 127) << 23, unsigned: no UB on NaN */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    float e = p * scale;
    return x < -87.0f ? 0.0f : e;
}

/* exp(x), flash attention's: every argument there is a score minus its
 * row's max or lse, so the 0 below -87 only drops terms far below the row's
 * largest. A NaN stays NaN. */
static inline float mt_vexp_flash(float x) {
    float xc = x < -87.0f ? -87.0f : x;
    xc = xc > 88.0f ? 88.0f : xc;
    float k = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = xc - k * 0.693359375f; /* ln2 high part: 9 significant bits */
    r = r + k * 2.12194440e-4f;      /* ln2 - 0.693359375 = -2.12194440e-4 */
    float p = mt_vexp_poly(r);
    int32_t e = ((int32_t)k + 127) << 23;
    float two_k;
    memcpy(&two_k, &e, sizeof two_k);
    return x < -87.0f ? 0.0f : p * two_k;
}

/* GELU, tanh form: 0.5 v (1 + tanh(u)), u = K (v + C v^3), computed as
 * v * s with s = 1 / (1 + exp(-2u)) = (1 + tanh(u)) / 2, which has no
 * cancellation for negative v */
static inline float mt_vgelu(float v) {
    float u = MT_GELU_K * (v + MT_GELU_C * v * v * v);
    return v / (1.0f + mt_vexp_gelu(-2.0f * u));
}

/* d gelu / dv = s + 2 v s (1 - s) du/dv (since 1 - tanh^2 = 4 s (1 - s)),
 * with 1 - s = e s (e = exp(-2u)), without cancellation */
static inline float mt_vgelu_grad(float v) {
    float u = MT_GELU_K * (v + MT_GELU_C * v * v * v);
    float e = mt_vexp_gelu(-2.0f * u);
    float sg = 1.0f / (1.0f + e);
    float du = MT_GELU_K * (1.0f + 3.0f * MT_GELU_C * v * v);
    return sg + 2.0f * v * sg * (e * sg) * du;
}

#endif
