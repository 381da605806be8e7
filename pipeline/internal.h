/* SPDX-License-Identifier: Apache-2.0 */
/* Inside the pipeline: the compiled field mapping the format decoders fill,
 * and the per-format decoder entry points. Not for other stages. */
#ifndef LD_PIPELINE_INTERNAL_H
#define LD_PIPELINE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "pipeline/decode.h"

/* What a format decoder found for one mapped field. */
typedef enum fv_kind {
    FV_ABSENT = 0, /* not in the record */
    FV_NULL,       /* present, null (Avro null branch, JSON null) */
    FV_BOOL,       /* u.i is 0 or 1 */
    FV_INT,        /* u.i */
    FV_DOUBLE,     /* u.d */
    FV_STR,        /* u.s, n bytes, borrowed from the input or the decoder */
    FV_LIST        /* n strings from ld_fmap_t.strs[u.first] */
} fv_kind_t;

typedef struct ld_fv {
    uint8_t kind;
    uint32_t n;
    union {
        int64_t i;
        double d;
        const char *s;
        uint32_t first;
    } u;
} ld_fv_t;

typedef struct ld_str {
    const char *s;
    uint32_t n;
} ld_str_t;

/* One hashed field: its slot and field_seed (pipeline/hash.h). */
typedef struct hfield {
    int32_t slot;
    uint32_t seed;
    uint32_t ns;
} hfield_t;

/* The field mapping of one topic, compiled from the config, plus the scratch
 * of the record being decoded. Slots are the distinct field names the
 * mapping refers to; decoders look a name up once (Avro, at schema compile
 * time) or per record (Protobuf, JSON) and store what they find. */
/* Namespaces one cross may combine. */
#define LD_FMAP_CROSS_MAX 8

typedef struct ld_fmap {
    ld_record_kind_t kind;
    uint32_t nslots;
    char **names;       /* nslots owned names ("a.b" for nested fields) */
    uint32_t *name_len; /* strlen of each name */
    uint32_t tmask;     /* open-addressing table of slot + 1, size tmask+1 */
    int32_t *table;
    int32_t key_slot;   /* -1: Kafka key */
    int32_t time_slot;  /* -1: Kafka timestamp */
    int32_t label_slot; /* -1: presence mode or events */
    int label_mode;
    char *label_equals;
    uint32_t ndense;
    int32_t *dense_slot;
    uint32_t nhash; /* hashed fields, grouped by namespace */
    hfield_t *hash;
    uint32_t nns;
    uint32_t *ns_cross; /* per namespace: nonzero when a cross uses it */
    uint32_t ncross;
    uint32_t *cross_off; /* ncross + 1 offsets into cross_ns */
    uint32_t *cross_ns;  /* LD_FMAP_CROSS_MAX at most per cross */
    uint32_t mask;
    uint32_t seed;
    uint32_t max_features;
    int64_t max_future_ms; /* 0: event times are not bounded by the ts */
    /* served-decision fields (events; -1: not configured) */
    int32_t served_variant_slot, served_score_slot, served_prop_slot;
    int32_t served_shadow_slot[LD_SERVED_SHADOW_MAX];
    uint32_t nserved_shadow;
    char *map_text;

    /* scratch of the record being decoded */
    ld_fv_t *fv;
    ld_str_t *strs;
    uint32_t nstrs, capstrs;
    uint32_t *idx;
    float *val;         /* all 1.0f, set once by ld_fmap_new */
    uint32_t *hfull;    /* murmur3 block mix of each namespace feature's
                         * hash, for crosses (fmap.c blk_mix) */
    uint32_t *ns_start; /* nns + 1 ranges into hfull */
    float *dense;
    char *keybuf;
    size_t keycap;
} ld_fmap_t;

/* Builds the mapping of kind from conf. Protobuf maps the canonical
 * Event/Label fields to the names "event_id", "time_ms", "value"
 * (pb_canonical != 0). NULL with errstr on a config error. */
ld_fmap_t *ld_fmap_new(const ld_pipeline_conf_t *conf, ld_record_kind_t kind,
                       int pb_canonical, char *errstr, size_t errstr_size);
