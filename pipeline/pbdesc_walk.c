/* SPDX-License-Identifier: Apache-2.0 */
/* Protobuf decoding of users' own messages: each record is walked once
 * against the plan that pbdesc.c compiled (pbdesc_plan.h), storing mapped
 * fields straight into the field-map slots. The Protobuf rules kept are
 * listed at the top of pbdesc.c. */
#include <stdio.h>
#include <string.h>

#include "pipeline/pbdesc_plan.h"

/* ---- Decoding ----------------------------------------------------------- */

typedef struct pcur {
    const ld_pbdesc_t *d;
    ld_fmap_t *fm;
    char *err;
    size_t err_size;
} pcur_t;

#define DERR(c, r, ...)                                                        \
    do {                                                                       \
        snprintf((c)->err, (c)->err_size, __VA_ARGS__);                        \
        return (r);                                                            \
    } while (0)

static inline uint64_t le64(const uint8_t *p)
{
    uint64_t u;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(&u, p, 8);
#else
    u = 0;
    for (int i = 7; i >= 0; i--)
        u = u << 8 | p[i];
#endif
    return u;
}

static inline uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

/* The enum value named by number, as text; its number when the enum has no
 * such value (proto3 enums are open). */
static inline void enum_value(const denum_t *en, uint64_t raw, ld_fv_t *v)
{
    int32_t num = (int32_t)(uint32_t)raw;
    for (uint32_t i = 0; i < en->n; i++)
        if (en->nums[i] == num) {
            v->kind = FV_STR;
            v->u.s = en->names[i];
            v->n = en->lens[i];
            return;
        }
    v->kind = FV_INT;
    v->u.i = num;
}

/* Reads one value of descriptor type `type` (wire type wt) at *pp into v.
 * path names the field in error messages. */
