/* SPDX-License-Identifier: Apache-2.0 */
/* A FileDescriptorSet read without libprotobuf: a small reader of
 * descriptor.proto's wire format (FileDescriptorProto, DescriptorProto,
 * FieldDescriptorProto, EnumDescriptorProto: names, numbers, labels, types,
 * oneofs, map entries, nesting), every length checked against what
 * remains, then imports checked and type names resolved. pbdesc.c compiles
 * it into decoding plans. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/pbset.h"

#define MAX_DESC_SIZE (64u << 20)

/* A reader over wire-format bytes. */
typedef struct rd {
    const uint8_t *p, *end;
} rd_t;

/* Next field of r: 1 with its number, wire type, varint value or payload;
 * 0 at the end; -1 when malformed. Groups are skipped (not used by
 * descriptor.proto's fields we read). */
static int rd_next(rd_t *r, uint32_t *num, uint32_t *wt, uint64_t *v, rd_t *sub)
{
    for (;;) {
        if (r->p >= r->end)
            return 0;
        if (ld_pb_tag(&r->p, r->end, num, wt) < 0)
            return -1;
        if (*wt == LD_PB_WT_VARINT)
            return ld_pb_varint(&r->p, r->end, v) < 0 ? -1 : 1;
        if (*wt == LD_PB_WT_LEN) {
            size_t n;
            if (ld_pb_len(&r->p, r->end, &n) < 0)
                return -1;
            sub->p = r->p;
            sub->end = r->p + n;
            r->p += n;
            return 1;
        }
        if (ld_pb_skip(&r->p, r->end, *num, *wt, 0) < 0)
            return -1;
    }
}

static char *rd_str(const rd_t *s)
{
    size_t n = (size_t)(s->end - s->p);
    char *c = malloc(n + 1);
    if (c) {
        memcpy(c, s->p, n);
        c[n] = '\0';
    }
    return c;
}

char *ld_pbset_join(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    char *c = malloc(na + nb + 2);
    if (!c)
        return NULL;
    if (na) {
        memcpy(c, a, na);
        c[na++] = '.';
    }
    memcpy(c + na, b, nb + 1);
    return c;
}

int ld_pbset_grow(void **v, uint32_t *cap, uint32_t n, size_t size)
{
    if (n < *cap)
        return 0;
    uint32_t ncap = *cap ? *cap * 2 : 8;
    void *w = realloc(*v, ncap * size);
    if (!w)
        return -1;
    memset((char *)w + (size_t)*cap * size, 0, (size_t)(ncap - *cap) * size);
    *v = w;
    *cap = ncap;
    return 0;
}

void ld_pbset_free(dset_t *s)
{
    for (uint32_t i = 0; i < s->nm; i++) {
        for (uint32_t k = 0; k < s->m[i].nf; k++) {
            free(s->m[i].f[k].name);
            free(s->m[i].f[k].type_name);
        }
        free(s->m[i].f);
        free(s->m[i].full);
    }
    free(s->m);
    for (uint32_t i = 0; i < s->ne; i++) {
        for (uint32_t k = 0; k < s->e[i].n; k++)
            free(s->e[i].names[k]);
        free(s->e[i].names);
        free(s->e[i].lens);
        free(s->e[i].nums);
        free(s->e[i].full);
    }
    free(s->e);
    for (uint32_t i = 0; i < s->nfiles; i++) {
        for (uint32_t k = 0; k < s->files[i].ndeps; k++)
            free(s->files[i].deps[k]);
        free(s->files[i].deps);
        free(s->files[i].name);
    }
    free(s->files);
    free(s->buf);
    memset(s, 0, sizeof(*s));
}

#define PERR(...)                                                              \
    do {                                                                       \
        snprintf(errstr, errstr_size, __VA_ARGS__);                            \
        return -1;                                                             \
    } while (0)

