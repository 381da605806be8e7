/* SPDX-License-Identifier: Apache-2.0 */
/* Delta checkpoints on the real broker: with checkpoint.delta_every 3 the
 * checkpoints topic carries a full version, then two deltas, and so on;
 * every manifest names its chain, every version rebuilt from the topic has
 * exactly the parameters of the full checkpoint in the local store, a
 * delta is far smaller than a full one, and a missing or corrupt link is
 * refused by the library and by `learnd inspect --chain`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "daemon/demo.h"
#include "publish/publish.h"
#include "testutil.h"
#include "trainer/checkpoint.h"

#define EVENTS 80000
#define MAXV   64

static char prefix[128];
static char tmpdir[64];

typedef struct version {
    ld_buf_t manifest;
    ld_buf_t chunks[64];
    size_t nchunks;
    ld_buf_t bytes; /* reassembled */
} version_t;

static version_t vs[MAXV + 1];

static ld_buf_t copy(const void *p, size_t n)
{
    ld_buf_t b = {malloc(n ? n : 1), n};
    LD_TEST_ASSERT(b.data, "out of memory");
    memcpy(b.data, p, n);
    return b;
}

static void take(const rd_kafka_message_t *m, void *opaque)
{
    (void)opaque;
    const char *k = m->key;
    if (m->key_len == 2 && !memcmp(k, "dc", 2)) {
        Learnd__V1__CheckpointManifest *mf =
            learnd__v1__checkpoint_manifest__unpack(NULL, m->len, m->payload);
        LD_TEST_ASSERT(mf && mf->version >= 1 && mf->version <= MAXV,
                       "manifest");
        vs[mf->version].manifest = copy(m->payload, m->len);
        learnd__v1__checkpoint_manifest__free_unpacked(mf, NULL);
        return;
    }
    Learnd__V1__CheckpointChunk *ch =
        learnd__v1__checkpoint_chunk__unpack(NULL, m->len, m->payload);
    LD_TEST_ASSERT(ch && ch->version >= 1 && ch->version <= MAXV &&
                       ch->index < 64,
                   "chunk");
    version_t *v = &vs[ch->version];
    v->chunks[ch->index] = copy(m->payload, m->len);
    if (ch->index + 1 > v->nchunks)
        v->nchunks = ch->index + 1;
    learnd__v1__checkpoint_chunk__free_unpacked(ch, NULL);
}

static void write_file(const char *path, const ld_buf_t *b)
{
    FILE *f = fopen(path, "wb");
    LD_TEST_ASSERT(f && fwrite(b->data, 1, b->len, f) == b->len, "%s", path);
    fclose(f);
}

