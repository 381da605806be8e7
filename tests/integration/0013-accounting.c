/* SPDX-License-Identifier: Apache-2.0 */
/* Where every record goes (issue #15, items 1, 5 and 8), against the real
 * broker: good JSON events and labels on two co-partitioned partitions,
 * mixed with every kind of bad record (undecodable, empty, no key, no
 * time, a key of 256 bytes, times beyond +-2^61 ms, numbers beyond float,
 * bad UTF-8, a wrong type, a repeated field, no label, 5 KB, too many
 * features), a duplicate event, a late event, a late label, a label
 * without an event, and one event and one label dated 2100 on each
 * partition. Asserted exactly, from
 * /metrics of a live `learnd run`:
 *
 *   records in = trained + dead-lettered + counted drops + pending
 *
 * per topic kind and per reason; the dead-letter topic holds exactly the
 * bad records with their reasons; the year-2100 records are future_time
 * dead letters and do not stop the partition (on main the rest of each
 * partition was late: 18 examples fewer); and after a restart the final
 * checkpoint's lineage counts the dead letters and late labels of the first
 * run (they were always 0), and `replay --verify` rebuilds it bit for bit.
 * Last, with the bound off, a year-2100 event raises the
 * learnd_watermark_ahead_of_clock alert and makes the next event late. */
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "testutil.h"
#include "publish/publish.h"
#include "trainer/checkpoint.h"

#define PARTS   2
#define WINDOW  10000 /* labeling.window */
#define TIMEOUT 60000

static char prefix[96], tmpdir[256];
static int64_t T; /* event time of the first event: a day ago */

/* Per partition, what each record must become. */
enum {
    X_EXAMPLE_POS,
    X_EXAMPLE_NEG,
    X_PENDING,
    X_JOINED, /* a label aggregated into its event */
    X_LATE,
    X_DUPLICATE,
    X_UNMATCHED,
    X_DLQ,
};

static const char *const reasons[] = {"decode",          "empty",
                                      "missing_key",     "missing_time",
                                      "key_too_long",    "time_range",
                                      "not_finite",      "future_time",
                                      "bad_utf8",        "bad_type",
                                      "duplicate_field", "missing_label",
                                      "oversize",        "too_many_features"};
#define NREASONS (sizeof(reasons) / sizeof(reasons[0]))
#define MAXR     16
static int want_dlq[2][MAXR]; /* [kind][reason index in reasons[]] */
static int64_t produced[2], expect[2][8];

static int reason_index(const char *r)
{
    for (size_t i = 0; i < NREASONS; i++)
        if (strcmp(reasons[i], r) == 0)
            return (int)i;
    LD_TEST_FAIL("unknown reason %s", r);
}

static void put(rd_kafka_t *rk, int kind, int p, const char *key,
                const char *value, int fate, const char *reason)
{
    char topic[160];
    snprintf(topic, sizeof(topic), "%s.%s", prefix, kind ? "labels" : "events");
    ld_test_produce(rk, topic, p, key, value, strlen(value));
    produced[kind]++;
    expect[kind][fate]++;
    if (fate == X_DLQ)
        want_dlq[kind][reason_index(reason)]++;
}

static void event(rd_kafka_t *rk, int p, const char *id, int64_t t, int fate)
{
    char v[256];
    snprintf(v, sizeof(v),
             "{\"id\":\"%s\",\"ts\":%" PRId64 ",\"x\":1.5,\"country\":\"fr\"}",
             id, t);
    put(rk, 0, p, id, v, fate, NULL);
}

static void label(rd_kafka_t *rk, int p, const char *id, int64_t t, int fate)
{
    char v[256];
    snprintf(v, sizeof(v), "{\"id\":\"%s\",\"lt\":%" PRId64 ",\"v\":1}", id, t);
    put(rk, 1, p, id, v, fate, NULL);
}

static void bad(rd_kafka_t *rk, int kind, int p, const char *value,
                const char *reason)
{
    put(rk, kind, p, "bad", value, X_DLQ, reason);
}

/* One partition's input, in offset order; the comments give each record's
 * fate by docs/LABELING.md and docs/OPERATIONS.md. */
