/* SPDX-License-Identifier: Apache-2.0 */
/* The audit topic against the real broker: JSON events and labels with known
 * delays, produced by a plain librdkafka producer to explicit partitions, go
 * through `learnd run --until-caught-up`; the JSON audit records, read back
 * read_committed from a 1-partition audit topic, must be exactly the
 * labelled examples that docs/LABELING.md prescribes, field for field and in
 * release order (decision time, partition, offset, sample type). Three runs
 * over the same input: aggregate max with late_policy drop, aggregate sum
 * with late_policy correct (delayed_pos corrections), both on the numeric
 * label field, and label_mode equals on an `action` field ("click" is the
 * label, "view" and an absent field are no label) with aggregate first and
 * late_policy correct.
 *
 * Every expectation below is written from the documented rules, case by
 * case; only the offsets (delivery reports), the final watermark (max time
 * per side - max_out_of_orderness) and the hashed slot (pipeline/hash.h's
 * formula) are computed. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <signal.h>
#include <unistd.h>

#include <jansson.h>

#include "pipeline/hash.h"
#include "testutil.h"

#define WINDOW    10000 /* labeling.window */
#define OOO       2000  /* labeling.max_out_of_orderness */
#define HORIZON   15000 /* labeling.late_horizon (used by `correct` only) */
#define SPACING   60000 /* event time between two cases: > 2w + h + slack */
#define T0        1767225600000LL /* 2026-01-01T00:00:00Z */
#define HASH_BITS 16
#define MAX_RECS  128
#define MAX_EXP   128
#define TIMEOUT   60000

/* The two runs; an expectation names the runs it holds for. */
enum { R_DROP = 1, R_CORRECT = 2, R_BOTH = 3, R_EQUALS = 4 };
#define NRUNS 3

typedef struct run_conf {
    const char *name;
    unsigned mask;
    const char *aggregate;
    const char *late_policy;
    double default_label;
    const char *label_mode, *label_field; /* equals: action == "click" */
} run_conf_t;

static const run_conf_t runs[NRUNS] = {
    {"drop", R_DROP, "max", "drop", 0.0, "numeric", "v"},
    {"correct", R_CORRECT, "sum", "correct", -1.0, "numeric", "v"},
    {"equals", R_EQUALS, "first", "correct", 0.0, "equals", "action"},
};

/* One input record. order sorts the records of one topic partition into
 * produce (= offset) order: 10 * time unless a case places a record out of
 * time order on purpose. */
typedef struct rec {
    int is_label;
    int part;
    char key[32];
    int64_t t;
    int64_t order;
    int seq;
    float x;             /* events: the dense feature */
    const char *country; /* events: the hashed feature */
    double v;            /* labels: the value */
    const char *action;  /* labels: "click", "view" or NULL (absent) */
    int64_t offset;      /* from the delivery report */
} rec_t;

static rec_t recs[MAX_RECS];
static int nrecs, nevents;

/* One expected labelled example. */
typedef struct exp {
    unsigned runs;
    const rec_t *ev; /* the event the example is made of */
    const char *type;
    int use_default; /* label = the run's default_label */
    double label;
    int64_t lt; /* label time, -1 for none */
    int64_t d;  /* decision time */
    int tail;   /* decided at or after the final watermark: never released */
} exp_t;

static exp_t exps[MAX_EXP];
static int nexps;

static char prefix[128];
static char tmpdir[64];

static void topic(char *buf, size_t size, const char *what)
{
    snprintf(buf, size, "%s.%s", prefix, what);
}

/* ---- The scenario -------------------------------------------------------- */

static rec_t *add(int is_label, int part, const char *key, int64_t t)
{
    LD_TEST_ASSERT(nrecs < MAX_RECS, "too many records");
    rec_t *r = &recs[nrecs];
    memset(r, 0, sizeof(*r));
    r->is_label = is_label;
    r->part = part;
    snprintf(r->key, sizeof(r->key), "%s", key);
    r->t = t;
    r->order = 10 * t;
    r->seq = nrecs++;
    r->offset = -1;
    return r;
}

static rec_t *ev(int part, const char *key, int64_t t)
{
    static const char *const countries[] = {"fr", "de", "us", "jp", "br"};
    rec_t *r = add(0, part, key, t);
    r->x = 0.25f + 0.5f * (float)nevents; /* exact, distinct per event */
    r->country = countries[nevents % 5];
    nevents++;
    return r;
}

static rec_t *lb(int part, const char *key, int64_t t, double v)
{
    rec_t *r = add(1, part, key, t);
    r->v = v;
    return r;
}

