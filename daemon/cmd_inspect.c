/* SPDX-License-Identifier: Apache-2.0 */
/* `learnd inspect`: validates a checkpoint file and prints what it holds, as
 * text or as one JSON object. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "daemon/cmd_inspect.h"
#include "daemon/cli.h"
#include "trainer/checkpoint.h"

static const char *model_kind(int k)
{
    static const char *n[] = {"unspecified", "logistic", "linear", "softmax"};
    return k >= 0 && k < 4 ? n[k] : "unknown";
}

static const char *opt_kind(int k)
{
    static const char *n[] = {"unspecified", "sgd", "adagrad", "ftrl", "adam"};
    return k >= 0 && k < 5 ? n[k] : "unknown";
}

static const char *schedule(int k)
{
    static const char *n[] = {"", "constant", "inverse_scaling", "exponential"};
    return k >= 0 && k < 4 ? n[k] : "unknown";
}

/* Unspecified: a checkpoint from before dense normalization (raw). */
static const char *dense_norm(int k)
{
    static const char *n[] = {"none", "none", "maxabs", "standard"};
    return k >= 0 && k < 4 ? n[k] : "unknown";
}

static void hexs(const ProtobufCBinaryData *b, char *out, size_t size)
{
    out[0] = 0;
    for (size_t i = 0; i < b->len && 2 * i + 2 < size; i++)
        snprintf(out + 2 * i, 3, "%02x", b->data[i]);
}

static void rfc3339(int64_t ms, char *out, size_t size)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    if (ms <= 0 || !gmtime_r(&s, &tm)) {
        snprintf(out, size, "%s", "");
        return;
    }
    char date[32];
    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, size, "%s.%03dZ", date, (int)(ms % 1000));
}

/* ---- JSON output -------------------------------------------------------- */

/* Strings of a checkpoint come from whoever could write the file or the
 * checkpoint topic: control bytes (a terminal's escape sequences, a CR that
 * rewrites the line) and non-ASCII bytes are escaped, never printed raw.
 * learnd's own strings (model names, topics, versions) are ASCII. */
static void jstr(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p;
         p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20 || *p >= 0x7f)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

/* s for the text output: bytes outside printable ASCII as \xNN, a
 * backslash as \\. Returns buf (cut to size). */
static const char *tstr(char *buf, size_t size, const char *s)
{
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)(s ? s : "");
         *p && o + 5 < size; p++) {
        if (*p == '\\') {
            buf[o++] = '\\';
            buf[o++] = '\\';
        } else if (*p < 0x20 || *p >= 0x7f) {
            o += (size_t)snprintf(buf + o, size - o, "\\x%02x", *p);
        } else {
            buf[o++] = (char)*p;
        }
    }
    buf[o] = '\0';
    return buf;
}

/* Up to 4 escaped strings per printf. */
#define T(i, s) tstr(tb[i], sizeof(tb[i]), (s))

static void jnum(FILE *f, double x)
{
    if (isfinite(x))
        fprintf(f, "%.17g", x);
    else
        fputs("null", f);
}

static void jmetrics(FILE *f, const Learnd__V1__Metrics *m)
{
    if (!m) {
        fputs("null", f);
        return;
    }
    fprintf(f, "{\"examples\":%" PRIu64 ",\"logloss\":", m->examples);
    jnum(f, m->logloss);
    fputs(",\"auc\":", f);
    jnum(f, m->auc);
    fputs(",\"accuracy\":", f);
    jnum(f, m->accuracy);
    fputs(",\"rmse\":", f);
    jnum(f, m->rmse);
    fputs(",\"mean_prediction\":", f);
    jnum(f, m->mean_prediction);
    fputs(",\"mean_label\":", f);
    jnum(f, m->mean_label);
    fputs(",\"calibration\":", f);
    jnum(f, m->calibration);
    fprintf(f,
            ",\"window_start_ms\":%" PRId64 ",\"window_end_ms\":%" PRId64 "}",
            m->window_start_ms, m->window_end_ms);
}

/* One {"topic", "partition", a, b} object of a lineage list; i > 0 puts a
 * comma first. */
static void jpos(FILE *f, size_t i, const char *topic, int32_t partition,
                 const char *ka, int64_t a, const char *kb, int64_t b)
{
    fputs(i ? ",{\"topic\":" : "{\"topic\":", f);
    jstr(f, topic);
    fprintf(f,
            ",\"partition\":%" PRId32 ",\"%s\":%" PRId64 ",\"%s\":%" PRId64 "}",
            partition, ka, a, kb, b);
}

