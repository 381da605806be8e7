/* SPDX-License-Identifier: Apache-2.0 */
/* The time trigger: event time since the last publication. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "triggers/set.h"

static const ld_trigger_policy_t *time_policy(const ld_triggers_conf_t *c)
{
    return &c->time;
}

static void time_check(ld_triggers_t *t, check_t *chk)
{
    int64_t elapsed = t->now - t->time_base;
    if (elapsed < t->c.time_every_ms)
        return;
    chk->level = LD_TRIGGER_LEVEL_ALERT;
    chk->win_start = t->time_base;
    chk->win_end = t->now + 1;
    ld_trigger_evidence_t *ev = chk_ev(chk);
    if (ev)
        ev_set(ev, "event_time", "elapsed_ms", "threshold", (double)elapsed,
               (double)t->c.time_every_ms, NAN, NAN, t->examples - t->vol_base);
}

const kind_ops_t kind_time = {LD_TRIGGER_TIME, time_policy, NULL, time_check,
                              0};
