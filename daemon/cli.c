/* SPDX-License-Identifier: Apache-2.0 */
/* getopt_long with learnd's usage errors: each names the option as typed. */
#include "daemon/cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/common.h"

int ld_cli_usage_error(const char *verb, const char *usage, const char *fmt,
                       ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "learnd %s: ", verb);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n\n%s", usage);
    return LD_EXIT_USAGE;
}

/* The long option that val belongs to, or NULL. */
static const struct option *by_val(const struct option *longopts, int val)
{
    for (const struct option *o = longopts; o->name; o++)
        if (!o->flag && o->val == val)
            return o;
    return NULL;
}

/* arg up to a '=' into out: "--config=x" -> "--config". */
static const char *typed(const char *arg, char *out, size_t size)
{
    size_t n = strcspn(arg, "=");
    snprintf(out, size, "%.*s", (int)(n < size ? n : size - 1), arg);
    return out;
}

int ld_cli_getopt(int argc, char **argv, const char *shortopts,
                  const struct option *longopts, const char *usage)
{
    /* ':' first: a missing value is ':' rather than '?', so the two
     * errors can be told apart; opterr 0: getopt prints nothing itself,
     * every message is ours (one format, always followed by the usage). */
    char opts[64];
    snprintf(opts, sizeof(opts), ":%s", shortopts);
    opterr = 0;
    int c = getopt_long(argc, argv, opts, longopts, NULL);
    const char *verb = argv[0];
    /* The argument getopt just looked at: optind has moved past it, except
     * inside a group of short options ("-xk"). */
    const char *last = optind > 1 && optind - 1 < argc ? argv[optind - 1] : "";
    char name[64];
    if (c == ':') {
        if (strncmp(last, "--", 2) == 0)
            typed(last, name, sizeof(name));
        else
            snprintf(name, sizeof(name), "-%c", optopt);
        ld_cli_usage_error(verb, usage, "option '%s' requires a value", name);
        return '?';
    }
    if (c == '?') {
        if (strncmp(last, "--", 2) == 0 && optopt && by_val(longopts, optopt)) {
            ld_cli_usage_error(verb, usage, "option '%s' takes no value",
                               typed(last, name, sizeof(name)));
            return '?';
        }
        if (optopt) {
            snprintf(name, sizeof(name), "-%c", optopt);
            ld_cli_usage_error(verb, usage, "unknown option '%s'", name);
            return '?';
        }
        typed(last, name, sizeof(name));
        /* A prefix of several long options is ambiguous, not unknown. */
        char cands[256] = "";
        int n = 0;
        size_t len = strlen(name) - 2;
        for (const struct option *o = longopts; o->name; o++)
            if (len > 0 && strncmp(o->name, name + 2, len) == 0) {
                size_t at = strlen(cands);
                snprintf(cands + at, sizeof(cands) - at, "%s--%s",
                         n++ ? ", " : "", o->name);
            }
        if (n > 1)
            ld_cli_usage_error(verb, usage, "ambiguous option '%s' (%s)", name,
                               cands);
        else
            ld_cli_usage_error(verb, usage, "unknown option '%s'", name);
        return '?';
    }
    if (c != -1 && optarg && !optarg[0]) {
        /* "--config=" or -c "": an empty FILE, N or ID is never meant */
        if (strncmp(last, "--", 2) == 0)
            typed(last, name, sizeof(name));
        else if (last[0] == '-' && last[1] != '\0')
            snprintf(name, sizeof(name), "-%c", c);
        else if (optind > 2 && strncmp(argv[optind - 2], "--", 2) == 0)
            typed(argv[optind - 2], name, sizeof(name)); /* --config "" */
        else
            snprintf(name, sizeof(name), "-%c", c); /* -c "" */
        ld_cli_usage_error(verb, usage,
                           "option '%s' requires a non-empty value", name);
        return '?';
    }
    return c;
}
