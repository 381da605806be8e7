/* SPDX-License-Identifier: Apache-2.0 */
/* The local model store: <dir>/<model>/<version>.ckpt written atomically
 * (temporary file, fsync, rename), `latest`, the newest `keep` versions,
 * and loading the newest usable one. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "publish/publish.h"
#include "trainer/checkpoint.h"

/* ---- Local model store -------------------------------------------------- */

int ld_publish_name_ok(const char *name)
{
    if (!name || !name[0] || name[0] == '.')
        return 0;
    size_t n = 0;
    for (const char *p = name; *p; p++, n++) {
        unsigned char c = (unsigned char)*p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                 (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
        if (!ok || n >= LD_CKPT_NAME_MAX)
            return 0;
    }
    return 1;
}

static int fsync_dir(const char *dir, char *errstr, size_t size)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        ld_errstr_errno(errstr, size, "open directory", dir);
        return -1;
    }
    int r = fsync(fd);
    if (r != 0)
        ld_errstr_errno(errstr, size, "fsync directory", dir);
    close(fd);
    return r;
}

/* Writes buf to path through path.tmp.<pid>: write, fsync, rename. */
static int write_atomic(const char *dir, const char *name, const void *buf,
                        size_t len, char *errstr, size_t size)
{
    char tmp[4200], path[4200];
    const char *op = "create";
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    snprintf(tmp, sizeof(tmp), "%s/.%s.tmp.%ld", dir, name, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        ld_errstr_errno(errstr, size, op, tmp);
        return -1;
    }
    const uint8_t *p = buf;
    size_t left = len;
    op = "write";
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w == 0)
            errno = ENOSPC; /* write(2) made no progress: the disk is full */
        if (w <= 0)
            goto err;
        p += w;
        left -= (size_t)w;
    }
    op = "fsync";
    if (fsync(fd) != 0)
        goto err;
    op = "close";
    if (close(fd) != 0) {
        fd = -1;
        goto err;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        int e = errno;
        ld_errstr_set(errstr, size, "rename %s to %s: %s", tmp, path,
                      strerror(e));
        unlink(tmp);
        errno = e;
        return -1;
    }
    return fsync_dir(dir, errstr, size);

err:
    ld_errstr_errno(errstr, size, op, tmp);
    int e = errno;
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    errno = e;
    return -1;
}

static int mkdir_p(const char *path, char *errstr, size_t size)
{
    char buf[4200];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1;; p++) {
        if (*p && *p != '/')
            continue;
        char c = *p;
        *p = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
            ld_errstr_errno(errstr, size, "mkdir", buf);
            return -1;
        }
        *p = c;
        if (!c)
            break;
    }
    /* EEXIST also hides a regular file in the way: say so now rather than
     * as a puzzling "create" failure below it. */
    struct stat st;
    if (stat(path, &st) != 0) {
        ld_errstr_errno(errstr, size, "stat", path);
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        ld_errstr_errno(errstr, size, "mkdir", path);
        return -1;
    }
    return 0;
}

/* Parses "<digits><sfx>"; 0 if name is anything else. */
static int version_sfx(const char *name, const char *sfx, uint64_t *v)
{
    const char *p = name;
    uint64_t x = 0;
    if (*p < '0' || *p > '9')
        return 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (x > (UINT64_MAX - 9) / 10)
            return 0;
        x = x * 10 + (uint64_t)(*p - '0');
    }
    if (strcmp(p, sfx) != 0)
        return 0;
    *v = x;
    return 1;
}

/* A published version's file, and one staged for a commit not yet seen. */
#define SFX_CKPT    ".ckpt"
#define SFX_PENDING ".ckpt.pending"

static int cmp_desc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x < y) - (x > y);
}

/* Versions in the model directory with files named <v><sfx>, newest
 * first (caller frees *out). */
static ld_err_t list_sfx(const char *mdir, const char *sfx, uint64_t **out,
                         size_t *n)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(mdir);
    if (!d)
        return errno == ENOENT ? LD_ERR_NOENT : LD_ERR_IO;
    size_t cap = 0;
    uint64_t *v = NULL;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        uint64_t x;
        if (!version_sfx(de->d_name, sfx, &x))
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            uint64_t *nv = realloc(v, cap * sizeof(*v));
            if (!nv) {
                free(v);
                closedir(d);
                return LD_ERR_NOMEM;
            }
            v = nv;
        }
        v[(*n)++] = x;
    }
    closedir(d);
    if (*n)
        qsort(v, *n, sizeof(*v), cmp_desc);
    *out = v;
    return LD_OK;
}

