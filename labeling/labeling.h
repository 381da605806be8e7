/* SPDX-License-Identifier: Apache-2.0 */
/* The joiner: turns prediction events and their delayed natural labels into
 * labelled examples, decided on event-time watermarks so that the output is a
 * pure function of the input (docs/LABELING.md). */
#ifndef LD_LABELING_H
#define LD_LABELING_H

#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "pipeline/record.h"

/* ---- Configuration ------------------------------------------------------ */

/* Choices of the ENUM rows, in the order of their "a|b" text. */
enum { LD_AGG_FIRST = 0, LD_AGG_LAST = 1, LD_AGG_MAX = 2, LD_AGG_SUM = 3 };
enum { LD_MODE_WINDOW = 0, LD_MODE_FAKE_NEGATIVE = 1 };
enum { LD_LATE_DROP = 0, LD_LATE_CORRECT = 1 };
enum { LD_BOUND_EXPIRE_OLDEST = 0, LD_BOUND_PAUSE = 1 };
enum { LD_AUDIT_PROTOBUF = 0, LD_AUDIT_JSON = 1 };

/* The `labeling:` section. Filled by the config loader from
 * ld_labeling_conf_section; ld_conf_free() releases its strings. */
typedef struct ld_labeling_conf {
    int64_t window_ms;       /* event time an event waits for labels */
    int64_t max_ooo_ms;      /* max_out_of_orderness */
    int64_t idle_timeout_ms; /* wall-clock idleness before an advance; 0 off */
    int64_t late_horizon_ms; /* retention after the window for late labels */
    int aggregate;           /* LD_AGG_* */
    double default_label;    /* label of an event whose window closed empty */
    int mode;                /* LD_MODE_* */
    int late_policy;         /* LD_LATE_* */
    int64_t max_pending;     /* pending events + labels before at_bound */
    int at_bound;            /* LD_BOUND_* */
    char *output_topic;      /* audit topic; NULL or "" for none */
    int output_format;       /* LD_AUDIT_* */
} ld_labeling_conf_t;

/* Section "labeling" of the config table. */
extern const ld_conf_section_t ld_labeling_conf_section;

/* ---- Joiner ------------------------------------------------------------- */

typedef struct ld_joiner ld_joiner_t;

/* The two co-partitioned input topics. */
typedef enum ld_topic_kind {
    LD_TOPIC_EVENTS = 0,
    LD_TOPIC_LABELS = 1
} ld_topic_kind_t;

/* A recorded watermark advance: "before any record of (kind, partition) with
 * offset >= offset, raise that partition's watermark to watermark_ms".
 * offset -1 means before the first record. */
typedef struct ld_wm_advance {
    ld_topic_kind_t kind;
    int32_t partition;
    int64_t offset;
    int64_t watermark_ms;
} ld_wm_advance_t;

/* Gauges and counters. Counters do not count records re-read on resume
 * (offset below the resume state's next offset) twice. */
typedef struct ld_joiner_stats {
    /* gauges */
    uint64_t pending_events; /* events in the store (waiting or retained) */
    uint64_t pending_labels; /* labels waiting for their event */
    uint64_t bytes_entries;  /* bytes of the store's entries (slab chunks) */
    uint64_t bytes_total;    /* entries + index + heap + slab slack */
    uint64_t paused;         /* partitions the caller has been told to pause */
    uint64_t pending_peak;   /* most events plus labels held at once */
    int64_t watermark_ms;    /* min watermark over assigned partitions */
    /* max of them (INT64_MIN: none yet): the one a wrong clock runs ahead */
    int64_t watermark_max_ms;
    /* counters */
    uint64_t events_in, labels_in;
    uint64_t events_late;         /* older than their partition watermark */
    uint64_t labels_late;         /* older than their partition watermark */
    uint64_t events_duplicate;    /* same key as a kept event: first wins */
    uint64_t labels_joined;       /* aggregated inside an event's window */
    uint64_t labels_after_window; /* for a kept event whose window closed */
    uint64_t late_labels_dropped; /* after-window labels not emitted */
    uint64_t labels_unmatched;    /* expired without an event */
    uint64_t labels_nolabel;      /* records without a label: time only */
    uint64_t events_expired;      /* evicted by at_bound expire_oldest */
    uint64_t labels_expired;      /* evicted by at_bound expire_oldest */
    uint64_t at_bound;            /* times the store reached max_pending */
    uint64_t idle_advances;       /* wall-clock advances performed */
    uint64_t examples_skipped;    /* already released before a resume */
    uint64_t examples[LD_SAMPLE__COUNT]; /* released, by sample type */
} ld_joiner_stats_t;

