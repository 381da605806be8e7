/* SPDX-License-Identifier: Apache-2.0 */
/* Audit records: one labelled example, exactly what the trainer saw, as
 * protobuf LabelledExample (schemas/learnd.proto) or as a JSON object
 * (floats printed with 9 significant digits round-trip). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "labeling/labeling.h"
#include "schemas/learnd.pb-c.h"

typedef struct out {
    char *buf;
    size_t size, len;
    int bad;
} out_t;

static void emit(out_t *o, const char *fmt, ...) LD_PRINTF(2, 3);

static void emit(out_t *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t room = o->len < o->size ? o->size - o->len : 0;
    int n = vsnprintf(room ? o->buf + o->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n < 0)
        o->bad = 1;
    else
        o->len += (size_t)n;
}

static void emit_str(out_t *o, const char *s)
{
    emit(o, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            emit(o, "\\%c", *p);
        else if (*p < 0x20)
            emit(o, "\\u%04x", *p);
        else
            emit(o, "%c", *p);
    }
    emit(o, "\"");
}

size_t ld_labeling_example_json(const ld_example_t *ex, char *buf, size_t size)
{
    out_t o = {buf, size, 0, 0};
    emit(&o, "{\"event_id\":");
    emit_str(&o, ex->event_id ? ex->event_id : "");
    /* Whether a label arrived is the sample type's to say: a label time
     * may be negative (times before 1970). */
    int labelled = ex->sample_type == LD_SAMPLE_POS ||
                   ex->sample_type == LD_SAMPLE_DELAYED_POS;
    int64_t elapsed = labelled ? ex->label_time_ms - ex->event_time_ms : -1;
    emit(&o,
         ",\"event_time\":%lld,\"label_time\":%lld,\"elapsed_ms\":%lld,"
         "\"label\":%.9g,\"weight\":%.9g,\"sample_type\":\"%s\","
         "\"partition\":%ld,\"offset\":%lld,\"idx\":[",
         (long long)ex->event_time_ms, (long long)ex->label_time_ms,
         (long long)elapsed, (double)ex->label, (double)ex->weight,
         ld_sample_type_name(ex->sample_type), (long)ex->partition,
         (long long)ex->offset);
    for (uint32_t i = 0; i < ex->x.nnz; i++)
        emit(&o, "%s%lu", i ? "," : "", (unsigned long)ex->x.idx[i]);
    emit(&o, "],\"val\":[");
    for (uint32_t i = 0; i < ex->x.nnz; i++)
        emit(&o, "%s%.9g", i ? "," : "", (double)ex->x.val[i]);
    emit(&o, "],\"dense\":[");
    for (uint32_t i = 0; i < ex->x.ndense; i++)
        emit(&o, "%s%.9g", i ? "," : "", (double)ex->x.dense[i]);
    emit(&o, "]}");
    return o.bad ? 0 : o.len;
}

/* ---- protobuf LabelledExample ------------------------------------------- */

/* Field numbers of LabelledExample in schemas/learnd.proto. */
enum {
    F_EVENT_ID = 1,
    F_EVENT_TIME = 2,
    F_LABEL_TIME = 3,
    F_ELAPSED = 4,
    F_LABEL = 5,
    F_WEIGHT = 6,
    F_SAMPLE_TYPE = 7,
    F_PARTITION = 8,
    F_OFFSET = 9,
    F_INDICES = 10,
    F_VALUES = 11,
    F_DENSE = 12,
    F_DECISION_TIME = 13,
    F_TOPIC = 14
};
enum { WT_VARINT = 0, WT_LEN = 2, WT_FIXED32 = 5 };

/* The proto enum is ld_sample_type_t + 1 (0 is UNSPECIFIED). */
_Static_assert(LEARND__V1__SAMPLE_TYPE__SAMPLE_TYPE_POS == LD_SAMPLE_POS + 1,
               "SampleType mapping");
_Static_assert(LEARND__V1__SAMPLE_TYPE__SAMPLE_TYPE_DEFAULT_NEG ==
                   LD_SAMPLE_DEFAULT_NEG + 1,
               "SampleType mapping");
_Static_assert(LEARND__V1__SAMPLE_TYPE__SAMPLE_TYPE_FAKE_NEG ==
                   LD_SAMPLE_FAKE_NEG + 1,
               "SampleType mapping");
_Static_assert(LEARND__V1__SAMPLE_TYPE__SAMPLE_TYPE_DELAYED_POS ==
                   LD_SAMPLE_DELAYED_POS + 1,
               "SampleType mapping");

static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

static uint32_t f32_bits(float f)
{
    uint32_t b;
    memcpy(&b, &f, 4);
    return b;
}

/* proto3: a scalar equal to its default is not written. A float is default
 * only when all its bits are zero: -0.0 is written, as current protobuf
 * releases do, so the audit record is bit exact (protobuf-c drops it).
 * int32/int64 are sign-extended to 64 bits. */
static size_t len_varint_field(unsigned f, uint64_t v)
{
    return v ? varint_len((uint64_t)f << 3) + varint_len(v) : 0;
}

static size_t len_bytes_field(unsigned f, size_t n)
{
    return n ? varint_len((uint64_t)f << 3) + varint_len(n) + n : 0;
}

