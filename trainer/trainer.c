/* SPDX-License-Identifier: Apache-2.0 */
/* Micro-batch training of hashed-sparse + dense linear models: a fused
 * per-coordinate loop for hashed features, the dense block online and
 * normalized (maxabs), BLAS for the champion's dense scores, prequential
 * scoring, champion shadow scoring and copy-on-write snapshots. */
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

    /* Snapshot in progress: pend[b] is 1 while sparse block b is uncopied;
     * pend is NULL when none is, pend_buf its storage (allocated once:
     * mapping and faulting it in at every begin cost ~0.1 ms). */
    ld_snapshot_t *snap;
    uint8_t *pend, *pend_buf;
    size_t nblocks, cursor, left, step_blocks;
    uint32_t bshift;
    ld_snapshot_t *done;
    /* A pre-faulted buffer for the next snapshot's sparse copy, prepared by
     * a helper thread: copying into fresh pages would otherwise take one
     * page fault per 4 KiB, all in the first batch after begin (COW writes
     * land everywhere), which is most of a whole-copy stall. */
    float *spare;
    pthread_t prep;
    int prep_running;

    ld_trainer_scored_cb *cb;
    void *cb_opaque;
};

/* ---- The lazy FTRL weight ----------------------------------------------- */

int ld_trainer_force_sse;
uint32_t ld_trainer_tick_max = LD_TRAINER_TICK_MAX;

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

/* ---- Shapes and snapshots ----------------------------------------------- */

uint32_t ld_spec_planes(int opt)
{
    switch (opt) {
    case LD_OPT_SGD:
        return 1;
    case LD_OPT_ADAGRAD:
        return 2;
    default:
        return 3;
    }
}

const char *ld_spec_plane_name(int opt, uint32_t plane)
{
    static const char *names[4][3] = {{"w", NULL, NULL},
                                      {"w", "adagrad.g2", NULL},
                                      {"w", "ftrl.z", "ftrl.n"},
                                      {"w", "adam.m", "adam.v"}};
    if (opt < 0 || opt > 3 || plane >= 3)
        return NULL;
    return names[opt][plane];
}

static float acc_init(const ld_spec_t *sp, uint32_t plane)
{
    return sp->opt == LD_OPT_ADAGRAD && plane == 1 ? (float)sp->init_acc : 0.0f;
}

/* Sparse state is read and written at random. With 4 KiB pages a 2^22 model
 * (48 MiB for FTRL) spans 12 288 pages, far more than the TLB holds, so
 * most cold slots cost a page walk on top of the cache miss. Large buffers
 * are therefore 2 MiB aligned and marked for transparent huge pages (the
 * usual `madvise` THP mode only backs regions that ask). Freed with free().
 */
float *ld_state_alloc(size_t n, int zero)
{
    const size_t huge = (size_t)2 << 20;
    size_t bytes = n * sizeof(float);
    if (bytes < huge)
        return zero ? calloc(n ? n : 1, sizeof(float))
                    : malloc(bytes ? bytes : 1);
    void *p = NULL;
    size_t len = (bytes + huge - 1) & ~(huge - 1);
    if (posix_memalign(&p, huge, len) != 0)
        return NULL;
#ifdef MADV_HUGEPAGE
    (void)madvise(p, len, MADV_HUGEPAGE); /* advice only */
#endif
    if (zero)
        memset(p, 0, bytes);
    return p;
}

ld_snapshot_t *ld_snapshot_alloc(const ld_spec_t *spec)
{
    ld_snapshot_t *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    atomic_init(&s->refs, 1);
    s->spec = *spec;
    size_t nslots = (size_t)1 << spec->hash_bits;
    s->sp_n = nslots * spec->k * spec->s;
    s->dn_n = (size_t)spec->s * spec->k * (spec->dense_dim + 1);
    s->sp = ld_state_alloc(s->sp_n, 1);
    s->dn = calloc(s->dn_n, sizeof(float));
    s->dscale = calloc(spec->dense_dim ? spec->dense_dim : 1, sizeof(float));
    s->dstat = calloc(spec->dense_dim ? 3 * (size_t)spec->dense_dim : 1,
                      sizeof(float));
    if (!s->sp || !s->dn || !s->dscale || !s->dstat) {
        ld_snapshot_destroy(s);
        return NULL;
    }
    return s;
}

