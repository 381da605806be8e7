/* SPDX-License-Identifier: Apache-2.0 */
/* Model state as values: shapes, state allocation, frozen snapshots and
 * their parameter hash, the copy-on-write snapshot of a training model
 * (begin, copy a few blocks per batch or on first write, finish), the
 * champion, and restore. */
#include <math.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "trainer/core.h"

/* ---- Shapes and frozen snapshots ---------------------------------------- */

static void cow_free(struct snap_cow *c);

uint32_t ld_spec_planes(int opt)
{
    switch (opt) {
    case LD_OPT_SGD:
        return 1;
    case LD_OPT_ADAGRAD:
        return 2;
    default:
        return 3;
    }
}

const char *ld_spec_plane_name(int opt, uint32_t plane)
{
    static const char *names[4][3] = {{"w", NULL, NULL},
                                      {"w", "adagrad.g2", NULL},
                                      {"w", "ftrl.z", "ftrl.n"},
                                      {"w", "adam.m", "adam.v"}};
    if (opt < 0 || opt > 3 || plane >= 3)
        return NULL;
    return names[opt][plane];
}

/* Sparse state is read and written at random. With 4 KiB pages a 2^22 model
 * (48 MiB for FTRL) spans 12 288 pages, far more than the TLB holds, so
 * most cold slots cost a page walk on top of the cache miss. Large buffers
 * are therefore 2 MiB aligned and marked for transparent huge pages (the
 * usual `madvise` THP mode only backs regions that ask). Freed with free().
 */
float *ld_state_alloc(size_t n, int zero)
{
    const size_t huge = (size_t)2 << 20;
    size_t bytes = n * sizeof(float);
    if (bytes < huge)
        return zero ? calloc(n ? n : 1, sizeof(float))
                    : malloc(bytes ? bytes : 1);
    void *p = NULL;
    size_t len = (bytes + huge - 1) & ~(huge - 1);
    if (posix_memalign(&p, huge, len) != 0)
        return NULL;
#ifdef MADV_HUGEPAGE
    (void)madvise(p, len, MADV_HUGEPAGE); /* advice only */
#endif
    if (zero)
        memset(p, 0, bytes);
    return p;
}

ld_snapshot_t *ld_snapshot_alloc(const ld_spec_t *spec)
{
    ld_snapshot_t *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    atomic_init(&s->refs, 1);
    s->spec = *spec;
    size_t nslots = (size_t)1 << spec->hash_bits;
    s->sp_n = nslots * spec->k * spec->s;
    s->dn_n = (size_t)spec->s * spec->k * (spec->dense_dim + 1);
    s->sp = ld_state_alloc(s->sp_n, 1);
    s->dn = calloc(s->dn_n, sizeof(float));
    s->dscale = calloc(spec->dense_dim ? spec->dense_dim : 1, sizeof(float));
    s->dstat = calloc(spec->dense_dim ? 3 * (size_t)spec->dense_dim : 1,
                      sizeof(float));
    if (!s->sp || !s->dn || !s->dscale || !s->dstat) {
        ld_snapshot_destroy(s);
        return NULL;
    }
    return s;
}

