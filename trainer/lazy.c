/* SPDX-License-Identifier: Apache-2.0 */
/* The fused lazy FTRL pass (FTRL with one output: logistic, linear): each
 * chunk of LAZY_CHUNK examples gathers its slots' batch-start weights,
 * finishes its scores and steps the slots while they are cached; SSE and,
 * chosen at run time, AVX2 loops that are bit for bit the scalar steps.
 * trainer/core.h has the slot layout and why. */
#include "trainer/core.h"

int ld_trainer_force_sse;
uint32_t ld_trainer_tick_max = LD_TRAINER_TICK_MAX;

/* The chunks of the batch being trained are tags c0 .. cur. */
typedef struct ticks {
    uint32_t c0, cur;
} ticks_t;

/* One FTRL step on lazy slot c for non-zero f with gradient g: opt_step's
 * FTRL case, with the weight (and sqrt(n)) from the gather unless this
 * chunk has stepped the slot since. */
static inline void lazy_step(const ld_trainer_t *t, ticks_t tk, float *c,
                             size_t f)
{
    const hp_t *h = &t->lz;
    const float g = t->b_g[f];
    uint32_t tag = tag_of(c);
    float n = c[1], sq0 = t->b_sq[f], w = t->b_wn[f];
    if (tag == tk.cur) {
        sq0 = sqrtf(n);
        w = ftrl_w(c[0], sq0, h);
    }
    float n2 = n + g * g, sq = sqrtf(n2);
    c[0] = c[0] + g - (sq - sq0) * h->inv_alpha * w;
    c[1] = n2;
    if ((int32_t)tag < (int32_t)tk.c0)
        c[2] = t->b_wb[f]; /* first step in this batch */
    memcpy(c + 3, &tk.cur, sizeof(tk.cur));
}

/* While a snapshot is pending, the first step on a slot copies its whole
 * block (copy_block), and the block's other lines are cold: fetched there,
 * one after another, they made the first batch after a snapshot began
 * ~0.5 ms slower. This requests them a chunk ahead, like the slots. */
static void prefetch_blocks(const ld_trainer_t *t, const uint32_t *idx)
{
    const size_t per = ((size_t)1 << t->bshift) * LAZY_SS;
    for (size_t j = 0; j < 4; j++) {
        size_t b = idx[j] >> t->bshift;
        if (atomic_load_explicit(&t->pend[b], memory_order_relaxed))
            for (size_t o = 0; o < per; o += 16)
                PREFETCH_R(t->sp + b * per + o);
    }
}

#ifdef LAZY_AVX2
/* The lazy pass eight slots at a time where the CPU has AVX2 (chosen at
 * run time: the build targets baseline x86-64). The square root and the
 * division dominate the SSE loops, and here a 256-bit one costs what a
 * 128-bit one does. Every lane does the SSE lane's operations (no FMA), so
 * the state is the same bit for bit whichever path ran. */
#define AVX2 __attribute__((target("avx2")))

/* r_j holds slot j in its low half and slot j + 4 in its high half; within
 * each half this is _MM_TRANSPOSE4_PS, so the rows become z, n, wb, tag of
 * slots 0..7 in lane order. It is its own inverse. */
static inline AVX2 void transpose8(__m256 *r0, __m256 *r1, __m256 *r2,
                                   __m256 *r3)
{
    __m256 t0 = _mm256_unpacklo_ps(*r0, *r1), t1 = _mm256_unpacklo_ps(*r2, *r3),
           t2 = _mm256_unpackhi_ps(*r0, *r1), t3 = _mm256_unpackhi_ps(*r2, *r3);
    *r0 = _mm256_shuffle_ps(t0, t1, 0x44);
    *r1 = _mm256_shuffle_ps(t0, t1, 0xee);
    *r2 = _mm256_shuffle_ps(t2, t3, 0x44);
    *r3 = _mm256_shuffle_ps(t2, t3, 0xee);
}

static inline AVX2 __m256 load2(const float *lo, const float *hi)
{
    return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_load_ps(lo)),
                                _mm_load_ps(hi), 1);
}

static inline AVX2 void store2(float *lo, float *hi, __m256 v)
{
    _mm_store_ps(lo, _mm256_castps256_ps128(v));
    _mm_store_ps(hi, _mm256_extractf128_ps(v, 1));
}

static inline AVX2 __m256 select8(__m256 mask, __m256 a, __m256 b)
{
    return _mm256_blendv_ps(b, a, mask);
}

