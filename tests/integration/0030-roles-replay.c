/* SPDX-License-Identifier: Apache-2.0 */
/* A train-role model replayed end to end, and the train role's metrics
 * (issue #22). The inputs hold an older stretch the join group was told to
 * skip (its offsets committed at their end, as `kafka-consumer-groups
 * --reset-offsets --to-latest` does); a join instance joins the rest into
 * the examples topic and a train instance trains from it. `learnd replay
 * --verify` then rebuilds its versions from the inputs (no
 * --examples-topic): re-joined from where the examples' events start, as
 * the lineage records them, and trained, bit for bit. Without the recorded
 * event ranges the replay read the skipped stretch too and failed. A
 * second model trains from the same examples topic with /metrics on, and
 * its counts are exactly what the examples topic holds. */
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/demo.h"
#include "publish/publish.h"
#include "schemas/learnd.pb-c.h"
#include "testutil.h"
#include "trainer/checkpoint.h"

#define PARTS 3

static char prefix[128], tmpdir[64];

static void names(char *buf, size_t size, const char *what)
{
    snprintf(buf, size, "%s.%s", prefix, what);
}

static void write_config(const char *path, const char *run, const char *model,
                         double lr, uint16_t port)
{
    char inputs[256], outs[256];
    names(inputs, sizeof(inputs), "in");
    names(outs, sizeof(outs), run);
    FILE *f = ld_test_config_begin(path, NULL, outs);
    fprintf(f, "log:\n  level: notice\nmetrics:\n");
    if (port)
        fprintf(f, "  enabled: true\n  listen: 127.0.0.1\n  port: %u\n",
                (unsigned)port);
    else
        fprintf(f, "  enabled: false\n");
    ld_test_config_demo_input(f, inputs, outs);
    fprintf(f,
            "  hash_fields: [country, ad_id, device]\n"
            "  label_field: clicked\n"
            "labeling:\n"
            "  window: 20s\n"
            "  max_out_of_orderness: 2s\n"
            "  idle_timeout: 0s\n"
            "trainer:\n"
            "  name: %s\n"
            "  hash_bits: 18\n"
            "  batch_size: 64\n"
            "  learning_rate: %g\n"
            "checkpoint:\n"
            "  dir: %s/%s-models\n"
            "  keep: 1000\n"
            "triggers:\n"
            "  time_enabled: false\n"
            "  performance_enabled: false\n"
            "  drift_enabled: false\n"
            "  gate_enabled: false\n"
            "  volume_examples: 700\n",
            model, lr, tmpdir, run);
    fclose(f);
}

/* A daemon still running when the test fails: killed at exit. */
static pid_t running;

static void kill_running(void)
{
    if (running > 0)
        kill(running, SIGKILL);
}

static pid_t spawn(const char *cfg, const char *role, int until,
                   const char *log, const char *extopic)
{
    const char *inst = strcmp(role, "join") == 0 ? "j0" : NULL;
    return running = ld_test_spawn_role(LD_LEARND_BIN, cfg, role, inst, until,
                                        log, extopic);
}

static void expect_exit(pid_t pid, int want, const char *log)
{
    running = 0;
    ld_test_expect_exit(pid, want, log);
}

static uint64_t last_version(const char *run, const char *model)
{
    char dir[256];
    snprintf(dir, sizeof(dir), "%s/%s-models", tmpdir, run);
    return ld_test_store_last_version(dir, model);
}

/* End offsets of topic's partitions (the first stretch's end). */
static void ends(rd_kafka_t *rk, const char *topic, int64_t *out)
{
    for (int p = 0; p < PARTS; p++) {
        int64_t lo = 0;
        LD_TEST_ASSERT(!rd_kafka_query_watermark_offsets(rk, topic, p, &lo,
                                                         &out[p], 10000),
                       "watermarks of %s", topic);
    }
}

/* The operator's reset: the join group starts at the given offsets. */
static void commit_group(const char *group, const char *events,
                         const char *labels, const int64_t *eo,
                         const int64_t *lo)
{
    rd_kafka_conf_t *cc = ld_test_conf_new();
    ld_test_conf_set(cc, "group.id", group);
    rd_kafka_t *c = ld_test_new(RD_KAFKA_CONSUMER, cc);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    for (int p = 0; p < PARTS; p++) {
        rd_kafka_topic_partition_list_add(l, events, p)->offset = eo[p];
        rd_kafka_topic_partition_list_add(l, labels, p)->offset = lo[p];
    }
    rd_kafka_resp_err_t e = rd_kafka_commit(c, l, 0);
    LD_TEST_ASSERT(!e, "commit the join group's offsets: %s",
                   rd_kafka_err2str(e));
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
}

