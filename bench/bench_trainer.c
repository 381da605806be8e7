/* SPDX-License-Identifier: Apache-2.0 */
/* Trainer benchmarks: learn ns per non-zero feature, examples/s, progressive
 * logloss, snapshot stall and checkpoint encode/decode time for 2^22
 * weights; also writes the same synthetic stream as VW / River text. Prints
 * numbers, never pass/fail. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "publish/publish.h"
#include "publish/state_internal.h" /* ld_state_sweep_pace */
#include "trainer/checkpoint.h"
#include "trainer/trainer.h"

#define NF 40 /* hashed features per example (docs/ARCHITECTURE.md) */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* CPU time of this thread: unlike wall time it leaves out the time the
 * (shared, 2-core) machine ran something else instead of us. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint32_t mix32(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

static uint64_t rs = 12345;
static double unif(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (double)(rs >> 11) * (1.0 / 9007199254740992.0);
}

/* The synthetic stream: NF categorical fields, log-uniform value ids from a
 * vocabulary of 100 000 per field, labels from a hidden logistic model. */
typedef struct stream {
    size_t n;
    uint32_t *id; /* n x NF raw value ids */
    int keyed;    /* ids are hashes of namespace and value already */
    float *y;
} stream_t;

static void gen(stream_t *s, size_t n)
{
    s->n = n;
    s->keyed = 0;
    s->id = malloc(n * NF * sizeof(uint32_t));
    s->y = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        double z = -1.5;
        for (uint32_t f = 0; f < NF; f++) {
            uint32_t id = (uint32_t)(pow(100000.0, unif())) - 1;
            s->id[i * NF + f] = id;
            uint32_t h = mix32(f * 0x9e3779b1U ^ mix32(id));
            z += ((double)(h >> 8) / 16777216.0 - 0.5) * 0.8;
        }
        s->y[i] = unif() < 1 / (1 + exp(-z)) ? 1.0f : 0.0f;
    }
}

/* A stream shaped like the demo generator with bench/e2e.sh's crosses (the
 * issue's "few partitions" profile): skewed country (40), ad (500), device
 * (4), publisher (200), 0-3 tags (50), a segment (8) 70 % of the time, and
 * 22 crosses of those namespaces: ~40 hashed values per example, most of
 * them crosses. Ids are kept to 40 per example (fewer: the first value
 * repeats, touching no other row). */
static void gen_demo(stream_t *s, size_t n)
{
    s->n = n;
    s->keyed = 1;
    s->id = malloc(n * NF * sizeof(uint32_t));
    s->y = malloc(n * sizeof(float));
    static const char *cross[] = {"ca",  "cd",  "ad",  "cx",  "ax",  "dx",
                                  "cu",  "au",  "du",  "xu",  "cad", "cax",
                                  "cdx", "adx", "cau", "cdu", "adu", "cadx",
                                  "cxu", "axu", "dxu", "cadu"};
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t v[128], nv = 0;
        uint32_t c = (uint32_t)(unif() * unif() * 40),
                 a = (uint32_t)(unif() * unif() * 500),
                 d = (uint32_t)(unif() * 4);
        uint32_t ctx[4], nctx = 1;
        ctx[0] = (uint32_t)(unif() * unif() * 200);
        int nt = (int)(unif() * 4);
        for (int k = 0; k < nt; k++)
            ctx[nctx++] = 1000 + (uint32_t)(unif() * 50);
        int hu = unif() < 0.7;
        uint32_t u = (uint32_t)(unif() * 8);
        v[nv++] = mix32(1 ^ mix32(c));
        v[nv++] = mix32(2 ^ mix32(a));
        v[nv++] = mix32(3 ^ mix32(d));
        for (uint32_t k = 0; k < nctx; k++)
            v[nv++] = mix32(4 ^ mix32(ctx[k]));
        if (hu)
            v[nv++] = mix32(5 ^ mix32(u));
        for (size_t x = 0; x < sizeof(cross) / sizeof(*cross); x++) {
            const char *f = cross[x];
            int usex = strchr(f, 'x') != NULL, useu = strchr(f, 'u') != NULL;
            if (useu && !hu)
                continue;
            for (uint32_t k = 0; k < (usex ? nctx : 1) && nv < 128; k++) {
                uint32_t h = mix32(0x100u + (uint32_t)x);
                if (strchr(f, 'c'))
                    h = mix32(h ^ c);
                if (strchr(f, 'a'))
                    h = mix32(h ^ (a + 7919u));
                if (strchr(f, 'd'))
                    h = mix32(h ^ (d + 104729u));
                if (usex)
                    h = mix32(h ^ (ctx[k] + 1299709u));
                if (useu)
                    h = mix32(h ^ (u + 15485863u));
                v[nv++] = h;
            }
        }
        total += nv < NF ? nv : NF;
        for (uint32_t f = 0; f < NF; f++)
            s->id[i * NF + f] = f < nv ? v[f] : v[0];
        s->y[i] = unif() < 0.2 ? 1.0f : 0.0f;
    }
    printf("demo-like stream: %.1f distinct hashed values per example\n",
           (double)total / (double)n);
}