static ld_reason_t read_value(pcur_t *c, uint8_t type, const denum_t *en,
                              uint32_t wt, const uint8_t **pp,
                              const uint8_t *end, ld_fv_t *v, const char *path)
{
    if (wt != wire_of(type))
        DERR(c, LD_REASON_DECODE,
             "field %s: wire type %u, the descriptor says %s", path, wt,
             ld_pbdesc_type_names[type]);
    uint64_t u;
    size_t n;
    switch (wt) {
    case LD_PB_WT_VARINT:
        if (ld_pb_varint(pp, end, &u) < 0)
            DERR(c, LD_REASON_DECODE, "field %s: truncated or bad varint",
                 path);
        break;
    case LD_PB_WT_FIXED64:
        if (end - *pp < 8)
            DERR(c, LD_REASON_DECODE, "field %s: truncated", path);
        u = le64(*pp);
        *pp += 8;
        break;
    case LD_PB_WT_FIXED32:
        if (end - *pp < 4)
            DERR(c, LD_REASON_DECODE, "field %s: truncated", path);
        u = le32(*pp);
        *pp += 4;
        break;
    default:
        if (ld_pb_len(pp, end, &n) < 0)
            DERR(c, LD_REASON_DECODE, "field %s: length past the end", path);
        v->kind = n ? FV_STR : FV_ABSENT;
        v->u.s = (const char *)*pp;
        v->n = (uint32_t)n;
        *pp += n;
        return LD_REASON_NONE;
    }
    switch (type) {
    case T_DOUBLE:
        v->kind = FV_DOUBLE;
        memcpy(&v->u.d, &u, 8);
        break;
    case T_FLOAT: {
        uint32_t w = (uint32_t)u;
        float f;
        memcpy(&f, &w, 4);
        v->kind = FV_DOUBLE;
        v->u.d = f;
        break;
    }
    case T_BOOL:
        v->kind = FV_BOOL;
        v->u.i = u != 0;
        break;
    case T_ENUM:
        enum_value(en, u, v);
        break;
    case T_INT32:
    case T_SFIXED32:
        v->kind = FV_INT;
        v->u.i = (int32_t)(uint32_t)u;
        break;
    case T_UINT32:
    case T_FIXED32:
        v->kind = FV_INT;
        v->u.i = (uint32_t)u;
        break;
    case T_SINT32: {
        uint32_t w = (uint32_t)u;
        v->kind = FV_INT;
        v->u.i = (int32_t)(w >> 1) ^ -(int32_t)(w & 1);
        break;
    }
    case T_SINT64:
        v->kind = FV_INT;
        v->u.i = (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
        break;
    case T_UINT64:
    case T_FIXED64:
        if (u > (uint64_t)INT64_MAX) {
            v->kind = FV_DOUBLE;
            v->u.d = (double)u;
        } else {
            v->kind = FV_INT;
            v->u.i = (int64_t)u;
        }
        break;
    default: /* int64, sfixed64 */
        v->kind = FV_INT;
        v->u.i = (int64_t)u;
        break;
    }
    return LD_REASON_NONE;
}

/* Appends one string to slot's list, keeping the list contiguous in
 * fm->strs when other lists grew since its last item. */
static ld_reason_t list_push(pcur_t *c, int32_t slot, const char *s, uint32_t n)
{
    ld_fmap_t *fm = c->fm;
    ld_fv_t *v = &fm->fv[slot];
    if (v->kind != FV_LIST) {
        v->kind = FV_LIST;
        v->u.first = fm->nstrs;
        v->n = 0;
    } else if (v->u.first + v->n != fm->nstrs) {
        uint32_t first = fm->nstrs;
        for (uint32_t i = 0; i < v->n; i++) {
            ld_str_t old = fm->strs[v->u.first + i];
            if (ld_fmap_push_str(fm, old.s, old.n) < 0)
                DERR(c, LD_REASON_DECODE, "out of memory");
        }
        v->u.first = first;
    }
    if (ld_fmap_push_str(fm, s, n) < 0)
        DERR(c, LD_REASON_DECODE, "out of memory");
    v->n++;
    return LD_REASON_NONE;
}

static ld_reason_t list_item(pcur_t *c, const pent_t *e, uint32_t wt,
                             const uint8_t **pp, const uint8_t *end)
{
    ld_fv_t v = {0};
    ld_reason_t why;
    if (e->type == T_ENUM && wt == LD_PB_WT_LEN) { /* packed */
        size_t n;
        if (ld_pb_len(pp, end, &n) < 0)
            DERR(c, LD_REASON_DECODE, "field %s: length past the end", e->path);
        const uint8_t *q = *pp, *qend = q + n;
        *pp = qend;
        while (q < qend) {
            if ((why = read_value(c, T_ENUM, e->en, LD_PB_WT_VARINT, &q, qend,
                                  &v, e->path)))
                return why;
            if (v.kind == FV_INT)
                DERR(c, LD_REASON_BAD_TYPE,
                     "field %s: enum number %lld is not in the descriptor",
                     e->path, (long long)v.u.i);
            if ((why = list_push(c, e->slot, v.u.s, v.n)))
                return why;
        }
        return LD_REASON_NONE;
    }
    if ((why = read_value(c, e->type, e->en, wt, pp, end, &v, e->path)))
        return why;
    if (v.kind == FV_INT)
        DERR(c, LD_REASON_BAD_TYPE,
             "field %s: enum number %lld is not in the descriptor", e->path,
             (long long)v.u.i);
    return list_push(c, e->slot, v.kind == FV_STR ? v.u.s : "", v.n);
}

static ld_reason_t map_entry(pcur_t *c, const pent_t *e, const uint8_t *p,
                             const uint8_t *end)
{
    const char *key = "";
    size_t kn = 0;
    const uint8_t *vp = NULL;
    uint32_t vwt = 0;
    while (p < end) {
        uint32_t num, wt;
        if (ld_pb_tag(&p, end, &num, &wt) < 0)
            DERR(c, LD_REASON_DECODE, "field %s: bad tag in a map entry",
                 e->path);
        if (num == 1 && wt == LD_PB_WT_LEN) {
            if (ld_pb_len(&p, end, &kn) < 0)
                DERR(c, LD_REASON_DECODE, "field %s: map key past the end",
                     e->path);
            key = (const char *)p;
            p += kn;
            continue;
        }
        if (num == 2) {
            vp = p;
            vwt = wt;
        }
        if (ld_pb_skip(&p, end, num, wt, 0) < 0)
            DERR(c, LD_REASON_DECODE, "field %s: malformed map entry", e->path);
    }
    for (uint32_t i = 0; i < e->nkeys; i++) {
        const mkey_t *k = &e->keys[i];
        if (k->n != kn || memcmp(k->key, key, kn) != 0)
            continue;
        ld_fv_t *v = &c->fm->fv[k->slot];
        if (!vp) { /* absent value: the type's default */
            memset(v, 0, sizeof(*v));
            v->kind = e->type == T_STRING || e->type == T_BYTES   ? FV_ABSENT
                      : e->type == T_DOUBLE || e->type == T_FLOAT ? FV_DOUBLE
                      : e->type == T_BOOL                         ? FV_BOOL
                                                                  : FV_INT;
            return LD_REASON_NONE;
        }
        return read_value(c, e->type, e->en, vwt, &vp, end, v, e->path);
    }
    return LD_REASON_NONE;
}

/* google.protobuf.Timestamp {int64 seconds = 1; int32 nanos = 2;} as
 * milliseconds since the epoch (rounded down). */
static ld_reason_t timestamp(pcur_t *c, const pent_t *e, const uint8_t *p,
                             const uint8_t *end)
{
    int64_t sec = 0, nanos = 0;
    while (p < end) {
        uint32_t num, wt;
        uint64_t u;
        if (ld_pb_tag(&p, end, &num, &wt) < 0)
            DERR(c, LD_REASON_DECODE, "field %s: bad tag in a Timestamp",
                 e->path);
        if ((num == 1 || num == 2) && wt == LD_PB_WT_VARINT) {
            if (ld_pb_varint(&p, end, &u) < 0)
                DERR(c, LD_REASON_DECODE, "field %s: bad varint", e->path);
            if (num == 1)
                sec = (int64_t)u;
            else
                nanos = (int32_t)(uint32_t)u;
            continue;
        }
        if (num == 1 || num == 2)
            DERR(c, LD_REASON_DECODE,
                 "field %s: Timestamp field %u has wire type %u", e->path, num,
                 wt);
        if (ld_pb_skip(&p, end, num, wt, 0) < 0)
            DERR(c, LD_REASON_DECODE, "field %s: malformed Timestamp", e->path);
    }
    /* Timestamp's documented range is years 1..9999 */
    if (sec < -62135596800LL || sec > 253402300799LL || nanos < 0 ||
        nanos > 999999999)
        DERR(c, LD_REASON_BAD_TYPE,
             "field %s: Timestamp %lld s %lld ns out of range", e->path,
             (long long)sec, (long long)nanos);
    ld_fv_t *v = &c->fm->fv[e->slot];
    v->kind = FV_INT;
    v->u.i = sec * 1000 + nanos / 1000000;
    return LD_REASON_NONE;
}

static ld_reason_t wrapper(pcur_t *c, const pent_t *e, const uint8_t *p,
                           const uint8_t *end)
{
    ld_fv_t *v = &c->fm->fv[e->slot];
    memset(v, 0, sizeof(*v));
    v->kind = e->type == T_STRING || e->type == T_BYTES   ? FV_ABSENT
              : e->type == T_DOUBLE || e->type == T_FLOAT ? FV_DOUBLE
              : e->type == T_BOOL                         ? FV_BOOL
                                                          : FV_INT;
    while (p < end) {
        uint32_t num, wt;
        if (ld_pb_tag(&p, end, &num, &wt) < 0)
            DERR(c, LD_REASON_DECODE, "field %s: bad tag in a wrapper",
                 e->path);
        if (num == 1) {
            ld_reason_t why;
            if ((why = read_value(c, e->type, NULL, wt, &p, end, v, e->path)))
                return why;
            continue;
        }
        if (ld_pb_skip(&p, end, num, wt, 0) < 0)
            DERR(c, LD_REASON_DECODE, "field %s: malformed wrapper", e->path);
    }
    return LD_REASON_NONE;
}

/* The entry index of field num in pl, or -1. */
static inline int32_t lookup(const pplan_t *pl, uint32_t num)
{
    if (num <= pl->maxno)
        return (int32_t)pl->direct[num] - 1;
    if (num <= DIRECT_MAX)
        return -1;
    size_t lo = 0, hi = pl->ne;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (pl->e[mid].number < num)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < pl->ne && pl->e[lo].number == num ? (int32_t)lo : -1;
}

static ld_reason_t walk(pcur_t *c, const pplan_t *pl, const uint8_t *p,
                        const uint8_t *end, int depth);

/* Float e (tag read, 4 bytes there) and the floats that follow it in
 * number order, in one loop: dense features come in runs (bench_pbdesc's
 * 19). A run of one-byte tags is bounds-checked once and read from the
 * plan's compact arrays: one compare per float. Returns the entry after
 * the last one stored. */
static inline const pent_t *f32_run(ld_fv_t *fv, const pplan_t *pl,
                                    const pent_t *e, const uint8_t **pp,
                                    const uint8_t *end)
{
    const uint8_t *p = *pp;
    const pent_t *lim = pl->e + pl->ne;
    uint32_t i = (uint32_t)(e - pl->e), n = e->run;
    if (n > 1 && (size_t)(end - p) >= 5u * n - 1) {
        const uint8_t *tag = pl->run_tag + i;
        const int32_t *slot = pl->run_slot + i;
        uint32_t k = 0;
        for (;;) {
            uint32_t u = le32(p);
            float f;
            memcpy(&f, &u, 4);
            fv[slot[k]].kind = FV_DOUBLE;
            fv[slot[k]].u.d = f;
            p += 4;
            if (++k == n || p[0] != tag[k])
                break;
            p++;
        }
        e += k;
        if (k < n) {
            *pp = p;
            return e;
        }
        if (!(e < lim && e->op == OP_F32 && !e->clear_n && e->tagn &&
              (size_t)(end - p) >= 4u + e->tagn && p[0] == e->tag[0] &&
              (e->tagn == 1 || p[1] == e->tag[1]))) {
            *pp = p;
            return e;
        }
        p += e->tagn;
    }
    for (;;) {
        uint32_t u = le32(p);
        float f;
        memcpy(&f, &u, 4);
        fv[e->slot].kind = FV_DOUBLE;
        fv[e->slot].u.d = f;
        p += 4;
        e++;
        if (!(e < lim && e->op == OP_F32 && !e->clear_n && e->tagn &&
              (size_t)(end - p) >= 4u + e->tagn && p[0] == e->tag[0] &&
              (e->tagn == 1 || p[1] == e->tag[1])))
            break;
        p += e->tagn;
    }
    *pp = p;
    return e;
}

/* The value of field e (wire type wt, tag read) at *pp, whatever its kind:
 * walk()'s path for what its fast path does not take. */
static ld_reason_t field_value(pcur_t *c, const pent_t *e, uint32_t wt,
                               const uint8_t **pp, const uint8_t *end,
                               int depth)
{
    size_t n;
    ld_reason_t why;
    switch (e->kind) {
    case K_SKIP:
        if (ld_pb_skip(pp, end, e->number, wt, depth) < 0)
            DERR(c, LD_REASON_DECODE,
                 "field number %u (wire type %u): truncated or malformed",
                 e->number, wt);
        return LD_REASON_NONE;
    case K_SCALAR:
        return read_value(c, e->type, e->en, wt, pp, end, &c->fm->fv[e->slot],
                          e->path);
    case K_LIST:
        return list_item(c, e, wt, pp, end);
    default:
        break;
    }
    const uint8_t *q = *pp;
    if (wt != LD_PB_WT_LEN)
        DERR(c, LD_REASON_DECODE,
             "field %s: wire type %u, the descriptor says message", e->path,
             wt);
    if (ld_pb_len(&q, end, &n) < 0)
        DERR(c, LD_REASON_DECODE, "field %s: length past the end", e->path);
    *pp = q + n;
    if (e->kind == K_MSG)
        why = walk(c, e->sub, q, q + n, depth + 1);
    else if (e->kind == K_MAP)
        why = map_entry(c, e, q, q + n);
    else if (e->kind == K_TS)
        why = timestamp(c, e, q, q + n);
    else
        why = wrapper(c, e, q, q + n);
    return why;
}

/* Walks one message. Encoders write fields in number order, and the plan
 * has an entry for every field of the descriptor (K_SKIP for those that
 * nothing maps), so the entry after the last one matched is tried first by
 * comparing its tag bytes (no varint decode, no lookup); floats, doubles,
 * strings, enums, repeated strings, nested messages and skipped fields are
 * then done without dispatch through read_value() (bench_pbdesc: see
 * docs/INPUT.md). */
static ld_reason_t walk(pcur_t *c, const pplan_t *pl, const uint8_t *p,
                        const uint8_t *end, int depth)
{
    ld_reason_t why;
    ld_fv_t *fv = c->fm->fv;
    const pent_t *nx = pl->e, *lim = pl->e + pl->ne;
    if (depth > MAX_DEPTH)
        DERR(c, LD_REASON_DECODE, "nested deeper than %d", MAX_DEPTH);
    while (p < end) {
        uint32_t num, wt;
        const pent_t *e = nx;
        if (e < lim && e->tagn && (size_t)(end - p) > e->tagn &&
            p[0] == e->tag[0] && (e->tagn == 1 || p[1] == e->tag[1])) {
            p += e->tagn;
            wt = e->wt;
        } else {
            const uint8_t *q = p; /* p stays in a register */
            if (ld_pb_tag(&q, end, &num, &wt) < 0)
                DERR(c, LD_REASON_DECODE,
                     "bad tag (field number 0, wire type 6/7 or a varint "
                     "past the end)");
            int32_t k = lookup(pl, num);
            if (k < 0) { /* not in the descriptor */
                if (ld_pb_skip(&q, end, num, wt, depth) < 0)
                    DERR(c, LD_REASON_DECODE,
                         "field number %u (wire type %u): truncated or "
                         "malformed",
                         num, wt);
                p = q;
                continue;
            }
            e = &pl->e[k];
            p = q;
        }
        nx = e + 1;
        for (uint32_t i = 0; i < e->clear_n; i++) {
            int32_t s = c->d->clear[e->clear_off + i];
            fv[s] = c->d->def[s];
        }
        size_t left = (size_t)(end - p);
        /* the fast ops below may read p[0] */
        switch (wt == e->wt && left ? e->op : OP_GENERIC) {
        case OP_F32:
            if (left < 4)
                break;
            nx = f32_run(fv, pl, e, &p, end);
            continue;
        case OP_F64:
            if (left < 8)
                break;
            {
                uint64_t u = le64(p);
                fv[e->slot].kind = FV_DOUBLE;
                memcpy(&fv[e->slot].u.d, &u, 8);
            }
            p += 8;
            continue;
        case OP_STR:
            if ((p[0] & 0x80) || (size_t)p[0] >= left)
                break;
            fv[e->slot].kind = p[0] ? FV_STR : FV_ABSENT;
            fv[e->slot].n = p[0];
            fv[e->slot].u.s = (const char *)p + 1;
            p += 1 + (size_t)p[0];
            continue;
        case OP_ENUM:
            if (p[0] & 0x80)
                break;
            enum_value(e->en, p[0], &fv[e->slot]);
            p++;
            continue;
        case OP_LIST_STR:
            if ((p[0] & 0x80) || (size_t)p[0] >= left)
                break;
            if ((why = list_push(c, e->slot, (const char *)p + 1, p[0])))
                return why;
            p += 1 + (size_t)p[0];
            continue;
        case OP_SUB: {
            if ((p[0] & 0x80) || (size_t)p[0] >= left)
                break;
            const uint8_t *q = p + 1, *qend = q + p[0];
            p = qend;
            why = e->kind == K_TS ? timestamp(c, e, q, qend)
                                  : walk(c, e->sub, q, qend, depth + 1);
            if (why)
                return why;
            continue;
        }
        case OP_SKIP_LEN:
            if ((p[0] & 0x80) || (size_t)p[0] >= left)
                break;
            p += 1 + (size_t)p[0];
            continue;
        case OP_SKIP_VARINT:
            if (p[0] & 0x80)
                break;
            p++;
            continue;
        default:
            break;
        }
        const uint8_t *q = p;
        if ((why = field_value(c, e, wt, &q, end, depth)))
            return why;
        p = q;
    }
    return LD_REASON_NONE;
}

int ld_pbdesc_path_matches(const ld_pbdesc_t *d, const uint32_t *path,
                           uint32_t n)
{
    return n == d->nindex &&
           (n == 0 || memcmp(path, d->index_path, n * sizeof(*path)) == 0);
}

const char *ld_pbdesc_message(const ld_pbdesc_t *d)
{
    return d->message;
}

ld_reason_t ld_pbdesc_decode(ld_pbdesc_t *d, ld_fmap_t *fm, const uint8_t *p,
                             size_t len, char *err, size_t err_size)
{
    pcur_t c = {d, fm, err, err_size};
    ld_reason_t why = walk(&c, d->root, p, p + len, 0);
    /* fields without presence that the record lacks read as their
     * default; after the walk, so that the ones present (nearly all, in
     * practice) are written once */
    for (uint32_t i = 0; i < d->ndefs; i++) {
        int32_t s = d->defslots[i];
        if (fm->fv[s].kind == FV_ABSENT)
            fm->fv[s] = d->def[s];
    }
    return why;
}
