/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of publish/resume.c and publish/publish.c: the resume-state
 * codecs byte for byte and on every truncation, the joiner state of
 * partitions numbered 4096 and up (issue #16: a fixed table of 4096 dropped
 * their resume records without a word), and the publishers (capture, Kafka
 * queued and on its own thread). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <unistd.h>

#include "publish/publish.h"
#include "trainer/checkpoint.h"

static const char *const topics[] = {"events", "labels"};

/* ---- Partition sets ----------------------------------------------------- */

static void test_partset(void **state)
{
    (void)state;
    ld_partset_t s = {0};
    assert_int_equal(ld_partset_next(&s, -1), -1);
    assert_int_equal(ld_partset_add(&s, 5000), LD_OK);
    assert_int_equal(ld_partset_add(&s, 0), LD_OK);
    assert_int_equal(ld_partset_add(&s, 4096), LD_OK);
    assert_int_equal(ld_partset_add(&s, 65535), LD_OK);
    assert_int_equal(ld_partset_add(&s, 65536), LD_ERR_INVAL);
    assert_int_equal(ld_partset_add(&s, -1), LD_ERR_INVAL);
    assert_true(ld_partset_has(&s, 4096));
    assert_false(ld_partset_has(&s, 4095));
    assert_false(ld_partset_has(&s, 70000));
    int32_t want[] = {0, 4096, 5000, 65535};
    int32_t p = -1;
    for (size_t i = 0; i < 4; i++) {
        p = ld_partset_next(&s, p);
        assert_int_equal(p, want[i]);
    }
    assert_int_equal(ld_partset_next(&s, p), -1);
    ld_partset_del(&s, 4096);
    ld_partset_del(&s, 90000); /* absent: no-op */
    assert_false(ld_partset_has(&s, 4096));
    assert_int_equal(ld_partset_next(&s, 0), 5000);
    ld_partset_free(&s);
    assert_int_equal(ld_partset_next(&s, -1), -1);
}

/* ---- labeling_state ----------------------------------------------------- */

static ld_labeling_conf_t joiner_conf(void)
{
    ld_labeling_conf_t c;
    memset(&c, 0, sizeof(c));
    c.window_ms = 1000;
    c.idle_timeout_ms = 0;
    c.late_horizon_ms = 0;
    c.aggregate = LD_AGG_FIRST;
    c.mode = LD_MODE_WINDOW;
    c.late_policy = LD_LATE_DROP;
    c.max_pending = 1000000;
    c.at_bound = LD_BOUND_PAUSE;
    return c;
}

static ld_joiner_t *joiner(void)
{
    char err[256];
    ld_labeling_conf_t c = joiner_conf();
    ld_joiner_t *j = ld_joiner_new(&c, err, sizeof(err));
    if (!j)
        fail_msg("ld_joiner_new: %s", err);
    return j;
}

/* Partitions 3, 4096 and 5000 each hold one pending event at offset
 * 10 + p % 7: the resume state of every one of them survives, and a
 * restarted joiner re-reads each from its own pending event. */
