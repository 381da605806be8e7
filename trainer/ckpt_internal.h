/* SPDX-License-Identifier: Apache-2.0 */
/* Private to the checkpoint codec: what checkpoint.c shares with
 * checkpoint_file.c. */
#ifndef LD_TRAINER_CKPT_INTERNAL_H
#define LD_TRAINER_CKPT_INTERNAL_H

#include "trainer/checkpoint.h"

/* What a decode accepts: a full checkpoint, a head (sparse tensors empty),
 * a delta, or a full checkpoint or a delta. */
typedef enum {
    LD_CKPT_FULL,
    LD_CKPT_HEAD,
    LD_CKPT_DELTA,
    LD_CKPT_ANY
} ld_ckpt_mode_t;

/* ld_ckpt_decode for mode; file_sha, when not NULL, is the SHA-256 of the
 * file the bytes came from. Thread: any. */
ld_err_t ld_ckpt_decode_as(const uint8_t *buf, size_t len,
                           const uint8_t *file_sha, ld_ckpt_mode_t mode,
                           ld_ckpt_t **out, char *errstr, size_t size) LD_WUR;

#endif
