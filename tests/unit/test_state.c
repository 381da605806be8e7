/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the state topic's codec (publish/state_topic.c,
 * publish/state_delta.c): format 4's FTRL rows without weights and format
 * 3's deltas and sweep on a compacted topic in memory, restored bit for
 * bit; a missing, stale or corrupt block, page or delta part refused with
 * its name; format 1, 2 and 3 states still loading, continued in format 3
 * or rewritten whole in format 4. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "publish/publish.h"
#include "publish/state_internal.h" /* ld_state_sweep_pace */
#include "trainer/checkpoint.h"
#include "trainer/internal.h" /* ld_trainer_tick_max */

/* ---- A compacted topic in memory --------------------------------------- */

/* A compacted topic in memory: the newest record per key, plus the whole
 * log (to bring back an older record). val NULL: a tombstone. */
typedef struct rec {
    char key[64];
    uint8_t *val;
    size_t len;
    int live; /* newest of its key */
} rec_t;

#define TOPIC_MAX 16384
typedef struct topic {
    rec_t r[TOPIC_MAX];
    size_t n;
    size_t emitted;               /* records of the last commit */
    size_t blocks, deltas, tombs; /* of them: blocks, delta parts, tombstones */
} topic_t;

static ld_err_t topic_emit(void *opaque, const char *key, const uint8_t *val,
                           size_t len)
{
    topic_t *tp = opaque;
    assert_true(tp->n < TOPIC_MAX);
    for (size_t i = 0; i < tp->n; i++)
        if (!strcmp(tp->r[i].key, key))
            tp->r[i].live = 0;
    rec_t *r = &tp->r[tp->n++];
    snprintf(r->key, sizeof(r->key), "%s", key);
    r->val = val ? malloc(len ? len : 1) : NULL;
    if (val)
        memcpy(r->val, val, len);
    r->len = len;
    r->live = 1;
    tp->emitted++;
    tp->blocks += strstr(key, "/block/") != NULL;
    tp->deltas += val && strstr(key, "/delta/") != NULL;
    tp->tombs += !val;
    return LD_OK;
}

/* Compaction: keep the newest record of each key only. */
static void topic_compact(topic_t *tp)
{
    size_t k = 0;
    for (size_t i = 0; i < tp->n; i++) {
        if (tp->r[i].live)
            tp->r[k++] = tp->r[i];
        else
            free(tp->r[i].val);
    }
    tp->n = k;
}

static void topic_free(topic_t *tp)
{
    for (size_t i = 0; i < tp->n; i++)
        free(tp->r[i].val);
    tp->n = 0;
}

/* The model test_state_* train: 0 logistic FTRL (the lazy layout), 1
 * softmax over 3 classes with AdaGrad (the plain layout, no slot ever all
 * zero), 2 softmax over 3 classes with FTRL (the plain layout, format 4).
 */
static int kind;
/* FTRL's l1 of the trainers ftrl_trainer makes. */
static double l1;

static ld_trainer_t *ftrl_trainer(void)
{
    ld_trainer_conf_t c;
    memset(&c, 0, sizeof(c));
    char err[256];
    assert_int_equal(
        ld_conf_set_defaults(&ld_trainer_conf_section, &c, err, sizeof(err)),
        LD_OK);
    c.hash_bits = 10; /* 64 blocks of 16 slots */
    c.dense_dim = 2;
    c.optimizer = kind == 1 ? LD_OPT_ADAGRAD : LD_OPT_FTRL;
    c.l1 = l1;
    if (kind) {
        c.model = LD_MODEL_SOFTMAX;
        c.num_classes = 3;
    }
    c.batch_size = 4;
    c.batch_span = 0;
    ld_trainer_t *t = ld_trainer_new(&c, err, sizeof(err));
    ld_conf_free(&ld_trainer_conf_section, &c); /* copied by the trainer */
    if (!t)
        fail_msg("ld_trainer_new: %s", err);
    return t;
}

/* Trains n examples whose features fall in slots [lo, lo + span). */
static void train_some(ld_trainer_t *t, uint32_t seed, int n, uint32_t lo,
                       uint32_t span)
{
    for (int i = 0; i < n; i++) {
        uint32_t idx[3];
        float val[3] = {1.0f, 0.5f, -1.0f}, dense[2];
        for (int k = 0; k < 3; k++)
            idx[k] =
                lo +
                (seed * 2654435761u + (uint32_t)(i * 3 + k) * 40503u) % span;
        /* distinct, ascending not required */
        if (idx[1] == idx[0])
            idx[1] = (idx[0] + 1) % 1024;
        if (idx[2] == idx[0] || idx[2] == idx[1])
            idx[2] = (idx[1] + 2) % 1024;
        dense[0] = (float)(i % 5) * 0.1f;
        dense[1] = 1.0f;
        ld_example_t ex = {0};
        ex.event_time_ms = i;
        ex.label = (float)((seed + (uint32_t)i) % (kind ? 3 : 2));
        ex.weight = 1.0f;
        ex.sample_type = ex.label > 0 ? LD_SAMPLE_POS : LD_SAMPLE_DEFAULT_NEG;
        ex.x = (ld_features_t){idx, val, dense, 3, 2};
        assert_int_equal(ld_trainer_add(t, &ex), LD_OK);
    }
    assert_int_equal(ld_trainer_flush(t), LD_OK);
}

/* Commits write format 2 (ld_state_write_blocks_v2) instead of 3 or 4. */
static int v2;
/* Commits write format 3 even for FTRL (g->write_format). */
static int fmt3;

