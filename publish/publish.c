/* SPDX-License-Identifier: Apache-2.0 */
/* The publisher: the queue of decided publications, version numbering, and
 * what each one becomes at a commit point. Two implementations behind one
 * table: Kafka (local store, checkpoint chunks and manifest, trigger event,
 * all inside the open transaction) and capture (replay: records what would
 * have been published, keeps the snapshot it was asked for). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "pipeline/pipeline.h"
#include "publish/internal.h"
#include "trainer/checkpoint.h"

/* The log lines operators know (docs/OPERATIONS.md) keep their module. */
#define MOD "daemon"

static void outgoing_free(outgoing_t *o)
{
    ld_snapshot_destroy(o->snap);
    ld_trigger_decision_destroy(o->decision);
    ld_lineage_pb_free(o->lineage);
    free(o->path);
}

/* ---- Kafka ------------------------------------------------------------- */

/* Fixes o's parent (the publication queued before it, or the last
 * committed one) and appends it. Loop thread. */
static ld_err_t kafka_queue(ld_publisher_t *p, outgoing_t *o)
{
    if (p->started)
        pthread_mutex_lock(&p->mu);
    ld_err_t err = LD_OK;
    if (p->nout == p->capout) {
        size_t cap = p->capout ? p->capout * 2 : 8;
        outgoing_t *v = realloc(p->out, cap * sizeof(*v));
        if (!v)
            err = LD_ERR_NOMEM;
        else {
            p->out = v;
            p->capout = cap;
        }
    }
    if (!err) {
        o->has_ckpt = o->snap != NULL;
        o->manifest_off = -1;
        if (o->snap) {
            o->parent_version = p->nq_ckpt ? p->q_version : p->ctr.version;
            memcpy(o->parent_counts,
                   p->nq_ckpt ? p->q_counts : p->ctr.parent_counts,
                   sizeof(o->parent_counts));
            p->q_version = o->version;
            ld_snapshot_counts(o->snap, p->q_counts);
            ld_snapshot_destroy(p->q_snap);
            p->q_snap = ld_snapshot_ref(o->snap);
            p->nq_ckpt++;
        }
        p->out[p->nout++] = *o;
        p->nq++;
    }
    if (p->started) {
        pthread_cond_signal(&p->work);
        pthread_mutex_unlock(&p->mu);
    }
    return err;
}

/* Every record the publisher writes says what it is (header learnd.type:
 * the schemas/learnd.proto message, whatever the encoding) and whose
 * (learnd.model, as on dead letters), so that a reader of a shared topic
 * (triggers: trigger events and experiment events) tells them apart
 * without decoding (docs/TRIGGERS.md, "Headers"). */
static ld_err_t produce(rd_kafka_t *rk, const char *topic, int32_t partition,
                        const char *key, const void *val, size_t len,
                        int64_t *offset_out, const char *type,
                        const char *model)
{
    rd_kafka_resp_err_t e;
    rd_kafka_headers_t *h = rd_kafka_headers_new(2);
    rd_kafka_header_add(h, "learnd.type", -1, type, -1);
    rd_kafka_header_add(h, "learnd.model", -1, model, -1);
    /* A full producer queue (audit records between two commit points can
     * outnumber queue.buffering.max.messages) is waited out, serving
     * delivery reports, for up to 60 s without room. */
    for (int64_t end = ld_now_mono_ms() + 60000;;) {
        e = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
            RD_KAFKA_V_KEY(key, strlen(key)),
            RD_KAFKA_V_VALUE((void *)(uintptr_t)val, len),
            RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_OPAQUE(offset_out), RD_KAFKA_V_END);
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL || ld_now_mono_ms() > end)
            break;
        rd_kafka_poll(rk, 100);
    }
    if (e) {
        rd_kafka_headers_destroy(h); /* librdkafka owns them on success */
        ld_log(LD_LOG_ERR, MOD, "msg=\"produce failed\" topic=%s err=\"%s\"",
               topic, rd_kafka_err2str(e));
        return LD_ERR_KAFKA;
    }
    return LD_OK;
}

/* Room for n delivery offsets, each set to "not reported yet". Nothing
 * refers to the array here: the last publication's records were all
 * delivered, or it failed and the daemon is exiting. */
