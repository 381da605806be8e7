/* SPDX-License-Identifier: Apache-2.0 */
/* The experiment set's resume state: per-variant accumulators, every
 * experiment's evidence, and the queued decisions, little-endian with a
 * version (ld_exp_set_save / ld_exp_set_load). Evidence is matched by
 * name: an experiment whose spec changed since the save starts afresh
 * (logged), the others go on exactly where they were. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "experiments/internal.h"

#define STATE_MAGIC   0x5845444cu /* "LDEX" */
#define STATE_VERSION 1u

static void wf_save(ld_wbuf_t *w, const welford_t *x)
{
    ld_wbuf_u64(w, x->n);
    ld_wbuf_f64(w, x->mean);
    ld_wbuf_f64(w, x->m2);
}

static void wf_load(ld_rbuf_t *r, welford_t *x)
{
    x->n = ld_rbuf_u64(r);
    x->mean = ld_rbuf_f64(r);
    x->m2 = ld_rbuf_f64(r);
}

static void accum_save(ld_wbuf_t *w, const accum_t *a)
{
    wf_save(w, &a->label);
    ld_wbuf_u64(w, a->exposed);
    ld_wbuf_u64(w, a->scored);
    ld_wbuf_u64(w, a->ll_n);
    ld_wbuf_f64(w, a->score_sum);
    ld_wbuf_f64(w, a->label_sum_scored);
    ld_wbuf_f64(w, a->ll_sum);
    ld_wbuf_u64(w, a->ips_n);
    ld_wbuf_f64(w, a->ips_sum);
    for (size_t c = 0; c < 2; c++)
        for (size_t b = 0; b < AUC_BINS; b++)
            ld_wbuf_u32(w, a->hist[c][b]);
    for (size_t d = 0; d < LD_EXP_DROP__COUNT; d++)
        ld_wbuf_u64(w, a->drops[d]);
}

static void accum_load(ld_rbuf_t *r, accum_t *a)
{
    wf_load(r, &a->label);
    a->exposed = ld_rbuf_u64(r);
    a->scored = ld_rbuf_u64(r);
    a->ll_n = ld_rbuf_u64(r);
    a->score_sum = ld_rbuf_f64(r);
    a->label_sum_scored = ld_rbuf_f64(r);
    a->ll_sum = ld_rbuf_f64(r);
    a->ips_n = ld_rbuf_u64(r);
    a->ips_sum = ld_rbuf_f64(r);
    for (size_t c = 0; c < 2; c++)
        for (size_t b = 0; b < AUC_BINS; b++)
            a->hist[c][b] = ld_rbuf_u32(r);
    for (size_t d = 0; d < LD_EXP_DROP__COUNT; d++)
        a->drops[d] = ld_rbuf_u64(r);
}

/* What makes saved evidence still mean the same thing. */
static void spec_save(ld_wbuf_t *w, const ld_exp_spec_t *s)
{
    ld_wbuf_str(w, s->name);
    ld_wbuf_u8(w, (uint8_t)s->type);
    ld_wbuf_u8(w, (uint8_t)s->nvariants);
    for (size_t k = 0; k < s->nvariants; k++)
        ld_wbuf_str(w, s->variants[k]);
    ld_wbuf_u8(w, (uint8_t)s->metric);
    ld_wbuf_u8(w, (uint8_t)s->direction);
    ld_wbuf_u8(w, (uint8_t)s->reward);
    ld_wbuf_f64(w, s->min_effect);
    ld_wbuf_f64(w, s->alpha);
}

static void exp_save(ld_wbuf_t *w, const exp_t *e)
{
    spec_save(w, &e->spec);
    for (size_t k = 0; k < e->spec.nvariants; k++)
        wf_save(w, &e->x[k]);
    wf_save(w, &e->paired);
    wf_save(w, &e->calib);
    ld_wbuf_u64(w, e->n);
    ld_wbuf_u64(w, e->next_check);
    ld_wbuf_f64(w, e->p_value);
    ld_wbuf_f64(w, e->ci_lo);
    ld_wbuf_f64(w, e->ci_hi);
    ld_wbuf_f64(w, e->last_stat);
    ld_wbuf_u8(w, (uint8_t)e->verdict);
    ld_wbuf_u64(w, e->seq);
    ld_wbuf_i64(w, e->next_emit_ms);
    for (size_t k = 0; k < e->spec.nvariants; k++)
        ld_wbuf_f64(w, e->weights[k]);
    ld_wbuf_u64(w, e->draws_done);
}

/* Reads one saved experiment into e (spec fields that identify it, and
 * the evidence); the caller compares the identity before using it. */
