/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of pipeline/: librdkafka configuration and log routing, the
 * feature hash, the Avro / Protobuf / JSON decoders against the fixtures of
 * tests/data/pipeline (written by an independent encoder), schema
 * resolution, and the poison corpus. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/decode.h"
#include "pipeline/hash.h"
#include "pipeline/internal.h"
#include "pipeline/kafka.h"
#include "tests/data/pipeline/fixtures.h"
#include "tests/data/pipeline/pb_ref.h"

static void test_conf_passthrough(void **state)
{
    (void)state;
    char *kv[] = {"bootstrap.servers", "127.0.0.1:1", "linger.ms", "7"};
    ld_strlist_t props = {kv, 4};
    char errstr[256] = "";
    rd_kafka_conf_t *conf = ld_kafka_conf_new(&props, errstr, sizeof(errstr));
    assert_non_null(conf);
    char val[64];
    size_t sz = sizeof(val);
    assert_int_equal(rd_kafka_conf_get(conf, "linger.ms", val, &sz),
                     RD_KAFKA_CONF_OK);
    assert_string_equal(val, "7");
    rd_kafka_conf_destroy(conf);
}

static void test_conf_errors(void **state)
{
    (void)state;
    char *bad[] = {"no.such.property", "1"};
    ld_strlist_t props = {bad, 2};
    char errstr[256] = "";
    assert_null(ld_kafka_conf_new(&props, errstr, sizeof(errstr)));
    assert_string_equal(errstr, "kafka.no.such.property: No such configuration "
                                "property: \"no.such.property\"");

    /* An invalid secret is reported without its value. */
    char *secret[] = {"sasl.kerberos.min.time.before.relogin", "TOPSECRET"};
    ld_strlist_t sprops = {secret, 2};
    assert_null(ld_kafka_conf_new(&sprops, errstr, sizeof(errstr)));
    assert_string_equal(errstr,
                        "kafka.sasl.kerberos.min.time.before.relogin: invalid "
                        "value (secret, not shown)");
}

static void test_log_routing(void **state)
{
    (void)state;
    const char *path = "test_pipeline_kafka.log";
    remove(path);
    assert_int_equal(ld_log_open(path), LD_OK);
    ld_log_debug_enable("kafka");
    char *kv[] = {"debug", "generic", "client.id", "logtest"};
    ld_strlist_t props = {kv, 4};
    char errstr[256];
    rd_kafka_conf_t *conf = ld_kafka_conf_new(&props, errstr, sizeof(errstr));
    assert_non_null(conf);
    rd_kafka_t *rk =
        rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    assert_non_null(rk);
    rd_kafka_destroy(rk);
    assert_int_equal(ld_log_open(NULL), LD_OK);

    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[4096];
    int routed = 0;
    while (fgets(line, sizeof(line), f))
        if (strstr(line, " level=debug mod=kafka client=logtest#producer-") &&
            strncmp(line, "ts=", 3) == 0)
            routed++;
    fclose(f);
    assert_true(routed > 0);
    remove(path);
}

/* ---- Feature hash ------------------------------------------------------- */

static void test_murmur3_vectors(void **state)
{
    (void)state;
    /* Published MurmurHash3_x86_32 vectors (SMHasher reference). */
    static const struct {
        const char *s;
        size_t n;
        uint32_t seed, h;
    } v[] = {
        {"", 0, 0, 0},
        {"", 0, 1, 0x514e28b7u},
        {"", 0, 0xffffffffu, 0x81f16f39u},
        {"\0\0\0\0", 4, 0, 0x2362f9deu},
        {"aaaa", 4, 0x9747b28cu, 0x5a97808au},
        {"aaa", 3, 0x9747b28cu, 0x283e0130u},
        {"aa", 2, 0x9747b28cu, 0x5d211726u},
        {"a", 1, 0x9747b28cu, 0x7fa09ea6u},
        {"abcd", 4, 0x9747b28cu, 0xf0478627u},
        {"abc", 3, 0x9747b28cu, 0xc84a62ddu},
        {"ab", 2, 0x9747b28cu, 0x74875592u},
        {"Hello, world!", 13, 0x9747b28cu, 0x24884cbau},
        {"The quick brown fox jumps over the lazy dog", 43, 0x9747b28cu,
         0x2fa826cdu},
        {"The quick brown fox jumps over the lazy dog", 43, 0, 0x2e4ff723u},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        assert_int_equal(ld_hash_murmur3_32(v[i].s, v[i].n, v[i].seed), v[i].h);
    /* learnd's own golden values (also computed by the independent Python
     * murmur3 of tests/data/pipeline/gen_fixtures.py): country=DE, seed 42
     * (field seed = murmur3("country", murmur3("country", 42))). A change here
     * moves every trained weight: never update without a format bump. */
    uint32_t ns = ld_hash_murmur3_32("country", 7, 42);
    uint32_t fs = ld_hash_murmur3_32("country", 7, ns);
    assert_int_equal(ns, 0x0f6a802eu);
    assert_int_equal(fs, 0xb31eddd5u);
    assert_int_equal(ld_hash_murmur3_32("DE", 2, fs), 0xe8b680c9u);
}

/* ---- Fixtures ----------------------------------------------------------- */

typedef struct expect {
    char key[32];
    long long time;
    float dense[20];
    uint32_t slots[512];
    uint32_t nslots;
    int label;
} expect_t;

static expect_t *load_expected(const char *path, int labels, size_t *n)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    expect_t *e = calloc(256, sizeof(*e));
    char line[16384];
    *n = 0;
    while (fgets(line, sizeof(line), f)) {
        if (line[0] == '#')
            continue;
        expect_t *x = &e[(*n)++];
        char dense[2048], slots[8192];
        if (labels) {
            assert_int_equal(
                sscanf(line, "%31s %lld %d", x->key, &x->time, &x->label), 3);
            continue;
        }
        assert_int_equal(sscanf(line, "%31s %lld %2047s %8191s", x->key,
                                &x->time, dense, slots),
                         4);
        char *p = dense;
        for (int i = 0; i < 20; i++) {
            x->dense[i] = strtof(p, &p);
            p++;
        }
        if (slots[0] != '-')
            for (p = slots; *p;) {
                x->slots[x->nslots++] = (uint32_t)strtoul(p, &p, 10);
                if (*p == ',')
                    p++;
            }
    }
    fclose(f);
    return e;
}

static void check_format(const char *fmt)
{
    char err[512] = "", path[512];
    ld_pipeline_conf_t *c = fx_conf_new(fmt);
    assert_non_null(c);
    ld_decoder_t *de = ld_decoder_new(c, LD_RECORD_EVENT, err, sizeof(err));
    if (!de)
        fail_msg("%s events: %s", fmt, err);
    ld_decoder_t *dl = ld_decoder_new(c, LD_RECORD_LABEL, err, sizeof(err));
    if (!dl)
        fail_msg("%s labels: %s", fmt, err);
    assert_int_equal(ld_decoder_dense_dim(de), 20);

    size_t ne, nl;
    expect_t *ee = load_expected(FX_DIR "/events-expected.txt", 0, &ne);
    expect_t *el = load_expected(FX_DIR "/labels-expected.txt", 1, &nl);
    fx_set_t s;
    snprintf(path, sizeof(path), FX_DIR "/events-%s.kcat", fmt);
    assert_int_equal(fx_load_kcat(path, &s), 0);
    assert_int_equal(s.n, ne);
    for (size_t i = 0; i < s.n; i++) {
        ld_record_t r;
        ld_reason_t why = ld_decoder_decode(de, s.r[i].key, s.r[i].klen,
                                            s.r[i].val, s.r[i].vlen, -1, &r);
        if (why)
            fail_msg("%s event %zu: %s: %s", fmt, i, ld_reason_name(why),
                     ld_decoder_error(de));
        assert_string_equal(r.key, ee[i].key);
        assert_int_equal(r.time_ms, ee[i].time);
        assert_int_equal(r.x.ndense, 20);
        for (int k = 0; k < 20; k++)
            assert_true(r.x.dense[k] == ee[i].dense[k]);
        if (r.x.nnz != ee[i].nslots)
            fail_msg("%s event %zu: %u slots, expected %u", fmt, i, r.x.nnz,
                     ee[i].nslots);
        for (uint32_t k = 0; k < r.x.nnz; k++) {
            assert_int_equal(r.x.idx[k], ee[i].slots[k]);
            assert_true(r.x.val[k] == 1.0f);
        }
    }
    fx_free(&s);
    snprintf(path, sizeof(path), FX_DIR "/labels-%s.kcat", fmt);
    assert_int_equal(fx_load_kcat(path, &s), 0);
    assert_int_equal(s.n, nl);
    for (size_t i = 0; i < s.n; i++) {
        ld_record_t r;
        ld_reason_t why = ld_decoder_decode(dl, s.r[i].key, s.r[i].klen,
                                            s.r[i].val, s.r[i].vlen, -1, &r);
        if (why)
            fail_msg("%s label %zu: %s: %s", fmt, i, ld_reason_name(why),
                     ld_decoder_error(dl));
        assert_int_equal(r.kind, LD_RECORD_LABEL);
        assert_string_equal(r.key, el[i].key);
        assert_int_equal(r.time_ms, el[i].time);
        assert_true(r.label == el[i].label);
        assert_int_equal(r.x.nnz, 0);
    }
    fx_free(&s);
    free(ee);
    free(el);
    ld_decoder_destroy(de);
    ld_decoder_destroy(dl);
    fx_conf_free(c);
}