static void produce_partition(rd_kafka_t *rk, int p)
{
    char id[64], v[512], longkey[300];
    const char *tf[2] = {"ts", "lt"};
    /* events e0..e19, one a second; e5 twice (a duplicate), a year-2100
     * event after e10 (future_time: it must not move the watermark) */
    for (int i = 0; i < 20; i++) {
        snprintf(id, sizeof(id), "p%d-e%d", p, i);
        event(rk, p, id, T + i * 1000, i % 2 ? X_EXAMPLE_NEG : X_EXAMPLE_POS);
        if (i == 5)
            event(rk, p, id, T + i * 1000, X_DUPLICATE);
        if (i == 10) {
            snprintf(v, sizeof(v),
                     "{\"id\":\"p%d-fut\",\"ts\":4102444800000,\"x\":1}", p);
            bad(rk, 0, p, v, "future_time");
        }
    }
    /* older than the partition's watermark: late */
    snprintf(id, sizeof(id), "p%d-late", p);
    event(rk, p, id, T + 1000, X_LATE);
    /* the bad ones */
    memset(longkey, 'k', 256);
    longkey[256] = '\0';
    for (int k = 0; k < 2; k++) {
        const char *f = tf[k];
        bad(rk, k, p, "{\"id\":", "decode");
        snprintf(v, sizeof(v), "{\"%s\":%" PRId64 ",\"v\":1}", f, T);
        bad(rk, k, p, v, "missing_key");
        snprintf(v, sizeof(v), "{\"id\":\"%s\",\"%s\":%" PRId64 ",\"v\":1}",
                 longkey, f, T + 20000);
        bad(rk, k, p, v, "key_too_long");
        snprintf(v, sizeof(v), "{\"id\":\"a\",\"%s\":2305843009213693953}", f);
        bad(rk, k, p, v, "time_range");
        snprintf(v, sizeof(v),
                 "{\"id\":\"a\",\"id\":\"b\",\"%s\":%" PRId64 ",\"v\":1}", f,
                 T);
        bad(rk, k, p, v, "duplicate_field");
        /* a record over max_record_bytes (4 KiB) */
        static char big[5000];
        int o = snprintf(big, sizeof(big),
                         "{\"id\":\"a\",\"%s\":%" PRId64 ",\"v\":1,\"pad\":\"",
                         f, T);
        memset(big + o, 'p', sizeof(big) - (size_t)o - 3);
        memcpy(big + sizeof(big) - 3, "\"}", 3);
        bad(rk, k, p, big, "oversize");
        if (k == 1) {
            snprintf(v, sizeof(v), "{\"id\":\"a\",\"lt\":%" PRId64 "}", T);
            bad(rk, k, p, v, "missing_label");
        }
        if (k == 0) {
            snprintf(v, sizeof(v),
                     "{\"id\":\"a\",\"ts\":%" PRId64
                     ",\"country\":\"\xc3\x28\"}",
                     T);
            bad(rk, k, p, v, "bad_utf8");
            snprintf(v, sizeof(v),
                     "{\"id\":\"a\",\"ts\":%" PRId64 ",\"x\":\"one\"}", T);
            bad(rk, k, p, v, "bad_type");
            snprintf(v, sizeof(v),
                     "{\"id\":\"a\",\"ts\":%" PRId64
                     ",\"tags\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}",
                     T);
            bad(rk, k, p, v, "too_many_features");
            bad(rk, k, p, "", "empty");
            bad(rk, k, p, "{\"id\":\"a\",\"x\":1}", "missing_time");
            snprintf(v, sizeof(v),
                     "{\"id\":\"a\",\"ts\":-9223372036854775808,\"x\":1}");
            bad(rk, k, p, v, "time_range");
            snprintf(v, sizeof(v),
                     "{\"id\":\"a\",\"ts\":%" PRId64 ",\"x\":1e300}", T);
            bad(rk, k, p, v, "not_finite");
        }
    }
    /* e20 far ahead closes every window above; its own stays open */
    snprintf(id, sizeof(id), "p%d-e20", p);
    event(rk, p, id, T + 40000, X_PENDING);

    /* labels 2 s after the even events; a year-2100 label after l8 */
    for (int i = 0; i < 20; i += 2) {
        snprintf(id, sizeof(id), "p%d-e%d", p, i);
        label(rk, p, id, T + i * 1000 + 2000, X_JOINED);
        if (i == 8) {
            snprintf(v, sizeof(v),
                     "{\"id\":\"p%d-e9\",\"lt\":4102444800000,\"v\":1}", p);
            bad(rk, 1, p, v, "future_time");
        }
    }
    snprintf(id, sizeof(id), "p%d-ghost", p); /* no such event */
    label(rk, p, id, T + 21000, X_UNMATCHED);
    snprintf(id, sizeof(id), "p%d-e3", p); /* older than the watermark */
    label(rk, p, id, T + 3000, X_LATE);
    snprintf(id, sizeof(id), "p%d-e20", p); /* joins the pending e20 */
    label(rk, p, id, T + 40000, X_JOINED);
}

