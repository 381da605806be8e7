/* SPDX-License-Identifier: Apache-2.0 */
/* The run loop: records in, labelled examples through the trainer, trigger
 * decisions out, all committed at commit points.
 *
 * The loop is a state machine (run_t.state); the function behind each
 * transition is named:
 *
 *   STARTING --start_ingest()--> RUNNING --tick(): a job is due-->
 *   PARKING --take(PAUSED)--> PARKED --tick(): every job ran--> RUNNING
 *
 *   RUNNING, PARKING, PARKED --ld_run(): a stop (a signal, the should_stop
 *     hook, the end of the input with --until-caught-up, in->reached(),
 *     exit_code), then stop_ingest()--> DRAINING
 *   DRAINING, RUNNING, PARKING --take(STOPPED)--> STOPPED
 *   STOPPED --ld_run(): the final checkpoint (--until-caught-up), in->end(),
 *     the last in->commit_point(), then ld_pipeline_close()--> CLOSING
 *     (the group is left; revoked partitions do not come back).
 *     After exit_code, STOPPED goes straight to run_teardown(), which
 *     sets CLOSING too.
 *
 * The other files of the loop: run_input.c (the input policies),
 * run_commit.c (positions, lineage, resume state, commit_point),
 * run_report.c (metrics), run_setup.c (setup and teardown);
 * daemon/run_internal.h is run_t.
 *
 * Invariants:
 *  1. In PARKED, and only there (and from DRAINING on), the pipeline's
 *     consumer side is the loop's: lag, idle advances, flow control and
 *     commit points happen there, so a commit point covers exactly what
 *     the loop has processed.
 *  2. A transaction is open in RUNNING and PARKING (begun before the
 *     ingest thread starts and after every commit point): the ingest
 *     thread dead-letters into it.
 *  3. exit_code set means no further commit point: the loop stops, the
 *     ingest thread is stopped without draining, teardown follows.
 *
 * When and what are apart: the loop takes items and, every 256 records or
 * when idle, calls tick(), which asks each periodic job of jobs[] whether
 * it is due (park) and, once parked, runs them all in table order.
 *
 * Live and replay are apart too: r->in, the input policy run_setup() picks
 * (run_input.c), says where each partition starts, which idle advances the
 * join sees (the wall clock's, recorded; or the recorded ones repeated at
 * their offsets, in->read_to()), whether a commit point writes anything,
 * and when to stop (in->reached(): the capture publisher holds the version
 * a replay asked for). The loop never asks which one it runs. */
#include "daemon/run_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/ingest.h"
#include "daemon/metrics.h"
#include "daemon/signals.h"
#include "daemon/version.h"
#include "pipeline/pipeline.h"
#include "publish/publish.h"

#define MOD "daemon"

/* ---- Stage callbacks ---------------------------------------------------- */

/* Next offset the loop has processed on kind/partition (-1 forgets it). */
static void note_position(run_t *r, int kind, int32_t partition, int64_t next)
{
    if (partition < 0)
        return;
    if (partition >= r->nnext[kind]) {
        int32_t n = partition + 1;
        int64_t *v = realloc(r->next[kind], (size_t)n * sizeof(*v));
        if (!v)
            return; /* the lineage's resume positions only lose detail */
        for (int32_t i = r->nnext[kind]; i < n; i++)
            v[i] = -1;
        r->next[kind] = v;
        r->nnext[kind] = n;
    }
    r->next[kind][partition] = next;
}

static void assigned(run_t *r, rd_kafka_topic_partition_list_t *parts)
{
    const char *events = r->conf->pipeline.events_topic;
    r->caught_up = 0; /* new partitions have their own end to reach */
    /* Partition p of both topics joins together; act on the events
     * topic's entry, then start both topics where the joiner's resume state
     * says (the oldest record still needed), or at the group's offset. */
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &parts->elems[i];
        if (strcmp(tp->topic, events) != 0)
            continue;
        if (r->join) /* its joins in progress, from its last owner */
            run_join_take_over(r, tp->partition);
        ld_err_t err = ld_joiner_assign(r->joiner, tp->partition);
        if (err) {
            ld_log(LD_LOG_ERR, MOD,
                   "msg=\"cannot assign partition to the joiner\" "
                   "partition=%d err=\"%s\"",
                   (int)tp->partition, ld_err_str(err));
            continue;
        }
        /* Its resume record goes into every commit point from now on:
         * losing track of it would lose its pending joins at a restart. */
        if ((err = ld_partset_add(&r->assigned, tp->partition))) {
            ld_log(LD_LOG_CRIT, MOD,
                   "msg=\"cannot track an assigned partition: exiting\" "
                   "partition=%d err=\"%s\"",
                   (int)tp->partition, ld_err_str(err));
            r->exit_code = LD_EXIT_RUNTIME;
        }
    }
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &parts->elems[i];
        int64_t eo = -1, lo = -1;
        if (ld_joiner_resume_offsets(r->joiner, tp->partition, &eo, &lo))
            continue;
        int64_t off = r->in->start(r, tp->topic, tp->partition,
                                   strcmp(tp->topic, events) == 0 ? eo : lo);
        if (off >= 0 || off == RD_KAFKA_OFFSET_BEGINNING) /* replay */
            tp->offset = off;
        ld_log(LD_LOG_INFO, MOD,
               "msg=\"partition assigned\" topic=%s partition=%d start=%lld",
               tp->topic, (int)tp->partition, (long long)off);
    }
    r->in->started(r, parts);
}

