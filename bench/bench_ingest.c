/* SPDX-License-Identifier: Apache-2.0 */
/* Ingest rate (consume + decode + hash through ld_pipeline) for Avro,
 * Protobuf and JSON against a raw rd_kafka_consumer_poll of the same topic
 * in the same run, on librdkafka's in-process mock cluster; plus the decode
 * rate from memory. Prints records/s and the ratio (DESIGN §9 target: >= 70%
 * of raw for Avro and Protobuf).
 *
 * usage: bench_ingest [records_per_partition_cap]
 * Mock cluster caveat (DESIGN §10): it keeps at most 5 MiB per partition, so
 * each topic gets 16 partitions filled to ~4 MiB and the record count
 * follows from the record size. */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/decode.h"
#include "pipeline/pipeline.h"
#include "tests/data/pipeline/fixtures.h"

#define PARTS      16
#define PART_BYTES (4u << 20)
#define REPEATS    3

static const char *bootstrap;

static void die(const char *what, const char *why)
{
    fprintf(stderr, "bench_ingest: %s: %s\n", what, why);
    exit(1);
}

static rd_kafka_conf_t *conf_new(void)
{
    char err[256];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    if (rd_kafka_conf_set(c, "bootstrap.servers", bootstrap, err, sizeof(err)))
        die("conf", err);
    return c;
}

static void set(rd_kafka_conf_t *c, const char *k, const char *v)
{
    char err[256];
    if (rd_kafka_conf_set(c, k, v, err, sizeof(err)))
        die(k, err);
}

/* Fills topic (PARTS partitions) with the fixture values, round robin;
 * returns the record count. */
static long fill(rd_kafka_t *pr, const char *topic, const fx_set_t *s)
{
    size_t per_part[PARTS] = {0};
    long n = 0;
    for (size_t i = 0;; i++) {
        const fx_rec_t *r = &s->r[i % s->n];
        int32_t p = (int32_t)(i % PARTS);
        if (per_part[p] + r->vlen + r->klen + 80 > PART_BYTES)
            break;
        per_part[p] += r->vlen + r->klen + 80;
        while (rd_kafka_producev(
                   pr, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(p),
                   RD_KAFKA_V_KEY(r->key, r->klen),
                   RD_KAFKA_V_VALUE(r->val, r->vlen),
                   RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(pr, 10);
        n++;
    }
    if (rd_kafka_flush(pr, 60000))
        die("flush", topic);
    return n;
}

/* Records/s of a plain consumer reading n records of topic. */
static double raw_rate(const char *topic, long n, int run)
{
    char group[128];
    snprintf(group, sizeof(group), "raw-%s-%d", topic, run);
    rd_kafka_conf_t *c = conf_new();
    set(c, "group.id", group);
    set(c, "auto.offset.reset", "earliest");
    set(c, "enable.auto.commit", "false");
    set(c, "fetch.wait.max.ms", "100");
    set(c, "fetch.message.max.bytes", "4194304");
    set(c, "queued.min.messages", "200000");
    set(c, "queued.max.messages.kbytes", "262144");
    set(c, "check.crcs", "false");
    char err[256];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof(err));
    if (!rk)
        die("consumer", err);
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    long got = 0;
    uint64_t sink = 0;
    int64_t t0 = 0;
    while (got < n) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 1000);
        if (!m)
            continue;
        if (!m->err) {
            if (got++ == 0)
                t0 = ld_now_mono_ms();
            sink += m->len + ((const uint8_t *)m->payload)[0];
        }
        rd_kafka_message_destroy(m);
    }
    int64_t t1 = ld_now_mono_ms();
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    (void)sink;
    return (double)(n - 1) * 1000.0 / (double)(t1 > t0 ? t1 - t0 : 1);
}

/* Records/s of ld_pipeline (consume + decode + hash) over the same topic. */
static double ingest_rate(const char *fmt, const char *topic,
                          const char *labels, long n, int run, uint64_t *nnz)
{
    char group[128], err[512];
    snprintf(group, sizeof(group), "ingest-%s-%d", topic, run);
    ld_pipeline_conf_t *c = fx_conf_new(fmt);
    if (!c || fx_set(c, "events_topic", topic) ||
        fx_set(c, "labels_topic", labels) || fx_set(c, "group_id", group))
        die("config", fmt);
    char *kv[] = {"bootstrap.servers", (char *)bootstrap};
    ld_strlist_t kp = {kv, 2};
    ld_pipeline_t *p =
        ld_pipeline_new(c, &kp, NULL, NULL, 30000, err, sizeof(err));
    if (!p)
        die("ld_pipeline_new", err);
    long got = 0;
    int64_t t0 = 0;
    *nnz = 0;
    while (got < n) {
        ld_record_t r;
        ld_err_t e = ld_pipeline_poll(p, 1000, &r);
        if (e == LD_ERR_TIMEOUT)
            continue;
        if (e)
            die("poll", ld_err_str(e));
        if (got++ == 0)
            t0 = ld_now_mono_ms();
        *nnz += r.x.nnz;
    }
    int64_t t1 = ld_now_mono_ms();
    ld_pipeline_stats_t st;
    ld_pipeline_stats(p, &st);
    for (int r = 0; r < LD_REASON__COUNT; r++)
        if (st.dlq[0][r])
            die("dead letters in the bench", ld_reason_name((ld_reason_t)r));
    ld_pipeline_destroy(p);
    fx_conf_free(c);
    return (double)(n - 1) * 1000.0 / (double)(t1 > t0 ? t1 - t0 : 1);
}

