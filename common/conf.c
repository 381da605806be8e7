/* SPDX-License-Identifier: Apache-2.0 */
/* Typed parsing of config values against a module's table rows. */
#include "common/common.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <ctype.h>

int ld_conf_key_is_secret(const char *key)
{
    char low[128];
    size_t i;
    for (i = 0; key[i] && i + 1 < sizeof(low); i++)
        low[i] = (char)tolower((unsigned char)key[i]);
    low[i] = '\0';
    return strstr(low, "password") || strstr(low, "secret") ||
           strncmp(low, "sasl.", 5) == 0 || strncmp(low, "ssl.key.", 8) == 0;
}

const ld_conf_row_t *ld_conf_find(const ld_conf_section_t *sec,
                                  const char *name)
{
    for (size_t i = 0; i < sec->nrows; i++)
        if (strcmp(sec->rows[i].name, name) == 0)
            return &sec->rows[i];
    return NULL;
}

static void strlist_clear(ld_strlist_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

ld_err_t ld_conf_strlist_add(ld_strlist_t *list, const char *text)
{
    char *copy = strdup(text);
    if (!copy)
        return LD_ERR_NOMEM;
    char **v = realloc(list->v, (list->n + 1) * sizeof(*v));
    if (!v) {
        free(copy);
        return LD_ERR_NOMEM;
    }
    v[list->n++] = copy;
    list->v = v;
    return LD_OK;
}

/* Parses a whole-string integer with an optional unit suffix scaled by
 * units[]; returns 0 on success. */
struct unit {
    const char *suffix;
    double scale;
};

static int parse_scaled(const char *text, const struct unit *units, double *out)
{
    errno = 0;
    char *end;
    double v = strtod(text, &end);
    if (end == text || errno == ERANGE || !isfinite(v))
        return -1;
    while (*end == ' ')
        end++;
    if (*end == '\0') {
        *out = v;
        return 0;
    }
    for (const struct unit *u = units; u->suffix; u++) {
        if (strcmp(end, u->suffix) == 0) {
            *out = v * u->scale;
            return 0;
        }
    }
    return -1;
}

static const struct unit duration_units[] = {
    {"ms", 1},      {"s", 1000},     {"m", 60000}, {"min", 60000},
    {"h", 3600000}, {"d", 86400000}, {NULL, 0}};

static const struct unit size_units[] = {{"B", 1},
                                         {"KiB", 1024.0},
                                         {"MiB", 1024.0 * 1024},
                                         {"GiB", 1024.0 * 1024 * 1024},
                                         {"KB", 1000.0},
                                         {"MB", 1000.0 * 1000},
                                         {"GB", 1000.0 * 1000 * 1000},
                                         {NULL, 0}};

/* Index of text in the '|'-separated choices, or -1. */
static int choice_index(const char *choices, const char *text)
{
    size_t tl = strlen(text);
    int idx = 0;
    for (const char *p = choices; *p; idx++) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == tl && strncmp(p, text, len) == 0)
            return idx;
        if (!bar)
            break;
        p = bar + 1;
    }
    return -1;
}

static ld_err_t check_range(const ld_conf_row_t *row, double v, char *errstr,
                            size_t errstr_size)
{
    if (v < row->min || v > row->max) {
        snprintf(errstr, errstr_size, "value %.15g out of range [%.15g, %.15g]",
                 v, row->min, row->max);
        return LD_ERR_RANGE;
    }
    return LD_OK;
}

