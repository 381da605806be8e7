/* SPDX-License-Identifier: Apache-2.0 */
/* The ingest stage: consumer group over the co-partitioned input topics,
 * decoding, positions, dead-letter routing and the transactional producer. */
#include <inttypes.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pipeline/decode.h"
#include "pipeline/kafka.h"
#include "pipeline/pipeline.h"
#include "pipeline/pipeline_impl.h"

/* ---- Helpers ------------------------------------------------------------ */

static int kind_of(const ld_pipeline_t *p, const char *topic)
{
    if (strcmp(topic, p->topic[LD_RECORD_EVENT]) == 0)
        return LD_RECORD_EVENT;
    if (strcmp(topic, p->topic[LD_RECORD_LABEL]) == 0)
        return LD_RECORD_LABEL;
    return -1;
}

/* kind_of() for a consumed message, by topic handle first. */
static inline int kind_of_msg(ld_pipeline_t *p, const rd_kafka_message_t *m)
{
    if (m->rkt == p->rkt[LD_RECORD_EVENT])
        return LD_RECORD_EVENT;
    if (m->rkt == p->rkt[LD_RECORD_LABEL])
        return LD_RECORD_LABEL;
    return kind_of(p, rd_kafka_topic_name(m->rkt));
}

static int pos_set(positions_t *ps, int32_t part, int64_t next)
{
    if (part < 0)
        return -1;
    if (part >= ps->n) {
        int32_t n = part + 1;
        int64_t *v = realloc(ps->next, (size_t)n * sizeof(*v));
        if (!v)
            return -1;
        for (int32_t i = ps->n; i < n; i++)
            v[i] = -1;
        ps->next = v;
        ps->n = n;
    }
    ps->next[part] = next;
    return 0;
}

/* Raises a floor (never lowers it): what lies below was decided already. */
static void floor_raise(positions_t *f, int32_t part, int64_t offset)
{
    if (part >= f->n || f->next[part] < offset)
        pos_set(f, part, offset);
}

static ld_err_t err_from(rd_kafka_error_t *e)
{
    rd_kafka_resp_err_t code = rd_kafka_error_code(e);
    if (code == RD_KAFKA_RESP_ERR__FENCED ||
        code == RD_KAFKA_RESP_ERR_PRODUCER_FENCED ||
        code == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH)
        return LD_ERR_FENCED;
    return LD_ERR_KAFKA;
}

/* ---- Time-aligned reading ----------------------------------------------- */

/* Each assigned partition is read from its own queue, and the poll hands out
 * the partition head with the oldest Kafka timestamp. On a backlog a fetch
 * returns megabytes of one partition after another: read in that order, the
 * joiner holds every event until all partitions pass the window (751k
 * pending events, 1 GB, and the examples released only at the end). Read by
 * time it holds about one window. A partition whose queue is empty while it
 * is behind (no end-of-partition event, its cached high watermark past its
 * position) holds the others back for up to HOLD_MS: at start-up partitions
 * begin fetching at different moments, and when the fetcher falls behind
 * (the cores busy decoding and training) a drained partition waits for its
 * next fetch; without the wait the others would run ahead. One that stays
 * empty longer (no leader, say) is read again when its records come.
 * Empty queues are looked at again every 256
 * records. Partition queues are split off before rd_kafka_assign(), so
 * a fetch start does not forward them again (librdkafka #3231 is the
 * after-assign case); anything that still reaches the consumer queue is
 * handed out first, as it precedes its partition's queue. */

static pq_t *pq_of(const ld_pipeline_t *p, int32_t code)
{
    return &p->pq[code & 1][code >> 1];
}

static int pq_before(const pq_t *a, const pq_t *b)
{
    if (a->ts != b->ts)
        return a->ts < b->ts;
    if (a->kind != b->kind)
        return a->kind < b->kind; /* events before their labels */
    return a->part < b->part;
}

/* The heap holds (partition << 1 | kind), not pointers: the arrays grow. */
static void heap_set(ld_pipeline_t *p, int32_t i, int32_t code)
{
    p->heap[i] = code;
    pq_of(p, code)->at = i;
}

