/* SPDX-License-Identifier: Apache-2.0 */
/* JSON decoding of users' own flat or nested objects with jansson; fields
 * are looked up by name, nested ones by dotted path ("user.country"). The
 * common shape (an object of unescaped strings, numbers, literals, string
 * arrays and one level of nested objects) takes a single-pass fast path
 * without allocations;
 * anything else goes to jansson, which decides every error. */
#include <errno.h>
#include <jansson.h>
#include <locale.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/internal.h"

/* Path components of one slot: "a.b.c" -> {"a", "b", "c"}. */
typedef struct jpath {
    char **part;
    uint32_t n;
} jpath_t;

struct ld_jsondec {
    json_t *root; /* of the last record: its strings back the slots */
    jpath_t *paths;
    uint32_t npaths;
    uint32_t *nlen; /* strlen of each slot's name */
    uint8_t *prio;  /* fast path: how each slot was set (fast_object) */
    const char *const *names; /* fm's slot names (borrowed) */
    int dot; /* the locale's decimal point is ".", read once: learnd never
              * calls setlocale, and localeconv() is not thread-safe */
};

ld_jsondec_t *ld_jsondec_new(ld_fmap_t *fm, char *errstr, size_t errstr_size)
{
    ld_jsondec_t *d = calloc(1, sizeof(*d));
    if (!d || !(d->paths = calloc(fm->nslots + 1, sizeof(*d->paths))))
        goto nomem;
    d->npaths = fm->nslots;
    d->names = (const char *const *)fm->names;
    const char *dp = localeconv()->decimal_point;
    d->dot = dp[0] == '.' && dp[1] == '\0';
    if (!(d->nlen = calloc(fm->nslots + 1, sizeof(*d->nlen))) ||
        !(d->prio = calloc(fm->nslots + 1, 1)))
        goto nomem;
    for (uint32_t i = 0; i < fm->nslots; i++) {
        const char *name = fm->names[i];
        d->nlen[i] = (uint32_t)strlen(name);
        uint32_t n = 1;
        for (const char *c = name; *c; c++)
            n += *c == '.';
        jpath_t *jp = &d->paths[i];
        if (!(jp->part = calloc(n, sizeof(*jp->part))))
            goto nomem;
        const char *start = name;
        for (uint32_t k = 0; k < n; k++) {
            const char *dot = strchr(start, '.');
            size_t len = dot ? (size_t)(dot - start) : strlen(start);
            if (!(jp->part[k] = strndup(start, len)))
                goto nomem;
            jp->n++;
            start = dot ? dot + 1 : start + len;
        }
    }
    return d;
nomem:
    snprintf(errstr, errstr_size, "out of memory");
    ld_jsondec_destroy(d);
    return NULL;
}

void ld_jsondec_destroy(ld_jsondec_t *d)
{
    if (!d)
        return;
    json_decref(d->root);
    for (uint32_t i = 0; d->paths && i < d->npaths; i++) {
        for (uint32_t k = 0; k < d->paths[i].n; k++)
            free(d->paths[i].part[k]);
        free(d->paths[i].part);
    }
    free(d->paths);
    free(d->nlen);
    free(d->prio);
    free(d);
}

/* The value at slot i's path: the whole dotted name as one key first (keys
 * may contain dots), then the nested walk. */
static json_t *lookup(json_t *root, const ld_fmap_t *fm, const jpath_t *jp,
                      uint32_t i)
{
    json_t *v = json_object_get(root, fm->names[i]);
    if (v || jp->n == 1)
        return v;
    v = root;
    for (uint32_t k = 0; k < jp->n && v; k++)
        v = json_object_get(v, jp->part[k]);
    return v;
}

