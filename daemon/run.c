/* SPDX-License-Identifier: Apache-2.0 */
/* The run loop: records in, labelled examples through the trainer, trigger
 * decisions out, all committed at commit points. */
#include "daemon/run.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/ingest.h"
#include "daemon/lineage.h"
#include "daemon/metrics.h"
#include "daemon/signals.h"
#include "daemon/state.h"
#include "daemon/version.h"
#include "pipeline/pipeline.h"

#define MOD "daemon"

/* A trigger decision waiting for the next commit point, with the snapshot
 * it publishes (PASS) or NULL (event only). */
typedef struct outgoing {
    ld_trigger_decision_t *decision;
    ld_snapshot_t *snap;
    uint64_t version;
    Learnd__V1__Lineage *lineage; /* input since the parent; owned */
} outgoing_t;

/* Metric family ids. */
typedef struct families {
    int records, dlq, examples, pending, pending_bytes, watermark, model,
        champion, published, triggers, txn, up, version, trained, lag,
        label_records, dropped, wm_ahead, wm_ahead_alert;
} families_t;

typedef struct run {
    const ld_config_t *conf;
    const ld_run_opts_t *opts;
    ld_run_hooks_t hooks;
    ld_trainer_conf_t tconf;
    ld_pipeline_conf_t pconf; /* conf->pipeline, with the model's hash_bits */
    ld_pipeline_t *pipe;
    ld_ingest_t *ingest; /* polls pipe on its own thread while the loop runs */
    ld_joiner_t *joiner;
    ld_trainer_t *trainer;
    ld_triggers_t *trig;
    ld_metrics_t *reg;
    ld_http_t *http;
    families_t fam;
    char txn_id[256];
    int exit_code;          /* set once a fatal error is seen */
    uint64_t consumed;      /* good records processed */
    uint64_t dead;          /* dead-lettered records seen */
    uint64_t refused;       /* records the joiner refused (a bug if not 0) */
    uint64_t model_refused; /* examples the trainer refused */
    /* the counts the lineage has been given (ld_lineage_count) */
    uint64_t lin_dead, lin_late;
    /* rate-limited log of dropped records (report) */
    int64_t drop_log_next;
    uint64_t drop_logged;
    /* next offset per partition of each input topic, as far as the loop
     * has processed (the pipeline's own positions run ahead by the ring) */
    int64_t *next[2];
    int32_t nnext[2];
    uint64_t version; /* last published (or warm-started) version */
    uint64_t published;
    uint64_t examples;
    uint64_t parent_counts[LD_SAMPLE__COUNT];
    outgoing_t *out;
    size_t nout, capout;
    int64_t start_ms;
    /* exactly-once resume state (DESIGN §6) */
    int stateful; /* transactions on: write and restore resume state */
    int audit;    /* labeling.output_topic is set */
    int replay;   /* opts->replay_version set: read only, write nothing */
    int closing;  /* leaving the group: revoked partitions do not return */
    /* Events still waiting for their window when the consumer closed (the
     * revocation then empties the joiner; the committed state keeps them
     * for the next start). */
    uint64_t pending_at_close;
    int replay_done;
    int caught_up;      /* the ingest thread saw every partition's end */
    int paused;         /* the ingest thread is parked: pipeline is ours */
    int ingest_running; /* started, STOPPED not seen yet */
    uint8_t *adv_done;  /* replay: which recorded advances were applied */
    size_t adv_left;
    char replay_group[128];
    ld_lineage_t *lin;         /* input since the last publication */
    uint8_t published_sha[32]; /* params of the last version published */
    uint8_t config_hash[32];   /* of the effective config, kafka: excluded */
    uint8_t *audit_buf;
    size_t audit_cap;
    uint64_t commit_seq, first_commit_seq;
    uint64_t progress_at_commit;
    char assigned[4096]; /* partitions the joiner holds */
    /* Delivery offsets of a publication's chunks and manifest: librdkafka
     * writes them from delivery reports, possibly after a failed publish
     * returned, so they live until the producer is gone (teardown). */
    int64_t *pub_offsets;
    size_t pub_cap;
    /* labeling.at_bound pause (see on_flow) */
    int flow_on;     /* at_bound is pause */
    int flow_lift;   /* parked to let every held partition go */
    int flow_lifted; /* let go until the joiner holds none back */
} run_t;

/* ---- Stage callbacks ---------------------------------------------------- */

/* Next offset the loop has processed on kind/partition (-1 forgets it). */
static void note_position(run_t *r, int kind, int32_t partition, int64_t next)
{
    if (partition < 0)
        return;
    if (partition >= r->nnext[kind]) {
        int32_t n = partition + 1;
        int64_t *v = realloc(r->next[kind], (size_t)n * sizeof(*v));
        if (!v)
            return; /* the lineage's resume positions only lose detail */
        for (int32_t i = r->nnext[kind]; i < n; i++)
            v[i] = -1;
        r->next[kind] = v;
        r->nnext[kind] = n;
    }
    r->next[kind][partition] = next;
}

static int kind_of(const run_t *r, const char *topic)
{
    return strcmp(topic, r->conf->pipeline.events_topic) == 0 ? LD_RECORD_EVENT
                                                              : LD_RECORD_LABEL;
}

/* Replay: where the original run started on topic/partition (-1: the
 * beginning). */
static int64_t replay_start(const run_t *r, const char *topic,
                            int32_t partition)
{
    for (size_t i = 0; i < r->opts->n_replay_start; i++) {
        const ld_run_start_t *s = &r->opts->replay_start[i];
        if (s->partition == partition && strcmp(s->topic, topic) == 0)
            return s->offset;
    }
    return -1;
}

/* Replay: repeats the recorded advances of kind/partition due once it is
 * read up to next (the original run made them when its next offset there
 * was the recorded one; where the other partitions were does not change
 * what the join releases). */
static void replay_advances(run_t *r, int kind, int32_t partition, int64_t next)
{
    for (size_t i = 0; r->adv_left && i < r->opts->n_replay_advances; i++) {
        const ld_run_advance_t *a = &r->opts->replay_advances[i];
        if (r->adv_done[i] || a->partition != partition ||
            kind_of(r, a->topic) != kind || a->offset > next)
            continue;
        ld_wm_advance_t adv = {kind == LD_RECORD_EVENT ? LD_TOPIC_EVENTS
                                                       : LD_TOPIC_LABELS,
                               partition, a->offset, a->watermark_ms};
        if (ld_joiner_apply_advance(r->joiner, &adv) != LD_OK) {
            ld_log(LD_LOG_ERR, MOD,
                   "msg=\"cannot repeat a recorded advance\" topic=%s "
                   "partition=%d offset=%lld",
                   a->topic, (int)partition, (long long)a->offset);
            r->exit_code = LD_EXIT_RUNTIME;
        }
        r->adv_done[i] = 1;
        r->adv_left--;
    }
}

static void assigned(run_t *r, rd_kafka_topic_partition_list_t *parts)
{
    const char *events = r->conf->pipeline.events_topic;
    r->caught_up = 0; /* new partitions have their own end to reach */
    /* Partition p of both topics joins together; act on the events
     * topic's entry, then start both topics where the joiner's resume state
     * says (the oldest record still needed), or at the group's offset. */
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &parts->elems[i];
        if (strcmp(tp->topic, events) != 0)
            continue;
        ld_err_t err = ld_joiner_assign(r->joiner, tp->partition);
        if (err) {
            ld_log(LD_LOG_ERR, MOD,
                   "msg=\"cannot assign partition to the joiner\" "
                   "partition=%d err=\"%s\"",
                   (int)tp->partition, ld_err_str(err));
            continue;
        }
        if (tp->partition < (int32_t)sizeof(r->assigned))
            r->assigned[tp->partition] = 1;
    }
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &parts->elems[i];
        int64_t eo = -1, lo = -1;
        if (ld_joiner_resume_offsets(r->joiner, tp->partition, &eo, &lo))
            continue;
        int64_t off = strcmp(tp->topic, events) == 0 ? eo : lo;
        if (r->replay)
            off = replay_start(r, tp->topic, tp->partition);
        if (off >= 0)
            tp->offset = off;
        if (r->replay) /* advances made before anything was read there */
            replay_advances(r, kind_of(r, tp->topic), tp->partition,
                            off >= 0 ? off : -1);
        ld_log(LD_LOG_INFO, MOD,
               "msg=\"partition assigned\" topic=%s partition=%d start=%lld",
               tp->topic, (int)tp->partition, (long long)off);
    }
}

/* Rebalance callbacks run on the ingest thread: the loop holds still
 * (having processed everything polled before) while they change its state. */
static void on_assigned(void *opaque, rd_kafka_topic_partition_list_t *parts)
{
    run_t *r = opaque;
    ld_ingest_exclusive_begin(r->ingest);
    assigned(r, parts);
    ld_ingest_exclusive_end(r->ingest);
}

