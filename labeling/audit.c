/* SPDX-License-Identifier: Apache-2.0 */
/* Audit records: one labelled example as a JSON object, exactly what the
 * trainer saw (floats printed with 9 significant digits round-trip). */
#include <stdarg.h>
#include <stdio.h>

#include "labeling/labeling.h"

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
    int64_t elapsed =
        ex->label_time_ms >= 0 ? ex->label_time_ms - ex->event_time_ms : -1;
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
