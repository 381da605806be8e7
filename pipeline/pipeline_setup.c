/* SPDX-License-Identifier: Apache-2.0 */
/* The ingest stage's setup: the consumer and the (transactional) producer,
 * the co-partitioning check, the wake-up pipe of time-aligned reading and
 * the subscription or a replay's manual assignment. */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pipeline/pipeline_impl.h"

static int props_has(const ld_strlist_t *kafka, const char *key)
{
    for (size_t i = 0; kafka && i + 1 < kafka->n; i += 2)
        if (strcmp(kafka->v[i], key) == 0)
            return 1;
    return 0;
}

/* Partition count of topic, or -1 with errstr. */
static int partition_count(rd_kafka_t *rk, const char *topic, int timeout_ms,
                           char *errstr, size_t errstr_size)
{
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    int n = -1;
    if (!t) {
        snprintf(errstr, errstr_size, "topic %s: %s", topic,
                 rd_kafka_err2str(rd_kafka_last_error()));
        return -1;
    }
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, t, &md, timeout_ms);
    if (e) {
        snprintf(errstr, errstr_size, "metadata of topic %s: %s", topic,
                 rd_kafka_err2str(e));
    } else if (md->topic_cnt != 1 || md->topics[0].err) {
        snprintf(errstr, errstr_size, "topic %s: %s", topic,
                 md->topic_cnt ? rd_kafka_err2str(md->topics[0].err)
                               : "not in metadata");
    } else {
        n = md->topics[0].partition_cnt;
        if (n == 0)
            snprintf(errstr, errstr_size, "topic %s does not exist", topic);
    }
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(t);
    return n > 0 ? n : -1;
}

static ld_err_t set_default(rd_kafka_conf_t *c, const ld_strlist_t *kafka,
                            const char *key, const char *val, char *errstr,
                            size_t errstr_size)
{
    if (props_has(kafka, key))
        return LD_OK;
    return ld_kafka_conf_set(c, key, val, errstr, errstr_size);
}

/* The consumer's settings: tuned defaults the kafka: map may override,
 * then forced values it may not. */
static const char *const consumer_tuned[][2] = {
    {"fetch.wait.max.ms", "100"},
    {"fetch.min.bytes", "1"},
    {"fetch.message.max.bytes", "4194304"},
    {"fetch.max.bytes", "67108864"},
    /* librdkafka 2.0.2 checks this against the whole consumer queue:
     * at 200k every partition stopped fetching for ~0.8 s at a time
     * (bench_e2e: ingest 332k -> 869k rec/s). The kbytes bound below
     * is the real limit. */
    {"queued.min.messages", "10000000"},
    {"queued.max.messages.kbytes", "262144"},
    {"check.crcs", "false"},
    {"auto.offset.reset", "earliest"},
};
/* learnd's own consumer reads every partition from its own queue (see
 * "Time-aligned reading"), and librdkafka then applies the queue bounds per
 * partition: pipeline.prefetch_memory is shared by the partitions of both
 * topics (split_bounds), instead of 256 MiB in all. A single-queue consumer
 * (ld_pipeline_consumer_settings) keeps the values above. */
static const char *const consumer_split[] = {"queued.max.messages.kbytes",
                                             "fetch.message.max.bytes"};

/* Each of the 2 * nparts partitions' share of budget: one fetch (a third,
 * 1 to 16 MiB) and a queue of the rest (1 to 64 MiB). librdkafka's bounds
 * are fixed when the consumer is made, so they are shared over every
 * partition this instance may be assigned, not over those it holds now:
 * the budget holds whatever a rebalance hands it. At the default, 64 + 64
 * partitions get what they always had (2 MiB + 1 MiB) and 4 + 4 get
 * 32 MiB + 16 MiB. */
