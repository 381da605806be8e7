/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of common/bytes.h and common/pbwire.h: exact bytes written,
 * round trips, and the sticky error on every kind of short or bad input. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/bytes.h"
#include "common/pbwire.h"
#include "schemas/learnd.pb-c.h"

static void test_writer_bytes(void **state)
{
    (void)state;
    ld_wbuf_t w = {0};
    ld_wbuf_u8(&w, 0xab);
    ld_wbuf_u16(&w, 0x1234);
    ld_wbuf_u32(&w, 0xdeadbeef);
    ld_wbuf_u64(&w, 0x0102030405060708ULL);
    ld_wbuf_i64(&w, -2);
    ld_wbuf_f32(&w, 1.0f);
    ld_wbuf_f64(&w, -0.0);
    ld_wbuf_str(&w, "hi");
    static const uint8_t want[] = {
        0xab,                                           /* u8 */
        0x34, 0x12,                                     /* u16 */
        0xef, 0xbe, 0xad, 0xde,                         /* u32 */
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, /* u64 */
        0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* i64 -2 */
        0x00, 0x00, 0x80, 0x3f,                         /* f32 1.0 */
        0,    0,    0,    0,    0,    0,    0,    0x80, /* f64 -0.0 */
        0x02, 0x00, 0x00, 0x00, 'h',  'i'};             /* str */
    assert_int_equal(w.err, LD_OK);
    assert_int_equal(w.len, sizeof(want));
    assert_memory_equal(w.p, want, sizeof(want));
    ld_wbuf_free(&w);
    assert_null(w.p);
    assert_int_equal(w.len, 0);
    ld_wbuf_free(NULL);
}

static void test_writer_grows(void **state)
{
    (void)state;
    ld_wbuf_t w = {0};
    /* Past the first 256-byte allocation several times over. */
    for (uint32_t i = 0; i < 1000; i++)
        ld_wbuf_u32(&w, i * 2654435761u);
    assert_int_equal(w.err, LD_OK);
    assert_int_equal(w.len, 4000);
    assert_true(w.cap >= 4000);
    ld_rbuf_t r = ld_rbuf_make(w.p, w.len);
    for (uint32_t i = 0; i < 1000; i++)
        assert_int_equal(ld_rbuf_u32(&r), i * 2654435761u);
    assert_int_equal(r.err, LD_OK);
    assert_int_equal(ld_rbuf_left(&r), 0);
    ld_wbuf_free(&w);
}

static void test_writer_sticky(void **state)
{
    (void)state;
    ld_wbuf_t w = {0};
    ld_wbuf_u32(&w, 7);
    w.err = LD_ERR_NOMEM; /* as after a failed realloc */
    ld_wbuf_u64(&w, 9);
    ld_wbuf_str(&w, "lost");
    assert_int_equal(w.len, 4);
    assert_int_equal(w.err, LD_ERR_NOMEM);
    ld_wbuf_free(&w);
    /* A size that cannot be represented fails instead of wrapping. */
    ld_wbuf_t big = {0};
    ld_wbuf_u8(&big, 1);
    uint8_t one = 0;
    ld_wbuf_bytes(&big, &one, SIZE_MAX);
    assert_int_equal(big.err, LD_ERR_NOMEM);
    assert_int_equal(big.len, 1);
    ld_wbuf_free(&big);
}

static void test_round_trip(void **state)
{
    (void)state;
    ld_wbuf_t w = {0};
    float nan_payload;
    uint32_t nb = 0x7fc01234u;
    memcpy(&nan_payload, &nb, 4);
    ld_wbuf_f32(&w, nan_payload);
    ld_wbuf_f64(&w, 0.1);
    ld_wbuf_i64(&w, INT64_MIN);
    ld_wbuf_u16(&w, 65535);
    ld_wbuf_str(&w, "");
    ld_wbuf_str(&w, "model-a");
    ld_rbuf_t r = ld_rbuf_make(w.p, w.len);
    float f = ld_rbuf_f32(&r);
    uint32_t fb;
    memcpy(&fb, &f, 4);
    assert_int_equal(fb, 0x7fc01234u);
    double d = ld_rbuf_f64(&r);
    assert_memory_equal(&d, &(double){0.1}, sizeof(d));
    assert_true(ld_rbuf_i64(&r) == INT64_MIN);
    assert_int_equal(ld_rbuf_u16(&r), 65535);
    char s[8];
    ld_rbuf_str(&r, s, sizeof(s));
    assert_string_equal(s, "");
    ld_rbuf_str(&r, s, sizeof(s)); /* 7 bytes + NUL: exactly fits */
    assert_string_equal(s, "model-a");
    assert_int_equal(r.err, LD_OK);
    assert_int_equal(r.off, w.len);
    ld_wbuf_free(&w);
}