/* The value of every hashed feature of the stream. */
static const float ones[NF] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                               1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                               1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};

static void hash_stream(const stream_t *s, uint32_t bits, uint32_t *idx)
{
    uint32_t mask = (1u << bits) - 1;
    for (size_t i = 0; i < s->n * NF; i++)
        idx[i] =
            (s->keyed ? s->id[i]
                      : mix32((uint32_t)(i % NF) * 0x85ebca6bU + s->id[i])) &
            mask;
}

static double loss_sum;
static size_t loss_n;
static void on_scored(void *o, const ld_scored_t *sc, size_t n)
{
    (void)o;
    for (size_t i = 0; i < n; i++)
        loss_sum += sc[i].loss;
    loss_n += n;
}

static void conf_default(ld_trainer_conf_t *c)
{
    memset(c, 0, sizeof(*c));
    char err[256];
    if (ld_conf_set_defaults(&ld_trainer_conf_section, c, err, sizeof(err)) !=
        LD_OK) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    c->batch_span = 0;
}

/* Trains on the stream; prints ns per non-zero and examples/s. With champ,
 * a champion (a snapshot of the untrained model: another 2^bits slots in
 * memory) is scored alongside, as in a daemon after its first publish. */
static void bench_learn(const char *label, const stream_t *s, uint32_t bits,
                        int opt, int64_t batch, double lr, int champ)
{
    ld_trainer_conf_t c;
    conf_default(&c);
    c.hash_bits = bits;
    c.optimizer = opt;
    c.batch_size = batch;
    c.learning_rate = lr;
    char err[256];
    ld_trainer_t *t = ld_trainer_new(&c, err, sizeof(err));
    if (!t) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    uint32_t *idx = malloc(s->n * NF * sizeof(uint32_t));
    hash_stream(s, bits, idx);
    if (champ) {
        ld_snapshot_t *cs = ld_trainer_snapshot(t);
        if (!cs || ld_trainer_champion_set(t, cs) != LD_OK)
            exit(1);
        ld_snapshot_destroy(cs);
    }
    ld_trainer_set_scored_cb(t, on_scored, NULL);
    loss_sum = 0;
    loss_n = 0;
    ld_example_t e;
    memset(&e, 0, sizeof(e));
    e.weight = 1;
    double t0 = now_s(), c0 = cpu_s();
    for (size_t i = 0; i < s->n; i++) {
        e.x = (ld_features_t){idx + i * NF, ones, NULL, NF, 0};
        e.label = s->y[i];
        e.sample_type = e.label > 0 ? LD_SAMPLE_POS : LD_SAMPLE_DEFAULT_NEG;
        e.event_time_ms = (int64_t)i;
        if (ld_trainer_add(t, &e) != LD_OK)
            exit(1);
    }
    if (ld_trainer_flush(t) != LD_OK)
        exit(1);
    double dt = now_s() - t0, dc = cpu_s() - c0;
    ld_trainer_metrics_t m;
    ld_trainer_metrics(t, &m, NULL);
    /* cpu: thread CPU time, which leaves out time descheduled on a shared
     * machine (it still includes cache and memory contention). */
    printf("learn %-28s bits=%2u batch=%-4lld %6.2f ns/nnz  %9.0f ex/s  "
           "progressive_logloss=%.5f  window_auc=%.4f  cpu %.2f ns/nnz\n",
           label, bits, (long long)batch, dt * 1e9 / ((double)s->n * NF),
           (double)s->n / dt, loss_sum / (double)loss_n, m.auc,
           dc * 1e9 / ((double)s->n * NF));
    free(idx);
    ld_trainer_destroy(t);
    ld_conf_free(&ld_trainer_conf_section, &c);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Trains one batch of nb examples from the stream; returns what
 * ld_trainer_snapshot_poll() returned after it, and its wall and thread CPU
 * time in *w and *c. */
static ld_snapshot_t *one_batch(ld_trainer_t *t, const stream_t *s,
                                const uint32_t *idx, size_t *pos, size_t nb,
                                double *w, double *c)
{
    ld_example_t e;
    memset(&e, 0, sizeof(e));
    e.weight = 1;
    e.sample_type = LD_SAMPLE_POS;
    double t0 = now_s(), c0 = cpu_s();
    for (size_t k = 0; k < nb; k++, *pos = (*pos + 1) % s->n) {
        e.x = (ld_features_t){idx + *pos * NF, ones, NULL, NF, 0};
        e.label = s->y[*pos];
        if (ld_trainer_add(t, &e) != LD_OK)
            exit(1);
    }
    ld_snapshot_t *snap = ld_trainer_snapshot_poll(t);
    *c = cpu_s() - c0;
    *w = now_s() - t0;
    return snap;
}

/* ---- The loop's cost of a publication snapshot (issue #18) -------------- */

typedef struct pubsim {
    ld_snapshot_t *snap;
    atomic_int done;
} pubsim_t;

static void *pubsim_main(void *arg)
{
    pubsim_t *p = arg;
    ld_snapshot_complete(p->snap); /* what the publisher thread does */
    atomic_store(&p->done, 1);
    return NULL;
}

/* A publication's snapshot as the daemon takes it, made the champion at
 * once: the old whole copy on the loop (ld_trainer_snapshot) against the
 * shared copy-on-write one (ld_trainer_snapshot_shared, a thread in the
 * publisher's place completing it). Loop thread CPU: the call itself, and
 * for the shared one the extra CPU of the batches trained until the copy
 * is whole over the median batch (its copy-on-write copies). */
static void bench_shared(const stream_t *s, uint32_t bits)
{
    ld_trainer_conf_t c;
    conf_default(&c);
    c.hash_bits = bits;
    char err[256];
    ld_trainer_t *t = ld_trainer_new(&c, err, sizeof(err));
    uint32_t *idx = malloc(s->n * NF * sizeof(uint32_t));
    if (!t || !idx)
        exit(1);
    hash_stream(s, bits, idx);
    size_t pos = 0, nb = (size_t)c.batch_size;
    enum { CYCLES = 7, NORMAL = 100 };
    double old_c[CYCLES], old_w[CYCLES], beg_c[CYCLES], extra_c[CYCLES],
        maxb_w[CYCLES], med_c[CYCLES], nwin[CYCLES];
    for (int cyc = 0; cyc < CYCLES; cyc++) {
        double bw[NORMAL], bc[NORMAL], w, cpu;
        nanosleep(&(struct timespec){0, 100000000}, NULL);
        double t0 = now_s(), c0 = cpu_s();
        ld_snapshot_t *o = ld_trainer_snapshot(t);
        if (!o || ld_trainer_champion_set(t, o) != LD_OK)
            exit(1);
        old_c[cyc] = cpu_s() - c0;
        old_w[cyc] = now_s() - t0;
        ld_snapshot_destroy(o);
        for (int rep = 0; rep < NORMAL; rep++)
            one_batch(t, s, idx, &pos, nb, &bw[rep], &bc[rep]);
        qsort(bc, NORMAL, sizeof(double), cmp_d);
        med_c[cyc] = bc[NORMAL / 2];
        nanosleep(&(struct timespec){0, 100000000}, NULL);
        c0 = cpu_s();
        pubsim_t ps = {ld_trainer_snapshot_shared(t), 0};
        if (!ps.snap || ld_trainer_champion_set(t, ps.snap) != LD_OK)
            exit(1);
        beg_c[cyc] = cpu_s() - c0;
        pthread_t th;
        if (pthread_create(&th, NULL, pubsim_main, &ps) != 0)
            exit(1);
        double ex = 0, mw = 0;
        int n = 0, after = 0;
        while (after < 1) {
            after += atomic_load(&ps.done);
            one_batch(t, s, idx, &pos, nb, &w, &cpu);
            ex += cpu - med_c[cyc];
            mw = w > mw ? w : mw;
            n++;
        }
        pthread_join(th, NULL);
        extra_c[cyc] = ex;
        maxb_w[cyc] = mw;
        nwin[cyc] = n;
        ld_snapshot_destroy(ps.snap);
        for (int rep = 0; rep < NORMAL; rep++)
            one_batch(t, s, idx, &pos, nb, &bw[rep], &bc[rep]);
    }
    qsort(old_c, CYCLES, sizeof(double), cmp_d);
    qsort(old_w, CYCLES, sizeof(double), cmp_d);
    qsort(beg_c, CYCLES, sizeof(double), cmp_d);
    qsort(extra_c, CYCLES, sizeof(double), cmp_d);
    qsort(maxb_w, CYCLES, sizeof(double), cmp_d);
    qsort(med_c, CYCLES, sizeof(double), cmp_d);
    qsort(nwin, CYCLES, sizeof(double), cmp_d);
    printf("publication snapshot 2^%u (%.0f MiB), %d each, medians, loop "
           "thread: whole copy %.3f ms CPU (%.3f ms wall); shared: call %.3f "
           "ms CPU + %.3f ms extra CPU over %.0f batches until whole "
           "(slowest batch %.3f ms wall, normal %.3f ms CPU)\n",
           bits, 3.0 * 4 * (double)(1u << bits) / 1048576.0, CYCLES,
           old_c[CYCLES / 2] * 1e3, old_w[CYCLES / 2] * 1e3,
           beg_c[CYCLES / 2] * 1e3, extra_c[CYCLES / 2] * 1e3, nwin[CYCLES / 2],
           maxb_w[CYCLES / 2] * 1e3, med_c[CYCLES / 2] * 1e3);
    ld_trainer_destroy(t);
    free(idx);
}

/* Snapshot stall and encode/decode for 2^22 weights (logistic + FTRL). */
static void bench_snapshot(const stream_t *s)
{
    const uint32_t bits = 22;
    ld_trainer_conf_t c;
    conf_default(&c);
    c.hash_bits = bits;
    char err[256];
    ld_trainer_t *t = ld_trainer_new(&c, err, sizeof(err));
    uint32_t *idx = malloc(s->n * NF * sizeof(uint32_t));
    hash_stream(s, bits, idx);
    size_t pos = 0, nb = (size_t)c.batch_size;
    /* Several snapshots, each after a pause (a daemon snapshots every few
     * seconds, so the helper thread has its spare buffer ready) and 100
     * normal batches. Per snapshot: stall = begin + (slowest batch while
     * copying - median normal batch), in wall and in thread CPU time (the
     * machine is shared: wall time includes being descheduled). */
    enum { CYCLES = 7, NORMAL = 100 };
    double st_w[CYCLES], st_c[CYCLES], beg_w[CYCLES], beg_c[CYCLES];
    double first_c[CYCLES], med_c[CYCLES];
    size_t nbatches = 0;
    ld_snapshot_t *snap = NULL;
    for (int cyc = 0; cyc < CYCLES; cyc++) {
        double bw[NORMAL], bc[NORMAL], mw = 0, mc = 0;
        nanosleep(&(struct timespec){0, 100000000}, NULL);
        for (int rep = 0; rep < NORMAL; rep++)
            one_batch(t, s, idx, &pos, nb, &bw[rep], &bc[rep]);
        qsort(bw, NORMAL, sizeof(double), cmp_d);
        qsort(bc, NORMAL, sizeof(double), cmp_d);
        double t0 = now_s(), c0 = cpu_s();
        if (ld_trainer_snapshot_begin(t) != LD_OK)
            exit(1);
        beg_c[cyc] = cpu_s() - c0;
        beg_w[cyc] = now_s() - t0;
        nbatches = 0;
        ld_snapshot_destroy(snap);
        snap = NULL;
        while (!snap) {
            double w, cpu;
            snap = one_batch(t, s, idx, &pos, nb, &w, &cpu);
            if (nbatches++ == 0)
                first_c[cyc] = cpu;
            mw = w > mw ? w : mw;
            mc = cpu > mc ? cpu : mc;
            if (getenv("LD_BENCH_VERBOSE"))
                fprintf(stderr, "batch %zu during snapshot: %.3f ms\n",
                        nbatches, w * 1e3);
        }
        med_c[cyc] = bc[NORMAL / 2];
        st_w[cyc] = beg_w[cyc] + mw - bw[NORMAL / 2];
        st_c[cyc] = beg_c[cyc] + mc - bc[NORMAL / 2];
    }
    qsort(st_w, CYCLES, sizeof(double), cmp_d);
    qsort(st_c, CYCLES, sizeof(double), cmp_d);
    qsort(beg_c, CYCLES, sizeof(double), cmp_d);
    qsort(first_c, CYCLES, sizeof(double), cmp_d);
    qsort(med_c, CYCLES, sizeof(double), cmp_d);
    printf("snapshot 2^22 weights (ftrl: w,z,n = %.0f MiB), %d snapshots, "
           "%zu batches of %zu to complete: begin %.3f ms, normal batch "
           "%.3f ms, first batch while copying %.3f ms (thread CPU, "
           "medians); stall = begin + (max - median) median %.3f ms, "
           "worst %.3f ms (thread CPU); wall: median %.3f ms, worst %.3f "
           "ms\n",
           3.0 * 4 * (1 << bits) / 1048576.0, CYCLES, nbatches, nb,
           beg_c[CYCLES / 2] * 1e3, med_c[CYCLES / 2] * 1e3,
           first_c[CYCLES / 2] * 1e3, st_c[CYCLES / 2] * 1e3,
           st_c[CYCLES - 1] * 1e3, st_w[CYCLES / 2] * 1e3,
           st_w[CYCLES - 1] * 1e3);
    ld_snapshot_destroy(snap);
    double t0 = now_s();
    snap = ld_trainer_snapshot(t);
    printf("snapshot 2^22 stop-the-world copy (for comparison): %.3f ms\n",
           (now_s() - t0) * 1e3);

    ld_ckpt_meta_t meta = {0};
    meta.model = "bench";
    meta.version = 1;
    ld_buf_t b;
    t0 = now_s();
    if (ld_ckpt_encode(snap, &meta, &b) != LD_OK)
        exit(1);
    double t_enc = now_s() - t0;
    ld_ckpt_t *ck;
    t0 = now_s();
    if (ld_ckpt_decode(b.data, b.len, &ck, err, sizeof(err)) != LD_OK)
        exit(1);
    double t_dec = now_s() - t0;
    ld_buf_t *chunks;
    size_t nchunks;
    t0 = now_s();
    if (ld_publish_chunks(b.data, b.len, "bench", 1, LD_CKPT_MAX_CHUNK, &chunks,
                          &nchunks) != LD_OK)
        exit(1);
    double t_chunk = now_s() - t0;
    uint8_t h[32];
    t0 = now_s();
    ld_ckpt_sha256(b.data, b.len, h);
    double t_sha = now_s() - t0;
    printf("checkpoint 2^22 ftrl: %.1f MiB; encode %.1f ms, decode+validate "
           "%.1f ms, chunk into %zu x 900 KiB %.1f ms, sha256 %.0f MB/s\n",
           (double)b.len / 1048576.0, t_enc * 1e3, t_dec * 1e3, nchunks,
           t_chunk * 1e3, (double)b.len / t_sha / 1e6);
    ld_publish_chunks_free(chunks, nchunks);
    ld_ckpt_destroy(ck);
    free(b.data);
    ld_snapshot_destroy(snap);
    free(idx);
    ld_trainer_destroy(t);
    ld_conf_free(&ld_trainer_conf_section, &c);
}

static void write_text(const stream_t *s, const char *path, int vw)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(1);
    }
    for (size_t i = 0; i < s->n; i++) {
        if (vw)
            fputs(s->y[i] > 0 ? "1 |f" : "-1 |f", f);
        else
            fputs(s->y[i] > 0 ? "1" : "0", f);
        for (uint32_t k = 0; k < NF; k++)
            fprintf(f, " f%u_%u", k, s->id[i * NF + k]);
        fputc('\n', f);
    }
    fclose(f);
}

