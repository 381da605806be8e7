/* SPDX-License-Identifier: Apache-2.0 */
/* `learnd freshness` on the test broker (issue #19). Two demo streams of
 * 60 h of event time, one stationary, one whose true model changes 25 h
 * after the scored range starts. On the stationary one all cadences'
 * loglosses agree within a tolerance derived from the sample size; after
 * the drift the loss grows with the cadence, 0 < 10m < 1h < 1d, by margins
 * asserted below. The same command twice gives byte-identical JSON; events
 * still undecided at T1 are counted exactly; usage errors exit 2 and a
 * range that retention deleted exits 1 naming the partition and offsets. */
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/demo.h"
#include "testutil.h"

#define STEP_MS  2000
#define PER_HOUR (3600000 / STEP_MS)
#define EVENTS   (60 * PER_HOUR)
#define HOUR     INT64_C(3600000)
#define START    INT64_C(1767225600000) /* 2026-01-01 */
#define FROM     (START + 6 * HOUR)
#define DRIFT_AT (31 * PER_HOUR) /* from + 1 d + 1 h: the 1d copy is stale */
#define WINDOW   INT64_C(300000)
#define OOO      INT64_C(5000)
#define PARTS    2

static char prefix[128];
static char tmpdir[64];

static uint32_t fnv1a(const char *s)
{
    uint32_t h = 2166136261u;
    while (*s)
        h = (h ^ (uint8_t)*s++) * 16777619u;
    return h;
}

static ld_demo_gen_conf_t stream(int drift)
{
    return (ld_demo_gen_conf_t){.seed = drift ? 23 : 24,
                                .n_events = EVENTS,
                                .drift_at = drift ? DRIFT_AT : EVENTS,
                                .start_time_ms = START,
                                .step_ms = STEP_MS,
                                .label_delay_ms = 60000,
                                .early_label_share = 0.02};
}

/* Events of [FROM, to) the joiner cannot have decided at the end of the
 * input: e + window >= W, W the lowest side's max time - ooo. */
static int64_t expect_pending(const ld_demo_gen_conf_t *gc, int64_t to)
{
    ld_demo_gen_t *g = ld_demo_gen_new(gc);
    int64_t maxt[PARTS][2];
    for (int p = 0; p < PARTS; p++)
        maxt[p][0] = maxt[p][1] = INT64_MIN;
    ld_demo_record_t r;
    size_t n = 0;
    int64_t *ev = calloc((size_t)EVENTS, sizeof(int64_t));
    while (ld_demo_gen_next(g, &r) == 1) {
        int p = (int)(fnv1a(r.key) % PARTS);
        if (r.time_ms > maxt[p][r.is_label])
            maxt[p][r.is_label] = r.time_ms;
        if (!r.is_label)
            ev[n++] = r.time_ms;
    }
    ld_demo_gen_destroy(g);
    int64_t w = INT64_MAX;
    for (int p = 0; p < PARTS; p++)
        for (int k = 0; k < 2; k++)
            if (maxt[p][k] - OOO < w)
                w = maxt[p][k] - OOO;
    int64_t pending = 0;
    for (size_t i = 0; i < n; i++)
        pending += ev[i] >= FROM && ev[i] < to && !(w > ev[i] + WINDOW);
    free(ev);
    return pending;
}

static void write_config(const char *path, const char *inputs)
{
    FILE *f = ld_test_config_demo(path, inputs);
    fprintf(f,
            "labeling:\n"
            "  window: 5m\n"
            "  max_out_of_orderness: 5s\n"
            "trainer:\n"
            "  name: fresh\n"
            "  hash_bits: 18\n"
            "  learning_rate: 0.05\n"
            "checkpoint:\n"
            "  dir: %s/models\n",
            tmpdir);
    fclose(f);
}

/* Runs learnd with argv (NULL-terminated after argv[0] = LD_LEARND_BIN)
 * into log; returns its exit code. */
static int learnd(const char *log, char **argv)
{
    return ld_test_wait_exit(ld_test_spawn(argv, log), 300000);
}

static json_t *freshness(const char *cfg, int64_t to, const char *json,
                         const char *log)
{
    char from_s[32], to_s[32], jarg[300];
    snprintf(from_s, sizeof(from_s), "%" PRId64, FROM);
    snprintf(to_s, sizeof(to_s), "%" PRId64, to);
    snprintf(jarg, sizeof(jarg), "--json=%s", json);
    char *argv[] = {LD_LEARND_BIN, "freshness",   "-c",       (char *)cfg,
                    "--from",      from_s,        "--to",     to_s,
                    "--cadence",   "0,10m,1h,1d", "--warmup", "6h",
                    "--bucket",    "1h",          jarg,       NULL};
    int rc = learnd(log, argv);
    if (rc)
        ld_test_show_tail(log, 20);
    LD_TEST_EQ_I64("freshness exit code", 0, rc);
    json_error_t err;
    json_t *doc = json_load_file(json, 0, &err);
    LD_TEST_ASSERT(doc, "%s: %s", json, err.text);
    return doc;
}

