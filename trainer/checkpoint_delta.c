/* SPDX-License-Identifier: Apache-2.0 */
/* Delta checkpoints: the rows changed since the parent version, each delta
 * naming its parent's parameter hash and the full parameters' hash it
 * rebuilds; a chain (base, delta, ...) is rebuilt and checked link by link
 * (docs/OPERATIONS.md, "Following delta checkpoints"). checkpoint.c has the
 * codec both use. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trainer/checkpoint.h"
#include "trainer/internal.h"

ld_err_t ld_ckpt_encode_delta(const ld_snapshot_t *s,
                              const ld_snapshot_t *parent,
                              const ld_ckpt_meta_t *meta, uint64_t base_version,
                              ld_buf_t *out, size_t *nrows)
{
    memset(out, 0, sizeof(*out));
    if (!s->sp || !parent->sp || ld_spec_mismatch(&s->spec, &parent->spec))
        return LD_ERR_INVAL;
    const ld_spec_t *sp = &s->spec;
    size_t per = (size_t)sp->k * sp->s, nslots = (size_t)1 << sp->hash_bits;
    size_t cap = 1024, n = 0;
    uint32_t *slots = malloc(cap * sizeof(*slots));
    float *drows = malloc(cap * per * sizeof(float));
    ld_err_t rc = LD_ERR_NOMEM;
    if (!slots || !drows)
        goto out;
    for (size_t i = 0; i < nslots; i++) {
        const float *a = s->sp + i * per, *b = parent->sp + i * per;
        /* Bit for bit: a row whose value is unchanged but whose sign of
         * zero or NaN payload moved still counts as changed. */
        if (memcmp(a, b, per * sizeof(float)) == 0)
            continue;
        if (n == cap) {
            cap *= 2;
            uint32_t *ns = realloc(slots, cap * sizeof(*ns));
            if (ns)
                slots = ns;
            float *nr = ns ? realloc(drows, cap * per * sizeof(*nr)) : NULL;
            if (!nr)
                goto out;
            drows = nr;
        }
        slots[n] = (uint32_t)i;
        memcpy(drows + n * per, a, per * sizeof(float));
        n++;
    }
    uint8_t psha[32];
    ld_snapshot_params_sha256(parent, psha);
    Learnd__V1__DeltaRows d;
    learnd__v1__delta_rows__init(&d);
    d.parent_version = meta->parent_version;
    d.parent_params_sha256 = (ProtobufCBinaryData){32, psha};
    d.base_version = base_version;
    d.n_slots = n;
    d.slots = slots;
    d.rows = (ProtobufCBinaryData){n * per * sizeof(float), (uint8_t *)drows};
    ld_ckpt_meta_t m = *meta;
    m.delta = &d;
    rc = ld_ckpt_encode(s, &m, out);
    if (nrows)
        *nrows = n;
out:
    free(slots);
    free(drows);
    return rc;
}

int ld_ckpt_delta_of(const ld_ckpt_t *c, uint64_t *parent_version,
                     uint64_t *base_version)
{
    const Learnd__V1__DeltaRows *d = ld_ckpt_message(c)->delta;
    if (!d)
        return 0;
    if (parent_version)
        *parent_version = d->parent_version;
    if (base_version)
        *base_version = d->base_version;
    return 1;
}

ld_err_t ld_ckpt_delta_apply(const ld_ckpt_t *delta,
                             const ld_snapshot_t *parent, ld_snapshot_t **out,
                             char *errstr, size_t size)
{
    *out = NULL;
    const Learnd__V1__Checkpoint *m = ld_ckpt_message(delta);
    const Learnd__V1__DeltaRows *d = m->delta;
    if (!d) {
        ld_errstr_set(errstr, size, "not a delta checkpoint");
        return LD_ERR_INVAL;
    }
    uint8_t sha[32];
    ld_snapshot_params_sha256(parent, sha);
    if (memcmp(sha, d->parent_params_sha256.data, 32) != 0) {
        ld_errstr_set(errstr, size,
                      "delta version %" PRIu64 " applies to version %" PRIu64
                      " with other parameters than the parent given (a "
                      "missing or different link in the chain)",
                      m->lineage->version, d->parent_version);
        return LD_ERR_CORRUPT;
    }
    ld_snapshot_t *s = ld_ckpt_snapshot(delta);
    if (!s)
        return LD_ERR_NOMEM;
    if (ld_spec_mismatch(&s->spec, &parent->spec)) {
        ld_snapshot_destroy(s);
        ld_errstr_set(errstr, size,
                      "delta version %" PRIu64 " has another shape than its "
                      "parent",
                      m->lineage->version);
        return LD_ERR_CORRUPT;
    }
    size_t per = (size_t)s->spec.k * s->spec.s;
    memcpy(s->sp, parent->sp, s->sp_n * sizeof(float));
    for (size_t i = 0; i < d->n_slots; i++) /* validated by decode */
        memcpy(s->sp + (size_t)d->slots[i] * per,
               d->rows.data + i * per * sizeof(float), per * sizeof(float));
    ld_snapshot_params_sha256(s, sha);
    if (memcmp(sha, m->lineage->params_sha256.data, 32) != 0) {
        ld_snapshot_destroy(s);
        ld_errstr_set(errstr, size,
                      "delta version %" PRIu64 " does not reconstruct its "
                      "parameters (params_sha256 mismatch)",
                      m->lineage->version);
        return LD_ERR_CORRUPT;
    }
    *out = s;
    return LD_OK;
}

ld_err_t ld_ckpt_chain_rebuild(const ld_buf_t *links, size_t n,
                               ld_snapshot_t **out, uint64_t *version,
                               char *errstr, size_t size)
{
    *out = NULL;
    ld_snapshot_t *cur = NULL;
    uint64_t at = 0;
    ld_err_t err = LD_ERR_INVAL;
    if (!n) {
        ld_errstr_set(errstr, size, "empty chain");
        return err;
    }
    for (size_t i = 0; i < n; i++) {
        ld_ckpt_t *c = NULL;
        char why[300] = "";
        err = i ? ld_ckpt_decode_delta(links[i].data, links[i].len, &c, why,
                                       sizeof(why))
                : ld_ckpt_decode(links[i].data, links[i].len, &c, why,
                                 sizeof(why));
        if (err) {
            ld_errstr_set(errstr, size, "link %zu of the chain: %s", i, why);
            break;
        }
        uint64_t v = ld_ckpt_message(c)->lineage->version, parent = 0;
        ld_snapshot_t *next = NULL;
        if (i && (!ld_ckpt_delta_of(c, &parent, NULL) || parent != at)) {
            ld_errstr_set(errstr, size,
                          "link %zu of the chain is version %" PRIu64
                          ", a delta of version %" PRIu64 ", not of %" PRIu64
                          " (a missing link)",
                          i, v, parent, at);
            err = LD_ERR_CORRUPT;
        } else if (i) {
            err = ld_ckpt_delta_apply(c, cur, &next, why, sizeof(why));
            if (err)
                ld_errstr_set(errstr, size, "link %zu of the chain: %s", i,
                              why);
        } else if (!(next = ld_ckpt_snapshot(c))) {
            err = LD_ERR_NOMEM;
        }
        ld_ckpt_destroy(c);
        if (err)
            break;
        ld_snapshot_destroy(cur);
        cur = next;
        at = v;
    }
    if (err) {
        ld_snapshot_destroy(cur);
        return err;
    }
    *out = cur;
    if (version)
        *version = at;
    return LD_OK;
}