void ld_snapshot_destroy(ld_snapshot_t *s)
{
    if (!s || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    free(s->sp);
    free(s->dn);
    free(s->dscale);
    free(s->dstat);
    free(s);
}

ld_snapshot_t *ld_snapshot_ref(ld_snapshot_t *s)
{
    atomic_fetch_add(&s->refs, 1);
    return s;
}

void ld_snapshot_counts(const ld_snapshot_t *s, uint64_t out[LD_SAMPLE__COUNT])
{
    memcpy(out, s->by_type, sizeof(s->by_type));
}

void ld_snapshot_params_sha256(const ld_snapshot_t *s, uint8_t out[32])
{
    const ld_spec_t *sp = &s->spec;
    size_t n = s->sp_n / sp->s, d1 = sp->dense_dim + 1;
    float buf[1024];
    ld_sha256_t c;
    ld_sha256_init(&c);
    /* "w": plane 0 of the sparse state, [slot, k] order. */
    for (size_t i = 0; i < n;) {
        size_t m = n - i < 1024 ? n - i : 1024;
        for (size_t j = 0; j < m; j++)
            buf[j] = s->sp[(i + j) * sp->s];
        ld_sha256_update(&c, buf, m * sizeof(float));
        i += m;
    }
    /* "dense_w": k rows of D, then "bias": k values (plane 0). */
    for (uint32_t k = 0; k < sp->k; k++)
        ld_sha256_update(&c, s->dn + k * d1, sp->dense_dim * sizeof(float));
    for (uint32_t k = 0; k < sp->k; k++)
        ld_sha256_update(&c, s->dn + k * d1 + sp->dense_dim, sizeof(float));
    ld_sha256_final(&c, out);
}

const char *ld_trainer_blas_core(void)
{
    const char *c = openblas_get_corename();
    return c ? c : "unknown";
}

/* ---- Lifetime ----------------------------------------------------------- */

static void prep_start(ld_trainer_t *t);
static void make_hp(const ld_trainer_t *t, hp_t *h);

static void init_state(ld_trainer_t *t)
{
    memset(t->sp, 0, t->sp_n * sizeof(float));
    memset(t->dn, 0, t->dn_n * sizeof(float));
    memset(t->dscale, 0, (t->d1 - 1) * sizeof(float));
    memset(t->dstat, 0, 3 * (t->d1 - 1) * sizeof(float));
    if (t->spec.opt == LD_OPT_ADAGRAD) {
        float a = acc_init(&t->spec, 1);
        for (size_t i = 1; i < t->sp_n; i += 2)
            t->sp[i] = a;
        size_t plane = (size_t)t->k * t->d1;
        for (size_t i = 0; i < plane; i++)
            t->dn[plane + i] = a;
    }
}

ld_trainer_t *ld_trainer_new(const ld_trainer_conf_t *conf, char *errstr,
                             size_t errstr_size)
{
    ld_trainer_t *t = NULL;
    const char *why = NULL;
    if (!conf)
        why = "no config";
    else if (conf->model < 0 || conf->model > LD_MODEL_SOFTMAX)
        why = "model: unknown kind";
    else if (conf->optimizer < 0 || conf->optimizer > LD_OPT_ADAM)
        why = "optimizer: unknown kind";
    else if (conf->hash_bits < 1 || conf->hash_bits > 30)
        why = "hash_bits: must be 1..30";
    else if (conf->dense_dim < 0 || conf->dense_dim > 65536)
        why = "dense_dim: must be 0..65536";
    else if (conf->model == LD_MODEL_SOFTMAX &&
             (conf->num_classes < 2 || conf->num_classes > 1024))
        why = "num_classes: must be 2..1024 for softmax";
    else if (conf->batch_size < 1 || conf->batch_size > 1048576)
        why = "batch_size: must be 1..1048576";
    else if (conf->metrics_window < 1)
        why = "metrics_window: must be at least 1";
    else if (conf->delayed_feedback == LD_DF_FNW &&
             conf->model != LD_MODEL_LOGISTIC)
        why = "delayed_feedback: fnw needs the logistic model";
    else if (conf->dense_norm < LD_DNORM_NONE ||
             conf->dense_norm > LD_DNORM_STANDARD)
        why = "dense_norm: unknown kind";
    else if (!(conf->learning_rate > 0) || !isfinite(conf->learning_rate))
        why = "learning_rate: must be positive";
    else if (!(conf->dense_learning_rate >= 0) ||
             !isfinite(conf->dense_learning_rate))
        why = "dense_learning_rate: must be 0 or positive";
    else if (conf->lr_schedule == LD_LR_EXPONENTIAL &&
             conf->optimizer == LD_OPT_SGD &&
             !(conf->lr_decay > 0 && conf->lr_decay <= 1))
        why = "lr_decay: the exponential schedule needs a factor in (0,1]";
    if (why)
        goto err;

    why = "out of memory";
    t = calloc(1, sizeof(*t));
    if (!t)
        goto err;
    ld_spec_t *sp = &t->spec;
    sp->model = conf->model;
    sp->opt = conf->optimizer;
    sp->k = conf->model == LD_MODEL_SOFTMAX ? (uint32_t)conf->num_classes : 1;
    sp->hash_bits = (uint32_t)conf->hash_bits;
    sp->dense_dim = (uint32_t)conf->dense_dim;
    sp->s = ld_spec_planes(conf->optimizer);
    sp->lr = conf->learning_rate;
    sp->l1 = conf->l1;
    sp->l2 = conf->l2;
    sp->beta = conf->ftrl_beta;
    sp->init_acc = conf->adagrad_initial_accumulator;
    sp->eps = conf->epsilon;
    sp->beta1 = conf->adam_beta1;
    sp->beta2 = conf->adam_beta2;
    sp->schedule = conf->lr_schedule;
    sp->decay = conf->lr_decay;
    sp->power_t = conf->lr_power_t;
    sp->dense_norm = conf->dense_norm;
    sp->dense_lr = conf->dense_learning_rate;
    /* Hyperparameters the optimizer does not use are 0, as in a
     * checkpoint's OptimizerSpec, so specs compare equal after a round
     * trip. */
    if (sp->opt != LD_OPT_FTRL)
        sp->beta = 0;
    if (sp->opt != LD_OPT_ADAGRAD)
        sp->init_acc = 0;
    if (sp->opt != LD_OPT_ADAGRAD && sp->opt != LD_OPT_ADAM)
        sp->eps = 0;
    if (sp->opt != LD_OPT_ADAM)
        sp->beta1 = sp->beta2 = 0;
    if (sp->opt != LD_OPT_SGD) {
        sp->schedule = 0;
        sp->decay = sp->power_t = 0;
    }
    t->df = conf->delayed_feedback;
    t->dnorm = conf->dense_norm;
    t->k = sp->k;
    t->d1 = sp->dense_dim + 1;
    t->s = sp->s;
    t->lazy = sp->opt == LD_OPT_FTRL && t->k == 1;
    t->ss = t->lazy ? LAZY_SS : t->s;
#ifdef LAZY_AVX2
    t->avx2 = __builtin_cpu_supports("avx2");
#endif
    t->nslots = (size_t)1 << sp->hash_bits;
    t->sp_n = t->nslots * t->k * t->ss;
    t->snap_n = t->nslots * t->k * t->s;
    t->dn_n = (size_t)t->s * t->k * t->d1;
    t->bcap = (size_t)conf->batch_size;
    t->batch_span = conf->batch_span;
    t->nnz_cap = t->bcap * 64;
    uint32_t bs = t->lazy ? LAZY_BLOCK_SHIFT : BLOCK_SHIFT;
    t->bshift = sp->hash_bits < bs ? sp->hash_bits : bs;
    t->nblocks = t->nslots >> t->bshift;
    size_t block_bytes = ((size_t)1 << t->bshift) * t->k * t->s * 4;
    t->step_blocks = (size_t)conf->snapshot_step / block_bytes;
    if (t->step_blocks < 1)
        t->step_blocks = 1;

    t->sp = ld_state_alloc(t->sp_n, 0);
    t->dn = malloc(t->dn_n * sizeof(float));
    t->dscale = calloc(t->d1, sizeof(float));
    t->dstat = calloc(3 * (size_t)t->d1, sizeof(float));
    t->dtmp = calloc(3 * (size_t)t->d1, sizeof(float));
    t->b_off = calloc(t->bcap + 1, sizeof(uint32_t));
    t->b_idx = malloc((t->nnz_cap + PF_DIST) * sizeof(uint32_t));
    t->b_val = malloc(t->nnz_cap * sizeof(float));
    t->b_g = malloc(t->nnz_cap * sizeof(float));
    t->b_wb = malloc(t->nnz_cap * sizeof(float));
    t->b_wn = malloc(t->nnz_cap * sizeof(float));
    t->b_sq = malloc(t->nnz_cap * sizeof(float));
    t->b_o = malloc(t->bcap * sizeof(score_t));
    t->b_x = malloc(t->bcap * t->d1 * sizeof(float));
    t->b_y = malloc(t->bcap * sizeof(float));
    t->b_w = malloc(t->bcap * sizeof(float));
    t->b_type = malloc(t->bcap);
    t->b_time = malloc(t->bcap * sizeof(int64_t));
    t->b_ltime = malloc(t->bcap * sizeof(int64_t));
    t->b_srcoff = malloc(t->bcap * sizeof(int64_t));
    t->b_part = malloc(t->bcap * sizeof(int32_t));
    t->b_eid = malloc(t->bcap * sizeof(uint32_t));
    t->eid_cap = t->bcap * 40;
    t->eid = malloc(t->eid_cap);
    t->b_ex = malloc(t->bcap * sizeof(ld_example_t));
    t->b_z = malloc(t->bcap * t->k * sizeof(float));
    t->b_cz = malloc(t->bcap * t->k * sizeof(float));
    t->b_r = malloc(t->bcap * t->k * sizeof(float));
    t->b_sc = malloc(t->bcap * sizeof(ld_scored_t));
    t->pend_buf = malloc(t->nblocks);
    if (!t->sp || !t->dn || !t->dscale || !t->dstat || !t->dtmp || !t->b_off ||
        !t->b_idx || !t->b_val || !t->b_g || !t->b_wb || !t->b_wn || !t->b_sq ||
        !t->b_o || !t->b_x || !t->b_y || !t->b_w || !t->b_type || !t->b_time ||
        !t->b_ltime || !t->b_srcoff || !t->b_part || !t->b_eid || !t->eid ||
        !t->b_ex || !t->b_z || !t->b_cz || !t->b_r || !t->b_sc || !t->pend_buf)
        goto err;
    if (ld_window_init(&t->win, (size_t)conf->metrics_window) != LD_OK)
        goto err;
    if (ld_window_init(&t->cwin, (size_t)conf->metrics_window) != LD_OK)
        goto err;
    make_hp(t, &t->lz);
    init_state(t);
    prep_start(t);
    openblas_set_num_threads(conf->blas_threads > 0 ? (int)conf->blas_threads
                                                    : 1);
    if (sp->opt == LD_OPT_ADAM && sp->l1 > 0)
        ld_log(LD_LOG_WARN, "trainer",
               "msg=\"l1 is ignored by the adam optimizer\" l1=%g", sp->l1);
    return t;

err:
    if (errstr && errstr_size)
        snprintf(errstr, errstr_size, "trainer: %s", why);
    ld_trainer_destroy(t);
    return NULL;
}

void ld_trainer_destroy(ld_trainer_t *t)
{
    if (!t)
        return;
    free(t->sp);
    free(t->dn);
    free(t->dscale);
    free(t->dstat);
    free(t->dtmp);
    free(t->b_off);
    free(t->b_idx);
    free(t->b_val);
    free(t->b_g);
    free(t->b_wb);
    free(t->b_wn);
    free(t->b_sq);
    free(t->b_o);
    free(t->b_x);
    free(t->b_y);
    free(t->b_w);
    free(t->b_type);
    free(t->b_time);
    free(t->b_ltime);
    free(t->b_srcoff);
    free(t->b_part);
    free(t->b_eid);
    free(t->eid);
    free(t->b_ex);
    free(t->b_z);
    free(t->b_cz);
    free(t->b_r);
    free(t->b_sc);
    ld_window_free(&t->win);
    ld_window_free(&t->cwin);
    ld_snapshot_destroy(t->champ);
    ld_snapshot_destroy(t->snap);
    ld_snapshot_destroy(t->done);
    if (t->prep_running)
        pthread_join(t->prep, NULL);
    free(t->spare);
    free(t->pend_buf);
    free(t);
}

uint32_t ld_trainer_outputs(const ld_trainer_t *t)
{
    return t->k;
}

void ld_trainer_set_scored_cb(ld_trainer_t *t, ld_trainer_scored_cb *cb,
                              void *opaque)
{
    t->cb = cb;
    t->cb_opaque = opaque;
}

void ld_trainer_stats(const ld_trainer_t *t, ld_trainer_stats_t *out)
{
    *out = t->st;
    out->batches = t->step;
}

void ld_trainer_metrics(ld_trainer_t *t, ld_trainer_metrics_t *model,
                        ld_trainer_metrics_t *champion)
{
    if (model)
        ld_window_metrics(&t->win, t->spec.model, model);
    if (champion)
        ld_window_metrics(&t->cwin, t->spec.model, champion);
}

/* ---- Snapshots ---------------------------------------------------------- */

/* Slots [from, from + n) of the lazy layout into the plain (w, z, n)
 * layout at dst. */
static void lazy_to_plain(const ld_trainer_t *t, size_t from, size_t n,
                          float *dst)
{
    const float *src = t->sp + from * LAZY_SS;
    size_t i = 0;
#ifdef __SSE2__
    /* Four slots are 12 output floats, three aligned vectors (dst is 16
     * byte aligned and the blocks hold a multiple of 4 slots); streaming
     * stores as in copy_block. */
    if (n % 4 == 0 && ((uintptr_t)dst & 15) == 0) {
        for (; i < n; i += 4, src += 4 * LAZY_SS, dst += 12) {
            __m128 z = _mm_load_ps(src), nn = _mm_load_ps(src + 4),
                   wb = _mm_load_ps(src + 8), tg = _mm_load_ps(src + 12);
            _MM_TRANSPOSE4_PS(z, nn, wb, tg);
            __m128 w = ftrl_w4(z, _mm_sqrt_ps(nn), &t->lz);
            __m128 t0 = _mm_unpacklo_ps(w, z); /* w0 z0 w1 z1 */
            __m128 t1 = _mm_unpackhi_ps(w, z); /* w2 z2 w3 z3 */
            __m128 u = _mm_shuffle_ps(nn, t0, _MM_SHUFFLE(2, 2, 0, 0));
            __m128 v = _mm_shuffle_ps(t0, nn, _MM_SHUFFLE(1, 1, 3, 3));
            __m128 x = _mm_shuffle_ps(nn, t1, _MM_SHUFFLE(2, 2, 2, 2));
            __m128 y = _mm_shuffle_ps(t1, nn, _MM_SHUFFLE(3, 3, 3, 3));
            _mm_stream_ps(dst, _mm_shuffle_ps(t0, u, _MM_SHUFFLE(2, 0, 1, 0)));
            _mm_stream_ps(dst + 4,
                          _mm_shuffle_ps(v, t1, _MM_SHUFFLE(1, 0, 2, 0)));
            _mm_stream_ps(dst + 8,
                          _mm_shuffle_ps(x, y, _MM_SHUFFLE(2, 0, 2, 0)));
        }
        return;
    }
#endif
    for (; i < n; i++, src += LAZY_SS, dst += 3) {
        dst[0] = ftrl_w(src[0], sqrtf(src[1]), &t->lz);
        dst[1] = src[0];
        dst[2] = src[1];
    }
}

static void copy_block(ld_trainer_t *t, size_t b)
{
    if (t->lazy) {
        size_t n = (size_t)1 << t->bshift;
        lazy_to_plain(t, b * n, n, t->snap->sp + b * n * 3);
        t->pend[b] = 0;
        t->left--;
        return;
    }
    size_t per = ((size_t)1 << t->bshift) * t->k * t->s;
    const float *src = t->sp + b * per;
    float *dst = t->snap->sp + b * per;
#ifdef __SSE2__
    /* A block of 16 slots is a whole number of 64-byte lines. Streaming
     * stores write them without first reading each destination line
     * (copy-on-write targets are random lines of a cold buffer) and keep
     * the snapshot out of the cache the training loop lives in. Both
     * buffers are 16-byte aligned (malloc / ld_state_alloc). */
    if (per % 16 == 0) {
        for (size_t i = 0; i < per; i += 4)
            _mm_stream_ps(dst + i, _mm_load_ps(src + i));
    } else
#endif
        memcpy(dst, src, per * sizeof(float));
    t->pend[b] = 0;
    t->left--;
}

static void snap_complete(ld_trainer_t *t)
{
#ifdef __SSE2__
    _mm_sfence(); /* streaming stores visible before the snapshot is */
#endif
    t->pend = NULL;
    t->done = t->snap;
    t->snap = NULL;
    /* The next spare is faulted in now, not during this snapshot's copy,
     * where it would compete for memory bandwidth. */
    if (!t->prep_running)
        prep_start(t);
}

/* Copies up to step_blocks pending blocks, in slot order. */
static void snap_step(ld_trainer_t *t, size_t budget)
{
    while (t->left && budget) {
        if (t->pend[t->cursor]) {
            copy_block(t, t->cursor);
            t->st.snapshot_blocks_steps++;
            budget--;
        }
        t->cursor++;
    }
    if (!t->left)
        snap_complete(t);
}

typedef struct prep_arg {
    ld_trainer_t *t;
    size_t n;
} prep_arg_t;

static void *prep_main(void *arg)
{
    prep_arg_t *a = arg;
    float *buf = ld_state_alloc(a->n, 0);
    /* Fault every page in. A plain memset(0) after malloc is turned into
     * calloc by the compiler, which leaves fresh pages unmapped. */
    volatile char *p = (volatile char *)buf;
    for (size_t i = 0; buf && i < a->n * sizeof(float); i += 4096)
        p[i] = 0;
    ld_trainer_t *t = a->t;
    free(a);
    t->spare = buf; /* read by the trainer only after pthread_join */
    return NULL;
}

/* Starts preparing the next spare buffer in the background. */
static void prep_start(ld_trainer_t *t)
{
    prep_arg_t *a = malloc(sizeof(*a));
    if (!a)
        return;
    a->t = t;
    a->n = t->snap_n;
    if (pthread_create(&t->prep, NULL, prep_main, a) != 0) {
        free(a);
        return;
    }
    t->prep_running = 1;
}

/* Takes the spare buffer, waiting for the helper if it is still faulting
 * it in: that only happens within a few ms of startup or of the previous
 * snapshot (more on a VM touching fresh memory), and faulting a fresh
 * buffer in here instead would cost the same work, all in the first
 * batches of the copy (their copy-on-write writes land on every page). */
static float *take_spare(ld_trainer_t *t)
{
    if (t->prep_running) {
        pthread_join(t->prep, NULL);
        t->prep_running = 0;
    }
    float *b = t->spare;
    t->spare = NULL;
    return b;
}

ld_err_t ld_trainer_snapshot_begin(ld_trainer_t *t)
{
    if (t->snap || t->done)
        return LD_ERR_INVAL;
    ld_snapshot_t *s = calloc(1, sizeof(*s));
    if (!s)
        return LD_ERR_NOMEM;
    atomic_init(&s->refs, 1);
    s->spec = t->spec;
    s->sp_n = t->snap_n;
    s->dn_n = t->dn_n;
    /* Every byte is overwritten by the copy; a pre-faulted spare keeps
     * page faults out of the training thread. */
    s->sp = take_spare(t);
    if (!s->sp)
        s->sp = ld_state_alloc(s->sp_n, 0);
    s->dn = malloc(s->dn_n * sizeof(float));
    s->dscale = malloc(t->d1 * sizeof(float));
    s->dstat = malloc(3 * (size_t)t->d1 * sizeof(float));
    if (!s->sp || !s->dn || !s->dscale || !s->dstat) {
        ld_snapshot_destroy(s);
        return LD_ERR_NOMEM;
    }
    memcpy(s->dn, t->dn, s->dn_n * sizeof(float));
    memcpy(s->dscale, t->dscale, (t->d1 - 1) * sizeof(float));
    memcpy(s->dstat, t->dstat, 3 * (t->d1 - 1) * sizeof(float));
    s->step = t->step;
    s->examples = t->st.examples;
    memcpy(s->by_type, t->st.by_type, sizeof(s->by_type));
    ld_window_metrics(&t->win, t->spec.model, &s->metrics);
    ld_window_metrics(&t->cwin, t->spec.model, &s->champion_metrics);
    t->pend = t->pend_buf;
    memset(t->pend, 1, t->nblocks);
    t->snap = s;
    t->cursor = 0;
    t->left = t->nblocks;
    return LD_OK;
}

ld_snapshot_t *ld_trainer_snapshot_poll(ld_trainer_t *t)
{
    if (t->snap)
        snap_step(t, t->step_blocks);
    ld_snapshot_t *d = t->done;
    t->done = NULL;
    return d;
}

ld_snapshot_t *ld_trainer_snapshot_finish(ld_trainer_t *t)
{
    if (t->snap)
        snap_step(t, SIZE_MAX);
    ld_snapshot_t *d = t->done;
    t->done = NULL;
    return d;
}

ld_snapshot_t *ld_trainer_snapshot(ld_trainer_t *t)
{
    if (ld_trainer_snapshot_begin(t) != LD_OK)
        return NULL;
    return ld_trainer_snapshot_finish(t);
}

static int same_shape(const ld_spec_t *a, const ld_spec_t *b)
{
    return a->model == b->model && a->k == b->k &&
           a->hash_bits == b->hash_bits && a->dense_dim == b->dense_dim &&
           a->s == b->s;
}

ld_err_t ld_trainer_champion_set(ld_trainer_t *t, ld_snapshot_t *s)
{
    if (s && !same_shape(&t->spec, &s->spec))
        return LD_ERR_INVAL;
    ld_snapshot_destroy(t->champ);
    t->champ = s ? ld_snapshot_ref(s) : NULL;
    ld_window_clear(&t->cwin);
    return LD_OK;
}

const char *ld_spec_mismatch(const ld_spec_t *a, const ld_spec_t *b)
{
    if (a->model != b->model)
        return "model kind";
    if (a->k != b->k)
        return "num_classes";
    if (a->hash_bits != b->hash_bits)
        return "hash_bits";
    if (a->dense_dim != b->dense_dim)
        return "dense_dim";
    if (a->opt != b->opt || a->s != b->s)
        return "optimizer";
    return NULL;
}

const ld_spec_t *ld_trainer_spec(const ld_trainer_t *t)
{
    return &t->spec;
}

static void dense_to_raw(ld_trainer_t *t);
static void std_to_raw(ld_trainer_t *t);

ld_err_t ld_trainer_restore(ld_trainer_t *t, const ld_snapshot_t *s,
                            char *errstr, size_t errstr_size)
{
    const char *why = ld_spec_mismatch(&t->spec, &s->spec);
    if (why) {
        if (errstr && errstr_size)
            snprintf(errstr, errstr_size,
                     "checkpoint differs from the config in %s; start with "
                     "--from-scratch or restore the old config",
                     why);
        return LD_ERR_CONFIG;
    }
    if (t->snap)
        return LD_ERR_INVAL;
    if (t->lazy) {
        /* The stored weights are not needed: the closed form of (z, n)
         * gives them back (with this config's hyperparameters). */
        for (size_t i = 0; i < t->nslots; i++) {
            float *c = t->sp + i * LAZY_SS;
            c[0] = s->sp[i * 3 + 1];
            c[1] = s->sp[i * 3 + 2];
            c[2] = c[3] = 0.0f; /* tag 0: no batch */
        }
        t->tick = 0;
    } else {
        memcpy(t->sp, s->sp, t->sp_n * sizeof(float));
    }
    memcpy(t->dn, s->dn, t->dn_n * sizeof(float));
    memcpy(t->dscale, s->dscale, (t->d1 - 1) * sizeof(float));
    memcpy(t->dstat, s->dstat, 3 * (t->d1 - 1) * sizeof(float));
    /* State kept in another normalization's units goes back to raw units
     * (predictions unchanged); this mode then converts it on its own. */
    if (t->dnorm != LD_DNORM_MAXABS)
        dense_to_raw(t);
    if (t->dnorm != LD_DNORM_STANDARD)
        std_to_raw(t);
    t->step = s->step;
    t->st.examples = s->examples;
    memcpy(t->st.by_type, s->by_type, sizeof(s->by_type));
    t->bn = 0;
    t->nnz_n = 0;
    t->eid_n = 0;
    ld_window_clear(&t->win);
    ld_window_clear(&t->cwin);
    return LD_OK;
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

static void make_hp(const ld_trainer_t *t, hp_t *h)
{
    const ld_spec_t *sp = &t->spec;
    double lr = sp->lr, tt = (double)t->step;
    if (sp->opt == LD_OPT_SGD) {
        if (sp->schedule == LD_LR_INVERSE_SCALING)
            lr = sp->lr / pow(1.0 + sp->decay * tt, sp->power_t);
        else if (sp->schedule == LD_LR_EXPONENTIAL)
            lr = sp->lr * pow(sp->decay, tt);
    } else if (sp->opt == LD_OPT_ADAM) {
        lr = sp->lr * sqrt(1.0 - pow(sp->beta2, tt + 1)) /
             (1.0 - pow(sp->beta1, tt + 1));
    }
    h->lr = (float)lr;
    h->l1 = (float)sp->l1;
    h->l2 = (float)sp->l2;
    h->beta = (float)sp->beta;
    h->inv_alpha = (float)(1.0 / sp->lr);
    h->eps = (float)sp->eps;
    h->b1 = (float)sp->beta1;
    h->b2 = (float)sp->beta2;
    h->c1 = (float)(1.0 - sp->beta1);
    h->c2 = (float)(1.0 - sp->beta2);
}

/* Copies the blocks of a pending snapshot that slot idx lives in before
 * its first write. */
static inline void cow(ld_trainer_t *t, uint32_t idx)
{
    size_t blk = idx >> t->bshift;
    if (t->pend[blk]) {
        copy_block(t, blk);
        t->st.snapshot_blocks_cow++;
    }
}

/* Hashed features: one step per occurrence, in example order. */
static inline __attribute__((always_inline)) void
sparse_update(ld_trainer_t *t, const hp_t *h, int opt)
{
    const uint32_t k = t->k, s = t->s;
    float *sp = t->sp;
    const float l1 = h->l1, l2 = h->l2;
    const size_t stride = (size_t)k * s;
    for (size_t i = 0; i < t->bn; i++) {
        const float *r = t->b_r + i * k;
        for (uint32_t f = t->b_off[i]; f < t->b_off[i + 1]; f++) {
            uint32_t idx = t->b_idx[f];
            float v = t->b_val[f];
            PREFETCH_W(sp + t->b_idx[f + PF_UPD] * stride);
            if (__builtin_expect(t->pend != NULL, 0))
                cow(t, idx);
            float *c = sp + (size_t)idx * k * s;
            for (uint32_t kk = 0; kk < k; kk++, c += s)
                opt_step(opt, h, c, opt == LD_OPT_SGD ? c : c + 1,
                         opt >= LD_OPT_FTRL ? c + 2 : c, r[kk] * v, l1, l2);
        }
    }
}

#ifdef __SSE2__
/* The same steps four coordinates at a time (one output). Every lane does
 * exactly the scalar opt_step's IEEE single operations in the same order
 * (SSE sqrt and div are correctly rounded like their scalar forms, and the
 * build never contracts to FMA), so the result is bit for bit the scalar
 * loop's: the state is identical whichever path ran. Four consecutive
 * non-zeros of the batch go together unless two of them hit the same slot;
 * such a group takes the scalar path, keeping one step per occurrence in
 * order. The square roots and divisions, not the arithmetic around them,
 * are what the scalar loop waits for. */
static inline __m128 v_shrink(__m128 w, __m128 thr)
{
    const __m128 neg = _mm_set1_ps(-0.0f);
    __m128 gt = _mm_cmpgt_ps(w, thr);
    __m128 lt = _mm_cmplt_ps(w, _mm_xor_ps(thr, neg));
    return _mm_or_ps(_mm_and_ps(gt, _mm_sub_ps(w, thr)),
                     _mm_and_ps(lt, _mm_add_ps(w, thr)));
}

static inline __attribute__((always_inline)) void
opt_step4(int opt, const hp_t *h, __m128 *w, __m128 *a, __m128 *b, __m128 g)
{
    const __m128 lr = _mm_set1_ps(h->lr), l1 = _mm_set1_ps(h->l1),
                 l2 = _mm_set1_ps(h->l2), eps = _mm_set1_ps(h->eps);
    switch (opt) {
    case LD_OPT_SGD: {
        __m128 x =
            _mm_sub_ps(*w, _mm_mul_ps(lr, _mm_add_ps(g, _mm_mul_ps(l2, *w))));
        *w = h->l1 > 0 ? v_shrink(x, _mm_mul_ps(lr, l1)) : x;
        break;
    }
    case LD_OPT_ADAGRAD: {
        g = _mm_add_ps(g, _mm_mul_ps(l2, *w));
        __m128 acc = _mm_add_ps(*a, _mm_mul_ps(g, g));
        __m128 rate = _mm_div_ps(lr, _mm_add_ps(_mm_sqrt_ps(acc), eps));
        __m128 x = _mm_sub_ps(*w, _mm_mul_ps(rate, g));
        *a = acc;
        *w = h->l1 > 0 ? v_shrink(x, _mm_mul_ps(rate, l1)) : x;
        break;
    }
    case LD_OPT_FTRL: {
        const __m128 neg = _mm_set1_ps(-0.0f);
        const __m128 ia = _mm_set1_ps(h->inv_alpha);
        __m128 n2 = _mm_add_ps(*b, _mm_mul_ps(g, g)), sq = _mm_sqrt_ps(n2);
        __m128 sig = _mm_mul_ps(_mm_sub_ps(sq, _mm_sqrt_ps(*b)), ia);
        __m128 z = _mm_sub_ps(_mm_add_ps(*a, g), _mm_mul_ps(sig, *w));
        *a = z;
        *b = n2;
        __m128 keep = _mm_cmpnle_ps(_mm_andnot_ps(neg, z), l1); /* NaN too */
        __m128 sl1 = _mm_or_ps(_mm_and_ps(neg, z), l1);         /* copysign */
        __m128 num = _mm_xor_ps(_mm_sub_ps(z, sl1), neg);
        __m128 den = _mm_add_ps(
            _mm_mul_ps(_mm_add_ps(_mm_set1_ps(h->beta), sq), ia), l2);
        *w = _mm_and_ps(keep, _mm_div_ps(num, den));
        break;
    }
    default: {
        const __m128 b1 = _mm_set1_ps(h->b1), b2 = _mm_set1_ps(h->b2),
                     c1 = _mm_set1_ps(h->c1), c2 = _mm_set1_ps(h->c2);
        g = _mm_add_ps(g, _mm_mul_ps(l2, *w));
        __m128 m = _mm_add_ps(_mm_mul_ps(b1, *a), _mm_mul_ps(c1, g));
        __m128 v =
            _mm_add_ps(_mm_mul_ps(b2, *b), _mm_mul_ps(_mm_mul_ps(c2, g), g));
        *a = m;
        *b = v;
        *w = _mm_sub_ps(
            *w, _mm_div_ps(_mm_mul_ps(lr, m), _mm_add_ps(_mm_sqrt_ps(v), eps)));
        break;
    }
    }
}

static inline __attribute__((always_inline)) void
sparse_update_k1(ld_trainer_t *t, const hp_t *h, int opt)
{
    const uint32_t s = t->s;
    float *sp = t->sp, *g = t->b_g;
    const uint32_t *bi = t->b_idx;
    const size_t n = t->nnz_n;
    for (size_t i = 0; i < t->bn; i++) {
        const float r = t->b_r[i];
        for (uint32_t f = t->b_off[i]; f < t->b_off[i + 1]; f++)
            g[f] = r * t->b_val[f];
    }
    size_t f = 0;
    for (; f + 4 <= n; f += 4) {
        for (int j = 0; j < 4; j++)
            PREFETCH_W(sp + (size_t)bi[f + PF_UPD + (size_t)j] * s);
        const uint32_t i0 = bi[f], i1 = bi[f + 1], i2 = bi[f + 2],
                       i3 = bi[f + 3];
        if (__builtin_expect(t->pend != NULL, 0)) {
            cow(t, i0);
            cow(t, i1);
            cow(t, i2);
            cow(t, i3);
        }
        if (__builtin_expect(i0 == i1 || i0 == i2 || i0 == i3 || i1 == i2 ||
                                 i1 == i3 || i2 == i3,
                             0)) {
            for (size_t j = f; j < f + 4; j++) {
                float *c = sp + (size_t)bi[j] * s;
                opt_step(opt, h, c, opt == LD_OPT_SGD ? c : c + 1,
                         opt >= LD_OPT_FTRL ? c + 2 : c, g[j], h->l1, h->l2);
            }
            continue;
        }
        float *c0 = sp + (size_t)i0 * s, *c1 = sp + (size_t)i1 * s,
              *c2 = sp + (size_t)i2 * s, *c3 = sp + (size_t)i3 * s;
        __m128 w = _mm_setr_ps(c0[0], c1[0], c2[0], c3[0]);
        __m128 a = w, b = w;
        if (opt != LD_OPT_SGD)
            a = _mm_setr_ps(c0[1], c1[1], c2[1], c3[1]);
        if (opt >= LD_OPT_FTRL)
            b = _mm_setr_ps(c0[2], c1[2], c2[2], c3[2]);
        opt_step4(opt, h, &w, &a, &b, _mm_loadu_ps(g + f));
        float ow[4], oa[4], ob[4];
        _mm_storeu_ps(ow, w);
        _mm_storeu_ps(oa, a);
        _mm_storeu_ps(ob, b);
        c0[0] = ow[0];
        c1[0] = ow[1];
        c2[0] = ow[2];
        c3[0] = ow[3];
        if (opt != LD_OPT_SGD) {
            c0[1] = oa[0];
            c1[1] = oa[1];
            c2[1] = oa[2];
            c3[1] = oa[3];
        }
        if (opt >= LD_OPT_FTRL) {
            c0[2] = ob[0];
            c1[2] = ob[1];
            c2[2] = ob[2];
            c3[2] = ob[3];
        }
    }
    for (; f < n; f++) {
        if (__builtin_expect(t->pend != NULL, 0))
            cow(t, bi[f]);
        float *c = sp + (size_t)bi[f] * s;
        opt_step(opt, h, c, opt == LD_OPT_SGD ? c : c + 1,
                 opt >= LD_OPT_FTRL ? c + 2 : c, g[f], h->l1, h->l2);
    }
}
#endif

/* ---- The fused lazy FTRL pass ------------------------------------------- */

/* The chunks of the batch being trained are tags c0 .. cur. */
typedef struct ticks {
    uint32_t c0, cur;
} ticks_t;

/* One FTRL step on lazy slot c for non-zero f with gradient g: opt_step's
 * FTRL case, with the weight (and sqrt(n)) from the gather unless this
 * chunk has stepped the slot since. */
static inline void lazy_step(const ld_trainer_t *t, ticks_t tk, float *c,
                             size_t f)
{
    const hp_t *h = &t->lz;
    const float g = t->b_g[f];
    uint32_t tag = tag_of(c);
    float n = c[1], sq0 = t->b_sq[f], w = t->b_wn[f];
    if (tag == tk.cur) {
        sq0 = sqrtf(n);
        w = ftrl_w(c[0], sq0, h);
    }
    float n2 = n + g * g, sq = sqrtf(n2);
    c[0] = c[0] + g - (sq - sq0) * h->inv_alpha * w;
    c[1] = n2;
    if ((int32_t)tag < (int32_t)tk.c0)
        c[2] = t->b_wb[f]; /* first step in this batch */
    memcpy(c + 3, &tk.cur, sizeof(tk.cur));
}

/* While a snapshot is pending, the first step on a slot copies its whole
 * block (copy_block), and the block's other lines are cold: fetched there,
 * one after another, they made the first batch after a snapshot began
 * ~0.5 ms slower. This requests them a chunk ahead, like the slots. */
static void prefetch_blocks(const ld_trainer_t *t, const uint32_t *idx)
{
    const size_t per = ((size_t)1 << t->bshift) * LAZY_SS;
    for (size_t j = 0; j < 4; j++) {
        size_t b = idx[j] >> t->bshift;
        if (t->pend[b])
            for (size_t o = 0; o < per; o += 16)
                PREFETCH_R(t->sp + b * per + o);
    }
}

#ifdef LAZY_AVX2
/* The lazy pass eight slots at a time where the CPU has AVX2 (chosen at
 * run time: the build targets baseline x86-64). The square root and the
 * division dominate the SSE loops, and here a 256-bit one costs what a
 * 128-bit one does. Every lane does the SSE lane's operations (no FMA), so
 * the state is the same bit for bit whichever path ran. */
#define AVX2 __attribute__((target("avx2")))

/* r_j holds slot j in its low half and slot j + 4 in its high half; within
 * each half this is _MM_TRANSPOSE4_PS, so the rows become z, n, wb, tag of
 * slots 0..7 in lane order. It is its own inverse. */
static inline AVX2 void transpose8(__m256 *r0, __m256 *r1, __m256 *r2,
                                   __m256 *r3)
{
    __m256 t0 = _mm256_unpacklo_ps(*r0, *r1), t1 = _mm256_unpacklo_ps(*r2, *r3),
           t2 = _mm256_unpackhi_ps(*r0, *r1), t3 = _mm256_unpackhi_ps(*r2, *r3);
    *r0 = _mm256_shuffle_ps(t0, t1, 0x44);
    *r1 = _mm256_shuffle_ps(t0, t1, 0xee);
    *r2 = _mm256_shuffle_ps(t2, t3, 0x44);
    *r3 = _mm256_shuffle_ps(t2, t3, 0xee);
}

static inline AVX2 __m256 load2(const float *lo, const float *hi)
{
    return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_load_ps(lo)),
                                _mm_load_ps(hi), 1);
}

