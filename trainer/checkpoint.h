/* SPDX-License-Identifier: Apache-2.0 */
/* Checkpoints: Checkpoint protobuf encode/decode with full validation,
 * and reading a checkpoint file. Chunking, the manifest and the local model
 * store are the publishing stage's (publish/publish.h).
 *
 * File format. A checkpoint is a serialized learnd.v1.Checkpoint followed by
 * one more field, number 15 (bytes, 32 long): the SHA-256 of every byte
 * before it. The whole file is therefore a valid Checkpoint message for any
 * protobuf reader (field 15 is `sha256` in the schema, or an unknown field
 * for older readers), and a reader checks its integrity by hashing all but
 * the last 34 bytes (0x7a 0x20 + digest). Decoding refuses any file whose
 * trailer, lengths, shapes or params_sha256 do not match, so every
 * truncation and every changed byte is an error, never a crash.
 *
 * Tensors ("w" [2^hash_bits] or [2^hash_bits, K]; "dense_w" [D] or [K, D];
 * "bias" [K]) are raw little-endian float32; optimizer accumulators are
 * "<tensor>.<state>" ("w.ftrl.z", "dense_w.adam.v", ...) of the same
 * shapes, then, when dense_dim > 0, "dense_w.norm_scale" [D] (the dense
 * normalization scales; optional on read). Lineage.params_sha256 is the
 * SHA-256 of the parameter tensors' data concatenated in that order. */
#ifndef LD_TRAINER_CHECKPOINT_H
#define LD_TRAINER_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "schemas/learnd.pb-c.h"
#include "trainer/trainer.h"

#define LD_CKPT_FORMAT_VERSION 1
#define LD_CKPT_MAX_CHUNK      (900 * 1024)
#define LD_CKPT_TRAILER        34 /* tag 0x7a, length 0x20, SHA-256 */
/* OptimizerState tensor of the dense normalization scales ([dense_dim]);
 * absent from checkpoints written before dense_norm existed, which load
 * with all scales 0 (state in raw units, converted at each column's first
 * non-zero value). */
#define LD_CKPT_DENSE_SCALE "dense_w.norm_scale"
/* OptimizerState tensor of dense_norm standard's running statistics
 * ([3, dense_dim]: count, mean, M2 per column), after the scales; written
 * only under dense_norm standard, absent means all 0 (raw units). */
#define LD_CKPT_DENSE_STATS "dense_w.norm_stats"

/* The `checkpoint:` config section. */
typedef struct ld_ckpt_conf {
    char *dir;             /* model store root */
    int64_t keep;          /* newest versions kept per model */
    int64_t chunk_size;    /* bytes of checkpoint per CheckpointChunk */
    int64_t delta_every;   /* a full version on the topic every N */
    int warm_start;        /* start from the newest stored checkpoint */
    char *manifest_secret; /* HMAC-SHA256 key of manifests; "" = unsigned */
} ld_ckpt_conf_t;

extern const ld_conf_section_t ld_ckpt_conf_section;

/* A byte buffer; caller frees data with free(). */
typedef struct ld_buf {
    uint8_t *data;
    size_t len;
} ld_buf_t;

/* What the daemon knows about a checkpoint beyond the model state. All
 * pointers borrowed; NULL / 0 fields are left empty. */
typedef struct ld_ckpt_meta {
    const char *model;
    uint64_t version;
    uint64_t parent_version;
    int64_t created_at_ms;
    const char *trigger_id;
    const char *learnd_version;
    const uint8_t *config_hash; /* 32 bytes, or NULL */
    const char *hash_function;  /* ModelSpec.hash_function */
    uint32_t hash_seed;
    const uint8_t *feature_map_hash; /* 32 bytes, or NULL */
    /* Offset ranges, resume positions, watermark advances and the
     * late/dead-letter counts are copied from here when non-NULL. */
    const Learnd__V1__Lineage *lineage;
    /* Example counts of the parent version by sample type (counts since
     * the parent = the snapshot's totals minus these); NULL = zero. */
    const uint64_t *parent_counts;
    /* Set by ld_ckpt_encode_delta (NULL otherwise). */
    const Learnd__V1__DeltaRows *delta;
} ld_ckpt_meta_t;

