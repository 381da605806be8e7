/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the YAML config loader and the config-table value parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/config.h"
#include "daemon/run.h"
#include "publish/publish.h"

/* Loads path, returning the config and the error text in errbuf. */
static ld_config_t *load(const char *path, char *errbuf, size_t size)
{
    FILE *errs = fmemopen(errbuf, size, "w");
    assert_non_null(errs);
    ld_config_t *conf = ld_config_load(path, errs);
    fclose(errs);
    return conf;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_valid_file(void **state)
{
    (void)state;
    char errs[4096] = "";
    unsetenv("LD_TEST_BOOTSTRAP");
    setenv("LD_TEST_SECRET", "s3cr3t-value", 1);
    ld_config_t *conf =
        load(LD_TEST_DATA "/config/valid.yaml", errs, sizeof(errs));
    assert_string_equal(errs, "");
    assert_non_null(conf);
    assert_string_equal(conf->trainer.name, "ctr");
    assert_int_equal(conf->daemon.commit_interval_ms, 2000);
    assert_int_equal(conf->daemon.shutdown_timeout_ms, 30000); /* default */
    assert_int_equal(conf->pipeline.format, LD_FORMAT_JSON);
    assert_int_equal(conf->pipeline.max_record_bytes, 2 * 1024 * 1024);
    assert_int_equal(conf->log.debug.n, 2);
    assert_string_equal(conf->log.debug.v[1], "trainer");
    assert_int_equal(conf->metrics.port, 0);
    /* kafka: passes through, ${VAR:-default} and ${VAR} expanded */
    assert_int_equal(conf->kafka.n, 4);
    assert_string_equal(conf->kafka.v[0], "bootstrap.servers");
    assert_string_equal(conf->kafka.v[1], "127.0.0.1:9092");
    assert_string_equal(conf->kafka.v[3], "s3cr3t-value");

    /* The dump never shows the secret. */
    char dump[8192];
    FILE *out = fmemopen(dump, sizeof(dump), "w");
    ld_config_dump(conf, out);
    fclose(out);
    assert_null(strstr(dump, "s3cr3t-value"));
    assert_non_null(strstr(dump, "sasl.password: \"<redacted>\""));
    assert_non_null(strstr(dump, "commit_interval: 2000ms"));
    ld_config_destroy(conf);
}

static void test_three_errors(void **state)
{
    (void)state;
    char errs[4096] = "";
    ld_config_t *conf =
        load(LD_TEST_DATA "/config/three-errors.yaml", errs, sizeof(errs));
    assert_null(conf);
    const char *p = LD_TEST_DATA "/config/three-errors.yaml";
    char want[2048];
    snprintf(want, sizeof(want),
             "%s:5:3: pipeline.evnts_topik: unknown key (did you mean "
             "'events_topic'?)\n"
             "%s:6:17: pipeline.max_features: expected an integer, got "
             "'lots'\n"
             "%s:7:14: pipeline.hash_seed: value -1 out of range [0, "
             "4294967295]\n",
             p, p, p);
    assert_string_equal(errs, want);
}

static void test_env_and_secrets(void **state)
{
    (void)state;
    const char *path = "test_config_env.yaml";
    write_file(path, "kafka:\n"
                     "  sasl.password: ${LD_TEST_UNSET_VAR}\n"
                     "daemon:\n"
                     "  commit_interval: 1h\n"
                     "  model_secret_key: ${LD_TEST_SECRET}\n"
                     "pipeline:\n"
                     "  events_topic: e\n"
                     "  labels_topic: l\n");
    unsetenv("LD_TEST_UNSET_VAR");
    setenv("LD_TEST_SECRET", "do-not-print-me", 1);
    char errs[4096] = "";
    ld_config_t *conf = load(path, errs, sizeof(errs));
    assert_null(conf);
    char want[1024];
    snprintf(want, sizeof(want),
             "%s:2:18: kafka.sasl.password: environment variable "
             "${LD_TEST_UNSET_VAR} is not set\n"
             "%s:5:3: daemon.model_secret_key: unknown key\n",
             path, path);
    assert_string_equal(errs, want);
    assert_null(strstr(errs, "do-not-print-me"));
    remove(path);
}

static void test_missing_required_and_types(void **state)
{
    (void)state;
    const char *path = "test_config_req.yaml";
    write_file(path, "pipeline:\n"
                     "  events_topic: e\n"
                     "  format: xml\n"
                     "  hash_seed: [1, 2]\n"
                     "metrics:\n"
                     "  enabled: maybe\n"
                     "nonsense:\n"
                     "  a: 1\n");
    char errs[4096] = "";
    ld_config_t *conf = load(path, errs, sizeof(errs));
    assert_null(conf);
    char want[2048];
    snprintf(want, sizeof(want),
             "%s:3:11: pipeline.format: expected one of avro|protobuf|json, "
             "got 'xml'\n"
             "%s:4:14: pipeline.hash_seed: expected a single value, got a "
             "list\n"
             "%s:1:1: pipeline.labels_topic: required key is missing\n"
             "%s:6:12: metrics.enabled: expected true or false, got "
             "'maybe'\n"
             "%s:7:1: nonsense: unknown section\n",
             path, path, path, path, path);
    assert_string_equal(errs, want);
    remove(path);
}

/* experiments: a list of mappings, each checked whole; errors at
 * file:line:column of the key or of the item (issue #20). */
static void test_experiments_section(void **state)
{
    (void)state;
    const char *path = "test_config_exp.yaml";
    static const char base[] =
        "pipeline:\n"
        "  events_topic: events\n"
        "  labels_topic: labels\n"
        "  format: json\n"
        "  served_variant_field: model\n"
        "  served_score_field: p\n"
        "  served_shadow_fields: [\"v3:p3\"]\n"
        "experiments:\n"
        "  - name: ctr\n"
        "    type: ab\n"
        "    variants: [v1, v2]\n"
        "    min_effect: 0.01\n"
        "  - {name: sh, type: shadow, variants: [v1, v3], metric: logloss}\n"
        "  - name: arms\n"
        "    type: bandit\n"
        "    variants: [v1, v2, v3]\n"
        "    interval: 5m\n";
    write_file(path, base);
    char errs[4096] = "";
    ld_config_t *conf = load(path, errs, sizeof(errs));
    assert_string_equal(errs, "");
    assert_non_null(conf);
    assert_int_equal(conf->nexperiments, 3);
    ld_exp_spec_t s;
    char why[256];
    assert_int_equal(
        ld_exp_conf_to_spec(&conf->experiments[0], &s, why, sizeof(why)),
        LD_OK);
    assert_string_equal(s.name, "ctr");
    assert_true(s.min_effect == 0.01 && s.alpha == 0.05);
    assert_string_equal(s.variants[1], "v2");
    assert_int_equal(
        ld_exp_conf_to_spec(&conf->experiments[2], &s, why, sizeof(why)),
        LD_OK);
    assert_int_equal(s.type, LD_EXP_BANDIT);
    assert_int_equal(s.interval_ms, 300000);
    assert_int_equal(s.nvariants, 3);
    char dump[16384];
    FILE *out = fmemopen(dump, sizeof(dump), "w");
    ld_config_dump(conf, out);
    fclose(out);
    assert_non_null(strstr(dump, "experiments:\n  - name: \"ctr\"\n"
                                 "    type: ab\n"));
    ld_config_destroy(conf);

    static const char bad[] = "pipeline:\n"
                              "  events_topic: events\n"
                              "  labels_topic: labels\n"
                              "  format: json\n"
                              "experiments:\n"
                              "  - name: ctr\n"
                              "    type: abc\n"
                              "    variants: [v1, v2]\n"
                              "  - name: one\n"
                              "    type: ab\n"
                              "    variants: [v1]\n"
                              "    alpah: 0.1\n"
                              "  - name: one\n"
                              "    type: canary\n"
                              "    variants: [v1, v2]\n"
                              "  - name: sh\n"
                              "    type: shadow\n"
                              "    variants: [v1, v2]\n";
    write_file(path, bad);
    errs[0] = '\0';
    assert_null(load(path, errs, sizeof(errs)));
    char want[2048];
    snprintf(want, sizeof(want),
             "%s:7:11: experiments[0].type: expected one of "
             "ab|canary|shadow|bandit, got 'abc'\n"
             "%s:12:5: experiments[1].alpah: unknown key (did you mean "
             "'alpha'?)\n"
             "%s:13:5: experiments[2]: name 'one' is also experiments[1]\n"
             "%s:16:5: experiments[3]: experiment sh: shadow compares scores "
             "on the same events; metric must be logloss or sqerr\n",
             path, path, path, path);
    assert_string_equal(errs, want);

    /* each parses, but the pipeline does not say what served the events */
    static const char unserved[] =
        "pipeline:\n"
        "  events_topic: events\n"
        "  labels_topic: labels\n"
        "  format: json\n"
        "experiments:\n"
        "  - {name: sh, type: shadow, variants: [v1, v2], metric: logloss}\n";
    write_file(path, unserved);
    errs[0] = '\0';
    assert_null(load(path, errs, sizeof(errs)));
    snprintf(want, sizeof(want),
             "%s:6:5: experiments[0]: needs pipeline.served_variant_field "
             "(which variant served each event)\n"
             "%s:6:5: experiments[0]: needs pipeline.served_score_field\n"
             "%s:6:5: experiments[0]: shadow variant 'v2' has no score: add "
             "'v2:FIELD' to pipeline.served_shadow_fields\n",
             path, path, path);
    assert_string_equal(errs, want);
    remove(path);
}

static void test_nested_list(void **state)
{
    (void)state;
    const char *path = "test_config_nested.yaml";
    write_file(path, "log:\n"
                     "  debug: [[country, ad_id], trainer]\n"
                     "pipeline:\n"
                     "  format: json\n"
                     "  events_topic: e\n"
                     "  labels_topic: l\n");
    char errs[1024] = "";
    ld_config_t *conf = load(path, errs, sizeof(errs));
    assert_string_equal(errs, "");
    assert_non_null(conf);
    assert_int_equal(conf->log.debug.n, 2);
    assert_string_equal(conf->log.debug.v[0], "country,ad_id");
    assert_string_equal(conf->log.debug.v[1], "trainer");
    ld_config_destroy(conf);
    remove(path);
}

/* A valid Avro config over the repository's example schemas; each case of
 * test_run_refusals changes one line of it. Line numbers below count from
 * the "kafka:" line (1). */
static const char *const base_lines[] = {
    "kafka:",                                               /* 1 */
    "  bootstrap.servers: 127.0.0.1:1",                     /* 2 */
    "trainer:",                                             /* 3 */
    "  name: ctr",                                          /* 4 */
    "metrics:",                                             /* 5 */
    "  listen: 127.0.0.1",                                  /* 6 */
    "pipeline:",                                            /* 7 */
    "  events_topic: events",                               /* 8 */
    "  labels_topic: labels",                               /* 9 */
    "  format: avro",                                       /* 10 */
    "  event_schema: " LD_SOURCE_DIR "/schemas/event.avsc", /* 11 */
    "  label_schema: " LD_SOURCE_DIR "/schemas/label.avsc", /* 12 */
    "  key_field: event_id",                                /* 13 */
    "  label_field: clicked",                               /* 14 */
    "  dense_fields: [f0, f1]",                             /* 15 */
    "  hash_fields: [country, ad_id]",                      /* 16 */
    "  crosses: [[country, ad_id]]",                        /* 17 */
    "  event_time_field: event_time",                       /* 18 */
    "  dlq_topic: learnd.dlq",                              /* 19 */
};
#define N_BASE (sizeof(base_lines) / sizeof(base_lines[0]))

/* Writes the base config with line `line` (1-based; 0: none) replaced. */
static void write_variant(const char *path, size_t line, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (size_t i = 0; i < N_BASE; i++)
        fprintf(f, "%s\n", i + 1 == line ? text : base_lines[i]);
    fclose(f);
}

/* Everything `learnd run` refuses at start-up because of the config is an
 * error of the loader, which `config check` and `run` share: one line each,
 * at the key's file:line:column (issue 15 item 6). */
static void test_run_refusals(void **state)
{
    (void)state;
    static const struct {
        size_t line;
        const char *text, *want;
    } cases[] = {
        {15, "  dense_fields: [f0, nope]",
         "15:22: pipeline.dense_fields[1]: field 'nope' is not in the event "
         "schema " LD_SOURCE_DIR "/schemas/event.avsc"},
        {16, "  hash_fields: [country, ad_id, \"ctx:zzz\"]",
         "16:33: pipeline.hash_fields[2]: field 'zzz' is not in the event "
         "schema " LD_SOURCE_DIR "/schemas/event.avsc"},
        {14, "  label_field: clickd",
         "14:16: pipeline.label_field: field 'clickd' is not in the label "
         "schema " LD_SOURCE_DIR "/schemas/label.avsc"},
        {13, "  key_field: id",
         "13:14: pipeline.key_field: field 'id' is not in the event "
         "schema " LD_SOURCE_DIR "/schemas/event.avsc"},
        {18, "  event_time_field: ts",
         "18:21: pipeline.event_time_field: field 'ts' is not in the event "
         "schema " LD_SOURCE_DIR "/schemas/event.avsc"},
        {17, "  crosses: [[country, nope]]",
         "17:13: pipeline.crosses[0]: 'nope' is not a namespace of "
         "hash_fields (country, ad_id)"},
        /* a typo in hash_fields meets the cross first: the namespaces
         * listed show it */
        {16, "  hash_fields: [contry, ad_id]",
         "17:13: pipeline.crosses[0]: 'country' is not a namespace of "
         "hash_fields (contry, ad_id)"},
        /* label_mode equals without label_equals would train on
         * default_neg only */
        {14, "  label_field: clicked\n  label_mode: equals",
         "7:1: pipeline.label_equals: empty with label_mode equals (no label "
         "record could be a 1: give the text of a positive, e.g. click)"},
        {14,
         "  label_field: clicked\n  label_mode: equals\n"
         "  label_equals: \"\"",
         "16:17: pipeline.label_equals: empty with label_mode equals (no "
         "label record could be a 1: give the text of a positive, e.g. "
         "click)"},
        {12, "  label_schema: /nonexistent/label.avsc",
         "12:17: pipeline.label_schema: cannot read schema "
         "'/nonexistent/label.avsc': No such file or directory"},
        {11, "  event_schema: " LD_SOURCE_DIR "/schemas",
         "11:17: pipeline.event_schema: schema '" LD_SOURCE_DIR
         "/schemas' is not a regular file"},
        {6, "  listen: localhost",
         "6:11: metrics.listen: 'localhost' is not an IPv4 or IPv6 address "
         "such as 127.0.0.1, 0.0.0.0, ::1 or :: (the port is metrics.port)"},
        {6, "  listen: 127.0.0.1:9464",
         "6:11: metrics.listen: '127.0.0.1:9464' is not an IPv4 or IPv6 "
         "address such as 127.0.0.1, 0.0.0.0, ::1 or :: (the port is "
         "metrics.port)"},
        {6, "  listen: \"[::1]\"",
         "6:11: metrics.listen: '[::1]' is not an IPv4 or IPv6 address "
         "such as 127.0.0.1, 0.0.0.0, ::1 or :: (the port is metrics.port)"},
        {8, "  group_id: \"\"\n  events_topic: events",
         "8:13: pipeline.group_id: empty consumer group"},
        {8, "  events_topic: \"\"",
         "8:17: pipeline.events_topic: empty "
         "topic name"},
        {9, "  labels_topic: a/b",
         "9:17: pipeline.labels_topic: topic names take only ASCII letters, "
         "digits, '.', '_' and '-'"},
        {2, "  no.such.property: 1",
         "2:3: kafka.no.such.property: unknown librdkafka property"},
        {2, "  bootstrap.servers: ${LD_TEST_BOOT",
         "2:22: kafka.bootstrap.servers: unterminated ${ (no closing '}')"},
        {4, "  name: ../../etc",
         "4:9: trainer.name: '../../etc' is not a model name: 1 to 128 of "
         "A-Z a-z 0-9 . _ -, not starting with '.' (it names a directory of "
         "the model store and prefixes Kafka keys)"},
        {4, "  name: /abs",
         "4:9: trainer.name: '/abs' is not a model name: 1 to 128 of A-Z "
         "a-z 0-9 . _ -, not starting with '.' (it names a directory of the "
         "model store and prefixes Kafka keys)"},
        {4, "  name: a/b",
         "4:9: trainer.name: 'a/b' is not a model name: 1 to 128 of A-Z a-z "
         "0-9 . _ -, not starting with '.' (it names a directory of the "
         "model store and prefixes Kafka keys)"},
        {4, "  name: \"\"",
         "4:9: trainer.name: '' is not a model name: 1 to 128 of A-Z a-z "
         "0-9 . _ -, not starting with '.' (it names a directory of the "
         "model store and prefixes Kafka keys)"},
        {19, "  dlq_topic: events",
         "19:14: pipeline.dlq_topic: 'events' is also pipeline.events_topic; "
         "one topic cannot serve two roles (dead letters fed back into an "
         "input multiply)"},
        {8, "  events_topic: learnd.triggers",
         "8:17: pipeline.events_topic: 'learnd.triggers' is also "
         "daemon.trigger_topic; one topic cannot serve two roles (dead "
         "letters fed back into an input multiply)"},
        {3, "checkpoint: {manifest_secret: short}\ntrainer:",
         "3:31: checkpoint.manifest_secret: shorter than 16 bytes (value not "
         "shown); generate one with `openssl rand -hex 32`"},
        {4, "  dense_dim: 3",
         "4:14: trainer.dense_dim: 3, but pipeline.dense_fields names 2 "
         "fields (leave dense_dim at 0 to follow them)"},
    };
    const char *path = "test_config_refusal.yaml";
    unsetenv("LD_TEST_BOOT");
    write_variant(path, 0, NULL);
    char errs[4096] = "";
    ld_config_t *conf = load(path, errs, sizeof(errs));
    assert_string_equal(errs, "");
    assert_non_null(conf);
    ld_config_destroy(conf);
    /* IPv6 listen addresses pass the same check (issue 17). */
    static const char *const v6[] = {"  listen: \"::\"", "  listen: \"::1\"",
                                     "  listen: \"fe80::1%lo\"",
                                     "  listen: 0.0.0.0"};
    for (size_t i = 0; i < sizeof(v6) / sizeof(v6[0]); i++) {
        write_variant(path, 6, v6[i]);
        memset(errs, 0, sizeof(errs));
        conf = load(path, errs, sizeof(errs));
        assert_string_equal(errs, "");
        assert_non_null(conf);
        ld_config_destroy(conf);
    }
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        write_variant(path, cases[i].line, cases[i].text);
        memset(errs, 0, sizeof(errs));
        conf = load(path, errs, sizeof(errs));
        char want[1024];
        snprintf(want, sizeof(want), "%s:%s\n", path, cases[i].want);
        if (strcmp(errs, want) != 0)
            print_message("case %zu (%s)\n", i, cases[i].text);
        assert_string_equal(errs, want);
        assert_null(conf);
    }
    remove(path);
}

