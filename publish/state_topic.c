/* SPDX-License-Identifier: Apache-2.0 */
/* Resume state records on the state topic: keyed `<model>/header` and
 * `<model>/block/<i>`, so compaction keeps the newest of each. */
#include "publish/publish.h"

#include <stdlib.h>
#include <string.h>

#include "pipeline/kafka.h"

#define MOD "state"

void ld_resume_destroy(ld_resume_t *r)
{
    if (!r)
        return;
    if (r->header)
        learnd__v1__resume_header__free_unpacked(r->header, NULL);
    free(r->ckpt);
    free(r);
}

static ld_err_t produce(rd_kafka_t *rk, const char *topic, const char *key,
                        const Learnd__V1__StateRecord *rec)
{
    size_t len = learnd__v1__state_record__get_packed_size(rec);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return LD_ERR_NOMEM;
    learnd__v1__state_record__pack(rec, buf);
    rd_kafka_resp_err_t e = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(0),
        RD_KAFKA_V_KEY(key, strlen(key)), RD_KAFKA_V_VALUE(buf, len),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE), RD_KAFKA_V_END);
    if (e) {
        free(buf);
        ld_log(LD_LOG_ERR, MOD,
               "msg=\"cannot queue state record\" key=%s "
               "err=%s",
               ld_log_q(key), ld_log_q(rd_kafka_err2str(e)));
        return LD_ERR_KAFKA;
    }
    return LD_OK;
}

ld_err_t ld_state_write(rd_kafka_t *producer, const char *topic,
                        Learnd__V1__ResumeHeader *header, const uint8_t *ckpt,
                        size_t len, size_t block_size)
{
    size_t n = (len + block_size - 1) / block_size;
    header->block_size = (uint32_t)block_size;
    header->block_count = (uint32_t)n;
    header->block_encoding =
        LEARND__V1__BLOCK_ENCODING__BLOCK_ENCODING_CHECKPOINT_CHUNKS;
    char key[512];
    ld_err_t err = LD_OK;
    for (size_t i = 0; i < n && !err; i++) {
        Learnd__V1__StateBlock blk = LEARND__V1__STATE_BLOCK__INIT;
        blk.model = header->model;
        blk.block_index = (uint32_t)i;
        blk.commit_seq = header->commit_seq;
        blk.data.data = (uint8_t *)(uintptr_t)(ckpt + i * block_size);
        blk.data.len = i + 1 < n ? block_size : len - i * block_size;
        Learnd__V1__StateRecord rec = LEARND__V1__STATE_RECORD__INIT;
        rec.record_case = LEARND__V1__STATE_RECORD__RECORD_BLOCK;
        rec.block = &blk;
        snprintf(key, sizeof(key), "%s/block/%zu", header->model, i);
        err = produce(producer, topic, key, &rec);
    }
    if (err)
        return err;
    /* The header last: a reader that sees it sees its blocks (one
     * transaction, one partition, in order). */
    Learnd__V1__StateRecord rec = LEARND__V1__STATE_RECORD__INIT;
    rec.record_case = LEARND__V1__STATE_RECORD__RECORD_HEADER;
    rec.header = header;
    snprintf(key, sizeof(key), "%s/header", header->model);
    return produce(producer, topic, key, &rec);
}

/* ---- Reading ------------------------------------------------------------ */

typedef struct blockv {
    uint8_t *data;
    size_t len;
    uint64_t seq;
    int present;
} blockv_t;

typedef struct reader {
    const char *model;
    size_t mlen;
    uint8_t *header; /* newest header record value */
    size_t hlen;
    blockv_t *blocks;
    size_t nblocks;
} reader_t;

static void reader_free(reader_t *rd)
{
    free(rd->header);
    for (size_t i = 0; i < rd->nblocks; i++)
        free(rd->blocks[i].data);
    free(rd->blocks);
}

