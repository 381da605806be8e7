/* SPDX-License-Identifier: Apache-2.0 */
/* What served each event, kept from ingestion until its example matures:
 * an open-addressing table on (partition, offset) with backward-shift
 * deletion (no tombstones, so a long run never degrades it), evicting
 * entries the joiner will never release once matured event time has moved
 * a horizon past them. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "experiments/internal.h"

static size_t slot_of(const served_tab_t *t, int32_t p, int64_t o)
{
    uint64_t z = ((uint64_t)(uint32_t)p << 48) ^ (uint64_t)o;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (size_t)(z ^ (z >> 31)) & (t->cap - 1);
}

static size_t find(const served_tab_t *t, int32_t p, int64_t o)
{
    if (!t->cap)
        return SIZE_MAX;
    for (size_t i = slot_of(t, p, o);; i = (i + 1) & (t->cap - 1)) {
        const served_key_t *k = &t->k[i];
        if (k->partition < 0)
            return SIZE_MAX;
        if (k->partition == p && k->offset == o)
            return i;
    }
}

/* Removes slot i and shifts the run after it back (Knuth 6.4, R). */
static void del(served_tab_t *t, size_t i)
{
    size_t mask = t->cap - 1;
    for (size_t j = (i + 1) & mask;; j = (j + 1) & mask) {
        const served_key_t *k = &t->k[j];
        if (k->partition < 0)
            break;
        size_t home = slot_of(t, k->partition, k->offset);
        /* j may move to i when its home is not cyclically in (i, j] */
        if (i <= j ? (home <= i || home > j) : (home <= i && home > j)) {
            t->k[i] = *k;
            t->v[i] = t->v[j];
            i = j;
        }
    }
    t->k[i].partition = -1;
    t->n--;
}

/* The first free slot of the probe from (p, o)'s home. */
static size_t free_slot(const served_tab_t *t, int32_t p, int64_t o)
{
    size_t k = slot_of(t, p, o);
    while (t->k[k].partition >= 0)
        k = (k + 1) & (t->cap - 1);
    return k;
}

static int grow(served_tab_t *t)
{
    size_t cap = t->cap ? t->cap * 2 : 1024;
    served_key_t *k = malloc(cap * sizeof(*k));
    /* a value to a cache line: a mature reads one line, not two */
    served_val_t *v = aligned_alloc(64, cap * sizeof(*v));
    if (!k || !v) {
        free(k);
        free(v);
        return -1;
    }
    for (size_t i = 0; i < cap; i++)
        k[i].partition = -1;
    served_tab_t old = *t;
    t->k = k;
    t->v = v;
    t->cap = cap;
    t->n = 0;
    for (size_t i = 0; i < old.cap; i++)
        if (old.k[i].partition >= 0) {
            size_t s = free_slot(t, old.k[i].partition, old.k[i].offset);
            t->k[s] = old.k[i];
            t->v[s] = old.v[i];
            t->n++;
        }
    free(old.k);
    free(old.v);
    return 0;
}

/* Drops entries older than the horizon behind the newest matured time. */
static void evict(served_tab_t *t)
{
    int64_t limit = t->newest_ms - t->horizon_ms;
    for (size_t i = 0; i < t->cap;) {
        if (t->k[i].partition >= 0 && t->v[i].time_ms < limit) {
            del(t, i); /* slot i now holds a shifted entry: look again */
            t->evicted++;
        } else {
            i++;
        }
    }
}

/* Variant indexes are below LD_EXP_VARIANTS_MAX + 1 for the set's own
 * callers; another value keeps its low byte, as the resume state does. */
static void val_set(served_val_t *d, int64_t time_ms, const ld_exp_served_t *sv)
{
    size_t ns =
        sv->nshadow < LD_EXP_SHADOW_MAX ? sv->nshadow : LD_EXP_SHADOW_MAX;
    d->time_ms = time_ms;
    d->score = sv->score;
    d->propensity = sv->propensity;
    d->variant = (uint8_t)sv->variant;
    d->nshadow = (uint8_t)ns;
    for (size_t i = 0; i < ns; i++) {
        d->shadow_var[i] = (uint8_t)sv->shadow[i].variant;
        d->shadow_score[i] = sv->shadow[i].score;
    }
}

void ld_exp_set_serve(ld_exp_set_t *set, int32_t partition, int64_t offset,
                      int64_t event_time_ms, const ld_exp_served_t *sv)
{
    served_tab_t *t = &set->served;
    if (partition < 0 || sv->variant < 0 || (size_t)sv->variant >= set->nvar)
        return;
    size_t i = find(t, partition, offset);
    if (i == SIZE_MAX) {
        if ((t->n + 1) * 2 > t->cap) {
            if (t->cap && t->newest_ms > INT64_MIN)
                evict(t);
            if ((t->n + 1) * 2 > t->cap && grow(t) < 0)
                return; /* no memory: this event stays out of experiments */
        }
        i = free_slot(t, partition, offset);
        t->k[i].partition = partition;
        t->k[i].offset = offset;
        t->n++;
        ld_exp_set_expose(set, sv->variant);
    }
    val_set(&t->v[i], event_time_ms, sv);
}

