/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the descriptor-driven Protobuf decoder (pipeline/pbdesc.c):
 * users' own messages (tests/data/pipeline/pbdesc/shop.proto) encoded by
 * protoc-c's generated code, an independent encoder, must give exactly the
 * records the JSON decoder gives for the same values under the same
 * mapping; plus the config errors, dead-letter reasons, presence rules and
 * Confluent framing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "google/protobuf/timestamp.pb-c.h"
#include "google/protobuf/wrappers.pb-c.h"
#include "pipeline/decode.h"
#include "shop.pb-c.h"
#include "tests/data/pipeline/fixtures.h"

/* ---- Encoding a JSON document as shop.v1 messages ------------------------ */

/* Everything a packed Impression points to, freed together. */
typedef struct imp {
    Shop__V1__Impression m;
    Google__Protobuf__Timestamp ts;
    Google__Protobuf__StringValue seg;
    Google__Protobuf__DoubleValue bid;
    Shop__V1__Impression__Inner inner;
    Shop__V1__Impression__ScoresEntry se[8], *sp[8];
    Shop__V1__Impression__AttrsEntry ae[8], *ap[8];
    char *tags[16];
    Shop__V1__Device seen[16];
} imp_t;

static Shop__V1__Device device_of(const char *name)
{
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value_by_name(
        &shop__v1__device__descriptor, name);
    assert_non_null(v);
    return (Shop__V1__Device)v->value;
}

/* Packs the Impression holding the fields of JSON object j (names as in
 * shop.proto; event_time in milliseconds). Returns the bytes (caller
 * frees) and their count in *len. */
static uint8_t *pack_impression(json_t *j, size_t *len)
{
    imp_t *x = calloc(1, sizeof(*x));
    assert_non_null(x);
    shop__v1__impression__init(&x->m);
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v)
    {
        if (strcmp(k, "event_id") == 0) {
            x->m.event_id = (char *)json_string_value(v);
        } else if (strcmp(k, "event_time") == 0) {
            google__protobuf__timestamp__init(&x->ts);
            int64_t ms = json_integer_value(v);
            x->ts.seconds = ms / 1000;
            x->ts.nanos = (int32_t)(ms % 1000) * 1000000;
            x->m.event_time = &x->ts;
        } else if (k[0] == 'f' && k[1] >= '0' && k[1] <= '9') {
            int i = atoi(k + 1);
            assert_true(i >= 0 && i <= 18);
            (&x->m.f0)[i] = (float)json_number_value(v);
        } else if (strcmp(k, "m") == 0) {
            shop__v1__impression__inner__init(&x->inner);
            x->inner.f19 = (float)json_number_value(json_object_get(v, "f19"));
            x->m.m = &x->inner;
        } else if (strcmp(k, "country") == 0) {
            x->m.country = (char *)json_string_value(v);
        } else if (strcmp(k, "ad_id") == 0) {
            x->m.ad_id = (char *)json_string_value(v);
        } else if (strcmp(k, "device") == 0) {
            x->m.device = device_of(json_string_value(v));
        } else if (strcmp(k, "publisher") == 0) {
            x->m.publisher = (char *)json_string_value(v);
        } else if (strcmp(k, "user_segment") == 0) {
            if (json_is_string(v)) {
                google__protobuf__string_value__init(&x->seg);
                x->seg.value = (char *)json_string_value(v);
                x->m.user_segment = &x->seg;
            }
        } else if (strcmp(k, "tags") == 0) {
            size_t i;
            json_t *t;
            json_array_foreach(v, i, t) x->tags[i] =
                (char *)json_string_value(t);
            x->m.n_tags = json_array_size(v);
            x->m.tags = x->tags;
        } else if (strcmp(k, "scores") == 0) {
            const char *sk;
            json_t *sv;
            json_object_foreach(v, sk, sv)
            {
                size_t i = x->m.n_scores++;
                shop__v1__impression__scores_entry__init(&x->se[i]);
                x->se[i].key = (char *)sk;
                x->se[i].value = json_number_value(sv);
                x->sp[i] = &x->se[i];
            }
            x->m.scores = x->sp;
        } else if (strcmp(k, "attrs") == 0) {
            const char *ak;
            json_t *av;
            json_object_foreach(v, ak, av)
            {
                size_t i = x->m.n_attrs++;
                shop__v1__impression__attrs_entry__init(&x->ae[i]);
                x->ae[i].key = (char *)ak;
                x->ae[i].value = (char *)json_string_value(av);
                x->ap[i] = &x->ae[i];
            }
            x->m.attrs = x->ap;
        } else if (strcmp(k, "slot") == 0) {
            x->m.placement_case = SHOP__V1__IMPRESSION__PLACEMENT_SLOT;
            x->m.slot = (char *)json_string_value(v);
        } else if (strcmp(k, "position") == 0) {
            x->m.placement_case = SHOP__V1__IMPRESSION__PLACEMENT_POSITION;
            x->m.position = (int32_t)json_integer_value(v);
        } else if (strcmp(k, "time_ms") == 0) {
            x->m.time_ms = json_integer_value(v);
        } else if (strcmp(k, "seen_on") == 0) {
            size_t i;
            json_t *t;
            json_array_foreach(v, i, t) x->seen[i] =
                device_of(json_string_value(t));
            x->m.n_seen_on = json_array_size(v);
            x->m.seen_on = x->seen;
        } else if (strcmp(k, "bid") == 0) {
            google__protobuf__double_value__init(&x->bid);
            x->bid.value = json_number_value(v);
            x->m.bid = &x->bid;
        } else if (strcmp(k, "delta") == 0) {
            x->m.delta = json_integer_value(v);
        } else {
            fail_msg("no field %s in shop.v1.Impression", k);
        }
    }
    *len = shop__v1__impression__get_packed_size(&x->m);
    uint8_t *out = malloc(*len + 1);
    assert_non_null(out);
    assert_int_equal(shop__v1__impression__pack(&x->m, out), *len);
    free(x);
    return out;
}

