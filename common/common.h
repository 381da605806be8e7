/* SPDX-License-Identifier: Apache-2.0 */
/* Shared ground of every stage: the error type, logging, and the config-table
 * row types each module uses to declare its settings. */
#ifndef LD_COMMON_H
#define LD_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define LD_WUR          __attribute__((warn_unused_result))
#define LD_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* ---- Errors ------------------------------------------------------------- */

/* One error type for the whole program: LD_OK or a negative failure. */
typedef enum ld_err {
    LD_OK = 0,
    LD_ERR_NOMEM = -1,    /* allocation failed */
    LD_ERR_INVAL = -2,    /* invalid argument or state */
    LD_ERR_IO = -3,       /* file or socket I/O failed (see errno) */
    LD_ERR_CORRUPT = -4,  /* bad length, checksum or structure in input */
    LD_ERR_CONFIG = -5,   /* configuration error */
    LD_ERR_KAFKA = -6,    /* librdkafka reported an error */
    LD_ERR_NOENT = -7,    /* no such item */
    LD_ERR_RANGE = -8,    /* value outside its allowed range */
    LD_ERR_DECODE = -9,   /* record could not be decoded */
    LD_ERR_TIMEOUT = -10, /* deadline passed */
    LD_ERR_FENCED = -11,  /* another instance took over our transactional id */
    LD_ERR_FULL = -12,    /* bounded queue or store is full */
    LD_ERR__END = -13
} ld_err_t;

/* Returns a static, human-readable description of err; never NULL. */
const char *ld_err_str(ld_err_t err);

/* Formats a reason into errstr[size] (nothing when errstr is NULL or size
 * is 0): the errstr, errstr_size pair of a function that can fail. */
void ld_errstr_set(char *errstr, size_t size, const char *fmt, ...)
    LD_PRINTF(3, 4);
/* "op path: strerror(errno)" into errstr; errno is kept for the caller. */
void ld_errstr_errno(char *errstr, size_t size, const char *op,
                     const char *path);

/* Exit codes of the learnd binary (docs/OPERATIONS.md, "Exit codes"). */
enum { LD_EXIT_OK = 0, LD_EXIT_RUNTIME = 1, LD_EXIT_USAGE = 2 };

/* ---- Logging ------------------------------------------------------------ */

/* syslog severities, so librdkafka's levels map one to one. */
typedef enum ld_log_level {
    LD_LOG_EMERG = 0,
    LD_LOG_ALERT = 1,
    LD_LOG_CRIT = 2,
    LD_LOG_ERR = 3,
    LD_LOG_WARN = 4,
    LD_LOG_NOTICE = 5,
    LD_LOG_INFO = 6,
    LD_LOG_DEBUG = 7
} ld_log_level_t;

/* Writes one logfmt line to the log stream (stderr unless ld_log_open() named
 * a file): `ts=<RFC3339 UTC ms> level=<name> mod=<mod> ` followed by fmt,
 * which is itself logfmt (`msg="..." key=value`). Thread-safe; one write(2)
 * per line so concurrent lines never interleave. Lines above the threshold are
 * dropped, except LD_LOG_DEBUG lines of modules switched on with
 * ld_log_debug_enable(). When the stream is stderr and stderr is systemd's
 * journal (JOURNAL_STREAM names its device and inode; checked at the first
 * line and at each ld_log_open(NULL)), each line starts with the syslog
 * priority as "<N>" (sd-daemon(3)), which journald turns into the entry's
 * priority. */
void ld_log(ld_log_level_t level, const char *mod, const char *fmt, ...)
    LD_PRINTF(3, 4);
void ld_logv(ld_log_level_t level, const char *mod, const char *fmt,
             va_list ap);

/* Sets the threshold (default LD_LOG_INFO). */
void ld_log_set_level(ld_log_level_t level);
/* Parses "info", "warn", ...; returns LD_ERR_INVAL for an unknown name. */
ld_err_t ld_log_level_parse(const char *name, ld_log_level_t *out) LD_WUR;
const char *ld_log_level_name(ld_log_level_t level);
/* Switches on debug lines for module mod ("all" for every module). */
void ld_log_debug_enable(const char *mod);
/* True when a debug line for mod would be written; lets callers skip
 * formatting costs on hot paths. */
int ld_log_debug_on(const char *mod);
/* Sends lines to path (appending), or back to stderr when path is NULL (and
 * checks again whether stderr is the journal). Called again with the same
 * path it reopens the file (SIGHUP, logrotate). */