static inline AVX2 void store2(float *lo, float *hi, __m256 v)
{
    _mm_store_ps(lo, _mm256_castps256_ps128(v));
    _mm_store_ps(hi, _mm256_extractf128_ps(v, 1));
}

static inline AVX2 __m256 select8(__m256 mask, __m256 a, __m256 b)
{
    return _mm256_blendv_ps(b, a, mask);
}

/* ftrl_w4, eight lanes. */
static inline AVX2 __m256 ftrl_w8(__m256 z, __m256 sq, const hp_t *h)
{
    const __m256 neg = _mm256_set1_ps(-0.0f), l1 = _mm256_set1_ps(h->l1);
    __m256 keep = _mm256_cmp_ps(_mm256_andnot_ps(neg, z), l1, _CMP_NLE_UQ);
    __m256 sl1 = _mm256_or_ps(_mm256_and_ps(neg, z), l1);
    __m256 num = _mm256_xor_ps(_mm256_sub_ps(z, sl1), neg);
    __m256 den =
        _mm256_add_ps(_mm256_mul_ps(_mm256_add_ps(_mm256_set1_ps(h->beta), sq),
                                    _mm256_set1_ps(h->inv_alpha)),
                      _mm256_set1_ps(h->l2));
    return _mm256_and_ps(keep, _mm256_div_ps(num, den));
}

