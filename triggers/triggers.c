/* SPDX-License-Identifier: Apache-2.0 */
/* The trigger set of one model: windows over matured examples, the four
 * trigger kinds behind one interface, firing policy, the gate, and the
 * resume state. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "triggers/internal.h"

#define STATE_MAGIC   0x4754444cu /* "LDTG" */
#define STATE_VERSION 3u
#define QUEUE_MAX     64
#define NO_TIME       INT64_MIN
/* The detector kinds (time, volume, performance, drift): their policy
 * state is part of the resume state. End of input is not a detector: it
 * fires once, when asked (ld_triggers_end_of_input). */
#define KINDS 4

/* ---- Windows ------------------------------------------------------------ */

/* What one window of matured examples holds. */
typedef struct winset {
    int valid;
    uint64_t index; /* window number since start (seeds the samplers) */
    uint64_t n;
    int64_t t_start, t_end; /* event time of the first, max event time */
    /* Per performance_metric: the live model's prequential loss (every
     * example; what a reference window says the published model learnt to)
     * and the champion's loss (examples it scored). Sums of squares give
     * the z-test its variance. */
    double loss_sum, loss_sq;
    double closs_sum, closs_sq;
    uint64_t closs_n;
    reservoir_t *num; /* nnum numeric features */
    uint64_t *hist;   /* hashed ids per bin, drift_hashed_bins */
    reservoir_t pred; /* the champion's scores (finite ones) */
    reservoir_t label_num;
    spacesaving_t label_cat;
} winset_t;

typedef struct policy_state {
    int64_t last_fire; /* event time, NO_TIME = never */
    uint32_t bad_run;  /* consecutive bad windows */
    uint64_t fired;
} policy_state_t;

/* The result a kind's check hands to the policy. */
typedef struct check {
    ld_trigger_level_t level;
    int64_t win_start, win_end;
    ld_trigger_evidence_t *ev;
    size_t nev, evcap;
    char (*drifted)[NAME_MAX_LEN + 16];
    size_t ndrift, driftcap;
} check_t;

/* One trigger kind behind one interface: observe, check (the should-fire
 * level with its evidence), save/load of the kind's own counters. Window
 * sets and detectors are shared and saved by the trigger set. */
typedef struct kind_ops {
    ld_trigger_type_t type;
    const ld_trigger_policy_t *(*policy)(const ld_triggers_conf_t *c);
    void (*observe)(ld_triggers_t *t, const ld_trigger_obs_t *o);
    /* Called after each example (continuous kinds) or window close
     * (windowed kinds); fills chk. */
    void (*check)(ld_triggers_t *t, check_t *chk);
    int windowed;
} kind_ops_t;

struct ld_triggers {
    ld_triggers_conf_t c; /* strings not owned: names borrowed below */
    char **names;         /* copied drift_feature_names */
    size_t nnames;
    char model[128];
    char topic[256];

    /* Counters. */
    uint64_t examples; /* matured examples fed */
    int64_t now;       /* max event time seen, NO_TIME before any */
    uint64_t champion; /* last published version */
    uint64_t seq;      /* decisions emitted */
    int64_t time_base; /* event time of the time trigger's baseline */
    uint64_t vol_base; /* examples at the volume baseline */
    policy_state_t pol[LD_TRIGGER__COUNT];

    /* Windows. */
    uint32_t nnum; /* numeric features watched (fixed at the first x) */
    int have_nnum;
    winset_t ref, prev, cur;
    uint64_t next_index;

    /* Prediction drift compares the champion's scores with its own scores
     * on an earlier window: the first complete window it scored alone
     * (index >= pref_from), kept in pref once pref_ok. A model that is
     * still learning moves its predictions on unchanged data; a frozen
     * model's scores move only when its inputs do. */
    reservoir_t pref;
    int pref_ok;
    uint64_t pref_index; /* window pref was taken from */
    uint64_t pref_from;  /* first window index that may become pref */

    /* Streaming performance detectors and their level in this window. */
    ld_detector_t *ddm, *adwin, *ph;
    ld_trigger_level_t stream_level;
    ld_trigger_evidence_t stream_ev[3];
    uint8_t stream_have[3];

    /* Gate: the last gate_window examples scored by both models. */
    float *g_chal, *g_champ, *g_label;
    uint64_t g_n, g_head;

    int published_now; /* a PASS at the current example (not state) */

    /* What the enabled kinds read, from the config (not state): windows
     * keep the loss only for performance and the samples and sketches only
     * for drift. A part nobody reads is not fed, so a state written with a
     * kind off holds it empty (loss NaN: performance skips that window if
     * the kind is turned on before it closes). */
    int feed_loss, feed_sketch;
    /* examples % drift_stride and % drift_hashed_stride, kept by counting
     * (not state: derived from examples on load). */
    uint64_t mod_dense, mod_hashed;

    /* Decisions waiting for poll. */
    ld_trigger_decision_t *queue[QUEUE_MAX];
    size_t qlen;

    /* Scratch for drift. */
    double *s_ref, *s_cur;
    double *h_ref, *h_cur; /* drift_hashed_bins each */
};

/* ---- Helpers ------------------------------------------------------------ */

static uint64_t mix_seed(uint64_t seed, uint64_t window, uint64_t feature)
{
    uint64_t s = seed ^ (window * 0x9e3779b97f4a7c15ULL) ^
                 (feature * 0xc2b2ae3d27d4eb4fULL);
    return rng_next(&s);
}

static void feature_name(const ld_triggers_t *t, uint32_t i, char *buf,
                         size_t size)
{
    if (i < t->nnames)
        snprintf(buf, size, "%.*s", NAME_MAX_LEN, t->names[i]);
    else
        snprintf(buf, size, "dense_%u", i);
}

static int sev_of(const ld_trigger_policy_t *p, ld_trigger_level_t lvl)
{
    if (p->severity != LD_TRIGGER_SEV_AUTO)
        return p->severity;
    return lvl == LD_TRIGGER_LEVEL_ALERT  ? LD_TRIGGER_SEV_ALERT
           : lvl == LD_TRIGGER_LEVEL_WARN ? LD_TRIGGER_SEV_WARN
                                          : LD_TRIGGER_SEV_INFO;
}

static ld_trigger_evidence_t *chk_ev(check_t *chk)
{
    if (chk->nev >= chk->evcap)
        return NULL;
    return &chk->ev[chk->nev++];
}

static void chk_drifted(check_t *chk, const char *name)
{
    if (chk->ndrift < chk->driftcap)
        snprintf(chk->drifted[chk->ndrift++], NAME_MAX_LEN + 16, "%s", name);
}

/* ---- Window sets -------------------------------------------------------- */

static void win_free(winset_t *w, uint32_t nnum)
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

static void win_clear(const ld_triggers_t *t, winset_t *w, uint64_t index)
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

static int win_init(const ld_triggers_t *t, winset_t *w)
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
static int win_init_num(const ld_triggers_t *t, winset_t *w)
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

static void win_swap(winset_t *a, winset_t *b)
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

static double metric_of_mean(const ld_triggers_t *t, double mean)
{
    return t->c.perf_metric == LD_TRIGGER_METRIC_RMSE ? sqrt(mean) : mean;
}

static void win_observe(ld_triggers_t *t, winset_t *w,
                        const ld_trigger_obs_t *o)
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

