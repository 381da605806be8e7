/* SPDX-License-Identifier: Apache-2.0 */
/* Accumulates offset ranges and watermark advances between publications. */
#include "publish/publish.h"

#include <stdlib.h>
#include <string.h>

typedef struct range {
    const char *topic;
    int32_t partition;
    int64_t first, last;
} range_t;

typedef struct advance {
    const char *topic;
    int32_t partition;
    int64_t offset; /* the partition's next offset when it was applied */
    int64_t wall_ms, watermark_ms;
} advance_t;

#define CACHE 256 /* a power of two */

struct ld_lineage {
    range_t *r;
    size_t nr, capr;
    /* index + 1 of the range last used for (topic pointer, partition) in
     * each slot: the pipeline hands out one pointer per topic, and reading
     * by time switches partition at almost every record */
    uint32_t cache[CACHE];
    advance_t *a;
    size_t na, capa;
    /* input that did not become an example: since the last take, total */
    uint64_t dead, late, dead_total, late_total;
};

ld_lineage_t *ld_lineage_new(void)
{
    return calloc(1, sizeof(ld_lineage_t));
}

void ld_lineage_destroy(ld_lineage_t *l)
{
    if (!l)
        return;
    free(l->r);
    free(l->a);
    free(l);
}

static range_t *find(ld_lineage_t *l, const char *topic, int32_t partition)
{
    uint32_t *slot = &l->cache[((uint32_t)partition * 2u +
                                (uint32_t)((uintptr_t)topic >> 4)) &
                               (CACHE - 1)];
    if (*slot && l->r[*slot - 1].partition == partition &&
        l->r[*slot - 1].topic == topic)
        return &l->r[*slot - 1];
    for (size_t i = 0; i < l->nr; i++)
        if (l->r[i].partition == partition &&
            strcmp(l->r[i].topic, topic) == 0) {
            *slot = (uint32_t)i + 1;
            return &l->r[i];
        }
    if (l->nr == l->capr) {
        size_t cap = l->capr ? l->capr * 2 : 16;
        range_t *g = realloc(l->r, cap * sizeof(*g));
        if (!g)
            return NULL;
        l->r = g;
        l->capr = cap;
    }
    *slot = (uint32_t)l->nr + 1;
    l->r[l->nr] = (range_t){topic, partition, -1, -1};
    return &l->r[l->nr++];
}

void ld_lineage_consumed(ld_lineage_t *l, const char *topic, int32_t partition,
                         int64_t offset)
{
    range_t *r = find(l, topic, partition);
    if (!r)
        return; /* lineage is informational: never stop training for it */
    if (r->first < 0 || offset < r->first)
        r->first = offset;
    if (offset > r->last)
        r->last = offset;
}

void ld_lineage_advance(ld_lineage_t *l, const char *topic, int32_t partition,
                        int64_t offset, int64_t wall_ms, int64_t watermark_ms)
{
    if (l->na == l->capa) {
        size_t cap = l->capa ? l->capa * 2 : 8;
        advance_t *g = realloc(l->a, cap * sizeof(*g));
        if (!g)
            return;
        l->a = g;
        l->capa = cap;
    }
    l->a[l->na++] =
        (advance_t){topic, partition, offset, wall_ms, watermark_ms};
}

void ld_lineage_count(ld_lineage_t *l, uint64_t dead_lettered,
                      uint64_t late_labels_dropped)
{
    l->dead += dead_lettered;
    l->late += late_labels_dropped;
    l->dead_total += dead_lettered;
    l->late_total += late_labels_dropped;
}

void ld_lineage_set_totals(ld_lineage_t *l, uint64_t dead_lettered,
                           uint64_t late_labels_dropped)
{
    l->dead_total = dead_lettered;
    l->late_total = late_labels_dropped;
}

void ld_lineage_pb_free(Learnd__V1__Lineage *m)
{
    if (!m)
        return;
    free(m->counts);
    free(m->total_counts);
    for (size_t i = 0; i < m->n_consumed; i++)
        free(m->consumed[i]);
    free(m->consumed);
    for (size_t i = 0; i < m->n_resume; i++)
        free(m->resume[i]);
    free(m->resume);
    for (size_t i = 0; i < m->n_watermark_advances; i++) {
        if (m->watermark_advances[i]) {
            free(m->watermark_advances[i]->at ? m->watermark_advances[i]->at[0]
                                              : NULL);
            free(m->watermark_advances[i]->at);
        }
        free(m->watermark_advances[i]);
    }
    free(m->watermark_advances);
    free(m);
}

