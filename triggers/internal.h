/* SPDX-License-Identifier: Apache-2.0 */
/* Shared inside triggers/: state buffers, the seeded RNG and the sketches. */
#ifndef LD_TRIGGERS_INTERNAL_H
#define LD_TRIGGERS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "common/bytes.h"
#include "triggers/triggers.h"

/* ---- Statistics (pure functions; tests/unit/test_triggers.c checks them
 * against fixtures) ------------------------------------------------------ */

/* Linear-interpolation quantile (numpy's default) of sorted[0..n-1],
 * q in [0,1]. n must be > 0. */
double ld_triggers_stat_quantile(const double *sorted, size_t n, double q);

/* PSI of cur against ref over `bins` quantile bins of ref (edges at the
 * ref quantiles i/bins, a value v falls in bin #{edges <= v}); proportions
 * below floor are raised to floor. Inputs need not be sorted; both n > 0.
 * Returns NaN on bad arguments or allocation failure. */
double ld_triggers_stat_psi(const double *ref, size_t nref, const double *cur,
                            size_t ncur, size_t bins, double floor);

/* Two-sample Kolmogorov-Smirnov: D = sup |F_a - F_b| and its asymptotic
 * p-value Q_KS(sqrt(n_a n_b / (n_a + n_b)) D) (Kolmogorov's limit law).
 * Returns LD_ERR_INVAL on empty input, LD_ERR_NOMEM. */
ld_err_t ld_triggers_stat_ks(const double *a, size_t na, const double *b,
                             size_t nb, double *d, double *p_value) LD_WUR;

/* Kolmogorov's limiting survival function Q(x) = 2 sum (-1)^(k-1)
 * exp(-2 k^2 x^2). */
double ld_triggers_stat_kolmogorov_sf(double x);

/* First Wasserstein distance between the empirical distributions of a and
 * b. NaN on empty input or allocation failure. */
double ld_triggers_stat_wasserstein(const double *a, size_t na, const double *b,
                                    size_t nb);

/* Jensen-Shannon distance (square root of the divergence, base 2, in
 * [0,1]) between two count vectors of length n, each normalised to sum 1.
 * NaN when either sums to 0. */
double ld_triggers_stat_js(const double *p, const double *q, size_t n);

/* Chi-square survival function: P(X >= x) for X ~ chi2(df), df > 0 (the
 * regularised upper incomplete gamma Q(df/2, x/2)). NaN on bad arguments. */
double ld_triggers_stat_chi2_sf(double x, double df);

/* Two-sample test of homogeneity of a categorical feature, on counts a[i]
 * and b[i] over the same n bins (a partition fixed before counting).
 *
 * Bins that both samples leave empty are dropped; bins expected to hold
 * fewer than min_expected counts of the smaller sample (t_i min(n1, n2) /
 * (n1 + n2) < min_expected, t_i = a_i + b_i) are pooled into one bin.
 * Over the K bins left:
 *   g         the G statistic 2 sum O ln(O / E) of the 2 x K table (SciPy's
 *             chi2_contingency with lambda_="log-likelihood",
 *             correction=False);
 *   p_value   chi2.sf(g, K - 1);
 *   js        the Jensen-Shannon distance (base 2) of the two proportion
 *             vectors;
 *   js_excess sqrt(max(JSD - (K - 1)(1/n1 + 1/n2) / (8 ln 2), 0)): the
 *             divergence left after the part sampling noise alone produces
 *             on average, as a distance.
 * K < 2 gives g 0, p_value 1, js 0. LD_ERR_INVAL (out all NaN) when a
 * count is negative or NaN or a sample is empty. */
typedef struct ld_triggers_cat_test {
    double js, js_excess, g, df, p_value;
    size_t bins; /* K */
} ld_triggers_cat_test_t;

ld_err_t ld_triggers_stat_cat_test(const double *a, const double *b, size_t n,
                                   double min_expected,
                                   ld_triggers_cat_test_t *out) LD_WUR;

/* ---- Change detectors on a scalar stream (DDM, ADWIN, Page-Hinkley) ---- */

/* Level a detector or a trigger window reached. */
typedef enum ld_trigger_level {
    LD_TRIGGER_LEVEL_NONE = 0,
    LD_TRIGGER_LEVEL_WARN = 1,
    LD_TRIGGER_LEVEL_ALERT = 2
} ld_trigger_level_t;

typedef struct ld_detector ld_detector_t;