static void win_save(const ld_triggers_t *t, const winset_t *w, ld_wbuf_t *b)
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
static void win_load(const ld_triggers_t *t, winset_t *w, ld_rbuf_t *r,
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

/* ---- Gate -----------------------------------------------------------------
 */

static void gate_observe(ld_triggers_t *t, const ld_trigger_obs_t *o)
{
    if (!isfinite(o->p_champion))
        return;
    uint64_t cap = (uint64_t)t->c.gate_window;
    t->g_chal[t->g_head] = o->p_challenger;
    t->g_champ[t->g_head] = o->p_champion;
    t->g_label[t->g_head] = o->label;
    t->g_head = (t->g_head + 1) % cap;
    if (t->g_n < cap)
        t->g_n++;
}

/* Runs the gate into d (verdict, reason, one evidence item). */
static void gate_run(ld_triggers_t *t, ld_trigger_decision_t *d)
{
    const ld_triggers_conf_t *c = &t->c;
    if (d->action == LD_TRIGGER_ACTION_ALERT) {
        d->verdict = LD_TRIGGER_VERDICT_SKIPPED;
        d->challenger_version = 0;
        snprintf(d->reason, sizeof(d->reason), "alert only");
        return;
    }
    if (t->published_now) {
        /* Another kind published at this very example: one checkpoint per
         * moment; this decision is recorded but publishes nothing new. */
        d->verdict = LD_TRIGGER_VERDICT_SKIPPED;
        d->challenger_version = 0;
        snprintf(d->reason, sizeof(d->reason),
                 "version %llu already published at this example",
                 (unsigned long long)t->champion);
        return;
    }
    d->challenger_version = t->champion + 1;
    if (!c->gate_enabled) {
        d->verdict = LD_TRIGGER_VERDICT_PASS;
        snprintf(d->reason, sizeof(d->reason), "gate disabled");
        return;
    }
    if (t->champion == 0) {
        d->verdict = LD_TRIGGER_VERDICT_PASS;
        snprintf(d->reason, sizeof(d->reason), "no champion yet");
        return;
    }
    /* The ring in chronological order does not matter for these metrics,
     * except AUC ties, which are order-free too. */
    size_t n = (size_t)t->g_n;
    double mc = metric_eval(c->gate_metric, t->g_chal, t->g_label, n);
    double mp = metric_eval(c->gate_metric, t->g_champ, t->g_label, n);
    const char *mn = metric_name(c->gate_metric);
    if ((int64_t)n < c->gate_min_samples || !isfinite(mc) || !isfinite(mp)) {
        d->verdict = LD_TRIGGER_VERDICT_INCONCLUSIVE;
        snprintf(d->reason, sizeof(d->reason),
                 "inconclusive: %zu examples scored by both models, gate "
                 "needs %lld",
                 n, (long long)c->gate_min_samples);
        if (d->nev < d->evcap)
            ev_set(&d->ev[d->nev++], mn, "count", "gate", (double)n,
                   (double)c->gate_min_samples, NAN, NAN, n);
        return;
    }
    double worse = metric_lower_better(c->gate_metric) ? mc - mp : mp - mc;
    if (d->nev < d->evcap)
        ev_set(&d->ev[d->nev++], mn, "gate_delta", "gate", worse,
               c->gate_tolerance, NAN, mp, n);
    if (worse > c->gate_tolerance) {
        d->verdict = LD_TRIGGER_VERDICT_FAIL;
        snprintf(d->reason, sizeof(d->reason),
                 "challenger %s worse by %.6g > tolerance %.6g", mn, worse,
                 c->gate_tolerance);
    } else {
        d->verdict = LD_TRIGGER_VERDICT_PASS;
        snprintf(d->reason, sizeof(d->reason),
                 "challenger %s within tolerance (delta %.6g <= %.6g)", mn,
                 worse, c->gate_tolerance);
    }
}

/* ---- Kinds: time -------------------------------------------------------- */

static const ld_trigger_policy_t *time_policy(const ld_triggers_conf_t *c)
{
    return &c->time;
}

static void time_check(ld_triggers_t *t, check_t *chk)
{
    int64_t elapsed = t->now - t->time_base;
    if (elapsed < t->c.time_every_ms)
        return;
    chk->level = LD_TRIGGER_LEVEL_ALERT;
    chk->win_start = t->time_base;
    chk->win_end = t->now + 1;
    ld_trigger_evidence_t *ev = chk_ev(chk);
    if (ev)
        ev_set(ev, "event_time", "elapsed_ms", "threshold", (double)elapsed,
               (double)t->c.time_every_ms, NAN, NAN, t->examples - t->vol_base);
}

/* ---- Kinds: volume ------------------------------------------------------ */

static const ld_trigger_policy_t *volume_policy(const ld_triggers_conf_t *c)
{
    return &c->volume;
}

/* The volume rules at this example: *abs_rule, *share_rule; returns
 * whether either holds. */
static int volume_rules(const ld_triggers_t *t, uint64_t *fresh_out,
                        double *share_out, int *abs_out)
{
    const ld_triggers_conf_t *c = &t->c;
    uint64_t fresh = t->examples - t->vol_base;
    int abs_rule =
        c->volume_examples > 0 && fresh >= (uint64_t)c->volume_examples;
    double share = t->examples ? (double)fresh / (double)t->examples : 0.0;
    int share_rule = c->volume_share > 0.0 &&
                     fresh >= (uint64_t)c->volume_share_min &&
                     share >= c->volume_share;
    *fresh_out = fresh;
    *share_out = share;
    *abs_out = abs_rule;
    return abs_rule || share_rule;
}

static void volume_check(ld_triggers_t *t, check_t *chk)
{
    const ld_triggers_conf_t *c = &t->c;
    uint64_t fresh;
    double share;
    int abs_rule;
    if (!volume_rules(t, &fresh, &share, &abs_rule))
        return;
    chk->level = LD_TRIGGER_LEVEL_ALERT;
    chk->win_start = t->time_base;
    chk->win_end = t->now + 1;
    ld_trigger_evidence_t *ev = chk_ev(chk);
    if (ev && abs_rule)
        ev_set(ev, "examples", "count", "threshold", (double)fresh,
               (double)c->volume_examples, NAN, NAN, fresh);
    else if (ev)
        ev_set(ev, "examples", "share", "threshold", share, c->volume_share,
               NAN, NAN, fresh);
}

/* ---- Kinds: performance ------------------------------------------------- */

static const ld_trigger_policy_t *perf_policy(const ld_triggers_conf_t *c)
{
    return &c->perf;
}

static void stream_latch(ld_triggers_t *t, int i, ld_detector_t *d,
                         ld_trigger_level_t lvl, const char *metric)
{
    if (lvl == LD_TRIGGER_LEVEL_NONE || lvl < t->stream_level)
        return;
    t->stream_level = lvl;
    ld_detector_evidence(d, &t->stream_ev[i]);
    ev_copy_str(t->stream_ev[i].metric, sizeof(t->stream_ev[i].metric), metric);
    t->stream_have[i] = (uint8_t)lvl;
}

/* Forgets the streaming detectors: a new champion is a new error stream. */
static void stream_reset(ld_triggers_t *t)
{
    ld_detector_reset(t->ddm);
    ld_detector_reset(t->adwin);
    ld_detector_reset(t->ph);
    t->stream_level = LD_TRIGGER_LEVEL_NONE;
    memset(t->stream_have, 0, sizeof(t->stream_have));
    memset(t->stream_ev, 0, sizeof(t->stream_ev));
}

/* The streaming detectors watch the champion, the model deployers serve:
 * its errors and scores are a stationary stream on stationary data. The
 * live model's are not: it is still learning, so its mean prediction and
 * error rate move window after window (issue #14: Page-Hinkley on its mean
 * prediction fired 21 alerts on 1 M stationary examples). They start with
 * the first window the champion scores alone (pref_from, see on_publish). */
static void perf_observe(ld_triggers_t *t, const ld_trigger_obs_t *o)
{
    const ld_triggers_conf_t *c = &t->c;
    if (!isfinite(o->p_champion) || t->cur.index < t->pref_from)
        return;
    double err = (o->p_champion >= 0.5f) != (o->label >= 0.5f);
    /* A 0/1 error needs a binary model; regression (rmse) keeps only the
     * windowed metric and Page-Hinkley. */
    int binary = c->perf_metric != LD_TRIGGER_METRIC_RMSE;
    if (c->perf_ddm && binary)
        stream_latch(t, 0, t->ddm, ld_detector_observe(t->ddm, err), "error");
    if (c->perf_adwin && binary) {
        ld_trigger_level_t l = ld_detector_observe(t->adwin, err);
        /* A falling error rate is good news, not a reason to act. */
        if (l == LD_TRIGGER_LEVEL_ALERT && adwin_last_increase(t->adwin))
            stream_latch(t, 1, t->adwin, l, "error");
    }
    if (c->perf_ph)
        stream_latch(t, 2, t->ph, ld_detector_observe(t->ph, o->p_champion),
                     "prediction");
}

/* The windowed test: the champion's metric on the window that just closed
 * against what the live model reached on the reference window, the data
 * the champion was trained on (its prequential loss there: scored before
 * training, so an honest estimate of the published model, slightly
 * pessimistic as the model was still improving). The champion's own
 * scores are the current side: a frozen model's loss moves only when the
 * data does. A window counts when it is performance_margin worse AND the
 * worsening is significant at performance_alpha (one-sided z-test on the
 * mean per-example loss): 10 000 examples of logloss near 0.45 have a
 * standard error near 1.3 %, so the margin alone is crossed by noise
 * about once in 200 windows. */
static void perf_windowed(ld_triggers_t *t, check_t *chk,
                          ld_trigger_level_t *lvl)
{
    const ld_triggers_conf_t *c = &t->c;
    const winset_t *r = &t->ref, *w = &t->prev;
    /* Only windows the champion scored alone (not the rest of the deciding
     * micro-batch), and not a window whose loss is unknown. */
    if (!r->valid || r->n < 2 || w->index < t->pref_from || w->closs_n < 2 ||
        !isfinite(r->loss_sum) || !isfinite(w->closs_sum))
        return;
    double nr = (double)r->n, nc = (double)w->closs_n;
    double lr = r->loss_sum / nr, lc = w->closs_sum / nc;
    double vr = fmax(r->loss_sq / nr - lr * lr, 0.0) * nr / (nr - 1.0);
    double vc = fmax(w->closs_sq / nc - lc * lc, 0.0) * nc / (nc - 1.0);
    double se = sqrt(vr / nr + vc / nc);
    double p = se > 0.0 ? 0.5 * erfc((lc - lr) / se / sqrt(2.0))
                        : (lc > lr ? 0.0 : 1.0);
    double mr = metric_of_mean(t, lr), mc = metric_of_mean(t, lc);
    double rel = mr > 0.0 ? (mc - mr) / mr : (mc > 0.0 ? 1e9 : 0.0);
    if (p < c->perf_alpha) {
        if (rel >= c->perf_margin)
            *lvl = LD_TRIGGER_LEVEL_ALERT;
        else if (rel >= 0.5 * c->perf_margin)
            *lvl = LD_TRIGGER_LEVEL_WARN;
    }
    ld_trigger_evidence_t *ev = chk_ev(chk);
    if (ev)
        ev_set(ev, metric_name(c->perf_metric), "relative_change", "z_test",
               rel, c->perf_margin, p, mr, w->closs_n);
}

static void perf_check(ld_triggers_t *t, check_t *chk)
{
    const ld_triggers_conf_t *c = &t->c;
    const winset_t *w = &t->prev; /* the window that just closed */
    chk->win_start = w->t_start;
    chk->win_end = w->t_end + 1;
    ld_trigger_level_t lvl = LD_TRIGGER_LEVEL_NONE;
    (void)c;
    perf_windowed(t, chk, &lvl);
    for (int i = 0; i < 3; i++) {
        if (!t->stream_have[i])
            continue;
        ld_trigger_evidence_t *ev = chk_ev(chk);
        if (ev)
            *ev = t->stream_ev[i];
    }
    /* The streaming detectors place a change inside the window and say
     * so in the evidence; alone they make a warning. Each has a false-alarm
     * rate of its own on a stationary stream, even watching the champion
     * (1 M examples of the test_triggers stationary stream, champion
     * replaced every 60 000: DDM 8, ADWIN and Page-Hinkley about one
     * between them), and every alarm that publishes is a deployment. The
     * windowed test is the one whose rate is set (performance_alpha);
     * performance_fire_on: warn lets the detectors fire on their own. */
    if (t->stream_level > LD_TRIGGER_LEVEL_NONE && lvl < LD_TRIGGER_LEVEL_WARN)
        lvl = LD_TRIGGER_LEVEL_WARN;
    chk->level = lvl;
}

/* ---- Kinds: drift ------------------------------------------------------- */

static const ld_trigger_policy_t *drift_policy(const ld_triggers_conf_t *c)
{
    return &c->drift;
}

/* Tests one numeric sample pair; returns 2 drifted, 1 warn, 0 none, -1
 * untested. The deciding statistic goes to *dec, PSI to *psi_ev. */
static int drift_numeric(ld_triggers_t *t, const reservoir_t *ref,
                         const reservoir_t *cur, double bonf_level,
                         const char *metric, ld_trigger_evidence_t *dec,
                         ld_trigger_evidence_t *psi_ev)
{
    const ld_triggers_conf_t *c = &t->c;
    uint32_t nr = res_size(ref), nc = res_size(cur);
    if (nr == 0 || nc == 0)
        return -1;
    res_copy(ref, t->s_ref);
    res_copy(cur, t->s_cur);
    /* Closed windows hold sorted samples (win_seal). */
    double psi = stat_psi_sorted(t->s_ref, nr, t->s_cur, nc,
                                 (size_t)c->drift_psi_bins, 1e-4);
    ev_set(psi_ev, metric, "psi", "threshold", psi, c->drift_psi_alert, NAN,
           NAN, cur->n);
    int drifted = 0;
    switch (c->drift_numeric_test) {
    case LD_TRIGGER_TEST_KS: {
        double d = 0.0, p = 1.0;
        d = stat_ks_sorted(t->s_ref, nr, t->s_cur, nc, &p);
        ev_set(dec, metric, "ks", "bonferroni", d, bonf_level, p, NAN, nc);
        /* Significant AND large enough, as for categoricals: a KS p-value
         * alone, at alpha / m per window, calls about one window in 150
         * drifted on a stationary stream (issue #14); the PSI of sampling
         * noise, ~(bins - 1)(1/n1 + 1/n2), is a fifth of drift_psi_warn
         * at 1 024 values a side. */
        drifted = p < bonf_level && psi >= c->drift_psi_warn;
        break;
    }
    case LD_TRIGGER_TEST_WASSERSTEIN: {
        double w = stat_wasserstein_sorted(t->s_ref, nr, t->s_cur, nc);
        double mean = 0.0, m2 = 0.0;
        for (uint32_t i = 0; i < nr; i++)
            mean += t->s_ref[i];
        mean /= nr;
        for (uint32_t i = 0; i < nr; i++)
            m2 += (t->s_ref[i] - mean) * (t->s_ref[i] - mean);
        double sd = sqrt(m2 / nr);
        /* A constant reference: any movement is measured unnormalised. */
        double wn = sd > 0.0 ? w / sd : w;
        ev_set(dec, metric, "wasserstein", "threshold", wn,
               c->drift_wasserstein, NAN, NAN, nc);
        drifted = wn >= c->drift_wasserstein;
        break;
    }
    default:
        *dec = *psi_ev;
        drifted = psi >= c->drift_psi_alert;
        break;
    }
    if (!isfinite(psi))
        psi = 0.0;
    return drifted ? 2 : psi >= c->drift_psi_warn ? 1 : 0;
}

/* Expected count below which categorical bins are pooled (the usual
 * validity rule of chi-square tests). */
#define CAT_MIN_EXPECTED 5.0

/* Decides a categorical feature from its test: drifted (2) when the G-test
 * is significant at the Bonferroni level AND the JS distance beyond the
 * sampling-noise floor reaches drift_js; 0 otherwise. The significance
 * test alone would call any tiny shift drift on big samples, the distance
 * alone would call the noise of a long flat tail drift on small ones. *dec
 * gets the distance, *aux the G-test. */
static int drift_cat_decide(ld_triggers_t *t, const ld_triggers_cat_test_t *r,
                            double bonf_level, const char *metric, uint64_t n,
                            ld_trigger_evidence_t *dec,
                            ld_trigger_evidence_t *aux)
{
    ev_set(dec, metric, "js", "noise_floor", r->js_excess, t->c.drift_js,
           r->p_value, NAN, n);
    ev_set(aux, metric, "g", "bonferroni", r->g, bonf_level, r->p_value, NAN,
           n);
    return r->p_value < bonf_level && r->js_excess >= t->c.drift_js ? 2 : 0;
}

/* The hashed ids: a histogram over drift_hashed_bins fixed bins, so both
 * windows are counted exactly over the same partition. Returns -1 when
 * either window saw no ids. */
static int drift_hashed_check(ld_triggers_t *t, const uint64_t *ref,
                              const uint64_t *cur, double bonf_level,
                              ld_trigger_evidence_t *dec,
                              ld_trigger_evidence_t *aux)
{
    size_t nbins = (size_t)t->c.drift_hashed_bins;
    uint64_t n = 0;
    for (size_t i = 0; i < nbins; i++) {
        t->h_ref[i] = (double)ref[i];
        t->h_cur[i] = (double)cur[i];
        n += cur[i];
    }
    ld_triggers_cat_test_t r;
    if (ld_triggers_stat_cat_test(t->h_ref, t->h_cur, nbins, CAT_MIN_EXPECTED,
                                  &r) != LD_OK)
        return -1;
    return drift_cat_decide(t, &r, bonf_level, "feature:hashed", n, dec, aux);
}

static int drift_label_cat(ld_triggers_t *t, const spacesaving_t *ref,
                           const spacesaving_t *cur, double bonf_level,
                           ld_trigger_evidence_t *dec,
                           ld_trigger_evidence_t *aux)
{
    ld_triggers_cat_test_t r;
    if (ss_cat_test(ref, cur, CAT_MIN_EXPECTED, &r) != LD_OK)
        return -1;
    return drift_cat_decide(t, &r, bonf_level, "label", cur->n, dec, aux);
}

static void drift_check(ld_triggers_t *t, check_t *chk)
{
    const ld_triggers_conf_t *c = &t->c;
    const winset_t *r = &t->ref, *w = &t->prev;
    chk->win_start = w->t_start;
    chk->win_end = w->t_end + 1;
    if (!r->valid)
        return;
    /* Every test with a p-value shares drift_alpha: the numeric features,
     * the hashed ids, the prediction and the label. */
    uint32_t ntests = t->nnum + (c->drift_hashed ? 1 : 0) + 2;
    double bonf = c->drift_alpha / (double)ntests;
    /* Results: numeric features, hashed, prediction, label. */
    uint32_t nres = t->nnum + 3;
    int *res = calloc(nres, sizeof(*res));
    ld_trigger_evidence_t *dec = calloc(nres, sizeof(*dec));
    ld_trigger_evidence_t *aux = calloc(nres, sizeof(*aux));
    if (!res || !dec || !aux) {
        /* Out of memory: skip this window's drift check rather than guess. */
        ld_log(LD_LOG_ERR, "triggers",
               "msg=\"drift check skipped: no memory\"");
        goto out;
    }
    char name[NAME_MAX_LEN + 16], metric[NAME_MAX_LEN + 24];
    for (uint32_t i = 0; i < t->nnum; i++) {
        feature_name(t, i, name, sizeof(name));
        snprintf(metric, sizeof(metric), "feature:%s", name);
        res[i] = drift_numeric(t, &r->num[i], &w->num[i], bonf, metric, &dec[i],
                               &aux[i]);
    }
    res[t->nnum] = c->drift_hashed
                       ? drift_hashed_check(t, r->hist, w->hist, bonf,
                                            &dec[t->nnum], &aux[t->nnum])
                       : -1;
    /* The champion's scores against its own reference window (not the one
     * that supplied pref: that is the reference itself). */
    res[t->nnum + 1] =
        t->pref_ok && w->index != t->pref_index
            ? drift_numeric(t, &t->pref, &w->pred, bonf, "prediction",
                            &dec[t->nnum + 1], &aux[t->nnum + 1])
            : -1;
    res[t->nnum + 2] =
        c->drift_label_categorical
            ? drift_label_cat(t, &r->label_cat, &w->label_cat, bonf,
                              &dec[t->nnum + 2], &aux[t->nnum + 2])
            : drift_numeric(t, &r->label_num, &w->label_num, bonf, "label",
                            &dec[t->nnum + 2], &aux[t->nnum + 2]);

    uint32_t tested = 0, drifted = 0, warned = 0;
    for (uint32_t i = 0; i <= t->nnum; i++) {
        tested += res[i] >= 0;
        drifted += res[i] == 2;
        warned += res[i] == 1;
    }
    double share = tested ? (double)drifted / (double)tested : 0.0;
    int pred_label = res[t->nnum + 1] == 2 || res[t->nnum + 2] == 2;
    ld_trigger_level_t lvl = LD_TRIGGER_LEVEL_NONE;
    if ((drifted > 0 && share >= c->drift_min_share) || pred_label)
        lvl = LD_TRIGGER_LEVEL_ALERT;
    else if (drifted > 0 || warned > 0 || res[t->nnum + 1] == 1 ||
             res[t->nnum + 2] == 1)
        lvl = LD_TRIGGER_LEVEL_WARN;
    chk->level = lvl;
    if (ld_log_debug_on("triggers")) {
        /* Per window, what the drift tests saw (value, p-value; NaN when
         * untested). */
        const ld_trigger_evidence_t *h = &dec[t->nnum], *p = &dec[t->nnum + 1],
                                    *l = &dec[t->nnum + 2];
        ld_log(LD_LOG_DEBUG, "triggers",
               "msg=\"drift window\" window=%llu examples=%llu level=%d "
               "tested=%u drifted=%u warned=%u hashed_js=%.4g hashed_p=%.3g "
               "prediction_%s=%.4g prediction_p=%.3g label_%s=%.4g "
               "label_p=%.3g",
               (unsigned long long)w->index, (unsigned long long)t->examples,
               (int)lvl, tested, drifted, warned,
               res[t->nnum] >= 0 ? h->value : NAN,
               res[t->nnum] >= 0 ? h->p_value : NAN,
               p->statistic[0] ? p->statistic : "stat",
               res[t->nnum + 1] >= 0 ? p->value : NAN,
               res[t->nnum + 1] >= 0 ? p->p_value : NAN,
               l->statistic[0] ? l->statistic : "stat",
               res[t->nnum + 2] >= 0 ? l->value : NAN,
               res[t->nnum + 2] >= 0 ? l->p_value : NAN);
    }
    if (lvl == LD_TRIGGER_LEVEL_NONE)
        goto out;

    ld_trigger_evidence_t *ev = chk_ev(chk);
    if (ev)
        ev_set(ev, "features", "share", "share", share, c->drift_min_share, NAN,
               NAN, w->n);
    /* Drifted first (they explain the decision), then warnings; each with
     * its deciding statistic and a second one: the PSI of a numeric, the
     * G-test of a categorical. */
    for (int pass = 2; pass >= 1; pass--)
        for (uint32_t i = 0; i < nres; i++) {
            if (res[i] != pass)
                continue;
            if (pass == 2) {
                const char *m = dec[i].metric;
                chk_drifted(chk, strncmp(m, "feature:", 8) == 0 ? m + 8 : m);
            }
            if ((ev = chk_ev(chk)))
                *ev = dec[i];
            if (strcmp(dec[i].statistic, aux[i].statistic) != 0 &&
                aux[i].metric[0] && (ev = chk_ev(chk)))
                *ev = aux[i];
        }
out:
    free(res);
    free(dec);
    free(aux);
}

/* In the order their policies run: when two kinds fire on the same example
 * the first one publishes (drift names the most specific cause). */
static const kind_ops_t kinds[KINDS] = {
    {LD_TRIGGER_DRIFT, drift_policy, NULL, drift_check, 1},
    {LD_TRIGGER_PERFORMANCE, perf_policy, perf_observe, perf_check, 1},
    {LD_TRIGGER_VOLUME, volume_policy, NULL, volume_check, 0},
    {LD_TRIGGER_TIME, time_policy, NULL, time_check, 0},
};

/* ---- End of input ------------------------------------------------------- */

/* The last checkpoint of a backfill: published like a trigger's, through
 * the gate, with an event of its own. Always on, info, publish. */
static const ld_trigger_policy_t end_policy_conf = {
    .enabled = 1,
    .consecutive = 1,
    .action = LD_TRIGGER_ACTION_PUBLISH,
    .severity = LD_TRIGGER_SEV_INFO,
    .fire_on = 1,
};

static const ld_trigger_policy_t *end_policy(const ld_triggers_conf_t *c)
{
    (void)c;
    return &end_policy_conf;
}

static const kind_ops_t end_kind = {LD_TRIGGER_END_OF_INPUT, end_policy, NULL,
                                    NULL, 0};

/* ---- Lifecycle ---------------------------------------------------------- */

static int set_err(char *errstr, size_t size, const char *msg)
{
    if (errstr && size)
        snprintf(errstr, size, "%s", msg);
    return -1;
}

ld_triggers_t *ld_triggers_new(const ld_triggers_conf_t *conf,
                               const char *model_name,
                               const char *checkpoint_topic,
                               uint64_t champion_version, char *errstr,
                               size_t errstr_size)
{
    if (!conf || !model_name || !*model_name || !checkpoint_topic ||
        !*checkpoint_topic) {
        set_err(errstr, errstr_size,
                "triggers: model name and checkpoint topic are required");
        return NULL;
    }
    if (conf->window_size < 1 || conf->drift_sample_size < 2 ||
        conf->drift_sample_size > (1 << 24) || conf->drift_topk < 2 ||
        conf->drift_topk > (1 << 20) || conf->gate_window < 1 ||
        conf->drift_psi_bins < 2 || conf->drift_psi_bins > 1000 ||
        conf->drift_max_features < 0 || conf->evidence_max < 2 ||
        conf->drift_stride < 1 || conf->drift_hashed_stride < 1 ||
        conf->drift_hashed_bins < 2 || conf->drift_hashed_bins > (1 << 16) ||
        conf->perf_metric == LD_TRIGGER_METRIC_AUC) {
        set_err(errstr, errstr_size, "triggers: config value out of range");
        return NULL;
    }
    if (strlen(model_name) >= 100 || strlen(checkpoint_topic) >= 250) {
        set_err(errstr, errstr_size, "triggers: model or topic name too long");
        return NULL;
    }
    ld_triggers_t *t = calloc(1, sizeof(*t));
    if (!t)
        goto nomem;
    t->c = *conf;
    t->c.drift_feature_names.v = NULL;
    t->c.drift_feature_names.n = 0;
    snprintf(t->model, sizeof(t->model), "%s", model_name);
    snprintf(t->topic, sizeof(t->topic), "%s", checkpoint_topic);
    if (conf->drift_feature_names.n) {
        t->names = calloc(conf->drift_feature_names.n, sizeof(*t->names));
        if (!t->names)
            goto nomem;
        t->nnames = conf->drift_feature_names.n;
        for (size_t i = 0; i < t->nnames; i++)
            if (!(t->names[i] = strdup(conf->drift_feature_names.v[i])))
                goto nomem;
    }
    t->now = NO_TIME;
    t->time_base = NO_TIME;
    t->champion = champion_version;
    t->feed_loss = conf->perf.enabled;
    t->feed_sketch = conf->drift.enabled;
    for (int k = 0; k < KINDS; k++)
        t->pol[k].last_fire = NO_TIME;
    if (win_init(t, &t->ref) || win_init(t, &t->prev) || win_init(t, &t->cur))
        goto nomem;
    win_clear(t, &t->ref, 0);
    win_clear(t, &t->prev, 0);
    win_clear(t, &t->cur, 0);
    t->next_index = 1;
    t->ddm = ld_detector_ddm_new(conf->perf_ddm_warn, conf->perf_ddm_drift,
                                 conf->perf_ddm_min);
    t->adwin = ld_detector_adwin_new(conf->perf_adwin_delta);
    t->ph = ld_detector_ph_new(conf->perf_ph_delta, conf->perf_ph_lambda,
                               conf->perf_ph_alpha);
    size_t gw = (size_t)conf->gate_window;
    t->g_chal = calloc(gw, sizeof(float));
    t->g_champ = calloc(gw, sizeof(float));
    t->g_label = calloc(gw, sizeof(float));
    t->s_ref = calloc((size_t)conf->drift_sample_size, sizeof(double));
    t->s_cur = calloc((size_t)conf->drift_sample_size, sizeof(double));
    t->h_ref = calloc((size_t)conf->drift_hashed_bins, sizeof(double));
    t->h_cur = calloc((size_t)conf->drift_hashed_bins, sizeof(double));
    if (!t->ddm || !t->adwin || !t->ph || !t->g_chal || !t->g_champ ||
        !t->g_label || !t->s_ref || !t->s_cur || !t->h_ref || !t->h_cur ||
        res_init(&t->pref, (uint32_t)conf->drift_sample_size, 0))
        goto nomem;
    return t;
nomem:
    set_err(errstr, errstr_size, "triggers: out of memory");
    ld_triggers_destroy(t);
    return NULL;
}

void ld_trigger_decision_destroy(ld_trigger_decision_t *d)
{
    if (!d)
        return;
    free(d->ev);
    free(d->drifted);
    free(d);
}

void ld_triggers_destroy(ld_triggers_t *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nnames; i++)
        free(t->names[i]);
    free(t->names);
    win_free(&t->ref, t->nnum);
    win_free(&t->prev, t->nnum);
    win_free(&t->cur, t->nnum);
    ld_detector_destroy(t->ddm);
    ld_detector_destroy(t->adwin);
    ld_detector_destroy(t->ph);
    free(t->g_chal);
    free(t->g_champ);
    free(t->g_label);
    free(t->s_ref);
    free(t->s_cur);
    free(t->h_ref);
    free(t->h_cur);
    res_free(&t->pref);
    for (size_t i = 0; i < t->qlen; i++)
        ld_trigger_decision_destroy(t->queue[i]);
    free(t);
}