static void test_reader_sticky(void **state)
{
    (void)state;
    static const uint8_t b[] = {1, 2, 3};
    ld_rbuf_t r = ld_rbuf_make(b, sizeof(b));
    assert_int_equal(ld_rbuf_u16(&r), 0x0201);
    assert_int_equal(ld_rbuf_left(&r), 1);
    /* 4 bytes wanted, 1 left: zero, and corrupt from now on. */
    assert_int_equal(ld_rbuf_u32(&r), 0);
    assert_int_equal(r.err, LD_ERR_CORRUPT);
    assert_int_equal(r.off, 2);
    /* The byte that is there is not read any more either. */
    assert_int_equal(ld_rbuf_u8(&r), 0);
    assert_int_equal(ld_rbuf_left(&r), 0);
    assert_null(ld_rbuf_take(&r, 0));
    uint8_t dst[3] = {9, 9, 9};
    ld_rbuf_bytes(&r, dst, sizeof(dst));
    assert_memory_equal(dst, ((uint8_t[]){0, 0, 0}), 3);
    assert_true(ld_rbuf_f64(&r) == 0.0);
}

static void test_reader_take(void **state)
{
    (void)state;
    static const uint8_t b[] = {5, 6, 7, 8};
    ld_rbuf_t r = ld_rbuf_make(b, sizeof(b));
    const uint8_t *p = ld_rbuf_take(&r, 3);
    assert_ptr_equal(p, b);
    assert_int_equal(ld_rbuf_left(&r), 1);
    assert_null(ld_rbuf_take(&r, 2));
    assert_int_equal(r.err, LD_ERR_CORRUPT);
}

static void test_reader_str_bounds(void **state)
{
    (void)state;
    ld_wbuf_t w = {0};
    ld_wbuf_str(&w, "eight ch");
    char s[8] = "xxxxxxx";
    ld_rbuf_t r = ld_rbuf_make(w.p, w.len);
    ld_rbuf_str(&r, s, sizeof(s)); /* 8 bytes do not fit 8 with the NUL */
    assert_int_equal(r.err, LD_ERR_CORRUPT);
    assert_string_equal(s, "");
    /* A length that claims more than the buffer holds. */
    static const uint8_t lie[] = {200, 0, 0, 0, 'a', 'b'};
    char big[256] = "zz";
    r = ld_rbuf_make(lie, sizeof(lie));
    ld_rbuf_str(&r, big, sizeof(big));
    assert_int_equal(r.err, LD_ERR_CORRUPT);
    assert_string_equal(big, "");
    ld_wbuf_free(&w);
}

static void test_reader_count(void **state)
{
    (void)state;
    ld_wbuf_t w = {0};
    ld_wbuf_u64(&w, 3);
    for (int i = 0; i < 3; i++)
        ld_wbuf_u32(&w, (uint32_t)i);
    ld_rbuf_t r = ld_rbuf_make(w.p, w.len);
    assert_int_equal(ld_rbuf_count(&r, 4), 3);
    assert_int_equal(r.err, LD_OK);
    /* The same 3 as 8-byte items would need 24 bytes; 12 remain. */
    r = ld_rbuf_make(w.p, w.len);
    assert_int_equal(ld_rbuf_count(&r, 8), 0);
    assert_int_equal(r.err, LD_ERR_CORRUPT);
    /* A huge count cannot pass by overflowing count * unit. */
    ld_wbuf_t h = {0};
    ld_wbuf_u64(&h, UINT64_MAX / 2 + 1);
    ld_wbuf_u64(&h, 0);
    r = ld_rbuf_make(h.p, h.len);
    assert_int_equal(ld_rbuf_count(&r, 2), 0);
    assert_int_equal(r.err, LD_ERR_CORRUPT);
    ld_wbuf_free(&w);
    ld_wbuf_free(&h);
}