/* Rebalance callbacks run on the ingest thread: the loop holds still
 * (having processed everything polled before) while they change its state. */
void run_on_assigned(void *opaque, rd_kafka_topic_partition_list_t *parts)
{
    run_t *r = opaque;
    ld_ingest_exclusive_begin(r->ingest);
    assigned(r, parts);
    ld_ingest_exclusive_end(r->ingest);
}

static void revoked(run_t *r, const rd_kafka_topic_partition_list_t *parts,
                    int lost)
{
    /* join role: the records and offsets go current with the partitions */
    if (r->join && r->state != RUN_CLOSING && parts->cnt > 0)
        run_join_hand_over(r, lost);
    /* Keep where the joiner is now: if a partition comes back to this
     * process (a rebalance right after a restart does that), it continues
     * from here. The resume record loaded at start-up would re-release
     * everything decided since (found by 0004 under ASan: one example
     * audited and trained twice). Every record is taken before any
     * partition goes: a revoke raises the watermark, and the joiner then
     * holds examples due on the others (0029). */
    int keep = r->state != RUN_CLOSING && !(r->join && lost);
    uint8_t **rec = calloc((size_t)parts->cnt + 1, sizeof(*rec));
    size_t *len = calloc((size_t)parts->cnt + 1, sizeof(*len));
    ld_err_t err = rec && len ? LD_OK : LD_ERR_NOMEM;
    const char *events = r->conf->pipeline.events_topic;
    for (int i = 0; i < parts->cnt && !err; i++) {
        const rd_kafka_topic_partition_t *tp = &parts->elems[i];
        if (keep && strcmp(tp->topic, events) == 0)
            err = ld_joiner_resume_encode(r->joiner, tp->partition, &rec[i],
                                          &len[i]);
    }
    for (int i = 0; i < parts->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &parts->elems[i];
        note_position(r, run_kind_of(r, tp->topic), tp->partition, -1);
        if (strcmp(tp->topic, events) != 0)
            continue;
        ld_partset_del(&r->assigned, tp->partition);
        if (ld_joiner_revoke(r->joiner, tp->partition) == LD_OK)
            ld_log(LD_LOG_INFO, MOD,
                   "msg=\"partition revoked\" partition=%d lost=%d",
                   (int)tp->partition, lost);
    }
    for (int i = 0; i < parts->cnt && !err; i++)
        if (rec[i] && ld_joiner_resume_load(r->joiner, rec[i], len[i]) != LD_OK)
            err = LD_ERR_CORRUPT;
    if (err) {
        ld_log(LD_LOG_CRIT, MOD,
               "msg=\"cannot keep the joiner's place for the revoked "
               "partitions: exiting so that a restart resumes from the last "
               "commit\" err=\"%s\"",
               ld_err_str(err));
        r->exit_code = LD_EXIT_RUNTIME;
    }
    for (int i = 0; rec && i < parts->cnt; i++)
        free(rec[i]);
    free(rec);
    free(len);
}

void run_on_revoked(void *opaque, const rd_kafka_topic_partition_list_t *parts,
                    int lost)
{
    run_t *r = opaque;
    ld_ingest_exclusive_begin(r->ingest);
    revoked(r, parts, lost);
    ld_ingest_exclusive_end(r->ingest);
}

void run_on_dead_lettered(void *opaque, const char *topic, int32_t partition,
                          int64_t offset)
{
    run_t *r = opaque;
    ld_ingest_note_dead(r->ingest, topic, partition, offset);
}

/* Matured examples of a micro-batch, scored before training: the triggers
 * watch them (deterministically: in release order). */
