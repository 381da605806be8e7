/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the evaluation engine of backtest and freshness (issue
 * #19): scorers score as the trainer's champion, cadence lines order after a
 * drift, events undecided at T1 are counted, reports are deterministic, the
 * SVG renders (rsvg-convert) at its size. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <unistd.h>

#include "daemon/cmd_backtest.h"
#include "daemon/demo.h"
#include "daemon/eval.h"
#include "labeling/labeling.h"
#include "trainer/scorer.h"

#define T0      INT64_C(1767225600000)
#define STEP    1000
#define SLOTS   16
#define WINDOW  60000
#define N_EVENT 40000

/* The sections' defaults, loaded once (their strings are freed at the
 * end), with the test's settings on top. */
static ld_trainer_conf_t g_tc;
static ld_labeling_conf_t g_lc;

static int load_defaults(void **state)
{
    (void)state;
    char why[256];
    if (ld_conf_set_defaults(&ld_trainer_conf_section, &g_tc, why,
                             sizeof(why)) ||
        ld_conf_set_defaults(&ld_labeling_conf_section, &g_lc, why,
                             sizeof(why)))
        return -1;
    return 0;
}

static int free_defaults(void **state)
{
    (void)state;
    ld_conf_free(&ld_trainer_conf_section, &g_tc);
    ld_conf_free(&ld_labeling_conf_section, &g_lc);
    return 0;
}

static ld_trainer_conf_t tconf(void)
{
    ld_trainer_conf_t c = g_tc;
    c.hash_bits = 8;
    c.dense_dim = 2;
    c.batch_size = 16;
    c.batch_span = 0;
    return c;
}

static ld_labeling_conf_t lconf(void)
{
    ld_labeling_conf_t c = g_lc;
    c.window_ms = WINDOW;
    c.max_ooo_ms = 2000;
    c.idle_timeout_ms = 0;
    return c;
}

/* splitmix64: the same stream everywhere */
static uint64_t next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static double uniform(uint64_t *s)
{
    return (double)(next(s) >> 11) / 9007199254740992.0;
}

/* Event i: one of SLOTS categories (one-hot slot) and two dense values;
 * clicks with p = sigmoid(truth[slot] + 0.5 x0), the truth of every slot
 * negated at drift_at. A click's label follows 500 ms later (before the
 * next event). */
static void feed(ld_eval_t *e, int64_t n, int64_t drift_at)
{
    uint64_t rng = 42;
    double truth[SLOTS];
    for (int k = 0; k < SLOTS; k++)
        truth[k] = 3.0 * (uniform(&rng) - 0.5);
    int64_t off[2] = {0, 0};
    for (int64_t i = 0; i < n; i++) {
        uint32_t slot = (uint32_t)(next(&rng) % SLOTS);
        float dense[2] = {(float)uniform(&rng), (float)uniform(&rng)};
        float one = 1.0f;
        double z = (i < drift_at ? 1 : -1) * truth[slot] + 0.5 * dense[0];
        int click = uniform(&rng) < 1 / (1 + exp(-z));
        char key[32];
        snprintf(key, sizeof(key), "e%lld", (long long)i);
        ld_record_t r = {.kind = LD_RECORD_EVENT,
                         .key = key,
                         .key_len = (uint32_t)strlen(key),
                         .time_ms = T0 + i * STEP,
                         .x = {&slot, &one, dense, 1, 2},
                         .topic = "events",
                         .partition = 0,
                         .offset = off[0]++};
        assert_int_equal(ld_eval_add(e, &r), LD_OK);
        /* every event has a label record: clicked 1 or 0 (the labels
         * side's watermark keeps up) */
        ld_record_t l = {.kind = LD_RECORD_LABEL,
                         .key = key,
                         .key_len = r.key_len,
                         .time_ms = r.time_ms + 500,
                         .label = click,
                         .no_label = !click,
                         .topic = "labels",
                         .partition = 0,
                         .offset = off[1]++};
        assert_int_equal(ld_eval_add(e, &l), LD_OK);
    }
}

static ld_eval_t *engine(const ld_eval_conf_t *ec)
{
    ld_trainer_conf_t tc = tconf();
    ld_labeling_conf_t lc = lconf();
    char why[256];
    ld_eval_t *e = ld_eval_new(&tc, &lc, ec, why, sizeof(why));
    if (!e)
        fail_msg("ld_eval_new: %s", why);
    assert_int_equal(ld_eval_assign(e, 0), LD_OK);
    return e;
}

static const int64_t cadences[] = {0, 600000, 3600000, 6 * 3600000};

static ld_eval_conf_t fresh_conf(void)
{
    return (ld_eval_conf_t){.from_ms = T0 + 2 * 3600000,
                            .to_ms = T0 + (int64_t)N_EVENT * STEP,
                            .bucket_ms = 3600000,
                            .warmup_ms = 2 * 3600000,
                            .cadence_ms = cadences,
                            .ncadence = 4};
}

/* After the drift, loss grows with the cadence; before it they agree. */
static void test_cadence_order(void **state)
{
    (void)state;
    ld_eval_conf_t ec = fresh_conf();
    ld_eval_t *e = engine(&ec);
    feed(e, N_EVENT, N_EVENT / 2);
    assert_int_equal(ld_eval_finish(e), LD_OK);
    ld_trainer_metrics_t m[4];
    for (size_t i = 0; i < 4; i++)
        assert_non_null(ld_eval_line(e, i, &m[i]));
    assert_null(ld_eval_line(e, 4, &m[0]));
    for (size_t i = 0; i < 4; i++)
        print_message("cadence %lld: logloss %.5f\n", (long long)cadences[i],
                      m[i].logloss);
    for (size_t i = 0; i < 3; i++)
        assert_true(m[i].logloss < m[i + 1].logloss);
    assert_true(m[3].logloss > m[0].logloss + 0.03);
    ld_eval_counts_t c;
    ld_eval_counts(e, &c);
    print_message("pending %llu scored %llu\n", (unsigned long long)c.pending,
                  (unsigned long long)c.scored);
    assert_int_equal(c.copies, 3);
    assert_int_equal(c.copy_bytes, (256 + 3) * sizeof(float));
    /* every event of the range: scored, or within the last window (the
     * watermark, 2 s behind the last record, passes e + 60 s only for
     * events 63 or more before the last) */
    uint64_t in_range = (uint64_t)((ec.to_ms - ec.from_ms) / STEP);
    assert_int_equal(c.pending, 63);
    assert_int_equal(c.scored + c.pending, in_range);
    assert_int_equal(c.absorbed, 0);
    ld_eval_destroy(e);
}

/* Staleness: copies frozen at T1 - W - d score only [T1 - W, T1); one
 * frozen before the drift does worse than one frozen after it. */
static void test_staleness(void **state)
{
    (void)state;
    static const int64_t ages[] = {0, 3 * 3600000, 5 * 3600000};
    ld_eval_conf_t ec = fresh_conf();
    ec.ncadence = 0;
    ec.stale_ms = ages;
    ec.nstale = 3;
    ec.eval_window_ms = 2 * 3600000;
    ld_eval_t *e = engine(&ec);
    feed(e, N_EVENT, N_EVENT / 2);
    assert_int_equal(ld_eval_finish(e), LD_OK);
    ld_trainer_metrics_t m[3];
    const char *names[] = {"stale 0", "stale 3h", "stale 5h"};
    for (size_t i = 0; i < 3; i++)
        assert_string_equal(ld_eval_line(e, i, &m[i]), names[i]);
    assert_null(ld_eval_line(e, 3, &m[0]));
    /* the last 2 h of events, less the 63 still pending at the end */
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(m[i].examples, 2 * 3600 - 63);
    /* frozen at 9.1 h and 6.1 h: after the drift (5.55 h); 4.1 h: before */
    assert_true(m[2].logloss > m[1].logloss + 0.05);
    assert_true(m[2].logloss > m[0].logloss + 0.05);
    ld_eval_counts_t c;
    ld_eval_counts(e, &c);
    assert_int_equal(c.copies, 3);
    assert_int_equal(c.refreshes, 3);
    ld_eval_destroy(e);
}

static char *report_json(void)
{
    ld_eval_conf_t ec = fresh_conf();
    ld_eval_t *e = engine(&ec);
    feed(e, N_EVENT, N_EVENT / 2);
    assert_int_equal(ld_eval_finish(e), LD_OK);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_int_equal(ld_eval_write_json(e, NULL, f), LD_OK);
    fclose(f);
    ld_eval_destroy(e);
    return text;
}

static void test_json_deterministic(void **state)
{
    (void)state;
    char *a = report_json(), *b = report_json();
    assert_string_equal(a, b);
    assert_non_null(strstr(a, "\"schema\": \"learnd.backtest.v1\""));
    assert_non_null(strstr(a, "\"reference\": \"0\""));
    assert_non_null(strstr(a, "\"pending\": 63"));
    free(a);
    free(b);
}

/* A scorer loaded from a snapshot scores a batch bit for bit as the
 * trainer scores that snapshot as its champion. */
static ld_trainer_t *champ_t;
static ld_scorer_t *champ_s;
static size_t champ_checked;

static void on_batch(void *opaque, const ld_scored_t *s, size_t n)
{
    (void)opaque;
    ld_score_t o[64];
    assert_true(n <= 64);
    assert_int_equal(ld_scorer_score_batch(champ_s, s, n, o), LD_OK);
    for (size_t i = 0; i < n; i++) {
        assert_memory_equal(&o[i].pred, &s[i].champion, sizeof(float));
        assert_memory_equal(&o[i].loss, &s[i].champion_loss, sizeof(float));
        champ_checked++;
    }
}

static void test_scorer_is_champion(void **state)
{
    (void)state;
    ld_trainer_conf_t tc = tconf();
    char why[256];
    champ_t = ld_trainer_new(&tc, why, sizeof(why));
    assert_non_null(champ_t);
    champ_s = ld_scorer_new(champ_t);
    assert_non_null(champ_s);
    uint64_t rng = 7;
    for (int i = 0; i < 4000; i++) {
        if (i == 2000) {
            ld_snapshot_t *snap = ld_trainer_snapshot(champ_t);
            assert_int_equal(ld_trainer_champion_set(champ_t, snap), LD_OK);
            assert_int_equal(
                ld_scorer_load_snapshot(champ_s, snap, why, sizeof(why)),
                LD_OK);
            ld_snapshot_destroy(snap);
            ld_trainer_set_scored_cb(champ_t, on_batch, NULL);
        }
        uint32_t idx[3] = {(uint32_t)(next(&rng) % 256),
                           (uint32_t)(next(&rng) % 256),
                           (uint32_t)(next(&rng) % 256)};
        float val[3] = {1, 1, 0.5f}, dense[2] = {(float)uniform(&rng), 3};
        ld_example_t ex = {.x = {idx, val, dense, 3, 2},
                           .label = (float)(idx[0] % 3 == 0),
                           .weight = 1,
                           .sample_type = LD_SAMPLE_POS,
                           .event_time_ms = i,
                           .label_time_ms = i,
                           .offset = i};
        assert_int_equal(ld_trainer_add(champ_t, &ex), LD_OK);
    }
    assert_int_equal(ld_trainer_flush(champ_t), LD_OK);
    assert_int_equal(champ_checked, 2000);
    ld_scorer_destroy(champ_s);
    ld_trainer_destroy(champ_t);
}

/* The chart renders with a real SVG renderer at its declared size. */
static void test_svg_renders(void **state)
{
    (void)state;
    ld_eval_conf_t ec = fresh_conf();
    ld_eval_t *e = engine(&ec);
    feed(e, N_EVENT, N_EVENT / 2);
    assert_int_equal(ld_eval_finish(e), LD_OK);
    char svg[] = "/tmp/test_eval_XXXXXX";
    int fd = mkstemp(svg);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    int64_t drift = T0 + (int64_t)N_EVENT / 2 * STEP;
    const char *name = "drift";
    assert_int_equal(ld_eval_write_svg(e, &drift, &name, 1, f), LD_OK);
    fclose(f);
    ld_eval_destroy(e);
    char png[64], cmd[256];
    snprintf(png, sizeof(png), "%s.png", svg);
    snprintf(cmd, sizeof(cmd), "rsvg-convert %s -o %s", svg, png);
    assert_int_equal(system(cmd), 0);
    FILE *p = fopen(png, "rb");
    assert_non_null(p);
    unsigned char h[24];
    assert_int_equal(fread(h, 1, 24, p), 24);
    fseek(p, 0, SEEK_END);
    long size = ftell(p);
    fclose(p);
    assert_memory_equal(h, "\x89PNG\r\n\x1a\n", 8);
    unsigned w = 0, ht = 0;
    for (int i = 0; i < 4; i++) {
        w = w << 8 | (unsigned)h[16 + i];
        ht = ht << 8 | (unsigned)h[20 + i];
    }
    assert_int_equal(w, 960);
    assert_int_equal(ht, 480);
    assert_true(size > 10000); /* axes, four lines, labels: not blank */
    remove(svg);
    remove(png);
}

/* ---- learnd freshness on librdkafka's mock cluster --------------------- */

static uint32_t fnv1a(const char *p)
{
    uint32_t h = 2166136261u;
    while (*p)
        h = (h ^ (uint8_t)*p++) * 16777619u;
    return h;
}

#define MOCK_EVENTS 20000
#define MOCK_STEP   50

static const ld_demo_gen_conf_t mock_gen = {.seed = 5,
                                            .n_events = MOCK_EVENTS,
                                            .drift_at = MOCK_EVENTS / 2,
                                            .start_time_ms = T0,
                                            .step_ms = MOCK_STEP,
                                            .label_delay_ms = 2000,
                                            .early_label_share = 0.02};

/* Produces the demo stream to events/labels (2 partitions by key) and
 * returns how many events of [from, end) stay undecided at the end (the
 * joiner's rule: W = the lowest side's newest time - 1 s, decided when
 * W > e + 20 s) and how many there are. */
static int64_t mock_produce(const char *bootstrap, int64_t from,
                            int64_t *in_range)
{
    char why[256];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    assert_int_equal(
        rd_kafka_conf_set(c, "bootstrap.servers", bootstrap, why, sizeof(why)),
        RD_KAFKA_CONF_OK);
    rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, c, why, sizeof(why));
    assert_non_null(p);
    ld_demo_gen_t *g = ld_demo_gen_new(&mock_gen);
    ld_demo_record_t r;
    int64_t maxt[2][2] = {{INT64_MIN, INT64_MIN}, {INT64_MIN, INT64_MIN}};
    int64_t *ev = calloc(MOCK_EVENTS, sizeof(int64_t));
    size_t n = 0;
    while (ld_demo_gen_next(g, &r) == 1) {
        int part = (int)(fnv1a(r.key) % 2);
        if (r.time_ms > maxt[part][r.is_label])
            maxt[part][r.is_label] = r.time_ms;
        if (!r.is_label)
            ev[n++] = r.time_ms;
        assert_int_equal(
            rd_kafka_producev(
                p, RD_KAFKA_V_TOPIC(r.is_label ? "labels" : "events"),
                RD_KAFKA_V_PARTITION(part),
                RD_KAFKA_V_KEY(r.key, strlen(r.key)),
                RD_KAFKA_V_VALUE((void *)r.value, r.len),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
            RD_KAFKA_RESP_ERR_NO_ERROR);
        rd_kafka_poll(p, 0);
    }
    ld_demo_gen_destroy(g);
    assert_int_equal(rd_kafka_flush(p, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(p);
    int64_t w = INT64_MAX, pending = 0;
    for (int k = 0; k < 4; k++)
        if (maxt[k / 2][k % 2] - 1000 < w)
            w = maxt[k / 2][k % 2] - 1000;
    *in_range = 0;
    for (size_t i = 0; i < n; i++)
        if (ev[i] >= from) {
            ++*in_range;
            pending += !(w > ev[i] + 20000);
        }
    free(ev);
    return pending;
}

static void mock_config(const char *path, const char *bootstrap)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f,
            "kafka:\n  bootstrap.servers: %s\n  fetch.wait.max.ms: 10\n"
            "log:\n  level: warn\n"
            "pipeline:\n  events_topic: events\n  labels_topic: labels\n"
            "  dlq_topic: learnd.dlq\n  group_id: g\n  format: avro\n"
            "  event_schema: %s/schemas/event.avsc\n"
            "  label_schema: %s/schemas/label.avsc\n"
            "  key_field: event_id\n  event_time_field: event_time\n"
            "  label_time_field: label_time\n"
            "  dense_fields: [f0, f1, f2, f3]\n"
            "  hash_fields: [country, ad_id, device]\n"
            "  label_field: clicked\n"
            "labeling:\n  window: 20s\n  max_out_of_orderness: 1s\n"
            "  idle_timeout: 0\n"
            "trainer:\n  name: mock\n  hash_bits: 16\n",
            bootstrap, LD_SOURCE_DIR, LD_SOURCE_DIR);
    fclose(f);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *buf = calloc(1, 1 << 22);
    size_t n = fread(buf, 1, (1 << 22) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* The whole command, Kafka side included, on the mock cluster (which
 * cannot look offsets up by time: read from the log start, with a
 * warning): exit 0, every event of the range scored or counted pending,
 * byte-identical JSON from two runs. */
static void test_freshness_on_mock(void **state)
{
    (void)state;
    char why[256], dir[] = "/tmp/test_eval_mock_XXXXXX";
    assert_non_null(mkdtemp(dir));
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "log_level", "3", why, sizeof(why));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, why, sizeof(why));
    assert_non_null(rk);
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, 1);
    assert_non_null(mc);
    assert_int_equal(rd_kafka_mock_topic_create(mc, "events", 2, 1), 0);
    assert_int_equal(rd_kafka_mock_topic_create(mc, "labels", 2, 1), 0);
    assert_int_equal(rd_kafka_mock_topic_create(mc, "learnd.dlq", 1, 1), 0);
    const char *boot = rd_kafka_mock_cluster_bootstraps(mc);
    const int64_t from = T0 + 120000, to = T0 + MOCK_EVENTS * MOCK_STEP;
    int64_t in_range = 0;
    int64_t pending = mock_produce(boot, from, &in_range);
    char cfg[64], json[2][64], from_s[32], to_s[32];
    snprintf(cfg, sizeof(cfg), "%s/c.yaml", dir);
    mock_config(cfg, boot);
    snprintf(from_s, sizeof(from_s), "%lld", (long long)from);
    snprintf(to_s, sizeof(to_s), "%lld", (long long)to);
    for (int i = 0; i < 2; i++) {
        snprintf(json[i], sizeof(json[i]), "--json=%s/%d.json", dir, i);
        char *argv[] = {"freshness", "-c", cfg,         "--from",  from_s,
                        "--to",      to_s, "--cadence", "0,1m,5m", "--warmup",
                        "2m",        "-q", json[i],     NULL};
        assert_int_equal(ld_cmd_backtest(13, argv), 0);
    }
    char *a = slurp(json[0] + 7), *b = slurp(json[1] + 7);
    assert_string_equal(a, b);
    char want[64];
    snprintf(want, sizeof(want), "\"scored\": %lld",
             (long long)(in_range - pending));
    assert_non_null(strstr(a, want));
    snprintf(want, sizeof(want), "\"pending\": %lld", (long long)pending);
    assert_non_null(strstr(a, want));
    assert_true(pending > 0);
    free(a);
    free(b);
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    char rm[128];
    snprintf(rm, sizeof(rm), "rm -rf %s", dir);
    assert_int_equal(system(rm), 0);
}

static void test_bad_settings(void **state)
{
    (void)state;
    ld_trainer_conf_t tc = tconf();
    ld_labeling_conf_t lc = lconf();
    char why[256];
    ld_eval_conf_t ec = {.from_ms = 10, .to_ms = 10, .bucket_ms = 1};
    assert_null(ld_eval_new(&tc, &lc, &ec, why, sizeof(why)));
    assert_non_null(strstr(why, "empty"));
    ec = (ld_eval_conf_t){.from_ms = 0, .to_ms = 1000000, .bucket_ms = 1};
    assert_null(ld_eval_new(&tc, &lc, &ec, why, sizeof(why)));
    assert_non_null(strstr(why, "buckets"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cadence_order),
        cmocka_unit_test(test_staleness),
        cmocka_unit_test(test_json_deterministic),
        cmocka_unit_test(test_scorer_is_champion),
        cmocka_unit_test(test_svg_renders),
        cmocka_unit_test(test_bad_settings),
        cmocka_unit_test(test_freshness_on_mock),
    };
    return cmocka_run_group_tests(tests, load_defaults, free_defaults);
}