static int64_t *offsets_for(ld_publisher_t *p, size_t n)
{
    if (p->pub_cap < n) {
        int64_t *o = realloc(p->pub_offsets, n * sizeof(*o));
        if (!o)
            return NULL;
        p->pub_offsets = o;
        p->pub_cap = n;
    }
    for (size_t i = 0; i < n; i++)
        atomic_store_explicit((_Atomic int64_t *)&p->pub_offsets[i],
                              LD_PIPELINE_OFFSET_PENDING, memory_order_relaxed);
    return p->pub_offsets;
}

/* Waits until librdkafka reported the delivery of offs[0..n): LD_OK when
 * every one was delivered, LD_ERR_KAFKA when one failed, LD_ERR_TIMEOUT
 * after timeout_ms or when the publisher stops. It waits for these
 * records only: rd_kafka_flush would also wait for the audit and dead
 * letter records the other threads keep producing meanwhile. Whichever
 * thread polls the producer may run the delivery callback. */
static ld_err_t await_delivery(ld_publisher_t *p, rd_kafka_t *rk,
                               const int64_t *offs, size_t n, int timeout_ms)
{
    int64_t deadline = ld_now_mono_ms() + timeout_ms;
    for (;;) {
        int pending = 0, failed = 0;
        for (size_t i = 0; i < n; i++) {
            int64_t v = atomic_load_explicit((_Atomic int64_t *)&offs[i],
                                             memory_order_acquire);
            pending |= v == LD_PIPELINE_OFFSET_PENDING;
            failed |= v == -1;
        }
        if (!pending)
            return failed ? LD_ERR_KAFKA : LD_OK;
        if (atomic_load(&p->stopping) || ld_now_mono_ms() >= deadline)
            return LD_ERR_TIMEOUT;
        rd_kafka_poll(rk, 5);
    }
}

/* Writes one checkpoint: local store, chunks, manifest. Fills o's results
 * (path, manifest offset, size, chunk count, parameter hash) and sha (of
 * the checkpoint bytes). Touches nothing of p but its delivery offsets:
 * the publisher thread runs it. */
