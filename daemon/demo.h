/* SPDX-License-Identifier: Apache-2.0 */
/* The embedded demo: a synthetic click stream with delayed labels and a
 * concept drift half-way, in the example Avro shapes of schemas/. */
#ifndef LD_DAEMON_DEMO_H
#define LD_DAEMON_DEMO_H

#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

typedef struct ld_demo_gen ld_demo_gen_t;

/* What the generator produces. Event time is synthetic: event i happens at
 * start_time_ms + i * step_ms, so the stream never depends on the wall
 * clock. */
typedef struct ld_demo_gen_conf {
    uint64_t seed;
    int64_t n_events;
    int64_t drift_at; /* event index where the true model changes */
    int64_t start_time_ms;
    int64_t step_ms;
    double label_delay_ms; /* mean of the exponential click delay */
    /* Share of clicks whose label record is emitted just before its event's
     * (the topics are independent, so a consumer can see it first). */
    double early_label_share;
    /* > 0: every event is served by variant "v1" or "v2" (half each, by
     * its index), v2's click probability is (1 + served_lift) times v1's,
     * and the event record ends with two more fields, served_model and
     * served_p (the score the variant served), as
     * ld_demo_served_avsc() describes. 0: the records of schemas/event.avsc,
     * byte for byte as before. */
    double served_lift;
} ld_demo_gen_conf_t;

/* One record to produce. Pointers stay valid until the next call. */
typedef struct ld_demo_record {
    int is_label;         /* 0: events topic (schemas/event.avsc);
                             1: labels topic (schemas/label.avsc) */
    const char *key;      /* event id, NUL-terminated */
    int64_t time_ms;      /* event or label time */
    const uint8_t *value; /* Avro binary, no container */
    size_t len;
    int64_t index; /* event index this record belongs to */
} ld_demo_record_t;

/* Returns a generator, or NULL on allocation failure. Free with
 * ld_demo_gen_destroy(). */
ld_demo_gen_t *ld_demo_gen_new(const ld_demo_gen_conf_t *conf);
void ld_demo_gen_destroy(ld_demo_gen_t *g);

/* Fills out with the next record in time order (labels are emitted when the
 * event clock passes their label time; the rest follow the last event).
 * Returns 1, 0 when the stream is over, or -1 when memory ran out. */
int ld_demo_gen_next(ld_demo_gen_t *g, ld_demo_record_t *out);

/* Counters of what was generated so far. */
typedef struct ld_demo_gen_stats {
    int64_t events;
    int64_t labels;
} ld_demo_gen_stats_t;
void ld_demo_gen_stats(const ld_demo_gen_t *g, ld_demo_gen_stats_t *out);

/* schemas/event.avsc with the two served fields appended (what the
 * generator writes with served_lift > 0). Caller frees with free(); NULL
 * when out of memory. */
char *ld_demo_served_avsc(void);

/* `learnd demo ...`: argv[0] is "demo". Returns the exit code. */
int ld_cmd_demo(int argc, char **argv);

#endif /* LD_DAEMON_DEMO_H */
