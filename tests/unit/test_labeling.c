/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of labeling/: every join rule as a table of scripts with exact
 * outputs and counters, the feature codec, the byte accounting, and property
 * tests over random interleavings and restarts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "labeling/internal.h"
#include "labeling/labeling.h"
#include "schemas/learnd.pb-c.h"

/* ---- helpers ------------------------------------------------------------ */

static ld_labeling_conf_t base_conf(void)
{
    ld_labeling_conf_t c;
    memset(&c, 0, sizeof(c));
    c.window_ms = 100;
    c.max_ooo_ms = 0;
    c.idle_timeout_ms = 1000;
    c.late_horizon_ms = 50;
    c.aggregate = LD_AGG_FIRST;
    c.default_label = 0;
    c.mode = LD_MODE_WINDOW;
    c.late_policy = LD_LATE_DROP;
    c.max_pending = 1000000;
    c.at_bound = LD_BOUND_PAUSE;
    return c;
}

/* Features derived from the key so outputs show they travel intact. */
static void key_features(const char *key, uint32_t *idx, float *val,
                         ld_features_t *x)
{
    uint32_t h = 2166136261u;
    for (const char *p = key; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    for (uint32_t i = 0; i < 3; i++) {
        idx[i] = (h >> i) & 0xfffff;
        val[i] = i == 2 ? 0.5f : 1.0f;
    }
    memset(x, 0, sizeof(*x));
    x->idx = idx;
    x->val = val;
    x->nnz = 3;
}

/* The joiner hands features back sorted by index, ties in input order. */
static void sort_pairs(uint32_t *idx, float *val, uint32_t n)
{
    for (uint32_t i = 1; i < n; i++) {
        uint32_t ix = idx[i], k = i;
        float v = val[i];
        for (; k > 0 && idx[k - 1] > ix; k--) {
            idx[k] = idx[k - 1];
            val[k] = val[k - 1];
        }
        idx[k] = ix;
        val[k] = v;
    }
}

typedef struct sbuf {
    char *s;
    size_t len, cap;
} sbuf_t;

static void sb_add(sbuf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char tmp[4096];
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < sizeof(tmp));
    if (b->len + (size_t)n + 1 > b->cap) {
        b->cap = (b->len + (size_t)n + 1) * 2;
        b->s = realloc(b->s, b->cap);
        assert_non_null(b->s);
    }
    memcpy(b->s + b->len, tmp, (size_t)n + 1);
    b->len += (size_t)n;
}

/* Short form "type key label label_time" of every polled example; checks
 * the features came back as key_features() made them. */
static void drain(ld_joiner_t *j, sbuf_t *b)
{
    ld_example_t ex;
    while (ld_joiner_poll(j, &ex)) {
        uint32_t idx[3];
        float val[3];
        ld_features_t x;
        key_features(ex.event_id, idx, val, &x);
        sort_pairs(idx, val, 3);
        assert_int_equal(ex.x.nnz, 3);
        assert_memory_equal(ex.x.idx, idx, sizeof(idx));
        assert_memory_equal(ex.x.val, val, sizeof(val));
        sb_add(b, "%s%s %s %g %lld", b->len ? "|" : "",
               ld_sample_type_name(ex.sample_type), ex.event_id,
               (double)ex.label, (long long)ex.label_time_ms);
    }
}

/* Runs a script: "E p off key t", "L p off key t value", "N p off key t"
 * (a labels-topic record without a label), "A k p off wm",
 * "I now" (idle check), "F" (flush: every side advanced far ahead), joined
 * by ';'. Partitions 0..nparts-1 are assigned. Polls after every step. */
static ld_joiner_t *run(const ld_labeling_conf_t *c, int nparts,
                        const char *script, sbuf_t *out)
{
    char err[128];
    ld_joiner_t *j = ld_joiner_new(c, err, sizeof(err));
    assert_non_null(j);
    for (int p = 0; p < nparts; p++)
        assert_int_equal(ld_joiner_assign(j, p), LD_OK);
    char *s = strdup(script), *save = NULL;
    for (char *tok = strtok_r(s, ";", &save); tok;
         tok = strtok_r(NULL, ";", &save)) {
        int p;
        long long off, t, now, wm;
        char key[64];
        float v;
        int k;
        while (*tok == ' ')
            tok++;
        if (sscanf(tok, "E %d %lld %63s %lld", &p, &off, key, &t) == 4) {
            uint32_t idx[3];
            float val[3];
            ld_features_t x;
            key_features(key, idx, val, &x);
            assert_int_equal(
                ld_joiner_add_event(j, p, off, key, strlen(key), t, &x), LD_OK);
        } else if (sscanf(tok, "L %d %lld %63s %lld %f", &p, &off, key, &t,
                          &v) == 5) {
            assert_int_equal(
                ld_joiner_add_label(j, p, off, key, strlen(key), t, v), LD_OK);
        } else if (sscanf(tok, "N %d %lld %63s %lld", &p, &off, key, &t) == 4) {
            assert_int_equal(
                ld_joiner_add_nolabel(j, p, off, key, strlen(key), t), LD_OK);
        } else if (sscanf(tok, "A %d %d %lld %lld", &k, &p, &off, &wm) == 4) {
            ld_wm_advance_t a = {(ld_topic_kind_t)k, p, off, wm};
            assert_int_equal(ld_joiner_apply_advance(j, &a), LD_OK);
        } else if (sscanf(tok, "I %lld", &now) == 1) {
            ld_joiner_idle_advance(j, now, NULL, NULL);
        } else if (tok[0] == 'F') {
            for (int q = 0; q < nparts; q++)
                for (int kk = 0; kk < 2; kk++) {
                    ld_wm_advance_t a = {(ld_topic_kind_t)kk, q, 1 << 30,
                                         INT64_C(1) << 50};
                    assert_int_equal(ld_joiner_apply_advance(j, &a), LD_OK);
                }
        } else {
            fail_msg("bad script step '%s'", tok);
        }
        drain(j, out);
    }
    free(s);
    return j;
}

/* ---- table-driven join rules -------------------------------------------- */

typedef struct jcase {
    const char *name;
    int mode, late_policy, aggregate;
    int64_t ooo;
    const char *script;
    const char *expect;
    /* counters: late events, late labels, duplicates, joined, after window,
     * late dropped, unmatched, records without a label */
    uint64_t ev_late, lb_late, dup, joined, after, late_dropped, unmatched,
        nolabel;
} jcase_t;

#define W    LD_MODE_WINDOW
#define FN   LD_MODE_FAKE_NEGATIVE
#define DROP LD_LATE_DROP
#define CORR LD_LATE_CORRECT

