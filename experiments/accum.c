/* SPDX-License-Identifier: Apache-2.0 */
/* Per-variant outcome accumulators (label mean and its interval, served
 * score logloss, calibration, binned AUC, IPS mean) and the mixture SPRT
 * every experiment verdict rests on. */
#include <math.h>
#include <string.h>

#include "experiments/internal.h"

void welford_add(welford_t *w, double x)
{
    w->n++;
    double d = x - w->mean;
    w->mean += d / (double)w->n;
    w->m2 += d * (x - w->mean);
}

double welford_var(const welford_t *w)
{
    return w->n < 2 ? 0.0 : w->m2 / (double)(w->n - 1);
}

double exp_loss(int metric, double score, double label)
{
    if (isnan(score))
        return NAN;
    if (metric == LD_EXP_METRIC_SQERR)
        return (score - label) * (score - label);
    /* logloss for a label in [0,1] (a soft label weighs both terms) */
    double p = score < 1e-15 ? 1e-15 : score > 1 - 1e-15 ? 1 - 1e-15 : score;
    return -(label * log(p) + (1.0 - label) * log(1.0 - p));
}

double served_loss(obs_ctx_t *c, int metric)
{
    if (metric != LD_EXP_METRIC_LOGLOSS)
        return exp_loss(metric, c->obs->score, c->obs->label);
    if (!c->have_ll) {
        c->ll = exp_loss(LD_EXP_METRIC_LOGLOSS, c->obs->score, c->obs->label);
        c->have_ll = 1;
    }
    return c->ll;
}

static int is_binary(double y)
{
    return y == 0.0 || y == 1.0;
}

void accum_add(accum_t *a, obs_ctx_t *c)
{
    const ld_exp_obs_t *obs = c->obs;
    welford_add(&a->label, obs->label);
    if (!isnan(obs->propensity)) {
        a->ips_n++;
        a->ips_sum += obs->label / obs->propensity;
    }
    if (isnan(obs->score))
        return;
    a->scored++;
    a->score_sum += obs->score;
    a->label_sum_scored += obs->label;
    if (is_binary(obs->label)) {
        a->ll_n++;
        a->ll_sum += served_loss(c, LD_EXP_METRIC_LOGLOSS);
        double s = obs->score < 0 ? 0 : obs->score > 1 ? 1 : obs->score;
        size_t bin = (size_t)(s * AUC_BINS);
        if (bin >= AUC_BINS)
            bin = AUC_BINS - 1;
        a->hist[obs->label == 1.0][bin]++;
    }
}

/* AUC from the two score histograms, ties within a bin counted 1/2. */
static double binned_auc(const accum_t *a)
{
    double neg = 0, pos = 0, below = 0, area = 0;
    for (size_t b = 0; b < AUC_BINS; b++) {
        neg += a->hist[0][b];
        pos += a->hist[1][b];
    }
    if (neg == 0 || pos == 0)
        return NAN;
    for (size_t b = 0; b < AUC_BINS; b++) {
        area += a->hist[1][b] * (below + 0.5 * a->hist[0][b]);
        below += a->hist[0][b];
    }
    return area / (neg * pos);
}

void ld_exp_set_variant_stats(const ld_exp_set_t *set, size_t i,
                              ld_exp_variant_stats_t *out)
{
    served_drain((ld_exp_set_t *)set); /* the exposure counts */
    memset(out, 0, sizeof(*out));
    out->label_mean = out->ci_lo = out->ci_hi = NAN;
    out->logloss = out->calibration = out->auc = out->ips_mean = NAN;
    if (i >= set->nvar)
        return;
    const accum_t *a = &set->acc[i];
    out->n = a->label.n;
    out->pending = a->exposed > a->label.n ? a->exposed - a->label.n : 0;
    memcpy(out->drops, a->drops, sizeof(out->drops));
    out->scored = a->scored;
    if (a->label.n > 0) {
        out->label_mean = a->label.mean;
        double half = 1.959963984540054 *
                      sqrt(welford_var(&a->label) / (double)a->label.n);
        out->ci_lo = a->label.mean - half;
        out->ci_hi = a->label.mean + half;
    }
    if (a->ll_n > 0)
        out->logloss = a->ll_sum / (double)a->ll_n;
    if (a->label_sum_scored != 0)
        out->calibration = a->score_sum / a->label_sum_scored;
    out->auc = binned_auc(a);
    /* IPS over every matured example of the set: what the mean would be if
     * this variant served all of them */
    uint64_t all = 0;
    for (size_t v = 0; v < set->nvar; v++)
        all += set->acc[v].label.n;
    if (a->ips_n > 0 && all > 0)
        out->ips_mean = a->ips_sum / (double)all;
}

ld_err_t ld_exp_msprt(double est, double var, double tau, double alpha,
                      ld_exp_msprt_t *out)
{
    memset(out, 0, sizeof(*out));
    if (!(var > 0) || !isfinite(var) || !(tau > 0) || !isfinite(tau) ||
        !(alpha > 0 && alpha < 1) || !isfinite(est))
        return LD_ERR_INVAL;
    double t2 = tau * tau, vt = var + t2;
    out->est = est;
    out->var = var;
    out->threshold = -log(alpha);
    /* log Lambda = 1/2 log(V/(V+t2)) + t2 est^2 / (2 V (V+t2)) */
    out->log_lr = 0.5 * log(var / vt) + t2 * est * est / (2.0 * var * vt);
    out->reject = out->log_lr >= out->threshold;
    /* theta0 not rejected: (est-theta0)^2 < V(V+t2)/t2 (2 log 1/a +
     * log((V+t2)/V)) */
    out->half = sqrt(var * vt / t2 * (2.0 * out->threshold + log(vt / var)));
    return LD_OK;
}