static void split_bounds(int64_t budget, int32_t nparts, char vals[2][24])
{
    const int64_t mib = 1024 * 1024;
    int64_t per = budget / (2 * (int64_t)(nparts > 0 ? nparts : 1));
    int64_t fetch = per / 3;
    fetch = fetch < mib ? mib : fetch > 16 * mib ? 16 * mib : fetch;
    int64_t queue = per - fetch;
    queue = queue < mib ? mib : queue > 64 * mib ? 64 * mib : queue;
    snprintf(vals[0], 24, "%" PRId64, queue / 1024);
    snprintf(vals[1], 24, "%" PRId64, fetch);
}
static const char *const consumer_forced[][2] = {
    {"enable.auto.commit", "false"},
    {"enable.auto.offset.store", "false"},
    {"isolation.level", "read_committed"},
    {"partition.assignment.strategy", "range"},
    {"enable.partition.eof", "true"}, /* ld_pipeline_caught_up() */
};

void ld_pipeline_consumer_settings(ld_pipeline_setting_cb *set, void *opaque)
{
    for (size_t i = 0; i < sizeof(consumer_tuned) / sizeof(*consumer_tuned);
         i++)
        set(opaque, consumer_tuned[i][0], consumer_tuned[i][1]);
    for (size_t i = 0; i < sizeof(consumer_forced) / sizeof(*consumer_forced);
         i++)
        set(opaque, consumer_forced[i][0], consumer_forced[i][1]);
}

static rd_kafka_t *consumer_new(ld_pipeline_t *p, const ld_pipeline_conf_t *c,
                                const ld_strlist_t *kafka, const char *txn_id,
                                int timeout_ms, char *errstr,
                                size_t errstr_size)
{
    /* The prefetch bounds are shared by the partitions: count them first
     * (through the producer: the consumer is made with them). */
    int nparts = partition_count(p->producer, p->topic[0], timeout_ms, errstr,
                                 errstr_size);
    if (nparts < 0)
        return NULL;
    char split[2][24];
    split_bounds(c->prefetch_memory, nparts, split);
    ld_log(LD_LOG_INFO, MOD,
           "msg=\"prefetch per partition\" partitions=%d queue_kib=%s "
           "fetch_bytes=%s",
           (int)(2 * nparts), split[0], split[1]);
    rd_kafka_conf_t *conf = ld_kafka_conf_new(kafka, errstr, errstr_size);
    if (!conf)
        return NULL;
    p->reset_beginning = !props_has(kafka, "auto.offset.reset");
    if (set_default(conf, kafka, "client.id", "learnd-consumer", errstr,
                    errstr_size))
        goto err;
    for (size_t i = 0; i < sizeof(consumer_tuned) / sizeof(*consumer_tuned);
         i++) {
        const char *k = consumer_tuned[i][0], *v = consumer_tuned[i][1];
        for (size_t j = 0; j < 2; j++)
            if (strcmp(consumer_split[j], k) == 0)
                v = split[j];
        if (set_default(conf, kafka, k, v, errstr, errstr_size))
            goto err;
    }
    for (size_t i = 0; i < sizeof(consumer_forced) / sizeof(*consumer_forced);
         i++) {
        const char *k = consumer_forced[i][0], *v = consumer_forced[i][1];
        if (props_has(kafka, k))
            ld_log(LD_LOG_WARN, MOD,
                   "msg=\"kafka setting overridden for the consumer\" "
                   "key=%s value=%s",
                   k, v);
        if (ld_kafka_conf_set(conf, k, v, errstr, errstr_size))
            goto err;
    }
    if (ld_kafka_conf_set(conf, "group.id", c->group_id, errstr, errstr_size))
        goto err;
    /* Static membership keyed like the producer's transactional.id: a
     * restarted instance takes its partitions back at once (no rebalance,
     * no session timeout), and a second instance with the same id fences
     * the first one's consumer as well as its producer. */
    if (txn_id && *txn_id &&
        set_default(conf, kafka, "group.instance.id", txn_id, errstr,
                    errstr_size))
        goto err;
    rd_kafka_conf_set_rebalance_cb(conf, ld_pipeline_rebalance_cb);
    rd_kafka_conf_set_opaque(conf, p);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, errstr_size);
    if (!rk)
        goto err;
    return rk;
err:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