/* Logloss of line i over the windows starting in [a, b), and the
 * examples. */
static double loss_between(json_t *doc, size_t i, int64_t a, int64_t b,
                           double *n)
{
    json_t *w = json_object_get(
        json_array_get(json_object_get(doc, "lines"), i), "windows");
    double sl = 0;
    *n = 0;
    size_t k;
    json_t *x;
    json_array_foreach(w, k, x)
    {
        int64_t t = json_integer_value(json_object_get(x, "start_ms"));
        double m = (double)json_integer_value(json_object_get(x, "examples"));
        if (t >= a && t < b && m > 0) {
            sl += m * json_real_value(json_object_get(x, "logloss"));
            *n += m;
        }
    }
    return sl / *n;
}

static const char *line_name(json_t *doc, size_t i)
{
    return json_string_value(json_object_get(
        json_array_get(json_object_get(doc, "lines"), i), "name"));
}

static int same_file(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb, ca, cb;
    while (same && ((ca = fgetc(fa)) != EOF) | ((cb = fgetc(fb)) != EOF))
        same = ca == cb;
    if (fa)
        fclose(fa);
    if (fb)
        fclose(fb);
    return same;
}

/* Deletes the records of topic/partition below offset (as 0018). */
static void delete_below(rd_kafka_t *rk, const char *topic, int32_t partition,
                         int64_t offset)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition)->offset = offset;
    rd_kafka_DeleteRecords_t *del = rd_kafka_DeleteRecords_new(l);
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_DeleteRecords(rk, &del, 1, NULL, q);
    rd_kafka_DeleteRecords_destroy(del);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    LD_TEST_ASSERT(ev && !rd_kafka_event_error(ev), "DeleteRecords failed");
    rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
}

static void usage_errors(const char *cfg)
{
    char log[256];
    snprintf(log, sizeof(log), "%s/usage.log", tmpdir);
    char *t_le_t0[] = {LD_LEARND_BIN, "freshness",  "-c",   (char *)cfg,
                       "--from",      "2026-01-02", "--to", "2026-01-01",
                       "--cadence",   "0,1h",       NULL};
    LD_TEST_EQ_I64("T1 <= T0", 2, learnd(log, t_le_t0));
    LD_TEST_ASSERT(ld_test_file_has(log, "learnd freshness: --to must be "
                                         "after --from"),
                   "no T1 <= T0 message in %s", log);
    char *bad_cad[] = {LD_LEARND_BIN, "freshness",  "-c",   (char *)cfg,
                       "--from",      "2026-01-01", "--to", "2026-01-02",
                       "--cadence",   "0,10x",      NULL};
    LD_TEST_EQ_I64("bad cadence", 2, learnd(log, bad_cad));
    LD_TEST_ASSERT(ld_test_file_has(log, "learnd freshness: --cadence: "
                                         "'0,10x' is not a list"),
                   "no cadence message in %s", log);
    char *bad_time[] = {LD_LEARND_BIN,  "backtest",   "-c",     (char *)cfg,
                        "--checkpoint", "1",          "--from", "yesterday",
                        "--to",         "2026-01-02", NULL};
    LD_TEST_EQ_I64("bad time", 2, learnd(log, bad_time));
    LD_TEST_ASSERT(ld_test_file_has(log, "learnd backtest: --from: "
                                         "'yesterday' is not a time"),
                   "no time message in %s", log);
}

