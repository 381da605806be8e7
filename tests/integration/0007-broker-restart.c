/* SPDX-License-Identifier: Apache-2.0 */
/* Broker restart mid-run: the broker is killed with SIGKILL while the daemon
 * runs and started again on the same data and ports; the daemon rides the
 * outage out and ends as a run that saw no outage did: the same parameters,
 * audit records, publications and dead letters, none lost or doubled.
 *
 * Runs against a broker of its own (PRIVATE_BROKER in CMakeLists.txt:
 * tests/kafka/stop.sh --kill and start.sh --again on LD_TEST_BROKER_DIR),
 * so that the outage does not hit tests running in parallel.
 *
 * Why the daemon must exit 0, rather than exit 1 and be restarted: a
 * broker that is away for seconds is a transient condition for librdkafka,
 * not an error it hands the application. While it is down, produce
 * requests, AddPartitionsToTxn, TxnOffsetCommit and EndTxn are retried
 * (the idempotent producer keeps its sequence numbers, and the restarted
 * broker rebuilds producer and transaction state from its logs), the
 * consumer reconnects, and its static group membership outlives a
 * coordinator reload. The run loop simply blocks in the commit point that
 * falls into the outage until the broker answers. None of that is fatal or
 * abortable while the outage (held down, then a restart of ~12 s, since a
 * crashed single KRaft node waits out its own 9 s broker session, then up
 * to reconnect.backoff.max.ms = 10 s before librdkafka tries again) stays
 * within the daemon's checkpoint flush and commit (60 s) and
 * transaction.timeout.ms (60 s) timeouts. The commit protocol's abort and exit
 * 1 is for a commit point that does fail, so that a supervisor's restart
 * resumes from committed state (0004 covers resuming). Taking a short broker
 * restart for that would throw away the joiner's window and the prefetch
 * every time a broker is rolled. So: exit 0, no aborted commit point.
 *
 * Found so far: a commit point blocked through the outage made every
 * partition look idle, and the idle advance turned the backlog late (exit
 * 0, three quarters of the examples lost); a publication caught in the
 * outage timed out its 30 s flush and crashed on freed delivery offsets. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon/demo.h"
#include "testutil.h"
#include "publish/publish.h"
#include "trainer/checkpoint.h"

#define PARTS        2
#define EVENTS       200000
#define POISON_EVERY 10000
#define MODEL        "br"
/* Commit points the daemon makes before the broker dies: mid-stream, with
 * resume state and publications behind it. */
#define KILL_AFTER_COMMITS 3
/* How long the broker stays dead before it is started again (its restart
 * adds ~12 s): a bounded wait on purpose, the outage is the point. */
#define DOWN_MS 3000

static char prefix[128];
static char tmpdir[64];
static pid_t running = -1; /* a learnd to kill if the test fails */

static void kill_running(void)
{
    if (running > 0) {
        kill(running, SIGKILL);
        waitpid(running, NULL, 0);
    }
}

static void topic(char *buf, size_t size, const char *what)
{
    snprintf(buf, size, "%s.%s", prefix, what);
}

/* Produces the demo stream plus poison records; returns the poison count. */
static int produce_input(rd_kafka_t *rk)
{
    char events[256], labels[256];
    topic(events, sizeof(events), "events");
    topic(labels, sizeof(labels), "labels");
    ld_demo_gen_conf_t gc = {.seed = 7,
                             .n_events = EVENTS,
                             .drift_at = EVENTS / 2,
                             .start_time_ms = 1767225600000,
                             .step_ms = 5,
                             .label_delay_ms = 5000};
    return ld_test_produce_demo(rk, &gc, events, labels, PARTS, POISON_EVERY);
}

/* Writes the config of run `name` into path. The consumer prefetches at
 * most 4 MiB, so that it is still fetching when the broker dies rather
 * than holding the whole input already (the kafka: map is outside the
 * config hash: both runs train the same model). */