/* ---- Firing ------------------------------------------------------------- */

static ld_trigger_decision_t *decision_alloc(size_t evcap, size_t driftcap)
{
    ld_trigger_decision_t *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->evcap = evcap;
    d->ev = calloc(evcap ? evcap : 1, sizeof(*d->ev));
    d->drifted = calloc(driftcap ? driftcap : 1, sizeof(*d->drifted));
    if (!d->ev || !d->drifted) {
        ld_trigger_decision_destroy(d);
        return NULL;
    }
    return d;
}

/* After a PASS: the challenger is the champion. Baselines restart and the
 * references become the last complete window, the data the new champion
 * was trained on. */
static void on_publish(ld_triggers_t *t, uint64_t version)
{
    t->champion = version;
    t->time_base = t->now;
    t->vol_base = t->examples;
    /* The new champion scores from the micro-batch after the one holding
     * this example: the window now open still has the old champion's
     * scores, the next one is the first the new champion scores alone. */
    t->pref_ok = 0;
    t->pref_from = t->cur.index + 1;
    stream_reset(t);
    if (t->prev.valid) {
        win_swap(&t->ref, &t->prev);
        win_clear(t, &t->prev, t->next_index++);
    }
}

static ld_err_t fire(ld_triggers_t *t, const kind_ops_t *k, check_t *chk)
{
    const ld_trigger_policy_t *p = k->policy(&t->c);
    ld_trigger_decision_t *d = decision_alloc(chk->evcap, chk->ndrift);
    if (!d)
        return LD_ERR_NOMEM;
    d->type = k->type;
    d->severity = sev_of(p, chk->level);
    d->action = (ld_trigger_action_t)p->action;
    d->event_time = t->now;
    d->win_start = chk->win_start;
    d->win_end = chk->win_end;
    d->watermark = NO_TIME;
    d->champion_version = t->champion;
    snprintf(d->model, sizeof(d->model), "%s", t->model);
    snprintf(d->topic, sizeof(d->topic), "%s", t->topic);
    /* Keep one evidence slot for the gate. */
    size_t keep = chk->nev < d->evcap - 1 ? chk->nev : d->evcap - 1;
    memcpy(d->ev, chk->ev, keep * sizeof(*d->ev));
    d->nev = keep;
    d->ndrift = chk->ndrift;
    if (chk->ndrift)
        memcpy(d->drifted, chk->drifted, chk->ndrift * sizeof(*d->drifted));
    gate_run(t, d);
    t->seq++;
    snprintf(d->id, sizeof(d->id), "%s-%s-%06llu", t->model,
             ld_trigger_type_name(d->type), (unsigned long long)t->seq);
    snprintf(d->key, sizeof(d->key), "%s/%s/%lld/%llu", t->model,
             ld_trigger_type_name(d->type), (long long)d->win_end,
             (unsigned long long)d->challenger_version);
    if (t->qlen == QUEUE_MAX) {
        ld_log(LD_LOG_WARN, "triggers",
               "msg=\"decision queue full, oldest dropped\" id=%s",
               t->queue[0]->id);
        ld_trigger_decision_destroy(t->queue[0]);
        memmove(&t->queue[0], &t->queue[1],
                (QUEUE_MAX - 1) * sizeof(t->queue[0]));
        t->qlen--;
    }
    t->queue[t->qlen++] = d;

    policy_state_t *ps = &t->pol[k->type];
    ps->last_fire = t->now;
    ps->bad_run = 0;
    ps->fired++;
    /* Continuous kinds restart their baseline on every attempt, so a FAIL
     * waits a full period instead of refiring on the next example. */
    if (k->type == LD_TRIGGER_TIME)
        t->time_base = t->now;
    if (k->type == LD_TRIGGER_VOLUME)
        t->vol_base = t->examples;
    if (d->verdict == LD_TRIGGER_VERDICT_PASS) {
        on_publish(t, d->challenger_version);
        t->published_now = 1;
    }
    ld_log(LD_LOG_INFO, "triggers",
           "msg=\"trigger fired\" id=%s type=%s verdict=%s key=%s", d->id,
           ld_trigger_type_name(d->type), ld_trigger_verdict_name(d->verdict),
           d->key);
    return LD_OK;
}

