/* SPDX-License-Identifier: Apache-2.0 */
/* Join and train roles (issue #22): three `learnd run --role join`
 * instances in one group over three co-partitioned input partitions write
 * the examples topic, and one `learnd run --role train` trains from it. The
 * model must be the one a single `learnd run` (role all) trains over the
 * same input: every published version bit for bit, the same trigger keys.
 * Then the boundary: an examples record that does not decode and one from
 * a join with another model spec go to the trainer's dead-letter topic with
 * their reason, and a train instance refuses an examples topic whose
 * partition count is not the inputs'. */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/demo.h"
#include "schemas/learnd.pb-c.h"
#include "testutil.h"
#include "publish/publish.h"
#include "trainer/checkpoint.h"

#define PARTS 3
#define JOINS 3
/* LD_0028_EVENTS scales the input (docs/OPERATIONS.md measured with it) */
static int n_input = 6000;

static char prefix[128], tmpdir[64];

static void names(char *buf, size_t size, const char *what)
{
    snprintf(buf, size, "%s.%s", prefix, what);
}

static void write_config(const char *path, const char *run, int bits,
                         const char *model, double lr)
{
    char inputs[256], outs[256];
    names(inputs, sizeof(inputs), "in");
    names(outs, sizeof(outs), run);
    FILE *f = ld_test_config_begin(path, NULL, outs);
    fprintf(f, "log:\n"
               "  level: notice\n"
               "metrics:\n"
               "  enabled: false\n");
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
            "  hash_bits: %d\n"
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
            model, bits, lr, tmpdir, run);
    fclose(f);
}

/* Join instances still running when the test fails: killed at exit, so
 * that a failure leaves no daemon behind. */
static pid_t joins_running[JOINS];

static void kill_joins(void)
{
    for (int i = 0; i < JOINS; i++)
        if (joins_running[i] > 0)
            kill(joins_running[i], SIGKILL);
}

/* The join group is stable with every instance holding a partition. */
static int group_ready(rd_kafka_t *rk, const char *group)
{
    const char *groups[] = {group};
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_DescribeConsumerGroups(rk, groups, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 10000);
    int ok = 0;
    const rd_kafka_DescribeConsumerGroups_result_t *res =
        ev ? rd_kafka_event_DescribeConsumerGroups_result(ev) : NULL;
    size_t n = 0;
    const rd_kafka_ConsumerGroupDescription_t **d =
        res ? rd_kafka_DescribeConsumerGroups_result_groups(res, &n) : NULL;
    if (n == 1 && !rd_kafka_ConsumerGroupDescription_error(d[0]) &&
        rd_kafka_ConsumerGroupDescription_state(d[0]) ==
            RD_KAFKA_CONSUMER_GROUP_STATE_STABLE &&
        rd_kafka_ConsumerGroupDescription_member_count(d[0]) == JOINS) {
        ok = 1;
        for (size_t i = 0; i < JOINS; i++) {
            const rd_kafka_MemberDescription_t *m =
                rd_kafka_ConsumerGroupDescription_member(d[0], i);
            const rd_kafka_topic_partition_list_t *a =
                rd_kafka_MemberAssignment_partitions(
                    rd_kafka_MemberDescription_assignment(m));
            if (!a || a->cnt != 2) /* partition p of both inputs */
                ok = 0;
        }
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    return ok;
}

/* Every input partition's committed offset in group is its end; *sum and
 * *end (unless NULL) the committed and end offsets summed. */
static int group_progress(rd_kafka_t *c, const char *events, const char *labels,
                          int64_t *sum, int64_t *end)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    for (int p = 0; p < PARTS; p++) {
        rd_kafka_topic_partition_list_add(l, events, p);
        rd_kafka_topic_partition_list_add(l, labels, p);
    }
    rd_kafka_resp_err_t ce = rd_kafka_committed(c, l, 10000);
    int done = ce == RD_KAFKA_RESP_ERR_NO_ERROR;
    int64_t s = ce ? -1 : 0, e = 0;
    for (int i = 0; i < l->cnt; i++) {
        int64_t lo = 0, hi = 0;
        if (rd_kafka_query_watermark_offsets(
                c, l->elems[i].topic, l->elems[i].partition, &lo, &hi, 10000) ||
            l->elems[i].offset != hi)
            done = 0;
        s += !ce && l->elems[i].offset > 0 ? l->elems[i].offset : 0;
        e += hi;
    }
    if (sum)
        *sum = s;
    if (end)
        *end = e;
    rd_kafka_topic_partition_list_destroy(l);
    return done;
}

