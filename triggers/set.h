/* SPDX-License-Identifier: Apache-2.0 */
/* The trigger set's private layout, shared by the files that make it up:
 * triggers.c (lifecycle, firing policy, the decision queue), window.c (the
 * windows of matured examples), gate.c, one kind_*.c per trigger kind, and
 * state.c (the resume state). Nothing outside triggers/ includes it. */
#ifndef LD_TRIGGERS_SET_H
#define LD_TRIGGERS_SET_H

#include "triggers/internal.h"

#define QUEUE_MAX 64
#define NO_TIME   INT64_MIN
/* The detector kinds (time, volume, performance, drift): their policy
 * state is part of the resume state. End of input is not a detector: it
 * fires once, when asked (ld_triggers_end_of_input). */
#define KINDS 4

/* What one window of matured examples holds. */
typedef struct winset {
    int valid;
    uint64_t index; /* window number since start (seeds the samplers) */
    uint64_t n;
    int64_t t_start, t_end; /* event time of the first, max event time */
    /* Per performance_metric: the live model's prequential loss (every
     * example; what a reference window says the published model learnt to)
     * and the champion's loss (examples it scored). Sums of squares give
     * the z-test its variance. */
    double loss_sum, loss_sq;
    double closs_sum, closs_sq;
    uint64_t closs_n;
    reservoir_t *num; /* nnum numeric features */
    uint64_t *hist;   /* hashed ids per bin, drift_hashed_bins */
    reservoir_t pred; /* the champion's scores (finite ones) */
    reservoir_t label_num;
    spacesaving_t label_cat;
} winset_t;

typedef struct policy_state {
    int64_t last_fire; /* event time, NO_TIME = never */
    uint32_t bad_run;  /* consecutive bad windows */
    uint64_t fired;
} policy_state_t;

/* The result a kind's check hands to the policy. */
typedef struct check {
    ld_trigger_level_t level;
    int64_t win_start, win_end;
    ld_trigger_evidence_t *ev;
    size_t nev, evcap;
    char (*drifted)[NAME_MAX_LEN + 16];
    size_t ndrift, driftcap;
} check_t;

/* One trigger kind behind one interface: observe, check (the should-fire
 * level with its evidence), save/load of the kind's own counters. Window
 * sets and detectors are shared and saved by the trigger set. */
typedef struct kind_ops {
    ld_trigger_type_t type;
    const ld_trigger_policy_t *(*policy)(const ld_triggers_conf_t *c);
    void (*observe)(ld_triggers_t *t, const ld_trigger_obs_t *o);
    /* Called after each example (continuous kinds) or window close
     * (windowed kinds); fills chk. */
    void (*check)(ld_triggers_t *t, check_t *chk);
    int windowed;
} kind_ops_t;

struct ld_triggers {
    ld_triggers_conf_t c; /* strings not owned: names borrowed below */
    char **names;         /* copied drift_feature_names */
    size_t nnames;
    char model[128];
    char topic[256];

    /* Counters. */
    uint64_t examples; /* matured examples fed */
    int64_t now;       /* max event time seen, NO_TIME before any */
    uint64_t champion; /* last published version */
    uint64_t seq;      /* decisions emitted */
    int64_t time_base; /* event time of the time trigger's baseline */
    uint64_t vol_base; /* examples at the volume baseline */
    policy_state_t pol[LD_TRIGGER__COUNT];

    /* Windows. */
    uint32_t nnum; /* numeric features watched (fixed at the first x) */
    int have_nnum;
    winset_t ref, prev, cur;
    uint64_t next_index;

    /* Prediction drift compares the champion's scores with its own scores
     * on an earlier window: the first complete window it scored alone
     * (index >= pref_from), kept in pref once pref_ok. A model that is
     * still learning moves its predictions on unchanged data; a frozen
     * model's scores move only when its inputs do. */
    reservoir_t pref;
    int pref_ok;
    uint64_t pref_index; /* window pref was taken from */
    uint64_t pref_from;  /* first window index that may become pref */

    /* Streaming performance detectors and their level in this window. */
    ld_detector_t *ddm, *adwin, *ph;
    ld_trigger_level_t stream_level;
    ld_trigger_evidence_t stream_ev[3];
    uint8_t stream_have[3];