static void heap_up(ld_pipeline_t *p, int32_t i)
{
    int32_t c = p->heap[i];
    const pq_t *x = pq_of(p, c);
    while (i > 0 && pq_before(x, pq_of(p, p->heap[(i - 1) / 2]))) {
        heap_set(p, i, p->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    heap_set(p, i, c);
}

static void heap_down(ld_pipeline_t *p, int32_t i)
{
    int32_t c = p->heap[i];
    const pq_t *x = pq_of(p, c);
    for (;;) {
        int32_t k = 2 * i + 1;
        if (k >= p->heap_n)
            break;
        if (k + 1 < p->heap_n &&
            pq_before(pq_of(p, p->heap[k + 1]), pq_of(p, p->heap[k])))
            k++;
        if (!pq_before(pq_of(p, p->heap[k]), x))
            break;
        heap_set(p, i, p->heap[k]);
        i = k;
    }
    heap_set(p, i, c);
}

static void heap_remove(ld_pipeline_t *p, pq_t *x)
{
    int32_t i = x->at;
    if (i < 0)
        return;
    x->at = -1;
    int32_t last = p->heap[--p->heap_n];
    if (i == p->heap_n)
        return;
    heap_set(p, i, last);
    heap_up(p, i);
    heap_down(p, pq_of(p, last)->at);
}

/* A consumer event (an error or end of partition) from any queue. Returns
 * the fatal error that ends the consumer, or LD_OK. */
static ld_err_t consumer_event(ld_pipeline_t *p, rd_kafka_message_t *m)
{
    char fatal[256];
    rd_kafka_resp_err_t fe =
        rd_kafka_fatal_error(p->consumer, fatal, sizeof(fatal));
    if (fe) {
        ld_log(LD_LOG_CRIT, MOD, "msg=\"consumer fatal error\" err=\"%s\"",
               fatal);
        /* Another member with our group.instance.id took over. */
        return p->fatal = fe == RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID
                              ? LD_ERR_FENCED
                              : LD_ERR_KAFKA;
    }
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        int k = m->rkt ? kind_of(p, rd_kafka_topic_name(m->rkt)) : -1;
        if (k >= 0 && pos_set(&p->eof[k], m->partition, 1) == 0)
            p->eofs++;
    } else {
        ld_log(LD_LOG_WARN, MOD, "msg=\"consumer error\" err=\"%s\"",
               rd_kafka_message_errstr(m));
    }
    return LD_OK;
}

/* bench_e2e on 538 MiB (more than the prefetch holds, so the fetcher works
 * during the run): peak pending 84-151k events at 500 ms, 13.4-13.6k at
 * 2 s, the same throughput. */
#define HOLD_MS 2000

static void pq_unhold(ld_pipeline_t *p, pq_t *x)
{
    if (x->hold_until > 0)
        p->holding--;
    x->hold_until = 0;
}

/* Whether x, empty, has records it has not fetched yet. */
static int pq_behind(ld_pipeline_t *p, const pq_t *x)
{
    if (x->at_end)
        return 0;
    const positions_t *pos = &p->pos[x->kind];
    int64_t next = x->part < pos->n ? pos->next[x->part] : -1, lo, hi;
    if (rd_kafka_get_watermark_offsets(p->consumer, p->topic[x->kind], x->part,
                                       &lo, &hi) ||
        hi < 0 || next < 0)
        return 1;
    return next < hi;
}

/* x's next message (record or event) from its batch, or NULL when q is
 * empty too. A batch holds what q had, up to PQ_BATCH: one librdkafka call
 * (one clock read) per batch instead of per record. */
static rd_kafka_message_t *pq_take(pq_t *x)
{
    if (x->ibuf == x->nbuf) {
        ssize_t n = rd_kafka_consume_batch_queue(x->q, 0, x->buf, PQ_BATCH);
        x->ibuf = x->nbuf = 0;
        if (n <= 0)
            return NULL;
        x->nbuf = (int32_t)n;
    }
    return x->buf[x->ibuf++];
}

/* Takes x's next record as its head; events on the way are handled. */
static void pq_fill(ld_pipeline_t *p, pq_t *x)
{
    while (!x->head && !x->paused && !p->fatal) {
        rd_kafka_message_t *m = pq_take(x);
        if (!m) {
            heap_remove(p, x); /* the one just handed out, if still in */
            if (x->hold_until == 0 && pq_behind(p, x)) {
                x->hold_until = ld_now_mono_ms() + HOLD_MS;
                p->holding++;
            }
            return;
        }
        if (m->err) {
            if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                x->at_end = 1;
                pq_unhold(p, x);
            }
            consumer_event(p, m);
            rd_kafka_message_destroy(m);
            continue;
        }
        x->at_end = 0;
        pq_unhold(p, x);
        rd_kafka_timestamp_type_t tstype;
        x->head = m;
        x->ts = rd_kafka_message_timestamp(m, &tstype);
        if (tstype == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE)
            x->ts = INT64_MIN; /* no order to keep: at once */
        if (x->at < 0) {
            p->heap[p->heap_n] = x->part << 1 | x->kind;
            heap_up(p, p->heap_n++);
        } else { /* handed out last, still in place: one sift, not two */
            heap_up(p, x->at);
            heap_down(p, x->at);
        }
    }
}

static void pq_fill_all(ld_pipeline_t *p)
{
    for (int k = 0; k < 2; k++)
        for (int32_t i = 0; i < p->npq[k]; i++)
            if (p->pq[k][i].q)
                pq_fill(p, &p->pq[k][i]);
}

