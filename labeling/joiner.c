/* SPDX-License-Identifier: Apache-2.0 */
/* The joiner: pending-event and pending-label stores, per-partition
 * watermarks, label policies and the ordered release of examples. The rules
 * that make the output independent of interleaving and restarts are written
 * down in docs/LABELING.md; comments here name the rule they implement. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/bytes.h"
#include "labeling/internal.h"
#include "labeling/labeling.h"

#define NO_DT      INT32_MIN
#define NO_BLK     UINT32_MAX
#define BLOCK_RECS 256u /* records per resume block of a partition */
#define MAX_PART   65535
#define TIME_LIMIT (INT64_C(1) << 61)

/* Event timer states: each event has exactly one timer in the heap. */
enum { T_DECIDE = 0, T_DELAYED = 1, T_RETIRE = 2, T_FIFO = 3 };
/* Bits of an event's pk byte: PACK_* flags (0x1, 0x2), E_DL_DONE, and the
 * Rice parameter (0..31) in the top five bits. */
enum { E_DL_DONE = 0x4, PK_PARAM_SHIFT = 3 };

/* What the hash index and the timer heaps read of an entry: the first
 * member of both entry kinds. The source offset is kept relative to the
 * first offset of its resume block, which the entry pins anyway. */
typedef struct ent {
    int64_t t;     /* event or label time */
    uint32_t hpos; /* index in its heap */
    uint32_t blk;  /* resume block (sequence number) of this record */
    uint16_t rel;  /* source offset - first offset of block blk */
    uint16_t part; /* source partition */
    uint8_t keylen;
    uint8_t state; /* events: T_*; labels: 0 */
    uint8_t pk;    /* events: PACK_* | E_DL_DONE | param << PK_PARAM_SHIFT */
    uint8_t szc;   /* events: chunk size / 8, 0 for a big chunk */
} ent_t;

/* A pending event. data[] holds the key, then the packed features. */
typedef struct ev {
    ent_t en;
    float agg_val;   /* aggregated in-window label (window mode) */
    int32_t agg_dt;  /* its label time - t, NO_DT when no label */
    float dl_val;    /* label of the delayed_pos copy to emit */
    int32_t dl_dt;   /* its label time - t, NO_DT when none */
    uint32_t lb_blk; /* resume block of the oldest label used, or NO_BLK */
    int32_t dup_dt;  /* latest duplicate's time - t (extends retention) */
    uint16_t nnz;
    uint8_t data[];
} ev_t;

/* A label waiting for its event. data[] holds the key. */
typedef struct lb {
    ent_t en;
    float val;
    uint8_t data[];
} lb_t;

/* Open-addressing hash table of entry handles (duplicates allowed), linear
 * probing. meta[] says per slot: 0 empty, else an 8-bit tag of the key hash
 * (never 0) and the probe distance (255: look it up), so that a lookup
 * touches an entry only when its tag matches and a removal shifts entries
 * back without re-hashing their keys. */
typedef struct tab {
    uint32_t *hd;
    uint16_t *meta;
    size_t cap, n; /* cap is a power of two */
    int labels;    /* entries are lb_t (else ev_t) */
} tab_t;

#define META_DIST_MAX 255u

/* 4-ary min-heap of timers; the time sits in its own array so that sifting
 * reads a cache line of four candidates and touches the entries only on a
 * tie (order by partition and offset). */
typedef struct heap {
    int64_t *t;
    uint32_t *hd;
    size_t n, cap;
} heap_t;
/* A resume block: records of one partition side, in offset order. */
typedef struct blk {
    int64_t first_off;
    int64_t wm_before; /* partition watermark before its first record */
    uint32_t alive;    /* entries pinning it */
    uint32_t nrec;
} blk_t;

typedef struct adv {
    int64_t off, wm;
} adv_t;

/* One side (topic kind) of one partition. */
typedef struct side {
    int64_t wm;           /* watermark; INT64_MIN before any data */
    int64_t next_off;     /* last offset seen + 1, or -1 */
    int64_t replay_until; /* records below were counted before a resume */
    int64_t last_active;  /* idle clock; INT64_MIN before the first check */
    int seen;             /* a record arrived since the last idle check */
    int paused;
    blk_t *ring;       /* blocks head_seq..tail_seq-1 */
    uint32_t ring_cap; /* power of two */
    uint32_t head_seq, tail_seq;
    adv_t *adv; /* advances made or loaded, by offset; pruned at encode */
    size_t nadv, cap_adv, adv_next; /* adv_next: first not applied yet */
} side_t;

/* A partition's run queue: undecided events in timer order, then offset
 * order. Event times of one partition mostly grow with the offset, so most
 * events append here in O(1) instead of sifting through the heap; the ones
 * that do not fit near the tail go to the heap. */
typedef struct runq {
    int64_t *t;
    uint32_t *hd;
    uint32_t head, n, cap; /* ring; cap is a power of two */
    uint32_t qpos;         /* index in the joiner's queue heap while n > 0 */
} runq_t;

#define RQ_SHIFT_MAX 16u /* entries an out-of-order insert may move */

/* A run queue in the joiner's queue heap, with its head timer beside it so
 * that sifting does not chase the queue. */
typedef struct qhe {
    int64_t t;
    uint32_t p;
} qhe_t;

typedef struct part {
    int assigned;
    runq_t q;
    int loaded;          /* a resume record waits for assign */
    int64_t skip_before; /* examples with decision time below were out */
    side_t s[2];
    /* loaded resume values, applied at assign */
    int64_t l_resume[2], l_wm[2], l_next[2];
} part_t;

/* An expire_oldest eviction waiting to be polled. */
typedef struct fifo_ent {
    uint32_t hd;
    uint8_t type;   /* ld_sample_type_t */
    int64_t decide; /* the timer it had: its decision time */
} fifo_ent_t;

struct ld_joiner {
    ld_labeling_conf_t c;
    int64_t w, h; /* window, effective late horizon */
    int fake;
    slab_t slab;
    tab_t evt, lbt;
    heap_t evh, lbh;
    struct qhe *qh; /* binary heap of partitions with a non-empty run queue,
                     by (head timer, partition) */
    size_t qn, qcap;
    part_t *parts;
    size_t nparts; /* array size (max partition + 1) */
    int64_t W;     /* cached min watermark */
    int wdirty;
    /* The highest W examples were released under. W itself can fall: a
     * partition given back and assigned again (a rebalance) or loaded from
     * a resume record restarts at an older watermark. Everything decided
     * below w_high is out, so that is what a resume record's skip point
     * says; the current W would let a restart release some twice. */
    int64_t w_high;
    int bound_hit;
    int quiet;           /* the current record is a re-read one: do not count */
    uint32_t block_recs; /* records per resume block */
    /* expire_oldest evictions waiting to be polled, in order */
    fifo_ent_t *fifo;
    size_t fifo_n, fifo_head, fifo_cap;
    /* the example handed out last: its arrays */
    uint32_t *oidx;
    float *oval, *odense;
    uint32_t ocap_sparse, ocap_dense;
    char okey[256];
    int64_t odecide; /* decision time of the example handed out last */
    uint32_t odefer; /* evicted entry freed at the next poll, or NO_HD */
    pack_scratch_t scratch;
    ld_joiner_stats_t st;
};

/* ---- small helpers ------------------------------------------------------ */

#define CNT(j, field)                                                          \
    do {                                                                       \
        if (!(j)->quiet)                                                       \
            (j)->st.field++;                                                   \
    } while (0)

#define NO_HD  UINT32_MAX
#define NO_POS UINT32_MAX /* hpos of an event that is not in the heap */

static size_t ev_size(size_t keylen, size_t packed)
{
    return offsetof(ev_t, data) + keylen + packed;
}

static size_t lb_size(size_t keylen)
{
    return offsetof(lb_t, data) + keylen;
}

static uint64_t hash_key(const uint8_t *p, size_t n)
{
    uint64_t h = 0x9e3779b97f4a7c15ull ^ (uint64_t)n;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        h = (h ^ v) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
        p += 8;
        n -= 8;
    }
    uint64_t v = 0;
    memcpy(&v, p, n);
    h = (h ^ v) * 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 29;
    h *= 0x94d049bb133111ebull;
    return h ^ (h >> 32);
}

static ent_t *ent_at(const ld_joiner_t *j, uint32_t hd)
{
    return slab_ptr(&j->slab, hd);
}

static ev_t *ev_at(const ld_joiner_t *j, uint32_t hd)
{
    return slab_ptr(&j->slab, hd);
}

static lb_t *lb_at(const ld_joiner_t *j, uint32_t hd)
{
    return slab_ptr(&j->slab, hd);
}

static const uint8_t *ent_key(const ld_joiner_t *j, const tab_t *t, uint32_t hd)
{
    if (t->labels)
        return lb_at(j, hd)->data;
    return ev_at(j, hd)->data;
}

/* Record order of two entries of one side of one partition: their offsets,
 * as (block sequence, offset within block). */
static int ent_before(const ent_t *a, const ent_t *b)
{
    if (a->blk != b->blk)
        return (int32_t)(a->blk - b->blk) < 0;
    return a->rel < b->rel;
}

/* ---- hash table --------------------------------------------------------- */

static uint8_t hash_tag(uint64_t h)
{
    uint8_t tag = (uint8_t)(h >> 56);
    return tag ? tag : 1;
}

static uint16_t meta_of(uint8_t tag, size_t dist)
{
    return (uint16_t)(tag | (dist < META_DIST_MAX ? dist : META_DIST_MAX) << 8);
}

