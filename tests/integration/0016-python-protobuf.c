/* SPDX-License-Identifier: Apache-2.0 */
/* Users' own Protobuf messages trained by learnd on the real broker (issue
 * 21): the fixture events and labels produced twice, as Avro (the Confluent
 * framed fixtures) and as shop.v1 messages encoded by the official Python
 * protobuf runtime and produced by confluent-kafka
 * (tests/integration/produce_shop.py), to the same partitions in the same
 * order. `learnd run --until-caught-up` on each, with the same field
 * mapping, must write exactly the same audit records (every labelled
 * example: key, times, label, sample type, source partition and offset),
 * and no dead letter.
 *
 * usage: 0016-python-protobuf VENV_DIR LEARND (LD_TEST_BOOTSTRAP set by
 * with-broker.sh); the venv is the example deployer's (confluent-kafka,
 * grpcio-tools), made by examples/deployer/setup.sh. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "tests/data/pipeline/fixtures.h"

#define PARTITIONS 3
#define TIMEOUT_MS 120000
#define MAX_LINES  1024

static char tmpdir[256], prefix[128];

static uint32_t fnv1a(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

static void produce_avro(rd_kafka_t *rk, const char *topic, const char *file)
{
    fx_set_t s;
    LD_TEST_ASSERT(fx_load_kcat(file, &s) == 0, "load %s", file);
    for (size_t i = 0; i < s.n; i++) {
        char key[64];
        snprintf(key, sizeof(key), "%.*s", (int)s.r[i].klen, s.r[i].key);
        ld_test_produce(rk, topic,
                        (int32_t)(fnv1a(s.r[i].key, s.r[i].klen) % PARTITIONS),
                        key, s.r[i].val, s.r[i].vlen);
    }
    LD_TEST_ASSERT(rd_kafka_flush(rk, 60000) == RD_KAFKA_RESP_ERR_NO_ERROR,
                   "flush");
    fx_free(&s);
}

static void run(const char *cmd)
{
    int rc = system(cmd);
    LD_TEST_ASSERT(rc == 0, "exit %d: %s", rc, cmd);
}

/* The config of one run (fmt avro or protobuf): the same mapping. */
static void write_config(const char *fmt, char *path, size_t size)
{
    char names[256];
    snprintf(names, sizeof(names), "%s.%s", prefix, fmt);
    snprintf(path, size, "%s/%s.yaml", tmpdir, fmt);
    FILE *f = ld_test_config_begin(path, NULL, names);
    int pb = strcmp(fmt, "protobuf") == 0;
    fprintf(f,
            "log:\n"
            "  level: warn\n"
            "metrics:\n"
            "  enabled: false\n"
            "pipeline:\n"
            "  events_topic: %s.events\n"
            "  labels_topic: %s.labels\n"
            "  dlq_topic: %s.dlq\n"
            "  group_id: %s.group\n"
            "  format: %s\n",
            names, names, names, names, fmt);
    if (pb)
        fprintf(f,
                "  descriptor_set: %s\n"
                "  event_message: shop.v1.Impression\n"
                "  label_message: shop.v1.Click\n"
                "  protobuf_wire: confluent\n",
                LD_SHOP_DESC);
    else
        fprintf(f,
                "  event_schema: %s/schemas/event.avsc\n"
                "  label_schema: %s/schemas/label.avsc\n"
                "  schema_ids: ['1=%s/schemas/event.avsc', "
                "'2=%s/schemas/label.avsc']\n",
                LD_SOURCE_DIR, LD_SOURCE_DIR, LD_SOURCE_DIR, LD_SOURCE_DIR);
    fprintf(f,
            "  key_field: event_id\n"
            "  dense_fields: [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, "
            "f11, f12, f13, f14, f15, f16, f17, f18]\n"
            "  hash_fields: [country, ad_id, device, 'ctx:publisher', "
            "'ctx:tags', 'user:user_segment']\n"
            "  crosses: [[country, ad_id], [device, user]]\n"
            "  label_field: clicked\n"
            "labeling:\n"
            "  window: 30s\n"
            "  max_out_of_orderness: 5s\n"
            "  idle_timeout: 0\n"
            "  output_topic: %s.audit\n"
            "  output_format: json\n"
            "trainer:\n"
            "  name: pbtest\n"
            "  hash_bits: 18\n"
            "  batch_size: 16\n"
            "checkpoint:\n"
            "  dir: %s/%s-models\n"
            "triggers:\n"
            "  time_enabled: false\n"
            "  volume_enabled: false\n"
            "  performance_enabled: false\n"
            "  drift_enabled: false\n",
            names, tmpdir, fmt);
    fclose(f);
}

typedef struct lines {
    char (*v)[768];
    int n;
} lines_t;

