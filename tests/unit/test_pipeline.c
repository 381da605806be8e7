/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of pipeline/: librdkafka configuration and log routing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/kafka.h"

static void test_conf_passthrough(void **state)
{
    (void)state;
    char *kv[] = {"bootstrap.servers", "127.0.0.1:1", "linger.ms", "7"};
    ld_strlist_t props = {kv, 4};
    char errstr[256] = "";
    rd_kafka_conf_t *conf = ld_kafka_conf_new(&props, errstr, sizeof(errstr));
    assert_non_null(conf);
    char val[64];
    size_t sz = sizeof(val);
    assert_int_equal(rd_kafka_conf_get(conf, "linger.ms", val, &sz),
                     RD_KAFKA_CONF_OK);
    assert_string_equal(val, "7");
    rd_kafka_conf_destroy(conf);
}

static void test_conf_errors(void **state)
{
    (void)state;
    char *bad[] = {"no.such.property", "1"};
    ld_strlist_t props = {bad, 2};
    char errstr[256] = "";
    assert_null(ld_kafka_conf_new(&props, errstr, sizeof(errstr)));
    assert_string_equal(errstr, "kafka.no.such.property: No such configuration "
                                "property: \"no.such.property\"");

    /* An invalid secret is reported without its value. */
    char *secret[] = {"sasl.kerberos.min.time.before.relogin", "TOPSECRET"};
    ld_strlist_t sprops = {secret, 2};
    assert_null(ld_kafka_conf_new(&sprops, errstr, sizeof(errstr)));
    assert_string_equal(errstr,
                        "kafka.sasl.kerberos.min.time.before.relogin: invalid "
                        "value (secret, not shown)");
}

static void test_log_routing(void **state)
{
    (void)state;
    const char *path = "test_pipeline_kafka.log";
    remove(path);
    assert_int_equal(ld_log_open(path), LD_OK);
    ld_log_debug_enable("kafka");
    char *kv[] = {"debug", "generic", "client.id", "logtest"};
    ld_strlist_t props = {kv, 4};
    char errstr[256];
    rd_kafka_conf_t *conf = ld_kafka_conf_new(&props, errstr, sizeof(errstr));
    assert_non_null(conf);
    rd_kafka_t *rk =
        rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    assert_non_null(rk);
    rd_kafka_destroy(rk);
    assert_int_equal(ld_log_open(NULL), LD_OK);

    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[4096];
    int routed = 0;
    while (fgets(line, sizeof(line), f))
        if (strstr(line, " level=debug mod=kafka client=logtest#producer-") &&
            strncmp(line, "ts=", 3) == 0)
            routed++;
    fclose(f);
    assert_true(routed > 0);
    remove(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conf_passthrough),
        cmocka_unit_test(test_conf_errors),
        cmocka_unit_test(test_log_routing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
