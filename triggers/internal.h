/* SPDX-License-Identifier: Apache-2.0 */
/* Shared inside triggers/: state buffers, the seeded RNG and the sketches. */
#ifndef LD_TRIGGERS_INTERNAL_H
#define LD_TRIGGERS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "common/bytes.h"
#include "triggers/triggers.h"

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
