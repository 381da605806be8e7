/* SPDX-License-Identifier: Apache-2.0 */
/* librdkafka configuration and log routing. */
#include "pipeline/kafka.h"

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
