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
    ld_pbdesc_t *pbd; /* users' own messages (pipeline.descriptor_set) */
    ld_jsondec_t *json;
    int confluent;      /* protobuf_wire / json_wire confluent */
    ld_registry_t *reg; /* Protobuf / JSON: schema ids checked there */
    struct seen_id {
        uint32_t id, npath, path[4];
        char *why;        /* NULL: good */
        ld_pbdesc_t *pbd; /* its writer schema's plan; NULL: d->pbd's */
    } * seen;
    ld_pbdesc_t *use; /* the plan of the record at hand */
    uint32_t nseen, capseen;
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
    int own_pb = conf->descriptor_set && *conf->descriptor_set;
    d->fm =
        ld_fmap_new(conf, kind, conf->format == LD_FORMAT_PROTOBUF && !own_pb,
                    errstr, errstr_size);
    if (!d->fm)
        goto err;
    switch (conf->format) {
    case LD_FORMAT_AVRO:
        d->avro = ld_avro_new(conf, kind, d->fm, errstr, errstr_size);
        if (!d->avro)
            goto err;
        break;
    case LD_FORMAT_PROTOBUF:
        d->confluent = conf->protobuf_wire == LD_WIRE_CONFLUENT;
        if (own_pb ? !(d->pbd = ld_pbdesc_new(conf, kind, d->fm, errstr,
                                              errstr_size))
                   : !(d->pb = ld_pbdec_new(kind, errstr, errstr_size)))
            goto err;
        break;
    case LD_FORMAT_JSON:
        d->confluent = conf->json_wire == LD_WIRE_CONFLUENT;
        if (!(d->json = ld_jsondec_new(d->fm, errstr, errstr_size)))
            goto err;
        break;
    default:
        snprintf(errstr, errstr_size, "pipeline.format: unknown format %d",
                 conf->format);
        goto err;
    }
    /* Avro asks the registry itself (writer schemas); the others only
     * check that an id is known and names the configured message */
    if (d->confluent && conf->registry_url && *conf->registry_url &&
        !(d->reg = ld_registry_new(conf, errstr, errstr_size)))
        goto err;
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
    ld_pbdesc_destroy(d->pbd);
    ld_registry_destroy(d->reg);
    for (uint32_t i = 0; i < d->nseen; i++) {
        free(d->seen[i].why);
        ld_pbdesc_destroy(d->seen[i].pbd);
    }
    free(d->seen);
    ld_jsondec_destroy(d->json);
    ld_fmap_destroy(d->fm);
    free(d);
}

/* The plan of Protobuf schema id as the registry describes it
 * (?format=serialized): LD_REG_OK with *out set, or with why set when the
 * writer schema does not fit the mapping (message, incompatible field
 * type, a broken descriptor); LD_REG_UNKNOWN when the registry answered
 * .proto text instead (then only the message name can be checked);
 * LD_REG_DOWN / LD_REG_REFUSED with d->err set. */
static ld_reg_status_t writer_plan(ld_decoder_t *d, uint32_t id,
                                   const uint32_t *path, uint32_t npath,
                                   ld_pbdesc_t **out, char *why,
                                   size_t why_size)
{
    ld_reg_file_t *files;
    uint32_t nfiles;
    ld_reg_status_t st = ld_registry_get_proto(d->reg, id, &files, &nfiles,
                                               d->err, sizeof(d->err));
    if (st == LD_REG_OK && nfiles == 0) {
        ld_log(LD_LOG_WARN, "pipeline",
               "msg=\"the registry answered .proto text, not a serialized "
               "descriptor: fields are read by the descriptor set's "
               "numbers\" id=%u",
               id);
        return LD_REG_UNKNOWN;
    }
    if (st != LD_REG_OK)
        return st;
    *out =
        ld_pbdesc_new_writer(d->pbd, files, nfiles, path, npath, why, why_size);
    ld_reg_files_free(files, nfiles);
    if (*out)
        ld_log(LD_LOG_INFO, "pipeline",
               "msg=\"writer schema from the registry\" id=%u message=%s "
               "files=%u",
               id, ld_pbdesc_message(*out), nfiles);
    return LD_REG_OK;
}