static void jcounts(FILE *f, const Learnd__V1__ExampleCounts *c)
{
    if (!c) {
        fputs("null", f);
        return;
    }
    fprintf(f,
            "{\"pos\":%" PRIu64 ",\"default_neg\":%" PRIu64
            ",\"fake_neg\":%" PRIu64 ",\"delayed_pos\":%" PRIu64
            ",\"late_labels_dropped\":%" PRIu64 ",\"dead_lettered\":%" PRIu64
            "}",
            c->pos, c->default_neg, c->fake_neg, c->delayed_pos,
            c->late_labels_dropped, c->dead_lettered);
}

static void jtensors(FILE *f, Learnd__V1__Tensor **t, size_t n)
{
    fputc('[', f);
    for (size_t i = 0; i < n; i++) {
        fputs(i ? ",{\"name\":" : "{\"name\":", f);
        jstr(f, t[i]->name);
        fputs(",\"shape\":[", f);
        for (size_t j = 0; j < t[i]->n_shape; j++)
            fprintf(f, "%s%" PRIu32, j ? "," : "", t[i]->shape[j]);
        fprintf(f, "],\"bytes\":%zu}", t[i]->data.len);
    }
    fputc(']', f);
}

/* A delta verified through its chain (inspect --chain). */
typedef struct chain_info {
    size_t links;          /* checkpoints applied, base included */
    uint64_t base, parent; /* versions */
    size_t rows;           /* rows the delta holds */
} chain_info_t;

static void print_json(FILE *f, const char *path, const ld_ckpt_t *c,
                       const chain_info_t *ch)
{
    const Learnd__V1__Checkpoint *m = ld_ckpt_message(c);
    const Learnd__V1__ModelSpec *s = m->spec;
    const Learnd__V1__OptimizerSpec *o = s->optimizer;
    const Learnd__V1__Lineage *l = m->lineage;
    char h[80], when[40];
    uint8_t sha[32];
    ProtobufCBinaryData shab = {32, sha};
    ld_ckpt_content_sha256(c, sha);
    hexs(&shab, h, sizeof(h));
    fputs("{\"file\":", f);
    jstr(f, path);
    fprintf(f, ",\"size\":%zu,\"sha256\":\"%s\",\"format_version\":%" PRIu32,
            ld_ckpt_size(c), h, m->format_version);
    fprintf(f,
            ",\"spec\":{\"kind\":\"%s\",\"num_classes\":%" PRIu32
            ",\"hash_bits\":%" PRIu32 ",\"dense_dim\":%" PRIu32
            ",\"hash_function\":",
            model_kind((int)s->kind), s->num_classes, s->hash_bits,
            s->dense_dim);
    jstr(f, s->hash_function);
    hexs(&s->feature_map_hash, h, sizeof(h));
    fprintf(f, ",\"hash_seed\":%" PRIu32 ",\"feature_map_hash\":\"%s\"",
            s->hash_seed, h);
    fprintf(f, ",\"optimizer\":{\"kind\":\"%s\",\"learning_rate\":",
            opt_kind((int)o->kind));
    jnum(f, o->learning_rate);
    fputs(",\"l1\":", f);
    jnum(f, o->l1);
    fputs(",\"l2\":", f);
    jnum(f, o->l2);
    fputs(",\"beta\":", f);
    jnum(f, o->beta);
    fputs(",\"initial_accumulator\":", f);
    jnum(f, o->initial_accumulator);
    fputs(",\"epsilon\":", f);
    jnum(f, o->epsilon);
    fputs(",\"beta1\":", f);
    jnum(f, o->beta1);
    fputs(",\"beta2\":", f);
    jnum(f, o->beta2);
    fprintf(f, ",\"schedule\":\"%s\",\"decay\":", schedule((int)o->schedule));
    jnum(f, o->decay);
    fputs(",\"power_t\":", f);
    jnum(f, o->power_t);
    fprintf(f, ",\"dense_norm\":\"%s\",\"dense_learning_rate\":",
            dense_norm((int)o->dense_norm));
    jnum(f, o->dense_learning_rate);
    fprintf(f, "}},\"optimizer_step\":%" PRIu64, m->optimizer->step);

    fputs(",\"lineage\":{\"model\":", f);
    jstr(f, l->model);
    fprintf(f, ",\"version\":%" PRIu64 ",\"parent_version\":%" PRIu64,
            l->version, l->parent_version);
    hexs(&l->config_hash, h, sizeof(h));
    fprintf(f, ",\"config_hash\":\"%s\",\"learnd_version\":", h);
    jstr(f, l->learnd_version);
    fputs(",\"openblas_corename\":", f);
    jstr(f, l->openblas_corename);
    fputs(",\"openblas_config\":", f);
    jstr(f, l->openblas_config);
    hexs(&l->params_sha256, h, sizeof(h));
    rfc3339(l->created_at_ms, when, sizeof(when));
    fprintf(f,
            ",\"params_sha256\":\"%s\",\"created_at_ms\":%" PRId64
            ",\"created_at\":\"%s\",\"trigger_id\":",
            h, l->created_at_ms, when);
    jstr(f, l->trigger_id);
    fputs(",\"counts\":", f);
    jcounts(f, l->counts);
    fputs(",\"total_counts\":", f);
    jcounts(f, l->total_counts);
    fputs(",\"consumed\":[", f);
    for (size_t i = 0; i < l->n_consumed; i++)
        jpos(f, i, l->consumed[i]->topic, l->consumed[i]->partition,
             "first_offset", l->consumed[i]->first_offset, "last_offset",
             l->consumed[i]->last_offset);
    fputs("],\"resume\":[", f);
    for (size_t i = 0; i < l->n_resume; i++)
        jpos(f, i, l->resume[i]->topic, l->resume[i]->partition, "next_offset",
             l->resume[i]->next_offset, "reread_from",
             l->resume[i]->reread_from);
    fputs("],\"watermark_advances\":[", f);
    for (size_t i = 0; i < l->n_watermark_advances; i++) {
        const Learnd__V1__WatermarkAdvance *w = l->watermark_advances[i];
        jpos(f, i, w->topic, w->partition, "wall_time_ms", w->wall_time_ms,
             "watermark_ms", w->watermark_ms);
    }
    fputs("]},\"metrics\":", f);
    jmetrics(f, m->metrics);
    fputs(",\"champion_metrics\":", f);
    jmetrics(f, m->champion_metrics);
    fputs(",\"tensors\":", f);
    jtensors(f, m->tensors, m->n_tensors);
    fputs(",\"optimizer_tensors\":", f);
    jtensors(f, m->optimizer->tensors, m->optimizer->n_tensors);
    if (ch)
        fprintf(f,
                ",\"delta\":{\"parent_version\":%" PRIu64
                ",\"base_version\":%" PRIu64 ",\"rows\":%zu,\"chain_links\":%zu"
                ",\"params_sha256_verified\":true}",
                ch->parent, ch->base, ch->rows, ch->links);
    fputs("}\n", f);
}

