/* SPDX-License-Identifier: Apache-2.0 */
/* YAML config loading through the module tables, with file:line:column
 * errors, ${ENV} expansion and secret redaction. */
#include "daemon/config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <librdkafka/rdkafka.h>
#include <yaml.h>

#include "daemon/config_load.h"
#include "daemon/metrics.h"
#include "publish/publish.h"

/* ---- The daemon's own tables -------------------------------------------- */

#define D(field) offsetof(ld_daemon_conf_t, field)
static const ld_conf_row_t daemon_rows[] = {
    {"commit_interval", LD_CONF_DURATION, D(commit_interval_ms), "5s", 100,
     3600000, NULL,
     "Time between exactly-once commit points (sooner once 4 checkpoint "
     "publications wait)"},
    {"shutdown_timeout", LD_CONF_DURATION, D(shutdown_timeout_ms), "30s", 0,
     600000, NULL, "Deadline for a clean exit after SIGTERM/SIGINT"},
    {"transactional_id", LD_CONF_STRING, D(transactional_id), "", 0, 0, NULL,
     "Kafka transactional.id (default: learnd-<trainer.name>)"},
    {"state_topic", LD_CONF_STRING, D(state_topic), "learnd.state", 0, 0, NULL,
     "Compacted topic of resume state written at commit points"},
    {"checkpoint_topic", LD_CONF_STRING, D(checkpoint_topic),
     "learnd.checkpoints", 0, 0, NULL,
     "Topic of checkpoint chunks and manifests"},
    {"trigger_topic", LD_CONF_STRING, D(trigger_topic), "learnd.triggers", 0, 0,
     NULL, "Topic of trigger events for deployers"},
};

#define L(field) offsetof(ld_log_conf_t, field)
static const ld_conf_row_t log_rows[] = {
    {"level", LD_CONF_ENUM, L(level), "info", 0, 0,
     "emerg|alert|crit|error|warn|notice|info|debug", "Lowest level written"},
    {"file", LD_CONF_STRING, L(file), "", 0, 0, NULL,
     "Log file (reopened on SIGHUP); empty for stderr"},
    {"debug", LD_CONF_STRLIST, L(debug), "", 0, 0, NULL,
     "Modules whose debug lines are written: pipeline, join, trainer, "
     "triggers, daemon, kafka, all"},
};

#define M(field) offsetof(ld_metrics_conf_t, field)
static const ld_conf_row_t metrics_rows[] = {
    {"enabled", LD_CONF_BOOL, M(enabled), "true", 0, 0, NULL,
     "Serve /metrics, /healthz and /readyz"},
    {"listen", LD_CONF_STRING, M(listen), "127.0.0.1", 0, 0, NULL,
     "Address the HTTP endpoint binds to: an IPv4 or IPv6 literal; \"::\" "
     "is every address of both families"},
    {"port", LD_CONF_INT, M(port), "9464", 0, 65535, NULL,
     "Port of the HTTP endpoint (0 picks a free one)"},
};

static const ld_conf_section_t daemon_section = {
    "daemon", "Lifecycle, commit points and output topics",
    LD_CONF_ROWS(daemon_rows)};
static const ld_conf_section_t log_section = {
    "log", "Logging (logfmt on stderr)", LD_CONF_ROWS(log_rows)};
static const ld_conf_section_t metrics_section = {
    "metrics", "Prometheus metrics and health endpoint",
    LD_CONF_ROWS(metrics_rows)};

/* Every section of the file and where its struct sits in ld_config_t. */
static const struct {
    const ld_conf_section_t *sec;
    size_t offset;
} sections[] = {
    {&daemon_section, offsetof(ld_config_t, daemon)},
    {&log_section, offsetof(ld_config_t, log)},
    {&metrics_section, offsetof(ld_config_t, metrics)},
    {&ld_pipeline_conf_section, offsetof(ld_config_t, pipeline)},
    {&ld_labeling_conf_section, offsetof(ld_config_t, labeling)},
    {&ld_trainer_conf_section, offsetof(ld_config_t, trainer)},
    {&ld_ckpt_conf_section, offsetof(ld_config_t, checkpoint)},
    {&ld_triggers_conf_section, offsetof(ld_config_t, triggers)},
};
#define N_SECTIONS (sizeof(sections) / sizeof(sections[0]))