static ld_err_t count_only(void *opaque, const char *key, const uint8_t *val,
                           size_t len)
{
    (void)opaque;
    (void)key;
    (void)val;
    (void)len;
    return LD_OK;
}

/* An FTRL trainer at 2^bits over the stream's features, hashed into *idx
 * (freed by the caller), for the state and delta benchmarks. */
static ld_trainer_t *ftrl_on(const stream_t *s, uint32_t bits, uint32_t **idx)
{
    ld_trainer_conf_t c;
    conf_default(&c);
    c.hash_bits = bits;
    c.optimizer = LD_OPT_FTRL;
    c.batch_size = 256;
    c.learning_rate = 0.1;
    char err[256];
    ld_trainer_t *t = ld_trainer_new(&c, err, sizeof(err));
    *idx = malloc(s->n * NF * sizeof(uint32_t));
    if (!t || !*idx)
        exit(1);
    hash_stream(s, bits, *idx);
    return t;
}

/* Example i of the stream, trained (all values 1, as the stream's). */
static void train_one(ld_trainer_t *t, const stream_t *s, const uint32_t *idx,
                      size_t i)
{
    ld_example_t e;
    memset(&e, 0, sizeof(e));
    e.weight = 1;
    e.x = (ld_features_t){idx + i * NF, ones, NULL, NF, 0};
    e.label = s->y[i];
    e.sample_type = e.label > 0 ? LD_SAMPLE_POS : LD_SAMPLE_DEFAULT_NEG;
    e.event_time_ms = (int64_t)i;
    if (ld_trainer_add(t, &e) != LD_OK)
        exit(1);
}

