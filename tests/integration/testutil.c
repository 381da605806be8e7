/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the integration tests (see testutil.h). */
#define _GNU_SOURCE /* memmem */
#include "testutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t start_ms = -1;

static int64_t since_start(void)
{
    int64_t now = mono_ms();
    if (start_ms < 0)
        start_ms = now;
    return now - start_ms;
}

void ld_test_fail_at(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "[%7" PRId64 "ms] FAIL %s:%d: ", since_start(), file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    exit(1);
}

void ld_test_assert_fail(const char *file, int line, const char *cond,
                         const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "[%7" PRId64 "ms] FAIL %s:%d: (%s) ", since_start(), file,
            line, cond);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    exit(1);
}

void ld_test_say(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "[%7" PRId64 "ms] ", since_start());
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
}

const char *ld_test_bootstrap(void)
{
    const char *b = getenv("LD_TEST_BOOTSTRAP");
    if (b == NULL || *b == '\0')
        LD_TEST_FAIL("LD_TEST_BOOTSTRAP is not set: run through "
                     "tests/kafka/with-broker.sh (ctest does) or point it "
                     "at a broker");
    return b;
}

void ld_test_name(char *buf, size_t size, const char *what)
{
    static unsigned counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int n =
        snprintf(buf, size, "ld-%s-%ld-%lld-%u", what, (long)getpid(),
                 (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, counter++);
    if (n < 0 || (size_t)n >= size)
        LD_TEST_FAIL("name buffer of %zu bytes too small for %s", size, what);
}

int64_t ld_test_deadline(int timeout_ms)
{
    return mono_ms() + timeout_ms;
}

int ld_test_remaining(int64_t deadline)
{
    int64_t left = deadline - mono_ms();
    if (left < 0)
        return 0;
    if (left > 1000000000)
        return 1000000000;
    return (int)left;
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char fatal[512];
        rd_kafka_resp_err_t orig =
            rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
        LD_TEST_FAIL("%s: fatal error %s: %s", rd_kafka_name(rk),
                     rd_kafka_err2name(orig), fatal);
    }
    /* Transient (a connection refused while a coordinator moves, ...):
     * librdkafka retries; print it so a later timeout has context. */
    ld_test_say("%s: error %s: %s", rd_kafka_name(rk),
                rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

rd_kafka_conf_t *ld_test_conf_new(void)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    ld_test_conf_set(conf, "bootstrap.servers", ld_test_bootstrap());
    rd_kafka_conf_set_error_cb(conf, error_cb);
    return conf;
}

void ld_test_conf_set(rd_kafka_conf_t *conf, const char *name,
                      const char *value)
{
    char errstr[512];
    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) !=
        RD_KAFKA_CONF_OK)
        LD_TEST_FAIL("conf %s=%s: %s", name, value, errstr);
}

rd_kafka_t *ld_test_new(rd_kafka_type_t type, rd_kafka_conf_t *conf)
{
    char errstr[512];
    rd_kafka_t *rk = rd_kafka_new(type, conf, errstr, sizeof(errstr));
    if (rk == NULL)
        LD_TEST_FAIL("rd_kafka_new: %s", errstr);
    return rk;
}

void ld_test_check_error(const char *what, rd_kafka_error_t *error)
{
    if (error == NULL)
        return;
    char msg[512];
    snprintf(msg, sizeof(msg), "%s (%s%s%s)", rd_kafka_error_string(error),
             rd_kafka_error_name(error),
             rd_kafka_error_is_retriable(error) ? ", retriable" : "",
             rd_kafka_error_txn_requires_abort(error) ? ", abortable" : "");
    rd_kafka_error_destroy(error);
    LD_TEST_FAIL("%s: %s", what, msg);
}

/* Number of partitions of topic that have a leader, or -1 while the topic is
 * unknown to the broker. */