/* ---- Fast path ----------------------------------------------------------
 * Why: jansson builds a tree with an allocation per value and a hash table
 * per object, which cost more than hashing and training together (bench
 * quality: JSON input ran at 0.1x the Avro rate). The fast path accepts a
 * strict subset of what jansson accepts and gives the slots exactly the
 * values jansson's tree would: strings borrowed from the input (fmap reads
 * them by length during the call, as Avro's), numbers by the same strtoll /
 * strtod conversions, integer versus real by the same lexical rule. It
 * gives up (0) on anything else, and jansson decodes the record from the
 * start: escapes, control bytes or invalid UTF-8 in strings,
 * arrays of non-strings, numbers out of range, a non-"." decimal point,
 * duplicate keys, more than FAST_KEYS members, objects deeper than one
 * level or named by a slot, malformed text. So every
 * error message, reason and unusual value comes from jansson as before
 * (test_json_fast_path compares the two paths). */
#define FAST_KEYS 64

static inline int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static inline int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* The end of a plain string whose body starts at p (closing quote), or
 * NULL when the string needs jansson: an escape, a control byte, or bytes
 * that are not UTF-8 (ld_utf8_valid accepts exactly what jansson does:
 * RFC 3629, no overlongs, no surrogates). */
static inline const char *plain_str(const char *p, const char *e)
{
    unsigned high = 0;
    for (const char *s = p; p < e; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"')
            return !(high & 0x80) || ld_utf8_valid(s, (size_t)(p - s)) ? p
                                                                       : NULL;
        if (c == '\\' || c < 0x20)
            return NULL;
        high |= c;
    }
    return NULL;
}

/* A JSON number at *pp, as jansson lexes and converts it; 0: give up.
 * dot: the locale's decimal point is "." (strtod reads JSON's reals). */
static int fast_num(const char **pp, const char *e, ld_fv_t *v, int dot)
{
    const char *p = *pp, *s = p;
    int real = 0;
    if (p < e && *p == '-')
        p++;
    if (p < e && *p == '0')
        p++;
    else if (p < e && *p >= '1' && *p <= '9')
        while (p < e && is_digit(*p))
            p++;
    else
        return 0;
    if (p < e && *p == '.') {
        real = 1;
        if (++p >= e || !is_digit(*p))
            return 0;
        while (p < e && is_digit(*p))
            p++;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        real = 1;
        if (++p < e && (*p == '+' || *p == '-'))
            p++;
        if (p >= e || !is_digit(*p))
            return 0;
        while (p < e && is_digit(*p))
            p++;
    }
    char buf[64];
    size_t n = (size_t)(p - s);
    if (n >= sizeof(buf))
        return 0;
    memcpy(buf, s, n);
    buf[n] = '\0';
    errno = 0;
    if (real) {
        if (!dot)
            return 0;
        double x = strtod(buf, NULL);
        if ((x == HUGE_VAL || x == -HUGE_VAL) && errno == ERANGE)
            return 0;
        v->kind = FV_DOUBLE;
        v->u.d = x;
    } else {
        long long x = strtoll(buf, NULL, 10);
        if (errno == ERANGE)
            return 0;
        v->kind = FV_INT;
        v->u.i = (int64_t)x;
    }
    *pp = p;
    return 1;
}

static inline const char *skip_ws(const char *p, const char *e)
{
    while (p < e && is_ws(*p))
        p++;
    return p;
}

/* Does slot i's path equal pk.k (a member of a top-level object)? */
static inline int nested_match(const ld_jsondec_t *d, uint32_t i,
                               const char *pk, uint32_t pkn, const char *k,
                               uint32_t kn)
{
    /* Two parts: the name is "part0.part1" with no other dot. */
    const char *name = d->names[i];
    return d->paths[i].n == 2 && d->nlen[i] == pkn + 1 + kn &&
           memcmp(name, pk, pkn) == 0 && name[pkn] == '.' &&
           memcmp(name + pkn + 1, k, kn) == 0;
}

/* The object at *pp (after its '{'): the top level (pk NULL) or a member
 * pk of it. A slot takes a top-level member named as its whole name (prio
 * 2) before a nested one its dotted path reaches (prio 1), as lookup()
 * does. Returns 1 at the closing brace, 0: give up. */
