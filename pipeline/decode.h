/* SPDX-License-Identifier: Apache-2.0 */
/* Record decoding without Kafka: bytes in, an ld_record_t or a dead-letter
 * reason out. The consumer, the fuzz targets and the benches share it. */
#ifndef LD_PIPELINE_DECODE_H
#define LD_PIPELINE_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "pipeline/pipeline.h"

typedef struct ld_decoder ld_decoder_t;

/* A decoder for one input topic (events or labels) of the format, field
 * mapping and schemas in conf (borrowed; only read during the call). Loads
 * and compiles Avro schemas. Returns NULL with the reason in errstr on a
 * config problem: missing or unparsable schema, a mapped field that the
 * reader schema lacks, a reader field without default that a writer lacks,
 * malformed hash_fields / crosses / schema_ids entries. Caller frees with
 * ld_decoder_destroy(). */
ld_decoder_t *ld_decoder_new(const ld_pipeline_conf_t *conf,
                             ld_record_kind_t kind, char *errstr,
                             size_t errstr_size);

/* Frees d; NULL is a no-op. */
void ld_decoder_destroy(ld_decoder_t *d);

/* Decodes one record: key/key_len is the Kafka key (NULL when absent),
 * value/len the Kafka value, kafka_ts_ms the Kafka timestamp (-1 when none).
 * All borrowed, only read during the call. Returns LD_REASON_NONE and fills
 * *out (pointers into d's scratch, valid until the next call on d; topic,
 * partition, offset set to NULL/-1), or the dead-letter reason, with a detail
 * line in ld_decoder_error(). Never fails for another cause: allocation
 * failure is reported as LD_REASON_DECODE with detail "out of memory". */
ld_reason_t ld_decoder_decode(ld_decoder_t *d, const void *key, size_t key_len,
                              const void *value, size_t len,
                              int64_t kafka_ts_ms, ld_record_t *out);

/* One-line detail of the last failed decode ("" after a success); static in
 * d, valid until the next call. */
const char *ld_decoder_error(const ld_decoder_t *d);

/* Canonical text of the feature mapping (hash function, seed, bits, dense and
 * hashed fields, namespaces, crosses), whose SHA-256 is
 * ModelSpec.feature_map_hash. Static in d; never NULL. */
const char *ld_decoder_feature_map(const ld_decoder_t *d);

/* Number of dense features an event carries (len(dense_fields)). */
uint32_t ld_decoder_dense_dim(const ld_decoder_t *d);

#endif /* LD_PIPELINE_DECODE_H */
