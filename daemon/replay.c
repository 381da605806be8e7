/* SPDX-License-Identifier: Apache-2.0 */
/* `learnd replay`: rebuild a published model from its input topics and
 * compare it, bit for bit, with the checkpoint. */
#include "daemon/replay.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/cli.h"
#include "daemon/run.h"
#include "daemon/version.h"

static const char usage[] =
    "usage: learnd replay -c FILE --checkpoint VERSION|PATH [--verify]\n"
    "                     [--examples-topic T]\n"
    "\n"
    "Assigns itself every partition of the input topics (no consumer group)\n"
    "and re-reads them from where the run that published version 1 started\n"
    "(as recorded in the lineage of the versions in checkpoint.dir; else from\n"
    "the beginning), repeats the idle-partition watermark advances recorded\n"
    "there at the offsets where they were made, trains from scratch with\n"
    "FILE's settings, and stops where VERSION was published (VERSION is\n"
    "looked up in checkpoint.dir; or give a .ckpt PATH).\n"
    "Nothing is written to Kafka or the model store. Prints both parameter\n"
    "hashes; with --verify exits 0 when they are identical and 1 when not,\n"
    "naming the first parameter that differs.\n"
    "\n"
    "The run being replayed must have started from scratch on topics that "
    "still\n"
    "hold its input, with the same config; replay on another CPU class "
    "should\n"
    "pin OPENBLAS_CORETYPE to the kernel named in the checkpoint.\n"
    "\n"
    "  -c, --config=FILE      the config of the run being replayed\n"
    "  --checkpoint=VERSION|PATH  the version to rebuild\n"
    "  --verify               exit 1 unless the parameters are identical\n"
    "  --examples-topic=T     a model of `run --role train`: re-read T\n"
    "                         (without it, such a model is re-joined from\n"
    "                         the inputs and trained: end to end)\n"
    "  -h, --help             show this help\n";

static void hex(const uint8_t *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
}

/* Prints the first parameter whose bits differ between two checkpoints. */
static void first_difference(const Learnd__V1__Checkpoint *a,
                             const Learnd__V1__Checkpoint *b)
{
    for (size_t i = 0; i < a->n_tensors; i++) {
        const Learnd__V1__Tensor *ta = a->tensors[i];
        const Learnd__V1__Tensor *tb = NULL;
        for (size_t j = 0; j < b->n_tensors && !tb; j++)
            if (strcmp(b->tensors[j]->name, ta->name) == 0)
                tb = b->tensors[j];
        if (!tb || tb->data.len != ta->data.len) {
            printf("first difference: tensor %s has another shape\n", ta->name);
            return;
        }
        size_t n = ta->data.len / 4;
        for (size_t k = 0; k < n; k++) {
            if (memcmp(ta->data.data + 4 * k, tb->data.data + 4 * k, 4)) {
                float fa, fb;
                uint8_t la[4], lb[4];
                memcpy(la, ta->data.data + 4 * k, 4);
                memcpy(lb, tb->data.data + 4 * k, 4);
                uint32_t ua = (uint32_t)la[0] | (uint32_t)la[1] << 8 |
                              (uint32_t)la[2] << 16 | (uint32_t)la[3] << 24;
                uint32_t ub = (uint32_t)lb[0] | (uint32_t)lb[1] << 8 |
                              (uint32_t)lb[2] << 16 | (uint32_t)lb[3] << 24;
                memcpy(&fa, &ua, 4);
                memcpy(&fb, &ub, 4);
                printf("first difference: %s[%zu] checkpoint %.9g (0x%08x), "
                       "replay %.9g (0x%08x)\n",
                       ta->name, k, (double)fa, ua, (double)fb, ub);
                return;
            }
        }
    }
    printf("first difference: none in the parameter tensors\n");
}

/* What the lineages of versions 1..version recorded: where reading began
 * and the advances to repeat. */
typedef struct plan {
    ld_run_start_t *start;
    size_t nstart;
    ld_run_advance_t *adv;
    size_t nadv;
    uint64_t missing;  /* versions not in the store */
    uint64_t unplaced; /* advances without their offset (older learnd) */
    /* a train-role version replayed from the inputs: the examples topic
     * its lineage names, and whether it recorded the events' ranges */
    char via[256];
    int via_events;
} plan_t;

