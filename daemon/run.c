/* SPDX-License-Identifier: Apache-2.0 */
/* The run loop: records in, labelled examples through the trainer, trigger
 * decisions out, all committed at commit points. */
#include "daemon/run.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/metrics.h"
#include "daemon/signals.h"
#include "daemon/version.h"
#include "pipeline/pipeline.h"

#define MOD "daemon"

/* A trigger decision waiting for the next commit point, with the snapshot
 * it publishes (PASS) or NULL (event only). */
typedef struct outgoing {
    ld_trigger_decision_t *decision;
    ld_snapshot_t *snap;
    uint64_t version;
} outgoing_t;

/* Metric family ids. */
typedef struct families {
    int records, dlq, examples, pending, pending_bytes, watermark, model,
        champion, published, triggers, txn, up, version, lag_input;
} families_t;

typedef struct run {
    const ld_config_t *conf;
    const ld_run_opts_t *opts;
    ld_run_hooks_t hooks;
    ld_trainer_conf_t tconf;
    ld_pipeline_conf_t pconf; /* conf->pipeline, with the model's hash_bits */
    ld_pipeline_t *pipe;
    ld_joiner_t *joiner;
    ld_trainer_t *trainer;
    ld_triggers_t *trig;
    ld_metrics_t *reg;
    ld_http_t *http;
    families_t fam;
    char txn_id[256];
    int exit_code; /* set once a fatal error is seen */
    uint64_t consumed;
    uint64_t version; /* last published (or warm-started) version */
    uint64_t published;
    uint64_t examples;
    uint64_t parent_counts[LD_SAMPLE__COUNT];
    outgoing_t *out;
    size_t nout, capout;
    int64_t start_ms;
} run_t;

/* ---- Stage callbacks ---------------------------------------------------- */

static void on_assigned(void *opaque, rd_kafka_topic_partition_list_t *parts)
{
    run_t *r = opaque;
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &parts->elems[i];
        /* Partition p of both topics joins together; act on the events
         * topic's entry only. */
        if (strcmp(tp->topic, r->conf->pipeline.events_topic) != 0)
            continue;
        ld_err_t err = ld_joiner_assign(r->joiner, tp->partition);
        if (err)
            ld_log(LD_LOG_ERR, MOD,
                   "msg=\"cannot assign partition to the joiner\" "
                   "partition=%d err=\"%s\"",
                   (int)tp->partition, ld_err_str(err));
        else
            ld_log(LD_LOG_INFO, MOD, "msg=\"partition assigned\" partition=%d",
                   (int)tp->partition);
    }
}

static void on_revoked(void *opaque,
                       const rd_kafka_topic_partition_list_t *parts, int lost)
{
    run_t *r = opaque;
    for (int i = 0; i < parts->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &parts->elems[i];
        if (strcmp(tp->topic, r->conf->pipeline.events_topic) != 0)
            continue;
        if (ld_joiner_revoke(r->joiner, tp->partition) == LD_OK)
            ld_log(LD_LOG_INFO, MOD,
                   "msg=\"partition revoked\" partition=%d lost=%d",
                   (int)tp->partition, lost);
    }
}

/* Matured examples of a micro-batch, scored before training: the triggers
 * watch them (deterministically: in release order). */
static void on_scored(void *opaque, const ld_scored_t *s, size_t n)
{
    run_t *r = opaque;
    for (size_t i = 0; i < n; i++) {
        ld_trigger_obs_t obs = {.x = NULL,
                                .label = s[i].label,
                                .weight = s[i].weight,
                                .sample_type = s[i].sample_type,
                                .event_time_ms = s[i].event_time_ms,
                                .p_challenger = s[i].pred,
                                .p_champion = s[i].champion};
        if (ld_triggers_observe_obs(r->trig, &obs) != LD_OK)
            ld_log(LD_LOG_WARN, MOD, "msg=\"trigger observe failed\"");
    }
    if (r->hooks.scored)
        r->hooks.scored(r->hooks.opaque, s, n);
}

/* ---- Publications ------------------------------------------------------- */

static int queue_outgoing(run_t *r, ld_trigger_decision_t *d,
                          ld_snapshot_t *snap, uint64_t version)
{
    if (r->nout == r->capout) {
        size_t cap = r->capout ? r->capout * 2 : 8;
        outgoing_t *o = realloc(r->out, cap * sizeof(*o));
        if (!o)
            return -1;
        r->out = o;
        r->capout = cap;
    }
    r->out[r->nout++] = (outgoing_t){d, snap, version};
    return 0;
}