/* r goes right after `after` in its topic partition (n-th such record). */
static rec_t *after(rec_t *r, const rec_t *prev, int n)
{
    r->order = prev->order + n;
    return r;
}

static exp_t *expect(unsigned mask, const rec_t *e, const char *type,
                     double label, int64_t lt, int64_t d)
{
    LD_TEST_ASSERT(nexps < MAX_EXP, "too many expectations");
    exp_t *x = &exps[nexps++];
    memset(x, 0, sizeof(*x));
    x->runs = mask;
    x->ev = e;
    x->type = type;
    x->label = label;
    x->lt = lt;
    x->d = d;
    return x;
}

/* pos / default_neg are decided when the window closes: d = e + w. */
/* The equals run reads only the action field, which the records of the
 * numeric cases lack: none of their label records is a label there, so
 * each event the correct run releases (same late_policy, so the same
 * events and duplicates) is a default_neg there, at the same decision
 * time. Expectations from..to-1 gain that counterpart. */
static void equals_negatives(int from, int to)
{
    for (int i = from; i < to; i++) {
        const exp_t *x = &exps[i];
        if (!(x->runs & R_CORRECT) || !strcmp(x->type, "delayed_pos"))
            continue;
        int tail = x->tail;
        exp_t *n =
            expect(R_EQUALS, x->ev, "default_neg", 0, -1, x->ev->t + WINDOW);
        n->use_default = 1;
        n->tail = tail;
    }
}

static exp_t *pos(unsigned mask, const rec_t *e, double label, int64_t lt)
{
    return expect(mask, e, "pos", label, lt, e->t + WINDOW);
}

static exp_t *neg(unsigned mask, const rec_t *e)
{
    exp_t *x = expect(mask, e, "default_neg", 0, -1, e->t + WINDOW);
    x->use_default = 1;
    return x;
}

/* delayed_pos: d = max(l, e). */
static exp_t *delayed(unsigned mask, const rec_t *e, double label, int64_t lt)
{
    return expect(mask, e, "delayed_pos", label, lt, lt > e->t ? lt : e->t);
}

static int64_t base(int k)
{
    return T0 + (int64_t)k * SPACING;
}

/* Cases k = 0.. each at base(k), alternating partitions, far enough apart
 * (SPACING) that no two cases share a window, a late horizon or an
 * out-of-orderness span. The windows are inclusive: e - w <= l <= e + w. */
