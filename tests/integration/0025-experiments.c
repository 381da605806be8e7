/* SPDX-License-Identifier: Apache-2.0 */
/* Experiments against the real broker (issue #20): events name the variant
 * that served them (v1: 10 % clicks, v2: 11.5 %, and a few from a version no
 * experiment knows), labels arrive 2 s later. An ab experiment must PROMOTE
 * v2 exactly once and a bandit publish routing weights every 30 s of event
 * time; a daemon killed with SIGKILL twice and restarted writes the same
 * experiment events, byte for byte and in order, as one that ran through;
 * `learnd replay --verify` reproduces every decision it reaches with the
 * same bytes. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"
#include "trainer/checkpoint.h"

#define PARTS  2
#define EVENTS 120000
#define T0     1767225600000LL

static char prefix[128];
static char tmpdir[64];

static void topic(char *buf, size_t size, const char *what)
{
    snprintf(buf, size, "%s.%s", prefix, what);
}

static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double unit(uint64_t i, uint64_t salt)
{
    return (double)(mix(i * 0x9e3779b97f4a7c15ull + salt) >> 11) * 0x1.0p-53;
}

/* The served events [from, to) and their click labels, keyed by event id,
 * both on partition i % PARTS (co-partitioned). */
static void produce_input(rd_kafka_t *rk, uint64_t from, uint64_t to)
{
    char events[256], labels[256], key[32], val[256];
    topic(events, sizeof(events), "events");
    topic(labels, sizeof(labels), "labels");
    for (uint64_t i = from; i < to; i++) {
        int64_t t = T0 + (int64_t)i * 5;
        double u = unit(i, 1);
        const char *v = u < 0.49 ? "v1" : u < 0.98 ? "v2" : "canary-x";
        double ctr = v[1] == '2' ? 0.115 : 0.10;
        snprintf(key, sizeof(key), "e%llu", (unsigned long long)i);
        int n = snprintf(val, sizeof(val),
                         "{\"event_id\":\"%s\",\"event_time\":%lld,\"f0\":%.4f,"
                         "\"model\":\"%s\",\"p\":%.3f,\"prop\":0.49}",
                         key, (long long)t, unit(i, 2), v, ctr);
        int32_t part = (int32_t)(i % PARTS);
        ld_test_produce(rk, events, part, key, val, (size_t)n);
        if (unit(i, 3) < ctr) {
            n = snprintf(val, sizeof(val),
                         "{\"event_id\":\"%s\",\"label_time\":%lld,"
                         "\"clicked\":1}",
                         key, (long long)(t + 2000));
            ld_test_produce(rk, labels, part, key, val, (size_t)n);
        }
    }
    LD_TEST_ASSERT(rd_kafka_flush(rk, 60000) == 0, "flush");
}

static void write_config(const char *name, uint16_t port, char *path,
                         size_t size)
{
    char names[256];
    snprintf(names, sizeof(names), "%s.%s", prefix, name);
    snprintf(path, size, "%s/%s.yaml", tmpdir, name);
    FILE *f = ld_test_config_begin(path, NULL, names);
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
            "  key_field: event_id\n"
            "  dense_fields: [f0]\n"
            "  label_field: clicked\n"
            "  served_variant_field: model\n"
            "  served_score_field: p\n"
            "  served_propensity_field: prop\n"
            "labeling:\n"
            "  window: 10s\n"
            "  max_out_of_orderness: 1s\n"
            "  idle_timeout: 0\n"
            "trainer:\n"
            "  name: ex\n"
            "  hash_bits: 12\n"
            "  batch_size: 200\n"
            "checkpoint:\n"
            "  dir: %s/%s-models\n"
            "  keep: 50\n"
            "triggers:\n"
            "  volume_examples: 40000\n"
            "  time_enabled: false\n"
            "  performance_enabled: false\n"
            "  drift_enabled: false\n"
            "experiments:\n"
            "  - name: ctr\n"
            "    type: ab\n"
            "    variants: [v1, v2]\n"
            "    min_effect: 0.015\n"
            "  - name: arms\n"
            "    type: bandit\n"
            "    variants: [v1, v2]\n"
            "    interval: 30s\n"
            "    seed: 7\n",
            (unsigned)port, prefix, prefix, names, names, tmpdir, name);
    fclose(f);
}

