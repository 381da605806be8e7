/* SPDX-License-Identifier: Apache-2.0 */
/* Metrics registry rendered as Prometheus text, served by libmicrohttpd. */
#include "daemon/metrics.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <math.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <protobuf-c/protobuf-c.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon/version.h"

#define MAX_FAMILIES 128

/* Limits of the HTTP endpoint, so that no client can take /healthz or the
 * daemon's file descriptors: a slowloris of 1 100 connections used to hold
 * every slot of a select()-mode server (fds reached 1 024) and failed every
 * liveness probe for 40 s. With epoll there is no FD_SETSIZE ceiling; one
 * source address holds at most HTTP_PER_IP connections, all of them at most
 * HTTP_MAX_CONN (and half the fd limit, the rest being the daemon's), and a
 * connection that sends nothing for HTTP_TIMEOUT_S is closed. A probe is
 * refused only when more than HTTP_MAX_CONN / HTTP_PER_IP (256) addresses
 * attack at once. */
#define HTTP_MAX_CONN  4096u
#define HTTP_PER_IP    16u
#define HTTP_TIMEOUT_S 5u
#define HTTP_CONN_MEM  (16u * 1024u) /* per connection: a GET's headers */
#define HTTP_LOG_EVERY 10000         /* ms between libmicrohttpd log lines */

typedef struct series {
    char *labels;
    double value;
} series_t;

typedef struct family {
    const char *name;
    const char *help;
    ld_metric_type_t type;
    series_t *series;
    size_t n, cap;
} family_t;

struct ld_metrics {
    pthread_mutex_t lock;
    family_t fam[MAX_FAMILIES];
    int nfam;
    atomic_int ready;
    atomic_llong last_beat_ms;
    char *experiments; /* under lock */
};

struct ld_http {
    struct MHD_Daemon *mhd;
    ld_metrics_t *m;
    int64_t stall_limit_ms;
    uint16_t port;
    int64_t log_at_ms;   /* last libmicrohttpd line written */
    unsigned suppressed; /* lines dropped since */
    char url[96];        /* http://[::1]:9464/ */
};

ld_metrics_t *ld_metrics_new(void)
{
    ld_metrics_t *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    pthread_mutex_init(&m->lock, NULL);
    atomic_store(&m->last_beat_ms, ld_now_mono_ms());
    return m;
}

void ld_metrics_destroy(ld_metrics_t *m)
{
    if (!m)
        return;
    for (int f = 0; f < m->nfam; f++) {
        for (size_t i = 0; i < m->fam[f].n; i++)
            free(m->fam[f].series[i].labels);
        free(m->fam[f].series);
    }
    free(m->experiments);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

void ld_metrics_set_experiments(ld_metrics_t *m, char *json)
{
    pthread_mutex_lock(&m->lock);
    free(m->experiments);
    m->experiments = json;
    pthread_mutex_unlock(&m->lock);
}

/* GET /experiments (name NULL) or /experiments/<name>: the document the
 * run loop set, or one experiment's object from it. NULL when there is
 * none (no experiments, no such name) or no memory; *status says which. */
static char *experiments_doc(ld_metrics_t *m, const char *name,
                             unsigned *status)
{
    *status = MHD_HTTP_NOT_FOUND;
    pthread_mutex_lock(&m->lock);
    char *doc = m->experiments ? strdup(m->experiments) : NULL;
    pthread_mutex_unlock(&m->lock);
    if (!doc || !name) {
        *status = doc ? MHD_HTTP_OK : MHD_HTTP_NOT_FOUND;
        return doc;
    }
    json_t *root = json_loads(doc, 0, NULL), *arr;
    free(doc);
    char *out = NULL;
    size_t i;
    json_t *e;
    arr = root ? json_object_get(root, "experiments") : NULL;
    json_array_foreach(arr, i, e)
    {
        const char *n = json_string_value(json_object_get(e, "name"));
        if (n && strcmp(n, name) == 0) {
            out = json_dumps(e, JSON_COMPACT | JSON_REAL_PRECISION(17));
            *status = MHD_HTTP_OK;
            break;
        }
    }
    json_decref(root);
    return out;
}

int ld_metrics_family(ld_metrics_t *m, const char *name, ld_metric_type_t type,
                      const char *help)
{
    pthread_mutex_lock(&m->lock);
    int id;
    for (id = 0; id < m->nfam; id++)
        if (strcmp(m->fam[id].name, name) == 0)
            goto out;
    if (m->nfam == MAX_FAMILIES) {
        id = LD_ERR_FULL;
        goto out;
    }
    id = m->nfam++;
    m->fam[id] = (family_t){.name = name, .help = help, .type = type};
out:
    pthread_mutex_unlock(&m->lock);
    return id;
}

/* Caller holds the lock. Returns the series, creating it, or NULL. */
static series_t *find_series(ld_metrics_t *m, int id, const char *labels,
                             int create)
{
    if (id < 0 || id >= m->nfam)
        return NULL;
    family_t *f = &m->fam[id];
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->series[i].labels, labels) == 0)
            return &f->series[i];
    if (!create)
        return NULL;
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 4;
        series_t *s = realloc(f->series, cap * sizeof(*s));
        if (!s)
            return NULL;
        f->series = s;
        f->cap = cap;
    }
    char *copy = strdup(labels);
    if (!copy)
        return NULL;
    f->series[f->n] = (series_t){.labels = copy, .value = 0};
    return &f->series[f->n++];
}