static void build(void)
{
    int64_t e;
    rec_t *a, *b, *c;

    /* 0: a label 4 s after its event: pos. */
    e = base(0);
    a = ev(0, "c00-in-window", e);
    lb(0, "c00-in-window", e + 4000, 1);
    pos(R_BOTH, a, 1, e + 4000);

    /* 1: a label at exactly e + w: still in the window. */
    e = base(1);
    a = ev(1, "c01-at-edge", e);
    lb(1, "c01-at-edge", e + WINDOW, 1);
    pos(R_BOTH, a, 1, e + WINDOW);

    /* 2: a label 1 ms after the window: drop -> default_neg only; correct
     * -> default_neg, then delayed_pos decided at the label time. */
    e = base(2);
    a = ev(0, "c02-1ms-late", e);
    lb(0, "c02-1ms-late", e + WINDOW + 1, 1);
    neg(R_BOTH, a);
    delayed(R_CORRECT, a, 1, e + WINDOW + 1);

    /* 3: no label: default_neg with default_label. Three events decided at
     * the same time: partition 0 before 1, then offset order (not key
     * order) inside a partition. */
    e = base(3);
    a = ev(1, "c03-none-a", e);
    b = ev(0, "c03-none-z", e);
    c = ev(0, "c03-none-b", e);
    neg(R_BOTH, a);
    neg(R_BOTH, b);
    neg(R_BOTH, c);

    /* 4: the label precedes its event, in time (3 s) and on the topics (all
     * labels are produced before the events): pos, elapsed -3000. */
    e = base(4);
    lb(1, "c04-label-first", e - 3000, 1);
    a = ev(1, "c04-label-first", e);
    pos(R_BOTH, a, 1, e - 3000);

    /* 5: a label at exactly e - w: in the window. */
    e = base(5);
    lb(0, "c05-before-edge", e - WINDOW, 1);
    a = ev(0, "c05-before-edge", e);
    pos(R_BOTH, a, 1, e - WINDOW);

    /* 6: a label at e - w - 1 belongs to no event (not even under correct,
     * which only looks after the window): default_neg. */
    e = base(6);
    lb(1, "c06-before-out", e - WINDOW - 1, 1);
    a = ev(1, "c06-before-out", e);
    neg(R_BOTH, a);

    /* 7: four labels in the window, one placed 1 s out of time order (within
     * max_out_of_orderness, so not late). max: the largest value, ties to
     * the earliest offset (the 2 at e+3s, not the 2 at e+2s); sum: all
     * values, label time the latest. */
    e = base(7);
    a = ev(0, "c07-aggregate", e);
    lb(0, "c07-aggregate", e + 1000, 0.5);
    b = lb(0, "c07-aggregate", e + 3000, 2);
    after(lb(0, "c07-aggregate", e + 2000, 2), b, 1);
    lb(0, "c07-aggregate", e + 4000, 1);
    pos(R_DROP, a, 2, e + 3000);
    pos(R_CORRECT, a, 5.5, e + 4000);

    /* 8: the same event id twice, 2 s apart: the first wins (its time,
     * offset and features) and gets the label. */
    e = base(8);
    a = ev(1, "c08-dup", e);
    ev(1, "c08-dup", e + 2000);
    lb(1, "c08-dup", e + 5000, 1);
    pos(R_BOTH, a, 1, e + 5000);

    /* 9: a duplicate at exactly e1 + w + h (h = 0 under drop) is still a
     * duplicate. */
    e = base(9);
    a = ev(0, "c09-dup-edge", e);
    ev(0, "c09-dup-edge", e + WINDOW);
    neg(R_BOTH, a);

    /* 10: the same id at e1 + w + 1: a new event under drop (h = 0); a
     * duplicate under correct (within e1 + w + h). */
    e = base(10);
    a = ev(1, "c10-dup-apart", e);
    b = ev(1, "c10-dup-apart", e + WINDOW + 1);
    neg(R_BOTH, a);
    neg(R_DROP, b);

    /* 11: a label 1 ms past the late horizon: no correction either. */
    e = base(11);
    a = ev(0, "c11-past-horizon", e);
    lb(0, "c11-past-horizon", e + WINDOW + HORIZON + 1, 1);
    neg(R_BOTH, a);

    /* 12: a label at exactly e + w + h: correct emits delayed_pos. */
    e = base(12);
    a = ev(1, "c12-horizon-edge", e);
    lb(1, "c12-horizon-edge", e + WINDOW + HORIZON, 1);
    neg(R_BOTH, a);
    delayed(R_CORRECT, a, 1, e + WINDOW + HORIZON);

    /* 13: late labels under correct: one equal to default_label (-1) makes
     * no correction; the earliest other one does; a later one is dropped. */
    e = base(13);
    a = ev(0, "c13-late-default", e);
    lb(0, "c13-late-default", e + WINDOW + 500, -1);
    lb(0, "c13-late-default", e + WINDOW + 2000, 1);
    lb(0, "c13-late-default", e + WINDOW + 3000, 1);
    neg(R_BOTH, a);
    delayed(R_CORRECT, a, 1, e + WINDOW + 2000);

    /* 14: a label exactly max_out_of_orderness behind its side's newest
     * (an unmatched filler at e+5s): not late, pos. */
    e = base(14);
    a = ev(1, "c14-ooo-edge", e);
    b = lb(1, "c14-filler", e + 5000, 1);
    after(lb(1, "c14-ooo-edge", e + 5000 - OOO, 1), b, 1);
    pos(R_BOTH, a, 1, e + 3000);

    /* 15: 1 ms more behind: late on its side, dropped (not even a correction
     * under correct): default_neg. */
    e = base(15);
    a = ev(0, "c15-ooo-late", e);
    b = lb(0, "c15-filler", e + 5000, 1);
    after(lb(0, "c15-ooo-late", e + 5000 - OOO - 1, 1), b, 1);
    neg(R_BOTH, a);

    /* 16: the same on the events side: an event 2001 ms behind the newest
     * event of its partition is late and never appears (its label finds no
     * event); one exactly 2000 ms behind is kept and gets its label. */
    e = base(16);
    a = ev(1, "c16-newest", e + 3000);
    after(ev(1, "c16-late-event", e + 3000 - OOO - 1), a, 1);
    c = after(ev(1, "c16-ooo-event", e + 3000 - OOO), a, 2);
    lb(1, "c16-late-event", e + 1500, 1);
    lb(1, "c16-ooo-event", e + 1500, 1);
    pos(R_BOTH, c, 1, e + 1500);
    neg(R_BOTH, a);

    /* 17: a label of value 0 in the window is a pos with label 0 (and a
     * label time), not a default_neg. */
    e = base(17);
    a = ev(0, "c17-zero", e);
    lb(0, "c17-zero", e + 1000, 0);
    pos(R_BOTH, a, 0, e + 1000);
    equals_negatives(0, nexps);

    /* 18-21 (issue 14): a clicks topic whose action is "click" or "view",
     * each record with a numeric v as well (1 for a click, 0 for a view).
     * Numeric runs: a view is a label 0. Equals run: a view is no label;
     * it neither wins the window nor hides a click nor stops a late
     * click's correction. */
    /* 18: view before click. max: the click; sum 0 + 1 at the latest
     * time; equals first: the click (the view is no label). */
    e = base(18);
    a = ev(0, "c18-view-click", e);
    lb(0, "c18-view-click", e + 1000, 0)->action = "view";
    lb(0, "c18-view-click", e + 3000, 1)->action = "click";
    pos(R_BOTH | R_EQUALS, a, 1, e + 3000);

    /* 19: view only: a pos with label 0 on v; on action a default_neg. */
    e = base(19);
    a = ev(1, "c19-view-only", e);
    lb(1, "c19-view-only", e + 2000, 0)->action = "view";
    pos(R_BOTH, a, 0, e + 2000);
    neg(R_EQUALS, a);

    /* 20: view, then a click 2 s after the window. On v the view is the
     * window's label and no correction follows (a correction is for a
     * default_neg only); on action the window is empty and the late click
     * corrects it under late_policy correct. */
    e = base(20);
    a = ev(0, "c20-view-late-click", e);
    lb(0, "c20-view-late-click", e + 1000, 0)->action = "view";
    lb(0, "c20-view-late-click", e + WINDOW + 2000, 1)->action = "click";
    pos(R_BOTH, a, 0, e + 1000);
    neg(R_EQUALS, a);
    delayed(R_EQUALS, a, 1, e + WINDOW + 2000);

    /* 21: click then view. max: the click; sum 1 + 0 at the latest time;
     * equals first: the click. */
    e = base(21);
    a = ev(1, "c21-click-view", e);
    lb(1, "c21-click-view", e + 1000, 1)->action = "click";
    lb(1, "c21-click-view", e + 3000, 0)->action = "view";
    pos(R_DROP | R_EQUALS, a, 1, e + 1000);
    pos(R_CORRECT, a, 1, e + 3000);

    /* 22: the end of the input. Every side's newest record is at F, so the
     * final watermark is F - max_out_of_orderness, and only examples with
     * d < W come out: tail-a (d = W - 1) does, tail-b (d = W) does not,
     * nor anything later. */
    int n0 = nexps;
    int64_t f = base(22);
    a = ev(0, "c18-tail-a", f - OOO - WINDOW - 1);
    lb(0, "c18-tail-a", f - OOO - WINDOW - 1 + 1000, 1);
    pos(R_BOTH, a, 1, f - OOO - WINDOW - 1 + 1000);
    b = ev(1, "c18-tail-b", f - OOO - WINDOW);
    neg(R_BOTH, b)->tail = 1;
    c = ev(0, "c18-tail-c", f - 5000);
    lb(0, "c18-tail-c", f - 4000, 1);
    pos(R_BOTH, c, 1, f - 4000)->tail = 1;
    for (int p = 0; p < 2; p++) {
        char key[32];
        snprintf(key, sizeof(key), "c18-last-p%d", p);
        a = ev(p, key, f);
        lb(p, key, f, 1);
        pos(R_BOTH, a, 1, f)->tail = 1;
    }
    equals_negatives(n0, nexps);
}

