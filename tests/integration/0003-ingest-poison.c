/* SPDX-License-Identifier: Apache-2.0 */
/* The poison corpus against the real broker: truncated Avro, lengths past
 * the end, wrong magic byte, unknown schema id, bad UTF-8, NaN, an empty
 * value, a missing key, trailing bytes and a 10 MB record, between good
 * records. Every bad record must land in the dead-letter topic with the
 * right learnd.error and source headers, every good one must be handed out,
 * and nothing else may appear. A first pass is aborted: its dead letters
 * must stay invisible to a read_committed reader and the rewound consumer
 * must deliver everything again. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/pipeline.h"
#include "testutil.h"
#include "tests/data/pipeline/fixtures.h"

#define TIMEOUT_MS 60000
#define BIG        (10u << 20)
#define MAXREC     32

static char reasons[MAXREC][32];

static void create_big_topic(rd_kafka_t *rk, const char *name)
{
    char err[256];
    rd_kafka_NewTopic_t *t =
        rd_kafka_NewTopic_new(name, 1, 1, err, sizeof(err));
    LD_TEST_ASSERT(t, "NewTopic: %s", err);
    LD_TEST_ASSERT(
        !rd_kafka_NewTopic_set_config(t, "max.message.bytes", "16777216"),
        "set_config");
    /* the test broker's segments are 1 MiB; a 10 MB batch needs more */
    LD_TEST_ASSERT(
        !rd_kafka_NewTopic_set_config(t, "segment.bytes", "33554432"),
        "set_config");
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &t, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, TIMEOUT_MS);
    LD_TEST_ASSERT(ev, "CreateTopics timed out");
    const rd_kafka_CreateTopics_result_t *res =
        rd_kafka_event_CreateTopics_result(ev);
    size_t n;
    const rd_kafka_topic_result_t **tr =
        rd_kafka_CreateTopics_result_topics(res, &n);
    LD_TEST_ASSERT(n == 1 && !rd_kafka_topic_result_error(tr[0]),
                   "create %s: %s", name,
                   n ? rd_kafka_topic_result_error_string(tr[0]) : "?");
    rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_NewTopic_destroy(t);
    /* wait for a leader */
    int64_t dl = ld_test_deadline(TIMEOUT_MS);
    for (;;) {
        const struct rd_kafka_metadata *md;
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, name, NULL);
        int ok = !rd_kafka_metadata(rk, 0, rkt, &md, 5000) &&
                 md->topic_cnt == 1 && !md->topics[0].err &&
                 md->topics[0].partition_cnt == 1 &&
                 md->topics[0].partitions[0].leader >= 0;
        if (!rd_kafka_metadata(rk, 0, rkt, &md, 5000))
            rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(rkt);
        if (ok)
            break;
        LD_TEST_ASSERT(ld_test_remaining(dl) > 0, "no leader for %s", name);
    }
}

static int delivery_failures;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (m->err) {
        delivery_failures++;
        ld_test_say("delivery of %zu bytes failed: %s", m->len,
                    rd_kafka_err2str(m->err));
    }
}

/* Produces the corpus plus the 10 MB record, one partition, in order. */
static int produce_corpus(const char *topic)
{
    fx_set_t s;
    LD_TEST_ASSERT(fx_load_poison(FX_DIR "/poison-avro.bin", &s) == 0,
                   "poison-avro.bin");
    FILE *f = fopen(FX_DIR "/poison-avro.txt", "r");
    char line[256];
    int n = 0;
    while (f && fgets(line, sizeof(line), f))
        if (line[0] != '#')
            LD_TEST_ASSERT(sscanf(line, "%31s", reasons[n++]) == 1, "txt");
    fclose(f);
    LD_TEST_EQ_I64("corpus size", (int64_t)s.n, n);

    rd_kafka_conf_t *conf = ld_test_conf_new();
    ld_test_conf_set(conf, "message.max.bytes", "16777216");
    ld_test_conf_set(conf, "enable.idempotence", "true");
    ld_test_conf_set(conf, "linger.ms", "0");
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_t *pr = ld_test_new(RD_KAFKA_PRODUCER, conf);
    for (size_t i = 0; i < s.n; i++) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            pr, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(0),
            RD_KAFKA_V_KEY((s.r[i].klen ? s.r[i].key : NULL), s.r[i].klen),
            RD_KAFKA_V_VALUE((s.r[i].vlen ? s.r[i].val : NULL), s.r[i].vlen),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        LD_TEST_ASSERT(!e, "produce: %s", rd_kafka_err2str(e));
    }
    char *big = calloc(1, BIG);
    big[0] = 0; /* a Confluent header, then zeros: only the size is wrong */
    big[4] = 1;
    rd_kafka_resp_err_t e = rd_kafka_producev(
        pr, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(0),
        RD_KAFKA_V_KEY("p-big", 5), RD_KAFKA_V_VALUE(big, BIG),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE), RD_KAFKA_V_END);
    LD_TEST_ASSERT(!e, "produce big: %s", rd_kafka_err2str(e));
    snprintf(reasons[n++], sizeof(reasons[0]), "oversize");
    LD_TEST_ASSERT(rd_kafka_flush(pr, TIMEOUT_MS) == 0, "flush");
    LD_TEST_EQ_I64("delivery failures", 0, delivery_failures);
    rd_kafka_destroy(pr);
    fx_free(&s);
    return n;
}

