/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target for the state topic's reader (publish/state_topic.c,
 * publish/state_delta.c): a sequence of records and tombstones under the
 * keys of one model, read back as a restart does (finish, then fill the
 * sparse state from blocks and deltas); every refusal carries a reason,
 * nothing crashes. With -DLD_FUZZ_REPLAY it is a plain program replaying
 * files or directories; `--write-seed FILE` writes the seed of
 * tests/fuzz/corpus/fuzz_state (three commits of a 64-slot FTRL model,
 * format 4, with deltas; `--write-seed-v3 FILE` the same in format 3). Input:
 * frames of kind (bit 7: a tombstone; the low two bits: header, block a, gens
 * page a, delta a/b), a, b, a 16-bit little-endian length and the value. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "publish/publish.h"
#include "publish/state_internal.h" /* ld_state_fill_rows */
#include "trainer/checkpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void must_say(ld_err_t err, const char *why, const char *what)
{
    if (err && err != LD_ERR_NOMEM && !why[0]) {
        fprintf(stderr, "%s refused without a reason\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ld_state_reader_t *rd = ld_state_reader_new("m");
    if (!rd)
        return 0;
    size_t at = 0;
    while (size - at >= 5) {
        uint8_t kind = data[at], a = data[at + 1], b = data[at + 2];
        size_t len = (size_t)data[at + 3] | (size_t)data[at + 4] << 8;
        at += 5;
        if (len > size - at)
            len = size - at;
        char key[64];
        switch (kind & 3) {
        case 0:
            snprintf(key, sizeof(key), "m/header");
            break;
        case 1:
            snprintf(key, sizeof(key), "m/block/%u", a);
            break;
        case 2:
            snprintf(key, sizeof(key), "m/gens/%u", a);
            break;
        default:
            snprintf(key, sizeof(key), "m/delta/%u/%u", a, b);
        }
        const uint8_t *val = kind & 0x80 ? NULL : data + at;
        if (ld_state_reader_take(rd, key, strlen(key), val, val ? len : 0) !=
            LD_OK) {
            ld_state_reader_destroy(rd);
            return 0;
        }
        at += len;
    }
    ld_resume_t *r = NULL;
    char why[512] = "";
    ld_err_t err = ld_state_reader_finish(rd, &r, why, sizeof(why));
    must_say(err, why, "state");
    if (err || !r)
        return 0;
    const Learnd__V1__ResumeHeader *h = r->header;
    /* Fill as an FTRL model of the header's shape would (3 floats a
     * slot), and as one of another shape; then as a restart does, into
     * the snapshot of the header's model_state when it decodes. */
    size_t n = (size_t)h->block_count * h->block_size * 3;
    if (h->format_version >= 2 && n && n <= (1u << 20)) {
        float *sp = malloc(n * sizeof(float));
        uint8_t *keep = calloc(n / 8 + 1, 1);
        for (size_t k = 0; sp && keep && k < 2; k++) {
            why[0] = '\0';
            err = ld_state_fill_rows(r, sp, n - k * 3, keep, why, sizeof(why));
            must_say(err, why, "fill");
        }
        free(sp);
        free(keep);
        ld_ckpt_t *ck = NULL;
        ld_snapshot_t *snap = NULL;
        /* a small model only: a mutated head may ask for 2^30 slots */
        if (ld_ckpt_decode_head(h->model_state.data, h->model_state.len, &ck,
                                why, sizeof(why)) == LD_OK &&
            ld_ckpt_message(ck)->spec &&
            ld_ckpt_message(ck)->spec->hash_bits <= 12 &&
            ld_ckpt_message(ck)->spec->num_classes <= 4 &&
            ld_ckpt_message(ck)->spec->dense_dim <= 64 &&
            (snap = ld_ckpt_snapshot(ck)) != NULL) {
            size_t sn = 0;
            if (ld_snapshot_sparse(snap, &sn) && sn <= (1u << 20)) {
                why[0] = '\0';
                err = ld_resume_fill_sparse(r, snap, why, sizeof(why));
                must_say(err, why, "fill snapshot");
            }
        }
        ld_snapshot_destroy(snap);
        ld_ckpt_destroy(ck);
    }
    ld_resume_destroy(r);
    return 0;
}

#ifdef LD_FUZZ_REPLAY
#include "fuzz_replay.h"

/* Appends one frame of the input format. */
static void frame(FILE *f, const char *key, const uint8_t *val, size_t len)
{
    unsigned a = 0, b = 0;
    uint8_t kind;
    if (!strcmp(key, "m/header"))
        kind = 0;
    else if (sscanf(key, "m/block/%u", &a) == 1)
        kind = 1;
    else if (sscanf(key, "m/gens/%u", &a) == 1)
        kind = 2;
    else if (sscanf(key, "m/delta/%u/%u", &a, &b) == 2)
        kind = 3;
    else
        abort();
    if (!val)
        kind |= 0x80;
    if (len > 65535 || a > 255 || b > 255)
        abort();
    uint8_t hd[5] = {kind, (uint8_t)a, (uint8_t)b, (uint8_t)len,
                     (uint8_t)(len >> 8)};
    fwrite(hd, 1, 5, f);
    if (val)
        fwrite(val, 1, len, f);
}

static ld_err_t seed_emit(void *opaque, const char *key, const uint8_t *val,
                          size_t len)
{
    frame(opaque, key, val, len);
    return LD_OK;
}

static int write_seed(const char *path, uint32_t format)
{
    FILE *f = fopen(path, "wb");
    ld_trainer_conf_t c;
    memset(&c, 0, sizeof(c));
    char err[256];
    if (!f || ld_conf_set_defaults(&ld_trainer_conf_section, &c, err,
                                   sizeof(err)) != LD_OK)
        return 1;
    c.hash_bits = 6; /* 4 blocks of 16 slots */
    c.batch_size = 2;
    c.batch_span = 0;
    ld_trainer_t *t = ld_trainer_new(&c, err, sizeof(err));
    ld_conf_free(&ld_trainer_conf_section, &c);
    if (!t)
        return 1;
    ld_state_gens_t g = {0};
    g.write_format = format;
    for (uint64_t seq = 1; seq <= 3; seq++) {
        for (uint32_t i = 0; i < 6; i++) {
            uint32_t idx[2] = {(uint32_t)(seq * 7 + i * 5) % 64,
                               (uint32_t)(seq * 3 + i * 11) % 64};
            float val[2] = {1.0f, 0.5f};
            ld_example_t ex = {0};
            ex.label = (float)(i % 2);
            ex.weight = 1.0f;
            ex.sample_type = i % 2 ? LD_SAMPLE_POS : LD_SAMPLE_DEFAULT_NEG;
            ex.x = (ld_features_t){idx, val, NULL, idx[0] == idx[1] ? 1 : 2, 0};
            if (ld_trainer_add(t, &ex) != LD_OK)
                return 1;
        }
        if (ld_trainer_flush(t) != LD_OK)
            return 1;
        ld_snapshot_t *h = ld_trainer_state_head(t);
        ld_ckpt_meta_t meta = {.model = "m"};
        ld_buf_t hb = {0};
        if (!h || ld_ckpt_encode(h, &meta, &hb) != LD_OK)
            return 1;
        Learnd__V1__ResumeHeader hdr = LEARND__V1__RESUME_HEADER__INIT;
        hdr.model = "m";
        hdr.commit_seq = seq;
        hdr.model_state = (ProtobufCBinaryData){hb.len, hb.data};
        ld_state_sink_t sink = {seed_emit, f, NULL};
        if (ld_state_write_blocks(&sink, &hdr, t, &g) != LD_OK)
            return 1;
        ld_trainer_dirty_clear(t);
        free(hb.data);
        ld_snapshot_destroy(h);
    }
    ld_state_gens_free(&g);
    ld_trainer_destroy(t);
    return fclose(f) != 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--write-seed"))
        return write_seed(argv[2], 0);
    if (argc == 3 && !strcmp(argv[1], "--write-seed-v3"))
        return write_seed(argv[2], 3);
    return fz_replay_main("fuzz_state", argc, argv);
}
#endif
