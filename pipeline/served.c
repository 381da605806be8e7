/* SPDX-License-Identifier: Apache-2.0 */
/* The served-decision fields of an event (variant, score, shadow scores,
 * propensity) from the mapped slots into the record (docs/EXPERIMENTS.md). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "pipeline/internal.h"

/* A served number: finite int or double, else NaN. */
static double served_num(const ld_fv_t *v)
{
    if (v->kind == FV_DOUBLE && isfinite(v->u.d))
        return v->u.d;
    if (v->kind == FV_INT)
        return (double)v->u.i;
    return NAN;
}

/* The served-decision fields into out->served. Never a dead letter: the
 * event trains the model whatever its serving log says; what is unusable is
 * left out and flagged, and the daemon counts the flags per reason. */
void ld_fmap_served(const ld_fmap_t *fm, ld_record_t *out)
{
    ld_served_t *sv = &out->served;
    sv->variant_len = -1;
    sv->score = sv->propensity = NAN;
    if (fm->served_variant_slot >= 0) {
        const ld_fv_t *v = &fm->fv[fm->served_variant_slot];
        if (v->kind == FV_STR && v->n < LD_SERVED_NAME_MAX) {
            memcpy(sv->variant, v->u.s, v->n);
            sv->variant_len = (int16_t)v->n;
        } else if (v->kind == FV_INT) {
            sv->variant_len = (int16_t)snprintf(
                sv->variant, sizeof(sv->variant), "%lld", (long long)v->u.i);
        } else if (v->kind == FV_ABSENT || v->kind == FV_NULL) {
            sv->flaws |= LD_SERVED_NO_VARIANT;
        } else {
            sv->variant_len = 0; /* "" is no configured name: `other` */
            sv->flaws |= LD_SERVED_BAD_VARIANT;
        }
        if (sv->variant_len >= 0)
            sv->variant[sv->variant_len] = '\0';
    }
    if (fm->served_score_slot >= 0) {
        const ld_fv_t *v = &fm->fv[fm->served_score_slot];
        sv->score = served_num(v);
        if (isnan(sv->score) && v->kind != FV_ABSENT && v->kind != FV_NULL)
            sv->flaws |= LD_SERVED_BAD_SCORE;
    }
    if (fm->served_prop_slot >= 0) {
        const ld_fv_t *v = &fm->fv[fm->served_prop_slot];
        double p = served_num(v);
        if (!(p > 0 && p <= 1)) {
            if (v->kind != FV_ABSENT && v->kind != FV_NULL)
                sv->flaws |= LD_SERVED_BAD_PROPENSITY;
            p = NAN;
        }
        sv->propensity = p;
    }
    sv->nshadow = (uint8_t)fm->nserved_shadow;
    for (uint32_t i = 0; i < fm->nserved_shadow; i++) {
        const ld_fv_t *v = &fm->fv[fm->served_shadow_slot[i]];
        sv->shadow[i] = served_num(v);
        if (isnan(sv->shadow[i]) && v->kind != FV_ABSENT && v->kind != FV_NULL)
            sv->flaws |= LD_SERVED_BAD_SHADOW;
    }
}
