/* SPDX-License-Identifier: Apache-2.0 */
/* The trainer's private layout, shared by the files that make it up:
 * trainer.c (lifetime, scoring, the micro-batch, the plain sparse update),
 * lazy.c (the fused lazy FTRL pass), dense.c (the dense block) and
 * snapshot.c (copy-on-write snapshots and restore). The inline kernels
 * every one of them needs are here, so each loop still compiles to the
 * code it was when they were one file. Nothing outside trainer/ includes
 * it. */
#ifndef LD_TRAINER_CORE_H
#define LD_TRAINER_CORE_H

#include <cblas.h>
#include <math.h>
#ifdef __SSE2__
#include <emmintrin.h>
#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define LAZY_AVX2 1
#endif
#endif
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "trainer/internal.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "checkpoint tensors are stored as the host's float32: little endian only"
#endif

/* b_eid of an example without an event id. */
#define NO_EID UINT32_MAX

/* Sparse slots per copy-on-write block of a pending snapshot (at most).
 * Lazy slots are wider and converted as they are copied: 8 of them (two
 * source lines) kept the first batch after a snapshot began cheapest
 * (bench_trainer: 0.60 ms against 0.57-0.71 for 4 and ~0.8 for 16). */
#define BLOCK_SHIFT      4
#define LAZY_BLOCK_SHIFT 3

/* Software prefetch distance, in non-zeros of the batch. The sparse state
 * of a 2^22 model is far larger than the caches and hashed features land
 * anywhere in it, so without prefetching every cold slot costs a full
 * memory latency. b_idx keeps PF_DIST valid indices (0) past the batch's
 * last non-zero so the loops need no bounds check for the look-ahead. */
#ifndef PF_FWD
#define PF_FWD 64 /* scoring: a few ns per non-zero */
#endif
#ifndef PF_UPD
#define PF_UPD 16 /* update: slower per non-zero, lines mostly cached */
#endif
#ifndef PF_LAZY
#define PF_LAZY 64
#endif
#define PF_MAX(a, b)  ((a) > (b) ? (a) : (b))
#define PF_DIST       PF_MAX(PF_MAX(PF_FWD, PF_UPD), PF_LAZY)
#define PREFETCH_W(p) __builtin_prefetch((p), 1, 3)
#define PREFETCH_R(p) __builtin_prefetch((p), 0, 3)

/* The lazy FTRL layout (FTRL with one output: logistic, linear). A slot is
 * four floats, 16 aligned bytes, so one slot is one cache line access:
 *     z, n   the FTRL accumulators
 *     wb     the weight the slot had when the batch that last updated it
 *            began
 *     tag    (uint32 bits) the chunk (t->tick) that last updated the slot
 * The weight itself is not stored: it is the closed form of (z, n),
 * recomputed where needed, bit for bit the value the plain (w, z, n)
 * layout stores after each step. Snapshots, checkpoints and restore keep
 * the plain layout and convert.
 *
 * Why: every example of a batch is scored with the weights as they were at
 * the batch's start, and that used to need a scoring pass over all of the
 * batch's non-zeros before the update pass. At 2^22 slots the state spans
 * far more 4 KiB pages than the TLB maps (this class of VM backs guest
 * memory with 4 KiB pages even where the guest uses huge pages), so each
 * pass paid a page walk per non-zero. With wb and tag, a slot tells its
 * batch-start weight whenever it is read (tag within this batch's chunks:
 * wb, else the closed form), so scoring and updating run together, a chunk
 * of LAZY_CHUNK examples at a time, and each slot is fetched once per
 * batch. The chunk-grained tag also tells the update whether the weight
 * and sqrt(n) the gather computed are still current (tag != this chunk),
 * which saves recomputing them. Tags count up to ld_trainer_tick_max
 * (at most 2^31 - 2^21: room for a batch of chunks), then all are
 * cleared (once in ~10^10 examples), so signed compares order them. */
#define LAZY_SS 4
#ifndef LAZY_CHUNK
#define LAZY_CHUNK 4 /* examples scored, then updated, per step */
#endif

typedef struct score {
    float pred, loss, sqerr;
    uint32_t cls;
    int correct;
} score_t;

/* Per-batch constants of the update rule. */
typedef struct hp {
    float lr, l1, l2, beta, inv_alpha, eps, b1, b2, c1, c2;
} hp_t;