/* Takes the trigger decisions made so far. A PASS publishes the model as it
 * is after the micro-batch holding the deciding example: a pure function of
 * the input, whatever the wall clock did. */
static void take_decisions(run_t *r)
{
    ld_joiner_stats_t js;
    ld_joiner_stats(r->joiner, &js);
    ld_trigger_decision_t *d;
    while ((d = ld_triggers_poll(r->trig, js.watermark_ms))) {
        ld_snapshot_t *snap = NULL;
        uint64_t version = 0;
        if (ld_trigger_decision_verdict(d) == LD_TRIGGER_VERDICT_PASS &&
            ld_trigger_decision_action(d) == LD_TRIGGER_ACTION_PUBLISH) {
            snap = ld_trainer_snapshot(r->trainer);
            version = ld_trigger_decision_challenger_version(d);
            if (snap && ld_trainer_champion_set(r->trainer, snap) != LD_OK)
                ld_log(LD_LOG_WARN, MOD, "msg=\"champion not replaced\"");
        }
        if (queue_outgoing(r, d, snap, version)) {
            ld_log(LD_LOG_ERR, MOD, "msg=\"out of memory queueing a trigger\"");
            ld_snapshot_destroy(snap);
            ld_trigger_decision_destroy(d);
        }
    }
}

static ld_err_t produce(run_t *r, const char *topic, int32_t partition,
                        const char *key, const void *val, size_t len,
                        int64_t *offset_out)
{
    rd_kafka_resp_err_t e = rd_kafka_producev(
        ld_pipeline_producer(r->pipe), RD_KAFKA_V_TOPIC(topic),
        RD_KAFKA_V_PARTITION(partition), RD_KAFKA_V_KEY(key, strlen(key)),
        RD_KAFKA_V_VALUE((void *)(uintptr_t)val, len),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(offset_out),
        RD_KAFKA_V_END);
    if (e) {
        ld_log(LD_LOG_ERR, MOD, "msg=\"produce failed\" topic=%s err=\"%s\"",
               topic, rd_kafka_err2str(e));
        return LD_ERR_KAFKA;
    }
    return LD_OK;
}

