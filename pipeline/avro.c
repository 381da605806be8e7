/* SPDX-License-Identifier: Apache-2.0 */
/* Avro decoding specialised per schema: each (writer, reader) pair is
 * compiled once (avro_compile.c) into a tree of nodes that walks the binary
 * datum once, bounds-checking every length and storing the mapped fields
 * straight into the field-map slots; the writer schema of a record comes
 * from the plain framing, pipeline.schema_ids or the schema registry. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/avro_prog.h"

#define MAX_ZERO_ITEMS (1u << 20)

typedef struct schema_id {
    uint32_t id;
    aschema_t *w;
    aprog_t *prog; /* NULL when the writer does not resolve */
    char *why;
} schema_id_t;

struct ld_avro {
    int confluent;
    aschema_t *reader;
    aschema_t *writer; /* plain framing; may be reader */
    aprog_t *plain;
    schema_id_t *ids; /* from schema_ids, then as the registry answers */
    uint32_t nids, capids;
    ld_registry_t *reg; /* NULL: no registry */
    const ld_fmap_t *fm;
};

/* ---- Decoding ----------------------------------------------------------- */

typedef struct cur {
    const uint8_t *p, *end;
    ld_fmap_t *fm;
    char *err;
    size_t err_size;
    int depth;
} cur_t;

#define DERR(c, r, ...)                                                        \
    do {                                                                       \
        snprintf((c)->err, (c)->err_size, __VA_ARGS__);                        \
        return (r);                                                            \
    } while (0)

/* Zig-zag varint of at most 10 bytes; -1 when truncated or overlong. */
static inline int read_long(cur_t *c, int64_t *out)
{
    const uint8_t *p = c->p;
    if (p < c->end && !(*p & 0x80)) { /* one byte: |value| < 64 */
        c->p = p + 1;
        *out = (int64_t)(*p >> 1) ^ -(int64_t)(*p & 1);
        return 0;
    }
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (p >= c->end)
            return -1;
        uint8_t b = *p++;
        if (shift == 63 && b > 1)
            return -1;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            c->p = p;
            *out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
            return 0;
        }
    }
    return -1;
}

