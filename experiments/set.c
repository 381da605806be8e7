/* SPDX-License-Identifier: Apache-2.0 */
/* The experiment set: specs and their checks, the bounded variant list
 * (configured names plus `other`), and the per-example entry points the
 * run loop calls. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "experiments/internal.h"

static const char *type_names[] = {"ab", "canary", "shadow", "bandit"};
static const char *verdict_names[] = {"CONTINUE", "PROMOTE", "ROLLBACK",
                                      "INCONCLUSIVE"};

const char *ld_exp_type_name(int type)
{
    return type >= 0 && type < 4 ? type_names[type] : "unknown";
}

const char *ld_exp_verdict_name(int verdict)
{
    return verdict >= 0 && verdict < 4 ? verdict_names[verdict] : "unknown";
}

void ld_exp_spec_init(ld_exp_spec_t *spec, const char *name, int type)
{
    memset(spec, 0, sizeof(*spec));
    snprintf(spec->name, sizeof(spec->name), "%s", name ? name : "");
    spec->type = type;
    spec->metric = type == LD_EXP_SHADOW ? LD_EXP_METRIC_LOGLOSS
                                         : LD_EXP_METRIC_LABEL_MEAN;
    spec->direction = LD_EXP_HIGHER;
    spec->min_effect = 0.005;
    spec->alpha = 0.05;
    spec->max_samples = 1000000;
    spec->min_samples = 1000;
    spec->check_every = 1000;
    spec->noninferiority = -1;
    spec->guard_calibration = 0;
    spec->guard_label_min = NAN;
    spec->reward = LD_EXP_REWARD_BERNOULLI;
    spec->interval_ms = 60000;
    spec->min_weight = 0.01;
    spec->draws = 1000;
    spec->seed = 0;
}

#define BAD(...)                                                               \
    do {                                                                       \
        ld_errstr_set(errstr, errstr_size, __VA_ARGS__);                       \
        return LD_ERR_CONFIG;                                                  \
    } while (0)

ld_err_t ld_exp_spec_check(const ld_exp_spec_t *s, char *errstr,
                           size_t errstr_size)
{
    if (!s->name[0])
        BAD("an experiment needs a name");
    if (s->type < LD_EXP_AB || s->type > LD_EXP_BANDIT)
        BAD("experiment %s: unknown type %d", s->name, s->type);
    size_t want = s->type == LD_EXP_BANDIT ? 0 : 2;
    if (want && s->nvariants != want)
        BAD("experiment %s: %s needs exactly 2 variants (%s), has %zu", s->name,
            type_names[s->type],
            s->type == LD_EXP_SHADOW ? "served, shadow" : "control, treatment",
            s->nvariants);
    if (!want && (s->nvariants < 2 || s->nvariants > LD_EXP_ARMS_MAX))
        BAD("experiment %s: a bandit needs 2 to %d variants, has %zu", s->name,
            LD_EXP_ARMS_MAX, s->nvariants);
    for (size_t i = 0; i < s->nvariants; i++) {
        if (!s->variants[i][0] || !strcmp(s->variants[i], LD_EXP_OTHER))
            BAD("experiment %s: variant %zu must be a name other than "
                "\"" LD_EXP_OTHER "\"",
                s->name, i + 1);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(s->variants[i], s->variants[j]))
                BAD("experiment %s: variant %s named twice", s->name,
                    s->variants[i]);
    }
    if (s->type == LD_EXP_SHADOW && s->metric == LD_EXP_METRIC_LABEL_MEAN)
        BAD("experiment %s: shadow compares scores on the same events; "
            "metric must be logloss or sqerr",
            s->name);
    if (!(s->alpha > 0 && s->alpha <= 0.5))
        BAD("experiment %s: alpha must be in (0, 0.5]", s->name);
    if (!(s->min_effect > 0) || !isfinite(s->min_effect))
        BAD("experiment %s: min_effect must be > 0", s->name);
    if (s->min_samples < 2 || s->check_every < 1 ||
        s->max_samples < s->min_samples)
        BAD("experiment %s: need min_samples >= 2, check_every >= 1 and "
            "max_samples >= min_samples",
            s->name);
    if (s->type == LD_EXP_BANDIT &&
        (s->interval_ms < 1 || s->draws < 10 || s->min_weight < 0 ||
         (double)s->nvariants * s->min_weight >= 1.0))
        BAD("experiment %s: a bandit needs interval >= 1ms, draws >= 10 and "
            "min_weight * variants < 1",
            s->name);
    return LD_OK;
}

static int add_variant(ld_exp_set_t *set, const char *name)
{
    for (size_t i = 0; i < set->nvar; i++)
        if (!strcmp(set->var[i], name))
            return (int)i;
    if (set->nvar == LD_EXP_VARIANTS_MAX)
        return -1;
    snprintf(set->var[set->nvar], LD_EXP_NAME_MAX, "%s", name);
    return (int)set->nvar++;
}

ld_exp_set_t *ld_exp_set_new(const ld_exp_spec_t *specs, size_t n, char *errstr,
                             size_t errstr_size)
{
    if (n > LD_EXP_MAX) {
        ld_errstr_set(errstr, errstr_size, "at most %d experiments, not %zu",
                      LD_EXP_MAX, n);
        return NULL;
    }
    ld_exp_set_t *set = calloc(1, sizeof(*set));
    if (!set) {
        ld_errstr_set(errstr, errstr_size, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (ld_exp_spec_check(&specs[i], errstr, errstr_size) != LD_OK)
            goto err;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(specs[i].name, specs[j].name)) {
                ld_errstr_set(errstr, errstr_size, "experiment %s named twice",
                              specs[i].name);
                goto err;
            }
        exp_t *e = &set->exp[set->nexp++];
        e->spec = specs[i];
        for (size_t k = 0; k < specs[i].nvariants; k++) {
            e->arm[k] = add_variant(set, specs[i].variants[k]);
            if (e->arm[k] < 0) {
                ld_errstr_set(errstr, errstr_size,
                              "more than %d variants across experiments",
                              LD_EXP_VARIANTS_MAX);
                goto err;
            }
            e->weights[k] = 1.0 / (double)specs[i].nvariants;
        }
        e->next_check = (uint64_t)specs[i].check_every;
        e->p_value = 1.0;
        e->ci_lo = e->ci_hi = e->last_stat = NAN;
        e->next_emit_ms = INT64_MIN;
    }
    snprintf(set->var[set->nvar++], LD_EXP_NAME_MAX, "%s", LD_EXP_OTHER);
    set->served.horizon_ms = 7 * 86400 * INT64_C(1000);
    set->served.newest_ms = INT64_MIN;
    return set;
err:
    ld_exp_set_destroy(set);
    return NULL;
}

void ld_exp_set_destroy(ld_exp_set_t *set)
{
    if (!set)
        return;
    free(set->queue);
    served_free(&set->served);
    free(set);
}

size_t ld_exp_set_nvariants(const ld_exp_set_t *set)
{
    return set->nvar;
}

const char *ld_exp_set_variant_name(const ld_exp_set_t *set, size_t i)
{
    return i < set->nvar ? set->var[i] : NULL;
}

int ld_exp_set_variant(const ld_exp_set_t *set, const char *name, size_t len)
{
    /* a handful of names: a scan beats hashing at this size. Names are
     * shorter than LD_EXP_NAME_MAX and zero-padded: the same len bytes, a
     * zero after them and none as the last of them is a name of exactly
     * len (a strlen of each name per event was a tenth of a serve) */
    if (len < LD_EXP_NAME_MAX)
        for (size_t i = 0; i + 1 < set->nvar; i++)
            if (!memcmp(set->var[i], name, len) && !set->var[i][len] &&
                (len == 0 || set->var[i][len - 1]))
                return (int)i;
    return (int)set->nvar - 1;
}

