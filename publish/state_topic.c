/* SPDX-License-Identifier: Apache-2.0 */
/* Resume state records on the state topic: keyed `<model>/header`,
 * `<model>/gens/<page>`, `<model>/block/<i>` and
 * `<model>/delta/<seq>/<part>`, so compaction keeps the newest of each; the
 * blocks and the reader here, the deltas of format 3 in state_delta.c. A
 * restart refuses a state with a block or delta of the wrong generation. */
#include "publish/state_internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/kafka.h"

#define MOD "state"

#define GENS_PAGE LD_STATE_GENS_PAGE
/* Blocks of the largest model: 2^30 slots (hash_bits' bound) of 16. */
#define MAX_BLOCKS (1u << 26)

/* ---- Writing ------------------------------------------------------------ */

/* Queues one record (val NULL: a tombstone; buf, when not NULL, is val
 * handed to librdkafka to free). A full producer queue is waited out,
 * serving delivery reports, for up to 60 s without room: at hash_bits 22
 * a first commit writes 262 144 blocks, more than librdkafka's default
 * queue.buffering.max.messages. */
static rd_kafka_resp_err_t produce(const ld_state_kafka_t *k, const char *key,
                                   uint8_t *buf, size_t len)
{
    /* a variable: the macro casts its argument without parentheses */
    int flags = buf ? RD_KAFKA_MSG_F_FREE : 0;
    int64_t deadline = ld_now_mono_ms() + 60000;
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            k->producer, RD_KAFKA_V_TOPIC(k->topic), RD_KAFKA_V_PARTITION(0),
            RD_KAFKA_V_KEY(key, strlen(key)), RD_KAFKA_V_VALUE(buf, len),
            RD_KAFKA_V_MSGFLAGS(flags), RD_KAFKA_V_END);
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL || ld_now_mono_ms() > deadline)
            return e;
        rd_kafka_poll(k->producer, 100);
    }
}

ld_err_t ld_state_emit_kafka(void *opaque, const char *key, const uint8_t *val,
                             size_t len)
{
    const ld_state_kafka_t *k = opaque;
    uint8_t *buf = NULL;
    if (val) {
        if (!(buf = malloc(len ? len : 1)))
            return LD_ERR_NOMEM;
        if (len)
            memcpy(buf, val, len);
    }
    rd_kafka_resp_err_t e = produce(k, key, buf, val ? len : 0);
    if (e) {
        free(buf);
        ld_log(LD_LOG_ERR, MOD, "msg=\"cannot queue state %s\" key=%s err=%s",
               val ? "record" : "tombstone", ld_log_q(key),
               ld_log_q(rd_kafka_err2str(e)));
        return LD_ERR_KAFKA;
    }
    return LD_OK;
}

/* Packs rec and hands it to emit, counting key and value bytes. */
ld_err_t ld_state_emit_rec(const ld_state_sink_t *sink, const char *key,
                           const Learnd__V1__StateRecord *rec)
{
    size_t len = learnd__v1__state_record__get_packed_size(rec);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return LD_ERR_NOMEM;
    learnd__v1__state_record__pack(rec, buf);
    ld_err_t err = sink->emit(sink->opaque, key, buf, len);
    free(buf);
    if (!err && sink->bytes)
        *sink->bytes += strlen(key) + len;
    return err;
}

ld_err_t ld_state_emit_header(const ld_state_sink_t *sink,
                              Learnd__V1__ResumeHeader *header)
{
    char key[512];
    Learnd__V1__StateRecord rec = LEARND__V1__STATE_RECORD__INIT;
    rec.record_case = LEARND__V1__STATE_RECORD__RECORD_HEADER;
    rec.header = header;
    snprintf(key, sizeof(key), "%s/header", header->model);
    return ld_state_emit_rec(sink, key, &rec);
}

ld_err_t ld_state_emit_block(const ld_state_sink_t *sink, const char *model,
                             uint64_t seq, size_t i, const uint8_t *data,
                             size_t len, uint32_t stored_weights)
{
    char key[512];
    Learnd__V1__StateBlock blk = LEARND__V1__STATE_BLOCK__INIT;
    blk.model = (char *)(uintptr_t)model;
    blk.block_index = (uint32_t)i;
    blk.commit_seq = seq;
    blk.data.data = (uint8_t *)(uintptr_t)data;
    blk.data.len = len;
    blk.stored_weights = stored_weights;
    Learnd__V1__StateRecord rec = LEARND__V1__STATE_RECORD__INIT;
    rec.record_case = LEARND__V1__STATE_RECORD__RECORD_BLOCK;
    rec.block = &blk;
    snprintf(key, sizeof(key), "%s/block/%zu", model, i);
    return ld_state_emit_rec(sink, key, &rec);
}

