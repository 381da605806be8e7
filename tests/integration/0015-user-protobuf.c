/* SPDX-License-Identifier: Apache-2.0 */
/* Users' own Protobuf messages on the real broker (issue 21): the fixture
 * events and labels as shop.v1.Impression / Click (tests/data/pipeline/
 * pbdesc), Confluent-framed, with a producer that switches mid-stream to a
 * new compatible schema version (registry id 8: Impression moved to message
 * index [1], a new field 40 on the wire), are consumed through ld_pipeline
 * with the schema registry (tests/registry/fixture_registry.py, a test-only
 * stand-in for the documented REST API) and give exactly the records of the
 * equivalent Avro stream: same keys, times, labels, dense blocks and hashed
 * slots, zero dead letters, no restart. Identical records mean identical
 * training (the determinism contract), so the audit output of the two
 * streams is the same. */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pipeline/pipeline.h"
#include "testutil.h"
#include "tests/data/pipeline/fixtures.h"

#define N_EVENTS   200
#define N_LABELS   120
#define PARTITIONS 3
#define TIMEOUT_MS 60000
#define SWITCH_AT  100 /* events from here on use schema id 8 */

/* What a record decoded to, for comparing the two streams. */
typedef struct got {
    int seen;
    int64_t time;
    double label;
    float dense[20];
    uint32_t nnz;
    uint32_t idx[64];
} got_t;

typedef struct lab {
    char key[32];
    int64_t time;
    double label;
} lab_t;

static pid_t registry_pid = -1;

/* The fixture registry goes with the test, however the test ends. */
static void registry_kill(void)
{
    if (registry_pid > 0) {
        kill(registry_pid, SIGTERM);
        waitpid(registry_pid, NULL, 0);
        registry_pid = -1;
    }
}

static pid_t registry_start(char *url, size_t url_size)
{
    int fd[2];
    LD_TEST_ASSERT(pipe(fd) == 0, "pipe");
    pid_t pid = fork();
    LD_TEST_ASSERT(pid >= 0, "fork");
    if (pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        close(fd[1]);
        execl("/usr/bin/python3", "python3",
              LD_SOURCE_DIR "/tests/registry/fixture_registry.py", "--port",
              "0",
              "7=" LD_SOURCE_DIR "/tests/data/pipeline/pbdesc/"
              "shop.proto:PROTOBUF",
              "8=" LD_SOURCE_DIR "/tests/data/pipeline/registry/"
              "shop_v2.proto:PROTOBUF",
              (char *)NULL);
        _exit(127);
    }
    registry_pid = pid;
    atexit(registry_kill);
    close(fd[1]);
    FILE *f = fdopen(fd[0], "r");
    int port = 0;
    LD_TEST_ASSERT(f && fscanf(f, "port %d", &port) == 1, "registry start");
    fclose(f);
    snprintf(url, url_size, "http://127.0.0.1:%d", port);
    return pid;
}

static ld_strlist_t props(void)
{
    static char *kv[] = {"bootstrap.servers", NULL};
    kv[1] = (char *)ld_test_bootstrap();
    ld_strlist_t l = {kv, 2};
    return l;
}

static int key_id(const char *key)
{
    int id = -1;
    LD_TEST_ASSERT(sscanf(key, "ev-%d", &id) == 1 && id >= 0 && id < N_EVENTS,
                   "key %s", key);
    return id;
}

/* Produces fixture file to topic; frame() rewrites each value. */
typedef size_t frame_fn(int i, const fx_rec_t *r, uint8_t *out, size_t cap);

static void produce(rd_kafka_t *rk, const char *topic, const char *file,
                    frame_fn *frame)
{
    fx_set_t s;
    LD_TEST_ASSERT(fx_load_kcat(file, &s) == 0, "load %s", file);
    for (size_t i = 0; i < s.n; i++) {
        char key[64];
        uint8_t buf[4096];
        snprintf(key, sizeof(key), "%.*s", (int)s.r[i].klen, s.r[i].key);
        size_t n =
            frame ? frame((int)i, &s.r[i], buf, sizeof(buf)) : s.r[i].vlen;
        ld_test_produce(rk, topic, RD_KAFKA_PARTITION_UA, key,
                        frame ? (const void *)buf : s.r[i].val, n);
    }
    LD_TEST_ASSERT(rd_kafka_flush(rk, TIMEOUT_MS) == RD_KAFKA_RESP_ERR_NO_ERROR,
                   "flush");
    fx_free(&s);
}

