/* SPDX-License-Identifier: Apache-2.0 */
/* The ingest thread and its single-producer single-consumer ring. */
#define _GNU_SOURCE /* pthread_setname_np */
#include "daemon/ingest.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MOD "ingest"

/* Not handed out: the loop meets it inside ld_ingest_next(). */
#define WHAT_BARRIER 99

/* Each side publishes its index every this many items, not for each (the
 * shared cache line bounced between the cores per record), and a sleeping
 * side is woken only then: a wake-up costs two context switches, more than
 * the loop spends on a record. A side also publishes before it waits, and
 * the thread before it blocks in a poll, so nothing is held back. */
#define BATCH 32

enum { BARRIER_NONE = 0, BARRIER_ARRIVED, BARRIER_RELEASED };

/* An item and the buffers its record points into (grown, never shrunk:
 * after the first few records no hand-over allocates). */
typedef struct slot {
    ld_ingest_item_t item;
    char *key;
    size_t keycap;
    uint32_t *idx;
    float *val;
    uint32_t nzcap;
    float *dense;
    uint32_t dcap;
    ld_packed_t packed;
} slot_t;

/* A cache line: what one side writes per item must not share a line with
 * what the other side reads per item. head_local sat next to tail_local:
 * each record the thread wrote took the loop's line away, and the loop's
 * ld_ingest_done() (one increment) was 1.4 % of its samples in a replay,
 * all on that load (#18). */
#define LINE 64

struct ld_ingest {
    ld_pipeline_t *p;
    uint32_t cap;
    slot_t *slots;
    /* a side about to sleep sets its flag under mu; the other side signals
     * only when it sees it, so the common case takes no lock */
    atomic_int loop_waits, thread_waits;
    atomic_int pause_req, stop_req;
    int barrier; /* under mu */
    /* ld_ingest_pause() calls, under mu: a park asked for again while the
     * thread still waits in the last one gets its own PAUSED */
    unsigned pauses;
    pthread_mutex_t mu;
    pthread_cond_t items, space, ctl;
    pthread_t thread;
    int started;
    ld_packer_t *packer; /* NULL: features are copied unpacked */
    /* head: slots the thread has published; tail: slots the loop has
     * released. Each is written by one side only, every BATCH items. */
    _Alignas(LINE) _Atomic uint64_t head;
    _Alignas(LINE) _Atomic uint64_t tail;
    _Alignas(LINE) uint64_t head_local, tail_seen; /* thread side */
    _Alignas(LINE) uint64_t tail_local, head_seen; /* loop side */
};

/* The ingest this thread runs, so callbacks know where they are called. */
static _Thread_local ld_ingest_t *on_thread;

static void deadline_in(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static int passed(const struct timespec *dl)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > dl->tv_sec ||
           (now.tv_sec == dl->tv_sec && now.tv_nsec >= dl->tv_nsec);
}

/* ---- Thread side -------------------------------------------------------- */

/* Hands over what was filled and wakes the loop if it sleeps. */
static void flush_head(ld_ingest_t *in)
{
    if (atomic_load_explicit(&in->head, memory_order_relaxed) == in->head_local)
        return;
    atomic_store(&in->head, in->head_local);
    if (atomic_load(&in->loop_waits)) {
        pthread_mutex_lock(&in->mu);
        pthread_cond_signal(&in->items);
        pthread_mutex_unlock(&in->mu);
    }
}

/* The slot to fill next, waiting for space: the back-pressure that stops
 * polling (and so fetching) while the loop is behind. */
static slot_t *claim(ld_ingest_t *in)
{
    uint64_t h = in->head_local;
    if (h - in->tail_seen >= in->cap)
        in->tail_seen = atomic_load(&in->tail);
    while (h - in->tail_seen >= in->cap) {
        struct timespec dl;
        flush_head(in);
        deadline_in(&dl, 100);
        pthread_mutex_lock(&in->mu);
        atomic_store(&in->thread_waits, 1);
        if (h - atomic_load(&in->tail) >= in->cap)
            pthread_cond_timedwait(&in->space, &in->mu, &dl);
        atomic_store(&in->thread_waits, 0);
        pthread_mutex_unlock(&in->mu);
        in->tail_seen = atomic_load(&in->tail);
    }
    return &in->slots[h % in->cap];
}

