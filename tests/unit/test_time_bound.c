/* SPDX-License-Identifier: Apache-2.0 */
/* Property test of the event-time bound (issue #15): decoder and joiner
 * together, as the daemon chains them. No single record, whatever its time
 * (INT64_MIN/MAX, +-2^61 and one past, the epoch, far past, ten years
 * ahead, the year 2100, one millisecond past pipeline.max_future), inserted
 * at any position of a stream, as an event or a label, on either
 * partition, changes the examples released for the rest of the stream: the
 * released examples without the record's own are exactly those of the
 * stream without it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "labeling/labeling.h"
#include "pipeline/decode.h"
#include "pipeline/pipeline.h"
#include "tests/data/pipeline/fixtures.h"

#define T0       INT64_C(1767225600000) /* 2026-01-01: event times */
#define MAX_FUT  3600000                /* pipeline.max_future default */
#define NEVENTS  24
#define MAX_RECS 128
#define MAX_EX   256

/* One input record: JSON value and the Kafka timestamp it was written at. */
typedef struct rec {
    int kind; /* LD_RECORD_* */
    int part;
    char json[200];
    int64_t ts;
} rec_t;

/* What identifies an example whatever the offsets (an insertion shifts
 * those of the later records of its partition). */
typedef struct ex {
    char id[32];
    int type;
    float label;
    int64_t et, lt;
    int32_t part;
} ex_t;

typedef struct ctx {
    ld_decoder_t *dec[2];
} ctx_t;

static int base_stream(rec_t *r)
{
    int n = 0;
    /* Two partitions, events a second apart, a label 1.5 s after every
     * third event; each written 500 ms after its event time, in timestamp
     * order across partitions and topics. */
    for (int i = 0; i < NEVENTS; i++) {
        for (int p = 0; p < 2; p++) {
            int64_t t = T0 + i * 1000 + p * 300;
            r[n] = (rec_t){LD_RECORD_EVENT, p, "", t + 500};
            snprintf(r[n].json, sizeof(r[n].json),
                     "{\"event_id\":\"p%d-e%d\",\"event_time\":%" PRId64
                     ",\"f0\":%d,\"country\":\"c%d\"}",
                     p, i, t, i, i % 3);
            n++;
            if (i % 3 == 0) {
                r[n] = (rec_t){LD_RECORD_LABEL, p, "", t + 1500 + 500};
                snprintf(r[n].json, sizeof(r[n].json),
                         "{\"event_id\":\"p%d-e%d\",\"label_time\":%" PRId64
                         ",\"clicked\":1}",
                         p, i, t + 1500);
                n++;
            }
        }
    }
    /* Later records on both sides of both partitions close every window. */
    for (int p = 0; p < 2; p++)
        for (int k = 0; k < 2; k++) {
            int64_t t = T0 + 200000;
            r[n] = (rec_t){k, p, "", t + 500};
            snprintf(r[n].json, sizeof(r[n].json),
                     k ? "{\"event_id\":\"p%d-end\",\"label_time\":%" PRId64
                         ",\"clicked\":0}"
                       : "{\"event_id\":\"p%d-end\",\"event_time\":%" PRId64
                         "}",
                     p, t);
            n++;
        }
    return n;
}

/* Runs recs through decoder and joiner; returns the examples released. */
static int run(ctx_t *c, const rec_t *recs, int n, ex_t *out)
{
    ld_labeling_conf_t lc = {.window_ms = 10000,
                             .max_ooo_ms = 1000,
                             .idle_timeout_ms = 0,
                             .late_horizon_ms = 0,
                             .aggregate = LD_AGG_FIRST,
                             .default_label = 0,
                             .mode = LD_MODE_WINDOW,
                             .late_policy = LD_LATE_DROP,
                             .max_pending = 1000000,
                             .at_bound = LD_BOUND_PAUSE};
    char err[256];
    ld_joiner_t *j = ld_joiner_new(&lc, err, sizeof(err));
    assert_non_null(j);
    assert_int_equal(ld_joiner_assign(j, 0), LD_OK);
    assert_int_equal(ld_joiner_assign(j, 1), LD_OK);
    int64_t off[2][2] = {{0, 0}, {0, 0}};
    int nex = 0;
    for (int i = 0; i < n; i++) {
        const rec_t *r = &recs[i];
        ld_record_t d;
        int64_t o = off[r->kind][r->part]++;
        ld_reason_t why = ld_decoder_decode(c->dec[r->kind], NULL, 0, r->json,
                                            strlen(r->json), r->ts, &d);
        if (why)
            continue; /* a dead letter: the daemon never hands it on */
        ld_err_t e = r->kind == LD_RECORD_EVENT
                         ? ld_joiner_add_event(j, r->part, o, d.key, d.key_len,
                                               d.time_ms, &d.x)
                         : ld_joiner_add_label(j, r->part, o, d.key, d.key_len,
                                               d.time_ms, (float)d.label);
        /* what reaches the joiner, it takes (no refusal, no warning) */
        assert_int_equal(e, LD_OK);
        ld_example_t ex;
        while (ld_joiner_poll(j, &ex)) {
            assert_true(nex < MAX_EX);
            ex_t *x = &out[nex++];
            memset(x, 0, sizeof(*x)); /* compared with memcmp */
            snprintf(x->id, sizeof(x->id), "%s", ex.event_id);
            x->type = (int)ex.sample_type;
            x->label = ex.label;
            x->et = ex.event_time_ms;
            x->lt = ex.label_time_ms;
            x->part = ex.partition;
        }
    }
    ld_joiner_destroy(j);
    return nex;
}

