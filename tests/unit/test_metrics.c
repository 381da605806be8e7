/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the metrics registry and its HTTP endpoint. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon/metrics.h"

/* GETs path from 127.0.0.1:port; returns the status code and copies the
 * body into body. */
static int http_get(uint16_t port, const char *path, char *body, size_t size)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    char req[256];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n", path);
    assert_int_equal(write(fd, req, (size_t)n), n);
    static char resp[65536];
    size_t len = 0;
    ssize_t r;
    while ((r = read(fd, resp + len, sizeof(resp) - 1 - len)) > 0)
        len += (size_t)r;
    close(fd);
    resp[len] = '\0';
    int status = 0;
    assert_int_equal(sscanf(resp, "HTTP/1.%*d %d", &status), 1);
    const char *b = strstr(resp, "\r\n\r\n");
    assert_non_null(b);
    snprintf(body, size, "%s", b + 4);
    return status;
}

static void test_render(void **state)
{
    (void)state;
    ld_metrics_t *m = ld_metrics_new();
    int dlq = ld_metrics_family(m, "dlq_records_total", LD_METRIC_COUNTER,
                                "Records sent to the dead-letter topic");
    int pend = ld_metrics_family(m, "pending_events", LD_METRIC_GAUGE,
                                 "Events waiting for their label");
    assert_int_equal(
        ld_metrics_family(m, "pending_events", LD_METRIC_GAUGE, "again"), pend);
    ld_metrics_add(m, dlq, "reason=\"decode\"", 2);
    ld_metrics_add(m, dlq, "reason=\"decode\"", 1);
    ld_metrics_add(m, dlq, "reason=\"nan\"", 1);
    ld_metrics_set(m, pend, "", 42);
    assert_true(ld_metrics_get(m, dlq, "reason=\"decode\"") == 3.0);
    assert_true(isnan(ld_metrics_get(m, dlq, "reason=\"none\"")));
    char *text = ld_metrics_render(m);
    assert_string_equal(
        text, "# HELP learnd_dlq_records_total Records sent to the "
              "dead-letter topic\n"
              "# TYPE learnd_dlq_records_total counter\n"
              "learnd_dlq_records_total{reason=\"decode\"} 3\n"
              "learnd_dlq_records_total{reason=\"nan\"} 1\n"
              "# HELP learnd_pending_events Events waiting for their label\n"
              "# TYPE learnd_pending_events gauge\n"
              "learnd_pending_events 42\n");
    free(text);
    ld_metrics_destroy(m);
    ld_metrics_destroy(NULL);
}

static void test_http(void **state)
{
    (void)state;
    ld_metrics_t *m = ld_metrics_new();
    int c = ld_metrics_family(m, "examples_total", LD_METRIC_COUNTER,
                              "Examples trained on");
    ld_metrics_add(m, c, "sample_type=\"pos\"", 7);
    char errstr[256];
    ld_http_t *h =
        ld_http_start(m, "127.0.0.1", 0, 60000, errstr, sizeof(errstr));
    assert_non_null(h);
    uint16_t port = ld_http_port(h);
    assert_true(port > 0);
    char body[8192];
    assert_int_equal(http_get(port, "/metrics", body, sizeof(body)), 200);
    assert_non_null(
        strstr(body, "learnd_examples_total{sample_type=\"pos\"} 7\n"));
    assert_int_equal(http_get(port, "/readyz", body, sizeof(body)), 503);
    ld_metrics_set_ready(m, 1);
    assert_int_equal(http_get(port, "/readyz", body, sizeof(body)), 200);
    assert_string_equal(body, "ready\n");
    assert_int_equal(http_get(port, "/healthz", body, sizeof(body)), 200);
    assert_int_equal(http_get(port, "/nope", body, sizeof(body)), 404);
    ld_http_stop(h);

    /* A run loop that stopped beating fails /healthz. */
    h = ld_http_start(m, "127.0.0.1", 0, 1, errstr, sizeof(errstr));
    assert_non_null(h);
    int64_t t0 = ld_now_mono_ms();
    while (ld_now_mono_ms() - t0 < 5) /* age the heartbeat past 1 ms */
        ;
    assert_int_equal(http_get(ld_http_port(h), "/healthz", body, sizeof(body)),
                     503);
    ld_http_stop(h);
    ld_http_stop(NULL);

    assert_null(
        ld_http_start(m, "localhost-ish", 0, 0, errstr, sizeof(errstr)));
    assert_string_equal(errstr,
                        "metrics.listen: 'localhost-ish' is not an IPv4 "
                        "address");
    ld_metrics_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_http),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
