/* SPDX-License-Identifier: Apache-2.0 */
/* Distribution distances and tests (PSI, KS, Wasserstein, Jensen-Shannon)
 * and the prediction metrics shared by the performance trigger and gate. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "triggers/internal.h"

int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double ld_triggers_stat_quantile(const double *sorted, size_t n, double q)
{
    if (n == 0)
        return NAN;
    double h = q * (double)(n - 1);
    size_t lo = (size_t)floor(h);
    if (lo >= n - 1)
        return sorted[n - 1];
    double frac = h - (double)lo;
    /* numpy's "linear" method, written as numpy evaluates it. */
    return sorted[lo] + (sorted[lo + 1] - sorted[lo]) * frac;
}

static double *sorted_copy(const double *x, size_t n)
{
    double *s = malloc(n * sizeof(*s));
    if (!s)
        return NULL;
    memcpy(s, x, n * sizeof(*s));
    qsort(s, n, sizeof(*s), cmp_double);
    return s;
}

/* Number of edges <= v (edges sorted ascending). */
static size_t bin_of(const double *edges, size_t nedges, double v)
{
    size_t lo = 0, hi = nedges;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (edges[mid] <= v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

double stat_psi_sorted(const double *ref, size_t nref, const double *cur,
                       size_t ncur, size_t bins, double floor_p)
{
    if (nref == 0 || ncur == 0 || bins < 2 || bins > 1000)
        return NAN;
    double edges[1000];
    uint64_t cr[1000], cc[1000];
    memset(cr, 0, bins * sizeof(cr[0]));
    memset(cc, 0, bins * sizeof(cc[0]));
    for (size_t i = 1; i < bins; i++)
        edges[i - 1] =
            ld_triggers_stat_quantile(ref, nref, (double)i / (double)bins);
    for (size_t i = 0; i < nref; i++)
        cr[bin_of(edges, bins - 1, ref[i])]++;
    for (size_t i = 0; i < ncur; i++)
        cc[bin_of(edges, bins - 1, cur[i])]++;
    double psi = 0.0;
    for (size_t b = 0; b < bins; b++) {
        double r = fmax((double)cr[b] / (double)nref, floor_p);
        double c = fmax((double)cc[b] / (double)ncur, floor_p);
        psi += (c - r) * log(c / r);
    }
    return psi;
}

double ld_triggers_stat_psi(const double *ref, size_t nref, const double *cur,
                            size_t ncur, size_t bins, double floor_p)
{
    if (nref == 0)
        return NAN;
    double *s = sorted_copy(ref, nref);
    if (!s)
        return NAN;
    double psi = stat_psi_sorted(s, nref, cur, ncur, bins, floor_p);
    free(s);
    return psi;
}

double ld_triggers_stat_kolmogorov_sf(double x)
{
    if (!(x > 0.0))
        return 1.0;
    if (x < 1.18) {
        /* Jacobi-transformed series converges fast for small x. */
        const double pi = 3.14159265358979323846;
        double w = log(x);
        double f = -pi * pi / (8.0 * x * x);
        double s = 0.0;
        for (int k = 1; k < 40; k += 2) {
            double t = exp((double)(k * k) * f);
            s += t;
            if (t < 1e-300)
                break;
        }
        double cdf = exp(0.5 * log(2.0 * pi) - w) * s;
        return fmin(1.0, fmax(0.0, 1.0 - cdf));
    }
    double s = 0.0;
    for (int k = 1; k < 100; k++) {
        double t = exp(-2.0 * (double)k * (double)k * x * x);
        s += (k & 1) ? t : -t;
        if (t < 1e-300)
            break;
    }
    return fmin(1.0, fmax(0.0, 2.0 * s));
}

double stat_ks_sorted(const double *sa, size_t na, const double *sb, size_t nb,
                      double *p_out)
{
    size_t i = 0, j = 0;
    double d = 0.0;
    while (i < na && j < nb) {
        double x = fmin(sa[i], sb[j]);
        while (i < na && sa[i] <= x)
            i++;
        while (j < nb && sb[j] <= x)
            j++;
        double diff = fabs((double)i / (double)na - (double)j / (double)nb);
        if (diff > d)
            d = diff;
    }
    double en = (double)na * (double)nb / ((double)na + (double)nb);
    *p_out = ld_triggers_stat_kolmogorov_sf(sqrt(en) * d);
    return d;
}

ld_err_t ld_triggers_stat_ks(const double *a, size_t na, const double *b,
                             size_t nb, double *d_out, double *p_out)
{
    if (na == 0 || nb == 0)
        return LD_ERR_INVAL;
    ld_err_t err = LD_ERR_NOMEM;
    double *sa = sorted_copy(a, na), *sb = sorted_copy(b, nb);
    if (sa && sb) {
        *d_out = stat_ks_sorted(sa, na, sb, nb, p_out);
        err = LD_OK;
    }
    free(sa);
    free(sb);
    return err;
}

double stat_wasserstein_sorted(const double *sa, size_t na, const double *sb,
                               size_t nb)
{
    /* Integrate |F_a - F_b| between consecutive values of the merged
     * sample; both CDFs are constant there. */
    size_t i = 0, j = 0;
    double prev = fmin(sa[0], sb[0]);
    double w = 0.0;
    while (i < na || j < nb) {
        double x = (j >= nb || (i < na && sa[i] <= sb[j])) ? sa[i] : sb[j];
        double fa = (double)i / (double)na, fb = (double)j / (double)nb;
        w += fabs(fa - fb) * (x - prev);
        prev = x;
        while (i < na && sa[i] <= x)
            i++;
        while (j < nb && sb[j] <= x)
            j++;
    }
    return w;
}

double ld_triggers_stat_wasserstein(const double *a, size_t na, const double *b,
                                    size_t nb)
{
    if (na == 0 || nb == 0)
        return NAN;
    double w = NAN;
    double *sa = sorted_copy(a, na), *sb = sorted_copy(b, nb);
    if (sa && sb)
        w = stat_wasserstein_sorted(sa, na, sb, nb);
    free(sa);
    free(sb);
    return w;
}

double ld_triggers_stat_js(const double *p, const double *q, size_t n)
{
    double sp = 0.0, sq = 0.0;
    for (size_t i = 0; i < n; i++) {
        sp += p[i];
        sq += q[i];
    }
    if (!(sp > 0.0) || !(sq > 0.0))
        return NAN;
    double js = 0.0;
    for (size_t i = 0; i < n; i++) {
        double pi = p[i] / sp, qi = q[i] / sq, m = 0.5 * (pi + qi);
        if (pi > 0.0)
            js += 0.5 * pi * log(pi / m);
        if (qi > 0.0)
            js += 0.5 * qi * log(qi / m);
    }
    js /= log(2.0);
    return sqrt(fmax(js, 0.0));
}

/* Regularised upper incomplete gamma Q(a, x): the power series of P below
 * x < a + 1, Lentz's continued fraction of Q above (Numerical Recipes
 * 6.2), so a tiny Q keeps its relative precision. The iteration caps cover
 * a up to 2^20 (convergence takes O(sqrt(a)) terms). */
static double gamma_q(double a, double x)
{
    if (x <= 0.0)
        return 1.0;
    double lead = exp(-x + a * log(x) - lgamma(a));
    if (x < a + 1.0) {
        double ap = a, del = 1.0 / a, sum = del;
        for (int n = 0; n < 100000; n++) {
            ap += 1.0;
            del *= x / ap;
            sum += del;
            if (fabs(del) < fabs(sum) * 1e-16)
                break;
        }
        return fmax(1.0 - sum * lead, 0.0);
    }
    const double tiny = 1e-300;
    double b = x + 1.0 - a, c = 1.0 / tiny, d = 1.0 / b, h = d;
    for (int i = 1; i < 100000; i++) {
        double an = -i * (i - a);
        b += 2.0;
        d = an * d + b;
        if (fabs(d) < tiny)
            d = tiny;
        c = b + an / c;
        if (fabs(c) < tiny)
            c = tiny;
        d = 1.0 / d;
        double del = d * c;
        h *= del;
        if (fabs(del - 1.0) < 1e-16)
            break;
    }
    return lead * h;
}

double ld_triggers_stat_chi2_sf(double x, double df)
{
    if (!(df > 0.0) || isnan(x))
        return NAN;
    return gamma_q(0.5 * df, 0.5 * x);
}

/* One bin's share of the G statistic and of the JS divergence (nats). */
static void cat_bin(double a, double b, double n1, double n2, double *g,
                    double *jsd)
{
    double t = a + b, n = n1 + n2;
    double ea = n1 * t / n, eb = n2 * t / n;
    double p = a / n1, q = b / n2, m = 0.5 * (p + q);
    if (a > 0.0) {
        *g += a * log(a / ea);
        *jsd += 0.5 * p * log(p / m);
    }
    if (b > 0.0) {
        *g += b * log(b / eb);
        *jsd += 0.5 * q * log(q / m);
    }
}

ld_err_t ld_triggers_stat_cat_test(const double *a, const double *b, size_t n,
                                   double min_expected,
                                   ld_triggers_cat_test_t *out)
{
    *out = (ld_triggers_cat_test_t){NAN, NAN, NAN, NAN, NAN, 0};
    double n1 = 0.0, n2 = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!(a[i] >= 0.0) || !(b[i] >= 0.0))
            return LD_ERR_INVAL;
        n1 += a[i];
        n2 += b[i];
    }
    if (!(n1 > 0.0) || !(n2 > 0.0))
        return LD_ERR_INVAL;
    /* Bins expected to hold fewer than min_expected of the smaller sample
     * go into one pooled bin: their counts are mostly sampling noise, and
     * the chi-square law of G needs expected counts of about 5 or more. */
    double small = fmin(n1, n2) / (n1 + n2);
    double g = 0.0, jsd = 0.0, pa = 0.0, pb = 0.0;
    size_t bins = 0;
    for (size_t i = 0; i < n; i++) {
        double t = a[i] + b[i];
        if (t == 0.0)
            continue;
        if (t * small < min_expected) {
            pa += a[i];
            pb += b[i];
            continue;
        }
        cat_bin(a[i], b[i], n1, n2, &g, &jsd);
        bins++;
    }
    if (pa + pb > 0.0) {
        cat_bin(pa, pb, n1, n2, &g, &jsd);
        bins++;
    }
    out->bins = bins;
    if (bins < 2) {
        /* One bin holds everything: both samples have the same shape. */
        *out = (ld_triggers_cat_test_t){0.0, 0.0, 0.0, 0.0, 1.0, bins};
        return LD_OK;
    }
    double df = (double)(bins - 1);
    /* Under H0 (one distribution behind both samples) each difference of
     * proportions p_i - q_i has variance m_i (1 - m_i) (1/n1 + 1/n2), and
     * JSD ~ (1/8) sum (p_i - q_i)^2 / m_i, so the divergence expected from
     * sampling alone is (K - 1)(1/n1 + 1/n2) / 8 nats. */
    double floor_nats = df * (1.0 / n1 + 1.0 / n2) / 8.0;
    out->g = 2.0 * fmax(g, 0.0);
    out->df = df;
    out->p_value = ld_triggers_stat_chi2_sf(out->g, df);
    out->js = sqrt(fmax(jsd, 0.0) / log(2.0));
    out->js_excess = sqrt(fmax(jsd - floor_nats, 0.0) / log(2.0));
    return LD_OK;
}

