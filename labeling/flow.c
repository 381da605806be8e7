/* SPDX-License-Identifier: Apache-2.0 */
/* The joiner's flow: watermark advances of idle partitions (recorded, so
 * that a restart or a replay repeats them), pausing the sides ahead of the
 * watermark when the bound is hit, and the stats. */
#include "labeling/joiner_impl.h"

void ld_joiner_idle_advance(ld_joiner_t *j, int64_t now_ms,
                            ld_joiner_advance_cb *cb, void *opaque)
{
    if (j->c.idle_timeout_ms <= 0)
        return;
    int64_t busy_min = INT64_MAX, all_max = INT64_MIN;
    int nbusy = 0;
    for (size_t p = 0; p < j->nparts; p++) {
        if (!j->parts[p].assigned)
            continue;
        for (int k = 0; k < 2; k++) {
            side_t *s = &j->parts[p].s[k];
            if (s->seen || s->last_active == INT64_MIN) {
                s->last_active = now_ms;
                s->seen = 0;
            }
            if (s->wm > all_max)
                all_max = s->wm;
            /* A side still re-reading, or with loaded advances not yet
             * reached, has records coming: never idle. */
            int idle = now_ms - s->last_active >= j->c.idle_timeout_ms &&
                       s->next_off >= s->replay_until && s->adv_next >= s->nadv;
            if (!idle) {
                nbusy++;
                if (s->wm < busy_min)
                    busy_min = s->wm;
            }
        }
    }
    int64_t target = nbusy ? busy_min : all_max;
    if (target == INT64_MIN)
        return;
    for (size_t p = 0; p < j->nparts; p++) {
        if (!j->parts[p].assigned)
            continue;
        for (int k = 0; k < 2; k++) {
            side_t *s = &j->parts[p].s[k];
            int idle = now_ms - s->last_active >= j->c.idle_timeout_ms &&
                       s->next_off >= s->replay_until && s->adv_next >= s->nadv;
            if (!idle || s->wm >= target)
                continue;
            ld_wm_advance_t a = {(ld_topic_kind_t)k, (int32_t)p, s->next_off,
                                 target};
            if (adv_record(s, s->next_off, target) != LD_OK)
                continue; /* not recorded: not applied */
            raise_wm(j, s, target);
            j->st.idle_advances++;
            ld_log(LD_LOG_INFO, "join",
                   "msg=\"idle partition watermark advanced\" topic=%s "
                   "partition=%zu offset=%lld watermark=%lld",
                   k ? "labels" : "events", p, (long long)s->next_off,
                   (long long)target);
            if (cb)
                cb(&a, opaque);
        }
    }
}

void ld_joiner_note_backlog(ld_joiner_t *j, ld_topic_kind_t kind,
                            int32_t partition)
{
    if (partition < 0 || (size_t)partition >= j->nparts ||
        !j->parts[partition].assigned ||
        (kind != LD_TOPIC_EVENTS && kind != LD_TOPIC_LABELS))
        return;
    j->parts[partition].s[kind].seen = 1;
}

ld_err_t ld_joiner_apply_advance(ld_joiner_t *j, const ld_wm_advance_t *adv)
{
    part_t *pt = adv ? get_part(j, adv->partition) : NULL;
    if (!pt || (adv->kind != LD_TOPIC_EVENTS && adv->kind != LD_TOPIC_LABELS))
        return LD_ERR_INVAL;
    side_t *s = &pt->s[adv->kind];
    ld_err_t err = adv_record(s, adv->offset, adv->watermark_ms);
    if (err)
        return err;
    raise_wm(j, s, adv->watermark_ms);
    return LD_OK;
}

void ld_joiner_flow(ld_joiner_t *j, ld_joiner_flow_cb *cb, void *opaque)
{
    int64_t W = get_W(j);
    uint64_t npaused = 0;
    /* Pause = watermark alignment: hold back the sides ahead of the global
     * watermark so the laggards that hold it can catch up and free space. */
    int on = j->c.at_bound == LD_BOUND_PAUSE && j->bound_hit;
    for (size_t p = 0; p < j->nparts; p++) {
        if (!j->parts[p].assigned)
            continue;
        for (int k = 0; k < 2; k++) {
            side_t *s = &j->parts[p].s[k];
            int want = on && s->wm > W;
            if (want != s->paused) {
                s->paused = want;
                if (cb)
                    cb((ld_topic_kind_t)k, (int32_t)p, want, opaque);
            }
            npaused += (uint64_t)want;
        }
    }
    j->st.paused = npaused;
}

void ld_joiner_stats(ld_joiner_t *j, ld_joiner_stats_t *out)
{
    j->st.watermark_ms = get_W(j);
    j->st.watermark_max_ms = INT64_MIN;
    for (size_t p = 0; p < j->nparts; p++)
        for (int k = 0; k < 2 && j->parts[p].assigned; k++)
            if (j->parts[p].s[k].wm > j->st.watermark_max_ms)
                j->st.watermark_max_ms = j->parts[p].s[k].wm;
    j->st.bytes_entries = j->slab.in_use;
    uint64_t b = j->slab.reserved + sizeof(*j);
    b += (j->evt.cap + j->lbt.cap) * (sizeof(uint32_t) + sizeof(uint16_t));
    b += (j->evh.cap + j->lbh.cap) * (sizeof(int64_t) + sizeof(uint32_t));
    b += j->qcap * sizeof(*j->qh);
    for (size_t p = 0; p < j->nparts; p++)
        b += (uint64_t)j->parts[p].q.cap * (sizeof(int64_t) + sizeof(uint32_t));
    b += j->fifo_cap * sizeof(fifo_ent_t) + j->nparts * sizeof(part_t);
    b += j->scratch.cap * 2 * sizeof(uint64_t) + j->scratch.bits_cap;
    b += (uint64_t)j->ocap_sparse * 8 + (uint64_t)j->ocap_dense * 4;
    for (size_t p = 0; p < j->nparts; p++)
        for (int k = 0; k < 2; k++)
            b += j->parts[p].s[k].ring_cap * sizeof(blk_t) +
                 j->parts[p].s[k].cap_adv * sizeof(adv_t);
    j->st.bytes_total = b;
    *out = j->st;
}
