/* SPDX-License-Identifier: Apache-2.0 */
/* Exactly-once against the real broker: a daemon killed with SIGKILL and
 * restarted several times ends with the same parameters, bit for bit, the
 * same publications and the same dead letters as one that ran through. */
#define _GNU_SOURCE /* memmem */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon/demo.h"
#include "testutil.h"
#include "trainer/checkpoint.h"

#define PARTS        2
#define EVENTS       150000
#define POISON_EVERY 10000

static char prefix[128];
static char tmpdir[64];

static uint32_t fnv1a(const char *s)
{
    uint32_t h = 2166136261u;
    while (*s)
        h = (h ^ (uint8_t)*s++) * 16777619u;
    return h;
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
    ld_demo_gen_conf_t gc = {.seed = 11,
                             .n_events = EVENTS,
                             .drift_at = EVENTS / 2,
                             .start_time_ms = 1767225600000,
                             .step_ms = 5,
                             .label_delay_ms = 5000};
    ld_demo_gen_t *g = ld_demo_gen_new(&gc);
    LD_TEST_ASSERT(g, "generator");
    ld_demo_record_t r;
    int poison = 0;
    while (ld_demo_gen_next(g, &r) == 1) {
        int32_t part = (int32_t)(fnv1a(r.key) % PARTS);
        rd_kafka_resp_err_t e;
        while ((e = rd_kafka_producev(
                    rk, RD_KAFKA_V_TOPIC(r.is_label ? labels : events),
                    RD_KAFKA_V_PARTITION(part),
                    RD_KAFKA_V_KEY(r.key, strlen(r.key)),
                    RD_KAFKA_V_VALUE((void *)(uintptr_t)r.value, r.len),
                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                    RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(rk, 100);
        LD_TEST_ASSERT(!e, "produce: %s", rd_kafka_err2str(e));
        if (!r.is_label && r.index % POISON_EVERY == 0) {
            /* An Avro string whose length runs past the end. */
            static const char bad[] = "\x7f\x01";
            e = rd_kafka_producev(
                rk, RD_KAFKA_V_TOPIC(events), RD_KAFKA_V_PARTITION(part),
                RD_KAFKA_V_KEY("poison", 6), RD_KAFKA_V_VALUE((void *)bad, 2),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
            LD_TEST_ASSERT(!e, "produce poison");
            poison++;
        }
    }
    ld_demo_gen_destroy(g);
    LD_TEST_ASSERT(rd_kafka_flush(rk, 60000) == 0, "flush");
    return poison;
}

static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    LD_TEST_ASSERT(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0, "bind");
    socklen_t len = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

/* Writes the config of run `name` and returns its path. */
static void write_config(const char *name, uint16_t port, char *path,
                         size_t size)
{
    char dense[256] = "";
    for (int i = 0; i < 20; i++) {
        char f[8];
        snprintf(f, sizeof(f), "%sf%d", i ? ", " : "", i);
        strcat(dense, f);
    }
    snprintf(path, size, "%s/%s.yaml", tmpdir, name);
    FILE *f = fopen(path, "w");
    LD_TEST_ASSERT(f, "config %s", path);
    fprintf(f,
            "kafka:\n"
            "  bootstrap.servers: %s\n"
            "daemon:\n"
            "  commit_interval: 200ms\n"
            "  transactional_id: %s.%s.txn\n"
            "  state_topic: %s.%s.state\n"
            "  checkpoint_topic: %s.%s.ckpt\n"
            "  trigger_topic: %s.%s.triggers\n"
            "log:\n"
            "  level: notice\n"
            "metrics:\n"
            "  port: %u\n"
            "pipeline:\n"
            "  events_topic: %s.events\n"
            "  labels_topic: %s.labels\n"
            "  dlq_topic: %s.%s.dlq\n"
            "  group_id: %s.%s.group\n"
            "  format: avro\n"
            "  event_schema: %s/schemas/event.avsc\n"
            "  label_schema: %s/schemas/label.avsc\n"
            "  key_field: event_id\n"
            "  event_time_field: event_time\n"
            "  label_time_field: label_time\n"
            "  dense_fields: [%s]\n"
            "  hash_fields: [country, ad_id, device, ctx:publisher, "
            "ctx:tags]\n"
            "  crosses: [[country, ad_id]]\n"
            "  label_field: clicked\n"
            "labeling:\n"
            "  output_topic: %s.%s.audit\n"
            "  window: 20s\n"
            "  max_out_of_orderness: 1s\n"
            "trainer:\n"
            "  name: eo\n"
            "  hash_bits: 16\n"
            "  batch_size: 100\n"
            "checkpoint:\n"
            "  dir: %s/%s-models\n"
            "  keep: 50\n"
            "triggers:\n"
            "  volume_examples: 20000\n",
            ld_test_bootstrap(), prefix, name, prefix, name, prefix, name,
            prefix, name, (unsigned)port, prefix, prefix, prefix, name, prefix,
            name, LD_SOURCE_DIR, LD_SOURCE_DIR, dense, prefix, name, tmpdir,
            name);
    fclose(f);
}

static pid_t spawn(const char *config)
{
    char *argv[] = {LD_LEARND_BIN,       "run", "-c", (char *)config,
                    "--until-caught-up", NULL};
    return ld_test_spawn(argv, NULL);
}

static int wait_exit(pid_t pid, int timeout_ms)
{
    int code = ld_test_wait_exit(pid, timeout_ms);
    LD_TEST_ASSERT(code >= 0, "learnd did not exit in %d ms", timeout_ms);
    return code;
}

/* Value of a metric line (exact series) on /metrics, or -1. */
static double metric(uint16_t port, const char *series)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a))) {
        close(fd);
        return -1;
    }
    const char req[] = "GET /metrics HTTP/1.0\r\n\r\n";
    if (write(fd, req, sizeof(req) - 1) < 0) {
        close(fd);
        return -1;
    }
    static char buf[1 << 16];
    size_t len = 0;
    ssize_t n;
    while ((n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
        len += (size_t)n;
    close(fd);
    buf[len] = '\0';
    char want[256];
    snprintf(want, sizeof(want), "\n%s ", series);
    const char *p = strstr(buf, want);
    return p ? strtod(p + strlen(want), NULL) : -1;
}

/* Runs to the end; kills = SIGKILLs at commit points along the way. */
static void run(const char *name, int kills)
{
    uint16_t port = free_port();
    char config[256];
    write_config(name, port, config, sizeof(config));
    for (int i = 0; i < kills; i++) {
        pid_t pid = spawn(config);
        /* Kill once this incarnation has committed 1, 2 or 3 times:
         * mid-stream, with state behind it and work in flight (sometimes
         * in the middle of a publication). */
        double want = 1 + i % 3;
        if (getenv("LD_TEST_KILL_AFTER")) /* to reproduce a failure */
            want = atof(getenv("LD_TEST_KILL_AFTER"));
        int64_t deadline = ld_test_deadline(60000);
        double commits = -1;
        int exited = 0;
        while (ld_test_remaining(deadline)) {
            commits =
                metric(port, "learnd_transactions_total{result=\"commit\"}");
            if (commits >= want)
                break;
            int st;
            if (waitpid(pid, &st, WNOHANG) == pid) {
                LD_TEST_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0,
                               "%s: incarnation %d failed (status %d)", name,
                               i + 1, st);
                exited = 1;
                break;
            }
            usleep(10000);
        }
        if (exited) {
            ld_test_say("%s: incarnation %d finished before its kill", name,
                        i + 1);
            return;
        }
        LD_TEST_ASSERT(commits >= want, "%s: no commits to kill after", name);
        kill(pid, SIGKILL);
        int st;
        waitpid(pid, &st, 0);
        ld_test_say("%s: killed incarnation %d after %.0f commits", name, i + 1,
                    commits);
    }
    pid_t pid = spawn(config);
    int code = wait_exit(pid, 180000);
    LD_TEST_EQ_I64("learnd exit code", 0, code);
}

/* Records on a topic (only those keyed only_key, unless NULL),
 * read_committed. Also collects the idempotency keys
 * of trigger events into keys, and an FNV-1a hash of every value in order
 * into *hash (each may be NULL). */
static int64_t count_topic(const char *t, const char *only_key,
                           int want_idempotency_keys, char *keys, size_t ksize,
                           uint64_t *hash)
{
    uint64_t h = 1469598103934665603u;
    ld_test_await_stable(t, 0, 30000);
    rd_kafka_conf_t *conf = ld_test_conf_new();
    ld_test_conf_set(conf, "isolation.level", "read_committed");
    ld_test_conf_set(conf, "enable.partition.eof", "true");
    ld_test_conf_set(conf, "group.id", "0004-reader");
    rd_kafka_t *rk = ld_test_new(RD_KAFKA_CONSUMER, conf);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, t, 0)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    int64_t n = 0;
    size_t klen = 0;
    int64_t deadline = ld_test_deadline(30000);
    for (;;) {
        LD_TEST_ASSERT(ld_test_remaining(deadline), "read %s", t);
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            rd_kafka_message_destroy(m);
            break;
        }
        LD_TEST_ASSERT(!m->err, "read %s: %s", t, rd_kafka_message_errstr(m));
        if (only_key && (m->key_len != strlen(only_key) ||
                         memcmp(m->key, only_key, m->key_len) != 0)) {
            rd_kafka_message_destroy(m);
            continue;
        }
        n++;
        for (size_t i = 0; i < m->len; i++)
            h = (h ^ ((const uint8_t *)m->payload)[i]) * 1099511628211u;
        if (want_idempotency_keys && keys) {
            const char *p =
                memmem(m->payload, m->len, "\"idempotency_key\":\"", 19);
            LD_TEST_ASSERT(p, "trigger event without idempotency_key");
            p += 19;
            const char *end =
                memchr(p, '"', m->len - (size_t)(p - (char *)m->payload));
            LD_TEST_ASSERT(end, "unterminated idempotency_key");
            klen += (size_t)snprintf(keys + klen, ksize - klen, "%.*s\n",
                                     (int)(end - p), p);
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    if (hash)
        *hash = h;
    return n;
}

static void final_model(const char *name, uint8_t sha[32], uint64_t *version)
{
    char dir[256], why[512];
    snprintf(dir, sizeof(dir), "%s/%s-models", tmpdir, name);
    ld_ckpt_t *ck = NULL;
    LD_TEST_ASSERT(
        ld_ckpt_store_load_latest(dir, "eo", &ck, why, sizeof(why)) == LD_OK,
        "%s: no final checkpoint: %s", name, why);
    const Learnd__V1__Checkpoint *m = ld_ckpt_message(ck);
    LD_TEST_ASSERT(m->lineage && m->lineage->params_sha256.len == 32,
                   "lineage");
    memcpy(sha, m->lineage->params_sha256.data, 32);
    *version = m->lineage->version;
    ld_ckpt_destroy(ck);
}

/* Runs `learnd replay -c <name>.yaml --checkpoint V --verify`, output in
 * out (stdout and stderr); returns its exit code. */
static int replay(const char *config, uint64_t version, const char *out)
{
    char v[32];
    snprintf(v, sizeof(v), "%llu", (unsigned long long)version);
    char *argv[] = {LD_LEARND_BIN,  "replay", "-c",       (char *)config,
                    "--checkpoint", v,        "--verify", NULL};
    return wait_exit(ld_test_spawn(argv, out), 120000);
}

int main(void)
{
    ld_test_name(prefix, sizeof(prefix), "eo");
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/ld-0004-XXXXXX");
    LD_TEST_ASSERT(mkdtemp(tmpdir), "mkdtemp");
    rd_kafka_t *admin = ld_test_new(RD_KAFKA_PRODUCER, ld_test_conf_new());
    static const char *const runs[] = {"straight", "killed"};
    char t[256];
    topic(t, sizeof(t), "events");
    ld_test_create_topic(admin, t, PARTS, 30000);
    topic(t, sizeof(t), "labels");
    ld_test_create_topic(admin, t, PARTS, 30000);
    for (int i = 0; i < 2; i++) {
        static const char *const outs[] = {"state", "ckpt", "triggers", "dlq"};
        for (int k = 0; k < 4; k++) {
            char what[64];
            snprintf(what, sizeof(what), "%s.%s", runs[i], outs[k]);
            topic(t, sizeof(t), what);
            ld_test_create_topic(admin, t, 1, 30000);
        }
    }
    int poison = produce_input(admin);
    ld_test_say("produced %d events, their labels and %d poison records",
                EVENTS, poison);

    run("straight", 0);
    run("killed", 5);

    /* First what the model trained on (the audit topic: every labelled
     * example once, byte for byte), then what it became. */
    int64_t audit_n[2];
    uint64_t audit_h[2];
    for (int i = 0; i < 2; i++) {
        char what[64];
        snprintf(what, sizeof(what), "%s.audit", runs[i]);
        topic(t, sizeof(t), what);
        audit_n[i] = count_topic(t, NULL, 0, NULL, 0, &audit_h[i]);
    }
    LD_TEST_ASSERT(audit_n[0] > EVENTS / 2, "audit records: %lld",
                   (long long)audit_n[0]);
    LD_TEST_EQ_I64("audit records", audit_n[0], audit_n[1]);
    LD_TEST_ASSERT(audit_h[0] == audit_h[1], "audit records differ");
    uint8_t sha_a[32], sha_b[32];
    uint64_t ver_a, ver_b;
    final_model("straight", sha_a, &ver_a);
    final_model("killed", sha_b, &ver_b);
    LD_TEST_EQ_I64("final version", (int64_t)ver_a, (int64_t)ver_b);
    LD_TEST_ASSERT(memcmp(sha_a, sha_b, 32) == 0,
                   "parameters differ after kills and restarts");
    /* Every published version, not only the last: a publication is the
     * model after the micro-batch that decided it, whatever the restarts. */
    for (uint64_t v = 1; v <= ver_a; v++) {
        uint8_t sa[32], sb[32];
        for (int i = 0; i < 2; i++) {
            char file[512], why[512];
            snprintf(file, sizeof(file), "%s/%s-models/eo/%llu.ckpt", tmpdir,
                     i ? "killed" : "straight", (unsigned long long)v);
            ld_ckpt_t *ck = NULL;
            LD_TEST_ASSERT(ld_ckpt_read_file(file, &ck, why, sizeof(why)) ==
                               LD_OK,
                           "%s: %s", file, why);
            memcpy(i ? sb : sa,
                   ld_ckpt_message(ck)->lineage->params_sha256.data, 32);
            ld_ckpt_destroy(ck);
        }
        LD_TEST_ASSERT(memcmp(sa, sb, 32) == 0,
                       "version %llu has other parameters after restarts",
                       (unsigned long long)v);
    }
    LD_TEST_ASSERT(ver_a >= 2,
                   "expected trigger publications before the "
                   "final checkpoint, got version %llu",
                   (unsigned long long)ver_a);

    static char keys_a[1 << 16], keys_b[1 << 16];
    for (int i = 0; i < 2; i++) {
        char what[64];
        snprintf(what, sizeof(what), "%s.dlq", runs[i]);
        topic(t, sizeof(t), what);
        int64_t dl = count_topic(t, NULL, 0, NULL, 0, NULL);
        LD_TEST_ASSERT(dl == poison, "%s: %lld dead letters, want %d", runs[i],
                       (long long)dl, poison);
        snprintf(what, sizeof(what), "%s.triggers", runs[i]);
        topic(t, sizeof(t), what);
        int64_t n =
            count_topic(t, NULL, 1, i ? keys_b : keys_a, sizeof(keys_a), NULL);
        /* the final checkpoint of --until-caught-up has no trigger event */
        LD_TEST_EQ_I64("trigger events", (int64_t)ver_a - 1, n);
    }
    /* One manifest per version: none published twice, none lost. */
    for (int i = 0; i < 2; i++) {
        char what[64];
        snprintf(what, sizeof(what), "%s.ckpt", runs[i]);
        topic(t, sizeof(t), what);
        int64_t manifests = count_topic(t, "eo", 0, NULL, 0, NULL);
        LD_TEST_ASSERT(manifests == (int64_t)ver_a,
                       "%s: %lld manifests for %llu versions", runs[i],
                       (long long)manifests, (unsigned long long)ver_a);
    }
    LD_TEST_ASSERT(strcmp(keys_a, keys_b) == 0,
                   "trigger idempotency keys differ:\n%s---\n%s", keys_a,
                   keys_b);
    ld_test_say("identical: version %llu, %d dead letters, %lld audit "
                "records, trigger keys:\n%s",
                (unsigned long long)ver_a, poison, (long long)audit_n[0],
                keys_a);
    /* Replay: a mid-run publication and the final checkpoint rebuild bit
     * for bit from the topics; a changed setting is caught and named. */
    char config[256], out[256];
    snprintf(config, sizeof(config), "%s/straight.yaml", tmpdir);
    snprintf(out, sizeof(out), "%s/replay.out", tmpdir);
    uint64_t mid = ver_a / 2;
    LD_TEST_EQ_I64("replay of a mid-run version", 0, replay(config, mid, out));
    LD_TEST_ASSERT(ld_test_file_has(out, "\nidentical\n"), "replay output");
    LD_TEST_EQ_I64("replay of the final version", 0,
                   replay(config, ver_a, out));
    /* The same run with another trainer.l2 must not verify. */
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "sed -i 's/^  batch_size: 100$/  batch_size: 100\\n  l2: 0.001/' "
             "%s",
             config);
    LD_TEST_ASSERT(system(cmd) == 0, "edit config");
    LD_TEST_EQ_I64("replay with another l2", 1, replay(config, mid, out));
    LD_TEST_ASSERT(ld_test_file_has(out, "DIFFERENT") &&
                       ld_test_file_has(out, "first difference: "),
                   "replay with another l2 did not name the difference");
    ld_test_say("replay: versions %llu and %llu identical; a changed l2 is "
                "reported",
                (unsigned long long)mid, (unsigned long long)ver_a);

    rd_kafka_destroy(admin);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        ld_test_say("could not remove %s", tmpdir);
    printf("0004-exactly-once: PASS\n");
    return 0;
}
