/* SPDX-License-Identifier: Apache-2.0 */
/* Shared by the run loop's files: run.c (the state machine, the stage
 * callbacks, the periodic jobs), run_input.c (the input policies: live
 * and replay), run_commit.c (positions, lineage, the resume state, commit
 * points), run_report.c (metrics and progress) and run_setup.c (setup and
 * teardown). Nothing outside daemon/run*.c includes it. */
#ifndef LD_DAEMON_RUN_INTERNAL_H
#define LD_DAEMON_RUN_INTERNAL_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/ingest.h"
#include "daemon/metrics.h"
#include "daemon/run.h"
#include "daemon/signals.h"
#include "daemon/version.h"
#include "experiments/experiments.h"
#include "pipeline/pipeline.h"
#include "publish/publish.h"

/* Where the loop is (see the diagram at the top). */
typedef enum run_state {
    RUN_STARTING = 0, /* set up; the ingest thread not started */
    RUN_RUNNING,      /* items flow from the ingest thread */
    RUN_PARKING,      /* ld_ingest_pause() asked; items before PAUSED come */
    RUN_PARKED,       /* PAUSED taken: the pipeline is the loop's */
    RUN_DRAINING,     /* ld_ingest_stop() asked; waiting for STOPPED */
    RUN_STOPPED,      /* the ingest thread ended */
    RUN_CLOSING       /* leaving the group: revoked partitions stay gone */
} run_state_t;

typedef struct run run_t;

/* What reading the input live (`learnd run`) and re-reading it to rebuild
 * one version (`learnd replay`) do differently. run_setup() picks one of
 * the two instances below once; the loop calls through run_t.in and never
 * asks which it is: a replay is the same loop with the capture publisher,
 * the recorded starts and advances, and a stop condition. Loop thread (and
 * the ingest thread's rebalance callbacks, while the loop holds still). */
typedef struct run_input_policy {
    /* Outputs go to Kafka: a transactional id, the audit topic, the
     * publisher thread, dead letters. 0: nothing is written (the pipeline
     * dry-runs, commit points commit nothing). */
    int writes;
    int warm_start; /* the local model store may seed the model */
    int metrics;    /* the /metrics endpoint may be served */
    /* The end of the input offers no new version when the model is the
     * newest one already (a backfill run again on input it had read). */
    int final_dedup;
    const char *progress; /* the progress line's word (run_report.c) */
    int progress_always;  /* shown without --until-caught-up too */
    /* Its own setup, before anything else is built (a group, the recorded
     * advances' bookkeeping); an exit code, errstr saying why not. */
    int (*setup)(run_t *r, char *errstr, size_t size);
    /* The publishing stage (caller frees with ld_publisher_destroy();
     * NULL: out of memory): Kafka, or the capture of the version asked
     * for. */
    ld_publisher_t *(*publisher)(const run_t *r, const ld_publisher_conf_t *pc);
    /* Where topic/partition starts reading, given where the joiner's
     * resume state says (resume; -1: the group's committed offset): the
     * offset, -1 for the group's (or auto.offset.reset), or
     * RD_KAFKA_OFFSET_BEGINNING. */
    int64_t (*start)(run_t *r, const char *topic, int32_t partition,
                     int64_t resume);
    /* An assignment's starts are set (parts borrowed). */
    void (*started)(run_t *r, const rd_kafka_topic_partition_list_t *parts);
    /* Every record of kind/partition below next is taken: the recorded
     * idle advances due there are applied. NULL: nothing recorded to
     * repeat (a call per record would be a cost for nothing). */
    void (*read_to)(run_t *r, int kind, int32_t partition, int64_t next);
    /* Parked: the wall-clock idle-partition advance (now: monotonic ms). */
    void (*idle_advance)(run_t *r, int64_t now);
    /* A decision's publication was queued. */
    void (*queued)(run_t *r);
    /* A commit point (see run_commit_point()). */
    ld_err_t (*commit_point)(run_t *r);
    /* The stop condition: what this run is for is done. */
    int (*reached)(const run_t *r);
    /* The input is read as far as it goes: sets exit_code if it fell
     * short of what it is for. */
    void (*end)(run_t *r);
} run_input_policy_t;