static uint8_t *pack_click(json_t *j, size_t *len)
{
    Shop__V1__Click c;
    shop__v1__click__init(&c);
    c.event_id = (char *)json_string_value(json_object_get(j, "event_id"));
    c.label_time = json_integer_value(json_object_get(j, "label_time"));
    c.clicked = json_is_true(json_object_get(j, "clicked"));
    c.value = json_number_value(json_object_get(j, "value"));
    *len = shop__v1__click__get_packed_size(&c);
    uint8_t *out = malloc(*len + 1);
    assert_non_null(out);
    assert_int_equal(shop__v1__click__pack(&c, out), *len);
    return out;
}

/* ---- Configs ------------------------------------------------------------ */

/* The fixtures' mapping (fixtures.h, JSON names) read from shop.v1. */
static ld_pipeline_conf_t *shop_conf(void)
{
    ld_pipeline_conf_t *c = fx_conf_new("json");
    assert_non_null(c);
    assert_int_equal(fx_set(c, "format", "protobuf"), 0);
    assert_int_equal(fx_set(c, "descriptor_set", LD_SHOP_DESC), 0);
    assert_int_equal(fx_set(c, "event_message", "shop.v1.Impression"), 0);
    assert_int_equal(fx_set(c, "label_message", ".shop.v1.Click"), 0);
    return c;
}

/* The mapping of the map / oneof / enum / wrapper test. */
static void set_rich(ld_pipeline_conf_t *c)
{
    assert_int_equal(fx_set(c, "crosses", ""), 0);
    assert_int_equal(
        fx_set(c, "dense_fields", "scores.ctr,scores.cvr,bid,delta,position"),
        0);
    assert_int_equal(
        fx_set(c, "hash_fields", "attrs.browser,slot,seen_on,device,country"),
        0);
    assert_int_equal(fx_set(c, "event_time_field", "time_ms"), 0);
}

static ld_decoder_t *decoder(const ld_pipeline_conf_t *c, ld_record_kind_t k)
{
    char err[512];
    ld_decoder_t *d = ld_decoder_new(c, k, err, sizeof(err));
    if (!d)
        fail_msg("decoder: %s", err);
    return d;
}

/* Decodes with d, failing the test on a dead letter. */
static void decode_ok(ld_decoder_t *d, const char *key, const void *v, size_t n,
                      ld_record_t *r)
{
    ld_reason_t why =
        ld_decoder_decode(d, key, key ? strlen(key) : 0, v, n, -1, r);
    if (why)
        fail_msg("%s: %s", ld_reason_name(why), ld_decoder_error(d));
}

