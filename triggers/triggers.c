/* SPDX-License-Identifier: Apache-2.0 */
/* The trigger set of one model: lifecycle, the kinds table, firing policy
 * (k consecutive windows, cooldown) and the decision queue. The windows,
 * the gate, each kind and the resume state live in files of their own
 * (triggers/set.h lists them). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "triggers/set.h"

/* ---- Helpers ------------------------------------------------------------ */

static int sev_of(const ld_trigger_policy_t *p, ld_trigger_level_t lvl)
{
    if (p->severity != LD_TRIGGER_SEV_AUTO)
        return p->severity;
    return lvl == LD_TRIGGER_LEVEL_ALERT  ? LD_TRIGGER_SEV_ALERT
           : lvl == LD_TRIGGER_LEVEL_WARN ? LD_TRIGGER_SEV_WARN
                                          : LD_TRIGGER_SEV_INFO;
}

/* In the order their policies run: when two kinds fire on the same example
 * the first one publishes (drift names the most specific cause). */
static const kind_ops_t *const kinds[KINDS] = {
    &kind_drift,
    &kind_perf,
    &kind_volume,
    &kind_time,
};

/* ---- End of input ------------------------------------------------------- */

/* The last checkpoint of a backfill: published like a trigger's, through
 * the gate, with an event of its own. Always on, info, publish. */
static const ld_trigger_policy_t end_policy_conf = {
    .enabled = 1,
    .consecutive = 1,
    .action = LD_TRIGGER_ACTION_PUBLISH,
    .severity = LD_TRIGGER_SEV_INFO,
    .fire_on = 1,
};

static const ld_trigger_policy_t *end_policy(const ld_triggers_conf_t *c)
{
    (void)c;
    return &end_policy_conf;
}

static const kind_ops_t end_kind = {LD_TRIGGER_END_OF_INPUT, end_policy, NULL,
                                    NULL, 0};

/* ---- Lifecycle ---------------------------------------------------------- */

static int set_err(char *errstr, size_t size, const char *msg)
{
    if (errstr && size)
        snprintf(errstr, size, "%s", msg);
    return -1;
}

ld_triggers_t *ld_triggers_new(const ld_triggers_conf_t *conf,
                               const char *model_name,
                               const char *checkpoint_topic,
                               uint64_t champion_version, char *errstr,
                               size_t errstr_size)
{
    if (!conf || !model_name || !*model_name || !checkpoint_topic ||
        !*checkpoint_topic) {
        set_err(errstr, errstr_size,
                "triggers: model name and checkpoint topic are required");
        return NULL;
    }
    if (conf->window_size < 1 || conf->drift_sample_size < 2 ||
        conf->drift_sample_size > (1 << 24) || conf->drift_topk < 2 ||
        conf->drift_topk > (1 << 20) || conf->gate_window < 1 ||
        conf->drift_psi_bins < 2 || conf->drift_psi_bins > 1000 ||
        conf->drift_max_features < 0 || conf->evidence_max < 2 ||
        conf->drift_stride < 1 || conf->drift_hashed_stride < 1 ||
        conf->drift_hashed_bins < 2 || conf->drift_hashed_bins > (1 << 16) ||
        conf->perf_metric == LD_TRIGGER_METRIC_AUC) {
        set_err(errstr, errstr_size, "triggers: config value out of range");
        return NULL;
    }
    if (strlen(model_name) >= 100 || strlen(checkpoint_topic) >= 250) {
        set_err(errstr, errstr_size, "triggers: model or topic name too long");
        return NULL;
    }
    ld_triggers_t *t = calloc(1, sizeof(*t));
    if (!t)
        goto nomem;
    t->c = *conf;
    t->c.drift_feature_names.v = NULL;
    t->c.drift_feature_names.n = 0;
    snprintf(t->model, sizeof(t->model), "%s", model_name);
    snprintf(t->topic, sizeof(t->topic), "%s", checkpoint_topic);
    if (conf->drift_feature_names.n) {
        t->names = calloc(conf->drift_feature_names.n, sizeof(*t->names));
        if (!t->names)
            goto nomem;
        t->nnames = conf->drift_feature_names.n;
        for (size_t i = 0; i < t->nnames; i++)
            if (!(t->names[i] = strdup(conf->drift_feature_names.v[i])))
                goto nomem;
    }
    t->now = NO_TIME;
    t->time_base = NO_TIME;
    t->champion = champion_version;
    t->feed_loss = conf->perf.enabled;
    t->feed_sketch = conf->drift.enabled;
    for (int k = 0; k < KINDS; k++)
        t->pol[k].last_fire = NO_TIME;
    if (win_init(t, &t->ref) || win_init(t, &t->prev) || win_init(t, &t->cur))
        goto nomem;
    win_clear(t, &t->ref, 0);
    win_clear(t, &t->prev, 0);
    win_clear(t, &t->cur, 0);
    t->next_index = 1;
    t->ddm = ld_detector_ddm_new(conf->perf_ddm_warn, conf->perf_ddm_drift,
                                 conf->perf_ddm_min);
    t->adwin = ld_detector_adwin_new(conf->perf_adwin_delta);
    t->ph = ld_detector_ph_new(conf->perf_ph_delta, conf->perf_ph_lambda,
                               conf->perf_ph_alpha);
    size_t gw = (size_t)conf->gate_window;
    t->g_chal = calloc(gw, sizeof(float));
    t->g_champ = calloc(gw, sizeof(float));
    t->g_label = calloc(gw, sizeof(float));
    t->s_ref = calloc((size_t)conf->drift_sample_size, sizeof(double));
    t->s_cur = calloc((size_t)conf->drift_sample_size, sizeof(double));
    t->h_ref = calloc((size_t)conf->drift_hashed_bins, sizeof(double));
    t->h_cur = calloc((size_t)conf->drift_hashed_bins, sizeof(double));
    if (!t->ddm || !t->adwin || !t->ph || !t->g_chal || !t->g_champ ||
        !t->g_label || !t->s_ref || !t->s_cur || !t->h_ref || !t->h_cur ||
        res_init(&t->pref, (uint32_t)conf->drift_sample_size, 0))
        goto nomem;
    return t;
nomem:
    set_err(errstr, errstr_size, "triggers: out of memory");
    ld_triggers_destroy(t);
    return NULL;
}

