/* SPDX-License-Identifier: Apache-2.0 */
/* The run loop's metrics: the families it declares and the values it
 * sets once a second while parked, the rate-limited drop log, and the
 * progress hook. */
#include "daemon/run_internal.h"

#include <time.h>
#include <unistd.h>

#define MOD "daemon"

/* ---- Metrics ------------------------------------------------------------ */

void run_declare_metrics(run_t *r)
{
    families_t *f = &r->fam;
    f->up = ld_metrics_family(r->reg, "up", LD_METRIC_GAUGE,
                              "1 while the run loop is running");
    f->records =
        ld_metrics_family(r->reg, "records_consumed_total", LD_METRIC_COUNTER,
                          "Input records decoded, by topic kind");
    f->dlq = ld_metrics_family(r->reg, "dead_letters_total", LD_METRIC_COUNTER,
                               "Records sent to the dead-letter topic, by "
                               "topic kind and reason");
    f->examples = ld_metrics_family(r->reg, "examples_total", LD_METRIC_COUNTER,
                                    "Labelled examples released, by "
                                    "sample_type");
    f->label_records = ld_metrics_family(
        r->reg, "label_records_total", LD_METRIC_COUNTER,
        "Records of the labels topic the joiner took, by outcome");
    f->pending = ld_metrics_family(r->reg, "pending_joins", LD_METRIC_GAUGE,
                                   "Events and labels waiting in the "
                                   "joiner, by kind");
    f->pending_bytes = ld_metrics_family(
        r->reg, "pending_bytes", LD_METRIC_GAUGE, "Bytes held by the joiner");
    f->watermark =
        ld_metrics_family(r->reg, "watermark_lag_seconds", LD_METRIC_GAUGE,
                          "Wall clock minus the joiner's "
                          "watermark");
    f->model = ld_metrics_family(r->reg, "model_metric", LD_METRIC_GAUGE,
                                 "Windowed prequential metrics, by model "
                                 "(challenger or champion) and metric");
    f->published =
        ld_metrics_family(r->reg, "checkpoints_published_total",
                          LD_METRIC_COUNTER, "Checkpoints published");
    f->version = ld_metrics_family(r->reg, "champion_version", LD_METRIC_GAUGE,
                                   "Version of the last published model");
    f->triggers = ld_metrics_family(r->reg, "triggers_total", LD_METRIC_COUNTER,
                                    "Trigger decisions, by type and verdict");
    f->trained =
        ld_metrics_family(r->reg, "examples_trained_total", LD_METRIC_COUNTER,
                          "Examples the model trained on");
    f->lag = ld_metrics_family(r->reg, "consumer_lag", LD_METRIC_GAUGE,
                               "Records behind the end of each input "
                               "partition");
    f->last_pub_version = ld_metrics_family(
        r->reg, "last_publication_version", LD_METRIC_GAUGE,
        "Version of the newest checkpoint committed to the checkpoint topic "
        "(the warm start's version until this process publishes)");
    f->last_pub_time = ld_metrics_family(
        r->reg, "last_publication_timestamp_seconds", LD_METRIC_GAUGE,
        "Unix time of the commit point that published the newest checkpoint "
        "(absent until this process publishes)");
    f->last_commit_time = ld_metrics_family(
        r->reg, "last_commit_timestamp_seconds", LD_METRIC_GAUGE,
        "Unix time of the last successful commit point");
    f->state_bytes = ld_metrics_family(
        r->reg, "state_bytes_last_commit", LD_METRIC_GAUGE,
        "Bytes (keys and values) the last commit point wrote to the state "
        "topic: the rows changed since the one before and the sweep's "
        "blocks");
    f->txn = ld_metrics_family(r->reg, "transactions_total", LD_METRIC_COUNTER,
                               "Commit points, by result");
    f->dropped = ld_metrics_family(
        r->reg, "records_dropped_total", LD_METRIC_COUNTER,
        "Input records neither trained on nor dead-lettered, by topic kind "
        "and reason (docs/OPERATIONS.md)");
    f->wm_ahead = ld_metrics_family(
        r->reg, "watermark_ahead_seconds", LD_METRIC_GAUGE,
        "How far the most advanced partition watermark is ahead of the wall "
        "clock (0 when behind)");
    f->drift_score = ld_metrics_family(
        r->reg, "drift_score", LD_METRIC_GAUGE,
        "Deciding drift statistic of the last checked window, by input "
        "(feature:<name>, feature:hashed, prediction, label) and statistic "
        "(ks, js, psi, wasserstein); docs/TRIGGERS.md");
    f->wm_ahead_alert = ld_metrics_family(
        r->reg, "watermark_ahead_of_clock", LD_METRIC_GAUGE,
        "1 while a partition watermark is ahead of the wall clock by more "
        "than pipeline.max_future (1h when that is 0)");
}

