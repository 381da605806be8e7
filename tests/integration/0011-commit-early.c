/* SPDX-License-Identifier: Apache-2.0 */
/* Publications bring the commit point on (issue #7): with commit_interval
 * at an hour and a volume trigger every VOLUME examples, a backlog fires
 * about EXPECT publications within seconds. Each waits for a commit point
 * with a snapshot of the model, so they must not pile up until the interval
 * ends: the run (in process, --until-caught-up) commits them a few at a
 * time, and every passed decision is published exactly once. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "daemon/config.h"
#include "daemon/demo.h"
#include "daemon/run.h"
#include "testutil.h"

#define EVENTS 40000
#define VOLUME 2000
#define EXPECT (EVENTS * 3 / 4 / VOLUME) /* examples are ~0.8 x events */
/* 4 wait at most, plus the triggers of the records the loop still takes
 * while the ingest thread parks (a ring of 4096 records). */
#define MAX_PER_COMMIT 8

static char prefix[128];
static char tmpdir[64];

typedef struct seen {
    uint64_t passed;    /* PASS decisions: each publishes a checkpoint */
    uint64_t commits;   /* commit points that published something */
    uint64_t published; /* checkpoints, over all commit points */
    uint64_t most;      /* checkpoints of the biggest commit point */
} seen_t;

static void on_decision(void *opaque, const ld_trigger_decision_t *d)
{
    seen_t *s = opaque;
    s->passed += ld_trigger_decision_verdict(d) == LD_TRIGGER_VERDICT_PASS;
}

static void on_committed(void *opaque, uint64_t checkpoints)
{
    seen_t *s = opaque;
    s->commits += checkpoints > 0;
    s->published += checkpoints;
    if (checkpoints > s->most)
        s->most = checkpoints;
}

int main(void)
{
    ld_test_name(prefix, sizeof(prefix), "ce");
    ld_test_tmpdir(tmpdir, sizeof(tmpdir), "0011");
    rd_kafka_t *rk = ld_test_new(RD_KAFKA_PRODUCER, ld_test_conf_new());
    char events[256], labels[256];
    ld_test_create_demo_inputs(rk, prefix, 2, events, labels, sizeof(events));
    ld_test_create_outputs(rk, prefix, 0);
    ld_demo_gen_conf_t gc = {.seed = 11,
                             .n_events = EVENTS,
                             .drift_at = EVENTS,
                             .start_time_ms = 1767225600000,
                             .step_ms = 5,
                             .label_delay_ms = 2000};
    ld_test_produce_demo(rk, &gc, events, labels, 2, 0);

    char path[256];
    snprintf(path, sizeof(path), "%s/ce.yaml", tmpdir);
    FILE *f = ld_test_config_demo(path, prefix);
    fprintf(f,
            "labeling:\n"
            "  window: 20s\n"
            "trainer:\n"
            "  name: ce\n"
            "  hash_bits: 16\n"
            "checkpoint:\n"
            "  dir: %s/models\n"
            "triggers:\n"
            "  time_enabled: false\n"
            "  performance_enabled: false\n"
            "  drift_enabled: false\n"
            "  gate_enabled: false\n"
            "  volume_examples: %d\n",
            tmpdir, VOLUME);
    fclose(f);
    ld_config_t *c = ld_config_load(path, stderr);
    LD_TEST_ASSERT(c, "config %s", path);
    c->daemon.commit_interval_ms = 3600000; /* above the file's 200 ms */
    LD_TEST_EQ_I64("config check", LD_OK, ld_config_apply_logging(c));

    seen_t s = {0};
    ld_run_hooks_t hooks = {
        .opaque = &s, .decision = on_decision, .committed = on_committed};
    ld_run_opts_t ro = {.until_caught_up = 1, .hooks = &hooks};
    LD_TEST_EQ_I64("exit code", LD_EXIT_OK, ld_run(c, &ro));
    ld_test_say("%" PRIu64 " passed decisions; %" PRIu64
                " checkpoints in %" PRIu64 " commit points, at most %" PRIu64
                " in one",
                s.passed, s.published, s.commits, s.most);
    /* one decision per checkpoint, the final one of --until-caught-up
     * (end_of_input) included */
    LD_TEST_EQ_I64("checkpoints published", s.passed, s.published);
    LD_TEST_ASSERT(s.passed >= EXPECT / 2, "only %" PRIu64 " publications",
                   s.passed);
    LD_TEST_ASSERT(s.most <= MAX_PER_COMMIT,
                   "%" PRIu64 " checkpoints waited for one commit point",
                   s.most);
    ld_config_destroy(c);
    rd_kafka_destroy(rk);
    ld_test_rm_rf(tmpdir);
    return 0;
}
