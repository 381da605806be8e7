/* SPDX-License-Identifier: Apache-2.0 */
/* labeling.at_bound: pause (issue #7): a backlog whose record timestamps do
 * not follow event time (all of partition 0 was written before partition
 * 1, so reading by timestamp reads partition 0 first) makes the joiner hold
 * partition 0's events until partition 1 is read. Run in process with
 * --until-caught-up twice on the same topics: without a bound the store
 * peaks near partition 0's size; at max_pending BOUND the daemon holds
 * partition 0 back and reads partition 1, so the store stays near the bound
 * (plus what was polled before a hold took: see SLACK), the run still
 * reaches its end, and the model is the same, bit for bit. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/config.h"
#include "daemon/demo.h"
#include "daemon/run.h"
#include "testutil.h"
#include "publish/publish.h"
#include "trainer/checkpoint.h"

#define EVENTS 160000
#define BOUND  30000
/* The ring the ingest thread polled ahead (4096) and a flow step (1024)
 * come in before a hold takes, and again before the next ones (3-6k over
 * the bound seen, more on a slow machine): */
#define SLACK (3 * (4096 + 1024))

static char prefix[128];
static char tmpdir[64];

static void on_progress(void *opaque, const ld_run_progress_t *p)
{
    *(uint64_t *)opaque = p->pending_peak;
}

/* Runs learnd in process over the whole input with a group and model
 * store of its own; returns the joiner's peak and the params hash. */
static uint64_t run(const char *config, const char *tag, int64_t max_pending,
                    uint8_t params[32])
{
    ld_config_t *c = ld_config_load(config, stderr);
    LD_TEST_ASSERT(c, "config %s", config);
    /* group, transactional id, outputs and model store of its own */
    char names[256], dir[256];
    snprintf(names, sizeof(names), "%s.%s", prefix, tag);
    snprintf(dir, sizeof(dir), "%s/%s", tmpdir, tag);
    char **own[] = {&c->pipeline.group_id,    &c->daemon.transactional_id,
                    &c->daemon.state_topic,   &c->daemon.checkpoint_topic,
                    &c->daemon.trigger_topic, &c->pipeline.dlq_topic,
                    &c->checkpoint.dir};
    static const char *const suffix[] = {"group",    "txn", "state", "ckpt",
                                         "triggers", "dlq", NULL};
    for (size_t i = 0; i < sizeof(own) / sizeof(*own); i++) {
        char v[300];
        if (suffix[i])
            snprintf(v, sizeof(v), "%s.%s", names, suffix[i]);
        else
            snprintf(v, sizeof(v), "%s", dir);
        free(*own[i]);
        LD_TEST_ASSERT((*own[i] = strdup(v)), "memory");
    }
    c->labeling.max_pending = max_pending;
    LD_TEST_EQ_I64("logging", LD_OK, ld_config_apply_logging(c));
    uint64_t peak = 0;
    ld_run_hooks_t hooks = {.opaque = &peak, .progress = on_progress};
    ld_run_opts_t ro = {.until_caught_up = 1, .hooks = &hooks};
    LD_TEST_EQ_I64("exit code", LD_EXIT_OK, ld_run(c, &ro));
    ld_ckpt_t *ck = NULL;
    char err[256];
    LD_TEST_EQ_I64(
        "final checkpoint", LD_OK,
        ld_publish_store_load_latest(dir, "ab", &ck, err, sizeof(err)));
    const Learnd__V1__Checkpoint *m = ld_ckpt_message(ck);
    LD_TEST_ASSERT(m->lineage && m->lineage->params_sha256.len == 32,
                   "no params hash");
    memcpy(params, m->lineage->params_sha256.data, 32);
    ld_ckpt_destroy(ck);
    ld_config_destroy(c);
    return peak;
}

int main(void)
{
    ld_test_name(prefix, sizeof(prefix), "ab");
    ld_test_tmpdir(tmpdir, sizeof(tmpdir), "0012");
    rd_kafka_t *rk = ld_test_new(RD_KAFKA_PRODUCER, ld_test_conf_new());
    char events[256], labels[256];
    ld_test_create_demo_inputs(rk, prefix, 2, events, labels, sizeof(events));
    char names[256];
    snprintf(names, sizeof(names), "%s.free", prefix);
    ld_test_create_outputs(rk, names, 0);
    snprintf(names, sizeof(names), "%s.bounded", prefix);
    ld_test_create_outputs(rk, names, 0);
    /* Event i and its label go to partition i % 2: all of partition 0
     * first, then partition 1, timestamps those of the writes. */
    ld_demo_gen_conf_t gc = {.seed = 12,
                             .n_events = EVENTS,
                             .drift_at = EVENTS,
                             .start_time_ms = 1767225600000,
                             .step_ms = 5,
                             .label_delay_ms = 2000};
    for (int32_t part = 0; part < 2; part++) {
        ld_demo_gen_t *g = ld_demo_gen_new(&gc);
        LD_TEST_ASSERT(g, "generator");
        ld_demo_record_t r;
        while (ld_demo_gen_next(g, &r) == 1)
            if (r.index % 2 == part)
                ld_test_produce(rk, r.is_label ? labels : events, part, r.key,
                                r.value, r.len);
        ld_demo_gen_destroy(g);
        LD_TEST_ASSERT(rd_kafka_flush(rk, 60000) == 0, "flush");
    }

    char config[256];
    snprintf(config, sizeof(config), "%s/ab.yaml", tmpdir);
    FILE *f = ld_test_config_demo(config, prefix);
    fprintf(f, "labeling:\n"
               "  window: 5s\n" /* ~1000 events: well below BOUND */
               "  at_bound: pause\n"
               "trainer:\n"
               "  name: ab\n"
               "  hash_bits: 16\n"
               "triggers:\n"
               "  time_enabled: false\n"
               "  volume_enabled: false\n"
               "  performance_enabled: false\n"
               "  drift_enabled: false\n");
    fclose(f);

    uint8_t free_run[32], bounded[32];
    uint64_t peak_free = run(config, "free", 1000000000, free_run);
    uint64_t peak_bounded = run(config, "bounded", BOUND, bounded);
    ld_test_say("peak pending: %" PRIu64 " unbounded, %" PRIu64
                " at max_pending %d",
                peak_free, peak_bounded, BOUND);
    LD_TEST_ASSERT(2 * peak_free > 3 * (BOUND + SLACK),
                   "the input did not need the bound (peak %" PRIu64 ")",
                   peak_free);
    LD_TEST_ASSERT(peak_bounded <= BOUND + SLACK,
                   "the store reached %" PRIu64 " at max_pending %d",
                   peak_bounded, BOUND);
    LD_TEST_ASSERT(memcmp(free_run, bounded, 32) == 0,
                   "holding partitions back changed the model");
    rd_kafka_destroy(rk);
    ld_test_rm_rf(tmpdir);
    return 0;
}
