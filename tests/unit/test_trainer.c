/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of trainer/: known answers for every model and optimizer,
 * gradient checks, metrics against brute force, snapshots, determinism. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "trainer/internal.h"
#include "trainer/trainer.h"

static const char *self_path;

/* ---- helpers ------------------------------------------------------------ */

static uint64_t rng_state;

static uint64_t rnd(void)
{
    /* splitmix64: deterministic across platforms */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double unif(void)
{
    return (double)(rnd() >> 11) * (1.0 / 9007199254740992.0);
}

static double gauss(void)
{
    double u = unif(), v = unif();
    if (u < 1e-300)
        u = 1e-300;
    return sqrt(-2 * log(u)) * cos(2 * M_PI * v);
}

static void base_conf(ld_trainer_conf_t *c)
{
    memset(c, 0, sizeof(*c));
    c->name = "test";
    c->model = LD_MODEL_LOGISTIC;
    c->num_classes = 2;
    c->hash_bits = 10;
    c->dense_dim = 0;
    c->optimizer = LD_OPT_SGD;
    c->learning_rate = 0.1;
    c->lr_schedule = LD_LR_CONSTANT;
    c->lr_power_t = 0.5;
    c->ftrl_beta = 1.0;
    c->adagrad_initial_accumulator = 0.1;
    c->epsilon = 1e-8;
    c->adam_beta1 = 0.9;
    c->adam_beta2 = 0.999;
    c->batch_size = 1;
    c->batch_span = 0;
    c->metrics_window = 1000;
    c->blas_threads = 1;
    c->snapshot_step = 65536;
}

static ld_trainer_t *mk(const ld_trainer_conf_t *c)
{
    char err[256];
    ld_trainer_t *t = ld_trainer_new(c, err, sizeof(err));
    if (!t)
        fail_msg("ld_trainer_new: %s", err);
    return t;
}

static ld_example_t ex_of(const uint32_t *idx, const float *val, uint32_t nnz,
                          const float *dense, uint32_t nd, float y)
{
    ld_example_t e;
    memset(&e, 0, sizeof(e));
    e.x.idx = idx;
    e.x.val = val;
    e.x.nnz = nnz;
    e.x.dense = dense;
    e.x.ndense = nd;
    e.label = y;
    e.weight = 1.0f;
    e.sample_type = y > 0 ? LD_SAMPLE_POS : LD_SAMPLE_DEFAULT_NEG;
    e.label_time_ms = -1;
    return e;
}

/* ---- dense block: online steps and maxabs normalization ---------------- */

/* A raw-scaled dense stream: column 0 a price in the hundreds, column 1 an
 * age in tens, column 2 a 0/1 flag; y from a hidden logistic model. */
static void dense_row(float x[3], float *y)
{
    x[0] = (float)(300.0 * exp(0.5 * gauss()));
    x[1] = (float)(18 + (int)(unif() * 57));
    x[2] = (float)(unif() < 0.3);
    double z = -0.006 * (x[0] - 300) + 0.04 * (x[1] - 45) + 1.2 * x[2] - 0.5;
    *y = (float)(unif() < 1 / (1 + exp(-z)));
}

/* With no hashed features every example is scored and trained online, so
 * the batch size does not change a single bit (one step per micro-batch
 * from the summed gradient, as before issue 14, did). Not Adam: its bias
 * correction counts micro-batches. */
static void test_dense_online_batch_invariance(void **state)
{
    (void)state;
    for (int opt = LD_OPT_SGD; opt <= LD_OPT_FTRL; opt++) {
        ld_trainer_conf_t c;
        base_conf(&c);
        c.optimizer = opt;
        c.learning_rate = opt == LD_OPT_SGD ? 0.05 : 0.1;
        c.dense_dim = 3;
        c.dense_norm = LD_DNORM_MAXABS;
        c.l1 = 0.01;
        c.l2 = 0.001;
        ld_trainer_t *a = mk(&c);
        c.batch_size = 256;
        c.batch_span = 0;
        ld_trainer_t *b = mk(&c);
        rng_state = 5;
        for (int i = 0; i < 1000; i++) {
            float x[3], y;
            dense_row(x, &y);
            ld_example_t e = ex_of(NULL, NULL, 0, x, 3, y);
            assert_int_equal(ld_trainer_add(a, &e), LD_OK);
            assert_int_equal(ld_trainer_add(b, &e), LD_OK);
        }
        assert_int_equal(ld_trainer_flush(b), LD_OK);
        ld_snapshot_t *sa = ld_trainer_snapshot(a),
                      *sb = ld_trainer_snapshot(b);
        if (memcmp(sa->dn, sb->dn, sa->dn_n * sizeof(float)))
            fail_msg("optimizer %d: dense state differs (%g vs %g)", opt,
                     (double)sa->dn[0], (double)sb->dn[0]);
        assert_memory_equal(sa->dscale, sb->dscale, 3 * sizeof(float));
        assert_true(sa->dscale[0] > 800.0f); /* max of a lognormal(300) */
        assert_true(sa->dscale[1] == 74.0f && sa->dscale[2] == 1.0f);
        ld_trainer_metrics_t ma, mb;
        ld_trainer_metrics(a, &ma, NULL);
        ld_trainer_metrics(b, &mb, NULL);
        assert_memory_equal(&ma.logloss, &mb.logloss, sizeof(double));
        ld_snapshot_destroy(sa);
        ld_snapshot_destroy(sb);
        ld_trainer_destroy(a);
        ld_trainer_destroy(b);
    }
}

/* maxabs learns the same model whatever the units of a column (price in
 * cents instead of units): predictions agree to float rounding. Without
 * normalization the same stream in cents diverges. Returns the largest
 * |p - p'| over the stream. */
static double units_gap(int norm)
{
    ld_trainer_conf_t c;
    base_conf(&c);
    c.optimizer = LD_OPT_FTRL;
    c.dense_dim = 3;
    c.dense_norm = norm;
    c.batch_size = 64;
    ld_trainer_t *a = mk(&c), *b = mk(&c);
    rng_state = 6;
    double gap = 0;
    for (int i = 0; i < 3000; i++) {
        float x[3], y, pa, pb;
        dense_row(x, &y);
        float xc[3] = {x[0] * 100.0f, x[1], x[2]};
        ld_features_t fa = {NULL, NULL, x, 0, 3}, fb = {NULL, NULL, xc, 0, 3};
        assert_int_equal(ld_trainer_predict(a, &fa, &pa, 1), LD_OK);
        assert_int_equal(ld_trainer_predict(b, &fb, &pb, 1), LD_OK);
        if (fabs(pa - pb) > gap)
            gap = fabs(pa - pb);
        ld_example_t ea = ex_of(NULL, NULL, 0, x, 3, y);
        ld_example_t eb = ex_of(NULL, NULL, 0, xc, 3, y);
        assert_int_equal(ld_trainer_add(a, &ea), LD_OK);
        assert_int_equal(ld_trainer_add(b, &eb), LD_OK);
    }
    ld_trainer_destroy(a);
    ld_trainer_destroy(b);
    return gap;
}

static void test_dense_units_invariance(void **state)
{
    (void)state;
    assert_true(units_gap(LD_DNORM_MAXABS) < 1e-4);
    assert_true(units_gap(LD_DNORM_NONE) > 0.1);
}

/* A value beyond a column's scale converts the state to the new scale
 * without moving any prediction (a weight-0 example: its step is zero), and
 * a maxabs model restored under dense_norm none predicts the same with its
 * state back in raw units. */
static void test_dense_rescale(void **state)
{
    (void)state;
    for (int opt = LD_OPT_SGD; opt <= LD_OPT_ADAM; opt++) {
        ld_trainer_conf_t c;
        base_conf(&c);
        c.optimizer = opt;
        c.dense_dim = 3;
        c.dense_norm = LD_DNORM_MAXABS;
        c.batch_size = 16;
        ld_trainer_t *t = mk(&c);
        rng_state = 7;
        float probe[8][3], before[8], after[8];
        for (int i = 0; i < 8; i++)
            dense_row(probe[i], &after[i]);
        for (int i = 0; i < 512; i++) {
            float x[3], y;
            dense_row(x, &y);
            ld_example_t e = ex_of(NULL, NULL, 0, x, 3, y);
            assert_int_equal(ld_trainer_add(t, &e), LD_OK);
        }
        ld_snapshot_t *s0 = ld_trainer_snapshot(t);
        for (int i = 0; i < 8; i++) {
            ld_features_t f = {NULL, NULL, probe[i], 0, 3};
            assert_int_equal(ld_trainer_predict(t, &f, &before[i], 1), LD_OK);
        }
        float big[3] = {s0->dscale[0] * 4, -200.0f, 0.5f};
        ld_example_t e = ex_of(NULL, NULL, 0, big, 3, 1);
        e.weight = 0;
        assert_int_equal(ld_trainer_add(t, &e), LD_OK);
        assert_int_equal(ld_trainer_flush(t), LD_OK);
        ld_snapshot_t *s1 = ld_trainer_snapshot(t);
        assert_float_equal(s1->dscale[0], s0->dscale[0] * 4, 0);
        assert_float_equal(s1->dscale[1], 200.0f, 0);
        assert_float_equal(s1->dscale[2], 1.0f, 0);
        for (int i = 0; i < 8; i++) {
            ld_features_t f = {NULL, NULL, probe[i], 0, 3};
            assert_int_equal(ld_trainer_predict(t, &f, &after[i], 1), LD_OK);
            /* Adam's momentum still moves the weights on a zero gradient. */
            assert_float_equal(after[i], before[i],
                               opt == LD_OPT_ADAM ? 2e-2f : 1e-5f);
        }
        /* Back to raw units. */
        c.dense_norm = LD_DNORM_NONE;
        ld_trainer_t *r = mk(&c);
        char err[256];
        assert_int_equal(ld_trainer_restore(r, s1, err, sizeof(err)), LD_OK);
        ld_snapshot_t *s2 = ld_trainer_snapshot(r);
        for (int j = 0; j < 3; j++)
            assert_float_equal(s2->dscale[j], 0, 0);
        /* dense_w itself is raw in both: identical bits. */
        assert_memory_equal(s2->dn, s1->dn, 4 * sizeof(float));
        if (opt == LD_OPT_FTRL) /* n in raw units: n' * scale^2 */
            assert_float_equal(s2->dn[8 + 1], s1->dn[8 + 1] * 200.0f * 200.0f,
                               s1->dn[8 + 1] * 200.0f * 200.0f * 1e-5f);
        ld_snapshot_destroy(s0);
        ld_snapshot_destroy(s1);
        ld_snapshot_destroy(s2);
        ld_trainer_destroy(r);
        ld_trainer_destroy(t);
    }
}

/* dense_norm standard: the same model whatever the units *and offset* of a
 * column (a price in cents plus 5 000 instead of units): centring absorbs
 * the offset, which maxabs cannot (after maxabs the shifted column is a
 * second bias). Largest |p - p'| over the stream. */
static double offset_gap(int norm)
{
    ld_trainer_conf_t c;
    base_conf(&c);
    c.optimizer = LD_OPT_FTRL;
    c.dense_dim = 3;
    c.dense_norm = norm;
    c.batch_size = 64;
    ld_trainer_t *a = mk(&c), *b = mk(&c);
    rng_state = 6;
    double gap = 0;
    for (int i = 0; i < 3000; i++) {
        float x[3], y, pa, pb;
        dense_row(x, &y);
        float xc[3] = {x[0] * 100.0f + 5000.0f, x[1], x[2]};
        ld_features_t fa = {NULL, NULL, x, 0, 3}, fb = {NULL, NULL, xc, 0, 3};
        assert_int_equal(ld_trainer_predict(a, &fa, &pa, 1), LD_OK);
        assert_int_equal(ld_trainer_predict(b, &fb, &pb, 1), LD_OK);
        if (fabs(pa - pb) > gap)
            gap = fabs(pa - pb);
        ld_example_t ea = ex_of(NULL, NULL, 0, x, 3, y);
        ld_example_t eb = ex_of(NULL, NULL, 0, xc, 3, y);
        assert_int_equal(ld_trainer_add(a, &ea), LD_OK);
        assert_int_equal(ld_trainer_add(b, &eb), LD_OK);
    }
    ld_trainer_destroy(a);
    ld_trainer_destroy(b);
    return gap;
}

static void test_dense_standard_offset_invariance(void **state)
{
    (void)state;
    /* measured: 1.7e-6 and 0.0155 */
    assert_true(offset_gap(LD_DNORM_STANDARD) < 1e-4);
    assert_true(offset_gap(LD_DNORM_MAXABS) > 0.01);
}

/* Under standard every example moves the statistics; a weight-0 example
 * (zero gradient) must leave every prediction where it was, and the
 * statistics must be exactly Welford's (count, mean, M2). Restored under
 * maxabs the state returns to raw units with the same predictions and no
 * statistics. Batch size changes no bit (dense-only stream). */
static void test_dense_standard_preserves(void **state)
{
    (void)state;
    for (int opt = LD_OPT_SGD; opt <= LD_OPT_FTRL; opt++) {
        ld_trainer_conf_t c;
        base_conf(&c);
        c.optimizer = opt;
        c.learning_rate = opt == LD_OPT_SGD ? 0.05 : 0.1;
        c.dense_dim = 3;
        c.dense_norm = LD_DNORM_STANDARD;
        c.batch_size = 16;
        c.batch_span = 0;
        ld_trainer_t *t = mk(&c);
        c.batch_size = 1;
        ld_trainer_t *t1 = mk(&c);
        rng_state = 7;
        float probe[8][3], before[8], after[8];
        for (int i = 0; i < 8; i++)
            dense_row(probe[i], &after[i]);
        double n = 0, m = 0, m2 = 0; /* column 1, in double */
        for (int i = 0; i < 512; i++) {
            float x[3], y;
            dense_row(x, &y);
            n++;
            double dl = x[1] - m;
            m += dl / n;
            m2 += dl * (x[1] - m);
            ld_example_t e = ex_of(NULL, NULL, 0, x, 3, y);
            assert_int_equal(ld_trainer_add(t, &e), LD_OK);
            assert_int_equal(ld_trainer_add(t1, &e), LD_OK);
        }
        assert_int_equal(ld_trainer_flush(t), LD_OK);
        ld_snapshot_t *s0 = ld_trainer_snapshot(t),
                      *s01 = ld_trainer_snapshot(t1);
        assert_memory_equal(s0->dn, s01->dn, s0->dn_n * sizeof(float));
        assert_memory_equal(s0->dstat, s01->dstat, 9 * sizeof(float));
        assert_float_equal(s0->dstat[1], 512.0f, 0);
        assert_float_equal(s0->dstat[3 + 1], (float)m, 1e-3f);
        assert_float_equal(s0->dstat[6 + 1], (float)m2, (float)(m2 * 1e-4));
        for (int j = 0; j < 3; j++)
            assert_float_equal(s0->dscale[j], 0, 0);
        for (int i = 0; i < 8; i++) {
            ld_features_t f = {NULL, NULL, probe[i], 0, 3};
            assert_int_equal(ld_trainer_predict(t, &f, &before[i], 1), LD_OK);
        }
        float far[3] = {5000.0f, -200.0f, 0.5f};
        ld_example_t e = ex_of(NULL, NULL, 0, far, 3, 1);
        e.weight = 0;
        assert_int_equal(ld_trainer_add(t, &e), LD_OK);
        assert_int_equal(ld_trainer_flush(t), LD_OK);
        ld_snapshot_t *s1 = ld_trainer_snapshot(t);
        assert_float_equal(s1->dstat[0], 513.0f, 0);
        assert_true(s1->dstat[6] > s0->dstat[6] * 2); /* spread grew */
        for (int i = 0; i < 8; i++) {
            ld_features_t f = {NULL, NULL, probe[i], 0, 3};
            assert_int_equal(ld_trainer_predict(t, &f, &after[i], 1), LD_OK);
            assert_float_equal(after[i], before[i], 1e-5f);
        }
        c.dense_norm = LD_DNORM_MAXABS;
        ld_trainer_t *r = mk(&c);
        char err[256];
        assert_int_equal(ld_trainer_restore(r, s1, err, sizeof(err)), LD_OK);
        ld_snapshot_t *s2 = ld_trainer_snapshot(r);
        for (int j = 0; j < 9; j++)
            assert_float_equal(s2->dstat[j], 0, 0);
        assert_memory_equal(s2->dn, s1->dn, 4 * sizeof(float));
        for (int i = 0; i < 8; i++) {
            ld_features_t f = {NULL, NULL, probe[i], 0, 3};
            assert_int_equal(ld_trainer_predict(r, &f, &after[i], 1), LD_OK);
            assert_float_equal(after[i], before[i], 1e-5f);
        }
        ld_snapshot_destroy(s0);
        ld_snapshot_destroy(s01);
        ld_snapshot_destroy(s1);
        ld_snapshot_destroy(s2);
        ld_trainer_destroy(r);
        ld_trainer_destroy(t);
        ld_trainer_destroy(t1);
    }
}

/* ---- config table ------------------------------------------------------- */

static void test_conf_table(void **state)
{
    (void)state;
    const ld_conf_section_t *s = &ld_trainer_conf_section;
    assert_string_equal(s->name, "trainer");
    assert_true(s->nrows > 15);
    for (size_t i = 0; i < s->nrows; i++) {
        const ld_conf_row_t *r = &s->rows[i];
        assert_non_null(r->desc);
        assert_non_null(r->def);
        assert_true(r->offset < sizeof(ld_trainer_conf_t));
        assert_int_equal(r->type == LD_CONF_ENUM, r->choices != NULL);
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(r->name, s->rows[j].name);
    }
    ld_trainer_conf_t c;
    char err[256] = "";
    memset(&c, 0, sizeof(c));
    assert_int_equal(ld_conf_set_defaults(s, &c, err, sizeof(err)), LD_OK);
    assert_int_equal(c.model, LD_MODEL_LOGISTIC);
    assert_int_equal(c.optimizer, LD_OPT_FTRL);
    assert_int_equal(c.batch_size, 256);
    assert_int_equal(c.dense_norm, LD_DNORM_MAXABS);
    assert_int_equal(c.batch_span, 1000);
    assert_int_equal(c.snapshot_step, 1 << 20);
    /* The defaults make a working trainer. */
    ld_trainer_t *t = ld_trainer_new(&c, err, sizeof(err));
    assert_non_null(t);
    ld_trainer_destroy(t);
    ld_conf_free(s, &c);
    ld_trainer_destroy(NULL);
    ld_snapshot_destroy(NULL);
}

static void test_bad_conf(void **state)
{
    (void)state;
    ld_trainer_conf_t c;
    char err[256] = "";
    base_conf(&c);
    c.model = LD_MODEL_LINEAR;
    c.delayed_feedback = LD_DF_FNW;
    assert_null(ld_trainer_new(&c, err, sizeof(err)));
    assert_non_null(strstr(err, "fnw"));
    base_conf(&c);
    c.model = LD_MODEL_SOFTMAX;
    c.num_classes = 1;
    assert_null(ld_trainer_new(&c, err, sizeof(err)));
    assert_non_null(strstr(err, "num_classes"));
}

/* ---- known answers ------------------------------------------------------ */

/* Solves the d x d system a x = b (Gaussian elimination, partial pivot). */
static void solve(double *a, double *b, int d)
{
    for (int c = 0; c < d; c++) {
        int p = c;
        for (int r = c + 1; r < d; r++)
            if (fabs(a[r * d + c]) > fabs(a[p * d + c]))
                p = r;
        for (int j = 0; j < d; j++) {
            double x = a[c * d + j];
            a[c * d + j] = a[p * d + j];
            a[p * d + j] = x;
        }
        double x = b[c];
        b[c] = b[p];
        b[p] = x;
        for (int r = 0; r < d; r++) {
            if (r == c)
                continue;
            double f = a[r * d + c] / a[c * d + c];
            for (int j = 0; j < d; j++)
                a[r * d + j] -= f * a[c * d + j];
            b[r] -= f * b[c];
        }
    }
    for (int c = 0; c < d; c++)
        b[c] /= a[c * d + c];
}

/* Linear regression with SGD reaches the least-squares solution of a noisy
 * problem (normal equations). The dense block takes one step per example
 * (incremental gradient), so a decaying rate (1/t over epochs) brings it to
 * the solution rather than to a noise ball around it. */
static void test_least_squares(void **state)
{
    (void)state;
    enum { N = 200, D = 4 };
    static float x[N][D], y[N];
    rng_state = 1;
    const double truth[D + 1] = {1.5, -2.0, 0.5, 3.0, 0.7};
    for (int i = 0; i < N; i++) {
        double s = truth[D];
        for (int j = 0; j < D; j++) {
            x[i][j] = (float)gauss();
            s += truth[j] * x[i][j];
        }
        y[i] = (float)(s + 0.3 * gauss());
    }
    /* Normal equations with a bias column. */
    double a[(D + 1) * (D + 1)] = {0}, b[D + 1] = {0};
    for (int i = 0; i < N; i++) {
        double r[D + 1];
        for (int j = 0; j < D; j++)
            r[j] = x[i][j];
        r[D] = 1;
        for (int p = 0; p <= D; p++) {
            b[p] += r[p] * y[i];
            for (int q = 0; q <= D; q++)
                a[p * (D + 1) + q] += r[p] * r[q];
        }
    }
    solve(a, b, D + 1);

    ld_trainer_conf_t c;
    base_conf(&c);
    c.model = LD_MODEL_LINEAR;
    c.dense_dim = D;
    c.batch_size = N;
    c.learning_rate = 0.02;
    c.lr_schedule = LD_LR_INVERSE_SCALING;
    c.lr_decay = 0.2;
    c.lr_power_t = 1.0;
    ld_trainer_t *t = mk(&c);
    for (int ep = 0; ep < 600; ep++)
        for (int i = 0; i < N; i++) {
            ld_example_t e = ex_of(NULL, NULL, 0, x[i], D, y[i]);
            assert_int_equal(ld_trainer_add(t, &e), LD_OK);
        }
    ld_snapshot_t *s = ld_trainer_snapshot(t);
    assert_non_null(s);
    /* Tolerance: 1e-3 absolute on each coefficient (float32 GD). */
    for (int j = 0; j <= D; j++)
        assert_float_equal(s->dn[j], b[j], 1e-3);
    ld_trainer_metrics_t m;
    ld_trainer_metrics(t, &m, NULL);
    assert_true(isnan(m.logloss));
    assert_true(m.rmse < 0.35);
    ld_snapshot_destroy(s);
    ld_trainer_destroy(t);
}

/* Separable sparse + dense logistic problem: every optimizer reaches zero
 * training error. */
static void separable_run(int opt, double lr)
{
    enum { N = 300, NNZ = 8, SLOTS = 1 << 10, D = 3 };
    static uint32_t idx[N][NNZ];
    static float val[N][NNZ], dense[N][D], y[N];
    static float wt[SLOTS];
    rng_state = 7;
    for (int i = 0; i < SLOTS; i++)
        wt[i] = (float)gauss();
    for (int i = 0; i < N;) {
        double s = 0;
        for (int f = 0; f < NNZ; f++) {
            idx[i][f] = (uint32_t)(rnd() % SLOTS);
            val[i][f] = 1.0f;
            s += wt[idx[i][f]];
        }
        for (int j = 0; j < D; j++) {
            dense[i][j] = (float)gauss();
            s += (double)(j + 1) * dense[i][j];
        }
        if (fabs(s) < 0.5)
            continue; /* keep a margin */
        y[i] = s > 0 ? 1.0f : 0.0f;
        i++;
    }
    ld_trainer_conf_t c;
    base_conf(&c);
    c.optimizer = opt;
    c.learning_rate = lr;
    c.dense_dim = D;
    c.batch_size = 16;
    ld_trainer_t *t = mk(&c);
    int errors = N;
    for (int ep = 0; ep < 200 && errors; ep++) {
        for (int i = 0; i < N; i++) {
            ld_example_t e = ex_of(idx[i], val[i], NNZ, dense[i], D, y[i]);
            assert_int_equal(ld_trainer_add(t, &e), LD_OK);
        }
        assert_int_equal(ld_trainer_flush(t), LD_OK);
        errors = 0;
        for (int i = 0; i < N; i++) {
            ld_features_t x = {idx[i], val[i], dense[i], NNZ, D};
            float p;
            assert_int_equal(ld_trainer_predict(t, &x, &p, 1), LD_OK);
            errors += (p >= 0.5f) != (y[i] > 0.5f);
        }
    }
    if (errors)
        fail_msg("optimizer %d: %d training errors left", opt, errors);
    ld_trainer_destroy(t);
}

static void test_separable_logistic(void **state)
{
    (void)state;
    separable_run(LD_OPT_SGD, 0.5);
    separable_run(LD_OPT_ADAGRAD, 0.5);
    separable_run(LD_OPT_FTRL, 0.5);
    separable_run(LD_OPT_ADAM, 0.05);
}

/* Softmax on a 3-class Gaussian mixture (unit variance, means 5 apart):
 * held-out accuracy above 0.93 (the Bayes rate is about 0.99). */
static void test_softmax_mixture(void **state)
{
    (void)state;
    static const float mu[3][2] = {{0, 3}, {2.6f, -1.5f}, {-2.6f, -1.5f}};
    ld_trainer_conf_t c;
    base_conf(&c);
    c.model = LD_MODEL_SOFTMAX;
    c.num_classes = 3;
    c.dense_dim = 2;
    c.batch_size = 32;
    c.optimizer = LD_OPT_ADAGRAD;
    c.learning_rate = 0.1;
    c.hash_bits = 4;
    ld_trainer_t *t = mk(&c);
    rng_state = 3;
    for (int i = 0; i < 6000; i++) {
        int k = (int)(rnd() % 3);
        float x[2] = {mu[k][0] + (float)gauss(), mu[k][1] + (float)gauss()};
        uint32_t id = (uint32_t)k; /* an informative hashed feature, 50% */
        float one = 1.0f;
        ld_example_t e = ex_of(&id, &one, (rnd() & 1) ? 1 : 0, x, 2, (float)k);
        e.sample_type = LD_SAMPLE_POS;
        assert_int_equal(ld_trainer_add(t, &e), LD_OK);
    }
    assert_int_equal(ld_trainer_flush(t), LD_OK);
    int ok = 0;
    for (int i = 0; i < 2000; i++) {
        int k = (int)(rnd() % 3);
        float x[2] = {mu[k][0] + (float)gauss(), mu[k][1] + (float)gauss()};
        ld_features_t f = {NULL, NULL, x, 0, 2};
        float p[3];
        assert_int_equal(ld_trainer_predict(t, &f, p, 3), LD_OK);
        assert_float_equal(p[0] + p[1] + p[2], 1.0, 1e-5);
        int best = p[1] > p[0] ? 1 : 0;
        if (p[2] > p[best])
            best = 2;
        ok += best == k;
    }
    assert_true(ok / 2000.0 > 0.93);
    ld_trainer_metrics_t m;
    ld_trainer_metrics(t, &m, NULL);
    assert_true(m.accuracy > 0.9);
    assert_true(m.logloss < 0.3);
    assert_true(isnan(m.auc));
    ld_trainer_destroy(t);
}

/* FTRL-Proximal with L1: noise features get weights that are exactly 0.0f,
 * informative ones do not. */
static void test_ftrl_l1_zeros(void **state)
{
    (void)state;
    ld_trainer_conf_t c;
    base_conf(&c);
    c.optimizer = LD_OPT_FTRL;
    c.hash_bits = 8;
    c.l1 = 2.0;
    c.l2 = 0.1;
    c.batch_size = 8;
    ld_trainer_t *t = mk(&c);
    rng_state = 11;
    for (int i = 0; i < 20000; i++) {
        uint32_t idx[4];
        float val[4] = {1, 1, 1, 1};
        int y = (int)(rnd() & 1);
        idx[0] = (uint32_t)y; /* slot 0/1: perfectly informative */
        for (int f = 1; f < 4; f++)
            idx[f] = 16 + (uint32_t)(rnd() % 240); /* noise */
        ld_example_t e = ex_of(idx, val, 4, NULL, 0, (float)y);
        assert_int_equal(ld_trainer_add(t, &e), LD_OK);
    }
    ld_snapshot_t *s = ld_trainer_snapshot(t);
    assert_non_null(s);
    int zeros = 0;
    for (int i = 16; i < 256; i++)
        zeros += s->sp[i * 3] == 0.0f;
    assert_true(zeros >= 230);
    assert_true(s->sp[0] < -0.5f && s->sp[3] > 0.5f);
    for (int i = 2; i < 16; i++)
        assert_true(s->sp[i * 3] == 0.0f); /* never seen */
    ld_snapshot_destroy(s);
    ld_trainer_destroy(t);
}

/* The one-output FTRL path (a fused pass over a lazy layout, see
 * trainer.c) against a plain reference of the documented update rule: every
 * example scored with the weights at its batch's start, then one FTRL step
 * per non-zero in example order, the weight stored as the closed form of
 * (z, n). Few slots, so features repeat within examples, chunks and
 * batches. The sparse (w, z, n) state must match bit for bit after every
 * batch; the bias comes from the trainer's own snapshot. */
static void ftrl_step_ref(float *c, float g, float ia, float beta, float l1,
                          float l2)
{
    float n = c[2], n2 = n + g * g, sq = sqrtf(n2);
    float z = c[1] + g - (sq - sqrtf(n)) * ia * c[0];
    c[1] = z;
    c[2] = n2;
    c[0] = fabsf(z) <= l1 ? 0.0f
                          : -(z - copysignf(l1, z)) / ((beta + sq) * ia + l2);
}

static void ftrl_reference(int model, int batch, double l1, double l2)
{
    enum { BITS = 6, NSLOT = 1 << BITS, NF = 12, N = 600 };
    ld_trainer_conf_t c;
    base_conf(&c);
    c.model = model;
    c.optimizer = LD_OPT_FTRL;
    c.hash_bits = BITS;
    c.batch_size = batch;
    c.learning_rate = 0.2;
    c.ftrl_beta = 1.0;
    c.l1 = l1;
    c.l2 = l2;
    ld_trainer_t *t = mk(&c);
    static float ref[NSLOT * 3];
    float bias[3] = {0, 0, 0}; /* w, z, n */
    memset(ref, 0, sizeof(ref));
    const float ia = (float)(1.0 / c.learning_rate), beta = (float)c.ftrl_beta,
                fl1 = (float)l1, fl2 = (float)l2;
    static uint32_t idx[N][NF];
    static float val[N][NF], y[N];
    rng_state = 99 + (uint64_t)batch;
    for (int i = 0; i < N; i++) {
        for (int f = 0; f < NF; f++) {
            /* Hot slots 0..3 in every example, the rest spread out. */
            idx[i][f] = (uint32_t)(f < 3 ? rnd() % 4 : rnd() % NSLOT);
            val[i][f] = f % 3 ? 1.0f : (float)(2 * unif() - 1);
        }
        y[i] = model == LD_MODEL_LINEAR ? (float)(3 * unif())
                                        : (float)(unif() < 0.3);
    }
    for (int b0 = 0; b0 < N; b0 += batch) {
        ld_snapshot_t *s = ld_trainer_snapshot(t);
        assert_non_null(s);
        assert_memory_equal(s->sp, ref, sizeof(ref));
        /* The bias (w, z, n) is the dense block's plane layout. */
        assert_memory_equal(&s->dn[0], &bias[0], sizeof(float));
        assert_memory_equal(&s->dn[1], &bias[1], sizeof(float));
        assert_memory_equal(&s->dn[2], &bias[2], sizeof(float));
        ld_snapshot_destroy(s);
        int b1 = b0 + batch < N ? b0 + batch : N;
        float r[64];
        /* The hashed part from the batch-start weights; the bias is
         * online: each example is scored with the bias after the steps
         * of the examples before it, then steps it (no L1/L2). */
        for (int i = b0; i < b1; i++) {
            float z = 0.0f;
            for (int f = 0; f < NF; f++)
                z += ref[idx[i][f] * 3] * val[i][f];
            z += bias[0];
            float p = model == LD_MODEL_LINEAR ? z : 1.0f / (1.0f + expf(-z));
            r[i - b0] = p - y[i];
            ftrl_step_ref(bias, r[i - b0], ia, beta, 0.0f, 0.0f);
        }
        for (int i = b0; i < b1; i++)
            for (int f = 0; f < NF; f++)
                ftrl_step_ref(ref + idx[i][f] * 3, r[i - b0] * val[i][f], ia,
                              beta, fl1, fl2);
        for (int i = b0; i < b1; i++) {
            ld_example_t e = ex_of(idx[i], val[i], NF, NULL, 0, y[i]);
            assert_int_equal(ld_trainer_add(t, &e), LD_OK);
        }
        assert_int_equal(ld_trainer_flush(t), LD_OK);
    }
    ld_snapshot_t *s = ld_trainer_snapshot(t);
    assert_memory_equal(s->sp, ref, sizeof(ref));
    /* predict reads the same weights. */
    float out, want = s->dn[0];
    ld_features_t x = {idx[0], val[0], NULL, NF, 0};
    for (int f = 0; f < NF; f++)
        want += ref[idx[0][f] * 3] * val[0][f];
    if (model == LD_MODEL_LOGISTIC)
        want = 1.0f / (1.0f + expf(-want));
    assert_int_equal(ld_trainer_predict(t, &x, &out, 1), LD_OK);
    assert_memory_equal(&out, &want, sizeof(out));
    ld_snapshot_destroy(s);
    ld_trainer_destroy(t);
}

static void test_ftrl_reference(void **state)
{
    (void)state;
    static const int batches[] = {1, 3, 5, 16, 64};
    /* Both the SSE and (where the CPU has it) the AVX2 loops; and the
     * chunk tags restarting every few batches. */
    for (int v = 0; v < 3; v++) {
        ld_trainer_force_sse = v == 1;
        ld_trainer_tick_max = v == 2 ? 100 : LD_TRAINER_TICK_MAX;
        for (size_t b = 0; b < sizeof(batches) / sizeof(batches[0]); b++) {
            ftrl_reference(LD_MODEL_LOGISTIC, batches[b], 0.0, 0.0);
            ftrl_reference(LD_MODEL_LOGISTIC, batches[b], 0.05, 0.1);
            ftrl_reference(LD_MODEL_LINEAR, batches[b], 0.01, 0.0);
        }
    }
}

/* Restores what test_ftrl_reference changes, also when it fails. */
static int ftrl_reference_teardown(void **state)
{
    (void)state;
    ld_trainer_force_sse = 0;
    ld_trainer_tick_max = LD_TRAINER_TICK_MAX;
    return 0;
}

/* ---- gradient checks ---------------------------------------------------- */

static double loss_of(ld_trainer_t *t, int model, const ld_features_t *x,
                      float y)
{
    float p[3];
    assert_int_equal(ld_trainer_predict(t, x, p, 3), LD_OK);
    if (model == LD_MODEL_LOGISTIC)
        return -(y * log(p[0]) + (1 - y) * log(1 - p[0]));
    if (model == LD_MODEL_LINEAR)
        return 0.5 * (p[0] - y) * (p[0] - y);
    return -log(p[(int)y]);
}

/* The update of plain SGD with batch 1 is -lr * gradient; recover the
 * gradient from it and compare with central finite differences of the loss
 * for each sparse, dense and bias coordinate the example touches. */
static void gradcheck(int model, float y)
{
    enum { D = 2 };
    ld_trainer_conf_t c;
    base_conf(&c);
    c.model = model;
    c.num_classes = 3;
    c.dense_dim = D;
    c.hash_bits = 4;
    c.learning_rate = 1e-3;
    ld_trainer_t *t = mk(&c);
    uint32_t k = ld_trainer_outputs(t);
    /* Random starting point. */
    ld_snapshot_t *s0 = ld_trainer_snapshot(t);
    rng_state = 5 + (uint64_t)model;
    for (size_t i = 0; i < s0->sp_n; i++)
        s0->sp[i] = (float)(0.5 * gauss());
    for (size_t i = 0; i < s0->dn_n; i++)
        s0->dn[i] = (float)(0.5 * gauss());
    char err[128];
    assert_int_equal(ld_trainer_restore(t, s0, err, sizeof(err)), LD_OK);

    uint32_t idx[2] = {3, 9};
    float val[2] = {1.0f, -0.7f}, dense[D] = {0.4f, -1.2f};
    ld_features_t x = {idx, val, dense, 2, D};
    ld_example_t e = ex_of(idx, val, 2, dense, D, y);
    assert_int_equal(ld_trainer_add(t, &e), LD_OK);
    ld_snapshot_t *s1 = ld_trainer_snapshot(t);

    /* Coordinates touched: sparse (slot, class), dense (class, col). */
    for (uint32_t kk = 0; kk < k; kk++) {
        float *targets[4] = {&s0->sp[(3 * k + kk)], &s0->sp[(9 * k + kk)],
                             &s0->dn[kk * (D + 1) + 1],
                             &s0->dn[kk * (D + 1) + D]};
        float *after[4] = {&s1->sp[(3 * k + kk)], &s1->sp[(9 * k + kk)],
                           &s1->dn[kk * (D + 1) + 1],
                           &s1->dn[kk * (D + 1) + D]};
        for (int q = 0; q < 4; q++) {
            double g = -(double)(*after[q] - *targets[q]) / 1e-3;
            float keep = *targets[q];
            const float h = 1e-2f;
            *targets[q] = keep + h;
            assert_int_equal(ld_trainer_restore(t, s0, err, sizeof(err)),
                             LD_OK);
            double lp = loss_of(t, model, &x, y);
            *targets[q] = keep - h;
            assert_int_equal(ld_trainer_restore(t, s0, err, sizeof(err)),
                             LD_OK);
            double lm = loss_of(t, model, &x, y);
            *targets[q] = keep;
            double fd = (lp - lm) / (2 * h);
            if (fabs(fd - g) > 2e-3 + 2e-3 * fabs(g))
                fail_msg("model %d class %u coord %d: analytic %g, finite "
                         "difference %g",
                         model, kk, q, g, fd);
        }
    }
    ld_snapshot_destroy(s0);
    ld_snapshot_destroy(s1);
    ld_trainer_destroy(t);
}

static void test_gradients(void **state)
{
    (void)state;
    gradcheck(LD_MODEL_LOGISTIC, 1.0f);
    gradcheck(LD_MODEL_LOGISTIC, 0.0f);
    gradcheck(LD_MODEL_LOGISTIC, 0.3f);
    gradcheck(LD_MODEL_LINEAR, 2.5f);
    gradcheck(LD_MODEL_SOFTMAX, 0.0f);
    gradcheck(LD_MODEL_SOFTMAX, 2.0f);
}

/* ---- metrics ------------------------------------------------------------ */

static void test_auc_brute_force(void **state)
{
    (void)state;
    enum { N = 400 };
    static float s[N], y[N], w[N];
    static ld_auc_item_t scratch[2 * N];
    static const float odd[] = {-0.0f,    0.0f,    NAN,    -INFINITY,
                                INFINITY, -1e-30f, 1e-30f, -3.5f};
    rng_state = 99;
    for (int rep = 0; rep < 30; rep++) {
        for (int i = 0; i < N; i++) {
            /* coarse scores so ties happen; negative ones, signed zeros,
             * NaN (ranks as -Inf) and infinities from rep 20 on */
            s[i] = (float)(rnd() % (rep < 10 ? 20 : 100000)) / 20.0f;
            if (rep >= 20 && rnd() % 4 == 0)
                s[i] = odd[rnd() % 8];
            else if (rep >= 20 && rnd() % 2)
                s[i] = -s[i];
            y[i] = (rnd() % 3 == 0) ? 1.0f : 0.0f;
            w[i] = rep & 1 ? (float)(0.1 + unif()) : 1.0f;
        }
        double num = 0, den = 0;
        for (int i = 0; i < N; i++)
            for (int j = 0; j < N; j++)
                if (y[i] > 0.5f && y[j] < 0.5f) {
                    double ww = (double)w[i] * w[j];
                    float si = isnan(s[i]) ? -INFINITY : s[i];
                    float sj = isnan(s[j]) ? -INFINITY : s[j];
                    den += ww;
                    num += ww * (si > sj ? 1.0 : si == sj ? 0.5 : 0);
                }
        double auc = ld_auc_exact(s, y, w, N, scratch);
        assert_true(fabs(auc - num / den) < 1e-9);
    }
    /* One class only: undefined. */
    for (int i = 0; i < N; i++)
        y[i] = 1;
    assert_true(isnan(ld_auc_exact(s, y, NULL, N, scratch)));
}

static void test_window(void **state)
{
    (void)state;
    ld_window_t w;
    assert_int_equal(ld_window_init(&w, 4), LD_OK);
    ld_trainer_metrics_t m;
    ld_window_metrics(&w, LD_MODEL_LOGISTIC, &m);
    assert_int_equal(m.examples, 0);
    assert_true(isnan(m.logloss));
    /* The first example falls out of a window of 4. */
    ld_window_push(&w, 0.9f, 0, 1, 100, 1, 0, 1);
    ld_window_push(&w, 0.8f, 1, 1, 0.2f, 0.04f, 1, 2);
    ld_window_push(&w, 0.3f, 0, 1, 0.4f, 0.09f, 1, 3);
    ld_window_push(&w, 0.6f, 1, 1, 0.5f, 0.16f, 1, 4);
    ld_window_push(&w, 0.1f, 0, 2, 0.1f, 0.01f, 1, 5);
    ld_window_metrics(&w, LD_MODEL_LOGISTIC, &m);
    assert_int_equal(m.examples, 4);
    assert_float_equal(m.logloss, (0.2 + 0.4 + 0.5 + 0.2) / 5, 1e-6);
    assert_float_equal(m.accuracy, 1.0, 1e-12);
    assert_float_equal(m.auc, 1.0, 1e-12);
    assert_float_equal(m.mean_prediction, (0.8 + 0.3 + 0.6 + 0.2) / 5, 1e-6);
    assert_float_equal(m.mean_label, 2.0 / 5, 1e-6);
    assert_float_equal(m.calibration, (0.8 + 0.3 + 0.6 + 0.2) / 2, 1e-6);
    assert_float_equal(m.rmse, sqrt((0.04 + 0.09 + 0.16 + 0.02) / 5), 1e-6);
    assert_int_equal(m.window_start_ms, 2);
    assert_int_equal(m.window_end_ms, 5);
    ld_window_free(&w);
}

static int cb_calls;
static size_t cb_total;

static void scored_cb(void *opaque, const ld_scored_t *s, size_t n)
{
    (void)opaque;
    cb_calls++;
    cb_total += n;
    for (size_t i = 0; i < n; i++)
        assert_true(s[i].sample_type == LD_SAMPLE_POS ||
                    s[i].sample_type == LD_SAMPLE_DEFAULT_NEG);
}

/* Test-then-train: the very first example is scored by the zero model
 * (p = 1/2, logloss ln 2); fake_neg never reaches metrics or detectors; the
 * Ktena et al. importance weights scale the update. */
static void test_prequential_and_fnw(void **state)
{
    (void)state;
    ld_trainer_conf_t c;
    base_conf(&c);
    c.delayed_feedback = LD_DF_FNW;
    c.learning_rate = 1.0;
    ld_trainer_t *t = mk(&c);
    ld_trainer_set_scored_cb(t, scored_cb, NULL);
    cb_calls = 0;
    cb_total = 0;
    ld_example_t e = ex_of(NULL, NULL, 0, NULL, 0, 1.0f);
    e.sample_type = LD_SAMPLE_DELAYED_POS;
    assert_int_equal(ld_trainer_add(t, &e), LD_OK);
    ld_snapshot_t *s = ld_trainer_snapshot(t);
    /* bias -= lr * (1 + p) (p - 1) with p = 1/2: +0.75 */
    assert_float_equal(s->dn[0], 0.75, 1e-7);
    ld_snapshot_destroy(s);
    ld_trainer_metrics_t m;
    ld_trainer_metrics(t, &m, NULL);
    assert_int_equal(m.examples, 0);
    assert_int_equal(cb_calls, 0);

    e.label = 0;
    e.sample_type = LD_SAMPLE_FAKE_NEG;
    assert_int_equal(ld_trainer_add(t, &e), LD_OK);
    s = ld_trainer_snapshot(t);
    float p = 1.0f / (1.0f + expf(-0.75f));
    assert_float_equal(s->dn[0], 0.75 - (1 - p) * (1 + p) * p, 1e-6);
    ld_snapshot_destroy(s);

    ld_trainer_destroy(t);
    c.delayed_feedback = LD_DF_NONE;
    t = mk(&c);
    ld_trainer_set_scored_cb(t, scored_cb, NULL);
    e.sample_type = LD_SAMPLE_DEFAULT_NEG;
    assert_int_equal(ld_trainer_add(t, &e), LD_OK);
    ld_trainer_metrics(t, &m, NULL);
    assert_int_equal(m.examples, 1);
    assert_float_equal(m.logloss, log(2.0), 1e-6);
    assert_int_equal(cb_calls, 1);
    assert_int_equal(cb_total, 1);
    ld_trainer_stats_t st;
    ld_trainer_stats(t, &st);
    assert_int_equal(st.by_type[LD_SAMPLE_DEFAULT_NEG], 1);
    ld_trainer_destroy(t);
}

static void test_reject_and_cut(void **state)
{
    (void)state;
    ld_trainer_conf_t c;
    base_conf(&c);
    c.hash_bits = 4;
    c.dense_dim = 1;
    c.batch_size = 100;
    c.batch_span = 1000;
    ld_trainer_t *t = mk(&c);
    uint32_t bad = 16, good = 15;
    float one = 1, nan = NAN, d = 0.5f;
    ld_example_t e = ex_of(&bad, &one, 1, &d, 1, 1);
    assert_int_equal(ld_trainer_add(t, &e), LD_ERR_INVAL);
    e = ex_of(&good, &nan, 1, &d, 1, 1);
    assert_int_equal(ld_trainer_add(t, &e), LD_ERR_INVAL);
    e = ex_of(&good, &one, 1, NULL, 0, 1);
    assert_int_equal(ld_trainer_add(t, &e), LD_ERR_INVAL);
    e = ex_of(&good, &one, 1, &d, 1, 2.0f);
    assert_int_equal(ld_trainer_add(t, &e), LD_ERR_INVAL);
    e = ex_of(&good, &one, 1, &d, 1, 1);
    e.weight = -1;
    assert_int_equal(ld_trainer_add(t, &e), LD_ERR_INVAL);
    ld_trainer_stats_t st;
    ld_trainer_stats(t, &st);
    assert_int_equal(st.rejected, 5);
    /* Cut by event-time span: 0 and 999 share a batch, 1000 starts one. */
    e = ex_of(&good, &one, 1, &d, 1, 1);
    e.event_time_ms = 0;
    assert_int_equal(ld_trainer_add(t, &e), LD_OK);
    e.event_time_ms = 999;
    assert_int_equal(ld_trainer_add(t, &e), LD_OK);
    ld_trainer_stats(t, &st);
    assert_int_equal(st.batches, 0);
    e.event_time_ms = 1000;
    assert_int_equal(ld_trainer_add(t, &e), LD_OK);
    ld_trainer_stats(t, &st);
    assert_int_equal(st.batches, 1);
    assert_int_equal(st.examples, 2);
    assert_int_equal(ld_trainer_flush(t), LD_OK);
    ld_trainer_stats(t, &st);
    assert_int_equal(st.batches, 2);
    ld_trainer_destroy(t);
}

/* ---- snapshots, champion, determinism ----------------------------------- */

/* A reproducible stream: nnz hashed features, a dense block, labels from a
 * hidden model. */
static void stream(ld_trainer_t *t, uint64_t seed, int n, int model, int d)
{
    uint32_t idx[16];
    float val[16], dense[8];
    rng_state = seed;
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int f = 0; f < 16; f++) {
            idx[f] = (uint32_t)(rnd() & 4095);
            val[f] = f < 12 ? 1.0f : (float)unif();
            s += (idx[f] % 7 == 0 ? 1 : -0.3) * val[f];
        }
        for (int j = 0; j < d; j++) {
            dense[j] = (float)gauss();
            s += dense[j] * (double)(j - 2);
        }
        float y = model == LD_MODEL_SOFTMAX ? (float)((idx[0] + (s > 0)) % 3)
                                            : (unif() < 1 / (1 + exp(-s)));
        ld_example_t e = ex_of(idx, val, 16, dense, (uint32_t)d, y);
        e.event_time_ms = i;
        assert_int_equal(ld_trainer_add(t, &e), LD_OK);
    }
}