/* ---- Helpers ------------------------------------------------------------ */

void ld_config_report(loader_t *ld, const yaml_node_t *node, const char *key,
                      const char *fmt, ...)
{
    ld->nerr++;
    if (!ld->errs)
        return;
    unsigned long line = node ? (unsigned long)node->start_mark.line + 1 : 1;
    unsigned long col = node ? (unsigned long)node->start_mark.column + 1 : 1;
    fprintf(ld->errs, "%s:%lu:%lu: ", ld->path, line, col);
    if (key)
        fprintf(ld->errs, "%s: ", key);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(ld->errs, fmt, ap);
    va_end(ap);
    fputc('\n', ld->errs);
}

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return 99;
    size_t prev[64], cur[64];
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] =
                sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, (lb + 1) * sizeof(size_t));
    }
    return prev[lb];
}

/* Closest row name to a misspelt key, or NULL when none is close. */
static const char *suggest(const ld_conf_section_t *sec, const char *key)
{
    const char *best = NULL;
    size_t best_d = 3;
    for (size_t i = 0; i < sec->nrows; i++) {
        size_t d = edit_distance(key, sec->rows[i].name);
        if (d < best_d) {
            best_d = d;
            best = sec->rows[i].name;
        }
    }
    return best;
}

/* Expands ${NAME} and ${NAME:-default} in text. Returns a heap string, or
 * NULL with the reason in why (undefined variable, unterminated or malformed
 * reference; empty why: out of memory). A `${` that is not a whole reference
 * is an error rather than literal text: a forgotten brace would otherwise
 * reach a topic or a password as typed. */
static char *expand_env(const char *text, char *why, size_t wsize)
{
    size_t cap = strlen(text) + 64, len = 0;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    for (const char *p = text; *p;) {
        const char *val = NULL;
        size_t vlen = 0, adv = 1;
        char name[128];
        if (p[0] == '$' && p[1] == '{') {
            const char *end = strchr(p + 2, '}');
            size_t nlen = end ? (size_t)(end - p - 2) : 0;
            if (!end) {
                snprintf(why, wsize, "unterminated ${ (no closing '}')");
                free(out);
                return NULL;
            }
            if (nlen == 0 || nlen >= sizeof(name)) {
                snprintf(why, wsize,
                         "${...} must name an environment variable of 1 to "
                         "%zu characters",
                         sizeof(name) - 1);
                free(out);
                return NULL;
            }
            memcpy(name, p + 2, nlen);
            name[nlen] = '\0';
            char *dflt = strstr(name, ":-");
            if (dflt)
                *dflt = '\0';
            val = getenv(name);
            if ((!val || !*val) && dflt)
                val = dflt + 2;
            if (!val) {
                snprintf(why, wsize, "environment variable ${%s} is not set",
                         name);
                free(out);
                return NULL;
            }
            vlen = strlen(val);
            adv = nlen + 3;
        }
        if (!val) {
            val = p;
            vlen = 1;
        }
        if (len + vlen + 1 > cap) {
            cap = (len + vlen + 1) * 2;
            char *n = realloc(out, cap);
            if (!n) {
                free(out);
                return NULL;
            }
            out = n;
        }
        memcpy(out + len, val, vlen);
        len += vlen;
        p += adv;
    }
    out[len] = '\0';
    return out;
}

static char *node_text(loader_t *ld, const yaml_node_t *n, const char *key)
{
    char why[256] = "";
    char *text = expand_env(ld_config_scalar(n), why, sizeof(why));
    if (!text && why[0])
        ld_config_report(ld, n, key, "%s", why);
    else if (!text)
        ld_config_report(ld, n, key, "out of memory");
    return text;
}

/* A nested list item such as a cross `[country, ad_id]`, joined with ','
 * into one string. Returns NULL after reporting an error. Caller frees. */
