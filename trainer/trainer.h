/* SPDX-License-Identifier: Apache-2.0 */
/* The trainer: hashed-sparse + dense linear models (logistic, linear,
 * softmax) updated in micro-batches with SGD, AdaGrad, FTRL-Proximal or Adam,
 * prequential metrics, champion shadow scoring and copy-on-write snapshots.
 *
 * Threading: an ld_trainer_t is used by one thread at a time: in the daemon
 * the loop thread, so functions on a trainer are tagged "Thread: loop". A
 * snapshot is immutable once complete and reference counted atomically: the
 * functions on a complete snapshot are tagged "Thread: any" (the daemon
 * encodes checkpoints from snapshots the loop took).
 *
 * Update rule (docs/TRAINER.md). Prequential: every example is scored
 * before any training on it. Hashed sparse coordinates: the batch's
 * examples are scored with the weights as they were at the batch's start,
 * then each coordinate takes one optimizer step per occurrence, in example
 * order. Dense block and bias: online inside the batch; example i's dense
 * part is scored with the dense weights after the steps of examples
 * 0..i-1, then each dense coordinate takes one step with i's gradient
 * (with batch_size 1, or without hashed features, this is plain online
 * learning). The loss is a sum over examples, so learning rates do not
 * depend on batch size.
 *
 * Dense normalization (dense_norm: maxabs, the default). Each dense column
 * keeps the largest |x| seen so far (its scale, checkpointed) and its
 * optimizer runs on x / scale with its own rate (dense_learning_rate); the
 * stored dense weights stay in raw units, so w . x with raw x is the
 * model's output everywhere, and a new scale converts the state without
 * moving any prediction.
 *
 * Delayed feedback (delayed_feedback: fnw). Under the labeling policy
 * fake_negative every event first arrives as a fake_neg (label 0) and, when
 * its label arrives, again as a delayed_pos (label 1). Ktena et al. 2019
 * ("Addressing delayed feedback for continuous training with neural networks
 * in CTR prediction", fake negative weighted loss) weight the loss by
 * p(y|x) / b(y|x), where b is the biased distribution: b(y=1|x) = p/(1+p),
 * b(y=0|x) = 1/(1+p). With p the model's current prediction, taken as a
 * constant (no gradient through the weight):
 *     delayed_pos:  w = 1 + p
 *     fake_neg:     w = (1 - p) * (1 + p)
 * multiplied into the sample weight. pos and default_neg examples are not
 * reweighted. Only the logistic model supports it.
 *
 * Metrics and detectors see matured labels only (pos, default_neg). */
#ifndef LD_TRAINER_H
#define LD_TRAINER_H

#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "pipeline/record.h"

/* Config ENUM values, in the order of the table's choices. */
enum { LD_MODEL_LOGISTIC = 0, LD_MODEL_LINEAR = 1, LD_MODEL_SOFTMAX = 2 };
enum { LD_OPT_SGD = 0, LD_OPT_ADAGRAD = 1, LD_OPT_FTRL = 2, LD_OPT_ADAM = 3 };
enum {
    LD_LR_CONSTANT = 0,        /* lr */
    LD_LR_INVERSE_SCALING = 1, /* lr / (1 + decay * t)^power_t */
    LD_LR_EXPONENTIAL = 2      /* lr * decay^t */
};
enum { LD_DF_NONE = 0, LD_DF_FNW = 1 };
enum { LD_DNORM_NONE = 0, LD_DNORM_MAXABS = 1, LD_DNORM_STANDARD = 2 };

/* The `trainer:` config section (filled by the YAML loader from
 * ld_trainer_conf_section; strings owned by the config). */
