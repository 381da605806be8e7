/* SPDX-License-Identifier: Apache-2.0 */
/* Wrote state_v1.bin, a trigger resume state of STATE_VERSION 1, with
 * triggers/ and common/ of commit 114d599 (before the drift fix): compile
 * this file with that tree's triggers/ conf.c, stats.c, sketch.c,
 * detector.c and triggers.c, link libld_common.a, jansson, libm and
 * pthread, run it with the output path.
 *
 * The stream and config are feed_mixed and mixed_conf of test_triggers.c,
 * stopped at example 12345. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "triggers/triggers.h"
static uint64_t rng_state;
static double urand(void)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}
static double nrand(void)
{
    double u1 = urand(), u2 = urand();
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
static void feed_mixed(ld_triggers_t *t, int from, int to)
{
    float x[8];
    uint32_t idx[2];
    float val[2] = {1, 1};
    for (int i = from; i < to; i++) {
        uint64_t save = rng_state;
        rng_state = (uint64_t)i * 7919 + 1;
        int late = i >= 12000;
        for (int f = 0; f < 8; f++)
            x[f] = (float)(nrand() + (late && f < 3 ? 1.0 : 0.0));
        idx[0] = (uint32_t)(urand() * 20);
        idx[1] = 100 + (uint32_t)(urand() * 5000);
        float y = urand() < (late ? 0.5 : 0.2) ? 1.0f : 0.0f;
        float p = (float)(0.1 + 0.3 * urand());
        float champ = (float)(0.15 + 0.3 * urand());
        ld_features_t fx = {
            .idx = idx, .val = val, .dense = x, .nnz = 2, .ndense = 8};
        ld_trigger_obs_t o = {.x = &fx,
                              .label = y,
                              .sample_type = y > 0.5f ? LD_SAMPLE_POS
                                                      : LD_SAMPLE_DEFAULT_NEG,
                              .event_time_ms = 1700000000000LL + i * 250LL,
                              .p_challenger = p,
                              .p_champion = champ};
        if (ld_triggers_observe_obs(t, &o) != LD_OK)
            exit(1);
        rng_state = save;
    }
}
int main(int argc, char **argv)
{
    ld_triggers_conf_t c;
    char why[256];
    memset(&c, 0, sizeof(c));
    if (ld_conf_set_defaults(&ld_triggers_conf_section, &c, why, sizeof(why)))
        return 1;
    c.window_size = 1000;
    c.drift_sample_size = 256;
    c.volume_examples = 5000;
    c.time_every_ms = 1000000;
    c.time.action = LD_TRIGGER_ACTION_ALERT;
    c.gate_min_samples = 500;
    c.gate_window = 2000;
    c.gate_tolerance = 0.5;
    c.perf.cooldown_ms = 0;
    c.drift.cooldown_ms = 0;
    ld_triggers_t *t = ld_triggers_new(&c, "ctr-model", "learnd.checkpoints", 0,
                                       why, sizeof(why));
    feed_mixed(t, 0, 12345);
    uint8_t *st;
    size_t len;
    if (ld_triggers_save(t, &st, &len))
        return 1;
    FILE *f = fopen(argv[1], "wb");
    fwrite(st, 1, len, f);
    fclose(f);
    printf("%zu bytes, %llu decisions queued\n", len,
           (unsigned long long)ld_triggers_pending(t));
    return 0;
}
