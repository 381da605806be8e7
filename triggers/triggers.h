/* SPDX-License-Identifier: Apache-2.0 */
/* Triggers: time, volume, performance and drift detectors over matured
 * examples, the champion-challenger gate, and trigger events
 * (docs/TRIGGERS.md). */
#ifndef LD_TRIGGERS_H
#define LD_TRIGGERS_H

#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "pipeline/record.h"

/* ---- Configuration (section "triggers") ------------------------------- */

/* Values of the ENUM rows below; ints in the struct hold these. */
typedef enum ld_trigger_action {
    LD_TRIGGER_ACTION_PUBLISH = 0, /* publish a checkpoint if the gate passes */
    LD_TRIGGER_ACTION_ALERT = 1    /* emit the event only */
} ld_trigger_action_t;

/* Severity rows: "auto" takes the detector's level (warn or alert). */
typedef enum ld_trigger_severity_conf {
    LD_TRIGGER_SEV_AUTO = 0,
    LD_TRIGGER_SEV_INFO = 1,
    LD_TRIGGER_SEV_WARN = 2,
    LD_TRIGGER_SEV_ALERT = 3
} ld_trigger_severity_conf_t;

typedef enum ld_trigger_metric {
    LD_TRIGGER_METRIC_LOGLOSS = 0, /* binary: -log p(label), p clamped */
    LD_TRIGGER_METRIC_RMSE = 1,    /* regression: root mean squared error */
    LD_TRIGGER_METRIC_ERROR = 2,   /* binary: share of (p >= .5) != label */
    LD_TRIGGER_METRIC_AUC = 3      /* binary, exact with ties 1/2 (gate only) */
} ld_trigger_metric_t;

typedef enum ld_trigger_numeric_test {
    LD_TRIGGER_TEST_KS = 0,          /* two-sample KS p < alpha / m */
    LD_TRIGGER_TEST_WASSERSTEIN = 1, /* W1 / sd(reference) >= threshold */
    LD_TRIGGER_TEST_PSI = 2          /* PSI >= psi_alert */
} ld_trigger_numeric_test_t;

typedef enum ld_trigger_format {
    LD_TRIGGER_FORMAT_JSON = 0,
    LD_TRIGGER_FORMAT_PROTOBUF = 1
} ld_trigger_format_t;

/* Per-kind policy: enabled, cooldown (event time since the kind last fired),
 * k consecutive bad windows (performance, drift), action, severity, and the
 * detector level a window must reach to count (warn|alert). */
typedef struct ld_trigger_policy {
    int enabled;
    int64_t cooldown_ms;
    int64_t consecutive;
    int action;   /* ld_trigger_action_t */
    int severity; /* ld_trigger_severity_conf_t */
    int fire_on;  /* 0 = warn, 1 = alert */
} ld_trigger_policy_t;

/* triggers: every detector, the gate and the event format. Filled from the
 * table ld_triggers_conf_section; free owned strings with ld_conf_free(). */
typedef struct ld_triggers_conf {
    int format;          /* ld_trigger_format_t */
    int64_t window_size; /* matured examples per performance/drift window */
    int64_t seed;        /* seeds the reservoir samplers */
    int64_t evidence_max;

    ld_trigger_policy_t time;
    int64_t time_every_ms;

    ld_trigger_policy_t volume;
    int64_t volume_examples; /* 0 = no absolute rule */
    double volume_share;     /* 0 = no share rule */
    int64_t volume_share_min;

    ld_trigger_policy_t perf;
    int perf_metric; /* ld_trigger_metric_t, not AUC */
    double perf_margin;
    double perf_alpha; /* one-sided level of the windowed worsening */
    int perf_ddm;
    double perf_ddm_warn, perf_ddm_drift;
    int64_t perf_ddm_min;
    int perf_adwin;
    double perf_adwin_delta;
    int perf_ph;
    double perf_ph_delta, perf_ph_lambda, perf_ph_alpha;

    ld_trigger_policy_t drift;
    int drift_numeric_test; /* ld_trigger_numeric_test_t */
    int64_t drift_psi_bins;
    double drift_psi_warn, drift_psi_alert;
    double drift_alpha; /* family-wise, Bonferroni-corrected */
    double drift_wasserstein;
    double drift_js;
    double drift_min_share;
    int64_t drift_sample_size;
    int64_t drift_topk;
    int64_t drift_max_features;
    ld_strlist_t drift_feature_names; /* names of the dense slots, in order */
    int drift_hashed;                 /* JS over hashed slot ids */
    int64_t drift_hashed_bins;        /* histogram bins of the hashed ids */
    int64_t drift_stride;             /* dense features of every N-th example */
    int64_t drift_hashed_stride;      /* hashed ids of every N-th example */
    int drift_label_categorical;

    int gate_enabled;
    int gate_metric; /* ld_trigger_metric_t */
    double gate_tolerance;
    int64_t gate_min_samples;
    int64_t gate_window;
} ld_triggers_conf_t;

extern const ld_conf_section_t ld_triggers_conf_section;