void run_on_scored(void *opaque, const ld_scored_t *s, size_t n)
{
    run_t *r = opaque;
    for (size_t i = 0; i < n; i++)
        if (ld_triggers_observe(r->trig, s[i].ex, s[i].pred, s[i].champion) !=
            LD_OK)
            ld_log(LD_LOG_WARN, MOD, "msg=\"trigger observe failed\"");
    run_exp_scored(r, s, n);
    if (r->hooks.scored)
        r->hooks.scored(r->hooks.opaque, s, n);
}

/* ---- Publications ------------------------------------------------------- */

#define MAX_WAITING_PUBLICATIONS 4 /* then the commit point comes early */

static const char *trigger_labels(const ld_trigger_decision_t *d, char *buf,
                                  size_t size)
{
    snprintf(buf, size, "type=\"%s\",verdict=\"%s\"",
             ld_trigger_type_name(ld_trigger_decision_type(d)),
             ld_trigger_verdict_name(ld_trigger_decision_verdict(d)));
    return buf;
}

/* Whether the model has trained on any example since it was created
 * (a warm start counts what its checkpoint had). */
static int trained_any(const run_t *r)
{
    ld_trainer_stats_t st;
    ld_trainer_stats(r->trainer, &st);
    return st.examples > 0;
}

/* Takes the trigger decisions made so far. A PASS publishes the model as it
 * is after the micro-batch holding the deciding example: a pure function of
 * the input, whatever the wall clock did. */
void run_take_decisions(run_t *r)
{
    if (!ld_triggers_pending(r->trig))
        return;
    /* The event's watermark: the join decision time of the example whose
     * release trained the deciding micro-batch (the watermark had passed
     * it). The joiner's watermark of the moment is not a function of the
     * input: it depends on how far ingestion had run (issue #14: 12 to 15
     * of 45 events differed after a kill -9). */
    int64_t watermark =
        r->train ? r->train_dt : ld_joiner_decision_time(r->joiner);
    ld_trigger_decision_t *d;
    while ((d = ld_triggers_poll(r->trig, watermark))) {
        if (r->hooks.decision)
            r->hooks.decision(r->hooks.opaque, d);
        char tl[96];
        ld_metrics_add(r->reg, r->fam.triggers,
                       trigger_labels(d, tl, sizeof(tl)), 1);
        ld_snapshot_t *snap = NULL;
        uint64_t version = 0;
        if (ld_trigger_decision_verdict(d) == LD_TRIGGER_VERDICT_PASS &&
            ld_trigger_decision_action(d) == LD_TRIGGER_ACTION_PUBLISH &&
            !trained_any(r)) {
            /* A model trained on nothing is no checkpoint (issue #17): no
             * publication, and no event telling deployers of one. */
            ld_log(LD_LOG_WARN, MOD,
                   "msg=\"not publishing: the model has trained on 0 "
                   "examples\" trigger=%s",
                   ld_trigger_type_name(ld_trigger_decision_type(d)));
            ld_trigger_decision_destroy(d);
            continue;
        }
        if (ld_trigger_decision_verdict(d) == LD_TRIGGER_VERDICT_PASS &&
            ld_trigger_decision_action(d) == LD_TRIGGER_ACTION_PUBLISH) {
            /* Copy-on-write: the publisher thread copies the model, the
             * loop only the blocks it writes before that (#18). */
            snap = ld_trainer_snapshot_shared(r->trainer);
            version = ld_trigger_decision_challenger_version(d);
            if (snap && ld_trainer_champion_set(r->trainer, snap) != LD_OK)
                ld_log(LD_LOG_WARN, MOD, "msg=\"champion not replaced\"");
        }
        /* A publication records the input its model saw since the
         * parent. The publisher thread writes it into the open
         * transaction at once (a final checkpoint comes after the last
         * one was committed). */
        Learnd__V1__Lineage *lin = snap ? run_take_lineage(r) : NULL;
        if (r->pipe && ld_pipeline_txn_begin(r->pipe) != LD_OK)
            r->exit_code = LD_EXIT_RUNTIME;
        if (ld_publisher_queue(r->pub, d, snap, version, lin) != LD_OK)
            ld_log(LD_LOG_ERR, MOD, "msg=\"out of memory queueing a trigger\"");
        r->in->queued(r); /* replay: the version asked for may be in */
    }
}

/* The input that existed at start-up is read: train what is queued and
 * offer the model as a new version (for backfills and replays; the end of
 * the input is a point in the stream, so this is deterministic). It goes
 * through the gate as an end_of_input trigger, so that its event, like
 * every publication's, tells deployers about it, in the same commit
 * transaction as the checkpoint (the last commit point). */