int main(void)
{
    ld_test_name(prefix, sizeof(prefix), "fr");
    ld_test_tmpdir(tmpdir, sizeof(tmpdir), "0023");
    rd_kafka_t *rk = ld_test_new(RD_KAFKA_PRODUCER, ld_test_conf_new());
    char in[2][160], events[2][256], labels[2][256], cfg[2][256];
    for (int d = 0; d < 2; d++) {
        snprintf(in[d], sizeof(in[d]), "%s%s", prefix, d ? "d" : "s");
        ld_test_create_demo_inputs(rk, in[d], PARTS, events[d], labels[d],
                                   sizeof(events[d]));
        ld_demo_gen_conf_t gc = stream(d);
        ld_test_produce_demo(rk, &gc, events[d], labels[d], PARTS, 0);
        snprintf(cfg[d], sizeof(cfg[d]), "%s/%s.yaml", tmpdir,
                 d ? "drift" : "stationary");
        write_config(cfg[d], in[d]);
    }
    usage_errors(cfg[0]);
    const int64_t to = START + (int64_t)EVENTS * STEP_MS;
    char json[3][256], log[256];
    for (int i = 0; i < 3; i++)
        snprintf(json[i], sizeof(json[i]), "%s/f%d.json", tmpdir, i);
    snprintf(log, sizeof(log), "%s/freshness.log", tmpdir);

    /* Stationary: every cadence within 4 standard errors of the mean
     * logloss over n examples (per-example logloss sd < 0.8 here: p stays
     * in [0.03, 0.97]). */
    json_t *st = freshness(cfg[0], to, json[0], log);
    double n, l0 = loss_between(st, 0, FROM, to, &n);
    double tol = 4 * 0.8 / sqrt(n);
    for (size_t i = 1; i < 4; i++) {
        double li = loss_between(st, i, FROM, to, &n);
        ld_test_say("stationary: cadence %s logloss %.5f (0: %.5f, tol %.5f)",
                    line_name(st, i), li, l0, tol);
        LD_TEST_ASSERT(fabs(li - l0) < tol, "cadence %s: %.5f vs %.5f",
                       line_name(st, i), li, l0);
    }
    json_decref(st);

    /* Drift: after it, loss grows with the cadence. */
    json_t *dr = freshness(cfg[1], to, json[1], log);
    const int64_t drift = START + (int64_t)DRIFT_AT * STEP_MS;
    double l[4];
    for (size_t i = 0; i < 4; i++) {
        l[i] = loss_between(dr, i, drift, drift + 12 * HOUR, &n);
        ld_test_say("drift: cadence %s logloss %.5f over %.0f examples",
                    line_name(dr, i), l[i], n);
    }
    LD_TEST_ASSERT(strcmp(line_name(dr, 3), "1d") == 0, "lines: %s",
                   line_name(dr, 3));
    LD_TEST_ASSERT(l[0] < l[1] && l[1] < l[2], "0 %.5f, 10m %.5f, 1h %.5f",
                   l[0], l[1], l[2]);
    /* a day-old copy misses the new concept for 23 of these 12 hours */
    LD_TEST_ASSERT(l[3] - l[2] > 5 * tol, "1d %.5f vs 1h %.5f", l[3], l[2]);
    ld_demo_gen_conf_t gc = stream(1);
    json_t *counts = json_object_get(dr, "counts");
    LD_TEST_EQ_I64("pending at T1", expect_pending(&gc, to),
                   json_integer_value(json_object_get(counts, "pending")));
    LD_TEST_EQ_I64(
        "late or duplicate", 0,
        json_integer_value(json_object_get(counts, "late_or_duplicate")));
    LD_TEST_EQ_I64(
        "scoring copies", 3,
        json_integer_value(json_object_get(counts, "scoring_copies")));
    LD_TEST_EQ_I64(
        "bytes per copy", ((1 << 18) + 21) * 4,
        json_integer_value(json_object_get(counts, "bytes_per_copy")));
    json_decref(dr);
    /* Determinism: the same command, the same bytes. */
    json_decref(freshness(cfg[1], to, json[2], log));
    LD_TEST_ASSERT(same_file(json[1], json[2]), "%s and %s differ", json[1],
                   json[2]);

    /* Retention: the range needs partition 1's first records. */
    delete_below(rk, events[0], 1, 100);
    char from_s[32], to_s[32];
    snprintf(from_s, sizeof(from_s), "%" PRId64, FROM);
    snprintf(to_s, sizeof(to_s), "%" PRId64, to);
    char *gap[] = {LD_LEARND_BIN, "freshness", "-c", cfg[0],      "--from",
                   from_s,        "--to",      to_s, "--cadence", "0",
                   "--warmup",    "6h",        NULL};
    LD_TEST_EQ_I64("retention gap", 1, learnd(log, gap));
    char text[512];
    snprintf(text, sizeof(text),
             "learnd freshness: topic %s partition 1: offsets 0..99 are gone "
             "(retention moved the log start to 100)",
             events[0]);
    LD_TEST_ASSERT(ld_test_file_has(log, text), "no \"%s\" in %s", text, log);
    rd_kafka_destroy(rk);
    ld_test_rm_rf(tmpdir);
    return 0;
}
