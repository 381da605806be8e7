/* SPDX-License-Identifier: Apache-2.0 */
/* Experiments on served versions: per-variant outcome accumulators, the
 * always-valid mixture SPRT behind ab, canary and shadow verdicts, Thompson
 * sampling routing weights for bandits, and the decisions they produce
 * (docs/EXPERIMENTS.md). Thread: one set belongs to one thread (the run
 * loop); ld_exp_set_json may be called from another thread only under the
 * caller's lock. */
#ifndef LD_EXPERIMENTS_H
#define LD_EXPERIMENTS_H

#include <stddef.h>
#include <stdint.h>

#include "common/bytes.h"
#include "common/common.h"

/* Bounds: variants across the whole set (plus `other`), arms of one
 * experiment, shadow scores on one event, length of names. They bound the
 * cardinality of the `variant` metric label by construction. */
#define LD_EXP_VARIANTS_MAX 32
#define LD_EXP_ARMS_MAX     8
#define LD_EXP_SHADOW_MAX   4
#define LD_EXP_NAME_MAX     64
#define LD_EXP_MAX          16 /* experiments in one set */
/* The variant every unknown name is counted under. */
#define LD_EXP_OTHER "other"

typedef enum ld_exp_type {
    LD_EXP_AB = 0,     /* control vs treatment, two-sided */
    LD_EXP_CANARY = 1, /* control vs canary, plus guardrails */
    LD_EXP_SHADOW = 2, /* served vs shadow score on the same events */
    LD_EXP_BANDIT = 3  /* Thompson sampling routing weights */
} ld_exp_type_t;

typedef enum ld_exp_metric {
    LD_EXP_METRIC_LABEL_MEAN = 0, /* the label itself (CTR, revenue) */
    LD_EXP_METRIC_LOGLOSS = 1,    /* -log p(label) of the served score */
    LD_EXP_METRIC_SQERR = 2       /* (score - label)^2 */
} ld_exp_metric_t;

typedef enum ld_exp_direction {
    LD_EXP_HIGHER = 0, /* higher is better (CTR) */
    LD_EXP_LOWER = 1   /* lower is better (logloss) */
} ld_exp_direction_t;

typedef enum ld_exp_reward {
    LD_EXP_REWARD_BERNOULLI = 0, /* 0/1 labels, Beta(1,1) prior */
    LD_EXP_REWARD_NORMAL = 1     /* numeric labels, flat Normal prior */
} ld_exp_reward_t;

typedef enum ld_exp_verdict {
    LD_EXP_CONTINUE = 0,
    LD_EXP_PROMOTE = 1,     /* treatment (or shadow) is better */
    LD_EXP_ROLLBACK = 2,    /* treatment is worse or a guardrail broke */
    LD_EXP_INCONCLUSIVE = 3 /* sample cap reached without a decision */
} ld_exp_verdict_t;

/* One experiment as configured. variants: ab/canary [control, treatment];
 * shadow [served, shadow]; bandit: the arms (2..LD_EXP_ARMS_MAX). */
typedef struct ld_exp_spec {
    char name[LD_EXP_NAME_MAX];
    int type; /* ld_exp_type_t */
    char variants[LD_EXP_ARMS_MAX][LD_EXP_NAME_MAX];
    size_t nvariants;
    int metric;          /* ld_exp_metric_t; shadow: logloss or sqerr */
    int direction;       /* ld_exp_direction_t */
    double min_effect;   /* absolute effect of interest: the mixture's tau */
    double alpha;        /* always-valid level of the test, (0, 0.5] */
    int64_t max_samples; /* cap on examples in the test -> INCONCLUSIVE */
    int64_t min_samples; /* per arm before any verdict (variance plug-in) */
    int64_t check_every; /* examples between looks (a "window") */
    /* canary: promote at the cap when non-inferior within this margin
     * (absolute, in the metric's units; < 0 = never) */
    double noninferiority;
    /* canary guardrails, each rolls back as soon as its always-valid
     * interval says so: |mean(score - label)| of the canary beyond this
     * band (0 = off), and the canary's label mean below this floor
     * (NaN = off). */
    double guard_calibration;
    double guard_label_min;
    /* bandit */
    int reward;          /* ld_exp_reward_t */
    int64_t interval_ms; /* event time between routing weights */
    double min_weight;   /* floor of every arm's weight */
    int64_t draws;       /* Monte Carlo draws of P(arm is best) */
    uint64_t seed;
} ld_exp_spec_t;