/* Probe distance of slot i (occupied). */
static size_t tab_dist(const ld_joiner_t *j, const tab_t *t, size_t i)
{
    size_t d = t->meta[i] >> 8;
    if (d < META_DIST_MAX)
        return d;
    const uint8_t *k = ent_key(j, t, t->hd[i]);
    size_t home = (size_t)hash_key(k, ent_at(j, t->hd[i])->keylen);
    return (i - home) & (t->cap - 1);
}

static void tab_put(tab_t *t, uint32_t hd, uint64_t h)
{
    size_t m = t->cap - 1, i = (size_t)h & m, d = 0;
    while (t->meta[i]) {
        i = (i + 1) & m;
        d++;
    }
    t->hd[i] = hd;
    t->meta[i] = meta_of(hash_tag(h), d);
}

static ld_err_t tab_grow(const ld_joiner_t *j, tab_t *t)
{
    size_t nc = t->cap ? t->cap * 2 : 1024;
    tab_t nt = {NULL, NULL, nc, t->n, t->labels};
    nt.hd = malloc(nc * sizeof(*nt.hd));
    nt.meta = calloc(nc, sizeof(*nt.meta));
    if (!nt.hd || !nt.meta) {
        free(nt.hd);
        free(nt.meta);
        return LD_ERR_NOMEM;
    }
    for (size_t i = 0; i < t->cap; i++) {
        if (!t->meta[i])
            continue;
        const uint8_t *k = ent_key(j, t, t->hd[i]);
        tab_put(&nt, t->hd[i], hash_key(k, ent_at(j, t->hd[i])->keylen));
    }
    free(t->hd);
    free(t->meta);
    *t = nt;
    return LD_OK;
}

static ld_err_t tab_insert(const ld_joiner_t *j, tab_t *t, uint32_t hd,
                           uint64_t h)
{
    if ((t->n + 1) * 4 > t->cap * 3) {
        ld_err_t err = tab_grow(j, t);
        if (err)
            return err;
    }
    tab_put(t, hd, h);
    t->n++;
    return LD_OK;
}

/* Next handle at or after *i in the probe sequence of hash h whose tag
 * matches, or NO_HD at the first empty slot; *i moves past it. */
static uint32_t tab_next(const tab_t *t, size_t *i, uint64_t h)
{
    size_t m = t->cap - 1;
    uint8_t tag = hash_tag(h);
    for (; t->meta[*i]; *i = (*i + 1) & m) {
        if ((uint8_t)t->meta[*i] == tag) {
            uint32_t hd = t->hd[*i];
            *i = (*i + 1) & m;
            return hd;
        }
    }
    return NO_HD;
}

/* Removes hd by backward shifting (no tombstones). */
static void tab_remove(const ld_joiner_t *j, tab_t *t, uint32_t hd, uint64_t h)
{
    size_t m = t->cap - 1, i = (size_t)h & m;
    while (t->hd[i] != hd || !t->meta[i])
        i = (i + 1) & m;
    for (size_t jx = (i + 1) & m; t->meta[jx]; jx = (jx + 1) & m) {
        /* Move jx into the hole at i unless its home lies in (i, jx]. */
        size_t d = tab_dist(j, t, jx), gap = (jx - i) & m;
        if (d >= gap) {
            t->hd[i] = t->hd[jx];
            t->meta[i] = meta_of((uint8_t)t->meta[jx], d - gap);
            i = jx;
        }
    }
    t->meta[i] = 0;
    t->n--;
}

/* ---- heaps -------------------------------------------------------------- */

static int64_t ev_timer(const ld_joiner_t *j, const ev_t *e)
{
    switch (e->en.state) {
    case T_DECIDE:
        return j->fake ? e->en.t : e->en.t + j->w;
    case T_DELAYED: {
        int64_t l = e->en.t + e->dl_dt;
        return l < e->en.t ? e->en.t : l;
    }
    default:
        return e->en.t + j->w + j->h + e->dup_dt;
    }
}

/* Timer order: time, then partition, then offset. */
static int h_less(const ld_joiner_t *j, const heap_t *h, size_t x, size_t y)
{
    if (h->t[x] != h->t[y])
        return h->t[x] < h->t[y];
    const ent_t *a = ent_at(j, h->hd[x]), *b = ent_at(j, h->hd[y]);
    if (a->part != b->part)
        return a->part < b->part;
    return ent_before(a, b);
}

static void h_set(const ld_joiner_t *j, heap_t *h, size_t i, int64_t t,
                  uint32_t hd)
{
    h->t[i] = t;
    h->hd[i] = hd;
    ent_at(j, hd)->hpos = (uint32_t)i;
}

static void h_up(const ld_joiner_t *j, heap_t *h, size_t i)
{
    int64_t t = h->t[i];
    uint32_t hd = h->hd[i];
    while (i > 0) {
        size_t p = (i - 1) / 4;
        if (h->t[p] < t)
            break;
        if (h->t[p] == t) {
            /* tie: compare the entries */
            h->t[i] = t;
            h->hd[i] = hd;
            if (!h_less(j, h, i, p))
                break;
        }
        h_set(j, h, i, h->t[p], h->hd[p]);
        i = p;
    }
    h_set(j, h, i, t, hd);
}

static void h_down(const ld_joiner_t *j, heap_t *h, size_t i)
{
    int64_t t = h->t[i];
    uint32_t hd = h->hd[i];
    for (;;) {
        size_t c = 4 * i + 1;
        if (c >= h->n)
            break;
        size_t m = c, end = c + 4 < h->n ? c + 4 : h->n;
        for (size_t k = c + 1; k < end; k++)
            if (h->t[k] < h->t[m] || (h->t[k] == h->t[m] && h_less(j, h, k, m)))
                m = k;
        if (h->t[m] > t)
            break;
        if (h->t[m] == t) {
            h->t[i] = t;
            h->hd[i] = hd;
            if (!h_less(j, h, m, i))
                break;
        }
        h_set(j, h, i, h->t[m], h->hd[m]);
        i = m;
    }
    h_set(j, h, i, t, hd);
}

static ld_err_t h_reserve(heap_t *h)
{
    if (h->n < h->cap)
        return LD_OK;
    size_t nc = h->cap ? h->cap * 2 : 1024;
    int64_t *nt = realloc(h->t, nc * sizeof(*nt));
    if (!nt)
        return LD_ERR_NOMEM;
    h->t = nt;
    uint32_t *nh = realloc(h->hd, nc * sizeof(*nh));
    if (!nh)
        return LD_ERR_NOMEM;
    h->hd = nh;
    h->cap = nc;
    return LD_OK;
}

static ld_err_t h_push(const ld_joiner_t *j, heap_t *h, uint32_t hd, int64_t t)
{
    ld_err_t err = h_reserve(h);
    if (err)
        return err;
    h->t[h->n] = t;
    h->hd[h->n] = hd;
    h->n++;
    h_up(j, h, h->n - 1);
    return LD_OK;
}

static void h_remove(const ld_joiner_t *j, heap_t *h, size_t i)
{
    h->n--;
    if (i == h->n)
        return;
    h->t[i] = h->t[h->n];
    h->hd[i] = h->hd[h->n];
    if (i > 0 && h_less(j, h, i, (i - 1) / 4))
        h_up(j, h, i);
    else
        h_down(j, h, i);
}

/* The event's timer changed: store the new time and restore the order. */
static void ev_retime(ld_joiner_t *j, ev_t *e)
{
    size_t i = e->en.hpos;
    j->evh.t[i] = ev_timer(j, e);
    if (i > 0 && h_less(j, &j->evh, i, (i - 1) / 4))
        h_up(j, &j->evh, i);
    else
        h_down(j, &j->evh, i);
}

/* ---- run queues ---------------------------------------------------------- */

/* Heads of two run queues: they are of different partitions. */
static int qh_less(qhe_t a, qhe_t b)
{
    return a.t < b.t || (a.t == b.t && a.p < b.p);
}

static void qh_set(ld_joiner_t *j, size_t i, qhe_t e)
{
    j->qh[i] = e;
    j->parts[e.p].q.qpos = (uint32_t)i;
}

