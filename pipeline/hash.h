/* SPDX-License-Identifier: Apache-2.0 */
/* The feature hash: MurmurHash3_x86_32, seeded, byte-order independent. */
#ifndef LD_PIPELINE_HASH_H
#define LD_PIPELINE_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Name of the hash, as recorded in ModelSpec.hash_function. */
#define LD_HASH_NAME "murmur3_x86_32"

/* MurmurHash3_x86_32 (Austin Appleby, public domain) of len bytes at data
 * (borrowed) with seed. Blocks are read as little-endian 32-bit words on every
 * host, so a slot computed on x86 is the slot computed on a big-endian
 * machine. len may be 0 (data may then be NULL). */
uint32_t ld_hash_murmur3_32(const void *data, size_t len, uint32_t seed);

/* The same function, inline, for the per-feature loops of pipeline/. */
static inline uint32_t ld_hash_rotl32(uint32_t x, int r)
{
    return (x << r) | (x >> (32 - r));
}

/* The three steps of murmur3_x86_32, for callers that hash 4-byte blocks
 * they mixed in advance (crosses, pipeline/fmap.c): a block's own mixing,
 * the state after one more mixed block, and the finalisation after len
 * bytes. ld_hash_murmur3_32_inline() is made of them. */
static inline uint32_t ld_hash_block_mix(uint32_t k)
{
    return ld_hash_rotl32(k * 0xcc9e2d51u, 15) * 0x1b873593u;
}

static inline uint32_t ld_hash_block_round(uint32_t h, uint32_t km)
{
    return ld_hash_rotl32(h ^ km, 13) * 5 + 0xe6546b64u;
}

static inline uint32_t ld_hash_fmix(uint32_t h, uint32_t len)
{
    h ^= len;
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

static inline uint32_t ld_hash_murmur3_32_inline(const void *data, size_t len,
                                                 uint32_t seed)
{
    const uint8_t *p = data;
    const size_t nblocks = len / 4;
    const uint32_t c1 = 0xcc9e2d51u, c2 = 0x1b873593u;
    uint32_t h = seed;

    for (size_t i = 0; i < nblocks; i++, p += 4) {
        uint32_t k;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        memcpy(&k, p, 4);
#else
        k = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
            (uint32_t)p[3] << 24;
#endif
        h = ld_hash_block_round(h, ld_hash_block_mix(k));
    }

    uint32_t k = 0;
    switch (len & 3) {
    case 3:
        k ^= (uint32_t)p[2] << 16;
        /* fall through */
    case 2:
        k ^= (uint32_t)p[1] << 8;
        /* fall through */
    case 1:
        k ^= p[0];
        k *= c1;
        k = ld_hash_rotl32(k, 15);
        k *= c2;
        h ^= k;
    }
    return ld_hash_fmix(h, (uint32_t)len);
}

/*
 * How learnd turns a feature into a slot (docs/ARCHITECTURE.md; a scorer in
 * another language reproduces this to find a weight):
 *
 *   ns_seed    = murmur3(namespace, hash_seed)
 *   field_seed = murmur3(field name, ns_seed)
 *   h(feature) = murmur3(text(value), field_seed)
 *   slot       = h & (2^hash_bits - 1),   value 1.0
 *
 * text(value) is the value's canonical text, the same for every wire format:
 * strings and enum symbols as their UTF-8 bytes; integers (and doubles that
 * hold an integer below 2^53) in decimal ("12345", "-7"); other doubles as
 * printf "%.17g"; booleans "true"/"false". Each element of a string array
 * (tags) is its own feature of the field.
 *
 * A cross of namespaces A x B (x C ...) adds one feature per combination of
 * their features: murmur3 of the concatenated 32-bit hashes h(a), h(b), ...
 * as little-endian bytes, seeded with hash_seed; slot and value as above.
 */

#endif /* LD_PIPELINE_HASH_H */
