/* SPDX-License-Identifier: Apache-2.0 */
/* The ingest thread: runs ld_pipeline_poll() (consume, decode, hash,
 * dead-letter) on a thread of its own and hands copies of the records to the
 * loop thread through a bounded ring, so the two cores split the work and a
 * slow loop back-pressures the consumer. */
#ifndef LD_DAEMON_INGEST_H
#define LD_DAEMON_INGEST_H

#include <stdint.h>

#include "labeling/labeling.h"
#include "pipeline/pipeline.h"

/*
 * Ownership: while the thread runs, the pipeline's consumer side belongs to
 * it: the loop thread may call ld_pipeline_position(), _stats(), _lag(),
 * _caught_up(), _txn_commit() and _txn_abort() only while the thread is
 * parked (after it handed over LD_INGEST_PAUSED) or gone (after
 * LD_INGEST_STOPPED). The producer may be used from both threads. Every
 * record before a PAUSED item has been handed over, so a commit point taken
 * while parked covers exactly what the loop has processed.
 *
 * Rebalance callbacks run on the ingest thread (inside ld_pipeline_poll());
 * they bracket what they do to the loop's state with
 * ld_ingest_exclusive_begin()/_end(), which wait until the loop has
 * processed every record handed over before and is blocked in
 * ld_ingest_next().
 *
 * Each function says which thread may call it: "loop" (the run loop's
 * thread, the ring's one consumer), "ingest" (the thread this module
 * starts, inside ld_pipeline_poll()'s callbacks), or "any".
 */
typedef struct ld_ingest ld_ingest_t;

typedef enum ld_ingest_what {
    LD_INGEST_RECORD = 0, /* rec holds a good record */
    LD_INGEST_DEAD,       /* rec.topic/partition/offset was dead-lettered */
    LD_INGEST_CAUGHT_UP,  /* every assigned partition was read to its end */
    LD_INGEST_PAUSED,     /* parked on ld_ingest_pause(): nothing follows
                             until ld_ingest_resume() */
    LD_INGEST_STOPPED     /* the thread ended: on ld_ingest_stop() (err
                             LD_OK) or on a poll error (err) */
} ld_ingest_what_t;

/* One hand-over. rec's pointers point into the item's own buffers and stay
 * valid until ld_ingest_done(). An event's features come packed for the
 * joiner when the ingest packs (packed != NULL; rec.x is then empty). */
typedef struct ld_ingest_item {
    ld_ingest_what_t what;
    ld_err_t err;
    ld_record_t rec;
    const ld_packed_t *packed;
} ld_ingest_item_t;

/* A ring of capacity items over p (borrowed; must outlive the ingest).
 * pack: events' features are packed on the ingest thread
 * (ld_packer_pack()), work the loop thread would otherwise do in
 * ld_joiner_add_event(). Nothing runs until ld_ingest_start(). NULL when
 * out of memory. Thread: any (before start; the loop owns it after). */
ld_ingest_t *ld_ingest_new(ld_pipeline_t *p, uint32_t capacity, int pack);

/* Starts the thread. LD_ERR_NOMEM (or LD_ERR_IO) when it cannot. Thread:
 * loop. */
ld_err_t ld_ingest_start(ld_ingest_t *in) LD_WUR;

/* The next item, waiting up to timeout_ms; NULL on timeout. The item is
 * borrowed until ld_ingest_done(), which must come before the next call.
 * Thread: loop (both). */
const ld_ingest_item_t *ld_ingest_next(ld_ingest_t *in, int timeout_ms);
void ld_ingest_done(ld_ingest_t *in);

/* Asks the thread to park after the record it is on; a PAUSED item follows
 * the records it had polled. ld_ingest_resume() lets it go on (only after
 * PAUSED was handed over). Thread: loop (both). */
void ld_ingest_pause(ld_ingest_t *in);
void ld_ingest_resume(ld_ingest_t *in);

/* Asks the thread to end; a STOPPED item follows whatever was polled
 * before. Keep calling ld_ingest_next() until it arrives. Thread: loop. */
void ld_ingest_stop(ld_ingest_t *in);

/* Rebalance callbacks: see above. No-ops unless called on the ingest thread
 * of a started in (in may be NULL). Thread: ingest (any: a no-op). */
void ld_ingest_exclusive_begin(ld_ingest_t *in);
void ld_ingest_exclusive_end(ld_ingest_t *in);

/* Pipeline dead-letter callback (ld_pipeline_cbs_t.dead_lettered) target:
 * hands a DEAD item over when called on the ingest thread. Thread: ingest
 * (any: a no-op). */
void ld_ingest_note_dead(ld_ingest_t *in, const char *topic, int32_t partition,
                         int64_t offset);

/* Joins the thread (after STOPPED was handed over, or if it never started)
 * and frees everything; NULL is a no-op. Thread: loop. */
void ld_ingest_destroy(ld_ingest_t *in);

#endif /* LD_DAEMON_INGEST_H */
