/* SPDX-License-Identifier: Apache-2.0 */
/* The resume state of a commit point: what save writes into the commit
 * transaction on the state topic and what restore reads back at start-up,
 * so that a restarted daemon continues exactly where the last committed
 * transaction left off (docs/ARCHITECTURE.md, "The commit protocol"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "publish/internal.h"
#include "trainer/checkpoint.h"

/* The log lines operators know keep their module. */
#define MOD "daemon"

ld_err_t ld_publisher_save_state(ld_publisher_t *p, rd_kafka_t *producer,
                                 const ld_resume_parts_t *parts)
{
    const ld_publisher_conf_t *c = &p->c;
    ld_err_t err = LD_ERR_NOMEM;
    ld_wbuf_t lab = {0}, runst = {0}, exps = {0};
    uint8_t *trig = NULL;
    size_t trig_len = 0;
    ld_buf_t head = {0};
    ld_snapshot_t *snap = NULL;
    Learnd__V1__PartitionPosition *pos = NULL, **ppos = NULL;
    if ((err = ld_resume_labeling_encode(parts->joiner, parts->assigned, &lab)))
        goto out;
    if ((err = ld_triggers_save(parts->triggers, &trig, &trig_len)))
        goto out;
    err = LD_ERR_NOMEM;
    /* Everything but the sparse rows, which go as the blocks changed since
     * the last commit (ld_state_write_blocks): no whole-model copy. */
    if (!(snap = ld_trainer_state_head(parts->trainer)))
        goto out;
    ld_ckpt_meta_t meta = {.model = c->model,
                           .version = p->ctr.version,
                           .parent_version = p->ctr.version,
                           .created_at_ms = ld_now_wall_ms(),
                           .learnd_version = c->learnd_version,
                           .hash_function = "murmur3_32",
                           .hash_seed = c->hash_seed,
                           .parent_counts = p->ctr.parent_counts};
    if ((err = ld_ckpt_encode(snap, &meta, &head)))
        goto out;
    if ((err = ld_resume_run_encode(&p->ctr, parts->trainer, parts->lineage,
                                    &runst)))
        goto out;
    err = LD_ERR_NOMEM;
    size_t npos = parts->positions(parts->opaque, &pos);
    ppos = calloc(npos ? npos : 1, sizeof(*ppos));
    if (!pos || !ppos)
        goto out;
    for (size_t i = 0; i < npos; i++)
        ppos[i] = &pos[i];
    Learnd__V1__ResumeHeader h = LEARND__V1__RESUME_HEADER__INIT;
    h.model = (char *)c->model;
    h.commit_seq = ++p->commit_seq;
    if (!p->first_commit_seq)
        p->first_commit_seq = h.commit_seq;
    h.first_commit_seq = p->first_commit_seq;
    h.committed_at_ms = ld_now_wall_ms();
    h.n_positions = npos;
    h.positions = ppos;
    h.champion_version = p->ctr.version;
    h.labeling_state = (ProtobufCBinaryData){lab.len, lab.p};
    h.triggers_state = (ProtobufCBinaryData){trig_len, trig};
    h.trainer_state = (ProtobufCBinaryData){runst.len, runst.p};
    if (parts->exp_save) {
        parts->exp_save(parts->opaque, &exps);
        if ((err = exps.err))
            goto out;
        h.experiments_state = (ProtobufCBinaryData){exps.len, exps.p};
    }
    h.model_state = (ProtobufCBinaryData){head.len, head.data};
    ld_state_kafka_t k = {producer, c->state_topic};
    uint64_t bytes = 0;
    ld_state_sink_t sink = {ld_state_emit_kafka, &k, &bytes};
    err = ld_state_write_blocks(&sink, &h, parts->trainer, &p->gens);
    if (!err) {
        ld_trainer_dirty_clear(parts->trainer);
        p->state_bytes = bytes;
        ld_log(LD_LOG_DEBUG, MOD,
               "msg=\"resume state written\" commit_seq=%llu bytes=%llu",
               (unsigned long long)h.commit_seq, (unsigned long long)bytes);
    }
out:
    free(pos);
    free(ppos);
    free(head.data);
    ld_snapshot_destroy(snap);
    free(trig);
    ld_wbuf_free(&lab);
    ld_wbuf_free(&runst);
    ld_wbuf_free(&exps);
    if (err)
        ld_log(LD_LOG_ERR, MOD,
               "msg=\"cannot write the resume state\" "
               "err=\"%s\"",
               ld_err_str(err));
    return err;
}

uint64_t ld_publisher_state_bytes(const ld_publisher_t *p)
{
    return p->state_bytes;
}

/* The champion scores every example next to the model: without it the
 * triggers would decide differently than before the restart. */
