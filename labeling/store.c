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

size_t slab_big_size(void *p)
{
    return (size_t)((big_hdr_t *)p - 1)->size;
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

/* Sorts (index, position) keys: ascending index, ties by input position,
 * so the order is a pure function of the input. */
static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Rice sizes for parameters k, k+1, k+2 in one pass. */
static void rice_bits3(const uint64_t *keys, uint32_t n, unsigned k,
                       size_t out[3])
{
    size_t q0 = 0, q1 = 0, q2 = 0;
    uint32_t prev = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t ix = (uint32_t)(keys[i] >> 32), g = ix - prev;
        q0 += g >> k;
        q1 += (uint64_t)g >> (k + 1);
        q2 += (uint64_t)g >> (k + 2);
        prev = ix;
    }
    out[0] = q0 + (size_t)n * (1 + k);
    out[1] = q1 + (size_t)n * (2 + k);
    out[2] = q2 + (size_t)n * (3 + k);
}

size_t pack_size(const ld_features_t *x, pack_scratch_t *sc, uint8_t *param,
                 uint8_t *flags)
{
    if (x->nnz > 65535u || x->ndense > 65535u)
        return 0;
    if ((x->nnz && !x->idx) || (x->ndense && !x->dense))
        return 0;
    if (x->nnz > sc->cap) {
        uint64_t *nk = realloc(sc->keys, x->nnz * sizeof(*nk));
        if (!nk)
            return 0;
        sc->keys = nk;
        sc->cap = x->nnz;
    }
    uint32_t nother = 0;
    for (uint32_t i = 0; i < x->nnz; i++) {
        sc->keys[i] = (uint64_t)x->idx[i] << 32 | i;
        if (x->val && !is_one(x->val[i]))
            nother++;
    }
    if (x->nnz <= 256) {
        /* Shell sort (Ciura gaps): keys are unique, so stability is moot. */
        static const uint32_t gaps[] = {57, 23, 10, 4, 1};
        for (size_t g = 0; g < sizeof(gaps) / sizeof(gaps[0]); g++) {
            uint32_t gap = gaps[g];
            for (uint32_t i = gap; i < x->nnz; i++) {
                uint64_t v = sc->keys[i];
                uint32_t k = i;
                for (; k >= gap && sc->keys[k - gap] > v; k -= gap)
                    sc->keys[k] = sc->keys[k - gap];
                sc->keys[k] = v;
            }
        }
    } else {
        qsort(sc->keys, x->nnz, sizeof(uint64_t), cmp_u64);
    }
    /* Rice parameter near log2(mean gap); the best of three neighbours. */
    unsigned k = 0, best = 0;
    if (x->nnz) {
        uint64_t span = (sc->keys[x->nnz - 1] >> 32) + 1;
        uint64_t mean = span / x->nnz;
        while (k < 31 && (mean >> (k + 1)) != 0)
            k++;
    }
    unsigned lo = k ? k - 1 : 0, hi = k + 1 > 31 ? 31 : k + 1;
    size_t cand[3];
    rice_bits3(sc->keys, x->nnz, lo, cand);
    size_t bits = SIZE_MAX;
    for (unsigned c = lo; c <= hi; c++) {
        if (cand[c - lo] < bits) {
            bits = cand[c - lo];
            best = c;
        }
    }
    uint8_t f = nother ? 0 : (uint8_t)PACK_ONES;
    size_t n = (bits + 7) / 8;
    if (nother)
        n += (x->nnz + 7u) / 8u + (size_t)nother * 4u;
    if (x->ndense) {
        f = (uint8_t)(f | PACK_DENSE);
        n += 2u + (size_t)x->ndense * 4u;
    }
    *param = (uint8_t)best;
    *flags = f;
    return n;
}

