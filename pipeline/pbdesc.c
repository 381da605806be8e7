/* SPDX-License-Identifier: Apache-2.0 */
/* Protobuf decoding of users' own messages, driven by a FileDescriptorSet:
 * the set is read once (pbset.c), the configured field mapping is
 * compiled into a plan per message (field number -> what to do), and each
 * record is walked once against its plan, storing mapped fields straight
 * into the field-map slots: no message tree, no allocation per record.
 *
 * Protobuf rules kept: the last value of a non-repeated field wins and
 * repeated occurrences of a message field merge; repeated strings and enums
 * concatenate (packed or not); a oneof member clears the others; fields
 * without presence (proto3 scalars outside a oneof) read as their default
 * when absent (0, false, the enum's zero value) except strings and bytes,
 * whose "" reads as absent; unknown field numbers are skipped, groups
 * included. A mapped field whose wire type does not match the descriptor is
 * a dead letter (decode), as is anything truncated or malformed. This file
 * compiles the plans; pbdesc_walk.c walks the records. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/pbdesc_plan.h"

static void plan_free(pplan_t *p)
{
    if (!p)
        return;
    for (uint32_t i = 0; i < p->ne; i++)
        free(p->e[i].keys);
    free(p->e);
    free(p->direct);
    free(p->run_tag);
    free(p->run_slot);
    free(p);
}

const char *const ld_pbdesc_type_names[T_SINT64 + 1] = {
    "?",       "double",   "float",    "int64",  "uint64",  "int32", "fixed64",
    "fixed32", "bool",     "string",   "group",  "message", "bytes", "uint32",
    "enum",    "sfixed32", "sfixed64", "sint32", "sint64"};

static const char *wrapper_type(const char *full, uint8_t *type)
{
    static const struct {
        const char *name;
        uint8_t type;
    } w[] = {{"google.protobuf.DoubleValue", T_DOUBLE},
             {"google.protobuf.FloatValue", T_FLOAT},
             {"google.protobuf.Int64Value", T_INT64},
             {"google.protobuf.UInt64Value", T_UINT64},
             {"google.protobuf.Int32Value", T_INT32},
             {"google.protobuf.UInt32Value", T_UINT32},
             {"google.protobuf.BoolValue", T_BOOL},
             {"google.protobuf.StringValue", T_STRING},
             {"google.protobuf.BytesValue", T_BYTES}};
    for (size_t i = 0; i < sizeof(w) / sizeof(w[0]); i++)
        if (strcmp(full, w[i].name) == 0) {
            *type = w[i].type;
            return w[i].name;
        }
    return NULL;
}

/* The value a field without presence reads as when absent. */
static int set_default(ld_pbdesc_t *d, const dfield_t *f, int32_t slot)
{
    ld_fv_t v = {0};
    switch (f->type) {
    case T_STRING:
    case T_BYTES:
        return 0; /* "" reads as absent */
    case T_BOOL:
        v.kind = FV_BOOL;
        break;
    case T_DOUBLE:
    case T_FLOAT:
        v.kind = FV_DOUBLE;
        break;
    case T_ENUM: {
        const denum_t *e = &d->set.e[f->en];
        v.kind = FV_INT;
        for (uint32_t i = 0; i < e->n; i++)
            if (e->nums[i] == 0) {
                v.kind = FV_STR;
                v.u.s = e->names[i];
                v.n = (uint32_t)strlen(e->names[i]);
                break;
            }
        break;
    }
    default:
        v.kind = FV_INT;
        break;
    }
    /* 0 milliseconds is no event time, as for learnd.v1.Event */
    if (slot == d->fm->time_slot)
        return 0;
    if (d->def[slot].kind == FV_ABSENT) {
        d->defslots[d->ndefs++] = slot;
        d->def[slot] = v;
    }
    return 0;
}

#define CERR(...)                                                              \
    do {                                                                       \
        snprintf(errstr, errstr_size, __VA_ARGS__);                            \
        goto err;                                                              \
    } while (0)

static pplan_t *plan_msg(ld_pbdesc_t *d, int32_t mi, const char *path,
                         int depth, char *errstr, size_t errstr_size);

