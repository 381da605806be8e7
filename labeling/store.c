/* SPDX-License-Identifier: Apache-2.0 */
/* Storage of the pending store: a size-class slab allocator and the exact,
 * order-preserving packed encoding of an event's features. */
#include <stdlib.h>
#include <string.h>

#include "labeling/internal.h"

void slab_init(slab_t *s)
{
    memset(s, 0, sizeof(*s));
    s->big.prev = s->big.next = &s->big;
}

void slab_fini(slab_t *s)
{
    for (size_t i = 0; i < s->npages; i++)
        free(s->pages[i]);
    free(s->pages);
    big_hdr_t *b = s->big.next;
    while (b && b != &s->big) {
        big_hdr_t *nx = b->next;
        free(b);
        b = nx;
    }
    memset(s, 0, sizeof(*s));
}

void *slab_alloc(slab_t *s, size_t n)
{
    size_t sz = slab_round(n ? n : 1);
    if (sz > SLAB_MAX) {
        big_hdr_t *b = malloc(sizeof(*b) + sz);
        if (!b)
            return NULL;
        b->size = sz;
        b->next = s->big.next;
        b->prev = &s->big;
        s->big.next->prev = b;
        s->big.next = b;
        s->in_use += sz;
        s->reserved += sz + sizeof(*b);
        return b + 1;
    }
    size_t c = sz / SLAB_STEP;
    void *p = s->free[c];
    if (p) {
        memcpy(&s->free[c], p, sizeof(void *));
        s->in_use += sz;
        return p;
    }
    if (s->left[c] < sz) {
        if (s->npages == s->cap_pages) {
            size_t nc = s->cap_pages ? s->cap_pages * 2 : 16;
            void **np = realloc(s->pages, nc * sizeof(*np));
            if (!np)
                return NULL;
            s->pages = np;
            s->cap_pages = nc;
        }
        uint8_t *pg = malloc(SLAB_PAGE);
        if (!pg)
            return NULL;
        s->pages[s->npages++] = pg;
        s->reserved += SLAB_PAGE;
        /* The tail of the previous page of this class is slack. */
        s->cur[c] = pg;
        s->left[c] = SLAB_PAGE;
    }
    p = s->cur[c];
    s->cur[c] += sz;
    s->left[c] -= sz;
    s->in_use += sz;
    return p;
}

void slab_free(slab_t *s, void *p, size_t n)
{
    if (!p)
        return;
    size_t sz = slab_round(n ? n : 1);
    s->in_use -= sz;
    if (sz > SLAB_MAX) {
        big_hdr_t *b = (big_hdr_t *)p - 1;
        b->prev->next = b->next;
        b->next->prev = b->prev;
        s->reserved -= sz + sizeof(*b);
        free(b);
        return;
    }
    size_t c = sz / SLAB_STEP;
    memcpy(p, &s->free[c], sizeof(void *));
    s->free[c] = p;
}

static const uint32_t one_bits = 0x3f800000u; /* 1.0f */

static int is_one(float v)
{
    uint32_t b;
    memcpy(&b, &v, sizeof(b));
    return b == one_bits;
}

size_t pack_size(const ld_features_t *x, uint8_t *width, uint8_t *flags)
{
    if (x->nnz > 65535u || x->ndense > 65535u)
        return 0;
    if ((x->nnz && !x->idx) || (x->ndense && !x->dense))
        return 0;
    uint32_t maxi = 0, nother = 0;
    for (uint32_t i = 0; i < x->nnz; i++) {
        if (x->idx[i] > maxi)
            maxi = x->idx[i];
        if (x->val && !is_one(x->val[i]))
            nother++;
    }
    uint8_t w = 1;
    while (w < 32 && (maxi >> w) != 0)
        w++;
    uint8_t f = nother ? 0 : (uint8_t)PACK_ONES;
    size_t n = ((size_t)x->nnz * w + 7) / 8;
    if (nother)
        n += (x->nnz + 7u) / 8u + (size_t)nother * 4u;
    if (x->ndense) {
        f = (uint8_t)(f | PACK_DENSE);
        n += 2u + (size_t)x->ndense * 4u;
    }
    *width = w;
    *flags = f;
    return n;
}

