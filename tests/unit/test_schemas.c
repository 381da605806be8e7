/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of schemas/: protobuf round trips and golden wire bytes,
 * truncated and corrupt input, the example Avro schemas, and the JSON trigger
 * schema checked field for field against the TriggerEvent message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <avro.h>
#include <jansson.h>

#include "schemas/learnd.pb-c.h"

#define FIXTURES LD_TEST_DATA "/schemas"
#define SCHEMAS  LD_SOURCE_DIR "/schemas"
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* ---- helpers ------------------------------------------------------------ */

/* Reads a whole file; caller frees. Fails the test when it cannot. */
static uint8_t *slurp(const char *dir, const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open %s", path);
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    assert_non_null(buf);
    for (;;) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap)
            break;
        cap *= 2;
        buf = realloc(buf, cap);
        assert_non_null(buf);
    }
    assert_int_equal(ferror(f), 0);
    fclose(f);
    *len = n;
    return buf;
}

/* Packs any message; caller frees. */
static uint8_t *pack(const ProtobufCMessage *m, size_t *len)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n + 1);
    assert_non_null(buf);
    assert_int_equal(protobuf_c_message_pack(m, buf), n);
    *len = n;
    return buf;
}

static float le_f32(const uint8_t *p)
{
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                 (uint32_t)p[3] << 24;
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

static void put_le_f32(uint8_t *p, float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(u >> (8 * i));
}

/* Exact comparison: these values must survive the wire bit for bit. */
#define assert_exact(a, b) assert_true((a) == (b))

static void assert_bytes(ProtobufCBinaryData got, const uint8_t *want,
                         size_t len)
{
    assert_int_equal(got.len, len);
    assert_memory_equal(got.data, want, len);
}

static void assert_bytes_fill(ProtobufCBinaryData got, uint8_t fill, size_t len)
{
    assert_int_equal(got.len, len);
    for (size_t i = 0; i < len; i++)
        assert_int_equal(got.data[i], fill);
}

/* ---- Event -------------------------------------------------------------- */

static Learnd__V1__Event *build_event(void)
{
    static Learnd__V1__Event ev = LEARND__V1__EVENT__INIT;
    static Learnd__V1__Feature f[5] = {
        LEARND__V1__FEATURE__INIT, LEARND__V1__FEATURE__INIT,
        LEARND__V1__FEATURE__INIT, LEARND__V1__FEATURE__INIT,
        LEARND__V1__FEATURE__INIT};
    static Learnd__V1__Feature *fp[5];
    static Learnd__V1__StringList tags = LEARND__V1__STRING_LIST__INIT;
    static char *tagv[] = {"sports", "mobile"};

    f[0].name = "f0";
    f[0].value_case = LEARND__V1__FEATURE__VALUE_NUM;
    f[0].num = 0.25;
    f[1].name = "country";
    f[1].value_case = LEARND__V1__FEATURE__VALUE_STR;
    f[1].str = "DE";
    tags.n_values = NELEM(tagv);
    tags.values = tagv;
    f[2].name = "tags";
    f[2].value_case = LEARND__V1__FEATURE__VALUE_TAGS;
    f[2].tags = &tags;
    f[3].name = "ad_id";
    f[3].value_case = LEARND__V1__FEATURE__VALUE_INTEGER;
    f[3].integer = 987654321012;
    f[4].name = "returning";
    f[4].value_case = LEARND__V1__FEATURE__VALUE_BOOLEAN;
    f[4].boolean = 1;
    for (size_t i = 0; i < NELEM(f); i++)
        fp[i] = &f[i];
    ev.event_id = "imp-0001";
    ev.event_time_ms = 1767225600123;
    ev.n_features = NELEM(fp);
    ev.features = fp;
    return &ev;
}

static void check_event(const Learnd__V1__Event *ev)
{
    assert_non_null(ev);
    assert_string_equal(ev->event_id, "imp-0001");
    assert_int_equal(ev->event_time_ms, 1767225600123);
    assert_int_equal(ev->n_features, 5);
    Learnd__V1__Feature **f = ev->features;
    assert_string_equal(f[0]->name, "f0");
    assert_int_equal(f[0]->value_case, LEARND__V1__FEATURE__VALUE_NUM);
    assert_exact(f[0]->num, 0.25);
    assert_string_equal(f[1]->name, "country");
    assert_int_equal(f[1]->value_case, LEARND__V1__FEATURE__VALUE_STR);
    assert_string_equal(f[1]->str, "DE");
    assert_string_equal(f[2]->name, "tags");
    assert_int_equal(f[2]->value_case, LEARND__V1__FEATURE__VALUE_TAGS);
    assert_int_equal(f[2]->tags->n_values, 2);
    assert_string_equal(f[2]->tags->values[0], "sports");
    assert_string_equal(f[2]->tags->values[1], "mobile");
    assert_string_equal(f[3]->name, "ad_id");
    assert_int_equal(f[3]->value_case, LEARND__V1__FEATURE__VALUE_INTEGER);
    assert_int_equal(f[3]->integer, 987654321012);
    assert_string_equal(f[4]->name, "returning");
    assert_int_equal(f[4]->value_case, LEARND__V1__FEATURE__VALUE_BOOLEAN);
    assert_true(f[4]->boolean);
}

/* ---- Label -------------------------------------------------------------- */

static void test_label_roundtrip(void **state)
{
    (void)state;
    Learnd__V1__Label l = LEARND__V1__LABEL__INIT;
    l.event_id = "imp-0001";
    l.label_time_ms = 1767225612000;
    l.value = 1.0;
    size_t len;
    uint8_t *buf = pack(&l.base, &len);
    Learnd__V1__Label *u = learnd__v1__label__unpack(NULL, len, buf);
    assert_non_null(u);
    assert_string_equal(u->event_id, "imp-0001");
    assert_int_equal(u->label_time_ms, 1767225612000);
    assert_exact(u->value, 1.0);
    learnd__v1__label__free_unpacked(u, NULL);
    free(buf);
}

/* ---- LabelledExample ---------------------------------------------------- */

static Learnd__V1__LabelledExample *build_example(void)
{
    static Learnd__V1__LabelledExample ex = LEARND__V1__LABELLED_EXAMPLE__INIT;
    static uint32_t idx[] = {7, 1048575, 4194303};
    static float val[] = {1.0f, 1.0f, 0.5f};
    static float dense[] = {0.25f, -1.5f};

    ex.event_id = "imp-0001";
    ex.event_time_ms = 1767225600123;
    ex.label_time_ms = 1767225612000;
    ex.elapsed_ms = 11877;
    ex.label = 1.0f;
    ex.weight = 1.0f;
    ex.sample_type = LEARND__V1__SAMPLE_TYPE__SAMPLE_TYPE_DELAYED_POS;
    ex.partition = 3;
    ex.offset = 4242;
    ex.n_indices = NELEM(idx);
    ex.indices = idx;
    ex.n_values = NELEM(val);
    ex.values = val;
    ex.n_dense = NELEM(dense);
    ex.dense = dense;
    ex.decision_time_ms = 1767225900000;
    ex.topic = "events";
    return &ex;
}

static void check_example(const Learnd__V1__LabelledExample *ex)
{
    assert_non_null(ex);
    assert_string_equal(ex->event_id, "imp-0001");
    assert_int_equal(ex->event_time_ms, 1767225600123);
    assert_int_equal(ex->label_time_ms, 1767225612000);
    assert_int_equal(ex->elapsed_ms, 11877);
    assert_exact(ex->label, 1.0f);
    assert_exact(ex->weight, 1.0f);
    assert_int_equal(ex->sample_type,
                     LEARND__V1__SAMPLE_TYPE__SAMPLE_TYPE_DELAYED_POS);
    assert_int_equal(ex->partition, 3);
    assert_int_equal(ex->offset, 4242);
    assert_int_equal(ex->n_indices, 3);
    assert_int_equal(ex->indices[0], 7);
    assert_int_equal(ex->indices[1], 1048575);
    assert_int_equal(ex->indices[2], 4194303);
    assert_int_equal(ex->n_values, 3);
    assert_exact(ex->values[0], 1.0f);
    assert_exact(ex->values[1], 1.0f);
    assert_exact(ex->values[2], 0.5f);
    assert_int_equal(ex->n_dense, 2);
    assert_exact(ex->dense[0], 0.25f);
    assert_exact(ex->dense[1], -1.5f);
    assert_int_equal(ex->decision_time_ms, 1767225900000);
    assert_string_equal(ex->topic, "events");
}

/* The proto enum is pipeline/record.h's ld_sample_type_t shifted by one, so
 * that zero can mean "unset". */
static void test_sample_type_values(void **state)
{
    (void)state;
    assert_int_equal(LEARND__V1__SAMPLE_TYPE__SAMPLE_TYPE_UNSPECIFIED, 0);
    assert_int_equal(LEARND__V1__SAMPLE_TYPE__SAMPLE_TYPE_POS, 1);
    assert_int_equal(LEARND__V1__SAMPLE_TYPE__SAMPLE_TYPE_DEFAULT_NEG, 2);
    assert_int_equal(LEARND__V1__SAMPLE_TYPE__SAMPLE_TYPE_FAKE_NEG, 3);
    assert_int_equal(LEARND__V1__SAMPLE_TYPE__SAMPLE_TYPE_DELAYED_POS, 4);
}

/* ---- Checkpoint --------------------------------------------------------- */

static const float W[4] = {1.0f, -2.0f, 0.5f, 0.0f};
static const float BIAS[1] = {0.125f};
static const float FTRL_Z[4] = {0.5f, 0.0f, 0.0f, -0.25f};
static const float FTRL_N[4] = {4.0f, 0.0f, 0.0f, 1.0f};

static void set_tensor(Learnd__V1__Tensor *t, char *name, uint32_t *shape,
                       const float *v, size_t n, uint8_t *storage)
{
    learnd__v1__tensor__init(t);
    t->name = name;
    t->n_shape = 1;
    t->shape = shape;
    for (size_t i = 0; i < n; i++)
        put_le_f32(storage + 4 * i, v[i]);
    t->data.data = storage;
    t->data.len = 4 * n;
}

static void check_tensor(const Learnd__V1__Tensor *t, const char *name,
                         const float *v, size_t n)
{
    assert_non_null(t);
    assert_string_equal(t->name, name);
    assert_int_equal(t->n_shape, 1);
    assert_int_equal(t->shape[0], n);
    assert_int_equal(t->data.len, 4 * n);
    for (size_t i = 0; i < n; i++)
        assert_exact(le_f32(t->data.data + 4 * i), v[i]);
}

static Learnd__V1__Checkpoint *build_checkpoint(void)
{
    static Learnd__V1__Checkpoint ck = LEARND__V1__CHECKPOINT__INIT;
    static Learnd__V1__ModelSpec spec = LEARND__V1__MODEL_SPEC__INIT;
    static Learnd__V1__OptimizerSpec opt = LEARND__V1__OPTIMIZER_SPEC__INIT;
    static Learnd__V1__Lineage lin = LEARND__V1__LINEAGE__INIT;
    static Learnd__V1__OffsetRange rng[2];
    static Learnd__V1__OffsetRange *rngp[2];
    static Learnd__V1__PartitionPosition pos[2];
    static Learnd__V1__PartitionPosition *posp[2];
    static Learnd__V1__WatermarkAdvance wa =
        LEARND__V1__WATERMARK_ADVANCE__INIT;
    static Learnd__V1__WatermarkAdvance *wap[1];
    static Learnd__V1__PartitionOffset at[2];
    static Learnd__V1__PartitionOffset *atp[2];
    static Learnd__V1__ExampleCounts cnt = LEARND__V1__EXAMPLE_COUNTS__INIT;
    static Learnd__V1__ExampleCounts tot = LEARND__V1__EXAMPLE_COUNTS__INIT;
    static Learnd__V1__Tensor tens[2], otens[2];
    static Learnd__V1__Tensor *tensp[2], *otensp[2];
    static Learnd__V1__OptimizerState ost = LEARND__V1__OPTIMIZER_STATE__INIT;
    static Learnd__V1__Metrics met = LEARND__V1__METRICS__INIT;
    static Learnd__V1__Metrics cmet = LEARND__V1__METRICS__INIT;
    static uint32_t shape4 = 4, shape1 = 1;
    static uint8_t wdata[16], bdata[4], zdata[16], ndata[16];
    static uint8_t fmh[32], cfh[32], psh[32];

    memset(fmh, 0x11, sizeof(fmh));
    memset(cfh, 0xab, sizeof(cfh));
    memset(psh, 0xcd, sizeof(psh));

    opt.kind = LEARND__V1__OPTIMIZER_KIND__OPTIMIZER_KIND_FTRL;
    opt.learning_rate = 0.05;
    opt.l1 = 1.0;
    opt.l2 = 0.1;
    opt.beta = 1.0;
    spec.kind = LEARND__V1__MODEL_KIND__MODEL_KIND_LOGISTIC;
    spec.num_classes = 1;
    spec.hash_bits = 2;
    spec.dense_dim = 2;
    spec.optimizer = &opt;
    spec.hash_function = "murmur3_x86_32";
    spec.hash_seed = 42;
    spec.feature_map_hash = (ProtobufCBinaryData){sizeof(fmh), fmh};
    spec.init_seed = 7;

    for (int i = 0; i < 2; i++) {
        learnd__v1__offset_range__init(&rng[i]);
        learnd__v1__partition_position__init(&pos[i]);
        learnd__v1__partition_offset__init(&at[i]);
        rngp[i] = &rng[i];
        posp[i] = &pos[i];
        atp[i] = &at[i];
    }
    rng[0] = (Learnd__V1__OffsetRange){rng[0].base, "events", 0, 100, 199};
    rng[1] = (Learnd__V1__OffsetRange){rng[1].base, "labels", 0, 50, 120};
    pos[0] =
        (Learnd__V1__PartitionPosition){pos[0].base, "events", 0, 200, 180};
    pos[1] =
        (Learnd__V1__PartitionPosition){pos[1].base, "labels", 0, 121, 121};
    at[0] = (Learnd__V1__PartitionOffset){at[0].base, "events", 0, 200};
    at[1] = (Learnd__V1__PartitionOffset){at[1].base, "labels", 0, 121};
    wa.topic = "labels";
    wa.partition = 1;
    wa.wall_time_ms = 1767225700000;
    wa.watermark_ms = 1767225690000;
    wa.n_at = 2;
    wa.at = atp;
    wap[0] = &wa;
    cnt.pos = 10;
    cnt.default_neg = 80;
    cnt.delayed_pos = 2;
    cnt.late_labels_dropped = 1;
    cnt.dead_lettered = 3;
    tot.pos = 100;
    tot.default_neg = 800;
    tot.fake_neg = 5;
    tot.delayed_pos = 20;

    lin.model = "ctr";
    lin.version = 7;
    lin.parent_version = 6;
    lin.config_hash = (ProtobufCBinaryData){sizeof(cfh), cfh};
    lin.learnd_version = "0.1.0";
    lin.openblas_corename = "Haswell";
    lin.openblas_config =
        "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Haswell MAX_THREADS=64";
    lin.n_consumed = 2;
    lin.consumed = rngp;
    lin.n_resume = 2;
    lin.resume = posp;
    lin.n_watermark_advances = 1;
    lin.watermark_advances = wap;
    lin.counts = &cnt;
    lin.total_counts = &tot;
    lin.params_sha256 = (ProtobufCBinaryData){sizeof(psh), psh};
    lin.created_at_ms = 1767225700123;
    lin.trigger_id = "ctr-volume-000007";

    set_tensor(&tens[0], "w", &shape4, W, 4, wdata);
    set_tensor(&tens[1], "bias", &shape1, BIAS, 1, bdata);
    set_tensor(&otens[0], "ftrl.z", &shape4, FTRL_Z, 4, zdata);
    set_tensor(&otens[1], "ftrl.n", &shape4, FTRL_N, 4, ndata);
    for (int i = 0; i < 2; i++) {
        tensp[i] = &tens[i];
        otensp[i] = &otens[i];
    }
    ost.step = 1234;
    ost.n_tensors = 2;
    ost.tensors = otensp;

    met.examples = 2000;
    met.logloss = 0.4375;
    met.auc = 0.75;
    met.accuracy = 0.875;
    met.mean_prediction = 0.125;
    met.mean_label = 0.1;
    met.calibration = 1.25;
    met.window_start_ms = 1767222000000;
    met.window_end_ms = 1767225600000;
    cmet.examples = 2000;
    cmet.logloss = 0.5;
    cmet.auc = 0.7;

    ck.format_version = 1;
    ck.spec = &spec;
    ck.lineage = &lin;
    ck.n_tensors = 2;
    ck.tensors = tensp;
    ck.optimizer = &ost;
    ck.metrics = &met;
    ck.champion_metrics = &cmet;
    return &ck;
}

static void check_checkpoint(const Learnd__V1__Checkpoint *ck)
{
    assert_non_null(ck);
    assert_int_equal(ck->format_version, 1);

    const Learnd__V1__ModelSpec *s = ck->spec;
    assert_non_null(s);
    assert_int_equal(s->kind, LEARND__V1__MODEL_KIND__MODEL_KIND_LOGISTIC);
    assert_int_equal(s->num_classes, 1);
    assert_int_equal(s->hash_bits, 2);
    assert_int_equal(s->dense_dim, 2);
    assert_non_null(s->optimizer);
    assert_int_equal(s->optimizer->kind,
                     LEARND__V1__OPTIMIZER_KIND__OPTIMIZER_KIND_FTRL);
    assert_exact(s->optimizer->learning_rate, 0.05);
    assert_exact(s->optimizer->l1, 1.0);
    assert_exact(s->optimizer->l2, 0.1);
    assert_exact(s->optimizer->beta, 1.0);
    assert_exact(s->optimizer->beta1, 0.0);
    assert_int_equal(s->optimizer->schedule,
                     LEARND__V1__LR_SCHEDULE__LR_SCHEDULE_UNSPECIFIED);
    assert_string_equal(s->hash_function, "murmur3_x86_32");
    assert_int_equal(s->hash_seed, 42);
    assert_bytes_fill(s->feature_map_hash, 0x11, 32);
    assert_int_equal(s->init_seed, 7);

    const Learnd__V1__Lineage *l = ck->lineage;
    assert_non_null(l);
    assert_string_equal(l->model, "ctr");
    assert_int_equal(l->version, 7);
    assert_int_equal(l->parent_version, 6);
    assert_bytes_fill(l->config_hash, 0xab, 32);
    assert_string_equal(l->learnd_version, "0.1.0");
    assert_string_equal(l->openblas_corename, "Haswell");
    assert_string_equal(
        l->openblas_config,
        "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Haswell MAX_THREADS=64");
    assert_int_equal(l->n_consumed, 2);
    assert_string_equal(l->consumed[0]->topic, "events");
    assert_int_equal(l->consumed[0]->partition, 0);
    assert_int_equal(l->consumed[0]->first_offset, 100);
    assert_int_equal(l->consumed[0]->last_offset, 199);
    assert_string_equal(l->consumed[1]->topic, "labels");
    assert_int_equal(l->consumed[1]->first_offset, 50);
    assert_int_equal(l->consumed[1]->last_offset, 120);
    assert_int_equal(l->n_resume, 2);
    assert_string_equal(l->resume[0]->topic, "events");
    assert_int_equal(l->resume[0]->next_offset, 200);
    assert_int_equal(l->resume[0]->reread_from, 180);
    assert_string_equal(l->resume[1]->topic, "labels");
    assert_int_equal(l->resume[1]->next_offset, 121);
    assert_int_equal(l->resume[1]->reread_from, 121);
    assert_int_equal(l->n_watermark_advances, 1);
    const Learnd__V1__WatermarkAdvance *wa = l->watermark_advances[0];
    assert_string_equal(wa->topic, "labels");
    assert_int_equal(wa->partition, 1);
    assert_int_equal(wa->wall_time_ms, 1767225700000);
    assert_int_equal(wa->watermark_ms, 1767225690000);
    assert_int_equal(wa->n_at, 2);
    assert_string_equal(wa->at[0]->topic, "events");
    assert_int_equal(wa->at[0]->offset, 200);
    assert_string_equal(wa->at[1]->topic, "labels");
    assert_int_equal(wa->at[1]->offset, 121);
    assert_non_null(l->counts);
    assert_int_equal(l->counts->pos, 10);
    assert_int_equal(l->counts->default_neg, 80);
    assert_int_equal(l->counts->fake_neg, 0);
    assert_int_equal(l->counts->delayed_pos, 2);
    assert_int_equal(l->counts->late_labels_dropped, 1);
    assert_int_equal(l->counts->dead_lettered, 3);
    assert_non_null(l->total_counts);
    assert_int_equal(l->total_counts->pos, 100);
    assert_int_equal(l->total_counts->default_neg, 800);
    assert_int_equal(l->total_counts->fake_neg, 5);
    assert_int_equal(l->total_counts->delayed_pos, 20);
    assert_bytes_fill(l->params_sha256, 0xcd, 32);
    assert_int_equal(l->created_at_ms, 1767225700123);
    assert_string_equal(l->trigger_id, "ctr-volume-000007");

    assert_int_equal(ck->n_tensors, 2);
    check_tensor(ck->tensors[0], "w", W, 4);
    check_tensor(ck->tensors[1], "bias", BIAS, 1);
    assert_non_null(ck->optimizer);
    assert_int_equal(ck->optimizer->step, 1234);
    assert_int_equal(ck->optimizer->n_tensors, 2);
    check_tensor(ck->optimizer->tensors[0], "ftrl.z", FTRL_Z, 4);
    check_tensor(ck->optimizer->tensors[1], "ftrl.n", FTRL_N, 4);

    const Learnd__V1__Metrics *m = ck->metrics;
    assert_non_null(m);
    assert_int_equal(m->examples, 2000);
    assert_exact(m->logloss, 0.4375);
    assert_exact(m->auc, 0.75);
    assert_exact(m->accuracy, 0.875);
    assert_exact(m->rmse, 0.0);
    assert_exact(m->mean_prediction, 0.125);
    assert_exact(m->mean_label, 0.1);
    assert_exact(m->calibration, 1.25);
    assert_int_equal(m->window_start_ms, 1767222000000);
    assert_int_equal(m->window_end_ms, 1767225600000);
    assert_non_null(ck->champion_metrics);
    assert_int_equal(ck->champion_metrics->examples, 2000);
    assert_exact(ck->champion_metrics->logloss, 0.5);
    assert_exact(ck->champion_metrics->auc, 0.7);
}

/* ---- TriggerEvent ------------------------------------------------------- */

static const uint8_t TRIGGER_SHA[32] = {
    0x9f, 0x86, 0xd0, 0x81, 0x88, 0x4c, 0x7d, 0x65, 0x9a, 0x2f, 0xea,
    0xa0, 0xc5, 0x5a, 0xd0, 0x15, 0xa3, 0xbf, 0x4f, 0x1b, 0x2b, 0x0b,
    0x82, 0x2c, 0xd1, 0x5d, 0x6c, 0x15, 0xb0, 0xf0, 0x0a, 0x08};

static Learnd__V1__TriggerEvent *build_trigger(void)
{
    static Learnd__V1__TriggerEvent te = LEARND__V1__TRIGGER_EVENT__INIT;
    static Learnd__V1__TriggerEvent__Window win =
        LEARND__V1__TRIGGER_EVENT__WINDOW__INIT;
    static Learnd__V1__TriggerEvent__Model mod =
        LEARND__V1__TRIGGER_EVENT__MODEL__INIT;
    static Learnd__V1__TriggerEvent__Evidence ev[3];
    static Learnd__V1__TriggerEvent__Evidence *evp[3];
    static Learnd__V1__TriggerEvent__Decision dec =
        LEARND__V1__TRIGGER_EVENT__DECISION__INIT;
    static char *drifted[] = {"country", "f3"};

    win.start = 1767221940000;
    win.end = 1767225540000;
    win.watermark = 1767225535000;
    mod.name = "ctr-model";
    mod.champion_version = 6;
    mod.challenger_version = 7;
    mod.checkpoint_topic = "learnd.checkpoints";
    mod.opt_manifest_offset_case =
        LEARND__V1__TRIGGER_EVENT__MODEL__OPT_MANIFEST_OFFSET_MANIFEST_OFFSET;
    mod.manifest_offset = 1842;
    mod.path = "/var/lib/learnd/models/ctr-model/7.ckpt";
    mod.checkpoint_partition = 0;
    mod.checkpoint_sha256 =
        (ProtobufCBinaryData){sizeof(TRIGGER_SHA), (uint8_t *)TRIGGER_SHA};

    for (int i = 0; i < 3; i++) {
        learnd__v1__trigger_event__evidence__init(&ev[i]);
        evp[i] = &ev[i];
    }
    ev[0].metric = "feature:country";
    ev[0].statistic = "psi";
    ev[0].value = 0.31;
    ev[0].threshold = 0.25;
    ev[0].method = "threshold";
    ev[0].n = 50000;
    ev[1].metric = "feature:f3";
    ev[1].statistic = "ks";
    ev[1].value = 0.042;
    ev[1].threshold = 0.0025;
    ev[1].opt_p_value_case =
        LEARND__V1__TRIGGER_EVENT__EVIDENCE__OPT_P_VALUE_P_VALUE;
    ev[1].p_value = 1.2e-06;
    ev[1].method = "bonferroni";
    ev[1].n = 50000;
    ev[2].metric = "logloss";
    ev[2].statistic = "gate_delta";
    ev[2].value = -0.012;
    ev[2].threshold = 0.005;
    ev[2].method = "gate";
    ev[2].n = 20000;
    ev[2].opt_reference_case =
        LEARND__V1__TRIGGER_EVENT__EVIDENCE__OPT_REFERENCE_REFERENCE;
    ev[2].reference = 0.4471;

    dec.action = LEARND__V1__ACTION__ACTION_PUBLISH;
    dec.verdict = LEARND__V1__VERDICT__VERDICT_PASS;
    dec.reason = "2 of 25 features drifted; challenger logloss 0.4351 vs "
                 "champion 0.4471";

    te.trigger_id = "ctr-model-drift-000042";
    te.type = LEARND__V1__TRIGGER_TYPE__TRIGGER_TYPE_DRIFT;
    te.severity = LEARND__V1__SEVERITY__SEVERITY_ALERT;
    te.created_at = 1767225600123;
    te.event_time = 1767225540000;
    te.window = &win;
    te.model = &mod;
    te.n_evidence = 3;
    te.evidence = evp;
    te.n_drifted_features = 2;
    te.drifted_features = drifted;
    te.decision = &dec;
    te.idempotency_key = "ctr-model/drift/1767225540000/7";
    te.schema_version = 1;
    return &te;
}

static void check_trigger(const Learnd__V1__TriggerEvent *te)
{
    assert_non_null(te);
    assert_string_equal(te->trigger_id, "ctr-model-drift-000042");
    assert_int_equal(te->type, LEARND__V1__TRIGGER_TYPE__TRIGGER_TYPE_DRIFT);
    assert_int_equal(te->severity, LEARND__V1__SEVERITY__SEVERITY_ALERT);
    assert_int_equal(te->created_at, 1767225600123);
    assert_int_equal(te->event_time, 1767225540000);
    assert_non_null(te->window);
    assert_int_equal(te->window->start, 1767221940000);
    assert_int_equal(te->window->end, 1767225540000);
    assert_int_equal(te->window->watermark, 1767225535000);

    const Learnd__V1__TriggerEvent__Model *m = te->model;
    assert_non_null(m);
    assert_string_equal(m->name, "ctr-model");
    assert_int_equal(m->champion_version, 6);
    assert_int_equal(m->challenger_version, 7);
    assert_string_equal(m->checkpoint_topic, "learnd.checkpoints");
    assert_int_equal(
        m->opt_manifest_offset_case,
        LEARND__V1__TRIGGER_EVENT__MODEL__OPT_MANIFEST_OFFSET_MANIFEST_OFFSET);
    assert_int_equal(m->manifest_offset, 1842);
    assert_string_equal(m->path, "/var/lib/learnd/models/ctr-model/7.ckpt");
    assert_int_equal(m->checkpoint_partition, 0);
    assert_bytes(m->checkpoint_sha256, TRIGGER_SHA, sizeof(TRIGGER_SHA));

    assert_int_equal(te->n_evidence, 3);
    Learnd__V1__TriggerEvent__Evidence **e = te->evidence;
    assert_string_equal(e[0]->metric, "feature:country");
    assert_string_equal(e[0]->statistic, "psi");
    assert_exact(e[0]->value, 0.31);
    assert_exact(e[0]->threshold, 0.25);
    assert_int_equal(e[0]->opt_p_value_case,
                     LEARND__V1__TRIGGER_EVENT__EVIDENCE__OPT_P_VALUE__NOT_SET);
    assert_string_equal(e[0]->method, "threshold");
    assert_int_equal(e[0]->n, 50000);
    assert_int_equal(
        e[0]->opt_reference_case,
        LEARND__V1__TRIGGER_EVENT__EVIDENCE__OPT_REFERENCE__NOT_SET);
    assert_string_equal(e[1]->statistic, "ks");
    assert_int_equal(e[1]->opt_p_value_case,
                     LEARND__V1__TRIGGER_EVENT__EVIDENCE__OPT_P_VALUE_P_VALUE);
    assert_exact(e[1]->p_value, 1.2e-06);
    assert_string_equal(e[1]->method, "bonferroni");
    assert_string_equal(e[2]->metric, "logloss");
    assert_exact(e[2]->value, -0.012);
    assert_int_equal(
        e[2]->opt_reference_case,
        LEARND__V1__TRIGGER_EVENT__EVIDENCE__OPT_REFERENCE_REFERENCE);
    assert_exact(e[2]->reference, 0.4471);

    assert_int_equal(te->n_drifted_features, 2);
    assert_string_equal(te->drifted_features[0], "country");
    assert_string_equal(te->drifted_features[1], "f3");
    assert_non_null(te->decision);
    assert_int_equal(te->decision->action, LEARND__V1__ACTION__ACTION_PUBLISH);
    assert_int_equal(te->decision->verdict, LEARND__V1__VERDICT__VERDICT_PASS);
    assert_string_equal(te->decision->reason,
                        "2 of 25 features drifted; challenger logloss 0.4351 "
                        "vs champion 0.4471");
    assert_string_equal(te->idempotency_key, "ctr-model/drift/1767225540000/7");
    assert_int_equal(te->schema_version, 1);
}

/* ---- round trips and golden bytes -------------------------------------- */

/* Builds, packs and unpacks msg, checks the copy, and compares the bytes with
 * the fixture protoc (the reference implementation) encoded from the same
 * message in text form: a renumbered or retyped field fails here. */
#define ROUNDTRIP_AND_GOLDEN(type, lower, built, check, golden)                \
    do {                                                                       \
        size_t len_, glen_;                                                    \
        uint8_t *buf_ = pack(&(built)->base, &len_);                           \
        type *u_ = learnd__v1__##lower##__unpack(NULL, len_, buf_);            \
        check(u_);                                                             \
        learnd__v1__##lower##__free_unpacked(u_, NULL);                        \
        uint8_t *g_ = slurp(FIXTURES, golden, &glen_);                         \
        assert_int_equal(len_, glen_);                                         \
        assert_memory_equal(buf_, g_, len_);                                   \
        u_ = learnd__v1__##lower##__unpack(NULL, glen_, g_);                   \
        check(u_);                                                             \
        learnd__v1__##lower##__free_unpacked(u_, NULL);                        \
        free(g_);                                                              \
        free(buf_);                                                            \
    } while (0)

static void test_event_roundtrip(void **state)
{
    (void)state;
    ROUNDTRIP_AND_GOLDEN(Learnd__V1__Event, event, build_event(), check_event,
                         "event.bin");
}

static void test_example_roundtrip(void **state)
{
    (void)state;
    ROUNDTRIP_AND_GOLDEN(Learnd__V1__LabelledExample, labelled_example,
                         build_example(), check_example,
                         "labelled_example.bin");
}

static void test_checkpoint_roundtrip(void **state)
{
    (void)state;
    ROUNDTRIP_AND_GOLDEN(Learnd__V1__Checkpoint, checkpoint, build_checkpoint(),
                         check_checkpoint, "checkpoint.bin");
}

static void test_trigger_roundtrip(void **state)
{
    (void)state;
    ROUNDTRIP_AND_GOLDEN(Learnd__V1__TriggerEvent, trigger_event,
                         build_trigger(), check_trigger, "trigger_event.bin");
}

/* An alert-only trigger: the presence oneofs stay unset across the wire, so
 * "no manifest" is distinguishable from offset 0. */
static void test_trigger_unset_optionals(void **state)
{
    (void)state;
    Learnd__V1__TriggerEvent__Model mod =
        LEARND__V1__TRIGGER_EVENT__MODEL__INIT;
    Learnd__V1__TriggerEvent__Evidence ev =
        LEARND__V1__TRIGGER_EVENT__EVIDENCE__INIT;
    Learnd__V1__TriggerEvent__Evidence *evp = &ev;
    Learnd__V1__TriggerEvent__Decision dec =
        LEARND__V1__TRIGGER_EVENT__DECISION__INIT;
    Learnd__V1__TriggerEvent te = LEARND__V1__TRIGGER_EVENT__INIT;
    mod.name = "ctr-model";
    mod.champion_version = 6;
    mod.checkpoint_topic = "learnd.checkpoints";
    ev.metric = "logloss";
    ev.statistic = "relative_change";
    ev.value = 0.071;
    ev.threshold = 0.05;
    ev.opt_p_value_case =
        LEARND__V1__TRIGGER_EVENT__EVIDENCE__OPT_P_VALUE_P_VALUE;
    ev.p_value = 0.0; /* present and zero: must not read as absent */
    dec.action = LEARND__V1__ACTION__ACTION_ALERT;
    dec.verdict = LEARND__V1__VERDICT__VERDICT_SKIPPED;
    te.trigger_id = "t";
    te.type = LEARND__V1__TRIGGER_TYPE__TRIGGER_TYPE_PERFORMANCE;
    te.severity = LEARND__V1__SEVERITY__SEVERITY_WARN;
    te.model = &mod;
    te.n_evidence = 1;
    te.evidence = &evp;
    te.decision = &dec;

    size_t len;
    uint8_t *buf = pack(&te.base, &len);
    Learnd__V1__TriggerEvent *u =
        learnd__v1__trigger_event__unpack(NULL, len, buf);
    assert_non_null(u);
    assert_null(u->window);
    assert_int_equal(
        u->model->opt_manifest_offset_case,
        LEARND__V1__TRIGGER_EVENT__MODEL__OPT_MANIFEST_OFFSET__NOT_SET);
    assert_int_equal(u->model->challenger_version, 0);
    assert_string_equal(u->model->path, "");
    assert_int_equal(u->model->checkpoint_sha256.len, 0);
    assert_int_equal(u->evidence[0]->opt_p_value_case,
                     LEARND__V1__TRIGGER_EVENT__EVIDENCE__OPT_P_VALUE_P_VALUE);
    assert_exact(u->evidence[0]->p_value, 0.0);
    assert_int_equal(
        u->evidence[0]->opt_reference_case,
        LEARND__V1__TRIGGER_EVENT__EVIDENCE__OPT_REFERENCE__NOT_SET);
    assert_int_equal(u->n_drifted_features, 0);
    assert_int_equal(u->decision->verdict,
                     LEARND__V1__VERDICT__VERDICT_SKIPPED);
    learnd__v1__trigger_event__free_unpacked(u, NULL);
    free(buf);
}

/* A serialized Checkpoint cut into CheckpointChunks and glued back is the
 * same Checkpoint; the manifest describes the whole. */
static void test_chunks_and_manifest(void **state)
{
    (void)state;
    size_t len;
    uint8_t *ckbuf = pack(&build_checkpoint()->base, &len);
    const size_t chunk = 100;
    const uint32_t count = (uint32_t)((len + chunk - 1) / chunk);
    assert_true(count > 1);
    uint8_t *glued = malloc(len);
    assert_non_null(glued);
    size_t at = 0;

    for (uint32_t i = 0; i < count; i++) {
        Learnd__V1__CheckpointChunk c = LEARND__V1__CHECKPOINT_CHUNK__INIT;
        uint8_t sha[32];
        memset(sha, (int)i, sizeof(sha));
        size_t n = len - i * chunk < chunk ? len - i * chunk : chunk;
        c.model = "ctr";
        c.version = 7;
        c.index = i;
        c.count = count;
        c.data = (ProtobufCBinaryData){n, ckbuf + i * chunk};
        c.sha256 = (ProtobufCBinaryData){sizeof(sha), sha};
        size_t clen;
        uint8_t *cbuf = pack(&c.base, &clen);
        Learnd__V1__CheckpointChunk *u =
            learnd__v1__checkpoint_chunk__unpack(NULL, clen, cbuf);
        assert_non_null(u);
        assert_string_equal(u->model, "ctr");
        assert_int_equal(u->version, 7);
        assert_int_equal(u->index, i);
        assert_int_equal(u->count, count);
        assert_bytes(u->sha256, sha, sizeof(sha));
        assert_bytes(u->data, ckbuf + i * chunk, n);
        memcpy(glued + at, u->data.data, u->data.len);
        at += u->data.len;
        learnd__v1__checkpoint_chunk__free_unpacked(u, NULL);
        free(cbuf);
    }
    assert_int_equal(at, len);
    Learnd__V1__Checkpoint *ck =
        learnd__v1__checkpoint__unpack(NULL, at, glued);
    check_checkpoint(ck);
    learnd__v1__checkpoint__free_unpacked(ck, NULL);

    Learnd__V1__CheckpointManifest m = LEARND__V1__CHECKPOINT_MANIFEST__INIT;
    uint8_t sha[32], psha[32];
    memset(sha, 0x5a, sizeof(sha));
    memset(psha, 0xcd, sizeof(psha));
    m.model = "ctr";
    m.version = 7;
    m.total_size = len;
    m.sha256 = (ProtobufCBinaryData){sizeof(sha), sha};
    m.chunk_count = count;
    m.first_chunk_offset = 5000;
    m.topic = "learnd.checkpoints";
    m.partition = 0;
    m.created_at_ms = 1767225700123;
    m.parent_version = 6;
    m.params_sha256 = (ProtobufCBinaryData){sizeof(psha), psha};
    m.trigger_id = "ctr-volume-000007";
    size_t mlen;
    uint8_t *mbuf = pack(&m.base, &mlen);
    Learnd__V1__CheckpointManifest *um =
        learnd__v1__checkpoint_manifest__unpack(NULL, mlen, mbuf);
    assert_non_null(um);
    assert_string_equal(um->model, "ctr");
    assert_int_equal(um->version, 7);
    assert_int_equal(um->total_size, len);
    assert_bytes(um->sha256, sha, sizeof(sha));
    assert_int_equal(um->chunk_count, count);
    assert_int_equal(um->first_chunk_offset, 5000);
    assert_string_equal(um->topic, "learnd.checkpoints");
    assert_int_equal(um->partition, 0);
    assert_int_equal(um->created_at_ms, 1767225700123);
    assert_int_equal(um->parent_version, 6);
    assert_bytes(um->params_sha256, psha, sizeof(psha));
    assert_string_equal(um->trigger_id, "ctr-volume-000007");
    learnd__v1__checkpoint_manifest__free_unpacked(um, NULL);
    free(mbuf);
    free(glued);
    free(ckbuf);
}

/* The state topic's two record kinds, through the StateRecord envelope. */
static void test_state_records(void **state)
{
    (void)state;
    /* A block: 2 rows of "w" then 2 rows of "ftrl.z", little-endian. */
    uint8_t data[16];
    const float rows[4] = {1.0f, -2.0f, 0.5f, 0.0f};
    for (int i = 0; i < 4; i++)
        put_le_f32(data + 4 * i, rows[i]);
    Learnd__V1__StateBlock blk = LEARND__V1__STATE_BLOCK__INIT;
    blk.model = "ctr";
    blk.block_index = 3;
    blk.commit_seq = 99;
    blk.data = (ProtobufCBinaryData){sizeof(data), data};
    Learnd__V1__StateRecord rec = LEARND__V1__STATE_RECORD__INIT;
    rec.record_case = LEARND__V1__STATE_RECORD__RECORD_BLOCK;
    rec.block = &blk;
    size_t len;
    uint8_t *buf = pack(&rec.base, &len);
    Learnd__V1__StateRecord *u =
        learnd__v1__state_record__unpack(NULL, len, buf);
    assert_non_null(u);
    assert_int_equal(u->record_case, LEARND__V1__STATE_RECORD__RECORD_BLOCK);
    assert_string_equal(u->block->model, "ctr");
    assert_int_equal(u->block->block_index, 3);
    assert_int_equal(u->block->commit_seq, 99);
    assert_bytes(u->block->data, data, sizeof(data));
    learnd__v1__state_record__free_unpacked(u, NULL);
    free(buf);

    /* The header. */
    Learnd__V1__ResumeHeader h = LEARND__V1__RESUME_HEADER__INIT;
    Learnd__V1__Tensor bt[2], wt;
    Learnd__V1__Tensor *btp[2] = {&bt[0], &bt[1]}, *wtp = &wt;
    uint32_t shape = 4, one = 1;
    uint8_t bias[4];
    set_tensor(&bt[0], "w", &shape, NULL, 0, NULL);
    set_tensor(&bt[1], "ftrl.z", &shape, NULL, 0, NULL);
    set_tensor(&wt, "bias", &one, BIAS, 1, bias);
    Learnd__V1__PartitionPosition pp = LEARND__V1__PARTITION_POSITION__INIT;
    Learnd__V1__PartitionPosition *ppp = &pp;
    pp.topic = "events";
    pp.partition = 2;
    pp.next_offset = 1000;
    pp.reread_from = 900;
    Learnd__V1__Lineage lin = LEARND__V1__LINEAGE__INIT;
    lin.model = "ctr";
    lin.parent_version = 7;
    const uint8_t lab[] = {1, 0, 0, 0, 42};
    const uint8_t trig[] = {2, 0xff};
    h.format_version = 1;
    h.model = "ctr";
    h.commit_seq = 99;
    h.first_commit_seq = 90;
    h.committed_at_ms = 1767225800000;
    h.spec = build_checkpoint()->spec;
    h.block_size = 2;
    h.block_count = 2;
    h.n_block_tensors = 2;
    h.block_tensors = btp;
    h.n_tensors = 1;
    h.tensors = &wtp;
    h.optimizer_step = 1300;
    h.n_positions = 1;
    h.positions = &ppp;
    h.champion_version = 7;
    h.pending_lineage = &lin;
    h.labeling_state = (ProtobufCBinaryData){sizeof(lab), (uint8_t *)lab};
    h.triggers_state = (ProtobufCBinaryData){sizeof(trig), (uint8_t *)trig};
    Learnd__V1__StateRecord hrec = LEARND__V1__STATE_RECORD__INIT;
    hrec.record_case = LEARND__V1__STATE_RECORD__RECORD_HEADER;
    hrec.header = &h;
    buf = pack(&hrec.base, &len);
    u = learnd__v1__state_record__unpack(NULL, len, buf);
    assert_non_null(u);
    assert_int_equal(u->record_case, LEARND__V1__STATE_RECORD__RECORD_HEADER);
    const Learnd__V1__ResumeHeader *uh = u->header;
    assert_int_equal(uh->format_version, 1);
    assert_string_equal(uh->model, "ctr");
    assert_int_equal(uh->commit_seq, 99);
    assert_int_equal(uh->first_commit_seq, 90);
    assert_int_equal(uh->committed_at_ms, 1767225800000);
    assert_int_equal(uh->spec->hash_bits, 2);
    assert_int_equal(uh->spec->optimizer->kind,
                     LEARND__V1__OPTIMIZER_KIND__OPTIMIZER_KIND_FTRL);
    assert_int_equal(uh->block_size, 2);
    assert_int_equal(uh->block_count, 2);
    assert_int_equal(uh->n_block_tensors, 2);
    assert_string_equal(uh->block_tensors[0]->name, "w");
    assert_int_equal(uh->block_tensors[0]->shape[0], 4);
    assert_int_equal(uh->block_tensors[0]->data.len, 0);
    assert_string_equal(uh->block_tensors[1]->name, "ftrl.z");
    assert_int_equal(uh->n_tensors, 1);
    check_tensor(uh->tensors[0], "bias", BIAS, 1);
    assert_int_equal(uh->optimizer_step, 1300);
    assert_int_equal(uh->n_positions, 1);
    assert_string_equal(uh->positions[0]->topic, "events");
    assert_int_equal(uh->positions[0]->partition, 2);
    assert_int_equal(uh->positions[0]->next_offset, 1000);
    assert_int_equal(uh->positions[0]->reread_from, 900);
    assert_int_equal(uh->champion_version, 7);
    assert_string_equal(uh->pending_lineage->model, "ctr");
    assert_int_equal(uh->pending_lineage->parent_version, 7);
    assert_int_equal(uh->pipeline_state.len, 0);
    assert_bytes(uh->labeling_state, lab, sizeof(lab));
    assert_int_equal(uh->trainer_state.len, 0);
    assert_bytes(uh->triggers_state, trig, sizeof(trig));
    learnd__v1__state_record__free_unpacked(u, NULL);
    free(buf);
}

/* ---- truncated and corrupt input --------------------------------------- */

/* Offsets at which a top-level field starts, plus len: the only places a
 * protobuf message may be cut and still parse. Returns how many. */
static size_t field_boundaries(const uint8_t *buf, size_t len, uint8_t *is_b)
{
    size_t p = 0, n = 0;
    memset(is_b, 0, len + 1);
    while (p < len) {
        is_b[p] = 1;
        n++;
        uint64_t key = 0;
        for (unsigned s = 0;; s += 7) {
            key |= (uint64_t)(buf[p] & 0x7f) << s;
            if (!(buf[p++] & 0x80))
                break;
        }
        uint64_t v = 0;
        switch (key & 7) {
        case 0:
            while (buf[p++] & 0x80)
                ;
            break;
        case 1:
            p += 8;
            break;
        case 5:
            p += 4;
            break;
        case 2:
            for (unsigned s = 0;; s += 7) {
                v |= (uint64_t)(buf[p] & 0x7f) << s;
                if (!(buf[p++] & 0x80))
                    break;
            }
            p += (size_t)v;
            break;
        default:
            fail_msg("unexpected wire type %u", (unsigned)(key & 7));
        }
    }
    assert_int_equal(p, len);
    is_b[len] = 1;
    return n + 1;
}

/* Every prefix of buf parses iff it ends on a top-level field boundary;
 * every other cut returns NULL, without crashing or leaking (ASan build). */
static void check_truncations(const ProtobufCMessageDescriptor *d,
                              const uint8_t *buf, size_t len)
{
    uint8_t *is_b = malloc(len + 1);
    assert_non_null(is_b);
    size_t nb = field_boundaries(buf, len, is_b);
    size_t rejected = 0;
    for (size_t cut = 0; cut < len; cut++) {
        /* A fresh copy of exactly cut bytes, so ASan sees any overread. */
        uint8_t *copy = malloc(cut + 1);
        assert_non_null(copy);
        memcpy(copy, buf, cut);
        ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, cut, copy);
        if (is_b[cut]) {
            if (m == NULL)
                fail_msg("%s: prefix of %zu bytes at a field boundary "
                         "rejected",
                         d->name, cut);
            protobuf_c_message_free_unpacked(m, NULL);
        } else {
            if (m != NULL)
                fail_msg("%s: prefix of %zu/%zu bytes accepted", d->name, cut,
                         len);
            rejected++;
        }
        free(copy);
    }
    assert_int_equal(rejected, len + 1 - nb);
    assert_null(protobuf_c_message_unpack(d, NULL, len - 1, buf));
    free(is_b);
}