ld_err_t ld_conf_parse_value(const ld_conf_row_t *row, const char *text,
                             void *base, char *errstr, size_t errstr_size)
{
    char *field = (char *)base + row->offset;
    double d;
    ld_err_t err;

    switch (row->type) {
    case LD_CONF_BOOL:
        if (strcmp(text, "true") == 0 || strcmp(text, "yes") == 0 ||
            strcmp(text, "on") == 0)
            *(int *)(void *)field = 1;
        else if (strcmp(text, "false") == 0 || strcmp(text, "no") == 0 ||
                 strcmp(text, "off") == 0)
            *(int *)(void *)field = 0;
        else {
            snprintf(errstr, errstr_size, "expected true or false, got '%s'",
                     text);
            return LD_ERR_CONFIG;
        }
        return LD_OK;
    case LD_CONF_INT: {
        errno = 0;
        char *end;
        long long v = strtoll(text, &end, 10);
        if (end == text || *end != '\0' || errno == ERANGE) {
            snprintf(errstr, errstr_size, "expected an integer, got '%s'",
                     text);
            return LD_ERR_CONFIG;
        }
        if ((err = check_range(row, (double)v, errstr, errstr_size)))
            return err;
        *(int64_t *)(void *)field = (int64_t)v;
        return LD_OK;
    }
    case LD_CONF_DOUBLE: {
        static const struct unit none[] = {{NULL, 0}};
        if (parse_scaled(text, none, &d)) {
            snprintf(errstr, errstr_size, "expected a number, got '%s'", text);
            return LD_ERR_CONFIG;
        }
        if ((err = check_range(row, d, errstr, errstr_size)))
            return err;
        *(double *)(void *)field = d;
        return LD_OK;
    }
    case LD_CONF_DURATION:
    case LD_CONF_SIZE: {
        int dur = row->type == LD_CONF_DURATION;
        if (parse_scaled(text, dur ? duration_units : size_units, &d) ||
            d != floor(d) || fabs(d) > 9.0e15) {
            snprintf(errstr, errstr_size,
                     dur ? "expected a duration like 250ms, 30s, 10m or 2h, "
                           "got '%s'"
                         : "expected a size like 4096, 64KiB or 1MiB, got "
                           "'%s'",
                     text);
            return LD_ERR_CONFIG;
        }
        if ((err = check_range(row, d, errstr, errstr_size)))
            return err;
        *(int64_t *)(void *)field = (int64_t)d;
        return LD_OK;
    }
    case LD_CONF_ENUM: {
        int idx = choice_index(row->choices, text);
        if (idx < 0) {
            snprintf(errstr, errstr_size, "expected one of %s, got '%s'",
                     row->choices, text);
            return LD_ERR_CONFIG;
        }
        *(int *)(void *)field = idx;
        return LD_OK;
    }
    case LD_CONF_STRING: {
        char *copy = strdup(text);
        if (!copy)
            return LD_ERR_NOMEM;
        char **slot = (char **)(void *)field;
        free(*slot);
        *slot = copy;
        return LD_OK;
    }
    case LD_CONF_STRLIST: {
        /* A scalar for a list: a comma-separated default such as "a,b". */
        ld_strlist_t *l = (ld_strlist_t *)(void *)field;
        strlist_clear(l);
        if (*text == '\0')
            return LD_OK;
        char *copy = strdup(text);
        if (!copy)
            return LD_ERR_NOMEM;
        err = LD_OK;
        char *save = NULL;
        for (char *tok = strtok_r(copy, ",", &save); tok && !err;
             tok = strtok_r(NULL, ",", &save))
            err = ld_conf_strlist_add(l, tok);
        free(copy);
        return err;
    }
    }
    snprintf(errstr, errstr_size, "unknown row type");
    return LD_ERR_CONFIG;
}

ld_err_t ld_conf_set_defaults(const ld_conf_section_t *sec, void *base,
                              char *errstr, size_t errstr_size)
{
    for (size_t i = 0; i < sec->nrows; i++) {
        const ld_conf_row_t *row = &sec->rows[i];
        if (!row->def)
            continue;
        char why[256];
        ld_err_t err =
            ld_conf_parse_value(row, row->def, base, why, sizeof(why));
        if (err) {
            snprintf(errstr, errstr_size, "%s.%s: bad default '%s': %s",
                     sec->name, row->name, row->def, why);
            return LD_ERR_CONFIG;
        }
    }
    return LD_OK;
}

void ld_conf_free(const ld_conf_section_t *sec, void *base)
{
    if (!base)
        return;
    for (size_t i = 0; i < sec->nrows; i++) {
        char *field = (char *)base + sec->rows[i].offset;
        if (sec->rows[i].type == LD_CONF_STRING) {
            char **slot = (char **)(void *)field;
            free(*slot);
            *slot = NULL;
        } else if (sec->rows[i].type == LD_CONF_STRLIST) {
            strlist_clear((ld_strlist_t *)(void *)field);
        }
    }
}
