/* SPDX-License-Identifier: Apache-2.0 */
/* The publishing stage: what leaves the daemon at a commit point and what a
 * restart reads back. The publisher (the queue of decided publications,
 * version numbering, checkpoints to the local store and the checkpoints
 * topic, trigger events, audit records; a Kafka and a capture
 * implementation), the resume state of a commit point on the compacted
 * state topic and its codecs, and the lineage of each model version
 * (docs/ARCHITECTURE.md, "The commit protocol" and "Checkpoints and
 * lineage"). Thread: loop, for every function here (none of them is called
 * by the ingest thread). */
#ifndef LD_PUBLISH_H
#define LD_PUBLISH_H

#include <librdkafka/rdkafka.h>
#include <stdint.h>

#include "common/bytes.h"
#include "common/common.h"
#include "labeling/labeling.h"
#include "schemas/learnd.pb-c.h"
#include "trainer/checkpoint.h"
#include "trainer/trainer.h"
#include "triggers/triggers.h"

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

/* Where encoded state records go: ld_state_emit_kafka (the producer's open
 * transaction), or a capture in tests and benchmarks. key and val are
 * borrowed (copied if kept). */
typedef ld_err_t ld_state_emit_fn(void *opaque, const char *key,
                                  const uint8_t *val, size_t len);
typedef struct ld_state_sink {
    ld_state_emit_fn *emit;
    void *opaque;
    uint64_t *bytes; /* optional: += key + value bytes emitted */
} ld_state_sink_t;
/* The Kafka sink: opaque is an ld_state_kafka_t (borrowed). Produces to
 * partition 0 of topic; LD_ERR_KAFKA (logged) when it cannot queue. */
typedef struct ld_state_kafka {
    rd_kafka_t *producer;
    const char *topic;
} ld_state_kafka_t;
ld_err_t ld_state_emit_kafka(void *opaque, const char *key, const uint8_t *val,
                             size_t len) LD_WUR;

/* Reads a state topic's records, newest per key, for one model. */
typedef struct ld_state_reader ld_state_reader_t;

/* The newest committed resume state of one model. */
typedef struct ld_resume {
    Learnd__V1__ResumeHeader *header; /* unpacked; owned */
    uint8_t *ckpt;                    /* format 1: the trainer state, a
                                         serialized Checkpoint; owned */
    size_t ckpt_len;
    /* format 2: the trainer state is header->model_state (a head
     * checkpoint) plus nblocks blocks (ld_resume_fill_sparse), each of the
     * generation gens_block[i]; private */
    uint64_t *gens_block;
    size_t nblocks;
    ld_state_reader_t *rd;
    /* format 3: the header's deltas, in ascending commit_seq; private */
    struct ld_state_dpart *dpart; /* each listed part, in order */
    size_t ndpart;
} ld_resume_t;

/* A reader for model's records (model borrowed, copied); NULL when out of
 * memory. Feed it every record of the topic in offset order with take,
 * then finish. */
ld_state_reader_t *ld_state_reader_new(const char *model);
/* Keeps the record if it is one of the model's (others are ignored);
 * LD_ERR_NOMEM. key and val borrowed. */
ld_err_t ld_state_reader_take(ld_state_reader_t *rd, const void *key,
                              size_t klen, const void *val, size_t vlen) LD_WUR;
/* Consumes rd (freed or moved into *out). *out is NULL when no header was
 * seen (first start); otherwise the caller frees it with
 * ld_resume_destroy(). LD_ERR_CORRUPT with the reason in errstr when the
 * newest header is undecodable, or any block or generations page it names
 * is missing or of another generation (format 2, 3), or a delta part it
 * lists is missing or tombstoned, or its list is out of order (format 3),
 * or a block of another commit (format 1): the daemon refuses to start
 * rather than lose state. A record with a NULL val is a tombstone. */
ld_err_t ld_state_reader_finish(ld_state_reader_t *rd, ld_resume_t **out,
                                char *errstr, size_t errstr_size) LD_WUR;
/* NULL is a no-op. */
void ld_state_reader_destroy(ld_state_reader_t *rd);

