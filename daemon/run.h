/* SPDX-License-Identifier: Apache-2.0 */
/* The run loop: wires pipeline -> labeling -> trainer -> triggers and owns
 * commit points, publications, metrics and shutdown. */
#ifndef LD_DAEMON_RUN_H
#define LD_DAEMON_RUN_H

#include <stdint.h>

#include "daemon/config.h"

/* What the loop reports once a second (wall clock: display only). */
typedef struct ld_run_progress {
    int64_t elapsed_ms;
    uint64_t events, labels, dead_letters;
    uint64_t examples; /* released by the joiner and trained on */
    uint64_t by_type[LD_SAMPLE__COUNT]; /* released, by sample type */
    uint64_t pending;                   /* events waiting for their label */
    uint64_t pending_peak; /* most events plus labels the joiner held */
    int64_t watermark_ms;  /* min watermark over assigned partitions */
    uint64_t published;    /* checkpoints published this run */
    uint64_t champion_version;
    ld_trainer_metrics_t model, champion;
} ld_run_progress_t;

/* Optional callbacks for the embedded demo and tests; every pointer may be
 * NULL. They run on the loop's thread. */
typedef struct ld_run_hooks {
    void *opaque;
    /* Once a second. */
    void (*progress)(void *opaque, const ld_run_progress_t *p);
    /* Every example the joiner releases, before the trainer sees it. */
    void (*example)(void *opaque, const ld_example_t *ex);
    /* Every micro-batch's matured examples with their prequential scores. */
    void (*scored)(void *opaque, const ld_scored_t *s, size_t n);
    /* Every input record consumed (good or dead-lettered), as a running
     * total, at least every 1024 records. */
    void (*consumed)(void *opaque, uint64_t total);
    /* Every trigger decision, as it is taken (borrowed). */
    void (*decision)(void *opaque, const ld_trigger_decision_t *d);
    /* Every experiment decision or routing weights, as the commit point
     * writes it (borrowed; experiments/experiments.h). */
    void (*experiment)(void *opaque, const struct ld_exp_decision *d);
    /* Every commit point that committed, with the checkpoints it
     * published. */
    void (*committed)(void *opaque, uint64_t checkpoints);
    /* Asked once per loop iteration; non-zero stops the loop cleanly. */
    int (*should_stop)(void *opaque);
} ld_run_hooks_t;

/* Replay: where the original run started reading a partition, and an idle
 * watermark advance it made (recorded in checkpoint lineages). Topics name
 * the configured input topics. */
typedef struct ld_run_start {
    const char *topic;
    int32_t partition;
    int64_t offset;
} ld_run_start_t;

typedef struct ld_run_advance {
    const char *topic;
    int32_t partition;
    int64_t offset; /* applied once the partition is read up to here */
    int64_t watermark_ms;
} ld_run_advance_t;

/* What one process does (docs/OPERATIONS.md, "Scaling out"): all of it,
 * only the join (labelled examples to the examples topic) or only the
 * training (from the examples topic). */
typedef enum ld_run_role {
    LD_ROLE_ALL = 0,
    LD_ROLE_JOIN,
    LD_ROLE_TRAIN
} ld_run_role_t;

typedef struct ld_run_opts {
    ld_run_role_t role;
    /* join and train: the examples topic (NULL: "<events topic>.examples");
     * join: this instance's name, unique in the group (its transactional
     * id and resume state); borrowed */
    const char *examples_topic;
    const char *instance;
    int until_caught_up; /* exit 0 once the start-up end offsets are read */
    int from_scratch;    /* ignore stored checkpoints */
    int no_transactions; /* the mock cluster cannot run them */
    const ld_run_hooks_t *hooks;
    /* Replay (learnd replay): read the input from the beginning in a fresh
     * consumer group, train from scratch, write nothing to Kafka or the
     * model store, and stop where version replay_version is published; the
     * model at that point is handed over in *replayed (caller frees with
     * ld_snapshot_destroy()). 0: not a replay. */
    uint64_t replay_version;
    ld_snapshot_t **replayed;
    /* Replay: start offsets (partitions not listed start at the
     * beginning) and the advances to repeat at their offsets; borrowed. */
    const ld_run_start_t *replay_start;
    size_t n_replay_start;
    const ld_run_advance_t *replay_advances;
    size_t n_replay_advances;
} ld_run_opts_t;

/* Runs the daemon until SIGTERM/SIGINT, a hook asks to stop, or (with
 * until_caught_up) the input is read. conf and opts are borrowed. Returns
 * the process exit code: 0 clean stop, 1 runtime failure (fenced, fatal
 * Kafka error), 2 configuration error found at start-up. */
int ld_run(const ld_config_t *conf, const ld_run_opts_t *opts);

/* Called by ld_run_check_retained for each partition whose log starts
 * above the offset wanted there (retention deleted want..log_start-1).
 * topic is borrowed for the call. */
typedef void ld_run_gap_cb(void *opaque, const char *topic, int32_t partition,
                           int64_t want, int64_t log_start);

/* Asks the cluster reached with kafka (the config's `kafka:` map, borrowed)
 * where the log of each want[i] (borrowed; offsets < 0 are skipped) starts
 * now, and calls gap(opaque, ...) for each one that starts above the wanted
 * offset. Returns the number of gaps, or -1 with the reason in errstr when
 * the cluster cannot be asked within timeout_ms per partition. */
int ld_run_check_retained(const ld_strlist_t *kafka, const ld_run_start_t *want,
                          size_t n, int timeout_ms, ld_run_gap_cb *gap,
                          void *opaque, char *errstr, size_t errstr_size);

#endif /* LD_DAEMON_RUN_H */
