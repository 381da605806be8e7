/* SPDX-License-Identifier: Apache-2.0 */
/* The run loop's side of a commit point: the input positions it commits,
 * the lineage a publication records, the resume state it saves and what
 * a start restores, and the commit point itself (docs/ARCHITECTURE.md,
 * "The commit protocol"). */
#include "daemon/run_internal.h"

#define MOD "daemon"

/* ---- Resume state ------------------------------------------------------ */

/* What the loop has processed: next offset per partition. */
static rd_kafka_topic_partition_list_t *loop_positions(const run_t *r)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    const char *topic[2] = {r->conf->pipeline.events_topic,
                            r->conf->pipeline.labels_topic};
    for (int k = 0; l && k < 2; k++)
        for (int32_t i = 0; i < r->nnext[k]; i++)
            if (r->next[k][i] >= 0)
                rd_kafka_topic_partition_list_add(l, topic[k], i)->offset =
                    r->next[k][i];
    return l;
}

/* The input positions now: next offset per partition and where a restart
 * re-reads from (the joiner's oldest needed record). committed: the
 * pipeline's run_positions, what a commit point commits (only while the ingest
 * thread is parked); else what the loop has processed, for a publication
 * decided between records. Topic names point at the config's strings.
 * Caller frees *out; returns the count (0 with *out NULL when out of
 * memory). */
size_t run_positions(run_t *r, int committed,
                     Learnd__V1__PartitionPosition **out)
{
    *out = NULL;
    rd_kafka_topic_partition_list_t *next =
        committed ? ld_pipeline_position(r->pipe) : loop_positions(r);
    if (!next)
        return 0;
    size_t n = (size_t)next->cnt;
    Learnd__V1__PartitionPosition *pos = calloc(n ? n : 1, sizeof(*pos));
    if (!pos) {
        rd_kafka_topic_partition_list_destroy(next);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        const rd_kafka_topic_partition_t *tp = &next->elems[i];
        int events = strcmp(tp->topic, r->conf->pipeline.events_topic) == 0;
        int64_t eo = -1, lo = -1;
        if (ld_joiner_resume_offsets(r->joiner, tp->partition, &eo, &lo))
            eo = lo = -1;
        learnd__v1__partition_position__init(&pos[i]);
        pos[i].topic = events ? r->conf->pipeline.events_topic
                              : r->conf->pipeline.labels_topic;
        pos[i].partition = tp->partition;
        pos[i].next_offset = tp->offset;
        pos[i].reread_from = events ? eo : lo;
    }
    rd_kafka_topic_partition_list_destroy(next);
    *out = pos;
    return n;
}

/* Hands the lineage the dead letters and dropped late labels counted since
 * the last call: late labels are those older than their partition's
 * watermark and those after their event's window that policy drop (or a
 * positive already emitted) leaves out. The joiner does not count records
 * re-read after a restart, and the pipeline does not dead-letter them
 * again, so each counts once across restarts. */
static void lineage_counts(run_t *r)
{
    ld_joiner_stats_t js;
    ld_joiner_stats(r->joiner, &js);
    uint64_t late = js.labels_late + js.late_labels_dropped;
    ld_lineage_count(r->lin, r->dead - r->lin_dead, late - r->lin_late);
    r->lin_dead = r->dead;
    r->lin_late = late;
}

Learnd__V1__Lineage *run_take_lineage(run_t *r)
{
    lineage_counts(r);
    Learnd__V1__PartitionPosition *pos = NULL;
    size_t n = run_positions(r, 0, &pos);
    Learnd__V1__Lineage *l = ld_lineage_take(r->lin, pos, n);
    free(pos);
    return l;
}

/* The input positions a commit point commits (ld_resume_parts_t). */
static size_t committed_positions(void *opaque,
                                  Learnd__V1__PartitionPosition **out)
{
    run_t *r = opaque;
    if (r->train)
        return run_train_positions(r, out);
    return run_positions(opaque, 1, out);
}

static ld_resume_parts_t resume_parts(run_t *r, const char *const *topics)
{
    ld_resume_parts_t parts = {
        r->trainer, r->joiner,           r->trig, r->lin, &r->assigned,
        topics,     committed_positions, r,       NULL,   NULL};
    if (r->exp) {
        parts.exp_save = run_exp_save;
        parts.exp_load = run_exp_load;
    }
    return parts;
}

/* Writes the resume state of this commit point into the open transaction
 * (publish/commit.c says what it holds). */
ld_err_t run_save_state(run_t *r, rd_kafka_t *producer)
{
    /* train role: its input is the examples topic, and through the
     * examples the events topic (run_train.c) */
    int tr = r->opts->role == LD_ROLE_TRAIN;
    const char *topics[] = {
        tr ? r->examples_topic : r->conf->pipeline.events_topic,
        tr ? r->conf->pipeline.events_topic : r->conf->pipeline.labels_topic};
    lineage_counts(r); /* saved with the lineage */
    ld_resume_parts_t parts = resume_parts(r, topics);
    return ld_publisher_save_state(r->pub, producer, &parts);
}

