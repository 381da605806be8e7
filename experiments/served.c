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

/* A slot's dist from DIST_FAR on means "rehash to find the home": at a
 * load of at most 1/2 a probe that long needs a pathological key set.
 * Rehashing every entry a deletion shifts was most of its work when the
 * table is in cache (bench_experiments). */
#define DIST_FAR 255

static uint8_t dist_byte(size_t d)
{
    return (uint8_t)(d < DIST_FAR ? d : DIST_FAR);
}

/* Removes slot i and shifts the run after it back (Knuth 6.4, R): an
 * entry at j moves to i when its home is not cyclically in (i, j], that
 * is when it sits at least j - i slots past its home. */
static void del(served_tab_t *t, size_t i)
{
    size_t mask = t->cap - 1;
    for (size_t j = (i + 1) & mask;; j = (j + 1) & mask) {
        const served_slot_t *k = &t->k[j];
        if (k->partition < 0)
            break;
        size_t d = k->dist < DIST_FAR
                       ? k->dist
                       : (j - slot_of(t, k->partition, k->offset)) & mask;
        size_t gap = (j - i) & mask;
        if (d >= gap) {
            t->k[i] = *k;
            t->k[i].dist = dist_byte(d - gap);
            if (t->s)
                t->s[i] = t->s[j];
            i = j;
        }
    }
    t->k[i].partition = -1;
    t->n--;
}

/* The first free slot of the probe from (p, o)'s home; *dist: how far
 * past the home it is, for the slot's dist byte. */
static size_t free_slot(const served_tab_t *t, int32_t p, int64_t o,
                        uint8_t *dist)
{
    size_t home = slot_of(t, p, o), k = home;
    while (t->k[k].partition >= 0)
        k = (k + 1) & (t->cap - 1);
    *dist = dist_byte((k - home) & (t->cap - 1));
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
            uint8_t dist;
            size_t j = free_slot(t, old.k[i].partition, old.k[i].offset, &dist);
            t->k[j] = old.k[i];
            t->k[j].dist = dist;
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
        uint8_t dist;
        i = free_slot(t, partition, offset, &dist);
        if (val_set(t, i, event_time_ms, sv) < 0)
            return; /* no memory: this event stays out of experiments */
        t->k[i].partition = partition;
        t->k[i].offset = offset;
        t->k[i].dist = dist;
        t->n++;
        ld_exp_set_expose(set, sv->variant);
        return;
    }
    /* served again (a rewind after a restart): the newest serving counts;
     * without memory for its side entry, the old one stays whole */
    (void)val_set(t, i, event_time_ms, sv);
}

/* One of 64 bits for a key: a mature whose bit no staged key has set
 * skips the scan below (it cost bench_experiments a tenth more without). */
static uint64_t stage_bit(int32_t partition, int64_t offset)
{
    uint64_t z = ((uint64_t)offset + (uint64_t)(uint32_t)partition) *
                 0x9e3779b97f4a7c15ull;
    return (uint64_t)1 << (z >> 58);
}

/* Staging. A serve meets a random slot of a table of a megabyte or so,
 * a cache miss the loop thread would wait for at every event (the largest
 * part of what experiments cost bench_e2e). So a serve only joins a batch
 * of SERVED_STAGE; a full batch prefetches all its slots, then inserts
 * them in order, its misses overlapped: the served table's share of the
 * loop thread's samples fell from 10.6 % to 6 % (perf, bench_e2e
 * --experiments on). A prefetch at each serve with the insert 8 serves
 * later, as before, hid nothing on that machine: the probe still took 180
 * cycles on average, as with no prefetch at all (rdtsc, 600 000 inserts),
 * and the line was not there yet or no longer. Inserts keep their order,
 * so each meets the table it would have met at once:
 * - a mature of another key need not wait for them. Linear probing with
 *   Knuth's deletion leaves the table as if the deleted key had never been
 *   inserted (6.4, Algorithm R), so deleting before or after an insert of
 *   another key gives the same slots, as long as neither grows the table
 *   or evicts; and a mature reads nothing an insert writes but its key.
 * - a mature of a staged key, and every reader of the table or of the
 *   exposure counts, drains the batch first;
 * - an insert that may meet a full table (evict, grow) goes in at once,
 *   after the batch: the table is then the one it would have met, and it
 *   is the only kind of insert that reads the newest matured time.
 * The same slots, evictions and exposure counts: the same state bytes. */
void served_drain(ld_exp_set_t *set)
{
    served_tab_t *t = &set->served;
    for (size_t k = 0; k < t->nstage; k++)
        ld_exp_set_prefetch(set, t->stage[k].partition, t->stage[k].offset);
    for (size_t k = 0; k < t->nstage; k++) {
        const served_staged_t *o = &t->stage[k];
        insert(set, o->partition, o->offset, o->time_ms, &o->sv);
    }
    t->nstage = 0;
    t->stage_bits = 0;
}

void ld_exp_set_serve(ld_exp_set_t *set, int32_t partition, int64_t offset,
                      int64_t event_time_ms, const ld_exp_served_t *sv)
{
    served_tab_t *t = &set->served;
    if (partition < 0 || sv->variant < 0 || (size_t)sv->variant >= set->nvar)
        return;
    /* the staged keys, and this one, all new: could an insert fill it? */
    if ((t->n + t->nstage + 1) * 2 > t->cap) {
        served_drain(set);
        insert(set, partition, offset, event_time_ms, sv);
        return;
    }
    served_staged_t *e = &t->stage[t->nstage++];
    t->stage_bits |= stage_bit(partition, offset);
    e->partition = partition;
    e->offset = offset;
    e->time_ms = event_time_ms;
    e->sv = *sv;
    if (t->nstage == SERVED_STAGE)
        served_drain(set);
}

/* Whether (partition, offset) waits in the batch. */
static int staged(const served_tab_t *t, int32_t partition, int64_t offset)
{
    if (!(t->stage_bits & stage_bit(partition, offset)))
        return 0;
    for (size_t k = 0; k < t->nstage; k++)
        if (t->stage[k].partition == partition && t->stage[k].offset == offset)
            return 1;
    return 0;
}

void ld_exp_set_prefetch(const ld_exp_set_t *set, int32_t partition,
                         int64_t offset)
{
    const served_tab_t *t = &set->served;
    if (!t->cap)
        return;
    /* the entry is at its home slot or a few after it (load <= 1/2), and
     * its deletion reads the slot after it: the home's line and the next.
     * 29 % of bench_e2e's inserts probe past the home's line; fetching the
     * next line only for a home at a line's end made a mature's probe and
     * deletion 25 % slower (rdtsc) */
    size_t i = slot_of(t, partition, offset);
    __builtin_prefetch(&t->k[i]);
    __builtin_prefetch(&t->k[((i | 1) + 1) & (t->cap - 1)]);
    if (t->s)
        __builtin_prefetch(&t->s[i]);
}

size_t ld_exp_set_mature(ld_exp_set_t *set, int32_t partition, int64_t offset,
                         double label, int64_t time_ms)
{
    served_tab_t *t = &set->served;
    if (staged(t, partition, offset)) /* see "Staging" above */
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
        uint8_t dist;
        size_t s = free_slot(t, p, o, &dist);
        if (val_set(t, s, time_ms, &sv) < 0) {
            r->err = LD_ERR_NOMEM;
            return;
        }
        t->k[s].partition = p;
        t->k[s].offset = o;
        t->k[s].dist = dist;
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
