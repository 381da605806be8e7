/* SPDX-License-Identifier: Apache-2.0 */
/* Field mapping: config names to slots, and slots to key, time, label and
 * hashed + dense features (the format-independent half of decoding). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/hash.h"
#include "pipeline/internal.h"

#define MAX_CROSS_WIDTH 8

/* ---- Building ----------------------------------------------------------- */

/* Slot of name, added when new; -1 when out of memory. */
static int32_t slot_add(ld_fmap_t *fm, const char *name, uint32_t *cap)
{
    for (uint32_t i = 0; i < fm->nslots; i++)
        if (strcmp(fm->names[i], name) == 0)
            return (int32_t)i;
    if (fm->nslots == *cap) {
        uint32_t ncap = *cap ? *cap * 2 : 8;
        char **n = realloc(fm->names, ncap * sizeof(*n));
        if (!n)
            return -1;
        fm->names = n;
        *cap = ncap;
    }
    fm->names[fm->nslots] = strdup(name);
    if (!fm->names[fm->nslots])
        return -1;
    return (int32_t)fm->nslots++;
}

/* Hash of the slot table: FNV-1a, cheaper than murmur3 on the short field
 * names looked up per record (Protobuf, JSON); never leaves the process. */
static inline uint32_t name_hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h ^ h >> 15;
}

static int table_build(ld_fmap_t *fm)
{
    uint32_t size = 8;
    while (size < fm->nslots * 2 + 1)
        size *= 2;
    fm->table = calloc(size, sizeof(*fm->table));
    if (!fm->table)
        return -1;
    fm->tmask = size - 1;
    fm->name_len = calloc(fm->nslots + 1, sizeof(*fm->name_len));
    if (!fm->name_len)
        return -1;
    for (uint32_t i = 0; i < fm->nslots; i++) {
        fm->name_len[i] = (uint32_t)strlen(fm->names[i]);
        uint32_t h = name_hash(fm->names[i], fm->name_len[i]) & fm->tmask;
        while (fm->table[h])
            h = (h + 1) & fm->tmask;
        fm->table[h] = (int32_t)i + 1;
    }
    return 0;
}

int ld_fmap_path_used(const ld_fmap_t *fm, const char *path)
{
    size_t n = strlen(path);
    for (uint32_t i = 0; i < fm->nslots; i++) {
        const char *s = fm->names[i];
        if (strncmp(s, path, n) == 0 && (s[n] == '\0' || s[n] == '.'))
            return 1;
    }
    return 0;
}

int32_t ld_fmap_find(const ld_fmap_t *fm, const char *name, size_t len)
{
    uint32_t h = name_hash(name, len) & fm->tmask;
    for (;;) {
        int32_t s = fm->table[h];
        if (!s)
            return -1;
        if (fm->name_len[s - 1] == len &&
            memcmp(fm->names[s - 1], name, len) == 0)
            return s - 1;
        h = (h + 1) & fm->tmask;
    }
}

/* What ld_fmap_new builds up: the map, the capacity of its names, the
 * namespaces of hash_fields and each entry's namespace and slot (freed at
 * the end), and the feature-map text (taken by the map at the end). */
typedef struct build {
    ld_fmap_t *fm;
    uint32_t cap;   /* of fm->names */
    char **nsn;     /* namespace names, nhash at most */
    uint32_t *hns;  /* per hash_fields entry: namespace */
    int32_t *hslot; /* per hash_fields entry: slot */
    char *text;
    size_t tlen, tcap;
    char *err;
    size_t err_size;
} build_t;

/* The builder steps return 0, or -1 with b->err set. */
static int nomem(build_t *b)
{
    snprintf(b->err, b->err_size, "out of memory");
    return -1;
}

/* Appends s to the feature-map text; returns -1 when out of memory. */
static int text_add(build_t *b, const char *s)
{
    size_t n = strlen(s);
    if (b->tlen + n + 1 > b->tcap) {
        size_t ncap = (b->tlen + n + 1) * 2;
        char *t = realloc(b->text, ncap);
        if (!t)
            return -1;
        b->text = t;
        b->tcap = ncap;
    }
    memcpy(b->text + b->tlen, s, n + 1);
    b->tlen += n;
    return 0;
}