/* ---- pbwire -------------------------------------------------------------- */

static void test_varint(void **state)
{
    (void)state;
    static const struct {
        uint64_t v;
        size_t n;
        uint8_t b[10];
    } cases[] = {
        {0, 1, {0x00}},
        {1, 1, {0x01}},
        {127, 1, {0x7f}},
        {128, 2, {0x80, 0x01}},
        {300, 2, {0xac, 0x02}},
        {UINT64_MAX,
         10,
         {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t buf[10];
        assert_int_equal(ld_pb_varint_len(cases[i].v), cases[i].n);
        uint8_t *e = ld_pb_put_varint(buf, cases[i].v);
        assert_int_equal(e - buf, cases[i].n);
        assert_memory_equal(buf, cases[i].b, cases[i].n);
        ld_rbuf_t r = ld_rbuf_make(buf, cases[i].n);
        assert_true(ld_pb_read_varint(&r) == cases[i].v);
        assert_int_equal(r.err, LD_OK);
        assert_int_equal(ld_rbuf_left(&r), 0);
    }
    /* Truncated: the continuation bit promises a byte that is not there. */
    static const uint8_t cut[] = {0x80, 0x80};
    ld_rbuf_t r = ld_rbuf_make(cut, sizeof(cut));
    assert_true(ld_pb_read_varint(&r) == 0);
    assert_int_equal(r.err, LD_ERR_CORRUPT);
    /* Eleven bytes: longer than any 64-bit value. */
    static const uint8_t longer[11] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
                                       0x80, 0x80, 0x80, 0x80, 0x01};
    r = ld_rbuf_make(longer, sizeof(longer));
    assert_true(ld_pb_read_varint(&r) == 0);
    assert_int_equal(r.err, LD_ERR_CORRUPT);
}

/* The field writers against protobuf-c's own encoder: the same message,
 * byte for byte (fields in number order, proto3 defaults left out). */
static void test_fields_match_protobuf_c(void **state)
{
    (void)state;
    uint8_t sha[32];
    for (int i = 0; i < 32; i++)
        sha[i] = (uint8_t)(i * 7);
    Learnd__V1__CheckpointManifest mf;
    learnd__v1__checkpoint_manifest__init(&mf);
    mf.model = "ctr";
    mf.version = 300;
    mf.total_size = 0; /* default: not written */
    mf.sha256.data = sha;
    mf.sha256.len = 32;
    mf.chunk_count = 2;
    mf.first_chunk_offset = -1; /* int64: ten bytes */
    mf.partition = 0;
    mf.trigger_id = "";
    uint8_t want[128];
    size_t wn = learnd__v1__checkpoint_manifest__get_packed_size(&mf);
    assert_true(wn <= sizeof(want));
    learnd__v1__checkpoint_manifest__pack(&mf, want);

    size_t n = ld_pb_len_field_len(1, 3) + ld_pb_varint_field_len(2, 300) +
               ld_pb_varint_field_len(3, 0) + ld_pb_len_field_len(4, 32) +
               ld_pb_varint_field_len(5, 2) +
               ld_pb_varint_field_len(6, (uint64_t)(int64_t)-1) +
               ld_pb_len_field_len(7, 0);
    assert_int_equal(n, wn);
    uint8_t got[128], *p = got;
    p = ld_pb_put_bytes_field(p, 1, "ctr", 3);
    p = ld_pb_put_varint_field(p, 2, 300);
    p = ld_pb_put_varint_field(p, 3, 0);
    p = ld_pb_put_bytes_field(p, 4, sha, 32);
    p = ld_pb_put_varint_field(p, 5, 2);
    p = ld_pb_put_varint_field(p, 6, (uint64_t)(int64_t)-1);
    p = ld_pb_put_bytes_field(p, 7, "", 0);
    assert_int_equal((size_t)(p - got), wn);
    assert_memory_equal(got, want, wn);

    /* And the reader finds each length-delimited field in it. */
    size_t len = 0;
    const uint8_t *f = ld_pb_find_len(want, wn, 4, &len);
    assert_non_null(f);
    assert_int_equal(len, 32);
    assert_memory_equal(f, sha, 32);
    f = ld_pb_find_len(want, wn, 1, &len);
    assert_non_null(f);
    assert_int_equal(len, 3);
    assert_memory_equal(f, "ctr", 3);
    /* Field 2 is a varint, not length-delimited; 12 is absent. */
    assert_null(ld_pb_find_len(want, wn, 2, &len));
    assert_null(ld_pb_find_len(want, wn, 12, &len));
}

static void test_float_fields(void **state)
{
    (void)state;
    uint8_t buf[64], *p = buf;
    assert_int_equal(ld_pb_float_field_len(5, 0.0f), 0);
    assert_int_equal(ld_pb_float_field_len(5, -0.0f), 5);
    p = ld_pb_put_float_field(p, 5, 0.0f);
    assert_ptr_equal(p, buf);
    p = ld_pb_put_float_field(p, 5, -0.0f);
    assert_memory_equal(buf, ((uint8_t[]){0x2d, 0, 0, 0, 0x80}), 5);
    const float v[2] = {1.0f, -2.0f};
    p = ld_pb_put_floats_field(buf, 11, v, 2);
    assert_int_equal(p - buf, ld_pb_len_field_len(11, 8));
    assert_memory_equal(
        buf, ((uint8_t[]){0x5a, 8, 0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0}), 10);
    assert_ptr_equal(ld_pb_put_floats_field(buf, 11, v, 0), buf);
}

static void test_find_len_malformed(void **state)
{
    (void)state;
    size_t len = 99;
    /* A length past the end of the message. */
    static const uint8_t past[] = {0x0a, 0x05, 'a', 'b'};
    assert_null(ld_pb_find_len(past, sizeof(past), 1, &len));
    /* The field wanted sits behind a fixed64 cut short. */
    static const uint8_t cut64[] = {0x09, 1, 2, 3, 0x12, 0x01, 'x'};
    assert_null(ld_pb_find_len(cut64, sizeof(cut64), 2, &len));
    /* Behind a group (wire type 3), which learnd never writes. */
    static const uint8_t group[] = {0x0b, 0x12, 0x01, 'x'};
    assert_null(ld_pb_find_len(group, sizeof(group), 2, &len));
    /* Field number 0 is invalid. */
    static const uint8_t zero[] = {0x02, 0x00, 0x12, 0x01, 'x'};
    assert_null(ld_pb_find_len(zero, sizeof(zero), 2, &len));
    assert_int_equal(len, 99);
    /* Skipped correctly past varint, fixed32 and fixed64 fields. */
    static const uint8_t ok[] = {0x08, 0xac, 0x02, 0x15, 1,    2,   3,
                                 4,    0x19, 1,    2,    3,    4,   5,
                                 6,    7,    8,    0x22, 0x02, 'o', 'k'};
    const uint8_t *f = ld_pb_find_len(ok, sizeof(ok), 4, &len);
    assert_ptr_equal(f, ok + 19);
    assert_int_equal(len, 2);
    /* Empty message. */
    assert_null(ld_pb_find_len(ok, 0, 4, &len));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_writer_bytes),
        cmocka_unit_test(test_writer_grows),
        cmocka_unit_test(test_writer_sticky),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_reader_sticky),
        cmocka_unit_test(test_reader_take),
        cmocka_unit_test(test_reader_str_bounds),
        cmocka_unit_test(test_reader_count),
        cmocka_unit_test(test_varint),
        cmocka_unit_test(test_fields_match_protobuf_c),
        cmocka_unit_test(test_float_fields),
        cmocka_unit_test(test_find_len_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