static void test_truncated(void **state)
{
    (void)state;
    const ProtobufCMessage *msgs[] = {
        &build_event()->base, &build_example()->base, &build_checkpoint()->base,
        &build_trigger()->base};
    for (size_t i = 0; i < NELEM(msgs); i++) {
        size_t len;
        uint8_t *buf = pack(msgs[i], &len);
        check_truncations(msgs[i]->descriptor, buf, len);
        free(buf);
    }
}

static void test_corrupt(void **state)
{
    (void)state;
    /* Checkpoint.tensors (field 4) claiming 4 GiB with 3 bytes behind. */
    const uint8_t huge_len[] = {0x22, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3};
    assert_null(
        learnd__v1__checkpoint__unpack(NULL, sizeof(huge_len), huge_len));
    /* A Tensor whose data (field 3) runs past the end of its parent. */
    const uint8_t nested[] = {0x22, 0x04, 0x1a, 0x08, 0, 0};
    assert_null(learnd__v1__checkpoint__unpack(NULL, sizeof(nested), nested));
    /* Wire types 6 and 7 do not exist. */
    const uint8_t bad_wire[] = {0x0f, 0x00};
    assert_null(
        learnd__v1__checkpoint__unpack(NULL, sizeof(bad_wire), bad_wire));
    /* A varint longer than 10 bytes. */
    const uint8_t long_varint[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                   0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    assert_null(
        learnd__v1__checkpoint__unpack(NULL, sizeof(long_varint), long_varint));
    /* protobuf-c 1.4 does not check UTF-8 in proto3 strings, and a NUL
     * inside one silently shortens the C string: decoders that need clean
     * text (the pipeline's dead-letter rules) must check it themselves. */
    const uint8_t bad_utf8[] = {0x0a, 0x04, 0xc3, 0x28, 0x00, 0x41};
    Learnd__V1__Event *ev =
        learnd__v1__event__unpack(NULL, sizeof(bad_utf8), bad_utf8);
    assert_non_null(ev);
    assert_int_equal(strlen(ev->event_id), 2);
    learnd__v1__event__free_unpacked(ev, NULL);
}

/* ---- Avro example schemas ---------------------------------------------- */

static avro_schema_t load_avsc(const char *name)
{
    size_t len;
    char *text = (char *)slurp(SCHEMAS, name, &len);
    avro_schema_t s = NULL;
    if (avro_schema_from_json_length(text, len, &s) != 0)
        fail_msg("%s: %s", name, avro_strerror());
    free(text);
    assert_non_null(s);
    assert_int_equal(avro_typeof(s), AVRO_RECORD);
    return s;
}

static void check_field(avro_schema_t rec, size_t i, const char *name,
                        avro_type_t type)
{
    const char *got = avro_schema_record_field_name(rec, (int)i);
    assert_non_null(got);
    assert_string_equal(got, name);
    avro_schema_t f = avro_schema_record_field_get_by_index(rec, (int)i);
    assert_non_null(f);
    if (avro_typeof(f) != type)
        fail_msg("field %s: type %s", name, avro_schema_type_name(f));
}

static void test_avro_event(void **state)
{
    (void)state;
    avro_schema_t s = load_avsc("event.avsc");
    assert_string_equal(avro_schema_name(s), "AdImpression");
    assert_string_equal(avro_schema_namespace(s), "io.learnd.example");
    assert_int_equal(avro_schema_record_size(s), 2 + 20 + 5 + 1);
    size_t i = 0;
    check_field(s, i++, "event_id", AVRO_STRING);
    check_field(s, i++, "event_time", AVRO_INT64);
    for (int k = 0; k < 20; k++) {
        char name[8];
        snprintf(name, sizeof(name), "f%d", k);
        check_field(s, i++, name, AVRO_FLOAT);
    }
    check_field(s, i++, "country", AVRO_STRING);
    check_field(s, i++, "ad_id", AVRO_STRING);
    check_field(s, i++, "device", AVRO_STRING);
    check_field(s, i++, "publisher", AVRO_STRING);
    check_field(s, i, "user_segment", AVRO_UNION);
    avro_schema_t u = avro_schema_record_field_get_by_index(s, (int)i++);
    assert_int_equal(avro_schema_union_size(u), 2);
    assert_int_equal(avro_typeof(avro_schema_union_branch(u, 0)), AVRO_NULL);
    assert_int_equal(avro_typeof(avro_schema_union_branch(u, 1)), AVRO_STRING);
    check_field(s, i, "tags", AVRO_ARRAY);
    avro_schema_t a = avro_schema_record_field_get_by_index(s, (int)i++);
    assert_int_equal(avro_typeof(avro_schema_array_items(a)), AVRO_STRING);
    assert_int_equal(i, avro_schema_record_size(s));
    avro_schema_decref(s);
}

static void test_avro_label(void **state)
{
    (void)state;
    avro_schema_t s = load_avsc("label.avsc");
    assert_string_equal(avro_schema_name(s), "AdClick");
    assert_string_equal(avro_schema_namespace(s), "io.learnd.example");
    assert_int_equal(avro_schema_record_size(s), 4);
    check_field(s, 0, "event_id", AVRO_STRING);
    check_field(s, 1, "label_time", AVRO_INT64);
    check_field(s, 2, "clicked", AVRO_BOOLEAN);
    check_field(s, 3, "value", AVRO_DOUBLE);
    avro_schema_decref(s);
}

/* ---- trigger.schema.json vs TriggerEvent -------------------------------- */

static json_t *load_json(const char *dir, const char *name)
{
    char path[512];
    json_error_t err;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    if (j == NULL)
        fail_msg("%s:%d:%d: %s", path, err.line, err.column, err.text);
    return j;
}

/* Follows "$ref": "#/$defs/<name>" (the only form the schema uses). */
static json_t *deref(json_t *root, json_t *node)
{
    json_t *ref = json_object_get(node, "$ref");
    if (ref == NULL)
        return node;
    const char *r = json_string_value(ref);
    assert_non_null(r);
    assert_int_equal(strncmp(r, "#/$defs/", 8), 0);
    json_t *t = json_object_get(json_object_get(root, "$defs"), r + 8);
    if (t == NULL)
        fail_msg("dangling $ref %s", r);
    return t;
}

/* The enum prefix of a protobuf enum: its UNSPECIFIED value's name without
 * "UNSPECIFIED" ("TRIGGER_TYPE_"). */
static void enum_prefix(const ProtobufCEnumDescriptor *e, char *buf,
                        size_t size)
{
    const ProtobufCEnumValue *z = protobuf_c_enum_descriptor_get_value(e, 0);
    assert_non_null(z);
    const char *u = strstr(z->name, "UNSPECIFIED");
    assert_non_null(u);
    assert_true((size_t)(u - z->name) < size);
    snprintf(buf, size, "%.*s", (int)(u - z->name), z->name);
}

/* JSON enum value -> protobuf enum value ("drift" -> TRIGGER_TYPE_DRIFT). */
static const ProtobufCEnumValue *
enum_from_json(const ProtobufCEnumDescriptor *e, const char *s)
{
    char name[128];
    enum_prefix(e, name, sizeof(name));
    size_t n = strlen(name);
    for (const char *p = s; *p != '\0' && n + 1 < sizeof(name); p++)
        name[n++] = (char)toupper((unsigned char)*p);
    name[n] = '\0';
    return protobuf_c_enum_descriptor_get_value_by_name(e, name);
}

static void check_schema_node(json_t *root, json_t *node,
                              const ProtobufCMessageDescriptor *d)
{
    node = deref(root, node);
    assert_true(json_is_false(json_object_get(node, "additionalProperties")));
    json_t *props = json_object_get(node, "properties");
    json_t *req = json_object_get(node, "required");
    assert_non_null(props);
    assert_non_null(req);
    /* Same field names both ways, and every field is required in JSON. */
    assert_int_equal(json_object_size(props), d->n_fields);
    assert_int_equal(json_array_size(req), d->n_fields);
    size_t i;
    json_t *v;
    json_array_foreach(req, i, v)
    {
        if (protobuf_c_message_descriptor_get_field_by_name(
                d, json_string_value(v)) == NULL)
            fail_msg("%s: JSON requires %s, proto has no such field", d->name,
                     json_string_value(v));
    }
    for (i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        json_t *p = json_object_get(props, f->name);
        if (p == NULL)
            fail_msg("%s.%s missing from trigger.schema.json", d->name,
                     f->name);
        p = deref(root, p);
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            assert_string_equal(json_string_value(json_object_get(p, "type")),
                                "array");
            p = deref(root, json_object_get(p, "items"));
            assert_non_null(p);
        }
        if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
            check_schema_node(root, p, f->descriptor);
        } else if (f->type == PROTOBUF_C_TYPE_ENUM) {
            const ProtobufCEnumDescriptor *e = f->descriptor;
            json_t *en = json_object_get(p, "enum");
            assert_non_null(en);
            /* Every proto value but UNSPECIFIED, and nothing else. */
            if (json_array_size(en) != e->n_values - 1)
                fail_msg("%s.%s: %zu JSON values, %u proto values", d->name,
                         f->name, json_array_size(en), e->n_values - 1);
            size_t k;
            json_t *ev;
            json_array_foreach(en, k, ev)
            {
                const ProtobufCEnumValue *pv =
                    enum_from_json(e, json_string_value(ev));
                if (pv == NULL || pv->value == 0)
                    fail_msg("%s.%s: JSON value %s has no proto value", d->name,
                             f->name, json_string_value(ev));
            }
        }
    }
}

