/* SPDX-License-Identifier: Apache-2.0 */
/* Protobuf decoding of the canonical Event and Label (schemas/learnd.proto):
 * a hand-written wire-format walker that reads each record once, checks every
 * length against what remains, and feeds the field-map slots directly, with
 * no allocation and no copy. It accepts and rejects exactly what protobuf-c
 * 1.4 (which it replaced here; tests/data/pipeline/pb_ref.h keeps that path
 * as the reference) accepts and rejects, and feeds the same values: strings
 * end at their first NUL (protobuf-c hands out C strings), the last of a
 * repeated scalar or oneof wins, unknown fields are skipped. */
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "common/pbwire.h"
#include "pipeline/internal.h"

#define NHINT 64 /* features whose name slot is remembered by position */

/* The slot of the feature name that came at one position in the last
 * record, with the name (cut at its first NUL, at most 16 bytes) as two
 * zero-padded words: most producers write features in a fixed order, so a
 * masked compare replaces the table lookup. */
typedef struct hint {
    uint64_t w[2];
    uint32_t len; /* > 16: no hint */
    int32_t slot;
} hint_t;

/* A Feature of the two shapes encoders write, {name, num} and {name, str},
 * as it came at one position in the last record: the bytes from its tag up
 * to its value that do not vary with the value (tag, length when fixed, the
 * name's tag, length and bytes, the value's tag), as words and a mask. One
 * masked compare of the next record's bytes then stands for the scan of
 * four fields, the name's NUL check and its lookup; anything else (another
 * name, shape, order or a longer name) goes through feature(). */
#define TMPL_WORDS 3

typedef struct tmpl {
    uint64_t w[TMPL_WORDS]; /* expected bytes, zero where m is */
    uint64_t m[TMPL_WORDS]; /* 0xff bytes where fixed */
    uint8_t kind;   /* 0: none, 2: num, 3: str, 4: tags (the field number) */
    uint8_t name_n; /* name bytes */
    uint8_t hlen;   /* bytes before the value */
    int32_t slot;   /* -1: not a feature (skipped) */
} tmpl_t;

/* Consecutive {name, num} templates, joined: a producer that writes its
 * numeric features in a fixed order repeats the same bytes but for the
 * doubles, so one masked compare of the whole run and a load per value
 * replace the per-feature work. Rebuilt after a record that changed a
 * template. */
#define RUN_MAX 512 /* bytes of one run */

typedef struct run {
    uint32_t first, count; /* feature positions [first, first + count) */
    uint32_t bytes;        /* the run's length in the record */
    uint8_t *b, *m;        /* RUN_MAX bytes each: expected, mask */
    uint32_t nset;         /* members that are features (slot >= 0) */
    uint16_t *at;          /* per such member: offset of its double */
    int32_t *slot;         /* per such member: its slot */
} run_t;

struct ld_pbdec {
    ld_record_kind_t kind;
    hint_t *hint;          /* NHINT, by feature position */
    tmpl_t *tmpl;          /* NHINT, by feature position */
    int dirty;             /* a template changed since the runs were built */
    int16_t run_of[NHINT]; /* run starting at a position, or -1 */
    run_t run[NHINT / 2];
    uint32_t nrun;
};