/* Input records the group of run name has committed, of *total. */
static int64_t committed(rd_kafka_t *rk, int64_t *total)
{
    char t[2][256];
    topic(t[0], sizeof(t[0]), "events");
    topic(t[1], sizeof(t[1]), "labels");
    rd_kafka_topic_partition_list_t *l =
        rd_kafka_topic_partition_list_new(2 * PARTS);
    *total = 0;
    for (int32_t p = 0; p < PARTS; p++)
        for (int k = 0; k < 2; k++) {
            int64_t lo, hi;
            LD_TEST_ASSERT(rd_kafka_query_watermark_offsets(rk, t[k], p, &lo,
                                                            &hi, 10000) == 0,
                           "watermarks");
            *total += hi;
            rd_kafka_topic_partition_list_add(l, t[k], p);
        }
    rd_kafka_resp_err_t e = rd_kafka_committed(rk, l, 10000);
    int64_t n = 0;
    for (int i = 0; !e && i < l->cnt; i++)
        if (l->elems[i].offset > 0)
            n += l->elems[i].offset;
    rd_kafka_topic_partition_list_destroy(l);
    return e ? -1 : n;
}

/* Runs name with `kills` SIGKILLs, each once the committed input passed
 * half of the input (with first_all: once all of it was committed), then,
 * when finish, to the end of the input. */
static void run(const char *name, int kills, uint16_t port, int first_all,
                int finish)
{
    char config[256], group[300], log[256];
    write_config(name, port, config, sizeof(config));
    snprintf(group, sizeof(group), "%s.%s.group", prefix, name);
    rd_kafka_conf_t *gc = ld_test_conf_new();
    ld_test_conf_set(gc, "group.id", group);
    rd_kafka_t *offsets = ld_test_new(RD_KAFKA_CONSUMER, gc);
    for (int i = 0; i < kills; i++) {
        pid_t pid = ld_test_spawn_run(LD_LEARND_BIN, config, 1, NULL);
        int64_t deadline = ld_test_deadline(120000), done = -1, total = 0;
        while (ld_test_remaining(deadline)) {
            done = committed(offsets, &total);
            if (first_all && i == 0 ? done == total : done >= total / 2)
                break;
            int st;
            LD_TEST_ASSERT(waitpid(pid, &st, WNOHANG) != pid,
                           "%s: incarnation %d ended before its kill point",
                           name, i + 1);
            usleep(10000);
        }
        kill(pid, SIGKILL);
        int st;
        waitpid(pid, &st, 0);
        ld_test_say("%s: killed incarnation %d after %lld of %lld records "
                    "were committed",
                    name, i + 1, (long long)done, (long long)total);
    }
    rd_kafka_destroy(offsets);
    if (!finish)
        return;
    snprintf(log, sizeof(log), "%s/%s.log", tmpdir, name);
    int code = ld_test_wait_exit(
        ld_test_spawn_run(LD_LEARND_BIN, config, 1, log), 300000);
    if (code != 0)
        ld_test_show_tail(log, 30);
    LD_TEST_EQ_I64("learnd exit code", 0, code);
}

/* The experiment records of a triggers topic, in order. */
typedef struct recs {
    size_t n;
    char key[256][96];
    char *val[256];
    size_t len[256];
} recs_t;

/* Header name of m as text in buf ("" when absent). */
static const char *header(const rd_kafka_message_t *m, const char *name,
                          char *buf, size_t size)
{
    rd_kafka_headers_t *h = NULL;
    const void *v = NULL;
    size_t n = 0;
    buf[0] = '\0';
    if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        rd_kafka_header_get_last(h, name, &v, &n) == RD_KAFKA_RESP_ERR_NO_ERROR)
        snprintf(buf, size, "%.*s", (int)n, (const char *)v);
    return buf;
}

