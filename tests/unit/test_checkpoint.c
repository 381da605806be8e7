/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of trainer/checkpoint.h: SHA-256 against FIPS 180 vectors,
 * bit-exact round trips, every truncation and byte corruption refused,
 * chunks and manifest, the local model store and warm start. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/common.h"
#include "publish/publish.h"
#include "trainer/checkpoint.h"
#include "trainer/internal.h"
#include "trainer/trainer.h"

/* ---- helpers ------------------------------------------------------------ */

static void hex(const uint8_t *h, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", h[i]);
}

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void conf_for(ld_trainer_conf_t *c, int model, int opt, int bits)
{
    memset(c, 0, sizeof(*c));
    c->name = "m";
    c->model = model;
    c->num_classes = 3;
    c->hash_bits = bits;
    c->dense_dim = 2;
    c->optimizer = opt;
    c->learning_rate = 0.1;
    c->lr_schedule = LD_LR_INVERSE_SCALING;
    c->lr_decay = 0.01;
    c->lr_power_t = 0.5;
    c->ftrl_beta = 1.0;
    c->adagrad_initial_accumulator = 0.1;
    c->epsilon = 1e-8;
    c->adam_beta1 = 0.9;
    c->adam_beta2 = 0.999;
    c->l1 = 0.01;
    c->l2 = 0.001;
    c->batch_size = 4;
    c->metrics_window = 100;
    c->blas_threads = 1;
    c->snapshot_step = 65536;
    c->dense_norm = LD_DNORM_MAXABS;
}

static ld_trainer_t *trained(int model, int opt, int bits, uint64_t seed, int n)
{
    ld_trainer_conf_t c;
    char err[256];
    conf_for(&c, model, opt, bits);
    ld_trainer_t *t = ld_trainer_new(&c, err, sizeof(err));
    if (!t)
        fail_msg("%s", err);
    rng_state = seed;
    uint32_t mask = (1u << bits) - 1;
    for (int i = 0; i < n; i++) {
        uint32_t idx[3] = {(uint32_t)rnd() & mask, (uint32_t)rnd() & mask,
                           (uint32_t)rnd() & mask};
        float val[3] = {1, 1, 0.5f};
        float dense[2] = {(float)(rnd() % 100) / 50.0f - 1, 0.25f};
        ld_example_t e;
        memset(&e, 0, sizeof(e));
        e.x = (ld_features_t){idx, val, dense, 3, 2};
        e.label = model == LD_MODEL_SOFTMAX ? (float)(idx[0] % 3)
                                            : (float)((idx[0] ^ idx[1]) & 1);
        e.weight = 1;
        e.sample_type = (ld_sample_type_t)(rnd() % LD_SAMPLE__COUNT);
        e.event_time_ms = i;
        assert_int_equal(ld_trainer_add(t, &e), LD_OK);
    }
    return t;
}

static ld_ckpt_meta_t meta_for(const char *model, uint64_t version)
{
    static const uint8_t cfg[32] = {1, 2, 3};
    ld_ckpt_meta_t m;
    memset(&m, 0, sizeof(m));
    m.model = model;
    m.version = version;
    m.parent_version = version - 1;
    m.created_at_ms = 1700000000000;
    m.trigger_id = "t-1";
    m.learnd_version = "0.1.0-test";
    m.config_hash = cfg;
    m.hash_function = "murmur3_32";
    m.hash_seed = 42;
    return m;
}

static ld_buf_t encode_of(ld_trainer_t *t, const char *model, uint64_t v)
{
    ld_snapshot_t *s = ld_trainer_snapshot(t);
    assert_non_null(s);
    ld_ckpt_meta_t meta = meta_for(model, v);
    ld_buf_t b;
    assert_int_equal(ld_ckpt_encode(s, &meta, &b), LD_OK);
    ld_snapshot_destroy(s);
    return b;
}

/* ---- SHA-256 ------------------------------------------------------------ */