/* The format a commit writes now. */
static uint32_t format_now(void)
{
    return v2 ? 2 : kind != 1 && !fmt3 ? 4 : 3;
}

/* One commit point's trainer state into tp, as ld_publisher_save_state
 * writes it. */
static void commit(ld_trainer_t *t, ld_state_gens_t *g, uint64_t seq,
                   topic_t *tp, uint64_t *bytes)
{
    ld_snapshot_t *h = ld_trainer_state_head(t);
    assert_non_null(h);
    ld_ckpt_meta_t meta = {.model = "m"};
    ld_buf_t hb = {0};
    assert_int_equal(ld_ckpt_encode(h, &meta, &hb), LD_OK);
    Learnd__V1__ResumeHeader hdr = LEARND__V1__RESUME_HEADER__INIT;
    hdr.model = "m";
    hdr.commit_seq = seq;
    hdr.model_state = (ProtobufCBinaryData){hb.len, hb.data};
    ld_state_sink_t sink = {topic_emit, tp, bytes};
    tp->emitted = tp->blocks = tp->deltas = tp->tombs = 0;
    if (fmt3)
        g->write_format = 3;
    assert_int_equal((v2 ? ld_state_write_blocks_v2
                         : ld_state_write_blocks)(&sink, &hdr, t, g),
                     LD_OK);
    ld_trainer_dirty_clear(t);
    free(hb.data);
    ld_snapshot_destroy(h);
}

/* Reads tp back as a restart does; *out NULL and errstr set on refusal. */
static ld_err_t load(topic_t *tp, ld_resume_t **out, char *why, size_t n)
{
    ld_state_reader_t *rd = ld_state_reader_new("m");
    assert_non_null(rd);
    for (size_t i = 0; i < tp->n; i++)
        assert_int_equal(ld_state_reader_take(rd, tp->r[i].key,
                                              strlen(tp->r[i].key),
                                              tp->r[i].val, tp->r[i].len),
                         LD_OK);
    return ld_state_reader_finish(rd, out, why, n);
}

/* The trainer a restart builds from rs, as restore_trainer does. */
static ld_trainer_t *restored(ld_resume_t *rs)
{
    ld_ckpt_t *ck = NULL;
    char why[256];
    const Learnd__V1__ResumeHeader *h = rs->header;
    assert_int_equal(ld_ckpt_decode_head(h->model_state.data,
                                         h->model_state.len, &ck, why,
                                         sizeof(why)),
                     LD_OK);
    ld_snapshot_t *s = ld_ckpt_snapshot(ck);
    assert_int_equal(ld_resume_fill_sparse(rs, s, why, sizeof(why)), LD_OK);
    ld_trainer_t *t = ftrl_trainer();
    assert_int_equal(ld_trainer_restore(t, s, why, sizeof(why)), LD_OK);
    ld_snapshot_destroy(s);
    ld_ckpt_destroy(ck);
    return t;
}