static void exp_load(ld_rbuf_t *r, exp_t *e)
{
    ld_exp_spec_t *s = &e->spec;
    ld_rbuf_str(r, s->name, sizeof(s->name));
    s->type = ld_rbuf_u8(r);
    s->nvariants = ld_rbuf_u8(r);
    if (s->nvariants > LD_EXP_ARMS_MAX) {
        r->err = LD_ERR_CORRUPT;
        return;
    }
    for (size_t k = 0; k < s->nvariants; k++)
        ld_rbuf_str(r, s->variants[k], sizeof(s->variants[k]));
    s->metric = ld_rbuf_u8(r);
    s->direction = ld_rbuf_u8(r);
    s->reward = ld_rbuf_u8(r);
    s->min_effect = ld_rbuf_f64(r);
    s->alpha = ld_rbuf_f64(r);
    for (size_t k = 0; k < s->nvariants; k++)
        wf_load(r, &e->x[k]);
    wf_load(r, &e->paired);
    wf_load(r, &e->calib);
    e->n = ld_rbuf_u64(r);
    e->next_check = ld_rbuf_u64(r);
    e->p_value = ld_rbuf_f64(r);
    e->ci_lo = ld_rbuf_f64(r);
    e->ci_hi = ld_rbuf_f64(r);
    e->last_stat = ld_rbuf_f64(r);
    e->verdict = ld_rbuf_u8(r);
    e->seq = ld_rbuf_u64(r);
    e->next_emit_ms = ld_rbuf_i64(r);
    for (size_t k = 0; k < s->nvariants; k++)
        e->weights[k] = ld_rbuf_f64(r);
    e->draws_done = ld_rbuf_u64(r);
    if (e->verdict > LD_EXP_INCONCLUSIVE)
        r->err = LD_ERR_CORRUPT;
}

static int same_identity(const ld_exp_spec_t *a, const ld_exp_spec_t *b)
{
    if (strcmp(a->name, b->name) || a->type != b->type ||
        a->nvariants != b->nvariants || a->metric != b->metric ||
        a->direction != b->direction || a->reward != b->reward ||
        memcmp(&a->min_effect, &b->min_effect, sizeof(double)) ||
        memcmp(&a->alpha, &b->alpha, sizeof(double)))
        return 0;
    for (size_t k = 0; k < a->nvariants; k++)
        if (strcmp(a->variants[k], b->variants[k]))
            return 0;
    return 1;
}

static void decision_save(ld_wbuf_t *w, const ld_exp_decision_t *d)
{
    ld_wbuf_u8(w, (uint8_t)d->kind);
    ld_wbuf_str(w, d->experiment);
    ld_wbuf_u8(w, (uint8_t)d->type);
    ld_wbuf_u8(w, (uint8_t)d->verdict);
    ld_wbuf_u64(w, d->seq);
    ld_wbuf_str(w, d->idempotency_key);
    ld_wbuf_str(w, d->reason);
    ld_wbuf_i64(w, d->event_time_ms);
    ld_wbuf_u8(w, (uint8_t)d->metric);
    ld_wbuf_f64(w, d->effect);
    ld_wbuf_f64(w, d->ci_lo);
    ld_wbuf_f64(w, d->ci_hi);
    ld_wbuf_f64(w, d->statistic);
    ld_wbuf_f64(w, d->threshold);
    ld_wbuf_f64(w, d->p_value);
    ld_wbuf_u8(w, (uint8_t)d->narms);
    for (size_t k = 0; k < d->narms; k++) {
        ld_wbuf_str(w, d->arm[k].variant);
        ld_wbuf_u64(w, d->arm[k].n);
        ld_wbuf_f64(w, d->arm[k].mean);
        ld_wbuf_f64(w, d->arm[k].weight);
    }
}

static void decision_load(ld_rbuf_t *r, ld_exp_decision_t *d)
{
    d->kind = ld_rbuf_u8(r);
    ld_rbuf_str(r, d->experiment, sizeof(d->experiment));
    d->type = ld_rbuf_u8(r);
    d->verdict = ld_rbuf_u8(r);
    d->seq = ld_rbuf_u64(r);
    ld_rbuf_str(r, d->idempotency_key, sizeof(d->idempotency_key));
    ld_rbuf_str(r, d->reason, sizeof(d->reason));
    d->event_time_ms = ld_rbuf_i64(r);
    d->metric = ld_rbuf_u8(r);
    d->effect = ld_rbuf_f64(r);
    d->ci_lo = ld_rbuf_f64(r);
    d->ci_hi = ld_rbuf_f64(r);
    d->statistic = ld_rbuf_f64(r);
    d->threshold = ld_rbuf_f64(r);
    d->p_value = ld_rbuf_f64(r);
    d->narms = ld_rbuf_u8(r);
    if (d->narms > LD_EXP_ARMS_MAX || d->kind > LD_EXP_KIND_WEIGHTS) {
        r->err = LD_ERR_CORRUPT;
        return;
    }
    for (size_t k = 0; k < d->narms; k++) {
        ld_rbuf_str(r, d->arm[k].variant, sizeof(d->arm[k].variant));
        d->arm[k].n = ld_rbuf_u64(r);
        d->arm[k].mean = ld_rbuf_f64(r);
        d->arm[k].weight = ld_rbuf_f64(r);
    }
}