static int parse_enum(dset_t *s, rd_t r, const char *scope, char *errstr,
                      size_t errstr_size)
{
    if (ld_pbset_grow((void **)&s->e, &s->cape, s->ne, sizeof(*s->e)) < 0)
        PERR("out of memory");
    uint32_t ei = s->ne++;
    uint32_t num, wt;
    uint64_t v;
    rd_t sub;
    int rc;
    char *name = NULL;
    while ((rc = rd_next(&r, &num, &wt, &v, &sub)) == 1) {
        if (num == 1 && wt == LD_PB_WT_LEN) {
            free(name);
            if (!(name = rd_str(&sub)))
                PERR("out of memory");
        } else if (num == 2 && wt == LD_PB_WT_LEN) {
            denum_t *e = &s->e[ei];
            if (e->n == e->cap) {
                uint32_t c2 = e->cap, c3 = e->cap;
                if (ld_pbset_grow((void **)&e->names, &c2, e->n,
                                  sizeof(*e->names)) < 0 ||
                    ld_pbset_grow((void **)&e->lens, &c3, e->n,
                                  sizeof(*e->lens)) < 0 ||
                    ld_pbset_grow((void **)&e->nums, &e->cap, e->n,
                                  sizeof(*e->nums)) < 0)
                    goto nomem;
            }
            rd_t vr = sub, vs;
            char *vn = NULL;
            int32_t vnum = 0;
            uint32_t n2, wt2;
            uint64_t v2;
            int rc2;
            while ((rc2 = rd_next(&vr, &n2, &wt2, &v2, &vs)) == 1) {
                if (n2 == 1 && wt2 == LD_PB_WT_LEN) {
                    free(vn);
                    if (!(vn = rd_str(&vs)))
                        goto nomem;
                } else if (n2 == 2 && wt2 == LD_PB_WT_VARINT) {
                    vnum = (int32_t)(uint32_t)v2;
                }
            }
            if (rc2 < 0 || !vn) {
                free(vn);
                PERR("malformed enum value");
            }
            e->names[e->n] = vn;
            e->lens[e->n] = (uint32_t)strlen(vn);
            e->nums[e->n] = vnum;
            e->n++;
        }
    }
    if (rc < 0 || !name) {
        free(name);
        PERR("malformed enum");
    }
    s->e[ei].full = ld_pbset_join(scope, name);
    free(name);
    if (!s->e[ei].full)
        PERR("out of memory");
    return 0;
nomem:
    free(name);
    PERR("out of memory");
}

static int parse_field(dfield_t *f, rd_t r, char *errstr, size_t errstr_size)
{
    uint32_t num, wt;
    uint64_t v;
    rd_t sub;
    int rc;
    f->oneof = -1;
    f->msg = f->en = -1;
    f->label = 1;
    while ((rc = rd_next(&r, &num, &wt, &v, &sub)) == 1) {
        if (wt == LD_PB_WT_LEN && (num == 1 || num == 6)) {
            char **dst = num == 1 ? &f->name : &f->type_name;
            free(*dst);
            if (!(*dst = rd_str(&sub)))
                PERR("out of memory");
        } else if (wt == LD_PB_WT_VARINT) {
            if (num == 3)
                f->number = (uint32_t)v;
            else if (num == 4)
                f->label = (uint32_t)v;
            else if (num == 5)
                f->type = (uint32_t)v;
            else if (num == 9)
                f->oneof = (int32_t)(uint32_t)v;
        }
    }
    if (rc < 0 || !f->name || f->number == 0 || f->number >= (1u << 29) ||
        f->type < T_DOUBLE || f->type > T_SINT64)
        PERR("malformed field %s", f->name ? f->name : "(no name)");
    return 0;
}

static int parse_msg(dset_t *s, rd_t r, const char *scope, int proto3,
                     int32_t parent, uint32_t pos, uint32_t file, char *errstr,
                     size_t errstr_size)
{
    uint32_t nested = 0;
    uint32_t num, wt;
    uint64_t v;
    rd_t sub;
    int rc;
    char *name = NULL, *full = NULL;
    /* the name first: nested types need it as their scope */
    rd_t r0 = r;
    while ((rc = rd_next(&r0, &num, &wt, &v, &sub)) == 1)
        if (num == 1 && wt == LD_PB_WT_LEN) {
            free(name);
            if (!(name = rd_str(&sub)))
                PERR("out of memory");
        }
    if (rc < 0 || !name) {
        free(name);
        PERR("malformed message in scope '%s'", scope);
    }
    full = ld_pbset_join(scope, name);
    free(name);
    if (!full ||
        ld_pbset_grow((void **)&s->m, &s->capm, s->nm, sizeof(*s->m)) < 0) {
        free(full);
        PERR("out of memory");
    }
    uint32_t mi = s->nm++;
    s->m[mi].full = full;
    s->m[mi].proto3 = proto3;
    s->m[mi].parent = parent;
    s->m[mi].pos = pos;
    s->m[mi].file = file;
    while ((rc = rd_next(&r, &num, &wt, &v, &sub)) == 1) {
        if (wt != LD_PB_WT_LEN)
            continue;
        if (num == 2) {
            dmsg_t *m = &s->m[mi];
            if (ld_pbset_grow((void **)&m->f, &m->capf, m->nf, sizeof(*m->f)) <
                0)
                PERR("out of memory");
            dfield_t *f = &m->f[m->nf++];
            if (parse_field(f, sub, errstr, errstr_size) < 0)
                return -1;
        } else if (num == 3) {
            if (parse_msg(s, sub, s->m[mi].full, proto3, (int32_t)mi, nested++,
                          file, errstr, errstr_size) < 0)
                return -1;
        } else if (num == 4) {
            if (parse_enum(s, sub, s->m[mi].full, errstr, errstr_size) < 0)
                return -1;
        } else if (num == 7) { /* MessageOptions: map_entry = 7 */
            uint32_t n2, wt2;
            uint64_t v2;
            rd_t s2;
            int rc2;
            while ((rc2 = rd_next(&sub, &n2, &wt2, &v2, &s2)) == 1)
                if (n2 == 7 && wt2 == LD_PB_WT_VARINT)
                    s->m[mi].map_entry = v2 != 0;
            if (rc2 < 0)
                PERR("malformed options of %s", s->m[mi].full);
        }
    }
    if (rc < 0)
        PERR("malformed message %s", s->m[mi].full);
    return 0;
}