static void snap_conf(ld_trainer_conf_t *c, int model, int opt)
{
    base_conf(c);
    c->model = model;
    c->num_classes = 3;
    c->optimizer = opt;
    c->hash_bits = 12;
    c->dense_dim = 8;
    c->batch_size = 32;
    c->learning_rate = 0.05;
}

static void assert_same(const ld_snapshot_t *a, const ld_snapshot_t *b)
{
    assert_int_equal(a->sp_n, b->sp_n);
    assert_int_equal(a->dn_n, b->dn_n);
    assert_memory_equal(a->sp, b->sp, a->sp_n * sizeof(float));
    assert_memory_equal(a->dn, b->dn, a->dn_n * sizeof(float));
    assert_int_equal(a->step, b->step);
}

/* A snapshot begun at batch P and completed while training goes on equals
 * a snapshot taken at P; resuming from it continues bit for bit. */
static void test_snapshot_cow_and_resume(void **state)
{
    (void)state;
    for (int opt = LD_OPT_SGD; opt <= LD_OPT_ADAM; opt++) {
        ld_trainer_conf_t c;
        snap_conf(&c,
                  opt == LD_OPT_ADAGRAD ? LD_MODEL_SOFTMAX : LD_MODEL_LOGISTIC,
                  opt);
        c.hash_bits = 16; /* several copy steps of 64 KiB */
        ld_trainer_t *a = mk(&c), *b = mk(&c);
        stream(a, 42, 320, c.model, 8);
        stream(b, 42, 320, c.model, 8);
        ld_snapshot_t *ref = ld_trainer_snapshot(b);
        assert_int_equal(ld_trainer_snapshot_begin(a), LD_OK);
        assert_int_equal(ld_trainer_snapshot_begin(a), LD_ERR_INVAL);
        ld_snapshot_t *got = NULL;
        rng_state = 1000;
        for (int i = 0; i < 400 && !got; i++) {
            stream(a, 1000 + (uint64_t)i, 32, c.model, 8);
            got = ld_trainer_snapshot_poll(a);
        }
        assert_non_null(got);
        assert_same(ref, got);
        ld_trainer_stats_t st;
        ld_trainer_stats(a, &st);
        assert_true(st.snapshot_blocks_cow > 0);
        assert_true(st.snapshot_blocks_steps > 0);

        /* Resume: b restored from the snapshot into a fresh trainer c2
         * gives the same state as b after more training. */
        ld_trainer_t *r = mk(&c);
        char err[128];
        assert_int_equal(ld_trainer_restore(r, got, err, sizeof(err)), LD_OK);
        stream(b, 77, 200, c.model, 8);
        stream(r, 77, 200, c.model, 8);
        ld_snapshot_t *sb = ld_trainer_snapshot(b),
                      *sr = ld_trainer_snapshot(r);
        assert_same(sb, sr);
        ld_snapshot_destroy(sb);
        ld_snapshot_destroy(sr);
        ld_snapshot_destroy(ref);
        ld_snapshot_destroy(got);
        ld_trainer_destroy(a);
        ld_trainer_destroy(b);
        ld_trainer_destroy(r);
    }
}

