/* SPDX-License-Identifier: Apache-2.0 */
/* The incremental resume state survives compaction: a daemon stopped
 * mid-input, whose state topic the broker then compacts aggressively
 * (segment.ms 100, min.cleanable.dirty.ratio 0.001, delete.retention.ms
 * 0), restarts from what compaction kept and ends with the same
 * parameters, bit for bit, as a run that went straight through. Built
 * twice: 0021 at hash_bits 18, where the restart needs the blocks plus the
 * deltas of the commits since each was written, and 0032 at hash_bits 10
 * (64 blocks), where the sweep goes round many times, so deltas are
 * retired by tombstones that compaction then removes with them. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon/demo.h"
#include "publish/publish.h"
#include "testutil.h"
#include "trainer/checkpoint.h"

#ifndef EVENTS
#define EVENTS 100000
#endif
#ifndef STATE_HASH_BITS
#define STATE_HASH_BITS 18
#endif
/* A publication every VOLUME_EXAMPLES examples, and a commit point once 4
 * wait (MAX_WAITING_PUBLICATIONS in daemon/run.c): commit points follow
 * the input, not the clock, so a machine fast enough to read the whole
 * input within one commit_interval still makes the many commit points
 * this test needs before its 60 % kill point. */
#ifndef VOLUME_EXAMPLES
#define VOLUME_EXAMPLES 5000
#endif

static char prefix[128];
static char tmpdir[64];

static void topic(char *buf, size_t size, const char *what)
{
    snprintf(buf, size, "%s.%s", prefix, what);
}

static void write_config(const char *name, char *path, size_t size)
{
    char names[256];
    snprintf(names, sizeof(names), "%s.%s", prefix, name);
    snprintf(path, size, "%s/%s.yaml", tmpdir, name);
    /* A producer queue smaller than the first commit's 16 384 block
     * records (at hash_bits 18): the state write must wait for room, not
     * fail (librdkafka's default, 100 000, is under 2^22's 262 144). */
    FILE *f = ld_test_config_begin(
        path, "  queue.buffering.max.messages: 2000\n", names);
    /* A port of its own: 9464 may be another test's. */
    fprintf(f, "log:\n  level: notice\nmetrics:\n  port: %u\n",
            (unsigned)ld_test_free_port());
    ld_test_config_demo_input(f, prefix, names);
    fprintf(f,
            "  hash_fields: [country, ad_id, device, ctx:publisher, "
            "ctx:tags]\n"
            "  crosses: [[country, ad_id]]\n"
            "  label_field: clicked\n"
            "labeling:\n"
            "  window: 20s\n"
            "  max_out_of_orderness: 1s\n"
            "trainer:\n"
            "  name: cs\n"
            "  hash_bits: %d\n"
            "  batch_size: 100\n"
            "checkpoint:\n"
            "  dir: %s/%s-models\n"
            "triggers:\n"
            "  volume_examples: %d\n",
            STATE_HASH_BITS, tmpdir, name, VOLUME_EXAMPLES);
    fclose(f);
}

/* Compacts the state topic as eagerly as the broker allows. */
static void compact_eagerly(rd_kafka_t *rk, const char *t)
{
    rd_kafka_ConfigResource_t *res =
        rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, t);
    static const char *const kv[][2] = {
        {"cleanup.policy", "compact"}, {"segment.ms", "100"},
        {"segment.bytes", "1048576"},  {"min.cleanable.dirty.ratio", "0.001"},
        {"delete.retention.ms", "0"},  {"min.compaction.lag.ms", "0"}};
    for (size_t i = 0; i < sizeof(kv) / sizeof(*kv); i++)
        LD_TEST_ASSERT(
            !rd_kafka_ConfigResource_set_config(res, kv[i][0], kv[i][1]),
            "config %s", kv[i][0]);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AlterConfigs(rk, &res, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    LD_TEST_ASSERT(ev && !rd_kafka_event_error(ev), "AlterConfigs %s: %s", t,
                   ev ? rd_kafka_event_error_string(ev) : "timeout");
    const rd_kafka_AlterConfigs_result_t *r =
        rd_kafka_event_AlterConfigs_result(ev);
    size_t n = 0;
    const rd_kafka_ConfigResource_t **rs =
        rd_kafka_AlterConfigs_result_resources(r, &n);
    LD_TEST_ASSERT(n == 1 && !rd_kafka_ConfigResource_error(rs[0]),
                   "AlterConfigs %s: %s", t,
                   n ? rd_kafka_ConfigResource_error_string(rs[0]) : "none");
    rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_ConfigResource_destroy(res);
}