/* Appends to d->clear every mapped slot at or below path. */
static int clear_add(ld_pbdesc_t *d, const char *path)
{
    const ld_fmap_t *fm = d->fm;
    size_t n = strlen(path);
    for (uint32_t i = 0; i < fm->nslots; i++) {
        const char *s = fm->names[i];
        if (strncmp(s, path, n) == 0 && (s[n] == '\0' || s[n] == '.')) {
            if (ld_pbset_grow((void **)&d->clear, &d->capclear, d->nclear,
                              sizeof(*d->clear)) < 0)
                return -1;
            d->clear[d->nclear++] = (int32_t)i;
        }
    }
    return 0;
}

/* The field at a mapped path ("m.f19") below message mi of s, or NULL;
 * a map or a well-known type ends the path. */
static const dfield_t *field_at(const dset_t *s, int32_t mi, const char *path)
{
    const dfield_t *f = NULL;
    while (mi >= 0 && *path) {
        size_t n = strcspn(path, ".");
        const dmsg_t *m = &s->m[mi];
        f = NULL;
        for (uint32_t i = 0; i < m->nf && !f; i++)
            if (strlen(m->f[i].name) == n && memcmp(m->f[i].name, path, n) == 0)
                f = &m->f[i];
        if (!f || !path[n])
            return f;
        path += n + 1;
        mi = f->msg >= 0 && !s->m[f->msg].map_entry ? f->msg : -1;
    }
    return f;
}

/* The Protobuf wire-compatibility class of a field type: the Language
 * Guide's "int32, uint32, int64, uint64 and bool are compatible", "sint32
 * and sint64", "string and bytes", "fixed32 and sfixed32", "fixed64 and
 * sfixed64". Enums stay apart: learnd maps them by name, so an enum that
 * became an int would change the feature, not only its width. */
static int type_class(uint32_t t)
{
    switch (t) {
    case T_INT32:
    case T_INT64:
    case T_UINT32:
    case T_UINT64:
    case T_BOOL:
        return 1;
    case T_SINT32:
    case T_SINT64:
        return 2;
    case T_FIXED32:
    case T_SFIXED32:
        return 3;
    case T_FIXED64:
    case T_SFIXED64:
        return 4;
    case T_STRING:
    case T_BYTES:
        return 5;
    default:
        return 10 + (int)t;
    }
}

/* "repeated string", "message pkg.M", "int32": what a field is, for the
 * reason of an incompatible writer schema. */
static void describe(const dset_t *s, const dfield_t *f, char *out, size_t n)
{
    const char *rep = f->label == 3 ? "repeated " : "";
    if (f->msg >= 0)
        snprintf(out, n, "%smessage %s", rep, s->m[f->msg].full);
    else
        snprintf(out, n, "%s%s", rep, ld_pbdesc_type_names[f->type]);
}

/* 0 when the writer's field f (of d's set) may be read where the local
 * descriptor set has lf: same repetition, and the same message type or a
 * compatible scalar type (type_class). */
static int writer_compatible(const ld_pbdesc_t *d, const dfield_t *f,
                             const dfield_t *lf, const char *path, char *errstr,
                             size_t errstr_size)
{
    const dset_t *ls = &d->local->set;
    int same =
        (f->label == 3) == (lf->label == 3) && (f->msg >= 0) == (lf->msg >= 0);
    if (same && f->msg >= 0) {
        const dmsg_t *w = &d->set.m[f->msg], *l = &ls->m[lf->msg];
        if (w->map_entry && l->map_entry) {
            const dfield_t *wv = field_at(&d->set, f->msg, "value");
            const dfield_t *lv = field_at(ls, lf->msg, "value");
            same = wv && lv && type_class(wv->type) == type_class(lv->type);
        } else {
            same = strcmp(w->full, l->full) == 0;
        }
    } else if (same) {
        same = type_class(f->type) == type_class(lf->type);
    }
    if (same)
        return 0;
    char wd[160], ld[160];
    describe(&d->set, f, wd, sizeof(wd));
    describe(ls, lf, ld, sizeof(ld));
    snprintf(errstr, errstr_size,
             "field %s is %s in the writer schema but %s in the descriptor "
             "set, not compatible",
             path, wd, ld);
    return -1;
}

