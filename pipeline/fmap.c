/* SPDX-License-Identifier: Apache-2.0 */
/* Field mapping, per record: slots to key, time, label and hashed + dense
 * features (the format-independent half of decoding); fmap_build.c builds
 * the map from the config. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/hash.h"
#include "pipeline/internal.h"

void ld_fmap_reset(ld_fmap_t *fm)
{
    memset(fm->fv, 0, fm->nslots * sizeof(*fm->fv));
    fm->nstrs = 0;
}

int ld_fmap_push_str(ld_fmap_t *fm, const char *s, uint32_t n)
{
    if (fm->nstrs == fm->capstrs) {
        uint32_t ncap = fm->capstrs ? fm->capstrs * 2 : 64;
        ld_str_t *v = realloc(fm->strs, ncap * sizeof(*v));
        if (!v)
            return -1;
        fm->strs = v;
        fm->capstrs = ncap;
    }
    fm->strs[fm->nstrs].s = s;
    fm->strs[fm->nstrs].n = n;
    fm->nstrs++;
    return 0;
}

/* ---- UTF-8 -------------------------------------------------------------- */

int ld_utf8_valid(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    /* keys and categorical values are short and mostly ASCII: one pass
     * of OR-ed words (the last one overlapping) decides those */
    if (n >= 8) {
        uint64_t acc = 0, w;
        for (size_t k = 0; k + 8 <= n; k += 8) {
            memcpy(&w, s + k, 8);
            acc |= w;
        }
        memcpy(&w, s + n - 8, 8);
        if (!((acc | w) & 0x8080808080808080ull))
            return 1;
    } else {
        unsigned acc = 0;
        for (size_t k = 0; k < n; k++)
            acc |= s[k];
        if (!(acc & 0x80))
            return 1;
    }
    while (i < n) {
        /* ASCII fast path, 8 bytes at a time */
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ull)
                break;
            i += 8;
        }
        if (i >= n)
            break;
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf)
            need = 1, cp = c & 0x1fu;
        else if (c >= 0xe0 && c <= 0xef)
            need = 2, cp = c & 0x0fu;
        else if (c >= 0xf0 && c <= 0xf4)
            need = 3, cp = c & 0x07u;
        else
            return 0;
        if (n - i <= need)
            return 0;
        for (size_t k = 1; k <= need; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + k] & 0x3fu);
        }
        if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += need + 1;
    }
    return 1;
}

/* ---- Per record --------------------------------------------------------- */

/* ld_utf8_valid(), with the all-ASCII answer inline: a few overlapping
 * loads cover any length up to 8 without a loop. */
static inline int text_ok(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    if (n >= 8)
        return ld_utf8_valid(str, n);
    if (n >= 4) {
        uint32_t a, b;
        memcpy(&a, s, 4);
        memcpy(&b, s + n - 4, 4);
        if (!((a | b) & 0x80808080u))
            return 1;
    } else if (n == 0 || !((s[0] | s[n >> 1] | s[n - 1]) & 0x80)) {
        return 1;
    }
    return ld_utf8_valid(str, n);
}

/* Decimal text of v into buf (>= 21 bytes); returns the length. */
static uint32_t i64_text(int64_t v, char *buf)
{
    char tmp[24];
    uint32_t n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    uint32_t len = 0;
    if (v < 0)
        buf[len++] = '-';
    while (n)
        buf[len++] = tmp[--n];
    buf[len] = '\0';
    return len;
}

/* Canonical text of a scalar value (pipeline/hash.h). Returns NULL with
 * *why set for NaN/Inf or a list. */
