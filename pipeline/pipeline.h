/* SPDX-License-Identifier: Apache-2.0 */
/* The ingest stage: Kafka input topics, decoding, feature hashing, DLQ. */
#ifndef LD_PIPELINE_H
#define LD_PIPELINE_H

#include <librdkafka/rdkafka.h>

#include "common/common.h"
#include "pipeline/record.h"

/* Wire format of the input topics. */
typedef enum ld_format {
    LD_FORMAT_AVRO = 0,
    LD_FORMAT_PROTOBUF = 1,
    LD_FORMAT_JSON = 2
} ld_format_t;

/* Where a record's event time comes from. */
typedef enum ld_time_source {
    LD_TIME_FIELD = 0,          /* event_time_field / label_time_field */
    LD_TIME_KAFKA_TIMESTAMP = 1 /* the Kafka record timestamp */
} ld_time_source_t;

/* How a label record becomes a label value. */
typedef enum ld_label_mode {
    LD_LABEL_NUMERIC = 0, /* label_field as a number (booleans 1/0) */
    LD_LABEL_EQUALS = 1,  /* 1 when label_field's text == label_equals */
    LD_LABEL_PRESENCE = 2 /* every label record means 1 */
} ld_label_mode_t;

/* How Avro values are framed. */
typedef enum ld_avro_wire {
    LD_AVRO_WIRE_AUTO = 0,     /* confluent when schema_ids is set */
    LD_AVRO_WIRE_PLAIN = 1,    /* bare binary datum, writer = *_schema */
    LD_AVRO_WIRE_CONFLUENT = 2 /* magic 0, 4-byte BE schema id, datum */
} ld_avro_wire_t;

/* pipeline: where input comes from, how it maps to features, and where bad
 * input goes. Filled from the config table ld_pipeline_conf_section. */
typedef struct ld_pipeline_conf {
    char *events_topic;
    char *labels_topic;
    char *dlq_topic;
    char *group_id;
    int format; /* ld_format_t */
    char *event_schema;
    char *label_schema;
    int64_t max_record_bytes;
    int64_t max_features;
    int64_t hash_bits;
    int64_t hash_seed;
    /* field mapping */
    char *key_field;
    int time_source; /* ld_time_source_t */
    char *event_time_field;
    char *label_time_field;
    ld_strlist_t dense_fields;
    ld_strlist_t hash_fields; /* "field" or "namespace:field" */
    ld_strlist_t crosses;     /* "nsA,nsB[,nsC]" */
    int label_mode;           /* ld_label_mode_t */
    char *label_field;
    char *label_equals;
    /* Avro framing and schema evolution */
    int avro_wire; /* ld_avro_wire_t */
    char *event_writer_schema;
    char *label_writer_schema;
    ld_strlist_t schema_ids; /* "id=path.avsc" */
    /* dead-letter topic */
    int64_t dlq_max_bytes;
} ld_pipeline_conf_t;

extern const ld_conf_section_t ld_pipeline_conf_section;

/* ---- Reasons a record is dead-lettered ---------------------------------- */

/* Why a record went to the dead-letter topic; the name is the value of the
 * learnd.error header and the metrics label. */
typedef enum ld_reason {
    LD_REASON_NONE = 0,
    LD_REASON_DECODE,            /* undecodable: truncated, bad varint, ... */
    LD_REASON_BAD_MAGIC,         /* Confluent framing expected, byte 0 != 0 */
    LD_REASON_UNKNOWN_SCHEMA,    /* schema id not mapped, or not resolvable */
    LD_REASON_BAD_UTF8,          /* a string used as key/feature is not UTF-8 */
    LD_REASON_BAD_TYPE,          /* a mapped field holds an unusable type */
    LD_REASON_DUPLICATE_FIELD,   /* the same field twice in one record */
    LD_REASON_MISSING_KEY,       /* no join key */
    LD_REASON_MISSING_TIME,      /* no event time */
    LD_REASON_MISSING_LABEL,     /* numeric label mode, label field absent */
    LD_REASON_NOT_FINITE,        /* NaN or +-Inf in a mapped number */
    LD_REASON_OVERSIZE,          /* value larger than max_record_bytes */
    LD_REASON_TOO_MANY_FEATURES, /* more than max_features non-zeros */
    LD_REASON_EMPTY,             /* empty or null value */
    LD_REASON__COUNT
} ld_reason_t;

/* Static snake_case name of reason ("missing_key"); never NULL. */
const char *ld_reason_name(ld_reason_t reason);

#endif /* LD_PIPELINE_H */