ld_pbdec_t *ld_pbdec_new(ld_record_kind_t kind, char *errstr,
                         size_t errstr_size)
{
    ld_pbdec_t *d = calloc(1, sizeof(*d));
    if (!d) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    d->kind = kind;
    if (!(d->hint = calloc(NHINT, sizeof(*d->hint))) ||
        !(d->tmpl = calloc(NHINT, sizeof(*d->tmpl)))) {
        free(d->hint);
        free(d);
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    for (int i = 0; i < NHINT; i++) {
        d->hint[i].len = UINT32_MAX;
        d->run_of[i] = -1;
    }
    for (int i = 0; i < NHINT / 2; i++) {
        run_t *r = &d->run[i];
        r->b = malloc(RUN_MAX);
        r->m = malloc(RUN_MAX);
        r->at = malloc(NHINT * sizeof(*r->at));
        r->slot = malloc(NHINT * sizeof(*r->slot));
        if (!r->b || !r->m || !r->at || !r->slot) {
            ld_pbdec_destroy(d);
            snprintf(errstr, errstr_size, "out of memory");
            return NULL;
        }
    }
    return d;
}

void ld_pbdec_destroy(ld_pbdec_t *d)
{
    if (!d)
        return;
    free(d->hint);
    free(d->tmpl);
    for (int i = 0; i < NHINT / 2; i++) {
        free(d->run[i].b);
        free(d->run[i].m);
        free(d->run[i].at);
        free(d->run[i].slot);
    }
    free(d);
}

/* ---- Wire format -------------------------------------------------------- */

/* One scanned field, as protobuf-c's scanner sees it. */
typedef struct pbf {
    uint32_t num;
    uint32_t wt;
    const uint8_t *raw; /* the member's bytes: varint, fixed, or LEN prefix */
    size_t rawn;        /* their count (LEN: prefix + payload) */
    const uint8_t *v;   /* LEN: the payload */
    size_t n;           /* LEN: payload bytes */
} pbf_t;

/* Scans the field at *pp (below end, which it must not reach past). Returns
 * 0 and advances *pp past it, or -1 where protobuf-c's scanner fails: a tag
 * of more than 5 bytes or a one-byte tag 0, a varint of more than 10 bytes,
 * a fixed value or a length past the end, a length prefix of more than 5
 * bytes or above INT_MAX, wire types 3, 4, 6, 7. */
static inline int scan(const uint8_t **pp, const uint8_t *end, pbf_t *f)
{
    const uint8_t *p = *pp;
    size_t rem = (size_t)(end - p);
    uint32_t b = p[0];
    f->wt = b & 7;
    if (!(b & 0xf8))
        return -1;
    if (!(b & 0x80)) {
        f->num = b >> 3;
        p++;
    } else {
        uint32_t tag = (b & 0x7f) >> 3;
        size_t max = rem < 5 ? rem : 5, i = 1;
        unsigned shift = 4;
        for (;; i++, shift += 7) {
            if (i >= max)
                return -1;
            tag |= (uint32_t)(p[i] & 0x7f) << shift;
            if (!(p[i] & 0x80))
                break;
        }
        f->num = tag;
        p += i + 1;
    }
    rem = (size_t)(end - p);
    f->raw = p;
    switch (f->wt) {
    case LD_PB_WT_VARINT: {
        size_t max = rem < 10 ? rem : 10, i = 0;
        while (i < max && (p[i] & 0x80))
            i++;
        if (i == max)
            return -1;
        f->rawn = i + 1;
        break;
    }
    case LD_PB_WT_FIXED64:
        if (rem < 8)
            return -1;
        f->rawn = 8;
        break;
    case LD_PB_WT_FIXED32:
        if (rem < 4)
            return -1;
        f->rawn = 4;
        break;
    case LD_PB_WT_LEN: {
        size_t max = rem < 5 ? rem : 5, i = 0;
        uint64_t n = 0;
        for (;; i++) {
            if (i == max)
                return -1;
            n |= (uint64_t)(p[i] & 0x7f) << (7 * i);
            if (!(p[i] & 0x80))
                break;
        }
        i++;
        if (n > 0x7fffffffu || n > rem - i)
            return -1;
        f->v = p + i;
        f->n = (size_t)n;
        f->rawn = i + (size_t)n;
        break;
    }
    default:
        return -1;
    }
    *pp = p + f->rawn;
    return 0;
}

/* The varint of a scanned VARINT field; bits past 64 are dropped. */
static inline uint64_t varint(const pbf_t *f)
{
    uint64_t v = 0;
    for (size_t i = 0; i < f->rawn; i++)
        v |= (uint64_t)(f->raw[i] & 0x7f) << (7 * i);
    return v;
}

static inline double fixed64_double(const uint8_t *p)
{
    uint64_t u = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(&u, p, sizeof(u));
#else
    for (int i = 7; i >= 0; i--)
        u = u << 8 | p[i];
#endif
    double d;
    memcpy(&d, &u, sizeof(d));
    return d;
}

/* Bytes of a string up to its first NUL, as strlen() of protobuf-c's copy. */
static inline uint32_t cstrlen(const uint8_t *s, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) { /* 8 bytes at a time to the word with 0 */
        uint64_t w;
        memcpy(&w, s + i, 8);
        if ((w - 0x0101010101010101ull) & ~w & 0x8080808080808080ull)
            break;
    }
    /* The short tail (most values are shorter than 8 bytes) without a
     * byte loop: two overlapping 4-byte words, or the first, middle and
     * last byte, cover it; a NUL in there takes the loop below. */
    size_t t = n - i;
    if (t < 8) {
        if (t >= 4) {
            uint32_t a, b;
            memcpy(&a, s + i, 4);
            memcpy(&b, s + n - 4, 4);
            if (!((((a - 0x01010101u) & ~a) | ((b - 0x01010101u) & ~b)) &
                  0x80808080u))
                return (uint32_t)n;
        } else if (t == 0 || (s[i] && s[i + (t >> 1)] && s[n - 1])) {
            return (uint32_t)n;
        }
    }
    while (i < n && s[i])
        i++;
    return (uint32_t)i;
}