/* A model name is one safe path component. */
static void test_model_names(void **state)
{
    (void)state;
    assert_true(ld_publish_name_ok("ctr"));
    assert_true(ld_publish_name_ok("ctr-v2.1_eu"));
    assert_false(ld_publish_name_ok(NULL));
    assert_false(ld_publish_name_ok(""));
    assert_false(ld_publish_name_ok("."));
    assert_false(ld_publish_name_ok(".."));
    assert_false(ld_publish_name_ok("../x"));
    assert_false(ld_publish_name_ok(".hidden"));
    assert_false(ld_publish_name_ok("/tmp/x"));
    assert_false(ld_publish_name_ok("a/b"));
    assert_false(ld_publish_name_ok("a b"));
    assert_false(ld_publish_name_ok("a\nb"));
    assert_false(ld_publish_name_ok("caf\xc3\xa9"));
    char longest[LD_CKPT_NAME_MAX + 2];
    memset(longest, 'a', sizeof(longest));
    longest[LD_CKPT_NAME_MAX] = '\0';
    assert_true(ld_publish_name_ok(longest));
    longest[LD_CKPT_NAME_MAX] = 'a';
    longest[LD_CKPT_NAME_MAX + 1] = '\0';
    assert_false(ld_publish_name_ok(longest));
}