static int compile_field(ld_pbdesc_t *d, const dmsg_t *m, const dfield_t *f,
                         pent_t *e, const char *sub, int depth, char *errstr,
                         size_t errstr_size)
{
    const ld_fmap_t *fm = d->fm;
    const dfield_t *lf =
        d->local ? field_at(&d->local->set, d->local_mi, sub) : NULL;
    if (lf && writer_compatible(d, f, lf, sub, errstr, errstr_size) < 0)
        return -1;
    int32_t slot = ld_fmap_find(fm, sub, strlen(sub));
    const dmsg_t *t = f->msg >= 0 ? &d->set.m[f->msg] : NULL;
    e->number = f->number;
    e->type = (uint8_t)f->type;
    e->slot = slot;
    e->en = f->en >= 0 ? &d->set.e[f->en] : NULL;
    e->path = sub;
    if (f->type == T_GROUP)
        CERR("field %s is a proto2 group, which cannot be mapped", sub);
    if (t && t->map_entry && f->label == 3) {
        const dfield_t *kf = NULL, *vf = NULL;
        for (uint32_t i = 0; i < t->nf; i++) {
            if (t->f[i].number == 1)
                kf = &t->f[i];
            else if (t->f[i].number == 2)
                vf = &t->f[i];
        }
        if (slot >= 0)
            CERR("field %s is a map: map its entries as %s.<key>", sub, sub);
        if (!kf || !vf || kf->type != T_STRING)
            CERR("field %s: only maps with string keys can be mapped", sub);
        if (vf->type == T_MESSAGE || vf->type == T_GROUP)
            CERR("field %s: map values that are messages cannot be mapped",
                 sub);
        e->kind = K_MAP;
        e->type = (uint8_t)vf->type;
        e->en = vf->en >= 0 ? &d->set.e[vf->en] : NULL;
        size_t n = strlen(sub);
        e->keys = calloc(fm->nslots + 1, sizeof(*e->keys));
        if (!e->keys)
            CERR("out of memory");
        for (uint32_t i = 0; i < fm->nslots; i++)
            if (strncmp(fm->names[i], sub, n) == 0 && fm->names[i][n] == '.') {
                mkey_t *k = &e->keys[e->nkeys++];
                k->key = fm->names[i] + n + 1;
                k->n = (uint32_t)strlen(k->key);
                k->slot = (int32_t)i;
                d->found[i] = 1;
            }
        return 0;
    }
    if (t) {
        uint8_t wtype;
        if (f->label == 3)
            CERR("field %s is a repeated message, which cannot be mapped", sub);
        if (slot >= 0 && strcmp(t->full, "google.protobuf.Timestamp") == 0) {
            e->kind = K_TS;
            d->found[slot] = 1;
            return 0;
        }
        if (slot >= 0 && wrapper_type(t->full, &wtype)) {
            e->kind = K_WRAP;
            e->type = wtype;
            d->found[slot] = 1;
            return 0;
        }
        if (slot >= 0)
            CERR("field %s is a message (%s): map its fields as %s.<name>", sub,
                 t->full, sub);
        e->kind = K_MSG;
        if (!(e->sub =
                  plan_msg(d, f->msg, sub, depth + 1, errstr, errstr_size)))
            return -1;
        return 0;
    }
    if (slot < 0)
        CERR("field %s is a %s and has no fields", sub,
             ld_pbdesc_type_names[f->type]);
    d->found[slot] = 1;
    if (f->label == 3) {
        if (f->type != T_STRING && f->type != T_BYTES && f->type != T_ENUM)
            CERR("field %s: only repeated strings or enums can be mapped "
                 "(it is repeated %s)",
                 sub, ld_pbdesc_type_names[f->type]);
        e->kind = K_LIST;
        return 0;
    }
    e->kind = K_SCALAR;
    if (m->proto3 && f->oneof < 0 && f->label != 2)
        return set_default(d, f, slot);
    return 0;
err:
    return -1;
}

static int entry_cmp(const void *a, const void *b)
{
    const pent_t *x = a, *y = b;
    return x->number < y->number ? -1 : x->number > y->number;
}