static const jcase_t cases[] = {
    {"label inside the window", W, DROP, LD_AGG_FIRST, 0,
     "E 0 0 a 1000; L 0 0 a 1050 1; F", "pos a 1 1050", 0, 0, 0, 1, 0, 0, 0, 0},
    {"label exactly at the boundary", W, DROP, LD_AGG_FIRST, 0,
     "E 0 0 a 1000; L 0 0 a 1100 1; F", "pos a 1 1100", 0, 0, 0, 1, 0, 0, 0, 0},
    {"label 1 ms after the window, drop", W, DROP, LD_AGG_FIRST, 0,
     "E 0 0 a 1000; L 0 0 a 1101 1; F", "default_neg a 0 -1", 0, 0, 0, 0, 0, 0,
     1, 0},
    {"late label, correct", W, CORR, LD_AGG_FIRST, 0,
     "E 0 0 a 1000; L 0 0 a 1120 1; F",
     "default_neg a 0 -1|delayed_pos a 1 1120", 0, 0, 0, 0, 1, 0, 0, 0},
    {"late label at the horizon edge and beyond, correct", W, CORR,
     LD_AGG_FIRST, 0,
     "E 0 0 a 1000; E 0 1 b 1000; L 0 0 a 1150 1; L 0 1 b 1151 1; F",
     "default_neg a 0 -1|default_neg b 0 -1|delayed_pos a 1 1150", 0, 0, 0, 0,
     1, 0, 1, 0},
    {"late label after an in-window positive is not a correction", W, CORR,
     LD_AGG_FIRST, 0, "E 0 0 a 1000; L 0 0 a 1050 1; L 0 1 a 1120 1; F",
     "pos a 1 1050", 0, 0, 0, 1, 1, 1, 0, 0},
    {"two late labels: the earliest corrects once", W, CORR, LD_AGG_FIRST, 20,
     "E 0 0 a 1000; L 0 0 a 1130 1; L 0 1 a 1120 2; F",
     "default_neg a 0 -1|delayed_pos a 2 1120", 0, 0, 0, 0, 2, 1, 0, 0},
    {"label before its event", W, DROP, LD_AGG_FIRST, 0,
     "L 0 0 a 1010 1; E 0 0 a 1000; F", "pos a 1 1010", 0, 0, 0, 1, 0, 0, 0, 0},
    {"label before its event, too early for it", W, DROP, LD_AGG_FIRST, 0,
     "L 0 0 a 899 1; E 0 0 a 1000; F", "default_neg a 0 -1", 0, 0, 0, 0, 0, 0,
     1, 0},
    {"labels aggregated: first", W, DROP, LD_AGG_FIRST, 0,
     "E 0 0 a 1000; L 0 0 a 1050 1; L 0 1 a 1050 3; L 0 2 a 1080 2; F",
     "pos a 1 1050", 0, 0, 0, 3, 0, 0, 0, 0},
    {"labels aggregated: last", W, DROP, LD_AGG_LAST, 0,
     "E 0 0 a 1000; L 0 0 a 1050 1; L 0 1 a 1080 3; L 0 2 a 1080 2; F",
     "pos a 2 1080", 0, 0, 0, 3, 0, 0, 0, 0},
    {"labels aggregated: max", W, DROP, LD_AGG_MAX, 0,
     "E 0 0 a 1000; L 0 0 a 1050 1; L 0 1 a 1060 3; L 0 2 a 1080 3; F",
     "pos a 3 1060", 0, 0, 0, 3, 0, 0, 0, 0},
    {"labels aggregated: sum", W, DROP, LD_AGG_SUM, 30,
     "L 0 0 a 1050 1; E 0 0 a 1000; L 0 1 a 1080 3; L 0 2 a 1060 2; F",
     "pos a 6 1080", 0, 0, 0, 3, 0, 0, 0, 0},
    {"duplicate event: first wins", W, DROP, LD_AGG_FIRST, 0,
     "E 0 0 a 1000; E 0 1 a 1010; L 0 0 a 1095 1; F", "pos a 1 1095", 0, 0, 1,
     1, 0, 0, 0, 0},
    {"same key after window + horizon is a new event", W, DROP, LD_AGG_FIRST, 0,
     "E 0 0 a 1000; E 0 1 a 1101; F", "default_neg a 0 -1|default_neg a 0 -1",
     0, 0, 0, 0, 0, 0, 0, 0},
    {"out of order inside max_out_of_orderness", W, DROP, LD_AGG_FIRST, 20,
     "E 0 0 a 1000; E 0 1 b 980; F", "default_neg b 0 -1|default_neg a 0 -1", 0,
     0, 0, 0, 0, 0, 0, 0},
    {"out of order beyond max_out_of_orderness", W, DROP, LD_AGG_FIRST, 20,
     "E 0 0 a 1000; E 0 1 b 979; L 0 0 a 1050 1; L 0 1 a 1029 1; F",
     "pos a 1 1050", 1, 1, 0, 1, 0, 0, 0, 0},
    {"release order (decision time, partition, offset)", W, DROP, LD_AGG_FIRST,
     10, "E 1 0 c 1000; E 0 0 b 1000; E 0 1 a 1000; E 1 1 d 999; F",
     "default_neg d 0 -1|default_neg b 0 -1|default_neg a 0 -1|"
     "default_neg c 0 -1",
     0, 0, 0, 0, 0, 0, 0, 0},
    {"decision waits for the slowest partition of both topics", W, DROP,
     LD_AGG_FIRST, 0,
     "E 0 0 a 1000; E 0 1 c 1101; L 0 0 x 5000 1; E 1 0 b 5000; L 1 0 y 1100 1",
     "", 0, 0, 0, 0, 0, 0, 0, 0},
    {"decision once every watermark passed it", W, DROP, LD_AGG_FIRST, 0,
     "E 0 0 a 1000; E 0 1 c 1101; L 0 0 x 5000 1; E 1 0 b 5000; L 1 0 y 1101 1",
     "default_neg a 0 -1", 0, 0, 0, 0, 0, 0, 0, 0},
    {"fake_negative: negative at once, positive when the label comes", FN, DROP,
     LD_AGG_FIRST, 0, "E 0 0 a 1000; L 0 0 a 1050 1; F",
     "fake_neg a 0 -1|delayed_pos a 1 1050", 0, 0, 0, 1, 0, 0, 0, 0},
    {"fake_negative: a zero label adds nothing", FN, DROP, LD_AGG_FIRST, 0,
     "E 0 0 a 1000; L 0 0 a 1050 0; F", "fake_neg a 0 -1", 0, 0, 0, 1, 0, 0, 0,
     0},
    {"fake_negative: label before the event time", FN, DROP, LD_AGG_FIRST, 0,
     "L 0 0 a 990 1; E 0 0 a 1000; F", "fake_neg a 0 -1|delayed_pos a 1 990", 0,
     0, 0, 1, 0, 0, 0, 0},
    {"fake_negative with correct: late label still corrects", FN, CORR,
     LD_AGG_FIRST, 0, "E 0 0 a 1000; L 0 0 a 1140 1; F",
     "fake_neg a 0 -1|delayed_pos a 1 1140", 0, 0, 0, 0, 1, 0, 0, 0},
    /* Records without a label (pipeline label_mode equals: a "view" when
     * label_equals is "click"), docs/LABELING.md "Records that carry no
     * label". N is the view, L ... 1 the click. */
    {"view before click", W, DROP, LD_AGG_FIRST, 0,
     "E 0 0 a 1000; N 0 0 a 1020; L 0 1 a 1050 1; F", "pos a 1 1050", 0, 0, 0,
     1, 0, 0, 0, 1},
    {"view only", W, DROP, LD_AGG_FIRST, 0, "E 0 0 a 1000; N 0 0 a 1020; F",
     "default_neg a 0 -1", 0, 0, 0, 0, 0, 0, 0, 1},
    {"view then late click, correct", W, CORR, LD_AGG_FIRST, 0,
     "E 0 0 a 1000; N 0 0 a 1020; L 0 1 a 1120 1; F",
     "default_neg a 0 -1|delayed_pos a 1 1120", 0, 0, 0, 0, 1, 0, 0, 1},
    {"click then view", W, DROP, LD_AGG_FIRST, 0,
     "E 0 0 a 1000; L 0 0 a 1030 1; N 0 1 a 1060; F", "pos a 1 1030", 0, 0, 0,
     1, 0, 0, 0, 1},
    {"click then view, last", W, DROP, LD_AGG_LAST, 0,
     "E 0 0 a 1000; L 0 0 a 1030 1; N 0 1 a 1060; F", "pos a 1 1030", 0, 0, 0,
     1, 0, 0, 0, 1},
    {"views between clicks, max: the first click", W, DROP, LD_AGG_MAX, 0,
     "E 0 0 a 1000; N 0 0 a 1010; L 0 1 a 1020 1; L 0 2 a 1040 1; F",
     "pos a 1 1020", 0, 0, 0, 2, 0, 0, 0, 1},
    {"views between clicks, sum: the number of clicks", W, DROP, LD_AGG_SUM, 0,
     "E 0 0 a 1000; N 0 0 a 1010; L 0 1 a 1020 1; N 0 2 a 1030; "
     "L 0 3 a 1040 1; N 0 4 a 1050; F",
     "pos a 2 1040", 0, 0, 0, 2, 0, 0, 0, 3},
    {"view before its event waits nowhere", W, DROP, LD_AGG_FIRST, 0,
     "N 0 0 a 990; E 0 0 a 1000; L 0 1 a 1050 1; F", "pos a 1 1050", 0, 0, 0, 1,
     0, 0, 0, 1},
    {"view older than the watermark: not a late label", W, DROP, LD_AGG_FIRST,
     0, "E 0 0 a 1000; L 0 0 a 1050 1; N 0 1 a 1040; F", "pos a 1 1050", 0, 0,
     0, 1, 0, 0, 0, 1},
    {"late view after the window corrects nothing", W, CORR, LD_AGG_FIRST, 0,
     "E 0 0 a 1000; N 0 0 a 1120; F", "default_neg a 0 -1", 0, 0, 0, 0, 0, 0, 0,
     1},
    {"a view moves the labels watermark on", W, DROP, LD_AGG_FIRST, 0,
     "E 0 0 a 1000; E 0 1 c 1300; E 1 0 b 5000; L 1 0 y 5000 1; N 0 0 q 1200",
     "default_neg a 0 -1", 0, 0, 0, 0, 0, 0, 0, 1},
    {"fake_negative: view then click", FN, DROP, LD_AGG_FIRST, 0,
     "E 0 0 a 1000; N 0 0 a 1020; L 0 1 a 1050 1; F",
     "fake_neg a 0 -1|delayed_pos a 1 1050", 0, 0, 0, 1, 0, 0, 0, 1},
    {"fake_negative with correct: view then late click", FN, CORR, LD_AGG_FIRST,
     0, "E 0 0 a 1000; N 0 0 a 1020; L 0 1 a 1140 1; F",
     "fake_neg a 0 -1|delayed_pos a 1 1140", 0, 0, 0, 0, 1, 0, 0, 1},
    /* Contrast: a numeric label 0 is a label (label_mode numeric). */
    {"numeric label 0 is an observed label", W, DROP, LD_AGG_FIRST, 0,
     "E 0 0 a 1000; L 0 0 a 1020 0; L 0 1 a 1050 1; F", "pos a 0 1020", 0, 0, 0,
     2, 0, 0, 0, 0},
};

static void test_join_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const jcase_t *tc = &cases[i];
        ld_labeling_conf_t c = base_conf();
        c.mode = tc->mode;
        c.late_policy = tc->late_policy;
        c.aggregate = tc->aggregate;
        c.max_ooo_ms = tc->ooo;
        sbuf_t out = {0};
        sb_add(&out, "%s", "");
        ld_joiner_t *j = run(&c, 2, tc->script, &out);
        ld_joiner_stats_t st;
        ld_joiner_stats(j, &st);
        if (strcmp(out.s, tc->expect) != 0)
            fail_msg("case '%s':\n got    '%s'\n expect '%s'", tc->name, out.s,
                     tc->expect);
        uint64_t got[8] = {st.events_late,         st.labels_late,
                           st.events_duplicate,    st.labels_joined,
                           st.labels_after_window, st.late_labels_dropped,
                           st.labels_unmatched,    st.labels_nolabel};
        uint64_t want[8] = {tc->ev_late,   tc->lb_late, tc->dup,
                            tc->joined,    tc->after,   tc->late_dropped,
                            tc->unmatched, tc->nolabel};
        for (int k = 0; k < 8; k++)
            if (got[k] != want[k])
                fail_msg("case '%s': counter %d is %llu, expected %llu",
                         tc->name, k, (unsigned long long)got[k],
                         (unsigned long long)want[k]);
        ld_joiner_destroy(j);
        free(out.s);
    }
}

/* ---- the rules table of docs/LABELING.md -----------------------------------
 */

/* Copies s without backticks and surrounding blanks into out. */
static void cell_text(const char *s, size_t n, char *out, size_t size)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < size; i++)
        if (s[i] != '`')
            out[k++] = s[i];
    out[k] = '\0';
    char *b = out;
    while (*b == ' ')
        b++;
    memmove(out, b, strlen(b) + 1);
    for (k = strlen(out); k > 0 && out[k - 1] == ' ';)
        out[--k] = '\0';
}

/* One row: "| case | mode, late_policy, aggregate | records | examples |".
 * The records "E k t", "L k t v", "N k t" become run() steps on partition 0
 * with offsets in order per topic, then "F". */