/* The next record by time, or NULL when every queue is empty. */
static rd_kafka_message_t *pq_next(ld_pipeline_t *p)
{
    if (p->refill >= 0) {
        pq_fill(p, pq_of(p, p->refill)); /* its last head is handled */
        p->refill = -1;
    }
    if (p->heap_n == 0 || (++p->takes & 255) == 0 || p->holding)
        pq_fill_all(p);
    if (p->holding) {
        int64_t now = ld_now_mono_ms();
        for (int k = 0; k < 2; k++)
            for (int32_t i = 0; i < p->npq[k]; i++)
                if (p->pq[k][i].hold_until > 0 &&
                    now >= p->pq[k][i].hold_until) {
                    p->pq[k][i].hold_until = -1; /* read when it comes */
                    p->holding--;
                }
        if (p->holding)
            return NULL;
    }
    if (p->heap_n == 0)
        return NULL;
    pq_t *x = pq_of(p, p->heap[0]);
    rd_kafka_message_t *m = x->head;
    x->head = NULL; /* stays at the top, headless, until refilled */
    p->refill = x->part << 1 | x->kind;
    return m;
}

/* Drops the head of x and its batch (not handed out: read again after a
 * seek). */
static void pq_drop_head(ld_pipeline_t *p, pq_t *x)
{
    heap_remove(p, x);
    if (x->head)
        rd_kafka_message_destroy(x->head);
    x->head = NULL;
    while (x->ibuf < x->nbuf)
        rd_kafka_message_destroy(x->buf[x->ibuf++]);
    x->ibuf = x->nbuf = 0;
    if (p->refill == (x->part << 1 | x->kind))
        p->refill = -1;
}

/* After a seek: every partition fetches again from its new position. */
static void pq_drop_heads(ld_pipeline_t *p)
{
    for (int k = 0; k < 2; k++)
        for (int32_t i = 0; i < p->npq[k]; i++) {
            pq_drop_head(p, &p->pq[k][i]);
            pq_unhold(p, &p->pq[k][i]);
            p->pq[k][i].at_end = 0;
        }
}

static pq_t *pq_get(ld_pipeline_t *p, int kind, int32_t part)
{
    if (kind < 0 || part < 0)
        return NULL;
    return part < p->npq[kind] ? &p->pq[kind][part] : NULL;
}

static void pq_close(ld_pipeline_t *p, int kind, int32_t part)
{
    pq_t *x = pq_get(p, kind, part);
    if (!x || !x->q)
        return;
    pq_drop_head(p, x);
    pq_unhold(p, x);
    x->at_end = 0;
    rd_kafka_queue_io_event_enable(x->q, -1, NULL, 0);
    rd_kafka_queue_destroy(x->q);
    x->q = NULL;
}

/* Splits part's queue off the consumer queue; before rd_kafka_assign().
 * Left forwarded when that fails: its records then come on the consumer
 * queue, in fetch order. */
static void pq_open(ld_pipeline_t *p, int kind, int32_t part)
{
    if (kind < 0 || part < 0 || p->wake[1] < 0)
        return;
    if (part >= p->npq[kind]) {
        int32_t n = part + 1;
        pq_t *v = realloc(p->pq[kind], (size_t)n * sizeof(*v));
        if (!v)
            return;
        p->pq[kind] = v;
        for (int32_t i = p->npq[kind]; i < n; i++)
            v[i] = (pq_t){.at = -1, .part = i, .kind = kind};
        p->npq[kind] = n;
    }
    if (p->heap_cap < p->npq[0] + p->npq[1]) {
        int32_t n = p->npq[0] + p->npq[1];
        int32_t *h = realloc(p->heap, (size_t)n * sizeof(*h));
        if (!h)
            return;
        p->heap = h;
        p->heap_cap = n;
    }
    pq_close(p, kind, part);
    pq_t *x = &p->pq[kind][part];
    x->q = rd_kafka_queue_get_partition(p->consumer, p->topic[kind], part);
    if (!x->q)
        return;
    rd_kafka_queue_forward(x->q, NULL);
    rd_kafka_queue_io_event_enable(x->q, p->wake[1], "q", 1);
    x->paused = 0;
}

/* Waits up to ms for a record on any queue. */
static void pq_wait(ld_pipeline_t *p, int ms)
{
    char buf[64];
    while (read(p->wake[0], buf, sizeof(buf)) > 0)
        ;
    pq_fill_all(p); /* also re-arms their wake-ups */
    if ((p->heap_n && !p->holding) || p->fatal)
        return;
    if (rd_kafka_queue_length(p->cq) > 0)
        return;
    /* a wake whose byte the read above took */
    if (atomic_load(&p->woken))
        return;
    struct pollfd fd = {.fd = p->wake[0], .events = POLLIN};
    (void)poll(&fd, 1, p->holding && ms > 10 ? 10 : ms);
}