/* A little-endian float at p. */
static inline float le_float(const uint8_t *p)
{
    uint32_t u;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(&u, p, 4);
#else
    u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
        (uint32_t)p[3] << 24;
#endif
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline size_t left(const cur_t *c)
{
    return (size_t)(c->end - c->p);
}

/* A length prefix checked against the bytes that remain. */
static inline ld_reason_t read_len(cur_t *c, const char *what, size_t *out)
{
    int64_t n;
    if (read_long(c, &n) < 0)
        DERR(c, LD_REASON_DECODE, "%s length: truncated or bad varint", what);
    if (n < 0 || (uint64_t)n > left(c))
        DERR(c, LD_REASON_DECODE,
             "%s length %lld past the end (%zu bytes left)", what, (long long)n,
             left(c));
    *out = (size_t)n;
    return LD_REASON_NONE;
}

static ld_reason_t dec(const anode_t *n, cur_t *c);

/* Block count of an array or map: items in the next block (0 at the end). */
static ld_reason_t block_count(cur_t *c, const anode_t *item, uint64_t *total,
                               int64_t *out)
{
    int64_t cnt;
    if (read_long(c, &cnt) < 0)
        DERR(c, LD_REASON_DECODE, "block count: truncated or bad varint");
    if (cnt < 0) {
        int64_t bytes;
        if (cnt == INT64_MIN)
            DERR(c, LD_REASON_DECODE, "block count out of range");
        cnt = -cnt;
        if (read_long(c, &bytes) < 0 || bytes < 0 || (uint64_t)bytes > left(c))
            DERR(c, LD_REASON_DECODE, "block size past the end");
    }
    *total += (uint64_t)cnt;
    /* each item takes a byte unless the item type can be empty */
    if (item && item->zero_ok ? *total > MAX_ZERO_ITEMS
                              : (uint64_t)cnt > left(c))
        DERR(c, LD_REASON_DECODE, "block of %lld items past the end",
             (long long)cnt);
    *out = cnt;
    return LD_REASON_NONE;
}

static ld_reason_t dec(const anode_t *n, cur_t *c)
{
    ld_reason_t why;
    ld_fv_t *fv = n->slot >= 0 ? &c->fm->fv[n->slot] : NULL;
    switch (n->wt) {
    case AT_NULL:
        if (fv)
            fv->kind = FV_NULL;
        return LD_REASON_NONE;
    case AT_BOOL:
        if (!left(c) || *c->p > 1)
            DERR(c, LD_REASON_DECODE, "boolean: truncated or not 0/1");
        if (fv) {
            fv->kind = FV_BOOL;
            fv->u.i = *c->p;
        }
        c->p++;
        return LD_REASON_NONE;
    case AT_INT:
    case AT_LONG: {
        int64_t v;
        if (read_long(c, &v) < 0)
            DERR(c, LD_REASON_DECODE, "int/long: truncated or bad varint");
        if (n->wt == AT_INT && (v < INT32_MIN || v > INT32_MAX))
            DERR(c, LD_REASON_DECODE, "int out of 32-bit range");
        if (fv) {
            fv->kind = FV_INT;
            fv->u.i = v;
        }
        return LD_REASON_NONE;
    }
    case AT_FLOAT: {
        if (left(c) < 4)
            DERR(c, LD_REASON_DECODE, "float: truncated");
        if (fv) {
            fv->kind = FV_DOUBLE;
            fv->u.d = le_float(c->p);
        }
        c->p += 4;
        return LD_REASON_NONE;
    }
    case AT_DOUBLE: {
        if (left(c) < 8)
            DERR(c, LD_REASON_DECODE, "double: truncated");
        if (fv) {
            uint64_t u = 0;
            for (int i = 7; i >= 0; i--)
                u = u << 8 | c->p[i];
            fv->kind = FV_DOUBLE;
            memcpy(&fv->u.d, &u, 8);
        }
        c->p += 8;
        return LD_REASON_NONE;
    }
    case AT_BYTES:
    case AT_STRING:
    case AT_FIXED: {
        size_t len = n->n;
        if (n->wt != AT_FIXED) {
            if ((why = read_len(c, "string", &len)))
                return why;
        } else if (len > left(c)) {
            DERR(c, LD_REASON_DECODE, "fixed(%zu) past the end", len);
        }
        if (fv) {
            fv->kind = FV_STR;
            fv->u.s = (const char *)c->p;
            fv->n = (uint32_t)len;
        }
        c->p += len;
        return LD_REASON_NONE;
    }
    case AT_ENUM: {
        int64_t i;
        if (read_long(c, &i) < 0 || i < 0 || (uint64_t)i >= n->n)
            DERR(c, LD_REASON_DECODE, "enum index out of range");
        if (fv) {
            if (!n->syms[i].s)
                DERR(c, LD_REASON_UNKNOWN_SCHEMA,
                     "enum symbol %lld not in the reader schema", (long long)i);
            fv->kind = FV_STR;
            fv->u.s = n->syms[i].s;
            fv->n = n->syms[i].n;
        }
        return LD_REASON_NONE;
    }
    case AT_RECORD:
        if (++c->depth > MAX_DEPTH)
            DERR(c, LD_REASON_DECODE, "nested deeper than %d", MAX_DEPTH);
        for (uint32_t i = 0; i < n->n;) {
            uint32_t k = n->runs ? n->runs[i] : 0;
            if (k < 2) {
                const anode_t *kid = n->kids[i++];
                if (kid->wt == AT_STRING) { /* dec()'s case, without a call */
                    size_t len;
                    if ((why = read_len(c, "string", &len)))
                        return why;
                    if (kid->slot >= 0) {
                        ld_fv_t *f = &c->fm->fv[kid->slot];
                        f->kind = FV_STR;
                        f->u.s = (const char *)c->p;
                        f->n = (uint32_t)len;
                    }
                    c->p += len;
                } else if ((why = dec(kid, c))) {
                    return why;
                }
                continue;
            }
            /* k floats in a row: one bounds check, no dispatch */
            if (left(c) < 4 * (size_t)k)
                DERR(c, LD_REASON_DECODE, "float: truncated");
            for (uint32_t j = 0; j < k; j++) {
                int32_t slot = n->kids[i + j]->slot;
                if (slot >= 0) {
                    ld_fv_t *f = &c->fm->fv[slot];
                    f->kind = FV_DOUBLE;
                    f->u.d = le_float(c->p + 4 * j);
                }
            }
            c->p += 4 * (size_t)k;
            i += k;
        }
        c->depth--;
        return LD_REASON_NONE;
    case AT_UNION: {
        int64_t b;
        if (read_long(c, &b) < 0 || b < 0 || (uint64_t)b >= n->n)
            DERR(c, LD_REASON_DECODE, "union branch out of range");
        if (++c->depth > MAX_DEPTH)
            DERR(c, LD_REASON_DECODE, "nested deeper than %d", MAX_DEPTH);
        why = dec(n->kids[b], c);
        c->depth--;
        return why;
    }
    case AT_ARRAY:
    case AT_MAP: {
        const anode_t *item = n->kids[0];
        uint64_t total = 0;
        int64_t cnt;
        if (fv) {
            fv->kind = FV_LIST;
            fv->u.first = c->fm->nstrs;
            fv->n = 0;
        }
        if (++c->depth > MAX_DEPTH)
            DERR(c, LD_REASON_DECODE, "nested deeper than %d", MAX_DEPTH);
        for (;;) {
            if ((why = block_count(c, item, &total, &cnt)))
                return why;
            if (cnt == 0)
                break;
            for (int64_t k = 0; k < cnt; k++) {
                if (n->wt == AT_MAP) {
                    size_t klen;
                    if ((why = read_len(c, "map key", &klen)))
                        return why;
                    c->p += klen;
                }
                if (!fv) {
                    if ((why = dec(item, c)))
                        return why;
                    continue;
                }
                /* a mapped array of strings or enum symbols */
                ld_fv_t tmp = {0};
                if (item->wt == AT_ENUM) {
                    int64_t i;
                    if (read_long(c, &i) < 0 || i < 0 || (uint64_t)i >= item->n)
                        DERR(c, LD_REASON_DECODE, "enum index out of range");
                    if (!item->syms[i].s)
                        DERR(c, LD_REASON_UNKNOWN_SCHEMA,
                             "enum symbol %lld not in the reader schema",
                             (long long)i);
                    tmp.u.s = item->syms[i].s;
                    tmp.n = item->syms[i].n;
                } else {
                    size_t len;
                    if ((why = read_len(c, "string", &len)))
                        return why;
                    tmp.u.s = (const char *)c->p;
                    tmp.n = (uint32_t)len;
                    c->p += len;
                }
                if (ld_fmap_push_str(c->fm, tmp.u.s, tmp.n) < 0)
                    DERR(c, LD_REASON_DECODE, "out of memory");
                fv->n++;
            }
        }
        c->depth--;
        return LD_REASON_NONE;
    }
    default:
        DERR(c, LD_REASON_UNKNOWN_SCHEMA, "%s",
             n->msg ? n->msg : "unreadable value");
    }
}

static ld_reason_t run(const aprog_t *p, ld_fmap_t *fm, const uint8_t *data,
                       size_t len, char *err, size_t err_size)
{
    for (uint32_t i = 0; i < p->ndefs; i++)
        fm->fv[p->defs[i].slot] = p->defs[i].v;
    cur_t c = {data, data + len, fm, err, err_size, 0};
    ld_reason_t why = dec(p->root, &c);
    if (why)
        return why;
    if (c.p != c.end)
        DERR(&c, LD_REASON_DECODE, "%zu bytes after the record", left(&c));
    return LD_REASON_NONE;
}

/* ---- Public (to the pipeline) ------------------------------------------- */

/* Every mapped slot must come from the reader schema. */
static int check_found(const aprog_t *p, const ld_fmap_t *fm,
                       const char *schema, char *errstr, size_t errstr_size)
{
    for (uint32_t i = 0; i < fm->nslots; i++)
        if (!p->found[i]) {
            snprintf(errstr, errstr_size,
                     "%s: no field %s (mapped in the pipeline config)", schema,
                     fm->names[i]);
            return -1;
        }
    return 0;
}

ld_avro_t *ld_avro_new(const ld_pipeline_conf_t *conf, ld_record_kind_t kind,
                       ld_fmap_t *fm, char *errstr, size_t errstr_size)
{
    const char *rpath =
        kind == LD_RECORD_EVENT ? conf->event_schema : conf->label_schema;
    const char *wpath = kind == LD_RECORD_EVENT ? conf->event_writer_schema
                                                : conf->label_writer_schema;
    const char *what = kind == LD_RECORD_EVENT ? "event" : "label";
    ld_avro_t *a = calloc(1, sizeof(*a));
    if (!a) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    if (!rpath || !*rpath) {
        snprintf(errstr, errstr_size,
                 "pipeline.%s_schema: required with format avro", what);
        goto err;
    }
    if (!(a->reader = ld_avro_schema_load(rpath, errstr, errstr_size)))
        goto err;
    /* The reader against itself: every mapped field must exist. */
    aprog_t *self =
        ld_avro_prog_new(a->reader, a->reader, fm, errstr, errstr_size);
    if (!self)
        goto err;
    int bad = check_found(self, fm, rpath, errstr, errstr_size);
    if (bad || !wpath || !*wpath) {
        a->plain = bad ? NULL : self;
        if (bad) {
            ld_avro_prog_free(self);
            goto err;
        }
    } else {
        ld_avro_prog_free(self);
        if (!(a->writer = ld_avro_schema_load(wpath, errstr, errstr_size)) ||
            !(a->plain = ld_avro_prog_new(a->writer, a->reader, fm, errstr,
                                          errstr_size)))
            goto err;
    }

    int reg = conf->registry_url && *conf->registry_url;
    a->fm = fm;
    a->confluent = conf->avro_wire == LD_AVRO_WIRE_CONFLUENT ||
                   (conf->avro_wire == LD_AVRO_WIRE_AUTO &&
                    (conf->schema_ids.n > 0 || reg));
    if (reg && !(a->reg = ld_registry_new(conf, errstr, errstr_size)))
        goto err;
    a->capids = (uint32_t)conf->schema_ids.n + 1;
    a->ids = calloc(a->capids, sizeof(*a->ids));
    if (!a->ids) {
        snprintf(errstr, errstr_size, "out of memory");
        goto err;
    }
    for (size_t i = 0; i < conf->schema_ids.n; i++) {
        const char *e = conf->schema_ids.v[i];
        char *endp;
        errno = 0;
        unsigned long id = strtoul(e, &endp, 10);
        if (endp == e || *endp != '=' || !endp[1] || errno || id > UINT32_MAX) {
            snprintf(errstr, errstr_size,
                     "pipeline.schema_ids[%zu]: '%s' is not id=path.avsc", i,
                     e);
            goto err;
        }
        for (uint32_t j = 0; j < a->nids; j++)
            if (a->ids[j].id == id) {
                snprintf(errstr, errstr_size,
                         "pipeline.schema_ids[%zu]: id %lu listed twice", i,
                         id);
                goto err;
            }
        schema_id_t *s = &a->ids[a->nids++];
        s->id = (uint32_t)id;
        if (!(s->w = ld_avro_schema_load(endp + 1, errstr, errstr_size)))
            goto err;
        /* A writer schema of the other topic does not resolve here; its
         * records on this topic are dead-lettered as unknown_schema. */
        char why[512];
        s->prog = ld_avro_prog_new(s->w, a->reader, fm, why, sizeof(why));
        if (!s->prog && !(s->why = strdup(why))) {
            snprintf(errstr, errstr_size, "out of memory");
            goto err;
        }
    }
    return a;
err:
    ld_avro_destroy(a);
    return NULL;
}

void ld_avro_destroy(ld_avro_t *a)
{
    if (!a)
        return;
    ld_avro_prog_free(a->plain);
    for (uint32_t i = 0; i < a->nids; i++) {
        ld_avro_prog_free(a->ids[i].prog);
        ld_avro_schema_free(a->ids[i].w);
        free(a->ids[i].why);
    }
    free(a->ids);
    ld_registry_destroy(a->reg);
    ld_avro_schema_free(a->writer);
    ld_avro_schema_free(a->reader);
    free(a);
}

/* The writer schema of an id no record showed before, from the registry,
 * resolved against the reader and remembered either way: an id's schema
 * never changes. NULL with err set when the registry could not say (down,
 * refused): nothing is remembered then, the next record asks again. */
static schema_id_t *registry_id(ld_avro_t *a, uint32_t id, char *err,
                                size_t err_size)
{
    char *text = NULL, *type = NULL, why[512] = "";
    ld_reg_status_t st =
        ld_registry_get(a->reg, id, &text, &type, err, err_size);
    if (st == LD_REG_DOWN || st == LD_REG_REFUSED)
        return NULL;
    if (a->nids == a->capids) {
        schema_id_t *v = realloc(a->ids, 2 * a->capids * sizeof(*v));
        if (!v) {
            free(text);
            free(type);
            snprintf(err, err_size, "out of memory");
            return NULL;
        }
        a->ids = v;
        a->capids *= 2;
    }
    schema_id_t *s = &a->ids[a->nids];
    memset(s, 0, sizeof(*s));
    s->id = id;
    char name[64];
    snprintf(name, sizeof(name), "registry schema id %u", id);
    if (st == LD_REG_UNKNOWN) {
        snprintf(why, sizeof(why), "not in the registry");
    } else if (strcmp(type, "AVRO") != 0) {
        snprintf(why, sizeof(why), "the registry has a %s schema, not Avro",
                 type);
    } else if (!(s->w = calloc(1, sizeof(*s->w))) ||
               !(s->w->path = strdup(name))) {
        snprintf(why, sizeof(why), "out of memory");
    } else if (ld_avro_schema_parse(s->w, text, strlen(text), why,
                                    sizeof(why)) == 0) {
        s->prog = ld_avro_prog_new(s->w, a->reader, a->fm, why, sizeof(why));
    }
    free(text);
    free(type);
    if (!s->prog && !(s->why = strdup(why))) {
        ld_avro_schema_free(s->w);
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    a->nids++;
    ld_log(s->prog ? LD_LOG_INFO : LD_LOG_WARN, "pipeline",
           "msg=\"schema id from the registry\" id=%u resolves=%s%s%s%s", id,
           s->prog ? "yes" : "no", s->prog ? "" : " why=\"",
           s->prog ? "" : s->why, s->prog ? "" : "\"");
    return s;
}

ld_reason_t ld_avro_decode(ld_avro_t *a, ld_fmap_t *fm, const uint8_t *p,
                           size_t len, char *err, size_t err_size)
{
    if (!a->confluent)
        return run(a->plain, fm, p, len, err, err_size);
    uint32_t id, npath;
    size_t hdr;
    ld_reason_t why = ld_confluent_header(p, len, 0, &id, NULL, 0, &npath, &hdr,
                                          err, err_size);
    if (why != LD_REASON_NONE)
        return why;
    for (uint32_t i = 0; i < a->nids; i++) {
        if (a->ids[i].id != id)
            continue;
        if (!a->ids[i].prog) {
            snprintf(err, err_size, "schema id %u: %s", id, a->ids[i].why);
            return LD_REASON_UNKNOWN_SCHEMA;
        }
        return run(a->ids[i].prog, fm, p + hdr, len - hdr, err, err_size);
    }
    if (!a->reg) {
        snprintf(err, err_size, "schema id %u is not in pipeline.schema_ids",
                 id);
        return LD_REASON_UNKNOWN_SCHEMA;
    }
    schema_id_t *s = registry_id(a, id, err, err_size);
    if (!s)
        return LD_REASON_UNKNOWN_SCHEMA;
    if (!s->prog) {
        snprintf(err, err_size, "schema id %u: %s", id, s->why);
        return LD_REASON_UNKNOWN_SCHEMA;
    }
    return run(s->prog, fm, p + hdr, len - hdr, err, err_size);
}