void ld_fmap_destroy(ld_fmap_t *fm);
/* Fills out->served from the served-decision slots (pipeline/served.c). */
void ld_fmap_served(const ld_fmap_t *fm, ld_record_t *out);
/* Slot of name (len bytes, not NUL-terminated) or -1. */
int32_t ld_fmap_find(const ld_fmap_t *fm, const char *name, size_t len);
/* 1 when the slot table maps path (NUL-terminated) or anything below it
 * ("path.x"): the schema decoders compile only what is used. */
int ld_fmap_path_used(const ld_fmap_t *fm, const char *path);
/* Clears the scratch for the next record. */
void ld_fmap_reset(ld_fmap_t *fm);
/* Appends a string to strs; returns 0, or -1 when out of memory. */
int ld_fmap_push_str(ld_fmap_t *fm, const char *s, uint32_t n);
/* Builds key, time, label or features from the slots into out. Writes a
 * detail line to err on failure. */
ld_reason_t ld_fmap_finish(ld_fmap_t *fm, const void *key, size_t key_len,
                           int64_t kafka_ts_ms, ld_record_t *out, char *err,
                           size_t err_size);

/* 1 when s[0..n) is valid UTF-8 (no overlongs, no surrogates). */
int ld_utf8_valid(const char *s, size_t n);

/* ---- Format decoders ---------------------------------------------------- */

typedef struct ld_avro ld_avro_t;
ld_avro_t *ld_avro_new(const ld_pipeline_conf_t *conf, ld_record_kind_t kind,
                       ld_fmap_t *fm, char *errstr, size_t errstr_size);
void ld_avro_destroy(ld_avro_t *a);
ld_reason_t ld_avro_decode(ld_avro_t *a, ld_fmap_t *fm, const uint8_t *p,
                           size_t len, char *err, size_t err_size);

typedef struct ld_pbdec ld_pbdec_t;
ld_pbdec_t *ld_pbdec_new(ld_record_kind_t kind, char *errstr,
                         size_t errstr_size);
void ld_pbdec_destroy(ld_pbdec_t *d);
ld_reason_t ld_pbdec_decode(ld_pbdec_t *d, ld_fmap_t *fm, const uint8_t *p,
                            size_t len, char *err, size_t err_size);

/* One file of a Protobuf writer schema from the registry: its import name
 * (NULL for the schema itself) and serialized FileDescriptorProto. */
typedef struct ld_reg_file {
    char *name;
    uint8_t *data;
    size_t len;
} ld_reg_file_t;

/* Users' own Protobuf messages from a FileDescriptorSet (pbdesc.c). */
typedef struct ld_pbdesc ld_pbdesc_t;
ld_pbdesc_t *ld_pbdesc_new(const ld_pipeline_conf_t *conf,
                           ld_record_kind_t kind, ld_fmap_t *fm, char *errstr,
                           size_t errstr_size);
void ld_pbdesc_destroy(ld_pbdesc_t *d);
ld_reason_t ld_pbdesc_decode(ld_pbdesc_t *d, ld_fmap_t *fm, const uint8_t *p,
                             size_t len, char *err, size_t err_size);
/* A decoder of local's message as one writer schema of the registry
 * wrote it: files[0] is the schema, the others its references; imports
 * without a reference come from local's descriptor set. path/npath (the
 * record's message-index path) must name local's message, and every
 * mapped field the local set also has must be of a compatible type
 * (Protobuf's wire-compatible groups). The field mapping is local's (its
 * fmap, borrowed: local outlives the result). NULL with the reason in
 * errstr. files borrowed; caller frees with ld_pbdesc_destroy(). */
ld_pbdesc_t *ld_pbdesc_new_writer(const ld_pbdesc_t *local,
                                  const ld_reg_file_t *files, uint32_t nfiles,
                                  const uint32_t *path, uint32_t npath,
                                  char *errstr, size_t errstr_size);
/* 1 when path/n is the Confluent message-index path of d's message in its
 * file of the descriptor set ([0] for the first top-level message). */
int ld_pbdesc_path_matches(const ld_pbdesc_t *d, const uint32_t *path,
                           uint32_t n);