/* Reads topic from the beginning to its end with read_committed, through
 * the cluster of kafka (the config's `kafka:` pairs, borrowed), with a
 * reader for model (see ld_state_reader_finish for *out and the errors).
 * LD_ERR_KAFKA / LD_ERR_TIMEOUT when the topic cannot be read. */
ld_err_t ld_state_load(const ld_strlist_t *kafka, const char *topic,
                       const char *model, int timeout_ms, ld_resume_t **out,
                       char *errstr, size_t errstr_size) LD_WUR;

/* Formats 2 to 4: copies the blocks into the sparse state of snap (a
 * snapshot in the plain layout, from the header's model_state; borrowed),
 * then (format 3, 4) the rows of every delta newer than their block, in
 * commit order; format 4 then recomputes the weights its rows leave out
 * (ld_snapshot_derive_w, with snap's hyperparameters: the writer's).
 * LD_ERR_CORRUPT with errstr when the blocks do not tile snap's sparse
 * state (another shape), a block or delta part is malformed, or format 4
 * meets a model that is not FTRL. */
ld_err_t ld_resume_fill_sparse(ld_resume_t *r, ld_snapshot_t *snap,
                               char *errstr, size_t errstr_size) LD_WUR;

/* Frees r; NULL is a no-op. */
void ld_resume_destroy(ld_resume_t *r);

/* Format 1 (what daemons before the incremental state wrote; kept for
 * tests of the upgrade): the resume state as one serialized checkpoint
 * ckpt cut into blocks of block_size bytes, all written, header
 * (borrowed) last, into sink. The sink's error, LD_ERR_NOMEM. */
ld_err_t ld_state_write_v1(const ld_state_sink_t *sink,
                           Learnd__V1__ResumeHeader *header,
                           const uint8_t *ckpt, size_t len,
                           size_t block_size) LD_WUR;

/* The generation (commit_seq of the commit that last wrote it) of every
 * block and gens page this run has on the topic, and the deltas the state
 * still needs (format 3); start from {0}, free with ld_state_gens_free(). */
typedef struct ld_state_gens {
    uint64_t *block, *page; /* private */
    size_t nblocks, npages; /* private */
    uint64_t *dseq;         /* private: live deltas, ascending */
    uint32_t *dparts;       /* private: parts of each */
    size_t ndelta, dcap;    /* private */
    size_t cursor;          /* private: next block of the sweep */
    int encoding;           /* private: BlockEncoding of the blocks */
    /* The format ld_state_write_blocks writes: 0 for the newest the model
     * allows (4 for FTRL, else 3), 3 for format 3 (tests of the upgrade,
     * bench_trainer --state's comparison). Set before the first write. */
    uint32_t write_format;
} ld_state_gens_t;
void ld_state_gens_free(ld_state_gens_t *g);

/* Format 4 (FTRL: rows of z and n, the weights recomputed on restore) or
 * 3 (other optimizers, or g->write_format 3: every plane of a row): emits
 * into sink the rows of t (borrowed) written since the last commit
 * (ld_trainer_block_dirty_rows) as one delta, a round-robin
 * sweep of whole blocks (at least a quarter of the delta's bytes and 1/256
 * of the blocks; every block when g holds no generations of t's shape), the
 * gens pages covering them, a tombstone for each part of every delta older than
 * all blocks, then header (borrowed; its commit_seq, model, model_state
 * and module state filled in by the caller; the block and delta fields
 * here) naming every page's generation and the deltas still needed.
 * Updates g; the caller clears t's dirty marks once the records are
 * queued. LD_ERR_NOMEM or the sink's error (g is then not to be used
 * again: the commit aborts). A tombstone is emit(opaque, key, NULL, 0). */
ld_err_t ld_state_write_blocks(const ld_state_sink_t *sink,
                               Learnd__V1__ResumeHeader *header,
                               const ld_trainer_t *t,
                               ld_state_gens_t *g) LD_WUR;

/* Format 2 (what daemons before the delta log wrote; kept for tests of the
 * upgrade and for bench_trainer --state's comparison): every block with a
 * dirty row, whole, then the gens pages and header as format 3, no
 * deltas. Errors as ld_state_write_blocks. */
ld_err_t ld_state_write_blocks_v2(const ld_state_sink_t *sink,
                                  Learnd__V1__ResumeHeader *header,
                                  const ld_trainer_t *t,
                                  ld_state_gens_t *g) LD_WUR;

