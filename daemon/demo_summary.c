/* SPDX-License-Identifier: Apache-2.0 */
/* `learnd demo`'s summary: the run's counts, triggers and the continual
 * model against the frozen copy, printed and as JSON. */
#include <math.h>
#include <stdio.h>

#include "daemon/demo_impl.h"

static const char *const verdicts[4] = {"PASS", "FAIL", "INCONCLUSIVE",
                                        "SKIPPED"};

static void summary_json(const demo_t *d, int code, double auc_live,
                         double auc_frozen, const char *json_path);

void ld_demo_summary(demo_t *d, int code, double auc_live, double auc_frozen,
                     const char *json_path)
{
    const ld_run_progress_t *p = &d->last;
    printf("\n== learnd demo summary ==\n");
    if (d->run_id[0])
        printf("run %s: model %s, consumer group %s (continue it with "
               "--run-id %s)\n",
               d->run_id, d->model, d->group, d->run_id);
    printf("stream: %lld events, concept drift at event %lld, frozen copy "
           "taken at event %lld\n",
           (long long)d->gconf.n_events, (long long)d->gconf.drift_at,
           (long long)d->freeze_at);
    printf("records: %llu events, %llu labels, %llu dead letters (%lld "
           "poison produced)\n",
           (unsigned long long)p->events, (unsigned long long)p->labels,
           (unsigned long long)p->dead_letters, (long long)d->poison);
    printf("examples: %llu pos, %llu default_neg, %llu fake_neg, %llu "
           "delayed_pos\n",
           (unsigned long long)p->by_type[LD_SAMPLE_POS],
           (unsigned long long)p->by_type[LD_SAMPLE_DEFAULT_NEG],
           (unsigned long long)p->by_type[LD_SAMPLE_FAKE_NEG],
           (unsigned long long)p->by_type[LD_SAMPLE_DELAYED_POS]);
    /* Every event read is either released (once, as pos or default_neg)
     * or still waiting: the input ended before its label window closed. */
    uint64_t released =
        p->by_type[LD_SAMPLE_POS] + p->by_type[LD_SAMPLE_DEFAULT_NEG];
    long long other =
        (long long)p->events - (long long)released - (long long)p->pending;
    printf("events: %llu read = %llu released as examples + %llu waiting "
           "for their 60s label window to close%s",
           (unsigned long long)p->events, (unsigned long long)released,
           (unsigned long long)p->pending,
           d->run_id[0] ? " (kept in the committed state for the next start)"
                        : " (the input ended first)");
    /* Late and duplicate events are counted drops; a resumed run also
     * re-reads what its joiner still held. */
    if (other)
        printf(" + %lld late, duplicate%s", other,
               d->resume ? " or re-read" : "");
    printf("\n");
    printf("checkpoints published: %llu\n", (unsigned long long)p->published);
    for (unsigned t = 0; t < 8; t++)
        for (unsigned v = 0; v < 4; v++)
            if (d->triggers[t][v])
                printf("triggers: %-12s %-12s %llu\n",
                       ld_trigger_type_name((ld_trigger_type_t)t), verdicts[v],
                       (unsigned long long)d->triggers[t][v]);
    if (d->first_drift_index >= 0)
        printf("first drift trigger at event %lld (%s the drift at %lld): "
               "%s\n",
               (long long)d->first_drift_index,
               d->first_drift_index >= d->gconf.drift_at ? "after" : "before",
               (long long)d->gconf.drift_at,
               d->first_drift_what[0] ? d->first_drift_what : "-");
    else
        printf("no drift trigger\n");
    printf("\n%-28s %10s %12s %12s %10s\n", "stretch of the stream", "examples",
           "continual", "frozen", "gain");
    for (int k = 0; k < 4; k++) {
        phase_t *ph = &d->phase[k];
        if (!ph->n)
            continue;
        double live = ph->live / (double)ph->n;
        double frozen = ph->frozen / (double)ph->n;
        printf("%-28s %10llu %12.4f %12.4f %9.1f%%\n", ph->name,
               (unsigned long long)ph->n, live, frozen,
               100.0 * (frozen - live) / frozen);
    }
    printf("(progressive logloss on matured labels; lower is better)\n");
    printf("AUC over the last 30%%: continual %.4f, frozen %.4f\n", auc_live,
           auc_frozen);
    /* NaN compares false: no scores is no win either. */
    printf("after the drift the continually trained model is %s the frozen "
           "copy\n",
           auc_live > auc_frozen ? "better than" : "NOT better than");
    if (d->gconf.served_lift > 0)
        ld_demo_exp_print(&d->exp, d->gconf.served_lift, stdout);
    printf("exit code %d\n", code);
    if (json_path)
        summary_json(d, code, auc_live, auc_frozen, json_path);
}

