/* SPDX-License-Identifier: Apache-2.0 */
/* The publisher: the queue of decided publications, version numbering, and
 * what each one becomes at a commit point. Two implementations behind one
 * table: Kafka (local store, checkpoint chunks and manifest, trigger event,
 * all inside the open transaction) and capture (replay: records what would
 * have been published, keeps the snapshot it was asked for). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "publish/internal.h"
#include "trainer/checkpoint.h"

/* The log lines operators know (docs/OPERATIONS.md) keep their module. */
#define MOD "daemon"

static void outgoing_free(outgoing_t *o)
{
    ld_snapshot_destroy(o->snap);
    ld_trigger_decision_destroy(o->decision);
    ld_lineage_pb_free(o->lineage);
}

/* ---- Kafka ------------------------------------------------------------- */

static ld_err_t kafka_queue(ld_publisher_t *p, outgoing_t *o)
{
    if (p->nout == p->capout) {
        size_t cap = p->capout ? p->capout * 2 : 8;
        outgoing_t *v = realloc(p->out, cap * sizeof(*v));
        if (!v)
            return LD_ERR_NOMEM;
        p->out = v;
        p->capout = cap;
    }
    p->out[p->nout++] = *o;
    return LD_OK;
}

static ld_err_t produce(rd_kafka_t *rk, const char *topic, int32_t partition,
                        const char *key, const void *val, size_t len,
                        int64_t *offset_out)
{
    rd_kafka_resp_err_t e = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
        RD_KAFKA_V_KEY(key, strlen(key)),
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

/* Room for n delivery offsets. Nothing refers to the array here: the last
 * publication's records were all delivered, or it failed and the daemon is
 * exiting. */
static int64_t *offsets_for(ld_publisher_t *p, size_t n)
{
    if (p->pub_cap < n) {
        int64_t *o = realloc(p->pub_offsets, n * sizeof(*o));
        if (!o)
            return NULL;
        p->pub_offsets = o;
        p->pub_cap = n;
    }
    return p->pub_offsets;
}

/* Writes one checkpoint: local store, chunks, manifest. Fills path (empty
 * without a store), *manifest_off and sha (of the checkpoint bytes). */
static ld_err_t publish_checkpoint(ld_publisher_t *p, rd_kafka_t *rk,
                                   outgoing_t *o, char *path, size_t path_size,
                                   int64_t *manifest_off, uint8_t sha[32])
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
    uint64_t counts[LD_SAMPLE__COUNT];
    ld_snapshot_counts(o->snap, counts);
    ld_ckpt_meta_t meta = {.model = model,
                           .version = o->version,
                           .parent_version = p->ctr.version,
                           .created_at_ms = ld_now_wall_ms(),
                           .trigger_id =
                               o->decision ? ld_trigger_decision_id(o->decision)
                                           : "until-caught-up",
                           .learnd_version = c->learnd_version,
                           .hash_function = "murmur3_32",
                           .hash_seed = c->hash_seed,
                           .config_hash = c->config_hash,
                           .lineage = o->lineage,
                           .parent_counts = p->ctr.parent_counts};
    if ((err = ld_ckpt_encode(o->snap, &meta, &ckpt)))
        goto out;
    path[0] = '\0';
    char why[512] = "";
    if (c->store_dir && c->store_dir[0] &&
        (err = ld_ckpt_store_write(c->store_dir, model, o->version, ckpt.data,
                                   ckpt.len, c->store_keep, path, path_size,
                                   why, sizeof(why)))) {
        ld_log(LD_LOG_ERR, MOD, "msg=\"cannot store checkpoint\" err=%s",
               ld_log_q(why));
        goto out;
    }
    /* The topic may get a delta of the last version instead (chunks.c). */
    ld_ckpt_manifest_info_t info = {0};
    if ((err = ld_publisher_delta(p, o->snap, &meta, &delta, &info)))
        goto out;
    const ld_buf_t *wire = delta.data ? &delta : &ckpt;
    ld_ckpt_sha256(wire->data, wire->len, sha); /* = the manifest's */
    if ((err = ld_ckpt_chunks(wire->data, wire->len, model, o->version,
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
        offsets[i] = -1;
        if ((err = produce(rk, topic, 0, key, chunks[i].data, chunks[i].len,
                           &offsets[i])))
            goto out;
    }
    /* The manifest names the first chunk's offset: wait for it. */
    rd_kafka_flush(rk, flush_ms);
    for (size_t i = 0; i < nchunks; i++) {
        if (offsets[i] < 0) {
            ld_log(LD_LOG_ERR, MOD, "msg=\"checkpoint chunks not delivered\"");
            err = LD_ERR_KAFKA;
            goto out;
        }
    }
    info.model = model;
    info.version = o->version;
    info.parent_version = p->ctr.version;
    info.chunk_count = (uint32_t)nchunks;
    info.first_chunk_offset = nchunks ? offsets[0] : -1;
    info.topic = topic;
    info.partition = 0;
    info.created_at_ms = meta.created_at_ms;
    info.trigger_id = meta.trigger_id;
    const char *secret = c->manifest_secret;
    info.hmac_key = (const uint8_t *)secret;
    info.hmac_key_len = secret ? strlen(secret) : 0;
    if ((err =
             ld_ckpt_manifest_encode(wire->data, wire->len, &info, &manifest)))
        goto out;
    offsets[nchunks] = -1;
    if ((err = produce(rk, topic, 0, model, manifest.data, manifest.len,
                       &offsets[nchunks])))
        goto out;
    rd_kafka_flush(rk, flush_ms);
    if (offsets[nchunks] < 0) {
        ld_log(LD_LOG_ERR, MOD, "msg=\"checkpoint manifest not delivered\"");
        err = LD_ERR_KAFKA;
        goto out;
    }
    *manifest_off = offsets[nchunks];
    memcpy(p->ctr.parent_counts, counts, sizeof(counts));
    ld_snapshot_params_sha256(o->snap, p->ctr.published_sha);
    p->ctr.version = o->version;
    p->ctr.published++;
    ld_publisher_delta_done(p, o->snap, o->version, delta.data != NULL);
    ld_log(LD_LOG_NOTICE, MOD,
           "msg=\"checkpoint published\" model=%s version=%llu bytes=%zu "
           "chunks=%zu manifest_offset=%lld path=%s%s%.0zu",
           ld_log_q(model), (unsigned long long)o->version, ckpt.len, nchunks,
           (long long)*manifest_off, ld_log_q(path[0] ? path : "-"),
           delta.data ? " delta_bytes=" : "", delta.data ? delta.len : 0);
out:
    ld_ckpt_chunks_free(chunks, nchunks);
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
    ld_err_t err = ld_trigger_event_encode(o->decision, o->snap ? pub : NULL,
                                           ld_now_wall_ms(),
                                           p->c.trigger_format, &buf, &len);
    if (!err)
        err = produce(rk, p->c.trigger_topic, RD_KAFKA_PARTITION_UA, p->c.model,
                      buf, len, NULL);
    if (!err)
        ld_log(
            LD_LOG_NOTICE, "triggers",
            "msg=\"trigger event sent\" id=%s type=%s verdict=%s "
            "reason=\"%s\"",
            ld_trigger_decision_id(o->decision),
            ld_trigger_type_name(ld_trigger_decision_type(o->decision)),
            ld_trigger_verdict_name(ld_trigger_decision_verdict(o->decision)),
            ld_trigger_decision_reason(o->decision));
    free(buf);
    return err;
}

static ld_err_t kafka_flush(ld_publisher_t *p, rd_kafka_t *rk)
{
    ld_err_t err = LD_OK;
    size_t i;
    for (i = 0; i < p->nout && !err; i++) {
        outgoing_t *o = &p->out[i];
        char path[1024] = "";
        int64_t moff = -1;
        uint8_t sha[32];
        ld_trigger_publication_t pub = {0, -1, NULL, sha};
        if (o->snap) {
            err = publish_checkpoint(p, rk, o, path, sizeof(path), &moff, sha);
            if (err)
                break;
            pub.manifest_offset = moff;
            pub.path = path[0] ? path : NULL;
        }
        if (o->decision)
            err = send_event(p, rk, o, &pub);
    }
    for (size_t k = 0; k < i; k++)
        outgoing_free(&p->out[k]);
    if (i) {
        memmove(p->out, p->out + i, (p->nout - i) * sizeof(*p->out));
        p->nout -= i;
    }
    return err;
}

static ld_err_t kafka_record(ld_publisher_t *p, rd_kafka_t *rk,
                             const char *topic, const char *key,
                             const void *val, size_t len)
{
    (void)p;
    return produce(rk, topic, RD_KAFKA_PARTITION_UA, key, val, len, NULL);
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
                               const char *topic, const char *key,
                               const void *val, size_t len)
{
    (void)p;
    (void)rk;
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
    for (size_t i = 0; i < p->nout; i++)
        outgoing_free(&p->out[i]);
    free(p->out);
    free(p->pub_offsets);
    ld_snapshot_destroy(p->captured);
    ld_state_gens_free(&p->gens);
    ld_publisher_delta_free(p);
    free(p);
}

ld_err_t ld_publisher_queue(ld_publisher_t *p, ld_trigger_decision_t *d,
                            ld_snapshot_t *snap, uint64_t version,
                            Learnd__V1__Lineage *lineage)
{
    outgoing_t o = {d, snap, version, lineage};
    ld_err_t err = p->ops->queue(p, &o);
    if (err)
        outgoing_free(&o);
    return err;
}

size_t ld_publisher_waiting(const ld_publisher_t *p)
{
    return p->nout;
}

int ld_publisher_last_queued(const ld_publisher_t *p, uint8_t sha[32],
                             uint64_t *version)
{
    for (size_t i = p->nout; i-- > 0;)
        if (p->out[i].snap) {
            ld_snapshot_params_sha256(p->out[i].snap, sha);
            *version = p->out[i].version;
            return 1;
        }
    return 0;
}

ld_err_t ld_publisher_flush(ld_publisher_t *p, rd_kafka_t *producer)
{
    return p->ops->flush(p, producer);
}

ld_err_t ld_publisher_record(ld_publisher_t *p, rd_kafka_t *producer,
                             const char *topic, const char *key,
                             const void *val, size_t len)
{
    return p->ops->record(p, producer, topic, key, val, len);
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
