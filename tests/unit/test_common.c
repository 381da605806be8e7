/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of common/: error strings, log levels, logfmt quoting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "common/common.h"

static void test_err_str(void **state)
{
    (void)state;
    assert_string_equal(ld_err_str(LD_OK), "success");
    assert_string_equal(ld_err_str(LD_ERR_CORRUPT),
                        "corrupt or truncated data");
    assert_string_equal(ld_err_str((ld_err_t)-999), "unknown error");
}

static void test_level_parse(void **state)
{
    (void)state;
    ld_log_level_t l;
    assert_int_equal(ld_log_level_parse("debug", &l), LD_OK);
    assert_int_equal(l, LD_LOG_DEBUG);
    assert_int_equal(ld_log_level_parse("warning", &l), LD_OK);
    assert_int_equal(l, LD_LOG_WARN);
    assert_int_equal(ld_log_level_parse("loud", &l), LD_ERR_INVAL);
    assert_string_equal(ld_log_level_name(LD_LOG_ERR), "error");
}

static void test_quote(void **state)
{
    (void)state;
    char buf[64];
    assert_string_equal(ld_log_quote(buf, sizeof(buf), "plain"), "plain");
    assert_string_equal(ld_log_quote(buf, sizeof(buf), "two words"),
                        "\"two words\"");
    assert_string_equal(ld_log_quote(buf, sizeof(buf), "a\"b\nc"),
                        "\"a\\\"b\\nc\"");
    assert_string_equal(ld_log_quote(buf, sizeof(buf), ""), "\"\"");
    char small[6];
    ld_log_quote(small, sizeof(small), "abc def ghi");
    assert_true(strlen(small) < sizeof(small));
}

static void test_debug_modules(void **state)
{
    (void)state;
    ld_log_set_level(LD_LOG_INFO);
    assert_false(ld_log_debug_on("trainer"));
    ld_log_debug_enable("trainer");
    assert_true(ld_log_debug_on("trainer"));
    assert_false(ld_log_debug_on("pipeline"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_err_str),
        cmocka_unit_test(test_level_parse),
        cmocka_unit_test(test_quote),
        cmocka_unit_test(test_debug_modules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