/* Writes one checkpoint: local store, chunks, manifest. Fills pub. */
static ld_err_t publish_checkpoint(run_t *r, outgoing_t *o, char *path,
                                   size_t path_size, int64_t *manifest_off,
                                   uint8_t sha[32])
{
    const char *model = r->tconf.name;
    const char *topic = r->conf->daemon.checkpoint_topic;
    ld_buf_t ckpt = {0}, manifest = {0};
    ld_buf_t *chunks = NULL;
    size_t nchunks = 0;
    int64_t *offsets = NULL;
    ld_err_t err;
    uint64_t counts[LD_SAMPLE__COUNT];
    ld_snapshot_counts(o->snap, counts);
    ld_ckpt_meta_t meta = {.model = model,
                           .version = o->version,
                           .parent_version = r->version,
                           .created_at_ms = ld_now_wall_ms(),
                           .trigger_id = ld_trigger_decision_id(o->decision),
                           .learnd_version = LD_VERSION,
                           .hash_function = "murmur3_32",
                           .hash_seed = (uint32_t)r->conf->pipeline.hash_seed,
                           .parent_counts = r->parent_counts};
    if ((err = ld_ckpt_encode(o->snap, &meta, &ckpt)))
        goto out;
    ld_ckpt_sha256(ckpt.data, ckpt.len, sha);
    path[0] = '\0';
    if (r->conf->checkpoint.dir && r->conf->checkpoint.dir[0] &&
        (err = ld_ckpt_store_write(r->conf->checkpoint.dir, model, o->version,
                                   ckpt.data, ckpt.len,
                                   r->conf->checkpoint.keep, path, path_size)))
        goto out;
    if ((err = ld_ckpt_chunks(ckpt.data, ckpt.len, model, o->version,
                              (size_t)r->conf->checkpoint.chunk_size, &chunks,
                              &nchunks)))
        goto out;
    offsets = calloc(nchunks + 1, sizeof(*offsets));
    if (!offsets) {
        err = LD_ERR_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < nchunks; i++) {
        char key[300];
        snprintf(key, sizeof(key), "%s/%llu/%zu", model,
                 (unsigned long long)o->version, i);
        offsets[i] = -1;
        if ((err = produce(r, topic, 0, key, chunks[i].data, chunks[i].len,
                           &offsets[i])))
            goto out;
    }
    /* The manifest names the first chunk's offset: wait for it. */
    rd_kafka_flush(ld_pipeline_producer(r->pipe), 30000);
    if (nchunks && offsets[0] < 0) {
        ld_log(LD_LOG_ERR, MOD, "msg=\"checkpoint chunks not delivered\"");
        err = LD_ERR_KAFKA;
        goto out;
    }
    ld_ckpt_manifest_info_t info = {.model = model,
                                    .version = o->version,
                                    .parent_version = r->version,
                                    .chunk_count = (uint32_t)nchunks,
                                    .first_chunk_offset =
                                        nchunks ? offsets[0] : -1,
                                    .topic = topic,
                                    .partition = 0,
                                    .created_at_ms = meta.created_at_ms,
                                    .trigger_id = meta.trigger_id};
    if ((err = ld_ckpt_manifest_encode(ckpt.data, ckpt.len, &info, &manifest)))
        goto out;
    offsets[nchunks] = -1;
    if ((err = produce(r, topic, 0, model, manifest.data, manifest.len,
                       &offsets[nchunks])))
        goto out;
    rd_kafka_flush(ld_pipeline_producer(r->pipe), 30000);
    *manifest_off = offsets[nchunks];
    memcpy(r->parent_counts, counts, sizeof(counts));
    r->version = o->version;
    r->published++;
    ld_log(LD_LOG_NOTICE, MOD,
           "msg=\"checkpoint published\" model=%s version=%llu bytes=%zu "
           "chunks=%zu manifest_offset=%lld path=%s",
           model, (unsigned long long)o->version, ckpt.len, nchunks,
           (long long)*manifest_off, path[0] ? path : "-");
out:
    free(offsets);
    ld_ckpt_chunks_free(chunks, nchunks);
    free(ckpt.data);
    free(manifest.data);
    return err;
}

/* Sends every queued trigger event (and its checkpoint) into the open
 * transaction. */
static ld_err_t send_outgoing(run_t *r)
{
    ld_err_t err = LD_OK;
    size_t i;
    for (i = 0; i < r->nout && !err; i++) {
        outgoing_t *o = &r->out[i];
        char path[1024] = "";
        int64_t moff = -1;
        uint8_t sha[32];
        ld_trigger_publication_t pub = {0, -1, NULL, sha};
        if (o->snap) {
            err = publish_checkpoint(r, o, path, sizeof(path), &moff, sha);
            if (err)
                break;
            pub.manifest_offset = moff;
            pub.path = path[0] ? path : NULL;
        }
        uint8_t *buf = NULL;
        size_t len = 0;
        err = ld_trigger_event_encode(o->decision, o->snap ? &pub : NULL,
                                      ld_now_wall_ms(),
                                      r->conf->triggers.format, &buf, &len);
        if (!err)
            err = produce(r, r->conf->daemon.trigger_topic,
                          RD_KAFKA_PARTITION_UA, r->tconf.name, buf, len, NULL);
        if (!err)
            ld_log(LD_LOG_NOTICE, "triggers",
                   "msg=\"trigger event sent\" id=%s type=%s verdict=%s "
                   "reason=\"%s\"",
                   ld_trigger_decision_id(o->decision),
                   ld_trigger_type_name(ld_trigger_decision_type(o->decision)),
                   ld_trigger_verdict_name(
                       ld_trigger_decision_verdict(o->decision)),
                   ld_trigger_decision_reason(o->decision));
        free(buf);
    }
    for (size_t k = 0; k < i; k++) {
        ld_snapshot_destroy(r->out[k].snap);
        ld_trigger_decision_destroy(r->out[k].decision);
    }
    memmove(r->out, r->out + i, (r->nout - i) * sizeof(*r->out));
    r->nout -= i;
    return err;
}

