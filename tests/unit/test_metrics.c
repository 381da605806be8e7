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
#include <time.h>
#include <unistd.h>

#include <dirent.h>
#include <librdkafka/rdkafka.h>
#include <protobuf-c/protobuf-c.h>

#include "daemon/metrics.h"
#include "daemon/version.h"

/* GETs path from host:port (an IPv4 or IPv6 literal); returns the status
 * code and copies the body into body. */
static int http_get_from(const char *host, uint16_t port, const char *path,
                         char *body, size_t size)
{
    struct sockaddr_storage ss = {0};
    socklen_t len;
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(port);
        len = sizeof(*a4);
    } else {
        assert_int_equal(inet_pton(AF_INET6, host, &a6->sin6_addr), 1);
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(port);
        len = sizeof(*a6);
    }
    int fd = socket(ss.ss_family, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&ss, len), 0);
    char req[256];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n", path);
    assert_int_equal(write(fd, req, (size_t)n), n);
    static char resp[65536];
    size_t got = 0;
    ssize_t r;
    while ((r = read(fd, resp + got, sizeof(resp) - 1 - got)) > 0)
        got += (size_t)r;
    close(fd);
    resp[got] = '\0';
    int status = 0;
    assert_int_equal(sscanf(resp, "HTTP/1.%*d %d", &status), 1);
    const char *b = strstr(resp, "\r\n\r\n");
    assert_non_null(b);
    snprintf(body, size, "%s", b + 4);
    return status;
}