/* A state sink that counts what a restore would read: the newest bytes
 * of each block, the bytes of each delta (by commit), and optionally
 * appends every record (key and value) to producer-sized batch files
 * (<= 1 MB and 10 000 records, librdkafka's batch.size and
 * batch.num.messages) for measuring compression. */
typedef struct bsink {
    uint64_t *block; /* newest key + value bytes of each block */
    uint64_t *delta; /* key + value bytes of each commit's delta */
    size_t nblocks, nseq;
    const char *dir; /* NULL: no dump */
    FILE *f;
    size_t flen, frecs, fno;
    int on; /* dumping this commit */
} bsink_t;

static ld_err_t bsink_emit(void *opaque, const char *key, const uint8_t *val,
                           size_t len)
{
    bsink_t *b = opaque;
    unsigned long long seq;
    size_t i;
    unsigned part;
    if (!val)
        return LD_OK;
    if (sscanf(key, "bench/block/%zu", &i) == 1 && i < b->nblocks)
        b->block[i] = strlen(key) + len;
    else if (sscanf(key, "bench/delta/%llu/%u", &seq, &part) == 2 &&
             seq < b->nseq)
        b->delta[seq] += strlen(key) + len;
    if (!b->dir || !b->on)
        return LD_OK;
    if (b->f && (b->flen + len > 1000000 || b->frecs == 10000)) {
        fclose(b->f);
        b->f = NULL;
    }
    if (!b->f) {
        char path[1024];
        snprintf(path, sizeof(path), "%s/batch-%06zu", b->dir, b->fno++);
        if (!(b->f = fopen(path, "wb"))) {
            perror(path);
            exit(1);
        }
        b->flen = b->frecs = 0;
    }
    fwrite(key, 1, strlen(key), b->f);
    fwrite(val, 1, len, b->f);
    b->flen += strlen(key) + len;
    b->frecs++;
    return LD_OK;
}