/* One measurement behind a trigger (an `evidence[]` item). */
typedef struct ld_trigger_evidence {
    char metric[64];    /* logloss, examples, prediction, feature:<name> */
    char statistic[24]; /* psi, ks, ddm, gate_delta, ... */
    char method[24];    /* threshold, bonferroni, ddm, adwin, gate, ... */
    double value;
    double threshold;
    double p_value;   /* NaN = none */
    double reference; /* NaN = none */
    uint64_t n;
} ld_trigger_evidence_t;

/* ---- The trigger set the daemon runs ---------------------------------- */

typedef enum ld_trigger_type {
    LD_TRIGGER_TIME = 0,
    LD_TRIGGER_VOLUME = 1,
    LD_TRIGGER_PERFORMANCE = 2,
    LD_TRIGGER_DRIFT = 3,
    LD_TRIGGER_END_OF_INPUT = 4, /* the last checkpoint of a backfill */
    LD_TRIGGER__COUNT = 5
} ld_trigger_type_t;

/* Gate outcome. INCONCLUSIVE (fewer than gate_min_samples scored by both
 * models) keeps the champion like FAIL; SKIPPED: gate not run (alert). */
typedef enum ld_trigger_verdict {
    LD_TRIGGER_VERDICT_PASS = 0,
    LD_TRIGGER_VERDICT_FAIL = 1,
    LD_TRIGGER_VERDICT_INCONCLUSIVE = 2,
    LD_TRIGGER_VERDICT_SKIPPED = 3
} ld_trigger_verdict_t;

/* One matured example as the detectors see it. */
typedef struct ld_trigger_obs {
    const ld_features_t *x; /* borrowed; NULL = no feature drift for it */
    float label;
    float weight; /* unused by the statistics (every example counts 1) */
    ld_sample_type_t sample_type;
    int64_t event_time_ms;
    float p_challenger; /* the live model's prequential score (gate; the
                           performance reference window) */
    float p_champion;   /* the champion's score on the same example; NaN
                           when there is no champion. Prediction drift and
                           the performance trigger watch these: a frozen
                           model's scores move only when its inputs do, a
                           learning model's move as it learns */
} ld_trigger_obs_t;

typedef struct ld_triggers ld_triggers_t;
typedef struct ld_trigger_decision ld_trigger_decision_t;

/* Creates the trigger set for one model. conf, model_name and
 * checkpoint_topic are borrowed and copied. champion_version is the last
 * published version (0 = none yet). Returns NULL on a bad config or
 * allocation failure with the reason in errstr. Caller frees with
 * ld_triggers_destroy(). */
ld_triggers_t *ld_triggers_new(const ld_triggers_conf_t *conf,
                               const char *model_name,
                               const char *checkpoint_topic,
                               uint64_t champion_version, char *errstr,
                               size_t errstr_size);
/* NULL is a no-op. */
void ld_triggers_destroy(ld_triggers_t *t);

/* Feeds one matured example in release order. Examples of sample type
 * fake_neg and delayed_pos are ignored (docs/TRIGGERS.md); NaN/Inf scores are
 * ignored. May queue decisions for ld_triggers_poll(). Returns LD_OK, or
 * LD_ERR_NOMEM (state unchanged for that example). ex borrowed. */
ld_err_t ld_triggers_observe(ld_triggers_t *t, const ld_example_t *ex,
                             float p_challenger, float p_champion) LD_WUR;
/* The same from an observation struct (x may be NULL when the caller only
 * has scores: then only prediction and label drift are watched). */
ld_err_t ld_triggers_observe_obs(ld_triggers_t *t,
                                 const ld_trigger_obs_t *o) LD_WUR;

/* Hands out the next queued decision (at most one per call; call until it
 * returns NULL), oldest first. Decisions are taken inside
 * ld_triggers_observe*() at the example that made them, the gate included,
 * so they depend only on the example sequence; watermark_ms is recorded as
 * the event's window.watermark: pass a value that is a function of the
 * input too (the daemon passes the join decision time of the example just
 * released, ld_joiner_decision_time()), or replays and restarts emit
 * different events.
 *
 * A PASS decision counts as published from the moment it was taken: the
 * challenger became champion at its challenger_version, the time and volume
 * baselines restarted, and the performance and drift references became the
 * last complete window. The daemon must publish it (checkpoint + event) in
 * the transaction that commits this trigger state; if that transaction
 * aborts, it restores the state of the last committed one, which undoes the
 * decision too. Firing (any verdict) starts the kind's cooldown, and a time
 * or volume firing restarts that baseline, so a FAIL waits a full period.
 * Caller frees with ld_trigger_decision_destroy(). */
ld_trigger_decision_t *ld_triggers_poll(ld_triggers_t *t, int64_t watermark_ms);

/* Last published version (0 = none). */
uint64_t ld_triggers_champion_version(const ld_triggers_t *t);

/* The drift tests of the last window the drift trigger checked, one per
 * input it could test (numeric features as "feature:<name>", "feature:
 * hashed", "prediction", "label"), each with its deciding statistic (ks,
 * js, psi, wasserstein) and value, whatever the verdict. Calls fn for each
 * and returns how many; 0 before the first checked window or with drift
 * off. Not state: empty again after a restart until a window closes. The
 * evidence is borrowed for the call only. Loop thread. */
