/* SPDX-License-Identifier: Apache-2.0 */
/* logfmt logging to stderr or a reopenable file, with per-module debug. */
#include "common/common.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_DEBUG_MODS 32
#define LINE_MAX_BYTES 4096

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static ld_log_level_t threshold = LD_LOG_INFO;
static int log_fd = STDERR_FILENO;
static char *log_path;
static char debug_mods[MAX_DEBUG_MODS][24];
static int n_debug_mods;
static int debug_all;

static const char *const level_names[] = {"emerg", "alert",  "crit", "error",
                                          "warn",  "notice", "info", "debug"};

const char *ld_log_level_name(ld_log_level_t level)
{
    if ((int)level < 0 || (int)level > LD_LOG_DEBUG)
        return "unknown";
    return level_names[level];
}

ld_err_t ld_log_level_parse(const char *name, ld_log_level_t *out)
{
    for (int i = 0; i <= LD_LOG_DEBUG; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (ld_log_level_t)i;
            return LD_OK;
        }
    }
    if (strcmp(name, "warning") == 0) {
        *out = LD_LOG_WARN;
        return LD_OK;
    }
    return LD_ERR_INVAL;
}

void ld_log_set_level(ld_log_level_t level)
{
    pthread_mutex_lock(&lock);
    threshold = level;
    pthread_mutex_unlock(&lock);
}

void ld_log_debug_enable(const char *mod)
{
    pthread_mutex_lock(&lock);
    if (strcmp(mod, "all") == 0)
        debug_all = 1;
    else if (n_debug_mods < MAX_DEBUG_MODS) {
        snprintf(debug_mods[n_debug_mods], sizeof(debug_mods[0]), "%s", mod);
        n_debug_mods++;
    }
    pthread_mutex_unlock(&lock);
}

/* Caller holds the lock. */
static int debug_on_locked(const char *mod)
{
    if (debug_all || threshold >= LD_LOG_DEBUG)
        return 1;
    for (int i = 0; i < n_debug_mods; i++)
        if (strcmp(debug_mods[i], mod) == 0)
            return 1;
    return 0;
}

int ld_log_debug_on(const char *mod)
{
    pthread_mutex_lock(&lock);
    int on = debug_on_locked(mod);
    pthread_mutex_unlock(&lock);
    return on;
}

ld_err_t ld_log_open(const char *path)
{
    pthread_mutex_lock(&lock);
    ld_err_t err = LD_OK;
    if (!path) {
        if (log_fd != STDERR_FILENO)
            close(log_fd);
        log_fd = STDERR_FILENO;
        free(log_path);
        log_path = NULL;
        goto out;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) {
        err = LD_ERR_IO;
        goto out;
    }
    char *copy = strdup(path);
    if (!copy) {
        close(fd);
        err = LD_ERR_NOMEM;
        goto out;
    }
    if (log_fd != STDERR_FILENO)
        close(log_fd);
    log_fd = fd;
    free(log_path);
    log_path = copy;
out:
    pthread_mutex_unlock(&lock);
    return err;
}

/* Writes the logfmt escape of byte c to esc (when not NULL; 7 bytes are
 * enough) and returns its length. */
static size_t escape(unsigned char c, char *esc)
{
    char tmp[8];
    char *e = esc ? esc : tmp;
    if (c == '"' || c == '\\') {
        e[0] = '\\';
        e[1] = (char)c;
        return 2;
    }
    if (c == '\n' || c == '\r' || c == '\t') {
        e[0] = '\\';
        e[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
        return 2;
    }
    if (c < 0x20 || c == 0x7f) {
        snprintf(e, 8, "\\u%04x", c);
        return 6;
    }
    e[0] = (char)c;
    return 1;
}

const char *ld_log_quote(char *buf, size_t size, const char *s)
{
    if (size == 0)
        return buf;
    if (!s)
        s = "";
    int needs = *s == '\0';
    for (const char *p = s; *p && !needs; p++)
        needs = *p == ' ' || *p == '"' || *p == '=' || *p == '\\' ||
                (unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f;
    if (!needs) {
        size_t n = strlen(s);
        if (n < size) {
            memcpy(buf, s, n + 1);
            return buf;
        }
        /* too long: fall through to the quoted, truncated form */
    }
    if (size < 3) {
        buf[0] = '\0';
        return buf;
    }
    size_t full = 3; /* quotes and NUL */
    for (const char *q = s; *q; q++)
        full += escape((unsigned char)*q, NULL);
    /* Cut values keep room for "..." so a reader sees they were cut. */
    size_t limit = full <= size || size < 6 ? size : size - 3;
    size_t o = 0;
    buf[o++] = '"';
    const char *p = s;
    for (; *p; p++) {
        char esc[8];
        size_t n = escape((unsigned char)*p, esc);
        if (o + n + 2 > limit) /* room for this, the quote and the NUL */
            break;
        memcpy(buf + o, esc, n);
        o += n;
    }
    if (*p && limit < size) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

const char *ld_log_q(const char *s)
{
    static __thread char ring[8][1024];
    static __thread unsigned next;
    char *buf = ring[next++ % 8];
    return ld_log_quote(buf, sizeof(ring[0]), s);
}

void ld_logv(ld_log_level_t level, const char *mod, const char *fmt, va_list ap)
{
    pthread_mutex_lock(&lock);
    int on = level == LD_LOG_DEBUG ? debug_on_locked(mod) : level <= threshold;
    if (!on) {
        pthread_mutex_unlock(&lock);
        return;
    }
    char line[LINE_MAX_BYTES];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line),
                     "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s "
                     "mod=%s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000L,
                     ld_log_level_name(level), mod);
    size_t len = n > 0 ? (size_t)n : 0;
    if (len < sizeof(line)) {
        int m = vsnprintf(line + len, sizeof(line) - len, fmt, ap);
        if (m > 0)
            len += (size_t)m;
    }
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2; /* truncated: keep the newline */
    line[len++] = '\n';
    ssize_t w;
    size_t off = 0;
    while (off < len) {
        w = write(log_fd, line + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    pthread_mutex_unlock(&lock);
}

void ld_log(ld_log_level_t level, const char *mod, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ld_logv(level, mod, fmt, ap);
    va_end(ap);
}

int64_t ld_now_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t ld_now_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
