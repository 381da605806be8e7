/* SPDX-License-Identifier: Apache-2.0 */
/* The headline end-to-end benchmark (docs/ARCHITECTURE.md, "Performance
 * targets"): the whole daemon (ld_run: consume -> decode -> join -> train ->
 * triggers) on the demo's Avro click stream, against a raw
 * rd_kafka_consumer_poll of the same two topics in the same run, on a real
 * broker (--bootstrap HOST:PORT; bench/e2e.sh starts the test broker of
 * tests/kafka/ for it) or else on librdkafka's in-process mock cluster. Also
 * the ingest stage alone (ld_pipeline_poll, the ingest-alone performance
 * target) on the same topics and a per-stage breakdown from memory (decode,
 * join, train, triggers). Prints text, never pass/fail.
 *
 * usage: bench_e2e [--bits 18,22] [--repeats N] [--partitions N]
 *                  [--part-kib N] [--crosses demo|40] [--drift on|off]
 *                  [--triggers default|alert|off] [--late-horizon DUR]
 *                  [--only all|raw|ingest|daemon|stages[,...]]
 *                  [--bootstrap HOST:PORT] [--batch-bytes N]
 *                  [--experiments off|compare|on]
 *                  [--profile default|few] [--events N]
 *                  [--learnd PATH[,PATH...]]
 * Environment: BENCH_E2E_TRACE=1 prints progress (wall and loop-thread CPU)
 * of every measured run; BENCH_E2E_LOG=N sets the log level (7: debug);
 * BENCH_E2E_KAFKA_DEBUG=fetch,... sets librdkafka's debug for learnd's
 * clients; BENCH_E2E_KAFKA="k=v,k=v" adds librdkafka settings to every
 * consumer (raw and learnd's) to try fetch tuning; BENCH_E2E_BROKER_PID=PID
 * (a real broker's process) adds its CPU time per record to the report.
 * bench/e2e.sh builds it, starts the test broker and runs it (optionally
 * under perf).
 *
 * The topics are filled once, before any measurement, to --part-kib
 * (default 4096) of --partitions (default 64) partitions; every measurement
 * consumes the same pre-filled topics with a fresh consumer group, timed
 * from the record at 10% of the input to the end. --batch-bytes sets the
 * filling producer's batch.size (default 1000000): a broker hands out whole
 * record batches, so it decides how finely a fetch interleaves partitions
 * and so how far apart in event time the consumer reads them (the joiner
 * holds what it cannot release yet). On a real broker the
 * topics get names of their own (bench-e2e-PID-...), created and deleted
 * through the Admin API; the broker is another process on the same cores.
 * Mock cluster caveat (docs/ARCHITECTURE.md, "Tests"): it keeps at most 5 MiB
 * per partition and silently drops older records (hence --part-kib at most 4800
 * there), and it runs in this process: its threads share the 2 cores with the
 * consumer, in every measurement alike.
 *
 * The stream replays event time ~1000x faster than it was generated (5 ms
 * of event time per event), so event-time triggers (time, volume,
 * performance, drift) fire and publish checkpoints every few hundred
 * thousand records: --triggers alert keeps the detectors but publishes
 * nothing, --triggers off disables every trigger kind. */
#define _XOPEN_SOURCE 700 /* nftw, mkdtemp */
#include <errno.h>
#include <ftw.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon/config.h"
#include "daemon/demo.h"
#include "daemon/run.h"
#include "pipeline/decode.h"
#include "pipeline/pipeline.h"

#define MAX_PARTS 256
#define MAX_BITS  4
#define MAX_RUNS  9
#define OVERHEAD  80 /* per-record bytes the mock log adds (bench_ingest) */

/* ---- Options ------------------------------------------------------------ */

static struct {
    int bits[MAX_BITS], nbits;
    int repeats;
    int parts;
    size_t part_bytes;
    int demo_crosses; /* 1: the demo's single cross (~7 hashed nnz) */
    int drift;        /* triggers.drift_enabled */
    const char *only;
    const char *late_horizon; /* labeling.late_horizon; NULL: default */
    const char *triggers;     /* default | alert | off */
    const char *batch_bytes;  /* the filling producer's batch.size */
    /* compare: the stream names its serving variant (v1/v2) and every
     * daemon measurement is repeated with 4 experiments on it */
    int experiments;
    int few;               /* --profile few (few_profile) */
    long events;           /* --events: the stream's length; 0: what fits */
    const char *learnd[4]; /* --learnd: binaries the few profile runs */
    int nlearnd;
} opt = {.bits = {18, 22},
         .nbits = 2,
         .repeats = 3,
         .parts = 64,
         .part_bytes = 4096u << 10,
         .drift = 1,
         .only = "all",
         .triggers = "default",
         .batch_bytes = "1000000"};

static const char *bootstrap;
static int real_broker; /* --bootstrap given: not the mock cluster */

/* Topic names: plain on the mock cluster, bench-e2e-PID-... on a real
 * broker (several runs may share it). */
enum { T_EVENTS, T_LABELS, T_DLQ, T_CKPT, T_TRIG, T_STATE, T__COUNT };
static const char *const topic_base[T__COUNT] = {
    "events",          "labels",      "learnd.dlq", "learnd.checkpoints",
    "learnd.triggers", "learnd.state"};
static char topic[T__COUNT][96];
static int trace; /* BENCH_E2E_TRACE=1: progress of each measured run */

/* Prints wall and loop-thread CPU every 2^15 records (trace mode). */
static void trace_at(const char *what, uint64_t n, int64_t wall0, int64_t th0)
{
    if (!trace || (n & 32767))
        return;
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    int64_t th = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t wall = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    fprintf(stderr, "  trace %-6s %7llu records  wall %6.1f ms  cpu %6.1f ms\n",
            what, (unsigned long long)n, (double)(wall - wall0) / 1e6,
            (double)(th - th0) / 1e6);
}
static char tmpdir[64];

static void die(const char *what, const char *why)
{
    fprintf(stderr, "bench_e2e: %s: %s\n", what, why);
    exit(1);
}

static int64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t now_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}

static int broker_pid; /* BENCH_E2E_BROKER_PID: a real broker's process */

/* CPU time of a real broker's process (all its threads), from
 * /proc/PID/stat; 0 when not known. */
static int64_t broker_cpu_ns(void)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", broker_pid);
    FILE *f = broker_pid ? fopen(path, "r") : NULL;
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* Fields after the ")" closing the command name: state is field 3,
     * utime and stime are fields 14 and 15. */
    const char *p = strrchr(buf, ')');
    unsigned long long ut = 0, st = 0;
    if (!p || sscanf(p + 2,
                     "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu "
                     "%llu",
                     &ut, &st) != 2)
        return 0;
    return (int64_t)((ut + st) * (1000000000ull /
                                  (unsigned long long)sysconf(_SC_CLK_TCK)));
}

/* CPU time of the calling thread, of the whole process (librdkafka's
 * threads and the in-process mock broker included) and of a real broker. */
typedef struct cpu {
    int64_t wall, thread, proc, broker;
} cpu_t;

static cpu_t cpu_now(void)
{
    return (cpu_t){now_ns(), clock_ns(CLOCK_THREAD_CPUTIME_ID),
                   clock_ns(CLOCK_PROCESS_CPUTIME_ID), broker_cpu_ns()};
}

/* --only takes one part or a comma-separated list ("raw,daemon"). */
static int want(const char *what)
{
    if (strcmp(opt.only, "all") == 0)
        return 1;
    size_t n = strlen(what);
    for (const char *p = opt.only; (p = strstr(p, what)); p += n)
        if ((p == opt.only || p[-1] == ',') && (p[n] == ',' || !p[n]))
            return 1;
    return 0;
}

/* ---- The stream, kept in memory ----------------------------------------- */

typedef struct rec {
    int is_label;
    int32_t part;
    int64_t offset; /* in its partition of its topic */
    int64_t time_ms;
    size_t koff, voff;
    uint32_t klen, vlen;
} rec_t;

static struct {
    rec_t *r;
    size_t n, cap;
    uint8_t *bytes;
    size_t blen, bcap;
    long events, labels;
    size_t part_bytes[2][MAX_PARTS];
} S;

static uint32_t fnv1a(const char *s)
{
    uint32_t h = 2166136261u;
    while (*s)
        h = (h ^ (uint8_t)*s++) * 16777619u;
    return h;
}

static ld_demo_gen_conf_t gen_conf(int64_t n_events)
{
    return (ld_demo_gen_conf_t){.seed = 1,
                                .n_events = n_events,
                                .drift_at = n_events / 2,
                                .start_time_ms = 1767225600000,
                                .step_ms = 5,
                                .label_delay_ms = 15000,
                                .served_lift = opt.experiments ? 0.1 : 0};
}

/* The daemon measurement being taken runs the 4 experiments. */
static int exp_on;
static char served_avsc[128]; /* the served stream's schema, in tmpdir */

/* Two ab experiments (click rate; logloss of the served score), a canary
 * with both guardrails and a bandit on the served variants. */
static void add_experiments(ld_config_t *c)
{
    static const char *const items[4][6] = {
        {"name=ab", "type=ab", "min_effect=0.01", NULL},
        {"name=canary", "type=canary", "guard_calibration=0.05",
         "guard_label_min=0.01", "noninferiority=0.01", NULL},
        {"name=bandit", "type=bandit", "interval=10s", NULL},
        {"name=ab2", "type=ab", "metric=logloss", "direction=lower",
         "min_effect=0.01", NULL}};
    c->experiments = calloc(4, sizeof(*c->experiments));
    if (!c->experiments)
        die("config", "out of memory");
    char why[256];
    for (size_t i = 0; i < 4; i++) {
        ld_exp_conf_t *e = &c->experiments[i];
        if (ld_conf_set_defaults(&ld_exp_conf_section, e, why, sizeof(why)))
            die("config", why);
        c->nexperiments = i + 1;
        for (size_t k = 0; items[i][k]; k++) {
            char key[32];
            const char *eq = strchr(items[i][k], '=');
            snprintf(key, sizeof(key), "%.*s", (int)(eq - items[i][k]),
                     items[i][k]);
            if (ld_conf_parse_value(ld_conf_find(&ld_exp_conf_section, key),
                                    eq + 1, e, why, sizeof(why)))
                die("config", why);
        }
        if (ld_conf_strlist_add(&e->variants, "v1") ||
            ld_conf_strlist_add(&e->variants, "v2"))
            die("config", "out of memory");
    }
}