void ld_pipeline_wake(ld_pipeline_t *p)
{
    atomic_store(&p->woken, 1);
    /* a byte in the pipe ends pq_wait()'s poll; a full pipe (EAGAIN)
     * wakes it as well */
    if (p->wake[1] >= 0 && write(p->wake[1], "w", 1) < 0) {
        /* nothing to do: the flag is seen at the next look anyway */
    }
}

/* ---- Rebalance ---------------------------------------------------------- */

/* A partition the assigned callback left to the group (OFFSET_INVALID)
 * starts where librdkafka would start it: the committed offset just read,
 * or, without one, the beginning (auto.offset.reset=earliest, unless the
 * kafka: map sets it). Said up front, because librdkafka's own way there
 * (its offset lookup, then the reset) took ~110 ms after the assignment
 * before the first fetch (#18: strace of the few profile's run). After a
 * failed lookup the partition stays librdkafka's to place. */
static void start_where_known(ld_pipeline_t *p,
                              rd_kafka_topic_partition_list_t *parts)
{
    const rd_kafka_topic_partition_list_t *c = p->committed;
    if (!c || c->cnt != parts->cnt)
        return;
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &parts->elems[i];
        const rd_kafka_topic_partition_t *ct = &c->elems[i];
        if (tp->offset != RD_KAFKA_OFFSET_INVALID || ct->err ||
            ct->partition != tp->partition || strcmp(ct->topic, tp->topic))
            continue;
        if (ct->offset >= 0)
            tp->offset = ct->offset;
        else if (ct->offset == RD_KAFKA_OFFSET_INVALID && p->reset_beginning)
            tp->offset = RD_KAFKA_OFFSET_BEGINNING;
    }
}

void ld_pipeline_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                              rd_kafka_topic_partition_list_t *parts,
                              void *opaque)
{
    ld_pipeline_t *p = opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        for (int i = 0; i < parts->cnt; i++) {
            parts->elems[i].offset = RD_KAFKA_OFFSET_INVALID;
            int k = kind_of(p, parts->elems[i].topic);
            if (k >= 0)
                pos_set(&p->eof[k], parts->elems[i].partition, 0);
        }
        p->caught_up = 0;
        p->eofs++;
        /* Records below the group's committed offset were decided by a
         * committed transaction: re-read on resume, they must not be
         * dead-lettered again. */
        rd_kafka_topic_partition_list_t *c =
            rd_kafka_topic_partition_list_copy(parts);
        rd_kafka_resp_err_t ce =
            c ? rd_kafka_committed(rk, c, 30000) : RD_KAFKA_RESP_ERR__NOENT;
        for (int i = 0; c && !ce && i < c->cnt; i++) {
            int k = kind_of(p, c->elems[i].topic);
            if (k >= 0)
                floor_raise(&p->floor[k], c->elems[i].partition,
                            c->elems[i].offset);
            ld_log(LD_LOG_DEBUG, MOD,
                   "msg=\"committed offset\" topic=%s partition=%d "
                   "offset=%lld",
                   c->elems[i].topic, (int)c->elems[i].partition,
                   (long long)c->elems[i].offset);
        }
        if (ce)
            ld_log(LD_LOG_ERR, MOD,
                   "msg=\"cannot read committed offsets: records re-read "
                   "after a restart may be dead-lettered twice\" err=\"%s\"",
                   rd_kafka_err2str(ce));
        /* Kept for the assigned callback: a join instance takes over each
         * partition's joiner record from its offset's metadata. */
        if (p->committed)
            rd_kafka_topic_partition_list_destroy(p->committed);
        p->committed = ce ? NULL : c;
        if (c && ce)
            rd_kafka_topic_partition_list_destroy(c);
        if (p->cbs.assigned)
            p->cbs.assigned(p->cbs.opaque, parts);
        start_where_known(p, parts);
        ld_log(LD_LOG_INFO, MOD, "msg=\"partitions assigned\" count=%d",
               parts->cnt);
        for (int i = 0; i < parts->cnt; i++)
            pq_open(p, kind_of(p, parts->elems[i].topic),
                    parts->elems[i].partition);
        rd_kafka_resp_err_t e = rd_kafka_assign(rk, parts);
        if (e)
            ld_log(LD_LOG_ERR, MOD, "msg=\"assign failed\" err=\"%s\"",
                   rd_kafka_err2str(e));
        return;
    }
    int lost = rd_kafka_assignment_lost(rk);
    if (p->cbs.revoked)
        p->cbs.revoked(p->cbs.opaque, parts, lost);
    for (int i = 0; i < parts->cnt; i++) {
        int k = kind_of(p, parts->elems[i].topic);
        int32_t part = parts->elems[i].partition;
        /* Given back and assigned again within this process, the records
         * up to here were decided (and dead-lettered) in this process's
         * open transaction: keep them out of the dead-letter topic. */
        if (k >= 0 && part < p->pos[k].n && p->pos[k].next[part] >= 0)
            floor_raise(&p->floor[k], part, p->pos[k].next[part]);
        if (k >= 0 && parts->elems[i].partition < p->pos[k].n)
            p->pos[k].next[parts->elems[i].partition] = -1;
        if (k >= 0 && parts->elems[i].partition < p->eof[k].n)
            p->eof[k].next[parts->elems[i].partition] = 0;
        pq_close(p, k, part); /* its unread head is someone else's now */
    }
    p->caught_up = 0;
    p->eofs++;
    ld_log(lost ? LD_LOG_WARN : LD_LOG_INFO, MOD,
           "msg=\"partitions %s\" count=%d", lost ? "lost" : "revoked",
           parts->cnt);
    rd_kafka_assign(rk, NULL);
}

