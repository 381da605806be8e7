/* SPDX-License-Identifier: Apache-2.0 */
/* One decoder per input topic: size and emptiness checks, the format
 * decoder, then the field mapping into an ld_record_t. */
#include <stdlib.h>
#include <string.h>

#include "pipeline/internal.h"

struct ld_decoder {
    ld_fmap_t *fm;
    int format;
    size_t max_bytes;
    ld_avro_t *avro;
    ld_pbdec_t *pb;
    ld_jsondec_t *json;
    char err[512];
};

static const char *const reason_names[LD_REASON__COUNT] = {
    [LD_REASON_NONE] = "none",
    [LD_REASON_DECODE] = "decode",
    [LD_REASON_BAD_MAGIC] = "bad_magic",
    [LD_REASON_UNKNOWN_SCHEMA] = "unknown_schema",
    [LD_REASON_BAD_UTF8] = "bad_utf8",
    [LD_REASON_BAD_TYPE] = "bad_type",
    [LD_REASON_DUPLICATE_FIELD] = "duplicate_field",
    [LD_REASON_MISSING_KEY] = "missing_key",
    [LD_REASON_MISSING_TIME] = "missing_time",
    [LD_REASON_MISSING_LABEL] = "missing_label",
    [LD_REASON_NOT_FINITE] = "not_finite",
    [LD_REASON_OVERSIZE] = "oversize",
    [LD_REASON_TOO_MANY_FEATURES] = "too_many_features",
    [LD_REASON_EMPTY] = "empty",
    [LD_REASON_KEY_TOO_LONG] = "key_too_long",
    [LD_REASON_TIME_RANGE] = "time_range",
    [LD_REASON_FUTURE_TIME] = "future_time",
};

const char *ld_reason_name(ld_reason_t reason)
{
    if ((unsigned)reason >= LD_REASON__COUNT)
        return "unknown";
    return reason_names[reason];
}

ld_decoder_t *ld_decoder_new(const ld_pipeline_conf_t *conf,
                             ld_record_kind_t kind, char *errstr,
                             size_t errstr_size)
{
    ld_decoder_t *d = calloc(1, sizeof(*d));
    if (!d) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    d->format = conf->format;
    d->max_bytes = (size_t)conf->max_record_bytes;
    d->fm = ld_fmap_new(conf, kind, conf->format == LD_FORMAT_PROTOBUF, errstr,
                        errstr_size);
    if (!d->fm)
        goto err;
    switch (conf->format) {
    case LD_FORMAT_AVRO:
        d->avro = ld_avro_new(conf, kind, d->fm, errstr, errstr_size);
        if (!d->avro)
            goto err;
        break;
    case LD_FORMAT_PROTOBUF:
        if (!(d->pb = ld_pbdec_new(kind, errstr, errstr_size)))
            goto err;
        break;
    case LD_FORMAT_JSON:
        if (!(d->json = ld_jsondec_new(d->fm, errstr, errstr_size)))
            goto err;
        break;
    default:
        snprintf(errstr, errstr_size, "pipeline.format: unknown format %d",
                 conf->format);
        goto err;
    }
    return d;
err:
    ld_decoder_destroy(d);
    return NULL;
}

void ld_decoder_destroy(ld_decoder_t *d)
{
    if (!d)
        return;
    ld_avro_destroy(d->avro);
    ld_pbdec_destroy(d->pb);
    ld_jsondec_destroy(d->json);
    ld_fmap_destroy(d->fm);
    free(d);
}

ld_reason_t ld_decoder_decode(ld_decoder_t *d, const void *key, size_t key_len,
                              const void *value, size_t len,
                              int64_t kafka_ts_ms, ld_record_t *out)
{
    ld_reason_t why;
    d->err[0] = '\0';
    if (!value || len == 0) {
        snprintf(d->err, sizeof(d->err), "empty value");
        return LD_REASON_EMPTY;
    }
    if (len > d->max_bytes) {
        snprintf(d->err, sizeof(d->err), "%zu bytes > max_record_bytes %zu",
                 len, d->max_bytes);
        return LD_REASON_OVERSIZE;
    }
    ld_fmap_reset(d->fm);
    switch (d->format) {
    case LD_FORMAT_AVRO:
        why =
            ld_avro_decode(d->avro, d->fm, value, len, d->err, sizeof(d->err));
        break;
    case LD_FORMAT_PROTOBUF:
        why = ld_pbdec_decode(d->pb, d->fm, value, len, d->err, sizeof(d->err));
        break;
    default:
        why = ld_jsondec_decode(d->json, d->fm, value, len, d->err,
                                sizeof(d->err));
        break;
    }
    if (why)
        return why;
    return ld_fmap_finish(d->fm, key, key_len, kafka_ts_ms, out, d->err,
                          sizeof(d->err));
}

const char *ld_decoder_error(const ld_decoder_t *d)
{
    return d->err;
}

const char *ld_decoder_feature_map(const ld_decoder_t *d)
{
    return d->fm->map_text;
}

uint32_t ld_decoder_dense_dim(const ld_decoder_t *d)
{
    return d->fm->ndense;
}
