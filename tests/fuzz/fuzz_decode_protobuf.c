/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the protobuf decoder (events and labels, fixture
 * mapping) answers any bytes with a record or a dead-letter reason, never
 * crashes or reads past them, answers a record the same whatever came before
 * it (tests/fuzz/fuzz_decode.h), and gives exactly the answer of the
 * protobuf-c path it replaced (tests/data/pipeline/pb_ref.h). With
 * -DLD_FUZZ_REPLAY it replays a corpus. */
#define FZ_FORMAT "protobuf"
#define FZ_EXTRA(conf, kind, data, size, why, rec, err)                        \
    pbref_compare(conf, kind, "k", 1, data, size, 1, why, rec, err)
#include "tests/data/pipeline/pb_ref.h"
#include "tests/fuzz/fuzz_decode.h"