/* Creates a joiner. conf is borrowed (copied; output_topic is not used by
 * the joiner). Returns NULL with the reason in errstr on a bad config or
 * allocation failure. Free with ld_joiner_destroy(). */
ld_joiner_t *ld_joiner_new(const ld_labeling_conf_t *conf, char *errstr,
                           size_t errstr_size);

/* Frees the joiner and everything it holds; NULL is a no-op. Examples
 * returned by ld_joiner_poll() become invalid. */
void ld_joiner_destroy(ld_joiner_t *j);

/* Partition p of both topics joins the assignment (co-partitioned:
 * docs/ARCHITECTURE.md, "The input contract"). If a resume record for p was
 * loaded, its watermarks, skip point and pending advances apply. LD_ERR_INVAL
 * if p < 0, p > 65535 or already assigned; LD_ERR_NOMEM. */
ld_err_t ld_joiner_assign(ld_joiner_t *j, int32_t partition) LD_WUR;

/* Partition p of both topics leaves: its pending events and labels are
 * dropped without output (the next owner rebuilds them from its resume
 * offsets). Examples of p not yet polled are dropped too; take the resume
 * record first. LD_ERR_INVAL if p is not assigned. */
ld_err_t ld_joiner_revoke(ld_joiner_t *j, int32_t partition) LD_WUR;

/* Adds one prediction event. key (1..255 bytes, borrowed; printed as
 * event_id, so text keys are best) and x (borrowed, copied compactly) are
 * not kept. Records of one partition must come in offset order. Late,
 * duplicate and re-read records are absorbed and counted: LD_OK. Returns
 * LD_ERR_INVAL for an unassigned partition or a bad key/feature count,
 * LD_ERR_RANGE for a time outside +-2^61 ms, LD_ERR_NOMEM. */
ld_err_t ld_joiner_add_event(ld_joiner_t *j, int32_t partition, int64_t offset,
                             const void *key, size_t keylen,
                             int64_t event_time_ms,
                             const ld_features_t *x) LD_WUR;

/* ---- Packing off the joiner's thread ---------------------------------
 * ld_joiner_add_event() packs the features into the pending store's compact
 * form (sorted, Rice-coded slots) on the caller's thread. A caller with a
 * thread to spare (the daemon's ingest thread) packs there with a packer
 * and adds the packed bytes: the same bytes, so the same examples. */

/* Features packed by ld_packer_pack(). data is owned by whoever owns the
 * struct (grown by ld_packer_pack(); free it with free()). */
typedef struct ld_packed {
    uint8_t *data;
    size_t len, cap;
    uint32_t nnz;
    uint8_t param, flags;
} ld_packed_t;

typedef struct ld_packer ld_packer_t;

/* Scratch for packing; NULL when out of memory. NULL is a no-op for
 * ld_packer_destroy(). Not shared between threads. */
ld_packer_t *ld_packer_new(void);
void ld_packer_destroy(ld_packer_t *pk);

/* Packs x into out, growing out->data. LD_ERR_INVAL when x cannot be
 * packed (more than 65535 slots or dense values, missing arrays: add it
 * with ld_joiner_add_event(), which reports why), LD_ERR_NOMEM. */
ld_err_t ld_packer_pack(ld_packer_t *pk, const ld_features_t *x,
                        ld_packed_t *out) LD_WUR;

