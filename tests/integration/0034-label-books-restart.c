/* SPDX-License-Identifier: Apache-2.0 */
/* The joiner's books survive restarts: a run killed with SIGKILL, restarted,
 * stopped cleanly and restarted again ends with the same lifetime counts on
 * its "stopped" line as a run that was never interrupted, every label
 * counted once (joined, after its window, late, unmatched, ...), and the
 * same lineage totals. Before the fix a resumed process re-read labels
 * whose events had been decided before its commit point and counted them a
 * second time as unmatched. The stop line's fields each say their scope
 * (_process or _lifetime; docs/OPERATIONS.md). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon/demo.h"
#include "publish/publish.h"
#include "testutil.h"
#include "trainer/checkpoint.h"

#define PARTS  2
#define EVENTS 60000

static char prefix[128];
static char tmpdir[64];

static void write_config(const char *name, char *path, size_t size)
{
    char names[256];
    snprintf(names, sizeof(names), "%s.%s", prefix, name);
    snprintf(path, size, "%s/%s.yaml", tmpdir, name);
    FILE *f = ld_test_config_begin(path, NULL, names);
    fprintf(f, "log:\n  level: notice\nmetrics:\n  enabled: false\n");
    ld_test_config_demo_input(f, prefix, names);
    fprintf(f,
            "  hash_fields: [country, ad_id, device]\n"
            "  label_field: clicked\n"
            "labeling:\n"
            "  window: 10s\n"
            "  max_out_of_orderness: 1s\n"
            "trainer:\n"
            "  name: lb\n"
            "  hash_bits: 16\n"
            "  batch_size: 100\n"
            "checkpoint:\n"
            "  dir: %s/%s-models\n"
            "  keep: 1000\n"
            "triggers:\n"
            "  volume_examples: 3000\n",
            tmpdir, name);
    fclose(f);
}

/* The fields of the last "stopped" line of log, as name=value tokens. */
typedef struct stop_line {
    char names[40][64];
    long long vals[40];
    int n;
} stop_line_t;

static void stop_line(const char *log, stop_line_t *s)
{
    FILE *f = fopen(log, "r");
    LD_TEST_ASSERT(f, "%s", log);
    static char line[8192], last[8192];
    last[0] = '\0';
    while (fgets(line, sizeof(line), f))
        if (strstr(line, "msg=\"stopped\""))
            memcpy(last, line, sizeof(line));
    fclose(f);
    LD_TEST_ASSERT(last[0], "%s: no stopped line", log);
    s->n = 0;
    for (char *at = strstr(last, "msg=\"stopped\"") + 13; *at;) {
        while (*at == ' ' || *at == '\n')
            at++;
        char *eq = strchr(at, '=');
        if (!*at || !eq)
            break;
        LD_TEST_ASSERT(s->n < 40 && eq - at < 63, "%s: stop line %s", log,
                       last);
        memcpy(s->names[s->n], at, (size_t)(eq - at));
        s->names[s->n][eq - at] = '\0';
        char *end;
        s->vals[s->n] = strtoll(eq + 1, &end, 10);
        LD_TEST_ASSERT(end > eq + 1, "%s: %s is not a count", log,
                       s->names[s->n]);
        s->n++;
        at = end;
    }
}

static long long field(const stop_line_t *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->names[i], name) == 0)
            return s->vals[i];
    LD_TEST_FAIL("the stop line has no %s", name);
}

static int ends_with(const char *s, const char *sfx)
{
    size_t a = strlen(s), b = strlen(sfx);
    return a >= b && strcmp(s + a - b, sfx) == 0;
}

/* Every count on the line says whose it is. */
static void check_scopes(const stop_line_t *s)
{
    static const char *const known[] = {
        "consumed_process",
        "examples_process",
        "published_process",
        "published_lifetime",
        "events_in_lifetime",
        "labels_in_lifetime",
        "released_lifetime",
        "events_late_lifetime",
        "events_duplicate_lifetime",
        "events_expired_lifetime",
        "labels_joined_lifetime",
        "labels_after_window_lifetime",
        "labels_after_window_dropped_lifetime",
        "labels_late_lifetime",
        "labels_unmatched_lifetime",
        "labels_no_label_lifetime",
        "labels_expired_lifetime",
        "pending_events",
        "pending_labels",
        "exit",
    };
    size_t nk = sizeof(known) / sizeof(known[0]);
    LD_TEST_EQ_I64("fields on the stop line", (int64_t)nk, s->n);
    for (size_t i = 0; i < nk; i++) {
        LD_TEST_ASSERT(strcmp(s->names[i], known[i]) == 0,
                       "stop line field %zu is %s, not %s", i, s->names[i],
                       known[i]);
        LD_TEST_ASSERT(ends_with(known[i], "_process") ||
                           ends_with(known[i], "_lifetime") ||
                           strncmp(known[i], "pending_", 8) == 0 ||
                           strcmp(known[i], "exit") == 0,
                       "%s says no scope", known[i]);
    }
}

