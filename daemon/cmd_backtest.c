/* SPDX-License-Identifier: Apache-2.0 */
/* `learnd backtest` and `learnd freshness`: read an event-time range of the
 * input topics (no consumer group, nothing written), join it with the
 * configured label rules and score it with checkpoints, the continually
 * trained model and deployed copies refreshed at cadences. */
#define _GNU_SOURCE /* strptime, timegm */
#include "daemon/cmd_backtest.h"
#include "daemon/replay.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon/cli.h"
#include "daemon/eval.h"
#include "daemon/eval_offsets.h"
#include "daemon/ingest.h"
#include "daemon/signals.h"
#include "pipeline/decode.h"
#include "pipeline/kafka.h"
#include "pipeline/pipeline.h"
#include "trainer/checkpoint.h"

#define MAX_LIST 32

static const char backtest_usage[] =
    "usage: learnd backtest -c FILE --checkpoint V[,V2,...] --from T0 --to T1\n"
    "                       [--bucket 1h] [--json FILE] [--svg FILE]\n"
    "\n"
    "Reads the input topics over event time [T0, T1) (each partition from\n"
    "T0 minus the label window and max_out_of_orderness, found with the\n"
    "records' Kafka timestamps; no consumer group, nothing written), joins\n"
    "them with FILE's label rules and scores every matured example of the\n"
    "range with each checkpoint frozen and with a continually trained copy\n"
    "that starts from the first one (score, then learn). Prints logloss,\n"
    "AUC, calibration and accuracy (RMSE for linear models) overall and per\n"
    "window; events of the range still without a decision at the end are\n"
    "counted as pending.\n"
    "\n"
    "  -c, --config=FILE        the model's config\n"
    "  --checkpoint=V[,V2,...]  versions in checkpoint.dir, or .ckpt paths\n"
    "  --from=T0, --to=T1       event time: 2026-01-01T00:00:00Z, or epoch ms\n"
    "  --bucket=DURATION        window of the per-window metrics (1h)\n"
    "  --json=FILE              the report as JSON "
    "(schemas/backtest.schema.json)\n"
    "  --svg=FILE               a line chart of the windowed metric\n"
    "  -q, --quiet              no progress on stderr\n"
    "  -h, --help               show this help\n"
    "\n"
    "exit codes: 0 ok, 1 runtime failure (checkpoint unreadable or corrupt,\n"
    "Kafka, a range retention deleted), 2 usage or config error\n";

static const char freshness_usage[] =
    "usage: learnd freshness -c FILE --from T0 --to T1 --cadence C[,C2,...]\n"
    "                        [--checkpoint V | --warmup DURATION]\n"
    "                        [--staleness D[,D2,...] --eval-window W]\n"
    "                        [--bucket 1h] [--json FILE] [--svg FILE]\n"
    "\n"
    "The value of fresh data: one pass over event time [T0, T1) trains the\n"
    "continual model and, for each cadence C, a deployed copy refreshed\n"
    "from it every C of event time (at the end of the first micro-batch\n"
    "past each boundary); every matured example is scored by each copy at\n"
    "its decision time. Cadence 0 is the continual model. Prints each\n"
    "cadence's metrics and its loss relative to cadence 0. With --staleness,\n"
    "the continual model frozen at T1-W-D scores the last window [T1-W, T1)\n"
    "for each age D. The model starts from --checkpoint V, or from zero and\n"
    "trains on --warmup of event time before T0 without scoring it.\n"
    "\n"
    "  -c, --config=FILE        the model's config\n"
    "  --from=T0, --to=T1       event time: 2026-01-01T00:00:00Z, or epoch ms\n"
    "  --cadence=C[,C2,...]     refresh periods: 0, 10m, 1h, 6h, 1d, ...\n"
    "  --checkpoint=V           start from this version (or .ckpt path)\n"
    "  --warmup=DURATION        train from scratch on [T0-DURATION, T0)\n"
    "  --staleness=D[,D2,...]   ages of frozen copies (needs --eval-window)\n"
    "  --eval-window=W          the window the staleness curve scores\n"
    "  --bucket=DURATION        window of the per-window metrics (1h)\n"
    "  --json=FILE, --svg=FILE  the report as JSON, the chart as SVG\n"
    "  -q, --quiet              no progress on stderr\n"
    "  -h, --help               show this help\n"
    "\n"
    "exit codes: 0 ok, 1 runtime failure, 2 usage or config error\n";

