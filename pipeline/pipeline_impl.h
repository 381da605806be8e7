/* SPDX-License-Identifier: Apache-2.0 */
/* Inside the pipeline: the ingest stage's state, shared by pipeline.c
 * (reading, rebalances, dead letters, transactions) and pipeline_setup.c
 * (the clients' creation and the subscription). Not for other stages. */
#ifndef LD_PIPELINE_PIPELINE_IMPL_H
#define LD_PIPELINE_PIPELINE_IMPL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "pipeline/decode.h"
#include "pipeline/kafka.h"
#include "pipeline/pipeline.h"

#define MOD "pipeline"

/* Records taken from a partition queue per librdkafka call: each call
 * reads the clock (max.poll.interval.ms bookkeeping), ~20 ns here, once per
 * record when taken one by one. */
#define PQ_BATCH 32

/* One assigned partition read from its own queue (see "Time-aligned
 * reading" in pipeline.c). */
typedef struct pq {
    rd_kafka_queue_t *q;      /* the partition's fetch queue, not forwarded */
    rd_kafka_message_t *head; /* taken from q, not handed out yet */
    /* taken from q with head, in order, not looked at yet: buf[ibuf..nbuf) */
    rd_kafka_message_t *buf[PQ_BATCH];
    int32_t ibuf, nbuf;
    int64_t ts; /* head's Kafka timestamp */
    int32_t at; /* index in the heap, or -1 */
    int32_t part;
    int kind;
    int paused;
    int at_end;         /* its end-of-partition event came after its last
                           record */
    int64_t hold_until; /* empty while behind: the merge waits for it until
                           then (monotonic ms); 0 not holding, -1 gave up */
} pq_t;

/* Next offset per partition of one input topic (-1: nothing consumed). */
typedef struct positions {
    int64_t *next;
    int32_t n;
} positions_t;

struct ld_pipeline {
    char *topic[2]; /* per ld_record_kind_t */
    char *dlq_topic;
    char *dlq_group, *dlq_model; /* named in each dead letter's headers */
    size_t dlq_max;
    ld_decoder_t *dec[2];
    rd_kafka_t *consumer;
    rd_kafka_t *producer;
    int transactional;
    int in_txn;
    int closed;
    ld_pipeline_cbs_t cbs;
    positions_t pos[2];
    positions_t eof[2]; /* 1 once a partition reached its end since assigned */
    positions_t floor[2]; /* the group's committed offset at assignment */
    /* the committed offsets and metadata read at the last assignment
     * (ld_pipeline_committed); NULL when they could not be read */
    rd_kafka_topic_partition_list_t *committed;
    int reset_beginning; /* auto.offset.reset is ours (earliest) */
    uint64_t eofs;       /* end-of-partition events seen, to spot news */
    uint64_t eofs_checked;
    int caught_up;
    int dry_run; /* replay: dead letters are counted, never written */
    rd_kafka_message_t *last; /* backs the record last returned */
    /* The consumer's handle of each input topic, referenced so that the
     * pointer cannot be reused: a message's kind is then one pointer
     * compare instead of strcmp of its topic name per record. */
    rd_kafka_topic_t *rkt[2];
    ld_pipeline_stats_t stats;
    uint64_t polls;
    ld_err_t fatal;
    int32_t nparts; /* of each input topic (they are co-partitioned) */
    /* time-aligned reading */
    pq_t *pq[2];    /* per partition of each input topic; q NULL: none */
    int32_t npq[2]; /* array sizes */
    int32_t *heap;  /* partitions with a head, oldest timestamp first */
    int32_t heap_n, heap_cap;
    int32_t refill;  /* its head was handed out: take its next first; -1 */
    int32_t holding; /* partitions with hold_until > 0 */
    unsigned takes;  /* look at the empty queues every 256 */
    int wake[2];     /* pipe: librdkafka writes when a queue gets records */
    rd_kafka_queue_t *cq; /* the consumer queue, for its wake-up */
    atomic_int woken;     /* ld_pipeline_wake() since the last poll */
};

/* The consumer's rebalance callback (opaque: the pipeline): keeps the
 * positions and the per-partition queues in step with the assignment. */
void ld_pipeline_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                              rd_kafka_topic_partition_list_t *parts,
                              void *opaque);
/* A replay's manual assignment of every partition of both topics. */
ld_err_t ld_pipeline_assign_all(ld_pipeline_t *p);
/* Sends record m of input kind to the dead-letter topic in the open
 * transaction (only counts it in a dry run), with reason why (pipeline/
 * dead_letter.c). Thread: the one polling. */
ld_err_t ld_pipeline_dead_letter(ld_pipeline_t *p, const rd_kafka_message_t *m,
                                 int kind, ld_reason_t why, const char *detail);

#endif
