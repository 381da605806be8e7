/* SPDX-License-Identifier: Apache-2.0 */
/* How one experiment counts a matured example and, every check_every of
 * them, looks at its evidence: the mixture SPRT for ab, canary and shadow,
 * the canary's guardrails and cap, the bandit's routing clock. A look that
 * reaches a verdict other than CONTINUE queues one decision and ends the
 * experiment; a bandit queues weights each interval and never ends. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "experiments/internal.h"

ld_exp_decision_t *queue_push(ld_exp_set_t *set)
{
    if (set->nqueue == set->capqueue) {
        size_t cap = set->capqueue ? set->capqueue * 2 : 8;
        ld_exp_decision_t *q = realloc(set->queue, cap * sizeof(*q));
        if (!q)
            return NULL;
        set->queue = q;
        set->capqueue = cap;
    }
    ld_exp_decision_t *d = &set->queue[set->nqueue++];
    memset(d, 0, sizeof(*d));
    return d;
}

void decision_fill(const exp_t *e, int kind, int64_t time_ms,
                   ld_exp_decision_t *d)
{
    static const char *kinds[] = {"decision", "weights"};
    memset(d, 0, sizeof(*d));
    d->kind = kind;
    snprintf(d->experiment, sizeof(d->experiment), "%s", e->spec.name);
    d->type = e->spec.type;
    d->verdict = kind == LD_EXP_KIND_WEIGHTS ? LD_EXP_CONTINUE : e->verdict;
    d->seq = e->seq;
    snprintf(d->idempotency_key, sizeof(d->idempotency_key), "%s/%s/%llu",
             e->spec.name, kinds[kind], (unsigned long long)e->seq);
    d->event_time_ms = time_ms;
    d->metric = e->spec.metric;
    const welford_t *eff = e->spec.type == LD_EXP_SHADOW ? &e->paired : NULL;
    d->effect = eff ? eff->mean : e->x[1].mean - e->x[0].mean;
    d->ci_lo = e->ci_lo;
    d->ci_hi = e->ci_hi;
    d->statistic = e->last_stat;
    d->threshold = -log(e->spec.alpha);
    d->p_value = e->p_value;
    d->narms = e->spec.nvariants;
    for (size_t k = 0; k < d->narms; k++) {
        ld_exp_arm_ev_t *a = &d->arm[k];
        snprintf(a->variant, sizeof(a->variant), "%s", e->spec.variants[k]);
        a->n = e->x[k].n;
        a->mean = e->x[k].n ? e->x[k].mean : NAN;
        a->weight = kind == LD_EXP_KIND_WEIGHTS ? e->weights[k] : NAN;
    }
}

static int queue(ld_exp_set_t *set, exp_t *e, int kind, int64_t time_ms,
                 const char *reason)
{
    ld_exp_decision_t *d = queue_push(set);
    if (!d)
        return 0; /* no memory: the state still holds the verdict */
    e->seq++;
    decision_fill(e, kind, time_ms, d);
    snprintf(d->reason, sizeof(d->reason), "%s", reason);
    return 1;
}

/* Folds one look into the running always-valid p-value and interval
 * (their intersection over looks is also always valid). */
static void fold(exp_t *e, const ld_exp_msprt_t *m)
{
    double lo = m->est - m->half, hi = m->est + m->half;
    double p = exp(-m->log_lr);
    if (p < e->p_value)
        e->p_value = p;
    if (isnan(e->ci_lo) || fmax(lo, e->ci_lo) > fmin(hi, e->ci_hi)) {
        /* first look, or the plug-in variance moved the interval off the
         * old one: keep the newest */
        e->ci_lo = lo;
        e->ci_hi = hi;
    } else {
        e->ci_lo = fmax(lo, e->ci_lo);
        e->ci_hi = fmin(hi, e->ci_hi);
    }
    e->last_stat = m->log_lr;
}

