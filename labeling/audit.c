/* SPDX-License-Identifier: Apache-2.0 */
/* Audit records: one labelled example, exactly what the trainer saw, as
 * protobuf LabelledExample (schemas/learnd.proto) or as a JSON object
 * (floats printed with 9 significant digits round-trip). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/pbwire.h"
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
        nidx += ld_pb_varint_len(ex->x.idx[i]);
    size_t n = ld_pb_len_field_len(F_EVENT_ID, idlen);
    n += ld_pb_varint_field_len(F_EVENT_TIME, (uint64_t)ex->event_time_ms);
    n += ld_pb_varint_field_len(F_LABEL_TIME, (uint64_t)ex->label_time_ms);
    n += ld_pb_varint_field_len(F_ELAPSED, elapsed);
    n += ld_pb_float_field_len(F_LABEL, ex->label);
    n += ld_pb_float_field_len(F_WEIGHT, ex->weight);
    n += ld_pb_varint_field_len(F_SAMPLE_TYPE, (uint64_t)ex->sample_type + 1);
    n += ld_pb_varint_field_len(F_PARTITION, (uint64_t)(int64_t)ex->partition);
    n += ld_pb_varint_field_len(F_OFFSET, (uint64_t)ex->offset);
    n += ld_pb_len_field_len(F_INDICES, nidx);
    n += ld_pb_len_field_len(F_VALUES, (size_t)ex->x.nnz * 4);
    n += ld_pb_len_field_len(F_DENSE, (size_t)ex->x.ndense * 4);
    n += ld_pb_varint_field_len(F_DECISION_TIME, (uint64_t)decision_time_ms);
    n += ld_pb_len_field_len(F_TOPIC, tlen);
    if (!buf || size < n)
        return n;
    uint8_t *p = buf;
    p = ld_pb_put_bytes_field(p, F_EVENT_ID, ex->event_id, idlen);
    p = ld_pb_put_varint_field(p, F_EVENT_TIME, (uint64_t)ex->event_time_ms);
    p = ld_pb_put_varint_field(p, F_LABEL_TIME, (uint64_t)ex->label_time_ms);
    p = ld_pb_put_varint_field(p, F_ELAPSED, elapsed);
    p = ld_pb_put_float_field(p, F_LABEL, ex->label);
    p = ld_pb_put_float_field(p, F_WEIGHT, ex->weight);
    p = ld_pb_put_varint_field(p, F_SAMPLE_TYPE, (uint64_t)ex->sample_type + 1);
    p = ld_pb_put_varint_field(p, F_PARTITION,
                               (uint64_t)(int64_t)ex->partition);
    p = ld_pb_put_varint_field(p, F_OFFSET, (uint64_t)ex->offset);
    if (nidx) {
        p = ld_pb_put_len_header(p, F_INDICES, nidx);
        for (uint32_t i = 0; i < ex->x.nnz; i++)
            p = ld_pb_put_varint(p, ex->x.idx[i]);
    }
    p = ld_pb_put_floats_field(p, F_VALUES, ex->x.val, ex->x.nnz);
    p = ld_pb_put_floats_field(p, F_DENSE, ex->x.dense, ex->x.ndense);
    p = ld_pb_put_varint_field(p, F_DECISION_TIME, (uint64_t)decision_time_ms);
    p = ld_pb_put_bytes_field(p, F_TOPIC, topic, tlen);
    return (size_t)(p - buf);
}

const char *ld_sample_type_name(ld_sample_type_t t)
{
    switch (t) {
    case LD_SAMPLE_POS:
        return "pos";
    case LD_SAMPLE_DEFAULT_NEG:
        return "default_neg";
    case LD_SAMPLE_FAKE_NEG:
        return "fake_neg";
    case LD_SAMPLE_DELAYED_POS:
        return "delayed_pos";
    default:
        return "?";
    }
}