static void doc_row(const char *line, int *rows)
{
    char cell[4][512];
    const char *p = line + 1;
    for (int i = 0; i < 4; i++) {
        const char *bar = strchr(p, '|');
        assert_non_null(bar);
        cell_text(p, (size_t)(bar - p), cell[i], sizeof(cell[i]));
        p = bar + 1;
    }
    if (!strcmp(cell[0], "case") || cell[0][0] == '-')
        return; /* header and separator */
    char mode[32], late[32], agg[32];
    if (sscanf(cell[1], "%31[^,], %31[^,], %31s", mode, late, agg) != 3)
        fail_msg("rules table row '%s': bad config '%s'", cell[0], cell[1]);
    ld_labeling_conf_t c = base_conf();
    c.mode =
        !strcmp(mode, "fake_negative") ? LD_MODE_FAKE_NEGATIVE : LD_MODE_WINDOW;
    assert_true(!strcmp(mode, "window") || !strcmp(mode, "fake_negative"));
    c.late_policy = !strcmp(late, "correct") ? LD_LATE_CORRECT : LD_LATE_DROP;
    assert_true(!strcmp(late, "drop") || !strcmp(late, "correct"));
    static const char *const aggs[] = {"first", "last", "max", "sum"};
    c.aggregate = -1;
    for (int i = 0; i < 4; i++)
        if (!strcmp(agg, aggs[i]))
            c.aggregate = i;
    assert_true(c.aggregate >= 0);
    sbuf_t script = {0};
    long long off[2] = {0, 0};
    char *save = NULL;
    for (char *tok = strtok_r(cell[2], ";", &save); tok;
         tok = strtok_r(NULL, ";", &save)) {
        char kind, key[64];
        long long t;
        float v;
        while (*tok == ' ')
            tok++;
        int n = sscanf(tok, "%c %63s %lld %f", &kind, key, &t, &v);
        if (kind == 'E' && n == 3)
            sb_add(&script, "E 0 %lld %s %lld; ", off[0]++, key, t);
        else if (kind == 'L' && n == 4)
            sb_add(&script, "L 0 %lld %s %lld %g; ", off[1]++, key, t,
                   (double)v);
        else if (kind == 'N' && n == 3)
            sb_add(&script, "N 0 %lld %s %lld; ", off[1]++, key, t);
        else
            fail_msg("rules table row '%s': bad record '%s'", cell[0], tok);
    }
    sb_add(&script, "F");
    char want[512];
    size_t k = 0;
    for (const char *q = cell[3]; *q && k + 1 < sizeof(want); q++) {
        if (q[0] == ';' && q[1] == ' ')
            q++, want[k++] = '|';
        else
            want[k++] = *q;
    }
    want[k] = '\0';
    sbuf_t out = {0};
    sb_add(&out, "%s", "");
    ld_joiner_t *j = run(&c, 1, script.s, &out);
    if (strcmp(out.s, want) != 0)
        fail_msg("docs/LABELING.md rules table row '%s':\n got    '%s'\n "
                 "expect '%s'",
                 cell[0], out.s, want);
    ld_joiner_destroy(j);
    free(out.s);
    free(script.s);
    (*rows)++;
}

/* The rules table of docs/LABELING.md is what the joiner does, row by row. */
static void test_rules_doc(void **state)
{
    (void)state;
    FILE *f = fopen(LD_SOURCE_DIR "/docs/LABELING.md", "r");
    assert_non_null(f);
    char line[1024];
    int in = 0, rows = 0, seen = 0;
    static const char *const must[] = {"| view before click |", "| view only |",
                                       "| view then late click |",
                                       "| click then view |"};
    while (fgets(line, sizeof(line), f)) {
        if (strstr(line, "<!-- rules-table: begin"))
            in = 1;
        else if (strstr(line, "<!-- rules-table: end"))
            in = 0;
        else if (in && line[0] == '|')
            doc_row(line, &rows);
        for (int i = 0; in && i < 4; i++)
            if (!strncmp(line, must[i], strlen(must[i])))
                seen |= 1 << i;
    }
    fclose(f);
    assert_true(rows >= 16);
    assert_int_equal(seen, 15);
}

/* ---- idle partitions ---------------------------------------------------- */

typedef struct advlog {
    ld_wm_advance_t a[16];
    int n;
} advlog_t;

static void on_adv(const ld_wm_advance_t *a, void *opaque)
{
    advlog_t *l = opaque;
    assert_true(l->n < 16);
    l->a[l->n++] = *a;
}

static void test_idle_partition(void **state)
{
    (void)state;
    ld_labeling_conf_t c = base_conf();
    sbuf_t out = {0};
    sb_add(&out, "%s", "");
    /* Partition 1 never sends anything: nothing can be decided. */
    ld_joiner_t *j =
        run(&c, 2, "E 0 0 a 1000; E 0 1 b 1300; L 0 0 z 1400 1", &out);
    assert_string_equal(out.s, "");
    advlog_t log = {0};
    ld_joiner_idle_advance(j, 0, on_adv, &log);
    ld_joiner_idle_advance(j, 999, on_adv, &log);
    assert_int_equal(log.n, 0);
    /* Partition 0 stays busy, partition 1 went quiet for idle_timeout. */
    uint32_t idx[3];
    float val[3];
    ld_features_t x;
    key_features("c", idx, val, &x);
    assert_int_equal(ld_joiner_add_event(j, 0, 2, "c", 1, 1310, &x), LD_OK);
    assert_int_equal(ld_joiner_add_label(j, 0, 1, "q", 1, 1410, 1), LD_OK);
    ld_joiner_idle_advance(j, 1000, on_adv, &log);
    assert_int_equal(log.n, 2);
    /* Both sides of partition 1 go to the lowest busy watermark (1310). */
    for (int k = 0; k < 2; k++) {
        assert_int_equal(log.a[k].kind, (ld_topic_kind_t)k);
        assert_int_equal(log.a[k].partition, 1);
        assert_int_equal(log.a[k].offset, -1);
        assert_int_equal(log.a[k].watermark_ms, 1310);
    }
    drain(j, &out);
    assert_string_equal(out.s, "default_neg a 0 -1");
    ld_joiner_stats_t st;
    ld_joiner_stats(j, &st);
    assert_int_equal(st.idle_advances, 2);
    assert_int_equal(st.watermark_ms, 1310);
    ld_joiner_destroy(j);

    /* The same advances replayed at their position give the same output. */
    free(out.s);
    out = (sbuf_t){0};
    sb_add(&out, "%s", "");
    j = run(&c, 2,
            "E 0 0 a 1000; E 0 1 b 1300; L 0 0 z 1400 1; E 0 2 c 1310; "
            "L 0 1 q 1410 1; A 0 1 -1 1310; A 1 1 -1 1310",
            &out);
    assert_string_equal(out.s, "default_neg a 0 -1");
    ld_joiner_destroy(j);
    free(out.s);
}

/* ---- bounded memory ----------------------------------------------------- */

typedef struct flowlog {
    int pause[2][2];
    int calls;
} flowlog_t;

static void on_flow(ld_topic_kind_t k, int32_t p, int pause, void *opaque)
{
    flowlog_t *f = opaque;
    f->pause[k][p] = pause;
    f->calls++;
}

static void test_bound_pause(void **state)
{
    (void)state;
    ld_labeling_conf_t c = base_conf();
    c.max_pending = 20;
    c.at_bound = LD_BOUND_PAUSE;
    char err[128];
    ld_joiner_t *j = ld_joiner_new(&c, err, sizeof(err));
    assert_int_equal(ld_joiner_assign(j, 0), LD_OK);
    assert_int_equal(ld_joiner_assign(j, 1), LD_OK);
    uint32_t idx[3];
    float val[3];
    ld_features_t x;
    /* Labels of partition 1 lag: events pile up. */
    char key[16];
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        key_features(key, idx, val, &x);
        assert_int_equal(ld_joiner_add_event(j, i % 2, i / 2, key, strlen(key),
                                             1000 + i, &x),
                         LD_OK);
    }
    assert_int_equal(ld_joiner_add_label(j, 0, 0, "z", 1, 2000, 1), LD_OK);
    assert_int_equal(ld_joiner_add_label(j, 1, 0, "z", 1, 1000, 1), LD_OK);
    flowlog_t f = {0};
    ld_joiner_flow(j, on_flow, &f);
    /* Every side ahead of the watermark (1000, labels of 1) is paused. */
    assert_int_equal(f.calls, 3);
    assert_int_equal(f.pause[LD_TOPIC_EVENTS][0], 1);
    assert_int_equal(f.pause[LD_TOPIC_EVENTS][1], 1);
    assert_int_equal(f.pause[LD_TOPIC_LABELS][0], 1);
    assert_int_equal(f.pause[LD_TOPIC_LABELS][1], 0);
    ld_joiner_stats_t st;
    ld_joiner_stats(j, &st);
    assert_int_equal(st.at_bound, 1);
    assert_int_equal(st.paused, 3);
    assert_int_equal(st.pending_events, 20);
    /* The laggard moves: everything decided, flow resumes. */
    assert_int_equal(ld_joiner_add_label(j, 1, 1, "z", 1, 2000, 1), LD_OK);
    for (int p = 0; p < 2; p++) {
        ld_wm_advance_t a = {LD_TOPIC_EVENTS, p, 10, 2000};
        assert_int_equal(ld_joiner_apply_advance(j, &a), LD_OK);
    }
    ld_example_t ex;
    int n = 0;
    while (ld_joiner_poll(j, &ex))
        n++;
    assert_int_equal(n, 20);
    f.calls = 0;
    ld_joiner_flow(j, on_flow, &f);
    assert_int_equal(f.calls, 3);
    assert_int_equal(f.pause[LD_TOPIC_EVENTS][0], 0);
    ld_joiner_stats(j, &st);
    assert_int_equal(st.paused, 0);
    assert_int_equal(st.pending_events, 0);
    ld_joiner_destroy(j);
}

