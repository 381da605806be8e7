/* SPDX-License-Identifier: Apache-2.0 */
/* The join and train roles on a real broker (docs/OPERATIONS.md, "Scaling
 * out"; issue #22): examples/s of one `learnd run --role join` instance
 * against a raw rd_kafka_consumer_poll of its input (both topics), and of
 * one `learnd run --role train` against a raw consume of the examples topic,
 * in one run; then, live, the latency the examples topic adds: from an
 * example's record timestamp (CreateTime, set by the join's producer as it
 * releases the example) to its training in the train instance, as the train
 * role's learnd_train_example_delay_seconds summary reports it (one machine,
 * one clock). Prints text, never pass/fail.
 *
 * usage: bench_roles [--events N] [--partitions P] [--repeats R]
 *                    [--commit-interval DUR] [--rate EVENTS_PER_S]
 *                    [--seconds S] [--learnd PATH]
 * The broker: LD_TEST_BOOTSTRAP (bench/roles.sh starts the test broker).
 *
 * Throughput: the inputs are filled once with N demo events (Avro, 20 dense
 * and 3 hashed features); each repeat runs, in this order, a raw consume of
 * the inputs, one join instance with --until-caught-up writing an examples
 * topic of its own, a raw consume of that examples topic, and one train
 * instance with --until-caught-up reading it. learnd's rates are timed from
 * /metrics scraped every 20 ms, from the sample at 10 % of its input to the
 * one at 100 % (start-up and the last commit excluded); raw rates over the
 * same 10-100 %. CPU seconds are the whole process's (getrusage of the
 * child; the raw consume's own). */
#define _GNU_SOURCE
#include <getopt.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon/demo.h"
#include "testutil.h"

static struct {
    int events, parts, repeats, rate, seconds;
    const char *commit, *learnd;
} opt = {200000, 3, 2, 20000, 20, "1s", LD_LEARND_BIN};

static char prefix[128], dir[64];
static char inputs_name[160]; /* <prefix>.in, or .live for the latency */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_self(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static uint32_t fnv1a(const char *s)
{
    uint32_t h = 2166136261u;
    while (*s)
        h = (h ^ (uint8_t)*s++) * 16777619u;
    return h;
}

/* A config for run (its outputs <prefix>.<run>.*), triggers: one volume
 * publication per 100 000 examples. */
static void config(const char *path, const char *run, uint16_t port)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(1);
    }
    char out[256];
    snprintf(out, sizeof(out), "%s.%s", prefix, run);
    fprintf(f,
            "kafka:\n  bootstrap.servers: %s\n"
            "daemon:\n  commit_interval: %s\n  transactional_id: %s.txn\n"
            "  state_topic: %s.state\n  checkpoint_topic: %s.ckpt\n"
            "  trigger_topic: %s.triggers\n"
            "log:\n  level: notice\n"
            "metrics:\n  enabled: true\n  listen: 127.0.0.1\n  port: %u\n",
            ld_test_bootstrap(), opt.commit, out, out, out, out,
            (unsigned)port);
    ld_test_config_demo_input(f, inputs_name, out);
    fprintf(f,
            "  hash_fields: [country, ad_id, device]\n"
            "  label_field: clicked\n"
            "labeling:\n  window: 20s\n  max_out_of_orderness: 2s\n"
            "trainer:\n  name: m\n  hash_bits: 18\n  batch_size: 64\n"
            "checkpoint:\n  dir: %s/%s-models\n"
            "triggers:\n  time_enabled: false\n  performance_enabled: false\n"
            "  drift_enabled: false\n  volume_examples: 100000\n",
            dir, run);
    fclose(f);
    char t[300];
    rd_kafka_t *rk = ld_test_new(RD_KAFKA_PRODUCER, ld_test_conf_new());
    snprintf(t, sizeof(t), "%s", out);
    ld_test_create_outputs(rk, t, 0);
    rd_kafka_destroy(rk);
}

static pid_t spawn(const char *cfg, const char *role, const char *extopic,
                   int until, const char *log)
{
    char rarg[64], earg[300];
    snprintf(rarg, sizeof(rarg), "--role=%s", role);
    snprintf(earg, sizeof(earg), "--examples-topic=%s", extopic);
    char *argv[9] = {(char *)opt.learnd, "run", "-c", (char *)cfg, rarg, earg};
    int n = 6;
    if (strcmp(role, "join") == 0)
        argv[n++] = "--instance=b0";
    if (until)
        argv[n++] = "--until-caught-up";
    argv[n] = NULL;
    return ld_test_spawn(argv, log);
}