struct ld_trainer {
    ld_spec_t spec;
    int df; /* LD_DF_* */
    uint32_t k, d1, s;
    uint32_t ss;   /* floats per coordinate in sp: s, or LAZY_SS if lazy */
    int lazy;      /* the lazy FTRL layout and fused pass (see LAZY_SS) */
    int avx2;      /* the CPU runs the lazy pass's AVX2 loops */
    uint32_t tick; /* lazy: tag of the chunk last trained */
    hp_t lz;       /* lazy: FTRL constants (they do not change per batch) */
    hp_t dh;       /* the dense block's constants for this batch */
    size_t nslots;
    float *sp; /* sparse state, as in struct ld_snapshot unless lazy */
    size_t sp_n;
    size_t snap_n; /* floats of a snapshot's sparse state */
    float *dn;     /* dense state planes, k x d1 each */
    size_t dn_n;
    float *dscale; /* dense_dim normalization scales (ld_snapshot.dscale) */
    float *dstat;  /* 3 x dense_dim running statistics (ld_snapshot.dstat) */
    float *dtmp;   /* 3 x d1 scratch of dense_step_std */
    int dnorm;     /* LD_DNORM_* */
    uint64_t step;
    ld_trainer_stats_t st;

    /* The queued micro-batch: preallocated, reused. */
    size_t bcap, bn;
    int64_t batch_span, b_t0;
    uint32_t *b_off; /* bcap + 1 offsets into b_idx / b_val */
    uint32_t *b_idx;
    float *b_val;
    size_t nnz_n, nnz_cap;
    float *b_x; /* bcap x d1 dense rows, last column 1 (bias) */
    float *b_y, *b_w;
    uint8_t *b_type;
    int64_t *b_time;
    /* What the scored callback hands on besides scores: source position,
     * label time and event id (copied into an arena like the features). */
    int64_t *b_ltime, *b_srcoff;
    int32_t *b_part;
    uint32_t *b_eid; /* offset into eid, or NO_EID */
    char *eid;
    size_t eid_n, eid_cap;
    ld_example_t *b_ex;      /* views handed to the callback */
    float *b_z, *b_cz, *b_r; /* bcap x k: outputs, champion, gradients */
    float *b_g;              /* nnz_cap: per non-zero gradient (k = 1) */
    float *b_wb;             /* lazy, nnz_cap: batch-start weights */
    float *b_wn, *b_sq;      /* lazy, nnz_cap: weight and sqrt(n) now */
    score_t *b_o;            /* bcap: each example's score */
    ld_scored_t *b_sc;

    ld_window_t win, cwin;
    ld_snapshot_t *champ;

    /* Snapshot in progress (snap; NULL when none): pend is its per-block
     * copy state (snap_cow_t in snapshot.c), NULL when none is pending;
     * pend_buf the storage of an unshared one (allocated once: mapping and
     * faulting it in at every begin cost ~0.1 ms). shared: another thread
     * (the publisher) copies blocks too (ld_trainer_snapshot_shared). */
    ld_snapshot_t *snap;
    _Atomic uint8_t *pend;
    uint8_t *pend_buf;
    int shared;
    size_t nblocks, cursor, step_blocks;
    uint32_t bshift;
    ld_snapshot_t *done;
    /* A pre-faulted buffer for the next snapshot's sparse copy, prepared by
     * a helper thread: copying into fresh pages would otherwise take one
     * page fault per 4 KiB, all in the first batch after begin (COW writes
     * land everywhere), which is most of a whole-copy stall. */
    float *spare;
    pthread_t prep;
    int prep_running;
    atomic_int spare_ready; /* the helper is done: joining is instant */
    /* The thread copying the last shared snapshot (copier_main) at the
     * loop's priority: the publisher that also completes it runs behind
     * the loop (nice 10), and while a copy is pending every block the loop
     * writes first costs it a random-access copy. */
    pthread_t copier;
    int copier_running;

    /* What the sparse state wrote since the last ld_trainer_dirty_clear(),
     * for the incremental resume state, which writes only the rows touched
     * (a block bitmap alone made a commit rewrite every live row of a
     * 16-slot block for one touched row: bench_trainer --state 22 10000,
     * 4.2 % of the rows touched, 50 % of the blocks). Marked once per batch
     * from the batch's indices, not inside the update kernels. Lazy FTRL:
     * bit b per block, as before, and a block's rows are the slots whose
     * tag (the chunk that last stepped them) is >= ctick, or all of them
     * when dall (after ld_trainer_new, a restore or a tag restart): a bit
     * per row would cost its loop 0.6 cpu ns per non-zero at 2^22 (512 KiB
     * out of L1; bench_trainer --one 22 256 2, 10.0 -> 10.6). Other
     * models: bit r per row (AdaGrad at 2^22: 9.8 -> 10.3 cpu ns/nnz). */
    uint64_t *dirty;
    size_t dblocks, dwords;
    uint32_t dshift;
    uint32_t ctick; /* lazy: tags >= ctick are newer than the last clear */
    int dall;       /* lazy: every row of a marked block counts */