void ld_exp_set_save(const ld_exp_set_t *set, ld_wbuf_t *w)
{
    served_drain((ld_exp_set_t *)set);
    ld_wbuf_u32(w, STATE_MAGIC);
    ld_wbuf_u32(w, STATE_VERSION);
    ld_wbuf_u64(w, set->nvar);
    for (size_t i = 0; i < set->nvar; i++) {
        ld_wbuf_str(w, set->var[i]);
        accum_save(w, &set->acc[i]);
    }
    ld_wbuf_u64(w, set->nexp);
    for (size_t i = 0; i < set->nexp; i++)
        exp_save(w, &set->exp[i]);
    ld_wbuf_u64(w, set->nqueue);
    for (size_t i = 0; i < set->nqueue; i++)
        decision_save(w, &set->queue[i]);
    served_save(&set->served, w);
}

/* Restores the accumulators by name; remap[saved index] is today's index
 * (`other` for a variant no longer configured). */
static void load_variants(ld_exp_set_t *set, ld_rbuf_t *r, int *remap)
{
    uint64_t nvar = ld_rbuf_count(r, 4);
    if (nvar > LD_EXP_VARIANTS_MAX + 1) {
        r->err = LD_ERR_CORRUPT;
        return;
    }
    for (uint64_t i = 0; i < nvar && !r->err; i++) {
        char name[LD_EXP_NAME_MAX];
        accum_t a;
        ld_rbuf_str(r, name, sizeof(name));
        accum_load(r, &a);
        int v = ld_exp_set_variant(set, name, strlen(name));
        remap[i] = v;
        /* a variant no longer configured stays out: its outcomes belong
         * to a label value the metrics no longer show */
        if (!r->err && !strcmp(set->var[v], name))
            set->acc[v] = a;
    }
}

ld_err_t ld_exp_set_load(ld_exp_set_t *set, const void *buf, size_t len,
                         char *errstr, size_t errstr_size)
{
    served_drain(set); /* served before the load: replaced, as ever */
    ld_rbuf_t r = ld_rbuf_make(buf, len);
    if (ld_rbuf_u32(&r) != STATE_MAGIC || ld_rbuf_u32(&r) != STATE_VERSION) {
        ld_errstr_set(errstr, errstr_size,
                      "experiments state: bad magic or version");
        return LD_ERR_CORRUPT;
    }
    int remap[LD_EXP_VARIANTS_MAX + 1];
    for (size_t i = 0; i <= LD_EXP_VARIANTS_MAX; i++)
        remap[i] = (int)set->nvar - 1;
    load_variants(set, &r, remap);
    uint64_t nexp = ld_rbuf_count(&r, 8);
    for (uint64_t i = 0; i < nexp && !r.err; i++) {
        exp_t e;
        memset(&e, 0, sizeof(e));
        exp_load(&r, &e);
        if (r.err)
            break;
        size_t j = 0;
        while (j < set->nexp && strcmp(set->exp[j].spec.name, e.spec.name))
            j++;
        if (j == set->nexp)
            continue; /* no longer configured */
        exp_t *cur = &set->exp[j];
        if (!same_identity(&cur->spec, &e.spec)) {
            ld_log(LD_LOG_WARN, "experiments",
                   "msg=\"experiment changed since the saved state; its "
                   "evidence starts afresh\" experiment=%s",
                   ld_log_q(e.spec.name));
            continue;
        }
        e.spec = cur->spec; /* keep the rest of today's settings */
        memcpy(e.arm, cur->arm, sizeof(e.arm));
        *cur = e;
    }
    uint64_t nq = ld_rbuf_count(&r, 16);
    ld_exp_set_clear(set);
    for (uint64_t i = 0; i < nq && !r.err; i++) {
        ld_exp_decision_t *d = queue_push(set);
        if (!d) {
            ld_errstr_set(errstr, errstr_size, "out of memory");
            return LD_ERR_NOMEM;
        }
        decision_load(&r, d);
    }
    served_load(&set->served, &r);
    if (!r.err && served_remap(&set->served, remap, (int)set->nvar - 1) < 0)
        r.err = LD_ERR_CORRUPT;
    if (r.err || ld_rbuf_left(&r) != 0) {
        ld_errstr_set(errstr, errstr_size,
                      "experiments state: truncated or damaged");
        return LD_ERR_CORRUPT;
    }
    return LD_OK;
}
