/* SPDX-License-Identifier: Apache-2.0 */
/* Smoke test of the real test broker with the librdkafka the daemon links:
 * keyed produce, a consumer group with manual commits that a second member
 * resumes from, and transactions whose aborted records a read_committed
 * consumer must not see (the mock cluster cannot check this:
 * docs/ARCHITECTURE.md, "Tests").
 *
 * LD_SMOKE_ISOLATION overrides the transactional consumer's isolation.level;
 * with read_uncommitted the test must fail, which shows that it checks. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "testutil.h"

#define GROUP_PARTITIONS 3
#define FIRST_BATCH      30 /* records before the first consumer commits */
#define SECOND_BATCH     7 /* records the second member must get, and no more */
#define TXN_RECORDS      5 /* per transaction */
#define STEP_TIMEOUT_MS  60000
#define MAX_PARTITIONS   8

/* ---- Producer side: delivery reports ------------------------------------ */

struct deliveries {
    int ok;
    int failed;
    int64_t end[MAX_PARTITIONS]; /* last delivered offset + 1 per partition */
};

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct deliveries *d = opaque;
    (void)rk;
    if (m->err) {
        d->failed++;
        ld_test_say("delivery failed: %s", rd_kafka_err2str(m->err));
        return;
    }
    LD_TEST_ASSERT(m->partition >= 0 && m->partition < MAX_PARTITIONS,
                   "delivered to partition %" PRId32, m->partition);
    d->ok++;
    if (m->offset + 1 > d->end[m->partition])
        d->end[m->partition] = m->offset + 1;
}

static rd_kafka_t *producer_new(struct deliveries *d, const char *txn_id)
{
    rd_kafka_conf_t *conf = ld_test_conf_new();
    ld_test_conf_set(conf, "client.id", "smoke-producer");
    ld_test_conf_set(conf, "acks", "all");
    ld_test_conf_set(conf, "enable.idempotence", "true");
    ld_test_conf_set(conf, "linger.ms", "5");
    if (txn_id != NULL)
        ld_test_conf_set(conf, "transactional.id", txn_id);
    rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
    rd_kafka_conf_set_opaque(conf, d);
    return ld_test_new(RD_KAFKA_PRODUCER, conf);
}

static void produce(rd_kafka_t *rk, const char *topic, const char *key,
                    const char *value)
{
    rd_kafka_resp_err_t err = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
        RD_KAFKA_V_VALUE((void *)value, strlen(value)),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    if (err)
        LD_TEST_FAIL("produce %s to %s: %s", value, topic,
                     rd_kafka_err2str(err));
}

/* Waits until every outstanding record has its delivery report and checks
 * that all of them succeeded. */
static void flush_all(rd_kafka_t *rk, struct deliveries *d, int expect_ok)
{
    rd_kafka_resp_err_t err = rd_kafka_flush(rk, STEP_TIMEOUT_MS);
    if (err)
        LD_TEST_FAIL("flush: %s (%d still queued)", rd_kafka_err2str(err),
                     rd_kafka_outq_len(rk));
    LD_TEST_EQ_I64("failed deliveries", 0, d->failed);
    LD_TEST_EQ_I64("delivered records", expect_ok, d->ok);
}

static void record_key(char *buf, size_t size, int i)
{
    snprintf(buf, size, "key-%04d", i);
}

static void record_value(char *buf, size_t size, int i)
{
    snprintf(buf, size, "value-%04d", i);
}

static void produce_keyed(rd_kafka_t *rk, struct deliveries *d,
                          const char *topic, int from, int to)
{
    char key[32], value[32];
    for (int i = from; i < to; i++) {
        record_key(key, sizeof(key), i);
        record_value(value, sizeof(value), i);
        produce(rk, topic, key, value);
    }
    flush_all(rk, d, to);
}

/* ---- Consumer side ------------------------------------------------------ */

static rd_kafka_t *consumer_new(const char *group, const char *isolation)
{
    rd_kafka_conf_t *conf = ld_test_conf_new();
    ld_test_conf_set(conf, "client.id", "smoke-consumer");
    ld_test_conf_set(conf, "group.id", group);
    ld_test_conf_set(conf, "enable.auto.commit", "false");
    ld_test_conf_set(conf, "auto.offset.reset", "earliest");
    /* EOF events tell when a partition has been read up to its end, so the
     * test knows it has seen everything without waiting out a timer. */
    ld_test_conf_set(conf, "enable.partition.eof", "true");
    ld_test_conf_set(conf, "isolation.level", isolation);
    ld_test_conf_set(conf, "fetch.wait.max.ms", "100");
    rd_kafka_t *rk = ld_test_new(RD_KAFKA_CONSUMER, conf);
    rd_kafka_poll_set_consumer(rk);
    return rk;
}