void ld_trigger_decision_destroy(ld_trigger_decision_t *d)
{
    if (!d)
        return;
    free(d->ev);
    free(d->drifted);
    free(d);
}

void ld_triggers_destroy(ld_triggers_t *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nnames; i++)
        free(t->names[i]);
    free(t->names);
    win_free(&t->ref, t->nnum);
    win_free(&t->prev, t->nnum);
    win_free(&t->cur, t->nnum);
    ld_detector_destroy(t->ddm);
    ld_detector_destroy(t->adwin);
    ld_detector_destroy(t->ph);
    free(t->g_chal);
    free(t->g_champ);
    free(t->g_label);
    free(t->drift_last);
    free(t->s_ref);
    free(t->s_cur);
    free(t->h_ref);
    free(t->h_cur);
    res_free(&t->pref);
    for (size_t i = 0; i < t->qlen; i++)
        ld_trigger_decision_destroy(t->queue[i]);
    free(t);
}

/* ---- Firing ------------------------------------------------------------- */

ld_trigger_decision_t *decision_alloc(size_t evcap, size_t driftcap)
{
    ld_trigger_decision_t *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->evcap = evcap;
    d->ev = calloc(evcap ? evcap : 1, sizeof(*d->ev));
    d->drifted = calloc(driftcap ? driftcap : 1, sizeof(*d->drifted));
    if (!d->ev || !d->drifted) {
        ld_trigger_decision_destroy(d);
        return NULL;
    }
    return d;
}

/* After a PASS: the challenger is the champion. Baselines restart and the
 * references become the last complete window, the data the new champion
 * was trained on. */
static void on_publish(ld_triggers_t *t, uint64_t version)
{
    t->champion = version;
    t->time_base = t->now;
    t->vol_base = t->examples;
    /* The new champion scores from the micro-batch after the one holding
     * this example: the window now open still has the old champion's
     * scores, the next one is the first the new champion scores alone. */
    t->pref_ok = 0;
    t->pref_from = t->cur.index + 1;
    stream_reset(t);
    if (t->prev.valid) {
        win_swap(&t->ref, &t->prev);
        win_clear(t, &t->prev, t->next_index++);
    }
}

