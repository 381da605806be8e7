/* SPDX-License-Identifier: Apache-2.0 */
/* Avro decoding specialised per schema: avro-c parses the .avsc files, then
 * each (writer, reader) pair is compiled into a tree of nodes that walks the
 * binary datum once, bounds-checking every length and storing the mapped
 * fields straight into the field-map slots. Schema resolution (promotions,
 * unions, reader defaults) is done here, not by avro-c's resolver, which
 * double-frees on reader fields with defaults (docs/ARCHITECTURE.md,
 * "Library facts"). */
#include <avro.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "pipeline/internal.h"

#define MAX_DEPTH      64
#define MAX_ZERO_ITEMS (1u << 20)
#define MAX_AVSC_BYTES (4u << 20)

/* Writer types as the decoder sees them. */
enum {
    AT_NULL,
    AT_BOOL,
    AT_INT,
    AT_LONG,
    AT_FLOAT,
    AT_DOUBLE,
    AT_BYTES,
    AT_STRING,
    AT_FIXED,
    AT_ENUM,
    AT_ARRAY,
    AT_MAP,
    AT_RECORD,
    AT_UNION,
    AT_ERROR /* a writer branch the reader cannot read */
};

typedef struct anode anode_t;
struct anode {
    uint8_t wt;
    uint8_t zero_ok; /* may encode in zero bytes */
    int32_t slot;    /* -1: not mapped */
    uint32_t n;      /* kids, enum symbols, fixed size */
    anode_t **kids;  /* record fields (writer order), union branches, item */
    ld_str_t *syms;  /* enum: reader text per writer symbol (s NULL: none) */
    char *msg;       /* AT_ERROR: why */
    uint32_t *runs;  /* record: floats in a row from each kid (NULL: none) */
};

/* A parsed .avsc: avro-c's schema and the JSON (for field defaults). */
typedef struct aschema {
    avro_schema_t s;
    json_t *j;
    char *path;
} aschema_t;

/* Default value of a reader-only field, set before each decode. */
typedef struct adef {
    int32_t slot;
    ld_fv_t v;
} adef_t;

/* One compiled (writer, reader) pair. */
typedef struct aprog {
    anode_t *root;
    anode_t **all; /* every node, for freeing (nodes are shared) */
    uint32_t nall, capall;
    struct {
        avro_schema_t s;
        anode_t *n;
    } * skip; /* skip nodes by writer schema: shared, cycles allowed */
    uint32_t nskip, capskip;
    adef_t *defs;
    uint32_t ndefs, capdefs;
    char **owned; /* default strings */
    uint32_t nowned, capowned;
    const ld_fmap_t *fm;
    uint8_t *found; /* per slot: the reader schema provides it */
    char *err;
    size_t err_size;
} aprog_t;

typedef struct schema_id {
    uint32_t id;
    aschema_t *w;
    aprog_t *prog; /* NULL when the writer does not resolve */
    char *why;
} schema_id_t;

struct ld_avro {
    int confluent;
    aschema_t *reader;
    aschema_t *writer; /* plain framing; may be reader */
    aprog_t *plain;
    schema_id_t *ids; /* from schema_ids, then as the registry answers */
    uint32_t nids, capids;
    ld_registry_t *reg; /* NULL: no registry */
    const ld_fmap_t *fm;
};

/* ---- Schemas ------------------------------------------------------------ */

static void aschema_free(aschema_t *a)
{
    if (!a)
        return;
    if (a->s)
        avro_schema_decref(a->s);
    json_decref(a->j);
    free(a->path);
    free(a);
}

/* Parses the .avsc text[0..n) (text[n] is NUL) into a, whose path names
 * it in errors. Returns 0, or -1 with errstr set. */
static int aschema_parse(aschema_t *a, const char *text, size_t n, char *errstr,
                         size_t errstr_size)
{
    json_error_t jerr;
    if (!(a->j = json_loadb(text, n, 0, &jerr))) {
        snprintf(errstr, errstr_size, "%s:%d:%d: %s", a->path, jerr.line,
                 jerr.column, jerr.text);
        return -1;
    }
    if (avro_schema_from_json_length(text, n, &a->s)) {
        snprintf(errstr, errstr_size, "%s: %s", a->path, avro_strerror());
        a->s = NULL;
        return -1;
    }
    if (avro_typeof(a->s) != AVRO_RECORD) {
        snprintf(errstr, errstr_size, "%s: top-level type is %s, not a record",
                 a->path, avro_schema_type_name(a->s));
        return -1;
    }
    return 0;
}

static aschema_t *aschema_load(const char *path, char *errstr,
                               size_t errstr_size)
{
    aschema_t *a = calloc(1, sizeof(*a));
    char *text = NULL;
    FILE *f = NULL;
    if (!a || !(a->path = strdup(path))) {
        snprintf(errstr, errstr_size, "out of memory");
        goto err;
    }
    if (!(f = fopen(path, "rb"))) {
        snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
        goto err;
    }
    /* a buffer of the file's size, not of the limit: decoders are made per
     * topic, but the fuzz targets make thousands, and 4 MiB each (three
     * schemas per decoder) held avro fuzzing to 48 inputs/s */
    struct stat st;
    size_t cap = MAX_AVSC_BYTES + 1;
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) &&
        (uint64_t)st.st_size < MAX_AVSC_BYTES)
        cap = (size_t)st.st_size + 1;
    text = malloc(cap + 1);
    if (!text) {
        snprintf(errstr, errstr_size, "out of memory");
        goto err;
    }
    size_t n = fread(text, 1, cap, f);
    if (ferror(f) || n > MAX_AVSC_BYTES) {
        snprintf(errstr, errstr_size, "%s: %s", path,
                 ferror(f) ? strerror(errno) : "larger than 4 MiB");
        goto err;
    }
    text[n] = '\0';
    if (aschema_parse(a, text, n, errstr, errstr_size) < 0)
        goto err;
    fclose(f);
    free(text);
    return a;