/* ---- Producing ----------------------------------------------------------- */

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    rec_t *r = m->_private;
    LD_TEST_ASSERT(!m->err, "delivery of %s: %s", r->key,
                   rd_kafka_err2str(m->err));
    r->offset = m->offset;
}

static int produce_cmp(const void *pa, const void *pb)
{
    const rec_t *a = *(rec_t *const *)pa, *b = *(rec_t *const *)pb;
    if (a->is_label != b->is_label)
        return b->is_label - a->is_label; /* labels first */
    if (a->part != b->part)
        return a->part - b->part;
    if (a->order != b->order)
        return a->order < b->order ? -1 : 1;
    return a->seq - b->seq;
}

static void produce_all(void)
{
    char events[256], labels[256];
    topic(events, sizeof(events), "events");
    topic(labels, sizeof(labels), "labels");
    rd_kafka_conf_t *conf = ld_test_conf_new();
    ld_test_conf_set(conf, "enable.idempotence", "true");
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_t *rk = ld_test_new(RD_KAFKA_PRODUCER, conf);
    rec_t *order[MAX_RECS];
    for (int i = 0; i < nrecs; i++)
        order[i] = &recs[i];
    qsort(order, (size_t)nrecs, sizeof(order[0]), produce_cmp);
    for (int i = 0; i < nrecs; i++) {
        rec_t *r = order[i];
        char val[256];
        if (r->is_label)
            snprintf(val, sizeof(val),
                     "{\"id\":\"%s\",\"lt\":%" PRId64 ",\"v\":%.17g%s%s%s}",
                     r->key, r->t, r->v, r->action ? ",\"action\":\"" : "",
                     r->action ? r->action : "", r->action ? "\"" : "");
        else
            snprintf(val, sizeof(val),
                     "{\"id\":\"%s\",\"ts\":%" PRId64
                     ",\"x\":%.9g,\"country\":\"%s\"}",
                     r->key, r->t, (double)r->x, r->country);
        rd_kafka_resp_err_t e = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC((r->is_label ? labels : events)),
            RD_KAFKA_V_PARTITION(r->part),
            RD_KAFKA_V_KEY(r->key, strlen(r->key)),
            RD_KAFKA_V_VALUE(val, strlen(val)),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(r),
            RD_KAFKA_V_END);
        LD_TEST_ASSERT(!e, "produce %s: %s", r->key, rd_kafka_err2str(e));
    }
    LD_TEST_ASSERT(rd_kafka_flush(rk, 30000) == 0, "flush");
    rd_kafka_destroy(rk);
    /* Fresh topics, one idempotent producer: offsets 0, 1, ... in produce
     * order on each partition. */
    int64_t next[2][2] = {{0, 0}, {0, 0}};
    for (int i = 0; i < nrecs; i++) {
        rec_t *r = order[i];
        LD_TEST_EQ_I64(r->key, next[r->is_label][r->part]++, r->offset);
    }
}

