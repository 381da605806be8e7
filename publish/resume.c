/* SPDX-License-Identifier: Apache-2.0 */
/* The resume state's own bytes: the set of partitions whose joiner state is
 * saved, the framed joiner records (labeling_state) and the daemon's
 * counters with the trainer's queued examples (trainer_state), on the byte
 * codec of common/bytes.h. */
#include <stdlib.h>
#include <string.h>

#include "publish/publish.h"

#define PARTITION_MAX 65535 /* the joiner's limit (ld_joiner_assign) */
#define RUN_MAGIC     "LDRS"
#define RUN_FORMAT    1u

/* ---- Partition sets ----------------------------------------------------- */

ld_err_t ld_partset_add(ld_partset_t *s, int32_t p)
{
    if (p < 0 || p > PARTITION_MAX)
        return LD_ERR_INVAL;
    if ((size_t)p >= s->n) {
        size_t n = s->n ? s->n : 64;
        while (n <= (size_t)p)
            n *= 2;
        uint8_t *in = realloc(s->in, n);
        if (!in)
            return LD_ERR_NOMEM;
        memset(in + s->n, 0, n - s->n);
        s->in = in;
        s->n = n;
    }
    s->in[p] = 1;
    return LD_OK;
}

void ld_partset_del(ld_partset_t *s, int32_t p)
{
    if (p >= 0 && (size_t)p < s->n)
        s->in[p] = 0;
}

int ld_partset_has(const ld_partset_t *s, int32_t p)
{
    return p >= 0 && (size_t)p < s->n && s->in[p];
}

int32_t ld_partset_next(const ld_partset_t *s, int32_t after)
{
    for (size_t p = after < 0 ? 0 : (size_t)after + 1; p < s->n; p++)
        if (s->in[p])
            return (int32_t)p;
    return -1;
}

void ld_partset_free(ld_partset_t *s)
{
    if (!s)
        return;
    free(s->in);
    s->in = NULL;
    s->n = 0;
}

/* ---- labeling_state ----------------------------------------------------- */

ld_err_t ld_resume_labeling_encode(ld_joiner_t *j, const ld_partset_t *parts,
                                   ld_wbuf_t *out)
{
    for (int32_t p = -1; (p = ld_partset_next(parts, p)) >= 0;) {
        uint8_t *rec = NULL;
        size_t len = 0;
        ld_err_t err = ld_joiner_resume_encode(j, p, &rec, &len);
        if (err)
            return err;
        if (len > UINT32_MAX) {
            free(rec);
            return LD_ERR_RANGE;
        }
        ld_wbuf_u32(out, (uint32_t)len);
        ld_wbuf_bytes(out, rec, len);
        free(rec);
    }
    return out->err;
}

ld_err_t ld_resume_labeling_load(ld_joiner_t *j, const uint8_t *buf, size_t len)
{
    ld_rbuf_t r = ld_rbuf_make(buf, len);
    while (ld_rbuf_left(&r)) {
        uint32_t n = ld_rbuf_u32(&r);
        const uint8_t *rec = ld_rbuf_take(&r, n);
        if (!rec || ld_joiner_resume_load(j, rec, n) != LD_OK)
            return LD_ERR_CORRUPT;
    }
    return r.err ? LD_ERR_CORRUPT : LD_OK;
}

/* ---- hand-over text (offset metadata) ----------------------------------- */

static const char b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Standard base64 with padding of n bytes into out (4 * ceil(n / 3)). */
static size_t b64_encode(const uint8_t *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = b64[v >> 18 & 63];
        out[o++] = b64[v >> 12 & 63];
        out[o++] = i + 1 < n ? b64[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? b64[v & 63] : '=';
    }
    return o;
}

static int b64_value(char c)
{
    const char *at = c ? strchr(b64, c) : NULL;
    return at ? (int)(at - b64) : -1;
}

/* Decodes padded base64 (n a multiple of 4) into out (3 * n / 4 bytes at
 * most); the decoded length, or -1 when it is not base64. */
static long b64_decode(const char *in, size_t n, uint8_t *out)
{
    if (n % 4)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int pad = (in[i + 2] == '=') + (in[i + 3] == '=');
        if ((pad && i + 4 != n) || (in[i + 2] == '=' && in[i + 3] != '='))
            return -1;
        uint32_t v = 0;
        for (size_t k = 0; k < 4; k++) {
            int d = k >= 4 - (size_t)pad ? 0 : b64_value(in[i + k]);
            if (d < 0)
                return -1;
            v = v << 6 | (uint32_t)d;
        }
        out[o++] = (uint8_t)(v >> 16);
        if (pad < 2)
            out[o++] = (uint8_t)(v >> 8);
        if (pad < 1)
            out[o++] = (uint8_t)v;
    }
    return (long)o;
}