static char *join_items(loader_t *ld, const yaml_node_t *seq, const char *key)
{
    size_t cap = 1, len = 0;
    char *out = calloc(1, cap);
    for (yaml_node_item_t *it = seq->data.sequence.items.start;
         out && it < seq->data.sequence.items.top; it++) {
        yaml_node_t *n = yaml_document_get_node(&ld->doc, *it);
        if (!n || n->type != YAML_SCALAR_NODE) {
            ld_config_report(ld, n ? n : seq, key,
                             "expected a list of strings");
            free(out);
            return NULL;
        }
        char *text = node_text(ld, n, key);
        if (!text) {
            free(out);
            return NULL;
        }
        size_t tl = strlen(text);
        char *grown = realloc(out, cap + tl + 1);
        if (!grown) {
            free(text);
            break;
        }
        out = grown;
        cap += tl + 1;
        if (len)
            out[len++] = ',';
        memcpy(out + len, text, tl + 1);
        len += tl;
        free(text);
    }
    if (!out)
        ld_config_report(ld, seq, key, "out of memory");
    return out;
}

static void load_row(loader_t *ld, const ld_conf_section_t *sec,
                     const ld_conf_row_t *row, void *base,
                     const yaml_node_t *val)
{
    char key[160];
    snprintf(key, sizeof(key), "%s.%s", sec->name, row->name);
    char why[256];

    if (row->type == LD_CONF_STRLIST && val->type == YAML_SEQUENCE_NODE) {
        ld_strlist_t *l = (ld_strlist_t *)(void *)((char *)base + row->offset);
        if (ld_conf_parse_value(row, "", base, why, sizeof(why)))
            return;
        for (yaml_node_item_t *it = val->data.sequence.items.start;
             it < val->data.sequence.items.top; it++) {
            yaml_node_t *item = yaml_document_get_node(&ld->doc, *it);
            char *text = NULL;
            if (item && item->type == YAML_SEQUENCE_NODE)
                text = join_items(ld, item, key);
            else if (item && item->type == YAML_SCALAR_NODE)
                text = node_text(ld, item, key);
            else {
                ld_config_report(ld, item ? item : val, key,
                                 "expected a list of strings");
                continue;
            }
            if (text && ld_conf_strlist_add(l, text))
                ld_config_report(ld, item, key, "out of memory");
            free(text);
        }
        return;
    }
    if (val->type != YAML_SCALAR_NODE) {
        ld_config_report(ld, val, key, "expected a %s, got a %s",
                         row->type == LD_CONF_STRLIST ? "list" : "single value",
                         val->type == YAML_MAPPING_NODE ? "mapping" : "list");
        return;
    }
    char *text = node_text(ld, val, key);
    if (!text)
        return;
    if (ld_conf_parse_value(row, text, base, why, sizeof(why))) {
        if (ld_conf_key_is_secret(row->name))
            ld_config_report(ld, val, key, "invalid value (secret, not shown)");
        else
            ld_config_report(ld, val, key, "%s", why);
    }
    free(text);
}

static void load_section(loader_t *ld, const ld_conf_section_t *sec, void *base,
                         const yaml_node_t *map, const yaml_node_t *key_node)
{
    char seen[128] = {0}; /* rows given in the file */
    if (map->type != YAML_MAPPING_NODE) {
        if (!(map->type == YAML_SCALAR_NODE &&
              ld_config_scalar(map)[0] == '\0'))
            ld_config_report(ld, map, sec->name,
                             "expected a mapping of settings");
    } else {
        for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
             p < map->data.mapping.pairs.top; p++) {
            yaml_node_t *k = yaml_document_get_node(&ld->doc, p->key);
            yaml_node_t *v = yaml_document_get_node(&ld->doc, p->value);
            if (!k || !v || k->type != YAML_SCALAR_NODE) {
                ld_config_report(ld, k ? k : map, sec->name, "expected a key");
                continue;
            }
            const ld_conf_row_t *row = ld_conf_find(sec, ld_config_scalar(k));
            if (!row) {
                const char *near = suggest(sec, ld_config_scalar(k));
                char key[160];
                snprintf(key, sizeof(key), "%s.%s", sec->name,
                         ld_config_scalar(k));
                if (near)
                    ld_config_report(ld, k, key,
                                     "unknown key (did you mean '%s'?)", near);
                else
                    ld_config_report(ld, k, key, "unknown key");
                continue;
            }
            size_t idx = (size_t)(row - sec->rows);
            if (idx < sizeof(seen) && seen[idx]) {
                ld_config_report(ld, k, NULL, "%s.%s: given twice", sec->name,
                                 row->name);
                continue;
            }
            if (idx < sizeof(seen))
                seen[idx] = 1;
            load_row(ld, sec, row, base, v);
        }
    }
    for (size_t i = 0; i < sec->nrows && i < sizeof(seen); i++)
        if (!sec->rows[i].def && !seen[i])
            ld_config_report(ld, key_node, NULL,
                             "%s.%s: required key is missing", sec->name,
                             sec->rows[i].name);
}