/* a and b are the same record (key, time, label, dense, hashed slots). */
static void same_record(const ld_record_t *a, const ld_record_t *b)
{
    assert_string_equal(a->key, b->key);
    assert_int_equal(a->time_ms, b->time_ms);
    assert_true(a->label == b->label);
    assert_int_equal(a->no_label, b->no_label);
    assert_int_equal(a->x.ndense, b->x.ndense);
    for (uint32_t i = 0; i < a->x.ndense; i++)
        if (a->x.dense[i] != b->x.dense[i])
            fail_msg("dense[%u]: %g != %g", i, (double)a->x.dense[i],
                     (double)b->x.dense[i]);
    assert_int_equal(a->x.nnz, b->x.nnz);
    for (uint32_t i = 0; i < a->x.nnz; i++)
        assert_int_equal(a->x.idx[i], b->x.idx[i]);
}

/* Decodes JSON text j both as JSON and, packed as an Impression, with the
 * protobuf decoder; the records must be equal. Returns nnz. */
static uint32_t same_as_json(ld_decoder_t *pb, ld_decoder_t *js, const char *j)
{
    json_error_t jerr;
    json_t *doc = json_loads(j, 0, &jerr);
    if (!doc)
        fail_msg("test JSON: %s", jerr.text);
    size_t n;
    uint8_t *bytes = pack_impression(doc, &n);
    ld_record_t a, b;
    decode_ok(pb, NULL, bytes, n, &a);
    decode_ok(js, NULL, j, strlen(j), &b);
    same_record(&a, &b);
    free(bytes);
    json_decref(doc);
    return a.x.nnz;
}

/* ---- Tests -------------------------------------------------------------- */

/* Every JSON fixture event and label, re-encoded as shop.v1 messages
 * (Timestamp, nested message, enum, wrapper, repeated string), decodes to
 * exactly what the JSON decoder gives. */
static void test_fixtures_as_json(void **state)
{
    (void)state;
    ld_pipeline_conf_t *c = shop_conf(), *cj = fx_conf_new("json");
    ld_decoder_t *pe = decoder(c, LD_RECORD_EVENT);
    ld_decoder_t *pl = decoder(c, LD_RECORD_LABEL);
    ld_decoder_t *je = decoder(cj, LD_RECORD_EVENT);
    ld_decoder_t *jl = decoder(cj, LD_RECORD_LABEL);
    assert_string_equal(ld_decoder_feature_map(pe), ld_decoder_feature_map(je));
    const char *files[2] = {FX_DIR "/events-json.kcat",
                            FX_DIR "/labels-json.kcat"};
    size_t total[2] = {0, 0}, with_seg = 0, nolabel0 = 0;
    for (int k = 0; k < 2; k++) {
        fx_set_t s;
        assert_int_equal(fx_load_kcat(files[k], &s), 0);
        for (size_t i = 0; i < s.n; i++) {
            json_error_t jerr;
            json_t *doc = json_loadb(s.r[i].val, s.r[i].vlen, 0, &jerr);
            assert_non_null(doc);
            size_t n;
            uint8_t *bytes = k ? pack_click(doc, &n) : pack_impression(doc, &n);
            ld_record_t a, b;
            decode_ok(k ? pl : pe, s.r[i].key, bytes, n, &a);
            ld_reason_t why =
                ld_decoder_decode(k ? jl : je, s.r[i].key, s.r[i].klen,
                                  s.r[i].val, s.r[i].vlen, -1, &b);
            assert_int_equal(why, LD_REASON_NONE);
            same_record(&a, &b);
            with_seg +=
                !k && json_is_string(json_object_get(doc, "user_segment"));
            /* clicked false is not on the wire: it reads as false */
            nolabel0 += k && a.label == 0.0;
            total[k]++;
            free(bytes);
            json_decref(doc);
        }
        fx_free(&s);
    }
    assert_int_equal(total[0], 200);
    assert_int_equal(total[1], 120);
    assert_true(with_seg > 0 && with_seg < 200);
    assert_true(nolabel0 > 0 && nolabel0 < 120);
    ld_decoder_destroy(pe);
    ld_decoder_destroy(pl);
    ld_decoder_destroy(je);
    ld_decoder_destroy(jl);
    fx_conf_free(c);
    fx_conf_free(cj);
}

/* The committed events-pbdesc.kcat / labels-pbdesc.kcat (gen_seeds.py's
 * hand encoder, read by the benches) decode like their JSON originals. */
