/* SPDX-License-Identifier: Apache-2.0 */
/* Joiner benchmark: bytes per pending event with 40 hashed features, and
 * join throughput (events + labels per second) with a realistic label rate
 * and delay distribution. Prints text; never a pass/fail test. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "labeling/labeling.h"

enum { NFEAT = 40, POOL = 4096, NPART = 8 };

static uint64_t rng = 88172645463325252ull;

static uint64_t next_u64(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static double next_unit(void)
{
    return (double)(next_u64() >> 11) / 9007199254740992.0;
}

static uint32_t pool_idx[POOL][NFEAT];
static float pool_val[POOL][NFEAT];

static void make_pool(unsigned bits)
{
    for (int i = 0; i < POOL; i++)
        for (int k = 0; k < NFEAT; k++) {
            pool_idx[i][k] = (uint32_t)next_u64() & ((1u << bits) - 1);
            pool_val[i][k] = 1.0f; /* one-hot hashed categoricals */
        }
}

/* 16 hex characters: a typical compact event id. */
static void make_key(uint64_t id, char key[17])
{
    static const char hex[] = "0123456789abcdef";
    uint64_t h = id * 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 16; i++)
        key[i] = hex[(h >> (4 * i)) & 15];
    key[16] = 0;
}

static ld_labeling_conf_t conf(void)
{
    ld_labeling_conf_t c;
    memset(&c, 0, sizeof(c));
    c.window_ms = 30000;
    c.max_ooo_ms = 200;
    c.idle_timeout_ms = 0;
    c.late_horizon_ms = 60000;
    c.aggregate = LD_AGG_FIRST;
    c.mode = LD_MODE_WINDOW;
    c.late_policy = LD_LATE_DROP;
    c.max_pending = 100000000;
    c.at_bound = LD_BOUND_PAUSE;
    return c;
}

static void bench_bytes(unsigned bits, uint64_t n)
{
    make_pool(bits);
    ld_labeling_conf_t c = conf();
    ld_joiner_t *j = ld_joiner_new(&c, NULL, 0);
    if (!j || ld_joiner_assign(j, 0) != LD_OK)
        exit(1);
    char key[17];
    for (uint64_t i = 0; i < n; i++) {
        int f = (int)(i % POOL);
        ld_features_t x = {pool_idx[f], pool_val[f], NULL, NFEAT, 0};
        make_key(i, key);
        if (ld_joiner_add_event(j, 0, (int64_t)i, key, 16, (int64_t)i, &x) !=
            LD_OK)
            exit(1);
    }
    ld_joiner_stats_t st;
    ld_joiner_stats(j, &st);
    printf("labeling bytes/pending event: hash_bits=%u nnz=%d key=16B "
           "pending=%llu entries=%.1f total=%.1f (entries + hash index + "
           "timer heap + slab slack)\n",
           bits, NFEAT, (unsigned long long)st.pending_events,
           (double)st.bytes_entries / (double)st.pending_events,
           (double)st.bytes_total / (double)st.pending_events);
    ld_joiner_destroy(j);
}

typedef struct lab {
    int64_t t;
    uint64_t id;
    float v;
} lab_t;

static int cmp_lab(const void *a, const void *b)
{
    const lab_t *x = a, *y = b;
    return x->t < y->t ? -1 : x->t > y->t;
}

/* NPART partitions, one event per ms of event time per partition; 10 % of
 * events are clicked once after an exponential delay (mean 5 s, so ~0.25 %
 * land after the 30 s window), 2 % get a second label. */