static void await(int (*cond)(void *), void *arg, const char *what)
{
    int64_t deadline = ld_test_deadline(240000);
    while (!cond(arg)) {
        LD_TEST_ASSERT(ld_test_remaining(deadline) > 0, "timed out: %s", what);
        usleep(200000); /* the broker's state, asked again */
    }
}

typedef struct ctx {
    rd_kafka_t *rk, *consumer;
    char group[256], events[256], labels[256];
} ctx_t;

static int ready_cond(void *a)
{
    ctx_t *c = a;
    return group_ready(c->rk, c->group);
}

static int done_cond(void *a)
{
    ctx_t *c = a;
    return group_progress(c->consumer, c->events, c->labels, NULL, NULL);
}

static const char *model_of(const char *run)
{
    return strchr(run, '2') ? "m2" : "m"; /* all2, role2: the second model */
}

static void store_of(char *dir, size_t size, const char *run)
{
    snprintf(dir, size, "%s/%s-models", tmpdir, run);
}

static void params(const char *run, uint64_t v, uint8_t sha[32])
{
    char dir[256];
    store_of(dir, sizeof(dir), run);
    ld_test_store_params(dir, model_of(run), v, sha);
}

static uint64_t last_version(const char *run)
{
    char dir[256];
    store_of(dir, sizeof(dir), run);
    return ld_test_store_last_version(dir, model_of(run));
}

static uint64_t same_models(const char *ra, const char *rb);

/* Three joins, one train; the single run; the same models and events. */
static uint64_t roles_equal_all(ctx_t *c, const char *cfg_all,
                                const char *cfg_role, const char *extopic,
                                int kill_one)
{
    char log[256];
    pid_t join[JOINS];
    for (int i = 0; i < JOINS; i++) {
        char inst[16], jlog[256];
        snprintf(inst, sizeof(inst), "j%d", i);
        snprintf(jlog, sizeof(jlog), "%s/join%d.log", tmpdir, i);
        join[i] = joins_running[i] = ld_test_spawn_role(
            LD_LEARND_BIN, cfg_role, "join", inst, 0, jlog, extopic);
    }
    await(ready_cond, c, "three join instances holding a partition each");
    ld_demo_gen_conf_t g = {.seed = 28,
                            .n_events = kill_one ? n_input / 2 : n_input,
                            .drift_at = n_input / 2,
                            .start_time_ms = INT64_C(1767225600000),
                            .step_ms = 500,
                            .label_delay_ms = 3000,
                            .early_label_share = 0.02};
    ld_test_produce_demo(c->rk, &g, c->events, c->labels, PARTS, 0);
    if (kill_one) {
        /* The second half arrives; while the joins read it, j1 is killed
         * and restarted by its supervisor under the same name (a static
         * member: its partitions wait for it). */
        await(done_cond, c, "the join group committed the first half");
        ld_demo_gen_conf_t b = g;
        b.seed = 29;
        b.drift_at = 0;
        b.start_time_ms = g.start_time_ms + (int64_t)g.n_events * 500 + 1000;
        ld_test_produce_demo(c->rk, &b, c->events, c->labels, PARTS, 0);
        kill(join[1], SIGKILL);
        LD_TEST_EQ_I64("killed join", 128 + SIGKILL,
                       ld_test_wait_exit(join[1], 30000));
        int64_t sum = 0, end = 0;
        group_progress(c->consumer, c->events, c->labels, &sum, &end);
        /* -1: the offsets are unstable, a transaction holding some is
         * open (the killed one's, until its restart fences it) */
        ld_test_say("j1 killed; the group's committed input offsets: %lld "
                    "of %lld",
                    (long long)sum, (long long)end);
        char jlog[256];
        snprintf(jlog, sizeof(jlog), "%s/join1-restarted.log", tmpdir);
        join[1] = joins_running[1] = ld_test_spawn_role(
            LD_LEARND_BIN, cfg_role, "join", "j1", 0, jlog, extopic);
        await(done_cond, c, "the join group committed the whole input");
        LD_TEST_ASSERT(ld_test_file_has(jlog, "resumed from committed state"),
                       "%s: j1 did not resume from its state", jlog);
    }
    snprintf(log, sizeof(log), "%s/all.log", tmpdir);
    ld_test_expect_exit(ld_test_spawn_role(LD_LEARND_BIN, cfg_all, "all", NULL,
                                           1, log, extopic),
                        0, log);
    await(done_cond, c, "the join group committed the whole input");
    for (int i = 0; i < JOINS; i++) {
        char jlog[256];
        snprintf(jlog, sizeof(jlog), "%s/join%d.log", tmpdir, i);
        kill(join[i], SIGTERM);
        ld_test_expect_exit(join[i], 0, jlog);
        joins_running[i] = 0;
    }
    snprintf(log, sizeof(log), "%s/train.log", tmpdir);
    ld_test_expect_exit(ld_test_spawn_role(LD_LEARND_BIN, cfg_role, "train",
                                           NULL, 1, log, extopic),
                        0, log);

    return same_models("all", "role");
}