/* Records/s of the decoder alone, from memory. */
static double decode_rate(const char *fmt, const fx_set_t *s)
{
    char err[512];
    ld_pipeline_conf_t *c = fx_conf_new(fmt);
    ld_decoder_t *d = ld_decoder_new(c, LD_RECORD_EVENT, err, sizeof(err));
    if (!d)
        die("decoder", err);
    long n = 0;
    int64_t t0 = ld_now_mono_ms(), t1;
    uint64_t sink = 0;
    do {
        for (int rep = 0; rep < 50; rep++)
            for (size_t i = 0; i < s->n; i++, n++) {
                ld_record_t r;
                if (ld_decoder_decode(d, s->r[i].key, s->r[i].klen, s->r[i].val,
                                      s->r[i].vlen, -1, &r))
                    die("decode", ld_decoder_error(d));
                sink += r.x.nnz;
            }
        t1 = ld_now_mono_ms();
    } while (t1 - t0 < 500);
    (void)sink;
    ld_decoder_destroy(d);
    fx_conf_free(c);
    return (double)n * 1000.0 / (double)(t1 - t0);
}

int main(void)
{
    static const char *fmts[] = {"avro", "protobuf", "json"};
    char err[256];
    ld_log_set_level(LD_LOG_ERR);
    rd_kafka_conf_t *pc = rd_kafka_conf_new();
    if (rd_kafka_conf_set(pc, "test.mock.num.brokers", "1", err, sizeof(err)) ||
        rd_kafka_conf_set(pc, "linger.ms", "20", err, sizeof(err)) ||
        rd_kafka_conf_set(pc, "batch.size", "1000000", err, sizeof(err)))
        die("producer conf", err);
    rd_kafka_t *pr = rd_kafka_new(RD_KAFKA_PRODUCER, pc, err, sizeof(err));
    if (!pr)
        die("producer", err);
    rd_kafka_mock_cluster_t *mc = rd_kafka_handle_mock_cluster(pr);
    bootstrap = rd_kafka_mock_cluster_bootstraps(mc);

    printf("bench_ingest: librdkafka %s mock cluster (1 broker), %d "
           "partitions per topic, events of tests/data/pipeline, 20 dense + "
           "hashed + 2 crosses; best of %d\n",
           rd_kafka_version_str(), PARTS, REPEATS);
    printf("%-9s %9s %12s %12s %7s %14s %9s\n", "format", "records",
           "raw rec/s", "ingest rec/s", "ratio", "decode rec/s", "nnz/rec");
    for (int f = 0; f < 3; f++) {
        char path[512], topic[64], labels[64];
        fx_set_t s;
        snprintf(path, sizeof(path), FX_DIR "/events-%s.kcat", fmts[f]);
        if (fx_load_kcat(path, &s))
            die("fixture", path);
        snprintf(topic, sizeof(topic), "bench-%s", fmts[f]);
        snprintf(labels, sizeof(labels), "bench-%s-labels", fmts[f]);
        rd_kafka_mock_topic_create(mc, topic, PARTS, 1);
        rd_kafka_mock_topic_create(mc, labels, PARTS, 1);
        long n = fill(pr, topic, &s);
        double raw = 0, ing = 0;
        uint64_t nnz = 0;
        for (int run = 0; run < REPEATS; run++) {
            double r1 = raw_rate(topic, n, run);
            double r2 = ingest_rate(fmts[f], topic, labels, n, run, &nnz);
            raw = r1 > raw ? r1 : raw;
            ing = r2 > ing ? r2 : ing;
        }
        double dec = decode_rate(fmts[f], &s);
        printf("%-9s %9ld %12.0f %12.0f %6.0f%% %14.0f %9.1f\n", fmts[f], n,
               raw, ing, 100.0 * ing / raw, dec, (double)nnz / (double)n);
        fflush(stdout);
        fx_free(&s);
    }
    rd_kafka_destroy(pr);
    return 0;
}
