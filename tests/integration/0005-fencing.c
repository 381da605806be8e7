/* SPDX-License-Identifier: Apache-2.0 */
/* A second instance with the same transactional.id fences the first, which
 * exits non-zero with a clear message; the second finishes the work. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon/demo.h"
#include "testutil.h"

#define EVENTS 40000

static char prefix[128], tmpdir[64];

static void produce_input(rd_kafka_t *rk, const char *events,
                          const char *labels)
{
    ld_demo_gen_conf_t gc = {.seed = 5,
                             .n_events = EVENTS,
                             .drift_at = EVENTS,
                             .start_time_ms = 1767225600000,
                             .step_ms = 5,
                             .label_delay_ms = 5000};
    ld_test_produce_demo(rk, &gc, events, labels, 0, 0);
}

static pid_t spawn(const char *config, const char *log, int until_caught_up)
{
    return ld_test_spawn_run(LD_LEARND_BIN, config, until_caught_up, log);
}

int main(void)
{
    ld_test_name(prefix, sizeof(prefix), "fence");
    ld_test_tmpdir(tmpdir, sizeof(tmpdir), "0005");
    rd_kafka_t *admin = ld_test_new(RD_KAFKA_PRODUCER, ld_test_conf_new());
    char events[256], labels[256];
    snprintf(events, sizeof(events), "%s.events", prefix);
    snprintf(labels, sizeof(labels), "%s.labels", prefix);
    ld_test_create_topic(admin, events, 2, 30000);
    ld_test_create_topic(admin, labels, 2, 30000);
    ld_test_create_outputs(admin, prefix, 0);
    produce_input(admin, events, labels);

    char config[128];
    snprintf(config, sizeof(config), "%s/learnd.yaml", tmpdir);
    FILE *f = ld_test_config_begin(config, NULL, prefix);
    fprintf(f,
            "metrics:\n"
            "  enabled: false\n"
            "pipeline:\n"
            "  events_topic: %s\n"
            "  labels_topic: %s\n"
            "  dlq_topic: %s.dlq\n"
            "  group_id: %s.group\n"
            "  event_schema: %s/schemas/event.avsc\n"
            "  label_schema: %s/schemas/label.avsc\n"
            "  key_field: event_id\n"
            "  event_time_field: event_time\n"
            "  label_time_field: label_time\n"
            "  dense_fields: [f0, f1, f2]\n"
            "  hash_fields: [country, ad_id]\n"
            "  label_field: clicked\n"
            "trainer:\n"
            "  name: fence\n"
            "checkpoint:\n"
            "  dir: %s/models\n",
            events, labels, prefix, prefix, LD_SOURCE_DIR, LD_SOURCE_DIR,
            tmpdir);
    fclose(f);

    char log_a[128], log_b[128];
    snprintf(log_a, sizeof(log_a), "%s/a.log", tmpdir);
    snprintf(log_b, sizeof(log_b), "%s/b.log", tmpdir);
    /* A runs as a service would (no --until-caught-up); once it is running
     * B starts with the same config. */
    pid_t a = spawn(config, log_a, 0);
    int64_t deadline = ld_test_deadline(60000);
    while (!ld_test_file_has(log_a, "msg=\"running\"")) {
        LD_TEST_ASSERT(ld_test_remaining(deadline), "A did not start");
        usleep(20000); /* a log line is a file, not an event to wait on */
    }
    ld_test_say("A is running; starting B with the same transactional.id");
    pid_t b = spawn(config, log_b, 1);
    int code_a = ld_test_wait_exit(a, 90000);
    if (code_a != 1 ||
        !ld_test_file_has(log_a, "msg=\"fenced: another instance took over"))
        ld_test_show_tail(log_a, 30); /* what A did instead */
    LD_TEST_EQ_I64("A's exit code", 1, code_a);
    LD_TEST_ASSERT(
        ld_test_file_has(log_a, "msg=\"fenced: another instance took over"),
        "A's log does not say it was fenced");
    int code_b = ld_test_wait_exit(b, 120000);
    LD_TEST_EQ_I64("B's exit code", 0, code_b);
    LD_TEST_ASSERT(ld_test_file_has(log_b, "msg=\"stopped\""),
                   "B did not stop");
    ld_test_say("A was fenced and exited 1; B finished and exited 0");

    /* SIGTERM: a running daemon commits, leaves the group and exits 0
     * within daemon.shutdown_timeout (30 s by default). */
    char log_c[128];
    snprintf(log_c, sizeof(log_c), "%s/c.log", tmpdir);
    pid_t c = spawn(config, log_c, 0);
    deadline = ld_test_deadline(60000);
    while (!ld_test_file_has(log_c, "msg=\"running\"")) {
        LD_TEST_ASSERT(ld_test_remaining(deadline), "C did not start");
        usleep(20000); /* a log line is a file, not an event to wait on */
    }
    int64_t t0 = ld_test_deadline(0);
    kill(c, SIGTERM);
    int code_c = ld_test_wait_exit(c, 30000);
    LD_TEST_EQ_I64("exit code after SIGTERM", 0, code_c);
    LD_TEST_ASSERT(ld_test_file_has(log_c, "msg=\"stopped\""),
                   "C did not stop");
    ld_test_say("SIGTERM: exit 0 after %lld ms",
                (long long)(ld_test_deadline(0) - t0));
    rd_kafka_destroy(admin);
    ld_test_rm_rf(tmpdir);
    printf("0005-fencing: PASS\n");
    return 0;
}
