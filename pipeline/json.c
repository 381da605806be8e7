/* SPDX-License-Identifier: Apache-2.0 */
/* JSON decoding of users' own flat or nested objects with jansson; fields
 * are looked up by name, nested ones by dotted path ("user.country"). */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/internal.h"

/* Path components of one slot: "a.b.c" -> {"a", "b", "c"}. */
typedef struct jpath {
    char **part;
    uint32_t n;
} jpath_t;

struct ld_jsondec {
    json_t *root; /* of the last record: its strings back the slots */
    jpath_t *paths;
    uint32_t npaths;
};

ld_jsondec_t *ld_jsondec_new(ld_fmap_t *fm, char *errstr, size_t errstr_size)
{
    ld_jsondec_t *d = calloc(1, sizeof(*d));
    if (!d || !(d->paths = calloc(fm->nslots + 1, sizeof(*d->paths))))
        goto nomem;
    d->npaths = fm->nslots;
    for (uint32_t i = 0; i < fm->nslots; i++) {
        const char *name = fm->names[i];
        uint32_t n = 1;
        for (const char *c = name; *c; c++)
            n += *c == '.';
        jpath_t *jp = &d->paths[i];
        if (!(jp->part = calloc(n, sizeof(*jp->part))))
            goto nomem;
        const char *start = name;
        for (uint32_t k = 0; k < n; k++) {
            const char *dot = strchr(start, '.');
            size_t len = dot ? (size_t)(dot - start) : strlen(start);
            if (!(jp->part[k] = strndup(start, len)))
                goto nomem;
            jp->n++;
            start = dot ? dot + 1 : start + len;
        }
    }
    return d;
nomem:
    snprintf(errstr, errstr_size, "out of memory");
    ld_jsondec_destroy(d);
    return NULL;
}

void ld_jsondec_destroy(ld_jsondec_t *d)
{
    if (!d)
        return;
    json_decref(d->root);
    for (uint32_t i = 0; d->paths && i < d->npaths; i++) {
        for (uint32_t k = 0; k < d->paths[i].n; k++)
            free(d->paths[i].part[k]);
        free(d->paths[i].part);
    }
    free(d->paths);
    free(d);
}

/* The value at slot i's path: the whole dotted name as one key first (keys
 * may contain dots), then the nested walk. */
static json_t *lookup(json_t *root, const ld_fmap_t *fm, const jpath_t *jp,
                      uint32_t i)
{
    json_t *v = json_object_get(root, fm->names[i]);
    if (v || jp->n == 1)
        return v;
    v = root;
    for (uint32_t k = 0; k < jp->n && v; k++)
        v = json_object_get(v, jp->part[k]);
    return v;
}

ld_reason_t ld_jsondec_decode(ld_jsondec_t *d, ld_fmap_t *fm, const uint8_t *p,
                              size_t len, char *err, size_t err_size)
{
    json_error_t jerr;
    json_decref(d->root);
    d->root = json_loadb((const char *)p, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!d->root) {
        snprintf(err, err_size, "JSON at %d:%d: %s", jerr.line, jerr.column,
                 jerr.text);
        switch (json_error_code(&jerr)) {
        case json_error_duplicate_key:
            return LD_REASON_DUPLICATE_FIELD;
        case json_error_invalid_utf8:
            return LD_REASON_BAD_UTF8;
        default:
            return LD_REASON_DECODE;
        }
    }
    if (!json_is_object(d->root)) {
        snprintf(err, err_size, "JSON value is not an object");
        return LD_REASON_DECODE;
    }
    for (uint32_t i = 0; i < fm->nslots; i++) {
        json_t *j = lookup(d->root, fm, &d->paths[i], i);
        ld_fv_t *v = &fm->fv[i];
        if (!j)
            continue;
        switch (json_typeof(j)) {
        case JSON_NULL:
            v->kind = FV_NULL;
            break;
        case JSON_TRUE:
        case JSON_FALSE:
            v->kind = FV_BOOL;
            v->u.i = json_is_true(j);
            break;
        case JSON_INTEGER:
            v->kind = FV_INT;
            v->u.i = json_integer_value(j);
            break;
        case JSON_REAL:
            v->kind = FV_DOUBLE;
            v->u.d = json_real_value(j);
            break;
        case JSON_STRING:
            v->kind = FV_STR;
            v->u.s = json_string_value(j);
            v->n = (uint32_t)json_string_length(j);
            break;
        case JSON_ARRAY: {
            size_t k;
            json_t *e;
            v->kind = FV_LIST;
            v->u.first = fm->nstrs;
            v->n = 0;
            json_array_foreach(j, k, e)
            {
                if (!json_is_string(e)) {
                    snprintf(err, err_size,
                             "field %s: array holds a non-string",
                             fm->names[i]);
                    return LD_REASON_BAD_TYPE;
                }
                if (ld_fmap_push_str(fm, json_string_value(e),
                                     (uint32_t)json_string_length(e)) < 0) {
                    snprintf(err, err_size, "out of memory");
                    return LD_REASON_DECODE;
                }
                v->n++;
            }
            break;
        }
        default:
            snprintf(err, err_size, "field %s is an object", fm->names[i]);
            return LD_REASON_BAD_TYPE;
        }
    }
    return LD_REASON_NONE;
}
