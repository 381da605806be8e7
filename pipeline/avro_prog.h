/* SPDX-License-Identifier: Apache-2.0 */
/* Inside the pipeline: the compiled form of an Avro (writer, reader) schema
 * pair that avro_compile.c builds and avro.c walks over each datum. Not for
 * other stages. */
#ifndef LD_PIPELINE_AVRO_PROG_H
#define LD_PIPELINE_AVRO_PROG_H

#include <avro.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "pipeline/internal.h"

/* Nesting deeper than this is refused, both when compiling a schema and
 * when decoding a datum (data of a recursive schema nest as deep as the
 * bytes say). */
#define MAX_DEPTH 64

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

/* Loads and parses the .avsc at path. Returns the schema (free with
 * ld_avro_schema_free), or NULL with errstr set. */
aschema_t *ld_avro_schema_load(const char *path, char *errstr,
                               size_t errstr_size);
/* Parses the .avsc text[0..n) (text[n] is NUL) into a, whose path names
 * it in errors. Returns 0, or -1 with errstr set. */
int ld_avro_schema_parse(aschema_t *a, const char *text, size_t n, char *errstr,
                         size_t errstr_size);
/* Frees a (NULL: no-op). */
void ld_avro_schema_free(aschema_t *a);

/* Compiles the writer schema w read as the reader schema r, storing the
 * fields mapped in fm (borrowed; it must outlive the program). Returns the
 * program (free with ld_avro_prog_free), or NULL with errstr set when the
 * writer does not resolve against the reader or memory ran out. */
aprog_t *ld_avro_prog_new(const aschema_t *w, const aschema_t *r,
                          const ld_fmap_t *fm, char *errstr,
                          size_t errstr_size);
/* Frees p (NULL: no-op). */
void ld_avro_prog_free(aprog_t *p);

#endif
