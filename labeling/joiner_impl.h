/* SPDX-License-Identifier: Apache-2.0 */
/* The joiner's private state: entry layouts, its hash table, timer heaps,
 * run queues and partition sides, shared by joiner.c (the rules of
 * docs/LABELING.md), table.c, timers.c, resume.c and flow.c. Nothing
 * outside labeling/ includes this. */
#ifndef LD_LABELING_JOINER_IMPL_H
#define LD_LABELING_JOINER_IMPL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "labeling/internal.h"
#include "labeling/labeling.h"

#define NO_DT      INT32_MIN
#define NO_BLK     UINT32_MAX
#define BLOCK_RECS 256u /* records per resume block of a partition */
#define MAX_PART   65535
#define TIME_LIMIT (INT64_C(1) << 61)

/* Event timer states: each event has exactly one timer in the heap. */
enum { T_DECIDE = 0, T_DELAYED = 1, T_RETIRE = 2, T_FIFO = 3 };
/* A pending label's state byte: what its outcome adds to the counters.
 * FRESH: read for the first time. PEND: re-read after a restart and pending
 * at the commit point the resume record was taken at, so its outcome comes
 * after that point and counts. GHOST: re-read, and not pending at that
 * point: an earlier process joined, dropped or expired it and counted that;
 * nothing it does now counts (it is still held so that a re-read event
 * that had claimed it claims it again). UNKNOWN: re-read, from a resume
 * record without the list of pending labels (LDJ1, or the small record):
 * counted by the old rules (time of the decision against the skip point). */
enum { LB_FRESH = 0, LB_PEND = 1, LB_GHOST = 2, LB_UNKNOWN = 3 };
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
    uint8_t state; /* events: T_*; labels: LB_* */
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
    int64_t hi;          /* decided below, before the current epoch */
    side_t s[2];
    /* loaded resume values, applied at assign */
    int64_t l_resume[2], l_wm[2], l_next[2];
    /* Labels pending at the commit point of the loaded record, by offset
     * (sorted); pend_known 0 when the record did not list them. */
    int64_t *pend;
    size_t npend;
    int pend_known;
    /* This partition's counters since its first record, across restarts:
     * loaded from its resume record, then counted here (lifetime). */
    ld_joiner_stats_t life;
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
    /* The highest W examples were released under since the last assign.
     * W itself can fall: a partition assigned (a rebalance, or one loaded
     * from a resume record) restarts at an older watermark. Everything of
     * a partition assigned through this epoch decided below w_high is out;
     * at each assign it is folded into every held partition's hi and
     * starts again, so that a partition that joins later is not said to be
     * decided up to a watermark it never had (issue #22: a record moved to
     * another join instance would skip its pending examples). */
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

/* Counts in this process's counters and in partition p's lifetime ones. */
#define BUMP(j, p, field)                                                      \
    do {                                                                       \
        (j)->st.field++;                                                       \
        (j)->parts[(p)].life.field++;                                          \
    } while (0)

/* BUMP unless the current record is a re-read one (counted before). */
#define CNT(j, p, field)                                                       \
    do {                                                                       \
        if (!(j)->quiet)                                                       \
            BUMP(j, p, field);                                                 \
    } while (0)

#define NO_HD  UINT32_MAX
#define NO_POS UINT32_MAX /* hpos of an event that is not in the heap */

static inline size_t ev_size(size_t keylen, size_t packed)
{
    return offsetof(ev_t, data) + keylen + packed;
}

static inline size_t lb_size(size_t keylen)
{
    return offsetof(lb_t, data) + keylen;
}

static inline uint64_t hash_key(const uint8_t *p, size_t n)
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

static inline ent_t *ent_at(const ld_joiner_t *j, uint32_t hd)
{
    return slab_ptr(&j->slab, hd);
}

static inline ev_t *ev_at(const ld_joiner_t *j, uint32_t hd)
{
    return slab_ptr(&j->slab, hd);
}

static inline lb_t *lb_at(const ld_joiner_t *j, uint32_t hd)
{
    return slab_ptr(&j->slab, hd);
}

static inline const uint8_t *ent_key(const ld_joiner_t *j, const tab_t *t,
                                     uint32_t hd)
{
    if (t->labels)
        return lb_at(j, hd)->data;
    return ev_at(j, hd)->data;
}

/* Record order of two entries of one side of one partition: their offsets,
 * as (block sequence, offset within block). */