/* Fills spec with the defaults of every field (alpha 0.05, check_every
 * 1000, ...) and the given name and type; variants stay empty. */
void ld_exp_spec_init(ld_exp_spec_t *spec, const char *name, int type);

/* Checks one spec on its own: variant count for its type, metric allowed
 * for the type, ranges. Returns LD_ERR_CONFIG with the reason in errstr. */
ld_err_t ld_exp_spec_check(const ld_exp_spec_t *spec, char *errstr,
                           size_t errstr_size) LD_WUR;

/* ---- Configuration (each item of the `experiments:` list) -------------- */

/* One experiment as the YAML gives it; filled from ld_exp_conf_section,
 * owned strings freed with ld_conf_free(). */
typedef struct ld_exp_conf {
    char *name;
    int type; /* ld_exp_type_t */
    ld_strlist_t variants;
    int metric;    /* ld_exp_metric_t */
    int direction; /* ld_exp_direction_t */
    double min_effect, alpha;
    int64_t max_samples, min_samples, check_every;
    double noninferiority;
    double guard_calibration;
    char *guard_label_min; /* "" = off, else a number */
    int reward;            /* ld_exp_reward_t */
    int64_t interval_ms;
    double min_weight;
    int64_t draws, seed;
} ld_exp_conf_t;

extern const ld_conf_section_t ld_exp_conf_section;

/* Turns one loaded item into a spec and checks it (ld_exp_spec_check).
 * Returns LD_ERR_CONFIG with the reason in errstr. */
ld_err_t ld_exp_conf_to_spec(const ld_exp_conf_t *c, ld_exp_spec_t *out,
                             char *errstr, size_t errstr_size) LD_WUR;

/* ---- The always-valid test ---------------------------------------------- */

/* The mixture SPRT of Johari et al., "Always Valid Inference" (2017), for a
 * difference theta of means estimated by est with variance var, against
 * theta = 0, with a N(0, tau^2) mixture: log Lambda = 1/2 log(V/(V+tau^2))
 * + tau^2 est^2 / (2 V (V+tau^2)). Rejecting when Lambda >= 1/alpha keeps
 * the false-positive rate at most alpha however often it is looked at; the
 * interval est +- half is the set of theta0 not rejected (always valid). */
typedef struct ld_exp_msprt {
    double est, var;  /* the estimate and its variance */
    double log_lr;    /* log Lambda */
    double threshold; /* log(1/alpha) */
    double half;      /* half-width of the always-valid interval */
    int reject;       /* log_lr >= threshold */
} ld_exp_msprt_t;

/* Fills out for est, var (> 0), tau (> 0), alpha in (0,1). Returns
 * LD_ERR_INVAL (out zeroed) when var or tau is not positive and finite. */
ld_err_t ld_exp_msprt(double est, double var, double tau, double alpha,
                      ld_exp_msprt_t *out) LD_WUR;

/* ---- The experiment set ------------------------------------------------- */

typedef struct ld_exp_set ld_exp_set_t;

/* One shadow score on an event: which variant scored it, and the score. */
typedef struct ld_exp_shadow {
    int variant; /* ld_exp_set_variant() index */
    double score;
} ld_exp_shadow_t;

/* One matured example as the experiments see it. */
typedef struct ld_exp_obs {
    int variant;       /* served variant, ld_exp_set_variant() index */
    double label;      /* finite */
    double score;      /* served score; NaN = the event had none */
    double propensity; /* (0,1]; NaN = none */
    const ld_exp_shadow_t *shadow; /* borrowed; nshadow items */
    size_t nshadow;
    int64_t time_ms; /* event time at which it matured (the bandit clock) */
} ld_exp_obs_t;

/* Why an observation was not counted by an experiment that wanted it;
 * counted per reason (ld_exp_set_drops), never silent. */
typedef enum ld_exp_drop {
    LD_EXP_DROP_NO_SCORE = 0,   /* metric needs the served score */
    LD_EXP_DROP_NO_SHADOW = 1,  /* shadow experiment, no shadow score */
    LD_EXP_DROP_BAD_REWARD = 2, /* Bernoulli bandit, label not 0 or 1 */
    LD_EXP_DROP__COUNT = 3
} ld_exp_drop_t;

