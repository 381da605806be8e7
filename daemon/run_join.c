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
           "seconds=%.2f examples_per_s=%.0f",
           (unsigned long long)r->join->produced,
           (unsigned long long)r->join->watermarks, s,
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