static void test_fixtures_avro(void **state)
{
    (void)state;
    check_format("avro");
}

static void test_fixtures_protobuf(void **state)
{
    (void)state;
    check_format("protobuf");
}

static void test_fixtures_json(void **state)
{
    (void)state;
    check_format("json");
}

/* ---- Poison corpus ------------------------------------------------------ */

static void test_poison_avro(void **state)
{
    (void)state;
    char err[512];
    ld_pipeline_conf_t *c = fx_conf_new("avro");
    ld_decoder_t *d = ld_decoder_new(c, LD_RECORD_EVENT, err, sizeof(err));
    assert_non_null(d);
    fx_set_t s;
    assert_int_equal(fx_load_poison(FX_DIR "/poison-avro.bin", &s), 0);
    FILE *f = fopen(FX_DIR "/poison-avro.txt", "r");
    assert_non_null(f);
    char line[256], reason[64], key[64];
    size_t i = 0, ok = 0;
    while (fgets(line, sizeof(line), f)) {
        if (line[0] == '#')
            continue;
        assert_int_equal(sscanf(line, "%63s %63s", reason, key), 2);
        assert_true(i < s.n);
        ld_record_t r;
        ld_reason_t why = ld_decoder_decode(d, s.r[i].key, s.r[i].klen,
                                            s.r[i].val, s.r[i].vlen, -1, &r);
        const char *got = why ? ld_reason_name(why) : "ok";
        if (strcmp(got, reason) != 0)
            fail_msg("poison %zu (%s): got %s (%s), expected %s", i, key, got,
                     ld_decoder_error(d), reason);
        ok += why == LD_REASON_NONE;
        i++;
    }
    fclose(f);
    assert_int_equal(i, s.n);
    assert_int_equal(ok, 7);

    /* 10 MB record: over max_record_bytes (1 MiB) */
    size_t big = 10u << 20;
    char *v = calloc(1, big);
    ld_record_t r;
    assert_int_equal(ld_decoder_decode(d, "k", 1, v, big, -1, &r),
                     LD_REASON_OVERSIZE);
    free(v);

    /* Every truncation of a valid record is refused, never read past. */
    for (size_t k = 0; k < s.r[0].vlen; k++) {
        char *cut = malloc(k + 1); /* exact size: ASan sees any overread */
        memcpy(cut, s.r[0].val, k);
        ld_reason_t why = ld_decoder_decode(d, "k", 1, cut, k, -1, &r);
        assert_true(why == LD_REASON_DECODE || why == LD_REASON_EMPTY);
        free(cut);
    }
    fx_free(&s);
    ld_decoder_destroy(d);
    fx_conf_free(c);
}

static ld_reason_t decode1(ld_decoder_t *d, const char *key, const char *v,
                           size_t n, ld_record_t *r)
{
    return ld_decoder_decode(d, key, key ? strlen(key) : 0, v, n, 1234, r);
}

/* Issue #15: what the joiner cannot hold is a dead letter with a reason,
 * not a warning; an event time far ahead of the record's Kafka timestamp
 * is future_time (it would make the rest of its partition late). */
static void test_time_and_key_limits(void **state)
{
    (void)state;
    char err[512], key[300];
    ld_record_t r;
    const int64_t ts = INT64_C(1767225600000); /* the Kafka timestamp */
    for (int kind = 0; kind < 2; kind++) {
        ld_pipeline_conf_t *c = fx_conf_new("json");
        assert_non_null(c);
        ld_decoder_t *d =
            ld_decoder_new(c, (ld_record_kind_t)kind, err, sizeof(err));
        assert_non_null(d);
        const char *tf = kind ? "label_time" : "event_time";
        char v[600];
#define T(t, k)                                                                \
    (snprintf(v, sizeof(v), "{\"event_id\":\"%s\",\"%s\":%s,\"clicked\":1}",   \
              (k), tf, (t)),                                                   \
     ld_decoder_decode(d, NULL, 0, v, strlen(v), ts, &r))
        memset(key, 'k', 255);
        key[255] = '\0';
        assert_int_equal(T("1767225600000", key), LD_REASON_NONE);
        assert_int_equal(r.key_len, 255);
        key[255] = 'k';
        key[256] = '\0';
        assert_int_equal(T("1767225600000", key), LD_REASON_KEY_TOO_LONG);
        assert_string_equal(ld_reason_name(LD_REASON_KEY_TOO_LONG),
                            "key_too_long");
        /* more features than the joiner holds cannot be let through */
        assert_int_not_equal(fx_set(c, "max_features", "65536"), 0);
        assert_int_equal(fx_set(c, "max_features", "65535"), 0);
        /* +-2^61 is the last time the joiner takes */
        assert_int_equal(T("-2305843009213693952", "a"), LD_REASON_NONE);
        assert_int_equal(T("-2305843009213693953", "a"), LD_REASON_TIME_RANGE);
        assert_int_equal(T("-9223372036854775808", "a"), LD_REASON_TIME_RANGE);
        assert_int_equal(T("9223372036854775807", "a"), LD_REASON_TIME_RANGE);
        assert_int_equal(T("2305843009213693953", "a"), LD_REASON_TIME_RANGE);
        assert_string_equal(ld_reason_name(LD_REASON_TIME_RANGE), "time_range");
        /* within the range but ahead of the timestamp: max_future (1h) */
        assert_int_equal(T("2305843009213693952", "a"), LD_REASON_FUTURE_TIME);
        assert_int_equal(T("4102444800000", "a"), /* 2100-01-01 */
                         LD_REASON_FUTURE_TIME);
        assert_int_equal(T("1767229200000", "a"), LD_REASON_NONE); /* +1h */
        assert_int_equal(T("1767229200001", "a"), LD_REASON_FUTURE_TIME);
        assert_string_equal(ld_reason_name(LD_REASON_FUTURE_TIME),
                            "future_time");
        /* the far past is not refused here: it is late, or first */
        assert_int_equal(T("-2000000000000000000", "a"), LD_REASON_NONE);
        /* no timestamp: nothing to compare with */
        snprintf(v, sizeof(v),
                 "{\"event_id\":\"a\",\"%s\":4102444800000,"
                 "\"clicked\":1}",
                 tf);
        assert_int_equal(ld_decoder_decode(d, NULL, 0, v, strlen(v), -1, &r),
                         LD_REASON_NONE);
        ld_decoder_destroy(d);
        /* max_future 0: no bound */
        assert_int_equal(fx_set(c, "max_future", "0"), 0);
        d = ld_decoder_new(c, (ld_record_kind_t)kind, err, sizeof(err));
        assert_non_null(d);
        assert_int_equal(T("4102444800000", "a"), LD_REASON_NONE);
        assert_int_equal(T("2305843009213693953", "a"), LD_REASON_TIME_RANGE);
        ld_decoder_destroy(d);
        /* time from the Kafka timestamp: it is its own reference */
        assert_int_equal(fx_set(c, "max_future", "1h"), 0);
        assert_int_equal(fx_set(c, "time_source", "kafka_timestamp"), 0);
        d = ld_decoder_new(c, (ld_record_kind_t)kind, err, sizeof(err));
        assert_non_null(d);
        snprintf(v, sizeof(v), "{\"event_id\":\"a\",\"clicked\":1}");
        assert_int_equal(ld_decoder_decode(d, NULL, 0, v, strlen(v),
                                           INT64_C(4102444800000), &r),
                         LD_REASON_NONE);
        assert_int_equal(
            ld_decoder_decode(d, NULL, 0, v, strlen(v), INT64_MAX, &r),
            LD_REASON_TIME_RANGE);
#undef T
        ld_decoder_destroy(d);
        fx_conf_free(c);
    }
}