static int leaders_known(rd_kafka_t *rk, const char *topic, int timeout_ms)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    int n = -1;
    if (rkt == NULL)
        LD_TEST_FAIL("rd_kafka_topic_new(%s) failed", topic);
    if (rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms) ==
            RD_KAFKA_RESP_ERR_NO_ERROR &&
        md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        n = 0;
        for (int i = 0; i < md->topics[0].partition_cnt; i++)
            if (md->topics[0].partitions[i].leader >= 0 &&
                md->topics[0].partitions[i].err == RD_KAFKA_RESP_ERR_NO_ERROR)
                n++;
    }
    if (md != NULL)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return n;
}

void ld_test_create_topic(rd_kafka_t *rk, const char *topic, int partitions,
                          int timeout_ms)
{
    char errstr[512];
    int64_t deadline = ld_test_deadline(timeout_ms);
    rd_kafka_NewTopic_t *nt =
        rd_kafka_NewTopic_new(topic, partitions, 1, errstr, sizeof(errstr));
    if (nt == NULL)
        LD_TEST_FAIL("NewTopic %s: %s", topic, errstr);

    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *opts =
        rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    if (rd_kafka_AdminOptions_set_operation_timeout(
            opts, ld_test_remaining(deadline), errstr, sizeof(errstr)) ||
        rd_kafka_AdminOptions_set_request_timeout(
            opts, ld_test_remaining(deadline), errstr, sizeof(errstr)))
        LD_TEST_FAIL("admin options: %s", errstr);
    rd_kafka_CreateTopics(rk, &nt, 1, opts, q);

    rd_kafka_event_t *ev = NULL;
    while (ev == NULL) {
        if (ld_test_remaining(deadline) == 0)
            LD_TEST_FAIL("CreateTopics %s: no result in %d ms", topic,
                         timeout_ms);
        ev = rd_kafka_queue_poll(q, ld_test_remaining(deadline));
    }
    if (rd_kafka_event_error(ev))
        LD_TEST_FAIL("CreateTopics %s: %s", topic,
                     rd_kafka_event_error_string(ev));
    const rd_kafka_CreateTopics_result_t *res =
        rd_kafka_event_CreateTopics_result(ev);
    size_t cnt = 0;
    const rd_kafka_topic_result_t **tr =
        rd_kafka_CreateTopics_result_topics(res, &cnt);
    if (cnt != 1 || rd_kafka_topic_result_error(tr[0]))
        LD_TEST_FAIL("CreateTopics %s: %s", topic,
                     cnt != 1 ? "no topic in result"
                              : rd_kafka_topic_result_error_string(tr[0]));
    rd_kafka_event_destroy(ev);
    rd_kafka_AdminOptions_destroy(opts);
    rd_kafka_NewTopic_destroy(nt);

    /* The controller has the topic; wait until this broker's metadata shows
     * every partition led, so produce and fetch do not race creation. */
    int led = -1;
    while ((led = leaders_known(rk, topic, 2000)) < partitions) {
        if (ld_test_remaining(deadline) == 0)
            LD_TEST_FAIL("topic %s: %d of %d partitions have a leader after "
                         "%d ms",
                         topic, led < 0 ? 0 : led, partitions, timeout_ms);
        /* A metadata call returns at once when the broker answers; pace the
         * next one (on the now idle admin queue, so this works for any handle
         * type) so a slow leader election is not a busy loop. */
        ev = rd_kafka_queue_poll(q, 100);
        if (ev != NULL)
            rd_kafka_event_destroy(ev);
    }
    rd_kafka_queue_destroy(q);
    ld_test_say("created topic %s with %d partitions", topic, partitions);
}

void ld_test_create_outputs(rd_kafka_t *rk, const char *names, int audit)
{
    static const char *const outs[] = {"state", "ckpt", "triggers", "dlq",
                                       "audit"};
    for (int k = 0; k < (audit ? 5 : 4); k++) {
        char t[512];
        snprintf(t, sizeof(t), "%s.%s", names, outs[k]);
        ld_test_create_topic(rk, t, 1, 30000);
    }
}

static rd_kafka_t *isolated_reader(const char *isolation)
{
    rd_kafka_conf_t *conf = ld_test_conf_new();
    ld_test_conf_set(conf, "isolation.level", isolation);
    ld_test_conf_set(conf, "group.id", "ld-test-watermarks");
    return ld_test_new(RD_KAFKA_CONSUMER, conf);
}