ld_err_t ld_state_write_v1(const ld_state_sink_t *sink,
                           Learnd__V1__ResumeHeader *header,
                           const uint8_t *ckpt, size_t len, size_t block_size)
{
    size_t n = (len + block_size - 1) / block_size;
    header->format_version = 1;
    header->block_size = (uint32_t)block_size;
    header->block_count = (uint32_t)n;
    header->block_encoding =
        LEARND__V1__BLOCK_ENCODING__BLOCK_ENCODING_CHECKPOINT_CHUNKS;
    ld_err_t err = LD_OK;
    for (size_t i = 0; i < n && !err; i++)
        err = ld_state_emit_block(
            sink, header->model, header->commit_seq, i, ckpt + i * block_size,
            i + 1 < n ? block_size : len - i * block_size, 0);
    /* The header last: a reader that sees it sees its blocks (one
     * transaction, one partition, in order). */
    return err ? err : ld_state_emit_header(sink, header);
}

void ld_state_gens_free(ld_state_gens_t *g)
{
    if (!g)
        return;
    free(g->block);
    free(g->page);
    free(g->dseq);
    free(g->dparts);
    memset(g, 0, sizeof(*g));
}

ld_err_t ld_state_gens_reset(ld_state_gens_t *g, size_t nb)
{
    free(g->block);
    free(g->page);
    size_t np = (nb + GENS_PAGE - 1) / GENS_PAGE;
    g->block = calloc(nb ? nb : 1, sizeof(*g->block));
    g->page = calloc(np ? np : 1, sizeof(*g->page));
    if (!g->block || !g->page) {
        ld_state_gens_free(g);
        return LD_ERR_NOMEM;
    }
    g->nblocks = nb;
    g->npages = np;
    g->cursor = 0;
    return LD_OK;
}

ld_err_t ld_state_emit_page(const ld_state_sink_t *sink, const char *model,
                            const ld_state_gens_t *g, size_t j, uint64_t seq,
                            uint64_t *ages)
{
    size_t from = j * GENS_PAGE, n = g->nblocks - from;
    if (n > GENS_PAGE)
        n = GENS_PAGE;
    for (size_t i = 0; i < n; i++)
        ages[i] = seq - g->block[from + i];
    char key[512];
    Learnd__V1__StateGenerations pg = LEARND__V1__STATE_GENERATIONS__INIT;
    pg.model = (char *)(uintptr_t)model;
    pg.page = (uint32_t)j;
    pg.commit_seq = seq;
    pg.n_age = n;
    pg.age = ages;
    Learnd__V1__StateRecord rec = LEARND__V1__STATE_RECORD__INIT;
    rec.record_case = LEARND__V1__STATE_RECORD__RECORD_GENS;
    rec.gens = &pg;
    snprintf(key, sizeof(key), "%s/gens/%zu", model, j);
    return ld_state_emit_rec(sink, key, &rec);
}

/* A block's data: a 4-byte little-endian mask of the slots holding any
 * non-zero bit, then those slots' floats. A hashed model's touched block
 * is mostly untouched slots (bench_trainer --state: 16-slot blocks with 1-3
 * live rows), which cost 4 bytes instead of 12 each. */
uint32_t ld_state_row_any(const float *r, size_t per)
{
    uint32_t any = 0;
    for (size_t k = 0; k < per; k++) {
        uint32_t bits;
        memcpy(&bits, r + k, sizeof(bits));
        any |= bits; /* -0.0 is not zero: kept bit for bit */
    }
    return any;
}

size_t ld_state_pack_rows(const float *rows, uint32_t slots, size_t per,
                          uint8_t *out)
{
    uint32_t mask = 0;
    size_t len = 4;
    size_t nb = per * sizeof(float);
    for (uint32_t i = 0; i < slots; i++) {
        const float *r = rows + i * per;
        if (!ld_state_row_any(r, per))
            continue;
        mask |= 1u << i;
        memcpy(out + len, r, nb);
        len += nb;
    }
    for (int k = 0; k < 4; k++)
        out[k] = (uint8_t)(mask >> (8 * k));
    return len;
}

