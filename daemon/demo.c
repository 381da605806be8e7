/* SPDX-License-Identifier: Apache-2.0 */
/* `learnd demo`: the daemon on librdkafka's in-process mock cluster, fed by
 * the synthetic click stream, compared with a model frozen before the
 * drift. */
#define _XOPEN_SOURCE 700 /* nftw */
#include "daemon/demo.h"
#include "daemon/demo_exp.h"

#include <errno.h>
#include <ftw.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "daemon/cli.h"
#include "daemon/cmd_backtest.h"
#include "daemon/demo_impl.h"
#include "daemon/run.h"
#include "daemon/signals.h"
#include "pipeline/kafka.h"

#define MOD "demo"
/* The mock cluster keeps at most 5 MiB per partition and silently drops the
 * oldest records beyond it: the generator stays this many records ahead of
 * the consumer at most (about 1.3 MiB per partition). */
#define MAX_AHEAD 20000

extern const unsigned char ld_demo_event_avsc[], ld_demo_label_avsc[];
extern const size_t ld_demo_event_avsc_len, ld_demo_label_avsc_len;

static const char usage[] =
    "usage: learnd demo [--events N] [--seed N] [--keep] [--poison N]\n"
    "                   [--summary-json FILE] [--bootstrap HOST:PORT "
    "[--run-id ID]]\n"
    "       learnd demo --freshness [--events N] [--seed N] "
    "[--summary-json FILE]\n"
    "                   [--svg FILE]\n"
    "\n"
    "Runs learnd on a synthetic click stream with delayed labels and a "
    "concept\n"
    "drift half-way, on librdkafka's in-process mock cluster (no broker "
    "needed),\n"
    "or on the cluster at --bootstrap. Prints progress every second and a\n"
    "summary comparing the continually trained model with a copy frozen\n"
    "before the drift.\n"
    "\n"
    "  --events N     events to generate (default 600000, at least 50000)\n"
    "  --seed N       generator seed (default 1)\n"
    "  --keep         keep the temp dir with the published checkpoints\n"
    "  --poison N     also produce N malformed events (they must all land in\n"
    "                 the dead-letter topic)\n"
    "  --summary-json FILE  write the summary as JSON too\n"
    "  --freshness    the value of fresh data instead: no broker, the same\n"
    "                 stream through learnd freshness's engine, copies\n"
    "                 refreshed every 0, 1m, 5m, 15m of event time "
    "(JSON:\n"
    "                 schemas/backtest.schema.json)\n"
    "  --svg FILE     with --freshness: the chart of logloss per window\n"
    "  --lift X       true click lift of variant v2 over v1, which serve half\n"
    "                 the events each; an ab experiment decides it (default\n"
    "                 0.1 on the mock cluster, 0 with --bootstrap, where the\n"
    "                 records keep the shape of schemas/event.avsc)\n"
    "  --bootstrap HOST:PORT  a real Kafka cluster: the topics events and\n"
    "                 labels are created if needed (retention.ms=-1), event\n"
    "                 times end a minute before the start, and each run "
    "trains\n"
    "                 its own model demo-ctr-ID (consumer group\n"
    "                 learnd-demo-ID) from the records it produces\n"
    "  --run-id ID    with --bootstrap: continue the run ID (its model,\n"
    "                 committed state and consumer group) instead of a fresh\n"
    "                 one; it also reads what others produced since\n"
    "  -h, --help     show this help\n"
    "\n"
    "The model store is a temp dir under $TMPDIR (default /tmp). Exits 1\n"
    "when the continually trained model does not beat the frozen copy.\n";

static void scores_add(scores_t *s, float p, float y)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 4096;
        float *np = realloc(s->p, cap * sizeof(*np));
        uint8_t *ny = np ? realloc(s->y, cap) : NULL;
        if (np)
            s->p = np;
        if (!ny)
            return; /* the AUC then covers fewer examples */
        s->y = ny;
        s->cap = cap;
    }
    s->p[s->n] = p;
    s->y[s->n++] = y > 0.5f;
}