typedef struct args {
    const char *verb, *usage;
    int fresh, quiet;
    const char *config, *ckpts, *json, *svg;
    int64_t from, to, bucket, warmup, eval_window;
    int has_from, has_to;
    int64_t cadence[MAX_LIST], stale[MAX_LIST];
    size_t ncad, nstale;
} args_t;

/* ---- Arguments ---------------------------------------------------------- */

/* Epoch milliseconds, or an ISO 8601 UTC time (date, optional time). */
static int parse_time(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*end && end != s && !errno) {
        *out = v;
        return 0;
    }
    static const char *const fmts[] = {"%Y-%m-%dT%H:%M:%SZ",
                                       "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%MZ",
                                       "%Y-%m-%dT%H:%M", "%Y-%m-%d"};
    for (size_t i = 0; i < sizeof(fmts) / sizeof(fmts[0]); i++) {
        struct tm tm = {0};
        const char *e = strptime(s, fmts[i], &tm);
        if (e && !*e) {
            *out = (int64_t)timegm(&tm) * 1000;
            return 0;
        }
    }
    return -1;
}

static int parse_duration(const char *s, int64_t *out)
{
    static const ld_conf_row_t row = {
        "duration", LD_CONF_DURATION, 0, NULL, 0, 1e15, NULL, ""};
    char why[128];
    return ld_conf_parse_value(&row, s, out, why, sizeof(why)) ? -1 : 0;
}

/* A comma-separated list of durations, each once. */
static int parse_durations(const char *s, int64_t *out, size_t *n)
{
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s", s);
    *n = 0;
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t;
         t = strtok_r(NULL, ",", &save)) {
        while (isspace((unsigned char)*t))
            t++;
        if (*n == MAX_LIST || parse_duration(t, &out[*n]))
            return -1;
        for (size_t i = 0; i < *n; i++)
            if (out[i] == out[*n])
                return -1;
        (*n)++;
    }
    return *n ? 0 : -1;
}

enum {
    OPT_CKPT = 256,
    OPT_FROM,
    OPT_TO,
    OPT_BUCKET,
    OPT_JSON,
    OPT_SVG,
    OPT_CADENCE,
    OPT_WARMUP,
    OPT_STALE,
    OPT_EVAL_WINDOW
};

/* One option's value into a; an exit code on a usage error, else -1. */
static int take_opt(args_t *a, int c)
{
    const char *v = optarg;
    switch (c) {
    case 'c':
        a->config = v;
        return -1;
    case 'q':
        a->quiet = 1;
        return -1;
    case OPT_CKPT:
        a->ckpts = v;
        return -1;
    case OPT_JSON:
        a->json = v;
        return -1;
    case OPT_SVG:
        a->svg = v;
        return -1;
    case OPT_FROM:
    case OPT_TO:
        if (parse_time(v, c == OPT_FROM ? &a->from : &a->to))
            return ld_cli_usage_error(a->verb, a->usage,
                                      "--%s: '%s' is not a time (use "
                                      "2026-01-01T00:00:00Z or epoch ms)",
                                      c == OPT_FROM ? "from" : "to", v);
        *(c == OPT_FROM ? &a->has_from : &a->has_to) = 1;
        return -1;
    case OPT_BUCKET:
    case OPT_WARMUP:
    case OPT_EVAL_WINDOW: {
        int64_t *d = c == OPT_BUCKET   ? &a->bucket
                     : c == OPT_WARMUP ? &a->warmup
                                       : &a->eval_window;
        if (parse_duration(v, d) || (c != OPT_WARMUP && *d <= 0))
            return ld_cli_usage_error(
                a->verb, a->usage, "--%s: '%s' is not a duration like %s",
                c == OPT_BUCKET   ? "bucket"
                : c == OPT_WARMUP ? "warmup"
                                  : "eval-window",
                v, c == OPT_WARMUP ? "0, 6h, 1d" : "10m, 1h, 1d");
        return -1;
    }
    case OPT_CADENCE:
    case OPT_STALE:
        if (parse_durations(v, c == OPT_CADENCE ? a->cadence : a->stale,
                            c == OPT_CADENCE ? &a->ncad : &a->nstale))
            return ld_cli_usage_error(
                a->verb, a->usage,
                "--%s: '%s' is not a list of distinct durations like "
                "0,10m,1h,1d",
                c == OPT_CADENCE ? "cadence" : "staleness", v);
        return -1;
    case 'h':
        fputs(a->usage, stdout);
        return LD_EXIT_OK;
    default:
        return LD_EXIT_USAGE;
    }
}