ld_err_t ld_pipeline_committed(const ld_pipeline_t *p, ld_record_kind_t kind,
                               int32_t partition, int64_t *offset,
                               const void **meta, size_t *meta_len)
{
    *offset = -1;
    *meta = NULL;
    *meta_len = 0;
    if (!p->committed)
        return LD_ERR_KAFKA;
    const rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_find(
        p->committed, p->topic[kind], partition);
    if (!tp || tp->err)
        return tp ? LD_ERR_KAFKA : LD_ERR_NOENT;
    if (tp->offset < 0)
        return LD_ERR_NOENT;
    *offset = tp->offset;
    *meta = tp->metadata;
    *meta_len = tp->metadata_size;
    return LD_OK;
}

/* ---- Polling ------------------------------------------------------------ */

ld_err_t ld_pipeline_poll(ld_pipeline_t *p, int timeout_ms, ld_record_t *out)
{
    /* The clock is read only when the queues are empty: two clock_gettime
     * calls per record were a measurable part of ingest. */
    int64_t deadline = 0;
    uint64_t eofs = p->eofs;
    if (p->last) {
        rd_kafka_message_destroy(p->last);
        p->last = NULL;
    }
    for (;;) {
        if (p->fatal)
            return p->fatal;
        /* the consumer queue first: rebalances, errors, and records
         * forwarded before their partition's queue was split off. Its
         * length is a cheaper look than a poll, once per record: a poll
         * reads the clock even when it finds nothing. Polled when idle
         * too, as librdkafka wants (max.poll.interval.ms). */
        rd_kafka_message_t *m = NULL;
        if (!p->cq || rd_kafka_queue_length(p->cq) > 0)
            m = rd_kafka_consumer_poll(p->consumer, 0);
        if (!m && !p->fatal)
            m = pq_next(p);
        if (!m && !p->fatal && p->cq)
            m = rd_kafka_consumer_poll(p->consumer, 0);
        /* delivery reports: every 1024 records is enough (dead letters
         * are rare) and keeps a lock + queue check off the per-record path */
        if ((++p->polls & 1023) == 0)
            rd_kafka_poll(p->producer, 0);
        if (!m) {
            if (p->fatal)
                return p->fatal;
            /* Woken, or a partition reached its end: the caller looks
             * at ld_pipeline_caught_up() now, not after the deadline
             * (the end of every `--until-caught-up` run and replay
             * waited out a 100 ms poll here). */
            if (atomic_exchange(&p->woken, 0) || p->eofs != eofs)
                return LD_ERR_TIMEOUT;
            int64_t now = ld_now_mono_ms();
            if (!deadline)
                deadline = now + timeout_ms;
            if (now >= deadline)
                return LD_ERR_TIMEOUT;
            if (p->wake[0] >= 0)
                pq_wait(p, (int)(deadline - now));
            else if ((m = rd_kafka_consumer_poll(
                          p->consumer, (int)(deadline - now))) == NULL)
                return LD_ERR_TIMEOUT;
            if (!m)
                continue;
        }
        if (m->err) {
            ld_err_t fe = consumer_event(p, m);
            rd_kafka_message_destroy(m);
            if (fe)
                return fe;
            if (!deadline)
                deadline = ld_now_mono_ms() + timeout_ms;
            if (ld_now_mono_ms() >= deadline)
                return LD_ERR_TIMEOUT;
            continue;
        }
        int kind = kind_of_msg(p, m);
        if (kind < 0) {
            rd_kafka_message_destroy(m);
            continue;
        }
        rd_kafka_timestamp_type_t tstype;
        int64_t ts = rd_kafka_message_timestamp(m, &tstype);
        p->stats.bytes[kind] += m->len;
        ld_reason_t why = ld_decoder_decode(
            p->dec[kind], m->key, m->key_len, m->payload, m->len,
            tstype == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? -1 : ts, out);
        positions_t *pos = &p->pos[kind];
        if (m->partition >= 0 && m->partition < pos->n) /* no call */
            pos->next[m->partition] = m->offset + 1;
        else if (pos_set(pos, m->partition, m->offset + 1) < 0) {
            rd_kafka_message_destroy(m);
            return LD_ERR_NOMEM;
        }
        if (why && m->partition < p->floor[kind].n &&
            m->offset < p->floor[kind].next[m->partition]) {
            rd_kafka_message_destroy(m); /* dead-lettered before */
            continue;
        }
        if (why) {
            ld_err_t err = ld_pipeline_dead_letter(
                p, m, kind, why, ld_decoder_error(p->dec[kind]));
            rd_kafka_message_destroy(m);
            if (err) {
                p->stats.dlq[kind][why]++; /* still counted, never silent */
                return err == LD_ERR_FENCED ? (p->fatal = err) : err;
            }
            if (!deadline) /* the rare path may read the clock */
                deadline = ld_now_mono_ms() + timeout_ms;
            if (ld_now_mono_ms() >= deadline)
                return LD_ERR_TIMEOUT;
            continue;
        }
        p->stats.records[kind]++;
        out->topic = p->topic[kind];
        out->partition = m->partition;
        out->offset = m->offset;
        p->last = m;
        return LD_OK;
    }
}