static void *complete_main(void *arg)
{
    ld_snapshot_complete(arg);
    return NULL;
}

/* A shared snapshot (issue #18: the publisher thread copies the model,
 * the loop only the blocks it writes first) taken at batch P and made
 * champion at once equals a snapshot taken at P, and the model trained
 * on meanwhile, its champion scores included, is bit for bit the one of
 * an unshared snapshot: with the trainer's copier thread and the loop
 * copying, and with a third thread (the publisher) completing it too. */
static void test_snapshot_shared(void **state)
{
    (void)state;
    for (int threaded = 0; threaded < 2; threaded++)
        for (int opt = LD_OPT_SGD; opt <= LD_OPT_ADAM; opt++) {
            ld_trainer_conf_t c;
            snap_conf(&c,
                      opt == LD_OPT_ADAGRAD ? LD_MODEL_SOFTMAX
                                            : LD_MODEL_LOGISTIC,
                      opt);
            c.hash_bits = 16;
            ld_trainer_t *a = mk(&c), *b = mk(&c);
            rng_state = 7;
            stream(a, 42, 320, c.model, 8);
            rng_state = 7;
            stream(b, 42, 320, c.model, 8);
            ld_snapshot_t *ref = ld_trainer_snapshot(b);
            ld_snapshot_t *got = ld_trainer_snapshot_shared(a);
            assert_non_null(got);
            assert_int_equal(ld_trainer_champion_set(a, got), LD_OK);
            assert_int_equal(ld_trainer_champion_set(b, ref), LD_OK);
            pthread_t th;
            if (threaded)
                assert_int_equal(pthread_create(&th, NULL, complete_main, got),
                                 0);
            rng_state = 1000;
            stream(a, 1000, 640, c.model, 8);
            rng_state = 1000;
            stream(b, 1000, 640, c.model, 8);
            if (threaded)
                assert_int_equal(pthread_join(th, NULL), 0);
            ld_trainer_stats_t st;
            ld_trainer_stats(a, &st);
            /* the loop copies only blocks it writes first: no steps */
            assert_int_equal(st.snapshot_blocks_steps, 0);
            ld_snapshot_complete(got);
            assert_same(ref, got);
            ld_trainer_metrics_t ma, ca, mb, cb;
            ld_trainer_metrics(a, &ma, &ca);
            ld_trainer_metrics(b, &mb, &cb);
            assert_memory_equal(&ma, &mb, sizeof(ma));
            assert_memory_equal(&ca, &cb, sizeof(ca));
            /* The next shared snapshot completes a pending one first; an
             * unshared one after it works as before. */
            ld_snapshot_t *s2 = ld_trainer_snapshot_shared(a);
            ld_snapshot_t *s3 = ld_trainer_snapshot(a);
            assert_non_null(s2);
            assert_non_null(s3);
            ld_snapshot_complete(s2);
            assert_same(s2, s3);
            ld_snapshot_t *sa = ld_trainer_snapshot(a),
                          *sb = ld_trainer_snapshot(b);
            assert_same(sa, sb);
            ld_snapshot_destroy(sa);
            ld_snapshot_destroy(sb);
            ld_snapshot_destroy(s2);
            ld_snapshot_destroy(s3);
            ld_snapshot_destroy(ref);
            ld_snapshot_destroy(got);
            ld_trainer_destroy(a);
            ld_trainer_destroy(b);
        }
}