static void write_config(char *path, size_t size, uint16_t port,
                         const char *max_future)
{
    snprintf(path, size, "%s/acc.yaml", tmpdir);
    FILE *f = ld_test_config_begin(path, NULL, prefix);
    fprintf(f,
            "log:\n"
            "  level: notice\n"
            "metrics:\n"
            "  port: %u\n"
            "pipeline:\n"
            "  events_topic: %s.events\n"
            "  labels_topic: %s.labels\n"
            "  dlq_topic: %s.dlq\n"
            "  group_id: %s.group\n"
            "  format: json\n"
            "  key_field: id\n"
            "  event_time_field: ts\n"
            "  label_time_field: lt\n"
            "  dense_fields: [x]\n"
            "  hash_fields: [country, tags]\n"
            "  label_field: v\n"
            "  max_record_bytes: 4KiB\n"
            "  max_features: 4\n"
            "  max_future: %s\n"
            "labeling:\n"
            "  window: %dms\n"
            "  max_out_of_orderness: 1s\n"
            "  idle_timeout: 0\n"
            "  late_policy: drop\n"
            "trainer:\n"
            "  name: acc\n"
            "  hash_bits: 12\n"
            "  batch_size: 4\n"
            "checkpoint:\n"
            "  dir: %s/models\n"
            "triggers:\n"
            "  time_enabled: false\n"
            "  volume_enabled: false\n"
            "  performance_enabled: false\n"
            "  drift_enabled: false\n",
            (unsigned)port, prefix, prefix, prefix, prefix, max_future, WINDOW,
            tmpdir);
    fclose(f);
}

