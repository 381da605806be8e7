/* SPDX-License-Identifier: Apache-2.0 */
/* The little-endian byte writer and bounded reader of common/bytes.h. */
#include "common/bytes.h"

#include <stdlib.h>
#include <string.h>

/* ---- Writer ------------------------------------------------------------- */

void ld_wbuf_bytes(ld_wbuf_t *w, const void *src, size_t n)
{
    if (w->err)
        return;
    if (n > SIZE_MAX - w->len) {
        w->err = LD_ERR_NOMEM;
        return;
    }
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap : 256;
        while (cap < w->len + n) {
            if (cap > SIZE_MAX / 2) {
                cap = w->len + n;
                break;
            }
            cap *= 2;
        }
        uint8_t *p = realloc(w->p, cap);
        if (!p) {
            w->err = LD_ERR_NOMEM;
            return;
        }
        w->p = p;
        w->cap = cap;
    }
    if (n)
        memcpy(w->p + w->len, src, n);
    w->len += n;
}

/* The low n bytes of v, least significant first. */
static void put_le(ld_wbuf_t *w, uint64_t v, int n)
{
    uint8_t b[8];
    for (int i = 0; i < n; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    ld_wbuf_bytes(w, b, (size_t)n);
}

void ld_wbuf_u8(ld_wbuf_t *w, uint8_t v)
{
    ld_wbuf_bytes(w, &v, 1);
}

void ld_wbuf_u16(ld_wbuf_t *w, uint16_t v)
{
    put_le(w, v, 2);
}

void ld_wbuf_u32(ld_wbuf_t *w, uint32_t v)
{
    put_le(w, v, 4);
}

void ld_wbuf_u64(ld_wbuf_t *w, uint64_t v)
{
    put_le(w, v, 8);
}

void ld_wbuf_i64(ld_wbuf_t *w, int64_t v)
{
    ld_wbuf_u64(w, (uint64_t)v);
}

void ld_wbuf_f64(ld_wbuf_t *w, double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof(u));
    ld_wbuf_u64(w, u);
}

void ld_wbuf_f32(ld_wbuf_t *w, float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof(u));
    ld_wbuf_u32(w, u);
}

void ld_wbuf_str(ld_wbuf_t *w, const char *s)
{
    size_t n = strlen(s);
    if (n > UINT32_MAX) {
        w->err = w->err ? w->err : LD_ERR_NOMEM;
        return;
    }
    ld_wbuf_u32(w, (uint32_t)n);
    ld_wbuf_bytes(w, s, n);
}

void ld_wbuf_free(ld_wbuf_t *w)
{
    if (!w)
        return;
    free(w->p);
    memset(w, 0, sizeof(*w));
}

/* ---- Reader ------------------------------------------------------------- */

const uint8_t *ld_rbuf_take(ld_rbuf_t *r, size_t n)
{
    if (r->err || n > r->len - r->off) {
        r->err = LD_ERR_CORRUPT;
        return NULL;
    }
    const uint8_t *p = r->p + r->off;
    r->off += n;
    return p;
}

void ld_rbuf_bytes(ld_rbuf_t *r, void *dst, size_t n)
{
    const uint8_t *p = ld_rbuf_take(r, n);
    if (!p) {
        if (n)
            memset(dst, 0, n);
        return;
    }
    if (n)
        memcpy(dst, p, n);
}

static uint64_t get_le(ld_rbuf_t *r, int n)
{
    const uint8_t *p = ld_rbuf_take(r, (size_t)n);
    uint64_t v = 0;
    if (!p)
        return 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

uint8_t ld_rbuf_u8(ld_rbuf_t *r)
{
    return (uint8_t)get_le(r, 1);
}

uint16_t ld_rbuf_u16(ld_rbuf_t *r)
{
    return (uint16_t)get_le(r, 2);
}

uint32_t ld_rbuf_u32(ld_rbuf_t *r)
{
    return (uint32_t)get_le(r, 4);
}

uint64_t ld_rbuf_u64(ld_rbuf_t *r)
{
    return get_le(r, 8);
}

int64_t ld_rbuf_i64(ld_rbuf_t *r)
{
    return (int64_t)ld_rbuf_u64(r);
}

double ld_rbuf_f64(ld_rbuf_t *r)
{
    uint64_t u = ld_rbuf_u64(r);
    double v;
    memcpy(&v, &u, sizeof(v));
    return v;
}

float ld_rbuf_f32(ld_rbuf_t *r)
{
    uint32_t u = ld_rbuf_u32(r);
    float v;
    memcpy(&v, &u, sizeof(v));
    return v;
}

void ld_rbuf_str(ld_rbuf_t *r, char *dst, size_t cap)
{
    uint32_t n = ld_rbuf_u32(r);
    if (r->err || n >= cap) {
        r->err = LD_ERR_CORRUPT;
        if (cap)
            dst[0] = '\0';
        return;
    }
    ld_rbuf_bytes(r, dst, n);
    dst[r->err ? 0 : n] = '\0';
}

uint64_t ld_rbuf_count(ld_rbuf_t *r, size_t unit)
{
    uint64_t n = ld_rbuf_u64(r);
    if (r->err)
        return 0;
    if (unit && n > (r->len - r->off) / unit) {
        r->err = LD_ERR_CORRUPT;
        return 0;
    }
    return n;
}
