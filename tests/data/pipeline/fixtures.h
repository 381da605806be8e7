/* SPDX-License-Identifier: Apache-2.0 */
/* Readers of the pipeline fixtures (gen_fixtures.py) and the pipeline config
 * they were generated for; shared by the unit, integration, fuzz and bench
 * programs. Header-only, test code. */
#ifndef LD_TESTS_PIPELINE_FIXTURES_H
#define LD_TESTS_PIPELINE_FIXTURES_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/pipeline.h"

#ifndef LD_SOURCE_DIR
#error "LD_SOURCE_DIR must name the source tree"
#endif

#define FX_DIR    LD_SOURCE_DIR "/tests/data/pipeline"
#define FX_KDELIM "\xf1\xf2\xf3\xf4"
#define FX_DELIM  "\xf5\xf6\xf7\xf8"

typedef struct fx_rec {
    char *key;
    size_t klen;
    char *val;
    size_t vlen;
} fx_rec_t;

typedef struct fx_set {
    fx_rec_t *r;
    size_t n;
    char *buf;
} fx_set_t;

static inline char *fx_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)sz + 1);
    if (b && fread(b, 1, (size_t)sz, f) != (size_t)sz) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) {
        b[sz] = '\0';
        *len = (size_t)sz;
    }
    return b;
}

static inline void *fx_memmem(const char *h, size_t hn, const char *n,
                              size_t nn)
{
    for (size_t i = 0; i + nn <= hn; i++)
        if (memcmp(h + i, n, nn) == 0)
            return (void *)(h + i);
    return NULL;
}

/* Reads a kcat input file (key KDELIM value DELIM ...). Returns 0 or -1. */
static inline int fx_load_kcat(const char *path, fx_set_t *s)
{
    size_t len = 0;
    memset(s, 0, sizeof(*s));
    if (!(s->buf = fx_slurp(path, &len)))
        return -1;
    size_t cap = 16;
    s->r = malloc(cap * sizeof(*s->r));
    char *p = s->buf, *end = s->buf + len;
    while (p < end) {
        char *d = fx_memmem(p, (size_t)(end - p), FX_DELIM, 4);
        char *k = fx_memmem(p, (size_t)(end - p), FX_KDELIM, 4);
        if (!d || !k || k > d)
            return -1;
        if (s->n == cap)
            s->r = realloc(s->r, (cap *= 2) * sizeof(*s->r));
        fx_rec_t *r = &s->r[s->n++];
        r->key = p;
        r->klen = (size_t)(k - p);
        r->val = k + 4;
        r->vlen = (size_t)(d - k - 4);
        p = d + 4;
    }
    return 0;
}

/* Reads poison-avro.bin (u32 BE key length, key, u32 BE value length,
 * value, ...). Returns 0 or -1. */
static inline int fx_load_poison(const char *path, fx_set_t *s)
{
    size_t len = 0;
    memset(s, 0, sizeof(*s));
    if (!(s->buf = fx_slurp(path, &len)))
        return -1;
    s->r = calloc(64, sizeof(*s->r));
    unsigned char *p = (unsigned char *)s->buf, *end = p + len;
    while (p < end && s->n < 64) {
        fx_rec_t *r = &s->r[s->n++];
        size_t n =
            (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
        r->key = (char *)p + 4;
        r->klen = n;
        p += 4 + n;
        n = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
        r->val = (char *)p + 4;
        r->vlen = n;
        p += 4 + n;
    }
    return 0;
}

static inline void fx_free(fx_set_t *s)
{
    free(s->r);
    free(s->buf);
    memset(s, 0, sizeof(*s));
}

/* Sets one row of the pipeline section from text; returns 0 or -1. */
static inline int fx_set(ld_pipeline_conf_t *c, const char *name,
                         const char *text)
{
    char err[256];
    const ld_conf_row_t *row = ld_conf_find(&ld_pipeline_conf_section, name);
    if (!row || ld_conf_parse_value(row, text, c, err, sizeof(err))) {
        fprintf(stderr, "fx_set %s=%s: %s\n", name, text,
                row ? err : "no such row");
        return -1;
    }
    return 0;
}

/* The pipeline config the fixtures were generated for, in format fmt
 * ("avro", "protobuf", "json"). Caller frees with fx_conf_free(). */
static inline ld_pipeline_conf_t *fx_conf_new(const char *fmt)
{
    char err[256];
    ld_pipeline_conf_t *c = calloc(1, sizeof(*c));
    if (!c ||
        ld_conf_set_defaults(&ld_pipeline_conf_section, c, err, sizeof(err)))
        return NULL;
    /* "pbdesc": the JSON names read from users' own Protobuf messages
     * (tests/data/pipeline/pbdesc/shop.proto) */
    int pbd = strcmp(fmt, "pbdesc") == 0;
    const char *dense = strcmp(fmt, "json") == 0 || pbd
                            ? "f0,f1,f2,f3,f4,f5,f6,f7,f8,f9,f10,f11,f12,f13,"
                              "f14,f15,f16,f17,f18,m.f19"
                            : "f0,f1,f2,f3,f4,f5,f6,f7,f8,f9,f10,f11,f12,f13,"
                              "f14,f15,f16,f17,f18,f19";
    if (fx_set(c, "events_topic", "events") ||
        fx_set(c, "labels_topic", "labels") ||
        fx_set(c, "format", pbd ? "protobuf" : fmt) ||
        fx_set(c, "event_schema", LD_SOURCE_DIR "/schemas/event.avsc") ||
        fx_set(c, "label_schema", LD_SOURCE_DIR "/schemas/label.avsc") ||
        fx_set(c, "schema_ids",
               "1=" LD_SOURCE_DIR "/schemas/event.avsc,2=" LD_SOURCE_DIR
               "/schemas/label.avsc") ||
        fx_set(c, "key_field", "event_id") || fx_set(c, "hash_seed", "42") ||
        fx_set(c, "dense_fields", dense) ||
        fx_set(c, "hash_fields",
               "country,ad_id,device,ctx:publisher,ctx:tags,"
               "user:user_segment") ||
        fx_set(c, "label_field", "clicked") ||
        ld_conf_strlist_add(&c->crosses, "country,ad_id") ||
        ld_conf_strlist_add(&c->crosses, "device,user"))
        return NULL;
    c->hash_bits = 18;
#ifdef LD_SHOP_DESC
    if (pbd && (fx_set(c, "descriptor_set", LD_SHOP_DESC) ||
                fx_set(c, "event_message", "shop.v1.Impression") ||
                fx_set(c, "label_message", "shop.v1.Click")))
        return NULL;
#else
    if (pbd)
        return NULL; /* link ld_test_shop */
#endif
    return c;
}

static inline void fx_conf_free(ld_pipeline_conf_t *c)
{
    ld_conf_free(&ld_pipeline_conf_section, c);
    free(c);
}

#endif /* LD_TESTS_PIPELINE_FIXTURES_H */