/* Records on the state topic that a newer record of the same key
 * supersedes: what compaction removes. */
/* One record of the state topic: its key, place and, for a block, the
 * commit that wrote it. */
typedef struct rec {
    char key[64];
    size_t at;
    uint64_t seq; /* 0: not a block */
    int delta;    /* a delta part */
    int tomb;     /* a tombstone */
} rec_t;

typedef struct dup {
    rec_t *r;
    size_t n, cap;
} dup_t;

static void collect(const rd_kafka_message_t *m, void *opaque)
{
    dup_t *d = opaque;
    if (m->key_len == 4 && !memcmp(m->key, "roll", 4))
        return;
    if (d->n == d->cap) {
        d->cap = d->cap ? 2 * d->cap : 4096;
        d->r = realloc(d->r, d->cap * sizeof(*d->r));
        LD_TEST_ASSERT(d->r, "out of memory");
    }
    rec_t *r = &d->r[d->n];
    size_t kl = m->key_len < 63 ? m->key_len : 63;
    memcpy(r->key, m->key, kl);
    r->key[kl] = '\0';
    r->at = d->n++;
    r->seq = 0;
    r->tomb = !m->payload;
    r->delta = 0;
    Learnd__V1__StateRecord *sr =
        learnd__v1__state_record__unpack(NULL, m->len, m->payload);
    /* record_case, not the pointer: the oneof's members share storage. */
    if (sr && sr->record_case == LEARND__V1__STATE_RECORD__RECORD_BLOCK)
        r->seq = sr->block->commit_seq;
    r->delta = sr && sr->record_case == LEARND__V1__STATE_RECORD__RECORD_DELTA;
    if (sr)
        learnd__v1__state_record__free_unpacked(sr, NULL);
}

static int cmp_rec(const void *a, const void *b)
{
    const rec_t *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : (x->at > y->at) - (x->at < y->at);
}

/* What the state topic holds: deltas whose key's newest record is the
 * delta (a restart needs them) and tombstones. */
static size_t live_deltas, tombs;

/* Records a newer one of the same key supersedes (what compaction
 * removes), and into seq the oldest and newest commit among the blocks a
 * restart uses: the newest record of each block key. */
static size_t superseded(const char *t, size_t *total, uint64_t seq[2])
{
    live_deltas = tombs = 0;
    dup_t d = {0};
    ld_test_read_topic(t, 60000, collect, &d, NULL);
    qsort(d.r, d.n, sizeof(*d.r), cmp_rec);
    size_t s = 0;
    seq[0] = seq[1] = 0;
    for (size_t i = 0; i < d.n; i++) {
        int last = i + 1 == d.n || strcmp(d.r[i].key, d.r[i + 1].key) != 0;
        tombs += (size_t)d.r[i].tomb;
        live_deltas += (size_t)(last && d.r[i].delta);
        if (!last) {
            s++;
            continue;
        }
        uint64_t q = d.r[i].seq;
        if (q && (!seq[0] || q < seq[0]))
            seq[0] = q;
        if (q > seq[1])
            seq[1] = q;
    }
    *total = d.n;
    free(d.r);
    return s;
}

