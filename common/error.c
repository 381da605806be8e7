/* SPDX-License-Identifier: Apache-2.0 */
/* Descriptions of ld_err_t values. */
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
