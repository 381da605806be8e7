/* SPDX-License-Identifier: Apache-2.0 */
/* Inside the pipeline: the FileDescriptorSet model that pbset.c reads and
 * pbdesc.c compiles into plans (wire reading: common/pbwire.h). Not for
 * other stages. */
#ifndef LD_PIPELINE_PBSET_H
#define LD_PIPELINE_PBSET_H

#include <stddef.h>
#include <stdint.h>

#include "common/pbwire.h"

/* FieldDescriptorProto.Type */
enum {
    T_DOUBLE = 1,
    T_FLOAT = 2,
    T_INT64 = 3,
    T_UINT64 = 4,
    T_INT32 = 5,
    T_FIXED64 = 6,
    T_FIXED32 = 7,
    T_BOOL = 8,
    T_STRING = 9,
    T_GROUP = 10,
    T_MESSAGE = 11,
    T_BYTES = 12,
    T_UINT32 = 13,
    T_ENUM = 14,
    T_SFIXED32 = 15,
    T_SFIXED64 = 16,
    T_SINT32 = 17,
    T_SINT64 = 18
};

/* ---- The descriptor set, as read ---------------------------------------- */

typedef struct dfield {
    char *name;
    uint32_t number;
    uint32_t label; /* 1 optional, 2 required, 3 repeated */
    uint32_t type;
    char *type_name; /* message / enum types, as written */
    int32_t oneof;   /* -1: none */
    int32_t msg, en; /* resolved: index into dset messages / enums, or -1 */
} dfield_t;

typedef struct dmsg {
    char *full; /* "pkg.Outer.Inner" */
    dfield_t *f;
    uint32_t nf, capf;
    int map_entry;
    int proto3;
    int32_t parent; /* enclosing message, or -1 */
    uint32_t pos;   /* index among the messages of its parent or file */
    uint32_t file;  /* index into dset files */
} dmsg_t;

typedef struct denum {
    char *full;
    char **names;
    uint32_t *lens; /* strlen of each name: decoding needs no strlen */
    int32_t *nums;
    uint32_t n, cap;
} denum_t;

typedef struct dfile {
    char *name;
    char **deps;
    uint32_t ndeps;
    /* its FileDescriptorProto bytes in the set's buf (ld_pbset_load only):
     * a writer schema from the registry borrows the imports it lacks */
    size_t raw_off, raw_len;
} dfile_t;

typedef struct dset {
    dmsg_t *m;
    uint32_t nm, capm;
    denum_t *e;
    uint32_t ne, cape;
    dfile_t *files;
    uint32_t nfiles, capfiles;
    uint8_t *buf; /* the FileDescriptorSet as read (ld_pbset_load) */
} dset_t;

/* Reads the FileDescriptorSet file at path into *s (zeroed by the caller):
 * every import present, every type name resolved. Returns 0, or -1 with
 * errstr set. Free with ld_pbset_free() either way. */
int ld_pbset_load(dset_t *s, const char *path, char *errstr,
                  size_t errstr_size);
void ld_pbset_free(dset_t *s);
/* Adds one serialized FileDescriptorProto (p, n borrowed) to *s, named
 * name when not NULL (a registry reference's import name) instead of the
 * name it carries. Returns its file index, or -1 with errstr set. Call
 * ld_pbset_resolve() once every file is in. */
int32_t ld_pbset_add_file(dset_t *s, const uint8_t *p, size_t n,
                          const char *name, char *errstr, size_t errstr_size);
/* Checks that every import is in *s and resolves every type name; what
 * names the set in error messages. Returns 0, or -1 with errstr set. */
int ld_pbset_resolve(dset_t *s, const char *what, char *errstr,
                     size_t errstr_size);
/* Index of the file named name, or -1. */
int32_t ld_pbset_find_file(const dset_t *s, const char *name);
/* Index of the message that the Confluent message-index path[0..n) names
 * in file fi (top-level position first, then nested), or -1. */
int32_t ld_pbset_msg_at(const dset_t *s, uint32_t fi, const uint32_t *path,
                        uint32_t n);
/* Index of the message of fully qualified name full, or -1. */
int32_t ld_pbset_find_msg(const dset_t *s, const char *full);
/* Grows *v (n used, *cap allocated, zero-filled) so that n < *cap. */
int ld_pbset_grow(void **v, uint32_t *cap, uint32_t n, size_t size);
/* "a.b", or "b" when a is empty; caller frees. NULL when out of memory. */
char *ld_pbset_join(const char *a, const char *b);

#endif /* LD_PIPELINE_PBSET_H */
