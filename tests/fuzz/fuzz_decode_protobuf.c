/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the protobuf decoder (events and labels, fixture mapping)
 * must return a record or a dead-letter reason for any bytes, never crash
 * or read past them, and give exactly the answer of the protobuf-c path it
 * replaced (tests/data/pipeline/pb_ref.h). With -DLD_FUZZ_REPLAY it replays
 * a corpus. */
#include <stdint.h>

#include "pipeline/decode.h"
#include "tests/data/pipeline/fixtures.h"
#include "tests/data/pipeline/pb_ref.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static ld_decoder_t *dec[2];
    static ld_pipeline_conf_t *c;
    if (!dec[0]) {
        char err[512];
        c = fx_conf_new("protobuf");
        for (int k = 0; k < 2; k++)
            if (!c || !(dec[k] = ld_decoder_new(c, (ld_record_kind_t)k, err,
                                                sizeof(err)))) {
                fprintf(stderr, "decoder: %s\n", err);
                abort();
            }
    }
    for (int k = 0; k < 2; k++) {
        ld_record_t r;
        ld_reason_t why = ld_decoder_decode(dec[k], "k", 1, data, size, 1, &r);
        if (why == LD_REASON_NONE && r.x.nnz > 0 && r.x.idx[0] >= (1u << 18))
            abort(); /* slots must stay inside 2^hash_bits */
        if (why != LD_REASON_NONE && !ld_decoder_error(dec[k])[0])
            abort(); /* every reason comes with a detail line */
        /* the reference sees what ld_decoder_decode passes on */
        if (size == 0 || size > (size_t)c->max_record_bytes)
            continue;
        const char *diff =
            pbref_compare(c, (ld_record_kind_t)k, "k", 1, data, size, 1, why,
                          &r, ld_decoder_error(dec[k]));
        if (diff) {
            fprintf(stderr, "%s %zu bytes: %s\n", k ? "label" : "event", size,
                    diff);
            abort();
        }
    }
    return 0;
}