/* Reads on forever (or to the end with --until-caught-up), resumes where
 * the last commit point left off, advances idle partitions by the wall
 * clock and records it; everything goes out at commit points. */
extern const run_input_policy_t run_input_live;
/* Reads from the recorded starts, repeats the recorded advances instead of
 * the wall clock's, writes nothing, and stops once the version asked for
 * (opts->replay_version) is captured. */
extern const run_input_policy_t run_input_replay;

/* Metric family ids. */
typedef struct families {
    int records, dlq, examples, pending, pending_bytes, watermark, model,
        champion, published, triggers, txn, up, version, trained, lag,
        label_records, dropped, wm_ahead, wm_ahead_alert, last_pub_version,
        last_pub_time, last_commit_time, state_bytes, drift_score;
} families_t;

struct run {
    const ld_config_t *conf;
    const ld_run_opts_t *opts;
    const run_input_policy_t *in; /* live or replay (run_setup) */
    ld_run_hooks_t hooks;
    ld_trainer_conf_t tconf;
    ld_pipeline_conf_t pconf; /* conf->pipeline, with the model's hash_bits */
    ld_pipeline_t *pipe;
    ld_ingest_t *ingest; /* polls pipe on its own thread while the loop runs */
    ld_joiner_t *joiner;
    ld_trainer_t *trainer;
    ld_triggers_t *trig;
    ld_metrics_t *reg;
    ld_http_t *http;
    families_t fam;
    char txn_id[256];
    int exit_code;          /* set once a fatal error is seen */
    uint64_t consumed;      /* good records processed */
    uint64_t dead;          /* dead-lettered records seen */
    uint64_t refused;       /* records the joiner refused (a bug if not 0) */
    uint64_t model_refused; /* examples the trainer refused */
    /* the counts the lineage has been given (ld_lineage_count) */
    uint64_t lin_dead, lin_late;
    /* rate-limited log of dropped records (report) */
    int64_t drop_log_next;
    uint64_t drop_logged;
    /* next offset per partition of each input topic, as far as the loop
     * has processed (the pipeline's own positions run ahead by the ring) */
    int64_t *next[2];
    int32_t nnext[2];
    uint64_t examples;
    /* ctr->published once the resume state was restored: the stop line
     * tells this process's publications from the lifetime count */
    uint64_t published_at_start;
    /* the publishing stage: queue, versions, what a publication becomes
     * (Kafka for run, capture for replay); ctr is its counters */
    ld_publisher_t *pub;
    ld_resume_counters_t *ctr;
    int64_t start_ms;
    /* exactly-once resume state (docs/ARCHITECTURE.md) */
    int stateful; /* transactions on: write and restore resume state */
    int audit;    /* labeling.output_topic is set */
    /* Events still waiting for their window when the consumer closed (the
     * revocation then empties the joiner; the committed state keeps them
     * for the next start). */
    uint64_t pending_at_close;
    int replay_done; /* run_input_replay: its capture holds the version */
    int caught_up;   /* the ingest thread saw every partition's end */
    run_state_t state;
    /* the periodic jobs' clocks (tick) */
    int64_t next_commit, next_report, last_item;
    uint64_t last_consumed_hook, last_flow;
    int pile, flow; /* due now: publications waiting, flow control */
    /* the replay policy's (run_input.c) */
    uint8_t *adv_done; /* which recorded advances were applied */
    size_t adv_left;
    char replay_group[128];
    ld_lineage_t *lin;       /* input since the last publication */
    uint8_t config_hash[32]; /* of the effective config, kafka: excluded */
    uint8_t fmap_sha[32];    /* SHA-256 of the canonical feature mapping */
    uint8_t *audit_buf;
    size_t audit_cap;
    uint64_t progress_at_commit;
    /* the progress line of --until-caught-up and replay (run_report.c) */
    int64_t lag_total, prog_next_ms, prog_last_ms;
    uint64_t prog_last_records;
    int prog_tty, prog_shown;
    ld_partset_t assigned; /* partitions the joiner holds */
    /* labeling.at_bound pause (see on_flow) */
    int flow_on;     /* at_bound is pause */
    int flow_lift;   /* parked to let every held partition go */
    int flow_lifted; /* let go until the joiner holds none back */
    /* experiments (run_exp.c); NULL when nothing is served */
    ld_exp_set_t *exp;
    int exp_shadow[LD_SERVED_SHADOW_MAX]; /* variant of each shadow field */
    uint64_t exp_flaws[5];                /* served flaws, by bit */
    /* roles (run_join.c, run_train.c); NULL in role all */
    char examples_topic[256];
    char state_model[256]; /* the publisher's model: a join instance's own */
    struct run_join *join;
    struct run_train *train;
    int64_t train_dt; /* train: decision time of the last example trained */
};