/* ---- Text output -------------------------------------------------------- */

static void tmetrics(FILE *f, const char *name, const Learnd__V1__Metrics *m)
{
    if (!m)
        return;
    fprintf(f,
            "%-18s examples=%" PRIu64
            " logloss=%.6g auc=%.6g accuracy=%.6g rmse=%.6g\n"
            "%-18s mean_prediction=%.6g mean_label=%.6g calibration=%.6g "
            "window=[%" PRId64 ", %" PRId64 "]\n",
            name, m->examples, m->logloss, m->auc, m->accuracy, m->rmse, "",
            m->mean_prediction, m->mean_label, m->calibration,
            m->window_start_ms, m->window_end_ms);
}

static void tcounts(FILE *f, const char *name,
                    const Learnd__V1__ExampleCounts *c)
{
    if (!c)
        return;
    fprintf(f,
            "%-18s pos=%" PRIu64 " default_neg=%" PRIu64 " fake_neg=%" PRIu64
            " delayed_pos=%" PRIu64 " late_dropped=%" PRIu64
            " dead_lettered=%" PRIu64 "\n",
            name, c->pos, c->default_neg, c->fake_neg, c->delayed_pos,
            c->late_labels_dropped, c->dead_lettered);
}

static void print_text(FILE *f, const char *path, const ld_ckpt_t *c,
                       const chain_info_t *ch)
{
    const Learnd__V1__Checkpoint *m = ld_ckpt_message(c);
    const Learnd__V1__ModelSpec *s = m->spec;
    const Learnd__V1__OptimizerSpec *o = s->optimizer;
    const Learnd__V1__Lineage *l = m->lineage;
    char h[80], when[40], tb[1][1024];
    uint8_t sha[32];
    ProtobufCBinaryData shab = {32, sha};
    ld_ckpt_content_sha256(c, sha);
    hexs(&shab, h, sizeof(h));
    fprintf(f, "%-18s %s (%zu bytes, format %" PRIu32 ", checksums ok)\n",
            "file", T(0, path), ld_ckpt_size(c), m->format_version);
    fprintf(f, "%-18s %s\n", "sha256", h);
    fprintf(f, "%-18s %s version %" PRIu64 ", parent %" PRIu64 "%s\n", "model",
            T(0, l->model), l->version, l->parent_version,
            l->parent_version ? "" : " (trained from scratch)");
    fprintf(f,
            "%-18s %s, %" PRIu32 " output(s), 2^%" PRIu32
            " hashed slots, %" PRIu32 " dense, hash %s seed %" PRIu32 "\n",
            "spec", model_kind((int)s->kind), s->num_classes, s->hash_bits,
            s->dense_dim, s->hash_function[0] ? T(0, s->hash_function) : "-",
            s->hash_seed);
    fprintf(f,
            "%-18s %s lr=%g l1=%g l2=%g beta=%g init_acc=%g eps=%g "
            "beta1=%g beta2=%g%s%s dense_norm=%s dense_lr=%g step=%" PRIu64
            "\n",
            "optimizer", opt_kind((int)o->kind), o->learning_rate, o->l1, o->l2,
            o->beta, o->initial_accumulator, o->epsilon, o->beta1, o->beta2,
            o->schedule ? " schedule=" : "", schedule((int)o->schedule),
            dense_norm((int)o->dense_norm), o->dense_learning_rate,
            m->optimizer->step);
    hexs(&l->params_sha256, h, sizeof(h));
    fprintf(f, "%-18s %s\n", "params_sha256", h);
    hexs(&l->config_hash, h, sizeof(h));
    fprintf(f, "%-18s %s\n", "config_hash", h[0] ? h : "-");
    rfc3339(l->created_at_ms, when, sizeof(when));
    fprintf(f, "%-18s %s\n", "created_at", when[0] ? when : "-");
    fprintf(f, "%-18s %s\n", "learnd_version",
            l->learnd_version[0] ? T(0, l->learnd_version) : "-");
    fprintf(f, "%-18s %s\n", "openblas_core", T(0, l->openblas_corename));
    fprintf(f, "%-18s %s\n", "trigger_id",
            l->trigger_id[0] ? T(0, l->trigger_id) : "-");
    tcounts(f, "counts", l->counts);
    tcounts(f, "total_counts", l->total_counts);
    for (size_t i = 0; i < l->n_consumed; i++)
        fprintf(f, "%-18s %s[%" PRId32 "] offsets %" PRId64 "..%" PRId64 "\n",
                i ? "" : "consumed", T(0, l->consumed[i]->topic),
                l->consumed[i]->partition, l->consumed[i]->first_offset,
                l->consumed[i]->last_offset);
    for (size_t i = 0; i < l->n_resume; i++)
        fprintf(f,
                "%-18s %s[%" PRId32 "] next %" PRId64 " reread from %" PRId64
                "\n",
                i ? "" : "resume", T(0, l->resume[i]->topic),
                l->resume[i]->partition, l->resume[i]->next_offset,
                l->resume[i]->reread_from);
    fprintf(f, "%-18s %zu\n", "watermark_advances", l->n_watermark_advances);
    tmetrics(f, "metrics", m->metrics);
    tmetrics(f, "champion_metrics", m->champion_metrics);
    for (size_t i = 0; i < m->n_tensors; i++)
        fprintf(f, "%-18s %s %zu bytes\n", i ? "" : "tensors",
                T(0, m->tensors[i]->name), m->tensors[i]->data.len);
    for (size_t i = 0; i < m->optimizer->n_tensors; i++)
        fprintf(f, "%-18s %s %zu bytes\n", i ? "" : "optimizer_tensors",
                T(0, m->optimizer->tensors[i]->name),
                m->optimizer->tensors[i]->data.len);
    if (ch)
        fprintf(f,
                "%-18s of version %" PRIu64 ", %zu rows; chain of %zu from "
                "full version %" PRIu64 " rebuilt, params_sha256 ok\n",
                "delta", ch->parent, ch->rows, ch->links, ch->base);
}