/* An entry for a field that nothing maps: walk() skips it in number order
 * without a lookup, and a oneof member of it still clears its mapped
 * siblings. */
static void skip_entry(const dmsg_t *m, const dfield_t *f, pent_t *e,
                       const char *path)
{
    e->number = f->number;
    e->kind = K_SKIP;
    e->type = (uint8_t)f->type;
    e->slot = -1;
    e->path = path;
    /* proto3 packs repeated scalars */
    int packed = m->proto3 && f->label == 3 && f->type != T_STRING &&
                 f->type != T_BYTES && f->type != T_MESSAGE &&
                 f->type != T_GROUP;
    e->wt = packed ? LD_PB_WT_LEN : wire_of(f->type);
}

/* Sorts p's entries by number and sets the lookup table and each entry's
 * fast-path tag and op. -1 when out of memory. */
static int plan_index(pplan_t *p)
{
    qsort(p->e, p->ne, sizeof(*p->e), entry_cmp);
    p->maxno = p->ne ? p->e[p->ne - 1].number : 0;
    if (p->maxno > DIRECT_MAX)
        p->maxno = DIRECT_MAX;
    if (!(p->direct = calloc(p->maxno + 1, sizeof(*p->direct))))
        return -1;
    for (uint32_t i = 0; i < p->ne; i++) {
        pent_t *e = &p->e[i];
        if (e->number <= p->maxno)
            p->direct[e->number] = (uint16_t)(i + 1);
        if (e->kind != K_SKIP)
            e->wt = e->kind == K_SCALAR ? wire_of(e->type) : LD_PB_WT_LEN;
        if (e->kind == K_LIST && e->type == T_ENUM)
            e->wt = LD_PB_WT_LEN; /* proto3 packs repeated enums */
        e->op = OP_GENERIC;
        if (e->kind == K_SCALAR && e->type == T_FLOAT)
            e->op = OP_F32;
        else if (e->kind == K_SCALAR && e->type == T_DOUBLE)
            e->op = OP_F64;
        else if (e->kind == K_SCALAR &&
                 (e->type == T_STRING || e->type == T_BYTES))
            e->op = OP_STR;
        else if (e->kind == K_SCALAR && e->type == T_ENUM)
            e->op = OP_ENUM;
        else if (e->kind == K_LIST &&
                 (e->type == T_STRING || e->type == T_BYTES))
            e->op = OP_LIST_STR;
        else if (e->kind == K_MSG || e->kind == K_TS)
            e->op = OP_SUB;
        else if (e->kind == K_SKIP && e->wt == LD_PB_WT_LEN)
            e->op = OP_SKIP_LEN;
        else if (e->kind == K_SKIP && e->wt == LD_PB_WT_VARINT)
            e->op = OP_SKIP_VARINT;
        uint32_t key = e->number << 3 | e->wt;
        if (key < 0x80) {
            e->tag[0] = (uint8_t)key;
            e->tagn = 1;
        } else if (key < 0x4000) {
            e->tag[0] = (uint8_t)(key | 0x80);
            e->tag[1] = (uint8_t)(key >> 7);
            e->tagn = 2;
        }
    }
    if (!(p->run_tag = calloc(p->ne + 1, 1)) ||
        !(p->run_slot = calloc(p->ne + 1, sizeof(*p->run_slot))))
        return -1;
    for (uint32_t i = p->ne; i-- > 0;) {
        pent_t *e = &p->e[i];
        p->run_tag[i] = e->tag[0];
        p->run_slot[i] = e->slot;
        if (e->op == OP_F32 && e->tagn == 1 && !e->clear_n)
            e->run = (uint8_t)(i + 1 < p->ne && p->e[i + 1].run &&
                                       p->e[i + 1].run < 255
                                   ? p->e[i + 1].run + 1
                                   : 1);
    }
    return 0;
}