static void test_bound_expire_oldest(void **state)
{
    (void)state;
    ld_labeling_conf_t c = base_conf();
    c.max_pending = 16;
    c.at_bound = LD_BOUND_EXPIRE_OLDEST;
    char err[128];
    ld_joiner_t *j = ld_joiner_new(&c, err, sizeof(err));
    assert_int_equal(ld_joiner_assign(j, 0), LD_OK);
    uint32_t idx[3];
    float val[3];
    ld_features_t x;
    char key[16];
    assert_int_equal(ld_joiner_add_label(j, 0, 0, "k3", 2, 1010, 1), LD_OK);
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        key_features(key, idx, val, &x);
        assert_int_equal(
            ld_joiner_add_event(j, 0, i, key, strlen(key), 1000 + i, &x),
            LD_OK);
    }
    ld_joiner_stats_t st;
    ld_joiner_stats(j, &st);
    assert_int_equal(st.pending_events, 16);
    assert_int_equal(st.events_expired, 4);
    assert_int_equal(st.at_bound, 1);
    /* The four oldest leave at once, out of order, with what they had. */
    sbuf_t out = {0};
    sb_add(&out, "%s", "");
    drain(j, &out);
    assert_string_equal(out.s, "default_neg k0 0 -1|default_neg k1 0 -1|"
                               "default_neg k2 0 -1|pos k3 1 1010");
    ld_joiner_destroy(j);
    free(out.s);
}

/* ---- codec and byte accounting ------------------------------------------ */

static void test_pack_roundtrip(void **state)
{
    (void)state;
    srand(7);
    pack_scratch_t sc = {0};
    for (int round = 0; round < 300; round++) {
        uint32_t nnz = (uint32_t)(rand() % 70), nd = (uint32_t)(rand() % 5);
        uint32_t idx[70], idx2[70];
        float val[70], val2[70], dense[5], dense2[5];
        uint32_t bits = (uint32_t)(rand() % 32) + 1;
        for (uint32_t i = 0; i < nnz; i++) {
            idx[i] = (uint32_t)rand() ^ ((uint32_t)rand() << 16);
            if (bits < 32)
                idx[i] &= (1u << bits) - 1;
            val[i] = (rand() % 3) ? 1.0f : (float)rand() / 7.0f - 9.0f;
            if (round % 7 == 0 && i > 0)
                idx[i] = idx[i - 1]; /* colliding slots keep their order */
        }
        if (nnz && round % 5 == 0)
            val[0] = -0.0f;
        for (uint32_t i = 0; i < nd; i++)
            dense[i] = (float)rand() / 3.0f;
        ld_features_t x = {idx, val, dense, nnz, nd};
        uint8_t w, f;
        size_t n = pack_size(&x, &sc, &w, &f);
        assert_true(n > 0 || (nnz == 0 && nd == 0));
        uint8_t *buf = malloc(n + 1);
        pack_write(buf, &x, &sc, f);
        assert_int_equal(pack_ndense(buf, f), nd);
        uint32_t ndo = 5;
        pack_read(buf, n, nnz, w, f, idx2, val2, dense2, &ndo);
        assert_int_equal(ndo, nd);
        sort_pairs(idx, val, nnz);
        assert_memory_equal(idx, idx2, nnz * sizeof(uint32_t));
        assert_memory_equal(val, val2, nnz * sizeof(float)); /* bit exact */
        assert_memory_equal(dense, dense2, nd * sizeof(float));
        free(buf);
    }
    pack_scratch_free(&sc);
}

static void test_bytes_accounting(void **state)
{
    (void)state;
    ld_labeling_conf_t c = base_conf();
    char err[128];
    ld_joiner_t *j = ld_joiner_new(&c, err, sizeof(err));
    assert_int_equal(ld_joiner_assign(j, 0), LD_OK);
    uint32_t idx[40];
    float val[40];
    /* 40 slots spread over 2^20: gaps 100, then 39 x 26214. */
    for (int i = 0; i < 40; i++) {
        idx[i] = (uint32_t)(i * 26214 + 100);
        val[i] = 1.0f;
    }
    ld_features_t x = {idx, val, NULL, 40, 0};
    const char *key = "0123456789abcdef"; /* 16 bytes */
    assert_int_equal(ld_joiner_add_event(j, 0, 0, key, 16, 1000, &x), LD_OK);
    ld_joiner_stats_t st;
    ld_joiner_stats(j, &st);
    /* Rice parameter 14 (mean gap 25561): 100 -> 1+14 bits, 26214 -> 1
     * (quotient) + 1 + 14 bits: 15 + 39 * 16 = 639 bits = 80 bytes.
     * 50 header + 16 key + 80 = 146, rounded up to 152. */
    assert_int_equal(st.bytes_entries, 152);
    /* Three values that are not 1.0: a 5-byte bitmap and 3 floats more:
     * 163, rounded up to 168. */
    val[1] = 0.25f;
    val[9] = 2.0f;
    val[39] = -1.0f;
    assert_int_equal(
        ld_joiner_add_event(j, 0, 1, "fedcba9876543210", 16, 1000, &x), LD_OK);
    ld_joiner_stats(j, &st);
    assert_int_equal(st.bytes_entries, 152 + 168);
    /* A waiting label: 28 header + 16 key = 44, rounded up to 48. */
    assert_int_equal(
        ld_joiner_add_label(j, 0, 0, "zzzzzzzzzzzzzzzz", 16, 1000, 1.0f),
        LD_OK);
    ld_joiner_stats(j, &st);
    assert_int_equal(st.bytes_entries, 152 + 168 + 48);
    assert_int_equal(st.pending_events, 2);
    assert_int_equal(st.pending_labels, 1);
    /* The features come back exactly. */
    ld_wm_advance_t a = {LD_TOPIC_EVENTS, 0, 2, 5000};
    assert_int_equal(ld_joiner_apply_advance(j, &a), LD_OK);
    a.kind = LD_TOPIC_LABELS;
    a.offset = 1;
    assert_int_equal(ld_joiner_apply_advance(j, &a), LD_OK);
    ld_example_t ex;
    assert_int_equal(ld_joiner_poll(j, &ex), 1);
    assert_int_equal(ld_joiner_poll(j, &ex), 1);
    assert_string_equal(ex.event_id, "fedcba9876543210");
    assert_memory_equal(ex.x.idx, idx, sizeof(idx));
    assert_memory_equal(ex.x.val, val, sizeof(val));
    assert_int_equal(ld_joiner_poll(j, &ex), 0);
    ld_joiner_stats(j, &st);
    assert_int_equal(st.bytes_entries, 0);
    assert_int_equal(st.labels_unmatched, 1);
    ld_joiner_destroy(j);
}

/* The less travelled paths of the store: chunks above the slab classes
 * (malloc'd, SLAB_BIG handles), one key with more waiting labels than the
 * probe distance byte holds, and offsets whose gaps exceed the 16-bit
 * offset kept relative to a resume block. */
static void test_store_paths(void **state)
{
    (void)state;
    ld_labeling_conf_t c = base_conf();
    c.aggregate = LD_AGG_SUM;
    c.max_ooo_ms = 1000;
    ld_joiner_t *j = ld_joiner_new(&c, NULL, 0);
    assert_non_null(j);
    assert_int_equal(ld_joiner_assign(j, 0), LD_OK);
    /* 300 labels of key "hot" before its event: one probe cluster of 300. */
    for (int i = 0; i < 300; i++)
        assert_int_equal(ld_joiner_add_label(j, 0, (int64_t)i * 70000, "hot", 3,
                                             1000 + i % 50, 1.0f),
                         LD_OK);
    /* Other keys interleave with the cluster and must survive removals. */
    for (int i = 0; i < 50; i++) {
        char key[16];
        snprintf(key, sizeof(key), "o%d", i);
        assert_int_equal(ld_joiner_add_label(j, 0, 21000000 + i, key,
                                             strlen(key), 1000, 2.0f),
                         LD_OK);
    }
    ld_joiner_stats_t st;
    ld_joiner_stats(j, &st);
    assert_int_equal(st.pending_labels, 350);
    /* A big event (600 features, values not all 1: > SLAB_MAX bytes). */
    enum { NB = 600 };
    uint32_t idx[NB];
    float val[NB];
    for (int i = 0; i < NB; i++) {
        idx[i] = (uint32_t)(NB - i) * 7919u % 1000003u;
        val[i] = i % 3 ? 1.0f : (float)i * 0.5f;
    }
    float dense[3] = {1.5f, -2.0f, 0.25f};
    ld_features_t x = {idx, val, dense, NB, 3};
    assert_int_equal(
        ld_joiner_add_event(j, 0, 5000000000LL, "hot", 3, 1000, &x), LD_OK);
    ld_joiner_stats(j, &st);
    assert_int_equal(st.pending_labels, 50);
    assert_int_equal(st.labels_joined, 300);
    assert_true(st.bytes_entries > 1024);
    /* Events "o<i>" claim their labels from around the removed cluster. */
    for (int i = 0; i < 50; i++) {
        char key[16];
        snprintf(key, sizeof(key), "o%d", i);
        uint32_t ki[3];
        float kv[3];
        ld_features_t kx;
        key_features(key, ki, kv, &kx);
        assert_int_equal(ld_joiner_add_event(j, 0, 5000000001LL + i * 100000,
                                             key, strlen(key), 1001, &kx),
                         LD_OK);
    }
    ld_joiner_stats(j, &st);
    assert_int_equal(st.pending_labels, 0);
    assert_int_equal(st.labels_joined, 350);
    for (int k = 0; k < 2; k++) {
        ld_wm_advance_t a = {(ld_topic_kind_t)k, 0, INT64_C(1) << 40,
                             INT64_C(1) << 50};
        assert_int_equal(ld_joiner_apply_advance(j, &a), LD_OK);
    }
    ld_example_t ex;
    assert_int_equal(ld_joiner_poll(j, &ex), 1);
    assert_string_equal(ex.event_id, "hot");
    assert_int_equal(ex.offset, 5000000000LL);
    assert_true(ex.label == 300.0f);
    assert_int_equal(ld_joiner_decision_time(j), 1100);
    assert_int_equal(ex.x.nnz, NB);
    assert_int_equal(ex.x.ndense, 3);
    assert_memory_equal(ex.x.dense, dense, sizeof(dense));
    sort_pairs(idx, val, NB);
    assert_memory_equal(ex.x.idx, idx, sizeof(idx));
    assert_memory_equal(ex.x.val, val, sizeof(val));
    for (int i = 0; i < 50; i++) {
        assert_int_equal(ld_joiner_poll(j, &ex), 1);
        assert_int_equal(ex.offset, 5000000001LL + i * 100000);
        assert_true(ex.label == 2.0f);
    }
    assert_int_equal(ld_joiner_poll(j, &ex), 0);
    ld_joiner_stats(j, &st);
    assert_int_equal(st.pending_events, 0);
    assert_int_equal(st.bytes_entries, 0);
    ld_joiner_destroy(j);
}

