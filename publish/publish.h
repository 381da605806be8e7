/* SPDX-License-Identifier: Apache-2.0 */
/* The publishing stage: what leaves the daemon at a commit point and what a
 * restart reads back. The lineage of each model version, the resume state
 * on the compacted state topic and its codecs (docs/ARCHITECTURE.md, "The
 * commit protocol" and "Checkpoints and lineage"). Thread: loop, for every
 * function here (none of them is called by the ingest thread). */
#ifndef LD_PUBLISH_H
#define LD_PUBLISH_H

#include <librdkafka/rdkafka.h>
#include <stdint.h>

#include "common/bytes.h"
#include "common/common.h"
#include "labeling/labeling.h"
#include "schemas/learnd.pb-c.h"
#include "trainer/trainer.h"

/* ---- Lineage: the input of a version since its parent ------------------- */

typedef struct ld_lineage ld_lineage_t;

/* Returns an empty accumulator, or NULL when out of memory. */
ld_lineage_t *ld_lineage_new(void);
/* NULL is a no-op. */
void ld_lineage_destroy(ld_lineage_t *l);

/* Notes that offset of topic/partition was consumed. topic is borrowed and
 * must outlive l (the config's strings). */
void ld_lineage_consumed(ld_lineage_t *l, const char *topic, int32_t partition,
                         int64_t offset);

/* Notes an idle-partition watermark advance decided at wall_ms, when the
 * partition's next offset was offset (-1: nothing read yet). */
void ld_lineage_advance(ld_lineage_t *l, const char *topic, int32_t partition,
                        int64_t offset, int64_t wall_ms, int64_t watermark_ms);

/* Adds input that did not become an example: records dead-lettered and
 * late labels dropped (policy drop), to the counts since the last take and
 * to the totals since the first version. */
void ld_lineage_count(ld_lineage_t *l, uint64_t dead_lettered,
                      uint64_t late_labels_dropped);

/* Sets the totals since the first version (a warm start: the parent
 * checkpoint's total_counts). */
void ld_lineage_set_totals(ld_lineage_t *l, uint64_t dead_lettered,
                           uint64_t late_labels_dropped);

/* Builds the Lineage fields `consumed` and `watermark_advances` from what
 * accumulated since the last take, `counts` and `total_counts` with the
 * dead_lettered and late_labels_dropped of ld_lineage_count() (the
 * checkpoint encoder adds the example counts), plus `resume` from the n
 * positions given (borrowed; copied), and starts accumulating afresh. Returns a
 * message the caller frees with ld_lineage_pb_free(), or NULL when out of
 * memory. */
Learnd__V1__Lineage *
ld_lineage_take(ld_lineage_t *l, const Learnd__V1__PartitionPosition *resume,
                size_t n);
void ld_lineage_pb_free(Learnd__V1__Lineage *m);

/* The consumed ranges as bytes for the resume state, and back, so that a
 * restart keeps counting from the parent (LD_ERR_CORRUPT on bad bytes). */
ld_err_t ld_lineage_save(const ld_lineage_t *l, uint8_t **out,
                         size_t *len) LD_WUR;
ld_err_t ld_lineage_load(ld_lineage_t *l, const char *const *topics,
                         size_t ntopics, const uint8_t *buf, size_t len) LD_WUR;

/* ---- The state topic ---------------------------------------------------- */

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

/* ---- Resume-state codecs (publish/resume.c) ------------------------------ */

/* The partitions whose joiner state a commit point saves: any partition
 * number the joiner takes (0..65535), not a fixed-size table. Start from
 * {0}; free with ld_partset_free(). */
typedef struct ld_partset {
    uint8_t *in; /* in[p] != 0: p is in the set; private */
    size_t n;    /* length of in; private */
} ld_partset_t;

/* Adds p. LD_ERR_INVAL when p is outside 0..65535, LD_ERR_NOMEM (set
 * unchanged). */
ld_err_t ld_partset_add(ld_partset_t *s, int32_t p) LD_WUR;
/* Removes p (absent: no-op). */
void ld_partset_del(ld_partset_t *s, int32_t p);
int ld_partset_has(const ld_partset_t *s, int32_t p);
/* Members in ascending order: p = -1; while ((p = ld_partset_next(s, p))
 * >= 0) ... */
int32_t ld_partset_next(const ld_partset_t *s, int32_t after);
void ld_partset_free(ld_partset_t *s);

/* ResumeHeader.labeling_state: the joiner's resume record of every
 * partition in parts, in ascending order, each framed by its 4-byte
 * little-endian length. Appends to out (sticky errors: check out->err). */
ld_err_t ld_resume_labeling_encode(ld_joiner_t *j, const ld_partset_t *parts,
                                   ld_wbuf_t *out) LD_WUR;
/* Loads every framed record of buf into j (before the partitions are
 * assigned). LD_ERR_CORRUPT on a bad frame or a record the joiner refuses. */
ld_err_t ld_resume_labeling_load(ld_joiner_t *j, const uint8_t *buf,
                                 size_t len) LD_WUR;

/* The daemon's counters in the resume state. */
typedef struct ld_resume_counters {
    uint64_t version;   /* last published (or warm-started) version */
    uint64_t published; /* checkpoints published by this daemon */
    uint64_t parent_counts[LD_SAMPLE__COUNT];
    uint8_t published_sha[32]; /* params of the last version published */
} ld_resume_counters_t;

/* ResumeHeader.trainer_state: "LDRS", format 1, the counters, the
 * trainer's queued examples (ld_trainer_queued: a restart rebuilds the same
 * micro-batches) and the lineage accumulated since the last publication,
 * little-endian. All borrowed. Appends to out; LD_ERR_NOMEM, LD_ERR_INVAL
 * when the trainer will not hand a queued example out. */
ld_err_t ld_resume_run_encode(const ld_resume_counters_t *c,
                              const ld_trainer_t *t, const ld_lineage_t *lin,
                              ld_wbuf_t *out) LD_WUR;
/* Reads what ld_resume_run_encode wrote: fills *c, re-queues the examples
 * into t (restored just before, so its queue is empty) and loads the
 * lineage, whose topic names are topics[0..ntopics) (borrowed, must
 * outlive lin). A state without published_sha (older daemons) leaves
 * c->published_sha as it was (the warm start's). LD_ERR_CORRUPT on bad or
 * trailing bytes; c, t and lin may then hold part of it (the daemon refuses
 * to start). */
ld_err_t ld_resume_run_decode(const uint8_t *buf, size_t len,
                              ld_resume_counters_t *c, ld_trainer_t *t,
                              ld_lineage_t *lin, const char *const *topics,
                              size_t ntopics) LD_WUR;

#endif /* LD_PUBLISH_H */