/* Bytes a restore reads from the compacted topic: every block's newest
 * record and the deltas g still lists. */
static uint64_t bsink_restore(const bsink_t *b, const ld_state_gens_t *g)
{
    uint64_t n = 0;
    for (size_t i = 0; i < b->nblocks; i++)
        n += b->block[i];
    for (size_t i = 0; i < g->ndelta; i++)
        if (g->dseq[i] < b->nseq)
            n += b->delta[g->dseq[i]];
    return n;
}

/* Bytes the incremental resume state writes per commit point, format 4
 * (FTRL rows of z and n), format 3 (rows touched as a delta plus a sweep
 * of blocks, every plane) and format 2 (every block with a touched row,
 * whole) side by side on the same trainer, against the whole state
 * (format 1: the full checkpoint), committing every `every` examples of
 * the stream; with the CPU each write costs the loop, the distinct rows
 * the stream touched per commit (the floor of any encoding that keys what
 * changed), and what a restore would read at the end (blocks plus the
 * live deltas, which the sweep's pace trades against the bytes per
 * commit). With dump, the records of formats 4 and 3 go to dump/f4 and
 * dump/f3 as producer batches (bench/state_compress.sh compresses them). */
static void bench_state(const stream_t *s, uint32_t bits, size_t every,
                        const char *dump)
{
    uint32_t *idx = NULL;
    ld_trainer_t *t = ftrl_on(s, bits, &idx);
    ld_state_gens_t g[3] = {{0}, {0}, {0}}; /* formats 4, 3, 2 */
    g[1].write_format = 3;
    ld_ckpt_meta_t meta = {.model = "bench"};
    uint64_t seq = 0, sum[3] = {0}, n = 0, dirty_sum = 0, rows_sum = 0;
    double full_ms = 0, cpu[3] = {0};
    uint8_t *seen = calloc(((size_t)1 << bits) / 8 + 1, 1);
    size_t full = 0, nbk = ld_trainer_state_blocks(t);
    size_t nseq = s->n / every + 2;
    bsink_t bs[2];
    for (int f = 0; f < 2; f++) {
        char *dir = NULL;
        if (dump) {
            dir = malloc(strlen(dump) + 8);
            sprintf(dir, "%s/f%d", dump, f ? 3 : 4);
        }
        bs[f] = (bsink_t){
            calloc(nbk, 8), calloc(nseq, 8), nbk, nseq, dir, NULL, 0, 0, 0, 0};
    }
    for (size_t i = 0; i < s->n; i++) {
        train_one(t, s, idx, i);
        for (int f = 0; f < NF; f++) {
            uint32_t x = idx[i * NF + (size_t)f];
            if (!(seen[x >> 3] & (1u << (x & 7)))) {
                seen[x >> 3] |= (uint8_t)(1u << (x & 7));
                if (seq)
                    rows_sum++;
            }
        }
        if ((i + 1) % every)
            continue;
        memset(seen, 0, ((size_t)1 << bits) / 8 + 1);
        if (ld_trainer_flush(t) != LD_OK)
            exit(1);
        ld_snapshot_t *h = ld_trainer_state_head(t);
        ld_buf_t hb = {0};
        if (!h || ld_ckpt_encode(h, &meta, &hb) != LD_OK)
            exit(1);
        Learnd__V1__ResumeHeader hdr = LEARND__V1__RESUME_HEADER__INIT;
        hdr.model = "bench";
        hdr.commit_seq = ++seq;
        hdr.model_state = (ProtobufCBinaryData){hb.len, hb.data};
        uint64_t bytes[3] = {0};
        size_t nd = 0;
        for (size_t b = 0; b < nbk; b++)
            nd += (size_t)ld_trainer_block_dirty(t, b);
        dirty_sum += nd;
        /* Rotated, so that none always runs on a warm cache. */
        for (int k = 0; k < 3; k++) {
            int v = (k + (int)seq) % 3;
            ld_state_sink_t sink = {count_only, NULL, &bytes[v]};
            if (v < 2) {
                bs[v].on = seq > 1;
                sink = (ld_state_sink_t){bsink_emit, &bs[v], &bytes[v]};
            }
            double c0 = cpu_s();
            if ((v < 2 ? ld_state_write_blocks(&sink, &hdr, t, &g[v])
                       : ld_state_write_blocks_v2(&sink, &hdr, t, &g[v])) !=
                LD_OK)
                exit(1);
            if (seq > 1)
                cpu[v] += cpu_s() - c0;
        }
        ld_trainer_dirty_clear(t);
        free(hb.data);
        ld_snapshot_destroy(h);
        if (!full || seq == 3) {
            /* What a commit point did before: a whole snapshot, encoded. */
            double f0 = now_s();
            ld_snapshot_t *fs = ld_trainer_snapshot(t);
            ld_buf_t fb = {0};
            if (!fs || ld_ckpt_encode(fs, &meta, &fb) != LD_OK)
                exit(1);
            if (seq == 3)
                full_ms = 1e3 * (now_s() - f0);
            full = fb.len;
            free(fb.data);
            ld_snapshot_destroy(fs);
            if (seq == 1)
                continue; /* the first commit writes every block */
        }
        for (int v = 0; v < 3; v++)
            sum[v] += bytes[v];
        n++;
    }
    if (n) {
        double rows = (double)rows_sum / (double)n, fl = (double)full;
        double per[3];
        for (int v = 0; v < 3; v++)
            per[v] = (double)sum[v] / (double)n;
        printf("state bits=%2u every %7zu pace %.2f: rows touched %.2f %% "
               "(%.0f), blocks dirty %.1f %%; bytes/commit format 4 %.0f "
               "(%.2f %% of full %zu), format 3 %.0f (%.2f %%), format 2 "
               "%.0f (%.2f %%); cpu/commit format 4 %.1f ms, format 3 %.1f "
               "ms, format 2 %.1f ms (whole state: %.1f ms to snapshot and "
               "encode); restore reads format 4 %.1f MB (%zu deltas), "
               "format 3 %.1f MB (%zu deltas)\n",
               bits, every, ld_state_sweep_pace,
               100.0 * rows / (double)(1u << bits), rows,
               100.0 * (double)dirty_sum / (double)(n + 1) / (double)nbk,
               per[0], 100.0 * per[0] / fl, full, per[1], 100.0 * per[1] / fl,
               per[2], 100.0 * per[2] / fl, 1e3 * cpu[0] / (double)n,
               1e3 * cpu[1] / (double)n, 1e3 * cpu[2] / (double)n, full_ms,
               (double)bsink_restore(&bs[0], &g[0]) / 1e6, g[0].ndelta,
               (double)bsink_restore(&bs[1], &g[1]) / 1e6, g[1].ndelta);
    }
    for (int f = 0; f < 2; f++) {
        if (bs[f].f)
            fclose(bs[f].f);
        free(bs[f].block);
        free(bs[f].delta);
        free((void *)bs[f].dir);
    }
    free(seen);
    for (int v = 0; v < 3; v++)
        ld_state_gens_free(&g[v]);
    free(idx);
    ld_trainer_destroy(t);
}

