/* SPDX-License-Identifier: Apache-2.0 */
/* The joiner's partitions: watermarks, resume blocks and the resume record
 * that lets a restart continue without releasing an example twice. */
#include <stdlib.h>

#include "common/bytes.h"

#include "labeling/joiner_impl.h"

/* ---- partitions and resume blocks --------------------------------------- */

ld_err_t ensure_part(ld_joiner_t *j, int32_t p)
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

void side_reset(side_t *s)
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

blk_t *ring_at(side_t *s, uint32_t seq)
{
    return &s->ring[seq & (s->ring_cap - 1)];
}

/* Counts the record at off in the tail block (opening one when needed) and
 * returns the block's sequence number and the offset within it. */
ld_err_t ring_note(side_t *s, uint32_t block_recs, int64_t off, uint32_t *seq,
                   uint16_t *rel)
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

void blk_pin(ld_joiner_t *j, int32_t p, int kind, uint32_t seq)
{
    side_t *s = &j->parts[p].s[kind];
    if (seq_valid(s, seq))
        ring_at(s, seq)->alive++;
}

/* Drops a pin; dead blocks at the head (except the open tail) are popped. */
void blk_unpin(ld_joiner_t *j, int32_t p, int kind, uint32_t seq)
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

void raise_wm(ld_joiner_t *j, side_t *s, int64_t wm)
{
    if (wm <= s->wm)
        return;
    if (s->wm <= j->W)
        j->wdirty = 1;
    s->wm = wm;
}

void recompute_W(ld_joiner_t *j)
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

ld_err_t adv_record(side_t *s, int64_t off, int64_t wm)
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

/* LDJ1: the partition's place. LDJ2 adds the offsets of the labels
 * pending at this point (count UINT32_MAX: not listed, the small record)
 * and the partition's lifetime counters, so that a restart counts each
 * label once (docs/LABELING.md, "Resume"). LDJ1 is still read. */
#define RESUME_MAGIC_V1 "LDJ1"
#define RESUME_MAGIC    "LDJ2"
#define PEND_UNLISTED   UINT32_MAX

/* The lifetime counters a record carries, in this order; a reader takes
 * the first ones it knows, so the list only grows at its end. */
static const size_t life_fields[] = {
    offsetof(ld_joiner_stats_t, events_in),
    offsetof(ld_joiner_stats_t, labels_in),
    offsetof(ld_joiner_stats_t, events_late),
    offsetof(ld_joiner_stats_t, labels_late),
    offsetof(ld_joiner_stats_t, events_duplicate),
    offsetof(ld_joiner_stats_t, labels_joined),
    offsetof(ld_joiner_stats_t, labels_after_window),
    offsetof(ld_joiner_stats_t, late_labels_dropped),
    offsetof(ld_joiner_stats_t, labels_unmatched),
    offsetof(ld_joiner_stats_t, labels_nolabel),
    offsetof(ld_joiner_stats_t, events_expired),
    offsetof(ld_joiner_stats_t, labels_expired),
    offsetof(ld_joiner_stats_t, examples[LD_SAMPLE_POS]),
    offsetof(ld_joiner_stats_t, examples[LD_SAMPLE_DEFAULT_NEG]),
    offsetof(ld_joiner_stats_t, examples[LD_SAMPLE_FAKE_NEG]),
    offsetof(ld_joiner_stats_t, examples[LD_SAMPLE_DELAYED_POS]),
};
#define NLIFE (sizeof(life_fields) / sizeof(life_fields[0]))

static uint64_t *life_at(ld_joiner_stats_t *st, size_t i)
{
    return (uint64_t *)(void *)((char *)st + life_fields[i]);
}

void pend_reset(part_t *pt)
{
    free(pt->pend);
    pt->pend = NULL;
    pt->npend = 0;
    pt->pend_known = 0;
}

