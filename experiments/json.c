/* SPDX-License-Identifier: Apache-2.0 */
/* The set's current state as JSON for GET /experiments and
 * /experiments/<name>: what Argo Rollouts' Web provider and Flagger's
 * metric templates read (docs/EXPERIMENTS.md). */
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "experiments/internal.h"

/* NaN and infinities are not JSON: they go out as null. */
static json_t *num(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static json_t *exp_json(const ld_exp_set_t *set, const exp_t *e)
{
    const ld_exp_spec_t *s = &e->spec;
    static const char *metrics[] = {"label_mean", "logloss", "sqerr"};
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(s->name));
    json_object_set_new(o, "type", json_string(ld_exp_type_name(s->type)));
    json_object_set_new(o, "verdict",
                        json_string(ld_exp_verdict_name(e->verdict)));
    json_object_set_new(
        o, "decided",
        json_boolean(s->type != LD_EXP_BANDIT && e->verdict != 0));
    json_object_set_new(o, "metric", json_string(metrics[s->metric]));
    json_object_set_new(
        o, "direction",
        json_string(s->direction == LD_EXP_HIGHER ? "higher" : "lower"));
    json_object_set_new(o, "n", json_integer((json_int_t)e->n));
    json_object_set_new(o, "decisions", json_integer((json_int_t)e->seq));
    if (s->type != LD_EXP_BANDIT) {
        double eff = s->type == LD_EXP_SHADOW ? e->paired.mean
                                              : e->x[1].mean - e->x[0].mean;
        json_object_set_new(o, "effect", num(e->n ? eff : NAN));
        json_object_set_new(o, "ci_lo", num(e->ci_lo));
        json_object_set_new(o, "ci_hi", num(e->ci_hi));
        json_object_set_new(o, "statistic", num(e->last_stat));
        json_object_set_new(o, "threshold", num(-log(s->alpha)));
        json_object_set_new(o, "p_value", num(e->p_value));
        json_object_set_new(o, "alpha", json_real(s->alpha));
        json_object_set_new(o, "max_samples",
                            json_integer((json_int_t)s->max_samples));
    }
    json_t *arms = json_array();
    for (size_t k = 0; k < s->nvariants; k++) {
        const accum_t *acc = &set->acc[e->arm[k]];
        json_t *a = json_object();
        json_object_set_new(a, "variant", json_string(s->variants[k]));
        json_object_set_new(a, "n", json_integer((json_int_t)e->x[k].n));
        json_object_set_new(a, "mean", num(e->x[k].n ? e->x[k].mean : NAN));
        json_object_set_new(
            a, "pending",
            json_integer((json_int_t)(acc->exposed > acc->label.n
                                          ? acc->exposed - acc->label.n
                                          : 0)));
        if (s->type == LD_EXP_BANDIT)
            json_object_set_new(a, "weight", json_real(e->weights[k]));
        json_array_append_new(arms, a);
    }
    json_object_set_new(o, "arms", arms);
    return o;
}

static json_t *variants_json(const ld_exp_set_t *set)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < set->nvar; i++) {
        ld_exp_variant_stats_t st;
        ld_exp_set_variant_stats(set, i, &st);
        json_t *v = json_object();
        json_object_set_new(v, "variant", json_string(set->var[i]));
        json_object_set_new(v, "n", json_integer((json_int_t)st.n));
        json_object_set_new(v, "pending", json_integer((json_int_t)st.pending));
        json_object_set_new(v, "label_mean", num(st.label_mean));
        json_object_set_new(v, "ci_lo", num(st.ci_lo));
        json_object_set_new(v, "ci_hi", num(st.ci_hi));
        json_object_set_new(v, "logloss", num(st.logloss));
        json_object_set_new(v, "calibration", num(st.calibration));
        json_object_set_new(v, "auc", num(st.auc));
        json_array_append_new(arr, v);
    }
    return arr;
}

char *ld_exp_set_json(const ld_exp_set_t *set, const char *name)
{
    served_drain((ld_exp_set_t *)set); /* the exposure counts */
    json_t *root = NULL;
    if (name) {
        for (size_t i = 0; i < set->nexp && !root; i++)
            if (!strcmp(set->exp[i].spec.name, name))
                root = exp_json(set, &set->exp[i]);
        if (!root)
            return NULL;
    } else {
        root = json_object();
        json_t *arr = json_array();
        for (size_t i = 0; i < set->nexp; i++)
            json_array_append_new(arr, exp_json(set, &set->exp[i]));
        json_object_set_new(root, "experiments", arr);
        json_object_set_new(root, "variants", variants_json(set));
    }
    char *out = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(17));
    json_decref(root);
    return out;
}
