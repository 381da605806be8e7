/* SPDX-License-Identifier: Apache-2.0 */
/* learnd's entry point: parses the verb and hands off to it. */
#include <avro.h>
#include <cblas.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <microhttpd.h>
#include <protobuf-c/protobuf-c.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <yaml.h>

#include "common/common.h"
#include "daemon/cli.h"
#include "daemon/cmd_backtest.h"
#include "daemon/cmd_inspect.h"
#include "daemon/config.h"
#include "daemon/demo.h"
#include "daemon/replay.h"
#include "daemon/run.h"
#include "daemon/signals.h"
#include "daemon/version.h"

static const char usage_text[] =
    "usage: learnd <command> [options]\n"
    "\n"
    "learnd keeps machine-learning models learning from live Kafka "
    "streams.\n"
    "\n"
    "commands:\n"
    "  run -c FILE            run the daemon (--until-caught-up, "
    "--from-scratch)\n"
    "  demo                   the embedded demo: no broker needed\n"
    "  replay -c FILE --checkpoint V [--verify]\n"
    "                         rebuild version V from the input topics and "
    "compare\n"
    "  backtest -c FILE --checkpoint V[,V2] --from T0 --to T1\n"
    "                         score checkpoints on an event-time range\n"
    "  freshness -c FILE --from T0 --to T1 --cadence 0,10m,1h,1d\n"
    "                         what fresh data is worth: loss by refresh "
    "cadence\n"
    "  config check -c FILE   validate a config file (exit 0, or 2 with "
    "errors)\n"
    "  config doc             write the configuration reference "
    "(Markdown)\n"
    "  inspect FILE [--json]  validate a checkpoint and print its spec, "
    "lineage,\n"
    "                         metrics and hashes (exit 1 if corrupt)\n"
    "\n"
    "options:\n"
    "  -h, --help             show this help\n"
    "  -V, --version          show version and library versions\n"
    "\n"
    "Every command takes -h/--help, which lists all of its options. Options\n"
    "take their value as -c FILE, -cFILE, --config FILE or --config=FILE, in\n"
    "any order with the operands; long ones may be shortened to a unique\n"
    "prefix.\n"
    "\n"
    "exit codes: 0 ok, 1 runtime failure, 2 usage or config error\n";

static const char config_usage[] =
    "usage: learnd config check -c FILE [--print]\n"
    "       learnd config doc\n"
    "\n"
    "  check   load FILE through every module's table; print each error as\n"
    "          file:line:column: key: reason and exit 2, or exit 0.\n"
    "  doc     write docs/CONFIGURATION.md's content to stdout.\n"
    "\n"
    "  -c, --config=FILE  the config to check\n"
    "  --print            also write the effective config (secrets "
    "redacted)\n"
    "  -h, --help         show this help\n";

static void print_version(void)
{
    printf("learnd %s (%s)\n", LD_VERSION, LD_GIT_DESCRIBE);
    printf("librdkafka %s\n", rd_kafka_version_str());
    printf("avro-c %s\n", LD_AVRO_VERSION);
    printf("protobuf-c %s\n", protobuf_c_version());
    printf("openblas %s (%s)\n", LD_OPENBLAS_VERSION, openblas_get_corename());
    printf("libyaml %s\n", yaml_get_version_string());
    printf("libmicrohttpd %s\n", MHD_get_version());
    printf("jansson %s\n", JANSSON_VERSION);
}

static int cmd_config(int argc, char **argv)
{
    if (argc < 1)
        return ld_cli_usage_error("config", config_usage,
                                  "missing command "
                                  "(check or doc)");
    if (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0) {
        fputs(config_usage, stdout);
        return LD_EXIT_OK;
    }
    const int doc = strcmp(argv[0], "doc") == 0;
    if (!doc && strcmp(argv[0], "check") != 0)
        return ld_cli_usage_error("config", config_usage,
                                  "unknown command '%s'", argv[0]);
    /* argv[0] ("check", "doc") names the verb in messages */
    char verb[16];
    snprintf(verb, sizeof(verb), "config %s", argv[0]);
    argv[0] = verb;
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"print", no_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *path = NULL;
    int print = 0, c;
    optind = 0;
    while ((c = ld_cli_getopt(argc, argv, doc ? "h" : "c:h",
                              doc ? longopts + 2 : longopts, config_usage)) !=
           -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 'p':
            print = 1;
            break;
        case 'h':
            fputs(config_usage, stdout);
            return LD_EXIT_OK;
        default:
            return LD_EXIT_USAGE;
        }
    }
    if (optind < argc)
        return ld_cli_usage_error(verb, config_usage,
                                  "unexpected argument '%s'", argv[optind]);
    if (doc) {
        ld_config_write_doc(stdout);
        return LD_EXIT_OK;
    }
    if (!path)
        return ld_cli_usage_error(verb, config_usage, "needs -c FILE");
    ld_config_t *conf = ld_config_load(path, stderr);
    if (!conf) {
        fprintf(stderr, "learnd: %s: configuration is invalid\n", path);
        return LD_EXIT_USAGE;
    }
    if (print)
        ld_config_dump(conf, stdout);
    else
        printf("%s: ok\n", path);
    ld_config_destroy(conf);
    return LD_EXIT_OK;
}