/* Every parameter and accumulator of a and b, bit for bit. */
static void assert_same_state(ld_trainer_t *a, ld_trainer_t *b)
{
    ld_snapshot_t *sa = ld_trainer_snapshot(a), *sb = ld_trainer_snapshot(b);
    size_t na = 0, nb = 0;
    float *pa = ld_snapshot_sparse(sa, &na), *pb = ld_snapshot_sparse(sb, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(pa, pb, na * sizeof(float));
    uint8_t ha[32], hb[32];
    ld_snapshot_params_sha256(sa, ha);
    ld_snapshot_params_sha256(sb, hb);
    assert_memory_equal(ha, hb, 32);
    ld_snapshot_destroy(sa);
    ld_snapshot_destroy(sb);
}

static void state_incremental(void) /* format 2 */
{
    ld_trainer_t *t = ftrl_trainer();
    static topic_t tp;
    ld_state_gens_t g = {0};
    uint64_t b1 = 0, b2 = 0;
    train_some(t, 1, 40, 0, 1024);
    commit(t, &g, 1, &tp, &b1);
    /* The first commit writes every block: 64, one gens page, header. */
    assert_int_equal(tp.emitted, 64 + 1 + 1);
    /* Then only slots 32..63 change: blocks 2 and 3. */
    train_some(t, 2, 20, 32, 32);
    commit(t, &g, 2, &tp, &b2);
    assert_int_equal(tp.emitted, 2 + 1 + 1);
    assert_true(b2 < b1);
    train_some(t, 3, 20, 512, 16); /* block 32 */
    commit(t, &g, 3, &tp, &b2);
    assert_int_equal(tp.emitted, 1 + 1 + 1);
    topic_compact(&tp);
    /* 64 blocks, 1 page, 1 header survive compaction: no hole. */
    assert_int_equal(tp.n, 64 + 1 + 1);
    ld_resume_t *rs = NULL;
    char why[512] = "";
    assert_int_equal(load(&tp, &rs, why, sizeof(why)), LD_OK);
    assert_non_null(rs);
    assert_int_equal(rs->header->commit_seq, 3);
    assert_int_equal(rs->gens_block[0], 1);
    assert_int_equal(rs->gens_block[2], 2);
    assert_int_equal(rs->gens_block[32], 3);
    ld_trainer_t *r = restored(rs);
    assert_same_state(t, r);
    /* And both keep training to the same state. */
    train_some(t, 4, 30, 0, 1024);
    train_some(r, 4, 30, 0, 1024);
    assert_same_state(t, r);
    ld_resume_destroy(rs);
    ld_trainer_destroy(r);
    ld_trainer_destroy(t);
    ld_state_gens_free(&g);
    topic_free(&tp);
}

/* Format 2 (the blocks changed, whole), as learnd before the deltas
 * wrote it, still loads and restores bit for bit. */
static void test_state_format2(void **state)
{
    (void)state;
    v2 = 1;
    for (kind = 0; kind < 3; kind++)
        state_incremental();
    kind = 0;
    v2 = 0;
}

static void test_state_hole_refused(void **state)
{
    (void)state;
    v2 = 1;
    ld_trainer_t *t = ftrl_trainer();
    static topic_t tp;
    ld_state_gens_t g = {0};
    train_some(t, 1, 40, 0, 1024);
    commit(t, &g, 1, &tp, NULL);
    train_some(t, 2, 20, 32, 32);
    commit(t, &g, 2, &tp, NULL);
    /* A block of commit 1 lost (what a compaction bug or a deleted key
     * would leave): the restart refuses, naming it. */
    ld_resume_t *rs = NULL;
    char why[512] = "";
    static topic_t cut;
    cut.n = 0;
    for (size_t i = 0; i < tp.n; i++)
        if (strcmp(tp.r[i].key, "m/block/7") != 0)
            topic_emit(&cut, tp.r[i].key, tp.r[i].val, tp.r[i].len);
    assert_int_equal(load(&cut, &rs, why, sizeof(why)), LD_ERR_CORRUPT);
    assert_null(rs);
    assert_non_null(strstr(why, "block 7 of commit 1 is missing"));
    topic_free(&cut);
    /* Block 2 of commit 2 replaced by its commit-1 record (the newest
     * record of a key is not the one the header names). */
    size_t old = SIZE_MAX;
    for (size_t i = 0; i < tp.n && old == SIZE_MAX; i++)
        if (!strcmp(tp.r[i].key, "m/block/2"))
            old = i;
    for (size_t i = 0; i < tp.n; i++)
        if (strcmp(tp.r[i].key, "m/block/2") != 0)
            topic_emit(&cut, tp.r[i].key, tp.r[i].val, tp.r[i].len);
    topic_emit(&cut, tp.r[old].key, tp.r[old].val, tp.r[old].len);
    assert_int_equal(load(&cut, &rs, why, sizeof(why)), LD_ERR_CORRUPT);
    assert_non_null(strstr(why, "block 2 of commit 2 is from another commit"));
    topic_free(&cut);
    /* A lost generations page. */
    for (size_t i = 0; i < tp.n; i++)
        if (strcmp(tp.r[i].key, "m/gens/0") != 0)
            topic_emit(&cut, tp.r[i].key, tp.r[i].val, tp.r[i].len);
    assert_int_equal(load(&cut, &rs, why, sizeof(why)), LD_ERR_CORRUPT);
    assert_non_null(strstr(why, "generations page 0"));
    topic_free(&cut);
    ld_trainer_destroy(t);
    ld_state_gens_free(&g);
    topic_free(&tp);
    v2 = 0;
}

/* A state written by an older learnd (format 1: one checkpoint in blocks)
 * still loads, as that checkpoint. */
static void test_state_format1(void **state)
{
    (void)state;
    ld_trainer_t *t = ftrl_trainer();
    train_some(t, 1, 40, 0, 1024);
    ld_snapshot_t *s = ld_trainer_snapshot(t);
    ld_ckpt_meta_t meta = {.model = "m"};
    ld_buf_t b = {0};
    assert_int_equal(ld_ckpt_encode(s, &meta, &b), LD_OK);
    static topic_t tp;
    Learnd__V1__ResumeHeader hdr = LEARND__V1__RESUME_HEADER__INIT;
    hdr.model = "m";
    hdr.commit_seq = 9;
    ld_state_sink_t sink = {topic_emit, &tp, NULL};
    assert_int_equal(ld_state_write_v1(&sink, &hdr, b.data, b.len, 1000),
                     LD_OK);
    assert_int_equal(tp.n, (b.len + 999) / 1000 + 1);
    ld_resume_t *rs = NULL;
    char why[512] = "";
    assert_int_equal(load(&tp, &rs, why, sizeof(why)), LD_OK);
    assert_int_equal(rs->header->format_version, 1);
    assert_int_equal(rs->ckpt_len, b.len);
    assert_memory_equal(rs->ckpt, b.data, b.len);
    ld_resume_destroy(rs);
    free(b.data);
    ld_snapshot_destroy(s);
    ld_trainer_destroy(t);
    topic_free(&tp);
}

/* ---- Format 3: deltas and the sweep ------------------------------------ */

/* Trains one example per row of rows[0..n), that row its only feature. */
static void train_rows(ld_trainer_t *t, const uint32_t *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t idx = rows[i];
        float val = 1.0f, dense[2] = {0.5f, 1.0f};
        ld_example_t ex = {0};
        ex.event_time_ms = (int64_t)i;
        ex.label = (float)(i % 2);
        ex.weight = 1.0f;
        ex.sample_type = ex.label > 0 ? LD_SAMPLE_POS : LD_SAMPLE_DEFAULT_NEG;
        ex.x = (ld_features_t){&idx, &val, dense, 1, 2};
        assert_int_equal(ld_trainer_add(t, &ex), LD_OK);
    }
    assert_int_equal(ld_trainer_flush(t), LD_OK);
}