void pack_write(uint8_t *dst, const ld_features_t *x, uint8_t width,
                uint8_t flags)
{
    uint64_t acc = 0;
    unsigned nb = 0;
    for (uint32_t i = 0; i < x->nnz; i++) {
        acc |= (uint64_t)x->idx[i] << nb;
        nb += width;
        while (nb >= 8) {
            *dst++ = (uint8_t)acc;
            acc >>= 8;
            nb -= 8;
        }
    }
    if (nb)
        *dst++ = (uint8_t)acc;
    if (!(flags & PACK_ONES)) {
        uint8_t *bm = dst;
        size_t nbm = (x->nnz + 7u) / 8u;
        memset(bm, 0, nbm);
        dst += nbm;
        for (uint32_t i = 0; i < x->nnz; i++) {
            if (!is_one(x->val[i])) {
                bm[i / 8] = (uint8_t)(bm[i / 8] | (1u << (i % 8)));
                memcpy(dst, &x->val[i], 4);
                dst += 4;
            }
        }
    }
    if (flags & PACK_DENSE) {
        uint16_t nd = (uint16_t)x->ndense;
        memcpy(dst, &nd, 2);
        memcpy(dst + 2, x->dense, (size_t)x->ndense * 4u);
    }
}

/* Returns the position just after the indices and values. */
static const uint8_t *read_sparse(const uint8_t *src, uint32_t nnz,
                                  uint8_t width, uint8_t flags, uint32_t *idx,
                                  float *val)
{
    uint64_t acc = 0;
    unsigned nb = 0;
    uint64_t mask = width >= 32 ? 0xffffffffu : ((1ull << width) - 1);
    for (uint32_t i = 0; i < nnz; i++) {
        while (nb < width) {
            acc |= (uint64_t)(*src++) << nb;
            nb += 8;
        }
        if (idx)
            idx[i] = (uint32_t)(acc & mask);
        acc >>= width;
        nb -= width;
    }
    if (flags & PACK_ONES) {
        if (val)
            for (uint32_t i = 0; i < nnz; i++)
                val[i] = 1.0f;
        return src;
    }
    const uint8_t *bm = src;
    src += (nnz + 7u) / 8u;
    for (uint32_t i = 0; i < nnz; i++) {
        if (bm[i / 8] & (1u << (i % 8))) {
            if (val)
                memcpy(&val[i], src, 4);
            src += 4;
        } else if (val) {
            val[i] = 1.0f;
        }
    }
    return src;
}

/* Bytes of the sparse part: indices, and the bitmap and values if any. */
static size_t sparse_len(const uint8_t *src, uint32_t nnz, uint8_t width,
                         uint8_t flags)
{
    size_t n = ((size_t)nnz * width + 7) / 8;
    if (flags & PACK_ONES)
        return n;
    size_t nb = ((size_t)nnz + 7) / 8, k = 0;
    for (size_t i = 0; i < nb; i++)
        k += (size_t)__builtin_popcount(src[n + i]);
    return n + nb + k * 4;
}

uint32_t pack_ndense(const uint8_t *src, uint32_t nnz, uint8_t width,
                     uint8_t flags)
{
    if (!(flags & PACK_DENSE))
        return 0;
    uint16_t nd;
    memcpy(&nd, src + sparse_len(src, nnz, width, flags), 2);
    return nd;
}

size_t pack_len(const uint8_t *src, uint32_t nnz, uint8_t width, uint8_t flags)
{
    size_t n = sparse_len(src, nnz, width, flags);
    if (flags & PACK_DENSE) {
        uint16_t nd;
        memcpy(&nd, src + n, 2);
        n += 2 + (size_t)nd * 4;
    }
    return n;
}

void pack_read(const uint8_t *src, uint32_t nnz, uint8_t width, uint8_t flags,
               uint32_t *idx, float *val, float *dense, uint32_t *ndense)
{
    const uint8_t *p = read_sparse(src, nnz, width, flags, idx, val);
    uint32_t cap = *ndense;
    *ndense = 0;
    if (!(flags & PACK_DENSE))
        return;
    uint16_t nd;
    memcpy(&nd, p, 2);
    uint32_t n = nd < cap ? nd : cap;
    memcpy(dense, p + 2, (size_t)n * 4u);
    *ndense = n;
}