void ld_metrics_set(ld_metrics_t *m, int id, const char *labels, double value)
{
    pthread_mutex_lock(&m->lock);
    series_t *s = find_series(m, id, labels, 1);
    if (s)
        s->value = value;
    pthread_mutex_unlock(&m->lock);
}

void ld_metrics_add(ld_metrics_t *m, int id, const char *labels, double delta)
{
    pthread_mutex_lock(&m->lock);
    series_t *s = find_series(m, id, labels, 1);
    if (s)
        s->value += delta;
    pthread_mutex_unlock(&m->lock);
}

double ld_metrics_get(ld_metrics_t *m, int id, const char *labels)
{
    pthread_mutex_lock(&m->lock);
    series_t *s = find_series(m, id, labels, 0);
    double v = s ? s->value : NAN;
    pthread_mutex_unlock(&m->lock);
    return v;
}

/* A growable string. */
typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf_t;

static void sb_printf(sbuf_t *b, const char *fmt, ...) LD_PRINTF(2, 3);
static void sb_printf(sbuf_t *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->cap + (size_t)n + 1) * 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

/* v as the exposition format writes it: NaN, +Inf, -Inf, or the shortest
 * of %.15g..%.17g that reads back exactly (0.1, not 0.10000000000000001;
 * never a rounded value). */
