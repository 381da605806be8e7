/* SPDX-License-Identifier: Apache-2.0 */
/* No checkpoint from zero examples (issue #17): `learnd run
 * --until-caught-up` over empty input topics (a new user's topics after
 * retention deleted them) exits 0, publishes no checkpoint and no trigger
 * event, and says why in its log. Main published an empty version 1. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "testutil.h"

static char prefix[128];
static char tmpdir[64];

int main(void)
{
    ld_test_name(prefix, sizeof(prefix), "ei");
    ld_test_tmpdir(tmpdir, sizeof(tmpdir), "0017");
    rd_kafka_t *rk = ld_test_new(RD_KAFKA_PRODUCER, ld_test_conf_new());
    char events[256], labels[256];
    ld_test_create_demo_inputs(rk, prefix, 2, events, labels, sizeof(events));
    ld_test_create_outputs(rk, prefix, 0);

    char path[256], log[256], topic[300];
    snprintf(path, sizeof(path), "%s/ei.yaml", tmpdir);
    snprintf(log, sizeof(log), "%s/run.log", tmpdir);
    FILE *f = ld_test_config_demo(path, prefix);
    fprintf(f,
            "trainer:\n"
            "  name: ei\n"
            "  hash_bits: 16\n"
            "checkpoint:\n"
            "  dir: %s/models\n",
            tmpdir);
    fclose(f);

    int rc = ld_test_wait_exit(ld_test_spawn_run(LD_LEARND_BIN, path, 1, log),
                               120000);
    if (rc != 0)
        ld_test_show_tail(log, 30);
    LD_TEST_EQ_I64("exit code", 0, rc);
    LD_TEST_ASSERT(ld_test_file_has(log, "msg=\"end of input: no checkpoint "
                                         "published, the model has trained "
                                         "on 0 examples\" records=0"),
                   "no log line saying why in %s", log);
    snprintf(topic, sizeof(topic), "%s.ckpt", prefix);
    LD_TEST_EQ_I64("checkpoints", 0,
                   ld_test_read_topic(topic, 60000, NULL, NULL, NULL));
    snprintf(topic, sizeof(topic), "%s.triggers", prefix);
    LD_TEST_EQ_I64("trigger events", 0,
                   ld_test_read_topic(topic, 60000, NULL, NULL, NULL));
    rd_kafka_destroy(rk);
    ld_test_rm_rf(tmpdir);
    return 0;
}