    ld_trainer_scored_cb *cb;
    void *cb_opaque;
};

/* ---- The lazy FTRL weight ----------------------------------------------- */

/* FTRL's weight from z and sq = sqrtf(n) (McMahan et al. 2013, eq. in
 * Algorithm 1): the same IEEE operations in the same order as opt_step's
 * FTRL case, so equal bit for bit to what it stores. */
static inline float ftrl_w(float z, float sq, const hp_t *h)
{
    if (fabsf(z) <= h->l1)
        return 0.0f;
    return -(z - copysignf(h->l1, z)) / ((h->beta + sq) * h->inv_alpha + h->l2);
}

static inline uint32_t tag_of(const float *c)
{
    uint32_t tag;
    memcpy(&tag, c + 3, sizeof(tag));
    return tag;
}

#ifdef __SSE2__
/* ftrl_w four lanes at a time (equal to ftrl_w lane by lane, NaN too:
 * both compute the quotient unless |z| <= l1). */
static inline __m128 ftrl_w4(__m128 z, __m128 sq, const hp_t *h)
{
    const __m128 neg = _mm_set1_ps(-0.0f), l1 = _mm_set1_ps(h->l1);
    __m128 keep = _mm_cmpnle_ps(_mm_andnot_ps(neg, z), l1);
    __m128 sl1 = _mm_or_ps(_mm_and_ps(neg, z), l1); /* copysign */
    __m128 num = _mm_xor_ps(_mm_sub_ps(z, sl1), neg);
    __m128 den = _mm_add_ps(_mm_mul_ps(_mm_add_ps(_mm_set1_ps(h->beta), sq),
                                       _mm_set1_ps(h->inv_alpha)),
                            _mm_set1_ps(h->l2));
    return _mm_and_ps(keep, _mm_div_ps(num, den));
}

static inline __m128 select4(__m128 mask, __m128 a, __m128 b)
{
    return _mm_or_ps(_mm_and_ps(mask, a), _mm_andnot_ps(mask, b));
}
#endif

/* ---- Scoring ------------------------------------------------------------ */

/* Shared by the trainer and the scorers (scorer.c), so that a frozen copy
 * scores an example bit for bit as the trainer would. */
static inline float sigmoid(float z)
{
    return 1.0f / (1.0f + expf(-z));
}

/* Turns raw outputs z (k of them) into predictions in place and scores them
 * against label y. */
static inline void link_and_score(int model, uint32_t k, float *z, float y,
                                  score_t *o)
{
    if (model == LD_MODEL_LOGISTIC) {
        float zz = z[0];
        /* Stable logloss: log(1 + e^-|z|) + max(z, 0) - y z. */
        o->loss = log1pf(expf(-fabsf(zz))) + (zz > 0 ? zz : 0.0f) - y * zz;
        float p = sigmoid(zz);
        z[0] = p;
        o->pred = p;
        o->sqerr = (p - y) * (p - y);
        o->cls = p >= 0.5f;
        o->correct = (p >= 0.5f) == (y >= 0.5f);
    } else if (model == LD_MODEL_LINEAR) {
        float e = z[0] - y;
        o->pred = z[0];
        o->loss = o->sqerr = e * e;
        o->cls = 0;
        o->correct = 0;
    } else {
        uint32_t cy = (uint32_t)y, best = 0;
        float mx = z[0];
        for (uint32_t c = 1; c < k; c++)
            if (z[c] > mx) {
                mx = z[c];
                best = c;
            }
        float sum = 0;
        for (uint32_t c = 0; c < k; c++)
            sum += expf(z[c] - mx);
        o->loss = logf(sum) + mx - z[cy];
        for (uint32_t c = 0; c < k; c++)
            z[c] = expf(z[c] - mx) / sum;
        o->pred = z[cy];
        o->sqerr = (1.0f - z[cy]) * (1.0f - z[cy]);
        o->cls = best;
        o->correct = best == cy;
    }
}

/* ---- Optimizers --------------------------------------------------------- */

static inline float shrink(float w, float thr)
{
    return w > thr ? w - thr : (w < -thr ? w + thr : 0.0f);
}

/* One optimizer step on coordinate (w, a, b) with gradient g. OPT is a
 * compile-time constant at every call site, so each loop is specialised. */