static int by_score(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Exact AUC: the probability that a positive scores above a negative, ties
 * counting one half (rank-sum over scores sorted with their labels). */
static double auc(const scores_t *s)
{
    if (!s->n)
        return NAN;
    struct pair {
        float p;
        uint8_t y;
    } *v = malloc(s->n * sizeof(*v));
    if (!v)
        return NAN;
    for (size_t i = 0; i < s->n; i++)
        v[i] = (struct pair){s->p[i], s->y[i]};
    qsort(v, s->n, sizeof(*v), by_score);
    double npos = 0, nneg = 0, ranks = 0;
    for (size_t i = 0; i < s->n;) {
        size_t j = i;
        double pos = 0;
        while (j < s->n && v[j].p == v[i].p)
            pos += v[j++].y;
        ranks += pos * ((double)i + (double)j + 1) / 2.0; /* mid-rank */
        npos += pos;
        nneg += (double)(j - i) - pos;
        i = j;
    }
    free(v);
    if (npos == 0 || nneg == 0)
        return NAN;
    return (ranks - npos * (npos + 1) / 2.0) / (npos * nneg);
}

static int64_t index_of(const demo_t *d, int64_t event_time_ms)
{
    return (event_time_ms - d->gconf.start_time_ms) / d->gconf.step_ms;
}

static double logloss(double p, double y)
{
    p = p < 1e-7 ? 1e-7 : p > 1 - 1e-7 ? 1 - 1e-7 : p;
    return y > 0.5 ? -log(p) : -log(1 - p);
}

static int matured(ld_sample_type_t t)
{
    return t == LD_SAMPLE_POS || t == LD_SAMPLE_DEFAULT_NEG;
}

/* ---- Hooks -------------------------------------------------------------- */

/* The frozen copy learns from the same examples until freeze_at, then only
 * predicts: the model a team would have had without continual training. */
static void on_example(void *opaque, const ld_example_t *ex)
{
    demo_t *d = opaque;
    int64_t i = index_of(d, ex->event_time_ms);
    if (i < d->freeze_at) {
        if (ld_trainer_add(d->frozen, ex) != LD_OK)
            ld_log(LD_LOG_WARN, MOD, "msg=\"frozen model refused example\"");
        return;
    }
    if (i == d->freeze_at || !matured(ex->sample_type))
        return;
    float p;
    if (ld_trainer_predict(d->frozen, &ex->x, &p, 1) != LD_OK)
        return;
    for (int k = 0; k < 4; k++) {
        if (i >= d->phase[k].from && i < d->phase[k].to)
            d->phase[k].frozen += logloss(p, ex->label);
    }
    if (i >= d->phase[3].from && i < d->phase[3].to)
        scores_add(&d->auc_frozen, p, ex->label);
}

static void on_scored(void *opaque, const ld_scored_t *s, size_t n)
{
    demo_t *d = opaque;
    for (size_t j = 0; j < n; j++) {
        int64_t i = index_of(d, s[j].event_time_ms);
        if (i <= d->freeze_at)
            continue;
        for (int k = 0; k < 4; k++) {
            if (i >= d->phase[k].from && i < d->phase[k].to) {
                d->phase[k].live += logloss(s[j].pred, s[j].label);
                d->phase[k].n++;
            }
        }
        if (i >= d->phase[3].from && i < d->phase[3].to)
            scores_add(&d->auc_live, s[j].pred, s[j].label);
    }
}

static void on_progress(void *opaque, const ld_run_progress_t *p)
{
    demo_t *d = opaque;
    pthread_mutex_lock(&d->lock);
    uint64_t produced = d->produced;
    pthread_mutex_unlock(&d->lock);
    d->last = *p;
    double secs = (double)p->elapsed_ms / 1000.0;
    /* The windowed metrics are NaN until matured labels arrive: "-". */
    char ll[16] = "-", au[16] = "-";
    if (isfinite(p->model.logloss))
        snprintf(ll, sizeof(ll), "%.4f", p->model.logloss);
    if (isfinite(p->model.auc))
        snprintf(au, sizeof(au), "%.4f", p->model.auc);
    printf("[%5.1fs] produced %8llu records | read %8llu events, %7llu "
           "labels | trained %8llu examples (%6.0f/s), %6llu events "
           "waiting | logloss %s auc %s | published v%llu\n",
           secs, (unsigned long long)produced, (unsigned long long)p->events,
           (unsigned long long)p->labels, (unsigned long long)p->examples,
           secs > 0 ? (double)p->examples / secs : 0.0,
           (unsigned long long)p->pending, ll, au,
           (unsigned long long)p->champion_version);
    fflush(stdout);
}

static void on_decision(void *opaque, const ld_trigger_decision_t *t)
{
    demo_t *d = opaque;
    unsigned type = (unsigned)ld_trigger_decision_type(t);
    unsigned verdict = (unsigned)ld_trigger_decision_verdict(t);
    if (type < 8 && verdict < 4)
        d->triggers[type][verdict]++;
    if (ld_trigger_decision_type(t) == LD_TRIGGER_DRIFT) {
        int64_t i = index_of(d, ld_trigger_decision_event_time(t));
        if (d->first_drift_index < 0) {
            d->first_drift_index = i;
            size_t len = 0;
            for (size_t k = 0; k < ld_trigger_decision_drifted_count(t) &&
                               len + 40 < sizeof(d->first_drift_what);
                 k++)
                len += (size_t)snprintf(d->first_drift_what + len,
                                        sizeof(d->first_drift_what) - len,
                                        "%s%s", k ? ", " : "",
                                        ld_trigger_decision_drifted(t, k));
        }
        if (i < d->gconf.drift_at)
            d->first_drift_before++;
    }
}

static void on_experiment(void *opaque, const ld_exp_decision_t *x)
{
    demo_t *d = opaque;
    ld_demo_exp_seen(&d->exp, x);
}

static void on_consumed(void *opaque, uint64_t total)
{
    demo_t *d = opaque;
    pthread_mutex_lock(&d->lock);
    d->consumed = total;
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->lock);
}