/* Waits for pid; its CPU seconds. */
static double reap(pid_t pid)
{
    int st = 0;
    struct rusage ru;
    if (wait4(pid, &st, 0, &ru) != pid || !WIFEXITED(st) ||
        WEXITSTATUS(st) != 0)
        fprintf(stderr, "bench_roles: pid %d ended with status %d\n", (int)pid,
                st);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

typedef struct rate {
    double per_s, cpu_s, in_per_s; /* count/s, CPU, progress/s */
    long long n;
} rate_t;

/* Scrapes progress (the sum of series[]) and count every 20 ms until pid
 * exits (reaped here: its CPU seconds into cpu_s): count's and progress's
 * rates between the sample at 10 % of total and the last sample that moved
 * (learnd updates /metrics once a second: inputs of several seconds are
 * needed). */
static rate_t watch(pid_t pid, uint16_t port, const char *const *series,
                    int nseries, const char *count, long long total)
{
    double t10 = 0, c10 = 0, p10 = 0, tl = 0, cl = 0, pl = 0;
    rate_t r = {0};
    int st = 0;
    struct rusage ru;
    for (;;) {
        double p = 0;
        for (int i = 0; i < nseries; i++) {
            double v = ld_test_metric(port, series[i]);
            p += v > 0 ? v : 0;
        }
        double c = ld_test_metric(port, count), t = now_s();
        if (!t10 && p >= 0.1 * (double)total) {
            t10 = t;
            c10 = c;
            p10 = p;
        }
        if (p > pl) {
            tl = t;
            pl = p;
            cl = c;
        }
        if (wait4(pid, &st, WNOHANG, &ru) == pid)
            break;
        usleep(20000);
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fprintf(stderr, "bench_roles: pid %d ended with status %d\n", (int)pid,
                st);
    r.cpu_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
              (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    r.per_s = tl > t10 ? (cl - c10) / (tl - t10) : 0;
    r.in_per_s = tl > t10 ? (pl - p10) / (tl - t10) : 0;
    r.n = (long long)cl;
    return r;
}

/* A raw consume of topics (every partition, read_committed), from 10 % to
 * the end; total is the record count. Returns records/s (and counts
 * examples, records whose field 1 is set, into *examples). */
static rate_t raw(const char *const *topics, int ntopics, long long total,
                  long long *examples)
{
    rd_kafka_conf_t *c = ld_test_conf_new();
    char g[300];
    snprintf(g, sizeof(g), "%s.raw.%d", prefix, rand());
    ld_test_conf_set(c, "group.id", g);
    ld_test_conf_set(c, "isolation.level", "read_committed");
    ld_test_conf_set(c, "enable.partition.eof", "true");
    ld_test_conf_set(c, "queued.min.messages", "1000000");
    ld_test_conf_set(c, "fetch.wait.max.ms", "100");
    rd_kafka_t *k = ld_test_new(RD_KAFKA_CONSUMER, c);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    for (int i = 0; i < ntopics; i++)
        for (int p = 0; p < opt.parts; p++)
            rd_kafka_topic_partition_list_add(l, topics[i], p)->offset =
                RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(k, l);
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_poll_set_consumer(k);
    long long n = 0, ex = 0;
    int eof = 0;
    double t10 = 0, cpu0 = cpu_self(), t = 0;
    long long n10 = 0;
    while (eof < ntopics * opt.parts) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(k, 1000);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            eof++;
        } else if (!m->err) {
            n++;
            ex += m->len > 0 && ((const uint8_t *)m->payload)[0] == 0x0a;
            if (!t10 && n >= total / 10) {
                t10 = now_s();
                n10 = n;
            }
        }
        rd_kafka_message_destroy(m);
    }
    t = now_s();
    rate_t r = {.per_s = t > t10 ? (double)(n - n10) / (t - t10) : 0,
                .cpu_s = cpu_self() - cpu0,
                .n = n};
    rd_kafka_consumer_close(k);
    rd_kafka_destroy(k);
    if (examples)
        *examples = ex;
    return r;
}

static long long ends(const char *const *topics, int ntopics)
{
    rd_kafka_t *rk = ld_test_new(RD_KAFKA_PRODUCER, ld_test_conf_new());
    long long sum = 0;
    for (int i = 0; i < ntopics; i++)
        for (int p = 0; p < opt.parts; p++) {
            int64_t lo = 0, hi = 0;
            rd_kafka_query_watermark_offsets(rk, topics[i], p, &lo, &hi, 10000);
            sum += hi - lo;
        }
    rd_kafka_destroy(rk);
    return sum;
}

static void throughput(int rep, const char *const *inputs, long long nin)
{
    char run[32], cfg[256], log[256], ex[256];
    snprintf(run, sizeof(run), "r%d", rep);
    snprintf(ex, sizeof(ex), "%s.examples.%d", prefix, rep);
    uint16_t port = ld_test_free_port();
    snprintf(cfg, sizeof(cfg), "%s/%s.yaml", dir, run);
    config(cfg, run, port);

    rate_t rin = raw(inputs, 2, nin, NULL);
    snprintf(log, sizeof(log), "%s/%s-join.log", dir, run);
    pid_t pid = spawn(cfg, "join", ex, 1, log);
    static const char *const in_series[] = {
        "learnd_records_consumed_total{kind=\"event\"}",
        "learnd_records_consumed_total{kind=\"label\"}"};
    rate_t j =
        watch(pid, port, in_series, 2, "learnd_examples_trained_total", nin);

    const char *const ext[] = {ex};
    long long nex = 0;
    rate_t rex = raw(ext, 1, ends(ext, 1), &nex);
    snprintf(log, sizeof(log), "%s/%s-train.log", dir, run);
    pid = spawn(cfg, "train", ex, 1, log);
    static const char *const ex_series[] = {"learnd_examples_trained_total"};
    rate_t t =
        watch(pid, port, ex_series, 1, "learnd_examples_trained_total", nex);
    double rawex = rex.per_s * (double)nex / (double)rex.n;
    printf("repeat %d: raw inputs %.0f rec/s, %.0f rec/cpu-s | join %.0f "
           "input rec/s = %.0f%% of raw, %.0f examples/s; %.0f input "
           "rec/cpu-s = %.0f%% of raw, %.0f examples/cpu-s (process "
           "lifetime, %.2f cpu-s)\n",
           rep, rin.per_s, (double)nin / rin.cpu_s, j.in_per_s,
           100.0 * j.in_per_s / rin.per_s, j.per_s, (double)nin / j.cpu_s,
           100.0 * rin.cpu_s / j.cpu_s, (double)nex / j.cpu_s, j.cpu_s);
    printf("          raw examples topic %.0f examples/s, %.0f "
           "examples/cpu-s | train %.0f examples/s = %.0f%% of raw; %.0f "
           "examples/cpu-s = %.0f%% of raw (%lld examples, process lifetime "
           "%.2f cpu-s)\n",
           rawex, (double)nex / rex.cpu_s, t.per_s, 100.0 * t.per_s / rawex,
           (double)nex / t.cpu_s, 100.0 * rex.cpu_s / t.cpu_s, nex, t.cpu_s);
    fflush(stdout);
}

/* Live: one join and one train instance running while the inputs arrive
 * at opt.rate events/s for opt.seconds; the delay summary at the end. */
static void latency(void)
{
    char events[256], labels[256], cfg[256], cfgt[256], logj[256], logt[256];
    char ex[256];
    snprintf(inputs_name, sizeof(inputs_name), "%s.live", prefix);
    rd_kafka_t *rk = ld_test_new(RD_KAFKA_PRODUCER, ld_test_conf_new());
    ld_test_create_demo_inputs(rk, inputs_name, opt.parts, events, labels,
                               sizeof(events));
    uint16_t pj = ld_test_free_port(), pt = ld_test_free_port();
    snprintf(cfg, sizeof(cfg), "%s/live-join.yaml", dir);
    config(cfg, "livej", pj);
    snprintf(cfgt, sizeof(cfgt), "%s/live-train.yaml", dir);
    config(cfgt, "livet", pt);
    snprintf(ex, sizeof(ex), "%s.live.examples", prefix);
    snprintf(logj, sizeof(logj), "%s/live-join.log", dir);
    snprintf(logt, sizeof(logt), "%s/live-train.log", dir);
    pid_t join = spawn(cfg, "join", ex, 0, logj);
    while (ld_test_metric(pj, "learnd_up") != 1)
        usleep(50000);
    sleep(3); /* the join group forms */
    pid_t train = spawn(cfgt, "train", ex, 0, logt);
    while (ld_test_metric(pt, "learnd_up") != 1)
        usleep(50000);
    ld_demo_gen_conf_t g = {.seed = 7,
                            .n_events = (int64_t)opt.rate * opt.seconds,
                            .start_time_ms = INT64_C(1767225600000),
                            .step_ms = 5,
                            .label_delay_ms = 3000,
                            .early_label_share = 0.02};
    ld_demo_gen_t *gen = ld_demo_gen_new(&g);
    ld_demo_record_t r;
    double t0 = now_s();
    while (ld_demo_gen_next(gen, &r) == 1) {
        while (!r.is_label &&
               (double)r.index > (now_s() - t0) * (double)opt.rate) {
            rd_kafka_poll(rk, 1);
        }
        int32_t part = (int32_t)(fnv1a(r.key) % (uint32_t)opt.parts);
        ld_test_produce(rk, r.is_label ? labels : events, part, r.key, r.value,
                        r.len);
    }
    ld_demo_gen_destroy(gen);
    rd_kafka_flush(rk, 60000);
    rd_kafka_destroy(rk);
    double produced = now_s() - t0;
    /* every example the join wrote is trained */
    double jn, tn;
    int64_t deadline = ld_test_deadline(300000);
    do {
        usleep(200000);
        jn = ld_test_metric(pj, "learnd_examples_trained_total");
        tn = ld_test_metric(pt, "learnd_examples_trained_total");
    } while ((jn <= 0 || tn < jn) && ld_test_remaining(deadline) > 0);
    sleep(2); /* the last commit's examples */
    static const char *const qs[] = {"0.5", "0.9", "0.99", "1"};
    printf("live: %d events/s for %.1f s, commit_interval %s: join wrote "
           "%.0f examples, train trained %.0f; delay from the example's "
           "record timestamp to its training:",
           opt.rate, produced, opt.commit, jn,
           ld_test_metric(pt, "learnd_examples_trained_total"));
    for (int i = 0; i < 4; i++) {
        char s[128];
        snprintf(s, sizeof(s),
                 "learnd_train_example_delay_seconds{quantile=\"%s\"}", qs[i]);
        printf(" p%s %.3f s", qs[i], ld_test_metric(pt, s));
    }
    double n = ld_test_metric(pt, "learnd_train_example_delay_seconds_count");
    double sum = ld_test_metric(pt, "learnd_train_example_delay_seconds_sum");
    printf(", mean %.3f s over %.0f examples\n", n > 0 ? sum / n : 0, n);
    kill(join, SIGTERM);
    kill(train, SIGTERM);
    reap(join);
    reap(train);
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"events", required_argument, NULL, 'n'},
        {"partitions", required_argument, NULL, 'p'},
        {"repeats", required_argument, NULL, 'r'},
        {"commit-interval", required_argument, NULL, 'c'},
        {"rate", required_argument, NULL, 'R'},
        {"seconds", required_argument, NULL, 's'},
        {"learnd", required_argument, NULL, 'l'},
        {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'n':
            opt.events = atoi(optarg);
            break;
        case 'p':
            opt.parts = atoi(optarg);
            break;
        case 'r':
            opt.repeats = atoi(optarg);
            break;
        case 'c':
            opt.commit = optarg;
            break;
        case 'R':
            opt.rate = atoi(optarg);
            break;
        case 's':
            opt.seconds = atoi(optarg);
            break;
        case 'l':
            opt.learnd = optarg;
            break;
        default:
            fprintf(stderr, "usage: see bench/bench_roles.c\n");
            return 2;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    ld_test_name(prefix, sizeof(prefix), "bench-roles");
    ld_test_tmpdir(dir, sizeof(dir), "bench-roles");
    printf("bench_roles: %d events over %d partitions, commit_interval %s, "
           "learnd %s\n",
           opt.events, opt.parts, opt.commit, opt.learnd);
    char events[256], labels[256];
    snprintf(inputs_name, sizeof(inputs_name), "%s.in", prefix);
    rd_kafka_t *rk = ld_test_new(RD_KAFKA_PRODUCER, ld_test_conf_new());
    ld_test_create_demo_inputs(rk, inputs_name, opt.parts, events, labels,
                               sizeof(events));
    ld_demo_gen_conf_t g = {.seed = 22,
                            .n_events = opt.events,
                            .drift_at = opt.events / 2,
                            .start_time_ms = INT64_C(1767225600000),
                            .step_ms = 5,
                            .label_delay_ms = 3000,
                            .early_label_share = 0.02};
    ld_test_produce_demo(rk, &g, events, labels, opt.parts, 0);
    rd_kafka_destroy(rk);
    const char *const inputs[] = {events, labels};
    long long nin = ends(inputs, 2);
    printf("inputs: %lld records\n", nin);
    for (int rep = 0; rep < opt.repeats; rep++)
        throughput(rep, inputs, nin);
    if (opt.rate > 0 && opt.seconds > 0)
        latency();
    ld_test_rm_rf(dir);
    return 0;
}
