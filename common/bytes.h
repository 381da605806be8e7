/* SPDX-License-Identifier: Apache-2.0 */
/* One bounds-checked little-endian byte codec for every state blob learnd
 * writes itself: a growing writer and a bounded reader, each with a sticky
 * error (after the first failure every call is a no-op, reads return zeros),
 * so an encoder or decoder checks once at the end instead of after every
 * field. Thread: any (a buffer belongs to one thread at a time). */
#ifndef LD_COMMON_BYTES_H
#define LD_COMMON_BYTES_H

#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

/* ---- Writer ------------------------------------------------------------- */

/* A growing output buffer. Start from {0}; the bytes are p[0..len) and the
 * caller frees p (free(), or ld_wbuf_free). The first failed allocation or
 * size overflow sticks in err (LD_ERR_NOMEM); later writes do nothing. */
typedef struct ld_wbuf {
    uint8_t *p;
    size_t len, cap;
    ld_err_t err;
} ld_wbuf_t;

void ld_wbuf_bytes(ld_wbuf_t *w, const void *src, size_t n);
void ld_wbuf_u8(ld_wbuf_t *w, uint8_t v);
void ld_wbuf_u16(ld_wbuf_t *w, uint16_t v);
void ld_wbuf_u32(ld_wbuf_t *w, uint32_t v);
void ld_wbuf_u64(ld_wbuf_t *w, uint64_t v);
void ld_wbuf_i64(ld_wbuf_t *w, int64_t v);
/* Doubles and floats go by their bits, so state round-trips exactly (NaN
 * payloads and -0.0 included). */
void ld_wbuf_f64(ld_wbuf_t *w, double v);
void ld_wbuf_f32(ld_wbuf_t *w, float v);
/* A u32 length, then the bytes of s without its terminator. */
void ld_wbuf_str(ld_wbuf_t *w, const char *s);
/* Frees the bytes and resets w to {0}. NULL-safe. */
void ld_wbuf_free(ld_wbuf_t *w);

/* ---- Reader ------------------------------------------------------------- */

/* A bounded reader over p[0..len) (borrowed). Any read past the end sets
 * err to LD_ERR_CORRUPT and returns zeros from then on. */
typedef struct ld_rbuf {
    const uint8_t *p;
    size_t len, off;
    ld_err_t err;
} ld_rbuf_t;

/* A reader over buf[0..len) (borrowed, must outlive the reader). */
static inline ld_rbuf_t ld_rbuf_make(const void *buf, size_t len)
{
    ld_rbuf_t r = {(const uint8_t *)buf, len, 0, LD_OK};
    return r;
}

/* Bytes not yet read (0 once err is set). */
static inline size_t ld_rbuf_left(const ld_rbuf_t *r)
{
    return r->err ? 0 : r->len - r->off;
}

/* Copies n bytes into dst; on error dst is zeroed. */
void ld_rbuf_bytes(ld_rbuf_t *r, void *dst, size_t n);
/* Points at the next n bytes in place and skips them; NULL (and err set)
 * when fewer than n remain. The pointer borrows the reader's buffer. */
const uint8_t *ld_rbuf_take(ld_rbuf_t *r, size_t n);
uint8_t ld_rbuf_u8(ld_rbuf_t *r);
uint16_t ld_rbuf_u16(ld_rbuf_t *r);
uint32_t ld_rbuf_u32(ld_rbuf_t *r);
uint64_t ld_rbuf_u64(ld_rbuf_t *r);
int64_t ld_rbuf_i64(ld_rbuf_t *r);
double ld_rbuf_f64(ld_rbuf_t *r);
float ld_rbuf_f32(ld_rbuf_t *r);
/* Reads what ld_wbuf_str wrote into dst[cap]: a string of cap or more bytes
 * is corrupt (dst is then ""), so dst is always terminated. */
void ld_rbuf_str(ld_rbuf_t *r, char *dst, size_t cap);
/* Reads a u64 count and checks that count * unit bytes remain, so a caller
 * may allocate count items before reading them; 0 and err when not. */
uint64_t ld_rbuf_count(ld_rbuf_t *r, size_t unit);

#endif /* LD_COMMON_BYTES_H */
