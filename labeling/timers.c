/* SPDX-License-Identifier: Apache-2.0 */
/* The joiner's timers: 4-ary timer heaps of events and labels and the
 * per-partition run queues that hold most undecided events in order. */
#include <stdlib.h>

#include "labeling/joiner_impl.h"

/* ---- heaps -------------------------------------------------------------- */

/* Timer order: time, then partition, then offset. */
static int h_less(const ld_joiner_t *j, const heap_t *h, size_t x, size_t y)
{
    if (h->t[x] != h->t[y])
        return h->t[x] < h->t[y];
    const ent_t *a = ent_at(j, h->hd[x]), *b = ent_at(j, h->hd[y]);
    if (a->part != b->part)
        return a->part < b->part;
    return ent_before(a, b);
}

static void h_set(const ld_joiner_t *j, heap_t *h, size_t i, int64_t t,
                  uint32_t hd)
{
    h->t[i] = t;
    h->hd[i] = hd;
    ent_at(j, hd)->hpos = (uint32_t)i;
}

static void h_up(const ld_joiner_t *j, heap_t *h, size_t i)
{
    int64_t t = h->t[i];
    uint32_t hd = h->hd[i];
    while (i > 0) {
        size_t p = (i - 1) / 4;
        if (h->t[p] < t)
            break;
        if (h->t[p] == t) {
            /* tie: compare the entries */
            h->t[i] = t;
            h->hd[i] = hd;
            if (!h_less(j, h, i, p))
                break;
        }
        h_set(j, h, i, h->t[p], h->hd[p]);
        i = p;
    }
    h_set(j, h, i, t, hd);
}

static void h_down(const ld_joiner_t *j, heap_t *h, size_t i)
{
    int64_t t = h->t[i];
    uint32_t hd = h->hd[i];
    for (;;) {
        size_t c = 4 * i + 1;
        if (c >= h->n)
            break;
        size_t m = c, end = c + 4 < h->n ? c + 4 : h->n;
        for (size_t k = c + 1; k < end; k++)
            if (h->t[k] < h->t[m] || (h->t[k] == h->t[m] && h_less(j, h, k, m)))
                m = k;
        if (h->t[m] > t)
            break;
        if (h->t[m] == t) {
            h->t[i] = t;
            h->hd[i] = hd;
            if (!h_less(j, h, m, i))
                break;
        }
        h_set(j, h, i, h->t[m], h->hd[m]);
        i = m;
    }
    h_set(j, h, i, t, hd);
}

ld_err_t h_reserve(heap_t *h)
{
    if (h->n < h->cap)
        return LD_OK;
    size_t nc = h->cap ? h->cap * 2 : 1024;
    int64_t *nt = realloc(h->t, nc * sizeof(*nt));
    if (!nt)
        return LD_ERR_NOMEM;
    h->t = nt;
    uint32_t *nh = realloc(h->hd, nc * sizeof(*nh));
    if (!nh)
        return LD_ERR_NOMEM;
    h->hd = nh;
    h->cap = nc;
    return LD_OK;
}

ld_err_t h_push(const ld_joiner_t *j, heap_t *h, uint32_t hd, int64_t t)
{
    ld_err_t err = h_reserve(h);
    if (err)
        return err;
    h->t[h->n] = t;
    h->hd[h->n] = hd;
    h->n++;
    h_up(j, h, h->n - 1);
    return LD_OK;
}

void h_remove(const ld_joiner_t *j, heap_t *h, size_t i)
{
    h->n--;
    if (i == h->n)
        return;
    h->t[i] = h->t[h->n];
    h->hd[i] = h->hd[h->n];
    if (i > 0 && h_less(j, h, i, (i - 1) / 4))
        h_up(j, h, i);
    else
        h_down(j, h, i);
}

/* The event's timer changed: store the new time and restore the order. */
void ev_retime(ld_joiner_t *j, ev_t *e)
{
    size_t i = e->en.hpos;
    j->evh.t[i] = ev_timer(j, e);
    if (i > 0 && h_less(j, &j->evh, i, (i - 1) / 4))
        h_up(j, &j->evh, i);
    else
        h_down(j, &j->evh, i);
}

/* ---- run queues ---------------------------------------------------------- */

/* Heads of two run queues: they are of different partitions. */
static int qh_less(qhe_t a, qhe_t b)
{
    return a.t < b.t || (a.t == b.t && a.p < b.p);
}

static void qh_set(ld_joiner_t *j, size_t i, qhe_t e)
{
    j->qh[i] = e;
    j->parts[e.p].q.qpos = (uint32_t)i;
}