/* Loads tp and restores it into a new trainer that must equal t; returns
 * the number of deltas the header lists. */
static size_t assert_restores(topic_t *tp, ld_trainer_t *t, uint64_t seq)
{
    ld_resume_t *rs = NULL;
    char why[512] = "";
    assert_int_equal(load(tp, &rs, why, sizeof(why)), LD_OK);
    assert_non_null(rs);
    assert_int_equal(rs->header->format_version, format_now());
    assert_int_equal(rs->header->commit_seq, seq);
    size_t nd = rs->header->n_delta_seqs;
    ld_trainer_t *r = restored(rs);
    assert_same_state(t, r);
    ld_resume_destroy(rs);
    ld_trainer_destroy(r);
    return nd;
}

/* One touched row in each of the 64 blocks: format 2 rewrites all 64
 * blocks whole; format 3 writes the 64 rows as one delta and sweeps only
 * as many blocks as a quarter of the delta's bytes. */
static void test_state_delta_bytes(void **state)
{
    (void)state;
    ld_trainer_t *t = ftrl_trainer();
    static topic_t tp, tp2;
    ld_state_gens_t g = {0}, g2 = {0};
    uint64_t b3 = 0, b2 = 0;
    train_some(t, 1, 40, 0, 1024);
    commit(t, &g, 1, &tp, NULL);
    assert_int_equal(tp.emitted, 64 + 1 + 1); /* every block, page, header */
    assert_int_equal(tp.blocks, 64);
    v2 = 1;
    ld_trainer_t *t2 = ftrl_trainer();
    train_some(t2, 1, 40, 0, 1024);
    commit(t2, &g2, 1, &tp2, NULL);
    v2 = 0;
    uint32_t rows[64];
    for (uint32_t j = 0; j < 64; j++)
        rows[j] = 16 * j + 5;
    train_rows(t, rows, 64);
    train_rows(t2, rows, 64);
    commit(t, &g, 2, &tp, &b3);
    v2 = 1;
    commit(t2, &g2, 2, &tp2, &b2);
    v2 = 0;
    assert_int_equal(tp2.blocks, 64);
    assert_int_equal(tp.deltas, 1);
    assert_int_equal(tp.tombs, 0);
    /* The sweep: at least one block (64 / 256 rounded up), at most until
     * its bytes reach a quarter of the delta's: fewer than 16 of them. */
    assert_in_range(tp.blocks, 1, 15);
    assert_true(b3 * 2 < b2);
    assert_int_equal(assert_restores(&tp, t, 2), 1);
    topic_compact(&tp);
    assert_int_equal(assert_restores(&tp, t, 2), 1);
    /* Nothing touched: no delta, one block of the sweep. */
    commit(t, &g, 3, &tp, NULL);
    assert_int_equal(tp.deltas, 0);
    assert_int_equal(tp.blocks, 1);
    assert_int_equal(assert_restores(&tp, t, 3), 1);
    ld_trainer_destroy(t);
    ld_trainer_destroy(t2);
    ld_state_gens_free(&g);
    ld_state_gens_free(&g2);
    topic_free(&tp);
    topic_free(&tp2);
}

/* Many commits of a few rows: the sweep goes round, deltas older than
 * every block are tombstoned and leave the header; the state read back,
 * from the whole log or the compacted one, is the trainer's bit for bit. */
static void state_rounds(void)
{
    ld_trainer_t *t = ftrl_trainer();
    static topic_t tp;
    ld_state_gens_t g = {0};
    size_t tombs = 0, most = 0;
    train_some(t, 1, 40, 0, 1024);
    commit(t, &g, 1, &tp, NULL);
    for (uint64_t seq = 2; seq <= 200; seq++) {
        train_some(t, (uint32_t)seq, 3, (uint32_t)(seq * 37 % 900), 100);
        commit(t, &g, seq, &tp, NULL);
        /* 9 rows: one part (with restarting tags, whole blocks, which the
         * sweep may cover) */
        if (ld_trainer_tick_max == LD_TRAINER_TICK_MAX)
            assert_int_equal(tp.deltas, 1);
        tombs += tp.tombs;
        if (seq % 25 == 0) {
            size_t nd = assert_restores(&tp, t, seq); /* whole log */
            topic_compact(&tp);
            assert_int_equal(assert_restores(&tp, t, seq), nd);
            /* One block a commit: a round is 64 commits, and no delta
             * outlives it. */
            assert_in_range(nd, 1, 64);
            most = nd > most ? nd : most;
        }
    }
    assert_true(tombs > 100);
    assert_true(most >= 30);
    /* Compaction kept only the newest of each key: the blocks, one page,
     * the header, the live deltas and the tombstones of the retired
     * ones. */
    topic_compact(&tp);
    assert_true(tp.n <= 64 + 1 + 1 + 64 + 200);
    ld_trainer_destroy(t);
    ld_state_gens_free(&g);
    topic_free(&tp);
}

static void test_state_rounds(void **state)
{
    (void)state;
    /* Format 4 (lazy FTRL, plain FTRL), format 3 (AdaGrad, and FTRL as
     * learnd before format 4 wrote it). */
    for (kind = 0; kind < 3; kind++)
        state_rounds();
    kind = 0;
    fmt3 = 1;
    state_rounds();
    fmt3 = 0;
    /* Lazy FTRL tells a block's touched rows by the slots' tags: with the
     * tags restarting every few chunks, every row of a marked block
     * counts until the next commit, and the state still restores. */
    ld_trainer_tick_max = 7;
    state_rounds();
    ld_trainer_tick_max = LD_TRAINER_TICK_MAX;
}

