/* SPDX-License-Identifier: Apache-2.0 */
/* The ingest stage: Kafka input topics, decoding, feature hashing, DLQ. */
#ifndef LD_PIPELINE_H
#define LD_PIPELINE_H

#include "common/common.h"
#include "pipeline/record.h"

/* Wire format of the input topics. */
typedef enum ld_format {
    LD_FORMAT_AVRO = 0,
    LD_FORMAT_PROTOBUF = 1,
    LD_FORMAT_JSON = 2
} ld_format_t;

/* pipeline: where input comes from and where bad input goes. */
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
} ld_pipeline_conf_t;

extern const ld_conf_section_t ld_pipeline_conf_section;

#endif /* LD_PIPELINE_H */
