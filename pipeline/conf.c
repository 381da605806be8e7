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
     "Avro schema (.avsc) of events: field names refer to it, and it is the "
     "writer schema of plain records; required for format avro"},
    {"label_schema", LD_CONF_STRING, F(label_schema), "", 0, 0, NULL,
     "Avro schema (.avsc) of labels, as event_schema; required for format "
     "avro"},
    {"max_record_bytes", LD_CONF_SIZE, F(max_record_bytes), "1MiB", 16,
     64.0 * 1024 * 1024, NULL,
     "Records larger than this go to the dead-letter topic"},
    /* 65535: what the joiner's compact pending form holds; a larger bound
     * let records through that the joiner then refused with a warning. */
    {"max_features", LD_CONF_INT, F(max_features), "4096", 1, 65535, NULL,
     "Records with more non-zero features go to the dead-letter topic"},
    {"prefetch_memory", LD_CONF_SIZE, F(prefetch_memory), "384MiB",
     16.0 * 1024 * 1024, 64.0 * 1024 * 1024 * 1024, NULL,
     "Input fetched ahead of the loop, in all: shared evenly by the "
     "partitions of both input topics (each between 2 MiB and 80 MiB: "
     "a prefetch queue and one fetch), so few partitions read as fast as "
     "many; kafka: queued.max.messages.kbytes and fetch.message.max.bytes "
     "override it"},
    {"hash_seed", LD_CONF_INT, F(hash_seed), "0", 0, 4294967295.0, NULL,
     "Seed of the 32-bit feature hash (murmur3_x86_32, see pipeline/hash.h)"},
    {"key_field", LD_CONF_STRING, F(key_field), "", 0, 0, NULL,
     "Field holding the join key; empty: the Kafka record key (protobuf: "
     "any non-empty value means Event/Label.event_id)"},
    {"time_source", LD_CONF_ENUM, F(time_source), "field", 0, 0,
     "field|kafka_timestamp",
     "Event time from a field (milliseconds since the epoch) or the Kafka "
     "timestamp (protobuf: event_time_ms / label_time_ms)"},
    {"event_time_field", LD_CONF_STRING, F(event_time_field), "event_time", 0,
     0, NULL, "Field of events holding the event time"},
    {"label_time_field", LD_CONF_STRING, F(label_time_field), "label_time", 0,
     0, NULL, "Field of labels holding the label time"},
    {"dense_fields", LD_CONF_STRLIST, F(dense_fields), "", 0, 0, NULL,
     "Numeric fields of events, in order, forming the dense block (absent: "
     "0); nested fields as a.b"},
    {"hash_fields", LD_CONF_STRLIST, F(hash_fields), "", 0, 0, NULL,
     "Categorical, string and string-array fields of events to hash, as "
     "field or namespace:field (namespace defaults to the field name)"},
    {"crosses", LD_CONF_STRLIST, F(crosses), "", 0, 0, NULL,
     "Namespace crosses, each a list like [country, ad_id] (as VW -q)"},
    {"label_mode", LD_CONF_ENUM, F(label_mode), "numeric", 0, 0,
     "numeric|equals|presence",
     "Label value: label_field as a number, label_field == label_equals, or "
     "1 for every label record"},
    {"label_field", LD_CONF_STRING, F(label_field), "value", 0, 0, NULL,
     "Field of labels holding the label (protobuf: Label.value)"},
    {"label_equals", LD_CONF_STRING, F(label_equals), "", 0, 0, NULL,
     "Text the label field must equal for label 1 (label_mode equals); "
     "other records are no label, only their time counts"},
    {"served_variant_field", LD_CONF_STRING, F(served_variant_field), "", 0, 0,
     NULL,
     "Field of events naming the variant (model version) that served it; "
     "names not in experiments count as `other`; empty: none"},
    {"served_score_field", LD_CONF_STRING, F(served_score_field), "", 0, 0,
     NULL, "Field of events holding the score the served variant returned"},
    {"served_shadow_fields", LD_CONF_STRLIST, F(served_shadow_fields), "", 0, 0,
     NULL,
     "Scores of shadow variants that ran on the event but were not served, "
     "as variant:field (at most 4)"},
    {"served_propensity_field", LD_CONF_STRING, F(served_propensity_field), "",
     0, 0, NULL,
     "Field of events holding the probability, in (0, 1], that the served "
     "variant was chosen"},
    {"avro_wire", LD_CONF_ENUM, F(avro_wire), "auto", 0, 0,
     "auto|plain|confluent",
     "Avro framing: plain datum, or Confluent magic byte + schema id; auto "
     "is confluent when schema_ids is set"},
    {"event_writer_schema", LD_CONF_STRING, F(event_writer_schema), "", 0, 0,
     NULL,
     "Writer schema of plain Avro events when it differs from event_schema "
     "(resolved by Avro rules, reader defaults applied)"},
    {"label_writer_schema", LD_CONF_STRING, F(label_writer_schema), "", 0, 0,
     NULL, "Writer schema of plain Avro labels, as event_writer_schema"},
    {"schema_ids", LD_CONF_STRLIST, F(schema_ids), "", 0, 0, NULL,
     "Confluent schema ids mapped to local writer schemas, as "
     "\"id=path.avsc\""},
    {"descriptor_set", LD_CONF_STRING, F(descriptor_set), "", 0, 0, NULL,
     "Format protobuf: a FileDescriptorSet of the users' own messages "
     "(protoc --descriptor_set_out=FILE --include_imports); empty: the "
     "canonical learnd.v1.Event / Label"},
    {"event_message", LD_CONF_STRING, F(event_message), "", 0, 0, NULL,
     "Fully qualified message of events in descriptor_set (pkg.Message)"},
    {"label_message", LD_CONF_STRING, F(label_message), "", 0, 0, NULL,
     "Fully qualified message of labels in descriptor_set (pkg.Message)"},
    {"protobuf_wire", LD_CONF_ENUM, F(protobuf_wire), "plain", 0, 0,
     "plain|confluent",
     "Protobuf framing: the bare message, or Confluent magic byte, schema "
     "id and message-index path"},
    {"json_wire", LD_CONF_ENUM, F(json_wire), "plain", 0, 0, "plain|confluent",
     "JSON framing: the bare text, or Confluent magic byte and schema id"},
    {"registry_url", LD_CONF_STRING, F(registry_url), "", 0, 0, NULL,
     "Schema registry (Confluent REST API; Apicurio: .../apis/ccompat/v7) "
     "asked for Confluent-framed schema ids that schema_ids does not list; "
     "empty: none"},
    {"registry_user", LD_CONF_STRING, F(registry_user), "", 0, 0, NULL,
     "Basic-auth user of the schema registry"},
    {"registry_password", LD_CONF_STRING, F(registry_password), "", 0, 0, NULL,
     "Basic-auth password of the schema registry; use ${ENV}"},
    {"registry_ca_file", LD_CONF_STRING, F(registry_ca_file), "", 0, 0, NULL,
     "CA bundle (PEM) that verifies an https registry; empty: the system's"},
    {"registry_cert_file", LD_CONF_STRING, F(registry_cert_file), "", 0, 0,
     NULL, "Client certificate (PEM) for a registry that asks for one"},
    {"registry_key_file", LD_CONF_STRING, F(registry_key_file), "", 0, 0, NULL,
     "Private key (PEM) of registry_cert_file"},
    {"registry_timeout", LD_CONF_DURATION, F(registry_timeout_ms), "5s", 100,
     600000, NULL, "Timeout of one registry request"},
    {"registry_deadline", LD_CONF_DURATION, F(registry_deadline_ms), "30s", 0,
     240000, NULL,
     "How long input waits for an unreachable registry (per outage) before "
     "records with unseen schema ids go to the dead-letter topic"},
    {"dlq_max_bytes", LD_CONF_SIZE, F(dlq_max_bytes), "900KiB", 0,
     64.0 * 1024 * 1024, NULL,
     "Dead-letter values are cut to this size (header learnd.src.size "
     "keeps the original)"},
    {"max_future", LD_CONF_DURATION, F(max_future_ms), "1h", 0,
     365.0 * 86400 * 1000, NULL,
     "Records whose event time is more than this ahead of their Kafka "
     "timestamp go to the dead-letter topic (future_time); 0: no bound"},
};

const ld_conf_section_t ld_pipeline_conf_section = {
    "pipeline", "Input topics, decoding, feature mapping and hashing",
    LD_CONF_ROWS(rows)};
