/* SPDX-License-Identifier: Apache-2.0 */
/* Inside `learnd demo`: its state, shared by demo.c (the run and its
 * hooks), demo_kafka.c (the cluster) and demo_summary.c (the report). Not
 * for other commands. */
#ifndef LD_DAEMON_DEMO_IMPL_H
#define LD_DAEMON_DEMO_IMPL_H

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/demo.h"
#include "daemon/demo_exp.h"
#include "daemon/run.h"

#define PARTITIONS 4

/* Logloss sums over one stretch of the stream (matured examples only). */
typedef struct phase {
    const char *name;
    int64_t from, to; /* event index range [from, to) */
    double live, frozen;
    uint64_t n;
} phase_t;

/* Scores and labels of one model over a stretch, for an exact AUC. */
typedef struct scores {
    float *p;
    uint8_t *y;
    size_t n, cap;
} scores_t;

typedef struct demo {
    ld_demo_gen_conf_t gconf;
    char bootstrap[512];
    char dir[1024];
    /* On a real cluster each run is its own model and consumer group, so
     * that a second run does not resume (or collide with) the first. */
    char run_id[64];
    char model[96];
    char group[96];
    int resume; /* --run-id given */
    /* Newest record time produced to each input partition (resume: the
     * stop condition), and the watermark the run reached. */
    int64_t max_time[2][PARTITIONS];
    /* generator <-> loop */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint64_t consumed;
    uint64_t produced;
    int gen_done, gen_failed, stop;
    /* the frozen copy */
    ld_trainer_t *frozen;
    int64_t freeze_at;
    /* scoring by phase */
    phase_t phase[4];
    scores_t auc_live, auc_frozen; /* the last phase */
    /* what the run reported */
    ld_run_progress_t last;
    int64_t poison;
    uint64_t triggers[8][4];    /* by type, by verdict */
    int64_t first_drift_index;  /* -1: none */
    int64_t first_drift_before; /* drift triggers before the drift point */
    char first_drift_what[256]; /* what drifted at the first one */
    ld_demo_exp_t exp;          /* the v2-vs-v1 experiment (demo_exp.c) */
} demo_t;

/* Whether id may name a run: it goes into a model name, a consumer group
 * and file paths. */
int ld_demo_run_id_ok(const char *id);
/* The cluster the demo runs on: librdkafka's mock cluster (its address
 * into d->bootstrap), or the real one at d->bootstrap with the demo's
 * topics created. Returns 0, or -1 after saying why on stderr. */
int ld_demo_cluster_open(demo_t *d, rd_kafka_t **rkp,
                         rd_kafka_mock_cluster_t **mcp);
/* Prints the summary of the finished run d (exit code code) and writes
 * it as JSON to json_path (NULL: no JSON). */
void ld_demo_summary(demo_t *d, int code, double auc_live, double auc_frozen,
                     const char *json_path);

#endif
