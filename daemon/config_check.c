/* SPDX-License-Identifier: Apache-2.0 */
/* Cross-key validation of a loaded config: what `run` would refuse,
 * checked at load time with file:line:column errors. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/config_load.h"
#include "daemon/metrics.h"
#include "pipeline/decode.h"
#include "publish/publish.h"

/* What `run` would refuse, checked here so that `config check` finds it and
 * `run` exits 2 (a config error) before touching Kafka, rather than 1 (which
 * makes systemd restart it forever). Each error points at the key's value in
 * the file, or at its section when the key was left at its default. */

/* The value node of section.key in the document, or NULL. */
static yaml_node_t *find_value(loader_t *ld, const char *section,
                               const char *key, yaml_node_t **sec_key)
{
    yaml_node_t *root = yaml_document_get_root_node(&ld->doc);
    *sec_key = NULL;
    if (!root || root->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start;
         p < root->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(&ld->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(&ld->doc, p->value);
        if (!k || !v || k->type != YAML_SCALAR_NODE ||
            strcmp(ld_config_scalar(k), section) != 0)
            continue;
        *sec_key = k;
        if (v->type != YAML_MAPPING_NODE)
            return NULL;
        for (yaml_node_pair_t *q = v->data.mapping.pairs.start;
             q < v->data.mapping.pairs.top; q++) {
            yaml_node_t *kk = yaml_document_get_node(&ld->doc, q->key);
            if (kk && kk->type == YAML_SCALAR_NODE &&
                strcmp(ld_config_scalar(kk), key) == 0)
                return yaml_document_get_node(&ld->doc, q->value);
        }
    }
    return NULL;
}

/* Reports fmt at section.key (item idx of a list when idx >= 0). */
static void report_key(loader_t *ld, const char *section, const char *key,
                       long idx, const char *fmt, ...) LD_PRINTF(5, 6);

static void report_key(loader_t *ld, const char *section, const char *key,
                       long idx, const char *fmt, ...)
{
    yaml_node_t *sec = NULL;
    yaml_node_t *node = find_value(ld, section, key, &sec);
    if (node && idx >= 0 && node->type == YAML_SEQUENCE_NODE &&
        idx < node->data.sequence.items.top - node->data.sequence.items.start)
        node = yaml_document_get_node(&ld->doc,
                                      node->data.sequence.items.start[idx]);
    char name[200], why[1024];
    if (idx >= 0)
        snprintf(name, sizeof(name), "%s.%s[%ld]", section, key, idx);
    else
        snprintf(name, sizeof(name), "%s.%s", section, key);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    ld_config_report(ld, node ? node : sec, name, "%s", why);
}

/* Kafka's own rule for topic names (kafka/common/internals/Topic.java). */
static const char *topic_problem(const char *t)
{
    size_t n = t ? strlen(t) : 0;
    if (n == 0)
        return "empty topic name";
    if (n > 249)
        return "topic name longer than 249 characters";
    if (strcmp(t, ".") == 0 || strcmp(t, "..") == 0)
        return "'.' and '..' are not topic names";
    for (const char *p = t; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '.' && *p != '_' && *p != '-')
            return "topic names take only ASCII letters, digits, '.', '_' "
                   "and '-'";
    return NULL;
}

typedef struct topic_key {
    const char *section, *key, *value;
    int input;
} topic_key_t;

static void validate_topics(loader_t *ld)
{
    const ld_config_t *c = ld->conf;
    const char *audit = c->labeling.output_topic;
    topic_key_t t[] = {
        {"pipeline", "events_topic", c->pipeline.events_topic, 1},
        {"pipeline", "labels_topic", c->pipeline.labels_topic, 1},
        {"pipeline", "dlq_topic", c->pipeline.dlq_topic, 0},
        {"daemon", "state_topic", c->daemon.state_topic, 0},
        {"daemon", "checkpoint_topic", c->daemon.checkpoint_topic, 0},
        {"daemon", "trigger_topic", c->daemon.trigger_topic, 0},
        {"labeling", "output_topic", audit && audit[0] ? audit : NULL, 0},
    };
    size_t n = sizeof(t) / sizeof(t[0]);
    int bad[sizeof(t) / sizeof(t[0])] = {0};
    for (size_t i = 0; i < n; i++) {
        if (!t[i].value && strcmp(t[i].key, "output_topic") == 0)
            continue;
        const char *why = topic_problem(t[i].value);
        if (why) {
            report_key(ld, t[i].section, t[i].key, -1, "%s", why);
            bad[i] = 1;
        }
    }
    /* One topic in two roles loops or mixes records: dead letters fed back
     * into the input multiply (10 bad records became 190 in 20 s), trigger
     * events among checkpoint chunks confuse every deployer. */
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++) {
            if (bad[i] || bad[j] || !t[i].value || !t[j].value ||
                strcmp(t[i].value, t[j].value) != 0)
                continue;
            /* Point at the output (or the second input), the key to
             * change, unless only the other one is written in the file. */
            yaml_node_t *sec;
            const topic_key_t *at = &t[j], *other = &t[i];
            if (!find_value(ld, t[j].section, t[j].key, &sec) &&
                find_value(ld, t[i].section, t[i].key, &sec))
                at = &t[i], other = &t[j];
            report_key(ld, at->section, at->key, -1,
                       "'%s' is also %s.%s; one topic cannot serve two "
                       "roles (dead letters fed back into an input multiply)",
                       at->value, other->section, other->key);
        }
}

