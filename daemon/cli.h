/* SPDX-License-Identifier: Apache-2.0 */
/* Command-line option parsing shared by learnd's verbs (getopt_long). */
#ifndef LD_DAEMON_CLI_H
#define LD_DAEMON_CLI_H

#include <getopt.h>

/* The verbs' conventions, as GNU tools have them: `--config=FILE`,
 * `--config FILE`, `-c FILE` and `-cFILE` are the same, options and operands
 * may come in any order, a long option may be shortened to a unique prefix,
 * `--` ends the options. */

/* The next option of argv (argv[0] is the verb, e.g. "run") like
 * getopt_long(argc, argv, shortopts, longopts, NULL); start a parse with
 * optind = 0. Returns the option's val, or -1 when the options end (the
 * operands are argv[optind..argc-1]). A usage error (an unknown option, an
 * option without its required value or with an empty one, an ambiguous
 * prefix, a value given to an option that takes none) is printed to stderr
 * as `learnd VERB: what 'OPTION'` naming the option as typed, followed by
 * usage; then it returns '?' and the caller exits with LD_EXIT_USAGE.
 * Every pointer is borrowed. */
int ld_cli_getopt(int argc, char **argv, const char *shortopts,
                  const struct option *longopts, const char *usage);

/* Prints `learnd VERB: ` fmt, a blank line and usage to stderr; returns
 * LD_EXIT_USAGE (2). */
int ld_cli_usage_error(const char *verb, const char *usage, const char *fmt,
                       ...) __attribute__((format(printf, 3, 4)));

#endif /* LD_DAEMON_CLI_H */