void ld_snapshot_destroy(ld_snapshot_t *s)
{
    if (!s || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    free(s->sp);
    free(s->dn);
    free(s->dscale);
    free(s->dstat);
    cow_free(s->cow);
    free(s);
}

ld_snapshot_t *ld_snapshot_ref(ld_snapshot_t *s)
{
    atomic_fetch_add(&s->refs, 1);
    return s;
}

void ld_snapshot_counts(const ld_snapshot_t *s, uint64_t out[LD_SAMPLE__COUNT])
{
    memcpy(out, s->by_type, sizeof(s->by_type));
}

void ld_snapshot_params_sha256(const ld_snapshot_t *s, uint8_t out[32])
{
    const ld_spec_t *sp = &s->spec;
    size_t n = s->sp_n / sp->s, d1 = sp->dense_dim + 1;
    float buf[1024];
    ld_sha256_t c;
    ld_sha256_init(&c);
    /* "w": plane 0 of the sparse state, [slot, k] order. */
    for (size_t i = 0; i < n;) {
        size_t m = n - i < 1024 ? n - i : 1024;
        for (size_t j = 0; j < m; j++)
            buf[j] = s->sp[(i + j) * sp->s];
        ld_sha256_update(&c, buf, m * sizeof(float));
        i += m;
    }
    /* "dense_w": k rows of D, then "bias": k values (plane 0). */
    for (uint32_t k = 0; k < sp->k; k++)
        ld_sha256_update(&c, s->dn + k * d1, sp->dense_dim * sizeof(float));
    for (uint32_t k = 0; k < sp->k; k++)
        ld_sha256_update(&c, s->dn + k * d1 + sp->dense_dim, sizeof(float));
    ld_sha256_final(&c, out);
}

/* ---- Copy-on-write snapshots of a training model ------------------------ */

/* The copy-on-write state of a snapshot whose sparse part is being
 * copied from a training model. Every block of the model goes through
 * pend[b]: UNCOPIED (not copied, the model's block is still the snapshot's),
 * BUSY (one thread copies it: the loop before writing it, or the
 * publisher, ld_snapshot_complete), 0 (copied). Whoever moves a block
 * UNCOPIED -> BUSY copies it and stores 0 (release); the loop writes a block
 * only after it read 0 (acquire), so a block is never read while it is
 * written. The snapshot is whole once every block is 0: whole says so
 * after a scan saw each (await_whole). No shared counter: one decremented
 * per block by three threads cost more than the copies. */
enum { PEND_DONE = 0, PEND_UNCOPIED = 1, PEND_BUSY = 2 };

typedef struct snap_cow {
    _Atomic uint8_t *pend;
    int own_pend; /* pend allocated for this snapshot (shared) */
    atomic_int whole;
    const float *src; /* the model's sparse state, its layout below */
    size_t nblocks;
    uint32_t bshift, k, s;
    int lazy;
    hp_t lz;
} snap_cow_t;

static void cow_free(snap_cow_t *c)
{
    if (c && c->own_pend)
        free((void *)c->pend);
    free(c);
}

/* Slots [from, from + n) of the lazy layout into the plain (w, z, n)
 * layout at dst. */
static void lazy_to_plain(const snap_cow_t *c, size_t from, size_t n,
                          float *dst)
{
    const float *src = c->src + from * LAZY_SS;
    size_t i = 0;
#ifdef __SSE2__
    /* Four slots are 12 output floats, three aligned vectors (dst is 16
     * byte aligned and the blocks hold a multiple of 4 slots); streaming
     * stores as in copy_one. */
    if (n % 4 == 0 && ((uintptr_t)dst & 15) == 0) {
        for (; i < n; i += 4, src += 4 * LAZY_SS, dst += 12) {
            __m128 z = _mm_load_ps(src), nn = _mm_load_ps(src + 4),
                   wb = _mm_load_ps(src + 8), tg = _mm_load_ps(src + 12);
            _MM_TRANSPOSE4_PS(z, nn, wb, tg);
            __m128 w = ftrl_w4(z, _mm_sqrt_ps(nn), &c->lz);
            __m128 t0 = _mm_unpacklo_ps(w, z); /* w0 z0 w1 z1 */
            __m128 t1 = _mm_unpackhi_ps(w, z); /* w2 z2 w3 z3 */
            __m128 u = _mm_shuffle_ps(nn, t0, _MM_SHUFFLE(2, 2, 0, 0));
            __m128 v = _mm_shuffle_ps(t0, nn, _MM_SHUFFLE(1, 1, 3, 3));
            __m128 x = _mm_shuffle_ps(nn, t1, _MM_SHUFFLE(2, 2, 2, 2));
            __m128 y = _mm_shuffle_ps(t1, nn, _MM_SHUFFLE(3, 3, 3, 3));
            _mm_stream_ps(dst, _mm_shuffle_ps(t0, u, _MM_SHUFFLE(2, 0, 1, 0)));
            _mm_stream_ps(dst + 4,
                          _mm_shuffle_ps(v, t1, _MM_SHUFFLE(1, 0, 2, 0)));
            _mm_stream_ps(dst + 8,
                          _mm_shuffle_ps(x, y, _MM_SHUFFLE(2, 0, 2, 0)));
        }
        return;
    }
#endif
    for (; i < n; i++, src += LAZY_SS, dst += 3) {
        dst[0] = ftrl_w(src[0], sqrtf(src[1]), &c->lz);
        dst[1] = src[0];
        dst[2] = src[1];
    }
}

/* Copies block b of the model into dst, the snapshot's sparse state. */
static void copy_one(const snap_cow_t *c, float *dst, size_t b)
{
    size_t n = (size_t)1 << c->bshift;
    if (c->lazy) {
        lazy_to_plain(c, b * n, n, dst + b * n * 3);
        return;
    }
    size_t per = n * c->k * c->s;
    const float *src = c->src + b * per;
    dst += b * per;
#ifdef __SSE2__
    /* A block of 16 slots is a whole number of 64-byte lines. Streaming
     * stores write them without first reading each destination line
     * (copy-on-write targets are random lines of a cold buffer) and keep
     * the snapshot out of the cache the training loop lives in. Both
     * buffers are 16-byte aligned (malloc / ld_state_alloc). */
    if (per % 16 == 0) {
        for (size_t i = 0; i < per; i += 4)
            _mm_stream_ps(dst + i, _mm_load_ps(src + i));
        return;
    }
#endif
    memcpy(dst, src, per * sizeof(float));
}

/* Copies block b into s unless another thread did; if one is copying it,
 * waits for it (wait: one block, well under a microsecond, unless that
 * thread lost its core) or returns. 1 if this call copied it. */
static int claim(ld_snapshot_t *s, size_t b, int wait)
{
    snap_cow_t *c = s->cow;
    unsigned spins = 0;
    uint8_t v = atomic_load_explicit(&c->pend[b], memory_order_acquire);
    while (v != PEND_DONE) {
        if (v == PEND_UNCOPIED) {
            if (!atomic_compare_exchange_weak_explicit(
                    &c->pend[b], &v, PEND_BUSY, memory_order_acquire,
                    memory_order_acquire))
                continue;
            copy_one(c, s->sp, b);
#ifdef __SSE2__
            _mm_sfence(); /* the streaming stores before the release */
#endif
            atomic_store_explicit(&c->pend[b], PEND_DONE, memory_order_release);
            return 1;
        }
        if (!wait)
            return 0;
        if (++spins > 64)
            sched_yield();
#ifdef __SSE2__
        else
            _mm_pause();
#endif
        v = atomic_load_explicit(&c->pend[b], memory_order_acquire);
    }
    return 0;
}

/* Copies every block nobody took, skipping those another thread copies:
 * the copier goes up from the first block, the publisher down from the
 * last, so they meet once instead of contending for every block. */
static void take_all(ld_snapshot_t *s, int down)
{
    snap_cow_t *c = s->cow;
    for (size_t i = 0; i < c->nblocks; i++) {
        size_t b = down ? c->nblocks - 1 - i : i;
        if (atomic_load_explicit(&c->pend[b], memory_order_relaxed) ==
            PEND_UNCOPIED)
            (void)claim(s, b, 0);
    }
}

/* Waits until every block is copied (copying any still UNCOPIED) and says the
 * snapshot is whole. */
static void await_whole(ld_snapshot_t *s)
{
    snap_cow_t *c = s->cow;
    for (size_t b = 0; b < c->nblocks; b++)
        (void)claim(s, b, 1);
    atomic_store_explicit(&c->whole, 1, memory_order_release);
}

static int is_whole(const snap_cow_t *c)
{
    return atomic_load_explicit(&c->whole, memory_order_acquire);
}

int copy_block(ld_trainer_t *t, size_t b)
{
    return claim(t->snap, b, 1);
}

void ld_snapshot_complete(ld_snapshot_t *s)
{
    snap_cow_t *c = s ? s->cow : NULL;
    if (!c || is_whole(c))
        return;
    take_all(s, 1);
    await_whole(s);
}

static void snap_complete(ld_trainer_t *t)
{
    t->pend = NULL;
    if (t->shared) {
        ld_snapshot_destroy(t->snap); /* the trainer's reference */
    } else {
        t->done = t->snap;
    }
    t->snap = NULL;
    /* The next spare is faulted in now, not during this snapshot's copy,
     * where it would compete for memory bandwidth. */
    if (!t->prep_running)
        prep_start(t);
}

/* Copies up to budget pending blocks, in slot order. */
void snap_step(ld_trainer_t *t, size_t budget)
{
    snap_cow_t *c = t->snap->cow;
    if (!t->shared) {
        /* Nobody else copies: past the last block, every one is. */
        while (t->cursor < c->nblocks && budget) {
            if (atomic_load_explicit(&c->pend[t->cursor],
                                     memory_order_relaxed) &&
                claim(t->snap, t->cursor, 1)) {
                t->st.snapshot_blocks_steps++;
                budget--;
            }
            t->cursor++;
        }
        if (t->cursor == c->nblocks)
            atomic_store_explicit(&c->whole, 1, memory_order_release);
    }
    if (is_whole(c))
        snap_complete(t);
}

void snap_finish_pending(ld_trainer_t *t)
{
    if (!t->snap)
        return;
    ld_snapshot_complete(t->snap);
    snap_complete(t);
}

typedef struct prep_arg {
    ld_trainer_t *t;
    size_t n;
} prep_arg_t;

static void *prep_main(void *arg)
{
    prep_arg_t *a = arg;
    float *buf = ld_state_alloc(a->n, 0);
    /* Fault every page in. A plain memset(0) after malloc is turned into
     * calloc by the compiler, which leaves fresh pages unmapped. */
    volatile char *p = (volatile char *)buf;
    for (size_t i = 0; buf && i < a->n * sizeof(float); i += 4096)
        p[i] = 0;
    ld_trainer_t *t = a->t;
    free(a);
    t->spare = buf; /* read by the trainer only after pthread_join */
    atomic_store_explicit(&t->spare_ready, 1, memory_order_release);
    return NULL;
}

/* Starts preparing the next spare buffer in the background. */
void prep_start(ld_trainer_t *t)
{
    prep_arg_t *a = malloc(sizeof(*a));
    if (!a)
        return;
    a->t = t;
    a->n = t->snap_n;
    atomic_store_explicit(&t->spare_ready, 0, memory_order_relaxed);
    if (pthread_create(&t->prep, NULL, prep_main, a) != 0) {
        free(a);
        return;
    }
    t->prep_running = 1;
}

/* Takes the spare buffer, waiting for the helper if it is still faulting
 * it in: that only happens within a few ms of startup or of the previous
 * snapshot (more on a VM touching fresh memory), and faulting a fresh
 * buffer in here instead would cost the same work, all in the first
 * batches of the copy (their copy-on-write writes land on every page).
 * A shared snapshot does not wait: the publisher copies most blocks and
 * faults their pages in on its own thread. NULL: none ready. */
static float *take_spare(ld_trainer_t *t, int wait)
{
    if (t->prep_running) {
        if (!wait &&
            !atomic_load_explicit(&t->spare_ready, memory_order_acquire))
            return NULL;
        pthread_join(t->prep, NULL);
        t->prep_running = 0;
    }
    float *b = t->spare;
    t->spare = NULL;
    return b;
}

static ld_err_t snapshot_begin(ld_trainer_t *t, int shared)
{
    ld_snapshot_t *s = calloc(1, sizeof(*s));
    snap_cow_t *c = calloc(1, sizeof(*c));
    if (!s || !c) {
        free(s);
        free(c);
        return LD_ERR_NOMEM;
    }
    atomic_init(&s->refs, 1);
    s->cow = c;
    s->spec = t->spec;
    s->sp_n = t->snap_n;
    s->dn_n = t->dn_n;
    /* Every byte is overwritten by the copy; a pre-faulted spare keeps
     * page faults out of the training thread. */
    s->sp = take_spare(t, !shared);
    if (!s->sp)
        s->sp = ld_state_alloc(s->sp_n, 0);
    s->dn = malloc(s->dn_n * sizeof(float));
    s->dscale = malloc(t->d1 * sizeof(float));
    s->dstat = malloc(3 * (size_t)t->d1 * sizeof(float));
    c->own_pend = shared;
    c->pend = shared ? malloc(t->nblocks) : (_Atomic uint8_t *)t->pend_buf;
    if (!s->sp || !s->dn || !s->dscale || !s->dstat || !c->pend) {
        ld_snapshot_destroy(s);
        return LD_ERR_NOMEM;
    }
    c->src = t->sp;
    c->nblocks = t->nblocks;
    c->bshift = t->bshift;
    c->k = t->k;
    c->s = t->s;
    c->lazy = t->lazy;
    c->lz = t->lz;
    /* Before any other thread sees it (the publisher's queue lock). */
    memset((void *)c->pend, PEND_UNCOPIED, t->nblocks);
    atomic_init(&c->whole, 0);
    memcpy(s->dn, t->dn, s->dn_n * sizeof(float));
    memcpy(s->dscale, t->dscale, (t->d1 - 1) * sizeof(float));
    memcpy(s->dstat, t->dstat, 3 * (t->d1 - 1) * sizeof(float));
    s->step = t->step;
    s->examples = t->st.examples;
    memcpy(s->by_type, t->st.by_type, sizeof(s->by_type));
    ld_window_metrics(&t->win, t->spec.model, &s->metrics);
    ld_window_metrics(&t->cwin, t->spec.model, &s->champion_metrics);
    t->pend = c->pend;
    t->snap = s;
    t->shared = shared;
    t->cursor = 0;
    return LD_OK;
}

ld_err_t ld_trainer_snapshot_begin(ld_trainer_t *t)
{
    if (t->snap && t->shared)
        snap_finish_pending(t);
    if (t->snap || t->done)
        return LD_ERR_INVAL;
    return snapshot_begin(t, 0);
}

static void *copier_main(void *arg)
{
    ld_snapshot_t *s = arg;
    take_all(s, 0);
    await_whole(s);
    ld_snapshot_destroy(s);
    return NULL;
}

void copier_join(ld_trainer_t *t)
{
    if (t->copier_running) {
        pthread_join(t->copier, NULL);
        t->copier_running = 0;
    }
}

ld_snapshot_t *ld_trainer_snapshot_shared(ld_trainer_t *t)
{
    if (t->snap && t->shared)
        snap_finish_pending(t);
    if (t->snap || t->done)
        return NULL;
    copier_join(t); /* done: its snapshot is whole */
    if (snapshot_begin(t, 1) != LD_OK)
        return NULL;
    /* The copy starts now on a thread of its own (bench_e2e at 2^22 on a
     * loaded host: left to the niced publisher, the copy stayed pending
     * long enough to double the loop's median latency); without one the
     * publisher's ld_snapshot_complete() does it all. */
    ld_snapshot_t *ref = ld_snapshot_ref(t->snap);
    if (pthread_create(&t->copier, NULL, copier_main, ref) == 0)
        t->copier_running = 1;
    else
        ld_snapshot_destroy(ref);
    return ld_snapshot_ref(t->snap);
}

ld_snapshot_t *ld_trainer_snapshot_poll(ld_trainer_t *t)
{
    if (t->snap && !t->shared)
        snap_step(t, t->step_blocks);
    ld_snapshot_t *d = t->done;
    t->done = NULL;
    return d;
}

ld_snapshot_t *ld_trainer_snapshot_finish(ld_trainer_t *t)
{
    if (t->snap && !t->shared)
        snap_step(t, SIZE_MAX);
    ld_snapshot_t *d = t->done;
    t->done = NULL;
    return d;
}

ld_snapshot_t *ld_trainer_snapshot(ld_trainer_t *t)
{
    if (ld_trainer_snapshot_begin(t) != LD_OK)
        return NULL;
    return ld_trainer_snapshot_finish(t);
}

static int same_shape(const ld_spec_t *a, const ld_spec_t *b)
{
    return a->model == b->model && a->k == b->k &&
           a->hash_bits == b->hash_bits && a->dense_dim == b->dense_dim &&
           a->s == b->s;
}

ld_err_t ld_trainer_champion_set(ld_trainer_t *t, ld_snapshot_t *s)
{
    if (s && !same_shape(&t->spec, &s->spec))
        return LD_ERR_INVAL;
    ld_snapshot_destroy(t->champ);
    t->champ = s ? ld_snapshot_ref(s) : NULL;
    ld_window_clear(&t->cwin);
    return LD_OK;
}

const char *ld_spec_mismatch(const ld_spec_t *a, const ld_spec_t *b)
{
    if (a->model != b->model)
        return "model kind";
    if (a->k != b->k)
        return "num_classes";
    if (a->hash_bits != b->hash_bits)
        return "hash_bits";
    if (a->dense_dim != b->dense_dim)
        return "dense_dim";
    if (a->opt != b->opt || a->s != b->s)
        return "optimizer";
    return NULL;
}

const ld_spec_t *ld_trainer_spec(const ld_trainer_t *t)
{
    return &t->spec;
}

ld_err_t ld_trainer_restore(ld_trainer_t *t, const ld_snapshot_t *s,
                            char *errstr, size_t errstr_size)
{
    const char *why = ld_spec_mismatch(&t->spec, &s->spec);
    if (why) {
        if (errstr && errstr_size)
            snprintf(errstr, errstr_size,
                     "checkpoint differs from the config in %s; start with "
                     "--from-scratch or restore the old config",
                     why);
        return LD_ERR_CONFIG;
    }
    if (t->snap)
        return LD_ERR_INVAL;
    if (t->lazy) {
        /* The stored weights are not needed: the closed form of (z, n)
         * gives them back (with this config's hyperparameters). */
        for (size_t i = 0; i < t->nslots; i++) {
            float *c = t->sp + i * LAZY_SS;
            c[0] = s->sp[i * 3 + 1];
            c[1] = s->sp[i * 3 + 2];
            c[2] = c[3] = 0.0f; /* tag 0: no batch */
        }
        t->tick = 0;
    } else {
        memcpy(t->sp, s->sp, t->sp_n * sizeof(float));
    }
    memcpy(t->dn, s->dn, t->dn_n * sizeof(float));
    memcpy(t->dscale, s->dscale, (t->d1 - 1) * sizeof(float));
    memcpy(t->dstat, s->dstat, 3 * (t->d1 - 1) * sizeof(float));
    /* State kept in another normalization's units goes back to raw units
     * (predictions unchanged); this mode then converts it on its own. */
    if (t->dnorm != LD_DNORM_MAXABS)
        dense_to_raw(t);
    if (t->dnorm != LD_DNORM_STANDARD)
        std_to_raw(t);
    t->step = s->step;
    t->st.examples = s->examples;
    memcpy(t->st.by_type, s->by_type, sizeof(s->by_type));
    memset(t->dirty, 0xff, t->dwords * sizeof(*t->dirty));
    t->dall = 1;
    t->bn = 0;
    t->nnz_n = 0;
    t->eid_n = 0;
    ld_window_clear(&t->win);
    ld_window_clear(&t->cwin);
    return LD_OK;
}

/* ---- Dirty blocks ------------------------------------------------------- */

size_t ld_trainer_state_blocks(const ld_trainer_t *t)
{
    return t->dblocks;
}

uint32_t ld_trainer_state_block_slots(const ld_trainer_t *t)
{
    return 1u << t->dshift;
}

size_t ld_trainer_state_block_floats(const ld_trainer_t *t)
{
    return ((size_t)1 << t->dshift) * t->k * t->s;
}

uint32_t ld_trainer_block_dirty_rows(const ld_trainer_t *t, size_t b)
{
    uint32_t n = 1u << t->dshift;
    uint64_t all = ((uint64_t)1 << n) - 1;
    if (!t->lazy) {
        size_t r = b << t->dshift;
        return (uint32_t)(t->dirty[r >> 6] >> (r & 63) & all);
    }
    if (!(t->dirty[b >> 6] >> (b & 63) & 1))
        return 0;
    if (t->dall)
        return (uint32_t)all;
    const float *c = t->sp + (b << t->dshift) * LAZY_SS;
    uint32_t m = 0;
    for (uint32_t j = 0; j < n; j++, c += LAZY_SS)
        m |= (uint32_t)(tag_of(c) >= t->ctick) << j;
    return m;
}

int ld_trainer_block_dirty(const ld_trainer_t *t, size_t b)
{
    return ld_trainer_block_dirty_rows(t, b) != 0;
}

void ld_trainer_dirty_clear(ld_trainer_t *t)
{
    memset(t->dirty, 0, t->dwords * sizeof(*t->dirty));
    /* The next chunk's tick is tick + 1 (lazy_pass). */
    t->ctick = t->tick + 1;
    t->dall = 0;
}

void ld_trainer_state_block(const ld_trainer_t *t, size_t b, float *out)
{
    size_t n = (size_t)1 << t->dshift;
    if (t->lazy) {
        /* The scalar form of lazy_to_plain: out is small and not aligned
         * for streaming stores. */
        const float *src = t->sp + b * n * LAZY_SS;
        for (size_t i = 0; i < n; i++, src += LAZY_SS, out += 3) {
            out[0] = ftrl_w(src[0], sqrtf(src[1]), &t->lz);
            out[1] = src[0];
            out[2] = src[1];
        }
        return;
    }
    size_t per = n * t->k * t->s;
    memcpy(out, t->sp + b * per, per * sizeof(float));
}

int ld_trainer_state_w_derived(const ld_trainer_t *t)
{
    return t->spec.opt == LD_OPT_FTRL;
}

uint32_t ld_trainer_state_block_zn(const ld_trainer_t *t, size_t b, float *out)
{
    size_t n = (size_t)1 << t->dshift;
    if (t->lazy) {
        /* The lazy layout stores no weight: it is the closed form. */
        const float *src = t->sp + b * n * LAZY_SS;
        for (size_t i = 0; i < n; i++, src += LAZY_SS, out += 3) {
            out[0] = 0.0f;
            out[1] = src[0];
            out[2] = src[1];
        }
        return 0;
    }
    /* The plain layout stores each step's weight, which is the closed form
     * (opt_step's FTRL case computes it with ftrl_w's operations), but a
     * restore copies a checkpoint's weights as they are: under other
     * hyperparameters those stay until their slot is trained again. */
    ld_trainer_state_block(t, b, out);
    uint32_t keep = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t differ = 0;
        for (uint32_t kk = 0; kk < t->k; kk++) {
            float *c = out + (i * t->k + kk) * 3;
            float w = ftrl_w(c[1], sqrtf(c[2]), &t->lz);
            differ |= memcmp(&w, c, sizeof(w)) != 0;
        }
        if (differ)
            keep |= 1u << i;
        else
            for (uint32_t kk = 0; kk < t->k; kk++)
                out[(i * t->k + kk) * 3] = 0.0f;
    }
    return keep;
}