/* Checks what the options say together; an exit code, or -1. */
static int check_args(args_t *a, int argc, char **argv)
{
    if (optind < argc)
        return ld_cli_usage_error(a->verb, a->usage, "unexpected argument '%s'",
                                  argv[optind]);
    if (!a->config || !a->has_from || !a->has_to)
        return ld_cli_usage_error(a->verb, a->usage,
                                  "needs -c FILE, --from and --to");
    if (a->to <= a->from)
        return ld_cli_usage_error(a->verb, a->usage,
                                  "--to must be after --from (the range "
                                  "[T0, T1) is empty)");
    if (!a->fresh && !a->ckpts)
        return ld_cli_usage_error(a->verb, a->usage, "needs --checkpoint");
    if (a->fresh && !a->ncad)
        return ld_cli_usage_error(a->verb, a->usage, "needs --cadence");
    if (a->fresh && a->ckpts && strchr(a->ckpts, ','))
        return ld_cli_usage_error(a->verb, a->usage,
                                  "--checkpoint takes one version here");
    if (a->fresh && a->ckpts && a->warmup)
        return ld_cli_usage_error(a->verb, a->usage,
                                  "--checkpoint and --warmup exclude each "
                                  "other");
    if (!!a->nstale != !!a->eval_window)
        return ld_cli_usage_error(a->verb, a->usage,
                                  "--staleness and --eval-window go together");
    if (a->eval_window > a->to - a->from)
        return ld_cli_usage_error(a->verb, a->usage,
                                  "--eval-window is longer than the range");
    for (size_t i = 0; i < a->nstale; i++)
        if (a->to - a->eval_window - a->stale[i] < a->from - a->warmup) {
            char d[32];
            ld_eval_duration_name(a->stale[i], d, sizeof(d));
            return ld_cli_usage_error(
                a->verb, a->usage,
                "--staleness: a copy %s old would be frozen before the "
                "model's start (T0 - warmup): lengthen --warmup or move "
                "--from back",
                d);
        }
    return -1;
}

static int parse_args(args_t *a, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"checkpoint", required_argument, NULL, OPT_CKPT},
        {"from", required_argument, NULL, OPT_FROM},
        {"to", required_argument, NULL, OPT_TO},
        {"bucket", required_argument, NULL, OPT_BUCKET},
        {"json", required_argument, NULL, OPT_JSON},
        {"svg", required_argument, NULL, OPT_SVG},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {"cadence", required_argument, NULL, OPT_CADENCE},
        {"warmup", required_argument, NULL, OPT_WARMUP},
        {"staleness", required_argument, NULL, OPT_STALE},
        {"eval-window", required_argument, NULL, OPT_EVAL_WINDOW},
        {NULL, 0, NULL, 0}};
    /* backtest takes the first nine */
    static struct option backtest_opts[10];
    memcpy(backtest_opts, longopts, 9 * sizeof(longopts[0]));
    a->bucket = 3600000;
    int c, code;
    optind = 0;
    while ((c = ld_cli_getopt(argc, argv, "c:qh",
                              a->fresh ? longopts : backtest_opts, a->usage)) !=
           -1)
        if ((code = take_opt(a, c)) >= 0)
            return code;
    return check_args(a, argc, argv);
}

/* ---- Checkpoints -------------------------------------------------------- */

typedef struct ckpts {
    size_t n;
    char name[MAX_LIST][64];
    char sha[MAX_LIST][65];
    uint64_t version[MAX_LIST];
    ld_snapshot_t *snap[MAX_LIST];
    /* event time of the last example scored before it was published (its
     * metrics' window end; 0 unknown), and the chart's label for it */
    int64_t published_ms[MAX_LIST];
    char mark[MAX_LIST][80];
} ckpts_t;

static void hex(const uint8_t *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
    out[2 * n] = '\0';
}

/* Whether checkpoint m hashes features as conf does: seed, bits and dense
 * width first (the reason a user can act on), then the feature map hash
 * when the checkpoint has one (fields, namespaces, crosses). */
