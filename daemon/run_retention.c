/* SPDX-License-Identifier: Apache-2.0 */
/* Whether the input a run resumes from, or a replay re-reads, is still in
 * the topics: retention may have deleted it (issue #17). */
#include "daemon/run.h"

#include <librdkafka/rdkafka.h>

#include "pipeline/kafka.h"

int ld_run_check_retained(const ld_strlist_t *kafka, const ld_run_start_t *want,
                          size_t n, int timeout_ms, ld_run_gap_cb *gap,
                          void *opaque, char *errstr, size_t errstr_size)
{
    size_t asked = 0;
    for (size_t i = 0; i < n; i++)
        asked += want[i].offset >= 0;
    if (!asked)
        return 0;
    /* A consumer without a group: it only asks for watermarks. */
    rd_kafka_conf_t *conf = ld_kafka_conf_new(kafka, errstr, errstr_size);
    if (!conf)
        return -1;
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, errstr_size);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    int gaps = 0;
    for (size_t i = 0; i < n; i++) {
        const ld_run_start_t *w = &want[i];
        if (w->offset < 0)
            continue;
        int64_t lo = -1, hi = -1;
        rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(
            rk, w->topic, w->partition, &lo, &hi, timeout_ms);
        if (err) {
            snprintf(errstr, errstr_size,
                     "cannot ask where topic %s partition %d starts: %s",
                     w->topic, (int)w->partition, rd_kafka_err2str(err));
            gaps = -1;
            break;
        }
        if (lo > w->offset) {
            gaps++;
            gap(opaque, w->topic, w->partition, w->offset, lo);
        }
    }
    rd_kafka_destroy(rk);
    return gaps;
}
