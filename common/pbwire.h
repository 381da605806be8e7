/* SPDX-License-Identifier: Apache-2.0 */
/* Protobuf wire format by hand, for the places where protobuf-c's generated
 * code costs too much or cannot be used: a writer into a buffer sized
 * beforehand (the audit record, once per trained example), a bounded cursor
 * reader (the user-schema decoder and the descriptor-set reader of
 * pipeline/, once per field) and, on it, a sticky-error reader on ld_rbuf_t
 * that finds one field without decoding the message (the manifest reads
 * params_sha256 out of a checkpoint of many MiB). Thread: any. */
#ifndef LD_COMMON_PBWIRE_H
#define LD_COMMON_PBWIRE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/bytes.h"

/* Wire types (the low 3 bits of a field key). */
enum {
    LD_PB_WT_VARINT = 0,
    LD_PB_WT_FIXED64 = 1,
    LD_PB_WT_LEN = 2,
    LD_PB_WT_SGROUP = 3, /* deprecated groups: start and end */
    LD_PB_WT_EGROUP = 4,
    LD_PB_WT_FIXED32 = 5
};

/* Deepest nesting of messages and groups a reader follows (ld_pb_skip()
 * for groups, the pipeline's decoders for messages). */
#define LD_PB_MAX_DEPTH 64

/* ---- Writer: size first, then write into a buffer of that size ---------- */

/* Bytes of v as a varint (1..10). */
static inline size_t ld_pb_varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* Writes v as a varint at p (ld_pb_varint_len(v) bytes must be there);
 * returns the byte after it. */
static inline uint8_t *ld_pb_put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

static inline uint8_t *ld_pb_put_key(uint8_t *p, unsigned field, int wt)
{
    return ld_pb_put_varint(p, (uint64_t)field << 3 | (unsigned)wt);
}

static inline uint32_t ld_pb_f32_bits(float f)
{
    uint32_t b;
    memcpy(&b, &f, 4);
    return b;
}

static inline uint8_t *ld_pb_put_fixed32(uint8_t *p, uint32_t b)
{
    for (int i = 0; i < 4; i++)
        *p++ = (uint8_t)(b >> (8 * i));
    return p;
}

/* proto3: a scalar equal to its default is not written, so each *_field
 * writer writes nothing for 0 and the matching *_len says 0. A float is
 * default only when all its bits are zero: -0.0 is written, as current
 * protobuf releases do (protobuf-c drops it). int32/int64 are passed
 * sign-extended to 64 bits. */
static inline size_t ld_pb_varint_field_len(unsigned field, uint64_t v)
{
    return v ? ld_pb_varint_len((uint64_t)field << 3) + ld_pb_varint_len(v) : 0;
}

static inline size_t ld_pb_float_field_len(unsigned field, float v)
{
    return ld_pb_f32_bits(v) ? ld_pb_varint_len((uint64_t)field << 3) + 4 : 0;
}

/* A length-delimited field of n bytes (0 when n is 0). */
static inline size_t ld_pb_len_field_len(unsigned field, size_t n)
{
    return n ? ld_pb_varint_len((uint64_t)field << 3) + ld_pb_varint_len(n) + n
             : 0;
}

static inline uint8_t *ld_pb_put_varint_field(uint8_t *p, unsigned field,
                                              uint64_t v)
{
    if (!v)
        return p;
    p = ld_pb_put_key(p, field, LD_PB_WT_VARINT);
    return ld_pb_put_varint(p, v);
}

static inline uint8_t *ld_pb_put_float_field(uint8_t *p, unsigned field,
                                             float v)
{
    uint32_t b = ld_pb_f32_bits(v);
    if (!b)
        return p;
    p = ld_pb_put_key(p, field, LD_PB_WT_FIXED32);
    return ld_pb_put_fixed32(p, b);
}