/* ---- property tests: interleavings and restarts ---------------------------
 */

enum { NP = 4 };

typedef struct rec {
    int kind; /* 0 event, 1 label, 2 advance (of side `side`), 3 no label */
    int side;
    int32_t part;
    int64_t off, t;
    float v;
    char key[16];
} rec_t;

typedef struct stream {
    rec_t *r;
    size_t n;
} stream_t;

/* 8 streams (events/labels x 4 partitions) with jitter, labels before
 * their events, multiple labels, late and missing labels, duplicates, and
 * labels-topic records that are no label (views) among them. */
static void gen_streams(stream_t s[2 * NP], unsigned seed, int nev)
{
    srand(seed);
    for (int k = 0; k < 2 * NP; k++) {
        s[k].r = calloc((size_t)nev * 4 + 4, sizeof(rec_t));
        s[k].n = 0;
    }
    for (int p = 0; p < NP; p++) {
        stream_t *es = &s[p], *ls = &s[NP + p];
        int64_t base = 10000;
        for (int i = 0; i < nev; i++) {
            base += rand() % 20;
            rec_t *e = &es->r[es->n];
            e->kind = 0;
            e->part = p;
            e->off = (int64_t)es->n;
            e->t = base - rand() % 40; /* ooo 30: some late */
            snprintf(e->key, sizeof(e->key), "e%d_%d", p, i);
            es->n++;
            if (rand() % 20 == 0) { /* duplicate */
                rec_t *d = &es->r[es->n];
                *d = *e;
                d->off = (int64_t)es->n;
                d->t = e->t + rand() % 50;
                es->n++;
            }
            int nl = rand() % 4;
            for (int q = 0; q < nl; q++) {
                rec_t *l = &ls->r[ls->n];
                l->kind = q == 2 || rand() % 5 == 0 ? 3 : 1;
                l->part = p;
                l->off = (int64_t)ls->n;
                l->t = e->t - 20 + rand() % 200; /* window 100, horizon 50 */
                if (rand() % 2)
                    l->t -= l->t % 10; /* ties in label time */
                l->v = (float)(rand() % 3);
                memcpy(l->key, e->key, sizeof(l->key));
                ls->n++;
            }
        }
        /* label streams are produced in label-time order with jitter */
        for (size_t a = 1; a < ls->n; a++)
            for (size_t b = a; b > 0 && ls->r[b - 1].t > ls->r[b].t + 25; b--) {
                rec_t tmp = ls->r[b - 1];
                ls->r[b - 1] = ls->r[b];
                ls->r[b] = tmp;
            }
        for (size_t a = 0; a < ls->n; a++)
            ls->r[a].off = (int64_t)a;
    }
    /* A recorded advance in the middle of one stream, and a final flush
     * advance closing every stream. */
    for (int k = 0; k < 2 * NP; k++) {
        rec_t *f = &s[k].r[s[k].n];
        f->kind = 2;
        f->side = k / NP;
        f->part = k % NP;
        f->off = (int64_t)s[k].n;
        f->t = INT64_C(1) << 40;
        s[k].n++;
    }
}

static void feed(ld_joiner_t *j, const rec_t *r)
{
    if (r->kind == 0) {
        uint32_t idx[3];
        float val[3];
        ld_features_t x;
        key_features(r->key, idx, val, &x);
        assert_int_equal(ld_joiner_add_event(j, r->part, r->off, r->key,
                                             strlen(r->key), r->t, &x),
                         LD_OK);
    } else if (r->kind == 1) {
        assert_int_equal(ld_joiner_add_label(j, r->part, r->off, r->key,
                                             strlen(r->key), r->t, r->v),
                         LD_OK);
    } else if (r->kind == 3) {
        assert_int_equal(ld_joiner_add_nolabel(j, r->part, r->off, r->key,
                                               strlen(r->key), r->t),
                         LD_OK);
    } else {
        ld_wm_advance_t a = {(ld_topic_kind_t)r->side, r->part, r->off, r->t};
        assert_int_equal(ld_joiner_apply_advance(j, &a), LD_OK);
    }
}

/* Full JSON of every example, so features and every field are compared. */
static void drain_json(ld_joiner_t *j, sbuf_t *b)
{
    ld_example_t ex;
    char buf[2048];
    while (ld_joiner_poll(j, &ex)) {
        size_t n = ld_labeling_example_json(&ex, buf, sizeof(buf));
        assert_true(n > 0 && n < sizeof(buf));
        sb_add(b, "%s\n", buf);
    }
}

static ld_labeling_conf_t prop_conf(int variant)
{
    ld_labeling_conf_t c = base_conf();
    c.max_ooo_ms = 30;
    c.mode = variant & 1 ? LD_MODE_FAKE_NEGATIVE : LD_MODE_WINDOW;
    c.late_policy = variant & 2 ? LD_LATE_CORRECT : LD_LATE_DROP;
    c.aggregate = (variant >> 2) & 3;
    return c;
}

/* Picks the next stream at random among those with records left. */
static int pick(size_t pos[2 * NP], const stream_t s[2 * NP])
{
    int live[2 * NP], n = 0;
    for (int k = 0; k < 2 * NP; k++)
        if (pos[k] < s[k].n)
            live[n++] = k;
    return n ? live[rand() % n] : -1;
}

static void run_interleaved(const ld_labeling_conf_t *c,
                            const stream_t s[2 * NP], unsigned seed,
                            sbuf_t *out, ld_joiner_stats_t *stats)
{
    ld_joiner_t *j = ld_joiner_new(c, NULL, 0);
    assert_non_null(j);
    for (int p = 0; p < NP; p++)
        assert_int_equal(ld_joiner_assign(j, p), LD_OK);
    size_t pos[2 * NP] = {0};
    srand(seed);
    int k;
    while ((k = pick(pos, s)) >= 0) {
        feed(j, &s[k].r[pos[k]++]);
        if (rand() % 4 == 0)
            drain_json(j, out);
    }
    drain_json(j, out);
    ld_joiner_stats_t st;
    ld_joiner_stats(j, &st);
    assert_int_equal(st.pending_events, 0);
    assert_int_equal(st.pending_labels, 0);
    if (stats)
        *stats = st;
    ld_joiner_destroy(j);
}

/* The counters of the joiner's books (labeling.h): what a run counted. */
#define BOOK(f)                                                                \
    {                                                                          \
#f, offsetof(ld_joiner_stats_t, f)                                     \
    }
static const struct {
    const char *name;
    size_t off;
} book_fields[] = {
    BOOK(events_in),           BOOK(labels_in),
    BOOK(events_late),         BOOK(labels_late),
    BOOK(events_duplicate),    BOOK(labels_joined),
    BOOK(labels_after_window), BOOK(late_labels_dropped),
    BOOK(labels_unmatched),    BOOK(labels_nolabel),
    BOOK(events_expired),      BOOK(labels_expired),
    BOOK(examples[0]),         BOOK(examples[1]),
    BOOK(examples[2]),         BOOK(examples[3]),
};
#undef BOOK

static uint64_t *book(ld_joiner_stats_t *st, size_t i)
{
    return (uint64_t *)(void *)((char *)st + book_fields[i].off);
}

static void books_add(ld_joiner_stats_t *to, const ld_joiner_stats_t *a)
{
    for (size_t i = 0; i < sizeof(book_fields) / sizeof(book_fields[0]); i++)
        *book(to, i) += *book((ld_joiner_stats_t *)(uintptr_t)a, i);
}

/* Fails with the first counter that differs. */
static void books_equal(const ld_joiner_stats_t *want,
                        const ld_joiner_stats_t *got, const char *what)
{
    for (size_t i = 0; i < sizeof(book_fields) / sizeof(book_fields[0]); i++) {
        uint64_t w = *book((ld_joiner_stats_t *)(uintptr_t)want, i);
        uint64_t g = *book((ld_joiner_stats_t *)(uintptr_t)got, i);
        if (w != g)
            fail_msg("%s: %s %llu, uninterrupted %llu", what,
                     book_fields[i].name, (unsigned long long)g,
                     (unsigned long long)w);
    }
}

/* Features packed elsewhere (ld_packer_pack(), on the daemon's ingest
 * thread) and added with ld_joiner_add_event_packed() give exactly the
 * examples that ld_joiner_add_event() gives. */
