/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the integration tests: the test broker's address, unique
 * names, librdkafka handles that fail loudly, topic creation through the admin
 * API, deadlines, and assertions that print what differed and exit(1). */
#ifndef LD_TESTUTIL_H
#define LD_TESTUTIL_H

#include <inttypes.h>
#include <sys/types.h>
#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#define LD_TEST_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* Prints "FAIL file:line: <message>" to stderr and exits 1. */
_Noreturn void ld_test_fail_at(const char *file, int line, const char *fmt, ...)
    LD_TEST_PRINTF(3, 4);
#define LD_TEST_FAIL(...) ld_test_fail_at(__FILE__, __LINE__, __VA_ARGS__)
/* As ld_test_fail_at, with the failed condition's text before the message. */
_Noreturn void ld_test_assert_fail(const char *file, int line, const char *cond,
                                   const char *fmt, ...) LD_TEST_PRINTF(4, 5);

/* Fails with the condition's text and a printf message when cond is false:
 * LD_TEST_ASSERT(n == 3, "got %d records", n). */
#define LD_TEST_ASSERT(cond, ...)                                              \
    do {                                                                       \
        if (!(cond))                                                           \
            ld_test_assert_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);       \
    } while (0)

/* Fails, naming what, when two 64-bit integers differ. */
#define LD_TEST_EQ_I64(what, expected, got)                                    \
    do {                                                                       \
        int64_t ld_e_ = (int64_t)(expected), ld_g_ = (int64_t)(got);           \
        if (ld_e_ != ld_g_)                                                    \
            ld_test_fail_at(__FILE__, __LINE__,                                \
                            "%s: expected %" PRId64 ", got %" PRId64, (what),  \
                            ld_e_, ld_g_);                                     \
    } while (0)

/* Progress line on stderr, prefixed with the milliseconds since start. */
void ld_test_say(const char *fmt, ...) LD_TEST_PRINTF(1, 2);

/* The broker to test against: $LD_TEST_BOOTSTRAP (set by
 * tests/kafka/with-broker.sh). Exits 1 with a hint when unset. Static
 * string, never NULL. */
const char *ld_test_bootstrap(void);

/* Writes "ld-<what>-<pid>-<wall ms>-<counter>" into buf: topic, group and
 * transactional ids that no other test or earlier run uses. */
void ld_test_name(char *buf, size_t size, const char *what);

/* Monotonic deadline timeout_ms from now, and the milliseconds left until it
 * (0 once passed; capped to fit an int timeout argument). */
int64_t ld_test_deadline(int timeout_ms);
int ld_test_remaining(int64_t deadline);

/* A conf with bootstrap.servers set and an error callback that prints
 * errors and fails on fatal ones. Caller owns it (hand it to ld_test_new). */
rd_kafka_conf_t *ld_test_conf_new(void);
/* Sets one property; fails the test when librdkafka rejects it. */
void ld_test_conf_set(rd_kafka_conf_t *conf, const char *name,
                      const char *value);
/* rd_kafka_new that fails the test on error. Takes conf. Caller destroys the
 * handle with rd_kafka_destroy. */
rd_kafka_t *ld_test_new(rd_kafka_type_t type, rd_kafka_conf_t *conf);

/* Creates topic with the given partition count and replication factor 1
 * through the admin API on rk (any handle type), then waits until metadata
 * shows every partition with a leader. Fails the test on error or after
 * timeout_ms. */
void ld_test_create_topic(rd_kafka_t *rk, const char *topic, int partitions,
                          int timeout_ms);

/* Fails the test, naming what, when error is not NULL; destroys error. */
void ld_test_check_error(const char *what, rd_kafka_error_t *error);

/* Kafka writes a committed transaction's markers after EndTxn returned to
 * its producer: until then a read_committed reader ends before that
 * transaction's records. Waits (up to timeout_ms, else fails the test) until
 * the last stable offset of partition of topic reaches its high watermark,
 * so that a read_committed read to the end sees everything committed. */
void ld_test_await_stable(const char *topic, int32_t partition, int timeout_ms);

/* Starts argv[0] with argv; stdout and stderr go to log (truncated) unless
 * log is NULL (inherited). Fails the test when it cannot start. */
pid_t ld_test_spawn(char *const argv[], const char *log);

/* Waits up to timeout_ms for pid to exit; returns its exit code (128 + the
 * signal when killed), or -1 after killing it at the deadline. */
int ld_test_wait_exit(pid_t pid, int timeout_ms);

/* True when the file at path contains text (first 1 MiB). */
int ld_test_file_has(const char *path, const char *text);

#endif /* LD_TESTUTIL_H */