void ld_exp_set_prefetch(const ld_exp_set_t *set, int32_t partition,
                         int64_t offset)
{
    const served_tab_t *t = &set->served;
    if (!t->cap)
        return;
    /* the entry is at its home slot or a few after it (load <= 1/2) */
    size_t i = slot_of(t, partition, offset);
    __builtin_prefetch(&t->k[i]);
    __builtin_prefetch(&t->v[i]);
}

size_t ld_exp_set_mature(ld_exp_set_t *set, int32_t partition, int64_t offset,
                         double label, int64_t time_ms)
{
    served_tab_t *t = &set->served;
    if (time_ms > t->newest_ms)
        t->newest_ms = time_ms;
    size_t i = find(t, partition, offset);
    if (i == SIZE_MAX)
        return 0;
    const served_val_t *v = &t->v[i];
    ld_exp_shadow_t sh[LD_EXP_SHADOW_MAX];
    for (size_t k = 0; k < v->nshadow; k++) {
        sh[k].variant = v->shadow_var[k];
        sh[k].score = v->shadow_score[k];
    }
    ld_exp_obs_t obs = {v->variant, label,      v->score, v->propensity,
                        sh,         v->nshadow, time_ms};
    del(t, i);
    return ld_exp_set_observe(set, &obs);
}

void ld_exp_set_horizon(ld_exp_set_t *set, int64_t horizon_ms)
{
    set->served.horizon_ms = horizon_ms > 0 ? horizon_ms : 1;
}

size_t ld_exp_set_waiting(const ld_exp_set_t *set, uint64_t *evicted)
{
    if (evicted)
        *evicted = set->served.evicted;
    return set->served.n;
}

void served_free(served_tab_t *t)
{
    free(t->k);
    free(t->v);
    memset(t, 0, sizeof(*t));
}

void served_save(const served_tab_t *t, ld_wbuf_t *w)
{
    ld_wbuf_u64(w, t->evicted);
    ld_wbuf_i64(w, t->newest_ms);
    ld_wbuf_u64(w, t->n);
    /* in slot order: the same table gives the same bytes */
    for (size_t i = 0; i < t->cap; i++) {
        const served_val_t *v = &t->v[i];
        if (t->k[i].partition < 0)
            continue;
        ld_wbuf_u32(w, (uint32_t)t->k[i].partition);
        ld_wbuf_i64(w, t->k[i].offset);
        ld_wbuf_i64(w, v->time_ms);
        ld_wbuf_u8(w, v->variant);
        ld_wbuf_f64(w, v->score);
        ld_wbuf_f64(w, v->propensity);
        ld_wbuf_u8(w, v->nshadow);
        for (size_t k = 0; k < v->nshadow; k++) {
            ld_wbuf_u8(w, v->shadow_var[k]);
            ld_wbuf_f64(w, v->shadow_score[k]);
        }
    }
}

/* Variant indexes are checked by the caller against the set's list. */
void served_load(served_tab_t *t, ld_rbuf_t *r)
{
    uint64_t evicted = ld_rbuf_u64(r);
    int64_t newest = ld_rbuf_i64(r);
    uint64_t n = ld_rbuf_count(r, 37);
    int64_t horizon = t->horizon_ms;
    served_free(t);
    t->horizon_ms = horizon;
    t->evicted = evicted;
    t->newest_ms = newest;
    for (uint64_t i = 0; i < n && !r->err; i++) {
        served_key_t k;
        served_val_t v;
        memset(&v, 0, sizeof(v));
        k.partition = (int32_t)ld_rbuf_u32(r);
        k.offset = ld_rbuf_i64(r);
        v.time_ms = ld_rbuf_i64(r);
        v.variant = ld_rbuf_u8(r);
        v.score = ld_rbuf_f64(r);
        v.propensity = ld_rbuf_f64(r);
        uint8_t ns = ld_rbuf_u8(r);
        if (ns > LD_EXP_SHADOW_MAX || k.partition < 0) {
            r->err = LD_ERR_CORRUPT;
            return;
        }
        v.nshadow = ns;
        for (size_t j = 0; j < ns; j++) {
            v.shadow_var[j] = ld_rbuf_u8(r);
            v.shadow_score[j] = ld_rbuf_f64(r);
        }
        if ((t->n + 1) * 2 > t->cap && grow(t) < 0) {
            r->err = LD_ERR_NOMEM;
            return;
        }
        size_t s = free_slot(t, k.partition, k.offset);
        t->k[s] = k;
        t->v[s] = v;
        t->n++;
    }
}
