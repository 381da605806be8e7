/* SPDX-License-Identifier: Apache-2.0 */
/* Decisions as events: ExperimentDecision and RoutingWeights in JSON
 * (schemas/experiment.schema.json) or protobuf (learnd.proto), with no
 * wall-clock field, so a replay produces the same bytes. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "experiments/internal.h"
#include "schemas/learnd.pb-c.h"

static const char *metric_names[] = {"label_mean", "logloss", "sqerr"};

static json_t *num(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static json_t *arms_json(const ld_exp_decision_t *d)
{
    json_t *arr = json_array();
    for (size_t k = 0; k < d->narms; k++) {
        json_t *a = json_object();
        json_object_set_new(a, "variant", json_string(d->arm[k].variant));
        json_object_set_new(a, "n", json_integer((json_int_t)d->arm[k].n));
        json_object_set_new(a, "mean", num(d->arm[k].mean));
        json_object_set_new(a, "weight", num(d->arm[k].weight));
        json_array_append_new(arr, a);
    }
    return arr;
}

static char *encode_json(const ld_exp_decision_t *d, const char *model)
{
    json_t *o = json_object();
    int w = d->kind == LD_EXP_KIND_WEIGHTS;
    json_object_set_new(o, "schema_version", json_integer(1));
    json_object_set_new(
        o, "kind", json_string(w ? "routing_weights" : "experiment_decision"));
    json_object_set_new(o, "experiment", json_string(d->experiment));
    json_object_set_new(o, "idempotency_key", json_string(d->idempotency_key));
    json_object_set_new(o, "seq", json_integer((json_int_t)d->seq));
    json_object_set_new(o, "event_time",
                        json_integer((json_int_t)d->event_time_ms));
    json_object_set_new(o, "model", json_string(model ? model : ""));
    json_object_set_new(o, "arms", arms_json(d));
    if (!w) {
        json_object_set_new(o, "type", json_string(ld_exp_type_name(d->type)));
        json_object_set_new(o, "verdict",
                            json_string(ld_exp_verdict_name(d->verdict)));
        json_object_set_new(o, "reason", json_string(d->reason));
        json_object_set_new(o, "metric", json_string(metric_names[d->metric]));
        json_object_set_new(o, "effect", num(d->effect));
        json_object_set_new(o, "ci_low", num(d->ci_lo));
        json_object_set_new(o, "ci_high", num(d->ci_hi));
        json_object_set_new(o, "statistic", num(d->statistic));
        json_object_set_new(o, "threshold", num(d->threshold));
        json_object_set_new(o, "p_value", num(d->p_value));
    }
    char *s =
        json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
    json_decref(o);
    return s;
}

static ld_err_t encode_pb(const ld_exp_decision_t *d, const char *model,
                          uint8_t **out, size_t *len)
{
    Learnd__V1__ExperimentArm arm[LD_EXP_ARMS_MAX], *parm[LD_EXP_ARMS_MAX];
    for (size_t k = 0; k < d->narms; k++) {
        learnd__v1__experiment_arm__init(&arm[k]);
        arm[k].variant = (char *)d->arm[k].variant;
        arm[k].n = d->arm[k].n;
        arm[k].mean = d->arm[k].mean;
        arm[k].weight = isnan(d->arm[k].weight) ? 0 : d->arm[k].weight;
        parm[k] = &arm[k];
    }
    size_t n;
    if (d->kind == LD_EXP_KIND_WEIGHTS) {
        Learnd__V1__RoutingWeights m = LEARND__V1__ROUTING_WEIGHTS__INIT;
        m.experiment = (char *)d->experiment;
        m.idempotency_key = (char *)d->idempotency_key;
        m.seq = d->seq;
        m.event_time = d->event_time_ms;
        m.n_arms = d->narms;
        m.arms = parm;
        m.model = (char *)(model ? model : "");
        m.schema_version = 1;
        n = learnd__v1__routing_weights__get_packed_size(&m);
        if (!(*out = malloc(n ? n : 1)))
            return LD_ERR_NOMEM;
        *len = learnd__v1__routing_weights__pack(&m, *out);
        return LD_OK;
    }
    Learnd__V1__ExperimentDecision m = LEARND__V1__EXPERIMENT_DECISION__INIT;
    m.experiment = (char *)d->experiment;
    m.type = (Learnd__V1__ExperimentType)(d->type + 1);
    m.verdict = (Learnd__V1__ExperimentVerdict)(d->verdict + 1);
    m.reason = (char *)d->reason;
    m.idempotency_key = (char *)d->idempotency_key;
    m.seq = d->seq;
    m.event_time = d->event_time_ms;
    m.metric = (char *)metric_names[d->metric];
    m.effect = d->effect;
    m.ci_low = d->ci_lo;
    m.ci_high = d->ci_hi;
    m.statistic = d->statistic;
    m.threshold = d->threshold;
    m.p_value = d->p_value;
    m.n_arms = d->narms;
    m.arms = parm;
    m.model = (char *)(model ? model : "");
    m.schema_version = 1;
    n = learnd__v1__experiment_decision__get_packed_size(&m);
    if (!(*out = malloc(n ? n : 1)))
        return LD_ERR_NOMEM;
    *len = learnd__v1__experiment_decision__pack(&m, *out);
    return LD_OK;
}

ld_err_t ld_exp_decision_encode(const ld_exp_decision_t *d, const char *model,
                                int protobuf, uint8_t **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    if (protobuf)
        return encode_pb(d, model, out, len);
    char *s = encode_json(d, model);
    if (!s)
        return LD_ERR_NOMEM;
    *out = (uint8_t *)s;
    *len = strlen(s);
    return LD_OK;
}

const char *ld_exp_decision_type_header(const ld_exp_decision_t *d)
{
    return d->kind == LD_EXP_KIND_WEIGHTS ? "RoutingWeights"
                                          : "ExperimentDecision";
}
