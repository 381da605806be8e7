/* SPDX-License-Identifier: Apache-2.0 */
/* The evaluation engine's reports: the text table, the JSON document
 * (schemas/backtest.schema.json) and the SVG line chart. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/eval_internal.h"

/* The metric the lines are compared on: loss for classifiers, RMSE for
 * regression. */
static const char *primary_name(int model)
{
    return model == LD_MODEL_LINEAR ? "rmse" : "logloss";
}

static double primary(int model, const ld_trainer_metrics_t *m)
{
    return model == LD_MODEL_LINEAR ? m->rmse : m->logloss;
}

/* The reference line of the relative loss: cadence 0 (freshness) or the
 * continual model (backtest); -1 without one. */
static long reference(const ld_eval_t *e)
{
    for (size_t i = 0; i < e->nl; i++)
        if (e->l[i].kind == LINE_CONTINUAL)
            return (long)i;
    return -1;
}

/* A duration as 90s, 2m30s, 1h, 1d. */
static void fmt_ms(int64_t ms, char *buf, size_t size)
{
    int64_t s = ms / 1000, d = s / 86400, h = s / 3600 % 24, m = s / 60 % 60;
    int n = 0;
    buf[0] = '\0';
    if (d)
        n += snprintf(buf + n, size - (size_t)n, "%lldd", (long long)d);
    if (h && n < (int)size)
        n += snprintf(buf + n, size - (size_t)n, "%lldh", (long long)h);
    if (m && n < (int)size)
        n += snprintf(buf + n, size - (size_t)n, "%lldm", (long long)m);
    if ((s % 60 || !n) && n < (int)size)
        snprintf(buf + n, size - (size_t)n, "%llds", (long long)(s % 60));
}

static void utc(int64_t ms, char *buf, size_t size)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void line_metrics(const ld_eval_t *e, size_t i, ld_trainer_metrics_t *m)
{
    eval_acc_metrics(&e->l[i].all, e->model, m);
    if (e->model == LD_MODEL_LOGISTIC)
        m->auc = eval_line_auc(&e->l[i]);
}

/* ---- Text --------------------------------------------------------------- */

static void print_overall(ld_eval_t *e, FILE *out, ld_trainer_metrics_t *m)
{
    long ref = reference(e);
    double r = ref >= 0 ? primary(e->model, &m[ref]) : NAN;
    fprintf(out, "%-14s %10s %9s %8s %8s %8s %9s\n", "model", "examples",
            primary_name(e->model), "auc", "calib", "acc",
            ref >= 0 ? "vs ref" : "");
    for (size_t i = 0; i < e->nl; i++) {
        double v = primary(e->model, &m[i]);
        char rel[32] = "";
        if (ref >= 0 && r > 0 && !isnan(v))
            snprintf(rel, sizeof(rel), "%+.2f%%", 100.0 * (v - r) / r);
        fprintf(out, "%-14s %10llu %9.5f %8.4f %8.4f %8.4f %9s\n", e->l[i].name,
                (unsigned long long)m[i].examples, v, m[i].auc,
                m[i].calibration, m[i].accuracy, rel);
    }
}

static void print_windows(ld_eval_t *e, FILE *out)
{
    char w[32];
    fmt_ms(e->c.bucket_ms, w, sizeof(w));
    fprintf(out, "\n%s per %s window (event time, UTC):\n%-20s",
            primary_name(e->model), w, "window");
    for (size_t i = 0; i < e->nl; i++)
        fprintf(out, " %10.10s", e->l[i].name);
    fprintf(out, " %8s\n", "examples");
    for (size_t b = 0; b < e->nbuckets; b++) {
        char ts[32];
        utc(e->c.from_ms + (int64_t)b * e->c.bucket_ms, ts, sizeof(ts));
        fprintf(out, "%-20s", ts);
        uint64_t n = 0;
        for (size_t i = 0; i < e->nl; i++) {
            ld_trainer_metrics_t m;
            eval_acc_metrics(&e->l[i].bucket[b], e->model, &m);
            if (m.examples > n)
                n = m.examples;
            if (m.examples)
                fprintf(out, " %10.5f", primary(e->model, &m));
            else
                fprintf(out, " %10s", "-");
        }
        fprintf(out, " %8llu\n", (unsigned long long)n);
    }
}