static ld_err_t fire(ld_triggers_t *t, const kind_ops_t *k, check_t *chk)
{
    const ld_trigger_policy_t *p = k->policy(&t->c);
    ld_trigger_decision_t *d = decision_alloc(chk->evcap, chk->ndrift);
    if (!d)
        return LD_ERR_NOMEM;
    d->type = k->type;
    d->severity = sev_of(p, chk->level);
    d->action = (ld_trigger_action_t)p->action;
    d->event_time = t->now;
    d->win_start = chk->win_start;
    d->win_end = chk->win_end;
    d->watermark = NO_TIME;
    d->champion_version = t->champion;
    snprintf(d->model, sizeof(d->model), "%s", t->model);
    snprintf(d->topic, sizeof(d->topic), "%s", t->topic);
    /* Keep one evidence slot for the gate. */
    size_t keep = chk->nev < d->evcap - 1 ? chk->nev : d->evcap - 1;
    memcpy(d->ev, chk->ev, keep * sizeof(*d->ev));
    d->nev = keep;
    d->ndrift = chk->ndrift;
    if (chk->ndrift)
        memcpy(d->drifted, chk->drifted, chk->ndrift * sizeof(*d->drifted));
    gate_run(t, d);
    t->seq++;
    snprintf(d->id, sizeof(d->id), "%s-%s-%06llu", t->model,
             ld_trigger_type_name(d->type), (unsigned long long)t->seq);
    snprintf(d->key, sizeof(d->key), "%s/%s/%lld/%llu", t->model,
             ld_trigger_type_name(d->type), (long long)d->win_end,
             (unsigned long long)d->challenger_version);
    if (t->qlen == QUEUE_MAX) {
        ld_log(LD_LOG_WARN, "triggers",
               "msg=\"decision queue full, oldest dropped\" id=%s",
               t->queue[0]->id);
        ld_trigger_decision_destroy(t->queue[0]);
        memmove(&t->queue[0], &t->queue[1],
                (QUEUE_MAX - 1) * sizeof(t->queue[0]));
        t->qlen--;
    }
    t->queue[t->qlen++] = d;

    policy_state_t *ps = &t->pol[k->type];
    ps->last_fire = t->now;
    ps->bad_run = 0;
    ps->fired++;
    /* Continuous kinds restart their baseline on every attempt, so a FAIL
     * waits a full period instead of refiring on the next example. */
    if (k->type == LD_TRIGGER_TIME)
        t->time_base = t->now;
    if (k->type == LD_TRIGGER_VOLUME)
        t->vol_base = t->examples;
    if (d->verdict == LD_TRIGGER_VERDICT_PASS) {
        on_publish(t, d->challenger_version);
        t->published_now = 1;
    }
    ld_log(LD_LOG_INFO, "triggers",
           "msg=\"trigger fired\" id=%s type=%s verdict=%s key=%s", d->id,
           ld_trigger_type_name(d->type), ld_trigger_verdict_name(d->verdict),
           d->key);
    return LD_OK;
}

/* Applies a kind's policy (k consecutive windows, cooldown) to its check
 * and fires when it says so. */
static ld_err_t apply_policy(ld_triggers_t *t, const kind_ops_t *k,
                             check_t *chk)
{
    const ld_trigger_policy_t *p = k->policy(&t->c);
    policy_state_t *ps = &t->pol[k->type];
    if (!k->windowed) {
        if (chk->level == LD_TRIGGER_LEVEL_NONE)
            return LD_OK;
    } else {
        ld_trigger_level_t need =
            p->fire_on ? LD_TRIGGER_LEVEL_ALERT : LD_TRIGGER_LEVEL_WARN;
        if (chk->level < need) {
            ps->bad_run = 0;
            return LD_OK;
        }
        ps->bad_run++;
        if ((int64_t)ps->bad_run < (p->consecutive > 1 ? p->consecutive : 1))
            return LD_OK;
    }
    if (ps->last_fire != NO_TIME && t->now - ps->last_fire < p->cooldown_ms)
        return LD_OK;
    return fire(t, k, chk);
}

/* Checks every enabled kind of one class (continuous or windowed) first and
 * only then applies the policies, so a publication by one kind cannot move
 * the reference another kind is being compared with. */
static ld_err_t evaluate_all(ld_triggers_t *t, int windowed)
{
    check_t chk[KINDS];
    ld_trigger_evidence_t small[KINDS][4];
    size_t evcap = (size_t)t->c.evidence_max;
    ld_err_t err = LD_OK;
    memset(chk, 0, sizeof(chk));
    if (t->now == NO_TIME)
        return LD_OK;
    for (int i = 0; i < KINDS; i++) {
        const kind_ops_t *k = kinds[i];
        if (k->windowed != windowed || !k->policy(&t->c)->enabled)
            continue;
        if (windowed) {
            chk[i].ev = calloc(evcap, sizeof(*chk[i].ev));
            chk[i].evcap = evcap;
            chk[i].driftcap = (size_t)t->nnum + 3;
            chk[i].drifted = calloc(chk[i].driftcap, sizeof(*chk[i].drifted));
            if (!chk[i].ev || !chk[i].drifted) {
                err = LD_ERR_NOMEM;
                goto out;
            }
        } else {
            chk[i].ev = small[i];
            chk[i].evcap = 4;
        }
        k->check(t, &chk[i]);
    }
    for (int i = 0; i < KINDS && !err; i++)
        if (chk[i].ev)
            err = apply_policy(t, kinds[i], &chk[i]);
out:
    if (windowed)
        for (int i = 0; i < KINDS; i++) {
            free(chk[i].ev);
            free(chk[i].drifted);
        }
    return err;
}