static ld_err_t publish_checkpoint(ld_publisher_t *p, rd_kafka_t *rk,
                                   outgoing_t *o, uint8_t sha[32])
{
    const ld_publisher_conf_t *c = &p->c;
    const char *model = c->model;
    const char *topic = c->checkpoint_topic;
    ld_buf_t ckpt = {0}, manifest = {0}, delta = {0};
    ld_buf_t *chunks = NULL;
    size_t nchunks = 0;
    int64_t *offsets = NULL;
    ld_err_t err;
    /* As long as the commit point would wait: a broker that is away is
     * ridden out the same way at a publication (0007). */
    const int flush_ms = 60000;
    /* The loop handed a copy-on-write snapshot over (run.c): the copy of
     * what it did not write since is made here, off the loop. */
    ld_snapshot_complete(o->snap);
    ld_snapshot_counts(o->snap, o->counts);
    ld_ckpt_meta_t meta = {.model = model,
                           .version = o->version,
                           .parent_version = o->parent_version,
                           .created_at_ms = ld_now_wall_ms(),
                           .trigger_id =
                               o->decision ? ld_trigger_decision_id(o->decision)
                                           : "until-caught-up",
                           .learnd_version = c->learnd_version,
                           .hash_function = "murmur3_32",
                           .hash_seed = c->hash_seed,
                           .config_hash = c->config_hash,
                           .feature_map_hash = c->feature_map_hash,
                           .lineage = o->lineage,
                           .parent_counts = o->parent_counts};
    if ((err = ld_ckpt_encode(o->snap, &meta, &ckpt)))
        goto out;
    char why[512] = "", path[1024] = "";
    if (c->store_dir && c->store_dir[0]) {
        /* Staged: it becomes a version of the store once its
         * transaction commits (ld_publisher_committed). */
        if ((err = ld_publish_store_stage(c->store_dir, model, o->version,
                                          ckpt.data, ckpt.len, path,
                                          sizeof(path), why, sizeof(why)))) {
            ld_log(LD_LOG_ERR, MOD, "msg=\"cannot store checkpoint\" err=%s",
                   ld_log_q(why));
            goto out;
        }
        if (!(o->path = strdup(path))) {
            err = LD_ERR_NOMEM;
            goto out;
        }
    }
    /* The topic may get a delta of the last version instead (chunks.c). */
    ld_publish_manifest_info_t info = {0};
    if ((err = ld_publisher_delta(p, o->snap, &meta, &delta, &info)))
        goto out;
    const ld_buf_t *wire = delta.data ? &delta : &ckpt;
    ld_ckpt_sha256(wire->data, wire->len, sha); /* = the manifest's */
    if ((err = ld_publish_chunks(wire->data, wire->len, model, o->version,
                                 c->chunk_size, &chunks, &nchunks)))
        goto out;
    if (!(offsets = offsets_for(p, nchunks + 1))) {
        err = LD_ERR_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < nchunks; i++) {
        char key[300];
        snprintf(key, sizeof(key), "%s/%llu/%zu", model,
                 (unsigned long long)o->version, i);
        if ((err = produce(rk, topic, 0, key, chunks[i].data, chunks[i].len,
                           &offsets[i], "CheckpointChunk", model)))
            goto out;
    }
    /* The manifest names the first chunk's offset: wait for it. */
    if ((err = await_delivery(p, rk, offsets, nchunks, flush_ms))) {
        ld_log(LD_LOG_ERR, MOD, "msg=\"checkpoint chunks not delivered\"");
        goto out;
    }
    info.model = model;
    info.version = o->version;
    info.parent_version = o->parent_version;
    info.chunk_count = (uint32_t)nchunks;
    info.first_chunk_offset = nchunks ? offsets[0] : -1;
    info.topic = topic;
    info.partition = 0;
    info.created_at_ms = meta.created_at_ms;
    info.trigger_id = meta.trigger_id;
    const char *secret = c->manifest_secret;
    info.hmac_key = (const uint8_t *)secret;
    info.hmac_key_len = secret ? strlen(secret) : 0;
    if ((err = ld_publish_manifest_encode(wire->data, wire->len, &info,
                                          &manifest)))
        goto out;
    if ((err = produce(rk, topic, 0, model, manifest.data, manifest.len,
                       &offsets[nchunks], "CheckpointManifest", model)))
        goto out;
    if ((err = await_delivery(p, rk, &offsets[nchunks], 1, flush_ms))) {
        ld_log(LD_LOG_ERR, MOD, "msg=\"checkpoint manifest not delivered\"");
        goto out;
    }
    o->manifest_off = offsets[nchunks];
    o->bytes = ckpt.len;
    o->nchunks = nchunks;
    ld_snapshot_params_sha256(o->snap, o->params_sha);
    ld_publisher_delta_done(p, o->snap, o->version, delta.data != NULL);
out:
    ld_publish_chunks_free(chunks, nchunks);
    free(delta.data);
    free(ckpt.data);
    free(manifest.data);
    return err;
}

/* The trigger event of o, after its checkpoint (pub) if it has one. */
static ld_err_t send_event(ld_publisher_t *p, rd_kafka_t *rk,
                           const outgoing_t *o,
                           const ld_trigger_publication_t *pub)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    ld_err_t err = ld_trigger_event_encode(
        o->decision, o->has_ckpt ? pub : NULL, ld_now_wall_ms(),
        p->c.trigger_format, &buf, &len);
    if (!err)
        err = produce(rk, p->c.trigger_topic, RD_KAFKA_PARTITION_UA, p->c.model,
                      buf, len, NULL, "TriggerEvent", p->c.model);
    free(buf);
    return err;
}

/* Everything of one publication that is written: checkpoint (if any),
 * then its trigger event, into the open transaction. Frees the snapshot
 * once written (the champion keeps its own reference). */
static ld_err_t publish_one(ld_publisher_t *p, rd_kafka_t *rk, outgoing_t *o)
{
    ld_err_t err = LD_OK;
    uint8_t sha[32];
    ld_trigger_publication_t pub = {0, -1, NULL, sha};
    if (o->snap) {
        if ((err = publish_checkpoint(p, rk, o, sha)))
            return err;
        pub.manifest_offset = o->manifest_off;
        pub.path = o->path;
        ld_snapshot_destroy(o->snap);
        o->snap = NULL;
    }
    if (o->decision)
        err = send_event(p, rk, o, &pub);
    return err;
}