static void qh_up(ld_joiner_t *j, size_t i)
{
    qhe_t e = j->qh[i];
    while (i > 0 && qh_less(e, j->qh[(i - 1) / 2])) {
        qh_set(j, i, j->qh[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    qh_set(j, i, e);
}

static void qh_down(ld_joiner_t *j, size_t i)
{
    qhe_t e = j->qh[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= j->qn)
            break;
        if (c + 1 < j->qn && qh_less(j->qh[c + 1], j->qh[c]))
            c++;
        if (!qh_less(j->qh[c], e))
            break;
        qh_set(j, i, j->qh[c]);
        i = c;
    }
    qh_set(j, i, e);
}

static void qh_remove(ld_joiner_t *j, size_t i)
{
    j->qn--;
    if (i == j->qn)
        return;
    qh_set(j, i, j->qh[j->qn]);
    if (i > 0 && qh_less(j->qh[i], j->qh[(i - 1) / 2]))
        qh_up(j, i);
    else
        qh_down(j, i);
}

static ld_err_t rq_grow(runq_t *q)
{
    uint32_t nc = q->cap ? q->cap * 2 : 256;
    int64_t *nt = malloc(nc * sizeof(*nt));
    uint32_t *nh = malloc(nc * sizeof(*nh));
    if (!nt || !nh || nc < q->cap) {
        free(nt);
        free(nh);
        return LD_ERR_NOMEM;
    }
    for (uint32_t i = 0; i < q->n; i++) {
        uint32_t k = (q->head + i) & (q->cap - 1);
        nt[i] = q->t[k];
        nh[i] = q->hd[k];
    }
    free(q->t);
    free(q->hd);
    q->t = nt;
    q->hd = nh;
    q->head = 0;
    q->cap = nc;
    return LD_OK;
}

/* Queues a new undecided event of partition p (its latest record) if its
 * timer t is at most RQ_SHIFT_MAX places from the tail; *queued says so. */
static ld_err_t rq_add(ld_joiner_t *j, int32_t p, uint32_t hd, int64_t t,
                       int *queued)
{
    runq_t *q = &j->parts[p].q;
    uint32_t m = q->cap - 1, pos = q->n; /* insert before position pos */
    *queued = 0;
    /* Same partition, later offset: after every timer <= t. */
    while (pos > 0 && q->n - pos < RQ_SHIFT_MAX &&
           q->t[(q->head + pos - 1) & m] > t)
        pos--;
    if (pos > 0 && q->t[(q->head + pos - 1) & m] > t)
        return LD_OK; /* too far out of order: the heap takes it */
    if (!q->n && j->qn == j->qcap) {
        size_t nc = j->qcap ? j->qcap * 2 : 16;
        qhe_t *nq = realloc(j->qh, nc * sizeof(*nq));
        if (!nq)
            return LD_ERR_NOMEM;
        j->qh = nq;
        j->qcap = nc;
    }
    if (q->n == q->cap) {
        ld_err_t err = rq_grow(q);
        if (err)
            return err;
        m = q->cap - 1;
    }
    for (uint32_t k = q->n; k > pos; k--) {
        q->t[(q->head + k) & m] = q->t[(q->head + k - 1) & m];
        q->hd[(q->head + k) & m] = q->hd[(q->head + k - 1) & m];
    }
    q->t[(q->head + pos) & m] = t;
    q->hd[(q->head + pos) & m] = hd;
    q->n++;
    if (q->n == 1) {
        j->qn++;
        qh_set(j, j->qn - 1, (qhe_t){t, (uint32_t)p});
        qh_up(j, j->qn - 1);
    } else if (pos == 0) {
        j->qh[q->qpos].t = t;
        qh_up(j, q->qpos);
    }
    *queued = 1;
    return LD_OK;
}

/* Takes the head of p's run queue off. */
static void rq_pop(ld_joiner_t *j, int32_t p)
{
    runq_t *q = &j->parts[p].q;
    q->head = (q->head + 1) & (q->cap - 1);
    q->n--;
    if (!q->n) {
        qh_remove(j, q->qpos);
    } else {
        j->qh[q->qpos].t = q->t[q->head];
        qh_down(j, q->qpos);
    }
}

/* Release walks each run queue in order, and its entries and their index
 * slots are cold: fetch the entry RQ_AHEAD places ahead, and the index slot
 * of the one half as far (its key is in cache by then). */
#define RQ_AHEAD 4u

static void rq_prefetch(const ld_joiner_t *j, const runq_t *q)
{
    uint32_t m = q->cap - 1;
    if (q->n > RQ_AHEAD) {
        const uint8_t *p = slab_ptr(&j->slab, q->hd[(q->head + RQ_AHEAD) & m]);
        __builtin_prefetch(p);
        __builtin_prefetch(p + 64);
        __builtin_prefetch(p + 128);
        __builtin_prefetch(p + 191); /* a 160-byte chunk spans 4 lines */
    }
    if (q->n > RQ_AHEAD / 2) {
        const ev_t *e = slab_ptr(&j->slab, q->hd[(q->head + RQ_AHEAD / 2) & m]);
        size_t i = (size_t)hash_key(e->data, e->en.keylen) & (j->evt.cap - 1);
        __builtin_prefetch(&j->evt.meta[i]);
        __builtin_prefetch(&j->evt.hd[i]);
    }
}

/* Drops p's run queue (its events are freed by the caller). */
static void rq_clear(ld_joiner_t *j, int32_t p)
{
    runq_t *q = &j->parts[p].q;
    if (q->n)
        qh_remove(j, q->qpos);
    free(q->t);
    free(q->hd);
    memset(q, 0, sizeof(*q));
}

/* Full release order of two event timers: time, partition, offset. */
static int ev_order_before(const ld_joiner_t *j, int64_t ta, uint32_t a,
                           int64_t tb, uint32_t b)
{
    if (ta != tb)
        return ta < tb;
    const ent_t *x = ent_at(j, a), *y = ent_at(j, b);
    if (x->part != y->part)
        return x->part < y->part;
    return ent_before(x, y);
}

/* The earliest event timer, from the heap (*qp = -1) or the head of run
 * queue *qp; returns 0 when there is no event. */
static int ev_first(const ld_joiner_t *j, int64_t *t, uint32_t *hd, int32_t *qp)
{
    if (j->qn) {
        const runq_t *q = &j->parts[j->qh[0].p].q;
        int64_t qt = q->t[q->head];
        uint32_t qhd = q->hd[q->head];
        if (!j->evh.n ||
            ev_order_before(j, qt, qhd, j->evh.t[0], j->evh.hd[0])) {
            *t = qt;
            *hd = qhd;
            *qp = (int32_t)j->qh[0].p;
            return 1;
        }
    }
    if (!j->evh.n)
        return 0;
    *t = j->evh.t[0];
    *hd = j->evh.hd[0];
    *qp = -1;
    return 1;
}

/* ---- partitions and resume blocks --------------------------------------- */

static part_t *get_part(ld_joiner_t *j, int32_t p)
{
    if (p < 0 || (size_t)p >= j->nparts || !j->parts[p].assigned)
        return NULL;
    return &j->parts[p];
}

static ld_err_t ensure_part(ld_joiner_t *j, int32_t p)
{
    if (p < 0 || p > MAX_PART)
        return LD_ERR_INVAL;
    if ((size_t)p < j->nparts)
        return LD_OK;
    size_t nn = (size_t)p + 1;
    part_t *np = realloc(j->parts, nn * sizeof(*np));
    if (!np)
        return LD_ERR_NOMEM;
    memset(np + j->nparts, 0, (nn - j->nparts) * sizeof(*np));
    j->parts = np;
    j->nparts = nn;
    return LD_OK;
}

static void side_reset(side_t *s)
{
    free(s->ring);
    free(s->adv);
    uint32_t seq = s->tail_seq; /* old references stay below head */
    memset(s, 0, sizeof(*s));
    s->head_seq = s->tail_seq = seq;
    s->wm = INT64_MIN;
    s->next_off = -1;
    s->replay_until = -1;
    s->last_active = INT64_MIN;
}

static blk_t *ring_at(side_t *s, uint32_t seq)
{
    return &s->ring[seq & (s->ring_cap - 1)];
}

/* Counts the record at off in the tail block (opening one when needed) and
 * returns the block's sequence number and the offset within it. */
static ld_err_t ring_note(side_t *s, uint32_t block_recs, int64_t off,
                          uint32_t *seq, uint16_t *rel)
{
    uint32_t n = s->tail_seq - s->head_seq;
    const blk_t *tail = n ? ring_at(s, s->tail_seq - 1) : NULL;
    /* Entries keep their offset as 16 bits relative to their block. */
    if (!tail || tail->nrec >= block_recs || off < tail->first_off ||
        off - tail->first_off > (int64_t)UINT16_MAX) {
        if (n == s->ring_cap) {
            uint32_t nc = s->ring_cap ? s->ring_cap * 2 : 16;
            blk_t *nr = malloc(nc * sizeof(*nr));
            if (!nr)
                return LD_ERR_NOMEM;
            for (uint32_t i = 0; i < n; i++)
                nr[(s->head_seq + i) & (nc - 1)] = *ring_at(s, s->head_seq + i);
            free(s->ring);
            s->ring = nr;
            s->ring_cap = nc;
        }
        blk_t *b = ring_at(s, s->tail_seq);
        b->first_off = off;
        b->wm_before = s->wm;
        b->alive = 0;
        b->nrec = 0;
        s->tail_seq++;
    }
    blk_t *b = ring_at(s, s->tail_seq - 1);
    b->nrec++;
    *seq = s->tail_seq - 1;
    *rel = (uint16_t)(off - b->first_off);
    return LD_OK;
}

static int seq_valid(const side_t *s, uint32_t seq)
{
    return (uint32_t)(seq - s->head_seq) <
           (uint32_t)(s->tail_seq - s->head_seq);
}

static void blk_pin(ld_joiner_t *j, int32_t p, int kind, uint32_t seq)
{
    side_t *s = &j->parts[p].s[kind];
    if (seq_valid(s, seq))
        ring_at(s, seq)->alive++;
}

/* Drops a pin; dead blocks at the head (except the open tail) are popped. */
static void blk_unpin(ld_joiner_t *j, int32_t p, int kind, uint32_t seq)
{
    if (seq == NO_BLK || (size_t)p >= j->nparts)
        return;
    side_t *s = &j->parts[p].s[kind];
    if (!seq_valid(s, seq))
        return;
    ring_at(s, seq)->alive--;
    while (s->tail_seq - s->head_seq > 1 && ring_at(s, s->head_seq)->alive == 0)
        s->head_seq++;
}

static void raise_wm(ld_joiner_t *j, side_t *s, int64_t wm)
{
    if (wm <= s->wm)
        return;
    if (s->wm <= j->W)
        j->wdirty = 1;
    s->wm = wm;
}

static void recompute_W(ld_joiner_t *j)
{
    int64_t w = INT64_MAX;
    int any = 0;
    for (size_t p = 0; p < j->nparts; p++) {
        if (!j->parts[p].assigned)
            continue;
        any = 1;
        for (int k = 0; k < 2; k++)
            if (j->parts[p].s[k].wm < w)
                w = j->parts[p].s[k].wm;
    }
    /* W never moves back while the assignment is unchanged. */
    j->W = any ? w : INT64_MIN;
    j->wdirty = 0;
}

static int64_t get_W(ld_joiner_t *j)
{
    if (j->wdirty)
        recompute_W(j);
    return j->W;
}

/* Applies loaded or replayed advances whose position is <= pos. */
static void apply_pending_adv(ld_joiner_t *j, side_t *s, int64_t pos)
{
    while (s->adv_next < s->nadv && s->adv[s->adv_next].off <= pos) {
        raise_wm(j, s, s->adv[s->adv_next].wm);
        s->adv_next++;
    }
}

static ld_err_t adv_record(side_t *s, int64_t off, int64_t wm)
{
    if (s->nadv && s->adv[s->nadv - 1].off == off) {
        if (wm > s->adv[s->nadv - 1].wm)
            s->adv[s->nadv - 1].wm = wm;
        s->adv_next = s->nadv;
        return LD_OK;
    }
    if (s->nadv == s->cap_adv) {
        size_t nc = s->cap_adv ? s->cap_adv * 2 : 4;
        adv_t *na = realloc(s->adv, nc * sizeof(*na));
        if (!na)
            return LD_ERR_NOMEM;
        s->adv = na;
        s->cap_adv = nc;
    }
    s->adv[s->nadv].off = off;
    s->adv[s->nadv].wm = wm;
    s->nadv++;
    s->adv_next = s->nadv;
    return LD_OK;
}

/* Common arrival bookkeeping of a record; returns 1 if it is late. */
static int arrive(ld_joiner_t *j, side_t *s, int64_t off, int64_t t,
                  uint32_t *seq, uint16_t *rel, ld_err_t *err)
{
    j->quiet = off < s->replay_until;
    apply_pending_adv(j, s, off);
    s->seen = 1;
    *err = ring_note(s, j->block_recs, off, seq, rel);
    if (*err)
        return 1;
    s->next_off = off + 1;
    /* Late = older than this partition's own watermark (docs/LABELING.md). */
    if (t < s->wm)
        return 1;
    if (t - j->c.max_ooo_ms > s->wm)
        raise_wm(j, s, t - j->c.max_ooo_ms);
    return 0;
}

/* ---- lifecycle ---------------------------------------------------------- */

static int check_conf(const ld_labeling_conf_t *c, char *errstr, size_t sz)
{
    const int64_t week = INT64_C(7) * 86400 * 1000;
    const char *bad = NULL;
    if (c->window_ms < 1 || c->window_ms > week)
        bad = "window must be in [1ms, 7d]";
    else if (c->max_ooo_ms < 0 || c->max_ooo_ms > week)
        bad = "max_out_of_orderness must be in [0, 7d]";
    else if (c->late_horizon_ms < 0 || c->late_horizon_ms > week)
        bad = "late_horizon must be in [0, 7d]";
    else if (c->idle_timeout_ms < 0)
        bad = "idle_timeout must be >= 0";
    else if (c->aggregate < LD_AGG_FIRST || c->aggregate > LD_AGG_SUM)
        bad = "aggregate must be first|last|max|sum";
    else if (c->mode != LD_MODE_WINDOW && c->mode != LD_MODE_FAKE_NEGATIVE)
        bad = "mode must be window|fake_negative";
    else if (c->late_policy != LD_LATE_DROP &&
             c->late_policy != LD_LATE_CORRECT)
        bad = "late_policy must be drop|correct";
    else if (c->at_bound != LD_BOUND_EXPIRE_OLDEST &&
             c->at_bound != LD_BOUND_PAUSE)
        bad = "at_bound must be expire_oldest|pause";
    else if (c->max_pending < 1)
        bad = "max_pending must be >= 1";
    else if (!isfinite(c->default_label))
        bad = "default_label must be finite";
    if (bad && errstr && sz)
        snprintf(errstr, sz, "labeling: %s", bad);
    return bad == NULL;
}

ld_joiner_t *ld_joiner_new(const ld_labeling_conf_t *conf, char *errstr,
                           size_t errstr_size)
{
    ld_joiner_t *j = NULL;
    if (!conf || !check_conf(conf, errstr, errstr_size))
        goto err;
    j = calloc(1, sizeof(*j));
    if (!j)
        goto nomem;
    j->c = *conf;
    j->c.output_topic = NULL; /* not ours */
    j->w = conf->window_ms;
    j->fake = conf->mode == LD_MODE_FAKE_NEGATIVE;
    j->h = conf->late_policy == LD_LATE_CORRECT ? conf->late_horizon_ms : 0;
    j->lbt.labels = 1;
    j->block_recs = BLOCK_RECS;
    j->W = INT64_MIN;
    j->w_high = INT64_MIN;
    j->odefer = NO_HD;
    j->odecide = INT64_MIN;
    slab_init(&j->slab);
    if (tab_grow(j, &j->evt) || tab_grow(j, &j->lbt))
        goto nomem;
    return j;
nomem:
    if (errstr && errstr_size)
        snprintf(errstr, errstr_size, "labeling: out of memory");
err:
    ld_joiner_destroy(j);
    return NULL;
}

void ld_joiner_destroy(ld_joiner_t *j)
{
    if (!j)
        return;
    for (size_t p = 0; p < j->nparts; p++) {
        for (int k = 0; k < 2; k++) {
            free(j->parts[p].s[k].ring);
            free(j->parts[p].s[k].adv);
        }
        free(j->parts[p].q.t);
        free(j->parts[p].q.hd);
    }
    free(j->parts);
    free(j->qh);
    free(j->evt.hd);
    free(j->evt.meta);
    free(j->lbt.hd);
    free(j->lbt.meta);
    free(j->evh.t);
    free(j->evh.hd);
    free(j->lbh.t);
    free(j->lbh.hd);
    free(j->fifo);
    free(j->oidx);
    free(j->oval);
    free(j->odense);
    pack_scratch_free(&j->scratch);
    slab_fini(&j->slab);
    free(j);
}

/* ---- entries ------------------------------------------------------------ */

static size_t ev_chunk(const ld_joiner_t *j, uint32_t hd, const ev_t *e)
{
    return e->en.szc ? (size_t)e->en.szc * 8u : slab_big_size(&j->slab, hd);
}

/* Source offset of an entry of side kind. */
static int64_t ent_off(const ld_joiner_t *j, const ent_t *en, int kind)
{
    side_t *s = &j->parts[en->part].s[kind];
    return s->ring[en->blk & (s->ring_cap - 1)].first_off + en->rel;
}

/* Frees an event that is already out of the heap; drops its pins. */
static void ev_free(ld_joiner_t *j, uint32_t hd)
{
    ev_t *e = ev_at(j, hd);
    blk_unpin(j, e->en.part, LD_TOPIC_EVENTS, e->en.blk);
    blk_unpin(j, e->en.part, LD_TOPIC_LABELS, e->lb_blk);
    if (e->en.state != T_FIFO)
        j->st.pending_events--; /* fifo entries left the count earlier */
    slab_free(&j->slab, hd, ev_chunk(j, hd, e));
}

static void ev_remove(ld_joiner_t *j, uint32_t hd)
{
    ev_t *e = ev_at(j, hd);
    if (e->en.hpos != NO_POS) /* else off its run queue already */
        h_remove(j, &j->evh, e->en.hpos);
    tab_remove(j, &j->evt, hd, hash_key(e->data, e->en.keylen));
    ev_free(j, hd);
}

static void lb_remove(ld_joiner_t *j, uint32_t hd)
{
    lb_t *l = lb_at(j, hd);
    h_remove(j, &j->lbh, l->en.hpos);
    tab_remove(j, &j->lbt, hd, hash_key(l->data, l->en.keylen));
    blk_unpin(j, l->en.part, LD_TOPIC_LABELS, l->en.blk);
    j->st.pending_labels--;
    slab_free(&j->slab, hd, lb_size(l->en.keylen));
}

/* ---- label application (the rules of docs/LABELING.md) ----------------- */

/* Sets the delayed_pos candidate of e to the label (rel, v) if it is the
 * earliest so far; returns 1 if it was taken. */
static int set_delayed(ld_joiner_t *j, ev_t *e, int32_t rel, float v)
{
    if (e->en.pk & E_DL_DONE)
        return 0;
    if (e->dl_dt != NO_DT && e->dl_dt <= rel)
        return 0;
    if (e->dl_dt != NO_DT && e->dl_dt > (int32_t)j->w)
        CNT(j, late_labels_dropped); /* a later late label is replaced */
    e->dl_dt = rel;
    e->dl_val = v;
    if (e->en.state == T_RETIRE) {
        e->en.state = T_DELAYED;
        ev_retime(j, e);
    } else if (e->en.state == T_DELAYED) {
        ev_retime(j, e);
    }
    return 1;
}

/* Applies label (t, v) from block lblk to event e; the label is within
 * [e->t - w, e->t + w + h]. Labels reach one event in offset order. */
static void apply_label(ld_joiner_t *j, ev_t *e, int64_t t, float v,
                        uint32_t lblk)
{
    int32_t rel = (int32_t)(t - e->en.t);
    int used = 0;
    if (rel <= j->w) {
        CNT(j, labels_joined);
        if (j->fake) {
            if (v != (float)j->c.default_label)
                used = set_delayed(j, e, rel, v);
        } else {
            used = 1;
            if (e->agg_dt == NO_DT) {
                e->agg_dt = rel;
                e->agg_val = v;
            } else {
                switch (j->c.aggregate) {
                case LD_AGG_FIRST:
                    if (rel < e->agg_dt) {
                        e->agg_dt = rel;
                        e->agg_val = v;
                    }
                    break;
                case LD_AGG_LAST:
                    if (rel >= e->agg_dt) {
                        e->agg_dt = rel;
                        e->agg_val = v;
                    }
                    break;
                case LD_AGG_MAX:
                    if (v > e->agg_val) {
                        e->agg_dt = rel;
                        e->agg_val = v;
                    }
                    break;
                default: /* sum: the label time is the latest */
                    e->agg_val += v;
                    if (rel > e->agg_dt)
                        e->agg_dt = rel;
                    break;
                }
            }
        }
    } else {
        CNT(j, labels_after_window);
        /* correct: only events emitted default_neg get a correction. */
        if (j->c.late_policy == LD_LATE_CORRECT &&
            v != (float)j->c.default_label && (j->fake || e->agg_dt == NO_DT))
            used = set_delayed(j, e, rel, v);
        if (!used)
            CNT(j, late_labels_dropped);
    }
    if (used && e->lb_blk == NO_BLK && lblk != NO_BLK) {
        e->lb_blk = lblk;
        blk_pin(j, e->en.part, LD_TOPIC_LABELS, lblk);
    }
}

/* ---- bound -------------------------------------------------------------- */

static ld_err_t fifo_push(ld_joiner_t *j, uint32_t hd, ld_sample_type_t type,
                          int64_t decide)
{
    if (j->fifo_head > 0 && j->fifo_head == j->fifo_n) {
        j->fifo_head = j->fifo_n = 0;
    }
    if (j->fifo_n == j->fifo_cap) {
        size_t nc = j->fifo_cap ? j->fifo_cap * 2 : 64;
        fifo_ent_t *nf = realloc(j->fifo, nc * sizeof(*nf));
        if (!nf)
            return LD_ERR_NOMEM;
        j->fifo = nf;
        j->fifo_cap = nc;
    }
    fifo_ent_t *f = &j->fifo[j->fifo_n++];
    f->hd = hd;
    f->type = (uint8_t)type;
    f->decide = decide;
    return LD_OK;
}

/* expire_oldest: evicts the entry with the earliest timer; an event still
 * owing an example is released out of order through the fifo. */
static ld_err_t evict_one(ld_joiner_t *j)
{
    uint32_t eh = NO_HD;
    int64_t decide = 0;
    int32_t qp = -1;
    if (!ev_first(j, &decide, &eh, &qp))
        eh = NO_HD;
    uint32_t lh = j->lbh.n ? j->lbh.hd[0] : NO_HD;
    if (lh != NO_HD && (eh == NO_HD || j->lbh.t[0] + j->w < decide)) {
        lb_remove(j, lh);
        j->st.labels_expired++;
        return LD_OK;
    }
    if (eh == NO_HD)
        return LD_OK;
    ev_t *e = ev_at(j, eh);
    if (qp >= 0)
        rq_pop(j, qp);
    int type = -1;
    if (e->en.state == T_DECIDE)
        type = j->fake ? LD_SAMPLE_FAKE_NEG
                       : (e->agg_dt != NO_DT ? LD_SAMPLE_POS
                                             : LD_SAMPLE_DEFAULT_NEG);
    else if (e->en.state == T_DELAYED)
        type = LD_SAMPLE_DELAYED_POS;
    j->st.events_expired++;
    if (type < 0) {
        ev_remove(j, eh);
        return LD_OK;
    }
    if (e->en.hpos != NO_POS)
        h_remove(j, &j->evh, e->en.hpos);
    tab_remove(j, &j->evt, eh, hash_key(e->data, e->en.keylen));
    ld_err_t err = fifo_push(j, eh, (ld_sample_type_t)type, decide);
    if (err) {
        ev_free(j, eh);
        return err;
    }
    e->en.state = T_FIFO;
    j->st.pending_events--;
    return LD_OK;
}

static ld_err_t check_bound(ld_joiner_t *j)
{
    uint64_t n = j->st.pending_events + j->st.pending_labels;
    if (n > j->st.pending_peak)
        j->st.pending_peak = n;
    if (n < (uint64_t)j->c.max_pending) {
        if (j->bound_hit && n < (uint64_t)j->c.max_pending / 10 * 9)
            j->bound_hit = 0;
        return LD_OK;
    }
    if (!j->bound_hit) {
        j->bound_hit = 1;
        j->st.at_bound++;
        ld_log(LD_LOG_WARN, "join",
               "msg=\"pending store at max_pending\" max_pending=%lld "
               "policy=%s",
               (long long)j->c.max_pending,
               j->c.at_bound == LD_BOUND_PAUSE ? "pause" : "expire_oldest");
    }
    if (j->c.at_bound != LD_BOUND_EXPIRE_OLDEST)
        return LD_OK;
    while (j->st.pending_events + j->st.pending_labels >
           (uint64_t)j->c.max_pending) {
        ld_err_t err = evict_one(j);
        if (err)
            return err;
    }
    return LD_OK;
}

/* ---- input -------------------------------------------------------------- */

static ld_err_t check_rec(ld_joiner_t *j, int32_t p, const void *key,
                          size_t keylen, int64_t t, part_t **pt)
{
    *pt = get_part(j, p);
    if (!*pt || !key || keylen == 0 || keylen > 255)
        return LD_ERR_INVAL;
    if (t < -TIME_LIMIT || t > TIME_LIMIT)
        return LD_ERR_RANGE;
    return LD_OK;
}

static int same_key(const ent_t *en, const uint8_t *data, int32_t partition,
                    const void *key, size_t keylen)
{
    return en->part == (uint16_t)partition && en->keylen == keylen &&
           memcmp(data, key, keylen) == 0;
}

/* Adds an event with features x, or packed already (pf): one is NULL. */
static ld_err_t add_event(ld_joiner_t *j, int32_t partition, int64_t offset,
                          const void *key, size_t keylen, int64_t event_time_ms,
                          const ld_features_t *x, const ld_packed_t *pf)
{
    part_t *pt;
    if (x && x->nnz <= 64) {
        /* The caller's feature arrays are packed below: start their loads
         * now, behind the bookkeeping (a line every 16 floats). */
        for (uint32_t k = 0; k < x->nnz; k += 16) {
            if (x->idx)
                __builtin_prefetch(x->idx + k);
            if (x->val)
                __builtin_prefetch(x->val + k);
        }
    }
    ld_err_t err = check_rec(j, partition, key, keylen, event_time_ms, &pt);
    if (err)
        return err;
    uint8_t param = 0, pflags = PACK_ONES;
    size_t packed = 0;
    if (!x && (!pf || pf->nnz > 65535u || (pf->len && !pf->data)))
        return LD_ERR_INVAL;
    if (x && (x->nnz > 65535u || x->ndense > 65535u || (x->nnz && !x->idx) ||
              (x->ndense && !x->dense)))
        return LD_ERR_INVAL;
    side_t *s = &pt->s[LD_TOPIC_EVENTS];
    uint32_t seq;
    uint16_t rel;
    int late = arrive(j, s, offset, event_time_ms, &seq, &rel, &err);
    if (err)
        return err;
    CNT(j, events_in);
    if (late) {
        CNT(j, events_late);
        goto done;
    }
    uint64_t h = hash_key(key, keylen);
    size_t i = (size_t)h & (j->evt.cap - 1);
    /* The index slot is most likely a cache miss: fetch it while the
     * features are packed (into scratch only, so a duplicate just wastes
     * the work; a failure is reported only for a kept event). */
    __builtin_prefetch(&j->evt.meta[i]);
    __builtin_prefetch(&j->evt.hd[i]);
    int pack_failed = 0;
    if (pf) {
        packed = pf->len;
        param = pf->param;
        pflags = pf->flags;
    } else if (x->nnz || x->ndense) {
        packed = pack_size(x, &j->scratch, &param, &pflags);
        pack_failed = !packed;
    }
    /* Duplicate: a kept event with this key whose window + horizon covers
     * this one's time. First wins; the kept one stays until this one's
     * decisions would have passed, so a resume re-reads it too. */
    for (uint32_t oh; (oh = tab_next(&j->evt, &i, h)) != NO_HD;) {
        ev_t *o = ev_at(j, oh);
        if (!same_key(&o->en, o->data, partition, key, keylen))
            continue;
        if (event_time_ms > o->en.t + j->w + j->h)
            continue;
        CNT(j, events_duplicate);
        int64_t d = event_time_ms - o->en.t;
        if (d > o->dup_dt) {
            o->dup_dt = (int32_t)d;
            if (o->en.state == T_RETIRE)
                ev_retime(j, o);
        }
        goto done;
    }
    if (pack_failed) {
        err = LD_ERR_NOMEM;
        goto done;
    }
    size_t sz = ev_size(keylen, packed);
    uint32_t eh;
    ev_t *e = slab_alloc(&j->slab, sz, &eh);
    if (!e) {
        err = LD_ERR_NOMEM;
        goto done;
    }
    size_t chunk = slab_round(sz);
    memset(e, 0, offsetof(ev_t, data));
    e->en.szc = chunk <= 255 * 8 ? (uint8_t)(chunk / 8) : 0;
    e->en.t = event_time_ms;
    e->en.rel = rel;
    e->en.blk = seq;
    e->en.part = (uint16_t)partition;
    e->en.keylen = (uint8_t)keylen;
    e->en.state = T_DECIDE;
    e->agg_dt = NO_DT;
    e->dl_dt = NO_DT;
    e->lb_blk = NO_BLK;
    e->nnz = (uint16_t)(pf ? pf->nnz : x->nnz);
    e->en.pk = (uint8_t)(pflags | param << PK_PARAM_SHIFT);
    memcpy(e->data, key, keylen);
    if (pf && packed)
        memcpy(e->data + keylen, pf->data, packed);
    else if (!pf && (x->nnz || x->ndense))
        pack_write(e->data + keylen, x, &j->scratch, pflags);
    /* The slack of the chunk is zeroed: the reader may look at it. */
    memset((uint8_t *)e + sz, 0, chunk - sz);
    if ((err = tab_insert(j, &j->evt, eh, h)) != LD_OK) {
        slab_free(&j->slab, eh, sz);
        goto done;
    }
    /* Undecided timers never change: a run queue holds most of them. */
    int queued;
    e->en.hpos = NO_POS;
    err = rq_add(j, partition, eh, ev_timer(j, e), &queued);
    if (!err && !queued)
        err = h_push(j, &j->evh, eh, ev_timer(j, e));
    if (err) {
        tab_remove(j, &j->evt, eh, h);
        slab_free(&j->slab, eh, sz);
        goto done;
    }
    j->st.pending_events++;
    blk_pin(j, partition, LD_TOPIC_EVENTS, seq);
    /* Labels that came first: claim those in range, in offset order. */
    if (j->lbt.n) {
        for (;;) {
            uint32_t bh = NO_HD;
            lb_t *best = NULL;
            size_t li = (size_t)h & (j->lbt.cap - 1);
            for (uint32_t lh; (lh = tab_next(&j->lbt, &li, h)) != NO_HD;) {
                lb_t *l = lb_at(j, lh);
                if (!same_key(&l->en, l->data, partition, key, keylen))
                    continue;
                if (l->en.t < e->en.t - j->w || l->en.t > e->en.t + j->w + j->h)
                    continue;
                if (!best || ent_before(&l->en, &best->en)) {
                    best = l;
                    bh = lh;
                }
            }
            if (!best)
                break;
            apply_label(j, e, best->en.t, best->val, best->en.blk);
            lb_remove(j, bh);
        }
    }
    err = check_bound(j);
done:
    apply_pending_adv(j, s, offset + 1);
    j->quiet = 0;
    return err;
}

ld_err_t ld_joiner_add_event(ld_joiner_t *j, int32_t partition, int64_t offset,
                             const void *key, size_t keylen,
                             int64_t event_time_ms, const ld_features_t *x)
{
    if (!x)
        return LD_ERR_INVAL;
    return add_event(j, partition, offset, key, keylen, event_time_ms, x, NULL);
}

ld_err_t ld_joiner_add_event_packed(ld_joiner_t *j, int32_t partition,
                                    int64_t offset, const void *key,
                                    size_t keylen, int64_t event_time_ms,
                                    const ld_packed_t *pf)
{
    if (!pf)
        return LD_ERR_INVAL;
    return add_event(j, partition, offset, key, keylen, event_time_ms, NULL,
                     pf);
}

struct ld_packer {
    pack_scratch_t sc;
};

ld_packer_t *ld_packer_new(void)
{
    return calloc(1, sizeof(ld_packer_t));
}

void ld_packer_destroy(ld_packer_t *pk)
{
    if (!pk)
        return;
    pack_scratch_free(&pk->sc);
    free(pk);
}

ld_err_t ld_packer_pack(ld_packer_t *pk, const ld_features_t *x,
                        ld_packed_t *out)
{
    uint8_t param = 0, flags = PACK_ONES;
    size_t len = 0;
    if (x->nnz > 65535u || x->ndense > 65535u)
        return LD_ERR_INVAL;
    if (x->nnz || x->ndense) {
        /* 0: a bad x (add_event() says which) or no memory for scratch */
        if (!(len = pack_size(x, &pk->sc, &param, &flags)))
            return LD_ERR_INVAL;
    }
    if (len > out->cap) {
        uint8_t *g = realloc(out->data, len);
        if (!g)
            return LD_ERR_NOMEM;
        out->data = g;
        out->cap = len;
    }
    if (len)
        pack_write(out->data, x, &pk->sc, flags);
    out->len = len;
    out->nnz = x->nnz;
    out->param = param;
    out->flags = flags;
    return LD_OK;
}

ld_err_t ld_joiner_add_label(ld_joiner_t *j, int32_t partition, int64_t offset,
                             const void *key, size_t keylen,
                             int64_t label_time_ms, float value)
{
    part_t *pt;
    ld_err_t err = check_rec(j, partition, key, keylen, label_time_ms, &pt);
    if (err)
        return err;
    if (!isfinite(value))
        return LD_ERR_INVAL;
    side_t *s = &pt->s[LD_TOPIC_LABELS];
    uint32_t seq;
    uint16_t rel;
    int late = arrive(j, s, offset, label_time_ms, &seq, &rel, &err);
    if (err)
        return err;
    CNT(j, labels_in);
    if (late) {
        CNT(j, labels_late);
        goto done;
    }
    uint64_t h = hash_key(key, keylen);
    /* The earliest-arrived kept event whose range holds the label. */
    ev_t *best = NULL;
    size_t i = (size_t)h & (j->evt.cap - 1);
    for (uint32_t oh; (oh = tab_next(&j->evt, &i, h)) != NO_HD;) {
        ev_t *o = ev_at(j, oh);
        if (!same_key(&o->en, o->data, partition, key, keylen))
            continue;
        if (label_time_ms < o->en.t - j->w ||
            label_time_ms > o->en.t + j->w + j->h)
            continue;
        if (!best || ent_before(&o->en, &best->en))
            best = o;
    }
    if (best) {
        apply_label(j, best, label_time_ms, value, seq);
        goto done;
    }
    uint32_t lh;
    lb_t *l = slab_alloc(&j->slab, lb_size(keylen), &lh);
    if (!l) {
        err = LD_ERR_NOMEM;
        goto done;
    }
    memset(l, 0, slab_round(lb_size(keylen)));
    l->en.t = label_time_ms;
    l->en.rel = rel;
    l->en.blk = seq;
    l->en.part = (uint16_t)partition;
    l->en.keylen = (uint8_t)keylen;
    l->val = value;
    memcpy(l->data, key, keylen);
    if ((err = tab_insert(j, &j->lbt, lh, h)) != LD_OK) {
        slab_free(&j->slab, lh, lb_size(keylen));
        goto done;
    }
    if ((err = h_push(j, &j->lbh, lh, l->en.t)) != LD_OK) {
        tab_remove(j, &j->lbt, lh, h);
        slab_free(&j->slab, lh, lb_size(keylen));
        goto done;
    }
    j->st.pending_labels++;
    blk_pin(j, partition, LD_TOPIC_LABELS, seq);
    err = check_bound(j);
done:
    apply_pending_adv(j, s, offset + 1);
    j->quiet = 0;
    return err;
}

/* A labels-topic record without a label (docs/LABELING.md, "Records that
 * carry no label"): not a positive, so it must neither join an event nor
 * hide a label of one; its time still moves the side's watermark on, or a
 * stream of mostly such records would hold every decision back until the
 * wall-clock idle advance. Nothing pins its resume block. */
ld_err_t ld_joiner_add_nolabel(ld_joiner_t *j, int32_t partition,
                               int64_t offset, const void *key, size_t keylen,
                               int64_t label_time_ms)
{
    part_t *pt;
    ld_err_t err = check_rec(j, partition, key, keylen, label_time_ms, &pt);
    if (err)
        return err;
    side_t *s = &pt->s[LD_TOPIC_LABELS];
    uint32_t seq;
    uint16_t rel;
    (void)arrive(j, s, offset, label_time_ms, &seq, &rel, &err);
    if (!err) {
        CNT(j, labels_in);
        CNT(j, labels_nolabel);
    }
    apply_pending_adv(j, s, offset + 1);
    j->quiet = 0;
    return err;
}

/* ---- output ------------------------------------------------------------- */

static ld_err_t out_reserve(ld_joiner_t *j, uint32_t nnz, uint32_t nd)
{
    if (nnz > j->ocap_sparse) {
        uint32_t *ni = realloc(j->oidx, nnz * sizeof(*ni));
        if (!ni)
            return LD_ERR_NOMEM;
        j->oidx = ni;
        float *nv = realloc(j->oval, nnz * sizeof(*nv));
        if (!nv)
            return LD_ERR_NOMEM;
        j->oval = nv;
        j->ocap_sparse = nnz;
    }
    if (nd > j->ocap_dense) {
        float *nd2 = realloc(j->odense, nd * sizeof(*nd2));
        if (!nd2)
            return LD_ERR_NOMEM;
        j->odense = nd2;
        j->ocap_dense = nd;
    }
    return LD_OK;
}

/* Fills out from event hd; the arrays are the joiner's, so the event may go
 * right after. */
static int fill_example(ld_joiner_t *j, uint32_t hd, ld_sample_type_t type,
                        int64_t decide, ld_example_t *out)
{
    const ev_t *e = ev_at(j, hd);
    const uint8_t *pk = e->data + e->en.keylen;
    size_t avail = ev_chunk(j, hd, e) - offsetof(ev_t, data) - e->en.keylen;
    uint8_t pflags = e->en.pk & (PACK_ONES | PACK_DENSE);
    uint32_t nd = pack_ndense(pk, pflags);
    if (out_reserve(j, e->nnz, nd) != LD_OK)
        return 0;
    uint32_t ndo = nd;
    if (e->nnz || nd)
        pack_read(pk, avail, e->nnz, e->en.pk >> PK_PARAM_SHIFT, pflags,
                  j->oidx, j->oval, j->odense, &ndo);
    memcpy(j->okey, e->data, e->en.keylen);
    j->okey[e->en.keylen] = 0;
    j->odecide = decide;
    memset(out, 0, sizeof(*out));
    out->x.idx = j->oidx;
    out->x.val = j->oval;
    out->x.dense = j->odense;
    out->x.nnz = e->nnz;
    out->x.ndense = ndo;
    out->weight = 1.0f;
    out->sample_type = type;
    out->event_time_ms = e->en.t;
    out->partition = e->en.part;
    out->offset = ent_off(j, &e->en, LD_TOPIC_EVENTS);
    out->event_id = j->okey;
    switch (type) {
    case LD_SAMPLE_POS:
        out->label = e->agg_val;
        out->label_time_ms = e->en.t + e->agg_dt;
        break;
    case LD_SAMPLE_DELAYED_POS:
        out->label = e->dl_val;
        out->label_time_ms = e->en.t + e->dl_dt;
        break;
    default:
        out->label = (float)j->c.default_label;
        out->label_time_ms = -1;
        break;
    }
    return 1;
}

int ld_joiner_poll(ld_joiner_t *j, ld_example_t *out)
{
    if (j->odefer != NO_HD) {
        ev_free(j, j->odefer);
        j->odefer = NO_HD;
    }
    if (j->fifo_head < j->fifo_n) {
        const fifo_ent_t *f = &j->fifo[j->fifo_head++];
        ld_sample_type_t type = (ld_sample_type_t)f->type;
        j->odefer = f->hd;
        if (fill_example(j, f->hd, type, f->decide, out)) {
            j->st.examples[type]++;
            return 1;
        }
    }
    int64_t W = get_W(j);
    if (W > j->w_high)
        j->w_high = W;
    while (j->lbh.n && j->lbh.t[0] + j->w < W) {
        lb_t *l = lb_at(j, j->lbh.hd[0]);
        /* Counted once: not when it had already expired before a resume. */
        if (l->en.t + j->w >= j->parts[l->en.part].skip_before)
            j->st.labels_unmatched++;
        lb_remove(j, j->lbh.hd[0]);
    }
    int64_t d;
    uint32_t eh;
    int32_t qp;
    while (ev_first(j, &d, &eh, &qp) && d < W) {
        ev_t *e = ev_at(j, eh);
        int64_t skip = j->parts[e->en.part].skip_before;
        int type = -1;
        switch (e->en.state) {
        case T_DECIDE:
            if (j->fake) {
                type = LD_SAMPLE_FAKE_NEG;
            } else if (e->agg_dt != NO_DT) {
                type = LD_SAMPLE_POS;
                if (e->dl_dt != NO_DT) {
                    e->dl_dt = NO_DT; /* no correction of a positive */
                    if (d >= skip)
                        j->st.late_labels_dropped++;
                }
            } else {
                type = LD_SAMPLE_DEFAULT_NEG;
            }
            break;
        case T_DELAYED:
            type = LD_SAMPLE_DELAYED_POS;
            break;
        default:
            ev_remove(j, eh);
            continue;
        }
        /* A queued event moves to the heap unless it is removed below. */
        if (qp >= 0 && h_reserve(&j->evh) != LD_OK)
            return 0; /* out of memory: retried at the next poll */
        if (!fill_example(j, eh, (ld_sample_type_t)type, d, out))
            return 0;
        if (qp >= 0) {
            rq_pop(j, qp);
            rq_prefetch(j, &j->parts[qp].q);
        }
        if (type == LD_SAMPLE_DELAYED_POS)
            e->en.pk |= E_DL_DONE;
        e->en.state = (e->en.state == T_DECIDE && e->dl_dt != NO_DT) ? T_DELAYED
                                                                     : T_RETIRE;
        /* A retired event whose timer already passed W can meet no record
         * any more (a label or duplicate that is not late lies above W):
         * remove it now rather than sift it down and pop it again. */
        if (e->en.state == T_RETIRE && ev_timer(j, e) < W)
            ev_remove(j, eh);
        else if (qp >= 0)
            (void)h_push(j, &j->evh, eh, ev_timer(j, e)); /* reserved */
        else
            ev_retime(j, e);
        if (d < skip) {
            j->st.examples_skipped++;
            continue;
        }
        j->st.examples[type]++;
        return 1;
    }
    return 0;
}

int64_t ld_joiner_decision_time(const ld_joiner_t *j)
{
    return j->odecide;
}

/* ---- watermark advances and flow ---------------------------------------- */

void ld_joiner_idle_advance(ld_joiner_t *j, int64_t now_ms,
                            ld_joiner_advance_cb *cb, void *opaque)
{
    if (j->c.idle_timeout_ms <= 0)
        return;
    int64_t busy_min = INT64_MAX, all_max = INT64_MIN;
    int nbusy = 0;
    for (size_t p = 0; p < j->nparts; p++) {
        if (!j->parts[p].assigned)
            continue;
        for (int k = 0; k < 2; k++) {
            side_t *s = &j->parts[p].s[k];
            if (s->seen || s->last_active == INT64_MIN) {
                s->last_active = now_ms;
                s->seen = 0;
            }
            if (s->wm > all_max)
                all_max = s->wm;
            /* A side still re-reading, or with loaded advances not yet
             * reached, has records coming: never idle. */
            int idle = now_ms - s->last_active >= j->c.idle_timeout_ms &&
                       s->next_off >= s->replay_until && s->adv_next >= s->nadv;
            if (!idle) {
                nbusy++;
                if (s->wm < busy_min)
                    busy_min = s->wm;
            }
        }
    }
    int64_t target = nbusy ? busy_min : all_max;
    if (target == INT64_MIN)
        return;
    for (size_t p = 0; p < j->nparts; p++) {
        if (!j->parts[p].assigned)
            continue;
        for (int k = 0; k < 2; k++) {
            side_t *s = &j->parts[p].s[k];
            int idle = now_ms - s->last_active >= j->c.idle_timeout_ms &&
                       s->next_off >= s->replay_until && s->adv_next >= s->nadv;
            if (!idle || s->wm >= target)
                continue;
            ld_wm_advance_t a = {(ld_topic_kind_t)k, (int32_t)p, s->next_off,
                                 target};
            if (adv_record(s, s->next_off, target) != LD_OK)
                continue; /* not recorded: not applied */
            raise_wm(j, s, target);
            j->st.idle_advances++;
            ld_log(LD_LOG_INFO, "join",
                   "msg=\"idle partition watermark advanced\" topic=%s "
                   "partition=%zu offset=%lld watermark=%lld",
                   k ? "labels" : "events", p, (long long)s->next_off,
                   (long long)target);
            if (cb)
                cb(&a, opaque);
        }
    }
}

void ld_joiner_note_backlog(ld_joiner_t *j, ld_topic_kind_t kind,
                            int32_t partition)
{
    if (partition < 0 || (size_t)partition >= j->nparts ||
        !j->parts[partition].assigned ||
        (kind != LD_TOPIC_EVENTS && kind != LD_TOPIC_LABELS))
        return;
    j->parts[partition].s[kind].seen = 1;
}

ld_err_t ld_joiner_apply_advance(ld_joiner_t *j, const ld_wm_advance_t *adv)
{
    part_t *pt = adv ? get_part(j, adv->partition) : NULL;
    if (!pt || (adv->kind != LD_TOPIC_EVENTS && adv->kind != LD_TOPIC_LABELS))
        return LD_ERR_INVAL;
    side_t *s = &pt->s[adv->kind];
    ld_err_t err = adv_record(s, adv->offset, adv->watermark_ms);
    if (err)
        return err;
    raise_wm(j, s, adv->watermark_ms);
    return LD_OK;
}

void ld_joiner_flow(ld_joiner_t *j, ld_joiner_flow_cb *cb, void *opaque)
{
    int64_t W = get_W(j);
    uint64_t npaused = 0;
    /* Pause = watermark alignment: hold back the sides ahead of the global
     * watermark so the laggards that hold it can catch up and free space. */
    int on = j->c.at_bound == LD_BOUND_PAUSE && j->bound_hit;
    for (size_t p = 0; p < j->nparts; p++) {
        if (!j->parts[p].assigned)
            continue;
        for (int k = 0; k < 2; k++) {
            side_t *s = &j->parts[p].s[k];
            int want = on && s->wm > W;
            if (want != s->paused) {
                s->paused = want;
                if (cb)
                    cb((ld_topic_kind_t)k, (int32_t)p, want, opaque);
            }
            npaused += (uint64_t)want;
        }
    }
    j->st.paused = npaused;
}

void ld_joiner_stats(ld_joiner_t *j, ld_joiner_stats_t *out)
{
    j->st.watermark_ms = get_W(j);
    j->st.watermark_max_ms = INT64_MIN;
    for (size_t p = 0; p < j->nparts; p++)
        for (int k = 0; k < 2 && j->parts[p].assigned; k++)
            if (j->parts[p].s[k].wm > j->st.watermark_max_ms)
                j->st.watermark_max_ms = j->parts[p].s[k].wm;
    j->st.bytes_entries = j->slab.in_use;
    uint64_t b = j->slab.reserved + sizeof(*j);
    b += (j->evt.cap + j->lbt.cap) * (sizeof(uint32_t) + sizeof(uint16_t));
    b += (j->evh.cap + j->lbh.cap) * (sizeof(int64_t) + sizeof(uint32_t));
    b += j->qcap * sizeof(*j->qh);
    for (size_t p = 0; p < j->nparts; p++)
        b += (uint64_t)j->parts[p].q.cap * (sizeof(int64_t) + sizeof(uint32_t));
    b += j->fifo_cap * sizeof(fifo_ent_t) + j->nparts * sizeof(part_t);
    b += j->scratch.cap * 2 * sizeof(uint64_t) + j->scratch.bits_cap;
    b += (uint64_t)j->ocap_sparse * 8 + (uint64_t)j->ocap_dense * 4;
    for (size_t p = 0; p < j->nparts; p++)
        for (int k = 0; k < 2; k++)
            b += j->parts[p].s[k].ring_cap * sizeof(blk_t) +
                 j->parts[p].s[k].cap_adv * sizeof(adv_t);
    j->st.bytes_total = b;
    *out = j->st;
}

/* ---- assignment --------------------------------------------------------- */

ld_err_t ld_joiner_assign(ld_joiner_t *j, int32_t partition)
{
    ld_err_t err = ensure_part(j, partition);
    if (err)
        return err;
    part_t *pt = &j->parts[partition];
    if (pt->assigned)
        return LD_ERR_INVAL;
    pt->assigned = 1;
    if (!pt->loaded) {
        /* Keep loaded advances only through a load; fresh state here. */
        for (int k = 0; k < 2; k++)
            side_reset(&pt->s[k]);
        pt->skip_before = INT64_MIN;
    } else {
        for (int k = 0; k < 2; k++) {
            side_t *s = &pt->s[k];
            s->wm = pt->l_wm[k];
            s->next_off = pt->l_resume[k] >= 0 ? pt->l_resume[k] : -1;
            s->replay_until = pt->l_next[k];
            apply_pending_adv(j, s, pt->l_resume[k]);
        }
        pt->loaded = 0;
    }
    j->wdirty = 1;
    return LD_OK;
}

ld_err_t ld_joiner_revoke(ld_joiner_t *j, int32_t partition)
{
    part_t *pt = get_part(j, partition);
    if (!pt)
        return LD_ERR_INVAL;
    /* Collect first: removing from a heap reorders it. */
    runq_t *q = &pt->q;
    size_t n = 0, cap = j->evh.n > j->lbh.n ? j->evh.n : j->lbh.n;
    cap += q->n;
    uint32_t *victims = malloc((cap ? cap : 1) * sizeof(*victims));
    if (!victims)
        return LD_ERR_NOMEM;
    for (size_t i = 0; i < j->evh.n; i++)
        if (ent_at(j, j->evh.hd[i])->part == partition)
            victims[n++] = j->evh.hd[i];
    for (uint32_t i = 0; i < q->n; i++)
        victims[n++] = q->hd[(q->head + i) & (q->cap - 1)];
    rq_clear(j, partition);
    for (size_t i = 0; i < n; i++)
        ev_remove(j, victims[i]);
    n = 0;
    for (size_t i = 0; i < j->lbh.n; i++)
        if (ent_at(j, j->lbh.hd[i])->part == partition)
            victims[n++] = j->lbh.hd[i];
    for (size_t i = 0; i < n; i++)
        lb_remove(j, victims[i]);
    free(victims);
    size_t keep = j->fifo_head;
    for (size_t i = j->fifo_head; i < j->fifo_n; i++) {
        if (ent_at(j, j->fifo[i].hd)->part == partition)
            ev_free(j, j->fifo[i].hd);
        else
            j->fifo[keep++] = j->fifo[i];
    }
    j->fifo_n = keep;
    for (int k = 0; k < 2; k++)
        side_reset(&pt->s[k]);
    pt->assigned = 0;
    pt->loaded = 0;
    j->wdirty = 1;
    return LD_OK;
}

/* ---- resume ------------------------------------------------------------- */

static void side_resume(side_t *s, int64_t *off, int64_t *wm)
{
    for (uint32_t q = s->head_seq; q != s->tail_seq; q++) {
        blk_t *b = ring_at(s, q);
        if (b->alive) {
            *off = b->first_off;
            *wm = b->wm_before;
            return;
        }
    }
    *off = s->next_off;
    *wm = s->wm;
}

ld_err_t ld_joiner_resume_offsets(ld_joiner_t *j, int32_t partition,
                                  int64_t *events_offset,
                                  int64_t *labels_offset)
{
    if (partition < 0 || (size_t)partition >= j->nparts)
        return LD_ERR_INVAL;
    part_t *pt = &j->parts[partition];
    int64_t off[2], wm;
    if (pt->loaded) {
        off[0] = pt->l_resume[0];
        off[1] = pt->l_resume[1];
    } else if (pt->assigned) {
        for (int k = 0; k < 2; k++)
            side_resume(&pt->s[k], &off[k], &wm);
    } else {
        return LD_ERR_INVAL;
    }
    *events_offset = off[0];
    *labels_offset = off[1];
    return LD_OK;
}

#define RESUME_MAGIC "LDJ1"

ld_err_t ld_joiner_resume_encode(ld_joiner_t *j, int32_t partition,
                                 uint8_t **buf, size_t *len)
{
    part_t *pt = get_part(j, partition);
    if (!pt || !buf || !len)
        return LD_ERR_INVAL;
    int64_t W = get_W(j);
    int64_t et;
    uint32_t ehd;
    int32_t eqp;
    if (j->fifo_head < j->fifo_n || (ev_first(j, &et, &ehd, &eqp) && et < W) ||
        (j->lbh.n && j->lbh.t[0] + j->w < W))
        return LD_ERR_INVAL; /* not drained: poll until 0 first */
    int64_t roff[2], rwm[2];
    size_t nadv[2], first[2];
    for (int k = 0; k < 2; k++) {
        side_t *s = &pt->s[k];
        side_resume(s, &roff[k], &rwm[k]);
        /* Advances at or below the resume offset are inside rwm. */
        first[k] = 0;
        while (first[k] < s->nadv && s->adv[first[k]].off <= roff[k])
            first[k]++;
        nadv[k] = s->nadv - first[k];
    }
    ld_wbuf_t w = {0};
    ld_wbuf_bytes(&w, RESUME_MAGIC, 4);
    ld_wbuf_u32(&w, (uint32_t)partition);
    /* Every example with a decision time below w_high is out (drained),
     * none above: W <= w_high, and nothing new can decide below it. */
    ld_wbuf_i64(&w, W > j->w_high ? W : j->w_high);
    for (int k = 0; k < 2; k++) {
        side_t *s = &pt->s[k];
        ld_wbuf_i64(&w, roff[k]);
        ld_wbuf_i64(&w, rwm[k]);
        ld_wbuf_i64(&w, s->next_off);
        ld_wbuf_u32(&w, (uint32_t)nadv[k]);
        for (size_t i = first[k]; i < s->nadv; i++) {
            ld_wbuf_i64(&w, s->adv[i].off);
            ld_wbuf_i64(&w, s->adv[i].wm);
        }
    }
    if (w.err) {
        ld_err_t err = w.err;
        ld_wbuf_free(&w);
        return err;
    }
    *buf = w.p;
    *len = w.len;
    return LD_OK;
}

ld_err_t ld_joiner_resume_load(ld_joiner_t *j, const uint8_t *buf, size_t len)
{
    if (!buf || len < 16)
        return LD_ERR_CORRUPT;
    ld_rbuf_t r = ld_rbuf_make(buf, len);
    if (memcmp(ld_rbuf_take(&r, 4), RESUME_MAGIC, 4) != 0)
        return LD_ERR_CORRUPT;
    uint32_t part = ld_rbuf_u32(&r);
    if (part > MAX_PART)
        return LD_ERR_CORRUPT;
    int64_t skip = ld_rbuf_i64(&r);
    int64_t roff[2], rwm[2], rnext[2];
    uint32_t nadv[2];
    const uint8_t *advp[2];
    for (int k = 0; k < 2; k++) {
        if (ld_rbuf_left(&r) < 28)
            return LD_ERR_CORRUPT;
        roff[k] = ld_rbuf_i64(&r);
        rwm[k] = ld_rbuf_i64(&r);
        rnext[k] = ld_rbuf_i64(&r);
        nadv[k] = ld_rbuf_u32(&r);
        if (roff[k] < -1 || rnext[k] < -1 || ld_rbuf_left(&r) / 16 < nadv[k])
            return LD_ERR_CORRUPT;
        advp[k] = ld_rbuf_take(&r, (size_t)nadv[k] * 16);
    }
    if (r.err || ld_rbuf_left(&r))
        return LD_ERR_CORRUPT;
    ld_err_t err = ensure_part(j, (int32_t)part);
    if (err)
        return err;
    part_t *pt = &j->parts[part];
    if (pt->assigned)
        return LD_ERR_INVAL;
    for (int k = 0; k < 2; k++) {
        side_t *s = &pt->s[k];
        side_reset(s);
        ld_rbuf_t q = ld_rbuf_make(advp[k], (size_t)nadv[k] * 16);
        int64_t prev = INT64_MIN;
        for (uint32_t i = 0; i < nadv[k]; i++) {
            int64_t o = ld_rbuf_i64(&q), w = ld_rbuf_i64(&q);
            if (o < prev)
                return LD_ERR_CORRUPT;
            prev = o;
            if ((err = adv_record(s, o, w)) != LD_OK)
                return err;
        }
        s->adv_next = 0;
        pt->l_resume[k] = roff[k];
        pt->l_wm[k] = rwm[k];
        pt->l_next[k] = rnext[k];
    }
    pt->skip_before = skip;
    pt->loaded = 1;
    if (skip > j->w_high)
        j->w_high = skip;
    return LD_OK;
}

void joiner_set_block_records(ld_joiner_t *j, uint32_t n)
{
    j->block_recs = n ? n : 1;
}

/* ---- audit -------------------------------------------------------------- */

const char *ld_sample_type_name(ld_sample_type_t t)
{
    switch (t) {
    case LD_SAMPLE_POS:
        return "pos";
    case LD_SAMPLE_DEFAULT_NEG:
        return "default_neg";
    case LD_SAMPLE_FAKE_NEG:
        return "fake_neg";
    case LD_SAMPLE_DELAYED_POS:
        return "delayed_pos";
    default:
        return "?";
    }
}
