/* SPDX-License-Identifier: Apache-2.0 */
/* A Protobuf producer switches mid-stream to a new compatible schema
 * version with new fields (issue 21): learnd's descriptor set is version 1
 * (tests/data/pipeline/pbdesc/shop.proto), the config maps hour (a dense
 * feature) and channel (hashed), which only version 2 has
 * (tests/data/pipeline/registry/v2/shop.proto, fields 40 and 41), and the
 * schema registry (tests/registry/fixture_registry.py, a test-only
 * stand-in for the documented REST API) serves both versions as
 * descriptors. `config check` warns that the two fields are resolved from
 * the registry (and refuses them, exit 2, without one); one
 * `learnd run --until-caught-up` then trains every record with zero dead
 * letters and no restart, and the audit output shows hour and channel in
 * every example from the first version-2 record on, and in none before.
 *
 * The records are written field by field below (the wire format protoc
 * encoders produce: fields in number order), so that version 2's fields
 * need no generated code of version 2. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

#define N_EVENTS   120
#define SWITCH_AT  60 /* events from here on: schema id 2 (version 2) */
#define TIMEOUT_MS 120000
#define MAX_LINES  256
#define T0         1700000000000LL

static char tmpdir[256], names[128];
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

/* Schema id 1: shop.proto version 1, id 2: version 2, both with their
 * descriptors; the well-known imports are not registered (as Confluent's
 * serializers skip them), so learnd takes them from its descriptor set. */
static void registry_start(char *url, size_t url_size)
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
              "0", "--skip-known-types",
              "1=" LD_SOURCE_DIR "/tests/data/pipeline/pbdesc/"
              "shop.proto:PROTOBUF:" LD_SHOP_DESC,
              "2=" LD_SOURCE_DIR "/tests/data/pipeline/registry/v2/"
              "shop.proto:PROTOBUF:" LD_SHOP_V2_DESC,
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
}

/* ---- Protobuf wire format, by hand -------------------------------------- */

typedef struct buf {
    uint8_t b[256];
    size_t n;
} buf_t;