/* 1 when name/n is h's name. Reads 16 bytes at name, so only when that many
 * remain before rec_end, the end of the record. */
static inline int hint_hit(const hint_t *h, const uint8_t *name, size_t n,
                           const uint8_t *rec_end)
{
    static const uint8_t ones[32] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                     0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                     0xff, 0xff, 0xff, 0xff};
    size_t len = h->len;
    if (len > n || (len < n && name[len] != 0) || (size_t)(rec_end - name) < 16)
        return 0;
    uint64_t w0, w1, m0, m1;
    memcpy(&w0, name, 8);
    memcpy(&w1, name + 8, 8);
    memcpy(&m0, ones + 16 - len, 8);
    memcpy(&m1, ones + 24 - len, 8);
    return ((w0 & m0) == h->w[0]) & ((w1 & m1) == h->w[1]);
}

/* The first TMPL_WORDS words at p, zero-padded past end: never reads past
 * the record. */
static inline void load_words(uint64_t w[TMPL_WORDS], const uint8_t *p,
                              const uint8_t *end)
{
    size_t rem = (size_t)(end - p);
    if (rem >= 8 * TMPL_WORDS) {
        memcpy(w, p, 8 * TMPL_WORDS);
    } else {
        memset(w, 0, 8 * TMPL_WORDS);
        memcpy(w, p, rem);
    }
}

/* Remembers the Feature at p (tag byte 0x1a, one-byte length n, payload
 * p + 2) for its position, when it is {name, num}, {name, str} or {name,
 * tags} with a name without NUL whose fixed bytes fit the template; else
 * forgets. */
static void tmpl_learn(tmpl_t *t, const uint8_t *p, size_t n, int32_t slot)
{
    memset(t, 0, sizeof(*t));
    const uint8_t *v = p + 2;
    if (n < 4 || v[0] != 0x0a || v[1] >= 0x80 || (size_t)v[1] + 2 > n - 2)
        return;
    size_t name_n = v[1];
    const uint8_t *q = v + 2 + name_n;
    size_t rest = n - 2 - name_n;
    int kind;
    if (rest == 9 && q[0] == 0x11)
        kind = 2;
    else if ((q[0] == 0x1a || q[0] == 0x22) && q[1] < 0x80 &&
             (size_t)q[1] == rest - 2)
        kind = q[0] >> 3;
    else
        return;
    size_t hlen = 2 + 2 + name_n + (kind == 2 ? 1 : 2);
    if (hlen > 8 * TMPL_WORDS || cstrlen(v + 2, name_n) != name_n)
        return;
    uint8_t b[8 * TMPL_WORDS] = {0}, m[8 * TMPL_WORDS] = {0};
    memcpy(b, p, hlen);
    memset(m, 0xff, hlen);
    if (kind != 2) /* the Feature's and the value's lengths vary */
        b[1] = m[1] = b[hlen - 1] = m[hlen - 1] = 0;
    memcpy(t->w, b, sizeof(b));
    memcpy(t->m, m, sizeof(m));
    t->name_n = (uint8_t)name_n;
    t->hlen = (uint8_t)hlen;
    t->slot = slot;
    t->kind = (uint8_t)kind;
}

