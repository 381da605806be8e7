/* SPDX-License-Identifier: Apache-2.0 */
/* Prometheus metrics registry and the /metrics, /healthz, /readyz endpoint. */
#ifndef LD_DAEMON_METRICS_H
#define LD_DAEMON_METRICS_H

#include <stdint.h>

#include "common/common.h"

typedef struct ld_metrics ld_metrics_t;
typedef struct ld_http ld_http_t;

typedef enum ld_metric_type {
    LD_METRIC_COUNTER,
    LD_METRIC_GAUGE,
    /* Prometheus summary: series labelled quantile="0.5" (and so on), and
     * the two whose labels are "_sum" and "_count", rendered as the
     * family's name with that suffix and no labels. */
    LD_METRIC_SUMMARY
} ld_metric_type_t;

/* A thread-safe registry of metric families, each with labelled series.
 * Returns NULL on allocation failure; free with ld_metrics_destroy(). */
ld_metrics_t *ld_metrics_new(void);
void ld_metrics_destroy(ld_metrics_t *m);

/* Declares a family (name without the learnd_ prefix, which is added) and
 * returns its id (>= 0), or a negative ld_err_t. Declaring an existing name
 * again returns the same id. name and help are borrowed and must outlive m
 * (string literals). */
int ld_metrics_family(ld_metrics_t *m, const char *name, ld_metric_type_t type,
                      const char *help);

/* Sets, or adds delta to, the series of family id with labels, a Prometheus
 * label list such as `topic="events",partition="0"` ("" for none; copied).
 * Unknown ids and allocation failures are ignored: metrics must never stop
 * the daemon. */
void ld_metrics_set(ld_metrics_t *m, int id, const char *labels, double value);
void ld_metrics_add(ld_metrics_t *m, int id, const char *labels, double delta);

/* Current value of a series, or NAN when it does not exist (for tests). */
double ld_metrics_get(ld_metrics_t *m, int id, const char *labels);

/* Renders the Prometheus text exposition format (0.0.4). Returns a heap
 * string the caller frees, or NULL on allocation failure. */
char *ld_metrics_render(ld_metrics_t *m);

/* What /metrics serves: ld_metrics_render()'s families, then
 * learnd_build_info{version,librdkafka,avro,protobuf_c,openblas} 1 and the
 * Prometheus client libraries' process_* families (CPU seconds, resident
 * and virtual memory, open and maximum fds, start time) read from /proc
 * now; a process value that cannot be read is left out. Returns a heap
 * string the caller frees, or NULL on allocation failure. */
char *ld_metrics_scrape(ld_metrics_t *m);

/* The experiments' state as JSON (ld_exp_set_json), served at
 * /experiments and, one experiment's object, at /experiments/<name>.
 * json is taken (freed by m); NULL: no experiments (404). */
void ld_metrics_set_experiments(ld_metrics_t *m, char *json);

/* Liveness and readiness, as /healthz and /readyz report them. */
void ld_metrics_set_ready(ld_metrics_t *m, int ready);
/* The run loop calls this every iteration; /healthz fails when the last beat
 * is older than the stall limit given to ld_http_start(). */
void ld_metrics_heartbeat(ld_metrics_t *m);

/* LD_OK when listen is an address ld_http_start() can bind: an IPv4 dotted
 * quad, or an IPv6 literal ("::1"; "::" for every address of both
 * families). Else LD_ERR_INVAL and the reason, naming the value, in errstr.
 * `config check` and ld_http_start() both apply this one rule. */
ld_err_t ld_http_listen_check(const char *listen, char *errstr,
                              size_t errstr_size) LD_WUR;

/* Serves m's ld_metrics_scrape() on listen:port (port 0 picks a free port;
 * listen as ld_http_listen_check() takes it) from a libmicrohttpd thread
 * (epoll). m is borrowed and must outlive the server. At most 16
 * connections per client address and 4 096 in all (or half the fd limit), a
 * connection idle for 5 s is closed: slow or idle clients cannot take the
 * endpoint from a liveness probe. Returns NULL with the reason in errstr. */
ld_http_t *ld_http_start(ld_metrics_t *m, const char *listen, uint16_t port,
                         int64_t stall_limit_ms, char *errstr,
                         size_t errstr_size);
/* The bound port. */
uint16_t ld_http_port(const ld_http_t *h);
/* The endpoint's base URL, IPv6 in brackets: "http://[::1]:9464/".
 * Borrowed, valid until ld_http_stop(). */
const char *ld_http_url(const ld_http_t *h);
/* Connections the server holds now. */
unsigned ld_http_connections(const ld_http_t *h);
/* Stops the server; NULL is a no-op. */
void ld_http_stop(ld_http_t *h);

#endif /* LD_DAEMON_METRICS_H */