static void test_syntax_error(void **state)
{
    (void)state;
    const char *path = "test_config_syntax.yaml";
    write_file(path, "pipeline:\n  events_topic: [a\n");
    char errs[1024] = "";
    assert_null(load(path, errs, sizeof(errs)));
    char want[512];
    snprintf(want, sizeof(want),
             "%s:3:1: YAML syntax error: did not find expected ',' or "
             "']'\n",
             path);
    assert_string_equal(errs, want);
    remove(path);
}

static void test_value_parsing(void **state)
{
    (void)state;
    struct s {
        int64_t d, z;
        double x;
    } v = {0, 0, 0};
    ld_conf_row_t dur = {
        "d", LD_CONF_DURATION, offsetof(struct s, d), "1s", 0, 1e12, NULL, ""};
    ld_conf_row_t size = {
        "z", LD_CONF_SIZE, offsetof(struct s, z), "1", 0, 1e12, NULL, ""};
    ld_conf_row_t dbl = {
        "x", LD_CONF_DOUBLE, offsetof(struct s, x), "1", -1, 1, NULL, ""};
    char why[256];
    assert_int_equal(ld_conf_parse_value(&dur, "250ms", &v, why, 256), 0);
    assert_int_equal(v.d, 250);
    assert_int_equal(ld_conf_parse_value(&dur, "10m", &v, why, 256), 0);
    assert_int_equal(v.d, 600000);
    assert_int_equal(ld_conf_parse_value(&dur, "1.5s", &v, why, 256), 0);
    assert_int_equal(v.d, 1500);
    assert_int_equal(ld_conf_parse_value(&dur, "2d", &v, why, 256), 0);
    assert_int_equal(v.d, 172800000);
    assert_int_equal(ld_conf_parse_value(&dur, "5 parsecs", &v, why, 256),
                     LD_ERR_CONFIG);
    assert_int_equal(ld_conf_parse_value(&size, "64KiB", &v, why, 256), 0);
    assert_int_equal(v.z, 65536);
    assert_int_equal(ld_conf_parse_value(&size, "0.5B", &v, why, 256),
                     LD_ERR_CONFIG);
    assert_int_equal(ld_conf_parse_value(&dbl, "-0.25", &v, why, 256), 0);
    assert_true(v.x == -0.25);
    assert_int_equal(ld_conf_parse_value(&dbl, "nan", &v, why, 256),
                     LD_ERR_CONFIG);
    assert_int_equal(ld_conf_parse_value(&dbl, "1.5", &v, why, 256),
                     LD_ERR_RANGE);
    assert_string_equal(why, "value 1.5 out of range [-1, 1]");
}