/* The canary's guardrails: each an always-valid interval of its own. */
static const char *guardrails(const ld_exp_set_t *set, const exp_t *e)
{
    const ld_exp_spec_t *s = &e->spec;
    ld_exp_msprt_t m;
    if (s->guard_calibration > 0 && e->calib.n >= (uint64_t)s->min_samples &&
        ld_exp_msprt(e->calib.mean, welford_var(&e->calib) / (double)e->calib.n,
                     s->guard_calibration, s->alpha, &m) == LD_OK &&
        (m.est - m.half > s->guard_calibration ||
         m.est + m.half < -s->guard_calibration))
        return "guard_calibration";
    const welford_t *lab = &set->acc[e->arm[1]].label;
    if (!isnan(s->guard_label_min) && lab->n >= (uint64_t)s->min_samples &&
        ld_exp_msprt(lab->mean - s->guard_label_min,
                     welford_var(lab) / (double)lab->n, s->min_effect, s->alpha,
                     &m) == LD_OK &&
        m.est + m.half < 0)
        return "guard_label_min";
    return NULL;
}

static int look_two(ld_exp_set_t *set, exp_t *e, int64_t t)
{
    const ld_exp_spec_t *s = &e->spec;
    const welford_t *c = &e->x[0], *x = &e->x[1];
    double sgn = s->direction == LD_EXP_HIGHER ? 1.0 : -1.0;
    const char *reason = NULL;
    ld_exp_msprt_t m;
    if (c->n >= (uint64_t)s->min_samples && x->n >= (uint64_t)s->min_samples &&
        ld_exp_msprt(x->mean - c->mean,
                     welford_var(c) / (double)c->n +
                         welford_var(x) / (double)x->n,
                     s->min_effect, s->alpha, &m) == LD_OK) {
        fold(e, &m);
        if (m.reject) {
            e->verdict = sgn * m.est > 0 ? LD_EXP_PROMOTE : LD_EXP_ROLLBACK;
            reason = "msprt";
        }
    }
    if (s->type == LD_EXP_CANARY && e->verdict != LD_EXP_ROLLBACK) {
        const char *g = guardrails(set, e);
        if (g) {
            e->verdict = LD_EXP_ROLLBACK;
            reason = g;
        }
    }
    if (e->verdict == LD_EXP_CONTINUE && e->n >= (uint64_t)s->max_samples) {
        double lo_better = sgn > 0 ? e->ci_lo : -e->ci_hi;
        if (s->type == LD_EXP_CANARY && s->noninferiority >= 0 &&
            !isnan(lo_better) && lo_better >= -s->noninferiority) {
            e->verdict = LD_EXP_PROMOTE;
            reason = "noninferior";
        } else {
            e->verdict = LD_EXP_INCONCLUSIVE;
            reason = "cap";
        }
    }
    return reason ? queue(set, e, LD_EXP_KIND_DECISION, t, reason) : 0;
}

