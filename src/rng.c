/* rng.c — Philox4x32-10 and the distributions built on it (see rng.h). */
#include <math.h>

#include "gradflow/rng.h"

static inline void mulhilo32(uint32_t a, uint32_t b, uint32_t *hi, uint32_t *lo)
{
    const uint64_t p = (uint64_t)a * b;
    *hi = (uint32_t)(p >> 32);
    *lo = (uint32_t)p;
}

void gf_rng_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; ++round) {
        if (round > 0) {
            k0 += 0x9E3779B9u; /* golden ratio */
            k1 += 0xBB67AE85u; /* sqrt(3) - 1 */
        }
        uint32_t hi0, lo0, hi1, lo1;
        mulhilo32(0xD2511F53u, c0, &hi0, &lo0);
        mulhilo32(0xCD9E8D57u, c2, &hi1, &lo1);
        const uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c0 = n0;
        c1 = lo1;
        c2 = n2;
        c3 = lo0;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

static void block(uint64_t seed, uint32_t stream, uint64_t index, uint32_t out[4])
{
    const uint32_t ctr[4] = {(uint32_t)index, (uint32_t)(index >> 32), stream, 0u};
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    gf_rng_philox4x32_10(ctr, key, out);
}

/* 53 bits from two words, centred in their cell so the result is never 0 or 1. */
static inline double to_open01(uint32_t lo, uint32_t hi)
{
    const uint64_t bits = (((uint64_t)hi << 32) | lo) >> 11;
    return ((double)bits + 0.5) * 0x1.0p-53;
}

double gf_rng_uniform(uint64_t seed, uint32_t stream, uint64_t index)
{
    uint32_t r[4];
    block(seed, stream, index, r);
    return to_open01(r[0], r[1]);
}

double gf_rng_symmetric(uint64_t seed, uint32_t stream, uint64_t index)
{
    return 2.0 * gf_rng_uniform(seed, stream, index) - 1.0;
}

double gf_rng_normal(uint64_t seed, uint32_t stream, uint64_t index)
{
    uint32_t r[4];
    block(seed, stream, index, r);
    const double u1 = to_open01(r[0], r[1]), u2 = to_open01(r[2], r[3]);
    const double two_pi = 6.283185307179586476925286766559;
    return sqrt(-2.0 * log(u1)) * cos(two_pi * u2);
}