typedef struct ld_trainer_conf {
    char *name;          /* model name: store directory, Kafka keys */
    int model;           /* LD_MODEL_* */
    int64_t num_classes; /* softmax K */
    int64_t hash_bits;
    int64_t dense_dim;
    int optimizer; /* LD_OPT_* */
    double learning_rate;
    int lr_schedule; /* LD_LR_* (SGD) */
    double lr_decay;
    double lr_power_t;
    double ftrl_beta;
    double adagrad_initial_accumulator;
    double epsilon;
    double adam_beta1;
    double adam_beta2;
    double l1;
    double l2;
    int delayed_feedback;       /* LD_DF_* */
    int dense_norm;             /* LD_DNORM_* */
    double dense_learning_rate; /* 0: learning_rate */
    int64_t batch_size;
    int64_t batch_span; /* ms of event time */
    int64_t metrics_window;
    int64_t blas_threads;
    int64_t snapshot_step; /* bytes copied per batch by a pending snapshot */
} ld_trainer_conf_t;

extern const ld_conf_section_t ld_trainer_conf_section;

typedef struct ld_trainer ld_trainer_t;
/* A frozen, complete copy of a model's parameters and optimizer state;
 * reference counted, immutable, shareable across threads. */
typedef struct ld_snapshot ld_snapshot_t;

/* Windowed prequential metrics; NaN where a metric does not apply. */
typedef struct ld_trainer_metrics {
    uint64_t examples;
    double logloss;  /* logistic, softmax */
    double auc;      /* logistic: exact, weighted, ties count 1/2 */
    double accuracy; /* logistic (p >= 0.5), softmax (argmax) */
    double rmse;     /* linear: of y - yhat; logistic: of y - p (Brier) */
    double mean_prediction, mean_label;
    double calibration; /* mean_prediction / mean_label */
    int64_t window_start_ms, window_end_ms;
} ld_trainer_metrics_t;

/* One matured example as scored before training (shadow included). */
typedef struct ld_scored {
    /* The example as it was queued: features (hashed and dense), label,
     * weight, sample type, times, partition, offset and event id; borrowed
     * from the trainer's batch, valid only during the callback. Pairs the
     * scores with what the triggers stage watches for feature drift:
     * ld_triggers_observe(tr, s->ex, s->pred, s->champion). x.dense has
     * dense_dim entries (NULL never: it points into the batch even when
     * dense_dim is 0); event_id is NULL when the example had none. */
    const ld_example_t *ex;
    float pred;     /* logistic p(y=1); linear yhat; softmax p(label) */
    float champion; /* the same from the champion; NaN without one */
    float loss;     /* logloss (logistic, softmax) or squared error */
    float champion_loss;
    float label;
    float weight;
    uint32_t pred_class; /* logistic p >= .5; softmax argmax; linear 0 */
    uint32_t champion_class;
    ld_sample_type_t sample_type;
    int64_t event_time_ms;
} ld_scored_t;

/* Called once per micro-batch with its matured (pos, default_neg) examples,
 * in order, after they are scored (with the parameters as they were at the
 * batch's start) and before the dense block trains; one-output FTRL models
 * score and train their hashed features in one pass, so those may already
 * have their steps. s and everything it points to are borrowed for the
 * duration of the call. */
typedef void ld_trainer_scored_cb(void *opaque, const ld_scored_t *s, size_t n);

typedef struct ld_trainer_stats {
    uint64_t examples; /* trained on */
    uint64_t by_type[LD_SAMPLE__COUNT];
    uint64_t batches;  /* = optimizer step */
    uint64_t rejected; /* refused by ld_trainer_add */
    int64_t last_event_time_ms;
    uint64_t snapshot_blocks_cow;   /* copied on first write */
    uint64_t snapshot_blocks_steps; /* copied by the background steps */
} ld_trainer_stats_t;

/* Creates a trainer with zero parameters. conf is borrowed (copied). Pins
 * OpenBLAS to conf->blas_threads threads (1 by default). Returns NULL on bad
 * config or allocation failure, with the reason in errstr. Caller frees with
 * ld_trainer_destroy(). */
ld_trainer_t *ld_trainer_new(const ld_trainer_conf_t *conf, char *errstr,
                             size_t errstr_size);
