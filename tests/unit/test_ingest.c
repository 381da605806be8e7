/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of daemon/ingest.c, the ingest thread and its ring, on
 * librdkafka's in-process mock cluster: every record handed over once, in
 * offset order per partition, dead letters in their place, copies that
 * survive the decoder's next poll, back-pressure through a ring smaller
 * than a publishing batch, and the PAUSED / STOPPED hand-overs the run loop
 * builds its commit points on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/ingest.h"

#define PARTS   2
#define EVENTS  300 /* per test run, spread over PARTS partitions */
#define LABELS  100
#define POISON  3 /* undecodable events, all on partition 0 */
#define WAIT_MS 30000

typedef struct fixture {
    rd_kafka_t *mock_rk;
    rd_kafka_mock_cluster_t *mc;
    char bootstrap[256];
    rd_kafka_t *producer;
    ld_pipeline_conf_t conf;
    ld_strlist_t kafka;
    char *kv[6];
    ld_pipeline_t *p;
    ld_ingest_t *in;
    int64_t next_off[2][PARTS]; /* next offset produced, per kind */
    int next_event;
} fixture_t;

static void set(ld_pipeline_conf_t *c, const char *name, const char *text)
{
    char err[256];
    const ld_conf_row_t *row = ld_conf_find(&ld_pipeline_conf_section, name);
    assert_non_null(row);
    assert_int_equal(ld_conf_parse_value(row, text, c, err, sizeof(err)),
                     LD_OK);
}

/* Queues one value for topic/partition; flush() writes them. One
 * idempotent producer keeps each partition in production order, so the
 * n-th value of a partition has offset n. */