/* A commit point: outputs and input offsets in one transaction. */
static ld_err_t commit_point(run_t *r)
{
    ld_err_t err = ld_pipeline_txn_begin(r->pipe);
    if (!err)
        err = send_outgoing(r);
    if (!err)
        err = ld_pipeline_txn_commit(r->pipe, NULL, 60000);
    if (err == LD_ERR_FENCED) {
        ld_log(LD_LOG_CRIT, MOD,
               "msg=\"another instance took over transactional.id: "
               "exiting\" transactional_id=%s",
               r->txn_id);
        r->exit_code = LD_EXIT_RUNTIME;
    } else if (err) {
        ld_log(LD_LOG_ERR, MOD, "msg=\"commit failed\" err=\"%s\"",
               ld_err_str(err));
    }
    ld_metrics_add(r->reg, r->fam.txn,
                   err ? "result=\"abort\"" : "result=\"commit\"", 1);
    return err;
}

/* ---- Metrics ------------------------------------------------------------ */

static void declare_metrics(run_t *r)
{
    families_t *f = &r->fam;
    f->up = ld_metrics_family(r->reg, "up", LD_METRIC_GAUGE,
                              "1 while the run loop is running");
    f->records =
        ld_metrics_family(r->reg, "records_consumed_total", LD_METRIC_COUNTER,
                          "Input records decoded, by topic kind");
    f->dlq = ld_metrics_family(r->reg, "dead_letters_total", LD_METRIC_COUNTER,
                               "Records sent to the dead-letter topic, by "
                               "topic kind and reason");
    f->examples = ld_metrics_family(r->reg, "examples_total", LD_METRIC_COUNTER,
                                    "Labelled examples released, by "
                                    "sample_type");
    f->pending = ld_metrics_family(r->reg, "pending_joins", LD_METRIC_GAUGE,
                                   "Events and labels waiting in the "
                                   "joiner, by kind");
    f->pending_bytes = ld_metrics_family(
        r->reg, "pending_bytes", LD_METRIC_GAUGE, "Bytes held by the joiner");
    f->watermark =
        ld_metrics_family(r->reg, "watermark_lag_seconds", LD_METRIC_GAUGE,
                          "Wall clock minus the joiner's "
                          "watermark");
    f->model = ld_metrics_family(r->reg, "model_metric", LD_METRIC_GAUGE,
                                 "Windowed prequential metrics, by model "
                                 "(challenger or champion) and metric");
    f->published =
        ld_metrics_family(r->reg, "checkpoints_published_total",
                          LD_METRIC_COUNTER, "Checkpoints published");
    f->version = ld_metrics_family(r->reg, "champion_version", LD_METRIC_GAUGE,
                                   "Version of the last published model");
    f->txn = ld_metrics_family(r->reg, "transactions_total", LD_METRIC_COUNTER,
                               "Commit points, by result");
}

static void set_model_metrics(run_t *r, const char *who,
                              const ld_trainer_metrics_t *m)
{
    char labels[96];
    static const char *const names[] = {"logloss", "auc", "accuracy", "rmse",
                                        "calibration"};
    const double vals[] = {m->logloss, m->auc, m->accuracy, m->rmse,
                           m->calibration};
    for (size_t i = 0; i < 5; i++) {
        snprintf(labels, sizeof(labels), "model=\"%s\",metric=\"%s\"", who,
                 names[i]);
        ld_metrics_set(r->reg, r->fam.model, labels, vals[i]);
    }
}

