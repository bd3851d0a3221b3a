/*
 * bf16.h - rounding an fp32 value to the nearest bfloat16 (kept in an fp32),
 * the operand rounding of the backends' bf16 matmul mode (set_precision in
 * kernels/backend.h). One definition for the CPU backend and the tests (usable
 * in host and device code); it is the rounding cuBLAS's FAST_16BF mode applies
 * to the CUDA backend's operands.
 *
 * bfloat16 is the top 16 bits of an fp32 (1 sign, 8 exponent, 7 fraction
 * bits), so rounding clears the low 16 bits, round to nearest, ties to even:
 *   - |x| in range: the nearest bf16; a tie (low bits exactly 0x8000) goes to
 *     the even one (1 + 2^-8 -> 1, 1 + 3*2^-8 -> 1 + 2^-6); a carry out of
 *     the fraction moves to the next exponent (2 - 2^-9 -> 2).
 *   - overflow: values at or past the midpoint between the largest bf16
 *     (0x7f7f0000, about 3.39e38) and 2^128 round to Inf, as IEEE RNE does,
 *     so FLT_MAX -> Inf (and -FLT_MAX -> -Inf).
 *   - Inf stays Inf; NaN stays a NaN (quiet, same sign, its top 7 payload
 *     bits kept: a plain increment could carry a NaN into Inf or to -0).
 *   - subnormals round the same way (bf16 has fp32's exponent range); -0
 *     stays -0.
 */
#ifndef MT_BF16_H
#define MT_BF16_H

#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#define MT_BF16_FN static inline __host__ __device__
#else
#define MT_BF16_FN static inline
#endif

MT_BF16_FN float mt_bf16_round(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        u = (u & 0xffff0000u) | 0x00400000u; /* NaN: quiet, truncated */
    } else {
        u += 0x7fffu + ((u >> 16) & 1u); /* below half: no carry; half: carry iff odd */
        u &= 0xffff0000u;
    }
    memcpy(&x, &u, sizeof x);
    return x;
}

/* The bfloat16 bit pattern of x (rounded as mt_bf16_round), and back. */
MT_BF16_FN uint16_t mt_bf16_bits(float x) {
    float r = mt_bf16_round(x);
    uint32_t u;
    memcpy(&u, &r, sizeof u);
    return (uint16_t)(u >> 16);
}

MT_BF16_FN float mt_bf16_value(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

#endif