/* ld_joiner_add_event() with features packed by ld_packer_pack(). */
ld_err_t ld_joiner_add_event_packed(ld_joiner_t *j, int32_t partition,
                                    int64_t offset, const void *key,
                                    size_t keylen, int64_t event_time_ms,
                                    const ld_packed_t *pf) LD_WUR;

/* Adds one label (same rules; value must be finite: LD_ERR_INVAL). */
ld_err_t ld_joiner_add_label(ld_joiner_t *j, int32_t partition, int64_t offset,
                             const void *key, size_t keylen,
                             int64_t label_time_ms, float value) LD_WUR;

/* Adds a record of the labels topic that carries no label, such as a
 * "view" when only "click" is a label (pipeline label_mode equals: the
 * field does not match). It is not a label and not a negative: it joins
 * no event, hides no label and stops no late correction. Only its time
 * counts, like any record of the partition: it may raise the labels
 * side's watermark (docs/LABELING.md). Counted in labels_in and
 * labels_nolabel. Order, key and time rules and errors are those of
 * ld_joiner_add_label(). */
ld_err_t ld_joiner_add_nolabel(ld_joiner_t *j, int32_t partition,
                               int64_t offset, const void *key, size_t keylen,
                               int64_t label_time_ms) LD_WUR;

/* Releases the next example whose decision time is below the watermark, in
 * (decision time, partition, offset, sample type) order; returns 1 and
 * fills out, or 0 when nothing is due. out's pointers are owned by the
 * joiner and valid until the next call on j. The sparse features come back
 * exactly, sorted by slot (ties in input order). Call until it returns 0 before
 * taking resume records. */
int ld_joiner_poll(ld_joiner_t *j, ld_example_t *out);

/* Decision time of the example ld_joiner_poll() returned last (the event
 * time at which the join decided it, the first key of the release order;
 * for an expire_oldest eviction the timer it had); INT64_MIN before the
 * first. It goes into the audit record (decision_time_ms). */
int64_t ld_joiner_decision_time(const ld_joiner_t *j);

/* Called for each advance; the caller records it (checkpoint lineage). */
typedef void ld_joiner_advance_cb(const ld_wm_advance_t *adv, void *opaque);

/* The only wall-clock input: partitions that received no record during
 * idle_timeout before now_ms (any monotonic clock) have their watermark
 * raised to the lowest watermark among the busy ones (all idle: the
 * highest). Call it periodically; each advance is reported through cb (may
 * be NULL) and kept in the resume record until its position is re-read. */
void ld_joiner_idle_advance(ld_joiner_t *j, int64_t now_ms,
                            ld_joiner_advance_cb *cb, void *opaque);

/* Tells the joiner that side kind of partition has records still to fetch
 * (its consumer is behind the end of it): it is not idle, however long no
 * record arrived, e.g. while the broker is unreachable or the caller was
 * blocked. Restarts its idle clock like a record would. No-op for a
 * partition not assigned. */
void ld_joiner_note_backlog(ld_joiner_t *j, ld_topic_kind_t kind,
                            int32_t partition);

/* Replays a recorded advance (the `replay` verb): call it at its position,
 * i.e. after the records of that partition below adv->offset. LD_ERR_INVAL
 * if the partition is not assigned. */
ld_err_t ld_joiner_apply_advance(ld_joiner_t *j,
                                 const ld_wm_advance_t *adv) LD_WUR;

/* Pause/resume instructions for at_bound=pause: called once per partition
 * whose state changed since the last call (pause 1: stop fetching it). */
typedef void ld_joiner_flow_cb(ld_topic_kind_t kind, int32_t partition,
                               int pause, void *opaque);
void ld_joiner_flow(ld_joiner_t *j, ld_joiner_flow_cb *cb, void *opaque);

/* Fills *out: this process's counters (since ld_joiner_new()). */
void ld_joiner_stats(ld_joiner_t *j, ld_joiner_stats_t *out);