void run_final_checkpoint(run_t *r)
{
    ld_err_t err = ld_trainer_flush(r->trainer);
    run_take_decisions(r); /* the flushed batch may decide a publication */
    if (err) {
        ld_log(LD_LOG_ERR, MOD,
               "msg=\"cannot train the last micro-batch\" err=\"%s\"",
               ld_err_str(err));
        r->exit_code = LD_EXIT_RUNTIME;
        return;
    }
    if (!trained_any(r)) {
        /* Empty input, or input that retention deleted: an empty version
         * would be offered to deployers as a model. */
        ld_log(LD_LOG_WARN, MOD,
               "msg=\"end of input: no checkpoint published, the model has "
               "trained on 0 examples\" records=%llu",
               (unsigned long long)r->consumed);
        return;
    }
    if (r->in->final_dedup) {
        /* Nothing trained since the newest version, published or waiting
         * for the commit point (a backfill run again on input it had read,
         * or a trigger that published at the last micro-batch): no new
         * version, no event. */
        const uint8_t *last = r->ctr->version ? r->ctr->published_sha : NULL;
        uint64_t lastv = r->ctr->version;
        uint8_t qsha[32], sha[32];
        if (ld_publisher_last_queued(r->pub, qsha, &lastv))
            last = qsha;
        ld_snapshot_t *snap = ld_trainer_snapshot(r->trainer);
        if (!snap) {
            ld_log(LD_LOG_ERR, MOD, "msg=\"cannot take the final checkpoint\"");
            r->exit_code = LD_EXIT_RUNTIME;
            return;
        }
        ld_snapshot_params_sha256(snap, sha);
        ld_snapshot_destroy(snap);
        if (last && memcmp(sha, last, sizeof(sha)) == 0) {
            ld_log(LD_LOG_NOTICE, MOD,
                   "msg=\"caught up: the model is version %llu already\"",
                   (unsigned long long)lastv);
            return;
        }
    }
    if (ld_triggers_end_of_input(r->trig) != LD_OK) {
        ld_log(LD_LOG_ERR, MOD, "msg=\"cannot take the final checkpoint\"");
        r->exit_code = LD_EXIT_RUNTIME;
        return;
    }
    run_take_decisions(r); /* PASS: snapshot and publication; else event only */
}

/* The audit topic (labeling.output_topic): every labelled example exactly
 * as the model trains on it, in the same transaction as everything else. */
static void audit(run_t *r, const ld_example_t *ex)
{
    const ld_labeling_conf_t *lc = &r->conf->labeling;
    size_t need;
    for (;;) {
        need = lc->output_format == LD_AUDIT_JSON
                   ? ld_labeling_example_json(ex, (char *)r->audit_buf,
                                              r->audit_cap)
                   : ld_labeling_example_pack(
                         ex, ld_joiner_decision_time(r->joiner),
                         r->conf->pipeline.events_topic, r->audit_buf,
                         r->audit_cap);
        if (need == 0 || need < r->audit_cap)
            break;
        uint8_t *g = realloc(r->audit_buf, need + 1);
        if (!g)
            break;
        r->audit_buf = g;
        r->audit_cap = need + 1;
    }
    if (need == 0 || need >= r->audit_cap) {
        ld_log(LD_LOG_ERR, MOD, "msg=\"cannot encode an audit record\"");
        r->exit_code = LD_EXIT_RUNTIME; /* never lose one silently */
        return;
    }
    const char *key = ex->event_id ? ex->event_id : "";
    if (ld_pipeline_txn_begin(r->pipe) != LD_OK ||
        ld_publisher_record(r->pub, ld_pipeline_producer(r->pipe),
                            "LabelledExample", lc->output_topic, key,
                            r->audit_buf, need) != LD_OK)
        r->exit_code = LD_EXIT_RUNTIME;
}

/* labeling.at_bound pause: while its store is at max_pending the joiner
 * holds back the partitions ahead of the global watermark, so that those
 * behind it catch up and let it release. The pipeline holds a partition by
 * not reading its queue: prefetch and end-of-partition event are kept.
 * Called parked (the pipeline is the ingest thread's otherwise). */