static int same_features(const Learnd__V1__ModelSpec *s, const char *fmap_sha,
                         const ld_config_t *conf, int64_t hash_bits, char *why,
                         size_t size)
{
    char h[65];
    if (s->hash_bits != (uint32_t)hash_bits)
        snprintf(why, size,
                 "its feature map differs: hash_bits %u, the "
                 "config's %lld",
                 s->hash_bits, (long long)hash_bits);
    else if (s->hash_seed != (uint32_t)conf->pipeline.hash_seed)
        snprintf(why, size,
                 "its feature map differs: hash_seed %u, the "
                 "config's %lld",
                 s->hash_seed, (long long)conf->pipeline.hash_seed);
    else if (s->dense_dim != (uint32_t)conf->pipeline.dense_fields.n)
        snprintf(why, size,
                 "its feature map differs: %u dense fields, the "
                 "config's %zu",
                 s->dense_dim, conf->pipeline.dense_fields.n);
    else if (s->feature_map_hash.len == 32 &&
             (hex(s->feature_map_hash.data, 32, h), strcmp(h, fmap_sha) != 0))
        snprintf(why, size,
                 "its feature map hash %.12s... is not the config's "
                 "%.12s... (other fields, namespaces or crosses)",
                 h, fmap_sha);
    else
        return 1;
    return 0;
}

/* Reads each named checkpoint; an exit code (message printed), or -1. */
static int load_ckpts(const args_t *a, const ld_config_t *conf,
                      const ld_trainer_conf_t *tc, const char *fmap_sha,
                      ckpts_t *k)
{
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s", a->ckpts ? a->ckpts : "");
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t;
         t = strtok_r(NULL, ",", &save)) {
        if (k->n == MAX_LIST)
            return ld_cli_usage_error(a->verb, a->usage,
                                      "at most %d checkpoints", MAX_LIST);
        char file[1100], why[512];
        int digits = ld_replay_ckpt_path(conf, t, file, sizeof(file));
        ld_ckpt_t *c = NULL;
        ld_err_t err = ld_ckpt_read_file(file, &c, why, sizeof(why));
        if (err == LD_ERR_NOENT) {
            fprintf(stderr, "learnd %s: unknown checkpoint %s: no %s\n",
                    a->verb, t, file);
            return LD_EXIT_RUNTIME;
        }
        if (err) {
            fprintf(stderr, "learnd %s: checkpoint %s: %s\n", a->verb, t, why);
            return LD_EXIT_RUNTIME;
        }
        const Learnd__V1__Checkpoint *m = ld_ckpt_message(c);
        int ok = m->spec && same_features(m->spec, fmap_sha, conf,
                                          tc->hash_bits, why, sizeof(why));
        size_t i = k->n;
        if (ok) {
            k->snap[i] = ld_ckpt_snapshot(c);
            k->version[i] = m->lineage ? m->lineage->version : 0;
            if (m->lineage && m->lineage->params_sha256.len == 32)
                hex(m->lineage->params_sha256.data, 32, k->sha[i]);
            if (m->metrics && m->metrics->examples)
                k->published_ms[i] = m->metrics->window_end_ms;
            snprintf(k->name[i], sizeof(k->name[i]), "%s%.60s",
                     digits ? "v" : "",
                     digits               ? t
                     : strrchr(file, '/') ? strrchr(file, '/') + 1
                                          : file);
        }
        int has_spec = m->spec != NULL; /* m goes with c */
        ld_ckpt_destroy(c);
        if (!ok) {
            fprintf(stderr, "learnd %s: checkpoint %s: %s\n", a->verb, t,
                    has_spec ? why : "no model spec");
            return LD_EXIT_USAGE;
        }
        if (!k->snap[i]) {
            fprintf(stderr, "learnd %s: out of memory\n", a->verb);
            return LD_EXIT_RUNTIME;
        }
        k->n++;
    }
    return -1;
}

static void ckpts_free(ckpts_t *k)
{
    for (size_t i = 0; i < k->n; i++)
        ld_snapshot_destroy(k->snap[i]);
}

/* ---- Reading ------------------------------------------------------------ */

typedef struct reader {
    const char *verb;
    const ld_config_t *conf;
    const ld_eval_plan_t *pl;
    ld_eval_t *e;
    int64_t seek_ms, goal_ms; /* the watermark runs from seek to goal */
    uint64_t total;           /* offsets to read at most */
    int64_t t0, next_ms;
    int quiet, tty, failed;
} reader_t;

