/* SPDX-License-Identifier: Apache-2.0 */
/* YAML config loading through the module tables, with file:line:column
 * errors, ${ENV} expansion and secret redaction. */
#include "daemon/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "pipeline/decode.h"

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
     "Address the HTTP endpoint binds to"},
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

/* Where errors go and how many were seen. */
typedef struct loader {
    const char *path;
    FILE *errs;
    int nerr;
    yaml_document_t doc;
    ld_config_t *conf;
} loader_t;

static void report(loader_t *ld, const yaml_node_t *node, const char *key,
                   const char *fmt, ...) LD_PRINTF(4, 5);

static void report(loader_t *ld, const yaml_node_t *node, const char *key,
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
 * NULL with *undefined set to the first undefined variable's name. */
static char *expand_env(const char *text, char *undefined, size_t usize)
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
            if (end && (size_t)(end - p - 2) < sizeof(name)) {
                memcpy(name, p + 2, (size_t)(end - p - 2));
                name[end - p - 2] = '\0';
                char *dflt = strstr(name, ":-");
                if (dflt)
                    *dflt = '\0';
                val = getenv(name);
                if ((!val || !*val) && dflt)
                    val = dflt + 2;
                if (!val) {
                    snprintf(undefined, usize, "%s", name);
                    free(out);
                    return NULL;
                }
                vlen = strlen(val);
                adv = (size_t)(end - p) + 1;
            }
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

static const char *scalar(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

/* Expanded scalar text, or NULL after reporting the error. Caller frees. */
static char *node_text(loader_t *ld, const yaml_node_t *n, const char *key)
{
    char undefined[128] = "";
    char *text = expand_env(scalar(n), undefined, sizeof(undefined));
    if (!text && undefined[0])
        report(ld, n, key, "environment variable ${%s} is not set", undefined);
    else if (!text)
        report(ld, n, key, "out of memory");
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
            report(ld, n ? n : seq, key, "expected a list of strings");
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
        report(ld, seq, key, "out of memory");
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
                report(ld, item ? item : val, key,
                       "expected a list of strings");
                continue;
            }
            if (text && ld_conf_strlist_add(l, text))
                report(ld, item, key, "out of memory");
            free(text);
        }
        return;
    }
    if (val->type != YAML_SCALAR_NODE) {
        report(ld, val, key, "expected a %s, got a %s",
               row->type == LD_CONF_STRLIST ? "list" : "single value",
               val->type == YAML_MAPPING_NODE ? "mapping" : "list");
        return;
    }
    char *text = node_text(ld, val, key);
    if (!text)
        return;
    if (ld_conf_parse_value(row, text, base, why, sizeof(why))) {
        if (ld_conf_key_is_secret(row->name))
            report(ld, val, key, "invalid value (secret, not shown)");
        else
            report(ld, val, key, "%s", why);
    }
    free(text);
}

static void load_section(loader_t *ld, const ld_conf_section_t *sec, void *base,
                         const yaml_node_t *map, const yaml_node_t *key_node)
{
    char seen[128] = {0}; /* rows given in the file */
    if (map->type != YAML_MAPPING_NODE) {
        if (!(map->type == YAML_SCALAR_NODE && scalar(map)[0] == '\0'))
            report(ld, map, sec->name, "expected a mapping of settings");
    } else {
        for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
             p < map->data.mapping.pairs.top; p++) {
            yaml_node_t *k = yaml_document_get_node(&ld->doc, p->key);
            yaml_node_t *v = yaml_document_get_node(&ld->doc, p->value);
            if (!k || !v || k->type != YAML_SCALAR_NODE) {
                report(ld, k ? k : map, sec->name, "expected a key");
                continue;
            }
            const ld_conf_row_t *row = ld_conf_find(sec, scalar(k));
            if (!row) {
                const char *near = suggest(sec, scalar(k));
                char key[160];
                snprintf(key, sizeof(key), "%s.%s", sec->name, scalar(k));
                if (near)
                    report(ld, k, key, "unknown key (did you mean '%s'?)",
                           near);
                else
                    report(ld, k, key, "unknown key");
                continue;
            }
            size_t idx = (size_t)(row - sec->rows);
            if (idx < sizeof(seen) && seen[idx]) {
                report(ld, k, NULL, "%s.%s: given twice", sec->name, row->name);
                continue;
            }
            if (idx < sizeof(seen))
                seen[idx] = 1;
            load_row(ld, sec, row, base, v);
        }
    }
    for (size_t i = 0; i < sec->nrows && i < sizeof(seen); i++)
        if (!sec->rows[i].def && !seen[i])
            report(ld, key_node, NULL, "%s.%s: required key is missing",
                   sec->name, sec->rows[i].name);
}

