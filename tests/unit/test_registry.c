/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the schema-registry client (pipeline/registry.c) through
 * the Avro decoder: unseen Confluent schema ids fetched, resolved, cached;
 * incompatible and unknown ids dead-lettered with the reason; basic auth;
 * the bounded wait while the registry is down. The registry is
 * tests/registry/fixture_registry.py, a test-only stand-in that follows
 * the documented Confluent REST API (no real registry runs here; see that
 * file). */
#include <curl/curl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "pipeline/decode.h"
#include "tests/data/pipeline/fixtures.h"

#define REG_DIR  LD_SOURCE_DIR "/tests/data/pipeline/registry"
#define FIXTURE  LD_SOURCE_DIR "/tests/registry/fixture_registry.py"
#define EV_AVSC  LD_SOURCE_DIR "/schemas/event.avsc"
#define LAB_AVSC LD_SOURCE_DIR "/schemas/label.avsc"

typedef struct srv {
    pid_t pid;
    int port;
    char url[128];
} srv_t;

/* Starts the fixture registry with args (NULL-terminated) on port (0: any)
 * and waits for its "port N" line. */
static void srv_start(srv_t *s, int port, const char *const *args)
{
    const char *argv[32];
    char portbuf[16];
    int n = 0;
    argv[n++] = "/usr/bin/python3";
    argv[n++] = FIXTURE;
    argv[n++] = "--port";
    snprintf(portbuf, sizeof(portbuf), "%d", port);
    argv[n++] = portbuf;
    argv[n++] = "--prefix";
    argv[n++] = "/apis/ccompat/v7";
    for (int i = 0; args[i]; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    int fd[2];
    assert_int_equal(pipe(fd), 0);
    s->pid = fork();
    assert_true(s->pid >= 0);
    if (s->pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        close(fd[1]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(fd[1]);
    FILE *f = fdopen(fd[0], "r");
    assert_non_null(f);
    assert_int_equal(fscanf(f, "port %d", &s->port), 1);
    fclose(f);
    snprintf(s->url, sizeof(s->url), "http://127.0.0.1:%d/apis/ccompat/v7/",
             s->port);
}

static void srv_stop(srv_t *s)
{
    kill(s->pid, SIGTERM);
    int st;
    waitpid(s->pid, &st, 0);
}

static size_t sink(char *d, size_t size, size_t n, void *o)
{
    char *buf = o;
    size_t len = strlen(buf), add = size * n;
    if (len + add < 256) {
        memcpy(buf + len, d, add);
        buf[len + add] = '\0';
    }
    return add;
}

/* Schema requests the fixture served so far (its test hook). */
static int srv_count(const srv_t *s, const char *user, const char *pass)
{
    char url[256], body[256] = "";
    snprintf(url, sizeof(url), "%s_count", s->url);
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
    if (user) {
        curl_easy_setopt(c, CURLOPT_USERNAME, user);
        curl_easy_setopt(c, CURLOPT_PASSWORD, pass);
    }
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_cleanup(c);
    int n = -1;
    assert_int_equal(sscanf(body, "{\"count\": %d}", &n), 1);
    return n;
}

/* The fixtures' Avro config, schema ids from the registry at url. */
static ld_pipeline_conf_t *reg_conf(const char *url)
{
    ld_pipeline_conf_t *c = fx_conf_new("avro");
    assert_non_null(c);
    assert_int_equal(fx_set(c, "schema_ids", ""), 0);
    assert_int_equal(fx_set(c, "registry_url", url), 0);
    return c;
}

static ld_decoder_t *decoder(const ld_pipeline_conf_t *c, ld_record_kind_t k)
{
    char err[512];
    ld_decoder_t *d = ld_decoder_new(c, k, err, sizeof(err));
    if (!d)
        fail_msg("decoder: %s", err);
    return d;
}

static void same_record(const ld_record_t *a, const ld_record_t *b)
{
    assert_string_equal(a->key, b->key);
    assert_int_equal(a->time_ms, b->time_ms);
    assert_true(a->label == b->label);
    assert_int_equal(a->x.ndense, b->x.ndense);
    for (uint32_t i = 0; i < a->x.ndense; i++)
        assert_true(a->x.dense[i] == b->x.dense[i]);
    assert_int_equal(a->x.nnz, b->x.nnz);
    for (uint32_t i = 0; i < a->x.nnz; i++)
        assert_int_equal(a->x.idx[i], b->x.idx[i]);
}

/* A fixture record with its schema id replaced; buf holds the copy. */
static size_t with_id(const fx_rec_t *r, uint32_t id, uint8_t *buf, size_t cap)
{
    assert_true(r->vlen + 8 <= cap);
    memcpy(buf, r->val, r->vlen);
    buf[1] = (uint8_t)(id >> 24);
    buf[2] = (uint8_t)(id >> 16);
    buf[3] = (uint8_t)(id >> 8);
    buf[4] = (uint8_t)id;
    return r->vlen;
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Every fixture event and label decodes with its writer schema fetched
 * from the registry exactly as with schema_ids; one request per id per
 * decoder; an id the registry lacks is unknown_schema, asked once. */
static void test_fetch_and_cache(void **state)
{
    (void)state;
    srv_t s;
    const char *args[] = {"1=" EV_AVSC, "2=" LAB_AVSC, NULL};
    srv_start(&s, 0, args);
    ld_pipeline_conf_t *c = reg_conf(s.url), *ref = fx_conf_new("avro");
    const char *files[2] = {FX_DIR "/events-avro.kcat",
                            FX_DIR "/labels-avro.kcat"};
    for (int k = 0; k < 2; k++) {
        ld_decoder_t *d = decoder(c, (ld_record_kind_t)k);
        ld_decoder_t *dr = decoder(ref, (ld_record_kind_t)k);
        fx_set_t fs;
        assert_int_equal(fx_load_kcat(files[k], &fs), 0);
        for (size_t i = 0; i < fs.n; i++) {
            ld_record_t a, b;
            ld_reason_t why =
                ld_decoder_decode(d, fs.r[i].key, fs.r[i].klen, fs.r[i].val,
                                  fs.r[i].vlen, -1, &a);
            if (why)
                fail_msg("%zu: %s", i, ld_decoder_error(d));
            assert_int_equal(ld_decoder_decode(dr, fs.r[i].key, fs.r[i].klen,
                                               fs.r[i].val, fs.r[i].vlen, -1,
                                               &b),
                             LD_REASON_NONE);
            same_record(&a, &b);
        }
        assert_int_equal(srv_count(&s, NULL, NULL), 2 * k + 1);
        /* an id nobody registered: dead letter, and asked only once */
        uint8_t buf[4096];
        size_t n = with_id(&fs.r[0], 99, buf, sizeof(buf));
        ld_record_t r;
        for (int rep = 0; rep < 3; rep++) {
            assert_int_equal(ld_decoder_decode(d, "k", 1, buf, n, -1, &r),
                             LD_REASON_UNKNOWN_SCHEMA);
            assert_string_equal(ld_decoder_error(d),
                                "schema id 99: not in the registry");
        }
        assert_int_equal(srv_count(&s, NULL, NULL), 2 * k + 2);
        fx_free(&fs);
        ld_decoder_destroy(d);
        ld_decoder_destroy(dr);
    }
    fx_conf_free(c);
    fx_conf_free(ref);
    srv_stop(&s);
}

/* A producer moves to a compatible new writer schema mid-stream (id 5 adds
 * hour): no dead letter, no restart, and hour is a feature from the first
 * record that has it. A writer that lacks a mapped reader field without
 * default (id 4) is unknown_schema with the reason. */
static void test_new_version_and_incompatible(void **state)
{
    (void)state;
    srv_t s;
    const char *args[] = {"1=" EV_AVSC, "5=" REG_DIR "/event_v2.avsc",
                          "4=" REG_DIR "/event_no_ad_id.avsc", NULL};
    srv_start(&s, 0, args);
    ld_pipeline_conf_t *c = reg_conf(s.url);
    assert_int_equal(fx_set(c, "event_schema", REG_DIR "/event_v2.avsc"), 0);
    assert_int_equal(fx_set(c, "hash_fields",
                            "country,ad_id,device,ctx:publisher,ctx:tags,"
                            "user:user_segment,hour"),
                     0);
    ld_decoder_t *d = decoder(c, LD_RECORD_EVENT);
    fx_set_t fs;
    assert_int_equal(fx_load_kcat(FX_DIR "/events-avro.kcat", &fs), 0);
    uint8_t buf[4096];
    ld_record_t r;
    uint32_t nnz_old[10];
    for (size_t i = 0; i < 10; i++) {
        /* the old writer (id 1): hour takes the reader default, null */
        assert_int_equal(ld_decoder_decode(d, fs.r[i].key, fs.r[i].klen,
                                           fs.r[i].val, fs.r[i].vlen, -1, &r),
                         LD_REASON_NONE);
        nnz_old[i] = r.x.nnz;
    }
    for (size_t i = 0; i < 10; i++) {
        /* the new writer (id 5): the same datum plus hour = 13 (union
         * branch 1, zig-zag 26) */
        size_t n = with_id(&fs.r[i], 5, buf, sizeof(buf));
        buf[n++] = 0x02;
        buf[n++] = 0x1a;
        ld_reason_t why =
            ld_decoder_decode(d, fs.r[i].key, fs.r[i].klen, buf, n, -1, &r);
        if (why)
            fail_msg("%zu: %s", i, ld_decoder_error(d));
        /* hour adds one feature, and one cross-free namespace */
        assert_int_equal(r.x.nnz, nnz_old[i] + 1);
    }
    size_t n = with_id(&fs.r[0], 4, buf, sizeof(buf));
    assert_int_equal(ld_decoder_decode(d, "k", 1, buf, n, -1, &r),
                     LD_REASON_UNKNOWN_SCHEMA);
    assert_string_equal(ld_decoder_error(d),
                        "schema id 4: reader field ad_id is missing from the "
                        "writer schema and has no default");
    assert_int_equal(srv_count(&s, NULL, NULL), 3);
    fx_free(&fs);
    ld_decoder_destroy(d);
    fx_conf_free(c);
    srv_stop(&s);
}

/* Basic auth: the right password works; a wrong one is a dead letter that
 * says so, without showing the password. */
static void test_basic_auth(void **state)
{
    (void)state;
    srv_t s;
    const char *args[] = {"--user",    "learnd",     "--password",
                          "s3cr3t-pw", "1=" EV_AVSC, NULL};
    srv_start(&s, 0, args);
    ld_pipeline_conf_t *c = reg_conf(s.url);
    fx_set_t fs;
    assert_int_equal(fx_load_kcat(FX_DIR "/events-avro.kcat", &fs), 0);
    ld_record_t r;
    assert_int_equal(fx_set(c, "registry_user", "learnd"), 0);
    assert_int_equal(fx_set(c, "registry_password", "wrong-pw"), 0);
    ld_decoder_t *d = decoder(c, LD_RECORD_EVENT);
    assert_int_equal(ld_decoder_decode(d, fs.r[0].key, fs.r[0].klen,
                                       fs.r[0].val, fs.r[0].vlen, -1, &r),
                     LD_REASON_UNKNOWN_SCHEMA);
    assert_string_equal(ld_decoder_error(d),
                        "schema id 1: registry answered HTTP 401 (check "
                        "registry_user / registry_password)");
    ld_decoder_destroy(d);
    assert_int_equal(fx_set(c, "registry_password", "s3cr3t-pw"), 0);
    d = decoder(c, LD_RECORD_EVENT);
    assert_int_equal(ld_decoder_decode(d, fs.r[0].key, fs.r[0].klen,
                                       fs.r[0].val, fs.r[0].vlen, -1, &r),
                     LD_REASON_NONE);
    assert_int_equal(srv_count(&s, "learnd", "s3cr3t-pw"), 1);
    ld_decoder_destroy(d);
    fx_free(&fs);
    fx_conf_free(c);
    srv_stop(&s);
}

/* Registry down: the first unseen id waits registry_deadline (retrying),
 * then is dead-lettered; later ones fail at once while it stays down; once
 * it answers again, ids resolve. A registry answering 503 for a moment is
 * waited out within the deadline. */
static void test_registry_down(void **state)
{
    (void)state;
    srv_t s;
    fx_set_t fs;
    ld_record_t r;
    assert_int_equal(fx_load_kcat(FX_DIR "/events-avro.kcat", &fs), 0);

    /* 503 twice, then the schema: retried (100 ms, 200 ms) and decoded */
    const char *args5xx[] = {"--status-5xx", "2", "1=" EV_AVSC, NULL};
    srv_start(&s, 0, args5xx);
    int port = s.port;
    ld_pipeline_conf_t *c = reg_conf(s.url);
    assert_int_equal(fx_set(c, "registry_deadline", "10s"), 0);
    ld_decoder_t *d = decoder(c, LD_RECORD_EVENT);
    assert_int_equal(ld_decoder_decode(d, fs.r[0].key, fs.r[0].klen,
                                       fs.r[0].val, fs.r[0].vlen, -1, &r),
                     LD_REASON_NONE);
    assert_int_equal(srv_count(&s, NULL, NULL), 3);
    ld_decoder_destroy(d);
    srv_stop(&s);

    /* down for good: one bounded wait, then dead letters at once */
    assert_int_equal(fx_set(c, "registry_deadline", "400ms"), 0);
    assert_int_equal(fx_set(c, "registry_timeout", "1s"), 0);
    d = decoder(c, LD_RECORD_EVENT);
    double t0 = mono_s();
    assert_int_equal(ld_decoder_decode(d, fs.r[0].key, fs.r[0].klen,
                                       fs.r[0].val, fs.r[0].vlen, -1, &r),
                     LD_REASON_UNKNOWN_SCHEMA);
    /* the deadline is kept in whole milliseconds: up to 1 ms early */
    assert_true(mono_s() - t0 >= 0.399);
    assert_non_null(strstr(ld_decoder_error(d), "past registry_deadline"));
    t0 = mono_s();
    assert_int_equal(ld_decoder_decode(d, fs.r[1].key, fs.r[1].klen,
                                       fs.r[1].val, fs.r[1].vlen, -1, &r),
                     LD_REASON_UNKNOWN_SCHEMA);
    assert_true(mono_s() - t0 < 0.4);
    /* back on the same port: the id resolves, nothing was cached */
    const char *args[] = {"1=" EV_AVSC, NULL};
    srv_start(&s, port, args);
    assert_int_equal(ld_decoder_decode(d, fs.r[2].key, fs.r[2].klen,
                                       fs.r[2].val, fs.r[2].vlen, -1, &r),
                     LD_REASON_NONE);
    assert_int_equal(srv_count(&s, NULL, NULL), 1);
    ld_decoder_destroy(d);
    fx_free(&fs);
    fx_conf_free(c);
    srv_stop(&s);
}

/* Protobuf: the registry's .proto text must name the configured message
 * at the record's message-index path, by name, so a new version that
 * declares another message first (Impression moves to [1]) decodes with
 * no change; another message, another schema type, an unknown id are
 * unknown_schema with the reason. JSON: the id must be a JSON schema. */
static void test_protobuf_and_json(void **state)
{
    (void)state;
    srv_t s;
    const char *args[] = {"7=" LD_SOURCE_DIR
                          "/tests/data/pipeline/pbdesc/shop.proto:PROTOBUF",
                          "8=" REG_DIR "/shop_v2.proto:PROTOBUF", "10=" EV_AVSC,
                          "11=" REG_DIR "/label.schema.json:JSON", NULL};
    srv_start(&s, 0, args);
    ld_pipeline_conf_t *c = fx_conf_new("pbdesc");
    assert_non_null(c);
    assert_int_equal(fx_set(c, "protobuf_wire", "confluent"), 0);
    assert_int_equal(fx_set(c, "registry_url", s.url), 0);
    assert_int_equal(fx_set(c, "dense_fields", ""), 0);
    assert_int_equal(fx_set(c, "crosses", ""), 0);
    assert_int_equal(fx_set(c, "hash_fields", "country"), 0);
    assert_int_equal(fx_set(c, "event_time_field", "time_ms"), 0);
    ld_decoder_t *d = decoder(c, LD_RECORD_EVENT);
    /* event_id "e", country "FR", time_ms 1000 */
    static const uint8_t msg[] = {0x0a, 0x01, 'e',  0xba, 0x01, 0x02,
                                  'F',  'R',  0x88, 0x02, 0xe8, 0x07};
    struct {
        uint32_t id;
        const char *path; /* zig-zag count and indexes */
        size_t plen;
        ld_reason_t want;
        const char *err;
    } cases[] = {
        {7, "\x00", 1, LD_REASON_NONE, ""},
        {8, "\x02\x02", 2, LD_REASON_NONE, ""},
        {8, "\x00", 1, LD_REASON_UNKNOWN_SCHEMA,
         "schema id 8: the record's message is shop.v1.Header, not "
         "shop.v1.Impression"},
        {8, "\x04\x00\x00", 3, LD_REASON_UNKNOWN_SCHEMA,
         "schema id 8: the record's message is shop.v1.Header.Impression, "
         "not shop.v1.Impression"},
        {8, "\x02\x06", 2, LD_REASON_UNKNOWN_SCHEMA,
         "schema id 8: the message-index path names no message of the "
         "registry's schema"},
        {10, "\x00", 1, LD_REASON_UNKNOWN_SCHEMA,
         "schema id 10: the registry has a AVRO schema, not PROTOBUF"},
        {99, "\x00", 1, LD_REASON_UNKNOWN_SCHEMA,
         "schema id 99: not in the registry"},
        {8, "\x02\x02", 2, LD_REASON_NONE, ""}, /* remembered */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t buf[64] = {0, 0, 0, 0, (uint8_t)cases[i].id};
        memcpy(buf + 5, cases[i].path, cases[i].plen);
        memcpy(buf + 5 + cases[i].plen, msg, sizeof(msg));
        ld_record_t r;
        ld_reason_t why = ld_decoder_decode(
            d, NULL, 0, buf, 5 + cases[i].plen + sizeof(msg), -1, &r);
        if (why != cases[i].want)
            fail_msg("case %zu: %s: %s", i, ld_reason_name(why),
                     ld_decoder_error(d));
        assert_string_equal(ld_decoder_error(d), cases[i].err);
        if (why == LD_REASON_NONE) {
            assert_string_equal(r.key, "e");
            assert_int_equal(r.time_ms, 1000);
            assert_int_equal(r.x.nnz, 1);
        }
    }
    /* per (id, path): the schema, then for Protobuf its descriptor
     * (?format=serialized), answered here as text (no descriptor set
     * given to the fixture) */
    assert_int_equal(srv_count(&s, NULL, NULL), 5 * 2 + 2);
    ld_decoder_destroy(d);
    fx_conf_free(c);

    c = fx_conf_new("json");
    assert_int_equal(fx_set(c, "json_wire", "confluent"), 0);
    assert_int_equal(fx_set(c, "registry_url", s.url), 0);
    d = decoder(c, LD_RECORD_LABEL);
    const char *j = "{\"event_id\": \"j\", \"label_time\": 5, "
                    "\"clicked\": true}";
    uint8_t buf[128] = {0, 0, 0, 0, 11};
    memcpy(buf + 5, j, strlen(j));
    ld_record_t r;
    assert_int_equal(ld_decoder_decode(d, NULL, 0, buf, 5 + strlen(j), -1, &r),
                     LD_REASON_NONE);
    assert_string_equal(r.key, "j");
    buf[4] = 7;
    assert_int_equal(ld_decoder_decode(d, NULL, 0, buf, 5 + strlen(j), -1, &r),
                     LD_REASON_UNKNOWN_SCHEMA);
    assert_string_equal(ld_decoder_error(d),
                        "schema id 7: the registry has a PROTOBUF schema, "
                        "not JSON");
    ld_decoder_destroy(d);
    fx_conf_free(c);
    srv_stop(&s);
}

/* Protobuf writer schemas as descriptors (?format=serialized, with their
 * references): a field that the local descriptor set (shop.desc, v1) lacks
 * may be mapped when a registry is set, and is read from the first record
 * of a writer version that has it (v2: hour = 40, channel = 41); a writer
 * version whose mapped field changed type incompatibly (v3: country an
 * int64) is unknown_schema with the reason; a registry that answers .proto
 * text whatever the format falls back to the local field numbers. */
static void test_protobuf_writer_schema(void **state)
{
    (void)state;
    srv_t s;
    const char *args[] = {
        "20=" LD_SOURCE_DIR "/tests/data/pipeline/pbdesc/shop.proto:"
        "PROTOBUF:" LD_SHOP_DESC,
        "21=" REG_DIR "/v2/shop.proto:PROTOBUF:" LD_SHOP_V2_DESC,
        "22=" REG_DIR "/v3/shop.proto:PROTOBUF:" LD_SHOP_V3_DESC,
        "23=" REG_DIR "/v2/shop.proto:PROTOBUF", NULL};
    srv_start(&s, 0, args);
    ld_pipeline_conf_t *c = fx_conf_new("pbdesc");
    assert_non_null(c);
    assert_int_equal(fx_set(c, "protobuf_wire", "confluent"), 0);
    assert_int_equal(fx_set(c, "dense_fields", "hour"), 0);
    assert_int_equal(fx_set(c, "crosses", ""), 0);
    assert_int_equal(fx_set(c, "hash_fields", "country,channel"), 0);
    assert_int_equal(fx_set(c, "event_time_field", "time_ms"), 0);
    /* without a registry the new fields are a config error */
    char err[512];
    assert_null(ld_decoder_new(c, LD_RECORD_EVENT, err, sizeof(err)));
    assert_non_null(strstr(err, "shop.v1.Impression: no field hour (mapped"));
    assert_int_equal(fx_set(c, "registry_url", s.url), 0);
    ld_decoder_t *d = decoder(c, LD_RECORD_EVENT);
    /* event_id "e", country "FR", time_ms 1000; v2 adds hour 7 and
     * channel "web" (fields 40 and 41, after the others as encoders
     * write them) */
    static const uint8_t v1[] = {0x0a, 0x01, 'e',  0xba, 0x01, 0x02,
                                 'F',  'R',  0x88, 0x02, 0xe8, 0x07};
    static const uint8_t v2[] = {0xc0, 0x02, 0x07, 0xca, 0x02,
                                 0x03, 'w',  'e',  'b'};
    struct {
        uint32_t id;
        int v2;
        ld_reason_t want;
        float hour;
        uint32_t nnz;
        const char *err;
    } cases[] = {
        {20, 0, LD_REASON_NONE, 0, 1, ""},
        {21, 1, LD_REASON_NONE, 7, 2, ""},
        {20, 0, LD_REASON_NONE, 0, 1, ""}, /* back and forth, cached */
        {21, 1, LD_REASON_NONE, 7, 2, ""},
        {22, 0, LD_REASON_UNKNOWN_SCHEMA, 0, 0,
         "schema id 22: writer schema: message shop.v1.Impression: field "
         "country is int64 in the writer schema but string in the "
         "descriptor set, not compatible"},
        /* .proto text only: the local numbers, which lack 40 and 41 */
        {23, 1, LD_REASON_NONE, 0, 1, ""},
        {22, 0, LD_REASON_UNKNOWN_SCHEMA, 0, 0, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t buf[64] = {0, 0, 0, 0, (uint8_t)cases[i].id, 0};
        size_t n = 6;
        memcpy(buf + n, v1, sizeof(v1));
        n += sizeof(v1);
        if (cases[i].v2) {
            memcpy(buf + n, v2, sizeof(v2));
            n += sizeof(v2);
        }
        ld_record_t r;
        ld_reason_t why = ld_decoder_decode(d, NULL, 0, buf, n, -1, &r);
        if (why != cases[i].want)
            fail_msg("case %zu: %s: %s", i, ld_reason_name(why),
                     ld_decoder_error(d));
        if (cases[i].err)
            assert_string_equal(ld_decoder_error(d), cases[i].err);
        if (why == LD_REASON_NONE) {
            assert_string_equal(r.key, "e");
            assert_int_equal(r.time_ms, 1000);
            assert_int_equal(r.x.ndense, 1);
            assert_true(r.x.dense[0] == cases[i].hour);
            assert_int_equal(r.x.nnz, cases[i].nnz);
        }
    }
    /* per id: the text, the descriptor, and for 20-22 the two imports
     * (google/protobuf/timestamp.proto, wrappers.proto) as subjects */
    assert_int_equal(srv_count(&s, NULL, NULL), 3 * 4 + 2);
    ld_decoder_destroy(d);
    fx_conf_free(c);
    srv_stop(&s);
}

/* A bad URL is a config error naming the key. */
static void test_bad_url(void **state)
{
    (void)state;
    ld_pipeline_conf_t *c = reg_conf("ftp://registry:8081");
    char err[512];
    assert_null(ld_decoder_new(c, LD_RECORD_EVENT, err, sizeof(err)));
    assert_string_equal(err, "pipeline.registry_url: 'ftp://registry:8081' "
                             "is not an http:// or https:// URL");
    fx_conf_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fetch_and_cache),
        cmocka_unit_test(test_new_version_and_incompatible),
        cmocka_unit_test(test_basic_auth),
        cmocka_unit_test(test_registry_down),
        cmocka_unit_test(test_protobuf_and_json),
        cmocka_unit_test(test_protobuf_writer_schema),
        cmocka_unit_test(test_bad_url),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
