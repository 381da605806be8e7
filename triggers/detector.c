/* SPDX-License-Identifier: Apache-2.0 */
/* Change detectors on a scalar stream: DDM, ADWIN2 and two-sided
 * Page-Hinkley, behind the ld_detector_* interface. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "triggers/internal.h"

enum { DET_DDM = 1, DET_ADWIN = 2, DET_PH = 3 };

#define ADWIN_M       5  /* buckets per row before two merge */
#define ADWIN_ROWS    64 /* row r holds buckets of 2^r values */
#define ADWIN_CLOCK   32 /* values between cut checks */
#define ADWIN_MIN_LEN 5  /* smallest sub-window tested */
#define PH_MIN_N      30

typedef struct ddm {
    double warn, drift;
    int64_t min_n;
    uint64_t n;
    double p, p_min, s_min, ps_min;
} ddm_t;

typedef struct adwin {
    double delta;
    uint64_t width, tick;
    double total, m2; /* sum and sum of squared deviations of the window */
    uint32_t rows;    /* rows in use */
    uint8_t cnt[ADWIN_ROWS];
    double tot[ADWIN_ROWS][ADWIN_M + 1]; /* index 0 = oldest in the row */
    double var[ADWIN_ROWS][ADWIN_M + 1];
    int last_increase; /* newer part's mean above the older at the last cut */
} adwin_t;

typedef struct ph {
    double delta, lambda, alpha;
    uint64_t n;
    double mean, sum_up, min_up, sum_down, max_down;
} ph_t;

struct ld_detector {
    int kind;
    ld_trigger_level_t level;
    /* The last WARN/ALERT's numbers, for the evidence. */
    double ev_value, ev_threshold, ev_reference;
    uint64_t ev_n;
    union {
        ddm_t ddm;
        adwin_t adwin;
        ph_t ph;
    } u;
};

static ld_detector_t *det_alloc(int kind)
{
    ld_detector_t *d = calloc(1, sizeof(*d));
    if (d)
        d->kind = kind;
    return d;
}

ld_detector_t *ld_detector_ddm_new(double warn, double drift, int64_t min_n)
{
    ld_detector_t *d = det_alloc(DET_DDM);
    if (!d)
        return NULL;
    d->u.ddm.warn = warn;
    d->u.ddm.drift = drift;
    d->u.ddm.min_n = min_n < 1 ? 1 : min_n;
    ld_detector_reset(d);
    return d;
}

ld_detector_t *ld_detector_adwin_new(double delta)
{
    ld_detector_t *d = det_alloc(DET_ADWIN);
    if (!d)
        return NULL;
    d->u.adwin.delta = delta;
    ld_detector_reset(d);
    return d;
}

ld_detector_t *ld_detector_ph_new(double delta, double lambda, double alpha)
{
    ld_detector_t *d = det_alloc(DET_PH);
    if (!d)
        return NULL;
    d->u.ph.delta = delta;
    d->u.ph.lambda = lambda;
    d->u.ph.alpha = alpha;
    ld_detector_reset(d);
    return d;
}

void ld_detector_destroy(ld_detector_t *d)
{
    free(d);
}

static void ddm_reset(ddm_t *s)
{
    s->n = 0;
    s->p = 0.0;
    s->p_min = DBL_MAX;
    s->s_min = DBL_MAX;
    s->ps_min = DBL_MAX;
}

static void adwin_reset(adwin_t *s)
{
    double delta = s->delta;
    memset(s, 0, sizeof(*s));
    s->delta = delta;
}

static void ph_reset(ph_t *s)
{
    s->n = 0;
    s->mean = 0.0;
    s->sum_up = 0.0;
    s->min_up = 0.0;
    s->sum_down = 0.0;
    s->max_down = 0.0;
}

void ld_detector_reset(ld_detector_t *d)
{
    d->level = LD_TRIGGER_LEVEL_NONE;
    switch (d->kind) {
    case DET_DDM:
        ddm_reset(&d->u.ddm);
        break;
    case DET_ADWIN:
        adwin_reset(&d->u.adwin);
        break;
    case DET_PH:
        ph_reset(&d->u.ph);
        break;
    }
}

/* ---- DDM ---------------------------------------------------------------- */