/* Polls until ok + dead letters == total; returns the ok count and marks
 * which offsets came out as good records. */
static int drain(ld_pipeline_t *p, int total, int *good)
{
    int ok = 0;
    int64_t dl = ld_test_deadline(TIMEOUT_MS);
    for (;;) {
        ld_pipeline_stats_t st;
        ld_pipeline_stats(p, &st);
        uint64_t dead = 0;
        for (int r = 0; r < LD_REASON__COUNT; r++)
            dead += st.dlq[0][r] + st.dlq[1][r];
        if ((int)(ok + (int)dead) == total)
            return ok;
        LD_TEST_ASSERT(ld_test_remaining(dl) > 0, "drain: %d ok, %d dead of %d",
                       ok, (int)dead, total);
        ld_record_t r;
        ld_err_t e = ld_pipeline_poll(p, 200, &r);
        if (e == LD_ERR_TIMEOUT)
            continue;
        LD_TEST_ASSERT(e == LD_OK, "poll: %s", ld_err_str(e));
        LD_TEST_ASSERT(r.offset >= 0 && r.offset < total, "offset");
        good[r.offset]++;
        ok++;
    }
}

static const char *header(rd_kafka_headers_t *h, const char *name, char *buf,
                          size_t size)
{
    const void *v;
    size_t n;
    if (!h || rd_kafka_header_get_last(h, name, &v, &n))
        return NULL;
    snprintf(buf, size, "%.*s", (int)n, (const char *)v);
    return buf;
}