uint8_t label_state(const ld_joiner_t *j, const part_t *pt, int64_t off)
{
    if (!j->quiet)
        return LB_FRESH;
    if (!pt->pend_known)
        return LB_UNKNOWN;
    size_t lo = 0, hi = pt->npend;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (pt->pend[mid] < off)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < pt->npend && pt->pend[lo] == off ? LB_PEND : LB_GHOST;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Offsets of the labels of partition p pending now, sorted; *n of them. */
static ld_err_t pending_labels(const ld_joiner_t *j, int32_t p, int64_t **out,
                               size_t *n)
{
    *n = 0;
    *out = malloc((j->lbh.n ? j->lbh.n : 1) * sizeof(**out));
    if (!*out)
        return LD_ERR_NOMEM;
    for (size_t i = 0; i < j->lbh.n; i++) {
        const ent_t *en = ent_at(j, j->lbh.hd[i]);
        if (en->part == (uint16_t)p)
            (*out)[(*n)++] = ent_off(j, en, LD_TOPIC_LABELS);
    }
    qsort(*out, *n, sizeof(**out), cmp_i64);
    return LD_OK;
}

/* keep_adv 0: without the pending advances (the small record). */
static ld_err_t resume_encode(ld_joiner_t *j, int32_t partition, int keep_adv,
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
        if (!keep_adv)
            first[k] = s->nadv;
        nadv[k] = s->nadv - first[k];
    }
    int64_t *pend = NULL;
    size_t npend = 0;
    if (keep_adv) {
        ld_err_t perr = pending_labels(j, partition, &pend, &npend);
        if (perr)
            return perr;
    }
    ld_wbuf_t w = {0};
    ld_wbuf_bytes(&w, RESUME_MAGIC, 4);
    ld_wbuf_u32(&w, (uint32_t)partition);
    /* Every example of p with a decision time below the skip point is
     * out (drained), none above: the highest W it was released under while
     * p was held (hi, then w_high since the last assign), or W now. */
    int64_t skip = pt->hi > j->w_high ? pt->hi : j->w_high;
    ld_wbuf_i64(&w, W > skip ? W : skip);
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
    ld_wbuf_u32(&w, keep_adv ? (uint32_t)npend : PEND_UNLISTED);
    for (size_t i = 0; i < npend; i++)
        ld_wbuf_i64(&w, pend[i]);
    free(pend);
    ld_wbuf_u32(&w, (uint32_t)NLIFE);
    for (size_t i = 0; i < NLIFE; i++)
        ld_wbuf_u64(&w, *life_at(&pt->life, i));
    if (w.err) {
        ld_err_t err = w.err;
        ld_wbuf_free(&w);
        return err;
    }
    *buf = w.p;
    *len = w.len;
    return LD_OK;
}

ld_err_t ld_joiner_resume_encode(ld_joiner_t *j, int32_t partition,
                                 uint8_t **buf, size_t *len)
{
    return resume_encode(j, partition, 1, buf, len);
}

ld_err_t ld_joiner_resume_encode_small(ld_joiner_t *j, int32_t partition,
                                       uint8_t **buf, size_t *len)
{
    return resume_encode(j, partition, 0, buf, len);
}

ld_err_t ld_joiner_resume_load(ld_joiner_t *j, const uint8_t *buf, size_t len)
{
    if (!buf || len < 16)
        return LD_ERR_CORRUPT;
    ld_rbuf_t r = ld_rbuf_make(buf, len);
    const uint8_t *magic = ld_rbuf_take(&r, 4);
    int v2 = memcmp(magic, RESUME_MAGIC, 4) == 0;
    if (!v2 && memcmp(magic, RESUME_MAGIC_V1, 4) != 0)
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
    uint32_t npend = PEND_UNLISTED, nlife = 0;
    const uint8_t *pendp = NULL, *lifep = NULL;
    if (v2) {
        npend = ld_rbuf_u32(&r);
        if (npend != PEND_UNLISTED) {
            if (ld_rbuf_left(&r) / 8 < npend)
                return LD_ERR_CORRUPT;
            pendp = ld_rbuf_take(&r, (size_t)npend * 8);
        }
        nlife = ld_rbuf_u32(&r);
        if (ld_rbuf_left(&r) / 8 < nlife)
            return LD_ERR_CORRUPT;
        lifep = ld_rbuf_take(&r, (size_t)nlife * 8);
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
    pend_reset(pt);
    memset(&pt->life, 0, sizeof(pt->life));
    if (npend != PEND_UNLISTED) {
        pt->pend = malloc((npend ? npend : 1) * sizeof(*pt->pend));
        if (!pt->pend)
            return LD_ERR_NOMEM;
        ld_rbuf_t q = ld_rbuf_make(pendp, (size_t)npend * 8);
        for (uint32_t i = 0; i < npend; i++) {
            pt->pend[i] = ld_rbuf_i64(&q);
            if (i && pt->pend[i] <= pt->pend[i - 1]) {
                pend_reset(pt);
                return LD_ERR_CORRUPT;
            }
        }
        pt->npend = npend;
        pt->pend_known = 1;
    }
    ld_rbuf_t q = ld_rbuf_make(lifep, (size_t)nlife * 8);
    for (uint32_t i = 0; i < nlife; i++) {
        uint64_t v = ld_rbuf_u64(&q);
        if (i < NLIFE) /* counters a newer writer added are not ours */
            *life_at(&pt->life, i) = v;
    }
    pt->skip_before = skip;
    pt->loaded = 1;
    return LD_OK;
}

void joiner_set_block_records(ld_joiner_t *j, uint32_t n)
{
    j->block_recs = n ? n : 1;
}

void ld_joiner_stats_lifetime(ld_joiner_t *j, ld_joiner_stats_t *out)
{
    ld_joiner_stats(j, out);
    for (size_t i = 0; i < NLIFE; i++)
        *life_at(out, i) = 0;
    for (size_t p = 0; p < j->nparts; p++) {
        if (!j->parts[p].assigned)
            continue;
        for (size_t i = 0; i < NLIFE; i++)
            *life_at(out, i) += *life_at(&j->parts[p].life, i);
    }
}
