/* SPDX-License-Identifier: Apache-2.0 */
/* Input that retention deleted is named (issue #17). A run publishes
 * version 1 from the start of two partitions; records below offset CUT of
 * the events topic's partition 0 are then deleted (DeleteRecords, as time
 * retention does): `learnd replay --verify` exits 1 naming the topic, the
 * partition, the recorded start and the log start offset (main said only
 * "did not reach version 1"). More events are then produced and all of
 * partition 0 deleted: the next `learnd run` logs the committed offset that
 * is gone at ERR. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "daemon/demo.h"
#include "testutil.h"

#define EVENTS 4000
#define CUT    100

static char prefix[128];
static char tmpdir[64];

/* Deletes the records of topic/partition below offset (admin API). */
static void delete_below(rd_kafka_t *rk, const char *topic, int32_t partition,
                         int64_t offset)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition)->offset = offset;
    rd_kafka_DeleteRecords_t *del = rd_kafka_DeleteRecords_new(l);
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_DeleteRecords(rk, &del, 1, NULL, q);
    rd_kafka_DeleteRecords_destroy(del);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    LD_TEST_ASSERT(ev && rd_kafka_event_type(ev) ==
                             RD_KAFKA_EVENT_DELETERECORDS_RESULT,
                   "no DeleteRecords result");
    LD_TEST_ASSERT(!rd_kafka_event_error(ev), "DeleteRecords: %s",
                   rd_kafka_event_error_string(ev));
    const rd_kafka_topic_partition_list_t *res =
        rd_kafka_DeleteRecords_result_offsets(
            rd_kafka_event_DeleteRecords_result(ev));
    LD_TEST_ASSERT(res && res->cnt == 1 && !res->elems[0].err,
                   "DeleteRecords of %s [%d] failed", topic, (int)partition);
    LD_TEST_EQ_I64("log start after DeleteRecords", offset,
                   res->elems[0].offset);
    rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
}

int main(void)
{
    ld_test_name(prefix, sizeof(prefix), "rg");
    ld_test_tmpdir(tmpdir, sizeof(tmpdir), "0018");
    rd_kafka_t *rk = ld_test_new(RD_KAFKA_PRODUCER, ld_test_conf_new());
    char events[256], labels[256];
    ld_test_create_demo_inputs(rk, prefix, 2, events, labels, sizeof(events));
    ld_test_create_outputs(rk, prefix, 0);
    ld_demo_gen_conf_t gc = {.seed = 18,
                             .n_events = EVENTS,
                             .drift_at = EVENTS,
                             .start_time_ms = 1767225600000,
                             .step_ms = 50,
                             .label_delay_ms = 2000};
    ld_test_produce_demo(rk, &gc, events, labels, 2, 0);

    char path[256], log[256], out[256], text[512];
    snprintf(path, sizeof(path), "%s/rg.yaml", tmpdir);
    snprintf(log, sizeof(log), "%s/run.log", tmpdir);
    snprintf(out, sizeof(out), "%s/replay.out", tmpdir);
    FILE *f = ld_test_config_demo(path, prefix);
    fprintf(f,
            "labeling:\n"
            "  window: 20s\n"
            "trainer:\n"
            "  name: rg\n"
            "  hash_bits: 16\n"
            "checkpoint:\n"
            "  dir: %s/models\n"
            "triggers:\n"
            "  time_enabled: false\n"
            "  performance_enabled: false\n"
            "  drift_enabled: false\n"
            "  gate_enabled: false\n"
            "  volume_examples: 1000000\n",
            tmpdir);
    fclose(f);
    int rc = ld_test_wait_exit(ld_test_spawn_run(LD_LEARND_BIN, path, 1, log),
                               120000);
    if (rc != 0)
        ld_test_show_tail(log, 30);
    LD_TEST_EQ_I64("first run's exit code", 0, rc);

    delete_below(rk, events, 0, CUT);
    rc = ld_test_replay_verify(LD_LEARND_BIN, path, 1, out, 120000);
    if (rc != 1)
        ld_test_show_tail(out, 30);
    LD_TEST_EQ_I64("replay's exit code", 1, rc);
    snprintf(text, sizeof(text),
             "learnd replay: topic %s partition 0: the recorded input starts "
             "at offset 0, but retention deleted it: the log starts at offset "
             "%d\n",
             events, CUT);
    LD_TEST_ASSERT(ld_test_file_has(out, text), "no \"%s\" in %s", text, out);

    /* Records the next run would resume from, deleted before it starts. */
    gc.seed = 19;
    gc.start_time_ms += (int64_t)EVENTS * gc.step_ms + 60000;
    ld_test_produce_demo(rk, &gc, events, labels, 2, 0);
    int64_t lo = -1, hi = -1;
    LD_TEST_EQ_I64(
        "watermarks", 0,
        rd_kafka_query_watermark_offsets(rk, events, 0, &lo, &hi, 10000));
    delete_below(rk, events, 0, hi);
    rc = ld_test_wait_exit(ld_test_spawn_run(LD_LEARND_BIN, path, 1, log),
                           120000);
    if (rc != 0)
        ld_test_show_tail(log, 30);
    LD_TEST_EQ_I64("second run's exit code", 0, rc);
    snprintf(text, sizeof(text),
             "msg=\"input lost: retention deleted records this run resumes "
             "from; reading on from the log start\" topic=%s partition=0 ",
             events);
    LD_TEST_ASSERT(ld_test_file_has(log, text), "no \"%s\" in %s", text, log);
    snprintf(text, sizeof(text), " log_start=%" PRId64 " lost=", hi);
    LD_TEST_ASSERT(ld_test_file_has(log, text), "no \"%s\" in %s", text, log);
    rd_kafka_destroy(rk);
    ld_test_rm_rf(tmpdir);
    return 0;
}