/* Hands one property to a throwaway librdkafka conf: the exact check the
 * pipeline's clients apply when `run` creates them, done before any broker
 * is contacted. */
static void check_kafka_property(loader_t *ld, rd_kafka_conf_t *probe,
                                 const yaml_node_t *k, const yaml_node_t *v,
                                 const char *key, const char *text)
{
    char why[512] = "";
    rd_kafka_conf_res_t res =
        rd_kafka_conf_set(probe, ld_config_scalar(k), text, why, sizeof(why));
    if (res == RD_KAFKA_CONF_UNKNOWN)
        ld_config_report(ld, k, key, "unknown librdkafka property");
    else if (res != RD_KAFKA_CONF_OK &&
             ld_conf_key_is_secret(ld_config_scalar(k)))
        ld_config_report(ld, v, key, "invalid value (secret, not shown)");
    else if (res != RD_KAFKA_CONF_OK)
        ld_config_report(ld, v, key, "%s", why);
}

static void load_kafka(loader_t *ld, const yaml_node_t *map)
{
    if (map->type != YAML_MAPPING_NODE) {
        ld_config_report(ld, map, "kafka",
                         "expected a mapping of librdkafka "
                         "properties");
        return;
    }
    rd_kafka_conf_t *probe = rd_kafka_conf_new();
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
         p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(&ld->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(&ld->doc, p->value);
        if (!k || !v || k->type != YAML_SCALAR_NODE ||
            v->type != YAML_SCALAR_NODE) {
            ld_config_report(ld, k ? k : map, "kafka",
                             "expected 'property: value' pairs");
            continue;
        }
        char key[160];
        snprintf(key, sizeof(key), "kafka.%s", ld_config_scalar(k));
        char *text = node_text(ld, v, key);
        if (!text)
            continue;
        if (probe)
            check_kafka_property(ld, probe, k, v, key, text);
        if (ld_conf_strlist_add(&ld->conf->kafka, ld_config_scalar(k)) ||
            ld_conf_strlist_add(&ld->conf->kafka, text))
            ld_config_report(ld, v, key, "out of memory");
        free(text);
    }
    if (probe)
        rd_kafka_conf_destroy(probe);
}

/* `experiments:`: a list of mappings, each read through the rows of
 * ld_exp_conf_section and checked as a spec, errors at its item. */
static void load_experiments(loader_t *ld, yaml_node_t *seq)
{
    ld->experiments = seq;
    if (seq->type != YAML_SEQUENCE_NODE) {
        if (!(seq->type == YAML_SCALAR_NODE &&
              ld_config_scalar(seq)[0] == '\0'))
            ld_config_report(ld, seq, "experiments",
                             "expected a list of experiments");
        return;
    }
    size_t n =
        (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
    ld_exp_conf_t *v = calloc(n + 1, sizeof(*v));
    if (!v) {
        ld_config_report(ld, seq, "experiments", "out of memory");
        return;
    }
    ld->conf->experiments = v;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item =
            yaml_document_get_node(&ld->doc, seq->data.sequence.items.start[i]);
        char why[256], key[48];
        snprintf(key, sizeof(key), "experiments[%zu]", i);
        if (ld_conf_set_defaults(&ld_exp_conf_section, &v[i], why,
                                 sizeof(why))) {
            ld_config_report(ld, item, key, "%s", why);
            return;
        }
        ld->conf->nexperiments = i + 1; /* owns v[i]'s strings from here */
        int before = ld->nerr;
        if (!item || item->type != YAML_MAPPING_NODE) {
            ld_config_report(ld, item ? item : seq, key, "expected a mapping");
            continue;
        }
        ld_conf_section_t sec = ld_exp_conf_section;
        sec.name = key; /* errors name experiments[i].key */
        load_section(ld, &sec, &v[i], item, item);
        ld_exp_spec_t spec;
        if (ld->nerr == before &&
            ld_exp_conf_to_spec(&v[i], &spec, why, sizeof(why)) != LD_OK)
            ld_config_report(ld, item, key, "%s", why);
        for (size_t j = 0; j < i && ld->nerr == before; j++)
            if (v[j].name && v[i].name && !strcmp(v[j].name, v[i].name))
                ld_config_report(ld, item, key,
                                 "name '%s' is also experiments[%zu]",
                                 v[i].name, j);
    }
    if (n > LD_EXP_MAX)
        ld_config_report(ld, seq, "experiments",
                         "at most %d experiments, not %zu", LD_EXP_MAX, n);
}