static void on_flow(ld_topic_kind_t kind, int32_t partition, int pause,
                    void *opaque)
{
    run_t *r = opaque;
    if (pause && r->flow_lifted)
        return;
    ld_record_kind_t k =
        kind == LD_TOPIC_EVENTS ? LD_RECORD_EVENT : LD_RECORD_LABEL;
    ld_err_t err = pause ? ld_pipeline_pause(r->pipe, k, partition)
                         : ld_pipeline_resume(r->pipe, k, partition);
    ld_log(err && err != LD_ERR_NOENT ? LD_LOG_WARN : LD_LOG_DEBUG, "join",
           "msg=\"%s partition at max_pending\" kind=%s partition=%d%s",
           pause ? "holding" : "releasing",
           k == LD_RECORD_EVENT ? "event" : "label", (int)partition,
           err && err != LD_ERR_NOENT ? " err=\"cannot\"" : "");
}

/* Holding back is no use when the partitions behind have nothing to read
 * (they wait for traffic, or their idle_timeout): the held ones would wait
 * with them, and a backfill would never see its end. After FLOW_STARVED_MS
 * without a record, let every one go until the joiner holds none back; the
 * store grows past max_pending. (Not sooner: a partition just assigned
 * takes a fetch or two to get its first records, and the pipeline itself
 * waits up to 2 s for a partition that is behind.) */
#define FLOW_STARVED_MS 3000
static void flow_lift(run_t *r)
{
    ld_err_t e1 = ld_pipeline_resume(r->pipe, LD_RECORD_EVENT, -1);
    ld_err_t e2 = ld_pipeline_resume(r->pipe, LD_RECORD_LABEL, -1);
    ld_log(LD_LOG_WARN, "join",
           "msg=\"at max_pending, the partitions behind have nothing to "
           "read: reading on past the bound\" max_pending=%lld%s",
           (long long)r->conf->labeling.max_pending,
           e1 || e2 ? " err=\"cannot resume\"" : "");
    r->flow_lifted = 1;
}

/* ---- The loop ----------------------------------------------------------- */

/* A partition with records left to fetch is not idle: no record for
 * idle_timeout then means an unreachable broker or a stalled loop, and an
 * advance would make its backlog late (0007: a broker restart that blocked a
 * commit point for 30 s dropped three quarters of the examples). */
static void note_backlog(void *opaque, const char *topic, int32_t partition,
                         int64_t lag)
{
    run_t *r = opaque;
    if (lag > 0)
        ld_joiner_note_backlog(r->joiner,
                               strcmp(topic, r->conf->pipeline.events_topic) ==
                                       0
                                   ? LD_TOPIC_EVENTS
                                   : LD_TOPIC_LABELS,
                               partition);
}

/* Counts one more; true at the 1st, 2nd, 4th, 8th, ... */
static int count_and_log(uint64_t *n)
{
    ++*n;
    return (*n & (*n - 1)) == 0;
}

/* Feeds one decoded record to the joiner and everything it releases on
 * through the trainer. */
static void process(run_t *r, const ld_record_t *rec, const ld_packed_t *packed)
{
    ld_err_t err;
    ld_lineage_consumed(r->lin, rec->topic, rec->partition, rec->offset);
    note_position(r, (int)rec->kind, rec->partition, rec->offset + 1);
    if (r->in->read_to)
        r->in->read_to(r, (int)rec->kind, rec->partition, rec->offset);
    if (rec->kind == LD_RECORD_EVENT && packed)
        err = ld_joiner_add_event_packed(r->joiner, rec->partition, rec->offset,
                                         rec->key, rec->key_len, rec->time_ms,
                                         packed);
    else if (rec->kind == LD_RECORD_EVENT)
        err =
            ld_joiner_add_event(r->joiner, rec->partition, rec->offset,
                                rec->key, rec->key_len, rec->time_ms, &rec->x);
    else if (rec->no_label) /* label_mode equals: not a match */
        err = ld_joiner_add_nolabel(r->joiner, rec->partition, rec->offset,
                                    rec->key, rec->key_len, rec->time_ms);
    else
        err = ld_joiner_add_label(r->joiner, rec->partition, rec->offset,
                                  rec->key, rec->key_len, rec->time_ms,
                                  (float)rec->label);
    if (!err && rec->kind == LD_RECORD_EVENT)
        run_exp_serve(r, rec);
    /* The pipeline dead-letters what the joiner cannot hold (keys, time
     * range): a refusal here is out of memory or a bug. Counted on
     * /metrics (learnd_records_dropped_total{reason="refused"}). */
    /* Logged at the 1st, 2nd, 4th, 8th, ... time: a flood of them (a bad
     * label mapping) must not flood the log; the counter says how many. */
    if (err && count_and_log(&r->refused))
        ld_log(LD_LOG_WARN, "join",
               "msg=\"record refused by the joiner\" topic=%s partition=%d "
               "offset=%lld err=\"%s\" refused=%llu",
               rec->topic, (int)rec->partition, (long long)rec->offset,
               ld_err_str(err), (unsigned long long)r->refused);
    if (r->in->read_to) /* the partition may stay idle from here */
        r->in->read_to(r, (int)rec->kind, rec->partition, rec->offset + 1);
    ld_example_t ex;
    while (ld_joiner_poll(r->joiner, &ex)) {
        if (r->hooks.example)
            r->hooks.example(r->hooks.opaque, &ex);
        if (r->join) { /* join role: the trainer is elsewhere */
            run_join_emit(r, &ex);
            continue;
        }
        if ((err = ld_trainer_add(r->trainer, &ex))) {
            if (count_and_log(&r->model_refused))
                ld_log(LD_LOG_WARN, "trainer",
                       "msg=\"example refused by the model\" partition=%d "
                       "offset=%lld err=\"%s\" refused=%llu",
                       (int)ex.partition, (long long)ex.offset, ld_err_str(err),
                       (unsigned long long)r->model_refused);
        } else {
            r->examples++;
            /* The audit topic holds exactly what the model trains on. */
            if (r->audit)
                audit(r, &ex);
        }
        /* Right after the micro-batch that decided it (an add trains at
         * most one): how many batches one record's releases train depends
         * on fetch interleaving, so a later snapshot would not be a pure
         * function of the input. */
        run_take_decisions(r);
    }
}

