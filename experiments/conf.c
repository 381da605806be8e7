/* SPDX-License-Identifier: Apache-2.0 */
/* The rows of one item of the `experiments:` list and their turning into a
 * checked spec. */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "experiments/experiments.h"

#define F(f) offsetof(ld_exp_conf_t, f)

static const ld_conf_row_t rows[] = {
    {"name", LD_CONF_STRING, F(name), NULL, 0, 0, NULL,
     "Name of the experiment (in decisions, /experiments/<name>, metrics)"},
    {"type", LD_CONF_ENUM, F(type), NULL, 0, 0, "ab|canary|shadow|bandit",
     "ab and canary: control vs treatment; shadow: served vs shadow score "
     "on the same events; bandit: Thompson sampling routing weights"},
    {"variants", LD_CONF_STRLIST, F(variants), NULL, 0, 0, NULL,
     "ab/canary: [control, treatment]; shadow: [served, shadow]; bandit: "
     "2 to 8 arms. Names as in pipeline.served_variant_field"},
    {"metric", LD_CONF_ENUM, F(metric), "label_mean", 0, 0,
     "label_mean|logloss|sqerr",
     "What is compared: the label (CTR, revenue) or the served score's loss "
     "(shadow: logloss or sqerr)"},
    {"direction", LD_CONF_ENUM, F(direction), "higher", 0, 0, "higher|lower",
     "Which way is better (a loss: lower); shadow always compares losses"},
    {"min_effect", LD_CONF_DOUBLE, F(min_effect), "0.005", 1e-12, 1e12, NULL,
     "Absolute effect of interest in the metric's units: the scale of the "
     "mixture SPRT's prior (the test is most powerful near it)"},
    {"alpha", LD_CONF_DOUBLE, F(alpha), "0.05", 1e-9, 0.5, NULL,
     "False-positive level, valid however often the test is looked at"},
    {"max_samples", LD_CONF_INT, F(max_samples), "1000000", 2, 1e15, NULL,
     "Examples in the test after which it ends INCONCLUSIVE (canary: "
     "PROMOTE if non-inferior)"},
    {"min_samples", LD_CONF_INT, F(min_samples), "1000", 2, 1e15, NULL,
     "Examples per arm before any verdict (the plug-in variance needs them)"},
    {"check_every", LD_CONF_INT, F(check_every), "1000", 1, 1e15, NULL,
     "Examples between looks at the evidence (a window)"},
    {"noninferiority", LD_CONF_DOUBLE, F(noninferiority), "-1", -1, 1e12, NULL,
     "Canary: at the cap, PROMOTE when the always-valid interval shows it at "
     "most this much worse (absolute; -1: never)"},
    {"guard_calibration", LD_CONF_DOUBLE, F(guard_calibration), "0", 0, 1e12,
     NULL,
     "Canary guardrail: ROLLBACK once mean(score - label) of the canary is "
     "outside +-this (0: off)"},
    {"guard_label_min", LD_CONF_STRING, F(guard_label_min), "", 0, 0, NULL,
     "Canary guardrail: ROLLBACK once the canary's label mean is below this "
     "number (empty: off)"},
    {"reward", LD_CONF_ENUM, F(reward), "bernoulli", 0, 0, "bernoulli|normal",
     "Bandit: 0/1 labels with a Beta(1,1) prior, or numeric labels"},
    {"interval", LD_CONF_DURATION, F(interval_ms), "1m", 1, 1e12, NULL,
     "Bandit: event time between routing weights"},
    {"min_weight", LD_CONF_DOUBLE, F(min_weight), "0.01", 0, 0.49, NULL,
     "Bandit: floor of every arm's weight (keeps exploring while rewards "
     "are delayed)"},
    {"draws", LD_CONF_INT, F(draws), "1000", 10, 1e7, NULL,
     "Bandit: posterior draws estimating each arm's chance to be best"},
    {"seed", LD_CONF_INT, F(seed), "0", 0, 4294967295.0, NULL,
     "Bandit: seed of the posterior draws (replay gives the same weights)"},
};

const ld_conf_section_t ld_exp_conf_section = {
    "experiments[]",
    "A list of experiments on served variants, decided on delayed labels "
    "(docs/EXPERIMENTS.md)",
    LD_CONF_ROWS(rows)};

ld_err_t ld_exp_conf_to_spec(const ld_exp_conf_t *c, ld_exp_spec_t *out,
                             char *errstr, size_t errstr_size)
{
    const char *name = c->name ? c->name : "";
    if (strlen(name) >= LD_EXP_NAME_MAX) {
        ld_errstr_set(errstr, errstr_size, "name: longer than %d bytes",
                      LD_EXP_NAME_MAX - 1);
        return LD_ERR_CONFIG;
    }
    ld_exp_spec_init(out, name, c->type);
    if (c->variants.n > LD_EXP_ARMS_MAX) {
        ld_errstr_set(errstr, errstr_size, "variants: at most %d, not %zu",
                      LD_EXP_ARMS_MAX, c->variants.n);
        return LD_ERR_CONFIG;
    }
    for (size_t i = 0; i < c->variants.n; i++) {
        if (strlen(c->variants.v[i]) >= LD_EXP_NAME_MAX) {
            ld_errstr_set(errstr, errstr_size,
                          "variants[%zu]: longer than %d bytes", i,
                          LD_EXP_NAME_MAX - 1);
            return LD_ERR_CONFIG;
        }
        snprintf(out->variants[i], LD_EXP_NAME_MAX, "%s", c->variants.v[i]);
    }
    out->nvariants = c->variants.n;
    out->metric = c->metric;
    out->direction = c->direction;
    out->min_effect = c->min_effect;
    out->alpha = c->alpha;
    out->max_samples = c->max_samples;
    out->min_samples = c->min_samples;
    out->check_every = c->check_every;
    out->noninferiority = c->noninferiority;
    out->guard_calibration = c->guard_calibration;
    if (c->guard_label_min && c->guard_label_min[0]) {
        char *end;
        errno = 0;
        out->guard_label_min = strtod(c->guard_label_min, &end);
        if (errno || *end || !isfinite(out->guard_label_min)) {
            ld_errstr_set(errstr, errstr_size,
                          "guard_label_min: expected a number, got '%s'",
                          c->guard_label_min);
            return LD_ERR_CONFIG;
        }
    }
    out->reward = c->reward;
    out->interval_ms = c->interval_ms;
    out->min_weight = c->min_weight;
    out->draws = c->draws;
    out->seed = (uint64_t)c->seed;
    return ld_exp_spec_check(out, errstr, errstr_size);
}