static inline __attribute__((always_inline)) void
opt_step(int opt, const hp_t *h, float *w, float *a, float *b, float g,
         float l1, float l2)
{
    switch (opt) {
    case LD_OPT_SGD: {
        float x = *w - h->lr * (g + l2 * *w);
        *w = l1 > 0 ? shrink(x, h->lr * l1) : x;
        break;
    }
    case LD_OPT_ADAGRAD: {
        g += l2 * *w;
        float acc = *a + g * g;
        float rate = h->lr / (sqrtf(acc) + h->eps);
        float x = *w - rate * g;
        *a = acc;
        *w = l1 > 0 ? shrink(x, rate * l1) : x;
        break;
    }
    case LD_OPT_FTRL: {
        /* McMahan et al. 2013, Algorithm 1; a holds z, b holds n. The
         * weight is the closed form of (z, n), stored so that scoring
         * needs no square root. */
        float n = *b, n2 = n + g * g, sq = sqrtf(n2);
        float z = *a + g - (sq - sqrtf(n)) * h->inv_alpha * *w;
        *a = z;
        *b = n2;
        if (fabsf(z) <= l1)
            *w = 0.0f;
        else
            *w = -(z - copysignf(l1, z)) / ((h->beta + sq) * h->inv_alpha + l2);
        break;
    }
    default: { /* Adam; lr carries the bias correction of this step */
        g += l2 * *w;
        float m = h->b1 * *a + h->c1 * g;
        float v = h->b2 * *b + h->c2 * g * g;
        *a = m;
        *b = v;
        *w -= h->lr * m / (sqrtf(v) + h->eps);
        break;
    }
    }
}

/* ---- Shared between the files ------------------------------------------- */

/* snapshot.c: copies sparse block b of the pending snapshot unless it is
 * copied already (waiting for another thread copying it); 1 if this call
 * copied it. */
int copy_block(ld_trainer_t *t, size_t b);
/* snapshot.c: copies up to budget pending blocks, in slot order (none when
 * the snapshot is shared: its publisher copies them); completes the
 * snapshot when none is left. */
void snap_step(ld_trainer_t *t, size_t budget);
/* snapshot.c: copies whatever of a pending snapshot is left and completes
 * it (before the loop writes every slot, or takes another snapshot). */
void snap_finish_pending(ld_trainer_t *t);
/* snapshot.c: starts preparing the next spare buffer in the background. */
void prep_start(ld_trainer_t *t);
/* snapshot.c: waits for the copier thread of the last shared snapshot. */
void copier_join(ld_trainer_t *t);

/* Copies the block that slot idx lives in before its first write (or its
 * first read through a pending champion) since the snapshot began. */
static inline void cow(ld_trainer_t *t, uint32_t idx)
{
    size_t blk = idx >> t->bshift;
    if (atomic_load_explicit(&t->pend[blk], memory_order_acquire) &&
        copy_block(t, blk))
        t->st.snapshot_blocks_cow++;
}

/* trainer.c: the batch's update-rule constants (learning rate schedule,
 * Adam's bias correction). */
void make_hp(const ld_trainer_t *t, hp_t *h);
/* trainer.c: example i's prediction, loss and gradient from b_z. */
void score_example(ld_trainer_t *t, size_t i);

/* dense.c: the dense block's constants, dense_learning_rate in place of
 * learning_rate. */
void make_dense_hp(const ld_trainer_t *t, const hp_t *h, hp_t *dh);
/* dense.c: converts every column with a scale back to raw units. */
void dense_to_raw(ld_trainer_t *t);
/* dense.c: converts every standardized column back to raw units and clears
 * the statistics. */
void std_to_raw(ld_trainer_t *t);
/* dense.c: one step of every dense coordinate with example i's gradient. */
void dense_step(ld_trainer_t *t, size_t i);
/* Adds example i's dense part, with the dense weights as they are now, to
 * b_z (dense.c explains the order). Inline: once per example in both
 * passes. */
static inline void dense_score(ld_trainer_t *t, size_t i)
{
    const uint32_t k = t->k, d1 = t->d1;
    const float *x = t->b_x + i * d1;
    for (uint32_t kk = 0; kk < k; kk++) {
        const float *w = t->dn + (size_t)kk * d1;
        float acc = 0.0f;
        for (uint32_t j = 0; j < d1; j++)
            acc += w[j] * x[j];
        t->b_z[i * k + kk] += acc;
    }
}

/* lazy.c: scores and trains the batch's hashed part in one pass. */
void lazy_pass(ld_trainer_t *t);

#endif /* LD_TRAINER_CORE_H */