/* lazy_gather's loop, eight at a time; returns where it stopped. */
static AVX2 size_t lazy_gather8(ld_trainer_t *t, ticks_t tk, size_t f,
                                size_t f1)
{
    const float *sp = t->sp;
    const uint32_t *bi = t->b_idx;
    const __m256i before = _mm256_set1_epi32((int)tk.c0 - 1);
    for (; f + 8 <= f1; f += 8) {
        for (size_t j = 0; j < 8; j++)
            PREFETCH_W(sp + (size_t)bi[f + PF_LAZY + j] * LAZY_SS);
        const float *c[8];
        for (size_t j = 0; j < 8; j++)
            c[j] = sp + (size_t)bi[f + j] * LAZY_SS;
        __m256 z = load2(c[0], c[4]), n = load2(c[1], c[5]),
               b = load2(c[2], c[6]), tg = load2(c[3], c[7]);
        transpose8(&z, &n, &b, &tg);
        __m256 mine = _mm256_castsi256_ps(
            _mm256_cmpgt_epi32(_mm256_castps_si256(tg), before));
        __m256 s0 = _mm256_sqrt_ps(n), w = ftrl_w8(z, s0, &t->lz);
        _mm256_storeu_ps(t->b_wb + f, select8(mine, b, w));
        _mm256_storeu_ps(t->b_wn + f, w);
        _mm256_storeu_ps(t->b_sq + f, s0);
    }
    return f;
}

