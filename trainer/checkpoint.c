/* SPDX-License-Identifier: Apache-2.0 */
/* Checkpoint encode/decode with every length and checksum validated, chunks
 * and manifest for the checkpoints topic, and the local model store. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cblas.h>

#include "common/pbwire.h"
#include "trainer/checkpoint.h"
#include "trainer/ckpt_internal.h"
#include "trainer/internal.h"

/* ---- Config ------------------------------------------------------------- */

#define OFF(f) offsetof(ld_ckpt_conf_t, f)

static const ld_conf_row_t rows[] = {
    {"dir", LD_CONF_STRING, OFF(dir), "/var/lib/learnd/models", 0, 0, NULL,
     "Local model store: checkpoints go to <dir>/<model>/<version>.ckpt"},
    {"keep", LD_CONF_INT, OFF(keep), "5", 1, 100000, NULL,
     "Newest checkpoint versions kept in the local store per model"},
    {"chunk_size", LD_CONF_SIZE, OFF(chunk_size), "900KiB", 1024,
     LD_CKPT_MAX_CHUNK, NULL,
     "Checkpoint bytes per CheckpointChunk record on the checkpoints topic"},
    {"delta_every", LD_CONF_INT, OFF(delta_every), "1", 1, 100000, NULL,
     "On the checkpoints topic, every Nth published version is a full "
     "checkpoint and those between are deltas of the rows changed since the "
     "version before (docs/OPERATIONS.md, \"Following delta checkpoints\"); "
     "1: every version full. The local store keeps full checkpoints"},
    {"warm_start", LD_CONF_BOOL, OFF(warm_start), "true", 0, 0, NULL,
     "Start from the newest stored checkpoint (false: from scratch)"},
    {"manifest_secret", LD_CONF_STRING, OFF(manifest_secret), "", 0, 0, NULL,
     "Key (16 bytes or more; give it as ${ENV}) of an HMAC-SHA256 over each "
     "CheckpointManifest, so deployers can check a checkpoint's origin; "
     "empty: manifests are not signed"},
};

const ld_conf_section_t ld_ckpt_conf_section = {
    "checkpoint", "Checkpoint files, chunking and warm start",
    LD_CONF_ROWS(rows)};

struct ld_ckpt {
    Learnd__V1__Checkpoint *msg;
    uint8_t sha[32];
    size_t size;
    int head; /* sparse tensors empty: a head or a delta */
};

/* ---- Encode ------------------------------------------------------------- */

static const char *const param_names[3] = {"w", "dense_w", "bias"};

/* Shapes of the three parameter tensors. */
static uint32_t shape_of(const ld_spec_t *sp, int which, uint32_t shape[2])
{
    uint32_t nslots = 1u << sp->hash_bits;
    switch (which) {
    case 0:
        shape[0] = nslots;
        shape[1] = sp->k;
        return sp->k > 1 ? 2 : 1;
    case 1:
        shape[0] = sp->k > 1 ? sp->k : sp->dense_dim;
        shape[1] = sp->dense_dim;
        return sp->k > 1 ? 2 : 1;
    default:
        shape[0] = sp->k;
        return 1;
    }
}

static size_t count_of(const ld_spec_t *sp, int which)
{
    size_t nslots = (size_t)1 << sp->hash_bits;
    return which == 0 ? nslots * sp->k
                      : (which == 1 ? (size_t)sp->k * sp->dense_dim : sp->k);
}

/* Copies plane p of tensor `which` out of the snapshot's layouts. */
static void extract(const ld_snapshot_t *s, int which, uint32_t p, float *dst)
{
    const ld_spec_t *sp = &s->spec;
    size_t d1 = sp->dense_dim + 1, plane = sp->k * d1;
    if (which == 0) {
        size_t n = count_of(sp, 0);
        const float *src = s->sp + p;
        for (size_t i = 0; i < n; i++)
            dst[i] = src[i * sp->s];
    } else if (which == 1) {
        for (uint32_t k = 0; k < sp->k; k++)
            memcpy(dst + (size_t)k * sp->dense_dim, s->dn + p * plane + k * d1,
                   sp->dense_dim * sizeof(float));
    } else {
        for (uint32_t k = 0; k < sp->k; k++)
            dst[k] = s->dn[p * plane + k * d1 + sp->dense_dim];
    }
}

static void insert(ld_snapshot_t *s, int which, uint32_t p, const uint8_t *src)
{
    const ld_spec_t *sp = &s->spec;
    size_t d1 = sp->dense_dim + 1, plane = sp->k * d1;
    if (which == 0) {
        size_t n = count_of(sp, 0);
        float *dst = s->sp + p;
        for (size_t i = 0; i < n; i++)
            memcpy(&dst[i * sp->s], src + 4 * i, 4);
    } else if (which == 1) {
        /* dense_dim 0: the data is empty, NULL once unpacked */
        for (uint32_t k = 0; k < sp->k && sp->dense_dim; k++)
            memcpy(s->dn + p * plane + k * d1,
                   src + (size_t)4 * k * sp->dense_dim,
                   sp->dense_dim * sizeof(float));
    } else {
        for (uint32_t k = 0; k < sp->k; k++)
            memcpy(&s->dn[p * plane + k * d1 + sp->dense_dim], src + 4 * k, 4);
    }
}

