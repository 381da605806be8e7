/* SPDX-License-Identifier: Apache-2.0 */
/* Trigger events: a decision encoded as JSON (schemas/trigger.schema.json)
 * or as the protobuf learnd.v1.TriggerEvent. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "triggers/internal.h"

#ifdef LD_TRIGGERS_HAVE_PROTOBUF
#include "schemas/learnd.pb-c.h"
#endif

static const char *severity_name(int sev)
{
    switch (sev) {
    case LD_TRIGGER_SEV_WARN:
        return "warn";
    case LD_TRIGGER_SEV_ALERT:
        return "alert";
    }
    return "info";
}

static const char *wire_verdict(ld_trigger_verdict_t v)
{
    switch (v) {
    case LD_TRIGGER_VERDICT_PASS:
        return "PASS";
    case LD_TRIGGER_VERDICT_SKIPPED:
        return "SKIPPED";
    case LD_TRIGGER_VERDICT_INCONCLUSIVE:
        return "INCONCLUSIVE";
    default:
        return "FAIL";
    }
}

/* JSON has no NaN or infinity; statistics are finite by construction, and
 * this keeps a surprise from making an invalid event. */
static double finite_or_clamped(double v)
{
    if (isnan(v))
        return 0.0;
    if (isinf(v))
        return v > 0 ? DBL_MAX : -DBL_MAX;
    return v;
}

static void hex32(const uint8_t *b, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[64] = '\0';
}

/* json_object_set_new that remembers a failure in *ok. */
static void put(json_t *obj, const char *key, json_t *v, int *ok)
{
    if (!v || json_object_set_new(obj, key, v))
        *ok = 0;
}

static json_t *version_or_null(uint64_t v)
{
    return v ? json_integer((json_int_t)v) : json_null();
}

static json_t *num_or_null(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static ld_err_t encode_json(const ld_trigger_decision_t *d,
                            const ld_trigger_publication_t *pub,
                            int64_t created_at, uint8_t **out, size_t *len)
{
    int ok = 1;
    json_t *root = json_object();
    json_t *win = json_object(), *model = json_object();
    json_t *evs = json_array(), *drifted = json_array();
    json_t *dec = json_object();
    if (!root || !win || !model || !evs || !drifted || !dec) {
        json_decref(win);
        json_decref(model);
        json_decref(evs);
        json_decref(drifted);
        json_decref(dec);
        ok = 0;
        goto out;
    }
    put(root, "schema_version", json_integer(1), &ok);
    put(root, "trigger_id", json_string(d->id), &ok);
    put(root, "type", json_string(ld_trigger_type_name(d->type)), &ok);
    put(root, "severity", json_string(severity_name(d->severity)), &ok);
    put(root, "created_at", json_integer(created_at), &ok);
    put(root, "event_time", json_integer(d->event_time), &ok);

    put(win, "start", json_integer(d->win_start), &ok);
    put(win, "end", json_integer(d->win_end), &ok);
    put(win, "watermark", json_integer(d->watermark), &ok);
    put(root, "window", win, &ok);

    put(model, "name", json_string(d->model), &ok);
    put(model, "champion_version", version_or_null(d->champion_version), &ok);
    put(model, "challenger_version", version_or_null(d->challenger_version),
        &ok);
    put(model, "checkpoint_topic", json_string(d->topic), &ok);
    if (pub) {
        char hex[65];
        hex32(pub->sha256, hex);
        put(model, "checkpoint_partition", json_integer(pub->partition), &ok);
        put(model, "manifest_offset", json_integer(pub->manifest_offset), &ok);
        put(model, "path",
            pub->path && *pub->path ? json_string(pub->path) : json_null(),
            &ok);
        put(model, "checkpoint_sha256", json_string(hex), &ok);
    } else {
        put(model, "checkpoint_partition", json_null(), &ok);
        put(model, "manifest_offset", json_null(), &ok);
        put(model, "path", json_null(), &ok);
        put(model, "checkpoint_sha256", json_null(), &ok);
    }
    put(root, "model", model, &ok);

    for (size_t i = 0; i < d->nev && ok; i++) {
        const ld_trigger_evidence_t *e = &d->ev[i];
        json_t *o = json_object();
        if (!o) {
            ok = 0;
            break;
        }
        put(o, "metric", json_string(e->metric), &ok);
        put(o, "statistic", json_string(e->statistic), &ok);
        put(o, "value", json_real(finite_or_clamped(e->value)), &ok);
        put(o, "threshold", json_real(finite_or_clamped(e->threshold)), &ok);
        put(o, "p_value", num_or_null(e->p_value), &ok);
        put(o, "method", json_string(e->method), &ok);
        put(o, "n", json_integer((json_int_t)e->n), &ok);
        put(o, "reference", num_or_null(e->reference), &ok);
        if (json_array_append_new(evs, o))
            ok = 0;
    }
    put(root, "evidence", evs, &ok);
    for (size_t i = 0; i < d->ndrift && ok; i++)
        if (json_array_append_new(drifted, json_string(d->drifted[i])))
            ok = 0;
    put(root, "drifted_features", drifted, &ok);

    put(dec, "action",
        json_string(d->action == LD_TRIGGER_ACTION_ALERT ? "alert" : "publish"),
        &ok);
    put(dec, "verdict", json_string(wire_verdict(d->verdict)), &ok);
    put(dec, "reason", json_string(d->reason), &ok);
    put(root, "decision", dec, &ok);
    put(root, "idempotency_key", json_string(d->key), &ok);
out:;
    char *s = ok ? json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER |
                                        JSON_REAL_PRECISION(17))
                 : NULL;
    json_decref(root);
    if (!s)
        return LD_ERR_NOMEM;
    *len = strlen(s);
    /* json_dumps allocates with jansson's allocator (malloc by default);
     * copy so the caller's free() is always right. */
    *out = malloc(*len + 1);
    if (!*out) {
        free(s);
        return LD_ERR_NOMEM;
    }
    memcpy(*out, s, *len + 1);
    free(s);
    return LD_OK;
}

