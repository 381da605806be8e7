/* SPDX-License-Identifier: Apache-2.0 */
/* The champion-challenger gate: the last gate_window examples scored by
 * both models, and the verdict on a publishing decision. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "triggers/set.h"

void gate_observe(ld_triggers_t *t, const ld_trigger_obs_t *o)
{
    if (!isfinite(o->p_champion))
        return;
    uint64_t cap = (uint64_t)t->c.gate_window;
    t->g_chal[t->g_head] = o->p_challenger;
    t->g_champ[t->g_head] = o->p_champion;
    t->g_label[t->g_head] = o->label;
    t->g_head = (t->g_head + 1) % cap;
    if (t->g_n < cap)
        t->g_n++;
}

/* Runs the gate into d (verdict, reason, one evidence item). */
void gate_run(ld_triggers_t *t, ld_trigger_decision_t *d)
{
    const ld_triggers_conf_t *c = &t->c;
    if (d->action == LD_TRIGGER_ACTION_ALERT) {
        d->verdict = LD_TRIGGER_VERDICT_SKIPPED;
        d->challenger_version = 0;
        snprintf(d->reason, sizeof(d->reason), "alert only");
        return;
    }
    if (t->published_now) {
        /* Another kind published at this very example: one checkpoint per
         * moment; this decision is recorded but publishes nothing new. */
        d->verdict = LD_TRIGGER_VERDICT_SKIPPED;
        d->challenger_version = 0;
        snprintf(d->reason, sizeof(d->reason),
                 "version %llu already published at this example",
                 (unsigned long long)t->champion);
        return;
    }
    d->challenger_version = t->champion + 1;
    if (!c->gate_enabled) {
        d->verdict = LD_TRIGGER_VERDICT_PASS;
        snprintf(d->reason, sizeof(d->reason), "gate disabled");
        return;
    }
    if (t->champion == 0) {
        d->verdict = LD_TRIGGER_VERDICT_PASS;
        snprintf(d->reason, sizeof(d->reason), "no champion yet");
        return;
    }
    /* The ring in chronological order does not matter for these metrics,
     * except AUC ties, which are order-free too. */
    size_t n = (size_t)t->g_n;
    double mc = metric_eval(c->gate_metric, t->g_chal, t->g_label, n);
    double mp = metric_eval(c->gate_metric, t->g_champ, t->g_label, n);
    const char *mn = metric_name(c->gate_metric);
    if ((int64_t)n < c->gate_min_samples || !isfinite(mc) || !isfinite(mp)) {
        d->verdict = LD_TRIGGER_VERDICT_INCONCLUSIVE;
        snprintf(d->reason, sizeof(d->reason),
                 "inconclusive: %zu examples scored by both models, gate "
                 "needs %lld",
                 n, (long long)c->gate_min_samples);
        if (d->nev < d->evcap)
            ev_set(&d->ev[d->nev++], mn, "count", "gate", (double)n,
                   (double)c->gate_min_samples, NAN, NAN, n);
        return;
    }
    double worse = metric_lower_better(c->gate_metric) ? mc - mp : mp - mc;
    if (d->nev < d->evcap)
        ev_set(&d->ev[d->nev++], mn, "gate_delta", "gate", worse,
               c->gate_tolerance, NAN, mp, n);
    if (worse > c->gate_tolerance) {
        d->verdict = LD_TRIGGER_VERDICT_FAIL;
        snprintf(d->reason, sizeof(d->reason),
                 "challenger %s worse by %.6g > tolerance %.6g", mn, worse,
                 c->gate_tolerance);
    } else {
        d->verdict = LD_TRIGGER_VERDICT_PASS;
        snprintf(d->reason, sizeof(d->reason),
                 "challenger %s within tolerance (delta %.6g <= %.6g)", mn,
                 worse, c->gate_tolerance);
    }
}