/* One gauge per tested drift input: a label value in Prometheus' escaping
 * (feature names come from the config). */
static void set_drift_score(void *opaque, const ld_trigger_evidence_t *ev)
{
    run_t *r = opaque;
    char input[2 * sizeof(ev->metric)], labels[sizeof(input) + 64];
    size_t o = 0;
    for (const char *p = ev->metric; *p && o + 2 < sizeof(input); p++) {
        if (*p == '"' || *p == '\\')
            input[o++] = '\\';
        input[o++] = *p == '\n' ? ' ' : *p;
    }
    input[o] = '\0';
    snprintf(labels, sizeof(labels), "input=\"%s\",statistic=\"%s\"", input,
             ev->statistic);
    ld_metrics_set(r->reg, r->fam.drift_score, labels, ev->value);
}

static void set_model_metrics(run_t *r, const char *who,
                              const ld_trainer_metrics_t *m)
{
    char labels[96];
    static const char *const names[] = {"logloss", "auc", "accuracy", "rmse",
                                        "calibration"};
    const double vals[] = {m->logloss, m->auc, m->accuracy, m->rmse,
                           m->calibration};
    for (size_t i = 0; i < 5; i++) {
        snprintf(labels, sizeof(labels), "model=\"%s\",metric=\"%s\"", who,
                 names[i]);
        ld_metrics_set(r->reg, r->fam.model, labels, vals[i]);
    }
}

static void set_lag(void *opaque, const char *topic, int32_t partition,
                    int64_t lag)
{
    run_t *r = opaque;
    char labels[320];
    snprintf(labels, sizeof(labels), "topic=\"%s\",partition=\"%d\"", topic,
             (int)partition);
    ld_metrics_set(r->reg, r->fam.lag, labels, (double)lag);
    if (lag > 0)
        r->lag_total += lag;
}

/* A backfill or replay can read for minutes: say how far it is. On a
 * terminal a line redrawn every second; otherwise a log line every
 * PROGRESS_LOG_MS (a journal or file must not fill with them). The demo
 * prints its own (hooks.progress). */
