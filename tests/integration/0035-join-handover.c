/* SPDX-License-Identifier: Apache-2.0 */
/* Join-role hand-overs that had no test (docs/OPERATIONS.md, "Scaling
 * out"):
 * 1. A join instance whose partition's joiner record does not fit the
 *    offset metadata (over 4 KiB: thousands of labels waiting for their
 *    event) hands it over small, without its pending advances and pending
 *    labels. Killed with SIGKILL and restarted from that small record, it
 *    writes exactly the examples of an instance never interrupted, each
 *    once, with the same lifetime counts of records in and examples
 *    released.
 * 2. Lost partitions: an instance stopped (SIGSTOP) past its session
 *    timeout loses its partition to the other instance of the group, which
 *    takes it over from the last commit point's record; woken up, the first
 *    learns they were lost, aborts its open transaction and commits
 *    nothing. The examples are still exactly the single instance's. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon/demo.h"
#include "schemas/learnd.pb-c.h"
#include "testutil.h"

#define EVENTS 30000
#define TAG    "learnd.join1:"
/* The small record: 208 bytes, in base64 280 characters after the tag. */
#define SMALL_LEN (sizeof(TAG) - 1 + 280)

static char prefix[128], tmpdir[64];

/* Config of run name over the inputs <in>.events and <in>.labels. */
static void write_config_in(const char *in, const char *name, char *path,
                            size_t size)
{
    char names[256];
    snprintf(names, sizeof(names), "%s.%s", prefix, name);
    snprintf(path, size, "%s/%s.yaml", tmpdir, name);
    FILE *f = ld_test_config_begin(path, "  session.timeout.ms: 6000\n", names);
    fprintf(f, "log:\n  level: info\nmetrics:\n  enabled: false\n");
    ld_test_config_demo_input(f, in, names);
    fprintf(f, "  hash_fields: [country, ad_id, device]\n"
               "  label_field: clicked\n"
               "labeling:\n"
               "  window: 20s\n"
               "  max_out_of_orderness: 1s\n"
               "  idle_timeout: 0s\n"
               "  max_pending: 100000\n"
               "trainer:\n"
               "  name: sm\n"
               "  hash_bits: 12\n");
    fclose(f);
}

static void write_config(const char *name, char *path, size_t size)
{
    write_config_in(prefix, name, path, size);
}

static size_t put_varint(uint8_t *b, int64_t v)
{
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63); /* zigzag */
    size_t n = 0;
    for (; z >= 0x80; z >>= 7)
        b[n++] = (uint8_t)(z | 0x80);
    b[n++] = (uint8_t)z;
    return n;
}

/* A click (schemas/label.avsc) for an event that never comes: it waits a
 * window of event time for it, then expires as unmatched. */
static void produce_orphan(rd_kafka_t *rk, const char *labels, int64_t i,
                           int64_t t)
{
    char key[32];
    uint8_t v[64];
    int kl = snprintf(key, sizeof(key), "orphan-%lld", (long long)i);
    size_t n = put_varint(v, kl);
    memcpy(v + n, key, (size_t)kl);
    n += (size_t)kl;
    n += put_varint(v + n, t);
    v[n++] = 1;          /* clicked */
    memset(v + n, 0, 8); /* value 0.0 */
    ld_test_produce(rk, labels, 0, key, v, n + 8);
}

/* The committed offset metadata of the events partition in group. */
static size_t committed_meta(rd_kafka_t *c, const char *events, char *buf,
                             size_t size)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, events, 0);
    size_t n = 0;
    buf[0] = '\0';
    if (rd_kafka_committed(c, l, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        l->elems[0].offset > 0 && l->elems[0].metadata) {
        n = l->elems[0].metadata_size < size - 1 ? l->elems[0].metadata_size
                                                 : size - 1;
        memcpy(buf, l->elems[0].metadata, n);
        buf[n] = '\0';
    }
    rd_kafka_topic_partition_list_destroy(l);
    return n;
}

static long long stop_field(const char *log, const char *name)
{
    FILE *f = fopen(log, "r");
    LD_TEST_ASSERT(f, "%s", log);
    static char line[8192];
    long long v = -1;
    char want[96];
    snprintf(want, sizeof(want), " %s=", name);
    while (fgets(line, sizeof(line), f)) {
        const char *at = strstr(line, "msg=\"stopped\"");
        if (at && (at = strstr(at, want)))
            v = atoll(at + strlen(want));
    }
    fclose(f);
    LD_TEST_ASSERT(v >= 0, "%s: no %s on a stopped line", log, name);
    return v;
}

/* The examples of an examples topic, in order (its watermark records,
 * written at commit points, depend on timing and are left out). */