static void report(run_t *r)
{
    ld_pipeline_stats_t ps;
    ld_joiner_stats_t js;
    ld_run_progress_t p = {0};
    ld_pipeline_stats(r->pipe, &ps);
    ld_joiner_stats(r->joiner, &js);
    ld_trainer_metrics(r->trainer, &p.model, &p.champion);

    ld_metrics_set(r->reg, r->fam.records, "kind=\"event\"",
                   (double)ps.records[LD_RECORD_EVENT]);
    ld_metrics_set(r->reg, r->fam.records, "kind=\"label\"",
                   (double)ps.records[LD_RECORD_LABEL]);
    uint64_t dlq = 0;
    for (int k = 0; k < 2; k++) {
        for (int why = 1; why < LD_REASON__COUNT; why++) {
            char labels[96];
            if (!ps.dlq[k][why])
                continue;
            dlq += ps.dlq[k][why];
            snprintf(labels, sizeof(labels), "kind=\"%s\",reason=\"%s\"",
                     k ? "label" : "event", ld_reason_name((ld_reason_t)why));
            ld_metrics_set(r->reg, r->fam.dlq, labels, (double)ps.dlq[k][why]);
        }
    }
    for (int s = 0; s < LD_SAMPLE__COUNT; s++) {
        char labels[64];
        snprintf(labels, sizeof(labels), "sample_type=\"%s\"",
                 ld_sample_type_name((ld_sample_type_t)s));
        ld_metrics_set(r->reg, r->fam.examples, labels, (double)js.examples[s]);
    }
    ld_metrics_set(r->reg, r->fam.pending, "kind=\"event\"",
                   (double)js.pending_events);
    ld_metrics_set(r->reg, r->fam.pending, "kind=\"label\"",
                   (double)js.pending_labels);
    ld_metrics_set(r->reg, r->fam.pending_bytes, "", (double)js.bytes_total);
    if (js.watermark_ms > INT64_MIN / 2)
        ld_metrics_set(r->reg, r->fam.watermark, "",
                       (double)(ld_now_wall_ms() - js.watermark_ms) / 1000.0);
    set_model_metrics(r, "challenger", &p.model);
    set_model_metrics(r, "champion", &p.champion);
    ld_metrics_set(r->reg, r->fam.published, "", (double)r->published);
    ld_metrics_set(r->reg, r->fam.version, "", (double)r->version);

    if (!r->hooks.progress)
        return;
    p.elapsed_ms = ld_now_mono_ms() - r->start_ms;
    p.events = ps.records[LD_RECORD_EVENT];
    p.labels = ps.records[LD_RECORD_LABEL];
    p.dead_letters = dlq;
    p.examples = r->examples;
    p.pending = js.pending_events;
    p.watermark_ms = js.watermark_ms;
    p.published = r->published;
    p.champion_version = r->version;
    r->hooks.progress(r->hooks.opaque, &p);
}

/* ---- Setup -------------------------------------------------------------- */

/* The trainer's settings, completed from the pipeline's field mapping. */
static int trainer_conf(run_t *r, char *errstr, size_t size)
{
    r->tconf = r->conf->trainer;
    int64_t ndense = (int64_t)r->conf->pipeline.dense_fields.n;
    if (r->tconf.dense_dim == 0)
        r->tconf.dense_dim = ndense;
    if (r->tconf.dense_dim != ndense) {
        snprintf(errstr, size,
                 "trainer.dense_dim is %lld but pipeline.dense_fields "
                 "names %lld fields (leave dense_dim at 0 to follow them)",
                 (long long)r->tconf.dense_dim, (long long)ndense);
        return -1;
    }
    /* One slot count for both: the pipeline hashes into the model's. */
    r->pconf = r->conf->pipeline;
    r->pconf.hash_bits = r->tconf.hash_bits;
    return 0;
}

/* Warm start from the local model store unless told otherwise. */
static ld_err_t warm_start(run_t *r)
{
    const ld_ckpt_conf_t *c = &r->conf->checkpoint;
    if (r->opts->from_scratch || !c->warm_start || !c->dir || !c->dir[0])
        return LD_OK;
    ld_ckpt_t *ck = NULL;
    char why[512];
    ld_err_t err =
        ld_ckpt_store_load_latest(c->dir, r->tconf.name, &ck, why, sizeof(why));
    if (err == LD_ERR_NOENT) {
        ld_log(LD_LOG_INFO, MOD,
               "msg=\"no stored checkpoint: starting from "
               "scratch\"");
        return LD_OK;
    }
    if (err) {
        ld_log(LD_LOG_ERR, MOD,
               "msg=\"cannot load a stored checkpoint\" "
               "err=\"%s\"",
               why);
        return err;
    }
    ld_snapshot_t *snap = ld_ckpt_snapshot(ck);
    const Learnd__V1__Checkpoint *m = ld_ckpt_message(ck);
    uint64_t version = m->lineage ? m->lineage->version : 0;
    if (!snap) {
        err = LD_ERR_NOMEM;
    } else if ((err = ld_trainer_restore(r->trainer, snap, why, sizeof(why)))) {
        ld_log(LD_LOG_ERR, MOD,
               "msg=\"stored checkpoint does not fit this config\" "
               "err=\"%s\"",
               why);
    } else if ((err = ld_trainer_champion_set(r->trainer, snap)) == LD_OK) {
        r->version = version;
        ld_snapshot_counts(snap, r->parent_counts);
        ld_log(LD_LOG_NOTICE, MOD, "msg=\"warm start\" model=%s version=%llu",
               r->tconf.name, (unsigned long long)version);
    }
    ld_snapshot_destroy(snap);
    ld_ckpt_destroy(ck);
    return err;
}