void ld_pipeline_lag(ld_pipeline_t *p, ld_pipeline_lag_cb *cb, void *opaque)
{
    for (int k = 0; k < 2; k++) {
        for (int32_t i = 0; i < p->pos[k].n; i++) {
            int64_t lo, hi;
            if (p->pos[k].next[i] < 0 ||
                rd_kafka_get_watermark_offsets(p->consumer, p->topic[k], i, &lo,
                                               &hi) ||
                hi < 0)
                continue;
            int64_t lag = hi - p->pos[k].next[i];
            cb(opaque, p->topic[k], i, lag > 0 ? lag : 0);
        }
    }
}

void ld_pipeline_set_dry_run(ld_pipeline_t *p, int dry)
{
    p->dry_run = dry;
}

int ld_pipeline_caught_up(ld_pipeline_t *p)
{
    if (p->eofs == p->eofs_checked)
        return p->caught_up;
    p->eofs_checked = p->eofs;
    rd_kafka_topic_partition_list_t *a = NULL;
    if (rd_kafka_assignment(p->consumer, &a) || !a)
        return p->caught_up = 0;
    int all = a->cnt > 0;
    for (int i = 0; i < a->cnt && all; i++) {
        int k = kind_of(p, a->elems[i].topic);
        int32_t part = a->elems[i].partition;
        all = k >= 0 && part < p->eof[k].n && p->eof[k].next[part] == 1;
    }
    rd_kafka_topic_partition_list_destroy(a);
    return p->caught_up = all;
}

rd_kafka_topic_partition_list_t *ld_pipeline_position(const ld_pipeline_t *p)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    if (!l)
        return NULL;
    for (int k = 0; k < 2; k++)
        for (int32_t i = 0; i < p->pos[k].n; i++) {
            int64_t next = p->pos[k].next[i];
            if (next < 0)
                continue;
            /* While records before the committed offset are re-read after
             * a restart, the position must not move back: what lies below
             * it was decided (and dead-lettered) by a committed
             * transaction already. */
            if (i < p->floor[k].n && p->floor[k].next[i] > next)
                next = p->floor[k].next[i];
            rd_kafka_topic_partition_list_add(l, p->topic[k], i)->offset = next;
        }
    return l;
}

/* ---- Transactions ------------------------------------------------------- */