typedef struct exsum {
    int64_t n;
    uint64_t hash; /* FNV-1a 64 of the LabelledExample bytes */
} exsum_t;

static void sum_example(const rd_kafka_message_t *m, void *opaque)
{
    exsum_t *s = opaque;
    Learnd__V1__JoinedExample *j =
        learnd__v1__joined_example__unpack(NULL, m->len, m->payload);
    LD_TEST_ASSERT(j, "an examples record that does not decode");
    if (j->example) {
        uint8_t buf[8192];
        size_t n = learnd__v1__labelled_example__get_packed_size(j->example);
        LD_TEST_ASSERT(n <= sizeof(buf), "example of %zu bytes", n);
        learnd__v1__labelled_example__pack(j->example, buf);
        for (size_t i = 0; i < n; i++)
            s->hash = (s->hash ^ buf[i]) * 0x100000001b3ull;
        s->n++;
    }
    learnd__v1__joined_example__free_unpacked(j, NULL);
}

static pid_t spawn_join(const char *cfg, const char *name, const char *log)
{
    char ex[300];
    snprintf(ex, sizeof(ex), "%s.%s.examples", prefix, name);
    return ld_test_spawn_role(LD_LEARND_BIN, cfg, "join", "j1", 1, log, ex);
}

/* The committed offsets of both inputs of group are their ends. */
static int group_done(rd_kafka_t *c, const char *in)
{
    char t[2][300];
    snprintf(t[0], sizeof(t[0]), "%s.events", in);
    snprintf(t[1], sizeof(t[1]), "%s.labels", in);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(2);
    rd_kafka_topic_partition_list_add(l, t[0], 0);
    rd_kafka_topic_partition_list_add(l, t[1], 0);
    int done = rd_kafka_committed(c, l, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR;
    for (int i = 0; done && i < 2; i++) {
        int64_t lo = 0, hi = 0;
        if (rd_kafka_query_watermark_offsets(c, t[i], 0, &lo, &hi, 10000) ||
            l->elems[i].offset != hi)
            done = 0;
    }
    rd_kafka_topic_partition_list_destroy(l);
    return done;
}

static void produce_demo_part(rd_kafka_t *rk, const char *in, int64_t from,
                              int64_t to)
{
    char ev[300], lb[300];
    snprintf(ev, sizeof(ev), "%s.events", in);
    snprintf(lb, sizeof(lb), "%s.labels", in);
    ld_demo_gen_conf_t gc = {.seed = 36,
                             .n_events = EVENTS,
                             .start_time_ms = 1767225600000,
                             .step_ms = 5,
                             .label_delay_ms = 3000};
    ld_demo_gen_t *g = ld_demo_gen_new(&gc);
    ld_demo_record_t r;
    for (int64_t i = 0; i < to && ld_demo_gen_next(g, &r) == 1; i++)
        if (i >= from)
            ld_test_produce(rk, r.is_label ? lb : ev, 0, r.key, r.value, r.len);
    ld_demo_gen_destroy(g);
    LD_TEST_ASSERT(rd_kafka_flush(rk, 60000) == 0, "flush");
}

/* Scenario 2: lost partitions. */
static void lost_partitions(void)
{
    char in[200], group[300], t[300];
    snprintf(in, sizeof(in), "%s.lost", prefix);
    rd_kafka_t *admin = ld_test_new(RD_KAFKA_PRODUCER, ld_test_conf_new());
    char events[256], labels[256];
    ld_test_create_demo_inputs(admin, in, 1, events, labels, sizeof(events));
    static const char *const runs[] = {"lostref", "lostpair"};
    for (int i = 0; i < 2; i++) {
        snprintf(t, sizeof(t), "%s.%s", prefix, runs[i]);
        ld_test_create_outputs(admin, t, 0);
    }
    /* Half the input first; the rest once the partition moved. The holder
     * stops idle: a holder stopped with a transaction open may meet the
     * loss at its next commit instead (the coordinator refuses a zombie's
     * offsets: exit 1 and a restart), and not in the rebalance. */
    int64_t half = EVENTS; /* records, events and labels together */
    produce_demo_part(admin, in, 0, half);

    char cp[256], log[2][256];
    write_config_in(in, "lostpair", cp, sizeof(cp));
    snprintf(group, sizeof(group), "%s.lostpair.group", prefix);
    rd_kafka_conf_t *cc = ld_test_conf_new();
    ld_test_conf_set(cc, "group.id", group);
    rd_kafka_t *c = ld_test_new(RD_KAFKA_CONSUMER, cc);
    char ex[300];
    snprintf(ex, sizeof(ex), "%s.lostpair.examples", prefix);
    pid_t pid[2];
    static const char *const inst[2] = {"a", "b"};
    for (int i = 0; i < 2; i++) {
        snprintf(log[i], sizeof(log[i]), "%s/lostpair-%s.log", tmpdir, inst[i]);
        pid[i] = ld_test_spawn_role(LD_LEARND_BIN, cp, "join", inst[i], 0,
                                    log[i], ex);
    }
    /* The holder: the instance whose partition was assigned, once the
     * first half is committed. */
    int64_t deadline = ld_test_deadline(120000);
    int h = -1;
    while (h < 0 || !group_done(c, in)) {
        LD_TEST_ASSERT(ld_test_remaining(deadline), "first half not done");
        for (int i = 0; i < 2 && h < 0; i++)
            if (ld_test_file_has(log[i], "msg=\"partition assigned\""))
                h = i;
        usleep(50000); /* the group's committed offsets, asked again */
    }
    kill(pid[h], SIGSTOP);
    /* Past the session timeout (6 s) the other one takes it over. */
    deadline = ld_test_deadline(120000);
    while (!ld_test_file_has(log[1 - h], "msg=\"partition assigned\"")) {
        LD_TEST_ASSERT(ld_test_remaining(deadline), "no take-over");
        usleep(50000); /* its log, read again */
    }
    produce_demo_part(admin, in, half, INT64_MAX);
    kill(pid[h], SIGCONT);
    deadline = ld_test_deadline(120000);
    while (!ld_test_file_has(log[h], "lost=1")) {
        LD_TEST_ASSERT(ld_test_remaining(deadline),
                       "the stopped instance never learnt its partitions "
                       "were lost");
        usleep(50000); /* its log, read again */
    }
    deadline = ld_test_deadline(120000);
    while (!group_done(c, in)) {
        LD_TEST_ASSERT(ld_test_remaining(deadline), "input not done");
        usleep(50000); /* the group's committed offsets, asked again */
    }
    for (int i = 0; i < 2; i++) {
        kill(pid[i], SIGTERM);
        ld_test_expect_exit(pid[i], 0, log[i]);
    }
    rd_kafka_destroy(c);
    rd_kafka_destroy(admin);

    char cr[256], rlog[256];
    write_config_in(in, "lostref", cr, sizeof(cr));
    snprintf(rlog, sizeof(rlog), "%s/lostref.log", tmpdir);
    snprintf(ex, sizeof(ex), "%s.lostref.examples", prefix);
    ld_test_expect_exit(
        ld_test_spawn_role(LD_LEARND_BIN, cr, "join", "r", 1, rlog, ex), 0,
        rlog);
    exsum_t a = {0, 0xcbf29ce484222325ull}, b = a;
    snprintf(t, sizeof(t), "%s.lostref.examples", prefix);
    ld_test_read_topic(t, 30000, sum_example, &a, NULL);
    snprintf(t, sizeof(t), "%s.lostpair.examples", prefix);
    ld_test_read_topic(t, 30000, sum_example, &b, NULL);
    LD_TEST_ASSERT(a.n > EVENTS / 2, "%lld examples", (long long)a.n);
    LD_TEST_EQ_I64("examples after lost partitions", a.n, b.n);
    LD_TEST_ASSERT(a.hash == b.hash,
                   "the examples differ after lost partitions");
    ld_test_say("lost partitions: instance %s stopped, %s took over; %lld "
                "examples identical, each once",
                inst[h], inst[1 - h], (long long)a.n);
}

int main(void)
{
    ld_test_name(prefix, sizeof(prefix), "sm");
    ld_test_tmpdir(tmpdir, sizeof(tmpdir), "0035");
    rd_kafka_t *admin = ld_test_new(RD_KAFKA_PRODUCER, ld_test_conf_new());
    char events[256], labels[256], t[300];
    ld_test_create_demo_inputs(admin, prefix, 1, events, labels,
                               sizeof(events));
    static const char *const runs[] = {"straight", "killed"};
    for (int i = 0; i < 2; i++) {
        snprintf(t, sizeof(t), "%s.%s", prefix, runs[i]);
        ld_test_create_outputs(admin, t, 0);
    }
    /* The demo stream, and an orphan click beside every event: 4 000 of
     * them wait at any time (a 20 s window, an event every 5 ms). */
    ld_demo_gen_conf_t gc = {.seed = 35,
                             .n_events = EVENTS,
                             .start_time_ms = 1767225600000,
                             .step_ms = 5,
                             .label_delay_ms = 3000};
    ld_demo_gen_t *g = ld_demo_gen_new(&gc);
    ld_demo_record_t r;
    int64_t orphans = 0;
    while (ld_demo_gen_next(g, &r) == 1) {
        ld_test_produce(admin, r.is_label ? labels : events, 0, r.key, r.value,
                        r.len);
        if (!r.is_label)
            produce_orphan(admin, labels, orphans++, r.time_ms);
    }
    ld_demo_gen_stats_t gs;
    ld_demo_gen_stats(g, &gs);
    ld_demo_gen_destroy(g);
    LD_TEST_ASSERT(rd_kafka_flush(admin, 60000) == 0, "flush");
    rd_kafka_destroy(admin);

    char cs[256], ck[256], log[256];
    write_config("straight", cs, sizeof(cs));
    write_config("killed", ck, sizeof(ck));
    snprintf(log, sizeof(log), "%s/straight.log", tmpdir);
    ld_test_expect_exit(spawn_join(cs, "straight", log), 0, log);
    LD_TEST_ASSERT(ld_test_file_has(log, "joiner record over the offset "
                                         "metadata bound"),
                   "the straight instance's record fit the metadata");
    long long in_a = stop_field(log, "labels_in_lifetime");
    long long ev_a = stop_field(log, "events_in_lifetime");
    long long rel_a = stop_field(log, "released_lifetime");
    LD_TEST_EQ_I64("straight: events in", gs.events, ev_a);
    LD_TEST_EQ_I64("straight: labels in", gs.labels + orphans, in_a);

    /* Killed once a small record is committed, about a third in. */
    char group[300], meta[4096];
    snprintf(group, sizeof(group), "%s.killed.group", prefix);
    rd_kafka_conf_t *cc = ld_test_conf_new();
    ld_test_conf_set(cc, "group.id", group);
    rd_kafka_t *c = ld_test_new(RD_KAFKA_CONSUMER, cc);
    snprintf(log, sizeof(log), "%s/killed.1.log", tmpdir);
    pid_t pid = spawn_join(ck, "killed", log);
    int64_t deadline = ld_test_deadline(120000);
    size_t mlen;
    for (;;) {
        mlen = committed_meta(c, events, meta, sizeof(meta));
        rd_kafka_topic_partition_list_t *l =
            rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, events, 0);
        int64_t off = rd_kafka_committed(c, l, 10000) ? -1 : l->elems[0].offset;
        rd_kafka_topic_partition_list_destroy(l);
        if (mlen && off > EVENTS / 3)
            break;
        int st;
        LD_TEST_ASSERT(waitpid(pid, &st, WNOHANG) != pid,
                       "the instance ended before its kill point");
        LD_TEST_ASSERT(ld_test_remaining(deadline), "no commit point");
        usleep(20000); /* the group's committed offset, asked again */
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    rd_kafka_destroy(c);
    LD_TEST_ASSERT(strncmp(meta, TAG, strlen(TAG)) == 0,
                   "committed metadata %.40s", meta);
    LD_TEST_EQ_I64("committed record: the small one", (int64_t)SMALL_LEN,
                   (int64_t)mlen);
    snprintf(log, sizeof(log), "%s/killed.2.log", tmpdir);
    ld_test_expect_exit(spawn_join(ck, "killed", log), 0, log);
    LD_TEST_ASSERT(ld_test_file_has(log, "partition taken over with its "
                                         "joins in progress"),
                   "the restart took the partition over from its record");

    /* The same examples, each once, and the same books of what came in
     * and what was released. */
    exsum_t a = {0, 0xcbf29ce484222325ull}, b = a;
    snprintf(t, sizeof(t), "%s.straight.examples", prefix);
    ld_test_read_topic(t, 30000, sum_example, &a, NULL);
    snprintf(t, sizeof(t), "%s.killed.examples", prefix);
    ld_test_read_topic(t, 30000, sum_example, &b, NULL);
    int64_t na = a.n;
    LD_TEST_ASSERT(na > EVENTS / 2, "%lld examples", (long long)na);
    LD_TEST_EQ_I64("examples: released by the straight instance", rel_a, na);
    LD_TEST_EQ_I64("examples after a kill", na, b.n);
    LD_TEST_ASSERT(a.hash == b.hash, "the examples differ after a kill");
    LD_TEST_EQ_I64("events in, lifetime", ev_a,
                   stop_field(log, "events_in_lifetime"));
    LD_TEST_EQ_I64("labels in, lifetime", in_a,
                   stop_field(log, "labels_in_lifetime"));
    LD_TEST_EQ_I64("released, lifetime", rel_a,
                   stop_field(log, "released_lifetime"));
    ld_test_say("small record (%zu characters) handed over: %lld examples "
                "identical, %lld labels in, %lld released",
                mlen, (long long)na, in_a, rel_a);
    lost_partitions();
    ld_test_rm_rf(tmpdir);
    printf("0035-join-handover: PASS\n");
    return 0;
}