/* A decision or routing weights, ready to publish. */
typedef enum ld_exp_kind {
    LD_EXP_KIND_DECISION = 0, /* ExperimentDecision */
    LD_EXP_KIND_WEIGHTS = 1   /* RoutingWeights */
} ld_exp_kind_t;

typedef struct ld_exp_arm_ev {
    char variant[LD_EXP_NAME_MAX];
    uint64_t n;       /* examples counted for this arm */
    uint64_t pending; /* exposed (seen served) but not yet matured */
    double mean;      /* of the experiment's metric (bandit: reward) */
    double weight;    /* RoutingWeights: share of traffic; else NaN */
} ld_exp_arm_ev_t;

typedef struct ld_exp_decision {
    int kind; /* ld_exp_kind_t */
    char experiment[LD_EXP_NAME_MAX];
    int type;     /* ld_exp_type_t */
    int verdict;  /* ld_exp_verdict_t (weights: CONTINUE) */
    uint64_t seq; /* per experiment, from 1 */
    /* "<experiment>/<kind>/<seq>": equal across replays and restarts, so a
     * consumer drops a repeat. */
    char idempotency_key[LD_EXP_NAME_MAX + 40];
    char reason[48]; /* msprt, cap, noninferior, guard_calibration, ... */
    int64_t event_time_ms;
    int metric;          /* ld_exp_metric_t */
    double effect;       /* treatment - control (shadow: shadow - served) */
    double ci_lo, ci_hi; /* always-valid interval of the effect */
    double statistic, threshold; /* log Lambda, log(1/alpha) */
    double p_value; /* always-valid p-value, min over looks of 1/Lambda */
    size_t narms;
    ld_exp_arm_ev_t arm[LD_EXP_ARMS_MAX];
} ld_exp_decision_t;

/* Builds a set from n specs (copied; each checked with ld_exp_spec_check,
 * names unique). The variant list is every variant the specs name, in
 * order of first appearance, then LD_EXP_OTHER. Returns NULL with the
 * reason in errstr. Caller frees with ld_exp_set_destroy. n may be 0. */
ld_exp_set_t *ld_exp_set_new(const ld_exp_spec_t *specs, size_t n, char *errstr,
                             size_t errstr_size);
void ld_exp_set_destroy(ld_exp_set_t *set);

/* Variants: their count (incl. `other`), the name of index i, and the index
 * of name[0..len) -- the `other` index for any name not configured, so the
 * metric label never grows with the input. */
size_t ld_exp_set_nvariants(const ld_exp_set_t *set);
const char *ld_exp_set_variant_name(const ld_exp_set_t *set, size_t i);
int ld_exp_set_variant(const ld_exp_set_t *set, const char *name, size_t len);
size_t ld_exp_set_count(const ld_exp_set_t *set);
/* Name of experiment i and of its arm k (borrowed; NULL when out of
 * range). */
const char *ld_exp_set_name(const ld_exp_set_t *set, size_t i);
const char *ld_exp_set_arm_name(const ld_exp_set_t *set, size_t i, size_t k);

/* An event served by variant was seen (before its label): counts it as
 * pending for the bandits until its example matures. */
void ld_exp_set_expose(ld_exp_set_t *set, int variant);

/* Counts one matured example: the per-variant accumulators, then every
 * undecided experiment that involves its variant. Looks at an experiment
 * every check_every of its examples; a verdict other than CONTINUE, and a
 * bandit's weights every interval_ms of time_ms, are queued as decisions.
 * Returns the number of decisions queued by this call. */
size_t ld_exp_set_observe(ld_exp_set_t *set, const ld_exp_obs_t *obs);

/* ---- Events waiting for their label ------------------------------------ */

/* What served one event, as the run loop hands it over at ingestion. */
typedef struct ld_exp_served {
    int variant;       /* ld_exp_set_variant() index */
    double score;      /* NaN = none */
    double propensity; /* NaN = none */
    size_t nshadow;
    ld_exp_shadow_t shadow[LD_EXP_SHADOW_MAX];
} ld_exp_served_t;

/* Remembers what served the event at (partition, offset) until its example
 * matures, and counts it as exposed. The same event again (a re-read after
 * a restart) replaces the entry and is not counted twice. Events the joiner
 * never releases (duplicates, too late) are evicted once the matured event
 * time is horizon_ms past them (ld_exp_set_horizon), and counted. */
void ld_exp_set_serve(ld_exp_set_t *set, int32_t partition, int64_t offset,
                      int64_t event_time_ms, const ld_exp_served_t *sv);
