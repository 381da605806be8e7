/* SPDX-License-Identifier: Apache-2.0 */
/* `learnd backtest` reproduces what `learnd run` recorded (issue #19). A
 * run reads stream A and publishes version 1 at the end of its input; more
 * input B follows and a second run (warm start) publishes version 2, whose
 * checkpoint records the prequential metrics of the model over every
 * example that run trained on (metrics_window holds them all) and those of
 * its champion, version 1, on the same examples. `learnd backtest
 * --checkpoint 1` over exactly those examples' event times must give the
 * same numbers, bit for bit: the same examples in the same micro-batches,
 * the same scores. Then the bad checkpoints: unknown (exit 1), corrupt
 * (exit 1), another feature map (exit 2), each one line naming it. */
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/demo.h"
#include "testutil.h"
#include "trainer/checkpoint.h"

#define STEP_MS 500
#define EVENTS  20000
#define START   INT64_C(1767225600000)
#define WINDOW  INT64_C(20000)
#define OOO     INT64_C(2000)
#define PARTS   2

static char prefix[128];
static char tmpdir[64];

static uint32_t fnv1a(const char *s)
{
    uint32_t h = 2166136261u;
    while (*s)
        h = (h ^ (uint8_t)*s++) * 16777619u;
    return h;
}

/* Raises maxt[p][side] to the newest time of gc's stream there. */
static void newest(const ld_demo_gen_conf_t *gc, int64_t maxt[PARTS][2])
{
    ld_demo_gen_t *g = ld_demo_gen_new(gc);
    ld_demo_record_t r;
    while (ld_demo_gen_next(g, &r) == 1) {
        int p = (int)(fnv1a(r.key) % PARTS);
        if (r.time_ms > maxt[p][r.is_label])
            maxt[p][r.is_label] = r.time_ms;
    }
    ld_demo_gen_destroy(g);
}

/* The joiner's final watermark over input with these newest times. */
static int64_t watermark(int64_t maxt[PARTS][2])
{
    int64_t w = INT64_MAX;
    for (int p = 0; p < PARTS; p++)
        for (int k = 0; k < 2; k++)
            if (maxt[p][k] - OOO < w)
                w = maxt[p][k] - OOO;
    return w;
}

/* extra: more pipeline: rows ("" for none) */
static void write_config(const char *path, const char *names, int bits,
                         const char *extra)
{
    FILE *f = ld_test_config_demo(path, names);
    fprintf(f,
            "%s"
            "labeling:\n"
            "  window: 20s\n"
            "  max_out_of_orderness: 2s\n"
            "trainer:\n"
            "  name: bt\n"
            "  hash_bits: %d\n"
            "  batch_size: 64\n"
            "  metrics_window: 10000000\n"
            "checkpoint:\n"
            "  dir: %s/models\n"
            "triggers:\n"
            "  time_enabled: false\n"
            "  performance_enabled: false\n"
            "  drift_enabled: false\n"
            "  gate_enabled: false\n"
            "  volume_examples: 100000000\n",
            extra, bits, tmpdir);
    fclose(f);
}

static void run(const char *cfg, const char *log)
{
    int rc = ld_test_wait_exit(ld_test_spawn_run(LD_LEARND_BIN, cfg, 1, log),
                               120000);
    if (rc)
        ld_test_show_tail(log, 30);
    LD_TEST_EQ_I64("run exit code", 0, rc);
}

static int learnd(const char *log, char **argv)
{
    return ld_test_wait_exit(ld_test_spawn(argv, log), 300000);
}

static json_t *line(json_t *doc, const char *name)
{
    size_t i;
    json_t *l;
    json_array_foreach(json_object_get(doc, "lines"), i, l)
    {
        if (strcmp(json_string_value(json_object_get(l, "name")), name) == 0)
            return json_object_get(l, "overall");
    }
    LD_TEST_FAIL("no line %s", name);
}

