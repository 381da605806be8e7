/* SPDX-License-Identifier: Apache-2.0 */
/* Storage of the pending store: a size-class slab allocator with 32-bit
 * handles and the exact, order-preserving packed encoding of an event's
 * features. */
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_RANK_AVX2 1
#endif

#include "labeling/internal.h"
#include "labeling/labeling.h"

/* A malloc'd chunk: the header keeps the user chunk 16-byte aligned. */
typedef struct big_hdr {
    uint64_t size;
    uint64_t pad;
} big_hdr_t;

void slab_init(slab_t *s)
{
    memset(s, 0, sizeof(*s));
}

void slab_fini(slab_t *s)
{
    for (uint32_t i = 0; i < s->npages; i++)
        free(s->pages[i]);
    free(s->pages);
    for (uint32_t i = 0; i < s->nbig; i++)
        if (s->big[i])
            free((big_hdr_t *)s->big[i] - 1);
    free(s->big);
    free(s->big_free);
    memset(s, 0, sizeof(*s));
}

static void *big_alloc(slab_t *s, size_t sz, uint32_t *h)
{
    if (!s->nbig_free) {
        if (s->nbig == s->cap_big) {
            uint32_t nc = s->cap_big ? s->cap_big * 2 : 16;
            if (nc > SLAB_BIG - 1)
                return NULL;
            void **nb = realloc(s->big, nc * sizeof(*nb));
            if (!nb)
                return NULL;
            s->big = nb;
            uint32_t *nf = realloc(s->big_free, nc * sizeof(*nf));
            if (!nf)
                return NULL;
            s->big_free = nf;
            s->reserved +=
                (uint64_t)(nc - s->cap_big) * (sizeof(*nb) + sizeof(*nf));
            s->cap_big = nc;
        }
        s->big[s->nbig] = NULL;
        s->big_free[s->nbig_free++] = s->nbig++;
    }
    big_hdr_t *b = malloc(sizeof(*b) + sz);
    if (!b)
        return NULL;
    b->size = sz;
    uint32_t i = s->big_free[--s->nbig_free];
    s->big[i] = b + 1;
    s->in_use += sz;
    s->reserved += sz + sizeof(*b);
    *h = SLAB_BIG | i;
    return b + 1;
}

void *slab_alloc(slab_t *s, size_t n, uint32_t *h)
{
    size_t sz = slab_round(n ? n : 1);
    if (sz > SLAB_MAX)
        return big_alloc(s, sz, h);
    size_t c = sz / SLAB_STEP;
    if (s->free[c]) {
        *h = s->free[c] - 1;
        void *p = slab_ptr(s, *h);
        memcpy(&s->free[c], p, sizeof(uint32_t));
        s->in_use += sz;
        return p;
    }
    if (s->left[c] < sz) {
        if (s->npages == SLAB_MAX_PAGES)
            return NULL;
        if (s->npages == s->cap_pages) {
            uint32_t nc = s->cap_pages ? s->cap_pages * 2 : 16;
            uint8_t **np = realloc(s->pages, nc * sizeof(*np));
            if (!np)
                return NULL;
            s->pages = np;
            s->reserved += (uint64_t)(nc - s->cap_pages) * sizeof(*np);
            s->cap_pages = nc;
        }
        uint8_t *pg = malloc(SLAB_PAGE);
        if (!pg)
            return NULL;
        /* The tail of the previous page of this class is slack. */
        s->cur[c] = s->npages << SLAB_OFF_BITS;
        s->left[c] = SLAB_PAGE;
        s->pages[s->npages++] = pg;
        s->reserved += SLAB_PAGE;
    }
    *h = s->cur[c];
    s->cur[c] += (uint32_t)(sz / SLAB_STEP);
    s->left[c] -= (uint32_t)sz;
    s->in_use += sz;
    return slab_ptr(s, *h);
}

size_t slab_big_size(const slab_t *s, uint32_t h)
{
    return (size_t)((const big_hdr_t *)slab_ptr(s, h) - 1)->size;
}