static void put_varint(buf_t *o, uint64_t v)
{
    do {
        LD_TEST_ASSERT(o->n < sizeof(o->b), "record size");
        o->b[o->n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
}

static void put_str(buf_t *o, uint32_t field, const char *s)
{
    put_varint(o, field << 3 | 2);
    put_varint(o, strlen(s));
    LD_TEST_ASSERT(o->n + strlen(s) <= sizeof(o->b), "record size");
    memcpy(o->b + o->n, s, strlen(s));
    o->n += strlen(s);
}

/* The Confluent header: magic 0, schema id, message-index path [index]. */
static void put_header(buf_t *o, uint32_t id, uint32_t index)
{
    o->n = 0;
    o->b[o->n++] = 0;
    for (int k = 3; k >= 0; k--)
        o->b[o->n++] = (uint8_t)(id >> (8 * k));
    if (index == 0) {
        put_varint(o, 0); /* [0] is written as an empty path */
    } else {
        put_varint(o, 2); /* zig-zag 1: one index */
        put_varint(o, (uint64_t)index << 1);
    }
}

static int64_t event_time(int i)
{
    /* the last event far ahead: its time moves the watermark past the
     * windows of all the others */
    return T0 + (i == N_EVENTS - 1 ? 600000 : 1000LL * i);
}

/* shop.v1.Impression: event_id 1, f0 3 (float), country 23, time_ms 33;
 * version 2 adds hour 40 (int32) and channel 41 (string). */
static void impression(int i, buf_t *o)
{
    char id[32];
    int v2 = i >= SWITCH_AT;
    snprintf(id, sizeof(id), "ev-%03d", i);
    put_header(o, v2 ? 2 : 1, 0);
    put_str(o, 1, id);
    float f0 = 0.5f + (float)(i % 4);
    put_varint(o, 3 << 3 | 5);
    memcpy(o->b + o->n, &f0, 4); /* little-endian hosts (x86, arm64) */
    o->n += 4;
    put_str(o, 23, i % 2 ? "FR" : "DE");
    put_varint(o, 33 << 3 | 0);
    put_varint(o, (uint64_t)event_time(i));
    if (v2) {
        put_varint(o, 40 << 3 | 0);
        put_varint(o, (uint64_t)(1 + i % 23));
        put_str(o, 41, i % 3 ? "web" : "app");
    }
}

/* shop.v1.Click (message index [1]): event_id 1, label_time 2, clicked 3. */
static void click(int i, buf_t *o)
{
    char id[32];
    snprintf(id, sizeof(id), "ev-%03d", i);
    put_header(o, i >= SWITCH_AT ? 2 : 1, 1);
    put_str(o, 1, id);
    put_varint(o, 2 << 3 | 0);
    put_varint(o, (uint64_t)(event_time(i) + 500));
    put_varint(o, 3 << 3 | 0);
    put_varint(o, 1);
}

/* ---- Config ------------------------------------------------------------- */

static void write_config(const char *path, const char *url)
{
    FILE *f = ld_test_config_begin(path, NULL, names);
    fprintf(f,
            "log:\n"
            "  level: info\n"
            "metrics:\n"
            "  enabled: false\n"
            "pipeline:\n"
            "  events_topic: %s.events\n"
            "  labels_topic: %s.labels\n"
            "  dlq_topic: %s.dlq\n"
            "  group_id: %s.group\n"
            "  format: protobuf\n"
            "  descriptor_set: %s\n"
            "  event_message: shop.v1.Impression\n"
            "  label_message: shop.v1.Click\n"
            "  protobuf_wire: confluent\n",
            names, names, names, names, LD_SHOP_DESC);
    if (url)
        fprintf(f, "  registry_url: %s\n", url);
    fprintf(f,
            "  key_field: event_id\n"
            "  event_time_field: time_ms\n"
            "  dense_fields: [f0, hour]\n"
            "  hash_fields: [country, channel]\n"
            "  label_field: clicked\n"
            "labeling:\n"
            "  window: 30s\n"
            "  max_out_of_orderness: 5s\n"
            "  idle_timeout: 0\n"
            "  output_topic: %s.audit\n"
            "  output_format: json\n"
            "trainer:\n"
            "  name: evolve\n"
            "  hash_bits: 18\n"
            "  batch_size: 16\n"
            "checkpoint:\n"
            "  dir: %s/models\n"
            "triggers:\n"
            "  time_enabled: false\n"
            "  volume_enabled: false\n"
            "  performance_enabled: false\n"
            "  drift_enabled: false\n",
            names, tmpdir);
    fclose(f);
}

/* `learnd config check` of path: its exit code, stderr in out. */
static int config_check(const char *learnd, const char *path, const char *out)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "'%s' config check -c '%s' >/dev/null 2>'%s'",
             learnd, path, out);
    int rc = system(cmd);
    LD_TEST_ASSERT(rc != -1 && WIFEXITED(rc), "%s", cmd);
    return WEXITSTATUS(rc);
}

/* ---- Audit -------------------------------------------------------------- */

typedef struct audit {
    int n;
    int seen[N_EVENTS];
    int v2_first_ok, errors;
} audit_t;

/* One audit record: {"event_id":"ev-NNN",...,"idx":[..],"val":[..],
 * "dense":[f0,hour]}. Version-1 events: hour 0 (absent) and one hashed
 * feature (country); version 2: hour = 1 + i % 23 and two (country,
 * channel). */