static ld_err_t close_window(ld_triggers_t *t)
{
    ld_err_t err = LD_OK;
    win_seal(t, &t->cur);
    if (!t->pref_ok && t->cur.index >= t->pref_from &&
        res_size(&t->cur.pred) > 0) {
        res_assign(&t->pref, &t->cur.pred);
        t->pref_ok = 1;
        t->pref_index = t->cur.index;
    }
    if (!t->ref.valid || !t->champion) {
        /* The reference is the data the champion was trained on: until a
         * first version is published, the newest complete window (a model
         * learning from scratch moves its own predictions; that is no
         * drift of the data). */
        win_swap(&t->ref, &t->cur);
        win_clear(t, &t->cur, t->next_index++);
        goto reset_stream;
    }
    win_swap(&t->prev, &t->cur);
    win_clear(t, &t->cur, t->next_index++);
    err = evaluate_all(t, 1);
reset_stream:
    t->stream_level = LD_TRIGGER_LEVEL_NONE;
    memset(t->stream_have, 0, sizeof(t->stream_have));
    memset(t->stream_ev, 0, sizeof(t->stream_ev));
    return err;
}

/* examples % the two drift strides, by counting instead of dividing. */
static void set_mods(ld_triggers_t *t)
{
    if (++t->mod_dense == (uint64_t)t->c.drift_stride)
        t->mod_dense = 0;
    if (++t->mod_hashed == (uint64_t)t->c.drift_hashed_stride)
        t->mod_hashed = 0;
}

/* Whether a continuous kind (time, volume) would see a level above NONE
 * now: the same tests as time_check and volume_check, without building
 * their checks on every example. When it is false evaluate_all(t, 0) would
 * do nothing. */
static int continuous_due(const ld_triggers_t *t)
{
    const ld_triggers_conf_t *c = &t->c;
    if (t->now == NO_TIME)
        return 0;
    if (c->time.enabled && t->now - t->time_base >= c->time_every_ms)
        return 1;
    if (c->volume.enabled) {
        uint64_t fresh;
        double share;
        int abs_rule;
        return volume_rules(t, &fresh, &share, &abs_rule);
    }
    return 0;
}

int ensure_nnum(ld_triggers_t *t, const ld_trigger_obs_t *o)
{
    if (t->have_nnum || !o->x)
        return 0;
    uint32_t n = o->x->ndense;
    if ((int64_t)n > t->c.drift_max_features)
        n = (uint32_t)t->c.drift_max_features;
    t->nnum = n;
    if (win_init_num(t, &t->ref) || win_init_num(t, &t->prev) ||
        win_init_num(t, &t->cur)) {
        win_free(&t->ref, n);
        win_free(&t->prev, n);
        win_free(&t->cur, n);
        t->nnum = 0;
        return -1;
    }
    t->have_nnum = 1;
    return 0;
}

ld_err_t ld_triggers_observe_obs(ld_triggers_t *t, const ld_trigger_obs_t *o)
{
    if (o->sample_type != LD_SAMPLE_POS &&
        o->sample_type != LD_SAMPLE_DEFAULT_NEG)
        return LD_OK;
    if (!isfinite(o->p_challenger) || !isfinite(o->label))
        return LD_OK;
    if (ensure_nnum(t, o))
        return LD_ERR_NOMEM;
    t->published_now = 0;
    /* Features arriving only later (x NULL at first) stay unwatched: the
     * window layout is fixed once, for a stable resume state. */
    t->examples++;
    set_mods(t);
    if (t->now == NO_TIME || o->event_time_ms > t->now)
        t->now = o->event_time_ms;
    if (t->time_base == NO_TIME)
        t->time_base = o->event_time_ms;
    gate_observe(t, o);
    win_observe(t, &t->cur, o);
    ld_err_t err = LD_OK;
    for (int k = 0; k < KINDS; k++)
        if (kinds[k]->observe && kinds[k]->policy(&t->c)->enabled)
            kinds[k]->observe(t, o);
    if ((int64_t)t->cur.n >= t->c.window_size)
        err = close_window(t);
    if (!err && continuous_due(t))
        err = evaluate_all(t, 0);
    return err;
}

