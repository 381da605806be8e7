/* SPDX-License-Identifier: Apache-2.0 */
/* The bounded protobuf wire reader of common/pbwire.h. */
#include "common/pbwire.h"

int ld_pb_skip(const uint8_t **pp, const uint8_t *end, uint32_t num,
               uint32_t wt, int depth)
{
    uint64_t v;
    size_t n;
    switch (wt) {
    case LD_PB_WT_VARINT:
        return ld_pb_varint(pp, end, &v);
    case LD_PB_WT_FIXED64:
        if (end - *pp < 8)
            return -1;
        *pp += 8;
        return 0;
    case LD_PB_WT_FIXED32:
        if (end - *pp < 4)
            return -1;
        *pp += 4;
        return 0;
    case LD_PB_WT_LEN:
        if (ld_pb_len(pp, end, &n) < 0)
            return -1;
        *pp += n;
        return 0;
    case LD_PB_WT_SGROUP:
        if (depth > LD_PB_MAX_DEPTH)
            return -1;
        for (;;) {
            uint32_t n2, wt2;
            if (*pp >= end || ld_pb_tag(pp, end, &n2, &wt2) < 0)
                return -1;
            if (wt2 == LD_PB_WT_EGROUP)
                return n2 == num ? 0 : -1;
            if (ld_pb_skip(pp, end, n2, wt2, depth + 1) < 0)
                return -1;
        }
    default:
        return -1;
    }
}

/* The ld_rbuf_t readers are the cursor readers above on r's unread bytes:
 * one varint decoder for the whole program. */

uint64_t ld_pb_read_varint(ld_rbuf_t *r)
{
    if (r->err)
        return 0;
    const uint8_t *p = r->p + r->off, *end = r->p + r->len;
    uint64_t v;
    if (ld_pb_varint(&p, end, &v) < 0) {
        r->err = LD_ERR_CORRUPT;
        return 0;
    }
    r->off = (size_t)(p - r->p);
    return v;
}

int ld_pb_read_key(ld_rbuf_t *r, uint32_t *field, int *wt)
{
    if (r->err)
        return -1;
    if (r->off == r->len)
        return 0;
    const uint8_t *p = r->p + r->off, *end = r->p + r->len;
    uint32_t num, w;
    if (ld_pb_tag(&p, end, &num, &w) < 0) {
        r->err = LD_ERR_CORRUPT;
        return -1;
    }
    r->off = (size_t)(p - r->p);
    *field = num;
    *wt = (int)w;
    return 1;
}

/* Groups are refused here: no message read through ld_rbuf_t has any. */
void ld_pb_skip_field(ld_rbuf_t *r, int wt)
{
    if (r->err)
        return;
    const uint8_t *p = r->p + r->off, *end = r->p + r->len;
    if (wt == LD_PB_WT_SGROUP || wt == LD_PB_WT_EGROUP ||
        ld_pb_skip(&p, end, 0, (uint32_t)wt, 0) < 0) {
        r->err = LD_ERR_CORRUPT;
        return;
    }
    r->off = (size_t)(p - r->p);
}

const uint8_t *ld_pb_find_len(const uint8_t *msg, size_t n, uint32_t field,
                              size_t *len)
{
    ld_rbuf_t r = ld_rbuf_make(msg, n);
    uint32_t f;
    int wt;
    while (ld_pb_read_key(&r, &f, &wt) == 1) {
        if (f == field && wt == LD_PB_WT_LEN) {
            uint64_t m = ld_pb_read_varint(&r);
            if (r.err || m > ld_rbuf_left(&r))
                return NULL;
            *len = (size_t)m;
            return ld_rbuf_take(&r, (size_t)m);
        }
        ld_pb_skip_field(&r, wt);
    }
    return NULL;
}
