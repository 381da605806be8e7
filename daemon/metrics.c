/* SPDX-License-Identifier: Apache-2.0 */
/* Metrics registry rendered as Prometheus text, served by libmicrohttpd. */
#include "daemon/metrics.h"

#include <arpa/inet.h>
#include <math.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

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
};

struct ld_http {
    struct MHD_Daemon *mhd;
    ld_metrics_t *m;
    int64_t stall_limit_ms;
    uint16_t port;
    int64_t log_at_ms;   /* last libmicrohttpd line written */
    unsigned suppressed; /* lines dropped since */
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
    pthread_mutex_destroy(&m->lock);
    free(m);
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
                  f->type == LD_METRIC_COUNTER ? "counter" : "gauge");
        for (size_t i = 0; i < f->n; i++) {
            const series_t *s = &f->series[i];
            sb_printf(&b, "learnd_%s", f->name);
            if (s->labels[0])
                sb_printf(&b, "{%s}", s->labels);
            if (isnan(s->value))
                sb_printf(&b, " NaN\n");
            else if (isinf(s->value))
                sb_printf(&b, " %s\n", s->value > 0 ? "+Inf" : "-Inf");
            else
                sb_printf(&b, " %.17g\n", s->value);
        }
    }
    pthread_mutex_unlock(&m->lock);
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
        char *body = ld_metrics_render(h->m);
        if (!body)
            return reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, text,
                         "out of memory\n", 0);
        return reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4", body, 1);
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
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, listen, &addr.sin_addr) != 1) {
        snprintf(errstr, errstr_size,
                 "metrics.listen: '%s' is not an IPv4 address", listen);
        goto err;
    }
    unsigned limit = HTTP_MAX_CONN;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur / 2 < limit)
        limit = rl.rlim_cur / 2 > HTTP_PER_IP ? (unsigned)(rl.rlim_cur / 2)
                                              : HTTP_PER_IP;
    h->log_at_ms = -HTTP_LOG_EVERY;
    h->mhd = MHD_start_daemon(
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG, port, NULL, NULL,
        handle, h, MHD_OPTION_SOCK_ADDR, &addr, MHD_OPTION_CONNECTION_TIMEOUT,
        HTTP_TIMEOUT_S, MHD_OPTION_CONNECTION_LIMIT, limit,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, HTTP_PER_IP,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_CONN_MEM,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, h, MHD_OPTION_END);
    if (!h->mhd) {
        snprintf(errstr, errstr_size, "cannot listen on %s:%u", listen,
                 (unsigned)port);
        goto err;
    }
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info ? info->port : port;
    return h;
err:
    free(h);
    return NULL;
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
