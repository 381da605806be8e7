/* SPDX-License-Identifier: Apache-2.0 */
/* The train role (learnd run --role train): reads every partition of the
 * examples topic the join instances write, merges them in the order one
 * `learnd run` trains in -- (decision time, partition, offset, sample
 * type), an example released only once every other partition holds a later
 * one or has a watermark past it -- trains, and publishes checkpoints and
 * trigger events as the run loop does, the examples topic's offsets in its
 * commit points (docs/OPERATIONS.md, "Scaling out"). */
#include "daemon/run_internal.h"

#include <librdkafka/rdkafka.h>
#include <stdatomic.h>

#include "pipeline/kafka.h"

#define MOD "train"

typedef struct qent {
    Learnd__V1__JoinedExample *m; /* owned */
    int64_t offset;
    int64_t ts_ms; /* the record's timestamp: when the join produced it */
} qent_t;

/* One examples partition: its examples not trained yet, in order. */
typedef struct part {
    qent_t *v;
    size_t head, n, cap;
    int64_t wm;      /* the newest watermark record's */
    int64_t next;    /* next offset to read; -1 before the first record */
    int64_t wm_off;  /* offset of the newest watermark record; -1 */
    int64_t skip;    /* examples below were trained before a restart */
    int eof;         /* at its end since the last record */
    int64_t wait_ms; /* the merge held examples back waiting on it */
} part_t;

/* Dead-letter reasons of the examples topic (learnd.error). */
enum { DL_UNDECODABLE, DL_SPEC, DL_SPEC_WM, DL_INVALID, DL__COUNT };
static const char *const dl_reason[DL__COUNT] = {
    "undecodable", "model_spec", "model_spec_watermark", "invalid_example"};

/* The delay from an example's record timestamp (set by the join's producer
 * as it released the example) to its training, in DELAY_FINE 1 ms buckets
 * and then DELAY_COARSE 16 ms ones (to 67 s; the last takes the rest). */
#define DELAY_FINE   2048
#define DELAY_COARSE 4096
#define DELAY_NB     (DELAY_FINE + DELAY_COARSE)

struct run_train {
    rd_kafka_t *consumer, *producer;
    rd_kafka_consumer_group_metadata_t *cgmd;
    int32_t nparts;
    part_t *q;
    uint32_t hash_bits, dense_dim;
    uint8_t fmap[32];
    char group[512];
    uint64_t dead, records, at_commit;
    int64_t next_commit, next_report;
    /* metrics (run_train_report) */
    uint64_t dl[DL__COUNT], wm_records, by_type[LD_SAMPLE__COUNT];
    uint64_t *delay; /* DELAY_NB buckets */
    uint64_t ndelay;
    double delay_sum_s;
    int32_t waiting;   /* the partition the merge waits on; -1 */
    int64_t wait_from; /* since when (monotonic ms) */
    int fam_wait, fam_queued, fam_delay, fam_wm;
};

/* ---- Setup and teardown ------------------------------------------------- */

typedef struct setting {
    rd_kafka_conf_t *kc;
    const ld_strlist_t *user;
    int bad;
} setting_t;

/* The pipeline consumer's fetch settings, unless the kafka: map sets the
 * key (librdkafka's queued.min.messages default stalled fetching: 4.0 s
 * for 150k examples before, see docs/OPERATIONS.md). */
static void set_tuned(void *opaque, const char *key, const char *value)
{
    setting_t *s = opaque;
    for (size_t i = 0; i + 1 < s->user->n; i += 2)
        if (strcmp(s->user->v[i], key) == 0)
            return;
    char why[256];
    if (ld_kafka_conf_set(s->kc, key, value, why, sizeof(why)) != LD_OK)
        s->bad = 1;
}