void slab_free(slab_t *s, uint32_t h, size_t n)
{
    size_t sz = slab_round(n ? n : 1);
    s->in_use -= sz;
    if (h & SLAB_BIG) {
        uint32_t i = h & ~SLAB_BIG;
        big_hdr_t *b = (big_hdr_t *)s->big[i] - 1;
        s->reserved -= sz + sizeof(*b);
        free(b);
        s->big[i] = NULL;
        s->big_free[s->nbig_free++] = i;
        return;
    }
    size_t c = sz / SLAB_STEP;
    memcpy(slab_ptr(s, h), &s->free[c], sizeof(uint32_t));
    s->free[c] = h + 1;
}

/* ---- feature codec ------------------------------------------------------ */

static const uint32_t one_bits = 0x3f800000u; /* 1.0f */

static int is_one(float v)
{
    uint32_t b;
    memcpy(&b, &v, sizeof(b));
    return b == one_bits;
}

void pack_scratch_free(pack_scratch_t *sc)
{
    free(sc->keys);
    free(sc->tmp);
    free(sc->bits);
    memset(sc, 0, sizeof(*sc));
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void insertion_sort(uint64_t *k, uint32_t n)
{
    for (uint32_t i = 1; i < n; i++) {
        uint64_t v = k[i];
        uint32_t m = i;
        for (; m > 0 && k[m - 1] > v; m--)
            k[m] = k[m - 1];
        k[m] = v;
    }
}

/* Sorts the (index << 32 | position) keys: ascending index, ties by input
 * position, so the order is a pure function of the input. Hashed slots are
 * close to uniform: one counting pass on the top bits puts every key within
 * a bucket of ~1 key of its place, and an insertion pass finishes. orv is
 * the OR of all indices. */
static void sort_keys(pack_scratch_t *sc, uint32_t n, uint32_t orv)
{
    if (n <= 16) {
        insertion_sort(sc->keys, n);
        return;
    }
    if (n > 256) { /* bounds the insertion pass on skewed input */
        qsort(sc->keys, n, sizeof(uint64_t), cmp_u64);
        return;
    }
    unsigned b = 32u - (unsigned)__builtin_clz(n - 1); /* 2^b >= n */
    unsigned msb = 32u - (unsigned)__builtin_clz(orv | 1u);
    unsigned shift = 32u + (msb > b ? msb - b : 0u);
    uint32_t start[257];
    memset(start, 0, ((size_t)(1u << b) + 1) * sizeof(start[0]));
    const uint64_t *k = sc->keys;
    for (uint32_t i = 0; i < n; i++)
        start[(k[i] >> shift) + 1]++;
    for (uint32_t c = 1; c <= (1u << b); c++)
        start[c] += start[c - 1];
    uint64_t *t = sc->tmp;
    for (uint32_t i = 0; i < n; i++)
        t[start[k[i] >> shift]++] = k[i];
    insertion_sort(t, n);
    sc->tmp = sc->keys;
    sc->keys = t;
}

#if HAVE_RANK_AVX2
#define RANK_MAX 64u
/* Sorts n (17..RANK_MAX) keys without a branch on the data, on CPUs with
 * AVX2: with the input position in the low pb bits, the 32-bit key index
 * << pb | position is unique, and its rank is the number of keys below it,
 * counted for eight keys at once against each key. About 3x faster than
 * bucket + insertion sort for 40 keys, whose insertion pass mispredicts on
 * every bucket collision. Returns 0 when the indices do not fit in 32 - pb
 * bits. */
__attribute__((target("avx2"))) static int
rank_sort_avx2(uint64_t *out, const uint32_t *idx, uint32_t n, uint32_t orv)
{
    unsigned pb = 32u - (unsigned)__builtin_clz(n - 1); /* 2^pb >= n */
    if ((uint64_t)orv >> (32u - pb))
        return 0;
    /* Signed compares on key ^ 2^31; padding sorts above every key. */
    union {
        uint32_t u[RANK_MAX];
        __m256i v[RANK_MAX / 8];
    } k;
    __m256i bc[RANK_MAX];
    uint32_t nv = (n + 7) / 8, nj = (n + 3) / 4 * 4;
    for (uint32_t i = 0; i < n; i++)
        k.u[i] = (idx[i] << pb | i) ^ 0x80000000u;
    for (uint32_t i = n; i < nv * 8; i++)
        k.u[i] = 0x7fffffffu;
    for (uint32_t i = 0; i < nj; i++)
        bc[i] = _mm256_set1_epi32((int)k.u[i]);
    for (uint32_t c = 0; c < nv; c++) {
        __m256i kc = k.v[c], a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0,
                a3 = a0;
        for (uint32_t i = 0; i < nj; i += 4) {
            a0 = _mm256_sub_epi32(a0, _mm256_cmpgt_epi32(kc, bc[i]));
            a1 = _mm256_sub_epi32(a1, _mm256_cmpgt_epi32(kc, bc[i + 1]));
            a2 = _mm256_sub_epi32(a2, _mm256_cmpgt_epi32(kc, bc[i + 2]));
            a3 = _mm256_sub_epi32(a3, _mm256_cmpgt_epi32(kc, bc[i + 3]));
        }
        k.v[c] = _mm256_add_epi32(_mm256_add_epi32(a0, a1),
                                  _mm256_add_epi32(a2, a3));
    }
    for (uint32_t i = 0; i < n; i++)
        out[k.u[i]] = (uint64_t)idx[i] << 32 | i;
    return 1;
}

static int have_avx2(void)
{
    static int v = -1;
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx2") ? 1 : 0;
    }
    return v;
}
#endif