/* ftrl_w4, eight lanes. */
static inline AVX2 __m256 ftrl_w8(__m256 z, __m256 sq, const hp_t *h)
{
    const __m256 neg = _mm256_set1_ps(-0.0f), l1 = _mm256_set1_ps(h->l1);
    __m256 keep = _mm256_cmp_ps(_mm256_andnot_ps(neg, z), l1, _CMP_NLE_UQ);
    __m256 sl1 = _mm256_or_ps(_mm256_and_ps(neg, z), l1);
    __m256 num = _mm256_xor_ps(_mm256_sub_ps(z, sl1), neg);
    __m256 den =
        _mm256_add_ps(_mm256_mul_ps(_mm256_add_ps(_mm256_set1_ps(h->beta), sq),
                                    _mm256_set1_ps(h->inv_alpha)),
                      _mm256_set1_ps(h->l2));
    return _mm256_and_ps(keep, _mm256_div_ps(num, den));
}

/* lazy_gather's loop, eight at a time; returns where it stopped. */
static AVX2 size_t lazy_gather8(ld_trainer_t *t, ticks_t tk, size_t f,
                                size_t f1)
{
    const float *sp = t->sp;
    const uint32_t *bi = t->b_idx;
    const __m256i before = _mm256_set1_epi32((int)tk.c0 - 1);
    for (; f + 8 <= f1; f += 8) {
        for (size_t j = 0; j < 8; j++)
            PREFETCH_W(sp + (size_t)bi[f + PF_LAZY + j] * LAZY_SS);
        const float *c[8];
        for (size_t j = 0; j < 8; j++)
            c[j] = sp + (size_t)bi[f + j] * LAZY_SS;
        __m256 z = load2(c[0], c[4]), n = load2(c[1], c[5]),
               b = load2(c[2], c[6]), tg = load2(c[3], c[7]);
        transpose8(&z, &n, &b, &tg);
        __m256 mine = _mm256_castsi256_ps(
            _mm256_cmpgt_epi32(_mm256_castps_si256(tg), before));
        __m256 s0 = _mm256_sqrt_ps(n), w = ftrl_w8(z, s0, &t->lz);
        _mm256_storeu_ps(t->b_wb + f, select8(mine, b, w));
        _mm256_storeu_ps(t->b_wn + f, w);
        _mm256_storeu_ps(t->b_sq + f, s0);
    }
    return f;
}