static void on_assigned(void *opaque, rd_kafka_topic_partition_list_t *parts)
{
    reader_t *r = opaque;
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &parts->elems[i];
        for (size_t j = 0; j < r->pl->n; j++)
            if (r->pl->partition[j] == tp->partition &&
                strcmp(r->pl->topic[j], tp->topic) == 0)
                tp->offset = r->pl->first[j];
        if (strcmp(tp->topic, r->conf->pipeline.events_topic) == 0 &&
            ld_eval_assign(r->e, tp->partition) != LD_OK)
            r->failed = 1;
    }
}

/* Records read, event time reached and an estimate of the time left, on
 * stderr once a second (one line that rewrites itself on a terminal). */
static void progress(reader_t *r, int last)
{
    int64_t now = ld_now_mono_ms();
    if (r->quiet || (!last && now < r->next_ms))
        return;
    r->next_ms = now + 1000;
    ld_eval_counts_t c;
    ld_eval_counts(r->e, &c);
    int64_t wm = ld_eval_watermark(r->e);
    double ft = wm > r->seek_ms ? (double)(wm - r->seek_ms) /
                                      (double)(r->goal_ms - r->seek_ms)
                                : 0;
    double fo = r->total ? (double)c.records / (double)r->total : 1;
    double f = ft > fo ? ft : fo;
    f = f > 1 ? 1 : f;
    char reached[32] = "-", eta[32] = "-";
    if (wm > 0) {
        time_t t = (time_t)(wm / 1000);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(reached, sizeof(reached), "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
    double el = (double)(now - r->t0) / 1000.0;
    if (f > 0.01 && !last)
        snprintf(eta, sizeof(eta), "%.0fs", el * (1 - f) / f);
    fprintf(stderr,
            "%slearnd %s: %llu records, %llu examples scored, event time "
            "reached %s, %.0f%%, %.1fs, ETA %s%s",
            r->tty ? "\r" : "", r->verb, (unsigned long long)c.records,
            (unsigned long long)c.scored, reached, 100 * f, el, eta,
            r->tty && !last ? "" : "\n");
    fflush(stderr);
}

/* Reads from the planned offsets until the range is decided or the input
 * that existed at the start is read; an exit code, or -1. */
static int read_range(reader_t *r)
{
    const ld_config_t *conf = r->conf;
    ld_pipeline_conf_t pc = conf->pipeline;
    pc.hash_bits = conf->trainer.hash_bits;
    pc.assign_all = 1;
    char group[128], why[512];
    snprintf(group, sizeof(group), "learnd-%s-%s-%lld", r->verb,
             conf->trainer.name, (long long)getpid());
    pc.group_id = group;
    ld_pipeline_cbs_t cbs = {.opaque = r, .assigned = on_assigned};
    ld_pipeline_t *p =
        ld_pipeline_new(&pc, &conf->kafka, "", &cbs, 30000, why, sizeof(why));
    if (!p) {
        fprintf(stderr, "learnd %s: %s\n", r->verb, why);
        return LD_EXIT_RUNTIME;
    }
    ld_pipeline_set_dry_run(p, 1);
    int code = -1, stopping = 0;
    ld_ingest_t *in = r->failed ? NULL : ld_ingest_new(p, 4096, 0);
    if (!in || ld_ingest_start(in) != LD_OK) {
        fprintf(stderr, "learnd %s: cannot start reading\n", r->verb);
        ld_ingest_destroy(in);
        ld_pipeline_destroy(p);
        return LD_EXIT_RUNTIME;
    }
    for (uint64_t n = 0;; n++) {
        const ld_ingest_item_t *it = ld_ingest_next(in, 100);
        if (it && it->what == LD_INGEST_STOPPED) {
            if (it->err && !stopping) {
                fprintf(stderr, "learnd %s: Kafka: %s\n", r->verb,
                        ld_err_str(it->err));
                code = LD_EXIT_RUNTIME;
            }
            ld_ingest_done(in);
            break;
        }
        if (it && it->what == LD_INGEST_RECORD && !stopping &&
            ld_eval_add(r->e, &it->rec) != LD_OK) {
            fprintf(stderr, "learnd %s: out of memory\n", r->verb);
            code = LD_EXIT_RUNTIME;
        }
        if (it && it->what == LD_INGEST_DEAD && !stopping)
            ld_eval_note_dead(r->e);
        int end = it && it->what == LD_INGEST_CAUGHT_UP;
        if (it)
            ld_ingest_done(in);
        /* Checked after every record: what follows the point where the
         * range is decided changes no metric, so it is not read. */
        if (!stopping && (end || code >= 0 || ld_signals_stop_requested() ||
                          (it && ld_eval_complete(r->e)))) {
            stopping = 1;
            ld_ingest_stop(in);
        }
        if ((n & 1023) == 0)
            progress(r, 0);
    }
    ld_ingest_destroy(in);
    ld_pipeline_destroy(p);
    if (code < 0 && ld_signals_stop_requested()) {
        fprintf(stderr, "learnd %s: interrupted\n", r->verb);
        code = LD_EXIT_RUNTIME;
    }
    return code;
}

/* ---- Reports ------------------------------------------------------------ */

/* SHA-256 of the effective config without the kafka: map, as `learnd run`
 * records it in checkpoint lineage (daemon/run_setup.c). */
static void config_hash_hex(const ld_config_t *conf, char out[65])
{
    char *text = NULL;
    size_t len = 0;
    uint8_t h[32] = {0};
    FILE *f = open_memstream(&text, &len);
    if (f) {
        ld_config_dump(conf, f);
        fclose(f);
        char *kafka = text ? strstr(text, "\nkafka:\n") : NULL;
        if (text)
            ld_ckpt_sha256(text, kafka ? (size_t)(kafka - text) + 1 : len, h);
        free(text);
    }
    hex(h, 32, out);
}

static int write_file_with(const char *verb, const char *path, ld_eval_t *e,
                           const ld_eval_inputs_t *in, const int64_t *marks,
                           const char *const *names, size_t nmarks)
{
    FILE *f = fopen(path, "w");
    ld_err_t err = LD_ERR_IO;
    if (f) {
        err = in ? ld_eval_write_json(e, in, f)
                 : ld_eval_write_svg(e, marks, names, nmarks, f);
        if (fclose(f))
            err = LD_ERR_IO;
    }
    if (err) {
        fprintf(stderr, "learnd %s: cannot write %s: %s\n", verb, path,
                strerror(errno));
        return LD_EXIT_RUNTIME;
    }
    return LD_EXIT_OK;
}

/* Table on stdout, then the files asked for. */
static int report(const char *verb, ld_eval_t *e, const ld_eval_inputs_t *in,
                  const char *json, const char *svg, const int64_t *marks,
                  const char *const *names, size_t nmarks)
{
    ld_eval_print(e, stdout);
    fflush(stdout);
    int code = LD_EXIT_OK;
    if (json && write_file_with(verb, json, e, in, NULL, NULL, 0))
        code = LD_EXIT_RUNTIME;
    if (svg && write_file_with(verb, svg, e, NULL, marks, names, nmarks))
        code = LD_EXIT_RUNTIME;
    return code;
}

static ld_eval_conf_t eval_conf(const args_t *a, const ckpts_t *k)
{
    ld_eval_conf_t ec = {.from_ms = a->from,
                         .to_ms = a->to,
                         .bucket_ms = a->bucket,
                         .warmup_ms = a->warmup,
                         .cadence_ms = a->cadence,
                         .ncadence = a->ncad,
                         .stale_ms = a->stale,
                         .nstale = a->nstale,
                         .eval_window_ms = a->eval_window,
                         .start = k->n ? k->snap[0] : NULL};
    if (!a->fresh) {
        static const char *names[MAX_LIST];
        for (size_t i = 0; i < k->n; i++)
            names[i] = k->name[i];
        ec.frozen = (const ld_snapshot_t *const *)k->snap;
        ec.frozen_names = names;
        ec.nfrozen = k->n;
        ec.continual = 1;
    }
    return ec;
}

/* The model's trainer settings with the dense width the pipeline gives
 * it, and the feature map's hash; an exit code, or -1. */
static int model_setup(const char *verb, const ld_config_t *conf,
                       ld_trainer_conf_t *tc, char fmap_sha[65])
{
    *tc = conf->trainer;
    int64_t nd = (int64_t)conf->pipeline.dense_fields.n;
    if (tc->dense_dim == 0)
        tc->dense_dim = nd;
    if (tc->dense_dim != nd) {
        fprintf(stderr,
                "learnd %s: trainer.dense_dim is %lld but "
                "pipeline.dense_fields names %lld fields\n",
                verb, (long long)tc->dense_dim, (long long)nd);
        return LD_EXIT_USAGE;
    }
    ld_pipeline_conf_t pc = conf->pipeline;
    pc.hash_bits = tc->hash_bits;
    char why[512];
    ld_decoder_t *d = ld_decoder_new(&pc, LD_RECORD_EVENT, why, sizeof(why));
    if (!d) {
        fprintf(stderr, "learnd %s: %s\n", verb, why);
        return LD_EXIT_USAGE;
    }
    const char *fm = ld_decoder_feature_map(d);
    uint8_t h[32];
    ld_ckpt_sha256(fm, strlen(fm), h);
    hex(h, 32, fmap_sha);
    ld_decoder_destroy(d);
    return -1;
}

/* Reads the range and reports; an exit code. */
static int run_range(const args_t *a, const ld_config_t *conf,
                     const ld_trainer_conf_t *tc, ckpts_t *k)
{
    int64_t seek = a->from - a->warmup - conf->labeling.window_ms -
                   conf->labeling.max_ooo_ms;
    ld_eval_plan_t *pl = calloc(1, sizeof(*pl));
    if (!pl)
        return LD_EXIT_RUNTIME;
    int code = ld_eval_plan_build(a->verb, conf, seek, pl);
    ld_eval_t *e = NULL;
    if (code >= 0)
        goto out;
    ld_eval_conf_t ec = eval_conf(a, k);
    char why[512];
    e = ld_eval_new(tc, &conf->labeling, &ec, why, sizeof(why));
    if (!e) {
        fprintf(stderr, "learnd %s: %s\n", a->verb, why);
        code = LD_EXIT_RUNTIME;
        goto out;
    }
    reader_t r = {.verb = a->verb,
                  .conf = conf,
                  .pl = pl,
                  .e = e,
                  .seek_ms = seek,
                  .goal_ms = a->to + conf->labeling.window_ms,
                  .t0 = ld_now_mono_ms(),
                  .quiet = a->quiet,
                  .tty = isatty(2)};
    for (size_t i = 0; i < pl->n; i++)
        r.total += (uint64_t)(pl->end[i] - pl->first[i]);
    code = read_range(&r);
    progress(&r, 1);
    if (code < 0 && ld_eval_finish(e) != LD_OK) {
        fprintf(stderr, "learnd %s: cannot train the last micro-batch\n",
                a->verb);
        code = LD_EXIT_RUNTIME;
    }
    if (code < 0) {
        char cfg[65];
        config_hash_hex(conf, cfg);
        const char *names[MAX_LIST], *shas[MAX_LIST];
        for (size_t i = 0; i < k->n; i++) {
            names[i] = k->name[i];
            shas[i] = k->sha[i];
        }
        ld_eval_inputs_t in = {.command = a->verb,
                               .model = conf->trainer.name,
                               .config_hash_hex = cfg,
                               .nranges = pl->n,
                               .range_topic = pl->topic,
                               .range_partition = pl->partition,
                               .range_first = pl->first,
                               .range_end = pl->end,
                               .nckpt = k->n,
                               .ckpt_name = names,
                               .ckpt_version = k->version,
                               .ckpt_sha_hex = shas};
        /* the chart marks when each checkpoint was published (event
         * time), where the lineage's metrics say */
        int64_t marks[MAX_LIST];
        const char *mnames[MAX_LIST];
        size_t nm = 0;
        for (size_t i = 0; i < k->n; i++)
            if (k->published_ms[i]) {
                snprintf(k->mark[i], sizeof(k->mark[i]), "%s published",
                         k->name[i]);
                marks[nm] = k->published_ms[i];
                mnames[nm++] = k->mark[i];
            }
        code = report(a->verb, e, &in, a->json, a->svg, marks, mnames, nm);
    }
out:
    ld_eval_destroy(e);
    free(pl);
    return code;
}

int ld_cmd_backtest(int argc, char **argv)
{
    args_t a = {.verb = argv[0]};
    a.fresh = strcmp(argv[0], "freshness") == 0;
    a.usage = a.fresh ? freshness_usage : backtest_usage;
    int code = parse_args(&a, argc, argv);
    if (code >= 0)
        return code;
    ld_config_t *conf = ld_config_load(a.config, stderr);
    if (!conf) {
        fprintf(stderr, "learnd: %s: configuration is invalid\n", a.config);
        return LD_EXIT_USAGE;
    }
    ckpts_t k = {0};
    ld_trainer_conf_t tc;
    char fmap[65];
    code = model_setup(a.verb, conf, &tc, fmap);
    if (code < 0)
        code = load_ckpts(&a, conf, &tc, fmap, &k);
    if (code < 0 && ld_config_apply_logging(conf) != LD_OK) {
        fprintf(stderr, "learnd %s: cannot open log file\n", a.verb);
        code = LD_EXIT_RUNTIME;
    }
    if (code < 0)
        code = run_range(&a, conf, &tc, &k);
    ckpts_free(&k);
    ld_config_destroy(conf);
    return code;
}

/* ---- The demo ----------------------------------------------------------- */

/* Feeds the demo stream through conf's decoders into e, one partition per
 * topic (the generator emits in time order). An exit code, or -1. */
static int feed_demo(const ld_config_t *conf, const ld_demo_gen_conf_t *gconf,
                     ld_eval_t *e)
{
    ld_pipeline_conf_t pc = conf->pipeline;
    pc.hash_bits = conf->trainer.hash_bits;
    char why[512];
    ld_decoder_t *dec[2] = {
        ld_decoder_new(&pc, LD_RECORD_EVENT, why, sizeof(why)), NULL};
    if (dec[0])
        dec[1] = ld_decoder_new(&pc, LD_RECORD_LABEL, why, sizeof(why));
    ld_demo_gen_t *g = ld_demo_gen_new(gconf);
    int code = -1;
    if (!dec[1] || !g || ld_eval_assign(e, 0) != LD_OK) {
        fprintf(stderr, "learnd demo: %s\n", g ? why : "out of memory");
        code = LD_EXIT_RUNTIME;
    }
    int64_t off[2] = {0, 0};
    ld_demo_record_t dr;
    int more;
    while (code < 0 && (more = ld_demo_gen_next(g, &dr)) == 1) {
        ld_record_t rec;
        int k = dr.is_label;
        if (ld_decoder_decode(dec[k], dr.key, strlen(dr.key), dr.value, dr.len,
                              dr.time_ms, &rec) != LD_REASON_NONE) {
            ld_eval_note_dead(e);
            off[k]++;
            continue;
        }
        rec.topic = k ? pc.labels_topic : pc.events_topic;
        rec.partition = 0;
        rec.offset = off[k]++;
        if (ld_eval_add(e, &rec) != LD_OK)
            code = LD_EXIT_RUNTIME;
    }
    if (code < 0 && more < 0)
        code = LD_EXIT_RUNTIME;
    ld_demo_gen_destroy(g);
    ld_decoder_destroy(dec[0]);
    ld_decoder_destroy(dec[1]);
    return code;
}

int ld_demo_freshness(const ld_config_t *conf, const ld_demo_gen_conf_t *gconf,
                      const char *json_path, const char *svg_path)
{
    ld_trainer_conf_t tc;
    char fmap[65];
    int code = model_setup("demo", conf, &tc, fmap);
    if (code >= 0)
        return code;
    /* The first fifth of the stream is warmup, the rest is scored in 16
     * windows; the drift lands half-way. */
    const int64_t step = gconf->step_ms, n = gconf->n_events;
    const int64_t start = gconf->start_time_ms, span = n * step;
    static const int64_t cad[] = {0, 60000, 300000, 900000};
    args_t a = {.verb = "demo",
                .fresh = 1,
                .from = start + span / 5 / 1000 * 1000,
                .to = start + span,
                .ncad = 4};
    a.warmup = a.from - start;
    a.bucket = (a.to - a.from + 15) / 16;
    memcpy(a.cadence, cad, sizeof(cad));
    ckpts_t k = {0};
    ld_eval_conf_t ec = eval_conf(&a, &k);
    char why[512];
    ld_eval_t *e = ld_eval_new(&tc, &conf->labeling, &ec, why, sizeof(why));
    if (!e) {
        fprintf(stderr, "learnd demo: %s\n", why);
        return LD_EXIT_RUNTIME;
    }
    printf("learnd demo --freshness: %lld events, drift at event %lld; "
           "deployed copies refreshed every 0 (continual), 1m, 5m and 15m "
           "of event time\n\n",
           (long long)n, (long long)gconf->drift_at);
    code = feed_demo(conf, gconf, e);
    if (code < 0 && ld_eval_finish(e) != LD_OK)
        code = LD_EXIT_RUNTIME;
    if (code < 0) {
        int64_t drift = start + gconf->drift_at * step;
        const char *name = "drift";
        char cfg[65];
        config_hash_hex(conf, cfg);
        ld_eval_inputs_t in = {.command = "freshness",
                               .model = conf->trainer.name,
                               .config_hash_hex = cfg};
        code = report("demo", e, &in, json_path, svg_path, &drift, &name, 1);
    }
    ld_eval_destroy(e);
    return code;
}
