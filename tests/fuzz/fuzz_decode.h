/* SPDX-License-Identifier: Apache-2.0 */
/* The body shared by the decoder fuzz targets: any bytes give a record or a
 * dead-letter reason with a detail line, and the answer for a record does not
 * depend on what the decoder saw before it (its fast paths remember earlier
 * records). Include after defining FZ_FORMAT ("avro", "protobuf", "json")
 * and optionally FZ_EXTRA(conf, kind, data, size, why, rec, err), a check
 * that returns NULL or what is wrong. Test code, header-only. */
#ifndef LD_TESTS_FUZZ_DECODE_H
#define LD_TESTS_FUZZ_DECODE_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "pipeline/decode.h"
#include "tests/data/pipeline/fixtures.h"

/* An input is one record, or several joined by FZ_SEP: they are decoded in
 * turn, and each must get the answer it gets alone. libFuzzer finds the
 * separator through tests/fuzz/pair.dict; the replay program also tries
 * every corpus input after every other. */
#define FZ_SEP   FX_DELIM
#define FZ_SEP_N 4

/* One decode's answer, copied out of the decoder's scratch. */
typedef struct fz_answer {
    ld_reason_t why;
    char err[512];
    char key[512];
    uint32_t key_len;
    int64_t time_ms;
    double label;
    uint32_t nnz, ndense;
    uint32_t idx[4096];
    float val[4096], dense[256];
    int truncated; /* more than the copy holds: compared as far */
} fz_answer_t;

static ld_pipeline_conf_t *fz_conf(void)
{
    static ld_pipeline_conf_t *c;
    if (!c && !(c = fx_conf_new(FZ_FORMAT))) {
        fprintf(stderr, "fuzz: no config for %s\n", FZ_FORMAT);
        abort();
    }
    return c;
}

static ld_decoder_t *fz_decoder(ld_record_kind_t kind)
{
    char err[512];
    ld_decoder_t *d = ld_decoder_new(fz_conf(), kind, err, sizeof(err));
    if (!d) {
        fprintf(stderr, "decoder: %s\n", err);
        abort();
    }
    return d;
}

/* Decodes data with d into *a and checks what holds for any one record. */
static void fz_decode(ld_decoder_t *d, ld_record_kind_t kind,
                      const uint8_t *data, size_t size, fz_answer_t *a)
{
    ld_record_t r;
    memset(&r, 0, sizeof(r));
    a->why = ld_decoder_decode(d, "k", 1, data, size, 1, &r);
    snprintf(a->err, sizeof(a->err), "%s", ld_decoder_error(d));
    if (a->why != LD_REASON_NONE && !a->err[0]) {
        fprintf(stderr, "reason %s without a detail line\n",
                ld_reason_name(a->why));
        abort();
    }
#ifdef FZ_EXTRA
    if (size > 0 && size <= (size_t)fz_conf()->max_record_bytes) {
        const char *diff =
            FZ_EXTRA(fz_conf(), kind, data, size, a->why, &r, a->err);
        if (diff) {
            fprintf(stderr, "%s %zu bytes: %s\n", kind ? "label" : "event",
                    size, diff);
            abort();
        }
    }
#else
    (void)kind;
#endif
    a->key_len = a->nnz = a->ndense = 0;
    a->time_ms = 0;
    a->label = 0.0;
    a->truncated = 0;
    if (a->why != LD_REASON_NONE)
        return;
    for (uint32_t i = 0; i < r.x.nnz; i++)
        if (r.x.idx[i] >= (1u << 18)) {
            fprintf(stderr, "slot %u outside 2^hash_bits\n", r.x.idx[i]);
            abort();
        }
    a->key_len = r.key_len < sizeof(a->key) ? r.key_len : sizeof(a->key);
    memcpy(a->key, r.key, a->key_len);
    a->time_ms = r.time_ms;
    a->label = r.label;
    a->nnz = r.x.nnz < 4096 ? r.x.nnz : 4096;
    a->ndense = r.x.ndense < 256 ? r.x.ndense : 256;
    a->truncated =
        a->nnz != r.x.nnz || a->ndense != r.x.ndense || a->key_len != r.key_len;
    if (a->nnz) {
        memcpy(a->idx, r.x.idx, a->nnz * sizeof(*a->idx));
        memcpy(a->val, r.x.val, a->nnz * sizeof(*a->val));
    }
    if (a->ndense)
        memcpy(a->dense, r.x.dense, a->ndense * sizeof(*a->dense));
}

/* NULL when a and b are the same answer (bitwise values), else what differs. */
static const char *fz_differ(const fz_answer_t *a, const fz_answer_t *b)
{
    if (a->why != b->why)
        return "reason";
    if (strcmp(a->err, b->err) != 0)
        return "detail";
    if (a->key_len != b->key_len || memcmp(a->key, b->key, a->key_len) ||
        a->time_ms != b->time_ms ||
        memcmp(&a->label, &b->label, sizeof(a->label)) || a->nnz != b->nnz ||
        a->ndense != b->ndense || a->truncated != b->truncated)
        return "record";
    if (memcmp(a->idx, b->idx, a->nnz * sizeof(*a->idx)) ||
        memcmp(a->val, b->val, a->nnz * sizeof(*a->val)) ||
        memcmp(a->dense, b->dense, a->ndense * sizeof(*a->dense)))
        return "features";
    return NULL;
}

