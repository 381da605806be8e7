/* SPDX-License-Identifier: Apache-2.0 */
/* Where backtest and freshness start reading: each input partition's
 * offset at a time (offsets_for_times), its end, and the ranges that
 * retention deleted. */
#include "daemon/eval_offsets.h"

#include <stdio.h>
#include <string.h>

#include "pipeline/kafka.h"

/* The config's copy of a topic name (it outlives the librdkafka list). */
static const char *k_topic(const char *const *topics, const char *name)
{
    return strcmp(name, topics[0]) == 0 ? topics[0] : topics[1];
}

static int32_t partition_count(rd_kafka_t *rk, const char *topic, char *why,
                               size_t size)
{
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err =
        t ? rd_kafka_metadata(rk, 0, t, &md, 10000) : RD_KAFKA_RESP_ERR__FAIL;
    int32_t n = -1;
    if (err)
        snprintf(why, size, "cannot read metadata of topic %s: %s", topic,
                 rd_kafka_err2str(err));
    else if (md->topic_cnt != 1 || md->topics[0].err)
        snprintf(why, size, "topic %s: %s", topic,
                 rd_kafka_err2str(md->topic_cnt ? md->topics[0].err
                                                : RD_KAFKA_RESP_ERR__FAIL));
    else
        n = md->topics[0].partition_cnt;
    if (md)
        rd_kafka_metadata_destroy(md);
    if (t)
        rd_kafka_topic_destroy(t);
    return n;
}

/* Partitions for which offsets_for_times found no record at or after the
 * seek (offset -1) are asked again for time 0: a broker answers with the
 * log start when the partition holds records, so -1 again means the
 * cluster cannot look offsets up by time (librdkafka's mock cluster
 * answers -1 to every time). Those partitions are read from the log start
 * (-2), with a warning, rather than not at all. */
static rd_kafka_resp_err_t by_time_or_start(const char *verb, rd_kafka_t *rk,
                                            rd_kafka_topic_partition_list_t *l)
{
    rd_kafka_topic_partition_list_t *again =
        rd_kafka_topic_partition_list_new(l->cnt);
    for (int i = 0; i < l->cnt; i++)
        if (l->elems[i].offset < 0 && !l->elems[i].err)
            rd_kafka_topic_partition_list_add(again, l->elems[i].topic,
                                              l->elems[i].partition)
                ->offset = 0;
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (again->cnt)
        err = rd_kafka_offsets_for_times(rk, again, 30000);
    int warned = 0;
    for (int i = 0; !err && i < again->cnt; i++) {
        rd_kafka_topic_partition_t *a = &again->elems[i];
        int64_t lo = 0, hi = 0;
        err = rd_kafka_query_watermark_offsets(rk, a->topic, a->partition, &lo,
                                               &hi, 30000);
        if (err || a->err || a->offset >= 0 || hi <= lo)
            continue;
        if (!warned++)
            fprintf(stderr,
                    "learnd %s: warning: the cluster does not look offsets up "
                    "by time: reading from the log start\n",
                    verb);
        rd_kafka_topic_partition_list_find(l, a->topic, a->partition)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    }
    rd_kafka_topic_partition_list_destroy(again);
    return err;
}

/* Each partition's first offset at seek_ms (offsets_for_times) and end
 * offset. A partition whose log starts at the offset the seek found, above
 * 0, may have lost records of the range to retention: an error naming the
 * partition and the offsets gone. An exit code, or -1. */
int ld_eval_plan_build(const char *verb, const ld_config_t *conf,
                       int64_t seek_ms, ld_eval_plan_t *pl)
{
    char why[512];
    rd_kafka_conf_t *kc = ld_kafka_conf_new(&conf->kafka, why, sizeof(why));
    rd_kafka_t *rk =
        kc ? rd_kafka_new(RD_KAFKA_CONSUMER, kc, why, sizeof(why)) : NULL;
    if (!rk) {
        if (kc)
            rd_kafka_conf_destroy(kc);
        fprintf(stderr, "learnd %s: %s\n", verb, why);
        return LD_EXIT_RUNTIME;
    }
    const char *topics[2] = {conf->pipeline.events_topic,
                             conf->pipeline.labels_topic};
    int code = -1, gaps = 0;
    int32_t n0 = partition_count(rk, topics[0], why, sizeof(why));
    int32_t n1 = n0 < 0 ? -1 : partition_count(rk, topics[1], why, sizeof(why));
    if (n0 < 0 || n1 < 0 || n0 != n1 || n0 > LD_EVAL_MAX_PARTITIONS) {
        if (n0 >= 0 && n1 >= 0)
            snprintf(why, sizeof(why),
                     "topics %s (%d partitions) and %s (%d) are not "
                     "co-partitioned",
                     topics[0], (int)n0, topics[1], (int)n1);
        fprintf(stderr, "learnd %s: %s\n", verb, why);
        code = LD_EXIT_RUNTIME;
        goto out;
    }
    pl->nparts = n0;
    rd_kafka_topic_partition_list_t *l =
        rd_kafka_topic_partition_list_new(2 * n0);
    for (int k = 0; k < 2; k++)
        for (int32_t p = 0; p < n0; p++)
            rd_kafka_topic_partition_list_add(l, topics[k], p)->offset =
                seek_ms;
    rd_kafka_resp_err_t err = rd_kafka_offsets_for_times(rk, l, 30000);
    if (!err)
        err = by_time_or_start(verb, rk, l);
    for (int i = 0; !err && i < l->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &l->elems[i];
        int64_t lo = 0, hi = 0;
        err = tp->err ? tp->err
                      : rd_kafka_query_watermark_offsets(
                            rk, tp->topic, tp->partition, &lo, &hi, 30000);
        if (err)
            break;
        int64_t first = tp->offset == RD_KAFKA_OFFSET_BEGINNING ? lo
                        : tp->offset < 0                        ? hi
                                                                : tp->offset;
        if (lo > 0 && first == lo && hi > lo &&
            tp->offset != RD_KAFKA_OFFSET_BEGINNING) {
            fprintf(stderr,
                    "learnd %s: topic %s partition %d: offsets 0..%lld are "
                    "gone (retention moved the log start to %lld), and the "
                    "range needs records from before it\n",
                    verb, tp->topic, (int)tp->partition, (long long)lo - 1,
                    (long long)lo);
            gaps++;
        }
        size_t j = pl->n++;
        pl->topic[j] = k_topic(topics, tp->topic);
        pl->partition[j] = tp->partition;
        pl->first[j] = first;
        pl->end[j] = hi;
    }
    if (err) {
        fprintf(stderr, "learnd %s: cannot find the range's offsets: %s\n",
                verb, rd_kafka_err2str(err));
        code = LD_EXIT_RUNTIME;
    } else if (gaps) {
        code = LD_EXIT_RUNTIME;
    }
    rd_kafka_topic_partition_list_destroy(l);
out:
    rd_kafka_destroy(rk);
    return code;
}