/* The publisher thread: takes the queue in order, each publication worked
 * on outside the lock (the loop only appends meanwhile; indices stay). */
/* Promotes the staged versions up to upto in the local store: they are
 * committed. A failure is logged and leaves them staged (a restart
 * promotes them): the publication itself is done. */
static void promote(ld_publisher_t *p, uint64_t upto)
{
    const ld_publisher_conf_t *c = &p->c;
    char why[512] = "";
    if (c->store_dir && c->store_dir[0] &&
        ld_publish_store_promote(c->store_dir, c->model, upto, c->store_keep,
                                 why, sizeof(why)) != LD_OK)
        ld_log(LD_LOG_ERR, MOD,
               "msg=\"cannot promote committed checkpoints in the store\" "
               "err=%s",
               ld_log_q(why));
}

static void *publisher_main(void *arg)
{
    ld_publisher_t *p = arg;
    /* Behind the loop and the ingest thread for the CPU: on a busy host
     * (2 cores, a backlog) the publication then takes what they leave
     * instead of slowing every micro-batch; the commit point that needs it
     * waits for it anyway. Linux: nice is per thread. */
    if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10) != 0)
        ld_log(LD_LOG_DEBUG, MOD,
               "msg=\"publisher thread keeps its priority\"");
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!atomic_load(&p->stopping) && p->promoted == p->promote_upto &&
               (p->wnext == p->nout || p->werr))
            pthread_cond_wait(&p->work, &p->mu);
        if (p->promoted != p->promote_upto) {
            uint64_t upto = p->promote_upto;
            pthread_mutex_unlock(&p->mu);
            promote(p, upto);
            pthread_mutex_lock(&p->mu);
            p->promoted = upto;
            continue;
        }
        if (atomic_load(&p->stopping))
            break;
        size_t i = p->wnext;
        outgoing_t o = p->out[i];
        pthread_mutex_unlock(&p->mu);
        ld_err_t err = publish_one(p, p->rk, &o);
        pthread_mutex_lock(&p->mu);
        p->out[i] = o;
        if (err)
            p->werr = err;
        else
            p->wnext = i + 1;
        pthread_cond_broadcast(&p->idle);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* The publications written so far: into the counters (the next commit
 * point saves them) and onto the list ld_publisher_committed logs. */
static ld_err_t take_written(ld_publisher_t *p, size_t n)
{
    if (p->ndone + n > p->capdone) {
        size_t cap = p->ndone + n + 8;
        outgoing_t *v = realloc(p->done, cap * sizeof(*v));
        if (!v)
            return LD_ERR_NOMEM;
        p->done = v;
        p->capdone = cap;
    }
    for (size_t i = 0; i < n; i++) {
        outgoing_t *o = &p->out[i];
        if (o->has_ckpt) {
            memcpy(p->ctr.parent_counts, o->counts, sizeof(o->counts));
            memcpy(p->ctr.published_sha, o->params_sha, 32);
            p->ctr.version = o->version;
            p->ctr.published++;
        }
        p->done[p->ndone++] = *o;
    }
    if (p->nout > n) /* p->out may be NULL when nothing was queued */
        memmove(p->out, p->out + n, (p->nout - n) * sizeof(*p->out));
    p->nout -= n;
    return LD_OK;
}

/* The commit point: waits for the publisher thread to have written every
 * queued publication (without it: writes them here, in order). */
static ld_err_t kafka_flush(ld_publisher_t *p, rd_kafka_t *rk)
{
    ld_err_t err = LD_OK;
    size_t n;
    if (p->started) {
        pthread_mutex_lock(&p->mu);
        while (p->wnext < p->nout && !p->werr && !atomic_load(&p->stopping))
            pthread_cond_wait(&p->idle, &p->mu);
        err = p->werr;
        if (!err && p->wnext < p->nout)
            err = LD_ERR_TIMEOUT; /* stopped */
        n = p->wnext;
    } else {
        for (n = 0; n < p->nout && !err; n++)
            if ((err = publish_one(p, rk, &p->out[n])))
                break;
    }
    ld_err_t e2 = take_written(p, n);
    if (e2) {
        err = err ? err : e2;
        p->werr = e2; /* not taken: never written twice */
    }
    if (p->started) {
        p->wnext = 0;
        pthread_mutex_unlock(&p->mu);
    }
    if (!err) {
        p->nq = p->nq_ckpt = 0;
        ld_snapshot_destroy(p->q_snap);
        p->q_snap = NULL;
    }
    return err;
}

