/* SPDX-License-Identifier: Apache-2.0 */
/* What served each event, kept from ingestion until its example matures:
 * an open-addressing table on (partition, offset) with backward-shift
 * deletion (no tombstones, so a long run never degrades it), evicting
 * entries the joiner will never release once matured event time has moved
 * a horizon past them. */
#include <math.h>
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
        const served_slot_t *k = &t->k[i];
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
        const served_slot_t *k = &t->k[j];
        if (k->partition < 0)
            break;
        size_t home = slot_of(t, k->partition, k->offset);
        /* j may move to i when its home is not cyclically in (i, j] */
        if (i <= j ? (home <= i || home > j) : (home <= i && home > j)) {
            t->k[i] = *k;
            if (t->s)
                t->s[i] = t->s[j];
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

/* Side entries of a table that had none: no propensity, no shadows. */
static void side_clear(served_side_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        memset(&s[i], 0, sizeof(s[i]));
        s[i].propensity = NAN;
    }
}

/* Twice the slots (and the side entries, if any), every entry rehashed in
 * slot order: the same positions as ever, so the same state bytes. */
static int grow(served_tab_t *t)
{
    size_t cap = t->cap ? t->cap * 2 : 1024;
    /* slots aligned to a line: a probe reads one line, not two */
    served_slot_t *k = aligned_alloc(64, cap * sizeof(*k));
    served_side_t *sd = t->s ? malloc(cap * sizeof(*sd)) : NULL;
    if (!k || (t->s && !sd)) {
        free(k);
        free(sd);
        return -1;
    }
    for (size_t i = 0; i < cap; i++)
        k[i].partition = -1;
    served_tab_t old = *t;
    t->k = k;
    t->s = sd;
    t->cap = cap;
    t->n = 0;
    for (size_t i = 0; i < old.cap; i++)
        if (old.k[i].partition >= 0) {
            size_t j = free_slot(t, old.k[i].partition, old.k[i].offset);
            t->k[j] = old.k[i];
            if (sd)
                sd[j] = old.s[i];
            t->n++;
        }
    free(old.k);
    free(old.s);
    return 0;
}

/* The side entries, at the first event that needs one. */
static int side_alloc(served_tab_t *t)
{
    served_side_t *sd = malloc(t->cap * sizeof(*sd));
    if (!sd)
        return -1;
    side_clear(sd, t->cap);
    t->s = sd;
    return 0;
}

/* Drops entries older than the horizon behind the newest matured time. */
static void evict(served_tab_t *t)
{
    int64_t limit = t->newest_ms - t->horizon_ms;
    for (size_t i = 0; i < t->cap;) {
        if (t->k[i].partition >= 0 && t->k[i].time_ms < limit) {
            del(t, i); /* slot i now holds a shifted entry: look again */
            t->evicted++;
        } else {
            i++;
        }
    }
}

/* Variant indexes are below LD_EXP_VARIANTS_MAX + 1 for the set's own
 * callers; another value keeps its low byte, as the resume state does.
 * Returns -1 when the side entries it needs cannot be allocated. */
static int val_set(served_tab_t *t, size_t i, int64_t time_ms,
                   const ld_exp_served_t *sv)
{
    size_t ns =
        sv->nshadow < LD_EXP_SHADOW_MAX ? sv->nshadow : LD_EXP_SHADOW_MAX;
    if (!t->s && (ns || !isnan(sv->propensity)) && side_alloc(t) < 0)
        return -1;
    served_slot_t *d = &t->k[i];
    d->time_ms = time_ms;
    d->score = sv->score;
    d->variant = (uint8_t)sv->variant;
    d->nshadow = (uint8_t)ns;
    if (!t->s)
        return 0;
    served_side_t *e = &t->s[i];
    e->propensity = sv->propensity;
    for (size_t k = 0; k < ns; k++) {
        e->shadow_var[k] = (uint8_t)sv->shadow[k].variant;
        e->shadow_score[k] = sv->shadow[k].score;
    }
    return 0;
}