static ld_err_t list_versions(const char *mdir, uint64_t **out, size_t *n)
{
    return list_sfx(mdir, SFX_CKPT, out, n);
}

/* <dir>/<model> into mdir, after checking both: LD_ERR_INVAL, with errstr,
 * for a missing or too long directory or a model that is not a name. */
static ld_err_t model_dir(const char *dir, const char *model, char *mdir,
                          size_t mdir_size, char *errstr, size_t size)
{
    if (!dir || strlen(dir) > 3800) {
        ld_errstr_set(errstr, size,
                      "model store directory missing or too long");
        return LD_ERR_INVAL;
    }
    if (!ld_publish_name_ok(model)) {
        ld_errstr_set(errstr, size, "'%s' is not a model name",
                      model ? model : "");
        return LD_ERR_INVAL;
    }
    snprintf(mdir, mdir_size, "%s/%s", dir, model);
    return LD_OK;
}

ld_err_t ld_publish_store_stage(const char *dir, const char *model,
                                uint64_t version, const uint8_t *buf,
                                size_t len, char *path, size_t path_size,
                                char *errstr, size_t errstr_size)
{
    char mdir[4200], name[64];
    ld_err_t err =
        model_dir(dir, model, mdir, sizeof(mdir), errstr, errstr_size);
    if (err)
        return err;
    if (mkdir_p(mdir, errstr, errstr_size) != 0)
        return LD_ERR_IO;
    snprintf(name, sizeof(name), "%" PRIu64 SFX_PENDING, version);
    if (write_atomic(mdir, name, buf, len, errstr, errstr_size) != 0)
        return LD_ERR_IO;
    if (path && path_size)
        snprintf(path, path_size, "%s/%" PRIu64 SFX_CKPT, mdir, version);
    return LD_OK;
}

/* Deletes all but the newest keep versions (never version itself). */
static void prune(const char *mdir, uint64_t version, int64_t keep)
{
    uint64_t *v;
    size_t nv;
    if (keep < 1)
        keep = 1;
    if (list_versions(mdir, &v, &nv) != LD_OK)
        return; /* written; pruning is best effort */
    for (size_t i = (size_t)keep; i < nv; i++) {
        if (v[i] == version)
            continue;
        char old[4300];
        snprintf(old, sizeof(old), "%s/%" PRIu64 ".ckpt", mdir, v[i]);
        if (unlink(old) != 0)
            ld_log(LD_LOG_WARN, "trainer",
                   "msg=\"cannot delete old checkpoint\" path=%s err=%s",
                   ld_log_q(old), ld_log_q(strerror(errno)));
    }
    free(v);
    char why[256];
    if (fsync_dir(mdir, why, sizeof(why)) != 0)
        ld_log(LD_LOG_WARN, "trainer",
               "msg=\"old checkpoints deleted, directory not synced\" err=%s",
               ld_log_q(why));
}

ld_err_t ld_publish_store_promote(const char *dir, const char *model,
                                  uint64_t upto, int64_t keep, char *errstr,
                                  size_t errstr_size)
{
    char mdir[4200];
    ld_err_t err =
        model_dir(dir, model, mdir, sizeof(mdir), errstr, errstr_size);
    if (err)
        return err;
    uint64_t *v = NULL, top = 0;
    size_t nv = 0;
    if ((err = list_sfx(mdir, SFX_PENDING, &v, &nv)) == LD_ERR_NOENT)
        return LD_OK;
    if (err) {
        ld_errstr_errno(errstr, errstr_size, "list", mdir);
        return err;
    }
    for (size_t i = nv; i-- > 0;) { /* oldest first */
        if (v[i] > upto)
            continue;
        char from[4300], to[4300];
        snprintf(from, sizeof(from), "%s/%" PRIu64 SFX_PENDING, mdir, v[i]);
        snprintf(to, sizeof(to), "%s/%" PRIu64 SFX_CKPT, mdir, v[i]);
        if (rename(from, to) != 0) {
            ld_errstr_set(errstr, errstr_size, "rename %s to %s: %s", from, to,
                          strerror(errno));
            err = LD_ERR_IO;
            break;
        }
        top = v[i];
    }
    free(v);
    if (err || !top)
        return err;
    if (fsync_dir(mdir, errstr, errstr_size) != 0)
        return LD_ERR_IO;
    char latest[32];
    int n = snprintf(latest, sizeof(latest), "%" PRIu64 "\n", top);
    if (write_atomic(mdir, "latest", latest, (size_t)n, errstr, errstr_size) !=
        0)
        return LD_ERR_IO;
    prune(mdir, top, keep);
    return LD_OK;
}

