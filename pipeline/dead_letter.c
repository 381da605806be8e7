/* SPDX-License-Identifier: Apache-2.0 */
/* Dead letters: a record that cannot be trained goes to the dead-letter
 * topic inside the open transaction, with headers naming why, where it came
 * from and whose it is. */
#include <inttypes.h>
#include <stdio.h>

#include "pipeline/pipeline.h"
#include "pipeline/pipeline_impl.h"

#define MOD "pipeline"

ld_err_t ld_pipeline_dead_letter(ld_pipeline_t *p, const rd_kafka_message_t *m,
                                 int kind, ld_reason_t why, const char *detail)
{
    char part[16], off[24], size[24];
    if (p->cbs.dead_lettered)
        p->cbs.dead_lettered(p->cbs.opaque, p->topic[kind], m->partition,
                             m->offset);
    if (p->dry_run) {
        p->stats.dlq[kind][why]++; /* counted, not written: a replay */
        return LD_OK;
    }
    ld_err_t err = ld_pipeline_txn_begin(p);
    if (err)
        return err;
    snprintf(part, sizeof(part), "%" PRId32, m->partition);
    snprintf(off, sizeof(off), "%" PRId64, m->offset);
    snprintf(size, sizeof(size), "%zu", m->len);
    rd_kafka_headers_t *h = rd_kafka_headers_new(8);
    const char *reason = ld_reason_name(why);
    rd_kafka_header_add(h, "learnd.error", -1, reason, -1);
    rd_kafka_header_add(h, "learnd.error.detail", -1, detail, -1);
    rd_kafka_header_add(h, "learnd.src.topic", -1, p->topic[kind], -1);
    rd_kafka_header_add(h, "learnd.src.partition", -1, part, -1);
    rd_kafka_header_add(h, "learnd.src.offset", -1, off, -1);
    /* Several models may share one dead-letter topic: say whose it is. */
    rd_kafka_header_add(h, "learnd.group", -1, p->dlq_group, -1);
    if (p->dlq_model[0])
        rd_kafka_header_add(h, "learnd.model", -1, p->dlq_model, -1);
    size_t vlen = m->len;
    if (vlen > p->dlq_max) {
        vlen = p->dlq_max;
        rd_kafka_header_add(h, "learnd.src.size", -1, size, -1);
    }
    for (;;) {
        rd_kafka_resp_err_t e =
            rd_kafka_producev(p->producer, RD_KAFKA_V_TOPIC(p->dlq_topic),
                              RD_KAFKA_V_KEY(m->key, m->key_len),
                              RD_KAFKA_V_VALUE(m->payload, vlen),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
        if (!e)
            break;
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(p->producer, 100);
            continue;
        }
        rd_kafka_headers_destroy(h);
        ld_log(LD_LOG_ERR, MOD, "msg=\"dead-letter produce failed\" err=\"%s\"",
               rd_kafka_err2str(e));
        return LD_ERR_KAFKA;
    }
    p->stats.dlq[kind][why]++;
    if (ld_log_debug_on(MOD)) {
        char q[600];
        ld_log(LD_LOG_DEBUG, MOD,
               "msg=\"dead-lettered\" topic=%s partition=%s offset=%s "
               "reason=%s detail=%s",
               p->topic[kind], part, off, reason,
               ld_log_quote(q, sizeof(q), detail));
    }
    return LD_OK;
}