/* lazy_update's loop, eight at a time; returns where it stopped. */
static AVX2 size_t lazy_update8(ld_trainer_t *t, ticks_t tk, size_t f,
                                size_t f1, size_t ahead, size_t lim)
{
    float *sp = t->sp;
    const uint32_t *bi = t->b_idx;
    const __m256i vcur = _mm256_set1_epi32((int)tk.cur),
                  before = _mm256_set1_epi32((int)tk.c0 - 1);
    const __m256 ia = _mm256_set1_ps(t->lz.inv_alpha);
    /* Rotations by 1..4 lanes pair every lane with every other. */
    const __m256i rot1 = _mm256_setr_epi32(1, 2, 3, 4, 5, 6, 7, 0),
                  rot2 = _mm256_setr_epi32(2, 3, 4, 5, 6, 7, 0, 1),
                  rot3 = _mm256_setr_epi32(3, 4, 5, 6, 7, 0, 1, 2),
                  rot4 = _mm256_setr_epi32(4, 5, 6, 7, 0, 1, 2, 3);
    for (; f + 8 <= f1; f += 8) {
        if (f < lim) {
            for (size_t j = 0; j < 8; j++)
                PREFETCH_W(sp + (size_t)bi[f + ahead + j] * LAZY_SS);
            if (__builtin_expect(t->pend != NULL, 0)) {
                prefetch_blocks(t, bi + f + ahead);
                prefetch_blocks(t, bi + f + ahead + 4);
            }
        }
        if (__builtin_expect(t->pend != NULL, 0))
            for (size_t j = 0; j < 8; j++)
                cow(t, bi[f + j]);
        __m256i vi = _mm256_loadu_si256((const __m256i *)(bi + f));
        __m256i dup = _mm256_or_si256(
            _mm256_or_si256(
                _mm256_cmpeq_epi32(vi, _mm256_permutevar8x32_epi32(vi, rot1)),
                _mm256_cmpeq_epi32(vi, _mm256_permutevar8x32_epi32(vi, rot2))),
            _mm256_or_si256(
                _mm256_cmpeq_epi32(vi, _mm256_permutevar8x32_epi32(vi, rot3)),
                _mm256_cmpeq_epi32(vi, _mm256_permutevar8x32_epi32(vi, rot4))));
        if (__builtin_expect(_mm256_movemask_epi8(dup) != 0, 0)) {
            for (size_t j = f; j < f + 8; j++)
                lazy_step(t, tk, sp + (size_t)bi[j] * LAZY_SS, j);
            continue;
        }
        float *c[8];
        for (size_t j = 0; j < 8; j++)
            c[j] = sp + (size_t)bi[f + j] * LAZY_SS;
        __m256 z = load2(c[0], c[4]), n = load2(c[1], c[5]),
               b = load2(c[2], c[6]), tg = load2(c[3], c[7]);
        transpose8(&z, &n, &b, &tg);
        __m256i ti = _mm256_castps_si256(tg);
        __m256 sq0 = _mm256_loadu_ps(t->b_sq + f),
               w = _mm256_loadu_ps(t->b_wn + f);
        __m256 stale = _mm256_castsi256_ps(_mm256_cmpeq_epi32(ti, vcur));
        if (__builtin_expect(_mm256_movemask_ps(stale) != 0, 0)) {
            __m256 s1 = _mm256_sqrt_ps(n);
            sq0 = select8(stale, s1, sq0);
            w = select8(stale, ftrl_w8(z, s1, &t->lz), w);
        }
        __m256 gg = _mm256_loadu_ps(t->b_g + f);
        n = _mm256_add_ps(n, _mm256_mul_ps(gg, gg));
        __m256 sig = _mm256_mul_ps(_mm256_sub_ps(_mm256_sqrt_ps(n), sq0), ia);
        z = _mm256_sub_ps(_mm256_add_ps(z, gg), _mm256_mul_ps(sig, w));
        __m256 mine = _mm256_castsi256_ps(_mm256_cmpgt_epi32(ti, before));
        b = select8(mine, b, _mm256_loadu_ps(t->b_wb + f));
        tg = _mm256_castsi256_ps(vcur);
        transpose8(&z, &n, &b, &tg);
        store2(c[0], c[4], z);
        store2(c[1], c[5], n);
        store2(c[2], c[6], b);
        store2(c[3], c[7], tg);
    }
    return f;
}
#endif

/* For non-zeros [f0, f1): the batch-start weight into b_wb, and the weight
 * and sqrt(n) as they are now into b_wn and b_sq. Prefetches the slots
 * PF_LAZY non-zeros ahead (into the next chunk: its lines arrive while
 * this chunk updates). */
static void lazy_gather(ld_trainer_t *t, ticks_t tk, size_t f0, size_t f1)
{
    const float *sp = t->sp;
    const uint32_t *bi = t->b_idx;
    float *wb = t->b_wb, *wn = t->b_wn, *sq = t->b_sq;
    size_t f = f0;
#ifdef LAZY_AVX2
    if (t->avx2 && !ld_trainer_force_sse)
        f = lazy_gather8(t, tk, f, f1);
#endif
#ifdef __SSE2__
    const __m128i before = _mm_set1_epi32((int)tk.c0 - 1);
    for (; f + 4 <= f1; f += 4) {
        for (size_t j = 0; j < 4; j++)
            PREFETCH_W(sp + (size_t)bi[f + PF_LAZY + j] * LAZY_SS);
        __m128 z = _mm_load_ps(sp + (size_t)bi[f] * LAZY_SS),
               n = _mm_load_ps(sp + (size_t)bi[f + 1] * LAZY_SS),
               b = _mm_load_ps(sp + (size_t)bi[f + 2] * LAZY_SS),
               tg = _mm_load_ps(sp + (size_t)bi[f + 3] * LAZY_SS);
        _MM_TRANSPOSE4_PS(z, n, b, tg);
        __m128 mine =
            _mm_castsi128_ps(_mm_cmpgt_epi32(_mm_castps_si128(tg), before));
        __m128 s0 = _mm_sqrt_ps(n), w = ftrl_w4(z, s0, &t->lz);
        _mm_storeu_ps(wb + f, select4(mine, b, w));
        _mm_storeu_ps(wn + f, w);
        _mm_storeu_ps(sq + f, s0);
    }
#endif
    for (; f < f1; f++) {
        PREFETCH_W(sp + (size_t)bi[f + PF_LAZY] * LAZY_SS);
        const float *c = sp + (size_t)bi[f] * LAZY_SS;
        sq[f] = sqrtf(c[1]);
        wn[f] = ftrl_w(c[0], sq[f], &t->lz);
        wb[f] = (int32_t)tag_of(c) >= (int32_t)tk.c0 ? c[2] : wn[f];
    }
}

/* Steps for non-zeros [f0, f1) in order, gradients in b_g. Their slots
 * were just read by lazy_gather, so they are cached. */
static void lazy_update(ld_trainer_t *t, ticks_t tk, size_t f0, size_t f1)
{
    float *sp = t->sp;
    const float *g = t->b_g;
    const uint32_t *bi = t->b_idx;
    size_t f = f0;
#ifdef __SSE2__
    /* Four distinct slots at a time, bit for bit the scalar steps (see
     * opt_step4); a group with a repeated slot goes the scalar way. */
    const __m128i vcur = _mm_set1_epi32((int)tk.cur),
                  before = _mm_set1_epi32((int)tk.c0 - 1);
    const __m128 ia = _mm_set1_ps(t->lz.inv_alpha);
    /* The next chunk's slots, about one chunk ahead: requested here they
     * have the whole update, sums and scores to arrive in, where the
     * gather's own look-ahead (PF_LAZY) is too short to cover a page walk
     * plus a memory access. */
    const size_t ahead = f1 - f0, lim = t->nnz_n > ahead ? t->nnz_n - ahead : 0;
#ifdef LAZY_AVX2
    if (t->avx2 && !ld_trainer_force_sse)
        f = lazy_update8(t, tk, f, f1, ahead, lim);
#endif
    for (; f + 4 <= f1; f += 4) {
        if (f < lim) {
            for (size_t j = 0; j < 4; j++)
                PREFETCH_W(sp + (size_t)bi[f + ahead + j] * LAZY_SS);
            if (__builtin_expect(t->pend != NULL, 0))
                prefetch_blocks(t, bi + f + ahead);
        }
        const uint32_t i0 = bi[f], i1 = bi[f + 1], i2 = bi[f + 2],
                       i3 = bi[f + 3];
        if (__builtin_expect(t->pend != NULL, 0)) {
            cow(t, i0);
            cow(t, i1);
            cow(t, i2);
            cow(t, i3);
        }
        if (__builtin_expect(i0 == i1 || i0 == i2 || i0 == i3 || i1 == i2 ||
                                 i1 == i3 || i2 == i3,
                             0)) {
            for (size_t j = f; j < f + 4; j++)
                lazy_step(t, tk, sp + (size_t)bi[j] * LAZY_SS, j);
            continue;
        }
        float *c0 = sp + (size_t)i0 * LAZY_SS, *c1 = sp + (size_t)i1 * LAZY_SS,
              *c2 = sp + (size_t)i2 * LAZY_SS, *c3 = sp + (size_t)i3 * LAZY_SS;
        __m128 z = _mm_load_ps(c0), n = _mm_load_ps(c1), b = _mm_load_ps(c2),
               tg = _mm_load_ps(c3);
        _MM_TRANSPOSE4_PS(z, n, b, tg);
        __m128i ti = _mm_castps_si128(tg);
        __m128 sq0 = _mm_loadu_ps(t->b_sq + f), w = _mm_loadu_ps(t->b_wn + f);
        /* Stepped earlier in this chunk (a hot feature): recompute. */
        __m128 stale = _mm_castsi128_ps(_mm_cmpeq_epi32(ti, vcur));
        if (__builtin_expect(_mm_movemask_ps(stale) != 0, 0)) {
            __m128 s1 = _mm_sqrt_ps(n);
            sq0 = select4(stale, s1, sq0);
            w = select4(stale, ftrl_w4(z, s1, &t->lz), w);
        }
        __m128 gg = _mm_loadu_ps(g + f);
        n = _mm_add_ps(n, _mm_mul_ps(gg, gg));
        __m128 sig = _mm_mul_ps(_mm_sub_ps(_mm_sqrt_ps(n), sq0), ia);
        z = _mm_sub_ps(_mm_add_ps(z, gg), _mm_mul_ps(sig, w));
        __m128 mine = _mm_castsi128_ps(_mm_cmpgt_epi32(ti, before));
        b = select4(mine, b, _mm_loadu_ps(t->b_wb + f));
        tg = _mm_castsi128_ps(vcur);
        _MM_TRANSPOSE4_PS(z, n, b, tg);
        _mm_store_ps(c0, z);
        _mm_store_ps(c1, n);
        _mm_store_ps(c2, b);
        _mm_store_ps(c3, tg);
    }
#endif
    for (; f < f1; f++) {
        if (__builtin_expect(t->pend != NULL, 0))
            cow(t, bi[f]);
        lazy_step(t, tk, sp + (size_t)bi[f] * LAZY_SS, f);
    }
}