static void write_config(const char *name, uint16_t port, char *path,
                         size_t size)
{
    char names[256];
    snprintf(names, sizeof(names), "%s.%s", prefix, name);
    snprintf(path, size, "%s/%s.yaml", tmpdir, name);
    FILE *f = ld_test_config_begin(path, "  queued.max.messages.kbytes: 4096\n",
                                   names);
    fprintf(f,
            "log:\n"
            "  level: notice\n"
            "metrics:\n"
            "  port: %u\n",
            (unsigned)port);
    ld_test_config_demo_input(f, prefix, names);
    fprintf(f,
            "  hash_fields: [country, ad_id, device, ctx:publisher, "
            "ctx:tags]\n"
            "  crosses: [[country, ad_id]]\n"
            "  label_field: clicked\n"
            "labeling:\n"
            "  output_topic: %s.%s.audit\n"
            "  window: 20s\n"
            "  max_out_of_orderness: 1s\n"
            "trainer:\n"
            "  name: " MODEL "\n"
            "  hash_bits: 16\n"
            "  batch_size: 100\n"
            "checkpoint:\n"
            "  dir: %s/%s-models\n"
            "  keep: 50\n"
            "triggers:\n"
            "  volume_examples: 20000\n",
            prefix, name, tmpdir, name);
    fclose(f);
}

static pid_t spawn(const char *config)
{
    running = ld_test_spawn_run(LD_LEARND_BIN, config, 1, NULL);
    return running;
}

#define COMMITS "learnd_transactions_total{result=\"commit\"}"
#define ABORTS  "learnd_transactions_total{result=\"abort\"}"

/* Runs tests/kafka/<script> with args on this test's broker; fails the test
 * when it fails. */
static void broker_ctl(const char *script, const char *flag)
{
    const char *dir = getenv("LD_TEST_BROKER_DIR");
    LD_TEST_ASSERT(dir && *dir, "LD_TEST_BROKER_DIR is not set: run through "
                                "ctest (tests/kafka/with-broker.sh)");
    char cmd[1024];
    /* with-broker.sh exported the address, which start.sh would take for
     * an external broker */
    snprintf(cmd, sizeof(cmd),
             "env -u LD_TEST_BOOTSTRAP %s/tests/kafka/%s %s "
             "'%s' >&2",
             LD_SOURCE_DIR, script, flag, dir);
    int rc = system(cmd);
    LD_TEST_ASSERT(rc == 0, "%s %s failed (status %d)", script, flag, rc);
}

/* Waits for pid to exit while watching its commit points; returns its exit
 * code. *commits is the last commit count seen. */
static int await_exit(pid_t pid, uint16_t port, int timeout_ms, double *commits,
                      double *aborts)
{
    int64_t deadline = ld_test_deadline(timeout_ms);
    for (;;) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            running = -1;
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        LD_TEST_ASSERT(ld_test_remaining(deadline),
                       "learnd did not exit within %d ms", timeout_ms);
        double c = ld_test_metric(port, COMMITS),
               a = ld_test_metric(port, ABORTS);
        if (c > *commits)
            *commits = c;
        if (a > *aborts)
            *aborts = a;
        usleep(20000); /* a child's exit cannot be awaited with a timeout */
    }
}

/* The run without an outage. */
static void run_straight(void)
{
    char config[256];
    uint16_t port = ld_test_free_port();
    write_config("straight", port, config, sizeof(config));
    double commits = 0, aborts = 0;
    int code = await_exit(spawn(config), port, 180000, &commits, &aborts);
    LD_TEST_EQ_I64("straight: learnd exit code", 0, code);
}

