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

/* How Protobuf and JSON values are framed. */
typedef enum ld_wire {
    LD_WIRE_PLAIN = 0,    /* the bare message or JSON text */
    LD_WIRE_CONFLUENT = 1 /* magic 0, 4-byte BE schema id (Protobuf: then the
                             message-index path), the message */
} ld_wire_t;

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
    int64_t prefetch_memory; /* bytes, over all partitions of both topics */
    int64_t hash_bits; /* not a row: the daemon copies trainer.hash_bits, so
                          the model has a slot for every hashed feature */
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
    /* served-decision fields of events (experiments/, docs/EXPERIMENTS.md);
     * "" = none */
    char *served_variant_field;
    char *served_score_field;
    ld_strlist_t served_shadow_fields; /* "variant:field" */
    char *served_propensity_field;
    /* Avro framing and schema evolution */
    int avro_wire; /* ld_avro_wire_t */
    char *event_writer_schema;
    char *label_writer_schema;
    ld_strlist_t schema_ids; /* "id=path.avsc" */
    /* users' own Protobuf messages (pipeline/pbdesc.c) */
    char *descriptor_set; /* FileDescriptorSet file; "" = learnd.v1 */
    char *event_message;  /* fully qualified message names */
    char *label_message;
    int protobuf_wire; /* ld_wire_t */
    int json_wire;     /* ld_wire_t */
    /* schema registry (pipeline/registry.c); "" = none */
    char *registry_url;
    char *registry_user;
    char *registry_password;
    char *registry_ca_file;
    char *registry_cert_file;
    char *registry_key_file;
    int64_t registry_timeout_ms;
    int64_t registry_deadline_ms;
    /* dead-letter topic */
    int64_t dlq_max_bytes;
    /* event times more than this ahead of the record's Kafka timestamp
     * are dead letters (future_time); 0: no bound */
    int64_t max_future_ms;
    int assign_all;    /* not a row: a replay reads every partition of both
                          topics itself (assigned callback included) and joins
                          no consumer group */
    const char *model; /* not a row: the daemon copies trainer.name; dead
                          letters name it (header learnd.model) */
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
    LD_REASON_KEY_TOO_LONG,      /* join key over 255 bytes */
    LD_REASON_TIME_RANGE,        /* event time beyond +-2^61 ms */
    LD_REASON_FUTURE_TIME,       /* event time > Kafka timestamp + max_future */
    LD_REASON__COUNT
} ld_reason_t;

/* Static snake_case name of reason ("missing_key"); never NULL. Thread: any. */
const char *ld_reason_name(ld_reason_t reason);

/* ---- The ingest stage --------------------------------------------------- */

/*
 * One high-level consumer in group `group_id` subscribed to the events and
 * labels topics, plus the (transactional) producer that writes the
 * dead-letter topic and that the other stages use for their output in the
 * same transaction. Not thread-safe: one thread at a time may call the
 * functions below (the daemon's ingest thread polls while its loop thread
 * waits to commit; see daemon/ingest.h); the rebalance and dead-letter
 * callbacks run inside ld_pipeline_poll(). The producer handle itself may
 * be used from any thread.
 *
 * Thread tags on each function: "any"; "ingest", the thread that polls
 * (in the daemon, daemon/ingest.c's); "owner", whichever thread owns the
 * consumer: the ingest thread while it runs, the loop thread while the
 * ingest thread is parked (LD_INGEST_PAUSED) or stopped.
 *
 * Consumer settings that the join's correctness depends on are forced:
 * enable.auto.commit=false and enable.auto.offset.store=false (learnd
 * commits offsets itself, in the transaction), isolation.level=
 * read_committed, partition.assignment.strategy=range (with co-partitioned
 * topics, range gives partition p of both topics to the same member; the
 * cooperative and round-robin assignors do not). Fetch settings tuned for
 * throughput unless the `kafka:` map sets them: fetch.wait.max.ms=100 (an
 * idle partition answers in 100 ms, not 500), fetch.min.bytes=1 (no added
 * latency), fetch.message.max.bytes=1MiB per partition and
 * fetch.max.bytes=64MiB per request, queued.min.messages=10000000 and
 * queued.max.messages.kbytes=2048 (each partition is read from its own
 * queue, so this bounds each partition's prefetch; see ld_pipeline_poll),
 * check.crcs=false (TCP and the broker already check).
 */
typedef struct ld_pipeline ld_pipeline_t;