/* One series (0 when absent: a counter never set), failing on no answer. */
static int64_t metric(uint16_t port, const char *fmt, ...) LD_TEST_PRINTF(2, 3);
static int64_t metric(uint16_t port, const char *fmt, ...)
{
    char series[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(series, sizeof(series), fmt, ap);
    va_end(ap);
    LD_TEST_ASSERT(ld_test_metric(port, "learnd_up") == 1,
                   "nothing serves /metrics on port %u", (unsigned)port);
    double v = ld_test_metric(port, series);
    return v < 0 ? 0 : (int64_t)v;
}

static const char *const kinds[2] = {"event", "label"};

/* Reasons of learnd_records_dropped_total (docs/OPERATIONS.md). */
enum {
    D_LATE,
    D_DUPLICATE,
    D_AFTER_WINDOW,
    D_UNMATCHED,
    D_NO_LABEL,
    D_EXPIRED,
    D_MODEL_REFUSED,
    D__COUNT
};
static const char *const drop_reasons[D__COUNT] = {
    "late",     "duplicate", "after_window", "unmatched",
    "no_label", "expired",   "model_refused"};

/* What /metrics says, in one go. */
typedef struct snap {
    int64_t consumed[2], dlq[2][NREASONS], drop[2][D__COUNT], pending[2];
    int64_t pos, neg, trained, joined, after_window, refused, ahead;
} snap_t;

static void scrape(uint16_t port, snap_t *s)
{
    memset(s, 0, sizeof(*s));
    for (int k = 0; k < 2; k++) {
        s->consumed[k] = metric(
            port, "learnd_records_consumed_total{kind=\"%s\"}", kinds[k]);
        s->pending[k] =
            metric(port, "learnd_pending_joins{kind=\"%s\"}", kinds[k]);
        for (size_t r = 0; r < NREASONS; r++)
            s->dlq[k][r] = metric(
                port, "learnd_dead_letters_total{kind=\"%s\",reason=\"%s\"}",
                kinds[k], reasons[r]);
        for (int r = 0; r < D__COUNT; r++)
            s->drop[k][r] = metric(port,
                                   "learnd_records_dropped_total{kind=\"%s\","
                                   "reason=\"%s\"}",
                                   kinds[k], drop_reasons[r]);
    }
    s->pos = metric(port, "learnd_examples_total{sample_type=\"pos\"}");
    s->neg = metric(port, "learnd_examples_total{sample_type=\"default_neg\"}");
    s->trained = metric(port, "learnd_examples_trained_total");
    s->joined = metric(port, "learnd_label_records_total{outcome=\"joined\"}");
    s->after_window =
        metric(port, "learnd_label_records_total{outcome=\"after_window\"}");
    s->refused = metric(
        port, "learnd_records_dropped_total{kind=\"any\",reason=\"refused\"}");
    s->ahead = metric(port, "learnd_watermark_ahead_of_clock");
}

static int64_t sum(const int64_t *v, size_t n)
{
    int64_t t = 0;
    for (size_t i = 0; i < n; i++)
        t += v[i];
    return t;
}

/* records in = trained + dead-lettered + counted drops + pending, for
 * events (trained: examples trained on, one per event in window mode;
 * model_refused is among the drops) and for labels (trained: joined into an
 * event's example, or after its window and used for a correction, i.e.
 * learnd_label_records_total{outcome="after_window"} minus the dropped
 * ones). */
static int balanced(const snap_t *s)
{
    int64_t ev = s->trained + sum(s->dlq[0], NREASONS) +
                 sum(s->drop[0], D__COUNT) + s->pending[0];
    int64_t lb = s->joined + s->after_window - s->drop[1][D_AFTER_WINDOW] +
                 sum(s->dlq[1], NREASONS) + sum(s->drop[1], D__COUNT) +
                 s->pending[1];
    return ev == produced[0] && lb == produced[1] && s->refused == 0 &&
           s->consumed[0] + sum(s->dlq[0], NREASONS) == produced[0] &&
           s->consumed[1] + sum(s->dlq[1], NREASONS) == produced[1];
}

static void show(const snap_t *s)
{
    for (int k = 0; k < 2; k++)
        ld_test_say(
            "%ss: in %" PRId64 ", decoded %" PRId64 ", dead-lettered %" PRId64
            ", dropped %" PRId64 " (late %" PRId64 ", duplicate %" PRId64
            ", unmatched %" PRId64 "), pending %" PRId64,
            kinds[k], produced[k], s->consumed[k], sum(s->dlq[k], NREASONS),
            sum(s->drop[k], D__COUNT), s->drop[k][D_LATE],
            s->drop[k][D_DUPLICATE], s->drop[k][D_UNMATCHED], s->pending[k]);
    ld_test_say("examples pos %" PRId64 " default_neg %" PRId64
                ", trained %" PRId64 ", labels joined %" PRId64,
                s->pos, s->neg, s->trained, s->joined);
}

static const char *header(rd_kafka_headers_t *h, const char *name, char *buf,
                          size_t size)
{
    const void *v;
    size_t n;
    if (!h || rd_kafka_header_get_last(h, name, &v, &n))
        return NULL;
    snprintf(buf, size, "%.*s", (int)n, (const char *)v);
    return buf;
}

static int got_dlq[2][MAXR];
static char events_topic[160];

static void on_dead(const rd_kafka_message_t *m, void *opaque)
{
    (void)opaque;
    rd_kafka_headers_t *h = NULL;
    char why[64], src[200];
    rd_kafka_message_headers(m, &h);
    LD_TEST_ASSERT(header(h, "learnd.error", why, sizeof(why)) &&
                       header(h, "learnd.src.topic", src, sizeof(src)),
                   "dead letter at %" PRId64 " lacks headers", m->offset);
    got_dlq[strcmp(src, events_topic) ? 1 : 0][reason_index(why)]++;
}

/* Copies the last line of path that contains needle into out. */
static int last_line_with(const char *path, const char *needle, char *out,
                          size_t size)
{
    FILE *f = fopen(path, "r");
    char line[2048];
    int found = 0;
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f))
        if (strstr(line, needle)) {
            snprintf(out, size, "%s", line);
            found = 1;
        }
    fclose(f);
    return found;
}