static void test_packed_add(void **state)
{
    (void)state;
    ld_labeling_conf_t c = base_conf();
    ld_joiner_t *a = ld_joiner_new(&c, NULL, 0);
    ld_joiner_t *b = ld_joiner_new(&c, NULL, 0);
    ld_packer_t *pk = ld_packer_new();
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(pk);
    assert_int_equal(ld_joiner_assign(a, 0), LD_OK);
    assert_int_equal(ld_joiner_assign(b, 0), LD_OK);
    ld_packed_t pf = {0};
    srand(7);
    int n = 2000;
    for (int i = 0; i < n; i++) {
        uint32_t idx[50];
        float val[50], dense[6];
        uint32_t nnz = (uint32_t)(rand() % 50), nd = (uint32_t)(rand() % 7);
        for (uint32_t k = 0; k < nnz; k++) {
            idx[k] = (uint32_t)rand() & ((1u << 22) - 1);
            val[k] = rand() % 3 ? 1.0f : (float)rand() / (float)RAND_MAX;
        }
        for (uint32_t k = 0; k < nd; k++)
            dense[k] = (float)rand() / (float)RAND_MAX - 0.5f;
        ld_features_t x = {idx, val, dense, nnz, nd};
        char key[16];
        snprintf(key, sizeof(key), "k%d", i);
        assert_int_equal(
            ld_joiner_add_event(a, 0, i, key, strlen(key), 1000 + i, &x),
            LD_OK);
        assert_int_equal(ld_packer_pack(pk, &x, &pf), LD_OK);
        assert_int_equal(ld_joiner_add_event_packed(b, 0, i, key, strlen(key),
                                                    1000 + i, &pf),
                         LD_OK);
        if (i % 3 == 0) {
            assert_int_equal(ld_joiner_add_label(a, 0, i / 3, key, strlen(key),
                                                 1010 + i, 1.0f),
                             LD_OK);
            assert_int_equal(ld_joiner_add_label(b, 0, i / 3, key, strlen(key),
                                                 1010 + i, 1.0f),
                             LD_OK);
        }
    }
    ld_wm_advance_t ev = {LD_TOPIC_EVENTS, 0, n, INT64_C(1) << 40};
    ld_wm_advance_t lb = {LD_TOPIC_LABELS, 0, n / 3 + 1, INT64_C(1) << 40};
    sbuf_t out[2] = {{0}, {0}};
    ld_joiner_t *js[2] = {a, b};
    for (int k = 0; k < 2; k++) {
        assert_int_equal(ld_joiner_apply_advance(js[k], &ev), LD_OK);
        assert_int_equal(ld_joiner_apply_advance(js[k], &lb), LD_OK);
        sb_add(&out[k], "%s", "");
        drain_json(js[k], &out[k]);
    }
    assert_true(out[0].len > 100000);
    assert_int_equal(out[0].len, out[1].len);
    assert_memory_equal(out[0].s, out[1].s, out[0].len);
    /* what cannot be packed is refused, and add_event says why */
    uint32_t idx1 = 1;
    ld_features_t bad = {&idx1, NULL, NULL, 70000, 0};
    assert_int_equal(ld_packer_pack(pk, &bad, &pf), LD_ERR_INVAL);
    free(out[0].s);
    free(out[1].s);
    free(pf.data);
    ld_packer_destroy(pk);
    ld_joiner_destroy(a);
    ld_joiner_destroy(b);
}

static void test_property_interleavings(void **state)
{
    (void)state;
    for (int variant = 0; variant < 4; variant++) {
        stream_t s[2 * NP];
        gen_streams(s, 100u + (unsigned)variant, 60);
        ld_labeling_conf_t c = prop_conf(variant == 3 ? 3 + 12 : variant);
        sbuf_t ref = {0};
        sb_add(&ref, "%s", "");
        ld_joiner_stats_t want;
        run_interleaved(&c, s, 1, &ref, &want);
        assert_true(ref.len > 1000);
        int rounds = variant == 0 ? 1000 : 100;
        for (int r = 0; r < rounds; r++) {
            sbuf_t got = {0};
            sb_add(&got, "%s", "");
            ld_joiner_stats_t st;
            run_interleaved(&c, s, 1000u + (unsigned)r, &got, &st);
            books_equal(&want, &st, "interleaving");
            if (got.len != ref.len || memcmp(got.s, ref.s, ref.len) != 0)
                fail_msg("variant %d interleaving %d differs", variant, r);
            free(got.s);
        }
        free(ref.s);
        for (int k = 0; k < 2 * NP; k++)
            free(s[k].r);
    }
}

/* Runs to a random cut, takes resume records, restarts, re-reads from the
 * resume offsets in a new random interleaving and finishes. */
static void run_with_restart(const ld_labeling_conf_t *c,
                             const stream_t s[2 * NP], unsigned seed,
                             sbuf_t *out, uint64_t *skipped,
                             ld_joiner_stats_t *books)
{
    ld_joiner_t *j = ld_joiner_new(c, NULL, 0);
    uint32_t blk = 1u + seed % 3;
    joiner_set_block_records(j, blk);
    for (int p = 0; p < NP; p++)
        assert_int_equal(ld_joiner_assign(j, p), LD_OK);
    size_t total = 0;
    for (int k = 0; k < 2 * NP; k++)
        total += s[k].n;
    srand(seed);
    size_t cut = (size_t)rand() % total, pos[2 * NP] = {0};
    for (size_t i = 0; i < cut; i++) {
        int k = pick(pos, s);
        feed(j, &s[k].r[pos[k]++]);
        if (rand() % 4 == 0)
            drain_json(j, out);
    }
    drain_json(j, out); /* a commit point: drained */
    uint8_t *rec[NP];
    size_t reclen[NP];
    for (int p = 0; p < NP; p++)
        assert_int_equal(ld_joiner_resume_encode(j, p, &rec[p], &reclen[p]),
                         LD_OK);
    /* what the first process counted up to its commit point */
    ld_joiner_stats_t cut_st;
    ld_joiner_stats(j, &cut_st);
    ld_joiner_destroy(j);

    j = ld_joiner_new(c, NULL, 0);
    joiner_set_block_records(j, blk);
    size_t start[2 * NP];
    for (int p = 0; p < NP; p++) {
        assert_int_equal(ld_joiner_resume_load(j, rec[p], reclen[p]), LD_OK);
        int64_t eo, lo;
        assert_int_equal(ld_joiner_resume_offsets(j, p, &eo, &lo), LD_OK);
        assert_int_equal(ld_joiner_assign(j, p), LD_OK);
        free(rec[p]);
        int64_t o[2] = {eo, lo};
        for (int sd = 0; sd < 2; sd++) {
            int k = sd * NP + p;
            /* re-read from the resume offset (-1: nothing seen yet) */
            size_t st0 = o[sd] < 0 ? 0 : (size_t)o[sd];
            assert_true(st0 <= pos[k]);
            /* advances already applied live in the resume record */
            while (st0 < pos[k] && s[k].r[st0].kind == 2)
                st0++;
            start[k] = st0;
        }
    }
    size_t p2[2 * NP];
    memcpy(p2, start, sizeof(p2));
    int k;
    while ((k = pick(p2, s)) >= 0) {
        const rec_t *r = &s[k].r[p2[k]++];
        if (r->kind == 2 && p2[k] - 1 < pos[k])
            continue; /* fed before the cut: the joiner replays it */
        feed(j, r);
        if (rand() % 4 == 0)
            drain_json(j, out);
    }
    drain_json(j, out);
    ld_joiner_stats_t st;
    ld_joiner_stats(j, &st);
    *skipped += st.examples_skipped;
    assert_int_equal(st.pending_events, 0);
    memset(books, 0, sizeof(*books));
    books_add(books, &cut_st);
    books_add(books, &st);
    /* the lifetime counters, carried in the resume records, say the same */
    ld_joiner_stats_t life;
    ld_joiner_stats_lifetime(j, &life);
    books_equal(books, &life, "lifetime");
    ld_joiner_destroy(j);
}

static void test_property_restart(void **state)
{
    (void)state;
    for (int variant = 0; variant < 4; variant++) {
        stream_t s[2 * NP];
        gen_streams(s, 200u + (unsigned)variant, 60);
        ld_labeling_conf_t c = prop_conf(variant == 3 ? 3 + 8 : variant);
        sbuf_t ref = {0};
        sb_add(&ref, "%s", "");
        ld_joiner_stats_t want;
        run_interleaved(&c, s, 1, &ref, &want);
        uint64_t skipped = 0;
        for (int r = 0; r < 150; r++) {
            sbuf_t got = {0};
            sb_add(&got, "%s", "");
            ld_joiner_stats_t books;
            run_with_restart(&c, s, 5000u + (unsigned)r, &got, &skipped,
                             &books);
            books_equal(&want, &books, "restart");
            if (got.len != ref.len || memcmp(got.s, ref.s, ref.len) != 0) {
                size_t d = 0;
                while (d < got.len && d < ref.len && got.s[d] == ref.s[d])
                    d++;
                fail_msg("variant %d restart %d differs at byte %zu:\n"
                         "got %.200s\nref %.200s",
                         variant, r, d, got.s + (d > 80 ? d - 80 : 0),
                         ref.s + (d > 80 ? d - 80 : 0));
            }
            free(got.s);
        }
        assert_true(skipped > 0); /* resumes did re-read decided events */
        free(ref.s);
        for (int k = 0; k < 2 * NP; k++)
            free(s[k].r);
    }
}

/* ---- resume record, rebalance, config ----------------------------------- */

static void test_resume_record_corrupt(void **state)
{
    (void)state;
    ld_labeling_conf_t c = base_conf();
    sbuf_t out = {0};
    sb_add(&out, "%s", "");
    ld_joiner_t *j = run(&c, 1, "E 0 0 a 1000; L 0 0 b 900 1", &out);
    ld_wm_advance_t a = {LD_TOPIC_LABELS, 0, 1, 950};
    assert_int_equal(ld_joiner_apply_advance(j, &a), LD_OK);
    uint8_t *buf;
    size_t len;
    assert_int_equal(ld_joiner_resume_encode(j, 0, &buf, &len), LD_OK);
    /* LDJ2: one advance, one pending label (b), 16 lifetime counters */
    const size_t tail = 4 + 8 + 4 + 16 * 8;
    assert_int_equal(len, 16 + 2 * 28 + 16 + tail);
    assert_memory_equal(buf, "LDJ2", 4);
    int64_t eo, lo;
    assert_int_equal(ld_joiner_resume_offsets(j, 0, &eo, &lo), LD_OK);
    assert_int_equal(eo, 0);
    assert_int_equal(lo, 0);
    ld_joiner_t *k = ld_joiner_new(&c, NULL, 0);
    for (size_t n = 0; n < len; n++)
        assert_int_equal(ld_joiner_resume_load(k, buf, n), LD_ERR_CORRUPT);
    /* an LDJ1 record (no pending labels, no counters) of an older learnd
     * still loads; with LDJ1's length an LDJ2 does not */
    assert_int_equal(ld_joiner_resume_load(k, buf, len - tail), LD_ERR_CORRUPT);
    memcpy(buf, "LDJ1", 4);
    assert_int_equal(ld_joiner_resume_load(k, buf, len - tail), LD_OK);
    assert_int_equal(ld_joiner_resume_load(k, buf, len), LD_ERR_CORRUPT);
    memcpy(buf, "LDJ2", 4);
    buf[len - tail] = 0xfe; /* a huge pending label count */
    assert_int_equal(ld_joiner_resume_load(k, buf, len), LD_ERR_CORRUPT);
    buf[len - tail] = 1;
    buf[len - 20 - tail] = 0xff; /* a huge advance count */
    assert_int_equal(ld_joiner_resume_load(k, buf, len), LD_ERR_CORRUPT);
    free(buf);
    /* Not drained: refused. */
    assert_int_equal(ld_joiner_assign(k, 0), LD_OK);
    uint32_t idx[3];
    float val[3];
    ld_features_t x;
    key_features("a", idx, val, &x);
    assert_int_equal(ld_joiner_add_event(k, 0, 0, "a", 1, 1000, &x), LD_OK);
    assert_int_equal(ld_joiner_add_label(k, 0, 0, "a", 1, 2000, 1), LD_OK);
    assert_int_equal(ld_joiner_add_event(k, 0, 1, "b", 1, 2000, &x), LD_OK);
    assert_int_equal(ld_joiner_resume_encode(k, 0, &buf, &len), LD_ERR_INVAL);
    ld_joiner_destroy(k);
    ld_joiner_destroy(j);
    free(out.s);
}