/* ld_joiner_stats() with the counters the resume records carry (events_in
 * to labels_expired and examples) summed over the assigned partitions
 * since their first record, across restarts: what each partition's resume
 * record held when it was loaded plus what was counted since. After a
 * restart (a clean stop or a kill) they equal an uninterrupted run's over
 * the same input. Gauges, at_bound, idle_advances and examples_skipped are
 * this process's. */
void ld_joiner_stats_lifetime(ld_joiner_t *j, ld_joiner_stats_t *out);

/* ---- Resume (docs/LABELING.md, "Resume") --------------------------------- */

/* Where to (re)start consuming partition p of both topics: the oldest record
 * still needed (pending, or a label aggregated into a pending event). After
 * ld_joiner_resume_load() and before any record it returns the loaded
 * offsets. -1 when unknown (no record and no resume state). LD_ERR_INVAL if
 * p was neither assigned nor loaded. */
ld_err_t ld_joiner_resume_offsets(ld_joiner_t *j, int32_t partition,
                                  int64_t *events_offset,
                                  int64_t *labels_offset) LD_WUR;

/* Encodes p's resume record (208 bytes, plus 16 per pending advance and
 * 8 per pending label) into *buf (caller frees with free()). LD_ERR_INVAL if p
 * is not assigned or examples are still due (poll until 0 first). */
ld_err_t ld_joiner_resume_encode(ld_joiner_t *j, int32_t partition,
                                 uint8_t **buf, size_t *len) LD_WUR;

/* ld_joiner_resume_encode() without the pending advances and labels (208
 * bytes), for a place of bounded size: a restart from it re-reads the same
 * records and releases nothing twice or never, but repeats no idle advance
 * made since the resume offset (its watermark then waits for the records
 * or its own idle_timeout), and counts a re-read label by the time of its
 * outcome, which can count a label joined before the record was taken a
 * second time as unmatched (docs/LABELING.md, "Resume"). Same errors. */
ld_err_t ld_joiner_resume_encode_small(ld_joiner_t *j, int32_t partition,
                                       uint8_t **buf, size_t *len) LD_WUR;

/* Loads a resume record (borrowed) for a partition that is not assigned yet;
 * the next ld_joiner_assign() of it restores it. Examples already released
 * before the record was taken are skipped. LD_ERR_CORRUPT for a bad
 * record, LD_ERR_INVAL if the partition is assigned. */
ld_err_t ld_joiner_resume_load(ld_joiner_t *j, const uint8_t *buf,
                               size_t len) LD_WUR;

/* ---- Audit records ------------------------------------------------------ */

/* Writes ex as one JSON object (no newline) into buf; returns the length it
 * needs (excluding NUL) like snprintf, or 0 on failure. Keys: event_id,
 * event_time, label_time, elapsed_ms, label, weight, sample_type, partition,
 * offset, idx, val, dense. */
size_t ld_labeling_example_json(const ld_example_t *ex, char *buf, size_t size);

/* Encodes ex as protobuf learnd.v1.LabelledExample (schemas/learnd.proto)
 * into buf, without allocating. decision_time_ms is the first key of the
 * release order (ld_joiner_decision_time() right after the poll); topic
 * (borrowed, NULL or "" for none) is the events topic. elapsed_ms is label
 * time - event time for pos and delayed_pos, decision time - event time for
 * default_neg and fake_neg; sample_type is ld_sample_type_t + 1. Fields
 * come in field-number order, proto3 defaults omitted, repeated fields
 * packed: the bytes equal protobuf-c's, except that a -0.0 label or weight
 * is written (bit exact) where protobuf-c drops it. Returns the length the
 * record needs;
 * writes it only when size is at least that (buf may be NULL to ask).
 * Returns 0 for an invalid example (sample type, missing arrays). */
size_t ld_labeling_example_pack(const ld_example_t *ex,
                                int64_t decision_time_ms, const char *topic,
                                uint8_t *buf, size_t size);

/* "pos", "default_neg", "fake_neg", "delayed_pos"; "?" otherwise. */
const char *ld_sample_type_name(ld_sample_type_t t);

#endif /* LD_LABELING_H */