static void test_bench_fixtures(void **state)
{
    (void)state;
    ld_pipeline_conf_t *c = fx_conf_new("pbdesc"), *cj = fx_conf_new("json");
    assert_non_null(c);
    for (int k = 0; k < 2; k++) {
        ld_decoder_t *p = decoder(c, (ld_record_kind_t)k);
        ld_decoder_t *j = decoder(cj, (ld_record_kind_t)k);
        fx_set_t sp, sj;
        assert_int_equal(fx_load_kcat(k ? FX_DIR "/labels-pbdesc.kcat"
                                        : FX_DIR "/events-pbdesc.kcat",
                                      &sp),
                         0);
        assert_int_equal(fx_load_kcat(k ? FX_DIR "/labels-json.kcat"
                                        : FX_DIR "/events-json.kcat",
                                      &sj),
                         0);
        assert_int_equal(sp.n, k ? 120 : 200);
        assert_int_equal(sp.n, sj.n);
        for (size_t i = 0; i < sp.n; i++) {
            ld_record_t a, b;
            ld_reason_t why =
                ld_decoder_decode(p, sp.r[i].key, sp.r[i].klen, sp.r[i].val,
                                  sp.r[i].vlen, -1, &a);
            if (why)
                fail_msg("%zu: %s", i, ld_decoder_error(p));
            assert_int_equal(ld_decoder_decode(j, sj.r[i].key, sj.r[i].klen,
                                               sj.r[i].val, sj.r[i].vlen, -1,
                                               &b),
                             LD_REASON_NONE);
            same_record(&a, &b);
        }
        fx_free(&sp);
        fx_free(&sj);
        ld_decoder_destroy(p);
        ld_decoder_destroy(j);
    }
    fx_conf_free(c);
    fx_conf_free(cj);
}

/* map<string, double> and map<string, string> entries as m.<key>, oneof,
 * repeated enum (packed), enum by name, wrapper, sint64. */
static void test_maps_oneof_enums(void **state)
{
    (void)state;
    ld_pipeline_conf_t *c = shop_conf(), *cj = fx_conf_new("json");
    set_rich(c);
    set_rich(cj);
    ld_decoder_t *pe = decoder(c, LD_RECORD_EVENT);
    ld_decoder_t *je = decoder(cj, LD_RECORD_EVENT);
    /* everything present */
    assert_int_equal(
        same_as_json(pe, je,
                     "{\"event_id\": \"e1\", \"time_ms\": 1700000000123,"
                     " \"scores\": {\"ctr\": 0.5, \"other\": 9.0, \"cvr\": "
                     "0.25}, \"attrs\": {\"os\": \"linux\", \"browser\": "
                     "\"firefox\"}, \"slot\": \"top\", \"seen_on\": "
                     "[\"mobile\", \"tv\", \"mobile\"], \"device\": "
                     "\"tablet\", \"bid\": 1.5, \"delta\": -3, \"country\": "
                     "\"DE\"}"),
        1 + 1 + 3 + 1 + 1);
    /* the other oneof member; map entries absent; device absent reads as
     * its zero value, which the JSON document then has to name */
    assert_int_equal(
        same_as_json(pe, je,
                     "{\"event_id\": \"e2\", \"time_ms\": 5, \"position\": 7,"
                     " \"device\": \"DEVICE_UNSPECIFIED\"}"),
        1);
    ld_decoder_destroy(pe);
    ld_decoder_destroy(je);
    fx_conf_free(c);
    fx_conf_free(cj);
}

/* Hand-encoded wire bytes for what protoc-c will not write. */
typedef struct wbuf {
    uint8_t b[512];
    size_t n;
} wbuf_t;

