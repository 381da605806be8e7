/* SPDX-License-Identifier: Apache-2.0 */
/* Time-aligned reading (issue #7): a backlog of the demo stream on 4 + 4
 * partitions, produced before the pipeline starts, is handed out by
 * ld_pipeline_poll in time order across partitions, not partition after
 * partition as a fetch returns it: no record comes more than LEAD_MS of
 * event time after a later one (the partitions start fetching at different
 * moments: the merge waits for the late ones). Every record arrives once,
 * each partition in offset order. Then a second member joins a group mid-
 * read: each assignment reads its partitions without gap or repeat, and
 * the two see every record. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/demo.h"
#include "pipeline/pipeline.h"
#include "testutil.h"
#include "tests/data/pipeline/fixtures.h"

#define TIMEOUT_MS  60000
#define PARTS       4
#define EVENTS      40000
#define STEP_MS     5
#define GEN_LATE_MS 1000
/* The stream spans EVENTS * STEP_MS = 200 s of event time: read partition
 * after partition (fetch order), records come up to ~200 s late. */
#define LEAD_MS 5000
#define MAXOFF  20000 /* records per partition of one topic, at most */

/* One member of the group of the rebalance phase: the next offset it
 * expects per (topic, partition), reset to 0 at each assignment (nothing is
 * committed, so every assignment starts at the earliest record). */
typedef struct member {
    ld_pipeline_t *p;
    int64_t next[2][PARTS];
    int assignments;
} member_t;

static const char *labels_topic;

static void on_assigned(void *opaque, rd_kafka_topic_partition_list_t *parts)
{
    member_t *m = opaque;
    for (int i = 0; i < parts->cnt; i++)
        m->next[strcmp(parts->elems[i].topic, labels_topic) == 0]
               [parts->elems[i].partition] = 0;
    m->assignments++;
}

/* Polls m once; checks the record continues its partition. Returns 1 and
 * marks it seen when a record came. */
static int member_poll(member_t *m, uint8_t *seen[2])
{
    ld_record_t r;
    ld_err_t e = ld_pipeline_poll(m->p, 20, &r);
    if (e == LD_ERR_TIMEOUT)
        return 0;
    LD_TEST_ASSERT(e == LD_OK, "poll: %s", ld_err_str(e));
    int k = strcmp(r.topic, labels_topic) == 0;
    LD_TEST_ASSERT(r.partition >= 0 && r.partition < PARTS && r.offset < MAXOFF,
                   "%s[%d]@%" PRId64, r.topic, (int)r.partition, r.offset);
    LD_TEST_EQ_I64("offset after its partition's last, this assignment",
                   m->next[k][r.partition], r.offset);
    m->next[k][r.partition]++;
    seen[k][r.partition * (int64_t)MAXOFF + r.offset] = 1;
    return 1;
}