/* What the experiments need from the served-decision fields. */
/* ---- Public API --------------------------------------------------------- */

ld_config_t *ld_config_new_defaults(void)
{
    ld_config_t *conf = calloc(1, sizeof(*conf));
    if (!conf)
        return NULL;
    for (size_t i = 0; i < N_SECTIONS; i++) {
        char why[256];
        void *base = (char *)conf + sections[i].offset;
        if (ld_conf_set_defaults(sections[i].sec, base, why, sizeof(why))) {
            ld_log(LD_LOG_CRIT, "config", "msg=\"bad table default\" err=%s",
                   ld_log_q(why));
            ld_config_destroy(conf);
            return NULL;
        }
    }
    return conf;
}

void ld_config_destroy(ld_config_t *conf)
{
    if (!conf)
        return;
    for (size_t i = 0; i < N_SECTIONS; i++)
        ld_conf_free(sections[i].sec, (char *)conf + sections[i].offset);
    for (size_t i = 0; i < conf->kafka.n; i++)
        free(conf->kafka.v[i]);
    free(conf->kafka.v);
    for (size_t i = 0; i < conf->nexperiments; i++)
        ld_conf_free(&ld_exp_conf_section, &conf->experiments[i]);
    free(conf->experiments);
    free(conf->path);
    free(conf);
}

ld_config_t *ld_config_load(const char *path, FILE *errs)
{
    loader_t ld = {.path = path, .errs = errs};
    yaml_parser_t parser;
    int have_doc = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errs)
            fprintf(errs, "%s: cannot open: %s\n", path, strerror(errno));
        return NULL;
    }
    ld.conf = ld_config_new_defaults();
    if (!ld.conf || !(ld.conf->path = strdup(path))) {
        ld_config_report(&ld, NULL, NULL, "out of memory");
        goto out;
    }
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    if (!yaml_parser_load(&parser, &ld.doc)) {
        ld.nerr++;
        if (errs)
            fprintf(errs, "%s:%lu:%lu: YAML syntax error: %s\n", path,
                    (unsigned long)parser.problem_mark.line + 1,
                    (unsigned long)parser.problem_mark.column + 1,
                    parser.problem ? parser.problem : "unknown");
        yaml_parser_delete(&parser);
        goto out;
    }
    have_doc = 1;
    yaml_parser_delete(&parser);

    yaml_node_t *root = yaml_document_get_root_node(&ld.doc);
    char given[N_SECTIONS] = {0};
    if (root && root->type == YAML_MAPPING_NODE) {
        for (yaml_node_pair_t *p = root->data.mapping.pairs.start;
             p < root->data.mapping.pairs.top; p++) {
            yaml_node_t *k = yaml_document_get_node(&ld.doc, p->key);
            yaml_node_t *v = yaml_document_get_node(&ld.doc, p->value);
            if (!k || !v || k->type != YAML_SCALAR_NODE) {
                ld_config_report(&ld, k ? k : root, NULL,
                                 "expected a section name");
                continue;
            }
            if (strcmp(ld_config_scalar(k), "kafka") == 0) {
                load_kafka(&ld, v);
                continue;
            }
            if (strcmp(ld_config_scalar(k), "experiments") == 0) {
                if (ld.experiments)
                    ld_config_report(&ld, k, ld_config_scalar(k),
                                     "section given twice");
                else
                    load_experiments(&ld, v);
                continue;
            }
            size_t i;
            for (i = 0; i < N_SECTIONS; i++)
                if (strcmp(sections[i].sec->name, ld_config_scalar(k)) == 0)
                    break;
            if (i == N_SECTIONS) {
                ld_config_report(&ld, k, ld_config_scalar(k),
                                 "unknown section");
                continue;
            }
            if (given[i]) {
                ld_config_report(&ld, k, ld_config_scalar(k),
                                 "section given twice");
                continue;
            }
            given[i] = 1;
            load_section(&ld, sections[i].sec,
                         (char *)ld.conf + sections[i].offset, v, k);
        }
    } else if (root && !(root->type == YAML_SCALAR_NODE &&
                         ld_config_scalar(root)[0] == '\0')) {
        ld_config_report(&ld, root, NULL, "expected a mapping of sections");
    }
    /* Required keys of sections absent from the file. */
    for (size_t i = 0; i < N_SECTIONS; i++) {
        if (given[i])
            continue;
        const ld_conf_section_t *sec = sections[i].sec;
        for (size_t r = 0; r < sec->nrows; r++)
            if (!sec->rows[r].def)
                ld_config_report(&ld, NULL, NULL,
                                 "%s.%s: required key is missing", sec->name,
                                 sec->rows[r].name);
    }
    /* Keys that each parse may still be refused together; checked only on a
     * file whose keys all parsed, so each error has one cause. */
    if (ld.nerr == 0)
        ld_config_validate(&ld);
