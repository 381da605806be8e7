/* SPDX-License-Identifier: Apache-2.0 */
/* The dense block and bias: maxabs normalization (the scale per column and
 * the conversion of optimizer state when it grows), the dense block's own
 * learning rate, and one online step per example (docs/TRAINER.md). */
#include "trainer/core.h"

/* Dense normalization (dense_norm: maxabs). Each dense column j keeps a
 * scale S_j, the largest |x_j| seen so far (as VW's --normalized does), and
 * its optimizer runs in normalized coordinates: x' = x / S, w' = w S, so
 * g' = g / S and every column learns at the rate of a feature in [-1, 1]
 * whatever its units (a price in hundreds and an age in tens alike). The
 * dense plane 0 keeps the raw weight w = w' / S: scoring, checkpoints and
 * any external scorer use w . x with raw x and need no normalizer. When a
 * larger |x| arrives, the state is converted to the new scale so that the
 * raw weight, hence every prediction, is unchanged (VW rescales its weight
 * instead, which moves predictions). S = 0 means "raw units" (scale 1): a
 * fresh column, or one restored from a checkpoint written before dense
 * normalization existed, is converted at its first non-zero value. */

/* Converts one coordinate's optimizer state (w' in *w, accumulators in *a,
 * *b) from a scale to a scale c times larger: w' grows by c, gradients
 * shrink by c, squared-gradient sums by c^2. FTRL's z is set so that its
 * closed form gives the new w' (z is not a plain gradient sum). */
static inline void dense_rescale(int opt, const hp_t *h, float c, float *w,
                                 float *a, float *b, float l1, float l2)
{
    float ic = 1.0f / c, ic2 = ic * ic;
    *w *= c;
    switch (opt) {
    case LD_OPT_SGD:
        break;
    case LD_OPT_ADAGRAD:
        *a *= ic2;
        break;
    case LD_OPT_FTRL:
        *b *= ic2;
        if (*w == 0.0f) {
            float z = *a * ic;
            *a = z > l1 ? l1 : (z < -l1 ? -l1 : z);
        } else {
            *a = -*w * ((h->beta + sqrtf(*b)) * h->inv_alpha + l2) -
                 copysignf(l1, *w);
        }
        break;
    default: /* Adam */
        *a *= ic;
        *b *= ic2;
        break;
    }
}

/* The dense block's constants: the batch's, with dense_learning_rate in
 * place of learning_rate. */
void make_dense_hp(const ld_trainer_t *t, const hp_t *h, hp_t *dh)
{
    const ld_spec_t *sp = &t->spec;
    *dh = *h;
    if (sp->dense_lr > 0) {
        dh->lr = (float)((double)h->lr * (sp->dense_lr / sp->lr));
        dh->inv_alpha = (float)(1.0 / sp->dense_lr);
    }
}

/* Converts every column with a scale back to raw units (dense_norm: none
 * restoring a checkpoint trained with maxabs). */
void dense_to_raw(ld_trainer_t *t)
{
    const size_t plane = (size_t)t->k * t->d1;
    const int opt = t->spec.opt;
    hp_t bh, h;
    make_hp(t, &bh);
    make_dense_hp(t, &bh, &h);
    for (uint32_t j = 0; j + 1 < t->d1; j++) {
        float sc = t->dscale[j];
        if (sc == 0.0f)
            continue;
        for (uint32_t kk = 0; kk < t->k; kk++) {
            size_t i = (size_t)kk * t->d1 + j;
            float w = t->dn[i] * sc, a = 0, b = 0;
            if (opt != LD_OPT_SGD)
                a = t->dn[plane + i];
            if (opt >= LD_OPT_FTRL)
                b = t->dn[2 * plane + i];
            /* dense_w is raw already: only the accumulators change (w
             * comes back as dn[i] up to rounding, and is not stored). */
            dense_rescale(opt, &h, 1.0f / sc, &w, &a, &b, h.l1, h.l2);
            if (opt != LD_OPT_SGD)
                t->dn[plane + i] = a;
            if (opt >= LD_OPT_FTRL)
                t->dn[2 * plane + i] = b;
        }
        t->dscale[j] = 0.0f;
    }
}

/* Dense block and bias, online inside the batch. Example i's dense part
 * is scored with the dense weights after the steps of examples 0..i-1 of
 * the batch (its hashed part with the batch-start weights, as always), and
 * then each dense coordinate takes one step with i's gradient. Still
 * test-then-train: no example is scored by weights that saw it. The dense
 * state is a few floats per column and stays in L1, so this costs what the
 * BLAS products cost. Why: one step per batch from the summed gradient
 * lost 0.014 logloss at batch 256 on issue 14's stream (FTRL's rate saw
 * one squared sum instead of 256 squared gradients), and scoring the
 * dense part with batch-start weights lost another 0.05 on River's
 * Phishing (1 250 examples: the first batch is all p = 0.5); see
 * docs/TRAINER.md for the figures. */
