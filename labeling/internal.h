/* SPDX-License-Identifier: Apache-2.0 */
/* Internals of labeling/ shared by its sources and its unit test: the slab
 * allocator and the exact, compact feature codec of the pending store. */
#ifndef LD_LABELING_INTERNAL_H
#define LD_LABELING_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "pipeline/record.h"

/* ---- Slab: size classes in 8-byte steps up to SLAB_MAX, 64 KiB pages, one
 * free list per class; larger chunks come from malloc. ---- */
#define SLAB_STEP 8u
#define SLAB_MAX  1024u
#define SLAB_PAGE 65536u
#define SLAB_NCLS (SLAB_MAX / SLAB_STEP)

typedef struct big_hdr {
    struct big_hdr *prev, *next;
    uint64_t pad; /* keeps the user chunk 16-byte aligned */
    uint64_t size;
} big_hdr_t;

typedef struct slab {
    void *free[SLAB_NCLS + 1];
    uint8_t *cur[SLAB_NCLS + 1];
    size_t left[SLAB_NCLS + 1];
    void **pages;
    size_t npages, cap_pages;
    big_hdr_t big;     /* list head of malloc'd chunks */
    uint64_t in_use;   /* bytes of chunks handed out (rounded sizes) */
    uint64_t reserved; /* bytes of pages and big chunks */
} slab_t;

/* Rounded size the slab hands out for n bytes. */
static inline size_t slab_round(size_t n)
{
    return (n + SLAB_STEP - 1) / SLAB_STEP * SLAB_STEP;
}

void slab_init(slab_t *s);
void slab_fini(slab_t *s);
/* Returns an 8-byte aligned chunk of at least n bytes, or NULL. */
void *slab_alloc(slab_t *s, size_t n);
/* Size a big (> SLAB_MAX) chunk was allocated with. */
size_t slab_big_size(void *p);
/* Frees a chunk of the same n it was allocated with. */
void slab_free(slab_t *s, void *p, size_t n);

/* ---- Feature codec. Exact as a multiset and deterministic in order: the
 * (index, value) pairs are sorted by index (ties keep input order), the
 * index gaps Rice-coded; values as a bitmap of "not exactly 1.0f" plus the
 * raw float32 of those; the dense block as raw float32. Layout: [u16
 * ndense, dense] [bitmap, values] [Rice bits]. ---- */
#define PACK_ONES  0x01u /* every sparse value is exactly 1.0f */
#define PACK_DENSE 0x02u /* a u16 ndense prefix and the dense block */

/* Sort space reused between calls; free keys with free(). */
typedef struct pack_scratch {
    uint64_t *keys;
    uint32_t cap;
} pack_scratch_t;

/* Checks x (nnz and ndense <= 65535, arrays present), sorts it into sc and
 * returns the packed size, setting *param (Rice parameter) and *flags;
 * returns 0 when x cannot be packed. */
size_t pack_size(const ld_features_t *x, pack_scratch_t *sc, uint8_t *param,
                 uint8_t *flags);
/* Writes x into dst (pack_size() bytes) in the order pack_size() left in
 * sc. */
void pack_write(uint8_t *dst, const ld_features_t *x, const pack_scratch_t *sc,
                uint8_t param, uint8_t flags);
/* Reads nnz sorted indices/values into idx/val and the dense block into
 * dense (capacity given by *ndense on input, count on output). */
void pack_read(const uint8_t *src, uint32_t nnz, uint8_t param, uint8_t flags,
               uint32_t *idx, float *val, float *dense, uint32_t *ndense);
/* Number of dense floats of a packed blob (0 without PACK_DENSE). */
uint32_t pack_ndense(const uint8_t *src, uint8_t flags);

/* Test hook: records per resume block (default 256). Smaller blocks make
 * resume offsets reach back exactly to the oldest needed record. */
struct ld_joiner;
void joiner_set_block_records(struct ld_joiner *j, uint32_t n);

#endif /* LD_LABELING_INTERNAL_H */
