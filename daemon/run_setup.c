/* SPDX-License-Identifier: Apache-2.0 */
/* Setting the run loop up and tearing it down: the trainer's settings
 * from the pipeline's, warm start, the config hash, the publisher, every
 * stage, and the order they are freed in. */
#include "daemon/run_internal.h"

#define MOD "daemon"

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
    /* label_mode equals and presence make every label 1, so sum counts
     * them, and a logistic model would refuse each count above 1 one by
     * one (docs/LABELING.md, Aggregation). */
    if (r->tconf.model == LD_MODEL_LOGISTIC &&
        r->conf->pipeline.label_mode != LD_LABEL_NUMERIC &&
        r->conf->labeling.aggregate == LD_AGG_SUM) {
        snprintf(errstr, size,
                 "labeling.aggregate sum counts the label records of "
                 "label_mode %s, but a logistic model takes labels in "
                 "[0, 1]: use first, last or max",
                 r->conf->pipeline.label_mode == LD_LABEL_EQUALS ? "equals"
                                                                 : "presence");
        return -1;
    }
    /* One slot count for both: the pipeline hashes into the model's. */
    r->pconf = r->conf->pipeline;
    r->pconf.hash_bits = r->tconf.hash_bits;
    r->pconf.model = r->tconf.name;
    return 0;
}

/* Warm start from the local model store unless told otherwise. */
static ld_err_t warm_start(run_t *r)
{
    const ld_ckpt_conf_t *c = &r->conf->checkpoint;
    if (r->opts->from_scratch || !r->in->warm_start || !c->warm_start ||
        !c->dir || !c->dir[0])
        return LD_OK;
    ld_ckpt_t *ck = NULL;
    char why[1024] = "";
    ld_err_t err = ld_publish_store_load_latest(c->dir, r->tconf.name, &ck, why,
                                                sizeof(why));
    if (err == LD_ERR_NOENT) {
        ld_log(LD_LOG_INFO, MOD,
               "msg=\"no stored checkpoint: starting from "
               "scratch\"");
        return LD_OK;
    }
    if (err) {
        ld_log(LD_LOG_ERR, MOD,
               "msg=\"cannot load a stored checkpoint\" err=%s", ld_log_q(why));
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
               "err=%s",
               ld_log_q(why));
    } else if ((err = ld_trainer_champion_set(r->trainer, snap)) == LD_OK) {
        r->ctr->version = version;
        ld_snapshot_counts(snap, r->ctr->parent_counts);
        if (m->lineage && m->lineage->total_counts)
            ld_lineage_set_totals(
                r->lin, m->lineage->total_counts->dead_lettered,
                m->lineage->total_counts->late_labels_dropped);
        ld_snapshot_params_sha256(snap, r->ctr->published_sha);
        ld_log(LD_LOG_NOTICE, MOD, "msg=\"warm start\" model=%s version=%llu",
               ld_log_q(r->tconf.name), (unsigned long long)version);
    }
    ld_snapshot_destroy(snap);
    ld_ckpt_destroy(ck);
    return err;
}

/* SHA-256 of the effective config as `config check --print` shows it,
 * without the kafka: map (addresses and credentials differ between
 * environments that train the same model). */
static void config_hash(run_t *r)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    memset(r->config_hash, 0, sizeof(r->config_hash));
    if (!f)
        return;
    ld_config_dump(r->conf, f);
    fclose(f);
    char *kafka = text ? strstr(text, "\nkafka:\n") : NULL;
    if (text)
        ld_ckpt_sha256(text, kafka ? (size_t)(kafka - text) + 1 : len,
                       r->config_hash);
    free(text);
}

/* Looks the output topics up once at start: otherwise the first commit
 * point waits on a metadata request per topic (bench_e2e saw a 2.2 s first
 * stall), and a missing topic is reported now rather than mid-run. */
static void warm_output_topics(run_t *r)
{
    const char *topics[] = {r->conf->pipeline.dlq_topic,
                            r->conf->daemon.checkpoint_topic,
                            r->conf->daemon.trigger_topic,
                            r->stateful ? r->conf->daemon.state_topic : NULL,
                            r->audit ? r->conf->labeling.output_topic : NULL};
    rd_kafka_t *rk = ld_pipeline_producer(r->pipe);
    for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++) {
        if (!topics[i] || !topics[i][0])
            continue;
        rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topics[i], NULL);
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t e =
            t ? rd_kafka_metadata(rk, 0, t, &md, 10000) : rd_kafka_last_error();
        if (!e && md && md->topic_cnt == 1)
            e = md->topics[0].err;
        if (e)
            ld_log(LD_LOG_WARN, MOD,
                   "msg=\"output topic not available yet\" topic=%s "
                   "err=\"%s\"",
                   topics[i], rd_kafka_err2str(e));
        if (md)
            rd_kafka_metadata_destroy(md);
        if (t)
            rd_kafka_topic_destroy(t);
    }
}