/* How many events fit: the first event that would push its events
 * partition past the budget ends the stream (labels are far smaller). */
static int64_t events_that_fit(void)
{
    if (opt.events > 0)
        return opt.events;
    ld_demo_gen_conf_t gc = gen_conf(INT64_C(1) << 40);
    ld_demo_gen_t *g = ld_demo_gen_new(&gc);
    if (!g)
        die("generator", "out of memory");
    size_t used[MAX_PARTS] = {0};
    ld_demo_record_t r;
    int64_t n = 0;
    while (ld_demo_gen_next(g, &r) == 1) {
        if (r.is_label)
            continue;
        size_t sz = r.len + strlen(r.key) + OVERHEAD;
        uint32_t p = fnv1a(r.key) % (uint32_t)opt.parts;
        if (used[p] + sz > opt.part_bytes)
            break;
        used[p] += sz;
        n++;
    }
    ld_demo_gen_destroy(g);
    return n;
}

static void *grow(void *p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return p;
    size_t c = *cap ? *cap : 1024;
    while (c < need)
        c *= 2;
    void *q = realloc(p, c * elem);
    if (!q)
        die("memory", "out of memory");
    *cap = c;
    return q;
}

static void generate(int64_t n_events)
{
    ld_demo_gen_conf_t gc = gen_conf(n_events);
    ld_demo_gen_t *g = ld_demo_gen_new(&gc);
    if (!g)
        die("generator", "out of memory");
    int64_t next_off[2][MAX_PARTS] = {{0}};
    ld_demo_record_t r;
    int rc;
    while ((rc = ld_demo_gen_next(g, &r)) == 1) {
        size_t kl = strlen(r.key);
        S.r = grow(S.r, &S.cap, S.n + 1, sizeof(*S.r));
        S.bytes = grow(S.bytes, &S.bcap, S.blen + kl + 1 + r.len, 1);
        int32_t p = (int32_t)(fnv1a(r.key) % (uint32_t)opt.parts);
        rec_t *x = &S.r[S.n++];
        *x = (rec_t){r.is_label,
                     p,
                     next_off[r.is_label][p]++,
                     r.time_ms,
                     S.blen,
                     S.blen + kl + 1,
                     (uint32_t)kl,
                     (uint32_t)r.len};
        memcpy(S.bytes + S.blen, r.key, kl + 1);
        memcpy(S.bytes + S.blen + kl + 1, r.value, r.len);
        S.blen += kl + 1 + r.len;
        S.part_bytes[r.is_label][p] += kl + r.len + OVERHEAD;
        if (r.is_label)
            S.labels++;
        else
            S.events++;
    }
    if (rc < 0)
        die("generator", "out of memory");
    ld_demo_gen_destroy(g);
    for (int k = 0; k < 2 && !real_broker; k++)
        for (int p = 0; p < opt.parts; p++)
            if (S.part_bytes[k][p] > (5u << 20) - (64u << 10))
                die("stream", "a partition would exceed the mock's 5 MiB");
}

static const char *key_of(const rec_t *r)
{
    return (const char *)S.bytes + r->koff;
}

static const uint8_t *val_of(const rec_t *r)
{
    return S.bytes + r->voff;
}

/* ---- The broker: topics and their fill ---------------------------------- */

/* Creates (delete == 0) or deletes the topics on a real broker and waits for
 * the answer. */
static void admin_topics(rd_kafka_t *rk, int delete)
{
    char err[256];
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *ao =
        rd_kafka_AdminOptions_new(rk, delete ? RD_KAFKA_ADMIN_OP_DELETETOPICS
                                             : RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_operation_timeout(ao, 30000, err, sizeof(err));
    rd_kafka_NewTopic_t *nt[T__COUNT];
    rd_kafka_DeleteTopic_t *dt[T__COUNT];
    for (int i = 0; i < T__COUNT; i++) {
        if (delete) {
            dt[i] = rd_kafka_DeleteTopic_new(topic[i]);
        } else {
            nt[i] = rd_kafka_NewTopic_new(topic[i], i < T_DLQ ? opt.parts : 1,
                                          1, err, sizeof(err));
            /* The stream's event times are months old: the default
             * 7-day retention would delete it under the measurement. The
             * test broker rolls a segment every 1 MiB (tests/kafka), so
             * every checkpoint chunk (~900 KiB) would roll one: give these
             * topics a production-sized segment instead. */
            if (!nt[i] ||
                rd_kafka_NewTopic_set_config(nt[i], "retention.ms", "-1") ||
                rd_kafka_NewTopic_set_config(nt[i], "segment.bytes",
                                             "1073741824"))
                die(topic[i], err);
        }
    }
    if (delete)
        rd_kafka_DeleteTopics(rk, dt, T__COUNT, ao, q);
    else
        rd_kafka_CreateTopics(rk, nt, T__COUNT, ao, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 60000);
    if (!ev || rd_kafka_event_error(ev))
        die(delete ? "delete topics" : "create topics",
            ev ? rd_kafka_event_error_string(ev) : "no answer in 60 s");
    const rd_kafka_topic_result_t **res;
    size_t n = 0;
    if (delete)
        res = rd_kafka_DeleteTopics_result_topics(
            rd_kafka_event_DeleteTopics_result(ev), &n);
    else
        res = rd_kafka_CreateTopics_result_topics(
            rd_kafka_event_CreateTopics_result(ev), &n);
    for (size_t i = 0; i < n; i++)
        if (rd_kafka_topic_result_error(res[i]))
            die(rd_kafka_topic_result_name(res[i]),
                rd_kafka_topic_result_error_string(res[i]));
    rd_kafka_event_destroy(ev);
    for (int i = 0; i < T__COUNT; i++) {
        if (delete)
            rd_kafka_DeleteTopic_destroy(dt[i]);
        else
            rd_kafka_NewTopic_destroy(nt[i]);
    }
    rd_kafka_AdminOptions_destroy(ao);
    rd_kafka_queue_destroy(q);
}

static void fill_topics(rd_kafka_t *pr)
{
    for (size_t i = 0; i < S.n; i++) {
        const rec_t *r = &S.r[i];
        while (rd_kafka_producev(
                   pr,
                   RD_KAFKA_V_TOPIC(topic[r->is_label ? T_LABELS : T_EVENTS]),
                   RD_KAFKA_V_PARTITION(r->part),
                   RD_KAFKA_V_KEY(key_of(r), r->klen),
                   RD_KAFKA_V_VALUE((void *)(uintptr_t)val_of(r), r->vlen),
                   RD_KAFKA_V_TIMESTAMP(r->time_ms),
                   RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(pr, 10);
    }
    if (rd_kafka_flush(pr, 120000))
        die("flush", "records not delivered");
}

static void kset(rd_kafka_conf_t *c, const char *k, const char *v)
{
    char err[256];
    if (rd_kafka_conf_set(c, k, v, err, sizeof(err)))
        die(k, err);
}

static void kset_cb(void *conf, const char *k, const char *v)
{
    kset(conf, k, v);
}

static void strlist_cb(void *list, const char *k, const char *v)
{
    if (ld_conf_strlist_add(list, k) || ld_conf_strlist_add(list, v))
        die("config", "out of memory");
}

/* BENCH_E2E_KAFKA="k=v,k=v": extra librdkafka settings for every consumer,
 * raw and learnd's alike (the comparison stays fair), handed to set. */
static void each_extra(ld_pipeline_setting_cb *set, void *opaque)
{
    const char *extra = getenv("BENCH_E2E_KAFKA");
    if (!extra)
        return;
    char *dup = strdup(extra), *save = NULL;
    if (!dup)
        die("memory", "out of memory");
    for (char *kv = strtok_r(dup, ",", &save); kv;
         kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq)
            die("BENCH_E2E_KAFKA", kv);
        *eq = '\0';
        set(opaque, kv, eq + 1);
    }
    free(dup);
}

/* ---- (a) raw consume ---------------------------------------------------- */

/* Rate of a timed stretch: from the record at 10% of the input (group
 * join, first fetches and cold caches are behind) to the end. */
typedef struct rate {
    double recs_s, examples_s;
    uint64_t n;
    /* CPU ns per record: loop thread, the rest of the process, a real
     * broker */
    double main_ns, other_ns, broker_ns;
} rate_t;

static rate_t rate_of(uint64_t n, uint64_t examples, cpu_t a, cpu_t b)
{
    double secs = (double)(b.wall - a.wall) / 1e9;
    double th = (double)(b.thread - a.thread), pr = (double)(b.proc - a.proc);
    return (rate_t){(double)n / secs,
                    (double)examples / secs,
                    n,
                    th / (double)n,
                    (pr - th) / (double)n,
                    (double)(b.broker - a.broker) / (double)n};
}

/* When raw_rate's consumer was last given partitions (ns, now_ns()): the
 * few profile also times raw from there, as it times learnd's processes
 * (from their "partition assigned" line), so that ratio is like for like:
 * the first fetches count on both sides. */
static int64_t raw_assigned_ns;
static double raw_from_assign_s; /* rec/s from assignment to the last */

static void raw_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                          rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    (void)opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        if (!raw_assigned_ns)
            raw_assigned_ns = now_ns();
        rd_kafka_assign(rk, parts);
    } else {
        rd_kafka_assign(rk, NULL);
    }
}

