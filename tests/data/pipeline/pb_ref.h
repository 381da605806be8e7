/* SPDX-License-Identifier: Apache-2.0 */
/* The protobuf-c decoding of the canonical Event and Label that
 * pipeline/protobuf.c replaced, kept as the reference the hand-written wire
 * decoder is compared against (fuzz target and unit tests). Header-only,
 * test code; it reaches into pipeline/internal.h on purpose. */
#ifndef LD_TESTS_PIPELINE_PB_REF_H
#define LD_TESTS_PIPELINE_PB_REF_H

#include <stdio.h>
#include <string.h>

#include "pipeline/internal.h"
#include "schemas/learnd.pb-c.h"

/* What protobuf-c + the old field feeding made of one value. */
typedef struct pbref {
    ld_fmap_t *fm[2]; /* per record kind */
} pbref_t;

static inline void pbref_set_str(ld_fv_t *v, const char *s)
{
    v->kind = FV_STR;
    v->u.s = s;
    v->n = (uint32_t)strlen(s);
}

/* The old ld_pbdec_decode (default allocator instead of the arena); *msg
 * takes the unpacked message, freed by pbref_free_msg(). */
static inline ld_reason_t pbref_decode(ld_fmap_t *fm, ld_record_kind_t kind,
                                       const uint8_t *p, size_t len, void **msg,
                                       char *err, size_t err_size)
{
    *msg = NULL;
    if (kind == LD_RECORD_LABEL) {
        Learnd__V1__Label *l = learnd__v1__label__unpack(NULL, len, p);
        if (!l) {
            snprintf(err, err_size, "not a learnd.v1.Label protobuf message");
            return LD_REASON_DECODE;
        }
        *msg = l;
        if (fm->key_slot >= 0 && l->event_id && *l->event_id)
            pbref_set_str(&fm->fv[fm->key_slot], l->event_id);
        if (fm->time_slot >= 0 && l->label_time_ms != 0) {
            fm->fv[fm->time_slot].kind = FV_INT;
            fm->fv[fm->time_slot].u.i = l->label_time_ms;
        }
        if (fm->label_slot >= 0) {
            fm->fv[fm->label_slot].kind = FV_DOUBLE;
            fm->fv[fm->label_slot].u.d = l->value;
        }
        return LD_REASON_NONE;
    }
    Learnd__V1__Event *e = learnd__v1__event__unpack(NULL, len, p);
    if (!e) {
        snprintf(err, err_size, "not a learnd.v1.Event protobuf message");
        return LD_REASON_DECODE;
    }
    *msg = e;
    if (fm->key_slot >= 0 && e->event_id && *e->event_id)
        pbref_set_str(&fm->fv[fm->key_slot], e->event_id);
    if (fm->time_slot >= 0 && e->event_time_ms != 0) {
        fm->fv[fm->time_slot].kind = FV_INT;
        fm->fv[fm->time_slot].u.i = e->event_time_ms;
    }
    for (size_t i = 0; i < e->n_features; i++) {
        const Learnd__V1__Feature *f = e->features[i];
        int32_t s = ld_fmap_find(fm, f->name, strlen(f->name));
        if (s < 0 || s == fm->key_slot || s == fm->time_slot)
            continue;
        ld_fv_t *v = &fm->fv[s];
        if (v->kind != FV_ABSENT) {
            snprintf(err, err_size, "feature %s appears twice", f->name);
            return LD_REASON_DUPLICATE_FIELD;
        }
        switch (f->value_case) {
        case LEARND__V1__FEATURE__VALUE_NUM:
            v->kind = FV_DOUBLE;
            v->u.d = f->num;
            break;
        case LEARND__V1__FEATURE__VALUE_STR:
            pbref_set_str(v, f->str);
            break;
        case LEARND__V1__FEATURE__VALUE_INTEGER:
            v->kind = FV_INT;
            v->u.i = f->integer;
            break;
        case LEARND__V1__FEATURE__VALUE_BOOLEAN:
            v->kind = FV_BOOL;
            v->u.i = f->boolean ? 1 : 0;
            break;
        case LEARND__V1__FEATURE__VALUE_TAGS:
            v->kind = FV_LIST;
            v->u.first = fm->nstrs;
            v->n = 0;
            for (size_t j = 0; f->tags && j < f->tags->n_values; j++) {
                const char *t = f->tags->values[j];
                if (ld_fmap_push_str(fm, t, (uint32_t)strlen(t)) < 0) {
                    snprintf(err, err_size, "out of memory");
                    return LD_REASON_DECODE;
                }
                v->n++;
            }
            break;
        default:
            v->kind = FV_NULL;
            break;
        }
    }
    return LD_REASON_NONE;
}

static inline void pbref_free_msg(ld_record_kind_t kind, void *msg)
{
    if (!msg)
        return;
    if (kind == LD_RECORD_LABEL)
        learnd__v1__label__free_unpacked(msg, NULL);
    else
        learnd__v1__event__free_unpacked(msg, NULL);
}

/* Compares the decoder's answer (why, *r, err) for value p/len with the
 * reference's; returns NULL when they agree, else what differs. */
static inline const char *pbref_compare(const ld_pipeline_conf_t *conf,
                                        ld_record_kind_t kind, const void *key,
                                        size_t key_len, const uint8_t *p,
                                        size_t len, int64_t ts, ld_reason_t why,
                                        const ld_record_t *r, const char *err)
{
    static ld_fmap_t *fms[2];
    static char buf[600];
    char rerr[512] = "";
    if (!fms[kind]) {
        char e[256];
        fms[kind] = ld_fmap_new(conf, kind, 1, e, sizeof(e));
        if (!fms[kind])
            return "reference fmap";
    }
    ld_fmap_t *fm = fms[kind];
    ld_fmap_reset(fm);
    void *msg = NULL;
    ld_record_t x;
    memset(&x, 0, sizeof(x));
    ld_reason_t rw = pbref_decode(fm, kind, p, len, &msg, rerr, sizeof(rerr));
    if (!rw)
        rw = ld_fmap_finish(fm, key, key_len, ts, &x, rerr, sizeof(rerr));
    const char *diff = NULL;
    if (rw != why)
        diff = "reason";
    else if (strcmp(rerr, err) != 0)
        diff = "detail";
    else if (!why) {
        if (x.key_len != r->key_len || memcmp(x.key, r->key, x.key_len) ||
            x.time_ms != r->time_ms || x.label != r->label ||
            x.x.nnz != r->x.nnz || x.x.ndense != r->x.ndense ||
            (x.x.nnz &&
             (memcmp(x.x.idx, r->x.idx, x.x.nnz * sizeof(*x.x.idx)) ||
              memcmp(x.x.val, r->x.val, x.x.nnz * sizeof(*x.x.val)))) ||
            (x.x.ndense &&
             memcmp(x.x.dense, r->x.dense, x.x.ndense * sizeof(*x.x.dense))))
            diff = "record";
    }
    pbref_free_msg(kind, msg);
    if (!diff)
        return NULL;
    snprintf(buf, sizeof(buf), "%s: got %d '%s', reference %d '%s'", diff,
             (int)why, err, (int)rw, rerr);
    return buf;
}

#endif /* LD_TESTS_PIPELINE_PB_REF_H */