/* Served-decision fields (issue #20): what served the event, its score,
 * a shadow score, the propensity. Unusable values never make the event a
 * dead letter -- it still trains -- they are left out and flagged. */
static void test_served_fields(void **state)
{
    (void)state;
    char err[512];
    ld_record_t r;
    ld_pipeline_conf_t *c = fx_conf_new("json");
    assert_int_equal(fx_set(c, "served_variant_field", "model"), 0);
    assert_int_equal(fx_set(c, "served_score_field", "p"), 0);
    assert_int_equal(fx_set(c, "served_shadow_fields", "v3:p3"), 0);
    assert_int_equal(fx_set(c, "served_propensity_field", "prop"), 0);
    ld_decoder_t *d = ld_decoder_new(c, LD_RECORD_EVENT, err, sizeof(err));
    if (!d)
        fail_msg("%s", err);
#define SV(s) decode1(d, "k", s, sizeof(s) - 1, &r)
    assert_int_equal(SV("{\"event_id\":\"a\",\"event_time\":5,\"model\":"
                        "\"v2\",\"p\":0.25,\"p3\":0.5,\"prop\":0.2}"),
                     LD_REASON_NONE);
    assert_int_equal(r.served.variant_len, 2);
    assert_string_equal(r.served.variant, "v2");
    assert_true(r.served.score == 0.25 && r.served.propensity == 0.2);
    assert_int_equal(r.served.nshadow, 1);
    assert_true(r.served.shadow[0] == 0.5);
    assert_int_equal(r.served.flaws, 0);
    /* an integer version names the variant by its digits; propensity 1 */
    assert_int_equal(SV("{\"event_id\":\"a\",\"event_time\":5,\"model\":7,"
                        "\"p\":1,\"prop\":1}"),
                     LD_REASON_NONE);
    assert_string_equal(r.served.variant, "7");
    assert_true(r.served.score == 1.0 && r.served.propensity == 1.0);
    assert_true(isnan(r.served.shadow[0]));
    assert_int_equal(r.served.flaws, 0);
    /* each flaw counted, the event still good */
    assert_int_equal(SV("{\"event_id\":\"a\",\"event_time\":5,\"p\":\"high\","
                        "\"p3\":true,\"prop\":0}"),
                     LD_REASON_NONE);
    assert_int_equal(r.served.variant_len, -1);
    assert_true(isnan(r.served.score) && isnan(r.served.propensity));
    assert_int_equal(r.served.flaws,
                     LD_SERVED_NO_VARIANT | LD_SERVED_BAD_SCORE |
                         LD_SERVED_BAD_SHADOW | LD_SERVED_BAD_PROPENSITY);
    assert_int_equal(SV("{\"event_id\":\"a\",\"event_time\":5,\"model\":"
                        "[\"x\"],\"prop\":1.5}"),
                     LD_REASON_NONE);
    assert_int_equal(r.served.variant_len, 0); /* counted as `other` */
    assert_int_equal(r.served.flaws,
                     LD_SERVED_BAD_VARIANT | LD_SERVED_BAD_PROPENSITY);
    /* 64 bytes: no configured name can be that long */
    assert_int_equal(
        SV("{\"event_id\":\"a\",\"event_time\":5,\"model\":\""
           "0123456789012345678901234567890123456789012345678901234567890123"
           "\"}"),
        LD_REASON_NONE);
    assert_int_equal(r.served.variant_len, 0);
    assert_int_equal(r.served.flaws, LD_SERVED_BAD_VARIANT);
    /* absent score and propensity are no flaw: the events predate them */
    assert_int_equal(SV("{\"event_id\":\"a\",\"event_time\":5,\"model\":"
                        "\"v1\",\"p\":null}"),
                     LD_REASON_NONE);
    assert_int_equal(r.served.flaws, 0);
#undef SV
    ld_decoder_destroy(d);
    /* not variant:field */
    assert_int_equal(fx_set(c, "served_shadow_fields", "p3"), 0);
    assert_null(ld_decoder_new(c, LD_RECORD_EVENT, err, sizeof(err)));
    assert_string_equal(err, "pipeline.served_shadow_fields[0]: 'p3' is not "
                             "variant:field");
    fx_conf_free(c);
}

static void test_poison_json_protobuf(void **state)
{
    (void)state;
    char err[512];
    ld_record_t r;
    ld_pipeline_conf_t *c = fx_conf_new("json");
    ld_decoder_t *d = ld_decoder_new(c, LD_RECORD_EVENT, err, sizeof(err));
    assert_non_null(d);
#define J(s) decode1(d, "k", s, sizeof(s) - 1, &r)
    assert_int_equal(J("{\"event_id\":\"a\",\"event_time\":5}"),
                     LD_REASON_NONE);
    assert_int_equal(r.x.nnz, 0);
    assert_int_equal(J("{\"event_id\":\"a\",\"event_time\":5"),
                     LD_REASON_DECODE);
    assert_int_equal(J("{\"event_id\":\"a\",\"event_time\":NaN}"),
                     LD_REASON_DECODE);
    assert_int_equal(J("{\"event_id\":\"a\",\"event_time\":5,\"f0\":1e999}"),
                     LD_REASON_DECODE);
    assert_int_equal(J("{\"event_id\":\"a\",\"event_time\":5,\"f0\":1e300}"),
                     LD_REASON_NOT_FINITE);
    assert_int_equal(J("{\"event_id\":\"a\",\"event_time\":5,\"country\":"
                       "\"\xc3\x28\"}"),
                     LD_REASON_BAD_UTF8);
    assert_int_equal(J("{\"event_id\":\"a\",\"event_id\":\"b\"}"),
                     LD_REASON_DUPLICATE_FIELD);
    assert_int_equal(J("{\"event_time\":5}"), LD_REASON_MISSING_KEY);
    assert_int_equal(J("{\"event_id\":\"a\"}"), LD_REASON_MISSING_TIME);
    assert_int_equal(J("{\"event_id\":\"a\",\"event_time\":\"x\"}"),
                     LD_REASON_BAD_TYPE);
    assert_int_equal(J("{\"event_id\":\"a\",\"event_time\":5,\"f3\":\"x\"}"),
                     LD_REASON_BAD_TYPE);
    assert_int_equal(J("{\"event_id\":\"a\",\"event_time\":5,\"tags\":[1]}"),
                     LD_REASON_BAD_TYPE);
    assert_int_equal(J("[1,2]"), LD_REASON_DECODE);
    assert_int_equal(decode1(d, "k", "", 0, &r), LD_REASON_EMPTY);
    /* integers hash as their decimal text, whatever the format */
    assert_int_equal(J("{\"event_id\":\"a\",\"event_time\":5,\"ad_id\":17}"),
                     LD_REASON_NONE);
    uint32_t a = r.x.idx[0];
    assert_int_equal(
        J("{\"event_id\":\"a\",\"event_time\":5,\"ad_id\":\"17\"}"),
        LD_REASON_NONE);
    assert_int_equal(r.x.idx[0], a);
    assert_int_equal(J("{\"event_id\":\"a\",\"event_time\":5,\"ad_id\":17.0}"),
                     LD_REASON_NONE);
    assert_int_equal(r.x.idx[0], a);
#undef J
    ld_decoder_destroy(d);
    fx_conf_free(c);

    c = fx_conf_new("protobuf");
    d = ld_decoder_new(c, LD_RECORD_EVENT, err, sizeof(err));
    assert_non_null(d);
    fx_set_t s;
    assert_int_equal(fx_load_kcat(FX_DIR "/events-protobuf.kcat", &s), 0);
    for (size_t k = 1; k < s.r[0].vlen; k++) {
        char *cut = malloc(k);
        memcpy(cut, s.r[0].val, k);
        ld_reason_t why = ld_decoder_decode(d, "k", 1, cut, k, -1, &r);
        /* a cut at a field boundary is a valid, shorter message */
        assert_true(why == LD_REASON_DECODE || why == LD_REASON_NONE ||
                    why == LD_REASON_MISSING_TIME);
        free(cut);
    }
    /* NaN as a dense feature: Feature{name:"f0", num:NaN} */
    static const char nan_ev[] = "\x0a\x01"
                                 "a"
                                 "\x10\x05"
                                 "\x1a\x0d\x0a\x02"
                                 "f0"
                                 "\x11\x00\x00\x00\x00\x00\x00\xf8\x7f";
    assert_int_equal(decode1(d, "k", nan_ev, sizeof(nan_ev) - 1, &r),
                     LD_REASON_NOT_FINITE);
    /* the same feature twice */
    static const char dup_ev[] = "\x0a\x01"
                                 "a"
                                 "\x10\x05"
                                 "\x1a\x0d\x0a\x02"
                                 "f0"
                                 "\x11\x00\x00\x00\x00\x00\x00\xf0\x3f"
                                 "\x1a\x0d\x0a\x02"
                                 "f0"
                                 "\x11\x00\x00\x00\x00\x00\x00\xf0\x3f";
    assert_int_equal(decode1(d, "k", dup_ev, sizeof(dup_ev) - 1, &r),
                     LD_REASON_DUPLICATE_FIELD);
    assert_int_equal(decode1(d, "k", "\xff\xff\xff", 3, &r), LD_REASON_DECODE);
    fx_free(&s);
    ld_decoder_destroy(d);
    fx_conf_free(c);
}