/* ---- Expected audit records ---------------------------------------------- */

/* The slot of country=value: pipeline/hash.h's formula with hash_seed 0. */
static uint32_t slot_of(const char *value)
{
    uint32_t ns_seed = ld_hash_murmur3_32("country", 7, 0);
    uint32_t field_seed = ld_hash_murmur3_32("country", 7, ns_seed);
    return ld_hash_murmur3_32(value, strlen(value), field_seed) &
           ((1u << HASH_BITS) - 1);
}

static int type_rank(const char *t)
{
    static const char *const order[] = {"pos", "default_neg", "fake_neg",
                                        "delayed_pos"};
    for (int i = 0; i < 4; i++)
        if (strcmp(t, order[i]) == 0)
            return i;
    return 4;
}

static int exp_cmp(const void *pa, const void *pb)
{
    const exp_t *a = *(exp_t *const *)pa, *b = *(exp_t *const *)pb;
    if (a->d != b->d)
        return a->d < b->d ? -1 : 1;
    if (a->ev->part != b->ev->part)
        return a->ev->part - b->ev->part;
    if (a->ev->offset != b->ev->offset)
        return a->ev->offset < b->ev->offset ? -1 : 1;
    return type_rank(a->type) - type_rank(b->type);
}

/* The final watermark: min over the four sides of newest time - ooo. */
static int64_t final_watermark(void)
{
    int64_t max[2][2] = {{INT64_MIN, INT64_MIN}, {INT64_MIN, INT64_MIN}};
    for (int i = 0; i < nrecs; i++)
        if (recs[i].t > max[recs[i].is_label][recs[i].part])
            max[recs[i].is_label][recs[i].part] = recs[i].t;
    int64_t w = INT64_MAX;
    for (int k = 0; k < 2; k++)
        for (int p = 0; p < 2; p++) {
            LD_TEST_ASSERT(max[k][p] != INT64_MIN, "a side without records");
            if (max[k][p] - OOO < w)
                w = max[k][p] - OOO;
        }
    return w;
}

/* One audit record as a line: the text compared and printed. */
static void fmt_line(char *buf, size_t size, const char *id, const char *type,
                     double label, int64_t lt, int64_t elapsed, int64_t et,
                     int64_t part, int64_t off, double weight, const char *idx,
                     const char *val, const char *dense)
{
    int n = snprintf(
        buf, size,
        "%-18s %-11s label=%.9g label_time=%" PRId64 " elapsed=%" PRId64
        " event_time=%" PRId64 " p=%" PRId64 " off=%" PRId64
        " weight=%.9g idx=[%s] val=[%s] dense=[%s]",
        id, type, label, lt, elapsed, et, part, off, weight, idx, val, dense);
    LD_TEST_ASSERT(n > 0 && (size_t)n < size, "line of %s too long", id);
}

