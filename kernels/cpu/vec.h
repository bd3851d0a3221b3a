/*
 * vec.h - MT_VEC marks a CPU kernel's inner loop function (one that holds no
 * OpenMP region) to be compiled twice on x86-64: for x86-64-v3 (AVX2, FMA) and for the
 * baseline, the copy chosen once at load time by the CPU (GCC's
 * target_clones, an ifunc). Callers stay plain C and call it from their
 * OpenMP loops.
 *
 * Numerics: the AVX2 copy may contract a * b + c into one FMA (one rounding
 * instead of two), so a fused kernel's bits can differ between a CPU with
 * AVX2 + FMA and one without; they never depend on the thread count (each
 * element is still computed by one thread in a fixed order). Elsewhere (not
 * x86-64, or a compiler without target_clones) MT_VEC is empty.
 */
#ifndef MT_VEC_H
#define MT_VEC_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__)
#define MT_VEC __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define MT_VEC
#endif

#endif