static int64_t committed(rd_kafka_t *rk, int64_t *total)
{
    char t[2][256];
    topic(t[0], sizeof(t[0]), "events");
    topic(t[1], sizeof(t[1]), "labels");
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(2);
    *total = 0;
    for (int k = 0; k < 2; k++) {
        int64_t lo, hi;
        LD_TEST_ASSERT(
            rd_kafka_query_watermark_offsets(rk, t[k], 0, &lo, &hi, 10000) == 0,
            "watermarks of %s", t[k]);
        *total += hi;
        rd_kafka_topic_partition_list_add(l, t[k], 0);
    }
    rd_kafka_resp_err_t e = rd_kafka_committed(rk, l, 10000);
    int64_t n = 0;
    for (int i = 0; !e && i < l->cnt; i++)
        if (l->elems[i].offset > 0)
            n += l->elems[i].offset;
    rd_kafka_topic_partition_list_destroy(l);
    return e ? -1 : n;
}

static void run_to_end(const char *name, const char *config)
{
    char log[256];
    snprintf(log, sizeof(log), "%s/%s.log", tmpdir, name);
    pid_t pid = ld_test_spawn_run(LD_LEARND_BIN, config, 1, log);
    int code = ld_test_wait_exit(pid, 180000);
    if (code != 0)
        ld_test_show_tail(log, 30);
    LD_TEST_EQ_I64("learnd exit code", 0, code);
}

static void final_model(const char *name, uint8_t sha[32], uint64_t *version)
{
    char dir[256], why[512];
    snprintf(dir, sizeof(dir), "%s/%s-models", tmpdir, name);
    ld_ckpt_t *ck = NULL;
    LD_TEST_ASSERT(
        ld_publish_store_load_latest(dir, "cs", &ck, why, sizeof(why)) == LD_OK,
        "%s: no final checkpoint: %s", name, why);
    const Learnd__V1__Checkpoint *m = ld_ckpt_message(ck);
    memcpy(sha, m->lineage->params_sha256.data, 32);
    *version = m->lineage->version;
    ld_ckpt_destroy(ck);
}