/* The record kind of an input topic's records. */
static inline int run_kind_of(const run_t *r, const char *topic)
{
    return strcmp(topic, r->conf->pipeline.events_topic) == 0 ? LD_RECORD_EVENT
                                                              : LD_RECORD_LABEL;
}

/* ---- run.c -------------------------------------------------------------- */

/* Pipeline and trainer callbacks (setup installs them). */
void run_on_assigned(void *opaque, rd_kafka_topic_partition_list_t *parts);
void run_on_revoked(void *opaque, const rd_kafka_topic_partition_list_t *parts,
                    int lost);
void run_on_dead_lettered(void *opaque, const char *topic, int32_t partition,
                          int64_t offset);
void run_on_scored(void *opaque, const ld_scored_t *s, size_t n);
/* Takes the trigger decisions made so far (publications, events). */
void run_take_decisions(run_t *r);
/* The input is read: trains what is queued and offers the last version. */
void run_final_checkpoint(run_t *r);

/* ---- run_join.c --------------------------------------------------------- */

/* Join role: the examples topic (created with the inputs' partition count
 * when missing, refused when its count differs) and the model spec the
 * examples carry; an exit code, errstr saying why not. */
int run_join_setup(run_t *r, char *errstr, size_t size);
/* One released example into the open transaction, on the examples topic's
 * partition of its source partition; sets exit_code when it cannot. */
void run_join_emit(run_t *r, const ld_example_t *ex);
/* A watermark record on each assigned partition: written at a commit point
 * after every due example, so that no later one decides before it. */
ld_err_t run_join_watermarks(run_t *r);
/* Hand-over (run_join.c, "Hand-over of partitions"): the offsets a commit
 * point commits, each assigned partition's joiner record as their metadata
 * (caller destroys *out); partition p's record loaded from its committed
 * offset before the joiner is assigned p (sets exit_code when it cannot);
 * the revoke callback's commit point, or abort when lost. */
ld_err_t run_join_offsets(run_t *r, rd_kafka_topic_partition_list_t **out);
void run_join_take_over(run_t *r, int32_t partition);
void run_join_hand_over(run_t *r, int lost);
void run_join_free(run_t *r);
/* The model spec (hash bits, dense dim, feature map SHA-256) of this
 * config; 0, or -1 with errstr. */
int run_model_spec(const run_t *r, uint32_t *hash_bits, uint32_t *dense_dim,
                   uint8_t fmap_sha[32], char *errstr, size_t size);
/* Partition count of topic through producer (-1 with errstr). */
int run_topic_partitions(rd_kafka_t *rk, const char *topic, char *errstr,
                         size_t size);

/* ---- run_train.c -------------------------------------------------------- */

/* Train role: its consumer of the examples topic (every partition) and its
 * transactional producer, the publisher started on it; an exit code. */
