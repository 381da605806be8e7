/* SPDX-License-Identifier: Apache-2.0 */
/* `learnd demo`'s cluster: librdkafka's in-process mock cluster, or a real
 * one with the demo's topics, its run's consumer group started at the
 * input's end and a resumed run's event times after the newest record. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon/demo_impl.h"
#include "pipeline/kafka.h"

#define MOD "demo"

static int mock_cluster(rd_kafka_t **rkp, rd_kafka_mock_cluster_t **mcp,
                        char *bootstrap, size_t size)
{
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr));
    rd_kafka_t *rk =
        rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, 1);
    if (!mc) {
        rd_kafka_destroy(rk);
        return -1;
    }
    static const char *const topics[] = {"events", "labels"};
    for (int i = 0; i < 2; i++)
        if (rd_kafka_mock_topic_create(mc, topics[i], PARTITIONS, 1))
            goto err;
    static const char *const outputs[] = {"learnd.dlq", "learnd.checkpoints",
                                          "learnd.triggers", "learnd.state"};
    for (int i = 0; i < 4; i++)
        if (rd_kafka_mock_topic_create(mc, outputs[i], 1, 1))
            goto err;
    snprintf(bootstrap, size, "%s", rd_kafka_mock_cluster_bootstraps(mc));
    *rkp = rk;
    *mcp = mc;
    return 0;
err:
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return -1;
}

int ld_demo_run_id_ok(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > 48)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((id[i] >= 'a' && id[i] <= 'z') ||
              (id[i] >= 'A' && id[i] <= 'Z') ||
              (id[i] >= '0' && id[i] <= '9') || id[i] == '-' || id[i] == '_' ||
              id[i] == '.'))
            return 0;
    return 1;
}

/* A fresh run's consumer group starts at the current end of the input
 * topics: it trains on what this run produces, not on an earlier run's
 * records (the pipeline starts a group without offsets at the earliest). */
static int group_start_at_end(const demo_t *d, char *why, size_t size)
{
    char bs[sizeof(d->bootstrap)];
    snprintf(bs, sizeof(bs), "%s", d->bootstrap);
    char *kv[] = {"bootstrap.servers", bs};
    ld_strlist_t props = {kv, 2};
    rd_kafka_conf_t *conf = ld_kafka_conf_new(&props, why, size);
    if (!conf)
        return -1;
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, size);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    int rc = -1;
    rd_kafka_queue_t *q = NULL;
    rd_kafka_event_t *ev = NULL;
    rd_kafka_topic_partition_list_t *parts =
        rd_kafka_topic_partition_list_new(2 * PARTITIONS);
    static const char *const inputs[] = {"events", "labels"};
    for (int t = 0; t < 2; t++) {
        for (int32_t p = 0; p < PARTITIONS; p++) {
            int64_t lo = 0, hi = 0;
            rd_kafka_resp_err_t e;
            /* Topics just created have no leader for a moment. */
            for (int tries = 0;; tries++) {
                e = rd_kafka_query_watermark_offsets(rk, inputs[t], p, &lo, &hi,
                                                     30000);
                if ((e != RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION &&
                     e != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART &&
                     e != RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE) ||
                    tries == 300)
                    break;
                usleep(100000);
            }
            if (e) {
                snprintf(why, size, "end offset of %s [%d]: %s", inputs[t],
                         (int)p, rd_kafka_err2str(e));
                goto out;
            }
            rd_kafka_topic_partition_list_add(parts, inputs[t], p)->offset = hi;
        }
    }
    q = rd_kafka_queue_new(rk);
    /* The group's coordinator may still be loading (a fresh broker): those
     * answers are retried, for up to a minute. */
    for (int tries = 0; rc && tries < 600; tries++) {
        if (ev)
            rd_kafka_event_destroy(ev);
        rd_kafka_AlterConsumerGroupOffsets_t *alter =
            rd_kafka_AlterConsumerGroupOffsets_new(d->group, parts);
        rd_kafka_AlterConsumerGroupOffsets(rk, &alter, 1, NULL, q);
        rd_kafka_AlterConsumerGroupOffsets_destroy(alter);
        ev = rd_kafka_queue_poll(q, 60000);
        if (!ev || rd_kafka_event_error(ev)) {
            snprintf(why, size, "set the start offsets of group %s: %s",
                     d->group,
                     ev ? rd_kafka_event_error_string(ev) : "timed out");
            goto out;
        }
        rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
        size_t ng = 0;
        const rd_kafka_group_result_t **gr =
            rd_kafka_AlterConsumerGroupOffsets_result_groups(
                rd_kafka_event_AlterConsumerGroupOffsets_result(ev), &ng);
        for (size_t i = 0; i < ng && !e; i++) {
            const rd_kafka_error_t *ge = rd_kafka_group_result_error(gr[i]);
            if (ge) {
                e = rd_kafka_error_code(ge);
                snprintf(why, size, "set the start offsets of group %s: %s",
                         d->group, rd_kafka_error_string(ge));
                break;
            }
            const rd_kafka_topic_partition_list_t *res =
                rd_kafka_group_result_partitions(gr[i]);
            for (int k = 0; res && k < res->cnt && !e; k++)
                if ((e = res->elems[k].err))
                    snprintf(why, size, "set the start offset of %s [%d]: %s",
                             res->elems[k].topic, (int)res->elems[k].partition,
                             rd_kafka_err2str(e));
        }
        if (!e)
            rc = 0;
        else if (e != RD_KAFKA_RESP_ERR_NOT_COORDINATOR &&
                 e != RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS &&
                 e != RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE)
            goto out;
        else
            usleep(100000);
    }