/* Replaces the newest record of key in tp by edit's version of it. */
static void edit_record(topic_t *tp, const char *key,
                        void (*edit)(Learnd__V1__StateRecord *))
{
    for (size_t i = 0; i < tp->n; i++) {
        if (!tp->r[i].live || strcmp(tp->r[i].key, key) != 0)
            continue;
        Learnd__V1__StateRecord *rec =
            learnd__v1__state_record__unpack(NULL, tp->r[i].len, tp->r[i].val);
        assert_non_null(rec);
        edit(rec);
        size_t n = learnd__v1__state_record__get_packed_size(rec);
        free(tp->r[i].val);
        tp->r[i].val = malloc(n);
        tp->r[i].len = learnd__v1__state_record__pack(rec, tp->r[i].val);
        learnd__v1__state_record__free_unpacked(rec, NULL);
        return;
    }
    fail_msg("no record %s", key);
}

static void delta_cut(Learnd__V1__StateRecord *rec)
{
    assert_int_equal(rec->record_case, LEARND__V1__STATE_RECORD__RECORD_DELTA);
    rec->delta->data.len--;
}

static void delta_reseq(Learnd__V1__StateRecord *rec)
{
    assert_int_equal(rec->record_case, LEARND__V1__STATE_RECORD__RECORD_DELTA);
    rec->delta->commit_seq++;
}

/* Key's newest record in tp with its delta data one byte short (cut) or
 * another commit_seq. */
static void corrupt_delta(topic_t *tp, const char *key, int cut)
{
    edit_record(tp, key, cut ? delta_cut : delta_reseq);
}

/* The error of filling a snapshot from rs (LD_OK: it filled). */
static ld_err_t fill(ld_resume_t *rs, char *why, size_t n)
{
    ld_ckpt_t *ck = NULL;
    const Learnd__V1__ResumeHeader *h = rs->header;
    assert_int_equal(ld_ckpt_decode_head(h->model_state.data,
                                         h->model_state.len, &ck, why, n),
                     LD_OK);
    ld_snapshot_t *s = ld_ckpt_snapshot(ck);
    ld_err_t err = ld_resume_fill_sparse(rs, s, why, n);
    ld_snapshot_destroy(s);
    ld_ckpt_destroy(ck);
    return err;
}

/* Copies tp into cut but for the records of key. */
static void copy_but(topic_t *cut, const topic_t *tp, const char *key)
{
    cut->n = 0;
    for (size_t i = 0; i < tp->n; i++)
        if (strcmp(tp->r[i].key, key) != 0)
            topic_emit(cut, tp->r[i].key, tp->r[i].val, tp->r[i].len);
}

/* Re-encodes the newest header of tp with its first delta listed after
 * the header's own commit. */
static void misorder_header(topic_t *tp)
{
    for (size_t i = 0; i < tp->n; i++) {
        if (!tp->r[i].live || strcmp(tp->r[i].key, "m/header") != 0)
            continue;
        Learnd__V1__StateRecord *rec =
            learnd__v1__state_record__unpack(NULL, tp->r[i].len, tp->r[i].val);
        assert_true(rec->header->n_delta_seqs >= 1);
        rec->header->delta_seqs[0] = rec->header->commit_seq + 1;
        size_t n = learnd__v1__state_record__get_packed_size(rec);
        free(tp->r[i].val);
        tp->r[i].val = malloc(n);
        tp->r[i].len = learnd__v1__state_record__pack(rec, tp->r[i].val);
        learnd__v1__state_record__free_unpacked(rec, NULL);
    }
}

/* Commit 1 writes every block; commit 2, after 64 scattered rows changed,
 * writes them as one delta: the topic the refusal tests cut. */
static void base_then_delta(ld_trainer_t *t, ld_state_gens_t *g, topic_t *tp)
{
    train_some(t, 1, 40, 0, 1024);
    commit(t, g, 1, tp, NULL);
    uint32_t rows[64];
    for (uint32_t j = 0; j < 64; j++)
        rows[j] = 16 * j + 7;
    train_rows(t, rows, 64);
    commit(t, g, 2, tp, NULL);
    assert_int_equal(tp->deltas, 1);
}

static void test_state_delta_refused(void **state)
{
    (void)state;
    ld_trainer_t *t = ftrl_trainer();
    static topic_t tp, cut;
    ld_state_gens_t g = {0};
    base_then_delta(t, &g, &tp);
    train_some(t, 3, 10, 0, 1024);
    commit(t, &g, 3, &tp, NULL);
    ld_resume_t *rs = NULL;
    char why[512] = "";
    /* The delta of commit 2 lost: a hole. */
    copy_but(&cut, &tp, "m/delta/2/0");
    assert_int_equal(load(&cut, &rs, why, sizeof(why)), LD_ERR_CORRUPT);
    assert_null(rs);
    assert_non_null(
        strstr(why, "part 0 of the delta of commit 2 is missing (the header "
                    "of commit 3 needs it)"));
    topic_free(&cut);
    /* Tombstoned while still needed. */
    copy_but(&cut, &tp, "");
    topic_emit(&cut, "m/delta/2/0", NULL, 0);
    assert_int_equal(load(&cut, &rs, why, sizeof(why)), LD_ERR_CORRUPT);
    assert_non_null(strstr(why, "part 0 of the delta of commit 2 is missing"));
    topic_free(&cut);
    /* Cut short by a byte, or of another commit: refused when filling. */
    for (int c = 0; c < 2; c++) {
        copy_but(&cut, &tp, "");
        corrupt_delta(&cut, "m/delta/2/0", !c);
        assert_int_equal(load(&cut, &rs, why, sizeof(why)), LD_OK);
        assert_int_equal(fill(rs, why, sizeof(why)), LD_ERR_CORRUPT);
        assert_non_null(
            strstr(why, "part 0 of the delta of commit 2 is corrupt"));
        ld_resume_destroy(rs);
        rs = NULL;
        topic_free(&cut);
    }
    /* A header listing its deltas out of order. */
    copy_but(&cut, &tp, "");
    misorder_header(&cut);
    assert_int_equal(load(&cut, &rs, why, sizeof(why)), LD_ERR_CORRUPT);
    assert_non_null(strstr(why, "out of order"));
    topic_free(&cut);
    /* The untouched log loads. */
    assert_int_equal(assert_restores(&tp, t, 3), 2);
    ld_trainer_destroy(t);
    ld_state_gens_free(&g);
    topic_free(&tp);
}

