/* SPDX-License-Identifier: Apache-2.0 */
/* The "triggers" config table: detectors, policies, gate and event format. */
#include <stddef.h>

#include "triggers/triggers.h"

#define F(f) offsetof(ld_triggers_conf_t, f)

/* One policy block per trigger kind, keys prefixed with the kind. */
#define POLICY(kind, field, en, cool, act, sev, desc)                          \
    {                                                                          \
        #kind "_enabled",                                                      \
        LD_CONF_BOOL,                                                          \
        F(field.enabled),                                                      \
        en,                                                                    \
        0,                                                                     \
        1,                                                                     \
        NULL,                                                                  \
        "Run the " desc " trigger"},                                           \
        {#kind "_cooldown",                                                    \
         LD_CONF_DURATION,                                                     \
         F(field.cooldown_ms),                                                 \
         cool,                                                                 \
         0,                                                                    \
         1e12,                                                                 \
         NULL,                                                                 \
         "Event time after the " desc " trigger fires before it may fire "     \
         "again"},                                                             \
        {#kind "_action",                                                      \
         LD_CONF_ENUM,                                                         \
         F(field.action),                                                      \
         act,                                                                  \
         0,                                                                    \
         0,                                                                    \
         "publish|alert",                                                      \
         "publish: publish a checkpoint if the gate passes; alert: emit the "  \
         "event only"},                                                        \
    {                                                                          \
#kind "_severity", LD_CONF_ENUM, F(field.severity), sev, 0, 0,         \
            "auto|info|warn|alert",                                            \
            "Severity of its events (auto: the detector's level)"              \
    }

/* Windowed kinds (performance, drift) also count bad windows. */
#define WINDOWED(kind, field, k, desc)                                         \
    {#kind "_consecutive",                                                     \
     LD_CONF_INT,                                                              \
     F(field.consecutive),                                                     \
     k,                                                                        \
     1,                                                                        \
     1000,                                                                     \
     NULL,                                                                     \
     "Consecutive bad windows before the " desc " trigger fires"},             \
    {                                                                          \
#kind "_fire_on", LD_CONF_ENUM, F(field.fire_on), "alert", 0, 0,       \
            "warn|alert", "Detector level a window must reach to count as bad" \
    }

