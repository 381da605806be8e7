/* SPDX-License-Identifier: Apache-2.0 */
/* A new user's first hour on a real broker (issue #17): `learnd demo
 * --bootstrap`, then the broker's time retention runs over the demo's topics
 * (awaited: a canary record stamped 2026-01-01 is deleted), then `learnd run
 * -c` with packaging/learnd.yaml (LEARND_* set as its comments say for a
 * checkout; group, transactional id and outputs made the test's own) reads
 * every demo record and trains, `learnd replay --verify` reproduces its last
 * version, `learnd demo --run-id` continues the first demo (releasing the
 * events it left waiting), and a second fresh `learnd demo --bootstrap`
 * trains a model of its own. Each demo's summary accounts for every event:
 * released or still waiting for its label window. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "testutil.h"

#define DEMO_EVENTS 50000
#define PARTS       4               /* the demo's input partitions */
#define T0          1767225600000LL /* 2026-01-01T00:00:00Z */

static char dir[256];
static const char *learnd;

#define WAITING 12204 /* events of the last 61 s (window + out-of-order) */

/* What one demo run reported. */
typedef struct demo_run {
    char run_id[64], model[128];
    int64_t read, released, waiting;
} demo_run_t;

/* Runs `learnd demo --bootstrap` (continuing run_id unless NULL), expects
 * exit 0, and reads its summary JSON and the run line of its output. */
static void demo(int nth, const char *run_id, demo_run_t *out)
{
    char json[512], log[512], events[16];
    snprintf(json, sizeof(json), "%s/demo%d.json", dir, nth);
    snprintf(log, sizeof(log), "%s/demo%d.log", dir, nth);
    snprintf(events, sizeof(events), "%d", DEMO_EVENTS);
    char *argv[] = {(char *)learnd,
                    "demo",
                    "--bootstrap",
                    (char *)ld_test_bootstrap(),
                    "--events",
                    events,
                    "--summary-json",
                    json,
                    run_id ? "--run-id" : NULL,
                    (char *)run_id,
                    NULL};
    int rc = ld_test_wait_exit(ld_test_spawn(argv, log), 300000);
    if (rc != 0)
        ld_test_show_tail(log, 40);
    LD_TEST_EQ_I64("demo exit code", 0, rc);
    json_error_t jerr;
    json_t *s = json_load_file(json, 0, &jerr);
    LD_TEST_ASSERT(s, "demo summary %s: %s", json, jerr.text);
    json_t *ex = json_object_get(s, "examples");
    int64_t pos = json_integer_value(json_object_get(ex, "pos"));
    int64_t neg = json_integer_value(json_object_get(ex, "default_neg"));
    out->waiting = json_integer_value(json_object_get(ex, "pending"));
    out->read = json_integer_value(
        json_object_get(json_object_get(s, "records"), "events"));
    out->released = pos + neg;
    LD_TEST_ASSERT(pos > 0 && neg > 0, "both labels trained");
    json_decref(s);
    out->model[0] = out->run_id[0] = '\0';
    FILE *f = fopen(log, "r");
    LD_TEST_ASSERT(f, "open %s", log);
    char line[1024];
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "run %63[^:]: model %127[^,]", out->run_id,
                   out->model) == 2)
            break;
    fclose(f);
    LD_TEST_ASSERT(out->model[0], "the summary names the run and its model");
    ld_test_say("demo %d: run %s, model %s: %" PRId64 " events read, %" PRId64
                " released as examples, %" PRId64 " waiting",
                nth, out->run_id, out->model, out->read, out->released,
                out->waiting);
}

/* Low and high watermark of partition p of topic. */
static void watermarks(rd_kafka_t *rk, const char *topic, int32_t p,
                       int64_t *lo, int64_t *hi)
{
    rd_kafka_resp_err_t e =
        rd_kafka_query_watermark_offsets(rk, topic, p, lo, hi, 10000);
    LD_TEST_ASSERT(!e, "watermarks of %s [%d]: %s", topic, (int)p,
                   rd_kafka_err2str(e));
}

/* Replaces every occurrence (at least one) of from in buf (size bytes) by
 * to. */