static void metrics_to_pb(const ld_trainer_metrics_t *m,
                          Learnd__V1__Metrics *pb)
{
    learnd__v1__metrics__init(pb);
    pb->examples = m->examples;
    pb->logloss = m->logloss;
    pb->auc = m->auc;
    pb->accuracy = m->accuracy;
    pb->rmse = m->rmse;
    pb->mean_prediction = m->mean_prediction;
    pb->mean_label = m->mean_label;
    pb->calibration = m->calibration;
    pb->window_start_ms = m->window_start_ms;
    pb->window_end_ms = m->window_end_ms;
}

static void counts_to_pb(const uint64_t c[LD_SAMPLE__COUNT],
                         const Learnd__V1__ExampleCounts *extra,
                         Learnd__V1__ExampleCounts *pb)
{
    learnd__v1__example_counts__init(pb);
    pb->pos = c[LD_SAMPLE_POS];
    pb->default_neg = c[LD_SAMPLE_DEFAULT_NEG];
    pb->fake_neg = c[LD_SAMPLE_FAKE_NEG];
    pb->delayed_pos = c[LD_SAMPLE_DELAYED_POS];
    if (extra) {
        pb->late_labels_dropped = extra->late_labels_dropped;
        pb->dead_lettered = extra->dead_lettered;
    }
}

/* The ModelSpec (and its OptimizerSpec) of sp, with meta's hash fields;
 * strings borrowed. Hyperparameters the optimizer does not use stay 0. */
static void spec_to_pb(const ld_spec_t *sp, const ld_ckpt_meta_t *meta,
                       Learnd__V1__OptimizerSpec *ospec,
                       Learnd__V1__ModelSpec *mspec)
{
    learnd__v1__optimizer_spec__init(ospec);
    ospec->kind = (Learnd__V1__OptimizerKind)(sp->opt + 1);
    ospec->dense_learning_rate = sp->dense_lr;
    ospec->dense_norm = sp->dense_norm == LD_DNORM_STANDARD
                            ? LEARND__V1__DENSE_NORM__DENSE_NORM_STANDARD
                        : sp->dense_norm == LD_DNORM_MAXABS
                            ? LEARND__V1__DENSE_NORM__DENSE_NORM_MAXABS
                            : LEARND__V1__DENSE_NORM__DENSE_NORM_NONE;
    ospec->learning_rate = sp->lr;
    ospec->l1 = sp->l1;
    ospec->l2 = sp->l2;
    if (sp->opt == LD_OPT_FTRL)
        ospec->beta = sp->beta;
    if (sp->opt == LD_OPT_ADAGRAD)
        ospec->initial_accumulator = sp->init_acc;
    if (sp->opt == LD_OPT_ADAGRAD || sp->opt == LD_OPT_ADAM)
        ospec->epsilon = sp->eps;
    if (sp->opt == LD_OPT_ADAM) {
        ospec->beta1 = sp->beta1;
        ospec->beta2 = sp->beta2;
    }
    if (sp->opt == LD_OPT_SGD) {
        ospec->schedule = (Learnd__V1__LrSchedule)(sp->schedule + 1);
        ospec->decay = sp->decay;
        ospec->power_t = sp->power_t;
    }

    learnd__v1__model_spec__init(mspec);
    mspec->kind = (Learnd__V1__ModelKind)(sp->model + 1);
    mspec->num_classes = sp->k;
    mspec->hash_bits = sp->hash_bits;
    mspec->dense_dim = sp->dense_dim;
    mspec->optimizer = ospec;
    mspec->hash_function =
        (char *)(meta->hash_function ? meta->hash_function : "");
    mspec->hash_seed = meta->hash_seed;
    if (meta->feature_map_hash) {
        mspec->feature_map_hash.data = (uint8_t *)meta->feature_map_hash;
        mspec->feature_map_hash.len = 32;
    }
}

/* The Lineage of a checkpoint from meta (its ranges, positions and
 * advances borrowed), the counts and the parameter hash (32 bytes; left
 * out of a head, which has no whole parameters: whole = 0). */