/* Stop once every generated record has been consumed. */
static int should_stop(void *opaque)
{
    demo_t *d = opaque;
    pthread_mutex_lock(&d->lock);
    int stop = d->gen_failed ||
               (d->gen_done && d->consumed >= d->produced && d->produced);
    if (d->resume && stop && !d->gen_failed) {
        /* A resumed run first re-reads what its joiner still needed, so
         * the count says nothing: wait for the watermark to pass the newest
         * record of every input partition (less max_out_of_orderness). */
        int64_t target = INT64_MAX;
        for (int t = 0; t < 2; t++)
            for (int p = 0; p < PARTITIONS; p++)
                if (d->max_time[t][p] > 0 && d->max_time[t][p] < target)
                    target = d->max_time[t][p];
        stop = d->last.watermark_ms >= target - 1000;
    }
    pthread_mutex_unlock(&d->lock);
    return stop;
}

/* ---- Generator thread --------------------------------------------------- */

static uint32_t fnv1a(const char *s)
{
    uint32_t h = 2166136261u;
    while (*s)
        h = (h ^ (uint8_t)*s++) * 16777619u;
    return h;
}

static void *generate(void *arg)
{
    demo_t *d = arg;
    char errstr[512] = "out of memory";
    char *kv[] = {"bootstrap.servers",  d->bootstrap,
                  "linger.ms",          "5",
                  "enable.idempotence", "true",
                  "client.id",          "learnd-demo-generator"};
    ld_strlist_t props = {kv, 8};
    rd_kafka_conf_t *conf = ld_kafka_conf_new(&props, errstr, sizeof(errstr));
    rd_kafka_t *rk = NULL;
    ld_demo_gen_t *g = ld_demo_gen_new(&d->gconf);
    if (!g || !conf ||
        !(rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr)))) {
        ld_log(LD_LOG_ERR, MOD, "msg=\"generator cannot start\" err=\"%s\"",
               errstr);
        if (!rk && conf)
            rd_kafka_conf_destroy(conf);
        goto out;
    }
    ld_demo_record_t rec;
    int rc;
    uint64_t produced = 0;
    int64_t poisoned = 0;
    while ((rc = ld_demo_gen_next(g, &rec)) == 1) {
        /* The same key goes to the same partition of both topics. */
        int32_t part = (int32_t)(fnv1a(rec.key) % PARTITIONS);
        rd_kafka_resp_err_t e;
        do {
            e = rd_kafka_producev(
                rk, RD_KAFKA_V_TOPIC((rec.is_label ? "labels" : "events")),
                RD_KAFKA_V_PARTITION(part),
                RD_KAFKA_V_KEY(rec.key, strlen(rec.key)),
                RD_KAFKA_V_VALUE((void *)(uintptr_t)rec.value, rec.len),
                RD_KAFKA_V_TIMESTAMP(rec.time_ms),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
            if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL)
                rd_kafka_poll(rk, 100);
        } while (e == RD_KAFKA_RESP_ERR__QUEUE_FULL);
        if (e) {
            ld_log(LD_LOG_ERR, MOD, "msg=\"produce failed\" err=\"%s\"",
                   rd_kafka_err2str(e));
            break;
        }
        produced++;
        if (rec.time_ms > d->max_time[rec.is_label][part])
            d->max_time[rec.is_label][part] = rec.time_ms; /* under no lock:
                                                  read once gen_done is set */
        if (d->poison && rec.index % (d->gconf.n_events / d->poison) == 0 &&
            !rec.is_label && poisoned < d->poison) {
            /* An Avro string length running past the end of the record. */
            static const char bad[] = "\x7f\x01";
            e = rd_kafka_producev(
                rk, RD_KAFKA_V_TOPIC("events"), RD_KAFKA_V_PARTITION(part),
                RD_KAFKA_V_KEY("poison", 6), RD_KAFKA_V_VALUE((void *)bad, 2),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
            if (e)
                break;
            poisoned++;
            produced++;
        }
        if ((produced & 1023) == 0) {
            rd_kafka_poll(rk, 0);
            pthread_mutex_lock(&d->lock);
            d->produced = produced;
            while (!d->stop && d->produced > d->consumed + MAX_AHEAD) {
                /* Hand what is queued to the broker, then wait for the
                 * consumer to catch up. */
                pthread_mutex_unlock(&d->lock);
                rd_kafka_flush(rk, 1000);
                pthread_mutex_lock(&d->lock);
                if (d->produced > d->consumed + MAX_AHEAD && !d->stop)
                    pthread_cond_wait(&d->cond, &d->lock);
            }
            int stop = d->stop;
            pthread_mutex_unlock(&d->lock);
            if (stop)
                break;
        }
    }
    rd_kafka_flush(rk, 30000);
    pthread_mutex_lock(&d->lock);
    d->produced = produced;
    if (rc < 0 || rd_kafka_outq_len(rk) > 0)
        d->gen_failed = 1;
    pthread_mutex_unlock(&d->lock);
out:
    if (rk)
        rd_kafka_destroy(rk);
    ld_demo_gen_destroy(g);
    pthread_mutex_lock(&d->lock);
    d->gen_done = 1;
    if (!g || !rk)
        d->gen_failed = 1;
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

/* ---- Setup -------------------------------------------------------------- */

static int remove_entry(const char *path, const struct stat *st, int flag,
                        struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int write_file(const char *path, const unsigned char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(data, 1, len, f);
    return fclose(f) == 0 && w == len ? 0 : -1;
}

static int set(const ld_conf_section_t *sec, void *base, const char *key,
               const char *val)
{
    char why[256];
    const ld_conf_row_t *row = ld_conf_find(sec, key);
    if (!row || ld_conf_parse_value(row, val, base, why, sizeof(why))) {
        ld_log(LD_LOG_CRIT, MOD, "msg=\"bad demo setting\" key=%s.%s",
               sec->name, key);
        return -1;
    }
    return 0;
}

/* The demo's config: the example schemas, field mapping and a CTR model. */
static ld_config_t *demo_config(demo_t *d)
{
    ld_config_t *c = ld_config_new_defaults();
    if (!c)
        return NULL;
    char ev[1100], lb[1100], store[1100], dense[256] = "";
    snprintf(ev, sizeof(ev), "%s/event.avsc", d->dir);
    snprintf(lb, sizeof(lb), "%s/label.avsc", d->dir);
    snprintf(store, sizeof(store), "%s/models", d->dir);
    for (int i = 0; i < 20; i++) {
        char f[8];
        snprintf(f, sizeof(f), "%sf%d", i ? "," : "", i);
        strcat(dense, f);
    }
    const ld_conf_section_t *P = &ld_pipeline_conf_section;
    const ld_conf_section_t *L = &ld_labeling_conf_section;
    const ld_conf_section_t *T = &ld_trainer_conf_section;
    const ld_conf_section_t *C = &ld_ckpt_conf_section;
    const ld_conf_section_t *G = &ld_triggers_conf_section;
    int bad =
        set(P, &c->pipeline, "events_topic", "events") ||
        set(P, &c->pipeline, "labels_topic", "labels") ||
        set(P, &c->pipeline, "dlq_topic", "learnd.dlq") ||
        set(P, &c->pipeline, "group_id", d->group) ||
        set(P, &c->pipeline, "format", "avro") ||
        set(P, &c->pipeline, "event_schema", ev) ||
        set(P, &c->pipeline, "label_schema", lb) ||
        set(P, &c->pipeline, "key_field", "event_id") ||
        set(P, &c->pipeline, "event_time_field", "event_time") ||
        set(P, &c->pipeline, "label_time_field", "label_time") ||
        set(P, &c->pipeline, "dense_fields", dense) ||
        set(P, &c->pipeline, "hash_fields",
            "country,ad_id,device,ctx:publisher,ctx:tags,user:user_segment") ||
        set(P, &c->pipeline, "label_field", "clicked") ||
        set(L, &c->labeling, "window", "60s") ||
        set(L, &c->labeling, "max_out_of_orderness", "1s") ||
        set(L, &c->labeling, "idle_timeout", "0") ||
        set(T, &c->trainer, "name", d->model) ||
        set(T, &c->trainer, "model", "logistic") ||
        set(T, &c->trainer, "optimizer", "ftrl") ||
        set(T, &c->trainer, "hash_bits", "20") ||
        set(T, &c->trainer, "learning_rate", "0.05") ||
        set(T, &c->trainer, "l2", "0.1") ||
        set(C, &c->checkpoint, "dir", store) ||
        set(C, &c->checkpoint, "warm_start", "false") ||
        set(G, &c->triggers, "drift_enabled", "true") ||
        set(G, &c->triggers, "drift_feature_names", dense) ||
        /* The staged drift moves 4 of the 20 dense fields (f0..f3; f8..f19
         * carry no signal at all) and the ad mix: 5 of the 21 watched
         * features. With the default dataset-level share (half of them)
         * that covariate shift could only ever warn, and the drift trigger
         * depended on prediction drift alone, which is blind to a drift
         * that lands on a publication (the new champion's reference is
         * then drifted data; seed 1 publishes at event 300 000). */
        set(G, &c->triggers, "drift_min_share", "0.2") ||
        /* A first version early: drift and performance compare with the
         * data the champion was trained on. */
        set(G, &c->triggers, "volume_examples", "50000");
    /* A cross is one list item "a,b" (YAML: [[country, ad_id]]). */
    bad = bad ||
          ld_conf_strlist_add(&c->pipeline.crosses, "country,ad_id") != LD_OK;
    bad = bad || (d->gconf.served_lift > 0 &&
                  ld_demo_exp_config(c, d->gconf.served_lift) != 0);
    if (!bad) {
        char bs[600];
        snprintf(bs, sizeof(bs), "%s", d->bootstrap);
        bad = ld_conf_strlist_add(&c->kafka, "bootstrap.servers") ||
              ld_conf_strlist_add(&c->kafka, bs);
    }
    c->metrics.port = 0;
    c->log.level = LD_LOG_NOTICE; /* progress lines say what info would */
    if (bad) {
        ld_config_destroy(c);
        return NULL;
    }
    return c;
}

/* What the options set outside the demo's state. */
typedef struct demo_args {
    int keep, fresh;
    const char *json_path, *svg_path;
} demo_args_t;

/* Parses the options into d and a. Returns -1 to go on, or the exit code. */
static int parse_args(demo_t *d, demo_args_t *a, int argc, char **argv)
{
    enum {
        OPT_EVENTS = 256,
        OPT_SEED,
        OPT_POISON,
        OPT_JSON,
        OPT_KEEP,
        OPT_BOOTSTRAP,
        OPT_RUN_ID,
        OPT_FRESHNESS,
        OPT_SVG,
        OPT_LIFT
    };
    static const struct option longopts[] = {
        {"events", required_argument, NULL, OPT_EVENTS},
        {"seed", required_argument, NULL, OPT_SEED},
        {"poison", required_argument, NULL, OPT_POISON},
        {"summary-json", required_argument, NULL, OPT_JSON},
        {"keep", no_argument, NULL, OPT_KEEP},
        {"bootstrap", required_argument, NULL, OPT_BOOTSTRAP},
        {"run-id", required_argument, NULL, OPT_RUN_ID},
        {"freshness", no_argument, NULL, OPT_FRESHNESS},
        {"svg", required_argument, NULL, OPT_SVG},
        {"lift", required_argument, NULL, OPT_LIFT},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int opt;
    optind = 0;
    while ((opt = ld_cli_getopt(argc, argv, "h", longopts, usage)) != -1) {
        char *end = NULL;
        switch (opt) {
        case OPT_EVENTS:
            d->gconf.n_events = strtoll(optarg, &end, 10);
            /* Below this the last 30%, where the two models are compared,
             * is shorter than the 60 s label window (12 000 events): its
             * labels never mature and the comparison has nothing to say. */
            if (*end || d->gconf.n_events < 50000)
                return ld_cli_usage_error("demo", usage,
                                          "--events needs a number >= "
                                          "50000, not '%s'",
                                          optarg);
            break;
        case OPT_SEED:
            d->gconf.seed = strtoull(optarg, &end, 10);
            if (*end || optarg[0] == '-')
                return ld_cli_usage_error(
                    "demo", usage, "--seed needs a number, not '%s'", optarg);
            break;
        case OPT_POISON:
            d->poison = strtoll(optarg, &end, 10);
            if (*end || d->poison < 0 || d->poison > 1000)
                return ld_cli_usage_error(
                    "demo", usage, "--poison needs 0..1000, not '%s'", optarg);
            break;
        case OPT_JSON:
            a->json_path = optarg;
            break;
        case OPT_KEEP:
            a->keep = 1;
            break;
        case OPT_BOOTSTRAP:
            snprintf(d->bootstrap, sizeof(d->bootstrap), "%s", optarg);
            break;
        case OPT_RUN_ID:
            if (!ld_demo_run_id_ok(optarg))
                return ld_cli_usage_error("demo", usage,
                                          "--run-id needs 1..48 of A-Z a-z "
                                          "0-9 . _ -, not '%s'",
                                          optarg);
            snprintf(d->run_id, sizeof(d->run_id), "%s", optarg);
            d->resume = 1;
            break;
        case OPT_FRESHNESS:
            a->fresh = 1;
            break;
        case OPT_SVG:
            a->svg_path = optarg;
            break;
        case OPT_LIFT:
            d->gconf.served_lift = strtod(optarg, &end);
            if (*end ||
                !(d->gconf.served_lift >= 0 && d->gconf.served_lift <= 1))
                return ld_cli_usage_error(
                    "demo", usage, "--lift needs 0..1, not '%s'", optarg);
            break;
        case 'h':
            fputs(usage, stdout);
            return LD_EXIT_OK;
        default:
            return LD_EXIT_USAGE;
        }
    }
    if (optind < argc)
        return ld_cli_usage_error("demo", usage, "unexpected argument '%s'",
                                  argv[optind]);
    return -1;
}

/* The run's names and the stretches of the stream it is scored on.
 * Returns -1 to go on, or the exit code. */
static int name_run(demo_t *d)
{
    int64_t n = d->gconf.n_events;
    /* On a real cluster the stream stays that of schemas/event.avsc, which
     * the README's config and other consumers of the demo topics read;
     * the mock cluster is the demo's own. */
    if (d->gconf.served_lift < 0)
        d->gconf.served_lift = d->bootstrap[0] ? 0 : 0.1;
    if (d->resume && !d->bootstrap[0]) {
        fprintf(stderr, "learnd demo: --run-id needs --bootstrap (the mock "
                        "cluster keeps nothing between runs)\n");
        return LD_EXIT_USAGE;
    }
    if (d->bootstrap[0]) {
        /* A real broker deletes by time: event times (also the records'
         * timestamps) end about a minute before now, not in 2026-01. */
        int64_t now_s = ld_now_wall_ms() / 1000;
        d->gconf.start_time_ms = now_s * 1000 - n * d->gconf.step_ms - 60000;
        if (!d->resume) {
            time_t t = (time_t)now_s;
            struct tm tm;
            gmtime_r(&t, &tm);
            size_t len =
                strftime(d->run_id, sizeof(d->run_id), "%Y%m%d-%H%M%S", &tm);
            snprintf(d->run_id + len, sizeof(d->run_id) - len, "-%ld",
                     (long)getpid());
        }
        snprintf(d->model, sizeof(d->model), "demo-ctr-%s", d->run_id);
        snprintf(d->group, sizeof(d->group), "learnd-demo-%s", d->run_id);
    } else {
        snprintf(d->model, sizeof(d->model), "demo-ctr");
        snprintf(d->group, sizeof(d->group), "learnd-demo");
    }
    d->gconf.drift_at = n / 2;
    d->freeze_at = n * 2 / 5;
    d->phase[0] = (phase_t){"before the drift", d->freeze_at, n / 2, 0, 0, 0};
    d->phase[1] =
        (phase_t){"first 5% after the drift", n / 2, n / 2 + n / 20, 0, 0, 0};
    d->phase[2] = (phase_t){"next 15%", n / 2 + n / 20, n * 7 / 10, 0, 0, 0};
    d->phase[3] = (phase_t){"last 30%", n * 7 / 10, n, 0, 0, 0};
    return -1;
}

/* The demo's own checks on the finished run, then its summary. Returns
 * the exit code. */
static int conclude(demo_t *d, int code, const char *json_path)
{
    if (code == LD_EXIT_OK && d->gen_failed)
        code = LD_EXIT_RUNTIME;
    if (code == LD_EXIT_OK && d->poison &&
        d->last.dead_letters != (uint64_t)d->poison) {
        fprintf(stderr,
                "learnd demo: %llu dead letters for %lld poison "
                "records\n",
                (unsigned long long)d->last.dead_letters, (long long)d->poison);
        code = LD_EXIT_RUNTIME;
    }
    double auc_live = auc(&d->auc_live), auc_frozen = auc(&d->auc_frozen);
    if (code == LD_EXIT_OK && d->frozen && d->last.examples == 0) {
        fprintf(stderr,
                "learnd demo: trained on no examples (%llu events "
                "read)\n",
                (unsigned long long)d->last.events);
        code = LD_EXIT_RUNTIME;
    } else if (code == LD_EXIT_OK && d->frozen && !(auc_live > auc_frozen)) {
        /* The demo's own claim: a failed check is a failed run. */
        fprintf(stderr, "learnd demo: the continually trained model is not "
                        "better than the frozen copy after the drift\n");
        code = LD_EXIT_RUNTIME;
    }
    if (d->frozen)
        ld_demo_summary(d, code, auc_live, auc_frozen, json_path);
    return code;
}

int ld_cmd_demo(int argc, char **argv)
{
    demo_t d = {.gconf = {.seed = 1,
                          .n_events = 600000,
                          .start_time_ms = 1767225600000, /* 2026-01-01 */
                          .step_ms = 5,
                          .label_delay_ms = 15000,
                          .early_label_share = 0.02,
                          .served_lift = -1}};
    demo_args_t a = {0};
    d.first_drift_index = -1;
    int rc = parse_args(&d, &a, argc, argv);
    if (rc >= 0)
        return rc;
    if ((rc = name_run(&d)) >= 0)
        return rc;
    pthread_mutex_init(&d.lock, NULL);
    pthread_cond_init(&d.cond, NULL);

    int code = LD_EXIT_RUNTIME;
    rd_kafka_t *mock_rk = NULL;
    rd_kafka_mock_cluster_t *mc = NULL;
    ld_config_t *conf = NULL;
    pthread_t gen;
    int gen_started = 0;
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !tmp[0])
        tmp = "/tmp";
    if ((size_t)snprintf(d.dir, sizeof(d.dir), "%s/learnd-demo-XXXXXX", tmp) >=
            sizeof(d.dir) ||
        !mkdtemp(d.dir)) {
        fprintf(stderr, "learnd demo: cannot make a temp dir in %s: %s\n", tmp,
                strerror(errno));
        return LD_EXIT_RUNTIME;
    }
    char path[1100];
    snprintf(path, sizeof(path), "%s/event.avsc", d.dir);
    char *served = d.gconf.served_lift > 0 ? ld_demo_served_avsc() : NULL;
    int bad =
        served ? write_file(path, (const unsigned char *)served, strlen(served))
               : write_file(path, ld_demo_event_avsc, ld_demo_event_avsc_len);
    bad = bad || (d.gconf.served_lift > 0 && !served);
    free(served);
    snprintf(path, sizeof(path), "%s/label.avsc", d.dir);
    bad = bad || write_file(path, ld_demo_label_avsc, ld_demo_label_avsc_len);
    if (bad) {
        fprintf(stderr, "learnd demo: cannot write schemas to %s\n", d.dir);
        goto out;
    }
    if (a.fresh) { /* no broker: the demo's config and decoders only */
        if ((conf = demo_config(&d)))
            code = ld_demo_freshness(conf, &d.gconf, a.json_path, a.svg_path);
        goto out;
    }
    if (ld_demo_cluster_open(&d, &mock_rk, &mc))
        goto out;
    conf = demo_config(&d);
    if (!conf)
        goto out;
    ld_trainer_conf_t fconf = conf->trainer;
    fconf.dense_dim = (int64_t)conf->pipeline.dense_fields.n;
    char errstr[512];
    d.frozen = ld_trainer_new(&fconf, errstr, sizeof(errstr));
    if (!d.frozen) {
        fprintf(stderr, "learnd demo: %s\n", errstr);
        goto out;
    }
    printf("learnd demo: %lld events, labels delayed ~%.0fs (event time), "
           "drift at event %lld\n",
           (long long)d.gconf.n_events, d.gconf.label_delay_ms / 1000.0,
           (long long)d.gconf.drift_at);
    if (pthread_create(&gen, NULL, generate, &d)) {
        fprintf(stderr, "learnd demo: cannot start the generator\n");
        goto out;
    }
    gen_started = 1;
    ld_run_hooks_t hooks = {.opaque = &d,
                            .progress = on_progress,
                            .example = on_example,
                            .scored = on_scored,
                            .consumed = on_consumed,
                            .decision = on_decision,
                            .experiment = on_experiment,
                            .should_stop = should_stop};
    ld_run_opts_t opts = {.no_transactions = mc != NULL, .hooks = &hooks};
    if (ld_config_apply_logging(conf) == LD_OK)
        code = ld_run(conf, &opts);
out:
    if (gen_started) {
        pthread_mutex_lock(&d.lock);
        d.stop = 1;
        pthread_cond_broadcast(&d.cond);
        pthread_mutex_unlock(&d.lock);
        pthread_join(gen, NULL);
    }
    code = conclude(&d, code, a.json_path);
    ld_trainer_destroy(d.frozen);
    free(d.auc_live.p);
    free(d.auc_live.y);
    free(d.auc_frozen.p);
    free(d.auc_frozen.y);
    ld_config_destroy(conf);
    if (mc)
        rd_kafka_mock_cluster_destroy(mc);
    if (mock_rk)
        rd_kafka_destroy(mock_rk);
    pthread_cond_destroy(&d.cond);
    pthread_mutex_destroy(&d.lock);
    if (a.keep)
        printf("checkpoints kept in %s/models (try: learnd inspect FILE)\n",
               d.dir);
    else
        nftw(d.dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return code;
}
