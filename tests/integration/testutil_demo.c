/* SPDX-License-Identifier: Apache-2.0 */
/* The demo generator's stream produced to the test broker, and the config
 * that reads it (see testutil.h): apart from testutil.c so that only the
 * tests linking ld_daemon need it. */
#include "testutil.h"

#include <string.h>

#include "daemon/demo.h"
#include "publish/publish.h"
#include "trainer/checkpoint.h"

static uint32_t fnv1a(const char *s)
{
    uint32_t h = 2166136261u;
    while (*s)
        h = (h ^ (uint8_t)*s++) * 16777619u;
    return h;
}

int ld_test_produce_demo(rd_kafka_t *rk, const struct ld_demo_gen_conf *conf,
                         const char *events, const char *labels, int parts,
                         int poison_every)
{
    /* An Avro string whose length runs past the end. */
    static const char bad[] = "\x7f\x01";
    ld_demo_gen_t *g = ld_demo_gen_new(conf);
    LD_TEST_ASSERT(g, "generator");
    ld_demo_record_t r;
    int poison = 0;
    while (ld_demo_gen_next(g, &r) == 1) {
        int32_t part = parts > 0 ? (int32_t)(fnv1a(r.key) % (uint32_t)parts)
                                 : RD_KAFKA_PARTITION_UA;
        ld_test_produce(rk, r.is_label ? labels : events, part, r.key, r.value,
                        r.len);
        if (poison_every > 0 && !r.is_label && r.index % poison_every == 0) {
            ld_test_produce(rk, events, part, "poison", bad, 2);
            poison++;
        }
    }
    ld_demo_gen_destroy(g);
    LD_TEST_ASSERT(rd_kafka_flush(rk, 60000) == 0, "flush");
    return poison;
}

void ld_test_config_demo_input(FILE *f, const char *inputs, const char *names)
{
    fprintf(f,
            "pipeline:\n"
            "  events_topic: %s.events\n"
            "  labels_topic: %s.labels\n"
            "  dlq_topic: %s.dlq\n"
            "  group_id: %s.group\n"
            "  format: avro\n"
            "  event_schema: %s/schemas/event.avsc\n"
            "  label_schema: %s/schemas/label.avsc\n"
            "  key_field: event_id\n"
            "  event_time_field: event_time\n"
            "  label_time_field: label_time\n"
            /* the 20 dense features of schemas/event.avsc */
            "  dense_fields: [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, "
            "f11, f12, f13, f14, f15, f16, f17, f18, f19]\n",
            inputs, inputs, names, names, LD_SOURCE_DIR, LD_SOURCE_DIR);
}

void ld_test_create_demo_inputs(rd_kafka_t *rk, const char *inputs,
                                int partitions, char *events, char *labels,
                                size_t size)
{
    snprintf(events, size, "%s.events", inputs);
    snprintf(labels, size, "%s.labels", inputs);
    ld_test_create_topic(rk, events, partitions, 30000);
    ld_test_create_topic(rk, labels, partitions, 30000);
}

FILE *ld_test_config_demo(const char *path, const char *names)
{
    FILE *f = ld_test_config_begin(path, NULL, names);
    fprintf(f, "log:\n"
               "  level: warn\n"
               "metrics:\n"
               "  enabled: false\n");
    ld_test_config_demo_input(f, names, names);
    fprintf(f, "  hash_fields: [country, ad_id, device]\n"
               "  label_field: clicked\n");
    return f;
}

pid_t ld_test_spawn_role(const char *bin, const char *cfg, const char *role,
                         const char *inst, int until, const char *log,
                         const char *extopic)
{
    char rarg[64], iarg[64], earg[512];
    snprintf(rarg, sizeof(rarg), "--role=%s", role);
    snprintf(iarg, sizeof(iarg), "--instance=%s", inst ? inst : "");
    snprintf(earg, sizeof(earg), "--examples-topic=%s", extopic);
    char *argv[9] = {(char *)bin, "run", "-c", (char *)cfg, rarg, earg};
    int n = 6;
    if (inst)
        argv[n++] = iarg;
    if (until)
        argv[n++] = "--until-caught-up";
    argv[n] = NULL;
    return ld_test_spawn(argv, log);
}

void ld_test_expect_exit(pid_t pid, int want, const char *log)
{
    int rc = ld_test_wait_exit(pid, 300000);
    if (rc != want)
        ld_test_show_tail(log, 40);
    LD_TEST_EQ_I64(log, want, rc);
}

void ld_test_store_params(const char *dir, const char *model, uint64_t v,
                          uint8_t sha[32])
{
    char file[512], why[512];
    snprintf(file, sizeof(file), "%s/%s/%llu.ckpt", dir, model,
             (unsigned long long)v);
    ld_ckpt_t *ck = NULL;
    LD_TEST_ASSERT(ld_ckpt_read_file(file, &ck, why, sizeof(why)) == LD_OK,
                   "%s: %s", file, why);
    memcpy(sha, ld_ckpt_message(ck)->lineage->params_sha256.data, 32);
    ld_ckpt_destroy(ck);
}

uint64_t ld_test_store_last_version(const char *dir, const char *model)
{
    char why[512];
    ld_ckpt_t *ck = NULL;
    LD_TEST_ASSERT(ld_publish_store_load_latest(dir, model, &ck, why,
                                                sizeof(why)) == LD_OK,
                   "%s: no checkpoint of %s: %s", dir, model, why);
    uint64_t v = ld_ckpt_message(ck)->lineage->version;
    ld_ckpt_destroy(ck);
    return v;
}