ld_err_t ld_publish_store_write(const char *dir, const char *model,
                                uint64_t version, const uint8_t *buf,
                                size_t len, int64_t keep, char *path,
                                size_t path_size, char *errstr,
                                size_t errstr_size)
{
    ld_err_t err = ld_publish_store_stage(dir, model, version, buf, len, path,
                                          path_size, errstr, errstr_size);
    if (!err)
        err = ld_publish_store_promote(dir, model, version, keep, errstr,
                                       errstr_size);
    return err;
}

ld_err_t ld_publish_store_latest(const char *dir, const char *model,
                                 uint64_t *version)
{
    char path[4300], buf[32];
    if (!dir || !ld_publish_name_ok(model))
        return LD_ERR_INVAL;
    snprintf(path, sizeof(path), "%s/%s/latest", dir, model);
    FILE *f = fopen(path, "re");
    if (!f)
        return errno == ENOENT ? LD_ERR_NOENT : LD_ERR_IO;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(buf, &end, 10);
    if (end == buf || errno || (*end && *end != '\n'))
        return LD_ERR_CORRUPT;
    *version = v;
    return LD_OK;
}

ld_err_t ld_publish_store_load_latest(const char *dir, const char *model,
                                      ld_ckpt_t **out, char *errstr,
                                      size_t size)
{
    char mdir[4200], path[4300], why[1024] = "";
    uint64_t latest = 0, *v = NULL;
    size_t nv = 0;
    *out = NULL;
    ld_errstr_set(errstr, size, "no error"); /* every return below says why */
    ld_err_t err = model_dir(dir, model, mdir, sizeof(mdir), errstr, size);
    if (err)
        return err;
    ld_err_t lrc = ld_publish_store_latest(dir, model, &latest);
    int have_latest = lrc == LD_OK;
    if (lrc == LD_ERR_IO) {
        /* Not "no checkpoint": a store that cannot be read (a file where
         * a directory belongs, permissions) must not start from scratch. */
        snprintf(path, sizeof(path), "%s/latest", mdir);
        ld_errstr_errno(errstr, size, "open", path);
        return LD_ERR_IO;
    }
    if (have_latest) {
        snprintf(path, sizeof(path), "%s/%" PRIu64 ".ckpt", mdir, latest);
        if (ld_ckpt_read_file(path, out, why, sizeof(why)) == LD_OK)
            return LD_OK;
        ld_log(LD_LOG_WARN, "trainer",
               "msg=\"latest checkpoint unusable, trying older ones\" "
               "err=%s",
               ld_log_q(why));
    }
    ld_err_t rc = list_versions(mdir, &v, &nv);
    if (rc != LD_OK && rc != LD_ERR_NOENT) {
        if (rc == LD_ERR_NOMEM)
            ld_errstr_set(errstr, size, "%s: out of memory listing versions",
                          mdir);
        else
            ld_errstr_errno(errstr, size, "list", mdir);
        return rc;
    }
    rc = nv ? LD_ERR_CORRUPT : LD_ERR_NOENT;
    ld_errstr_set(errstr, size, "%s: no checkpoint", mdir);
    for (size_t i = 0; i < nv; i++) {
        if (have_latest && v[i] >= latest)
            continue;
        snprintf(path, sizeof(path), "%s/%" PRIu64 ".ckpt", mdir, v[i]);
        if (ld_ckpt_read_file(path, out, why, sizeof(why)) == LD_OK) {
            rc = LD_OK;
            break;
        }
        ld_log(LD_LOG_WARN, "trainer", "msg=\"checkpoint unusable\" err=%s",
               ld_log_q(why));
    }
    /* why is the last file's refusal; only newer versions than latest were
     * skipped, so at least one file was tried whenever nv > 0. */
    if (rc == LD_ERR_CORRUPT)
        ld_errstr_set(errstr, size, "%s",
                      why[0] ? why : "no usable checkpoint");
    free(v);
    return rc;
}