static rate_t raw_rate(int run)
{
    char group[64], err[256];
    snprintf(group, sizeof(group), "raw-%d", run);
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    kset(c, "bootstrap.servers", bootstrap);
    kset(c, "group.id", group);
    /* What ld_pipeline's consumer runs with: the same fetch and queue
     * settings (a stale copy here once had queued.min.messages at 200k,
     * which stalls librdkafka 2.0.2's fetcher: raw read slower than
     * ingest). */
    ld_pipeline_consumer_settings(kset_cb, c);
    each_extra(kset_cb, c);
    raw_assigned_ns = 0;
    rd_kafka_conf_set_rebalance_cb(c, raw_rebalance);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof(err));
    if (!rk)
        die("consumer", err);
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(2);
    rd_kafka_topic_partition_list_add(l, topic[T_EVENTS],
                                      RD_KAFKA_PARTITION_UA);
    rd_kafka_topic_partition_list_add(l, topic[T_LABELS],
                                      RD_KAFKA_PARTITION_UA);
    if (rd_kafka_subscribe(rk, l))
        die("subscribe", group);
    rd_kafka_topic_partition_list_destroy(l);
    uint64_t got = 0, sink = 0, total = S.n, warm = total / 10;
    cpu_t t0 = {0, 0, 0, 0};
    while (got < total) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 1000);
        if (!m)
            continue;
        if (!m->err) {
            if (++got == warm)
                t0 = cpu_now();
            trace_at("raw", got, t0.wall, t0.thread);
            sink += m->len + ((const uint8_t *)m->payload)[0];
        }
        rd_kafka_message_destroy(m);
    }
    cpu_t t1 = cpu_now();
    raw_from_assign_s =
        raw_assigned_ns && t1.wall > raw_assigned_ns
            ? (double)total * 1e9 / (double)(t1.wall - raw_assigned_ns)
            : 0;
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    if (sink == 42)
        puts("");
    return rate_of(total - warm, 0, t0, t1);
}

/* ---- Config -------------------------------------------------------------- */

static void cset(const ld_conf_section_t *sec, void *base, const char *key,
                 const char *val)
{
    char why[256];
    const ld_conf_row_t *row = ld_conf_find(sec, key);
    if (!row || ld_conf_parse_value(row, val, base, why, sizeof(why)))
        die(key, row ? why : "no such row");
}

/* Crosses on top of the demo's mapping: 5 hashed namespaces (country,
 * ad_id, device: 1 value each; ctx: publisher + 0-3 tags; user: segment 70%
 * of the time) give ~6.2 hashed values; these crosses bring the mean to
 * ~40 (the run prints the measured mean). */
static const char *const crosses40[] = {"country,ad_id",
                                        "country,device",
                                        "ad_id,device",
                                        "country,ctx",
                                        "ad_id,ctx",
                                        "device,ctx",
                                        "country,user",
                                        "ad_id,user",
                                        "device,user",
                                        "ctx,user",
                                        "country,ad_id,device",
                                        "country,ad_id,ctx",
                                        "country,device,ctx",
                                        "ad_id,device,ctx",
                                        "country,ad_id,user",
                                        "country,device,user",
                                        "ad_id,device,user",
                                        "country,ad_id,device,ctx",
                                        "country,ctx,user",
                                        "ad_id,ctx,user",
                                        "device,ctx,user",
                                        "country,ad_id,device,user"};

static ld_config_t *make_config(int bits, const char *group)
{
    ld_config_t *c = ld_config_new_defaults();
    if (!c)
        die("config", "out of memory");
    char dense[256] = "", store[128], hb[16];
    for (int i = 0; i < 20; i++) {
        char f[8];
        snprintf(f, sizeof(f), "%sf%d", i ? "," : "", i);
        strcat(dense, f);
    }
    snprintf(store, sizeof(store), "%s/models", tmpdir);
    snprintf(hb, sizeof(hb), "%d", bits);
    const ld_conf_section_t *P = &ld_pipeline_conf_section;
    const ld_conf_section_t *L = &ld_labeling_conf_section;
    const ld_conf_section_t *T = &ld_trainer_conf_section;
    const ld_conf_section_t *C = &ld_ckpt_conf_section;
    const ld_conf_section_t *G = &ld_triggers_conf_section;
    cset(P, &c->pipeline, "events_topic", topic[T_EVENTS]);
    cset(P, &c->pipeline, "labels_topic", topic[T_LABELS]);
    cset(P, &c->pipeline, "dlq_topic", topic[T_DLQ]);
    char **out[] = {&c->daemon.checkpoint_topic, &c->daemon.trigger_topic,
                    &c->daemon.state_topic};
    for (int i = 0; i < 3; i++) {
        free(*out[i]);
        if (!(*out[i] = strdup(topic[T_CKPT + i])))
            die("config", "out of memory");
    }
    cset(P, &c->pipeline, "group_id", group);
    cset(P, &c->pipeline, "format", "avro");
    cset(P, &c->pipeline, "event_schema",
         opt.experiments ? served_avsc : LD_SOURCE_DIR "/schemas/event.avsc");
    if (exp_on) {
        cset(P, &c->pipeline, "served_variant_field", "served_model");
        cset(P, &c->pipeline, "served_score_field", "served_p");
        add_experiments(c);
    }
    cset(P, &c->pipeline, "label_schema", LD_SOURCE_DIR "/schemas/label.avsc");
    cset(P, &c->pipeline, "key_field", "event_id");
    cset(P, &c->pipeline, "event_time_field", "event_time");
    cset(P, &c->pipeline, "label_time_field", "label_time");
    cset(P, &c->pipeline, "dense_fields", dense);
    cset(P, &c->pipeline, "hash_fields",
         "country,ad_id,device,ctx:publisher,ctx:tags,user:user_segment");
    cset(P, &c->pipeline, "label_field", "clicked");
    cset(L, &c->labeling, "window", "60s");
    cset(L, &c->labeling, "max_out_of_orderness", "1s");
    cset(L, &c->labeling, "idle_timeout", "0");
    if (opt.late_horizon)
        cset(L, &c->labeling, "late_horizon", opt.late_horizon);
    cset(T, &c->trainer, "name", "bench-e2e");
    cset(T, &c->trainer, "model", "logistic");
    cset(T, &c->trainer, "optimizer", "ftrl");
    cset(T, &c->trainer, "hash_bits", hb);
    cset(T, &c->trainer, "learning_rate", "0.05");
    cset(T, &c->trainer, "l2", "0.1");
    cset(C, &c->checkpoint, "dir", store);
    cset(C, &c->checkpoint, "warm_start", "false");
    cset(G, &c->triggers, "drift_enabled", opt.drift ? "true" : "false");
    if (opt.few) {
        c->daemon.commit_interval_ms = 2000;
        cset(G, &c->triggers, "volume_examples", "40000");
        cset(G, &c->triggers, "time_enabled", "false");
        cset(G, &c->triggers, "performance_enabled", "false");
        cset(G, &c->triggers, "drift_enabled", "false");
    }
    static const char *const kinds[] = {"time", "volume", "performance",
                                        "drift"};
    for (int k = 0; k < 4; k++) {
        char key[32];
        if (strcmp(opt.triggers, "off") == 0) {
            snprintf(key, sizeof(key), "%s_enabled", kinds[k]);
            cset(G, &c->triggers, key, "false");
        } else if (strcmp(opt.triggers, "alert") == 0) {
            snprintf(key, sizeof(key), "%s_action", kinds[k]);
            cset(G, &c->triggers, key, "alert");
        }
    }
    size_t nx = opt.demo_crosses ? 1 : sizeof(crosses40) / sizeof(*crosses40);
    for (size_t i = 0; i < nx; i++)
        if (ld_conf_strlist_add(&c->pipeline.crosses, crosses40[i]) != LD_OK)
            die("config", "out of memory");
    if (ld_conf_strlist_add(&c->kafka, "bootstrap.servers") ||
        ld_conf_strlist_add(&c->kafka, bootstrap))
        die("config", "out of memory");
    /* BENCH_E2E_KAFKA="k=v,k=v": extra settings for learnd's clients (the
     * kafka: map), e.g. to try fetch tuning. The raw consumer gets them too
     * (raw_rate), so the comparison stays fair. */
    each_extra(strlist_cb, &c->kafka);
    const char *kdebug = getenv("BENCH_E2E_KAFKA_DEBUG");
    if (kdebug && (ld_conf_strlist_add(&c->kafka, "debug") ||
                   ld_conf_strlist_add(&c->kafka, kdebug)))
        die("config", "out of memory");
    c->metrics.enabled = 0;
    c->log.level =
        getenv("BENCH_E2E_LOG") ? atoi(getenv("BENCH_E2E_LOG")) : LD_LOG_WARN;
    return c;
}

/* ---- (b) ingest alone: ld_pipeline_poll --------------------------------- */

static rate_t ingest_rate(int bits, int run, double *nnz_mean)
{
    char group[64], err[512];
    snprintf(group, sizeof(group), "ingest-%d-%d", bits, run);
    ld_config_t *c = make_config(bits, group);
    c->pipeline.hash_bits = bits;
    ld_pipeline_t *p = ld_pipeline_new(&c->pipeline, &c->kafka, NULL, NULL,
                                       30000, err, sizeof(err));
    if (!p)
        die("ld_pipeline_new", err);
    uint64_t got = 0, total = S.n, nnz = 0, warm = total / 10;
    cpu_t t0 = {0, 0, 0, 0};
    while (got < total) {
        ld_record_t r;
        ld_err_t e = ld_pipeline_poll(p, 1000, &r);
        if (e == LD_ERR_TIMEOUT)
            continue;
        if (e)
            die("poll", ld_err_str(e));
        if (++got == warm)
            t0 = cpu_now();
        trace_at("ingest", got, t0.wall, t0.thread);
        nnz += r.x.nnz;
    }
    cpu_t t1 = cpu_now();
    ld_pipeline_stats_t st;
    ld_pipeline_stats(p, &st);
    for (int k = 0; k < 2; k++)
        for (int w = 0; w < LD_REASON__COUNT; w++)
            if (st.dlq[k][w])
                die("dead letters in the bench",
                    ld_reason_name((ld_reason_t)w));
    if (ld_pipeline_close(p, 10000) != LD_OK)
        fprintf(stderr, "bench_e2e: ingest consumer did not close cleanly\n");
    ld_pipeline_destroy(p);
    ld_config_destroy(c);
    *nnz_mean = (double)nnz / (double)S.events;
    return rate_of(total - warm, 0, t0, t1);
}

