/* SPDX-License-Identifier: Apache-2.0 */
/* Ingest rate (consume + decode + hash through ld_pipeline) for Avro,
 * Protobuf and JSON against a raw rd_kafka_consumer_poll of the same topic
 * in the same run, on librdkafka's in-process mock cluster; plus the decode
 * rate from memory. Prints records/s and the ratio (docs/ARCHITECTURE.md
 * target: >= 70% of raw for Avro and Protobuf).
 *
 * usage: bench_ingest [-f avro,protobuf,json,pbdesc] [-r runs] [-p partitions]
 *                     [-n] (no decode-from-memory lines)
 *                     [-d] (only the decode-from-memory lines)
 *                     [-t] (CPU ns per record of each thread, by name)
 *                     [-h] (what is measured)
 *
 * What "ingest >= 70% of raw consume" measures here (also printed by -h):
 * raw is one thread calling rd_kafka_consumer_poll on a plain consumer and
 * reading each payload's length and first byte. ingest is one thread
 * calling ld_pipeline_poll: librdkafka's consume (each partition from its
 * own queue, merged by Kafka timestamp), the Confluent framing, the decode
 * of the format, the field mapping, and the hashed features, dense values
 * and crosses, into the ld_record_t it returns (borrowed scratch, not
 * copied). Not measured: the daemon's ingest thread and its ring
 * (daemon/ingest.c, which copies each record), the join, training and
 * commits; bench_e2e measures those end to end.
 *
 * Fairness: the raw consumer gets the settings ld_pipeline's consumer runs
 * with (ld_pipeline_consumer_settings) and subscribes to the same two topics
 * (events, and the empty labels topic); each run measures raw and ingest
 * back to back on the same filled topic, alternating which goes first, and
 * the summary gives the median and range of the per-run ratios. Each
 * measurement times first to last record only (group join excluded) on the
 * monotonic clock in microseconds. CPU ns per record of the poll thread and
 * of the whole process are printed too: on a shared machine the rates swing
 * with the neighbours (runs of one binary ranged 25-160%), and raw process
 * CPU / ingest process CPU is the rate ratio two saturated cores would give,
 * measured with less of that noise.
 *
 * Profiling one phase: with BENCH_PERF_CTL=<fifo> and BENCH_PERF_PHASE=raw
 * or ingest, "enable"/"disable" are written to the fifo around that phase's
 * timed loop, for `perf record --control fifo:<fifo> -D -1 ...`.
 *
 * Mock cluster caveat (docs/ARCHITECTURE.md, "Tests"): it keeps at most 5 MiB
 * per partition, so each topic gets `partitions` partitions (default 48) filled
 * to ~4 MiB and the record count follows from the record size. 16 partitions
 * made a Protobuf measurement last only ~0.1 s, too short on a shared machine.
 */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>

#include "pipeline/decode.h"
#include "pipeline/pipeline.h"
#include "tests/data/pipeline/fixtures.h"

#define MAX_PARTS  256
#define MAX_RUNS   64
#define PART_BYTES (4u << 20)

static const char *bootstrap;
static int parts = 48;

static FILE *perf_ctl;
static const char *perf_phase = "";

/* Switches perf on/off around the timed loop of phase (see the top). */
static void perf_mark(const char *phase, int on)
{
    if (perf_ctl && strcmp(phase, perf_phase) == 0) {
        fputs(on ? "enable\n" : "disable\n", perf_ctl);
        fflush(perf_ctl);
    }
}

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double now_s(void)
{
    return clock_s(CLOCK_MONOTONIC);
}

/* CPU time of the polling thread: its ns per record are what ingest adds
 * to raw. And of the whole process (poll thread, librdkafka's threads and
 * the mock broker's): on 2 busy cores the rates follow the inverse of this
 * total, which neighbours on a shared machine disturb less than the rates
 * themselves. */