#ifdef LD_TRIGGERS_HAVE_PROTOBUF
static ld_err_t encode_protobuf(const ld_trigger_decision_t *d,
                                const ld_trigger_publication_t *pub,
                                int64_t created_at, uint8_t **out, size_t *len)
{
    Learnd__V1__TriggerEvent ev = LEARND__V1__TRIGGER_EVENT__INIT;
    Learnd__V1__TriggerEvent__Window win =
        LEARND__V1__TRIGGER_EVENT__WINDOW__INIT;
    Learnd__V1__TriggerEvent__Model model =
        LEARND__V1__TRIGGER_EVENT__MODEL__INIT;
    Learnd__V1__TriggerEvent__Decision dec =
        LEARND__V1__TRIGGER_EVENT__DECISION__INIT;
    Learnd__V1__TriggerEvent__Evidence *evs = NULL, **evp = NULL;
    ld_err_t err = LD_ERR_NOMEM;
    char **drifted = NULL;

    ev.schema_version = 1;
    ev.trigger_id = (char *)d->id;
    ev.type =
        (Learnd__V1__TriggerType)(LEARND__V1__TRIGGER_TYPE__TRIGGER_TYPE_TIME +
                                  (int)d->type);
    ev.severity = (Learnd__V1__Severity)d->severity; /* INFO=1..ALERT=3 */
    ev.created_at = created_at;
    ev.event_time = d->event_time;
    win.start = d->win_start;
    win.end = d->win_end;
    win.watermark = d->watermark;
    ev.window = &win;
    model.name = (char *)d->model;
    model.champion_version = d->champion_version;
    model.challenger_version = d->challenger_version;
    model.checkpoint_topic = (char *)d->topic;
    if (pub) {
        model.opt_manifest_offset_case =
            LEARND__V1__TRIGGER_EVENT__MODEL__OPT_MANIFEST_OFFSET_MANIFEST_OFFSET;
        model.manifest_offset = pub->manifest_offset;
        model.checkpoint_partition = pub->partition;
        model.checkpoint_sha256.data = (uint8_t *)pub->sha256;
        model.checkpoint_sha256.len = 32;
        if (pub->path)
            model.path = (char *)pub->path;
    }
    ev.model = &model;
    if (d->nev) {
        evs = calloc(d->nev, sizeof(*evs));
        evp = calloc(d->nev, sizeof(*evp));
        if (!evs || !evp)
            goto err;
    }
    for (size_t i = 0; i < d->nev; i++) {
        const ld_trigger_evidence_t *e = &d->ev[i];
        Learnd__V1__TriggerEvent__Evidence init =
            LEARND__V1__TRIGGER_EVENT__EVIDENCE__INIT;
        evs[i] = init;
        evs[i].metric = (char *)e->metric;
        evs[i].statistic = (char *)e->statistic;
        evs[i].method = (char *)e->method;
        evs[i].value = e->value;
        evs[i].threshold = e->threshold;
        evs[i].n = e->n;
        if (isfinite(e->p_value)) {
            evs[i].opt_p_value_case =
                LEARND__V1__TRIGGER_EVENT__EVIDENCE__OPT_P_VALUE_P_VALUE;
            evs[i].p_value = e->p_value;
        }
        if (isfinite(e->reference)) {
            evs[i].opt_reference_case =
                LEARND__V1__TRIGGER_EVENT__EVIDENCE__OPT_REFERENCE_REFERENCE;
            evs[i].reference = e->reference;
        }
        evp[i] = &evs[i];
    }
    ev.n_evidence = d->nev;
    ev.evidence = evp;
    if (d->ndrift) {
        drifted = calloc(d->ndrift, sizeof(*drifted));
        if (!drifted)
            goto err;
        for (size_t i = 0; i < d->ndrift; i++)
            drifted[i] = (char *)d->drifted[i];
    }
    ev.n_drifted_features = d->ndrift;
    ev.drifted_features = drifted;
    dec.action = d->action == LD_TRIGGER_ACTION_ALERT
                     ? LEARND__V1__ACTION__ACTION_ALERT
                     : LEARND__V1__ACTION__ACTION_PUBLISH;
    dec.verdict = d->verdict == LD_TRIGGER_VERDICT_PASS
                      ? LEARND__V1__VERDICT__VERDICT_PASS
                  : d->verdict == LD_TRIGGER_VERDICT_SKIPPED
                      ? LEARND__V1__VERDICT__VERDICT_SKIPPED
                  : d->verdict == LD_TRIGGER_VERDICT_INCONCLUSIVE
                      ? LEARND__V1__VERDICT__VERDICT_INCONCLUSIVE
                      : LEARND__V1__VERDICT__VERDICT_FAIL;
    dec.reason = (char *)d->reason;
    ev.decision = &dec;
    ev.idempotency_key = (char *)d->key;

    *len = learnd__v1__trigger_event__get_packed_size(&ev);
    *out = malloc(*len ? *len : 1);
    if (!*out)
        goto err;
    learnd__v1__trigger_event__pack(&ev, *out);
    err = LD_OK;
err:
    free(evs);
    free(evp);
    free(drifted);
    return err;
}
#endif

ld_err_t ld_trigger_event_encode(const ld_trigger_decision_t *d,
                                 const ld_trigger_publication_t *pub,
                                 int64_t created_at_ms, int format,
                                 uint8_t **out, size_t *len)
{
    if (!d || !out || !len)
        return LD_ERR_INVAL;
    if ((d->verdict == LD_TRIGGER_VERDICT_PASS) != (pub != NULL))
        return LD_ERR_INVAL;
    if (pub && !pub->sha256)
        return LD_ERR_INVAL;
    switch (format) {
    case LD_TRIGGER_FORMAT_JSON:
        return encode_json(d, pub, created_at_ms, out, len);
#ifdef LD_TRIGGERS_HAVE_PROTOBUF
    case LD_TRIGGER_FORMAT_PROTOBUF:
        return encode_protobuf(d, pub, created_at_ms, out, len);
#endif
    }
    return LD_ERR_INVAL;
}