/* The whole of a file, at most LD_CKPT_MAX_FILE bytes (caller frees
 * b->data); errstr names the path on failure. */
static int read_all(const char *path, ld_buf_t *b, char *errstr, size_t size)
{
    memset(b, 0, sizeof(*b));
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(errstr, size, "open %s: %s", path, strerror(errno));
        return -1;
    }
    size_t cap = 0;
    for (;;) {
        if (b->len == cap) {
            cap = cap ? 2 * cap : 1 << 16;
            uint8_t *nb =
                cap <= LD_CKPT_MAX_FILE ? realloc(b->data, cap) : NULL;
            if (!nb) {
                snprintf(errstr, size, "%s: too large or out of memory", path);
                fclose(f);
                free(b->data);
                b->data = NULL;
                return -1;
            }
            b->data = nb;
        }
        size_t r = fread(b->data + b->len, 1, cap - b->len, f);
        if (r == 0)
            break;
        b->len += r;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        snprintf(errstr, size, "read %s: %s", path, strerror(errno));
        free(b->data);
        b->data = NULL;
        return -1;
    }
    return 0;
}

/* inspect --chain: the base and deltas in chain (comma-separated files),
 * then path, rebuilt and checked link by link. */
static int inspect_chain(const char *path, const char *chain, int json)
{
    char err[600] = "", tb[1][1024];
    ld_buf_t links[256];
    size_t n = 0;
    int rc = 1;
    char *list = strdup(chain), *save = NULL;
    for (char *tok = list ? strtok_r(list, ",", &save) : NULL; tok;
         tok = strtok_r(NULL, ",", &save)) {
        if (n + 1 >= sizeof(links) / sizeof(*links)) {
            snprintf(err, sizeof(err), "a chain of more than %zu links",
                     sizeof(links) / sizeof(*links) - 1);
            goto out;
        }
        if (read_all(tok, &links[n], err, sizeof(err)))
            goto out;
        n++;
    }
    if (read_all(path, &links[n], err, sizeof(err)))
        goto out;
    n++;
    ld_snapshot_t *s = NULL;
    if (ld_ckpt_chain_rebuild(links, n, &s, NULL, err, sizeof(err)))
        goto out;
    ld_snapshot_destroy(s);
    ld_ckpt_t *c = NULL;
    if (ld_ckpt_decode_delta(links[n - 1].data, links[n - 1].len, &c, err,
                             sizeof(err)))
        goto out;
    const Learnd__V1__DeltaRows *d = ld_ckpt_message(c)->delta;
    chain_info_t ch = {n, d->base_version, d->parent_version, d->n_slots};
    if (json)
        print_json(stdout, path, c, &ch);
    else
        print_text(stdout, path, c, &ch);
    ld_ckpt_destroy(c);
    rc = fflush(stdout) == 0 ? 0 : 1;
out:
    if (rc && err[0])
        fprintf(stderr, "learnd inspect: %s\n", T(0, err));
    for (size_t i = 0; i < n; i++)
        free(links[i].data);
    free(list);
    return rc;
}

