/* SPDX-License-Identifier: Apache-2.0 */
/* The resume state on the compacted state topic (docs/ARCHITECTURE.md, "The
 * commit protocol"): written in every commit-point transaction, read back at
 * start-up. */
#ifndef LD_DAEMON_STATE_H
#define LD_DAEMON_STATE_H

#include <librdkafka/rdkafka.h>

#include "common/common.h"
#include "schemas/learnd.pb-c.h"

/* The newest committed resume state of one model. */
typedef struct ld_resume {
    Learnd__V1__ResumeHeader *header; /* unpacked; owned */
    uint8_t *ckpt;                    /* the trainer state, a serialized
                                         Checkpoint; owned */
    size_t ckpt_len;
} ld_resume_t;

/* Reads topic from the beginning to its end with read_committed, through
 * the cluster of kafka (the config's `kafka:` pairs, borrowed), keeping the
 * newest record per key of model. *out is NULL when the model has no state
 * yet (first start); otherwise the caller frees it with
 * ld_resume_destroy(). Returns LD_ERR_CORRUPT with the reason in errstr when
 * the newest header's blocks are missing, from another commit, or
 * undecodable (the daemon refuses to start rather than lose state), and
 * LD_ERR_KAFKA / LD_ERR_TIMEOUT when the topic cannot be read. */
ld_err_t ld_state_load(const ld_strlist_t *kafka, const char *topic,
                       const char *model, int timeout_ms, ld_resume_t **out,
                       char *errstr, size_t errstr_size) LD_WUR;

/* Frees r; NULL is a no-op. */
void ld_resume_destroy(ld_resume_t *r);

/* Produces the resume state (header, borrowed, with block_count and
 * block_size filled in here, and ckpt cut into blocks of block_size bytes)
 * to topic through producer (borrowed), inside its open transaction.
 * Returns LD_ERR_KAFKA when a record cannot be queued. */
ld_err_t ld_state_write(rd_kafka_t *producer, const char *topic,
                        Learnd__V1__ResumeHeader *header, const uint8_t *ckpt,
                        size_t len, size_t block_size) LD_WUR;

#endif /* LD_DAEMON_STATE_H */