/* A decoded, validated checkpoint. */
typedef struct ld_ckpt ld_ckpt_t;

/* SHA-256 of n bytes. */
void ld_ckpt_sha256(const void *data, size_t n, uint8_t out[32]);

/* Serializes snap (borrowed) with meta (borrowed) into out (caller frees
 * out->data). A head snapshot (no sparse state) gives a head: its sparse
 * tensors empty, no params_sha256 (read it with ld_ckpt_decode_head).
 * Returns LD_ERR_NOMEM or LD_ERR_INVAL (no model name). */
ld_err_t ld_ckpt_encode(const ld_snapshot_t *snap, const ld_ckpt_meta_t *meta,
                        ld_buf_t *out) LD_WUR;

/* Validates and decodes len bytes of buf (borrowed; not kept). On success
 * *out is the caller's (ld_ckpt_destroy()); on failure LD_ERR_CORRUPT (or
 * LD_ERR_NOMEM) with the reason in errstr. */
ld_err_t ld_ckpt_decode(const uint8_t *buf, size_t len, ld_ckpt_t **out,
                        char *errstr, size_t errstr_size) LD_WUR;
/* The same for a head: a checkpoint ld_ckpt_encode wrote from a head
 * snapshot (ld_trainer_state_head), whose sparse tensors are empty and
 * which has no params_sha256 (its sparse rows travel in the state topic's
 * blocks). ld_ckpt_snapshot of a head has its sparse state all 0, to be
 * filled in. A whole checkpoint is refused here, and a head by
 * ld_ckpt_decode. */
ld_err_t ld_ckpt_decode_head(const uint8_t *buf, size_t len, ld_ckpt_t **out,
                             char *errstr, size_t errstr_size) LD_WUR;
/* The same for a delta checkpoint (ld_ckpt_encode_delta): rows checked
 * in range and ascending, sizes against the spec; its params_sha256 is
 * checked only when it is applied (ld_ckpt_delta_apply). A whole
 * checkpoint is refused here, and a delta by ld_ckpt_decode (naming its
 * parent and base). */
ld_err_t ld_ckpt_decode_delta(const uint8_t *buf, size_t len, ld_ckpt_t **out,
                              char *errstr, size_t errstr_size) LD_WUR;
/* NULL is a no-op. */
void ld_ckpt_destroy(ld_ckpt_t *c);

/* ---- Delta checkpoints ---------------------------------------------------
 * A delta holds the sparse rows (slots, all planes) that differ bit for bit
 * from its parent's, the dense state whole, and the SHA-256 of the full
 * parameters it reconstructs (Lineage.params_sha256) plus its parent's
 * (DeltaRows.parent_params_sha256): applying it to anything but its parent,
 * or a corrupt delta, is refused. */

/* Encodes s (borrowed, complete) as a delta of parent (borrowed, the
 * snapshot of meta->parent_version) in a chain starting at full version
 * base_version. *nrows (optional) = rows written. LD_ERR_INVAL when the
 * shapes differ, LD_ERR_NOMEM. */
ld_err_t ld_ckpt_encode_delta(const ld_snapshot_t *s,
                              const ld_snapshot_t *parent,
                              const ld_ckpt_meta_t *meta, uint64_t base_version,
                              ld_buf_t *out, size_t *nrows) LD_WUR;
/* 1 when c is a delta (then *parent_version and *base_version, each
 * optional, are set), 0 for a full checkpoint. */
int ld_ckpt_delta_of(const ld_ckpt_t *c, uint64_t *parent_version,
                     uint64_t *base_version);
/* The full state delta (decoded by ld_ckpt_decode_delta) reconstructs on
 * parent (borrowed: the snapshot of its parent version): checks parent's
 * parameter hash against the link, applies the rows, and checks the
 * result's parameter hash. *out is the caller's (ld_snapshot_destroy).
 * LD_ERR_CORRUPT with errstr naming the version on a broken link or a
 * mismatch, LD_ERR_NOMEM. */