static void test_champion(void **state)
{
    (void)state;
    ld_trainer_conf_t c;
    snap_conf(&c, LD_MODEL_LOGISTIC, LD_OPT_FTRL);
    ld_trainer_t *t = mk(&c);
    stream(t, 1, 3000, c.model, 8);
    ld_snapshot_t *s = ld_trainer_snapshot(t);
    assert_int_equal(ld_trainer_champion_set(t, s), LD_OK);
    ld_snapshot_destroy(s); /* the trainer keeps its own reference */
    stream(t, 2, 2000, c.model, 8);
    ld_trainer_metrics_t m, cm;
    ld_trainer_metrics(t, &m, &cm);
    assert_int_equal(m.examples, 1000);
    assert_int_equal(cm.examples, 1000);
    assert_true(cm.logloss > 0 && cm.logloss < 0.69);
    assert_true(fabs(cm.logloss - m.logloss) < 0.05);
    assert_true(cm.auc > 0.7);
    /* Wrong shape refused. */
    ld_trainer_conf_t c2;
    snap_conf(&c2, LD_MODEL_LOGISTIC, LD_OPT_FTRL);
    c2.hash_bits = 11;
    ld_trainer_t *t2 = mk(&c2);
    ld_snapshot_t *s2 = ld_trainer_snapshot(t2);
    assert_int_equal(ld_trainer_champion_set(t, s2), LD_ERR_INVAL);
    char err[256];
    assert_int_equal(ld_trainer_restore(t, s2, err, sizeof(err)),
                     LD_ERR_CONFIG);
    assert_non_null(strstr(err, "hash_bits"));
    ld_snapshot_destroy(s2);
    ld_trainer_destroy(t2);
    assert_int_equal(ld_trainer_champion_set(t, NULL), LD_OK);
    ld_trainer_destroy(t);
}

