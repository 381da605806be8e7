/* SPDX-License-Identifier: Apache-2.0 */
/* The drift trigger: one test per numeric feature, the hashed ids, the
 * champion's predictions and the label, Bonferroni across them
 * (docs/TRIGGERS.md, "Drift: one test per feature"). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "triggers/set.h"

static void feature_name(const ld_triggers_t *t, uint32_t i, char *buf,
                         size_t size)
{
    if (i < t->nnames)
        snprintf(buf, size, "%.*s", NAME_MAX_LEN, t->names[i]);
    else
        snprintf(buf, size, "dense_%u", i);
}

static void chk_drifted(check_t *chk, const char *name)
{
    if (chk->ndrift < chk->driftcap)
        snprintf(chk->drifted[chk->ndrift++], NAME_MAX_LEN + 16, "%s", name);
}

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

/* Keeps the window's deciding statistics for ld_triggers_drift_scores();
 * the previous window's go. */
static void keep_scores(ld_triggers_t *t, const int *res,
                        const ld_trigger_evidence_t *dec, uint32_t nres)
{
    if (!t->drift_last) {
        t->drift_last = calloc(nres, sizeof(*t->drift_last));
        if (!t->drift_last)
            return; /* out of memory: /metrics shows none, nothing else */
    }
    t->ndrift_last = 0;
    for (uint32_t i = 0; i < nres; i++)
        if (res[i] >= 0 && dec[i].metric[0])
            t->drift_last[t->ndrift_last++] = dec[i];
}

size_t ld_triggers_drift_scores(const ld_triggers_t *t,
                                void (*fn)(void *opaque,
                                           const ld_trigger_evidence_t *ev),
                                void *opaque)
{
    for (size_t i = 0; i < t->ndrift_last; i++)
        fn(opaque, &t->drift_last[i]);
    return t->ndrift_last;
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

    keep_scores(t, res, dec, nres);
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

const kind_ops_t kind_drift = {LD_TRIGGER_DRIFT, drift_policy, NULL,
                               drift_check, 1};
