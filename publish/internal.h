/* SPDX-License-Identifier: Apache-2.0 */
/* Shared inside publish/: the publisher's layout, read by publish.c (the
 * queue and the two implementations) and commit.c (the resume state of a
 * commit point). */
#ifndef LD_PUBLISH_INTERNAL_H
#define LD_PUBLISH_INTERNAL_H

#include "publish/publish.h"

/* A decision waiting for the next commit point, with the snapshot it
 * publishes (PASS) or NULL (event only). */
typedef struct outgoing {
    ld_trigger_decision_t *decision; /* NULL: --until-caught-up's final */
    ld_snapshot_t *snap;
    uint64_t version;
    Learnd__V1__Lineage *lineage; /* input since the parent; owned */
} outgoing_t;

typedef struct pub_ops {
    ld_err_t (*queue)(ld_publisher_t *p, outgoing_t *o);
    ld_err_t (*flush)(ld_publisher_t *p, rd_kafka_t *producer);
    ld_err_t (*record)(ld_publisher_t *p, rd_kafka_t *producer,
                       const char *topic, const char *key, const void *val,
                       size_t len);
} pub_ops_t;

struct ld_publisher {
    const pub_ops_t *ops;
    ld_publisher_conf_t c;
    ld_resume_counters_t ctr;
    uint64_t commit_seq, first_commit_seq; /* commit.c */
    ld_state_gens_t gens;                  /* commit.c: blocks on the topic */
    uint64_t state_bytes;                  /* commit.c: last commit's */
    outgoing_t *out;
    size_t nout, capout;
    /* Delivery offsets of a publication's chunks and manifest: librdkafka
     * writes them from delivery reports, possibly after a failed publish
     * returned, so they live until the producer is gone (see
     * ld_publisher_destroy). */
    int64_t *pub_offsets;
    size_t pub_cap;
    /* capture */
    uint64_t stop_version;
    ld_snapshot_t *captured;
    int captured_once;
    uint64_t n_captured;
};

#endif /* LD_PUBLISH_INTERNAL_H */