/* The scored callback hands on each matured example as it was queued,
 * features and source position included, with its scores. */
typedef struct seen {
    int calls;
    size_t n;
    uint32_t nnz[16], idx0[16];
    float val0[16], dense1[16], pred[16];
    char id[16][16];
    int32_t part[16];
    int64_t off[16], ltime[16], etime[16];
    ld_sample_type_t type[16];
} seen_t;

static void record_cb(void *opaque, const ld_scored_t *s, size_t n)
{
    seen_t *v = opaque;
    v->calls++;
    for (size_t i = 0; i < n && v->n < 16; i++, v->n++) {
        const ld_example_t *e = s[i].ex;
        assert_non_null(e);
        assert_int_equal(e->x.ndense, 2);
        assert_float_equal(e->label, s[i].label, 0);
        assert_float_equal(e->weight, s[i].weight, 0);
        assert_int_equal(e->event_time_ms, s[i].event_time_ms);
        v->nnz[v->n] = e->x.nnz;
        v->idx0[v->n] = e->x.nnz ? e->x.idx[0] : 0;
        v->val0[v->n] = e->x.nnz ? e->x.val[0] : 0;
        v->dense1[v->n] = e->x.dense[1];
        v->pred[v->n] = s[i].pred;
        snprintf(v->id[v->n], sizeof(v->id[0]), "%s",
                 e->event_id ? e->event_id : "(null)");
        v->part[v->n] = e->partition;
        v->off[v->n] = e->offset;
        v->ltime[v->n] = e->label_time_ms;
        v->etime[v->n] = e->event_time_ms;
        v->type[v->n] = e->sample_type;
    }
}