void ld_pipeline_delivered(rd_kafka_t *rk, const rd_kafka_message_t *m,
                           void *opaque)
{
    (void)rk;
    (void)opaque;
    /* Producers that need the offset of a record (a checkpoint manifest
     * names its first chunk's) pass an int64_t * as the message opaque;
     * the publisher thread waits on it while any thread may poll. */
    if (m->_private)
        atomic_store_explicit((_Atomic int64_t *)m->_private,
                              m->err ? -1 : m->offset, memory_order_release);
    /* records purged by an abort are expected; the abort is logged */
    if (m->err && m->err != RD_KAFKA_RESP_ERR__PURGE_QUEUE &&
        m->err != RD_KAFKA_RESP_ERR__PURGE_INFLIGHT)
        ld_log(LD_LOG_ERR, MOD, "msg=\"produce failed\" topic=%s err=\"%s\"",
               rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err));
}

static rd_kafka_t *producer_new(const ld_strlist_t *kafka, const char *txn_id,
                                char *errstr, size_t errstr_size)
{
    rd_kafka_conf_t *conf = ld_kafka_conf_new(kafka, errstr, errstr_size);
    if (!conf)
        return NULL;
    if (set_default(conf, kafka, "linger.ms", "5", errstr, errstr_size) ||
        set_default(conf, kafka, "client.id", "learnd-producer", errstr,
                    errstr_size) ||
        ld_kafka_conf_set(conf, "enable.idempotence", "true", errstr,
                          errstr_size) ||
        (txn_id && *txn_id &&
         ld_kafka_conf_set(conf, "transactional.id", txn_id, errstr,
                           errstr_size)))
        goto err;
    rd_kafka_conf_set_dr_msg_cb(conf, ld_pipeline_delivered);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errstr_size);
    if (!rk)
        goto err;
    return rk;
err:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

/* The wake-up pipe of time-aligned reading: librdkafka writes to it when
 * the consumer queue gets records. Without it every partition stays on the
 * consumer queue: records then come in fetch order. */
static void wake_open(ld_pipeline_t *p)
{
    if (pipe(p->wake) != 0 || fcntl(p->wake[0], F_SETFL, O_NONBLOCK) ||
        fcntl(p->wake[1], F_SETFL, O_NONBLOCK) ||
        fcntl(p->wake[0], F_SETFD, FD_CLOEXEC) ||
        fcntl(p->wake[1], F_SETFD, FD_CLOEXEC)) {
        ld_log(LD_LOG_WARN, MOD,
               "msg=\"no wake-up pipe: partitions are read in fetch order\" "
               "err=\"%s\"",
               strerror(errno));
        for (int i = 0; i < 2; i++)
            if (p->wake[i] >= 0)
                close(p->wake[i]);
        p->wake[0] = p->wake[1] = -1;
    } else if ((p->cq = rd_kafka_queue_get_consumer(p->consumer))) {
        rd_kafka_queue_io_event_enable(p->cq, p->wake[1], "c", 1);
    }
}