/* Applies a kind's policy (k consecutive windows, cooldown) to its check
 * and fires when it says so. */
static ld_err_t apply_policy(ld_triggers_t *t, const kind_ops_t *k,
                             check_t *chk)
{
    const ld_trigger_policy_t *p = k->policy(&t->c);
    policy_state_t *ps = &t->pol[k->type];
    if (!k->windowed) {
        if (chk->level == LD_TRIGGER_LEVEL_NONE)
            return LD_OK;
    } else {
        ld_trigger_level_t need =
            p->fire_on ? LD_TRIGGER_LEVEL_ALERT : LD_TRIGGER_LEVEL_WARN;
        if (chk->level < need) {
            ps->bad_run = 0;
            return LD_OK;
        }
        ps->bad_run++;
        if ((int64_t)ps->bad_run < (p->consecutive > 1 ? p->consecutive : 1))
            return LD_OK;
    }
    if (ps->last_fire != NO_TIME && t->now - ps->last_fire < p->cooldown_ms)
        return LD_OK;
    return fire(t, k, chk);
}

/* Checks every enabled kind of one class (continuous or windowed) first and
 * only then applies the policies, so a publication by one kind cannot move
 * the reference another kind is being compared with. */
static ld_err_t evaluate_all(ld_triggers_t *t, int windowed)
{
    check_t chk[KINDS];
    ld_trigger_evidence_t small[KINDS][4];
    size_t evcap = (size_t)t->c.evidence_max;
    ld_err_t err = LD_OK;
    memset(chk, 0, sizeof(chk));
    if (t->now == NO_TIME)
        return LD_OK;
    for (int i = 0; i < KINDS; i++) {
        const kind_ops_t *k = &kinds[i];
        if (k->windowed != windowed || !k->policy(&t->c)->enabled)
            continue;
        if (windowed) {
            chk[i].ev = calloc(evcap, sizeof(*chk[i].ev));
            chk[i].evcap = evcap;
            chk[i].driftcap = (size_t)t->nnum + 3;
            chk[i].drifted = calloc(chk[i].driftcap, sizeof(*chk[i].drifted));
            if (!chk[i].ev || !chk[i].drifted) {
                err = LD_ERR_NOMEM;
                goto out;
            }
        } else {
            chk[i].ev = small[i];
            chk[i].evcap = 4;
        }
        k->check(t, &chk[i]);
    }
    for (int i = 0; i < KINDS && !err; i++)
        if (chk[i].ev)
            err = apply_policy(t, &kinds[i], &chk[i]);
out:
    if (windowed)
        for (int i = 0; i < KINDS; i++) {
            free(chk[i].ev);
            free(chk[i].drifted);
        }
    return err;
}

