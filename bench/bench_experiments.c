/* SPDX-License-Identifier: Apache-2.0 */
/* Experiments: CPU time per matured example through the daemon's path
 * (ld_exp_set_serve at ingestion, ld_exp_set_mature at release) with 4
 * experiments running -- ab, canary with both guardrails, shadow and a
 * 3-arm bandit publishing weights every 10 s of event time -- and with
 * none, and the resume state's size. Prints text, never pass/fail.
 *
 * usage: bench_experiments [EXAMPLES [WAITING]]   (defaults 2 000 000 and
 *        2 000; bench_e2e's daemon keeps ~12 000 waiting) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "experiments/experiments.h"

static double cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double unit(uint64_t i, uint64_t salt)
{
    return (double)(mix(i * 0x9e3779b97f4a7c15ull + salt) >> 11) * 0x1.0p-53;
}

static void spec(ld_exp_spec_t *s, const char *name, int type, const char *a,
                 const char *b, const char *c)
{
    ld_exp_spec_init(s, name, type);
    const char *v[3] = {a, b, c};
    for (size_t i = 0; i < 3 && v[i]; i++)
        snprintf(s->variants[s->nvariants++], LD_EXP_NAME_MAX, "%s", v[i]);
    s->max_samples = INT64_MAX / 2; /* none ends: every example is tested */
    s->alpha = 1e-9;                /* nor decides */
}

static uint64_t lag = 2000; /* labels mature WAITING examples later */

static double run(const ld_exp_spec_t *specs, size_t n, uint64_t examples,
                  size_t *state_bytes)
{
    char err[256];
    ld_exp_set_t *set = ld_exp_set_new(specs, n, err, sizeof(err));
    if (!set) {
        fprintf(stderr, "bench_experiments: %s\n", err);
        exit(1);
    }
    ld_exp_set_horizon(set, (int64_t)lag * 10 + 60000); /* none evicted */
    int var[3] = {ld_exp_set_variant(set, "v1", 2),
                  ld_exp_set_variant(set, "v2", 2),
                  ld_exp_set_variant(set, "v3", 2)};
    int shadow = var[1];
    double t0 = cpu_ns();
    for (uint64_t i = 0; i < examples + lag; i++) {
        if (i < examples) {
            double u = unit(i, 1), p = 0.05 + 0.1 * unit(i, 2);
            ld_exp_served_t sv = {var[u < 0.45  ? 0
                                      : u < 0.9 ? 1
                                                : 2],
                                  p,
                                  0.45,
                                  1,
                                  {{shadow, p * 0.9}}};
            ld_exp_set_serve(set, (int32_t)(i % 8), (int64_t)(i / 8),
                             (int64_t)i * 5, &sv);
        }
        if (i >= lag) {
            uint64_t j = i - lag;
            ld_exp_set_mature(set, (int32_t)(j % 8), (int64_t)(j / 8),
                              unit(j, 3) < 0.1 ? 1.0 : 0.0, (int64_t)j * 5);
            ld_exp_set_clear(set); /* the commit point's part */
        }
    }
    double ns = (cpu_ns() - t0) / (double)examples;
    ld_wbuf_t w = {0};
    ld_exp_set_save(set, &w);
    *state_bytes = w.len;
    ld_wbuf_free(&w);
    ld_exp_set_destroy(set);
    return ns;
}

int main(int argc, char **argv)
{
    uint64_t examples = argc > 1 ? strtoull(argv[1], NULL, 10) : 2000000;
    if (argc > 2)
        lag = strtoull(argv[2], NULL, 10);
    ld_exp_spec_t s[4];
    spec(&s[0], "ab", LD_EXP_AB, "v1", "v2", NULL);
    spec(&s[1], "canary", LD_EXP_CANARY, "v1", "v3", NULL);
    s[1].guard_calibration = 0.5;
    s[1].guard_label_min = 0.0;
    spec(&s[2], "shadow", LD_EXP_SHADOW, "v1", "v2", NULL);
    spec(&s[3], "bandit", LD_EXP_BANDIT, "v1", "v2", "v3");
    s[3].interval_ms = 10000;
    size_t b0, b4;
    /* a warm-up pass, then the measured ones */
    run(s, 4, examples / 10, &b4);
    double none = run(s, 0, examples, &b0);
    double four = run(s, 4, examples, &b4);
    printf("experiments: %llu matured examples, %llu waiting at any time\n",
           (unsigned long long)examples, (unsigned long long)lag);
    printf("  no experiment (per-variant outcomes only): %6.1f CPU-ns per "
           "example, state %zu bytes\n",
           none, b0);
    printf("  4 experiments (ab, canary+guards, shadow, bandit): %6.1f "
           "CPU-ns per example, state %zu bytes\n",
           four, b4);
    return 0;
}