static int ns_index(char **ns, uint32_t nns, const char *name, size_t len)
{
    for (uint32_t i = 0; i < nns; i++)
        if (strlen(ns[i]) == len && memcmp(ns[i], name, len) == 0)
            return (int)i;
    return -1;
}

/* Slots of the served-decision fields of events (docs/EXPERIMENTS.md).
 * They are no features: the mapping text (and so the model's lineage)
 * does not name them. */
static int build_served(build_t *b, const ld_pipeline_conf_t *conf)
{
    ld_fmap_t *fm = b->fm;
    fm->served_variant_slot = fm->served_score_slot = -1;
    fm->served_prop_slot = -1;
    if (fm->kind != LD_RECORD_EVENT)
        return 0;
    const char *one[3] = {conf->served_variant_field, conf->served_score_field,
                          conf->served_propensity_field};
    int32_t *slot[3] = {&fm->served_variant_slot, &fm->served_score_slot,
                        &fm->served_prop_slot};
    for (int i = 0; i < 3; i++)
        if (one[i] && *one[i] && (*slot[i] = slot_add(fm, one[i], &b->cap)) < 0)
            return nomem(b);
    if (conf->served_shadow_fields.n > LD_SERVED_SHADOW_MAX) {
        snprintf(b->err, b->err_size,
                 "pipeline.served_shadow_fields: at most %d, not %zu",
                 LD_SERVED_SHADOW_MAX, conf->served_shadow_fields.n);
        return -1;
    }
    for (size_t i = 0; i < conf->served_shadow_fields.n; i++) {
        const char *e = conf->served_shadow_fields.v[i];
        const char *colon = strchr(e, ':');
        if (!colon || colon == e || !colon[1]) {
            snprintf(b->err, b->err_size,
                     "pipeline.served_shadow_fields[%zu]: '%s' is not "
                     "variant:field",
                     i, e);
            return -1;
        }
        int32_t sl = slot_add(fm, colon + 1, &b->cap);
        if (sl < 0)
            return nomem(b);
        fm->served_shadow_slot[fm->nserved_shadow++] = sl;
    }
    return 0;
}

/* The key, time and label slots. */
static int build_scalars(build_t *b, const ld_pipeline_conf_t *conf,
                         ld_record_kind_t kind, int pb_canonical)
{
    ld_fmap_t *fm = b->fm;
    const char *keyf = conf->key_field ? conf->key_field : "";
    if (*keyf) {
        if ((fm->key_slot =
                 slot_add(fm, pb_canonical ? "event_id" : keyf, &b->cap)) < 0)
            return nomem(b);
    }
    if (conf->time_source == LD_TIME_FIELD) {
        const char *tf = kind == LD_RECORD_EVENT ? conf->event_time_field
                                                 : conf->label_time_field;
        if (pb_canonical)
            tf = "time_ms";
        if (!tf || !*tf) {
            snprintf(b->err, b->err_size,
                     "pipeline.%s_time_field: empty with time_source field",
                     kind == LD_RECORD_EVENT ? "event" : "label");
            return -1;
        }
        if ((fm->time_slot = slot_add(fm, tf, &b->cap)) < 0)
            return nomem(b);
    }
    if (kind == LD_RECORD_LABEL && conf->label_mode != LD_LABEL_PRESENCE) {
        const char *lf = pb_canonical ? "value" : conf->label_field;
        if (!lf || !*lf) {
            snprintf(b->err, b->err_size,
                     "pipeline.label_field: empty with label_mode %s",
                     conf->label_mode == LD_LABEL_EQUALS ? "equals"
                                                         : "numeric");
            return -1;
        }
        /* "" matches no real label text, so every labels-topic record
         * would be no label and the model would see only default_neg:
         * a missing label_equals, not a choice (docs/LABELING.md). */
        if (conf->label_mode == LD_LABEL_EQUALS &&
            (!conf->label_equals || !*conf->label_equals)) {
            snprintf(b->err, b->err_size,
                     "pipeline.label_equals: empty with label_mode equals "
                     "(no label record could be a 1: give the text of a "
                     "positive, e.g. click)");
            return -1;
        }
        if ((fm->label_slot = slot_add(fm, lf, &b->cap)) < 0)
            return nomem(b);
        fm->label_equals = strdup(conf->label_equals ? conf->label_equals : "");
        if (!fm->label_equals)
            return nomem(b);
    }
    return 0;
}