/* ---- (c) the whole daemon: ld_run --------------------------------------- */

typedef struct dstate {
    uint64_t total;
    uint64_t examples;
    /* release time of each matured example not yet scored (FIFO: the
     * trainer scores in release order), and the release -> trained
     * latencies seen */
    int64_t *rel;
    size_t rel_head, rel_tail, rel_cap;
    double *lat;
    size_t nlat, caplat;
    /* (consumed, examples, time) at each consumed-hook call */
    uint64_t *c, *e;
    cpu_t *t;
    size_t n, cap;
    int64_t start;
    uint64_t peak_pending; /* events waiting, at the once-a-second reports */
} dstate_t;

static void on_progress(void *opaque, const ld_run_progress_t *p)
{
    dstate_t *d = opaque;
    if (p->pending > d->peak_pending)
        d->peak_pending = p->pending;
}

static void on_example(void *opaque, const ld_example_t *ex)
{
    dstate_t *d = opaque;
    d->examples++;
    if (ex->sample_type != LD_SAMPLE_POS &&
        ex->sample_type != LD_SAMPLE_DEFAULT_NEG)
        return;
    if (d->rel_tail - d->rel_head == d->rel_cap) {
        size_t cap = d->rel_cap ? d->rel_cap * 2 : 4096;
        int64_t *g = malloc(cap * sizeof(*g));
        if (!g)
            die("memory", "out of memory");
        for (size_t i = d->rel_head; i < d->rel_tail; i++)
            g[i - d->rel_head] = d->rel[i % d->rel_cap];
        d->rel_tail -= d->rel_head;
        d->rel_head = 0;
        free(d->rel);
        d->rel = g;
        d->rel_cap = cap;
    }
    d->rel[d->rel_tail++ % d->rel_cap] = now_ns();
}

/* The batch is scored, then trained at once: the model holds the example
 * right after this callback. */
static void on_scored(void *opaque, const ld_scored_t *s, size_t n)
{
    (void)s;
    dstate_t *d = opaque;
    int64_t now = now_ns();
    for (size_t i = 0; i < n && d->rel_head < d->rel_tail; i++) {
        if (d->nlat == d->caplat) {
            size_t cap = d->caplat ? d->caplat * 2 : 65536;
            double *g = realloc(d->lat, cap * sizeof(*g));
            if (!g)
                die("memory", "out of memory");
            d->lat = g;
            d->caplat = cap;
        }
        d->lat[d->nlat++] =
            (double)(now - d->rel[d->rel_head++ % d->rel_cap]) / 1e6;
    }
}

static int by_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void on_consumed(void *opaque, uint64_t total)
{
    dstate_t *d = opaque;
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 1024;
        uint64_t *c = realloc(d->c, cap * sizeof(*c));
        uint64_t *e = c ? realloc(d->e, cap * sizeof(*e)) : NULL;
        cpu_t *t = e ? realloc(d->t, cap * sizeof(*t)) : NULL;
        if (c)
            d->c = c;
        if (e)
            d->e = e;
        if (!t)
            die("memory", "out of memory");
        d->t = t;
        d->cap = cap;
    }
    d->c[d->n] = total;
    d->e[d->n] = d->examples;
    d->t[d->n] = cpu_now();
    if (trace && (total & ~(uint64_t)32767) !=
                     (d->n ? d->c[d->n - 1] & ~(uint64_t)32767 : 0))
        fprintf(stderr,
                "  trace daemon %7llu records  wall %6.1f ms  cpu %6.1f ms  "
                "examples %llu\n",
                (unsigned long long)total,
                (double)(d->t[d->n].wall - d->t[0].wall) / 1e6,
                (double)(d->t[d->n].thread - d->t[0].thread) / 1e6,
                (unsigned long long)d->examples);
    d->n++;
}

static int should_stop(void *opaque)
{
    dstate_t *d = opaque;
    return d->n && d->c[d->n - 1] >= d->total;
}

typedef struct drun {
    rate_t rate;
    uint64_t examples; /* released over the whole run */
    double total_s;    /* ld_run wall time, start-up and shutdown included */
} drun_t;

static drun_t daemon_rate(int bits, int run)
{
    char group[64];
    /* the pid: static membership (group.instance.id = the transactional
     * id) would hand a new process an earlier one's assignment */
    snprintf(group, sizeof(group), "daemon-%d-%d-%ld", bits, run,
             (long)getpid());
    ld_config_t *c = make_config(bits, group);
    dstate_t d = {.total = S.n};
    ld_run_hooks_t hooks = {.opaque = &d,
                            .example = on_example,
                            .scored = on_scored,
                            .consumed = on_consumed,
                            .progress = on_progress,
                            .should_stop = should_stop};
    /* The few profile commits with transactions, as a user runs it. */
    ld_run_opts_t ro = {
        .from_scratch = 1, .no_transactions = !opt.few, .hooks = &hooks};
    if (ld_config_apply_logging(c) != LD_OK)
        die("config", "cannot apply the log settings");
    int64_t s0 = now_ns();
    int code = ld_run(c, &ro);
    int64_t s1 = now_ns();
    if (code != LD_EXIT_OK)
        die("ld_run", "non-zero exit");
    ld_config_destroy(c);
    /* The loop reports every 1024 records, and the last few hundred after
     * a 100 ms idle poll: time from the first report at 10% of the input to
     * the last report before the one that reached the total. */
    size_t a = 0, b = d.n - 1;
    while (a + 1 < d.n && d.c[a] < d.total / 10)
        a++;
    while (b > a + 1 && d.c[b] >= d.total)
        b--;
    if (b <= a)
        die("daemon", "too few progress reports to time");
    drun_t out = {rate_of(d.c[b] - d.c[a], d.e[b] - d.e[a], d.t[a], d.t[b]),
                  d.examples, (double)(s1 - s0) / 1e9};
    if (d.nlat) {
        qsort(d.lat, d.nlat, sizeof(*d.lat), by_double);
        printf("  release -> trained latency over %zu matured examples: p50 "
               "%.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms; peak "
               "pending events %llu (sampled each second)\n",
               d.nlat, d.lat[d.nlat / 2], d.lat[d.nlat * 99 / 100],
               d.lat[d.nlat * 999 / 1000], d.lat[d.nlat - 1],
               (unsigned long long)d.peak_pending);
    }
    /* The loop calls the consumed hook every 1024 records and when idle:
     * the longest gap between two calls in the timed stretch is its
     * longest stall (a commit point, a publication on the loop thread). */
    double gap = 0;
    for (size_t i = a; i < b; i++) {
        double g = (double)(d.t[i + 1].wall - d.t[i].wall) / 1e6;
        gap = g > gap ? g : gap;
    }
    printf("  longest loop gap (1024 records apart or idle): %.1f ms\n", gap);
    /* Issue #18's bound for a large model: no stall over 50 ms; and the
     * peak RSS of this process so far (the model, its snapshots, the
     * broker client's buffers). */
    size_t over50 = 0;
    for (size_t i = a; i < b; i++)
        over50 += d.t[i + 1].wall - d.t[i].wall > 50000000;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("  loop gaps over 50 ms: %zu; peak RSS so far %.0f MiB\n", over50,
           (double)ru.ru_maxrss / 1024.0);
    free(d.rel);
    free(d.lat);
    free(d.c);
    free(d.e);
    free(d.t);
    return out;
}

/* ---- (e) few partitions, real writes: learnd as a user runs it -------- */

/* --profile few (docs/ARCHITECTURE.md, "Performance targets", the first
 * line): the learnd binaries given by --learnd (several: alternated in each
 * repeat, e.g. the old main and a branch) run as a user runs them, as
 * processes with a YAML config, against the same pre-filled topics:
 * `learnd run --until-caught-up` with transactions, commit points every 2 s,
 * a volume trigger (a publication) every 40 000 examples, without and with a
 * protobuf audit topic; then `learnd replay --verify` of its last version;
 * and a raw librdkafka consume of the same topics in this process. Each
 * learnd rate is timed from its first "partition assigned" to its
 * "stopped" log line (startup and group join left out); raw from its first
 * record to its last. */