/* Keeps m if it is one of model's records. */
static ld_err_t take(reader_t *rd, const rd_kafka_message_t *m)
{
    const char *k = m->key;
    if (!k || m->key_len <= rd->mlen + 1 ||
        memcmp(k, rd->model, rd->mlen) != 0 || k[rd->mlen] != '/')
        return LD_OK;
    const char *rest = k + rd->mlen + 1;
    size_t rlen = m->key_len - rd->mlen - 1;
    uint8_t *copy = malloc(m->len ? m->len : 1);
    if (!copy)
        return LD_ERR_NOMEM;
    if (m->len)
        memcpy(copy, m->payload, m->len);
    if (rlen == 6 && memcmp(rest, "header", 6) == 0) {
        free(rd->header);
        rd->header = copy;
        rd->hlen = m->len;
        return LD_OK;
    }
    Learnd__V1__StateRecord *rec =
        learnd__v1__state_record__unpack(NULL, m->len, copy);
    if (!rec || rec->record_case != LEARND__V1__STATE_RECORD__RECORD_BLOCK) {
        if (rec)
            learnd__v1__state_record__free_unpacked(rec, NULL);
        free(copy);
        return LD_OK; /* a stray record is not ours to judge */
    }
    uint32_t idx = rec->block->block_index;
    uint64_t seq = rec->block->commit_seq;
    learnd__v1__state_record__free_unpacked(rec, NULL);
    if (idx >= rd->nblocks) {
        size_t n = (size_t)idx + 1;
        blockv_t *b = realloc(rd->blocks, n * sizeof(*b));
        if (!b) {
            free(copy);
            return LD_ERR_NOMEM;
        }
        memset(b + rd->nblocks, 0, (n - rd->nblocks) * sizeof(*b));
        rd->blocks = b;
        rd->nblocks = n;
    }
    free(rd->blocks[idx].data);
    rd->blocks[idx] = (blockv_t){copy, m->len, seq, 1};
    return LD_OK;
}

/* Rebuilds the resume state from the newest header and its blocks. */
static ld_err_t assemble(reader_t *rd, ld_resume_t **out, char *errstr,
                         size_t errstr_size)
{
    Learnd__V1__StateRecord *rec =
        learnd__v1__state_record__unpack(NULL, rd->hlen, rd->header);
    if (!rec || rec->record_case != LEARND__V1__STATE_RECORD__RECORD_HEADER) {
        if (rec)
            learnd__v1__state_record__free_unpacked(rec, NULL);
        snprintf(errstr, errstr_size,
                 "state of model %s: header record is undecodable", rd->model);
        return LD_ERR_CORRUPT;
    }
    ld_resume_t *r = calloc(1, sizeof(*r));
    if (!r) {
        learnd__v1__state_record__free_unpacked(rec, NULL);
        return LD_ERR_NOMEM;
    }
    /* Keep only the header: detach it from its wrapper. */
    r->header = rec->header;
    rec->header = NULL;
    rec->record_case = LEARND__V1__STATE_RECORD__RECORD__NOT_SET;
    learnd__v1__state_record__free_unpacked(rec, NULL);
    const Learnd__V1__ResumeHeader *h = r->header;
    ld_err_t err = LD_ERR_CORRUPT;
    if (h->format_version != 1 ||
        h->block_encoding !=
            LEARND__V1__BLOCK_ENCODING__BLOCK_ENCODING_CHECKPOINT_CHUNKS) {
        snprintf(errstr, errstr_size,
                 "state of model %s: unsupported format %u / encoding %d",
                 rd->model, h->format_version, (int)h->block_encoding);
        goto err;
    }
    size_t total = 0;
    for (uint32_t i = 0; i < h->block_count; i++) {
        if (i >= rd->nblocks || !rd->blocks[i].present ||
            rd->blocks[i].seq != h->commit_seq) {
            snprintf(errstr, errstr_size,
                     "state of model %s: block %u of commit %llu is missing "
                     "or from another commit",
                     rd->model, i, (unsigned long long)h->commit_seq);
            goto err;
        }
        Learnd__V1__StateRecord *b = learnd__v1__state_record__unpack(
            NULL, rd->blocks[i].len, rd->blocks[i].data);
        if (!b) {
            snprintf(errstr, errstr_size, "state block %u is undecodable", i);
            goto err;
        }
        size_t bl = b->block->data.len;
        uint8_t *grown = realloc(r->ckpt, total + bl + 1);
        if (!grown) {
            learnd__v1__state_record__free_unpacked(b, NULL);
            err = LD_ERR_NOMEM;
            goto err;
        }
        r->ckpt = grown;
        memcpy(r->ckpt + total, b->block->data.data, bl);
        total += bl;
        learnd__v1__state_record__free_unpacked(b, NULL);
    }
    r->ckpt_len = total;
    *out = r;
    return LD_OK;
err:
    ld_resume_destroy(r);
    return err;
}

