/* SPDX-License-Identifier: Apache-2.0 */
/* Join instances hand partitions over at a rebalance (issue #22): two
 * `learnd run --role join` instances under different names read three
 * co-partitioned input partitions; a third joins mid-stream and leaves
 * again, so partitions move twice while joins are in progress (events
 * consumed and committed whose windows are open, whose labels come after
 * the move); a last one takes every partition over and reads to the end,
 * a third move. The examples topic must hold every example of a single
 * `learnd run` (role all) exactly once -- the same LabelledExample bytes,
 * the same count -- and one `learnd run --role train` over it must publish
 * the single run's versions bit for bit. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/demo.h"
#include "schemas/learnd.pb-c.h"
#include "testutil.h"
#include "publish/publish.h"
#include "trainer/checkpoint.h"

#define PARTS    3
#define NJOIN    3
#define N_EVENTS 3000

static char prefix[128], tmpdir[64];
static pid_t running[NJOIN];

static void kill_running(void)
{
    for (int i = 0; i < NJOIN; i++)
        if (running[i] > 0)
            kill(running[i], SIGKILL);
}

static void names(char *buf, size_t size, const char *what)
{
    snprintf(buf, size, "%s.%s", prefix, what);
}

static void write_config(const char *path, const char *run, int audit)
{
    char inputs[256], outs[256];
    names(inputs, sizeof(inputs), "in");
    names(outs, sizeof(outs), run);
    /* A member that leaves is noticed within 6 s (static members do not
     * leave the group when they close). */
    FILE *f = ld_test_config_begin(path, "  session.timeout.ms: 6000\n", outs);
    fprintf(f, "log:\n"
               "  level: info\n"
               "metrics:\n"
               "  enabled: false\n");
    ld_test_config_demo_input(f, inputs, outs);
    fprintf(f, "  hash_fields: [country, ad_id, device]\n"
               "  label_field: clicked\n"
               "labeling:\n"
               "  window: 20s\n"
               "  max_out_of_orderness: 2s\n"
               "  idle_timeout: 0s\n");
    if (audit)
        fprintf(f, "  output_topic: %s.audit\n", outs);
    fprintf(f,
            "trainer:\n"
            "  name: m\n"
            "  hash_bits: 18\n"
            "  batch_size: 64\n"
            "checkpoint:\n"
            "  dir: %s/%s-models\n"
            "  keep: 1000\n"
            "triggers:\n"
            "  time_enabled: false\n"
            "  performance_enabled: false\n"
            "  drift_enabled: false\n"
            "  gate_enabled: false\n"
            "  volume_examples: 600\n",
            tmpdir, run);
    fclose(f);
}

typedef struct ctx {
    rd_kafka_t *rk, *consumer;
    char group[256], events[256], labels[256];
    int members; /* the group awaited holds this many, each a partition */
} ctx_t;

/* The join group is stable with c->members members holding every input
 * partition between them (partition p of both topics together). */