static void summary_json(const demo_t *d, int code, double auc_live,
                         double auc_frozen, const char *json_path)
{
    const ld_run_progress_t *p = &d->last;
    FILE *f = fopen(json_path, "w");
    if (!f) {
        fprintf(stderr, "learnd demo: cannot write %s\n", json_path);
        return;
    }
    fprintf(
        f,
        "{\"events\": %lld, \"drift_at\": %lld, \"freeze_at\": %lld, "
        "\"exit_code\": %d,\n \"records\": {\"events\": %llu, "
        "\"labels\": %llu, \"dead_letters\": %llu, \"poison\": %lld},\n"
        " \"examples\": {\"pos\": %llu, \"default_neg\": %llu, "
        "\"fake_neg\": %llu, \"delayed_pos\": %llu, \"pending\": %llu},\n"
        " \"checkpoints_published\": %llu,\n \"first_drift_trigger_event\": "
        "%lld, \"first_drift_drifted\": \"%s\",\n"
        " \"drift_triggers_before_drift\": %lld,\n \"triggers\": [",
        (long long)d->gconf.n_events, (long long)d->gconf.drift_at,
        (long long)d->freeze_at, code, (unsigned long long)p->events,
        (unsigned long long)p->labels, (unsigned long long)p->dead_letters,
        (long long)d->poison, (unsigned long long)p->by_type[LD_SAMPLE_POS],
        (unsigned long long)p->by_type[LD_SAMPLE_DEFAULT_NEG],
        (unsigned long long)p->by_type[LD_SAMPLE_FAKE_NEG],
        (unsigned long long)p->by_type[LD_SAMPLE_DELAYED_POS],
        (unsigned long long)p->pending, (unsigned long long)p->published,
        (long long)d->first_drift_index, d->first_drift_what,
        (long long)d->first_drift_before);
    int first = 1;
    for (unsigned t = 0; t < 8; t++)
        for (unsigned v = 0; v < 4; v++)
            if (d->triggers[t][v]) {
                fprintf(f,
                        "%s{\"type\": \"%s\", \"verdict\": \"%s\", "
                        "\"count\": %llu}",
                        first ? "" : ", ",
                        ld_trigger_type_name((ld_trigger_type_t)t), verdicts[v],
                        (unsigned long long)d->triggers[t][v]);
                first = 0;
            }
    fprintf(f, "],\n \"logloss\": [");
    for (int k = 0; k < 4; k++) {
        const phase_t *ph = &d->phase[k];
        double n = ph->n ? (double)ph->n : 1.0;
        fprintf(f,
                "%s{\"stretch\": \"%s\", \"examples\": %llu, "
                "\"continual\": %.6f, \"frozen\": %.6f}",
                k ? ", " : "", ph->name, (unsigned long long)ph->n,
                ph->live / n, ph->frozen / n);
    }
    /* JSON has no NaN: an AUC without both labels is null. */
    char al[32] = "null", af[32] = "null";
    if (isfinite(auc_live))
        snprintf(al, sizeof(al), "%.6f", auc_live);
    if (isfinite(auc_frozen))
        snprintf(af, sizeof(af), "%.6f", auc_frozen);
    fprintf(f, "],\n \"auc_after_drift\": {\"continual\": %s, \"frozen\": %s}",
            al, af);
    if (d->gconf.served_lift > 0)
        fprintf(
            f,
            ",\n \"experiment\": {\"lift\": %.4f, \"verdict\": \"%s\", "
            "\"n\": [%llu, %llu], \"effect\": %.6f}",
            d->gconf.served_lift,
            d->exp.decided ? ld_exp_verdict_name(d->exp.verdict) : "CONTINUE",
            (unsigned long long)d->exp.n[0], (unsigned long long)d->exp.n[1],
            d->exp.decided ? d->exp.effect : 0.0);
    fputs("}\n", f);
    fclose(f);
}
