/* SPDX-License-Identifier: Apache-2.0 */
/* SHA-256 (FIPS 180-4) for checkpoint digests, in portable C with an x86
 * SHA-NI path picked at run time; both give the same digest. */
#include <string.h>

#include "trainer/checkpoint.h"
#include "trainer/internal.h"

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1,
    0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
    0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
    0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
    0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
    0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
    0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
    0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void blocks_c(uint32_t st[8], const uint8_t *p, size_t nblocks)
{
    while (nblocks--) {
        uint32_t w[64];
        for (int i = 0; i < 16; i++)
            w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
                   (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
        for (int i = 16; i < 64; i++) {
            uint32_t s0 =
                ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
            uint32_t s1 =
                ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16] + s0 + w[i - 7] + s1;
        }
        uint32_t a = st[0], b = st[1], c = st[2], d = st[3], e = st[4],
                 f = st[5], g = st[6], h = st[7];
        for (int i = 0; i < 64; i++) {
            uint32_t t1 = h + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) +
                          ((e & f) ^ (~e & g)) + K256[i] + w[i];
            uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) +
                          ((a & b) ^ (a & c) ^ (b & c));
            h = g;
            g = f;
            f = e;
            e = d + t1;
            d = c;
            c = b;
            b = a;
            a = t1 + t2;
        }
        st[0] += a;
        st[1] += b;
        st[2] += c;
        st[3] += d;
        st[4] += e;
        st[5] += f;
        st[6] += g;
        st[7] += h;
        p += 64;
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>

/* The Intel SHA extensions sequence (as in the Intel white paper and
 * Linux's sha256_ni_asm), four rounds per sha256rnds2 pair. */
__attribute__((target("sha,sse4.1"))) static void
blocks_ni(uint32_t st[8], const uint8_t *p, size_t nblocks)
{
    const __m128i shuf =
        _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
    __m128i tmp = _mm_loadu_si128((const __m128i *)(const void *)&st[0]);
    __m128i s1 = _mm_loadu_si128((const __m128i *)(const void *)&st[4]);
    tmp = _mm_shuffle_epi32(tmp, 0xB1);       /* CDAB */
    s1 = _mm_shuffle_epi32(s1, 0x1B);         /* EFGH */
    __m128i s0 = _mm_alignr_epi8(tmp, s1, 8); /* ABEF */
    s1 = _mm_blend_epi16(s1, tmp, 0xF0);      /* CDGH */

    while (nblocks--) {
        __m128i a0 = s0, c0 = s1, msg, m[4];
        for (int i = 0; i < 4; i++)
            m[i] = _mm_shuffle_epi8(
                _mm_loadu_si128((const __m128i *)(const void *)(p + 16 * i)),
                shuf);
        for (int r = 0; r < 16; r++) {
            __m128i cur = m[r & 3];
            msg = _mm_add_epi32(
                cur,
                _mm_loadu_si128((const __m128i *)(const void *)&K256[4 * r]));
            s1 = _mm_sha256rnds2_epu32(s1, s0, msg);
            msg = _mm_shuffle_epi32(msg, 0x0E);
            s0 = _mm_sha256rnds2_epu32(s0, s1, msg);
            if (r < 12) {
                /* W[r+4] for the next group: msg1, add alignr, msg2. */
                __m128i n0 = _mm_sha256msg1_epu32(m[r & 3], m[(r + 1) & 3]);
                n0 = _mm_add_epi32(
                    n0, _mm_alignr_epi8(m[(r + 3) & 3], m[(r + 2) & 3], 4));
                m[r & 3] = _mm_sha256msg2_epu32(n0, m[(r + 3) & 3]);
            }
        }
        s0 = _mm_add_epi32(s0, a0);
        s1 = _mm_add_epi32(s1, c0);
        p += 64;
    }
    tmp = _mm_shuffle_epi32(s0, 0x1B);   /* FEBA */
    s1 = _mm_shuffle_epi32(s1, 0xB1);    /* DCHG */
    s0 = _mm_blend_epi16(tmp, s1, 0xF0); /* DCBA */
    s1 = _mm_alignr_epi8(s1, tmp, 8);    /* ABEF -> HGFE */
    _mm_storeu_si128((__m128i *)(void *)&st[0], s0);
    _mm_storeu_si128((__m128i *)(void *)&st[4], s1);
}