/* Bytes of the Feature at p (tag byte 0x1a included) when it has t's shape
 * and name and lies before end; 0 otherwise. */
static inline size_t tmpl_match(const tmpl_t *t, const uint8_t *p,
                                const uint8_t *end)
{
    size_t rem = (size_t)(end - p);
    if (!t->kind || rem < t->hlen)
        return 0;
    uint64_t w[TMPL_WORDS], diff = 0;
    load_words(w, p, end);
    for (int i = 0; i < TMPL_WORDS; i++)
        diff |= (w[i] & t->m[i]) ^ t->w[i];
    if (diff)
        return 0;
    if (t->kind == 2) /* length fixed by the template: name + 11 */
        return (size_t)t->name_n + 13 <= rem ? (size_t)t->name_n + 13 : 0;
    /* str, tags: Feature length = name + 4 + value length, one byte each */
    size_t n = p[1], sn = p[t->hlen - 1];
    if (n >= 0x80 || n != (size_t)t->name_n + 4 + sn || n + 2 > rem)
        return 0;
    return n + 2;
}

/* Joins every stretch of two or more consecutive num templates into a run
 * (see run_t). */
static void runs_build(ld_pbdec_t *d)
{
    d->nrun = 0;
    for (int i = 0; i < NHINT; i++)
        d->run_of[i] = -1;
    for (uint32_t k = 0; k < NHINT;) {
        uint32_t j = k, bytes = 0;
        while (j < NHINT && d->tmpl[j].kind == 2 &&
               bytes + d->tmpl[j].name_n + 13u <= RUN_MAX) {
            /* a slot twice is a duplicate field for feature() to report */
            int again = 0;
            for (uint32_t i = k; i < j && !again; i++)
                again =
                    d->tmpl[j].slot >= 0 && d->tmpl[i].slot == d->tmpl[j].slot;
            if (again)
                break;
            bytes += d->tmpl[j++].name_n + 13u;
        }
        if (j - k < 2) {
            k = j > k ? j : k + 1;
            continue;
        }
        run_t *r = &d->run[d->nrun];
        r->first = k;
        r->count = j - k;
        r->bytes = bytes;
        uint32_t off = 0;
        r->nset = 0;
        for (uint32_t i = k; i < j; i++) {
            const tmpl_t *t = &d->tmpl[i];
            uint8_t b[8 * TMPL_WORDS], m[8 * TMPL_WORDS];
            memcpy(b, t->w, sizeof(b));
            memcpy(m, t->m, sizeof(m));
            memcpy(r->b + off, b, t->hlen);
            memcpy(r->m + off, m, t->hlen);
            memset(r->b + off + t->hlen, 0, 8); /* the double: any bytes */
            memset(r->m + off + t->hlen, 0, 8);
            if (t->slot >= 0) {
                r->at[r->nset] = (uint16_t)(off + t->hlen);
                r->slot[r->nset++] = t->slot;
            }
            off += t->name_n + 13u;
        }
        d->run_of[k] = (int16_t)d->nrun++;
        k = j;
    }
    d->dirty = 0;
}

/* Bytes of run r at p when they match (and lie before end), else 0. A run
 * has two or more members of 13 bytes or more: at least 16 bytes, so the
 * last block is one that overlaps the one before and ends at the run's
 * end, not a byte loop. */