/* The backtest's overall metrics of one line equal m exactly. */
static void same(const char *what, json_t *o, const Learnd__V1__Metrics *m)
{
    LD_TEST_ASSERT(m, "%s: the checkpoint has no metrics", what);
    LD_TEST_EQ_I64(what, (int64_t)m->examples,
                   json_integer_value(json_object_get(o, "examples")));
    static const char *const names[] = {"logloss", "auc", "accuracy",
                                        "calibration"};
    const double want[] = {m->logloss, m->auc, m->accuracy, m->calibration};
    for (int i = 0; i < 4; i++) {
        double got = json_real_value(json_object_get(o, names[i]));
        ld_test_say("%s %s: run %.17g backtest %.17g", what, names[i], want[i],
                    got);
        LD_TEST_ASSERT(got == want[i], "%s %s: run %.17g, backtest %.17g", what,
                       names[i], want[i], got);
    }
}

static void bad_checkpoints(const char *cfg, const char *from, const char *to)
{
    char log[256], bad[256], good[256], cfg16[256];
    snprintf(log, sizeof(log), "%s/bad.log", tmpdir);
    char *unknown[] = {LD_LEARND_BIN,  "backtest", "-c",     (char *)cfg,
                       "--checkpoint", "9",        "--from", (char *)from,
                       "--to",         (char *)to, NULL};
    LD_TEST_EQ_I64("unknown checkpoint", 1, learnd(log, unknown));
    LD_TEST_ASSERT(ld_test_file_has(log, "learnd backtest: unknown checkpoint "
                                         "9: no "),
                   "no unknown-checkpoint message in %s", log);
    /* one byte of version 1 changed */
    snprintf(good, sizeof(good), "%s/models/bt/1.ckpt", tmpdir);
    snprintf(bad, sizeof(bad), "%s/bad.ckpt", tmpdir);
    FILE *in = fopen(good, "rb"), *out = fopen(bad, "wb");
    LD_TEST_ASSERT(in && out, "copy %s", good);
    int c;
    long at = 0;
    while ((c = fgetc(in)) != EOF)
        fputc(at++ == 200 ? c ^ 0x40 : c, out);
    fclose(in);
    fclose(out);
    char *corrupt[] = {LD_LEARND_BIN,  "backtest", "-c",     (char *)cfg,
                       "--checkpoint", bad,        "--from", (char *)from,
                       "--to",         (char *)to, NULL};
    LD_TEST_EQ_I64("corrupt checkpoint", 1, learnd(log, corrupt));
    char text[512];
    snprintf(text, sizeof(text), "learnd backtest: checkpoint %s: ", bad);
    LD_TEST_ASSERT(ld_test_file_has(log, text), "no \"%s\" in %s", text, log);
    /* the same model name, another hash width */
    snprintf(cfg16, sizeof(cfg16), "%s/bt16.yaml", tmpdir);
    write_config(cfg16, prefix, 16, "");
    char *other[] = {LD_LEARND_BIN,  "backtest", "-c",     cfg16,
                     "--checkpoint", "1",        "--from", (char *)from,
                     "--to",         (char *)to, NULL};
    LD_TEST_EQ_I64("feature map mismatch", 2, learnd(log, other));
    LD_TEST_ASSERT(ld_test_file_has(log, "learnd backtest: checkpoint 1: its "
                                         "feature map differs: hash_bits 18, "
                                         "the config's 16"),
                   "no mismatch message in %s", log);
    /* the same bits, seed and dense fields, one more cross: only the
     * checkpoint's feature map hash tells */
    write_config(cfg16, prefix, 18, "  crosses: [\"country,device\"]\n");
    LD_TEST_EQ_I64("feature map hash mismatch", 2, learnd(log, other));
    LD_TEST_ASSERT(ld_test_file_has(log, "learnd backtest: checkpoint 1: its "
                                         "feature map hash "),
                   "no feature map hash message in %s", log);
}

