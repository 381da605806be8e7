/* SPDX-License-Identifier: Apache-2.0 */
/* The join role (learnd run --role join): the run loop's released examples
 * go to the examples topic instead of a trainer, as JoinedExample records
 * on the partition of their source partition, in the commit point's
 * transaction with the input offsets, dead letters and resume state; each
 * commit point adds a watermark record per assigned partition so that a
 * train instance knows how far each partition has been decided
 * (docs/OPERATIONS.md, "Scaling out"). */
#include "daemon/run_internal.h"

#include <librdkafka/rdkafka.h>

#include "pipeline/decode.h"
#include "pipeline/kafka.h"
#include "trainer/checkpoint.h"

#define MOD "join"

struct run_join {
    uint32_t hash_bits, dense_dim;
    uint8_t fmap[32];
    uint8_t *buf; /* one record: field 1 (the example), then the rest */
    size_t cap;
    uint64_t produced, watermarks;
    uint64_t handed_over, taken_over; /* commit points at a revoke; records */
};

int run_model_spec(const run_t *r, uint32_t *hash_bits, uint32_t *dense_dim,
                   uint8_t fmap_sha[32], char *errstr, size_t size)
{
    ld_decoder_t *d = ld_decoder_new(&r->pconf, LD_RECORD_EVENT, errstr, size);
    if (!d)
        return -1;
    const char *fm = ld_decoder_feature_map(d);
    ld_ckpt_sha256(fm, strlen(fm), fmap_sha);
    *hash_bits = (uint32_t)r->tconf.hash_bits;
    *dense_dim = (uint32_t)r->tconf.dense_dim;
    ld_decoder_destroy(d);
    return 0;
}

int run_topic_partitions(rd_kafka_t *rk, const char *topic, char *errstr,
                         size_t size)
{
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e =
        t ? rd_kafka_metadata(rk, 0, t, &md, 10000) : rd_kafka_last_error();
    if (!e && md && md->topic_cnt == 1)
        e = md->topics[0].err;
    int n = !e && md ? md->topics[0].partition_cnt : -1;
    if (e)
        snprintf(errstr, size, "cannot read the metadata of topic %s: %s",
                 topic, rd_kafka_err2str(e));
    if (md)
        rd_kafka_metadata_destroy(md);
    if (t)
        rd_kafka_topic_destroy(t);
    return n;
}

int run_join_setup(run_t *r, char *errstr, size_t size)
{
    struct run_join *j = calloc(1, sizeof(*j));
    if (!j) {
        snprintf(errstr, size, "out of memory");
        return LD_EXIT_RUNTIME;
    }
    r->join = j;
    if (run_model_spec(r, &j->hash_bits, &j->dense_dim, j->fmap, errstr, size))
        return LD_EXIT_USAGE;
    rd_kafka_t *rk = ld_pipeline_producer(r->pipe);
    int nin =
        run_topic_partitions(rk, r->conf->pipeline.events_topic, errstr, size);
    if (nin <= 0)
        return LD_EXIT_RUNTIME;
    /* Kept regardless of age: examples carry event times from the past. */
    ld_kafka_topic_spec_t spec = {r->examples_topic, nin, 0, 1};
    if (ld_kafka_create_topics(&r->conf->kafka, &spec, 1, 30000, errstr,
                               size) != LD_OK)
        return LD_EXIT_RUNTIME;
    /* Join instances start together and all create it: the metadata of
     * one just created (here or by another) may lag behind for a moment. */
    int nex = -1;
    for (int64_t until = ld_now_mono_ms() + 30000;
         (nex = run_topic_partitions(rk, r->examples_topic, errstr, size)) <=
             0 &&
         ld_now_mono_ms() < until;)
        rd_kafka_poll(rk, 200);
    if (nex <= 0)
        return LD_EXIT_RUNTIME;
    if (nex != nin) {
        /* Partition p of the examples holds what input partition p
         * released: a train instance merges them in that order. */
        snprintf(errstr, size,
                 "examples topic %s has %d partitions but the inputs have "
                 "%d: they must be equal (create it anew with %d)",
                 r->examples_topic, nex, nin, nin);
        return LD_EXIT_USAGE;
    }
    ld_log(LD_LOG_NOTICE, MOD,
           "msg=\"join role\" examples_topic=%s partitions=%d "
           "transactional_id=%s",
           r->examples_topic, nex, r->txn_id[0] ? r->txn_id : "-");
    return LD_EXIT_OK;
}