static int http_get(uint16_t port, const char *path, char *body, size_t size)
{
    return http_get_from("127.0.0.1", port, path, body, size);
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

    /* Values: the shortest form that reads back exactly, and the
     * exposition format's spellings of NaN and the infinities. */
    m = ld_metrics_new();
    int g = ld_metrics_family(m, "g", LD_METRIC_GAUGE, "h");
    ld_metrics_set(m, g, "v=\"a\"", 0.1);
    ld_metrics_set(m, g, "v=\"b\"", 1.0 / 3.0);
    ld_metrics_set(m, g, "v=\"c\"", 0.1 + 0.2);
    ld_metrics_set(m, g, "v=\"d\"", NAN);
    ld_metrics_set(m, g, "v=\"e\"", -INFINITY);
    ld_metrics_set(m, g, "v=\"f\"", 1e300);
    text = ld_metrics_render(m);
    assert_string_equal(text, "# HELP learnd_g h\n# TYPE learnd_g gauge\n"
                              "learnd_g{v=\"a\"} 0.1\n"
                              "learnd_g{v=\"b\"} 0.3333333333333333\n"
                              "learnd_g{v=\"c\"} 0.30000000000000004\n"
                              "learnd_g{v=\"d\"} NaN\n"
                              "learnd_g{v=\"e\"} -Inf\n"
                              "learnd_g{v=\"f\"} 1e+300\n");
    free(text);
    ld_metrics_destroy(m);

    /* A summary: quantile series, then _sum and _count without labels. */
    m = ld_metrics_new();
    int d = ld_metrics_family(m, "delay_seconds", LD_METRIC_SUMMARY, "h");
    ld_metrics_set(m, d, "quantile=\"0.5\"", 0.25);
    ld_metrics_set(m, d, "_sum", 3);
    ld_metrics_set(m, d, "_count", 7);
    text = ld_metrics_render(m);
    assert_string_equal(text, "# HELP learnd_delay_seconds h\n"
                              "# TYPE learnd_delay_seconds summary\n"
                              "learnd_delay_seconds{quantile=\"0.5\"} 0.25\n"
                              "learnd_delay_seconds_sum 3\n"
                              "learnd_delay_seconds_count 7\n");
    free(text);
    ld_metrics_destroy(m);
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
    /* /experiments: 404 until the run loop sets the document, then the
     * whole of it, or one experiment's object by name (issue #20) */
    assert_int_equal(http_get(port, "/experiments", body, sizeof(body)), 404);
    ld_metrics_set_experiments(
        m, strdup("{\"experiments\":[{\"name\":\"ctr\",\"verdict\":"
                  "\"PROMOTE\"},{\"name\":\"arms\",\"verdict\":"
                  "\"CONTINUE\"}],\"variants\":[]}"));
    assert_int_equal(http_get(port, "/experiments", body, sizeof(body)), 200);
    assert_non_null(strstr(body, "\"name\":\"arms\""));
    assert_int_equal(http_get(port, "/experiments/ctr", body, sizeof(body)),
                     200);
    assert_string_equal(body, "{\"name\":\"ctr\",\"verdict\":\"PROMOTE\"}");
    assert_int_equal(http_get(port, "/experiments/nope", body, sizeof(body)),
                     404);
    assert_string_equal(body, "no such experiment\n");
    assert_int_equal(http_get(port, "/experiments/", body, sizeof(body)), 404);
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
                        "metrics.listen: 'localhost-ish' is not an IPv4 or "
                        "IPv6 address such as 127.0.0.1, 0.0.0.0, ::1 or :: "
                        "(the port is metrics.port)");
    /* inet_aton's shorthand and bracketed or host:port forms are refused */
    static const char *const bad[] = {"127.1", "[::1]", "::1:9464x",
                                      "",      " ::1",  "127.0.0.1:9464"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(ld_http_listen_check(bad[i], errstr, sizeof(errstr)),
                         LD_ERR_INVAL);
    assert_int_equal(ld_http_listen_check(NULL, errstr, sizeof(errstr)),
                     LD_ERR_INVAL);
    static const char *const good[] = {"0.0.0.0", "::", "::1", "fe80::1%lo",
                                       "::ffff:127.0.0.1"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_int_equal(ld_http_listen_check(good[i], errstr, sizeof(errstr)),
                         LD_OK);
    ld_metrics_destroy(m);
}

/* 1 when the kernel has an IPv6 loopback (::1 can be bound); 0 skips the
 * IPv6 tests, which is the only reason they may not run. */
static int have_ipv6_loopback(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in6 a = {.sin6_family = AF_INET6};
    a.sin6_addr = in6addr_loopback;
    int ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

/* metrics.listen "::1" serves over IPv6 (only), "::" over both families
 * (issue 17); the base URL brackets the address. */
static void test_http_ipv6(void **state)
{
    (void)state;
    if (!have_ipv6_loopback()) {
        print_message("no IPv6 loopback in this kernel\n");
        skip();
    }
    ld_metrics_t *m = ld_metrics_new();
    int c = ld_metrics_family(m, "examples_total", LD_METRIC_COUNTER,
                              "Examples trained on");
    ld_metrics_add(m, c, "", 5);
    char errstr[256], body[65536], url[64];
    ld_http_t *h = ld_http_start(m, "::1", 0, 60000, errstr, sizeof(errstr));
    assert_non_null(h);
    uint16_t port = ld_http_port(h);
    assert_true(port > 0);
    snprintf(url, sizeof(url), "http://[::1]:%u/", (unsigned)port);
    assert_string_equal(ld_http_url(h), url);
    assert_int_equal(http_get_from("::1", port, "/healthz", body, sizeof(body)),
                     200);
    assert_string_equal(body, "ok\n");
    assert_int_equal(http_get_from("::1", port, "/metrics", body, sizeof(body)),
                     200);
    assert_non_null(strstr(body, "\nlearnd_examples_total 5\n"));
    /* bound to ::1 only: nothing answers on 127.0.0.1 at that port */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &a4.sin_addr);
    assert_int_not_equal(connect(fd, (struct sockaddr *)&a4, sizeof(a4)), 0);
    close(fd);
    ld_http_stop(h);

    /* "::": both families on one port */
    h = ld_http_start(m, "::", 0, 60000, errstr, sizeof(errstr));
    assert_non_null(h);
    port = ld_http_port(h);
    snprintf(url, sizeof(url), "http://[::]:%u/", (unsigned)port);
    assert_string_equal(ld_http_url(h), url);
    assert_int_equal(http_get_from("::1", port, "/healthz", body, sizeof(body)),
                     200);
    assert_int_equal(
        http_get_from("127.0.0.1", port, "/healthz", body, sizeof(body)), 200);
    assert_string_equal(body, "ok\n");
    ld_http_stop(h);

    h = ld_http_start(m, "127.0.0.1", 0, 60000, errstr, sizeof(errstr));
    assert_non_null(h);
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/",
             (unsigned)ld_http_port(h));
    assert_string_equal(ld_http_url(h), url);
    ld_http_stop(h);
    ld_metrics_destroy(m);
}