static int parse_file(dset_t *s, rd_t r, char *errstr, size_t errstr_size)
{
    uint32_t num, wt;
    uint64_t v;
    rd_t sub;
    int rc, proto3 = 0;
    uint32_t top = 0;
    char *pkg = NULL;
    if (ld_pbset_grow((void **)&s->files, &s->capfiles, s->nfiles,
                      sizeof(*s->files)) < 0)
        PERR("out of memory");
    uint32_t fi = s->nfiles;
    dfile_t *df = &s->files[s->nfiles++];
    /* package and syntax first: every name below depends on them */
    rd_t r0 = r;
    while ((rc = rd_next(&r0, &num, &wt, &v, &sub)) == 1) {
        if (wt != LD_PB_WT_LEN)
            continue;
        if (num == 1) {
            free(df->name);
            if (!(df->name = rd_str(&sub)))
                goto nomem;
        } else if (num == 2) {
            free(pkg);
            if (!(pkg = rd_str(&sub)))
                goto nomem;
        } else if (num == 12) {
            proto3 = (size_t)(sub.end - sub.p) == 6 &&
                     memcmp(sub.p, "proto3", 6) == 0;
        } else if (num == 3) {
            uint32_t cap = df->ndeps + 1;
            char **d = realloc(df->deps, cap * sizeof(*d));
            if (!d)
                goto nomem;
            df->deps = d;
            if (!(d[df->ndeps] = rd_str(&sub)))
                goto nomem;
            df->ndeps++;
        }
    }
    if (rc < 0 || !df->name) {
        free(pkg);
        PERR("malformed FileDescriptorProto");
    }
    while ((rc = rd_next(&r, &num, &wt, &v, &sub)) == 1) {
        if (wt != LD_PB_WT_LEN)
            continue;
        if ((num == 4 && parse_msg(s, sub, pkg ? pkg : "", proto3, -1, top++,
                                   fi, errstr, errstr_size) < 0) ||
            (num == 5 &&
             parse_enum(s, sub, pkg ? pkg : "", errstr, errstr_size) < 0)) {
            free(pkg);
            return -1;
        }
    }
    free(pkg);
    if (rc < 0)
        PERR("malformed file %s", df->name);
    return 0;
nomem:
    free(pkg);
    PERR("out of memory");
}

int32_t ld_pbset_find_msg(const dset_t *s, const char *full)
{
    for (uint32_t i = 0; i < s->nm; i++)
        if (strcmp(s->m[i].full, full) == 0)
            return (int32_t)i;
    return -1;
}

static int32_t find_enum(const dset_t *s, const char *full)
{
    for (uint32_t i = 0; i < s->ne; i++)
        if (strcmp(s->e[i].full, full) == 0)
            return (int32_t)i;
    return -1;
}

/* Resolves every field's type name (protoc writes them fully qualified
 * with a leading dot; relative names are looked up scope by scope). */