static void test_labeling_high_partitions(void **state)
{
    (void)state;
    static const int32_t parts[] = {3, 4096, 5000};
    ld_joiner_t *j = joiner();
    ld_partset_t set = {0};
    for (size_t i = 0; i < 3; i++) {
        int32_t p = parts[i];
        assert_int_equal(ld_joiner_assign(j, p), LD_OK);
        assert_int_equal(ld_partset_add(&set, p), LD_OK);
        float v = 1.0f;
        uint32_t idx = 7;
        ld_features_t x = {&idx, &v, NULL, 1, 0};
        char key[16];
        snprintf(key, sizeof(key), "k%d", (int)p);
        assert_int_equal(
            ld_joiner_add_event(j, p, 10 + p % 7, key, strlen(key), 1000, &x),
            LD_OK);
    }
    ld_wbuf_t w = {0};
    assert_int_equal(ld_resume_labeling_encode(j, &set, &w), LD_OK);
    /* Three framed records, each as ld_joiner_resume_encode makes it. */
    ld_rbuf_t r = ld_rbuf_make(w.p, w.len);
    for (size_t i = 0; i < 3; i++) {
        uint8_t *rec = NULL;
        size_t len = 0;
        assert_int_equal(ld_joiner_resume_encode(j, parts[i], &rec, &len),
                         LD_OK);
        assert_int_equal(ld_rbuf_u32(&r), len);
        const uint8_t *got = ld_rbuf_take(&r, len);
        assert_non_null(got);
        assert_memory_equal(got, rec, len);
        free(rec);
    }
    assert_int_equal(ld_rbuf_left(&r), 0);

    ld_joiner_t *k = joiner();
    assert_int_equal(ld_resume_labeling_load(k, w.p, w.len), LD_OK);
    for (size_t i = 0; i < 3; i++) {
        int64_t eo = -2, lo = -2;
        assert_int_equal(ld_joiner_resume_offsets(k, parts[i], &eo, &lo),
                         LD_OK);
        assert_int_equal(eo, 10 + parts[i] % 7);
    }
    /* A partition nobody saved is unknown to the restarted joiner. */
    int64_t eo, lo;
    assert_int_equal(ld_joiner_resume_offsets(k, 4095, &eo, &lo), LD_ERR_INVAL);

    /* A frame cut anywhere is refused, never read past; a cut between
     * frames is a shorter state of whole records. */
    size_t whole[3], at = 0;
    r = ld_rbuf_make(w.p, w.len);
    for (size_t i = 0; i < 3; i++) {
        uint32_t n = ld_rbuf_u32(&r);
        assert_non_null(ld_rbuf_take(&r, n));
        whole[i] = at = at + 4 + n;
    }
    for (size_t cut = 1; cut < w.len; cut++) {
        ld_joiner_t *m = joiner();
        ld_err_t err = ld_resume_labeling_load(m, w.p, cut);
        ld_joiner_destroy(m);
        int between = cut == whole[0] || cut == whole[1];
        assert_int_equal(err, between ? LD_OK : LD_ERR_CORRUPT);
    }
    assert_int_equal(ld_resume_labeling_load(k, NULL, 0), LD_OK);
    ld_wbuf_free(&w);
    ld_partset_free(&set);
    ld_joiner_destroy(j);
    ld_joiner_destroy(k);
}

/* The hand-over text of one partition's record (offset metadata): the tag,
 * then the record in base64; loaded back into another joiner for that
 * partition only; over the bound without advances, then refused; anything
 * else is not ours (NOENT) or corrupt, never read past. */