/* Fully qualified name of d's message; static in d. */
const char *ld_pbdesc_message(const ld_pbdesc_t *d);

/* The Confluent wire header at p: magic byte 0, 4-byte big-endian schema
 * id and, when protobuf, the message-index path (a zig-zag varint count,
 * then as many zig-zag varints; count 0 means [0]). Sets *id, path[0..
 * *npath) (at most cap) and *hdr, the header's bytes. Returns
 * LD_REASON_NONE, LD_REASON_BAD_MAGIC or LD_REASON_DECODE with err set. */
ld_reason_t ld_confluent_header(const uint8_t *p, size_t len, int protobuf,
                                uint32_t *id, uint32_t *path, uint32_t cap,
                                uint32_t *npath, size_t *hdr, char *err,
                                size_t err_size);

/* Schema registry client (registry.c). */
typedef struct ld_registry ld_registry_t;
typedef enum ld_reg_status {
    LD_REG_OK = 0,  /* *schema and *type set (caller frees both) */
    LD_REG_UNKNOWN, /* the registry does not know the id (404) */
    LD_REG_DOWN,    /* unreachable past registry_deadline */
    LD_REG_REFUSED  /* any other answer: auth, a bad body */
} ld_reg_status_t;
/* Client of conf->registry_url (non-empty). NULL with errstr on a bad
 * setting. Caller frees with ld_registry_destroy(). */
ld_registry_t *ld_registry_new(const ld_pipeline_conf_t *conf, char *errstr,
                               size_t errstr_size);
void ld_registry_destroy(ld_registry_t *r);
/* GET /schemas/ids/{id}: the schema text and its schemaType ("AVRO" when
 * the answer omits it), waiting while the registry is down as registry.c
 * describes. err gets a detail line unless LD_REG_OK. */
ld_reg_status_t ld_registry_get(ld_registry_t *r, uint32_t id, char **schema,
                                char **type, char *err, size_t err_size);
/* A Protobuf schema id as descriptors: GET /schemas/ids/{id}?format=
 * serialized, then each of its references (and theirs), once per import
 * name, by GET /subjects/{subject}/versions/{version}?format=serialized.
 * On LD_REG_OK *files holds *nfiles files, files[0] the schema itself
 * (caller frees with ld_reg_files_free); *nfiles is 0 when the registry
 * answered .proto text instead (it ignores format=serialized). Waits
 * while the registry is down as ld_registry_get does. */
ld_reg_status_t ld_registry_get_proto(ld_registry_t *r, uint32_t id,
                                      ld_reg_file_t **files, uint32_t *nfiles,
                                      char *err, size_t err_size);
void ld_reg_files_free(ld_reg_file_t *files, uint32_t nfiles);

/* The fully qualified name ("pkg.Outer.Inner") of the message that the
 * Confluent message-index path[0..n) names in .proto text (index i among
 * the messages declared at that level, top level first). Returns 0 with
 * out set, or -1 when the path names no message or the text does not
 * scan. */
int ld_proto_message_at(const char *text, const uint32_t *path, uint32_t n,
                        char *out, size_t out_size);

typedef struct ld_jsondec ld_jsondec_t;
ld_jsondec_t *ld_jsondec_new(ld_fmap_t *fm, char *errstr, size_t errstr_size);
void ld_jsondec_destroy(ld_jsondec_t *d);
ld_reason_t ld_jsondec_decode(ld_jsondec_t *d, ld_fmap_t *fm, const uint8_t *p,
                              size_t len, char *err, size_t err_size);
/* The two halves of ld_jsondec_decode, for test_pipeline's comparison: the
 * fast path (1: decoded into fm's slots; 0: not its shape, fm to be reset)
 * and jansson alone. */
int ld_jsondec_fast(ld_jsondec_t *d, ld_fmap_t *fm, const uint8_t *p,
                    size_t len);
ld_reason_t ld_jsondec_decode_slow(ld_jsondec_t *d, ld_fmap_t *fm,
                                   const uint8_t *p, size_t len, char *err,
                                   size_t err_size);

#endif /* LD_PIPELINE_INTERNAL_H */
