/* SPDX-License-Identifier: Apache-2.0 */
/* The bounded protobuf wire reader of common/pbwire.h. */
#include "common/pbwire.h"

uint64_t ld_pb_read_varint(ld_rbuf_t *r)
{
    uint64_t v = 0;
    for (int i = 0; i < 10; i++) {
        uint8_t b = ld_rbuf_u8(r);
        if (r->err)
            return 0;
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80))
            return v;
    }
    r->err = LD_ERR_CORRUPT;
    return 0;
}

int ld_pb_read_key(ld_rbuf_t *r, uint32_t *field, int *wt)
{
    if (r->err)
        return -1;
    if (r->off == r->len)
        return 0;
    uint64_t key = ld_pb_read_varint(r);
    if (r->err)
        return -1;
    if ((key >> 3) == 0 || (key >> 3) > 0x1fffffff) {
        r->err = LD_ERR_CORRUPT;
        return -1;
    }
    *field = (uint32_t)(key >> 3);
    *wt = (int)(key & 7);
    return 1;
}

void ld_pb_skip_field(ld_rbuf_t *r, int wt)
{
    switch (wt) {
    case LD_PB_WT_VARINT:
        (void)ld_pb_read_varint(r);
        break;
    case LD_PB_WT_FIXED64:
        (void)ld_rbuf_take(r, 8);
        break;
    case LD_PB_WT_FIXED32:
        (void)ld_rbuf_take(r, 4);
        break;
    case LD_PB_WT_LEN: {
        uint64_t n = ld_pb_read_varint(r);
        if (n > ld_rbuf_left(r))
            r->err = LD_ERR_CORRUPT;
        else
            (void)ld_rbuf_take(r, (size_t)n);
        break;
    }
    default:
        r->err = LD_ERR_CORRUPT;
        break;
    }
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
