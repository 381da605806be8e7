/* SPDX-License-Identifier: Apache-2.0 */
/* Bounded-memory sketches: a seeded reservoir sample and SpaceSaving
 * frequent items. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "triggers/internal.h"

/* ---- Reservoir ---------------------------------------------------------- */

int res_init(reservoir_t *r, uint32_t cap, uint64_t seed)
{
    r->v = calloc(cap, sizeof(*r->v));
    r->cap = cap;
    r->n = 0;
    r->rng = seed;
    return r->v ? 0 : -1;
}

void res_free(reservoir_t *r)
{
    free(r->v);
    r->v = NULL;
}

void res_clear(reservoir_t *r, uint64_t seed)
{
    r->n = 0;
    r->rng = seed;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Order-preserving map of a float's bits to an unsigned key. */
static uint32_t float_key(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    return u & 0x80000000u ? ~u : u | 0x80000000u;
}

static float key_float(uint32_t k)
{
    uint32_t u = k & 0x80000000u ? k & 0x7fffffffu : ~k;
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

/* LSD radix sort on the keys, 4 passes of 8 bits: a closed window sorts
 * every numeric sample, and a comparison sort was a fifth of the cost of
 * watching 40 features. Falls back to qsort without memory. */
void res_sort(reservoir_t *r)
{
    uint32_t n = res_size(r);
    uint32_t *a = malloc((size_t)n * 2 * sizeof(uint32_t));
    if (!a) {
        qsort(r->v, n, sizeof(*r->v), cmp_float);
        return;
    }
    uint32_t *b = a + n;
    for (uint32_t i = 0; i < n; i++)
        a[i] = float_key(r->v[i]);
    for (int shift = 0; shift < 32; shift += 8) {
        uint32_t cnt[257] = {0};
        for (uint32_t i = 0; i < n; i++)
            cnt[((a[i] >> shift) & 0xffu) + 1]++;
        for (int d = 0; d < 256; d++)
            cnt[d + 1] += cnt[d];
        for (uint32_t i = 0; i < n; i++)
            b[cnt[(a[i] >> shift) & 0xffu]++] = a[i];
        uint32_t *tmp = a;
        a = b;
        b = tmp;
    }
    /* After an even number of passes the result is back in the first
     * half of the allocation. */
    for (uint32_t i = 0; i < n; i++)
        r->v[i] = key_float(a[i]);
    free(a < b ? a : b);
}

void res_assign(reservoir_t *dst, const reservoir_t *src)
{
    memcpy(dst->v, src->v, (size_t)res_size(src) * sizeof(*dst->v));
    dst->n = src->n;
    dst->rng = src->rng;
}

uint32_t res_size(const reservoir_t *r)
{
    return r->n < r->cap ? (uint32_t)r->n : r->cap;
}

void res_copy(const reservoir_t *r, double *out)
{
    uint32_t n = res_size(r);
    for (uint32_t i = 0; i < n; i++)
        out[i] = r->v[i];
}

void res_save(const reservoir_t *r, ld_wbuf_t *w)
{
    ld_wbuf_u64(w, r->n);
    ld_wbuf_u64(w, r->rng);
    uint32_t n = res_size(r);
    for (uint32_t i = 0; i < n; i++)
        ld_wbuf_f32(w, r->v[i]);
}

void res_load(reservoir_t *r, ld_rbuf_t *rb)
{
    uint64_t n = ld_rbuf_u64(rb);
    uint64_t rng = ld_rbuf_u64(rb);
    uint32_t m = n < r->cap ? (uint32_t)n : r->cap;
    if (rb->err || (size_t)m * 4 > rb->len - rb->off) {
        rb->err = LD_ERR_CORRUPT;
        return;
    }
    r->n = n;
    r->rng = rng;
    for (uint32_t i = 0; i < m; i++)
        r->v[i] = ld_rbuf_f32(rb);
}

/* ---- SpaceSaving ---------------------------------------------------------
 * Counters sit in a min-heap on count so the replaced minimum is found in
 * O(log k); an open-addressing index (slots) maps item -> heap position and
 * each counter remembers its index slot, so heap moves never search the
 * index. The heap order is part of the resume state and decides which of
 * several tied minima is replaced next, so the sifts below move counters
 * exactly as a swap-based sift does; they only carry the moving counter in
 * a register instead of swapping it level by level. */

#define SS_EMPTY UINT32_MAX

static inline uint32_t ss_hash(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

/* Index slots: a power of two >= 4k; at most a quarter full, a
 * backward-shift delete rarely moves more than one slot. */
static uint32_t ss_nslots(uint32_t k)
{
    uint32_t n = 16;
    while (n < 4 * k)
        n *= 2;
    return n;
}

/* Index slot of item, or SS_EMPTY. */
static inline uint32_t ss_find(const spacesaving_t *s, uint32_t item)
{
    uint32_t mask = s->mask;
    for (uint32_t h = ss_hash(item) & mask;; h = (h + 1) & mask) {
        const ss_slot_t *sl = &s->slots[h];
        if (sl->pos == SS_EMPTY)
            return SS_EMPTY;
        if (sl->item == item)
            return h;
    }
}

static inline void ss_index_put(spacesaving_t *s, uint32_t item, uint32_t pos)
{
    uint32_t h = ss_hash(item) & s->mask;
    while (s->slots[h].pos != SS_EMPTY)
        h = (h + 1) & s->mask;
    s->slots[h].item = item;
    s->slots[h].pos = pos;
    s->e[pos].hslot = h;
}

/* Backward-shift deletion keeps probe chains intact without tombstones. */
static void ss_index_del(spacesaving_t *s, uint32_t h)
{
    uint32_t mask = s->mask;
    s->slots[h].pos = SS_EMPTY;
    for (uint32_t j = (h + 1) & mask; s->slots[j].pos != SS_EMPTY;
         j = (j + 1) & mask) {
        uint32_t home = ss_hash(s->slots[j].item) & mask;
        /* Move slot j into the hole when its home is not in (h, j]. */
        if (((j - home) & mask) >= ((j - h) & mask)) {
            s->slots[h] = s->slots[j];
            s->e[s->slots[h].pos].hslot = h;
            s->slots[j].pos = SS_EMPTY;
            h = j;
        }
    }
}

/* Counter at heap position i moves down while its smaller child (the left
 * one on a tie) is strictly smaller. */
static inline void ss_sift_down(spacesaving_t *s, uint32_t i)
{
    ss_entry_t *e = s->e;
    ss_entry_t x = e[i];
    uint32_t used = s->used;
    for (;;) {
        uint32_t m = 2 * i + 1;
        if (m >= used)
            break;
        /* The smaller child, the left one on a tie, without a branch (it
         * is a coin flip among the tied minima of a flat tail). */
        if (m + 1 < used)
            m += e[m + 1].count < e[m].count;
        if (!(e[m].count < x.count))
            break;
        e[i] = e[m];
        s->slots[e[i].hslot].pos = i;
        i = m;
    }
    e[i] = x;
    s->slots[x.hslot].pos = i;
}

static void ss_sift_up(spacesaving_t *s, uint32_t i)
{
    ss_entry_t *e = s->e;
    ss_entry_t x = e[i];
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (e[p].count <= x.count)
            break;
        e[i] = e[p];
        s->slots[e[i].hslot].pos = i;
        i = p;
    }
    e[i] = x;
    s->slots[x.hslot].pos = i;
}

int ss_init(spacesaving_t *s, uint32_t k)
{
    memset(s, 0, sizeof(*s));
    s->k = k;
    s->mask = ss_nslots(k) - 1;
    s->e = calloc(k, sizeof(*s->e));
    s->slots = malloc(ss_nslots(k) * sizeof(*s->slots));
    if (!s->e || !s->slots) {
        ss_free(s);
        return -1;
    }
    ss_clear(s);
    return 0;
}

void ss_free(spacesaving_t *s)
{
    free(s->e);
    free(s->slots);
    s->e = NULL;
    s->slots = NULL;
}

void ss_clear(spacesaving_t *s)
{
    memset(s->slots, 0xff, (s->mask + 1) * sizeof(*s->slots));
    s->used = 0;
    s->n = 0;
}

void ss_add(spacesaving_t *s, uint32_t item)
{
    s->n++;
    uint32_t h = ss_find(s, item);
    if (h != SS_EMPTY) {
        uint32_t pos = s->slots[h].pos;
        s->e[pos].count++;
        ss_sift_down(s, pos);
        return;
    }
    if (s->used < s->k) {
        uint32_t pos = s->used++;
        s->e[pos].item = item;
        s->e[pos].count = 1;
        s->e[pos].err = 0;
        ss_index_put(s, item, pos);
        ss_sift_up(s, pos);
        return;
    }
    /* Replace the minimum (the heap root): it inherits min + 1. */
    ss_entry_t *root = &s->e[0];
    ss_index_del(s, root->hslot);
    root->item = item;
    root->err = root->count;
    root->count++;
    ss_index_put(s, item, 0);
    ss_sift_down(s, 0);
}

uint64_t ss_count(const spacesaving_t *s, uint32_t item)
{
    uint32_t h = ss_find(s, item);
    if (h == SS_EMPTY)
        return 0;
    const ss_entry_t *e = &s->e[s->slots[h].pos];
    return e->count - e->err;
}

void ss_save(const spacesaving_t *s, ld_wbuf_t *w)
{
    ld_wbuf_u64(w, s->n);
    ld_wbuf_u32(w, s->used);
    for (uint32_t i = 0; i < s->used; i++) {
        ld_wbuf_u32(w, s->e[i].item);
        ld_wbuf_u64(w, s->e[i].count);
        ld_wbuf_u64(w, s->e[i].err);
    }
}

void ss_load(spacesaving_t *s, ld_rbuf_t *rb)
{
    uint64_t n = ld_rbuf_u64(rb);
    uint32_t used = ld_rbuf_u32(rb);
    if (rb->err || used > s->k || (size_t)used * 20 > rb->len - rb->off) {
        rb->err = LD_ERR_CORRUPT;
        return;
    }
    ss_clear(s);
    s->n = n;
    for (uint32_t i = 0; i < used; i++) {
        uint32_t item = ld_rbuf_u32(rb);
        if (ss_find(s, item) != SS_EMPTY) {
            rb->err = LD_ERR_CORRUPT; /* duplicate item */
            ss_clear(s);
            return;
        }
        s->e[i].item = item;
        s->e[i].count = ld_rbuf_u64(rb);
        s->e[i].err = ld_rbuf_u64(rb);
        if (s->e[i].err > s->e[i].count)
            rb->err = LD_ERR_CORRUPT;
        s->used = i + 1;
        ss_index_put(s, item, i);
    }
}

ld_err_t ss_cat_test(const spacesaving_t *ref, const spacesaving_t *cur,
                     double min_expected, ld_triggers_cat_test_t *out)
{
    if (ref->n == 0 || cur->n == 0)
        return LD_ERR_INVAL;
    size_t m = ref->used;
    double *p = calloc(m + 1, sizeof(*p)), *q = calloc(m + 1, sizeof(*q));
    ld_err_t err = LD_ERR_NOMEM;
    if (!p || !q)
        goto out;
    /* The bins are the reference's tracked items plus one "other" bin for
     * everything else, in both samples: one partition of the items, as a
     * test of homogeneity needs. (Taking the union of both sketches' items
     * put an item tracked only by cur in its own bin there but in "other"
     * on the reference side, which reads as a shift where there is none.)
     * Counts are the guaranteed ones (count - err); what a sketch could
     * not vouch for stays in "other". Exact while the feature has at most
     * k distinct values. */
    double sp = 0.0, sq = 0.0;
    for (size_t i = 0; i < m; i++) {
        p[i] = (double)(ref->e[i].count - ref->e[i].err);
        q[i] = (double)ss_count(cur, ref->e[i].item);
        sp += p[i];
        sq += q[i];
    }
    p[m] = fmax((double)ref->n - sp, 0.0);
    q[m] = fmax((double)cur->n - sq, 0.0);
    err = ld_triggers_stat_cat_test(p, q, m + 1, min_expected, out);
out:
    free(p);
    free(q);
    return err;
}