int main(void)
{
    char ev[128], lb[128], dlq[128], group[128], err[512];
    ld_log_set_level(LD_LOG_WARN);
    rd_kafka_t *admin = ld_test_new(RD_KAFKA_PRODUCER, ld_test_conf_new());
    ld_test_name(ev, sizeof(ev), "tev");
    ld_test_name(lb, sizeof(lb), "tlb");
    ld_test_name(dlq, sizeof(dlq), "tdlq");
    ld_test_name(group, sizeof(group), "tgrp");
    ld_test_create_topic(admin, ev, PARTS, TIMEOUT_MS);
    ld_test_create_topic(admin, lb, PARTS, TIMEOUT_MS);
    ld_test_create_topic(admin, dlq, 1, TIMEOUT_MS);
    /* Each record's timestamp is its event or label time, a few minutes
     * old (older ones would meet the broker's retention), as a producer
     * that stamps event time writes them. The generator's own order is at
     * most GEN_LATE_MS out of time order (a label just before its event). */
    ld_demo_gen_conf_t gc = {.seed = 7,
                             .n_events = EVENTS,
                             .drift_at = EVENTS / 2,
                             .start_time_ms = ld_now_wall_ms() - 600000,
                             .step_ms = STEP_MS,
                             .label_delay_ms = 2000,
                             .early_label_share = 0.05};
    ld_demo_gen_t *g = ld_demo_gen_new(&gc);
    LD_TEST_ASSERT(g, "generator");
    ld_demo_record_t dr;
    int64_t total = 0, newest = INT64_MIN, late = 0;
    while (ld_demo_gen_next(g, &dr) == 1) {
        /* the key's partition, the same in both topics */
        ld_test_produce_at(admin, dr.is_label ? lb : ev, RD_KAFKA_PARTITION_UA,
                           dr.key, dr.value, dr.len, dr.time_ms);
        if (dr.time_ms > newest)
            newest = dr.time_ms;
        if (newest - dr.time_ms > late)
            late = newest - dr.time_ms;
        total++;
    }
    ld_demo_gen_destroy(g);
    LD_TEST_ASSERT(rd_kafka_flush(admin, TIMEOUT_MS) == 0, "flush");
    LD_TEST_ASSERT(late <= GEN_LATE_MS, "the generator was %" PRId64 " late",
                   late);
    ld_test_say("produced %" PRId64 " records", total);

    ld_pipeline_conf_t *c = fx_conf_new("avro");
    LD_TEST_ASSERT(
        c && !fx_set(c, "events_topic", ev) && !fx_set(c, "labels_topic", lb) &&
            !fx_set(c, "dlq_topic", dlq) && !fx_set(c, "group_id", group) &&
            !fx_set(c, "avro_wire", "plain"), /* as the demo writes it */
        "config");
    char *kv[] = {"bootstrap.servers", (char *)ld_test_bootstrap()};
    ld_strlist_t kp = {kv, 2};
    ld_pipeline_t *p =
        ld_pipeline_new(c, &kp, NULL, NULL, TIMEOUT_MS, err, sizeof(err));
    LD_TEST_ASSERT(p, "ld_pipeline_new: %s", err);

    int64_t next[2][PARTS] = {{0}};
    int64_t got = 0, worst = 0;
    newest = INT64_MIN;
    int64_t dl = ld_test_deadline(TIMEOUT_MS);
    while (got < total) {
        LD_TEST_ASSERT(ld_test_remaining(dl) > 0,
                       "read %" PRId64 " of %" PRId64 " records", got, total);
        ld_record_t r;
        ld_err_t e = ld_pipeline_poll(p, 200, &r);
        if (e == LD_ERR_TIMEOUT)
            continue;
        LD_TEST_ASSERT(e == LD_OK, "poll: %s", ld_err_str(e));
        int k = strcmp(r.topic, lb) == 0;
        LD_TEST_ASSERT(r.partition >= 0 && r.partition < PARTS, "partition %d",
                       (int)r.partition);
        LD_TEST_EQ_I64(k ? "label offset" : "event offset",
                       next[k][r.partition], r.offset);
        next[k][r.partition]++;
        if (r.time_ms > newest)
            newest = r.time_ms;
        if (newest - r.time_ms > worst)
            worst = newest - r.time_ms;
        got++;
    }
    ld_test_say("read %" PRId64 " records; the latest came %" PRId64
                " ms of event time after a later one",
                got, worst);
    LD_TEST_ASSERT(worst <= LEAD_MS,
                   "a record came %" PRId64 " ms after a later one (at most "
                   "%d)",
                   worst, LEAD_MS);
    ld_record_t r;
    LD_TEST_ASSERT(ld_pipeline_poll(p, 500, &r) == LD_ERR_TIMEOUT,
                   "a record past the end: %s[%d]@%" PRId64, r.topic,
                   (int)r.partition, r.offset);
    ld_pipeline_destroy(p);

    /* A rebalance while partition heads are held: member a reads alone,
     * then b joins the group and takes half of the partitions. Each
     * assignment must read its partitions from their start without a gap
     * or a repeat (a head taken but not handed out at the revoke is read
     * again), and together they must see every record. */
    char group2[128];
    ld_test_name(group2, sizeof(group2), "tgrp2");
    LD_TEST_ASSERT(!fx_set(c, "group_id", group2), "config");
    labels_topic = lb;
    member_t a = {0}, b = {0};
    ld_pipeline_cbs_t ca = {.opaque = &a, .assigned = on_assigned};
    ld_pipeline_cbs_t cb = {.opaque = &b, .assigned = on_assigned};
    uint8_t *seen[2];
    for (int k = 0; k < 2; k++) {
        seen[k] = calloc((size_t)PARTS * MAXOFF, 1);
        LD_TEST_ASSERT(seen[k], "memory");
    }
    a.p = ld_pipeline_new(c, &kp, NULL, &ca, TIMEOUT_MS, err, sizeof(err));
    LD_TEST_ASSERT(a.p, "ld_pipeline_new: %s", err);
    int64_t read_a = 0;
    dl = ld_test_deadline(TIMEOUT_MS);
    while (read_a < total / 4) {
        LD_TEST_ASSERT(ld_test_remaining(dl) > 0, "a alone read %" PRId64,
                       read_a);
        read_a += member_poll(&a, seen);
    }
    b.p = ld_pipeline_new(c, &kp, NULL, &cb, TIMEOUT_MS, err, sizeof(err));
    LD_TEST_ASSERT(b.p, "ld_pipeline_new: %s", err);
    int64_t missing = total;
    dl = ld_test_deadline(TIMEOUT_MS);
    while (missing > 0 || b.assignments == 0) {
        LD_TEST_ASSERT(ld_test_remaining(dl) > 0,
                       "%" PRId64 " records never read (a assigned %d times, "
                       "b %d)",
                       missing, a.assignments, b.assignments);
        int got_a = member_poll(&a, seen), got_b = member_poll(&b, seen);
        if (!got_a && !got_b) { /* both idle: count what is missing */
            missing = 0;
            for (int k = 0; k < 2; k++)
                for (int32_t q = 0; q < PARTS; q++) {
                    int64_t lo, hi;
                    LD_TEST_ASSERT(
                        !rd_kafka_query_watermark_offsets(admin, k ? lb : ev, q,
                                                          &lo, &hi, TIMEOUT_MS),
                        "watermarks");
                    for (int64_t o = 0; o < hi; o++)
                        missing += !seen[k][q * (int64_t)MAXOFF + o];
                }
        }
    }
    ld_test_say("rebalance: a assigned %d times, b %d; every record read",
                a.assignments, b.assignments);
    LD_TEST_ASSERT(a.assignments >= 2 && b.assignments >= 1,
                   "no rebalance happened (a %d, b %d)", a.assignments,
                   b.assignments);
    ld_pipeline_destroy(a.p);
    ld_pipeline_destroy(b.p);
    for (int k = 0; k < 2; k++)
        free(seen[k]);
    fx_conf_free(c);
    rd_kafka_destroy(admin);
    return 0;
}