/* Appends one code of len <= 56 bits to acc (nb <= 7 bits in it). */
#define RICE_FLUSH(out, acc, nb)                                               \
    do {                                                                       \
        memcpy(out, &acc, 8);                                                  \
        out += nb >> 3;                                                        \
        acc >>= nb & ~7u;                                                      \
        nb &= 7;                                                               \
    } while (0)

/* Rice-codes the gaps, LSB first: the quotient in unary (ones, then a
 * zero), then the low `param` bits. Two short codes at a time go into a
 * 64-bit word that is stored whole (out has 8 bytes of slack): no branch
 * on the bit position. */
static void rice_write(uint8_t *out, const uint32_t *gaps, uint32_t n,
                       unsigned param)
{
    uint64_t acc = 0, mask = (UINT64_C(1) << param) - 1;
    unsigned nb = 0; /* bits in acc, <= 7 between steps */
    uint32_t i = 0;
    for (; i + 1 < n; i += 2) {
        uint32_t q0 = gaps[i] >> param, q1 = gaps[i + 1] >> param;
        unsigned l0 = q0 + 1 + param, l1 = q1 + 1 + param;
        if (l0 + l1 > 56)
            break; /* rare: long quotients, one at a time below */
        uint64_t c0 = ((UINT64_C(1) << q0) - 1) | (gaps[i] & mask) << (q0 + 1);
        uint64_t c1 = ((UINT64_C(1) << q1) - 1) | (gaps[i + 1] & mask)
                                                      << (q1 + 1);
        acc |= (c0 | c1 << l0) << nb;
        nb += l0 + l1;
        RICE_FLUSH(out, acc, nb);
    }
    for (; i < n; i++) {
        uint32_t q = gaps[i] >> param;
        uint64_t r = gaps[i] & mask;
        while (q + 1 + param > 56) {
            unsigned take = q > 32 ? 32 : q;
            acc |= ((UINT64_C(1) << take) - 1) << nb;
            nb += take;
            q -= take;
            RICE_FLUSH(out, acc, nb);
        }
        acc |= (((UINT64_C(1) << q) - 1) | r << (q + 1)) << nb;
        nb += q + 1 + param;
        RICE_FLUSH(out, acc, nb);
    }
    memcpy(out, &acc, 8);
}