/* A closed window takes no more values: sort its samples once, so every
 * later comparison (a reference is compared many times) skips the sort. */
static void win_seal(ld_triggers_t *t, winset_t *w)
{
    w->valid = 1;
    if (!t->feed_sketch)
        return;
    for (uint32_t i = 0; i < t->nnum; i++)
        res_sort(&w->num[i]);
    res_sort(&w->pred);
    res_sort(&w->label_num);
}

static ld_err_t close_window(ld_triggers_t *t)
{
    ld_err_t err = LD_OK;
    win_seal(t, &t->cur);
    if (!t->pref_ok && t->cur.index >= t->pref_from &&
        res_size(&t->cur.pred) > 0) {
        res_assign(&t->pref, &t->cur.pred);
        t->pref_ok = 1;
        t->pref_index = t->cur.index;
    }
    if (!t->ref.valid || !t->champion) {
        /* The reference is the data the champion was trained on: until a
         * first version is published, the newest complete window (a model
         * learning from scratch moves its own predictions; that is no
         * drift of the data). */
        win_swap(&t->ref, &t->cur);
        win_clear(t, &t->cur, t->next_index++);
        goto reset_stream;
    }
    win_swap(&t->prev, &t->cur);
    win_clear(t, &t->cur, t->next_index++);
    err = evaluate_all(t, 1);
reset_stream:
    t->stream_level = LD_TRIGGER_LEVEL_NONE;
    memset(t->stream_have, 0, sizeof(t->stream_have));
    memset(t->stream_ev, 0, sizeof(t->stream_ev));
    return err;
}