static int fast_object(ld_jsondec_t *d, ld_fmap_t *fm, const char **pp,
                       const char *e, const char *pk, uint32_t pkn)
{
    struct {
        const char *s;
        uint32_t n;
    } keys[FAST_KEYS];
    uint32_t nkeys = 0;
    const char *p = skip_ws(*pp, e);
    if (p < e && *p == '}') {
        *pp = p + 1;
        return 1;
    }
    for (;;) {
        if (p >= e || *p != '"' || nkeys == FAST_KEYS)
            return 0;
        const char *ks = p + 1, *ke = plain_str(ks, e);
        if (!ke)
            return 0;
        uint32_t kn = (uint32_t)(ke - ks);
        for (uint32_t k = 0; k < nkeys; k++)
            if (keys[k].n == kn && memcmp(keys[k].s, ks, kn) == 0)
                return 0; /* duplicate: jansson's error */
        keys[nkeys].s = ks;
        keys[nkeys++].n = kn;
        p = skip_ws(ke + 1, e);
        if (p >= e || *p++ != ':')
            return 0;
        p = skip_ws(p, e);
        if (p >= e)
            return 0;
        ld_fv_t v = {0};
        uint32_t first = fm->nstrs;
        if (*p == '"') {
            const char *se = plain_str(p + 1, e);
            if (!se)
                return 0;
            v.kind = FV_STR;
            v.u.s = p + 1;
            v.n = (uint32_t)(se - p - 1);
            p = se + 1;
        } else if (*p == '[') {
            v.kind = FV_LIST;
            p = skip_ws(p + 1, e);
            if (p < e && *p == ']') {
                p++;
            } else {
                for (;;) {
                    if (p >= e || *p != '"')
                        return 0;
                    const char *se = plain_str(p + 1, e);
                    if (!se ||
                        ld_fmap_push_str(fm, p + 1, (uint32_t)(se - p - 1)) < 0)
                        return 0;
                    v.n++;
                    p = skip_ws(se + 1, e);
                    if (p < e && *p == ',') {
                        p = skip_ws(p + 1, e);
                        continue;
                    }
                    if (p < e && *p == ']') {
                        p++;
                        break;
                    }
                    return 0;
                }
            }
            v.u.first = first;
        } else if (*p == '{') {
            /* One level of nesting; a slot named as the object itself
             * is jansson's "is an object" error. */
            if (pk)
                return 0;
            for (uint32_t i = 0; i < fm->nslots; i++)
                if (d->nlen[i] == kn && memcmp(fm->names[i], ks, kn) == 0)
                    return 0;
            p++;
            if (!fast_object(d, fm, &p, e, ks, kn))
                return 0;
            v.kind = FV_ABSENT;
        } else if (*p == 't' && e - p >= 4 && memcmp(p, "true", 4) == 0) {
            v.kind = FV_BOOL;
            v.u.i = 1;
            p += 4;
        } else if (*p == 'f' && e - p >= 5 && memcmp(p, "false", 5) == 0) {
            v.kind = FV_BOOL;
            v.u.i = 0;
            p += 5;
        } else if (*p == 'n' && e - p >= 4 && memcmp(p, "null", 4) == 0) {
            v.kind = FV_NULL;
            p += 4;
        } else if (!fast_num(&p, e, &v, d->dot)) {
            return 0; /* not JSON, or a number jansson refuses */
        }
        int mapped = 0;
        if (v.kind != FV_ABSENT) {
            for (uint32_t i = 0; i < fm->nslots; i++) {
                if (!pk && d->nlen[i] == kn &&
                    memcmp(fm->names[i], ks, kn) == 0) {
                    fm->fv[i] = v;
                    d->prio[i] = 2;
                    mapped = 1;
                } else if (pk && d->prio[i] < 2 &&
                           nested_match(d, i, pk, pkn, ks, kn)) {
                    fm->fv[i] = v;
                    d->prio[i] = 1;
                    mapped = 1;
                }
            }
        }
        if (!mapped && v.kind == FV_LIST)
            fm->nstrs = first; /* an unmapped array keeps no strings */
        p = skip_ws(p, e);
        if (p < e && *p == ',') {
            p = skip_ws(p + 1, e);
            continue;
        }
        if (p < e && *p == '}') {
            *pp = p + 1;
            return 1;
        }
        return 0;
    }
}

