/* SPDX-License-Identifier: Apache-2.0 */
/* Cost of ld_triggers_observe per matured example with the default config,
 * for scores only and with 40 dense + 40 hashed features (text only). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "triggers/triggers.h"

static uint64_t rng = 1;

static double urand(void)
{
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(rng >> 11) / 9007199254740992.0;
}

static int run(const char *name, int with_x, int n)
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
    ld_triggers_t *t =
        ld_triggers_new(&c, "bench", "learnd.checkpoints", 1, why, sizeof(why));
    if (!t) {
        fprintf(stderr, "%s\n", why);
        return 1;
    }
    enum { ND = 40, NH = 40, POOL = 4096 };
    float *dense = malloc(sizeof(float) * ND * POOL);
    uint32_t *idx = malloc(sizeof(uint32_t) * NH * POOL);
    float val[NH];
    for (int i = 0; i < ND * POOL; i++)
        dense[i] = (float)urand();
    for (int i = 0; i < NH * POOL; i++)
        idx[i] = (uint32_t)(urand() * (1 << 22));
    for (int i = 0; i < NH; i++)
        val[i] = 1.0f;
    size_t fired = 0;
    int64_t t0 = ld_now_mono_ms();
    for (int i = 0; i < n; i++) {
        int k = i % POOL;
        ld_features_t x = {.idx = idx + NH * k,
                           .val = val,
                           .dense = dense + ND * k,
                           .nnz = NH,
                           .ndense = ND};
        float y = urand() < 0.3 ? 1.0f : 0.0f;
        ld_trigger_obs_t o = {.x = with_x ? &x : NULL,
                              .label = y,
                              .sample_type = y > 0.5f ? LD_SAMPLE_POS
                                                      : LD_SAMPLE_DEFAULT_NEG,
                              .event_time_ms = i * 2LL,
                              .p_challenger = (float)urand(),
                              .p_champion = (float)urand()};
        if (ld_triggers_observe_obs(t, &o))
            return 1;
        ld_trigger_decision_t *d;
        while ((d = ld_triggers_poll(t, 0))) {
            fired++;
            ld_trigger_decision_destroy(d);
        }
    }
    int64_t ms = ld_now_mono_ms() - t0;
    uint8_t *st;
    size_t len = 0;
    if (ld_triggers_save(t, &st, &len) == LD_OK)
        free(st);
    printf("triggers %-22s %9d examples %7.1f ns/example %8.0f examples/s "
           "%zu decisions, state %zu bytes\n",
           name, n, (double)ms * 1e6 / n, ms ? n * 1000.0 / (double)ms : 0.0,
           fired, len);
    ld_triggers_destroy(t);
    free(dense);
    free(idx);
    return 0;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 2000000;
    ld_log_set_level(LD_LOG_WARN);
    return run("scores-only", 0, n) || run("40-dense-40-hashed", 1, n);
}