static void lineage_to_pb(const ld_ckpt_meta_t *meta, int whole,
                          Learnd__V1__ExampleCounts *counts,
                          Learnd__V1__ExampleCounts *total, uint8_t *params_sha,
                          Learnd__V1__Lineage *lin)
{
    const Learnd__V1__Lineage *ml = meta->lineage;
    learnd__v1__lineage__init(lin);
    lin->model = (char *)meta->model;
    lin->version = meta->version;
    lin->parent_version = meta->parent_version;
    if (meta->config_hash) {
        lin->config_hash.data = (uint8_t *)meta->config_hash;
        lin->config_hash.len = 32;
    }
    lin->learnd_version =
        (char *)(meta->learnd_version ? meta->learnd_version : "");
    lin->openblas_corename = (char *)ld_trainer_blas_core();
    const char *bc = openblas_get_config();
    lin->openblas_config = (char *)(bc ? bc : "");
    if (ml) {
        lin->n_consumed = ml->n_consumed;
        lin->consumed = ml->consumed;
        lin->n_resume = ml->n_resume;
        lin->resume = ml->resume;
        lin->n_watermark_advances = ml->n_watermark_advances;
        lin->watermark_advances = ml->watermark_advances;
    }
    lin->counts = counts;
    lin->total_counts = total;
    lin->params_sha256.data = params_sha;
    lin->params_sha256.len = whole ? 32 : 0; /* a head has no whole params */
    lin->created_at_ms = meta->created_at_ms;
    lin->trigger_id = (char *)(meta->trigger_id ? meta->trigger_id : "");
}

/* The dense normalization's optimizer tensors of s, appended to
 * accs[*n...]: the scales [D] when D > 0, the statistics [3, D] under
 * dense_norm standard. shapes (3 entries: D, 3, D) must outlive them. */
static void dense_norm_to_pb(const ld_snapshot_t *s, uint32_t shapes[3],
                             Learnd__V1__Tensor *scale,
                             Learnd__V1__Tensor *stats,
                             Learnd__V1__Tensor **accs, size_t *n)
{
    uint32_t dd = s->spec.dense_dim;
    if (!dd)
        return;
    learnd__v1__tensor__init(scale);
    scale->name = (char *)LD_CKPT_DENSE_SCALE;
    scale->n_shape = 1;
    scale->shape = &shapes[0];
    scale->data.data = (uint8_t *)s->dscale;
    scale->data.len = dd * sizeof(float);
    accs[(*n)++] = scale;
    if (s->spec.dense_norm != LD_DNORM_STANDARD)
        return;
    learnd__v1__tensor__init(stats);
    stats->name = (char *)LD_CKPT_DENSE_STATS;
    stats->n_shape = 2;
    stats->shape = &shapes[1];
    stats->data.data = (uint8_t *)s->dstat;
    stats->data.len = 3 * (size_t)dd * sizeof(float);
    accs[(*n)++] = stats;
}