/* The transactional id, the publisher's model name and the examples
 * topic: join instances share the model and the group, so each needs a
 * transactional id and a resume state of its own; join and train name the
 * examples topic. 0, or -1 with errstr. */
static int process_names(run_t *r, char *errstr, size_t size)
{
    const ld_config_t *conf = r->conf;
    const char *tid = conf->daemon.transactional_id;
    if (r->opts->no_transactions || !r->in->writes)
        r->txn_id[0] = '\0';
    else if (tid && tid[0])
        snprintf(r->txn_id, sizeof(r->txn_id), "%s", tid);
    else
        snprintf(r->txn_id, sizeof(r->txn_id), "learnd-%s", r->tconf.name);
    char *state_model = r->state_model; /* the publisher borrows it */
    snprintf(state_model, sizeof(r->state_model), "%s", r->tconf.name);
    if (r->opts->role == LD_ROLE_JOIN) {
        if (!r->opts->instance || !r->opts->instance[0]) {
            snprintf(errstr, size,
                     "--role join needs --instance NAME, unique among the "
                     "join instances of the group");
            return -1;
        }
        if (r->txn_id[0])
            snprintf(r->txn_id + strlen(r->txn_id),
                     sizeof(r->txn_id) - strlen(r->txn_id), "-join-%s",
                     r->opts->instance);
        snprintf(state_model, sizeof(r->state_model), "%s.join.%s",
                 r->tconf.name, r->opts->instance);
        /* max_pending is per joiner: evictions differ from one run's */
        if (conf->labeling.at_bound == LD_BOUND_EXPIRE_OLDEST)
            ld_log(LD_LOG_WARN, MOD,
                   "msg=\"labeling.at_bound expire_oldest with --role join: "
                   "max_pending bounds each instance's partitions, so the "
                   "examples are not those of one learnd run and replay from "
                   "the inputs will not reproduce them; use at_bound pause "
                   "(docs/OPERATIONS.md, Scaling out)\"");
    }
    if (r->opts->role != LD_ROLE_ALL)
        snprintf(r->examples_topic, sizeof(r->examples_topic), "%s",
                 r->opts->examples_topic ? r->opts->examples_topic : "");
    if (r->opts->role != LD_ROLE_ALL && !r->examples_topic[0])
        snprintf(r->examples_topic, sizeof(r->examples_topic), "%s.examples",
                 conf->pipeline.events_topic);
    return 0;
}

