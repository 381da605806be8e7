/* SPDX-License-Identifier: Apache-2.0 */
/* The run loop's side of experiments: what served each event goes into the
 * experiment set at ingestion, its matured example comes out of it in
 * release order, and the set's state shows on /metrics and /experiments
 * (docs/EXPERIMENTS.md). */
#include "daemon/run_internal.h"

#define MOD "experiments"

static const char *flaw_names[] = {"no_variant", "bad_variant", "bad_score",
                                   "bad_propensity", "bad_shadow"};

int run_exp_setup(run_t *r, char *errstr, size_t size)
{
    const ld_config_t *c = r->conf;
    const ld_pipeline_conf_t *pc = &c->pipeline;
    if (!c->nexperiments &&
        !(pc->served_variant_field && pc->served_variant_field[0]))
        return LD_EXIT_OK; /* nothing served: no set, no cost */
    ld_exp_spec_t *specs = calloc(c->nexperiments + 1, sizeof(*specs));
    if (!specs) {
        snprintf(errstr, size, "out of memory");
        return LD_EXIT_RUNTIME;
    }
    for (size_t i = 0; i < c->nexperiments; i++)
        if (ld_exp_conf_to_spec(&c->experiments[i], &specs[i], errstr, size)) {
            free(specs);
            return LD_EXIT_USAGE;
        }
    r->exp = ld_exp_set_new(specs, c->nexperiments, errstr, size);
    free(specs);
    if (!r->exp)
        return LD_EXIT_USAGE;
    /* an event the joiner never releases is evicted two windows on */
    ld_exp_set_horizon(r->exp, 2 * c->labeling.window_ms);
    for (size_t i = 0; i < pc->served_shadow_fields.n; i++) {
        const char *e = pc->served_shadow_fields.v[i];
        const char *colon = strchr(e, ':');
        r->exp_shadow[i] = ld_exp_set_variant(
            r->exp, e, colon ? (size_t)(colon - e) : strlen(e));
    }
    ld_metrics_family(r->reg, "served_flaws_total", LD_METRIC_COUNTER,
                      "Served-decision fields of events left out, by reason "
                      "(the events still train)");
    return LD_EXIT_OK;
}

void run_exp_serve(run_t *r, const ld_record_t *rec)
{
    const ld_served_t *s = &rec->served;
    for (int b = 0; b < 5; b++)
        if (s->flaws & (1u << b))
            r->exp_flaws[b]++;
    if (!r->exp || s->variant_len < 0)
        return;
    ld_exp_served_t sv = {
        ld_exp_set_variant(r->exp, s->variant, (size_t)s->variant_len),
        s->score,
        s->propensity,
        0,
        {{0, 0}}};
    for (size_t i = 0; i < s->nshadow && i < LD_EXP_SHADOW_MAX; i++)
        if (!isnan(s->shadow[i])) {
            sv.shadow[sv.nshadow].variant = r->exp_shadow[i];
            sv.shadow[sv.nshadow++].score = s->shadow[i];
        }
    ld_exp_set_serve(r->exp, rec->partition, rec->offset, rec->time_ms, &sv);
}

/* A replay writes nothing: it prints each decision it reaches with the
 * SHA-256 of the bytes a run wrote for it, for `replay --verify` and its
 * tests to hold against the triggers topic. */
static void replay_print(run_t *r)
{
    size_t n;
    const ld_exp_decision_t *d = ld_exp_set_pending(r->exp, &n);
    int pb = r->conf->triggers.format == LD_TRIGGER_FORMAT_PROTOBUF;
    for (size_t i = 0; i < n; i++) {
        uint8_t *val, sha[32];
        size_t len;
        if (ld_exp_decision_encode(&d[i], r->tconf.name, pb, &val, &len))
            continue;
        ld_ckpt_sha256(val, len, sha);
        free(val);
        printf("experiment %s %s sha256=", d[i].idempotency_key,
               d[i].kind ? "weights" : ld_exp_verdict_name(d[i].verdict));
        for (int b = 0; b < 32; b++)
            printf("%02x", sha[b]);
        putchar('\n');
    }
    ld_exp_set_clear(r->exp);
}

void run_exp_scored(run_t *r, const ld_scored_t *s, size_t n)
{
    if (!r->exp)
        return;
    /* the table's lines of a whole batch in flight at once: each mature
     * below would otherwise wait for its own cache misses in turn */
    for (size_t i = 0; i < n; i++)
        ld_exp_set_prefetch(r->exp, s[i].ex->partition, s[i].ex->offset);
    for (size_t i = 0; i < n; i++) {
        const ld_example_t *ex = s[i].ex;
        /* an event counts once, at its first release: a delayed positive
         * after a default negative is the same event again */
        if (ex->sample_type == LD_SAMPLE_DELAYED_POS)
            continue;
        ld_exp_set_mature(r->exp, ex->partition, ex->offset, ex->label,
                          ex->event_time_ms);
    }
    if (!r->in->writes) /* no commit point writes them */
        replay_print(r);
}

/* learnd_variant_*{variant}: the label is one of a configured list plus
 * `other`, so its cardinality is bounded by the config, not the input. */