/* ---- Protobuf wire format ----------------------------------------------- */

/* A protobuf message under construction. */
typedef struct pbb {
    uint8_t b[1024];
    size_t n;
} pbb_t;

static void pb_varint(pbb_t *o, uint64_t v)
{
    do {
        uint8_t c = v & 0x7f;
        v >>= 7;
        if (v)
            c |= 0x80;
        o->b[o->n++] = c;
    } while (v);
}

static void pb_raw(pbb_t *o, const void *v, size_t n)
{
    memcpy(o->b + o->n, v, n);
    o->n += n;
}

/* Field num of wire type wt; a LEN field gets its length prefix. */
static void pb_field(pbb_t *o, uint32_t num, unsigned wt, const void *v,
                     size_t n)
{
    pb_varint(o, (uint64_t)num << 3 | wt);
    if (wt == 2)
        pb_varint(o, n);
    pb_raw(o, v, n);
}

static void pb_msg(pbb_t *o, uint32_t num, const pbb_t *m)
{
    pb_field(o, num, 2, m->b, m->n);
}

static void pb_double(pbb_t *o, uint32_t num, double d)
{
    uint8_t b[8];
    uint64_t u;
    memcpy(&u, &d, 8);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(u >> (8 * i));
    pb_field(o, num, 1, b, 8);
}

/* Feature{name, str} */
static void pb_feat_str(pbb_t *o, const char *name, const char *v)
{
    pbb_t f = {.n = 0};
    pb_field(&f, 1, 2, name, strlen(name));
    pb_field(&f, 3, 2, v, strlen(v));
    pb_msg(o, 3, &f);
}

/* Decodes v/n (copied to a buffer of exactly n bytes, so ASan sees any
 * overread) as kind k with d, checks the answer against the protobuf-c
 * reference, and returns the reason. */
static ld_reason_t pb_check(ld_decoder_t *d, const ld_pipeline_conf_t *c,
                            ld_record_kind_t k, const void *v, size_t n,
                            ld_record_t *r)
{
    uint8_t *x = malloc(n ? n : 1);
    assert_non_null(x);
    if (n)
        memcpy(x, v, n);
    ld_reason_t why = ld_decoder_decode(d, "k", 1, x, n, 7, r);
    const char *diff =
        n ? pbref_compare(c, k, "k", 1, x, n, 7, why, r, ld_decoder_error(d))
          : NULL;
    free(x);
    if (diff)
        fail_msg("%s message of %zu bytes: %s",
                 k == LD_RECORD_EVENT ? "event" : "label", n, diff);
    return why;
}

/* The base event of the wire tests: every Feature value kind. */
static void pb_base_event(pbb_t *o)
{
    pbb_t f = {.n = 0}, t = {.n = 0};
    o->n = 0;
    pb_field(o, 1, 2, "e1", 2);
    pb_field(o, 2, 0, "\x05", 1);
    pb_field(&f, 1, 2, "f0", 2);
    pb_double(&f, 2, 1.5);
    pb_msg(o, 3, &f);
    pb_feat_str(o, "country", "DE");
    pb_field(&t, 1, 2, "a", 1);
    pb_field(&t, 1, 2, "b", 1);
    f.n = 0;
    pb_field(&f, 1, 2, "tags", 4);
    pb_msg(&f, 4, &t);
    pb_msg(o, 3, &f);
    f.n = 0;
    pb_field(&f, 1, 2, "ad_id", 5);
    pb_field(&f, 5, 0, "\x11", 1);
    pb_msg(o, 3, &f);
    f.n = 0;
    pb_field(&f, 1, 2, "device", 6);
    pb_field(&f, 6, 0, "\x01", 1);
    pb_msg(o, 3, &f);
}

/* The answer for a record does not depend on the record before it: an
 * unmapped Feature {name, tags} whose StringList is broken (an entry's
 * length runs past the list) is refused alone, and was accepted after a
 * record with a good list at the same position, whose byte template let it
 * skip the list unchecked (found by fuzz_decode_protobuf). */
static void test_protobuf_history(void **state)
{
    (void)state;
    char err[512];
    ld_record_t r;
    ld_pipeline_conf_t *c = fx_conf_new("protobuf");
    assert_non_null(c);
    pbb_t good = {.n = 0}, bad = {.n = 0}, f = {.n = 0}, t = {.n = 0};
    pb_field(&good, 1, 2, "e1", 2);
    pb_field(&good, 2, 0, "\x05", 1);
    bad = good;
    pb_field(&t, 1, 2, "a", 1);
    pb_field(&t, 1, 2, "b", 1);
    pb_field(&f, 1, 2, "tag4", 4); /* not a mapped field: skipped */
    pb_msg(&f, 4, &t);
    pb_msg(&good, 3, &f);
    f.n = 0;
    pb_field(&f, 1, 2, "tag4", 4);
    pb_field(&f, 4, 2,
             "\x0a\x01"
             "a"
             "\x0a\x30"
             "b",
             6);
    pb_msg(&bad, 3, &f);
    assert_int_equal(good.n, bad.n); /* same shape and lengths */

    ld_decoder_t *d = ld_decoder_new(c, LD_RECORD_EVENT, err, sizeof(err));
    assert_non_null(d);
    assert_int_equal(pb_check(d, c, 0, bad.b, bad.n, &r), LD_REASON_DECODE);
    assert_string_equal(ld_decoder_error(d),
                        "not a learnd.v1.Event protobuf message");
    ld_decoder_destroy(d);

    d = ld_decoder_new(c, LD_RECORD_EVENT, err, sizeof(err));
    assert_non_null(d);
    assert_int_equal(pb_check(d, c, 0, good.b, good.n, &r), LD_REASON_NONE);
    assert_string_equal(r.key, "e1");
    assert_int_equal(r.time_ms, 5);
    assert_int_equal(pb_check(d, c, 0, bad.b, bad.n, &r), LD_REASON_DECODE);
    assert_string_equal(ld_decoder_error(d),
                        "not a learnd.v1.Event protobuf message");
    /* and the good one still passes after the bad one */
    assert_int_equal(pb_check(d, c, 0, good.b, good.n, &r), LD_REASON_NONE);
    ld_decoder_destroy(d);
    fx_conf_free(c);
}

/* The hand-written wire decoder against protobuf-c: unknown fields, wire
 * types, repeated and last-wins fields, NUL-cut strings, tag and varint
 * limits, every truncation and single-byte flip of the fixtures. */