err:
    if (f)
        fclose(f);
    free(text);
    aschema_free(a);
    return NULL;
}

/* ---- Compiling ---------------------------------------------------------- */

static avro_schema_t unlink_schema(avro_schema_t s)
{
    while (s && avro_typeof(s) == AVRO_LINK)
        s = avro_schema_link_target(s);
    return s;
}

static anode_t *node_new(aprog_t *p, uint8_t wt, uint32_t nkids)
{
    if (p->nall == p->capall) {
        uint32_t ncap = p->capall ? p->capall * 2 : 32;
        anode_t **v = realloc(p->all, ncap * sizeof(*v));
        if (!v)
            return NULL;
        p->all = v;
        p->capall = ncap;
    }
    anode_t *n = calloc(1, sizeof(*n));
    if (!n)
        return NULL;
    if (nkids && !(n->kids = calloc(nkids, sizeof(*n->kids)))) {
        free(n);
        return NULL;
    }
    n->wt = wt;
    n->slot = -1;
    n->n = nkids;
    p->all[p->nall++] = n;
    return n;
}

static void prog_free(aprog_t *p)
{
    if (!p)
        return;
    for (uint32_t i = 0; i < p->nall; i++) {
        anode_t *n = p->all[i];
        free(n->kids);
        free(n->runs);
        free(n->syms);
        free(n->msg);
        free(n);
    }
    free(p->all);
    free(p->skip);
    free(p->defs);
    for (uint32_t i = 0; i < p->nowned; i++)
        free(p->owned[i]);
    free(p->owned);
    free(p->found);
    free(p);
}

static uint8_t wtype(avro_schema_t s)
{
    switch (avro_typeof(s)) {
    case AVRO_NULL:
        return AT_NULL;
    case AVRO_BOOLEAN:
        return AT_BOOL;
    case AVRO_INT32:
        return AT_INT;
    case AVRO_INT64:
        return AT_LONG;
    case AVRO_FLOAT:
        return AT_FLOAT;
    case AVRO_DOUBLE:
        return AT_DOUBLE;
    case AVRO_BYTES:
        return AT_BYTES;
    case AVRO_STRING:
        return AT_STRING;
    case AVRO_FIXED:
        return AT_FIXED;
    case AVRO_ENUM:
        return AT_ENUM;
    case AVRO_ARRAY:
        return AT_ARRAY;
    case AVRO_MAP:
        return AT_MAP;
    case AVRO_RECORD:
        return AT_RECORD;
    case AVRO_UNION:
        return AT_UNION;
    default:
        return AT_ERROR;
    }
}

#define CERR(p, ...)                                                           \
    do {                                                                       \
        snprintf((p)->err, (p)->err_size, __VA_ARGS__);                        \
        return NULL;                                                           \
    } while (0)

/* Node that walks a writer value without storing anything. Shared per
 * schema, so recursive schemas compile to a cycle. */
static anode_t *compile_skip(aprog_t *p, avro_schema_t w)
{
    w = unlink_schema(w);
    for (uint32_t i = 0; i < p->nskip; i++)
        if (p->skip[i].s == w)
            return p->skip[i].n;
    uint8_t wt = wtype(w);
    uint32_t nk = 0;
    if (wt == AT_RECORD)
        nk = (uint32_t)avro_schema_record_size(w);
    else if (wt == AT_UNION)
        nk = (uint32_t)avro_schema_union_size(w);
    else if (wt == AT_ARRAY || wt == AT_MAP)
        nk = 1;
    else if (wt == AT_ERROR)
        CERR(p, "unsupported Avro type %s", avro_schema_type_name(w));
    anode_t *n = node_new(p, wt, nk);
    if (!n)
        CERR(p, "out of memory");
    if (p->nskip == p->capskip) {
        uint32_t ncap = p->capskip ? p->capskip * 2 : 16;
        void *v = realloc(p->skip, ncap * sizeof(*p->skip));
        if (!v)
            CERR(p, "out of memory");
        p->skip = v;
        p->capskip = ncap;
    }
    p->skip[p->nskip].s = w;
    p->skip[p->nskip].n = n;
    p->nskip++;
    n->zero_ok = wt == AT_NULL;
    switch (wt) {
    case AT_FIXED:
        n->n = (uint32_t)avro_schema_fixed_size(w);
        n->zero_ok = n->n == 0;
        break;
    case AT_ENUM:
        n->n = (uint32_t)avro_schema_enum_number_of_symbols(w);
        break;
    case AT_RECORD:
        n->zero_ok = 1;
        for (uint32_t i = 0; i < nk; i++) {
            if (!(n->kids[i] = compile_skip(
                      p, avro_schema_record_field_get_by_index(w, (int)i))))
                return NULL;
            /* a cycle back to n counts as non-empty; safe either way */
            n->zero_ok = n->zero_ok && n->kids[i] != n && n->kids[i]->zero_ok;
        }
        break;
    case AT_UNION:
        for (uint32_t i = 0; i < nk; i++)
            if (!(n->kids[i] =
                      compile_skip(p, avro_schema_union_branch(w, (int)i))))
                return NULL;
        break;
    case AT_ARRAY:
        if (!(n->kids[0] = compile_skip(p, avro_schema_array_items(w))))
            return NULL;
        break;
    case AT_MAP:
        if (!(n->kids[0] = compile_skip(p, avro_schema_map_values(w))))
            return NULL;
        break;
    default:
        break;
    }
    return n;
}