static rd_kafka_t *client(run_t *r, rd_kafka_type_t type, char *errstr,
                          size_t size)
{
    rd_kafka_conf_t *kc = ld_kafka_conf_new(&r->conf->kafka, errstr, size);
    if (!kc)
        return NULL;
    struct run_train *t = r->train;
    int bad = 0;
    if (type == RD_KAFKA_PRODUCER) {
        bad = ld_kafka_conf_set(kc, "enable.idempotence", "true", errstr,
                                size) != LD_OK;
        if (!bad && r->txn_id[0])
            bad = ld_kafka_conf_set(kc, "transactional.id", r->txn_id, errstr,
                                    size) != LD_OK;
        rd_kafka_conf_set_dr_msg_cb(kc, ld_pipeline_delivered);
    }
    setting_t st = {kc, &r->conf->kafka, 0};
    if (type == RD_KAFKA_CONSUMER)
        ld_pipeline_consumer_settings(set_tuned, &st);
    if (type == RD_KAFKA_CONSUMER)
        bad =
            st.bad ||
            ld_kafka_conf_set(kc, "group.id", t->group, errstr, size) ||
            ld_kafka_conf_set(kc, "isolation.level", "read_committed", errstr,
                              size) ||
            ld_kafka_conf_set(kc, "enable.auto.commit", "false", errstr,
                              size) ||
            ld_kafka_conf_set(kc, "auto.offset.reset", "earliest", errstr,
                              size) ||
            ld_kafka_conf_set(kc, "enable.partition.eof", "true", errstr, size);
    if (bad) {
        rd_kafka_conf_destroy(kc);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(type, kc, errstr, size);
    if (!rk)
        rd_kafka_conf_destroy(kc);
    return rk;
}

/* The examples topic must have the inputs' partition count: partition p
 * holds what input partition p released, and the merge is over all. */
static int check_partitions(run_t *r, char *errstr, size_t size)
{
    struct run_train *t = r->train;
    int nin = run_topic_partitions(t->producer, r->conf->pipeline.events_topic,
                                   errstr, size);
    if (nin <= 0)
        return LD_EXIT_RUNTIME;
    int nex =
        run_topic_partitions(t->producer, r->examples_topic, errstr, size);
    if (nex < 0)
        return LD_EXIT_RUNTIME;
    if (nex != nin) {
        snprintf(errstr, size,
                 "examples topic %s has %d partitions but the inputs (%s) "
                 "have %d: its partition count changed, and examples of one "
                 "input partition would be spread over several; refusing to "
                 "start (recreate the examples topic with %d partitions and "
                 "run the join role again)",
                 r->examples_topic, nex, r->conf->pipeline.events_topic, nin,
                 nin);
        return LD_EXIT_USAGE;
    }
    t->nparts = nex;
    return LD_EXIT_OK;
}

/* Replay: every partition from where the recorded run started (the
 * beginning when not recorded); takes l. */
static int replay_assign(run_t *r, rd_kafka_topic_partition_list_t *l,
                         char *errstr, size_t size)
{
    for (int i = 0; i < l->cnt; i++) {
        l->elems[i].offset = RD_KAFKA_OFFSET_BEGINNING;
        for (size_t k = 0; k < r->opts->n_replay_start; k++) {
            const ld_run_start_t *st = &r->opts->replay_start[k];
            if (st->partition == l->elems[i].partition &&
                strcmp(st->topic, r->examples_topic) == 0)
                l->elems[i].offset = st->offset;
        }
    }
    rd_kafka_resp_err_t e = rd_kafka_assign(r->train->consumer, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e) {
        snprintf(errstr, size, "cannot assign the examples topic: %s",
                 rd_kafka_err2str(e));
        return LD_EXIT_RUNTIME;
    }
    return LD_EXIT_OK;
}

/* Assigns every partition, each where this model's group committed. */
static int assign_all(run_t *r, char *errstr, size_t size)
{
    struct run_train *t = r->train;
    rd_kafka_topic_partition_list_t *l =
        rd_kafka_topic_partition_list_new(t->nparts);
    for (int32_t p = 0; p < t->nparts; p++)
        rd_kafka_topic_partition_list_add(l, r->examples_topic, p)->offset =
            RD_KAFKA_OFFSET_STORED;
    if (!r->in->writes) /* a replay: from the recorded starts */
        return replay_assign(r, l, errstr, size);
    /* Each commit point commits the newest watermark record's offset (or
     * the first untrained example's, if lower) and, as metadata, the first
     * untrained example's: a restart re-reads the watermark and skips
     * what its restored model has trained on. */
    rd_kafka_resp_err_t e = rd_kafka_committed(t->consumer, l, 30000);
    for (int i = 0; !e && i < l->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &l->elems[i];
        long long u = 0;
        if (tp->metadata && tp->metadata_size < 64) {
            char md[64];
            memcpy(md, tp->metadata, tp->metadata_size);
            md[tp->metadata_size] = '\0';
            if (sscanf(md, "untrained=%lld", &u) == 1)
                t->q[tp->partition].skip = (int64_t)u;
        }
        l->elems[i].offset = RD_KAFKA_OFFSET_STORED;
    }
    if (e) {
        rd_kafka_topic_partition_list_destroy(l);
        snprintf(errstr, size, "cannot read the committed offsets: %s",
                 rd_kafka_err2str(e));
        return LD_EXIT_RUNTIME;
    }
    e = rd_kafka_assign(t->consumer, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e) {
        snprintf(errstr, size, "cannot assign the examples topic: %s",
                 rd_kafka_err2str(e));
        return LD_EXIT_RUNTIME;
    }
    return LD_EXIT_OK;
}

static int txn_error(rd_kafka_error_t *e, const char *what, char *errstr,
                     size_t size)
{
    if (!e)
        return 0;
    snprintf(errstr, size, "%s: %s", what, rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
    return -1;
}

/* The train role's own families; the rest are the run loop's
 * (run_declare_metrics), with kind="example" where role all says event or
 * label (docs/OPERATIONS.md, "Scaling out"). */
static void declare_metrics(run_t *r)
{
    struct run_train *t = r->train;
    t->fam_wait = ld_metrics_family(
        r->reg, "train_merge_wait_seconds_total", LD_METRIC_COUNTER,
        "Time the train role's merge held examples back waiting for an "
        "examples partition to hold a later example or watermark, by "
        "partition");
    t->fam_queued = ld_metrics_family(
        r->reg, "train_merge_queued_examples", LD_METRIC_GAUGE,
        "Examples read from the examples topic and not trained yet");
    t->fam_wm = ld_metrics_family(
        r->reg, "train_watermark_records_total", LD_METRIC_COUNTER,
        "Watermark records read from the examples topic");
    t->fam_delay = ld_metrics_family(
        r->reg, "train_example_delay_seconds", LD_METRIC_SUMMARY,
        "From an example's record timestamp on the examples topic (the join "
        "released it) to its training, since start");
}

int run_train_setup(run_t *r, char *errstr, size_t size)
{
    struct run_train *t = calloc(1, sizeof(*t));
    if (!t) {
        snprintf(errstr, size, "out of memory");
        return LD_EXIT_RUNTIME;
    }
    r->train = t;
    if (run_model_spec(r, &t->hash_bits, &t->dense_dim, t->fmap, errstr, size))
        return LD_EXIT_USAGE;
    /* A group per model: several models read one examples topic. */
    snprintf(t->group, sizeof(t->group), "%s.train.%s", r->pconf.group_id,
             r->tconf.name);
    if (!(t->producer = client(r, RD_KAFKA_PRODUCER, errstr, size)))
        return LD_EXIT_USAGE;
    int rc = check_partitions(r, errstr, size);
    if (rc != LD_EXIT_OK)
        return rc;
    t->q = calloc((size_t)t->nparts, sizeof(*t->q));
    if (!t->q) {
        snprintf(errstr, size, "out of memory");
        return LD_EXIT_RUNTIME;
    }
    t->delay = calloc(DELAY_NB, sizeof(*t->delay));
    if (!t->delay) {
        snprintf(errstr, size, "out of memory");
        return LD_EXIT_RUNTIME;
    }
    t->waiting = -1;
    declare_metrics(r);
    for (int32_t p = 0; p < t->nparts; p++) {
        t->q[p].wm = INT64_MIN;
        t->q[p].next = -1;
        t->q[p].wm_off = -1;
    }
    if (r->txn_id[0] &&
        (txn_error(rd_kafka_init_transactions(t->producer, 30000),
                   "cannot init transactions", errstr, size) ||
         txn_error(rd_kafka_begin_transaction(t->producer),
                   "cannot begin a transaction", errstr, size)))
        return LD_EXIT_RUNTIME;
    if (!(t->consumer = client(r, RD_KAFKA_CONSUMER, errstr, size)))
        return LD_EXIT_USAGE;
    rd_kafka_poll_set_consumer(t->consumer);
    t->cgmd = rd_kafka_consumer_group_metadata(t->consumer);
    if ((rc = assign_all(r, errstr, size)) != LD_EXIT_OK)
        return rc;
    if (r->in->writes && ld_publisher_start(r->pub, t->producer) != LD_OK) {
        snprintf(errstr, size, "cannot start the publisher thread");
        return LD_EXIT_RUNTIME;
    }
    ld_log(LD_LOG_NOTICE, MOD,
           "msg=\"train role\" examples_topic=%s partitions=%d group=%s "
           "transactional_id=%s",
           r->examples_topic, (int)t->nparts, t->group,
           r->txn_id[0] ? r->txn_id : "-");
    return LD_EXIT_OK;
}

void run_train_teardown(run_t *r)
{
    struct run_train *t = r->train;
    if (!t)
        return;
    if (t->consumer) {
        rd_kafka_consumer_close(t->consumer);
        rd_kafka_destroy(t->consumer);
    }
    if (t->cgmd)
        rd_kafka_consumer_group_metadata_destroy(t->cgmd);
    if (t->producer)
        rd_kafka_destroy(t->producer);
    for (int32_t p = 0; t->q && p < t->nparts; p++) {
        for (size_t i = t->q[p].head; i < t->q[p].n; i++)
            learnd__v1__joined_example__free_unpacked(t->q[p].v[i].m, NULL);
        free(t->q[p].v);
    }
    free(t->q);
    free(t->delay);
    free(t);
    r->train = NULL;
}

/* ---- Records ------------------------------------------------------------ */

/* A record the trainer cannot take: to its dead-letter topic with the
 * reason, in the open transaction. */
static void dead_letter(run_t *r, const rd_kafka_message_t *m, int why,
                        const char *detail)
{
    struct run_train *t = r->train;
    const char *reason = dl_reason[why];
    if (!r->in->writes) { /* counted, not written */
        t->dead++;
        t->dl[why]++;
        r->dead++;
        return;
    }
    char part[16], off[24];
    snprintf(part, sizeof(part), "%d", (int)m->partition);
    snprintf(off, sizeof(off), "%lld", (long long)m->offset);
    rd_kafka_headers_t *h = rd_kafka_headers_new(7);
    rd_kafka_header_add(h, "learnd.error", -1, reason, -1);
    rd_kafka_header_add(h, "learnd.error.detail", -1, detail, -1);
    rd_kafka_header_add(h, "learnd.src.topic", -1, r->examples_topic, -1);
    rd_kafka_header_add(h, "learnd.src.partition", -1, part, -1);
    rd_kafka_header_add(h, "learnd.src.offset", -1, off, -1);
    /* whose it is, as the join side's dead letters say */
    rd_kafka_header_add(h, "learnd.group", -1, t->group, -1);
    rd_kafka_header_add(h, "learnd.model", -1, r->tconf.name, -1);
    rd_kafka_resp_err_t e;
    while ((e = rd_kafka_producev(
                t->producer, RD_KAFKA_V_TOPIC(r->conf->pipeline.dlq_topic),
                RD_KAFKA_V_KEY(m->key, m->key_len),
                RD_KAFKA_V_VALUE(m->payload, m->len),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h),
                RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
        rd_kafka_poll(t->producer, 100);
    if (e) {
        rd_kafka_headers_destroy(h);
        ld_log(LD_LOG_CRIT, MOD,
               "msg=\"cannot dead-letter an examples record: exiting\" "
               "err=\"%s\"",
               rd_kafka_err2str(e));
        r->exit_code = LD_EXIT_RUNTIME; /* never lose one silently */
        return;
    }
    t->dead++;
    t->dl[why]++;
    r->dead++;
    ld_log(LD_LOG_WARN, MOD,
           "msg=\"examples record dead-lettered\" partition=%d offset=%lld "
           "reason=%s detail=%s",
           (int)m->partition, (long long)m->offset, reason, ld_log_q(detail));
}

/* Why the record is not one this model can train on: a dead-letter
 * reason with the detail in why, or -1 when it is one. */
static int check(const run_t *r, const Learnd__V1__JoinedExample *j,
                 int32_t partition, char *why, size_t size)
{
    const struct run_train *t = r->train;
    const Learnd__V1__LabelledExample *e = j->example;
    if (j->hash_bits != t->hash_bits || j->dense_dim != t->dense_dim ||
        j->feature_map_hash.len != 32 ||
        memcmp(j->feature_map_hash.data, t->fmap, 32) != 0) {
        snprintf(why, size,
                 "the join's model spec (hash_bits %u, dense_dim %u) or "
                 "feature map differs from this trainer's (hash_bits %u, "
                 "dense_dim %u)",
                 j->hash_bits, j->dense_dim, t->hash_bits, t->dense_dim);
        return e ? DL_SPEC : DL_SPEC_WM;
    }
    if (e &&
        (e->sample_type < 1 || (int)e->sample_type > (int)LD_SAMPLE__COUNT ||
         e->n_indices != e->n_values || e->partition != partition)) {
        snprintf(why, size,
                 "invalid example (sample type, index/value counts or source "
                 "partition)");
        return DL_INVALID;
    }
    why[0] = '\0';
    return -1;
}

static int push(part_t *q, Learnd__V1__JoinedExample *m, int64_t offset,
                int64_t ts_ms)
{
    if (q->head > 0 && q->head == q->n)
        q->head = q->n = 0;
    if (q->n == q->cap) {
        if (q->head > 0) {
            memmove(q->v, q->v + q->head, (q->n - q->head) * sizeof(*q->v));
            q->n -= q->head;
            q->head = 0;
        } else {
            size_t cap = q->cap ? q->cap * 2 : 256;
            qent_t *v = realloc(q->v, cap * sizeof(*v));
            if (!v)
                return -1;
            q->v = v;
            q->cap = cap;
        }
    }
    q->v[q->n++] = (qent_t){m, offset, ts_ms};
    return 0;
}

/* One record of the examples topic. */
static void take_record(run_t *r, const rd_kafka_message_t *m)
{
    struct run_train *t = r->train;
    if (m->partition < 0 || m->partition >= t->nparts)
        return;
    part_t *q = &t->q[m->partition];
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        q->eof = 1;
        return;
    }
    if (m->err) {
        ld_log(LD_LOG_WARN, MOD, "msg=\"consumer error\" err=\"%s\"",
               rd_kafka_err2str(m->err));
        return;
    }
    q->eof = 0;
    q->next = m->offset + 1;
    t->records++;
    r->consumed++;
    ld_lineage_consumed(r->lin, r->examples_topic, m->partition, m->offset);
    Learnd__V1__JoinedExample *j =
        learnd__v1__joined_example__unpack(NULL, m->len, m->payload);
    char why[256];
    if (!j) {
        dead_letter(r, m, DL_UNDECODABLE,
                    "not a learnd.v1.JoinedExample protobuf");
        return;
    }
    int bad = check(r, j, m->partition, why, sizeof(why));
    if (bad >= 0) {
        dead_letter(r, m, bad, why);
        learnd__v1__joined_example__free_unpacked(j, NULL);
        return;
    }
    if (!j->example) { /* a watermark record */
        t->wm_records++;
        q->wm = j->watermark_ms;
        q->wm_off = m->offset;
        learnd__v1__joined_example__free_unpacked(j, NULL);
        return;
    }
    if (m->offset < q->skip) { /* trained before the restart */
        learnd__v1__joined_example__free_unpacked(j, NULL);
        return;
    }
    t->by_type[j->example->sample_type - 1]++;
    if (push(q, j, m->offset, rd_kafka_message_timestamp(m, NULL))) {
        learnd__v1__joined_example__free_unpacked(j, NULL);
        ld_log(LD_LOG_CRIT, MOD, "msg=\"out of memory queueing an example\"");
        r->exit_code = LD_EXIT_RUNTIME;
    }
}

/* ---- The merge ---------------------------------------------------------- */

/* The release order of one `learnd run` (labeling/labeling.h). */
static int before(const Learnd__V1__LabelledExample *a,
                  const Learnd__V1__LabelledExample *b)
{
    if (a->decision_time_ms != b->decision_time_ms)
        return a->decision_time_ms < b->decision_time_ms;
    if (a->partition != b->partition)
        return a->partition < b->partition;
    if (a->offset != b->offset)
        return a->offset < b->offset;
    return a->sample_type < b->sample_type;
}

/* The examples' delay: ms since the join produced the record. */
static void delay_add(struct run_train *t, int64_t ms)
{
    if (ms < 0)
        ms = 0; /* clocks of another host, or a timestamp set by hand */
    size_t b = ms < DELAY_FINE ? (size_t)ms
                               : DELAY_FINE + (size_t)((ms - DELAY_FINE) / 16);
    t->delay[b < DELAY_NB ? b : DELAY_NB - 1]++;
    t->ndelay++;
    t->delay_sum_s += (double)ms / 1000.0;
}

/* The q quantile of the delays, in seconds: the upper edge of its bucket. */
static double delay_quantile(const struct run_train *t, double q)
{
    uint64_t want = (uint64_t)ceil(q * (double)t->ndelay), n = 0;
    for (size_t b = 0; b < DELAY_NB; b++)
        if ((n += t->delay[b]) >= want && n > 0)
            return b < DELAY_FINE
                       ? (double)(b + 1) / 1000.0
                       : (double)(DELAY_FINE + (b - DELAY_FINE + 1) * 16) /
                             1000.0;
    return 0.0;
}

static void train_one(run_t *r, const Learnd__V1__LabelledExample *e)
{
    ld_example_t ex = {
        .x = {e->indices, e->values, e->dense, (uint32_t)e->n_indices,
              (uint32_t)e->n_dense},
        .label = e->label,
        .weight = e->weight,
        .sample_type = (ld_sample_type_t)(e->sample_type - 1),
        .event_time_ms = e->event_time_ms,
        .label_time_ms = e->label_time_ms,
        .partition = e->partition,
        .offset = e->offset,
        .event_id = e->event_id,
    };
    r->train_dt = e->decision_time_ms;
    /* The input range behind the examples (the event's offset), so that a
     * version can be replayed from the inputs too (docs/OPERATIONS.md,
     * "Scaling out"). */
    if (!e->topic || !e->topic[0] ||
        strcmp(e->topic, r->conf->pipeline.events_topic) == 0)
        ld_lineage_consumed(r->lin, r->conf->pipeline.events_topic,
                            e->partition, e->offset);
    if (r->hooks.example)
        r->hooks.example(r->hooks.opaque, &ex);
    ld_err_t err = ld_trainer_add(r->trainer, &ex);
    if (err) {
        uint64_t n = ++r->model_refused;
        if ((n & (n - 1)) == 0)
            ld_log(LD_LOG_WARN, MOD,
                   "msg=\"example refused by the model\" partition=%d "
                   "offset=%lld err=\"%s\" refused=%llu",
                   (int)ex.partition, (long long)ex.offset, ld_err_str(err),
                   (unsigned long long)r->model_refused);
    } else {
        r->examples++;
    }
    /* Right after the micro-batch that decided it, as run.c does. */
    run_take_decisions(r);
}

/* Trains every example that is next in the order: the smallest head,
 * once each other partition holds an example or a watermark past it (a
 * partition holding none may still get one that comes first). */
static void merge(run_t *r)
{
    struct run_train *t = r->train;
    int64_t now_wall = 0;
    int32_t wait_on = -1; /* the partition holding the head back */
    while (!r->exit_code && !r->in->reached(r)) {
        int32_t best = -1;
        for (int32_t p = 0; p < t->nparts; p++) {
            part_t *q = &t->q[p];
            if (q->head < q->n &&
                (best < 0 || before(q->v[q->head].m->example,
                                    t->q[best].v[t->q[best].head].m->example)))
                best = p;
        }
        if (best < 0)
            break;
        part_t *bq = &t->q[best];
        Learnd__V1__JoinedExample *m = bq->v[bq->head].m;
        int64_t dt = m->example->decision_time_ms;
        for (int32_t p = 0; p < t->nparts && wait_on < 0; p++)
            if (p != best && t->q[p].head == t->q[p].n && !(dt < t->q[p].wm))
                wait_on = p;
        if (wait_on >= 0)
            break;
        if (r->in->writes) { /* a replay's delay would be its age */
            if (!now_wall)   /* one clock read per call: it runs for µs */
                now_wall = ld_now_wall_ms();
            delay_add(t, now_wall - bq->v[bq->head].ts_ms);
        }
        bq->head++;
        train_one(r, m->example);
        learnd__v1__joined_example__free_unpacked(m, NULL);
    }
    /* The clock is read only when what the merge waits on changes. */
    if (wait_on != t->waiting) {
        int64_t now = ld_now_mono_ms();
        if (t->waiting >= 0)
            t->q[t->waiting].wait_ms += now - t->wait_from;
        t->waiting = wait_on;
        t->wait_from = now;
    }
}

/* ---- Commit points and the loop ----------------------------------------- */

/* Per partition, the first example not trained yet (or the next record):
 * a restart re-reads the queued ones. Caller destroys. */
static rd_kafka_topic_partition_list_t *offsets(const run_t *r)
{
    const struct run_train *t = r->train;
    rd_kafka_topic_partition_list_t *l =
        rd_kafka_topic_partition_list_new(t->nparts);
    for (int32_t p = 0; p < t->nparts; p++) {
        const part_t *q = &t->q[p];
        if (q->next < 0)
            continue;
        int64_t untrained = q->head < q->n ? q->v[q->head].offset : q->next;
        int64_t from =
            q->wm_off >= 0 && q->wm_off < untrained ? q->wm_off : untrained;
        rd_kafka_topic_partition_t *tp =
            rd_kafka_topic_partition_list_add(l, r->examples_topic, p);
        tp->offset = from;
        char md[48];
        int n =
            snprintf(md, sizeof(md), "untrained=%lld", (long long)untrained);
        tp->metadata = malloc((size_t)n);
        if (tp->metadata) {
            memcpy(tp->metadata, md, (size_t)n);
            tp->metadata_size = (size_t)n;
        }
    }
    return l;
}

size_t run_train_positions(run_t *r, Learnd__V1__PartitionPosition **out)
{
    rd_kafka_topic_partition_list_t *l = offsets(r);
    size_t n = (size_t)l->cnt;
    Learnd__V1__PartitionPosition *pos = calloc(n ? n : 1, sizeof(*pos));
    for (size_t i = 0; pos && i < n; i++) {
        learnd__v1__partition_position__init(&pos[i]);
        pos[i].topic = r->examples_topic;
        pos[i].partition = l->elems[i].partition;
        pos[i].next_offset = r->train->q[l->elems[i].partition].next;
        pos[i].reread_from = l->elems[i].offset;
    }
    rd_kafka_topic_partition_list_destroy(l);
    *out = pos;
    return pos ? n : 0;
}

/* Publications, dead letters and the examples topic's offsets in one
 * transaction; sets exit_code when it fails (a restart resumes from the
 * last commit). */
static void commit_point(run_t *r)
{
    struct run_train *t = r->train;
    if (!r->txn_id[0])
        return;
    if (t->records == t->at_commit && !ld_publisher_waiting(r->pub))
        return;
    uint64_t published = r->ctr->published;
    ld_err_t err = ld_publisher_flush(r->pub, t->producer);
    if (!err && r->stateful)
        err = run_save_state(r, t->producer);
    rd_kafka_error_t *e = NULL;
    if (!err) {
        rd_kafka_topic_partition_list_t *l = offsets(r);
        e = rd_kafka_send_offsets_to_transaction(t->producer, l, t->cgmd, -1);
        rd_kafka_topic_partition_list_destroy(l);
    }
    if (!err && !e)
        e = rd_kafka_commit_transaction(t->producer, 60000);
    ld_metrics_add(r->reg, r->fam.txn,
                   err || e ? "result=\"abort\"" : "result=\"commit\"", 1);
    if (err || e) {
        ld_log(LD_LOG_CRIT, MOD,
               "msg=\"commit point failed: exiting so that a restart "
               "resumes from the last commit\" err=\"%s\"",
               e ? rd_kafka_error_string(e) : ld_err_str(err));
        if (e && !rd_kafka_error_is_fatal(e))
            rd_kafka_error_destroy(
                rd_kafka_abort_transaction(t->producer, 30000));
        rd_kafka_error_destroy(e);
        r->exit_code = LD_EXIT_RUNTIME;
        return;
    }
    t->at_commit = t->records;
    run_committed(r, published);
    if ((e = rd_kafka_begin_transaction(t->producer))) {
        ld_log(LD_LOG_CRIT, MOD,
               "msg=\"cannot begin a transaction: exiting\" err=\"%s\"",
               rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        r->exit_code = LD_EXIT_RUNTIME;
    }
}

/* The metrics, once a second and at the stop (docs/OPERATIONS.md lists
 * them). */
static void report(run_t *r)
{
    struct run_train *t = r->train;
    ld_metrics_t *m = r->reg;
    ld_metrics_set(m, r->fam.records, "kind=\"example\"",
                   (double)(t->records - t->dead - t->wm_records));
    ld_metrics_set(m, r->fam.records, "kind=\"watermark\"",
                   (double)t->wm_records);
    ld_metrics_set(m, t->fam_wm, "", (double)t->wm_records);
    for (int k = 0; k < DL__COUNT; k++) {
        char labels[96];
        snprintf(labels, sizeof(labels), "kind=\"example\",reason=\"%s\"",
                 dl_reason[k]);
        if (t->dl[k])
            ld_metrics_set(m, r->fam.dlq, labels, (double)t->dl[k]);
    }
    for (int s = 0; s < LD_SAMPLE__COUNT; s++) {
        char labels[64];
        snprintf(labels, sizeof(labels), "sample_type=\"%s\"",
                 ld_sample_type_name((ld_sample_type_t)s));
        ld_metrics_set(m, r->fam.examples, labels, (double)t->by_type[s]);
    }
    ld_metrics_set(m, r->fam.dropped,
                   "kind=\"example\",reason=\"model_refused\"",
                   (double)r->model_refused);
    size_t queued = 0;
    int64_t now = ld_now_mono_ms();
    for (int32_t p = 0; p < t->nparts; p++) {
        const part_t *q = &t->q[p];
        char labels[320];
        queued += q->n - q->head;
        int64_t wait = q->wait_ms + (t->waiting == p ? now - t->wait_from : 0);
        snprintf(labels, sizeof(labels), "partition=\"%d\"", (int)p);
        ld_metrics_set(m, t->fam_wait, labels, (double)wait / 1000.0);
        int64_t lo = 0, hi = 0;
        if (q->next >= 0 &&
            !rd_kafka_get_watermark_offsets(t->consumer, r->examples_topic, p,
                                            &lo, &hi) &&
            hi >= q->next) {
            snprintf(labels, sizeof(labels), "topic=\"%s\",partition=\"%d\"",
                     r->examples_topic, (int)p);
            ld_metrics_set(m, r->fam.lag, labels, (double)(hi - q->next));
        }
    }
    ld_metrics_set(m, t->fam_queued, "", (double)queued);
    if (t->ndelay) {
        static const char *const qs[] = {"0.5", "0.9", "0.99", "1"};
        static const double qv[] = {0.5, 0.9, 0.99, 1.0};
        for (size_t i = 0; i < 4; i++) {
            char labels[32];
            snprintf(labels, sizeof(labels), "quantile=\"%s\"", qs[i]);
            ld_metrics_set(m, t->fam_delay, labels, delay_quantile(t, qv[i]));
        }
        ld_metrics_set(m, t->fam_delay, "_sum", t->delay_sum_s);
        ld_metrics_set(m, t->fam_delay, "_count", (double)t->ndelay);
    }
    ld_trainer_metrics_t model, champion;
    ld_trainer_metrics(r->trainer, &model, &champion);
    run_report_model(r, &model, &champion);
}

static int caught_up(const run_t *r)
{
    for (int32_t p = 0; p < r->train->nparts; p++)
        if (!r->train->q[p].eof)
            return 0;
    return 1;
}

static int should_stop(run_t *r)
{
    return ld_signals_stop_requested() ||
           (r->hooks.should_stop && r->hooks.should_stop(r->hooks.opaque));
}

int run_train(run_t *r)
{
    struct run_train *t = r->train;
    ld_metrics_set(r->reg, r->fam.up, "", 1);
    ld_metrics_set_ready(r->reg, 1);
    int64_t now = ld_now_mono_ms();
    t->next_commit = now + r->conf->daemon.commit_interval_ms;
    t->next_report = now + 1000;
    int done = 0;
    while (!r->exit_code && !should_stop(r)) {
        rd_kafka_poll(t->producer, 0); /* delivery reports */
        rd_kafka_message_t *m = rd_kafka_consumer_poll(t->consumer, 100);
        if (m) {
            take_record(r, m);
            rd_kafka_message_destroy(m);
            merge(r);
        }
        if (r->in->reached(r))
            break;
        if (r->opts->until_caught_up && caught_up(r)) {
            done = 1;
            break;
        }
        now = ld_now_mono_ms();
        if (now >= t->next_commit || ld_publisher_waiting(r->pub) >= 4) {
            commit_point(r);
            t->next_commit = now + r->conf->daemon.commit_interval_ms;
        }
        if (now >= t->next_report) {
            ld_metrics_heartbeat(r->reg); /* /healthz: the loop is alive */
            if (ld_signals_take_reopen() &&
                ld_config_apply_logging(r->conf) != LD_OK)
                ld_log(LD_LOG_ERR, MOD, "msg=\"cannot reopen the log file\"");
            report(r);
            t->next_report = now + 1000;
        }
    }
    ld_metrics_set_ready(r->reg, 0);
    if (!r->exit_code && done && !r->in->reached(r))
        run_final_checkpoint(r);
    r->in->end(r); /* a replay that never reached its version fails */
    if (!r->exit_code)
        commit_point(r);
    report(r);
    size_t queued = 0;
    for (int32_t p = 0; p < t->nparts; p++)
        queued += t->q[p].n - t->q[p].head;
    double s = (double)(ld_now_mono_ms() - r->start_ms) / 1000.0;
    ld_log(LD_LOG_NOTICE, MOD,
           "msg=\"stopped\" records_process=%llu examples_process=%llu "
           "dead_lettered_process=%llu published_process=%llu "
           "published_lifetime=%llu queued=%zu seconds=%.2f "
           "examples_per_s=%.0f delay_p50_s=%.3f delay_p99_s=%.3f exit=%d",
           (unsigned long long)t->records, (unsigned long long)r->examples,
           (unsigned long long)t->dead,
           (unsigned long long)(r->ctr->published - r->published_at_start),
           (unsigned long long)r->ctr->published, queued, s,
           s > 0 ? (double)r->examples / s : 0.0, delay_quantile(t, 0.5),
           delay_quantile(t, 0.99), r->exit_code);
    return r->exit_code;
}
