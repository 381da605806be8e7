/* SPDX-License-Identifier: Apache-2.0 */
/* A checkpoint on the checkpoints topic: cut into CheckpointChunk records,
 * announced by a CheckpointManifest (optionally HMAC-signed), and put back
 * together and checked on the way in. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/pbwire.h"
#include "publish/internal.h"
#include "publish/publish.h"
#include "trainer/checkpoint.h"

/* ---- Chunks and manifest ------------------------------------------------ */

void ld_ckpt_chunks_free(ld_buf_t *chunks, size_t n)
{
    if (!chunks)
        return;
    for (size_t i = 0; i < n; i++)
        free(chunks[i].data);
    free(chunks);
}

ld_err_t ld_ckpt_chunks(const uint8_t *ckpt, size_t len, const char *model,
                        uint64_t version, size_t chunk_size, ld_buf_t **chunks,
                        size_t *n)
{
    *chunks = NULL;
    *n = 0;
    if (!ckpt || !len || !model || chunk_size == 0 ||
        chunk_size > LD_CKPT_MAX_CHUNK)
        return LD_ERR_INVAL;
    size_t count = (len + chunk_size - 1) / chunk_size;
    if (count > UINT32_MAX)
        return LD_ERR_RANGE;
    ld_buf_t *v = calloc(count, sizeof(*v));
    if (!v)
        return LD_ERR_NOMEM;
    for (size_t i = 0; i < count; i++) {
        size_t off = i * chunk_size;
        size_t m = len - off < chunk_size ? len - off : chunk_size;
        uint8_t sha[32];
        ld_ckpt_sha256(ckpt + off, m, sha);
        Learnd__V1__CheckpointChunk ch;
        learnd__v1__checkpoint_chunk__init(&ch);
        ch.model = (char *)model;
        ch.version = version;
        ch.index = (uint32_t)i;
        ch.count = (uint32_t)count;
        ch.data.data = (uint8_t *)(ckpt + off);
        ch.data.len = m;
        ch.sha256.data = sha;
        ch.sha256.len = 32;
        v[i].len = learnd__v1__checkpoint_chunk__get_packed_size(&ch);
        v[i].data = malloc(v[i].len);
        if (!v[i].data) {
            ld_ckpt_chunks_free(v, count);
            return LD_ERR_NOMEM;
        }
        learnd__v1__checkpoint_chunk__pack(&ch, v[i].data);
    }
    *chunks = v;
    *n = count;
    return LD_OK;
}

ld_err_t ld_ckpt_manifest_encode(const uint8_t *ckpt, size_t len,
                                 const ld_ckpt_manifest_info_t *info,
                                 ld_buf_t *out)
{
    memset(out, 0, sizeof(*out));
    if (!ckpt || !info || !info->model)
        return LD_ERR_INVAL;
    /* params_sha256 sits in the checkpoint's lineage (Checkpoint field 3,
     * Lineage field 13): read from the bytes rather than trusting a second
     * copy, without decoding (and copying, and hashing thrice) the whole
     * checkpoint at every publication. */
    uint8_t sha[32];
    size_t llen = 0, plen = 0;
    const uint8_t *lin =
        len > LD_CKPT_TRAILER
            ? ld_pb_find_len(ckpt, len - LD_CKPT_TRAILER, 3, &llen)
            : NULL;
    const uint8_t *ps = lin ? ld_pb_find_len(lin, llen, 13, &plen) : NULL;
    if (!ps || plen != 32)
        return LD_ERR_CORRUPT;
    ld_ckpt_sha256(ckpt, len, sha);
    Learnd__V1__CheckpointManifest mf;
    learnd__v1__checkpoint_manifest__init(&mf);
    mf.model = (char *)info->model;
    mf.version = info->version;
    mf.total_size = len;
    mf.sha256.data = sha;
    mf.sha256.len = 32;
    mf.chunk_count = info->chunk_count;
    mf.first_chunk_offset = info->first_chunk_offset;
    mf.topic = (char *)(info->topic ? info->topic : "");
    mf.partition = info->partition;
    mf.created_at_ms = info->created_at_ms;
    mf.parent_version = info->parent_version;
    mf.params_sha256.data = (uint8_t *)ps;
    mf.params_sha256.len = 32;
    mf.trigger_id = (char *)(info->trigger_id ? info->trigger_id : "");
    mf.base_version = info->base_version;
    mf.n_chain = info->n_chain;
    mf.chain = (uint64_t *)(uintptr_t)info->chain;
    out->len = learnd__v1__checkpoint_manifest__get_packed_size(&mf);
    out->data = malloc(out->len ? out->len : 1);
    if (!out->data) {
        out->len = 0;
        return LD_ERR_NOMEM;
    }
    learnd__v1__checkpoint_manifest__pack(&mf, out->data);
    if (info->hmac_key_len) {
        /* Field 15 last, as the Checkpoint's own digest: a verifier MACs
         * the bytes before the final 34 without re-encoding anything. */
        uint8_t *grown = realloc(out->data, out->len + LD_CKPT_TRAILER);
        if (!grown) {
            free(out->data);
            memset(out, 0, sizeof(*out));
            return LD_ERR_NOMEM;
        }
        out->data = grown;
        grown[out->len] = 0x7a;
        grown[out->len + 1] = 0x20;
        ld_ckpt_hmac_sha256(info->hmac_key, info->hmac_key_len, grown, out->len,
                            grown + out->len + 2);
        out->len += LD_CKPT_TRAILER;
    }
    return LD_OK;
}

