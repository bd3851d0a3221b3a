/*
 * rng.h - counter-based random numbers (DESIGN decision 3).
 *
 * There is no hidden state: every number is a pure function of
 * (seed, stream, index). A stream names a purpose ("init/fc1.weight",
 * "order/epoch"), hashed once with mt_rng_stream. So element i of a tensor
 * inits the same on any rank and any layout, and resume needs only counters.
 * The mixer is SplitMix64's finalizer applied to a Weyl-sequence counter.
 */
#ifndef MT_RNG_H
#define MT_RNG_H

#include <stdint.h>

/* 64-bit hash of a purpose name (FNV-1a, then mixed). */
uint64_t mt_rng_stream(const char *name);
/* Combines a stream with a number (e.g. an epoch) into a new stream. */
uint64_t mt_rng_substream(uint64_t stream, uint64_t n);
/* Uniform 64-bit value for (seed, stream, index). */
uint64_t mt_rng_u64(uint64_t seed, uint64_t stream, uint64_t index);
/* Uniform float in [0, 1) with 24 random bits. */
float mt_rng_uniform(uint64_t seed, uint64_t stream, uint64_t index);
/* Standard normal (Box-Muller over indices 2i and 2i+1 of the stream). */
float mt_rng_normal(uint64_t seed, uint64_t stream, uint64_t index);
/* Uniform integer in [0, n) without modulo bias. */
uint64_t mt_rng_below(uint64_t seed, uint64_t stream, uint64_t index, uint64_t n);
/* perm[0..n) = a permutation of 0..n-1 drawn from (seed, stream). */
void mt_rng_permutation(uint64_t seed, uint64_t stream, int64_t *perm, int64_t n);

#endif