int run_train_setup(run_t *r, char *errstr, size_t size);
/* The train role's loop, until stopped or (until_caught_up) the examples
 * topic is read; the exit code. */
int run_train(run_t *r);
void run_train_teardown(run_t *r);
/* The examples topic's positions a commit point commits (caller frees
 * *out; the count). */
size_t run_train_positions(run_t *r, Learnd__V1__PartitionPosition **out);

/* ---- run_commit.c ------------------------------------------------------- */

/* The input positions now (see run_commit.c); caller frees *out. */
size_t run_positions(run_t *r, int committed,
                     Learnd__V1__PartitionPosition **out);
/* The lineage of a publication: the input since the last one. */
Learnd__V1__Lineage *run_take_lineage(run_t *r);
/* Restores the newest committed resume state, if there is one. */
ld_err_t run_restore_state(run_t *r, char *errstr, size_t size);
/* A commit point: outputs and input offsets in one transaction; sets
 * exit_code when it fails. Only while parked (or after the ingest thread
 * stopped). */
ld_err_t run_commit_point(run_t *r);
/* A commit point's transaction committed: the publisher's staged versions
 * become the store's, the commit metrics and hooks follow (published: the
 * count before the commit point). */
void run_committed(run_t *r, uint64_t published);
/* The resume state into the open transaction (a commit point's). */
ld_err_t run_save_state(run_t *r, rd_kafka_t *producer);
void run_say_fenced(const run_t *r);

/* ---- run_report.c ------------------------------------------------------- */

void run_declare_metrics(run_t *r);
/* The model's metrics (both models' windowed metrics, drift scores,
 * publications, examples trained, versions), shared by both loops. */
void run_report_model(run_t *r, const ld_trainer_metrics_t *model,
                      const ld_trainer_metrics_t *champion);
/* Metric values and the progress hook, once a second while parked. */
void run_report(run_t *r);
/* Sets learnd_records_dropped_total from js and logs the drop line when the
 * totals moved: at most every 10 s, or now when final is set (the stop). */
void run_report_drops(run_t *r, const ld_joiner_stats_t *js, int final);
/* The last log line of a run: js this process's joiner counters, life the
 * lifetime ones (ld_joiner_stats_lifetime); docs/OPERATIONS.md says what
 * each field counts. */
void run_report_stopped(const run_t *r, const ld_joiner_stats_t *js,
                        const ld_joiner_stats_t *life);
/* Ends the progress line on a terminal (a newline), once the input is read. */
void run_progress_end(run_t *r);

/* ---- run_exp.c ---------------------------------------------------------- */

/* Builds the experiment set from the config (none when nothing is served);
 * an exit code, errstr saying why not. */
int run_exp_setup(run_t *r, char *errstr, size_t size);
/* An event the joiner took: what served it. */
void run_exp_serve(run_t *r, const ld_record_t *rec);
/* Matured examples, in release order. */
void run_exp_scored(run_t *r, const ld_scored_t *s, size_t n);
/* Per-variant and per-experiment metrics, and the /experiments document. */
void run_exp_report(run_t *r);
/* The queued decisions into the commit point's open transaction (the
 * triggers topic, key = idempotency key), then off the queue. */
ld_err_t run_exp_flush(run_t *r);
/* The resume-state hooks (ld_resume_parts_t.exp_save / exp_load). */
void run_exp_save(void *opaque, ld_wbuf_t *w);
ld_err_t run_exp_load(void *opaque, const uint8_t *buf, size_t len,
                      char *errstr, size_t size);

/* ---- run_setup.c -------------------------------------------------------- */

/* Builds every stage; an exit code (LD_EXIT_OK, or why not with errstr). */
int run_setup(run_t *r, char *errstr, size_t size);
/* Frees what setup built, in the order the producer needs. */
void run_teardown(run_t *r);

#endif /* LD_DAEMON_RUN_INTERNAL_H */
