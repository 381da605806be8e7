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
#include "labeling/joiner_impl.h"

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
        free(j->parts[p].pend);
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
 * earliest so far; returns 1 if it was taken. count: the label's outcome
 * counts (apply_label). */
static int set_delayed(ld_joiner_t *j, ev_t *e, int32_t rel, float v, int count)
{
    if (e->en.pk & E_DL_DONE)
        return 0;
    if (e->dl_dt != NO_DT && e->dl_dt <= rel)
        return 0;
    if (e->dl_dt != NO_DT && e->dl_dt > (int32_t)j->w)
        if (count) /* a later late label is replaced */
            BUMP(j, e->en.part, late_labels_dropped);
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
 * [e->t - w, e->t + w + h]. Labels reach one event in offset order. count:
 * the outcome happens after the last commit point (not re-read, or re-read
 * while its event is new): it goes into the counters. */
static void apply_label(ld_joiner_t *j, ev_t *e, int64_t t, float v,
                        uint32_t lblk, int count)
{
    int32_t rel = (int32_t)(t - e->en.t);
    int used = 0;
    if (rel <= j->w) {
        if (count)
            BUMP(j, e->en.part, labels_joined);
        if (j->fake) {
            if (v != (float)j->c.default_label)
                used = set_delayed(j, e, rel, v, count);
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
        if (count)
            BUMP(j, e->en.part, labels_after_window);
        /* correct: only events emitted default_neg get a correction. */
        if (j->c.late_policy == LD_LATE_CORRECT &&
            v != (float)j->c.default_label && (j->fake || e->agg_dt == NO_DT))
            used = set_delayed(j, e, rel, v, count);
        if (!used && count)
            BUMP(j, e->en.part, late_labels_dropped);
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
        const lb_t *l = lb_at(j, lh);
        if (l->en.state != LB_GHOST) /* a ghost's end was counted before */
            BUMP(j, l->en.part, labels_expired);
        lb_remove(j, lh);
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
    BUMP(j, e->en.part, events_expired);
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
/* Duplicate: a kept event with this key whose window + horizon covers
 * this one's time. First wins; the kept one stays until this one's
 * decisions would have passed, so a resume re-reads it too. Returns 1 when
 * the event at event_time_ms is such a duplicate (the kept one extended);
 * i is the index slot of hash h. */
static int absorb_duplicate(ld_joiner_t *j, size_t i, uint64_t h,
                            int32_t partition, const void *key, size_t keylen,
                            int64_t event_time_ms)
{
    for (uint32_t oh; (oh = tab_next(&j->evt, &i, h)) != NO_HD;) {
        ev_t *o = ev_at(j, oh);
        if (!same_key(&o->en, o->data, partition, key, keylen))
            continue;
        if (event_time_ms > o->en.t + j->w + j->h)
            continue;
        CNT(j, partition, events_duplicate);
        int64_t d = event_time_ms - o->en.t;
        if (d > o->dup_dt) {
            o->dup_dt = (int32_t)d;
            if (o->en.state == T_RETIRE)
                ev_retime(j, o);
        }
        return 1;
    }
    return 0;
}

/* Labels that came before event e (key hash h): claim those in range, in
 * offset order. */
static void claim_early_labels(ld_joiner_t *j, ev_t *e, uint64_t h,
                               int32_t partition, const void *key,
                               size_t keylen)
{
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
        /* The join happens now, at the event: it counts unless the label
         * was used before the commit point (a ghost), or, without a list of
         * pending labels, unless the event is a re-read one (j->quiet). */
        int count = best->en.state == LB_FRESH || best->en.state == LB_PEND ||
                    (best->en.state == LB_UNKNOWN && !j->quiet);
        apply_label(j, e, best->en.t, best->val, best->en.blk, count);
        lb_remove(j, bh);
    }
}

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
    CNT(j, partition, events_in);
    if (late) {
        CNT(j, partition, events_late);
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
    if (absorb_duplicate(j, i, h, partition, key, keylen, event_time_ms))
        goto done;
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
    if (j->lbt.n)
        claim_early_labels(j, e, h, partition, key, keylen);
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
    CNT(j, partition, labels_in);
    if (late) {
        CNT(j, partition, labels_late);
        goto done;
    }
    /* Re-read labels (j->quiet) that were pending at the commit point
     * still owe their outcome; the others had it before (LB_*). */
    uint8_t lstate = label_state(j, pt, offset);
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
        apply_label(j, best, label_time_ms, value, seq,
                    lstate == LB_FRESH || lstate == LB_PEND);
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
    l->en.state = lstate;
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
        CNT(j, partition, labels_in);
        CNT(j, partition, labels_nolabel);
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
            BUMP(j, out->partition, examples[type]);
            return 1;
        }
    }
    int64_t W = get_W(j);
    if (W > j->w_high)
        j->w_high = W;
    while (j->lbh.n && j->lbh.t[0] + j->w < W) {
        lb_t *l = lb_at(j, j->lbh.hd[0]);
        /* Counted once: a label pending at the commit point expires after
         * it; a ghost was joined, dropped or expired before it. Without the
         * list (LB_UNKNOWN), and for a new label: not when the expiry was
         * decided before a resume. */
        int count = l->en.state == LB_PEND ||
                    (l->en.state != LB_GHOST &&
                     l->en.t + j->w >= j->parts[l->en.part].skip_before);
        if (count)
            BUMP(j, l->en.part, labels_unmatched);
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
                        BUMP(j, e->en.part, late_labels_dropped);
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
        BUMP(j, out->partition, examples[type]); /* e may be gone */
        return 1;
    }
    return 0;
}

int64_t ld_joiner_decision_time(const ld_joiner_t *j)
{
    return j->odecide;
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
    /* A new epoch: what the others were decided up to is theirs. */
    for (size_t q = 0; q < j->nparts; q++)
        if (j->parts[q].assigned && j->w_high > j->parts[q].hi)
            j->parts[q].hi = j->w_high;
    j->w_high = INT64_MIN;
    pt->assigned = 1;
    if (!pt->loaded) {
        /* Keep loaded advances only through a load; fresh state here. */
        for (int k = 0; k < 2; k++)
            side_reset(&pt->s[k]);
        pt->skip_before = INT64_MIN;
        pend_reset(pt);
        memset(&pt->life, 0, sizeof(pt->life));
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
    pt->hi = pt->skip_before;
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
    /* Its counters go with its records: the next owner loads them. */
    pend_reset(pt);
    memset(&pt->life, 0, sizeof(pt->life));
    pt->assigned = 0;
    pt->loaded = 0;
    j->wdirty = 1;
    return LD_OK;
}