ld_err_t ld_state_write_blocks_v2(const ld_state_sink_t *sink,
                                  Learnd__V1__ResumeHeader *header,
                                  const ld_trainer_t *t, ld_state_gens_t *g)
{
    size_t nb = ld_trainer_state_blocks(t);
    size_t bf = ld_trainer_state_block_floats(t);
    uint64_t seq = header->commit_seq;
    ld_err_t err = LD_OK;
    /* No generations for this shape: nothing of it is on the topic that
     * this run may rely on, so every block is written. */
    int all = g->nblocks != nb || !g->block;
    if (all && (err = ld_state_gens_reset(g, nb)))
        return err;
    uint8_t *pdirty = calloc(g->npages ? g->npages : 1, 1);
    float *rows = malloc(bf * sizeof(float));
    uint8_t *packed = malloc(4 + bf * sizeof(float));
    uint64_t *ages = malloc(GENS_PAGE * sizeof(*ages));
    if (!pdirty || !rows || !packed || !ages) {
        err = LD_ERR_NOMEM;
        goto out;
    }
    uint32_t bs = ld_trainer_state_block_slots(t);
    for (size_t b = 0; b < nb && !err; b++) {
        if (!all && !ld_trainer_block_dirty(t, b))
            continue;
        ld_trainer_state_block(t, b, rows);
        size_t len = ld_state_pack_rows(rows, bs, bf / bs, packed);
        err = ld_state_emit_block(sink, header->model, seq, b, packed, len, 0);
        g->block[b] = seq;
        pdirty[b / GENS_PAGE] = 1;
    }
    for (size_t j = 0; j < g->npages && !err; j++) {
        if (!pdirty[j])
            continue;
        err = ld_state_emit_page(sink, header->model, g, j, seq, ages);
        g->page[j] = seq;
    }
    if (err)
        goto out;
    g->encoding = LEARND__V1__BLOCK_ENCODING__BLOCK_ENCODING_SLOTS;
    header->format_version = 2;
    header->block_size = ld_trainer_state_block_slots(t);
    header->block_count = (uint32_t)nb;
    header->block_encoding = LEARND__V1__BLOCK_ENCODING__BLOCK_ENCODING_SLOTS;
    header->gens_page_size = GENS_PAGE;
    header->n_page_generations = g->npages;
    header->page_generations = g->page;
    /* Last, as in format 1: the header names what came before it in the
     * same transaction. */
    err = ld_state_emit_header(sink, header);
    header->n_page_generations = 0;
    header->page_generations = NULL;
out:
    free(pdirty);
    free(rows);
    free(packed);
    free(ages);
    /* On failure g may name blocks that were not written: the commit
     * aborts and the daemon exits (run_commit.c), so g is never used
     * again. */
    return err;
}

/* ---- Reading ------------------------------------------------------------ */

typedef struct blockv {
    uint8_t *data; /* the block's data field (or a gens page's record) */
    size_t len;
    uint64_t seq;
    int present;
    uint32_t keep; /* format 4: the block's stored_weights */
} blockv_t;

struct ld_state_reader {
    char *model;
    size_t mlen;
    uint8_t *header; /* newest header record value */
    size_t hlen;
    blockv_t *blocks, *pages;
    size_t nblocks, npages;
    /* delta parts by (seq, part), ascending: a writer emits them in that
     * order, so a record lands at the end and a tombstone (for an older
     * one) is a binary search */
    ld_state_dpart_t *dp;
    size_t ndp, dcap;
};

ld_state_reader_t *ld_state_reader_new(const char *model)
{
    ld_state_reader_t *rd = calloc(1, sizeof(*rd));
    if (!rd || !(rd->model = strdup(model))) {
        free(rd);
        return NULL;
    }
    rd->mlen = strlen(model);
    return rd;
}

static void blockv_free(blockv_t *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i].data);
    free(v);
}

void ld_state_reader_destroy(ld_state_reader_t *rd)
{
    if (!rd)
        return;
    free(rd->header);
    blockv_free(rd->blocks, rd->nblocks);
    blockv_free(rd->pages, rd->npages);
    for (size_t i = 0; i < rd->ndp; i++)
        free(rd->dp[i].data);
    free(rd->dp);
    free(rd->model);
    free(rd);
}

