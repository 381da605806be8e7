/* SPDX-License-Identifier: Apache-2.0 */
/* Shared inside publish/: the publisher's layout, read by publish.c (the
 * queue and the two implementations) and commit.c (the resume state of a
 * commit point). */
#ifndef LD_PUBLISH_INTERNAL_H
#define LD_PUBLISH_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "publish/publish.h"

/* A decision waiting for the next commit point, with the snapshot it
 * publishes (PASS) or NULL (event only). The parent is fixed when it is
 * queued (the publication queued before it, or the last committed one), so
 * that the publisher thread never reads the loop's counters; the result
 * fields are the publisher's once it took the entry. */
typedef struct outgoing {
    ld_trigger_decision_t *decision; /* NULL: --until-caught-up's final */
    ld_snapshot_t *snap;
    uint64_t version;
    Learnd__V1__Lineage *lineage; /* input since the parent; owned */
    int has_ckpt; /* snap was given (it is freed once written) */
    uint64_t parent_version;
    uint64_t parent_counts[LD_SAMPLE__COUNT];
    /* results, for the counters and the log lines after the commit */
    uint64_t counts[LD_SAMPLE__COUNT];
    uint8_t params_sha[32];
    size_t bytes, nchunks;
    int64_t manifest_off;
    char *path; /* NULL: no local store; owned */
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
    outgoing_t *out;
    size_t nout, capout;
    /* Loop side (kafka): publications queued since the last flush, and the
     * newest with a checkpoint (its version, counts and a reference to its
     * snapshot, for ld_publisher_last_queued and the next one's parent). */
    size_t nq, nq_ckpt;
    uint64_t q_version;
    uint64_t q_counts[LD_SAMPLE__COUNT];
    ld_snapshot_t *q_snap;
    /* Flushed, waiting for the commit to be logged (ld_publisher_committed).
     */
    outgoing_t *done;
    size_t ndone, capdone;
    /* The publisher thread (ld_publisher_start): it takes out[wnext..nout)
     * in order; mu guards out, nout, wnext, werr and stopping. */
    rd_kafka_t *rk;
    pthread_t thr;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t work, idle;
    size_t wnext;
    ld_err_t werr;
    /* committed versions to promote in the local store, and done so far */
    uint64_t promote_upto, promoted;
    atomic_int stopping;
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