static void cpu_s(double c[2])
{
    c[0] = clock_s(CLOCK_THREAD_CPUTIME_ID);
    c[1] = clock_s(CLOCK_PROCESS_CPUTIME_ID);
}

static void cpu_ns_per(const double c0[2], long n, double out[2])
{
    double c1[2];
    cpu_s(c1);
    for (int i = 0; i < 2; i++)
        out[i] = (c1[i] - c0[i]) * 1e9 / (double)(n - 1);
}

/* Per-thread CPU (-t): ns on CPU of every thread of the process, from
 * /proc/self/task/<tid>/schedstat (ns, unlike stat's ticks), summed by
 * thread name, so the process total can be split into the poll thread,
 * librdkafka's threads of each client and the mock broker's. */
#define MAX_THR 128
typedef struct {
    int n;
    long tid[MAX_THR];
    char comm[MAX_THR][20];
    double ns[MAX_THR];
} thr_snap_t;

static int per_thread;

static void thr_snap(thr_snap_t *s)
{
    s->n = 0;
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    while (d && (e = readdir(d)) && s->n < MAX_THR) {
        if (e->d_name[0] == '.')
            continue;
        char path[300];
        unsigned long long ns = 0;
        snprintf(path, sizeof(path), "/proc/self/task/%s/schedstat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        int ok = fscanf(f, "%llu", &ns) == 1;
        fclose(f);
        snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
        if (!ok || !(f = fopen(path, "r")))
            continue;
        char *c = s->comm[s->n];
        if (!fgets(c, sizeof(s->comm[0]), f))
            c[0] = 0;
        fclose(f);
        c[strcspn(c, "\n")] = 0;
        s->tid[s->n] = atol(e->d_name);
        s->ns[s->n++] = (double)ns;
    }
    if (d)
        closedir(d);
}

/* Prints the CPU ns per record of each thread name between a and b. */
static void thr_print(const char *phase, const thr_snap_t *a,
                      const thr_snap_t *b, long n)
{
    char names[MAX_THR][20];
    double sum[MAX_THR];
    int k = 0;
    for (int i = 0; i < b->n; i++) {
        double base = 0;
        for (int j = 0; j < a->n; j++)
            if (a->tid[j] == b->tid[i])
                base = a->ns[j];
        int at = 0;
        while (at < k && strcmp(names[at], b->comm[i]) != 0)
            at++;
        if (at == k) {
            memcpy(names[k], b->comm[i], sizeof(names[0]));
            sum[k++] = 0;
        }
        sum[at] += b->ns[i] - base;
    }
    printf("    %-6s threads ns/rec:", phase);
    for (int i = 0; i < k; i++)
        if (sum[i] / (double)n >= 0.5)
            printf(" %s %.0f", names[i], sum[i] / (double)n);
    printf("\n");
}

static void die(const char *what, const char *why)
{
    fprintf(stderr, "bench_ingest: %s: %s\n", what, why);
    exit(1);
}

static rd_kafka_conf_t *conf_new(void)
{
    char err[256];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    if (rd_kafka_conf_set(c, "bootstrap.servers", bootstrap, err, sizeof(err)))
        die("conf", err);
    return c;
}

static void set(rd_kafka_conf_t *c, const char *k, const char *v)
{
    char err[256];
    if (rd_kafka_conf_set(c, k, v, err, sizeof(err)))
        die(k, err);
}

static void set_cb(void *conf, const char *k, const char *v)
{
    set(conf, k, v);
}

/* Fills topic (parts partitions) with the fixture values, round robin;
 * returns the record count. */
static long fill(rd_kafka_t *pr, const char *topic, const fx_set_t *s)
{
    size_t per_part[MAX_PARTS] = {0};
    long n = 0;
    for (size_t i = 0;; i++) {
        const fx_rec_t *r = &s->r[i % s->n];
        int32_t p = (int32_t)(i % (size_t)parts);
        if (per_part[p] + r->vlen + r->klen + 80 > PART_BYTES)
            break;
        per_part[p] += r->vlen + r->klen + 80;
        while (rd_kafka_producev(
                   pr, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(p),
                   RD_KAFKA_V_KEY(r->key, r->klen),
                   RD_KAFKA_V_VALUE(r->val, r->vlen),
                   RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(pr, 10);
        n++;
    }
    if (rd_kafka_flush(pr, 60000))
        die("flush", topic);
    return n;
}

/* Records/s of a plain consumer reading the n records of topic. */
static double raw_rate(const char *topic, const char *labels, long n, int run,
                       double *cpu_ns)
{
    char group[128];
    snprintf(group, sizeof(group), "raw-%s-%d", topic, run);
    rd_kafka_conf_t *c = conf_new();
    set(c, "group.id", group);
    /* what ld_pipeline's consumer runs with: the same fetch and queue */
    ld_pipeline_consumer_settings(set_cb, c);
    char err[256];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof(err));
    if (!rk)
        die("consumer", err);
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(2);
    rd_kafka_topic_partition_list_add(l, topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_topic_partition_list_add(l, labels, RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    long got = 0;
    uint64_t sink = 0;
    double t0 = 0, c0[2] = {0, 0};
    thr_snap_t ta, tb;
    while (got < n) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 1000);
        if (!m)
            continue;
        if (!m->err) {
            if (got++ == 0) {
                t0 = now_s();
                cpu_s(c0);
                if (per_thread)
                    thr_snap(&ta);
                perf_mark("raw", 1);
            }
            sink += m->len + ((const uint8_t *)m->payload)[0];
        }
        rd_kafka_message_destroy(m);
    }
    double t1 = now_s();
    cpu_ns_per(c0, n, cpu_ns);
    if (per_thread) {
        thr_snap(&tb);
        thr_print("raw", &ta, &tb, n - 1);
    }
    perf_mark("raw", 0);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    (void)sink;
    return (double)(n - 1) / (t1 > t0 ? t1 - t0 : 1e-6);
}

/* Records/s of ld_pipeline (consume + decode + hash) over the same topic. */
static double ingest_rate(const char *fmt, const char *topic,
                          const char *labels, long n, int run, uint64_t *nnz,
                          double *cpu_ns)
{
    char group[128], err[512];
    snprintf(group, sizeof(group), "ingest-%s-%d", topic, run);
    ld_pipeline_conf_t *c = fx_conf_new(fmt);
    if (!c || fx_set(c, "events_topic", topic) ||
        fx_set(c, "labels_topic", labels) || fx_set(c, "group_id", group))
        die("config", fmt);
    char *kv[] = {"bootstrap.servers", (char *)bootstrap};
    ld_strlist_t kp = {kv, 2};
    ld_pipeline_t *p =
        ld_pipeline_new(c, &kp, NULL, NULL, 30000, err, sizeof(err));
    if (!p)
        die("ld_pipeline_new", err);
    long got = 0;
    double t0 = 0, c0[2] = {0, 0};
    thr_snap_t ta, tb;
    *nnz = 0;
    while (got < n) {
        ld_record_t r;
        ld_err_t e = ld_pipeline_poll(p, 1000, &r);
        if (e == LD_ERR_TIMEOUT)
            continue;
        if (e)
            die("poll", ld_err_str(e));
        if (got++ == 0) {
            t0 = now_s();
            cpu_s(c0);
            if (per_thread)
                thr_snap(&ta);
            perf_mark("ingest", 1);
        }
        *nnz += r.x.nnz;
    }
    double t1 = now_s();
    cpu_ns_per(c0, n, cpu_ns);
    if (per_thread) {
        thr_snap(&tb);
        thr_print("ingest", &ta, &tb, n - 1);
    }
    perf_mark("ingest", 0);
    ld_pipeline_stats_t st;
    ld_pipeline_stats(p, &st);
    for (int r = 0; r < LD_REASON__COUNT; r++)
        if (st.dlq[0][r])
            die("dead letters in the bench", ld_reason_name((ld_reason_t)r));
    ld_pipeline_destroy(p);
    fx_conf_free(c);
    return (double)(n - 1) / (t1 > t0 ? t1 - t0 : 1e-6);
}

/* Records/s of the decoder alone, from memory. hot: the fixture set over
 * and over (it stays in L1/L2). cold: 128 MiB of copies laid end to end,
 * as records sit in fetch buffers, each decoded once per pass: the payload
 * comes from DRAM, as it does in ingest, where the broker thread wrote it
 * moments before on the other core. */
static double decode_rate(const char *fmt, const fx_set_t *s, int cold)
{
    char err[512];
    ld_pipeline_conf_t *c = fx_conf_new(fmt);
    ld_decoder_t *d = ld_decoder_new(c, LD_RECORD_EVENT, err, sizeof(err));
    if (!d)
        die("decoder", err);
    size_t bytes = 0, nrec = s->n;
    for (size_t i = 0; i < s->n; i++)
        bytes += s->r[i].vlen;
    uint8_t *arena = NULL;
    size_t *off = NULL;
    if (cold) {
        nrec = (128u << 20) / (bytes / s->n + 1);
        arena = malloc(128u << 20);
        off = malloc((nrec + 1) * sizeof(*off));
        if (!arena || !off)
            die("decode", "out of memory");
        off[0] = 0;
        for (size_t i = 0; i < nrec; i++) {
            const fx_rec_t *r = &s->r[i % s->n];
            if (off[i] + r->vlen > (128u << 20)) {
                nrec = i;
                break;
            }
            memcpy(arena + off[i], r->val, r->vlen);
            off[i + 1] = off[i] + r->vlen;
        }
    }
    long n = 0;
    double t0 = now_s(), t1;
    uint64_t sink = 0;
    do {
        for (int rep = 0; rep < (cold ? 1 : 50); rep++)
            for (size_t i = 0; i < nrec; i++, n++) {
                const fx_rec_t *fr = &s->r[i % s->n];
                const void *v = cold ? (const void *)(arena + off[i]) : fr->val;
                size_t vlen = cold ? off[i + 1] - off[i] : fr->vlen;
                ld_record_t r;
                if (ld_decoder_decode(d, fr->key, fr->klen, v, vlen, -1, &r))
                    die("decode", ld_decoder_error(d));
                sink += r.x.nnz;
            }
        t1 = now_s();
    } while (t1 - t0 < 0.5);
    (void)sink;
    free(arena);
    free(off);
    ld_decoder_destroy(d);
    fx_conf_free(c);
    return (double)n / (t1 - t0);
}

static const char what_is_measured[] =
    "usage: bench_ingest [-f avro,protobuf,json,pbdesc] [-r runs] "
    "[-p partitions] [-n] [-d] [-t] [-h]\n"
    "  -f formats (default all)  -r runs per format (default 5)\n"
    "  -p partitions per topic (default 48)  -n no decode-from-memory lines\n"
    "  -d only the decode-from-memory lines  -t CPU ns/record per thread\n"
    "\n"
    "Each run reads one pre-filled topic (mock cluster, 1 broker) twice,\n"
    "in alternating order:\n"
    "  raw     one thread: rd_kafka_consumer_poll on a plain consumer with\n"
    "          ld_pipeline's consumer settings, payload length + first "
    "byte.\n"
    "  ingest  one thread: ld_pipeline_poll = librdkafka consume (each\n"
    "          partition from its own queue, merged by Kafka timestamp),\n"
    "          Confluent framing, decode, field mapping, hashed features,\n"
    "          dense values and crosses into the returned ld_record_t\n"
    "          (borrowed, not copied).\n"
    "  Not in it: the daemon's ingest thread and ring (daemon/ingest.c),\n"
    "  join, training, commits (bench_e2e measures those).\n"
    "ratio: ingest records/s / raw records/s, first to last record.\n"
    "process ratio: raw process CPU ns/record / ingest's (all threads:\n"
    "  the poll thread, librdkafka's, the mock broker's), the rate ratio\n"
    "  two saturated cores would give. Both ratios fall when neighbours\n"
    "  load the machine (raw gets cheaper per record, decoding does not):\n"
    "  compare binaries alternated in one session, not across sessions.\n";

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const double *v, int n)
{
    double s[MAX_RUNS];
    memcpy(s, v, (size_t)n * sizeof(*v));
    qsort(s, (size_t)n, sizeof(*s), cmp_double);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

static void range(const double *v, int n, double *lo, double *hi)
{
    *lo = *hi = v[0];
    for (int i = 1; i < n; i++) {
        *lo = v[i] < *lo ? v[i] : *lo;
        *hi = v[i] > *hi ? v[i] : *hi;
    }
}

int main(int argc, char **argv)
{
    /* pbdesc: users' own Protobuf messages (shop.v1.Impression through a
     * FileDescriptorSet, pipeline/pbdesc.c) */
    static const char *fmts[] = {"avro", "protobuf", "json", "pbdesc"};
    const char *only = "avro,protobuf,json,pbdesc";
    int runs = 5, with_decode = 1, opt;
    char err[256];
    while ((opt = getopt(argc, argv, "f:r:p:ndth")) != -1) {
        switch (opt) {
        case 'f':
            only = optarg;
            break;
        case 'r':
            runs = atoi(optarg);
            break;
        case 'p':
            parts = atoi(optarg);
            break;
        case 'n':
            with_decode = 0;
            break;
        case 'd':
            runs = 0; /* decode lines only */
            break;
        case 't':
            per_thread = 1;
            break;
        case 'h':
            fputs(what_is_measured, stdout);
            return 0;
        default:
            fprintf(stderr,
                    "usage: bench_ingest [-f avro,protobuf,json,pbdesc] "
                    "[-r runs] [-p partitions] [-n] [-d] [-t] [-h]\n");
            return 2;
        }
    }
    if (runs < 0 || runs > MAX_RUNS || parts < 1 || parts > MAX_PARTS)
        die("usage", "runs in [0, 64], partitions in [1, 256]");
    if (getenv("BENCH_PERF_CTL") && getenv("BENCH_PERF_PHASE")) {
        perf_ctl = fopen(getenv("BENCH_PERF_CTL"), "w");
        perf_phase = getenv("BENCH_PERF_PHASE");
    }
    ld_log_set_level(LD_LOG_ERR);
    rd_kafka_conf_t *pc = rd_kafka_conf_new();
    if (rd_kafka_conf_set(pc, "test.mock.num.brokers", "1", err, sizeof(err)) ||
        rd_kafka_conf_set(pc, "linger.ms", "20", err, sizeof(err)) ||
        rd_kafka_conf_set(pc, "batch.size", "1000000", err, sizeof(err)) ||
        rd_kafka_conf_set(pc, "log_level", "3", err, sizeof(err)))
        die("producer conf", err);
    rd_kafka_t *pr = rd_kafka_new(RD_KAFKA_PRODUCER, pc, err, sizeof(err));
    if (!pr)
        die("producer", err);
    rd_kafka_mock_cluster_t *mc = rd_kafka_handle_mock_cluster(pr);
    bootstrap = rd_kafka_mock_cluster_bootstraps(mc);

    printf("bench_ingest: librdkafka %s mock cluster (1 broker), %d "
           "partitions per topic, events of tests/data/pipeline, 20 dense + "
           "hashed + 2 crosses; %d runs, raw and ingest alternating, same "
           "consumer settings\n",
           rd_kafka_version_str(), parts, runs);
    for (int f = 0; f < 4; f++) {
        if (!strstr(only, fmts[f]))
            continue;
        char path[512], topic[64], labels[64];
        fx_set_t s;
        snprintf(path, sizeof(path), FX_DIR "/events-%s.kcat", fmts[f]);
        if (fx_load_kcat(path, &s))
            die("fixture", path);
        snprintf(topic, sizeof(topic), "bench-%s", fmts[f]);
        snprintf(labels, sizeof(labels), "bench-%s-labels", fmts[f]);
        long n = 0;
        if (runs > 0) {
            rd_kafka_mock_topic_create(mc, topic, parts, 1);
            rd_kafka_mock_topic_create(mc, labels, parts, 1);
            n = fill(pr, topic, &s);
            printf("%-9s %9ld records\n", fmts[f], n);
        }
        double raw[MAX_RUNS], ing[MAX_RUNS], ratio[MAX_RUNS];
        /* cpu ns/rec: [0] poll thread, [1] process; cratio: raw process
         * CPU per record / ingest's, the rate ratio on saturated cores */
        double rcpu[2][MAX_RUNS], icpu[2][MAX_RUNS], cratio[MAX_RUNS];
        uint64_t nnz = 0;
        for (int run = 0; run < runs; run++) {
            /* alternate the order: whatever the first reader of a run
             * pays or gains (mock cluster state, CPU frequency, the
             * neighbours) falls on each side equally often */
            double rc[2], ic[2];
            if (run % 2 == 0) {
                raw[run] = raw_rate(topic, labels, n, run, rc);
                ing[run] =
                    ingest_rate(fmts[f], topic, labels, n, run, &nnz, ic);
            } else {
                ing[run] =
                    ingest_rate(fmts[f], topic, labels, n, run, &nnz, ic);
                raw[run] = raw_rate(topic, labels, n, run, rc);
            }
            for (int i = 0; i < 2; i++)
                rcpu[i][run] = rc[i], icpu[i][run] = ic[i];
            ratio[run] = 100.0 * ing[run] / raw[run];
            cratio[run] = 100.0 * rc[1] / ic[1];
            printf("  run %2d   raw %9.0f rec/s   ingest %9.0f rec/s   "
                   "ratio %5.1f%%   cpu ns/rec poll thread %4.0f / %4.0f, "
                   "process %4.0f / %4.0f (%5.1f%%)\n",
                   run, raw[run], ing[run], ratio[run], rc[0], ic[0], rc[1],
                   ic[1], cratio[run]);
            fflush(stdout);
        }
        double lo[4], hi[4];
        if (runs > 0) {
            range(raw, runs, &lo[0], &hi[0]);
            range(ing, runs, &lo[1], &hi[1]);
            range(ratio, runs, &lo[2], &hi[2]);
            range(cratio, runs, &lo[3], &hi[3]);
            printf("%-9s raw %.0f (%.0f-%.0f) rec/s, ingest %.0f (%.0f-%.0f) "
                   "rec/s, ratio median %.1f%% (range %.1f-%.1f%%), "
                   "nnz/rec %.1f\n",
                   fmts[f], median(raw, runs), lo[0], hi[0], median(ing, runs),
                   lo[1], hi[1], median(ratio, runs), lo[2], hi[2],
                   (double)nnz / (double)n);
            printf("%-9s cpu ns/rec median raw / ingest: poll thread %.0f / "
                   "%.0f, process %.0f / %.0f, process ratio median %.1f%% "
                   "(range %.1f-%.1f%%)\n",
                   fmts[f], median(rcpu[0], runs), median(icpu[0], runs),
                   median(rcpu[1], runs), median(icpu[1], runs),
                   median(cratio, runs), lo[3], hi[3]);
        }
        if (with_decode)
            printf("%-9s decode from memory %.0f rec/s hot, %.0f rec/s "
                   "cold\n",
                   fmts[f], decode_rate(fmts[f], &s, 0),
                   decode_rate(fmts[f], &s, 1));
        fflush(stdout);
        fx_free(&s);
    }
    rd_kafka_destroy(pr);
    return 0;
}