static int setup(run_t *r, char *errstr, size_t size)
{
    const ld_config_t *conf = r->conf;
    if (trainer_conf(r, errstr, size))
        return LD_EXIT_USAGE;
    const char *tid = conf->daemon.transactional_id;
    if (r->opts->no_transactions)
        r->txn_id[0] = '\0';
    else if (tid && tid[0])
        snprintf(r->txn_id, sizeof(r->txn_id), "%s", tid);
    else
        snprintf(r->txn_id, sizeof(r->txn_id), "learnd-%s", r->tconf.name);

    r->reg = ld_metrics_new();
    if (!r->reg) {
        snprintf(errstr, size, "out of memory");
        return LD_EXIT_RUNTIME;
    }
    declare_metrics(r);
    if (conf->metrics.enabled) {
        r->http =
            ld_http_start(r->reg, conf->metrics.listen,
                          (uint16_t)conf->metrics.port, 60000, errstr, size);
        if (!r->http)
            return LD_EXIT_RUNTIME;
        ld_log(LD_LOG_INFO, MOD, "msg=\"metrics endpoint\" url=http://%s:%u/",
               conf->metrics.listen, (unsigned)ld_http_port(r->http));
    }
    r->trainer = ld_trainer_new(&r->tconf, errstr, size);
    if (!r->trainer)
        return LD_EXIT_USAGE;
    ld_trainer_set_scored_cb(r->trainer, on_scored, r);
    if (warm_start(r))
        return LD_EXIT_RUNTIME;
    r->joiner = ld_joiner_new(&conf->labeling, errstr, size);
    if (!r->joiner)
        return LD_EXIT_USAGE;
    r->trig = ld_triggers_new(&conf->triggers, r->tconf.name,
                              conf->daemon.checkpoint_topic, r->version, errstr,
                              size);
    if (!r->trig)
        return LD_EXIT_USAGE;
    ld_pipeline_cbs_t cbs = {r, on_assigned, on_revoked};
    r->pipe = ld_pipeline_new(&r->pconf, &conf->kafka, r->txn_id, &cbs, 30000,
                              errstr, size);
    if (!r->pipe)
        return LD_EXIT_RUNTIME;
    return LD_EXIT_OK;
}

static void teardown(run_t *r)
{
    ld_pipeline_destroy(r->pipe);
    for (size_t i = 0; i < r->nout; i++) {
        ld_snapshot_destroy(r->out[i].snap);
        ld_trigger_decision_destroy(r->out[i].decision);
    }
    free(r->out);
    ld_triggers_destroy(r->trig);
    ld_joiner_destroy(r->joiner);
    ld_trainer_destroy(r->trainer);
    ld_http_stop(r->http);
    ld_metrics_destroy(r->reg);
}

/* ---- The loop ----------------------------------------------------------- */

/* Feeds one decoded record to the joiner and everything it releases on
 * through the trainer. */
static void process(run_t *r, const ld_record_t *rec)
{
    ld_err_t err;
    if (rec->kind == LD_RECORD_EVENT)
        err =
            ld_joiner_add_event(r->joiner, rec->partition, rec->offset,
                                rec->key, rec->key_len, rec->time_ms, &rec->x);
    else
        err = ld_joiner_add_label(r->joiner, rec->partition, rec->offset,
                                  rec->key, rec->key_len, rec->time_ms,
                                  (float)rec->label);
    if (err)
        ld_log(LD_LOG_WARN, "join",
               "msg=\"record refused by the joiner\" topic=%s partition=%d "
               "offset=%lld err=\"%s\"",
               rec->topic, (int)rec->partition, (long long)rec->offset,
               ld_err_str(err));
    ld_example_t ex;
    int trained = 0;
    while (ld_joiner_poll(r->joiner, &ex)) {
        if (r->hooks.example)
            r->hooks.example(r->hooks.opaque, &ex);
        if ((err = ld_trainer_add(r->trainer, &ex)))
            ld_log(LD_LOG_WARN, "trainer",
                   "msg=\"example refused by the model\" partition=%d "
                   "offset=%lld err=\"%s\"",
                   (int)ex.partition, (long long)ex.offset, ld_err_str(err));
        else
            r->examples++;
        trained = 1;
    }
    if (trained)
        take_decisions(r);
}

