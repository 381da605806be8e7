/* SPDX-License-Identifier: Apache-2.0 */
/* Descriptions of ld_err_t values and the errstr formatters. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/common.h"

const char *ld_err_str(ld_err_t err)
{
    switch (err) {
    case LD_OK:
        return "success";
    case LD_ERR_NOMEM:
        return "out of memory";
    case LD_ERR_INVAL:
        return "invalid argument";
    case LD_ERR_IO:
        return "I/O error";
    case LD_ERR_CORRUPT:
        return "corrupt or truncated data";
    case LD_ERR_CONFIG:
        return "configuration error";
    case LD_ERR_KAFKA:
        return "Kafka error";
    case LD_ERR_NOENT:
        return "not found";
    case LD_ERR_RANGE:
        return "value out of range";
    case LD_ERR_DECODE:
        return "record could not be decoded";
    case LD_ERR_TIMEOUT:
        return "timed out";
    case LD_ERR_FENCED:
        return "fenced by another instance";
    case LD_ERR_FULL:
        return "full";
    case LD_ERR__END:
        break;
    }
    return "unknown error";
}

void ld_errstr_set(char *errstr, size_t size, const char *fmt, ...)
{
    if (!errstr || !size)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr, size, fmt, ap);
    va_end(ap);
}

/* Every store failure names the operation and the path, with errno's
 * text: "write /var/lib/learnd/ctr/.12.ckpt.tmp.41: No space left on
 * device", not "I/O error" (issue 15: a full or read-only disk must be
 * recognisable from the log line alone). errno is kept for the caller. */
void ld_errstr_errno(char *errstr, size_t size, const char *op,
                     const char *path)
{
    int e = errno;
    ld_errstr_set(errstr, size, "%s %s: %s", op, path, strerror(e));
    errno = e;
}