static void check_vectors(void)
{
    static const struct {
        const char *msg, *digest;
    } v[] = {
        {"",
         "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc",
         "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
        {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijkl"
         "mnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
         "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
    };
    char h[65];
    uint8_t d[32];
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        ld_ckpt_sha256(v[i].msg, strlen(v[i].msg), d);
        hex(d, 32, h);
        assert_string_equal(h, v[i].digest);
    }
    /* One million 'a', fed in uneven pieces. */
    static char a[1000000];
    memset(a, 'a', sizeof(a));
    ld_sha256_t c;
    ld_sha256_init(&c);
    size_t off = 0, step = 1;
    while (off < sizeof(a)) {
        size_t m = sizeof(a) - off < step ? sizeof(a) - off : step;
        ld_sha256_update(&c, a + off, m);
        off += m;
        step = step * 3 % 1031 + 1;
    }
    ld_sha256_final(&c, d);
    hex(d, 32, h);
    assert_string_equal(
        h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static void test_sha256(void **state)
{
    (void)state;
    ld_sha256_force_portable = 0;
    check_vectors();
    ld_sha256_force_portable = 1;
    check_vectors();
    ld_sha256_force_portable = 0;
}

/* ---- round trips -------------------------------------------------------- */

static void test_round_trip(void **state)
{
    (void)state;
    for (int model = 0; model <= LD_MODEL_SOFTMAX; model++)
        for (int opt = 0; opt <= LD_OPT_ADAM; opt++) {
            ld_trainer_t *t = trained(model, opt, 6, 9, 200);
            ld_snapshot_t *s = ld_trainer_snapshot(t);
            ld_ckpt_meta_t meta = meta_for("m", 3);
            uint64_t parent[LD_SAMPLE__COUNT] = {1, 1, 1, 1};
            meta.parent_counts = parent;
            ld_buf_t b, b2;
            assert_int_equal(ld_ckpt_encode(s, &meta, &b), LD_OK);
            ld_ckpt_t *c;
            char err[256] = "";
            assert_int_equal(
                ld_ckpt_decode(b.data, b.len, &c, err, sizeof(err)), LD_OK);
            const Learnd__V1__Checkpoint *m = ld_ckpt_message(c);
            assert_int_equal(m->format_version, 1);
            assert_string_equal(m->lineage->model, "m");
            assert_int_equal(m->lineage->version, 3);
            assert_int_equal(m->lineage->parent_version, 2);
            assert_string_equal(m->lineage->openblas_corename,
                                ld_trainer_blas_core());
            assert_int_equal(m->lineage->total_counts->pos +
                                 m->lineage->total_counts->default_neg +
                                 m->lineage->total_counts->fake_neg +
                                 m->lineage->total_counts->delayed_pos,
                             200);
            assert_int_equal(m->lineage->counts->pos,
                             m->lineage->total_counts->pos - 1);
            uint8_t ph[32];
            ld_snapshot_params_sha256(s, ph);
            assert_memory_equal(m->lineage->params_sha256.data, ph, 32);
            assert_int_equal(ld_ckpt_size(c), b.len);

            ld_snapshot_t *s2 = ld_ckpt_snapshot(c);
            assert_non_null(s2);
            assert_int_equal(s2->sp_n, s->sp_n);
            assert_memory_equal(s2->sp, s->sp, s->sp_n * sizeof(float));
            assert_memory_equal(s2->dn, s->dn, s->dn_n * sizeof(float));
            /* The dense scales travel too (dense[0] spans [-1, 0.98]). */
            assert_float_equal(s->dscale[0], 1.0f, 0);
            assert_float_equal(s->dscale[1], 0.25f, 0);
            assert_memory_equal(s2->dscale, s->dscale, 2 * sizeof(float));
            assert_int_equal(s2->step, s->step);
            assert_memory_equal(s2->by_type, s->by_type, sizeof(s->by_type));
            assert_true(memcmp(&s2->spec, &s->spec, sizeof(s->spec)) == 0);
            /* Re-encoding the decoded state gives the same bytes. */
            assert_int_equal(ld_ckpt_encode(s2, &meta, &b2), LD_OK);
            assert_int_equal(b2.len, b.len);
            assert_memory_equal(b2.data, b.data, b.len);

            /* Warm start continues bit for bit. */
            ld_trainer_conf_t conf;
            conf_for(&conf, model, opt, 6);
            ld_trainer_t *r = ld_trainer_new(&conf, err, sizeof(err));
            assert_int_equal(ld_trainer_restore(r, s2, err, sizeof(err)),
                             LD_OK);
            ld_trainer_t *u = trained(model, opt, 6, 9, 200);
            ld_trainer_destroy(t);
            /* same continuation stream into both */
            rng_state = 555;
            for (int i = 0; i < 50; i++) {
                uint32_t idx = (uint32_t)rnd() & 63;
                float one = 1, dense[2] = {0.5f, -0.5f};
                ld_example_t e;
                memset(&e, 0, sizeof(e));
                e.x = (ld_features_t){&idx, &one, dense, 1, 2};
                e.label = (float)(idx % 2);
                e.weight = 1;
                assert_int_equal(ld_trainer_add(r, &e), LD_OK);
                assert_int_equal(ld_trainer_add(u, &e), LD_OK);
            }
            ld_snapshot_t *sr = ld_trainer_snapshot(r);
            ld_snapshot_t *su = ld_trainer_snapshot(u);
            assert_memory_equal(sr->sp, su->sp, su->sp_n * sizeof(float));
            assert_memory_equal(sr->dn, su->dn, su->dn_n * sizeof(float));
            assert_memory_equal(sr->dscale, su->dscale, 2 * sizeof(float));
            ld_snapshot_destroy(sr);
            ld_snapshot_destroy(su);
            ld_trainer_destroy(r);
            ld_trainer_destroy(u);
            ld_snapshot_destroy(s2);
            ld_ckpt_destroy(c);
            free(b.data);
            free(b2.data);
            ld_snapshot_destroy(s);
        }
}

/* Every truncation and every single-byte change of a small checkpoint is
 * refused with LD_ERR_CORRUPT (and never crashes). */
static void test_corruption(void **state)
{
    (void)state;
    ld_trainer_t *t = trained(LD_MODEL_LOGISTIC, LD_OPT_FTRL, 3, 1, 50);
    ld_buf_t b = encode_of(t, "m", 1);
    ld_trainer_destroy(t);
    ld_ckpt_t *c = NULL;
    char err[256];
    uint8_t *copy = malloc(b.len);
    assert_non_null(copy);
    for (size_t n = 0; n < b.len; n++) {
        memcpy(copy, b.data, n);
        assert_int_equal(ld_ckpt_decode(copy, n, &c, err, sizeof(err)),
                         LD_ERR_CORRUPT);
        assert_null(c);
    }
    size_t refused = 0;
    for (size_t i = 0; i < b.len; i++) {
        memcpy(copy, b.data, b.len);
        for (int x = 1; x < 256; x++) {
            copy[i] = (uint8_t)(b.data[i] ^ x);
            assert_int_equal(ld_ckpt_decode(copy, b.len, &c, err, sizeof(err)),
                             LD_ERR_CORRUPT);
            refused++;
        }
    }
    assert_int_equal(refused, b.len * 255);
    assert_int_equal(ld_ckpt_decode(b.data, b.len, &c, err, sizeof(err)),
                     LD_OK);
    ld_ckpt_destroy(c);
    ld_ckpt_destroy(NULL);
    free(copy);
    free(b.data);
}

/* A message with a valid trailer but a bad body is refused by the
 * structural checks (not only by the checksum). */
static void test_structural_checks(void **state)
{
    (void)state;
    ld_trainer_t *t = trained(LD_MODEL_LINEAR, LD_OPT_ADAM, 3, 2, 20);
    ld_snapshot_t *s = ld_trainer_snapshot(t);
    ld_trainer_destroy(t);
    ld_ckpt_meta_t meta = meta_for("m", 1);
    ld_buf_t b;
    assert_int_equal(ld_ckpt_encode(s, &meta, &b), LD_OK);
    ld_ckpt_t *c;
    char err[256];
    assert_int_equal(ld_ckpt_decode(b.data, b.len, &c, err, sizeof(err)),
                     LD_OK);
    Learnd__V1__Checkpoint *m = (Learnd__V1__Checkpoint *)ld_ckpt_message(c);

    /* Re-pack with one field changed and a fresh trailer. */
    uint8_t *buf = malloc(b.len + 4096);
    size_t n;
#define REPACK_EXPECT(stmt, undo, substr)                                      \
    do {                                                                       \
        stmt;                                                                  \
        n = learnd__v1__checkpoint__pack(m, buf);                              \
        buf[n] = 0x7a;                                                         \
        buf[n + 1] = 0x20;                                                     \
        ld_ckpt_sha256(buf, n, buf + n + 2);                                   \
        ld_ckpt_t *bad = NULL;                                                 \
        assert_int_equal(ld_ckpt_decode(buf, n + 34, &bad, err, sizeof(err)),  \
                         LD_ERR_CORRUPT);                                      \
        if (!strstr(err, substr))                                              \
            fail_msg("expected '%s' in '%s'", substr, err);                    \
        undo;                                                                  \
    } while (0)
    REPACK_EXPECT(m->format_version = 2, m->format_version = 1,
                  "format_version");
    REPACK_EXPECT(m->tensors[0]->data.len -= 4, m->tensors[0]->data.len += 4,
                  "bytes");
    REPACK_EXPECT(m->tensors[1]->data.data[0] ^= 1,
                  m->tensors[1]->data.data[0] ^= 1, "params_sha256");
    REPACK_EXPECT(m->spec->hash_bits = 31, m->spec->hash_bits = 3, "hash_bits");
    REPACK_EXPECT(m->spec->kind = 9, m->spec->kind = 2, "model kind");
    /* Without the dense scales it is an older checkpoint (test_old_format);
     * one accumulator fewer is corrupt. */
    REPACK_EXPECT(m->optimizer->n_tensors -= 2, m->optimizer->n_tensors += 2,
                  "tensors");
    Learnd__V1__Tensor *sc = m->optimizer->tensors[6];
    assert_string_equal(sc->name, LD_CKPT_DENSE_SCALE);
    float bad_scale[2] = {-1.0f, NAN}, good_scale[2];
    memcpy(good_scale, sc->data.data, sizeof(good_scale));
    REPACK_EXPECT(memcpy(sc->data.data, &bad_scale[0], 4),
                  memcpy(sc->data.data, good_scale, 8), "not a finite scale");
    REPACK_EXPECT(memcpy(sc->data.data + 4, &bad_scale[1], 4),
                  memcpy(sc->data.data, good_scale, 8), "not a finite scale");
    REPACK_EXPECT(sc->shape[0] = 3, sc->shape[0] = 2, "wrong shape");
    REPACK_EXPECT(sc->data.len = 4, sc->data.len = 8, "bytes");
    REPACK_EXPECT(sc->name[0] = 'x', sc->name[0] = 'd', "norm_scale");
    REPACK_EXPECT(m->spec->optimizer->dense_norm = 7,
                  m->spec->optimizer->dense_norm =
                      LEARND__V1__DENSE_NORM__DENSE_NORM_MAXABS,
                  "dense_norm");
    REPACK_EXPECT(m->tensors[2]->name[0] = 'x', m->tensors[2]->name[0] = 'b',
                  "bias");
    REPACK_EXPECT(m->spec->optimizer->learning_rate = -1,
                  m->spec->optimizer->learning_rate = 0.1, "hyperparameter");
    /* Unchanged, it still decodes. */
    n = learnd__v1__checkpoint__pack(m, buf);
    buf[n] = 0x7a;
    buf[n + 1] = 0x20;
    ld_ckpt_sha256(buf, n, buf + n + 2);
    ld_ckpt_t *good;
    assert_int_equal(ld_ckpt_decode(buf, n + 34, &good, err, sizeof(err)),
                     LD_OK);
    ld_ckpt_destroy(good);
    free(buf);
    ld_ckpt_destroy(c);
    ld_snapshot_destroy(s);
    free(b.data);
}

/* One packed checkpoint of m with its trailer, in buf (caller frees). */
static size_t repack(const Learnd__V1__Checkpoint *m, uint8_t **buf)
{
    size_t n = learnd__v1__checkpoint__get_packed_size(m);
    *buf = malloc(n + 34);
    assert_non_null(*buf);
    assert_int_equal(learnd__v1__checkpoint__pack(m, *buf), n);
    (*buf)[n] = 0x7a;
    (*buf)[n + 1] = 0x20;
    ld_ckpt_sha256(*buf, n, *buf + n + 2);
    return n + 34;
}

static void feed_std(ld_trainer_t *t, int n, uint64_t seed)
{
    rng_state = seed;
    for (int i = 0; i < n; i++) {
        uint32_t idx = (uint32_t)rnd() & 31;
        float one = 1,
              dense[2] = {(float)(rnd() % 1000) + 20000.0f, (float)(rnd() % 2)};
        ld_example_t e;
        memset(&e, 0, sizeof(e));
        e.x = (ld_features_t){&idx, &one, dense, 1, 2};
        e.label = (float)((idx + (uint32_t)dense[1]) % 2);
        e.weight = 1;
        assert_int_equal(ld_trainer_add(t, &e), LD_OK);
    }
}

/* dense_norm standard: its statistics travel as "dense_w.norm_stats"
 * [3, D] after the scales, re-encode to the same bytes, and a restore
 * continues bit for bit; a bad statistic is refused; a checkpoint without
 * them (an older or a maxabs one) loads with the state in raw units and
 * the same predictions. */
static void test_standard_stats(void **state)
{
    (void)state;
    ld_trainer_conf_t conf;
    char err[256];
    conf_for(&conf, LD_MODEL_LOGISTIC, LD_OPT_FTRL, 5);
    conf.dense_norm = LD_DNORM_STANDARD;
    ld_trainer_t *u = ld_trainer_new(&conf, err, sizeof(err));
    assert_non_null(u);
    feed_std(u, 60, 11);
    ld_snapshot_t *s = ld_trainer_snapshot(u);
    assert_float_equal(s->dstat[0], 60.0f, 0); /* count of column 0 */
    assert_true(s->dstat[2] > 20000.0f && s->dstat[2] < 21000.0f); /* mean */
    ld_ckpt_meta_t meta = meta_for("m", 1);
    ld_buf_t b, b2;
    assert_int_equal(ld_ckpt_encode(s, &meta, &b), LD_OK);
    ld_ckpt_t *c;
    assert_int_equal(ld_ckpt_decode(b.data, b.len, &c, err, sizeof(err)),
                     LD_OK);
    Learnd__V1__Checkpoint *m = (Learnd__V1__Checkpoint *)ld_ckpt_message(c);
    assert_int_equal(m->spec->optimizer->dense_norm,
                     LEARND__V1__DENSE_NORM__DENSE_NORM_STANDARD);
    assert_int_equal(m->optimizer->n_tensors, 8);
    Learnd__V1__Tensor *st = m->optimizer->tensors[7];
    assert_string_equal(st->name, LD_CKPT_DENSE_STATS);
    assert_int_equal(st->n_shape, 2);
    assert_int_equal(st->shape[0], 3);
    assert_int_equal(st->shape[1], 2);
    ld_snapshot_t *s2 = ld_ckpt_snapshot(c);
    assert_memory_equal(s2->dstat, s->dstat, 6 * sizeof(float));
    assert_int_equal(ld_ckpt_encode(s2, &meta, &b2), LD_OK);
    assert_int_equal(b2.len, b.len);
    assert_memory_equal(b2.data, b.data, b.len);

    /* Restored, it continues bit for bit. */
    ld_trainer_t *r = ld_trainer_new(&conf, err, sizeof(err));
    assert_int_equal(ld_trainer_restore(r, s2, err, sizeof(err)), LD_OK);
    feed_std(u, 40, 12);
    feed_std(r, 40, 12);
    ld_snapshot_t *su = ld_trainer_snapshot(u), *sr = ld_trainer_snapshot(r);
    assert_memory_equal(sr->dn, su->dn, su->dn_n * sizeof(float));
    assert_memory_equal(sr->sp, su->sp, su->sp_n * sizeof(float));
    assert_memory_equal(sr->dstat, su->dstat, 6 * sizeof(float));

    /* Corrupt statistics are refused. */
    uint8_t *buf;
    size_t n;
    ld_ckpt_t *bad = NULL;
    float neg = -1.0f, good;
    memcpy(&good, st->data.data, 4);
    memcpy(st->data.data, &neg, 4); /* a negative count */
    n = repack(m, &buf);
    assert_int_equal(ld_ckpt_decode(buf, n, &bad, err, sizeof(err)),
                     LD_ERR_CORRUPT);
    assert_non_null(strstr(err, "not a statistic"));
    free(buf);
    memcpy(st->data.data, &good, 4);
    st->shape[0] = 2;
    n = repack(m, &buf);
    assert_int_equal(ld_ckpt_decode(buf, n, &bad, err, sizeof(err)),
                     LD_ERR_CORRUPT);
    assert_non_null(strstr(err, "wrong shape"));
    free(buf);
    st->shape[0] = 3;
    /* Statistics in a maxabs checkpoint: one tensor too many. */
    m->spec->optimizer->dense_norm = LEARND__V1__DENSE_NORM__DENSE_NORM_MAXABS;
    n = repack(m, &buf);
    assert_int_equal(ld_ckpt_decode(buf, n, &bad, err, sizeof(err)),
                     LD_ERR_CORRUPT);
    assert_non_null(strstr(err, "tensors"));
    free(buf);
    m->spec->optimizer->dense_norm =
        LEARND__V1__DENSE_NORM__DENSE_NORM_STANDARD;

    /* Without the statistics (older checkpoints): loads, raw units. The
     * standardized state is first brought to raw units as maxabs would
     * (the restore under maxabs below), then written without them. */
    conf.dense_norm = LD_DNORM_MAXABS;
    ld_trainer_t *rm = ld_trainer_new(&conf, err, sizeof(err));
    assert_int_equal(ld_trainer_restore(rm, s2, err, sizeof(err)), LD_OK);
    ld_snapshot_t *sm = ld_trainer_snapshot(rm);
    ld_buf_t b3;
    assert_int_equal(ld_ckpt_encode(sm, &meta, &b3), LD_OK);
    ld_ckpt_t *c3;
    assert_int_equal(ld_ckpt_decode(b3.data, b3.len, &c3, err, sizeof(err)),
                     LD_OK);
    assert_int_equal(ld_ckpt_message(c3)->optimizer->n_tensors, 7);
    ld_snapshot_t *s3 = ld_ckpt_snapshot(c3);
    conf.dense_norm = LD_DNORM_STANDARD;
    ld_trainer_t *r3 = ld_trainer_new(&conf, err, sizeof(err));
    assert_int_equal(ld_trainer_restore(r3, s3, err, sizeof(err)), LD_OK);
    uint32_t pidx = 3;
    float one = 1, pd[2] = {20500.0f, 1.0f}, p2, p3;
    ld_features_t px = {&pidx, &one, pd, 1, 2};
    ld_trainer_t *r2 = ld_trainer_new(&conf, err, sizeof(err));
    assert_int_equal(ld_trainer_restore(r2, s2, err, sizeof(err)), LD_OK);
    assert_int_equal(ld_trainer_predict(r2, &px, &p2, 1), LD_OK);
    assert_int_equal(ld_trainer_predict(r3, &px, &p3, 1), LD_OK);
    assert_float_equal(p3, p2, 1e-5f);
    ld_snapshot_t *s4 = ld_trainer_snapshot(r3);
    for (int j = 0; j < 6; j++)
        assert_float_equal(s4->dstat[j], 0, 0);
    feed_std(r3, 40, 12); /* each column standardizes again */
    ld_snapshot_t *s5 = ld_trainer_snapshot(r3);
    assert_float_equal(s5->dstat[0], 40.0f, 0);
    for (size_t i = 0; i < s5->dn_n; i++)
        assert_true(isfinite(s5->dn[i]));

    ld_snapshot_destroy(s5);
    ld_snapshot_destroy(s4);
    ld_snapshot_destroy(s3);
    ld_ckpt_destroy(c3);
    free(b3.data);
    ld_snapshot_destroy(sm);
    ld_trainer_destroy(rm);
    ld_trainer_destroy(r2);
    ld_trainer_destroy(r3);
    ld_snapshot_destroy(su);
    ld_snapshot_destroy(sr);
    ld_trainer_destroy(r);
    ld_snapshot_destroy(s2);
    ld_ckpt_destroy(c);
    free(b.data);
    free(b2.data);
    ld_snapshot_destroy(s);
    ld_trainer_destroy(u);
}

/* A checkpoint written before dense normalization existed (no
 * "dense_w.norm_scale" tensor, dense_norm unset) still loads: its dense
 * state is in raw units (scales 0). Under dense_norm none it continues bit
 * for bit; under maxabs it predicts the same and each column takes its
 * scale at its first non-zero value. */
static void test_old_format(void **state)
{
    (void)state;
    ld_trainer_conf_t conf;
    char err[256];
    conf_for(&conf, LD_MODEL_LOGISTIC, LD_OPT_FTRL, 5);
    conf.dense_norm = LD_DNORM_NONE;
    ld_trainer_t *u = ld_trainer_new(&conf, err, sizeof(err));
    rng_state = 7;
    for (int i = 0; i < 40; i++) {
        uint32_t idx = (uint32_t)rnd() & 31;
        float one = 1, dense[2] = {(float)(rnd() % 100) - 50.0f, 0};
        ld_example_t e;
        memset(&e, 0, sizeof(e));
        e.x = (ld_features_t){&idx, &one, dense, 1, 2};
        e.label = (float)(idx % 2);
        e.weight = 1;
        assert_int_equal(ld_trainer_add(u, &e), LD_OK);
    }
    ld_snapshot_t *s = ld_trainer_snapshot(u);
    ld_ckpt_meta_t meta = meta_for("m", 1);
    ld_buf_t b;
    assert_int_equal(ld_ckpt_encode(s, &meta, &b), LD_OK);
    ld_ckpt_t *c;
    assert_int_equal(ld_ckpt_decode(b.data, b.len, &c, err, sizeof(err)),
                     LD_OK);
    Learnd__V1__Checkpoint *m = (Learnd__V1__Checkpoint *)ld_ckpt_message(c);
    assert_int_equal(m->optimizer->n_tensors, 7);
    m->optimizer->n_tensors = 6; /* as the old encoder wrote it */
    m->spec->optimizer->dense_norm =
        LEARND__V1__DENSE_NORM__DENSE_NORM_UNSPECIFIED;
    uint8_t *buf = malloc(b.len);
    size_t n = learnd__v1__checkpoint__pack(m, buf);
    buf[n] = 0x7a;
    buf[n + 1] = 0x20;
    ld_ckpt_sha256(buf, n, buf + n + 2);
    m->optimizer->n_tensors = 7;
    ld_ckpt_t *old;
    assert_int_equal(ld_ckpt_decode(buf, n + 34, &old, err, sizeof(err)),
                     LD_OK);
    ld_snapshot_t *os = ld_ckpt_snapshot(old);
    assert_int_equal(os->spec.dense_norm, LD_DNORM_NONE);
    assert_float_equal(os->dscale[0], 0, 0);
    assert_float_equal(os->dscale[1], 0, 0);
    assert_memory_equal(os->dn, s->dn, s->dn_n * sizeof(float));

    ld_trainer_t *rn = ld_trainer_new(&conf, err, sizeof(err));
    conf.dense_norm = LD_DNORM_MAXABS;
    ld_trainer_t *rm = ld_trainer_new(&conf, err, sizeof(err));
    assert_int_equal(ld_trainer_restore(rn, os, err, sizeof(err)), LD_OK);
    assert_int_equal(ld_trainer_restore(rm, os, err, sizeof(err)), LD_OK);
    uint32_t pidx = 3;
    float one = 1, pd[2] = {20, 0}, pu, pm;
    ld_features_t px = {&pidx, &one, pd, 1, 2};
    assert_int_equal(ld_trainer_predict(u, &px, &pu, 1), LD_OK);
    assert_int_equal(ld_trainer_predict(rm, &px, &pm, 1), LD_OK);
    assert_float_equal(pm, pu, 0);
    for (int i = 0; i < 8; i++) {
        uint32_t idx = (uint32_t)i;
        float dense[2] = {(float)(i * 10) - 30.0f, 0};
        ld_example_t e;
        memset(&e, 0, sizeof(e));
        e.x = (ld_features_t){&idx, &one, dense, 1, 2};
        e.label = (float)(i % 2);
        e.weight = 1;
        assert_int_equal(ld_trainer_add(u, &e), LD_OK);
        assert_int_equal(ld_trainer_add(rn, &e), LD_OK);
        assert_int_equal(ld_trainer_add(rm, &e), LD_OK);
    }
    ld_snapshot_t *su = ld_trainer_snapshot(u), *sn = ld_trainer_snapshot(rn),
                  *sm = ld_trainer_snapshot(rm);
    assert_memory_equal(sn->dn, su->dn, su->dn_n * sizeof(float));
    assert_memory_equal(sn->sp, su->sp, su->sp_n * sizeof(float));
    /* maxabs: column 0 took |-30| (then 40), column 1 (all 0) stays raw. */
    assert_float_equal(sm->dscale[0], 40.0f, 0);
    assert_float_equal(sm->dscale[1], 0.0f, 0);
    for (size_t i = 0; i < sm->dn_n; i++)
        assert_true(isfinite(sm->dn[i]));
    assert_true(memcmp(sm->dn, su->dn, su->dn_n * sizeof(float)) != 0);

    ld_snapshot_destroy(su);
    ld_snapshot_destroy(sn);
    ld_snapshot_destroy(sm);
    ld_trainer_destroy(u);
    ld_trainer_destroy(rn);
    ld_trainer_destroy(rm);
    ld_snapshot_destroy(os);
    ld_snapshot_destroy(s);
    ld_ckpt_destroy(old);
    ld_ckpt_destroy(c);
    free(buf);
    free(b.data);
}

/* ---- chunks ------------------------------------------------------------- */

static void test_chunks(void **state)
{
    (void)state;
    ld_trainer_t *t = trained(LD_MODEL_SOFTMAX, LD_OPT_ADAGRAD, 8, 3, 100);
    ld_buf_t b = encode_of(t, "ctr", 5);
    ld_trainer_destroy(t);
    ld_buf_t *ch;
    size_t n;
    assert_int_equal(ld_ckpt_chunks(b.data, b.len, "ctr", 5, 0, &ch, &n),
                     LD_ERR_INVAL);
    assert_int_equal(
        ld_ckpt_chunks(b.data, b.len, "ctr", 5, LD_CKPT_MAX_CHUNK + 1, &ch, &n),
        LD_ERR_INVAL);
    assert_int_equal(ld_ckpt_chunks(b.data, b.len, "ctr", 5, 1000, &ch, &n),
                     LD_OK);
    assert_int_equal(n, (b.len + 999) / 1000);
    assert_true(n > 3);
    ld_ckpt_manifest_info_t info = {.model = "ctr",
                                    .version = 5,
                                    .parent_version = 4,
                                    .chunk_count = (uint32_t)n,
                                    .first_chunk_offset = 1234,
                                    .topic = "learnd.checkpoints",
                                    .partition = 0,
                                    .created_at_ms = 1,
                                    .trigger_id = "trig"};
    ld_buf_t mf, out;
    assert_int_equal(ld_ckpt_manifest_encode(b.data, b.len, &info, &mf), LD_OK);
    Learnd__V1__CheckpointManifest *pm =
        learnd__v1__checkpoint_manifest__unpack(NULL, mf.len, mf.data);
    assert_non_null(pm);
    assert_int_equal(pm->total_size, b.len);
    assert_int_equal(pm->chunk_count, n);
    assert_int_equal(pm->params_sha256.len, 32);
    uint8_t sha[32];
    ld_ckpt_sha256(b.data, b.len, sha);
    assert_memory_equal(pm->sha256.data, sha, 32);
    /* params_sha256 is read from the bytes without a decode: the same as
     * the decoded lineage's */
    ld_ckpt_t *dc;
    char derr[256];
    assert_int_equal(ld_ckpt_decode(b.data, b.len, &dc, derr, sizeof(derr)),
                     LD_OK);
    const Learnd__V1__Checkpoint *dm = ld_ckpt_message(dc);
    assert_memory_equal(pm->params_sha256.data, dm->lineage->params_sha256.data,
                        32);
    ld_ckpt_destroy(dc);
    learnd__v1__checkpoint_manifest__free_unpacked(pm, NULL);
    /* cut short: no lineage, no params_sha256 to find */
    ld_buf_t cut;
    assert_int_equal(ld_ckpt_manifest_encode(b.data, 40, &info, &cut),
                     LD_ERR_CORRUPT);

    char err[256];
    assert_int_equal(
        ld_ckpt_assemble(mf.data, mf.len, ch, n, &out, err, sizeof(err)),
        LD_OK);
    assert_int_equal(out.len, b.len);
    assert_memory_equal(out.data, b.data, b.len);
    free(out.data);

    /* Signed with checkpoint.manifest_secret: the same manifest followed by
     * field 15, the HMAC-SHA256 of everything before it; still a valid
     * manifest for readers and for ld_ckpt_assemble. */
    static const char key[] = "0123456789abcdef-test-key";
    ld_ckpt_manifest_info_t signed_info = info;
    signed_info.hmac_key = (const uint8_t *)key;
    signed_info.hmac_key_len = strlen(key);
    ld_buf_t smf;
    assert_int_equal(ld_ckpt_manifest_encode(b.data, b.len, &signed_info, &smf),
                     LD_OK);
    assert_int_equal(smf.len, mf.len + LD_CKPT_TRAILER);
    assert_memory_equal(smf.data, mf.data, mf.len);
    assert_int_equal(smf.data[mf.len], 0x7a);
    assert_int_equal(smf.data[mf.len + 1], 0x20);
    uint8_t mac[32];
    ld_ckpt_hmac_sha256(key, strlen(key), mf.data, mf.len, mac);
    assert_memory_equal(smf.data + mf.len + 2, mac, 32);
    pm = learnd__v1__checkpoint_manifest__unpack(NULL, smf.len, smf.data);
    assert_non_null(pm);
    assert_int_equal(pm->hmac_sha256.len, 32);
    assert_memory_equal(pm->hmac_sha256.data, mac, 32);
    learnd__v1__checkpoint_manifest__free_unpacked(pm, NULL);
    assert_int_equal(
        ld_ckpt_assemble(smf.data, smf.len, ch, n, &out, err, sizeof(err)),
        LD_OK);
    assert_memory_equal(out.data, b.data, b.len);
    free(out.data);
    free(smf.data);

    /* Missing last chunk, swapped chunks, a flipped byte: refused. */
    assert_int_equal(
        ld_ckpt_assemble(mf.data, mf.len, ch, n - 1, &out, err, sizeof(err)),
        LD_ERR_CORRUPT);
    ld_buf_t tmp = ch[0];
    ch[0] = ch[1];
    ch[1] = tmp;
    assert_int_equal(
        ld_ckpt_assemble(mf.data, mf.len, ch, n, &out, err, sizeof(err)),
        LD_ERR_CORRUPT);
    assert_non_null(strstr(err, "chunk 0"));
    ch[1] = ch[0];
    ch[0] = tmp;
    for (size_t i = 0; i < ch[2].len; i++) {
        ch[2].data[i] ^= 0x40;
        assert_int_equal(
            ld_ckpt_assemble(mf.data, mf.len, ch, n, &out, err, sizeof(err)),
            LD_ERR_CORRUPT);
        ch[2].data[i] ^= 0x40;
    }
    for (size_t i = 0; i < mf.len; i++) {
        mf.data[i] ^= 0x01;
        ld_err_t rc =
            ld_ckpt_assemble(mf.data, mf.len, ch, n, &out, err, sizeof(err));
        mf.data[i] ^= 0x01;
        /* Informational fields (topic, offsets, times) are not covered;
         * everything that decides what is assembled is. */
        if (rc == LD_OK)
            free(out.data);
    }
    ld_ckpt_chunks_free(ch, n);
    free(mf.data);
    free(b.data);
}

/* ---- model store -------------------------------------------------------- */

/* A checkpoint staged before its transaction commits is no version of the
 * store (a warm start must not take it) until it is promoted; promotion
 * takes the staged versions up to the committed one, oldest first. */
static void test_store_staged(void **state)
{
    (void)state;
    char dir[] = "/tmp/ld_ckpt_test_XXXXXX", path[4400], p[4400], err[512];
    assert_non_null(mkdtemp(dir));
    ld_trainer_t *t = trained(LD_MODEL_LOGISTIC, LD_OPT_FTRL, 5, 4, 10);
    for (uint64_t ver = 1; ver <= 3; ver++) {
        ld_buf_t b = encode_of(t, "ctr", ver);
        assert_int_equal(ld_ckpt_store_stage(dir, "ctr", ver, b.data, b.len,
                                             path, sizeof(path), err,
                                             sizeof(err)),
                         LD_OK);
        free(b.data);
    }
    ld_trainer_destroy(t);
    snprintf(p, sizeof(p), "%s/ctr/3.ckpt", dir);
    assert_string_equal(path, p); /* the name it will have */
    struct stat st;
    assert_int_equal(stat(p, &st), -1);
    uint64_t v = 0;
    ld_ckpt_t *c = NULL;
    assert_int_equal(ld_ckpt_store_latest(dir, "ctr", &v), LD_ERR_NOENT);
    assert_int_equal(
        ld_ckpt_store_load_latest(dir, "ctr", &c, err, sizeof(err)),
        LD_ERR_NOENT);
    /* Versions 1 and 2 committed, keep 1. */
    assert_int_equal(ld_ckpt_store_promote(dir, "ctr", 2, 1, err, sizeof(err)),
                     LD_OK);
    assert_int_equal(ld_ckpt_store_latest(dir, "ctr", &v), LD_OK);
    assert_int_equal(v, 2);
    static const char *const want[][2] = {
        {"1.ckpt", "0"},         {"2.ckpt", "1"},
        {"3.ckpt", "0"},         {"1.ckpt.pending", "0"},
        {"2.ckpt.pending", "0"}, {"3.ckpt.pending", "1"}};
    for (size_t i = 0; i < sizeof(want) / sizeof(*want); i++) {
        snprintf(p, sizeof(p), "%s/ctr/%s", dir, want[i][0]);
        assert_int_equal(stat(p, &st) == 0, want[i][1][0] == '1');
    }
    assert_int_equal(
        ld_ckpt_store_load_latest(dir, "ctr", &c, err, sizeof(err)), LD_OK);
    assert_int_equal(ld_ckpt_message(c)->lineage->version, 2);
    ld_ckpt_destroy(c);
    /* Nothing staged at or below 2 any more: nothing changes. */
    assert_int_equal(ld_ckpt_store_promote(dir, "ctr", 2, 1, err, sizeof(err)),
                     LD_OK);
    assert_int_equal(ld_ckpt_store_latest(dir, "ctr", &v), LD_OK);
    assert_int_equal(v, 2);
    assert_int_equal(ld_ckpt_store_promote(dir, "ctr", 9, 5, err, sizeof(err)),
                     LD_OK);
    assert_int_equal(ld_ckpt_store_latest(dir, "ctr", &v), LD_OK);
    assert_int_equal(v, 3);
    snprintf(p, sizeof(p), "rm -rf %s", dir);
    assert_int_equal(system(p), 0);
}

static void test_store(void **state)
{
    (void)state;
    char dir[] = "/tmp/ld_ckpt_test_XXXXXX", path[4400], err[512];
    assert_non_null(mkdtemp(dir));
    uint64_t v;
    ld_ckpt_t *c;
    assert_int_equal(ld_ckpt_store_latest(dir, "ctr", &v), LD_ERR_NOENT);
    assert_int_equal(
        ld_ckpt_store_load_latest(dir, "ctr", &c, err, sizeof(err)),
        LD_ERR_NOENT);
    assert_int_equal(ld_ckpt_store_write(dir, "../x", 1, (const uint8_t *)"x",
                                         1, 3, NULL, 0, NULL, 0),
                     LD_ERR_INVAL);
    ld_trainer_t *t = trained(LD_MODEL_LOGISTIC, LD_OPT_FTRL, 5, 4, 10);
    for (uint64_t ver = 1; ver <= 7; ver++) {
        assert_int_equal(ld_trainer_flush(t), LD_OK);
        ld_buf_t b = encode_of(t, "ctr", ver);
        assert_int_equal(ld_ckpt_store_write(dir, "ctr", ver, b.data, b.len, 3,
                                             path, sizeof(path), NULL, 0),
                         LD_OK);
        free(b.data);
        float one = 1;
        uint32_t idx = (uint32_t)ver;
        ld_example_t e;
        memset(&e, 0, sizeof(e));
        float dense[2] = {0, 0};
        e.x = (ld_features_t){&idx, &one, dense, 1, 2};
        e.label = 1;
        e.weight = 1;
        assert_int_equal(ld_trainer_add(t, &e), LD_OK);
    }
    ld_trainer_destroy(t);
    char want[4400];
    snprintf(want, sizeof(want), "%s/ctr/7.ckpt", dir);
    assert_string_equal(path, want);
    assert_int_equal(ld_ckpt_store_latest(dir, "ctr", &v), LD_OK);
    assert_int_equal(v, 7);
    for (int ver = 1; ver <= 7; ver++) {
        char p[4400];
        struct stat st;
        snprintf(p, sizeof(p), "%s/ctr/%d.ckpt", dir, ver);
        assert_int_equal(stat(p, &st) == 0, ver >= 5);
    }
    assert_int_equal(
        ld_ckpt_store_load_latest(dir, "ctr", &c, err, sizeof(err)), LD_OK);
    assert_int_equal(ld_ckpt_message(c)->lineage->version, 7);
    ld_ckpt_destroy(c);

    /* Corrupt the newest: warm start falls back to version 6. */
    FILE *f = fopen(want, "r+b");
    assert_non_null(f);
    fseek(f, 40, SEEK_SET);
    fputc(0x55, f);
    fclose(f);
    assert_int_equal(ld_ckpt_read_file(want, &c, err, sizeof(err)),
                     LD_ERR_CORRUPT);
    assert_non_null(strstr(err, "7.ckpt"));
    assert_int_equal(
        ld_ckpt_store_load_latest(dir, "ctr", &c, err, sizeof(err)), LD_OK);
    assert_int_equal(ld_ckpt_message(c)->lineage->version, 6);
    ld_ckpt_destroy(c);

    /* Clean up. */
    for (int ver = 5; ver <= 7; ver++) {
        char p[4400];
        snprintf(p, sizeof(p), "%s/ctr/%d.ckpt", dir, ver);
        unlink(p);
    }
    char p[4400];
    snprintf(p, sizeof(p), "%s/ctr/latest", dir);
    unlink(p);
    snprintf(p, sizeof(p), "%s/ctr", dir);
    rmdir(p);
    rmdir(dir);
}

/* RFC 4231 test cases 1, 2 and 6 (a key longer than the block). */
static void test_hmac_sha256(void **state)
{
    (void)state;
    uint8_t k1[20], k6[131], mac[32];
    char h[65];
    memset(k1, 0x0b, sizeof(k1));
    memset(k6, 0xaa, sizeof(k6));
    ld_ckpt_hmac_sha256(k1, sizeof(k1), "Hi There", 8, mac);
    hex(mac, 32, h);
    assert_string_equal(
        h, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    ld_ckpt_hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, mac);
    hex(mac, 32, h);
    assert_string_equal(
        h, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    static const char m6[] =
        "Test Using Larger Than Block-Size Key - Hash Key First";
    ld_ckpt_hmac_sha256(k6, sizeof(k6), m6, strlen(m6), mac);
    hex(mac, 32, h);
    assert_string_equal(
        h, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

/* ---- store diagnostics (issue 15 item 7) -------------------------------- */

/* Every failure of the store fills errstr with the operation and the path:
 * a model store under a regular file used to log uninitialised bytes
 * (err="p"), a full or read-only disk only "I/O error". */
static void test_store_errors(void **state)
{
    (void)state;
    char dir[] = "/tmp/ld_ckpt_err_XXXXXX", file[4200], sub[4300];
    char err[1024], want[8600];
    assert_non_null(mkdtemp(dir));
    snprintf(file, sizeof(file), "%s/file", dir);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);
    snprintf(sub, sizeof(sub), "%s/models", file);

    /* Warm start from a store under a regular file. */
    ld_ckpt_t *c = NULL;
    memcpy(err, "p\\xff\\xfe", 4); /* what a caller's stack might hold */
    assert_int_equal(
        ld_ckpt_store_load_latest(sub, "ctr", &c, err, sizeof(err)), LD_ERR_IO);
    assert_null(c);
    snprintf(want, sizeof(want), "open %s/ctr/latest: Not a directory", sub);
    assert_string_equal(err, want);
    assert_int_equal(
        ld_ckpt_store_load_latest(dir, "../x", &c, err, sizeof(err)),
        LD_ERR_INVAL);
    assert_string_equal(err, "'../x' is not a model name");

    /* Writing there: mkdir names the directory. */
    ld_trainer_t *t = trained(LD_MODEL_LOGISTIC, LD_OPT_FTRL, 5, 4, 10);
    ld_buf_t b = encode_of(t, "ctr", 1);
    ld_trainer_destroy(t);
    assert_int_equal(ld_ckpt_store_write(sub, "ctr", 1, b.data, b.len, 3, NULL,
                                         0, err, sizeof(err)),
                     LD_ERR_IO);
    snprintf(want, sizeof(want), "mkdir %s: Not a directory", sub);
    assert_string_equal(err, want);
    assert_int_equal(ld_ckpt_store_write(dir, "a/b", 1, b.data, b.len, 3, NULL,
                                         0, err, sizeof(err)),
                     LD_ERR_INVAL);
    assert_string_equal(err, "'a/b' is not a model name");

    /* A write that fails midway (a full disk, here a file size limit, which
     * root cannot bypass as it can permissions): the temporary file is
     * named and removed, nothing is left behind. */
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 512;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    ld_err_t rc = ld_ckpt_store_write(dir, "ctr", 1, b.data, b.len, 3, NULL, 0,
                                      err, sizeof(err));
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, prev);
    assert_true(b.len > 512);
    assert_int_equal(rc, LD_ERR_IO);
    snprintf(want, sizeof(want),
             "write %s/ctr/.1.ckpt.pending.tmp.%ld: File too large", dir,
             (long)getpid());
    assert_string_equal(err, want);
    char p[4400];
    snprintf(p, sizeof(p), "%s/ctr/.1.ckpt.pending.tmp.%ld", dir,
             (long)getpid());
    assert_int_equal(access(p, F_OK), -1);
    free(b.data);

    snprintf(p, sizeof(p), "%s/ctr", dir);
    rmdir(p);
    unlink(file);
    rmdir(dir);
}

/* Peak resident set of this process, in KiB. */
static long peak_rss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* A large file is refused on its header or streamed digest without being
 * read into memory (a 2 GiB file used to take 2.1 GB). */
static void test_read_large_file(void **state)
{
    (void)state;
    char path[] = "/tmp/ld_ckpt_big_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const off_t size = (off_t)768 << 20;
    ld_ckpt_t *c = NULL;
    char err[1024], want[2048];

    /* Wrong first bytes: refused before any hashing. */
    assert_int_equal(ftruncate(fd, size), 0);
    long before = peak_rss_kib();
    assert_int_equal(ld_ckpt_read_file(path, &c, err, sizeof(err)),
                     LD_ERR_CORRUPT);
    snprintf(want, sizeof(want),
             "%s: not a learnd checkpoint of format 1 (starts with 00 00)",
             path);
    assert_string_equal(err, want);

    /* A plausible header and trailer, a wrong digest: streamed, refused. */
    static const uint8_t head[2] = {0x08, 0x01}, tag[2] = {0x7a, 0x20};
    assert_int_equal(pwrite(fd, head, 2, 0), 2);
    assert_int_equal(pwrite(fd, tag, 2, size - LD_CKPT_TRAILER), 2);
    assert_int_equal(ld_ckpt_read_file(path, &c, err, sizeof(err)),
                     LD_ERR_CORRUPT);
    snprintf(want, sizeof(want), "%s: checkpoint checksum mismatch", path);
    assert_string_equal(err, want);
    long grew = peak_rss_kib() - before;
    print_message("peak RSS grew %ld KiB reading a %lld MiB file\n", grew,
                  (long long)(size >> 20));
    assert_true(grew < 64 * 1024);

    /* No trailer tag. */
    static const uint8_t zero[2] = {0, 0};
    assert_int_equal(pwrite(fd, zero, 2, size - LD_CKPT_TRAILER), 2);
    assert_int_equal(ld_ckpt_read_file(path, &c, err, sizeof(err)),
                     LD_ERR_CORRUPT);
    snprintf(want, sizeof(want),
             "%s: checkpoint has no checksum trailer (truncated?)", path);
    assert_string_equal(err, want);
    assert_null(c);
    close(fd);
    unlink(path);

    /* A directory is not a checkpoint. */
    assert_int_equal(ld_ckpt_read_file("/tmp", &c, err, sizeof(err)),
                     LD_ERR_IO);
    assert_string_equal(err, "/tmp: not a regular file");
}

/* ---- fixtures ----------------------------------------------------------- */

/* tests/data/trainer holds a small checkpoint written by this code, plus a
 * corrupt and a truncated copy; the good one must keep decoding (format
 * stability) with the same parameter hash. Regenerate with
 * `test_checkpoint --write-fixtures DIR` only on a deliberate format
 * change. */
static void write_fixtures(const char *dir)
{
    ld_trainer_t *t = trained(LD_MODEL_LOGISTIC, LD_OPT_FTRL, 4, 1, 64);
    ld_buf_t b = encode_of(t, "fixture", 1);
    ld_trainer_destroy(t);
    char p[4096];
    snprintf(p, sizeof(p), "%s/small.ckpt", dir);
    FILE *f = fopen(p, "wb");
    fwrite(b.data, 1, b.len, f);
    fclose(f);
    snprintf(p, sizeof(p), "%s/corrupt.ckpt", dir);
    f = fopen(p, "wb");
    b.data[b.len / 2] ^= 0x10;
    fwrite(b.data, 1, b.len, f);
    fclose(f);
    b.data[b.len / 2] ^= 0x10;
    snprintf(p, sizeof(p), "%s/truncated.ckpt", dir);
    f = fopen(p, "wb");
    fwrite(b.data, 1, b.len - 100, f);
    fclose(f);
    free(b.data);
    /* Strings a terminal would act on, as a hostile writer of the
     * checkpoint topic could put them: `learnd inspect` must escape them. */
    t = trained(LD_MODEL_LOGISTIC, LD_OPT_FTRL, 4, 1, 8);
    ld_snapshot_t *s = ld_trainer_snapshot(t);
    ld_ckpt_meta_t meta = meta_for("m\x1b]0;pwned\x07\x1b[2J", 1);
    meta.trigger_id = "t\r\nversion 999\x7f";
    assert_int_equal(ld_ckpt_encode(s, &meta, &b), LD_OK);
    ld_snapshot_destroy(s);
    ld_trainer_destroy(t);
    snprintf(p, sizeof(p), "%s/hostile-strings.ckpt", dir);
    f = fopen(p, "wb");
    fwrite(b.data, 1, b.len, f);
    fclose(f);
    free(b.data);
}

static void test_fixtures(void **state)
{
    (void)state;
    ld_ckpt_t *c;
    char err[512];
    assert_int_equal(ld_ckpt_read_file(LD_TEST_DATA "/trainer/small.ckpt", &c,
                                       err, sizeof(err)),
                     LD_OK);
    const Learnd__V1__Checkpoint *m = ld_ckpt_message(c);
    assert_string_equal(m->lineage->model, "fixture");
    assert_int_equal(m->spec->hash_bits, 4);
    ld_snapshot_t *s = ld_ckpt_snapshot(c);
    uint8_t h[32];
    ld_snapshot_params_sha256(s, h);
    assert_memory_equal(h, m->lineage->params_sha256.data, 32);
    ld_snapshot_destroy(s);
    ld_ckpt_destroy(c);
    assert_int_equal(ld_ckpt_read_file(LD_TEST_DATA "/trainer/corrupt.ckpt", &c,
                                       err, sizeof(err)),
                     LD_ERR_CORRUPT);
    assert_non_null(strstr(err, "checksum"));
    assert_int_equal(ld_ckpt_read_file(LD_TEST_DATA "/trainer/truncated.ckpt",
                                       &c, err, sizeof(err)),
                     LD_ERR_CORRUPT);
    assert_int_equal(ld_ckpt_read_file(LD_TEST_DATA "/trainer/nonexistent", &c,
                                       err, sizeof(err)),
                     LD_ERR_NOENT);
}

/* A checkpoint becomes the champion of a fresh trainer: the champion's
 * shadow scores are the published model's predictions. */
static float cb_champ[8], cb_pred[8];
static size_t cb_n;
static void champ_cb(void *opaque, const ld_scored_t *s, size_t n)
{
    (void)opaque;
    for (size_t i = 0; i < n && cb_n < 8; i++, cb_n++) {
        cb_champ[cb_n] = s[i].champion;
        cb_pred[cb_n] = s[i].pred;
    }
}

static void test_champion_from_checkpoint(void **state)
{
    (void)state;
    ld_trainer_t *a = trained(LD_MODEL_LOGISTIC, LD_OPT_FTRL, 10, 5, 500);
    ld_buf_t b = encode_of(a, "m", 3);
    ld_trainer_conf_t c;
    char err[256];
    conf_for(&c, LD_MODEL_LOGISTIC, LD_OPT_FTRL, 10);
    c.batch_size = 1;
    ld_trainer_t *t = ld_trainer_new(&c, err, sizeof(err));
    assert_non_null(t);
    ld_trainer_set_scored_cb(t, champ_cb, NULL);

    /* Corrupt bytes and a different shape are refused; no champion. */
    b.data[b.len / 2] ^= 1;
    assert_int_equal(ld_ckpt_champion_load(t, b.data, b.len, err, sizeof(err)),
                     LD_ERR_CORRUPT);
    b.data[b.len / 2] ^= 1;
    ld_trainer_t *other = trained(LD_MODEL_LOGISTIC, LD_OPT_FTRL, 11, 5, 10);
    ld_buf_t ob = encode_of(other, "m", 1);
    err[0] = 0;
    assert_int_equal(
        ld_ckpt_champion_load(t, ob.data, ob.len, err, sizeof(err)),
        LD_ERR_CONFIG);
    assert_non_null(strstr(err, "hash_bits"));
    ld_trainer_t *sgd = trained(LD_MODEL_LOGISTIC, LD_OPT_SGD, 10, 5, 10);
    ld_buf_t sb = encode_of(sgd, "m", 1);
    assert_int_equal(
        ld_ckpt_champion_load(t, sb.data, sb.len, err, sizeof(err)),
        LD_ERR_CONFIG);
    assert_non_null(strstr(err, "optimizer"));

    uint32_t idx[3] = {1, 2, 3};
    float val[3] = {1, 1, 0.5f}, dense[2] = {0.5f, 0.25f};
    ld_example_t e;
    memset(&e, 0, sizeof(e));
    e.x = (ld_features_t){idx, val, dense, 3, 2};
    e.label = 1;
    e.weight = 1;
    e.sample_type = LD_SAMPLE_POS;
    cb_n = 0;
    assert_int_equal(ld_trainer_add(t, &e), LD_OK);
    assert_int_equal(cb_n, 1);
    assert_true(isnan(cb_champ[0]));

    /* From bytes: shadow scores are a's predictions, bit for bit. */
    assert_int_equal(ld_ckpt_champion_load(t, b.data, b.len, err, sizeof(err)),
                     LD_OK);
    float want;
    assert_int_equal(ld_trainer_predict(a, &e.x, &want, 1), LD_OK);
    cb_n = 0;
    assert_int_equal(ld_trainer_add(t, &e), LD_OK);
    assert_int_equal(cb_n, 1);
    assert_memory_equal(&cb_champ[0], &want, sizeof(float));
    assert_true(cb_pred[0] != want); /* t itself is a different model */

    /* From a decoded checkpoint: the same. */
    ld_ckpt_t *ck = NULL;
    assert_int_equal(ld_ckpt_decode(b.data, b.len, &ck, err, sizeof(err)),
                     LD_OK);
    assert_int_equal(ld_ckpt_champion_set(t, ck, err, sizeof(err)), LD_OK);
    ld_ckpt_destroy(ck); /* t keeps nothing of it */
    cb_n = 0;
    assert_int_equal(ld_trainer_add(t, &e), LD_OK);
    assert_memory_equal(&cb_champ[0], &want, sizeof(float));
    ld_trainer_metrics_t m, cm;
    ld_trainer_metrics(t, &m, &cm);
    assert_int_equal(cm.examples, 1); /* window restarted by the last set */

    free(b.data);
    free(ob.data);
    free(sb.data);
    ld_trainer_destroy(other);
    ld_trainer_destroy(sgd);
    ld_trainer_destroy(a);
    ld_trainer_destroy(t);
}

/* ---- Delta checkpoints -------------------------------------------------- */

/* Trains n more examples on t (as trained() does, from seed). */
static void train_more(ld_trainer_t *t, int bits, uint64_t seed, int n)
{
    rng_state = seed;
    uint32_t mask = (1u << bits) - 1;
    for (int i = 0; i < n; i++) {
        uint32_t idx[3] = {(uint32_t)rnd() & mask, (uint32_t)rnd() & mask,
                           (uint32_t)rnd() & mask};
        float val[3] = {1, 1, 0.5f}, dense[2] = {0.5f, 0.25f};
        ld_example_t e;
        memset(&e, 0, sizeof(e));
        e.x = (ld_features_t){idx, val, dense, 3, 2};
        e.label = (float)((idx[0] ^ idx[1]) & 1);
        e.weight = 1;
        e.sample_type = LD_SAMPLE_POS;
        e.event_time_ms = i;
        assert_int_equal(ld_trainer_add(t, &e), LD_OK);
    }
    assert_int_equal(ld_trainer_flush(t), LD_OK);
}

static void test_delta_chain(void **state)
{
    (void)state;
    for (int opt = 0; opt < 4; opt++) {
        ld_trainer_t *t = trained(LD_MODEL_LOGISTIC, opt, 12, 5, 400);
        assert_int_equal(ld_trainer_flush(t), LD_OK);
        ld_snapshot_t *s1 = ld_trainer_snapshot(t);
        train_more(t, 12, 6, 20); /* at most 60 of 4096 rows change */
        ld_snapshot_t *s2 = ld_trainer_snapshot(t);
        train_more(t, 12, 7, 20);
        ld_snapshot_t *s3 = ld_trainer_snapshot(t);
        ld_ckpt_meta_t m2 = meta_for("d", 2), m3 = meta_for("d", 3);
        ld_buf_t d2, d3, f3;
        size_t rows2 = 0;
        assert_int_equal(ld_ckpt_encode_delta(s2, s1, &m2, 1, &d2, &rows2),
                         LD_OK);
        assert_int_equal(ld_ckpt_encode_delta(s3, s2, &m3, 1, &d3, NULL),
                         LD_OK);
        assert_int_equal(ld_ckpt_encode(s3, &m3, &f3), LD_OK);
        assert_true(rows2 > 0 && rows2 <= 60);
        assert_true(d3.len * 10 < f3.len);
        char why[512] = "";
        /* A delta is not a checkpoint on its own. */
        ld_ckpt_t *c = NULL;
        assert_int_equal(ld_ckpt_decode(d2.data, d2.len, &c, why, sizeof(why)),
                         LD_ERR_CORRUPT);
        assert_non_null(
            strstr(why, "is a delta of version 1 (chain from full version 1)"));
        /* The chain 1 -> 2 -> 3 gives version 3's parameters exactly. */
        ld_ckpt_t *c2 = NULL, *c3 = NULL, *cf = NULL;
        assert_int_equal(
            ld_ckpt_decode_delta(d2.data, d2.len, &c2, why, sizeof(why)),
            LD_OK);
        assert_int_equal(
            ld_ckpt_decode_delta(d3.data, d3.len, &c3, why, sizeof(why)),
            LD_OK);
        uint64_t pv = 0, bv = 0;
        assert_int_equal(ld_ckpt_delta_of(c3, &pv, &bv), 1);
        assert_int_equal(pv, 2);
        assert_int_equal(bv, 1);
        ld_snapshot_t *r2 = NULL, *r3 = NULL;
        assert_int_equal(ld_ckpt_delta_apply(c2, s1, &r2, why, sizeof(why)),
                         LD_OK);
        assert_int_equal(ld_ckpt_delta_apply(c3, r2, &r3, why, sizeof(why)),
                         LD_OK);
        assert_int_equal(ld_ckpt_decode(f3.data, f3.len, &cf, why, sizeof(why)),
                         LD_OK);
        ld_snapshot_t *rf = ld_ckpt_snapshot(cf);
        size_t na = 0, nb = 0;
        float *pa = ld_snapshot_sparse(r3, &na),
              *pb = ld_snapshot_sparse(rf, &nb);
        assert_int_equal(na, nb);
        assert_memory_equal(pa, pb, na * sizeof(float));
        uint8_t ha[32], hb[32];
        ld_snapshot_params_sha256(r3, ha);
        ld_snapshot_params_sha256(s3, hb);
        assert_memory_equal(ha, hb, 32);
        /* A missing link: version 3 applied to version 1. */
        ld_snapshot_t *bad = NULL;
        assert_int_equal(ld_ckpt_delta_apply(c3, s1, &bad, why, sizeof(why)),
                         LD_ERR_CORRUPT);
        assert_null(bad);
        assert_non_null(strstr(why, "delta version 3 applies to version 2"));
        /* A corrupt link: any changed byte is refused. */
        d3.data[d3.len / 2] ^= 0x10;
        ld_ckpt_t *cc = NULL;
        assert_int_equal(
            ld_ckpt_decode_delta(d3.data, d3.len, &cc, why, sizeof(why)),
            LD_ERR_CORRUPT);
        assert_null(cc);
        ld_snapshot_destroy(rf);
        ld_snapshot_destroy(r2);
        ld_snapshot_destroy(r3);
        ld_ckpt_destroy(c2);
        ld_ckpt_destroy(c3);
        ld_ckpt_destroy(cf);
        free(d2.data);
        free(d3.data);
        free(f3.data);
        ld_snapshot_destroy(s1);
        ld_snapshot_destroy(s2);
        ld_snapshot_destroy(s3);
        ld_trainer_destroy(t);
    }
}

static void test_conf_section(void **state)
{
    (void)state;
    ld_ckpt_conf_t c;
    char err[256];
    memset(&c, 0, sizeof(c));
    assert_int_equal(
        ld_conf_set_defaults(&ld_ckpt_conf_section, &c, err, sizeof(err)),
        LD_OK);
    assert_int_equal(c.chunk_size, 900 * 1024);
    assert_int_equal(c.keep, 5);
    assert_int_equal(c.warm_start, 1);
    assert_string_equal(c.dir, "/var/lib/learnd/models");
    ld_conf_free(&ld_ckpt_conf_section, &c);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--write-fixtures") == 0) {
        write_fixtures(argv[2]);
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_corruption),
        cmocka_unit_test(test_structural_checks),
        cmocka_unit_test(test_old_format),
        cmocka_unit_test(test_standard_stats),
        cmocka_unit_test(test_chunks),
        cmocka_unit_test(test_store),
        cmocka_unit_test(test_store_staged),
        cmocka_unit_test(test_store_errors),
        cmocka_unit_test(test_hmac_sha256),
        cmocka_unit_test(test_read_large_file),
        cmocka_unit_test(test_fixtures),
        cmocka_unit_test(test_champion_from_checkpoint),
        cmocka_unit_test(test_conf_section),
        cmocka_unit_test(test_delta_chain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