/* lazy_update's loop, eight at a time; returns where it stopped. */
static AVX2 size_t lazy_update8(ld_trainer_t *t, ticks_t tk, size_t f,
                                size_t f1, size_t ahead, size_t lim)
{
    float *sp = t->sp;
    const uint32_t *bi = t->b_idx;
    const __m256i vcur = _mm256_set1_epi32((int)tk.cur),
                  before = _mm256_set1_epi32((int)tk.c0 - 1);
    const __m256 ia = _mm256_set1_ps(t->lz.inv_alpha);
    /* Rotations by 1..4 lanes pair every lane with every other. */
    const __m256i rot1 = _mm256_setr_epi32(1, 2, 3, 4, 5, 6, 7, 0),
                  rot2 = _mm256_setr_epi32(2, 3, 4, 5, 6, 7, 0, 1),
                  rot3 = _mm256_setr_epi32(3, 4, 5, 6, 7, 0, 1, 2),
                  rot4 = _mm256_setr_epi32(4, 5, 6, 7, 0, 1, 2, 3);
    for (; f + 8 <= f1; f += 8) {
        if (f < lim) {
            for (size_t j = 0; j < 8; j++)
                PREFETCH_W(sp + (size_t)bi[f + ahead + j] * LAZY_SS);
            if (__builtin_expect(t->pend != NULL, 0)) {
                prefetch_blocks(t, bi + f + ahead);
                prefetch_blocks(t, bi + f + ahead + 4);
            }
        }
        if (__builtin_expect(t->pend != NULL, 0))
            for (size_t j = 0; j < 8; j++)
                cow(t, bi[f + j]);
        __m256i vi = _mm256_loadu_si256((const __m256i *)(bi + f));
        __m256i dup = _mm256_or_si256(
            _mm256_or_si256(
                _mm256_cmpeq_epi32(vi, _mm256_permutevar8x32_epi32(vi, rot1)),
                _mm256_cmpeq_epi32(vi, _mm256_permutevar8x32_epi32(vi, rot2))),
            _mm256_or_si256(
                _mm256_cmpeq_epi32(vi, _mm256_permutevar8x32_epi32(vi, rot3)),
                _mm256_cmpeq_epi32(vi, _mm256_permutevar8x32_epi32(vi, rot4))));
        if (__builtin_expect(_mm256_movemask_epi8(dup) != 0, 0)) {
            for (size_t j = f; j < f + 8; j++)
                lazy_step(t, tk, sp + (size_t)bi[j] * LAZY_SS, j);
            continue;
        }
        float *c[8];
        for (size_t j = 0; j < 8; j++)
            c[j] = sp + (size_t)bi[f + j] * LAZY_SS;
        __m256 z = load2(c[0], c[4]), n = load2(c[1], c[5]),
               b = load2(c[2], c[6]), tg = load2(c[3], c[7]);
        transpose8(&z, &n, &b, &tg);
        __m256i ti = _mm256_castps_si256(tg);
        __m256 sq0 = _mm256_loadu_ps(t->b_sq + f),
               w = _mm256_loadu_ps(t->b_wn + f);
        __m256 stale = _mm256_castsi256_ps(_mm256_cmpeq_epi32(ti, vcur));
        if (__builtin_expect(_mm256_movemask_ps(stale) != 0, 0)) {
            __m256 s1 = _mm256_sqrt_ps(n);
            sq0 = select8(stale, s1, sq0);
            w = select8(stale, ftrl_w8(z, s1, &t->lz), w);
        }
        __m256 gg = _mm256_loadu_ps(t->b_g + f);
        n = _mm256_add_ps(n, _mm256_mul_ps(gg, gg));
        __m256 sig = _mm256_mul_ps(_mm256_sub_ps(_mm256_sqrt_ps(n), sq0), ia);
        z = _mm256_sub_ps(_mm256_add_ps(z, gg), _mm256_mul_ps(sig, w));
        __m256 mine = _mm256_castsi256_ps(_mm256_cmpgt_epi32(ti, before));
        b = select8(mine, b, _mm256_loadu_ps(t->b_wb + f));
        tg = _mm256_castsi256_ps(vcur);
        transpose8(&z, &n, &b, &tg);
        store2(c[0], c[4], z);
        store2(c[1], c[5], n);
        store2(c[2], c[6], b);
        store2(c[3], c[7], tg);
    }
    return f;
}
#endif

/* For non-zeros [f0, f1): the batch-start weight into b_wb, and the weight
 * and sqrt(n) as they are now into b_wn and b_sq. Prefetches the slots
 * PF_LAZY non-zeros ahead (into the next chunk: its lines arrive while
 * this chunk updates). */
static void lazy_gather(ld_trainer_t *t, ticks_t tk, size_t f0, size_t f1)
{
    const float *sp = t->sp;
    const uint32_t *bi = t->b_idx;
    float *wb = t->b_wb, *wn = t->b_wn, *sq = t->b_sq;
    size_t f = f0;
#ifdef LAZY_AVX2
    if (t->avx2 && !ld_trainer_force_sse)
        f = lazy_gather8(t, tk, f, f1);
#endif
#ifdef __SSE2__
    const __m128i before = _mm_set1_epi32((int)tk.c0 - 1);
    for (; f + 4 <= f1; f += 4) {
        for (size_t j = 0; j < 4; j++)
            PREFETCH_W(sp + (size_t)bi[f + PF_LAZY + j] * LAZY_SS);
        __m128 z = _mm_load_ps(sp + (size_t)bi[f] * LAZY_SS),
               n = _mm_load_ps(sp + (size_t)bi[f + 1] * LAZY_SS),
               b = _mm_load_ps(sp + (size_t)bi[f + 2] * LAZY_SS),
               tg = _mm_load_ps(sp + (size_t)bi[f + 3] * LAZY_SS);
        _MM_TRANSPOSE4_PS(z, n, b, tg);
        __m128 mine =
            _mm_castsi128_ps(_mm_cmpgt_epi32(_mm_castps_si128(tg), before));
        __m128 s0 = _mm_sqrt_ps(n), w = ftrl_w4(z, s0, &t->lz);
        _mm_storeu_ps(wb + f, select4(mine, b, w));
        _mm_storeu_ps(wn + f, w);
        _mm_storeu_ps(sq + f, s0);
    }
#endif
    for (; f < f1; f++) {
        PREFETCH_W(sp + (size_t)bi[f + PF_LAZY] * LAZY_SS);
        const float *c = sp + (size_t)bi[f] * LAZY_SS;
        sq[f] = sqrtf(c[1]);
        wn[f] = ftrl_w(c[0], sq[f], &t->lz);
        wb[f] = (int32_t)tag_of(c) >= (int32_t)tk.c0 ? c[2] : wn[f];
    }
}