int main(void)
{
    ld_test_name(prefix, sizeof(prefix), "cs");
    ld_test_tmpdir(tmpdir, sizeof(tmpdir), "0021");
    rd_kafka_t *admin = ld_test_new(RD_KAFKA_PRODUCER, ld_test_conf_new());
    char t[256];
    topic(t, sizeof(t), "events");
    ld_test_create_topic(admin, t, 1, 30000);
    topic(t, sizeof(t), "labels");
    ld_test_create_topic(admin, t, 1, 30000);
    static const char *const runs[] = {"straight", "compacted"};
    for (int i = 0; i < 2; i++) {
        topic(t, sizeof(t), runs[i]);
        ld_test_create_outputs(admin, t, 0);
    }
    char state[256];
    topic(state, sizeof(state), "compacted.state");
    compact_eagerly(admin, state);
    char events[256], labels[256];
    topic(events, sizeof(events), "events");
    topic(labels, sizeof(labels), "labels");
    ld_demo_gen_conf_t gc = {.seed = 21,
                             .n_events = EVENTS,
                             .drift_at = EVENTS / 2,
                             .start_time_ms = 1767225600000,
                             .step_ms = 5,
                             .label_delay_ms = 5000};
    ld_test_produce_demo(admin, &gc, events, labels, 1, 0);

    char cfg[2][256];
    for (int i = 0; i < 2; i++)
        write_config(runs[i], cfg[i], sizeof(cfg[i]));
    run_to_end("straight", cfg[0]);

    /* The second run stops at 60 % of its input, after many commit points
     * that each rewrote the blocks they changed. */
    char group[300];
    snprintf(group, sizeof(group), "%s.compacted.group", prefix);
    rd_kafka_conf_t *c = ld_test_conf_new();
    ld_test_conf_set(c, "group.id", group);
    rd_kafka_t *offsets = ld_test_new(RD_KAFKA_CONSUMER, c);
    pid_t pid = ld_test_spawn_run(LD_LEARND_BIN, cfg[1], 1, NULL);
    int64_t deadline = ld_test_deadline(120000), done = -1, total = 0;
    while (ld_test_remaining(deadline)) {
        done = committed(offsets, &total);
        if (total && done >= total * 6 / 10)
            break;
        int st;
        LD_TEST_ASSERT(waitpid(pid, &st, WNOHANG) != pid,
                       "learnd ended before its kill point");
        usleep(10000);
    }
    LD_TEST_ASSERT(total && done >= total * 6 / 10,
                   "the committed input did not reach 60 %%");
    /* SIGTERM, not SIGKILL: a killed producer's open transaction holds
     * the last stable offset, below which alone the cleaner works, until
     * the transaction times out (0004 covers kills). */
    kill(pid, SIGTERM);
    LD_TEST_EQ_I64("exit code at SIGTERM", 0, ld_test_wait_exit(pid, 60000));
    rd_kafka_destroy(offsets);

    /* Wait for the broker's cleaner (it wakes every log.cleaner.backoff.ms,
     * 15 s by default) to remove at least half of what is superseded. */
    size_t n0 = 0, n = 0;
    uint64_t seq[2];
    size_t s0 = superseded(state, &n0, seq), s = s0;
    ld_test_say("state topic: %zu records, %zu superseded, %zu live deltas, "
                "%zu tombstones",
                n0, s0, live_deltas, tombs);
    LD_TEST_ASSERT(s0 > 0, "no commit point rewrote a block");
    /* Commit points wrote the rows they touched as deltas (format 3). */
    LD_TEST_ASSERT(live_deltas > 0, "no delta on the state topic");
#if STATE_HASH_BITS < 14
    /* 64 blocks: the sweep went round, and deltas no block needs any more
     * were tombstoned. */
    LD_TEST_ASSERT(tombs > 0, "no delta was retired");
#endif
    /* Only closed segments are compacted, and a segment past segment.ms
     * closes when the next record arrives: a record of no model's keys
     * (restarts ignore it) closes the daemon's. */
    deadline = ld_test_deadline(120000);
    while (ld_test_remaining(deadline) && s * 2 > s0) {
        usleep(500000); /* the cleaner runs on its own clock */
        ld_test_produce(admin, state, 0, "roll", "x", 1);
        s = superseded(state, &n, seq);
    }
    ld_test_say("after compaction: %zu records, %zu superseded, %zu live "
                "deltas, %zu tombstones",
                n, s, live_deltas, tombs);
    LD_TEST_ASSERT(s * 2 <= s0, "the state topic was not compacted");

    /* Commit points wrote only what changed: blocks of older commits are
     * still the newest of their keys, next to those of the last one (a
     * whole-state write would leave every key's newest at the last). */
    ld_test_say("blocks kept from commits %llu to %llu",
                (unsigned long long)seq[0], (unsigned long long)seq[1]);
    LD_TEST_ASSERT(seq[0] < seq[1], "every commit point rewrote every block");

    run_to_end("compacted", cfg[1]);
    char log[256];
    snprintf(log, sizeof(log), "%s/compacted.log", tmpdir);
    LD_TEST_ASSERT(ld_test_file_has(log, "resumed from committed state"),
                   "the restart did not resume from the state topic");

    uint8_t sha_a[32], sha_b[32];
    uint64_t ver_a, ver_b;
    final_model("straight", sha_a, &ver_a);
    final_model("compacted", sha_b, &ver_b);
    LD_TEST_EQ_I64("final version", (int64_t)ver_a, (int64_t)ver_b);
    LD_TEST_ASSERT(memcmp(sha_a, sha_b, 32) == 0,
                   "parameters differ after compaction and a restart");
    rd_kafka_destroy(admin);
    ld_test_rm_rf(tmpdir);
    ld_test_say("0021 passed");
    return 0;
}