static void load_kafka(loader_t *ld, const yaml_node_t *map)
{
    if (map->type != YAML_MAPPING_NODE) {
        report(ld, map, "kafka",
               "expected a mapping of librdkafka "
               "properties");
        return;
    }
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
         p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(&ld->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(&ld->doc, p->value);
        if (!k || !v || k->type != YAML_SCALAR_NODE ||
            v->type != YAML_SCALAR_NODE) {
            report(ld, k ? k : map, "kafka",
                   "expected 'property: value' pairs");
            continue;
        }
        char key[160];
        snprintf(key, sizeof(key), "kafka.%s", scalar(k));
        char *text = node_text(ld, v, key);
        if (!text)
            continue;
        if (ld_conf_strlist_add(&ld->conf->kafka, scalar(k)) ||
            ld_conf_strlist_add(&ld->conf->kafka, text))
            report(ld, v, key, "out of memory");
        free(text);
    }
}

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
                   why);
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
    free(conf->path);
    free(conf);
}

/* The value node of pipeline.<key> in the file, or NULL. */
static yaml_node_t *pipeline_node(loader_t *ld, const char *key)
{
    yaml_node_t *root = yaml_document_get_root_node(&ld->doc);
    if (!root || root->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start;
         p < root->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(&ld->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(&ld->doc, p->value);
        if (!k || !v || k->type != YAML_SCALAR_NODE ||
            strcmp(scalar(k), "pipeline") != 0 || v->type != YAML_MAPPING_NODE)
            continue;
        for (yaml_node_pair_t *q = v->data.mapping.pairs.start;
             q < v->data.mapping.pairs.top; q++) {
            yaml_node_t *k2 = yaml_document_get_node(&ld->doc, q->key);
            if (k2 && k2->type == YAML_SCALAR_NODE &&
                strcmp(scalar(k2), key) == 0)
                return yaml_document_get_node(&ld->doc, q->value);
        }
    }
    return NULL;
}

/* The node (key value or list item) of the mapping that names field, and
 * its key; NULL when none does. */
static yaml_node_t *field_node(loader_t *ld, const char *field,
                               const char **key)
{
    static const char *const keys[] = {"dense_fields",     "hash_fields",
                                       "key_field",        "event_time_field",
                                       "label_time_field", "label_field"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        yaml_node_t *v = pipeline_node(ld, keys[i]);
        if (!v)
            continue;
        *key = keys[i];
        if (v->type == YAML_SCALAR_NODE) {
            if (strcmp(scalar(v), field) == 0)
                return v;
            continue;
        }
        if (v->type != YAML_SEQUENCE_NODE)
            continue;
        for (yaml_node_item_t *it = v->data.sequence.items.start;
             it < v->data.sequence.items.top; it++) {
            yaml_node_t *e = yaml_document_get_node(&ld->doc, *it);
            if (!e || e->type != YAML_SCALAR_NODE)
                continue;
            const char *t = scalar(e), *colon = strchr(t, ':');
            const char *f =
                colon && strcmp(keys[i], "hash_fields") == 0 ? colon + 1 : t;
            if (strcmp(f, field) == 0)
                return e;
        }
    }
    return NULL;
}

/* Users' own Protobuf messages: the descriptor set, the message names and
 * the mapping are checked at load time (config check, exit 2), each error
 * at the key it comes from. Other formats keep their check at start-up. */
static void check_descriptor_set(loader_t *ld)
{
    ld_pipeline_conf_t pc = ld->conf->pipeline;
    if (pc.format != LD_FORMAT_PROTOBUF || !pc.descriptor_set ||
        !*pc.descriptor_set)
        return;
    pc.hash_bits = ld->conf->trainer.hash_bits;
    for (int k = 0; k < 2; k++) {
        char err[600];
        ld_decoder_t *d =
            ld_decoder_new(&pc, (ld_record_kind_t)k, err, sizeof(err));
        if (d) {
            ld_decoder_destroy(d);
            continue;
        }
        const char *key = k ? "label_message" : "event_message";
        yaml_node_t *node = NULL;
        const char *f = strstr(err, " has no field ");
        const char *fl = strstr(err, ": field ");
        char field[256] = "";
        if (f)
            sscanf(f + 14, "%255[^ ]", field);
        else if (fl)
            sscanf(fl + 8, "%255[^ :]", field);
        if (*field)
            node = field_node(ld, field, &key);
        if (!node && strncmp(err, "pipeline.", 9) == 0) {
            char name[64];
            int n = (int)strcspn(err + 9, ":");
            snprintf(name, sizeof(name), "%.*s", n, err + 9);
            node = pipeline_node(ld, name);
            key = NULL; /* the error names its key already */
        } else if (!node && !*field) {
            key = "descriptor_set";
            node = pipeline_node(ld, key);
        }
        if (key) {
            char full[64];
            snprintf(full, sizeof(full), "pipeline.%s", key);
            report(ld, node, full, "%s", err);
        } else {
            report(ld, node, NULL, "%s", err);
        }
        return; /* the labels would repeat a file-level error */
    }
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
        report(&ld, NULL, NULL, "out of memory");
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
                report(&ld, k ? k : root, NULL, "expected a section name");
                continue;
            }
            if (strcmp(scalar(k), "kafka") == 0) {
                load_kafka(&ld, v);
                continue;
            }
            size_t i;
            for (i = 0; i < N_SECTIONS; i++)
                if (strcmp(sections[i].sec->name, scalar(k)) == 0)
                    break;
            if (i == N_SECTIONS) {
                report(&ld, k, scalar(k), "unknown section");
                continue;
            }
            if (given[i]) {
                report(&ld, k, scalar(k), "section given twice");
                continue;
            }
            given[i] = 1;
            load_section(&ld, sections[i].sec,
                         (char *)ld.conf + sections[i].offset, v, k);
        }
    } else if (root &&
               !(root->type == YAML_SCALAR_NODE && scalar(root)[0] == '\0')) {
        report(&ld, root, NULL, "expected a mapping of sections");
    }
    if (!ld.nerr)
        check_descriptor_set(&ld);
    /* Required keys of sections absent from the file. */
    for (size_t i = 0; i < N_SECTIONS; i++) {
        if (given[i])
            continue;
        const ld_conf_section_t *sec = sections[i].sec;
        for (size_t r = 0; r < sec->nrows; r++)
            if (!sec->rows[r].def)
                report(&ld, NULL, NULL, "%s.%s: required key is missing",
                       sec->name, sec->rows[r].name);
    }
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