/* Opens the next transaction while the ingest thread is parked (it
 * dead-letters into it). Being fenced shows here first when another
 * instance took over between two commit points. */
static void begin_next(run_t *r)
{
    ld_err_t err = ld_pipeline_txn_begin(r->pipe);
    if (err == LD_ERR_FENCED)
        run_say_fenced(r);
    else if (err)
        ld_log(LD_LOG_CRIT, MOD,
               "msg=\"cannot begin a transaction: exiting\" err=\"%s\"",
               ld_err_str(err));
    if (err)
        r->exit_code = LD_EXIT_RUNTIME;
}

/* One hand-over from the ingest thread. */
static void take(run_t *r, const ld_ingest_item_t *it)
{
    switch (it->what) {
    case LD_INGEST_RECORD:
        process(r, &it->rec, it->packed);
        r->consumed++;
        break;
    case LD_INGEST_DEAD:
        note_position(r, run_kind_of(r, it->rec.topic), it->rec.partition,
                      it->rec.offset + 1);
        r->dead++;
        break;
    case LD_INGEST_CAUGHT_UP:
        r->caught_up = 1;
        break;
    case LD_INGEST_PAUSED:
        if (r->state == RUN_PARKING)
            r->state = RUN_PARKED;
        break;
    case LD_INGEST_STOPPED:
        r->state = RUN_STOPPED;
        if (it->err == LD_ERR_FENCED) {
            run_say_fenced(r);
            r->exit_code = LD_EXIT_RUNTIME;
        } else if (it->err) {
            ld_log(LD_LOG_CRIT, MOD,
                   "msg=\"fatal Kafka error: exiting\" err=\"%s\"",
                   ld_err_str(it->err));
            r->exit_code = LD_EXIT_RUNTIME;
        }
        break;
    }
}

/* Ends the ingest thread. drain: what it polled is processed (a clean stop
 * commits it); else dropped (a replay at its version, a fatal error:
 * nothing more is committed). */
static void stop_ingest(run_t *r, int drain)
{
    if (r->state == RUN_RUNNING || r->state == RUN_PARKING ||
        r->state == RUN_PARKED) {
        ld_ingest_stop(r->ingest);
        r->state = RUN_DRAINING;
    }
    while (r->state == RUN_DRAINING) {
        const ld_ingest_item_t *it = ld_ingest_next(r->ingest, 1000);
        if (!it)
            continue;
        if (it->what == LD_INGEST_STOPPED ||
            (drain && !r->exit_code && !r->in->reached(r)))
            take(r, it);
        ld_ingest_done(r->ingest);
    }
    ld_ingest_destroy(r->ingest); /* joins the thread */
    r->ingest = NULL;
}

/* ---- Periodic jobs ------------------------------------------------------ */

/* One look at the clock: tick() passes it to every job. */
typedef struct tick {
    int64_t now;
    uint64_t progress; /* records taken, good or dead-lettered */
    int idle;          /* no item this time */
} tick_t;

/* A job says whether it needs the loop parked now (due; NULL: never asks)
 * and does its work while parked (run, every time the loop parks: each
 * one checks its own clock). Every due is asked at every tick, in table
 * order, whatever the others answer: some keep state of their own. */