static void publish(ld_ingest_t *in, int force)
{
    in->head_local++;
    if (force || in->head_local % BATCH == 0)
        flush_head(in);
}

static void push_mark(ld_ingest_t *in, int what, ld_err_t err)
{
    slot_t *s = claim(in);
    memset(&s->item.rec, 0, sizeof(s->item.rec));
    s->item.what = (ld_ingest_what_t)what;
    s->item.err = err;
    s->item.packed = NULL;
    publish(in, 1);
}

/* Resizes *buf to need elements of size bytes. */
static int grow(void **buf, size_t need, size_t size)
{
    void *g = realloc(*buf, need * size);
    if (!g)
        return -1;
    *buf = g;
    return 0;
}

static size_t pow2_at_least(size_t n)
{
    size_t c = 64;
    while (c < n)
        c *= 2;
    return c;
}

/* Copies rec's features into s's own arrays (grown as needed) and points
 * x at them. */
static ld_err_t copy_features(slot_t *s, const ld_features_t *from,
                              ld_features_t *x)
{
    if (from->nnz > s->nzcap) {
        size_t n = pow2_at_least(from->nnz);
        if (grow((void **)&s->idx, n, sizeof(uint32_t)) ||
            grow((void **)&s->val, n, sizeof(float)))
            return LD_ERR_NOMEM;
        s->nzcap = (uint32_t)n;
    }
    if (from->ndense > s->dcap) {
        size_t n = pow2_at_least(from->ndense);
        if (grow((void **)&s->dense, n, sizeof(float)))
            return LD_ERR_NOMEM;
        s->dcap = (uint32_t)n;
    }
    if (from->nnz) {
        memcpy(s->idx, from->idx, from->nnz * sizeof(uint32_t));
        memcpy(s->val, from->val, from->nnz * sizeof(float));
    }
    if (from->ndense)
        memcpy(s->dense, from->dense, from->ndense * sizeof(float));
    *x = (ld_features_t){s->idx, s->val, s->dense, from->nnz, from->ndense};
    return LD_OK;
}

/* Copies rec (borrowed from the decoder until the next poll) into a slot,
 * an event's features packed for the joiner when the ingest packs. */
static ld_err_t push_record(ld_ingest_t *in, const ld_record_t *rec)
{
    slot_t *s = claim(in);
    s->item.packed = NULL;
    s->item.rec = *rec;
    if (in->packer && rec->kind == LD_RECORD_EVENT) {
        ld_err_t err = ld_packer_pack(in->packer, &rec->x, &s->packed);
        if (err == LD_ERR_NOMEM)
            return err;
        if (!err) /* else copied as is: the joiner says what is wrong */
            s->item.packed = &s->packed;
    }
    if ((size_t)rec->key_len + 1 > s->keycap) {
        size_t n = pow2_at_least((size_t)rec->key_len + 1);
        if (grow((void **)&s->key, n, 1))
            return LD_ERR_NOMEM;
        s->keycap = n;
    }
    if (rec->key_len)
        memcpy(s->key, rec->key, rec->key_len);
    s->key[rec->key_len] = '\0';
    s->item.rec.key = s->key;
    if (s->item.packed)
        memset(&s->item.rec.x, 0, sizeof(s->item.rec.x));
    else if (copy_features(s, &rec->x, &s->item.rec.x))
        return LD_ERR_NOMEM;
    s->item.what = LD_INGEST_RECORD;
    s->item.err = LD_OK;
    publish(in, 0);
    return LD_OK;
}

/* Hands the loop CAUGHT_UP when the pipeline just became caught up; 1 if
 * it did. */
static int note_caught_up(ld_ingest_t *in, int *caught)
{
    /* cheap: recomputed only when an end of partition was seen */
    int c = ld_pipeline_caught_up(in->p);
    int news = c && !*caught;
    if (news)
        push_mark(in, LD_INGEST_CAUGHT_UP, LD_OK);
    *caught = c;
    return news;
}