/* Every version of run a equals run b's, bit for bit, with the same
 * trigger keys; returns the last version. */
static uint64_t same_models(const char *ra, const char *rb)
{
    uint64_t va = last_version(ra), vr = last_version(rb);
    ld_test_say("versions: %s %llu, %s %llu", ra, (unsigned long long)va, rb,
                (unsigned long long)vr);
    LD_TEST_ASSERT(va >= 3, "expected volume publications, got %llu",
                   (unsigned long long)va);
    LD_TEST_EQ_I64("last version", (int64_t)va, (int64_t)vr);
    for (uint64_t v = 1; v <= va; v++) {
        uint8_t a[32], r[32];
        params(ra, v, a);
        params(rb, v, r);
        LD_TEST_ASSERT(memcmp(a, r, 32) == 0,
                       "version %llu: the roles' parameters differ",
                       (unsigned long long)v);
    }
    static char keys_a[1 << 16], keys_r[1 << 16];
    char t[256], what[64];
    snprintf(what, sizeof(what), "%s.triggers", ra);
    names(t, sizeof(t), what);
    int64_t na = ld_test_trigger_keys(t, 30000, keys_a, sizeof(keys_a));
    snprintf(what, sizeof(what), "%s.triggers", rb);
    names(t, sizeof(t), what);
    int64_t nr = ld_test_trigger_keys(t, 30000, keys_r, sizeof(keys_r));
    LD_TEST_EQ_I64("trigger events", na, nr);
    LD_TEST_ASSERT(strcmp(keys_a, keys_r) == 0,
                   "trigger keys differ:\n%s\n--\n%s", keys_a, keys_r);
    ld_test_say("%llu versions and %lld trigger events bit-identical",
                (unsigned long long)va, (long long)na);
    return va;
}

/* `learnd replay --verify` rebuilds a train-role version from the
 * examples topic: the middle one and the last (end of input). */
static void replay_train(const char *cfg, const char *extopic, uint64_t version)
{
    uint64_t vs[2] = {version / 2, version};
    for (int i = 0; i < 2; i++) {
        char v[24], earg[300], log[256];
        snprintf(v, sizeof(v), "%llu", (unsigned long long)vs[i]);
        snprintf(earg, sizeof(earg), "--examples-topic=%s", extopic);
        snprintf(log, sizeof(log), "%s/replay-%s.log", tmpdir, v);
        char *argv[] = {LD_LEARND_BIN, "replay",       "-c",
                        (char *)cfg,   "--checkpoint", v,
                        "--verify",    earg,           NULL};
        int rc = ld_test_wait_exit(ld_test_spawn(argv, log), 120000);
        if (rc)
            ld_test_show_tail(log, 30);
        LD_TEST_EQ_I64("replay --verify of a train-role version", 0, rc);
    }
    ld_test_say("replay --verify: versions %llu and %llu rebuilt from the "
                "examples topic",
                (unsigned long long)vs[0], (unsigned long long)vs[1]);
}