static const char *fv_text(const ld_fv_t *v, char *buf, uint32_t *n,
                           ld_reason_t *why)
{
    switch (v->kind) {
    case FV_STR:
        *n = v->n;
        return v->u.s;
    case FV_BOOL:
        *n = v->u.i ? 4 : 5;
        return v->u.i ? "true" : "false";
    case FV_INT:
        *n = i64_text(v->u.i, buf);
        return buf;
    case FV_DOUBLE:
        if (!isfinite(v->u.d)) {
            *why = LD_REASON_NOT_FINITE;
            return NULL;
        }
        if (v->u.d == trunc(v->u.d) && fabs(v->u.d) < 9007199254740992.0) {
            *n = i64_text((int64_t)v->u.d, buf);
            return buf;
        }
        *n = (uint32_t)snprintf(buf, 32, "%.17g", v->u.d);
        return buf;
    default:
        *why = LD_REASON_BAD_TYPE;
        return NULL;
    }
}

#define FAIL(r, ...)                                                           \
    do {                                                                       \
        snprintf(err, err_size, __VA_ARGS__);                                  \
        return (r);                                                            \
    } while (0)

static ld_reason_t set_key(ld_fmap_t *fm, const char *k, size_t n,
                           ld_record_t *out, char *err, size_t err_size)
{
    if (!k || n == 0)
        FAIL(LD_REASON_MISSING_KEY, "no join key");
    /* The joiner keeps keys in a length byte (labeling.h): refuse them
     * here, where the record can still be dead-lettered whole. */
    if (n > LD_KEY_MAX)
        FAIL(LD_REASON_KEY_TOO_LONG, "join key of %zu bytes > %d", n,
             LD_KEY_MAX);
    if (memchr(k, 0, n) || !text_ok(k, n))
        FAIL(LD_REASON_BAD_UTF8, "join key is not UTF-8 text");
    if (n + 1 > fm->keycap) {
        size_t ncap = n + 1 > 2 * fm->keycap ? n + 1 : 2 * fm->keycap;
        char *b = realloc(fm->keybuf, ncap);
        if (!b)
            FAIL(LD_REASON_DECODE, "out of memory");
        fm->keybuf = b;
        fm->keycap = ncap;
    }
    memcpy(fm->keybuf, k, n);
    fm->keybuf[n] = '\0';
    out->key = fm->keybuf;
    out->key_len = (uint32_t)n;
    return LD_REASON_NONE;
}

static inline ld_reason_t push(ld_fmap_t *fm, uint32_t *nnz, uint32_t h,
                               char *err, size_t err_size)
{
    if (*nnz >= fm->max_features)
        FAIL(LD_REASON_TOO_MANY_FEATURES, "more than %u features",
             fm->max_features);
    fm->idx[*nnz] = h & fm->mask;
    fm->hfull[*nnz] = ld_hash_block_mix(h);
    (*nnz)++;
    return LD_REASON_NONE;
}

/* The dense block: every dense field as a float, 0 when absent or null. */
static inline ld_reason_t dense_features(ld_fmap_t *fm, char *err,
                                         size_t err_size)
{
    const ld_fv_t *fv = fm->fv;
    const int32_t *dslot = fm->dense_slot;
    float *dense = fm->dense;
    /* The common case first, in one pass: every dense field a double.
     * Finiteness is checked on the floats afterwards, branch-free, and
     * anything else (another kind, NaN/Inf) takes the loop below from the
     * start, so a record is rejected with the same first field and
     * message as before. */
    uint32_t i0 = 0, bad = 0;
    for (; i0 < fm->ndense; i0++) {
        const ld_fv_t *v = &fv[dslot[i0]];
        if (v->kind != FV_DOUBLE)
            break;
        dense[i0] = (float)v->u.d;
    }
    for (uint32_t i = 0; i < i0; i++) {
        uint32_t b;
        memcpy(&b, &dense[i], 4);
        bad |= (b & 0x7f800000u) == 0x7f800000u;
    }
    for (uint32_t i = bad || i0 < fm->ndense ? 0 : i0; i < fm->ndense; i++) {
        const ld_fv_t *v = &fv[dslot[i]];
        float f = 0.0f;
        if (v->kind == FV_DOUBLE) { /* the common case, first */
            f = (float)v->u.d;
            if (!isfinite(f))
                FAIL(LD_REASON_NOT_FINITE, "field %s: %g is not a finite float",
                     fm->names[dslot[i]], v->u.d);
            dense[i] = f;
            continue;
        }
        switch (v->kind) {
        case FV_ABSENT:
        case FV_NULL:
            break;
        case FV_BOOL:
            f = v->u.i ? 1.0f : 0.0f;
            break;
        case FV_INT:
            f = (float)v->u.i;
            break;
        case FV_DOUBLE:
            f = (float)v->u.d;
            if (!isfinite(f))
                FAIL(LD_REASON_NOT_FINITE, "field %s: %g is not a finite float",
                     fm->names[fm->dense_slot[i]], v->u.d);
            break;
        default:
            FAIL(LD_REASON_BAD_TYPE, "field %s: dense field is not a number",
                 fm->names[fm->dense_slot[i]]);
        }
        dense[i] = f;
    }
    return LD_REASON_NONE;
}