    /* Gate: the last gate_window examples scored by both models. */
    float *g_chal, *g_champ, *g_label;
    uint64_t g_n, g_head;

    int published_now; /* a PASS at the current example (not state) */

    /* The last checked drift window's deciding statistic per tested input,
     * for /metrics (not state). */
    ld_trigger_evidence_t *drift_last;
    size_t ndrift_last;

    /* What the enabled kinds read, from the config (not state): windows
     * keep the loss only for performance and the samples and sketches only
     * for drift. A part nobody reads is not fed, so a state written with a
     * kind off holds it empty (loss NaN: performance skips that window if
     * the kind is turned on before it closes). */
    int feed_loss, feed_sketch;
    /* examples % drift_stride and % drift_hashed_stride, kept by counting
     * (not state: derived from examples on load). */
    uint64_t mod_dense, mod_hashed;

    /* Decisions waiting for poll. */
    ld_trigger_decision_t *queue[QUEUE_MAX];
    size_t qlen;

    /* Scratch for drift. */
    double *s_ref, *s_cur;
    double *h_ref, *h_cur; /* drift_hashed_bins each */
};

/* ---- The kinds (kind_*.c) ----------------------------------------------- */

extern const kind_ops_t kind_time, kind_volume, kind_perf, kind_drift;

/* Adds one evidence item to chk; NULL when it is full. */
static inline ld_trigger_evidence_t *chk_ev(check_t *chk)
{
    if (chk->nev >= chk->evcap)
        return NULL;
    return &chk->ev[chk->nev++];
}

/* The volume rules at this example (kind_volume.c): whether the absolute
 * or the share rule holds, with what they measured. */
int volume_rules(const ld_triggers_t *t, uint64_t *fresh_out, double *share_out,
                 int *abs_out);
/* Forgets the streaming performance detectors (kind_perf.c): a new
 * champion is a new error stream. */
void stream_reset(ld_triggers_t *t);

/* ---- Windows (window.c) ------------------------------------------------- */

/* Allocates a window set's sketches (not the numeric reservoirs); -1 on
 * allocation failure (win_free cleans up). */
int win_init(const ld_triggers_t *t, winset_t *w);
/* Allocates the numeric reservoirs once the feature count is known. */
int win_init_num(const ld_triggers_t *t, winset_t *w);
void win_free(winset_t *w, uint32_t nnum);
/* Empties w as window number index (which seeds its samplers). */
void win_clear(const ld_triggers_t *t, winset_t *w, uint64_t index);
void win_swap(winset_t *a, winset_t *b);
/* Adds one matured example to w. */
void win_observe(ld_triggers_t *t, winset_t *w, const ld_trigger_obs_t *o);
/* Marks w complete and sorts its samples once. */
void win_seal(ld_triggers_t *t, winset_t *w);
void win_save(const ld_triggers_t *t, const winset_t *w, ld_wbuf_t *b);
void win_load(const ld_triggers_t *t, winset_t *w, ld_rbuf_t *r,
              spacesaving_t *old, uint32_t version);
/* The performance metric of a window's mean per-example loss. */
double metric_of_mean(const ld_triggers_t *t, double mean);

/* ---- Gate (gate.c) ------------------------------------------------------ */

/* Keeps the example in the ring of the last gate_window examples scored by
 * both models. */
void gate_observe(ld_triggers_t *t, const ld_trigger_obs_t *o);
/* Runs the gate into d (verdict, reason, one evidence item). */
void gate_run(ld_triggers_t *t, ld_trigger_decision_t *d);

/* ---- Shared by triggers.c and state.c ----------------------------------- */

/* A decision with room for evcap evidence items and driftcap names; NULL
 * on allocation failure. */
ld_trigger_decision_t *decision_alloc(size_t evcap, size_t driftcap);
/* Fixes the numeric feature count at the first example with features and
 * allocates the windows' reservoirs; -1 on allocation failure. */
int ensure_nnum(ld_triggers_t *t, const ld_trigger_obs_t *o);

#endif /* LD_TRIGGERS_SET_H */