static inline size_t run_match(const run_t *r, const uint8_t *p,
                               const uint8_t *end)
{
    size_t n = r->bytes;
    if ((size_t)(end - p) < n)
        return 0;
#if defined(__SSE2__)
    __m128i acc = _mm_setzero_si128();
    for (size_t i = 0;; i += 16) {
        if (i + 16 > n)
            i = n - 16;
        __m128i w = _mm_loadu_si128((const __m128i *)(const void *)(p + i));
        __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(r->b + i));
        __m128i m = _mm_loadu_si128((const __m128i *)(const void *)(r->m + i));
        acc = _mm_or_si128(acc, _mm_xor_si128(_mm_and_si128(w, m), b));
        if (i + 16 == n)
            break;
    }
    return _mm_movemask_epi8(_mm_cmpeq_epi8(acc, _mm_setzero_si128())) == 0xffff
               ? n
               : 0;
#else
    uint64_t diff = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w, b, m;
        memcpy(&w, p + i, 8);
        memcpy(&b, r->b + i, 8);
        memcpy(&m, r->m + i, 8);
        diff |= (w & m) ^ b;
    }
    for (; i < n; i++)
        diff |= (uint64_t)((p[i] & r->m[i]) ^ r->b[i]);
    return diff ? 0 : n;
#endif
}

/* The StringList at v/n pushed to fm->strs when every entry is a value
 * (field 1) with a one-byte length, as encoders write it: returns the
 * count, or -1 (nothing left pushed) for anything else, which
 * string_list() then decides. */
static inline long tags_simple(ld_fmap_t *fm, const uint8_t *v, size_t n)
{
    uint32_t strs0 = fm->nstrs;
    const uint8_t *p = v, *end = v + n;
    long count = 0;
    while (p < end) {
        if (end - p < 2 || p[0] != 0x0a || p[1] >= 0x80 ||
            (size_t)p[1] > (size_t)(end - p) - 2 ||
            ld_fmap_push_str(fm, (const char *)p + 2, cstrlen(p + 2, p[1])) <
                0) {
            fm->nstrs = strs0;
            return -1;
        }
        p += 2 + p[1];
        count++;
    }
    return count;
}

/* ---- Messages ----------------------------------------------------------- */

/* The first problem other than a malformed message: reported only when the
 * whole message turns out well-formed, as protobuf-c unpacked it all first. */
typedef struct late {
    ld_reason_t why;
    char *err;
    size_t err_size;
} late_t;

/* StringList at v/n: every value pushed to fm->strs (NUL-cut). Returns the
 * count, or -1 when malformed. An out-of-memory push is noted in *lt. */
static long string_list(ld_fmap_t *fm, const uint8_t *v, size_t n, late_t *lt)
{
    const uint8_t *p = v, *end = v + n;
    long count = 0;
    while (p < end) {
        pbf_t f;
        if (scan(&p, end, &f) < 0)
            return -1;
        if (f.num != 1)
            continue;
        if (f.wt != LD_PB_WT_LEN)
            return -1;
        if (ld_fmap_push_str(fm, (const char *)f.v, cstrlen(f.v, f.n)) < 0 &&
            !lt->why) {
            lt->why = LD_REASON_DECODE;
            snprintf(lt->err, lt->err_size, "out of memory");
        }
        count++;
    }
    return count;
}

/* The slot of the Feature named name/name_n, the idx-th of its Event
 * (*nlen: the name's length up to a NUL): from the hint of that position
 * when it holds the same name, else looked up, and the hint remembers it.
 * With hdr (see feature()), the position's template learns the Feature's
 * shape (n bytes after hdr + 2) too. */