/* Steps for non-zeros [f0, f1) in order, gradients in b_g. Their slots
 * were just read by lazy_gather, so they are cached. */
static void lazy_update(ld_trainer_t *t, ticks_t tk, size_t f0, size_t f1)
{
    float *sp = t->sp;
    const float *g = t->b_g;
    const uint32_t *bi = t->b_idx;
    size_t f = f0;
#ifdef __SSE2__
    /* Four distinct slots at a time, bit for bit the scalar steps (see
     * opt_step4); a group with a repeated slot goes the scalar way. */
    const __m128i vcur = _mm_set1_epi32((int)tk.cur),
                  before = _mm_set1_epi32((int)tk.c0 - 1);
    const __m128 ia = _mm_set1_ps(t->lz.inv_alpha);
    /* The next chunk's slots, about one chunk ahead: requested here they
     * have the whole update, sums and scores to arrive in, where the
     * gather's own look-ahead (PF_LAZY) is too short to cover a page walk
     * plus a memory access. */
    const size_t ahead = f1 - f0, lim = t->nnz_n > ahead ? t->nnz_n - ahead : 0;
#ifdef LAZY_AVX2
    if (t->avx2 && !ld_trainer_force_sse)
        f = lazy_update8(t, tk, f, f1, ahead, lim);
#endif
    for (; f + 4 <= f1; f += 4) {
        if (f < lim) {
            for (size_t j = 0; j < 4; j++)
                PREFETCH_W(sp + (size_t)bi[f + ahead + j] * LAZY_SS);
            if (__builtin_expect(t->pend != NULL, 0))
                prefetch_blocks(t, bi + f + ahead);
        }
        const uint32_t i0 = bi[f], i1 = bi[f + 1], i2 = bi[f + 2],
                       i3 = bi[f + 3];
        if (__builtin_expect(t->pend != NULL, 0)) {
            cow(t, i0);
            cow(t, i1);
            cow(t, i2);
            cow(t, i3);
        }
        if (__builtin_expect(i0 == i1 || i0 == i2 || i0 == i3 || i1 == i2 ||
                                 i1 == i3 || i2 == i3,
                             0)) {
            for (size_t j = f; j < f + 4; j++)
                lazy_step(t, tk, sp + (size_t)bi[j] * LAZY_SS, j);
            continue;
        }
        float *c0 = sp + (size_t)i0 * LAZY_SS, *c1 = sp + (size_t)i1 * LAZY_SS,
              *c2 = sp + (size_t)i2 * LAZY_SS, *c3 = sp + (size_t)i3 * LAZY_SS;
        __m128 z = _mm_load_ps(c0), n = _mm_load_ps(c1), b = _mm_load_ps(c2),
               tg = _mm_load_ps(c3);
        _MM_TRANSPOSE4_PS(z, n, b, tg);
        __m128i ti = _mm_castps_si128(tg);
        __m128 sq0 = _mm_loadu_ps(t->b_sq + f), w = _mm_loadu_ps(t->b_wn + f);
        /* Stepped earlier in this chunk (a hot feature): recompute. */
        __m128 stale = _mm_castsi128_ps(_mm_cmpeq_epi32(ti, vcur));
        if (__builtin_expect(_mm_movemask_ps(stale) != 0, 0)) {
            __m128 s1 = _mm_sqrt_ps(n);
            sq0 = select4(stale, s1, sq0);
            w = select4(stale, ftrl_w4(z, s1, &t->lz), w);
        }
        __m128 gg = _mm_loadu_ps(g + f);
        n = _mm_add_ps(n, _mm_mul_ps(gg, gg));
        __m128 sig = _mm_mul_ps(_mm_sub_ps(_mm_sqrt_ps(n), sq0), ia);
        z = _mm_sub_ps(_mm_add_ps(z, gg), _mm_mul_ps(sig, w));
        __m128 mine = _mm_castsi128_ps(_mm_cmpgt_epi32(ti, before));
        b = select4(mine, b, _mm_loadu_ps(t->b_wb + f));
        tg = _mm_castsi128_ps(vcur);
        _MM_TRANSPOSE4_PS(z, n, b, tg);
        _mm_store_ps(c0, z);
        _mm_store_ps(c1, n);
        _mm_store_ps(c2, b);
        _mm_store_ps(c3, tg);
    }
#endif
    for (; f < f1; f++) {
        if (__builtin_expect(t->pend != NULL, 0))
            cow(t, bi[f]);
        lazy_step(t, tk, sp + (size_t)bi[f] * LAZY_SS, f);
    }
}