void ld_test_await_stable(const char *topic, int32_t partition, int timeout_ms)
{
    rd_kafka_t *committed = isolated_reader("read_committed");
    rd_kafka_t *uncommitted = isolated_reader("read_uncommitted");
    int64_t deadline = ld_test_deadline(timeout_ms);
    int64_t lo, lso = -1, hw = -2;
    for (;;) {
        rd_kafka_resp_err_t e1 =
            rd_kafka_query_watermark_offsets(uncommitted, topic, partition, &lo,
                                             &hw, ld_test_remaining(deadline));
        rd_kafka_resp_err_t e2 =
            rd_kafka_query_watermark_offsets(committed, topic, partition, &lo,
                                             &lso, ld_test_remaining(deadline));
        if (!e1 && !e2 && lso == hw)
            break;
        if (!ld_test_remaining(deadline))
            LD_TEST_FAIL("%s [%d]: last stable offset %" PRId64
                         ", high watermark %" PRId64 " (%s, %s)",
                         topic, (int)partition, lso, hw, rd_kafka_err2str(e1),
                         rd_kafka_err2str(e2));
        usleep(50000); /* the broker has no wait for this: poll it */
    }
    rd_kafka_destroy(committed);
    rd_kafka_destroy(uncommitted);
}

extern char **environ;

pid_t ld_test_spawn(char *const argv[], const char *log)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (log) {
        posix_spawn_file_actions_addopen(&fa, 1, log,
                                         O_WRONLY | O_CREAT | O_TRUNC, 0644);
        posix_spawn_file_actions_adddup2(&fa, 1, 2);
    }
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc)
        LD_TEST_FAIL("spawn %s: %s", argv[0], strerror(rc));
    return pid;
}

int ld_test_wait_exit(pid_t pid, int timeout_ms)
{
    int64_t deadline = ld_test_deadline(timeout_ms);
    for (;;) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (!ld_test_remaining(deadline)) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1;
        }
        usleep(20000); /* a child's exit cannot be awaited with a timeout */
    }
}

void ld_test_tmpdir(char *buf, size_t size, const char *test)
{
    int n = snprintf(buf, size, "/tmp/ld-%s-XXXXXX", test);
    LD_TEST_ASSERT(n > 0 && (size_t)n < size, "tmpdir name too long");
    LD_TEST_ASSERT(mkdtemp(buf), "mkdtemp %s", buf);
}

void ld_test_rm_rf(const char *dir)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        ld_test_say("could not remove %s", dir);
}

int ld_test_file_has(const char *path, const char *text)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strstr(buf, text) != NULL;
}

void ld_test_show_tail(const char *path, int lines)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "tail -n %d '%s' >&2", lines, path);
    if (system(cmd) != 0)
        ld_test_say("cannot show %s", path);
}

FILE *ld_test_config_begin(const char *path, const char *kafka_extra,
                           const char *names)
{
    FILE *f = fopen(path, "w");
    LD_TEST_ASSERT(f, "config %s", path);
    fprintf(f,
            "kafka:\n"
            "  bootstrap.servers: %s\n"
            "%s"
            "daemon:\n"
            "  commit_interval: 200ms\n"
            "  transactional_id: %s.txn\n"
            "  state_topic: %s.state\n"
            "  checkpoint_topic: %s.ckpt\n"
            "  trigger_topic: %s.triggers\n",
            ld_test_bootstrap(), kafka_extra ? kafka_extra : "", names, names,
            names, names);
    return f;
}

pid_t ld_test_spawn_run(const char *learnd, const char *config,
                        int until_caught_up, const char *log)
{
    char *argv[] = {(char *)learnd,
                    "run",
                    "-c",
                    (char *)config,
                    until_caught_up ? "--until-caught-up" : NULL,
                    NULL};
    return ld_test_spawn(argv, log);
}