/* The dense block, in config order. */
static int build_dense(build_t *b, const ld_pipeline_conf_t *conf)
{
    ld_fmap_t *fm = b->fm;
    fm->ndense = (uint32_t)conf->dense_fields.n;
    fm->dense_slot = calloc(fm->ndense + 1, sizeof(*fm->dense_slot));
    fm->dense = calloc(fm->ndense + 1, sizeof(*fm->dense));
    if (!fm->dense_slot || !fm->dense)
        return nomem(b);
    for (uint32_t i = 0; i < fm->ndense; i++) {
        const char *f = conf->dense_fields.v[i];
        if (!*f) {
            snprintf(b->err, b->err_size,
                     "pipeline.dense_fields[%u]: empty name", i);
            return -1;
        }
        if ((fm->dense_slot[i] = slot_add(fm, f, &b->cap)) < 0)
            return nomem(b);
        if ((i && text_add(b, ",") < 0) || text_add(b, f) < 0)
            return nomem(b);
    }
    return 0;
}

/* The hashed fields and their namespaces. */
static int build_hashed(build_t *b, const ld_pipeline_conf_t *conf)
{
    ld_fmap_t *fm = b->fm;
    uint32_t nh = (uint32_t)conf->hash_fields.n;
    b->nsn = calloc(nh + 1, sizeof(*b->nsn));
    b->hns = calloc(nh + 1, sizeof(*b->hns));
    b->hslot = calloc(nh + 1, sizeof(*b->hslot));
    fm->hash = calloc(nh + 1, sizeof(*fm->hash));
    if (!b->nsn || !b->hns || !b->hslot || !fm->hash)
        return nomem(b);
    for (uint32_t i = 0; i < nh; i++) {
        const char *e = conf->hash_fields.v[i];
        const char *colon = strchr(e, ':');
        const char *field = colon ? colon + 1 : e;
        size_t nslen = colon ? (size_t)(colon - e) : strlen(e);
        if (!*field || nslen == 0) {
            snprintf(b->err, b->err_size,
                     "pipeline.hash_fields[%u]: '%s' is not field or "
                     "namespace:field",
                     i, e);
            return -1;
        }
        int ns = ns_index(b->nsn, fm->nns, e, nslen);
        if (ns < 0) {
            b->nsn[fm->nns] = strndup(e, nslen);
            if (!b->nsn[fm->nns])
                return nomem(b);
            ns = (int)fm->nns++;
        }
        if ((b->hslot[i] = slot_add(fm, field, &b->cap)) < 0)
            return nomem(b);
        for (uint32_t j = 0; j < i; j++)
            if (b->hslot[j] == b->hslot[i] && b->hns[j] == (uint32_t)ns) {
                snprintf(b->err, b->err_size,
                         "pipeline.hash_fields[%u]: '%s' listed twice", i, e);
                return -1;
            }
        b->hns[i] = (uint32_t)ns;
    }
    /* Group by namespace (first appearance), config order inside. */
    if (text_add(b, "\nhash=") < 0)
        return nomem(b);
    for (uint32_t ns = 0; ns < fm->nns; ns++) {
        uint32_t ns_seed =
            ld_hash_murmur3_32(b->nsn[ns], strlen(b->nsn[ns]), fm->seed);
        for (uint32_t i = 0; i < nh; i++) {
            if (b->hns[i] != ns)
                continue;
            const char *fname = fm->names[b->hslot[i]];
            hfield_t *h = &fm->hash[fm->nhash++];
            h->slot = b->hslot[i];
            h->ns = ns;
            h->seed = ld_hash_murmur3_32(fname, strlen(fname), ns_seed);
            if ((fm->nhash > 1 && text_add(b, ",") < 0) ||
                text_add(b, b->nsn[ns]) < 0 || text_add(b, ":") < 0 ||
                text_add(b, fname) < 0)
                return nomem(b);
        }
    }
    return 0;
}

