/* SPDX-License-Identifier: Apache-2.0 */
/* Replay repeats recorded watermark advances: a partition that went idle
 * in a live run had its watermark advanced (the join's one wall-clock
 * input), so records that arrived on it later were late. `learnd replay`
 * reads the advance from the checkpoints' lineage and repeats it at the
 * offset where it was made; without it the replay would join those records
 * and train another model.
 *
 * Partition 0 carries 20 000 events over 100 s of event time. Partition 1
 * carries 2 000 events over its first 10 s, then nothing: once idle for
 * idle_timeout (2 s of wall clock) its watermark is raised to partition 0's.
 * Then partition 1 gets 2 000 more events (10-20 s: late now), and both get
 * 200 events 300 s later, which close every earlier window. The live
 * daemon is stopped with SIGTERM and a second one, --until-caught-up,
 * resumes and publishes the final checkpoint: so the advance also has to
 * survive a restart in the resume state. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon/demo.h"
#include "testutil.h"
#include "publish/publish.h"
#include "trainer/checkpoint.h"

#define T0 1767225600000LL

static char prefix[128];
static char tmpdir[64];

static void topic(char *buf, size_t size, const char *what)
{
    snprintf(buf, size, "%s.%s", prefix, what);
}

/* Produces generator records to one partition until event index `until`
 * (or the end); returns the number of label records produced. */
static int64_t produce(rd_kafka_t *rk, ld_demo_gen_t *g, int32_t part,
                       int64_t until, ld_demo_record_t *held, int *has_held)
{
    char events[256], labels[256];
    topic(events, sizeof(events), "events");
    topic(labels, sizeof(labels), "labels");
    int64_t nlabels = 0;
    ld_demo_record_t r;
    for (;;) {
        if (*has_held) {
            r = *held;
            *has_held = 0;
        } else if (ld_demo_gen_next(g, &r) != 1) {
            break;
        }
        if (r.index >= until) { /* the next phase starts with it */
            *held = r;
            *has_held = 1;
            break;
        }
        ld_test_produce(rk, r.is_label ? labels : events, part, r.key, r.value,
                        r.len);
        nlabels += r.is_label;
    }
    LD_TEST_ASSERT(rd_kafka_flush(rk, 60000) == 0, "flush");
    return nlabels;
}

static ld_demo_gen_t *gen(uint64_t seed, int64_t start, int64_t n)
{
    ld_demo_gen_conf_t gc = {.seed = seed,
                             .n_events = n,
                             .drift_at = n,
                             .start_time_ms = start,
                             .step_ms = 5,
                             .label_delay_ms = 2000};
    ld_demo_gen_t *g = ld_demo_gen_new(&gc);
    LD_TEST_ASSERT(g, "generator");
    return g;
}

static void write_config(char *path, size_t size)
{
    snprintf(path, size, "%s/ri.yaml", tmpdir);
    FILE *f = ld_test_config_begin(path, NULL, prefix);
    fprintf(f, "log:\n"
               "  level: notice\n"
               "metrics:\n"
               "  enabled: false\n");
    ld_test_config_demo_input(f, prefix, prefix);
    fprintf(f,
            "  hash_fields: [country, ad_id, device]\n"
            "  label_field: clicked\n"
            "labeling:\n"
            "  window: 20s\n"
            "  max_out_of_orderness: 1s\n"
            "  idle_timeout: 2s\n"
            "  late_horizon: 0s\n"
            "trainer:\n"
            "  name: ri\n"
            "  hash_bits: 16\n"
            "  batch_size: 100\n"
            "checkpoint:\n"
            "  dir: %s/models\n"
            "triggers:\n"
            "  time_enabled: false\n"
            "  volume_enabled: false\n"
            "  performance_enabled: false\n"
            "  drift_enabled: false\n",
            tmpdir);
    fclose(f);
}