void ld_eval_print(ld_eval_t *e, FILE *out)
{
    ld_trainer_metrics_t *m = calloc(e->nl + 1, sizeof(*m));
    if (!m)
        return;
    for (size_t i = 0; i < e->nl; i++)
        line_metrics(e, i, &m[i]);
    char a[32], b[32];
    utc(e->c.from_ms, a, sizeof(a));
    utc(e->c.to_ms, b, sizeof(b));
    fprintf(out,
            "event time [%s, %s): %llu matured examples scored, "
            "%llu still pending at the end, %llu late or duplicate, "
            "%llu dead-lettered records\n",
            a, b, (unsigned long long)e->cnt.scored,
            (unsigned long long)e->cnt.pending,
            (unsigned long long)e->cnt.absorbed,
            (unsigned long long)e->cnt.dead);
    print_overall(e, out, m);
    if (e->cnt.copies)
        fprintf(out,
                "scoring copies: %zu x %zu bytes of weights (%llu "
                "refreshes)\n",
                e->cnt.copies, e->cnt.copy_bytes,
                (unsigned long long)e->cnt.refreshes);
    print_windows(e, out);
    free(m);
}

/* ---- JSON --------------------------------------------------------------- */

static json_t *num(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static json_t *metrics_json(const ld_trainer_metrics_t *m)
{
    json_t *o = json_object();
    json_object_set_new(o, "examples", json_integer((json_int_t)m->examples));
    json_object_set_new(o, "logloss", num(m->logloss));
    json_object_set_new(o, "auc", num(m->auc));
    json_object_set_new(o, "accuracy", num(m->accuracy));
    json_object_set_new(o, "rmse", num(m->rmse));
    json_object_set_new(o, "mean_prediction", num(m->mean_prediction));
    json_object_set_new(o, "mean_label", num(m->mean_label));
    json_object_set_new(o, "calibration", num(m->calibration));
    return o;
}

static const char *const kind_names[] = {"continual", "frozen", "cadence",
                                         "staleness"};

static json_t *line_json(ld_eval_t *e, size_t i, double ref)
{
    const line_t *l = &e->l[i];
    ld_trainer_metrics_t m;
    line_metrics(e, i, &m);
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(l->name));
    json_object_set_new(o, "kind", json_string(kind_names[l->kind]));
    if (l->kind == LINE_CADENCE || l->kind == LINE_STALE)
        json_object_set_new(
            o, l->kind == LINE_CADENCE ? "cadence_ms" : "staleness_ms",
            json_integer(l->param));
    json_object_set_new(o, "eval_from_ms", json_integer(l->eval_from));
    json_object_set_new(o, "eval_to_ms", json_integer(l->eval_to));
    json_object_set_new(o, "overall", metrics_json(&m));
    double v = primary(e->model, &m);
    json_object_set_new(o, "relative_loss",
                        ref > 0 ? num((v - ref) / ref) : json_null());
    double *auc = calloc(e->nbuckets, sizeof(double));
    int have_auc = auc && e->model == LD_MODEL_LOGISTIC &&
                   eval_line_bucket_aucs(l, e->nbuckets, auc) == 0;
    json_t *w = json_array();
    for (size_t b = 0; b < e->nbuckets; b++) {
        ld_trainer_metrics_t bm;
        eval_acc_metrics(&l->bucket[b], e->model, &bm);
        if (have_auc)
            bm.auc = auc[b];
        json_t *x = metrics_json(&bm);
        json_object_set_new(
            x, "start_ms",
            json_integer(e->c.from_ms + (int64_t)b * e->c.bucket_ms));
        json_array_append_new(w, x);
    }
    free(auc);
    json_object_set_new(o, "windows", w);
    return o;
}

static json_t *inputs_json(const ld_eval_inputs_t *in)
{
    json_t *o = json_object();
    json_object_set_new(o, "config_sha256", json_string(in->config_hash_hex));
    json_t *r = json_array();
    for (size_t i = 0; i < in->nranges; i++) {
        json_t *x = json_object();
        json_object_set_new(x, "topic", json_string(in->range_topic[i]));
        json_object_set_new(x, "partition",
                            json_integer(in->range_partition[i]));
        json_object_set_new(x, "first_offset",
                            json_integer(in->range_first[i]));
        json_object_set_new(x, "end_offset", json_integer(in->range_end[i]));
        json_array_append_new(r, x);
    }
    json_object_set_new(o, "offsets", r);
    json_t *c = json_array();
    for (size_t i = 0; i < in->nckpt; i++) {
        json_t *x = json_object();
        json_object_set_new(x, "name", json_string(in->ckpt_name[i]));
        json_object_set_new(x, "version",
                            json_integer((json_int_t)in->ckpt_version[i]));
        json_object_set_new(x, "params_sha256",
                            json_string(in->ckpt_sha_hex[i]));
        json_array_append_new(c, x);
    }
    json_object_set_new(o, "checkpoints", c);
    return o;
}