/* Avro resolution rules for a writer type read as a reader type (named
 * types match by kind; names are not compared). */
static int type_matches(avro_schema_t w, avro_schema_t r)
{
    uint8_t wt = wtype(unlink_schema(w)), rt = wtype(unlink_schema(r));
    if (wt == rt)
        return 1;
    switch (wt) {
    case AT_INT:
        return rt == AT_LONG || rt == AT_FLOAT || rt == AT_DOUBLE;
    case AT_LONG:
        return rt == AT_FLOAT || rt == AT_DOUBLE;
    case AT_FLOAT:
        return rt == AT_DOUBLE;
    case AT_STRING:
        return rt == AT_BYTES;
    case AT_BYTES:
        return rt == AT_STRING;
    default:
        return 0;
    }
}

/* JSON of a named type referenced by name somewhere in root (a reference
 * like "User" or "io.x.User"), or NULL. */
static json_t *json_find_named(json_t *root, const char *name)
{
    if (json_is_object(root)) {
        const char *n = json_string_value(json_object_get(root, "name"));
        const char *dot = strrchr(name, '.');
        const char *shortname = dot ? dot + 1 : name;
        if (n && json_object_get(root, "type") &&
            (strcmp(n, name) == 0 || strcmp(n, shortname) == 0))
            return root;
        const char *k;
        json_t *v;
        json_object_foreach(root, k, v)
        {
            json_t *f = json_find_named(v, name);
            if (f)
                return f;
        }
    } else if (json_is_array(root)) {
        size_t i;
        json_t *v;
        json_array_foreach(root, i, v)
        {
            json_t *f = json_find_named(v, name);
            if (f)
                return f;
        }
    }
    return NULL;
}

/* The JSON object of a reader record type given its type JSON. */
static json_t *json_record(json_t *root, json_t *t)
{
    if (json_is_string(t))
        return json_find_named(root, json_string_value(t));
    if (json_is_object(t) && json_is_string(json_object_get(t, "type")) &&
        strcmp(json_string_value(json_object_get(t, "type")), "record") != 0 &&
        strcmp(json_string_value(json_object_get(t, "type")), "error") != 0) {
        return json_record(root, json_object_get(t, "type"));
    }
    return t;
}

static int add_def(aprog_t *p, int32_t slot, ld_fv_t v, char *owned)
{
    if (p->ndefs == p->capdefs) {
        uint32_t ncap = p->capdefs ? p->capdefs * 2 : 8;
        adef_t *d = realloc(p->defs, ncap * sizeof(*d));
        if (!d)
            return -1;
        p->defs = d;
        p->capdefs = ncap;
    }
    if (owned) {
        if (p->nowned == p->capowned) {
            uint32_t ncap = p->capowned ? p->capowned * 2 : 8;
            char **o = realloc(p->owned, ncap * sizeof(*o));
            if (!o)
                return -1;
            p->owned = o;
            p->capowned = ncap;
        }
        p->owned[p->nowned++] = owned;
    }
    p->defs[p->ndefs].slot = slot;
    p->defs[p->ndefs].v = v;
    p->ndefs++;
    return 0;
}

/* Records the reader default of a field the writer lacks, for every mapped
 * slot at or below path. Returns 0, or -1 with p->err set. */
static int compile_default(aprog_t *p, avro_schema_t r, json_t *fj,
                           const char *path)
{
    json_t *d = json_object_get(fj, "default");
    if (!d) {
        snprintf(p->err, p->err_size,
                 "reader field %s is missing from the writer schema and has "
                 "no default",
                 path);
        return -1;
    }
    int32_t slot = ld_fmap_find(p->fm, path, strlen(path));
    if (slot < 0) {
        snprintf(p->err, p->err_size,
                 "reader field %s: defaults of nested records are not "
                 "supported for mapped fields",
                 path);
        return -1;
    }
    (void)r;
    ld_fv_t v = {0};
    char *owned = NULL;
    if (json_is_null(d)) {
        v.kind = FV_NULL;
    } else if (json_is_boolean(d)) {
        v.kind = FV_BOOL;
        v.u.i = json_is_true(d);
    } else if (json_is_integer(d)) {
        v.kind = FV_INT;
        v.u.i = json_integer_value(d);
    } else if (json_is_real(d)) {
        v.kind = FV_DOUBLE;
        v.u.d = json_real_value(d);
    } else if (json_is_string(d)) {
        if (!(owned = strdup(json_string_value(d)))) {
            snprintf(p->err, p->err_size, "out of memory");
            return -1;
        }
        v.kind = FV_STR;
        v.u.s = owned;
        v.n = (uint32_t)json_string_length(d);
    } else if (json_is_array(d) && json_array_size(d) == 0) {
        v.kind = FV_NULL; /* empty list: no features */
    } else {
        snprintf(p->err, p->err_size,
                 "reader field %s: only scalar or empty-array defaults are "
                 "supported for mapped fields",
                 path);
        return -1;
    }
    p->found[slot] = 1;
    if (add_def(p, slot, v, owned) < 0) {
        free(owned);
        snprintf(p->err, p->err_size, "out of memory");
        return -1;
    }
    return 0;
}

