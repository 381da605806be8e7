/* SPDX-License-Identifier: Apache-2.0 */
/* Avro schema compilation: avro-c parses the .avsc files, then each
 * (writer, reader) pair is compiled into the tree of nodes that avro.c
 * walks. Schema resolution (promotions, unions, reader defaults) is done
 * here, not by avro-c's resolver, which double-frees on reader fields with
 * defaults (docs/ARCHITECTURE.md, "Library facts"). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "pipeline/avro_prog.h"

#define MAX_AVSC_BYTES (4u << 20)

/* ---- Schemas ------------------------------------------------------------ */

void ld_avro_schema_free(aschema_t *a)
{
    if (!a)
        return;
    if (a->s)
        avro_schema_decref(a->s);
    json_decref(a->j);
    free(a->path);
    free(a);
}

int ld_avro_schema_parse(aschema_t *a, const char *text, size_t n, char *errstr,
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

aschema_t *ld_avro_schema_load(const char *path, char *errstr,
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
    if (ld_avro_schema_parse(a, text, n, errstr, errstr_size) < 0)
        goto err;
    fclose(f);
    free(text);
    return a;
err:
    if (f)
        fclose(f);
    free(text);
    ld_avro_schema_free(a);
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

void ld_avro_prog_free(aprog_t *p)
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

aprog_t *ld_avro_prog_new(const aschema_t *w, const aschema_t *r,
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
        ld_avro_prog_free(p);
        return NULL;
    }
    return p;
}