static void test_rebalance(void **state)
{
    (void)state;
    ld_labeling_conf_t c = base_conf();
    sbuf_t out = {0};
    sb_add(&out, "%s", "");
    ld_joiner_t *j = run(&c, 2,
                         "E 0 0 a 1000; E 1 0 b 1000; L 1 0 q 900 1; "
                         "L 0 0 b 1010 1",
                         &out);
    ld_joiner_stats_t st;
    ld_joiner_stats(j, &st);
    assert_int_equal(st.pending_events, 2);
    assert_int_equal(st.pending_labels, 2);
    assert_int_equal(ld_joiner_revoke(j, 1), LD_OK);
    assert_int_equal(ld_joiner_revoke(j, 1), LD_ERR_INVAL);
    ld_joiner_stats(j, &st);
    assert_int_equal(st.pending_events, 1);
    assert_int_equal(st.pending_labels, 1);
    /* Only partition 0 holds the watermark now. */
    assert_int_equal(ld_joiner_add_label(j, 0, 1, "z", 1, 1101, 1), LD_OK);
    uint32_t idx[3];
    float val[3];
    ld_features_t x;
    key_features("c", idx, val, &x);
    assert_int_equal(ld_joiner_add_event(j, 0, 1, "c", 1, 1101, &x), LD_OK);
    drain(j, &out);
    assert_string_equal(out.s, "default_neg a 0 -1");
    /* Assigned again: rebuilt from scratch (nothing known). */
    assert_int_equal(ld_joiner_assign(j, 1), LD_OK);
    int64_t eo, lo;
    assert_int_equal(ld_joiner_resume_offsets(j, 1, &eo, &lo), LD_OK);
    assert_int_equal(eo, -1);
    assert_int_equal(lo, -1);
    assert_int_equal(ld_joiner_assign(j, 1), LD_ERR_INVAL);
    ld_joiner_destroy(j);
    free(out.s);
}

static void add_ev(ld_joiner_t *j, int32_t p, int64_t off, const char *key,
                   int64_t t)
{
    uint32_t idx[3];
    float val[3];
    ld_features_t x;
    key_features(key, idx, val, &x);
    assert_int_equal(ld_joiner_add_event(j, p, off, key, strlen(key), t, &x),
                     LD_OK);
}

/* A partition assigned after others had their examples released up to a
 * high watermark (a rebalance hands it over) is decided only as far as its
 * own watermark: its record must not say its pending examples are out
 * (issue #22: the skip point was the joiner's, and the next owner of the
 * partition skipped its pending examples). */
static void test_skip_point_per_partition(void **state)
{
    (void)state;
    ld_labeling_conf_t c = base_conf();
    char err[128];
    ld_joiner_t *j = ld_joiner_new(&c, err, sizeof(err));
    assert_non_null(j);
    assert_int_equal(ld_joiner_assign(j, 0), LD_OK);
    add_ev(j, 0, 0, "a", 1000);
    add_ev(j, 0, 1, "b", 5000);
    assert_int_equal(ld_joiner_add_label(j, 0, 0, "zz", 2, 5000, 1), LD_OK);
    ld_example_t ex;
    assert_int_equal(ld_joiner_poll(j, &ex), 1); /* a, decided at 1100 */
    assert_string_equal(ex.event_id, "a");
    assert_int_equal(ld_joiner_poll(j, &ex), 0);
    /* Partition 1 arrives with an older watermark: W falls to it. */
    assert_int_equal(ld_joiner_assign(j, 1), LD_OK);
    add_ev(j, 1, 0, "c", 2000);
    assert_int_equal(ld_joiner_add_label(j, 1, 0, "c", 1, 2050, 1), LD_OK);
    assert_int_equal(ld_joiner_poll(j, &ex), 0); /* c waits until 2100 */
    uint8_t *rec = NULL;
    size_t len = 0;
    assert_int_equal(ld_joiner_resume_encode(j, 1, &rec, &len), LD_OK);

    /* Its next owner re-reads it from the record and releases c. */
    ld_joiner_t *k = ld_joiner_new(&c, err, sizeof(err));
    assert_int_equal(ld_joiner_resume_load(k, rec, len), LD_OK);
    assert_int_equal(ld_joiner_assign(k, 1), LD_OK);
    int64_t eo = -2, lo = -2;
    assert_int_equal(ld_joiner_resume_offsets(k, 1, &eo, &lo), LD_OK);
    assert_int_equal(eo, 0);
    assert_int_equal(lo, 0);
    add_ev(k, 1, 0, "c", 2000);
    assert_int_equal(ld_joiner_add_label(k, 1, 0, "c", 1, 2050, 1), LD_OK);
    add_ev(k, 1, 1, "d", 9000);
    assert_int_equal(ld_joiner_add_label(k, 1, 1, "y", 1, 9000, 1), LD_OK);
    assert_int_equal(ld_joiner_poll(k, &ex), 1);
    assert_string_equal(ex.event_id, "c");
    assert_int_equal(ex.sample_type, LD_SAMPLE_POS);
    assert_int_equal(ex.offset, 0);
    assert_int_equal(ld_joiner_poll(k, &ex), 0);
    ld_joiner_stats_t st;
    ld_joiner_stats(k, &st);
    assert_int_equal(st.examples_skipped, 0);

    /* Partition 0's record still skips what j released there (a). */
    free(rec);
    assert_int_equal(ld_joiner_resume_encode(j, 0, &rec, &len), LD_OK);
    ld_joiner_t *m = ld_joiner_new(&c, err, sizeof(err));
    assert_int_equal(ld_joiner_resume_load(m, rec, len), LD_OK);
    assert_int_equal(ld_joiner_assign(m, 0), LD_OK);
    assert_int_equal(ld_joiner_resume_offsets(m, 0, &eo, &lo), LD_OK);
    add_ev(m, 0, eo, "b", 5000);
    add_ev(m, 0, eo + 1, "e", 9000);
    assert_int_equal(ld_joiner_add_label(m, 0, 1, "x", 1, 9000, 1), LD_OK);
    assert_int_equal(ld_joiner_poll(m, &ex), 1);
    assert_string_equal(ex.event_id, "b");
    assert_int_equal(ld_joiner_poll(m, &ex), 0);
    free(rec);
    ld_joiner_destroy(m);
    ld_joiner_destroy(k);
    ld_joiner_destroy(j);
}

static void test_bad_input(void **state)
{
    (void)state;
    ld_labeling_conf_t c = base_conf();
    char err[128] = "";
    c.window_ms = 0;
    assert_null(ld_joiner_new(&c, err, sizeof(err)));
    assert_non_null(strstr(err, "window"));
    c = base_conf();
    ld_joiner_t *j = ld_joiner_new(&c, err, sizeof(err));
    uint32_t idx[3];
    float val[3];
    ld_features_t x;
    key_features("a", idx, val, &x);
    assert_int_equal(ld_joiner_add_event(j, 0, 0, "a", 1, 1, &x),
                     LD_ERR_INVAL); /* not assigned */
    assert_int_equal(ld_joiner_assign(j, 0), LD_OK);
    assert_int_equal(ld_joiner_add_event(j, 0, 0, "a", 0, 1, &x), LD_ERR_INVAL);
    assert_int_equal(ld_joiner_add_event(j, 0, 0, "a", 256, 1, &x),
                     LD_ERR_INVAL);
    assert_int_equal(ld_joiner_add_event(j, 0, 0, "a", 1, INT64_MAX, &x),
                     LD_ERR_RANGE);
    assert_int_equal(ld_joiner_add_label(j, 0, 0, "a", 1, 1, 0.0f / 0.0f),
                     LD_ERR_INVAL);
    assert_int_equal(ld_joiner_assign(j, -1), LD_ERR_INVAL);
    assert_int_equal(ld_joiner_assign(j, 70000), LD_ERR_INVAL);
    ld_joiner_destroy(j);
    ld_joiner_destroy(NULL);
}

static void test_conf_table(void **state)
{
    (void)state;
    const ld_conf_section_t *sec = &ld_labeling_conf_section;
    assert_string_equal(sec->name, "labeling");
    for (size_t i = 0; i < sec->nrows; i++) {
        assert_non_null(sec->rows[i].desc);
        assert_non_null(sec->rows[i].def);
        if (sec->rows[i].type == LD_CONF_ENUM)
            assert_non_null(sec->rows[i].choices);
        for (size_t k = 0; k < i; k++)
            assert_string_not_equal(sec->rows[i].name, sec->rows[k].name);
    }
    ld_labeling_conf_t c;
    memset(&c, 0, sizeof(c));
    char err[256];
    assert_int_equal(ld_conf_set_defaults(sec, &c, err, sizeof(err)), LD_OK);
    assert_int_equal(c.window_ms, 30 * 60 * 1000);
    assert_int_equal(c.max_ooo_ms, 5000);
    assert_int_equal(c.aggregate, LD_AGG_FIRST);
    assert_int_equal(c.at_bound, LD_BOUND_PAUSE);
    ld_joiner_t *j = ld_joiner_new(&c, err, sizeof(err));
    assert_non_null(j);
    ld_joiner_destroy(j);
    const ld_conf_row_t *r = ld_conf_find(sec, "aggregate");
    assert_non_null(r);
    assert_int_equal(ld_conf_parse_value(r, "sum", &c, err, sizeof(err)),
                     LD_OK);
    assert_int_equal(c.aggregate, LD_AGG_SUM);
    ld_conf_free(sec, &c);
}