static ld_err_t kafka_record(ld_publisher_t *p, rd_kafka_t *rk,
                             const char *type, const char *topic,
                             const char *key, const void *val, size_t len)
{
    return produce(rk, topic, RD_KAFKA_PARTITION_UA, key, val, len, NULL, type,
                   p->c.model);
}

static const pub_ops_t kafka_ops = {kafka_queue, kafka_flush, kafka_record};

/* ---- Capture ------------------------------------------------------------ */

/* The same decisions as the original run, nothing written: a publication
 * only moves the version on, and the one asked for is kept. */
static ld_err_t capture_queue(ld_publisher_t *p, outgoing_t *o)
{
    if (o->snap) {
        p->ctr.version = o->version;
        p->n_captured++;
        if (o->version == p->stop_version && !p->captured_once) {
            /* Only the version asked for is read: it is made whole here.
             * The others are dropped as they are, the copier thread (and
             * the loop, block by block, while one is the champion) still
             * copying them: completing each here put the copy of every
             * publication on the loop thread, ~15 % of a replay's loop
             * time at 2^18 (#18). */
            ld_snapshot_complete(o->snap);
            p->captured = o->snap;
            p->captured_once = 1;
            o->snap = NULL;
        }
    }
    outgoing_free(o);
    return LD_OK;
}

static ld_err_t capture_flush(ld_publisher_t *p, rd_kafka_t *rk)
{
    (void)p;
    (void)rk;
    return LD_OK;
}

static ld_err_t capture_record(ld_publisher_t *p, rd_kafka_t *rk,
                               const char *type, const char *topic,
                               const char *key, const void *val, size_t len)
{
    (void)p;
    (void)rk;
    (void)type;
    (void)topic;
    (void)key;
    (void)val;
    (void)len;
    return LD_OK;
}

static const pub_ops_t capture_ops = {capture_queue, capture_flush,
                                      capture_record};

/* ---- Interface ---------------------------------------------------------- */

static ld_publisher_t *make(const ld_publisher_conf_t *conf,
                            const pub_ops_t *ops)
{
    ld_publisher_t *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->ops = ops;
    p->c = *conf;
    return p;
}

ld_publisher_t *ld_publisher_new_kafka(const ld_publisher_conf_t *conf)
{
    return make(conf, &kafka_ops);
}

ld_publisher_t *ld_publisher_new_capture(const ld_publisher_conf_t *conf,
                                         uint64_t stop_version)
{
    ld_publisher_t *p = make(conf, &capture_ops);
    if (p)
        p->stop_version = stop_version;
    return p;
}

void ld_publisher_destroy(ld_publisher_t *p)
{
    if (!p)
        return;
    ld_publisher_stop(p);
    if (p->started) {
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->work);
        pthread_cond_destroy(&p->idle);
    }
    for (size_t i = 0; i < p->nout; i++)
        outgoing_free(&p->out[i]);
    for (size_t i = 0; i < p->ndone; i++)
        outgoing_free(&p->done[i]);
    free(p->out);
    free(p->done);
    free(p->pub_offsets);
    ld_snapshot_destroy(p->q_snap);
    ld_snapshot_destroy(p->captured);
    ld_state_gens_free(&p->gens);
    ld_publisher_delta_free(p);
    free(p);
}