/* The run whose broker dies under it. */
static void run_outage(void)
{
    char config[256];
    uint16_t port = ld_test_free_port();
    write_config("outage", port, config, sizeof(config));
    pid_t pid = spawn(config);
    int64_t deadline = ld_test_deadline(60000);
    double commits = -1;
    while (ld_test_remaining(deadline)) {
        commits = ld_test_metric(port, COMMITS);
        if (commits >= KILL_AFTER_COMMITS)
            break;
        int st;
        LD_TEST_ASSERT(waitpid(pid, &st, WNOHANG) == 0,
                       "learnd exited (status %d) before %d commit points: "
                       "too little input for an outage mid-run",
                       st, KILL_AFTER_COMMITS);
        usleep(10000); /* /metrics is polled: nothing to wait on */
    }
    LD_TEST_ASSERT(commits >= KILL_AFTER_COMMITS,
                   "no %d commit points within 60 s (saw %.0f)",
                   KILL_AFTER_COMMITS, commits);
    broker_ctl("stop.sh", "--kill");
    int64_t t_kill = ld_test_deadline(0);
    double at_kill = ld_test_metric(port, COMMITS);
    ld_test_say("broker killed after %.0f commit points", at_kill);
    /* Down for DOWN_MS, then its restart: the daemon must neither exit nor
     * commit meanwhile. */
    int64_t up_at = ld_test_deadline(DOWN_MS);
    while (ld_test_remaining(up_at)) {
        int st;
        LD_TEST_ASSERT(waitpid(pid, &st, WNOHANG) == 0,
                       "learnd exited (status %d) while the broker was down",
                       st);
        usleep(50000); /* the outage is a stretch of time, not an event */
    }
    double during = ld_test_metric(port, COMMITS);
    LD_TEST_ASSERT(during == at_kill,
                   "%.0f commit points while the broker was dead (%.0f at "
                   "the kill)",
                   during, at_kill);
    broker_ctl("start.sh", "--again");
    int64_t t_up = ld_test_deadline(0);
    ld_test_say("broker up again after %lld ms down; learnd still running",
                (long long)(t_up - t_kill));
    double aborts = 0;
    commits = during;
    int code = await_exit(pid, port, 180000, &commits, &aborts);
    ld_test_say("learnd exited %d, %.0f commit points after the restart, "
                "%.0f aborted",
                code, commits - during, aborts);
    LD_TEST_EQ_I64("learnd exit code after the broker restart", 0, code);
    LD_TEST_ASSERT(aborts <= 0, "%.0f commit points aborted", aborts);
    LD_TEST_ASSERT(commits > during,
                   "no commit point after the broker restart: the outage "
                   "did not fall mid-run");
}

/* One record read back. */
typedef struct rec {
    char *key;
    uint8_t *val;
    size_t len;
} rec_t;

typedef struct recs {
    rec_t *v;
    size_t n, cap;
} recs_t;

static void recs_free(recs_t *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->v[i].key);
        free(r->v[i].val);
    }
    free(r->v);
    *r = (recs_t){0};
}

/* Keeps a copy of record m in the recs_t opaque (ld_test_read_topic
 * callback; the caller frees the copies with recs_free). */
static void keep_record(const rd_kafka_message_t *m, void *opaque)
{
    recs_t *keep = opaque;
    if (keep->n == keep->cap) {
        keep->cap = keep->cap ? keep->cap * 2 : 64;
        keep->v = realloc(keep->v, keep->cap * sizeof(*keep->v));
        LD_TEST_ASSERT(keep->v, "out of memory");
    }
    rec_t *r = &keep->v[keep->n++];
    r->key = strndup(m->key ? m->key : "", m->key_len);
    r->val = malloc(m->len ? m->len : 1);
    LD_TEST_ASSERT(r->key && r->val, "out of memory");
    memcpy(r->val, m->payload, m->len);
    r->len = m->len;
}

/* What a run published, read back from its checkpoint topic: one manifest
 * per version 1..n, in order, each reassembled from its chunks (a reader
 * never sees half a checkpoint); params[v - 1] is version v's parameter
 * hash. Returns n. */