/* 0 when path names a readable regular file, else reports why. */
static int check_schema_file(loader_t *ld, const char *key, long idx,
                             const char *path)
{
    /* O_NONBLOCK: a FIFO named as a schema must not hang the check. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    struct stat st;
    if (fd < 0) {
        report_key(ld, "pipeline", key, idx, "cannot read schema '%s': %s",
                   path, strerror(errno));
        return -1;
    }
    int ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    close(fd);
    if (!ok) {
        report_key(ld, "pipeline", key, idx,
                   "schema '%s' is not a regular file", path);
        return -1;
    }
    return 0;
}

/* Which mapping key names field for records of kind: item index in *idx
 * (-1 for a scalar key). NULL when none does. */
static const char *mapping_key_of(const ld_pipeline_conf_t *pc,
                                  ld_record_kind_t kind, const char *field,
                                  long *idx)
{
    *idx = -1;
    if (pc->key_field && strcmp(pc->key_field, field) == 0)
        return "key_field";
    if (kind == LD_RECORD_EVENT) {
        if (pc->time_source == LD_TIME_FIELD && pc->event_time_field &&
            strcmp(pc->event_time_field, field) == 0)
            return "event_time_field";
        for (size_t i = 0; i < pc->dense_fields.n; i++)
            if (strcmp(pc->dense_fields.v[i], field) == 0) {
                *idx = (long)i;
                return "dense_fields";
            }
        for (size_t i = 0; i < pc->hash_fields.n; i++) {
            const char *e = pc->hash_fields.v[i], *colon = strchr(e, ':');
            if (strcmp(colon ? colon + 1 : e, field) == 0) {
                *idx = (long)i;
                return "hash_fields";
            }
        }
    } else {
        if (pc->time_source == LD_TIME_FIELD && pc->label_time_field &&
            strcmp(pc->label_time_field, field) == 0)
            return "label_time_field";
        if (pc->label_field && strcmp(pc->label_field, field) == 0)
            return "label_field";
    }
    return NULL;
}

/* Builds the decoder `run` builds for kind, and turns its refusal into an
 * error at the key responsible. */
static void validate_decoder(loader_t *ld, const ld_pipeline_conf_t *pc,
                             ld_record_kind_t kind)
{
    /* users' own Protobuf: the descriptor set is the schema */
    int pbd = pc->format == LD_FORMAT_PROTOBUF && pc->descriptor_set &&
              pc->descriptor_set[0];
    const char *schema_key = pbd                       ? "descriptor_set"
                             : kind == LD_RECORD_EVENT ? "event_schema"
                                                       : "label_schema";
    char why[1024] = "";
    ld_decoder_t *d = ld_decoder_new(pc, kind, why, sizeof(why));
    if (d) {
        ld_decoder_destroy(d);
        return;
    }
    /* "pipeline.crosses[0]: ..." names its key itself. */
    if (strncmp(why, "pipeline.", 9) == 0) {
        const char *k = why + 9;
        size_t klen = strcspn(k, "[:");
        long idx = -1;
        const char *rest = k + klen;
        if (*rest == '[') {
            idx = strtol(rest + 1, (char **)&rest, 10);
            if (*rest == ']')
                rest++;
        }
        if (rest[0] == ':' && rest[1] == ' ' && klen < 64) {
            char key[64];
            memcpy(key, k, klen);
            key[klen] = '\0';
            if (ld_conf_find(&ld_pipeline_conf_section, key)) {
                report_key(ld, "pipeline", key, idx, "%s", rest + 2);
                return;
            }
        }
    }
    /* "<schema>: no field F (mapped in the pipeline config)" */
    const char *nf = strstr(why, ": no field ");
    if (nf) {
        char field[256];
        const char *f = nf + strlen(": no field ");
        size_t flen = strcspn(f, " ");
        if (flen < sizeof(field)) {
            memcpy(field, f, flen);
            field[flen] = '\0';
            long idx;
            const char *key = mapping_key_of(pc, kind, field, &idx);
            const char *path =
                kind == LD_RECORD_EVENT ? pc->event_schema : pc->label_schema;
            if (key && pbd) {
                report_key(ld, "pipeline", key, idx,
                           "field '%s' is not in message %s of %s", field,
                           kind == LD_RECORD_EVENT ? pc->event_message
                                                   : pc->label_message,
                           pc->descriptor_set);
                return;
            }
            if (key) {
                report_key(ld, "pipeline", key, idx,
                           "field '%s' is not in the %s schema %s", field,
                           kind == LD_RECORD_EVENT ? "event" : "label", path);
                return;
            }
        }
    }
    /* "<set>: message M: field F is a message ...": a mapped field that
     * cannot be a feature (pipeline/pbdesc.c) */
    const char *ff = pbd ? strstr(why, ": field ") : NULL;
    if (ff) {
        char field[256];
        const char *f = ff + strlen(": field ");
        size_t flen = strcspn(f, " :");
        long idx;
        const char *key = NULL;
        if (flen < sizeof(field)) {
            memcpy(field, f, flen);
            field[flen] = '\0';
            key = mapping_key_of(pc, kind, field, &idx);
            /* or the mapped name is below the field (m.x for field m) */
            if (!key) {
                const ld_strlist_t *l[2] = {&pc->dense_fields,
                                            &pc->hash_fields};
                for (int k = 0; k < 2 && !key && kind == LD_RECORD_EVENT; k++)
                    for (size_t i = 0; i < l[k]->n && !key; i++) {
                        const char *e = l[k]->v[i], *c = strchr(e, ':');
                        e = c && k == 1 ? c + 1 : e;
                        if (strncmp(e, field, flen) == 0 && e[flen] == '.') {
                            key = k ? "hash_fields" : "dense_fields";
                            idx = (long)i;
                        }
                    }
            }
        }
        if (key) {
            report_key(ld, "pipeline", key, idx, "%s", ff + 2);
            return;
        }
    }
    report_key(ld, "pipeline", schema_key, -1, "%s", why);
}

static void validate_pipeline(loader_t *ld)
{
    const ld_config_t *c = ld->conf;
    ld_pipeline_conf_t pc = c->pipeline;
    /* The pipeline hashes into the model's slots (see run.c trainer_conf). */
    pc.hash_bits = c->trainer.hash_bits;
    int before = ld->nerr;
    if (pc.format == LD_FORMAT_AVRO) {
        static const char *const keys[] = {"event_schema", "label_schema",
                                           "event_writer_schema",
                                           "label_writer_schema"};
        const char *paths[] = {pc.event_schema, pc.label_schema,
                               pc.event_writer_schema, pc.label_writer_schema};
        for (size_t i = 0; i < 4; i++) {
            if (paths[i] && paths[i][0])
                check_schema_file(ld, keys[i], -1, paths[i]);
            else if (i < 2)
                report_key(ld, "pipeline", keys[i], -1,
                           "required with format avro");
        }
        for (size_t i = 0; i < pc.schema_ids.n; i++) {
            const char *eq = strchr(pc.schema_ids.v[i], '=');
            if (eq && eq[1])
                check_schema_file(ld, "schema_ids", (long)i, eq + 1);
        }
    }
    if (ld->nerr != before)
        return;
    validate_decoder(ld, &pc, LD_RECORD_EVENT);
    if (ld->nerr == before)
        validate_decoder(ld, &pc, LD_RECORD_LABEL);
}
static void validate_experiments(loader_t *ld)
{
    const ld_pipeline_conf_t *pc = &ld->conf->pipeline;
    for (size_t i = 0; i < ld->conf->nexperiments; i++) {
        ld_exp_spec_t s;
        char key[48];
        snprintf(key, sizeof(key), "experiments[%zu]", i);
        yaml_node_t *at = yaml_document_get_node(
            &ld->doc, ld->experiments->data.sequence.items.start[i]);
        if (ld_exp_conf_to_spec(&ld->conf->experiments[i], &s, NULL, 0))
            continue;
        if (!pc->served_variant_field || !pc->served_variant_field[0])
            ld_config_report(
                ld, at, key,
                "needs pipeline.served_variant_field (which variant "
                "served each event)");
        if ((s.metric != LD_EXP_METRIC_LABEL_MEAN || s.guard_calibration > 0) &&
            (!pc->served_score_field || !pc->served_score_field[0]))
            ld_config_report(ld, at, key, "needs pipeline.served_score_field");
        if (s.type != LD_EXP_SHADOW)
            continue;
        size_t len = strlen(s.variants[1]), k;
        for (k = 0; k < pc->served_shadow_fields.n; k++) {
            const char *e = pc->served_shadow_fields.v[k];
            if (!strncmp(e, s.variants[1], len) && e[len] == ':')
                break;
        }
        if (k == pc->served_shadow_fields.n)
            ld_config_report(
                ld, at, key,
                "shadow variant '%s' has no score: add '%s:FIELD' to "
                "pipeline.served_shadow_fields",
                s.variants[1], s.variants[1]);
    }
}

void ld_config_validate(loader_t *ld)
{
    const ld_config_t *c = ld->conf;
    if (!ld_ckpt_name_ok(c->trainer.name))
        report_key(ld, "trainer", "name", -1,
                   "'%s' is not a model name: 1 to %d of A-Z a-z 0-9 . _ -, "
                   "not starting with '.' (it names a directory of the "
                   "model store and prefixes Kafka keys)",
                   c->trainer.name ? c->trainer.name : "", LD_CKPT_NAME_MAX);
    int64_t ndense = (int64_t)c->pipeline.dense_fields.n;
    if (c->trainer.dense_dim != 0 && c->trainer.dense_dim != ndense)
        report_key(ld, "trainer", "dense_dim", -1,
                   "%lld, but pipeline.dense_fields names %lld fields (leave "
                   "dense_dim at 0 to follow them)",
                   (long long)c->trainer.dense_dim, (long long)ndense);
    char why[256];
    if (c->metrics.enabled &&
        ld_http_listen_check(c->metrics.listen, why, sizeof(why)) != LD_OK)
        report_key(ld, "metrics", "listen", -1, "%s", why);
    const char *secret = c->checkpoint.manifest_secret;
    if (secret && secret[0] && strlen(secret) < LD_CKPT_SECRET_MIN)
        report_key(ld, "checkpoint", "manifest_secret", -1,
                   "shorter than %d bytes (value not shown); generate one "
                   "with `openssl rand -hex 32`",
                   LD_CKPT_SECRET_MIN);
    if (!c->pipeline.group_id || !c->pipeline.group_id[0])
        report_key(ld, "pipeline", "group_id", -1, "empty consumer group");
    validate_topics(ld);
    validate_pipeline(ld);
    if (ld->experiments)
        validate_experiments(ld);
}
