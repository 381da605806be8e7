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
    assert_string_equal(small, "\"...\"");

    /* Issue 15 item 7: values with spaces are quoted (model="a b"), and no
     * byte of a value can end the line or pass to a terminal raw. */
    assert_string_equal(ld_log_q("a b"), "\"a b\"");
    assert_string_equal(ld_log_q("x=1"), "\"x=1\"");
    assert_string_equal(ld_log_q("a\r\nlevel=crit\t\x1b[2J\x7f\\"),
                        "\"a\\r\\nlevel=crit\\t\\u001b[2J\\u007f\\\\\"");
    assert_string_equal(ld_log_q(NULL), "\"\"");
    assert_string_equal(ld_log_q("/var/lib/learnd"), "/var/lib/learnd");
    /* Cut at the buffer: whole escapes only, and "..." says so. */
    char cut[12];
    ld_log_quote(cut, sizeof(cut),
                 "ab\x01"
                 "cdefgh");
    assert_string_equal(cut, "\"ab...\"");
    ld_log_quote(cut, sizeof(cut), "abcdefghijklmnop");
    assert_string_equal(cut, "\"abcdef...\"");
    /* Eight results stay valid together: one ld_log() line's worth. */
    const char *q[8];
    char v[8][4];
    for (int i = 0; i < 8; i++) {
        snprintf(v[i], sizeof(v[i]), "%d %d", i, i);
        q[i] = ld_log_q(v[i]);
    }
    for (int i = 0; i < 8; i++) {
        char w[16];
        snprintf(w, sizeof(w), "\"%d %d\"", i, i);
        assert_string_equal(q[i], w);
    }
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