/* One hashed feature per hashed field value (each item of a list),
 * grouped by namespace: fm->ns_start[ns] is where namespace ns starts. */
static inline ld_reason_t hashed_features(ld_fmap_t *fm, uint32_t *nnzp,
                                          char *err, size_t err_size)
{
    uint32_t nnz = *nnzp;
    ld_reason_t why = LD_REASON_NONE;
    char buf[40];
    uint32_t ns = 0;
    fm->ns_start[0] = 0;
    for (uint32_t i = 0; i < fm->nhash; i++) {
        const hfield_t *hf = &fm->hash[i];
        while (ns < hf->ns)
            fm->ns_start[++ns] = nnz;
        const ld_fv_t *v = &fm->fv[hf->slot];
        if (v->kind == FV_ABSENT || v->kind == FV_NULL)
            continue;
        if (v->kind == FV_LIST) {
            for (uint32_t j = 0; j < v->n; j++) {
                const ld_str_t *s = &fm->strs[v->u.first + j];
                if (!text_ok(s->s, s->n))
                    FAIL(LD_REASON_BAD_UTF8, "field %s: not UTF-8",
                         fm->names[hf->slot]);
                if ((why = push(fm, &nnz,
                                ld_hash_murmur3_32_inline(s->s, s->n, hf->seed),
                                err, err_size)))
                    return why;
            }
            continue;
        }
        uint32_t n = 0;
        const char *t;
        if (v->kind == FV_STR) /* the common case, without a call */
            t = v->u.s, n = v->n;
        else
            t = fv_text(v, buf, &n, &why);
        if (!t)
            FAIL(why, "field %s: %s", fm->names[hf->slot],
                 why == LD_REASON_NOT_FINITE ? "NaN or Inf"
                                             : "not a hashable value");
        if (v->kind == FV_STR && !text_ok(t, n))
            FAIL(LD_REASON_BAD_UTF8, "field %s: not UTF-8",
                 fm->names[hf->slot]);
        if ((why = push(fm, &nnz, ld_hash_murmur3_32_inline(t, n, hf->seed),
                        err, err_size)))
            return why;
    }
    while (ns < fm->nns)
        fm->ns_start[++ns] = nnz;
    *nnzp = nnz;
    return LD_REASON_NONE;
}

/* Crosses. A cross hash is murmur3 over the 4-byte blocks h(a), h(b),
 * ...: hfull holds each feature's block already mixed (blk_mix), so a
 * combination costs one murmur3 round per namespace and the
 * finalisation, and the state after the first w - 1 blocks is kept
 * while the last namespace (the odometer's fastest digit) runs. The
 * outputs are bit-identical to hashing the concatenated bytes. */
