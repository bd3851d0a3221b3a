/* rng.c - counter-based random numbers (see rng.h). */
#include "rng.h"

#include <math.h>

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t mt_rng_stream(const char *name) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ULL;
    }
    return mix64(h);
}

uint64_t mt_rng_substream(uint64_t stream, uint64_t n) {
    return mix64(stream ^ mix64(n + 0x9e3779b97f4a7c15ULL));
}

uint64_t mt_rng_u64(uint64_t seed, uint64_t stream, uint64_t index) {
    uint64_t key = mix64(seed ^ 0x6a09e667f3bcc909ULL) ^ stream;
    return mix64(mix64(key + index * 0x9e3779b97f4a7c15ULL) ^ key);
}

float mt_rng_uniform(uint64_t seed, uint64_t stream, uint64_t index) {
    return (float)(mt_rng_u64(seed, stream, index) >> 40) * (1.0f / 16777216.0f);
}

float mt_rng_normal(uint64_t seed, uint64_t stream, uint64_t index) {
    /* 53-bit uniforms in (0, 1] and [0, 1) keep log() finite. */
    double u1 = ((double)(mt_rng_u64(seed, stream, 2 * index) >> 11) + 1.0) * 0x1p-53;
    double u2 = (double)(mt_rng_u64(seed, stream, 2 * index + 1) >> 11) * 0x1p-53;
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

uint64_t mt_rng_below(uint64_t seed, uint64_t stream, uint64_t index, uint64_t n) {
    /* Lemire's multiply-shift with rejection; retries use further counters. */
    for (uint64_t attempt = 0;; attempt++) {
        uint64_t x = mt_rng_u64(seed, mt_rng_substream(stream, attempt), index);
        __uint128_t m = (__uint128_t)x * n;
        uint64_t lo = (uint64_t)m;
        if (lo >= n || lo >= (0 - n) % n) return (uint64_t)(m >> 64);
    }
}

void mt_rng_permutation(uint64_t seed, uint64_t stream, int64_t *perm, int64_t n) {
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    /* Fisher-Yates; swap i uses counter i, so the result depends only on the inputs. */
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)mt_rng_below(seed, stream, (uint64_t)i, (uint64_t)i + 1);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}