static void score_example(ld_trainer_t *t, size_t i);
static inline void dense_score(ld_trainer_t *t, size_t i);
static void dense_step(ld_trainer_t *t, size_t i);

/* Adds each example's hashed part, sum of b_wb[f] * b_val[f], to b_z in
 * feature order: the same sums, bit for bit, as forward()'s. Each sum is a
 * chain of dependent additions, so four examples' chains are interleaved
 * to keep the adder busy. */
static void sparse_sums(ld_trainer_t *t, size_t i0, size_t i1)
{
    const float *wb = t->b_wb, *bv = t->b_val;
    const uint32_t *off = t->b_off;
    size_t i = i0;
    for (; i + 4 <= i1; i += 4) {
        uint32_t f0 = off[i], f1 = off[i + 1], f2 = off[i + 2], f3 = off[i + 3],
                 e3 = off[i + 4];
        uint32_t n0 = f1 - f0, n1 = f2 - f1, n2 = f3 - f2, n3 = e3 - f3;
        uint32_t m = n0 < n1 ? n0 : n1;
        m = m < n2 ? m : n2;
        m = m < n3 ? m : n3;
        float a0 = t->b_z[i], a1 = t->b_z[i + 1], a2 = t->b_z[i + 2],
              a3 = t->b_z[i + 3];
        for (uint32_t j = 0; j < m; j++) {
            a0 += wb[f0 + j] * bv[f0 + j];
            a1 += wb[f1 + j] * bv[f1 + j];
            a2 += wb[f2 + j] * bv[f2 + j];
            a3 += wb[f3 + j] * bv[f3 + j];
        }
        for (uint32_t j = m; j < n0; j++)
            a0 += wb[f0 + j] * bv[f0 + j];
        for (uint32_t j = m; j < n1; j++)
            a1 += wb[f1 + j] * bv[f1 + j];
        for (uint32_t j = m; j < n2; j++)
            a2 += wb[f2 + j] * bv[f2 + j];
        for (uint32_t j = m; j < n3; j++)
            a3 += wb[f3 + j] * bv[f3 + j];
        t->b_z[i] = a0;
        t->b_z[i + 1] = a1;
        t->b_z[i + 2] = a2;
        t->b_z[i + 3] = a3;
    }
    for (; i < i1; i++) {
        float a = t->b_z[i];
        for (uint32_t f = off[i]; f < off[i + 1]; f++)
            a += wb[f] * bv[f];
        t->b_z[i] = a;
    }
}

/* Scores and trains the batch's hashed part, LAZY_CHUNK examples at a time:
 * gather their batch-start weights, finish their scores (b_z holds the
 * dense part), then step their slots while they are still cached. */
static void lazy_pass(ld_trainer_t *t)
{
    if (t->tick + t->bn > ld_trainer_tick_max) {
        /* Once in ~2^31 chunks: restart the tags so they stay ordered. */
        for (size_t i = 0; i < t->nslots; i++)
            memset(t->sp + i * LAZY_SS + 3, 0, sizeof(float));
        t->tick = 0;
    }
    ticks_t tk = {t->tick + 1, t->tick};
    const float *bv = t->b_val;
    float *g = t->b_g;
    for (size_t i0 = 0; i0 < t->bn; i0 += LAZY_CHUNK) {
        size_t i1 = i0 + LAZY_CHUNK < t->bn ? i0 + LAZY_CHUNK : t->bn;
        size_t f0 = t->b_off[i0], f1 = t->b_off[i1];
        tk.cur = ++t->tick;
        lazy_gather(t, tk, f0, f1);
        sparse_sums(t, i0, i1);
        for (size_t i = i0; i < i1; i++) {
            dense_score(t, i);
            score_example(t, i);
            dense_step(t, i);
        }
        for (size_t i = i0; i < i1; i++) {
            const float r = t->b_r[i];
            for (uint32_t f = t->b_off[i]; f < t->b_off[i + 1]; f++)
                g[f] = r * bv[f];
        }
        lazy_update(t, tk, f0, f1);
    }
}

/* ---- The dense block ---------------------------------------------------- */

/* Dense normalization (dense_norm: maxabs). Each dense column j keeps a
 * scale S_j, the largest |x_j| seen so far (as VW's --normalized does), and
 * its optimizer runs in normalized coordinates: x' = x / S, w' = w S, so
 * g' = g / S and every column learns at the rate of a feature in [-1, 1]
 * whatever its units (a price in hundreds and an age in tens alike). The
 * dense plane 0 keeps the raw weight w = w' / S: scoring, checkpoints and
 * any external scorer use w . x with raw x and need no normalizer. When a
 * larger |x| arrives, the state is converted to the new scale so that the
 * raw weight, hence every prediction, is unchanged (VW rescales its weight
 * instead, which moves predictions). S = 0 means "raw units" (scale 1): a
 * fresh column, or one restored from a checkpoint written before dense
 * normalization existed, is converted at its first non-zero value. */

/* Converts one coordinate's optimizer state (w' in *w, accumulators in *a,
 * *b) from a scale to a scale c times larger: w' grows by c, gradients
 * shrink by c, squared-gradient sums by c^2. FTRL's z is set so that its
 * closed form gives the new w' (z is not a plain gradient sum). */
static inline void dense_rescale(int opt, const hp_t *h, float c, float *w,
                                 float *a, float *b, float l1, float l2)
{
    float ic = 1.0f / c, ic2 = ic * ic;
    *w *= c;
    switch (opt) {
    case LD_OPT_SGD:
        break;
    case LD_OPT_ADAGRAD:
        *a *= ic2;
        break;
    case LD_OPT_FTRL:
        *b *= ic2;
        if (*w == 0.0f) {
            float z = *a * ic;
            *a = z > l1 ? l1 : (z < -l1 ? -l1 : z);
        } else {
            *a = -*w * ((h->beta + sqrtf(*b)) * h->inv_alpha + l2) -
                 copysignf(l1, *w);
        }
        break;
    default: /* Adam */
        *a *= ic;
        *b *= ic2;
        break;
    }
}

/* The dense block's constants: the batch's, with dense_learning_rate in
 * place of learning_rate. */
static void make_dense_hp(const ld_trainer_t *t, const hp_t *h, hp_t *dh)
{
    const ld_spec_t *sp = &t->spec;
    *dh = *h;
    if (sp->dense_lr > 0) {
        dh->lr = (float)((double)h->lr * (sp->dense_lr / sp->lr));
        dh->inv_alpha = (float)(1.0 / sp->dense_lr);
    }
}

/* Converts every column with a scale back to raw units (dense_norm: none
 * restoring a checkpoint trained with maxabs). */
static void dense_to_raw(ld_trainer_t *t)
{
    const size_t plane = (size_t)t->k * t->d1;
    const int opt = t->spec.opt;
    hp_t bh, h;
    make_hp(t, &bh);
    make_dense_hp(t, &bh, &h);
    for (uint32_t j = 0; j + 1 < t->d1; j++) {
        float sc = t->dscale[j];
        if (sc == 0.0f)
            continue;
        for (uint32_t kk = 0; kk < t->k; kk++) {
            size_t i = (size_t)kk * t->d1 + j;
            float w = t->dn[i] * sc, a = 0, b = 0;
            if (opt != LD_OPT_SGD)
                a = t->dn[plane + i];
            if (opt >= LD_OPT_FTRL)
                b = t->dn[2 * plane + i];
            /* dense_w is raw already: only the accumulators change (w
             * comes back as dn[i] up to rounding, and is not stored). */
            dense_rescale(opt, &h, 1.0f / sc, &w, &a, &b, h.l1, h.l2);
            if (opt != LD_OPT_SGD)
                t->dn[plane + i] = a;
            if (opt >= LD_OPT_FTRL)
                t->dn[2 * plane + i] = b;
        }
        t->dscale[j] = 0.0f;
    }
}

/* Dense block and bias, online inside the batch. Example i's dense part
 * is scored with the dense weights after the steps of examples 0..i-1 of
 * the batch (its hashed part with the batch-start weights, as always), and
 * then each dense coordinate takes one step with i's gradient. Still
 * test-then-train: no example is scored by weights that saw it. The dense
 * state is a few floats per column and stays in L1, so this costs what the
 * BLAS products cost. Why: one step per batch from the summed gradient
 * lost 0.014 logloss at batch 256 on issue 14's stream (FTRL's rate saw
 * one squared sum instead of 256 squared gradients), and scoring the
 * dense part with batch-start weights lost another 0.05 on River's
 * Phishing (1 250 examples: the first batch is all p = 0.5); see
 * docs/TRAINER.md for the figures. */
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

/* One step of every dense coordinate with example i's gradient (b_r); the
 * bias column gets no L1/L2 and no normalization. */
static inline __attribute__((always_inline)) void
dense_step_opt(ld_trainer_t *t, const hp_t *h, int opt, size_t i)
{
    const size_t plane = (size_t)t->k * t->d1;
    const uint32_t k = t->k, d1 = t->d1, d = d1 - 1;
    const float *x = t->b_x + i * d1, *r = t->b_r + i * k;
    float *dn = t->dn;
    for (uint32_t j = 0; j <= d; j++) {
        const int bias = j == d;
        const float l1 = bias ? 0.0f : h->l1, l2 = bias ? 0.0f : h->l2;
        const float xv = x[j];
        float sc = bias ? 0.0f : t->dscale[j];
        int grow = !bias && t->dnorm == LD_DNORM_MAXABS && fabsf(xv) > sc;
        for (uint32_t kk = 0; kk < k; kk++) {
            size_t c = (size_t)kk * d1 + j;
            float w = sc > 0.0f ? dn[c] * sc : dn[c], a = 0, b = 0;
            if (opt != LD_OPT_SGD)
                a = dn[plane + c];
            if (opt >= LD_OPT_FTRL)
                b = dn[2 * plane + c];
            float s1 = sc;
            if (__builtin_expect(grow, 0)) {
                s1 = fabsf(xv);
                dense_rescale(opt, h, sc > 0.0f ? s1 / sc : s1, &w, &a, &b, l1,
                              l2);
            }
            float g = r[kk] * (s1 > 0.0f ? xv / s1 : xv);
            opt_step(opt, h, &w, &a, &b, g, l1, l2);
            dn[c] = s1 > 0.0f ? w / s1 : w;
            if (opt != LD_OPT_SGD)
                dn[plane + c] = a;
            if (opt >= LD_OPT_FTRL)
                dn[2 * plane + c] = b;
        }
        if (grow)
            t->dscale[j] = fabsf(xv);
    }
}