static json_t *counts_json(const ld_eval_t *e)
{
    json_t *o = json_object();
    /* Not the records read: how many other partitions' records come
     * before the range is decided depends on fetch timing. */
    json_object_set_new(o, "scored", json_integer((json_int_t)e->cnt.scored));
    json_object_set_new(o, "pending", json_integer((json_int_t)e->cnt.pending));
    json_object_set_new(o, "late_or_duplicate",
                        json_integer((json_int_t)e->cnt.absorbed));
    json_object_set_new(o, "trained", json_integer((json_int_t)e->cnt.trained));
    json_object_set_new(o, "refused", json_integer((json_int_t)e->cnt.refused));
    json_object_set_new(o, "refreshes",
                        json_integer((json_int_t)e->cnt.refreshes));
    json_object_set_new(o, "scoring_copies",
                        json_integer((json_int_t)e->cnt.copies));
    json_object_set_new(o, "bytes_per_copy",
                        json_integer((json_int_t)e->cnt.copy_bytes));
    return o;
}

static const char *const model_names[] = {"logistic", "linear", "softmax"};

ld_err_t ld_eval_write_json(ld_eval_t *e, const ld_eval_inputs_t *in, FILE *out)
{
    json_t *doc = json_object();
    json_object_set_new(doc, "schema", json_string("learnd.backtest.v1"));
    json_object_set_new(doc, "command",
                        json_string(in ? in->command : "backtest"));
    if (in && in->model)
        json_object_set_new(doc, "model", json_string(in->model));
    json_object_set_new(doc, "model_kind", json_string(model_names[e->model]));
    json_object_set_new(doc, "metric", json_string(primary_name(e->model)));
    json_object_set_new(doc, "from_ms", json_integer(e->c.from_ms));
    json_object_set_new(doc, "to_ms", json_integer(e->c.to_ms));
    json_object_set_new(doc, "bucket_ms", json_integer(e->c.bucket_ms));
    json_object_set_new(doc, "warmup_ms", json_integer(e->c.warmup_ms));
    if (e->c.nstale)
        json_object_set_new(doc, "eval_window_ms",
                            json_integer(e->c.eval_window_ms));
    if (in)
        json_object_set_new(doc, "inputs", inputs_json(in));
    json_object_set_new(doc, "counts", counts_json(e));
    long ref = reference(e);
    double r = NAN;
    if (ref >= 0) {
        ld_trainer_metrics_t m;
        line_metrics(e, (size_t)ref, &m);
        r = primary(e->model, &m);
        json_object_set_new(doc, "reference", json_string(e->l[ref].name));
    }
    json_t *lines = json_array();
    for (size_t i = 0; i < e->nl; i++)
        json_array_append_new(lines, line_json(e, i, r));
    json_object_set_new(doc, "lines", lines);
    int rc = json_dumpf(doc, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(doc);
    if (rc || fputc('\n', out) == EOF)
        return LD_ERR_IO;
    return LD_OK;
}

/* ---- SVG ---------------------------------------------------------------- */

#define SVG_W 960
#define SVG_H 480
#define PAD_L 80
#define PAD_R 150
#define PAD_T 40
#define PAD_B 60

static const char *const palette[] = {
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

/* The y range of every line's windowed metric, padded by 5%. */
static int y_range(const ld_eval_t *e, double *lo, double *hi)
{
    *lo = INFINITY;
    *hi = -INFINITY;
    for (size_t i = 0; i < e->nl; i++)
        for (size_t b = 0; b < e->nbuckets; b++) {
            ld_trainer_metrics_t m;
            eval_acc_metrics(&e->l[i].bucket[b], e->model, &m);
            double v = primary(e->model, &m);
            if (isfinite(v)) {
                *lo = v < *lo ? v : *lo;
                *hi = v > *hi ? v : *hi;
            }
        }
    if (!isfinite(*lo))
        return -1;
    double pad = (*hi - *lo) * 0.05 + 1e-9;
    *lo -= pad;
    *hi += pad;
    return 0;
}

static void svg_axes(const ld_eval_t *e, FILE *out, double lo, double hi)
{
    const int pw = SVG_W - PAD_L - PAD_R, ph = SVG_H - PAD_T - PAD_B;
    fprintf(out,
            "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" "
            "fill=\"none\" stroke=\"#333\"/>\n",
            PAD_L, PAD_T, pw, ph);
    for (int k = 0; k <= 5; k++) {
        double v = lo + (hi - lo) * k / 5.0;
        double y = PAD_T + ph - ph * k / 5.0;
        fprintf(out,
                "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" "
                "stroke=\"#ddd\"/>\n<text x=\"%d\" y=\"%.1f\" "
                "text-anchor=\"end\">%.4f</text>\n",
                PAD_L, y, PAD_L + pw, y, PAD_L - 6, y + 4, v);
    }
    int64_t span = e->c.to_ms - e->c.from_ms;
    for (int k = 0; k <= 4; k++) {
        int64_t t = e->c.from_ms + span * k / 4;
        char ts[32];
        time_t s = (time_t)(t / 1000);
        struct tm tm;
        gmtime_r(&s, &tm);
        strftime(ts, sizeof(ts), span > 2 * 86400000 ? "%m-%d %H:%M" : "%H:%M",
                 &tm);
        double x = PAD_L + pw * k / 4.0;
        fprintf(out,
                "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n",
                x, PAD_T + ph + 18, ts);
    }
    fprintf(out,
            "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">event time "
            "(UTC)</text>\n<text x=\"18\" y=\"%d\" text-anchor=\"middle\" "
            "transform=\"rotate(-90 18 %d)\">%s per window</text>\n",
            PAD_L + pw / 2, SVG_H - 14, PAD_T + ph / 2, PAD_T + ph / 2,
            primary_name(e->model));
}

static void svg_lines(const ld_eval_t *e, FILE *out, double lo, double hi)
{
    const int pw = SVG_W - PAD_L - PAD_R, ph = SVG_H - PAD_T - PAD_B;
    double span = (double)(e->c.to_ms - e->c.from_ms);
    for (size_t i = 0; i < e->nl; i++) {
        const char *col = palette[i % 10];
        fprintf(out,
                "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" "
                "points=\"",
                col);
        for (size_t b = 0; b < e->nbuckets; b++) {
            ld_trainer_metrics_t m;
            eval_acc_metrics(&e->l[i].bucket[b], e->model, &m);
            double v = primary(e->model, &m);
            if (!isfinite(v))
                continue;
            double mid = ((double)b + 0.5) * (double)e->c.bucket_ms;
            if (mid > span)
                mid = span;
            fprintf(out, "%.1f,%.1f ", PAD_L + pw * mid / span,
                    PAD_T + ph - ph * (v - lo) / (hi - lo));
        }
        fprintf(out, "\"/>\n");
        int ly = PAD_T + 10 + 20 * (int)i;
        fprintf(out,
                "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" "
                "stroke-width=\"3\"/>\n<text x=\"%d\" y=\"%d\">",
                SVG_W - PAD_R + 12, ly, SVG_W - PAD_R + 36, ly, col,
                SVG_W - PAD_R + 42, ly + 4);
        for (const char *p = e->l[i].name; *p; p++)
            fputs(*p == '<'   ? "&lt;"
                  : *p == '&' ? "&amp;"
                              : (char[]){*p, 0},
                  out);
        fprintf(out, "</text>\n");
    }
}

ld_err_t ld_eval_write_svg(ld_eval_t *e, const int64_t *marks,
                           const char *const *mark_names, size_t nmarks,
                           FILE *out)
{
    double lo, hi;
    char w[32];
    fmt_ms(e->c.bucket_ms, w, sizeof(w));
    if (y_range(e, &lo, &hi)) {
        lo = 0;
        hi = 1;
    }
    fprintf(out,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg "
            "xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" "
            "font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" "
            "fill=\"white\"/>\n<text x=\"%d\" y=\"24\" font-size=\"15\">%s "
            "per %s window of event time, by model</text>\n",
            SVG_W, SVG_H, SVG_W, SVG_H, PAD_L, primary_name(e->model), w);
    svg_axes(e, out, lo, hi);
    const int pw = SVG_W - PAD_L - PAD_R, ph = SVG_H - PAD_T - PAD_B;
    double span = (double)(e->c.to_ms - e->c.from_ms);
    for (size_t i = 0; i < nmarks; i++) {
        if (marks[i] < e->c.from_ms || marks[i] >= e->c.to_ms)
            continue;
        double x = PAD_L + pw * (double)(marks[i] - e->c.from_ms) / span;
        fprintf(out,
                "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" "
                "stroke=\"#555\" stroke-dasharray=\"5,4\"/>\n<text "
                "x=\"%.1f\" y=\"%d\" fill=\"#555\">%s</text>\n",
                x, PAD_T, x, PAD_T + ph, x + 4, PAD_T + 14 + 14 * (int)(i % 4),
                mark_names ? mark_names[i] : "");
    }
    svg_lines(e, out, lo, hi);
    if (fprintf(out, "</svg>\n") < 0)
        return LD_ERR_IO;
    return LD_OK;
}
