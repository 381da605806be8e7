/* SPDX-License-Identifier: Apache-2.0 */
/* Cost of ld_triggers_observe per matured example: the default config with
 * scores only, with 20 dense + 40 hashed features (the daemon's shape) and
 * 40 + 40, and with drift or every kind off (text only). Each line ends
 * with a fingerprint of the decisions' JSON events and the final resume
 * state, so two builds can be checked for bit-identical behaviour. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "triggers/triggers.h"

static uint64_t rng = 1;

static double urand(void)
{
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(rng >> 11) / 9007199254740992.0;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

static double now_ns(void)
{
    struct timespec ts;
    /* CPU time of this process: the machine is shared, and wall time
     * counts the time other jobs hold the core. */
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

enum { NH = 40, POOL = 4096 };

typedef struct bcase {
    const char *name;
    int nd; /* dense features per example; -1 = scores only */
    int drift, others;
} bcase_t;

static int run(const bcase_t *bc, int n)
{
    ld_triggers_conf_t c;
    char why[256];
    memset(&c, 0, sizeof(c));
    if (ld_conf_set_defaults(&ld_triggers_conf_section, &c, why, sizeof(why))) {
        fprintf(stderr, "%s\n", why);
        return 1;
    }
    c.time.action = c.volume.action = LD_TRIGGER_ACTION_ALERT;
    c.perf.action = c.drift.action = LD_TRIGGER_ACTION_ALERT;
    c.drift.enabled = bc->drift;
    c.time.enabled = c.volume.enabled = c.perf.enabled = bc->others;
    ld_triggers_t *t =
        ld_triggers_new(&c, "bench", "learnd.checkpoints", 1, why, sizeof(why));
    if (!t) {
        fprintf(stderr, "%s\n", why);
        return 1;
    }
    int nd = bc->nd > 0 ? bc->nd : 0;
    /* Inputs drawn before the clock starts: only the triggers are timed. */
    rng = 1;
    float *dense = malloc(sizeof(float) * (size_t)(nd ? nd : 1) * POOL * 2);
    uint32_t *idx = malloc(sizeof(uint32_t) * NH * POOL);
    float *y = malloc(sizeof(float) * POOL), *pc = malloc(sizeof(float) * POOL);
    float *pp = malloc(sizeof(float) * POOL);
    float val[NH];
    for (int i = 0; i < nd * POOL; i++)
        dense[i] = (float)urand();
    /* The second half of the stream: three quarters of the dense features
     * shifted, so drift has something to find. */
    for (int i = 0; i < nd * POOL; i++)
        dense[nd * POOL + i] = dense[i] + (i % nd < 3 * nd / 4 ? 0.3f : 0.0f);
    for (int i = 0; i < NH * POOL; i++)
        idx[i] = (uint32_t)(urand() * (1 << 22));
    for (int i = 0; i < POOL; i++) {
        y[i] = urand() < 0.3 ? 1.0f : 0.0f;
        pc[i] = (float)urand();
        pp[i] = (float)urand();
    }
    for (int i = 0; i < NH; i++)
        val[i] = 1.0f;
    size_t fired = 0;
    uint64_t fp = 0xcbf29ce484222325ULL;
    double t0 = now_ns();
    for (int i = 0; i < n; i++) {
        int k = i % POOL;
        /* Scores drift slowly against labels so every kind has work. */
        int j = (i / 7) % POOL;
        ld_features_t x = {.idx = idx + NH * k,
                           .val = val,
                           .dense = dense + nd * (k + (i >= n / 2) * POOL),
                           .nnz = NH,
                           .ndense = (uint32_t)nd};
        ld_trigger_obs_t o = {
            .x = bc->nd >= 0 ? &x : NULL,
            .label = y[k],
            .sample_type = y[k] > 0.5f ? LD_SAMPLE_POS : LD_SAMPLE_DEFAULT_NEG,
            .event_time_ms = i * 2LL,
            .p_challenger = pc[j],
            .p_champion = pp[k]};
        if (ld_triggers_observe_obs(t, &o))
            return 1;
        ld_trigger_decision_t *d;
        while ((d = ld_triggers_poll(t, 0))) {
            fired++;
            uint8_t *ev;
            size_t len;
            static const uint8_t sha[32];
            ld_trigger_publication_t pub = {0, 1, NULL, sha};
            if (ld_trigger_event_encode(
                    d,
                    ld_trigger_decision_verdict(d) == LD_TRIGGER_VERDICT_PASS
                        ? &pub
                        : NULL,
                    0, LD_TRIGGER_FORMAT_JSON, &ev, &len) == LD_OK) {
                fp = fnv(fp, ev, len);
                free(ev);
            }
            ld_trigger_decision_destroy(d);
        }
    }
    double ns = now_ns() - t0;
    uint8_t *st;
    size_t len = 0;
    uint64_t sfp = 0xcbf29ce484222325ULL;
    if (ld_triggers_save(t, &st, &len) == LD_OK) {
        sfp = fnv(sfp, st, len);
        free(st);
    }
    printf("triggers %-26s %8d examples %7.1f cpu-ns/example %3zu decisions "
           "events %016llx state %7zu bytes %016llx\n",
           bc->name, n, ns / n, fired, (unsigned long long)fp, len,
           (unsigned long long)sfp);
    ld_triggers_destroy(t);
    free(dense);
    free(idx);
    free(y);
    free(pc);
    free(pp);
    return 0;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 2000000;
    /* Optional second argument: run only the case of that name. */
    const char *only = argc > 2 ? argv[2] : NULL;
    static const bcase_t cases[] = {
        {"scores-only", -1, 1, 1},
        {"20-dense-40-hashed", 20, 1, 1},
        {"40-dense-40-hashed", 40, 1, 1},
        {"20-dense-40-hashed-nodrift", 20, 0, 1},
        {"20-dense-40-hashed-all-off", 20, 0, 0},
    };
    ld_log_set_level(LD_LOG_WARN);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if ((!only || strcmp(only, cases[i].name) == 0) && run(&cases[i], n))
            return 1;
    return 0;
}