int main(void)
{
    char ev[128], lb[128], dlq[128], group[128], txn[128], err[512];
    ld_log_set_level(LD_LOG_WARN);
    rd_kafka_t *admin = ld_test_new(RD_KAFKA_PRODUCER, ld_test_conf_new());
    ld_test_name(ev, sizeof(ev), "pev");
    ld_test_name(lb, sizeof(lb), "plb");
    ld_test_name(dlq, sizeof(dlq), "pdlq");
    ld_test_name(group, sizeof(group), "pgrp");
    ld_test_name(txn, sizeof(txn), "ptxn");
    create_big_topic(admin, ev);
    ld_test_create_topic(admin, lb, 1, TIMEOUT_MS);
    ld_test_create_topic(admin, dlq, 1, TIMEOUT_MS);
    int total = produce_corpus(ev);
    ld_test_say("produced %d records", total);

    ld_pipeline_conf_t *c = fx_conf_new("avro");
    LD_TEST_ASSERT(
        c && !fx_set(c, "events_topic", ev) && !fx_set(c, "labels_topic", lb) &&
            !fx_set(c, "dlq_topic", dlq) && !fx_set(c, "group_id", group),
        "config");
    c->model = "poison-model"; /* as the daemon sets it: trainer.name */
    char *kv[] = {"bootstrap.servers", (char *)ld_test_bootstrap()};
    ld_strlist_t kp = {kv, 2};
    ld_pipeline_t *p =
        ld_pipeline_new(c, &kp, txn, NULL, TIMEOUT_MS, err, sizeof(err));
    LD_TEST_ASSERT(p, "ld_pipeline_new: %s", err);

    /* pass 1, aborted */
    int good[MAXREC] = {0};
    int ok1 = drain(p, total, good);
    ld_err_t e = ld_pipeline_txn_abort(p, TIMEOUT_MS);
    LD_TEST_ASSERT(e == LD_OK, "abort: %s", ld_err_str(e));
    ld_pipeline_stats_t st1;
    ld_pipeline_stats(p, &st1);
    ld_test_say("pass 1: %d good, aborted", ok1);

    /* pass 2 from the committed (here: earliest) offsets, committed */
    memset(good, 0, sizeof(good));
    int64_t base = 0;
    for (int r = 0; r < LD_REASON__COUNT; r++)
        base += (int64_t)st1.dlq[0][r];
    int ok2 = 0;
    {
        /* drain() counts cumulative stats: offset total by pass-1 deaths */
        int64_t dl = ld_test_deadline(TIMEOUT_MS);
        for (;;) {
            ld_pipeline_stats_t st;
            ld_pipeline_stats(p, &st);
            int64_t dead = -base;
            for (int r = 0; r < LD_REASON__COUNT; r++)
                dead += (int64_t)st.dlq[0][r];
            if (ok2 + dead == total)
                break;
            LD_TEST_ASSERT(ld_test_remaining(dl) > 0, "pass 2 stalled");
            ld_record_t r;
            e = ld_pipeline_poll(p, 200, &r);
            if (e == LD_ERR_TIMEOUT)
                continue;
            LD_TEST_ASSERT(e == LD_OK, "poll: %s", ld_err_str(e));
            good[r.offset]++;
            ok2++;
        }
    }
    e = ld_pipeline_txn_commit(p, NULL, TIMEOUT_MS);
    LD_TEST_ASSERT(e == LD_OK, "commit: %s", ld_err_str(e));
    LD_TEST_EQ_I64("good records, both passes", ok1, ok2);
    for (int i = 0; i < total; i++)
        LD_TEST_EQ_I64(reasons[i], strcmp(reasons[i], "ok") == 0 ? 1 : 0,
                       good[i]);
    ld_pipeline_stats_t st;
    ld_pipeline_stats(p, &st);
    for (int r = 1; r < LD_REASON__COUNT; r++) {
        int want = 0;
        for (int i = 0; i < total; i++)
            want += strcmp(reasons[i], ld_reason_name((ld_reason_t)r)) == 0;
        LD_TEST_EQ_I64(ld_reason_name((ld_reason_t)r), 2 * want, st.dlq[0][r]);
    }
    ld_pipeline_destroy(p);

    /* The dead-letter topic as a read_committed reader sees it: exactly the
     * bad records of pass 2, in order, with their reasons and sources. */
    rd_kafka_conf_t *cc = ld_test_conf_new();
    ld_test_conf_set(cc, "group.id", group); /* unused: assign() below */
    ld_test_conf_set(cc, "isolation.level", "read_committed");
    ld_test_conf_set(cc, "enable.auto.commit", "false");
    rd_kafka_t *rc = ld_test_new(RD_KAFKA_CONSUMER, cc);
    rd_kafka_topic_partition_list_t *a = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(a, dlq, 0)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(rc, a);
    rd_kafka_topic_partition_list_destroy(a);
    int want = 0, got = 0, next_bad = 0;
    for (int i = 0; i < total; i++)
        want += strcmp(reasons[i], "ok") != 0;
    int64_t dl = ld_test_deadline(TIMEOUT_MS), quiet = -1;
    for (;;) {
        if (got == want && quiet < 0)
            quiet = ld_test_deadline(1500);
        if (quiet >= 0 && ld_test_remaining(quiet) == 0)
            break;
        LD_TEST_ASSERT(ld_test_remaining(dl) > 0, "dlq: %d of %d", got, want);
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rc, 200);
        if (!m)
            continue;
        if (m->err) {
            rd_kafka_message_destroy(m);
            continue;
        }
        LD_TEST_ASSERT(got < want, "extra dead letter at offset %" PRId64,
                       m->offset);
        while (strcmp(reasons[next_bad], "ok") == 0)
            next_bad++;
        rd_kafka_headers_t *h = NULL;
        rd_kafka_message_headers(m, &h);
        char b1[64], b2[256], b3[32], b4[32], b5[32], b6[128], b7[64];
        const char *why = header(h, "learnd.error", b1, sizeof(b1));
        const char *st_ = header(h, "learnd.src.topic", b2, sizeof(b2));
        const char *sp = header(h, "learnd.src.partition", b3, sizeof(b3));
        const char *so = header(h, "learnd.src.offset", b4, sizeof(b4));
        LD_TEST_ASSERT(why && st_ && sp && so, "dead letter lacks headers");
        LD_TEST_ASSERT(strcmp(why, reasons[next_bad]) == 0,
                       "offset %d: learnd.error=%s, expected %s", next_bad, why,
                       reasons[next_bad]);
        LD_TEST_ASSERT(strcmp(st_, ev) == 0, "src.topic %s", st_);
        const char *hg = header(h, "learnd.group", b6, sizeof(b6));
        const char *hm = header(h, "learnd.model", b7, sizeof(b7));
        LD_TEST_ASSERT(hg && strcmp(hg, group) == 0, "learnd.group %s",
                       hg ? hg : "(none)");
        LD_TEST_ASSERT(hm && strcmp(hm, "poison-model") == 0, "learnd.model %s",
                       hm ? hm : "(none)");
        LD_TEST_ASSERT(strcmp(sp, "0") == 0, "src.partition %s", sp);
        LD_TEST_EQ_I64("src.offset", next_bad, atoll(so));
        if (strcmp(why, "oversize") == 0) {
            LD_TEST_ASSERT(header(h, "learnd.src.size", b5, sizeof(b5)) &&
                               atoll(b5) == BIG,
                           "learnd.src.size");
            LD_TEST_ASSERT(m->len == 900 * 1024, "cut to dlq_max_bytes");
        }
        next_bad++;
        got++;
        rd_kafka_message_destroy(m);
    }
    LD_TEST_EQ_I64("dead letters", want, got);
    rd_kafka_consumer_close(rc);
    rd_kafka_destroy(rc);
    rd_kafka_destroy(admin);
    fx_conf_free(c);
    ld_test_say("PASS: %d good, %d dead letters with the right reasons", ok2,
                got);
    return 0;
}