/* Stores data (taken) as entry idx of *v, growing it. */
static ld_err_t put(blockv_t **v, size_t *n, uint32_t idx, uint8_t *data,
                    size_t len, uint64_t seq, uint32_t keep)
{
    if (idx >= *n) {
        size_t m = (size_t)idx + 1;
        blockv_t *b = realloc(*v, m * sizeof(*b));
        if (!b) {
            free(data);
            return LD_ERR_NOMEM;
        }
        memset(b + *n, 0, (m - *n) * sizeof(*b));
        *v = b;
        *n = m;
    }
    free((*v)[idx].data);
    (*v)[idx] = (blockv_t){data, len, seq, 1, keep};
    return LD_OK;
}

static uint8_t *dup_bytes(const void *p, size_t n)
{
    uint8_t *c = malloc(n ? n : 1);
    if (c && n)
        memcpy(c, p, n);
    return c;
}

/* Index of the first part >= (seq, part). */
static size_t dpart_find(const ld_state_reader_t *rd, uint64_t seq,
                         uint32_t part)
{
    size_t lo = 0, hi = rd->ndp;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const ld_state_dpart_t *d = &rd->dp[mid];
        if (d->seq < seq || (d->seq == seq && d->part < part))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

const ld_state_dpart_t *ld_state_reader_dpart(const ld_state_reader_t *rd,
                                              uint64_t seq, uint32_t part)
{
    size_t i = dpart_find(rd, seq, part);
    if (i < rd->ndp && rd->dp[i].seq == seq && rd->dp[i].part == part &&
        rd->dp[i].data)
        return &rd->dp[i];
    return NULL;
}

/* A record (val non-NULL, taken) or a tombstone (val NULL) of key
 * "delta/<seq>/<part>" (rest, not NUL-terminated). */
static ld_err_t take_delta(ld_state_reader_t *rd, const char *rest, size_t rlen,
                           uint8_t *val, size_t vlen)
{
    char k[64];
    unsigned long long seq;
    unsigned part;
    char extra;
    if (rlen >= sizeof(k)) {
        free(val);
        return LD_OK;
    }
    memcpy(k, rest, rlen);
    k[rlen] = '\0';
    if (sscanf(k, "delta/%llu/%u%c", &seq, &part, &extra) != 2) {
        free(val);
        return LD_OK; /* not a key this learnd writes */
    }
    size_t i = dpart_find(rd, seq, part);
    if (i < rd->ndp && rd->dp[i].seq == seq && rd->dp[i].part == part) {
        free(rd->dp[i].data);
        rd->dp[i].data = val;
        rd->dp[i].len = vlen;
        return LD_OK;
    }
    if (!val)
        return LD_OK; /* a tombstone for a part compacted away */
    if (rd->ndp == rd->dcap) {
        size_t cap = rd->dcap ? rd->dcap * 2 : 64;
        ld_state_dpart_t *d = realloc(rd->dp, cap * sizeof(*d));
        if (!d) {
            free(val);
            return LD_ERR_NOMEM;
        }
        rd->dp = d;
        rd->dcap = cap;
    }
    memmove(rd->dp + i + 1, rd->dp + i, (rd->ndp - i) * sizeof(*rd->dp));
    rd->dp[i] = (ld_state_dpart_t){seq, part, val, vlen};
    rd->ndp++;
    return LD_OK;
}

ld_err_t ld_state_reader_take(ld_state_reader_t *rd, const void *key,
                              size_t klen, const void *val, size_t vlen)
{
    const char *k = key;
    if (!k || klen <= rd->mlen + 1 || memcmp(k, rd->model, rd->mlen) != 0 ||
        k[rd->mlen] != '/')
        return LD_OK;
    const char *rest = k + rd->mlen + 1;
    size_t rlen = klen - rd->mlen - 1;
    if (rlen > 6 && memcmp(rest, "delta/", 6) == 0) {
        uint8_t *copy = val ? dup_bytes(val, vlen) : NULL;
        if (val && !copy)
            return LD_ERR_NOMEM;
        return take_delta(rd, rest, rlen, copy, vlen);
    }
    if (!val)
        return LD_OK; /* tombstones are written for deltas only */
    if (rlen == 6 && memcmp(rest, "header", 6) == 0) {
        uint8_t *copy = dup_bytes(val, vlen);
        if (!copy)
            return LD_ERR_NOMEM;
        free(rd->header);
        rd->header = copy;
        rd->hlen = vlen;
        return LD_OK;
    }
    Learnd__V1__StateRecord *rec =
        learnd__v1__state_record__unpack(NULL, vlen, val);
    if (!rec)
        return LD_OK; /* a stray record is not ours to judge */
    /* The index in the value must be the key's and one a model can have
     * (hash_bits <= 30): a stray index would size the table (fuzz_state
     * found 4 G blocks asked for by one record). */
    unsigned kidx = 0;
    char extra;
    uint32_t vidx = rec->record_case == LEARND__V1__STATE_RECORD__RECORD_BLOCK
                        ? rec->block->block_index
                    : rec->record_case == LEARND__V1__STATE_RECORD__RECORD_GENS
                        ? rec->gens->page
                        : 0;
    char kb[32];
    size_t kl = rlen < sizeof(kb) - 1 ? rlen : sizeof(kb) - 1;
    memcpy(kb, rest, kl);
    kb[kl] = '\0';
    int kok = sscanf(kb,
                     rec->record_case == LEARND__V1__STATE_RECORD__RECORD_BLOCK
                         ? "block/%u%c"
                         : "gens/%u%c",
                     &kidx, &extra) == 1;
    uint32_t lim = rec->record_case == LEARND__V1__STATE_RECORD__RECORD_BLOCK
                       ? MAX_BLOCKS
                       : MAX_BLOCKS / GENS_PAGE;
    if (!kok || kidx != vidx || vidx >= lim) {
        learnd__v1__state_record__free_unpacked(rec, NULL);
        return LD_OK;
    }
    ld_err_t err = LD_OK;
    if (rec->record_case == LEARND__V1__STATE_RECORD__RECORD_BLOCK) {
        const Learnd__V1__StateBlock *b = rec->block;
        uint8_t *d = dup_bytes(b->data.data, b->data.len);
        err = d ? put(&rd->blocks, &rd->nblocks, b->block_index, d, b->data.len,
                      b->commit_seq, b->stored_weights)
                : LD_ERR_NOMEM;
    } else if (rec->record_case == LEARND__V1__STATE_RECORD__RECORD_GENS) {
        uint8_t *d = dup_bytes(val, vlen);
        err = d ? put(&rd->pages, &rd->npages, rec->gens->page, d, vlen,
                      rec->gens->commit_seq, 0)
                : LD_ERR_NOMEM;
    }
    learnd__v1__state_record__free_unpacked(rec, NULL);
    return err;
}

void ld_resume_destroy(ld_resume_t *r)
{
    if (!r)
        return;
    if (r->header)
        learnd__v1__resume_header__free_unpacked(r->header, NULL);
    free(r->ckpt);
    free(r->gens_block);
    free(r->dpart);
    if (r->rd)
        ld_state_reader_destroy(r->rd);
    free(r);
}

/* Format 1: the blocks are one serialized checkpoint, all of the header's
 * commit. */
static ld_err_t assemble_v1(ld_state_reader_t *rd, ld_resume_t *r, char *errstr,
                            size_t errstr_size)
{
    const Learnd__V1__ResumeHeader *h = r->header;
    size_t total = 0;
    for (uint32_t i = 0; i < h->block_count; i++) {
        if (i >= rd->nblocks || !rd->blocks[i].present ||
            rd->blocks[i].seq != h->commit_seq) {
            snprintf(errstr, errstr_size,
                     "state of model %s: block %u of commit %llu is missing "
                     "or from another commit",
                     rd->model, i, (unsigned long long)h->commit_seq);
            return LD_ERR_CORRUPT;
        }
        size_t bl = rd->blocks[i].len;
        uint8_t *grown = realloc(r->ckpt, total + bl + 1);
        if (!grown)
            return LD_ERR_NOMEM;
        r->ckpt = grown;
        memcpy(r->ckpt + total, rd->blocks[i].data, bl);
        total += bl;
    }
    r->ckpt_len = total;
    return LD_OK;
}

/* Format 2: every gens page and every block must be the generation the
 * header's commit names. */
static ld_err_t assemble_v2(ld_state_reader_t *rd, ld_resume_t *r, char *errstr,
                            size_t size)
{
    const Learnd__V1__ResumeHeader *h = r->header;
    size_t nb = h->block_count, ps = h->gens_page_size;
    size_t np = ps ? (nb + ps - 1) / ps : 0;
    if (!nb || nb > MAX_BLOCKS || !ps || !h->block_size ||
        h->n_page_generations != np || !h->model_state.len) {
        snprintf(errstr, size,
                 "state of model %s: header of commit %" PRIu64
                 " has %zu blocks, %zu per page and %zu page generations",
                 rd->model, h->commit_seq, nb, ps, h->n_page_generations);
        return LD_ERR_CORRUPT;
    }
    if (!(r->gens_block = malloc(nb * sizeof(*r->gens_block))))
        return LD_ERR_NOMEM;
    for (size_t j = 0; j < np; j++) {
        uint64_t want = h->page_generations[j];
        if (j >= rd->npages || !rd->pages[j].present ||
            rd->pages[j].seq != want) {
            snprintf(errstr, size,
                     "state of model %s: generations page %zu of commit "
                     "%" PRIu64 " is missing or from commit %" PRIu64
                     " (the header of commit %" PRIu64 " names %" PRIu64 ")",
                     rd->model, j, want,
                     j < rd->npages && rd->pages[j].present ? rd->pages[j].seq
                                                            : 0,
                     h->commit_seq, want);
            return LD_ERR_CORRUPT;
        }
        Learnd__V1__StateRecord *rec = learnd__v1__state_record__unpack(
            NULL, rd->pages[j].len, rd->pages[j].data);
        size_t n = nb - j * ps < ps ? nb - j * ps : ps;
        int ok = rec && rec->gens && rec->gens->n_age == n;
        for (size_t i = 0; ok && i < n; i++) {
            ok = rec->gens->age[i] < want;
            r->gens_block[j * ps + i] = want - rec->gens->age[i];
        }
        if (rec)
            learnd__v1__state_record__free_unpacked(rec, NULL);
        if (!ok) {
            snprintf(errstr, size,
                     "state of model %s: generations page %zu is corrupt",
                     rd->model, j);
            return LD_ERR_CORRUPT;
        }
    }
    for (size_t i = 0; i < nb; i++) {
        uint64_t want = r->gens_block[i];
        if (i >= rd->nblocks || !rd->blocks[i].present ||
            rd->blocks[i].seq != want) {
            snprintf(errstr, size,
                     "state of model %s: block %zu of commit %" PRIu64
                     " is %s (the header of commit %" PRIu64
                     " names that generation): refusing to start with a "
                     "hole in the model",
                     rd->model, i, want,
                     i < rd->nblocks && rd->blocks[i].present
                         ? "from another commit"
                         : "missing",
                     h->commit_seq);
            return LD_ERR_CORRUPT;
        }
    }
    r->nblocks = nb;
    return LD_OK;
}

ld_err_t ld_state_reader_finish(ld_state_reader_t *rd, ld_resume_t **out,
                                char *errstr, size_t errstr_size)
{
    *out = NULL;
    if (!rd->header) {
        ld_state_reader_destroy(rd);
        return LD_OK;
    }
    Learnd__V1__StateRecord *rec =
        learnd__v1__state_record__unpack(NULL, rd->hlen, rd->header);
    if (!rec || rec->record_case != LEARND__V1__STATE_RECORD__RECORD_HEADER) {
        if (rec)
            learnd__v1__state_record__free_unpacked(rec, NULL);
        snprintf(errstr, errstr_size,
                 "state of model %s: header record is undecodable", rd->model);
        ld_state_reader_destroy(rd);
        return LD_ERR_CORRUPT;
    }
    ld_resume_t *r = calloc(1, sizeof(*r));
    if (!r) {
        learnd__v1__state_record__free_unpacked(rec, NULL);
        ld_state_reader_destroy(rd);
        return LD_ERR_NOMEM;
    }
    /* Keep only the header: detach it from its wrapper. */
    r->header = rec->header;
    rec->header = NULL;
    rec->record_case = LEARND__V1__STATE_RECORD__RECORD__NOT_SET;
    learnd__v1__state_record__free_unpacked(rec, NULL);
    const Learnd__V1__ResumeHeader *h = r->header;
    ld_err_t err;
    if (h->format_version == 1 &&
        h->block_encoding ==
            LEARND__V1__BLOCK_ENCODING__BLOCK_ENCODING_CHECKPOINT_CHUNKS)
        err = assemble_v1(rd, r, errstr, errstr_size);
    else if (((h->format_version == 2 || h->format_version == 3) &&
              h->block_encoding ==
                  LEARND__V1__BLOCK_ENCODING__BLOCK_ENCODING_SLOTS) ||
             (h->format_version == 4 &&
              h->block_encoding ==
                  LEARND__V1__BLOCK_ENCODING__BLOCK_ENCODING_SLOTS_FTRL_ZN)) {
        err = assemble_v2(rd, r, errstr, errstr_size);
        if (!err && h->format_version >= 3)
            err = ld_state_deltas_check(rd, r, rd->model, errstr, errstr_size);
    } else {
        snprintf(errstr, errstr_size,
                 "state of model %s: unsupported format %u / encoding %d",
                 rd->model, h->format_version, (int)h->block_encoding);
        err = LD_ERR_CORRUPT;
    }
    if (err) {
        ld_resume_destroy(r);
        ld_state_reader_destroy(rd);
        return err;
    }
    if (h->format_version >= 2)
        r->rd = rd; /* the blocks, for ld_resume_fill_sparse */
    else
        ld_state_reader_destroy(rd);
    *out = r;
    return LD_OK;
}

ld_err_t ld_state_fill_rows(const ld_resume_t *r, float *dst, size_t n,
                            uint8_t *keep, char *errstr, size_t errstr_size)
{
    const Learnd__V1__ResumeHeader *h = r->header;
    size_t nb = r->nblocks;
    if (!r->rd || !nb || n % nb) {
        snprintf(errstr, errstr_size,
                 "state of model %s: %zu blocks do not tile %zu floats",
                 h->model, nb, n);
        return LD_ERR_CORRUPT;
    }
    int zn = h->format_version == 4;
    size_t per = n / nb * sizeof(float), slots = h->block_size;
    size_t slot_bytes = per / slots;
    if (slots > 32 || per % slots || (zn && slot_bytes % 12)) {
        snprintf(errstr, errstr_size,
                 "state of model %s: %zu slots per block do not fit the model",
                 h->model, slots);
        return LD_ERR_CORRUPT;
    }
    ld_state_rows_t f = {zn, slot_bytes};
    for (size_t i = 0; i < nb; i++) {
        const blockv_t *b = &r->rd->blocks[i];
        uint32_t mask = 0;
        for (int k = 0; k < 4 && b->len >= 4; k++)
            mask |= (uint32_t)b->data[k] << (8 * k);
        size_t live = (size_t)__builtin_popcount(mask);
        size_t kept = (size_t)__builtin_popcount(b->keep);
        size_t want = 4 + live * ld_state_row_bytes(&f, 0) +
                      kept * (slot_bytes - ld_state_row_bytes(&f, 0));
        if (b->len < 4 || (slots < 32 && mask >> slots) || (b->keep & ~mask) ||
            (!zn && b->keep) || b->len != want) {
            snprintf(errstr, errstr_size,
                     "state of model %s: block %zu has %zu bytes, which is "
                     "not a block of %zu slots of %zu bytes (another shape?)",
                     h->model, i, b->len, slots, slot_bytes);
            return LD_ERR_CORRUPT;
        }
        uint8_t *d = (uint8_t *)dst + i * per;
        const uint8_t *src = b->data + 4;
        for (size_t k = 0; k < slots; k++, d += slot_bytes) {
            if (mask >> k & 1)
                src += ld_state_row_get(&f, src, b->keep >> k & 1, d);
            else
                memset(d, 0, slot_bytes);
        }
        for (size_t k = 0; keep && k < slots; k++)
            ld_state_keep_set(keep, i * slots + k, b->keep >> k & 1);
    }
    if (h->format_version >= 3)
        return ld_state_deltas_apply(r, (uint8_t *)dst, nb, &f, keep, errstr,
                                     errstr_size);
    return LD_OK;
}

ld_err_t ld_resume_fill_sparse(ld_resume_t *r, ld_snapshot_t *snap,
                               char *errstr, size_t errstr_size)
{
    size_t n = 0;
    float *dst = ld_snapshot_sparse(snap, &n);
    uint8_t *keep = NULL;
    if (!dst) {
        snprintf(errstr, errstr_size, "state of model %s: no sparse state",
                 r->header->model);
        return LD_ERR_CORRUPT;
    }
    /* Format 4: which rows keep their weights, one bit a row. */
    if (r->header->format_version == 4 && r->nblocks &&
        !(keep = calloc(n / 3 / 8 + 1, 1)))
        return LD_ERR_NOMEM;
    ld_err_t err = ld_state_fill_rows(r, dst, n, keep, errstr, errstr_size);
    if (!err && keep && ld_snapshot_derive_w(snap, keep) != LD_OK) {
        snprintf(errstr, errstr_size,
                 "state of model %s: format 4 (rows without weights) for a "
                 "model that is not FTRL",
                 r->header->model);
        err = LD_ERR_CORRUPT;
    }
    free(keep);
    return err;
}

ld_err_t ld_state_load(const ld_strlist_t *kafka, const char *topic,
                       const char *model, int timeout_ms, ld_resume_t **out,
                       char *errstr, size_t errstr_size)
{
    *out = NULL;
    ld_err_t err = LD_ERR_KAFKA;
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_partition_list_t *parts = NULL;
    char *at_end = NULL; /* per partition: read to its end */
    ld_state_reader_t *rd = ld_state_reader_new(model);
    if (!rd)
        return LD_ERR_NOMEM;
    rd_kafka_conf_t *conf = ld_kafka_conf_new(kafka, errstr, errstr_size);
    if (!conf) {
        ld_state_reader_destroy(rd);
        return LD_ERR_CONFIG;
    }
    if (ld_kafka_conf_set(conf, "isolation.level", "read_committed", errstr,
                          errstr_size) ||
        ld_kafka_conf_set(conf, "enable.partition.eof", "true", errstr,
                          errstr_size) ||
        ld_kafka_conf_set(conf, "enable.auto.commit", "false", errstr,
                          errstr_size) ||
        ld_kafka_conf_set(conf, "group.id", "learnd-state-reader", errstr,
                          errstr_size)) {
        rd_kafka_conf_destroy(conf);
        ld_state_reader_destroy(rd);
        return LD_ERR_CONFIG;
    }
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, errstr_size);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        ld_state_reader_destroy(rd);
        return LD_ERR_KAFKA;
    }
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_resp_err_t e = t ? rd_kafka_metadata(rk, 0, t, &md, timeout_ms)
                              : rd_kafka_last_error();
    if (t)
        rd_kafka_topic_destroy(t);
    if (e || !md || md->topic_cnt != 1 || md->topics[0].err) {
        snprintf(errstr, errstr_size, "state topic %s: %s", topic,
                 e ? rd_kafka_err2str(e)
                 : md && md->topic_cnt == 1
                     ? rd_kafka_err2str(md->topics[0].err)
                     : "no metadata");
        goto out;
    }
    int nparts = md->topics[0].partition_cnt;
    parts = rd_kafka_topic_partition_list_new(nparts);
    for (int i = 0; i < nparts; i++)
        rd_kafka_topic_partition_list_add(parts, topic, i)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    if (rd_kafka_assign(rk, parts)) {
        snprintf(errstr, errstr_size, "cannot assign the state topic");
        goto out;
    }
    int eofs = 0;
    at_end = calloc((size_t)nparts, 1);
    if (!at_end) {
        err = LD_ERR_NOMEM;
        goto out;
    }
    /* timeout_ms bounds a wait without progress, not the whole read: a
     * large state topic (many commits not compacted yet) is read to its
     * end however long that takes, while a broker that stops answering
     * still fails the start. */
    int64_t deadline = ld_now_mono_ms() + timeout_ms;
    while (eofs < nparts) {
        if (ld_now_mono_ms() > deadline) {
            snprintf(errstr, errstr_size,
                     "state topic %s not read to its end: nothing arrived "
                     "for %d ms",
                     topic, timeout_ms);
            err = LD_ERR_TIMEOUT;
            goto out;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m)
            continue;
        deadline = ld_now_mono_ms() + timeout_ms;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (m->partition >= 0 && m->partition < nparts &&
                !at_end[m->partition]) {
                at_end[m->partition] = 1;
                eofs++;
            }
        } else if (m->err) {
            snprintf(errstr, errstr_size, "state topic %s: %s", topic,
                     rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            goto out;
        } else if ((err = ld_state_reader_take(rd, m->key, m->key_len,
                                               m->payload, m->len)) != LD_OK) {
            rd_kafka_message_destroy(m);
            goto out;
        }
        err = LD_ERR_KAFKA;
        rd_kafka_message_destroy(m);
    }
    err = ld_state_reader_finish(rd, out, errstr, errstr_size);
    rd = NULL;
out:
    free(at_end);
    if (md)
        rd_kafka_metadata_destroy(md);
    if (parts)
        rd_kafka_topic_partition_list_destroy(parts);
    if (rk) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    ld_state_reader_destroy(rd);
    return err;
}