/* ---- Metrics ------------------------------------------------------------ */

const char *metric_name(int metric)
{
    switch (metric) {
    case LD_TRIGGER_METRIC_LOGLOSS:
        return "logloss";
    case LD_TRIGGER_METRIC_RMSE:
        return "rmse";
    case LD_TRIGGER_METRIC_ERROR:
        return "error";
    case LD_TRIGGER_METRIC_AUC:
        return "auc";
    }
    return "unknown";
}

int metric_lower_better(int metric)
{
    return metric != LD_TRIGGER_METRIC_AUC;
}

typedef struct scored_pair {
    float p;
    float y;
} scored_pair_t;

static int cmp_pair(const void *a, const void *b)
{
    float x = ((const scored_pair_t *)a)->p, y = ((const scored_pair_t *)b)->p;
    return (x > y) - (x < y);
}

/* Mann-Whitney AUC with average ranks for ties. */
static double auc_eval(const float *p, const float *y, size_t n)
{
    scored_pair_t *v = malloc(n * sizeof(*v));
    if (!v)
        return NAN;
    for (size_t i = 0; i < n; i++) {
        v[i].p = p[i];
        v[i].y = y[i];
    }
    qsort(v, n, sizeof(*v), cmp_pair);
    double npos = 0.0, rank_sum = 0.0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && v[j].p == v[i].p)
            j++;
        double avg = 0.5 * ((double)i + 1.0 + (double)j);
        for (size_t k = i; k < j; k++)
            if (v[k].y >= 0.5f) {
                npos += 1.0;
                rank_sum += avg;
            }
        i = j;
    }
    free(v);
    double nneg = (double)n - npos;
    if (npos == 0.0 || nneg == 0.0)
        return NAN;
    return (rank_sum - npos * (npos + 1.0) / 2.0) / (npos * nneg);
}