ld_err_t ld_ckpt_encode(const ld_snapshot_t *s, const ld_ckpt_meta_t *meta,
                        ld_buf_t *out)
{
    const ld_spec_t *sp = &s->spec;
    ld_err_t rc = LD_ERR_NOMEM;
    float *planes[9] = {0};
    char names[9][48];
    uint32_t shapes[9][2];
    Learnd__V1__Tensor tens[9], *params[3], *accs[8], scale, stats;
    uint8_t params_sha[32];
    memset(out, 0, sizeof(*out));
    if (!meta || !meta->model || !meta->model[0])
        return LD_ERR_INVAL;

    /* Tensors: plane p of parameter `which` is entry p * 3 + which. */
    ld_sha256_t h;
    ld_sha256_init(&h);
    for (uint32_t p = 0; p < sp->s; p++) {
        for (int which = 0; which < 3; which++) {
            size_t e = p * 3 + (size_t)which, n = count_of(sp, which);
            if (which == 0 && (!s->sp || meta->delta))
                n = 0; /* a head or delta: the sparse rows go elsewhere */
            planes[e] = malloc(n ? n * sizeof(float) : 1);
            if (!planes[e])
                goto err;
            if (n)
                extract(s, which, p, planes[e]);
            if (p == 0) {
                snprintf(names[e], sizeof(names[e]), "%s", param_names[which]);
                ld_sha256_update(&h, planes[e], n * sizeof(float));
            } else {
                snprintf(names[e], sizeof(names[e]), "%s.%s",
                         param_names[which], ld_spec_plane_name(sp->opt, p));
            }
            learnd__v1__tensor__init(&tens[e]);
            tens[e].name = names[e];
            tens[e].n_shape = shape_of(sp, which, shapes[e]);
            tens[e].shape = shapes[e];
            tens[e].data.data = (uint8_t *)planes[e];
            tens[e].data.len = n * sizeof(float);
            if (p == 0)
                params[which] = &tens[e];
            else
                accs[(p - 1) * 3 + (size_t)which] = &tens[e];
        }
    }
    ld_sha256_final(&h, params_sha);
    if (meta->delta) /* of the whole parameters the delta reconstructs */
        ld_snapshot_params_sha256(s, params_sha);

    Learnd__V1__OptimizerSpec ospec;
    Learnd__V1__ModelSpec mspec;
    spec_to_pb(sp, meta, &ospec, &mspec);

    const Learnd__V1__Lineage *ml = meta->lineage;
    uint64_t since[LD_SAMPLE__COUNT];
    for (int i = 0; i < LD_SAMPLE__COUNT; i++)
        since[i] =
            s->by_type[i] - (meta->parent_counts ? meta->parent_counts[i] : 0);
    Learnd__V1__ExampleCounts counts, total;
    counts_to_pb(since, ml ? ml->counts : NULL, &counts);
    counts_to_pb(s->by_type, ml ? ml->total_counts : NULL, &total);

    Learnd__V1__Lineage lin;
    lineage_to_pb(meta, s->sp != NULL, &counts, &total, params_sha, &lin);

    Learnd__V1__OptimizerState ost;
    learnd__v1__optimizer_state__init(&ost);
    ost.step = s->step;
    ost.n_tensors = (size_t)(sp->s - 1) * 3;
    uint32_t shapes_dn[3] = {sp->dense_dim, 3, sp->dense_dim};
    dense_norm_to_pb(s, shapes_dn, &scale, &stats, accs, &ost.n_tensors);
    ost.tensors = ost.n_tensors ? accs : NULL;

    Learnd__V1__Metrics m, cm;
    metrics_to_pb(&s->metrics, &m);
    metrics_to_pb(&s->champion_metrics, &cm);

    Learnd__V1__Checkpoint ck;
    learnd__v1__checkpoint__init(&ck);
    ck.format_version = LD_CKPT_FORMAT_VERSION;
    ck.spec = &mspec;
    ck.lineage = &lin;
    ck.n_tensors = 3;
    ck.tensors = params;
    ck.optimizer = &ost;
    ck.metrics = &m;
    ck.champion_metrics = &cm;
    ck.delta = (Learnd__V1__DeltaRows *)(uintptr_t)meta->delta;

    size_t body = learnd__v1__checkpoint__get_packed_size(&ck);
    out->data = malloc(body + LD_CKPT_TRAILER);
    if (!out->data)
        goto err;
    if (learnd__v1__checkpoint__pack(&ck, out->data) != body) {
        rc = LD_ERR_INVAL;
        goto err;
    }
    out->data[body] = 0x7a; /* field 15, length-delimited */
    out->data[body + 1] = 0x20;
    ld_ckpt_sha256(out->data, body, out->data + body + 2);
    out->len = body + LD_CKPT_TRAILER;
    for (int i = 0; i < 9; i++)
        free(planes[i]);
    return LD_OK;

err:
    for (int i = 0; i < 9; i++)
        free(planes[i]);
    free(out->data);
    memset(out, 0, sizeof(*out));
    return rc;
}

/* ---- Decode ------------------------------------------------------------- */

static int finite_nonneg(double x)
{
    return isfinite(x) && x >= 0;
}

/* Checks a tensor's name, shape and data length against the spec. */
static int check_tensor(const Learnd__V1__Tensor *t, const ld_spec_t *sp,
                        int which, uint32_t plane, int head, char *errstr,
                        size_t size)
{
    char want[48];
    if (plane == 0)
        snprintf(want, sizeof(want), "%s", param_names[which]);
    else
        snprintf(want, sizeof(want), "%s.%s", param_names[which],
                 ld_spec_plane_name(sp->opt, plane));
    if (!t || !t->name || strcmp(t->name, want) != 0) {
        ld_errstr_set(errstr, size, "tensor %s missing or out of order", want);
        return 0;
    }
    uint32_t shape[2];
    uint32_t n = shape_of(sp, which, shape);
    if (t->n_shape != n || memcmp(t->shape, shape, n * sizeof(uint32_t))) {
        ld_errstr_set(errstr, size, "tensor %s has the wrong shape", want);
        return 0;
    }
    size_t expect = head && which == 0 ? 0 : count_of(sp, which) * 4;
    if (t->data.len != expect || (t->data.len && !t->data.data)) {
        ld_errstr_set(errstr, size, "tensor %s has %zu bytes, expected %zu",
                      want, t->data.len, expect);
        return 0;
    }
    return 1;
}

/* Checks the dense normalization scales: name, shape [D], D finite
 * non-negative floats. */