size_t pack_size(const ld_features_t *x, pack_scratch_t *sc, uint8_t *param,
                 uint8_t *flags)
{
    uint32_t n = x->nnz;
    if (n > 65535u || x->ndense > 65535u)
        return 0;
    if ((n && !x->idx) || (x->ndense && !x->dense))
        return 0;
    if (n > sc->cap) {
        uint64_t *nk = realloc(sc->keys, n * sizeof(*nk));
        if (!nk)
            return 0;
        sc->keys = nk;
        uint64_t *nt = realloc(sc->tmp, n * sizeof(*nt));
        if (!nt)
            return 0;
        sc->tmp = nt;
        sc->cap = n;
    }
    const uint32_t *idx = x->idx;
    const float *val = x->val;
    uint32_t nother = 0, orv = 0, prev = 0, unsorted = 0;
    uint64_t *keys = sc->keys;
    if (val) {
        for (uint32_t i = 0; i < n; i++) {
            uint32_t ix = idx[i], vb;
            memcpy(&vb, &val[i], sizeof(vb));
            keys[i] = (uint64_t)ix << 32 | i;
            unsorted |= ix < prev;
            prev = ix;
            orv |= ix;
            nother += vb != one_bits;
        }
    } else {
        for (uint32_t i = 0; i < n; i++) {
            uint32_t ix = idx[i];
            keys[i] = (uint64_t)ix << 32 | i;
            unsorted |= ix < prev;
            prev = ix;
            orv |= ix;
        }
    }
#if HAVE_RANK_AVX2
    if (unsorted && n > 16 && n <= RANK_MAX && have_avx2() &&
        rank_sort_avx2(keys, idx, n, orv))
        unsorted = 0;
#endif
    if (unsorted)
        sort_keys(sc, n, orv);
    keys = sc->keys;
    /* Rice parameter near log2(mean gap), from the largest index; the best
     * of three neighbours, sized while the gaps are taken. */
    unsigned k = 0, best = 0;
    if (n) {
        uint64_t mean = ((keys[n - 1] >> 32) + 1) / n;
        if (mean > 1)
            k = 63u - (unsigned)__builtin_clzll(mean);
        if (k > 31)
            k = 31;
    }
    unsigned lo = k ? k - 1 : 0, hi = k + 1 > 31 ? 31 : k + 1;
    uint32_t *gaps = (uint32_t *)sc->tmp; /* free after the sort */
    uint64_t q0 = 0, q1 = 0, q2 = 0;
    prev = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t ix = (uint32_t)(keys[i] >> 32), g = ix - prev;
        gaps[i] = g;
        prev = ix;
        q0 += g >> lo;
        q1 += (g >> lo) >> 1;
        q2 += (g >> lo) >> 2;
    }
    size_t cand[3] = {(size_t)q0 + (size_t)n * (1 + lo),
                      (size_t)q1 + (size_t)n * (2 + lo),
                      (size_t)q2 + (size_t)n * (3 + lo)};
    size_t bits = SIZE_MAX;
    for (unsigned c = lo; c <= hi; c++) {
        if (cand[c - lo] < bits) {
            bits = cand[c - lo];
            best = c;
        }
    }
    size_t nrice = (bits + 7) / 8;
    if (nrice + 8 > sc->bits_cap) {
        uint8_t *nb = realloc(sc->bits, nrice + 8);
        if (!nb)
            return 0;
        sc->bits = nb;
        sc->bits_cap = nrice + 8;
    }
    rice_write(sc->bits, gaps, n, best);
    sc->bits_len = nrice;
    uint8_t f = nother ? 0 : (uint8_t)PACK_ONES;
    size_t len = nrice;
    if (nother)
        len += (n + 7u) / 8u + (size_t)nother * 4u;
    if (x->ndense) {
        f = (uint8_t)(f | PACK_DENSE);
        len += 2u + (size_t)x->ndense * 4u;
    }
    *param = (uint8_t)best;
    *flags = f;
    return len;
}

void pack_write(uint8_t *dst, const ld_features_t *x, const pack_scratch_t *sc,
                uint8_t flags)
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
    if (sc->bits_len)
        memcpy(dst, sc->bits, sc->bits_len);
}

uint32_t pack_ndense(const uint8_t *src, uint8_t flags)
{
    if (!(flags & PACK_DENSE))
        return 0;
    uint16_t nd;
    memcpy(&nd, src, 2);
    return nd;
}

/* Bit reader, LSB first. Bit nb of acc is bit 0 of *p: a refill loads the
 * next word there and counts its whole bytes (F. Giesen's "variant 4");
 * within 8 bytes of the end it goes byte by byte. */
typedef struct bitrd {
    uint64_t acc;
    unsigned nb;
    const uint8_t *p, *end;
} bitrd_t;