/* How the later stages learn about partition gain and loss. */
typedef struct ld_pipeline_cbs {
    void *opaque;
    /* Partitions gained (both topics; rd_kafka_topic_partition_t.opaque is
     * unused). Each .offset is RD_KAFKA_OFFSET_INVALID (resume from the
     * group's committed offset); the callback may set a start offset of
     * its own (resume state). May be NULL. */
    void (*assigned)(void *opaque, rd_kafka_topic_partition_list_t *parts);
    /* Partitions taken away. lost != 0 when they were lost without a clean
     * revoke (session timeout): another member may own them already and
     * nothing may be committed for them. Otherwise the daemon may commit
     * its open transaction here. parts borrowed. May be NULL. */
    void (*revoked)(void *opaque, const rd_kafka_topic_partition_list_t *parts,
                    int lost);
    /* A record was dead-lettered (or, in a dry run, counted as such), on
     * the thread calling ld_pipeline_poll(): its position is consumed
     * although no record is returned for it. May be NULL. */
    void (*dead_lettered)(void *opaque, const char *topic, int32_t partition,
                          int64_t offset);
} ld_pipeline_cbs_t;

/* Per-topic counters for metrics. */
typedef struct ld_pipeline_stats {
    uint64_t records[2];               /* decoded, per ld_record_kind_t */
    uint64_t bytes[2];                 /* value bytes consumed */
    uint64_t dlq[2][LD_REASON__COUNT]; /* dead-lettered, per reason */
    uint64_t txn_commits, txn_aborts;
} ld_pipeline_stats_t;

/* Hands each librdkafka setting the pipeline's consumer runs with, unless
 * the kafka: map overrides a tunable one, to set (group.id and client.id
 * aside): for benchmarks whose plain consumer must fetch and queue exactly
 * like the pipeline's. A plain consumer reads one queue, so it gets the
 * prefetch bounds meant for one queue; the pipeline's, reading a queue per
 * partition, bounds each partition's prefetch instead (2 MiB). Thread: any. */
typedef void ld_pipeline_setting_cb(void *opaque, const char *key,
                                    const char *value);
void ld_pipeline_consumer_settings(ld_pipeline_setting_cb *set, void *opaque);

/* Creates the pipeline: decoders (schemas loaded and compiled), producer
 * (transactions initialised when transactional_id is non-empty, else an
 * idempotent producer and plain offset commits), consumer; checks that
 * both input topics exist and are co-partitioned, and subscribes. conf and
 * kafka (the `kafka:` map, pairs) are borrowed; cbs is copied (may be
 * NULL). Returns NULL with the reason in errstr: config error, missing
 * topic, different partition counts ("... are not co-partitioned ..."),
 * broker unreachable within timeout_ms. With conf->assign_all it assigns
 * every partition of both topics instead of subscribing, through the
 * assigned callback as a group assignment would (offsets the callback
 * leaves unset start at the earliest record). Caller frees with
 * ld_pipeline_destroy(). Thread: any (before any other call). */
ld_pipeline_t *ld_pipeline_new(const ld_pipeline_conf_t *conf,
                               const ld_strlist_t *kafka,
                               const char *transactional_id,
                               const ld_pipeline_cbs_t *cbs, int timeout_ms,
                               char *errstr, size_t errstr_size);

/* Returns the next good record in *out (borrowed, valid until the next call;
 * see ld_record_t), waiting up to timeout_ms. Across partitions records come
 * in Kafka timestamp order as far as the fetched data allows (each
 * partition is read from its own queue), each partition in offset order;
 * a backlog is thus read about as it was written. Bad records met on the way
 * are dead-lettered (opening the transaction if needed) and counted.
 * Returns LD_OK, LD_ERR_TIMEOUT when nothing arrived (also early: when a
 * partition reached its end meanwhile, so that the caller looks at
 * ld_pipeline_caught_up() at once, or after ld_pipeline_wake()), LD_ERR_FENCED
 * when another instance took the transactional id, LD_ERR_KAFKA on a fatal
 * client error (logged). Thread: ingest. */
ld_err_t ld_pipeline_poll(ld_pipeline_t *p, int timeout_ms,
                          ld_record_t *out) LD_WUR;

/* Next offset (last record returned or dead-lettered + 1) of every assigned
 * partition that has consumed something. Caller frees with
 * rd_kafka_topic_partition_list_destroy(); NULL when out of memory. Thread:
 * owner. */
rd_kafka_topic_partition_list_t *ld_pipeline_position(const ld_pipeline_t *p);

/* The group's committed offset of partition of kind's topic as read when
 * it was last assigned (a stable read: offsets of a transaction still open
 * are waited for), and its metadata (borrowed, NULL when empty; valid until
 * the next rebalance). LD_ERR_NOENT when none is committed (*offset -1),
 * LD_ERR_KAFKA when the committed offsets could not be read. Thread:
 * owner (the assigned callback included). */
ld_err_t ld_pipeline_committed(const ld_pipeline_t *p, ld_record_kind_t kind,
                               int32_t partition, int64_t *offset,
                               const void **meta, size_t *meta_len) LD_WUR;

/* Calls cb for every assigned partition with its lag: the partition's end
 * offset as last seen by the consumer (no broker round trip) minus the next
 * offset to process. Partitions with nothing consumed yet are skipped. Thread:
 * owner. */