/* Impressions: schema id 7, path [0] (shop.proto); from SWITCH_AT on, id 8,
 * path [1] (shop_v2.proto) and the new field hour = 13 (field 40). */
static size_t frame_event(int i, const fx_rec_t *r, uint8_t *out, size_t cap)
{
    size_t n = 0;
    LD_TEST_ASSERT(r->vlen + 16 <= cap, "record size");
    memcpy(out, "\x00\x00\x00\x00", 4);
    n = 4;
    if (i < SWITCH_AT) {
        out[n++] = 7;
        out[n++] = 0x00;
    } else {
        out[n++] = 8;
        out[n++] = 0x02;
        out[n++] = 0x02;
    }
    memcpy(out + n, r->val, r->vlen);
    n += r->vlen;
    if (i >= SWITCH_AT) {
        out[n++] = 0xc0;
        out[n++] = 0x02;
        out[n++] = 13;
    }
    return n;
}

/* Clicks: schema id 7, path [1]. */
static size_t frame_label(int i, const fx_rec_t *r, uint8_t *out, size_t cap)
{
    (void)i;
    LD_TEST_ASSERT(r->vlen + 8 <= cap, "record size");
    memcpy(out, "\x00\x00\x00\x00\x07\x02\x02", 7);
    memcpy(out + 7, r->val, r->vlen);
    return r->vlen + 7;
}

static int lab_cmp(const void *a, const void *b)
{
    const lab_t *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    if (c)
        return c;
    return x->time < y->time ? -1 : x->time > y->time;
}

/* Consumes both topics of c through ld_pipeline into ev / lb. */
static void consume(ld_pipeline_conf_t *c, const char *what, got_t *ev,
                    lab_t *lb)
{
    char err[512] = "";
    ld_strlist_t kp = props();
    ld_pipeline_t *p =
        ld_pipeline_new(c, &kp, NULL, NULL, TIMEOUT_MS, err, sizeof(err));
    LD_TEST_ASSERT(p, "%s: ld_pipeline_new: %s", what, err);
    int nev = 0, nlb = 0;
    int64_t deadline = ld_test_deadline(TIMEOUT_MS), quiet = -1;
    for (;;) {
        if (nev == N_EVENTS && nlb == N_LABELS && quiet < 0)
            quiet = ld_test_deadline(1000);
        if (quiet >= 0 && ld_test_remaining(quiet) == 0)
            break;
        LD_TEST_ASSERT(ld_test_remaining(deadline) > 0,
                       "%s: timed out with %d events, %d labels", what, nev,
                       nlb);
        ld_record_t r;
        ld_err_t e = ld_pipeline_poll(p, 200, &r);
        if (e == LD_ERR_TIMEOUT)
            continue;
        LD_TEST_ASSERT(e == LD_OK, "%s: poll: %s", what, ld_err_str(e));
        if (r.kind == LD_RECORD_LABEL) {
            LD_TEST_ASSERT(nlb < N_LABELS, "%s: too many labels", what);
            snprintf(lb[nlb].key, sizeof(lb[nlb].key), "%s", r.key);
            lb[nlb].time = r.time_ms;
            lb[nlb].label = r.label;
            nlb++;
            continue;
        }
        got_t *g = &ev[key_id(r.key)];
        LD_TEST_ASSERT(!g->seen, "%s: event %s twice", what, r.key);
        LD_TEST_ASSERT(r.x.ndense == 20 && r.x.nnz <= 64, "%s: shape", what);
        g->seen = 1;
        g->time = r.time_ms;
        memcpy(g->dense, r.x.dense, sizeof(g->dense));
        g->nnz = r.x.nnz;
        memcpy(g->idx, r.x.idx, r.x.nnz * sizeof(*r.x.idx));
        nev++;
    }
    ld_pipeline_stats_t st;
    ld_pipeline_stats(p, &st);
    for (int k = 0; k < 2; k++)
        for (int rr = 0; rr < LD_REASON__COUNT; rr++)
            LD_TEST_EQ_I64(ld_reason_name((ld_reason_t)rr), 0, st.dlq[k][rr]);
    LD_TEST_EQ_I64("events", N_EVENTS, nev);
    LD_TEST_EQ_I64("labels", N_LABELS, nlb);
    LD_TEST_ASSERT(ld_pipeline_close(p, TIMEOUT_MS) == LD_OK, "close");
    ld_pipeline_destroy(p);
    qsort(lb, N_LABELS, sizeof(*lb), lab_cmp);
}

