/* SPDX-License-Identifier: Apache-2.0 */
/* Scorers: a model's weights without its optimizer state, for scoring
 * examples with a frozen or periodically refreshed copy of a model
 * (backtests, the freshness experiment). */
#ifndef LD_TRAINER_SCORER_H
#define LD_TRAINER_SCORER_H

#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "trainer/trainer.h"

/* A scoring copy: 2^hash_bits x K sparse weights plus the dense block and
 * bias, float32, nothing else (a trainer's FTRL state is 3 to 4 times
 * that). Not thread-safe; immutable between loads. */
typedef struct ld_scorer ld_scorer_t;

/* One example's score, as the trainer scores it (ld_scored_t). */
typedef struct ld_score {
    float pred;  /* logistic p(y=1); linear yhat; softmax p(label) */
    float loss;  /* logloss (logistic, softmax) or squared error */
    float sqerr; /* (y - p)^2, linear: (y - yhat)^2 */
    int correct; /* logistic p >= .5 == y >= .5; softmax argmax == y */
} ld_score_t;

/* A scorer shaped like t (borrowed), all weights 0. NULL when out of
 * memory. Caller frees with ld_scorer_destroy(). */
ld_scorer_t *ld_scorer_new(const ld_trainer_t *t);
/* NULL is a no-op. */
void ld_scorer_destroy(ld_scorer_t *s);

/* Copies t's current weights into s (t borrowed, shaped like s): call it
 * between micro-batches (after ld_trainer_add() trained one, or a flush),
 * when every weight is the one the next batch starts from. */
void ld_scorer_load_trainer(ld_scorer_t *s, const ld_trainer_t *t);

/* Copies snap's weights into s (snap borrowed). LD_ERR_CONFIG with the
 * differing field in errstr when snap's shape is not s's. */
ld_err_t ld_scorer_load_snapshot(ld_scorer_t *s, const ld_snapshot_t *snap,
                                 char *errstr, size_t errstr_size) LD_WUR;

/* dst := src (same shape: both from ld_scorer_new() of one trainer). */
void ld_scorer_copy(ld_scorer_t *dst, const ld_scorer_t *src);

/* Scores the n examples of one trainer micro-batch as the trainer's
 * scored callback hands them (ex[i].ex and ex[i].label; borrowed) into
 * out[0..n-1]: the dense block of all n in one BLAS call, as the trainer
 * scores its champion, so with every example of the batch matured a
 * frozen copy's scores are the champion's bit for bit. LD_ERR_NOMEM when
 * the scratch cannot grow (out untouched). */
ld_err_t ld_scorer_score_batch(ld_scorer_t *s, const ld_scored_t *ex, size_t n,
                               ld_score_t *out) LD_WUR;

/* Bytes of weights s holds (what one more copy costs). */
size_t ld_scorer_bytes(const ld_scorer_t *s);

/* Exact weighted ROC AUC of n scores against labels (>= 0.5 positive),
 * ties counted one half; w may be NULL (all 1). NaN when a class has no
 * weight or out of memory. */
double ld_scorer_auc(const float *score, const float *label, const float *w,
                     size_t n);

#endif /* LD_TRAINER_SCORER_H */