static void *thread_main(void *arg)
{
    ld_ingest_t *in = arg;
    on_thread = in;
    pthread_setname_np(pthread_self(), "learnd-ingest"); /* top -H, perf */
    ld_err_t end = LD_OK;
    int caught = 0;
    while (!atomic_load(&in->stop_req)) {
        if (atomic_load(&in->pause_req)) {
            /* A resume and the next pause can both come before this thread
             * wakes: it then still sees pause_req set, and without a
             * PAUSED for that second park the loop waited for one for
             * ever (bench_e2e in process, loaded host: loop PARKING, ring
             * empty, this thread parked). Each park gets its PAUSED. */
            pthread_mutex_lock(&in->mu);
            unsigned park = in->pauses;
            pthread_mutex_unlock(&in->mu);
            push_mark(in, LD_INGEST_PAUSED, LD_OK);
            pthread_mutex_lock(&in->mu);
            while (atomic_load(&in->pause_req) && !atomic_load(&in->stop_req) &&
                   in->pauses == park)
                pthread_cond_wait(&in->ctl, &in->mu);
            pthread_mutex_unlock(&in->mu);
            continue;
        }
        /* Nothing waiting in the consumer's queue: hand over what is
         * published before blocking in the poll. Not when the input just
         * ended, nor when a park or stop is asked for meanwhile: the loop
         * acts on those at once instead of after a 100 ms wait for records
         * that are not coming (~100-200 ms of a 1 s replay, #18;
         * ld_ingest_pause() also cuts a wait short). */
        ld_record_t rec;
        ld_err_t err = ld_pipeline_poll(in->p, 0, &rec);
        if (err == LD_ERR_TIMEOUT) {
            flush_head(in);
            if (!note_caught_up(in, &caught) && !atomic_load(&in->pause_req) &&
                !atomic_load(&in->stop_req))
                err = ld_pipeline_poll(in->p, 100, &rec);
        }
        if (err == LD_OK)
            err = push_record(in, &rec);
        if (err && err != LD_ERR_TIMEOUT) {
            end = err;
            break;
        }
        note_caught_up(in, &caught);
    }
    push_mark(in, LD_INGEST_STOPPED, end);
    on_thread = NULL;
    return NULL;
}

void ld_ingest_note_dead(ld_ingest_t *in, const char *topic, int32_t partition,
                         int64_t offset)
{
    if (!in || on_thread != in)
        return;
    slot_t *s = claim(in);
    memset(&s->item.rec, 0, sizeof(s->item.rec));
    s->item.what = LD_INGEST_DEAD;
    s->item.err = LD_OK;
    s->item.packed = NULL;
    s->item.rec.topic = topic;
    s->item.rec.partition = partition;
    s->item.rec.offset = offset;
    publish(in, 0);
}

void ld_ingest_exclusive_begin(ld_ingest_t *in)
{
    if (!in || on_thread != in)
        return;
    push_mark(in, WHAT_BARRIER, LD_OK);
    pthread_mutex_lock(&in->mu);
    while (in->barrier != BARRIER_ARRIVED)
        pthread_cond_wait(&in->ctl, &in->mu);
    pthread_mutex_unlock(&in->mu);
}

void ld_ingest_exclusive_end(ld_ingest_t *in)
{
    if (!in || on_thread != in)
        return;
    pthread_mutex_lock(&in->mu);
    in->barrier = BARRIER_RELEASED;
    pthread_cond_broadcast(&in->ctl);
    pthread_mutex_unlock(&in->mu);
}

/* ---- Loop side ---------------------------------------------------------- */

/* The loop holds still while the thread's callback works on its state. */
static void at_barrier(ld_ingest_t *in)
{
    pthread_mutex_lock(&in->mu);
    in->barrier = BARRIER_ARRIVED;
    pthread_cond_broadcast(&in->ctl);
    while (in->barrier != BARRIER_RELEASED)
        pthread_cond_wait(&in->ctl, &in->mu);
    in->barrier = BARRIER_NONE;
    pthread_mutex_unlock(&in->mu);
}

/* Releases what the loop is done with and wakes the thread if it waits
 * for space. */
static void flush_tail(ld_ingest_t *in)
{
    if (atomic_load_explicit(&in->tail, memory_order_relaxed) == in->tail_local)
        return;
    atomic_store(&in->tail, in->tail_local);
    if (atomic_load(&in->thread_waits)) {
        pthread_mutex_lock(&in->mu);
        pthread_cond_signal(&in->space);
        pthread_mutex_unlock(&in->mu);
    }
}