int main(void)
{
    ld_test_name(prefix, sizeof(prefix), "bt");
    ld_test_tmpdir(tmpdir, sizeof(tmpdir), "0024");
    rd_kafka_t *rk = ld_test_new(RD_KAFKA_PRODUCER, ld_test_conf_new());
    char events[256], labels[256], cfg[256], log[256], json[256];
    ld_test_create_demo_inputs(rk, prefix, PARTS, events, labels,
                               sizeof(events));
    ld_test_create_outputs(rk, prefix, 0);
    snprintf(cfg, sizeof(cfg), "%s/bt.yaml", tmpdir);
    snprintf(log, sizeof(log), "%s/run.log", tmpdir);
    snprintf(json, sizeof(json), "%s/bt.json", tmpdir);
    write_config(cfg, prefix, 18, "");
    int64_t maxt[PARTS][2];
    for (int p = 0; p < PARTS; p++)
        maxt[p][0] = maxt[p][1] = INT64_MIN;

    ld_demo_gen_conf_t a = {.seed = 31,
                            .n_events = EVENTS,
                            .drift_at = EVENTS / 2,
                            .start_time_ms = START,
                            .step_ms = STEP_MS,
                            .label_delay_ms = 3000,
                            .early_label_share = 0.02};
    ld_test_produce_demo(rk, &a, events, labels, PARTS, 0);
    newest(&a, maxt);
    const int64_t from = watermark(maxt) - WINDOW; /* undecided after A */
    run(cfg, log);
    ld_demo_gen_conf_t b = a;
    b.seed = 32;
    b.drift_at = EVENTS;
    b.start_time_ms = START + (int64_t)EVENTS * STEP_MS + 1000;
    ld_test_produce_demo(rk, &b, events, labels, PARTS, 0);
    newest(&b, maxt);
    const int64_t to = watermark(maxt) - WINDOW; /* decided after B */
    run(cfg, log);

    char from_s[32], to_s[32], jarg[300];
    snprintf(from_s, sizeof(from_s), "%" PRId64, from);
    snprintf(to_s, sizeof(to_s), "%" PRId64, to);
    snprintf(jarg, sizeof(jarg), "--json=%s", json);
    char svg[256], sarg[300];
    snprintf(svg, sizeof(svg), "%s/bt.svg", tmpdir);
    snprintf(sarg, sizeof(sarg), "--svg=%s", svg);
    char *bt[] = {LD_LEARND_BIN, "backtest", "-c",   cfg,    "--checkpoint",
                  "1",           "--from",   from_s, "--to", to_s,
                  jarg,          sarg,       NULL};
    int rc = learnd(log, bt);
    if (rc)
        ld_test_show_tail(log, 20);
    LD_TEST_EQ_I64("backtest exit code", 0, rc);
    /* the chart: one line per model (v1 frozen, continual) */
    LD_TEST_ASSERT(ld_test_file_has(svg, "<polyline fill=\"none\" "
                                         "stroke=\"#1f77b4\"") &&
                       ld_test_file_has(svg, "<polyline fill=\"none\" "
                                             "stroke=\"#d62728\"") &&
                       ld_test_file_has(svg, ">continual</text>"),
                   "%s lacks a line", svg);
    json_error_t jerr;
    json_t *doc = json_load_file(json, 0, &jerr);
    LD_TEST_ASSERT(doc, "%s: %s", json, jerr.text);
    LD_TEST_EQ_I64("pending", 0,
                   json_integer_value(json_object_get(
                       json_object_get(doc, "counts"), "pending")));

    char v2[256], why[256];
    snprintf(v2, sizeof(v2), "%s/models/bt/2.ckpt", tmpdir);
    ld_ckpt_t *c = NULL;
    LD_TEST_ASSERT(ld_ckpt_read_file(v2, &c, why, sizeof(why)) == LD_OK,
                   "%s: %s", v2, why);
    const Learnd__V1__Checkpoint *m = ld_ckpt_message(c);
    same("continual", line(doc, "continual"), m->metrics);
    same("frozen v1", line(doc, "v1"), m->champion_metrics);
    ld_ckpt_destroy(c);
    json_decref(doc);

    bad_checkpoints(cfg, from_s, to_s);
    rd_kafka_destroy(rk);
    ld_test_rm_rf(tmpdir);
    return 0;
}