static void produce(fixture_t *f, int kind, int32_t part, const char *value)
{
    rd_kafka_resp_err_t e = rd_kafka_producev(
        f->producer, RD_KAFKA_V_TOPIC(kind ? "labels" : "events"),
        RD_KAFKA_V_PARTITION(part),
        RD_KAFKA_V_VALUE((void *)value, strlen(value)),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    assert_int_equal(e, RD_KAFKA_RESP_ERR_NO_ERROR);
    f->next_off[kind][part]++;
}

/* Event i: key "e<i>" on partition i % PARTS, dense x = i + 0.5. */
static void flush(fixture_t *f)
{
    assert_int_equal(rd_kafka_flush(f->producer, WAIT_MS),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
}

static void produce_events(fixture_t *f, int n)
{
    for (int k = 0; k < n; k++) {
        int i = f->next_event++;
        char v[128];
        snprintf(v, sizeof(v),
                 "{\"event_id\":\"e%d\",\"event_time\":%d,\"x\":%d.5,"
                 "\"c\":\"v%d\"}",
                 i, 1000 + i, i, i % 7);
        produce(f, 0, i % PARTS, v);
    }
}

/* The pipeline's dead-letter callback, on the ingest thread. */
static void dead_cb(void *opaque, const char *topic, int32_t partition,
                    int64_t offset)
{
    fixture_t *f = opaque;
    ld_ingest_note_dead(f->in, topic, partition, offset);
}

static int setup(void **state, int pack, uint32_t capacity)
{
    fixture_t *f = calloc(1, sizeof(*f));
    char errstr[512];
    rd_kafka_conf_t *mconf = rd_kafka_conf_new();
    rd_kafka_conf_set(mconf, "log_level", "3", errstr, sizeof(errstr));
    f->mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, mconf, errstr, sizeof(errstr));
    assert_non_null(f->mock_rk);
    f->mc = rd_kafka_mock_cluster_new(f->mock_rk, 1);
    assert_non_null(f->mc);
    assert_int_equal(rd_kafka_mock_topic_create(f->mc, "events", PARTS, 1), 0);
    assert_int_equal(rd_kafka_mock_topic_create(f->mc, "labels", PARTS, 1), 0);
    assert_int_equal(rd_kafka_mock_topic_create(f->mc, "learnd.dlq", 1, 1), 0);
    snprintf(f->bootstrap, sizeof(f->bootstrap), "%s",
             rd_kafka_mock_cluster_bootstraps(f->mc));

    rd_kafka_conf_t *pc = rd_kafka_conf_new();
    assert_int_equal(rd_kafka_conf_set(pc, "bootstrap.servers", f->bootstrap,
                                       errstr, sizeof(errstr)),
                     RD_KAFKA_CONF_OK);
    rd_kafka_conf_set(pc, "log_level", "3", errstr, sizeof(errstr));
    rd_kafka_conf_set(pc, "enable.idempotence", "true", errstr, sizeof(errstr));
    f->producer = rd_kafka_new(RD_KAFKA_PRODUCER, pc, errstr, sizeof(errstr));
    assert_non_null(f->producer);

    assert_int_equal(ld_conf_set_defaults(&ld_pipeline_conf_section, &f->conf,
                                          errstr, sizeof(errstr)),
                     LD_OK);
    set(&f->conf, "events_topic", "events");
    set(&f->conf, "labels_topic", "labels");
    set(&f->conf, "group_id", "test-ingest");
    set(&f->conf, "format", "json");
    set(&f->conf, "key_field", "event_id");
    set(&f->conf, "dense_fields", "x");
    set(&f->conf, "hash_fields", "c");
    set(&f->conf, "label_field", "clicked");
    f->conf.hash_bits = 18;
    f->kv[0] = "bootstrap.servers";
    f->kv[1] = f->bootstrap;
    /* The mock cluster answers an empty fetch only after the whole
     * fetch.wait.max.ms. */
    f->kv[2] = "fetch.wait.max.ms";
    f->kv[3] = "10";
    f->kv[4] = "log_level";
    f->kv[5] = "3";
    f->kafka.v = f->kv;
    f->kafka.n = 6;

    produce_events(f, EVENTS);
    for (int i = 0; i < LABELS; i++) {
        char v[128];
        snprintf(v, sizeof(v),
                 "{\"event_id\":\"e%d\",\"label_time\":%d,\"clicked\":1}",
                 i * 3, 2000 + i);
        produce(f, 1, i % PARTS, v);
    }
    for (int i = 0; i < POISON; i++)
        produce(f, 0, 0, "{not json");
    flush(f);

    ld_pipeline_cbs_t cbs = {.opaque = f, .dead_lettered = dead_cb};
    f->p = ld_pipeline_new(&f->conf, &f->kafka, "", &cbs, WAIT_MS, errstr,
                           sizeof(errstr));
    if (!f->p)
        fail_msg("pipeline: %s", errstr);
    f->in = ld_ingest_new(f->p, capacity, pack);
    assert_non_null(f->in);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    /* After a failed assertion the thread may still run, or wait for ring
     * space: stop it and take what it hands over until STOPPED. */
    ld_ingest_stop(f->in);
    for (int i = 0; i < 100; i++) {
        const ld_ingest_item_t *it = ld_ingest_next(f->in, 100);
        if (!it)
            continue;
        int stopped = it->what == LD_INGEST_STOPPED;
        ld_ingest_done(f->in);
        if (stopped)
            break;
    }
    ld_ingest_destroy(f->in);
    if (f->p) {
        ld_err_t err = ld_pipeline_close(f->p, 5000);
        assert_int_equal(err, LD_OK);
        ld_pipeline_destroy(f->p);
    }
    ld_conf_free(&ld_pipeline_conf_section, &f->conf);
    rd_kafka_destroy(f->producer);
    rd_kafka_mock_cluster_destroy(f->mc);
    rd_kafka_destroy(f->mock_rk);
    free(f);
    return 0;
}

/* Copies out of every item, so that a test can assert after the item went
 * back to the ring. */
typedef struct seen {
    int64_t next[2][PARTS]; /* next offset expected, per kind */
    int records[2], dead, caught_up, paused, stopped;
    ld_err_t stop_err;
    int bad_order, bad_copy, bad_pack;
} seen_t;

static void check_record(const fixture_t *f, seen_t *s, int pack,
                         const ld_ingest_item_t *it)
{
    const ld_record_t *r = &it->rec;
    int kind = r->kind == LD_RECORD_LABEL;
    (void)f;
    if (r->partition < 0 || r->partition >= PARTS ||
        r->offset != s->next[kind][r->partition])
        s->bad_order++;
    else
        s->next[kind][r->partition]++;
    s->records[kind]++;
    if (kind == 0) {
        /* Event "e<i>" was produced with x = i + 0.5. */
        int i = -1;
        if (!r->key || sscanf(r->key, "e%d", &i) != 1)
            s->bad_copy++;
        if (pack) {
            if (!it->packed || r->x.nnz || r->x.ndense)
                s->bad_pack++;
        } else if (it->packed || r->x.ndense != 1 ||
                   r->x.dense[0] != (float)i + 0.5f || r->x.nnz != 1) {
            s->bad_copy++;
        }
    } else if (it->packed) {
        s->bad_pack++;
    }
}

/* Takes items until one of kind `until` arrives (or the deadline). */
static void drain(fixture_t *f, seen_t *s, int pack, ld_ingest_what_t until)
{
    for (int waited = 0; waited < WAIT_MS; waited += 100) {
        const ld_ingest_item_t *it = ld_ingest_next(f->in, 100);
        if (!it)
            continue;
        ld_ingest_what_t what = it->what;
        switch (what) {
        case LD_INGEST_RECORD:
            check_record(f, s, pack, it);
            break;
        case LD_INGEST_DEAD:
            /* Poison sits on events partition 0 after the good ones. */
            if (it->rec.partition != 0 || strcmp(it->rec.topic, "events") ||
                it->rec.offset != s->next[0][0])
                s->bad_order++;
            else
                s->next[0][0]++;
            s->dead++;
            break;
        case LD_INGEST_CAUGHT_UP:
            s->caught_up++;
            break;
        case LD_INGEST_PAUSED:
            s->paused++;
            break;
        case LD_INGEST_STOPPED:
            s->stopped++;
            s->stop_err = it->err;
            break;
        }
        ld_ingest_done(f->in);
        if (what == until)
            return;
        waited = 0; /* progress: the deadline counts idle time only */
    }
    fail_msg("no item of kind %d within %d ms", (int)until, WAIT_MS);
}

static void run_ring(void **state, int pack)
{
    fixture_t *f = *state;
    seen_t s;
    memset(&s, 0, sizeof(s));
    assert_int_equal(ld_ingest_start(f->in), LD_OK);

    /* Everything that exists, then CAUGHT_UP. */
    drain(f, &s, pack, LD_INGEST_CAUGHT_UP);
    assert_int_equal(s.records[0], EVENTS);
    assert_int_equal(s.records[1], LABELS);
    assert_int_equal(s.dead, POISON);
    assert_int_equal(s.bad_order, 0);
    assert_int_equal(s.bad_copy, 0);
    assert_int_equal(s.bad_pack, 0);
    for (int p = 0; p < PARTS; p++) {
        assert_int_equal(s.next[0][p], f->next_off[0][p]);
        assert_int_equal(s.next[1][p], f->next_off[1][p]);
    }

    /* Parked: a PAUSED item, then nothing until resumed, even while new
     * records wait in the consumer. */
    ld_ingest_pause(f->in);
    drain(f, &s, pack, LD_INGEST_PAUSED);
    assert_int_equal(s.paused, 1);
    produce_events(f, 20);
    flush(f);
    assert_null(ld_ingest_next(f->in, 300));
    ld_ingest_resume(f->in);
    while (s.records[0] < EVENTS + 20)
        drain(f, &s, pack, LD_INGEST_RECORD);
    assert_int_equal(s.records[0], EVENTS + 20);
    assert_int_equal(s.bad_order, 0);
    assert_int_equal(s.bad_copy, 0);
    assert_int_equal(s.bad_pack, 0);

    /* Stop: STOPPED with LD_OK ends the hand-overs. */
    ld_ingest_stop(f->in);
    drain(f, &s, pack, LD_INGEST_STOPPED);
    assert_int_equal(s.stopped, 1);
    assert_int_equal(s.stop_err, LD_OK);
    assert_int_equal(s.records[1], LABELS);
    assert_int_equal(s.dead, POISON);
}

/* A ring of 4 slots, far below the 32-item publishing batch: the thread
 * waits for space and publishes before it does, so nothing is held back. */
static int setup_small(void **state)
{
    return setup(state, 0, 4);
}

static int setup_packed(void **state)
{
    return setup(state, 1, 1024);
}

static void test_ring_small_copied(void **state)
{
    run_ring(state, 0);
}

static void test_ring_packed(void **state)
{
    run_ring(state, 1);
}

/* A park asked for again right after a resume, before the thread woke from
 * the last one, gets its PAUSED too. Before, the thread saw pause_req still
 * set, stayed parked without a new PAUSED, and the loop (PARKING) waited
 * for ever: bench_e2e's in-process daemon hung so on a loaded host. */
static void test_repark_at_once(void **state)
{
    fixture_t *f = *state;
    seen_t s;
    memset(&s, 0, sizeof(s));
    assert_int_equal(ld_ingest_start(f->in), LD_OK);
    drain(f, &s, 1, LD_INGEST_CAUGHT_UP);
    for (int i = 0; i < 50; i++) {
        ld_ingest_pause(f->in);
        drain(f, &s, 1, LD_INGEST_PAUSED);
        ld_ingest_resume(f->in);
        ld_ingest_pause(f->in); /* the thread has most likely not woken */
        drain(f, &s, 1, LD_INGEST_PAUSED);
        ld_ingest_resume(f->in);
    }
    assert_int_equal(s.paused, 100);
    assert_int_equal(s.records[0], EVENTS);
    assert_int_equal(s.bad_order, 0);
}

static double ms_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) * 1e3 +
           (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

/* The pipeline's poll does not sit out its timeout when there is news for
 * its caller (#18): the input's end (the last end-of-partition event: the
 * caller looks at ld_pipeline_caught_up() at once) and ld_pipeline_wake()
 * (the loop parks or stops the ingest thread). Before, a poll with a long
 * timeout returned only at its deadline in both cases: `--until-caught-up`
 * runs and replays ended ~100-200 ms late, and a park on an idle stream
 * waited up to 100 ms. The deadline here is far above what the mock
 * cluster needs, so only a poll that waits it out fails. */
static void test_poll_returns_on_news(void **state)
{
    fixture_t *f = *state;
    const int LONG_MS = 20000;
    ld_record_t rec;
    int got = 0, polls = 0;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (!ld_pipeline_caught_up(f->p) && polls++ < 2 * (EVENTS + LABELS)) {
        ld_err_t err = ld_pipeline_poll(f->p, LONG_MS, &rec);
        if (err == LD_OK)
            got++;
        else
            assert_int_equal(err, LD_ERR_TIMEOUT);
    }
    assert_true(ld_pipeline_caught_up(f->p));
    assert_int_equal(got, EVENTS + LABELS); /* the poison is dead-lettered */
    assert_true(ms_since(&t0) < LONG_MS / 4);

    /* Caught up and idle: a wake ends the wait; and only one poll. */
    ld_pipeline_wake(f->p);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(ld_pipeline_poll(f->p, LONG_MS, &rec), LD_ERR_TIMEOUT);
    assert_true(ms_since(&t0) < LONG_MS / 4);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(ld_pipeline_poll(f->p, 300, &rec), LD_ERR_TIMEOUT);
    assert_true(ms_since(&t0) >= 250);

    /* The thread owns the pipeline from here; teardown stops it. */
    assert_int_equal(ld_ingest_start(f->in), LD_OK);
}

/* Stopping a thread that never started, or destroying one: no hang. */
static void test_never_started(void **state)
{
    (void)state;
    ld_ingest_t *in = ld_ingest_new(NULL, 8, 0);
    assert_non_null(in);
    ld_ingest_stop(in);
    ld_ingest_destroy(in);
    ld_ingest_destroy(NULL);
    /* Outside the ingest thread these are no-ops, not deadlocks. */
    ld_ingest_exclusive_begin(NULL);
    ld_ingest_exclusive_end(NULL);
    ld_ingest_note_dead(NULL, "events", 0, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_never_started),
        cmocka_unit_test_setup_teardown(test_ring_small_copied, setup_small,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ring_packed, setup_packed,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_poll_returns_on_news, setup_packed,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_repark_at_once, setup_packed,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