static void collect(const rd_kafka_message_t *m, void *opaque)
{
    recs_t *r = opaque;
    char key[96], type[64], model[64];
    snprintf(key, sizeof(key), "%.*s", (int)m->key_len, (const char *)m->key);
    /* The learnd.type header tells the records of the shared topic apart
     * without decoding them (docs/TRIGGERS.md, "Headers"). */
    header(m, "learnd.type", type, sizeof(type));
    const char *want = strstr(key, "/decision/")  ? "ExperimentDecision"
                       : strstr(key, "/weights/") ? "RoutingWeights"
                                                  : "TriggerEvent";
    LD_TEST_ASSERT(strcmp(type, want) == 0, "%s: learnd.type \"%s\", not %s",
                   key, type, want);
    LD_TEST_ASSERT(
        strcmp(header(m, "learnd.model", model, sizeof(model)), "ex") == 0,
        "%s: learnd.model \"%s\"", key, model);
    if (strcmp(type, "TriggerEvent") == 0)
        return;
    LD_TEST_ASSERT(r->n < 256, "too many experiment records");
    snprintf(r->key[r->n], sizeof(r->key[0]), "%s", key);
    r->val[r->n] = malloc(m->len + 1);
    memcpy(r->val[r->n], m->payload, m->len);
    r->val[r->n][m->len] = '\0';
    r->len[r->n++] = m->len;
}

static void read_experiments(const char *name, recs_t *r)
{
    char t[300];
    snprintf(t, sizeof(t), "%s.%s.triggers", prefix, name);
    memset(r, 0, sizeof(*r));
    ld_test_read_topic(t, 60000, collect, r, NULL);
}

static void check_once(const recs_t *r)
{
    size_t decisions = 0, weights = 0;
    for (size_t i = 0; i < r->n; i++) {
        for (size_t j = 0; j < i; j++)
            LD_TEST_ASSERT(strcmp(r->key[i], r->key[j]) != 0,
                           "experiment record %s written twice", r->key[i]);
        if (strstr(r->key[i], "/decision/")) {
            decisions++;
            LD_TEST_ASSERT(strcmp(r->key[i], "ctr/decision/1") == 0,
                           "unexpected decision %s", r->key[i]);
            LD_TEST_ASSERT(strstr(r->val[i], "\"verdict\":\"PROMOTE\"") &&
                               strstr(r->val[i], "\"reason\":\"msprt\""),
                           "ctr decided %s", r->val[i]);
        } else {
            char want[64];
            snprintf(want, sizeof(want), "arms/weights/%zu", ++weights);
            LD_TEST_ASSERT(strcmp(r->key[i], want) == 0,
                           "weights out of sequence: %s, want %s", r->key[i],
                           want);
        }
    }
    LD_TEST_EQ_I64("ab decisions", 1, (int64_t)decisions);
    /* 600 s of event time in 30 s intervals, the first starting at the
     * first matured example */
    LD_TEST_ASSERT(weights >= 15 && weights <= 20, "%zu routing weights",
                   weights);
}

/* The newest checkpoint version of run name in its model store. */
static uint64_t last_version(const char *name)
{
    uint64_t best = 0;
    for (uint64_t v = 1; v < 100; v++) {
        char path[300];
        snprintf(path, sizeof(path), "%s/%s-models/ex/%llu.ckpt", tmpdir, name,
                 (unsigned long long)v);
        if (access(path, R_OK) == 0)
            best = v;
    }
    LD_TEST_ASSERT(best > 0, "no checkpoint of %s", name);
    return best;
}

/* Every "experiment KEY VERDICT sha256=HEX" line of the replay must name a
 * record of r with those bytes. */
static size_t check_replay(const char *out, const recs_t *r)
{
    FILE *f = fopen(out, "r");
    LD_TEST_ASSERT(f, "replay output");
    char line[512], key[128], what[32], hex[80];
    size_t n = 0, decision = 0;
    while (fgets(line, sizeof(line), f)) {
        if (sscanf(line, "experiment %127s %31s sha256=%79s", key, what, hex) !=
            3)
            continue;
        size_t i = 0;
        while (i < r->n && strcmp(r->key[i], key) != 0)
            i++;
        LD_TEST_ASSERT(i < r->n, "replay decided %s, the run did not", key);
        uint8_t sha[32];
        char mine[65];
        ld_ckpt_sha256(r->val[i], r->len[i], sha);
        for (int b = 0; b < 32; b++)
            snprintf(mine + 2 * b, 3, "%02x", sha[b]);
        LD_TEST_ASSERT(strcmp(mine, hex) == 0, "%s differs in the replay", key);
        decision += strstr(key, "/decision/") != NULL;
        n++;
    }
    fclose(f);
    LD_TEST_EQ_I64("decisions replayed", 1, (int64_t)decision);
    return n;
}

