/* SPDX-License-Identifier: Apache-2.0 */
/* Scorers: weights-only copies of a model that score examples exactly as
 * the trainer scores its frozen champion. */
#include "trainer/scorer.h"

#include "trainer/core.h"

struct ld_scorer {
    int model;
    uint32_t k, d1; /* outputs; dense columns + 1 (the bias) */
    size_t nslots;
    float *w;  /* nslots x k, slot-major (one slot's outputs together) */
    float *dw; /* k x d1, the bias in the last column */
    float *x;  /* scratch: cap dense rows, then cap x k outputs */
    size_t cap;
};

ld_scorer_t *ld_scorer_new(const ld_trainer_t *t)
{
    ld_scorer_t *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->model = t->spec.model;
    s->k = t->k;
    s->d1 = t->d1;
    s->nslots = t->nslots;
    /* ld_state_alloc: huge pages when large, like the trainer's state: a
     * scorer is read at random, one slot per hashed feature */
    s->w = ld_state_alloc(s->nslots * s->k, 1);
    s->dw = calloc((size_t)s->k * s->d1, sizeof(float));
    if (!s->w || !s->dw) {
        ld_scorer_destroy(s);
        return NULL;
    }
    return s;
}

void ld_scorer_destroy(ld_scorer_t *s)
{
    if (!s)
        return;
    free(s->w);
    free(s->dw);
    free(s->x);
    free(s);
}

void ld_scorer_load_trainer(ld_scorer_t *s, const ld_trainer_t *t)
{
    const size_t k = t->k;
    if (t->lazy) {
        /* the weight is the closed form of (z, n) between batches */
        for (size_t i = 0; i < s->nslots; i++) {
            const float *c = t->sp + i * LAZY_SS;
            s->w[i] = ftrl_w(c[0], sqrtf(c[1]), &t->lz);
        }
    } else {
        const size_t st = t->s;
        for (size_t i = 0; i < s->nslots * k; i++)
            s->w[i] = t->sp[i * st];
    }
    /* plane 0 of the dense state is the weights */
    memcpy(s->dw, t->dn, k * t->d1 * sizeof(float));
}

ld_err_t ld_scorer_load_snapshot(ld_scorer_t *s, const ld_snapshot_t *snap,
                                 char *errstr, size_t errstr_size)
{
    const ld_spec_t *sp = &snap->spec;
    const char *why = NULL;
    if (sp->model != s->model)
        why = "model kind";
    else if (sp->k != s->k)
        why = "num_classes";
    else if (((size_t)1 << sp->hash_bits) != s->nslots)
        why = "hash_bits";
    else if (sp->dense_dim + 1 != s->d1)
        why = "dense_dim";
    if (why) {
        snprintf(errstr, errstr_size, "the checkpoint's %s differs", why);
        return LD_ERR_CONFIG;
    }
    const size_t st = sp->s;
    for (size_t i = 0; i < s->nslots * s->k; i++)
        s->w[i] = snap->sp[i * st];
    memcpy(s->dw, snap->dn, (size_t)s->k * s->d1 * sizeof(float));
    return LD_OK;
}

void ld_scorer_copy(ld_scorer_t *dst, const ld_scorer_t *src)
{
    memcpy(dst->w, src->w, src->nslots * src->k * sizeof(float));
    memcpy(dst->dw, src->dw, (size_t)src->k * src->d1 * sizeof(float));
}

/* Room for n rows of the dense block and n x k outputs. */
static int reserve(ld_scorer_t *s, size_t n)
{
    if (n <= s->cap)
        return 0;
    float *x = realloc(s->x, n * (s->d1 + s->k) * sizeof(float));
    if (!x)
        return -1;
    s->x = x;
    s->cap = n;
    return 0;
}

ld_err_t ld_scorer_score_batch(ld_scorer_t *s, const ld_scored_t *ex, size_t n,
                               ld_score_t *out)
{
    if (n == 0)
        return LD_OK;
    if (reserve(s, n))
        return LD_ERR_NOMEM;
    /* The batch's dense rows with their bias column through the one BLAS
     * call the trainer scores its champion's batch with (trainer.c's
     * forward_dense: a row's result depends on the rows around it), then
     * the sparse weights in feature order: a frozen copy scores a batch
     * bit for bit as the champion did (0024). */
    const size_t d1 = s->d1, k = s->k;
    float *rows = s->x, *z = s->x + n * d1;
    for (size_t i = 0; i < n; i++) {
        const ld_features_t *x = &ex[i].ex->x;
        for (size_t j = 0; j + 1 < d1; j++)
            rows[i * d1 + j] = j < x->ndense ? x->dense[j] : 0.0f;
        rows[i * d1 + d1 - 1] = 1.0f;
    }
    if (k == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)n, (int)d1, 1.0f, rows,
                    (int)d1, s->dw, 1, 0.0f, z, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)k,
                    (int)d1, 1.0f, rows, (int)d1, s->dw, (int)d1, 0.0f, z,
                    (int)k);
    for (size_t i = 0; i < n; i++) {
        const ld_features_t *x = &ex[i].ex->x;
        float *zi = z + i * k;
        if (k == 1) {
            float acc = zi[0];
            for (uint32_t f = 0; f < x->nnz; f++)
                acc += s->w[x->idx[f]] * x->val[f];
            zi[0] = acc;
        } else {
            for (uint32_t f = 0; f < x->nnz; f++)
                for (size_t kk = 0; kk < k; kk++)
                    zi[kk] += s->w[(size_t)x->idx[f] * k + kk] * x->val[f];
        }
        score_t o;
        link_and_score(s->model, (uint32_t)k, zi, ex[i].label, &o);
        out[i] = (ld_score_t){o.pred, o.loss, o.sqerr, o.correct};
    }
    return LD_OK;
}

size_t ld_scorer_bytes(const ld_scorer_t *s)
{
    return (s->nslots * s->k + (size_t)s->k * s->d1) * sizeof(float);
}

double ld_scorer_auc(const float *score, const float *label, const float *w,
                     size_t n)
{
    ld_auc_item_t *it = malloc((2 * n + 1) * sizeof(*it));
    if (!it)
        return NAN;
    double a = ld_auc_exact(score, label, w, n, it);
    free(it);
    return a;
}
