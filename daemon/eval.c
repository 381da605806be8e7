/* SPDX-License-Identifier: Apache-2.0 */
/* The evaluation engine: feeds records to a joiner, trains a continual
 * model on the released examples and scores them with every line (frozen
 * checkpoints, deployed copies refreshed at cadences, staleness ages). */
#include "daemon/eval_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BUCKETS 100000

static int matured(ld_sample_type_t t)
{
    return t == LD_SAMPLE_POS || t == LD_SAMPLE_DEFAULT_NEG;
}

/* ---- Lines -------------------------------------------------------------- */

void ld_eval_duration_name(int64_t ms, char *buf, size_t size)
{
    static const struct {
        int64_t ms;
        const char *unit;
    } units[] = {{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}};
    for (size_t i = 0; i < 4 && ms > 0; i++)
        if (ms >= units[i].ms && ms % units[i].ms == 0) {
            snprintf(buf, size, "%lld%s", (long long)(ms / units[i].ms),
                     units[i].unit);
            return;
        }
    snprintf(buf, size, ms ? "%lldms" : "%lld", (long long)ms);
}

static line_t *add_line(ld_eval_t *e, line_kind_t kind, int64_t param,
                        const char *name)
{
    line_t *l = &e->l[e->nl++];
    memset(l, 0, sizeof(*l));
    l->kind = kind;
    l->param = param;
    l->next_ms = INT64_MAX;
    l->eval_from = e->c.from_ms;
    l->eval_to = e->c.to_ms;
    snprintf(l->name, sizeof(l->name), "%s", name);
    l->bucket = calloc(e->nbuckets, sizeof(acc_t));
    if (!l->bucket)
        return NULL;
    if (kind != LINE_CONTINUAL && !(l->sc = ld_scorer_new(e->t)))
        return NULL;
    return l;
}

/* The lines of ec, in report order: frozen checkpoints, the continual
 * model, cadences (0 is the continual line), staleness ages. */
static int build_lines(ld_eval_t *e, const ld_snapshot_t *start, char *errstr,
                       size_t size)
{
    const ld_eval_conf_t *c = &e->c;
    size_t want = c->nfrozen + 1 + c->ncadence + c->nstale;
    e->l = calloc(want, sizeof(*e->l));
    if (!e->l)
        goto nomem;
    char name[64], d[32];
    for (size_t i = 0; i < c->nfrozen; i++) {
        line_t *l = add_line(e, LINE_FROZEN, 0, c->frozen_names[i]);
        if (!l)
            goto nomem;
        char why[256];
        if (ld_scorer_load_snapshot(l->sc, c->frozen[i], why, sizeof(why))) {
            snprintf(errstr, size, "checkpoint %s: %s from the config's model",
                     c->frozen_names[i], why);
            return -1;
        }
    }
    int zero = 0;
    for (size_t i = 0; i < c->ncadence; i++)
        zero |= c->cadence_ms[i] == 0;
    if ((c->continual || zero) &&
        !add_line(e, LINE_CONTINUAL, 0, zero ? "0" : "continual"))
        goto nomem;
    for (size_t i = 0; i < c->ncadence; i++) {
        if (c->cadence_ms[i] == 0)
            continue;
        ld_eval_duration_name(c->cadence_ms[i], d, sizeof(d));
        line_t *l = add_line(e, LINE_CADENCE, c->cadence_ms[i], d);
        if (!l)
            goto nomem;
        l->next_ms = c->from_ms + (c->warmup_ms > 0 ? 0 : c->cadence_ms[i]);
    }
    for (size_t i = 0; i < c->nstale; i++) {
        ld_eval_duration_name(c->stale_ms[i], d, sizeof(d));
        snprintf(name, sizeof(name), "stale %s", d);
        line_t *l = add_line(e, LINE_STALE, c->stale_ms[i], name);
        if (!l)
            goto nomem;
        l->eval_from = c->to_ms - c->eval_window_ms;
        int64_t at = l->eval_from - c->stale_ms[i];
        l->next_ms = at > e->train_from ? at : INT64_MAX;
    }
    /* Every refreshed copy starts as the continual model does. */
    for (size_t i = 0; i < e->nl; i++)
        if (e->l[i].kind >= LINE_CADENCE && start) {
            char why[256];
            if (ld_scorer_load_snapshot(e->l[i].sc, start, why, sizeof(why)))
                return -1; /* the trainer took start: cannot differ */
        }
    return 0;
nomem:
    snprintf(errstr, size, "out of memory for %zu scoring lines", want);
    return -1;
}