/* Frees t, its pending batch and any champion reference. NULL is a no-op. */
void ld_trainer_destroy(ld_trainer_t *t);

/* Queues one example, copying its features (ex is borrowed). When the batch
 * reaches batch_size, or ex's event time is batch_span or more past the
 * batch's first example, the batch is trained (before ex is queued in the
 * span case). Returns LD_ERR_INVAL without queueing for an example the model
 * cannot take (index out of range, non-finite value or weight, wrong dense
 * length, bad label); the caller dead-letters it. Never allocates except to
 * grow the batch's feature or event-id arena beyond its largest size so far
 * (LD_ERR_NOMEM if that fails; nothing queued). */
ld_err_t ld_trainer_add(ld_trainer_t *t, const ld_example_t *ex) LD_WUR;

/* Examples queued for the next micro-batch and not trained yet. The
 * daemon's resume state carries them, so a restart rebuilds the same
 * batches: re-adding them in order with ld_trainer_add() restores the
 * queue exactly (scores are taken when a batch trains, not when queued). */
size_t ld_trainer_queued(const ld_trainer_t *t);
/* Fills out with queued example i (< ld_trainer_queued()) as it was added;
 * its pointers are views into the batch, valid until t next changes.
 * LD_ERR_INVAL when i is out of range. */
ld_err_t ld_trainer_queued_get(const ld_trainer_t *t, size_t i,
                               ld_example_t *out) LD_WUR;

/* Trains the queued partial batch now (commit point, shutdown). */
ld_err_t ld_trainer_flush(ld_trainer_t *t) LD_WUR;

/* Scores x with the current parameters into out[0..k-1]: p(y=1) for
 * logistic, yhat for linear, class probabilities for softmax. nout must be
 * at least the number of outputs (1, or num_classes). */
ld_err_t ld_trainer_predict(const ld_trainer_t *t, const ld_features_t *x,
                            float *out, size_t nout) LD_WUR;

/* Sets the per-batch callback for detectors (NULL to remove). */
void ld_trainer_set_scored_cb(ld_trainer_t *t, ld_trainer_scored_cb *cb,
                              void *opaque);

/* Windowed metrics of the model and of the champion (either may be NULL).
 * Not const: the AUC sorts in a scratch buffer. */
void ld_trainer_metrics(ld_trainer_t *t, ld_trainer_metrics_t *model,
                        ld_trainer_metrics_t *champion);
void ld_trainer_stats(const ld_trainer_t *t, ld_trainer_stats_t *out);
/* Number of outputs (1, or num_classes for softmax). */
uint32_t ld_trainer_outputs(const ld_trainer_t *t);

/* ---- Snapshots, champion, warm start ------------------------------------ */

/* Starts a copy-on-write snapshot of the current state. Dense state is copied
 * at once; sparse state is copied block by block: a block is copied before
 * its first write, and each trained batch (and each poll) also copies up to
 * snapshot_step bytes, so training never stalls for a whole-model copy
 * (2^22 FTRL weights: ~0.2 ms here, ~1 ms in the worst batch after it).
 * The copy goes into a buffer a helper thread faulted in beforehand (after
 * ld_trainer_new and after each completed snapshot); called before the
 * helper is done (a few ms, more on a VM touching fresh memory), begin
 * waits for it. Returns LD_ERR_INVAL if a snapshot is already in
 * progress. Thread: loop (the trainer's). */
ld_err_t ld_trainer_snapshot_begin(ld_trainer_t *t) LD_WUR;
/* Copies one more step; returns the snapshot once complete (the caller owns
 * it: ld_snapshot_destroy()), NULL while still copying or when none is in
 * progress. Thread: loop. */
ld_snapshot_t *ld_trainer_snapshot_poll(ld_trainer_t *t);
/* Completes the pending snapshot now (copying what is left) and returns it
 * (caller owns), or NULL when none is in progress. Thread: loop. */