static void revoked(run_t *r, const rd_kafka_topic_partition_list_t *parts,
                    int lost)
{
    for (int i = 0; i < parts->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &parts->elems[i];
        note_position(r, kind_of(r, tp->topic), tp->partition, -1);
        if (strcmp(tp->topic, r->conf->pipeline.events_topic) != 0)
            continue;
        if (tp->partition < (int32_t)sizeof(r->assigned))
            r->assigned[tp->partition] = 0;
        /* Keep where the joiner is now: if the partition comes back to
         * this process (a rebalance right after a restart does that), it
         * continues from here. The resume record loaded at start-up would
         * re-release everything decided since (found by 0004 under ASan:
         * one example audited and trained twice). */
        uint8_t *rec = NULL;
        size_t len = 0;
        ld_err_t err =
            r->closing
                ? LD_OK
                : ld_joiner_resume_encode(r->joiner, tp->partition, &rec, &len);
        if (ld_joiner_revoke(r->joiner, tp->partition) == LD_OK)
            ld_log(LD_LOG_INFO, MOD,
                   "msg=\"partition revoked\" partition=%d lost=%d",
                   (int)tp->partition, lost);
        if (!err && rec && ld_joiner_resume_load(r->joiner, rec, len) != LD_OK)
            err = LD_ERR_CORRUPT;
        if (err) {
            ld_log(LD_LOG_CRIT, MOD,
                   "msg=\"cannot keep the joiner's place for a revoked "
                   "partition: exiting so that a restart resumes from the "
                   "last commit\" partition=%d err=\"%s\"",
                   (int)tp->partition, ld_err_str(err));
            r->exit_code = LD_EXIT_RUNTIME;
        }
        free(rec);
    }
}

static void on_revoked(void *opaque,
                       const rd_kafka_topic_partition_list_t *parts, int lost)
{
    run_t *r = opaque;
    ld_ingest_exclusive_begin(r->ingest);
    revoked(r, parts, lost);
    ld_ingest_exclusive_end(r->ingest);
}

static void on_dead_lettered(void *opaque, const char *topic, int32_t partition,
                             int64_t offset)
{
    run_t *r = opaque;
    ld_ingest_note_dead(r->ingest, topic, partition, offset);
}

/* Matured examples of a micro-batch, scored before training: the triggers
 * watch them (deterministically: in release order). */
static void on_scored(void *opaque, const ld_scored_t *s, size_t n)
{
    run_t *r = opaque;
    for (size_t i = 0; i < n; i++)
        if (ld_triggers_observe(r->trig, s[i].ex, s[i].pred, s[i].champion) !=
            LD_OK)
            ld_log(LD_LOG_WARN, MOD, "msg=\"trigger observe failed\"");
    if (r->hooks.scored)
        r->hooks.scored(r->hooks.opaque, s, n);
}

/* ---- Publications ------------------------------------------------------- */

#define MAX_WAITING_PUBLICATIONS 4 /* then the commit point comes early */

static void outgoing_free(outgoing_t *o)
{
    ld_snapshot_destroy(o->snap);
    ld_trigger_decision_destroy(o->decision);
    ld_lineage_pb_free(o->lineage);
}

static Learnd__V1__Lineage *take_lineage(run_t *r);

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
    /* A publication records the input its model saw since the parent. */
    Learnd__V1__Lineage *lin = snap ? take_lineage(r) : NULL;
    r->out[r->nout++] = (outgoing_t){d, snap, version, lin};
    return 0;
}

static const char *trigger_labels(const ld_trigger_decision_t *d, char *buf,
                                  size_t size)
{
    snprintf(buf, size, "type=\"%s\",verdict=\"%s\"",
             ld_trigger_type_name(ld_trigger_decision_type(d)),
             ld_trigger_verdict_name(ld_trigger_decision_verdict(d)));
    return buf;
}

/* Takes the trigger decisions made so far. A PASS publishes the model as it
 * is after the micro-batch holding the deciding example: a pure function of
 * the input, whatever the wall clock did. */