/* Restores the newest committed resume state, if there is one: the daemon
 * then continues exactly where that commit left off. */
ld_err_t run_restore_state(run_t *r, char *errstr, size_t size)
{
    /* train role: its input is the examples topic, and through the
     * examples the events topic (run_train.c) */
    int tr = r->opts->role == LD_ROLE_TRAIN;
    const char *topics[] = {
        tr ? r->examples_topic : r->conf->pipeline.events_topic,
        tr ? r->conf->pipeline.events_topic : r->conf->pipeline.labels_topic};
    ld_resume_parts_t parts = resume_parts(r, topics);
    return ld_publisher_restore_state(r->pub, &r->conf->kafka, &parts, errstr,
                                      size);
}

/* Another instance took our transactional id: the reason we exit. */
void run_say_fenced(const run_t *r)
{
    ld_log(LD_LOG_CRIT, MOD,
           "msg=\"fenced: another instance took over "
           "transactional.id / group.instance.id %s: exiting\"",
           r->txn_id);
}

/* Input records taken so far, good or dead-lettered. */
static uint64_t progress_count(const run_t *r)
{
    ld_pipeline_stats_t ps;
    ld_pipeline_stats(r->pipe, &ps);
    uint64_t n = ps.records[0] + ps.records[1];
    for (int k = 0; k < 2; k++)
        for (int why = 0; why < LD_REASON__COUNT; why++)
            n += ps.dlq[k][why];
    return n;
}

/* A commit point: outputs and input offsets in one transaction (the live
 * input policy's; a replay writes nothing). */
void run_committed(run_t *r, uint64_t published)
{
    ld_publisher_committed(r->pub); /* logged once readers see them */
    double now_s = (double)ld_now_wall_ms() / 1000.0;
    ld_metrics_set(r->reg, r->fam.last_commit_time, "", now_s);
    if (r->stateful)
        ld_metrics_set(r->reg, r->fam.state_bytes, "",
                       (double)ld_publisher_state_bytes(r->pub));
    if (r->ctr->published > published) {
        ld_metrics_set(r->reg, r->fam.last_pub_version, "",
                       (double)r->ctr->version);
        ld_metrics_set(r->reg, r->fam.last_pub_time, "", now_s);
    }
    if (r->hooks.committed)
        r->hooks.committed(r->hooks.opaque, r->ctr->published - published);
}

ld_err_t run_commit_point(run_t *r)
{
    /* Nothing new since the last commit point: nothing to commit. */
    uint64_t progress = progress_count(r);
    if (progress == r->progress_at_commit && !ld_publisher_waiting(r->pub) &&
        ld_publisher_commit_seq(r->pub))
        return LD_OK;
    uint64_t published = r->ctr->published;
    ld_err_t err = ld_pipeline_txn_begin(r->pipe);
    if (!err)
        err = ld_publisher_flush(r->pub, ld_pipeline_producer(r->pipe));
    if (!err)
        err = run_exp_flush(r); /* before the state, which then has none */
    if (!err && r->join)
        err = run_join_watermarks(r);
    if (!err && r->stateful)
        err = run_save_state(r, ld_pipeline_producer(r->pipe));
    /* join role: each partition's joiner record rides on its offset */
    rd_kafka_topic_partition_list_t *offsets = NULL;
    if (!err && r->join)
        err = run_join_offsets(r, &offsets);
    if (!err)
        err = ld_pipeline_txn_commit(r->pipe, offsets, 60000);
    if (offsets)
        rd_kafka_topic_partition_list_destroy(offsets);
    if (!err) {
        r->progress_at_commit = progress;
        run_committed(r, published);
    }
    if (err == LD_ERR_FENCED) {
        run_say_fenced(r);
        r->exit_code = LD_EXIT_RUNTIME;
    } else if (err) {
        /* The stages have moved past the last commit point in memory:
         * rewinding only the consumer would train some examples twice.
         * Abort, and exit so that a restart restores the committed state
         * (systemd's Restart=on-failure, or any supervisor). */
        if (ld_pipeline_txn_abort(r->pipe, 30000) != LD_OK)
            ld_log(LD_LOG_ERR, MOD, "msg=\"abort failed too\"");
        ld_log(LD_LOG_CRIT, MOD,
               "msg=\"commit point failed and was aborted: exiting so that "
               "a restart resumes from the last committed state\" "
               "err=\"%s\"",
               ld_err_str(err));
        r->exit_code = LD_EXIT_RUNTIME;
    }
    ld_metrics_add(r->reg, r->fam.txn,
                   err ? "result=\"abort\"" : "result=\"commit\"", 1);
    return err;
}