static void test_json(void **state)
{
    (void)state;
    uint32_t idx[2] = {7, 1048575};
    float val[2] = {1.0f, 0.1f};
    float dense[1] = {-2.5f};
    ld_example_t ex = {{idx, val, dense, 2, 1},
                       1.0f,
                       1.0f,
                       LD_SAMPLE_DELAYED_POS,
                       1000,
                       1120,
                       3,
                       42,
                       "id\"1"};
    char buf[512];
    size_t n = ld_labeling_example_json(&ex, buf, sizeof(buf));
    assert_string_equal(
        buf, "{\"event_id\":\"id\\\"1\",\"event_time\":1000,\"label_time\":"
             "1120,\"elapsed_ms\":120,\"label\":1,\"weight\":1,"
             "\"sample_type\":\"delayed_pos\",\"partition\":3,\"offset\":42,"
             "\"idx\":[7,1048575],\"val\":[1,0.100000001],\"dense\":[-2.5]}");
    assert_int_equal(n, strlen(buf));
    char small[8];
    assert_int_equal(ld_labeling_example_json(&ex, small, sizeof(small)), n);
}

/* Packs ex with ld_labeling_example_pack(), checks the length protocol,
 * decodes with protobuf-c, compares every field with what went in and the
 * bytes with protobuf-c's own encoding of the same message. */
static void check_pack(const ld_example_t *ex, int64_t decision,
                       const char *topic, int64_t elapsed)
{
    size_t n = ld_labeling_example_pack(ex, decision, topic, NULL, 0);
    assert_true(n > 0);
    uint8_t *buf = malloc(n + 8);
    memset(buf, 0xa5, n + 8);
    /* Too small: the length, nothing written. */
    assert_int_equal(ld_labeling_example_pack(ex, decision, topic, buf, n - 1),
                     n);
    for (size_t i = 0; i < n + 8; i++)
        assert_int_equal(buf[i], 0xa5);
    assert_int_equal(ld_labeling_example_pack(ex, decision, topic, buf, n), n);
    assert_int_equal(buf[n], 0xa5);
    Learnd__V1__LabelledExample *m =
        learnd__v1__labelled_example__unpack(NULL, n, buf);
    assert_non_null(m);
    assert_string_equal(m->event_id, ex->event_id ? ex->event_id : "");
    assert_int_equal(m->event_time_ms, ex->event_time_ms);
    assert_int_equal(m->label_time_ms, ex->label_time_ms);
    assert_int_equal(m->elapsed_ms, elapsed);
    assert_memory_equal(&m->label, &ex->label, 4); /* bit exact */
    assert_memory_equal(&m->weight, &ex->weight, 4);
    assert_int_equal(m->sample_type, (int)ex->sample_type + 1);
    assert_int_equal(m->partition, ex->partition);
    assert_int_equal(m->offset, ex->offset);
    assert_int_equal(m->n_indices, ex->x.nnz);
    assert_int_equal(m->n_values, ex->x.nnz);
    assert_int_equal(m->n_dense, ex->x.ndense);
    if (ex->x.nnz) {
        assert_memory_equal(m->indices, ex->x.idx, ex->x.nnz * 4);
        assert_memory_equal(m->values, ex->x.val, ex->x.nnz * 4);
    }
    if (ex->x.ndense)
        assert_memory_equal(m->dense, ex->x.dense, ex->x.ndense * 4);
    assert_int_equal(m->decision_time_ms, decision);
    assert_string_equal(m->topic, topic ? topic : "");
    /* Byte for byte what protobuf-c writes for the same message, except
     * that protobuf-c drops a -0.0 label or weight, which we keep. */
    if ((signbit(ex->label) && ex->label == 0.0f) ||
        (signbit(ex->weight) && ex->weight == 0.0f)) {
        learnd__v1__labelled_example__free_unpacked(m, NULL);
        free(buf);
        return;
    }
    size_t n2 = learnd__v1__labelled_example__get_packed_size(m);
    assert_int_equal(n2, n);
    uint8_t *ref = malloc(n2);
    assert_int_equal(learnd__v1__labelled_example__pack(m, ref), n2);
    assert_memory_equal(ref, buf, n);
    free(ref);
    learnd__v1__labelled_example__free_unpacked(m, NULL);
    free(buf);
}

static void test_protobuf(void **state)
{
    (void)state;
    uint32_t idx[4] = {0, 7, 1048575, UINT32_MAX}; /* 1- to 5-byte varints */
    float val[4] = {1.0f, 0.1f, -0.0f, 3e38f};
    float dense[2] = {-2.5f, 0.0f};
    ld_example_t ex = {{idx, val, dense, 4, 2},
                       1.0f,
                       1.0f,
                       LD_SAMPLE_DELAYED_POS,
                       1000,
                       1120,
                       3,
                       42,
                       "id\"1"};
    check_pack(&ex, 1120, "events", 120);
    /* Exact bytes of a small record, written out by hand from the spec. */
    ld_example_t small = {
        {idx, val, NULL, 1, 0}, 1.0f, 0.0f, LD_SAMPLE_POS, 1, 2, 0, 300, "k"};
    const uint8_t want[] = {
        0x0a, 0x01, 'k',                    /* 1: event_id */
        0x10, 0x01,                         /* 2: event_time 1 */
        0x18, 0x02,                         /* 3: label_time 2 */
        0x20, 0x01,                         /* 4: elapsed 1 */
        0x2d, 0x00, 0x00, 0x80, 0x3f,       /* 5: label 1.0f */
        0x38, 0x01,                         /* 7: sample_type POS */
        0x48, 0xac, 0x02,                   /* 9: offset 300 */
        0x52, 0x01, 0x00,                   /* 10: indices [0] */
        0x5a, 0x04, 0x00, 0x00, 0x80, 0x3f, /* 11: values [1.0f] */
        0x68, 0x0c,                         /* 13: decision_time 12 */
    };
    uint8_t got[64];
    assert_int_equal(ld_labeling_example_pack(&small, 12, NULL, got, 64),
                     sizeof(want));
    assert_memory_equal(got, want, sizeof(want));
    check_pack(&small, 12, "", 1);
    /* No label: elapsed is the time to the decision; negative times take
     * ten bytes; a -0.0 label is written, a 0.0 one is not; no features. */
    ld_example_t neg = {{NULL, NULL, NULL, 0, 0},
                        -0.0f,
                        1.0f,
                        LD_SAMPLE_DEFAULT_NEG,
                        -5000,
                        -1,
                        0,
                        0,
                        NULL};
    check_pack(&neg, -4900, NULL, 100);
    neg.sample_type = LD_SAMPLE_FAKE_NEG;
    neg.label = 0.0f;
    check_pack(&neg, -5000, "t", 0);
    neg.sample_type = (ld_sample_type_t)7;
    assert_int_equal(ld_labeling_example_pack(&neg, 0, NULL, got, 64), 0);
    /* Every example of a joiner run, with its decision time. */
    ld_labeling_conf_t c = base_conf();
    c.mode = LD_MODE_FAKE_NEGATIVE;
    char err[128];
    ld_joiner_t *j = ld_joiner_new(&c, err, sizeof(err));
    assert_int_equal(ld_joiner_assign(j, 0), LD_OK);
    assert_int_equal(ld_joiner_decision_time(j), INT64_MIN);
    uint32_t ki[3];
    float kv[3];
    ld_features_t kx;
    key_features("a", ki, kv, &kx);
    assert_int_equal(ld_joiner_add_event(j, 0, 5, "a", 1, 1000, &kx), LD_OK);
    assert_int_equal(ld_joiner_add_label(j, 0, 9, "a", 1, 1040, 1.0f), LD_OK);
    ld_wm_advance_t a = {LD_TOPIC_EVENTS, 0, 6, 5000};
    assert_int_equal(ld_joiner_apply_advance(j, &a), LD_OK);
    a.kind = LD_TOPIC_LABELS;
    a.offset = 10;
    assert_int_equal(ld_joiner_apply_advance(j, &a), LD_OK);
    ld_example_t out;
    assert_int_equal(ld_joiner_poll(j, &out), 1);
    assert_int_equal(out.sample_type, LD_SAMPLE_FAKE_NEG);
    assert_int_equal(ld_joiner_decision_time(j), 1000);
    check_pack(&out, ld_joiner_decision_time(j), "events", 0);
    assert_int_equal(ld_joiner_poll(j, &out), 1);
    assert_int_equal(out.sample_type, LD_SAMPLE_DELAYED_POS);
    assert_int_equal(ld_joiner_decision_time(j), 1040);
    check_pack(&out, ld_joiner_decision_time(j), "events", 40);
    assert_int_equal(ld_joiner_poll(j, &out), 0);
    ld_joiner_destroy(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_join_table),
        cmocka_unit_test(test_rules_doc),
        cmocka_unit_test(test_idle_partition),
        cmocka_unit_test(test_bound_pause),
        cmocka_unit_test(test_bound_expire_oldest),
        cmocka_unit_test(test_pack_roundtrip),
        cmocka_unit_test(test_bytes_accounting),
        cmocka_unit_test(test_store_paths),
        cmocka_unit_test(test_resume_record_corrupt),
        cmocka_unit_test(test_skip_point_per_partition),
        cmocka_unit_test(test_rebalance),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_conf_table),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_protobuf),
        cmocka_unit_test(test_property_interleavings),
        cmocka_unit_test(test_packed_add),
        cmocka_unit_test(test_property_restart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