static void test_protobuf_wire(void **state)
{
    (void)state;
    char err[512];
    ld_record_t r;
    ld_pipeline_conf_t *c = fx_conf_new("protobuf");
    ld_decoder_t *d = ld_decoder_new(c, LD_RECORD_EVENT, err, sizeof(err));
    ld_decoder_t *dl = ld_decoder_new(c, LD_RECORD_LABEL, err, sizeof(err));
    assert_non_null(d);
    assert_non_null(dl);
    pbb_t base, m, f, t;
    pb_base_event(&base);
    assert_int_equal(pb_check(d, c, 0, base.b, base.n, &r), LD_REASON_NONE);
    assert_string_equal(r.key, "e1");
    assert_int_equal(r.time_ms, 5);
    assert_true(r.x.dense[0] == 1.5f);
    uint32_t nnz = r.x.nnz, idx[64];
    assert_true(nnz >= 5 && nnz < 64);
    memcpy(idx, r.x.idx, nnz * sizeof(*idx));

    /* unknown fields of every wire type, at every level, are skipped */
    static const struct {
        uint32_t num;
        unsigned wt;
        const char *v;
        size_t n;
    } unk[] = {{9, 0, "\xff\x01", 2},
               {10, 1, "12345678", 8},
               {11, 2, "xyz", 3},
               {12, 5, "1234", 4},
               {536870911, 0, "\x00", 1}}; /* the largest field number */
    for (size_t i = 0; i < sizeof(unk) / sizeof(unk[0]); i++) {
        m = base;
        pb_field(&m, unk[i].num, unk[i].wt, unk[i].v, unk[i].n);
        f.n = 0; /* inside a Feature and inside a StringList */
        pb_field(&f, unk[i].num, unk[i].wt, unk[i].v, unk[i].n);
        pb_field(&f, 1, 2, "publisher", 9);
        t.n = 0;
        pb_field(&t, unk[i].num, unk[i].wt, unk[i].v, unk[i].n);
        pb_field(&t, 1, 2, "p1", 2);
        pb_msg(&f, 4, &t);
        pb_field(&f, unk[i].num, unk[i].wt, unk[i].v, unk[i].n);
        pb_msg(&m, 3, &f);
        assert_int_equal(pb_check(d, c, 0, m.b, m.n, &r), LD_REASON_NONE);
        assert_int_equal(r.x.nnz, nnz + 1);
    }
    /* a two-byte tag 0 is an unknown field; a one-byte tag 0 is refused */
    m = base;
    pb_raw(&m, "\x80\x00\x01", 3);
    assert_int_equal(pb_check(d, c, 0, m.b, m.n, &r), LD_REASON_NONE);
    m = base;
    pb_raw(&m, "\x00\x01", 2);
    assert_int_equal(pb_check(d, c, 0, m.b, m.n, &r), LD_REASON_DECODE);

    /* wire-type mismatches of known fields are refused */
    static const struct {
        uint32_t num;
        unsigned wt;
    } bad_top[] = {{1, 0}, {1, 1}, {1, 5}, {2, 1}, {2, 2},
                   {2, 5}, {3, 0}, {3, 1}, {3, 5}};
    for (size_t i = 0; i < sizeof(bad_top) / sizeof(bad_top[0]); i++) {
        m = base;
        pb_field(&m, bad_top[i].num, bad_top[i].wt,
                 "\x01\x02\x03\x04\x05\x06"
                 "\x07\x08",
                 bad_top[i].wt == 0   ? 1
                 : bad_top[i].wt == 5 ? 4
                                      : 8);
        assert_int_equal(pb_check(d, c, 0, m.b, m.n, &r), LD_REASON_DECODE);
        assert_string_equal(ld_decoder_error(d),
                            "not a learnd.v1.Event protobuf message");
    }
    static const struct {
        uint32_t num;
        unsigned wt;
    } bad_feat[] = {{1, 0}, {2, 0}, {2, 2}, {2, 5}, {3, 0},
                    {3, 1}, {4, 0}, {4, 5}, {5, 1}, {5, 2}};
    for (size_t i = 0; i < sizeof(bad_feat) / sizeof(bad_feat[0]); i++) {
        m = base;
        f.n = 0;
        pb_field(&f, 1, 2, "publisher", 9);
        pb_field(&f, bad_feat[i].num, bad_feat[i].wt,
                 "\x01\x02\x03\x04\x05\x06\x07\x08",
                 bad_feat[i].wt == 0   ? 1
                 : bad_feat[i].wt == 5 ? 4
                                       : 8);
        pb_msg(&m, 3, &f);
        assert_int_equal(pb_check(d, c, 0, m.b, m.n, &r), LD_REASON_DECODE);
    }
    /* a StringList value that is not a string */
    m = base;
    f.n = 0;
    t.n = 0;
    pb_field(&f, 1, 2, "publisher", 9);
    pb_field(&t, 1, 0, "\x01", 1);
    pb_msg(&f, 4, &t);
    pb_msg(&m, 3, &f);
    assert_int_equal(pb_check(d, c, 0, m.b, m.n, &r), LD_REASON_DECODE);
    /* the boolean takes any wire type, as protobuf-c does */
    for (unsigned wt = 0; wt < 6; wt++) {
        if (wt == 3 || wt == 4)
            continue;
        m = base;
        f.n = 0;
        pb_field(&f, 1, 2, "publisher", 9);
        pb_field(&f, 6, wt, "\x00\x00\x00\x00\x00\x00\x00\x00",
                 wt == 0   ? 1
                 : wt == 5 ? 4
                 : wt == 1 ? 8
                           : 0);
        pb_msg(&m, 3, &f);
        assert_int_equal(pb_check(d, c, 0, m.b, m.n, &r), LD_REASON_NONE);
        assert_int_equal(r.x.nnz, nnz + 1);
    }
    /* groups and wire types 6, 7 are refused, known field or not */
    for (unsigned wt = 3; wt < 8; wt++) {
        if (wt == 5)
            continue;
        m = base;
        pb_varint(&m, 9u << 3 | wt);
        pb_raw(&m, "\x01\x02\x03\x04", 4);
        assert_int_equal(pb_check(d, c, 0, m.b, m.n, &r), LD_REASON_DECODE);
    }

    /* repeated: StringList values one by one; last wins for scalars and
     * for the oneof */
    m = base;
    f.n = 0;
    pb_field(&f, 1, 2, "publisher", 9);
    pb_field(&f, 3, 2, "first", 5);
    t.n = 0;
    pb_field(&t, 1, 2, "x", 1);
    pb_field(&t, 1, 2, "y", 1);
    pb_msg(&f, 4, &t);
    pb_field(&f, 3, 2, "last", 4);
    pb_msg(&m, 3, &f);
    pb_field(&m, 1, 2, "e2", 2);
    pb_field(&m, 2, 0, "\x07", 1);
    assert_int_equal(pb_check(d, c, 0, m.b, m.n, &r), LD_REASON_NONE);
    assert_string_equal(r.key, "e2");
    assert_int_equal(r.time_ms, 7);
    assert_int_equal(r.x.nnz, nnz + 1);
    /* strings end at their first NUL, as protobuf-c's C strings do */
    m.n = 0;
    pb_field(&m, 1, 2, "e1\0zz", 5);
    pb_raw(&m, base.b + 4, base.n - 4);
    assert_int_equal(pb_check(d, c, 0, m.b, m.n, &r), LD_REASON_NONE);
    assert_string_equal(r.key, "e1");
    assert_int_equal(r.x.nnz, nnz);
    assert_memory_equal(r.x.idx, idx, nnz * sizeof(*idx));
    /* a duplicate feature is reported only when the message is sound */
    m = base;
    pb_feat_str(&m, "country", "FR");
    assert_int_equal(pb_check(d, c, 0, m.b, m.n, &r),
                     LD_REASON_DUPLICATE_FIELD);
    assert_string_equal(ld_decoder_error(d), "feature country appears twice");
    pb_raw(&m, "\x1a\x05\x0a", 3);
    assert_int_equal(pb_check(d, c, 0, m.b, m.n, &r), LD_REASON_DECODE);

    /* limits: 5-byte tags, 10-byte varints, 5-byte lengths below 2^31 */
    m.n = 0;
    pb_raw(&m,
           "\x8a\x80\x80\x80\x00\x02"
           "e1",
           8);
    pb_raw(&m, "\x10\x85\x80\x80\x80\x80\x80\x80\x80\x80\x00", 11);
    pb_raw(&m,
           "\x5a\x81\x80\x80\x80\x00"
           "x",
           7); /* unknown, 5-byte length */
    assert_int_equal(pb_check(d, c, 0, m.b, m.n, &r), LD_REASON_NONE);
    assert_string_equal(r.key, "e1");
    assert_int_equal(r.time_ms, 5);
    static const struct {
        const char *v;
        size_t n;
    } bad[] = {
        {"\x8a\x80\x80\x80\x80\x00\x02"
         "e1",
         9}, /* 6-byte tag */
        {"\x10\x85\x80\x80\x80\x80\x80\x80\x80\x80\x80\x00", 12}, /* 11 */
        {"\x10\x85", 2}, /* varint cut */
        {"\x0a\x82\x80\x80\x80\x80\x00"
         "e1",
         9}, /* 6-byte length */
        {"\x0a\x82\x80\x80\x80\x08"
         "e1",
         8},                             /* 2^31 + 2 */
        {"\x0a\xff\xff\xff\xff\x0f", 6}, /* 2^32 - 1 */
        {"\x0a\x03"
         "e1",
         4},                 /* length past the end */
        {"\x11\x01\x02", 3}, /* fixed64 cut */
        {"\x4d\x01\x02", 3}, /* fixed32 cut */
        {"\x8a", 1},         /* tag cut */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (pb_check(d, c, 0, bad[i].v, bad[i].n, &r) != LD_REASON_DECODE)
            fail_msg("limit case %zu decoded", i);

    /* labels: value as double only; unknown fields skipped */
    m.n = 0;
    pb_field(&m, 1, 2, "e1", 2);
    pb_field(&m, 2, 0, "\x05", 1);
    pb_double(&m, 3, 1.0);
    pb_field(&m, 4, 2, "x", 1);
    assert_int_equal(pb_check(dl, c, 1, m.b, m.n, &r), LD_REASON_NONE);
    assert_true(r.label == 1.0);
    pb_field(&m, 3, 0, "\x01", 1);
    assert_int_equal(pb_check(dl, c, 1, m.b, m.n, &r), LD_REASON_DECODE);
    assert_string_equal(ld_decoder_error(dl),
                        "not a learnd.v1.Label protobuf message");

    /* every truncation and every single-byte change of every fixture */
    for (int k = 0; k < 2; k++) {
        fx_set_t s;
        assert_int_equal(fx_load_kcat(k ? FX_DIR "/labels-protobuf.kcat"
                                        : FX_DIR "/events-protobuf.kcat",
                                      &s),
                         0);
        for (size_t i = 0; i < s.n; i++) {
            const uint8_t *v = (const uint8_t *)s.r[i].val;
            size_t n = s.r[i].vlen;
            for (size_t cut = 0; cut <= n; cut++)
                (void)pb_check(k ? dl : d, c, (ld_record_kind_t)k, v, cut, &r);
            if (i > 1)
                continue;
            uint8_t *x = malloc(n);
            memcpy(x, v, n);
            for (size_t j = 0; j < n; j++) {
                static const uint8_t to[] = {0x00, 0x01, 0x7f, 0x80, 0xff};
                uint8_t was = x[j];
                for (size_t q = 0; q < sizeof(to); q++) {
                    x[j] = to[q] != was ? to[q] : (uint8_t)(was ^ 0x40);
                    (void)pb_check(k ? dl : d, c, (ld_record_kind_t)k, x, n,
                                   &r);
                }
                x[j] = was;
            }
            free(x);
        }
        fx_free(&s);
    }
    ld_decoder_destroy(d);
    ld_decoder_destroy(dl);
    fx_conf_free(c);
}

/* ---- Avro schema resolution --------------------------------------------- */

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_avro_resolution(void **state)
{
    (void)state;
    /* reader: adds `segment` with a default, reads `n` (int in the writer)
     * as double, `cat` as a nullable string; the writer has an extra map,
     * enum and nested record the mapping does not use, plus a nested one it
     * does (geo.country). */
    const char *reader = "resolve-reader.avsc", *writer = "resolve-writer.avsc";
    write_file(reader,
               "{\"type\":\"record\",\"name\":\"R\",\"fields\":["
               "{\"name\":\"id\",\"type\":\"string\"},"
               "{\"name\":\"t\",\"type\":\"long\"},"
               "{\"name\":\"n\",\"type\":\"double\"},"
               "{\"name\":\"cat\",\"type\":[\"null\",\"string\"]},"
               "{\"name\":\"geo\",\"type\":{\"type\":\"record\",\"name\":"
               "\"G\",\"fields\":[{\"name\":\"country\",\"type\":"
               "\"string\"}]}},"
               "{\"name\":\"segment\",\"type\":\"string\",\"default\":\"s0\"}"
               "]}");
    write_file(writer,
               "{\"type\":\"record\",\"name\":\"R\",\"fields\":["
               "{\"name\":\"extra\",\"type\":{\"type\":\"map\",\"values\":"
               "\"long\"}},"
               "{\"name\":\"t\",\"type\":\"int\"},"
               "{\"name\":\"id\",\"type\":\"string\"},"
               "{\"name\":\"e\",\"type\":{\"type\":\"enum\",\"name\":\"E\","
               "\"symbols\":[\"A\",\"B\"]}},"
               "{\"name\":\"geo\",\"type\":{\"type\":\"record\",\"name\":"
               "\"G\",\"fields\":[{\"name\":\"x\",\"type\":\"float\"},"
               "{\"name\":\"country\",\"type\":\"string\"}]}},"
               "{\"name\":\"n\",\"type\":\"int\"},"
               "{\"name\":\"cat\",\"type\":\"string\"}"
               "]}");
    char err[512] = "";
    ld_pipeline_conf_t *c = calloc(1, sizeof(*c));
    assert_int_equal(
        ld_conf_set_defaults(&ld_pipeline_conf_section, c, err, sizeof(err)),
        LD_OK);
    c->hash_bits = 22; /* the model's slot count, set by the daemon */
    assert_int_equal(fx_set(c, "event_schema", reader), 0);
    assert_int_equal(fx_set(c, "event_writer_schema", writer), 0);
    assert_int_equal(fx_set(c, "key_field", "id"), 0);
    assert_int_equal(fx_set(c, "event_time_field", "t"), 0);
    assert_int_equal(fx_set(c, "dense_fields", "n"), 0);
    assert_int_equal(fx_set(c, "hash_fields", "cat,geo.country,segment"), 0);
    ld_decoder_t *d = ld_decoder_new(c, LD_RECORD_EVENT, err, sizeof(err));
    if (!d)
        fail_msg("%s", err);
    /* extra={"a":1}, t=7, id="k1", e=B, geo={x:0.5, country:"DE"}, n=-3,
     * cat="c" */
    static const char rec[] = "\x02\x02"
                              "a"
                              "\x02\x00" /* map */
                              "\x0e"     /* t=7 */
                              "\x04"
                              "k1"               /* id */
                              "\x02"             /* e=B */
                              "\x00\x00\x00\x3f" /* x=0.5 */
                              "\x04"
                              "DE"   /* country */
                              "\x05" /* n=-3 */
                              "\x02"
                              "c"; /* cat */
    ld_record_t r;
    ld_reason_t why = decode1(d, NULL, rec, sizeof(rec) - 1, &r);
    if (why)
        fail_msg("%s: %s", ld_reason_name(why), ld_decoder_error(d));
    assert_string_equal(r.key, "k1");
    assert_int_equal(r.time_ms, 7);
    assert_true(r.x.dense[0] == -3.0f);
    assert_int_equal(r.x.nnz, 3);
    /* the same values straight from a reader-shaped record hash the same */
    uint32_t want[3];
    uint32_t mask = (1u << 22) - 1;
    const char *f[3][2] = {
        {"cat", "c"}, {"geo.country", "DE"}, {"segment", "s0"}};
    for (int i = 0; i < 3; i++) {
        uint32_t ns = ld_hash_murmur3_32(f[i][0], strlen(f[i][0]), 0);
        uint32_t fs = ld_hash_murmur3_32(f[i][0], strlen(f[i][0]), ns);
        want[i] = ld_hash_murmur3_32(f[i][1], strlen(f[i][1]), fs) & mask;
        assert_int_equal(r.x.idx[i], want[i]);
    }
    /* trailing garbage and a map block running past the end */
    char longer[sizeof(rec) + 1];
    memcpy(longer, rec, sizeof(rec) - 1);
    longer[sizeof(rec) - 1] = 0;
    assert_int_equal(decode1(d, NULL, longer, sizeof(rec), &r),
                     LD_REASON_DECODE);
    assert_int_equal(decode1(d, NULL, "\x7e\x02", 2, &r), LD_REASON_DECODE);
    ld_decoder_destroy(d);

    /* a mapped field the reader lacks is a config error */
    assert_int_equal(fx_set(c, "hash_fields", "nope"), 0);
    assert_null(ld_decoder_new(c, LD_RECORD_EVENT, err, sizeof(err)));
    assert_non_null(strstr(err, "no field nope"));
    /* a reader field without default that the writer lacks */
    assert_int_equal(fx_set(c, "hash_fields", "cat"), 0);
    write_file(writer, "{\"type\":\"record\",\"name\":\"R\",\"fields\":["
                       "{\"name\":\"id\",\"type\":\"string\"},"
                       "{\"name\":\"t\",\"type\":\"long\"}]}");
    assert_null(ld_decoder_new(c, LD_RECORD_EVENT, err, sizeof(err)));
    assert_non_null(strstr(err, "has no default"));
    /* bad crosses */
    assert_int_equal(fx_set(c, "event_writer_schema", ""), 0);
    assert_int_equal(ld_conf_strlist_add(&c->crosses, "cat,zzz"), LD_OK);
    assert_null(ld_decoder_new(c, LD_RECORD_EVENT, err, sizeof(err)));
    assert_non_null(strstr(err, "'zzz' is not a namespace"));
    ld_conf_free(&ld_pipeline_conf_section, c);
    free(c);
    remove(reader);
    remove(writer);
}

/* Crosses multiply out tags; too many features is a dead-letter reason. */
static void test_crosses_and_limits(void **state)
{
    (void)state;
    char err[512];
    ld_record_t r;
    ld_pipeline_conf_t *c = fx_conf_new("json");
    assert_int_equal(fx_set(c, "hash_fields", "tags,b:x"), 0);
    ld_conf_free(&ld_pipeline_conf_section, c);
    free(c);
    c = fx_conf_new("json");
    assert_int_equal(fx_set(c, "hash_fields", "a:tags,b:x"), 0);
    assert_int_equal(fx_set(c, "crosses", ""), 0);
    assert_int_equal(ld_conf_strlist_add(&c->crosses, "a, b"), LD_OK);
    assert_int_equal(fx_set(c, "max_features", "8"), 0);
    ld_decoder_t *d = ld_decoder_new(c, LD_RECORD_EVENT, err, sizeof(err));
    if (!d)
        fail_msg("%s", err);
    static const char ok[] =
        "{\"event_id\":\"e\",\"event_time\":1,\"tags\":[\"p\",\"q\"],"
        "\"x\":true}";
    assert_int_equal(decode1(d, NULL, ok, sizeof(ok) - 1, &r), LD_REASON_NONE);
    assert_int_equal(r.x.nnz, 2 + 1 + 2);
    /* cross p x true: murmur3 of the two full hashes, little-endian */
    uint32_t sa = ld_hash_murmur3_32("tags", 4, ld_hash_murmur3_32("a", 1, 42));
    uint32_t sb = ld_hash_murmur3_32("x", 1, ld_hash_murmur3_32("b", 1, 42));
    uint32_t hp = ld_hash_murmur3_32("p", 1, sa);
    uint32_t ht = ld_hash_murmur3_32("true", 4, sb);
    uint8_t b[8];
    for (int i = 0; i < 4; i++) {
        b[i] = (uint8_t)(hp >> (8 * i));
        b[4 + i] = (uint8_t)(ht >> (8 * i));
    }
    assert_int_equal(r.x.idx[3], ld_hash_murmur3_32(b, 8, 42) & 0x3ffffu);
    static const char many[] =
        "{\"event_id\":\"e\",\"event_time\":1,\"tags\":[\"1\",\"2\",\"3\","
        "\"4\",\"5\"],\"x\":1}";
    assert_int_equal(decode1(d, NULL, many, sizeof(many) - 1, &r),
                     LD_REASON_TOO_MANY_FEATURES);
    assert_string_equal(ld_reason_name(LD_REASON_TOO_MANY_FEATURES),
                        "too_many_features");
    assert_non_null(strstr(ld_decoder_feature_map(d), "cross=a,b"));
    ld_decoder_destroy(d);
    fx_conf_free(c);
}

/* Label computation: numeric, equals, presence; Kafka key and timestamp. */
static void test_labels(void **state)
{
    (void)state;
    char err[512];
    ld_record_t r;
    ld_pipeline_conf_t *c = fx_conf_new("json");
    assert_int_equal(fx_set(c, "label_mode", "equals"), 0);
    assert_int_equal(fx_set(c, "label_field", "kind"), 0);
    assert_int_equal(fx_set(c, "label_equals", "purchase"), 0);
    assert_int_equal(fx_set(c, "key_field", ""), 0);
    assert_int_equal(fx_set(c, "time_source", "kafka_timestamp"), 0);
    ld_decoder_t *d = ld_decoder_new(c, LD_RECORD_LABEL, err, sizeof(err));
    assert_non_null(d);
    assert_int_equal(decode1(d, "ev1", "{\"kind\":\"purchase\"}", 19, &r),
                     LD_REASON_NONE);
    assert_true(r.label == 1.0);
    assert_int_equal(r.no_label, 0);
    assert_string_equal(r.key, "ev1");
    assert_int_equal(r.time_ms, 1234);
    /* A record that does not match is no label at all (not a label 0):
     * docs/LABELING.md "Records that carry no label". Its time is kept. */
    assert_int_equal(decode1(d, "ev1", "{\"kind\":\"view\"}", 15, &r),
                     LD_REASON_NONE);
    assert_int_equal(r.no_label, 1);
    assert_int_equal(r.time_ms, 1234);
    assert_int_equal(decode1(d, "ev1", "{\"kind\":null}", 13, &r),
                     LD_REASON_NONE);
    assert_int_equal(r.no_label, 1);
    assert_int_equal(decode1(d, "ev1", "{}", 2, &r), LD_REASON_NONE);
    assert_int_equal(r.no_label, 1);
    assert_int_equal(decode1(d, NULL, "{\"kind\":\"view\"}", 15, &r),
                     LD_REASON_MISSING_KEY);
    assert_int_equal(decode1(d, "a\xff", "{}", 2, &r), LD_REASON_BAD_UTF8);
    ld_decoder_destroy(d);
    assert_int_equal(fx_set(c, "label_mode", "presence"), 0);
    d = ld_decoder_new(c, LD_RECORD_LABEL, err, sizeof(err));
    assert_int_equal(decode1(d, "ev1", "{}", 2, &r), LD_REASON_NONE);
    assert_true(r.label == 1.0);
    assert_int_equal(r.no_label, 0);
    ld_decoder_destroy(d);
    assert_int_equal(fx_set(c, "label_mode", "numeric"), 0);
    d = ld_decoder_new(c, LD_RECORD_LABEL, err, sizeof(err));
    assert_int_equal(decode1(d, "ev1", "{}", 2, &r), LD_REASON_MISSING_LABEL);
    assert_int_equal(decode1(d, "ev1", "{\"kind\":2.5}", 12, &r),
                     LD_REASON_NONE);
    assert_true(r.label == 2.5);
    assert_int_equal(r.no_label, 0);
    assert_int_equal(decode1(d, "ev1", "{\"kind\":0}", 10, &r), LD_REASON_NONE);
    assert_true(r.label == 0.0);
    assert_int_equal(r.no_label, 0); /* numeric: a 0 is a label */
    ld_decoder_destroy(d);
    fx_conf_free(c);
}

/* ---- JSON fast path ------------------------------------------------------ */

typedef struct jside {
    ld_fmap_t *fm;
    ld_jsondec_t *jd;
    char err[512];
    ld_record_t r;
} jside_t;

/* Decodes v as ld_jsondec_decode does (fast path, else jansson) or with
 * jansson alone; *fast says whether the fast path took it. */
static ld_reason_t jdecode(jside_t *s, const char *v, size_t n, int slow_only,
                           int *fast)
{
    ld_reason_t why = LD_REASON_NONE;
    s->err[0] = '\0';
    ld_fmap_reset(s->fm);
    *fast = !slow_only && ld_jsondec_fast(s->jd, s->fm, (const uint8_t *)v, n);
    if (!*fast) {
        ld_fmap_reset(s->fm);
        why = ld_jsondec_decode_slow(s->jd, s->fm, (const uint8_t *)v, n,
                                     s->err, sizeof(s->err));
    }
    if (!why)
        why = ld_fmap_finish(s->fm, "k", 1, -1, &s->r, s->err, sizeof(s->err));
    return why;
}

/* Both paths on one input: the same reason, detail and record, bit for
 * bit. Returns whether the fast path took it. */
static int jcompare(jside_t *a, jside_t *b, const char *v, size_t n)
{
    int fa, fb;
    ld_reason_t ra = jdecode(a, v, n, 0, &fa), rb = jdecode(b, v, n, 1, &fb);
    if (ra != rb || strcmp(a->err, b->err) != 0)
        fail_msg("'%.*s': fast %s (%s), jansson %s (%s)", (int)n, v,
                 ld_reason_name(ra), a->err, ld_reason_name(rb), b->err);
    if (ra)
        return fa;
    const ld_record_t *x = &a->r, *y = &b->r;
    if (x->key_len != y->key_len || memcmp(x->key, y->key, x->key_len) ||
        x->time_ms != y->time_ms || x->x.nnz != y->x.nnz ||
        x->x.ndense != y->x.ndense ||
        memcmp(x->x.idx, y->x.idx, x->x.nnz * sizeof(uint32_t)) ||
        memcmp(x->x.val, y->x.val, x->x.nnz * sizeof(float)) ||
        memcmp(x->x.dense, y->x.dense, x->x.ndense * sizeof(float)))
        fail_msg("'%.*s': records differ", (int)n, v);
    return fa;
}

/* The fast path gives exactly jansson's result, on the fixture events,
 * on hand-picked edge cases and on 60 000 seeded mutants of them; and it
 * takes the records it is meant for (so the comparison is not vacuous). */
static void test_json_fast_path(void **state)
{
    (void)state;
    char err[256];
    ld_pipeline_conf_t *c = fx_conf_new("json");
    assert_non_null(c);
    jside_t a = {0}, b = {0};
    jside_t *sides[2] = {&a, &b};
    for (int i = 0; i < 2; i++) {
        sides[i]->fm = ld_fmap_new(c, LD_RECORD_EVENT, 0, err, sizeof(err));
        assert_non_null(sides[i]->fm);
        sides[i]->jd = ld_jsondec_new(sides[i]->fm, err, sizeof(err));
        assert_non_null(sides[i]->jd);
    }
    fx_set_t fx;
    assert_int_equal(fx_load_kcat(FX_DIR "/events-json.kcat", &fx), 0);
    size_t fast = 0;
    for (size_t i = 0; i < fx.n; i++)
        fast += (size_t)jcompare(&a, &b, fx.r[i].val, fx.r[i].vlen);
    assert_int_equal(fast, fx.n); /* every fixture event */

    static const char *const edge[] = {
        "{\"event_id\":\"e1\",\"event_time\":5,\"f0\":1.5}",
        "  {\"event_id\" : \"e1\" ,\n\t\"event_time\":5 , \"f0\":-0}\r\n",
        "{\"event_id\":\"e1\",\"event_time\":5,\"m\":{\"f19\":2}}",
        "{\"event_id\":\"e1\",\"event_time\":5,\"m.f19\":3,\"m\":{\"f19\":2}}",
        "{\"event_id\":\"e1\",\"event_time\":5,\"m\":{\"f19\":2},\"m.f19\":3}",
        "{\"event_id\":\"e1\",\"event_time\":5,\"m\":{\"f19\":2,\"f19\":3}}",
        "{\"event_id\":\"e1\",\"event_time\":5,\"m\":{\"x\":{\"f19\":2}}}",
        "{\"event_id\":\"e1\",\"event_time\":5,\"m\":{},\"m\":{}}",
        "{\"event_id\":\"e1\",\"event_time\":5,\"country\":{\"a\":1}}",
        "{\"event_id\":\"e1\",\"event_time\":5,\"f0\":1,\"f0\":2}",
        "{\"event_id\":\"e\\u00e9\",\"event_time\":5}",
        "{\"event_id\":\"e\xc3\xa9\",\"event_time\":5}",
        "{\"event_id\":\"e\xc3\",\"event_time\":5}",
        "{\"event_id\":\"e\\\"q\",\"event_time\":5}",
        "{\"event_id\":\"e1\",\"event_time\":5,\"f0\":1e400}",
        "{\"event_id\":\"e1\",\"event_time\":5,\"f0\":1e-400}",
        "{\"event_id\":\"e1\",\"event_time\":9223372036854775808}",
        "{\"event_id\":\"e1\",\"event_time\":-9223372036854775808}",
        "{\"event_id\":\"e1\",\"event_time\":5,\"f0\":01}",
        "{\"event_id\":\"e1\",\"event_time\":5,\"f0\":1.}",
        "{\"event_id\":\"e1\",\"event_time\":5,\"f0\":-}",
        "{\"event_id\":\"e1\",\"event_time\":5,\"f0\":+1}",
        "{\"event_id\":\"e1\",\"event_time\":5,\"f0\":1E+2}",
        "{\"event_id\":\"e1\",\"event_time\":5.0}",
        "{\"event_id\":7,\"event_time\":5}",
        "{\"event_id\":\"e1\",\"event_time\":5,\"tags\":[]}",
        "{\"event_id\":\"e1\",\"event_time\":5,\"tags\":[\"a\", \"b\" ]}",
        "{\"event_id\":\"e1\",\"event_time\":5,\"tags\":[\"a\",1]}",
        "{\"event_id\":\"e1\",\"event_time\":5,\"tags\":[\"a\",]}",
        "{\"event_id\":\"e1\",\"event_time\":5,\"other\":[1,{}]}",
        "{\"event_id\":\"e1\",\"event_time\":5,\"tags\":\"x\"}",
        "{\"event_id\":\"e1\",\"event_time\":5,\"device\":true,"
        "\"country\":false,\"ad_id\":null}",
        "{\"event_id\":\"e1\",\"event_time\":5,\"f0\":tru}",
        "{\"event_id\":\"e1\",\"event_time\":5,\"f0\":truex}",
        "{\"event_id\":\"e1\",\"event_time\":5}x",
        "{\"event_id\":\"e1\",\"event_time\":5",
        "{\"event_id\":\"e1\",\"event_time\":5,}",
        "{}",
        "[]",
        "\"s\"",
        "{\"event_id\":\"e1\",\"event_time\":5,\"f0\":\"1.5\"}",
        "{\"event_id\":\"\",\"event_time\":5}",
        "{\"event_id\":\"e1\"}",
    };
    size_t nedge = sizeof(edge) / sizeof(edge[0]), efast = 0;
    for (size_t i = 0; i < nedge; i++)
        efast += (size_t)jcompare(&a, &b, edge[i], strlen(edge[i]));
    assert_int_equal(efast, 19); /* the well-formed ones that fit */

    /* Mutants: one to three random edits of a fixture event with bytes
     * that matter to JSON. */
    static const char alpha[] = "{}[]\",:\\ 0123456789.eE-+tfnulsr\x01\x1f"
                                "\xc3\xa9\x80\xff";
    char buf[4096];
    uint64_t rs = 12345;
    size_t mfast = 0, nmut = 60000;
    for (size_t m = 0; m < nmut; m++) {
        const fx_rec_t *r = &fx.r[m % fx.n];
        size_t n = r->vlen < sizeof(buf) - 4 ? r->vlen : sizeof(buf) - 4;
        memcpy(buf, r->val, n);
        rs = rs * 6364136223846793005ull + 1442695040888963407ull;
        int edits = 1 + (int)((rs >> 33) % 3);
        for (int k = 0; k < edits && n > 1; k++) {
            rs = rs * 6364136223846793005ull + 1442695040888963407ull;
            size_t at = (size_t)(rs >> 20) % n;
            char ch = alpha[(rs >> 50) % (sizeof(alpha) - 1)];
            switch ((rs >> 40) % 3) {
            case 0:
                buf[at] = ch;
                break;
            case 1:
                memmove(buf + at + 1, buf + at, n - at);
                buf[at] = ch;
                n++;
                break;
            default:
                memmove(buf + at, buf + at + 1, n - at - 1);
                n--;
                break;
            }
        }
        mfast += (size_t)jcompare(&a, &b, buf, n);
    }
    print_message("json fast path: %zu of %zu mutants\n", mfast, nmut);
    assert_true(mfast > nmut / 10 && mfast < nmut);
    fx_free(&fx);
    for (int i = 0; i < 2; i++) {
        ld_jsondec_destroy(sides[i]->jd);
        ld_fmap_destroy(sides[i]->fm);
    }
    fx_conf_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conf_passthrough),
        cmocka_unit_test(test_conf_errors),
        cmocka_unit_test(test_log_routing),
        cmocka_unit_test(test_murmur3_vectors),
        cmocka_unit_test(test_fixtures_avro),
        cmocka_unit_test(test_fixtures_protobuf),
        cmocka_unit_test(test_fixtures_json),
        cmocka_unit_test(test_json_fast_path),
        cmocka_unit_test(test_poison_avro),
        cmocka_unit_test(test_poison_json_protobuf),
        cmocka_unit_test(test_served_fields),
        cmocka_unit_test(test_time_and_key_limits),
        cmocka_unit_test(test_protobuf_wire),
        cmocka_unit_test(test_protobuf_history),
        cmocka_unit_test(test_avro_resolution),
        cmocka_unit_test(test_crosses_and_limits),
        cmocka_unit_test(test_labels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