ld_snapshot_t *ld_trainer_snapshot_finish(ld_trainer_t *t);
/* begin + finish: a snapshot of the state right now (caller owns), or NULL
 * on allocation failure or when another is in progress. Thread: loop. */
ld_snapshot_t *ld_trainer_snapshot(ld_trainer_t *t);

/* A copy-on-write snapshot of the state right now whose sparse part
 * another thread copies: the loop copies only the blocks it is about to
 * write (or to read through the champion, when this snapshot becomes it)
 * before that thread got to them; ld_snapshot_complete() copies the rest
 * on the thread that calls it. Costs the loop the dense part and a block
 * map (~0.1 ms at 2^22), not a copy of the model. A shared snapshot still
 * being copied is completed first (on the loop). Returns a reference the
 * caller releases with ld_snapshot_destroy() (the trainer keeps its own
 * until the copy is whole), or NULL when out of memory or when an
 * unshared snapshot is in progress. Read nothing of its sparse state
 * (parameters hash, checkpoint encode) before ld_snapshot_complete().
 * Thread: loop. */
ld_snapshot_t *ld_trainer_snapshot_shared(ld_trainer_t *t);
/* Makes s whole: copies every block nobody copied yet and waits for those
 * another thread is copying. No-op for a snapshot that is whole (every
 * snapshot but a pending shared or polled one). The trainer s was taken
 * from must exist until it returns. Thread: any (the
 * publisher, for a shared snapshot). */
void ld_snapshot_complete(ld_snapshot_t *s);

/* Drops one reference; frees at zero. NULL is a no-op. Thread: any. */
void ld_snapshot_destroy(ld_snapshot_t *s);
/* Adds a reference (returns s); release it with ld_snapshot_destroy().
 * Thread: any. */
ld_snapshot_t *ld_snapshot_ref(ld_snapshot_t *s);
/* SHA-256 over the parameter tensors as a checkpoint stores them ("w",
 * "dense_w", "bias": raw little-endian float32, in that order); equal to
 * Lineage.params_sha256. Thread: any (a complete snapshot). */
void ld_snapshot_params_sha256(const ld_snapshot_t *s, uint8_t out[32]);
/* Examples the snapshot's model was trained on, by sample type. Thread:
 * any. */
void ld_snapshot_counts(const ld_snapshot_t *s, uint64_t out[LD_SAMPLE__COUNT]);

/* Makes s the frozen champion scored alongside the model (shadow
 * evaluation); takes a reference of its own (s stays the caller's). NULL
 * removes the champion. Returns LD_ERR_INVAL if s's shape differs. The
 * champion's metric window restarts. Thread: loop. */
ld_err_t ld_trainer_champion_set(ld_trainer_t *t, ld_snapshot_t *s) LD_WUR;

/* Warm start: replaces the whole model and optimizer state with s's
 * (borrowed). Returns LD_ERR_CONFIG, with the reason in errstr, if s's model,
 * shape or optimizer differ from t's config; hyperparameters come from the
 * config (a changed learning rate takes effect). Drops any queued batch.
 * Thread: loop. */
ld_err_t ld_trainer_restore(ld_trainer_t *t, const ld_snapshot_t *s,
                            char *errstr, size_t errstr_size) LD_WUR;

/* ---- Dirty blocks: what changed since a point in time ------------------ */

/* The sparse state is tracked in blocks of 2^LD_TRAINER_STATE_SHIFT slots
 * (fewer when hash_bits is smaller): the unit of the incremental resume
 * state (publish/state_topic.c) and of delta checkpoints. 16 slots of FTRL
 * are 192 bytes, about the size of a Kafka record's own overhead, so a
 * smaller block saves little and a larger one writes untouched rows of a
 * hashed model (see docs/ARCHITECTURE.md, "Resume state"). */
#ifndef LD_TRAINER_STATE_SHIFT
#define LD_TRAINER_STATE_SHIFT 4
#endif

