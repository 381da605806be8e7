/* SPDX-License-Identifier: Apache-2.0 */
/* Reading a checkpoint file of the local store: size and header checked
 * before the bytes are trusted, a short or changing file refused, then
 * decoded by the codec in checkpoint.c. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "trainer/checkpoint.h"
#include "trainer/ckpt_internal.h"
#include "trainer/internal.h"

/* ---- Reading a file -------------------------------------------------- */

/* Reads exactly len bytes at off; 0, or -1 with errno (EIO at a short
 * read: the file shrank under us). */
static int read_at(int fd, void *buf, size_t len, off_t off)
{
    uint8_t *p = buf;
    while (len) {
        ssize_t r = pread(fd, p, len, off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0)
            errno = EIO;
        if (r <= 0)
            return -1;
        p += r;
        len -= (size_t)r;
        off += r;
    }
    return 0;
}

/* The cheap checks of a checkpoint file of flen bytes (size, first field,
 * trailer tag), then its body's digest against the trailer, streamed:
 * nothing is allocated for the content of a file that fails them. Fills
 * tail (the trailer) and file_sha (of the whole file). */
static ld_err_t precheck_file(int fd, const char *path, uint64_t flen,
                              uint8_t tail[LD_CKPT_TRAILER],
                              uint8_t file_sha[32], char *errstr, size_t size)
{
    uint8_t head[2];
    if (flen <= LD_CKPT_TRAILER + 2) {
        ld_errstr_set(errstr, size,
                      "%s: checkpoint truncated (%" PRIu64 " bytes)", path,
                      flen);
        return LD_ERR_CORRUPT;
    }
    if (flen > LD_CKPT_MAX_FILE) {
        ld_errstr_set(errstr, size,
                      "%s: %" PRIu64
                      " bytes, larger than any checkpoint (%" PRIu64 " max)",
                      path, flen, (uint64_t)LD_CKPT_MAX_FILE);
        return LD_ERR_CORRUPT;
    }
    size_t body = (size_t)flen - LD_CKPT_TRAILER;
    if (read_at(fd, head, sizeof(head), 0) != 0 ||
        read_at(fd, tail, LD_CKPT_TRAILER, (off_t)body) != 0) {
        ld_errstr_errno(errstr, size, "read", path);
        return LD_ERR_IO;
    }
    if (head[0] != 0x08 || head[1] != LD_CKPT_FORMAT_VERSION) {
        ld_errstr_set(
            errstr, size,
            "%s: not a learnd checkpoint of format %d (starts with %02x %02x)",
            path, LD_CKPT_FORMAT_VERSION, head[0], head[1]);
        return LD_ERR_CORRUPT;
    }
    if (tail[0] != 0x7a || tail[1] != 0x20) {
        ld_errstr_set(errstr, size,
                      "%s: checkpoint has no checksum trailer (truncated?)",
                      path);
        return LD_ERR_CORRUPT;
    }
    ld_sha256_t hb, hf; /* body (the trailer's digest), whole file (its id) */
    ld_sha256_init(&hb);
    ld_sha256_init(&hf);
    enum { BLOCK = 1 << 20 };
    uint8_t *block = malloc(BLOCK);
    if (!block) {
        ld_errstr_set(errstr, size, "%s: out of memory", path);
        return LD_ERR_NOMEM;
    }
    for (size_t off = 0; off < body;) {
        size_t n = body - off < BLOCK ? body - off : BLOCK;
        if (read_at(fd, block, n, (off_t)off) != 0) {
            ld_errstr_errno(errstr, size, "read", path);
            free(block);
            return LD_ERR_IO;
        }
        ld_sha256_update(&hb, block, n);
        ld_sha256_update(&hf, block, n);
        off += n;
    }
    free(block);
    uint8_t dig[32];
    ld_sha256_final(&hb, dig);
    if (memcmp(dig, tail + 2, 32) != 0) {
        ld_errstr_set(errstr, size, "%s: checkpoint checksum mismatch", path);
        return LD_ERR_CORRUPT;
    }
    ld_sha256_update(&hf, tail, LD_CKPT_TRAILER);
    ld_sha256_final(&hf, file_sha);
    return LD_OK;
}

static ld_err_t read_file(const char *path, ld_ckpt_mode_t mode,
                          ld_ckpt_t **out, char *errstr, size_t size)
{
    *out = NULL;
    ld_err_t rc = LD_ERR_CORRUPT;
    uint8_t *buf = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        ld_errstr_errno(errstr, size, "open", path);
        return e == ENOENT ? LD_ERR_NOENT : LD_ERR_IO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        ld_errstr_errno(errstr, size, "stat", path);
        close(fd);
        return LD_ERR_IO;
    }
    if (!S_ISREG(st.st_mode)) {
        ld_errstr_set(errstr, size, "%s: not a regular file", path);
        close(fd);
        return LD_ERR_IO;
    }
    /* Everything cheap first, before a byte is allocated for the content:
     * a 2 GiB file of junk used to be read whole (2.1 GB resident) before
     * it was refused. */
    uint8_t tail[LD_CKPT_TRAILER], file_sha[32];
    uint64_t flen = (uint64_t)st.st_size;
    if ((rc = precheck_file(fd, path, flen, tail, file_sha, errstr, size)))
        goto out;
    size_t len = (size_t)flen, body = len - LD_CKPT_TRAILER;
    /* Intact: now the whole of it, for the protobuf decoder. */
    buf = malloc(len);
    if (!buf) {
        rc = LD_ERR_NOMEM;
        ld_errstr_set(errstr, size, "%s: out of memory for %zu bytes", path,
                      len);
        goto out;
    }
    if (read_at(fd, buf, len, 0) != 0) {
        ld_errstr_errno(errstr, size, "read", path);
        rc = LD_ERR_IO;
        goto out;
    }
    /* The file could change between the two reads: its digest is checked
     * again over what is decoded, and content_sha256 is of those bytes. */
    uint8_t again[32];
    ld_ckpt_sha256(buf, body, again);
    rc = LD_ERR_CORRUPT;
    if (memcmp(again, tail + 2, 32) != 0 || memcmp(buf + body, tail, 2) != 0) {
        ld_errstr_set(errstr, size, "%s: changed while it was read", path);
        goto out;
    }
    char why[300] = "";
    rc = ld_ckpt_decode_as(buf, len, file_sha, mode, out, why, sizeof(why));
    if (rc != LD_OK)
        ld_errstr_set(errstr, size, "%s: %s", path, why);
out:
    free(buf);
    close(fd);
    return rc;
}

ld_err_t ld_ckpt_read_file(const char *path, ld_ckpt_t **out, char *errstr,
                           size_t size)
{
    return read_file(path, LD_CKPT_FULL, out, errstr, size);
}

ld_err_t ld_ckpt_read_file_any(const char *path, ld_ckpt_t **out, char *errstr,
                               size_t size)
{
    return read_file(path, LD_CKPT_ANY, out, errstr, size);
}