static int check_scale(const Learnd__V1__Tensor *t, uint32_t d, char *errstr,
                       size_t size)
{
    if (!t || !t->name || strcmp(t->name, LD_CKPT_DENSE_SCALE) != 0) {
        ld_errstr_set(errstr, size,
                      "optimizer tensor %s missing or out of order",
                      LD_CKPT_DENSE_SCALE);
        return 0;
    }
    if (t->n_shape != 1 || t->shape[0] != d) {
        ld_errstr_set(errstr, size, "tensor %s has the wrong shape",
                      LD_CKPT_DENSE_SCALE);
        return 0;
    }
    if (t->data.len != (size_t)d * sizeof(float) || !t->data.data) {
        ld_errstr_set(errstr, size, "tensor %s has %zu bytes, expected %zu",
                      LD_CKPT_DENSE_SCALE, t->data.len,
                      (size_t)d * sizeof(float));
        return 0;
    }
    for (uint32_t j = 0; j < d; j++) {
        float v;
        memcpy(&v, t->data.data + 4 * (size_t)j, sizeof(v));
        if (!isfinite(v) || !(v >= 0)) {
            ld_errstr_set(errstr, size,
                          "tensor %s: value %u is %g, not a finite scale",
                          LD_CKPT_DENSE_SCALE, j, (double)v);
            return 0;
        }
    }
    return 1;
}

/* Checks dense_norm standard's statistics: name, shape [3, D], finite,
 * counts and M2 non-negative. */
static int check_stats(const Learnd__V1__Tensor *t, uint32_t d, char *errstr,
                       size_t size)
{
    if (!t || !t->name || strcmp(t->name, LD_CKPT_DENSE_STATS) != 0) {
        ld_errstr_set(errstr, size,
                      "optimizer tensor %s missing or out of order",
                      LD_CKPT_DENSE_STATS);
        return 0;
    }
    if (t->n_shape != 2 || t->shape[0] != 3 || t->shape[1] != d) {
        ld_errstr_set(errstr, size, "tensor %s has the wrong shape",
                      LD_CKPT_DENSE_STATS);
        return 0;
    }
    if (t->data.len != 3 * (size_t)d * sizeof(float) || !t->data.data) {
        ld_errstr_set(errstr, size, "tensor %s has %zu bytes, expected %zu",
                      LD_CKPT_DENSE_STATS, t->data.len,
                      3 * (size_t)d * sizeof(float));
        return 0;
    }
    for (uint32_t j = 0; j < 3 * d; j++) {
        float v;
        memcpy(&v, t->data.data + 4 * (size_t)j, sizeof(v));
        if (!isfinite(v) || (j / d != 1 && !(v >= 0))) {
            ld_errstr_set(errstr, size,
                          "tensor %s: value %u is %g, not a statistic",
                          LD_CKPT_DENSE_STATS, j, (double)v);
            return 0;
        }
    }
    return 1;
}

/* Fills sp from a decoded message; 0 with errstr when anything is off. */
static int spec_from_pb(const Learnd__V1__Checkpoint *c, ld_spec_t *sp,
                        char *errstr, size_t size)
{
    const Learnd__V1__ModelSpec *ms = c->spec;
    memset(sp, 0, sizeof(*sp));
    if (!ms || !ms->optimizer || !c->lineage || !c->optimizer) {
        ld_errstr_set(errstr, size, "spec, optimizer or lineage missing");
        return 0;
    }
    const Learnd__V1__OptimizerSpec *os = ms->optimizer;
    if (ms->kind < 1 || ms->kind > 3) {
        ld_errstr_set(errstr, size, "unknown model kind %d", (int)ms->kind);
        return 0;
    }
    if (os->kind < 1 || os->kind > 4) {
        ld_errstr_set(errstr, size, "unknown optimizer kind %d", (int)os->kind);
        return 0;
    }
    sp->model = (int)ms->kind - 1;
    sp->opt = (int)os->kind - 1;
    if (sp->model == LD_MODEL_SOFTMAX
            ? (ms->num_classes < 2 || ms->num_classes > 1024)
            : ms->num_classes != 1) {
        ld_errstr_set(errstr, size,
                      "num_classes %" PRIu32 " invalid for the model",
                      ms->num_classes);
        return 0;
    }
    if (ms->hash_bits < 1 || ms->hash_bits > 30 || ms->dense_dim > 65536) {
        ld_errstr_set(errstr, size, "hash_bits or dense_dim out of range");
        return 0;
    }
    if (sp->opt == LD_OPT_SGD && (os->schedule < 1 || os->schedule > 3)) {
        ld_errstr_set(errstr, size, "unknown learning-rate schedule %d",
                      (int)os->schedule);
        return 0;
    }
    if (!(os->learning_rate > 0) || !isfinite(os->learning_rate) ||
        !finite_nonneg(os->l1) || !finite_nonneg(os->l2) ||
        !finite_nonneg(os->beta) || !finite_nonneg(os->initial_accumulator) ||
        !finite_nonneg(os->epsilon) || !finite_nonneg(os->beta1) ||
        !finite_nonneg(os->beta2) || !finite_nonneg(os->decay) ||
        !finite_nonneg(os->power_t) ||
        !finite_nonneg(os->dense_learning_rate)) {
        ld_errstr_set(errstr, size, "optimizer hyperparameter out of range");
        return 0;
    }
    sp->k = ms->num_classes;
    sp->hash_bits = ms->hash_bits;
    sp->dense_dim = ms->dense_dim;
    sp->s = ld_spec_planes(sp->opt);
    sp->lr = os->learning_rate;
    sp->l1 = os->l1;
    sp->l2 = os->l2;
    sp->beta = os->beta;
    sp->init_acc = os->initial_accumulator;
    sp->eps = os->epsilon;
    sp->beta1 = os->beta1;
    sp->beta2 = os->beta2;
    sp->schedule = sp->opt == LD_OPT_SGD ? (int)os->schedule - 1 : 0;
    sp->decay = os->decay;
    sp->power_t = os->power_t;
    sp->dense_lr = os->dense_learning_rate;
    if (os->dense_norm > LEARND__V1__DENSE_NORM__DENSE_NORM_STANDARD) {
        ld_errstr_set(errstr, size, "unknown dense_norm %d",
                      (int)os->dense_norm);
        return 0;
    }
    sp->dense_norm =
        os->dense_norm == LEARND__V1__DENSE_NORM__DENSE_NORM_STANDARD
            ? LD_DNORM_STANDARD
        : os->dense_norm == LEARND__V1__DENSE_NORM__DENSE_NORM_MAXABS
            ? LD_DNORM_MAXABS
            : LD_DNORM_NONE;
    return 1;
}

