/* SPDX-License-Identifier: Apache-2.0 */
/* Formats 3 and 4 of the resume state: each commit writes the rows touched
 * since the last one as a delta plus a round-robin sweep of whole blocks,
 * so its bytes follow the rows touched while the compacted topic always
 * holds a complete state (blocks at their generation, then the newer
 * deltas). Format 4 stores FTRL rows as (z, n), 8 bytes instead of 12: the
 * weight is their closed form, recomputed on restore. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "publish/state_internal.h"

/* Bytes of rows per delta part: with the key and framing below Kafka's
 * default 1 MB record limit, as checkpoint chunks are. */
#define DELTA_PART (900u * 1024u)
/* Every block is rewritten at least once per this many commits: bounds the
 * deltas a state needs (and the header's list of them) when few rows
 * change. At 2^22 FTRL, 1/256 of the blocks is ~0.2 MB a commit. */
#define SWEEP_ROUND 256u

/* ---- Writing ------------------------------------------------------------ */

/* A plain row as stored (its weights too when keep); returns its
 * length. */
static size_t put_row(const ld_state_rows_t *f, const float *row, int keep,
                      uint8_t *out)
{
    if (!f->zn || keep) {
        memcpy(out, row, f->full);
        return f->full;
    }
    size_t len = 0;
    for (size_t c = 0; c < f->full / sizeof(float);
         c += 3, len += 2 * sizeof(float))
        memcpy(out + len, row + c + 1, 2 * sizeof(float));
    return len;
}

size_t ld_state_row_bytes(const ld_state_rows_t *f, int keep)
{
    return f->zn && !keep ? f->full / 3 * 2 : f->full;
}

size_t ld_state_row_get(const ld_state_rows_t *f, const uint8_t *src, int keep,
                        uint8_t *dst)
{
    if (!f->zn || keep) {
        memcpy(dst, src, f->full);
        return f->full;
    }
    size_t len = 0;
    for (size_t c = 0; c < f->full; c += 12, len += 8) {
        memset(dst + c, 0, 4); /* the weight: ld_snapshot_derive_w */
        memcpy(dst + c + 4, src + len, 8);
    }
    return len;
}

void ld_state_keep_set(uint8_t *keep, uint64_t row, int on)
{
    uint8_t bit = (uint8_t)(1u << (row & 7));
    keep[row >> 3] =
        (uint8_t)(on ? keep[row >> 3] | bit : keep[row >> 3] & ~bit);
}

/* A block's data: a 4-byte little-endian mask of the slots holding any
 * non-zero bit, then those slots' rows as stored (format 3:
 * ld_state_pack_rows). Returns its length. */
static size_t pack_block(const ld_state_rows_t *f, const float *rows,
                         uint32_t slots, uint32_t keep, uint8_t *out)
{
    uint32_t mask = 0;
    size_t len = 4, per = f->full / sizeof(float);
    for (uint32_t i = 0; i < slots; i++) {
        const float *r = rows + i * per;
        if (!ld_state_row_any(r, per)) /* unkept weights are 0 */
            continue;
        mask |= 1u << i;
        len += put_row(f, r, keep >> i & 1, out + len);
    }
    for (int k = 0; k < 4; k++)
        out[k] = (uint8_t)(mask >> (8 * k));
    return len;
}

/* Block b of t as this format reads it; the mask of rows keeping their
 * weights (format 4), else 0. */
static uint32_t read_block(const ld_state_rows_t *f, const ld_trainer_t *t,
                           size_t b, float *rows)
{
    if (f->zn)
        return ld_trainer_state_block_zn(t, b, rows);
    ld_trainer_state_block(t, b, rows);
    return 0;
}

/* The delta being written: rows appended to buf, a part emitted when it
 * fills. */
typedef struct dwriter {
    const ld_state_sink_t *sink;
    const char *model;
    uint64_t seq;
    const ld_state_rows_t *f;
    uint8_t *buf;
    size_t len, cap;
    uint32_t part, rows;
    uint64_t next;  /* the row the next gap counts from */
    uint32_t *kept; /* rows of this part keeping their weights */
    size_t nkept, kcap;
} dwriter_t;

