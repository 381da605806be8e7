/* SPDX-License-Identifier: Apache-2.0 */
/* Checkpoints: Checkpoint protobuf encode/decode with full validation,
 * chunking into CheckpointChunk messages plus a CheckpointManifest, and the
 * local model store (<dir>/<model>/<version>.ckpt, `latest`, keep N).
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
} ld_ckpt_meta_t;

/* A decoded, validated checkpoint. */
typedef struct ld_ckpt ld_ckpt_t;

/* SHA-256 of n bytes. */
void ld_ckpt_sha256(const void *data, size_t n, uint8_t out[32]);

/* Serializes snap (borrowed) with meta (borrowed) into out (caller frees
 * out->data). Returns LD_ERR_NOMEM or LD_ERR_INVAL (no model name). */
ld_err_t ld_ckpt_encode(const ld_snapshot_t *snap, const ld_ckpt_meta_t *meta,
                        ld_buf_t *out) LD_WUR;

/* Validates and decodes len bytes of buf (borrowed; not kept). On success
 * *out is the caller's (ld_ckpt_destroy()); on failure LD_ERR_CORRUPT (or
 * LD_ERR_NOMEM) with the reason in errstr. */
ld_err_t ld_ckpt_decode(const uint8_t *buf, size_t len, ld_ckpt_t **out,
                        char *errstr, size_t errstr_size) LD_WUR;
/* NULL is a no-op. */
void ld_ckpt_destroy(ld_ckpt_t *c);
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

/* ---- Chunks and manifest ------------------------------------------------ */

/* Splits the serialized checkpoint ckpt (borrowed) into serialized
 * CheckpointChunk messages of at most chunk_size (<= LD_CKPT_MAX_CHUNK)
 * data bytes each. *chunks is an array of *n buffers; free it with
 * ld_ckpt_chunks_free(). */
ld_err_t ld_ckpt_chunks(const uint8_t *ckpt, size_t len, const char *model,
                        uint64_t version, size_t chunk_size, ld_buf_t **chunks,
                        size_t *n) LD_WUR;
void ld_ckpt_chunks_free(ld_buf_t *chunks, size_t n);

/* Manifest fields the caller knows (borrowed). */
typedef struct ld_ckpt_manifest_info {
    const char *model;
    uint64_t version;
    uint64_t parent_version;
    uint32_t chunk_count;
    int64_t first_chunk_offset;
    const char *topic;
    int32_t partition;
    int64_t created_at_ms;
    const char *trigger_id;
    /* When hmac_key_len > 0: CheckpointManifest.hmac_sha256 (field 15,
     * written last) = HMAC-SHA256(hmac_key, every byte before it), which a
     * deployer holding the key verifies: the manifest's sha256 then proves
     * the checkpoint came from a holder of the key, not only that it is
     * intact (see docs/OPERATIONS.md, "Authenticating checkpoints"). */
    const uint8_t *hmac_key;
    size_t hmac_key_len;
} ld_ckpt_manifest_info_t;

/* Smallest checkpoint.manifest_secret accepted, in bytes. */
#define LD_CKPT_SECRET_MIN 16

/* HMAC-SHA256 (RFC 2104) of data under key. */
void ld_ckpt_hmac_sha256(const void *key, size_t key_len, const void *data,
                         size_t n, uint8_t out[32]);

/* Serializes the CheckpointManifest of ckpt (its size, SHA-256 and
 * params_sha256 are taken from ckpt itself) into out (caller frees).
 * LD_ERR_CORRUPT when ckpt has no params_sha256 (ckpt is not otherwise
 * validated: it is what ld_ckpt_encode just wrote). */
ld_err_t ld_ckpt_manifest_encode(const uint8_t *ckpt, size_t len,
                                 const ld_ckpt_manifest_info_t *info,
                                 ld_buf_t *out) LD_WUR;

/* Rebuilds a serialized checkpoint from a serialized manifest and its
 * serialized chunks (all borrowed), checking model, version, indices,
 * counts, every chunk's SHA-256, the total size and the manifest's SHA-256.
 * out->data is the caller's. LD_ERR_CORRUPT with errstr on any mismatch. */
ld_err_t ld_ckpt_assemble(const uint8_t *manifest, size_t mlen,
                          const ld_buf_t *chunks, size_t n, ld_buf_t *out,
                          char *errstr, size_t errstr_size) LD_WUR;

/* ---- Local model store -------------------------------------------------- */

#define LD_CKPT_NAME_MAX 128

/* True when name can be a model name: 1 to LD_CKPT_NAME_MAX bytes of ASCII
 * letters, digits, '.', '_' and '-', not starting with '.'. It is one path
 * component of the model store (never "..", "/abs" or "a/b"), a safe part of
 * Kafka keys (<model>/<version>) and of the transactional id. trainer.name is
 * checked against it when the config loads; the store refuses other names. */
int ld_ckpt_name_ok(const char *name);

/* Writes buf as <dir>/<model>/<version>.ckpt (temp file, fsync, rename,
 * fsync of the directory), then `latest` (holding "<version>\n") the same
 * way, then deletes all but the newest keep versions. path (optional)
 * receives the file's path. LD_ERR_INVAL for a model name that is not a
 * plain file name, LD_ERR_IO with errno set otherwise; errstr (optional)
 * names the operation and the path ("write DIR/ctr/.7.ckpt.tmp.9: No space
 * left on device"). */
ld_err_t ld_ckpt_store_write(const char *dir, const char *model,
                             uint64_t version, const uint8_t *buf, size_t len,
                             int64_t keep, char *path, size_t path_size,
                             char *errstr, size_t errstr_size) LD_WUR;

/* The version `latest` names; LD_ERR_NOENT when the store has none. */
ld_err_t ld_ckpt_store_latest(const char *dir, const char *model,
                              uint64_t *version) LD_WUR;

/* Largest checkpoint file read (a sanity bound: 1 TiB). */
#define LD_CKPT_MAX_FILE ((uint64_t)1 << 40)

/* Reads and decodes a checkpoint file: LD_ERR_NOENT, LD_ERR_IO (errstr names
 * the operation and path), LD_ERR_CORRUPT. The size, first field and
 * trailer are checked first and the digest is streamed, so memory for the
 * content is allocated only for a file whose checksum holds. */
ld_err_t ld_ckpt_read_file(const char *path, ld_ckpt_t **out, char *errstr,
                           size_t errstr_size) LD_WUR;

/* Warm start: decodes the version `latest` names; if that one is missing
 * or corrupt, logs a warning and falls back to the newest valid older
 * version. LD_ERR_NOENT when the store holds no checkpoint of model,
 * LD_ERR_CORRUPT when it holds only corrupt ones, LD_ERR_IO when the store
 * cannot be read, LD_ERR_INVAL for a bad name. errstr is filled on every
 * failure. */
ld_err_t ld_ckpt_store_load_latest(const char *dir, const char *model,
                                   ld_ckpt_t **out, char *errstr,
                                   size_t errstr_size) LD_WUR;

#endif /* LD_TRAINER_CHECKPOINT_H */