static int have_ni = -1;

static void blocks(uint32_t st[8], const uint8_t *p, size_t n)
{
    if (have_ni < 0) {
        /* cpuid, not __builtin_cpu_supports("sha"): clang 14 does not know
         * that feature string. Leaf 1 ECX bit 19: SSE4.1; leaf 7 subleaf 0
         * EBX bit 29: SHA. */
        unsigned a, b, c, d;
        int sse41 = __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 19));
        int sha = 0;
        if (__get_cpuid_max(0, NULL) >= 7) {
            __cpuid_count(7, 0, a, b, c, d);
            sha = (b & (1u << 29)) != 0;
        }
        have_ni = sse41 && sha;
    }
    if (have_ni && !ld_sha256_force_portable)
        blocks_ni(st, p, n);
    else
        blocks_c(st, p, n);
}
#else
static void blocks(uint32_t st[8], const uint8_t *p, size_t n)
{
    blocks_c(st, p, n);
}
#endif

int ld_sha256_force_portable;

void ld_sha256_init(ld_sha256_t *c)
{
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372,
                                   0xa54ff53a, 0x510e527f, 0x9b05688c,
                                   0x1f83d9ab, 0x5be0cd19};
    memcpy(c->st, iv, sizeof(iv));
    c->len = 0;
    c->nbuf = 0;
}

void ld_sha256_update(ld_sha256_t *c, const void *data, size_t n)
{
    const uint8_t *p = data;
    if (n == 0) /* data may be NULL then (an empty protobuf bytes field) */
        return;
    c->len += n;
    if (c->nbuf) {
        size_t take = 64 - c->nbuf < n ? 64 - c->nbuf : n;
        memcpy(c->buf + c->nbuf, p, take);
        c->nbuf += take;
        p += take;
        n -= take;
        if (c->nbuf < 64)
            return;
        blocks(c->st, c->buf, 1);
        c->nbuf = 0;
    }
    if (n >= 64) {
        blocks(c->st, p, n / 64);
        p += n / 64 * 64;
        n %= 64;
    }
    if (n) {
        memcpy(c->buf, p, n);
        c->nbuf = n;
    }
}

void ld_sha256_final(ld_sha256_t *c, uint8_t out[32])
{
    uint64_t bits = c->len * 8;
    uint8_t pad[72] = {0x80};
    size_t padn = (c->nbuf < 56 ? 56 : 120) - c->nbuf;
    for (int i = 0; i < 8; i++)
        pad[padn + (size_t)i] = (uint8_t)(bits >> (56 - 8 * i));
    ld_sha256_update(c, pad, padn + 8);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(c->st[i] >> 24);
        out[4 * i + 1] = (uint8_t)(c->st[i] >> 16);
        out[4 * i + 2] = (uint8_t)(c->st[i] >> 8);
        out[4 * i + 3] = (uint8_t)c->st[i];
    }
}

void ld_ckpt_sha256(const void *data, size_t n, uint8_t out[32])
{
    ld_sha256_t c;
    ld_sha256_init(&c);
    ld_sha256_update(&c, data, n);
    ld_sha256_final(&c, out);
}

/* HMAC-SHA256 (RFC 2104): the manifest signature (publish/chunks.c), here
 * because it needs the streaming digest above. */
void ld_ckpt_hmac_sha256(const void *key, size_t key_len, const void *data,
                         size_t n, uint8_t out[32])
{
    uint8_t k[64] = {0}, pad[64], inner[32];
    if (key_len > sizeof(k))
        ld_ckpt_sha256(key, key_len, k);
    else if (key_len)
        memcpy(k, key, key_len);
    ld_sha256_t h;
    for (size_t i = 0; i < 64; i++)
        pad[i] = k[i] ^ 0x36;
    ld_sha256_init(&h);
    ld_sha256_update(&h, pad, 64);
    ld_sha256_update(&h, data, n);
    ld_sha256_final(&h, inner);
    for (size_t i = 0; i < 64; i++)
        pad[i] = k[i] ^ 0x5c;
    ld_sha256_init(&h);
    ld_sha256_update(&h, pad, 64);
    ld_sha256_update(&h, inner, 32);
    ld_sha256_final(&h, out);
}