static void qh_up(ld_joiner_t *j, size_t i)
{
    qhe_t e = j->qh[i];
    while (i > 0 && qh_less(e, j->qh[(i - 1) / 2])) {
        qh_set(j, i, j->qh[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    qh_set(j, i, e);
}

static void qh_down(ld_joiner_t *j, size_t i)
{
    qhe_t e = j->qh[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= j->qn)
            break;
        if (c + 1 < j->qn && qh_less(j->qh[c + 1], j->qh[c]))
            c++;
        if (!qh_less(j->qh[c], e))
            break;
        qh_set(j, i, j->qh[c]);
        i = c;
    }
    qh_set(j, i, e);
}

static void qh_remove(ld_joiner_t *j, size_t i)
{
    j->qn--;
    if (i == j->qn)
        return;
    qh_set(j, i, j->qh[j->qn]);
    if (i > 0 && qh_less(j->qh[i], j->qh[(i - 1) / 2]))
        qh_up(j, i);
    else
        qh_down(j, i);
}

static ld_err_t rq_grow(runq_t *q)
{
    uint32_t nc = q->cap ? q->cap * 2 : 256;
    int64_t *nt = malloc(nc * sizeof(*nt));
    uint32_t *nh = malloc(nc * sizeof(*nh));
    if (!nt || !nh || nc < q->cap) {
        free(nt);
        free(nh);
        return LD_ERR_NOMEM;
    }
    for (uint32_t i = 0; i < q->n; i++) {
        uint32_t k = (q->head + i) & (q->cap - 1);
        nt[i] = q->t[k];
        nh[i] = q->hd[k];
    }
    free(q->t);
    free(q->hd);
    q->t = nt;
    q->hd = nh;
    q->head = 0;
    q->cap = nc;
    return LD_OK;
}

/* Queues a new undecided event of partition p (its latest record) if its
 * timer t is at most RQ_SHIFT_MAX places from the tail; *queued says so. */
ld_err_t rq_add(ld_joiner_t *j, int32_t p, uint32_t hd, int64_t t, int *queued)
{
    runq_t *q = &j->parts[p].q;
    uint32_t m = q->cap - 1, pos = q->n; /* insert before position pos */
    *queued = 0;
    /* Same partition, later offset: after every timer <= t. */
    while (pos > 0 && q->n - pos < RQ_SHIFT_MAX &&
           q->t[(q->head + pos - 1) & m] > t)
        pos--;
    if (pos > 0 && q->t[(q->head + pos - 1) & m] > t)
        return LD_OK; /* too far out of order: the heap takes it */
    if (!q->n && j->qn == j->qcap) {
        size_t nc = j->qcap ? j->qcap * 2 : 16;
        qhe_t *nq = realloc(j->qh, nc * sizeof(*nq));
        if (!nq)
            return LD_ERR_NOMEM;
        j->qh = nq;
        j->qcap = nc;
    }
    if (q->n == q->cap) {
        ld_err_t err = rq_grow(q);
        if (err)
            return err;
        m = q->cap - 1;
    }
    for (uint32_t k = q->n; k > pos; k--) {
        q->t[(q->head + k) & m] = q->t[(q->head + k - 1) & m];
        q->hd[(q->head + k) & m] = q->hd[(q->head + k - 1) & m];
    }
    q->t[(q->head + pos) & m] = t;
    q->hd[(q->head + pos) & m] = hd;
    q->n++;
    if (q->n == 1) {
        j->qn++;
        qh_set(j, j->qn - 1, (qhe_t){t, (uint32_t)p});
        qh_up(j, j->qn - 1);
    } else if (pos == 0) {
        j->qh[q->qpos].t = t;
        qh_up(j, q->qpos);
    }
    *queued = 1;
    return LD_OK;
}

/* Takes the head of p's run queue off. */
void rq_pop(ld_joiner_t *j, int32_t p)
{
    runq_t *q = &j->parts[p].q;
    q->head = (q->head + 1) & (q->cap - 1);
    q->n--;
    if (!q->n) {
        qh_remove(j, q->qpos);
    } else {
        j->qh[q->qpos].t = q->t[q->head];
        qh_down(j, q->qpos);
    }
}

/* Drops p's run queue (its events are freed by the caller). */
void rq_clear(ld_joiner_t *j, int32_t p)
{
    runq_t *q = &j->parts[p].q;
    if (q->n)
        qh_remove(j, q->qpos);
    free(q->t);
    free(q->hd);
    memset(q, 0, sizeof(*q));
}