static ld_err_t delta_flush(dwriter_t *w)
{
    if (!w->rows)
        return LD_OK;
    char key[512];
    Learnd__V1__StateDelta d = LEARND__V1__STATE_DELTA__INIT;
    d.model = (char *)(uintptr_t)w->model;
    d.commit_seq = w->seq;
    d.part = w->part;
    d.rows = w->rows;
    d.data = (ProtobufCBinaryData){w->len, w->buf};
    d.n_stored_weights = w->nkept;
    d.stored_weights = w->kept;
    Learnd__V1__StateRecord rec = LEARND__V1__STATE_RECORD__INIT;
    rec.record_case = LEARND__V1__STATE_RECORD__RECORD_DELTA;
    rec.delta = &d;
    snprintf(key, sizeof(key), "%s/delta/%" PRIu64 "/%" PRIu32, w->model,
             w->seq, w->part);
    ld_err_t err = ld_state_emit_rec(w->sink, key, &rec);
    w->part++;
    w->rows = 0;
    w->len = 0;
    w->next = 0;
    w->nkept = 0;
    return err;
}

/* Appends row r (its plain floats at src; its weights too when keep):
 * LEB128 gap, then the row as stored. */
static ld_err_t delta_row(dwriter_t *w, uint64_t r, const float *src, int keep)
{
    if (keep) {
        if (w->nkept == w->kcap) {
            size_t cap = w->kcap ? w->kcap * 2 : 64;
            uint32_t *k = realloc(w->kept, cap * sizeof(*k));
            if (!k)
                return LD_ERR_NOMEM;
            w->kept = k;
            w->kcap = cap;
        }
        w->kept[w->nkept++] = w->rows;
    }
    uint64_t gap = r - w->next;
    do {
        w->buf[w->len++] = (uint8_t)((gap & 0x7f) | (gap > 0x7f ? 0x80 : 0));
        gap >>= 7;
    } while (gap);
    w->len += put_row(w->f, src, keep, w->buf + w->len);
    w->rows++;
    w->next = r + 1;
    return w->len + w->f->full + 10 > w->cap ? delta_flush(w) : LD_OK;
}

/* Drops from g the deltas no block needs (older than every block's
 * generation), emitting a tombstone for each of their parts. */
static ld_err_t retire_deltas(const ld_state_sink_t *sink, const char *model,
                              ld_state_gens_t *g)
{
    uint64_t oldest = UINT64_MAX;
    for (size_t b = 0; b < g->nblocks; b++)
        if (g->block[b] < oldest)
            oldest = g->block[b];
    size_t k = 0;
    ld_err_t err = LD_OK;
    for (size_t i = 0; i < g->ndelta; i++) {
        if (g->dseq[i] > oldest) {
            g->dseq[k] = g->dseq[i];
            g->dparts[k++] = g->dparts[i];
            continue;
        }
        for (uint32_t p = 0; p < g->dparts[i] && !err; p++) {
            char key[512];
            snprintf(key, sizeof(key), "%s/delta/%" PRIu64 "/%" PRIu32, model,
                     g->dseq[i], p);
            err = sink->emit(sink->opaque, key, NULL, 0);
            if (!err && sink->bytes)
                *sink->bytes += strlen(key);
        }
    }
    g->ndelta = k;
    return err;
}

static ld_err_t delta_push(ld_state_gens_t *g, uint64_t seq, uint32_t parts)
{
    if (g->ndelta == g->dcap) {
        size_t cap = g->dcap ? g->dcap * 2 : 16;
        uint64_t *s = realloc(g->dseq, cap * sizeof(*s));
        if (s)
            g->dseq = s;
        uint32_t *p = s ? realloc(g->dparts, cap * sizeof(*p)) : NULL;
        if (!p)
            return LD_ERR_NOMEM;
        g->dparts = p;
        g->dcap = cap;
    }
    g->dseq[g->ndelta] = seq;
    g->dparts[g->ndelta++] = parts;
    return LD_OK;
}

/* Scratch of one write. */
typedef struct wscratch {
    ld_state_rows_t f;
    float *rows;
    uint8_t *packed, *pdirty;
    uint64_t *ages;
    uint32_t *mask; /* each block's touched rows, read once: lazy FTRL
                       derives them from the slots' tags */
} wscratch_t;

/* The sweep's pace: it writes whole blocks until their bytes reach this
 * share of the delta's. A round of the sweep (which retires the deltas)
 * takes about full / (pace x delta) commits, so a commit writes about
 * (1 + pace) x delta while a restore reads the blocks plus full / pace
 * bytes of deltas. bench_trainer --state at 2^22 FTRL, format 4, 10 000 /
 * 50 000 examples a commit (share of the full state a commit; MB a
 * restore reads): pace 1: 8.7 % / 42 MB, 0.5: 5.9 % / 60 MB, 0.25:
 * 4.5 % / 91 MB, 0.125: 3.9 % / 143 MB; at 50 000: 0.5 17.7 %, 0.25
 * 14.0 %. A commit's bytes are paid every commit_interval, a restore's
 * once a start: 0.25, where halving again saves a seventh for half as
 * much again to read. */