/* Bytes per publication on the checkpoints topic, a full checkpoint against
 * a delta of the version before, publishing every `every` examples. */
static void bench_delta(const stream_t *s, uint32_t bits, size_t every)
{
    uint32_t *idx = NULL;
    ld_trainer_t *t = ftrl_on(s, bits, &idx);
    ld_snapshot_t *prev = NULL;
    uint64_t v = 0, full = 0, delta = 0, rows = 0, n = 0;
    double dt = 0;
    for (size_t i = 0; i < s->n; i++) {
        train_one(t, s, idx, i);
        if ((i + 1) % every)
            continue;
        if (ld_trainer_flush(t) != LD_OK)
            exit(1);
        ld_snapshot_t *cur = ld_trainer_snapshot(t);
        ld_ckpt_meta_t meta = {
            .model = "bench", .version = ++v, .parent_version = v - 1};
        ld_buf_t fb = {0}, db = {0};
        size_t nr = 0;
        if (!cur || ld_ckpt_encode(cur, &meta, &fb) != LD_OK)
            exit(1);
        if (prev) {
            double t0 = now_s();
            if (ld_ckpt_encode_delta(cur, prev, &meta, 1, &db, &nr) != LD_OK)
                exit(1);
            dt += now_s() - t0;
            full += fb.len;
            delta += db.len;
            rows += nr;
            n++;
        }
        free(fb.data);
        free(db.data);
        ld_snapshot_destroy(prev);
        prev = cur;
    }
    if (n)
        printf("delta bits=%2u publication every %6zu examples: full %10.0f "
               "bytes, delta %9.0f bytes (%.2f %%), %.0f rows changed, "
               "%.1f ms to encode a delta\n",
               bits, every, (double)full / (double)n, (double)delta / (double)n,
               100.0 * (double)delta / (double)full, (double)rows / (double)n,
               1e3 * dt / (double)n);
    ld_snapshot_destroy(prev);
    free(idx);
    ld_trainer_destroy(t);
}

