/* SPDX-License-Identifier: Apache-2.0 */
/* The joiner's hash index: open addressing over entry handles, keyed by
 * the record key, duplicates allowed. */
#include <stdlib.h>

#include "labeling/joiner_impl.h"

/* ---- hash table --------------------------------------------------------- */

static uint16_t meta_of(uint8_t tag, size_t dist)
{
    return (uint16_t)(tag | (dist < META_DIST_MAX ? dist : META_DIST_MAX) << 8);
}

/* Probe distance of slot i (occupied). */
static size_t tab_dist(const ld_joiner_t *j, const tab_t *t, size_t i)
{
    size_t d = t->meta[i] >> 8;
    if (d < META_DIST_MAX)
        return d;
    const uint8_t *k = ent_key(j, t, t->hd[i]);
    size_t home = (size_t)hash_key(k, ent_at(j, t->hd[i])->keylen);
    return (i - home) & (t->cap - 1);
}

static void tab_put(tab_t *t, uint32_t hd, uint64_t h)
{
    size_t m = t->cap - 1, i = (size_t)h & m, d = 0;
    while (t->meta[i]) {
        i = (i + 1) & m;
        d++;
    }
    t->hd[i] = hd;
    t->meta[i] = meta_of(hash_tag(h), d);
}

ld_err_t tab_grow(const ld_joiner_t *j, tab_t *t)
{
    size_t nc = t->cap ? t->cap * 2 : 1024;
    tab_t nt = {NULL, NULL, nc, t->n, t->labels};
    nt.hd = malloc(nc * sizeof(*nt.hd));
    nt.meta = calloc(nc, sizeof(*nt.meta));
    if (!nt.hd || !nt.meta) {
        free(nt.hd);
        free(nt.meta);
        return LD_ERR_NOMEM;
    }
    for (size_t i = 0; i < t->cap; i++) {
        if (!t->meta[i])
            continue;
        const uint8_t *k = ent_key(j, t, t->hd[i]);
        tab_put(&nt, t->hd[i], hash_key(k, ent_at(j, t->hd[i])->keylen));
    }
    free(t->hd);
    free(t->meta);
    *t = nt;
    return LD_OK;
}

ld_err_t tab_insert(const ld_joiner_t *j, tab_t *t, uint32_t hd, uint64_t h)
{
    if ((t->n + 1) * 4 > t->cap * 3) {
        ld_err_t err = tab_grow(j, t);
        if (err)
            return err;
    }
    tab_put(t, hd, h);
    t->n++;
    return LD_OK;
}

/* Removes hd by backward shifting (no tombstones). */
void tab_remove(const ld_joiner_t *j, tab_t *t, uint32_t hd, uint64_t h)
{
    size_t m = t->cap - 1, i = (size_t)h & m;
    while (t->hd[i] != hd || !t->meta[i])
        i = (i + 1) & m;
    for (size_t jx = (i + 1) & m; t->meta[jx]; jx = (jx + 1) & m) {
        /* Move jx into the hole at i unless its home lies in (i, jx]. */
        size_t d = tab_dist(j, t, jx), gap = (jx - i) & m;
        if (d >= gap) {
            t->hd[i] = t->hd[jx];
            t->meta[i] = meta_of((uint8_t)t->meta[jx], d - gap);
            i = jx;
        }
    }
    t->meta[i] = 0;
    t->n--;
}