/* DDM (Gama et al. 2004) on a 0/1 error stream: warn when p + s >=
 * p_min + warn * s_min, alert at drift * s_min, after min_n samples; resets
 * after an alert. NULL on allocation failure; caller frees with
 * ld_detector_destroy(). */
ld_detector_t *ld_detector_ddm_new(double warn, double drift, int64_t min_n);
/* ADWIN2 (Bifet & Gavaldà 2007) on values in [0,1], confidence delta,
 * checking for a cut every 32 values; alerts when the window is cut, and
 * drops the older part. Same ownership as above. */
ld_detector_t *ld_detector_adwin_new(double delta);
/* Two-sided Page-Hinkley on a mean with tolerance delta, threshold lambda and
 * fading factor alpha (1 = none), after 30 samples; resets after an alert.
 * Same ownership as above. */
ld_detector_t *ld_detector_ph_new(double delta, double lambda, double alpha);

/* Feeds one value; returns the level reached by this value (ALERT at most
 * once per change). */
ld_trigger_level_t ld_detector_observe(ld_detector_t *d, double x);
/* Level of the latest observe (the should-fire answer). */
ld_trigger_level_t ld_detector_level(const ld_detector_t *d);
/* Values seen by the detector's current window (ADWIN width, DDM/PH count
 * since the last reset). */
uint64_t ld_detector_n(const ld_detector_t *d);
/* Describes the detector's last decision into *ev (metric left empty for the
 * caller to name). */
void ld_detector_evidence(const ld_detector_t *d, ld_trigger_evidence_t *ev);
/* Forgets everything seen (same parameters). */
void ld_detector_reset(ld_detector_t *d);
/* Serialises the state into a new buffer (*out, *len; caller frees *out with
 * free()). LD_ERR_NOMEM on failure. */
ld_err_t ld_detector_save(const ld_detector_t *d, uint8_t **out,
                          size_t *len) LD_WUR;
/* Restores a state written by ld_detector_save() of the same kind; the
 * state then continues bit for bit. LD_ERR_CORRUPT on a truncated or foreign
 * buffer (d unchanged). buf borrowed. */
ld_err_t ld_detector_load(ld_detector_t *d, const uint8_t *buf,
                          size_t len) LD_WUR;
/* NULL is a no-op. */
void ld_detector_destroy(ld_detector_t *d);

/* State buffers are common/bytes.h's ld_wbuf_t / ld_rbuf_t. */

/* ---- Deterministic RNG (splitmix64) ------------------------------------- */

/* Inline: the reservoirs draw one number per value once full, on the
 * per-example path. */
static inline uint64_t rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [0, n) without modulo bias worth caring about (n < 2^32):
 * Lemire's multiply-shift on the high 32 bits; bias < n / 2^32. */
static inline uint64_t rng_below(uint64_t *state, uint64_t n)
{
    return ((rng_next(state) >> 32) * n) >> 32;
}

/* ---- Reservoir sample: the bounded quantile sketch of a numeric feature. */

/* Algorithm R with a seeded RNG: a uniform sample of cap values out of the
 * n seen, plus exact count, mean and M2. */
typedef struct reservoir {
    float *v; /* cap values, the first min(n, cap) valid */
    uint32_t cap;
    uint64_t n;
    uint64_t rng;
} reservoir_t;

int res_init(reservoir_t *r, uint32_t cap, uint64_t seed);
void res_free(reservoir_t *r);
void res_clear(reservoir_t *r, uint64_t seed);
/* Algorithm R, one draw per value once full: which values the sample
 * keeps is part of the resume state and of the drift evidence, so the draw
 * sequence is fixed (a skip-ahead sampler would keep other values). */
static inline void res_add(reservoir_t *r, float x)
{
    if (r->n < r->cap) {
        r->v[r->n++] = x;
        return;
    }
    r->n++;
    uint64_t j = r->n < ((uint64_t)1 << 32) ? rng_below(&r->rng, r->n)
                                            : rng_next(&r->rng) % r->n;
    if (j < r->cap)
        r->v[j] = x;
}
/* Sorts the sample in place: only for a closed window, which takes no more
 * values (sampling order then no longer matters). */
void res_sort(reservoir_t *r);
uint32_t res_size(const reservoir_t *r);
/* Makes dst a copy of src (same cap). */
void res_assign(reservoir_t *dst, const reservoir_t *src);
/* Copies the sample into out (res_size entries) as doubles. */
void res_copy(const reservoir_t *r, double *out);
void res_save(const reservoir_t *r, ld_wbuf_t *w);
void res_load(reservoir_t *r, ld_rbuf_t *rb);