int main(void)
{
    ld_test_name(prefix, sizeof(prefix), "acc");
    ld_test_tmpdir(tmpdir, sizeof(tmpdir), "0013");
    T = (ld_now_wall_ms() - 86400000) / 1000 * 1000;
    rd_kafka_t *rk = ld_test_new(RD_KAFKA_PRODUCER, ld_test_conf_new());
    char t[200];
    snprintf(events_topic, sizeof(events_topic), "%s.events", prefix);
    ld_test_create_topic(rk, events_topic, PARTS, TIMEOUT);
    snprintf(t, sizeof(t), "%s.labels", prefix);
    ld_test_create_topic(rk, t, PARTS, TIMEOUT);
    ld_test_create_outputs(rk, prefix, 0);
    for (int p = 0; p < PARTS; p++)
        produce_partition(rk, p);
    LD_TEST_ASSERT(rd_kafka_flush(rk, TIMEOUT) == 0, "flush");
    ld_test_say("produced %" PRId64 " events and %" PRId64 " labels",
                produced[0], produced[1]);

    uint16_t port = ld_test_free_port();
    char config[300], log1[300], log2[300];
    write_config(config, sizeof(config), port, "1h");
    snprintf(log1, sizeof(log1), "%s/run.log", tmpdir);
    double started_s = (double)time(NULL);
    pid_t pid = ld_test_spawn_run(LD_LEARND_BIN, config, 0, log1);

    /* Poll /metrics until two scrapes a report apart agree and the books
     * balance (they cannot before everything is read and reported). */
    snap_t a, b;
    int64_t dl = ld_test_deadline(2 * TIMEOUT);
    memset(&a, 0xff, sizeof(a));
    for (;;) {
        int st;
        LD_TEST_ASSERT(waitpid(pid, &st, WNOHANG) == 0,
                       "the daemon exited (status %d)", st);
        if (ld_test_metric(port, "learnd_up") == 1) {
            scrape(port, &b);
            if (memcmp(&a, &b, sizeof(a)) == 0 && balanced(&b))
                break;
            a = b;
        }
        if (!ld_test_remaining(dl)) {
            show(&b);
            ld_test_show_tail(log1, 30);
            LD_TEST_FAIL("the books never balanced: in %" PRId64
                         " events, %" PRId64 " labels",
                         produced[0], produced[1]);
        }
        /* /metrics is polled: there is no event to wait on */
        struct timespec ts = {1, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
    show(&b);

    /* Commit points every 200 ms, and nothing published (no trigger, no
     * end of input): the commit time is this run's, no publication shows. */
    double commit_s = ld_test_metric(port, "learnd_last_commit_timestamp_"
                                           "seconds");
    LD_TEST_ASSERT(commit_s >= started_s - 1 &&
                       commit_s <= (double)time(NULL) + 1,
                   "learnd_last_commit_timestamp_seconds %.3f, started at "
                   "%.0f",
                   commit_s, started_s);
    LD_TEST_EQ_I64("learnd_last_publication_version (absent)", -1,
                   ld_test_metric(port, "learnd_last_publication_version"));
    LD_TEST_EQ_I64(
        "learnd_last_publication_timestamp_seconds (absent)", -1,
        ld_test_metric(port, "learnd_last_publication_timestamp_seconds"));

    /* Per reason, exactly what the input says. */
    LD_TEST_EQ_I64("pos examples", expect[0][X_EXAMPLE_POS], b.pos);
    LD_TEST_EQ_I64("default_neg examples", expect[0][X_EXAMPLE_NEG], b.neg);
    LD_TEST_EQ_I64("examples trained", b.pos + b.neg, b.trained);
    LD_TEST_EQ_I64("events late", expect[0][X_LATE], b.drop[0][D_LATE]);
    LD_TEST_EQ_I64("events duplicate", expect[0][X_DUPLICATE],
                   b.drop[0][D_DUPLICATE]);
    LD_TEST_EQ_I64("labels late", expect[1][X_LATE], b.drop[1][D_LATE]);
    LD_TEST_EQ_I64("labels unmatched", expect[1][X_UNMATCHED],
                   b.drop[1][D_UNMATCHED]);
    LD_TEST_EQ_I64("labels joined", expect[1][X_JOINED], b.joined);
    LD_TEST_EQ_I64("pending events", expect[0][X_PENDING], b.pending[0]);
    LD_TEST_EQ_I64("pending labels", 0, b.pending[1]);
    LD_TEST_EQ_I64("refused by the joiner", 0, b.refused);
    for (int k = 0; k < 2; k++)
        for (size_t r = 0; r < NREASONS; r++)
            LD_TEST_EQ_I64(reasons[r], want_dlq[k][r], b.dlq[k][r]);
    LD_TEST_EQ_I64("watermark ahead of the clock", 0, b.ahead);
    LD_TEST_ASSERT(ld_test_file_has(log1, "msg=\"input records dropped"),
                   "no log line about the dropped records");

    kill(pid, SIGTERM);
    LD_TEST_EQ_I64("exit code after SIGTERM", 0,
                   ld_test_wait_exit(pid, TIMEOUT));

    /* The stop logs the drop totals once more, whatever the 10 s rate
     * limit says: a backfill's log must carry them, it has no /metrics
     * after it exits. */
    char last[2048], want[128];
    LD_TEST_ASSERT(
        last_line_with(log1, "msg=\"input records dropped", last, sizeof(last)),
        "no drop line in %s", log1);
    snprintf(want, sizeof(want), " events_late=%lld labels_late=%lld ",
             (long long)expect[0][X_LATE], (long long)expect[1][X_LATE]);
    LD_TEST_ASSERT(strstr(last, want), "last drop line %s lacks %s", last,
                   want);
    snprintf(want, sizeof(want), " labels_unmatched=%lld ",
             (long long)expect[1][X_UNMATCHED]);
    LD_TEST_ASSERT(strstr(last, want), "last drop line %s lacks %s", last,
                   want);
    LD_TEST_ASSERT(!strstr(last, "watermark_ms=-9223372036854775808"),
                   "last drop line taken after the partitions went: %s", last);

    /* The dead-letter topic: exactly the bad records, by reason. */
    char dlq[200];
    snprintf(dlq, sizeof(dlq), "%s.dlq", prefix);
    int64_t n = ld_test_read_topic(dlq, TIMEOUT, on_dead, NULL, NULL);
    int64_t want_n = 0;
    for (int k = 0; k < 2; k++)
        for (size_t r = 0; r < NREASONS; r++) {
            char what[64];
            snprintf(what, sizeof(what), "%s %s in the DLQ", kinds[k],
                     reasons[r]);
            LD_TEST_EQ_I64(what, want_dlq[k][r], got_dlq[k][r]);
            want_n += want_dlq[k][r];
        }
    LD_TEST_EQ_I64("dead letters", want_n, n);

    /* A restart publishes the final checkpoint: its lineage counts the
     * first run's dead letters and late labels, kept in the resume state
     * (the restart re-reads, and neither re-counts them). */
    snprintf(log2, sizeof(log2), "%s/final.log", tmpdir);
    write_config(config, sizeof(config), ld_test_free_port(), "1h");
    pid = ld_test_spawn_run(LD_LEARND_BIN, config, 1, log2);
    LD_TEST_EQ_I64("resumed run exit code", 0,
                   ld_test_wait_exit(pid, 2 * TIMEOUT));
    char dir[300], why[512];
    snprintf(dir, sizeof(dir), "%s/models", tmpdir);
    ld_ckpt_t *ck = NULL;
    LD_TEST_ASSERT(ld_publish_store_load_latest(dir, "acc", &ck, why,
                                                sizeof(why)) == LD_OK,
                   "no final checkpoint: %s", why);
    const Learnd__V1__Lineage *l = ld_ckpt_message(ck)->lineage;
    LD_TEST_ASSERT(l && l->counts && l->total_counts, "lineage with counts");
    LD_TEST_EQ_I64("lineage dead_lettered", want_n, l->counts->dead_lettered);
    LD_TEST_EQ_I64("lineage total dead_lettered", want_n,
                   l->total_counts->dead_lettered);
    LD_TEST_EQ_I64("lineage late_labels_dropped", expect[1][X_LATE],
                   l->counts->late_labels_dropped);
    LD_TEST_EQ_I64("lineage total late_labels_dropped", expect[1][X_LATE],
                   l->total_counts->late_labels_dropped);
    LD_TEST_EQ_I64("lineage pos", expect[0][X_EXAMPLE_POS],
                   l->total_counts->pos);
    LD_TEST_EQ_I64("lineage default_neg", expect[0][X_EXAMPLE_NEG],
                   l->total_counts->default_neg);
    uint64_t version = l->version;
    ld_ckpt_destroy(ck);

    /* A replay decides the same: the same records dead-lettered (counted,
     * not written), the same dropped, the same model bit for bit. */
    char out[300];
    snprintf(out, sizeof(out), "%s/replay.out", tmpdir);
    int code =
        ld_test_replay_verify(LD_LEARND_BIN, config, version, out, 2 * TIMEOUT);
    if (code != 0)
        ld_test_show_tail(out, 20);
    LD_TEST_EQ_I64("replay --verify exit code", 0, code);
    LD_TEST_ASSERT(ld_test_file_has(out, "\nidentical\n"), "replay output");

    /* Without the bound (max_future 0) a year-2100 event moves partition
     * 0's watermark: the alert metric says so, and the next event of the
     * partition, on time by any clock, is late. */
    port = ld_test_free_port();
    write_config(config, sizeof(config), port, "0");
    char log3[300];
    snprintf(log3, sizeof(log3), "%s/unbounded.log", tmpdir);
    pid = ld_test_spawn_run(LD_LEARND_BIN, config, 0, log3);
    /* (the books above are closed: these fates are not checked) */
    event(rk, 0, "p0-2100", 4102444800000, X_PENDING);
    event(rk, 0, "p0-after", T + 50000, X_LATE);
    LD_TEST_ASSERT(rd_kafka_flush(rk, TIMEOUT) == 0, "flush");
    dl = ld_test_deadline(2 * TIMEOUT);
    while (ld_test_metric(port, "learnd_watermark_ahead_of_clock") != 1 ||
           ld_test_metric(port, "learnd_records_dropped_total{kind=\"event\","
                                "reason=\"late\"}") != 1) {
        int st;
        LD_TEST_ASSERT(waitpid(pid, &st, WNOHANG) == 0,
                       "the daemon exited (status %d)", st);
        LD_TEST_ASSERT(ld_test_remaining(dl) > 0,
                       "no watermark-ahead alert, or no late drop");
        struct timespec ts = {0, 200 * 1000000L};
        nanosleep(&ts, NULL); /* /metrics is polled */
    }
    double ahead = ld_test_metric(port, "learnd_watermark_ahead_seconds");
    LD_TEST_ASSERT(ahead > 2e9, "watermark %.0f s ahead", ahead);
    ld_test_say("unbounded: watermark %.3g s ahead of the clock, the next "
                "event late",
                ahead);
    kill(pid, SIGTERM);
    LD_TEST_EQ_I64("unbounded run exit code", 0,
                   ld_test_wait_exit(pid, TIMEOUT));
    rd_kafka_destroy(rk);
    ld_test_rm_rf(tmpdir);
    ld_test_say("PASS: every record accounted for, lineage counts exact");
    return 0;
}
