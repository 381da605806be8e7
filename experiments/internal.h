/* SPDX-License-Identifier: Apache-2.0 */
/* Internals shared by the experiments/ files: the set, its accumulators and
 * the deterministic random numbers behind Thompson sampling. */
#ifndef LD_EXPERIMENTS_INTERNAL_H
#define LD_EXPERIMENTS_INTERNAL_H

#include "experiments/experiments.h"

/* Bins of the served-score histograms behind the binned AUC. */
#define AUC_BINS 256

/* Welford's running mean and sum of squared deviations: stable for the
 * plug-in variances the test needs, and the same bits on every replay. */
typedef struct welford {
    uint64_t n;
    double mean, m2;
} welford_t;

void welford_add(welford_t *w, double x);
/* Sample variance (n - 1); 0 when n < 2. */
double welford_var(const welford_t *w);

/* Per-variant outcome accumulator. */
typedef struct accum {
    welford_t label;
    uint64_t exposed; /* ld_exp_set_expose calls */
    uint64_t scored, ll_n;
    double score_sum, label_sum_scored, ll_sum;
    uint64_t ips_n;
    double ips_sum;
    uint32_t hist[2][AUC_BINS]; /* score bins of negatives, positives */
    uint64_t drops[LD_EXP_DROP__COUNT];
} accum_t;

/* One experiment's evidence. */
typedef struct exp {
    ld_exp_spec_t spec;
    int arm[LD_EXP_ARMS_MAX];     /* set variant index of each arm */
    welford_t x[LD_EXP_ARMS_MAX]; /* metric per arm (shadow: per-arm loss) */
    welford_t paired;             /* shadow: loss(shadow) - loss(served) */
    welford_t calib;              /* canary: score - label of the canary */
    uint64_t n, next_check;
    double p_value, ci_lo, ci_hi; /* running min / intersection */
    double last_stat;
    int verdict;
    uint64_t seq;
    int64_t next_emit_ms; /* bandit; INT64_MIN before the first example */
    double weights[LD_EXP_ARMS_MAX];
    uint64_t draws_done; /* routing rounds, seeds the next one */
} exp_t;

/* One event waiting for its label (served.c): its key and what a mature
 * needs of every event, in one 32-byte slot -- a probe, a serve and a
 * mature touch one cache line, and a daemon with 12 000 events waiting
 * keeps 1 MiB of them, not the 2.5 MiB of a key table and a 64-byte value
 * table beside it, which crowded the model's weights out of the cache
 * (bench_e2e --experiments compare). Variant indexes fit a byte
 * (LD_EXP_VARIANTS_MAX + 1 names), as the resume state writes them. */
typedef struct served_slot {
    int64_t offset;
    int32_t partition; /* -1: empty slot */
    uint8_t variant, nshadow;
    /* slots from its home to here, DIST_FAR and up: work it out again.
     * A deletion shifts entries back by it without rehashing them (the
     * rehash was most of a deletion's work, bench_experiments). */
    uint8_t dist;
    uint8_t pad;
    int64_t time_ms;
    double score;
} served_slot_t;
_Static_assert(sizeof(served_slot_t) == 32, "two slots a cache line");

/* What fewer streams carry: a propensity, shadow scores. Parallel to the
 * slots, allocated at the first event that has either; without it every
 * entry has propensity NaN and no shadows. */
typedef struct served_side {
    double propensity;
    double shadow_score[LD_EXP_SHADOW_MAX];
    uint8_t shadow_var[LD_EXP_SHADOW_MAX];
} served_side_t;

/* An event served but not yet in the table (served.c, "Staging"). */
#define SERVED_STAGE 16
typedef struct served_staged {
    int32_t partition;
    int64_t offset, time_ms;
    ld_exp_served_t sv;
} served_staged_t;