static void free_lines(ld_eval_t *e)
{
    for (size_t i = 0; i < e->nl; i++) {
        line_t *l = &e->l[i];
        ld_scorer_destroy(l->sc);
        free(l->bucket);
        free(l->p);
        free(l->y);
        free(l->w);
        free(l->b);
    }
    free(e->l);
}

/* ---- Scoring ------------------------------------------------------------ */

static void acc_add(acc_t *a, float pred, float label, float weight, float loss,
                    float sqerr, int correct)
{
    double wi = weight;
    a->n++;
    a->sw += wi;
    a->sl += wi * loss;
    a->sq += wi * sqerr;
    a->sc += wi * (uint8_t)(correct != 0);
    a->sp += wi * pred;
    a->sy += wi * label;
}

static void keep_score(line_t *l, float p, float y, float w, uint32_t b)
{
    if (l->failed)
        return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 4096;
        float *np = realloc(l->p, cap * sizeof(float));
        if (np)
            l->p = np;
        float *ny = np ? realloc(l->y, cap * sizeof(float)) : NULL;
        if (ny)
            l->y = ny;
        float *nw = ny ? realloc(l->w, cap * sizeof(float)) : NULL;
        if (nw)
            l->w = nw;
        uint32_t *nb = nw ? realloc(l->b, cap * sizeof(uint32_t)) : NULL;
        if (!nb) {
            l->failed = 1;
            return;
        }
        l->b = nb;
        l->cap = cap;
    }
    l->p[l->n] = p;
    l->y[l->n] = y;
    l->w[l->n] = w;
    l->b[l->n++] = b;
}

/* The trainer's score of s as a full score (ld_scored_t has no squared
 * error or correctness: computed as trainer.c's link_and_score does). */
static ld_score_t from_trainer(int model, const ld_scored_t *s)
{
    ld_score_t o = {s->pred, s->loss, 0, 0};
    float y = s->label, p = s->pred;
    if (model == LD_MODEL_LOGISTIC) {
        o.sqerr = (p - y) * (p - y);
        o.correct = (p >= 0.5f) == (y >= 0.5f);
    } else if (model == LD_MODEL_LINEAR) {
        o.sqerr = s->loss;
    } else {
        o.sqerr = (1.0f - p) * (1.0f - p);
        o.correct = s->pred_class == (uint32_t)y;
    }
    return o;
}

/* Per micro-batch: every matured example of the range, scored by every
 * line whose window holds it. Scoring copies score the whole batch at once
 * (ld_scorer_score_batch: bit for bit the champion's scores). */