ld_err_t ld_ckpt_delta_apply(const ld_ckpt_t *delta,
                             const ld_snapshot_t *parent, ld_snapshot_t **out,
                             char *errstr, size_t errstr_size) LD_WUR;
/* Rebuilds the state a chain of serialized checkpoints gives: links[0] a
 * full checkpoint, each next one a delta of the one before (all borrowed,
 * each validated). *out is the caller's (ld_snapshot_destroy), *version
 * (optional) the last link's version. LD_ERR_CORRUPT with errstr naming the
 * link on a corrupt link, a missing one (a delta whose parent is not the
 * link before) or a reconstruction whose hash differs; LD_ERR_NOMEM. */
ld_err_t ld_ckpt_chain_rebuild(const ld_buf_t *links, size_t n,
                               ld_snapshot_t **out, uint64_t *version,
                               char *errstr, size_t errstr_size) LD_WUR;
/* The decoded message, borrowed from c. */
const Learnd__V1__Checkpoint *ld_ckpt_message(const ld_ckpt_t *c);
/* SHA-256 of the whole serialized checkpoint (the manifest's sha256, the
 * content hash deployers dedupe on) and its size. */
void ld_ckpt_content_sha256(const ld_ckpt_t *c, uint8_t out[32]);
size_t ld_ckpt_size(const ld_ckpt_t *c);
/* A new snapshot holding c's state (caller owns: ld_snapshot_destroy()),
 * e.g. for ld_trainer_restore() and ld_trainer_champion_set(); NULL when
 * out of memory. */
ld_snapshot_t *ld_ckpt_snapshot(const ld_ckpt_t *c);

/* Makes checkpoint c (borrowed) t's frozen champion, scored alongside the
 * model (ld_trainer_champion_set() with a snapshot of c's state; t keeps
 * its own reference, nothing of c). Typically the last published version:
 * after a restart, or when another instance published. Returns
 * LD_ERR_CONFIG, with the differing field in errstr, if c's model, shape or
 * optimizer differ from t's; LD_ERR_NOMEM. On failure t's champion is
 * unchanged. */
ld_err_t ld_ckpt_champion_set(ld_trainer_t *t, const ld_ckpt_t *c, char *errstr,
                              size_t errstr_size) LD_WUR;

/* The same from len serialized checkpoint bytes (borrowed; a file's
 * contents or reassembled chunks), validated as by ld_ckpt_decode()
 * (LD_ERR_CORRUPT with the reason in errstr). */
ld_err_t ld_ckpt_champion_load(ld_trainer_t *t, const uint8_t *buf, size_t len,
                               char *errstr, size_t errstr_size) LD_WUR;

/* HMAC-SHA256 (RFC 2104) of data under key. */
void ld_ckpt_hmac_sha256(const void *key, size_t key_len, const void *data,
                         size_t n, uint8_t out[32]);

/* Largest checkpoint file read (a sanity bound: 1 TiB). */
#define LD_CKPT_MAX_FILE ((uint64_t)1 << 40)

/* Reads and decodes a checkpoint file: LD_ERR_NOENT, LD_ERR_IO (errstr names
 * the operation and path), LD_ERR_CORRUPT. The size, first field and
 * trailer are checked first and the digest is streamed, so memory for the
 * content is allocated only for a file whose checksum holds. */
ld_err_t ld_ckpt_read_file(const char *path, ld_ckpt_t **out, char *errstr,
                           size_t errstr_size) LD_WUR;
/* The same, accepting a delta checkpoint as well (ld_ckpt_delta_of tells
 * which; a delta's lineage, counts and params_sha256 of the parameters its
 * chain reconstructs are all there, its sparse rows are not). */
ld_err_t ld_ckpt_read_file_any(const char *path, ld_ckpt_t **out, char *errstr,
                               size_t errstr_size) LD_WUR;

#endif /* LD_TRAINER_CHECKPOINT_H */