ld_err_t ld_state_load(const ld_strlist_t *kafka, const char *topic,
                       const char *model, int timeout_ms, ld_resume_t **out,
                       char *errstr, size_t errstr_size)
{
    *out = NULL;
    reader_t rd = {.model = model, .mlen = strlen(model)};
    ld_err_t err = LD_ERR_KAFKA;
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_partition_list_t *parts = NULL;
    char *at_end = NULL; /* per partition: read to its end */
    rd_kafka_conf_t *conf = ld_kafka_conf_new(kafka, errstr, errstr_size);
    if (!conf)
        return LD_ERR_CONFIG;
    if (ld_kafka_conf_set(conf, "isolation.level", "read_committed", errstr,
                          errstr_size) ||
        ld_kafka_conf_set(conf, "enable.partition.eof", "true", errstr,
                          errstr_size) ||
        ld_kafka_conf_set(conf, "enable.auto.commit", "false", errstr,
                          errstr_size) ||
        ld_kafka_conf_set(conf, "group.id", "learnd-state-reader", errstr,
                          errstr_size)) {
        rd_kafka_conf_destroy(conf);
        return LD_ERR_CONFIG;
    }
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, errstr_size);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        return LD_ERR_KAFKA;
    }
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_resp_err_t e = t ? rd_kafka_metadata(rk, 0, t, &md, timeout_ms)
                              : rd_kafka_last_error();
    if (t)
        rd_kafka_topic_destroy(t);
    if (e || !md || md->topic_cnt != 1 || md->topics[0].err) {
        snprintf(errstr, errstr_size, "state topic %s: %s", topic,
                 e ? rd_kafka_err2str(e)
                 : md && md->topic_cnt == 1
                     ? rd_kafka_err2str(md->topics[0].err)
                     : "no metadata");
        goto out;
    }
    int nparts = md->topics[0].partition_cnt;
    parts = rd_kafka_topic_partition_list_new(nparts);
    for (int i = 0; i < nparts; i++)
        rd_kafka_topic_partition_list_add(parts, topic, i)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    if (rd_kafka_assign(rk, parts)) {
        snprintf(errstr, errstr_size, "cannot assign the state topic");
        goto out;
    }
    int eofs = 0;
    at_end = calloc((size_t)nparts, 1);
    if (!at_end) {
        err = LD_ERR_NOMEM;
        goto out;
    }
    int64_t deadline = ld_now_mono_ms() + timeout_ms;
    while (eofs < nparts) {
        if (ld_now_mono_ms() > deadline) {
            snprintf(errstr, errstr_size,
                     "state topic %s not read to its end in %d ms", topic,
                     timeout_ms);
            err = LD_ERR_TIMEOUT;
            goto out;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (m->partition >= 0 && m->partition < nparts &&
                !at_end[m->partition]) {
                at_end[m->partition] = 1;
                eofs++;
            }
        } else if (m->err) {
            snprintf(errstr, errstr_size, "state topic %s: %s", topic,
                     rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            goto out;
        } else if ((err = take(&rd, m)) != LD_OK) {
            rd_kafka_message_destroy(m);
            goto out;
        }
        err = LD_ERR_KAFKA;
        rd_kafka_message_destroy(m);
    }
    err = rd.header ? assemble(&rd, out, errstr, errstr_size) : LD_OK;
out:
    free(at_end);
    if (md)
        rd_kafka_metadata_destroy(md);
    if (parts)
        rd_kafka_topic_partition_list_destroy(parts);
    if (rk) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    reader_free(&rd);
    return err;
}