/* Decodes buf; file_sha, when not NULL, is the SHA-256 of all of buf that
 * the caller computed while it checked the trailer's digest itself (reading
 * a file), so neither is computed a second time. */

/* A delta's rows: ascending slots inside the model, rows of their size. */
static int check_delta(const Learnd__V1__DeltaRows *d, const ld_spec_t *sp,
                       char *errstr, size_t size)
{
    size_t per = (size_t)sp->k * sp->s * sizeof(float);
    uint64_t nslots = (uint64_t)1 << sp->hash_bits;
    if (d->parent_params_sha256.len != 32) {
        ld_errstr_set(errstr, size, "delta without its parent's hash");
        return 0;
    }
    if (d->rows.len != d->n_slots * per || (d->rows.len && !d->rows.data)) {
        ld_errstr_set(errstr, size,
                      "delta has %zu bytes of rows for %zu slots, expected "
                      "%zu",
                      d->rows.len, d->n_slots, d->n_slots * per);
        return 0;
    }
    for (size_t i = 0; i < d->n_slots; i++) {
        if (d->slots[i] >= nslots || (i && d->slots[i] <= d->slots[i - 1])) {
            ld_errstr_set(errstr, size,
                          "delta slot %zu (%" PRIu32
                          ") out of range or out of order",
                          i, d->slots[i]);
            return 0;
        }
    }
    return 1;
}

/* The parameter and optimizer tensors of m: their count, shapes and
 * optional dense statistics; sha gets the SHA-256 of the parameters.
 * 1, or 0 with errstr set. */
static int check_tensors(const Learnd__V1__Checkpoint *m, const ld_spec_t *spp,
                         int head, uint8_t sha[32], char *errstr, size_t size)
{
    const ld_spec_t sp = *spp;
    /* The dense scales are optional: a checkpoint written before dense
     * normalization existed has none (its dense state is in raw units). */
    size_t nacc = (size_t)(sp.s - 1) * 3;
    size_t nopt = m->optimizer->n_tensors;
    /* The statistics: only under standard, after the scales. */
    size_t nmax = nacc + (sp.dense_dim ? 1 : 0) +
                  (sp.dense_dim && sp.dense_norm == LD_DNORM_STANDARD ? 1 : 0);
    if (m->n_tensors != 3 || nopt < nacc || nopt > nmax) {
        ld_errstr_set(errstr, size,
                      "checkpoint has %zu parameter and %zu optimizer "
                      "tensors, expected 3 and %zu",
                      m->n_tensors, nopt, nmax);
        return 0;
    }
    if (nopt > nacc &&
        !check_scale(m->optimizer->tensors[nacc], sp.dense_dim, errstr, size))
        return 0;
    if (nopt > nacc + 1 && !check_stats(m->optimizer->tensors[nacc + 1],
                                        sp.dense_dim, errstr, size))
        return 0;
    ld_sha256_t h;
    ld_sha256_init(&h);
    for (int which = 0; which < 3; which++) {
        const Learnd__V1__Tensor *t = m->tensors[which];
        if (!check_tensor(t, &sp, which, 0, head, errstr, size))
            return 0;
        ld_sha256_update(&h, t->data.data, t->data.len);
    }
    for (uint32_t p = 1; p < sp.s; p++)
        for (int which = 0; which < 3; which++)
            if (!check_tensor(
                    m->optimizer->tensors[(p - 1) * 3 + (uint32_t)which], &sp,
                    which, p, head, errstr, size))
                return 0;
    ld_sha256_final(&h, sha);
    return 1;
}

