/* SPDX-License-Identifier: Apache-2.0 */
/* Protobuf decoding of the canonical Event and Label (schemas/learnd.proto)
 * with protobuf-c, unpacked into a bump arena that is reset per record, so
 * steady-state decoding calls malloc only when a record outgrows the arena. */
#include <stdlib.h>
#include <string.h>

#include "pipeline/internal.h"
#include "schemas/learnd.pb-c.h"

#define ARENA_MIN (64u * 1024)

/* Extra chunks hold what did not fit; the next reset folds them into one
 * larger first chunk. */
typedef struct chunk {
    struct chunk *next;
    size_t size;
} chunk_t;

struct ld_pbdec {
    ld_record_kind_t kind;
    uint8_t *base;
    size_t cap, used;
    chunk_t *extra;
    size_t extra_bytes;
    int failed; /* an allocation failed during this unpack */
    ProtobufCAllocator alloc;
    void *msg;
};

static void *arena_alloc(void *ad, size_t size)
{
    ld_pbdec_t *d = ad;
    size = (size + 15) & ~(size_t)15;
    if (size <= d->cap - d->used) {
        void *p = d->base + d->used;
        d->used += size;
        return p;
    }
    chunk_t *c = malloc(sizeof(chunk_t) + 16 + size);
    if (!c) {
        d->failed = 1;
        return NULL;
    }
    c->next = d->extra;
    c->size = size;
    d->extra = c;
    d->extra_bytes += size;
    return (uint8_t *)c + ((sizeof(chunk_t) + 15) & ~(size_t)15);
}

static void arena_free(void *ad, void *p)
{
    (void)ad;
    (void)p; /* released all at once by arena_reset() */
}

static int arena_reset(ld_pbdec_t *d)
{
    size_t want = d->cap;
    while (d->extra) {
        chunk_t *c = d->extra;
        d->extra = c->next;
        free(c);
    }
    if (d->extra_bytes) {
        want = (d->cap + d->extra_bytes) * 2;
        d->extra_bytes = 0;
    }
    if (want > d->cap || !d->base) {
        uint8_t *b = malloc(want);
        if (!b)
            return -1;
        free(d->base);
        d->base = b;
        d->cap = want;
    }
    d->used = 0;
    d->failed = 0;
    d->msg = NULL;
    return 0;
}

ld_pbdec_t *ld_pbdec_new(ld_record_kind_t kind, char *errstr,
                         size_t errstr_size)
{
    ld_pbdec_t *d = calloc(1, sizeof(*d));
    if (!d || !(d->base = malloc(ARENA_MIN))) {
        free(d);
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    d->kind = kind;
    d->cap = ARENA_MIN;
    d->alloc.alloc = arena_alloc;
    d->alloc.free = arena_free;
    d->alloc.allocator_data = d;
    return d;
}

void ld_pbdec_destroy(ld_pbdec_t *d)
{
    if (!d)
        return;
    while (d->extra) {
        chunk_t *c = d->extra;
        d->extra = c->next;
        free(c);
    }
    free(d->base);
    free(d);
}

static void set_str(ld_fv_t *v, const char *s)
{
    v->kind = FV_STR;
    v->u.s = s;
    v->n = (uint32_t)strlen(s);
}

ld_reason_t ld_pbdec_decode(ld_pbdec_t *d, ld_fmap_t *fm, const uint8_t *p,
                            size_t len, char *err, size_t err_size)
{
    if (arena_reset(d) < 0) {
        snprintf(err, err_size, "out of memory");
        return LD_REASON_DECODE;
    }
    if (d->kind == LD_RECORD_LABEL) {
        Learnd__V1__Label *l = learnd__v1__label__unpack(&d->alloc, len, p);
        if (!l) {
            snprintf(err, err_size, "%s",
                     d->failed ? "out of memory"
                               : "not a learnd.v1.Label protobuf message");
            return LD_REASON_DECODE;
        }
        d->msg = l;
        if (fm->key_slot >= 0 && l->event_id && *l->event_id)
            set_str(&fm->fv[fm->key_slot], l->event_id);
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

    Learnd__V1__Event *e = learnd__v1__event__unpack(&d->alloc, len, p);
    if (!e) {
        snprintf(err, err_size, "%s",
                 d->failed ? "out of memory"
                           : "not a learnd.v1.Event protobuf message");
        return LD_REASON_DECODE;
    }
    d->msg = e;
    if (fm->key_slot >= 0 && e->event_id && *e->event_id)
        set_str(&fm->fv[fm->key_slot], e->event_id);
    if (fm->time_slot >= 0 && e->event_time_ms != 0) {
        fm->fv[fm->time_slot].kind = FV_INT;
        fm->fv[fm->time_slot].u.i = e->event_time_ms;
    }
    for (size_t i = 0; i < e->n_features; i++) {
        const Learnd__V1__Feature *f = e->features[i];
        int32_t s = ld_fmap_find(fm, f->name, strlen(f->name));
        /* canonical slots are not features; unmapped names are skipped */
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
            set_str(v, f->str);
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
