/* SPDX-License-Identifier: Apache-2.0 */
/* The learnd YAML config: one file, loaded through every module's table. */
#ifndef LD_DAEMON_CONFIG_H
#define LD_DAEMON_CONFIG_H

#include <stdio.h>

#include "common/common.h"
#include "experiments/experiments.h"
#include "labeling/labeling.h"
#include "pipeline/pipeline.h"
#include "trainer/checkpoint.h"
#include "trainer/trainer.h"
#include "triggers/triggers.h"

/* daemon: lifecycle and exactly-once rhythm. */
typedef struct ld_daemon_conf {
    int64_t commit_interval_ms;
    int64_t shutdown_timeout_ms;
    char *transactional_id;
    char *state_topic;
    char *checkpoint_topic;
    char *trigger_topic;
} ld_daemon_conf_t;

/* log: level, file, per-module debug switches. */
typedef struct ld_log_conf {
    int level; /* ld_log_level_t */
    char *file;
    ld_strlist_t debug;
} ld_log_conf_t;

/* metrics: the Prometheus / health endpoint. */
typedef struct ld_metrics_conf {
    int enabled;
    char *listen;
    int64_t port;
} ld_metrics_conf_t;

/* The whole config. Plain struct: stages read their own section. */
typedef struct ld_config {
    char *path;
    ld_daemon_conf_t daemon;
    ld_log_conf_t log;
    ld_metrics_conf_t metrics;
    ld_pipeline_conf_t pipeline;
    ld_labeling_conf_t labeling;
    ld_trainer_conf_t trainer;
    ld_ckpt_conf_t checkpoint;
    ld_triggers_conf_t triggers;
    /* kafka: passed to librdkafka as-is; pairs key0, value0, key1, ... */
    ld_strlist_t kafka;
    /* experiments: a list, each item checked (ld_exp_conf_to_spec) */
    ld_exp_conf_t *experiments;
    size_t nexperiments;
} ld_config_t;

/* Loads path into a new config. Every problem found (unknown key, wrong type,
 * value out of range, missing required key, undefined ${ENV}) is written to
 * errs as one `file:line:column: key: reason` line; secret values are never
 * written. Returns NULL on any error (errs says why). Caller frees the result
 * with ld_config_destroy(). errs is borrowed and may be NULL. */
ld_config_t *ld_config_load(const char *path, FILE *errs);

/* A config holding only defaults (required keys left empty), for the demo and
 * tests. Returns NULL on allocation failure. Caller frees. */
ld_config_t *ld_config_new_defaults(void);

/* Frees conf and everything it owns; NULL is a no-op. */
void ld_config_destroy(ld_config_t *conf);

/* Writes the effective config as YAML to out, secrets shown as
 * "<redacted>". */
void ld_config_dump(const ld_config_t *conf, FILE *out);

/* Applies the log: section (level, debug modules, file). Returns LD_ERR_IO
 * when the log file cannot be opened. */
ld_err_t ld_config_apply_logging(const ld_config_t *conf) LD_WUR;

/* Writes docs/CONFIGURATION.md (Markdown, generated from the tables). */
void ld_config_write_doc(FILE *out);

#endif /* LD_DAEMON_CONFIG_H */
