/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the integration tests: the test broker's address, unique
 * names, librdkafka handles that fail loudly, topic creation through the admin
 * API, deadlines, assertions that print what differed and exit(1), child
 * processes, learnd's config head, runs and /metrics, and producing and
 * reading back records. */
#ifndef LD_TESTUTIL_H
#define LD_TESTUTIL_H

#include <inttypes.h>
#include <sys/types.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

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

/* Creates the topics a learnd run writes to, named as ld_test_config_begin
 * and ld_test_config_demo_input name them: <names>.state, <names>.ckpt,
 * <names>.triggers and <names>.dlq, and <names>.audit when audit, each with
 * one partition (ld_test_read_topic reads partition 0) as
 * ld_test_create_topic does. */
void ld_test_create_outputs(rd_kafka_t *rk, const char *names, int audit);

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

/* Creates a fresh directory /tmp/ld-<test>-XXXXXX and writes its path into
 * buf; fails the test when it cannot. */
void ld_test_tmpdir(char *buf, size_t size, const char *test);
/* Removes dir and everything in it (rm -rf); says so when it cannot. */
void ld_test_rm_rf(const char *dir);

/* True when the file at path contains text (first 1 MiB). */
int ld_test_file_has(const char *path, const char *text);

/* Prints the last `lines` lines of the file at path to stderr, for whoever
 * reads a failure (a child's log); says so when it cannot. */
void ld_test_show_tail(const char *path, int lines);

/* ---- learnd: its config, runs, /metrics and outputs ---------------------- */

/* Creates (truncates) a learnd config at path and writes its head: the
 * kafka: map with bootstrap.servers set to ld_test_bootstrap() followed by
 * kafka_extra (more lines of that map, each "  key: value\n"; NULL for
 * none), then the daemon: map, which commits every 200 ms and names the
 * transactional id and topics <names>.txn, <names>.state, <names>.ckpt and
 * <names>.triggers. Returns the file open for the rest of the config; the
 * caller closes it with fclose. Fails the test when path cannot be
 * written. */
FILE *ld_test_config_begin(const char *path, const char *kafka_extra,
                           const char *names);

/* Starts `<learnd> run -c <config>`, with --until-caught-up when
 * until_caught_up; output as ld_test_spawn (log NULL: inherited). Returns its
 * pid; fails the test when it cannot start. */
pid_t ld_test_spawn_run(const char *learnd, const char *config,
                        int until_caught_up, const char *log);

/* Runs `<learnd> replay -c <config> --checkpoint <version> --verify`, its
 * stdout and stderr into the file out (truncated), and returns its exit
 * code. When it has not exited after timeout_ms, kills it, shows the tail of
 * out and fails the test. */
int ld_test_replay_verify(const char *learnd, const char *config,
                          uint64_t version, const char *out, int timeout_ms);

/* A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0 and
 * closed), for a learnd's metrics.port. Fails the test when it cannot bind. */
uint16_t ld_test_free_port(void);

/* The value of one series, named exactly as /metrics writes it
 * ("learnd_transactions_total{result=\"commit\"}"), scraped from the learnd
 * serving /metrics on 127.0.0.1:port. Returns -1 when nothing answers there
 * or the series is not (yet) in the answer: poll it. */
double ld_test_metric(uint16_t port, const char *series);

/* ---- Producing and reading records --------------------------------------- */

/* Produces one record to partition of topic (RD_KAFKA_PARTITION_UA: the
 * producer's partitioner), key and value copied (key: a C string), polling
 * rk while its queue is full. Fails the test on any other error. Does not
 * flush. */
void ld_test_produce(rd_kafka_t *rk, const char *topic, int32_t partition,
                     const char *key, const void *value, size_t len);
/* As ld_test_produce, with the record's timestamp (CreateTime) set to
 * timestamp_ms (0: the producer's clock). */
void ld_test_produce_at(rd_kafka_t *rk, const char *topic, int32_t partition,
                        const char *key, const void *value, size_t len,
                        int64_t timestamp_ms);