static void report_variants(run_t *r)
{
    static const struct {
        const char *name, *help;
    } fams[] = {
        {"variant_examples", "Matured examples served by the variant"},
        {"variant_pending", "Events served by the variant, label pending"},
        {"variant_label_mean", "Mean label of the variant's examples"},
        {"variant_label_mean_low", "Lower end of its 95 % interval"},
        {"variant_label_mean_high", "Upper end of its 95 % interval"},
        {"variant_logloss", "Logloss of the served score (0/1 labels)"},
        {"variant_auc", "AUC of the served score (256 bins)"},
        {"variant_calibration", "Mean served score / mean label"},
    };
    for (size_t v = 0; v < ld_exp_set_nvariants(r->exp); v++) {
        ld_exp_variant_stats_t st;
        ld_exp_set_variant_stats(r->exp, v, &st);
        double val[8] = {(double)st.n, (double)st.pending, st.label_mean,
                         st.ci_lo,     st.ci_hi,           st.logloss,
                         st.auc,       st.calibration};
        char lab[96];
        snprintf(lab, sizeof(lab), "variant=\"%s\"",
                 ld_exp_set_variant_name(r->exp, v));
        for (size_t f = 0; f < 8; f++) {
            int id = ld_metrics_family(r->reg, fams[f].name, LD_METRIC_GAUGE,
                                       fams[f].help);
            if (!isnan(val[f]))
                ld_metrics_set(r->reg, id, lab, val[f]);
        }
    }
}

void run_exp_report(run_t *r)
{
    if (!r->exp)
        return;
    int flaws =
        ld_metrics_family(r->reg, "served_flaws_total", LD_METRIC_COUNTER, "");
    for (int b = 0; b < 5; b++) {
        char lab[48];
        snprintf(lab, sizeof(lab), "reason=\"%s\"", flaw_names[b]);
        ld_metrics_set(r->reg, flaws, lab, (double)r->exp_flaws[b]);
    }
    report_variants(r);
    int verdict = ld_metrics_family(
        r->reg, "experiment_verdict", LD_METRIC_GAUGE,
        "Current verdict: 0 CONTINUE, 1 PROMOTE, 2 ROLLBACK, 3 INCONCLUSIVE");
    int weight = ld_metrics_family(r->reg, "routing_weight", LD_METRIC_GAUGE,
                                   "A bandit's current share of traffic");
    for (size_t i = 0; i < ld_exp_set_count(r->exp); i++) {
        const char *name = ld_exp_set_name(r->exp, i);
        char lab[160];
        snprintf(lab, sizeof(lab), "experiment=\"%s\"", name);
        ld_metrics_set(r->reg, verdict, lab,
                       (double)ld_exp_set_verdict(r->exp, i));
        double w[LD_EXP_ARMS_MAX];
        size_t k = ld_exp_set_weights(r->exp, i, w);
        for (size_t a = 0; a < k; a++) {
            snprintf(lab, sizeof(lab), "experiment=\"%s\",variant=\"%s\"", name,
                     ld_exp_set_arm_name(r->exp, i, a));
            ld_metrics_set(r->reg, weight, lab, w[a]);
        }
    }
    char *json = ld_exp_set_json(r->exp, NULL);
    if (json)
        ld_metrics_set_experiments(r->reg, json); /* taken */
}

ld_err_t run_exp_flush(run_t *r)
{
    if (!r->exp)
        return LD_OK;
    size_t n;
    const ld_exp_decision_t *d = ld_exp_set_pending(r->exp, &n);
    int pb = r->conf->triggers.format == LD_TRIGGER_FORMAT_PROTOBUF;
    int fam = ld_metrics_family(r->reg, "experiment_decisions_total",
                                LD_METRIC_COUNTER,
                                "Experiment events written, by experiment "
                                "and kind");
    for (size_t i = 0; i < n; i++) {
        uint8_t *val;
        size_t len;
        ld_err_t err =
            ld_exp_decision_encode(&d[i], r->tconf.name, pb, &val, &len);
        if (!err)
            err = ld_publisher_record(r->pub, ld_pipeline_producer(r->pipe),
                                      ld_exp_decision_type_header(&d[i]),
                                      r->conf->daemon.trigger_topic,
                                      d[i].idempotency_key, val, len);
        free(val);
        if (err)
            return err; /* the commit point aborts; the queue stays */
        if (r->hooks.experiment)
            r->hooks.experiment(r->hooks.opaque, &d[i]);
        if (d[i].kind == LD_EXP_KIND_DECISION)
            ld_log(LD_LOG_NOTICE, MOD,
                   "msg=\"experiment decided\" experiment=%s verdict=%s "
                   "reason=%s effect=%.6g ci_low=%.6g ci_high=%.6g key=%s",
                   ld_log_q(d[i].experiment), ld_exp_verdict_name(d[i].verdict),
                   d[i].reason, d[i].effect, d[i].ci_lo, d[i].ci_hi,
                   ld_log_q(d[i].idempotency_key));
        char lab[160];
        snprintf(lab, sizeof(lab), "experiment=\"%s\",kind=\"%s\"",
                 d[i].experiment, d[i].kind ? "weights" : "decision");
        ld_metrics_add(r->reg, fam, lab, 1);
    }
    ld_exp_set_clear(r->exp);
    return LD_OK;
}

void run_exp_save(void *opaque, ld_wbuf_t *w)
{
    run_t *r = opaque;
    ld_exp_set_save(r->exp, w);
}

ld_err_t run_exp_load(void *opaque, const uint8_t *buf, size_t len,
                      char *errstr, size_t size)
{
    run_t *r = opaque;
    if (!len) /* saved by a learnd without experiments: start afresh */
        return LD_OK;
    char why[256];
    ld_err_t err = ld_exp_set_load(r->exp, buf, len, why, sizeof(why));
    if (err)
        snprintf(errstr, size, "resume state: %s", why);
    return err;
}