/* `learnd inspect FILE --chain LIST`, output into out; its exit code. */
static int inspect(const char *file, const char *list, const char *out)
{
    char cmd[4096];
    snprintf(cmd, sizeof(cmd), "%s inspect %s --chain %s >%s 2>&1",
             LD_LEARND_BIN, file, list, out);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int main(void)
{
    ld_test_name(prefix, sizeof(prefix), "dc");
    ld_test_tmpdir(tmpdir, sizeof(tmpdir), "0022");
    rd_kafka_t *admin = ld_test_new(RD_KAFKA_PRODUCER, ld_test_conf_new());
    char t[300], names[256], events[256], labels[256];
    snprintf(events, sizeof(events), "%s.events", prefix);
    snprintf(labels, sizeof(labels), "%s.labels", prefix);
    ld_test_create_topic(admin, events, 1, 30000);
    ld_test_create_topic(admin, labels, 1, 30000);
    snprintf(names, sizeof(names), "%s.run", prefix);
    ld_test_create_outputs(admin, names, 0);
    ld_demo_gen_conf_t gc = {.seed = 22,
                             .n_events = EVENTS,
                             .drift_at = EVENTS / 2,
                             .start_time_ms = 1767225600000,
                             .step_ms = 5,
                             .label_delay_ms = 5000};
    ld_test_produce_demo(admin, &gc, events, labels, 1, 0);

    char config[256], log[256];
    snprintf(config, sizeof(config), "%s/run.yaml", tmpdir);
    snprintf(log, sizeof(log), "%s/run.log", tmpdir);
    FILE *f = ld_test_config_begin(config, NULL, names);
    /* A port of its own: 9464 may be another test's. */
    fprintf(f, "log:\n  level: notice\nmetrics:\n  port: %u\n",
            (unsigned)ld_test_free_port());
    ld_test_config_demo_input(f, prefix, names);
    fprintf(f,
            "  hash_fields: [country, ad_id, device, ctx:publisher, "
            "ctx:tags]\n"
            "  crosses: [[country, ad_id]]\n"
            "  label_field: clicked\n"
            "labeling:\n"
            "  window: 20s\n"
            "  max_out_of_orderness: 1s\n"
            "trainer:\n"
            "  name: dc\n"
            "  hash_bits: 18\n"
            "  batch_size: 100\n"
            "checkpoint:\n"
            "  dir: %s/models\n"
            "  keep: 100\n"
            "  delta_every: 3\n"
            "triggers:\n"
            "  volume_examples: 8000\n",
            tmpdir);
    fclose(f);
    pid_t pid = ld_test_spawn_run(LD_LEARND_BIN, config, 1, log);
    int code = ld_test_wait_exit(pid, 180000);
    if (code != 0)
        ld_test_show_tail(log, 30);
    LD_TEST_EQ_I64("learnd exit code", 0, code);

    snprintf(t, sizeof(t), "%s.ckpt", names);
    ld_test_read_topic(t, 60000, take, NULL, NULL);
    uint64_t last = 0;
    while (last < MAXV && vs[last + 1].manifest.data)
        last++;
    LD_TEST_ASSERT(last >= 6, "only %llu versions published",
                   (unsigned long long)last);
    char why[600], file[MAXV + 1][300], list[4096];
    size_t full_bytes = 0, delta_bytes = 0, nfull = 0, ndelta = 0;
    for (uint64_t v = 1; v <= last; v++) {
        version_t *x = &vs[v];
        LD_TEST_ASSERT(ld_ckpt_assemble(x->manifest.data, x->manifest.len,
                                        x->chunks, x->nchunks, &x->bytes, why,
                                        sizeof(why)) == LD_OK,
                       "version %llu: %s", (unsigned long long)v, why);
        snprintf(file[v], sizeof(file[v]), "%s/%llu.wire", tmpdir,
                 (unsigned long long)v);
        write_file(file[v], &x->bytes);
        Learnd__V1__CheckpointManifest *mf =
            learnd__v1__checkpoint_manifest__unpack(NULL, x->manifest.len,
                                                    x->manifest.data);
        /* Versions 1, 4, 7 ... are full; the others deltas of the one
         * before, their manifests naming base, ..., parent. */
        uint64_t base = v - (v - 1) % 3;
        LD_TEST_EQ_I64("base_version", (int64_t)base,
                       (int64_t)mf->base_version);
        LD_TEST_EQ_I64("chain length", (int64_t)(v - base),
                       (int64_t)mf->n_chain);
        ld_buf_t links[3];
        for (size_t i = 0; i < mf->n_chain; i++) {
            LD_TEST_EQ_I64("chain link", (int64_t)(base + i),
                           (int64_t)mf->chain[i]);
            links[i] = vs[mf->chain[i]].bytes;
        }
        links[mf->n_chain] = x->bytes;
        ld_snapshot_t *s = NULL;
        uint64_t got = 0;
        LD_TEST_ASSERT(ld_ckpt_chain_rebuild(links, mf->n_chain + 1, &s, &got,
                                             why, sizeof(why)) == LD_OK,
                       "version %llu: %s", (unsigned long long)v, why);
        LD_TEST_EQ_I64("rebuilt version", (int64_t)v, (int64_t)got);
        /* The store's full checkpoint of the same version. */
        char path[512];
        snprintf(path, sizeof(path), "%s/models/dc/%llu.ckpt", tmpdir,
                 (unsigned long long)v);
        ld_ckpt_t *full = NULL;
        LD_TEST_ASSERT(ld_ckpt_read_file(path, &full, why, sizeof(why)) ==
                           LD_OK,
                       "%s", why);
        ld_snapshot_t *fs = ld_ckpt_snapshot(full);
        size_t na = 0, nb = 0;
        float *pa = ld_snapshot_sparse(s, &na),
              *pb = ld_snapshot_sparse(fs, &nb);
        LD_TEST_ASSERT(na == nb && !memcmp(pa, pb, na * sizeof(float)),
                       "version %llu rebuilt from the topic differs from the "
                       "store's",
                       (unsigned long long)v);
        uint8_t ha[32], hb[32];
        ld_snapshot_params_sha256(s, ha);
        ld_snapshot_params_sha256(fs, hb);
        LD_TEST_ASSERT(!memcmp(ha, hb, 32) &&
                           !memcmp(ha, mf->params_sha256.data, 32),
                       "params_sha256 of version %llu", (unsigned long long)v);
        if (v == base) {
            full_bytes += x->bytes.len;
            nfull++;
        } else {
            delta_bytes += x->bytes.len;
            ndelta++;
        }
        ld_test_say("version %llu: %s, %zu bytes on the topic, %zu in the "
                    "store",
                    (unsigned long long)v, v == base ? "full " : "delta",
                    x->bytes.len, ld_ckpt_size(full));
        ld_snapshot_destroy(s);
        ld_snapshot_destroy(fs);
        ld_ckpt_destroy(full);
        learnd__v1__checkpoint_manifest__free_unpacked(mf, NULL);
    }
    ld_test_say("mean bytes per publication: full %zu, delta %zu",
                full_bytes / nfull, delta_bytes / ndelta);
    LD_TEST_ASSERT(ndelta >= 4 && delta_bytes / ndelta < full_bytes / nfull,
                   "deltas are not smaller than full versions");

    /* learnd replay takes a delta from the topic: it replays the input to
     * the parameters the chain rebuilds. */
    char rout[300];
    snprintf(rout, sizeof(rout), "%s/replay.txt", tmpdir);
    char *rargv[] = {LD_LEARND_BIN,  "replay", "-c",       config,
                     "--checkpoint", file[5],  "--verify", NULL};
    LD_TEST_EQ_I64("replay --verify of delta version 5", 0,
                   ld_test_wait_exit(ld_test_spawn(rargv, rout), 120000));
    LD_TEST_ASSERT(ld_test_file_has(rout, "identical"), "replay output");

    /* The example deployer follows the chain: every version it deploys is
     * the full checkpoint, with the store's parameters. */
    char cmd[4096], gen[300], dep[300], dlog[300];
    snprintf(gen, sizeof(gen), "%s/gen", tmpdir);
    snprintf(dep, sizeof(dep), "%s/deployed", tmpdir);
    snprintf(dlog, sizeof(dlog), "%s/deployer.log", tmpdir);
    snprintf(cmd, sizeof(cmd),
             "%s/examples/deployer/setup.sh %s %s >%s 2>&1 && "
             "PYTHONPATH=%s %s/bin/python %s/examples/deployer/deployer.py "
             "--bootstrap %s --models-dir %s --topic %s.triggers --group "
             "%s.deployer --once --from-beginning >>%s 2>&1",
             LD_SOURCE_DIR, LD_DEPLOYER_VENV, gen, dlog, gen, LD_DEPLOYER_VENV,
             LD_SOURCE_DIR, ld_test_bootstrap(), dep, names, names, dlog);
    int st = system(cmd);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        ld_test_show_tail(dlog, 30);
    LD_TEST_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0,
                   "the example deployer failed");
    for (uint64_t v = 1; v <= last; v++) {
        char a[512], b[512];
        snprintf(a, sizeof(a), "%s/dc/%llu.ckpt", dep, (unsigned long long)v);
        snprintf(b, sizeof(b), "%s/models/dc/%llu.ckpt", tmpdir,
                 (unsigned long long)v);
        ld_ckpt_t *ca = NULL, *cb = NULL;
        LD_TEST_ASSERT(ld_ckpt_read_file(a, &ca, why, sizeof(why)) == LD_OK,
                       "deployed version %llu: %s", (unsigned long long)v, why);
        LD_TEST_ASSERT(ld_ckpt_read_file(b, &cb, why, sizeof(why)) == LD_OK,
                       "%s", why);
        const ProtobufCBinaryData
            *pa = &ld_ckpt_message(ca)->lineage->params_sha256,
            *pb = &ld_ckpt_message(cb)->lineage->params_sha256;
        LD_TEST_ASSERT(pa->len == 32 && !memcmp(pa->data, pb->data, 32),
                       "deployed version %llu differs from the store's",
                       (unsigned long long)v);
        ld_ckpt_destroy(ca);
        ld_ckpt_destroy(cb);
    }
    LD_TEST_ASSERT(ld_test_file_has(dlog, "delta_of=2"),
                   "the deployer did not rebuild a delta");

    /* A missing link: version 3 on version 1 alone. */
    ld_buf_t skip[2] = {vs[1].bytes, vs[3].bytes};
    ld_snapshot_t *bad = NULL;
    LD_TEST_ASSERT(ld_ckpt_chain_rebuild(skip, 2, &bad, NULL, why,
                                         sizeof(why)) == LD_ERR_CORRUPT,
                   "a chain without version 2 was accepted");
    LD_TEST_ASSERT(strstr(why, "missing link") != NULL, "%s", why);
    /* learnd inspect: the chain verified, a missing and a corrupt link
     * refused with the reason. */
    char out[300];
    snprintf(out, sizeof(out), "%s/inspect.txt", tmpdir);
    snprintf(list, sizeof(list), "%s,%s", file[1], file[2]);
    LD_TEST_EQ_I64("inspect --chain exit", 0, inspect(file[3], list, out));
    LD_TEST_ASSERT(ld_test_file_has(out, "params_sha256 ok"),
                   "inspect did not verify the chain");
    LD_TEST_EQ_I64("inspect, missing link", 1, inspect(file[3], file[1], out));
    LD_TEST_ASSERT(ld_test_file_has(out, "missing link"),
                   "inspect did not name the missing link");
    vs[2].bytes.data[vs[2].bytes.len / 2] ^= 0x01;
    write_file(file[2], &vs[2].bytes);
    LD_TEST_EQ_I64("inspect, corrupt link", 1, inspect(file[3], list, out));
    LD_TEST_ASSERT(ld_test_file_has(out, "link 1 of the chain"),
                   "inspect did not name the corrupt link");
    for (uint64_t v = 1; v <= last; v++) {
        free(vs[v].manifest.data);
        free(vs[v].bytes.data);
        for (size_t i = 0; i < vs[v].nchunks; i++)
            free(vs[v].chunks[i].data);
    }
    rd_kafka_destroy(admin);
    ld_test_rm_rf(tmpdir);
    ld_test_say("0022 passed");
    return 0;
}
