/* SPDX-License-Identifier: Apache-2.0 */
/* The volume trigger: matured examples since the last publication, as a
 * count or as a share of all seen. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "triggers/set.h"

static const ld_trigger_policy_t *volume_policy(const ld_triggers_conf_t *c)
{
    return &c->volume;
}

/* The volume rules at this example: *abs_rule, *share_rule; returns
 * whether either holds. */
int volume_rules(const ld_triggers_t *t, uint64_t *fresh_out, double *share_out,
                 int *abs_out)
{
    const ld_triggers_conf_t *c = &t->c;
    uint64_t fresh = t->examples - t->vol_base;
    int abs_rule =
        c->volume_examples > 0 && fresh >= (uint64_t)c->volume_examples;
    double share = t->examples ? (double)fresh / (double)t->examples : 0.0;
    int share_rule = c->volume_share > 0.0 &&
                     fresh >= (uint64_t)c->volume_share_min &&
                     share >= c->volume_share;
    *fresh_out = fresh;
    *share_out = share;
    *abs_out = abs_rule;
    return abs_rule || share_rule;
}

static void volume_check(ld_triggers_t *t, check_t *chk)
{
    const ld_triggers_conf_t *c = &t->c;
    uint64_t fresh;
    double share;
    int abs_rule;
    if (!volume_rules(t, &fresh, &share, &abs_rule))
        return;
    chk->level = LD_TRIGGER_LEVEL_ALERT;
    chk->win_start = t->time_base;
    chk->win_end = t->now + 1;
    ld_trigger_evidence_t *ev = chk_ev(chk);
    if (ev && abs_rule)
        ev_set(ev, "examples", "count", "threshold", (double)fresh,
               (double)c->volume_examples, NAN, NAN, fresh);
    else if (ev)
        ev_set(ev, "examples", "share", "threshold", share, c->volume_share,
               NAN, NAN, fresh);
}

const kind_ops_t kind_volume = {LD_TRIGGER_VOLUME, volume_policy, NULL,
                                volume_check, 0};