/* One step of every dense coordinate with example i's gradient (b_r); the
 * bias column gets no L1/L2 and no normalization. */
static inline __attribute__((always_inline)) void
dense_step_opt(ld_trainer_t *t, const hp_t *h, int opt, size_t i)
{
    const size_t plane = (size_t)t->k * t->d1;
    const uint32_t k = t->k, d1 = t->d1, d = d1 - 1;
    const float *x = t->b_x + i * d1, *r = t->b_r + i * k;
    float *dn = t->dn;
    for (uint32_t j = 0; j <= d; j++) {
        const int bias = j == d;
        const float l1 = bias ? 0.0f : h->l1, l2 = bias ? 0.0f : h->l2;
        const float xv = x[j];
        float sc = bias ? 0.0f : t->dscale[j];
        int grow = !bias && t->dnorm == LD_DNORM_MAXABS && fabsf(xv) > sc;
        for (uint32_t kk = 0; kk < k; kk++) {
            size_t c = (size_t)kk * d1 + j;
            float w = sc > 0.0f ? dn[c] * sc : dn[c], a = 0, b = 0;
            if (opt != LD_OPT_SGD)
                a = dn[plane + c];
            if (opt >= LD_OPT_FTRL)
                b = dn[2 * plane + c];
            float s1 = sc;
            if (__builtin_expect(grow, 0)) {
                s1 = fabsf(xv);
                dense_rescale(opt, h, sc > 0.0f ? s1 / sc : s1, &w, &a, &b, l1,
                              l2);
            }
            float g = r[kk] * (s1 > 0.0f ? xv / s1 : xv);
            opt_step(opt, h, &w, &a, &b, g, l1, l2);
            dn[c] = s1 > 0.0f ? w / s1 : w;
            if (opt != LD_OPT_SGD)
                dn[plane + c] = a;
            if (opt >= LD_OPT_FTRL)
                dn[2 * plane + c] = b;
        }
        if (grow)
            t->dscale[j] = fabsf(xv);
    }
}

/* Dense standardization (dense_norm: standard). Each dense column j keeps
 * Welford's running count n, mean m and sum of squared deviations M2 of the
 * values it has seen (with the missing-is-0 values), and its optimizer runs
 * in centred, scaled coordinates x' = (x - m) / sd, sd = sqrt(M2 / n), as
 * River's StandardScaler feeds its linear models. Why beside maxabs: a
 * feature with a large offset (a salary around 85 000, a flag in {0, 1})
 * is, after maxabs, a second bias that moves with every step, and the
 * real bias has to learn the offset out; centred, the bias learns the base
 * rate alone (issue 14's River comparison; docs/TRAINER.md has figures).
 *
 * As with maxabs the stored weights stay in raw units, w = w' / sd and the
 * bias b = b' - sum_j w_j m_j, so scoring, checkpoints and external
 * scorers use raw x. Each example first updates the statistics, then the
 * state is converted so that the raw function is unchanged (w' by
 * sd_new / sd_old as dense_rescale does; the bias's FTRL z is set from
 * the centred b' the closed form must give), then every column steps with
 * its centred value. A column's statistics include the example before its
 * step (so |x'| <= sqrt(n - 1), bounded from the second example on); the
 * prediction used the statistics before it, so nothing is scored by
 * statistics that saw it. A column whose values have not spread yet
 * (M2 = 0: fresh, constant, or restored from a checkpoint without
 * statistics) is in raw units (m 0, sd 1) and takes no step: a constant
 * is the bias's job. Past 2^24 values the count stops and the statistics
 * become exponentially weighted over that horizon (float32 state, in the
 * checkpoint as it is in memory, so a restore continues bit for bit). */
#define STD_MAX_N 16777216.0f

/* Effective centre and scale of column j of the d columns of st. */
static inline void std_of(const float *st, uint32_t d, uint32_t j, float *mu,
                          float *sd)
{
    float n = st[j], m2 = st[2 * (size_t)d + j];
    if (m2 > 0.0f && n > 0.0f) {
        *mu = st[(size_t)d + j];
        *sd = sqrtf(m2 / n);
    } else {
        *mu = 0.0f;
        *sd = 1.0f;
    }
}

static inline void std_add(float *st, uint32_t d, uint32_t j, float x)
{
    float *n = &st[j], *m = &st[(size_t)d + j], *m2 = &st[2 * (size_t)d + j];
    if (*n < STD_MAX_N)
        *n += 1.0f;
    else
        *m2 -= *m2 / *n;
    float delta = x - *m;
    *m += delta / *n;
    *m2 += delta * (x - *m);
    if (!(*m2 > 0.0f)) /* rounding: never negative */
        *m2 = 0.0f;
}

/* FTRL's z for the bias (no L1/L2) such that the closed form gives w. */
static inline float bias_z(const hp_t *h, float w, float n)
{
    return -w * (h->beta + sqrtf(n)) * h->inv_alpha;
}

/* Converts every standardized column back to raw units and clears the
 * statistics (a standard checkpoint restored with another dense_norm). */
