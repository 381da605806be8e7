/* SPDX-License-Identifier: Apache-2.0 */
/* The trigger set's resume state: counters, windows, sketches,
 * detectors, the gate ring and queued decisions, little-endian with a
 * version, in one buffer (ld_triggers_save / ld_triggers_load). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "triggers/set.h"

#define STATE_MAGIC   0x4754444cu /* "LDTG" */
#define STATE_VERSION 3u

static void ev_save(const ld_trigger_evidence_t *e, ld_wbuf_t *w)
{
    ld_wbuf_str(w, e->metric);
    ld_wbuf_str(w, e->statistic);
    ld_wbuf_str(w, e->method);
    ld_wbuf_f64(w, e->value);
    ld_wbuf_f64(w, e->threshold);
    ld_wbuf_f64(w, e->p_value);
    ld_wbuf_f64(w, e->reference);
    ld_wbuf_u64(w, e->n);
}

static void ev_load(ld_trigger_evidence_t *e, ld_rbuf_t *r)
{
    ld_rbuf_str(r, e->metric, sizeof(e->metric));
    ld_rbuf_str(r, e->statistic, sizeof(e->statistic));
    ld_rbuf_str(r, e->method, sizeof(e->method));
    e->value = ld_rbuf_f64(r);
    e->threshold = ld_rbuf_f64(r);
    e->p_value = ld_rbuf_f64(r);
    e->reference = ld_rbuf_f64(r);
    e->n = ld_rbuf_u64(r);
}

static void decision_save(const ld_trigger_decision_t *d, ld_wbuf_t *w)
{
    ld_wbuf_u8(w, (uint8_t)d->type);
    ld_wbuf_u8(w, (uint8_t)d->severity);
    ld_wbuf_u8(w, (uint8_t)d->action);
    ld_wbuf_u8(w, (uint8_t)d->verdict);
    ld_wbuf_i64(w, d->event_time);
    ld_wbuf_i64(w, d->win_start);
    ld_wbuf_i64(w, d->win_end);
    ld_wbuf_i64(w, d->watermark);
    ld_wbuf_u64(w, d->champion_version);
    ld_wbuf_u64(w, d->challenger_version);
    ld_wbuf_str(w, d->id);
    ld_wbuf_str(w, d->key);
    ld_wbuf_str(w, d->reason);
    ld_wbuf_u64(w, d->evcap);
    ld_wbuf_u64(w, d->nev);
    for (size_t i = 0; i < d->nev; i++)
        ev_save(&d->ev[i], w);
    ld_wbuf_u64(w, d->ndrift);
    for (size_t i = 0; i < d->ndrift; i++)
        ld_wbuf_str(w, d->drifted[i]);
}

static ld_trigger_decision_t *decision_load(const ld_triggers_t *t,
                                            ld_rbuf_t *r)
{
    uint8_t type = ld_rbuf_u8(r), sev = ld_rbuf_u8(r), act = ld_rbuf_u8(r),
            ver = ld_rbuf_u8(r);
    if (type >= LD_TRIGGER__COUNT || sev < 1 || sev > 3 || act > 1 || ver > 3) {
        r->err = LD_ERR_CORRUPT;
        return NULL;
    }
    int64_t et = ld_rbuf_i64(r), ws = ld_rbuf_i64(r), we = ld_rbuf_i64(r),
            wm = ld_rbuf_i64(r);
    uint64_t champ = ld_rbuf_u64(r), chal = ld_rbuf_u64(r);
    char id[200], key[300], reason[200];
    ld_rbuf_str(r, id, sizeof(id));
    ld_rbuf_str(r, key, sizeof(key));
    ld_rbuf_str(r, reason, sizeof(reason));
    uint64_t evcap = ld_rbuf_u64(r);
    uint64_t nev = ld_rbuf_count(r, 40);
    if (r->err || evcap > 4096 || nev > evcap) {
        r->err = LD_ERR_CORRUPT;
        return NULL;
    }
    /* Drifted names are bounded by what one window can name. */
    ld_trigger_decision_t *d =
        decision_alloc((size_t)evcap, (size_t)t->nnum + 3);
    if (!d) {
        r->err = LD_ERR_NOMEM;
        return NULL;
    }
    d->type = (ld_trigger_type_t)type;
    d->severity = sev;
    d->action = (ld_trigger_action_t)act;
    d->verdict = (ld_trigger_verdict_t)ver;
    d->event_time = et;
    d->win_start = ws;
    d->win_end = we;
    d->watermark = wm;
    d->champion_version = champ;
    d->challenger_version = chal;
    memcpy(d->id, id, sizeof(id));
    memcpy(d->key, key, sizeof(key));
    memcpy(d->reason, reason, sizeof(reason));
    snprintf(d->model, sizeof(d->model), "%s", t->model);
    snprintf(d->topic, sizeof(d->topic), "%s", t->topic);
    d->nev = (size_t)nev;
    for (size_t i = 0; i < d->nev; i++)
        ev_load(&d->ev[i], r);
    uint64_t nd = ld_rbuf_u64(r);
    if (nd > (uint64_t)t->nnum + 3) {
        r->err = LD_ERR_CORRUPT;
        ld_trigger_decision_destroy(d);
        return NULL;
    }
    d->ndrift = (size_t)nd;
    for (size_t i = 0; i < d->ndrift; i++)
        ld_rbuf_str(r, d->drifted[i], sizeof(d->drifted[i]));
    if (r->err) {
        ld_trigger_decision_destroy(d);
        return NULL;
    }
    return d;
}