static inline ld_reason_t cross_features(ld_fmap_t *fm, uint32_t *nnzp,
                                         char *err, size_t err_size)
{
    uint32_t nnz = *nnzp;
    const uint32_t *km = fm->hfull;
    const uint32_t *nst = fm->ns_start;
    uint32_t *idx = fm->idx;
    const uint32_t mask = fm->mask, seed = fm->seed;
    for (uint32_t c = 0; c < fm->ncross; c++) {
        const uint32_t *m = fm->cross_ns + fm->cross_off[c];
        uint32_t w = fm->cross_off[c + 1] - fm->cross_off[c];
        uint32_t at[LD_FMAP_CROSS_MAX], st[LD_FMAP_CROSS_MAX];
        uint64_t count = 1;
        /* every combination is a feature: the count decides the limit up
         * front (same reason and message as one push at a time) */
        for (uint32_t j = 0; j < w; j++) {
            count *= nst[m[j] + 1] - nst[m[j]];
            if (count > fm->max_features)
                break;
        }
        if (count == 0)
            continue;
        if (count > fm->max_features - nnz)
            FAIL(LD_REASON_TOO_MANY_FEATURES, "more than %u features",
                 fm->max_features);
        const uint32_t len = 4 * w;
        const uint32_t last_lo = nst[m[w - 1]], last_hi = nst[m[w - 1] + 1];
        st[0] = seed;
        for (uint32_t j = 0; j + 1 < w; j++) {
            at[j] = nst[m[j]];
            st[j + 1] = ld_hash_block_round(st[j], km[at[j]]);
        }
        for (;;) {
            const uint32_t s = st[w - 1];
            for (uint32_t b = last_lo; b < last_hi; b++)
                idx[nnz++] =
                    ld_hash_fmix(ld_hash_block_round(s, km[b]), len) & mask;
            /* odometer over the other namespaces, last one fastest */
            uint32_t j = w - 1;
            for (;;) {
                if (j == 0)
                    goto next_cross;
                j--;
                if (++at[j] < nst[m[j] + 1])
                    break;
                at[j] = nst[m[j]];
            }
            for (; j + 1 < w; j++)
                st[j + 1] = ld_hash_block_round(st[j], km[at[j]]);
        }
    next_cross:;
    }
    *nnzp = nnz;
    return LD_REASON_NONE;
}

static ld_reason_t features(ld_fmap_t *fm, ld_record_t *out, char *err,
                            size_t err_size)
{
    uint32_t nnz = 0;
    ld_reason_t why;
    if ((why = dense_features(fm, err, err_size)) ||
        (why = hashed_features(fm, &nnz, err, err_size)) ||
        (why = cross_features(fm, &nnz, err, err_size)))
        return why;
    out->x.idx = fm->idx;
    out->x.val = fm->val;
    out->x.nnz = nnz;
    out->x.dense = fm->dense;
    out->x.ndense = fm->ndense;
    return LD_REASON_NONE;
}

static ld_reason_t label_value(ld_fmap_t *fm, ld_record_t *out, char *err,
                               size_t err_size)
{
    if (fm->label_slot < 0) {
        out->label = 1.0;
        return LD_REASON_NONE;
    }
    const ld_fv_t *v = &fm->fv[fm->label_slot];
    const char *name = fm->names[fm->label_slot];
    if (fm->label_mode == LD_LABEL_EQUALS) {
        char buf[40];
        uint32_t n = 0;
        ld_reason_t why = LD_REASON_NONE;
        /* A record that does not match is not a label at all, rather than
         * a label 0: as a 0 it would win `first` over a later click, count
         * as a `pos` and stop a late click's correction (issue 14). The
         * joiner still sees its time (docs/LABELING.md). */
        out->label = 0.0;
        out->no_label = 1;
        if (v->kind == FV_ABSENT || v->kind == FV_NULL)
            return LD_REASON_NONE;
        const char *t = fv_text(v, buf, &n, &why);
        if (!t)
            FAIL(why, "label field %s: not comparable", name);
        if (strlen(fm->label_equals) == n &&
            memcmp(t, fm->label_equals, n) == 0) {
            out->label = 1.0;
            out->no_label = 0;
        }
        return LD_REASON_NONE;
    }
    switch (v->kind) {
    case FV_ABSENT:
    case FV_NULL:
        FAIL(LD_REASON_MISSING_LABEL, "label field %s absent", name);
    case FV_BOOL:
    case FV_INT:
        out->label = (double)v->u.i;
        return LD_REASON_NONE;
    case FV_DOUBLE:
        if (!isfinite(v->u.d))
            FAIL(LD_REASON_NOT_FINITE, "label field %s: NaN or Inf", name);
        out->label = v->u.d;
        return LD_REASON_NONE;
    default:
        FAIL(LD_REASON_BAD_TYPE, "label field %s: not a number", name);
    }
}