static const char run_usage[] =
    "usage: learnd run -c FILE [--until-caught-up] [--from-scratch]\n"
    "                  [--role all|join|train] [--examples-topic T]\n"
    "                  [--instance NAME]\n"
    "\n"
    "  -c, --config=FILE  the config (see learnd config doc)\n"
    "  --until-caught-up  exit 0 once the input that existed at start-up is\n"
    "                     read and committed (backfills, tests)\n"
    "  --from-scratch     ignore stored checkpoints\n"
    "  --role=ROLE        all (default): join and train; join: labelled\n"
    "                     examples to the examples topic; train: from it\n"
    "  --examples-topic=T the examples topic (default <events>.examples)\n"
    "  --instance=NAME    join: this instance's name, unique in the group\n"
    "  -h, --help         show this help\n";

static int cmd_run(int argc, char **argv)
{
    enum { OPT_UNTIL = 256, OPT_SCRATCH, OPT_ROLE, OPT_EXTOPIC, OPT_INST };
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"role", required_argument, NULL, OPT_ROLE},
        {"examples-topic", required_argument, NULL, OPT_EXTOPIC},
        {"instance", required_argument, NULL, OPT_INST},
        {"until-caught-up", no_argument, NULL, OPT_UNTIL},
        {"from-scratch", no_argument, NULL, OPT_SCRATCH},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *path = NULL;
    ld_run_opts_t opts = {0};
    int c;
    optind = 0;
    while ((c = ld_cli_getopt(argc, argv, "c:h", longopts, run_usage)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case OPT_UNTIL:
            opts.until_caught_up = 1;
            break;
        case OPT_SCRATCH:
            opts.from_scratch = 1;
            break;
        case OPT_ROLE:
            if (strcmp(optarg, "all") == 0)
                opts.role = LD_ROLE_ALL;
            else if (strcmp(optarg, "join") == 0)
                opts.role = LD_ROLE_JOIN;
            else if (strcmp(optarg, "train") == 0)
                opts.role = LD_ROLE_TRAIN;
            else
                return ld_cli_usage_error("run", run_usage,
                                          "--role is all, join or train, not "
                                          "'%s'",
                                          optarg);
            break;
        case OPT_EXTOPIC:
            opts.examples_topic = optarg;
            break;
        case OPT_INST:
            opts.instance = optarg;
            break;
        case 'h':
            fputs(run_usage, stdout);
            return LD_EXIT_OK;
        default:
            return LD_EXIT_USAGE;
        }
    }
    if (optind < argc)
        return ld_cli_usage_error("run", run_usage, "unexpected argument '%s'",
                                  argv[optind]);
    if (!path)
        return ld_cli_usage_error("run", run_usage, "needs -c FILE");
    ld_config_t *conf = ld_config_load(path, stderr);
    if (!conf) {
        fprintf(stderr, "learnd: %s: configuration is invalid\n", path);
        return LD_EXIT_USAGE;
    }
    int code = LD_EXIT_RUNTIME;
    if (ld_config_apply_logging(conf) != LD_OK)
        fprintf(stderr, "learnd: cannot open log file %s\n", conf->log.file);
    else if (ld_signals_install())
        fprintf(stderr, "learnd: cannot install signal handlers\n");
    else
        code = ld_run(conf, &opts);
    ld_config_destroy(conf);
    return code;
}

/* Soft fd limit up to the hard one (systemd and shells start at 1 024):
 * Kafka sockets, the model store and the HTTP endpoint share it, and the
 * endpoint sizes its connection limit from it (daemon/metrics.c). */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY ? 65536 : rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    raise_nofile();
    if (argc < 2) {
        fprintf(stderr, "learnd: missing command\n\n%s", usage_text);
        return LD_EXIT_USAGE;
    }
    const char *verb = argv[1];
    if (strcmp(verb, "-h") == 0 || strcmp(verb, "--help") == 0 ||
        strcmp(verb, "help") == 0) {
        fputs(usage_text, stdout);
        return LD_EXIT_OK;
    }
    if (strcmp(verb, "-V") == 0 || strcmp(verb, "--version") == 0) {
        print_version();
        return LD_EXIT_OK;
    }
    if (strcmp(verb, "config") == 0)
        return cmd_config(argc - 2, argv + 2);
    if (strcmp(verb, "run") == 0)
        return cmd_run(argc - 1, argv + 1);
    if (strcmp(verb, "demo") == 0) {
        if (ld_signals_install())
            return LD_EXIT_RUNTIME;
        return ld_cmd_demo(argc - 1, argv + 1);
    }
    if (strcmp(verb, "replay") == 0) {
        if (ld_signals_install())
            return LD_EXIT_RUNTIME;
        return ld_cmd_replay(argc - 1, argv + 1);
    }
    if (strcmp(verb, "backtest") == 0 || strcmp(verb, "freshness") == 0) {
        if (ld_signals_install())
            return LD_EXIT_RUNTIME;
        return ld_cmd_backtest(argc - 1, argv + 1);
    }
    if (strcmp(verb, "inspect") == 0)
        return ld_cmd_inspect(argc - 1, argv + 1);
    fprintf(stderr, "learnd: unknown %s '%s'\n\n%s",
            verb[0] == '-' ? "option" : "command", verb, usage_text);
    return LD_EXIT_USAGE;
}