int main(int argc, char **argv)
{
    size_t n = 300000;
    const char *vw = NULL, *river = NULL;
    int only_learn = 0, one_bits = 0, one_batch = 0, one_opt = -1, reps = 1;
    int champ = 0, state_bits = 0, demo = 0, delta_bits = 0, shared_bits = 0;
    size_t state_every = 0;
    const char *state_dump = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--n") && i + 1 < argc)
            n = (size_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "--write-vw") && i + 1 < argc)
            vw = argv[++i];
        else if (!strcmp(argv[i], "--write-river") && i + 1 < argc)
            river = argv[++i];
        else if (!strcmp(argv[i], "--learn-only"))
            only_learn = 1;
        else if (!strcmp(argv[i], "--one") && i + 3 < argc) {
            one_bits = atoi(argv[++i]);
            one_batch = atoi(argv[++i]);
            one_opt = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--shared") && i + 1 < argc) {
            shared_bits = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--champion"))
            champ = 1;
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--demo-stream"))
            demo = 1;
        else if (!strcmp(argv[i], "--delta") && i + 2 < argc) {
            delta_bits = atoi(argv[++i]);
            state_every = (size_t)atol(argv[++i]);
        } else if (!strcmp(argv[i], "--state") && i + 2 < argc) {
            state_bits = atoi(argv[++i]);
            state_every = (size_t)atol(argv[++i]);
        } else if (!strcmp(argv[i], "--state-pace") && i + 1 < argc) {
            ld_state_sweep_pace = atof(argv[++i]);
        } else if (!strcmp(argv[i], "--state-dump") && i + 1 < argc) {
            state_dump = argv[++i];
        } else {
            fprintf(
                stderr,
                "usage: bench_trainer [--n N] [--write-vw FILE] "
                "[--write-river FILE] [--learn-only]\n"
                "       [--one BITS BATCH OPT(0 sgd, 1 adagrad, "
                "2 ftrl, 3 adam)] [--champion] [--reps N]\n"
                "       [--state BITS EXAMPLES_PER_COMMIT [--state-pace SHARE] "
                "[--state-dump DIR]] [--demo-stream]\n"
                "       [--delta BITS EXAMPLES_PER_PUBLICATION] "
                "[--shared BITS]\n");
            return 2;
        }
    }
    ld_log_set_level(LD_LOG_WARN);
    stream_t s;
    if (demo)
        gen_demo(&s, n);
    else
        gen(&s, n);
    if (vw || river) {
        if (vw)
            write_text(&s, vw, 1);
        if (river)
            write_text(&s, river, 0);
        return 0;
    }
    printf("stream: %zu examples x %d hashed features, OpenBLAS core %s\n", s.n,
           NF, ld_trainer_blas_core());
    if (shared_bits) {
        bench_shared(&s, (uint32_t)shared_bits);
        free(s.id);
        free(s.y);
        return 0;
    }
    if (delta_bits) {
        bench_delta(&s, (uint32_t)delta_bits, state_every);
        free(s.id);
        free(s.y);
        return 0;
    }
    if (state_bits) {
        bench_state(&s, (uint32_t)state_bits, state_every, state_dump);
        free(s.id);
        free(s.y);
        return 0;
    }
    if (one_opt >= 0) {
        static const char *names[] = {"logistic+sgd", "logistic+adagrad",
                                      "logistic+ftrl", "logistic+adam"};
        static const double lrs[] = {0.05, 0.1, 0.1, 0.01};
        for (int r = 0; r < reps; r++)
            bench_learn(names[one_opt & 3], &s, (uint32_t)one_bits, one_opt & 3,
                        one_batch, lrs[one_opt & 3], champ);
        free(s.id);
        free(s.y);
        return 0;
    }
    bench_learn("logistic+ftrl", &s, 22, LD_OPT_FTRL, 256, 0.1, 0);
    bench_learn("logistic+ftrl", &s, 22, LD_OPT_FTRL, 1, 0.1, 0);
    bench_learn("logistic+ftrl", &s, 18, LD_OPT_FTRL, 256, 0.1, 0);
    bench_learn("logistic+ftrl+champion", &s, 22, LD_OPT_FTRL, 256, 0.1, 1);
    if (!only_learn) {
        bench_learn("logistic+sgd", &s, 22, LD_OPT_SGD, 256, 0.05, 0);
        bench_learn("logistic+adagrad", &s, 22, LD_OPT_ADAGRAD, 256, 0.1, 0);
        bench_learn("logistic+adam", &s, 22, LD_OPT_ADAM, 256, 0.01, 0);
        bench_snapshot(&s);
    }
    free(s.id);
    free(s.y);
    return 0;
}