ld_reason_t ld_fmap_finish(ld_fmap_t *fm, const void *key, size_t key_len,
                           int64_t kafka_ts_ms, ld_record_t *out, char *err,
                           size_t err_size)
{
    ld_reason_t why;
    memset(out, 0, sizeof(*out));
    out->kind = fm->kind;
    out->partition = -1;
    out->offset = -1;

    if (fm->key_slot >= 0) {
        const ld_fv_t *v = &fm->fv[fm->key_slot];
        char buf[40];
        if (v->kind == FV_STR)
            why = set_key(fm, v->u.s, v->n, out, err, err_size);
        else if (v->kind == FV_INT)
            why = set_key(fm, buf, i64_text(v->u.i, buf), out, err, err_size);
        else if (v->kind == FV_ABSENT || v->kind == FV_NULL)
            FAIL(LD_REASON_MISSING_KEY, "key field %s absent",
                 fm->names[fm->key_slot]);
        else
            FAIL(LD_REASON_BAD_TYPE, "key field %s: not a string",
                 fm->names[fm->key_slot]);
    } else {
        why = set_key(fm, key, key_len, out, err, err_size);
    }
    if (why)
        return why;

    if (fm->time_slot >= 0) {
        const ld_fv_t *v = &fm->fv[fm->time_slot];
        const char *name = fm->names[fm->time_slot];
        switch (v->kind) {
        case FV_INT:
            out->time_ms = v->u.i;
            break;
        case FV_DOUBLE:
            if (!isfinite(v->u.d))
                FAIL(LD_REASON_NOT_FINITE, "time field %s: NaN or Inf", name);
            if (fabs(v->u.d) >= 9.2e18)
                FAIL(LD_REASON_BAD_TYPE, "time field %s: out of range", name);
            out->time_ms = (int64_t)v->u.d;
            break;
        case FV_ABSENT:
        case FV_NULL:
            FAIL(LD_REASON_MISSING_TIME, "time field %s absent", name);
        default:
            FAIL(LD_REASON_BAD_TYPE,
                 "time field %s: not a number of milliseconds", name);
        }
    } else {
        if (kafka_ts_ms < 0)
            FAIL(LD_REASON_MISSING_TIME, "record has no Kafka timestamp");
        out->time_ms = kafka_ts_ms;
    }
    /* The joiner's time arithmetic stays exact within +-2^61 ms (about 73
     * million years); beyond that a time cannot be a real event's. */
    if (out->time_ms < -LD_TIME_LIMIT_MS || out->time_ms > LD_TIME_LIMIT_MS)
        FAIL(LD_REASON_TIME_RANGE, "time %lld ms beyond +-2^61",
             (long long)out->time_ms);
    /* A time far ahead of the record's own Kafka timestamp (the wall clock
     * of its producer or broker, recorded in the input: so the verdict is
     * a pure function of the input) would move its partition's watermark
     * into the future and make every later record late (issue #15). Both
     * are within +-2^61 / >= 0 here: the difference cannot overflow. */
    if (fm->max_future_ms > 0 && fm->time_slot >= 0 && kafka_ts_ms >= 0 &&
        kafka_ts_ms <= LD_TIME_LIMIT_MS && out->time_ms > kafka_ts_ms &&
        out->time_ms - kafka_ts_ms > fm->max_future_ms)
        FAIL(LD_REASON_FUTURE_TIME,
             "time %lld ms is %lld ms ahead of the Kafka timestamp "
             "(max_future %lld ms)",
             (long long)out->time_ms, (long long)(out->time_ms - kafka_ts_ms),
             (long long)fm->max_future_ms);

    if (fm->kind == LD_RECORD_LABEL)
        return label_value(fm, out, err, err_size);
    ld_fmap_served(fm, out);
    return features(fm, out, err, err_size);
}