ld_err_t ld_publisher_start(ld_publisher_t *p, rd_kafka_t *producer)
{
    if (p->ops != &kafka_ops || p->started)
        return LD_ERR_INVAL;
    p->rk = producer;
    if (pthread_mutex_init(&p->mu, NULL))
        return LD_ERR_NOMEM;
    if (pthread_cond_init(&p->work, NULL)) {
        pthread_mutex_destroy(&p->mu);
        return LD_ERR_NOMEM;
    }
    if (pthread_cond_init(&p->idle, NULL)) {
        pthread_cond_destroy(&p->work);
        pthread_mutex_destroy(&p->mu);
        return LD_ERR_NOMEM;
    }
    atomic_init(&p->stopping, 0);
    if (pthread_create(&p->thr, NULL, publisher_main, p)) {
        pthread_cond_destroy(&p->idle);
        pthread_cond_destroy(&p->work);
        pthread_mutex_destroy(&p->mu);
        return LD_ERR_NOMEM;
    }
    p->started = 1;
    return LD_OK;
}

void ld_publisher_stop(ld_publisher_t *p)
{
    if (!p || !p->started || atomic_load(&p->stopping))
        return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stopping, 1);
    pthread_cond_broadcast(&p->work);
    pthread_cond_broadcast(&p->idle);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thr, NULL);
}

ld_err_t ld_publisher_queue(ld_publisher_t *p, ld_trigger_decision_t *d,
                            ld_snapshot_t *snap, uint64_t version,
                            Learnd__V1__Lineage *lineage)
{
    outgoing_t o = {
        .decision = d, .snap = snap, .version = version, .lineage = lineage};
    ld_err_t err = p->ops->queue(p, &o);
    if (err)
        outgoing_free(&o);
    return err;
}

size_t ld_publisher_waiting(const ld_publisher_t *p)
{
    return p->nq;
}

int ld_publisher_last_queued(const ld_publisher_t *p, uint8_t sha[32],
                             uint64_t *version)
{
    if (!p->nq_ckpt || !p->q_snap)
        return 0;
    ld_snapshot_complete(p->q_snap); /* whole before it is read */
    ld_snapshot_params_sha256(p->q_snap, sha);
    *version = p->q_version;
    return 1;
}

ld_err_t ld_publisher_flush(ld_publisher_t *p, rd_kafka_t *producer)
{
    return p->ops->flush(p, producer);
}

void ld_publisher_committed(ld_publisher_t *p)
{
    uint64_t upto = 0;
    for (size_t i = 0; i < p->ndone; i++)
        if (p->done[i].has_ckpt)
            upto = p->done[i].version;
    if (upto && p->started) {
        pthread_mutex_lock(&p->mu);
        p->promote_upto = upto;
        pthread_cond_signal(&p->work);
        pthread_mutex_unlock(&p->mu);
    } else if (upto) {
        promote(p, upto);
    }
    for (size_t i = 0; i < p->ndone; i++) {
        outgoing_t *o = &p->done[i];
        if (o->has_ckpt)
            ld_log(LD_LOG_NOTICE, MOD,
                   "msg=\"checkpoint published\" model=%s version=%llu "
                   "bytes=%zu chunks=%zu manifest_offset=%lld path=%s",
                   ld_log_q(p->c.model), (unsigned long long)o->version,
                   o->bytes, o->nchunks, (long long)o->manifest_off,
                   ld_log_q(o->path ? o->path : "-"));
        if (o->decision)
            ld_log(LD_LOG_NOTICE, "triggers",
                   "msg=\"trigger event sent\" id=%s type=%s verdict=%s "
                   "reason=\"%s\"",
                   ld_trigger_decision_id(o->decision),
                   ld_trigger_type_name(ld_trigger_decision_type(o->decision)),
                   ld_trigger_verdict_name(
                       ld_trigger_decision_verdict(o->decision)),
                   ld_trigger_decision_reason(o->decision));
        outgoing_free(o);
    }
    p->ndone = 0;
}

ld_err_t ld_publisher_record(ld_publisher_t *p, rd_kafka_t *producer,
                             const char *type, const char *topic,
                             const char *key, const void *val, size_t len)
{
    return p->ops->record(p, producer, type, topic, key, val, len);
}

ld_resume_counters_t *ld_publisher_counters(ld_publisher_t *p)
{
    return &p->ctr;
}

ld_snapshot_t *ld_publisher_take_captured(ld_publisher_t *p)
{
    ld_snapshot_t *s = p->captured;
    p->captured = NULL;
    return s;
}

uint64_t ld_publisher_captured_count(const ld_publisher_t *p)
{
    return p->n_captured;
}
