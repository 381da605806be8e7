/* SPDX-License-Identifier: Apache-2.0 */
/* The demo's experiment (daemon/demo_exp.c): config, what it decided, and
 * its summary line. Only the demo includes it. */
#ifndef LD_DAEMON_DEMO_EXP_H
#define LD_DAEMON_DEMO_EXP_H

#include <stdio.h>

#include "daemon/config.h"
#include "experiments/experiments.h"

typedef struct ld_demo_exp {
    int decided, verdict;
    char reason[48];
    double effect, ci_lo, ci_hi, mean[2];
    uint64_t n[2], weights;
    int64_t event_time_ms;
} ld_demo_exp_t;

/* Maps the generator's served fields in c and adds the ab experiment
 * "v2-vs-v1" with min_effect lift * 0.2 (the demo's base click rate).
 * 0, or -1 (c half set: destroy it). */
int ld_demo_exp_config(ld_config_t *c, double lift);
/* The run's experiment hook: notes the decision. */
void ld_demo_exp_seen(ld_demo_exp_t *x, const ld_exp_decision_t *d);
/* The summary line. */
void ld_demo_exp_print(const ld_demo_exp_t *x, double lift, FILE *out);

#endif /* LD_DAEMON_DEMO_EXP_H */
