/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the demo generator: determinism, order, and records that
 * avro-c reads with the example schemas. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <avro.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/demo.h"

static avro_schema_t load_schema(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char json[16384];
    size_t n = fread(json, 1, sizeof(json) - 1, f);
    fclose(f);
    json[n] = '\0';
    avro_schema_t schema;
    assert_int_equal(avro_schema_from_json_length(json, n, &schema), 0);
    return schema;
}

static const ld_demo_gen_conf_t conf = {.seed = 7,
                                        .n_events = 20000,
                                        .drift_at = 10000,
                                        .start_time_ms = 1700000000000,
                                        .step_ms = 5,
                                        .label_delay_ms = 20000};

/* FNV-1a over every record, so a change in any byte shows. */
static uint64_t run_digest(int64_t *events, int64_t *labels)
{
    ld_demo_gen_t *g = ld_demo_gen_new(&conf);
    assert_non_null(g);
    uint64_t h = UINT64_C(1469598103934665603);
    ld_demo_record_t r;
    int rc;
    while ((rc = ld_demo_gen_next(g, &r)) == 1) {
        for (size_t i = 0; i < r.len; i++)
            h = (h ^ r.value[i]) * UINT64_C(1099511628211);
        h = (h ^ (r.is_label ? 1u : 0u)) * UINT64_C(1099511628211);
    }
    assert_int_equal(rc, 0);
    ld_demo_gen_stats_t st;
    ld_demo_gen_stats(g, &st);
    *events = st.events;
    *labels = st.labels;
    ld_demo_gen_destroy(g);
    return h;
}

static void test_deterministic(void **state)
{
    (void)state;
    int64_t e1, l1, e2, l2;
    uint64_t a = run_digest(&e1, &l1), b = run_digest(&e2, &l2);
    assert_true(a == b);
    assert_int_equal(e1, 20000);
    assert_int_equal(l1, l2);
    /* A click rate a CTR model can learn from, not a degenerate one. */
    assert_in_range(l1, 2000, 8000);
}

static void test_avro_and_order(void **state)
{
    (void)state;
    avro_schema_t ev_schema = load_schema(LD_SOURCE_DIR "/schemas/event.avsc");
    avro_schema_t lb_schema = load_schema(LD_SOURCE_DIR "/schemas/label.avsc");
    avro_value_iface_t *ev_if = avro_generic_class_from_schema(ev_schema);
    avro_value_iface_t *lb_if = avro_generic_class_from_schema(lb_schema);
    avro_value_t ev, lb;
    assert_int_equal(avro_generic_value_new(ev_if, &ev), 0);
    assert_int_equal(avro_generic_value_new(lb_if, &lb), 0);

    ld_demo_gen_t *g = ld_demo_gen_new(&conf);
    ld_demo_record_t r;
    int64_t last_event_time = 0, last_label_time = 0, n = 0;
    char *seen = calloc((size_t)conf.n_events, 1);
    while (ld_demo_gen_next(g, &r) == 1) {
        avro_reader_t rd =
            avro_reader_memory((const char *)r.value, (int64_t)r.len);
        avro_value_t *v = r.is_label ? &lb : &ev;
        assert_int_equal(avro_value_read(rd, v), 0);
        /* The whole record was consumed: the encoder matches the schema. */
        char extra;
        assert_int_not_equal(avro_read(rd, &extra, 1), 0);
        avro_reader_free(rd);
        avro_value_t f;
        const char *id;
        size_t idlen;
        int64_t t = 0;
        assert_int_equal(avro_value_get_by_index(v, 0, &f, NULL), 0);
        assert_int_equal(avro_value_get_string(&f, &id, &idlen), 0);
        assert_string_equal(id, r.key);
        assert_int_equal(avro_value_get_by_index(v, 1, &f, NULL), 0);
        assert_int_equal(avro_value_get_long(&f, &t), 0);
        assert_int_equal(t, r.time_ms);
        if (r.is_label) {
            /* A label follows its event and comes in label-time order. */
            assert_true(seen[r.index]);
            assert_true(r.time_ms >
                        conf.start_time_ms + r.index * conf.step_ms);
            assert_true(r.time_ms >= last_label_time);
            last_label_time = r.time_ms;
        } else {
            assert_true(r.time_ms > last_event_time);
            last_event_time = r.time_ms;
            seen[r.index] = 1;
        }
        n++;
    }
    assert_true(n > conf.n_events);
    free(seen);
    ld_demo_gen_destroy(g);
    avro_value_decref(&ev);
    avro_value_decref(&lb);
    avro_value_iface_decref(ev_if);
    avro_value_iface_decref(lb_if);
    avro_schema_decref(ev_schema);
    avro_schema_decref(lb_schema);
}

static void test_early_labels(void **state)
{
    (void)state;
    ld_demo_gen_conf_t c = conf;
    c.early_label_share = 0.2;
    ld_demo_gen_t *g = ld_demo_gen_new(&c);
    ld_demo_record_t r;
    char *seen = calloc((size_t)c.n_events, 1);
    int64_t early = 0, last_label = 0, max_event = 0, n_events = 0;
    while (ld_demo_gen_next(g, &r) == 1) {
        if (r.is_label) {
            early += !seen[r.index];
            /* labels stay in label-time order */
            assert_true(r.time_ms >= last_label);
            last_label = r.time_ms;
        } else {
            assert_false(seen[r.index]);
            seen[r.index] = 1;
            n_events++;
            /* a held event is late by less than 400 ms of event time */
            assert_true(r.time_ms > max_event - 400);
            if (r.time_ms > max_event)
                max_event = r.time_ms;
        }
    }
    assert_int_equal(n_events, c.n_events); /* nothing lost */
    assert_in_range(early, 100, 2000);
    free(seen);
    ld_demo_gen_destroy(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_avro_and_order),
        cmocka_unit_test(test_early_labels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