static void bench_throughput(uint64_t nev)
{
    make_pool(22);
    uint64_t per = nev / NPART;
    lab_t *labs[NPART];
    size_t nl[NPART];
    for (int p = 0; p < NPART; p++) {
        labs[p] = malloc(per / 5 * sizeof(lab_t) + 16 * sizeof(lab_t));
        nl[p] = 0;
        for (uint64_t i = 0; i < per; i++) {
            int nlab = next_unit() < 0.10 ? 1 : 0;
            if (nlab && next_unit() < 0.2)
                nlab = 2;
            for (int q = 0; q < nlab; q++) {
                double d = -log(1.0 - next_unit()) * 5000.0;
                lab_t *l = &labs[p][nl[p]++];
                l->t = (int64_t)i + (int64_t)d;
                l->id = i * NPART + (uint64_t)p;
                l->v = 1.0f;
            }
        }
        qsort(labs[p], nl[p], sizeof(lab_t), cmp_lab);
    }
    ld_labeling_conf_t c = conf();
    ld_joiner_t *j = ld_joiner_new(&c, NULL, 0);
    for (int p = 0; p < NPART; p++)
        if (ld_joiner_assign(j, p) != LD_OK)
            exit(1);
    size_t lpos[NPART] = {0};
    uint64_t examples = 0, records = 0;
    char key[17];
    ld_example_t ex;
    int64_t t0 = ld_now_mono_ms();
    /* Fetch-like interleaving: a batch of 64 records per partition and
     * topic in turn, labels as they become due in label time. */
    for (uint64_t base = 0; base < per; base += 64) {
        for (int p = 0; p < NPART; p++) {
            for (uint64_t i = base; i < base + 64 && i < per; i++) {
                uint64_t id = i * NPART + (uint64_t)p;
                int f = (int)(id % POOL);
                ld_features_t x = {pool_idx[f], pool_val[f], NULL, NFEAT, 0};
                make_key(id, key);
                if (ld_joiner_add_event(j, p, (int64_t)i, key, 16, (int64_t)i,
                                        &x) != LD_OK)
                    exit(1);
                records++;
            }
            while (lpos[p] < nl[p] &&
                   labs[p][lpos[p]].t < (int64_t)(base + 64)) {
                lab_t *l = &labs[p][lpos[p]];
                make_key(l->id, key);
                if (ld_joiner_add_label(j, p, (int64_t)lpos[p], key, 16, l->t,
                                        l->v) != LD_OK)
                    exit(1);
                lpos[p]++;
                records++;
            }
            while (ld_joiner_poll(j, &ex))
                examples++;
        }
    }
    int64_t t1 = ld_now_mono_ms();
    ld_joiner_stats_t st;
    ld_joiner_stats(j, &st);
    double secs = (double)(t1 - t0) / 1000.0;
    if (secs <= 0)
        secs = 0.001;
    printf("labeling throughput: events=%llu labels=%llu examples=%llu "
           "pos=%llu default_neg=%llu seconds=%.3f records/s=%.0f "
           "events/s=%.0f pending_at_end=%llu bytes/pending=%.1f\n",
           (unsigned long long)st.events_in, (unsigned long long)st.labels_in,
           (unsigned long long)examples,
           (unsigned long long)st.examples[LD_SAMPLE_POS],
           (unsigned long long)st.examples[LD_SAMPLE_DEFAULT_NEG], secs,
           (double)records / secs, (double)st.events_in / secs,
           (unsigned long long)st.pending_events,
           st.pending_events
               ? (double)st.bytes_total /
                     (double)(st.pending_events + st.pending_labels)
               : 0.0);
    ld_joiner_destroy(j);
    for (int p = 0; p < NPART; p++)
        free(labs[p]);
}

/* bench_labeling [N [bytes|throughput]]: N pending events for the byte
 * figures (default 1000000), 4 N events for the throughput run. */
int main(int argc, char **argv)
{
    uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000;
    const char *what = argc > 2 ? argv[2] : "all";
    ld_log_set_level(LD_LOG_ERR);
    if (strcmp(what, "throughput") != 0) {
        bench_bytes(18, n);
        bench_bytes(20, n);
        bench_bytes(22, n);
        bench_bytes(24, n);
    }
    if (strcmp(what, "bytes") != 0)
        bench_throughput(n * 4);
    return 0;
}