static int expected_lines(const run_conf_t *rc, int64_t wm, char lines[][512])
{
    exp_t *sel[MAX_EXP];
    int n = 0;
    for (int i = 0; i < nexps; i++) {
        exp_t *x = &exps[i];
        if (!(x->runs & rc->mask))
            continue;
        /* The scenario must mean what it says about the end. */
        LD_TEST_ASSERT((x->d >= wm) == (x->tail != 0),
                       "test design: %s d=%" PRId64 " final watermark %" PRId64,
                       x->ev->key, x->d, wm);
        if (x->d < wm) /* released once W > d */
            sel[n++] = x;
    }
    qsort(sel, (size_t)n, sizeof(sel[0]), exp_cmp);
    for (int i = 0; i < n; i++) {
        const exp_t *x = sel[i];
        int labelled =
            !strcmp(x->type, "pos") || !strcmp(x->type, "delayed_pos");
        char idx[16], val[8] = "1", dense[32];
        snprintf(idx, sizeof(idx), "%u", slot_of(x->ev->country));
        snprintf(dense, sizeof(dense), "%.9g", (double)x->ev->x);
        fmt_line(lines[i], 512, x->ev->key, x->type,
                 x->use_default ? rc->default_label : x->label, x->lt,
                 labelled ? x->lt - x->ev->t : -1, x->ev->t, x->ev->part,
                 x->ev->offset, 1.0, idx, val, dense);
    }
    return n;
}

/* ---- Reading the audit topic --------------------------------------------- */

static const char *const audit_keys[] = {
    "event_id",    "event_time", "label_time", "elapsed_ms", "label", "weight",
    "sample_type", "partition",  "offset",     "idx",        "val",   "dense"};

static void join_numbers(json_t *arr, int ints, char *buf, size_t size)
{
    size_t len = 0;
    size_t i;
    json_t *v;
    buf[0] = '\0';
    if (!json_is_array(arr)) {
        snprintf(buf, size, "<not an array>");
        return;
    }
    json_array_foreach(arr, i, v)
    {
        int n;
        if (ints && json_is_integer(v))
            n = snprintf(buf + len, size - len, "%s%" JSON_INTEGER_FORMAT,
                         i ? "," : "", json_integer_value(v));
        else if (!ints && json_is_number(v))
            n = snprintf(buf + len, size - len, "%s%.9g", i ? "," : "",
                         json_number_value(v));
        else
            n = snprintf(buf + len, size - len, "%s<bad>", i ? "," : "");
        if (n < 0 || (size_t)n >= size - len)
            return;
        len += (size_t)n;
    }
}

static int64_t get_int(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : -999999;
}

/* One audit record (value, key) as a line; a malformed one says so. */
static void got_line(const rd_kafka_message_t *m, char *buf, size_t size)
{
    json_error_t jerr;
    json_t *o = json_loadb(m->payload, m->len, 0, &jerr);
    if (!json_is_object(o)) {
        snprintf(buf, size, "<not a JSON object: %.*s>", (int)m->len,
                 (const char *)m->payload);
        json_decref(o);
        return;
    }
    char missing[256] = "";
    for (size_t i = 0; i < sizeof(audit_keys) / sizeof(audit_keys[0]); i++)
        if (!json_object_get(o, audit_keys[i]))
            snprintf(missing + strlen(missing),
                     sizeof(missing) - strlen(missing), " %s", audit_keys[i]);
    const char *id = json_string_value(json_object_get(o, "event_id"));
    const char *type = json_string_value(json_object_get(o, "sample_type"));
    char idx[256], val[256], dense[256];
    join_numbers(json_object_get(o, "idx"), 1, idx, sizeof(idx));
    join_numbers(json_object_get(o, "val"), 0, val, sizeof(val));
    join_numbers(json_object_get(o, "dense"), 0, dense, sizeof(dense));
    json_t *label = json_object_get(o, "label");
    json_t *weight = json_object_get(o, "weight");
    fmt_line(buf, size, id ? id : "<no id>", type ? type : "<no type>",
             json_is_number(label) ? json_number_value(label) : -999999,
             get_int(o, "label_time"), get_int(o, "elapsed_ms"),
             get_int(o, "event_time"), get_int(o, "partition"),
             get_int(o, "offset"),
             json_is_number(weight) ? json_number_value(weight) : -999999, idx,
             val, dense);
    size_t len = strlen(buf);
    if (missing[0] || json_object_size(o) != 12)
        snprintf(buf + len, size - len, " <%zu keys, missing:%s>",
                 json_object_size(o), missing[0] ? missing : " none");
    len = strlen(buf);
    /* The audit record is keyed by the event id. */
    if (!id || m->key_len != strlen(id) || memcmp(m->key, id, m->key_len))
        snprintf(buf + len, size - len, " <kafka key %.*s>", (int)m->key_len,
                 m->key ? (const char *)m->key : "");
    json_decref(o);
}