static ld_trigger_level_t ddm_observe(ld_detector_t *d, double x)
{
    ddm_t *s = &d->u.ddm;
    s->n++;
    s->p += ((x >= 0.5 ? 1.0 : 0.0) - s->p) / (double)s->n;
    double sd = sqrt(s->p * (1.0 - s->p) / (double)s->n);
    if ((int64_t)s->n < s->min_n)
        return LD_TRIGGER_LEVEL_NONE;
    /* The minimum is taken only once an error was seen: with p = 0 the
     * bound p_min + k s_min would be 0 and the first error would alarm. */
    if (s->p > 0.0 && s->p + sd < s->ps_min) {
        s->p_min = s->p;
        s->s_min = sd;
        s->ps_min = s->p + sd;
    }
    if (s->ps_min == DBL_MAX)
        return LD_TRIGGER_LEVEL_NONE;
    double z = s->s_min > 0.0 ? (s->p + sd - s->p_min) / s->s_min : 0.0;
    ld_trigger_level_t lvl = LD_TRIGGER_LEVEL_NONE;
    if (s->p + sd >= s->p_min + s->drift * s->s_min)
        lvl = LD_TRIGGER_LEVEL_ALERT;
    else if (s->p + sd >= s->p_min + s->warn * s->s_min)
        lvl = LD_TRIGGER_LEVEL_WARN;
    if (lvl != LD_TRIGGER_LEVEL_NONE) {
        d->ev_value = z;
        d->ev_threshold = lvl == LD_TRIGGER_LEVEL_ALERT ? s->drift : s->warn;
        d->ev_reference = s->p_min;
        d->ev_n = s->n;
    }
    if (lvl == LD_TRIGGER_LEVEL_ALERT)
        ddm_reset(s);
    return lvl;
}

/* ---- ADWIN -------------------------------------------------------------- */

/* Appends a bucket of 2^row values at the newest end of row. */
static void adwin_push(adwin_t *s, uint32_t row, double tot, double var)
{
    s->tot[row][s->cnt[row]] = tot;
    s->var[row][s->cnt[row]] = var;
    s->cnt[row]++;
    if (row + 1 > s->rows)
        s->rows = row + 1;
}

/* Merges the two oldest buckets of any row that overflowed. */
static void adwin_compress(adwin_t *s)
{
    for (uint32_t r = 0; r < s->rows && r + 1 < ADWIN_ROWS; r++) {
        if (s->cnt[r] <= ADWIN_M)
            break;
        double n = (double)((uint64_t)1 << r);
        double t1 = s->tot[r][0], t2 = s->tot[r][1];
        double d = t1 / n - t2 / n;
        double var = s->var[r][0] + s->var[r][1] + n * n / (2.0 * n) * d * d;
        memmove(&s->tot[r][0], &s->tot[r][2],
                (size_t)(s->cnt[r] - 2) * sizeof(double));
        memmove(&s->var[r][0], &s->var[r][2],
                (size_t)(s->cnt[r] - 2) * sizeof(double));
        s->cnt[r] = (uint8_t)(s->cnt[r] - 2);
        adwin_push(s, r + 1, t1 + t2, var);
    }
}

/* Drops the oldest bucket of the window. */
static void adwin_drop_oldest(adwin_t *s)
{
    uint32_t r = s->rows - 1;
    double nb = (double)((uint64_t)1 << r), tb = s->tot[r][0],
           vb = s->var[r][0];
    memmove(&s->tot[r][0], &s->tot[r][1],
            (size_t)(s->cnt[r] - 1) * sizeof(double));
    memmove(&s->var[r][0], &s->var[r][1],
            (size_t)(s->cnt[r] - 1) * sizeof(double));
    s->cnt[r]--;
    while (s->rows > 0 && s->cnt[s->rows - 1] == 0)
        s->rows--;
    s->width -= (uint64_t)nb;
    s->total -= tb;
    double w = (double)s->width;
    if (w > 0.0) {
        double d = tb / nb - s->total / w;
        s->m2 -= vb + nb * w * d * d / (nb + w);
        if (s->m2 < 0.0)
            s->m2 = 0.0;
    } else {
        s->m2 = 0.0;
        s->total = 0.0;
    }
}

/* One scan from the oldest bucket to the newest; cuts (drops the oldest
 * bucket) at the first split whose means differ by more than epsilon.
 * Returns 1 after a cut. */
static int adwin_scan(ld_detector_t *d)
{
    adwin_t *s = &d->u.adwin;
    double w = (double)s->width;
    double var = s->m2 / w;
    double dd = log(2.0 * log(w) / s->delta);
    double n0 = 0.0, u0 = 0.0;
    for (uint32_t ri = s->rows; ri-- > 0;) {
        double nb = (double)((uint64_t)1 << ri);
        for (uint32_t b = 0; b < s->cnt[ri]; b++) {
            n0 += nb;
            u0 += s->tot[ri][b];
            double n1 = w - n0, u1 = s->total - u0;
            if (n1 < ADWIN_MIN_LEN)
                return 0;
            if (n0 < ADWIN_MIN_LEN)
                continue;
            double diff = u1 / n1 - u0 / n0;
            double m =
                1.0 / (n0 - ADWIN_MIN_LEN + 1) + 1.0 / (n1 - ADWIN_MIN_LEN + 1);
            double eps = sqrt(2.0 * m * var * dd) + 2.0 / 3.0 * dd * m;
            if (fabs(diff) > eps) {
                d->ev_value = fabs(diff);
                d->ev_threshold = eps;
                d->ev_reference = u0 / n0;
                d->ev_n = (uint64_t)n1;
                s->last_increase = diff > 0.0;
                adwin_drop_oldest(s);
                return 1;
            }
        }
    }
    return 0;
}