/* Dense standardization (dense_norm: standard). Each dense column j keeps
 * Welford's running count n, mean m and sum of squared deviations M2 of the
 * values it has seen (with the missing-is-0 values), and its optimizer runs
 * in centred, scaled coordinates x' = (x - m) / sd, sd = sqrt(M2 / n), as
 * River's StandardScaler feeds its linear models. Why beside maxabs: a
 * feature with a large offset (a salary around 85 000, a flag in {0, 1})
 * is, after maxabs, a second bias that moves with every step, and the
 * real bias has to learn the offset out; centred, the bias learns the base
 * rate alone (issue 14's River comparison; docs/TRAINER.md has figures).
 *
 * As with maxabs the stored weights stay in raw units, w = w' / sd and the
 * bias b = b' - sum_j w_j m_j, so scoring, checkpoints and external
 * scorers use raw x. Each example first updates the statistics, then the
 * state is converted so that the raw function is unchanged (w' by
 * sd_new / sd_old as dense_rescale does; the bias's FTRL z is set from
 * the centred b' the closed form must give), then every column steps with
 * its centred value. A column's statistics include the example before its
 * step (so |x'| <= sqrt(n - 1), bounded from the second example on); the
 * prediction used the statistics before it, so nothing is scored by
 * statistics that saw it. A column whose values have not spread yet
 * (M2 = 0: fresh, constant, or restored from a checkpoint without
 * statistics) is in raw units (m 0, sd 1) and takes no step: a constant
 * is the bias's job. Past 2^24 values the count stops and the statistics
 * become exponentially weighted over that horizon (float32 state, in the
 * checkpoint as it is in memory, so a restore continues bit for bit). */
#define STD_MAX_N 16777216.0f

/* Effective centre and scale of column j of the d columns of st. */
static inline void std_of(const float *st, uint32_t d, uint32_t j, float *mu,
                          float *sd)
{
    float n = st[j], m2 = st[2 * (size_t)d + j];
    if (m2 > 0.0f && n > 0.0f) {
        *mu = st[(size_t)d + j];
        *sd = sqrtf(m2 / n);
    } else {
        *mu = 0.0f;
        *sd = 1.0f;
    }
}

static inline void std_add(float *st, uint32_t d, uint32_t j, float x)
{
    float *n = &st[j], *m = &st[(size_t)d + j], *m2 = &st[2 * (size_t)d + j];
    if (*n < STD_MAX_N)
        *n += 1.0f;
    else
        *m2 -= *m2 / *n;
    float delta = x - *m;
    *m += delta / *n;
    *m2 += delta * (x - *m);
    if (!(*m2 > 0.0f)) /* rounding: never negative */
        *m2 = 0.0f;
}

/* FTRL's z for the bias (no L1/L2) such that the closed form gives w. */
static inline float bias_z(const hp_t *h, float w, float n)
{
    return -w * (h->beta + sqrtf(n)) * h->inv_alpha;
}

/* Converts every standardized column back to raw units and clears the
 * statistics (a standard checkpoint restored with another dense_norm). */
static void std_to_raw(ld_trainer_t *t)
{
    const size_t plane = (size_t)t->k * t->d1;
    const uint32_t d = t->d1 - 1;
    const int opt = t->spec.opt;
    hp_t bh, h;
    make_hp(t, &bh);
    make_dense_hp(t, &bh, &h);
    int any = 0;
    for (uint32_t j = 0; j < d; j++) {
        float mu, sd;
        std_of(t->dstat, d, j, &mu, &sd);
        if (t->dstat[2 * (size_t)d + j] == 0.0f)
            continue;
        any = 1;
        for (uint32_t kk = 0; kk < t->k; kk++) {
            size_t i = (size_t)kk * t->d1 + j;
            float w = t->dn[i] * sd, a = 0, b = 0;
            if (opt != LD_OPT_SGD)
                a = t->dn[plane + i];
            if (opt >= LD_OPT_FTRL)
                b = t->dn[2 * plane + i];
            dense_rescale(opt, &h, 1.0f / sd, &w, &a, &b, h.l1, h.l2);
            if (opt != LD_OPT_SGD)
                t->dn[plane + i] = a;
            if (opt >= LD_OPT_FTRL)
                t->dn[2 * plane + i] = b;
        }
    }
    if (any && opt == LD_OPT_FTRL) /* the bias's z, from its raw value */
        for (uint32_t kk = 0; kk < t->k; kk++) {
            size_t i = (size_t)kk * t->d1 + d;
            t->dn[plane + i] = bias_z(&h, t->dn[i], t->dn[2 * plane + i]);
        }
    memset(t->dstat, 0, 3 * (size_t)d * sizeof(float));
}

static void dense_step_std(ld_trainer_t *t, const hp_t *h, int opt, size_t i)
{
    const size_t plane = (size_t)t->k * t->d1;
    const uint32_t k = t->k, d1 = t->d1, d = d1 - 1;
    const float *x = t->b_x + i * d1, *r = t->b_r + i * k;
    float *dn = t->dn, *st = t->dstat;
    float *sd0 = t->dtmp, *mu1 = t->dtmp + d1, *sd1 = t->dtmp + 2 * d1;
    for (uint32_t j = 0; j < d; j++) {
        float mu0;
        std_of(st, d, j, &mu0, &sd0[j]);
        std_add(st, d, j, x[j]);
        std_of(st, d, j, &mu1[j], &sd1[j]);
    }
    for (uint32_t kk = 0; kk < k; kk++) {
        float *w = dn + (size_t)kk * d1, *za = dn + plane + (size_t)kk * d1,
              *nb = dn + 2 * plane + (size_t)kk * d1;
        /* The bias in centred coordinates, with the new means. */
        float bp = w[d], a = 0, b = 0;
        for (uint32_t j = 0; j < d; j++)
            bp += w[j] * mu1[j];
        if (opt != LD_OPT_SGD)
            a = za[d];
        if (opt >= LD_OPT_FTRL)
            b = nb[d];
        if (opt == LD_OPT_FTRL)
            a = bias_z(h, bp, b);
        opt_step(opt, h, &bp, &a, &b, r[kk], 0.0f, 0.0f);
        if (opt != LD_OPT_SGD)
            za[d] = a;
        if (opt >= LD_OPT_FTRL)
            nb[d] = b;
        for (uint32_t j = 0; j < d; j++) {
            float wp = w[j] * sd0[j], aj = 0, bj = 0;
            if (opt != LD_OPT_SGD)
                aj = za[j];
            if (opt >= LD_OPT_FTRL)
                bj = nb[j];
            if (sd1[j] != sd0[j])
                dense_rescale(opt, h, sd1[j] / sd0[j], &wp, &aj, &bj, h->l1,
                              h->l2);
            if (st[2 * (size_t)d + j] > 0.0f) /* spread: it steps */
                opt_step(opt, h, &wp, &aj, &bj,
                         r[kk] * ((x[j] - mu1[j]) / sd1[j]), h->l1, h->l2);
            w[j] = wp / sd1[j];
            if (opt != LD_OPT_SGD)
                za[j] = aj;
            if (opt >= LD_OPT_FTRL)
                nb[j] = bj;
            bp -= w[j] * mu1[j];
        }
        w[d] = bp;
    }
}

static void dense_step(ld_trainer_t *t, size_t i)
{
    if (t->dnorm == LD_DNORM_STANDARD) {
        dense_step_std(t, &t->dh, t->spec.opt, i);
        return;
    }
    switch (t->spec.opt) {
    case LD_OPT_SGD:
        dense_step_opt(t, &t->dh, LD_OPT_SGD, i);
        break;
    case LD_OPT_ADAGRAD:
        dense_step_opt(t, &t->dh, LD_OPT_ADAGRAD, i);
        break;
    case LD_OPT_FTRL:
        dense_step_opt(t, &t->dh, LD_OPT_FTRL, i);
        break;
    default:
        dense_step_opt(t, &t->dh, LD_OPT_ADAM, i);
        break;
    }
}

/* ---- Scoring ------------------------------------------------------------ */

/* outputs z (bn x k) = dense part via BLAS + hashed part, for a parameter
 * set (sparse AoS state with stride s, dense weights plane 0). */
static void forward_dense(const ld_trainer_t *t, const float *dw, float *z)
{
    if (!dw) { /* the dense part is added example by example */
        memset(z, 0, t->bn * t->k * sizeof(float));
        return;
    }
    const int m = (int)t->bn, d1 = (int)t->d1, k = (int)t->k;
    if (k == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, m, d1, 1.0f, t->b_x, d1, dw, 1,
                    0.0f, z, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, k, d1, 1.0f,
                    t->b_x, d1, dw, d1, 0.0f, z, k);
}

/* sp is in the plain layout: the model's own state unless lazy, or a
 * snapshot's (the champion). */
static void forward(const ld_trainer_t *t, const float *sp, const float *dw,
                    float *z, int write)
{
    const uint32_t k = t->k, s = t->s;
    forward_dense(t, dw, z);
    const size_t stride = (size_t)k * s;
    const uint32_t *bi = t->b_idx;
    const float *bv = t->b_val;
    for (size_t i = 0; i < t->bn; i++) {
        float *zi = z + i * k;
        if (k == 1) {
            float acc = zi[0];
            for (uint32_t f = t->b_off[i]; f < t->b_off[i + 1]; f++) {
                if (write)
                    PREFETCH_W(sp + bi[f + PF_FWD] * stride);
                else
                    PREFETCH_R(sp + bi[f + PF_FWD] * stride);
                acc += sp[(size_t)bi[f] * s] * bv[f];
            }
            zi[0] = acc;
        } else {
            for (uint32_t f = t->b_off[i]; f < t->b_off[i + 1]; f++) {
                PREFETCH_R(sp + bi[f + PF_FWD] * stride);
                const float *c = sp + (size_t)t->b_idx[f] * k * s;
                float v = t->b_val[f];
                for (uint32_t kk = 0; kk < k; kk++)
                    zi[kk] += c[(size_t)kk * s] * v;
            }
        }
    }
}

static inline float sigmoid(float z)
{
    return 1.0f / (1.0f + expf(-z));
}

/* Turns raw outputs z (k of them) into predictions in place and scores them
 * against label y. */
static void link_and_score(int model, uint32_t k, float *z, float y, score_t *o)
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

/* Example i of the queued batch as the caller handed it in (features and
 * event id pointing into the batch's arenas), in b_ex[slot]. */
static const ld_example_t *example_view(ld_trainer_t *t, size_t i, size_t slot)
{
    ld_example_t *e = &t->b_ex[slot];
    ld_err_t err = ld_trainer_queued_get(t, i, e);
    (void)err; /* i < bn: cannot fail */
    return e;
}

static int matured(uint8_t type)
{
    return type == LD_SAMPLE_POS || type == LD_SAMPLE_DEFAULT_NEG;
}

/* ---- The micro-batch ---------------------------------------------------- */

/* Example i's score from its outputs b_z (turned into predictions in
 * place) into b_o, and its gradient into b_r. */
static void score_example(ld_trainer_t *t, size_t i)
{
    const uint32_t k = t->k;
    const int model = t->spec.model;
    float *z = t->b_z + i * k, *r = t->b_r + i * k;
    float y = t->b_y[i], w = t->b_w[i];
    uint8_t type = t->b_type[i];
    link_and_score(model, k, z, y, &t->b_o[i]);
    if (t->df == LD_DF_FNW) {
        float p = z[0];
        if (type == LD_SAMPLE_FAKE_NEG)
            w *= (1.0f - p) * (1.0f + p);
        else if (type == LD_SAMPLE_DELAYED_POS)
            w *= 1.0f + p;
    }
    /* d loss / d output: w (pred - target) for all three models. */
    if (model == LD_MODEL_SOFTMAX) {
        for (uint32_t c = 0; c < k; c++)
            r[c] = w * (z[c] - (c == (uint32_t)y ? 1.0f : 0.0f));
    } else {
        r[0] = w * (z[0] - y);
    }
}