/* A hint, no state change: start loading the table lines a later
 * ld_exp_set_mature(partition, offset) reads, so a batch of them waits on
 * memory once, not once per example. */
void ld_exp_set_prefetch(const ld_exp_set_t *set, int32_t partition,
                         int64_t offset);
/* The example of the event at (partition, offset) matured with label at
 * event time time_ms: ld_exp_set_observe() with what served it, and the
 * entry goes. Events with no entry (not served by a variant) are ignored.
 * Returns the decisions queued. */
size_t ld_exp_set_mature(ld_exp_set_t *set, int32_t partition, int64_t offset,
                         double label, int64_t time_ms);
/* How far behind the newest matured event time an unreleased entry may be
 * before it is evicted (default 7 days; the daemon sets twice the label
 * window). */
void ld_exp_set_horizon(ld_exp_set_t *set, int64_t horizon_ms);
/* Entries waiting, and entries evicted so far. */
size_t ld_exp_set_waiting(const ld_exp_set_t *set, uint64_t *evicted);

/* Queued decisions, oldest first; valid until the next observe or
 * ld_exp_set_clear. The run loop publishes them inside the commit-point
 * transaction, then clears (the queue is part of the resume state, so a
 * crash before the commit republishes the same decisions). */
const ld_exp_decision_t *ld_exp_set_pending(const ld_exp_set_t *set, size_t *n);
void ld_exp_set_clear(ld_exp_set_t *set);

/* Experiment i's current verdict (CONTINUE while running). */
int ld_exp_set_verdict(const ld_exp_set_t *set, size_t i);
/* Current routing weights of bandit i into w[narms]; the arm count, or 0
 * when i is not a bandit. */
size_t ld_exp_set_weights(const ld_exp_set_t *set, size_t i,
                          double w[LD_EXP_ARMS_MAX]);

/* Per-variant outcomes of every matured example served by a variant. */
typedef struct ld_exp_variant_stats {
    uint64_t n;          /* matured examples */
    uint64_t pending;    /* exposed, not yet matured */
    double label_mean;   /* NaN when n = 0 */
    double ci_lo, ci_hi; /* 95 % normal interval of the label mean */
    uint64_t scored;     /* examples with a served score */
    double logloss;      /* mean, binary labels; NaN when none */
    double calibration;  /* mean score / mean label; NaN when undefined */
    double auc;          /* binned (256 bins); NaN without both classes */
    double ips_mean;     /* sum(label / propensity) / all examples; NaN */
    uint64_t drops[LD_EXP_DROP__COUNT];
} ld_exp_variant_stats_t;

void ld_exp_set_variant_stats(const ld_exp_set_t *set, size_t i,
                              ld_exp_variant_stats_t *out);

/* The current state of every experiment (name NULL) or one, as JSON
 * (GET /experiments, /experiments/<name>). Returns a string the caller
 * frees with free(), or NULL (no such experiment, or no memory). */
char *ld_exp_set_json(const ld_exp_set_t *set, const char *name);

/* Resume state: everything observe has accumulated and the queued
 * decisions, so a restart decides exactly as an uninterrupted run. Evidence
 * is matched by experiment name; one whose identity (type, variants,
 * metric, direction, reward, min_effect, alpha) changed starts afresh,
 * logged. load refuses a damaged blob with LD_ERR_CORRUPT (errstr says
 * why); the set is then half-loaded and should be destroyed. */
void ld_exp_set_save(const ld_exp_set_t *set, ld_wbuf_t *w);
ld_err_t ld_exp_set_load(ld_exp_set_t *set, const void *buf, size_t len,
                         char *errstr, size_t errstr_size) LD_WUR;

/* One queued decision as an event: JSON (schemas/experiment.schema.json,
 * keys sorted) or protobuf (ExperimentDecision / RoutingWeights), model
 * naming the model the daemon trains. *out is the caller's to free().
 * LD_ERR_NOMEM. */
ld_err_t ld_exp_decision_encode(const ld_exp_decision_t *d, const char *model,
                                int protobuf, uint8_t **out,
                                size_t *len) LD_WUR;
/* The learnd.type header of its record: "ExperimentDecision" or
 * "RoutingWeights". */
const char *ld_exp_decision_type_header(const ld_exp_decision_t *d);

const char *ld_exp_verdict_name(int verdict);
const char *ld_exp_type_name(int type);

#endif /* LD_EXPERIMENTS_H */