ld_err_t ld_ckpt_decode_as(const uint8_t *buf, size_t len,
                           const uint8_t *file_sha, ld_ckpt_mode_t mode,
                           ld_ckpt_t **out, char *errstr, size_t size)
{
    int head = mode != LD_CKPT_FULL && mode != LD_CKPT_ANY;
    ld_ckpt_t *c = NULL;
    ld_err_t rc = LD_ERR_CORRUPT;
    uint8_t sha[32];
    *out = NULL;
    if (!buf || len <= LD_CKPT_TRAILER) {
        ld_errstr_set(errstr, size, "checkpoint truncated (%zu bytes)", len);
        goto err;
    }
    size_t body = len - LD_CKPT_TRAILER;
    if (buf[body] != 0x7a || buf[body + 1] != 0x20) {
        ld_errstr_set(errstr, size,
                      "checkpoint has no checksum trailer (truncated?)");
        goto err;
    }
    if (!file_sha) {
        ld_ckpt_sha256(buf, body, sha);
        if (memcmp(sha, buf + body + 2, 32) != 0) {
            ld_errstr_set(errstr, size, "checkpoint checksum mismatch");
            goto err;
        }
    }
    c = calloc(1, sizeof(*c));
    if (!c) {
        rc = LD_ERR_NOMEM;
        goto err;
    }
    if (file_sha)
        memcpy(c->sha, file_sha, 32);
    else
        ld_ckpt_sha256(buf, len, c->sha);
    c->size = len;
    c->head = head;
    c->msg = learnd__v1__checkpoint__unpack(NULL, body, buf);
    if (!c->msg) {
        ld_errstr_set(errstr, size, "not a learnd.v1.Checkpoint message");
        goto err;
    }
    const Learnd__V1__Checkpoint *m = c->msg;
    if (mode == LD_CKPT_ANY) {
        mode = m->delta ? LD_CKPT_DELTA : LD_CKPT_FULL;
        head = c->head = m->delta != NULL;
    }
    if (m->delta && mode != LD_CKPT_DELTA) {
        ld_errstr_set(errstr, size,
                      "checkpoint version %" PRIu64 " is a delta of version "
                      "%" PRIu64 " (chain from full version %" PRIu64
                      "): reconstruct it from its chain",
                      m->lineage ? m->lineage->version : 0,
                      m->delta->parent_version, m->delta->base_version);
        goto err;
    }
    if (!m->delta && mode == LD_CKPT_DELTA) {
        ld_errstr_set(errstr, size, "not a delta checkpoint");
        goto err;
    }
    if (m->format_version != LD_CKPT_FORMAT_VERSION) {
        ld_errstr_set(errstr, size,
                      "checkpoint format_version %" PRIu32
                      " (this learnd reads %d)",
                      m->format_version, LD_CKPT_FORMAT_VERSION);
        goto err;
    }
    ld_spec_t sp;
    if (!spec_from_pb(m, &sp, errstr, size))
        goto err;
    if (!check_tensors(m, &sp, head, sha, errstr, size))
        goto err;
    const ProtobufCBinaryData *ps = &m->lineage->params_sha256;
    if (mode == LD_CKPT_DELTA) {
        if (ps->len != 32) {
            ld_errstr_set(errstr, size, "delta without params_sha256");
            goto err;
        }
        if (!check_delta(m->delta, &sp, errstr, size))
            goto err;
    } else if (head ? ps->len != 0
                    : ps->len != 32 || memcmp(ps->data, sha, 32)) {
        ld_errstr_set(errstr, size,
                      "params_sha256 does not match the parameters");
        goto err;
    }
    *out = c;
    return LD_OK;

err:
    ld_ckpt_destroy(c);
    return rc;
}

ld_err_t ld_ckpt_decode(const uint8_t *buf, size_t len, ld_ckpt_t **out,
                        char *errstr, size_t size)
{
    return ld_ckpt_decode_as(buf, len, NULL, LD_CKPT_FULL, out, errstr, size);
}

ld_err_t ld_ckpt_decode_head(const uint8_t *buf, size_t len, ld_ckpt_t **out,
                             char *errstr, size_t size)
{
    return ld_ckpt_decode_as(buf, len, NULL, LD_CKPT_HEAD, out, errstr, size);
}

ld_err_t ld_ckpt_decode_delta(const uint8_t *buf, size_t len, ld_ckpt_t **out,
                              char *errstr, size_t size)
{
    return ld_ckpt_decode_as(buf, len, NULL, LD_CKPT_DELTA, out, errstr, size);
}

void ld_ckpt_destroy(ld_ckpt_t *c)
{
    if (!c)
        return;
    if (c->msg)
        learnd__v1__checkpoint__free_unpacked(c->msg, NULL);
    free(c);
}