static void insert(ld_exp_set_t *set, int32_t partition, int64_t offset,
                   int64_t event_time_ms, const ld_exp_served_t *sv)
{
    served_tab_t *t = &set->served;
    size_t i = find(t, partition, offset);
    if (i == SIZE_MAX) {
        if ((t->n + 1) * 2 > t->cap) {
            if (t->cap && t->newest_ms > INT64_MIN)
                evict(t);
            if ((t->n + 1) * 2 > t->cap && grow(t) < 0)
                return; /* no memory: this event stays out of experiments */
        }
        i = free_slot(t, partition, offset);
        if (val_set(t, i, event_time_ms, sv) < 0)
            return; /* no memory: this event stays out of experiments */
        t->k[i].partition = partition;
        t->k[i].offset = offset;
        t->n++;
        ld_exp_set_expose(set, sv->variant);
        return;
    }
    /* served again (a rewind after a restart): the newest serving counts;
     * without memory for its side entry, the old one stays whole */
    (void)val_set(t, i, event_time_ms, sv);
}

/* Staging. A serve probes a random slot of a table of a megabyte or so,
 * a cache miss the loop thread would wait for at every event (the largest
 * part of what experiments cost bench_e2e). So a serve only prefetches its
 * home slot and joins a ring of SERVED_STAGE; the oldest is inserted when
 * the ring is full, its line arrived meanwhile. Inserts keep their order,
 * and every reader drains the ring first, so each insert meets the table
 * (and its horizon and newest time) it would have met at once: the same
 * slots, evictions and exposure counts, the same state bytes. */
void ld_exp_set_serve(ld_exp_set_t *set, int32_t partition, int64_t offset,
                      int64_t event_time_ms, const ld_exp_served_t *sv)
{
    served_tab_t *t = &set->served;
    if (partition < 0 || sv->variant < 0 || (size_t)sv->variant >= set->nvar)
        return;
    if (t->nstage == SERVED_STAGE) {
        const served_staged_t *o = &t->stage[t->stage_head];
        insert(set, o->partition, o->offset, o->time_ms, &o->sv);
        t->stage_head = (t->stage_head + 1) % SERVED_STAGE;
        t->nstage--;
    }
    served_staged_t *e =
        &t->stage[(t->stage_head + t->nstage++) % SERVED_STAGE];
    e->partition = partition;
    e->offset = offset;
    e->time_ms = event_time_ms;
    e->sv = *sv;
    ld_exp_set_prefetch(set, partition, offset);
}

void served_drain(ld_exp_set_t *set)
{
    served_tab_t *t = &set->served;
    while (t->nstage) {
        const served_staged_t *o = &t->stage[t->stage_head];
        insert(set, o->partition, o->offset, o->time_ms, &o->sv);
        t->stage_head = (t->stage_head + 1) % SERVED_STAGE;
        t->nstage--;
    }
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
    if (t->s)
        __builtin_prefetch(&t->s[i]);
}

size_t ld_exp_set_mature(ld_exp_set_t *set, int32_t partition, int64_t offset,
                         double label, int64_t time_ms)
{
    served_tab_t *t = &set->served;
    served_drain(set);
    if (time_ms > t->newest_ms)
        t->newest_ms = time_ms;
    size_t i = find(t, partition, offset);
    if (i == SIZE_MAX)
        return 0;
    const served_slot_t *v = &t->k[i];
    const served_side_t *e = t->s ? &t->s[i] : NULL;
    ld_exp_shadow_t sh[LD_EXP_SHADOW_MAX];
    for (size_t k = 0; k < v->nshadow; k++) {
        sh[k].variant = e->shadow_var[k];
        sh[k].score = e->shadow_score[k];
    }
    ld_exp_obs_t obs = {
        v->variant, label,      v->score, e ? e->propensity : NAN,
        sh,         v->nshadow, time_ms};
    del(t, i);
    return ld_exp_set_observe(set, &obs);
}

