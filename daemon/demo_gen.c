/* SPDX-License-Identifier: Apache-2.0 */
/* Deterministic synthetic ad-click stream for the embedded demo. */
#include "daemon/demo.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define N_DENSE     20
#define N_COUNTRY   40
#define N_AD        500
#define N_DEVICE    4
#define N_PUBLISHER 200
#define N_TAG       50
#define MAX_RECORD  1024

static const char *const devices[N_DEVICE] = {"desktop", "mobile", "tablet",
                                              "tv"};

/* A click waiting for the event clock to pass its time. */
typedef struct pending {
    int64_t time_ms;
    int64_t index;
} pending_t;

/* Ground-truth weights of the logistic click model. */
typedef struct truth {
    double bias;
    double dense[N_DENSE];
    double country[N_COUNTRY], ad[N_AD], device[N_DEVICE];
    double publisher[N_PUBLISHER], tag[N_TAG];
} truth_t;

struct ld_demo_gen {
    ld_demo_gen_conf_t conf;
    uint64_t rng[4];
    truth_t truth;
    int64_t next_event;
    pending_t *heap; /* min-heap on (time_ms, index) */
    size_t nheap, capheap;
    ld_demo_gen_stats_t stats;
    int failed;
    char key[32];
    uint8_t buf[MAX_RECORD];
    /* An event held back so that its label goes first: the events topic
     * lags the labels topic a little (less than max_out_of_orderness). */
    int held, just_held;
    int64_t held_until;
    ld_demo_record_t held_rec;
    char held_key[32];
    uint8_t held_buf[MAX_RECORD];
};

/* xoshiro256** seeded by splitmix64: fast, and the same on every platform. */
static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t next_u64(uint64_t *s)
{
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

static double uniform(uint64_t *s)
{
    return (double)(next_u64(s) >> 11) * 0x1.0p-53;
}

static double gaussian(uint64_t *s)
{
    double u = uniform(s), v = uniform(s);
    return sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v);
}

static void seed_rng(uint64_t *s, uint64_t seed)
{
    for (int i = 0; i < 4; i++) {
        uint64_t z = (seed += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        s[i] = z ^ (z >> 31);
    }
}

static void fill(uint64_t *s, double *w, int n, double sd)
{
    for (int i = 0; i < n; i++)
        w[i] = gaussian(s) * sd;
}

static void draw_truth(ld_demo_gen_t *g)
{
    truth_t *t = &g->truth;
    t->bias = -1.6;
    fill(g->rng, t->dense, 8, 0.35); /* f8..f19 carry no signal */
    fill(g->rng, t->country, N_COUNTRY, 0.4);
    fill(g->rng, t->ad, N_AD, 0.9);
    fill(g->rng, t->device, N_DEVICE, 0.3);
    fill(g->rng, t->publisher, N_PUBLISHER, 0.6);
    fill(g->rng, t->tag, N_TAG, 0.3);
}

/* The concept drift: creatives and publishers change appeal and the dense
 * signal turns around, so a model frozen before it is wrong after it. */
static void drift_truth(ld_demo_gen_t *g)
{
    truth_t *t = &g->truth;
    fill(g->rng, t->ad, N_AD, 0.9);
    fill(g->rng, t->publisher, N_PUBLISHER, 0.6);
    for (int i = 0; i < N_DENSE; i++)
        t->dense[i] = -t->dense[i];
}

/* ---- Avro binary encoding ----------------------------------------------- */

typedef struct wbuf {
    uint8_t *p;
    size_t len;
} wbuf_t;

static void put_long(wbuf_t *b, int64_t v)
{
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    while (z >= 0x80) {
        b->p[b->len++] = (uint8_t)(z | 0x80);
        z >>= 7;
    }
    b->p[b->len++] = (uint8_t)z;
}

static void put_str(wbuf_t *b, const char *s)
{
    size_t n = strlen(s);
    put_long(b, (int64_t)n);
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void put_float(wbuf_t *b, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    for (int i = 0; i < 4; i++)
        b->p[b->len++] = (uint8_t)(u >> (8 * i));
}

static void put_double(wbuf_t *b, double d)
{
    uint64_t u;
    memcpy(&u, &d, 8);
    for (int i = 0; i < 8; i++)
        b->p[b->len++] = (uint8_t)(u >> (8 * i));
}

/* ---- Pending-click heap ------------------------------------------------- */

static int before(const pending_t *a, const pending_t *b)
{
    return a->time_ms < b->time_ms ||
           (a->time_ms == b->time_ms && a->index < b->index);
}

static int heap_push(ld_demo_gen_t *g, pending_t p)
{
    if (g->nheap == g->capheap) {
        size_t cap = g->capheap ? g->capheap * 2 : 1024;
        pending_t *h = realloc(g->heap, cap * sizeof(*h));
        if (!h)
            return -1;
        g->heap = h;
        g->capheap = cap;
    }
    size_t i = g->nheap++;
    g->heap[i] = p;
    while (i > 0 && before(&g->heap[i], &g->heap[(i - 1) / 2])) {
        pending_t t = g->heap[i];
        g->heap[i] = g->heap[(i - 1) / 2];
        g->heap[(i - 1) / 2] = t;
        i = (i - 1) / 2;
    }
    return 0;
}

static pending_t heap_pop(ld_demo_gen_t *g)
{
    pending_t top = g->heap[0];
    g->heap[0] = g->heap[--g->nheap];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < g->nheap && before(&g->heap[l], &g->heap[m]))
            m = l;
        if (r < g->nheap && before(&g->heap[r], &g->heap[m]))
            m = r;
        if (m == i)
            break;
        pending_t t = g->heap[i];
        g->heap[i] = g->heap[m];
        g->heap[m] = t;
        i = m;
    }
    return top;
}