void run_join_free(run_t *r)
{
    if (!r->join)
        return;
    double s = (double)(ld_now_mono_ms() - r->start_ms) / 1000.0;
    ld_log(LD_LOG_NOTICE, MOD,
           "msg=\"join role stopped\" examples=%llu watermark_records=%llu "
           "hand_overs=%llu take_overs=%llu seconds=%.2f examples_per_s=%.0f",
           (unsigned long long)r->join->produced,
           (unsigned long long)r->join->watermarks,
           (unsigned long long)r->join->handed_over,
           (unsigned long long)r->join->taken_over, s,
           s > 0 ? (double)r->join->produced / s : 0.0);
    free(r->join->buf);
    free(r->join);
    r->join = NULL;
}

static int reserve(struct run_join *j, size_t need)
{
    if (need <= j->cap)
        return 0;
    size_t cap = j->cap ? j->cap : 1024;
    while (cap < need)
        cap *= 2;
    uint8_t *b = realloc(j->buf, cap);
    if (!b)
        return -1;
    j->buf = b;
    j->cap = cap;
    return 0;
}

static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

/* Appends the JoinedExample fields after field 1 (watermark, spec). */
static size_t pack_tail(struct run_join *j, int64_t watermark, uint8_t *out)
{
    Learnd__V1__JoinedExample m = LEARND__V1__JOINED_EXAMPLE__INIT;
    m.watermark_ms = watermark;
    m.hash_bits = j->hash_bits;
    m.dense_dim = j->dense_dim;
    m.feature_map_hash.data = j->fmap;
    m.feature_map_hash.len = sizeof(j->fmap);
    return out ? learnd__v1__joined_example__pack(&m, out)
               : learnd__v1__joined_example__get_packed_size(&m);
}

static ld_err_t produce(run_t *r, int32_t partition, const char *key,
                        const void *val, size_t len)
{
    rd_kafka_t *rk = ld_pipeline_producer(r->pipe);
    rd_kafka_resp_err_t e;
    while ((e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(r->examples_topic),
                                  RD_KAFKA_V_PARTITION(partition),
                                  RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
                                  RD_KAFKA_V_VALUE((void *)val, len),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                  RD_KAFKA_V_END)) ==
           RD_KAFKA_RESP_ERR__QUEUE_FULL)
        rd_kafka_poll(rk, 100);
    if (e)
        ld_log(LD_LOG_ERR, MOD,
               "msg=\"cannot produce to the examples topic\" topic=%s "
               "partition=%d err=\"%s\"",
               r->examples_topic, (int)partition, rd_kafka_err2str(e));
    return e ? LD_ERR_KAFKA : LD_OK;
}

void run_join_emit(run_t *r, const ld_example_t *ex)
{
    struct run_join *j = r->join;
    int64_t dt = ld_joiner_decision_time(r->joiner);
    /* The example exactly as the audit topic carries it (field 1), then the
     * watermark (its own decision time: nothing later on this partition
     * decides before it) and the model spec. */
    size_t elen = ld_labeling_example_pack(
        ex, dt, r->conf->pipeline.events_topic, NULL, 0);
    size_t tlen = pack_tail(j, dt, NULL);
    if (elen == 0 || reserve(j, 1 + 10 + elen + tlen)) {
        ld_log(LD_LOG_ERR, MOD, "msg=\"cannot encode an example\"");
        r->exit_code = LD_EXIT_RUNTIME; /* never lose one silently */
        return;
    }
    size_t n = 0;
    j->buf[n++] = 0x0a; /* field 1, length-delimited */
    n += put_varint(j->buf + n, elen);
    if (ld_labeling_example_pack(ex, dt, r->conf->pipeline.events_topic,
                                 j->buf + n, elen) != elen) {
        r->exit_code = LD_EXIT_RUNTIME;
        return;
    }
    n += elen;
    n += pack_tail(j, dt, j->buf + n);
    if (produce(r, ex->partition, ex->event_id, j->buf, n) != LD_OK) {
        r->exit_code = LD_EXIT_RUNTIME;
        return;
    }
    j->produced++;
    r->examples++;
}