static void topics(rd_kafka_t *admin, char names[3][128], const char *what)
{
    const char *kind[3] = {"ev", "lb", "dlq"};
    for (int i = 0; i < 3; i++) {
        char n[64];
        snprintf(n, sizeof(n), "%s-%s", what, kind[i]);
        ld_test_name(names[i], 128, n);
        ld_test_create_topic(admin, names[i], i == 2 ? 1 : PARTITIONS,
                             TIMEOUT_MS);
    }
}

static ld_pipeline_conf_t *conf_for(const char *fmt, char names[3][128])
{
    char group[128];
    ld_test_name(group, sizeof(group), "grp");
    ld_pipeline_conf_t *c = fx_conf_new(fmt);
    LD_TEST_ASSERT(c && !fx_set(c, "events_topic", names[0]) &&
                       !fx_set(c, "labels_topic", names[1]) &&
                       !fx_set(c, "dlq_topic", names[2]) &&
                       !fx_set(c, "group_id", group),
                   "config %s", fmt);
    return c;
}

int main(void)
{
    static got_t ga[N_EVENTS], gp[N_EVENTS];
    static lab_t la[N_LABELS], lp[N_LABELS];
    char url[128], avro[3][128], pb[3][128];
    ld_log_set_level(LD_LOG_WARN);
    registry_start(url, sizeof(url));
    rd_kafka_t *admin = ld_test_new(RD_KAFKA_PRODUCER, ld_test_conf_new());
    topics(admin, avro, "avro");
    topics(admin, pb, "pbdesc");
    produce(admin, avro[0], FX_DIR "/events-avro.kcat", NULL);
    produce(admin, avro[1], FX_DIR "/labels-avro.kcat", NULL);
    produce(admin, pb[0], FX_DIR "/events-pbdesc.kcat", frame_event);
    produce(admin, pb[1], FX_DIR "/labels-pbdesc.kcat", frame_label);
    ld_test_say("produced 200 events + 120 labels per format");

    ld_pipeline_conf_t *ca = conf_for("avro", avro);
    consume(ca, "avro", ga, la);
    ld_pipeline_conf_t *cp = conf_for("pbdesc", pb);
    LD_TEST_ASSERT(!fx_set(cp, "protobuf_wire", "confluent") &&
                       !fx_set(cp, "registry_url", url),
                   "config registry");
    consume(cp, "pbdesc", gp, lp);

    for (int i = 0; i < N_EVENTS; i++) {
        LD_TEST_ASSERT(ga[i].seen && gp[i].seen, "event %d missing", i);
        LD_TEST_EQ_I64("event time", ga[i].time, gp[i].time);
        LD_TEST_EQ_I64("hashed features", ga[i].nnz, gp[i].nnz);
        for (int k = 0; k < 20; k++)
            LD_TEST_ASSERT(ga[i].dense[k] == gp[i].dense[k],
                           "event %d dense[%d]: %g vs %g", i, k,
                           (double)ga[i].dense[k], (double)gp[i].dense[k]);
        for (uint32_t k = 0; k < ga[i].nnz; k++)
            LD_TEST_EQ_I64("slot", ga[i].idx[k], gp[i].idx[k]);
    }
    for (int i = 0; i < N_LABELS; i++) {
        LD_TEST_ASSERT(strcmp(la[i].key, lp[i].key) == 0, "label key %s/%s",
                       la[i].key, lp[i].key);
        LD_TEST_EQ_I64("label time", la[i].time, lp[i].time);
        LD_TEST_ASSERT(la[i].label == lp[i].label, "label of %s", la[i].key);
    }
    fx_conf_free(ca);
    fx_conf_free(cp);
    rd_kafka_destroy(admin);
    registry_kill();
    ld_test_say("PASS: Protobuf (schema ids 7 then 8 mid-stream) = Avro, 0 "
                "dead letters");
    return 0;
}
