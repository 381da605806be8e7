/* SPDX-License-Identifier: Apache-2.0 */
/* Where backtest and freshness start reading each input partition. */
#ifndef LD_DAEMON_EVAL_OFFSETS_H
#define LD_DAEMON_EVAL_OFFSETS_H

#include <stdint.h>

#include "daemon/config.h"

#define LD_EVAL_MAX_PARTITIONS 1024

/* Per partition of both input topics: where to start and the end offset
 * when asked. topic points to the config's topic names. */
typedef struct ld_eval_plan {
    size_t n;
    const char *topic[2 * LD_EVAL_MAX_PARTITIONS];
    int32_t partition[2 * LD_EVAL_MAX_PARTITIONS];
    int64_t first[2 * LD_EVAL_MAX_PARTITIONS], end[2 * LD_EVAL_MAX_PARTITIONS];
    int32_t nparts;
} ld_eval_plan_t;

/* Fills pl (zeroed by the caller) for conf's input topics (co-partitioned,
 * at most LD_EVAL_MAX_PARTITIONS each): each partition's first offset whose
 * Kafka timestamp is at or after seek_ms (offsets_for_times; the log start
 * where the cluster cannot look up by time, with a warning; the end where
 * no record is that new) and its end offset. A partition whose log starts
 * at the offset found, above 0, may have lost records of the range to
 * retention: each is printed as one line naming topic, partition and the
 * offsets gone. Messages go to stderr as `learnd VERB: ...`. Returns -1
 * when pl is ready, else the exit code (LD_EXIT_RUNTIME). conf borrowed. */
int ld_eval_plan_build(const char *verb, const ld_config_t *conf,
                       int64_t seek_ms, ld_eval_plan_t *pl);

#endif /* LD_DAEMON_EVAL_OFFSETS_H */