int run_setup(run_t *r, char *errstr, size_t size)
{
    const ld_config_t *conf = r->conf;
    if (trainer_conf(r, errstr, size))
        return LD_EXIT_USAGE;
    /* The one place that asks which: the loop calls through r->in. */
    r->in = r->opts->replay_version ? &run_input_replay : &run_input_live;
    int rc = r->in->setup(r, errstr, size);
    if (rc != LD_EXIT_OK)
        return rc;
    if (process_names(r, errstr, size))
        return LD_EXIT_USAGE;
    r->lin = ld_lineage_new();
    config_hash(r);
    uint32_t hb, dd;
    if (run_model_spec(r, &hb, &dd, r->fmap_sha, errstr, size))
        return LD_EXIT_USAGE;
    ld_publisher_conf_t pc = {.model = r->state_model,
                              .checkpoint_topic = conf->daemon.checkpoint_topic,
                              .trigger_topic = conf->daemon.trigger_topic,
                              .trigger_format = conf->triggers.format,
                              .store_dir = conf->checkpoint.dir,
                              .store_keep = conf->checkpoint.keep,
                              .chunk_size = (size_t)conf->checkpoint.chunk_size,
                              .hash_seed = (uint32_t)conf->pipeline.hash_seed,
                              .config_hash = r->config_hash,
                              .learnd_version = LD_VERSION,
                              .manifest_secret =
                                  conf->checkpoint.manifest_secret,
                              .state_topic = conf->daemon.state_topic,
                              .delta_every = conf->checkpoint.delta_every,
                              .feature_map_hash = r->fmap_sha};
    /* A replay runs the same loop and publishes into a capture. */
    r->pub = r->in->publisher(r, &pc);
    if (!r->pub) {
        snprintf(errstr, size, "out of memory");
        return LD_EXIT_RUNTIME;
    }
    r->ctr = ld_publisher_counters(r->pub);
    r->reg = ld_metrics_new();
    if (!r->reg || !r->lin) {
        snprintf(errstr, size, "out of memory");
        return LD_EXIT_RUNTIME;
    }
    run_declare_metrics(r);
    if (conf->metrics.enabled && r->in->metrics) {
        r->http =
            ld_http_start(r->reg, conf->metrics.listen,
                          (uint16_t)conf->metrics.port, 60000, errstr, size);
        if (!r->http)
            return LD_EXIT_RUNTIME;
        ld_log(LD_LOG_NOTICE, MOD, "msg=\"metrics endpoint\" url=%s",
               ld_http_url(r->http));
    }
    r->trainer = ld_trainer_new(&r->tconf, errstr, size);
    if (!r->trainer)
        return LD_EXIT_USAGE;
    ld_trainer_set_scored_cb(r->trainer, run_on_scored, r);
    if (warm_start(r))
        return LD_EXIT_RUNTIME;
    r->joiner = ld_joiner_new(&conf->labeling, errstr, size);
    if (!r->joiner)
        return LD_EXIT_USAGE;
    r->trig = ld_triggers_new(&conf->triggers, r->tconf.name,
                              conf->daemon.checkpoint_topic, r->ctr->version,
                              errstr, size);
    if (!r->trig)
        return LD_EXIT_USAGE;
    rc = run_exp_setup(r, errstr, size);
    if (rc != LD_EXIT_OK)
        return rc;
    r->stateful = r->txn_id[0] != '\0';
    r->audit = r->in->writes && conf->labeling.output_topic &&
               conf->labeling.output_topic[0];
    if (r->stateful && !r->opts->from_scratch &&
        run_restore_state(r, errstr, size) != LD_OK)
        return LD_EXIT_RUNTIME;
    r->published_at_start = r->ctr->published;
    if (r->opts->role == LD_ROLE_TRAIN)
        return run_train_setup(r, errstr, size);
    ld_pipeline_cbs_t cbs = {r, run_on_assigned, run_on_revoked,
                             run_on_dead_lettered};
    r->pipe = ld_pipeline_new(&r->pconf, &conf->kafka, r->txn_id, &cbs, 30000,
                              errstr, size);
    if (!r->pipe)
        return LD_EXIT_RUNTIME;
    ld_pipeline_set_dry_run(r->pipe, !r->in->writes);
    if (r->opts->role == LD_ROLE_JOIN &&
        (rc = run_join_setup(r, errstr, size)) != LD_EXIT_OK)
        return rc;
    if (r->in->writes)
        warm_output_topics(r);
    /* Publications are written on a thread of their own, off the loop. */
    if (r->in->writes &&
        ld_publisher_start(r->pub, ld_pipeline_producer(r->pipe)) != LD_OK) {
        snprintf(errstr, size, "cannot start the publisher thread");
        return LD_EXIT_RUNTIME;
    }
    /* a few ms of input: enough to ride out a commit point's pause */
    r->ingest = ld_ingest_new(r->pipe, 4096, 1);
    if (!r->ingest) {
        snprintf(errstr, size, "out of memory");
        return LD_EXIT_RUNTIME;
    }
    return LD_EXIT_OK;
}

void run_teardown(run_t *r)
{
    r->state = RUN_CLOSING;
    ld_ingest_destroy(r->ingest);
    r->ingest = NULL;
    ld_publisher_stop(r->pub); /* it writes through the producer */
    run_train_teardown(r);
    run_join_free(r);
    ld_pipeline_destroy(r->pipe);
    free(r->next[0]);
    free(r->next[1]);
    free(r->adv_done);
    ld_partset_free(&r->assigned);
    /* after the producer, which writes delivery offsets into it */
    ld_publisher_destroy(r->pub);
    ld_lineage_destroy(r->lin);
    free(r->audit_buf);
    ld_triggers_destroy(r->trig);
    ld_exp_set_destroy(r->exp);
    ld_joiner_destroy(r->joiner);
    ld_trainer_destroy(r->trainer);
    ld_http_stop(r->http);
    ld_metrics_destroy(r->reg);
}