/* After a restore from rs (borrowed): g takes the generations of the
 * blocks when same_shape (this run continues writing only what changes,
 * once its blocks' encoding is the state's: a format 3 state continued in
 * format 4 is rewritten whole at the first commit)
 * and, in any case, the deltas rs's header lists, so the next commit
 * writes their tombstones once no block needs them. LD_ERR_NOMEM (g
 * freed). */
ld_err_t ld_state_gens_adopt(ld_state_gens_t *g, ld_resume_t *rs,
                             int same_shape) LD_WUR;

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

/* ---- Hand-over of one partition's joiner record (issue #22) -------------
 * A join instance commits, with each input partition's offset, that
 * partition's joiner resume record as the offset's metadata: the record
 * then moves with the partition to whichever instance the group gives it
 * next (daemon/run_join.c). The text is LD_RESUME_HANDOVER_TAG followed by
 * the record in base64 (offset metadata is a string on the wire). */
#define LD_RESUME_HANDOVER_TAG "learnd.join1:"
/* Encodes partition p's record as that text, NUL-terminated, into *out
 * (caller frees with free()), *len without the NUL. When it would exceed
 * max bytes, the record without pending advances is used and *small set
 * (ld_joiner_resume_encode_small); LD_ERR_RANGE when even that exceeds it.
 * The joiner's errors otherwise (LD_ERR_INVAL: not assigned, not drained). */
ld_err_t ld_resume_handover_encode(ld_joiner_t *j, int32_t p, size_t max,
                                   char **out, size_t *len, int *small) LD_WUR;
/* Loads text (borrowed, len bytes, no NUL needed) into j for partition p,
 * which must not be assigned yet. LD_ERR_NOENT when text is not such a
 * record (empty, or another program's metadata: nothing to load);
 * LD_ERR_CORRUPT when it is one but does not decode, or is p's neighbour's;
 * the joiner's errors otherwise. */