/* The value of the one sample of family name in a scrape (the line that
 * starts with "name " or "name{"), with its labels copied into labels; NAN
 * when absent. Also checks that the family's TYPE line says type. */
static double sample(const char *text, const char *name, const char *type,
                     char *labels, size_t size)
{
    char want[128];
    snprintf(want, sizeof(want), "\n# TYPE %s %s\n", name, type);
    const char *t = strstr(text, want);
    if (!t)
        return NAN;
    const char *line = t + strlen(want);
    size_t n = strlen(name);
    assert_memory_equal(line, name, n);
    const char *v = line + n;
    if (labels && size)
        labels[0] = '\0';
    if (*v == '{') {
        const char *close = strstr(v, "} ");
        assert_non_null(close);
        if (labels)
            snprintf(labels, size, "%.*s", (int)(close - v - 1), v + 1);
        v = close + 1;
    }
    assert_true(*v == ' ');
    char *end;
    double d = strtod(v + 1, &end);
    assert_true(*end == '\n');
    return d;
}

/* Reads field (1-based, after the comm) of /proc/self/stat. */
static unsigned long long stat_field(int field)
{
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')') + 2; /* field 3 */
    for (int i = 3; i < field; i++)
        p = strchr(p, ' ') + 1;
    return strtoull(p, NULL, 10);
}

/* /metrics carries learnd_build_info and the Prometheus client libraries'
 * process_* families with this process's values (issue 17), after the
 * registry's families, which ld_metrics_render() alone still gives. */