void pack_write(uint8_t *dst, const ld_features_t *x, const pack_scratch_t *sc,
                uint8_t param, uint8_t flags)
{
    if (flags & PACK_DENSE) {
        uint16_t nd = (uint16_t)x->ndense;
        memcpy(dst, &nd, 2);
        memcpy(dst + 2, x->dense, (size_t)x->ndense * 4u);
        dst += 2 + (size_t)x->ndense * 4u;
    }
    if (!(flags & PACK_ONES)) {
        uint8_t *bm = dst;
        size_t nbm = (x->nnz + 7u) / 8u;
        memset(bm, 0, nbm);
        dst += nbm;
        for (uint32_t i = 0; i < x->nnz; i++) {
            uint32_t pos = (uint32_t)sc->keys[i];
            if (!is_one(x->val[pos])) {
                bm[i / 8] = (uint8_t)(bm[i / 8] | (1u << (i % 8)));
                memcpy(dst, &x->val[pos], 4);
                dst += 4;
            }
        }
    }
    /* Rice-coded gaps, LSB first: quotient in unary (ones, then a zero),
     * then the low `param` bits. */
    uint64_t acc = 0;
    unsigned nb = 0;
    uint32_t prev = 0;
    for (uint32_t i = 0; i < x->nnz; i++) {
        uint32_t ix = (uint32_t)(sc->keys[i] >> 32), g = ix - prev;
        prev = ix;
        uint32_t q = g >> param;
        while (q) {
            unsigned take = q > 32 ? 32 : q;
            acc |= ((1ull << take) - 1) << nb;
            nb += take;
            q -= take;
            while (nb >= 8) {
                *dst++ = (uint8_t)acc;
                acc >>= 8;
                nb -= 8;
            }
        }
        nb += 1; /* the terminating zero */
        acc |= (uint64_t)(g & ((1ull << param) - 1)) << nb;
        nb += param;
        while (nb >= 8) {
            *dst++ = (uint8_t)acc;
            acc >>= 8;
            nb -= 8;
        }
    }
    if (nb)
        *dst = (uint8_t)acc;
}

uint32_t pack_ndense(const uint8_t *src, uint8_t flags)
{
    if (!(flags & PACK_DENSE))
        return 0;
    uint16_t nd;
    memcpy(&nd, src, 2);
    return nd;
}

void pack_read(const uint8_t *src, uint32_t nnz, uint8_t param, uint8_t flags,
               uint32_t *idx, float *val, float *dense, uint32_t *ndense)
{
    uint32_t cap = *ndense;
    *ndense = 0;
    if (flags & PACK_DENSE) {
        uint16_t nd;
        memcpy(&nd, src, 2);
        uint32_t n = nd < cap ? nd : cap;
        memcpy(dense, src + 2, (size_t)n * 4u);
        *ndense = n;
        src += 2 + (size_t)nd * 4u;
    }
    if (flags & PACK_ONES) {
        for (uint32_t i = 0; i < nnz; i++)
            val[i] = 1.0f;
    } else {
        const uint8_t *bm = src;
        src += (nnz + 7u) / 8u;
        for (uint32_t i = 0; i < nnz; i++) {
            if (bm[i / 8] & (1u << (i % 8))) {
                memcpy(&val[i], src, 4);
                src += 4;
            } else {
                val[i] = 1.0f;
            }
        }
    }
    uint64_t acc = 0;
    unsigned nb = 0;
    uint32_t prev = 0;
    uint64_t mask = (1ull << param) - 1;
    for (uint32_t i = 0; i < nnz; i++) {
        uint32_t q = 0;
        for (;;) {
            if (nb == 0) {
                acc = *src++;
                nb = 8;
            }
            /* ones at the bottom of acc are quotient bits */
            unsigned ones = (unsigned)__builtin_ctzll(~acc);
            if (ones < nb) {
                q += ones;
                acc >>= ones + 1;
                nb -= ones + 1;
                break;
            }
            q += nb;
            nb = 0;
        }
        while (nb < param) {
            acc |= (uint64_t)(*src++) << nb;
            nb += 8;
        }
        uint32_t g = (q << param) | (uint32_t)(acc & mask);
        acc >>= param;
        nb -= param;
        prev += g;
        idx[i] = prev;
    }
}