struct ld_demo_gen_conf;
/* In library ld_testutil_demo (links ld_daemon for daemon/demo.h):
 * produces the demo generator's stream for conf (borrowed) on rk, events to
 * topic events and labels to topic labels, each keyed by its event id, to
 * partition FNV-1a(key) % parts, so that an event and its label share a
 * partition (parts 0: the producer's partitioner instead). When
 * poison_every > 0, every event whose index is a multiple of it is followed
 * on its partition by a poison record keyed "poison": an Avro string whose
 * length runs past the end, which learnd must dead-letter. Flushes rk (60 s).
 * Returns the number of poison records; fails the test on any error. */
int ld_test_produce_demo(rd_kafka_t *rk, const struct ld_demo_gen_conf *conf,
                         const char *events, const char *labels, int parts,
                         int poison_every);

/* In ld_testutil_demo: writes to the config f the head of a pipeline: map that
 * reads the demo stream as ld_test_produce_demo writes it: topics
 * <inputs>.events and <inputs>.labels, dead letters to <names>.dlq, group
 * <names>.group, Avro with the schemas of schemas/, the demo's key and time
 * fields and all 20 dense features. The caller writes the rest of the map
 * (hash_fields, label_field, ...) next. f stays the caller's. */
void ld_test_config_demo_input(FILE *f, const char *inputs, const char *names);

/* In ld_testutil_demo: creates <inputs>.events and <inputs>.labels with
 * `partitions` partitions each (as ld_test_create_topic) and writes their
 * names into events and labels (size bytes each). */
void ld_test_create_demo_inputs(rd_kafka_t *rk, const char *inputs,
                                int partitions, char *events, char *labels,
                                size_t size);

/* In ld_testutil_demo: an in-process run's config at path for the demo
 * stream under <names>: ld_test_config_begin's head, log level warn,
 * metrics off, ld_test_config_demo_input (inputs and outputs both
 * <names>) and three hashed fields with the `clicked` label. Returns the
 * file open inside the pipeline: map; the caller writes the other maps
 * and closes it. */
FILE *ld_test_config_demo(const char *path, const char *names);

/* In ld_testutil_demo: starts `bin run -c cfg --role=role
 * --examples-topic=extopic` (with --instance=inst unless inst is NULL, and
 * --until-caught-up when until), logging to log; the child's pid. */
pid_t ld_test_spawn_role(const char *bin, const char *cfg, const char *role,
                         const char *inst, int until, const char *log,
                         const char *extopic);
/* Waits up to 300 s for pid to exit and fails the test, showing the tail
 * of log, unless its exit code is want. */
void ld_test_expect_exit(pid_t pid, int want, const char *log);
/* In ld_testutil_demo: the params_sha256 of version v of model in the
 * local model store dir (the test fails when it cannot be read). */
void ld_test_store_params(const char *dir, const char *model, uint64_t v,
                          uint8_t sha[32]);
/* In ld_testutil_demo: the newest version of model in the store dir (the
 * test fails when there is none). */
uint64_t ld_test_store_last_version(const char *dir, const char *model);

/* Called by ld_test_read_topic with each record in offset order; m is
 * borrowed for the call. */
typedef void ld_test_record_cb_t(const rd_kafka_message_t *m, void *opaque);

/* Reads partition 0 of topic from the beginning to its end, read_committed,
 * once ld_test_await_stable (30 s) says the end shows every committed
 * transaction. Calls cb(m, opaque) for each record unless cb is NULL.
 * Returns the record count and, unless hash is NULL, sets *hash to the
 * FNV-1a 64 hash of all values in order. Fails the test on a read error or
 * when the end is not reached within timeout_ms. */
int64_t ld_test_read_topic(const char *topic, int timeout_ms,
                           ld_test_record_cb_t *cb, void *opaque,
                           uint64_t *hash);

/* Reads a learnd trigger topic (as ld_test_read_topic) and writes the
 * idempotency_key of each trigger event, one a line, into keys (size bytes,
 * always NUL-terminated). Returns the number of events. Fails the test when
 * an event has no idempotency_key or the keys do not fit. */
int64_t ld_test_trigger_keys(const char *topic, int timeout_ms, char *keys,
                             size_t size);

#endif /* LD_TESTUTIL_H */