static void run_through(const char *config, const char *log)
{
    ld_test_expect_exit(ld_test_spawn_run(LD_LEARND_BIN, config, 1, log), 0,
                        log);
}

/* Starts an incarnation and, once its log says version v was published
 * (committed), stops it with sig: SIGKILL, or SIGTERM (a clean stop, exit
 * 0). */
static void stop_at(const char *config, const char *log, uint64_t v, int sig)
{
    char line[64];
    snprintf(line, sizeof(line), " version=%llu bytes=", (unsigned long long)v);
    pid_t pid = ld_test_spawn_run(LD_LEARND_BIN, config, 1, log);
    int64_t deadline = ld_test_deadline(120000);
    while (!ld_test_file_has(log, line)) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            ld_test_show_tail(log, 20);
            LD_TEST_FAIL("%s exited (status %d) before version %llu", log,
                         status, (unsigned long long)v);
        }
        LD_TEST_ASSERT(ld_test_remaining(deadline), "%s: no version %llu", log,
                       (unsigned long long)v);
        usleep(1000); /* polling the awaited condition */
    }
    kill(pid, sig);
    if (sig == SIGKILL) {
        waitpid(pid, NULL, 0);
        return;
    }
    ld_test_expect_exit(pid, 0, log);
}

/* total_counts of the newest checkpoint of run name's store. */
static void lineage_totals(const char *name, uint64_t *v, uint64_t *dead,
                           uint64_t *late)
{
    char dir[256], why[512];
    snprintf(dir, sizeof(dir), "%s/%s-models", tmpdir, name);
    ld_ckpt_t *ck = NULL;
    LD_TEST_ASSERT(
        ld_publish_store_load_latest(dir, "lb", &ck, why, sizeof(why)) == LD_OK,
        "%s: %s", dir, why);
    const Learnd__V1__Lineage *l = ld_ckpt_message(ck)->lineage;
    LD_TEST_ASSERT(l && l->total_counts, "%s: no lineage totals", dir);
    *v = l->version;
    *dead = l->total_counts->dead_lettered;
    *late = l->total_counts->late_labels_dropped;
    ld_ckpt_destroy(ck);
}

/* Records of an output topic by their learnd.type header. */
typedef struct by_type {
    int64_t trigger, chunk, manifest, other;
} by_type_t;

static void count_type(const rd_kafka_message_t *m, void *opaque)
{
    by_type_t *c = opaque;
    rd_kafka_headers_t *h = NULL;
    const void *v = NULL, *mv = NULL;
    size_t n = 0, mn = 0;
    LD_TEST_ASSERT(
        rd_kafka_message_headers(m, &h) == 0 &&
            rd_kafka_header_get_last(h, "learnd.type", &v, &n) == 0 &&
            rd_kafka_header_get_last(h, "learnd.model", &mv, &mn) == 0,
        "a record without learnd.type and learnd.model headers");
    LD_TEST_ASSERT(mn == 2 && memcmp(mv, "lb", 2) == 0, "learnd.model %.*s",
                   (int)mn, (const char *)mv);
    char type[64];
    snprintf(type, sizeof(type), "%.*s", (int)n, (const char *)v);
    if (strcmp(type, "TriggerEvent") == 0)
        c->trigger++;
    else if (strcmp(type, "CheckpointChunk") == 0)
        c->chunk++;
    else if (strcmp(type, "CheckpointManifest") == 0)
        c->manifest++;
    else
        c->other++;
}