ld_err_t ld_snapshot_derive_w(ld_snapshot_t *s, const uint8_t *keep)
{
    const ld_spec_t *sp = &s->spec;
    if (sp->opt != LD_OPT_FTRL || sp->s != 3 || !s->sp)
        return LD_ERR_INVAL;
    /* make_hp's FTRL constants: they do not depend on the step. */
    hp_t h = {0};
    h.l1 = (float)sp->l1;
    h.l2 = (float)sp->l2;
    h.beta = (float)sp->beta;
    h.inv_alpha = (float)(1.0 / sp->lr);
    size_t nslots = s->sp_n / ((size_t)sp->k * 3);
    for (size_t i = 0; i < nslots; i++) {
        if (keep && keep[i >> 3] >> (i & 7) & 1)
            continue;
        float *c = s->sp + i * sp->k * 3;
        for (uint32_t kk = 0; kk < sp->k; kk++, c += 3)
            c[0] = ftrl_w(c[1], sqrtf(c[2]), &h);
    }
    return LD_OK;
}

ld_snapshot_t *ld_trainer_state_head(ld_trainer_t *t)
{
    ld_snapshot_t *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    atomic_init(&s->refs, 1);
    s->spec = t->spec;
    s->dn_n = t->dn_n;
    s->dn = malloc(s->dn_n * sizeof(float));
    s->dscale = malloc(t->d1 * sizeof(float));
    s->dstat = malloc(3 * (size_t)t->d1 * sizeof(float));
    if (!s->dn || !s->dscale || !s->dstat) {
        ld_snapshot_destroy(s);
        return NULL;
    }
    memcpy(s->dn, t->dn, s->dn_n * sizeof(float));
    memcpy(s->dscale, t->dscale, (t->d1 - 1) * sizeof(float));
    memcpy(s->dstat, t->dstat, 3 * (t->d1 - 1) * sizeof(float));
    s->step = t->step;
    s->examples = t->st.examples;
    memcpy(s->by_type, t->st.by_type, sizeof(s->by_type));
    ld_window_metrics(&t->win, t->spec.model, &s->metrics);
    ld_window_metrics(&t->cwin, t->spec.model, &s->champion_metrics);
    return s;
}

int ld_snapshot_has_sparse(const ld_snapshot_t *s)
{
    return s->sp != NULL;
}

float *ld_snapshot_sparse(ld_snapshot_t *s, size_t *n)
{
    *n = s->sp_n;
    return s->sp;
}