ld_err_t ld_log_open(const char *path) LD_WUR;

/* Escapes s as a logfmt value into buf: quoted when it is empty or holds
 * spaces, quotes, '=', backslashes or control bytes, with \" \\ \n \r \t
 * and \u00XX for the other control bytes (0x00-0x1f, 0x7f), so a value can
 * never end the line or forge another key. Truncated values end with "...".
 * Returns buf. Borrowed s; buf owned by the caller. */
const char *ld_log_quote(char *buf, size_t size, const char *s);

/* ld_log_quote() into one of 8 per-thread buffers of 1 KiB, for values in
 * an ld_log() argument list: `ld_log(..., "model=%s", ld_log_q(name))`.
 * Valid until the 8th next call on the same thread; NULL logs as "". */
const char *ld_log_q(const char *s);

/* ---- Config tables ------------------------------------------------------ */

/* Value types a config row can hold. */
typedef enum ld_conf_type {
    LD_CONF_BOOL,     /* int: 0/1 from true/false */
    LD_CONF_INT,      /* int64_t */
    LD_CONF_DOUBLE,   /* double */
    LD_CONF_STRING,   /* char *, heap-owned by the config */
    LD_CONF_ENUM,     /* int: index into the '|'-separated choices */
    LD_CONF_DURATION, /* int64_t milliseconds, from "250ms", "30s", "10m",
                         "2h", "1d" or a bare number of milliseconds */
    LD_CONF_SIZE,     /* int64_t bytes, from "512", "64KiB", "1MiB", "2GiB" */
    LD_CONF_STRLIST,  /* ld_strlist_t: a YAML sequence of scalars */
} ld_conf_type_t;

/* A list of owned strings. */
typedef struct ld_strlist {
    char **v;
    size_t n;
} ld_strlist_t;

/* One setting: the loader, `learnd config check` and docs/CONFIGURATION.md
 * all read these rows. */
typedef struct ld_conf_row {
    const char *name; /* key inside its section */
    ld_conf_type_t type;
    size_t offset;       /* offsetof() the field in the section's struct */
    const char *def;     /* default, as YAML text; NULL means required */
    double min, max;     /* inclusive range for numbers, durations, sizes */
    const char *choices; /* ENUM: "first|last|max|sum" */
    const char *desc;    /* one line */
} ld_conf_row_t;

/* A section of the YAML file (`labeling:`) and the struct it fills. */
typedef struct ld_conf_section {
    const char *name;
    const char *desc;
    const ld_conf_row_t *rows;
    size_t nrows;
} ld_conf_section_t;

#define LD_CONF_ROWS(rows) (rows), (sizeof(rows) / sizeof((rows)[0]))

/* Fills every field of the struct at base with its row's default (required
 * rows are zeroed). Returns LD_ERR_CONFIG if a default does not parse (a bug
 * in the table, caught by the unit tests); errstr says which. */
ld_err_t ld_conf_set_defaults(const ld_conf_section_t *sec, void *base,
                              char *errstr, size_t errstr_size) LD_WUR;

/* Parses text as the value of row into base. Returns LD_ERR_CONFIG (wrong
 * type: "expected a duration like 30s") or LD_ERR_RANGE (outside [min,max])
 * with the reason in errstr. Replaces and frees any previous value. */
ld_err_t ld_conf_parse_value(const ld_conf_row_t *row, const char *text,
                             void *base, char *errstr,
                             size_t errstr_size) LD_WUR;

/* Appends text to a STRLIST field (no range check). */
ld_err_t ld_conf_strlist_add(ld_strlist_t *list, const char *text) LD_WUR;

/* Frees the strings and lists the section's rows own in base; the struct
 * itself stays the caller's. NULL base is a no-op. */
void ld_conf_free(const ld_conf_section_t *sec, void *base);

/* True when a key names a secret whose value must never be printed:
 * *password*, *secret*, sasl.*, ssl.key.* (case-insensitive). */
int ld_conf_key_is_secret(const char *key);

/* Returns the row called name in sec, or NULL. */
const ld_conf_row_t *ld_conf_find(const ld_conf_section_t *sec,
                                  const char *name);

/* ---- Small utilities ---------------------------------------------------- */

/* Milliseconds on CLOCK_MONOTONIC; for deadlines and rates only, never for
 * what a model learns. */
int64_t ld_now_mono_ms(void);
/* Milliseconds since the Unix epoch on CLOCK_REALTIME. */
int64_t ld_now_wall_ms(void);

#endif /* LD_COMMON_H */
