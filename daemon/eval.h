/* SPDX-License-Identifier: Apache-2.0 */
/* The evaluation engine of `learnd backtest` and `learnd freshness`: input
 * records in, the joiner's matured examples scored by a continually trained
 * model, frozen checkpoints and deployed copies refreshed at cadences, out
 * as metrics per event-time bucket (docs/OPERATIONS.md, "Backtests and the
 * value of fresh data"). */
#ifndef LD_DAEMON_EVAL_H
#define LD_DAEMON_EVAL_H

#include <stdint.h>
#include <stdio.h>

#include "labeling/labeling.h"
#include "pipeline/record.h"
#include "trainer/trainer.h"

typedef struct ld_eval ld_eval_t;

/*
 * What is scored. The range [from_ms, to_ms) is of event time; an example
 * counts when its event time is in it and its label matured (pos,
 * default_neg). The continual model starts from `start` (or zero weights)
 * and trains prequentially (score, then learn: the trainer's own scores)
 * on every example of event time [from_ms - warmup_ms, to_ms), in the
 * joiner's release order with the config's micro-batches: without warmup
 * and from a checkpoint that `learnd run` published, it is that run's
 * model, batch for batch.
 *
 * Frozen lines score with a checkpoint's weights throughout. A cadence
 * line c is a deployed copy: it starts as the continual model and is
 * refreshed from it at every boundary from_ms + k c (k >= 1; k >= 0 with a
 * warmup) of decision time, at the end of the first micro-batch that holds
 * an example decided at or past the boundary (weights change only between
 * micro-batches). Cadence 0 is the continual model itself. A staleness
 * line d is the continual model frozen the same way at to_ms - eval_window
 * - d and scores only [to_ms - eval_window, to_ms).
 */
typedef struct ld_eval_conf {
    int64_t from_ms, to_ms;    /* scored event-time range, from < to */
    int64_t bucket_ms;         /* width of the per-window metrics, > 0 */
    int64_t warmup_ms;         /* trained before from_ms, not scored; >= 0 */
    const int64_t *cadence_ms; /* freshness: refresh periods, >= 0 */
    size_t ncadence;
    const int64_t *stale_ms; /* freshness: staleness ages, >= 0 */
    size_t nstale;
    int64_t eval_window_ms; /* with nstale: > 0 and <= to - from */
    /* the continual model's start (borrowed for the call); NULL: zero */
    const ld_snapshot_t *start;
    /* backtest: frozen checkpoints and their line names (borrowed for the
     * call) */
    const ld_snapshot_t *const *frozen;
    const char *const *frozen_names;
    size_t nfrozen;
    int continual; /* backtest: also the continual line */
} ld_eval_conf_t;

/* An engine for the model of tc and the label rules of lc (both borrowed;
 * tc->dense_dim must be the number of dense fields). NULL with the reason
 * in errstr (bad settings, a start or frozen snapshot of another shape,
 * out of memory). Caller frees with ld_eval_destroy(). */
ld_eval_t *ld_eval_new(const ld_trainer_conf_t *tc,
                       const ld_labeling_conf_t *lc, const ld_eval_conf_t *ec,
                       char *errstr, size_t errstr_size);
void ld_eval_destroy(ld_eval_t *e);

/* Partition p of both input topics will be fed (ld_joiner_assign). */
ld_err_t ld_eval_assign(ld_eval_t *e, int32_t partition) LD_WUR;

/* Feeds one decoded input record (borrowed; records of one partition in
 * offset order) and scores and trains whatever the joiner releases. A
 * record the joiner refuses (out of memory, a bug) is counted. Returns
 * LD_ERR_NOMEM when the model cannot grow its batch. */
ld_err_t ld_eval_add(ld_eval_t *e, const ld_record_t *rec) LD_WUR;

/* Counts a dead-lettered input record (undecodable: never scored). */
void ld_eval_note_dead(ld_eval_t *e);

/* The joiner's watermark (min over the assigned partitions), and whether
 * it has passed every decision the range needs (to_ms + window): reading
 * further changes nothing. */
int64_t ld_eval_watermark(ld_eval_t *e);
int ld_eval_complete(ld_eval_t *e);

/* Trains the last partial micro-batch (its examples get scored) and counts
 * the range's events still pending. Call once, after the last add. */
ld_err_t ld_eval_finish(ld_eval_t *e) LD_WUR;

/* Reports (after finish). The inputs section of the JSON is written by the
 * caller through inputs (may be NULL): it writes one JSON object. */
typedef struct ld_eval_inputs {
    const char *command; /* "backtest" or "freshness" */
    const char *model;
    const char *config_hash_hex;
    /* per partition: "topic", partition, first and end offset read */
    size_t nranges;
    const char *const *range_topic;
    const int32_t *range_partition;
    const int64_t *range_first, *range_end;
    /* checkpoints: name, version, params sha256 hex */
    size_t nckpt;
    const char *const *ckpt_name;
    const uint64_t *ckpt_version;
    const char *const *ckpt_sha_hex;
} ld_eval_inputs_t;

/* The text table on out. */
void ld_eval_print(ld_eval_t *e, FILE *out);
/* The JSON document (schemas/backtest.schema.json); byte-identical for
 * the same input. LD_ERR_IO when out cannot be written. */
ld_err_t ld_eval_write_json(ld_eval_t *e, const ld_eval_inputs_t *in,
                            FILE *out) LD_WUR;
/* The SVG line chart of the windowed metric, one line per model. marks
 * (n of them, event times in ms) are drawn as dashed verticals labelled
 * with mark_names (e.g. drift triggers). */
ld_err_t ld_eval_write_svg(ld_eval_t *e, const int64_t *marks,
                           const char *const *mark_names, size_t nmarks,
                           FILE *out) LD_WUR;

/* A duration as lines are named: 0, 90s, 10m, 1h, 1d (the largest unit
 * that divides it; else milliseconds). */
void ld_eval_duration_name(int64_t ms, char *buf, size_t size);

/* Counters of a finished run, for callers and tests. */
typedef struct ld_eval_counts {
    uint64_t records, dead;
    uint64_t scored;    /* matured examples of the range */
    uint64_t pending;   /* events of the range still undecided at the end */
    uint64_t absorbed;  /* events of the range the joiner took as late or
                           duplicate (no example) */
    uint64_t trained;   /* examples the continual model trained on */
    uint64_t refused;   /* records the joiner refused, examples the model
                           refused */
    uint64_t refreshes; /* deployed copies refreshed */
    size_t copies;      /* scoring copies held */
    size_t copy_bytes;  /* bytes of weights in each */
} ld_eval_counts_t;
void ld_eval_counts(const ld_eval_t *e, ld_eval_counts_t *out);

/* Metrics of line i (in report order) over the whole range: examples,
 * logloss, auc, accuracy, rmse, calibration; NaN where undefined. Returns
 * the line's name, or NULL past the last line. */
const char *ld_eval_line(ld_eval_t *e, size_t i, ld_trainer_metrics_t *out);

#endif /* LD_DAEMON_EVAL_H */
