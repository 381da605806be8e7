/* SPDX-License-Identifier: Apache-2.0 */
/* What served each event, kept from ingestion until its example matures:
 * an open-addressing table on (partition, offset) with backward-shift
 * deletion (no tombstones, so a long run never degrades it), evicting
 * entries the joiner will never release once matured event time has moved
 * a horizon past them. */
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

static served_ent_t *find(served_tab_t *t, int32_t p, int64_t o)
{
    if (!t->cap)
        return NULL;
    for (size_t i = slot_of(t, p, o);; i = (i + 1) & (t->cap - 1)) {
        served_ent_t *e = &t->v[i];
        if (e->partition < 0)
            return NULL;
        if (e->partition == p && e->offset == o)
            return e;
    }
}

/* Removes slot i and shifts the run after it back (Knuth 6.4, R). */
static void del(served_tab_t *t, size_t i)
{
    size_t mask = t->cap - 1;
    for (size_t j = (i + 1) & mask;; j = (j + 1) & mask) {
        served_ent_t *e = &t->v[j];
        if (e->partition < 0)
            break;
        size_t home = slot_of(t, e->partition, e->offset);
        /* e may move to i when its home is not cyclically in (i, j] */
        if (i <= j ? (home <= i || home > j) : (home <= i && home > j)) {
            t->v[i] = *e;
            i = j;
        }
    }
    t->v[i].partition = -1;
    t->n--;
}

static int grow(served_tab_t *t)
{
    size_t cap = t->cap ? t->cap * 2 : 1024;
    served_ent_t *v = malloc(cap * sizeof(*v));
    if (!v)
        return -1;
    for (size_t i = 0; i < cap; i++)
        v[i].partition = -1;
    served_tab_t old = *t;
    t->v = v;
    t->cap = cap;
    t->n = 0;
    for (size_t i = 0; i < old.cap; i++)
        if (old.v[i].partition >= 0) {
            size_t k = slot_of(t, old.v[i].partition, old.v[i].offset);
            while (t->v[k].partition >= 0)
                k = (k + 1) & (cap - 1);
            t->v[k] = old.v[i];
            t->n++;
        }
    free(old.v);
    return 0;
}

/* Drops entries older than the horizon behind the newest matured time. */
static void evict(served_tab_t *t)
{
    int64_t limit = t->newest_ms - t->horizon_ms;
    for (size_t i = 0; i < t->cap;) {
        served_ent_t *e = &t->v[i];
        if (e->partition >= 0 && e->time_ms < limit) {
            del(t, i); /* slot i now holds a shifted entry: look again */
            t->evicted++;
        } else {
            i++;
        }
    }
}

void ld_exp_set_serve(ld_exp_set_t *set, int32_t partition, int64_t offset,
                      int64_t event_time_ms, const ld_exp_served_t *sv)
{
    served_tab_t *t = &set->served;
    if (partition < 0 || sv->variant < 0 || (size_t)sv->variant >= set->nvar)
        return;
    served_ent_t *e = find(t, partition, offset);
    if (!e) {
        if ((t->n + 1) * 2 > t->cap) {
            if (t->cap && t->newest_ms > INT64_MIN)
                evict(t);
            if ((t->n + 1) * 2 > t->cap && grow(t) < 0)
                return; /* no memory: this event stays out of experiments */
        }
        size_t k = slot_of(t, partition, offset);
        while (t->v[k].partition >= 0)
            k = (k + 1) & (t->cap - 1);
        e = &t->v[k];
        t->n++;
        ld_exp_set_expose(set, sv->variant);
    }
    e->partition = partition;
    e->offset = offset;
    e->time_ms = event_time_ms;
    e->sv = *sv;
}

size_t ld_exp_set_mature(ld_exp_set_t *set, int32_t partition, int64_t offset,
                         double label, int64_t time_ms)
{
    served_tab_t *t = &set->served;
    if (time_ms > t->newest_ms)
        t->newest_ms = time_ms;
    served_ent_t *e = find(t, partition, offset);
    if (!e)
        return 0;
    ld_exp_served_t sv = e->sv;
    del(t, (size_t)(e - t->v));
    ld_exp_obs_t obs = {sv.variant, label,      sv.score, sv.propensity,
                        sv.shadow,  sv.nshadow, time_ms};
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
        const served_ent_t *e = &t->v[i];
        if (e->partition < 0)
            continue;
        ld_wbuf_u32(w, (uint32_t)e->partition);
        ld_wbuf_i64(w, e->offset);
        ld_wbuf_i64(w, e->time_ms);
        ld_wbuf_u8(w, (uint8_t)e->sv.variant);
        ld_wbuf_f64(w, e->sv.score);
        ld_wbuf_f64(w, e->sv.propensity);
        ld_wbuf_u8(w, (uint8_t)e->sv.nshadow);
        for (size_t k = 0; k < e->sv.nshadow; k++) {
            ld_wbuf_u8(w, (uint8_t)e->sv.shadow[k].variant);
            ld_wbuf_f64(w, e->sv.shadow[k].score);
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
        served_ent_t e;
        memset(&e, 0, sizeof(e));
        e.partition = (int32_t)ld_rbuf_u32(r);
        e.offset = ld_rbuf_i64(r);
        e.time_ms = ld_rbuf_i64(r);
        e.sv.variant = ld_rbuf_u8(r);
        e.sv.score = ld_rbuf_f64(r);
        e.sv.propensity = ld_rbuf_f64(r);
        e.sv.nshadow = ld_rbuf_u8(r);
        if (e.sv.nshadow > LD_EXP_SHADOW_MAX || e.partition < 0) {
            r->err = LD_ERR_CORRUPT;
            return;
        }
        for (size_t k = 0; k < e.sv.nshadow; k++) {
            e.sv.shadow[k].variant = ld_rbuf_u8(r);
            e.sv.shadow[k].score = ld_rbuf_f64(r);
        }
        if ((t->n + 1) * 2 > t->cap && grow(t) < 0) {
            r->err = LD_ERR_NOMEM;
            return;
        }
        size_t k = slot_of(t, e.partition, e.offset);
        while (t->v[k].partition >= 0)
            k = (k + 1) & (t->cap - 1);
        t->v[k] = e;
        t->n++;
    }
}