#define PROGRESS_LOG_MS 10000
static void progress(run_t *r, int64_t watermark_ms)
{
    if ((!r->opts->until_caught_up && !r->in->progress_always) ||
        r->hooks.progress)
        return;
    int64_t now = ld_now_mono_ms();
    if (!r->prog_last_ms) {
        r->prog_tty = isatty(STDERR_FILENO);
        r->prog_last_ms = r->start_ms;
    }
    if (now < r->prog_next_ms)
        return;
    r->prog_next_ms = now + (r->prog_tty ? 1000 : PROGRESS_LOG_MS);
    uint64_t records = r->consumed + r->dead;
    double secs = (double)(now - r->prog_last_ms) / 1000.0;
    double rate =
        secs > 0 ? (double)(records - r->prog_last_records) / secs : 0.0;
    r->prog_last_ms = now;
    r->prog_last_records = records;
    char evt[32] = "-", eta[32] = "-";
    if (watermark_ms > INT64_MIN / 2) {
        time_t t = (time_t)(watermark_ms / 1000);
        struct tm tm;
        if (gmtime_r(&t, &tm))
            strftime(evt, sizeof(evt), "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
    if (r->lag_total == 0) {
        snprintf(eta, sizeof(eta), "0s");
    } else if (rate > 0) {
        double s = (double)r->lag_total / rate;
        if (s < 3600)
            snprintf(eta, sizeof(eta), "%dm%02ds", (int)(s / 60), (int)s % 60);
        else
            snprintf(eta, sizeof(eta), "%dh%02dm", (int)(s / 3600),
                     (int)(s / 60) % 60);
    }
    const char *what = r->in->progress;
    if (r->prog_tty) {
        fprintf(stderr,
                "\r%s: %llu records, event time %s, lag %lld, %.0f "
                "records/s, ETA %s\033[K",
                what, (unsigned long long)records, evt, (long long)r->lag_total,
                rate, eta);
        fflush(stderr);
        r->prog_shown = 1;
    } else {
        ld_log(LD_LOG_INFO, MOD,
               "msg=\"%s progress\" records=%llu event_time=%s lag=%lld "
               "rate=%.0f eta=%s",
               what, (unsigned long long)records, evt, (long long)r->lag_total,
               rate, eta);
    }
}

void run_progress_end(run_t *r)
{
    if (r->prog_shown)
        fputc('\n', stderr);
    r->prog_shown = 0;
}

/* Every record the daemon does not train from is dead-lettered (counted
 * by the pipeline) or one of these drops (docs/OPERATIONS.md, "Where every
 * record goes"). */
typedef struct drop_row {
    const char *labels;
    uint64_t n;
} drop_row_t;

#define DROP_LOG_MS 10000 /* at most one drop log line per 10 s */

void run_report_drops(run_t *r, const ld_joiner_stats_t *js, int final)
{
    const drop_row_t rows[] = {
        {"kind=\"event\",reason=\"late\"", js->events_late},
        {"kind=\"event\",reason=\"duplicate\"", js->events_duplicate},
        {"kind=\"label\",reason=\"late\"", js->labels_late},
        {"kind=\"label\",reason=\"after_window\"", js->late_labels_dropped},
        {"kind=\"label\",reason=\"unmatched\"", js->labels_unmatched},
        {"kind=\"label\",reason=\"no_label\"", js->labels_nolabel},
        {"kind=\"label\",reason=\"expired\"", js->labels_expired},
        {"kind=\"any\",reason=\"refused\"", r->refused},
        {"kind=\"event\",reason=\"model_refused\"", r->model_refused},
    };
    uint64_t total = 0;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        ld_metrics_set(r->reg, r->fam.dropped, rows[i].labels,
                       (double)rows[i].n);
        total += rows[i].n;
    }
    /* Late records used to vanish without a line: say so, at a rate, and
     * once more at the end, so that a backfill's log carries its totals. */
    int64_t now = ld_now_mono_ms();
    if (total == r->drop_logged || (!final && now < r->drop_log_next))
        return;
    ld_log(LD_LOG_WARN, "join",
           "msg=\"input records dropped (see learnd_records_dropped_total)\" "
           "new=%llu events_late=%llu labels_late=%llu "
           "events_duplicate=%llu labels_after_window=%llu "
           "labels_unmatched=%llu labels_no_label=%llu labels_expired=%llu "
           "refused=%llu "
           "model_refused=%llu watermark_ms=%lld",
           (unsigned long long)(total - r->drop_logged),
           (unsigned long long)js->events_late,
           (unsigned long long)js->labels_late,
           (unsigned long long)js->events_duplicate,
           (unsigned long long)js->late_labels_dropped,
           (unsigned long long)js->labels_unmatched,
           (unsigned long long)js->labels_nolabel,
           (unsigned long long)js->labels_expired,
           (unsigned long long)r->refused, (unsigned long long)r->model_refused,
           (long long)js->watermark_ms);
    r->drop_logged = total;
    r->drop_log_next = now + DROP_LOG_MS;
}

/* Every count says whose it is: _process since this process started,
 * _lifetime since the model's first record, carried across restarts by the
 * resume state (published) and the joiner's resume records (the joiner's
 * books: they equal an uninterrupted run's after a kill or a stop). The
 * pending_ gauges are what is held at the stop. Events whose label window
 * is still open are not lost: the committed resume offsets reach back to
 * them and the next start re-reads them. */
void run_report_stopped(const run_t *r, const ld_joiner_stats_t *js,
                        const ld_joiner_stats_t *life)
{
    uint64_t released = 0;
    for (int t = 0; t < LD_SAMPLE__COUNT; t++)
        released += life->examples[t];
    ld_log(LD_LOG_NOTICE, MOD,
           "msg=\"stopped\" consumed_process=%llu examples_process=%llu "
           "published_process=%llu published_lifetime=%llu "
           "events_in_lifetime=%llu labels_in_lifetime=%llu "
           "released_lifetime=%llu events_late_lifetime=%llu "
           "events_duplicate_lifetime=%llu events_expired_lifetime=%llu "
           "labels_joined_lifetime=%llu labels_after_window_lifetime=%llu "
           "labels_after_window_dropped_lifetime=%llu "
           "labels_late_lifetime=%llu labels_unmatched_lifetime=%llu "
           "labels_no_label_lifetime=%llu labels_expired_lifetime=%llu "
           "pending_events=%llu pending_labels=%llu exit=%d",
           (unsigned long long)r->consumed, (unsigned long long)r->examples,
           (unsigned long long)(r->ctr->published - r->published_at_start),
           (unsigned long long)r->ctr->published,
           (unsigned long long)life->events_in,
           (unsigned long long)life->labels_in, (unsigned long long)released,
           (unsigned long long)life->events_late,
           (unsigned long long)life->events_duplicate,
           (unsigned long long)life->events_expired,
           (unsigned long long)life->labels_joined,
           (unsigned long long)life->labels_after_window,
           (unsigned long long)life->late_labels_dropped,
           (unsigned long long)life->labels_late,
           (unsigned long long)life->labels_unmatched,
           (unsigned long long)life->labels_nolabel,
           (unsigned long long)life->labels_expired,
           (unsigned long long)js->pending_events,
           (unsigned long long)js->pending_labels, r->exit_code);
}

/* A watermark ahead of the wall clock means a clock is wrong somewhere
 * (producers stamping the future, or a time source without a bound): the
 * lag gauge goes negative and its alert cannot fire, so this one says it.
 * Alert-only: the wall clock never decides what is learnt (docs/LABELING.md).
 */
static void report_ahead(run_t *r, const ld_joiner_stats_t *js)
{
    if (js->watermark_max_ms <= INT64_MIN / 2)
        return;
    int64_t bound = r->conf->pipeline.max_future_ms > 0
                        ? r->conf->pipeline.max_future_ms
                        : INT64_C(3600000);
    int64_t ahead = js->watermark_max_ms - ld_now_wall_ms();
    ld_metrics_set(r->reg, r->fam.wm_ahead, "",
                   ahead > 0 ? (double)ahead / 1000.0 : 0.0);
    ld_metrics_set(r->reg, r->fam.wm_ahead_alert, "", ahead > bound ? 1 : 0);
}

void run_report_model(run_t *r, const ld_trainer_metrics_t *model,
                      const ld_trainer_metrics_t *champion)
{
    set_model_metrics(r, "challenger", model);
    set_model_metrics(r, "champion", champion);
    if (r->trig)
        (void)ld_triggers_drift_scores(r->trig, set_drift_score, r);
    ld_metrics_set(r->reg, r->fam.published, "", (double)r->ctr->published);
    ld_metrics_set(r->reg, r->fam.trained, "", (double)r->examples);
    ld_metrics_set(r->reg, r->fam.version, "", (double)r->ctr->version);
    if (r->ctr->version)
        ld_metrics_set(r->reg, r->fam.last_pub_version, "",
                       (double)r->ctr->version);
}

void run_report(run_t *r)
{
    ld_pipeline_stats_t ps;
    ld_joiner_stats_t js;
    ld_run_progress_t p = {0};
    ld_pipeline_stats(r->pipe, &ps);
    ld_joiner_stats(r->joiner, &js);
    ld_trainer_metrics(r->trainer, &p.model, &p.champion);
    run_exp_report(r);

    ld_metrics_set(r->reg, r->fam.records, "kind=\"event\"",
                   (double)ps.records[LD_RECORD_EVENT]);
    ld_metrics_set(r->reg, r->fam.records, "kind=\"label\"",
                   (double)ps.records[LD_RECORD_LABEL]);
    uint64_t dlq = 0;
    for (int k = 0; k < 2; k++) {
        for (int why = 1; why < LD_REASON__COUNT; why++) {
            char labels[96];
            if (!ps.dlq[k][why])
                continue;
            dlq += ps.dlq[k][why];
            snprintf(labels, sizeof(labels), "kind=\"%s\",reason=\"%s\"",
                     k ? "label" : "event", ld_reason_name((ld_reason_t)why));
            ld_metrics_set(r->reg, r->fam.dlq, labels, (double)ps.dlq[k][why]);
        }
    }
    for (int s = 0; s < LD_SAMPLE__COUNT; s++) {
        char labels[64];
        snprintf(labels, sizeof(labels), "sample_type=\"%s\"",
                 ld_sample_type_name((ld_sample_type_t)s));
        ld_metrics_set(r->reg, r->fam.examples, labels, (double)js.examples[s]);
    }
    /* no_label: label_mode equals records that did not match; all of them
     * and no joined one usually means a wrong label_equals. */
    const struct {
        const char *outcome;
        uint64_t n;
    } lr[] = {{"joined", js.labels_joined},
              {"after_window", js.labels_after_window},
              {"late", js.labels_late},
              {"unmatched", js.labels_unmatched},
              {"no_label", js.labels_nolabel}};
    for (size_t i = 0; i < sizeof(lr) / sizeof(lr[0]); i++) {
        char labels[64];
        snprintf(labels, sizeof(labels), "outcome=\"%s\"", lr[i].outcome);
        ld_metrics_set(r->reg, r->fam.label_records, labels, (double)lr[i].n);
    }
    ld_metrics_set(r->reg, r->fam.pending, "kind=\"event\"",
                   (double)js.pending_events);
    ld_metrics_set(r->reg, r->fam.pending, "kind=\"label\"",
                   (double)js.pending_labels);
    ld_metrics_set(r->reg, r->fam.pending_bytes, "", (double)js.bytes_total);
    r->lag_total = 0;
    ld_pipeline_lag(r->pipe, set_lag, r);
    if (js.watermark_ms > INT64_MIN / 2)
        ld_metrics_set(r->reg, r->fam.watermark, "",
                       (double)(ld_now_wall_ms() - js.watermark_ms) / 1000.0);
    run_report_model(r, &p.model, &p.champion);
    run_report_drops(r, &js, 0);
    report_ahead(r, &js);
    progress(r, js.watermark_ms);

    if (!r->hooks.progress)
        return;
    p.elapsed_ms = ld_now_mono_ms() - r->start_ms;
    p.events = ps.records[LD_RECORD_EVENT];
    p.labels = ps.records[LD_RECORD_LABEL];
    p.dead_letters = dlq;
    p.examples = r->examples;
    memcpy(p.by_type, js.examples, sizeof(p.by_type));
    p.pending =
        r->state == RUN_CLOSING ? r->pending_at_close : js.pending_events;
    p.pending_peak = js.pending_peak;
    p.watermark_ms = js.watermark_ms;
    p.published = r->ctr->published;
    p.champion_version = r->ctr->version;
    r->hooks.progress(r->hooks.opaque, &p);
}