const ld_ingest_item_t *ld_ingest_next(ld_ingest_t *in, int timeout_ms)
{
    struct timespec dl;
    int have_dl = 0;
    for (;;) {
        uint64_t t = in->tail_local;
        if (in->head_seen == t)
            in->head_seen =
                atomic_load_explicit(&in->head, memory_order_acquire);
        if (in->head_seen != t) {
            slot_t *s = &in->slots[t % in->cap];
            if ((int)s->item.what != WHAT_BARRIER)
                return &s->item;
            ld_ingest_done(in);
            flush_tail(in);
            at_barrier(in);
            continue;
        }
        flush_tail(in); /* about to wait: the thread may wait for space */
        if (!have_dl) {
            deadline_in(&dl, timeout_ms);
            have_dl = 1;
        } else if (passed(&dl)) {
            return NULL;
        }
        pthread_mutex_lock(&in->mu);
        atomic_store(&in->loop_waits, 1);
        if (atomic_load(&in->head) == t)
            pthread_cond_timedwait(&in->items, &in->mu, &dl);
        atomic_store(&in->loop_waits, 0);
        pthread_mutex_unlock(&in->mu);
    }
}

void ld_ingest_done(ld_ingest_t *in)
{
    if (++in->tail_local % BATCH == 0)
        flush_tail(in);
}

static void set_flag(ld_ingest_t *in, atomic_int *flag, int v)
{
    pthread_mutex_lock(&in->mu);
    if (flag == &in->pause_req && v)
        in->pauses++;
    atomic_store(flag, v);
    pthread_cond_broadcast(&in->ctl);
    pthread_mutex_unlock(&in->mu);
    /* The thread may sit in a poll of up to 100 ms for records: a park
     * (each commit point) or the stop at the end of the input waited that
     * out, ~200 ms of a 1 s replay of the few profile (#18). */
    if (v && in->p)
        ld_pipeline_wake(in->p);
}

void ld_ingest_pause(ld_ingest_t *in)
{
    set_flag(in, &in->pause_req, 1);
}

void ld_ingest_resume(ld_ingest_t *in)
{
    set_flag(in, &in->pause_req, 0);
}

void ld_ingest_stop(ld_ingest_t *in)
{
    set_flag(in, &in->stop_req, 1);
}

/* ---- Lifetime ----------------------------------------------------------- */

ld_ingest_t *ld_ingest_new(ld_pipeline_t *p, uint32_t capacity, int pack)
{
    /* aligned: the struct's cache lines (LINE) are its own */
    ld_ingest_t *in = aligned_alloc(LINE, sizeof(*in));
    if (!in)
        return NULL;
    memset(in, 0, sizeof(*in));
    if (pack && !(in->packer = ld_packer_new())) {
        free(in);
        return NULL;
    }
    in->p = p;
    in->cap = capacity ? capacity : 1;
    in->slots = calloc(in->cap, sizeof(*in->slots));
    pthread_condattr_t ca;
    int ok = in->slots && pthread_condattr_init(&ca) == 0;
    if (ok) {
        /* deadlines on the monotonic clock: wall-clock steps must not
         * stretch or cut a wait */
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_mutex_init(&in->mu, NULL);
        pthread_cond_init(&in->items, &ca);
        pthread_cond_init(&in->space, &ca);
        pthread_cond_init(&in->ctl, &ca);
        pthread_condattr_destroy(&ca);
    } else {
        ld_packer_destroy(in->packer);
        free(in->slots);
        free(in);
        return NULL;
    }
    return in;
}

ld_err_t ld_ingest_start(ld_ingest_t *in)
{
    if (pthread_create(&in->thread, NULL, thread_main, in) != 0) {
        ld_log(LD_LOG_ERR, MOD, "msg=\"cannot start the ingest thread\"");
        return LD_ERR_IO;
    }
    in->started = 1;
    return LD_OK;
}

void ld_ingest_destroy(ld_ingest_t *in)
{
    if (!in)
        return;
    if (in->started)
        pthread_join(in->thread, NULL);
    for (uint32_t i = 0; i < in->cap; i++) {
        free(in->slots[i].key);
        free(in->slots[i].idx);
        free(in->slots[i].val);
        free(in->slots[i].dense);
        free(in->slots[i].packed.data);
    }
    ld_packer_destroy(in->packer);
    free(in->slots);
    pthread_cond_destroy(&in->items);
    pthread_cond_destroy(&in->space);
    pthread_cond_destroy(&in->ctl);
    pthread_mutex_destroy(&in->mu);
    free(in);
}
