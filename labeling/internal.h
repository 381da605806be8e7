/* SPDX-License-Identifier: Apache-2.0 */
/* Internals of labeling/ shared by its sources and its unit test: the slab
 * allocator and the exact, compact feature codec of the pending store. */
#ifndef LD_LABELING_INTERNAL_H
#define LD_LABELING_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "pipeline/record.h"

/* ---- Slab: size classes in 8-byte steps up to SLAB_MAX, 64 KiB pages, one
 * free list per class; larger chunks come from malloc. Chunks are named by
 * 32-bit handles so that the hash index and the timer heaps hold 4 bytes per
 * entry instead of a pointer: page << 13 | offset / 8, or SLAB_BIG | i for
 * the i-th malloc'd chunk. ---- */
#define SLAB_STEP      8u
#define SLAB_MAX       1024u
#define SLAB_PAGE      65536u
#define SLAB_OFF_BITS  13u /* log2(SLAB_PAGE / SLAB_STEP) */
#define SLAB_BIG       0x80000000u
#define SLAB_MAX_PAGES (SLAB_BIG >> SLAB_OFF_BITS) /* 16 GiB of pages */
#define SLAB_NCLS      (SLAB_MAX / SLAB_STEP)

typedef struct slab {
    uint32_t free[SLAB_NCLS + 1]; /* handle of the first free chunk + 1 */
    uint32_t cur[SLAB_NCLS + 1];  /* handle of the next fresh chunk */
    uint32_t left[SLAB_NCLS + 1]; /* bytes left after cur in its page */
    uint8_t **pages;
    uint32_t npages, cap_pages;
    void **big;         /* user pointers of malloc'd chunks, NULL if free */
    uint32_t *big_free; /* stack of free indices into big */
    uint32_t nbig, cap_big, nbig_free;
    uint64_t in_use;   /* bytes of chunks handed out (rounded sizes) */
    uint64_t reserved; /* bytes of pages, big chunks and the arrays above */
} slab_t;

/* Rounded size the slab hands out for n bytes. */
static inline size_t slab_round(size_t n)
{
    return (n + SLAB_STEP - 1) / SLAB_STEP * SLAB_STEP;
}

/* The chunk of handle h. */
static inline void *slab_ptr(const slab_t *s, uint32_t h)
{
    if (h & SLAB_BIG)
        return s->big[h & ~SLAB_BIG];
    return s->pages[h >> SLAB_OFF_BITS] +
           (size_t)(h & ((1u << SLAB_OFF_BITS) - 1)) * SLAB_STEP;
}

void slab_init(slab_t *s);
void slab_fini(slab_t *s);
/* Returns an 8-byte aligned chunk of at least n bytes and its handle in *h,
 * or NULL. */
void *slab_alloc(slab_t *s, size_t n, uint32_t *h);
/* Size a big (> SLAB_MAX) chunk was allocated with. */
size_t slab_big_size(const slab_t *s, uint32_t h);
/* Frees the chunk of handle h, allocated with the same n. */
void slab_free(slab_t *s, uint32_t h, size_t n);

/* ---- Feature codec. Exact as a multiset and deterministic in order: the
 * (index, value) pairs are sorted by index (ties keep input order), the
 * index gaps Rice-coded; values as a bitmap of "not exactly 1.0f" plus the
 * raw float32 of those; the dense block as raw float32. Layout: [u16
 * ndense, dense] [bitmap, values] [Rice bits]. ---- */
#define PACK_ONES  0x01u /* every sparse value is exactly 1.0f */
#define PACK_DENSE 0x02u /* a u16 ndense prefix and the dense block */

/* Space reused between calls; free its arrays with pack_scratch_free(). */
typedef struct pack_scratch {
    uint64_t *keys, *tmp; /* (index << 32 | input position), sorted */
    uint32_t cap;
    uint8_t *bits; /* the Rice code of the last pack_size(), 8 B slack */
    size_t bits_cap, bits_len;
} pack_scratch_t;

void pack_scratch_free(pack_scratch_t *sc);

/* Checks x (nnz and ndense <= 65535, arrays present), sorts it into sc,
 * Rice-codes the indices into sc and returns the packed size, setting
 * *param (Rice parameter) and *flags; returns 0 when x cannot be packed. */
size_t pack_size(const ld_features_t *x, pack_scratch_t *sc, uint8_t *param,
                 uint8_t *flags);
/* Writes x into dst (pack_size() bytes) from what pack_size() left in sc. */
void pack_write(uint8_t *dst, const ld_features_t *x, const pack_scratch_t *sc,
                uint8_t flags);
/* Reads nnz sorted indices/values into idx/val and the dense block into
 * dense (capacity given by *ndense on input, count on output) from the len
 * bytes at src (the packed size or more: nothing past src + len is read). */
void pack_read(const uint8_t *src, size_t len, uint32_t nnz, uint8_t param,
               uint8_t flags, uint32_t *idx, float *val, float *dense,
               uint32_t *ndense);
/* Number of dense floats of a packed blob (0 without PACK_DENSE). */
uint32_t pack_ndense(const uint8_t *src, uint8_t flags);

/* Test hook: records per resume block (default 256). Smaller blocks make
 * resume offsets reach back exactly to the oldest needed record. */
struct ld_joiner;
void joiner_set_block_records(struct ld_joiner *j, uint32_t n);

#endif /* LD_LABELING_INTERNAL_H */
