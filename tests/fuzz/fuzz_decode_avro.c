/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the avro decoder (events and labels, fixture mapping)
 * answers any bytes with a record or a dead-letter reason, never crashes or
 * reads past them, and answers a record the same whatever came before it
 * (tests/fuzz/fuzz_decode.h). With -DLD_FUZZ_REPLAY it replays a corpus. */
#define FZ_FORMAT "avro"
#include "tests/fuzz/fuzz_decode.h"