/* The key and length of a length-delimited field; its n bytes follow. */
static inline uint8_t *ld_pb_put_len_header(uint8_t *p, unsigned field,
                                            size_t n)
{
    p = ld_pb_put_key(p, field, LD_PB_WT_LEN);
    return ld_pb_put_varint(p, n);
}

static inline uint8_t *ld_pb_put_bytes_field(uint8_t *p, unsigned field,
                                             const void *data, size_t n)
{
    if (!n)
        return p;
    p = ld_pb_put_len_header(p, field, n);
    memcpy(p, data, n);
    return p + n;
}

/* A packed repeated float field of n values. */
static inline uint8_t *ld_pb_put_floats_field(uint8_t *p, unsigned field,
                                              const float *v, uint32_t n)
{
    if (!n)
        return p;
    p = ld_pb_put_len_header(p, field, (size_t)n * 4);
    for (uint32_t i = 0; i < n; i++)
        p = ld_pb_put_fixed32(p, ld_pb_f32_bits(v[i]));
    return p;
}

/* ---- Cursor reader: *pp advances over [*pp, end); -1 when malformed ---- */

/* Varint of at most 10 bytes (bits past 64 dropped); -1 when truncated or
 * longer. */
static inline int ld_pb_varint(const uint8_t **pp, const uint8_t *end,
                               uint64_t *out)
{
    const uint8_t *p = *pp;
    if (p < end && !(*p & 0x80)) {
        *out = *p;
        *pp = p + 1;
        return 0;
    }
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 70; shift += 7) {
        if (p >= end)
            return -1;
        uint8_t b = *p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *pp = p;
            *out = v;
            return 0;
        }
    }
    return -1;
}

/* A tag: field number >= 1 and < 2^29, wire type. -1 when malformed. */
static inline int ld_pb_tag(const uint8_t **pp, const uint8_t *end,
                            uint32_t *num, uint32_t *wt)
{
    uint64_t t;
    if (ld_pb_varint(pp, end, &t) < 0 || t >> 32 || (t >> 3) == 0)
        return -1;
    *num = (uint32_t)(t >> 3);
    *wt = (uint32_t)(t & 7);
    return 0;
}

/* A length prefix that fits in what remains. */
static inline int ld_pb_len(const uint8_t **pp, const uint8_t *end, size_t *n)
{
    uint64_t v;
    if (ld_pb_varint(pp, end, &v) < 0 || v > (uint64_t)(end - *pp))
        return -1;
    *n = (size_t)v;
    return 0;
}

/* Skips the value of a field of wire type wt (number num, for groups) at
 * *pp, following groups up to LD_PB_MAX_DEPTH deep from depth; -1 when it
 * is truncated or malformed. */
int ld_pb_skip(const uint8_t **pp, const uint8_t *end, uint32_t num,
               uint32_t wt, int depth);

/* ---- Reader: on ld_rbuf_t, errors sticky like the rest of the codec ---- */

/* Reads a varint of at most 10 bytes; a truncated or longer one sets
 * r->err (LD_ERR_CORRUPT) and returns 0. Bits past 64 are dropped. */
uint64_t ld_pb_read_varint(ld_rbuf_t *r);

/* Reads one field key; *field and *wt receive its number and wire type.
 * Returns 0 at the clean end of the buffer, 1 for a key, -1 on error. */
int ld_pb_read_key(ld_rbuf_t *r, uint32_t *field, int *wt);

/* Skips the value of a field of wire type wt (the key already read); an
 * unknown wire type (groups included) or a value past the end sets err. */
void ld_pb_skip_field(ld_rbuf_t *r, int wt);

/* The first length-delimited field number `field` of the message in
 * msg[0..n): returns a pointer to its bytes (borrowed from msg) and their
 * count in *len, or NULL when absent or when the message is malformed
 * before it is found. Skips other fields by their length, so a large
 * message is walked without a copy. */
const uint8_t *ld_pb_find_len(const uint8_t *msg, size_t n, uint32_t field,
                              size_t *len);

#endif /* LD_COMMON_PBWIRE_H */
