/* SPDX-License-Identifier: Apache-2.0 */
/* Lineage bookkeeping: the input a model version was trained on since its
 * parent, and the wall-clock watermark advances it saw (DESIGN §5). */
#ifndef LD_DAEMON_LINEAGE_H
#define LD_DAEMON_LINEAGE_H

#include <stdint.h>

#include "common/common.h"
#include "schemas/learnd.pb-c.h"

typedef struct ld_lineage ld_lineage_t;

/* Returns an empty accumulator, or NULL when out of memory. */
ld_lineage_t *ld_lineage_new(void);
/* NULL is a no-op. */
void ld_lineage_destroy(ld_lineage_t *l);

/* Notes that offset of topic/partition was consumed. topic is borrowed and
 * must outlive l (the config's strings). */
void ld_lineage_consumed(ld_lineage_t *l, const char *topic, int32_t partition,
                         int64_t offset);

/* Notes an idle-partition watermark advance decided at wall_ms, when the
 * partition's next offset was offset (-1: nothing read yet). */
void ld_lineage_advance(ld_lineage_t *l, const char *topic, int32_t partition,
                        int64_t offset, int64_t wall_ms, int64_t watermark_ms);

/* Adds input that did not become an example: records dead-lettered and
 * late labels dropped (policy drop), to the counts since the last take and
 * to the totals since the first version. */
void ld_lineage_count(ld_lineage_t *l, uint64_t dead_lettered,
                      uint64_t late_labels_dropped);

/* Sets the totals since the first version (a warm start: the parent
 * checkpoint's total_counts). */
void ld_lineage_set_totals(ld_lineage_t *l, uint64_t dead_lettered,
                           uint64_t late_labels_dropped);

/* Builds the Lineage fields `consumed` and `watermark_advances` from what
 * accumulated since the last take, `counts` and `total_counts` with the
 * dead_lettered and late_labels_dropped of ld_lineage_count() (the
 * checkpoint encoder adds the example counts), plus `resume` from the n
 * positions given (borrowed; copied), and starts accumulating afresh. Returns a
 * message the caller frees with ld_lineage_pb_free(), or NULL when out of
 * memory. */
Learnd__V1__Lineage *
ld_lineage_take(ld_lineage_t *l, const Learnd__V1__PartitionPosition *resume,
                size_t n);
void ld_lineage_pb_free(Learnd__V1__Lineage *m);

/* The consumed ranges as bytes for the resume state, and back, so that a
 * restart keeps counting from the parent (LD_ERR_CORRUPT on bad bytes). */
ld_err_t ld_lineage_save(const ld_lineage_t *l, uint8_t **out,
                         size_t *len) LD_WUR;
ld_err_t ld_lineage_load(ld_lineage_t *l, const char *const *topics,
                         size_t ntopics, const uint8_t *buf, size_t len) LD_WUR;

#endif /* LD_DAEMON_LINEAGE_H */