int ld_pbset_resolve(dset_t *s, const char *path, char *errstr,
                     size_t errstr_size)
{
    for (uint32_t i = 0; i < s->nfiles; i++)
        for (uint32_t k = 0; k < s->files[i].ndeps; k++) {
            uint32_t j = 0;
            while (j < s->nfiles &&
                   strcmp(s->files[j].name, s->files[i].deps[k]) != 0)
                j++;
            if (j == s->nfiles)
                PERR("%s: %s imports %s, which is not in the descriptor set "
                     "(protoc --include_imports)",
                     path, s->files[i].name, s->files[i].deps[k]);
        }
    for (uint32_t i = 0; i < s->nm; i++)
        for (uint32_t k = 0; k < s->m[i].nf; k++) {
            dfield_t *f = &s->m[i].f[k];
            if (f->type != T_MESSAGE && f->type != T_GROUP && f->type != T_ENUM)
                continue;
            if (!f->type_name)
                PERR("%s: field %s.%s has no type name", path, s->m[i].full,
                     f->name);
            int enu = f->type == T_ENUM;
            int32_t at = -1;
            if (f->type_name[0] == '.') {
                at = enu ? find_enum(s, f->type_name + 1)
                         : ld_pbset_find_msg(s, f->type_name + 1);
            } else {
                /* innermost scope outwards: Outer.Inner.T, Outer.T, T */
                char *scope = strdup(s->m[i].full);
                if (!scope)
                    PERR("out of memory");
                for (;;) {
                    char *cand = ld_pbset_join(scope, f->type_name);
                    if (!cand) {
                        free(scope);
                        PERR("out of memory");
                    }
                    at = enu ? find_enum(s, cand) : ld_pbset_find_msg(s, cand);
                    free(cand);
                    if (at >= 0 || !*scope)
                        break;
                    char *dot = strrchr(scope, '.');
                    if (dot)
                        *dot = '\0';
                    else
                        scope[0] = '\0';
                }
                free(scope);
            }
            if (at < 0)
                PERR("%s: type %s of field %s.%s is not in the descriptor set "
                     "(protoc --include_imports)",
                     path, f->type_name, s->m[i].full, f->name);
            if (enu)
                f->en = at;
            else
                f->msg = at;
        }
    return 0;
}

int ld_pbset_load(dset_t *s, const char *path, char *errstr, size_t errstr_size)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        PERR("%s: %s", path, strerror(errno));
    /* the file's size first: sets are kilobytes, the bound 64 MiB */
    long size = fseek(fp, 0, SEEK_END) == 0 ? ftell(fp) : -1;
    if (size < 0 || fseek(fp, 0, SEEK_SET) != 0 ||
        (unsigned long)size > MAX_DESC_SIZE) {
        fclose(fp);
        PERR("%s: %s", path,
             size < 0 ? "cannot tell its size" : "larger than 64 MiB");
    }
    uint8_t *buf = malloc((size_t)size + 1);
    if (!buf) {
        fclose(fp);
        PERR("out of memory");
    }
    size_t n = fread(buf, 1, (size_t)size + 1, fp);
    int bad = ferror(fp) || n > (size_t)size;
    fclose(fp);
    if (bad) {
        free(buf);
        PERR("%s: read error (or it grew while read)", path);
    }
    rd_t r = {buf, buf + n}, sub;
    uint32_t num, wt;
    uint64_t v;
    int rc;
    s->buf = buf;
    while ((rc = rd_next(&r, &num, &wt, &v, &sub)) == 1) {
        if (num != 1 || wt != LD_PB_WT_LEN)
            continue;
        if (parse_file(s, sub, errstr, errstr_size) < 0) {
            char tmp[512];
            snprintf(tmp, sizeof(tmp), "%s", errstr);
            PERR("%s: %s", path, tmp);
        }
        s->files[s->nfiles - 1].raw_off = (size_t)(sub.p - buf);
        s->files[s->nfiles - 1].raw_len = (size_t)(sub.end - sub.p);
    }
    if (rc < 0 || s->nfiles == 0)
        PERR("%s: not a FileDescriptorSet (protoc --descriptor_set_out)", path);
    return ld_pbset_resolve(s, path, errstr, errstr_size);
}

int32_t ld_pbset_add_file(dset_t *s, const uint8_t *p, size_t n,
                          const char *name, char *errstr, size_t errstr_size)
{
    if (n > MAX_DESC_SIZE)
        PERR("a FileDescriptorProto larger than 64 MiB");
    rd_t r = {p, p + n};
    if (parse_file(s, r, errstr, errstr_size) < 0)
        return -1;
    dfile_t *df = &s->files[s->nfiles - 1];
    if (name) {
        char *c = strdup(name);
        if (!c)
            PERR("out of memory");
        free(df->name);
        df->name = c;
    }
    return (int32_t)(s->nfiles - 1);
}

int32_t ld_pbset_find_file(const dset_t *s, const char *name)
{
    for (uint32_t i = 0; i < s->nfiles; i++)
        if (strcmp(s->files[i].name, name) == 0)
            return (int32_t)i;
    return -1;
}

int32_t ld_pbset_msg_at(const dset_t *s, uint32_t fi, const uint32_t *path,
                        uint32_t n)
{
    int32_t at = -1;
    for (uint32_t k = 0; k < n; k++) {
        int32_t next = -1;
        for (uint32_t i = 0; i < s->nm && next < 0; i++)
            if (s->m[i].file == fi && s->m[i].parent == at &&
                s->m[i].pos == path[k])
                next = (int32_t)i;
        if (next < 0)
            return -1;
        at = next;
    }
    return at;
}