int main(void)
{
    ld_test_name(prefix, sizeof(prefix), "ex");
    ld_test_tmpdir(tmpdir, sizeof(tmpdir), "0025");
    rd_kafka_t *rk = ld_test_new(RD_KAFKA_PRODUCER, ld_test_conf_new());
    char t[256];
    topic(t, sizeof(t), "events");
    ld_test_create_topic(rk, t, PARTS, 30000);
    topic(t, sizeof(t), "labels");
    ld_test_create_topic(rk, t, PARTS, 30000);
    char outs[256];
    snprintf(outs, sizeof(outs), "%s.ref", prefix);
    ld_test_create_outputs(rk, outs, 0);
    snprintf(outs, sizeof(outs), "%s.eo", prefix);
    ld_test_create_outputs(rk, outs, 0);
    /* eo: the first 6 000 events only, committed, then SIGKILL, before the
     * ab decision (near event 9 000): its evidence must come through the
     * resume state. Then the rest, a SIGKILL half-way, and the end. */
    produce_input(rk, 0, 6000);
    run("eo", 1, ld_test_free_port(), 1, 0);
    produce_input(rk, 6000, EVENTS);
    rd_kafka_destroy(rk);
    run("eo", 1, ld_test_free_port(), 0, 1);
    uint16_t port = ld_test_free_port();
    run("ref", 0, port, 0, 1);
    recs_t ref, eo;
    read_experiments("ref", &ref);
    read_experiments("eo", &eo);
    check_once(&ref);
    check_once(&eo);
    LD_TEST_EQ_I64("experiment records after kills", (int64_t)ref.n,
                   (int64_t)eo.n);
    for (size_t i = 0; i < ref.n; i++) {
        LD_TEST_ASSERT(strcmp(ref.key[i], eo.key[i]) == 0,
                       "record %zu: %s vs %s after kills", i, ref.key[i],
                       eo.key[i]);
        LD_TEST_ASSERT(ref.len[i] == eo.len[i] &&
                           memcmp(ref.val[i], eo.val[i], ref.len[i]) == 0,
                       "%s differs after kills:\n%s\n%s", ref.key[i],
                       ref.val[i], eo.val[i]);
    }
    for (size_t i = 0; i < ref.n; i++) {
        const char *et = strstr(ref.val[i], "\"event_time\":");
        if (strstr(ref.key[i], "/decision/") && et)
            ld_test_say("ctr decided at event %lld of %d",
                        (atoll(et + 13) - T0) / 5, EVENTS);
    }
    ld_test_say("%zu experiment records identical after 2 kills", ref.n);
    for (size_t i = 0; i < ref.n; i++) {
        const char *et = strstr(ref.val[i], "\"event_time\":");
        if (strstr(ref.key[i], "/decision/"))
            LD_TEST_ASSERT(et && atoll(et + 13) > T0 + 6000 * 5,
                           "ctr decided before the first kill: the test "
                           "shows no evidence crossing a restart");
    }

    char config[256], out[256];
    write_config("ref", port, config, sizeof(config));
    snprintf(out, sizeof(out), "%s/replay.out", tmpdir);
    uint64_t v = last_version("ref");
    int code = ld_test_replay_verify(LD_LEARND_BIN, config, v, out, 300000);
    if (code != 0)
        ld_test_show_tail(out, 20);
    LD_TEST_EQ_I64("replay --verify", 0, code);
    size_t n = check_replay(out, &ref);
    ld_test_say("replay of version %llu reproduced %zu experiment records",
                (unsigned long long)v, n);
    for (size_t i = 0; i < ref.n; i++) {
        free(ref.val[i]);
        free(eo.val[i]);
    }
    ld_test_rm_rf(tmpdir);
    return 0;
}