/* What the examples topic holds (read_committed, every partition). */
typedef struct census {
    int64_t examples, watermarks, by_type[4];
    uint32_t hash_bits, dense_dim;
    uint8_t fmap[32];
} census_t;

static void take_census(const char *topic, census_t *c)
{
    memset(c, 0, sizeof(*c));
    for (int p = 0; p < PARTS; p++)
        ld_test_await_stable(topic, p, 30000);
    rd_kafka_conf_t *cc = ld_test_conf_new();
    ld_test_conf_set(cc, "group.id", "0030-census");
    ld_test_conf_set(cc, "isolation.level", "read_committed");
    ld_test_conf_set(cc, "enable.partition.eof", "true");
    rd_kafka_t *k = ld_test_new(RD_KAFKA_CONSUMER, cc);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(4);
    for (int p = 0; p < PARTS; p++)
        rd_kafka_topic_partition_list_add(l, topic, p)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    LD_TEST_ASSERT(!rd_kafka_assign(k, l), "assign %s", topic);
    rd_kafka_topic_partition_list_destroy(l);
    int eof = 0;
    int64_t deadline = ld_test_deadline(60000);
    while (eof < PARTS) {
        LD_TEST_ASSERT(ld_test_remaining(deadline) > 0, "reading %s", topic);
        rd_kafka_message_t *m = rd_kafka_consumer_poll(k, 500);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            eof++;
        } else {
            LD_TEST_ASSERT(!m->err, "%s", rd_kafka_err2str(m->err));
            Learnd__V1__JoinedExample *j =
                learnd__v1__joined_example__unpack(NULL, m->len, m->payload);
            LD_TEST_ASSERT(j, "examples record does not decode");
            if (j->example) {
                c->examples++;
                c->by_type[j->example->sample_type - 1]++;
            } else {
                c->watermarks++;
            }
            c->hash_bits = j->hash_bits;
            c->dense_dim = j->dense_dim;
            memcpy(c->fmap, j->feature_map_hash.data, 32);
            learnd__v1__joined_example__free_unpacked(j, NULL);
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_destroy(k);
}

/* Four bad records, one of each dead-letter reason. */
static void produce_bad(rd_kafka_t *rk, const char *topic, const census_t *c)
{
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    ld_test_produce(rk, topic, 0, "junk", junk, sizeof(junk));
    Learnd__V1__LabelledExample ex = LEARND__V1__LABELLED_EXAMPLE__INIT;
    ex.event_id = "bad";
    ex.sample_type = LEARND__V1__SAMPLE_TYPE__SAMPLE_TYPE_POS;
    Learnd__V1__JoinedExample j = LEARND__V1__JOINED_EXAMPLE__INIT;
    uint8_t other[32] = {0}, fmap[32], buf[256];
    memcpy(fmap, c->fmap, 32);
    j.hash_bits = 16; /* another model spec: an example, a watermark */
    j.dense_dim = c->dense_dim;
    j.feature_map_hash = (ProtobufCBinaryData){32, other};
    j.example = &ex;
    ld_test_produce(rk, topic, 1, "spec", buf,
                    learnd__v1__joined_example__pack(&j, buf));
    j.example = NULL;
    ld_test_produce(rk, topic, 1, "spec-watermark", buf,
                    learnd__v1__joined_example__pack(&j, buf));
    j.hash_bits = c->hash_bits; /* the right spec, a sample type of none */
    j.feature_map_hash = (ProtobufCBinaryData){32, fmap};
    ex.sample_type = 9;
    ex.partition = 2;
    j.example = &ex;
    ld_test_produce(rk, topic, 2, "invalid", buf,
                    learnd__v1__joined_example__pack(&j, buf));
    rd_kafka_flush(rk, 30000);
}

/* Version 1's lineage names the events from the first stretch's end on:
 * the input range behind the examples it trained on. */
static void check_lineage(const char *events, const int64_t *skip)
{
    char file[512], why[512];
    snprintf(file, sizeof(file), "%s/role-models/m/1.ckpt", tmpdir);
    ld_ckpt_t *ck = NULL;
    LD_TEST_ASSERT(ld_ckpt_read_file(file, &ck, why, sizeof(why)) == LD_OK,
                   "%s: %s", file, why);
    const Learnd__V1__Lineage *l = ld_ckpt_message(ck)->lineage;
    int seen = 0;
    for (size_t i = 0; i < l->n_consumed; i++) {
        const Learnd__V1__OffsetRange *c = l->consumed[i];
        if (strcmp(c->topic, events) != 0)
            continue;
        LD_TEST_ASSERT(c->partition >= 0 && c->partition < PARTS,
                       "partition %d", (int)c->partition);
        LD_TEST_EQ_I64("version 1's first event offset", skip[c->partition],
                       c->first_offset);
        seen++;
    }
    LD_TEST_EQ_I64("event ranges in version 1's lineage", PARTS, seen);
    ld_ckpt_destroy(ck);
}

static void replay(const char *cfg, uint64_t v, const char *extopic)
{
    char ver[24], earg[300], log[256];
    snprintf(ver, sizeof(ver), "%llu", (unsigned long long)v);
    snprintf(earg, sizeof(earg), "--examples-topic=%s", extopic);
    snprintf(log, sizeof(log), "%s/replay-%s%s.log", tmpdir, ver,
             extopic ? "-examples" : "");
    char *argv[] = {LD_LEARND_BIN,
                    "replay",
                    "-c",
                    (char *)cfg,
                    "--checkpoint",
                    ver,
                    "--verify",
                    extopic ? earg : NULL,
                    NULL};
    int rc = ld_test_wait_exit(ld_test_spawn(argv, log), 180000);
    if (rc)
        ld_test_show_tail(log, 30);
    LD_TEST_EQ_I64(log, 0, rc);
    LD_TEST_ASSERT(ld_test_file_has(log, "identical"), "%s", log);
    if (!extopic)
        LD_TEST_ASSERT(ld_test_file_has(log, "re-joining it from the inputs, "
                                             "events from where its examples"),
                       "%s: not replayed from the inputs", log);
}

static double metric(uint16_t port, const char *series)
{
    return ld_test_metric(port, series);
}

static void await_metric(uint16_t port, const char *series, double want)
{
    int64_t deadline = ld_test_deadline(120000);
    double v;
    while ((v = metric(port, series)) != want) {
        LD_TEST_ASSERT(ld_test_remaining(deadline) > 0, "%s is %g, not %g",
                       series, v, want);
        usleep(100000); /* the daemon's state, scraped again */
    }
}

/* Model m2 from the same examples topic, /metrics on: every count is what
 * the topic holds. */
static void metrics(rd_kafka_t *rk, const char *extopic, const census_t *c)
{
    char t[256], cfg[256], log[256], s[512];
    names(t, sizeof(t), "role2");
    ld_test_create_outputs(rk, t, 0);
    uint16_t port = ld_test_free_port();
    snprintf(cfg, sizeof(cfg), "%s/role2.yaml", tmpdir);
    write_config(cfg, "role2", "m2", 0.05, port);
    snprintf(log, sizeof(log), "%s/train-m2.log", tmpdir);
    pid_t pid = spawn(cfg, "train", 0, log, extopic);
    await_metric(port, "learnd_examples_trained_total", (double)c->examples);
    await_metric(port, "learnd_train_merge_queued_examples", 0);
    /* every publication the volume trigger decided is committed */
    int64_t deadline = ld_test_deadline(60000);
    while (metric(port, "learnd_checkpoints_published_total") !=
               metric(port, "learnd_triggers_total{type=\"volume\","
                            "verdict=\"PASS\"}") ||
           metric(port, "learnd_checkpoints_published_total") < 1) {
        LD_TEST_ASSERT(ld_test_remaining(deadline) > 0,
                       "publications %g, volume triggers %g",
                       metric(port, "learnd_checkpoints_published_total"),
                       metric(port, "learnd_triggers_total{type=\"volume\","
                                    "verdict=\"PASS\"}"));
        usleep(100000);
    }
    LD_TEST_EQ_I64("records_consumed example", c->examples,
                   (int64_t)metric(port, "learnd_records_consumed_total{kind="
                                         "\"example\"}"));
    LD_TEST_EQ_I64("records_consumed watermark", c->watermarks,
                   (int64_t)metric(port, "learnd_records_consumed_total{kind="
                                         "\"watermark\"}"));
    static const char *const types[] = {"pos", "default_neg", "fake_neg",
                                        "delayed_pos"};
    for (int i = 0; i < 4; i++) {
        snprintf(s, sizeof(s), "learnd_examples_total{sample_type=\"%s\"}",
                 types[i]);
        LD_TEST_EQ_I64(s, c->by_type[i], (int64_t)metric(port, s));
    }
    static const char *const reasons[] = {
        "undecodable", "model_spec", "model_spec_watermark", "invalid_example"};
    for (int i = 0; i < 4; i++) {
        snprintf(s, sizeof(s),
                 "learnd_dead_letters_total{kind=\"example\",reason=\"%s\"}",
                 reasons[i]);
        LD_TEST_EQ_I64(s, 1, (int64_t)metric(port, s));
    }
    LD_TEST_EQ_I64("delay count", c->examples,
                   (int64_t)metric(port, "learnd_train_example_delay_seconds_"
                                         "count"));
    double p50 = metric(port, "learnd_train_example_delay_seconds{quantile="
                              "\"0.5\"}");
    LD_TEST_ASSERT(p50 > 0, "delay p50 %g", p50);
    for (int p = 0; p < PARTS; p++) {
        snprintf(s, sizeof(s),
                 "learnd_consumer_lag{topic=\"%s\",partition=\"%d\"}", extopic,
                 p);
        LD_TEST_EQ_I64(s, 0, (int64_t)metric(port, s));
    }
    double published = metric(port, "learnd_checkpoints_published_total");
    double volume =
        metric(port, "learnd_triggers_total{type=\"volume\",verdict=\"PASS\"}");
    double commits =
        metric(port, "learnd_transactions_total{result=\"commit\"}");
    LD_TEST_ASSERT(commits >= 1, "commit points: %g", commits);
    LD_TEST_EQ_I64("learnd_up", 1, (int64_t)metric(port, "learnd_up"));
    kill(pid, SIGTERM);
    expect_exit(pid, 0, log);
    /* what it said is what it did */
    LD_TEST_EQ_I64("published = versions in the store",
                   (int64_t)last_version("role2", "m2"), (int64_t)published);
    static char keys[1 << 16];
    names(t, sizeof(t), "role2.triggers");
    LD_TEST_EQ_I64("volume triggers = trigger events",
                   ld_test_trigger_keys(t, 30000, keys, sizeof(keys)),
                   (int64_t)volume);
    ld_test_say("m2: %lld examples, %g versions, %g commit points, delay p50 "
                "%.3f s",
                (long long)c->examples, published, commits, p50);
}

int main(void)
{
    atexit(kill_running);
    ld_test_name(prefix, sizeof(prefix), "rolesreplay");
    ld_test_tmpdir(tmpdir, sizeof(tmpdir), "0030");
    rd_kafka_t *rk = ld_test_new(RD_KAFKA_PRODUCER, ld_test_conf_new());
    char in[256], t[256], extopic[256], events[256], labels[256], group[256];
    names(in, sizeof(in), "in");
    ld_test_create_demo_inputs(rk, in, PARTS, events, labels, sizeof(events));
    names(t, sizeof(t), "role");
    ld_test_create_outputs(rk, t, 0);
    names(extopic, sizeof(extopic), "examples");
    names(group, sizeof(group), "role.group");

    /* The stretch the join group skips, then the one it joins. */
    ld_demo_gen_conf_t g = {.seed = 30,
                            .n_events = 1500,
                            .start_time_ms = INT64_C(1767225600000),
                            .step_ms = 500,
                            .label_delay_ms = 3000,
                            .early_label_share = 0.02};
    ld_test_produce_demo(rk, &g, events, labels, PARTS, 0);
    int64_t eo[PARTS], lo[PARTS];
    ends(rk, events, eo);
    ends(rk, labels, lo);
    commit_group(group, events, labels, eo, lo);
    ld_demo_gen_conf_t b = g;
    b.seed = 31;
    b.n_events = 4000;
    b.drift_at = 2000;
    b.start_time_ms = g.start_time_ms + (int64_t)g.n_events * 500 + 60000;
    ld_test_produce_demo(rk, &b, events, labels, PARTS, 0);

    char cfg[256], log[256];
    snprintf(cfg, sizeof(cfg), "%s/role.yaml", tmpdir);
    write_config(cfg, "role", "m", 0.2, 0);
    snprintf(log, sizeof(log), "%s/join.log", tmpdir);
    expect_exit(spawn(cfg, "join", 1, log, extopic), 0, log);
    census_t c;
    take_census(extopic, &c);
    ld_test_say("examples topic: %lld examples, %lld watermark records",
                (long long)c.examples, (long long)c.watermarks);
    LD_TEST_ASSERT(c.examples > 3000 && c.examples <= 4000 + 1000,
                   "examples: %lld", (long long)c.examples);
    produce_bad(rk, extopic, &c);

    snprintf(log, sizeof(log), "%s/train.log", tmpdir);
    expect_exit(spawn(cfg, "train", 1, log, extopic), 0, log);
    uint64_t v = last_version("role", "m");
    LD_TEST_ASSERT(v >= 3, "versions: %llu", (unsigned long long)v);
    /* End to end: from the inputs, the middle version and the last. */
    replay(cfg, v / 2, NULL);
    check_lineage(events, eo);
    replay(cfg, v, NULL);
    replay(cfg, v, extopic); /* the training alone still verifies */
    ld_test_say("versions %llu and %llu rebuilt from the inputs",
                (unsigned long long)(v / 2), (unsigned long long)v);

    metrics(rk, extopic, &c);
    rd_kafka_destroy(rk);
    if (!getenv("LD_0030_KEEP"))
        ld_test_rm_rf(tmpdir);
    return 0;
}
