/* SPDX-License-Identifier: Apache-2.0 */
/* Windows of matured examples: what each one counts and samples for the
 * performance and drift kinds, and its part of the resume state. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "triggers/set.h"

static uint64_t mix_seed(uint64_t seed, uint64_t window, uint64_t feature)
{
    uint64_t s = seed ^ (window * 0x9e3779b97f4a7c15ULL) ^
                 (feature * 0xc2b2ae3d27d4eb4fULL);
    return rng_next(&s);
}

void win_free(winset_t *w, uint32_t nnum)
{
    if (w->num)
        for (uint32_t i = 0; i < nnum; i++)
            res_free(&w->num[i]);
    free(w->num);
    w->num = NULL;
    free(w->hist);
    w->hist = NULL;
    res_free(&w->pred);
    res_free(&w->label_num);
    ss_free(&w->label_cat);
}

void win_clear(const ld_triggers_t *t, winset_t *w, uint64_t index)
{
    uint64_t seed = (uint64_t)t->c.seed;
    w->valid = 0;
    w->index = index;
    w->n = 0;
    w->t_start = NO_TIME;
    w->t_end = NO_TIME;
    w->loss_sum = t->feed_loss ? 0.0 : NAN;
    w->loss_sq = 0.0;
    w->closs_sum = 0.0;
    w->closs_sq = 0.0;
    w->closs_n = 0;
    if (w->num)
        for (uint32_t i = 0; i < t->nnum; i++)
            res_clear(&w->num[i], mix_seed(seed, index, i));
    memset(w->hist, 0, (size_t)t->c.drift_hashed_bins * sizeof(*w->hist));
    res_clear(&w->pred, mix_seed(seed, index, 1u << 20));
    res_clear(&w->label_num, mix_seed(seed, index, (1u << 20) + 1));
    ss_clear(&w->label_cat);
}

int win_init(const ld_triggers_t *t, winset_t *w)
{
    uint32_t cap = (uint32_t)t->c.drift_sample_size;
    uint32_t k = (uint32_t)t->c.drift_topk;
    memset(w, 0, sizeof(*w));
    w->hist = calloc((size_t)t->c.drift_hashed_bins, sizeof(*w->hist));
    if (!w->hist || ss_init(&w->label_cat, k) || res_init(&w->pred, cap, 0) ||
        res_init(&w->label_num, cap, 0))
        return -1;
    return 0;
}

/* Allocates the numeric reservoirs once the feature count is known. */
int win_init_num(const ld_triggers_t *t, winset_t *w)
{
    if (t->nnum == 0)
        return 0;
    w->num = calloc(t->nnum, sizeof(*w->num));
    if (!w->num)
        return -1;
    for (uint32_t i = 0; i < t->nnum; i++)
        if (res_init(&w->num[i], (uint32_t)t->c.drift_sample_size,
                     mix_seed((uint64_t)t->c.seed, w->index, i)))
            return -1;
    return 0;
}

void win_swap(winset_t *a, winset_t *b)
{
    winset_t tmp = *a;
    *a = *b;
    *b = tmp;
}

/* Per-example loss of score p: what the window sums (squared error for
 * RMSE, whose root is taken of the window's mean). */
static double obs_loss(int metric, float p, float y)
{
    double l = metric_eval(
        metric == LD_TRIGGER_METRIC_AUC ? LD_TRIGGER_METRIC_LOGLOSS : metric,
        &p, &y, 1);
    return metric == LD_TRIGGER_METRIC_RMSE ? l * l : l;
}

double metric_of_mean(const ld_triggers_t *t, double mean)
{
    return t->c.perf_metric == LD_TRIGGER_METRIC_RMSE ? sqrt(mean) : mean;
}

