/* SPDX-License-Identifier: Apache-2.0 */
/* The performance trigger: the champion's windowed loss against the
 * reference window, and the streaming detectors (DDM, ADWIN, Page-Hinkley)
 * on its error stream (docs/TRIGGERS.md, "The performance trigger"). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "triggers/set.h"

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
void stream_reset(ld_triggers_t *t)
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

const kind_ops_t kind_perf = {LD_TRIGGER_PERFORMANCE, perf_policy, perf_observe,
                              perf_check, 1};