static ld_trigger_level_t adwin_observe(ld_detector_t *d, double x)
{
    adwin_t *s = &d->u.adwin;
    s->width++;
    if (s->width > 1) {
        double w = (double)s->width, dx = x - s->total / (w - 1.0);
        s->m2 += (w - 1.0) * dx * dx / w;
    }
    s->total += x;
    adwin_push(s, 0, x, 0.0);
    adwin_compress(s);
    s->tick++;
    if (s->tick % ADWIN_CLOCK != 0 || s->width < 2 * ADWIN_MIN_LEN)
        return LD_TRIGGER_LEVEL_NONE;
    int cut = 0;
    while (s->width >= 2 * ADWIN_MIN_LEN && adwin_scan(d))
        cut = 1;
    return cut ? LD_TRIGGER_LEVEL_ALERT : LD_TRIGGER_LEVEL_NONE;
}

/* Internal: direction of the last ADWIN cut (1 = the newer mean is
 * higher). */
int adwin_last_increase(const ld_detector_t *d)
{
    return d->kind == DET_ADWIN && d->u.adwin.last_increase;
}

/* ---- Page-Hinkley ------------------------------------------------------- */

static ld_trigger_level_t ph_observe(ld_detector_t *d, double x)
{
    ph_t *s = &d->u.ph;
    s->n++;
    s->mean += (x - s->mean) / (double)s->n;
    s->sum_up = s->alpha * s->sum_up + (x - s->mean - s->delta);
    s->min_up = fmin(s->min_up, s->sum_up);
    s->sum_down = s->alpha * s->sum_down + (x - s->mean + s->delta);
    s->max_down = fmax(s->max_down, s->sum_down);
    if (s->n < PH_MIN_N)
        return LD_TRIGGER_LEVEL_NONE;
    double up = s->sum_up - s->min_up, down = s->max_down - s->sum_down;
    double stat = fmax(up, down);
    if (stat <= s->lambda)
        return LD_TRIGGER_LEVEL_NONE;
    d->ev_value = stat;
    d->ev_threshold = s->lambda;
    d->ev_reference = s->mean;
    d->ev_n = s->n;
    ph_reset(s);
    return LD_TRIGGER_LEVEL_ALERT;
}

/* ---- Interface ---------------------------------------------------------- */

ld_trigger_level_t ld_detector_observe(ld_detector_t *d, double x)
{
    if (!isfinite(x))
        return d->level = LD_TRIGGER_LEVEL_NONE;
    switch (d->kind) {
    case DET_DDM:
        d->level = ddm_observe(d, x);
        break;
    case DET_ADWIN:
        d->level = adwin_observe(d, x);
        break;
    case DET_PH:
        d->level = ph_observe(d, x);
        break;
    }
    return d->level;
}

ld_trigger_level_t ld_detector_level(const ld_detector_t *d)
{
    return d->level;
}

uint64_t ld_detector_n(const ld_detector_t *d)
{
    switch (d->kind) {
    case DET_DDM:
        return d->u.ddm.n;
    case DET_ADWIN:
        return d->u.adwin.width;
    case DET_PH:
        return d->u.ph.n;
    }
    return 0;
}

void ld_detector_evidence(const ld_detector_t *d, ld_trigger_evidence_t *ev)
{
    static const char *names[] = {"", "ddm", "adwin", "page_hinkley"};
    ev_set(ev, "", names[d->kind], names[d->kind], d->ev_value, d->ev_threshold,
           NAN, d->ev_reference, d->ev_n);
}

#define DET_MAGIC 0x4c445444u /* "LDTD" */