ld_err_t run_join_watermarks(run_t *r)
{
    struct run_join *j = r->join;
    /* An idle advance since the last record may have made examples due:
     * they go out first, or the watermark would claim them decided. */
    ld_example_t ex;
    while (!r->exit_code && ld_joiner_poll(r->joiner, &ex))
        run_join_emit(r, &ex);
    if (r->exit_code)
        return LD_ERR_KAFKA;
    ld_joiner_stats_t js;
    ld_joiner_stats(r->joiner, &js);
    size_t tlen = pack_tail(j, js.watermark_ms, NULL);
    if (reserve(j, tlen))
        return LD_ERR_NOMEM;
    pack_tail(j, js.watermark_ms, j->buf);
    /* The joiner's watermark, the minimum over the partitions it holds,
     * bounds every example it releases from here on any of them. */
    for (int32_t p = -1; (p = ld_partset_next(&r->assigned, p)) >= 0;) {
        ld_err_t err = produce(r, p, NULL, j->buf, tlen);
        if (err)
            return err;
        j->watermarks++;
    }
    return LD_OK;
}

/* ---- Hand-over of partitions between join instances (issue #22) ---------
 *
 * A partition's joins in progress live in this instance's joiner: events
 * waiting for labels, labels waiting for events, the partition's
 * watermarks. They are not stored but re-read (docs/DESIGN.md §6): the
 * joiner's resume record of a partition says where to re-read from and
 * which decisions are out already. That record must move with the
 * partition, or its next owner starts at the group's committed offset
 * without the events consumed before it (their examples lost) and without
 * the skip point (examples released twice).
 *
 * So every commit point commits each input partition's offset with the
 * partition's record as the offset's metadata (the way Kafka Streams keeps
 * a task's partition time): Kafka stores it compacted per (group, topic,
 * partition), in the same transaction as the examples it accounts for, and
 * hands it to whoever is assigned the partition next, with the offset
 * (ld_pipeline_committed). Nothing of our own coordinates.
 *
 * - Revoke (eager: the range assignor revokes everything at each
 *   rebalance): a commit point runs in the revoke callback, so that the
 *   records and offsets are current when the partitions leave.
 * - Lost (session timeout): another member may own the partitions already;
 *   nothing is committed, the open transaction is aborted. The next owner
 *   starts from the last commit point's record, which re-reads what the
 *   aborted one held.
 * - Assign: each partition's record is loaded from its committed offset's
 *   metadata before the partition is read; no record (a new group, or
 *   offsets an older learnd committed) leaves the one of this instance's
 *   own resume state, or a fresh start at the committed offset.
 *
 * Fencing. A zombie (an instance that lost its partitions without knowing,
 * e.g. paused past its session timeout) cannot commit a stale record after
 * the hand-over: the record travels inside send_offsets_to_transaction
 * with the consumer's group metadata (generation, member id), and the
 * group coordinator refuses a transactional offset commit from an older
 * generation, so the zombie's transaction can only abort (KIP-447). A
 * transaction that already holds offsets when the partition moves is
 * waited for by the new owner: the consumer reads committed offsets with
 * require_stable (isolation.level=read_committed), which the coordinator
 * answers only once that transaction committed or aborted. A restarted
 * instance fences its own previous incarnation by its transactional id
 * (one per instance name: <transactional_id>-join-<instance>). */

/* The broker's default offset.metadata.max.bytes is 4096: the tag and the
 * record in base64 (4 characters per 3 bytes) within 4000 leave about 2990
 * bytes for a record of 208 bytes plus 16 per pending idle advance and 8
 * per pending label (docs/LABELING.md, "Resume"). */
#define HANDOVER_MAX 4000