ld_pipeline_t *ld_pipeline_new(const ld_pipeline_conf_t *conf,
                               const ld_strlist_t *kafka,
                               const char *transactional_id,
                               const ld_pipeline_cbs_t *cbs, int timeout_ms,
                               char *errstr, size_t errstr_size)
{
    ld_pipeline_t *p = calloc(1, sizeof(*p));
    if (!p) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    if (cbs)
        p->cbs = *cbs;
    p->refill = -1;
    p->wake[0] = p->wake[1] = -1;
    if (!conf->events_topic || !*conf->events_topic || !conf->labels_topic ||
        !*conf->labels_topic) {
        snprintf(errstr, errstr_size,
                 "pipeline.events_topic and pipeline.labels_topic are "
                 "required");
        goto err;
    }
    if (strcmp(conf->events_topic, conf->labels_topic) == 0) {
        snprintf(errstr, errstr_size,
                 "pipeline.events_topic and labels_topic are both '%s'",
                 conf->events_topic);
        goto err;
    }
    if (!(p->topic[0] = strdup(conf->events_topic)) ||
        !(p->topic[1] = strdup(conf->labels_topic)) ||
        !(p->dlq_topic = strdup(conf->dlq_topic ? conf->dlq_topic : "")) ||
        !(p->dlq_group = strdup(conf->group_id ? conf->group_id : "")) ||
        !(p->dlq_model = strdup(conf->model ? conf->model : ""))) {
        snprintf(errstr, errstr_size, "out of memory");
        goto err;
    }
    p->dlq_max = (size_t)conf->dlq_max_bytes;
    for (int k = 0; k < 2; k++)
        if (!(p->dec[k] = ld_decoder_new(conf, (ld_record_kind_t)k, errstr,
                                         errstr_size)))
            goto err;

    p->transactional = transactional_id && *transactional_id;
    if (!(p->producer =
              producer_new(kafka, transactional_id, errstr, errstr_size)))
        goto err;
    if (p->transactional) {
        rd_kafka_error_t *e =
            rd_kafka_init_transactions(p->producer, timeout_ms);
        if (e) {
            snprintf(errstr, errstr_size, "init_transactions: %s",
                     rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
            goto err;
        }
    }
    if (!(p->consumer = consumer_new(p, conf, kafka, transactional_id,
                                     timeout_ms, errstr, errstr_size)))
        goto err;
    for (int k = 0; k < 2; k++)
        if (!(p->rkt[k] = rd_kafka_topic_new(p->consumer, p->topic[k], NULL))) {
            snprintf(errstr, errstr_size, "topic %s: %s", p->topic[k],
                     rd_kafka_err2str(rd_kafka_last_error()));
            goto err;
        }

    /* Co-partitioned inputs (docs/ARCHITECTURE.md, "The input contract"):
     * partition p of events only ever joins partition p of
     * labels, so both topics must have the same partition count. */
    int ne = partition_count(p->consumer, p->topic[0], timeout_ms, errstr,
                             errstr_size);
    if (ne < 0)
        goto err;
    int nl = partition_count(p->consumer, p->topic[1], timeout_ms, errstr,
                             errstr_size);
    if (nl < 0)
        goto err;
    if (ne != nl) {
        snprintf(errstr, errstr_size,
                 "events topic '%s' has %d partitions and labels topic '%s' "
                 "has %d: they are not co-partitioned (same partition count "
                 "and key are required); repartition one of them",
                 p->topic[0], ne, p->topic[1], nl);
        goto err;
    }

    p->nparts = ne;
    rd_kafka_poll_set_consumer(p->consumer);
    wake_open(p);
    if (conf->assign_all) {
        if (ld_pipeline_assign_all(p) != LD_OK) {
            snprintf(errstr, errstr_size, "cannot assign the partitions");
            goto err;
        }
        return p;
    }
    rd_kafka_topic_partition_list_t *subs =
        rd_kafka_topic_partition_list_new(2);
    rd_kafka_topic_partition_list_add(subs, p->topic[0], RD_KAFKA_PARTITION_UA);
    rd_kafka_topic_partition_list_add(subs, p->topic[1], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(p->consumer, subs);
    rd_kafka_topic_partition_list_destroy(subs);
    if (e) {
        snprintf(errstr, errstr_size, "subscribe: %s", rd_kafka_err2str(e));
        goto err;
    }
    ld_log(LD_LOG_INFO, MOD,
           "msg=\"subscribed\" events=%s labels=%s partitions=%d "
           "transactional=%s",
           p->topic[0], p->topic[1], ne, p->transactional ? "yes" : "no");
    return p;
err:
    p->closed = 1; /* not subscribed: nothing to leave */
    ld_pipeline_destroy(p);
    return NULL;
}

/* A replay's manual assignment of every partition (no group join: a
 * subscription would join in the background and rebalance under it). */
ld_err_t ld_pipeline_assign_all(ld_pipeline_t *p)
{
    rd_kafka_topic_partition_list_t *l =
        rd_kafka_topic_partition_list_new(2 * p->nparts);
    if (!l)
        return LD_ERR_NOMEM;
    for (int k = 0; k < 2; k++)
        for (int32_t i = 0; i < p->nparts; i++)
            rd_kafka_topic_partition_list_add(l, p->topic[k], i);
    /* the same path as a group assignment: positions, the assigned
     * callback (which may set start offsets), rd_kafka_assign() */
    ld_pipeline_rebalance_cb(p->consumer, RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS,
                             l, p);
    rd_kafka_topic_partition_list_destroy(l);
    ld_log(LD_LOG_INFO, MOD, "msg=\"assigned every partition\" partitions=%d",
           (int)p->nparts);
    return LD_OK;
}