static pplan_t *plan_msg(ld_pbdesc_t *d, int32_t mi, const char *path,
                         int depth, char *errstr, size_t errstr_size)
{
    const dmsg_t *m = &d->set.m[mi];
    pplan_t *p = NULL;
    int32_t *oneof_of = NULL; /* per entry: oneof index or -1 */
    if (depth > MAX_DEPTH)
        CERR("field %s: nested deeper than %d", path, MAX_DEPTH);
    if (ld_pbset_grow((void **)&d->plans, &d->capplans, d->nplans,
                      sizeof(*d->plans)) < 0 ||
        !(p = calloc(1, sizeof(*p))))
        CERR("out of memory");
    d->plans[d->nplans++] = p;
    if (!(p->e = calloc(m->nf + 1, sizeof(*p->e))) ||
        !(oneof_of = calloc(m->nf + 1, sizeof(*oneof_of))))
        CERR("out of memory");
    for (uint32_t i = 0; i < m->nf; i++) {
        const dfield_t *f = &m->f[i];
        char *sub = ld_pbset_join(path, f->name);
        if (!sub || ld_pbset_grow((void **)&d->paths, &d->cappaths, d->npaths,
                                  sizeof(*d->paths)) < 0) {
            free(sub);
            CERR("out of memory");
        }
        d->paths[d->npaths++] = sub;
        for (uint32_t k = 0; k < p->ne; k++)
            if (p->e[k].number == f->number)
                CERR("message %s: field number %u used twice", m->full,
                     f->number);
        oneof_of[p->ne] = f->oneof;
        if (!ld_fmap_path_used(d->fm, sub))
            skip_entry(m, f, &p->e[p->ne], sub);
        else if (compile_field(d, m, f, &p->e[p->ne], sub, depth, errstr,
                               errstr_size) < 0)
            goto err;
        p->ne++;
    }
    /* oneof: a member clears what its siblings set */
    for (uint32_t i = 0; i < p->ne; i++) {
        if (oneof_of[i] < 0)
            continue;
        uint32_t off = d->nclear;
        for (uint32_t k = 0; k < p->ne; k++)
            if (k != i && oneof_of[k] == oneof_of[i] &&
                clear_add(d, p->e[k].path) < 0)
                CERR("out of memory");
        p->e[i].clear_off = off;
        p->e[i].clear_n = d->nclear - off;
    }
    free(oneof_of);
    oneof_of = NULL;
    if (plan_index(p) < 0)
        CERR("out of memory");
    return p;
err:
    free(oneof_of);
    return NULL;
}

/* The Confluent message-index path of message full in the descriptor set:
 * its position among the top-level messages of its file, then among the
 * nested ones. Returns the count (0 when not found). */
static uint32_t index_path(const dset_t *s, int32_t mi, uint32_t *out,
                           uint32_t cap)
{
    uint32_t n = 0;
    for (int32_t at = mi; at >= 0 && n < cap; at = s->m[at].parent)
        n++;
    uint32_t k = n;
    for (int32_t at = mi; at >= 0 && k > 0; at = s->m[at].parent)
        out[--k] = s->m[at].pos;
    return n;
}

/* ---- Public (to the pipeline) ------------------------------------------- */

void ld_pbdesc_destroy(ld_pbdesc_t *d)
{
    if (!d)
        return;
    for (uint32_t i = 0; i < d->nplans; i++)
        plan_free(d->plans[i]);
    free(d->plans);
    for (uint32_t i = 0; i < d->npaths; i++)
        free(d->paths[i]);
    free(d->paths);
    free(d->clear);
    free(d->def);
    free(d->defslots);
    free(d->found);
    free(d->index_path);
    ld_pbset_free(&d->set);
    free(d);
}

/* Compiles d's plans for message mi of d->set; what names the set in
 * errors. */
static int compile_root(ld_pbdesc_t *d, int32_t mi, const char *what,
                        char *errstr, size_t errstr_size)
{
    const ld_fmap_t *fm = d->fm;
    if (!(d->def = calloc(fm->nslots + 1, sizeof(*d->def))) ||
        !(d->defslots = calloc(fm->nslots + 1, sizeof(*d->defslots))) ||
        !(d->found = calloc(fm->nslots + 1, 1)) ||
        !(d->index_path = calloc(MAX_DEPTH, sizeof(*d->index_path))))
        CERR("out of memory");
    char why[512];
    d->message = d->set.m[mi].full;
    if (!(d->root = plan_msg(d, mi, "", 0, why, sizeof(why))))
        CERR("%s: message %s: %s", what, d->message, why);
    d->nindex = index_path(&d->set, mi, d->index_path, MAX_DEPTH);
    return 0;
err:
    return -1;
}

