/* SPDX-License-Identifier: Apache-2.0 */
/* librdkafka configuration from learnd's `kafka:` map, logs routed to
 * ld_log. */
#ifndef LD_PIPELINE_KAFKA_H
#define LD_PIPELINE_KAFKA_H

#include <librdkafka/rdkafka.h>

#include "common/common.h"

/* Builds a librdkafka conf from props (pairs key0, value0, key1, ...; the
 * `kafka:` map of the config, borrowed), with librdkafka's log lines routed
 * through ld_log (module "kafka"). Returns NULL with the reason in errstr
 * when a property is unknown or invalid; the reason never contains the value
 * of a secret property. Caller owns the result (rd_kafka_new() takes it on
 * success, else rd_kafka_conf_destroy()). */
rd_kafka_conf_t *ld_kafka_conf_new(const ld_strlist_t *props, char *errstr,
                                   size_t errstr_size);

/* Sets one property on conf, with the same secret-safe error text. */
ld_err_t ld_kafka_conf_set(rd_kafka_conf_t *conf, const char *key,
                           const char *value, char *errstr,
                           size_t errstr_size) LD_WUR;

/* A topic to create: name, partitions, whether it is compacted, and
 * whether it keeps its records regardless of their age (retention.ms=-1:
 * for records stamped with event times from the past, which time retention
 * would delete at its next check). */
typedef struct ld_kafka_topic_spec {
    const char *name;
    int partitions;
    int compacted;
    int keep_forever;
} ld_kafka_topic_spec_t;

/* Creates the topics that do not exist yet (replication factor: the
 * broker's default), through the cluster reached with props (borrowed).
 * Existing topics are left as they are. Returns LD_OK, or LD_ERR_KAFKA with
 * the first failure in errstr. */
ld_err_t ld_kafka_create_topics(const ld_strlist_t *props,
                                const ld_kafka_topic_spec_t *topics, size_t n,
                                int timeout_ms, char *errstr,
                                size_t errstr_size) LD_WUR;

#endif /* LD_PIPELINE_KAFKA_H */