int ld_test_replay_verify(const char *learnd, const char *config,
                          uint64_t version, const char *out, int timeout_ms)
{
    char v[32];
    snprintf(v, sizeof(v), "%" PRIu64, version);
    char *argv[] = {(char *)learnd, "replay", "-c",       (char *)config,
                    "--checkpoint", v,        "--verify", NULL};
    int code = ld_test_wait_exit(ld_test_spawn(argv, out), timeout_ms);
    if (code < 0) {
        ld_test_show_tail(out, 20);
        LD_TEST_FAIL("learnd replay --checkpoint %s did not exit in %d ms", v,
                     timeout_ms);
    }
    return code;
}

uint16_t ld_test_free_port(void)
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

double ld_test_metric(uint16_t port, const char *series)
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

void ld_test_produce(rd_kafka_t *rk, const char *topic, int32_t partition,
                     const char *key, const void *value, size_t len)
{
    ld_test_produce_at(rk, topic, partition, key, value, len, 0);
}

void ld_test_produce_at(rd_kafka_t *rk, const char *topic, int32_t partition,
                        const char *key, const void *value, size_t len,
                        int64_t timestamp_ms)
{
    rd_kafka_resp_err_t e;
    while ((e = rd_kafka_producev(
                rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
                RD_KAFKA_V_KEY(key, strlen(key)),
                RD_KAFKA_V_VALUE((void *)(uintptr_t)value, len),
                RD_KAFKA_V_TIMESTAMP(timestamp_ms),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) ==
           RD_KAFKA_RESP_ERR__QUEUE_FULL)
        rd_kafka_poll(rk, 100); /* delivery reports make room */
    LD_TEST_ASSERT(!e, "produce: %s", rd_kafka_err2str(e));
}

int64_t ld_test_read_topic(const char *topic, int timeout_ms,
                           ld_test_record_cb_t *cb, void *opaque,
                           uint64_t *hash)
{
    uint64_t h = 1469598103934665603u;
    ld_test_await_stable(topic, 0, 30000);
    rd_kafka_conf_t *conf = ld_test_conf_new();
    ld_test_conf_set(conf, "isolation.level", "read_committed");
    ld_test_conf_set(conf, "enable.partition.eof", "true");
    ld_test_conf_set(conf, "group.id", "ld-test-reader"); /* assign() below */
    ld_test_conf_set(conf, "enable.auto.commit", "false");
    rd_kafka_t *rk = ld_test_new(RD_KAFKA_CONSUMER, conf);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, 0)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    int64_t n = 0;
    int64_t deadline = ld_test_deadline(timeout_ms);
    for (;;) {
        LD_TEST_ASSERT(ld_test_remaining(deadline), "read %s", topic);
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            rd_kafka_message_destroy(m);
            break;
        }
        LD_TEST_ASSERT(!m->err, "read %s: %s", topic,
                       rd_kafka_message_errstr(m));
        n++;
        for (size_t i = 0; i < m->len; i++)
            h = (h ^ ((const uint8_t *)m->payload)[i]) * 1099511628211u;
        if (cb)
            cb(m, opaque);
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    if (hash)
        *hash = h;
    return n;
}

typedef struct keys_out {
    char *buf;
    size_t size, len;
} keys_out_t;

static void add_idempotency_key(const rd_kafka_message_t *m, void *opaque)
{
    keys_out_t *k = opaque;
    static const char field[] = "\"idempotency_key\":\"";
    const char *p = memmem(m->payload, m->len, field, sizeof(field) - 1);
    LD_TEST_ASSERT(p, "trigger event without idempotency_key");
    p += sizeof(field) - 1;
    const char *end =
        memchr(p, '"', m->len - (size_t)(p - (const char *)m->payload));
    LD_TEST_ASSERT(end, "unterminated idempotency_key");
    k->len += (size_t)snprintf(k->buf + k->len, k->size - k->len, "%.*s\n",
                               (int)(end - p), p);
    LD_TEST_ASSERT(k->len < k->size, "too many trigger events");
}

int64_t ld_test_trigger_keys(const char *topic, int timeout_ms, char *keys,
                             size_t size)
{
    keys_out_t k = {.buf = keys, .size = size};
    LD_TEST_ASSERT(size > 0, "no room for trigger keys");
    keys[0] = '\0';
    return ld_test_read_topic(topic, timeout_ms, add_idempotency_key, &k, NULL);
}