static void test_defaults_parse(void **state)
{
    (void)state;
    /* Every table default parses: a bad default is a bug in a table. */
    ld_config_t *conf = ld_config_new_defaults();
    assert_non_null(conf);
    assert_int_equal(conf->daemon.commit_interval_ms, 5000);
    assert_int_equal(conf->trainer.hash_bits, 18);
    assert_string_equal(conf->metrics.listen, "127.0.0.1");
    ld_config_destroy(conf);
    ld_config_destroy(NULL);
}

/* label_mode equals and presence make every label 1, so aggregate sum
 * counts them; a logistic model takes labels in [0, 1]. learnd run says so
 * and exits 2 before it opens any connection (docs/LABELING.md). */
static int stop_now(void *opaque)
{
    (void)opaque;
    return 1;
}

static void test_run_refuses_sum_of_ones(void **state)
{
    (void)state;
    ld_config_t *conf = ld_config_new_defaults();
    assert_non_null(conf);
    assert_int_equal(conf->trainer.model, LD_MODEL_LOGISTIC);
    conf->labeling.aggregate = LD_AGG_SUM;
    conf->metrics.enabled = 0;
    /* Without the check the run would start: stop it at once (exit 0). */
    const ld_run_hooks_t hooks = {.should_stop = stop_now};
    const ld_run_opts_t opts = {.until_caught_up = 1, .hooks = &hooks};
    static const int modes[] = {LD_LABEL_EQUALS, LD_LABEL_PRESENCE};
    for (size_t i = 0; i < 2; i++) {
        conf->pipeline.label_mode = modes[i];
        assert_int_equal(ld_run(conf, &opts), 2);
    }
    ld_config_destroy(conf);
}

static void test_secret_keys(void **state)
{
    (void)state;
    assert_true(ld_conf_key_is_secret("sasl.password"));
    assert_true(ld_conf_key_is_secret("sasl.oauthbearer.config"));
    assert_true(ld_conf_key_is_secret("ssl.key.password"));
    assert_true(ld_conf_key_is_secret("api_SECRET"));
    assert_false(ld_conf_key_is_secret("bootstrap.servers"));
    assert_false(ld_conf_key_is_secret("ssl.ca.location"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_file),
        cmocka_unit_test(test_three_errors),
        cmocka_unit_test(test_env_and_secrets),
        cmocka_unit_test(test_missing_required_and_types),
        cmocka_unit_test(test_nested_list),
        cmocka_unit_test(test_experiments_section),
        cmocka_unit_test(test_run_refusals),
        cmocka_unit_test(test_model_names),
        cmocka_unit_test(test_syntax_error),
        cmocka_unit_test(test_value_parsing),
        cmocka_unit_test(test_defaults_parse),
        cmocka_unit_test(test_secret_keys),
        cmocka_unit_test(test_run_refuses_sum_of_ones),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