Learnd__V1__Lineage *
ld_lineage_take(ld_lineage_t *l, const Learnd__V1__PartitionPosition *resume,
                size_t n)
{
    Learnd__V1__Lineage *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    learnd__v1__lineage__init(m);
    size_t nc = 0;
    for (size_t i = 0; i < l->nr; i++)
        nc += l->r[i].first >= 0;
    m->consumed = calloc(nc ? nc : 1, sizeof(*m->consumed));
    m->resume = calloc(n ? n : 1, sizeof(*m->resume));
    m->watermark_advances =
        calloc(l->na ? l->na : 1, sizeof(*m->watermark_advances));
    m->counts = malloc(sizeof(*m->counts));
    m->total_counts = malloc(sizeof(*m->total_counts));
    if (!m->consumed || !m->resume || !m->watermark_advances || !m->counts ||
        !m->total_counts)
        goto nomem;
    learnd__v1__example_counts__init(m->counts);
    learnd__v1__example_counts__init(m->total_counts);
    m->counts->dead_lettered = l->dead;
    m->counts->late_labels_dropped = l->late;
    m->total_counts->dead_lettered = l->dead_total;
    m->total_counts->late_labels_dropped = l->late_total;
    for (size_t i = 0; i < l->nr; i++) {
        if (l->r[i].first < 0)
            continue;
        Learnd__V1__OffsetRange *o = malloc(sizeof(*o));
        if (!o)
            goto nomem;
        learnd__v1__offset_range__init(o);
        o->topic = (char *)l->r[i].topic;
        o->partition = l->r[i].partition;
        o->first_offset = l->r[i].first;
        o->last_offset = l->r[i].last;
        m->consumed[m->n_consumed++] = o;
    }
    for (size_t i = 0; i < n; i++) {
        Learnd__V1__PartitionPosition *p = malloc(sizeof(*p));
        if (!p)
            goto nomem;
        *p = resume[i];
        m->resume[m->n_resume++] = p;
    }
    for (size_t i = 0; i < l->na; i++) {
        Learnd__V1__WatermarkAdvance *a = malloc(sizeof(*a));
        if (!a)
            goto nomem;
        learnd__v1__watermark_advance__init(a);
        a->topic = (char *)l->a[i].topic;
        a->partition = l->a[i].partition;
        a->wall_time_ms = l->a[i].wall_ms;
        a->watermark_ms = l->a[i].watermark_ms;
        m->watermark_advances[m->n_watermark_advances++] = a;
        /* Only the idle partition's own offset: the join's output does not
         * depend on how the partitions interleave, so a replay applies the
         * advance when it has read that partition up to there. */
        a->at = calloc(1, sizeof(*a->at));
        Learnd__V1__PartitionOffset *at = a->at ? malloc(sizeof(*at)) : NULL;
        if (!at)
            goto nomem;
        learnd__v1__partition_offset__init(at);
        at->topic = (char *)l->a[i].topic;
        at->partition = l->a[i].partition;
        at->offset = l->a[i].offset;
        a->at[0] = at;
        a->n_at = 1;
    }
    for (size_t i = 0; i < l->nr; i++)
        l->r[i].first = l->r[i].last = -1;
    l->na = 0;
    l->dead = l->late = 0;
    return m;
nomem:
    ld_lineage_pb_free(m);
    return NULL;
}

/* Saved form, little-endian: count, then per range: topic (length byte +
 * name), partition, first, last; then (since advances are kept across a
 * restart; absent in older states) count, then per advance: topic,
 * partition, offset, wall_ms, watermark_ms; then (absent in older states)
 * dead_lettered and late_labels_dropped since the last take, and their
 * totals, 8 bytes each. */