/* A second model with other trainer settings (name m2, learning_rate 0.05)
 * trains from the same examples topic in a group and transaction of its
 * own: its versions are those of a `learnd run` with its settings, and
 * not the first model's. */
static void second_model(ctx_t *c, const char *extopic)
{
    char t[256], cfg_all[256], cfg_role[256], log[256];
    names(t, sizeof(t), "all2");
    ld_test_create_outputs(c->rk, t, 0);
    names(t, sizeof(t), "role2");
    ld_test_create_outputs(c->rk, t, 0);
    snprintf(cfg_all, sizeof(cfg_all), "%s/all2.yaml", tmpdir);
    snprintf(cfg_role, sizeof(cfg_role), "%s/role2.yaml", tmpdir);
    write_config(cfg_all, "all2", 18, "m2", 0.05);
    write_config(cfg_role, "role2", 18, "m2", 0.05);
    snprintf(log, sizeof(log), "%s/all2.log", tmpdir);
    ld_test_expect_exit(ld_test_spawn_role(LD_LEARND_BIN, cfg_all, "all", NULL,
                                           1, log, extopic),
                        0, log);
    snprintf(log, sizeof(log), "%s/train-m2.log", tmpdir);
    ld_test_expect_exit(ld_test_spawn_role(LD_LEARND_BIN, cfg_role, "train",
                                           NULL, 1, log, extopic),
                        0, log);
    same_models("all2", "role2");
    uint8_t a[32], b[32];
    params("role", 1, a);
    params("role2", 1, b);
    LD_TEST_ASSERT(memcmp(a, b, 32) != 0, "m2 version 1 equals m's");
}

/* Reasons of the dead letters read back, one a line. */
static void reason(const rd_kafka_message_t *m, void *opaque)
{
    char *out = opaque;
    rd_kafka_headers_t *h = NULL;
    const void *v = NULL;
    size_t n = 0;
    LD_TEST_ASSERT(rd_kafka_message_headers(m, &h) == 0 &&
                       rd_kafka_header_get_last(h, "learnd.error", &v, &n) == 0,
                   "a dead letter without learnd.error");
    strncat(out, v, n);
    strcat(out, "\n");
    /* whose it is: the train instance's model (and its group) */
    LD_TEST_ASSERT(rd_kafka_header_get_last(h, "learnd.model", &v, &n) == 0 &&
                       n == 1 && memcmp(v, "m", 1) == 0,
                   "a dead letter without learnd.model: m");
    LD_TEST_ASSERT(rd_kafka_header_get_last(h, "learnd.group", &v, &n) == 0 &&
                       n > 0,
                   "a dead letter without learnd.group");
}

/* Bad records on the examples topic: one that is no JoinedExample, one from
 * a join with 16 hash bits. A restarted train instance dead-letters both
 * with their reason, and publishes nothing new (its resume state has every
 * good example trained). An examples topic with another partition count is
 * refused. */