out:
    if (ev)
        rd_kafka_event_destroy(ev);
    if (q)
        rd_kafka_queue_destroy(q);
    rd_kafka_topic_partition_list_destroy(parts);
    rd_kafka_destroy(rk);
    return rc;
}

/* The newest record time in the input topics (-1: none): a resumed run's
 * stream starts after it, else its records would be late for the joiner's
 * watermarks. Reads the last record of each partition. */
static int64_t newest_time(const demo_t *d, char *why, size_t size)
{
    char bs[sizeof(d->bootstrap)];
    snprintf(bs, sizeof(bs), "%s", d->bootstrap);
    /* consumer_poll needs a group.id; nothing is committed to it (and
     * assign() joins no group). */
    char *kv[] = {"bootstrap.servers",
                  bs,
                  "enable.partition.eof",
                  "true",
                  "group.id",
                  "learnd-demo-probe",
                  "enable.auto.commit",
                  "false"};
    ld_strlist_t props = {kv, 8};
    rd_kafka_conf_t *conf = ld_kafka_conf_new(&props, why, size);
    if (!conf)
        return INT64_MIN;
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, size);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        return INT64_MIN;
    }
    int64_t newest = -1;
    int want = 0;
    char done[2][PARTITIONS] = {{0}}; /* a record or the end seen there */
    rd_kafka_topic_partition_list_t *parts =
        rd_kafka_topic_partition_list_new(2 * PARTITIONS);
    static const char *const inputs[] = {"events", "labels"};
    for (int t = 0; t < 2; t++)
        for (int32_t p = 0; p < PARTITIONS; p++) {
            int64_t lo = 0, hi = 0;
            if (rd_kafka_query_watermark_offsets(rk, inputs[t], p, &lo, &hi,
                                                 30000) ||
                hi <= lo)
                continue;
            rd_kafka_topic_partition_list_add(parts, inputs[t], p)->offset =
                hi - 1;
            want++;
        }
    if (want && rd_kafka_assign(rk, parts) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        int64_t deadline = ld_now_mono_ms() + 30000;
        while (want > 0 && ld_now_mono_ms() < deadline) {
            rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 500);
            if (!m)
                continue;
            int t =
                m->rkt && strcmp(rd_kafka_topic_name(m->rkt), "labels") == 0;
            int32_t p = m->partition;
            if ((!m->err || m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) &&
                p >= 0 && p < PARTITIONS && !done[t][p]) {
                /* EOF first: the last offsets hold transaction markers */
                if (!m->err) {
                    int64_t ts = rd_kafka_message_timestamp(m, NULL);
                    if (ts > newest)
                        newest = ts;
                }
                done[t][p] = 1;
                want--;
            }
            rd_kafka_message_destroy(m);
        }
    }
    rd_kafka_topic_partition_list_destroy(parts);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    if (want > 0) {
        snprintf(why, size,
                 "cannot read the newest records of the input "
                 "topics");
        return INT64_MIN;
    }
    return newest;
}

/* The cluster the demo runs on: librdkafka's mock cluster (its address
 * into d->bootstrap), or the real one at d->bootstrap with the demo's
 * topics created. Returns 0, or -1 after saying why on stderr. */
int ld_demo_cluster_open(demo_t *d, rd_kafka_t **rkp,
                         rd_kafka_mock_cluster_t **mcp)
{
    if (!d->bootstrap[0]) {
        if (mock_cluster(rkp, mcp, d->bootstrap, sizeof(d->bootstrap))) {
            fprintf(stderr, "learnd demo: cannot start the mock cluster\n");
            return -1;
        }
        printf("learnd demo: in-process mock Kafka cluster at %s\n",
               d->bootstrap);
    } else {
        char *kv[] = {"bootstrap.servers", d->bootstrap};
        ld_strlist_t props = {kv, 2};
        /* The inputs keep their records whatever their age, as
         * docker-compose.yml creates them: `learnd run` and `learnd
         * replay` read them after the demo. */
        ld_kafka_topic_spec_t topics[] = {
            {"events", PARTITIONS, 0, 1}, {"labels", PARTITIONS, 0, 1},
            {"learnd.dlq", 1, 0, 0},      {"learnd.checkpoints", 1, 0, 0},
            {"learnd.triggers", 1, 0, 0}, {"learnd.state", 1, 1, 0}};
        char why[512];
        if (ld_kafka_create_topics(&props, topics, 6, 30000, why,
                                   sizeof(why))) {
            fprintf(stderr, "learnd demo: %s\n", why);
            return -1;
        }
        if (!d->resume && group_start_at_end(d, why, sizeof(why))) {
            fprintf(stderr, "learnd demo: %s\n", why);
            return -1;
        }
        if (d->resume) {
            int64_t newest = newest_time(d, why, sizeof(why));
            if (newest == INT64_MIN) {
                fprintf(stderr, "learnd demo: %s\n", why);
                return -1;
            }
            if (newest >= d->gconf.start_time_ms)
                d->gconf.start_time_ms = newest + 1000;
        }
        printf("learnd demo: Kafka cluster at %s, run %s (model %s, "
               "consumer group %s)\n",
               d->bootstrap, d->run_id, d->model, d->group);
    }
    return 0;
}