static void sb_double(sbuf_t *b, double v)
{
    if (isnan(v) || isinf(v)) {
        sb_printf(b, "%s", isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf");
        return;
    }
    char tmp[32];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*g", prec, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    sb_printf(b, "%s", tmp);
}

char *ld_metrics_render(ld_metrics_t *m)
{
    sbuf_t b = {.p = malloc(4096), .cap = 4096};
    if (!b.p)
        return NULL;
    b.p[0] = '\0';
    pthread_mutex_lock(&m->lock);
    for (int id = 0; id < m->nfam; id++) {
        const family_t *f = &m->fam[id];
        sb_printf(&b, "# HELP learnd_%s %s\n# TYPE learnd_%s %s\n", f->name,
                  f->help, f->name,
                  f->type == LD_METRIC_COUNTER ? "counter"
                  : f->type == LD_METRIC_GAUGE ? "gauge"
                                               : "summary");
        for (size_t i = 0; i < f->n; i++) {
            const series_t *s = &f->series[i];
            sb_printf(&b, "learnd_%s", f->name);
            if (f->type == LD_METRIC_SUMMARY && s->labels[0] == '_')
                sb_printf(&b, "%s", s->labels); /* _sum, _count */
            else if (s->labels[0])
                sb_printf(&b, "{%s}", s->labels);
            sb_printf(&b, " ");
            sb_double(&b, s->value);
            sb_printf(&b, "\n");
        }
    }
    pthread_mutex_unlock(&m->lock);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

/* ---- Build and process collectors ---------------------------------------- */

/* A label value as the exposition format wants it: \\, \" and \n escaped. */
static void sb_label(sbuf_t *b, const char *name, const char *value, int first)
{
    sb_printf(b, "%s%s=\"", first ? "" : ",", name);
    for (const char *p = value; *p; p++) {
        if (*p == '\\' || *p == '"')
            sb_printf(b, "\\%c", *p);
        else if (*p == '\n')
            sb_printf(b, "\\n");
        else
            sb_printf(b, "%c", *p);
    }
    sb_printf(b, "\"");
}

static void sb_family(sbuf_t *b, const char *name, const char *type,
                      const char *help, double value)
{
    sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
    sb_printf(b, "%s ", name);
    sb_double(b, value);
    sb_printf(b, "\n");
}

/* The versions learnd runs with, as the Prometheus convention's constant
 * 1 with the versions as labels: `max by (version) (learnd_build_info)` in
 * a dashboard, or a join onto any other series, shows what is deployed. */
static void render_build_info(sbuf_t *b)
{
    sb_printf(b, "# HELP learnd_build_info learnd's version and the versions "
                 "of the libraries it runs with\n"
                 "# TYPE learnd_build_info gauge\nlearnd_build_info{");
    sb_label(b, "version", LD_VERSION, 1);
    sb_label(b, "librdkafka", rd_kafka_version_str(), 0);
    sb_label(b, "avro", LD_AVRO_VERSION, 0);
    sb_label(b, "protobuf_c", protobuf_c_version(), 0);
    sb_label(b, "openblas", LD_OPENBLAS_VERSION, 0);
    sb_printf(b, "} 1\n");
}

/* Reads a small /proc file into buf; returns its length or -1. */
static ssize_t read_proc(const char *path, char *buf, size_t size)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, size - 1, f);
    fclose(f);
    buf[n] = '\0';
    return (ssize_t)n;
}

/* The process collector of the Prometheus client libraries (client_golang's
 * names, units and sources), read from /proc/self at each scrape. A value
 * that cannot be read is left out rather than reported as 0. */
static void render_process(sbuf_t *b)
{
    char stat[1024];
    long tck = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    /* Fields after "(comm)", which may itself hold spaces and parentheses:
     * 14 utime, 15 stime, 22 starttime (ticks since boot), 23 vsize (bytes),
     * 24 rss (pages); proc(5). */
    const char *after = NULL;
    if (read_proc("/proc/self/stat", stat, sizeof(stat)) > 0)
        after = strrchr(stat, ')');
    unsigned long long utime = 0, stime = 0, start = 0, vsize = 0;
    long long rss = 0;
    if (after && tck > 0 &&
        sscanf(after + 1,
               " %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %llu %llu %*s "
               "%*s %*s %*s %*s %*s %llu %llu %lld",
               &utime, &stime, &start, &vsize, &rss) == 5) {
        sb_family(b, "process_cpu_seconds_total", "counter",
                  "Total user and system CPU time spent in seconds.",
                  (double)(utime + stime) / (double)tck);
        sb_family(b, "process_virtual_memory_bytes", "gauge",
                  "Virtual memory size in bytes.", (double)vsize);
        sb_family(b, "process_resident_memory_bytes", "gauge",
                  "Resident memory size in bytes.", (double)rss * (double)page);
        char pstat[8192];
        const char *bt = NULL;
        if (read_proc("/proc/stat", pstat, sizeof(pstat)) > 0)
            bt = strstr(pstat, "\nbtime ");
        unsigned long long btime;
        if (bt && sscanf(bt, "\nbtime %llu", &btime) == 1)
            sb_family(b, "process_start_time_seconds", "gauge",
                      "Start time of the process since unix epoch in "
                      "seconds.",
                      (double)btime + (double)start / (double)tck);
    }
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        long n = 0;
        for (struct dirent *e; (e = readdir(d));)
            n += e->d_name[0] != '.';
        closedir(d);
        /* less the descriptor opendir() itself holds */
        sb_family(b, "process_open_fds", "gauge",
                  "Number of open file descriptors.", (double)(n - 1));
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        sb_family(b, "process_max_fds", "gauge",
                  "Maximum number of open file descriptors.",
                  rl.rlim_cur == RLIM_INFINITY ? INFINITY
                                               : (double)rl.rlim_cur);
}