static void test_scored_examples(void **state)
{
    (void)state;
    ld_trainer_conf_t c;
    base_conf(&c);
    c.dense_dim = 2;
    c.batch_size = 4;
    ld_trainer_t *t = mk(&c);
    seen_t v;
    memset(&v, 0, sizeof(v));
    ld_trainer_set_scored_cb(t, record_cb, &v);
    /* 7 examples: #2 a fake_neg (not matured, not handed on), #4 without
     * event id; 4 + 3 after the flush. The caller's buffers are reused
     * between adds, as a decoder's would be. */
    for (int i = 0; i < 7; i++) {
        uint32_t idx[3] = {(uint32_t)(10 * i), (uint32_t)(10 * i + 1), 5};
        float val[3] = {(float)i + 0.5f, 1, 1}, dense[2] = {1, (float)-i};
        char id[16];
        snprintf(id, sizeof(id), "ev-%d", i);
        ld_example_t e =
            ex_of(idx, val, (uint32_t)(i % 3 + 1), dense, 2, (float)(i & 1));
        e.sample_type = i == 2  ? LD_SAMPLE_FAKE_NEG
                        : i & 1 ? LD_SAMPLE_POS
                                : LD_SAMPLE_DEFAULT_NEG;
        e.event_id = i == 4 ? NULL : id;
        e.partition = i % 2;
        e.offset = 100 + i;
        e.event_time_ms = 1000 + i;
        e.label_time_ms = 2000 + i;
        assert_int_equal(ld_trainer_add(t, &e), LD_OK);
        memset(id, 'x', sizeof(id) - 1); /* the trainer kept its copy */
        memset(idx, 0xff, sizeof(idx));
    }
    assert_int_equal(v.calls, 1);
    assert_int_equal(ld_trainer_flush(t), LD_OK);
    assert_int_equal(v.calls, 2);
    assert_int_equal(v.n, 6);
    static const int which[6] = {0, 1, 3, 4, 5, 6};
    for (int j = 0; j < 6; j++) {
        int i = which[j];
        char id[16];
        snprintf(id, sizeof(id), "ev-%d", i);
        assert_int_equal(v.nnz[j], (uint32_t)(i % 3 + 1));
        assert_int_equal(v.idx0[j], (uint32_t)(10 * i));
        assert_float_equal(v.val0[j], (float)i + 0.5f, 0);
        assert_float_equal(v.dense1[j], (float)-i, 0);
        assert_string_equal(v.id[j], i == 4 ? "(null)" : id);
        assert_int_equal(v.part[j], i % 2);
        assert_int_equal(v.off[j], 100 + i);
        assert_int_equal(v.etime[j], 1000 + i);
        assert_int_equal(v.ltime[j], 2000 + i);
        assert_int_equal(v.type[j],
                         i & 1 ? LD_SAMPLE_POS : LD_SAMPLE_DEFAULT_NEG);
    }
    /* A long id grows the arena; nothing else changes. */
    char big[5000];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    for (int i = 0; i < 4; i++) {
        ld_example_t e = ex_of(NULL, NULL, 0, (float[2]){0, 0}, 2, 1);
        e.event_id = big;
        assert_int_equal(ld_trainer_add(t, &e), LD_OK);
    }
    assert_int_equal(v.calls, 3);
    ld_trainer_destroy(t);
}

