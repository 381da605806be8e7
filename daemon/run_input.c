/* SPDX-License-Identifier: Apache-2.0 */
/* The run loop's input policies: what reading the input live (`learnd
 * run`) and re-reading it to rebuild one version (`learnd replay`) do
 * differently. Where each partition starts, which idle-partition advances
 * the join sees, whether anything is written, and when to stop; run.c
 * calls through run_t.in and never asks which one it runs. */
#include "daemon/run_internal.h"

#define MOD "daemon"

/* ---- Live --------------------------------------------------------------- */

static int live_setup(run_t *r, char *errstr, size_t size)
{
    (void)errstr;
    (void)size;
    r->pconf.assign_all = 0; /* the group assigns the partitions */
    return LD_EXIT_OK;
}

static ld_publisher_t *live_publisher(const run_t *r,
                                      const ld_publisher_conf_t *pc)
{
    (void)r;
    return ld_publisher_new_kafka(pc);
}

/* Where the joiner's resume state says (the oldest record still needed),
 * or the group's offset. */
static int64_t live_start(run_t *r, const char *topic, int32_t partition,
                          int64_t resume)
{
    (void)r;
    (void)topic;
    (void)partition;
    return resume;
}

static void say_lost(void *opaque, const char *topic, int32_t partition,
                     int64_t want, int64_t log_start)
{
    (void)opaque;
    ld_log(LD_LOG_ERR, MOD,
           "msg=\"input lost: retention deleted records this run resumes "
           "from; reading on from the log start\" topic=%s partition=%d "
           "offset=%lld log_start=%lld lost=%lld",
           topic, (int)partition, (long long)want, (long long)log_start,
           (long long)(log_start - want));
}

/* A run resumes where its last commit point left each partition: records
 * retention deleted since were never read (the consumer resets to the log
 * start). They are lost; say which, once per assignment. */
static void live_started(run_t *r, const rd_kafka_topic_partition_list_t *p)
{
    if (p->cnt == 0)
        return;
    ld_run_start_t *want = calloc((size_t)p->cnt, sizeof(*want));
    if (!want)
        return;
    for (int i = 0; i < p->cnt; i++)
        want[i] = (ld_run_start_t){p->elems[i].topic, p->elems[i].partition,
                                   p->elems[i].offset};
    char why[256];
    if (ld_run_check_retained(&r->conf->kafka, want, (size_t)p->cnt, 10000,
                              say_lost, r, why, sizeof(why)) < 0)
        ld_log(LD_LOG_WARN, MOD,
               "msg=\"cannot check that the input to resume from is "
               "retained\" err=%s",
               ld_log_q(why));
    free(want);
}

/* The one wall-clock input of the join: recorded in the next checkpoint's
 * lineage, for a replay to repeat. */
static void on_advance(const ld_wm_advance_t *adv, void *opaque)
{
    run_t *r = opaque;
    const char *topic = adv->kind == LD_TOPIC_EVENTS
                            ? r->conf->pipeline.events_topic
                            : r->conf->pipeline.labels_topic;
    ld_lineage_advance(r->lin, topic, adv->partition, adv->offset,
                       ld_now_wall_ms(), adv->watermark_ms);
    ld_log(LD_LOG_NOTICE, "join",
           "msg=\"idle partition: watermark advanced\" topic=%s "
           "partition=%d offset=%lld watermark_ms=%lld",
           topic, (int)adv->partition, (long long)adv->offset,
           (long long)adv->watermark_ms);
}

static void live_idle_advance(run_t *r, int64_t now)
{
    ld_joiner_idle_advance(r->joiner, now, on_advance, r);
}

static void live_queued(run_t *r)
{
    (void)r; /* the commit point writes it */
}

/* A live run has no goal but the input's end (--until-caught-up) or a
 * stop. */
static int live_reached(const run_t *r)
{
    (void)r;
    return 0;
}

static void live_end(run_t *r)
{
    (void)r;
}

const run_input_policy_t run_input_live = {
    .writes = 1,
    .warm_start = 1,
    .metrics = 1,
    .final_dedup = 1,
    .progress = "backfill",
    .progress_always = 0,
    .setup = live_setup,
    .publisher = live_publisher,
    .start = live_start,
    .started = live_started,
    .read_to = NULL, /* nothing recorded: it makes its own advances */
    .idle_advance = live_idle_advance,
    .queued = live_queued,
    .commit_point = run_commit_point,
    .reached = live_reached,
    .end = live_end,
};

/* ---- Replay ------------------------------------------------------------- */