static uint64_t published(const char *run, uint8_t params[][32], size_t max)
{
    char t[256], what[64];
    snprintf(what, sizeof(what), "%s.ckpt", run);
    topic(t, sizeof(t), what);
    recs_t recs = {0};
    ld_test_read_topic(t, 60000, keep_record, &recs, NULL);
    uint64_t n = 0;
    for (size_t i = 0; i < recs.n; i++) {
        if (strcmp(recs.v[i].key, MODEL) != 0)
            continue; /* a chunk: keyed <model>/<version>/<index> */
        Learnd__V1__CheckpointManifest *m =
            learnd__v1__checkpoint_manifest__unpack(NULL, recs.v[i].len,
                                                    recs.v[i].val);
        LD_TEST_ASSERT(m, "%s: manifest %zu does not decode", run, i);
        LD_TEST_EQ_I64("manifest version (none twice, none skipped)",
                       (int64_t)n + 1, (int64_t)m->version);
        LD_TEST_ASSERT(n < max, "more than %zu versions", max);
        LD_TEST_ASSERT(m->params_sha256.len == 32, "params_sha256");
        memcpy(params[n], m->params_sha256.data, 32);
        /* Its chunks, before it on the same topic, each once. */
        ld_buf_t *chunks = calloc(recs.n, sizeof(*chunks));
        LD_TEST_ASSERT(chunks, "out of memory");
        uint32_t got = 0;
        char chunk_key[128];
        int kl = snprintf(chunk_key, sizeof(chunk_key), MODEL "/%llu/",
                          (unsigned long long)m->version);
        for (size_t j = 0; j < recs.n; j++) {
            if (strncmp(recs.v[j].key, chunk_key, (size_t)kl) != 0)
                continue;
            LD_TEST_ASSERT(j < i,
                           "%s: a chunk of version %llu after its "
                           "manifest",
                           run, (unsigned long long)m->version);
            chunks[got++] =
                (ld_buf_t){.data = recs.v[j].val, .len = recs.v[j].len};
        }
        LD_TEST_EQ_I64("chunks of a version", m->chunk_count, got);
        ld_buf_t whole = {0};
        char why[512];
        LD_TEST_ASSERT(ld_publish_assemble(recs.v[i].val, recs.v[i].len, chunks,
                                           got, &whole, why,
                                           sizeof(why)) == LD_OK,
                       "%s: version %llu does not reassemble: %s", run,
                       (unsigned long long)m->version, why);
        free(whole.data);
        free(chunks);
        learnd__v1__checkpoint_manifest__free_unpacked(m, NULL);
        n++;
    }
    recs_free(&recs);
    return n;
}

/* Collects the idempotency keys of a run's trigger events into keys. */
static int64_t trigger_keys(const char *run, char *keys, size_t size)
{
    char t[256], what[64];
    snprintf(what, sizeof(what), "%s.triggers", run);
    topic(t, sizeof(t), what);
    return ld_test_trigger_keys(t, 60000, keys, size);
}

/* The group's committed offsets equal the end of every input partition:
 * the daemon finished the input and committed it. */
static void assert_input_committed(const char *run)
{
    char group[256], what[64];
    snprintf(what, sizeof(what), "%s.group", run);
    topic(group, sizeof(group), what);
    rd_kafka_conf_t *conf = ld_test_conf_new();
    ld_test_conf_set(conf, "group.id", group);
    rd_kafka_t *rk = ld_test_new(RD_KAFKA_CONSUMER, conf);
    rd_kafka_topic_partition_list_t *l =
        rd_kafka_topic_partition_list_new(2 * PARTS);
    static const char *const inputs[] = {"events", "labels"};
    for (int k = 0; k < 2; k++) {
        char t[256];
        topic(t, sizeof(t), inputs[k]);
        for (int32_t p = 0; p < PARTS; p++)
            rd_kafka_topic_partition_list_add(l, t, p);
    }
    rd_kafka_resp_err_t e = rd_kafka_committed(rk, l, 30000);
    LD_TEST_ASSERT(!e, "committed offsets of %s: %s", group,
                   rd_kafka_err2str(e));
    for (int i = 0; i < l->cnt; i++) {
        int64_t lo, hi;
        e = rd_kafka_query_watermark_offsets(
            rk, l->elems[i].topic, l->elems[i].partition, &lo, &hi, 30000);
        LD_TEST_ASSERT(!e, "watermarks: %s", rd_kafka_err2str(e));
        LD_TEST_ASSERT(l->elems[i].offset == hi,
                       "%s: %s [%d] committed at %lld, ends at %lld", run,
                       l->elems[i].topic, (int)l->elems[i].partition,
                       (long long)l->elems[i].offset, (long long)hi);
    }
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_destroy(rk);
}