static inline int32_t feature_slot(ld_pbdec_t *d, ld_fmap_t *fm, uint32_t idx,
                                   const uint8_t *name, size_t name_n,
                                   const uint8_t *rec_end, const uint8_t *hdr,
                                   size_t n, uint32_t *nlen)
{
    int32_t s;
    hint_t *h = idx < NHINT ? &d->hint[idx] : NULL;
    /* an absent name is "", not in the record: no hint */
    if (h && name_n && hint_hit(h, name, name_n, rec_end)) {
        *nlen = h->len;
        s = h->slot;
    } else {
        *nlen = cstrlen(name, name_n);
        s = ld_fmap_find(fm, (const char *)name, *nlen);
        if (h) {
            h->w[0] = h->w[1] = 0;
            h->len = *nlen <= 16 ? *nlen : UINT32_MAX;
            if (*nlen <= 16)
                memcpy(h->w, name, *nlen);
            h->slot = s;
        }
    }
    if (hdr && idx < NHINT) {
        int skip = s < 0 || s == fm->key_slot || s == fm->time_slot;
        tmpl_t was = d->tmpl[idx];
        tmpl_learn(&d->tmpl[idx], hdr, n, skip ? -1 : s);
        /* only num templates make runs: a position that changes between
         * other shapes from record to record (optional string features)
         * must not rebuild the runs after every record */
        const tmpl_t *now = &d->tmpl[idx];
        if ((was.kind == 2 || now->kind == 2) &&
            (was.kind != now->kind || was.slot != now->slot ||
             was.hlen != now->hlen ||
             memcmp(was.w, now->w, sizeof(was.w)) != 0))
            d->dirty = 1;
    }
    return s;
}

/* The value of the Feature's oneof member vcase (0: none) into fv: val,
 * or for tags the ntags strings pushed from first on. */
static inline void feature_value(ld_fv_t *fv, uint32_t vcase, const pbf_t *val,
                                 uint32_t first, long ntags)
{
    switch (vcase) {
    case 2:
        fv->kind = FV_DOUBLE;
        fv->u.d = fixed64_double(val->raw);
        break;
    case 3:
        fv->kind = FV_STR;
        fv->u.s = (const char *)val->v;
        fv->n = cstrlen(val->v, val->n);
        break;
    case 4:
        fv->kind = FV_LIST;
        fv->u.first = first;
        fv->n = (uint32_t)ntags;
        break;
    case 5:
        fv->kind = FV_INT;
        fv->u.i = (int64_t)varint(val);
        break;
    case 6: {
        int b = 0;
        for (size_t i = 0; i < val->rawn; i++)
            b |= val->raw[i] & 0x7f;
        fv->kind = FV_BOOL;
        fv->u.i = b != 0;
        break;
    }
    default:
        fv->kind = FV_NULL;
        break;
    }
}

/* One Feature at v/n, the idx-th of its Event, into its slot. Returns 0, or
 * -1 when malformed. rec_end: end of the whole record. hdr: the Feature's
 * tag when its length took one byte (v == hdr + 2), for the template of its
 * position; else NULL. */