ld_err_t ld_triggers_save(const ld_triggers_t *t, uint8_t **out, size_t *len)
{
    ld_wbuf_t w = {0};
    const ld_triggers_conf_t *c = &t->c;
    ld_wbuf_u32(&w, STATE_MAGIC);
    ld_wbuf_u32(&w, STATE_VERSION);
    /* Layout-defining config: a mismatch refuses the state. */
    ld_wbuf_u64(&w, (uint64_t)c->window_size);
    ld_wbuf_u64(&w, (uint64_t)c->drift_sample_size);
    ld_wbuf_u64(&w, (uint64_t)c->drift_topk);
    ld_wbuf_u64(&w, (uint64_t)c->gate_window);
    ld_wbuf_u64(&w, (uint64_t)c->drift_hashed_bins);
    ld_wbuf_u8(&w, (uint8_t)t->have_nnum);
    ld_wbuf_u32(&w, t->nnum);

    ld_wbuf_u64(&w, t->examples);
    ld_wbuf_i64(&w, t->now);
    ld_wbuf_u64(&w, t->champion);
    ld_wbuf_u64(&w, t->seq);
    ld_wbuf_i64(&w, t->time_base);
    ld_wbuf_u64(&w, t->vol_base);
    for (int k = 0; k < KINDS; k++) {
        ld_wbuf_i64(&w, t->pol[k].last_fire);
        ld_wbuf_u32(&w, t->pol[k].bad_run);
        ld_wbuf_u64(&w, t->pol[k].fired);
    }
    ld_wbuf_u64(&w, t->next_index);
    win_save(t, &t->ref, &w);
    win_save(t, &t->prev, &w);
    win_save(t, &t->cur, &w);
    ld_wbuf_u8(&w, (uint8_t)t->pref_ok);
    ld_wbuf_u64(&w, t->pref_index);
    ld_wbuf_u64(&w, t->pref_from);
    res_save(&t->pref, &w);
    det_save(t->ddm, &w);
    det_save(t->adwin, &w);
    det_save(t->ph, &w);
    ld_wbuf_u8(&w, (uint8_t)t->stream_level);
    for (int i = 0; i < 3; i++) {
        ld_wbuf_u8(&w, t->stream_have[i]);
        if (t->stream_have[i])
            ev_save(&t->stream_ev[i], &w);
    }
    ld_wbuf_u64(&w, t->g_n);
    ld_wbuf_u64(&w, t->g_head);
    for (uint64_t i = 0; i < t->g_n; i++) {
        ld_wbuf_f32(&w, t->g_chal[i]);
        ld_wbuf_f32(&w, t->g_champ[i]);
        ld_wbuf_f32(&w, t->g_label[i]);
    }
    ld_wbuf_u64(&w, t->qlen);
    for (size_t i = 0; i < t->qlen; i++)
        decision_save(t->queue[i], &w);
    if (w.err) {
        free(w.p);
        return w.err;
    }
    *out = w.p;
    *len = w.len;
    return LD_OK;
}