static void on_scored(void *opaque, const ld_scored_t *s, size_t n)
{
    ld_eval_t *e = opaque;
    if (n > e->ocap) {
        ld_score_t *o = realloc(e->o, n * e->nl * sizeof(*o) + 1);
        if (!o) {
            e->failed = 1;
            return;
        }
        e->o = o;
        e->ocap = n;
    }
    for (size_t k = 0; k < e->nl; k++)
        if (e->l[k].sc &&
            ld_scorer_score_batch(e->l[k].sc, s, n, e->o + k * n) != LD_OK)
            e->failed = 1;
    for (size_t i = 0; i < n; i++) {
        int64_t t = s[i].event_time_ms;
        if (t < e->c.from_ms || t >= e->c.to_ms)
            continue;
        e->cnt.scored++;
        uint32_t b = (uint32_t)((t - e->c.from_ms) / e->c.bucket_ms);
        /* the window pushes 1 as a softmax example's label (p(label)) */
        float y = e->model == LD_MODEL_SOFTMAX ? 1.0f : s[i].label;
        for (size_t k = 0; k < e->nl; k++) {
            line_t *l = &e->l[k];
            if (t < l->eval_from || t >= l->eval_to)
                continue;
            ld_score_t o =
                l->sc ? e->o[k * n + i] : from_trainer(e->model, &s[i]);
            acc_add(&l->all, o.pred, y, s[i].weight, o.loss, o.sqerr,
                    o.correct);
            acc_add(&l->bucket[b], o.pred, y, s[i].weight, o.loss, o.sqerr,
                    o.correct);
            keep_score(l, o.pred, s[i].label, s[i].weight, b);
        }
    }
}

/* ---- Refreshing --------------------------------------------------------- */

/* An example decided at d was released: lines whose boundary it passed
 * are refreshed after the next micro-batch. */
static void mark_due(ld_eval_t *e, int64_t d)
{
    for (size_t i = 0; i < e->nl; i++) {
        line_t *l = &e->l[i];
        if (d < l->next_ms)
            continue;
        l->due = 1;
        if (l->kind == LINE_STALE) {
            l->next_ms = INT64_MAX;
        } else {
            int64_t k = (d - l->next_ms) / l->param + 1;
            l->next_ms += k * l->param;
        }
    }
}

/* Between micro-batches: due lines take the continual model's weights
 * (computed once, copied to the others). */
static void refresh_due(ld_eval_t *e)
{
    const ld_scorer_t *src = NULL;
    for (size_t i = 0; i < e->nl; i++) {
        line_t *l = &e->l[i];
        if (!l->due)
            continue;
        if (src)
            ld_scorer_copy(l->sc, src);
        else
            ld_scorer_load_trainer(l->sc, e->t);
        src = l->sc;
        l->due = 0;
        e->cnt.refreshes++;
    }
}

static ld_err_t train(ld_eval_t *e, const ld_example_t *ex)
{
    ld_err_t err = ld_trainer_add(e->t, ex);
    if (err == LD_ERR_INVAL) {
        e->cnt.refused++;
        return LD_OK;
    }
    if (err)
        return err;
    if (e->failed)
        return LD_ERR_NOMEM;
    e->cnt.trained++;
    ld_trainer_stats_t st;
    ld_trainer_stats(e->t, &st);
    if (st.batches != e->batches) {
        e->batches = st.batches;
        refresh_due(e);
    }
    return LD_OK;
}

/* ---- Lifetime ----------------------------------------------------------- */

ld_eval_t *ld_eval_new(const ld_trainer_conf_t *tc,
                       const ld_labeling_conf_t *lc, const ld_eval_conf_t *ec,
                       char *errstr, size_t errstr_size)
{
    if (ec->to_ms <= ec->from_ms || ec->bucket_ms <= 0 || ec->warmup_ms < 0) {
        snprintf(errstr, errstr_size, "the range is empty or the bucket is 0");
        return NULL;
    }
    if ((ec->to_ms - ec->from_ms - 1) / ec->bucket_ms + 1 > MAX_BUCKETS) {
        snprintf(errstr, errstr_size,
                 "more than %d buckets: choose a wider bucket", MAX_BUCKETS);
        return NULL;
    }
    ld_eval_t *e = calloc(1, sizeof(*e));
    if (!e) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    e->c = *ec;
    e->model = (int)tc->model;
    e->window_ms = lc->window_ms;
    e->train_from = ec->from_ms - ec->warmup_ms;
    e->nbuckets = (size_t)((ec->to_ms - ec->from_ms - 1) / ec->bucket_ms + 1);
    e->j = ld_joiner_new(lc, errstr, errstr_size);
    e->t = e->j ? ld_trainer_new(tc, errstr, errstr_size) : NULL;
    if (!e->t)
        goto err;
    if (ec->start &&
        ld_trainer_restore(e->t, ec->start, errstr, errstr_size) != LD_OK)
        goto err;
    if (build_lines(e, ec->start, errstr, errstr_size))
        goto err;
    ld_trainer_set_scored_cb(e->t, on_scored, e);
    for (size_t i = 0; i < e->nl; i++)
        e->cnt.copies += e->l[i].sc != NULL;
    ld_scorer_t *any = ld_scorer_new(e->t);
    e->cnt.copy_bytes = any ? ld_scorer_bytes(any) : 0;
    ld_scorer_destroy(any);
    /* the copies and the frozen lines' checkpoints are the caller's again */
    e->c.start = NULL;
    e->c.frozen = NULL;
    e->c.frozen_names = NULL;
    e->c.cadence_ms = e->c.stale_ms = NULL;
    return e;
err:
    ld_eval_destroy(e);
    return NULL;
}