/* --examples-topic: a train-role model's input (NULL: the inputs). */
static const char *examples_topic;

static const char *input_topic(const ld_config_t *conf, const char *name)
{
    if (examples_topic)
        return strcmp(name, examples_topic) == 0 ? examples_topic : NULL;
    if (strcmp(name, conf->pipeline.events_topic) == 0)
        return conf->pipeline.events_topic;
    if (strcmp(name, conf->pipeline.labels_topic) == 0)
        return conf->pipeline.labels_topic;
    return NULL;
}

static int plan_add(plan_t *p, const ld_config_t *conf,
                    const Learnd__V1__Lineage *l)
{
    for (size_t i = 0; i < l->n_consumed; i++) {
        const Learnd__V1__OffsetRange *c = l->consumed[i];
        const char *t = input_topic(conf, c->topic);
        if (!t && !examples_topic && !p->via[0])
            snprintf(p->via, sizeof(p->via), "%s", c->topic);
        if (t && t == conf->pipeline.events_topic)
            p->via_events = 1;
        if (!t || c->first_offset < 0)
            continue;
        size_t k = 0;
        while (k < p->nstart && (p->start[k].topic != t ||
                                 p->start[k].partition != c->partition))
            k++;
        if (k == p->nstart) {
            ld_run_start_t *g = realloc(p->start, (p->nstart + 1) * sizeof(*g));
            if (!g)
                return -1;
            p->start = g;
            p->start[p->nstart++] =
                (ld_run_start_t){t, c->partition, c->first_offset};
        } else if (c->first_offset < p->start[k].offset) {
            p->start[k].offset = c->first_offset;
        }
    }
    for (size_t i = 0; i < l->n_watermark_advances; i++) {
        const Learnd__V1__WatermarkAdvance *w = l->watermark_advances[i];
        const char *t = input_topic(conf, w->topic);
        if (!t)
            continue;
        if (w->n_at < 1 || w->at[0]->partition != w->partition ||
            strcmp(w->at[0]->topic, w->topic) != 0) {
            p->unplaced++;
            continue;
        }
        ld_run_advance_t *g = realloc(p->adv, (p->nadv + 1) * sizeof(*g));
        if (!g)
            return -1;
        p->adv = g;
        p->adv[p->nadv++] = (ld_run_advance_t){
            t, w->partition, w->at[0]->offset, w->watermark_ms};
    }
    return 0;
}

/* Reads the lineages of versions 1..version-1 from the model store, plus
 * target's own. Without version 1 where reading began is unknown: the
 * replay then reads from the beginning. */
static int plan_build(plan_t *p, const ld_config_t *conf, uint64_t version,
                      const Learnd__V1__Lineage *target)
{
    int have_first = version == 1;
    for (uint64_t v = 1; v < version; v++) {
        char file[1024], why[256];
        ld_ckpt_t *c = NULL;
        snprintf(file, sizeof(file), "%s/%s/%llu.ckpt", conf->checkpoint.dir,
                 conf->trainer.name, (unsigned long long)v);
        if (ld_ckpt_read_file(file, &c, why, sizeof(why)) != LD_OK) {
            p->missing++;
            continue;
        }
        const Learnd__V1__Checkpoint *m = ld_ckpt_message(c);
        have_first |= v == 1;
        int bad = m->lineage && plan_add(p, conf, m->lineage);
        ld_ckpt_destroy(c);
        if (bad)
            return -1;
    }
    if (plan_add(p, conf, target))
        return -1;
    if (!have_first)
        p->nstart = 0;
    return 0;
}

static void say_gap(void *opaque, const char *topic, int32_t partition,
                    int64_t want, int64_t log_start)
{
    (void)opaque;
    fprintf(stderr,
            "learnd replay: topic %s partition %d: the recorded input starts "
            "at offset %lld, but retention deleted it: the log starts at "
            "offset %lld\n",
            topic, (int)partition, (long long)want, (long long)log_start);
}