/* Where read_topic's callback puts the audit records as lines (lines NULL:
 * count only); more than max records fail the test. */
typedef struct lines_out {
    const char *topic;
    char (*lines)[512];
    int n, max;
} lines_out_t;

static void add_line(const rd_kafka_message_t *m, void *opaque)
{
    lines_out_t *o = opaque;
    LD_TEST_ASSERT(o->n < o->max, "more than %d records on %s", o->max,
                   o->topic);
    if (o->lines)
        got_line(m, o->lines[o->n], 512);
    o->n++;
}

/* Reads partition 0 of t from the beginning to its end, read_committed;
 * lines may be NULL (count only). Returns the record count. */
static int read_topic(const char *t, char lines[][512], int max)
{
    lines_out_t o = {.topic = t, .lines = lines, .max = max};
    return (int)ld_test_read_topic(t, 30000, add_line, &o, NULL);
}

/* ---- Running learnd ------------------------------------------------------ */

static void write_config(const run_conf_t *rc, char *path, size_t size)
{
    const char *n = rc->name;
    char names[256];
    snprintf(names, sizeof(names), "%s.%s", prefix, n);
    snprintf(path, size, "%s/%s.yaml", tmpdir, n);
    FILE *f = ld_test_config_begin(path, NULL, names);
    fprintf(f,
            "log:\n"
            "  level: notice\n"
            "metrics:\n"
            "  enabled: false\n"
            "pipeline:\n"
            "  events_topic: %s.events\n"
            "  labels_topic: %s.labels\n"
            "  dlq_topic: %s.%s.dlq\n"
            "  group_id: %s.%s.group\n"
            "  format: json\n"
            "  key_field: id\n"
            "  event_time_field: ts\n"
            "  label_time_field: lt\n"
            "  dense_fields: [x]\n"
            "  hash_fields: [country]\n"
            "  label_mode: %s\n"
            "  label_field: %s\n"
            "  label_equals: click\n"
            "labeling:\n"
            "  window: %dms\n"
            "  max_out_of_orderness: %dms\n"
            "  idle_timeout: 0\n"
            "  late_horizon: %dms\n"
            "  aggregate: %s\n"
            "  late_policy: %s\n"
            "  default_label: %g\n"
            "  output_topic: %s.%s.audit\n"
            "  output_format: json\n"
            "trainer:\n"
            "  name: audit\n"
            "  model: linear\n"
            "  hash_bits: %d\n"
            "  batch_size: 8\n"
            "checkpoint:\n"
            "  dir: %s/%s-models\n"
            "triggers:\n"
            "  time_enabled: false\n"
            "  volume_enabled: false\n"
            "  performance_enabled: false\n"
            "  drift_enabled: false\n",
            prefix, prefix, prefix, n, prefix, n, rc->label_mode,
            rc->label_field, WINDOW, OOO, HORIZON, rc->aggregate,
            rc->late_policy, rc->default_label, prefix, n, HASH_BITS, tmpdir,
            n);
    fclose(f);
}

/* Waits for every child; returns their exit codes in code[]. */
static void wait_all(const pid_t *pid, int *code, int n, int timeout_ms)
{
    int64_t deadline = ld_test_deadline(timeout_ms);
    int left = n;
    for (int i = 0; i < n; i++)
        code[i] = -1;
    while (left) {
        for (int i = 0; i < n; i++) {
            int st;
            if (code[i] >= 0 || waitpid(pid[i], &st, WNOHANG) != pid[i])
                continue;
            code[i] = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            left--;
        }
        if (left && !ld_test_remaining(deadline)) {
            for (int i = 0; i < n; i++)
                if (code[i] < 0) {
                    kill(pid[i], SIGKILL);
                    waitpid(pid[i], NULL, 0);
                }
            LD_TEST_FAIL("learnd did not exit in %d ms (logs in %s)",
                         timeout_ms, tmpdir);
        }
        if (left)
            usleep(20000); /* polling a child's exit: nothing to await on */
    }
}

static void print_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char line[1024];
    while (fgets(line, sizeof(line), f))
        fprintf(stderr, "  | %s", line);
    fclose(f);
}

/* ---- The test ------------------------------------------------------------ */