static void subscribe(rd_kafka_t *rk, const char *topic)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (err)
        LD_TEST_FAIL("subscribe %s: %s", topic, rd_kafka_err2str(err));
}

/* What one group member read: records by index, per-partition offsets. */
struct group_read {
    int count;
    int seen[FIRST_BATCH + SECOND_BATCH];
    int64_t first[MAX_PARTITIONS]; /* first offset read, -1 if none */
    int64_t next[MAX_PARTITIONS];  /* last offset read + 1, -1 if none */
    int64_t eof[MAX_PARTITIONS];   /* offset of the latest EOF, -1 if none */
};

static int all_at_end(const struct group_read *r, const int64_t *end)
{
    for (int p = 0; p < GROUP_PARTITIONS; p++)
        if (r->eof[p] < end[p])
            return 0;
    return 1;
}

/* Reads from a subscribed consumer until every partition reported EOF at or
 * beyond end[p]; every record must have an index in [from, to), arrive once,
 * carry its value and come in offset order. */
static void read_group(rd_kafka_t *rk, struct group_read *r, const int64_t *end,
                       int from, int to)
{
    memset(r, 0, sizeof(*r));
    for (int p = 0; p < MAX_PARTITIONS; p++)
        r->first[p] = r->next[p] = r->eof[p] = -1;

    int64_t deadline = ld_test_deadline(STEP_TIMEOUT_MS);
    while (!all_at_end(r, end)) {
        if (ld_test_remaining(deadline) == 0) {
            for (int p = 0; p < GROUP_PARTITIONS; p++)
                ld_test_say("partition %d: eof at %" PRId64 ", end %" PRId64, p,
                            r->eof[p], end[p]);
            LD_TEST_FAIL("group read: %d records, partitions not at their "
                         "end after %d ms",
                         r->count, STEP_TIMEOUT_MS);
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 500);
        if (m == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            LD_TEST_ASSERT(m->partition >= 0 && m->partition < GROUP_PARTITIONS,
                           "EOF on partition %" PRId32, m->partition);
            r->eof[m->partition] = m->offset;
            rd_kafka_message_destroy(m);
            continue;
        }
        if (m->err) {
            /* Topic metadata can trail creation by a moment; librdkafka
             * retries. Anything lasting shows up as the timeout above. */
            ld_test_say("consumer: %s", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        int32_t p = m->partition;
        LD_TEST_ASSERT(p >= 0 && p < GROUP_PARTITIONS,
                       "record from partition %" PRId32, p);
        LD_TEST_ASSERT(m->key != NULL && m->key_len < 32, "record without key");
        char key[32];
        memcpy(key, m->key, m->key_len);
        key[m->key_len] = '\0';
        int i = -1;
        LD_TEST_ASSERT(sscanf(key, "key-%d", &i) == 1, "bad key '%s'", key);
        LD_TEST_ASSERT(i >= from && i < to,
                       "record %s at %" PRId32 "/%" PRId64
                       " is not among records %d..%d this member should read",
                       key, p, m->offset, from, to - 1);
        LD_TEST_ASSERT(!r->seen[i], "record %s read twice", key);
        char want[32];
        record_value(want, sizeof(want), i);
        LD_TEST_ASSERT(m->len == strlen(want) &&
                           memcmp(m->payload, want, m->len) == 0,
                       "record %s: value '%.*s', expected '%s'", key,
                       (int)m->len, (const char *)m->payload, want);
        LD_TEST_ASSERT(m->offset >= r->next[p],
                       "partition %" PRId32 ": offset %" PRId64
                       " after %" PRId64,
                       p, m->offset, r->next[p] - 1);
        r->seen[i] = 1;
        r->count++;
        if (r->first[p] < 0)
            r->first[p] = m->offset;
        r->next[p] = m->offset + 1;
        rd_kafka_message_destroy(m);
    }
    LD_TEST_EQ_I64("records read by the group member", to - from, r->count);
}

/* Commits next[p] for every partition read from, synchronously, then reads
 * the committed offsets back from the broker and compares with want[p]
 * (RD_KAFKA_OFFSET_INVALID where nothing was ever committed). */
static void commit_and_verify(rd_kafka_t *rk, const char *topic,
                              const struct group_read *r, const int64_t *want)
{
    rd_kafka_topic_partition_list_t *c =
        rd_kafka_topic_partition_list_new(GROUP_PARTITIONS);
    for (int p = 0; p < GROUP_PARTITIONS; p++)
        if (r->next[p] >= 0)
            rd_kafka_topic_partition_list_add(c, topic, p)->offset = r->next[p];
    if (c->cnt > 0) {
        rd_kafka_resp_err_t err = rd_kafka_commit(rk, c, 0 /* sync */);
        if (err)
            LD_TEST_FAIL("commit: %s", rd_kafka_err2str(err));
        for (int i = 0; i < c->cnt; i++)
            if (c->elems[i].err)
                LD_TEST_FAIL("commit %s/%" PRId32 ": %s", topic,
                             c->elems[i].partition,
                             rd_kafka_err2str(c->elems[i].err));
    }
    rd_kafka_topic_partition_list_destroy(c);

    rd_kafka_topic_partition_list_t *q =
        rd_kafka_topic_partition_list_new(GROUP_PARTITIONS);
    for (int p = 0; p < GROUP_PARTITIONS; p++)
        rd_kafka_topic_partition_list_add(q, topic, p);
    rd_kafka_resp_err_t err = rd_kafka_committed(rk, q, STEP_TIMEOUT_MS);
    if (err)
        LD_TEST_FAIL("committed: %s", rd_kafka_err2str(err));
    for (int i = 0; i < q->cnt; i++) {
        int32_t p = q->elems[i].partition;
        char what[96];
        LD_TEST_ASSERT(q->elems[i].err == RD_KAFKA_RESP_ERR_NO_ERROR,
                       "committed %s/%" PRId32 ": %s", topic, p,
                       rd_kafka_err2str(q->elems[i].err));
        snprintf(what, sizeof(what), "committed offset of partition %" PRId32,
                 p);
        LD_TEST_EQ_I64(what, want[p], q->elems[i].offset);
    }
    rd_kafka_topic_partition_list_destroy(q);
}

static void check_positions(rd_kafka_t *rk, const char *topic,
                            const int64_t *end)
{
    rd_kafka_topic_partition_list_t *l =
        rd_kafka_topic_partition_list_new(GROUP_PARTITIONS);
    for (int p = 0; p < GROUP_PARTITIONS; p++)
        rd_kafka_topic_partition_list_add(l, topic, p);
    rd_kafka_resp_err_t err = rd_kafka_position(rk, l);
    if (err)
        LD_TEST_FAIL("position: %s", rd_kafka_err2str(err));
    for (int i = 0; i < l->cnt; i++) {
        int32_t p = l->elems[i].partition;
        /* Never-read partitions have no position; read ones are at the end. */
        if (l->elems[i].offset == RD_KAFKA_OFFSET_INVALID && end[p] == 0)
            continue;
        char what[64];
        snprintf(what, sizeof(what), "position on partition %" PRId32, p);
        LD_TEST_EQ_I64(what, end[p], l->elems[i].offset);
    }
    rd_kafka_topic_partition_list_destroy(l);
}

static void close_consumer(rd_kafka_t *rk)
{
    rd_kafka_resp_err_t err = rd_kafka_consumer_close(rk);
    if (err)
        LD_TEST_FAIL("consumer close: %s", rd_kafka_err2str(err));
    rd_kafka_destroy(rk);
}

/* ---- Part 1: consumer group with manual commits ------------------------- */

static void test_group_commit(void)
{
    char topic[128], group[128];
    ld_test_name(topic, sizeof(topic), "smoke-group");
    ld_test_name(group, sizeof(group), "smoke-group");

    struct deliveries d = {0};
    rd_kafka_t *prod = producer_new(&d, NULL);
    ld_test_create_topic(prod, topic, GROUP_PARTITIONS, STEP_TIMEOUT_MS);

    produce_keyed(prod, &d, topic, 0, FIRST_BATCH);
    int64_t end1[MAX_PARTITIONS] = {0};
    memcpy(end1, d.end, sizeof(end1));
    ld_test_say("produced %d keyed records; ends %" PRId64 "/%" PRId64
                "/%" PRId64,
                FIRST_BATCH, end1[0], end1[1], end1[2]);

    /* First member: reads everything, commits what it read. */
    rd_kafka_t *c1 = consumer_new(group, "read_committed");
    subscribe(c1, topic);
    static struct group_read r1;
    read_group(c1, &r1, end1, 0, FIRST_BATCH);
    check_positions(c1, topic, end1);
    int64_t want1[MAX_PARTITIONS];
    for (int p = 0; p < GROUP_PARTITIONS; p++)
        want1[p] = end1[p] > 0 ? end1[p] : RD_KAFKA_OFFSET_INVALID;
    commit_and_verify(c1, topic, &r1, want1);
    close_consumer(c1);
    ld_test_say("member 1 read %d records and committed them", r1.count);

    /* Records produced after the commit are all a new member may read. */
    produce_keyed(prod, &d, topic, FIRST_BATCH, FIRST_BATCH + SECOND_BATCH);
    int64_t end2[MAX_PARTITIONS] = {0};
    memcpy(end2, d.end, sizeof(end2));

    rd_kafka_t *c2 = consumer_new(group, "read_committed");
    subscribe(c2, topic);
    static struct group_read r2;
    read_group(c2, &r2, end2, FIRST_BATCH, FIRST_BATCH + SECOND_BATCH);
    for (int p = 0; p < GROUP_PARTITIONS; p++) {
        if (end2[p] == end1[p])
            continue; /* nothing new there: EOF at end2[p] was checked */
        char what[64];
        snprintf(what, sizeof(what), "member 2 first offset on partition %d",
                 p);
        LD_TEST_EQ_I64(what, end1[p], r2.first[p]);
    }
    check_positions(c2, topic, end2);
    int64_t want2[MAX_PARTITIONS];
    for (int p = 0; p < GROUP_PARTITIONS; p++)
        want2[p] = end2[p] > 0 ? end2[p] : RD_KAFKA_OFFSET_INVALID;
    commit_and_verify(c2, topic, &r2, want2);
    close_consumer(c2);
    ld_test_say("member 2 resumed from the committed offsets and read exactly "
                "the %d later records",
                r2.count);

    rd_kafka_destroy(prod);
}

/* ---- Part 2: transactions and read_committed ---------------------------- */

static void transaction(rd_kafka_t *rk, struct deliveries *d, const char *topic,
                        const char *label, int commit)
{
    char value[32];
    int before = d->ok;
    ld_test_check_error("begin_transaction", rd_kafka_begin_transaction(rk));
    for (int i = 0; i < TXN_RECORDS; i++) {
        snprintf(value, sizeof(value), "%s-%d", label, i);
        produce(rk, topic, NULL, value);
    }
    if (commit) {
        /* commit_transaction flushes before it commits. */
        ld_test_check_error("commit_transaction",
                            rd_kafka_commit_transaction(rk, STEP_TIMEOUT_MS));
    } else {
        /* Flush first: abort_transaction would purge records still queued,
         * and then the broker would never have to hide them. */
        flush_all(rk, d, before + TXN_RECORDS);
        ld_test_check_error("abort_transaction",
                            rd_kafka_abort_transaction(rk, STEP_TIMEOUT_MS));
    }
    LD_TEST_EQ_I64("failed deliveries", 0, d->failed);
    LD_TEST_EQ_I64("records written by transaction", TXN_RECORDS,
                   d->ok - before);
    ld_test_say("transaction %s: %d records written, %s", label, TXN_RECORDS,
                commit ? "committed" : "aborted");
}

static void test_transactions(void)
{
    char topic[128], txn_id[128], group[128];
    ld_test_name(topic, sizeof(topic), "smoke-txn");
    ld_test_name(txn_id, sizeof(txn_id), "smoke-txn");
    ld_test_name(group, sizeof(group), "smoke-txn");
    const char *isolation = getenv("LD_SMOKE_ISOLATION");
    if (isolation == NULL || *isolation == '\0')
        isolation = "read_committed";

    struct deliveries d = {0};
    rd_kafka_t *prod = producer_new(&d, txn_id);
    /* One partition: the order of the records across transactions is
     * defined and asserted. */
    ld_test_create_topic(prod, topic, 1, STEP_TIMEOUT_MS);
    ld_test_check_error("init_transactions",
                        rd_kafka_init_transactions(prod, STEP_TIMEOUT_MS));
    transaction(prod, &d, topic, "A", 1);
    transaction(prod, &d, topic, "B", 0);
    transaction(prod, &d, topic, "C", 1);

    /* commit_transaction returns once the coordinator has decided; it writes
     * the commit marker to the partition afterwards. Until then C is still
     * open and the last stable offset (what the producer handle's
     * read_committed ListOffsets returns) stays before it. Wait for the
     * end: three transactions of records plus one control marker each. */
    const int64_t end = 3 * (TXN_RECORDS + 1);
    int64_t lo = -1, hi = -1;
    int64_t deadline = ld_test_deadline(STEP_TIMEOUT_MS);
    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(
            prod, topic, 0, &lo, &hi, ld_test_remaining(deadline));
        if (err)
            LD_TEST_FAIL("watermarks: %s", rd_kafka_err2str(err));
        if (hi >= end)
            break;
        if (ld_test_remaining(deadline) == 0)
            LD_TEST_FAIL("last stable offset %" PRId64 " not at %" PRId64
                         " after %d ms: a transaction marker is missing",
                         hi, end, STEP_TIMEOUT_MS);
        rd_kafka_poll(prod, 50); /* paces the next query */
    }
    LD_TEST_EQ_I64("last stable offset", end, hi);
    rd_kafka_destroy(prod);

    rd_kafka_t *c = consumer_new(group, isolation);
    rd_kafka_topic_partition_list_t *a = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(a, topic, 0)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_resp_err_t err = rd_kafka_assign(c, a);
    rd_kafka_topic_partition_list_destroy(a);
    if (err)
        LD_TEST_FAIL("assign: %s", rd_kafka_err2str(err));

    enum { MAX_GOT = 4 * TXN_RECORDS };
    char got[MAX_GOT][32];
    int ngot = 0;
    int64_t eof = -1;
    deadline = ld_test_deadline(STEP_TIMEOUT_MS);
    while (eof < end) {
        if (ld_test_remaining(deadline) == 0)
            LD_TEST_FAIL("%s read: %d records, EOF at %" PRId64
                         " not at %" PRId64 " after %d ms",
                         isolation, ngot, eof, end, STEP_TIMEOUT_MS);
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 500);
        if (m == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            eof = m->offset;
        } else if (m->err) {
            ld_test_say("consumer: %s", rd_kafka_message_errstr(m));
        } else {
            LD_TEST_ASSERT(ngot < MAX_GOT, "more than %d records", MAX_GOT);
            snprintf(got[ngot++], sizeof(got[0]), "%.*s", (int)m->len,
                     (const char *)m->payload);
        }
        rd_kafka_message_destroy(m);
    }
    close_consumer(c);

    /* Exactly A's and C's records, in order; none of B's. */
    char want[2 * TXN_RECORDS][32];
    int nwant = 0;
    for (int i = 0; i < TXN_RECORDS; i++)
        snprintf(want[nwant++], sizeof(want[0]), "A-%d", i);
    for (int i = 0; i < TXN_RECORDS; i++)
        snprintf(want[nwant++], sizeof(want[0]), "C-%d", i);

    int same = ngot == nwant;
    for (int i = 0; same && i < nwant; i++)
        same = strcmp(got[i], want[i]) == 0;
    if (!same) {
        char gs[MAX_GOT * 33 + 1] = "", ws[2 * TXN_RECORDS * 33 + 1] = "";
        for (int i = 0; i < ngot; i++) {
            strcat(gs, " ");
            strcat(gs, got[i]);
        }
        for (int i = 0; i < nwant; i++) {
            strcat(ws, " ");
            strcat(ws, want[i]);
        }
        LD_TEST_FAIL("isolation.level=%s read %d records, expected %d\n"
                     "  expected:%s\n  got:     %s",
                     isolation, ngot, nwant, ws, gs);
    }
    ld_test_say("isolation.level=%s read exactly A's and C's %d records in "
                "order, none of aborted B's",
                isolation, ngot);
}

int main(void)
{
    ld_test_say("0001-broker-smoke: broker %s, librdkafka %s",
                ld_test_bootstrap(), rd_kafka_version_str());
    test_group_commit();
    test_transactions();
    ld_test_say("0001-broker-smoke: PASS");
    return 0;
}
