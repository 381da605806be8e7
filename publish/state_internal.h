/* SPDX-License-Identifier: Apache-2.0 */
/* What the state topic's two files share: the record emitters of
 * state_topic.c and the delta parts a reader keeps (state_delta.c decodes
 * them). Private to publish/. */
#ifndef LD_PUBLISH_STATE_INTERNAL_H
#define LD_PUBLISH_STATE_INTERNAL_H

#include "publish/publish.h"

/* Blocks per gens page: 4096 ages of 1-4 bytes keep a page far below
 * Kafka's 1 MB record limit, and the header lists only 256 pages at
 * 2^24 slots. */
#define LD_STATE_GENS_PAGE 4096u

/* How the rows of a state are stored: format 2 and 3 every plane of the
 * plain layout (full bytes a row); format 4 (zn, FTRL) z and n per output,
 * 2/3 of that, and the weights too only where a row keeps them. */
typedef struct ld_state_rows {
    int zn;
    size_t full;
} ld_state_rows_t;

/* Bytes of one stored row (keep: with its weights). */
size_t ld_state_row_bytes(const ld_state_rows_t *f, int keep);
/* Expands one stored row at src (its weights too when keep) into the
 * plain row dst (f->full bytes; weights 0 where not stored); returns the
 * bytes read. */
size_t ld_state_row_get(const ld_state_rows_t *f, const uint8_t *src, int keep,
                        uint8_t *dst);
/* Sets (on) or clears bit row of the bitmap keep. */
void ld_state_keep_set(uint8_t *keep, uint64_t row, int on);

/* The sweep's pace: whole blocks until their bytes reach this share of
 * the delta's (state_delta.c explains the default, 0.25). Benches set it;
 * the daemon does not. */
extern double ld_state_sweep_pace;

/* One delta part record a reader saw, by key; data NULL once a tombstone
 * followed it. */
typedef struct ld_state_dpart {
    uint64_t seq;
    uint32_t part;
    uint8_t *data; /* the StateRecord value; owned by the reader */
    size_t len;
} ld_state_dpart_t;

/* Packs rec and hands it to the sink under key, counting the bytes. */
ld_err_t ld_state_emit_rec(const ld_state_sink_t *sink, const char *key,
                           const Learnd__V1__StateRecord *rec) LD_WUR;
/* Non-zero when any bit of the row's per floats is set: a row of zero
 * bits is left out of a packed block (its slot's mask bit clear). */
uint32_t ld_state_row_any(const float *r, size_t per);
/* Block i of seq with its packed data (state_topic.c's layout);
 * stored_weights: format 4's mask of rows that keep their weight (0
 * otherwise). */
ld_err_t ld_state_emit_block(const ld_state_sink_t *sink, const char *model,
                             uint64_t seq, size_t i, const uint8_t *data,
                             size_t len, uint32_t stored_weights) LD_WUR;
/* Gens page j of g at seq; ages is LD_STATE_GENS_PAGE scratch. */
ld_err_t ld_state_emit_page(const ld_state_sink_t *sink, const char *model,
                            const ld_state_gens_t *g, size_t j, uint64_t seq,
                            uint64_t *ages) LD_WUR;
/* The header record, last of a commit. */
ld_err_t ld_state_emit_header(const ld_state_sink_t *sink,
                              Learnd__V1__ResumeHeader *header) LD_WUR;
/* Sizes g's block and page generations for nb blocks, all 0; keeps its
 * deltas. LD_ERR_NOMEM. */
ld_err_t ld_state_gens_reset(ld_state_gens_t *g, size_t nb) LD_WUR;
/* The block's data: mask of live slots, then their floats; returns its
 * length (out holds 4 + slots * per floats). */
size_t ld_state_pack_rows(const float *rows, uint32_t slots, size_t per,
                          uint8_t *out);

/* The reader's delta part (seq, part), or NULL when never seen or
 * tombstoned. */
const ld_state_dpart_t *ld_state_reader_dpart(const ld_state_reader_t *rd,
                                              uint64_t seq, uint32_t part);
/* Format 3 at finish: checks that every delta part the header names is
 * there and collects them into r->dpart. LD_ERR_CORRUPT with errstr. */
ld_err_t ld_state_deltas_check(const ld_state_reader_t *rd, ld_resume_t *r,
                               const char *model, char *errstr,
                               size_t size) LD_WUR;
/* Format 3 and 4 in ld_state_fill_rows: applies the deltas' rows newer
 * than their block to dst (nb blocks of header->block_size slots of
 * f->full bytes), marking in keep (format 4) the rows that store their
 * weights. LD_ERR_CORRUPT with errstr on a malformed part. */
ld_err_t ld_state_deltas_apply(const ld_resume_t *r, uint8_t *dst, size_t nb,
                               const ld_state_rows_t *f, uint8_t *keep,
                               char *errstr, size_t size) LD_WUR;
/* ld_resume_fill_sparse's first half: the blocks and deltas into dst (n
 * floats of the plain layout), format 4's weights left 0 and the rows
 * that store theirs marked in keep (a bitmap of a bit per row, zeroed;
 * NULL: not marked). Errors as ld_resume_fill_sparse. */
ld_err_t ld_state_fill_rows(const ld_resume_t *r, float *dst, size_t n,
                            uint8_t *keep, char *errstr,
                            size_t errstr_size) LD_WUR;

#endif