static void take_decisions(run_t *r)
{
    if (!ld_triggers_pending(r->trig))
        return;
    /* The event's watermark: the join decision time of the example whose
     * release trained the deciding micro-batch (the watermark had passed
     * it). The joiner's watermark of the moment is not a function of the
     * input: it depends on how far ingestion had run (issue #14: 12 to 15
     * of 45 events differed after a kill -9). */
    int64_t watermark = ld_joiner_decision_time(r->joiner);
    ld_trigger_decision_t *d;
    while ((d = ld_triggers_poll(r->trig, watermark))) {
        if (r->hooks.decision)
            r->hooks.decision(r->hooks.opaque, d);
        char tl[96];
        ld_metrics_add(r->reg, r->fam.triggers,
                       trigger_labels(d, tl, sizeof(tl)), 1);
        ld_snapshot_t *snap = NULL;
        uint64_t version = 0;
        if (ld_trigger_decision_verdict(d) == LD_TRIGGER_VERDICT_PASS &&
            ld_trigger_decision_action(d) == LD_TRIGGER_ACTION_PUBLISH) {
            snap = ld_trainer_snapshot(r->trainer);
            version = ld_trigger_decision_challenger_version(d);
            if (snap && ld_trainer_champion_set(r->trainer, snap) != LD_OK)
                ld_log(LD_LOG_WARN, MOD, "msg=\"champion not replaced\"");
        }
        if (r->replay) {
            /* The same decisions as the original run, nothing written. */
            if (snap) {
                r->version = version;
                if (version == r->opts->replay_version && !r->replay_done) {
                    *r->opts->replayed = snap;
                    snap = NULL;
                    r->replay_done = 1;
                }
            }
            ld_snapshot_destroy(snap);
            ld_trigger_decision_destroy(d);
            continue;
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
    /* As long as the commit point would wait: a broker that is away is
     * ridden out the same way at a publication (0007). */
    const int flush_ms = 60000;
    uint64_t counts[LD_SAMPLE__COUNT];
    ld_snapshot_counts(o->snap, counts);
    ld_ckpt_meta_t meta = {.model = model,
                           .version = o->version,
                           .parent_version = r->version,
                           .created_at_ms = ld_now_wall_ms(),
                           .trigger_id =
                               o->decision ? ld_trigger_decision_id(o->decision)
                                           : "until-caught-up",
                           .learnd_version = LD_VERSION,
                           .hash_function = "murmur3_32",
                           .hash_seed = (uint32_t)r->conf->pipeline.hash_seed,
                           .config_hash = r->config_hash,
                           .lineage = o->lineage,
                           .parent_counts = r->parent_counts};
    if ((err = ld_ckpt_encode(o->snap, &meta, &ckpt)))
        goto out;
    ld_ckpt_sha256(ckpt.data, ckpt.len, sha);
    path[0] = '\0';
    char why[512] = "";
    if (r->conf->checkpoint.dir && r->conf->checkpoint.dir[0] &&
        (err = ld_ckpt_store_write(
             r->conf->checkpoint.dir, model, o->version, ckpt.data, ckpt.len,
             r->conf->checkpoint.keep, path, path_size, why, sizeof(why)))) {
        ld_log(LD_LOG_ERR, MOD, "msg=\"cannot store checkpoint\" err=%s",
               ld_log_q(why));
        goto out;
    }
    if ((err = ld_ckpt_chunks(ckpt.data, ckpt.len, model, o->version,
                              (size_t)r->conf->checkpoint.chunk_size, &chunks,
                              &nchunks)))
        goto out;
    /* Nothing refers to the array here: the last publication's records
     * were all delivered, or it failed and the daemon is exiting. */
    if (r->pub_cap < nchunks + 1) {
        offsets = realloc(r->pub_offsets, (nchunks + 1) * sizeof(*offsets));
        if (!offsets) {
            err = LD_ERR_NOMEM;
            goto out;
        }
        r->pub_offsets = offsets;
        r->pub_cap = nchunks + 1;
    }
    offsets = r->pub_offsets;
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
    rd_kafka_flush(ld_pipeline_producer(r->pipe), flush_ms);
    for (size_t i = 0; i < nchunks; i++) {
        if (offsets[i] < 0) {
            ld_log(LD_LOG_ERR, MOD, "msg=\"checkpoint chunks not delivered\"");
            err = LD_ERR_KAFKA;
            goto out;
        }
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
    const char *secret = r->conf->checkpoint.manifest_secret;
    info.hmac_key = (const uint8_t *)secret;
    info.hmac_key_len = secret ? strlen(secret) : 0;
    if ((err = ld_ckpt_manifest_encode(ckpt.data, ckpt.len, &info, &manifest)))
        goto out;
    offsets[nchunks] = -1;
    if ((err = produce(r, topic, 0, model, manifest.data, manifest.len,
                       &offsets[nchunks])))
        goto out;
    rd_kafka_flush(ld_pipeline_producer(r->pipe), flush_ms);
    if (offsets[nchunks] < 0) {
        ld_log(LD_LOG_ERR, MOD, "msg=\"checkpoint manifest not delivered\"");
        err = LD_ERR_KAFKA;
        goto out;
    }
    *manifest_off = offsets[nchunks];
    memcpy(r->parent_counts, counts, sizeof(counts));
    ld_snapshot_params_sha256(o->snap, r->published_sha);
    r->version = o->version;
    r->published++;
    ld_log(LD_LOG_NOTICE, MOD,
           "msg=\"checkpoint published\" model=%s version=%llu bytes=%zu "
           "chunks=%zu manifest_offset=%lld path=%s",
           ld_log_q(model), (unsigned long long)o->version, ckpt.len, nchunks,
           (long long)*manifest_off, ld_log_q(path[0] ? path : "-"));
out:
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
        if (!o->decision)
            continue; /* the final checkpoint of --until-caught-up */
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
    for (size_t k = 0; k < i; k++)
        outgoing_free(&r->out[k]);
    if (i) {
        memmove(r->out, r->out + i, (r->nout - i) * sizeof(*r->out));
        r->nout -= i;
    }
    return err;
}

/* ---- Resume state ------------------------------------------------------ */

/* A growable byte buffer for the joiner's resume records: each record is
 * prefixed by its 4-byte little-endian length. */
typedef struct bytes {
    uint8_t *p;
    size_t len, cap;
} bytes_t;

static int bytes_add(bytes_t *b, const uint8_t *p, size_t n)
{
    if (b->len + n + 4 > b->cap) {
        size_t cap = (b->len + n + 4) * 2;
        uint8_t *g = realloc(b->p, cap);
        if (!g)
            return -1;
        b->p = g;
        b->cap = cap;
    }
    for (int i = 0; i < 4; i++)
        b->p[b->len++] = (uint8_t)(n >> (8 * i));
    memcpy(b->p + b->len, p, n);
    b->len += n;
    return 0;
}

/* Appends n raw bytes (no length prefix). */
static int bytes_raw(bytes_t *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = (b->len + n) * 2 + 64;
        uint8_t *g = realloc(b->p, cap);
        if (!g)
            return -1;
        b->p = g;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    return 0;
}

static int put_u(bytes_t *b, uint64_t v, int n)
{
    uint8_t le[8];
    for (int i = 0; i < n; i++)
        le[i] = (uint8_t)(v >> (8 * i));
    return bytes_raw(b, le, (size_t)n);
}

static int put_f(bytes_t *b, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return put_u(b, u, 4);
}

/* A bounds-checked little-endian reader. */
typedef struct reader {
    const uint8_t *p;
    size_t left;
    int bad;
} reader_t;

static uint64_t get_u(reader_t *rd, int n)
{
    if (rd->bad || rd->left < (size_t)n) {
        rd->bad = 1;
        return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)rd->p[i] << (8 * i);
    rd->p += n;
    rd->left -= (size_t)n;
    return v;
}

static float get_f(reader_t *rd)
{
    uint32_t u = (uint32_t)get_u(rd, 4);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ResumeHeader.trainer_state: "LDRS", format 1, the daemon's counters
 * (version, published, parent_counts) and the trainer's queued examples,
 * little-endian. */
static ld_err_t run_state_encode(const run_t *r, bytes_t *b)
{
    int bad = bytes_raw(b, "LDRS", 4) || put_u(b, 1, 4) ||
              put_u(b, r->version, 8) || put_u(b, r->published, 8);
    for (int i = 0; i < LD_SAMPLE__COUNT; i++)
        bad = bad || put_u(b, r->parent_counts[i], 8);
    size_t n = ld_trainer_queued(r->trainer);
    bad = bad || put_u(b, n, 4);
    for (size_t i = 0; i < n && !bad; i++) {
        ld_example_t ex;
        if (ld_trainer_queued_get(r->trainer, i, &ex))
            return LD_ERR_INVAL;
        size_t idl = ex.event_id ? strlen(ex.event_id) : 0;
        bad = put_u(b, (uint64_t)ex.event_time_ms, 8) ||
              put_u(b, (uint64_t)ex.label_time_ms, 8) ||
              put_u(b, (uint64_t)ex.offset, 8) ||
              put_u(b, (uint32_t)ex.partition, 4) || put_f(b, ex.label) ||
              put_f(b, ex.weight) || put_u(b, ex.sample_type, 1) ||
              put_u(b, ex.event_id ? idl + 1 : 0, 2) ||
              bytes_raw(b, ex.event_id ? ex.event_id : "",
                        ex.event_id ? idl + 1 : 0) ||
              put_u(b, ex.x.nnz, 4);
        for (uint32_t k = 0; k < ex.x.nnz && !bad; k++)
            bad = put_u(b, ex.x.idx[k], 4) || put_f(b, ex.x.val[k]);
        bad = bad || put_u(b, ex.x.ndense, 4);
        for (uint32_t k = 0; k < ex.x.ndense && !bad; k++)
            bad = put_f(b, ex.x.dense[k]);
    }
    uint8_t *lin = NULL;
    size_t lin_len = 0;
    if (!bad && ld_lineage_save(r->lin, &lin, &lin_len) != LD_OK)
        bad = 1;
    bad = bad || put_u(b, lin_len, 4) || bytes_raw(b, lin, lin_len) ||
          bytes_raw(b, r->published_sha, sizeof(r->published_sha));
    free(lin);
    return bad ? LD_ERR_NOMEM : LD_OK;
}

/* Restores the counters and re-queues the examples into the trainer (which
 * was just restored, so its queue is empty). */
static ld_err_t run_state_decode(run_t *r, const uint8_t *p, size_t len)
{
    reader_t rd = {p, len, 0};
    if (len < 8 || memcmp(p, "LDRS", 4))
        return LD_ERR_CORRUPT;
    rd.p += 4;
    rd.left -= 4;
    if (get_u(&rd, 4) != 1)
        return LD_ERR_CORRUPT;
    r->version = get_u(&rd, 8);
    r->published = get_u(&rd, 8);
    for (int i = 0; i < LD_SAMPLE__COUNT; i++)
        r->parent_counts[i] = get_u(&rd, 8);
    uint64_t n = get_u(&rd, 4);
    uint32_t *idx = NULL;
    float *val = NULL, *dense = NULL;
    char *eid = NULL;
    ld_err_t err = LD_OK;
    for (uint64_t i = 0; i < n && !rd.bad && !err; i++) {
        ld_example_t ex = {0};
        ex.event_time_ms = (int64_t)get_u(&rd, 8);
        ex.label_time_ms = (int64_t)get_u(&rd, 8);
        ex.offset = (int64_t)get_u(&rd, 8);
        ex.partition = (int32_t)get_u(&rd, 4);
        ex.label = get_f(&rd);
        ex.weight = get_f(&rd);
        ex.sample_type = (ld_sample_type_t)get_u(&rd, 1);
        size_t idl = (size_t)get_u(&rd, 2);
        if (idl > rd.left || (idl && rd.p[idl - 1] != '\0')) {
            rd.bad = 1;
            break;
        }
        char *e = realloc(eid, idl + 1);
        if (!e) {
            err = LD_ERR_NOMEM;
            break;
        }
        eid = e;
        memcpy(eid, rd.p, idl);
        eid[idl] = '\0';
        rd.p += idl;
        rd.left -= idl;
        ex.event_id = idl ? eid : NULL;
        uint64_t nnz = get_u(&rd, 4);
        if (nnz > rd.left / 8) {
            rd.bad = 1;
            break;
        }
        uint32_t *ni = realloc(idx, (nnz + 1) * sizeof(*idx));
        float *nv = ni ? realloc(val, (nnz + 1) * sizeof(*val)) : NULL;
        if (ni)
            idx = ni;
        if (nv)
            val = nv;
        if (!ni || !nv) {
            err = LD_ERR_NOMEM;
            break;
        }
        for (uint64_t k = 0; k < nnz; k++) {
            idx[k] = (uint32_t)get_u(&rd, 4);
            val[k] = get_f(&rd);
        }
        uint64_t nd = get_u(&rd, 4);
        if (nd > rd.left / 4) {
            rd.bad = 1;
            break;
        }
        float *nd2 = realloc(dense, (nd + 1) * sizeof(*dense));
        if (!nd2) {
            err = LD_ERR_NOMEM;
            break;
        }
        dense = nd2;
        for (uint64_t k = 0; k < nd; k++)
            dense[k] = get_f(&rd);
        ex.x = (ld_features_t){idx, val, dense, (uint32_t)nnz, (uint32_t)nd};
        if (!rd.bad)
            err = ld_trainer_add(r->trainer, &ex);
    }
    free(idx);
    free(val);
    free(dense);
    free(eid);
    size_t lin_len = (size_t)get_u(&rd, 4);
    if (!err && !rd.bad && lin_len <= rd.left) {
        const char *topics[] = {r->conf->pipeline.events_topic,
                                r->conf->pipeline.labels_topic};
        err = ld_lineage_load(r->lin, topics, 2, rd.p, lin_len);
        rd.p += lin_len;
        rd.left -= lin_len;
    }
    if (!err && !rd.bad && rd.left >= sizeof(r->published_sha)) {
        memcpy(r->published_sha, rd.p, sizeof(r->published_sha));
        rd.p += sizeof(r->published_sha);
        rd.left -= sizeof(r->published_sha);
    }
    if (!err && (rd.bad || rd.left))
        err = LD_ERR_CORRUPT;
    return err;
}

/* What the loop has processed: next offset per partition. */
static rd_kafka_topic_partition_list_t *loop_positions(const run_t *r)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    const char *topic[2] = {r->conf->pipeline.events_topic,
                            r->conf->pipeline.labels_topic};
    for (int k = 0; l && k < 2; k++)
        for (int32_t i = 0; i < r->nnext[k]; i++)
            if (r->next[k][i] >= 0)
                rd_kafka_topic_partition_list_add(l, topic[k], i)->offset =
                    r->next[k][i];
    return l;
}

/* The input positions now: next offset per partition and where a restart
 * re-reads from (the joiner's oldest needed record). committed: the
 * pipeline's positions, what a commit point commits (only while the ingest
 * thread is parked); else what the loop has processed, for a publication
 * decided between records. Topic names point at the config's strings.
 * Caller frees *out; returns the count (0 with *out NULL when out of
 * memory). */
static size_t positions(run_t *r, int committed,
                        Learnd__V1__PartitionPosition **out)
{
    *out = NULL;
    rd_kafka_topic_partition_list_t *next =
        committed ? ld_pipeline_position(r->pipe) : loop_positions(r);
    if (!next)
        return 0;
    size_t n = (size_t)next->cnt;
    Learnd__V1__PartitionPosition *pos = calloc(n ? n : 1, sizeof(*pos));
    if (!pos) {
        rd_kafka_topic_partition_list_destroy(next);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        const rd_kafka_topic_partition_t *tp = &next->elems[i];
        int events = strcmp(tp->topic, r->conf->pipeline.events_topic) == 0;
        int64_t eo = -1, lo = -1;
        if (ld_joiner_resume_offsets(r->joiner, tp->partition, &eo, &lo))
            eo = lo = -1;
        learnd__v1__partition_position__init(&pos[i]);
        pos[i].topic = events ? r->conf->pipeline.events_topic
                              : r->conf->pipeline.labels_topic;
        pos[i].partition = tp->partition;
        pos[i].next_offset = tp->offset;
        pos[i].reread_from = events ? eo : lo;
    }
    rd_kafka_topic_partition_list_destroy(next);
    *out = pos;
    return n;
}

/* Hands the lineage the dead letters and dropped late labels counted since
 * the last call: late labels are those older than their partition's
 * watermark and those after their event's window that policy drop (or a
 * positive already emitted) leaves out. The joiner does not count records
 * re-read after a restart, and the pipeline does not dead-letter them
 * again, so each counts once across restarts. */
static void lineage_counts(run_t *r)
{
    ld_joiner_stats_t js;
    ld_joiner_stats(r->joiner, &js);
    uint64_t late = js.labels_late + js.late_labels_dropped;
    ld_lineage_count(r->lin, r->dead - r->lin_dead, late - r->lin_late);
    r->lin_dead = r->dead;
    r->lin_late = late;
}

static Learnd__V1__Lineage *take_lineage(run_t *r)
{
    lineage_counts(r);
    Learnd__V1__PartitionPosition *pos = NULL;
    size_t n = positions(r, 0, &pos);
    Learnd__V1__Lineage *l = ld_lineage_take(r->lin, pos, n);
    free(pos);
    return l;
}

/* Writes the resume state of this commit point into the open transaction:
 * the trainer as a checkpoint (in blocks), the joiner's per-partition
 * resume records, the triggers' state and the daemon's counters. */
static ld_err_t save_state(run_t *r)
{
    ld_err_t err = LD_ERR_NOMEM;
    bytes_t lab = {0};
    uint8_t *trig = NULL;
    size_t trig_len = 0;
    ld_buf_t ckpt = {0};
    ld_snapshot_t *snap = NULL;
    bytes_t runst = {0};
    Learnd__V1__PartitionPosition *pos = NULL, **ppos = NULL;
    lineage_counts(r); /* saved with the lineage below */
    for (size_t p = 0; p < sizeof(r->assigned); p++) {
        if (!r->assigned[p])
            continue;
        uint8_t *rec = NULL;
        size_t len = 0;
        if ((err = ld_joiner_resume_encode(r->joiner, (int32_t)p, &rec, &len)))
            goto out;
        int bad = bytes_add(&lab, rec, len);
        free(rec);
        if (bad) {
            err = LD_ERR_NOMEM;
            goto out;
        }
    }
    if ((err = ld_triggers_save(r->trig, &trig, &trig_len)))
        goto out;
    err = LD_ERR_NOMEM;
    if (!(snap = ld_trainer_snapshot(r->trainer)))
        goto out;
    ld_ckpt_meta_t meta = {.model = r->tconf.name,
                           .version = r->version,
                           .parent_version = r->version,
                           .created_at_ms = ld_now_wall_ms(),
                           .learnd_version = LD_VERSION,
                           .hash_function = "murmur3_32",
                           .hash_seed = (uint32_t)r->conf->pipeline.hash_seed,
                           .parent_counts = r->parent_counts};
    if ((err = ld_ckpt_encode(snap, &meta, &ckpt)))
        goto out;
    if ((err = run_state_encode(r, &runst)))
        goto out;
    err = LD_ERR_NOMEM;

    size_t npos = positions(r, 1, &pos);
    ppos = calloc(npos ? npos : 1, sizeof(*ppos));
    if (!pos || !ppos)
        goto out;
    for (size_t i = 0; i < npos; i++)
        ppos[i] = &pos[i];
    Learnd__V1__ResumeHeader h = LEARND__V1__RESUME_HEADER__INIT;
    h.format_version = 1;
    h.model = r->tconf.name;
    h.commit_seq = ++r->commit_seq;
    if (!r->first_commit_seq)
        r->first_commit_seq = h.commit_seq;
    h.first_commit_seq = r->first_commit_seq;
    h.committed_at_ms = ld_now_wall_ms();
    h.n_positions = npos;
    h.positions = ppos;
    h.champion_version = r->version;
    h.labeling_state = (ProtobufCBinaryData){lab.len, lab.p};
    h.triggers_state = (ProtobufCBinaryData){trig_len, trig};
    h.trainer_state = (ProtobufCBinaryData){runst.len, runst.p};
    err = ld_state_write(ld_pipeline_producer(r->pipe),
                         r->conf->daemon.state_topic, &h, ckpt.data, ckpt.len,
                         (size_t)r->conf->checkpoint.chunk_size);
out:
    free(pos);
    free(ppos);
    free(ckpt.data);
    ld_snapshot_destroy(snap);
    free(trig);
    free(lab.p);
    free(runst.p);
    if (err)
        ld_log(LD_LOG_ERR, MOD,
               "msg=\"cannot write the resume state\" "
               "err=\"%s\"",
               ld_err_str(err));
    return err;
}

/* Restores the newest committed resume state, if there is one: the daemon
 * then continues exactly where that commit left off. */
static ld_err_t restore_state(run_t *r, char *errstr, size_t size)
{
    ld_resume_t *rs = NULL;
    ld_err_t err = ld_state_load(&r->conf->kafka, r->conf->daemon.state_topic,
                                 r->tconf.name, 60000, &rs, errstr, size);
    if (err || !rs)
        return err;
    const Learnd__V1__ResumeHeader *h = rs->header;
    ld_ckpt_t *ck = NULL;
    ld_snapshot_t *snap = NULL;
    if ((err = ld_ckpt_decode(rs->ckpt, rs->ckpt_len, &ck, errstr, size)))
        goto out;
    err = LD_ERR_NOMEM;
    if (!(snap = ld_ckpt_snapshot(ck)))
        goto out;
    if ((err = ld_trainer_restore(r->trainer, snap, errstr, size)))
        goto out;
    if ((err = run_state_decode(r, h->trainer_state.data,
                                h->trainer_state.len))) {
        snprintf(errstr, size,
                 "resume state: daemon counters or queued "
                 "examples refused (%s)",
                 ld_err_str(err));
        goto out;
    }
    if (h->triggers_state.len &&
        (err = ld_triggers_load(r->trig, h->triggers_state.data,
                                h->triggers_state.len))) {
        if (err != LD_ERR_CONFIG) {
            snprintf(errstr, size, "resume state: triggers state refused (%s)",
                     ld_err_str(err));
            goto out;
        }
        /* Sizes in triggers.* changed: the windows and sketches cannot
         * carry over, and the model and the join must not be lost for it. */
        ld_log(LD_LOG_WARN, MOD,
               "msg=\"trigger settings changed since the last commit: the "
               "triggers start afresh\"");
        err = LD_OK;
    }
    const uint8_t *p = h->labeling_state.data;
    size_t left = h->labeling_state.len;
    while (left) {
        size_t n = 0;
        if (left >= 4)
            n = (size_t)p[0] | (size_t)p[1] << 8 | (size_t)p[2] << 16 |
                (size_t)p[3] << 24;
        if (left < 4 || n > left - 4 ||
            (err = ld_joiner_resume_load(r->joiner, p + 4, n))) {
            snprintf(errstr, size, "resume state: joiner record refused");
            err = LD_ERR_CORRUPT;
            goto out;
        }
        p += 4 + n;
        left -= 4 + n;
    }
    /* The champion scores every example next to the model: without it the
     * triggers would decide differently than before the restart. */
    if (r->version) {
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s/%llu.ckpt", r->conf->checkpoint.dir,
                 r->tconf.name, (unsigned long long)r->version);
        ld_ckpt_t *champ = NULL;
        char why[512];
        if (ld_ckpt_read_file(path, &champ, why, sizeof(why)) ||
            ld_ckpt_champion_set(r->trainer, champ, why, sizeof(why))) {
            ld_log(LD_LOG_WARN, MOD,
                   "msg=\"champion checkpoint unavailable: shadow scores "
                   "restart empty\" path=%s err=%s",
                   ld_log_q(path), ld_log_q(why));
        }
        ld_ckpt_destroy(champ);
    }
    r->commit_seq = h->commit_seq;
    ld_log(LD_LOG_NOTICE, MOD,
           "msg=\"resumed from committed state\" model=%s commit_seq=%llu "
           "champion_version=%llu",
           r->tconf.name, (unsigned long long)h->commit_seq,
           (unsigned long long)r->version);
    err = LD_OK;
out:
    ld_snapshot_destroy(snap);
    ld_ckpt_destroy(ck);
    ld_resume_destroy(rs);
    return err;
}

/* Another instance took our transactional id: the reason we exit. */
static void say_fenced(const run_t *r)
{
    ld_log(LD_LOG_CRIT, MOD,
           "msg=\"fenced: another instance took over "
           "transactional.id / group.instance.id %s: exiting\"",
           r->txn_id);
}

/* Input records taken so far, good or dead-lettered. */
static uint64_t progress_count(const run_t *r)
{
    ld_pipeline_stats_t ps;
    ld_pipeline_stats(r->pipe, &ps);
    uint64_t n = ps.records[0] + ps.records[1];
    for (int k = 0; k < 2; k++)
        for (int why = 0; why < LD_REASON__COUNT; why++)
            n += ps.dlq[k][why];
    return n;
}

/* A commit point: outputs and input offsets in one transaction. */
static ld_err_t commit_point(run_t *r)
{
    if (r->replay)
        return LD_OK;
    /* Nothing new since the last commit point: nothing to commit. */
    uint64_t progress = progress_count(r);
    if (progress == r->progress_at_commit && r->nout == 0 && r->commit_seq)
        return LD_OK;
    uint64_t published = r->published;
    ld_err_t err = ld_pipeline_txn_begin(r->pipe);
    if (!err)
        err = send_outgoing(r);
    if (!err && r->stateful)
        err = save_state(r);
    if (!err)
        err = ld_pipeline_txn_commit(r->pipe, NULL, 60000);
    if (!err) {
        r->progress_at_commit = progress;
        if (r->hooks.committed)
            r->hooks.committed(r->hooks.opaque, r->published - published);
    }
    if (err == LD_ERR_FENCED) {
        say_fenced(r);
        r->exit_code = LD_EXIT_RUNTIME;
    } else if (err) {
        /* The stages have moved past the last commit point in memory:
         * rewinding only the consumer would train some examples twice.
         * Abort, and exit so that a restart restores the committed state
         * (systemd's Restart=on-failure, or any supervisor). */
        if (ld_pipeline_txn_abort(r->pipe, 30000) != LD_OK)
            ld_log(LD_LOG_ERR, MOD, "msg=\"abort failed too\"");
        ld_log(LD_LOG_CRIT, MOD,
               "msg=\"commit point failed and was aborted: exiting so that "
               "a restart resumes from the last committed state\" "
               "err=\"%s\"",
               ld_err_str(err));
        r->exit_code = LD_EXIT_RUNTIME;
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
    f->label_records = ld_metrics_family(
        r->reg, "label_records_total", LD_METRIC_COUNTER,
        "Records of the labels topic the joiner took, by outcome");
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
    f->triggers = ld_metrics_family(r->reg, "triggers_total", LD_METRIC_COUNTER,
                                    "Trigger decisions, by type and verdict");
    f->trained =
        ld_metrics_family(r->reg, "examples_trained_total", LD_METRIC_COUNTER,
                          "Examples the model trained on");
    f->lag = ld_metrics_family(r->reg, "consumer_lag", LD_METRIC_GAUGE,
                               "Records behind the end of each input "
                               "partition");
    f->txn = ld_metrics_family(r->reg, "transactions_total", LD_METRIC_COUNTER,
                               "Commit points, by result");
    f->dropped = ld_metrics_family(
        r->reg, "records_dropped_total", LD_METRIC_COUNTER,
        "Input records neither trained on nor dead-lettered, by topic kind "
        "and reason (docs/OPERATIONS.md)");
    f->wm_ahead = ld_metrics_family(
        r->reg, "watermark_ahead_seconds", LD_METRIC_GAUGE,
        "How far the most advanced partition watermark is ahead of the wall "
        "clock (0 when behind)");
    f->wm_ahead_alert = ld_metrics_family(
        r->reg, "watermark_ahead_of_clock", LD_METRIC_GAUGE,
        "1 while a partition watermark is ahead of the wall clock by more "
        "than pipeline.max_future (1h when that is 0)");
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

static void set_lag(void *opaque, const char *topic, int32_t partition,
                    int64_t lag)
{
    run_t *r = opaque;
    char labels[320];
    snprintf(labels, sizeof(labels), "topic=\"%s\",partition=\"%d\"", topic,
             (int)partition);
    ld_metrics_set(r->reg, r->fam.lag, labels, (double)lag);
}

/* Every record the daemon does not train from is dead-lettered (counted
 * by the pipeline) or one of these drops (docs/OPERATIONS.md, "Where every
 * record goes"). */
typedef struct drop_row {
    const char *labels;
    uint64_t n;
} drop_row_t;

#define DROP_LOG_MS 10000 /* at most one drop log line per 10 s */

static void report_drops(run_t *r, const ld_joiner_stats_t *js)
{
    const drop_row_t rows[] = {
        {"kind=\"event\",reason=\"late\"", js->events_late},
        {"kind=\"event\",reason=\"duplicate\"", js->events_duplicate},
        {"kind=\"label\",reason=\"late\"", js->labels_late},
        {"kind=\"label\",reason=\"after_window\"", js->late_labels_dropped},
        {"kind=\"label\",reason=\"unmatched\"", js->labels_unmatched},
        {"kind=\"label\",reason=\"no_label\"", js->labels_nolabel},
        {"kind=\"label\",reason=\"expired\"", js->labels_expired},
        {"kind=\"any\",reason=\"refused\"", r->refused},
        {"kind=\"event\",reason=\"model_refused\"", r->model_refused},
    };
    uint64_t total = 0;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        ld_metrics_set(r->reg, r->fam.dropped, rows[i].labels,
                       (double)rows[i].n);
        total += rows[i].n;
    }
    /* Late records used to vanish without a line: say so, at a rate. */
    int64_t now = ld_now_mono_ms();
    if (total == r->drop_logged || now < r->drop_log_next)
        return;
    ld_log(LD_LOG_WARN, "join",
           "msg=\"input records dropped (see learnd_records_dropped_total)\" "
           "new=%llu events_late=%llu labels_late=%llu "
           "events_duplicate=%llu labels_after_window=%llu "
           "labels_unmatched=%llu labels_no_label=%llu labels_expired=%llu "
           "refused=%llu "
           "model_refused=%llu watermark_ms=%lld",
           (unsigned long long)(total - r->drop_logged),
           (unsigned long long)js->events_late,
           (unsigned long long)js->labels_late,
           (unsigned long long)js->events_duplicate,
           (unsigned long long)js->late_labels_dropped,
           (unsigned long long)js->labels_unmatched,
           (unsigned long long)js->labels_nolabel,
           (unsigned long long)js->labels_expired,
           (unsigned long long)r->refused, (unsigned long long)r->model_refused,
           (long long)js->watermark_ms);
    r->drop_logged = total;
    r->drop_log_next = now + DROP_LOG_MS;
}

/* A watermark ahead of the wall clock means a clock is wrong somewhere
 * (producers stamping the future, or a time source without a bound): the
 * lag gauge goes negative and its alert cannot fire, so this one says it.
 * Alert-only: the wall clock never decides what is learnt (DESIGN §3). */
static void report_ahead(run_t *r, const ld_joiner_stats_t *js)
{
    if (js->watermark_max_ms <= INT64_MIN / 2)
        return;
    int64_t bound = r->conf->pipeline.max_future_ms > 0
                        ? r->conf->pipeline.max_future_ms
                        : INT64_C(3600000);
    int64_t ahead = js->watermark_max_ms - ld_now_wall_ms();
    ld_metrics_set(r->reg, r->fam.wm_ahead, "",
                   ahead > 0 ? (double)ahead / 1000.0 : 0.0);
    ld_metrics_set(r->reg, r->fam.wm_ahead_alert, "", ahead > bound ? 1 : 0);
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
    /* no_label: label_mode equals records that did not match; all of them
     * and no joined one usually means a wrong label_equals. */
    const struct {
        const char *outcome;
        uint64_t n;
    } lr[] = {{"joined", js.labels_joined},
              {"after_window", js.labels_after_window},
              {"late", js.labels_late},
              {"unmatched", js.labels_unmatched},
              {"no_label", js.labels_nolabel}};
    for (size_t i = 0; i < sizeof(lr) / sizeof(lr[0]); i++) {
        char labels[64];
        snprintf(labels, sizeof(labels), "outcome=\"%s\"", lr[i].outcome);
        ld_metrics_set(r->reg, r->fam.label_records, labels, (double)lr[i].n);
    }
    ld_metrics_set(r->reg, r->fam.pending, "kind=\"event\"",
                   (double)js.pending_events);
    ld_metrics_set(r->reg, r->fam.pending, "kind=\"label\"",
                   (double)js.pending_labels);
    ld_metrics_set(r->reg, r->fam.pending_bytes, "", (double)js.bytes_total);
    ld_pipeline_lag(r->pipe, set_lag, r);
    if (js.watermark_ms > INT64_MIN / 2)
        ld_metrics_set(r->reg, r->fam.watermark, "",
                       (double)(ld_now_wall_ms() - js.watermark_ms) / 1000.0);
    set_model_metrics(r, "challenger", &p.model);
    set_model_metrics(r, "champion", &p.champion);
    ld_metrics_set(r->reg, r->fam.published, "", (double)r->published);
    ld_metrics_set(r->reg, r->fam.trained, "", (double)r->examples);
    ld_metrics_set(r->reg, r->fam.version, "", (double)r->version);
    report_drops(r, &js);
    report_ahead(r, &js);

    if (!r->hooks.progress)
        return;
    p.elapsed_ms = ld_now_mono_ms() - r->start_ms;
    p.events = ps.records[LD_RECORD_EVENT];
    p.labels = ps.records[LD_RECORD_LABEL];
    p.dead_letters = dlq;
    p.examples = r->examples;
    memcpy(p.by_type, js.examples, sizeof(p.by_type));
    p.pending = r->closing ? r->pending_at_close : js.pending_events;
    p.pending_peak = js.pending_peak;
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
    return 0;
}

/* Warm start from the local model store unless told otherwise. */
static ld_err_t warm_start(run_t *r)
{
    const ld_ckpt_conf_t *c = &r->conf->checkpoint;
    if (r->opts->from_scratch || r->replay || !c->warm_start || !c->dir ||
        !c->dir[0])
        return LD_OK;
    ld_ckpt_t *ck = NULL;
    char why[1024] = "";
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
        r->version = version;
        ld_snapshot_counts(snap, r->parent_counts);
        if (m->lineage && m->lineage->total_counts)
            ld_lineage_set_totals(
                r->lin, m->lineage->total_counts->dead_lettered,
                m->lineage->total_counts->late_labels_dropped);
        ld_snapshot_params_sha256(snap, r->published_sha);
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

static int setup(run_t *r, char *errstr, size_t size)
{
    const ld_config_t *conf = r->conf;
    if (trainer_conf(r, errstr, size))
        return LD_EXIT_USAGE;
    const char *tid = conf->daemon.transactional_id;
    r->replay = r->opts->replay_version != 0;
    if (r->replay && r->opts->n_replay_advances) {
        r->adv_done = calloc(r->opts->n_replay_advances, 1);
        if (!r->adv_done) {
            snprintf(errstr, size, "out of memory");
            return LD_EXIT_RUNTIME;
        }
        r->adv_left = r->opts->n_replay_advances;
    }
    if (r->replay) {
        /* A group of its own: the original's offsets stay untouched. */
        snprintf(r->replay_group, sizeof(r->replay_group),
                 "learnd-replay-%s-%lld", r->tconf.name,
                 (long long)ld_now_wall_ms());
        r->pconf.group_id = r->replay_group;
    }
    if (r->opts->no_transactions || r->replay)
        r->txn_id[0] = '\0';
    else if (tid && tid[0])
        snprintf(r->txn_id, sizeof(r->txn_id), "%s", tid);
    else
        snprintf(r->txn_id, sizeof(r->txn_id), "learnd-%s", r->tconf.name);

    r->lin = ld_lineage_new();
    config_hash(r);
    r->reg = ld_metrics_new();
    if (!r->reg || !r->lin) {
        snprintf(errstr, size, "out of memory");
        return LD_EXIT_RUNTIME;
    }
    declare_metrics(r);
    if (conf->metrics.enabled && !r->replay) {
        r->http =
            ld_http_start(r->reg, conf->metrics.listen,
                          (uint16_t)conf->metrics.port, 60000, errstr, size);
        if (!r->http)
            return LD_EXIT_RUNTIME;
        ld_log(LD_LOG_NOTICE, MOD, "msg=\"metrics endpoint\" url=http://%s:%u/",
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
    r->stateful = r->txn_id[0] != '\0';
    r->audit = !r->replay && conf->labeling.output_topic &&
               conf->labeling.output_topic[0];
    if (r->stateful && !r->opts->from_scratch &&
        restore_state(r, errstr, size) != LD_OK)
        return LD_EXIT_RUNTIME;
    ld_pipeline_cbs_t cbs = {r, on_assigned, on_revoked, on_dead_lettered};
    /* A replay reads the partitions itself, from the recorded starts: it
     * joins no group (and leaves none behind on the cluster). */
    r->pconf.assign_all = r->replay;
    r->pipe = ld_pipeline_new(&r->pconf, &conf->kafka, r->txn_id, &cbs, 30000,
                              errstr, size);
    if (!r->pipe)
        return LD_EXIT_RUNTIME;
    ld_pipeline_set_dry_run(r->pipe, r->replay);
    if (!r->replay)
        warm_output_topics(r);
    /* a few ms of input: enough to ride out a commit point's pause */
    r->ingest = ld_ingest_new(r->pipe, 4096, 1);
    if (!r->ingest) {
        snprintf(errstr, size, "out of memory");
        return LD_EXIT_RUNTIME;
    }
    return LD_EXIT_OK;
}

static void teardown(run_t *r)
{
    r->closing = 1;
    ld_ingest_destroy(r->ingest);
    r->ingest = NULL;
    ld_pipeline_destroy(r->pipe);
    free(r->next[0]);
    free(r->next[1]);
    free(r->adv_done);
    free(r->pub_offsets); /* the producer, which wrote into it, is gone */
    for (size_t i = 0; i < r->nout; i++)
        outgoing_free(&r->out[i]);
    free(r->out);
    ld_lineage_destroy(r->lin);
    free(r->audit_buf);
    ld_triggers_destroy(r->trig);
    ld_joiner_destroy(r->joiner);
    ld_trainer_destroy(r->trainer);
    ld_http_stop(r->http);
    ld_metrics_destroy(r->reg);
}

/* The input that existed at start-up is read: train what is queued and
 * offer the model as a new version (for backfills and replays; the end of
 * the input is a point in the stream, so this is deterministic). It goes
 * through the gate as an end_of_input trigger, so that its event, like
 * every publication's, tells deployers about it, in the same commit
 * transaction as the checkpoint (the last commit point). */
static void final_checkpoint(run_t *r)
{
    ld_err_t err = ld_trainer_flush(r->trainer);
    take_decisions(r); /* the flushed batch may decide a publication */
    if (err) {
        ld_log(LD_LOG_ERR, MOD,
               "msg=\"cannot train the last micro-batch\" err=\"%s\"",
               ld_err_str(err));
        r->exit_code = LD_EXIT_RUNTIME;
        return;
    }
    if (!r->replay) {
        /* Nothing trained since the newest version, published or waiting
         * for the commit point (a backfill run again on input it had read,
         * or a trigger that published at the last micro-batch): no new
         * version, no event. */
        const uint8_t *last = r->version ? r->published_sha : NULL;
        uint64_t lastv = r->version;
        uint8_t qsha[32], sha[32];
        for (size_t i = 0; i < r->nout; i++)
            if (r->out[i].snap) {
                ld_snapshot_params_sha256(r->out[i].snap, qsha);
                last = qsha;
                lastv = r->out[i].version;
            }
        ld_snapshot_t *snap = ld_trainer_snapshot(r->trainer);
        if (!snap) {
            ld_log(LD_LOG_ERR, MOD, "msg=\"cannot take the final checkpoint\"");
            r->exit_code = LD_EXIT_RUNTIME;
            return;
        }
        ld_snapshot_params_sha256(snap, sha);
        ld_snapshot_destroy(snap);
        if (last && memcmp(sha, last, sizeof(sha)) == 0) {
            ld_log(LD_LOG_NOTICE, MOD,
                   "msg=\"caught up: the model is version %llu already\"",
                   (unsigned long long)lastv);
            return;
        }
    }
    if (ld_triggers_end_of_input(r->trig) != LD_OK) {
        ld_log(LD_LOG_ERR, MOD, "msg=\"cannot take the final checkpoint\"");
        r->exit_code = LD_EXIT_RUNTIME;
        return;
    }
    take_decisions(r); /* PASS: snapshot and publication; else event only */
}

/* The audit topic (labeling.output_topic): every labelled example exactly
 * as the model trains on it, in the same transaction as everything else. */
static void audit(run_t *r, const ld_example_t *ex)
{
    const ld_labeling_conf_t *lc = &r->conf->labeling;
    size_t need;
    for (;;) {
        need = lc->output_format == LD_AUDIT_JSON
                   ? ld_labeling_example_json(ex, (char *)r->audit_buf,
                                              r->audit_cap)
                   : ld_labeling_example_pack(
                         ex, ld_joiner_decision_time(r->joiner),
                         r->conf->pipeline.events_topic, r->audit_buf,
                         r->audit_cap);
        if (need == 0 || need < r->audit_cap)
            break;
        uint8_t *g = realloc(r->audit_buf, need + 1);
        if (!g)
            break;
        r->audit_buf = g;
        r->audit_cap = need + 1;
    }
    if (need == 0 || need >= r->audit_cap) {
        ld_log(LD_LOG_ERR, MOD, "msg=\"cannot encode an audit record\"");
        r->exit_code = LD_EXIT_RUNTIME; /* never lose one silently */
        return;
    }
    const char *key = ex->event_id ? ex->event_id : "";
    if (ld_pipeline_txn_begin(r->pipe) != LD_OK ||
        produce(r, lc->output_topic, RD_KAFKA_PARTITION_UA, key, r->audit_buf,
                need, NULL) != LD_OK)
        r->exit_code = LD_EXIT_RUNTIME;
}

/* The one wall-clock input of the join: recorded in the next checkpoint's
 * lineage. */
static void on_advance(const ld_wm_advance_t *adv, void *opaque)
{
    run_t *r = opaque;
    const char *topic = adv->kind == LD_TOPIC_EVENTS
                            ? r->conf->pipeline.events_topic
                            : r->conf->pipeline.labels_topic;
    ld_lineage_advance(r->lin, topic, adv->partition, adv->offset,
                       ld_now_wall_ms(), adv->watermark_ms);
    ld_log(LD_LOG_NOTICE, "join",
           "msg=\"idle partition: watermark advanced\" topic=%s "
           "partition=%d offset=%lld watermark_ms=%lld",
           topic, (int)adv->partition, (long long)adv->offset,
           (long long)adv->watermark_ms);
}

/* labeling.at_bound pause: while its store is at max_pending the joiner
 * holds back the partitions ahead of the global watermark, so that those
 * behind it catch up and let it release. The pipeline holds a partition by
 * not reading its queue: prefetch and end-of-partition event are kept.
 * Called parked (the pipeline is the ingest thread's otherwise). */
static void on_flow(ld_topic_kind_t kind, int32_t partition, int pause,
                    void *opaque)
{
    run_t *r = opaque;
    if (pause && r->flow_lifted)
        return;
    ld_record_kind_t k =
        kind == LD_TOPIC_EVENTS ? LD_RECORD_EVENT : LD_RECORD_LABEL;
    ld_err_t err = pause ? ld_pipeline_pause(r->pipe, k, partition)
                         : ld_pipeline_resume(r->pipe, k, partition);
    ld_log(err && err != LD_ERR_NOENT ? LD_LOG_WARN : LD_LOG_DEBUG, "join",
           "msg=\"%s partition at max_pending\" kind=%s partition=%d%s",
           pause ? "holding" : "releasing",
           k == LD_RECORD_EVENT ? "event" : "label", (int)partition,
           err && err != LD_ERR_NOENT ? " err=\"cannot\"" : "");
}

/* Holding back is no use when the partitions behind have nothing to read
 * (they wait for traffic, or their idle_timeout): the held ones would wait
 * with them, and a backfill would never see its end. After FLOW_STARVED_MS
 * without a record, let every one go until the joiner holds none back; the
 * store grows past max_pending. (Not sooner: a partition just assigned
 * takes a fetch or two to get its first records, and the pipeline itself
 * waits up to 2 s for a partition that is behind.) */
#define FLOW_STARVED_MS 3000
static void flow_lift(run_t *r)
{
    ld_err_t e1 = ld_pipeline_resume(r->pipe, LD_RECORD_EVENT, -1);
    ld_err_t e2 = ld_pipeline_resume(r->pipe, LD_RECORD_LABEL, -1);
    ld_log(LD_LOG_WARN, "join",
           "msg=\"at max_pending, the partitions behind have nothing to "
           "read: reading on past the bound\" max_pending=%lld%s",
           (long long)r->conf->labeling.max_pending,
           e1 || e2 ? " err=\"cannot resume\"" : "");
    r->flow_lifted = 1;
}

/* ---- The loop ----------------------------------------------------------- */

/* A partition with records left to fetch is not idle: no record for
 * idle_timeout then means an unreachable broker or a stalled loop, and an
 * advance would make its backlog late (0007: a broker restart that blocked a
 * commit point for 30 s dropped three quarters of the examples). */
static void note_backlog(void *opaque, const char *topic, int32_t partition,
                         int64_t lag)
{
    run_t *r = opaque;
    if (lag > 0)
        ld_joiner_note_backlog(r->joiner,
                               strcmp(topic, r->conf->pipeline.events_topic) ==
                                       0
                                   ? LD_TOPIC_EVENTS
                                   : LD_TOPIC_LABELS,
                               partition);
}

/* Counts one more; true at the 1st, 2nd, 4th, 8th, ... */
static int count_and_log(uint64_t *n)
{
    ++*n;
    return (*n & (*n - 1)) == 0;
}

/* Feeds one decoded record to the joiner and everything it releases on
 * through the trainer. */
static void process(run_t *r, const ld_record_t *rec, const ld_packed_t *packed)
{
    ld_err_t err;
    ld_lineage_consumed(r->lin, rec->topic, rec->partition, rec->offset);
    note_position(r, (int)rec->kind, rec->partition, rec->offset + 1);
    if (r->adv_left)
        replay_advances(r, (int)rec->kind, rec->partition, rec->offset);
    if (rec->kind == LD_RECORD_EVENT && packed)
        err = ld_joiner_add_event_packed(r->joiner, rec->partition, rec->offset,
                                         rec->key, rec->key_len, rec->time_ms,
                                         packed);
    else if (rec->kind == LD_RECORD_EVENT)
        err =
            ld_joiner_add_event(r->joiner, rec->partition, rec->offset,
                                rec->key, rec->key_len, rec->time_ms, &rec->x);
    else if (rec->no_label) /* label_mode equals: not a match */
        err = ld_joiner_add_nolabel(r->joiner, rec->partition, rec->offset,
                                    rec->key, rec->key_len, rec->time_ms);
    else
        err = ld_joiner_add_label(r->joiner, rec->partition, rec->offset,
                                  rec->key, rec->key_len, rec->time_ms,
                                  (float)rec->label);
    /* The pipeline dead-letters what the joiner cannot hold (keys, time
     * range): a refusal here is out of memory or a bug. Counted on
     * /metrics (learnd_records_dropped_total{reason="refused"}). */
    /* Logged at the 1st, 2nd, 4th, 8th, ... time: a flood of them (a bad
     * label mapping) must not flood the log; the counter says how many. */
    if (err && count_and_log(&r->refused))
        ld_log(LD_LOG_WARN, "join",
               "msg=\"record refused by the joiner\" topic=%s partition=%d "
               "offset=%lld err=\"%s\" refused=%llu",
               rec->topic, (int)rec->partition, (long long)rec->offset,
               ld_err_str(err), (unsigned long long)r->refused);
    if (r->adv_left) /* the partition may stay idle from here */
        replay_advances(r, (int)rec->kind, rec->partition, rec->offset + 1);
    ld_example_t ex;
    while (ld_joiner_poll(r->joiner, &ex)) {
        if (r->hooks.example)
            r->hooks.example(r->hooks.opaque, &ex);
        if ((err = ld_trainer_add(r->trainer, &ex))) {
            if (count_and_log(&r->model_refused))
                ld_log(LD_LOG_WARN, "trainer",
                       "msg=\"example refused by the model\" partition=%d "
                       "offset=%lld err=\"%s\" refused=%llu",
                       (int)ex.partition, (long long)ex.offset, ld_err_str(err),
                       (unsigned long long)r->model_refused);
        } else {
            r->examples++;
            /* The audit topic holds exactly what the model trains on. */
            if (r->audit)
                audit(r, &ex);
        }
        /* Right after the micro-batch that decided it (an add trains at
         * most one): how many batches one record's releases train depends
         * on fetch interleaving, so a later snapshot would not be a pure
         * function of the input. */
        take_decisions(r);
    }
}

/* Opens the next transaction while the ingest thread is parked (it
 * dead-letters into it). Being fenced shows here first when another
 * instance took over between two commit points. */
static void begin_next(run_t *r)
{
    ld_err_t err = ld_pipeline_txn_begin(r->pipe);
    if (err == LD_ERR_FENCED)
        say_fenced(r);
    else if (err)
        ld_log(LD_LOG_CRIT, MOD,
               "msg=\"cannot begin a transaction: exiting\" err=\"%s\"",
               ld_err_str(err));
    if (err)
        r->exit_code = LD_EXIT_RUNTIME;
}

/* One hand-over from the ingest thread. */
static void take(run_t *r, const ld_ingest_item_t *it)
{
    switch (it->what) {
    case LD_INGEST_RECORD:
        process(r, &it->rec, it->packed);
        r->consumed++;
        break;
    case LD_INGEST_DEAD:
        note_position(r, kind_of(r, it->rec.topic), it->rec.partition,
                      it->rec.offset + 1);
        r->dead++;
        break;
    case LD_INGEST_CAUGHT_UP:
        r->caught_up = 1;
        break;
    case LD_INGEST_PAUSED:
        r->paused = 1;
        break;
    case LD_INGEST_STOPPED:
        r->ingest_running = 0;
        if (it->err == LD_ERR_FENCED) {
            say_fenced(r);
            r->exit_code = LD_EXIT_RUNTIME;
        } else if (it->err) {
            ld_log(LD_LOG_CRIT, MOD,
                   "msg=\"fatal Kafka error: exiting\" err=\"%s\"",
                   ld_err_str(it->err));
            r->exit_code = LD_EXIT_RUNTIME;
        }
        break;
    }
}

/* Ends the ingest thread. drain: what it polled is processed (a clean stop
 * commits it); else dropped (a replay at its version, a fatal error:
 * nothing more is committed). */
static void stop_ingest(run_t *r, int drain)
{
    if (r->ingest_running)
        ld_ingest_stop(r->ingest);
    while (r->ingest_running) {
        const ld_ingest_item_t *it = ld_ingest_next(r->ingest, 1000);
        if (!it)
            continue;
        if (it->what == LD_INGEST_STOPPED ||
            (drain && !r->exit_code && !r->replay_done))
            take(r, it);
        ld_ingest_done(r->ingest);
    }
    r->paused = 0;
    ld_ingest_destroy(r->ingest); /* joins the thread */
    r->ingest = NULL;
}

int ld_run(const ld_config_t *conf, const ld_run_opts_t *opts)
{
    static const ld_run_hooks_t no_hooks = {0};
    run_t r = {.conf = conf, .opts = opts};
    r.hooks = opts->hooks ? *opts->hooks : no_hooks;
    r.start_ms = ld_now_mono_ms();
    r.flow_on = conf->labeling.at_bound == LD_BOUND_PAUSE;
    char errstr[1024] = "";
    int code = setup(&r, errstr, sizeof(errstr));
    if (code != LD_EXIT_OK) {
        ld_log(LD_LOG_CRIT, MOD, "msg=\"cannot start\" err=%s",
               ld_log_q(errstr));
        teardown(&r);
        return code;
    }
    ld_metrics_set(r.reg, r.fam.up, "", 1);
    ld_metrics_set_ready(r.reg, 1);
    ld_log(LD_LOG_NOTICE, MOD,
           "msg=\"running\" model=%s events=%s labels=%s transactional_id=%s",
           r.tconf.name, conf->pipeline.events_topic,
           conf->pipeline.labels_topic, r.txn_id[0] ? r.txn_id : "-");

    /* Opened here and after every commit point, while the ingest thread
     * is parked: it dead-letters into the open transaction and so never
     * has to begin one itself. */
    begin_next(&r);
    if (!r.exit_code && ld_ingest_start(r.ingest) != LD_OK)
        r.exit_code = LD_EXIT_RUNTIME;
    else if (!r.exit_code)
        r.ingest_running = 1;
    int64_t now = ld_now_mono_ms();
    int64_t next_commit = now + conf->daemon.commit_interval_ms;
    int64_t next_report = now + 1000;
    uint64_t last_consumed_hook = 0, last_flow = 0;
    int64_t last_item = now; /* the last record from the ingest thread */
    unsigned n = 0;
    int pausing = 0;
    while (!r.exit_code && r.ingest_running) {
        const ld_ingest_item_t *it = ld_ingest_next(r.ingest, 100);
        if (it) {
            take(&r, it);
            ld_ingest_done(r.ingest);
        }
        if (r.replay_done || (opts->until_caught_up && r.caught_up))
            break;
        /* the rest every 256 records, when idle, or when parked */
        if (it && !r.paused && (++n & 255) != 0)
            continue;
        if (ld_signals_stop_requested())
            break;
        if (r.hooks.should_stop && r.hooks.should_stop(r.hooks.opaque))
            break;
        if (ld_signals_take_reopen() && ld_config_apply_logging(conf) != LD_OK)
            ld_log(LD_LOG_ERR, MOD, "msg=\"cannot reopen the log file\"");
        ld_metrics_heartbeat(r.reg);
        uint64_t progress = r.consumed + r.dead;
        if (r.hooks.consumed &&
            (progress - last_consumed_hook >= 1024 || !it)) {
            r.hooks.consumed(r.hooks.opaque, progress);
            last_consumed_hook = progress;
        }
        now = ld_now_mono_ms();
        /* Publications wait for the commit point, each with a snapshot of
         * the model: when event time runs far ahead of the wall clock (a
         * backfill, bench_e2e) triggers fire many times per interval, and
         * dozens of snapshots would pile up (memory, one long stall, one
         * huge transaction). A few waiting bring the commit point on. */
        int pile = !r.replay && r.nout >= MAX_WAITING_PUBLICATIONS;
        /* Near max_pending the joiner's flow decides which partitions to
         * hold back or let go: park for it every 1024 records (and when
         * idle), not once a second. */
        int flow = 0;
        if (r.flow_on) {
            ld_joiner_stats_t js;
            ld_joiner_stats(r.joiner, &js);
            if (r.flow_lifted && js.paused == 0)
                r.flow_lifted = 0;
            uint64_t held = js.pending_events + js.pending_labels;
            flow = (held >= (uint64_t)conf->labeling.max_pending / 10 * 8 ||
                    js.paused > 0) &&
                   (progress - last_flow >= 1024 || !it);
            if (it)
                last_item = now;
            else if (js.paused > 0 && !r.flow_lifted &&
                     now - last_item >= FLOW_STARVED_MS)
                r.flow_lift = 1;
        }
        if (!pausing &&
            (now >= next_report || now >= next_commit || pile || flow)) {
            last_flow = progress;
            ld_ingest_pause(r.ingest); /* PAUSED follows what it polled */
            pausing = 1;
        }
        if (!r.paused)
            continue;
        /* Parked: everything polled is processed, so the pipeline's lag is
         * exactly what is left to fetch. */
        ld_pipeline_lag(r.pipe, note_backlog, &r);
        if (!r.replay) /* a replay repeats the recorded ones instead */
            ld_joiner_idle_advance(r.joiner, now, on_advance, &r);
        if (r.flow_lift) {
            flow_lift(&r);
            r.flow_lift = 0;
        } else if (r.flow_on) {
            ld_joiner_flow(r.joiner, on_flow, &r);
        }
        if (now >= next_report) { /* else parked for the flow only */
            report(&r);
            next_report = now + 1000;
        }
        if (now >= next_commit || pile) {
            (void)commit_point(&r); /* sets exit_code when it fails */
            next_commit = now + conf->daemon.commit_interval_ms;
        }
        if (!r.exit_code)
            begin_next(&r);
        r.paused = pausing = 0;
        ld_ingest_resume(r.ingest);
    }
    /* What was polled is processed before the last commit point: the
     * pipeline's positions include it. */
    stop_ingest(&r, !r.exit_code && !r.replay_done);
    if (r.hooks.consumed)
        r.hooks.consumed(r.hooks.opaque, r.consumed + r.dead);
    ld_metrics_set_ready(r.reg, 0);
    if (!r.exit_code && !r.replay_done && opts->until_caught_up &&
        ld_pipeline_caught_up(r.pipe) && !ld_signals_stop_requested())
        final_checkpoint(&r);
    if (r.replay && !r.replay_done && !r.exit_code) {
        ld_log(LD_LOG_ERR, MOD,
               "msg=\"replay read the input without reaching the version\" "
               "version=%llu last_version=%llu",
               (unsigned long long)opts->replay_version,
               (unsigned long long)r.version);
        r.exit_code = LD_EXIT_RUNTIME;
    }
    /* Before the consumer closes: revoking the partitions drops them. */
    ld_joiner_stats_t js = {0};
    if (r.joiner)
        ld_joiner_stats(r.joiner, &js);
    if (!r.exit_code) {
        /* A clean stop ends with a commit point. */
        if (commit_point(&r) != LD_OK && !r.exit_code)
            r.exit_code = LD_EXIT_RUNTIME;
        r.pending_at_close = js.pending_events; /* report() says it */
        r.closing = 1;
        if (ld_pipeline_close(r.pipe, (int)conf->daemon.shutdown_timeout_ms))
            ld_log(LD_LOG_WARN, MOD, "msg=\"consumer did not close cleanly\"");
    }
    report(&r);
    /* Events whose label window is still open at the end are not lost:
     * the committed resume offsets reach back to them and the next start
     * re-reads them. Say how many, so nobody has to guess. */
    ld_log(LD_LOG_NOTICE, MOD,
           "msg=\"stopped\" consumed=%llu examples=%llu published=%llu "
           "pending_events=%llu pending_labels=%llu exit=%d",
           (unsigned long long)r.consumed, (unsigned long long)r.examples,
           (unsigned long long)r.published,
           (unsigned long long)js.pending_events,
           (unsigned long long)js.pending_labels, r.exit_code);
    code = r.exit_code;
    teardown(&r);
    return code;
}