static anode_t *compile(aprog_t *p, avro_schema_t w, avro_schema_t r,
                        json_t *rj, json_t *root, const char *path, int depth);

/* A record: writer fields in writer order, reader fields by name. */
static anode_t *compile_record(aprog_t *p, avro_schema_t w, avro_schema_t r,
                               json_t *rj, json_t *root, const char *path,
                               int depth)
{
    uint32_t nw = (uint32_t)avro_schema_record_size(w);
    uint32_t nr = (uint32_t)avro_schema_record_size(r);
    json_t *rrec = json_record(root, rj);
    json_t *rfields = json_object_get(rrec, "fields");
    anode_t *n = node_new(p, AT_RECORD, nw);
    if (!n)
        CERR(p, "out of memory");
    char sub[512];
    n->zero_ok = 1;
    for (uint32_t i = 0; i < nw; i++) {
        const char *name = avro_schema_record_field_name(w, (int)i);
        avro_schema_t wf = avro_schema_record_field_get_by_index(w, (int)i);
        int ri = avro_schema_record_field_get_index(r, name);
        snprintf(sub, sizeof(sub), "%s%s%s", path, *path ? "." : "", name);
        if (ri < 0 || !ld_fmap_path_used(p->fm, sub)) {
            n->kids[i] = compile_skip(p, wf);
        } else {
            json_t *fj = json_array_get(rfields, (size_t)ri);
            n->kids[i] =
                compile(p, wf, avro_schema_record_field_get_by_index(r, ri),
                        json_object_get(fj, "type"), root, sub, depth + 1);
        }
        if (!n->kids[i])
            return NULL;
        n->zero_ok = n->zero_ok && n->kids[i] != n && n->kids[i]->zero_ok;
    }
    for (uint32_t i = 0; i < nr; i++) {
        const char *name = avro_schema_record_field_name(r, (int)i);
        if (avro_schema_record_field_get_index(w, name) >= 0)
            continue;
        snprintf(sub, sizeof(sub), "%s%s%s", path, *path ? "." : "", name);
        if (!ld_fmap_path_used(p->fm, sub))
            continue;
        if (compile_default(p, avro_schema_record_field_get_by_index(r, (int)i),
                            json_array_get(rfields, i), sub) < 0)
            return NULL;
    }
    return n;
}

static anode_t *compile(aprog_t *p, avro_schema_t w, avro_schema_t r,
                        json_t *rj, json_t *root, const char *path, int depth)
{
    w = unlink_schema(w);
    r = unlink_schema(r);
    if (depth > MAX_DEPTH)
        CERR(p, "field %s: schema nested deeper than %d", path, MAX_DEPTH);
    int32_t slot = ld_fmap_find(p->fm, path, strlen(path));
    uint8_t wt = wtype(w), rt = wtype(r);

    if (wt == AT_UNION) {
        uint32_t nb = (uint32_t)avro_schema_union_size(w);
        anode_t *n = node_new(p, AT_UNION, nb);
        if (!n)
            CERR(p, "out of memory");
        for (uint32_t i = 0; i < nb; i++) {
            avro_schema_t wb = avro_schema_union_branch(w, (int)i);
            n->kids[i] = compile(p, wb, r, rj, root, path, depth + 1);
            if (!n->kids[i])
                return NULL;
        }
        return n;
    }
    if (rt == AT_UNION) {
        /* first reader branch the writer type matches */
        uint32_t nb = (uint32_t)avro_schema_union_size(r);
        for (uint32_t i = 0; i < nb; i++) {
            avro_schema_t rb = avro_schema_union_branch(r, (int)i);
            if (type_matches(w, rb))
                return compile(p, w, rb, json_array_get(rj, i), root, path,
                               depth + 1);
        }
        anode_t *n = node_new(p, AT_ERROR, 0);
        if (!n)
            CERR(p, "out of memory");
        char msg[600];
        snprintf(msg, sizeof(msg),
                 "field %s: writer type %s matches no reader union branch",
                 path, avro_schema_type_name(w));
        if (!(n->msg = strdup(msg)))
            CERR(p, "out of memory");
        return n;
    }
    if (!type_matches(w, r)) {
        /* A writer value the reader cannot read: an error only for records
         * that hold it (it may sit in a union branch never written). */
        anode_t *n = node_new(p, AT_ERROR, 0);
        if (!n)
            CERR(p, "out of memory");
        char msg[600];
        snprintf(msg, sizeof(msg), "field %s: writer type %s, reader type %s",
                 path, avro_schema_type_name(w), avro_schema_type_name(r));
        if (!(n->msg = strdup(msg)))
            CERR(p, "out of memory");
        return n;
    }
    if (wt == AT_RECORD) {
        if (slot >= 0)
            CERR(p, "field %s is a record: map its fields as %s.<name>", path,
                 path);
        return compile_record(p, w, r, rj, root, path, depth);
    }
    if (wt == AT_MAP)
        CERR(p, "field %s is a map, which cannot be mapped to features", path);
    if (slot < 0) /* a nested path below a non-record */
        CERR(p, "field %s has no fields", path);

    anode_t *n;
    if (wt == AT_ARRAY) {
        avro_schema_t wi = unlink_schema(avro_schema_array_items(w));
        avro_schema_t ri = unlink_schema(avro_schema_array_items(r));
        uint8_t it = wtype(wi);
        if ((it != AT_STRING && it != AT_BYTES && it != AT_ENUM) ||
            !type_matches(wi, ri))
            CERR(p, "field %s: only arrays of strings or enums can be mapped",
                 path);
        if (!(n = node_new(p, AT_ARRAY, 1)))
            CERR(p, "out of memory");
        if (!(n->kids[0] = compile(p, wi, ri, NULL, root, path, depth + 1)))
            return NULL;
        n->kids[0]->slot = -1; /* items go to the list, not the slot */
    } else {
        if (!(n = node_new(p, wt, 0)))
            CERR(p, "out of memory");
        n->zero_ok = wt == AT_NULL;
        if (wt == AT_FIXED) {
            n->n = (uint32_t)avro_schema_fixed_size(w);
            n->zero_ok = n->n == 0;
        } else if (wt == AT_ENUM) {
            n->n = (uint32_t)avro_schema_enum_number_of_symbols(w);
            n->syms = calloc(n->n + 1, sizeof(*n->syms));
            if (!n->syms)
                CERR(p, "out of memory");
            for (uint32_t i = 0; i < n->n; i++) {
                const char *sym = avro_schema_enum_get(w, (int)i);
                if (avro_schema_enum_get_by_name(r, sym) >= 0) {
                    /* points into avro-c's reader schema, which we keep */
                    n->syms[i].s = avro_schema_enum_get(
                        r, avro_schema_enum_get_by_name(r, sym));
                    n->syms[i].n = (uint32_t)strlen(n->syms[i].s);
                }
            }
        }
    }
    n->slot = slot;
    p->found[slot] = 1;
    return n;
}