/* examples % the two drift strides, by counting instead of dividing. */
static void set_mods(ld_triggers_t *t)
{
    if (++t->mod_dense == (uint64_t)t->c.drift_stride)
        t->mod_dense = 0;
    if (++t->mod_hashed == (uint64_t)t->c.drift_hashed_stride)
        t->mod_hashed = 0;
}

/* Whether a continuous kind (time, volume) would see a level above NONE
 * now: the same tests as time_check and volume_check, without building
 * their checks on every example. When it is false evaluate_all(t, 0) would
 * do nothing. */
static int continuous_due(const ld_triggers_t *t)
{
    const ld_triggers_conf_t *c = &t->c;
    if (t->now == NO_TIME)
        return 0;
    if (c->time.enabled && t->now - t->time_base >= c->time_every_ms)
        return 1;
    if (c->volume.enabled) {
        uint64_t fresh;
        double share;
        int abs_rule;
        return volume_rules(t, &fresh, &share, &abs_rule);
    }
    return 0;
}

static int ensure_nnum(ld_triggers_t *t, const ld_trigger_obs_t *o)
{
    if (t->have_nnum || !o->x)
        return 0;
    uint32_t n = o->x->ndense;
    if ((int64_t)n > t->c.drift_max_features)
        n = (uint32_t)t->c.drift_max_features;
    t->nnum = n;
    if (win_init_num(t, &t->ref) || win_init_num(t, &t->prev) ||
        win_init_num(t, &t->cur)) {
        win_free(&t->ref, n);
        win_free(&t->prev, n);
        win_free(&t->cur, n);
        t->nnum = 0;
        return -1;
    }
    t->have_nnum = 1;
    return 0;
}

ld_err_t ld_triggers_observe_obs(ld_triggers_t *t, const ld_trigger_obs_t *o)
{
    if (o->sample_type != LD_SAMPLE_POS &&
        o->sample_type != LD_SAMPLE_DEFAULT_NEG)
        return LD_OK;
    if (!isfinite(o->p_challenger) || !isfinite(o->label))
        return LD_OK;
    if (ensure_nnum(t, o))
        return LD_ERR_NOMEM;
    t->published_now = 0;
    /* Features arriving only later (x NULL at first) stay unwatched: the
     * window layout is fixed once, for a stable resume state. */
    t->examples++;
    set_mods(t);
    if (t->now == NO_TIME || o->event_time_ms > t->now)
        t->now = o->event_time_ms;
    if (t->time_base == NO_TIME)
        t->time_base = o->event_time_ms;
    gate_observe(t, o);
    win_observe(t, &t->cur, o);
    ld_err_t err = LD_OK;
    for (int k = 0; k < KINDS; k++)
        if (kinds[k].observe && kinds[k].policy(&t->c)->enabled)
            kinds[k].observe(t, o);
    if ((int64_t)t->cur.n >= t->c.window_size)
        err = close_window(t);
    if (!err && continuous_due(t))
        err = evaluate_all(t, 0);
    return err;
}

ld_err_t ld_triggers_observe(ld_triggers_t *t, const ld_example_t *ex,
                             float p_challenger, float p_champion)
{
    ld_trigger_obs_t o = {
        .x = &ex->x,
        .label = ex->label,
        .weight = ex->weight,
        .sample_type = ex->sample_type,
        .event_time_ms = ex->event_time_ms,
        .p_challenger = p_challenger,
        .p_champion = p_champion,
    };
    return ld_triggers_observe_obs(t, &o);
}

ld_trigger_decision_t *ld_triggers_poll(ld_triggers_t *t, int64_t watermark)
{
    if (t->qlen == 0)
        return NULL;
    ld_trigger_decision_t *d = t->queue[0];
    memmove(&t->queue[0], &t->queue[1], (t->qlen - 1) * sizeof(t->queue[0]));
    t->qlen--;
    d->watermark = watermark;
    return d;
}

uint64_t ld_triggers_champion_version(const ld_triggers_t *t)
{
    return t->champion;
}

size_t ld_triggers_pending(const ld_triggers_t *t)
{
    return t->qlen;
}

ld_err_t ld_triggers_end_of_input(ld_triggers_t *t)
{
    ld_trigger_evidence_t ev[4];
    check_t chk = {.level = LD_TRIGGER_LEVEL_ALERT, .ev = ev, .evcap = 4};
    /* A moment of its own, after the last example's decisions. */
    t->published_now = 0;
    uint64_t fresh = t->examples - t->vol_base;
    chk.win_start = t->time_base == NO_TIME ? 0 : t->time_base;
    chk.win_end = t->now == NO_TIME ? 0 : t->now + 1;
    ev_set(chk_ev(&chk), "examples", "count", "end_of_input", (double)fresh,
           0.0, NAN, NAN, fresh);
    /* A stream without a matured example has no event time yet. */
    int64_t now = t->now;
    if (t->now == NO_TIME)
        t->now = 0;
    ld_err_t err = fire(t, &end_kind, &chk);
    t->now = now;
    return err;
}