static int replay_setup(run_t *r, char *errstr, size_t size)
{
    if (r->opts->n_replay_advances) {
        r->adv_done = calloc(r->opts->n_replay_advances, 1);
        if (!r->adv_done) {
            snprintf(errstr, size, "out of memory");
            return LD_EXIT_RUNTIME;
        }
        r->adv_left = r->opts->n_replay_advances;
    }
    /* A group of its own: the original's offsets stay untouched. */
    snprintf(r->replay_group, sizeof(r->replay_group), "learnd-replay-%s-%lld",
             r->tconf.name, (long long)ld_now_wall_ms());
    r->pconf.group_id = r->replay_group;
    /* It reads the partitions itself, from the recorded starts: it joins
     * no group (and leaves none behind on the cluster). */
    r->pconf.assign_all = 1;
    return LD_EXIT_OK;
}

/* A queued publication is recorded and nothing is written; the version
 * asked for is kept. */
static ld_publisher_t *replay_publisher(const run_t *r,
                                        const ld_publisher_conf_t *pc)
{
    return ld_publisher_new_capture(pc, r->opts->replay_version);
}

/* Repeats the recorded advances of kind/partition due once it is read up
 * to next (the original run made them when its next offset there was the
 * recorded one; where the other partitions were does not change what the
 * join releases). */
static void replay_read_to(run_t *r, int kind, int32_t partition, int64_t next)
{
    for (size_t i = 0; r->adv_left && i < r->opts->n_replay_advances; i++) {
        const ld_run_advance_t *a = &r->opts->replay_advances[i];
        if (r->adv_done[i] || a->partition != partition ||
            run_kind_of(r, a->topic) != kind || a->offset > next)
            continue;
        ld_wm_advance_t adv = {kind == LD_RECORD_EVENT ? LD_TOPIC_EVENTS
                                                       : LD_TOPIC_LABELS,
                               partition, a->offset, a->watermark_ms};
        if (ld_joiner_apply_advance(r->joiner, &adv) != LD_OK) {
            ld_log(LD_LOG_ERR, MOD,
                   "msg=\"cannot repeat a recorded advance\" topic=%s "
                   "partition=%d offset=%lld",
                   a->topic, (int)partition, (long long)a->offset);
            r->exit_code = LD_EXIT_RUNTIME;
        }
        r->adv_done[i] = 1;
        r->adv_left--;
    }
}

/* Where the original run started on topic/partition (-1: the beginning),
 * whatever a resume state says; the advances it made there before reading
 * anything are repeated now. */
static int64_t replay_start(run_t *r, const char *topic, int32_t partition,
                            int64_t resume)
{
    (void)resume;
    int64_t off = -1;
    for (size_t i = 0; i < r->opts->n_replay_start; i++) {
        const ld_run_start_t *s = &r->opts->replay_start[i];
        if (s->partition == partition && strcmp(s->topic, topic) == 0) {
            off = s->offset;
            break;
        }
    }
    replay_read_to(r, run_kind_of(r, topic), partition, off >= 0 ? off : -1);
    /* Unrecorded: the beginning, said to librdkafka. Left unset, it looked
     * up the replay's own (always empty) group offsets and then reset to
     * auto.offset.reset ~110 ms later, a tenth of a few-profile replay
     * (#18); and a kafka: auto.offset.reset of latest read nothing. */
    return off >= 0 ? off : RD_KAFKA_OFFSET_BEGINNING;
}

static void replay_started(run_t *r, const rd_kafka_topic_partition_list_t *p)
{
    (void)r; /* ld_cmd_replay checked the recorded range before the run */
    (void)p;
}

/* The recorded advances stand in for the wall clock's (replay_read_to). */
static void replay_idle_advance(run_t *r, int64_t now)
{
    (void)r;
    (void)now;
}

/* The capture publisher kept the version asked for: the stop. */
static void replay_queued(run_t *r)
{
    ld_snapshot_t *got = ld_publisher_take_captured(r->pub);
    if (got) {
        *r->opts->replayed = got;
        r->replay_done = 1;
    }
}

/* A replay writes nothing: no transaction to commit. */
static ld_err_t replay_commit_point(run_t *r)
{
    (void)r;
    return LD_OK;
}

static int replay_reached(const run_t *r)
{
    return r->replay_done;
}

static void replay_end(run_t *r)
{
    if (r->replay_done || r->exit_code)
        return;
    ld_log(LD_LOG_ERR, MOD,
           "msg=\"replay read the input without reaching the version\" "
           "version=%llu last_version=%llu",
           (unsigned long long)r->opts->replay_version,
           (unsigned long long)r->ctr->version);
    r->exit_code = LD_EXIT_RUNTIME;
}

const run_input_policy_t run_input_replay = {
    .writes = 0,
    .warm_start = 0, /* a fresh model, whatever the local store holds */
    .metrics = 0,
    .final_dedup = 0,
    .progress = "replay",
    .progress_always = 1,
    .setup = replay_setup,
    .publisher = replay_publisher,
    .start = replay_start,
    .started = replay_started,
    .read_to = replay_read_to,
    .idle_advance = replay_idle_advance,
    .queued = replay_queued,
    .commit_point = replay_commit_point,
    .reached = replay_reached,
    .end = replay_end,
};