static int feature(ld_pbdec_t *d, ld_fmap_t *fm, uint32_t idx, const uint8_t *v,
                   size_t n, const uint8_t *rec_end, const uint8_t *hdr,
                   late_t *lt)
{
    const uint8_t *p = v, *end = v + n;
    const uint8_t *name = (const uint8_t *)"";
    size_t name_n = 0;
    uint32_t strs0 = fm->nstrs, first = 0;
    long ntags = 0;
    uint32_t vcase = 0; /* field number of the oneof member, 0: none */
    pbf_t val = {0};

    /* Fast path: what encoders write, name then one num or str value and
     * nothing after it; anything else takes the general loop, whose answer
     * is the same for these bytes. */
    if (n >= 2 && v[0] == 0x0a && v[1] < 0x80 && (size_t)v[1] + 2 <= n) {
        const uint8_t *q = v + 2 + v[1];
        size_t left = (size_t)(end - q);
        if (left == 9 && q[0] == 0x11) {
            name = v + 2, name_n = v[1], p = end;
            vcase = 2, val.raw = q + 1;
        } else if (left >= 2 && q[0] == 0x1a && q[1] < 0x80 &&
                   left == (size_t)q[1] + 2) {
            name = v + 2, name_n = v[1], p = end;
            vcase = 3, val.v = q + 2, val.n = q[1];
        }
    }
    while (p < end) {
        /* v/n preset: GCC -O3 cannot see that LD_PB_WT_LEN implies scan() set
         * them and warns (maybe-uninitialized) at string_list() below */
        pbf_t f = {.v = NULL, .n = 0};
        if (scan(&p, end, &f) < 0)
            return -1;
        switch (f.num) {
        case 1: /* name */
            if (f.wt != LD_PB_WT_LEN)
                return -1;
            name = f.v;
            name_n = f.n;
            break;
        case 2: /* num */
            if (f.wt != LD_PB_WT_FIXED64)
                return -1;
            vcase = 2, val = f;
            break;
        case 3: /* str */
        case 4: /* tags */
            if (f.wt != LD_PB_WT_LEN)
                return -1;
            if (f.num == 4) {
                first = fm->nstrs;
                if ((ntags = string_list(fm, f.v, f.n, lt)) < 0)
                    return -1;
            }
            vcase = f.num, val = f;
            break;
        case 5: /* integer */
            if (f.wt != LD_PB_WT_VARINT)
                return -1;
            vcase = 5, val = f;
            break;
        case 6: /* boolean: protobuf-c takes any wire type */
            vcase = 6, val = f;
            break;
        default: /* unknown: skipped */
            break;
        }
    }
    if (lt->why)
        return 0;

    uint32_t nlen;
    int32_t s = feature_slot(d, fm, idx, name, name_n, rec_end, hdr, n, &nlen);
    /* canonical slots are not features; unmapped names are skipped */
    if (s < 0 || s == fm->key_slot || s == fm->time_slot) {
        fm->nstrs = strs0;
        return 0;
    }
    ld_fv_t *fv = &fm->fv[s];
    if (fv->kind != FV_ABSENT) {
        lt->why = LD_REASON_DUPLICATE_FIELD;
        snprintf(lt->err, lt->err_size, "feature %.*s appears twice", (int)nlen,
                 (const char *)name);
        return 0;
    }
    feature_value(fv, vcase, &val, first, ntags);
    return 0;
}

/* The run of {name, num} features that starts at position *nfeat in the
 * last record, when p holds it again and its slots are free: stored, and
 * *nfeat moved past it. Returns the bytes taken, 0 when no run applies. */
static inline size_t take_run(const ld_pbdec_t *d, ld_fmap_t *fm,
                              const uint8_t *p, const uint8_t *end,
                              uint32_t *nfeat)
{
    int run = *nfeat < NHINT ? d->run_of[*nfeat] : -1;
    if (run < 0)
        return 0;
    const run_t *r = &d->run[run];
    size_t got = run_match(r, p, end);
    uint32_t i = 0;
    /* a run at position 0 meets the slots as reset: no
     * feature of this record came before it */
    if (got && r->first > 0)
        for (; i < r->nset; i++)
            if (fm->fv[r->slot[i]].kind != FV_ABSENT)
                break;
    if (!got || (r->first != 0 && i != r->nset))
        return 0;
    for (i = 0; i < r->nset; i++) {
        ld_fv_t *fv = &fm->fv[r->slot[i]];
        fv->kind = FV_DOUBLE;
        fv->u.d = fixed64_double(p + r->at[i]);
    }
    *nfeat += r->count;
    return got;
}

/* The Feature at hdr (position nfeat < NHINT) when it has the shape and
 * name its position had in the last record: stored into its free slot, or
 * skipped when unmapped. Returns 1 when taken, 0 when feature() decides. */
static inline int take_tmpl(const ld_pbdec_t *d, ld_fmap_t *fm, uint32_t nfeat,
                            const uint8_t *hdr, const uint8_t *end)
{
    size_t got = tmpl_match(&d->tmpl[nfeat], hdr, end);
    if (!got)
        return 0;
    const tmpl_t *t = &d->tmpl[nfeat];
    int32_t s = t->slot;
    if (s < 0 || s == fm->key_slot || s == fm->time_slot) {
        /* skipped, but a tags list must still be well-formed:
         * the template vouches for the bytes before the value
         * only, so without this an unmapped feature's broken
         * StringList passed whenever the record before had a
         * good one at this position (and failed alone) */
        return t->kind != 4;
    }
    ld_fv_t *fv = &fm->fv[s];
    if (fv->kind != FV_ABSENT)
        return 0;
    const uint8_t *q = hdr + t->hlen;
    if (t->kind == 2) {
        fv->kind = FV_DOUBLE;
        fv->u.d = fixed64_double(q);
    } else if (t->kind == 3) {
        fv->kind = FV_STR;
        fv->u.s = (const char *)q;
        fv->n = cstrlen(q, got - t->hlen);
    } else {
        uint32_t first = fm->nstrs;
        long nt = tags_simple(fm, q, got - t->hlen);
        if (nt < 0)
            return 0;
        fv->kind = FV_LIST;
        fv->u.first = first;
        fv->n = (uint32_t)nt;
    }
    return 1;
}

