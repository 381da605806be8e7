/* SPDX-License-Identifier: Apache-2.0 */
/* The pipeline's config table. */
#include <stddef.h>

#include "pipeline/pipeline.h"

#define F(field) offsetof(ld_pipeline_conf_t, field)

static const ld_conf_row_t rows[] = {
    {"events_topic", LD_CONF_STRING, F(events_topic), NULL, 0, 0, NULL,
     "Topic of prediction-time events (co-partitioned with labels_topic)"},
    {"labels_topic", LD_CONF_STRING, F(labels_topic), NULL, 0, 0, NULL,
     "Topic of natural labels, keyed by the same join key"},
    {"dlq_topic", LD_CONF_STRING, F(dlq_topic), "learnd.dlq", 0, 0, NULL,
     "Dead-letter topic for records that cannot be used"},
    {"group_id", LD_CONF_STRING, F(group_id), "learnd", 0, 0, NULL,
     "Consumer group of the input topics"},
    {"format", LD_CONF_ENUM, F(format), "avro", 0, 0, "avro|protobuf|json",
     "Wire format of both input topics"},
    {"event_schema", LD_CONF_STRING, F(event_schema), "", 0, 0, NULL,
     "Avro writer schema (.avsc) of events; required for format avro"},
    {"label_schema", LD_CONF_STRING, F(label_schema), "", 0, 0, NULL,
     "Avro writer schema (.avsc) of labels; required for format avro"},
    {"max_record_bytes", LD_CONF_SIZE, F(max_record_bytes), "1MiB", 16,
     64.0 * 1024 * 1024, NULL,
     "Records larger than this go to the dead-letter topic"},
    {"max_features", LD_CONF_INT, F(max_features), "4096", 1, 1 << 20, NULL,
     "Records with more non-zero features go to the dead-letter topic"},
    {"hash_bits", LD_CONF_INT, F(hash_bits), "22", 1, 30, NULL,
     "Hashed features fall into 2^hash_bits slots"},
    {"hash_seed", LD_CONF_INT, F(hash_seed), "0", 0, 4294967295.0, NULL,
     "Seed of the 32-bit feature hash"},
};

const ld_conf_section_t ld_pipeline_conf_section = {
    "pipeline", "Input topics, decoding and feature hashing",
    LD_CONF_ROWS(rows)};