/* Marks the runs of float fields in records (dense features, typically),
 * which dec() reads with one bounds check and no dispatch per field.
 * Returns 0, or -1 when out of memory. */
static int find_runs(aprog_t *p)
{
    for (uint32_t i = 0; i < p->nall; i++) {
        anode_t *n = p->all[i];
        if (n->wt != AT_RECORD)
            continue;
        int pair = 0;
        for (uint32_t k = 0; k + 1 < n->n; k++)
            pair = pair || (n->kids[k]->wt == AT_FLOAT &&
                            n->kids[k + 1]->wt == AT_FLOAT);
        if (!pair)
            continue;
        if (!(n->runs = calloc(n->n, sizeof(*n->runs))))
            return -1;
        for (uint32_t k = n->n; k-- > 0;)
            if (n->kids[k]->wt == AT_FLOAT)
                n->runs[k] = 1 + (k + 1 < n->n ? n->runs[k + 1] : 0);
    }
    return 0;
}

static aprog_t *prog_new(const aschema_t *w, const aschema_t *r,
                         const ld_fmap_t *fm, char *errstr, size_t errstr_size)
{
    aprog_t *p = calloc(1, sizeof(*p));
    if (!p || !(p->found = calloc(fm->nslots + 1, 1))) {
        free(p);
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    p->fm = fm;
    p->err = errstr;
    p->err_size = errstr_size;
    p->root = compile_record(p, w->s, r->s, r->j, r->j, "", 0);
    if (!p->root || find_runs(p) < 0) {
        if (p->root)
            snprintf(errstr, errstr_size, "out of memory");
        prog_free(p);
        return NULL;
    }
    return p;
}

/* ---- Decoding ----------------------------------------------------------- */

typedef struct cur {
    const uint8_t *p, *end;
    ld_fmap_t *fm;
    char *err;
    size_t err_size;
    int depth;
} cur_t;

#define DERR(c, r, ...)                                                        \
    do {                                                                       \
        snprintf((c)->err, (c)->err_size, __VA_ARGS__);                        \
        return (r);                                                            \
    } while (0)

/* Zig-zag varint of at most 10 bytes; -1 when truncated or overlong. */
static inline int read_long(cur_t *c, int64_t *out)
{
    const uint8_t *p = c->p;
    if (p < c->end && !(*p & 0x80)) { /* one byte: |value| < 64 */
        c->p = p + 1;
        *out = (int64_t)(*p >> 1) ^ -(int64_t)(*p & 1);
        return 0;
    }
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (p >= c->end)
            return -1;
        uint8_t b = *p++;
        if (shift == 63 && b > 1)
            return -1;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            c->p = p;
            *out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
            return 0;
        }
    }
    return -1;
}

