/* SPDX-License-Identifier: Apache-2.0 */
/* Thompson sampling routing weights: the share of traffic an arm gets is
 * the posterior probability that it is the best arm (probability matching,
 * Thompson 1933), estimated by posterior draws, floored so that no arm is
 * starved while its rewards are still on their way (docs/EXPERIMENTS.md,
 * "Delay"). */
#include <math.h>

#include "experiments/internal.h"

/* Arm k's posterior, worked out once per routing round: a round draws
 * each arm s->draws times from the same one. */
typedef struct post {
    rng_gamma_t a, b; /* Bernoulli: Beta(a, b) */
    double mean, sd;  /* Normal */
} post_t;

static void posterior(const exp_t *e, size_t k, double pool_mean,
                      double pool_var, post_t *p)
{
    const welford_t *w = &e->x[k];
    if (e->spec.reward == LD_EXP_REWARD_BERNOULLI) {
        /* Beta(1 + successes, 1 + failures); the mean of 0/1 rewards times
         * n is their count up to rounding */
        double succ = round(w->mean * (double)w->n);
        rng_gamma_prep(&p->a, 1.0 + succ);
        rng_gamma_prep(&p->b, 1.0 + (double)w->n - succ);
        return;
    }
    /* Normal with the variance plugged in: N(mean, s^2 / n). An arm with
     * fewer than 2 rewards borrows the pooled variance (and, with none,
     * the pooled mean), so it is drawn wide rather than never. */
    double n = (double)w->n;
    double var = w->n >= 2 ? welford_var(w) : pool_var;
    p->mean = w->n ? w->mean : pool_mean;
    p->sd = sqrt(var / (n > 1 ? n : 1.0));
}

/* One posterior draw of an arm's mean reward. */
static double draw(rng_t *r, int bernoulli, const post_t *p)
{
    if (bernoulli)
        return rng_beta_prepped(r, &p->a, &p->b);
    return p->mean + p->sd * rng_normal(r);
}

void bandit_weights(exp_t *e)
{
    const ld_exp_spec_t *s = &e->spec;
    size_t k = s->nvariants;
    welford_t pool = {0, 0, 0};
    for (size_t i = 0; i < k; i++) {
        /* Chan et al.'s merge of two running variances */
        const welford_t *w = &e->x[i];
        if (!w->n)
            continue;
        double n = (double)(pool.n + w->n), d = w->mean - pool.mean;
        pool.m2 += w->m2 + d * d * (double)pool.n * (double)w->n / n;
        pool.mean += d * (double)w->n / n;
        pool.n += w->n;
    }
    double pool_var = pool.n >= 2 ? welford_var(&pool) : 1.0;
    if (!(pool_var > 0))
        pool_var = 1e-12; /* all rewards equal: a narrow, not a zero, draw */

    rng_t r;
    rng_seed(&r, s->seed ^ fnv1a64(s->name) ^
                     (e->draws_done * 0x9e3779b97f4a7c15ull));
    e->draws_done++;
    uint64_t wins[LD_EXP_ARMS_MAX] = {0};
    post_t post[LD_EXP_ARMS_MAX];
    for (size_t i = 0; i < k; i++)
        posterior(e, i, pool.mean, pool_var, &post[i]);
    int bern = s->reward == LD_EXP_REWARD_BERNOULLI;
    for (int64_t d = 0; d < s->draws; d++) {
        size_t best = 0;
        double bv = -INFINITY;
        for (size_t i = 0; i < k; i++) {
            double v = draw(&r, bern, &post[i]);
            if (s->direction == LD_EXP_LOWER)
                v = -v; /* a cost: the best arm has the lowest */
            if (v > bv) {
                bv = v;
                best = i;
            }
        }
        wins[best]++;
    }
    double free_share = 1.0 - (double)k * s->min_weight;
    for (size_t i = 0; i < k; i++)
        e->weights[i] =
            s->min_weight + free_share * (double)wins[i] / (double)s->draws;
}