static void put_varint(wbuf_t *w, uint64_t v)
{
    while (v >= 0x80) {
        w->b[w->n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    w->b[w->n++] = (uint8_t)v;
}

static void put_tag(wbuf_t *w, uint32_t num, uint32_t wt)
{
    put_varint(w, (uint64_t)num << 3 | wt);
}

static void put_str(wbuf_t *w, uint32_t num, const char *s)
{
    put_tag(w, num, 2);
    put_varint(w, strlen(s));
    memcpy(w->b + w->n, s, strlen(s));
    w->n += strlen(s);
}

/* Oneof: the last member on the wire wins, whatever the order; repeated
 * occurrences of a message field merge; unknown fields of every wire type
 * (groups included) are skipped. */
static void test_wire_rules(void **state)
{
    (void)state;
    ld_pipeline_conf_t *c = shop_conf(), *cj = fx_conf_new("json");
    set_rich(c);
    set_rich(cj);
    ld_decoder_t *pe = decoder(c, LD_RECORD_EVENT);
    ld_decoder_t *je = decoder(cj, LD_RECORD_EVENT);
    wbuf_t w = {0};
    put_str(&w, 1, "e3");
    put_tag(&w, 33, 0);
    put_varint(&w, 42);
    put_tag(&w, 32, 0); /* position = 7 ... */
    put_varint(&w, 7);
    put_str(&w, 31, "side"); /* ... then slot: position is cleared */
    /* unknown fields: varint, fixed64, LEN, group, fixed32 */
    put_tag(&w, 99, 0);
    put_varint(&w, 1ull << 62);
    put_tag(&w, 100, 1);
    memset(w.b + w.n, 0xff, 8);
    w.n += 8;
    put_str(&w, 101, "junk");
    put_tag(&w, 102, 3);
    put_tag(&w, 1, 0); /* inside the group */
    put_varint(&w, 5);
    put_tag(&w, 102, 4);
    put_tag(&w, 103, 5);
    memset(w.b + w.n, 0, 4);
    w.n += 4;
    /* attrs entries in two occurrences, the same key twice: last wins */
    const char *e1 = "\x0a\x07"
                     "browser"
                     "\x12\x02"
                     "ie";
    const char *e2 = "\x0a\x07"
                     "browser"
                     "\x12\x05"
                     "opera";
    put_tag(&w, 30, 2);
    put_varint(&w, strlen(e1));
    memcpy(w.b + w.n, e1, strlen(e1));
    w.n += strlen(e1);
    put_tag(&w, 30, 2);
    put_varint(&w, strlen(e2));
    memcpy(w.b + w.n, e2, strlen(e2));
    w.n += strlen(e2);
    /* seen_on unpacked, then packed: they concatenate */
    put_tag(&w, 34, 0);
    put_varint(&w, 4);
    put_tag(&w, 34, 2);
    put_varint(&w, 2);
    put_varint(&w, 1);
    put_varint(&w, 2);
    ld_record_t a, b;
    decode_ok(pe, NULL, w.b, w.n, &a);
    const char *j = "{\"event_id\": \"e3\", \"time_ms\": 42, \"slot\": "
                    "\"side\", \"attrs\": {\"browser\": \"opera\"}, "
                    "\"seen_on\": [\"tv\", \"desktop\", \"mobile\"], "
                    "\"device\": \"DEVICE_UNSPECIFIED\"}";
    decode_ok(je, NULL, j, strlen(j), &b);
    same_record(&a, &b);
    assert_int_equal(a.x.nnz, 1 + 1 + 3 + 1);
    ld_decoder_destroy(pe);
    ld_decoder_destroy(je);
    fx_conf_free(c);
    fx_conf_free(cj);
}

/* Oneof when only one member is mapped: the unmapped member that comes
 * later on the wire still wins and clears the mapped one (the plan has
 * entries for unmapped fields, pbdesc.c skip_entry). */
static void test_oneof_unmapped_member(void **state)
{
    (void)state;
    ld_pipeline_conf_t *c = shop_conf();
    assert_int_equal(fx_set(c, "crosses", ""), 0);
    assert_int_equal(fx_set(c, "dense_fields", ""), 0);
    assert_int_equal(fx_set(c, "hash_fields", "slot"), 0);
    assert_int_equal(fx_set(c, "event_time_field", "time_ms"), 0);
    ld_decoder_t *d = decoder(c, LD_RECORD_EVENT);
    for (int later = 0; later < 2; later++) {
        wbuf_t w = {0};
        put_str(&w, 1, "e4");
        put_tag(&w, 33, 0);
        put_varint(&w, 42);
        if (later) { /* slot, then position */
            put_str(&w, 31, "top");
            put_tag(&w, 32, 0);
            put_varint(&w, 7);
        } else { /* position, then slot */
            put_tag(&w, 32, 0);
            put_varint(&w, 7);
            put_str(&w, 31, "top");
        }
        ld_record_t r;
        decode_ok(d, NULL, w.b, w.n, &r);
        assert_int_equal(r.x.nnz, later ? 0 : 1);
    }
    ld_decoder_destroy(d);
    fx_conf_free(c);
}

/* Presence: a proto3 optional field absent is absent (numeric label:
 * missing_label), present with 0 is 0; an implicit-presence field absent
 * reads as 0. */
static void test_presence(void **state)
{
    (void)state;
    ld_pipeline_conf_t *c = shop_conf();
    assert_int_equal(fx_set(c, "label_message", "shop.v1.Opt"), 0);
    assert_int_equal(fx_set(c, "key_field", "id"), 0);
    assert_int_equal(fx_set(c, "time_source", "kafka_timestamp"), 0);
    assert_int_equal(fx_set(c, "label_field", "n"), 0);
    ld_decoder_t *dn = decoder(c, LD_RECORD_LABEL);
    assert_int_equal(fx_set(c, "label_field", "m"), 0);
    ld_decoder_t *dm = decoder(c, LD_RECORD_LABEL);
    wbuf_t w = {0};
    put_str(&w, 1, "x");
    ld_record_t r;
    assert_int_equal(ld_decoder_decode(dn, NULL, 0, w.b, w.n, 9, &r),
                     LD_REASON_MISSING_LABEL);
    assert_int_equal(ld_decoder_decode(dm, NULL, 0, w.b, w.n, 9, &r),
                     LD_REASON_NONE);
    assert_true(r.label == 0.0);
    assert_int_equal(r.time_ms, 9);
    put_tag(&w, 2, 0);
    put_varint(&w, 0);
    put_tag(&w, 3, 0);
    put_varint(&w, 3);
    assert_int_equal(ld_decoder_decode(dn, NULL, 0, w.b, w.n, 9, &r),
                     LD_REASON_NONE);
    assert_true(r.label == 0.0);
    assert_int_equal(ld_decoder_decode(dm, NULL, 0, w.b, w.n, 9, &r),
                     LD_REASON_NONE);
    assert_true(r.label == 3.0);
    ld_decoder_destroy(dn);
    ld_decoder_destroy(dm);
    fx_conf_free(c);
}

/* Config errors, each naming what is wrong. */
static void expect_config_error(ld_pipeline_conf_t *c, ld_record_kind_t k,
                                const char *want)
{
    char err[512] = "";
    ld_decoder_t *d = ld_decoder_new(c, k, err, sizeof(err));
    if (d)
        fail_msg("decoder built; expected error '%s'", want);
    if (!strstr(err, want))
        fail_msg("error '%s' lacks '%s'", err, want);
}

static void test_config_errors(void **state)
{
    (void)state;
    ld_pipeline_conf_t *c = shop_conf();
    assert_int_equal(fx_set(c, "descriptor_set", LD_SHOP_NOIMPORTS_DESC), 0);
    expect_config_error(c, LD_RECORD_EVENT,
                        "shop.proto imports google/protobuf/timestamp.proto, "
                        "which is not in the descriptor set");
    fx_conf_free(c);

    c = shop_conf();
    assert_int_equal(fx_set(c, "event_message", "shop.v1.Nope"), 0);
    expect_config_error(c, LD_RECORD_EVENT,
                        "pipeline.event_message: no message shop.v1.Nope in");
    assert_int_equal(fx_set(c, "event_message", ""), 0);
    expect_config_error(c, LD_RECORD_EVENT,
                        "pipeline.event_message: required with "
                        "pipeline.descriptor_set");
    fx_conf_free(c);

    c = shop_conf();
    assert_int_equal(fx_set(c, "dense_fields", "f0,m.f20"), 0);
    expect_config_error(c, LD_RECORD_EVENT,
                        "message shop.v1.Impression: no field m.f20 "
                        "(mapped in the pipeline config)");
    assert_int_equal(fx_set(c, "dense_fields", "scores"), 0);
    expect_config_error(c, LD_RECORD_EVENT,
                        "field scores is a map: map its entries as "
                        "scores.<key>");
    assert_int_equal(fx_set(c, "dense_fields", "m"), 0);
    expect_config_error(c, LD_RECORD_EVENT,
                        "field m is a message (shop.v1.Impression.Inner): map "
                        "its fields as m.<name>");
    assert_int_equal(fx_set(c, "dense_fields", "f0.x"), 0);
    expect_config_error(c, LD_RECORD_EVENT,
                        "field f0 is a float and has no "
                        "fields");
    fx_conf_free(c);

    c = shop_conf();
    assert_int_equal(fx_set(c, "descriptor_set", LD_SHOP_DESC ".missing"), 0);
    expect_config_error(c, LD_RECORD_EVENT, "No such file or directory");
    /* a file that is not a descriptor set */
    assert_int_equal(
        fx_set(c, "descriptor_set", LD_SOURCE_DIR "/schemas/event.avsc"), 0);
    expect_config_error(c, LD_RECORD_EVENT, "not a FileDescriptorSet");
    fx_conf_free(c);
}

/* Wire data that does not match the descriptor is a dead letter with the
 * field and the reason. */
static void test_bad_wire(void **state)
{
    (void)state;
    ld_pipeline_conf_t *c = shop_conf();
    ld_decoder_t *d = decoder(c, LD_RECORD_EVENT);
    ld_record_t r;
    wbuf_t w = {0};
    put_str(&w, 1, "e");
    put_tag(&w, 3, 0); /* f0 is a float: wire type 5 */
    put_varint(&w, 1);
    assert_int_equal(ld_decoder_decode(d, NULL, 0, w.b, w.n, -1, &r),
                     LD_REASON_DECODE);
    assert_string_equal(ld_decoder_error(d),
                        "field f0: wire type 0, the descriptor says float");

    /* a truncated good record: every cut is a decode error */
    json_t *doc = json_loads(
        "{\"event_id\": \"e\", \"event_time\": 1700000000000, \"f3\": 1.5,"
        " \"m\": {\"f19\": 2.0}, \"country\": \"DE\", \"tags\": [\"a\"]}",
        0, NULL);
    size_t n;
    uint8_t *bytes = pack_impression(doc, &n);
    assert_int_equal(ld_decoder_decode(d, NULL, 0, bytes, n, -1, &r),
                     LD_REASON_NONE);
    int cuts = 0;
    for (size_t k = 1; k < n; k++) {
        ld_reason_t why = ld_decoder_decode(d, NULL, 0, bytes, k, -1, &r);
        /* a cut between fields is a shorter good message */
        if (why == LD_REASON_NONE)
            continue;
        cuts++;
        assert_true(why == LD_REASON_DECODE || why == LD_REASON_MISSING_TIME);
        assert_true(ld_decoder_error(d)[0] != '\0');
    }
    assert_true(cuts > (int)n / 2);
    free(bytes);
    json_decref(doc);

    /* Timestamp out of its documented range */
    w.n = 0;
    put_str(&w, 1, "e");
    put_tag(&w, 2, 2);
    put_varint(&w, 10);
    put_tag(&w, 1, 0);
    put_varint(&w, 1ull << 60);
    assert_int_equal(ld_decoder_decode(d, NULL, 0, w.b, w.n, -1, &r),
                     LD_REASON_BAD_TYPE);
    assert_non_null(strstr(ld_decoder_error(d), "field event_time: Timestamp"));
    /* a length past the end */
    w.n = 0;
    put_tag(&w, 1, 2);
    put_varint(&w, 100);
    w.b[w.n++] = 'x';
    assert_int_equal(ld_decoder_decode(d, NULL, 0, w.b, w.n, -1, &r),
                     LD_REASON_DECODE);
    assert_string_equal(ld_decoder_error(d),
                        "field event_id: length past the end");
    /* an unmatched end-group */
    w.n = 0;
    put_tag(&w, 77, 4);
    assert_int_equal(ld_decoder_decode(d, NULL, 0, w.b, w.n, -1, &r),
                     LD_REASON_DECODE);
    ld_decoder_destroy(d);
    fx_conf_free(c);
}

/* Confluent framing: magic byte, schema id, message-index path. The
 * Impression is message [0] of shop.proto, Click is [1]. */
static void test_confluent(void **state)
{
    (void)state;
    ld_pipeline_conf_t *c = shop_conf();
    assert_int_equal(fx_set(c, "protobuf_wire", "confluent"), 0);
    ld_decoder_t *de = decoder(c, LD_RECORD_EVENT);
    ld_decoder_t *dl = decoder(c, LD_RECORD_LABEL);
    json_t *doc = json_loads("{\"event_id\": \"e\", \"label_time\": 77, "
                             "\"clicked\": true}",
                             0, NULL);
    size_t n;
    uint8_t *click = pack_click(doc, &n);
    json_decref(doc);
    uint8_t buf[256];
    ld_record_t r;
    /* [1]: count 1 (zig-zag 2), index 1 (zig-zag 2) */
    memcpy(buf, "\x00\x00\x00\x01\x07\x02\x02", 7);
    memcpy(buf + 7, click, n);
    assert_int_equal(ld_decoder_decode(dl, NULL, 0, buf, n + 7, -1, &r),
                     LD_REASON_NONE);
    assert_string_equal(r.key, "e");
    assert_int_equal(r.time_ms, 77);
    assert_true(r.label == 1.0);
    /* the same bytes are not an Impression: [1] names Click */
    assert_int_equal(ld_decoder_decode(de, NULL, 0, buf, n + 7, -1, &r),
                     LD_REASON_UNKNOWN_SCHEMA);
    assert_string_equal(ld_decoder_error(de),
                        "schema id 263: message-index path of 1 entries [1] "
                        "does not name shop.v1.Impression");
    /* [0] as the single byte 0 */
    buf[5] = 0;
    memcpy(buf + 6, click, n);
    assert_int_equal(ld_decoder_decode(dl, NULL, 0, buf, n + 6, -1, &r),
                     LD_REASON_UNKNOWN_SCHEMA);
    buf[0] = 1;
    assert_int_equal(ld_decoder_decode(dl, NULL, 0, buf, n + 6, -1, &r),
                     LD_REASON_BAD_MAGIC);
    /* a path longer than the message */
    memcpy(buf, "\x00\x00\x00\x00\x01\x06", 6);
    assert_int_equal(ld_decoder_decode(dl, NULL, 0, buf, 6, -1, &r),
                     LD_REASON_DECODE);
    free(click);
    ld_decoder_destroy(de);
    ld_decoder_destroy(dl);
    fx_conf_free(c);

    /* JSON: magic, id, then the text */
    c = fx_conf_new("json");
    assert_int_equal(fx_set(c, "json_wire", "confluent"), 0);
    dl = decoder(c, LD_RECORD_LABEL);
    const char *j = "\x00\x00\x00\x00\x02{\"event_id\": \"j\", \"label_time\": "
                    "5, \"clicked\": true}";
    size_t jn = 5 + strlen(j + 5);
    assert_int_equal(ld_decoder_decode(dl, NULL, 0, j, jn, -1, &r),
                     LD_REASON_NONE);
    assert_string_equal(r.key, "j");
    assert_int_equal(ld_decoder_decode(dl, NULL, 0, j + 5, jn - 5, -1, &r),
                     LD_REASON_BAD_MAGIC);
    ld_decoder_destroy(dl);
    fx_conf_free(c);
}

/* A compatible new writer version (extra.proto's Impression2: a new field
 * 40, others kept by number) decodes with the old reader message, and the
 * new field is skipped like any unknown one. */
static void test_new_writer_version(void **state)
{
    (void)state;
    ld_pipeline_conf_t *c = shop_conf();
    set_rich(c);
    assert_int_equal(fx_set(c, "dense_fields", ""), 0);
    assert_int_equal(fx_set(c, "hash_fields", "country"), 0);
    ld_decoder_t *d1 = decoder(c, LD_RECORD_EVENT);
    assert_int_equal(fx_set(c, "event_message", "shop.v1.Impression2"), 0);
    assert_int_equal(fx_set(c, "hash_fields", "country,hour"), 0);
    ld_decoder_t *d2 = decoder(c, LD_RECORD_EVENT);
    wbuf_t w = {0};
    put_str(&w, 1, "e");
    put_str(&w, 23, "FR");
    put_tag(&w, 33, 0);
    put_varint(&w, 1000);
    put_tag(&w, 40, 0);
    put_varint(&w, 13);
    ld_record_t r;
    decode_ok(d1, NULL, w.b, w.n, &r);
    assert_int_equal(r.x.nnz, 1);
    uint32_t country = r.x.idx[0];
    decode_ok(d2, NULL, w.b, w.n, &r);
    assert_int_equal(r.x.nnz, 2);
    assert_int_equal(r.x.idx[0], country);
    ld_decoder_destroy(d1);
    ld_decoder_destroy(d2);
    fx_conf_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixtures_as_json),
        cmocka_unit_test(test_bench_fixtures),
        cmocka_unit_test(test_maps_oneof_enums),
        cmocka_unit_test(test_oneof_unmapped_member),
        cmocka_unit_test(test_wire_rules),
        cmocka_unit_test(test_presence),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_bad_wire),
        cmocka_unit_test(test_confluent),
        cmocka_unit_test(test_new_writer_version),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
