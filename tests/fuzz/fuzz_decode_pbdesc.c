/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the descriptor-driven Protobuf decoder (users' own
 * messages, tests/data/pipeline/pbdesc/shop.proto) answers any bytes with a
 * record or a dead-letter reason with a detail line, never crashes or reads
 * past them, and answers a record the same whatever came before it
 * (tests/fuzz/fuzz_decode.h, on the fixtures' mapping); and so do two more
 * decoders on the same bytes (FZ_EXTRA) whose mapping touches every
 * construct the plan compiles: Timestamp, nested message, enum, wrapper,
 * repeated string and packed enum, both maps, oneof, sint64, and the
 * Confluent framing. With -DLD_FUZZ_REPLAY it replays a corpus. */
#include <stdint.h>

#include "pipeline/decode.h"
#include "tests/data/pipeline/fixtures.h"

static const char *rich_check(ld_record_kind_t kind, const uint8_t *data,
                              size_t size);

#define FZ_FORMAT "pbdesc"
#define FZ_EXTRA(conf, kind, data, size, why, rec, err)                        \
    rich_check(kind, data, size)
#include "tests/fuzz/fuzz_decode.h"

#define NRICH 2

static ld_decoder_t *rich_decoder(int confluent)
{
    char err[512];
    ld_pipeline_conf_t *c = fx_conf_new("pbdesc");
    if (!c ||
        fx_set(c, "dense_fields",
               "f0,f1,f2,f3,f4,f5,f6,f7,f8,f9,f10,f11,f12,f13,f14,f15,f16,"
               "f17,f18,m.f19,scores.ctr,bid,delta,position") ||
        fx_set(c, "hash_fields",
               "country,ad_id,device,ctx:publisher,ctx:tags,user:user_"
               "segment,attrs.browser,slot,seen_on") ||
        fx_set(c, "protobuf_wire", confluent ? "confluent" : "plain"))
        abort();
    ld_decoder_t *d = ld_decoder_new(c, LD_RECORD_EVENT, err, sizeof(err));
    if (!d) {
        fprintf(stderr, "decoder: %s\n", err);
        abort();
    }
    fx_conf_free(c);
    return d;
}

/* The rich decoders' answer: reason, detail and slots in range, and the
 * same answer on a second decode (their plan keeps no state, and the field
 * map's scratch must not leak from one record into the next). */
static const char *rich_check(ld_record_kind_t kind, const uint8_t *data,
                              size_t size)
{
    static ld_decoder_t *d[NRICH];
    if (kind != LD_RECORD_EVENT)
        return NULL;
    for (int k = 0; k < NRICH; k++) {
        if (!d[k])
            d[k] = rich_decoder(k);
        ld_record_t r;
        ld_reason_t why = ld_decoder_decode(d[k], "k", 1, data, size, 1, &r);
        if (why != LD_REASON_NONE && !ld_decoder_error(d[k])[0])
            return "rich mapping: a reason without a detail line";
        uint64_t h = why;
        for (uint32_t i = 0; why == LD_REASON_NONE && i < r.x.nnz; i++) {
            if (r.x.idx[i] >= (1u << 18))
                return "rich mapping: slot outside 2^hash_bits";
            h = h * 31 + r.x.idx[i];
        }
        for (uint32_t i = 0; why == LD_REASON_NONE && i < r.x.ndense; i++) {
            uint32_t b;
            memcpy(&b, &r.x.dense[i], 4);
            h = h * 31 + b;
        }
        ld_reason_t why2 = ld_decoder_decode(d[k], "k", 1, data, size, 1, &r);
        uint64_t h2 = why2;
        for (uint32_t i = 0; why2 == LD_REASON_NONE && i < r.x.nnz; i++)
            h2 = h2 * 31 + r.x.idx[i];
        for (uint32_t i = 0; why2 == LD_REASON_NONE && i < r.x.ndense; i++) {
            uint32_t b;
            memcpy(&b, &r.x.dense[i], 4);
            h2 = h2 * 31 + b;
        }
        if (h != h2)
            return "rich mapping: a second decode of the same bytes differs";
    }
    return NULL;
}