int ld_jsondec_fast(ld_jsondec_t *d, ld_fmap_t *fm, const uint8_t *buf,
                    size_t len)
{
    const char *p = (const char *)buf, *e = p + len;
    memset(d->prio, 0, d->npaths);
    p = skip_ws(p, e);
    if (p >= e || *p++ != '{' || !fast_object(d, fm, &p, e, NULL, 0))
        return 0;
    return skip_ws(p, e) == e;
}

/* The jansson path: any JSON, and every error. */
static ld_reason_t slow_decode(ld_jsondec_t *d, ld_fmap_t *fm, const uint8_t *p,
                               size_t len, char *err, size_t err_size)
{
    json_error_t jerr;
    json_decref(d->root);
    d->root = json_loadb((const char *)p, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!d->root) {
        snprintf(err, err_size, "JSON at %d:%d: %s", jerr.line, jerr.column,
                 jerr.text);
        switch (json_error_code(&jerr)) {
        case json_error_duplicate_key:
            return LD_REASON_DUPLICATE_FIELD;
        case json_error_invalid_utf8:
            return LD_REASON_BAD_UTF8;
        default:
            return LD_REASON_DECODE;
        }
    }
    if (!json_is_object(d->root)) {
        snprintf(err, err_size, "JSON value is not an object");
        return LD_REASON_DECODE;
    }
    for (uint32_t i = 0; i < fm->nslots; i++) {
        json_t *j = lookup(d->root, fm, &d->paths[i], i);
        ld_fv_t *v = &fm->fv[i];
        if (!j)
            continue;
        switch (json_typeof(j)) {
        case JSON_NULL:
            v->kind = FV_NULL;
            break;
        case JSON_TRUE:
        case JSON_FALSE:
            v->kind = FV_BOOL;
            v->u.i = json_is_true(j);
            break;
        case JSON_INTEGER:
            v->kind = FV_INT;
            v->u.i = json_integer_value(j);
            break;
        case JSON_REAL:
            v->kind = FV_DOUBLE;
            v->u.d = json_real_value(j);
            break;
        case JSON_STRING:
            v->kind = FV_STR;
            v->u.s = json_string_value(j);
            v->n = (uint32_t)json_string_length(j);
            break;
        case JSON_ARRAY: {
            size_t k;
            json_t *e;
            v->kind = FV_LIST;
            v->u.first = fm->nstrs;
            v->n = 0;
            json_array_foreach(j, k, e)
            {
                if (!json_is_string(e)) {
                    snprintf(err, err_size,
                             "field %s: array holds a non-string",
                             fm->names[i]);
                    return LD_REASON_BAD_TYPE;
                }
                if (ld_fmap_push_str(fm, json_string_value(e),
                                     (uint32_t)json_string_length(e)) < 0) {
                    snprintf(err, err_size, "out of memory");
                    return LD_REASON_DECODE;
                }
                v->n++;
            }
            break;
        }
        default:
            snprintf(err, err_size, "field %s is an object", fm->names[i]);
            return LD_REASON_BAD_TYPE;
        }
    }
    return LD_REASON_NONE;
}

ld_reason_t ld_jsondec_decode(ld_jsondec_t *d, ld_fmap_t *fm, const uint8_t *p,
                              size_t len, char *err, size_t err_size)
{
    if (ld_jsondec_fast(d, fm, p, len))
        return LD_REASON_NONE;
    ld_fmap_reset(fm);
    return slow_decode(d, fm, p, len, err, err_size);
}

ld_reason_t ld_jsondec_decode_slow(ld_jsondec_t *d, ld_fmap_t *fm,
                                   const uint8_t *p, size_t len, char *err,
                                   size_t err_size)
{
    return slow_decode(d, fm, p, len, err, err_size);
}
