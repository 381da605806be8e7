/* SPDX-License-Identifier: Apache-2.0 */
/* MurmurHash3_x86_32, written from Appleby's public-domain reference with
 * explicit little-endian block reads (the body is inline in hash.h). */
#include "pipeline/hash.h"

uint32_t ld_hash_murmur3_32(const void *data, size_t len, uint32_t seed)
{
    return ld_hash_murmur3_32_inline(data, len, seed);
}