/* ---- Generator ---------------------------------------------------------- */

ld_demo_gen_t *ld_demo_gen_new(const ld_demo_gen_conf_t *conf)
{
    ld_demo_gen_t *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    g->conf = *conf;
    seed_rng(g->rng, conf->seed);
    draw_truth(g);
    return g;
}

void ld_demo_gen_destroy(ld_demo_gen_t *g)
{
    if (!g)
        return;
    free(g->heap);
    free(g);
}

static int64_t event_time(const ld_demo_gen_t *g, int64_t i)
{
    return g->conf.start_time_ms + i * g->conf.step_ms;
}

static void emit_label(ld_demo_gen_t *g, pending_t p, ld_demo_record_t *out)
{
    wbuf_t b = {g->buf, 0};
    snprintf(g->key, sizeof(g->key), "ev-%09lld", (long long)p.index);
    put_str(&b, g->key);
    put_long(&b, p.time_ms);
    b.p[b.len++] = 1;    /* clicked */
    put_double(&b, 0.0); /* value */
    *out = (ld_demo_record_t){1, g->key, p.time_ms, g->buf, b.len, p.index};
    g->stats.labels++;
}

static void emit_event(ld_demo_gen_t *g, ld_demo_record_t *out)
{
    int64_t i = g->next_event++;
    if (i == g->conf.drift_at)
        drift_truth(g);
    uint64_t *s = g->rng;
    const truth_t *t = &g->truth;
    int64_t ts = event_time(g, i);
    float x[N_DENSE];
    double logit = t->bias;
    /* After the drift the traffic changes too (covariate shift): the first
     * dense signals move and other creatives become the popular ones. */
    int after = i >= g->conf.drift_at;
    for (int k = 0; k < N_DENSE; k++) {
        x[k] = (float)gaussian(s) + (after && k < 4 ? 0.75f : 0.0f);
        logit += t->dense[k] * x[k];
    }
    /* Skewed picks: popular ads and publishers dominate, as in real logs. */
    int country = (int)(uniform(s) * uniform(s) * N_COUNTRY);
    int ad = (int)(uniform(s) * uniform(s) * N_AD);
    if (after)
        ad = N_AD - 1 - ad;
    int device = (int)(uniform(s) * N_DEVICE);
    int publisher = (int)(uniform(s) * uniform(s) * N_PUBLISHER);
    int ntags = (int)(uniform(s) * 4);
    int tags[3];
    for (int k = 0; k < ntags; k++) {
        tags[k] = (int)(uniform(s) * N_TAG);
        logit += t->tag[tags[k]];
    }
    logit += t->country[country] + t->ad[ad] + t->device[device] +
             t->publisher[publisher];
    int has_segment = uniform(s) < 0.7;
    int segment = (int)(uniform(s) * 8);

    wbuf_t b = {g->buf, 0};
    snprintf(g->key, sizeof(g->key), "ev-%09lld", (long long)i);
    put_str(&b, g->key);
    put_long(&b, ts);
    for (int k = 0; k < N_DENSE; k++)
        put_float(&b, x[k]);
    char tmp[32];
    snprintf(tmp, sizeof(tmp), "C%02d", country);
    put_str(&b, tmp);
    snprintf(tmp, sizeof(tmp), "ad-%d", ad);
    put_str(&b, tmp);
    put_str(&b, devices[device]);
    snprintf(tmp, sizeof(tmp), "pub-%d", publisher);
    put_str(&b, tmp);
    if (has_segment) {
        put_long(&b, 1);
        snprintf(tmp, sizeof(tmp), "seg-%d", segment);
        put_str(&b, tmp);
    } else {
        put_long(&b, 0);
    }
    if (ntags) {
        put_long(&b, ntags);
        for (int k = 0; k < ntags; k++) {
            snprintf(tmp, sizeof(tmp), "topic-%d", tags[k]);
            put_str(&b, tmp);
        }
    }
    put_long(&b, 0);

    double p = 1.0 / (1.0 + exp(-logit));
    if (g->conf.served_lift > 0) {
        /* the variant from the index alone: the feature draws above stay
         * those of the stream without variants */
        int v2 = (((uint64_t)i * 0x9e3779b97f4a7c15ull) >> 63) != 0;
        if (v2)
            p = fmin(1.0, p * (1.0 + g->conf.served_lift));
        put_str(&b, v2 ? "v2" : "v1");
        put_float(&b, (float)p);
    }
    int early = 0;
    if (uniform(s) < p) {
        double delay = -log(1.0 - uniform(s)) * g->conf.label_delay_ms;
        early = !g->held && uniform(s) < g->conf.early_label_share;
        if (early)
            delay = uniform(s) * 400.0; /* a quick click, seen first */
        if (heap_push(g, (pending_t){ts + 1 + (int64_t)delay, i}))
            g->failed = 1;
    }
    *out = (ld_demo_record_t){0, g->key, ts, g->buf, b.len, i};
    g->stats.events++;
    g->just_held = early;
    if (early) {
        memcpy(g->held_buf, g->buf, b.len);
        memcpy(g->held_key, g->key, sizeof(g->key));
        g->held_rec = *out;
        g->held_rec.key = g->held_key;
        g->held_rec.value = g->held_buf;
        g->held = 1;
        for (size_t k = 0; k < g->nheap; k++)
            if (g->heap[k].index == i)
                g->held_until = g->heap[k].time_ms;
    }
}

int ld_demo_gen_next(ld_demo_gen_t *g, ld_demo_record_t *out)
{
    for (;;) {
        if (g->failed)
            return -1;
        int more = g->next_event < g->conf.n_events;
        int64_t t_event = more ? event_time(g, g->next_event) : INT64_MAX;
        int64_t t_held = g->held ? g->held_until : INT64_MAX;
        int64_t t_label = g->nheap ? g->heap[0].time_ms : INT64_MAX;
        if (g->nheap && t_label <= t_event && t_label <= t_held) {
            emit_label(g, heap_pop(g), out); /* a label goes first at ties */
            return 1;
        }
        if (g->held && t_held <= t_event) {
            *out = g->held_rec;
            g->held = 0;
            return 1;
        }
        if (!more)
            return 0;
        emit_event(g, out);
        if (g->failed)
            return -1;
        if (!g->just_held)
            return 1;
        /* This event is held: pick again (its label comes first). */
    }
}

void ld_demo_gen_stats(const ld_demo_gen_t *g, ld_demo_gen_stats_t *out)
{
    *out = g->stats;
}