void ld_eval_destroy(ld_eval_t *e)
{
    if (!e)
        return;
    free_lines(e);
    free(e->o);
    ld_trainer_destroy(e->t);
    ld_joiner_destroy(e->j);
    free(e);
}

ld_err_t ld_eval_assign(ld_eval_t *e, int32_t partition)
{
    return ld_joiner_assign(e->j, partition);
}

void ld_eval_note_dead(ld_eval_t *e)
{
    e->cnt.records++;
    e->cnt.dead++;
}

/* ---- Feeding ------------------------------------------------------------ */

static ld_err_t joiner_add(ld_eval_t *e, const ld_record_t *rec)
{
    if (rec->kind == LD_RECORD_EVENT)
        return ld_joiner_add_event(e->j, rec->partition, rec->offset, rec->key,
                                   rec->key_len, rec->time_ms, &rec->x);
    if (rec->no_label)
        return ld_joiner_add_nolabel(e->j, rec->partition, rec->offset,
                                     rec->key, rec->key_len, rec->time_ms);
    return ld_joiner_add_label(e->j, rec->partition, rec->offset, rec->key,
                               rec->key_len, rec->time_ms, (float)rec->label);
}

static int in_range(const ld_eval_t *e, int64_t t)
{
    return t >= e->c.from_ms && t < e->c.to_ms;
}

ld_err_t ld_eval_add(ld_eval_t *e, const ld_record_t *rec)
{
    e->cnt.records++;
    int counted = rec->kind == LD_RECORD_EVENT && in_range(e, rec->time_ms);
    ld_err_t err = joiner_add(e, rec);
    if (err) {
        e->cnt.refused++;
    } else if (counted) {
        /* late and duplicate events become no example: tell them apart
         * from the pending ones at the end */
        ld_joiner_stats_t js;
        ld_joiner_stats(e->j, &js);
        uint64_t absorbed = js.events_late + js.events_duplicate;
        if (absorbed != e->absorbed_prev)
            e->cnt.absorbed++;
        else
            e->accepted++;
        e->absorbed_prev = absorbed;
    } else if (rec->kind == LD_RECORD_EVENT) {
        ld_joiner_stats_t js;
        ld_joiner_stats(e->j, &js);
        e->absorbed_prev = js.events_late + js.events_duplicate;
    }
    ld_example_t ex;
    while (ld_joiner_poll(e->j, &ex)) {
        int64_t t = ex.event_time_ms;
        if (in_range(e, t) &&
            (matured(ex.sample_type) || ex.sample_type == LD_SAMPLE_FAKE_NEG))
            e->released_first++;
        if (t < e->train_from || t >= e->c.to_ms)
            continue; /* read for its labels and watermarks only */
        mark_due(e, ld_joiner_decision_time(e->j));
        if ((err = train(e, &ex)))
            return err;
    }
    return LD_OK;
}