/* Number of sparse blocks and slots per block of t's model. Thread: any. */
size_t ld_trainer_state_blocks(const ld_trainer_t *t);
uint32_t ld_trainer_state_block_slots(const ld_trainer_t *t);
/* Floats of one block in the plain layout: slots x outputs x (weight +
 * optimizer planes). Thread: any. */
size_t ld_trainer_state_block_floats(const ld_trainer_t *t);
/* 1 when a trained batch, ld_trainer_new or ld_trainer_restore wrote
 * block b (< ld_trainer_state_blocks) since the last
 * ld_trainer_dirty_clear(), else 0. Thread: loop. */
int ld_trainer_block_dirty(const ld_trainer_t *t, size_t b);
/* The same at row granularity: bit j set when slot j of block b was
 * written since the last ld_trainer_dirty_clear(). Thread: loop. */
uint32_t ld_trainer_block_dirty_rows(const ld_trainer_t *t, size_t b);
/* Forgets the dirty marks: the caller has recorded the state as it is now.
 * Thread: loop. */
void ld_trainer_dirty_clear(ld_trainer_t *t);
/* Copies block b (< ld_trainer_state_blocks) of the sparse state in the
 * plain layout a snapshot and a checkpoint use (per slot, per output: the
 * weight, then the optimizer accumulators) into out
 * (ld_trainer_state_block_floats floats). Bit for bit what a snapshot
 * taken now would hold there. Thread: loop. */
void ld_trainer_state_block(const ld_trainer_t *t, size_t b, float *out);
/* 1 when t's weights are a closed form of the other planes (FTRL: w from
 * z and n), so that a copy of the state may leave them out
 * (ld_trainer_state_block_zn) and recompute them (ld_snapshot_derive_w).
 * Thread: any. */
int ld_trainer_state_w_derived(const ld_trainer_t *t);
/* Block b as ld_trainer_state_block, rows without weights: only when
 * ld_trainer_state_w_derived. Returns the mask of the slots whose weights
 * are not the closed form of their (z, n) with t's hyperparameters (bit j:
 * slot j must keep them; only where a warm start under other
 * hyperparameters left a row untouched since); their weights are in out,
 * every other slot's weights are 0 (not computed). Thread: loop. */
uint32_t ld_trainer_state_block_zn(const ld_trainer_t *t, size_t b, float *out);
/* Sets the weight of every slot of s's sparse state, except those whose
 * bit is set in keep (a bitmap by slot, LSB first, borrowed; NULL: none),
 * to the closed form of its (z, n) with s's own hyperparameters: bit for
 * bit what the trainer that wrote (z, n) stored. LD_ERR_INVAL (nothing
 * changed) unless s is an FTRL snapshot with sparse state. Thread: the
 * snapshot's owner. */
ld_err_t ld_snapshot_derive_w(ld_snapshot_t *s, const uint8_t *keep) LD_WUR;
/* A snapshot of everything but the sparse state (its sparse part absent:
 * see ld_snapshot_has_sparse), for a checkpoint that carries the sparse
 * rows elsewhere (ld_ckpt_encode writes its sparse tensors empty). Caller
 * owns; NULL when out of memory. Thread: loop. */
ld_snapshot_t *ld_trainer_state_head(ld_trainer_t *t);
/* 1 when s holds sparse state (not a head snapshot). Thread: any. */
int ld_snapshot_has_sparse(const ld_snapshot_t *s);
/* The sparse state of s in the plain layout (*n floats; block b starts at
 * b * ld_trainer_state_block_floats of a trainer of the same shape), for
 * filling a snapshot from blocks before ld_trainer_restore and for
 * comparing rows (delta checkpoints). NULL for a head snapshot. Thread:
 * the snapshot's owner. */
float *ld_snapshot_sparse(ld_snapshot_t *s, size_t *n);

/* OpenBLAS core name (openblas_get_corename()), for lineage. Thread: any. */
const char *ld_trainer_blas_core(void);

#endif /* LD_TRAINER_H */