double ld_state_sweep_pace = 0.25;

/* Emits whole blocks from g->cursor on: every block when all, else at
 * least 1/SWEEP_ROUND of them and until their bytes reach the pace's
 * share of the delta's estimated bytes (est). Returns the first block
 * swept and sets *k to how many. */
static ld_err_t sweep(const ld_state_sink_t *sink, const char *model,
                      uint64_t seq, const ld_trainer_t *t, ld_state_gens_t *g,
                      int all, uint64_t est, wscratch_t *s, size_t *first,
                      size_t *k)
{
    size_t nb = g->nblocks;
    uint32_t bs = ld_trainer_state_block_slots(t);
    size_t minb = all ? nb : (nb + SWEEP_ROUND - 1) / SWEEP_ROUND;
    double goal = (double)est * ld_state_sweep_pace;
    uint64_t bytes = 0;
    ld_err_t err = LD_OK;
    *first = all ? 0 : g->cursor % nb;
    *k = 0;
    while (!err && *k < nb && (*k < minb || (double)bytes < goal)) {
        size_t b = (*first + *k) % nb;
        uint32_t keep = read_block(&s->f, t, b, s->rows);
        size_t len = pack_block(&s->f, s->rows, bs, keep, s->packed);
        err = ld_state_emit_block(sink, model, seq, b, s->packed, len, keep);
        bytes += len;
        g->block[b] = seq;
        s->pdirty[b / LD_STATE_GENS_PAGE] = 1;
        ++*k;
    }
    g->cursor = (*first + *k) % nb;
    return err;
}

/* The rows written since the last commit, outside the blocks this commit
 * sweeps (those carry them already), as parts of one delta. */
static ld_err_t write_delta(const ld_state_sink_t *sink, const char *model,
                            uint64_t seq, const ld_trainer_t *t,
                            ld_state_gens_t *g, size_t first, size_t k,
                            wscratch_t *s)
{
    size_t nb = g->nblocks, bf = ld_trainer_state_block_floats(t);
    uint32_t bs = ld_trainer_state_block_slots(t);
    dwriter_t w = {
        sink, model, seq, &s->f, NULL, 0, DELTA_PART + s->f.full + 10,
        0,    0,     0,   NULL,  0,    0};
    if (!(w.buf = malloc(w.cap)))
        return LD_ERR_NOMEM;
    ld_err_t err = LD_OK;
    for (size_t b = 0; b < nb && !err; b++) {
        uint32_t m = s->mask[b];
        if (!m || (b + nb - first) % nb < k)
            continue;
        uint32_t keep = read_block(&s->f, t, b, s->rows);
        for (uint32_t j = 0; j < bs && !err; j++)
            if (m >> j & 1)
                err = delta_row(&w, (uint64_t)b * bs + j,
                                s->rows + j * (bf / bs), keep >> j & 1);
    }
    if (!err)
        err = delta_flush(&w);
    free(w.buf);
    free(w.kept);
    if (!err && w.part)
        err = delta_push(g, seq, w.part);
    return err;
}