static void boundary(ctx_t *c, const char *cfg_role, const char *extopic,
                     uint64_t version)
{
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    ld_test_produce(c->rk, extopic, 0, "junk", junk, sizeof(junk));
    Learnd__V1__LabelledExample ex = LEARND__V1__LABELLED_EXAMPLE__INIT;
    ex.event_id = "other-spec";
    ex.sample_type = LEARND__V1__SAMPLE_TYPE__SAMPLE_TYPE_POS;
    Learnd__V1__JoinedExample j = LEARND__V1__JOINED_EXAMPLE__INIT;
    uint8_t fmap[32] = {0}, buf[256];
    j.example = &ex;
    j.hash_bits = 16;
    j.dense_dim = 20;
    j.feature_map_hash = (ProtobufCBinaryData){32, fmap};
    size_t n = learnd__v1__joined_example__pack(&j, buf);
    ld_test_produce(c->rk, extopic, 1, "other-spec", buf, n);
    rd_kafka_flush(c->rk, 30000);
    char log[256];
    snprintf(log, sizeof(log), "%s/train2.log", tmpdir);
    ld_test_expect_exit(ld_test_spawn_role(LD_LEARND_BIN, cfg_role, "train",
                                           NULL, 1, log, extopic),
                        0, log);
    char dlq[256], reasons[256] = "";
    names(dlq, sizeof(dlq), "role.dlq");
    int64_t dead = ld_test_read_topic(dlq, 30000, reason, reasons, NULL);
    LD_TEST_EQ_I64("dead letters", 2, dead);
    LD_TEST_ASSERT(strcmp(reasons, "undecodable\nmodel_spec\n") == 0,
                   "reasons: %s", reasons);
    LD_TEST_EQ_I64("version after the restart", (int64_t)version,
                   (int64_t)last_version("role"));

    char three[256];
    names(three, sizeof(three), "examples-2parts");
    ld_test_create_topic(c->rk, three, PARTS - 1, 30000);
    snprintf(log, sizeof(log), "%s/train3.log", tmpdir);
    ld_test_expect_exit(ld_test_spawn_role(LD_LEARND_BIN, cfg_role, "train",
                                           NULL, 1, log, three),
                        2, log);
    LD_TEST_ASSERT(ld_test_file_has(log, "has 2 partitions but the inputs"),
                   "no partition count message in %s", log);
}

/* One scenario under a fresh prefix and directory: the inputs, both
 * runs' outputs, the examples topic and the join group's reader. */
static uint64_t scenario(const char *what, int kill_one, int bad_input)
{
    ld_test_name(prefix, sizeof(prefix), what);
    ld_test_tmpdir(tmpdir, sizeof(tmpdir), "0028");
    ctx_t c = {0};
    c.rk = ld_test_new(RD_KAFKA_PRODUCER, ld_test_conf_new());
    char in[256], t[256], extopic[256];
    names(in, sizeof(in), "in");
    ld_test_create_demo_inputs(c.rk, in, PARTS, c.events, c.labels,
                               sizeof(c.events));
    names(t, sizeof(t), "all");
    ld_test_create_outputs(c.rk, t, 0);
    names(t, sizeof(t), "role");
    ld_test_create_outputs(c.rk, t, 0);
    names(extopic, sizeof(extopic), "examples");
    names(c.group, sizeof(c.group), "role.group");
    rd_kafka_conf_t *cc = ld_test_conf_new();
    ld_test_conf_set(cc, "group.id", c.group);
    c.consumer = ld_test_new(RD_KAFKA_CONSUMER, cc);
    char cfg_all[256], cfg_role[256];
    snprintf(cfg_all, sizeof(cfg_all), "%s/all.yaml", tmpdir);
    snprintf(cfg_role, sizeof(cfg_role), "%s/role.yaml", tmpdir);
    write_config(cfg_all, "all", 18, "m", 0.2);
    write_config(cfg_role, "role", 18, "m", 0.2);
    uint64_t version =
        roles_equal_all(&c, cfg_all, cfg_role, extopic, kill_one);
    if (bad_input) {
        replay_train(cfg_role, extopic, version);
        second_model(&c, extopic);
        boundary(&c, cfg_role, extopic, version);
    }
    rd_kafka_destroy(c.consumer);
    rd_kafka_destroy(c.rk);
    if (!getenv("LD_0028_KEEP"))
        ld_test_rm_rf(tmpdir);
    return version;
}

int main(void)
{
    atexit(kill_joins);
    const char *ev = getenv("LD_0028_EVENTS");
    if (ev && atoi(ev) > 0)
        n_input = atoi(ev);
    scenario("roles", 0, 1);
    scenario("roleskill", 1, 0);
    return 0;
}