static int look_shadow(ld_exp_set_t *set, exp_t *e, int64_t t)
{
    const ld_exp_spec_t *s = &e->spec;
    const welford_t *d = &e->paired;
    ld_exp_msprt_t m;
    const char *reason = NULL;
    if (d->n >= (uint64_t)s->min_samples &&
        ld_exp_msprt(d->mean, welford_var(d) / (double)d->n, s->min_effect,
                     s->alpha, &m) == LD_OK) {
        fold(e, &m);
        if (m.reject) {
            /* a loss: the shadow is better when its loss is lower */
            e->verdict = m.est < 0 ? LD_EXP_PROMOTE : LD_EXP_ROLLBACK;
            reason = "msprt";
        }
    }
    if (e->verdict == LD_EXP_CONTINUE && e->n >= (uint64_t)s->max_samples) {
        e->verdict = LD_EXP_INCONCLUSIVE;
        reason = "cap";
    }
    return reason ? queue(set, e, LD_EXP_KIND_DECISION, t, reason) : 0;
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static int observe_bandit(ld_exp_set_t *set, exp_t *e, int a,
                          const ld_exp_obs_t *obs)
{
    const ld_exp_spec_t *s = &e->spec;
    if (s->reward == LD_EXP_REWARD_BERNOULLI && obs->label != 0.0 &&
        obs->label != 1.0) {
        set->acc[obs->variant].drops[LD_EXP_DROP_BAD_REWARD]++;
        return 0;
    }
    welford_add(&e->x[a], obs->label);
    e->n++;
    /* the common case first: two 64-bit divisions an example were a
     * tenth of the bandit's cost */
    if (e->next_emit_ms != INT64_MIN && obs->time_ms < e->next_emit_ms)
        return 0;
    int64_t next =
        (floor_div(obs->time_ms, s->interval_ms) + 1) * s->interval_ms;
    if (e->next_emit_ms == INT64_MIN) {
        e->next_emit_ms = next; /* the first interval starts here */
        return 0;
    }
    e->next_emit_ms = next;
    bandit_weights(e);
    return queue(set, e, LD_EXP_KIND_WEIGHTS, obs->time_ms, "interval");
}

static const ld_exp_shadow_t *find_shadow(const ld_exp_obs_t *obs, int v)
{
    for (size_t i = 0; i < obs->nshadow; i++)
        if (obs->shadow[i].variant == v && !isnan(obs->shadow[i].score))
            return &obs->shadow[i];
    return NULL;
}

static int count_look(ld_exp_set_t *set, exp_t *e, const ld_exp_obs_t *obs)
{
    e->n++;
    if (e->n < e->next_check && e->n < (uint64_t)e->spec.max_samples)
        return 0;
    e->next_check += (uint64_t)e->spec.check_every;
    return e->spec.type == LD_EXP_SHADOW ? look_shadow(set, e, obs->time_ms)
                                         : look_two(set, e, obs->time_ms);
}

int exp_observe(ld_exp_set_t *set, exp_t *e, obs_ctx_t *c)
{
    const ld_exp_obs_t *obs = c->obs;
    const ld_exp_spec_t *s = &e->spec;
    int a = -1;
    for (size_t k = 0; k < s->nvariants; k++)
        if (e->arm[k] == obs->variant)
            a = (int)k;
    if (a < 0)
        return 0;
    if (s->type == LD_EXP_BANDIT)
        return observe_bandit(set, e, a, obs);
    if (e->verdict != LD_EXP_CONTINUE)
        return 0;
    accum_t *acc = &set->acc[obs->variant];
    if (s->type == LD_EXP_SHADOW) {
        if (a != 0)
            return 0; /* served by the shadow itself: not a paired event */
        const ld_exp_shadow_t *sh = find_shadow(obs, e->arm[1]);
        if (isnan(obs->score)) {
            acc->drops[LD_EXP_DROP_NO_SCORE]++;
            return 0;
        }
        if (!sh) {
            acc->drops[LD_EXP_DROP_NO_SHADOW]++;
            return 0;
        }
        double ls = served_loss(c, s->metric);
        double lh = exp_loss(s->metric, sh->score, obs->label);
        welford_add(&e->x[0], ls);
        welford_add(&e->x[1], lh);
        welford_add(&e->paired, lh - ls);
        return count_look(set, e, obs);
    }
    double x = obs->label;
    if (s->metric != LD_EXP_METRIC_LABEL_MEAN) {
        x = served_loss(c, s->metric);
        if (isnan(x)) {
            acc->drops[LD_EXP_DROP_NO_SCORE]++;
            return 0;
        }
    }
    welford_add(&e->x[a], x);
    if (s->type == LD_EXP_CANARY && a == 1 && !isnan(obs->score))
        welford_add(&e->calib, obs->score - obs->label);
    return count_look(set, e, obs);
}