/* The namespaces of crosses[c] (e) into fm->cross_ns from *k on. */
static int build_cross(build_t *b, uint32_t c, const char *e, uint32_t *k)
{
    ld_fmap_t *fm = b->fm;
    uint32_t width = 0;
    for (const char *p = e;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        while (n && *p == ' ')
            p++, n--;
        while (n && p[n - 1] == ' ')
            n--;
        int ns = ns_index(b->nsn, fm->nns, p, n);
        if (ns < 0) {
            /* Name the namespaces there are: a typo in hash_fields
             * shows here first, before the schema check would
             * name it. */
            int w = snprintf(b->err, b->err_size,
                             "pipeline.crosses[%u]: '%.*s' is not a "
                             "namespace of hash_fields (",
                             c, (int)n, p);
            for (uint32_t i = 0;
                 i < fm->nns && w > 0 && (size_t)w < b->err_size; i++)
                w += snprintf(b->err + w, b->err_size - (size_t)w, "%s%s",
                              i ? ", " : "", b->nsn[i]);
            if (w > 0 && (size_t)w < b->err_size)
                snprintf(b->err + w, b->err_size - (size_t)w, ")");
            return -1;
        }
        if (width == MAX_CROSS_WIDTH) {
            snprintf(b->err, b->err_size,
                     "pipeline.crosses[%u]: more than %d namespaces", c,
                     MAX_CROSS_WIDTH);
            return -1;
        }
        fm->cross_ns[(*k)++] = (uint32_t)ns;
        fm->ns_cross[ns] = 1;
        width++;
        if (!comma)
            break;
        p = comma + 1;
    }
    if (width < 2) {
        snprintf(b->err, b->err_size,
                 "pipeline.crosses[%u]: '%s' needs two or more "
                 "namespaces, as [a, b]",
                 c, e);
        return -1;
    }
    return 0;
}

/* The crosses, each a list of hash_fields namespaces. */
static int build_crosses(build_t *b, const ld_pipeline_conf_t *conf)
{
    ld_fmap_t *fm = b->fm;
    fm->ncross = (uint32_t)conf->crosses.n;
    fm->cross_off = calloc(fm->ncross + 1, sizeof(*fm->cross_off));
    fm->cross_ns =
        calloc(fm->ncross * MAX_CROSS_WIDTH + 1, sizeof(*fm->cross_ns));
    fm->ns_cross = calloc(fm->nns + 1, sizeof(*fm->ns_cross));
    if (!fm->cross_off || !fm->cross_ns || !fm->ns_cross)
        return nomem(b);
    if (text_add(b, "\ncross=") < 0)
        return nomem(b);
    uint32_t k = 0;
    for (uint32_t c = 0; c < fm->ncross; c++) {
        fm->cross_off[c] = k;
        if (build_cross(b, c, conf->crosses.v[c], &k) < 0)
            return -1;
        if (c && text_add(b, ";") < 0)
            return nomem(b);
        for (uint32_t j = fm->cross_off[c]; j < k; j++)
            if ((j > fm->cross_off[c] && text_add(b, ",") < 0) ||
                text_add(b, b->nsn[fm->cross_ns[j]]) < 0)
                return nomem(b);
    }
    fm->cross_off[fm->ncross] = k;
    return 0;
}