void det_save(const ld_detector_t *d, ld_wbuf_t *w)
{
    ld_wbuf_u32(w, DET_MAGIC);
    ld_wbuf_u8(w, (uint8_t)d->kind);
    ld_wbuf_u8(w, (uint8_t)d->level);
    ld_wbuf_f64(w, d->ev_value);
    ld_wbuf_f64(w, d->ev_threshold);
    ld_wbuf_f64(w, d->ev_reference);
    ld_wbuf_u64(w, d->ev_n);
    switch (d->kind) {
    case DET_DDM: {
        const ddm_t *s = &d->u.ddm;
        ld_wbuf_u64(w, s->n);
        ld_wbuf_f64(w, s->p);
        ld_wbuf_f64(w, s->p_min);
        ld_wbuf_f64(w, s->s_min);
        ld_wbuf_f64(w, s->ps_min);
        break;
    }
    case DET_ADWIN: {
        const adwin_t *s = &d->u.adwin;
        ld_wbuf_u64(w, s->width);
        ld_wbuf_u64(w, s->tick);
        ld_wbuf_f64(w, s->total);
        ld_wbuf_f64(w, s->m2);
        ld_wbuf_u8(w, (uint8_t)s->last_increase);
        ld_wbuf_u32(w, s->rows);
        for (uint32_t r = 0; r < s->rows; r++) {
            ld_wbuf_u8(w, s->cnt[r]);
            for (uint32_t b = 0; b < s->cnt[r]; b++) {
                ld_wbuf_f64(w, s->tot[r][b]);
                ld_wbuf_f64(w, s->var[r][b]);
            }
        }
        break;
    }
    case DET_PH: {
        const ph_t *s = &d->u.ph;
        ld_wbuf_u64(w, s->n);
        ld_wbuf_f64(w, s->mean);
        ld_wbuf_f64(w, s->sum_up);
        ld_wbuf_f64(w, s->min_up);
        ld_wbuf_f64(w, s->sum_down);
        ld_wbuf_f64(w, s->max_down);
        break;
    }
    }
}

ld_err_t det_load(ld_detector_t *d, ld_rbuf_t *r)
{
    ld_detector_t tmp = *d;
    if (ld_rbuf_u32(r) != DET_MAGIC || ld_rbuf_u8(r) != d->kind)
        return LD_ERR_CORRUPT;
    uint8_t lvl = ld_rbuf_u8(r);
    if (lvl > LD_TRIGGER_LEVEL_ALERT)
        return LD_ERR_CORRUPT;
    tmp.level = (ld_trigger_level_t)lvl;
    tmp.ev_value = ld_rbuf_f64(r);
    tmp.ev_threshold = ld_rbuf_f64(r);
    tmp.ev_reference = ld_rbuf_f64(r);
    tmp.ev_n = ld_rbuf_u64(r);
    switch (d->kind) {
    case DET_DDM: {
        ddm_t *s = &tmp.u.ddm;
        s->n = ld_rbuf_u64(r);
        s->p = ld_rbuf_f64(r);
        s->p_min = ld_rbuf_f64(r);
        s->s_min = ld_rbuf_f64(r);
        s->ps_min = ld_rbuf_f64(r);
        break;
    }
    case DET_ADWIN: {
        adwin_t *s = &tmp.u.adwin;
        s->width = ld_rbuf_u64(r);
        s->tick = ld_rbuf_u64(r);
        s->total = ld_rbuf_f64(r);
        s->m2 = ld_rbuf_f64(r);
        s->last_increase = ld_rbuf_u8(r) != 0;
        s->rows = ld_rbuf_u32(r);
        if (s->rows > ADWIN_ROWS)
            return LD_ERR_CORRUPT;
        memset(s->cnt, 0, sizeof(s->cnt));
        for (uint32_t row = 0; row < s->rows; row++) {
            s->cnt[row] = ld_rbuf_u8(r);
            if (s->cnt[row] > ADWIN_M + 1)
                return LD_ERR_CORRUPT;
            for (uint32_t b = 0; b < s->cnt[row]; b++) {
                s->tot[row][b] = ld_rbuf_f64(r);
                s->var[row][b] = ld_rbuf_f64(r);
            }
        }
        break;
    }
    case DET_PH: {
        ph_t *s = &tmp.u.ph;
        s->n = ld_rbuf_u64(r);
        s->mean = ld_rbuf_f64(r);
        s->sum_up = ld_rbuf_f64(r);
        s->min_up = ld_rbuf_f64(r);
        s->sum_down = ld_rbuf_f64(r);
        s->max_down = ld_rbuf_f64(r);
        break;
    }
    default:
        return LD_ERR_CORRUPT;
    }
    if (r->err)
        return r->err;
    *d = tmp;
    return LD_OK;
}

ld_err_t ld_detector_save(const ld_detector_t *d, uint8_t **out, size_t *len)
{
    ld_wbuf_t w = {0};
    det_save(d, &w);
    if (w.err) {
        free(w.p);
        return w.err;
    }
    *out = w.p;
    *len = w.len;
    return LD_OK;
}

ld_err_t ld_detector_load(ld_detector_t *d, const uint8_t *buf, size_t len)
{
    ld_rbuf_t r = ld_rbuf_make(buf, len);
    ld_detector_t backup = *d;
    ld_err_t err = det_load(d, &r);
    if (err == LD_OK && r.off != len) {
        *d = backup; /* trailing bytes: not ours */
        return LD_ERR_CORRUPT;
    }
    return err;
}