int main(void)
{
    ld_test_name(prefix, sizeof(prefix), "lb");
    ld_test_tmpdir(tmpdir, sizeof(tmpdir), "0034");
    rd_kafka_t *admin = ld_test_new(RD_KAFKA_PRODUCER, ld_test_conf_new());
    char events[256], labels[256], t[256];
    ld_test_create_demo_inputs(admin, prefix, PARTS, events, labels,
                               sizeof(events));
    static const char *const runs[] = {"straight", "restarted"};
    for (int i = 0; i < 2; i++) {
        snprintf(t, sizeof(t), "%s.%s", prefix, runs[i]);
        ld_test_create_outputs(admin, t, 0);
    }
    /* Clicks 4 s after their event on average: some after the 10 s window
     * (unmatched under late_policy drop), some labels before their event
     * (pending labels at a commit point). */
    ld_demo_gen_conf_t gc = {.seed = 34,
                             .n_events = EVENTS,
                             .start_time_ms = 1767225600000,
                             .step_ms = 5,
                             .label_delay_ms = 4000,
                             .early_label_share = 0.05};
    ld_test_produce_demo(admin, &gc, events, labels, PARTS, 0);
    rd_kafka_destroy(admin);
    ld_demo_gen_t *g = ld_demo_gen_new(&gc);
    ld_demo_record_t rec;
    while (ld_demo_gen_next(g, &rec) == 1)
        continue;
    ld_demo_gen_stats_t gs;
    ld_demo_gen_stats(g, &gs);
    ld_demo_gen_destroy(g);

    char cs[256], cr[256], log[256];
    write_config("straight", cs, sizeof(cs));
    write_config("restarted", cr, sizeof(cr));
    stop_line_t want, got, mid;
    snprintf(log, sizeof(log), "%s/straight.log", tmpdir);
    run_through(cs, log);
    stop_line(log, &want);
    check_scopes(&want);
    /* One uninterrupted process: its books are every record's. */
    LD_TEST_EQ_I64("straight: events in", gs.events,
                   field(&want, "events_in_lifetime"));
    LD_TEST_EQ_I64("straight: labels in", gs.labels,
                   field(&want, "labels_in_lifetime"));
    LD_TEST_EQ_I64("straight: consumed", gs.events + gs.labels,
                   field(&want, "consumed_process"));
    LD_TEST_EQ_I64("straight: published", field(&want, "published_lifetime"),
                   field(&want, "published_process"));
    LD_TEST_EQ_I64("straight: released = examples trained",
                   field(&want, "examples_process"),
                   field(&want, "released_lifetime"));
    LD_TEST_ASSERT(field(&want, "labels_unmatched_lifetime") > 100 &&
                       field(&want, "labels_joined_lifetime") > 1000,
                   "the stream exercises joins and unmatched labels");
    LD_TEST_ASSERT(field(&want, "published_lifetime") >= 10,
                   "straight run published %lld versions",
                   field(&want, "published_lifetime"));

    /* Killed after version 3, stopped cleanly after version 6, then run to
     * the end. */
    snprintf(log, sizeof(log), "%s/restarted.1.log", tmpdir);
    stop_at(cr, log, 3, SIGKILL);
    snprintf(log, sizeof(log), "%s/restarted.2.log", tmpdir);
    stop_at(cr, log, 6, SIGTERM);
    stop_line(log, &mid);
    check_scopes(&mid);
    LD_TEST_ASSERT(
        field(&mid, "published_process") < field(&mid, "published_lifetime"),
        "a restarted process published %lld of %lld",
        field(&mid, "published_process"), field(&mid, "published_lifetime"));
    snprintf(log, sizeof(log), "%s/restarted.3.log", tmpdir);
    run_through(cr, log);
    stop_line(log, &got);
    check_scopes(&got);
    LD_TEST_ASSERT(field(&got, "consumed_process") < gs.events + gs.labels,
                   "the last process read only the rest");
    int same = 0;
    for (int i = 0; i < want.n; i++) {
        if (!ends_with(want.names[i], "_lifetime"))
            continue;
        LD_TEST_EQ_I64(want.names[i], want.vals[i], field(&got, want.names[i]));
        same++;
    }
    LD_TEST_EQ_I64("pending events at the end", field(&want, "pending_events"),
                   field(&got, "pending_events"));
    LD_TEST_EQ_I64("pending labels at the end", field(&want, "pending_labels"),
                   field(&got, "pending_labels"));

    uint64_t va, da, la, vb, db, lbt;
    lineage_totals("straight", &va, &da, &la);
    lineage_totals("restarted", &vb, &db, &lbt);
    LD_TEST_EQ_I64("last version", (int64_t)va, (int64_t)vb);
    LD_TEST_EQ_I64("lineage total dead_lettered", (int64_t)da, (int64_t)db);
    LD_TEST_EQ_I64("lineage total late_labels_dropped", (int64_t)la,
                   (int64_t)lbt);
    /* Every record the publisher wrote says what it is and whose. */
    by_type_t tr = {0}, ck = {0};
    snprintf(t, sizeof(t), "%s.restarted.triggers", prefix);
    int64_t ntr = ld_test_read_topic(t, 30000, count_type, &tr, NULL);
    snprintf(t, sizeof(t), "%s.restarted.ckpt", prefix);
    int64_t nck = ld_test_read_topic(t, 30000, count_type, &ck, NULL);
    LD_TEST_EQ_I64("triggers topic: all TriggerEvent", ntr, tr.trigger);
    LD_TEST_ASSERT(tr.trigger >= field(&got, "published_lifetime"),
                   "%lld trigger events for %lld versions",
                   (long long)tr.trigger, field(&got, "published_lifetime"));
    LD_TEST_EQ_I64("checkpoints topic: manifests",
                   field(&got, "published_lifetime"), ck.manifest);
    LD_TEST_EQ_I64("checkpoints topic: chunks and manifests", nck,
                   ck.chunk + ck.manifest);
    LD_TEST_ASSERT(ck.chunk >= ck.manifest, "a chunk per manifest at least");
    ld_test_say("%d lifetime counts equal after a kill and a stop: "
                "%lld labels joined, %lld unmatched, %lld after the window, "
                "%lld versions",
                same, field(&got, "labels_joined_lifetime"),
                field(&got, "labels_unmatched_lifetime"),
                field(&got, "labels_after_window_lifetime"),
                field(&got, "published_lifetime"));
    ld_test_rm_rf(tmpdir);
    printf("0034-label-books-restart: PASS\n");
    return 0;
}