ld_reason_t ld_pbdec_decode(ld_pbdec_t *d, ld_fmap_t *fm, const uint8_t *p,
                            size_t len, char *err, size_t err_size)
{
    const uint8_t *end = p + len;
    const uint8_t *id = NULL;
    size_t id_n = 0;
    int64_t time_ms = 0;
    double value = 0.0;
    uint32_t nfeat = 0;
    late_t lt = {LD_REASON_NONE, err, err_size};
    int label = d->kind == LD_RECORD_LABEL;

    while (p < end) {
        /* fast path: a Feature under 128 bytes, field 3 of an Event */
        if (!label && p[0] == 0x1a && end - p >= 2 && p[1] < 0x80 &&
            (size_t)p[1] <= (size_t)(end - p) - 2) {
            /* fastest: a run of {name, num} features as in the last
             * record, every slot still free */
            size_t got;
            if (!lt.why && (got = take_run(d, fm, p, end, &nfeat))) {
                p += got;
                continue;
            }
            const uint8_t *hdr = p, *v = p + 2;
            size_t n = p[1];
            p = v + n;
            /* faster still: the shape and name this position had in the
             * last record (tmpl_t), into a free slot; anything else goes
             * through feature() */
            if (nfeat < NHINT && !lt.why && take_tmpl(d, fm, nfeat, hdr, end)) {
                nfeat++;
                continue;
            }
            if (feature(d, fm, nfeat++, v, n, end, hdr, &lt) < 0)
                goto bad;
            continue;
        }
        pbf_t f;
        if (scan(&p, end, &f) < 0)
            goto bad;
        switch (f.num) {
        case 1: /* event_id */
            if (f.wt != LD_PB_WT_LEN)
                goto bad;
            id = f.v;
            id_n = f.n;
            break;
        case 2: /* event_time_ms, label_time_ms */
            if (f.wt != LD_PB_WT_VARINT)
                goto bad;
            time_ms = (int64_t)varint(&f);
            break;
        case 3: /* Event.features, Label.value */
            if (label) {
                if (f.wt != LD_PB_WT_FIXED64)
                    goto bad;
                value = fixed64_double(f.raw);
            } else {
                if (f.wt != LD_PB_WT_LEN ||
                    feature(d, fm, nfeat++, f.v, f.n, end, NULL, &lt) < 0)
                    goto bad;
            }
            break;
        default: /* unknown: skipped */
            break;
        }
    }
    if (lt.why)
        return lt.why;
    if (d->dirty)
        runs_build(d);

    uint32_t idn = id ? cstrlen(id, id_n) : 0;
    if (fm->key_slot >= 0 && idn) {
        ld_fv_t *v = &fm->fv[fm->key_slot];
        v->kind = FV_STR;
        v->u.s = (const char *)id;
        v->n = idn;
    }
    if (fm->time_slot >= 0 && time_ms != 0) {
        fm->fv[fm->time_slot].kind = FV_INT;
        fm->fv[fm->time_slot].u.i = time_ms;
    }
    if (label && fm->label_slot >= 0) {
        fm->fv[fm->label_slot].kind = FV_DOUBLE;
        fm->fv[fm->label_slot].u.d = value;
    }
    return LD_REASON_NONE;

bad:
    snprintf(err, err_size, "%s",
             label ? "not a learnd.v1.Label protobuf message"
                   : "not a learnd.v1.Event protobuf message");
    return LD_REASON_DECODE;
}
