/* SPDX-License-Identifier: Apache-2.0 */
/* Decode rate of users' own Protobuf messages: learnd's descriptor-driven
 * decoder (pipeline/pbdesc.c, through ld_decoder_decode: decode, field
 * mapping, hashing, crosses) against protobuf-c's generic unpack of the
 * same bytes (protobuf_c_message_unpack with the generated descriptor of
 * shop.v1.Impression, then free_unpacked), with the default allocator and
 * with a bump arena reset per message. Messages: the 200 fixture events of
 * tests/data/pipeline as shop.v1.Impression (events-pbdesc.kcat: Timestamp,
 * 19 floats, nested message, 3 strings, enum, wrapper, repeated string).
 * Rates are per second of this thread's CPU time. Text only; issue 21 asks
 * for learnd >= 2x protobuf-c.
 *
 * usage: bench_pbdesc [seconds per measurement, default 1] [runs, def. 5] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pipeline/decode.h"
#include "pipeline/internal.h"
#include "shop.pb-c.h"
#include "tests/data/pipeline/fixtures.h"

static double now_s(void)
{
    struct timespec ts;
    /* this thread's CPU time: the machine is shared, and wall-clock rates
     * swung 2x between runs with the neighbours' load */
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what, const char *why)
{
    fprintf(stderr, "bench_pbdesc: %s: %s\n", what, why);
    exit(1);
}

/* A bump allocator: protobuf-c's fastest setting, one reset per message. */
typedef struct arena {
    uint8_t *buf;
    size_t used, cap;
} arena_t;

static void *arena_alloc(void *opaque, size_t n)
{
    arena_t *a = opaque;
    n = (n + 15) & ~(size_t)15;
    if (a->used + n > a->cap)
        return NULL;
    void *p = a->buf + a->used;
    a->used += n;
    return p;
}

static void arena_free(void *opaque, void *p)
{
    (void)opaque;
    (void)p;
}

typedef enum { M_LEARND, M_PBC, M_PBC_ARENA, M_PLAN, M__COUNT } mode_t_;

/* The decode plan alone (pipeline/pbdesc.c: wire bytes into the field-map
 * slots, no features, no hashing): what a change of the plan moves. */
typedef struct plan_only {
    ld_fmap_t *fm;
    ld_pbdesc_t *pd;
} plan_only_t;

static double rate(mode_t_ mode, const fx_set_t *s, ld_decoder_t *d,
                   const plan_only_t *po, double secs, uint64_t *sink)
{
    arena_t a = {malloc(1 << 20), 0, 1 << 20};
    ProtobufCAllocator al = {arena_alloc, arena_free, &a};
    long n = 0;
    double t0 = now_s(), t1;
    do {
        for (int rep = 0; rep < 20; rep++)
            for (size_t i = 0; i < s->n; i++, n++) {
                const fx_rec_t *r = &s->r[i];
                if (mode == M_LEARND) {
                    ld_record_t rec;
                    if (ld_decoder_decode(d, r->key, r->klen, r->val, r->vlen,
                                          -1, &rec))
                        die("decode", ld_decoder_error(d));
                    *sink += rec.x.nnz;
                    continue;
                }
                if (mode == M_PLAN) {
                    char err[256];
                    ld_fmap_reset(po->fm);
                    if (ld_pbdesc_decode(po->pd, po->fm,
                                         (const uint8_t *)r->val, r->vlen, err,
                                         sizeof(err)))
                        die("plan", err);
                    *sink += po->fm->fv[0].kind;
                    continue;
                }
                a.used = 0;
                Shop__V1__Impression *m = shop__v1__impression__unpack(
                    mode == M_PBC_ARENA ? &al : NULL, r->vlen,
                    (const uint8_t *)r->val);
                if (!m)
                    die("protobuf-c", "unpack failed");
                *sink += m->n_tags + (uint64_t)m->device;
                if (mode == M_PBC)
                    shop__v1__impression__free_unpacked(m, NULL);
            }
        t1 = now_s();
    } while (t1 - t0 < secs);
    free(a.buf);
    return (double)n / (t1 - t0);
}

static int cmp(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 1.0;
    int runs = argc > 2 ? atoi(argv[2]) : 5;
    if (secs <= 0 || runs < 1 || runs > 64)
        die("usage", "bench_pbdesc [seconds] [runs 1..64]");
    fx_set_t s;
    if (fx_load_kcat(FX_DIR "/events-pbdesc.kcat", &s))
        die("fixture", FX_DIR "/events-pbdesc.kcat");
    ld_pipeline_conf_t *c = fx_conf_new("pbdesc");
    char err[512];
    ld_decoder_t *d =
        c ? ld_decoder_new(c, LD_RECORD_EVENT, err, sizeof(err)) : NULL;
    if (!d)
        die("decoder", c ? err : "config");
    plan_only_t po;
    po.fm = ld_fmap_new(c, LD_RECORD_EVENT, 0, err, sizeof(err));
    po.pd = po.fm ? ld_pbdesc_new(c, LD_RECORD_EVENT, po.fm, err, sizeof(err))
                  : NULL;
    if (!po.pd)
        die("plan", err);
    size_t bytes = 0;
    for (size_t i = 0; i < s.n; i++)
        bytes += s.r[i].vlen;
    printf("bench_pbdesc: %zu shop.v1.Impression messages, %zu bytes each on "
           "average; learnd = decode + map + hash (20 dense, 6 hashed, 2 "
           "crosses); %d runs of %.1f s, interleaved\n",
           s.n, bytes / s.n, runs, secs);
    double r[M__COUNT][64], ratio[2][64], plan[64];
    uint64_t sink = 0;
    for (int run = 0; run < runs; run++) {
        for (int m = 0; m < M__COUNT; m++)
            r[m][run] =
                rate((mode_t_)((m + run) % M__COUNT), &s, d, &po, secs, &sink);
        /* rotate back: r[k] holds mode (k + run) % M__COUNT */
        double t[M__COUNT];
        for (int m = 0; m < M__COUNT; m++)
            t[(m + run) % M__COUNT] = r[m][run];
        for (int m = 0; m < M__COUNT; m++)
            r[m][run] = t[m];
        plan[run] = 1e9 / r[M_PLAN][run];
        ratio[0][run] = r[M_LEARND][run] / r[M_PBC][run];
        ratio[1][run] = r[M_LEARND][run] / r[M_PBC_ARENA][run];
        printf("  run %d  learnd %9.0f msg/s  protobuf-c unpack %9.0f msg/s "
               "(arena %9.0f)  learnd/protobuf-c %.2fx (arena %.2fx)  "
               "plan alone %.1f ns/msg\n",
               run, r[M_LEARND][run], r[M_PBC][run], r[M_PBC_ARENA][run],
               ratio[0][run], ratio[1][run], plan[run]);
    }
    qsort(plan, (size_t)runs, sizeof(double), cmp);
    qsort(ratio[0], (size_t)runs, sizeof(double), cmp);
    qsort(ratio[1], (size_t)runs, sizeof(double), cmp);
    printf("median learnd/protobuf-c: %.2fx (default allocator), %.2fx "
           "(arena); decode plan alone %.1f ns/msg  [sink %llu]\n",
           ratio[0][runs / 2], ratio[1][runs / 2], plan[runs / 2],
           (unsigned long long)sink);
    ld_pbdesc_destroy(po.pd);
    ld_fmap_destroy(po.fm);
    ld_decoder_destroy(d);
    fx_conf_free(c);
    fx_free(&s);
    return 0;
}