typedef struct job {
    const char *name;
    int (*due)(run_t *r, const tick_t *t);
    void (*run)(run_t *r, const tick_t *t);
} job_t;

/* Parked: everything polled is processed, so the pipeline's lag is exactly
 * what is left to fetch. */
static void job_lag(run_t *r, const tick_t *t)
{
    (void)t;
    ld_pipeline_lag(r->pipe, note_backlog, r);
}

/* The one wall-clock input of the join (a replay repeats the recorded
 * advances instead, as it reads). */
static void job_idle_advance(run_t *r, const tick_t *t)
{
    r->in->idle_advance(r, t->now);
}

/* Near max_pending the joiner's flow decides which partitions to hold back
 * or let go: park for it every 1024 records (and when idle), not once a
 * second. */
static int job_flow_due(run_t *r, const tick_t *t)
{
    r->flow = 0;
    if (!r->flow_on)
        return 0;
    ld_joiner_stats_t js;
    ld_joiner_stats(r->joiner, &js);
    if (r->flow_lifted && js.paused == 0)
        r->flow_lifted = 0;
    uint64_t held = js.pending_events + js.pending_labels;
    r->flow = (held >= (uint64_t)r->conf->labeling.max_pending / 10 * 8 ||
               js.paused > 0) &&
              (t->progress - r->last_flow >= 1024 || t->idle);
    if (!t->idle)
        r->last_item = t->now;
    else if (js.paused > 0 && !r->flow_lifted &&
             t->now - r->last_item >= FLOW_STARVED_MS)
        r->flow_lift = 1;
    return r->flow;
}

static void job_flow(run_t *r, const tick_t *t)
{
    (void)t;
    if (r->flow_lift) {
        flow_lift(r);
        r->flow_lift = 0;
    } else if (r->flow_on) {
        ld_joiner_flow(r->joiner, on_flow, r);
    }
}

static int job_report_due(run_t *r, const tick_t *t)
{
    return t->now >= r->next_report;
}

static void job_report(run_t *r, const tick_t *t)
{
    if (t->now < r->next_report)
        return; /* parked for another job */
    run_report(r);
    r->next_report = t->now + 1000;
}

/* Publications wait for the commit point, each with a snapshot of the
 * model: when event time runs far ahead of the wall clock (a backfill,
 * bench_e2e) triggers fire many times per interval, and dozens of
 * snapshots would pile up (memory, one long stall, one huge transaction).
 * A few waiting bring the commit point on. */
static int job_commit_due(run_t *r, const tick_t *t)
{
    r->pile = ld_publisher_waiting(r->pub) >= MAX_WAITING_PUBLICATIONS;
    return t->now >= r->next_commit || r->pile;
}

static void job_commit(run_t *r, const tick_t *t)
{
    if (t->now < r->next_commit && !r->pile)
        return;
    (void)r->in->commit_point(r); /* sets exit_code when it fails */
    r->next_commit = t->now + r->conf->daemon.commit_interval_ms;
}

/* In the order they run while parked. */
static const job_t jobs[] = {
    {"lag", NULL, job_lag},
    {"idle_advance", NULL, job_idle_advance},
    {"flow", job_flow_due, job_flow},
    {"report", job_report_due, job_report},
    {"commit_point", job_commit_due, job_commit},
};
#define NJOBS (sizeof(jobs) / sizeof(jobs[0]))

/* RUNNING -> PARKING when a job is due; PARKED -> RUNNING after running
 * every job (and opening the next transaction). */
static void tick(run_t *r, int idle)
{
    tick_t t = {ld_now_mono_ms(), r->consumed + r->dead, idle};
    int want = 0;
    for (size_t i = 0; i < NJOBS; i++)
        if (jobs[i].due && jobs[i].due(r, &t))
            want = 1;
    if (r->state == RUN_RUNNING && want) {
        r->last_flow = t.progress;
        ld_ingest_pause(r->ingest); /* PAUSED follows what it polled */
        r->state = RUN_PARKING;
    }
    if (r->state != RUN_PARKED)
        return;
    for (size_t i = 0; i < NJOBS; i++)
        jobs[i].run(r, &t);
    if (!r->exit_code)
        begin_next(r);
    r->state = RUN_RUNNING;
    ld_ingest_resume(r->ingest);
}

/* STARTING -> RUNNING. The transaction is opened here and after every
 * commit point, while the ingest thread is parked: it dead-letters into
 * the open transaction and so never has to begin one itself. */
