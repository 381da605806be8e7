/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target for the checkpoint decoder (whole, head and delta
 * checkpoints, delta application) and chunk reassembly; with
 * -DLD_FUZZ_REPLAY it is a plain program replaying files or directories.
 * Each input is tried as it is and with its checksums fixed up, so that
 * mutations get past the SHA-256 checks to the validation behind them. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "publish/publish.h"
#include "trainer/checkpoint.h"
#include "trainer/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A decoded checkpoint must turn into a snapshot that re-encodes and decodes
 * again, and must survive chunking, a manifest and reassembly bit-exact. */
static void check_valid(const uint8_t *buf, size_t len, ld_ckpt_t *c)
{
    char err[256];
    ld_snapshot_t *s = ld_ckpt_snapshot(c);
    if (s) {
        ld_ckpt_meta_t meta = {0};
        ld_buf_t b;
        meta.model = "fuzz";
        if (ld_ckpt_encode(s, &meta, &b) == LD_OK) {
            ld_ckpt_t *again = NULL;
            if (ld_ckpt_decode(b.data, b.len, &again, err, sizeof(err)) !=
                LD_OK) {
                fprintf(stderr, "re-encoded checkpoint refused: %s\n", err);
                abort();
            }
            ld_ckpt_destroy(again);
            free(b.data);
        }
        ld_snapshot_destroy(s);
    }
    ld_buf_t *chunks = NULL, man = {0}, out = {0};
    size_t n = 0;
    if (ld_publish_chunks(buf, len, "fuzz", 7, 64, &chunks, &n) != LD_OK)
        return;
    ld_publish_manifest_info_t info = {.model = "fuzz",
                                       .version = 7,
                                       .chunk_count = (uint32_t)n,
                                       .topic = "t",
                                       .partition = 0};
    if (ld_publish_manifest_encode(buf, len, &info, &man) == LD_OK) {
        if (ld_publish_assemble(man.data, man.len, chunks, n, &out, err,
                                sizeof(err)) != LD_OK ||
            out.len != len || memcmp(out.data, buf, len) != 0) {
            fprintf(stderr, "chunks of a valid checkpoint: %s\n", err);
            abort();
        }
        free(out.data);
        free(man.data);
    }
    ld_publish_chunks_free(chunks, n);
}

/* A decoded delta applies to its own zero-row parent or is refused with a
 * reason, never crashes; a head turns into a snapshot. */
static void decode_partial(const uint8_t *buf, size_t len)
{
    ld_ckpt_t *c = NULL;
    char err[256] = "";
    if (ld_ckpt_decode_delta(buf, len, &c, err, sizeof(err)) == LD_OK) {
        ld_snapshot_t *parent = ld_ckpt_snapshot(c), *out = NULL;
        if (parent) {
            err[0] = '\0';
            if (ld_ckpt_delta_apply(c, parent, &out, err, sizeof(err)) == LD_OK)
                ld_snapshot_destroy(out);
            else if (!err[0]) {
                fprintf(stderr, "delta refused without a reason\n");
                abort();
            }
        }
        ld_snapshot_destroy(parent);
        ld_ckpt_destroy(c);
    } else if (!err[0]) {
        fprintf(stderr, "delta refused without a reason\n");
        abort();
    }
    c = NULL;
    if (ld_ckpt_decode_head(buf, len, &c, err, sizeof(err)) == LD_OK) {
        ld_snapshot_destroy(ld_ckpt_snapshot(c));
        ld_ckpt_destroy(c);
    }
}

static void decode(const uint8_t *buf, size_t len)
{
    ld_ckpt_t *c = NULL;
    char err[256];
    if (ld_ckpt_decode(buf, len, &c, err, sizeof(err)) == LD_OK) {
        check_valid(buf, len, c);
        ld_ckpt_destroy(c);
    } else if (!err[0]) {
        fprintf(stderr, "refused without a reason\n");
        abort();
    }
    decode_partial(buf, len);
}

/* body + the trailer learnd writes last (field 15, SHA-256 of the body). */
static void decode_sealed(const uint8_t *body, size_t n)
{
    uint8_t *b = malloc(n + LD_CKPT_TRAILER);
    if (!b)
        abort();
    memcpy(b, body, n);
    b[n] = 0x7a;
    b[n + 1] = 0x20;
    ld_ckpt_sha256(body, n, b + n + 2);
    decode(b, n + LD_CKPT_TRAILER);
    free(b);
}

/* The checksums fixed up, so mutations reach the checks behind them: the
 * input without its trailer (when it has one) is sealed as it is, and, when
 * it unpacks, with Lineage.params_sha256 recomputed over its tensors. */
static void decode_fixed_up(const uint8_t *data, size_t size)
{
    if (size >= LD_CKPT_TRAILER && data[size - LD_CKPT_TRAILER] == 0x7a &&
        data[size - LD_CKPT_TRAILER + 1] == 0x20)
        size -= LD_CKPT_TRAILER;
    decode_sealed(data, size);
    Learnd__V1__Checkpoint *m =
        learnd__v1__checkpoint__unpack(NULL, size, data);
    if (!m)
        return;
    if (m->lineage && m->n_tensors >= 3) {
        static uint8_t sha[32];
        ld_sha256_t h;
        ld_sha256_init(&h);
        for (int i = 0; i < 3; i++)
            if (m->tensors[i])
                ld_sha256_update(&h, m->tensors[i]->data.data,
                                 m->tensors[i]->data.len);
        ld_sha256_final(&h, sha);
        /* swapped in for the pack, the unpacked ones put back to be freed */
        ProtobufCBinaryData ps = m->lineage->params_sha256, tr = m->sha256;
        m->lineage->params_sha256.data = sha;
        m->lineage->params_sha256.len = 32;
        m->sha256.len = 0; /* sealed anew below */
        m->sha256.data = NULL;
        size_t n = learnd__v1__checkpoint__get_packed_size(m);
        uint8_t *b = malloc(n ? n : 1);
        if (!b)
            abort();
        learnd__v1__checkpoint__pack(m, b);
        m->lineage->params_sha256 = ps;
        m->sha256 = tr;
        decode_sealed(b, n);
        free(b);
    }
    learnd__v1__checkpoint__free_unpacked(m, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    decode(data, size);
    decode_fixed_up(data, size);
    /* The same bytes as a manifest with themselves as the only chunk. */
    char err[256];
    ld_buf_t chunk = {(uint8_t *)(uintptr_t)data, size}, out;
    if (ld_publish_assemble(data, size, &chunk, 1, &out, err, sizeof(err)) ==
        LD_OK)
        free(out.data);
    return 0;
}

#ifdef LD_FUZZ_REPLAY
#include "fuzz_replay.h"

int main(int argc, char **argv)
{
    return fz_replay_main("fuzz_checkpoint", argc, argv);
}
#endif