ld_err_t ld_state_write_blocks(const ld_state_sink_t *sink,
                               Learnd__V1__ResumeHeader *header,
                               const ld_trainer_t *t, ld_state_gens_t *g)
{
    size_t nb = ld_trainer_state_blocks(t);
    size_t bf = ld_trainer_state_block_floats(t);
    uint32_t bs = ld_trainer_state_block_slots(t);
    const char *model = header->model;
    uint64_t seq = header->commit_seq;
    int zn = g->write_format != 3 && ld_trainer_state_w_derived(t);
    int enc = zn ? LEARND__V1__BLOCK_ENCODING__BLOCK_ENCODING_SLOTS_FTRL_ZN
                 : LEARND__V1__BLOCK_ENCODING__BLOCK_ENCODING_SLOTS;
    ld_err_t err = LD_OK;
    /* No generations for this shape and encoding: nothing of it is on the
     * topic that this run may rely on, so every block is written (and
     * every delta this run knows of retired). */
    int all = g->nblocks != nb || !g->block || g->encoding != enc;
    if (all && (err = ld_state_gens_reset(g, nb)))
        return err;
    g->encoding = enc;
    wscratch_t s = {{zn, bf / bs * sizeof(float)},
                    malloc(bf * sizeof(float)),
                    malloc(4 + bf * sizeof(float)),
                    calloc(g->npages ? g->npages : 1, 1),
                    malloc(LD_STATE_GENS_PAGE * sizeof(uint64_t)),
                    malloc((nb ? nb : 1) * sizeof(uint32_t))};
    if (!s.rows || !s.packed || !s.pdirty || !s.ages || !s.mask) {
        err = LD_ERR_NOMEM;
        goto out;
    }
    /* The delta's size, to pace the sweep: rows x (stored bytes + ~2 gap
     * bytes). */
    uint64_t est = 0;
    for (size_t b = 0; !all && b < nb; b++) {
        s.mask[b] = ld_trainer_block_dirty_rows(t, b);
        est += (uint64_t)__builtin_popcount(s.mask[b]);
    }
    est *= ld_state_row_bytes(&s.f, 0) + 2;
    size_t first = 0, k = 0;
    if ((err = sweep(sink, model, seq, t, g, all, est, &s, &first, &k)))
        goto out;
    if (!all && (err = write_delta(sink, model, seq, t, g, first, k, &s)))
        goto out;
    if ((err = retire_deltas(sink, model, g)))
        goto out;
    for (size_t j = 0; j < g->npages && !err; j++) {
        if (!s.pdirty[j])
            continue;
        err = ld_state_emit_page(sink, model, g, j, seq, s.ages);
        g->page[j] = seq;
    }
    if (err)
        goto out;
    header->format_version = zn ? 4 : 3;
    header->block_size = bs;
    header->block_count = (uint32_t)nb;
    header->block_encoding = (Learnd__V1__BlockEncoding)enc;
    header->gens_page_size = LD_STATE_GENS_PAGE;
    header->n_page_generations = g->npages;
    header->page_generations = g->page;
    header->n_delta_seqs = g->ndelta;
    header->delta_seqs = g->dseq;
    header->n_delta_parts = g->ndelta;
    header->delta_parts = g->dparts;
    err = ld_state_emit_header(sink, header);
    header->n_page_generations = header->n_delta_seqs = 0;
    header->n_delta_parts = 0;
    header->page_generations = header->delta_seqs = NULL;
    header->delta_parts = NULL;
out:
    free(s.rows);
    free(s.packed);
    free(s.pdirty);
    free(s.ages);
    free(s.mask);
    /* On failure g may name records that were not written: the commit
     * aborts and the daemon exits (run_commit.c), so g is never used
     * again. */
    return err;
}

ld_err_t ld_state_gens_adopt(ld_state_gens_t *g, ld_resume_t *rs,
                             int same_shape)
{
    const Learnd__V1__ResumeHeader *h = rs->header;
    uint32_t wf = g->write_format;
    ld_state_gens_free(g);
    g->write_format = wf;
    g->encoding = (int)h->block_encoding;
    if (h->format_version >= 3)
        for (size_t i = 0; i < h->n_delta_seqs; i++)
            if (delta_push(g, h->delta_seqs[i], h->delta_parts[i])) {
                ld_state_gens_free(g);
                return LD_ERR_NOMEM;
            }
    if (!same_shape || h->format_version < 2 || !rs->gens_block)
        return LD_OK;
    g->block = rs->gens_block;
    rs->gens_block = NULL;
    g->nblocks = rs->nblocks;
    g->npages = h->n_page_generations;
    g->page = malloc((g->npages ? g->npages : 1) * sizeof(*g->page));
    if (!g->page) {
        ld_state_gens_free(g);
        return LD_ERR_NOMEM;
    }
    memcpy(g->page, h->page_generations, g->npages * sizeof(*g->page));
    /* Sweep on from the oldest block: it retires the oldest delta first. */
    for (size_t b = 0; b < g->nblocks; b++)
        if (g->block[b] < g->block[g->cursor])
            g->cursor = b;
    return LD_OK;
}

/* ---- Reading ------------------------------------------------------------ */

