/* SPDX-License-Identifier: Apache-2.0 */
/* Micro-batch training of hashed-sparse + dense linear models: lifetime,
 * the micro-batch, prequential and champion shadow scoring (BLAS for the
 * champion's dense scores) and the per-coordinate sparse update of the
 * plain layout. The lazy FTRL pass (lazy.c), the dense block (dense.c) and
 * snapshots (snapshot.c) are files of their own; trainer/core.h is the
 * layout they share. */
#include "trainer/core.h"

const char *ld_trainer_blas_core(void)
{
    const char *c = openblas_get_corename();
    return c ? c : "unknown";
}

/* ---- Lifetime ----------------------------------------------------------- */

static float acc_init(const ld_spec_t *sp, uint32_t plane)
{
    return sp->opt == LD_OPT_ADAGRAD && plane == 1 ? (float)sp->init_acc : 0.0f;
}

static void init_state(ld_trainer_t *t)
{
    memset(t->sp, 0, t->sp_n * sizeof(float));
    memset(t->dn, 0, t->dn_n * sizeof(float));
    memset(t->dscale, 0, (t->d1 - 1) * sizeof(float));
    memset(t->dstat, 0, 3 * (t->d1 - 1) * sizeof(float));
    memset(t->dirty, 0xff, t->dwords * sizeof(*t->dirty));
    t->dall = 1;
    if (t->spec.opt == LD_OPT_ADAGRAD) {
        float a = acc_init(&t->spec, 1);
        for (size_t i = 1; i < t->sp_n; i += 2)
            t->sp[i] = a;
        size_t plane = (size_t)t->k * t->d1;
        for (size_t i = 0; i < plane; i++)
            t->dn[plane + i] = a;
    }
}

/* Why conf cannot make a trainer, or NULL when it can. */
static const char *conf_error(const ld_trainer_conf_t *conf)
{
    if (!conf)
        return "no config";
    if (conf->model < 0 || conf->model > LD_MODEL_SOFTMAX)
        return "model: unknown kind";
    if (conf->optimizer < 0 || conf->optimizer > LD_OPT_ADAM)
        return "optimizer: unknown kind";
    if (conf->hash_bits < 1 || conf->hash_bits > 30)
        return "hash_bits: must be 1..30";
    if (conf->dense_dim < 0 || conf->dense_dim > 65536)
        return "dense_dim: must be 0..65536";
    if (conf->model == LD_MODEL_SOFTMAX &&
        (conf->num_classes < 2 || conf->num_classes > 1024))
        return "num_classes: must be 2..1024 for softmax";
    if (conf->batch_size < 1 || conf->batch_size > 1048576)
        return "batch_size: must be 1..1048576";
    if (conf->metrics_window < 1)
        return "metrics_window: must be at least 1";
    if (conf->delayed_feedback == LD_DF_FNW && conf->model != LD_MODEL_LOGISTIC)
        return "delayed_feedback: fnw needs the logistic model";
    if (conf->dense_norm < LD_DNORM_NONE ||
        conf->dense_norm > LD_DNORM_STANDARD)
        return "dense_norm: unknown kind";
    if (!(conf->learning_rate > 0) || !isfinite(conf->learning_rate))
        return "learning_rate: must be positive";
    if (!(conf->dense_learning_rate >= 0) ||
        !isfinite(conf->dense_learning_rate))
        return "dense_learning_rate: must be 0 or positive";
    if (conf->lr_schedule == LD_LR_EXPONENTIAL &&
        conf->optimizer == LD_OPT_SGD &&
        !(conf->lr_decay > 0 && conf->lr_decay <= 1))
        return "lr_decay: the exponential schedule needs a factor in (0,1]";
    return NULL;
}

/* The model spec of conf: what a checkpoint records and a resume checks. */
static void spec_from_conf(ld_spec_t *sp, const ld_trainer_conf_t *conf)
{
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
}

/* The sizes and layout that follow from the spec and conf. */
static void size_from_spec(ld_trainer_t *t, const ld_trainer_conf_t *conf)
{
    const ld_spec_t *sp = &t->spec;
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
}

/* The parameter state and the micro-batch buffers. Returns 0, or -1 when
 * out of memory (what was allocated is freed by ld_trainer_destroy). */
static int alloc_buffers(ld_trainer_t *t)
{
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
    t->dshift = t->spec.hash_bits < LD_TRAINER_STATE_SHIFT
                    ? t->spec.hash_bits
                    : LD_TRAINER_STATE_SHIFT;
    t->dblocks = t->nslots >> t->dshift;
    /* Lazy FTRL: a bit per block, the rows from the slots' tags; else a
     * bit per row (core.h). */
    t->dwords = ((t->lazy ? t->dblocks : t->nslots) + 63) / 64;
    t->dirty = malloc(t->dwords * sizeof(*t->dirty));
    if (!t->sp || !t->dn || !t->dscale || !t->dstat || !t->dtmp || !t->b_off ||
        !t->b_idx || !t->b_val || !t->b_g || !t->b_wb || !t->b_wn || !t->b_sq ||
        !t->b_o || !t->b_x || !t->b_y || !t->b_w || !t->b_type || !t->b_time ||
        !t->b_ltime || !t->b_srcoff || !t->b_part || !t->b_eid || !t->eid ||
        !t->b_ex || !t->b_z || !t->b_cz || !t->b_r || !t->b_sc ||
        !t->pend_buf || !t->dirty)
        return -1;
    return 0;
}

ld_trainer_t *ld_trainer_new(const ld_trainer_conf_t *conf, char *errstr,
                             size_t errstr_size)
{
    ld_trainer_t *t = NULL;
    const char *why = conf_error(conf);
    if (why)
        goto err;

    why = "out of memory";
    t = calloc(1, sizeof(*t));
    if (!t)
        goto err;
    spec_from_conf(&t->spec, conf);
    size_from_spec(t, conf);
    if (alloc_buffers(t) < 0)
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
    if (t->spec.opt == LD_OPT_ADAM && t->spec.l1 > 0)
        ld_log(LD_LOG_WARN, "trainer",
               "msg=\"l1 is ignored by the adam optimizer\" l1=%g", t->spec.l1);
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
    /* A shared snapshot may outlive the trainer: it is made whole while
     * the model it copies from still exists. */
    if (t->snap)
        ld_snapshot_complete(t->snap);
    copier_join(t); /* it reads t->sp */
    ld_snapshot_destroy(t->snap);
    ld_snapshot_destroy(t->done);
    if (t->prep_running)
        pthread_join(t->prep, NULL);
    free(t->spare);
    free(t->pend_buf);
    free(t->dirty);
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

/* ---- Optimizers --------------------------------------------------------- */

void make_hp(const ld_trainer_t *t, hp_t *h)
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
void score_example(ld_trainer_t *t, size_t i)
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
    if (t->champ && t->champ == t->snap) {
        /* The champion is the snapshot being copied: the blocks the batch
         * reads are copied first (the batch writes them next anyway). */
        for (size_t j = 0; j < t->nnz_n; j++)
            cow(t, t->b_idx[j]);
    }
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
    /* One pass over the batch's indices, just written and still cached:
     * cheaper than a mark inside each update kernel's inner loop. */
    const uint32_t *bi = t->b_idx, dsh = t->lazy ? t->dshift : 0;
    uint64_t *d = t->dirty;
    for (size_t j = 0; j < t->nnz_n; j++) {
        uint32_t b = bi[j] >> dsh;
        d[b >> 6] |= (uint64_t)1 << (b & 63);
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