ld_err_t ld_resume_handover_load(ld_joiner_t *j, int32_t p, const void *text,
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

/* ---- The publisher (publish/publish.c) ----------------------------------- */

/* What every publication of one model needs; all strings borrowed and
 * outliving the publisher. */
typedef struct ld_publisher_conf {
    const char *model;
    const char *checkpoint_topic;
    const char *trigger_topic;
    int trigger_format;         /* ld_trigger_format_t */
    const char *store_dir;      /* NULL or "": no local model store */
    int64_t store_keep;         /* versions kept in the store */
    size_t chunk_size;          /* checkpoint bytes per chunk record */
    uint32_t hash_seed;         /* recorded in each checkpoint */
    const uint8_t *config_hash; /* 32 bytes, recorded in each checkpoint */
    const char *learnd_version;
    const char *manifest_secret; /* NULL or "": manifests are not signed */
    const char *state_topic;     /* the compacted resume-state topic */
    int64_t delta_every;         /* checkpoint.delta_every; 0 or 1: all full */
    /* ModelSpec.feature_map_hash of each checkpoint: 32 bytes, or NULL */
    const uint8_t *feature_map_hash;
} ld_publisher_conf_t;

/* The queue of decided publications of one model, the version numbering
 * (ld_publisher_counters) and what each publication becomes. */
typedef struct ld_publisher ld_publisher_t;

/* The Kafka publisher, what `learnd run` uses: each queued publication is
 * written into the producer's open transaction, in decision order: the
 * checkpoint to the local store, its chunks and manifest, then the trigger
 * event. After ld_publisher_start() its own thread does that as soon as a
 * publication is queued, while the loop trains on, and
 * ld_publisher_flush() (the commit point) waits for it; without it
 * ld_publisher_flush() writes them itself. NULL when out of memory. Caller
 * frees with ld_publisher_destroy(). */
ld_publisher_t *ld_publisher_new_kafka(const ld_publisher_conf_t *conf);
/* The capture publisher, what `learnd replay` uses: a queued publication
 * is recorded at once and nothing is written; the snapshot of version
 * stop_version is kept for ld_publisher_take_captured(). */
ld_publisher_t *ld_publisher_new_capture(const ld_publisher_conf_t *conf,
                                         uint64_t stop_version);
/* Frees p and whatever waits in it. Call after the producer that flushed
 * it is destroyed: librdkafka writes delivery offsets into p until then
 * (and ld_publisher_stop() before that). NULL is a no-op. */
void ld_publisher_destroy(ld_publisher_t *p);

/* Kafka: starts the publisher thread, which writes through producer
 * (borrowed, transactional). Whoever queues a publication must have a
 * transaction open on it until the next ld_publisher_flush(). LD_ERR_INVAL
 * (capture, or started already), LD_ERR_NOMEM. */
ld_err_t ld_publisher_start(ld_publisher_t *p, rd_kafka_t *producer) LD_WUR;
/* Stops and joins the publisher thread, abandoning a publication in
 * progress (its transaction is never committed). Call before the producer
 * goes. No-op when not started or stopped already. */
void ld_publisher_stop(ld_publisher_t *p);

/* Queues a decision (d, taken; NULL for a checkpoint without an event)
 * with the snapshot it publishes (taken; NULL: event only) as version, and
 * the lineage of its input since the parent (taken; may be NULL). On
 * failure (LD_ERR_NOMEM) everything given is freed. */
ld_err_t ld_publisher_queue(ld_publisher_t *p, ld_trigger_decision_t *d,
                            ld_snapshot_t *snap, uint64_t version,
                            Learnd__V1__Lineage *lineage) LD_WUR;
/* Publications waiting for ld_publisher_flush(). */
size_t ld_publisher_waiting(const ld_publisher_t *p);
/* The parameter hash and version of the newest waiting publication with a
 * checkpoint into sha and *version; 0 when none waits. */
int ld_publisher_last_queued(const ld_publisher_t *p, uint8_t sha[32],
                             uint64_t *version);
/* The commit point's part: returns once everything waiting is written
 * through producer (borrowed; ignored by the capture publisher, and by a
 * started publisher, whose thread writes them), inside its open
 * transaction; what was written leaves the queue and is counted in
 * ld_publisher_counters(). LD_ERR_KAFKA, LD_ERR_IO (local store),
 * LD_ERR_TIMEOUT or LD_ERR_NOMEM: the commit point must abort. */
ld_err_t ld_publisher_flush(ld_publisher_t *p, rd_kafka_t *producer) LD_WUR;
/* The transaction holding what the last ld_publisher_flush() wrote is
 * committed: logs "checkpoint published" and "trigger event sent" for each
 * publication, now that readers see it. */
void ld_publisher_committed(ld_publisher_t *p);
/* One record of the commit point's transaction that is not a publication
 * (an audit record, an experiment event), produced at once into the
 * producer's open transaction (key and val borrowed, copied) with the
 * headers learnd.type = type (its schemas/learnd.proto message, e.g.
 * "LabelledExample") and learnd.model, like every record the publisher
 * writes; the capture publisher drops it. LD_ERR_KAFKA when it cannot be
 * queued. */
ld_err_t ld_publisher_record(ld_publisher_t *p, rd_kafka_t *producer,
                             const char *type, const char *topic,
                             const char *key, const void *val,
                             size_t len) LD_WUR;
/* The version numbering and what the last publication left behind
 * (version, published, parent counts, params hash): kept by p, read and
 * restored by the loop (warm start, resume state). */
ld_resume_counters_t *ld_publisher_counters(ld_publisher_t *p);
/* Capture: the snapshot of stop_version once it was queued (caller owns;
 * NULL before, and after it was taken). */
ld_snapshot_t *ld_publisher_take_captured(ld_publisher_t *p);
/* Capture: checkpoints recorded so far. */
uint64_t ld_publisher_captured_count(const ld_publisher_t *p);

/* ---- The resume state of a commit point (publish/commit.c) -------------- */

/* What a resume state is made of; all borrowed. */
typedef struct ld_resume_parts {
    ld_trainer_t *trainer;
    ld_joiner_t *joiner;
    ld_triggers_t *triggers;
    ld_lineage_t *lineage;
    const ld_partset_t *assigned; /* partitions whose joiner state is saved */
    const char *const *topics;    /* events, labels: the lineage's names */
    /* save only: the input positions the transaction commits, asked for
     * after the other parts are encoded (as the joiner stands then); *out
     * is the caller's to free, NULL when out of memory. */
    size_t (*positions)(void *opaque, Learnd__V1__PartitionPosition **out);
    void *opaque;
    /* the experiments' state (ResumeHeader.experiments_state); NULL when
     * the daemon runs none. load gets the saved bytes (maybe 0 of them,
     * from an older learnd) and says why it refuses them in errstr. */
    void (*exp_save)(void *opaque, ld_wbuf_t *w);
    ld_err_t (*exp_load)(void *opaque, const uint8_t *buf, size_t len,
                         char *errstr, size_t size);
} ld_resume_parts_t;

/* Writes the resume state of this commit point into producer's open
 * transaction (borrowed) on conf.state_topic: the trainer as a checkpoint
 * cut into blocks, the joiner's records of every assigned partition, the
 * triggers' state, the counters, queued examples and lineage, and the
 * input positions the transaction commits (parts->positions). Numbers it
 * with the next commit sequence. LD_ERR_NOMEM, LD_ERR_KAFKA (logged). */
ld_err_t ld_publisher_save_state(ld_publisher_t *p, rd_kafka_t *producer,
                                 const ld_resume_parts_t *parts) LD_WUR;
/* Restores the newest committed resume state of conf.model from
 * conf.state_topic through the cluster of kafka (the `kafka:` pairs), if
 * there is one (nothing happens on a first start): the trainer, its queued
 * examples, the counters, lineage, triggers (started afresh, with a
 * warning, when their sizes changed) and the joiner's records; then the
 * champion from the local store. Returns LD_ERR_CORRUPT / LD_ERR_KAFKA /
 * LD_ERR_CONFIG ... with the reason in errstr: the daemon refuses to
 * start rather than lose state. */
ld_err_t ld_publisher_restore_state(ld_publisher_t *p,
                                    const ld_strlist_t *kafka,
                                    const ld_resume_parts_t *parts,
                                    char *errstr, size_t errstr_size) LD_WUR;
/* Bytes (keys and values) the last commit point wrote to the state topic;
 * 0 before the first. */
uint64_t ld_publisher_state_bytes(const ld_publisher_t *p);
/* Commit points numbered so far (resume states written or restored); 0
 * before the first. */
uint64_t ld_publisher_commit_seq(const ld_publisher_t *p);

/* ---- Checkpoint chunks and manifest (publish/chunks.c) ---------------- */

/* Splits the serialized checkpoint ckpt (borrowed) into serialized
 * CheckpointChunk messages of at most chunk_size (<= LD_CKPT_MAX_CHUNK)
 * data bytes each. *chunks is an array of *n buffers; free it with
 * ld_publish_chunks_free(). */
ld_err_t ld_publish_chunks(const uint8_t *ckpt, size_t len, const char *model,
                           uint64_t version, size_t chunk_size,
                           ld_buf_t **chunks, size_t *n) LD_WUR;
void ld_publish_chunks_free(ld_buf_t *chunks, size_t n);

/* Manifest fields the caller knows (borrowed). */
typedef struct ld_publish_manifest_info {
    const char *model;
    uint64_t version;
    uint64_t parent_version;
    uint32_t chunk_count;
    int64_t first_chunk_offset;
    const char *topic;
    int32_t partition;
    int64_t created_at_ms;
    const char *trigger_id;
    /* Delta chains (CheckpointManifest fields 13, 14): 0 and none when
     * checkpoint.delta_every is 1. */
    uint64_t base_version;
    const uint64_t *chain;
    size_t n_chain;
    /* When hmac_key_len > 0: CheckpointManifest.hmac_sha256 (field 15,
     * written last) = HMAC-SHA256(hmac_key, every byte before it), which a
     * deployer holding the key verifies: the manifest's sha256 then proves
     * the checkpoint came from a holder of the key, not only that it is
     * intact (see docs/OPERATIONS.md, "Authenticating checkpoints"). */
    const uint8_t *hmac_key;
    size_t hmac_key_len;
} ld_publish_manifest_info_t;

/* Smallest checkpoint.manifest_secret accepted, in bytes. */
#define LD_CKPT_SECRET_MIN 16

/* Serializes the CheckpointManifest of ckpt (its size, SHA-256 and
 * params_sha256 are taken from ckpt itself) into out (caller frees).
 * LD_ERR_CORRUPT when ckpt has no params_sha256 (ckpt is not otherwise
 * validated: it is what ld_ckpt_encode just wrote). */
ld_err_t ld_publish_manifest_encode(const uint8_t *ckpt, size_t len,
                                    const ld_publish_manifest_info_t *info,
                                    ld_buf_t *out) LD_WUR;

/* Rebuilds a serialized checkpoint from a serialized manifest and its
 * serialized chunks (all borrowed), checking model, version, indices,
 * counts, every chunk's SHA-256, the total size and the manifest's SHA-256.
 * out->data is the caller's. LD_ERR_CORRUPT with errstr on any mismatch. */
ld_err_t ld_publish_assemble(const uint8_t *manifest, size_t mlen,
                             const ld_buf_t *chunks, size_t n, ld_buf_t *out,
                             char *errstr, size_t errstr_size) LD_WUR;

/* ---- Local model store (publish/store.c) ------------------------------ */

#define LD_CKPT_NAME_MAX 128

/* True when name can be a model name: 1 to LD_CKPT_NAME_MAX bytes of ASCII
 * letters, digits, '.', '_' and '-', not starting with '.'. It is one path
 * component of the model store (never "..", "/abs" or "a/b"), a safe part
 * of Kafka keys (<model>/<version>) and of the transactional id.
 * trainer.name is checked against it when the config loads; the store
 * refuses other names. */
int ld_publish_name_ok(const char *name);

/* Writes buf as <dir>/<model>/<version>.ckpt (temp file, fsync, rename,
 * fsync of the directory), then `latest` (holding "<version>\n") the same
 * way, then deletes all but the newest keep versions. path (optional)
 * receives the file's path. LD_ERR_INVAL for a model name that is not a
 * plain file name, LD_ERR_IO with errno set otherwise; errstr (optional)
 * names the operation and the path ("write DIR/ctr/.7.ckpt.pending.tmp.9: No
 * space left on device"). */
ld_err_t ld_publish_store_write(const char *dir, const char *model,
                                uint64_t version, const uint8_t *buf,
                                size_t len, int64_t keep, char *path,
                                size_t path_size, char *errstr,
                                size_t errstr_size) LD_WUR;
/* The two halves of ld_publish_store_write, for a publication written before
 * its transaction commits: stage writes buf as <dir>/<model>/<version>
 * .ckpt.pending (temp file, fsync, rename, fsync of the directory), which
 * no reader of the store takes for a version (path receives the name it
 * will have); promote, once the transaction committed (or at a start,
 * for the versions the restored state says were committed), renames every
 * staged version <= upto, oldest first, to <version>.ckpt, points `latest`
 * at the newest and deletes all but the newest keep versions. A staged
 * version whose transaction never committed stays staged until the
 * restarted daemon stages it again. Errors as ld_publish_store_write. */
ld_err_t ld_publish_store_stage(const char *dir, const char *model,
                                uint64_t version, const uint8_t *buf,
                                size_t len, char *path, size_t path_size,
                                char *errstr, size_t errstr_size) LD_WUR;
ld_err_t ld_publish_store_promote(const char *dir, const char *model,
                                  uint64_t upto, int64_t keep, char *errstr,
                                  size_t errstr_size) LD_WUR;

/* The version `latest` names; LD_ERR_NOENT when the store has none. */
ld_err_t ld_publish_store_latest(const char *dir, const char *model,
                                 uint64_t *version) LD_WUR;

/* Warm start: decodes the version `latest` names; if that one is missing
 * or corrupt, logs a warning and falls back to the newest valid older
 * version. LD_ERR_NOENT when the store holds no checkpoint of model,
 * LD_ERR_CORRUPT when it holds only corrupt ones, LD_ERR_IO when the store
 * cannot be read, LD_ERR_INVAL for a bad name. errstr is filled on every
 * failure. */
ld_err_t ld_publish_store_load_latest(const char *dir, const char *model,
                                      ld_ckpt_t **out, char *errstr,
                                      size_t errstr_size) LD_WUR;

#endif /* LD_PUBLISH_H */