#define FZ_MAX_RECS 4

/* Decodes the n records rec[i]/len[i] in turn on one fresh decoder of each
 * kind, and each alone on another, the last one twice (its own traces must
 * not change it either); aborts when an answer differs. */
static void fz_check(const uint8_t *const *rec, const size_t *len, size_t n)
{
    static fz_answer_t alone, after;
    for (int k = 0; k < 2; k++) {
        ld_record_kind_t kind = (ld_record_kind_t)k;
        ld_decoder_t *seq = fz_decoder(kind);
        for (size_t i = 0; i < n; i++) {
            /* the first record on seq is alone: no second decoder (they
             * cost milliseconds for avro, which loads its schemas) */
            fz_decode(seq, kind, rec[i], len[i], i ? &after : &alone);
            ld_decoder_t *d0 = i ? fz_decoder(kind) : NULL;
            if (d0)
                fz_decode(d0, kind, rec[i], len[i], &alone);
            const char *diff = i ? fz_differ(&alone, &after) : NULL;
            if (!diff && i + 1 == n) {
                fz_decode(d0 ? d0 : seq, kind, rec[i], len[i], &after);
                diff = fz_differ(&alone, &after);
            }
            ld_decoder_destroy(d0);
            if (diff) {
                fprintf(stderr,
                        "%s %s record %zu of %zu: %s differs after the "
                        "records before it: alone %s '%s', after %s '%s'\n",
                        FZ_FORMAT, k ? "label" : "event", i + 1, n, diff,
                        ld_reason_name(alone.why), alone.err,
                        ld_reason_name(after.why), after.err);
                abort();
            }
        }
        ld_decoder_destroy(seq);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Splits the input at FZ_SEP into up to FZ_MAX_RECS records (the last takes
 * the rest), each in a buffer of its own size so ASan sees any overread. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *rec[FZ_MAX_RECS];
    size_t len[FZ_MAX_RECS], n = 0;
    const uint8_t *p = data, *end = data + size;
    while (n < FZ_MAX_RECS) {
        const uint8_t *sep =
            n + 1 < FZ_MAX_RECS && (size_t)(end - p) >= FZ_SEP_N
                ? fx_memmem((const char *)p, (size_t)(end - p), FZ_SEP,
                            FZ_SEP_N)
                : NULL;
        size_t m = sep ? (size_t)(sep - p) : (size_t)(end - p);
        if (!(rec[n] = malloc(m ? m : 1)))
            abort();
        if (m)
            memcpy(rec[n], p, m);
        len[n++] = m;
        if (!sep)
            break;
        p = sep + FZ_SEP_N;
    }
    fz_check((const uint8_t *const *)rec, len, n);
    for (size_t i = 0; i < n; i++)
        free(rec[i]);
    return 0;
}

#ifdef LD_FUZZ_REPLAY
/* Plain-program main: every file named (or inside a named directory) as one
 * input, then the pair property over the whole corpus: each input after
 * every other one. */
typedef struct fz_input {
    uint8_t *p;
    size_t n;
} fz_input_t;

static fz_input_t *fz_in;
static size_t fz_nin, fz_cap;

static int fz_load(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        perror(path);
        return 1;
    }
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        int rc = 0;
        char sub[4096];
        while (d && (e = readdir(d))) {
            if (e->d_name[0] == '.')
                continue;
            snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
            rc |= fz_load(sub);
        }
        if (d)
            closedir(d);
        return rc;
    }
    size_t len = 0;
    char *buf = fx_slurp(path, &len);
    if (!buf)
        return 1;
    if (fz_nin == fz_cap) {
        fz_cap = fz_cap ? 2 * fz_cap : 64;
        fz_in = realloc(fz_in, fz_cap * sizeof(*fz_in));
        if (!fz_in)
            abort();
    }
    /* exactly its size, so ASan sees any overread */
    uint8_t *exact = malloc(len ? len : 1);
    if (!exact)
        abort();
    memcpy(exact, buf, len);
    free(buf);
    fz_in[fz_nin++] = (fz_input_t){exact, len};
    return 0;
}

int main(int argc, char **argv)
{
    int rc = 0;
    for (int i = 1; i < argc; i++)
        rc |= fz_load(argv[i]);
    for (size_t i = 0; i < fz_nin; i++)
        LLVMFuzzerTestOneInput(fz_in[i].p, fz_in[i].n);
    size_t pairs = 0;
    for (size_t i = 0; i < fz_nin; i++)
        for (size_t j = 0; j < fz_nin; j++)
            if (i != j) {
                const uint8_t *rec[2] = {fz_in[j].p, fz_in[i].p};
                size_t len[2] = {fz_in[j].n, fz_in[i].n};
                fz_check(rec, len, 2);
                pairs++;
            }
    printf("fuzz_decode_%s: %zu inputs, %zu ordered pairs agree\n", FZ_FORMAT,
           fz_nin, pairs);
    for (size_t i = 0; i < fz_nin; i++)
        free(fz_in[i].p);
    free(fz_in);
    fx_conf_free(fz_conf());
    return rc;
}
#endif

#endif /* LD_TESTS_FUZZ_DECODE_H */