static void start_ingest(run_t *r)
{
    begin_next(r);
    if (!r->exit_code && ld_ingest_start(r->ingest) != LD_OK)
        r->exit_code = LD_EXIT_RUNTIME;
    else if (!r->exit_code)
        r->state = RUN_RUNNING;
    int64_t now = ld_now_mono_ms();
    r->next_commit = now + r->conf->daemon.commit_interval_ms;
    r->next_report = now + 1000;
    r->last_item = now; /* the last record from the ingest thread */
}

int ld_run(const ld_config_t *conf, const ld_run_opts_t *opts)
{
    static const ld_run_hooks_t no_hooks = {0};
    run_t r = {.conf = conf, .opts = opts};
    r.hooks = opts->hooks ? *opts->hooks : no_hooks;
    r.start_ms = ld_now_mono_ms();
    r.flow_on = conf->labeling.at_bound == LD_BOUND_PAUSE;
    char errstr[1024] = "";
    int code = run_setup(&r, errstr, sizeof(errstr));
    if (code != LD_EXIT_OK) {
        ld_log(LD_LOG_CRIT, MOD, "msg=\"cannot start\" err=%s",
               ld_log_q(errstr));
        run_teardown(&r);
        return code;
    }
    if (r.train) { /* train role: a loop of its own (run_train.c) */
        code = run_train(&r);
        run_teardown(&r);
        return code;
    }
    ld_metrics_set(r.reg, r.fam.up, "", 1);
    ld_metrics_set_ready(r.reg, 1);
    ld_log(LD_LOG_NOTICE, MOD,
           "msg=\"running\" model=%s events=%s labels=%s transactional_id=%s",
           r.tconf.name, conf->pipeline.events_topic,
           conf->pipeline.labels_topic, r.txn_id[0] ? r.txn_id : "-");

    start_ingest(&r);
    unsigned n = 0;
    while (!r.exit_code && r.state != RUN_STOPPED) {
        const ld_ingest_item_t *it = ld_ingest_next(r.ingest, 100);
        if (it) {
            take(&r, it);
            ld_ingest_done(r.ingest);
        }
        if (r.in->reached(&r) || (opts->until_caught_up && r.caught_up))
            break;
        /* the rest every 256 records, when idle, or when parked */
        if (it && r.state != RUN_PARKED && (++n & 255) != 0)
            continue;
        if (ld_signals_stop_requested())
            break;
        if (r.hooks.should_stop && r.hooks.should_stop(r.hooks.opaque))
            break;
        if (ld_signals_take_reopen() && ld_config_apply_logging(conf) != LD_OK)
            ld_log(LD_LOG_ERR, MOD, "msg=\"cannot reopen the log file\"");
        ld_metrics_heartbeat(r.reg);
        uint64_t progress = r.consumed + r.dead;
        if (r.hooks.consumed &&
            (progress - r.last_consumed_hook >= 1024 || !it)) {
            r.hooks.consumed(r.hooks.opaque, progress);
            r.last_consumed_hook = progress;
        }
        tick(&r, it == NULL);
    }
    /* What was polled is processed before the last commit point: the
     * pipeline's positions include it. */
    stop_ingest(&r, !r.exit_code && !r.in->reached(&r));
    run_progress_end(&r);
    if (r.hooks.consumed)
        r.hooks.consumed(r.hooks.opaque, r.consumed + r.dead);
    ld_metrics_set_ready(r.reg, 0);
    if (!r.exit_code && !r.in->reached(&r) && opts->until_caught_up &&
        !r.join && ld_pipeline_caught_up(r.pipe) &&
        !ld_signals_stop_requested())
        run_final_checkpoint(&r);
    r.in->end(&r);
    /* Before the consumer closes: revoking the partitions drops them. */
    ld_joiner_stats_t js = {0}, life = {0};
    if (r.joiner) {
        ld_joiner_stats(r.joiner, &js);
        ld_joiner_stats_lifetime(r.joiner, &life);
        run_report_drops(&r, &js, 1);
    }
    if (!r.exit_code) {
        /* A clean stop ends with a commit point. */
        if (r.in->commit_point(&r) != LD_OK && !r.exit_code)
            r.exit_code = LD_EXIT_RUNTIME;
        r.pending_at_close = js.pending_events; /* run_report() says it */
        r.state = RUN_CLOSING;
        if (ld_pipeline_close(r.pipe, (int)conf->daemon.shutdown_timeout_ms))
            ld_log(LD_LOG_WARN, MOD, "msg=\"consumer did not close cleanly\"");
    }
    run_report(&r);
    run_report_stopped(&r, &js, &life);
    code = r.exit_code;
    run_teardown(&r);
    return code;
}
