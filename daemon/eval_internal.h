/* SPDX-License-Identifier: Apache-2.0 */
/* Shared by the evaluation engine's files: eval.c (feeding, scoring,
 * refreshing) and eval_report.c (table, JSON, SVG). Nothing else includes
 * it. */
#ifndef LD_DAEMON_EVAL_INTERNAL_H
#define LD_DAEMON_EVAL_INTERNAL_H

#include "daemon/eval.h"
#include "trainer/scorer.h"

/* Weighted sums over scored examples, in scoring order: the same double
 * operations, in the same order, as the trainer's metric window
 * (trainer/metrics.c), so a line equals the run's recorded metrics bit for
 * bit when it covers the same examples. */
typedef struct acc {
    uint64_t n;
    double sw, sl, sq, sc, sp, sy;
} acc_t;

typedef enum line_kind {
    LINE_CONTINUAL = 0, /* the trainer's own prequential scores */
    LINE_FROZEN,        /* a checkpoint, never refreshed */
    LINE_CADENCE,       /* refreshed every param ms of decision time */
    LINE_STALE          /* frozen at to - eval_window - param */
} line_kind_t;

typedef struct line {
    char name[64];
    line_kind_t kind;
    int64_t param;
    ld_scorer_t *sc; /* NULL: the trainer's scores */
    int64_t next_ms; /* next refresh boundary of decision time; INT64_MAX */
    int due;         /* a boundary passed: refresh after the next batch */
    int64_t eval_from, eval_to;
    acc_t all;
    acc_t *bucket;
    /* every score, for the exact AUC (overall and per bucket) */
    float *p, *y, *w;
    uint32_t *b;
    size_t n, cap;
    int failed; /* out of memory growing the arrays: AUC is NaN */
} line_t;

struct ld_eval {
    ld_eval_conf_t c;
    int model;
    int64_t window_ms;
    int64_t train_from;
    ld_joiner_t *j;
    ld_trainer_t *t;
    line_t *l;
    size_t nl;
    size_t nbuckets;
    uint64_t batches;
    ld_eval_counts_t cnt;
    uint64_t accepted;       /* events of the range the joiner kept */
    uint64_t released_first; /* their first release (matured or fake_neg) */
    uint64_t absorbed_prev;  /* joiner's late + duplicate events so far */
    int finished;
    int failed;    /* out of memory while scoring a batch */
    ld_score_t *o; /* a batch's scores, nl x ocap */
    size_t ocap;
};

/* The metrics of a sum (NaN where undefined); auc is the caller's. */
void eval_acc_metrics(const acc_t *a, int model, ld_trainer_metrics_t *m);
/* Exact AUC of line l over all its scores; per bucket into out[0..nb-1]
 * (NaN where undefined; -1 when out of memory). */
double eval_line_auc(const line_t *l);
int eval_line_bucket_aucs(const line_t *l, size_t nb, double *out);

#endif /* LD_DAEMON_EVAL_INTERNAL_H */