static void add_line(const rd_kafka_message_t *m, void *opaque)
{
    lines_t *l = opaque;
    LD_TEST_ASSERT(l->n < MAX_LINES && m->len < 768, "audit record %d", l->n);
    memcpy(l->v[l->n], m->payload, m->len);
    l->v[l->n][m->len] = '\0';
    l->n++;
}

static int line_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

static int read_audit(const char *fmt, char (*v)[768])
{
    char t[256];
    snprintf(t, sizeof(t), "%s.%s.audit", prefix, fmt);
    lines_t l = {v, 0};
    ld_test_read_topic(t, 30000, add_line, &l, NULL);
    qsort(v, (size_t)l.n, sizeof(*v), line_cmp);
    return l.n;
}

int main(int argc, char **argv)
{
    static char audit[2][MAX_LINES][768];
    LD_TEST_ASSERT(argc == 3, "usage: 0016-python-protobuf VENV_DIR LEARND");
    const char *venv = argv[1], *learnd = argv[2];
    char cmd[4096], gen[512];
    ld_test_tmpdir(tmpdir, sizeof(tmpdir), "0016");
    ld_test_name(prefix, sizeof(prefix), "pb");
    snprintf(gen, sizeof(gen), "%s/gen", tmpdir);

    /* the official clients: confluent-kafka and protobuf (grpcio-tools
     * brings protoc and the well-known .proto files) */
    snprintf(cmd, sizeof(cmd), "%s/examples/deployer/setup.sh '%s' '%s' >&2",
             LD_SOURCE_DIR, venv, gen);
    run(cmd);
    snprintf(cmd, sizeof(cmd),
             "'%s/bin/python' -m grpc_tools.protoc "
             "-I%s/tests/data/pipeline/pbdesc --python_out='%s' shop.proto",
             venv, LD_SOURCE_DIR, gen);
    run(cmd);

    rd_kafka_t *rk = ld_test_new(RD_KAFKA_PRODUCER, ld_test_conf_new());
    const char *fmts[2] = {"avro", "protobuf"};
    char topic[2][2][300];
    for (int f = 0; f < 2; f++) {
        char names[200];
        snprintf(names, sizeof(names), "%s.%s", prefix, fmts[f]);
        snprintf(topic[f][0], sizeof(topic[f][0]), "%s.events", names);
        snprintf(topic[f][1], sizeof(topic[f][1]), "%s.labels", names);
        ld_test_create_topic(rk, topic[f][0], PARTITIONS, 60000);
        ld_test_create_topic(rk, topic[f][1], PARTITIONS, 60000);
        ld_test_create_outputs(rk, names, 1);
    }
    produce_avro(rk, topic[0][0], FX_DIR "/events-avro.kcat");
    produce_avro(rk, topic[0][1], FX_DIR "/labels-avro.kcat");
    snprintf(cmd, sizeof(cmd),
             "PYTHONPATH='%s' '%s/bin/python' "
             "%s/tests/integration/produce_shop.py '%s' '%s' '%s' '%s' '%s' "
             "%d >&2",
             gen, venv, LD_SOURCE_DIR, ld_test_bootstrap(), gen, FX_DIR,
             topic[1][0], topic[1][1], PARTITIONS);
    run(cmd);
    rd_kafka_destroy(rk);
    ld_test_say("produced: Avro by librdkafka, Protobuf by confluent-kafka");

    pid_t pid[2];
    char log[2][512];
    for (int f = 0; f < 2; f++) {
        char path[512];
        write_config(fmts[f], path, sizeof(path));
        snprintf(log[f], sizeof(log[f]), "%s/%s.log", tmpdir, fmts[f]);
        pid[f] = ld_test_spawn_run(learnd, path, 1, log[f]);
    }
    for (int f = 0; f < 2; f++) {
        int code = ld_test_wait_exit(pid[f], TIMEOUT_MS);
        if (code != 0)
            ld_test_show_tail(log[f], 40);
        LD_TEST_EQ_I64(fmts[f], 0, code);
    }
    int n[2];
    for (int f = 0; f < 2; f++) {
        char dlq[256];
        n[f] = read_audit(fmts[f], audit[f]);
        snprintf(dlq, sizeof(dlq), "%s.%s.dlq", prefix, fmts[f]);
        LD_TEST_EQ_I64("dead letters", 0,
                       ld_test_read_topic(dlq, 30000, NULL, NULL, NULL));
    }
    LD_TEST_ASSERT(n[0] >= 120, "only %d audit records", n[0]);
    LD_TEST_EQ_I64("audit records", n[0], n[1]);
    for (int i = 0; i < n[0]; i++)
        LD_TEST_ASSERT(strcmp(audit[0][i], audit[1][i]) == 0,
                       "audit record %d differs:\n  avro     %s\n  protobuf %s",
                       i, audit[0][i], audit[1][i]);
    ld_test_rm_rf(tmpdir);
    ld_test_say("PASS: %d audit records identical, 0 dead letters", n[0]);
    return 0;
}
