/* SPDX-License-Identifier: Apache-2.0 */
/* Deterministic random numbers for Thompson sampling: xoshiro256** seeded
 * by splitmix64, with normal, gamma and beta draws, so routing weights are
 * the same bits on every replay (never rand(), never the wall clock). */
#include <math.h>

#include "experiments/internal.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void rng_seed(rng_t *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t rng_next(rng_t *r)
{
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

double rng_uniform(rng_t *r)
{
    /* 53 random bits, shifted half a step off 0 so log() is always finite */
    return ((double)(rng_next(r) >> 11) + 0.5) * 0x1.0p-53;
}

double rng_normal(rng_t *r)
{
    /* Marsaglia's polar method; the second value is thrown away so a draw
     * depends only on the generator's state, which is all we save. */
    for (;;) {
        double u = 2.0 * rng_uniform(r) - 1.0;
        double v = 2.0 * rng_uniform(r) - 1.0;
        double s = u * u + v * v;
        if (s > 0.0 && s < 1.0)
            return u * sqrt(-2.0 * log(s) / s);
    }
}

void rng_gamma_prep(rng_gamma_t *g, double shape)
{
    g->shape = shape;
    g->d = shape - 1.0 / 3.0;
    g->c = 1.0 / sqrt(9.0 * g->d);
}

double rng_gamma_prepped(rng_t *r, const rng_gamma_t *g)
{
    if (g->shape < 1.0) {
        /* boost: Gamma(a) = Gamma(a + 1) * U^(1/a) */
        double b = rng_gamma(r, g->shape + 1.0);
        return b * pow(rng_uniform(r), 1.0 / g->shape);
    }
    /* Marsaglia and Tsang (2000) */
    double d = g->d, c = g->c;
    for (;;) {
        double x, v;
        do {
            x = rng_normal(r);
            v = 1.0 + c * x;
        } while (v <= 0.0);
        v = v * v * v;
        double u = rng_uniform(r);
        if (u < 1.0 - 0.0331 * x * x * x * x)
            return d * v;
        if (log(u) < 0.5 * x * x + d * (1.0 - v + log(v)))
            return d * v;
    }
}

double rng_gamma(rng_t *r, double shape)
{
    rng_gamma_t g;
    rng_gamma_prep(&g, shape);
    return rng_gamma_prepped(r, &g);
}

double rng_beta(rng_t *r, double a, double b)
{
    rng_gamma_t ga, gb;
    rng_gamma_prep(&ga, a);
    rng_gamma_prep(&gb, b);
    return rng_beta_prepped(r, &ga, &gb);
}

double rng_beta_prepped(rng_t *r, const rng_gamma_t *a, const rng_gamma_t *b)
{
    double x = rng_gamma_prepped(r, a), y = rng_gamma_prepped(r, b);
    return x / (x + y);
}

uint64_t fnv1a64(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) {
        h ^= (uint8_t)*s;
        h *= 0x100000001b3ull;
    }
    return h;
}