/* A restart adopts the state's generations and deltas: with the same
 * shape and block encoding it goes on writing deltas (a format 2 state
 * goes on in format 3, a format 4 one in format 4); otherwise (another
 * shape, or a format 2 or 3 FTRL state continued in format 4) the first
 * commit writes every block and tombstones every delta the old state
 * listed. */
static void state_restart(uint32_t from)
{
    ld_trainer_t *t = ftrl_trainer();
    static topic_t tp, tb;
    ld_state_gens_t g = {0};
    v2 = from == 2;
    fmt3 = from == 3;
    train_some(t, 1, 40, 0, 1024);
    commit(t, &g, 1, &tp, NULL);
    for (uint64_t seq = 2; seq <= 5; seq++) {
        train_some(t, (uint32_t)seq, 4, (uint32_t)seq * 100, 100);
        commit(t, &g, seq, &tp, NULL);
    }
    ld_state_gens_free(&g);
    ld_resume_t *rs = NULL;
    char why[512] = "";
    assert_int_equal(load(&tp, &rs, why, sizeof(why)), LD_OK);
    size_t nd = rs->header->n_delta_seqs;
    assert_int_equal(rs->header->format_version, format_now());
    assert_int_equal(nd, from == 2 ? 0 : 4);
    v2 = fmt3 = 0; /* this learnd writes its newest format */
    ld_trainer_t *r = restored(rs);
    assert_same_state(t, r);
    ld_state_gens_t ga = {0}, gb = {0};
    assert_int_equal(ld_state_gens_adopt(&ga, rs, 1), LD_OK);
    assert_int_equal(ld_state_gens_adopt(&gb, rs, 0), LD_OK);
    ld_trainer_dirty_clear(r);
    ld_resume_destroy(rs);
    train_some(r, 6, 4, 300, 100);
    train_some(t, 6, 4, 300, 100);
    copy_but(&tb, &tp, "");
    commit(r, &ga, 6, &tp, NULL);
    if (format_now() == from || (from == 2 && format_now() == 3)) {
        /* Same encoding: one more delta, few blocks rewritten whole. */
        assert_int_equal(tp.deltas, 1);
        assert_in_range(tp.blocks, 1, 8);
        topic_compact(&tp);
        assert_int_equal(assert_restores(&tp, t, 6), nd + 1);
    } else {
        /* FTRL rows in format 4 now: every block in the new encoding, no
         * delta, the old ones tombstoned. */
        assert_int_equal(tp.deltas, 0);
        assert_int_equal(tp.blocks, 64);
        assert_int_equal(tp.tombs, nd);
        assert_int_equal(assert_restores(&tp, t, 6), 0);
        topic_compact(&tp);
        assert_int_equal(assert_restores(&tp, t, 6), 0);
    }
    /* Another shape (as far as the generations know): every block, and
     * the deltas the old state listed tombstoned. */
    commit(t, &gb, 6, &tb, NULL);
    assert_int_equal(tb.blocks, 64);
    assert_int_equal(tb.tombs, nd);
    assert_int_equal(assert_restores(&tb, t, 6), 0);
    topic_compact(&tb);
    assert_int_equal(assert_restores(&tb, t, 6), 0);
    ld_state_gens_free(&ga);
    ld_state_gens_free(&gb);
    ld_trainer_destroy(r);
    ld_trainer_destroy(t);
    topic_free(&tp);
    topic_free(&tb);
}

static void test_state_restart(void **state)
{
    (void)state;
    for (kind = 0; kind < 3; kind++)
        for (uint32_t from = 2; from <= 4; from++)
            if (!(kind == 1 && from == 4)) /* AdaGrad has no format 4 */
                state_restart(from);
    kind = 0;
}

/* ---- Format 4: FTRL rows without weights ------------------------------- */

/* The data length of tp's newest record under key (a block or delta
 * part), and its stored_weights (a block's mask, or a delta's count). */
static size_t record_data(const topic_t *tp, const char *key, uint32_t *kept)
{
    for (size_t i = tp->n; i-- > 0;) {
        if (strcmp(tp->r[i].key, key) != 0)
            continue;
        Learnd__V1__StateRecord *rec =
            learnd__v1__state_record__unpack(NULL, tp->r[i].len, tp->r[i].val);
        assert_non_null(rec);
        size_t len;
        if (rec->record_case == LEARND__V1__STATE_RECORD__RECORD_BLOCK) {
            len = rec->block->data.len;
            *kept = rec->block->stored_weights;
        } else {
            assert_int_equal(rec->record_case,
                             LEARND__V1__STATE_RECORD__RECORD_DELTA);
            len = rec->delta->data.len;
            *kept = (uint32_t)rec->delta->n_stored_weights;
        }
        learnd__v1__state_record__free_unpacked(rec, NULL);
        return len;
    }
    fail_msg("no record %s", key);
    return 0;
}