static uint8_t *put_varint_field(uint8_t *p, unsigned f, uint64_t v)
{
    if (!v)
        return p;
    p = put_varint(p, (uint64_t)f << 3 | WT_VARINT);
    return put_varint(p, v);
}

static uint8_t *put_float_field(uint8_t *p, unsigned f, float v)
{
    uint32_t b = f32_bits(v);
    if (!b)
        return p;
    p = put_varint(p, (uint64_t)f << 3 | WT_FIXED32);
    for (int i = 0; i < 4; i++)
        *p++ = (uint8_t)(b >> (8 * i));
    return p;
}

static uint8_t *put_bytes_field(uint8_t *p, unsigned f, const void *data,
                                size_t n)
{
    if (!n)
        return p;
    p = put_varint(p, (uint64_t)f << 3 | WT_LEN);
    p = put_varint(p, n);
    memcpy(p, data, n);
    return p + n;
}

static uint8_t *put_floats_field(uint8_t *p, unsigned f, const float *v,
                                 uint32_t n)
{
    if (!n)
        return p;
    p = put_varint(p, (uint64_t)f << 3 | WT_LEN);
    p = put_varint(p, (uint64_t)n * 4);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t b = f32_bits(v[i]);
        for (int k = 0; k < 4; k++)
            *p++ = (uint8_t)(b >> (8 * k));
    }
    return p;
}

/* Elapsed time as learnd.proto defines it: label time - event time when a
 * label arrived (pos, delayed_pos), else the time to the decision. */
static int64_t pb_elapsed(const ld_example_t *ex, int64_t decision_time_ms)
{
    if (ex->sample_type == LD_SAMPLE_POS ||
        ex->sample_type == LD_SAMPLE_DELAYED_POS)
        return ex->label_time_ms - ex->event_time_ms;
    return decision_time_ms - ex->event_time_ms;
}

size_t ld_labeling_example_pack(const ld_example_t *ex,
                                int64_t decision_time_ms, const char *topic,
                                uint8_t *buf, size_t size)
{
    if (!ex || ex->sample_type < LD_SAMPLE_POS ||
        ex->sample_type >= LD_SAMPLE__COUNT)
        return 0;
    if ((ex->x.nnz && (!ex->x.idx || !ex->x.val)) ||
        (ex->x.ndense && !ex->x.dense))
        return 0;
    size_t idlen = ex->event_id ? strlen(ex->event_id) : 0;
    size_t tlen = topic ? strlen(topic) : 0;
    uint64_t elapsed = (uint64_t)pb_elapsed(ex, decision_time_ms);
    size_t nidx = 0;
    for (uint32_t i = 0; i < ex->x.nnz; i++)
        nidx += varint_len(ex->x.idx[i]);
    size_t n = len_bytes_field(F_EVENT_ID, idlen);
    n += len_varint_field(F_EVENT_TIME, (uint64_t)ex->event_time_ms);
    n += len_varint_field(F_LABEL_TIME, (uint64_t)ex->label_time_ms);
    n += len_varint_field(F_ELAPSED, elapsed);
    n += f32_bits(ex->label) ? 5 : 0;
    n += f32_bits(ex->weight) ? 5 : 0;
    n += len_varint_field(F_SAMPLE_TYPE, (uint64_t)ex->sample_type + 1);
    n += len_varint_field(F_PARTITION, (uint64_t)(int64_t)ex->partition);
    n += len_varint_field(F_OFFSET, (uint64_t)ex->offset);
    n += len_bytes_field(F_INDICES, nidx);
    n += len_bytes_field(F_VALUES, (size_t)ex->x.nnz * 4);
    n += len_bytes_field(F_DENSE, (size_t)ex->x.ndense * 4);
    n += len_varint_field(F_DECISION_TIME, (uint64_t)decision_time_ms);
    n += len_bytes_field(F_TOPIC, tlen);
    if (!buf || size < n)
        return n;
    uint8_t *p = buf;
    p = put_bytes_field(p, F_EVENT_ID, ex->event_id, idlen);
    p = put_varint_field(p, F_EVENT_TIME, (uint64_t)ex->event_time_ms);
    p = put_varint_field(p, F_LABEL_TIME, (uint64_t)ex->label_time_ms);
    p = put_varint_field(p, F_ELAPSED, elapsed);
    p = put_float_field(p, F_LABEL, ex->label);
    p = put_float_field(p, F_WEIGHT, ex->weight);
    p = put_varint_field(p, F_SAMPLE_TYPE, (uint64_t)ex->sample_type + 1);
    p = put_varint_field(p, F_PARTITION, (uint64_t)(int64_t)ex->partition);
    p = put_varint_field(p, F_OFFSET, (uint64_t)ex->offset);
    if (nidx) {
        p = put_varint(p, (uint64_t)F_INDICES << 3 | WT_LEN);
        p = put_varint(p, nidx);
        for (uint32_t i = 0; i < ex->x.nnz; i++)
            p = put_varint(p, ex->x.idx[i]);
    }
    p = put_floats_field(p, F_VALUES, ex->x.val, ex->x.nnz);
    p = put_floats_field(p, F_DENSE, ex->x.dense, ex->x.ndense);
    p = put_varint_field(p, F_DECISION_TIME, (uint64_t)decision_time_ms);
    p = put_bytes_field(p, F_TOPIC, topic, tlen);
    return (size_t)(p - buf);
}
