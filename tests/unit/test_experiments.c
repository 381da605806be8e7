/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of experiments/: the mixture SPRT against a hand computation,
 * its error rates and power by simulation with fixed seeds, canary
 * guardrails, the paired shadow test, Thompson regret with and without
 * delayed rewards, bounded variants, drops, JSON and the resume state. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "experiments/experiments.h"
#include "schemas/learnd.pb-c.h"

/* ---- Helpers ------------------------------------------------------------ */

/* cmocka 1.1 has no double assertion: |a - b| <= tol, NaN never equal */
#define assert_double_equal(a, b, tol) assert_true(fabs((a) - (b)) <= (tol))

/* The simulations' own generator (splitmix64), independent of the one the
 * module samples its posteriors with. */
typedef struct sim {
    uint64_t x;
} sim_t;

static uint64_t sim_next(sim_t *s)
{
    uint64_t z = (s->x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double sim_u(sim_t *s)
{
    return (double)(sim_next(s) >> 11) * 0x1.0p-53;
}

static double sim_normal(sim_t *s)
{
    double u = sim_u(s), v = sim_u(s);
    return sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v);
}

static ld_exp_spec_t two_arm(const char *name, int type)
{
    ld_exp_spec_t s;
    ld_exp_spec_init(&s, name, type);
    snprintf(s.variants[0], sizeof(s.variants[0]), "%s",
             type == LD_EXP_SHADOW ? "served" : "control");
    snprintf(s.variants[1], sizeof(s.variants[1]), "%s",
             type == LD_EXP_SHADOW ? "shadow" : "treatment");
    s.nvariants = 2;
    return s;
}

typedef struct outcome {
    int verdict;
    uint64_t n;       /* examples in the test when it decided */
    uint64_t n_treat; /* of them served by the treatment */
    char reason[48];
} outcome_t;

/* One ab/canary experiment on Bernoulli labels: each example goes to the
 * treatment with probability share, its label is 1 with probability pc or
 * pt, the score (when score_mult > 0) is score_mult * the arm's rate. Runs
 * until a verdict. */
static outcome_t run_two(const ld_exp_spec_t *spec, double pc, double pt,
                         double share, double score_mult, uint64_t seed)
{
    char err[256];
    ld_exp_set_t *set = ld_exp_set_new(spec, 1, err, sizeof(err));
    assert_non_null(set);
    int vc = ld_exp_set_variant(set, "control", 7);
    int vt = ld_exp_set_variant(set, "treatment", 9);
    sim_t r = {seed};
    outcome_t o = {LD_EXP_CONTINUE, 0, 0, ""};
    for (uint64_t i = 0; o.verdict == LD_EXP_CONTINUE; i++) {
        int treat = sim_u(&r) < share;
        double p = treat ? pt : pc;
        ld_exp_obs_t obs = {treat ? vt : vc,
                            sim_u(&r) < p ? 1.0 : 0.0,
                            score_mult > 0 ? score_mult * p : NAN,
                            NAN,
                            NULL,
                            0,
                            (int64_t)i};
        o.n_treat += (uint64_t)treat;
        if (ld_exp_set_observe(set, &obs)) {
            size_t n;
            const ld_exp_decision_t *d = ld_exp_set_pending(set, &n);
            assert_int_equal(n, 1);
            o.verdict = d->verdict;
            o.n = d->arm[0].n + d->arm[1].n;
            snprintf(o.reason, sizeof(o.reason), "%s", d->reason);
            assert_int_equal(d->seq, 1);
        }
    }
    ld_exp_set_destroy(set);
    return o;
}

/* ---- The test statistic ------------------------------------------------- */

static void test_msprt_matches_hand_computation(void **state)
{
    (void)state;
    ld_exp_msprt_t m;
    /* python: 0.5*log(V/(V+t2)) + t2*e^2/(2V(V+t2)), V=1e-5, tau=.005 */
    assert_int_equal(ld_exp_msprt(0.01, 1e-5, 0.005, 0.05, &m), LD_OK);
    assert_double_equal(m.log_lr, 2.945047087180887, 1e-12);
    assert_double_equal(m.threshold, 2.995732273553991, 1e-12);
    assert_double_equal(m.half, 0.010070709270872976, 1e-12);
    assert_int_equal(m.reject, 0); /* just inside: 0 is in the interval */
    assert_int_equal(ld_exp_msprt(0.0101, 1e-5, 0.005, 0.05, &m), LD_OK);
    assert_int_equal(m.reject, 1);
    /* the interval's edge is where Lambda meets 1/alpha */
    assert_int_equal(ld_exp_msprt(0.010070709270872976, 1e-5, 0.005, 0.05, &m),
                     LD_OK);
    assert_double_equal(m.log_lr, m.threshold, 1e-9);
    assert_int_equal(ld_exp_msprt(0.01, 0, 0.005, 0.05, &m), LD_ERR_INVAL);
    assert_int_equal(ld_exp_msprt(0.01, 1e-5, 0, 0.05, &m), LD_ERR_INVAL);
}

/* ---- Error rates by simulation ----------------------------------------- */

/* 500 A/A experiments (10 % base rate both arms, 50/50), each looked at
 * after every window of 1000 examples up to 100 000: any PROMOTE or
 * ROLLBACK is a false positive. Their rate must stay within alpha plus
 * three binomial standard errors of alpha at 500 runs (0.0292). A fixed
 * horizon z-test looked at 100 times would be near 0.4. */
static void test_aa_false_positive_rate(void **state)
{
    (void)state;
    const int runs = 500;
    ld_exp_spec_t s = two_arm("aa", LD_EXP_AB);
    s.max_samples = 100000;
    int fp = 0;
    for (int i = 0; i < runs; i++) {
        outcome_t o = run_two(&s, 0.10, 0.10, 0.5, 0, 1000 + (uint64_t)i);
        assert_true(o.verdict != LD_EXP_CONTINUE);
        if (o.verdict == LD_EXP_PROMOTE || o.verdict == LD_EXP_ROLLBACK)
            fp++;
        else
            assert_string_equal(o.reason, "cap");
    }
    double margin = 3.0 * sqrt(s.alpha * (1 - s.alpha) / runs);
    double rate = (double)fp / runs;
    printf("A/A: %d of %d false positives (%.4f), bound %.4f\n", fp, runs, rate,
           s.alpha + margin);
    assert_true(rate <= s.alpha + margin);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* A true 5 % relative lift at a 10 % base rate (0.100 -> 0.105), the
 * min_effect set to that lift (0.005): PROMOTE in >= 80 % of 200 runs by
 * 200 000 examples (100 000 per arm). A fixed-horizon z-test at the same
 * alpha and power needs 115 500 (57 800 per arm) but may be looked at
 * once; 1.7x is the price of looking after every window. */
static void test_power_five_percent_lift(void **state)
{
    (void)state;
    const int runs = 200;
    const uint64_t stated = 200000;
    ld_exp_spec_t s = two_arm("lift", LD_EXP_AB);
    s.max_samples = 2000000;
    uint64_t at[200];
    int promoted_by_stated = 0, rollbacks = 0;
    for (int i = 0; i < runs; i++) {
        outcome_t o = run_two(&s, 0.100, 0.105, 0.5, 0, 7000 + (uint64_t)i);
        at[i] = o.verdict == LD_EXP_PROMOTE ? o.n : UINT64_MAX;
        rollbacks += o.verdict == LD_EXP_ROLLBACK;
        promoted_by_stated += o.verdict == LD_EXP_PROMOTE && o.n <= stated;
    }
    qsort(at, (size_t)runs, sizeof(at[0]), cmp_u64);
    printf("power: %d of %d PROMOTE by %llu examples; median n %llu, 80th "
           "percentile %llu; %d ROLLBACK\n",
           promoted_by_stated, runs, (unsigned long long)stated,
           (unsigned long long)at[runs / 2],
           (unsigned long long)at[runs * 8 / 10 - 1], rollbacks);
    assert_true(promoted_by_stated >= runs * 8 / 10);
    assert_int_equal(rollbacks, 0);
}

/* A canary 20 % worse (0.10 -> 0.08) on 20 % of the traffic rolls back by
 * 6 000 canary examples in >= 95 % of 200 runs, and never promotes. */
static void test_canary_twenty_percent_worse_rolls_back(void **state)
{
    (void)state;
    const int runs = 200;
    const uint64_t stated = 6000;
    ld_exp_spec_t s = two_arm("canary", LD_EXP_CANARY);
    s.min_effect = 0.01;
    s.noninferiority = 0.005;
    s.max_samples = 200000;
    int in_time = 0;
    uint64_t worst = 0;
    for (int i = 0; i < runs; i++) {
        outcome_t o = run_two(&s, 0.10, 0.08, 0.2, 0, 90000 + (uint64_t)i);
        assert_int_equal(o.verdict, LD_EXP_ROLLBACK);
        if (o.n_treat <= stated)
            in_time++;
        if (o.n_treat > worst)
            worst = o.n_treat;
    }
    printf("canary: %d of %d rolled back by %llu canary examples (worst "
           "%llu)\n",
           in_time, runs, (unsigned long long)stated,
           (unsigned long long)worst);
    assert_true(in_time >= runs * 95 / 100);
}

/* Guardrails roll back a canary whose label rate equals the control's
 * (so the comparison alone would never decide) but whose scores are
 * twice too high, or whose label mean is under the floor. */
static void test_canary_guardrails(void **state)
{
    (void)state;
    ld_exp_spec_t s = two_arm("guard", LD_EXP_CANARY);
    s.guard_calibration = 0.02;
    outcome_t o = run_two(&s, 0.10, 0.10, 0.5, 2.0, 42);
    assert_int_equal(o.verdict, LD_EXP_ROLLBACK);
    assert_string_equal(o.reason, "guard_calibration");
    assert_true(o.n <= 4000);
    /* calibrated scores: the guard holds, the cap ends it as non-inferior
     * (the interval at 1e5 examples is +-0.0047) */
    s.max_samples = 100000;
    s.noninferiority = 0.01;
    o = run_two(&s, 0.10, 0.10, 0.5, 1.0, 42);
    assert_int_equal(o.verdict, LD_EXP_PROMOTE);
    assert_string_equal(o.reason, "noninferior");
    assert_int_equal(o.n, 100000);
    /* a floor on the canary's label mean */
    ld_exp_spec_t f = two_arm("floor", LD_EXP_CANARY);
    f.guard_label_min = 0.09;
    o = run_two(&f, 0.08, 0.08, 0.5, 0, 43);
    assert_int_equal(o.verdict, LD_EXP_ROLLBACK);
    assert_string_equal(o.reason, "guard_label_min");
}

/* ---- Shadow ------------------------------------------------------------- */

static outcome_t run_shadow(double served_bias, double shadow_bias,
                            uint64_t cap, uint64_t seed)
{
    char err[256];
    ld_exp_spec_t s = two_arm("sh", LD_EXP_SHADOW);
    s.min_effect = 0.002;
    s.max_samples = (int64_t)cap;
    ld_exp_set_t *set = ld_exp_set_new(&s, 1, err, sizeof(err));
    assert_non_null(set);
    int vs = ld_exp_set_variant(set, "served", 6);
    ld_exp_shadow_t sh = {ld_exp_set_variant(set, "shadow", 6), 0};
    sim_t r = {seed};
    outcome_t o = {LD_EXP_CONTINUE, 0, 0, ""};
    for (uint64_t i = 0; o.verdict == LD_EXP_CONTINUE; i++) {
        double p = 0.05 + 0.2 * sim_u(&r); /* each event its own rate */
        sh.score = p + shadow_bias;
        ld_exp_obs_t obs = {
            vs,        sim_u(&r) < p ? 1.0 : 0.0, p + served_bias, NAN, &sh, 1,
            (int64_t)i};
        if (ld_exp_set_observe(set, &obs)) {
            size_t n;
            const ld_exp_decision_t *d = ld_exp_set_pending(set, &n);
            o.verdict = d->verdict;
            o.n = d->arm[0].n;
            snprintf(o.reason, sizeof(o.reason), "%s", d->reason);
        }
    }
    ld_exp_set_destroy(set);
    return o;
}

/* Paired: a shadow with the true rate beats a served model biased by
 * +0.05 (and the reverse rolls back) within 20 000 events; identical
 * scores never decide and end INCONCLUSIVE at the cap. */
static void test_shadow_paired(void **state)
{
    (void)state;
    outcome_t o = run_shadow(0.05, 0.0, 1000000, 5);
    assert_int_equal(o.verdict, LD_EXP_PROMOTE);
    assert_true(o.n <= 20000);
    o = run_shadow(0.0, 0.05, 1000000, 5);
    assert_int_equal(o.verdict, LD_EXP_ROLLBACK);
    assert_true(o.n <= 20000);
    o = run_shadow(0.0, 0.0, 50000, 5);
    assert_int_equal(o.verdict, LD_EXP_INCONCLUSIVE);
    assert_string_equal(o.reason, "cap");
    assert_int_equal(o.n, 50000);
}

/* ---- Thompson sampling -------------------------------------------------- */

typedef struct bandit_run {
    double regret, uniform_regret, final_best_weight;
    uint64_t weights_events;
} bandit_run_t;

/* T rounds on arms with means mu (Bernoulli rates, or Normal means with
 * sd 1): each round picks an arm by the current routing weights; its
 * reward reaches the set lag rounds later (a fixed label delay). The set
 * publishes weights every 500 rounds of "event time" (1 round = 1 ms). */
static bandit_run_t run_bandit(const double *mu, size_t k, int reward,
                               uint64_t lag, uint64_t T, uint64_t seed)
{
    static const char *names[] = {"a", "b", "c"};
    char err[256];
    ld_exp_spec_t s;
    ld_exp_spec_init(&s, "bandit", LD_EXP_BANDIT);
    s.nvariants = k;
    for (size_t i = 0; i < k; i++)
        snprintf(s.variants[i], sizeof(s.variants[i]), "%s", names[i]);
    s.reward = reward;
    s.interval_ms = 500;
    s.seed = seed;
    ld_exp_set_t *set = ld_exp_set_new(&s, 1, err, sizeof(err));
    assert_non_null(set);
    double w[LD_EXP_ARMS_MAX], best = mu[0], mean = 0;
    assert_int_equal(ld_exp_set_weights(set, 0, w), k);
    for (size_t i = 0; i < k; i++) {
        best = fmax(best, mu[i]);
        mean += mu[i] / (double)k;
    }
    int *arm = calloc(T, sizeof(int));
    double *rew = calloc(T, sizeof(double));
    sim_t r = {seed};
    bandit_run_t out = {0, (best - mean) * (double)T, 0, 0};
    for (uint64_t t = 0; t < T + lag; t++) {
        if (t < T) {
            double u = sim_u(&r), acc = 0;
            size_t a = k - 1;
            for (size_t i = 0; i < k; i++)
                if (u < (acc += w[i])) {
                    a = i;
                    break;
                }
            arm[t] = (int)a;
            rew[t] = reward == LD_EXP_REWARD_BERNOULLI
                         ? (sim_u(&r) < mu[a] ? 1.0 : 0.0)
                         : mu[a] + sim_normal(&r);
            out.regret += best - mu[a];
            ld_exp_set_expose(set, arm[t]);
        }
        if (t >= lag) {
            ld_exp_obs_t obs = {arm[t - lag], rew[t - lag], NAN, NAN, NULL, 0,
                                (int64_t)t};
            if (ld_exp_set_observe(set, &obs)) {
                size_t n;
                const ld_exp_decision_t *d = ld_exp_set_pending(set, &n);
                assert_int_equal(d[n - 1].kind, LD_EXP_KIND_WEIGHTS);
                out.weights_events++;
                ld_exp_set_weights(set, 0, w);
                double sum = 0;
                for (size_t i = 0; i < k; i++) {
                    assert_double_equal(d[n - 1].arm[i].weight, w[i], 0);
                    assert_true(w[i] >= s.min_weight - 1e-12);
                    sum += w[i];
                }
                assert_double_equal(sum, 1.0, 1e-9);
                ld_exp_set_clear(set);
            }
        }
    }
    for (size_t i = 0; i < k; i++)
        if (mu[i] == best)
            out.final_best_weight = w[i];
    free(arm);
    free(rew);
    ld_exp_set_destroy(set);
    return out;
}

/* Three Bernoulli arms (4 %, 5 %, 7 %), 60 000 rounds: Thompson's regret
 * is under half the uniform split's, with no delay and with every reward
 * 5 000 rounds (10 routing intervals) late, and the best arm ends with
 * >= 90 % of the traffic either way. */
static void test_thompson_beats_uniform_with_and_without_lag(void **state)
{
    (void)state;
    const double mu[3] = {0.04, 0.05, 0.07};
    for (int lagged = 0; lagged < 2; lagged++) {
        for (uint64_t seed = 1; seed <= 5; seed++) {
            bandit_run_t b = run_bandit(mu, 3, LD_EXP_REWARD_BERNOULLI,
                                        lagged ? 5000 : 0, 60000, seed);
            printf("thompson lag=%d seed=%llu: regret %.1f vs uniform "
                   "%.1f, best arm weight %.3f\n",
                   lagged ? 5000 : 0, (unsigned long long)seed, b.regret,
                   b.uniform_regret, b.final_best_weight);
            assert_true(b.regret < 0.5 * b.uniform_regret);
            assert_true(b.final_best_weight >= 0.90);
            assert_int_equal(b.weights_events, 120 - 1);
        }
    }
}

/* Numeric rewards (Normal, sd 1, means 0, 0.1, 0.3). */
static void test_thompson_normal_rewards(void **state)
{
    (void)state;
    const double mu[3] = {0.0, 0.1, 0.3};
    bandit_run_t b = run_bandit(mu, 3, LD_EXP_REWARD_NORMAL, 2000, 60000, 9);
    printf("thompson normal: regret %.1f vs uniform %.1f, best %.3f\n",
           b.regret, b.uniform_regret, b.final_best_weight);
    assert_true(b.regret < 0.5 * b.uniform_regret);
    assert_true(b.final_best_weight >= 0.90);
}

/* ---- Variants, drops, config checks ------------------------------------ */

static void test_variants_bounded_and_other(void **state)
{
    (void)state;
    char err[256];
    ld_exp_spec_t s[2] = {two_arm("x", LD_EXP_AB), two_arm("y", LD_EXP_AB)};
    snprintf(s[1].variants[1], LD_EXP_NAME_MAX, "v3");
    ld_exp_set_t *set = ld_exp_set_new(s, 2, err, sizeof(err));
    assert_non_null(set);
    assert_int_equal(ld_exp_set_nvariants(set), 4);
    assert_string_equal(ld_exp_set_variant_name(set, 2), "v3");
    assert_string_equal(ld_exp_set_variant_name(set, 3), "other");
    /* 10 000 distinct unknown names all land on `other` */
    char name[32];
    for (int i = 0; i < 10000; i++) {
        snprintf(name, sizeof(name), "model-%d", i);
        int v = ld_exp_set_variant(set, name, strlen(name));
        assert_int_equal(v, 3);
        ld_exp_obs_t obs = {v, 1.0, 0.5, NAN, NULL, 0, i};
        assert_int_equal(ld_exp_set_observe(set, &obs), 0);
    }
    /* a prefix of a configured name is not that name */
    assert_int_equal(ld_exp_set_variant(set, "contro", 6), 3);
    assert_int_equal(ld_exp_set_variant(set, "other", 5), 3);
    /* nor is the name with zero bytes after it, nor one past the longest
     * name a variant can have; the name itself is */
    assert_int_equal(ld_exp_set_variant(set, "v3\0\0", 4), 3);
    char longname[LD_EXP_NAME_MAX + 8] = "v3";
    assert_int_equal(ld_exp_set_variant(set, longname, sizeof(longname)), 3);
    assert_int_equal(ld_exp_set_variant(set, "v3", 2), 2);
    assert_int_equal(ld_exp_set_variant(set, "", 0), 3);
    ld_exp_variant_stats_t st;
    ld_exp_set_variant_stats(set, 3, &st);
    assert_int_equal(st.n, 10000);
    assert_double_equal(st.label_mean, 1.0, 0);
    assert_int_equal(ld_exp_set_nvariants(set), 4);
    ld_exp_set_destroy(set);
}

static void test_drops_counted_per_reason(void **state)
{
    (void)state;
    char err[256];
    ld_exp_spec_t s[3] = {two_arm("ll", LD_EXP_AB),
                          two_arm("sh", LD_EXP_SHADOW),
                          two_arm("bd", LD_EXP_BANDIT)};
    s[0].metric = LD_EXP_METRIC_LOGLOSS;
    s[0].direction = LD_EXP_LOWER;
    snprintf(s[1].variants[0], LD_EXP_NAME_MAX, "control");
    snprintf(s[2].variants[0], LD_EXP_NAME_MAX, "control");
    ld_exp_set_t *set = ld_exp_set_new(s, 3, err, sizeof(err));
    assert_non_null(set);
    int c = ld_exp_set_variant(set, "control", 7);
    /* no score: logloss ab and shadow both want it */
    ld_exp_obs_t obs = {c, 1.0, NAN, NAN, NULL, 0, 0};
    ld_exp_set_observe(set, &obs);
    /* a score but no shadow score; label 0.5 is no Bernoulli reward */
    obs.score = 0.3;
    obs.label = 0.5;
    ld_exp_set_observe(set, &obs);
    ld_exp_variant_stats_t st;
    ld_exp_set_variant_stats(set, (size_t)c, &st);
    assert_int_equal(st.n, 2);
    assert_int_equal(st.drops[LD_EXP_DROP_NO_SCORE], 2);
    assert_int_equal(st.drops[LD_EXP_DROP_NO_SHADOW], 1);
    assert_int_equal(st.drops[LD_EXP_DROP_BAD_REWARD], 1);
    ld_exp_set_destroy(set);
}

static void test_spec_check_errors(void **state)
{
    (void)state;
    char err[256];
    ld_exp_spec_t s = two_arm("bad", LD_EXP_SHADOW);
    s.metric = LD_EXP_METRIC_LABEL_MEAN;
    assert_int_equal(ld_exp_spec_check(&s, err, sizeof(err)), LD_ERR_CONFIG);
    assert_non_null(strstr(err, "logloss or sqerr"));
    s = two_arm("bad", LD_EXP_AB);
    s.nvariants = 1;
    assert_int_equal(ld_exp_spec_check(&s, err, sizeof(err)), LD_ERR_CONFIG);
    assert_non_null(strstr(err, "exactly 2 variants"));
    s = two_arm("bad", LD_EXP_AB);
    snprintf(s.variants[1], LD_EXP_NAME_MAX, "other");
    assert_int_equal(ld_exp_spec_check(&s, err, sizeof(err)), LD_ERR_CONFIG);
    s = two_arm("bad", LD_EXP_BANDIT);
    s.min_weight = 0.5;
    assert_int_equal(ld_exp_spec_check(&s, err, sizeof(err)), LD_ERR_CONFIG);
    ld_exp_spec_t two[2] = {two_arm("same", LD_EXP_AB),
                            two_arm("same", LD_EXP_AB)};
    assert_null(ld_exp_set_new(two, 2, err, sizeof(err)));
    assert_non_null(strstr(err, "named twice"));
}

/* ---- Per-variant outcomes ------------------------------------------------ */

static void test_variant_stats_values(void **state)
{
    (void)state;
    char err[256];
    ld_exp_spec_t s = two_arm("m", LD_EXP_AB);
    ld_exp_set_t *set = ld_exp_set_new(&s, 1, err, sizeof(err));
    assert_non_null(set);
    int c = ld_exp_set_variant(set, "control", 7);
    /* labels 1,0,0,1 with scores .9,.2,.4,.6 and propensity .5 */
    const double y[4] = {1, 0, 0, 1}, p[4] = {0.9, 0.2, 0.4, 0.6};
    for (int i = 0; i < 4; i++) {
        ld_exp_obs_t obs = {c, y[i], p[i], 0.5, NULL, 0, i};
        ld_exp_set_expose(set, c);
        ld_exp_set_observe(set, &obs);
    }
    ld_exp_set_expose(set, c);
    ld_exp_variant_stats_t st;
    ld_exp_set_variant_stats(set, (size_t)c, &st);
    assert_int_equal(st.n, 4);
    assert_int_equal(st.pending, 1);
    assert_double_equal(st.label_mean, 0.5, 1e-15);
    /* sd 0.57735, half 1.96 * 0.57735 / 2 */
    assert_double_equal(st.ci_hi - st.label_mean, 0.5657928670, 1e-9);
    double ll = -(log(0.9) + log(0.8) + log(0.6) + log(0.6)) / 4;
    assert_double_equal(st.logloss, ll, 1e-12);
    assert_double_equal(st.calibration, 2.1 / 2.0, 1e-12);
    assert_double_equal(st.auc, 1.0, 0); /* positives .9,.6 > .4,.2 */
    assert_double_equal(st.ips_mean, (2 / 0.5) / 4, 1e-12);
    ld_exp_set_destroy(set);
}

/* ---- Events waiting for their label ------------------------------------ */

/* 5 000 served events across 3 partitions mature in reverse order, half of
 * them after a save/load: every one is observed once with what served it;
 * an event never released is evicted once matured time passes the
 * horizon; a re-read event is not exposed twice. */
static void test_served_table(void **state)
{
    (void)state;
    char err[256];
    ld_exp_spec_t s = two_arm("ab", LD_EXP_AB);
    s.metric = LD_EXP_METRIC_SQERR;
    s.direction = LD_EXP_LOWER;
    ld_exp_set_t *set = ld_exp_set_new(&s, 1, err, sizeof(err));
    assert_non_null(set);
    ld_exp_set_horizon(set, 100000);
    const int n = 5000;
    for (int i = 0; i < n; i++) {
        ld_exp_served_t sv = {i % 2, 0.25, 0.5, 0, {{0, 0}}};
        ld_exp_set_serve(set, i % 3, i / 3, 1000 + i, &sv);
    }
    /* a re-read replaces, never adds */
    ld_exp_served_t again = {0, 0.25, 0.5, 0, {{0, 0}}};
    ld_exp_set_serve(set, 0, 0, 1000, &again);
    uint64_t evicted;
    assert_int_equal(ld_exp_set_waiting(set, &evicted), n);
    ld_exp_variant_stats_t st;
    ld_exp_set_variant_stats(set, 0, &st);
    assert_int_equal(st.pending, n / 2);
    for (int i = n - 1; i >= 0; i--) {
        if (i == n / 2) {
            ld_wbuf_t w = {0};
            ld_exp_set_save(set, &w);
            ld_exp_set_destroy(set);
            set = ld_exp_set_new(&s, 1, err, sizeof(err));
            ld_exp_set_horizon(set, 100000);
            assert_int_equal(ld_exp_set_load(set, w.p, w.len, err, sizeof(err)),
                             LD_OK);
            ld_wbuf_free(&w);
            assert_int_equal(ld_exp_set_waiting(set, NULL), (size_t)i + 1);
        }
        if (i == 7)
            continue; /* never released */
        ld_exp_set_mature(set, i % 3, i / 3, i % 2 ? 1.0 : 0.0, 1000 + n);
        /* matured twice: the entry is gone, nothing counted */
        ld_exp_set_mature(set, i % 3, i / 3, 1.0, 1000 + n);
    }
    assert_int_equal(ld_exp_set_waiting(set, &evicted), 1);
    assert_int_equal(evicted, 0);
    ld_exp_set_variant_stats(set, 0, &st);
    assert_int_equal(st.n, n / 2);
    assert_int_equal(st.pending, 0);
    assert_double_equal(st.label_mean, 0.0, 0);
    ld_exp_set_variant_stats(set, 1, &st);
    assert_int_equal(st.n, n / 2 - 1);
    assert_int_equal(st.pending, 1);
    char *j = ld_exp_set_json(set, "ab");
    assert_non_null(strstr(j, "\"n\":4999,"));
    free(j);
    /* matured time far past the horizon: the table evicts before it grows
     * (8 192 slots after the load, half full at 4 096), so stale entries
     * never make it grow */
    ld_exp_set_mature(set, 9, 9, 0, 1000 + n + 200000);
    for (int i = 0; i < 4100; i++) {
        ld_exp_served_t sv = {0, 0.25, NAN, 0, {{0, 0}}};
        ld_exp_set_serve(set, 5, i, 300000 + i, &sv);
    }
    assert_int_equal(ld_exp_set_waiting(set, &evicted), 4100);
    assert_int_equal(evicted, 1);
    ld_exp_set_destroy(set);
}

/* Propensities and shadow scores arrive only on some events, the first of
 * them after the table has grown: every entry keeps what it was served
 * with (or none), across a save and load that give the same bytes again,
 * and an event matured right after its serve is counted. */
static void test_served_side_entries(void **state)
{
    (void)state;
    char err[256];
    ld_exp_spec_t s = two_arm("sh", LD_EXP_SHADOW);
    s.min_samples = 2;
    ld_exp_set_t *set = ld_exp_set_new(&s, 1, err, sizeof(err));
    assert_non_null(set);
    int served = ld_exp_set_variant(set, "served", 6);
    int shadow = ld_exp_set_variant(set, "shadow", 6);
    const int n = 3000;
    for (int i = 0; i < n; i++) {
        /* from event 2000 on: propensity 0.5, shadow score 0.5 */
        int side = i >= 2000;
        ld_exp_served_t sv = {
            served, 0.25, side ? 0.5 : NAN, side ? 1u : 0u, {{shadow, 0.5}}};
        ld_exp_set_serve(set, 0, i, 1000 + i, &sv);
    }
    ld_wbuf_t w = {0}, w2 = {0};
    ld_exp_set_save(set, &w);
    ld_exp_set_destroy(set);
    set = ld_exp_set_new(&s, 1, err, sizeof(err));
    assert_int_equal(ld_exp_set_load(set, w.p, w.len, err, sizeof(err)), LD_OK);
    ld_exp_set_save(set, &w2);
    assert_int_equal(w2.len, w.len);
    assert_memory_equal(w2.p, w.p, w.len);
    ld_wbuf_free(&w);
    ld_wbuf_free(&w2);
    for (int i = 0; i < n; i++)
        ld_exp_set_mature(set, 0, i, 1.0, 5000);
    ld_exp_variant_stats_t st;
    ld_exp_set_variant_stats(set, (size_t)served, &st);
    assert_int_equal(st.n, n);
    assert_int_equal(st.pending, 0);
    /* 1000 events with propensity 0.5 and label 1, over 3000 matured */
    assert_double_equal(st.ips_mean, 2000.0 / 3000.0, 1e-12);
    assert_int_equal(st.drops[LD_EXP_DROP_NO_SHADOW], 2000);
    /* served and at once matured (still staged): counted */
    ld_exp_served_t one = {served, 0.25, NAN, 0, {{0, 0}}};
    ld_exp_set_serve(set, 1, 7, 6000, &one);
    assert_int_equal(ld_exp_set_mature(set, 1, 7, 0.0, 6000), 0);
    ld_exp_set_variant_stats(set, (size_t)served, &st);
    assert_int_equal(st.n, n + 1);
    assert_int_equal(ld_exp_set_waiting(set, NULL), 0);
    ld_exp_set_destroy(set);
}

/* Serves wait in a batch and a mature of another key does not insert
 * them first (served.c, "Staging"): none of it shows. A random run of
 * serves, re-reads, matures (some of a key just served, some of none) and
 * events never released gives the same counts, decisions and state bytes
 * as the same run with every serve inserted at once (a reader after each
 * call drains the batch). About 1 500 events wait; those never released
 * pile up until the table, half full, evicts them: again and again, each
 * time at the same serve as the run without batches. */
static void test_staging_is_invisible(void **state)
{
    (void)state;
    char err[256];
    ld_exp_spec_t s = two_arm("ab", LD_EXP_AB);
    s.check_every = 50;
    ld_exp_set_t *a = ld_exp_set_new(&s, 1, err, sizeof(err));
    ld_exp_set_t *b = ld_exp_set_new(&s, 1, err, sizeof(err));
    assert_non_null(a);
    assert_non_null(b);
    ld_exp_set_horizon(a, 9000);
    ld_exp_set_horizon(b, 9000);
    enum { MAXP = 40000 };
    static int64_t key[MAXP], when[MAXP]; /* partition << 40 | offset */
    size_t npend = 0;
    int64_t next_off[4] = {0}, clock = 0;
    sim_t r = {7};
    uint64_t ev_a = 0, ev_b = 0, rounds = 0;
    for (int op = 0; op < 120000; op++) {
        double u = sim_u(&r);
        clock += 1;
        if (u < 0.5 || npend < 1500) { /* a new event, or a re-read */
            int32_t p = (int32_t)(sim_next(&r) % 4);
            int64_t o = next_off[p]++;
            if (u < 0.01 && o > 10)
                o -= 10;
            ld_exp_served_t sv = {
                (int)(sim_next(&r) % 2), sim_u(&r), NAN, 0, {{0, 0}}};
            ld_exp_set_serve(a, p, o, clock, &sv);
            ld_exp_set_serve(b, p, o, clock, &sv);
            /* a tenth are never released; the table holds at most MAXP */
            if (sim_u(&r) < 0.9 && npend < MAXP) {
                key[npend] = (int64_t)p << 40 | o;
                when[npend++] = clock;
            }
        } else { /* a mature: mostly an old event, some the newest */
            size_t i =
                sim_u(&r) < 0.2 ? npend - 1 : (size_t)(sim_next(&r) % npend);
            int64_t k = sim_u(&r) < 0.02 ? (int64_t)9 << 40 : key[i];
            double y = sim_u(&r) < 0.3 ? 1.0 : 0.0;
            int64_t t = when[i] + 3000;
            assert_int_equal(ld_exp_set_mature(a, (int32_t)(k >> 40),
                                               k & 0xffffffffff, y, t),
                             ld_exp_set_mature(b, (int32_t)(k >> 40),
                                               k & 0xffffffffff, y, t));
            key[i] = key[npend - 1];
            when[i] = when[--npend];
        }
        uint64_t ev;
        size_t waiting = ld_exp_set_waiting(b, &ev);
        rounds += ev != ev_b;
        ev_b = ev;
        if (op % 10000 == 9999 || op == 119999) {
            ld_wbuf_t wa = {0}, wb = {0};
            ld_exp_set_save(a, &wa);
            ld_exp_set_save(b, &wb);
            assert_int_equal(wa.len, wb.len);
            assert_memory_equal(wa.p, wb.p, wa.len);
            ld_wbuf_free(&wa);
            ld_wbuf_free(&wb);
            assert_int_equal(ld_exp_set_waiting(a, &ev_a), waiting);
            assert_int_equal(ev_a, ev_b);
        }
    }
    assert_true(rounds >= 10); /* it evicted, time and again */
    ld_exp_set_destroy(a);
    ld_exp_set_destroy(b);
}

/* ---- Events ------------------------------------------------------------- */

static void write_event(const char *name, const uint8_t *p, size_t n)
{
    mkdir("experiment-events", 0755);
    char path[256];
    snprintf(path, sizeof(path), "experiment-events/%s.json", name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}

/* A decision and routing weights as JSON (written to experiment-events/
 * for schemas_experiment_jsonschema) and protobuf, decoded back. */
static void test_events_json_and_protobuf(void **state)
{
    (void)state;
    char err[256];
    ld_exp_spec_t s[2] = {two_arm("ab", LD_EXP_AB),
                          two_arm("bd", LD_EXP_BANDIT)};
    s[0].min_effect = 0.02;
    s[1].interval_ms = 1000;
    ld_exp_set_t *set = ld_exp_set_new(s, 2, err, sizeof(err));
    sim_t r = {77};
    for (uint64_t i = 0; i < 40000; i++) {
        int treat = sim_u(&r) < 0.5;
        double p = treat ? 0.15 : 0.10;
        ld_exp_obs_t obs = {
            treat, sim_u(&r) < p ? 1.0 : 0.0, p, NAN, NULL, 0, (int64_t)i};
        ld_exp_set_observe(set, &obs);
    }
    size_t n;
    const ld_exp_decision_t *d = ld_exp_set_pending(set, &n);
    int wrote[2] = {0, 0};
    for (size_t i = 0; i < n; i++) {
        uint8_t *out;
        size_t len;
        assert_int_equal(ld_exp_decision_encode(&d[i], "ctr", 0, &out, &len),
                         LD_OK);
        if (!wrote[d[i].kind]++)
            write_event(d[i].kind ? "valid-weights" : "valid-decision", out,
                        len);
        if (d[i].kind == LD_EXP_KIND_DECISION) {
            assert_non_null(strstr((char *)out, "\"kind\":\"experiment_"
                                                "decision\""));
            assert_non_null(strstr((char *)out, "\"verdict\":\"PROMOTE\""));
            assert_non_null(
                strstr((char *)out, "\"idempotency_key\":\"ab/decision/1\""));
        }
        free(out);
        assert_int_equal(ld_exp_decision_encode(&d[i], "ctr", 1, &out, &len),
                         LD_OK);
        if (d[i].kind == LD_EXP_KIND_DECISION) {
            Learnd__V1__ExperimentDecision *m =
                learnd__v1__experiment_decision__unpack(NULL, len, out);
            assert_non_null(m);
            assert_int_equal(
                m->verdict,
                LEARND__V1__EXPERIMENT_VERDICT__EXPERIMENT_VERDICT_PROMOTE);
            assert_int_equal(m->type,
                             LEARND__V1__EXPERIMENT_TYPE__EXPERIMENT_TYPE_AB);
            assert_string_equal(m->idempotency_key, d[i].idempotency_key);
            assert_int_equal(m->n_arms, 2);
            assert_int_equal(m->arms[0]->n + m->arms[1]->n,
                             d[i].arm[0].n + d[i].arm[1].n);
            assert_true(m->statistic == d[i].statistic);
            learnd__v1__experiment_decision__free_unpacked(m, NULL);
        } else {
            Learnd__V1__RoutingWeights *m =
                learnd__v1__routing_weights__unpack(NULL, len, out);
            assert_non_null(m);
            assert_int_equal(m->n_arms, 2);
            assert_true(m->arms[0]->weight == d[i].arm[0].weight);
            assert_int_equal(m->seq, d[i].seq);
            learnd__v1__routing_weights__free_unpacked(m, NULL);
        }
        free(out);
        assert_string_equal(ld_exp_decision_type_header(&d[i]),
                            d[i].kind ? "RoutingWeights"
                                      : "ExperimentDecision");
    }
    assert_int_equal(wrote[0], 1);
    assert_int_equal(wrote[1], 39);
    /* GET /experiments/ab, for docs_experiments' JSONPath check */
    char *doc = ld_exp_set_json(set, "ab");
    FILE *f = fopen("experiment-state.json", "w");
    assert_non_null(f);
    fputs(doc, f);
    fclose(f);
    free(doc);
    ld_exp_set_destroy(set);
}

/* ---- JSON and resume state ---------------------------------------------- */

/* Runs the same stream through one set without a break and through one
 * saved and loaded into a fresh set at `at`: the queued decisions (ab
 * PROMOTE, bandit weights) and the JSON must be the same bytes. */
static void test_resume_state_decides_identically(void **state)
{
    (void)state;
    char err[256];
    ld_exp_spec_t s[2] = {two_arm("ab", LD_EXP_AB),
                          two_arm("bd", LD_EXP_BANDIT)};
    s[0].min_effect = 0.02;
    s[1].interval_ms = 1000;
    ld_exp_set_t *a = ld_exp_set_new(s, 2, err, sizeof(err));
    ld_exp_set_t *b = ld_exp_set_new(s, 2, err, sizeof(err));
    assert_non_null(a);
    assert_non_null(b);
    sim_t r = {77};
    const uint64_t at = 6123, total = 40000;
    for (uint64_t i = 0; i < total; i++) {
        int treat = sim_u(&r) < 0.5;
        double p = treat ? 0.15 : 0.10;
        ld_exp_obs_t obs = {
            treat, sim_u(&r) < p ? 1.0 : 0.0, p, NAN, NULL, 0, (int64_t)i};
        ld_exp_set_expose(a, obs.variant);
        ld_exp_set_expose(b, obs.variant);
        ld_exp_set_observe(a, &obs);
        ld_exp_set_observe(b, &obs);
        if (i == at) {
            ld_wbuf_t w = {0};
            ld_exp_set_save(b, &w);
            assert_int_equal(w.err, LD_OK);
            ld_exp_set_destroy(b);
            b = ld_exp_set_new(s, 2, err, sizeof(err));
            assert_int_equal(ld_exp_set_load(b, w.p, w.len, err, sizeof(err)),
                             LD_OK);
            /* truncated: refused */
            ld_exp_set_t *c = ld_exp_set_new(s, 2, err, sizeof(err));
            assert_int_equal(
                ld_exp_set_load(c, w.p, w.len - 1, err, sizeof(err)),
                LD_ERR_CORRUPT);
            ld_exp_set_destroy(c);
            ld_wbuf_free(&w);
        }
    }
    size_t na, nb;
    const ld_exp_decision_t *da = ld_exp_set_pending(a, &na);
    const ld_exp_decision_t *db = ld_exp_set_pending(b, &nb);
    assert_int_equal(na, nb);
    assert_true(na >= 39); /* 39 weights, 1 verdict */
    int verdicts = 0;
    for (size_t i = 0; i < na; i++) {
        assert_memory_equal(&da[i], &db[i], sizeof(da[i]));
        if (da[i].kind == LD_EXP_KIND_DECISION) {
            verdicts++;
            assert_int_equal(da[i].verdict, LD_EXP_PROMOTE);
            assert_string_equal(da[i].idempotency_key, "ab/decision/1");
            assert_true(da[i].statistic >= da[i].threshold);
            assert_true(da[i].ci_lo > 0);
        }
    }
    assert_int_equal(verdicts, 1);
    char *ja = ld_exp_set_json(a, NULL), *jb = ld_exp_set_json(b, NULL);
    assert_string_equal(ja, jb);
    assert_non_null(strstr(ja, "\"verdict\":\"PROMOTE\""));
    free(ja);
    free(jb);
    char *one = ld_exp_set_json(a, "bd");
    assert_non_null(one);
    assert_non_null(strstr(one, "\"type\":\"bandit\""));
    assert_non_null(strstr(one, "\"weight\":"));
    free(one);
    assert_null(ld_exp_set_json(a, "nope"));
    ld_exp_set_destroy(a);
    ld_exp_set_destroy(b);
}

/* A changed experiment starts afresh, an unchanged one keeps its evidence. */
static void test_resume_changed_spec_starts_afresh(void **state)
{
    (void)state;
    char err[256];
    ld_exp_spec_t s[2] = {two_arm("keep", LD_EXP_AB),
                          two_arm("chg", LD_EXP_AB)};
    ld_exp_set_t *a = ld_exp_set_new(s, 2, err, sizeof(err));
    for (int i = 0; i < 100; i++) {
        ld_exp_obs_t obs = {i % 2, i % 3 == 0, NAN, NAN, NULL, 0, i};
        ld_exp_set_observe(a, &obs);
    }
    ld_wbuf_t w = {0};
    ld_exp_set_save(a, &w);
    s[1].alpha = 0.01;
    ld_exp_set_t *b = ld_exp_set_new(s, 2, err, sizeof(err));
    assert_int_equal(ld_exp_set_load(b, w.p, w.len, err, sizeof(err)), LD_OK);
    char *keep = ld_exp_set_json(b, "keep"), *chg = ld_exp_set_json(b, "chg");
    assert_non_null(strstr(keep, "\"n\":100,"));
    assert_non_null(strstr(chg, "\"n\":0,"));
    free(keep);
    free(chg);
    ld_wbuf_free(&w);
    ld_exp_set_destroy(a);
    ld_exp_set_destroy(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_msprt_matches_hand_computation),
        cmocka_unit_test(test_aa_false_positive_rate),
        cmocka_unit_test(test_power_five_percent_lift),
        cmocka_unit_test(test_canary_twenty_percent_worse_rolls_back),
        cmocka_unit_test(test_canary_guardrails),
        cmocka_unit_test(test_shadow_paired),
        cmocka_unit_test(test_thompson_beats_uniform_with_and_without_lag),
        cmocka_unit_test(test_thompson_normal_rewards),
        cmocka_unit_test(test_variants_bounded_and_other),
        cmocka_unit_test(test_drops_counted_per_reason),
        cmocka_unit_test(test_spec_check_errors),
        cmocka_unit_test(test_variant_stats_values),
        cmocka_unit_test(test_served_table),
        cmocka_unit_test(test_served_side_entries),
        cmocka_unit_test(test_staging_is_invisible),
        cmocka_unit_test(test_events_json_and_protobuf),
        cmocka_unit_test(test_resume_state_decides_identically),
        cmocka_unit_test(test_resume_changed_spec_starts_afresh),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