/* Rows of the sparse state of t with any non-zero bit, in blocks. */
static size_t live_rows(ld_trainer_t *t, size_t per)
{
    ld_snapshot_t *s = ld_trainer_snapshot(t);
    size_t n = 0, live = 0;
    const float *sp = ld_snapshot_sparse(s, &n);
    for (size_t r = 0; r < n / per; r++) {
        uint32_t any = 0;
        for (size_t k = 0; k < per; k++) {
            uint32_t bits;
            memcpy(&bits, sp + r * per + k, sizeof(bits));
            any |= bits;
        }
        live += any != 0;
    }
    ld_snapshot_destroy(s);
    return live;
}

/* The same state in format 3 and format 4: each block holds 4 bytes fewer
 * per live row and output (its weight), each delta row too; both restore
 * bit for bit. */
static void test_state_format4_bytes(void **state)
{
    (void)state;
    double pace = ld_state_sweep_pace;
    ld_state_sweep_pace = 0; /* one block a commit, the same in both */
    for (kind = 0; kind < 3; kind += 2) {
        uint32_t k = kind ? 3 : 1;
        /* Two trainers on the same examples: a commit clears the dirty
         * marks of the one it writes. */
        ld_trainer_t *t = ftrl_trainer(), *u = ftrl_trainer();
        static topic_t t3, t4;
        ld_state_gens_t g3 = {0}, g4 = {0};
        uint64_t b3 = 0, b4 = 0;
        train_some(t, 1, 40, 0, 1024);
        train_some(u, 1, 40, 0, 1024);
        size_t live = live_rows(t, 3 * k);
        assert_true(live > 40);
        fmt3 = 1;
        commit(u, &g3, 1, &t3, &b3);
        fmt3 = 0;
        commit(t, &g4, 1, &t4, &b4);
        size_t d3 = 0, d4 = 0;
        uint32_t kept = 0;
        for (int b = 0; b < 64; b++) {
            char key[32];
            snprintf(key, sizeof(key), "m/block/%d", b);
            d3 += record_data(&t3, key, &kept);
            d4 += record_data(&t4, key, &kept);
            assert_int_equal(kept, 0); /* every weight is the closed form */
        }
        assert_int_equal(d3 - d4, 4 * k * live);
        assert_int_equal(d4, 64 * 4 + 8 * k * live);
        assert_true(b4 < b3);
        /* One row in each block: a delta of 63 rows (block 0 swept). */
        uint32_t rows[64];
        for (uint32_t j = 0; j < 64; j++)
            rows[j] = 16 * j + 5;
        train_rows(t, rows, 64);
        train_rows(u, rows, 64);
        fmt3 = 1;
        commit(u, &g3, 2, &t3, NULL);
        fmt3 = 0;
        commit(t, &g4, 2, &t4, NULL);
        assert_int_equal(t3.blocks, 1);
        assert_int_equal(t4.blocks, 1);
        d3 = record_data(&t3, "m/delta/2/0", &kept);
        d4 = record_data(&t4, "m/delta/2/0", &kept);
        assert_int_equal(kept, 0);
        assert_int_equal(d3 - d4, 63 * 4 * k);
        fmt3 = 1;
        assert_int_equal(assert_restores(&t3, t, 2), 1);
        fmt3 = 0;
        assert_int_equal(assert_restores(&t4, t, 2), 1);
        topic_compact(&t4);
        assert_int_equal(assert_restores(&t4, t, 2), 1);
        ld_trainer_destroy(t);
        ld_trainer_destroy(u);
        ld_state_gens_free(&g3);
        ld_state_gens_free(&g4);
        topic_free(&t3);
        topic_free(&t4);
    }
    kind = 0;
    ld_state_sweep_pace = pace;
}

/* A warm start under another l1: the plain layout (softmax) keeps the
 * checkpoint's weights, which are not the closed form of (z, n) under the
 * new l1, until their slot trains again. Format 4 stores those rows whole
 * (stored_weights) and the rest without weights; the restore is bit for
 * bit. The lazy layout recomputes every weight on restore: nothing kept. */