static void test_trigger_schema_matches_proto(void **state)
{
    (void)state;
    json_t *root = load_json(SCHEMAS, "trigger.schema.json");
    assert_string_equal(json_string_value(json_object_get(root, "$schema")),
                        "https://json-schema.org/draft/2020-12/schema");
    check_schema_node(root, root, &learnd__v1__trigger_event__descriptor);
    json_decref(root);
}

static void hex(const ProtobufCBinaryData *b, char *out)
{
    for (size_t i = 0; i < b->len; i++)
        sprintf(out + 2 * i, "%02x", b->data[i]);
    out[2 * b->len] = '\0';
}

/* Compares a JSON trigger value with the protobuf message, by the mapping of
 * trigger.schema.json: same names; enums by suffix; bytes as lower-case hex;
 * null for an unset oneof and for 0 / "" / empty bytes. */
static void check_json_vs_proto(json_t *j, const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    assert_true(json_is_object(j));
    assert_int_equal(json_object_size(j), d->n_fields);
    for (size_t i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        json_t *v = json_object_get(j, f->name);
        const char *at = (const char *)m + f->offset;
        if (v == NULL)
            fail_msg("%s.%s missing in JSON", d->name, f->name);
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            uint32_t which;
            memcpy(&which, (const char *)m + f->quantifier_offset,
                   sizeof(which));
            if (which != f->id) {
                assert_true(json_is_null(v));
                continue;
            }
        }
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n;
            memcpy(&n, (const char *)m + f->quantifier_offset, sizeof(n));
            assert_true(json_is_array(v));
            assert_int_equal(json_array_size(v), n);
            for (size_t k = 0; k < n; k++) {
                json_t *e = json_array_get(v, k);
                if (f->type == PROTOBUF_C_TYPE_STRING)
                    assert_string_equal(json_string_value(e),
                                        (*(char *const *const *)at)[k]);
                else if (f->type == PROTOBUF_C_TYPE_MESSAGE)
                    check_json_vs_proto(
                        e, (*(ProtobufCMessage *const *const *)at)[k]);
                else
                    fail_msg("%s.%s: unhandled repeated type", d->name,
                             f->name);
            }
            continue;
        }
        switch (f->type) {
        case PROTOBUF_C_TYPE_STRING: {
            const char *s = *(char *const *)at;
            if (json_is_null(v))
                assert_string_equal(s, "");
            else
                assert_string_equal(json_string_value(v), s);
            break;
        }
        case PROTOBUF_C_TYPE_BYTES: {
            const ProtobufCBinaryData *b = (const ProtobufCBinaryData *)at;
            char h[2 * 64 + 1];
            assert_true(b->len <= 64);
            hex(b, h);
            if (json_is_null(v))
                assert_int_equal(b->len, 0);
            else
                assert_string_equal(json_string_value(v), h);
            break;
        }
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_UINT64: {
            int64_t x;
            memcpy(&x, at, sizeof(x));
            if (json_is_null(v))
                assert_int_equal(x, 0);
            else
                assert_int_equal(json_integer_value(v), x);
            break;
        }
        case PROTOBUF_C_TYPE_INT32:
        case PROTOBUF_C_TYPE_UINT32: {
            int32_t x;
            memcpy(&x, at, sizeof(x));
            if (json_is_null(v))
                assert_int_equal(x, 0);
            else
                assert_int_equal(json_integer_value(v), x);
            break;
        }
        case PROTOBUF_C_TYPE_DOUBLE: {
            double x;
            memcpy(&x, at, sizeof(x));
            assert_true(json_is_number(v));
            assert_exact(json_number_value(v), x);
            break;
        }
        case PROTOBUF_C_TYPE_ENUM: {
            int x;
            memcpy(&x, at, sizeof(x));
            const ProtobufCEnumValue *pv =
                enum_from_json(f->descriptor, json_string_value(v));
            assert_non_null(pv);
            assert_int_equal(pv->value, x);
            break;
        }
        case PROTOBUF_C_TYPE_MESSAGE: {
            const ProtobufCMessage *sub = *(ProtobufCMessage *const *)at;
            if (json_is_null(v))
                assert_null(sub);
            else
                check_json_vs_proto(v, sub);
            break;
        }
        default:
            fail_msg("%s.%s: unhandled type %d", d->name, f->name,
                     (int)f->type);
        }
    }
}