ld_err_t ld_state_deltas_check(const ld_state_reader_t *rd, ld_resume_t *r,
                               const char *model, char *errstr, size_t size)
{
    const Learnd__V1__ResumeHeader *h = r->header;
    size_t n = h->n_delta_seqs, total = 0;
    if (n != h->n_delta_parts) {
        snprintf(errstr, size,
                 "state of model %s: header of commit %" PRIu64
                 " lists %zu deltas and %zu part counts",
                 model, h->commit_seq, n, h->n_delta_parts);
        return LD_ERR_CORRUPT;
    }
    for (size_t i = 0; i < n; i++) {
        if (h->delta_seqs[i] > h->commit_seq ||
            (i && h->delta_seqs[i] <= h->delta_seqs[i - 1]) ||
            !h->delta_parts[i]) {
            snprintf(errstr, size,
                     "state of model %s: header of commit %" PRIu64
                     " lists delta %zu (commit %" PRIu64 ", %u parts) out of "
                     "order",
                     model, h->commit_seq, i, h->delta_seqs[i],
                     h->delta_parts[i]);
            return LD_ERR_CORRUPT;
        }
        total += h->delta_parts[i];
    }
    if (!(r->dpart = calloc(total ? total : 1, sizeof(*r->dpart))))
        return LD_ERR_NOMEM;
    for (size_t i = 0; i < n; i++)
        for (uint32_t p = 0; p < h->delta_parts[i]; p++) {
            const ld_state_dpart_t *d =
                ld_state_reader_dpart(rd, h->delta_seqs[i], p);
            if (!d) {
                snprintf(errstr, size,
                         "state of model %s: part %u of the delta of commit "
                         "%" PRIu64 " is missing (the header of commit "
                         "%" PRIu64 " needs it): refusing to start with a "
                         "hole in the model",
                         model, p, h->delta_seqs[i], h->commit_seq);
                return LD_ERR_CORRUPT;
            }
            r->dpart[r->ndpart++] = *d;
        }
    return LD_OK;
}

/* Rows of one part into dst where newer than their block; 0 when the
 * part is malformed. */
static int apply_part(const ld_resume_t *r, const Learnd__V1__StateDelta *d,
                      uint8_t *dst, size_t nb, const ld_state_rows_t *f,
                      uint8_t *keep)
{
    size_t slots = r->header->block_size;
    /* empty data unpacks as NULL: no offset on it (fuzz_state) */
    const uint8_t *p = d->data.data, *end = p ? p + d->data.len : p;
    uint64_t next = 0, nrows = (uint64_t)nb * slots;
    size_t kept = 0; /* next entry of stored_weights */
    if (!f->zn && d->n_stored_weights)
        return 0;
    for (uint32_t i = 0; i < d->rows; i++) {
        uint64_t gap = 0;
        int shift = 0;
        do {
            if (p == end || shift > 56)
                return 0;
            gap |= (uint64_t)(*p & 0x7f) << shift;
            shift += 7;
        } while (*p++ & 0x80);
        int kw = kept < d->n_stored_weights && d->stored_weights[kept] == i;
        kept += (size_t)kw;
        size_t rb = ld_state_row_bytes(f, kw);
        if (gap >= nrows - next || (size_t)(end - p) < rb)
            return 0;
        uint64_t row = next + gap;
        if (d->commit_seq > r->gens_block[row / slots]) {
            ld_state_row_get(f, p, kw, dst + row * f->full);
            if (keep)
                ld_state_keep_set(keep, row, kw);
        }
        p += rb;
        next = row + 1;
    }
    /* every listed row was one of the part's, in order */
    return p == end && kept == d->n_stored_weights;
}

ld_err_t ld_state_deltas_apply(const ld_resume_t *r, uint8_t *dst, size_t nb,
                               const ld_state_rows_t *f, uint8_t *keep,
                               char *errstr, size_t size)
{
    for (size_t i = 0; i < r->ndpart; i++) {
        const ld_state_dpart_t *dp = &r->dpart[i];
        Learnd__V1__StateRecord *rec =
            learnd__v1__state_record__unpack(NULL, dp->len, dp->data);
        int ok =
            rec && rec->record_case == LEARND__V1__STATE_RECORD__RECORD_DELTA &&
            rec->delta->commit_seq == dp->seq && rec->delta->part == dp->part &&
            apply_part(r, rec->delta, dst, nb, f, keep);
        if (rec)
            learnd__v1__state_record__free_unpacked(rec, NULL);
        if (!ok) {
            snprintf(errstr, size,
                     "state of model %s: part %u of the delta of commit "
                     "%" PRIu64 " is corrupt or not rows of %zu bytes "
                     "(another shape?)",
                     r->header->model, dp->part, dp->seq,
                     ld_state_row_bytes(f, 0));
            return LD_ERR_CORRUPT;
        }
    }
    return LD_OK;
}