static void check_line(const rd_kafka_message_t *m, void *opaque)
{
    audit_t *a = opaque;
    char line[1024];
    LD_TEST_ASSERT(m->len < sizeof(line), "audit record size");
    memcpy(line, m->payload, m->len);
    line[m->len] = '\0';
    int i = -1;
    LD_TEST_ASSERT(sscanf(line, "{\"event_id\":\"ev-%d\"", &i) == 1 && i >= 0 &&
                       i < N_EVENTS,
                   "audit record: %s", line);
    const char *idx = strstr(line, "\"idx\":["),
               *dense = strstr(line, "\"dense\":[");
    LD_TEST_ASSERT(idx && dense, "audit record: %s", line);
    int nnz = 1;
    for (const char *p = idx + 7; *p != ']'; p++)
        nnz += *p == ',';
    if (idx[7] == ']')
        nnz = 0;
    double f0 = -1, hour = -1;
    LD_TEST_ASSERT(sscanf(dense, "\"dense\":[%lf,%lf]", &f0, &hour) == 2,
                   "audit record: %s", line);
    int v2 = i >= SWITCH_AT;
    double want_hour = v2 ? 1 + i % 23 : 0;
    int want_nnz = v2 ? 2 : 1;
    if (hour != want_hour || nnz != want_nnz || f0 != 0.5 + i % 4) {
        ld_test_say("event %d (%s): hour %g (want %g), %d hashed (want %d): "
                    "%s",
                    i, v2 ? "v2" : "v1", hour, want_hour, nnz, want_nnz, line);
        a->errors++;
    }
    a->seen[i]++;
    a->n++;
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    char url[128], cfg[512], cfg_noreg[512], out[512];
    ld_test_tmpdir(tmpdir, sizeof(tmpdir), "0027");
    ld_test_name(names, sizeof(names), "evolve");
    registry_start(url, sizeof(url));

    /* config check: the new fields are resolved from the registry (a
     * warning), and a config error without one */
    snprintf(cfg, sizeof(cfg), "%s/evolve.yaml", tmpdir);
    snprintf(cfg_noreg, sizeof(cfg_noreg), "%s/noreg.yaml", tmpdir);
    snprintf(out, sizeof(out), "%s/check.err", tmpdir);
    write_config(cfg_noreg, NULL);
    LD_TEST_EQ_I64("config check without a registry", 2,
                   config_check(LD_LEARND_BIN, cfg_noreg, out));
    LD_TEST_ASSERT(ld_test_file_has(out, "pipeline.dense_fields[1]") &&
                       ld_test_file_has(out, "field 'hour' is not in message "
                                             "shop.v1.Impression"),
                   "config check names the key");
    write_config(cfg, url);
    LD_TEST_EQ_I64("config check with a registry", 0,
                   config_check(LD_LEARND_BIN, cfg, out));
    LD_TEST_ASSERT(ld_test_file_has(out, "field hour is not in message "
                                         "shop.v1.Impression") &&
                       ld_test_file_has(out, "field channel is not in message "
                                             "shop.v1.Impression") &&
                       ld_test_file_has(out, "resolved from the registry"),
                   "config check warns");

    rd_kafka_t *rk = ld_test_new(RD_KAFKA_PRODUCER, ld_test_conf_new());
    char ev[200], lb[200];
    snprintf(ev, sizeof(ev), "%s.events", names);
    snprintf(lb, sizeof(lb), "%s.labels", names);
    ld_test_create_topic(rk, ev, 1, 60000);
    ld_test_create_topic(rk, lb, 1, 60000);
    ld_test_create_outputs(rk, names, 1);
    for (int i = 0; i < N_EVENTS; i++) {
        buf_t o;
        char key[32];
        snprintf(key, sizeof(key), "ev-%03d", i);
        impression(i, &o);
        ld_test_produce(rk, ev, 0, key, o.b, o.n);
        if (i % 3 == 0 || i == N_EVENTS - 1) {
            click(i, &o);
            ld_test_produce(rk, lb, 0, key, o.b, o.n);
        }
    }
    LD_TEST_ASSERT(rd_kafka_flush(rk, 60000) == RD_KAFKA_RESP_ERR_NO_ERROR,
                   "flush");
    rd_kafka_destroy(rk);
    ld_test_say("produced %d events (schema id 1, then 2 from event %d)",
                N_EVENTS, SWITCH_AT);

    char log[512];
    snprintf(log, sizeof(log), "%s/run.log", tmpdir);
    pid_t pid = ld_test_spawn_run(LD_LEARND_BIN, cfg, 1, log);
    int code = ld_test_wait_exit(pid, TIMEOUT_MS);
    if (code != 0)
        ld_test_show_tail(log, 40);
    LD_TEST_EQ_I64("learnd run exit", 0, code);
    LD_TEST_ASSERT(ld_test_file_has(log, "writer schema from the registry\" "
                                         "id=2"),
                   "schema id 2 read from the registry");

    char dlq[200], aud[200];
    snprintf(dlq, sizeof(dlq), "%s.dlq", names);
    snprintf(aud, sizeof(aud), "%s.audit", names);
    LD_TEST_EQ_I64("dead letters", 0,
                   ld_test_read_topic(dlq, 30000, NULL, NULL, NULL));
    static audit_t a;
    ld_test_read_topic(aud, 30000, check_line, &a, NULL);
    /* every event but the last (its window is still open) is decided */
    LD_TEST_EQ_I64("audit records", N_EVENTS - 1, a.n);
    for (int i = 0; i < N_EVENTS - 1; i++)
        LD_TEST_EQ_I64("audit records of an event", 1, a.seen[i]);
    LD_TEST_EQ_I64("audit records with wrong features", 0, a.errors);
    registry_kill();
    ld_test_rm_rf(tmpdir);
    ld_test_say("PASS: schema id 1 -> 2 mid-stream: hour and channel from "
                "event %d on, 0 dead letters, one run",
                SWITCH_AT);
    return 0;
}