int ld_run(const ld_config_t *conf, const ld_run_opts_t *opts)
{
    static const ld_run_hooks_t no_hooks = {0};
    run_t r = {.conf = conf, .opts = opts};
    r.hooks = opts->hooks ? *opts->hooks : no_hooks;
    r.start_ms = ld_now_mono_ms();
    char errstr[1024] = "";
    int code = setup(&r, errstr, sizeof(errstr));
    if (code != LD_EXIT_OK) {
        ld_log(LD_LOG_CRIT, MOD, "msg=\"cannot start\" err=\"%s\"", errstr);
        teardown(&r);
        return code;
    }
    ld_metrics_set(r.reg, r.fam.up, "", 1);
    ld_metrics_set_ready(r.reg, 1);
    ld_log(LD_LOG_NOTICE, MOD,
           "msg=\"running\" model=%s events=%s labels=%s transactional_id=%s",
           r.tconf.name, conf->pipeline.events_topic,
           conf->pipeline.labels_topic, r.txn_id[0] ? r.txn_id : "-");

    int64_t now = ld_now_mono_ms();
    int64_t next_commit = now + conf->daemon.commit_interval_ms;
    int64_t next_report = now + 1000;
    uint64_t last_consumed_hook = 0;
    while (!r.exit_code) {
        if (ld_signals_stop_requested())
            break;
        if (r.hooks.should_stop && r.hooks.should_stop(r.hooks.opaque))
            break;
        if (ld_signals_take_reopen() && ld_config_apply_logging(conf) != LD_OK)
            ld_log(LD_LOG_ERR, MOD, "msg=\"cannot reopen the log file\"");
        ld_metrics_heartbeat(r.reg);

        ld_record_t rec;
        ld_err_t err = ld_pipeline_poll(r.pipe, 100, &rec);
        if (err == LD_OK) {
            process(&r, &rec);
            r.consumed++;
        } else if (err == LD_ERR_FENCED || err == LD_ERR_KAFKA) {
            ld_log(LD_LOG_CRIT, MOD,
                   "msg=\"fatal Kafka error: exiting\" "
                   "err=\"%s\"",
                   ld_err_str(err));
            r.exit_code = LD_EXIT_RUNTIME;
            break;
        }
        if (r.hooks.consumed && r.consumed != last_consumed_hook &&
            (r.consumed - last_consumed_hook >= 1024 ||
             err == LD_ERR_TIMEOUT)) {
            r.hooks.consumed(r.hooks.opaque, r.consumed);
            last_consumed_hook = r.consumed;
        }
        now = ld_now_mono_ms();
        if (now >= next_report) {
            ld_joiner_idle_advance(r.joiner, now, NULL, NULL);
            report(&r);
            next_report = now + 1000;
        }
        if (now >= next_commit) {
            if (commit_point(&r) == LD_OK || r.exit_code)
                next_commit = now + conf->daemon.commit_interval_ms;
        }
        if (opts->until_caught_up && ld_pipeline_caught_up(r.pipe))
            break;
    }
    if (r.hooks.consumed)
        r.hooks.consumed(r.hooks.opaque, r.consumed);
    ld_metrics_set_ready(r.reg, 0);
    if (!r.exit_code) {
        /* A clean stop ends with a commit point. */
        if (commit_point(&r) != LD_OK && !r.exit_code)
            r.exit_code = LD_EXIT_RUNTIME;
        if (ld_pipeline_close(r.pipe, (int)conf->daemon.shutdown_timeout_ms))
            ld_log(LD_LOG_WARN, MOD, "msg=\"consumer did not close cleanly\"");
    }
    report(&r);
    ld_log(LD_LOG_NOTICE, MOD,
           "msg=\"stopped\" consumed=%llu examples=%llu published=%llu "
           "exit=%d",
           (unsigned long long)r.consumed, (unsigned long long)r.examples,
           (unsigned long long)r.published, r.exit_code);
    code = r.exit_code;
    teardown(&r);
    return code;
}