/* The header: magic, version and the sizes the state was written under,
 * which must be t's. LD_ERR_CORRUPT, or LD_ERR_CONFIG (logged) when a size
 * differs. */
static ld_err_t load_header(const ld_triggers_t *t, ld_rbuf_t *r,
                            uint32_t *version, uint8_t *have, uint32_t *nnum)
{
    if (ld_rbuf_u32(r) != STATE_MAGIC)
        return LD_ERR_CORRUPT;
    /* Version 1 (before the hashed-id histogram and the champion's
     * prediction reference) still loads, so that an upgrade resumes: its
     * hashed-id sketches and live-model score samples are dropped, and
     * those two tests start afresh (the hashed test once a reference
     * window has been counted again, i.e. after the next publication;
     * prediction drift after the next complete window). */
    *version = ld_rbuf_u32(r);
    if (*version < 1 || *version > STATE_VERSION)
        return LD_ERR_CORRUPT;
    const ld_triggers_conf_t *c = &t->c;
    uint64_t ws = ld_rbuf_u64(r), ss = ld_rbuf_u64(r), tk = ld_rbuf_u64(r),
             gw = ld_rbuf_u64(r);
    uint64_t hb =
        *version == 1 ? (uint64_t)c->drift_hashed_bins : ld_rbuf_u64(r);
    *have = ld_rbuf_u8(r);
    *nnum = ld_rbuf_u32(r);
    if (r->err)
        return LD_ERR_CORRUPT;
    if (ws != (uint64_t)c->window_size ||
        ss != (uint64_t)c->drift_sample_size || tk != (uint64_t)c->drift_topk ||
        gw != (uint64_t)c->gate_window ||
        hb != (uint64_t)c->drift_hashed_bins ||
        *nnum > (uint64_t)c->drift_max_features) {
        ld_log(LD_LOG_ERR, "triggers",
               "msg=\"resume state written under another window, sample, "
               "top-k, hashed-bin or gate size\"");
        return LD_ERR_CONFIG;
    }
    return LD_OK;
}

/* Counters, policies, the three windows, the prediction reference and the
 * detectors; old takes version 1's top-k sketches (NULL for later
 * versions). Returns 0, or -1 when r ran out or a detector is corrupt. */
static int load_windows(ld_triggers_t *n, ld_rbuf_t *r, uint32_t version,
                        spacesaving_t *old)
{
    const ld_triggers_conf_t *c = &n->c;
    n->examples = ld_rbuf_u64(r);
    n->mod_dense = n->examples % (uint64_t)c->drift_stride;
    n->mod_hashed = n->examples % (uint64_t)c->drift_hashed_stride;
    n->now = ld_rbuf_i64(r);
    n->champion = ld_rbuf_u64(r);
    n->seq = ld_rbuf_u64(r);
    n->time_base = ld_rbuf_i64(r);
    n->vol_base = ld_rbuf_u64(r);
    for (int k = 0; k < KINDS; k++) {
        n->pol[k].last_fire = ld_rbuf_i64(r);
        n->pol[k].bad_run = ld_rbuf_u32(r);
        n->pol[k].fired = ld_rbuf_u64(r);
    }
    n->next_index = ld_rbuf_u64(r);
    win_load(n, &n->ref, r, old, version);
    win_load(n, &n->prev, r, old, version);
    win_load(n, &n->cur, r, old, version);
    if (version == 1) {
        n->pref_ok = 0;
        n->pref_from = n->cur.index + 1;
    } else {
        n->pref_ok = ld_rbuf_u8(r) != 0;
        n->pref_index = ld_rbuf_u64(r);
        n->pref_from = ld_rbuf_u64(r);
        res_load(&n->pref, r);
    }
    if (r->err || det_load(n->ddm, r) || det_load(n->adwin, r) ||
        det_load(n->ph, r))
        return -1;
    return 0;
}