static void test_one_record_changes_only_itself(void **state)
{
    (void)state;
    char err[512];
    ctx_t c;
    ld_pipeline_conf_t *pc = fx_conf_new("json");
    assert_non_null(pc);
    assert_int_equal(pc->max_future_ms, MAX_FUT); /* the default */
    for (int k = 0; k < 2; k++) {
        c.dec[k] = ld_decoder_new(pc, (ld_record_kind_t)k, err, sizeof(err));
        assert_non_null(c.dec[k]);
    }
    static rec_t base[MAX_RECS], with[MAX_RECS + 1];
    static ex_t want[MAX_EX], got[MAX_EX];
    int n = base_stream(base);
    int nwant = run(&c, base, n, want);
    /* every event decided: 2 x NEVENTS examples, a third of them pos */
    assert_int_equal(nwant, 2 * NEVENTS);

    /* INT64_MIN/MAX, +-2^61 and one past, epoch, far past, 10 years and
     * 2100 ahead, 1 ms past max_future (relative to the timestamp) */
    const char *const fixed[] = {"-9223372036854775808",
                                 "9223372036854775807",
                                 "-2305843009213693952",
                                 "2305843009213693952",
                                 "-2305843009213693953",
                                 "2305843009213693953",
                                 "0",
                                 "-1000000000000",
                                 "2082758400000",
                                 "4102444800000"};
    const size_t nfixed = sizeof(fixed) / sizeof(fixed[0]);
    long runs = 0;
    for (int pos = 0; pos <= n; pos++) {
        /* written at about the wall-clock time of its neighbours */
        int64_t ts = pos < n ? base[pos].ts : base[n - 1].ts;
        for (size_t v = 0; v <= nfixed; v++) {
            char tv[32];
            if (v < nfixed)
                snprintf(tv, sizeof(tv), "%s", fixed[v]);
            else
                snprintf(tv, sizeof(tv), "%" PRId64, ts + MAX_FUT + 1);
            for (int kind = 0; kind < 2; kind++) {
                for (int p = 0; p < 2; p++) {
                    memcpy(with, base, (size_t)pos * sizeof(rec_t));
                    memcpy(with + pos + 1, base + pos,
                           (size_t)(n - pos) * sizeof(rec_t));
                    rec_t *x = &with[pos];
                    *x = (rec_t){kind, p, "", ts};
                    /* a label names a real event: it must still not
                     * join it at such a time */
                    if (kind)
                        snprintf(x->json, sizeof(x->json),
                                 "{\"event_id\":\"p%d-e3\",\"label_time\":"
                                 "%s,\"clicked\":1}",
                                 p, tv);
                    else
                        snprintf(x->json, sizeof(x->json),
                                 "{\"event_id\":\"x\",\"event_time\":%s,"
                                 "\"f0\":1}",
                                 tv);
                    int ngot = run(&c, with, n + 1, got);
                    /* drop the record's own example, if any */
                    int m = 0;
                    for (int i = 0; i < ngot; i++)
                        if (strcmp(got[i].id, "x") != 0)
                            got[m++] = got[i];
                    if (m != nwant ||
                        memcmp(got, want, (size_t)m * sizeof(ex_t))) {
                        fail_msg("time %s as %s on partition %d at %d: %d "
                                 "examples instead of %d, or others",
                                 tv, kind ? "label" : "event", p, pos, m,
                                 nwant);
                    }
                    runs++;
                }
            }
        }
    }
    print_message("%ld streams with one hostile record: none changed the "
                  "rest\n",
                  runs);
    for (int k = 0; k < 2; k++)
        ld_decoder_destroy(c.dec[k]);
    fx_conf_free(pc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_record_changes_only_itself),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