static void test_state_format4_warm_start(void **state)
{
    (void)state;
    for (kind = 0; kind < 3; kind += 2) {
        uint32_t k = kind ? 3 : 1;
        l1 = 0;
        ld_trainer_t *old = ftrl_trainer();
        train_some(old, 1, 60, 0, 1024);
        ld_snapshot_t *cp = ld_trainer_snapshot(old);
        l1 = 0.05;
        ld_trainer_t *t = ftrl_trainer();
        char why[256];
        assert_int_equal(ld_trainer_restore(t, cp, why, sizeof(why)), LD_OK);
        size_t live = live_rows(t, 3 * k);
        static topic_t tp;
        ld_state_gens_t g = {0};
        commit(t, &g, 1, &tp, NULL);
        size_t kept_rows = 0, d = 0;
        uint32_t kept = 0;
        for (int b = 0; b < 64; b++) {
            char key[32];
            snprintf(key, sizeof(key), "m/block/%d", b);
            d += record_data(&tp, key, &kept);
            kept_rows += (size_t)__builtin_popcount(kept);
        }
        assert_int_equal(kept_rows, kind ? live : 0);
        assert_int_equal(d, 64 * 4 + 8 * k * live + 4 * k * kept_rows);
        assert_int_equal(assert_restores(&tp, t, 1), 0);
        /* Rows trained since are the closed form again; a delta row of a
         * kept block stays kept until then. */
        uint32_t rows[8] = {5, 21, 37, 53, 69, 85, 101, 117};
        train_rows(t, rows, 8);
        commit(t, &g, 2, &tp, NULL);
        assert_int_equal(record_data(&tp, "m/delta/2/0", &kept) > 0, 1);
        assert_int_equal(kept, 0);
        for (uint64_t seq = 3; seq <= 80; seq++) {
            train_some(t, (uint32_t)seq, 2, (uint32_t)(seq * 37 % 900), 100);
            commit(t, &g, seq, &tp, NULL);
        }
        size_t nd = assert_restores(&tp, t, 80);
        topic_compact(&tp);
        assert_int_equal(assert_restores(&tp, t, 80), nd);
        ld_state_gens_free(&g);
        topic_free(&tp);
        ld_trainer_destroy(t);
        ld_trainer_destroy(old);
        ld_snapshot_destroy(cp);
    }
    kind = 0;
    l1 = 0;
}

static void block_cut(Learnd__V1__StateRecord *rec)
{
    rec->block->data.len--;
}

/* A live row marked as keeping its weight: 4 bytes short. */
static void block_keep(Learnd__V1__StateRecord *rec)
{
    uint32_t mask = 0;
    memcpy(&mask, rec->block->data.data, 4);
    rec->block->stored_weights = mask & (0u - mask); /* its lowest row */
}

/* A weight kept by a row the part does not have. */
static void delta_keep(Learnd__V1__StateRecord *rec)
{
    free(rec->delta->stored_weights); /* protobuf-c's default allocator */
    rec->delta->stored_weights = malloc(sizeof(uint32_t));
    rec->delta->stored_weights[0] = rec->delta->rows;
    rec->delta->n_stored_weights = 1;
}

/* The header of a format 4 state said to be format 3, and the reverse:
 * rows of another size. */
static void header_fmt(Learnd__V1__StateRecord *rec)
{
    int four = rec->header->format_version == 4;
    rec->header->format_version = four ? 3 : 4;
    rec->header->block_encoding =
        four ? LEARND__V1__BLOCK_ENCODING__BLOCK_ENCODING_SLOTS
             : LEARND__V1__BLOCK_ENCODING__BLOCK_ENCODING_SLOTS_FTRL_ZN;
}

static void header_enc(Learnd__V1__StateRecord *rec)
{
    rec->header->block_encoding =
        LEARND__V1__BLOCK_ENCODING__BLOCK_ENCODING_SLOTS;
}

/* A truncated, mismarked or misdeclared format 4 row is refused with the
 * record's name, never filled in as a wrong weight. */
static void test_state_format4_refused(void **state)
{
    (void)state;
    ld_trainer_t *t = ftrl_trainer();
    static topic_t tp, cut;
    ld_state_gens_t g = {0};
    base_then_delta(t, &g, &tp);
    ld_resume_t *rs = NULL;
    char why[512] = "";
    static const struct {
        const char *key;
        void (*edit)(Learnd__V1__StateRecord *);
        const char *says;
    } cases[] = {
        {"m/block/9", block_cut, "block 9 has "},
        {"m/block/9", block_keep, "block 9 has "},
        {"m/delta/2/0", delta_keep,
         "part 0 of the delta of commit 2 is "
         "corrupt or not rows of 8 bytes"},
        /* format 4's blocks read as format 3's: 12-byte rows */
        {"m/header", header_fmt,
         "which is not a block of 16 slots of 12 "
         "bytes"},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        copy_but(&cut, &tp, "");
        edit_record(&cut, cases[c].key, cases[c].edit);
        assert_int_equal(load(&cut, &rs, why, sizeof(why)), LD_OK);
        why[0] = '\0';
        assert_int_equal(fill(rs, why, sizeof(why)), LD_ERR_CORRUPT);
        if (!strstr(why, cases[c].says))
            fail_msg("case %zu: %s", c, why);
        ld_resume_destroy(rs);
        rs = NULL;
        topic_free(&cut);
    }
    /* Format 4 with the old encoding: not a state this learnd reads. */
    copy_but(&cut, &tp, "");
    edit_record(&cut, "m/header", header_enc);
    assert_int_equal(load(&cut, &rs, why, sizeof(why)), LD_ERR_CORRUPT);
    assert_non_null(strstr(why, "unsupported format 4 / encoding 3"));
    topic_free(&cut);
    assert_int_equal(assert_restores(&tp, t, 2), 1);
    ld_trainer_destroy(t);
    ld_state_gens_free(&g);
    topic_free(&tp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_state_format2),
        cmocka_unit_test(test_state_hole_refused),
        cmocka_unit_test(test_state_format1),
        cmocka_unit_test(test_state_delta_bytes),
        cmocka_unit_test(test_state_rounds),
        cmocka_unit_test(test_state_delta_refused),
        cmocka_unit_test(test_state_restart),
        cmocka_unit_test(test_state_format4_bytes),
        cmocka_unit_test(test_state_format4_warm_start),
        cmocka_unit_test(test_state_format4_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