void std_to_raw(ld_trainer_t *t)
{
    const size_t plane = (size_t)t->k * t->d1;
    const uint32_t d = t->d1 - 1;
    const int opt = t->spec.opt;
    hp_t bh, h;
    make_hp(t, &bh);
    make_dense_hp(t, &bh, &h);
    int any = 0;
    for (uint32_t j = 0; j < d; j++) {
        float mu, sd;
        std_of(t->dstat, d, j, &mu, &sd);
        if (t->dstat[2 * (size_t)d + j] == 0.0f)
            continue;
        any = 1;
        for (uint32_t kk = 0; kk < t->k; kk++) {
            size_t i = (size_t)kk * t->d1 + j;
            float w = t->dn[i] * sd, a = 0, b = 0;
            if (opt != LD_OPT_SGD)
                a = t->dn[plane + i];
            if (opt >= LD_OPT_FTRL)
                b = t->dn[2 * plane + i];
            dense_rescale(opt, &h, 1.0f / sd, &w, &a, &b, h.l1, h.l2);
            if (opt != LD_OPT_SGD)
                t->dn[plane + i] = a;
            if (opt >= LD_OPT_FTRL)
                t->dn[2 * plane + i] = b;
        }
    }
    if (any && opt == LD_OPT_FTRL) /* the bias's z, from its raw value */
        for (uint32_t kk = 0; kk < t->k; kk++) {
            size_t i = (size_t)kk * t->d1 + d;
            t->dn[plane + i] = bias_z(&h, t->dn[i], t->dn[2 * plane + i]);
        }
    memset(t->dstat, 0, 3 * (size_t)d * sizeof(float));
}

static void dense_step_std(ld_trainer_t *t, const hp_t *h, int opt, size_t i)
{
    const size_t plane = (size_t)t->k * t->d1;
    const uint32_t k = t->k, d1 = t->d1, d = d1 - 1;
    const float *x = t->b_x + i * d1, *r = t->b_r + i * k;
    float *dn = t->dn, *st = t->dstat;
    float *sd0 = t->dtmp, *mu1 = t->dtmp + d1, *sd1 = t->dtmp + 2 * d1;
    for (uint32_t j = 0; j < d; j++) {
        float mu0;
        std_of(st, d, j, &mu0, &sd0[j]);
        std_add(st, d, j, x[j]);
        std_of(st, d, j, &mu1[j], &sd1[j]);
    }
    for (uint32_t kk = 0; kk < k; kk++) {
        float *w = dn + (size_t)kk * d1, *za = dn + plane + (size_t)kk * d1,
              *nb = dn + 2 * plane + (size_t)kk * d1;
        /* The bias in centred coordinates, with the new means. */
        float bp = w[d], a = 0, b = 0;
        for (uint32_t j = 0; j < d; j++)
            bp += w[j] * mu1[j];
        if (opt != LD_OPT_SGD)
            a = za[d];
        if (opt >= LD_OPT_FTRL)
            b = nb[d];
        if (opt == LD_OPT_FTRL)
            a = bias_z(h, bp, b);
        opt_step(opt, h, &bp, &a, &b, r[kk], 0.0f, 0.0f);
        if (opt != LD_OPT_SGD)
            za[d] = a;
        if (opt >= LD_OPT_FTRL)
            nb[d] = b;
        for (uint32_t j = 0; j < d; j++) {
            float wp = w[j] * sd0[j], aj = 0, bj = 0;
            if (opt != LD_OPT_SGD)
                aj = za[j];
            if (opt >= LD_OPT_FTRL)
                bj = nb[j];
            if (sd1[j] != sd0[j])
                dense_rescale(opt, h, sd1[j] / sd0[j], &wp, &aj, &bj, h->l1,
                              h->l2);
            if (st[2 * (size_t)d + j] > 0.0f) /* spread: it steps */
                opt_step(opt, h, &wp, &aj, &bj,
                         r[kk] * ((x[j] - mu1[j]) / sd1[j]), h->l1, h->l2);
            w[j] = wp / sd1[j];
            if (opt != LD_OPT_SGD)
                za[j] = aj;
            if (opt >= LD_OPT_FTRL)
                nb[j] = bj;
            bp -= w[j] * mu1[j];
        }
        w[d] = bp;
    }
}

void dense_step(ld_trainer_t *t, size_t i)
{
    if (t->dnorm == LD_DNORM_STANDARD) {
        dense_step_std(t, &t->dh, t->spec.opt, i);
        return;
    }
    switch (t->spec.opt) {
    case LD_OPT_SGD:
        dense_step_opt(t, &t->dh, LD_OPT_SGD, i);
        break;
    case LD_OPT_ADAGRAD:
        dense_step_opt(t, &t->dh, LD_OPT_ADAGRAD, i);
        break;
    case LD_OPT_FTRL:
        dense_step_opt(t, &t->dh, LD_OPT_FTRL, i);
        break;
    default:
        dense_step_opt(t, &t->dh, LD_OPT_ADAM, i);
        break;
    }
}