void ld_config_write_doc(FILE *out)
{
    fputs("<!-- Generated by `learnd config doc` from the config tables. "
          "Do not edit. -->\n"
          "# learnd configuration\n\n"
          "One YAML file, given with `learnd run -c FILE`; check it with "
          "`learnd config check -c FILE`.\n"
          "Unknown keys and bad values are errors reported as "
          "`file:line:column: key: reason`.\n"
          "Any value may use `${NAME}` or `${NAME:-default}` to read the "
          "environment; values of keys that look like secrets "
          "(`*password*`, `*secret*`, `sasl.*`, `ssl.key.*`) are never "
          "printed.\n\n"
          "Durations take `ms`, `s`, `m`, `h`, `d` (a bare number is "
          "milliseconds); sizes take `KiB`, `MiB`, `GiB`, `KB`, `MB`, `GB` "
          "(a bare number is bytes).\n\n",
          out);
    for (size_t i = 0; i < N_SECTIONS; i++) {
        const ld_conf_section_t *sec = sections[i].sec;
        fprintf(out, "## `%s:` — %s\n\n", sec->name, sec->desc);
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
    fputs("## `kafka:` — librdkafka properties\n\n"
          "A map passed to librdkafka as-is (`bootstrap.servers`, SASL/SSL "
          "settings, ...); see librdkafka's CONFIGURATION.md. learnd sets "
          "`enable.auto.commit=false`, `isolation.level=read_committed` and "
          "the transactional settings itself.\n",
          out);
}