uint64_t ld_triggers_examples(const ld_triggers_t *t)
{
    return t->examples;
}

/* ---- Decision accessors -------------------------------------------------- */

ld_trigger_type_t ld_trigger_decision_type(const ld_trigger_decision_t *d)
{
    return d->type;
}

ld_trigger_action_t ld_trigger_decision_action(const ld_trigger_decision_t *d)
{
    return d->action;
}

ld_trigger_verdict_t ld_trigger_decision_verdict(const ld_trigger_decision_t *d)
{
    return d->verdict;
}

int ld_trigger_decision_severity(const ld_trigger_decision_t *d)
{
    return d->severity;
}

uint64_t ld_trigger_decision_challenger_version(const ld_trigger_decision_t *d)
{
    return d->challenger_version;
}

const char *ld_trigger_decision_id(const ld_trigger_decision_t *d)
{
    return d->id;
}

const char *ld_trigger_decision_idempotency_key(const ld_trigger_decision_t *d)
{
    return d->key;
}

int64_t ld_trigger_decision_event_time(const ld_trigger_decision_t *d)
{
    return d->event_time;
}

const char *ld_trigger_decision_reason(const ld_trigger_decision_t *d)
{
    return d->reason;
}

size_t ld_trigger_decision_evidence_count(const ld_trigger_decision_t *d)
{
    return d->nev;
}

const ld_trigger_evidence_t *
ld_trigger_decision_evidence(const ld_trigger_decision_t *d, size_t i)
{
    return i < d->nev ? &d->ev[i] : NULL;
}

size_t ld_trigger_decision_drifted_count(const ld_trigger_decision_t *d)
{
    return d->ndrift;
}

const char *ld_trigger_decision_drifted(const ld_trigger_decision_t *d,
                                        size_t i)
{
    return i < d->ndrift ? d->drifted[i] : NULL;
}

const char *ld_trigger_type_name(ld_trigger_type_t type)
{
    static const char *names[] = {"time", "volume", "performance", "drift",
                                  "end_of_input"};
    return (unsigned)type < LD_TRIGGER__COUNT ? names[type] : "unknown";
}

const char *ld_trigger_verdict_name(ld_trigger_verdict_t v)
{
    static const char *names[] = {"PASS", "FAIL", "INCONCLUSIVE", "SKIPPED"};
    return (unsigned)v < 4 ? names[v] : "UNKNOWN";
}

/* ---- Resume state -------------------------------------------------------- */

static void ev_save(const ld_trigger_evidence_t *e, ld_wbuf_t *w)
{
    ld_wbuf_str(w, e->metric);
    ld_wbuf_str(w, e->statistic);
    ld_wbuf_str(w, e->method);
    ld_wbuf_f64(w, e->value);
    ld_wbuf_f64(w, e->threshold);
    ld_wbuf_f64(w, e->p_value);
    ld_wbuf_f64(w, e->reference);
    ld_wbuf_u64(w, e->n);
}

static void ev_load(ld_trigger_evidence_t *e, ld_rbuf_t *r)
{
    ld_rbuf_str(r, e->metric, sizeof(e->metric));
    ld_rbuf_str(r, e->statistic, sizeof(e->statistic));
    ld_rbuf_str(r, e->method, sizeof(e->method));
    e->value = ld_rbuf_f64(r);
    e->threshold = ld_rbuf_f64(r);
    e->p_value = ld_rbuf_f64(r);
    e->reference = ld_rbuf_f64(r);
    e->n = ld_rbuf_u64(r);
}

static void decision_save(const ld_trigger_decision_t *d, ld_wbuf_t *w)
{
    ld_wbuf_u8(w, (uint8_t)d->type);
    ld_wbuf_u8(w, (uint8_t)d->severity);
    ld_wbuf_u8(w, (uint8_t)d->action);
    ld_wbuf_u8(w, (uint8_t)d->verdict);
    ld_wbuf_i64(w, d->event_time);
    ld_wbuf_i64(w, d->win_start);
    ld_wbuf_i64(w, d->win_end);
    ld_wbuf_i64(w, d->watermark);
    ld_wbuf_u64(w, d->champion_version);
    ld_wbuf_u64(w, d->challenger_version);
    ld_wbuf_str(w, d->id);
    ld_wbuf_str(w, d->key);
    ld_wbuf_str(w, d->reason);
    ld_wbuf_u64(w, d->evcap);
    ld_wbuf_u64(w, d->nev);
    for (size_t i = 0; i < d->nev; i++)
        ev_save(&d->ev[i], w);
    ld_wbuf_u64(w, d->ndrift);
    for (size_t i = 0; i < d->ndrift; i++)
        ld_wbuf_str(w, d->drifted[i]);
}

static ld_trigger_decision_t *decision_load(const ld_triggers_t *t,
                                            ld_rbuf_t *r)
{
    uint8_t type = ld_rbuf_u8(r), sev = ld_rbuf_u8(r), act = ld_rbuf_u8(r),
            ver = ld_rbuf_u8(r);
    if (type >= LD_TRIGGER__COUNT || sev < 1 || sev > 3 || act > 1 || ver > 3) {
        r->err = LD_ERR_CORRUPT;
        return NULL;
    }
    int64_t et = ld_rbuf_i64(r), ws = ld_rbuf_i64(r), we = ld_rbuf_i64(r),
            wm = ld_rbuf_i64(r);
    uint64_t champ = ld_rbuf_u64(r), chal = ld_rbuf_u64(r);
    char id[200], key[300], reason[200];
    ld_rbuf_str(r, id, sizeof(id));
    ld_rbuf_str(r, key, sizeof(key));
    ld_rbuf_str(r, reason, sizeof(reason));
    uint64_t evcap = ld_rbuf_u64(r);
    uint64_t nev = ld_rbuf_count(r, 40);
    if (r->err || evcap > 4096 || nev > evcap) {
        r->err = LD_ERR_CORRUPT;
        return NULL;
    }
    /* Drifted names are bounded by what one window can name. */
    ld_trigger_decision_t *d =
        decision_alloc((size_t)evcap, (size_t)t->nnum + 3);
    if (!d) {
        r->err = LD_ERR_NOMEM;
        return NULL;
    }
    d->type = (ld_trigger_type_t)type;
    d->severity = sev;
    d->action = (ld_trigger_action_t)act;
    d->verdict = (ld_trigger_verdict_t)ver;
    d->event_time = et;
    d->win_start = ws;
    d->win_end = we;
    d->watermark = wm;
    d->champion_version = champ;
    d->challenger_version = chal;
    memcpy(d->id, id, sizeof(id));
    memcpy(d->key, key, sizeof(key));
    memcpy(d->reason, reason, sizeof(reason));
    snprintf(d->model, sizeof(d->model), "%s", t->model);
    snprintf(d->topic, sizeof(d->topic), "%s", t->topic);
    d->nev = (size_t)nev;
    for (size_t i = 0; i < d->nev; i++)
        ev_load(&d->ev[i], r);
    uint64_t nd = ld_rbuf_u64(r);
    if (nd > (uint64_t)t->nnum + 3) {
        r->err = LD_ERR_CORRUPT;
        ld_trigger_decision_destroy(d);
        return NULL;
    }
    d->ndrift = (size_t)nd;
    for (size_t i = 0; i < d->ndrift; i++)
        ld_rbuf_str(r, d->drifted[i], sizeof(d->drifted[i]));
    if (r->err) {
        ld_trigger_decision_destroy(d);
        return NULL;
    }
    return d;
}

