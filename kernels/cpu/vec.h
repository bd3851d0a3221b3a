/*
 * vec.h - MT_VEC marks a CPU kernel's inner loop function (one that holds no
 * OpenMP region) to be compiled twice on x86-64: for x86-64-v3 (AVX2, FMA) and for the
 * baseline, the copy chosen once at load time by the CPU (GCC's
 * target_clones, an ifunc). Callers stay plain C and call it from their
 * OpenMP loops.
 *
 * Numerics: in a file built with -ffp-contract=fast (CMakeLists.txt says
 * which: fused_cpu.c), the AVX2 copy contracts a * b + c into one FMA (one
 * rounding instead of two), so that kernel's bits differ between a CPU with
 * AVX2 + FMA and one without; elsewhere (-std=c17 contracts nothing) both
 * copies give the same bits. Never do they depend on the thread count (each
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