/* The stream level and evidence and the gate ring. Returns 0, or -1 when
 * they are out of range (r's sticky error says when it ran out). */
static int load_stream_gate(ld_triggers_t *n, ld_rbuf_t *r, uint32_t version)
{
    uint8_t sl = ld_rbuf_u8(r);
    if (sl > LD_TRIGGER_LEVEL_ALERT)
        return -1;
    n->stream_level = (ld_trigger_level_t)sl;
    for (int i = 0; i < 3; i++) {
        n->stream_have[i] = ld_rbuf_u8(r);
        if (n->stream_have[i])
            ev_load(&n->stream_ev[i], r);
    }
    if (version < 3)
        stream_reset(n); /* they watched the live model */
    /* the header checked that the state's gate window is the config's */
    uint64_t gw = (uint64_t)n->c.gate_window;
    n->g_n = ld_rbuf_u64(r);
    n->g_head = ld_rbuf_u64(r);
    if (n->g_n > gw || n->g_head >= gw || (n->g_n < gw && n->g_head != n->g_n))
        return -1;
    if (n->g_n * 12 > r->len - r->off)
        return -1;
    for (uint64_t i = 0; i < n->g_n; i++) {
        n->g_chal[i] = ld_rbuf_f32(r);
        n->g_champ[i] = ld_rbuf_f32(r);
        n->g_label[i] = ld_rbuf_f32(r);
    }
    return 0;
}

/* The queued decisions. LD_OK, LD_ERR_CORRUPT or LD_ERR_NOMEM. */
static ld_err_t load_queue(ld_triggers_t *n, ld_rbuf_t *r)
{
    uint64_t q = ld_rbuf_u64(r);
    if (r->err || q > QUEUE_MAX)
        return LD_ERR_CORRUPT;
    for (uint64_t i = 0; i < q; i++) {
        ld_trigger_decision_t *d = decision_load(n, r);
        if (!d)
            return r->err == LD_ERR_NOMEM ? LD_ERR_NOMEM : LD_ERR_CORRUPT;
        n->queue[n->qlen++] = d;
    }
    return LD_OK;
}

/* Loads into a scratch trigger set made with t's config, then swaps it in,
 * so a bad buffer leaves t untouched. */
ld_err_t ld_triggers_load(ld_triggers_t *t, const uint8_t *buf, size_t len)
{
    ld_rbuf_t r = ld_rbuf_make(buf, len);
    uint32_t version, nnum;
    uint8_t have;
    ld_err_t err = load_header(t, &r, &version, &have, &nnum);
    if (err)
        return err;
    err = LD_ERR_CORRUPT;
    spacesaving_t old = {0};
    ld_triggers_conf_t cc = t->c;
    cc.drift_feature_names.v = t->names;
    cc.drift_feature_names.n = t->nnames;
    ld_triggers_t *n =
        ld_triggers_new(&cc, t->model, t->topic, t->champion, NULL, 0);
    if (!n || (version == 1 && ss_init(&old, (uint32_t)t->c.drift_topk))) {
        err = LD_ERR_NOMEM;
        goto err;
    }
    if (have) {
        ld_features_t x = {.ndense = nnum};
        ld_trigger_obs_t o = {.x = &x};
        if (ensure_nnum(n, &o)) {
            err = LD_ERR_NOMEM;
            goto err;
        }
    }
    if (load_windows(n, &r, version, version == 1 ? &old : NULL) < 0 ||
        load_stream_gate(n, &r, version) < 0)
        goto err;
    if ((err = load_queue(n, &r)) != LD_OK)
        goto err;
    err = LD_ERR_CORRUPT;
    if (r.err || r.off != len)
        goto err;
    /* Swap the loaded state into t (t keeps its address). */
    ld_triggers_t tmp = *t;
    *t = *n;
    *n = tmp;
    ld_triggers_destroy(n);
    ss_free(&old);
    if (version == 1)
        ld_log(LD_LOG_NOTICE, "triggers",
               "msg=\"resume state of version 1: hashed-id and prediction "
               "drift restart their references\"");
    return LD_OK;
err:
    ld_triggers_destroy(n);
    ss_free(&old);
    return err;
}