/* The lookup table and the per-record buffers. */
static int build_buffers(build_t *b)
{
    ld_fmap_t *fm = b->fm;
    if (table_build(fm) < 0)
        return nomem(b);
    fm->fv = calloc(fm->nslots + 1, sizeof(*fm->fv));
    fm->idx = calloc(fm->max_features + 1, sizeof(*fm->idx));
    fm->val = calloc(fm->max_features + 1, sizeof(*fm->val));
    fm->hfull = calloc(fm->max_features + 1, sizeof(*fm->hfull));
    fm->ns_start = calloc(fm->nns + 2, sizeof(*fm->ns_start));
    fm->keycap = 256;
    fm->keybuf = malloc(fm->keycap);
    if (!fm->fv || !fm->idx || !fm->val || !fm->hfull || !fm->ns_start ||
        !fm->keybuf)
        return nomem(b);
    /* every hashed feature has value 1.0: written once, here */
    for (uint32_t i = 0; i < fm->max_features; i++)
        fm->val[i] = 1.0f;
    return 0;
}

static int build(build_t *b, const ld_pipeline_conf_t *conf,
                 ld_record_kind_t kind, int pb_canonical)
{
    if (build_scalars(b, conf, kind, pb_canonical) < 0)
        return -1;
    if (text_add(b, "hash=" LD_HASH_NAME) < 0)
        return nomem(b);
    char line[64];
    snprintf(line, sizeof(line), " seed=%u bits=%u\ndense=", b->fm->seed,
             (unsigned)conf->hash_bits);
    if (text_add(b, line) < 0)
        return nomem(b);
    if (kind == LD_RECORD_EVENT &&
        (build_dense(b, conf) < 0 || build_hashed(b, conf) < 0 ||
         build_crosses(b, conf) < 0))
        return -1;
    if (build_served(b, conf) < 0)
        return -1;
    if (text_add(b, "\n") < 0)
        return nomem(b);
    b->fm->map_text = b->text;
    b->text = NULL;
    return build_buffers(b);
}

ld_fmap_t *ld_fmap_new(const ld_pipeline_conf_t *conf, ld_record_kind_t kind,
                       int pb_canonical, char *errstr, size_t errstr_size)
{
    if (conf->hash_bits < 1 || conf->hash_bits > 30) {
        snprintf(errstr, errstr_size, "hash_bits %lld is outside [1, 30]",
                 (long long)conf->hash_bits);
        return NULL;
    }
    build_t b = {.err = errstr, .err_size = errstr_size};
    ld_fmap_t *fm = b.fm = calloc(1, sizeof(*fm));
    if (!fm) {
        nomem(&b);
        return NULL;
    }
    fm->kind = kind;
    fm->key_slot = fm->time_slot = fm->label_slot = -1;
    fm->label_mode = conf->label_mode;
    fm->mask = (uint32_t)((1ull << conf->hash_bits) - 1);
    fm->seed = (uint32_t)conf->hash_seed;
    fm->max_features = (uint32_t)conf->max_features;
    fm->max_future_ms = conf->max_future_ms;
    int bad = build(&b, conf, kind, pb_canonical);
    if (b.nsn)
        for (uint32_t i = 0; i < fm->nns; i++)
            free(b.nsn[i]);
    free(b.nsn);
    free(b.hns);
    free(b.hslot);
    free(b.text);
    if (bad) {
        ld_fmap_destroy(fm);
        return NULL;
    }
    return fm;
}

void ld_fmap_destroy(ld_fmap_t *fm)
{
    if (!fm)
        return;
    for (uint32_t i = 0; i < fm->nslots; i++)
        free(fm->names[i]);
    free(fm->names);
    free(fm->name_len);
    free(fm->table);
    free(fm->label_equals);
    free(fm->dense_slot);
    free(fm->hash);
    free(fm->ns_cross);
    free(fm->cross_off);
    free(fm->cross_ns);
    free(fm->map_text);
    free(fm->fv);
    free(fm->strs);
    free(fm->idx);
    free(fm->val);
    free(fm->hfull);
    free(fm->ns_start);
    free(fm->dense);
    free(fm->keybuf);
    free(fm);
}

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
        uint32_t at[MAX_CROSS_WIDTH], st[MAX_CROSS_WIDTH];
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