/* trigger-valid.json (checked against the JSON Schema by ctest
 * schemas_trigger_jsonschema) and trigger_event.bin are the same event. */
static void test_trigger_json_fixture_is_golden_event(void **state)
{
    (void)state;
    json_t *j = load_json(FIXTURES, "trigger-valid.json");
    size_t len;
    uint8_t *buf = slurp(FIXTURES, "trigger_event.bin", &len);
    Learnd__V1__TriggerEvent *te =
        learnd__v1__trigger_event__unpack(NULL, len, buf);
    assert_non_null(te);
    check_json_vs_proto(j, &te->base);
    learnd__v1__trigger_event__free_unpacked(te, NULL);
    free(buf);
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_event_roundtrip),
        cmocka_unit_test(test_label_roundtrip),
        cmocka_unit_test(test_example_roundtrip),
        cmocka_unit_test(test_sample_type_values),
        cmocka_unit_test(test_checkpoint_roundtrip),
        cmocka_unit_test(test_chunks_and_manifest),
        cmocka_unit_test(test_trigger_roundtrip),
        cmocka_unit_test(test_trigger_unset_optionals),
        cmocka_unit_test(test_state_records),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_corrupt),
        cmocka_unit_test(test_avro_event),
        cmocka_unit_test(test_avro_label),
        cmocka_unit_test(test_trigger_schema_matches_proto),
        cmocka_unit_test(test_trigger_json_fixture_is_golden_event),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