out:
    if (have_doc)
        yaml_document_delete(&ld.doc);
    fclose(f);
    if (ld.nerr) {
        ld_config_destroy(ld.conf);
        return NULL;
    }
    return ld.conf;
}

ld_err_t ld_config_apply_logging(const ld_config_t *conf)
{
    ld_log_set_level((ld_log_level_t)conf->log.level);
    for (size_t i = 0; i < conf->log.debug.n; i++)
        ld_log_debug_enable(conf->log.debug.v[i]);
    const char *file = conf->log.file;
    return ld_log_open(file && file[0] ? file : NULL);
}

/* Writes a row's current value as YAML text. */
static void dump_value(const ld_conf_row_t *row, const void *base, FILE *out)
{
    const char *field = (const char *)base + row->offset;
    if (ld_conf_key_is_secret(row->name)) {
        fputs("\"<redacted>\"", out);
        return;
    }
    switch (row->type) {
    case LD_CONF_BOOL:
        fputs(*(const int *)(const void *)field ? "true" : "false", out);
        break;
    case LD_CONF_INT:
    case LD_CONF_DURATION:
    case LD_CONF_SIZE:
        fprintf(out, "%lld", (long long)*(const int64_t *)(const void *)field);
        if (row->type == LD_CONF_DURATION)
            fputs("ms", out);
        break;
    case LD_CONF_DOUBLE:
        fprintf(out, "%.17g", *(const double *)(const void *)field);
        break;
    case LD_CONF_ENUM: {
        int idx = *(const int *)(const void *)field;
        const char *p = row->choices;
        for (int i = 0; i < idx && p; i++) {
            p = strchr(p, '|');
            if (p)
                p++;
        }
        const char *bar = p ? strchr(p, '|') : NULL;
        fprintf(out, "%.*s", p ? (int)(bar ? bar - p : (long)strlen(p)) : 0,
                p ? p : "");
        break;
    }
    case LD_CONF_STRING: {
        const char *s = *(char *const *)(const void *)field;
        fprintf(out, "\"%s\"", s ? s : "");
        break;
    }
    case LD_CONF_STRLIST: {
        const ld_strlist_t *l = (const ld_strlist_t *)(const void *)field;
        fputc('[', out);
        for (size_t i = 0; i < l->n; i++)
            fprintf(out, "%s\"%s\"", i ? ", " : "", l->v[i]);
        fputc(']', out);
        break;
    }
    }
}

void ld_config_dump(const ld_config_t *conf, FILE *out)
{
    for (size_t i = 0; i < N_SECTIONS; i++) {
        const ld_conf_section_t *sec = sections[i].sec;
        const void *base = (const char *)conf + sections[i].offset;
        fprintf(out, "%s:\n", sec->name);
        for (size_t r = 0; r < sec->nrows; r++) {
            fprintf(out, "  %s: ", sec->rows[r].name);
            dump_value(&sec->rows[r], base, out);
            fputc('\n', out);
        }
    }
    fputs("experiments:", out);
    fputs(conf->nexperiments ? "\n" : " []\n", out);
    for (size_t i = 0; i < conf->nexperiments; i++)
        for (size_t r = 0; r < ld_exp_conf_section.nrows; r++) {
            fprintf(out, "  %s %s: ", r ? " " : "-",
                    ld_exp_conf_section.rows[r].name);
            dump_value(&ld_exp_conf_section.rows[r], &conf->experiments[i],
                       out);
            fputc('\n', out);
        }
    fputs("kafka:\n", out);
    if (conf->kafka.n == 0)
        fputs("  {}\n", out);
    for (size_t i = 0; i + 1 < conf->kafka.n; i += 2)
        fprintf(out, "  %s: \"%s\"\n", conf->kafka.v[i],
                ld_conf_key_is_secret(conf->kafka.v[i]) ? "<redacted>"
                                                        : conf->kafka.v[i + 1]);
}