ld_err_t ld_triggers_save(const ld_triggers_t *t, uint8_t **out, size_t *len)
{
    ld_wbuf_t w = {0};
    const ld_triggers_conf_t *c = &t->c;
    ld_wbuf_u32(&w, STATE_MAGIC);
    ld_wbuf_u32(&w, STATE_VERSION);
    /* Layout-defining config: a mismatch refuses the state. */
    ld_wbuf_u64(&w, (uint64_t)c->window_size);
    ld_wbuf_u64(&w, (uint64_t)c->drift_sample_size);
    ld_wbuf_u64(&w, (uint64_t)c->drift_topk);
    ld_wbuf_u64(&w, (uint64_t)c->gate_window);
    ld_wbuf_u64(&w, (uint64_t)c->drift_hashed_bins);
    ld_wbuf_u8(&w, (uint8_t)t->have_nnum);
    ld_wbuf_u32(&w, t->nnum);

    ld_wbuf_u64(&w, t->examples);
    ld_wbuf_i64(&w, t->now);
    ld_wbuf_u64(&w, t->champion);
    ld_wbuf_u64(&w, t->seq);
    ld_wbuf_i64(&w, t->time_base);
    ld_wbuf_u64(&w, t->vol_base);
    for (int k = 0; k < KINDS; k++) {
        ld_wbuf_i64(&w, t->pol[k].last_fire);
        ld_wbuf_u32(&w, t->pol[k].bad_run);
        ld_wbuf_u64(&w, t->pol[k].fired);
    }
    ld_wbuf_u64(&w, t->next_index);
    win_save(t, &t->ref, &w);
    win_save(t, &t->prev, &w);
    win_save(t, &t->cur, &w);
    ld_wbuf_u8(&w, (uint8_t)t->pref_ok);
    ld_wbuf_u64(&w, t->pref_index);
    ld_wbuf_u64(&w, t->pref_from);
    res_save(&t->pref, &w);
    det_save(t->ddm, &w);
    det_save(t->adwin, &w);
    det_save(t->ph, &w);
    ld_wbuf_u8(&w, (uint8_t)t->stream_level);
    for (int i = 0; i < 3; i++) {
        ld_wbuf_u8(&w, t->stream_have[i]);
        if (t->stream_have[i])
            ev_save(&t->stream_ev[i], &w);
    }
    ld_wbuf_u64(&w, t->g_n);
    ld_wbuf_u64(&w, t->g_head);
    for (uint64_t i = 0; i < t->g_n; i++) {
        ld_wbuf_f32(&w, t->g_chal[i]);
        ld_wbuf_f32(&w, t->g_champ[i]);
        ld_wbuf_f32(&w, t->g_label[i]);
    }
    ld_wbuf_u64(&w, t->qlen);
    for (size_t i = 0; i < t->qlen; i++)
        decision_save(t->queue[i], &w);
    if (w.err) {
        free(w.p);
        return w.err;
    }
    *out = w.p;
    *len = w.len;
    return LD_OK;
}

/* Loads into a scratch trigger set made with t's config, then swaps it in,
 * so a bad buffer leaves t untouched. */
ld_err_t ld_triggers_load(ld_triggers_t *t, const uint8_t *buf, size_t len)
{
    ld_rbuf_t r = ld_rbuf_make(buf, len);
    ld_err_t err = LD_ERR_CORRUPT;
    ld_triggers_t *n = NULL;
    spacesaving_t old = {0};
    if (ld_rbuf_u32(&r) != STATE_MAGIC)
        return LD_ERR_CORRUPT;
    /* Version 1 (before the hashed-id histogram and the champion's
     * prediction reference) still loads, so that an upgrade resumes: its
     * hashed-id sketches and live-model score samples are dropped, and
     * those two tests start afresh (the hashed test once a reference
     * window has been counted again, i.e. after the next publication;
     * prediction drift after the next complete window). */
    uint32_t version = ld_rbuf_u32(&r);
    if (version < 1 || version > STATE_VERSION)
        return LD_ERR_CORRUPT;
    const ld_triggers_conf_t *c = &t->c;
    uint64_t ws = ld_rbuf_u64(&r), ss = ld_rbuf_u64(&r), tk = ld_rbuf_u64(&r),
             gw = ld_rbuf_u64(&r);
    uint64_t hb =
        version == 1 ? (uint64_t)c->drift_hashed_bins : ld_rbuf_u64(&r);
    uint8_t have = ld_rbuf_u8(&r);
    uint32_t nnum = ld_rbuf_u32(&r);
    if (r.err)
        return LD_ERR_CORRUPT;
    if (ws != (uint64_t)c->window_size ||
        ss != (uint64_t)c->drift_sample_size || tk != (uint64_t)c->drift_topk ||
        gw != (uint64_t)c->gate_window ||
        hb != (uint64_t)c->drift_hashed_bins ||
        nnum > (uint64_t)c->drift_max_features) {
        ld_log(LD_LOG_ERR, "triggers",
               "msg=\"resume state written under another window, sample, "
               "top-k, hashed-bin or gate size\"");
        return LD_ERR_CONFIG;
    }
    ld_triggers_conf_t cc = t->c;
    cc.drift_feature_names.v = t->names;
    cc.drift_feature_names.n = t->nnames;
    n = ld_triggers_new(&cc, t->model, t->topic, t->champion, NULL, 0);
    if (!n || (version == 1 && ss_init(&old, (uint32_t)c->drift_topk))) {
        err = LD_ERR_NOMEM;
        goto err;
    }
    if (have) {
        ld_features_t x = {.ndense = nnum};
        ld_trigger_obs_t o = {.x = &x};
        if (ensure_nnum(n, &o)) {
            err = LD_ERR_NOMEM;
            goto err;
        }
    }
    n->examples = ld_rbuf_u64(&r);
    n->mod_dense = n->examples % (uint64_t)c->drift_stride;
    n->mod_hashed = n->examples % (uint64_t)c->drift_hashed_stride;
    n->now = ld_rbuf_i64(&r);
    n->champion = ld_rbuf_u64(&r);
    n->seq = ld_rbuf_u64(&r);
    n->time_base = ld_rbuf_i64(&r);
    n->vol_base = ld_rbuf_u64(&r);
    for (int k = 0; k < KINDS; k++) {
        n->pol[k].last_fire = ld_rbuf_i64(&r);
        n->pol[k].bad_run = ld_rbuf_u32(&r);
        n->pol[k].fired = ld_rbuf_u64(&r);
    }
    n->next_index = ld_rbuf_u64(&r);
    spacesaving_t *v1 = version == 1 ? &old : NULL;
    win_load(n, &n->ref, &r, v1, version);
    win_load(n, &n->prev, &r, v1, version);
    win_load(n, &n->cur, &r, v1, version);
    if (version == 1) {
        n->pref_ok = 0;
        n->pref_from = n->cur.index + 1;
    } else {
        n->pref_ok = ld_rbuf_u8(&r) != 0;
        n->pref_index = ld_rbuf_u64(&r);
        n->pref_from = ld_rbuf_u64(&r);
        res_load(&n->pref, &r);
    }
    if (r.err || det_load(n->ddm, &r) || det_load(n->adwin, &r) ||
        det_load(n->ph, &r))
        goto err;
    uint8_t sl = ld_rbuf_u8(&r);
    if (sl > LD_TRIGGER_LEVEL_ALERT)
        goto err;
    n->stream_level = (ld_trigger_level_t)sl;
    for (int i = 0; i < 3; i++) {
        n->stream_have[i] = ld_rbuf_u8(&r);
        if (n->stream_have[i])
            ev_load(&n->stream_ev[i], &r);
    }
    if (version < 3)
        stream_reset(n); /* they watched the live model */
    n->g_n = ld_rbuf_u64(&r);
    n->g_head = ld_rbuf_u64(&r);
    if (n->g_n > gw || n->g_head >= gw || (n->g_n < gw && n->g_head != n->g_n))
        goto err;
    if (n->g_n * 12 > r.len - r.off)
        goto err;
    for (uint64_t i = 0; i < n->g_n; i++) {
        n->g_chal[i] = ld_rbuf_f32(&r);
        n->g_champ[i] = ld_rbuf_f32(&r);
        n->g_label[i] = ld_rbuf_f32(&r);
    }
    uint64_t q = ld_rbuf_u64(&r);
    if (r.err || q > QUEUE_MAX)
        goto err;
    for (uint64_t i = 0; i < q; i++) {
        ld_trigger_decision_t *d = decision_load(n, &r);
        if (!d) {
            err = r.err == LD_ERR_NOMEM ? LD_ERR_NOMEM : LD_ERR_CORRUPT;
            goto err;
        }
        n->queue[n->qlen++] = d;
    }
    if (r.err || r.off != len)
        goto err;
    /* Swap the loaded state into t (t keeps its address). */
    ld_triggers_t tmp = *t;
    *t = *n;
    *n = tmp;
    ld_triggers_destroy(n);
    ss_free(&old);
    if (version == 1)
        ld_log(LD_LOG_NOTICE, "triggers",
               "msg=\"resume state of version 1: hashed-id and prediction "
               "drift restart their references\"");
    return LD_OK;
err:
    ld_triggers_destroy(n);
    ss_free(&old);
    return err;
}