ld_err_t ld_resume_handover_encode(ld_joiner_t *j, int32_t p, size_t max,
                                   char **out, size_t *len, int *small)
{
    const size_t tag = strlen(LD_RESUME_HANDOVER_TAG);
    *out = NULL;
    *small = 0;
    for (int s = 0; s < 2; s++) {
        uint8_t *rec = NULL;
        size_t n = 0;
        ld_err_t err = s ? ld_joiner_resume_encode_small(j, p, &rec, &n)
                         : ld_joiner_resume_encode(j, p, &rec, &n);
        if (err)
            return err;
        size_t need = tag + (n + 2) / 3 * 4;
        if (need > max) {
            free(rec);
            continue;
        }
        char *t = malloc(need + 1);
        if (!t) {
            free(rec);
            return LD_ERR_NOMEM;
        }
        memcpy(t, LD_RESUME_HANDOVER_TAG, tag);
        b64_encode(rec, n, t + tag);
        t[need] = '\0';
        free(rec);
        *out = t;
        *len = need;
        *small = s;
        return LD_OK;
    }
    return LD_ERR_RANGE;
}

ld_err_t ld_resume_handover_load(ld_joiner_t *j, int32_t p, const void *text,
                                 size_t len)
{
    const size_t tag = strlen(LD_RESUME_HANDOVER_TAG);
    const char *t = text;
    if (!t || len < tag || memcmp(t, LD_RESUME_HANDOVER_TAG, tag) != 0)
        return LD_ERR_NOENT;
    uint8_t *rec = malloc((len - tag) / 4 * 3 + 1);
    if (!rec)
        return LD_ERR_NOMEM;
    long n = b64_decode(t + tag, len - tag, rec);
    ld_err_t err = LD_ERR_CORRUPT;
    ld_rbuf_t r = ld_rbuf_make(rec, n > 0 ? (size_t)n : 0);
    /* "LDJ1", then the partition: a record is only for its partition */
    if (n >= 8 && ld_rbuf_take(&r, 4) && ld_rbuf_u32(&r) == (uint32_t)p)
        err = ld_joiner_resume_load(j, rec, (size_t)n);
    free(rec);
    return err;
}

/* ---- trainer_state ------------------------------------------------------ */

/* One queued example, as ld_trainer_queued_get() hands it out. */
static void example_encode(const ld_example_t *ex, ld_wbuf_t *w)
{
    size_t idl = ex->event_id ? strlen(ex->event_id) : 0;
    ld_wbuf_i64(w, ex->event_time_ms);
    ld_wbuf_i64(w, ex->label_time_ms);
    ld_wbuf_i64(w, ex->offset);
    ld_wbuf_u32(w, (uint32_t)ex->partition);
    ld_wbuf_f32(w, ex->label);
    ld_wbuf_f32(w, ex->weight);
    ld_wbuf_u8(w, (uint8_t)ex->sample_type);
    /* The id with its terminating NUL, or nothing: 0 is "no id". */
    if (ex->event_id && idl + 1 > UINT16_MAX) {
        w->err = w->err ? w->err : LD_ERR_NOMEM;
        return;
    }
    ld_wbuf_u16(w, (uint16_t)(ex->event_id ? idl + 1 : 0));
    if (ex->event_id)
        ld_wbuf_bytes(w, ex->event_id, idl + 1);
    ld_wbuf_u32(w, ex->x.nnz);
    for (uint32_t k = 0; k < ex->x.nnz; k++) {
        ld_wbuf_u32(w, ex->x.idx[k]);
        ld_wbuf_f32(w, ex->x.val[k]);
    }
    ld_wbuf_u32(w, ex->x.ndense);
    for (uint32_t k = 0; k < ex->x.ndense; k++)
        ld_wbuf_f32(w, ex->x.dense[k]);
}

ld_err_t ld_resume_run_encode(const ld_resume_counters_t *c,
                              const ld_trainer_t *t, const ld_lineage_t *lin,
                              ld_wbuf_t *out)
{
    ld_wbuf_bytes(out, RUN_MAGIC, 4);
    ld_wbuf_u32(out, RUN_FORMAT);
    ld_wbuf_u64(out, c->version);
    ld_wbuf_u64(out, c->published);
    for (int i = 0; i < LD_SAMPLE__COUNT; i++)
        ld_wbuf_u64(out, c->parent_counts[i]);
    size_t n = ld_trainer_queued(t);
    ld_wbuf_u32(out, (uint32_t)n);
    for (size_t i = 0; i < n && !out->err; i++) {
        ld_example_t ex;
        if (ld_trainer_queued_get(t, i, &ex))
            return LD_ERR_INVAL;
        example_encode(&ex, out);
    }
    uint8_t *lb = NULL;
    size_t lb_len = 0;
    if (!out->err && ld_lineage_save(lin, &lb, &lb_len) != LD_OK)
        return LD_ERR_NOMEM;
    ld_wbuf_u32(out, (uint32_t)lb_len);
    ld_wbuf_bytes(out, lb, lb_len);
    ld_wbuf_bytes(out, c->published_sha, sizeof(c->published_sha));
    free(lb);
    return out->err ? LD_ERR_NOMEM : LD_OK;
}