const Learnd__V1__Checkpoint *ld_ckpt_message(const ld_ckpt_t *c)
{
    return c->msg;
}

void ld_ckpt_content_sha256(const ld_ckpt_t *c, uint8_t out[32])
{
    memcpy(out, c->sha, 32);
}

size_t ld_ckpt_size(const ld_ckpt_t *c)
{
    return c->size;
}

static void metrics_from_pb(const Learnd__V1__Metrics *pb,
                            ld_trainer_metrics_t *m)
{
    memset(m, 0, sizeof(*m));
    m->logloss = m->auc = m->accuracy = m->rmse = NAN;
    m->mean_prediction = m->mean_label = m->calibration = NAN;
    if (!pb)
        return;
    m->examples = pb->examples;
    m->logloss = pb->logloss;
    m->auc = pb->auc;
    m->accuracy = pb->accuracy;
    m->rmse = pb->rmse;
    m->mean_prediction = pb->mean_prediction;
    m->mean_label = pb->mean_label;
    m->calibration = pb->calibration;
    m->window_start_ms = pb->window_start_ms;
    m->window_end_ms = pb->window_end_ms;
}

ld_snapshot_t *ld_ckpt_snapshot(const ld_ckpt_t *c)
{
    const Learnd__V1__Checkpoint *m = c->msg;
    ld_spec_t sp;
    if (!spec_from_pb(m, &sp, NULL, 0))
        return NULL; /* cannot happen: validated by decode */
    ld_snapshot_t *s = ld_snapshot_alloc(&sp);
    if (!s)
        return NULL;
    for (int which = c->head ? 1 : 0; which < 3; which++)
        insert(s, which, 0, m->tensors[which]->data.data);
    for (uint32_t p = 1; p < sp.s; p++)
        for (int which = c->head ? 1 : 0; which < 3; which++)
            insert(s, which, p,
                   m->optimizer->tensors[(p - 1) * 3 + (uint32_t)which]
                       ->data.data);
    size_t nacc = (size_t)(sp.s - 1) * 3;
    if (m->optimizer->n_tensors > nacc) /* validated by decode */
        memcpy(s->dscale, m->optimizer->tensors[nacc]->data.data,
               sp.dense_dim * sizeof(float));
    if (m->optimizer->n_tensors > nacc + 1)
        memcpy(s->dstat, m->optimizer->tensors[nacc + 1]->data.data,
               3 * (size_t)sp.dense_dim * sizeof(float));
    s->step = m->optimizer->step;
    const Learnd__V1__ExampleCounts *tc = m->lineage->total_counts;
    if (tc) {
        s->by_type[LD_SAMPLE_POS] = tc->pos;
        s->by_type[LD_SAMPLE_DEFAULT_NEG] = tc->default_neg;
        s->by_type[LD_SAMPLE_FAKE_NEG] = tc->fake_neg;
        s->by_type[LD_SAMPLE_DELAYED_POS] = tc->delayed_pos;
    }
    for (int i = 0; i < LD_SAMPLE__COUNT; i++)
        s->examples += s->by_type[i];
    metrics_from_pb(m->metrics, &s->metrics);
    metrics_from_pb(m->champion_metrics, &s->champion_metrics);
    return s;
}

ld_err_t ld_ckpt_champion_set(ld_trainer_t *t, const ld_ckpt_t *c, char *errstr,
                              size_t errstr_size)
{
    ld_spec_t sp;
    if (!spec_from_pb(c->msg, &sp, NULL, 0))
        return LD_ERR_CORRUPT; /* cannot happen: validated by decode */
    const char *why = ld_spec_mismatch(ld_trainer_spec(t), &sp);
    if (why) {
        if (errstr && errstr_size)
            snprintf(errstr, errstr_size,
                     "champion checkpoint differs from the model in %s", why);
        return LD_ERR_CONFIG;
    }
    ld_snapshot_t *s = ld_ckpt_snapshot(c);
    if (!s) {
        if (errstr && errstr_size)
            snprintf(errstr, errstr_size, "champion checkpoint: out of memory");
        return LD_ERR_NOMEM;
    }
    ld_err_t err = ld_trainer_champion_set(t, s);
    ld_snapshot_destroy(s); /* the trainer holds its own reference */
    return err == LD_OK ? LD_OK : LD_ERR_CONFIG;
}

ld_err_t ld_ckpt_champion_load(ld_trainer_t *t, const uint8_t *buf, size_t len,
                               char *errstr, size_t errstr_size)
{
    ld_ckpt_t *c = NULL;
    ld_err_t err = ld_ckpt_decode(buf, len, &c, errstr, errstr_size);
    if (err != LD_OK)
        return err;
    err = ld_ckpt_champion_set(t, c, errstr, errstr_size);
    ld_ckpt_destroy(c);
    return err;
}
