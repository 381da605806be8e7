/* SPDX-License-Identifier: Apache-2.0 */
/* Ingest against the real broker: events and labels in Avro (Confluent
 * framing), Protobuf and JSON, produced by kcat (a client learnd did not
 * write) from the fixtures of tests/data/pipeline, are consumed through
 * ld_pipeline, counted exactly, checked against the independently computed
 * expectations and committed in a transaction; and a pipeline over topics
 * that are not co-partitioned refuses to start. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/pipeline.h"
#include "testutil.h"
#include "tests/data/pipeline/fixtures.h"

#define N_EVENTS   200
#define N_LABELS   120
#define PARTITIONS 3
#define TIMEOUT_MS 60000

typedef struct exp_ev {
    long long time;
    unsigned nslots;
    int seen;
} exp_ev_t;

static void load_expected(exp_ev_t *ev)
{
    FILE *f = fopen(FX_DIR "/events-expected.txt", "r");
    LD_TEST_ASSERT(f, "open events-expected.txt");
    static char line[16384];
    int n = 0;
    while (fgets(line, sizeof(line), f)) {
        int id;
        char slots[8192];
        if (line[0] == '#')
            continue;
        LD_TEST_ASSERT(
            sscanf(line, "ev-%d %lld %*s %8191s", &id, &ev[n].time, slots) == 3,
            "bad line %s", line);
        LD_TEST_EQ_I64("fixture order", n, id);
        ev[n].nslots = 0;
        if (slots[0] != '-')
            for (char *p = slots; p; p = strchr(p + 1, ','))
                ev[n].nslots++;
        n++;
    }
    fclose(f);
    LD_TEST_EQ_I64("expected events", N_EVENTS, n);
}

static void kcat_produce(const char *topic, const char *file)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "kcat -P -q -b '%s' -t '%s' -K '\\xf1\\xf2\\xf3\\xf4' "
             "-D '\\xf5\\xf6\\xf7\\xf8' -l '%s'",
             ld_test_bootstrap(), topic, file);
    int rc = system(cmd);
    LD_TEST_ASSERT(rc == 0, "kcat exited %d: %s", rc, cmd);
}

static ld_strlist_t props(void)
{
    static char *kv[] = {"bootstrap.servers", NULL};
    kv[1] = (char *)ld_test_bootstrap();
    ld_strlist_t l = {kv, 2};
    return l;
}

static void copartition_refused(rd_kafka_t *admin)
{
    char a[128], b[128], err[512] = "";
    ld_test_name(a, sizeof(a), "copart-ev");
    ld_test_name(b, sizeof(b), "copart-lb");
    ld_test_create_topic(admin, a, 2, TIMEOUT_MS);
    ld_test_create_topic(admin, b, 3, TIMEOUT_MS);
    ld_pipeline_conf_t *c = fx_conf_new("json");
    LD_TEST_ASSERT(c && !fx_set(c, "events_topic", a) &&
                       !fx_set(c, "labels_topic", b),
                   "config");
    ld_strlist_t kp = props();
    ld_pipeline_t *p =
        ld_pipeline_new(c, &kp, NULL, NULL, TIMEOUT_MS, err, sizeof(err));
    LD_TEST_ASSERT(p == NULL, "pipeline started on 2 vs 3 partitions");
    LD_TEST_ASSERT(strstr(err, "not co-partitioned") &&
                       strstr(err, "has 2 partitions") && strstr(err, "has 3"),
                   "unclear error: %s", err);
    ld_test_say("refused: %s", err);
    fx_conf_free(c);
}

static void ingest(rd_kafka_t *admin, const char *fmt, exp_ev_t *exp)
{
    char ev[128], lb[128], dlq[128], group[128], txn[128], path[512];
    char err[512] = "";
    ld_test_name(ev, sizeof(ev), "ev");
    ld_test_name(lb, sizeof(lb), "lb");
    ld_test_name(dlq, sizeof(dlq), "dlq");
    ld_test_name(group, sizeof(group), "grp");
    ld_test_name(txn, sizeof(txn), "txn");
    ld_test_create_topic(admin, ev, PARTITIONS, TIMEOUT_MS);
    ld_test_create_topic(admin, lb, PARTITIONS, TIMEOUT_MS);
    ld_test_create_topic(admin, dlq, 1, TIMEOUT_MS);
    snprintf(path, sizeof(path), FX_DIR "/events-%s.kcat", fmt);
    kcat_produce(ev, path);
    snprintf(path, sizeof(path), FX_DIR "/labels-%s.kcat", fmt);
    kcat_produce(lb, path);

    ld_pipeline_conf_t *c = fx_conf_new(fmt);
    LD_TEST_ASSERT(
        c && !fx_set(c, "events_topic", ev) && !fx_set(c, "labels_topic", lb) &&
            !fx_set(c, "dlq_topic", dlq) && !fx_set(c, "group_id", group),
        "config");
    ld_strlist_t kp = props();
    ld_pipeline_t *p =
        ld_pipeline_new(c, &kp, txn, NULL, TIMEOUT_MS, err, sizeof(err));
    LD_TEST_ASSERT(p, "%s: ld_pipeline_new: %s", fmt, err);

    for (int i = 0; i < N_EVENTS; i++)
        exp[i].seen = 0;
    int nev = 0, nlb = 0, labels_pos = 0;
    int64_t deadline = ld_test_deadline(TIMEOUT_MS);
    /* until everything arrived, then 1 s more to catch any extra record */
    int64_t quiet = -1;
    for (;;) {
        ld_record_t r;
        if (nev == N_EVENTS && nlb == N_LABELS && quiet < 0)
            quiet = ld_test_deadline(1000);
        if (quiet >= 0 && ld_test_remaining(quiet) == 0)
            break;
        LD_TEST_ASSERT(ld_test_remaining(deadline) > 0,
                       "%s: timed out with %d events, %d labels", fmt, nev,
                       nlb);
        ld_err_t e = ld_pipeline_poll(p, 200, &r);
        if (e == LD_ERR_TIMEOUT)
            continue;
        LD_TEST_ASSERT(e == LD_OK, "%s: poll: %s", fmt, ld_err_str(e));
        LD_TEST_ASSERT(r.partition >= 0 && r.partition < PARTITIONS &&
                           r.offset >= 0,
                       "source position");
        int id = -1;
        LD_TEST_ASSERT(sscanf(r.key, "ev-%d", &id) == 1 && id >= 0 &&
                           id < N_EVENTS,
                       "%s: key %s", fmt, r.key);
        if (r.kind == LD_RECORD_EVENT) {
            LD_TEST_ASSERT(strcmp(r.topic, ev) == 0, "topic %s", r.topic);
            LD_TEST_ASSERT(!exp[id].seen, "%s: event %d twice", fmt, id);
            exp[id].seen = 1;
            LD_TEST_EQ_I64("event time", exp[id].time, r.time_ms);
            LD_TEST_EQ_I64("hashed features", exp[id].nslots, r.x.nnz);
            LD_TEST_EQ_I64("dense", 20, r.x.ndense);
            nev++;
        } else {
            LD_TEST_ASSERT(strcmp(r.topic, lb) == 0, "topic %s", r.topic);
            labels_pos += r.label == 1.0;
            nlb++;
        }
    }
    LD_TEST_EQ_I64("events", N_EVENTS, nev);
    LD_TEST_EQ_I64("labels", N_LABELS, nlb);

    ld_pipeline_stats_t st;
    ld_pipeline_stats(p, &st);
    for (int k = 0; k < 2; k++)
        for (int r = 0; r < LD_REASON__COUNT; r++)
            LD_TEST_EQ_I64(ld_reason_name((ld_reason_t)r), 0, st.dlq[k][r]);
    LD_TEST_EQ_I64("stats events", N_EVENTS, st.records[0]);
    LD_TEST_EQ_I64("stats labels", N_LABELS, st.records[1]);

    /* Commit point: the group's committed offsets must cover every record. */
    rd_kafka_topic_partition_list_t *pos = ld_pipeline_position(p);
    int64_t sum[2] = {0, 0};
    for (int i = 0; i < pos->cnt; i++)
        sum[strcmp(pos->elems[i].topic, ev) == 0 ? 0 : 1] +=
            pos->elems[i].offset;
    LD_TEST_EQ_I64("event offsets", N_EVENTS, sum[0]);
    LD_TEST_EQ_I64("label offsets", N_LABELS, sum[1]);
    ld_err_t e = ld_pipeline_txn_commit(p, pos, TIMEOUT_MS);
    LD_TEST_ASSERT(e == LD_OK, "commit: %s", ld_err_str(e));
    rd_kafka_topic_partition_list_destroy(pos);
    LD_TEST_ASSERT(ld_pipeline_close(p, TIMEOUT_MS) == LD_OK, "close");
    ld_pipeline_destroy(p);

    /* a fresh member of the group gets nothing more: all committed */
    p = ld_pipeline_new(c, &kp, NULL, NULL, TIMEOUT_MS, err, sizeof(err));
    LD_TEST_ASSERT(p, "second pipeline: %s", err);
    int64_t until = ld_test_deadline(6000);
    while (ld_test_remaining(until) > 0) {
        ld_record_t r;
        ld_err_t pe = ld_pipeline_poll(p, 200, &r);
        LD_TEST_ASSERT(pe == LD_ERR_TIMEOUT,
                       "%s: record after commit: %s partition %d offset %lld",
                       fmt, pe ? ld_err_str(pe) : r.key, (int)r.partition,
                       (long long)r.offset);
    }
    ld_pipeline_destroy(p);
    fx_conf_free(c);
    ld_test_say("%s: %d events, %d labels (%d positive), 0 dead letters", fmt,
                nev, nlb, labels_pos);
}

int main(void)
{
    static exp_ev_t exp[N_EVENTS];
    ld_log_set_level(LD_LOG_WARN);
    load_expected(exp);
    rd_kafka_t *admin = ld_test_new(RD_KAFKA_PRODUCER, ld_test_conf_new());
    copartition_refused(admin);
    ingest(admin, "avro", exp);
    ingest(admin, "protobuf", exp);
    ingest(admin, "json", exp);
    rd_kafka_destroy(admin);
    ld_test_say("PASS");
    return 0;
}
