/* SPDX-License-Identifier: Apache-2.0 */
/* The demo's experiment: two variants with a known lift in the click
 * stream, an ab experiment on them, and what it decided for the summary. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/demo.h"
#include "daemon/demo_exp.h"

extern const unsigned char ld_demo_event_avsc[];
extern const size_t ld_demo_event_avsc_len;

char *ld_demo_served_avsc(void)
{
    static const char more[] =
        ",\n    {\"name\": \"served_model\", \"type\": \"string\", "
        "\"default\": \"\", \"doc\": \"Variant that served the ad.\"},\n"
        "    {\"name\": \"served_p\", \"type\": \"float\", \"default\": 0, "
        "\"doc\": \"The click probability it served.\"}\n  ";
    const char *a = (const char *)ld_demo_event_avsc;
    const char *end = strrchr(a, ']'); /* closes the fields array */
    if (!end)
        return NULL;
    size_t head = (size_t)(end - a);
    /* back over the whitespace before ']', so the comma follows the last
     * field */
    while (head && (a[head - 1] == ' ' || a[head - 1] == '\n'))
        head--;
    size_t n =
        head + sizeof(more) - 1 + (ld_demo_event_avsc_len - (size_t)(end - a));
    char *s = malloc(n + 1);
    if (!s)
        return NULL;
    memcpy(s, a, head);
    memcpy(s + head, more, sizeof(more) - 1);
    memcpy(s + head + sizeof(more) - 1, end,
           ld_demo_event_avsc_len - (size_t)(end - a));
    s[n] = '\0';
    return s;
}

int ld_demo_exp_config(ld_config_t *c, double lift)
{
    char why[256];
    const ld_conf_section_t *P = &ld_pipeline_conf_section;
    if (ld_conf_parse_value(ld_conf_find(P, "served_variant_field"),
                            "served_model", &c->pipeline, why, sizeof(why)) ||
        ld_conf_parse_value(ld_conf_find(P, "served_score_field"), "served_p",
                            &c->pipeline, why, sizeof(why)))
        return -1;
    ld_exp_conf_t *e = calloc(1, sizeof(*e));
    if (!e || ld_conf_set_defaults(&ld_exp_conf_section, e, why, sizeof(why)))
        goto err;
    c->experiments = e;
    c->nexperiments = 1;
    /* the demo's base rate is ~0.2 clicks per impression: the lift's size
     * in absolute terms is the mixture's scale */
    char eff[32];
    snprintf(eff, sizeof(eff), "%.4f", 0.2 * lift);
    const char *kv[][2] = {{"name", "v2-vs-v1"},
                           {"type", "ab"},
                           {"metric", "label_mean"},
                           {"min_effect", eff},
                           {"check_every", "5000"}};
    for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i++)
        if (ld_conf_parse_value(ld_conf_find(&ld_exp_conf_section, kv[i][0]),
                                kv[i][1], e, why, sizeof(why)))
            return -1;
    if (ld_conf_strlist_add(&e->variants, "v1") ||
        ld_conf_strlist_add(&e->variants, "v2"))
        return -1;
    return 0;
err:
    free(e);
    return -1;
}

void ld_demo_exp_seen(ld_demo_exp_t *x, const ld_exp_decision_t *d)
{
    if (d->kind != LD_EXP_KIND_DECISION) {
        x->weights++;
        return;
    }
    x->decided = 1;
    x->verdict = d->verdict;
    x->effect = d->effect;
    x->ci_lo = d->ci_lo;
    x->ci_hi = d->ci_hi;
    x->event_time_ms = d->event_time_ms;
    for (int k = 0; k < 2; k++) {
        x->n[k] = d->arm[k].n;
        x->mean[k] = d->arm[k].mean;
    }
    snprintf(x->reason, sizeof(x->reason), "%s", d->reason);
}

void ld_demo_exp_print(const ld_demo_exp_t *x, double lift, FILE *out)
{
    fprintf(out,
            "experiment v2-vs-v1 (ab on the click rate, true lift of v2: "
            "+%.0f%%): ",
            100.0 * lift);
    if (!x->decided) {
        fprintf(out, "no verdict yet (CONTINUE)\n");
        return;
    }
    fprintf(out,
            "%s (%s) after %llu + %llu examples: CTR v1 %.4f, v2 %.4f, "
            "effect %+.4f, always-valid 95%% interval [%+.4f, %+.4f] "
            "(relative %+.1f%%)\n",
            ld_exp_verdict_name(x->verdict), x->reason,
            (unsigned long long)x->n[0], (unsigned long long)x->n[1],
            x->mean[0], x->mean[1], x->effect, x->ci_lo, x->ci_hi,
            100.0 * x->effect / x->mean[0]);
}