int ld_replay_ckpt_path(const ld_config_t *conf, const char *which, char *file,
                        size_t size)
{
    int digits = which[0] != '\0';
    for (const char *p = which; *p; p++)
        digits = digits && isdigit((unsigned char)*p);
    if (digits)
        snprintf(file, size, "%s/%s/%s.ckpt", conf->checkpoint.dir,
                 conf->trainer.name, which);
    else
        snprintf(file, size, "%s", which);
    return digits;
}

/* The checkpoint to replay (a version of the store, or a file: a full
 * checkpoint or a delta, whose params_sha256 is what its chain rebuilds)
 * into *out; LD_EXIT_OK, or the exit code after saying why. */
static int open_target(const ld_config_t *conf, const char *which,
                       ld_ckpt_t **out)
{
    char file[1024], why[512];
    ld_replay_ckpt_path(conf, which, file, sizeof(file));
    if (ld_ckpt_read_file_any(file, out, why, sizeof(why))) {
        fprintf(stderr, "learnd replay: %s: %s\n", file, why);
        return LD_EXIT_RUNTIME;
    }
    const Learnd__V1__Checkpoint *om = ld_ckpt_message(*out);
    if (!om->lineage || om->lineage->version == 0 ||
        om->lineage->params_sha256.len != 32) {
        fprintf(stderr, "learnd replay: %s has no version to replay\n", file);
        return LD_EXIT_RUNTIME;
    }
    if (strcmp(om->lineage->model, conf->trainer.name) != 0) {
        fprintf(stderr,
                "learnd replay: %s is model '%s', the config trains '%s'\n",
                file, om->lineage->model, conf->trainer.name);
        return LD_EXIT_USAGE;
    }
    return LD_EXIT_OK;
}

/* What the replay will do, and what it cannot repeat. */
static void say_plan(const ld_config_t *conf, const plan_t *plan,
                     uint64_t version)
{
    printf("replaying %s version %llu from %s of %s and %s, repeating %zu "
           "recorded watermark advance%s\n",
           conf->trainer.name, (unsigned long long)version,
           plan->nstart ? "the recorded start" : "the beginning",
           conf->pipeline.events_topic, conf->pipeline.labels_topic, plan->nadv,
           plan->nadv == 1 ? "" : "s");
    if (plan->missing)
        printf("warning: %llu earlier version%s not in %s/%s: advances "
               "recorded there cannot be repeated\n",
               (unsigned long long)plan->missing,
               plan->missing == 1 ? " is" : "s are", conf->checkpoint.dir,
               conf->trainer.name);
    if (plan->unplaced)
        printf("warning: %llu recorded advance%s no offset (written by an "
               "older learnd) and cannot be repeated\n",
               (unsigned long long)plan->unplaced,
               plan->unplaced == 1 ? " has" : "s have");
    if (plan->via[0])
        printf("version %llu was trained by `learnd run --role train` from "
               "the examples topic %s: re-joining it from the inputs, %s, "
               "labels from the beginning (examples carry no label offsets); "
               "idle-partition advances of the join instances are not "
               "recorded and cannot be repeated (--examples-topic %s "
               "replays the training alone)\n",
               (unsigned long long)version, plan->via,
               plan->via_events && plan->nstart
                   ? "events from where its examples' events start"
                   : "events from the beginning (no event ranges recorded)",
               plan->via);
    fflush(stdout);
}