int64_t ld_eval_watermark(ld_eval_t *e)
{
    ld_joiner_stats_t js;
    ld_joiner_stats(e->j, &js);
    return js.watermark_ms;
}

int ld_eval_complete(ld_eval_t *e)
{
    /* an event's window closes at e + w; fake_neg and delayed_pos come
     * earlier or belong to the late horizon, which a backtest ignores */
    return ld_eval_watermark(e) > e->c.to_ms + e->window_ms;
}

ld_err_t ld_eval_finish(ld_eval_t *e)
{
    if (e->finished)
        return LD_OK;
    e->finished = 1;
    ld_err_t err = ld_trainer_flush(e->t);
    if (!err && e->failed)
        err = LD_ERR_NOMEM;
    e->cnt.pending =
        e->accepted > e->released_first ? e->accepted - e->released_first : 0;
    return err;
}

void ld_eval_counts(const ld_eval_t *e, ld_eval_counts_t *out)
{
    *out = e->cnt;
}

/* ---- Metrics ------------------------------------------------------------ */

void eval_acc_metrics(const acc_t *a, int model, ld_trainer_metrics_t *m)
{
    /* trainer/metrics.c's ld_window_metrics, from the sums */
    memset(m, 0, sizeof(*m));
    m->examples = a->n;
    m->logloss = m->auc = m->accuracy = m->rmse = NAN;
    m->mean_prediction = m->mean_label = m->calibration = NAN;
    if (a->sw <= 0)
        return;
    m->rmse = sqrt(a->sq / a->sw);
    if (model != LD_MODEL_LINEAR) {
        m->logloss = a->sl / a->sw;
        m->accuracy = a->sc / a->sw;
    }
    if (model != LD_MODEL_SOFTMAX) {
        m->mean_prediction = a->sp / a->sw;
        m->mean_label = a->sy / a->sw;
        m->calibration = a->sy != 0 ? a->sp / a->sy : NAN;
    }
}

double eval_line_auc(const line_t *l)
{
    return l->failed ? NAN : ld_scorer_auc(l->p, l->y, l->w, l->n);
}

int eval_line_bucket_aucs(const line_t *l, size_t nb, double *out)
{
    for (size_t b = 0; b < nb; b++)
        out[b] = NAN;
    if (l->failed)
        return 0;
    /* a counting sort by bucket, then one AUC per slice */
    size_t *at = calloc(nb + 1, sizeof(size_t));
    float *buf = malloc((3 * l->n + 1) * sizeof(float));
    if (!at || !buf) {
        free(at);
        free(buf);
        return -1;
    }
    for (size_t i = 0; i < l->n; i++)
        at[l->b[i] + 1]++;
    for (size_t b = 0; b < nb; b++)
        at[b + 1] += at[b];
    float *p = buf, *y = buf + l->n, *w = buf + 2 * l->n;
    size_t *fill = malloc((nb + 1) * sizeof(size_t));
    if (!fill) {
        free(at);
        free(buf);
        return -1;
    }
    memcpy(fill, at, (nb + 1) * sizeof(size_t));
    for (size_t i = 0; i < l->n; i++) {
        size_t k = fill[l->b[i]]++;
        p[k] = l->p[i];
        y[k] = l->y[i];
        w[k] = l->w[i];
    }
    for (size_t b = 0; b < nb; b++)
        if (at[b + 1] > at[b])
            out[b] = ld_scorer_auc(p + at[b], y + at[b], w + at[b],
                                   at[b + 1] - at[b]);
    free(fill);
    free(at);
    free(buf);
    return 0;
}

const char *ld_eval_line(ld_eval_t *e, size_t i, ld_trainer_metrics_t *out)
{
    if (i >= e->nl)
        return NULL;
    const line_t *l = &e->l[i];
    eval_acc_metrics(&l->all, e->model, out);
    if (e->model == LD_MODEL_LOGISTIC)
        out->auc = eval_line_auc(l);
    return l->name;
}