typedef void ld_pipeline_lag_cb(void *opaque, const char *topic,
                                int32_t partition, int64_t lag);
void ld_pipeline_lag(ld_pipeline_t *p, ld_pipeline_lag_cb *cb, void *opaque);

/* Replays re-read input that was dead-lettered before: with dry set, bad
 * records are counted but not written to the dead-letter topic. Thread: owner.
 */
void ld_pipeline_set_dry_run(ld_pipeline_t *p, int dry);

/* Makes a waiting (or the next) ld_pipeline_poll() return LD_ERR_TIMEOUT at
 * once instead of at its deadline: the daemon's loop asks its ingest thread
 * to park or stop, and that thread must not sit out a 100 ms wait for
 * records that are not coming (at the end of the input: ~100-200 ms of
 * every `--until-caught-up` run and replay; at each commit point of an
 * idle stream). Thread: any. */
void ld_pipeline_wake(ld_pipeline_t *p);

/* True once every assigned partition of both topics has been read to its
 * end at least once since it was assigned (the end offsets that existed
 * then are behind us): `--until-caught-up` and the demo stop on it. False
 * while nothing is assigned. Thread: owner. */
int ld_pipeline_caught_up(ld_pipeline_t *p);

/* Opens a transaction unless one is open (no-op without transactions). Thread:
 * owner. */
ld_err_t ld_pipeline_txn_begin(ld_pipeline_t *p) LD_WUR;

/* Commit point: sends offsets (borrowed; NULL means ld_pipeline_position())
 * to the open transaction with the consumer's group metadata and commits
 * it, with everything produced through ld_pipeline_producer() since
 * begin. Without transactions: flushes the producer, then commits the
 * offsets synchronously. Returns LD_OK, LD_ERR_FENCED (fatal: exit), or
 * LD_ERR_KAFKA after aborting a transaction that could not commit (the
 * consumer has been rewound to the committed offsets). Thread: owner. */
ld_err_t ld_pipeline_txn_commit(ld_pipeline_t *p,
                                const rd_kafka_topic_partition_list_t *offsets,
                                int timeout_ms) LD_WUR;

/* Aborts the open transaction and rewinds every assigned partition to its
 * committed offset, so nothing the aborted transaction covered is lost. Thread:
 * owner. */
ld_err_t ld_pipeline_txn_abort(ld_pipeline_t *p, int timeout_ms) LD_WUR;

/* Back-pressure: stops (resumes) reading partition of the topic of kind;
 * partition -1 means every assigned partition of that topic. A paused
 * partition keeps what was prefetched (librdkafka stops fetching it once
 * its queue is full) and its end-of-partition event. Called on the polling
 * thread (or while it waits). LD_ERR_NOENT: partition not assigned. Thread:
 * owner. */
ld_err_t ld_pipeline_pause(ld_pipeline_t *p, ld_record_kind_t kind,
                           int32_t partition) LD_WUR;
ld_err_t ld_pipeline_resume(ld_pipeline_t *p, ld_record_kind_t kind,
                            int32_t partition) LD_WUR;

/* The producer, for the other stages' output (checkpoints, triggers, state,
 * audit) inside the same transaction. Borrowed; never destroy it. Thread: any.
 * A record produced with an int64_t * as its opaque has its offset stored
 * there atomically once delivered, or -1 when it failed: set it to
 * LD_PIPELINE_OFFSET_PENDING before and read it with an atomic load, from
 * any thread (whichever polls the producer runs the report). */
rd_kafka_t *ld_pipeline_producer(ld_pipeline_t *p);
#define LD_PIPELINE_OFFSET_PENDING INT64_MIN

/* The delivery report of learnd's producers, for one made elsewhere (the
 * train role's): the offset contract of ld_pipeline_producer(), and a log
 * line for a failure that is not an abort's purge. Thread: librdkafka's
 * (whichever thread polls the producer). */
void ld_pipeline_delivered(rd_kafka_t *rk, const rd_kafka_message_t *m,
                           void *opaque);

/* Copies the counters into *out. Thread: owner. */
void ld_pipeline_stats(const ld_pipeline_t *p, ld_pipeline_stats_t *out);

/* Leaves the group (the revoked callback runs) within timeout_ms. Call
 * after the last commit; ld_pipeline_destroy() still has to follow. Thread:
 * owner. */
ld_err_t ld_pipeline_close(ld_pipeline_t *p, int timeout_ms) LD_WUR;

/* Frees everything (closing the consumer first if ld_pipeline_close() was
 * not called); NULL is a no-op. An open transaction is aborted. Thread: owner
 * (the ingest thread joined). */
void ld_pipeline_destroy(ld_pipeline_t *p);

#endif /* LD_PIPELINE_H */