static int group_ready(void *arg)
{
    ctx_t *c = arg;
    const char *groups[] = {c->group};
    rd_kafka_queue_t *q = rd_kafka_queue_new(c->rk);
    rd_kafka_DescribeConsumerGroups(c->rk, groups, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 10000);
    const rd_kafka_DescribeConsumerGroups_result_t *res =
        ev ? rd_kafka_event_DescribeConsumerGroups_result(ev) : NULL;
    size_t n = 0;
    const rd_kafka_ConsumerGroupDescription_t **d =
        res ? rd_kafka_DescribeConsumerGroups_result_groups(res, &n) : NULL;
    int ok =
        n == 1 && !rd_kafka_ConsumerGroupDescription_error(d[0]) &&
        rd_kafka_ConsumerGroupDescription_state(d[0]) ==
            RD_KAFKA_CONSUMER_GROUP_STATE_STABLE &&
        (int)rd_kafka_ConsumerGroupDescription_member_count(d[0]) == c->members;
    int held = 0;
    for (int i = 0; ok && i < c->members; i++) {
        const rd_kafka_topic_partition_list_t *a =
            rd_kafka_MemberAssignment_partitions(
                rd_kafka_MemberDescription_assignment(
                    rd_kafka_ConsumerGroupDescription_member(d[0], (size_t)i)));
        if (!a || a->cnt < 2)
            ok = 0;
        held += a ? a->cnt : 0;
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    return ok && held == 2 * PARTS;
}

/* Every input partition's committed offset in the group is its end. */
static int group_done(void *arg)
{
    ctx_t *c = arg;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    for (int p = 0; p < PARTS; p++) {
        rd_kafka_topic_partition_list_add(l, c->events, p);
        rd_kafka_topic_partition_list_add(l, c->labels, p);
    }
    int done = rd_kafka_committed(c->consumer, l, 10000) == 0;
    for (int i = 0; done && i < l->cnt; i++) {
        int64_t lo = 0, hi = 0;
        if (rd_kafka_query_watermark_offsets(c->consumer, l->elems[i].topic,
                                             l->elems[i].partition, &lo, &hi,
                                             10000) ||
            l->elems[i].offset != hi)
            done = 0;
    }
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

/* The demo stream, records from..to (in the generator's time order), each
 * to the partition ld_test_produce_demo gives it. */
static void produce_slice(ctx_t *c, int64_t from, int64_t to)
{
    ld_demo_gen_conf_t g = {.seed = 29,
                            .n_events = N_EVENTS,
                            .drift_at = N_EVENTS / 2,
                            .start_time_ms = INT64_C(1767225600000),
                            .step_ms = 500,
                            .label_delay_ms = 6000,
                            .early_label_share = 0.02};
    ld_demo_gen_t *gen = ld_demo_gen_new(&g);
    LD_TEST_ASSERT(gen, "generator");
    ld_demo_record_t r;
    for (int64_t i = 0; i < to && ld_demo_gen_next(gen, &r) == 1; i++) {
        if (i < from)
            continue;
        uint32_t h = 2166136261u; /* FNV-1a, as ld_test_produce_demo */
        for (const char *k = r.key; *k; k++)
            h = (h ^ (uint8_t)*k) * 16777619u;
        ld_test_produce(c->rk, r.is_label ? c->labels : c->events,
                        (int32_t)(h % PARTS), r.key, r.value, r.len);
    }
    ld_demo_gen_destroy(gen);
    LD_TEST_ASSERT(rd_kafka_flush(c->rk, 60000) == 0, "flush");
}

/* ---- The examples, compared -------------------------------------------- */

/* One example: its LabelledExample bytes in hex, first, so that sorting
 * the strings sorts by them; then what identifies it. */
typedef struct exset {
    char **v; /* "hex partition offset sample_type decision_time" */
    size_t n, cap;
    int64_t watermarks;
} exset_t;

static void exset_add(exset_t *s, const Learnd__V1__LabelledExample *e)
{
    uint8_t buf[8192];
    size_t n = learnd__v1__labelled_example__get_packed_size(e);
    LD_TEST_ASSERT(n <= sizeof(buf), "example of %zu bytes", n);
    learnd__v1__labelled_example__pack(e, buf);
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 1024;
        s->v = realloc(s->v, s->cap * sizeof(*s->v));
        LD_TEST_ASSERT(s->v, "memory");
    }
    char *h = malloc(2 * n + 80);
    LD_TEST_ASSERT(h, "memory");
    for (size_t i = 0; i < n; i++)
        snprintf(h + 2 * i, 3, "%02x", buf[i]);
    snprintf(h + 2 * n, 80, " %d %lld %d %lld", (int)e->partition,
             (long long)e->offset, (int)e->sample_type,
             (long long)e->decision_time_ms);
    s->v[s->n++] = h;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void exset_free(exset_t *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
}

static void audit_record(const rd_kafka_message_t *m, void *opaque)
{
    Learnd__V1__LabelledExample *e =
        learnd__v1__labelled_example__unpack(NULL, m->len, m->payload);
    LD_TEST_ASSERT(e, "an audit record that does not decode");
    exset_add(opaque, e);
    learnd__v1__labelled_example__free_unpacked(e, NULL);
}

/* Every committed record of every partition of the examples topic. */
static void read_examples(const char *topic, exset_t *s)
{
    rd_kafka_conf_t *conf = ld_test_conf_new();
    ld_test_conf_set(conf, "group.id", "ld-test-0029-reader");
    ld_test_conf_set(conf, "isolation.level", "read_committed");
    ld_test_conf_set(conf, "enable.partition.eof", "true");
    rd_kafka_t *c = ld_test_new(RD_KAFKA_CONSUMER, conf);
    rd_kafka_topic_partition_list_t *l =
        rd_kafka_topic_partition_list_new(PARTS);
    for (int p = 0; p < PARTS; p++) {
        ld_test_await_stable(topic, p, 30000);
        rd_kafka_topic_partition_list_add(l, topic, p)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    }
    LD_TEST_ASSERT(rd_kafka_assign(c, l) == 0, "assign %s", topic);
    rd_kafka_topic_partition_list_destroy(l);
    int eof[PARTS] = {0}, left = PARTS;
    int64_t deadline = ld_test_deadline(60000);
    while (left > 0) {
        LD_TEST_ASSERT(ld_test_remaining(deadline) > 0, "reading %s", topic);
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 500);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (!eof[m->partition]++)
                left--;
        } else {
            LD_TEST_ASSERT(!m->err, "%s: %s", topic,
                           rd_kafka_message_errstr(m));
            Learnd__V1__JoinedExample *j =
                learnd__v1__joined_example__unpack(NULL, m->len, m->payload);
            LD_TEST_ASSERT(j, "an examples record that does not decode");
            if (j->example)
                exset_add(s, j->example);
            else
                s->watermarks++;
            learnd__v1__joined_example__free_unpacked(j, NULL);
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_destroy(c);
}

/* The fields after the hex bytes: partition, offset, type, decision. */
static void ident(const char *v, int *p, long long *off, int *type,
                  long long *dt)
{
    const char *sp = strchr(v, ' ');
    LD_TEST_ASSERT(sp && sscanf(sp, " %d %lld %d %lld", p, off, type, dt) == 4,
                   "example line %s", v);
}

static int cmp_ident(const void *a, const void *b)
{
    int pa, pb, ta, tb;
    long long oa, ob, da, db;
    ident(*(char *const *)a, &pa, &oa, &ta, &da);
    ident(*(char *const *)b, &pb, &ob, &tb, &db);
    if (pa != pb)
        return pa < pb ? -1 : 1;
    if (oa != ob)
        return oa < ob ? -1 : 1;
    return ta < tb ? -1 : ta > tb;
}

/* The single run's pending events at its stop (its log's stop line). */
static long long pending_at_stop(const char *log)
{
    FILE *f = fopen(log, "r");
    LD_TEST_ASSERT(f, "%s", log);
    char line[2048];
    long long n = -1;
    while (fgets(line, sizeof(line), f)) {
        const char *at = strstr(line, "msg=\"stopped\"");
        if (at && (at = strstr(at, "pending_events=")))
            n = atoll(at + strlen("pending_events="));
    }
    fclose(f);
    LD_TEST_ASSERT(n >= 0, "no stop line in %s", log);
    return n;
}

/* The examples topic holds the single run's audit stream: the same
 * examples, byte for byte, each once. At the end of the input it may hold
 * more: a join instance decides its partitions on their own watermark,
 * the single run on the lowest of all, so events the single run still
 * held pending at its stop may be decided there -- each after every
 * example the single run released, and no more than it held. */
static void same_examples(const char *extopic, const char *all_log)
{
    exset_t all = {0}, joined = {0};
    char audit[256];
    names(audit, sizeof(audit), "all.audit");
    ld_test_read_topic(audit, 60000, audit_record, &all, NULL);
    read_examples(extopic, &joined);
    ld_test_say("examples: single run %zu, join instances %zu (and %lld "
                "watermark records)",
                all.n, joined.n, (long long)joined.watermarks);
    LD_TEST_ASSERT(all.n > N_EVENTS / 2, "only %zu examples", all.n);
    qsort(all.v, all.n, sizeof(*all.v), cmp_str);
    qsort(joined.v, joined.n, sizeof(*joined.v), cmp_str);
    long long last_dt = INT64_MIN;
    for (size_t x = 0; x < all.n; x++) {
        int p, type;
        long long off, dt;
        ident(all.v[x], &p, &off, &type, &dt);
        if (dt > last_dt)
            last_dt = dt;
    }
    size_t missing = 0, extra = 0, early = 0, i = 0, k = 0;
    while (i < all.n || k < joined.n) {
        int d = i == all.n      ? 1
                : k == joined.n ? -1
                                : strcmp(all.v[i], joined.v[k]);
        missing += d < 0;
        if (d > 0) {
            int p, type;
            long long off, dt;
            ident(joined.v[k], &p, &off, &type, &dt);
            extra++;
            early += dt < last_dt;
        }
        i += d <= 0;
        k += d >= 0;
    }
    /* Each (partition, offset, sample type) once, whatever its bytes. */
    qsort(joined.v, joined.n, sizeof(*joined.v), cmp_ident);
    size_t dup = 0;
    for (size_t x = 1; x < joined.n; x++)
        dup += cmp_ident(&joined.v[x - 1], &joined.v[x]) == 0;
    long long pending = pending_at_stop(all_log);
    ld_test_say("examples missing from the examples topic %zu, duplicated "
                "%zu, beyond the single run's end %zu (it held %lld events "
                "pending)",
                missing, dup, extra, pending);
    LD_TEST_EQ_I64("examples missing", 0, (int64_t)missing);
    LD_TEST_EQ_I64("examples duplicated", 0, (int64_t)dup);
    LD_TEST_EQ_I64("examples not in the single run decided before its last", 0,
                   (int64_t)early);
    LD_TEST_ASSERT((long long)extra <= pending,
                   "%zu examples beyond the single run's end, which held "
                   "only %lld events",
                   extra, pending);
    LD_TEST_EQ_I64("examples", (int64_t)(all.n + extra), (int64_t)joined.n);
    exset_free(&all);
    exset_free(&joined);
}

static void params(const char *run, uint64_t v, uint8_t sha[32])
{
    char dir[256];
    snprintf(dir, sizeof(dir), "%s/%s-models", tmpdir, run);
    ld_test_store_params(dir, "m", v, sha);
}

static uint64_t last_version(const char *run)
{
    char dir[256];
    snprintf(dir, sizeof(dir), "%s/%s-models", tmpdir, run);
    return ld_test_store_last_version(dir, "m");
}

/* Every version of the train instance is the single run's, bit for bit. */
static void same_models(void)
{
    uint64_t va = last_version("all"), vr = last_version("role");
    ld_test_say("versions: all %llu, role %llu", (unsigned long long)va,
                (unsigned long long)vr);
    LD_TEST_ASSERT(va >= 3, "expected volume publications, got %llu",
                   (unsigned long long)va);
    LD_TEST_EQ_I64("last version", (int64_t)va, (int64_t)vr);
    for (uint64_t v = 1; v <= va; v++) {
        uint8_t a[32], r[32];
        params("all", v, a);
        params("role", v, r);
        LD_TEST_ASSERT(memcmp(a, r, 32) == 0,
                       "version %llu: the parameters differ",
                       (unsigned long long)v);
    }
    ld_test_say("%llu versions bit-identical", (unsigned long long)va);
}

static void join_log(char *buf, size_t size, int i)
{
    snprintf(buf, size, "%s/join-%c.log", tmpdir, 'a' + i);
}

int main(void)
{
    atexit(kill_running);
    ld_test_name(prefix, sizeof(prefix), "joinrebalance");
    ld_test_tmpdir(tmpdir, sizeof(tmpdir), "0029");
    ctx_t c = {0};
    c.rk = ld_test_new(RD_KAFKA_PRODUCER, ld_test_conf_new());
    char in[256], t[256], extopic[256];
    names(in, sizeof(in), "in");
    ld_test_create_demo_inputs(c.rk, in, PARTS, c.events, c.labels,
                               sizeof(c.events));
    names(t, sizeof(t), "all");
    ld_test_create_outputs(c.rk, t, 1);
    names(t, sizeof(t), "role");
    ld_test_create_outputs(c.rk, t, 0);
    names(extopic, sizeof(extopic), "examples");
    names(c.group, sizeof(c.group), "role.group");
    rd_kafka_conf_t *cc = ld_test_conf_new();
    ld_test_conf_set(cc, "group.id", c.group);
    ld_test_conf_set(cc, "isolation.level", "read_committed");
    c.consumer = ld_test_new(RD_KAFKA_CONSUMER, cc);
    char cfg_all[256], cfg_role[256], log[256];
    snprintf(cfg_all, sizeof(cfg_all), "%s/all.yaml", tmpdir);
    snprintf(cfg_role, sizeof(cfg_role), "%s/role.yaml", tmpdir);
    write_config(cfg_all, "all", 1);
    write_config(cfg_role, "role", 0);

    /* The generator's records in time order: about 2 per event. Cut so
     * that events before each cut have their windows (20 s) and many of
     * their labels (6 s on average) after it. */
    const int64_t total = 2 * N_EVENTS, cut1 = total * 2 / 5,
                  cut2 = total * 7 / 10;
    for (int i = 0; i < 2; i++) {
        char inst[8];
        snprintf(inst, sizeof(inst), "j%c", 'a' + i);
        join_log(log, sizeof(log), i);
        running[i] = ld_test_spawn_role(LD_LEARND_BIN, cfg_role, "join", inst,
                                        0, log, extopic);
    }
    c.members = 2;
    await(group_ready, &c, "two join instances holding the partitions");
    produce_slice(&c, 0, cut1);
    await(group_done, &c, "the first slice committed");

    /* A third instance joins: the group moves a partition to it while
     * the first slice's last events wait for their windows. */
    join_log(log, sizeof(log), 2);
    running[2] = ld_test_spawn_role(LD_LEARND_BIN, cfg_role, "join", "jc", 0,
                                    log, extopic);
    c.members = 3;
    await(group_ready, &c, "three join instances, a partition each");
    produce_slice(&c, cut1, cut2);
    await(group_done, &c, "the second slice committed");

    /* It leaves: its partition moves back, joins in progress again. */
    kill(running[2], SIGTERM);
    ld_test_expect_exit(running[2], 0, log);
    running[2] = 0;
    c.members = 2;
    await(group_ready, &c, "two join instances again");
    produce_slice(&c, cut2, INT64_MAX);
    await(group_done, &c, "the whole input committed");

    for (int i = 0; i < 2; i++) {
        join_log(log, sizeof(log), i);
        kill(running[i], SIGTERM);
        ld_test_expect_exit(running[i], 0, log);
        running[i] = 0;
    }
    /* The group's offsets say the input is committed, not that the last
     * owners re-read what they took over at the last move (a stop right
     * after it leaves low watermark records, and a train instance then
     * holds examples back at the end). One more instance takes every
     * partition over and reads to the end: a third move. */
    snprintf(log, sizeof(log), "%s/join-z.log", tmpdir);
    ld_test_expect_exit(ld_test_spawn_role(LD_LEARND_BIN, cfg_role, "join",
                                           "jz", 1, log, extopic),
                        0, log);
    LD_TEST_ASSERT(ld_test_file_has(log, "partition taken over with its joins"),
                   "%s: jz took no partition over", log);
    int took = 0;
    for (int i = 0; i < NJOIN; i++) {
        join_log(log, sizeof(log), i);
        took += ld_test_file_has(log, "partition taken over with its joins");
    }
    ld_test_say("join instances that took a partition over: %d", took);

    snprintf(log, sizeof(log), "%s/all.log", tmpdir);
    ld_test_expect_exit(ld_test_spawn_role(LD_LEARND_BIN, cfg_all, "all", NULL,
                                           1, log, extopic),
                        0, log);
    snprintf(log, sizeof(log), "%s/train.log", tmpdir);
    ld_test_expect_exit(ld_test_spawn_role(LD_LEARND_BIN, cfg_role, "train",
                                           NULL, 1, log, extopic),
                        0, log);

    snprintf(log, sizeof(log), "%s/all.log", tmpdir);
    same_examples(extopic, log);
    same_models();

    rd_kafka_destroy(c.consumer);
    rd_kafka_destroy(c.rk);
    if (!getenv("LD_0029_KEEP"))
        ld_test_rm_rf(tmpdir);
    return 0;
}