void ld_exp_set_horizon(ld_exp_set_t *set, int64_t horizon_ms)
{
    served_drain(set); /* what was served meets the horizon it met then */
    set->served.horizon_ms = horizon_ms > 0 ? horizon_ms : 1;
}

size_t ld_exp_set_waiting(const ld_exp_set_t *set, uint64_t *evicted)
{
    served_drain((ld_exp_set_t *)set);
    if (evicted)
        *evicted = set->served.evicted;
    return set->served.n;
}

void served_free(served_tab_t *t)
{
    free(t->k);
    free(t->s);
    memset(t, 0, sizeof(*t));
}

void served_save(const served_tab_t *t, ld_wbuf_t *w)
{
    ld_wbuf_u64(w, t->evicted);
    ld_wbuf_i64(w, t->newest_ms);
    ld_wbuf_u64(w, t->n);
    /* in slot order: the same table gives the same bytes */
    for (size_t i = 0; i < t->cap; i++) {
        const served_slot_t *v = &t->k[i];
        const served_side_t *e = t->s ? &t->s[i] : NULL;
        if (v->partition < 0)
            continue;
        ld_wbuf_u32(w, (uint32_t)v->partition);
        ld_wbuf_i64(w, v->offset);
        ld_wbuf_i64(w, v->time_ms);
        ld_wbuf_u8(w, v->variant);
        ld_wbuf_f64(w, v->score);
        ld_wbuf_f64(w, e ? e->propensity : NAN);
        ld_wbuf_u8(w, v->nshadow);
        for (size_t k = 0; k < v->nshadow; k++) {
            ld_wbuf_u8(w, e->shadow_var[k]);
            ld_wbuf_f64(w, e->shadow_score[k]);
        }
    }
}

/* Variant indexes are checked by served_remap against the set's list. */
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
        int32_t p = (int32_t)ld_rbuf_u32(r);
        int64_t o = ld_rbuf_i64(r);
        int64_t time_ms = ld_rbuf_i64(r);
        /* the variant bytes as saved, remapped after the load */
        ld_exp_served_t sv;
        memset(&sv, 0, sizeof(sv));
        sv.variant = ld_rbuf_u8(r);
        sv.score = ld_rbuf_f64(r);
        sv.propensity = ld_rbuf_f64(r);
        uint8_t ns = ld_rbuf_u8(r);
        if (ns > LD_EXP_SHADOW_MAX || p < 0) {
            r->err = LD_ERR_CORRUPT;
            return;
        }
        sv.nshadow = ns;
        for (size_t j = 0; j < ns; j++) {
            sv.shadow[j].variant = ld_rbuf_u8(r);
            sv.shadow[j].score = ld_rbuf_f64(r);
        }
        if (r->err)
            return;
        if ((t->n + 1) * 2 > t->cap && grow(t) < 0) {
            r->err = LD_ERR_NOMEM;
            return;
        }
        size_t s = free_slot(t, p, o);
        if (val_set(t, s, time_ms, &sv) < 0) {
            r->err = LD_ERR_NOMEM;
            return;
        }
        t->k[s].partition = p;
        t->k[s].offset = o;
        t->n++;
    }
}

int served_remap(served_tab_t *t, const int *remap, int other_index)
{
    for (size_t i = 0; i < t->cap; i++) {
        served_slot_t *v = &t->k[i];
        if (v->partition < 0)
            continue;
        if (v->variant > LD_EXP_VARIANTS_MAX)
            return -1;
        v->variant = (uint8_t)remap[v->variant];
        for (size_t k = 0; k < v->nshadow; k++) {
            uint8_t *sv = &t->s[i].shadow_var[k];
            *sv =
                (uint8_t)(*sv > LD_EXP_VARIANTS_MAX ? other_index : remap[*sv]);
        }
    }
    return 0;
}
