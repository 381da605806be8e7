/* SPDX-License-Identifier: Apache-2.0 */
/* Field mapping, built once: config names to slots (key, time, label,
 * dense, hashed namespaces, crosses, served-decision fields) and the
 * feature-map text the model's lineage names. fmap.c maps records with it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/hash.h"
#include "pipeline/internal.h"

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
        if (width == LD_FMAP_CROSS_MAX) {
            snprintf(b->err, b->err_size,
                     "pipeline.crosses[%u]: more than %d namespaces", c,
                     LD_FMAP_CROSS_MAX);
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
        calloc(fm->ncross * LD_FMAP_CROSS_MAX + 1, sizeof(*fm->cross_ns));
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