ld_pbdesc_t *ld_pbdesc_new(const ld_pipeline_conf_t *conf,
                           ld_record_kind_t kind, ld_fmap_t *fm, char *errstr,
                           size_t errstr_size)
{
    const char *what = kind == LD_RECORD_EVENT ? "event" : "label";
    const char *name =
        kind == LD_RECORD_EVENT ? conf->event_message : conf->label_message;
    /* with a registry, each writer schema brings its own field numbers */
    int reg = conf->registry_url && *conf->registry_url &&
              conf->protobuf_wire == LD_WIRE_CONFLUENT;
    ld_pbdesc_t *d = calloc(1, sizeof(*d));
    if (!d) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    d->fm = fm;
    if (!name || !*name)
        CERR("pipeline.%s_message: required with pipeline.descriptor_set",
             what);
    if (*name == '.')
        name++;
    if (ld_pbset_load(&d->set, conf->descriptor_set, errstr, errstr_size) < 0)
        goto err;
    int32_t mi = ld_pbset_find_msg(&d->set, name);
    if (mi < 0)
        CERR("pipeline.%s_message: no message %s in %s", what, name,
             conf->descriptor_set);
    if (compile_root(d, mi, conf->descriptor_set, errstr, errstr_size) < 0)
        goto err;
    for (uint32_t i = 0; i < fm->nslots; i++) {
        if (d->found[i])
            continue;
        if (!reg)
            CERR("%s: message %s: no field %s (mapped in the pipeline "
                 "config)",
                 conf->descriptor_set, name, fm->names[i]);
        ld_log(LD_LOG_WARN, "pipeline",
               "msg=\"field %s is not in message %s of %s: resolved from "
               "the registry\" field=%s",
               fm->names[i], name, conf->descriptor_set, fm->names[i]);
    }
    return d;
err:
    ld_pbdesc_destroy(d);
    return NULL;
}

ld_pbdesc_t *ld_pbdesc_new_writer(const ld_pbdesc_t *local,
                                  const ld_reg_file_t *files, uint32_t nfiles,
                                  const uint32_t *path, uint32_t npath,
                                  char *errstr, size_t errstr_size)
{
    ld_pbdesc_t *d = calloc(1, sizeof(*d));
    if (!d) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    d->fm = local->fm;
    d->local = local;
    d->local_mi = ld_pbset_find_msg(&local->set, local->message);
    char why[400];
    for (uint32_t i = 0; i < nfiles; i++)
        if (ld_pbset_add_file(&d->set, files[i].data, files[i].len,
                              i ? files[i].name : NULL, why, sizeof(why)) < 0)
            CERR("writer schema: %s", why);
    /* imports the registry gave no reference for (serializers skip the
     * well-known types by default): from the local descriptor set */
    for (uint32_t i = 0; i < d->set.nfiles; i++)
        for (uint32_t k = 0; k < d->set.files[i].ndeps; k++) {
            const char *dep = d->set.files[i].deps[k];
            int32_t lf = ld_pbset_find_file(&local->set, dep);
            if (ld_pbset_find_file(&d->set, dep) >= 0 || lf < 0 ||
                !local->set.buf)
                continue;
            const dfile_t *f = &local->set.files[lf];
            if (ld_pbset_add_file(&d->set, local->set.buf + f->raw_off,
                                  f->raw_len, NULL, why, sizeof(why)) < 0)
                CERR("writer schema: %s", why);
        }
    if (ld_pbset_resolve(&d->set, "writer schema", why, sizeof(why)) < 0)
        CERR("%s", why);
    int32_t mi = ld_pbset_msg_at(&d->set, 0, path, npath);
    if (mi < 0)
        CERR("the message-index path names no message of the registry's "
             "schema");
    if (strcmp(d->set.m[mi].full, local->message) != 0)
        CERR("the record's message is %.200s, not %s", d->set.m[mi].full,
             local->message);
    if (compile_root(d, mi, "writer schema", why, sizeof(why)) < 0)
        CERR("%s", why);
    return d;
err:
    ld_pbdesc_destroy(d);
    return NULL;
}