static const ld_conf_row_t rows[] = {
    {"format", LD_CONF_ENUM, F(format), "json", 0, 0, "json|protobuf",
     "Encoding of trigger events on the triggers topic"},
    {"window_size", LD_CONF_INT, F(window_size), "10000", 100, 1e9, NULL,
     "Matured examples per performance and drift window"},
    {"seed", LD_CONF_INT, F(seed), "0", 0, 4294967295.0, NULL,
     "Seed of the reservoir samplers (replay gives identical decisions)"},
    {"evidence_max", LD_CONF_INT, F(evidence_max), "32", 4, 1024, NULL,
     "Most evidence items in one trigger event"},

    POLICY(time, time, "true", "0ms", "publish", "info", "time"),
    {"time_every", LD_CONF_DURATION, F(time_every_ms), "10m", 1000, 1e12, NULL,
     "Fire when this much event time passed since the last publish"},

    POLICY(volume, volume, "true", "0ms", "publish", "info", "volume"),
    {"volume_examples", LD_CONF_INT, F(volume_examples), "100000", 0, 1e15,
     NULL, "Fire after this many new matured examples (0: off)"},
    {"volume_share", LD_CONF_DOUBLE, F(volume_share), "0", 0, 10, NULL,
     "Fire when new examples reach this fraction of all seen (0: off)"},
    {"volume_share_min", LD_CONF_INT, F(volume_share_min), "1000", 1, 1e15,
     NULL, "New examples the share rule needs at least"},

    POLICY(performance, perf, "true", "10m", "publish", "auto", "performance"),
    WINDOWED(performance, perf, "1", "performance"),
    {"performance_metric", LD_CONF_ENUM, F(perf_metric), "logloss", 0, 0,
     "logloss|rmse|error", "Windowed metric compared with the reference"},
    {"performance_margin", LD_CONF_DOUBLE, F(perf_margin), "0.05", 0, 100, NULL,
     "Relative worsening of the champion vs the reference window that "
     "alerts"},
    {"performance_alpha", LD_CONF_DOUBLE, F(perf_alpha), "0.0001", 1e-12, 0.5,
     NULL,
     "One-sided significance the worsening must also reach (z-test on the "
     "window's mean loss; guards the margin against sampling noise)"},
    {"performance_ddm", LD_CONF_BOOL, F(perf_ddm), "true", 0, 1, NULL,
     "Run DDM on the 0/1 error stream (binary metrics only)"},
    {"performance_ddm_warn", LD_CONF_DOUBLE, F(perf_ddm_warn), "2", 0.5, 10,
     NULL, "DDM warning level, in standard deviations"},
    {"performance_ddm_drift", LD_CONF_DOUBLE, F(perf_ddm_drift), "3", 0.5, 10,
     NULL, "DDM drift level, in standard deviations"},
    {"performance_ddm_min", LD_CONF_INT, F(perf_ddm_min), "30", 1, 1e9, NULL,
     "Errors DDM sees before it may signal"},
    {"performance_adwin", LD_CONF_BOOL, F(perf_adwin), "true", 0, 1, NULL,
     "Run ADWIN on the 0/1 error stream (binary; alerts on increases)"},
    {"performance_adwin_delta", LD_CONF_DOUBLE, F(perf_adwin_delta), "0.002",
     1e-12, 0.5, NULL, "ADWIN confidence"},
    {"performance_ph", LD_CONF_BOOL, F(perf_ph), "true", 0, 1, NULL,
     "Run Page-Hinkley on the mean prediction"},
    {"performance_ph_delta", LD_CONF_DOUBLE, F(perf_ph_delta), "0.005", 0, 1e6,
     NULL, "Page-Hinkley tolerated change of the mean"},
    {"performance_ph_lambda", LD_CONF_DOUBLE, F(perf_ph_lambda), "50", 1e-6,
     1e9, NULL, "Page-Hinkley alarm threshold"},
    {"performance_ph_alpha", LD_CONF_DOUBLE, F(perf_ph_alpha), "0.9999", 0.5, 1,
     NULL, "Page-Hinkley fading factor (1: none)"},

    POLICY(drift, drift, "true", "10m", "publish", "auto", "drift"),
    WINDOWED(drift, drift, "1", "drift"),
    {"drift_numeric_test", LD_CONF_ENUM, F(drift_numeric_test), "ks", 0, 0,
     "ks|wasserstein|psi", "Test that marks a numeric feature as drifted"},
    {"drift_psi_bins", LD_CONF_INT, F(drift_psi_bins), "10", 2, 100, NULL,
     "PSI bins, at quantiles of the reference window"},
    {"drift_psi_warn", LD_CONF_DOUBLE, F(drift_psi_warn), "0.1", 0, 100, NULL,
     "PSI at which a feature counts as a warning"},
    {"drift_psi_alert", LD_CONF_DOUBLE, F(drift_psi_alert), "0.25", 0, 100,
     NULL, "PSI at which a feature drifted (drift_numeric_test psi)"},
    {"drift_alpha", LD_CONF_DOUBLE, F(drift_alpha), "0.05", 1e-12, 0.5, NULL,
     "Family-wise significance of the KS and G tests, Bonferroni-corrected"},
    {"drift_wasserstein", LD_CONF_DOUBLE, F(drift_wasserstein), "0.1", 0, 1e6,
     NULL, "Wasserstein distance over the reference's std that drifted"},
    {"drift_js", LD_CONF_DOUBLE, F(drift_js), "0.1", 0, 1, NULL,
     "Jensen-Shannon distance (base 2), beyond what sampling noise gives, at "
     "which a categorical drifted (its G-test must also pass drift_alpha)"},
    {"drift_min_share", LD_CONF_DOUBLE, F(drift_min_share), "0.5", 0, 1, NULL,
     "Share of drifted features that makes a dataset-level alert"},
    {"drift_sample_size", LD_CONF_INT, F(drift_sample_size), "1024", 16, 1e6,
     NULL, "Reservoir sample per numeric feature and window"},
    {"drift_topk", LD_CONF_INT, F(drift_topk), "64", 2, 1e5, NULL,
     "Frequent values tracked for a categorical label (SpaceSaving)"},
    {"drift_max_features", LD_CONF_INT, F(drift_max_features), "256", 0, 1e5,
     NULL, "Dense slots watched for drift (the first N)"},
    {"drift_feature_names", LD_CONF_STRLIST, F(drift_feature_names), "", 0, 0,
     NULL, "Names of the dense slots in order (default dense_<i>)"},
    {"drift_hashed", LD_CONF_BOOL, F(drift_hashed), "true", 0, 1, NULL,
     "Watch the hashed slot ids as one categorical feature"},
    {"drift_stride", LD_CONF_INT, F(drift_stride), "2", 1, 1e6, NULL,
     "Dense features of every N-th matured example feed the drift samples"},
    {"drift_hashed_bins", LD_CONF_INT, F(drift_hashed_bins), "1024", 2, 65536,
     NULL, "Bins of the hashed-id histogram (ids are hashed into them)"},
    {"drift_hashed_stride", LD_CONF_INT, F(drift_hashed_stride), "4", 1, 1e6,
     NULL, "Hashed ids of every N-th matured example feed the histogram"},
    {"drift_label", LD_CONF_ENUM, F(drift_label_categorical), "categorical", 0,
     0, "numeric|categorical",
     "How label drift is measured (JS for categorical)"},

    {"gate_enabled", LD_CONF_BOOL, F(gate_enabled), "true", 0, 1, NULL,
     "Compare challenger and champion before publishing"},
    {"gate_metric", LD_CONF_ENUM, F(gate_metric), "logloss", 0, 0,
     "logloss|rmse|error|auc", "Metric of the gate"},
    {"gate_tolerance", LD_CONF_DOUBLE, F(gate_tolerance), "0.005", 0, 1e6, NULL,
     "How much worse (absolute) the challenger may be and still pass"},
    {"gate_min_samples", LD_CONF_INT, F(gate_min_samples), "1000", 1, 1e9, NULL,
     "Examples scored by both models the gate needs (else FAIL)"},
    {"gate_window", LD_CONF_INT, F(gate_window), "10000", 1, 1e8, NULL,
     "Most recent matured examples the gate compares on"},
};

const ld_conf_section_t ld_triggers_conf_section = {
    "triggers", "Time, volume, performance and drift triggers and the gate",
    LD_CONF_ROWS(rows)};
