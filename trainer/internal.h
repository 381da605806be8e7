/* SPDX-License-Identifier: Apache-2.0 */
/* Trainer-internal declarations shared by trainer.c, metrics.c and
 * checkpoint.c (and their unit tests); not part of the public API. */
#ifndef LD_TRAINER_INTERNAL_H
#define LD_TRAINER_INTERNAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "trainer/trainer.h"

/* ---- SHA-256 ------------------------------------------------------------ */

typedef struct ld_sha256 {
    uint32_t st[8];
    uint64_t len;
    uint8_t buf[64];
    size_t nbuf;
} ld_sha256_t;

void ld_sha256_init(ld_sha256_t *c);
void ld_sha256_update(ld_sha256_t *c, const void *data, size_t n);
void ld_sha256_final(ld_sha256_t *c, uint8_t out[32]);
/* Tests set this to compare the portable code with the SHA-NI path. */
extern int ld_sha256_force_portable;

/* ---- Model state -------------------------------------------------------- */

/* Hyperparameters and shapes: what a checkpoint's ModelSpec carries. */
typedef struct ld_spec {
    int model;          /* LD_MODEL_* */
    int opt;            /* LD_OPT_* */
    uint32_t k;         /* outputs: 1, or num_classes for softmax */
    uint32_t hash_bits; /* 2^hash_bits sparse slots */
    uint32_t dense_dim; /* D; the dense block stores D + 1 columns (bias) */
    uint32_t s;         /* floats per coordinate: weight + optimizer state */
    double lr, l1, l2, beta, init_acc, eps, beta1, beta2, decay, power_t;
    int schedule;    /* LD_LR_* */
    int dense_norm;  /* LD_DNORM_*: a hyperparameter, not a shape */
    double dense_lr; /* dense block's lr / FTRL alpha; 0: lr */
} ld_spec_t;

/* A frozen copy of every parameter and optimizer accumulator.
 *
 * Sparse state is stored coordinate-major ("array of structs"): the s floats
 * of output k of slot i are sp[((i * k) + k) * s + 0 .. s-1], plane 0 being
 * the weight and planes 1.. the optimizer accumulators (AdaGrad: g2; FTRL: z,
 * n; Adam: m, v). One hashed feature therefore touches one cache line.
 *
 * Dense state is plane-major so BLAS sees a plain row-major matrix: plane p
 * is dn[p * k * (D+1) ..], a k x (D+1) matrix whose last column is the bias.
 */
struct ld_snapshot {
    atomic_int refs;
    ld_spec_t spec;
    uint64_t step; /* micro-batches applied */
    uint64_t examples;
    uint64_t by_type[LD_SAMPLE__COUNT];
    float *sp;
    size_t sp_n;
    float *dn;
    size_t dn_n;
    /* Dense normalization scale per dense column (dense_dim floats, NULL
     * when dense_dim is 0): the largest |x| seen so far, 0 for a column
     * whose state is still in raw units (never seen non-zero, or restored
     * from a checkpoint written before normalization existed). */
    float *dscale;
    /* Running statistics per dense column for dense_norm standard
     * (3 x dense_dim floats: count, mean, M2 of Welford's method; all 0 for
     * a column whose state is in raw units). */
    float *dstat;
    ld_trainer_metrics_t metrics, champion_metrics;
    /* Copy-on-write state while the sparse part is being copied from a
     * training model (snapshot.c); stays until the snapshot is freed, and
     * says "whole" once every block is copied. NULL: whole from birth. */
    struct snap_cow *cow;
};

/* n floats for sparse state, huge-page backed when large (zeroed if zero);
 * NULL when out of memory; free with free(). */
float *ld_state_alloc(size_t n, int zero);
/* Allocates a zeroed snapshot of the given shape (refs = 1). */
ld_snapshot_t *ld_snapshot_alloc(const ld_spec_t *spec);
/* The first field ("model kind", "num_classes", "hash_bits", "dense_dim",
 * "optimizer") in which two specs' shapes differ, or NULL. */
const char *ld_spec_mismatch(const ld_spec_t *a, const ld_spec_t *b);
/* t's spec (borrowed). */
const ld_spec_t *ld_trainer_spec(const ld_trainer_t *t);
/* Tests set this to run the lazy FTRL pass's SSE loops where the CPU has
 * AVX2 (both must give the same state, bit for bit). */
extern int ld_trainer_force_sse;
/* Tests lower this (from LD_TRAINER_TICK_MAX) to make the lazy pass
 * restart its chunk tags often. */
#define LD_TRAINER_TICK_MAX 0x7f000000u
extern uint32_t ld_trainer_tick_max;
/* Number of optimizer planes and their names ("ftrl.z", ...). */
uint32_t ld_spec_planes(int opt);
const char *ld_spec_plane_name(int opt, uint32_t plane);

/* ---- Metrics ------------------------------------------------------------ */

typedef struct ld_auc_item {
    uint32_t key; /* the score, mapped to sort as an unsigned integer */
    float y, w;
} ld_auc_item_t;

/* Weighted ROC AUC of scores against binary labels (label >= 0.5 is
 * positive); ties count one half, NaN scores rank lowest. Exact, a radix
 * sort (O(n)); scratch holds 2 n items. Returns NaN when either class has
 * zero weight. */
double ld_auc_exact(const float *score, const float *label, const float *w,
                    size_t n, ld_auc_item_t *scratch);

/* Sliding window of the last cap scored matured examples. */
typedef struct ld_window {
    size_t cap, n, head;
    float *pred, *label, *weight, *loss, *sqerr;
    uint8_t *correct;
    int64_t *time;
    ld_auc_item_t *scratch; /* 2 cap */
} ld_window_t;

ld_err_t ld_window_init(ld_window_t *w, size_t cap) LD_WUR;
void ld_window_free(ld_window_t *w);
void ld_window_clear(ld_window_t *w);
void ld_window_push(ld_window_t *w, float pred, float label, float weight,
                    float loss, float sqerr, int correct, int64_t time);
/* Computes the window's metrics for a model kind (NaN where undefined). */
void ld_window_metrics(ld_window_t *w, int model, ld_trainer_metrics_t *out);

#endif /* LD_TRAINER_INTERNAL_H */