/* A little-endian float at p. */
static inline float le_float(const uint8_t *p)
{
    uint32_t u;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(&u, p, 4);
#else
    u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
        (uint32_t)p[3] << 24;
#endif
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline size_t left(const cur_t *c)
{
    return (size_t)(c->end - c->p);
}

/* A length prefix checked against the bytes that remain. */
static inline ld_reason_t read_len(cur_t *c, const char *what, size_t *out)
{
    int64_t n;
    if (read_long(c, &n) < 0)
        DERR(c, LD_REASON_DECODE, "%s length: truncated or bad varint", what);
    if (n < 0 || (uint64_t)n > left(c))
        DERR(c, LD_REASON_DECODE,
             "%s length %lld past the end (%zu bytes left)", what, (long long)n,
             left(c));
    *out = (size_t)n;
    return LD_REASON_NONE;
}

static ld_reason_t dec(const anode_t *n, cur_t *c);

/* Block count of an array or map: items in the next block (0 at the end). */
static ld_reason_t block_count(cur_t *c, const anode_t *item, uint64_t *total,
                               int64_t *out)
{
    int64_t cnt;
    if (read_long(c, &cnt) < 0)
        DERR(c, LD_REASON_DECODE, "block count: truncated or bad varint");
    if (cnt < 0) {
        int64_t bytes;
        if (cnt == INT64_MIN)
            DERR(c, LD_REASON_DECODE, "block count out of range");
        cnt = -cnt;
        if (read_long(c, &bytes) < 0 || bytes < 0 || (uint64_t)bytes > left(c))
            DERR(c, LD_REASON_DECODE, "block size past the end");
    }
    *total += (uint64_t)cnt;
    /* each item takes a byte unless the item type can be empty */
    if (item && item->zero_ok ? *total > MAX_ZERO_ITEMS
                              : (uint64_t)cnt > left(c))
        DERR(c, LD_REASON_DECODE, "block of %lld items past the end",
             (long long)cnt);
    *out = cnt;
    return LD_REASON_NONE;
}

static ld_reason_t dec(const anode_t *n, cur_t *c)
{
    ld_reason_t why;
    ld_fv_t *fv = n->slot >= 0 ? &c->fm->fv[n->slot] : NULL;
    switch (n->wt) {
    case AT_NULL:
        if (fv)
            fv->kind = FV_NULL;
        return LD_REASON_NONE;
    case AT_BOOL:
        if (!left(c) || *c->p > 1)
            DERR(c, LD_REASON_DECODE, "boolean: truncated or not 0/1");
        if (fv) {
            fv->kind = FV_BOOL;
            fv->u.i = *c->p;
        }
        c->p++;
        return LD_REASON_NONE;
    case AT_INT:
    case AT_LONG: {
        int64_t v;
        if (read_long(c, &v) < 0)
            DERR(c, LD_REASON_DECODE, "int/long: truncated or bad varint");
        if (n->wt == AT_INT && (v < INT32_MIN || v > INT32_MAX))
            DERR(c, LD_REASON_DECODE, "int out of 32-bit range");
        if (fv) {
            fv->kind = FV_INT;
            fv->u.i = v;
        }
        return LD_REASON_NONE;
    }
    case AT_FLOAT: {
        if (left(c) < 4)
            DERR(c, LD_REASON_DECODE, "float: truncated");
        if (fv) {
            fv->kind = FV_DOUBLE;
            fv->u.d = le_float(c->p);
        }
        c->p += 4;
        return LD_REASON_NONE;
    }
    case AT_DOUBLE: {
        if (left(c) < 8)
            DERR(c, LD_REASON_DECODE, "double: truncated");
        if (fv) {
            uint64_t u = 0;
            for (int i = 7; i >= 0; i--)
                u = u << 8 | c->p[i];
            fv->kind = FV_DOUBLE;
            memcpy(&fv->u.d, &u, 8);
        }
        c->p += 8;
        return LD_REASON_NONE;
    }
    case AT_BYTES:
    case AT_STRING:
    case AT_FIXED: {
        size_t len = n->n;
        if (n->wt != AT_FIXED) {
            if ((why = read_len(c, "string", &len)))
                return why;
        } else if (len > left(c)) {
            DERR(c, LD_REASON_DECODE, "fixed(%zu) past the end", len);
        }
        if (fv) {
            fv->kind = FV_STR;
            fv->u.s = (const char *)c->p;
            fv->n = (uint32_t)len;
        }
        c->p += len;
        return LD_REASON_NONE;
    }
    case AT_ENUM: {
        int64_t i;
        if (read_long(c, &i) < 0 || i < 0 || (uint64_t)i >= n->n)
            DERR(c, LD_REASON_DECODE, "enum index out of range");
        if (fv) {
            if (!n->syms[i].s)
                DERR(c, LD_REASON_UNKNOWN_SCHEMA,
                     "enum symbol %lld not in the reader schema", (long long)i);
            fv->kind = FV_STR;
            fv->u.s = n->syms[i].s;
            fv->n = n->syms[i].n;
        }
        return LD_REASON_NONE;
    }
    case AT_RECORD:
        if (++c->depth > MAX_DEPTH)
            DERR(c, LD_REASON_DECODE, "nested deeper than %d", MAX_DEPTH);
        for (uint32_t i = 0; i < n->n;) {
            uint32_t k = n->runs ? n->runs[i] : 0;
            if (k < 2) {
                const anode_t *kid = n->kids[i++];
                if (kid->wt == AT_STRING) { /* dec()'s case, without a call */
                    size_t len;
                    if ((why = read_len(c, "string", &len)))
                        return why;
                    if (kid->slot >= 0) {
                        ld_fv_t *f = &c->fm->fv[kid->slot];
                        f->kind = FV_STR;
                        f->u.s = (const char *)c->p;
                        f->n = (uint32_t)len;
                    }
                    c->p += len;
                } else if ((why = dec(kid, c))) {
                    return why;
                }
                continue;
            }
            /* k floats in a row: one bounds check, no dispatch */
            if (left(c) < 4 * (size_t)k)
                DERR(c, LD_REASON_DECODE, "float: truncated");
            for (uint32_t j = 0; j < k; j++) {
                int32_t slot = n->kids[i + j]->slot;
                if (slot >= 0) {
                    ld_fv_t *f = &c->fm->fv[slot];
                    f->kind = FV_DOUBLE;
                    f->u.d = le_float(c->p + 4 * j);
                }
            }
            c->p += 4 * (size_t)k;
            i += k;
        }
        c->depth--;
        return LD_REASON_NONE;
    case AT_UNION: {
        int64_t b;
        if (read_long(c, &b) < 0 || b < 0 || (uint64_t)b >= n->n)
            DERR(c, LD_REASON_DECODE, "union branch out of range");
        if (++c->depth > MAX_DEPTH)
            DERR(c, LD_REASON_DECODE, "nested deeper than %d", MAX_DEPTH);
        why = dec(n->kids[b], c);
        c->depth--;
        return why;
    }
    case AT_ARRAY:
    case AT_MAP: {
        const anode_t *item = n->kids[0];
        uint64_t total = 0;
        int64_t cnt;
        if (fv) {
            fv->kind = FV_LIST;
            fv->u.first = c->fm->nstrs;
            fv->n = 0;
        }
        if (++c->depth > MAX_DEPTH)
            DERR(c, LD_REASON_DECODE, "nested deeper than %d", MAX_DEPTH);
        for (;;) {
            if ((why = block_count(c, item, &total, &cnt)))
                return why;
            if (cnt == 0)
                break;
            for (int64_t k = 0; k < cnt; k++) {
                if (n->wt == AT_MAP) {
                    size_t klen;
                    if ((why = read_len(c, "map key", &klen)))
                        return why;
                    c->p += klen;
                }
                if (!fv) {
                    if ((why = dec(item, c)))
                        return why;
                    continue;
                }
                /* a mapped array of strings or enum symbols */
                ld_fv_t tmp = {0};
                if (item->wt == AT_ENUM) {
                    int64_t i;
                    if (read_long(c, &i) < 0 || i < 0 || (uint64_t)i >= item->n)
                        DERR(c, LD_REASON_DECODE, "enum index out of range");
                    if (!item->syms[i].s)
                        DERR(c, LD_REASON_UNKNOWN_SCHEMA,
                             "enum symbol %lld not in the reader schema",
                             (long long)i);
                    tmp.u.s = item->syms[i].s;
                    tmp.n = item->syms[i].n;
                } else {
                    size_t len;
                    if ((why = read_len(c, "string", &len)))
                        return why;
                    tmp.u.s = (const char *)c->p;
                    tmp.n = (uint32_t)len;
                    c->p += len;
                }
                if (ld_fmap_push_str(c->fm, tmp.u.s, tmp.n) < 0)
                    DERR(c, LD_REASON_DECODE, "out of memory");
                fv->n++;
            }
        }
        c->depth--;
        return LD_REASON_NONE;
    }
    default:
        DERR(c, LD_REASON_UNKNOWN_SCHEMA, "%s",
             n->msg ? n->msg : "unreadable value");
    }
}

static ld_reason_t run(const aprog_t *p, ld_fmap_t *fm, const uint8_t *data,
                       size_t len, char *err, size_t err_size)
{
    for (uint32_t i = 0; i < p->ndefs; i++)
        fm->fv[p->defs[i].slot] = p->defs[i].v;
    cur_t c = {data, data + len, fm, err, err_size, 0};
    ld_reason_t why = dec(p->root, &c);
    if (why)
        return why;
    if (c.p != c.end)
        DERR(&c, LD_REASON_DECODE, "%zu bytes after the record", left(&c));
    return LD_REASON_NONE;
}

/* ---- Public (to the pipeline) ------------------------------------------- */

/* Every mapped slot must come from the reader schema. */
static int check_found(const aprog_t *p, const ld_fmap_t *fm,
                       const char *schema, char *errstr, size_t errstr_size)
{
    for (uint32_t i = 0; i < fm->nslots; i++)
        if (!p->found[i]) {
            snprintf(errstr, errstr_size,
                     "%s: no field %s (mapped in the pipeline config)", schema,
                     fm->names[i]);
            return -1;
        }
    return 0;
}

ld_avro_t *ld_avro_new(const ld_pipeline_conf_t *conf, ld_record_kind_t kind,
                       ld_fmap_t *fm, char *errstr, size_t errstr_size)
{
    const char *rpath =
        kind == LD_RECORD_EVENT ? conf->event_schema : conf->label_schema;
    const char *wpath = kind == LD_RECORD_EVENT ? conf->event_writer_schema
                                                : conf->label_writer_schema;
    const char *what = kind == LD_RECORD_EVENT ? "event" : "label";
    ld_avro_t *a = calloc(1, sizeof(*a));
    if (!a) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    if (!rpath || !*rpath) {
        snprintf(errstr, errstr_size,
                 "pipeline.%s_schema: required with format avro", what);
        goto err;
    }
    if (!(a->reader = aschema_load(rpath, errstr, errstr_size)))
        goto err;
    /* The reader against itself: every mapped field must exist. */
    aprog_t *self = prog_new(a->reader, a->reader, fm, errstr, errstr_size);
    if (!self)
        goto err;
    int bad = check_found(self, fm, rpath, errstr, errstr_size);
    if (bad || !wpath || !*wpath) {
        a->plain = bad ? NULL : self;
        if (bad) {
            prog_free(self);
            goto err;
        }
    } else {
        prog_free(self);
        if (!(a->writer = aschema_load(wpath, errstr, errstr_size)) ||
            !(a->plain =
                  prog_new(a->writer, a->reader, fm, errstr, errstr_size)))
            goto err;
    }

    int reg = conf->registry_url && *conf->registry_url;
    a->fm = fm;
    a->confluent = conf->avro_wire == LD_AVRO_WIRE_CONFLUENT ||
                   (conf->avro_wire == LD_AVRO_WIRE_AUTO &&
                    (conf->schema_ids.n > 0 || reg));
    if (reg && !(a->reg = ld_registry_new(conf, errstr, errstr_size)))
        goto err;
    a->capids = (uint32_t)conf->schema_ids.n + 1;
    a->ids = calloc(a->capids, sizeof(*a->ids));
    if (!a->ids) {
        snprintf(errstr, errstr_size, "out of memory");
        goto err;
    }
    for (size_t i = 0; i < conf->schema_ids.n; i++) {
        const char *e = conf->schema_ids.v[i];
        char *endp;
        errno = 0;
        unsigned long id = strtoul(e, &endp, 10);
        if (endp == e || *endp != '=' || !endp[1] || errno || id > UINT32_MAX) {
            snprintf(errstr, errstr_size,
                     "pipeline.schema_ids[%zu]: '%s' is not id=path.avsc", i,
                     e);
            goto err;
        }
        for (uint32_t j = 0; j < a->nids; j++)
            if (a->ids[j].id == id) {
                snprintf(errstr, errstr_size,
                         "pipeline.schema_ids[%zu]: id %lu listed twice", i,
                         id);
                goto err;
            }
        schema_id_t *s = &a->ids[a->nids++];
        s->id = (uint32_t)id;
        if (!(s->w = aschema_load(endp + 1, errstr, errstr_size)))
            goto err;
        /* A writer schema of the other topic does not resolve here; its
         * records on this topic are dead-lettered as unknown_schema. */
        char why[512];
        s->prog = prog_new(s->w, a->reader, fm, why, sizeof(why));
        if (!s->prog && !(s->why = strdup(why))) {
            snprintf(errstr, errstr_size, "out of memory");
            goto err;
        }
    }
    return a;
err:
    ld_avro_destroy(a);
    return NULL;
}

void ld_avro_destroy(ld_avro_t *a)
{
    if (!a)
        return;
    prog_free(a->plain);
    for (uint32_t i = 0; i < a->nids; i++) {
        prog_free(a->ids[i].prog);
        aschema_free(a->ids[i].w);
        free(a->ids[i].why);
    }
    free(a->ids);
    ld_registry_destroy(a->reg);
    aschema_free(a->writer);
    aschema_free(a->reader);
    free(a);
}

/* The writer schema of an id no record showed before, from the registry,
 * resolved against the reader and remembered either way: an id's schema
 * never changes. NULL with err set when the registry could not say (down,
 * refused): nothing is remembered then, the next record asks again. */
static schema_id_t *registry_id(ld_avro_t *a, uint32_t id, char *err,
                                size_t err_size)
{
    char *text = NULL, *type = NULL, why[512] = "";
    ld_reg_status_t st =
        ld_registry_get(a->reg, id, &text, &type, err, err_size);
    if (st == LD_REG_DOWN || st == LD_REG_REFUSED)
        return NULL;
    if (a->nids == a->capids) {
        schema_id_t *v = realloc(a->ids, 2 * a->capids * sizeof(*v));
        if (!v) {
            free(text);
            free(type);
            snprintf(err, err_size, "out of memory");
            return NULL;
        }
        a->ids = v;
        a->capids *= 2;
    }
    schema_id_t *s = &a->ids[a->nids];
    memset(s, 0, sizeof(*s));
    s->id = id;
    char name[64];
    snprintf(name, sizeof(name), "registry schema id %u", id);
    if (st == LD_REG_UNKNOWN) {
        snprintf(why, sizeof(why), "not in the registry");
    } else if (strcmp(type, "AVRO") != 0) {
        snprintf(why, sizeof(why), "the registry has a %s schema, not Avro",
                 type);
    } else if (!(s->w = calloc(1, sizeof(*s->w))) ||
               !(s->w->path = strdup(name))) {
        snprintf(why, sizeof(why), "out of memory");
    } else if (aschema_parse(s->w, text, strlen(text), why, sizeof(why)) == 0) {
        s->prog = prog_new(s->w, a->reader, a->fm, why, sizeof(why));
    }
    free(text);
    free(type);
    if (!s->prog && !(s->why = strdup(why))) {
        aschema_free(s->w);
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    a->nids++;
    ld_log(s->prog ? LD_LOG_INFO : LD_LOG_WARN, "pipeline",
           "msg=\"schema id from the registry\" id=%u resolves=%s%s%s%s", id,
           s->prog ? "yes" : "no", s->prog ? "" : " why=\"",
           s->prog ? "" : s->why, s->prog ? "" : "\"");
    return s;
}

ld_reason_t ld_avro_decode(ld_avro_t *a, ld_fmap_t *fm, const uint8_t *p,
                           size_t len, char *err, size_t err_size)
{
    if (!a->confluent)
        return run(a->plain, fm, p, len, err, err_size);
    uint32_t id, npath;
    size_t hdr;
    ld_reason_t why = ld_confluent_header(p, len, 0, &id, NULL, 0, &npath, &hdr,
                                          err, err_size);
    if (why != LD_REASON_NONE)
        return why;
    for (uint32_t i = 0; i < a->nids; i++) {
        if (a->ids[i].id != id)
            continue;
        if (!a->ids[i].prog) {
            snprintf(err, err_size, "schema id %u: %s", id, a->ids[i].why);
            return LD_REASON_UNKNOWN_SCHEMA;
        }
        return run(a->ids[i].prog, fm, p + hdr, len - hdr, err, err_size);
    }
    if (!a->reg) {
        snprintf(err, err_size, "schema id %u is not in pipeline.schema_ids",
                 id);
        return LD_REASON_UNKNOWN_SCHEMA;
    }
    schema_id_t *s = registry_id(a, id, err, err_size);
    if (!s)
        return LD_REASON_UNKNOWN_SCHEMA;
    if (!s->prog) {
        snprintf(err, err_size, "schema id %u: %s", id, s->why);
        return LD_REASON_UNKNOWN_SCHEMA;
    }
    return run(s->prog, fm, p + hdr, len - hdr, err, err_size);
}