typedef struct served_tab {
    served_slot_t *k;
    served_side_t *s;                    /* parallel to k, or NULL */
    served_staged_t stage[SERVED_STAGE]; /* in the order served */
    size_t nstage;
    uint64_t stage_bits; /* stage_bit() of each staged key */
    size_t cap, n;       /* cap a power of two (or 0) */
    uint64_t evicted;
    int64_t horizon_ms, newest_ms;
} served_tab_t;

/* Inserts the staged events, in the order they were served: every
 * function that reads the table or the exposure counts calls it first, so
 * nothing can tell staging happened. Its const callers cast: the staged
 * batch is the table's private cache, as a memo is. */
void served_drain(ld_exp_set_t *set);
void served_free(served_tab_t *t);
void served_save(const served_tab_t *t, ld_wbuf_t *w);
void served_load(served_tab_t *t, ld_rbuf_t *r);
/* Maps the loaded variant indexes through remap (indexes past
 * LD_EXP_VARIANTS_MAX: an entry is corrupt, a shadow's goes to `other`,
 * other_index). Returns -1 on a corrupt entry. */
int served_remap(served_tab_t *t, const int *remap, int other_index);

struct ld_exp_set {
    size_t nvar;
    char var[LD_EXP_VARIANTS_MAX + 1][LD_EXP_NAME_MAX];
    accum_t acc[LD_EXP_VARIANTS_MAX + 1];
    size_t nexp;
    exp_t exp[LD_EXP_MAX];
    ld_exp_decision_t *queue;
    size_t nqueue, capqueue;
    served_tab_t served;
};

/* ---- accum.c ------------------------------------------------------------ */
/* One observation and the served score's logloss, worked out at most
 * once however many of the accumulator and the experiments want it (a
 * log() is a sixth of an example's cost, bench_experiments). */
typedef struct obs_ctx {
    const ld_exp_obs_t *obs;
    int have_ll;
    double ll;
} obs_ctx_t;

void accum_add(accum_t *a, obs_ctx_t *c);
/* Per-example loss of score for label: logloss (score clamped to
 * [1e-15, 1 - 1e-15]) or squared error; NaN when score is NaN. */
double exp_loss(int metric, double score, double label);
/* exp_loss of c->obs's served score, the logloss from c's memo. */
double served_loss(obs_ctx_t *c, int metric);

/* ---- check.c ------------------------------------------------------------ */
/* Counts obs for experiment e; queues at most one decision into set.
 * Returns 1 when it queued one. */
int exp_observe(ld_exp_set_t *set, exp_t *e, obs_ctx_t *c);
ld_exp_decision_t *queue_push(ld_exp_set_t *set);
void decision_fill(const exp_t *e, int kind, int64_t time_ms,
                   ld_exp_decision_t *d);

/* ---- bandit.c ----------------------------------------------------------- */
/* Thompson sampling: P(arm is best) by spec.draws posterior draws from a
 * generator seeded by (seed, name, round), floored at min_weight, into
 * e->weights. */
void bandit_weights(exp_t *e);

/* ---- rng.c -------------------------------------------------------------- */
typedef struct rng {
    uint64_t s[4];
} rng_t;
void rng_seed(rng_t *r, uint64_t seed);
uint64_t rng_next(rng_t *r);
double rng_uniform(rng_t *r); /* (0, 1) */
double rng_normal(rng_t *r);
double rng_gamma(rng_t *r, double shape); /* shape > 0, scale 1 */
double rng_beta(rng_t *r, double a, double b);
/* The same draws with Marsaglia and Tsang's constants of a shape worked
 * out once: a routing round draws each arm's Beta a thousand times (a
 * sqrt and a division a draw, a fifth of bench_experiments' time). */
typedef struct rng_gamma {
    double shape, d, c;
} rng_gamma_t;
void rng_gamma_prep(rng_gamma_t *g, double shape);
double rng_gamma_prepped(rng_t *r, const rng_gamma_t *g);
double rng_beta_prepped(rng_t *r, const rng_gamma_t *a, const rng_gamma_t *b);
uint64_t fnv1a64(const char *s);

#endif /* LD_EXPERIMENTS_INTERNAL_H */