/* Scratch arrays one decoded example points into (grown, reused). */
typedef struct scratch {
    uint32_t *idx;
    float *val, *dense;
    char *eid;
} scratch_t;

static void scratch_free(scratch_t *s)
{
    free(s->idx);
    free(s->val);
    free(s->dense);
    free(s->eid);
}

/* Reads one example into *ex (pointing into s). LD_ERR_CORRUPT (r->err
 * set) or LD_ERR_NOMEM. */
static ld_err_t example_decode(ld_rbuf_t *r, scratch_t *s, ld_example_t *ex)
{
    memset(ex, 0, sizeof(*ex));
    ex->event_time_ms = ld_rbuf_i64(r);
    ex->label_time_ms = ld_rbuf_i64(r);
    ex->offset = ld_rbuf_i64(r);
    ex->partition = (int32_t)ld_rbuf_u32(r);
    ex->label = ld_rbuf_f32(r);
    ex->weight = ld_rbuf_f32(r);
    ex->sample_type = (ld_sample_type_t)ld_rbuf_u8(r);
    size_t idl = ld_rbuf_u16(r);
    const uint8_t *id = ld_rbuf_take(r, idl);
    if (!id || (idl && id[idl - 1] != '\0')) {
        r->err = LD_ERR_CORRUPT;
        return LD_ERR_CORRUPT;
    }
    char *e = realloc(s->eid, idl + 1);
    if (!e)
        return LD_ERR_NOMEM;
    s->eid = e;
    memcpy(s->eid, id, idl);
    s->eid[idl] = '\0';
    ex->event_id = idl ? s->eid : NULL;
    uint64_t nnz = ld_rbuf_u32(r);
    if (r->err || nnz > ld_rbuf_left(r) / 8) {
        r->err = LD_ERR_CORRUPT;
        return LD_ERR_CORRUPT;
    }
    uint32_t *ni = realloc(s->idx, (nnz + 1) * sizeof(*ni));
    if (ni)
        s->idx = ni;
    float *nv = ni ? realloc(s->val, (nnz + 1) * sizeof(*nv)) : NULL;
    if (nv)
        s->val = nv;
    if (!ni || !nv)
        return LD_ERR_NOMEM;
    for (uint64_t k = 0; k < nnz; k++) {
        s->idx[k] = ld_rbuf_u32(r);
        s->val[k] = ld_rbuf_f32(r);
    }
    uint64_t nd = ld_rbuf_u32(r);
    if (r->err || nd > ld_rbuf_left(r) / 4) {
        r->err = LD_ERR_CORRUPT;
        return LD_ERR_CORRUPT;
    }
    float *dd = realloc(s->dense, (nd + 1) * sizeof(*dd));
    if (!dd)
        return LD_ERR_NOMEM;
    s->dense = dd;
    for (uint64_t k = 0; k < nd; k++)
        s->dense[k] = ld_rbuf_f32(r);
    ex->x =
        (ld_features_t){s->idx, s->val, s->dense, (uint32_t)nnz, (uint32_t)nd};
    return r->err ? LD_ERR_CORRUPT : LD_OK;
}

ld_err_t ld_resume_run_decode(const uint8_t *buf, size_t len,
                              ld_resume_counters_t *c, ld_trainer_t *t,
                              ld_lineage_t *lin, const char *const *topics,
                              size_t ntopics)
{
    ld_rbuf_t r = ld_rbuf_make(buf, len);
    const uint8_t *magic = ld_rbuf_take(&r, 4);
    if (!magic || memcmp(magic, RUN_MAGIC, 4) != 0 ||
        ld_rbuf_u32(&r) != RUN_FORMAT)
        return LD_ERR_CORRUPT;
    c->version = ld_rbuf_u64(&r);
    c->published = ld_rbuf_u64(&r);
    for (int i = 0; i < LD_SAMPLE__COUNT; i++)
        c->parent_counts[i] = ld_rbuf_u64(&r);
    uint64_t n = ld_rbuf_u32(&r);
    scratch_t s = {0};
    ld_err_t err = LD_OK;
    for (uint64_t i = 0; i < n && !r.err && !err; i++) {
        ld_example_t ex;
        err = example_decode(&r, &s, &ex);
        if (!err)
            err = ld_trainer_add(t, &ex);
    }
    scratch_free(&s);
    if (err)
        return err;
    uint32_t lb_len = ld_rbuf_u32(&r);
    const uint8_t *lb = ld_rbuf_take(&r, lb_len);
    if (!lb)
        return LD_ERR_CORRUPT;
    if ((err = ld_lineage_load(lin, topics, ntopics, lb, lb_len)))
        return err;
    /* Written since published_sha was kept; before that, the state ends
     * here. */
    if (ld_rbuf_left(&r))
        ld_rbuf_bytes(&r, c->published_sha, sizeof(c->published_sha));
    if (r.err || ld_rbuf_left(&r))
        return LD_ERR_CORRUPT;
    return LD_OK;
}