int main(void)
{
    atexit(kill_running);
    ld_test_name(prefix, sizeof(prefix), "br");
    ld_test_tmpdir(tmpdir, sizeof(tmpdir), "0007");
    rd_kafka_t *admin = ld_test_new(RD_KAFKA_PRODUCER, ld_test_conf_new());
    static const char *const runs[] = {"straight", "outage"};
    char t[256];
    topic(t, sizeof(t), "events");
    ld_test_create_topic(admin, t, PARTS, 30000);
    topic(t, sizeof(t), "labels");
    ld_test_create_topic(admin, t, PARTS, 30000);
    for (int i = 0; i < 2; i++) {
        topic(t, sizeof(t), runs[i]);
        ld_test_create_outputs(admin, t, 1);
    }
    int poison = produce_input(admin);
    /* The admin client must not see the outage: it is done. */
    rd_kafka_destroy(admin);
    ld_test_say("produced %d events, their labels and %d poison records",
                EVENTS, poison);

    run_straight();
    ld_test_say("straight run done");
    run_outage();

    /* What each run trained on: every labelled example once, in order. */
    int64_t audit_n[2];
    uint64_t audit_h[2];
    for (int i = 0; i < 2; i++) {
        char what[64];
        snprintf(what, sizeof(what), "%s.audit", runs[i]);
        topic(t, sizeof(t), what);
        audit_n[i] = ld_test_read_topic(t, 60000, NULL, NULL, &audit_h[i]);
    }
    LD_TEST_ASSERT(audit_n[0] > EVENTS / 2, "audit records: %lld",
                   (long long)audit_n[0]);
    LD_TEST_EQ_I64("audit records after the broker restart", audit_n[0],
                   audit_n[1]);
    LD_TEST_ASSERT(audit_h[0] == audit_h[1],
                   "audit records differ after the broker restart");

    /* Every input record committed, every poison record dead-lettered
     * exactly once. */
    for (int i = 0; i < 2; i++) {
        assert_input_committed(runs[i]);
        char what[64];
        snprintf(what, sizeof(what), "%s.dlq", runs[i]);
        topic(t, sizeof(t), what);
        int64_t dl = ld_test_read_topic(t, 60000, NULL, NULL, NULL);
        LD_TEST_ASSERT(dl == poison, "%s: %lld dead letters, want %d", runs[i],
                       (long long)dl, poison);
    }

    /* The same versions, each once, with the same parameters. */
    static uint8_t params[2][64][32];
    uint64_t versions[2];
    for (int i = 0; i < 2; i++)
        versions[i] = published(runs[i], params[i], 64);
    LD_TEST_EQ_I64("versions published", (int64_t)versions[0],
                   (int64_t)versions[1]);
    LD_TEST_ASSERT(versions[0] >= 2,
                   "expected trigger publications before the final "
                   "checkpoint, got %llu versions",
                   (unsigned long long)versions[0]);
    for (uint64_t v = 0; v < versions[0]; v++)
        LD_TEST_ASSERT(memcmp(params[0][v], params[1][v], 32) == 0,
                       "version %llu has other parameters after the broker "
                       "restart",
                       (unsigned long long)v + 1);
    /* The local model store agrees with the topic. */
    for (int i = 0; i < 2; i++) {
        char dir[256], why[512];
        snprintf(dir, sizeof(dir), "%s/%s-models", tmpdir, runs[i]);
        ld_ckpt_t *ck = NULL;
        LD_TEST_ASSERT(ld_publish_store_load_latest(dir, MODEL, &ck, why,
                                                    sizeof(why)) == LD_OK,
                       "%s: no final checkpoint: %s", runs[i], why);
        const Learnd__V1__Checkpoint *m = ld_ckpt_message(ck);
        LD_TEST_ASSERT(m->lineage && m->lineage->params_sha256.len == 32,
                       "lineage");
        LD_TEST_EQ_I64("stored final version", (int64_t)versions[0],
                       (int64_t)m->lineage->version);
        LD_TEST_ASSERT(memcmp(m->lineage->params_sha256.data,
                              params[0][versions[0] - 1], 32) == 0,
                       "%s: stored final parameters differ", runs[i]);
        ld_ckpt_destroy(ck);
    }

    static char keys[2][1 << 16];
    for (int i = 0; i < 2; i++) {
        int64_t n = trigger_keys(runs[i], keys[i], sizeof(keys[i]));
        /* one per version, the final checkpoint of --until-caught-up
         * (end_of_input) included */
        LD_TEST_EQ_I64("trigger events", (int64_t)versions[0], n);
    }
    LD_TEST_ASSERT(strcmp(keys[0], keys[1]) == 0,
                   "trigger idempotency keys differ:\n%s---\n%s", keys[0],
                   keys[1]);
    ld_test_say("identical after the broker restart: %llu versions, %d dead "
                "letters, %lld audit records",
                (unsigned long long)versions[0], poison, (long long)audit_n[0]);

    ld_test_rm_rf(tmpdir);
    printf("0007-broker-restart: PASS\n");
    return 0;
}