static void test_scrape_process(void **state)
{
    (void)state;
    ld_metrics_t *m = ld_metrics_new();
    int c = ld_metrics_family(m, "examples_total", LD_METRIC_COUNTER,
                              "Examples trained on");
    ld_metrics_add(m, c, "", 3);
    char *reg = ld_metrics_render(m);
    assert_null(strstr(reg, "process_"));
    assert_null(strstr(reg, "build_info"));

    /* Burn about 0.3 s of CPU and hold 8 MiB resident, 3 more fds, so the
     * values have something to show. */
    volatile double x = 0;
    for (;;) { /* CPU time, not wall time: the machine may be busy */
        struct timespec ts;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
        if (ts.tv_sec * 1000 + ts.tv_nsec / 1000000 >= 300)
            break;
        for (int i = 0; i < 100000; i++)
            x += i * 1e-9;
    }
    size_t big = 8u << 20;
    char *mem = malloc(big);
    assert_non_null(mem);
    memset(mem, 1, big);
    int fds[3];
    for (int i = 0; i < 3; i++)
        fds[i] = open("/dev/null", O_RDONLY);

    char errstr[256];
    ld_http_t *h =
        ld_http_start(m, "127.0.0.1", 0, 60000, errstr, sizeof(errstr));
    assert_non_null(h);
    static char body[65536];
    assert_int_equal(http_get(ld_http_port(h), "/metrics", body, sizeof(body)),
                     200);
    /* The server's connection threads open and close sockets on their own
     * schedule; stop it so the fd counts below are this thread's alone. */
    ld_http_stop(h);
    char *text = ld_metrics_scrape(m);
    assert_non_null(text);
    /* the registry first, unchanged */
    assert_memory_equal(text, reg, strlen(reg));
    assert_memory_equal(body, reg, strlen(reg));
    /* and /metrics serves the same families, in the same order */
    static const char *const fams[] = {"learnd_build_info",
                                       "process_cpu_seconds_total",
                                       "process_virtual_memory_bytes",
                                       "process_resident_memory_bytes",
                                       "process_start_time_seconds",
                                       "process_open_fds",
                                       "process_max_fds"};
    const char *at = body + strlen(reg);
    for (size_t i = 0; i < sizeof(fams) / sizeof(fams[0]); i++) {
        char type[96];
        snprintf(type, sizeof(type), "# TYPE %s ", fams[i]);
        const char *f = strstr(at, type);
        assert_non_null(f);
        at = f;
    }

    char labels[512];
    assert_true(sample(text, "learnd_build_info", "gauge", labels,
                       sizeof(labels)) == 1.0);
    char want[512];
    snprintf(want, sizeof(want),
             "version=\"%s\",librdkafka=\"%s\",avro=\"%s\","
             "protobuf_c=\"%s\",openblas=\"%s\"",
             LD_VERSION, rd_kafka_version_str(), LD_AVRO_VERSION,
             protobuf_c_version(), LD_OPENBLAS_VERSION);
    assert_string_equal(labels, want);
    assert_true(strlen(LD_VERSION) > 0 && strcmp(LD_AVRO_VERSION, "") != 0);

    long tck = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    /* CPU: the 0.3 s burnt (less a clock tick of /proc's rounding), at
     * most what /proc says a moment later */
    double cpu = sample(text, "process_cpu_seconds_total", "counter", NULL, 0);
    double cpu_after = (double)(stat_field(14) + stat_field(15)) / (double)tck;
    assert_true(cpu >= 0.3 - 1.0 / (double)tck);
    assert_true(cpu <= cpu_after);
    /* RSS: the 8 MiB are in it, and it is /proc's figure in bytes */
    double rss =
        sample(text, "process_resident_memory_bytes", "gauge", NULL, 0);
    assert_true(rss >= (double)big);
    assert_true(fmod(rss, (double)page) == 0.0);
    assert_true(fabs(rss - (double)stat_field(24) * (double)page) <
                (double)(1u << 20));
    assert_true(
        sample(text, "process_virtual_memory_bytes", "gauge", NULL, 0) >= rss);
    /* fds: exactly the entries of /proc/self/fd now (nothing opens or
     * closes in between: the server is stopped) */
    double nfd = sample(text, "process_open_fds", "gauge", NULL, 0);
    int count = 0;
    DIR *d = opendir("/proc/self/fd");
    for (struct dirent *e; (e = readdir(d));)
        count += e->d_name[0] != '.';
    closedir(d);
    assert_true(nfd == (double)(count - 1));
    for (int i = 0; i < 3; i++)
        close(fds[i]);
    free(text);
    text = ld_metrics_scrape(m);
    assert_true(sample(text, "process_open_fds", "gauge", NULL, 0) == nfd - 3);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    assert_true(sample(text, "process_max_fds", "gauge", NULL, 0) ==
                (double)rl.rlim_cur);
    /* start time: this process started a moment ago; /proc/stat's btime
     * has whole seconds, so allow one either way */
    double start = sample(text, "process_start_time_seconds", "gauge", NULL, 0);
    double now = (double)ld_now_wall_ms() / 1000.0;
    assert_true(start <= now + 1.0);
    assert_true(start > now - 60);
    free(text);
    free(mem);
    free(reg);
    ld_metrics_destroy(m);
    (void)x;
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
        cmocka_unit_test(test_http_ipv6),
        cmocka_unit_test(test_scrape_process),
        cmocka_unit_test(test_http_slowloris),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
