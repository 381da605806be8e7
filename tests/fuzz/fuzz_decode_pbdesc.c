/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the descriptor-driven Protobuf decoder (users' own
 * messages of tests/data/pipeline/pbdesc/shop.proto, a mapping that touches
 * every construct: Timestamp, nested message, enum, wrapper, repeated
 * string and enum, both maps, oneof, sint64; plain and Confluent framing)
 * must return a record or a dead-letter reason with a detail line for any
 * bytes, never crash or read past them, keep slots inside 2^hash_bits, and
 * answer the same whatever it decoded before. With -DLD_FUZZ_REPLAY it
 * replays a corpus. */
#include <stdint.h>

#include "pipeline/decode.h"
#include "tests/data/pipeline/fixtures.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NDEC 3

static ld_pipeline_conf_t *conf(int k)
{
    ld_pipeline_conf_t *c = fx_conf_new("protobuf");
    if (!c || fx_set(c, "descriptor_set", LD_SHOP_DESC) ||
        fx_set(c, "event_message", "shop.v1.Impression") ||
        fx_set(c, "label_message", "shop.v1.Click") ||
        fx_set(c, "dense_fields",
               "f0,f1,f2,f3,f4,f5,f6,f7,f8,f9,f10,f11,f12,f13,f14,f15,f16,"
               "f17,f18,m.f19,scores.ctr,bid,delta,position") ||
        fx_set(c, "hash_fields",
               "country,ad_id,device,ctx:publisher,ctx:tags,user:user_"
               "segment,attrs.browser,slot,seen_on") ||
        fx_set(c, "protobuf_wire", k == 2 ? "confluent" : "plain"))
        abort();
    return c;
}

/* The record's observable content, for comparing two decodes. */
static uint64_t digest(ld_reason_t why, const ld_record_t *r)
{
    uint64_t h = UINT64_C(1469598103934665603) ^ (uint64_t)why;
#define MIX(x) (h = (h ^ (uint64_t)(x)) * UINT64_C(1099511628211))
    if (why != LD_REASON_NONE)
        return h;
    for (uint32_t i = 0; i < r->key_len; i++)
        MIX((uint8_t)r->key[i]);
    MIX(r->time_ms);
    MIX((int64_t)(r->label * 1024));
    MIX(r->no_label);
    for (uint32_t i = 0; i < r->x.ndense; i++) {
        uint32_t b;
        memcpy(&b, &r->x.dense[i], 4);
        MIX(b);
    }
    for (uint32_t i = 0; i < r->x.nnz; i++)
        MIX(r->x.idx[i]);
    return h;
#undef MIX
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static ld_decoder_t *dec[NDEC];
    static uint8_t other[34];
    if (!dec[0]) {
        char err[512];
        for (int k = 0; k < NDEC; k++) {
            ld_pipeline_conf_t *c = conf(k);
            ld_record_kind_t kind = k == 1 ? LD_RECORD_LABEL : LD_RECORD_EVENT;
            if (!(dec[k] = ld_decoder_new(c, kind, err, sizeof(err)))) {
                fprintf(stderr, "decoder: %s\n", err);
                abort();
            }
            fx_conf_free(c);
        }
        /* a good Impression with a map, a list and a oneof member */
        static const uint8_t good[] = {0x0a, 0x01, 'e',  0x12, 0x02, 0x08, 0x05,
                                       0xea, 0x01, 0x05, 0x0a, 0x03, 'c',  't',
                                       'r',  0xf2, 0x01, 0x06, 0x0a, 0x00, 0x12,
                                       0x02, 'o',  'k',  0xfa, 0x01, 0x01, 'x',
                                       0xe2, 0x01, 0x00, 0xc0, 0x02, 0x07};
        memcpy(other, good, sizeof(good));
    }
    for (int k = 0; k < NDEC; k++) {
        ld_record_t r;
        ld_reason_t why = ld_decoder_decode(dec[k], "k", 1, data, size, 1, &r);
        if (why == LD_REASON_NONE && r.x.nnz > 0)
            for (uint32_t i = 0; i < r.x.nnz; i++)
                if (r.x.idx[i] >= (1u << 18))
                    abort(); /* slots must stay inside 2^hash_bits */
        if (why != LD_REASON_NONE && !ld_decoder_error(dec[k])[0])
            abort(); /* every reason comes with a detail line */
        uint64_t h1 = digest(why, &r);
        /* another record in between must not change the answer */
        ld_record_t o;
        (void)ld_decoder_decode(dec[k], "o", 1, other, sizeof(other), 1, &o);
        why = ld_decoder_decode(dec[k], "k", 1, data, size, 1, &r);
        if (digest(why, &r) != h1)
            abort();
    }
    return 0;
}
