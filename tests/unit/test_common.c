/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of common/: error strings, log levels, logfmt quoting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* Logs one error and one info line with stderr on a fresh temp file and
 * JOURNAL_STREAM set to env (NULL: unset; "@": the file's own dev:ino),
 * and returns what reached the file. */
static const char *log_to_stderr_file(const char *env)
{
    static char out[1024];
    char path[] = "/tmp/ld-test-journal.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    char own[64];
    snprintf(own, sizeof(own), "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
    if (!env)
        unsetenv("JOURNAL_STREAM");
    else
        setenv("JOURNAL_STREAM", strcmp(env, "@") == 0 ? own : env, 1);
    assert_int_equal(ld_log_open(NULL), LD_OK); /* checks again */
    ld_log_set_level(LD_LOG_INFO);
    ld_log(LD_LOG_ERR, "test", "msg=one");
    ld_log(LD_LOG_INFO, "test", "msg=two");
    ld_log(LD_LOG_DEBUG, "test", "msg=hidden");
    assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
    close(saved);
    ssize_t n = pread(fd, out, sizeof(out) - 1, 0);
    assert_true(n > 0);
    out[n] = '\0';
    close(fd);
    unsetenv("JOURNAL_STREAM");
    assert_int_equal(ld_log_open(NULL), LD_OK);
    return out;
}

/* Whether line i (0-based) of text starts with prefix. */
static int line_starts(const char *text, int i, const char *prefix)
{
    for (; i > 0 && text; i--) {
        text = strchr(text, '\n');
        text = text ? text + 1 : NULL;
    }
    return text && strncmp(text, prefix, strlen(prefix)) == 0;
}

/* Issue 17: under systemd, with stderr the journal's stream, every line
 * starts with its syslog priority ("<3>" for error) so `journalctl -p err`
 * works; anywhere else the lines are unchanged. */
static void test_journal_prefix(void **state)
{
    (void)state;
    const char *t = log_to_stderr_file("@");
    assert_true(line_starts(t, 0, "<3>ts="));
    assert_non_null(strstr(t, " level=error mod=test msg=one\n<6>ts="));
    assert_true(line_starts(t, 1, "<6>ts="));
    assert_non_null(strstr(t, " level=info mod=test msg=two\n"));
    assert_null(strstr(t, "hidden"));

    /* stderr is not the stream JOURNAL_STREAM names (redirected), the
     * variable is malformed, or absent: no prefix */
    static const char *const others[] = {"1:2", "garbage", "12:34x", "", NULL};
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        t = log_to_stderr_file(others[i]);
        assert_true(line_starts(t, 0, "ts="));
        assert_true(line_starts(t, 1, "ts="));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_err_str),
        cmocka_unit_test(test_level_parse),
        cmocka_unit_test(test_quote),
        cmocka_unit_test(test_debug_modules),
        cmocka_unit_test(test_journal_prefix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