static inline void rd_refill(bitrd_t *r)
{
    if (r->end - r->p >= 8) {
        uint64_t w;
        memcpy(&w, r->p, 8);
        r->acc |= w << r->nb;
        r->p += (63 - r->nb) >> 3;
        r->nb |= 56;
    } else {
        while (r->nb <= 56 && r->p < r->end) {
            r->acc |= (uint64_t)*r->p++ << r->nb;
            r->nb += 8;
        }
    }
}

void pack_read(const uint8_t *src, size_t len, uint32_t nnz, uint8_t param,
               uint8_t flags, uint32_t *idx, float *val, float *dense,
               uint32_t *ndense)
{
    const uint8_t *end = src + len;
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
    bitrd_t r = {0, 0, src, end};
    uint32_t prev = 0;
    uint64_t mask = (UINT64_C(1) << param) - 1;
    uint32_t i = 0;
    /* Fast path: a full refill per code (>= 56 bits in acc) and codes that
     * fit in it, without a branch on the refill or the quotient loop. */
    while (i < nnz && r.end - r.p >= 8) {
        uint64_t w;
        memcpy(&w, r.p, 8);
        r.acc |= w << r.nb;
        r.p += (63 - r.nb) >> 3;
        r.nb |= 56;
        /* A quotient reaching bit 63 is longer than nb <= 63 anyway: the
         * top bit makes ctz defined without a test. */
        unsigned q = (unsigned)__builtin_ctzll(~r.acc | UINT64_C(1) << 63);
        if (q + 1 + param > r.nb)
            break; /* a long quotient: the general loop below */
        uint64_t a = r.acc >> q >> 1;
        prev += (q << param) | (uint32_t)(a & mask);
        idx[i++] = prev;
        r.acc = a >> param;
        r.nb -= q + 1 + param;
    }
    for (; i < nnz; i++) {
        if (r.nb <= 56)
            rd_refill(&r);
        uint32_t q = 0;
        for (;;) {
            /* ones at the bottom of acc are quotient bits */
            uint64_t inv = ~r.acc;
            unsigned ones = inv ? (unsigned)__builtin_ctzll(inv) : 64u;
            if (ones < r.nb) {
                q += ones;
                r.acc = (r.acc >> ones) >> 1;
                r.nb -= ones + 1;
                break;
            }
            q += r.nb;
            r.acc = 0;
            r.nb = 0;
            rd_refill(&r);
            if (!r.nb)
                break; /* truncated input: never for our own blobs */
        }
        if (r.nb < param)
            rd_refill(&r);
        uint32_t g = (q << param) | (uint32_t)(r.acc & mask);
        r.acc >>= param;
        r.nb -= param < r.nb ? param : r.nb;
        prev += g;
        idx[i] = prev;
    }
}

/* ---- the packer: packing outside the loop thread ------------------------ */

struct ld_packer {
    pack_scratch_t sc;
};

ld_packer_t *ld_packer_new(void)
{
    return calloc(1, sizeof(ld_packer_t));
}

void ld_packer_destroy(ld_packer_t *pk)
{
    if (!pk)
        return;
    pack_scratch_free(&pk->sc);
    free(pk);
}

ld_err_t ld_packer_pack(ld_packer_t *pk, const ld_features_t *x,
                        ld_packed_t *out)
{
    uint8_t param = 0, flags = PACK_ONES;
    size_t len = 0;
    if (x->nnz > 65535u || x->ndense > 65535u)
        return LD_ERR_INVAL;
    if (x->nnz || x->ndense) {
        /* 0: a bad x (add_event() says which) or no memory for scratch */
        if (!(len = pack_size(x, &pk->sc, &param, &flags)))
            return LD_ERR_INVAL;
    }
    if (len > out->cap) {
        uint8_t *g = realloc(out->data, len);
        if (!g)
            return LD_ERR_NOMEM;
        out->data = g;
        out->cap = len;
    }
    if (len)
        pack_write(out->data, x, &pk->sc, flags);
    out->len = len;
    out->nnz = x->nnz;
    out->param = param;
    out->flags = flags;
    return LD_OK;
}