size_t ld_triggers_drift_scores(const ld_triggers_t *t,
                                void (*fn)(void *opaque,
                                           const ld_trigger_evidence_t *ev),
                                void *opaque);

/* Decisions waiting for ld_triggers_poll(): a cheap check for callers that
 * look after every micro-batch. */
size_t ld_triggers_pending(const ld_triggers_t *t);

/* The input ends here (`learnd run --until-caught-up` read everything that
 * existed at start-up): queues one decision of type END_OF_INPUT for
 * ld_triggers_poll(), action publish, severity info, through the gate like
 * any publishing trigger (a PASS counts as published, see ld_triggers_poll;
 * FAIL and INCONCLUSIVE keep the champion). Its window runs from the last
 * publication to the newest event time; its evidence counts the matured
 * examples since then. The caller decides whether there is anything new to
 * publish (the daemon compares parameters). Returns LD_OK or LD_ERR_NOMEM
 * (nothing queued). */
ld_err_t ld_triggers_end_of_input(ld_triggers_t *t) LD_WUR;
/* Matured examples fed so far (after filtering). */
uint64_t ld_triggers_examples(const ld_triggers_t *t);

/* Serialises the whole state (counters, cursors, windows, sketches,
 * detectors, gate buffer, queued decisions) for the resume state; restored
 * into a trigger set made with the same config it continues bit for bit.
 * Caller frees *out with free(). */
ld_err_t ld_triggers_save(const ld_triggers_t *t, uint8_t **out,
                          size_t *len) LD_WUR;
/* Replaces t's state with buf. LD_ERR_CORRUPT on a truncated or damaged
 * buffer, LD_ERR_CONFIG when it was written under an incompatible config
 * (window size, sample sizes, feature count); t is then unchanged. */
ld_err_t ld_triggers_load(ld_triggers_t *t, const uint8_t *buf,
                          size_t len) LD_WUR;

/* ---- Decisions and trigger events ------------------------------------- */

ld_trigger_type_t ld_trigger_decision_type(const ld_trigger_decision_t *d);
ld_trigger_action_t ld_trigger_decision_action(const ld_trigger_decision_t *d);
ld_trigger_verdict_t
ld_trigger_decision_verdict(const ld_trigger_decision_t *d);
/* Severity as ld_trigger_severity_conf_t values INFO..ALERT. */
int ld_trigger_decision_severity(const ld_trigger_decision_t *d);
/* Event time of the example that decided it (ms). */
int64_t ld_trigger_decision_event_time(const ld_trigger_decision_t *d);
/* Version the challenger is published as when the verdict is PASS. */
uint64_t ld_trigger_decision_challenger_version(const ld_trigger_decision_t *d);
/* Borrowed strings, valid until the decision is destroyed. */
const char *ld_trigger_decision_id(const ld_trigger_decision_t *d);
const char *ld_trigger_decision_idempotency_key(const ld_trigger_decision_t *d);
const char *ld_trigger_decision_reason(const ld_trigger_decision_t *d);
size_t ld_trigger_decision_evidence_count(const ld_trigger_decision_t *d);
/* Borrowed; NULL when i is out of range. */
const ld_trigger_evidence_t *
ld_trigger_decision_evidence(const ld_trigger_decision_t *d, size_t i);
size_t ld_trigger_decision_drifted_count(const ld_trigger_decision_t *d);
/* Borrowed; NULL when i is out of range. */
const char *ld_trigger_decision_drifted(const ld_trigger_decision_t *d,
                                        size_t i);
/* NULL is a no-op. */
void ld_trigger_decision_destroy(ld_trigger_decision_t *d);

/* Where a PASS decision's checkpoint went; all borrowed. */
typedef struct ld_trigger_publication {
    int32_t partition;
    int64_t manifest_offset;
    const char *path;      /* NULL = not in a local store */
    const uint8_t *sha256; /* 32 bytes */
} ld_trigger_publication_t;

/* Encodes the trigger event of d as JSON (schemas/trigger.schema.json, keys
 * in a fixed order, no whitespace) or protobuf learnd.v1.TriggerEvent.
 * The event schema has no INCONCLUSIVE verdict: it goes out as FAIL (the
 * champion stays) with a reason starting "inconclusive:".
 * pub must be given iff the verdict is PASS. created_at_ms is the wall clock
 * of emission (informational; the only non-deterministic field). On success
 * *out holds *len bytes (JSON: NUL-terminated, the NUL not counted); caller
 * frees *out with free(). LD_ERR_INVAL on a bad pub/verdict pairing or an
 * unavailable format, LD_ERR_NOMEM. */
ld_err_t ld_trigger_event_encode(const ld_trigger_decision_t *d,
                                 const ld_trigger_publication_t *pub,
                                 int64_t created_at_ms, int format,
                                 uint8_t **out, size_t *len) LD_WUR;

/* Lower-case names used in events and logs. */
const char *ld_trigger_type_name(ld_trigger_type_t type);
const char *ld_trigger_verdict_name(ld_trigger_verdict_t v);

#endif /* LD_TRIGGERS_H */