/* Parameter hash after a fixed stream, for a model and a BLAS thread
 * count; printed by the child process mode too. */
static void run_hash(int model, int threads, char hex[65])
{
    ld_trainer_conf_t c;
    snap_conf(&c, model, model == LD_MODEL_SOFTMAX ? LD_OPT_ADAM : LD_OPT_FTRL);
    c.blas_threads = threads;
    c.batch_size = 64;
    ld_trainer_t *t = mk(&c);
    stream(t, 123, 4000, model, 8);
    ld_snapshot_t *s = ld_trainer_snapshot(t);
    uint8_t h[32];
    ld_snapshot_params_sha256(s, h);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", h[i]);
    ld_snapshot_destroy(s);
    ld_trainer_destroy(t);
}

static void test_determinism(void **state)
{
    (void)state;
    for (int model = LD_MODEL_LOGISTIC; model <= LD_MODEL_SOFTMAX; model++) {
        char h1[65], h2[65], hc[65] = "", cmd[1024];
        run_hash(model, 1, h1);
        run_hash(model, 2, h2);
        assert_string_equal(h1, h2);
        /* Another process. */
        snprintf(cmd, sizeof(cmd), "'%s' --hash %d 1", self_path, model);
        FILE *p = popen(cmd, "r");
        assert_non_null(p);
        assert_non_null(fgets(hc, sizeof(hc), p));
        assert_int_equal(pclose(p), 0);
        assert_string_equal(h1, hc);
    }
}