int ld_cmd_replay(int argc, char **argv)
{
    const char *path = NULL, *which = NULL;
    int verify = 0;
    enum { OPT_CHECKPOINT = 256, OPT_VERIFY, OPT_EXTOPIC };
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"examples-topic", required_argument, NULL, OPT_EXTOPIC},
        {"checkpoint", required_argument, NULL, OPT_CHECKPOINT},
        {"verify", no_argument, NULL, OPT_VERIFY},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int c;
    optind = 0;
    examples_topic = NULL;
    while ((c = ld_cli_getopt(argc, argv, "c:h", longopts, usage)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case OPT_CHECKPOINT:
            which = optarg;
            break;
        case OPT_VERIFY:
            verify = 1;
            break;
        case OPT_EXTOPIC:
            examples_topic = optarg;
            break;
        case 'h':
            fputs(usage, stdout);
            return LD_EXIT_OK;
        default:
            return LD_EXIT_USAGE;
        }
    }
    if (optind < argc)
        return ld_cli_usage_error("replay", usage, "unexpected argument '%s'",
                                  argv[optind]);
    if (!path || !which)
        return ld_cli_usage_error("replay", usage,
                                  "needs -c FILE and --checkpoint");
    ld_config_t *conf = ld_config_load(path, stderr);
    if (!conf) {
        fprintf(stderr, "learnd: %s: configuration is invalid\n", path);
        return LD_EXIT_USAGE;
    }
    int code = LD_EXIT_RUNTIME;
    ld_ckpt_t *orig = NULL, *again = NULL;
    ld_snapshot_t *snap = NULL;
    ld_buf_t enc = {0};
    plan_t plan = {0};
    char why[512];
    if ((code = open_target(conf, which, &orig)) != LD_EXIT_OK)
        goto out;
    code = LD_EXIT_RUNTIME;
    const Learnd__V1__Checkpoint *om = ld_ckpt_message(orig);
    uint64_t version = om->lineage->version;
    if (ld_config_apply_logging(conf) != LD_OK)
        goto out;
    if (plan_build(&plan, conf, version, om->lineage)) {
        fprintf(stderr, "learnd replay: out of memory\n");
        goto out;
    }
    say_plan(conf, &plan, version);
    /* Retention may have deleted the recorded range: say where, rather
     * than "did not reach version" after reading what is left. */
    int gaps = ld_run_check_retained(&conf->kafka, plan.start, plan.nstart,
                                     10000, say_gap, NULL, why, sizeof(why));
    if (gaps < 0)
        fprintf(stderr, "learnd replay: warning: %s\n", why);
    if (gaps > 0)
        goto out;
    ld_run_opts_t opts = {.role = examples_topic ? LD_ROLE_TRAIN : LD_ROLE_ALL,
                          .examples_topic = examples_topic,
                          .until_caught_up = 1,
                          .replay_version = version,
                          .replayed = &snap,
                          .replay_start = plan.start,
                          .n_replay_start = plan.nstart,
                          .replay_advances = plan.adv,
                          .n_replay_advances = plan.nadv};
    int rc = ld_run(conf, &opts);
    if (rc != LD_EXIT_OK || !snap) {
        fprintf(stderr,
                "learnd replay: the replay did not reach version "
                "%llu\n",
                (unsigned long long)version);
        code = rc ? rc : LD_EXIT_RUNTIME;
        goto out;
    }
    uint8_t sha[32];
    ld_snapshot_params_sha256(snap, sha);
    char hs[65], ho[65];
    hex(sha, 32, hs);
    hex(om->lineage->params_sha256.data, 32, ho);
    int same = memcmp(sha, om->lineage->params_sha256.data, 32) == 0;
    printf("checkpoint params_sha256 %s\nreplayed   params_sha256 %s\n%s\n", ho,
           hs, same ? "identical" : "DIFFERENT");
    /* A delta holds only changed rows: no tensor to compare row by row. */
    if (!same && !ld_ckpt_delta_of(orig, NULL, NULL)) {
        ld_ckpt_meta_t meta = {.model = conf->trainer.name,
                               .version = version,
                               .learnd_version = LD_VERSION};
        if (ld_ckpt_encode(snap, &meta, &enc) == LD_OK &&
            ld_ckpt_decode(enc.data, enc.len, &again, why, sizeof(why)) ==
                LD_OK)
            first_difference(om, ld_ckpt_message(again));
    }
    code = verify && !same ? LD_EXIT_RUNTIME : LD_EXIT_OK;
out:
    free(plan.start);
    free(plan.adv);
    free(enc.data);
    ld_ckpt_destroy(again);
    ld_ckpt_destroy(orig);
    ld_snapshot_destroy(snap);
    ld_config_destroy(conf);
    return code;
}
