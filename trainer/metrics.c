/* SPDX-License-Identifier: Apache-2.0 */
/* Prequential metrics over a sliding window of matured examples: logloss,
 * exact weighted AUC, accuracy, RMSE and calibration, computed on demand. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "trainer/internal.h"

/* Order-preserving map of a score to an unsigned key: NaN ranks as -Inf,
 * -0 as +0 (they compare equal, so they must tie). */
static inline uint32_t score_key(float s)
{
    uint32_t b;
    if (isnan(s))
        s = -INFINITY;
    if (s == 0.0f)
        s = 0.0f;
    memcpy(&b, &s, sizeof(b));
    return b & 0x80000000u ? ~b : b | 0x80000000u;
}

/* LSD radix sort by key, 11 + 11 + 10 bits, stable; a and tmp hold n
 * items each, the result ends in a. A window's AUC was a qsort with a
 * comparator call per comparison, most of a snapshot's start (~1 ms for
 * 10 000 examples); this is a few passes over the items. */
static void radix_sort(ld_auc_item_t *a, ld_auc_item_t *tmp, size_t n)
{
    static const unsigned shift[3] = {0, 11, 22};
    ld_auc_item_t *src = a, *dst = tmp;
    for (int p = 0; p < 3; p++) {
        size_t cnt[2048] = {0};
        const unsigned sh = shift[p];
        for (size_t i = 0; i < n; i++)
            cnt[(src[i].key >> sh) & 2047u]++;
        size_t sum = 0;
        for (size_t d = 0; d < 2048; d++) {
            size_t c = cnt[d];
            cnt[d] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++)
            dst[cnt[(src[i].key >> sh) & 2047u]++] = src[i];
        ld_auc_item_t *x = src;
        src = dst;
        dst = x;
    }
    /* Three passes: the sorted items are in tmp. */
    memcpy(a, src, n * sizeof(*a));
}

double ld_auc_exact(const float *score, const float *label, const float *w,
                    size_t n, ld_auc_item_t *it)
{
    for (size_t i = 0; i < n; i++) {
        it[i].key = score_key(score[i]);
        it[i].y = label[i];
        it[i].w = w ? w[i] : 1.0f;
    }
    radix_sort(it, it + n, n);
    /* Walk groups of equal score upwards: each positive beats all the
     * negative weight below its group and half of its group's. */
    double num = 0, neg_below = 0, wpos = 0;
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        double gp = 0, gn = 0;
        while (j < n && it[j].key == it[i].key) {
            if (it[j].y >= 0.5f)
                gp += it[j].w;
            else
                gn += it[j].w;
            j++;
        }
        num += gp * neg_below + 0.5 * gp * gn;
        neg_below += gn;
        wpos += gp;
        i = j;
    }
    if (wpos <= 0 || neg_below <= 0)
        return NAN;
    return num / (wpos * neg_below);
}

ld_err_t ld_window_init(ld_window_t *w, size_t cap)
{
    memset(w, 0, sizeof(*w));
    w->cap = cap;
    w->pred = calloc(cap, sizeof(float));
    w->label = calloc(cap, sizeof(float));
    w->weight = calloc(cap, sizeof(float));
    w->loss = calloc(cap, sizeof(float));
    w->sqerr = calloc(cap, sizeof(float));
    w->correct = calloc(cap, 1);
    w->time = calloc(cap, sizeof(int64_t));
    w->scratch = calloc(2 * cap, sizeof(ld_auc_item_t));
    if (!w->pred || !w->label || !w->weight || !w->loss || !w->sqerr ||
        !w->correct || !w->time || !w->scratch) {
        ld_window_free(w);
        return LD_ERR_NOMEM;
    }
    return LD_OK;
}

void ld_window_free(ld_window_t *w)
{
    free(w->pred);
    free(w->label);
    free(w->weight);
    free(w->loss);
    free(w->sqerr);
    free(w->correct);
    free(w->time);
    free(w->scratch);
    memset(w, 0, sizeof(*w));
}

void ld_window_clear(ld_window_t *w)
{
    w->n = 0;
    w->head = 0;
}

void ld_window_push(ld_window_t *w, float pred, float label, float weight,
                    float loss, float sqerr, int correct, int64_t time)
{
    size_t i = w->head;
    w->pred[i] = pred;
    w->label[i] = label;
    w->weight[i] = weight;
    w->loss[i] = loss;
    w->sqerr[i] = sqerr;
    w->correct[i] = (uint8_t)(correct != 0);
    w->time[i] = time;
    w->head = i + 1 == w->cap ? 0 : i + 1;
    if (w->n < w->cap)
        w->n++;
}

void ld_window_metrics(ld_window_t *w, int model, ld_trainer_metrics_t *m)
{
    double sw = 0, sl = 0, sq = 0, sc = 0, sp = 0, sy = 0;
    int64_t t0 = INT64_MAX, t1 = INT64_MIN;
    for (size_t i = 0; i < w->n; i++) {
        double wi = w->weight[i];
        sw += wi;
        sl += wi * w->loss[i];
        sq += wi * w->sqerr[i];
        sc += wi * w->correct[i];
        sp += wi * w->pred[i];
        sy += wi * w->label[i];
        if (w->time[i] < t0)
            t0 = w->time[i];
        if (w->time[i] > t1)
            t1 = w->time[i];
    }
    memset(m, 0, sizeof(*m));
    m->examples = w->n;
    m->window_start_ms = w->n ? t0 : 0;
    m->window_end_ms = w->n ? t1 : 0;
    m->logloss = m->auc = m->accuracy = m->rmse = NAN;
    m->mean_prediction = m->mean_label = m->calibration = NAN;
    if (sw <= 0)
        return;
    m->rmse = sqrt(sq / sw);
    if (model != LD_MODEL_LINEAR) {
        m->logloss = sl / sw;
        m->accuracy = sc / sw;
    }
    if (model != LD_MODEL_SOFTMAX) {
        m->mean_prediction = sp / sw;
        m->mean_label = sy / sw;
        m->calibration = sy != 0 ? sp / sy : NAN;
    }
    if (model == LD_MODEL_LOGISTIC)
        m->auc = ld_auc_exact(w->pred, w->label, w->weight, w->n, w->scratch);
}