static inline int ent_before(const ent_t *a, const ent_t *b)
{
    if (a->blk != b->blk)
        return (int32_t)(a->blk - b->blk) < 0;
    return a->rel < b->rel;
}

static inline int64_t ev_timer(const ld_joiner_t *j, const ev_t *e)
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

/* table.c: the hash index of pending events and labels by key */
ld_err_t tab_grow(const ld_joiner_t *j, tab_t *t);
ld_err_t tab_insert(const ld_joiner_t *j, tab_t *t, uint32_t hd, uint64_t h);
void tab_remove(const ld_joiner_t *j, tab_t *t, uint32_t hd, uint64_t h);

/* Source offset of an entry of side kind. */
static inline int64_t ent_off(const ld_joiner_t *j, const ent_t *en, int kind)
{
    const side_t *s = &j->parts[en->part].s[kind];
    return s->ring[en->blk & (s->ring_cap - 1)].first_off + en->rel;
}

/* timers.c: timer heaps and per-partition run queues */
ld_err_t h_reserve(heap_t *h);
ld_err_t h_push(const ld_joiner_t *j, heap_t *h, uint32_t hd, int64_t t);
void h_remove(const ld_joiner_t *j, heap_t *h, size_t i);
void ev_retime(ld_joiner_t *j, ev_t *e);
ld_err_t rq_add(ld_joiner_t *j, int32_t p, uint32_t hd, int64_t t, int *queued);
void rq_pop(ld_joiner_t *j, int32_t p);
void rq_clear(ld_joiner_t *j, int32_t p);

/* resume.c: partitions, watermarks and resume blocks */
ld_err_t ring_note(side_t *s, uint32_t block_recs, int64_t off, uint32_t *seq,
                   uint16_t *rel);
void recompute_W(ld_joiner_t *j);
ld_err_t ensure_part(ld_joiner_t *j, int32_t p);
void side_reset(side_t *s);
void pend_reset(part_t *pt);
uint8_t label_state(const ld_joiner_t *j, const part_t *pt, int64_t off);
void blk_pin(ld_joiner_t *j, int32_t p, int kind, uint32_t seq);
void blk_unpin(ld_joiner_t *j, int32_t p, int kind, uint32_t seq);
void raise_wm(ld_joiner_t *j, side_t *s, int64_t wm);
ld_err_t adv_record(side_t *s, int64_t off, int64_t wm);
blk_t *ring_at(side_t *s, uint32_t seq);

/* ---- hot paths, inline in every file ---------------------------------- */

/* Release walks each run queue in order, and its entries and their index
 * slots are cold: fetch the entry RQ_AHEAD places ahead, and the index slot
 * of the one half as far (its key is in cache by then). */
#define RQ_AHEAD 4u

static inline uint8_t hash_tag(uint64_t h)
{
    uint8_t tag = (uint8_t)(h >> 56);
    return tag ? tag : 1;
}

/* Next handle at or after *i in the probe sequence of hash h whose tag
 * matches, or NO_HD at the first empty slot; *i moves past it. */
static inline uint32_t tab_next(const tab_t *t, size_t *i, uint64_t h)
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

static inline part_t *get_part(ld_joiner_t *j, int32_t p)
{
    if (p < 0 || (size_t)p >= j->nparts || !j->parts[p].assigned)
        return NULL;
    return &j->parts[p];
}

static inline int64_t get_W(ld_joiner_t *j)
{
    if (j->wdirty)
        recompute_W(j);
    return j->W;
}

/* Applies loaded or replayed advances whose position is <= pos. */
static inline void apply_pending_adv(ld_joiner_t *j, side_t *s, int64_t pos)
{
    while (s->adv_next < s->nadv && s->adv[s->adv_next].off <= pos) {
        raise_wm(j, s, s->adv[s->adv_next].wm);
        s->adv_next++;
    }
}

/* Common arrival bookkeeping of a record; returns 1 if it is late. */
static inline int arrive(ld_joiner_t *j, side_t *s, int64_t off, int64_t t,
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

/* Full release order of two event timers: time, partition, offset. */
static inline int ev_order_before(const ld_joiner_t *j, int64_t ta, uint32_t a,
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
static inline int ev_first(const ld_joiner_t *j, int64_t *t, uint32_t *hd,
                           int32_t *qp)
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

static inline void rq_prefetch(const ld_joiner_t *j, const runq_t *q)
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

#endif