double metric_eval(int metric, const float *p, const float *y, size_t n)
{
    if (n == 0)
        return NAN;
    double s = 0.0;
    switch (metric) {
    case LD_TRIGGER_METRIC_LOGLOSS:
        for (size_t i = 0; i < n; i++) {
            double q = fmin(fmax((double)p[i], 1e-7), 1.0 - 1e-7);
            s -= y[i] >= 0.5f ? log(q) : log1p(-q);
        }
        return s / (double)n;
    case LD_TRIGGER_METRIC_RMSE:
        for (size_t i = 0; i < n; i++) {
            double e = (double)y[i] - (double)p[i];
            s += e * e;
        }
        return sqrt(s / (double)n);
    case LD_TRIGGER_METRIC_ERROR:
        for (size_t i = 0; i < n; i++)
            s += (p[i] >= 0.5f) != (y[i] >= 0.5f);
        return s / (double)n;
    case LD_TRIGGER_METRIC_AUC:
        return auc_eval(p, y, n);
    }
    return NAN;
}

void ev_copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = strnlen(src, cap - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

void ev_set(ld_trigger_evidence_t *ev, const char *metric,
            const char *statistic, const char *method, double value,
            double threshold, double p_value, double reference, uint64_t n)
{
    /* A detector at WARN re-latches its evidence on every example:
     * copies, not snprintf. */
    memset(ev, 0, sizeof(*ev));
    ev_copy_str(ev->metric, sizeof(ev->metric), metric);
    ev_copy_str(ev->statistic, sizeof(ev->statistic), statistic);
    ev_copy_str(ev->method, sizeof(ev->method), method);
    ev->value = value;
    ev->threshold = threshold;
    ev->p_value = p_value;
    ev->reference = reference;
    ev->n = n;
}
