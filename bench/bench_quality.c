/* SPDX-License-Identifier: Apache-2.0 */
/* Quality bench driver: feeds a stream of JSON or Avro events through
 * learnd's real decode (the pipeline's JSON or Avro decoder, the field map,
 * feature hashing) and training path (the
 * trainer library, every setting at its config-table default unless --set
 * says otherwise) and writes each example's prequential prediction, so that
 * bench/quality.py can score learnd, VW and River on the same examples in
 * the same order. Prints examples/s; never pass/fail.
 *
 * Input, JSON (the default): one example per line, "<label 0|1><TAB><JSON
 * event>". Input with --avro SCHEMA.avsc: records of "<label byte 0|1>
 * <u32 little-endian length><Kafka value>", the value in Confluent framing
 * (magic 0, schema id 1) with SCHEMA.avsc as both the event schema and
 * schema id 1's writer schema, as a user with a schema registry configures
 * it. The event carries event_time (ms) and the fields named by --dense
 * and --hash.
 * Usage: bench_quality IN OUT.f32 --dense a,b --hash c,d [--avro S.avsc]
 *        [--set key=value]...
 * OUT.f32 receives one little-endian float32 p(y=1) per example. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pipeline/decode.h"
#include "trainer/trainer.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct sink {
    float *pred;
    size_t n, cap;
} sink_t;

static void on_scored(void *opaque, const ld_scored_t *s, size_t n)
{
    sink_t *k = opaque;
    for (size_t i = 0; i < n && k->n < k->cap; i++)
        k->pred[k->n++] = s[i].pred;
}

static int add_list(ld_strlist_t *l, const char *csv)
{
    char *dup = strdup(csv), *save = NULL;
    for (char *tok = strtok_r(dup, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save))
        if (ld_conf_strlist_add(l, tok) != LD_OK) {
            free(dup);
            return -1;
        }
    free(dup);
    return 0;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n] = 0;
        *len = (size_t)n;
    }
    return buf;
}

int main(int argc, char **argv)
{
    char err[512];
    if (argc < 3) {
        fprintf(stderr, "usage: bench_quality IN OUT.f32 [--dense a,b] "
                        "[--hash c,d] [--avro schema.avsc] "
                        "[--set trainer_key=value]...\n");
        return 2;
    }
    ld_pipeline_conf_t pc = {0};
    ld_trainer_conf_t tc = {0};
    if (ld_conf_set_defaults(&ld_pipeline_conf_section, &pc, err,
                             sizeof(err)) != LD_OK ||
        ld_conf_set_defaults(&ld_trainer_conf_section, &tc, err, sizeof(err)) !=
            LD_OK) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    pc.format = LD_FORMAT_JSON;
    for (int i = 3; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--dense")) {
            if (add_list(&pc.dense_fields, argv[i + 1]))
                return 1;
        } else if (!strcmp(argv[i], "--hash")) {
            if (add_list(&pc.hash_fields, argv[i + 1]))
                return 1;
        } else if (!strcmp(argv[i], "--avro")) {
            char id[4096];
            snprintf(id, sizeof(id), "1=%s", argv[i + 1]);
            free(pc.event_schema);
            pc.event_schema = strdup(argv[i + 1]);
            pc.format = LD_FORMAT_AVRO;
            if (!pc.event_schema || ld_conf_strlist_add(&pc.schema_ids, id))
                return 1;
        } else if (!strcmp(argv[i], "--set")) {
            char *kv = strdup(argv[i + 1]), *eq = strchr(kv, '=');
            const ld_conf_row_t *row =
                eq ? (*eq = 0, ld_conf_find(&ld_trainer_conf_section, kv))
                   : NULL;
            if (!row || ld_conf_parse_value(row, eq + 1, &tc, err,
                                            sizeof(err)) != LD_OK) {
                fprintf(stderr, "--set %s: %s\n", argv[i + 1],
                        row ? err : "unknown trainer key");
                return 2;
            }
            free(kv);
        } else {
            fprintf(stderr, "unknown option %s\n", argv[i]);
            return 2;
        }
    }
    pc.hash_bits = tc.hash_bits; /* as the daemon does */
    tc.dense_dim = (int64_t)pc.dense_fields.n;

    size_t len;
    char *in = slurp(argv[1], &len);
    if (!in) {
        perror(argv[1]);
        return 1;
    }
    const int avro = pc.format == LD_FORMAT_AVRO;
    size_t lines = 0; /* examples, at most */
    if (avro)
        lines = len / 5;
    else
        for (size_t i = 0; i < len; i++)
            lines += in[i] == '\n';

    ld_decoder_t *dec = ld_decoder_new(&pc, LD_RECORD_EVENT, err, sizeof(err));
    ld_trainer_t *t = dec ? ld_trainer_new(&tc, err, sizeof(err)) : NULL;
    if (!t) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    sink_t sink = {malloc(lines * sizeof(float)), 0, lines};
    ld_trainer_set_scored_cb(t, on_scored, &sink);

    /* Decode everything first (timed), copying each example's features,
     * then train (timed apart): the learn step's rate is what
     * docs/ARCHITECTURE.md's performance targets compares; decode + learn is
     * what a text-file learner like VW does. */
    ld_example_t *ex = calloc(lines ? lines : 1, sizeof(*ex));
    size_t n = 0, bad = 0, fcap = lines * 16 + 16, fn = 0;
    uint32_t *fidx = malloc(fcap * sizeof(uint32_t));
    float *fval = malloc(fcap * sizeof(float));
    float *fden = malloc((lines * (size_t)tc.dense_dim + 1) * sizeof(float));
    size_t *foff = malloc((lines + 1) * sizeof(size_t));
    /* Touch the copies' pages before the clock starts: the daemon reuses
     * its buffers, and first-touch page faults are this driver's cost. */
    memset(fidx, 0, fcap * sizeof(uint32_t));
    memset(fval, 0, fcap * sizeof(float));
    memset(fden, 0, (lines * (size_t)tc.dense_dim + 1) * sizeof(float));
    memset(foff, 0, (lines + 1) * sizeof(size_t));
    char key[32];
    double t0 = now_s();
    for (char *p = in, *end = in + len; p < end;) {
        char *val, *nl;
        size_t vlen;
        if (avro) { /* label byte, u32 LE length, value */
            uint32_t l32;
            if (end - p < 5)
                break;
            memcpy(&l32, p + 1, 4);
            val = p + 5;
            vlen = l32;
            if (vlen > (size_t)(end - val)) {
                fprintf(stderr, "record %zu: truncated\n", n + 1);
                return 1;
            }
            nl = val + vlen;
        } else {
            nl = memchr(p, '\n', (size_t)(end - p));
            if (!nl)
                nl = end;
            char *tab = memchr(p, '\t', (size_t)(nl - p));
            val = tab ? tab + 1 : NULL;
            vlen = tab ? (size_t)(nl - tab - 1) : 0;
        }
        if (val) {
            int kl = snprintf(key, sizeof(key), "%zu", n);
            ld_record_t r;
            ld_reason_t why =
                ld_decoder_decode(dec, key, (size_t)kl, val, vlen, -1, &r);
            if (why != LD_REASON_NONE) {
                fprintf(stderr, "line %zu: %s\n", n + 1, ld_decoder_error(dec));
                return 1;
            }
            if (fn + r.x.nnz > fcap) {
                fcap = (fn + r.x.nnz) * 2;
                fidx = realloc(fidx, fcap * sizeof(uint32_t));
                fval = realloc(fval, fcap * sizeof(float));
            }
            memcpy(fidx + fn, r.x.idx, r.x.nnz * sizeof(uint32_t));
            memcpy(fval + fn, r.x.val, r.x.nnz * sizeof(float));
            memcpy(fden + n * (size_t)tc.dense_dim, r.x.dense,
                   r.x.ndense * sizeof(float));
            foff[n] = fn;
            fn += r.x.nnz;
            ld_example_t *e = &ex[n];
            e->x.nnz = r.x.nnz;
            e->x.ndense = r.x.ndense;
            e->label = p[0] == '1' || p[0] == 1 ? 1.0f : 0.0f;
            e->weight = 1.0f;
            e->sample_type =
                e->label > 0 ? LD_SAMPLE_POS : LD_SAMPLE_DEFAULT_NEG;
            e->event_time_ms = r.time_ms;
            e->label_time_ms = r.time_ms;
            e->offset = (int64_t)n;
            n++;
        }
        p = avro ? nl : nl + 1;
    }
    double t_dec = now_s() - t0;
    for (size_t i = 0; i < n; i++) {
        ex[i].x.idx = fidx + foff[i];
        ex[i].x.val = fval + foff[i];
        ex[i].x.dense = fden + i * (size_t)tc.dense_dim;
    }
    t0 = now_s();
    for (size_t i = 0; i < n; i++)
        if (ld_trainer_add(t, &ex[i]) != LD_OK)
            bad++;
    if (ld_trainer_flush(t) != LD_OK)
        return 1;
    double t_learn = now_s() - t0;
    if (bad || sink.n != n) {
        fprintf(stderr, "%zu of %zu examples refused, %zu scored\n", bad, n,
                sink.n);
        return 1;
    }
    FILE *f = fopen(argv[2], "wb");
    if (!f || fwrite(sink.pred, sizeof(float), sink.n, f) != sink.n) {
        perror(argv[2]);
        return 1;
    }
    fclose(f);
    printf("examples=%zu nnz=%zu learn_s=%.4f examples_per_s=%.0f "
           "ns_per_nnz=%.1f decode_learn_examples_per_s=%.0f batch_size=%lld "
           "dense_dim=%lld hash_bits=%lld\n",
           n, fn, t_learn, (double)n / t_learn,
           t_learn * 1e9 / (double)(fn + n * (size_t)tc.dense_dim),
           (double)n / (t_learn + t_dec), (long long)tc.batch_size,
           (long long)tc.dense_dim, (long long)tc.hash_bits);
    ld_trainer_destroy(t);
    ld_decoder_destroy(dec);
    ld_conf_free(&ld_pipeline_conf_section, &pc);
    ld_conf_free(&ld_trainer_conf_section, &tc);
    free(sink.pred);
    free(in);
    free(ex);
    free(fidx);
    free(fval);
    free(fden);
    free(foff);
    return 0;
}
