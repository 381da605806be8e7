/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the metrics registry and its HTTP endpoint. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
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

/* ---- Slow and idle clients ---------------------------------------------- */

#define SLOW_CONNS  2000 /* held at once: half idle, half trickling */
#define SLOW_PER_IP 16   /* the server's per-address limit */

/* A TCP connection from 127.0.0.<src> to 127.0.0.1:port; -1 when refused. */
static int connect_from(unsigned src, uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(0x7f000000u | src);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(0x7f000001u);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* 1 when the server closed fd (EOF or reset) within ms. */
static int closed_within(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    char c;
    int64_t end = ld_now_mono_ms() + ms;
    for (;;) {
        int64_t left = end - ld_now_mono_ms();
        if (left <= 0)
            return 0;
        if (poll(&p, 1, (int)left) == 1) {
            ssize_t r = recv(fd, &c, 1, 0);
            return r == 0 || (r < 0 && errno == ECONNRESET);
        }
    }
}

/* GET /healthz from 127.0.0.1 with a 2 s bound on every step; returns the
 * status (0 when it did not come) and the time it took in *ms. */
static int probe(uint16_t port, int64_t *ms)
{
    int64_t t0 = ld_now_mono_ms();
    int fd = socket(AF_INET, SOCK_STREAM, 0), status = 0;
    assert_true(fd >= 0);
    struct timeval tv = {.tv_sec = 2};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(0x7f000001u);
    static const char req[] = "GET /healthz HTTP/1.0\r\n\r\n";
    char resp[512];
    size_t len = 0;
    ssize_t r;
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        write(fd, req, sizeof(req) - 1) == (ssize_t)sizeof(req) - 1) {
        while (len < sizeof(resp) - 1 &&
               (r = read(fd, resp + len, sizeof(resp) - 1 - len)) > 0)
            len += (size_t)r;
        resp[len] = '\0';
        if (sscanf(resp, "HTTP/1.%*d %d", &status) != 1)
            status = 0;
    }
    close(fd);
    *ms = ld_now_mono_ms() - t0;
    return status;
}

/* Sends one more header byte on every slow connection. */
static void trickle(const int *fd, int n)
{
    for (int i = 1; i < n; i += 2)
        assert_int_equal(send(fd[i], "x", 1, MSG_NOSIGNAL), 1);
}

/* 2 000 connections that never finish a request (half idle, half sending a
 * header byte now and then), from 125 loopback addresses, held at once:
 * /healthz still answers within 1 s, one address gets no more than 16
 * connections, and the idle ones are closed after the 5 s timeout. A
 * select()-mode server with a 10 s timeout and no per-client limit refused
 * every probe once its fds passed FD_SETSIZE. */
static void test_http_slowloris(void **state)
{
    (void)state;
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < 2 * SLOW_CONNS + 256 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max; /* both ends of every connection here */
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
    }
    if (rl.rlim_cur < 2 * SLOW_CONNS + 256) {
        print_message("fd limit %llu < %d: cannot hold the connections\n",
                      (unsigned long long)rl.rlim_cur, 2 * SLOW_CONNS + 256);
        skip();
    }
    ld_metrics_t *m = ld_metrics_new();
    char errstr[256];
    ld_http_t *h =
        ld_http_start(m, "127.0.0.1", 0, 60000, errstr, sizeof(errstr));
    assert_non_null(h);
    uint16_t port = ld_http_port(h);
    static int fd[SLOW_CONNS];
    for (int i = 0; i < SLOW_CONNS; i++) {
        fd[i] = connect_from(2u + (unsigned)i / SLOW_PER_IP, port);
        assert_true(fd[i] >= 0);
        /* odd ones start a request they never finish */
        if (i % 2)
            assert_int_equal(
                send(fd[i], "GET /healthz HTTP/1.1\r\nX-", 26, MSG_NOSIGNAL),
                26);
    }
    /* the server holds every one of them */
    int64_t end = ld_now_mono_ms() + 5000;
    while (ld_http_connections(h) < SLOW_CONNS && ld_now_mono_ms() < end)
        poll(NULL, 0, 10);
    assert_int_equal(ld_http_connections(h), SLOW_CONNS);

    /* probes keep being answered, within 1 s each */
    int64_t worst = 0, ms;
    for (int i = 0; i < 10; i++) {
        trickle(fd, SLOW_CONNS);
        assert_int_equal(probe(port, &ms), 200);
        assert_true(ms < 1000);
        worst = ms > worst ? ms : worst;
        poll(NULL, 0, 200);
    }
    print_message("/healthz with %d slow and idle connections held: "
                  "worst of 10 probes %lld ms\n",
                  SLOW_CONNS, (long long)worst);

    /* a 17th connection from an address holding 16 is closed at once */
    int extra = connect_from(2, port);
    assert_true(extra < 0 || closed_within(extra, 2000));
    if (extra >= 0)
        close(extra);

    /* the idle half is closed after the 5 s timeout, the trickling half
     * stays; the probe still answers */
    end = ld_now_mono_ms() + 9000;
    while (ld_http_connections(h) > SLOW_CONNS / 2 && ld_now_mono_ms() < end) {
        trickle(fd, SLOW_CONNS);
        poll(NULL, 0, 500);
    }
    assert_int_equal(ld_http_connections(h), SLOW_CONNS / 2);
    assert_true(closed_within(fd[0], 1000));
    assert_int_equal(probe(port, &ms), 200);
    assert_true(ms < 1000);

    for (int i = 0; i < SLOW_CONNS; i++)
        close(fd[i]);
    ld_http_stop(h);
    ld_metrics_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_http),
        cmocka_unit_test(test_http_slowloris),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