ld_err_t run_join_offsets(run_t *r, rd_kafka_topic_partition_list_t **out)
{
    const char *topic[2] = {r->conf->pipeline.events_topic,
                            r->conf->pipeline.labels_topic};
    rd_kafka_topic_partition_list_t *l = ld_pipeline_position(r->pipe);
    *out = NULL;
    if (!l)
        return LD_ERR_NOMEM;
    for (int32_t p = -1; (p = ld_partset_next(&r->assigned, p)) >= 0;) {
        char *text = NULL;
        size_t n = 0;
        int small = 0;
        ld_err_t err = ld_resume_handover_encode(r->joiner, p, HANDOVER_MAX,
                                                 &text, &n, &small);
        if (err) {
            ld_log(LD_LOG_ERR, MOD,
                   "msg=\"cannot encode a partition's joiner record\" "
                   "partition=%d err=\"%s\"",
                   (int)p, ld_err_str(err));
            rd_kafka_topic_partition_list_destroy(l);
            return err;
        }
        if (small)
            ld_log(LD_LOG_WARN, MOD,
                   "msg=\"joiner record over the offset metadata bound: "
                   "handed over without its pending idle advances and "
                   "pending labels\" partition=%d",
                   (int)p);
        /* On both topics' offsets: a side never read in this assignment
         * commits its committed offset again, so that no older record
         * stays on it (the events side's is the one an owner loads). */
        for (int k = 0; k < 2 && !err; k++) {
            rd_kafka_topic_partition_t *tp =
                rd_kafka_topic_partition_list_find(l, topic[k], p);
            int64_t off = -1;
            const void *meta = NULL;
            size_t mlen = 0;
            if (!tp && ld_pipeline_committed(r->pipe, (ld_record_kind_t)k, p,
                                             &off, &meta, &mlen) == LD_OK)
                (tp = rd_kafka_topic_partition_list_add(l, topic[k], p))
                    ->offset = off;
            if (!tp)
                continue;
            free(tp->metadata);
            if (!(tp->metadata = malloc(n))) {
                err = LD_ERR_NOMEM;
                break;
            }
            memcpy(tp->metadata, text, n);
            tp->metadata_size = n;
        }
        free(text);
        if (err) {
            rd_kafka_topic_partition_list_destroy(l);
            return err;
        }
    }
    *out = l;
    return LD_OK;
}

void run_join_take_over(run_t *r, int32_t p)
{
    static const char *const side[2] = {"events", "labels"};
    for (int k = 0; k < 2; k++) {
        int64_t off = -1;
        const void *meta = NULL;
        size_t mlen = 0;
        ld_err_t err = ld_pipeline_committed(r->pipe, (ld_record_kind_t)k, p,
                                             &off, &meta, &mlen);
        if (err == LD_ERR_NOENT)
            continue;
        if (!err)
            err = ld_resume_handover_load(r->joiner, p, meta, mlen);
        if (err == LD_ERR_NOENT)
            continue;
        if (err) {
            /* Reading on from the committed offset would lose the joins
             * in progress: a restart tries again. */
            ld_log(LD_LOG_CRIT, MOD,
                   "msg=\"cannot take over a partition's joins in progress "
                   "from its committed offset: exiting\" partition=%d "
                   "side=%s err=\"%s\"",
                   (int)p, side[k], ld_err_str(err));
            r->exit_code = LD_EXIT_RUNTIME;
            return;
        }
        int64_t eo = -1, lo = -1;
        if (ld_joiner_resume_offsets(r->joiner, p, &eo, &lo) == LD_OK)
            ld_log(LD_LOG_INFO, MOD,
                   "msg=\"partition taken over with its joins in progress\" "
                   "partition=%d from=%s committed=%lld events_from=%lld "
                   "labels_from=%lld",
                   (int)p, side[k], (long long)off, (long long)eo,
                   (long long)lo);
        r->join->taken_over++;
        return;
    }
}

void run_join_hand_over(run_t *r, int lost)
{
    if (r->exit_code)
        return;
    if (lost) {
        /* Someone else may own them already: commit nothing. */
        if (ld_pipeline_txn_abort(r->pipe, 30000) != LD_OK ||
            ld_pipeline_txn_begin(r->pipe) != LD_OK) {
            ld_log(LD_LOG_CRIT, MOD,
                   "msg=\"partitions lost and the open transaction cannot "
                   "be aborted: exiting\"");
            r->exit_code = LD_EXIT_RUNTIME;
        }
        return;
    }
    /* A commit point even when no record came since the last one: examples
     * released since (an idle advance) would otherwise commit later,
     * after the partition's next owner loaded a record without them. */
    r->progress_at_commit = UINT64_MAX;
    if (run_commit_point(r) != LD_OK)
        return; /* exit_code is set */
    r->join->handed_over++;
    /* The loop goes on until the group assigns again: it dead-letters and
     * emits into an open transaction (run.c, invariant 2). */
    ld_err_t err = ld_pipeline_txn_begin(r->pipe);
    if (err == LD_ERR_FENCED)
        run_say_fenced(r);
    if (err)
        r->exit_code = LD_EXIT_RUNTIME;
}
