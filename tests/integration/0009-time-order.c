/* SPDX-License-Identifier: Apache-2.0 */
/* Time-aligned reading (issue #7): a backlog of the demo stream on 4 + 4
 * partitions, produced before the pipeline starts, is handed out by
 * ld_pipeline_poll in time order across partitions, not partition after
 * partition as a fetch returns it: no record comes more than LEAD_MS of
 * event time after a later one (the partitions start fetching at different
 * moments: the merge waits for the late ones). Every record arrives once,
 * each partition in offset order. */
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
    fx_conf_free(c);
    rd_kafka_destroy(admin);
    return 0;
}