static void restore_champion(ld_publisher_t *p, ld_trainer_t *t)
{
    char path[1024];
    /* Killed between a commit and the store's promotion of what it
     * published: those versions are committed, the others stay staged. */
    char pwhy[512];
    if (p->c.store_dir && p->c.store_dir[0] &&
        ld_publish_store_promote(p->c.store_dir, p->c.model, p->ctr.version,
                                 p->c.store_keep, pwhy, sizeof(pwhy)) != LD_OK)
        ld_log(LD_LOG_WARN, MOD,
               "msg=\"cannot promote committed checkpoints in the store\" "
               "err=%s",
               ld_log_q(pwhy));
    snprintf(path, sizeof(path), "%s/%s/%llu.ckpt", p->c.store_dir, p->c.model,
             (unsigned long long)p->ctr.version);
    ld_ckpt_t *champ = NULL;
    char why[512];
    if (ld_ckpt_read_file(path, &champ, why, sizeof(why)) ||
        ld_ckpt_champion_set(t, champ, why, sizeof(why))) {
        ld_log(LD_LOG_WARN, MOD,
               "msg=\"champion checkpoint unavailable: shadow scores "
               "restart empty\" path=%s err=%s",
               ld_log_q(path), ld_log_q(why));
    }
    ld_ckpt_destroy(champ);
}

/* The trainer from a format 1 state (one checkpoint) or a format 2 to 4
 * one (a head plus its blocks and deltas, whose generations then become
 * this run's). */
static ld_err_t restore_trainer(ld_publisher_t *p, ld_resume_t *rs,
                                ld_trainer_t *t, char *errstr, size_t size)
{
    const Learnd__V1__ResumeHeader *h = rs->header;
    int v2 = h->format_version >= 2; /* a head plus blocks (and deltas) */
    ld_ckpt_t *ck = NULL;
    ld_snapshot_t *snap = NULL;
    ld_err_t err =
        v2 ? ld_ckpt_decode_head(h->model_state.data, h->model_state.len, &ck,
                                 errstr, size)
           : ld_ckpt_decode(rs->ckpt, rs->ckpt_len, &ck, errstr, size);
    if (err)
        goto out;
    err = LD_ERR_NOMEM;
    if (!(snap = ld_ckpt_snapshot(ck)))
        goto out;
    if (v2 && (err = ld_resume_fill_sparse(rs, snap, errstr, size)))
        goto out;
    if ((err = ld_trainer_restore(t, snap, errstr, size)))
        goto out;
    /* The topic holds this state: only what changes from here on needs
     * writing, as long as the blocks are the trainer's; the deltas it
     * lists are retired by this run's commits in any case. */
    int same = v2 && h->block_size == ld_trainer_state_block_slots(t) &&
               rs->nblocks == ld_trainer_state_blocks(t);
    if ((err = ld_state_gens_adopt(&p->gens, rs, same)))
        goto out;
    if (same)
        ld_trainer_dirty_clear(t);
    err = LD_OK;
out:
    ld_snapshot_destroy(snap);
    ld_ckpt_destroy(ck);
    return err;
}

ld_err_t ld_publisher_restore_state(ld_publisher_t *p,
                                    const ld_strlist_t *kafka,
                                    const ld_resume_parts_t *parts,
                                    char *errstr, size_t size)
{
    ld_resume_t *rs = NULL;
    ld_err_t err = ld_state_load(kafka, p->c.state_topic, p->c.model, 60000,
                                 &rs, errstr, size);
    if (err || !rs)
        return err;
    const Learnd__V1__ResumeHeader *h = rs->header;
    ld_ckpt_t *ck = NULL;
    ld_snapshot_t *snap = NULL;
    if ((err = restore_trainer(p, rs, parts->trainer, errstr, size)))
        goto out;
    err = ld_resume_run_decode(h->trainer_state.data, h->trainer_state.len,
                               &p->ctr, parts->trainer, parts->lineage,
                               parts->topics, 2);
    if (err) {
        snprintf(errstr, size,
                 "resume state: daemon counters or queued "
                 "examples refused (%s)",
                 ld_err_str(err));
        goto out;
    }
    if (h->triggers_state.len &&
        (err = ld_triggers_load(parts->triggers, h->triggers_state.data,
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
    if (parts->exp_load &&
        (err = parts->exp_load(parts->opaque, h->experiments_state.data,
                               h->experiments_state.len, errstr, size)))
        goto out;
    if ((err = ld_resume_labeling_load(parts->joiner, h->labeling_state.data,
                                       h->labeling_state.len))) {
        snprintf(errstr, size, "resume state: joiner record refused");
        goto out;
    }
    if (p->ctr.version)
        restore_champion(p, parts->trainer);
    p->commit_seq = h->commit_seq;
    ld_log(LD_LOG_NOTICE, MOD,
           "msg=\"resumed from committed state\" model=%s commit_seq=%llu "
           "champion_version=%llu",
           p->c.model, (unsigned long long)h->commit_seq,
           (unsigned long long)p->ctr.version);
    err = LD_OK;
out:
    ld_snapshot_destroy(snap);
    ld_ckpt_destroy(ck);
    ld_resume_destroy(rs);
    return err;
}

uint64_t ld_publisher_commit_seq(const ld_publisher_t *p)
{
    return p->commit_seq;
}