static void subst(char *buf, size_t size, const char *from, const char *to)
{
    char *at = strstr(buf, from);
    LD_TEST_ASSERT(at, "packaging/learnd.yaml has '%s'", from);
    while (at) {
        size_t tail = strlen(at + strlen(from));
        LD_TEST_ASSERT(strlen(buf) - strlen(from) + strlen(to) < size, "fits");
        memmove(at + strlen(to), at + strlen(from), tail + 1);
        memcpy(at, to, strlen(to));
        at = strstr(at + strlen(to), from);
    }
}

int main(void)
{
    learnd = LD_LEARND_BIN;
    ld_test_tmpdir(dir, sizeof(dir), "0014");
    rd_kafka_t *rk = ld_test_new(RD_KAFKA_PRODUCER, ld_test_conf_new());

    /* ---- 1. The demo on the broker ---------------------------------- */
    demo_run_t d1, d2, d3;
    demo(1, NULL, &d1);
    /* Every event read is released once or waits for its 60 s window (the
     * generator is deterministic: the last 12 204 events at the end). */
    LD_TEST_EQ_I64("events demo 1 read", DEMO_EVENTS, d1.read);
    LD_TEST_EQ_I64("events demo 1 left waiting", WAITING, d1.waiting);
    LD_TEST_EQ_I64("events demo 1 released", DEMO_EVENTS - WAITING,
                   d1.released);
    int64_t total = 0;
    static const char *const inputs[] = {"events", "labels"};

    /* ---- 2. The broker's time retention runs over the demo's topics ----
     * A canary stamped 2026-01-01 in a topic of default retention (7 days)
     * goes at the next check after the demo: then nothing of the demo's may
     * be gone. */
    char canary[128];
    ld_test_name(canary, sizeof(canary), "canary");
    ld_test_create_topic(rk, canary, 1, 30000);
    ld_test_produce_at(rk, canary, 0, "k", "old", 3, T0);
    LD_TEST_ASSERT(rd_kafka_flush(rk, 30000) == 0, "flush");
    int64_t lo = 0, hi = 0, deadline = ld_test_deadline(120000);
    for (;;) {
        watermarks(rk, canary, 0, &lo, &hi);
        if (lo == 1)
            break;
        LD_TEST_ASSERT(ld_test_remaining(deadline) > 0,
                       "the broker's retention check did not delete the "
                       "canary in 120 s (log.retention.check.interval.ms of "
                       "tests/kafka/start.sh is 1 s)");
        usleep(100000);
    }
    ld_test_say("retention ran: canary log start offset 1");
    for (int t = 0; t < 2; t++)
        for (int32_t p = 0; p < PARTS; p++) {
            watermarks(rk, inputs[t], p, &lo, &hi);
            LD_TEST_EQ_I64("log start offset after retention (nothing "
                           "deleted)",
                           0, lo);
            LD_TEST_ASSERT(hi > 0, "%s [%d] is empty", inputs[t], (int)p);
            total += hi;
        }

    /* ---- 3. learnd run -c packaging/learnd.yaml --until-caught-up -----
     * The shipped config, with the test's own group, transactional id and
     * output topics (the broker is shared and may be reused). */
    char names[128], sub[512], cfg[512], runlog[512];
    ld_test_name(names, sizeof(names), "newuser");
    ld_test_create_outputs(rk, names, 0);
    static char yaml[65536];
    FILE *f = fopen(LD_SOURCE_DIR "/packaging/learnd.yaml", "r");
    LD_TEST_ASSERT(f, "open packaging/learnd.yaml");
    size_t n = fread(yaml, 1, sizeof(yaml) - 1, f);
    fclose(f);
    yaml[n] = '\0';
    static const char *const keys[][2] = {
        {"group_id: ${LEARND_GROUP:-learnd-ctr}", "group_id: %s.group"},
        {"transactional_id: ${LEARND_TXN_ID:-learnd-ctr}",
         "transactional_id: %s.txn"},
        {"state_topic: learnd.state", "state_topic: %s.state"},
        {"checkpoint_topic: learnd.checkpoints", "checkpoint_topic: %s.ckpt"},
        {"trigger_topic: learnd.triggers", "trigger_topic: %s.triggers"},
        {"dlq_topic: learnd.dlq", "dlq_topic: %s.dlq"}};
    for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
        snprintf(sub, sizeof(sub), keys[k][1], names);
        subst(yaml, sizeof(yaml), keys[k][0], sub);
    }
    snprintf(cfg, sizeof(cfg), "%s/learnd.yaml", dir);
    f = fopen(cfg, "w");
    LD_TEST_ASSERT(f && fputs(yaml, f) >= 0 && fclose(f) == 0, "write %s", cfg);
    char port[16];
    snprintf(port, sizeof(port), "%u", (unsigned)ld_test_free_port());
    /* The example config's own knobs for a checkout (see its comments). */
    snprintf(sub, sizeof(sub), "%s/models", dir);
    setenv("LEARND_MODELS", sub, 1);
    setenv("LEARND_SCHEMAS", LD_SOURCE_DIR "/schemas", 1);
    setenv("LEARND_BOOTSTRAP", ld_test_bootstrap(), 1);
    setenv("LEARND_METRICS_PORT", port, 1);
    snprintf(runlog, sizeof(runlog), "%s/run.log", dir);
    int rc =
        ld_test_wait_exit(ld_test_spawn_run(learnd, cfg, 1, runlog), 300000);
    if (rc != 0)
        ld_test_show_tail(runlog, 40);
    LD_TEST_EQ_I64("learnd run --until-caught-up exit code", 0, rc);
    unsigned long long consumed = 0, examples = 0, pending = 0, published = 0,
                       published_life = 0;
    f = fopen(runlog, "r");
    LD_TEST_ASSERT(f, "open %s", runlog);
    char line[2048];
    int stopped = 0;
    while (fgets(line, sizeof(line), f)) {
        char *m = strstr(line, "msg=\"stopped\" ");
        char *pe = m ? strstr(m, " pending_events=") : NULL;
        /* one process from scratch: its publications are all there are */
        if (m && pe &&
            sscanf(m,
                   "msg=\"stopped\" consumed_process=%llu "
                   "examples_process=%llu published_process=%llu "
                   "published_lifetime=%llu",
                   &consumed, &examples, &published, &published_life) == 4 &&
            sscanf(pe, " pending_events=%llu", &pending) == 1)
            stopped = 1;
    }
    fclose(f);
    if (!stopped)
        ld_test_show_tail(runlog, 20);
    LD_TEST_ASSERT(stopped, "run logged its stopped line");
    ld_test_say("run: consumed %llu of %" PRId64 " records, %llu examples, "
                "%llu events waiting, %llu published",
                consumed, total, examples, pending, published);
    LD_TEST_EQ_I64("records the run consumed (all of events and labels)", total,
                   (int64_t)consumed);
    LD_TEST_ASSERT(examples > 0, "the run trained");
    LD_TEST_ASSERT(published >= 1, "the run published a version");
    LD_TEST_EQ_I64("published_lifetime of a first run", (int64_t)published,
                   (int64_t)published_life);

    /* ---- 4. learnd replay --verify of the last version ------------------ */
    char replaylog[512];
    snprintf(replaylog, sizeof(replaylog), "%s/replay.log", dir);
    rc = ld_test_replay_verify(learnd, cfg, published, replaylog, 300000);
    if (rc != 0)
        ld_test_show_tail(replaylog, 40);
    LD_TEST_EQ_I64("learnd replay --verify exit code", 0, rc);

    /* ---- 5. The first demo continued (--run-id): its waiting events are
     * released now, its new stream starts after the newest input record. */
    demo(2, d1.run_id, &d2);
    LD_TEST_ASSERT(strcmp(d1.model, d2.model) == 0, "same model: %s, %s",
                   d1.model, d2.model);
    LD_TEST_EQ_I64("events the continued demo released (12 204 waiting + "
                   "50 000 new - 12 204 waiting)",
                   DEMO_EVENTS, d2.released);
    LD_TEST_EQ_I64("events the continued demo left waiting", WAITING,
                   d2.waiting);

    /* ---- 6. A second demo on the same broker: a run of its own ---------- */
    demo(3, NULL, &d3);
    LD_TEST_ASSERT(strcmp(d1.model, d3.model) != 0,
                   "the second demo trains its own model (both %s)", d1.model);
    LD_TEST_EQ_I64("events demo 3 read", DEMO_EVENTS, d3.read);
    LD_TEST_EQ_I64("events demo 3 released", DEMO_EVENTS - WAITING,
                   d3.released);

    rd_kafka_destroy(rk);
    ld_test_rm_rf(dir);
    ld_test_say("ok");
    return 0;
}
