/* SPDX-License-Identifier: Apache-2.0 */
/* librdkafka configuration and log routing. */
#include "pipeline/kafka.h"

#include <stdlib.h>
#include <string.h>

/* librdkafka levels are syslog levels, as ld_log's are. */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac,
                   const char *buf)
{
    char qbuf[1024];
    int lvl = level < LD_LOG_EMERG   ? LD_LOG_EMERG
              : level > LD_LOG_DEBUG ? LD_LOG_DEBUG
                                     : level;
    if (lvl == LD_LOG_DEBUG && !ld_log_debug_on("kafka"))
        return;
    ld_log((ld_log_level_t)lvl, "kafka", "client=%s fac=%s msg=%s",
           rd_kafka_name(rk), fac, ld_log_quote(qbuf, sizeof(qbuf), buf));
}

ld_err_t ld_kafka_conf_set(rd_kafka_conf_t *conf, const char *key,
                           const char *value, char *errstr, size_t errstr_size)
{
    char why[512];
    if (rd_kafka_conf_set(conf, key, value, why, sizeof(why)) ==
        RD_KAFKA_CONF_OK)
        return LD_OK;
    if (ld_conf_key_is_secret(key))
        snprintf(errstr, errstr_size,
                 "kafka.%s: invalid value (secret, "
                 "not shown)",
                 key);
    else
        snprintf(errstr, errstr_size, "kafka.%s: %s", key, why);
    return LD_ERR_CONFIG;
}

rd_kafka_conf_t *ld_kafka_conf_new(const ld_strlist_t *props, char *errstr,
                                   size_t errstr_size)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (!conf) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    rd_kafka_conf_set_log_cb(conf, log_cb);
    if (props) {
        for (size_t i = 0; i + 1 < props->n; i += 2) {
            if (ld_kafka_conf_set(conf, props->v[i], props->v[i + 1], errstr,
                                  errstr_size)) {
                rd_kafka_conf_destroy(conf);
                return NULL;
            }
        }
    }
    return conf;
}

ld_err_t ld_kafka_create_topics(const ld_strlist_t *props,
                                const ld_kafka_topic_spec_t *topics, size_t n,
                                int timeout_ms, char *errstr,
                                size_t errstr_size)
{
    ld_err_t err = LD_ERR_KAFKA;
    rd_kafka_NewTopic_t **nt = calloc(n ? n : 1, sizeof(*nt));
    rd_kafka_conf_t *conf = ld_kafka_conf_new(props, errstr, errstr_size);
    rd_kafka_t *rk = NULL;
    rd_kafka_queue_t *q = NULL;
    rd_kafka_AdminOptions_t *opts = NULL;
    rd_kafka_event_t *ev = NULL;
    if (!nt || !conf)
        goto out;
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errstr_size);
    if (!rk)
        goto out;
    conf = NULL;
    for (size_t i = 0; i < n; i++) {
        nt[i] = rd_kafka_NewTopic_new(topics[i].name, topics[i].partitions, -1,
                                      errstr, errstr_size);
        if (!nt[i])
            goto out;
        if (topics[i].compacted &&
            rd_kafka_NewTopic_set_config(nt[i], "cleanup.policy", "compact"))
            goto out;
        if (topics[i].keep_forever &&
            rd_kafka_NewTopic_set_config(nt[i], "retention.ms", "-1"))
            goto out;
    }
    q = rd_kafka_queue_new(rk);
    opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_operation_timeout(opts, timeout_ms, NULL, 0);
    rd_kafka_CreateTopics(rk, nt, n, opts, q);
    ev = rd_kafka_queue_poll(q, timeout_ms + 1000);
    if (!ev || rd_kafka_event_error(ev)) {
        snprintf(errstr, errstr_size, "create topics: %s",
                 ev ? rd_kafka_event_error_string(ev) : "timed out");
        goto out;
    }
    size_t cnt = 0;
    const rd_kafka_topic_result_t **res = rd_kafka_CreateTopics_result_topics(
        rd_kafka_event_CreateTopics_result(ev), &cnt);
    for (size_t i = 0; i < cnt; i++) {
        rd_kafka_resp_err_t e = rd_kafka_topic_result_error(res[i]);
        if (e && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            snprintf(errstr, errstr_size, "create topic %s: %s",
                     rd_kafka_topic_result_name(res[i]), rd_kafka_err2str(e));
            goto out;
        }
    }
    err = LD_OK;
out:
    if (ev)
        rd_kafka_event_destroy(ev);
    if (opts)
        rd_kafka_AdminOptions_destroy(opts);
    if (q)
        rd_kafka_queue_destroy(q);
    for (size_t i = 0; nt && i < n; i++)
        if (nt[i])
            rd_kafka_NewTopic_destroy(nt[i]);
    free(nt);
    if (conf)
        rd_kafka_conf_destroy(conf);
    if (rk)
        rd_kafka_destroy(rk);
    return err;
}