void win_observe(ld_triggers_t *t, winset_t *w, const ld_trigger_obs_t *o)
{
    if (w->n == 0)
        w->t_start = o->event_time_ms;
    if (w->t_end == NO_TIME || o->event_time_ms > w->t_end)
        w->t_end = o->event_time_ms;
    w->n++;
    if (t->feed_loss) {
        double l = obs_loss(t->c.perf_metric, o->p_challenger, o->label);
        w->loss_sum += l;
        w->loss_sq += l * l;
        if (isfinite(o->p_champion)) {
            l = obs_loss(t->c.perf_metric, o->p_champion, o->label);
            w->closs_sum += l;
            w->closs_sq += l * l;
            w->closs_n++;
        }
    }
    if (!t->feed_sketch)
        return;
    if (isfinite(o->p_champion))
        res_add(&w->pred, o->p_champion);
    if (t->c.drift_label_categorical)
        ss_add(&w->label_cat, (uint32_t)(int64_t)lrintf(o->label));
    else
        res_add(&w->label_num, o->label);
    /* A fixed stride of examples is a uniform sample of the window and
     * keeps the sketch cost off most examples; prediction and label (one
     * value each) are always taken. */
    if (!o->x)
        return;
    if (t->mod_dense == 0) {
        uint32_t nd = o->x->ndense < t->nnum ? o->x->ndense : t->nnum;
        const float *dense = o->x->dense;
        reservoir_t *num = w->num;
        for (uint32_t i = 0; i < nd; i++)
            if (isfinite(dense[i]))
                res_add(&num[i], dense[i]);
    }
    if (t->c.drift_hashed && t->mod_hashed == 0) {
        const uint32_t *idx = o->x->idx;
        uint64_t *hist = w->hist;
        uint32_t nbins = (uint32_t)t->c.drift_hashed_bins;
        for (uint32_t i = 0; i < o->x->nnz; i++)
            hist[hist_bin(idx[i], nbins)]++;
    }
}

void win_save(const ld_triggers_t *t, const winset_t *w, ld_wbuf_t *b)
{
    ld_wbuf_u8(b, (uint8_t)w->valid);
    ld_wbuf_u64(b, w->index);
    ld_wbuf_u64(b, w->n);
    ld_wbuf_i64(b, w->t_start);
    ld_wbuf_i64(b, w->t_end);
    ld_wbuf_f64(b, w->loss_sum);
    ld_wbuf_f64(b, w->loss_sq);
    ld_wbuf_f64(b, w->closs_sum);
    ld_wbuf_f64(b, w->closs_sq);
    ld_wbuf_u64(b, w->closs_n);
    for (uint32_t i = 0; i < t->nnum; i++)
        res_save(&w->num[i], b);
    for (int64_t i = 0; i < t->c.drift_hashed_bins; i++)
        ld_wbuf_u64(b, w->hist[i]);
    res_save(&w->pred, b);
    res_save(&w->label_num, b);
    ss_save(&w->label_cat, b);
}

/* old: NULL for a state of version 2 or 3; for one of version 1, a
 * scratch sketch that takes (and drops) the hashed-id SpaceSaving it held.
 * Before version 3 a window kept only the live model's loss sum: the
 * performance test needs its variance and the champion's loss, so such a
 * window's loss is unknown (NaN: not compared). */
void win_load(const ld_triggers_t *t, winset_t *w, ld_rbuf_t *r,
              spacesaving_t *old, uint32_t version)
{
    w->valid = ld_rbuf_u8(r) != 0;
    w->index = ld_rbuf_u64(r);
    w->n = ld_rbuf_u64(r);
    w->t_start = ld_rbuf_i64(r);
    w->t_end = ld_rbuf_i64(r);
    w->loss_sum = ld_rbuf_f64(r);
    if (version >= 3) {
        w->loss_sq = ld_rbuf_f64(r);
        w->closs_sum = ld_rbuf_f64(r);
        w->closs_sq = ld_rbuf_f64(r);
        w->closs_n = ld_rbuf_u64(r);
    } else {
        w->loss_sum = NAN;
        w->loss_sq = NAN;
        w->closs_sum = NAN;
        w->closs_sq = NAN;
        w->closs_n = 0;
    }
    for (uint32_t i = 0; i < t->nnum; i++)
        res_load(&w->num[i], r);
    if (old) {
        ss_load(old, r);
    } else {
        if ((uint64_t)t->c.drift_hashed_bins * 8 > r->len - r->off)
            r->err = LD_ERR_CORRUPT;
        for (int64_t i = 0; i < t->c.drift_hashed_bins && !r->err; i++)
            w->hist[i] = ld_rbuf_u64(r);
    }
    res_load(&w->pred, r);
    res_load(&w->label_num, r);
    ss_load(&w->label_cat, r);
    if (old) /* version 1 sampled the live model's scores */
        res_clear(&w->pred, mix_seed((uint64_t)t->c.seed, w->index, 1u << 20));
}

/* A closed window takes no more values: sort its samples once, so every
 * later comparison (a reference is compared many times) skips the sort. */
void win_seal(ld_triggers_t *t, winset_t *w)
{
    w->valid = 1;
    if (!t->feed_sketch)
        return;
    for (uint32_t i = 0; i < t->nnum; i++)
        res_sort(&w->num[i]);
    res_sort(&w->pred);
    res_sort(&w->label_num);
}