ld_err_t ld_triggers_observe(ld_triggers_t *t, const ld_example_t *ex,
                             float p_challenger, float p_champion)
{
    ld_trigger_obs_t o = {
        .x = &ex->x,
        .label = ex->label,
        .weight = ex->weight,
        .sample_type = ex->sample_type,
        .event_time_ms = ex->event_time_ms,
        .p_challenger = p_challenger,
        .p_champion = p_champion,
    };
    return ld_triggers_observe_obs(t, &o);
}

ld_trigger_decision_t *ld_triggers_poll(ld_triggers_t *t, int64_t watermark)
{
    if (t->qlen == 0)
        return NULL;
    ld_trigger_decision_t *d = t->queue[0];
    memmove(&t->queue[0], &t->queue[1], (t->qlen - 1) * sizeof(t->queue[0]));
    t->qlen--;
    d->watermark = watermark;
    return d;
}

uint64_t ld_triggers_champion_version(const ld_triggers_t *t)
{
    return t->champion;
}

size_t ld_triggers_pending(const ld_triggers_t *t)
{
    return t->qlen;
}

ld_err_t ld_triggers_end_of_input(ld_triggers_t *t)
{
    ld_trigger_evidence_t ev[4];
    check_t chk = {.level = LD_TRIGGER_LEVEL_ALERT, .ev = ev, .evcap = 4};
    /* A moment of its own, after the last example's decisions. */
    t->published_now = 0;
    uint64_t fresh = t->examples - t->vol_base;
    chk.win_start = t->time_base == NO_TIME ? 0 : t->time_base;
    chk.win_end = t->now == NO_TIME ? 0 : t->now + 1;
    ev_set(chk_ev(&chk), "examples", "count", "end_of_input", (double)fresh,
           0.0, NAN, NAN, fresh);
    /* A stream without a matured example has no event time yet. */
    int64_t now = t->now;
    if (t->now == NO_TIME)
        t->now = 0;
    ld_err_t err = fire(t, &end_kind, &chk);
    t->now = now;
    return err;
}

uint64_t ld_triggers_examples(const ld_triggers_t *t)
{
    return t->examples;
}

/* ---- Decision accessors -------------------------------------------------- */

ld_trigger_type_t ld_trigger_decision_type(const ld_trigger_decision_t *d)
{
    return d->type;
}

ld_trigger_action_t ld_trigger_decision_action(const ld_trigger_decision_t *d)
{
    return d->action;
}

ld_trigger_verdict_t ld_trigger_decision_verdict(const ld_trigger_decision_t *d)
{
    return d->verdict;
}

int ld_trigger_decision_severity(const ld_trigger_decision_t *d)
{
    return d->severity;
}

uint64_t ld_trigger_decision_challenger_version(const ld_trigger_decision_t *d)
{
    return d->challenger_version;
}

const char *ld_trigger_decision_id(const ld_trigger_decision_t *d)
{
    return d->id;
}

const char *ld_trigger_decision_idempotency_key(const ld_trigger_decision_t *d)
{
    return d->key;
}

int64_t ld_trigger_decision_event_time(const ld_trigger_decision_t *d)
{
    return d->event_time;
}

const char *ld_trigger_decision_reason(const ld_trigger_decision_t *d)
{
    return d->reason;
}

size_t ld_trigger_decision_evidence_count(const ld_trigger_decision_t *d)
{
    return d->nev;
}

const ld_trigger_evidence_t *
ld_trigger_decision_evidence(const ld_trigger_decision_t *d, size_t i)
{
    return i < d->nev ? &d->ev[i] : NULL;
}

size_t ld_trigger_decision_drifted_count(const ld_trigger_decision_t *d)
{
    return d->ndrift;
}

const char *ld_trigger_decision_drifted(const ld_trigger_decision_t *d,
                                        size_t i)
{
    return i < d->ndrift ? d->drifted[i] : NULL;
}

const char *ld_trigger_type_name(ld_trigger_type_t type)
{
    static const char *names[] = {"time", "volume", "performance", "drift",
                                  "end_of_input"};
    return (unsigned)type < LD_TRIGGER__COUNT ? names[type] : "unknown";
}

const char *ld_trigger_verdict_name(ld_trigger_verdict_t v)
{
    static const char *names[] = {"PASS", "FAIL", "INCONCLUSIVE", "SKIPPED"};
    return (unsigned)v < 4 ? names[v] : "UNKNOWN";
}