static const char usage_text[] =
    "usage: learnd inspect FILE [--chain BASE[,DELTA...]] [--json]\n"
    "  Validates a checkpoint (.ckpt) and prints its spec, version,\n"
    "  parent, lineage, metrics and hashes. Exit 0 ok, 1 corrupt or\n"
    "  unreadable, 2 usage.\n"
    "\n"
    "  --chain LIST  FILE is a delta checkpoint (checkpoint.delta_every):\n"
    "                rebuild it from LIST, its full base and the deltas\n"
    "                before it in order, checking every link and the\n"
    "                parameter hash it reconstructs\n"
    "  --json        print one JSON object instead\n"
    "  -h, --help    show this help\n";

int ld_cmd_inspect(int argc, char **argv)
{
    const char *path = NULL, *chain = NULL;
    int json = 0;
    static const struct option longopts[] = {
        {"json", no_argument, NULL, 'j'},
        {"chain", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int opt;
    optind = 0;
    while ((opt = ld_cli_getopt(argc, argv, "h", longopts, usage_text)) != -1) {
        switch (opt) {
        case 'j':
            json = 1;
            break;
        case 'c':
            chain = optarg;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return LD_EXIT_OK;
        default:
            return LD_EXIT_USAGE;
        }
    }
    if (optind == argc)
        return ld_cli_usage_error("inspect", usage_text, "needs FILE");
    if (optind + 1 < argc)
        return ld_cli_usage_error("inspect", usage_text,
                                  "one FILE only, not also '%s'",
                                  argv[optind + 1]);
    path = argv[optind];
    if (chain)
        return inspect_chain(path, chain, json);
    ld_ckpt_t *c = NULL;
    char err[600];
    if (ld_ckpt_read_file(path, &c, err, sizeof(err)) != LD_OK) {
        char tb[1][1024];
        fprintf(stderr, "learnd inspect: %s\n", T(0, err));
        return 1;
    }
    if (json)
        print_json(stdout, path, c, NULL);
    else
        print_text(stdout, path, c, NULL);
    ld_ckpt_destroy(c);
    return fflush(stdout) == 0 ? 0 : 1;
}