/* ---- SpaceSaving: the frequent-items sketch of a categorical feature. --- */

/* One counter, in heap order: moving a counter is one 24-byte copy. */
typedef struct ss_entry {
    uint64_t count;
    uint64_t err; /* over-count bound inherited at replacement */
    uint32_t item;
    uint32_t hslot; /* index slot pointing at this heap position */
} ss_entry_t;

/* Index slot: the item is kept beside its heap position so a probe never
 * leaves the index. */
typedef struct ss_slot {
    uint32_t item;
    uint32_t pos; /* heap position, UINT32_MAX = free */
} ss_slot_t;

typedef struct spacesaving {
    ss_entry_t *e;    /* min-heap on count, k */
    ss_slot_t *slots; /* open addressing, mask + 1 */
    uint32_t mask;
    uint32_t k, used;
    uint64_t n; /* items seen */
} spacesaving_t;

int ss_init(spacesaving_t *s, uint32_t k);
void ss_free(spacesaving_t *s);
void ss_clear(spacesaving_t *s);
void ss_add(spacesaving_t *s, uint32_t item);
/* Guaranteed count of item (count - err; 0 when not tracked). */
uint64_t ss_count(const spacesaving_t *s, uint32_t item);
void ss_save(const spacesaving_t *s, ld_wbuf_t *w);
void ss_load(spacesaving_t *s, ld_rbuf_t *rb);

/* ld_triggers_stat_cat_test of cur against ref over ref's tracked items
 * plus one "other" bin. LD_ERR_INVAL if either is empty, LD_ERR_NOMEM. */
ld_err_t ss_cat_test(const spacesaving_t *ref, const spacesaving_t *cur,
                     double min_expected, ld_triggers_cat_test_t *out);

/* ---- Histogram of hashed ids over a fixed number of bins. -------------- */

/* The bin of a hashed slot id among nbins: a Fibonacci-hash scramble (slot
 * ids of a small hash_bits would otherwise share their high bits), then
 * Lemire's multiply-shift range reduction, so nbins need not be a power
 * of two. The same id always lands in the same bin, in every window. */
static inline uint32_t hist_bin(uint32_t id, uint32_t nbins)
{
    return (uint32_t)(((uint64_t)(id * 0x9e3779b1u) * nbins) >> 32);
}

/* ---- Helpers ---------------------------------------------------------- */

int cmp_double(const void *a, const void *b);
/* The statistics on already sorted samples (cur of PSI need not be). */
double stat_psi_sorted(const double *ref, size_t nref, const double *cur,
                       size_t ncur, size_t bins, double floor_p);
double stat_ks_sorted(const double *sa, size_t na, const double *sb, size_t nb,
                      double *p_value);
double stat_wasserstein_sorted(const double *sa, size_t na, const double *sb,
                               size_t nb);
/* Metric of predictions p against labels y (n pairs), as in the gate. */
double metric_eval(int metric, const float *p, const float *y, size_t n);
/* True when lower is better for the metric. */
int metric_lower_better(int metric);
const char *metric_name(int metric);
/* Copies src into dst[cap] like snprintf "%s" (truncated, terminated). */
void ev_copy_str(char *dst, size_t cap, const char *src);
void ev_set(ld_trigger_evidence_t *ev, const char *metric,
            const char *statistic, const char *method, double value,
            double threshold, double p_value, double reference, uint64_t n);

/* ---- Decisions (read by the event encoder) ---------------------------- */

#define NAME_MAX_LEN 48 /* longest feature name kept in a decision */

struct ld_trigger_decision {
    ld_trigger_type_t type;
    int severity; /* LD_TRIGGER_SEV_INFO..ALERT */
    ld_trigger_action_t action;
    ld_trigger_verdict_t verdict;
    int64_t event_time, win_start, win_end, watermark;
    uint64_t champion_version, challenger_version;
    char model[128];
    char topic[256];
    char id[200];
    char key[300];
    char reason[200];
    size_t nev, evcap;
    ld_trigger_evidence_t *ev;
    size_t ndrift;
    char (*drifted)[NAME_MAX_LEN + 16];
};

/* ---- Detectors inside the trigger state ------------------------------- */

void det_save(const ld_detector_t *d, ld_wbuf_t *w);
/* Leaves d unchanged on error. */
ld_err_t det_load(ld_detector_t *d, ld_rbuf_t *r);
int adwin_last_increase(const ld_detector_t *d);

#endif /* LD_TRIGGERS_INTERNAL_H */