/* Adds each example's hashed part, sum of b_wb[f] * b_val[f], to b_z in
 * feature order: the same sums, bit for bit, as forward()'s. Each sum is a
 * chain of dependent additions, so four examples' chains are interleaved
 * to keep the adder busy. */
static void sparse_sums(ld_trainer_t *t, size_t i0, size_t i1)
{
    const float *wb = t->b_wb, *bv = t->b_val;
    const uint32_t *off = t->b_off;
    size_t i = i0;
    for (; i + 4 <= i1; i += 4) {
        uint32_t f0 = off[i], f1 = off[i + 1], f2 = off[i + 2], f3 = off[i + 3],
                 e3 = off[i + 4];
        uint32_t n0 = f1 - f0, n1 = f2 - f1, n2 = f3 - f2, n3 = e3 - f3;
        uint32_t m = n0 < n1 ? n0 : n1;
        m = m < n2 ? m : n2;
        m = m < n3 ? m : n3;
        float a0 = t->b_z[i], a1 = t->b_z[i + 1], a2 = t->b_z[i + 2],
              a3 = t->b_z[i + 3];
        for (uint32_t j = 0; j < m; j++) {
            a0 += wb[f0 + j] * bv[f0 + j];
            a1 += wb[f1 + j] * bv[f1 + j];
            a2 += wb[f2 + j] * bv[f2 + j];
            a3 += wb[f3 + j] * bv[f3 + j];
        }
        for (uint32_t j = m; j < n0; j++)
            a0 += wb[f0 + j] * bv[f0 + j];
        for (uint32_t j = m; j < n1; j++)
            a1 += wb[f1 + j] * bv[f1 + j];
        for (uint32_t j = m; j < n2; j++)
            a2 += wb[f2 + j] * bv[f2 + j];
        for (uint32_t j = m; j < n3; j++)
            a3 += wb[f3 + j] * bv[f3 + j];
        t->b_z[i] = a0;
        t->b_z[i + 1] = a1;
        t->b_z[i + 2] = a2;
        t->b_z[i + 3] = a3;
    }
    for (; i < i1; i++) {
        float a = t->b_z[i];
        for (uint32_t f = off[i]; f < off[i + 1]; f++)
            a += wb[f] * bv[f];
        t->b_z[i] = a;
    }
}

/* Scores and trains the batch's hashed part, LAZY_CHUNK examples at a time:
 * gather their batch-start weights, finish their scores (b_z holds the
 * dense part), then step their slots while they are still cached. */
void lazy_pass(ld_trainer_t *t)
{
    if (t->tick + t->bn > ld_trainer_tick_max) {
        /* Once in ~2^31 chunks: restart the tags so they stay ordered.
         * That writes every slot: a pending snapshot is copied first. */
        if (t->pend)
            snap_finish_pending(t);
        for (size_t i = 0; i < t->nslots; i++)
            memset(t->sp + i * LAZY_SS + 3, 0, sizeof(float));
        t->tick = 0;
        t->dall = 1; /* the tags no longer tell which rows changed */
    }
    ticks_t tk = {t->tick + 1, t->tick};
    const float *bv = t->b_val;
    float *g = t->b_g;
    for (size_t i0 = 0; i0 < t->bn; i0 += LAZY_CHUNK) {
        size_t i1 = i0 + LAZY_CHUNK < t->bn ? i0 + LAZY_CHUNK : t->bn;
        size_t f0 = t->b_off[i0], f1 = t->b_off[i1];
        tk.cur = ++t->tick;
        lazy_gather(t, tk, f0, f1);
        sparse_sums(t, i0, i1);
        for (size_t i = i0; i < i1; i++) {
            dense_score(t, i);
            score_example(t, i);
            dense_step(t, i);
        }
        for (size_t i = i0; i < i1; i++) {
            const float r = t->b_r[i];
            for (uint32_t f = t->b_off[i]; f < t->b_off[i + 1]; f++)
                g[f] = r * bv[f];
        }
        lazy_update(t, tk, f0, f1);
    }
}