typedef struct lrun {
    double secs, cpu; /* timed stretch; the process's CPU / its wall time */
    uint64_t consumed, examples, published;
    int code;
} lrun_t;

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian). */
static int64_t days_of(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* A log line's ts=YYYY-MM-DDTHH:MM:SS.mmmZ in ms since the epoch; -1. */
static int64_t log_ts(const char *line)
{
    const char *p = strstr(line, "ts=");
    int y, mo, d, h, mi, sec, ms;
    if (!p || sscanf(p + 3, "%d-%d-%dT%d:%d:%d.%dZ", &y, &mo, &d, &h, &mi, &sec,
                     &ms) != 7)
        return -1;
    return ((days_of(y, mo, d) * 24 + h) * 60 + mi) * 60000 +
           (int64_t)sec * 1000 + ms;
}

static uint64_t field_u64(const char *line, const char *key)
{
    const char *p = strstr(line, key);
    return p ? strtoull(p + strlen(key), NULL, 10) : 0;
}

/* Runs argv (stdout and stderr into log), fills r's exit code and CPU. */
static void spawn_wait(char *const argv[], const char *log, lrun_t *r)
{
    int64_t w0 = now_ns();
    pid_t pid = fork();
    if (pid < 0)
        die("fork", strerror(errno));
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            _exit(127);
        execv(argv[0], argv);
        _exit(127);
    }
    int st = 0;
    struct rusage ru;
    if (wait4(pid, &st, 0, &ru) != pid)
        die("wait4", strerror(errno));
    double wall = (double)(now_ns() - w0) / 1e9;
    r->code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    r->cpu = ((double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
              (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6) /
             wall;
}

/* The timed stretch and counts of a learnd log. */
static void parse_log(const char *log, lrun_t *r)
{
    FILE *f = fopen(log, "r");
    if (!f)
        die(log, strerror(errno));
    char line[4096];
    int64_t t0 = -1, t1 = -1;
    while (fgets(line, sizeof(line), f)) {
        if (t0 < 0 && strstr(line, "msg=\"partition assigned\""))
            t0 = log_ts(line);
        if (strstr(line, "msg=\"stopped\"")) {
            t1 = log_ts(line);
            /* learnd before the stop line's scoped names said consumed=,
             * examples=, published= (per process too): old binaries still
             * compare */
            int scoped = strstr(line, " consumed_process=") != NULL;
            r->consumed =
                field_u64(line, scoped ? " consumed_process=" : " consumed=");
            r->examples =
                field_u64(line, scoped ? " examples_process=" : " examples=");
            r->published =
                field_u64(line, scoped ? " published_process=" : " published=");
        }
    }
    if (t0 < 0 || t1 <= t0 || r->code) {
        /* what went wrong: its last lines */
        fprintf(stderr, "bench_e2e: %s: exit %d%s; its last lines:\n", log,
                r->code, t0 < 0 || t1 <= t0 ? ", no timed stretch" : "");
        long at = ftell(f);
        fseek(f, at > 1500 ? at - 1500 : 0, SEEK_SET);
        while (fgets(line, sizeof(line), f))
            fputs(line, stderr);
    }
    fclose(f);
    if (t0 < 0 || t1 <= t0)
        return;
    r->secs = (double)(t1 - t0) / 1000.0;
}

static rd_kafka_t *admin_rk; /* the filling producer, for the few profile */

/* Creates run name's output topics (one partition each; learnd reads its
 * state topic at start, so it must exist). */
static void few_topics(const char *name)
{
    static const char *const what[] = {"state", "ckpt", "triggers", "dlq",
                                       "audit"};
    enum { N = sizeof(what) / sizeof(*what) };
    char err[256], t[N][256];
    rd_kafka_queue_t *q = rd_kafka_queue_new(admin_rk);
    rd_kafka_AdminOptions_t *ao =
        rd_kafka_AdminOptions_new(admin_rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_operation_timeout(ao, 30000, err, sizeof(err));
    rd_kafka_NewTopic_t *nt[N];
    for (int i = 0; i < N; i++) {
        snprintf(t[i], sizeof(t[i]), "%s-%s.%s", topic[T_EVENTS], name,
                 what[i]);
        nt[i] = rd_kafka_NewTopic_new(t[i], 1, 1, err, sizeof(err));
        if (!nt[i] ||
            rd_kafka_NewTopic_set_config(nt[i], "segment.bytes", "1073741824"))
            die(t[i], err);
    }
    rd_kafka_CreateTopics(admin_rk, nt, N, ao, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 60000);
    if (!ev || rd_kafka_event_error(ev))
        die("create topics",
            ev ? rd_kafka_event_error_string(ev) : "no answer in 60 s");
    rd_kafka_event_destroy(ev);
    for (int i = 0; i < N; i++)
        rd_kafka_NewTopic_destroy(nt[i]);
    rd_kafka_AdminOptions_destroy(ao);
    rd_kafka_queue_destroy(q);
}

/* Writes the config of one run (its own group, transactional id, output
 * topics and store) into path. */
static void few_config(const char *path, const char *name, int bits, int audit)
{
    FILE *f = fopen(path, "w");
    if (!f)
        die(path, strerror(errno));
    fprintf(f,
            "kafka:\n  bootstrap.servers: %s\n"
            "daemon:\n  commit_interval: 2s\n  transactional_id: %s-%s\n"
            "  state_topic: %s-%s.state\n  checkpoint_topic: %s-%s.ckpt\n"
            "  trigger_topic: %s-%s.triggers\n"
            "log:\n  level: info\nmetrics:\n  enabled: false\n"
            "pipeline:\n  events_topic: %s\n  labels_topic: %s\n"
            "  dlq_topic: %s-%s.dlq\n  group_id: %s-%s\n  format: avro\n"
            "  event_schema: %s/schemas/event.avsc\n"
            "  label_schema: %s/schemas/label.avsc\n"
            "  key_field: event_id\n  event_time_field: event_time\n"
            "  label_time_field: label_time\n  dense_fields: [",
            bootstrap, topic[T_EVENTS], name, topic[T_EVENTS], name,
            topic[T_EVENTS], name, topic[T_EVENTS], name, topic[T_EVENTS],
            topic[T_LABELS], topic[T_EVENTS], name, topic[T_EVENTS], name,
            LD_SOURCE_DIR, LD_SOURCE_DIR);
    for (int i = 0; i < 20; i++)
        fprintf(f, "%sf%d", i ? ", " : "", i);
    fprintf(f, "]\n  hash_fields: [country, ad_id, device, ctx:publisher, "
               "ctx:tags, user:user_segment]\n  crosses:\n");
    size_t nx = opt.demo_crosses ? 1 : sizeof(crosses40) / sizeof(*crosses40);
    for (size_t i = 0; i < nx; i++)
        fprintf(f, "    - [%s]\n", crosses40[i]);
    fprintf(f, "  label_field: clicked\n"
               "labeling:\n  window: 60s\n  max_out_of_orderness: 1s\n"
               "  idle_timeout: 0\n");
    if (audit)
        fprintf(f, "  output_topic: %s-%s.audit\n  output_format: protobuf\n",
                topic[T_EVENTS], name);
    fprintf(f,
            "trainer:\n  name: few\n  model: logistic\n  optimizer: ftrl\n"
            "  hash_bits: %d\n  learning_rate: 0.05\n  l2: 0.1\n"
            "checkpoint:\n  dir: %s/%s-models\n  warm_start: false\n"
            "triggers:\n  volume_examples: 40000\n  time_enabled: false\n"
            "  performance_enabled: false\n  drift_enabled: false\n",
            bits, tmpdir, name);
    fclose(f);
}

/* `learnd run --until-caught-up` of a fresh config; *last: the version
 * its store ends with. */
static lrun_t few_run(const char *learnd, const char *name, int bits, int audit,
                      uint64_t *last)
{
    char cfg[256], log[256], latest[512];
    snprintf(cfg, sizeof(cfg), "%s/%s.yaml", tmpdir, name);
    snprintf(log, sizeof(log), "%s/%s.run.log", tmpdir, name);
    few_config(cfg, name, bits, audit);
    few_topics(name);
    char *argv[] = {(char *)learnd,      "run", "-c", cfg,
                    "--until-caught-up", NULL};
    lrun_t r = {0};
    spawn_wait(argv, log, &r);
    parse_log(log, &r);
    snprintf(latest, sizeof(latest), "%s/%s-models/few/latest", tmpdir, name);
    FILE *f = fopen(latest, "r");
    unsigned long long v = 0;
    if (!f || fscanf(f, "%llu", &v) != 1)
        fprintf(stderr, "bench_e2e: %s: no latest version\n", name);
    if (f)
        fclose(f);
    *last = v;
    return r;
}

static lrun_t few_replay(const char *learnd, const char *name, uint64_t v)
{
    char cfg[256], log[256], ver[32];
    snprintf(cfg, sizeof(cfg), "%s/%s.yaml", tmpdir, name);
    snprintf(log, sizeof(log), "%s/%s.replay.log", tmpdir, name);
    snprintf(ver, sizeof(ver), "%llu", (unsigned long long)v);
    char *argv[] = {(char *)learnd, "replay", "-c",       cfg,
                    "--checkpoint", ver,      "--verify", NULL};
    lrun_t r = {0};
    spawn_wait(argv, log, &r);
    parse_log(log, &r);
    if (r.code != 0)
        fprintf(stderr, "bench_e2e: replay of %s version %llu exited %d\n",
                name, (unsigned long long)v, r.code);
    return r;
}

static double per_s(uint64_t n, double secs)
{
    return secs > 0 ? (double)n / secs : 0;
}

static void few_profile(void)
{
    printf("profile few: %d + %d partitions, transactions, commit_interval "
           "2s, a volume publication every 40 000 examples (time, "
           "performance and drift triggers off), learnd as processes; "
           "rec/s over first assignment -> stop; cpu = process CPU / its "
           "wall time\n",
           opt.parts, opt.parts);
    printf("%-5s %-4s %-3s %-8s %11s %11s %5s %4s\n", "bits", "run#", "bin",
           "audit", "rec/s", "ex/s", "cpu", "pub");
    for (int bi = 0; bi < opt.nbits; bi++) {
        int bits = opt.bits[bi];
        for (int run = 0; run < opt.repeats; run++) {
            rate_t raw = raw_rate(100 + bi * MAX_RUNS + run);
            double raw0 = raw_from_assign_s;
            printf("%-5d %-4d %-3s %-8s %11.0f   (from assignment, as learnd "
                   "is timed: %.0f)\n",
                   bits, run + 1, "-", "raw", raw.recs_s, raw0);
            for (int b = 0; b < opt.nlearnd; b++) {
                double rate[3] = {0};
                for (int audit = 0; audit < 2; audit++) {
                    char name[64];
                    uint64_t last = 0;
                    snprintf(name, sizeof(name), "b%d-r%d-L%d-a%d", bits, run,
                             b, audit);
                    lrun_t r = few_run(opt.learnd[b], name, bits, audit, &last);
                    rate[audit] = per_s(r.consumed, r.secs);
                    printf("%-5d %-4d L%-2d %-8s %11.0f %11.0f %4.0f%% %4llu%s"
                           "\n",
                           bits, run + 1, b, audit ? "run+pb" : "run",
                           rate[audit], per_s(r.examples, r.secs), 100 * r.cpu,
                           (unsigned long long)r.published,
                           r.code ? "  (exit != 0)" : "");
                    fflush(stdout);
                    if (audit)
                        continue;
                    lrun_t q = few_replay(opt.learnd[b], name, last);
                    rate[2] = per_s(q.consumed, q.secs);
                    printf("%-5d %-4d L%-2d %-8s %11.0f %11.0f %4.0f%%%s\n",
                           bits, run + 1, b, "replay", rate[2],
                           per_s(q.examples, q.secs), 100 * q.cpu,
                           q.code ? "  (not identical)" : "");
                    fflush(stdout);
                }
                printf("%-5d %-4d L%-2d ratios: run/replay %.0f%%, "
                       "run+pb/replay %.0f%%, replay/raw %.0f%%, run/raw "
                       "%.0f%%; both from assignment: replay/raw %.0f%%\n",
                       bits, run + 1, b, 100 * rate[0] / (rate[2] + 1e-9),
                       100 * rate[1] / (rate[2] + 1e-9),
                       100 * rate[2] / (raw.recs_s + 1e-9),
                       100 * rate[0] / (raw.recs_s + 1e-9),
                       100 * rate[2] / (raw0 + 1e-9));
                fflush(stdout);
            }
        }
    }
    for (int b = 0; b < opt.nlearnd; b++)
        printf("L%d = %s\n", b, opt.learnd[b]);
}

/* ---- (d) stages from memory --------------------------------------------- */

/* Decoded events, copied (features) so the joiner can be timed alone. */
typedef struct dec {
    uint32_t *idx;
    float *val, *dense;
    size_t *xoff; /* per record: offset into idx/val; dense at 20 * ev# */
    double *label;
    int64_t *time;
} dec_t;

typedef struct stage_times {
    double decode_ev_ns, decode_lb_ns; /* per event / per label */
    double join_ns;                    /* per record (add + poll) */
    double train_ns, train_nnz_ns;     /* per example / per nnz */
    double trig_ns;                    /* per matured example */
    uint64_t examples, matured;
    double nnz_mean;
} stage_times_t;

static void on_scored_trig(void *opaque, const ld_scored_t *s, size_t n)
{
    ld_triggers_t *tr = opaque;
    for (size_t i = 0; i < n; i++)
        if (ld_triggers_observe(tr, s[i].ex, s[i].pred, s[i].champion))
            die("triggers", "observe failed");
}

static void stages(int bits, stage_times_t *st)
{
    char err[512];
    ld_config_t *c = make_config(bits, "stages");
    c->pipeline.hash_bits = bits;
    ld_decoder_t *de =
        ld_decoder_new(&c->pipeline, LD_RECORD_EVENT, err, sizeof(err));
    ld_decoder_t *dl =
        de ? ld_decoder_new(&c->pipeline, LD_RECORD_LABEL, err, sizeof(err))
           : NULL;
    if (!dl)
        die("decoder", err);

    /* decode: each kind timed separately, best of 3 passes */
    double best[2] = {1e30, 1e30};
    uint64_t sink = 0;
    for (int pass = 0; pass < 3; pass++) {
        for (int kind = 0; kind < 2; kind++) {
            ld_decoder_t *d = kind ? dl : de;
            int64_t t0 = now_ns();
            for (size_t i = 0; i < S.n; i++) {
                const rec_t *r = &S.r[i];
                if (r->is_label != kind)
                    continue;
                ld_record_t out;
                if (ld_decoder_decode(d, key_of(r), r->klen, val_of(r), r->vlen,
                                      r->time_ms, &out))
                    die("decode", ld_decoder_error(d));
                sink += out.x.nnz;
            }
            double ns =
                (double)(now_ns() - t0) / (double)(kind ? S.labels : S.events);
            if (ns < best[kind])
                best[kind] = ns;
        }
    }
    st->decode_ev_ns = best[0];
    st->decode_lb_ns = best[1];

    /* copies of the decoded records */
    dec_t D = {0};
    size_t nnz_total = 0;
    D.xoff = calloc(S.n + 1, sizeof(*D.xoff));
    D.label = calloc(S.n, sizeof(*D.label));
    D.time = calloc(S.n, sizeof(*D.time));
    D.dense = calloc((size_t)S.events * 20 + 1, sizeof(*D.dense));
    size_t icap = (size_t)S.events * 48, ev = 0;
    D.idx = malloc(icap * sizeof(*D.idx));
    D.val = malloc(icap * sizeof(*D.val));
    if (!D.xoff || !D.label || !D.time || !D.dense || !D.idx || !D.val)
        die("memory", "out of memory");
    for (size_t i = 0; i < S.n; i++) {
        const rec_t *r = &S.r[i];
        ld_record_t out;
        ld_decoder_t *d = r->is_label ? dl : de;
        if (ld_decoder_decode(d, key_of(r), r->klen, val_of(r), r->vlen,
                              r->time_ms, &out))
            die("decode", ld_decoder_error(d));
        D.xoff[i] = nnz_total;
        D.label[i] = out.label;
        D.time[i] = out.time_ms;
        if (r->is_label)
            continue;
        if (out.x.ndense != 20)
            die("decode", "expected 20 dense features");
        if (nnz_total + out.x.nnz > icap) {
            icap = (nnz_total + out.x.nnz) * 2;
            D.idx = realloc(D.idx, icap * sizeof(*D.idx));
            D.val = realloc(D.val, icap * sizeof(*D.val));
            if (!D.idx || !D.val)
                die("memory", "out of memory");
        }
        memcpy(D.idx + nnz_total, out.x.idx, out.x.nnz * sizeof(*D.idx));
        memcpy(D.val + nnz_total, out.x.val, out.x.nnz * sizeof(*D.val));
        memcpy(D.dense + 20 * ev++, out.x.dense, 20 * sizeof(*D.dense));
        nnz_total += out.x.nnz;
    }
    D.xoff[S.n] = nnz_total;
    st->nnz_mean = (double)nnz_total / (double)S.events;

    /* join: add + poll, timed twice (best), then once more collecting the
     * released examples (copied) for the trainer */
    ld_example_t *exs = NULL;
    uint32_t *eidx = NULL;
    float *eval = NULL, *edense = NULL;
    size_t nex = 0, excap = 0, enz = 0, enzcap = 0;
    st->join_ns = 1e30;
    for (int pass = 0; pass < 3; pass++) {
        int collect = pass == 2;
        ld_joiner_t *j = ld_joiner_new(&c->labeling, err, sizeof(err));
        if (!j)
            die("joiner", err);
        for (int p = 0; p < opt.parts; p++)
            if (ld_joiner_assign(j, p))
                die("joiner", "assign");
        uint64_t released = 0;
        ev = 0;
        int64_t t0 = now_ns();
        for (size_t i = 0; i < S.n; i++) {
            const rec_t *r = &S.r[i];
            ld_err_t e;
            if (r->is_label) {
                e = ld_joiner_add_label(j, r->part, r->offset, key_of(r),
                                        r->klen, D.time[i], (float)D.label[i]);
            } else {
                ld_features_t x = {D.idx + D.xoff[i], D.val + D.xoff[i],
                                   D.dense + 20 * ev++,
                                   (uint32_t)(D.xoff[i + 1] - D.xoff[i]), 20};
                e = ld_joiner_add_event(j, r->part, r->offset, key_of(r),
                                        r->klen, D.time[i], &x);
            }
            if (e)
                die("joiner", ld_err_str(e));
            ld_example_t ex;
            while (ld_joiner_poll(j, &ex)) {
                released++;
                if (!collect)
                    continue;
                exs = grow(exs, &excap, nex + 1, sizeof(*exs));
                size_t need = enz + ex.x.nnz;
                if (need > enzcap) {
                    size_t cap2 = enzcap;
                    eidx = grow(eidx, &cap2, need, sizeof(*eidx));
                    eval = grow(eval, &enzcap, need, sizeof(*eval));
                }
                memcpy(eidx + enz, ex.x.idx, ex.x.nnz * sizeof(*eidx));
                memcpy(eval + enz, ex.x.val, ex.x.nnz * sizeof(*eval));
                ex.x.idx = (const uint32_t *)(uintptr_t)enz; /* fixed below */
                ex.x.val = NULL;
                ex.event_id = NULL;
                enz += ex.x.nnz;
                float *dn = malloc(20 * sizeof(*dn));
                if (!dn)
                    die("memory", "out of memory");
                memcpy(dn, ex.x.dense, 20 * sizeof(*dn));
                ex.x.dense = dn;
                exs[nex++] = ex;
            }
        }
        double ns = (double)(now_ns() - t0) / (double)S.n;
        if (!collect && ns < st->join_ns)
            st->join_ns = ns;
        st->examples = released;
        ld_joiner_destroy(j);
    }
    (void)edense;
    for (size_t i = 0; i < nex; i++) {
        size_t off = (size_t)(uintptr_t)exs[i].x.idx;
        exs[i].x.idx = eidx + off;
        exs[i].x.val = eval + off;
    }

    /* train: without and with the triggers watching the matured examples */
    ld_trainer_conf_t tc = c->trainer;
    tc.dense_dim = 20;
    for (int with_trig = 0; with_trig < 2; with_trig++) {
        double bestt = 1e30;
        for (int pass = 0; pass < 2; pass++) {
            ld_trainer_t *t = ld_trainer_new(&tc, err, sizeof(err));
            if (!t)
                die("trainer", err);
            ld_triggers_t *tr = NULL;
            if (with_trig) {
                tr = ld_triggers_new(&c->triggers, tc.name,
                                     c->daemon.checkpoint_topic, 0, err,
                                     sizeof(err));
                if (!tr)
                    die("triggers", err);
                ld_trainer_set_scored_cb(t, on_scored_trig, tr);
            }
            int64_t t0 = now_ns();
            for (size_t i = 0; i < nex; i++) {
                if (ld_trainer_add(t, &exs[i]))
                    die("trainer", "example refused");
                if (tr) {
                    ld_trigger_decision_t *dd;
                    while ((dd = ld_triggers_poll(tr, exs[i].event_time_ms)))
                        ld_trigger_decision_destroy(dd);
                }
            }
            if (ld_trainer_flush(t))
                die("trainer", "flush");
            double ns = (double)(now_ns() - t0) / (double)nex;
            if (ns < bestt)
                bestt = ns;
            if (tr)
                st->matured = ld_triggers_examples(tr);
            ld_triggers_destroy(tr);
            ld_trainer_destroy(t);
        }
        if (!with_trig) {
            st->train_ns = bestt;
            st->train_nnz_ns = bestt / (enz ? (double)enz / (double)nex : 1);
        } else {
            st->trig_ns = bestt - st->train_ns;
        }
    }
    if (sink == 42)
        puts("");
    for (size_t i = 0; i < nex; i++)
        free((void *)(uintptr_t)exs[i].x.dense);
    free(exs);
    free(eidx);
    free(eval);
    free(D.xoff);
    free(D.label);
    free(D.time);
    free(D.dense);
    free(D.idx);
    free(D.val);
    ld_decoder_destroy(de);
    ld_decoder_destroy(dl);
    ld_config_destroy(c);
}

/* ---- Main ---------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const double *v, int n)
{
    double s[MAX_RUNS];
    memcpy(s, v, (size_t)n * sizeof(*s));
    qsort(s, (size_t)n, sizeof(*s), cmp_double);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

static double best_of(const double *v, int n)
{
    double b = 0;
    for (int i = 0; i < n; i++)
        b = v[i] > b ? v[i] : b;
    return b;
}

/* --profile few: learnd as processes, then in process where the loop can
 * be watched: its longest stall and the release -> trained latency, with
 * the same writes. */
static void few_main(rd_kafka_t *pr)
{
    if (!real_broker || (!opt.nlearnd && want("few")))
        die("--profile few", "needs --bootstrap and --learnd");
    admin_rk = pr;
    if (want("few"))
        few_profile();
    printf("\nin process (this binary's learnd), transactions, the "
           "same triggers:\n");
    for (int bi = 0; bi < opt.nbits && want("daemon"); bi++) {
        printf("hash_bits %d:\n", opt.bits[bi]);
        for (int run = 0; run < opt.repeats; run++) {
            drun_t d = daemon_rate(opt.bits[bi], 100 + run);
            printf("  daemon %.0f rec/s, %.0f ex/s\n", d.rate.recs_s,
                   d.rate.examples_s);
        }
    }
}

static void usage(void)
{
    fputs("usage: bench_e2e [--bits 18,22] [--repeats N] [--partitions N]\n"
          "                 [--part-kib N] [--crosses demo|40] "
          "[--drift on|off]\n"
          "                 [--triggers default|alert|off] "
          "[--late-horizon DUR]\n"
          "                 [--only all|raw|ingest|daemon|stages]\n"
          "                 [--bootstrap HOST:PORT] [--batch-bytes N]\n"
          "                 [--experiments off|compare|on]\n"
          "                 [--profile default|few] [--events N]\n"
          "                 [--learnd PATH[,PATH...]]\n",
          stderr);
    exit(2);
}

static void parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            usage();
        i++;
        if (strcmp(a, "--bits") == 0) {
            opt.nbits = 0;
            for (char *s = (char *)v, *e; *s && opt.nbits < MAX_BITS;
                 s = *e ? e + 1 : e) {
                long b = strtol(s, &e, 10);
                if (e == s || b < 10 || b > 28)
                    usage();
                opt.bits[opt.nbits++] = (int)b;
            }
        } else if (strcmp(a, "--repeats") == 0) {
            opt.repeats = atoi(v);
            if (opt.repeats < 1 || opt.repeats > MAX_RUNS)
                usage();
        } else if (strcmp(a, "--partitions") == 0) {
            opt.parts = atoi(v);
            if (opt.parts < 1 || opt.parts > MAX_PARTS)
                usage();
        } else if (strcmp(a, "--part-kib") == 0) {
            long k = atol(v);
            if (k < 64 || k > 1 << 20)
                usage();
            opt.part_bytes = (size_t)k << 10;
        } else if (strcmp(a, "--crosses") == 0) {
            opt.demo_crosses = strcmp(v, "demo") == 0;
        } else if (strcmp(a, "--drift") == 0) {
            opt.drift = strcmp(v, "off") != 0;
        } else if (strcmp(a, "--triggers") == 0) {
            if (strcmp(v, "default") && strcmp(v, "alert") && strcmp(v, "off"))
                usage();
            opt.triggers = v;
        } else if (strcmp(a, "--late-horizon") == 0) {
            opt.late_horizon = v;
        } else if (strcmp(a, "--only") == 0) {
            opt.only = v;
        } else if (strcmp(a, "--experiments") == 0) {
            /* on: only the runs with experiments, to profile them */
            opt.experiments = strcmp(v, "compare") == 0 ? 1
                              : strcmp(v, "on") == 0    ? 2
                                                        : 0;
        } else if (strcmp(a, "--batch-bytes") == 0) {
            opt.batch_bytes = v;
        } else if (strcmp(a, "--profile") == 0) {
            if (strcmp(v, "few") && strcmp(v, "default"))
                usage();
            opt.few = strcmp(v, "few") == 0;
        } else if (strcmp(a, "--events") == 0) {
            opt.events = atol(v);
            if (opt.events < 1000)
                usage();
        } else if (strcmp(a, "--learnd") == 0) {
            char *dup = strdup(v), *save = NULL;
            for (char *t = strtok_r(dup, ",", &save); t && opt.nlearnd < 4;
                 t = strtok_r(NULL, ",", &save))
                opt.learnd[opt.nlearnd++] = t;
        } else if (strcmp(a, "--bootstrap") == 0) {
            bootstrap = v;
            real_broker = 1;
        } else {
            usage();
        }
    }
}

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    if (!real_broker && opt.part_bytes > (4800u << 10))
        die("--part-kib", "at most 4800 on the mock cluster (5 MiB per "
                          "partition)");
    trace = getenv("BENCH_E2E_TRACE") != NULL;
    if (getenv("BENCH_E2E_BROKER_PID"))
        broker_pid = atoi(getenv("BENCH_E2E_BROKER_PID"));
    char err[256];
    ld_log_set_level(getenv("BENCH_E2E_LOG")
                         ? (ld_log_level_t)atoi(getenv("BENCH_E2E_LOG"))
                         : LD_LOG_WARN);
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/bench-e2e-XXXXXX");
    if (!mkdtemp(tmpdir))
        die("mkdtemp", strerror(errno));
    if (opt.experiments) {
        snprintf(served_avsc, sizeof(served_avsc), "%s/event.avsc", tmpdir);
        char *text = ld_demo_served_avsc();
        FILE *f = text ? fopen(served_avsc, "w") : NULL;
        if (!f || fputs(text, f) < 0 || fclose(f))
            die("served schema", served_avsc);
        free(text);
    }

    for (int i = 0; i < T__COUNT; i++)
        if (real_broker)
            snprintf(topic[i], sizeof(topic[i]), "bench-e2e-%ld-%s",
                     (long)getpid(), topic_base[i]);
        else
            snprintf(topic[i], sizeof(topic[i]), "%s", topic_base[i]);
    int64_t n_events = events_that_fit();
    generate(n_events);
    double loadavg[3] = {0};
    FILE *la = fopen("/proc/loadavg", "r");
    if (la) {
        if (fscanf(la, "%lf %lf %lf", &loadavg[0], &loadavg[1], &loadavg[2]) !=
            3)
            loadavg[0] = -1;
        fclose(la);
    }
    printf("bench_e2e: librdkafka %s, %s, "
           "%d partitions x 2 topics, demo Avro stream: %ld events + %ld "
           "labels = %zu records (%.1f MiB)\n",
           rd_kafka_version_str(),
           real_broker ? "real broker" : "mock cluster (1 broker, in-process)",
           opt.parts, S.events, S.labels, S.n, (double)S.blen / 1048576.0);
    printf("config: 20 dense + %s hashed (%s crosses), logistic + FTRL, "
           "batch 256, join window 60s, late_horizon %s, triggers %s "
           "(drift %s), commit every 5s without transactions, metrics off, "
           "log warn; %d repeats\n",
           opt.demo_crosses ? "~7" : "~40", opt.demo_crosses ? "1" : "22",
           opt.late_horizon ? opt.late_horizon : "1h (default)",
           strcmp(opt.triggers, "default") == 0 ? "at defaults"
           : strcmp(opt.triggers, "alert") == 0
               ? "at defaults but action alert (no publications)"
               : "off",
           opt.drift ? "on" : "off", opt.repeats);
    printf("load average before: %.2f %.2f %.2f (2 cores)\n", loadavg[0],
           loadavg[1], loadavg[2]);
    fflush(stdout);

    rd_kafka_conf_t *pc = rd_kafka_conf_new();
    if (real_broker)
        kset(pc, "bootstrap.servers", bootstrap);
    else
        kset(pc, "test.mock.num.brokers", "1");
    kset(pc, "linger.ms", "20");
    kset(pc, "batch.size", opt.batch_bytes);
    kset(pc, "log_level", "3");
    rd_kafka_t *pr = rd_kafka_new(RD_KAFKA_PRODUCER, pc, err, sizeof(err));
    if (!pr)
        die("producer", err);
    if (real_broker) {
        admin_topics(pr, 0);
    } else {
        rd_kafka_mock_cluster_t *mc = rd_kafka_handle_mock_cluster(pr);
        bootstrap = rd_kafka_mock_cluster_bootstraps(mc);
        for (int i = 0; i < T__COUNT; i++)
            if (rd_kafka_mock_topic_create(mc, topic[i],
                                           i < T_DLQ ? opt.parts : 1, 1))
                die("mock", topic[i]);
    }
    int64_t f0 = now_ns();
    fill_topics(pr);
    printf("topics filled in %.1f s\n\n", (double)(now_ns() - f0) / 1e9);
    fflush(stdout);
    if (opt.few) {
        few_main(pr);
        opt.nbits = 0; /* the default profile's measurements are skipped */
    }

    for (int bi = 0; bi < opt.nbits; bi++) {
        int bits = opt.bits[bi];
        int n = opt.repeats;
        rate_t A[MAX_RUNS] = {{0}}, B[MAX_RUNS] = {{0}}, Dm[MAX_RUNS] = {{0}};
        double raw[MAX_RUNS] = {0}, ing[MAX_RUNS] = {0}, dr[MAX_RUNS] = {0},
               de[MAX_RUNS] = {0}, ratio[MAX_RUNS] = {0},
               iratio[MAX_RUNS] = {0}, eratio[MAX_RUNS] = {0},
               xr[MAX_RUNS] = {0}, xcpu[MAX_RUNS] = {0}, xloop[MAX_RUNS] = {0};
        double nnz = 0;
        printf("== hash_bits %d ==\n", bits);
        printf("%-4s %11s %12s %7s %12s %12s %7s %7s %8s\n", "run", "raw rec/s",
               "ingest rec/s", "ingest", "daemon rec/s", "daemon ex/s", "rec",
               "ex", "ld_run s");
        for (int run = 0; run < n; run++) {
            drun_t d = {{0}, 0, 0};
            if (want("raw") || want("daemon") || want("ingest"))
                A[run] = raw_rate(bi * MAX_RUNS + run);
            if (want("ingest"))
                B[run] = ingest_rate(bits, run, &nnz);
            /* compare: the second daemon run of a repeat meets a warmer
             * heap and page cache and a fuller mock cluster than the first,
             * so odd repeats run with experiments first and even ones
             * without: neither side always has the better slot */
            int on_first = opt.experiments && run % 2 == 1;
            drun_t x = {{0}, 0, 0};
            if (want("daemon") && on_first) {
                exp_on = 1;
                x = daemon_rate(bits, run + MAX_RUNS);
                exp_on = 0;
            }
            if (want("daemon") && opt.experiments != 2)
                d = daemon_rate(bits, run);
            if (want("daemon") && opt.experiments && !on_first) {
                exp_on = 1;
                x = daemon_rate(bits, run + MAX_RUNS);
                exp_on = 0;
            }
            if (want("daemon") && opt.experiments) {
                xr[run] = d.rate.recs_s > 0 ? x.rate.recs_s / d.rate.recs_s : 0;
                /* the cost side, which the shared machine's load hardly
                 * moves: process (and loop-thread) CPU per record without
                 * over with, a throughput ratio were the cores all ours */
                double pd = d.rate.main_ns + d.rate.other_ns,
                       px = x.rate.main_ns + x.rate.other_ns;
                xcpu[run] = px > 0 ? pd / px : 0;
                xloop[run] =
                    x.rate.main_ns > 0 ? d.rate.main_ns / x.rate.main_ns : 0;
                printf("     with 4 experiments (run %s): daemon %.0f rec/s, "
                       "%.0f ex/s (%.1f%% of the run without); CPU ns per "
                       "record %.0f (loop %.0f) vs %.0f (loop %.0f) without: "
                       "%.1f%% (loop %.1f%%)\n",
                       on_first ? "first" : "second", x.rate.recs_s,
                       x.rate.examples_s, 100 * xr[run], px, x.rate.main_ns, pd,
                       d.rate.main_ns, 100 * xcpu[run], 100 * xloop[run]);
            }
            Dm[run] = d.rate;
            raw[run] = A[run].recs_s;
            ing[run] = B[run].recs_s;
            dr[run] = d.rate.recs_s;
            de[run] = d.rate.examples_s;
            ratio[run] = raw[run] > 0 ? dr[run] / raw[run] : 0;
            eratio[run] = raw[run] > 0 ? de[run] / raw[run] : 0;
            iratio[run] = raw[run] > 0 ? ing[run] / raw[run] : 0;
            printf("%-4d %11.0f %12.0f %6.0f%% %12.0f %12.0f %6.0f%% %6.0f%% "
                   "%8.2f\n",
                   run + 1, raw[run], ing[run], 100 * iratio[run], dr[run],
                   de[run], 100 * ratio[run], 100 * eratio[run], d.total_s);
            fflush(stdout);
        }
        printf("%-4s %11.0f %12.0f %6.0f%% %12.0f %12.0f %6.0f%% %6.0f%%\n",
               "best", best_of(raw, n), best_of(ing, n),
               100 * best_of(ing, n) / (best_of(raw, n) + 1e-9), best_of(dr, n),
               best_of(de, n), 100 * best_of(dr, n) / (best_of(raw, n) + 1e-9),
               100 * best_of(de, n) / (best_of(raw, n) + 1e-9));
        printf("%-4s %11.0f %12.0f %6.0f%% %12.0f %12.0f %6.0f%% %6.0f%%\n",
               "med", median(raw, n), median(ing, n), 100 * median(iratio, n),
               median(dr, n), median(de, n), 100 * median(ratio, n),
               100 * median(eratio, n));
        if (want("daemon") && opt.experiments)
            printf("with 4 experiments / without, daemon rec/s: median "
                   "%.1f%%, best %.1f%% (order alternated per repeat)\n",
                   100 * median(xr, n), 100 * best_of(xr, n));
        if (want("daemon") && opt.experiments)
            printf("with 4 experiments / without, by process CPU per record "
                   "(without / with): median %.1f%%, loop thread alone "
                   "median %.1f%%\n",
                   100 * median(xcpu, n), 100 * median(xloop, n));
        printf("(ingest, rec, ex: that rate / the raw rate; best row: best "
               "rate / best raw; med row: median of the per-run ratios)\n");
        double v[9][MAX_RUNS];
        for (int r = 0; r < n; r++) {
            const rate_t *x[3] = {&A[r], &B[r], &Dm[r]};
            for (int k = 0; k < 3; k++) {
                v[3 * k][r] = x[k]->main_ns;
                v[3 * k + 1][r] = x[k]->other_ns;
                v[3 * k + 2][r] = x[k]->broker_ns;
            }
        }
        printf("CPU ns per record (median run): loop thread + other threads "
               "(librdkafka; the mock broker if in-process)%s | wall\n",
               broker_pid ? " + the broker process" : "");
        static const char *const what[3] = {"raw", "ingest", "daemon"};
        const double *rates[3] = {raw, ing, dr};
        for (int k = 0; k < 3; k++) {
            double wall =
                median(rates[k], n) > 0 ? 1e9 / median(rates[k], n) : 0;
            printf("  %-7s %6.0f + %5.0f", what[k], median(v[3 * k], n),
                   median(v[3 * k + 1], n));
            if (broker_pid)
                printf(" + %5.0f", median(v[3 * k + 2], n));
            printf(" | %6.0f", wall);
            if (k == 2)
                printf("   (loop thread on CPU %.0f%% of the wall time: the "
                       "rest is waiting for records or for the producer)",
                       wall > 0 ? 100 * median(v[6], n) / wall : 0);
            printf("\n");
        }
        if (want("ingest"))
            printf("hashed nnz per event (measured): %.2f (+20 dense)\n", nnz);
        if (want("stages")) {
            double am = median(v[0], n), dm = median(v[6], n);
            stage_times_t st = {0};
            stages(bits, &st);
            double per_rec_ev = (double)S.events / (double)S.n;
            double per_rec_ex = (double)st.examples / (double)S.n;
            double per_rec_m = (double)st.matured / (double)S.n;
            double dec = st.decode_ev_ns * per_rec_ev +
                         st.decode_lb_ns * (1 - per_rec_ev);
            double tr = st.train_ns * per_rec_ex;
            double tg = st.trig_ns * per_rec_ex;
            double sum = am + dec + st.join_ns + tr + tg;
            printf("stages from memory, ns per input record (events are %.0f%% "
                   "of records; %.2f examples, %.2f matured per record; "
                   "hashed nnz/event %.2f):\n",
                   100 * per_rec_ev, per_rec_ex, per_rec_m, st.nnz_mean);
            printf("  consume (raw poll, loop thread) %7.1f\n", am);
            printf("  decode + hash                   %7.1f   (%.1f ns/event, "
                   "%.1f ns/label)\n",
                   dec, st.decode_ev_ns, st.decode_lb_ns);
            printf("  join (add + poll)               %7.1f\n", st.join_ns);
            printf("  train (logistic + FTRL)         %7.1f   (%.1f "
                   "ns/example, %.2f ns/nnz incl. dense, metrics)\n",
                   tr, st.train_ns, st.train_nnz_ns);
            printf("  triggers observe                %7.1f   (%.1f "
                   "ns/example)\n",
                   tg, st.trig_ns);
            printf("  sum                             %7.1f   (daemon loop "
                   "thread measured: %.1f)\n",
                   sum, dm);
        }
        printf("\n");
        fflush(stdout);
    }
    la = fopen("/proc/loadavg", "r");
    if (la) {
        if (fscanf(la, "%lf %lf %lf", &loadavg[0], &loadavg[1], &loadavg[2]) ==
            3)
            printf("load average after: %.2f %.2f %.2f\n", loadavg[0],
                   loadavg[1], loadavg[2]);
        fclose(la);
    }
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        printf("peak RSS of the whole bench process (%stopics in memory "
               "and daemon): %.0f MiB\n",
               real_broker ? "" : "mock cluster, ",
               (double)ru.ru_maxrss / 1024.0);
    if (real_broker)
        admin_topics(pr, 1);
    rd_kafka_destroy(pr);
    nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(S.r);
    free(S.bytes);
    return 0;
}
