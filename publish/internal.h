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
                       const char *type, const char *topic, const char *key,
                       const void *val, size_t len);
} pub_ops_t;

struct ld_publisher {
    const pub_ops_t *ops;
    ld_publisher_conf_t c;
    ld_resume_counters_t ctr;
    uint64_t commit_seq, first_commit_seq; /* commit.c */
    ld_state_gens_t gens;                  /* commit.c: blocks on the topic */
    uint64_t state_bytes;                  /* commit.c: last commit's */
    /* chunks.c: the delta chain on the checkpoints topic: its versions,
     * full base first, and the snapshot of the last one (the parent of the
     * next delta). */
    uint64_t *chain;
    size_t nchain;
    ld_snapshot_t *chain_snap;
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

/* chunks.c: what version meta->version goes to the checkpoints topic as.
 * *out is a delta of the last published version (out->data set; caller
 * frees) or empty: publish the full checkpoint. info gets the chain.
 * LD_ERR_NOMEM. */
ld_err_t ld_publisher_delta(ld_publisher_t *p, const ld_snapshot_t *snap,
                            const ld_ckpt_meta_t *meta, ld_buf_t *out,
                            ld_publish_manifest_info_t *info) LD_WUR;
/* chunks.c: version (snap, borrowed: a reference is kept) was published,
 * as a delta or not. */
void ld_publisher_delta_done(ld_publisher_t *p, ld_snapshot_t *snap,
                             uint64_t version, int delta);
void ld_publisher_delta_free(ld_publisher_t *p);

#endif /* LD_PUBLISH_INTERNAL_H */