ld_err_t ld_pipeline_txn_begin(ld_pipeline_t *p)
{
    if (!p->transactional || p->in_txn)
        return LD_OK;
    rd_kafka_error_t *e = rd_kafka_begin_transaction(p->producer);
    if (e) {
        ld_err_t err = err_from(e);
        ld_log(LD_LOG_ERR, MOD, "msg=\"begin_transaction failed\" err=\"%s\"",
               rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        return err;
    }
    p->in_txn = 1;
    return LD_OK;
}

/* Seeks every assigned partition back to its committed offset. */
static ld_err_t rewind_to_committed(ld_pipeline_t *p, int timeout_ms)
{
    rd_kafka_topic_partition_list_t *a = NULL;
    if (rd_kafka_assignment(p->consumer, &a) || !a)
        return LD_ERR_KAFKA;
    ld_err_t err = LD_OK;
    if (a->cnt > 0) {
        if (rd_kafka_committed(p->consumer, a, timeout_ms)) {
            err = LD_ERR_KAFKA;
        } else {
            for (int i = 0; i < a->cnt; i++)
                if (a->elems[i].offset < 0)
                    a->elems[i].offset = RD_KAFKA_OFFSET_BEGINNING;
            rd_kafka_error_t *e =
                rd_kafka_seek_partitions(p->consumer, a, timeout_ms);
            if (e) {
                ld_log(LD_LOG_ERR, MOD, "msg=\"rewind failed\" err=\"%s\"",
                       rd_kafka_error_string(e));
                rd_kafka_error_destroy(e);
                err = LD_ERR_KAFKA;
            }
        }
        for (int i = 0; i < a->cnt; i++) {
            int k = kind_of(p, a->elems[i].topic);
            if (k >= 0 && a->elems[i].partition < p->pos[k].n)
                p->pos[k].next[a->elems[i].partition] = -1;
        }
        pq_drop_heads(p); /* taken before the seek: read again */
    }
    rd_kafka_topic_partition_list_destroy(a);
    return err;
}

ld_err_t ld_pipeline_txn_abort(ld_pipeline_t *p, int timeout_ms)
{
    if (p->transactional && p->in_txn) {
        rd_kafka_error_t *e =
            rd_kafka_abort_transaction(p->producer, timeout_ms);
        p->in_txn = 0;
        if (e) {
            ld_err_t err = err_from(e);
            ld_log(LD_LOG_ERR, MOD,
                   "msg=\"abort_transaction failed\" "
                   "err=\"%s\"",
                   rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
            return err;
        }
        p->stats.txn_aborts++;
    }
    return rewind_to_committed(p, timeout_ms);
}

ld_err_t ld_pipeline_txn_commit(ld_pipeline_t *p,
                                const rd_kafka_topic_partition_list_t *offsets,
                                int timeout_ms)
{
    rd_kafka_topic_partition_list_t *own = NULL;
    rd_kafka_error_t *e = NULL;
    ld_err_t err = LD_OK;
    if (!offsets && !(offsets = own = ld_pipeline_position(p)))
        return LD_ERR_NOMEM;

    if (!p->transactional) {
        rd_kafka_resp_err_t fe = rd_kafka_flush(p->producer, timeout_ms);
        if (fe) {
            ld_log(LD_LOG_ERR, MOD, "msg=\"flush failed\" err=\"%s\"",
                   rd_kafka_err2str(fe));
            err = LD_ERR_KAFKA;
        } else if (offsets->cnt > 0) {
            fe = rd_kafka_commit(p->consumer, offsets, 0);
            if (fe) {
                ld_log(LD_LOG_ERR, MOD, "msg=\"commit failed\" err=\"%s\"",
                       rd_kafka_err2str(fe));
                err = LD_ERR_KAFKA;
            }
        }
        if (!err)
            p->stats.txn_commits++;
        if (own)
            rd_kafka_topic_partition_list_destroy(own);
        return err;
    }

    if ((err = ld_pipeline_txn_begin(p)))
        goto out;
    if (offsets->cnt > 0) {
        rd_kafka_consumer_group_metadata_t *md =
            rd_kafka_consumer_group_metadata(p->consumer);
        e = rd_kafka_send_offsets_to_transaction(p->producer, offsets, md,
                                                 timeout_ms);
        rd_kafka_consumer_group_metadata_destroy(md);
        if (e)
            goto txn_err;
    }
    if ((e = rd_kafka_commit_transaction(p->producer, timeout_ms)))
        goto txn_err;
    p->in_txn = 0;
    p->stats.txn_commits++;
    goto out;

txn_err:
    err = err_from(e);
    ld_log(LD_LOG_ERR, MOD,
           "msg=\"transaction commit failed\" err=\"%s\" "
           "abortable=%d fatal=%d",
           rd_kafka_error_string(e), rd_kafka_error_txn_requires_abort(e),
           rd_kafka_error_is_fatal(e));
    if (rd_kafka_error_is_fatal(e)) {
        p->fatal = err == LD_ERR_FENCED ? LD_ERR_FENCED : LD_ERR_KAFKA;
        err = p->fatal;
    } else {
        /* abortable or timed out: abort and rewind so nothing is lost */
        ld_err_t aerr = ld_pipeline_txn_abort(p, timeout_ms);
        err = aerr == LD_ERR_FENCED ? aerr : LD_ERR_KAFKA;
    }
    rd_kafka_error_destroy(e);
out:
    if (own)
        rd_kafka_topic_partition_list_destroy(own);
    return err;
}

/* ---- Back-pressure ------------------------------------------------------ */

static ld_err_t pause_resume(ld_pipeline_t *p, ld_record_kind_t kind,
                             int32_t partition, int pause)
{
    rd_kafka_topic_partition_list_t *a = NULL, *l;
    int n = 0; /* partitions held or let go */
    if (rd_kafka_assignment(p->consumer, &a) || !a)
        return LD_ERR_KAFKA;
    l = rd_kafka_topic_partition_list_new(a->cnt + 1);
    for (int i = 0; i < a->cnt; i++)
        if (strcmp(a->elems[i].topic, p->topic[kind]) == 0 &&
            (partition < 0 || a->elems[i].partition == partition)) {
            /* A partition read from its own queue is held by the merge
             * alone: its queue fills to its prefetch bound and librdkafka
             * stops fetching it, prefetch and end-of-partition event kept
             * (rd_kafka_pause_partitions would drop both, and the end is
             * not reported again). Its taken head waits with it. */
            pq_t *x = pq_get(p, (int)kind, a->elems[i].partition);
            if (!x || !x->q) {
                rd_kafka_topic_partition_list_add(l, a->elems[i].topic,
                                                  a->elems[i].partition);
                continue;
            }
            n++;
            x->paused = pause;
            if (pause) {
                heap_remove(p, x);
                pq_unhold(p, x);
            } else if (x->head && x->at < 0) {
                p->heap[p->heap_n] = x->part << 1 | x->kind;
                heap_up(p, p->heap_n++);
            } else {
                pq_fill(p, x);
            }
        }
    rd_kafka_topic_partition_list_destroy(a);
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (l->cnt > 0)
        e = pause ? rd_kafka_pause_partitions(p->consumer, l)
                  : rd_kafka_resume_partitions(p->consumer, l);
    n += l->cnt;
    rd_kafka_topic_partition_list_destroy(l);
    if (e)
        return LD_ERR_KAFKA;
    if (partition >= 0 && n == 0)
        return LD_ERR_NOENT;
    return LD_OK;
}

ld_err_t ld_pipeline_pause(ld_pipeline_t *p, ld_record_kind_t kind,
                           int32_t partition)
{
    return pause_resume(p, kind, partition, 1);
}

ld_err_t ld_pipeline_resume(ld_pipeline_t *p, ld_record_kind_t kind,
                            int32_t partition)
{
    return pause_resume(p, kind, partition, 0);
}

/* ---- Accessors and teardown --------------------------------------------- */

rd_kafka_t *ld_pipeline_producer(ld_pipeline_t *p)
{
    return p->producer;
}

void ld_pipeline_stats(const ld_pipeline_t *p, ld_pipeline_stats_t *out)
{
    *out = p->stats;
}

ld_err_t ld_pipeline_close(ld_pipeline_t *p, int timeout_ms)
{
    (void)timeout_ms; /* rd_kafka_consumer_close has no deadline in 2.0.2 */
    if (p->last) {
        rd_kafka_message_destroy(p->last);
        p->last = NULL;
    }
    if (p->closed || !p->consumer)
        return LD_OK;
    p->closed = 1;
    rd_kafka_resp_err_t e = rd_kafka_consumer_close(p->consumer);
    /* a manual assignment (replay) has no revoke that closes them */
    for (int k = 0; k < 2; k++)
        for (int32_t i = 0; i < p->npq[k]; i++)
            pq_close(p, k, i);
    return e ? LD_ERR_KAFKA : LD_OK;
}

void ld_pipeline_destroy(ld_pipeline_t *p)
{
    if (!p)
        return;
    if (ld_pipeline_close(p, 10000))
        ld_log(LD_LOG_WARN, MOD, "msg=\"consumer close failed\"");
    if (p->producer && p->transactional && p->in_txn) {
        rd_kafka_error_t *e = rd_kafka_abort_transaction(p->producer, 10000);
        if (e)
            rd_kafka_error_destroy(e);
    }
    for (int k = 0; k < 2; k++) {
        for (int32_t i = 0; i < p->npq[k]; i++)
            pq_close(p, k, i);
        free(p->pq[k]);
        if (p->rkt[k])
            rd_kafka_topic_destroy(p->rkt[k]);
    }
    free(p->heap);
    if (p->cq) {
        rd_kafka_queue_io_event_enable(p->cq, -1, NULL, 0);
        rd_kafka_queue_destroy(p->cq);
    }
    if (p->consumer)
        rd_kafka_destroy(p->consumer);
    for (int i = 0; i < 2; i++)
        if (p->wake[i] >= 0)
            close(p->wake[i]);
    if (p->producer) {
        rd_kafka_flush(p->producer, 10000);
        rd_kafka_destroy(p->producer);
    }
    for (int k = 0; k < 2; k++) {
        ld_decoder_destroy(p->dec[k]);
        free(p->topic[k]);
        free(p->pos[k].next);
        free(p->eof[k].next);
        free(p->floor[k].next);
    }
    if (p->committed)
        rd_kafka_topic_partition_list_destroy(p->committed);
    free(p->dlq_topic);
    free(p->dlq_group);
    free(p->dlq_model);
    free(p);
}