char *ld_metrics_scrape(ld_metrics_t *m)
{
    char *reg = ld_metrics_render(m);
    if (!reg)
        return NULL;
    size_t len = strlen(reg);
    sbuf_t b = {.p = reg, .len = len, .cap = len + 1};
    render_build_info(&b);
    render_process(&b);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

void ld_metrics_set_ready(ld_metrics_t *m, int ready)
{
    atomic_store(&m->ready, ready);
}

void ld_metrics_heartbeat(ld_metrics_t *m)
{
    atomic_store(&m->last_beat_ms, ld_now_mono_ms());
}

/* ---- HTTP --------------------------------------------------------------- */

static enum MHD_Result reply(struct MHD_Connection *c, unsigned int status,
                             const char *type, char *body, int owned)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        strlen(body), body,
        owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!r) {
        if (owned)
            free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c,
                              const char *url, const char *method,
                              const char *version, const char *upload,
                              size_t *upload_size, void **con_cls)
{
    (void)version;
    (void)upload;
    (void)upload_size;
    (void)con_cls;
    ld_http_t *h = cls;
    static const char text[] = "text/plain; charset=utf-8";
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, text,
                     "method not allowed\n", 0);
    if (strcmp(url, "/metrics") == 0) {
        char *body = ld_metrics_scrape(h->m);
        if (!body)
            return reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, text,
                         "out of memory\n", 0);
        return reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4", body, 1);
    }
    if (strcmp(url, "/experiments") == 0 ||
        strncmp(url, "/experiments/", 13) == 0) {
        unsigned status;
        char *body = experiments_doc(h->m, url[12] ? url + 13 : NULL, &status);
        if (!body)
            return reply(c, status, text,
                         status == MHD_HTTP_NOT_FOUND ? "no such experiment\n"
                                                      : "out of memory\n",
                         0);
        return reply(c, MHD_HTTP_OK, "application/json", body, 1);
    }
    if (strcmp(url, "/healthz") == 0) {
        int64_t age = ld_now_mono_ms() - atomic_load(&h->m->last_beat_ms);
        if (h->stall_limit_ms > 0 && age > h->stall_limit_ms)
            return reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, text,
                         "stalled: run loop has not advanced\n", 0);
        return reply(c, MHD_HTTP_OK, text, "ok\n", 0);
    }
    if (strcmp(url, "/readyz") == 0) {
        if (!atomic_load(&h->m->ready))
            return reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, text, "not ready\n",
                         0);
        return reply(c, MHD_HTTP_OK, text, "ready\n", 0);
    }
    return reply(c, MHD_HTTP_NOT_FOUND, text, "not found\n", 0);
}

/* libmicrohttpd's messages (refused connections among them) as log lines,
 * at most one per HTTP_LOG_EVERY: an attack must not flood the log. Called
 * from the server's one thread only. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    ld_http_t *h = cls;
    int64_t now = ld_now_mono_ms();
    if (now - h->log_at_ms < HTTP_LOG_EVERY) {
        h->suppressed++;
        return;
    }
    char msg[256];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    for (char *c = msg; *c; c++)
        if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20)
            *c = ' ';
    ld_log(LD_LOG_WARN, "http", "msg=\"%s\" suppressed=%u", msg, h->suppressed);
    h->log_at_ms = now;
    h->suppressed = 0;
}

/* listen as a socket address: IPv4 through inet_pton (dotted quads only:
 * inet_aton's "127.1" is refused), IPv6 through getaddrinfo with
 * AI_NUMERICHOST, which also takes a scope ("fe80::1%eth0") and never
 * resolves a name. Returns the address length, or 0. */