static void test_handover_text(void **state)
{
    (void)state;
    ld_joiner_t *j = joiner();
    assert_int_equal(ld_joiner_assign(j, 2), LD_OK);
    float v = 1.0f;
    uint32_t idx = 7;
    ld_features_t x = {&idx, &v, NULL, 1, 0};
    assert_int_equal(ld_joiner_add_event(j, 2, 5, "k", 1, 1000, &x), LD_OK);
    /* three recorded advances after the pending event: 72 + 48 bytes, no
     * pending label (4) and 16 lifetime counters (4 + 128) */
    for (int i = 0; i < 3; i++) {
        ld_wm_advance_t adv = {LD_TOPIC_LABELS, 2, 10 + i, 100 + i};
        assert_int_equal(ld_joiner_apply_advance(j, &adv), LD_OK);
    }
    uint8_t *rec = NULL;
    size_t rlen = 0;
    assert_int_equal(ld_joiner_resume_encode(j, 2, &rec, &rlen), LD_OK);
    assert_int_equal(rlen, 72 + 3 * 16 + 4 + 4 + 16 * 8);
    free(rec);
    const size_t tag = strlen(LD_RESUME_HANDOVER_TAG);
    char *t = NULL;
    size_t n = 0;
    int small = -1;
    assert_int_equal(ld_resume_handover_encode(j, 2, 4000, &t, &n, &small),
                     LD_OK);
    assert_int_equal(small, 0);
    assert_int_equal(n, tag + 344); /* 256 bytes in base64 */
    assert_int_equal(strlen(t), n);
    assert_memory_equal(t, LD_RESUME_HANDOVER_TAG, tag);
    assert_memory_equal(t + tag, "TERKMgIA", 8); /* "LDJ2", 2 (LE) */

    ld_joiner_t *k = joiner();
    assert_int_equal(ld_resume_handover_load(k, 3, t, n), LD_ERR_CORRUPT);
    assert_int_equal(ld_resume_handover_load(k, 2, t, n), LD_OK);
    int64_t eo = -2, lo = -2;
    assert_int_equal(ld_joiner_resume_offsets(k, 2, &eo, &lo), LD_OK);
    assert_int_equal(eo, 5);
    assert_int_equal(ld_joiner_assign(k, 2), LD_OK);
    assert_int_equal(ld_resume_handover_load(k, 2, t, n), LD_ERR_INVAL);
    /* The text is j's record in base64 (RFC 4648, a bit-by-bit encoder
     * here), advances and all. */
    uint8_t *a = NULL;
    size_t alen = 0;
    assert_int_equal(ld_joiner_resume_encode(j, 2, &a, &alen), LD_OK);
    static const char al[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char want[512];
    size_t o = 0, bits = 0;
    uint32_t acc = 0;
    for (size_t i = 0; i < alen; i++) {
        acc = acc << 8 | a[i];
        for (bits += 8; bits >= 6; bits -= 6)
            want[o++] = al[acc >> (bits - 6) & 63];
    }
    if (bits)
        want[o++] = al[acc << (6 - bits) & 63];
    while (o % 4)
        want[o++] = '=';
    assert_int_equal(o, n - tag);
    assert_memory_equal(t + tag, want, o);
    free(a);

    /* Every cut of the text: not ours inside the tag, else corrupt. */
    for (size_t cut = 0; cut < n; cut++) {
        ld_joiner_t *m = joiner();
        ld_err_t err = ld_resume_handover_load(m, 2, t, cut);
        assert_int_equal(err, cut < tag ? LD_ERR_NOENT : LD_ERR_CORRUPT);
        ld_joiner_destroy(m);
    }
    /* A character that is no base64, and padding in the middle. */
    char *bad = strdup(t);
    bad[tag + 8] = '*';
    assert_int_equal(ld_resume_handover_load(k, 1, bad, n), LD_ERR_CORRUPT);
    memcpy(bad, t, n);
    bad[tag + 6] = '=';
    assert_int_equal(ld_resume_handover_load(k, 1, bad, n), LD_ERR_CORRUPT);
    free(bad);
    assert_int_equal(ld_resume_handover_load(k, 1, NULL, 0), LD_ERR_NOENT);
    assert_int_equal(ld_resume_handover_load(k, 1, "untrained=4", 11),
                     LD_ERR_NOENT);
    free(t);

    /* Over the bound: the record without its advances and pending labels
     * (208 bytes). */
    assert_int_equal(ld_resume_handover_encode(j, 2, tag + 343, &t, &n, &small),
                     LD_OK);
    assert_int_equal(small, 1);
    assert_int_equal(n, tag + 280);
    ld_joiner_t *m = joiner();
    assert_int_equal(ld_resume_handover_load(m, 2, t, n), LD_OK);
    assert_int_equal(ld_joiner_resume_offsets(m, 2, &eo, &lo), LD_OK);
    assert_int_equal(eo, 5);
    free(t);
    ld_joiner_destroy(m);
    assert_int_equal(ld_resume_handover_encode(j, 2, tag + 279, &t, &n, &small),
                     LD_ERR_RANGE);
    assert_null(t);
    assert_int_equal(ld_resume_handover_encode(j, 9, 4000, &t, &n, &small),
                     LD_ERR_INVAL);
    ld_joiner_destroy(k);
    ld_joiner_destroy(j);
}

/* ---- trainer_state ------------------------------------------------------ */

static ld_trainer_t *trainer(void)
{
    ld_trainer_conf_t c;
    memset(&c, 0, sizeof(c));
    c.name = "resume";
    c.model = LD_MODEL_LOGISTIC;
    c.num_classes = 2;
    c.hash_bits = 10;
    c.dense_dim = 2;
    c.optimizer = LD_OPT_SGD;
    c.learning_rate = 0.1;
    c.lr_schedule = LD_LR_CONSTANT;
    c.lr_power_t = 0.5;
    c.ftrl_beta = 1.0;
    c.epsilon = 1e-8;
    c.adam_beta1 = 0.9;
    c.adam_beta2 = 0.999;
    c.batch_size = 100; /* the examples below stay queued */
    c.metrics_window = 100;
    c.blas_threads = 1;
    c.snapshot_step = 65536;
    char err[256];
    ld_trainer_t *t = ld_trainer_new(&c, err, sizeof(err));
    if (!t)
        fail_msg("ld_trainer_new: %s", err);
    return t;
}

/* Two queued examples (one without an event id), a lineage with a
 * consumed range, and the counters. */
static void fill(ld_trainer_t *t, ld_lineage_t *lin, ld_resume_counters_t *c)
{
    uint32_t idx[2] = {3, 900};
    float val[2] = {1.0f, -0.5f}, dense[2] = {0.25f, 2.0f};
    ld_example_t ex = {0};
    ex.event_id = "ev-1";
    ex.event_time_ms = 1700000000123;
    ex.label_time_ms = 1700000000456;
    ex.offset = 77;
    ex.partition = 4100;
    ex.label = 1.0f;
    ex.weight = 1.0f;
    ex.sample_type = LD_SAMPLE_POS;
    ex.x = (ld_features_t){idx, val, dense, 2, 2};
    assert_int_equal(ld_trainer_add(t, &ex), LD_OK);
    ex.event_id = NULL;
    ex.offset = 78;
    ex.label = 0.0f;
    ex.sample_type = LD_SAMPLE_DEFAULT_NEG;
    ex.x.nnz = 1;
    assert_int_equal(ld_trainer_add(t, &ex), LD_OK);
    assert_int_equal(ld_trainer_queued(t), 2);
    ld_lineage_consumed(lin, topics[0], 4100, 70);
    ld_lineage_consumed(lin, topics[0], 4100, 78);
    ld_lineage_consumed(lin, topics[1], 2, 5);
    memset(c, 0, sizeof(*c));
    c->version = 12;
    c->published = 3;
    for (int i = 0; i < LD_SAMPLE__COUNT; i++)
        c->parent_counts[i] = (uint64_t)(i + 1) * 1000;
    for (int i = 0; i < 32; i++)
        c->published_sha[i] = (uint8_t)(0xa0 + i);
}

static void test_run_state_round_trip(void **state)
{
    (void)state;
    ld_trainer_t *t = trainer();
    ld_lineage_t *lin = ld_lineage_new();
    ld_resume_counters_t c;
    fill(t, lin, &c);
    ld_wbuf_t w = {0};
    assert_int_equal(ld_resume_run_encode(&c, t, lin, &w), LD_OK);
    /* The header as the format fixes it: magic, format 1, version,
     * published, parent counts, two queued examples. */
    static const uint8_t head[] = {'L', 'D', 'R', 'S', 1, 0, 0,    0, 12,
                                   0,   0,   0,   0,   0, 0, 0,    3, 0,
                                   0,   0,   0,   0,   0, 0, 0xe8, 3};
    assert_memory_equal(w.p, head, sizeof(head));
    assert_memory_equal(w.p + 8 + 16 + 32, ((uint8_t[]){2, 0, 0, 0}), 4);
    /* The first example's id, NUL included, after its fixed 37 bytes. */
    assert_memory_equal(w.p + 60 + 37, ((uint8_t[]){5, 0}), 2);
    assert_memory_equal(w.p + 60 + 39, "ev-1", 5);
    assert_memory_equal(w.p + w.len - 32, c.published_sha, 32);

    ld_trainer_t *t2 = trainer();
    ld_lineage_t *lin2 = ld_lineage_new();
    ld_resume_counters_t d;
    memset(&d, 0, sizeof(d));
    assert_int_equal(ld_resume_run_decode(w.p, w.len, &d, t2, lin2, topics, 2),
                     LD_OK);
    assert_memory_equal(&d, &c, sizeof(c));
    assert_int_equal(ld_trainer_queued(t2), 2);
    ld_example_t a, b;
    assert_int_equal(ld_trainer_queued_get(t2, 0, &a), LD_OK);
    assert_int_equal(ld_trainer_queued_get(t2, 1, &b), LD_OK);
    assert_string_equal(a.event_id, "ev-1");
    assert_null(b.event_id);
    assert_int_equal(a.partition, 4100);
    assert_int_equal(b.offset, 78);
    assert_int_equal(a.x.nnz, 2);
    assert_int_equal(a.x.idx[1], 900);
    assert_true(a.x.val[1] == -0.5f);
    assert_int_equal(b.x.nnz, 1);
    assert_true(b.x.dense[1] == 2.0f);
    /* Encoding what was decoded gives the same bytes. */
    ld_wbuf_t w2 = {0};
    assert_int_equal(ld_resume_run_encode(&d, t2, lin2, &w2), LD_OK);
    assert_int_equal(w2.len, w.len);
    assert_memory_equal(w2.p, w.p, w.len);
    ld_wbuf_free(&w2);

    /* A state of a daemon before published_sha: that one stays as it was
     * (the warm start's). */
    ld_trainer_t *t3 = trainer();
    ld_lineage_t *lin3 = ld_lineage_new();
    ld_resume_counters_t e;
    memset(&e, 0x5c, sizeof(e));
    assert_int_equal(
        ld_resume_run_decode(w.p, w.len - 32, &e, t3, lin3, topics, 2), LD_OK);
    assert_int_equal(e.version, 12);
    for (int i = 0; i < 32; i++)
        assert_int_equal(e.published_sha[i], 0x5c);
    ld_trainer_destroy(t3);
    ld_lineage_destroy(lin3);

    ld_wbuf_free(&w);
    ld_trainer_destroy(t);
    ld_trainer_destroy(t2);
    ld_lineage_destroy(lin);
    ld_lineage_destroy(lin2);
}

/* Every truncation but the one that drops exactly published_sha, and any
 * trailing byte, is refused (not a crash, not a silent partial state). */
static void test_run_state_truncated(void **state)
{
    (void)state;
    ld_trainer_t *t = trainer();
    ld_lineage_t *lin = ld_lineage_new();
    ld_resume_counters_t c;
    fill(t, lin, &c);
    ld_wbuf_t w = {0};
    assert_int_equal(ld_resume_run_encode(&c, t, lin, &w), LD_OK);
    ld_wbuf_u8(&w, 0); /* one trailing byte */
    for (size_t cut = 0; cut <= w.len; cut++) {
        if (cut == w.len - 1 || cut == w.len - 1 - 32)
            continue; /* the whole state, and the one before published_sha */
        ld_trainer_t *t2 = trainer();
        ld_lineage_t *lin2 = ld_lineage_new();
        ld_resume_counters_t d = c;
        ld_err_t err = ld_resume_run_decode(w.p, cut, &d, t2, lin2, topics, 2);
        ld_trainer_destroy(t2);
        ld_lineage_destroy(lin2);
        if (err != LD_ERR_CORRUPT)
            fail_msg("cut at %zu of %zu: %s", cut, w.len, ld_err_str(err));
    }
    /* Not a resume state at all. */
    static const uint8_t other[] = {'L', 'D', 'R', 'T', 1, 0, 0, 0};
    ld_resume_counters_t d = c;
    assert_int_equal(
        ld_resume_run_decode(other, sizeof(other), &d, t, lin, topics, 2),
        LD_ERR_CORRUPT);
    ld_wbuf_free(&w);
    ld_trainer_destroy(t);
    ld_lineage_destroy(lin);
}

/* ---- The publishers ------------------------------------------------------ */

static const ld_publisher_conf_t pub_conf = {
    .model = "resume",
    .checkpoint_topic = "ckpt",
    .trigger_topic = "triggers",
    .chunk_size = 1024,
    .learnd_version = "test",
    .state_topic = "state",
};

/* Capture (replay): every publication moves the version on at once,
 * nothing waits, and only the first snapshot of the version asked for is
 * kept, for the caller to take once. */
static void test_capture(void **state)
{
    (void)state;
    ld_trainer_t *t = trainer();
    ld_publisher_t *p = ld_publisher_new_capture(&pub_conf, 2);
    assert_non_null(p);
    ld_snapshot_t *s1 = ld_trainer_snapshot(t), *s2 = ld_trainer_snapshot(t),
                  *s3 = ld_trainer_snapshot(t);
    assert_int_equal(ld_publisher_queue(p, NULL, s1, 1, NULL), LD_OK);
    assert_int_equal(ld_publisher_counters(p)->version, 1);
    assert_null(ld_publisher_take_captured(p));
    assert_int_equal(ld_publisher_queue(p, NULL, NULL, 0, NULL), LD_OK);
    assert_int_equal(ld_publisher_counters(p)->version, 1);
    assert_int_equal(ld_publisher_queue(p, NULL, s2, 2, NULL), LD_OK);
    assert_int_equal(ld_publisher_queue(p, NULL, s3, 2, NULL), LD_OK);
    assert_int_equal(ld_publisher_waiting(p), 0);
    assert_int_equal(ld_publisher_captured_count(p), 3);
    ld_snapshot_t *got = ld_publisher_take_captured(p);
    assert_ptr_equal(got, s2);
    assert_null(ld_publisher_take_captured(p));
    assert_int_equal(ld_publisher_flush(p, NULL), LD_OK);
    assert_int_equal(
        ld_publisher_record(p, NULL, "LabelledExample", "audit", "k", "v", 1),
        LD_OK);
    ld_snapshot_destroy(got);
    ld_publisher_destroy(p);
    ld_trainer_destroy(t);
}

/* Kafka (run): publications wait for the commit point, in order; the
 * newest one with a checkpoint is what a final checkpoint compares with. */
static void test_kafka_queue(void **state)
{
    (void)state;
    ld_trainer_t *t = trainer();
    ld_publisher_t *p = ld_publisher_new_kafka(&pub_conf);
    assert_non_null(p);
    uint8_t sha[32], want[32];
    uint64_t v = 0;
    assert_int_equal(ld_publisher_last_queued(p, sha, &v), 0);
    ld_snapshot_t *s1 = ld_trainer_snapshot(t);
    ld_lineage_t *lin = ld_lineage_new();
    ld_resume_counters_t c;
    fill(t, lin, &c); /* two examples to train: other parameters */
    assert_int_equal(ld_trainer_flush(t), LD_OK);
    ld_lineage_destroy(lin);
    ld_snapshot_t *s2 = ld_trainer_snapshot(t);
    ld_snapshot_params_sha256(s2, want);
    assert_int_equal(ld_publisher_queue(p, NULL, s1, 1, NULL), LD_OK);
    assert_int_equal(ld_publisher_queue(p, NULL, s2, 2, NULL), LD_OK);
    assert_int_equal(ld_publisher_queue(p, NULL, NULL, 0, NULL), LD_OK);
    assert_int_equal(ld_publisher_waiting(p), 3);
    assert_int_equal(ld_publisher_last_queued(p, sha, &v), 1);
    assert_int_equal(v, 2);
    assert_memory_equal(sha, want, 32);
    /* Nothing is published before the commit point. */
    assert_int_equal(ld_publisher_counters(p)->version, 0);
    ld_publisher_destroy(p); /* frees what waits */
    ld_trainer_destroy(t);
}

/* The delivery report contract of ld_pipeline_producer(): the offset, or
 * -1, stored atomically into the message opaque. */
static void dr_offset(rd_kafka_t *rk, const rd_kafka_message_t *m, void *o)
{
    (void)rk;
    (void)o;
    if (m->_private)
        atomic_store((_Atomic int64_t *)m->_private, m->err ? -1 : m->offset);
}

static int file_exists(const char *dir, const char *name)
{
    char p[512];
    struct stat st;
    snprintf(p, sizeof(p), "%s/resume/%s", dir, name);
    return stat(p, &st) == 0;
}

/* The publisher thread (on librdkafka's mock cluster): queued
 * publications are written in order while the caller goes on, the
 * commit point's flush waits for them and counts them, each names the one
 * before it as parent, and the store holds them staged until the commit,
 * then as versions. */
static void test_kafka_thread(void **state)
{
    (void)state;
    char dir[] = "/tmp/ld_pub_test_XXXXXX", err[256];
    assert_non_null(mkdtemp(dir));
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    assert_int_equal(
        rd_kafka_conf_set(kc, "test.mock.num.brokers", "1", err, sizeof(err)),
        RD_KAFKA_CONF_OK);
    rd_kafka_conf_set_dr_msg_cb(kc, dr_offset);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, err, sizeof(err));
    assert_non_null(rk);
    rd_kafka_mock_cluster_t *mc = rd_kafka_handle_mock_cluster(rk);
    assert_int_equal(rd_kafka_mock_topic_create(mc, "ckpt", 1, 1), 0);
    assert_int_equal(rd_kafka_mock_topic_create(mc, "triggers", 1, 1), 0);
    ld_publisher_conf_t pc = pub_conf;
    pc.store_dir = dir;
    pc.store_keep = 10;
    ld_publisher_t *p = ld_publisher_new_kafka(&pc);
    assert_non_null(p);
    assert_int_equal(ld_publisher_start(p, rk), LD_OK);
    assert_int_equal(ld_publisher_start(p, rk), LD_ERR_INVAL);
    ld_trainer_t *t = trainer();
    ld_snapshot_t *s1 = ld_trainer_snapshot(t);
    ld_lineage_t *lin = ld_lineage_new();
    ld_resume_counters_t c;
    fill(t, lin, &c);
    assert_int_equal(ld_trainer_flush(t), LD_OK);
    ld_lineage_destroy(lin);
    ld_snapshot_t *s2 = ld_trainer_snapshot(t);
    uint8_t want[32];
    ld_snapshot_params_sha256(s2, want);
    assert_int_equal(ld_publisher_queue(p, NULL, s1, 1, NULL), LD_OK);
    assert_int_equal(ld_publisher_queue(p, NULL, s2, 2, NULL), LD_OK);
    assert_int_equal(ld_publisher_waiting(p), 2);
    assert_int_equal(ld_publisher_flush(p, NULL), LD_OK);
    const ld_resume_counters_t *ctr = ld_publisher_counters(p);
    assert_int_equal(ctr->version, 2);
    assert_int_equal(ctr->published, 2);
    assert_memory_equal(ctr->published_sha, want, 32);
    assert_int_equal(ld_publisher_waiting(p), 0);
    /* Written, not committed: staged. */
    assert_true(file_exists(dir, "2.ckpt.pending"));
    assert_false(file_exists(dir, "2.ckpt"));
    assert_false(file_exists(dir, "latest"));
    ld_publisher_committed(p);
    ld_publisher_stop(p); /* promotes what was committed first */
    assert_true(file_exists(dir, "1.ckpt"));
    assert_true(file_exists(dir, "2.ckpt"));
    assert_false(file_exists(dir, "2.ckpt.pending"));
    uint64_t v = 0;
    assert_int_equal(ld_publish_store_latest(dir, "resume", &v), LD_OK);
    assert_int_equal(v, 2);
    char path[512], why[256];
    snprintf(path, sizeof(path), "%s/resume/2.ckpt", dir);
    ld_ckpt_t *ck = NULL;
    assert_int_equal(ld_ckpt_read_file(path, &ck, why, sizeof(why)), LD_OK);
    assert_int_equal(ld_ckpt_message(ck)->lineage->parent_version, 1);
    assert_memory_equal(ld_ckpt_message(ck)->lineage->params_sha256.data, want,
                        32);
    ld_ckpt_destroy(ck);
    rd_kafka_destroy(rk);
    ld_publisher_destroy(p);
    ld_trainer_destroy(t);
    snprintf(path, sizeof(path), "rm -rf %s", dir);
    assert_int_equal(system(path), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_partset),
        cmocka_unit_test(test_labeling_high_partitions),
        cmocka_unit_test(test_handover_text),
        cmocka_unit_test(test_run_state_round_trip),
        cmocka_unit_test(test_run_state_truncated),
        cmocka_unit_test(test_capture),
        cmocka_unit_test(test_kafka_thread),
        cmocka_unit_test(test_kafka_queue),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
