/* SPDX-License-Identifier: Apache-2.0 */
/* The plain structs that flow between stages: a decoded record's features and
 * the labelled example the joiner hands the trainer. */
#ifndef LD_PIPELINE_RECORD_H
#define LD_PIPELINE_RECORD_H

#include <stdint.h>

/* Features of one record: hashed sparse slots plus a dense block. Indices are
 * already reduced to [0, 2^hash_bits). Arrays are borrowed from whoever owns
 * the record (decoder arena, pending-event store). */
typedef struct ld_features {
    const uint32_t *idx; /* sparse slot indices, nnz entries */
    const float *val;    /* sparse values, nnz entries (1.0 for one-hot) */
    const float *dense;  /* dense block, ndense entries */
    uint32_t nnz;
    uint32_t ndense;
} ld_features_t;

/* How an example got its label (docs/LABELING.md). */
typedef enum ld_sample_type {
    LD_SAMPLE_POS = 0,         /* label arrived inside the window */
    LD_SAMPLE_DEFAULT_NEG = 1, /* window closed without a label */
    LD_SAMPLE_FAKE_NEG = 2,    /* fake_negative policy: emitted at once */
    LD_SAMPLE_DELAYED_POS = 3, /* label arrived after the window/fake neg */
    LD_SAMPLE__COUNT = 4
} ld_sample_type_t;

/* One labelled example, in release order. */
typedef struct ld_example {
    ld_features_t x;
    float label;  /* 0/1 for logistic, value for linear, class for softmax */
    float weight; /* sample weight (importance weights applied later) */
    ld_sample_type_t sample_type;
    int64_t event_time_ms;
    int64_t label_time_ms; /* -1 when no label arrived */
    int32_t partition;     /* source partition of the event */
    int64_t offset;        /* source offset of the event */
    const char *event_id;  /* borrowed, NUL-terminated */
} ld_example_t;

/* Which input topic a record came from. */
typedef enum ld_record_kind {
    LD_RECORD_EVENT = 0, /* prediction-time event: key, time, features */
    LD_RECORD_LABEL = 1  /* natural label: key, time, label value */
} ld_record_kind_t;

/* Limits of what the joiner can hold, checked by the pipeline so that a
 * record beyond them is dead-lettered whole (with its value) rather than
 * refused later: join keys of at most LD_KEY_MAX bytes, times within
 * +-LD_TIME_LIMIT_MS (2^61 ms: sums of a time and a window never
 * overflow). */
#define LD_KEY_MAX       255
#define LD_TIME_LIMIT_MS (INT64_C(1) << 61)

/* What the serving system recorded on an event (pipeline.served_*
 * fields, docs/EXPERIMENTS.md): which variant served it, its score, the
 * scores of shadow variants, the propensity. A field that is present but
 * unusable does not make the event a dead letter -- the event still trains
 * the model -- it is left out here and its flaw bit set, which the daemon
 * counts per reason (learnd_served_flaws_total). */
#define LD_SERVED_NAME_MAX   64
#define LD_SERVED_SHADOW_MAX 4
enum {
    LD_SERVED_NO_VARIANT = 1,     /* variant field configured, absent/null */
    LD_SERVED_BAD_VARIANT = 2,    /* not a string/int or >= 64 bytes: other */
    LD_SERVED_BAD_SCORE = 4,      /* not a finite number */
    LD_SERVED_BAD_PROPENSITY = 8, /* not a number in (0, 1] */
    LD_SERVED_BAD_SHADOW = 16     /* a shadow score not a finite number */
};
typedef struct ld_served {
    int16_t variant_len; /* -1: no variant (not configured or absent) */
    char variant[LD_SERVED_NAME_MAX]; /* NUL-terminated */
    uint8_t nshadow;   /* pipeline.served_shadow_fields, in order */
    uint8_t flaws;     /* LD_SERVED_* bits */
    double score;      /* NaN: none */
    double propensity; /* NaN: none */
    double shadow[LD_SERVED_SHADOW_MAX]; /* NaN: none */
} ld_served_t;

/* One decoded input record as the pipeline hands it to the joiner. Every
 * pointer is borrowed from the pipeline (decoder scratch) and stays valid
 * until the next ld_pipeline_poll() / ld_decoder_decode() call on the same
 * object: copy what must outlive that. */
typedef struct ld_record {
    ld_record_kind_t kind;
    const char *key;    /* join key, UTF-8 without NUL bytes, NUL-terminated */
    uint32_t key_len;   /* bytes of key before the NUL */
    int64_t time_ms;    /* event time (events) or label time (labels) */
    double label;       /* labels: the computed label value; events: 0 */
    int no_label;       /* labels: 1 when the record is not a label (label_mode
                           equals, field absent or not label_equals): only its
                           time counts (ld_joiner_add_nolabel) */
    ld_features_t x;    /* events: hashed + dense features; labels: empty */
    const char *topic;  /* source topic (NULL outside the consumer) */
    int32_t partition;  /* source partition (-1 outside the consumer) */
    int64_t offset;     /* source offset (-1 outside the consumer) */
    ld_served_t served; /* events: what served them (inline: it crosses
                           the ingest thread with the struct) */
} ld_record_t;

#endif /* LD_PIPELINE_RECORD_H */