int main(int argc, char **argv)
{
    self_path = argv[0];
    if (argc == 4 && strcmp(argv[1], "--hash") == 0) {
        char h[65];
        run_hash(atoi(argv[2]), atoi(argv[3]), h);
        fputs(h, stdout);
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conf_table),
        cmocka_unit_test(test_bad_conf),
        cmocka_unit_test(test_least_squares),
        cmocka_unit_test(test_dense_online_batch_invariance),
        cmocka_unit_test(test_dense_units_invariance),
        cmocka_unit_test(test_dense_rescale),
        cmocka_unit_test(test_dense_standard_offset_invariance),
        cmocka_unit_test(test_dense_standard_preserves),
        cmocka_unit_test(test_separable_logistic),
        cmocka_unit_test(test_softmax_mixture),
        cmocka_unit_test(test_ftrl_l1_zeros),
        cmocka_unit_test_teardown(test_ftrl_reference, ftrl_reference_teardown),
        cmocka_unit_test(test_gradients),
        cmocka_unit_test(test_auc_brute_force),
        cmocka_unit_test(test_window),
        cmocka_unit_test(test_prequential_and_fnw),
        cmocka_unit_test(test_reject_and_cut),
        cmocka_unit_test(test_snapshot_cow_and_resume),
        cmocka_unit_test(test_snapshot_shared),
        cmocka_unit_test(test_champion),
        cmocka_unit_test(test_scored_examples),
        cmocka_unit_test(test_determinism),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
