/* SPDX-License-Identifier: Apache-2.0 */
/* Publications written by the publisher thread while the loop trains on
 * (issue #18): a daemon killed with SIGKILL while a publication is in
 * flight (its checkpoint in the local store, its transaction open) and
 * restarted publishes the same versions with the same parameter hashes,
 * one manifest each, as a run that was never killed; and a daemon killed
 * right after it logged "checkpoint published" has that version committed
 * (the line is written after the commit, not before it). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon/demo.h"
#include "publish/publish.h"
#include "testutil.h"
#include "trainer/checkpoint.h"

#define PARTS  2
#define EVENTS 120000

static char prefix[128];
static char tmpdir[64];

static void topic(char *buf, size_t size, const char *what)
{
    snprintf(buf, size, "%s.%s", prefix, what);
}

static void write_config(const char *name, char *path, size_t size)
{
    char names[256];
    snprintf(names, sizeof(names), "%s.%s", prefix, name);
    snprintf(path, size, "%s/%s.yaml", tmpdir, name);
    FILE *f = ld_test_config_begin(path, NULL, names);
    fprintf(f, "log:\n  level: notice\n");
    ld_test_config_demo_input(f, prefix, names);
    fprintf(f,
            "  hash_fields: [country, ad_id, device, ctx:publisher, "
            "ctx:tags]\n"
            "  label_field: clicked\n"
            "labeling:\n"
            "  window: 20s\n"
            "  max_out_of_orderness: 1s\n"
            "trainer:\n"
            "  name: pk\n"
            "  hash_bits: 18\n"
            "  batch_size: 100\n"
            "checkpoint:\n"
            "  dir: %s/%s-models\n"
            "  keep: 1000\n"
            "triggers:\n"
            "  volume_examples: 4000\n",
            tmpdir, name);
    fclose(f);
    /* Commit points a second apart: a publication is written long before
     * the commit point that holds it. */
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "sed -i 's/^  commit_interval: 200ms$/  commit_interval: 1s/' %s",
             path);
    LD_TEST_ASSERT(system(cmd) == 0, "edit config");
}

