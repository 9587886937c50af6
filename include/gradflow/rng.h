/* rng.h — counter-based random numbers (Philox4x32-10, Salmon et al., SC'11).
 *
 * A value is a pure function of (seed, stream, index): no state is carried
 * between calls, so every rank generates exactly the entries it owns and the
 * model is bitwise identical for any number of ranks.  All functions are Local.
 */
#ifndef GRADFLOW_RNG_H
#define GRADFLOW_RNG_H

#include <stdint.h>

/* One stream per kind of quantity; never renumber (files record the seed). */
typedef enum {
    GF_STREAM_W = 1,      /* recurrent weights, index i*n + j */
    GF_STREAM_U = 2,      /* input weights, index i*m + j */
    GF_STREAM_B = 3,      /* biases, index i */
    GF_STREAM_A0 = 4,     /* initial state, index i */
    GF_STREAM_X = 5,      /* inputs, index (tau-1)*m + j */
    GF_STREAM_D = 6       /* targets, index (tau-1)*n_out + k */
} GfStream;

/* The Philox4x32 block function with 10 rounds. */
void gf_rng_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* Uniform in the open interval (0, 1), 53 random bits. */
double gf_rng_uniform(uint64_t seed, uint32_t stream, uint64_t index);

/* Uniform in (-1, 1). */
double gf_rng_symmetric(uint64_t seed, uint32_t stream, uint64_t index);

/* Standard normal (Box–Muller on the two halves of one Philox block). */
double gf_rng_normal(uint64_t seed, uint32_t stream, uint64_t index);

#endif