/* Whether schema id (with the message-index path, Protobuf) may be read
 * with the configured message: the registry must know it, as a schema of
 * the input's type, and for Protobuf the path must name the configured
 * message in it (by name: the writer's file may declare messages in
 * another order than the descriptor set). Answers are remembered, except
 * a registry that could not answer (down, refused). */
static ld_reason_t registry_check(ld_decoder_t *d, uint32_t id,
                                  const uint32_t *path, uint32_t npath)
{
    int pb = d->format == LD_FORMAT_PROTOBUF;
    uint32_t key = npath <= 4 ? npath : UINT32_MAX;
    for (uint32_t i = 0; i < d->nseen; i++) {
        struct seen_id *s = &d->seen[i];
        if (s->id != id || s->npath != key ||
            (key && memcmp(s->path, path, key * sizeof(*path)) != 0))
            continue;
        if (!s->why) {
            d->use = s->pbd ? s->pbd : d->pbd;
            return LD_REASON_NONE;
        }
        snprintf(d->err, sizeof(d->err), "schema id %u: %s", id, s->why);
        return LD_REASON_UNKNOWN_SCHEMA;
    }
    char *text = NULL, *type = NULL, why[400] = "";
    ld_pbdesc_t *wpbd = NULL;
    ld_reg_status_t st =
        ld_registry_get(d->reg, id, &text, &type, d->err, sizeof(d->err));
    if (st == LD_REG_DOWN || st == LD_REG_REFUSED)
        return LD_REASON_UNKNOWN_SCHEMA;
    const char *want = pb ? "PROTOBUF" : "JSON";
    char name[512];
    if (st == LD_REG_UNKNOWN) {
        snprintf(why, sizeof(why), "not in the registry");
    } else if (strcmp(type, want) != 0) {
        snprintf(why, sizeof(why), "the registry has a %s schema, not %s", type,
                 want);
    } else if (pb && d->pbd &&
               (st = writer_plan(d, id, path, npath, &wpbd, why,
                                 sizeof(why))) != LD_REG_UNKNOWN) {
        /* a descriptor from the registry: its plan decides (why set when
         * it does not fit); LD_REG_DOWN/REFUSED: ask again later */
        if (st != LD_REG_OK) {
            free(text);
            free(type);
            return LD_REASON_UNKNOWN_SCHEMA;
        }
    } else if (pb && d->pbd &&
               ld_proto_message_at(text, path, npath, name, sizeof(name)) < 0) {
        snprintf(why, sizeof(why),
                 "the message-index path names no message of the "
                 "registry's schema");
    } else if (pb && d->pbd && strcmp(name, ld_pbdesc_message(d->pbd)) != 0) {
        snprintf(why, sizeof(why), "the record's message is %.200s, not %s",
                 name, ld_pbdesc_message(d->pbd));
    }
    free(text);
    free(type);
    if (d->nseen == d->capseen) {
        uint32_t ncap = d->capseen ? 2 * d->capseen : 8;
        void *v = realloc(d->seen, ncap * sizeof(*d->seen));
        if (!v) {
            ld_pbdesc_destroy(wpbd);
            snprintf(d->err, sizeof(d->err), "out of memory");
            return LD_REASON_DECODE;
        }
        d->seen = v;
        d->capseen = ncap;
    }
    struct seen_id *s = &d->seen[d->nseen];
    memset(s, 0, sizeof(*s));
    s->id = id;
    s->npath = key;
    s->pbd = wpbd;
    if (key != UINT32_MAX)
        memcpy(s->path, path, key * sizeof(*path));
    if (*why && !(s->why = strdup(why))) {
        ld_pbdesc_destroy(wpbd);
        snprintf(d->err, sizeof(d->err), "out of memory");
        return LD_REASON_DECODE;
    }
    d->nseen++;
    if (!*why) {
        d->use = wpbd ? wpbd : d->pbd;
        return LD_REASON_NONE;
    }
    snprintf(d->err, sizeof(d->err), "schema id %u: %s", id, why);
    return LD_REASON_UNKNOWN_SCHEMA;
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
    d->use = d->pbd;
    if (d->confluent) {
        /* Protobuf needs no writer schema: field numbers carry the
         * evolution, so any schema id decodes with the configured message
         * as long as the index path names it. */
        uint32_t id, path[16], npath = 0;
        size_t hdr = 0;
        why = ld_confluent_header(value, len, d->format == LD_FORMAT_PROTOBUF,
                                  &id, path, 16, &npath, &hdr, d->err,
                                  sizeof(d->err));
        if (why)
            return why;
        if (d->reg) {
            if ((why = registry_check(d, id, path, npath)))
                return why;
        } else if (d->pbd && !ld_pbdesc_path_matches(d->pbd, path, npath)) {
            snprintf(d->err, sizeof(d->err),
                     "schema id %u: message-index path of %u entries [%u%s] "
                     "does not name %s",
                     id, npath, npath ? path[0] : 0, npath > 1 ? ",..." : "",
                     ld_pbdesc_message(d->pbd));
            return LD_REASON_UNKNOWN_SCHEMA;
        }
        value = (const uint8_t *)value + hdr;
        len -= hdr;
    }
    switch (d->format) {
    case LD_FORMAT_AVRO:
        why =
            ld_avro_decode(d->avro, d->fm, value, len, d->err, sizeof(d->err));
        break;
    case LD_FORMAT_PROTOBUF:
        why = d->pbd ? ld_pbdesc_decode(d->use, d->fm, value, len, d->err,
                                        sizeof(d->err))
                     : ld_pbdec_decode(d->pb, d->fm, value, len, d->err,
                                       sizeof(d->err));
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

ld_reason_t ld_confluent_header(const uint8_t *p, size_t len, int protobuf,
                                uint32_t *id, uint32_t *path, uint32_t cap,
                                uint32_t *npath, size_t *hdr, char *err,
                                size_t err_size)
{
    if (len < 5) {
        snprintf(err, err_size, "%zu bytes: shorter than the Confluent header",
                 len);
        return len && p[0] != 0 ? LD_REASON_BAD_MAGIC : LD_REASON_DECODE;
    }
    if (p[0] != 0) {
        snprintf(err, err_size, "magic byte %u, expected 0", p[0]);
        return LD_REASON_BAD_MAGIC;
    }
    *id = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 |
          p[4];
    size_t at = 5;
    *npath = 0;
    if (protobuf) {
        /* zig-zag varints of at most 5 bytes (Java ints) */
        int64_t vals[1 + 16];
        uint32_t want = 1;
        for (uint32_t k = 0; k < want; k++) {
            uint64_t u = 0;
            int ok = 0;
            for (unsigned shift = 0; shift < 35 && at < len; shift += 7) {
                uint8_t b = p[at++];
                u |= (uint64_t)(b & 0x7f) << shift;
                if (!(b & 0x80)) {
                    ok = 1;
                    break;
                }
            }
            if (!ok) {
                snprintf(err, err_size,
                         "Confluent message-index path: truncated or bad "
                         "varint");
                return LD_REASON_DECODE;
            }
            vals[k] = (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
            if (k == 0) {
                if (vals[0] < 0 || vals[0] > (int64_t)cap) {
                    snprintf(err, err_size,
                             "Confluent message-index path of %lld entries "
                             "(at most %u)",
                             (long long)vals[0], cap);
                    return LD_REASON_DECODE;
                }
                want = 1 + (uint32_t)vals[0];
            } else if (vals[k] < 0) {
                snprintf(err, err_size,
                         "Confluent message index %lld is negative",
                         (long long)vals[k]);
                return LD_REASON_DECODE;
            }
        }
        if (vals[0] == 0) { /* the common case [0] is written as count 0 */
            path[0] = 0;
            *npath = 1;
        } else {
            for (uint32_t k = 1; k < want; k++)
                path[k - 1] = (uint32_t)vals[k];
            *npath = want - 1;
        }
    }
    *hdr = at;
    return LD_REASON_NONE;
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