/* <dir>/pk/<v><sfx> of run name's local store. */
static void store_file(char *buf, size_t size, const char *name, uint64_t v,
                       const char *sfx)
{
    snprintf(buf, size, "%s/%s-models/pk/%llu%s", tmpdir, name,
             (unsigned long long)v, sfx);
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* The highest version with a file <v><sfx> in run name's store (0: none).
 */
static uint64_t store_top(const char *name, const char *sfx)
{
    uint64_t v = 0;
    char path[512];
    for (uint64_t k = 1; k < 1000; k++) {
        store_file(path, sizeof(path), name, k, sfx);
        if (exists(path))
            v = k;
    }
    return v;
}

/* The highest version any incarnation of run name began to publish. */
static uint64_t written_top(const char *name)
{
    uint64_t a = store_top(name, ".ckpt"), b = store_top(name, ".ckpt.pending");
    return a > b ? a : b;
}

/* Aborts the transaction a killed incarnation left open, as its restart
 * would (same transactional.id, a newer epoch), so that read_committed
 * readers see where the committed data ends now. */
static void fence(const char *name)
{
    char txn[300];
    snprintf(txn, sizeof(txn), "%s.%s.txn", prefix, name);
    rd_kafka_conf_t *c = ld_test_conf_new();
    ld_test_conf_set(c, "transactional.id", txn);
    rd_kafka_t *rk = ld_test_new(RD_KAFKA_PRODUCER, c);
    ld_test_check_error("init_transactions",
                        rd_kafka_init_transactions(rk, 60000));
    rd_kafka_destroy(rk);
}

typedef struct key_count {
    const char *key;
    int64_t n;
} key_count_t;

static void count_key(const rd_kafka_message_t *m, void *opaque)
{
    key_count_t *kc = opaque;
    if (m->key_len == strlen(kc->key) &&
        memcmp(m->key, kc->key, m->key_len) == 0)
        kc->n++;
}

/* Committed checkpoint manifests of run name. */
static int64_t manifests(const char *name)
{
    char t[300];
    snprintf(t, sizeof(t), "%s.%s.ckpt", prefix, name);
    key_count_t kc = {.key = "pk"};
    ld_test_read_topic(t, 30000, count_key, &kc, NULL);
    return kc.n;
}

/* How incarnation waits for its kill point. */
typedef enum { IN_FLIGHT, LOGGED } kill_at_t;

/* Starts an incarnation of run name and kills it with SIGKILL at its kill
 * point for version v: IN_FLIGHT, once v's checkpoint is staged in the
 * store (the publisher thread writes it before its chunks, long before the
 * commit point); LOGGED, once the log says v was published. Returns what
 * the killed incarnation's transaction left committed: the manifests. */
static int64_t kill_at(const char *name, const char *config, kill_at_t how,
                       uint64_t v, int n)
{
    char log[256], file[512], line[64];
    snprintf(log, sizeof(log), "%s/%s.%d.log", tmpdir, name, n);
    store_file(file, sizeof(file), name, v, ".ckpt.pending");
    snprintf(line, sizeof(line), " version=%llu bytes=", (unsigned long long)v);
    pid_t pid = ld_test_spawn_run(LD_LEARND_BIN, config, 1, log);
    int64_t deadline = ld_test_deadline(120000);
    for (;;) {
        LD_TEST_ASSERT(ld_test_remaining(deadline),
                       "%s: incarnation %d never reached version %llu", name, n,
                       (unsigned long long)v);
        if (how == IN_FLIGHT ? exists(file) : ld_test_file_has(log, line))
            break;
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            ld_test_show_tail(log, 20);
            LD_TEST_FAIL("%s: incarnation %d exited (status %d) before "
                         "version %llu",
                         name, n, status, (unsigned long long)v);
        }
        usleep(500); /* polling the awaited condition */
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    fence(name);
    int64_t m = manifests(name);
    ld_test_say("%s: incarnation %d killed at version %llu (%s): %lld "
                "versions committed",
                name, n, (unsigned long long)v,
                how == IN_FLIGHT ? "in flight" : "logged", (long long)m);
    return m;
}

/* Kills incarnations of run name (numbered from *n on) at the next
 * version's staged checkpoint until one dies with that publication in
 * flight: not committed, and not a version of the store (a start without
 * committed state would warm-start from it). A commit point that four
 * waiting publications brought on can win the race with the kill on a
 * loaded host: that incarnation still died between two publications, and
 * the next one is tried (3 in all). */
static void kill_in_flight(const char *name, const char *config, int *n)
{
    for (int tries = 0; tries < 3; tries++) {
        uint64_t v = written_top(name) + 1;
        int64_t m = kill_at(name, config, IN_FLIGHT, v, (*n)++);
        if (m >= (int64_t)v)
            continue;
        char file[512];
        store_file(file, sizeof(file), name, v, ".ckpt");
        LD_TEST_ASSERT(!exists(file),
                       "uncommitted version %llu is in the store",
                       (unsigned long long)v);
        return;
    }
    LD_TEST_FAIL("%s: no kill landed while a publication was in flight", name);
}

static void run_through(const char *name, const char *config)
{
    char log[256];
    snprintf(log, sizeof(log), "%s/%s.last.log", tmpdir, name);
    pid_t pid = ld_test_spawn_run(LD_LEARND_BIN, config, 1, log);
    int code = ld_test_wait_exit(pid, 300000);
    if (code != 0)
        ld_test_show_tail(log, 30);
    LD_TEST_EQ_I64("learnd exit code", 0, code);
}

static void params_sha(const char *name, uint64_t v, uint8_t sha[32])
{
    char file[512], why[512];
    store_file(file, sizeof(file), name, v, ".ckpt");
    ld_ckpt_t *ck = NULL;
    LD_TEST_ASSERT(ld_ckpt_read_file(file, &ck, why, sizeof(why)) == LD_OK,
                   "%s: %s", file, why);
    const Learnd__V1__Checkpoint *m = ld_ckpt_message(ck);
    LD_TEST_ASSERT(m->lineage && m->lineage->params_sha256.len == 32,
                   "%s: no params_sha256", file);
    LD_TEST_EQ_I64("version in the file", (int64_t)v,
                   (int64_t)m->lineage->version);
    memcpy(sha, m->lineage->params_sha256.data, 32);
    ld_ckpt_destroy(ck);
}

int main(void)
{
    ld_test_name(prefix, sizeof(prefix), "pk");
    ld_test_tmpdir(tmpdir, sizeof(tmpdir), "0019");
    rd_kafka_t *admin = ld_test_new(RD_KAFKA_PRODUCER, ld_test_conf_new());
    char t[256], events[256], labels[256];
    topic(events, sizeof(events), "events");
    topic(labels, sizeof(labels), "labels");
    ld_test_create_topic(admin, events, PARTS, 30000);
    ld_test_create_topic(admin, labels, PARTS, 30000);
    static const char *const runs[] = {"straight", "killed"};
    for (int i = 0; i < 2; i++) {
        topic(t, sizeof(t), runs[i]);
        ld_test_create_outputs(admin, t, 0);
    }
    ld_demo_gen_conf_t gc = {.seed = 19,
                             .n_events = EVENTS,
                             .start_time_ms = 1767225600000,
                             .step_ms = 5,
                             .label_delay_ms = 5000};
    ld_test_produce_demo(admin, &gc, events, labels, PARTS, 0);
    rd_kafka_destroy(admin);

    char cs[256], ck[256];
    write_config("straight", cs, sizeof(cs));
    write_config("killed", ck, sizeof(ck));
    run_through("straight", cs);
    uint64_t top = store_top("straight", ".ckpt");
    LD_TEST_ASSERT(top >= 12, "straight run published %llu versions",
                   (unsigned long long)top);
    LD_TEST_EQ_I64("straight run: manifests", (int64_t)top,
                   manifests("straight"));

    /* In flight: the version's checkpoint is written, its transaction is
     * not committed. Each kill point is a version no incarnation wrote
     * yet, so its file appearing is this incarnation's publication. */
    int n = 1;
    kill_in_flight("killed", ck, &n);
    /* Logged: what the log calls published is what readers see. */
    uint64_t v = written_top("killed") + 2;
    int64_t m = kill_at("killed", ck, LOGGED, v, n++);
    LD_TEST_ASSERT(m >= (int64_t)v,
                   "version %llu was logged as published but %lld versions "
                   "are committed",
                   (unsigned long long)v, (long long)m);
    kill_in_flight("killed", ck, &n);
    run_through("killed", ck);

    /* The same versions, each with the same parameters, one manifest each
     * (none lost, none published twice). */
    LD_TEST_EQ_I64("versions after kills", (int64_t)top,
                   (int64_t)store_top("killed", ".ckpt"));
    LD_TEST_EQ_I64("staged versions left", 0,
                   (int64_t)store_top("killed", ".ckpt.pending"));
    LD_TEST_EQ_I64("manifests after kills", (int64_t)top, manifests("killed"));
    for (uint64_t k = 1; k <= top; k++) {
        uint8_t a[32], b[32];
        params_sha("straight", k, a);
        params_sha("killed", k, b);
        LD_TEST_ASSERT(memcmp(a, b, 32) == 0,
                       "version %llu has other parameters after kills",
                       (unsigned long long)k);
    }
    char keys_a[1 << 14], keys_b[1 << 14];
    topic(t, sizeof(t), "straight.triggers");
    int64_t na = ld_test_trigger_keys(t, 30000, keys_a, sizeof(keys_a));
    topic(t, sizeof(t), "killed.triggers");
    int64_t nb = ld_test_trigger_keys(t, 30000, keys_b, sizeof(keys_b));
    LD_TEST_EQ_I64("trigger events", na, nb);
    LD_TEST_ASSERT(strcmp(keys_a, keys_b) == 0,
                   "trigger idempotency keys differ:\n%s---\n%s", keys_a,
                   keys_b);
    ld_test_say("%llu versions and %lld trigger events identical after the "
                "kills",
                (unsigned long long)top, (long long)na);
    ld_test_rm_rf(tmpdir);
    printf("0019-publish-kill: PASS\n");
    return 0;
}