static void put(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

#define REC        21 /* 1 + 4 + 8 + 8 */
#define ADV_REC    29 /* 1 + 4 + 8 + 8 + 8 */
#define COUNTS_LEN 32 /* 4 x 8 */

static size_t put_topic(uint8_t *b, const char *topic)
{
    size_t tl = strlen(topic);
    if (tl > 255)
        tl = 255;
    b[0] = (uint8_t)tl;
    memcpy(b + 1, topic, tl);
    return 1 + tl;
}

ld_err_t ld_lineage_save(const ld_lineage_t *l, uint8_t **out, size_t *len)
{
    size_t n = 0;
    for (size_t i = 0; i < l->nr; i++)
        n += l->r[i].first >= 0;
    uint8_t *b =
        malloc(8 + n * (REC + 256) + l->na * (ADV_REC + 256) + COUNTS_LEN);
    if (!b)
        return LD_ERR_NOMEM;
    size_t o = 4;
    put(b, n, 4);
    for (size_t i = 0; i < l->nr; i++) {
        const range_t *r = &l->r[i];
        if (r->first < 0)
            continue;
        o += put_topic(b + o, r->topic);
        put(b + o, (uint32_t)r->partition, 4);
        put(b + o + 4, (uint64_t)r->first, 8);
        put(b + o + 12, (uint64_t)r->last, 8);
        o += 20;
    }
    put(b + o, l->na, 4);
    o += 4;
    for (size_t i = 0; i < l->na; i++) {
        const advance_t *a = &l->a[i];
        o += put_topic(b + o, a->topic);
        put(b + o, (uint32_t)a->partition, 4);
        put(b + o + 4, (uint64_t)a->offset, 8);
        put(b + o + 12, (uint64_t)a->wall_ms, 8);
        put(b + o + 20, (uint64_t)a->watermark_ms, 8);
        o += 28;
    }
    put(b + o, l->dead, 8);
    put(b + o + 8, l->late, 8);
    put(b + o + 16, l->dead_total, 8);
    put(b + o + 24, l->late_total, 8);
    o += COUNTS_LEN;
    *out = b;
    *len = o;
    return LD_OK;
}

/* The configured topic named at buf[*o] (NULL: not configured now), and
 * *o past the name; -1 when fewer than need bytes follow the name. */
static int get_topic(const char *const *topics, size_t ntopics,
                     const uint8_t *buf, size_t len, size_t *o, size_t need,
                     const char **topic)
{
    if (*o >= len)
        return -1;
    size_t tl = buf[(*o)++];
    if (tl > len - *o || need > len - *o - tl)
        return -1;
    *topic = NULL;
    for (size_t k = 0; k < ntopics && !*topic; k++)
        if (strlen(topics[k]) == tl && memcmp(topics[k], buf + *o, tl) == 0)
            *topic = topics[k];
    *o += tl;
    return 0;
}

ld_err_t ld_lineage_load(ld_lineage_t *l, const char *const *topics,
                         size_t ntopics, const uint8_t *buf, size_t len)
{
    if (len < 4)
        return LD_ERR_CORRUPT;
    uint64_t n = get(buf, 4);
    size_t o = 4;
    for (uint64_t i = 0; i < n; i++) {
        const char *topic;
        if (get_topic(topics, ntopics, buf, len, &o, 20, &topic))
            return LD_ERR_CORRUPT;
        int32_t part = (int32_t)get(buf + o, 4);
        int64_t first = (int64_t)get(buf + o + 4, 8);
        int64_t last = (int64_t)get(buf + o + 12, 8);
        o += 20;
        if (!topic)
            continue; /* a topic no longer configured */
        range_t *r = find(l, topic, part);
        if (!r)
            return LD_ERR_NOMEM;
        r->first = first;
        r->last = last;
    }
    if (o == len)
        return LD_OK; /* written before advances were kept */
    if (len - o < 4)
        return LD_ERR_CORRUPT;
    n = get(buf + o, 4);
    o += 4;
    for (uint64_t i = 0; i < n; i++) {
        const char *topic;
        if (get_topic(topics, ntopics, buf, len, &o, 28, &topic))
            return LD_ERR_CORRUPT;
        int32_t part = (int32_t)get(buf + o, 4);
        int64_t off = (int64_t)get(buf + o + 4, 8);
        int64_t wall = (int64_t)get(buf + o + 12, 8);
        int64_t wm = (int64_t)get(buf + o + 20, 8);
        o += 28;
        if (topic)
            ld_lineage_advance(l, topic, part, off, wall, wm);
    }
    if (o == len)
        return LD_OK; /* written before the counts were kept */
    if (len - o != COUNTS_LEN)
        return LD_ERR_CORRUPT;
    l->dead = get(buf + o, 8);
    l->late = get(buf + o + 8, 8);
    l->dead_total = get(buf + o + 16, 8);
    l->late_total = get(buf + o + 24, 8);
    return LD_OK;
}