size_t ld_exp_set_count(const ld_exp_set_t *set)
{
    return set->nexp;
}

void ld_exp_set_expose(ld_exp_set_t *set, int variant)
{
    if (variant >= 0 && (size_t)variant < set->nvar)
        set->acc[variant].exposed++;
}

size_t ld_exp_set_observe(ld_exp_set_t *set, const ld_exp_obs_t *obs)
{
    if (obs->variant < 0 || (size_t)obs->variant >= set->nvar ||
        !isfinite(obs->label))
        return 0;
    obs_ctx_t c = {obs, 0, 0};
    accum_add(&set->acc[obs->variant], &c);
    size_t queued = 0;
    for (size_t i = 0; i < set->nexp; i++)
        queued += (size_t)exp_observe(set, &set->exp[i], &c);
    return queued;
}

const ld_exp_decision_t *ld_exp_set_pending(const ld_exp_set_t *set, size_t *n)
{
    *n = set->nqueue;
    return set->queue;
}

void ld_exp_set_clear(ld_exp_set_t *set)
{
    set->nqueue = 0;
}

int ld_exp_set_verdict(const ld_exp_set_t *set, size_t i)
{
    return i < set->nexp ? set->exp[i].verdict : LD_EXP_CONTINUE;
}

size_t ld_exp_set_weights(const ld_exp_set_t *set, size_t i,
                          double w[LD_EXP_ARMS_MAX])
{
    if (i >= set->nexp || set->exp[i].spec.type != LD_EXP_BANDIT)
        return 0;
    const exp_t *e = &set->exp[i];
    for (size_t k = 0; k < e->spec.nvariants; k++)
        w[k] = e->weights[k];
    return e->spec.nvariants;
}

const char *ld_exp_set_name(const ld_exp_set_t *set, size_t i)
{
    return i < set->nexp ? set->exp[i].spec.name : NULL;
}

const char *ld_exp_set_arm_name(const ld_exp_set_t *set, size_t i, size_t k)
{
    if (i >= set->nexp || k >= set->exp[i].spec.nvariants)
        return NULL;
    return set->exp[i].spec.variants[k];
}
