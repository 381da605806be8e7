/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the integration tests (see testutil.h). */
#include "testutil.h"

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