static const char *type_name(const ld_conf_row_t *row)
{
    switch (row->type) {
    case LD_CONF_BOOL:
        return "bool";
    case LD_CONF_INT:
        return "integer";
    case LD_CONF_DOUBLE:
        return "number";
    case LD_CONF_STRING:
        return "string";
    case LD_CONF_ENUM:
        return "enum";
    case LD_CONF_DURATION:
        return "duration";
    case LD_CONF_SIZE:
        return "size";
    case LD_CONF_STRLIST:
        return "list";
    }
    return "?";
}

/* The Markdown table of one section's rows. */
static void write_rows(FILE *out, const ld_conf_section_t *sec)
{
    fputs("| key | type | default | range / choices | description |\n"
          "|---|---|---|---|---|\n",
          out);
    for (size_t r = 0; r < sec->nrows; r++) {
        const ld_conf_row_t *row = &sec->rows[r];
        fprintf(out, "| `%s` | %s | ", row->name, type_name(row));
        if (!row->def)
            fputs("*required*", out);
        else if (!row->def[0])
            fputs("\"\"", out);
        else
            fprintf(out, "`%s`", row->def);
        fputs(" | ", out);
        if (row->type == LD_CONF_ENUM)
            fprintf(out, "`%s`", row->choices);
        else if (row->type == LD_CONF_INT || row->type == LD_CONF_DOUBLE ||
                 row->type == LD_CONF_DURATION || row->type == LD_CONF_SIZE)
            fprintf(out, "%.15g … %.15g", row->min, row->max);
        fprintf(out, " | %s |\n", row->desc);
    }
    fputc('\n', out);
}

void ld_config_write_doc(FILE *out)
{
    fputs("<!-- Generated by `learnd config doc` from the config tables. "
          "Do not edit. -->\n"
          "# learnd configuration\n\n"
          "One YAML file, given with `learnd run -c FILE`; check it with "
          "`learnd config check -c FILE`.\n"
          "Unknown keys and bad values are errors reported as "
          "`file:line:column: key: reason`, and so is everything `learnd "
          "run` would refuse at start-up: mapped fields missing from the "
          "`.avsc`, crosses over unknown namespaces, unreadable schemas, "
          "illegal or shared topic names, unknown librdkafka properties, a "
          "`trainer.name` that is not one path component. `run` exits 2 on "
          "any of them before contacting Kafka.\n"
          "Any value may use `${NAME}` or `${NAME:-default}` to read the "
          "environment (an unset `${NAME}` or a `${` without its `}` is an "
          "error); values of keys that look like secrets "
          "(`*password*`, `*secret*`, `sasl.*`, `ssl.key.*`) are never "
          "printed.\n\n"
          "Durations take `ms`, `s`, `m`, `h`, `d` (a bare number is "
          "milliseconds); sizes take `KiB`, `MiB`, `GiB`, `KB`, `MB`, `GB` "
          "(a bare number is bytes).\n\n",
          out);
    for (size_t i = 0; i < N_SECTIONS; i++) {
        const ld_conf_section_t *sec = sections[i].sec;
        fprintf(out, "## `%s:` — %s\n\n", sec->name, sec->desc);
        write_rows(out, sec);
    }
    fprintf(out,
            "## `experiments:` — %s\n\n"
            "A list; each item takes these keys "
            "(`- {name: ctr, type: ab, variants: [v1, v2]}`).\n\n",
            ld_exp_conf_section.desc);
    write_rows(out, &ld_exp_conf_section);
    fputs("## `kafka:` — librdkafka properties\n\n"
          "A map passed to librdkafka as-is (`bootstrap.servers`, SASL/SSL "
          "settings, ...); see librdkafka's CONFIGURATION.md. learnd sets "
          "`enable.auto.commit=false`, `isolation.level=read_committed` and "
          "the transactional settings itself.\n",
          out);
}