static socklen_t listen_addr(const char *listen, uint16_t port,
                             struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    if (inet_pton(AF_INET, listen, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons(port);
        return sizeof(*in);
    }
    if (!strchr(listen, ':'))
        return 0;
    struct addrinfo hints = {.ai_family = AF_INET6,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_PASSIVE};
    struct addrinfo *res = NULL;
    if (getaddrinfo(listen, NULL, &hints, &res) != 0 || !res)
        return 0;
    socklen_t len = 0;
    if (res->ai_family == AF_INET6 && res->ai_addrlen <= sizeof(*ss)) {
        memcpy(ss, res->ai_addr, res->ai_addrlen);
        ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
        len = (socklen_t)res->ai_addrlen;
    }
    freeaddrinfo(res);
    return len;
}

ld_err_t ld_http_listen_check(const char *listen, char *errstr,
                              size_t errstr_size)
{
    struct sockaddr_storage ss;
    if (listen && listen_addr(listen, 0, &ss))
        return LD_OK;
    snprintf(errstr, errstr_size,
             "'%s' is not an IPv4 or IPv6 address such as 127.0.0.1, "
             "0.0.0.0, ::1 or :: (the port is metrics.port)",
             listen ? listen : "");
    return LD_ERR_INVAL;
}

ld_http_t *ld_http_start(ld_metrics_t *m, const char *listen, uint16_t port,
                         int64_t stall_limit_ms, char *errstr,
                         size_t errstr_size)
{
    ld_http_t *h = calloc(1, sizeof(*h));
    if (!h) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    h->m = m;
    h->stall_limit_ms = stall_limit_ms;
    struct sockaddr_storage addr;
    char why[256];
    if (ld_http_listen_check(listen, why, sizeof(why)) != LD_OK) {
        snprintf(errstr, errstr_size, "metrics.listen: %s", why);
        goto err;
    }
    (void)listen_addr(listen, port, &addr);
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG;
    /* "::" is every address: of both families (IPV6_V6ONLY off), as a
     * user who asks for it on a dual-stack host expects; a specific IPv6
     * address is that address only. */
    if (addr.ss_family == AF_INET6)
        flags |=
            IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)&addr)->sin6_addr)
                ? MHD_USE_DUAL_STACK
                : MHD_USE_IPv6;
    unsigned limit = HTTP_MAX_CONN;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur / 2 < limit)
        limit = rl.rlim_cur / 2 > HTTP_PER_IP ? (unsigned)(rl.rlim_cur / 2)
                                              : HTTP_PER_IP;
    h->log_at_ms = -HTTP_LOG_EVERY;
    h->mhd = MHD_start_daemon(
        /* the logger first: libmicrohttpd warns (once per start, through
         * the logger) when it is not */
        flags, port, NULL, NULL, handle, h, MHD_OPTION_EXTERNAL_LOGGER, mhd_log,
        h, MHD_OPTION_SOCK_ADDR, &addr, MHD_OPTION_CONNECTION_TIMEOUT,
        HTTP_TIMEOUT_S, MHD_OPTION_CONNECTION_LIMIT, limit,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, HTTP_PER_IP,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_CONN_MEM,
        MHD_OPTION_END);
    if (!h->mhd) {
        snprintf(errstr, errstr_size, "cannot listen on %s%s%s:%u",
                 addr.ss_family == AF_INET6 ? "[" : "", listen,
                 addr.ss_family == AF_INET6 ? "]" : "", (unsigned)port);
        goto err;
    }
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info ? info->port : port;
    snprintf(h->url, sizeof(h->url), "http://%s%s%s:%u/",
             addr.ss_family == AF_INET6 ? "[" : "", listen,
             addr.ss_family == AF_INET6 ? "]" : "", (unsigned)h->port);
    return h;
err:
    free(h);
    return NULL;
}

const char *ld_http_url(const ld_http_t *h)
{
    return h->url;
}

uint16_t ld_http_port(const ld_http_t *h)
{
    return h->port;
}

unsigned ld_http_connections(const ld_http_t *h)
{
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
    return info ? info->num_connections : 0;
}

void ld_http_stop(ld_http_t *h)
{
    if (!h)
        return;
    MHD_stop_daemon(h->mhd);
    free(h);
}