ld_err_t ld_ckpt_assemble(const uint8_t *manifest, size_t mlen,
                          const ld_buf_t *chunks, size_t n, ld_buf_t *out,
                          char *errstr, size_t size)
{
    Learnd__V1__CheckpointManifest *mf = NULL;
    Learnd__V1__CheckpointChunk *ch = NULL;
    ld_err_t rc = LD_ERR_CORRUPT;
    size_t have = 0;
    memset(out, 0, sizeof(*out));
    mf = learnd__v1__checkpoint_manifest__unpack(NULL, mlen, manifest);
    if (!mf) {
        ld_errstr_set(errstr, size,
                      "not a learnd.v1.CheckpointManifest message");
        goto err;
    }
    if (!mf->model || !mf->model[0] || mf->sha256.len != 32 ||
        mf->chunk_count == 0 || mf->chunk_count != n || mf->total_size == 0 ||
        mf->total_size > (uint64_t)n * LD_CKPT_MAX_CHUNK) {
        ld_errstr_set(
            errstr, size,
            "manifest invalid or does not match %zu chunks (count %" PRIu32
            ", size %" PRIu64 ")",
            n, mf->chunk_count, mf->total_size);
        goto err;
    }
    out->data = malloc((size_t)mf->total_size);
    if (!out->data) {
        rc = LD_ERR_NOMEM;
        goto err;
    }
    for (size_t i = 0; i < n; i++) {
        uint8_t sha[32];
        ch = learnd__v1__checkpoint_chunk__unpack(NULL, chunks[i].len,
                                                  chunks[i].data);
        if (!ch) {
            ld_errstr_set(errstr, size, "chunk %zu is not a CheckpointChunk",
                          i);
            goto err;
        }
        if (!ch->model || strcmp(ch->model, mf->model) != 0 ||
            ch->version != mf->version || ch->index != i ||
            ch->count != mf->chunk_count) {
            ld_errstr_set(errstr, size,
                          "chunk %zu belongs elsewhere (%s v%" PRIu64
                          " %" PRIu32 "/%" PRIu32 ")",
                          i, ch->model ? ch->model : "", ch->version, ch->index,
                          ch->count);
            goto err;
        }
        if (ch->data.len == 0 || ch->data.len > LD_CKPT_MAX_CHUNK ||
            ch->data.len > mf->total_size - have || ch->sha256.len != 32) {
            ld_errstr_set(errstr, size, "chunk %zu has a bad length", i);
            goto err;
        }
        ld_ckpt_sha256(ch->data.data, ch->data.len, sha);
        if (memcmp(sha, ch->sha256.data, 32) != 0) {
            ld_errstr_set(errstr, size, "chunk %zu checksum mismatch", i);
            goto err;
        }
        memcpy(out->data + have, ch->data.data, ch->data.len);
        have += ch->data.len;
        learnd__v1__checkpoint_chunk__free_unpacked(ch, NULL);
        ch = NULL;
    }
    uint8_t sha[32];
    ld_ckpt_sha256(out->data, have, sha);
    if (have != mf->total_size || memcmp(sha, mf->sha256.data, 32) != 0) {
        ld_errstr_set(errstr, size,
                      "reassembled checkpoint does not match the manifest");
        goto err;
    }
    out->len = have;
    learnd__v1__checkpoint_manifest__free_unpacked(mf, NULL);
    return LD_OK;

err:
    if (ch)
        learnd__v1__checkpoint_chunk__free_unpacked(ch, NULL);
    if (mf)
        learnd__v1__checkpoint_manifest__free_unpacked(mf, NULL);
    free(out->data);
    memset(out, 0, sizeof(*out));
    return rc;
}

/* ---- Delta chains ------------------------------------------------------- */

ld_err_t ld_publisher_delta(ld_publisher_t *p, const ld_snapshot_t *snap,
                            const ld_ckpt_meta_t *meta, ld_buf_t *out,
                            ld_ckpt_manifest_info_t *info)
{
    memset(out, 0, sizeof(*out));
    if (p->c.delta_every <= 1)
        return LD_OK;
    /* A delta only of the version just before, in a chain not yet
     * delta_every long; a restart (no parent in memory) starts a new
     * chain with a full version. */
    int delta = p->chain_snap && p->nchain &&
                p->nchain < (size_t)p->c.delta_every &&
                p->chain[p->nchain - 1] == meta->parent_version;
    if (delta) {
        ld_err_t err = ld_ckpt_encode_delta(snap, p->chain_snap, meta,
                                            p->chain[0], out, NULL);
        if (err)
            return err;
        info->base_version = p->chain[0];
        info->chain = p->chain;
        info->n_chain = p->nchain;
    } else {
        info->base_version = meta->version;
    }
    return LD_OK;
}

void ld_publisher_delta_done(ld_publisher_t *p, ld_snapshot_t *snap,
                             uint64_t version, int delta)
{
    if (p->c.delta_every <= 1)
        return;
    if (!delta)
        p->nchain = 0;
    uint64_t *c = realloc(p->chain, (p->nchain + 1) * sizeof(*c));
    if (!c) { /* the next version is a full one */
        ld_publisher_delta_free(p);
        return;
    }
    p->chain = c;
    p->chain[p->nchain++] = version;
    ld_snapshot_destroy(p->chain_snap);
    p->chain_snap = ld_snapshot_ref(snap);
}

void ld_publisher_delta_free(ld_publisher_t *p)
{
    free(p->chain);
    p->chain = NULL;
    p->nchain = 0;
    ld_snapshot_destroy(p->chain_snap);
    p->chain_snap = NULL;
}