static void train_batch(ld_trainer_t *t)
{
    const uint32_t k = t->k;
    const int model = t->spec.model;
    if (t->bn == 0)
        return;
    memset(t->b_idx + t->nnz_n, 0, PF_DIST * sizeof(uint32_t));
    if (t->champ)
        forward(t, t->champ->sp, t->champ->dn, t->b_cz, 0);
    hp_t h;
    make_hp(t, &h);
    make_dense_hp(t, &h, &t->dh);
    if (t->lazy) {
        /* Scores and trains the hashed part in one pass (and the dense
         * block example by example). */
        forward_dense(t, NULL, t->b_z);
        lazy_pass(t);
    } else {
        forward(t, t->sp, NULL, t->b_z, 1);
        for (size_t i = 0; i < t->bn; i++) {
            dense_score(t, i);
            score_example(t, i);
            dense_step(t, i);
        }
    }

    size_t nsc = 0;
    for (size_t i = 0; i < t->bn; i++) {
        float y = t->b_y[i];
        uint8_t type = t->b_type[i];
        const score_t *o = &t->b_o[i];
        score_t co = {NAN, NAN, NAN, 0, 0};
        if (t->champ)
            link_and_score(model, k, t->b_cz + i * k, y, &co);
        t->st.by_type[type]++;
        if (matured(type)) {
            ld_window_push(&t->win, o->pred, model == LD_MODEL_SOFTMAX ? 1 : y,
                           t->b_w[i], o->loss, o->sqerr, o->correct,
                           t->b_time[i]);
            if (t->champ)
                ld_window_push(&t->cwin, co.pred,
                               model == LD_MODEL_SOFTMAX ? 1 : y, t->b_w[i],
                               co.loss, co.sqerr, co.correct, t->b_time[i]);
            ld_scored_t *sc = &t->b_sc[nsc++];
            sc->pred = o->pred;
            sc->champion = co.pred;
            sc->loss = o->loss;
            sc->champion_loss = co.loss;
            sc->label = y;
            sc->weight = t->b_w[i];
            sc->pred_class = o->cls;
            sc->champion_class = co.cls;
            sc->sample_type = (ld_sample_type_t)type;
            sc->event_time_ms = t->b_time[i];
            sc->ex = example_view(t, i, nsc - 1);
        }
    }
    if (t->cb && nsc)
        t->cb(t->cb_opaque, t->b_sc, nsc);

#ifdef __SSE2__
#define SPARSE_UPDATE(t, h, opt)                                               \
    do {                                                                       \
        if ((t)->k == 1)                                                       \
            sparse_update_k1(t, h, opt);                                       \
        else                                                                   \
            sparse_update(t, h, opt);                                          \
    } while (0)
#else
#define SPARSE_UPDATE(t, h, opt) sparse_update(t, h, opt)
#endif
    switch (t->spec.opt) {
    case LD_OPT_SGD:
        SPARSE_UPDATE(t, &h, LD_OPT_SGD);
        break;
    case LD_OPT_ADAGRAD:
        SPARSE_UPDATE(t, &h, LD_OPT_ADAGRAD);
        break;
    case LD_OPT_FTRL:
        if (!t->lazy) /* the lazy pass has done the hashed part */
            sparse_update(t, &h, LD_OPT_FTRL);
        break;
    default:
        SPARSE_UPDATE(t, &h, LD_OPT_ADAM);
        break;
    }
    t->step++;
    t->st.examples += t->bn;
    t->bn = 0;
    t->nnz_n = 0;
    t->eid_n = 0;
    if (t->snap)
        snap_step(t, t->step_blocks);
}

ld_err_t ld_trainer_flush(ld_trainer_t *t)
{
    train_batch(t);
    return LD_OK;
}

static int valid_features(const ld_trainer_t *t, const ld_features_t *x)
{
    if ((x->nnz && (!x->idx || !x->val)) || (x->ndense && !x->dense))
        return 0;
    if (x->ndense != t->d1 - 1)
        return 0;
    /* No early exit: the loops vectorize; an invalid example is rare. An
     * all-ones exponent is Inf or NaN. */
    const uint32_t nslots = (uint32_t)t->nslots, inf = 0x7f800000u;
    uint32_t bad = 0;
    for (uint32_t i = 0; i < x->nnz; i++) {
        uint32_t b;
        memcpy(&b, x->val + i, sizeof(b));
        bad |= (uint32_t)(x->idx[i] >= nslots) | (uint32_t)((b & inf) == inf);
    }
    for (uint32_t i = 0; i < x->ndense; i++) {
        uint32_t b;
        memcpy(&b, x->dense + i, sizeof(b));
        bad |= (uint32_t)((b & inf) == inf);
    }
    return bad == 0;
}

ld_err_t ld_trainer_add(ld_trainer_t *t, const ld_example_t *ex)
{
    const ld_features_t *x = &ex->x;
    float y = ex->label;
    int ok = valid_features(t, x) && isfinite(y) && isfinite(ex->weight) &&
             ex->weight >= 0 && (unsigned)ex->sample_type < LD_SAMPLE__COUNT;
    if (ok && t->spec.model == LD_MODEL_LOGISTIC)
        ok = y >= 0 && y <= 1;
    if (ok && t->spec.model == LD_MODEL_SOFTMAX)
        ok = y >= 0 && y < (float)t->k && y == floorf(y);
    if (!ok) {
        t->st.rejected++;
        return LD_ERR_INVAL;
    }
    if (t->bn && t->batch_span > 0 &&
        ex->event_time_ms - t->b_t0 >= t->batch_span)
        train_batch(t);
    if (t->nnz_n + x->nnz > t->nnz_cap) {
        /* Grows to the largest batch seen; amortised, not per example. */
        size_t cap = t->nnz_cap * 2;
        if (cap < t->nnz_n + x->nnz)
            cap = t->nnz_n + x->nnz;
        uint32_t *ni = realloc(t->b_idx, (cap + PF_DIST) * sizeof(uint32_t));
        if (!ni)
            return LD_ERR_NOMEM;
        t->b_idx = ni;
        float *nv = realloc(t->b_val, cap * sizeof(float));
        if (!nv)
            return LD_ERR_NOMEM;
        t->b_val = nv;
        float *ng = realloc(t->b_g, cap * sizeof(float));
        if (!ng)
            return LD_ERR_NOMEM;
        t->b_g = ng;
        float **lz[3] = {&t->b_wb, &t->b_wn, &t->b_sq};
        for (int j = 0; j < 3; j++) {
            float *nw = realloc(*lz[j], cap * sizeof(float));
            if (!nw)
                return LD_ERR_NOMEM;
            *lz[j] = nw;
        }
        t->nnz_cap = cap;
    }
    size_t eid_len = ex->event_id ? strlen(ex->event_id) + 1 : 0;
    if (t->eid_n + eid_len > t->eid_cap) {
        size_t cap = t->eid_cap * 2;
        if (cap < t->eid_n + eid_len)
            cap = t->eid_n + eid_len;
        if (cap > NO_EID)
            return LD_ERR_NOMEM; /* ids of one batch beyond 4 GiB */
        char *ne = realloc(t->eid, cap);
        if (!ne)
            return LD_ERR_NOMEM;
        t->eid = ne;
        t->eid_cap = cap;
    }
    size_t i = t->bn;
    if (i == 0)
        t->b_t0 = ex->event_time_ms;
    t->b_off[i] = (uint32_t)t->nnz_n;
    if (x->nnz) {
        memcpy(t->b_idx + t->nnz_n, x->idx, x->nnz * sizeof(uint32_t));
        memcpy(t->b_val + t->nnz_n, x->val, x->nnz * sizeof(float));
    }
    t->nnz_n += x->nnz;
    t->b_off[i + 1] = (uint32_t)t->nnz_n;
    float *row = t->b_x + i * t->d1;
    if (x->ndense)
        memcpy(row, x->dense, x->ndense * sizeof(float));
    row[t->d1 - 1] = 1.0f;
    t->b_y[i] = y;
    t->b_w[i] = ex->weight;
    t->b_type[i] = (uint8_t)ex->sample_type;
    t->b_time[i] = ex->event_time_ms;
    t->b_ltime[i] = ex->label_time_ms;
    t->b_srcoff[i] = ex->offset;
    t->b_part[i] = ex->partition;
    t->b_eid[i] = NO_EID;
    if (eid_len) {
        t->b_eid[i] = (uint32_t)t->eid_n;
        memcpy(t->eid + t->eid_n, ex->event_id, eid_len);
        t->eid_n += eid_len;
    }
    t->st.last_event_time_ms = ex->event_time_ms;
    t->bn = i + 1;
    if (t->bn == t->bcap)
        train_batch(t);
    return LD_OK;
}

ld_err_t ld_trainer_predict(const ld_trainer_t *t, const ld_features_t *x,
                            float *out, size_t nout)
{
    if (nout < t->k || !valid_features(t, x))
        return LD_ERR_INVAL;
    const uint32_t k = t->k, s = t->s, d1 = t->d1;
    for (uint32_t kk = 0; kk < k; kk++) {
        const float *wd = t->dn + (size_t)kk * d1;
        float acc = wd[d1 - 1];
        for (uint32_t j = 0; j < x->ndense; j++)
            acc += wd[j] * x->dense[j];
        if (t->lazy) {
            for (uint32_t f = 0; f < x->nnz; f++) {
                const float *c = t->sp + (size_t)x->idx[f] * LAZY_SS;
                acc += ftrl_w(c[0], sqrtf(c[1]), &t->lz) * x->val[f];
            }
        } else {
            for (uint32_t f = 0; f < x->nnz; f++)
                acc += t->sp[((size_t)x->idx[f] * k + kk) * s] * x->val[f];
        }
        out[kk] = acc;
    }
    score_t o;
    link_and_score(t->spec.model, k, out, 0.0f, &o);
    return LD_OK;
}

size_t ld_trainer_queued(const ld_trainer_t *t)
{
    return t->bn;
}

ld_err_t ld_trainer_queued_get(const ld_trainer_t *t, size_t i,
                               ld_example_t *out)
{
    if (i >= t->bn)
        return LD_ERR_INVAL;
    uint32_t f0 = t->b_off[i];
    out->x.idx = t->b_idx + f0;
    out->x.val = t->b_val + f0;
    out->x.nnz = t->b_off[i + 1] - f0;
    out->x.dense = t->b_x + i * t->d1;
    out->x.ndense = t->d1 - 1;
    out->label = t->b_y[i];
    out->weight = t->b_w[i];
    out->sample_type = (ld_sample_type_t)t->b_type[i];
    out->event_time_ms = t->b_time[i];
    out->label_time_ms = t->b_ltime[i];
    out->partition = t->b_part[i];
    out->offset = t->b_srcoff[i];
    out->event_id = t->b_eid[i] == NO_EID ? NULL : t->eid + t->b_eid[i];
    return LD_OK;
}