int main(void)
{
    ld_test_name(prefix, sizeof(prefix), "ri");
    ld_test_tmpdir(tmpdir, sizeof(tmpdir), "0008");
    rd_kafka_t *rk = ld_test_new(RD_KAFKA_PRODUCER, ld_test_conf_new());
    char t[256], events[256];
    topic(events, sizeof(events), "events");
    ld_test_create_topic(rk, events, 2, 30000);
    topic(t, sizeof(t), "labels");
    ld_test_create_topic(rk, t, 2, 30000);
    ld_test_create_outputs(rk, prefix, 0);
    char config[256];
    write_config(config, sizeof(config));

    /* Phase 1: partition 0 busy for 100 s of event time, partition 1 for
     * its first 10 s only. */
    ld_demo_record_t held0, held1;
    int h0 = 0, h1 = 0;
    ld_demo_gen_t *g0 = gen(1, T0, 20000), *g1 = gen(2, T0, 4000);
    produce(rk, g0, 0, INT64_MAX, &held0, &h0);
    produce(rk, g1, 1, 2000, &held1, &h1);

    char log1[128];
    snprintf(log1, sizeof(log1), "%s/live.log", tmpdir);
    pid_t pid = ld_test_spawn_run(LD_LEARND_BIN, config, 0, log1);
    char want[512];
    snprintf(want, sizeof(want),
             "msg=\"idle partition: watermark advanced\" topic=%s "
             "partition=1 offset=2000 ",
             events);
    int64_t deadline = ld_test_deadline(90000);
    while (!ld_test_file_has(log1, want)) {
        LD_TEST_ASSERT(ld_test_remaining(deadline),
                       "no idle advance of partition 1 at offset 2000");
        int st;
        LD_TEST_ASSERT(waitpid(pid, &st, WNOHANG) == 0,
                       "the live daemon exited (status %d)", st);
        usleep(20000); /* a log line is a file, not an event to wait on */
    }
    ld_test_say("partition 1 went idle and its watermark was advanced");

    /* Phase 2: partition 1's next 10 s arrive after the advance (late),
     * then 300 s later both partitions move on and close the windows. */
    produce(rk, g1, 1, INT64_MAX, &held1, &h1);
    ld_demo_gen_t *g2 = gen(3, T0 + 300000, 200),
                  *g3 = gen(4, T0 + 300000, 200);
    produce(rk, g2, 0, INT64_MAX, &held0, &h0);
    produce(rk, g3, 1, INT64_MAX, &held1, &h1);
    kill(pid, SIGTERM);
    LD_TEST_EQ_I64("live daemon exit code after SIGTERM", 0,
                   ld_test_wait_exit(pid, 60000));
    char log2[128];
    snprintf(log2, sizeof(log2), "%s/final.log", tmpdir);
    pid = ld_test_spawn_run(LD_LEARND_BIN, config, 1, log2);
    LD_TEST_EQ_I64("resumed daemon exit code", 0,
                   ld_test_wait_exit(pid, 120000));

    /* The final checkpoint: exactly the examples of the on-time events
     * (partition 1's later 2 000 were late), and the advance in its
     * lineage with the offset it was made at. */
    char dir[256], why[512];
    snprintf(dir, sizeof(dir), "%s/models", tmpdir);
    ld_ckpt_t *ck = NULL;
    LD_TEST_ASSERT(
        ld_publish_store_load_latest(dir, "ri", &ck, why, sizeof(why)) == LD_OK,
        "no final checkpoint: %s", why);
    const Learnd__V1__Lineage *l = ld_ckpt_message(ck)->lineage;
    LD_TEST_ASSERT(l && l->total_counts, "lineage with counts");
    uint64_t version = l->version;
    uint64_t examples = l->total_counts->pos + l->total_counts->default_neg +
                        l->total_counts->fake_neg +
                        l->total_counts->delayed_pos;
    LD_TEST_EQ_I64("examples trained (20 000 + 2 000 on time)", 22000,
                   (int64_t)examples);
    int found = 0;
    for (size_t i = 0; i < l->n_watermark_advances; i++) {
        const Learnd__V1__WatermarkAdvance *w = l->watermark_advances[i];
        if (strcmp(w->topic, events) == 0 && w->partition == 1 &&
            w->n_at == 1 && w->at[0]->offset == 2000)
            found = 1;
    }
    LD_TEST_ASSERT(found,
                   "the lineage of version %llu (%zu advances) lacks "
                   "partition 1's advance at offset 2000",
                   (unsigned long long)version, l->n_watermark_advances);
    ld_ckpt_destroy(ck);

    char out[128];
    snprintf(out, sizeof(out), "%s/replay.out", tmpdir);
    int code =
        ld_test_replay_verify(LD_LEARND_BIN, config, version, out, 120000);
    if (code != 0)
        ld_test_show_tail(out, 20);
    LD_TEST_EQ_I64("replay --verify exit code", 0, code);
    LD_TEST_ASSERT(ld_test_file_has(out, "\nidentical\n"), "replay output");
    LD_TEST_ASSERT(ld_test_file_has(out, "from the recorded start"),
                   "replay did not start where the run started");
    ld_test_say("replay of version %llu repeated the advance: identical",
                (unsigned long long)version);

    /* A restart under other trigger sizes keeps the model and the join
     * and starts the triggers afresh (their windows cannot carry over):
     * it must not refuse to start. */
    FILE *f = fopen(config, "a");
    LD_TEST_ASSERT(f, "append to %s", config);
    fprintf(f, "  window_size: 777\n");
    fclose(f);
    char log3[128];
    snprintf(log3, sizeof(log3), "%s/resized.log", tmpdir);
    pid = ld_test_spawn_run(LD_LEARND_BIN, config, 1, log3);
    code = ld_test_wait_exit(pid, 120000);
    if (code != 0)
        ld_test_show_tail(log3, 20);
    LD_TEST_EQ_I64("exit code after changing triggers.window_size", 0, code);
    LD_TEST_ASSERT(ld_test_file_has(log3, "the triggers start afresh"),
                   "no warning that the triggers start afresh");

    ld_demo_gen_destroy(g0);
    ld_demo_gen_destroy(g1);
    ld_demo_gen_destroy(g2);
    ld_demo_gen_destroy(g3);
    rd_kafka_destroy(rk);
    ld_test_rm_rf(tmpdir);
    return 0;
}