static void check_run(const run_conf_t *rc, int64_t wm)
{
    static char want[MAX_EXP][512], got[MAX_EXP][512];
    char t[256], what[64];
    int nw = expected_lines(rc, wm, want);
    snprintf(what, sizeof(what), "%s.audit", rc->name);
    topic(t, sizeof(t), what);
    int ng = read_topic(t, got, MAX_EXP);
    int same = nw == ng;
    for (int i = 0; same && i < nw; i++)
        same = strcmp(want[i], got[i]) == 0;
    if (!same) {
        fprintf(stderr,
                "run %s (aggregate %s, late_policy %s): the audit topic "
                "differs from the expected labelled examples\n"
                "expected (%d, release order):\n",
                rc->name, rc->aggregate, rc->late_policy, nw);
        for (int i = 0; i < nw; i++)
            fprintf(stderr, " %c%2d %s\n",
                    i < ng && !strcmp(want[i], got[i]) ? ' ' : '!', i, want[i]);
        fprintf(stderr, "got (%d, topic order):\n", ng);
        for (int i = 0; i < ng; i++)
            fprintf(stderr, " %c%2d %s\n",
                    i < nw && !strcmp(want[i], got[i]) ? ' ' : '!', i, got[i]);
        /* The set, whatever the order. */
        for (int i = 0; i < nw; i++) {
            int found = 0;
            for (int k = 0; k < ng && !found; k++)
                found = !strcmp(want[i], got[k]);
            if (!found)
                fprintf(stderr, "missing: %s\n", want[i]);
        }
        for (int k = 0; k < ng; k++) {
            int found = 0;
            for (int i = 0; i < nw && !found; i++)
                found = !strcmp(want[i], got[k]);
            if (!found)
                fprintf(stderr, "unexpected: %s\n", got[k]);
        }
        LD_TEST_FAIL("run %s: audit records differ (learnd log in %s/%s.log)",
                     rc->name, tmpdir, rc->name);
    }
    int by_type[5] = {0};
    for (int i = 0; i < nexps; i++)
        if ((exps[i].runs & rc->mask) && exps[i].d < wm)
            by_type[type_rank(exps[i].type)]++;
    ld_test_say("run %s: %d audit records as expected (%d pos, %d "
                "default_neg, %d delayed_pos), in release order",
                rc->name, ng, by_type[0], by_type[1], by_type[3]);
    snprintf(what, sizeof(what), "%s.dlq", rc->name);
    topic(t, sizeof(t), what);
    LD_TEST_EQ_I64("dead letters", 0, read_topic(t, NULL, MAX_RECS));
}

int main(void)
{
    ld_test_name(prefix, sizeof(prefix), "audit");
    ld_test_tmpdir(tmpdir, sizeof(tmpdir), "0006");
    build();

    rd_kafka_t *admin = ld_test_new(RD_KAFKA_PRODUCER, ld_test_conf_new());
    char t[256];
    topic(t, sizeof(t), "events");
    ld_test_create_topic(admin, t, 2, 30000);
    topic(t, sizeof(t), "labels");
    ld_test_create_topic(admin, t, 2, 30000);
    for (int i = 0; i < NRUNS; i++) {
        /* The audit topic has one partition: its order is the release
         * order (records go to RD_KAFKA_PARTITION_UA). */
        topic(t, sizeof(t), runs[i].name);
        ld_test_create_outputs(admin, t, 1);
    }
    rd_kafka_destroy(admin);
    produce_all();
    ld_test_say("produced %d records (%d events), %d expectations", nrecs,
                nevents, nexps);

    /* All runs at once: separate groups, transactional ids and outputs. */
    pid_t pid[NRUNS];
    int code[NRUNS];
    char logs[NRUNS][256];
    for (int i = 0; i < NRUNS; i++) {
        char config[256];
        write_config(&runs[i], config, sizeof(config));
        snprintf(logs[i], sizeof(logs[i]), "%s/%s.log", tmpdir, runs[i].name);
        pid[i] = ld_test_spawn_run(LD_LEARND_BIN, config, 1, logs[i]);
    }
    wait_all(pid, code, NRUNS, TIMEOUT);
    for (int i = 0; i < NRUNS; i++)
        if (code[i] != 0) {
            fprintf(stderr, "learnd run %s exited %d; its log:\n", runs[i].name,
                    code[i]);
            print_file(logs[i]);
            LD_TEST_FAIL("learnd run %s exited %d", runs[i].name, code[i]);
        }

    int64_t wm = final_watermark();
    for (int i = 0; i < NRUNS; i++)
        check_run(&runs[i], wm);

    ld_test_rm_rf(tmpdir);
    printf("0006-audit-labels: PASS\n");
    return 0;
}
