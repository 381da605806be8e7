/* SPDX-License-Identifier: Apache-2.0 */
/* Inside the pipeline: the compiled plan of a Protobuf descriptor decoder
 * that pbdesc.c builds from the FileDescriptorSet and the field mapping and
 * pbdesc_walk.c walks over each record. Not for other stages. */
#ifndef LD_PIPELINE_PBDESC_PLAN_H
#define LD_PIPELINE_PBDESC_PLAN_H

#include <stdint.h>

#include "pipeline/internal.h"
#include "pipeline/pbset.h"

#define MAX_DEPTH  LD_PB_MAX_DEPTH
#define DIRECT_MAX 1024 /* field numbers looked up by direct index */

/* ---- Plans -------------------------------------------------------------- */

enum {
    K_SCALAR, /* a mapped scalar or enum */
    K_LIST,   /* a mapped repeated string, bytes or enum */
    K_MSG,    /* a message with mapped fields below it */
    K_MAP,    /* a map with mapped entries (m.<key>) */
    K_TS,     /* a mapped google.protobuf.Timestamp: milliseconds */
    K_WRAP,   /* a mapped google.protobuf wrapper (DoubleValue, ...) */
    K_SKIP    /* a field of the descriptor that nothing maps */
};

enum {
    OP_GENERIC,
    OP_F32,
    OP_F64,
    OP_STR,
    OP_ENUM,
    OP_LIST_STR,
    OP_SUB, /* K_MSG, K_TS: a length, then the value */
    OP_SKIP_LEN,
    OP_SKIP_VARINT
};

typedef struct mkey {
    const char *key; /* suffix of the slot name after "m." */
    uint32_t n;
    int32_t slot;
} mkey_t;

typedef struct pplan pplan_t;

typedef struct pent {
    uint32_t number;
    uint8_t kind;
    uint8_t type; /* scalar, list item, wrapper or map value type */
    int32_t slot; /* K_SCALAR, K_LIST, K_TS, K_WRAP */
    const denum_t *en;
    pplan_t *sub; /* K_MSG */
    mkey_t *keys; /* K_MAP */
    uint32_t nkeys;
    uint32_t clear_off, clear_n; /* oneof siblings' slots in d->clear */
    /* the fast path of walk(): the field's tag bytes for its wire type
     * (tagn 0: none), and what to do with the value without dispatch */
    uint8_t tag[2], tagn, wt, op;
    /* OP_F32 with a one-byte tag and no oneof: how many such entries run
     * from this one on (at most 255), read by f32_run() from the compact
     * run_tag / run_slot arrays of the plan */
    uint8_t run;
    const char *path;
} pent_t;

struct pplan {
    pent_t *e;
    uint32_t ne;
    uint16_t *direct; /* number -> entry + 1, numbers <= maxno */
    uint32_t maxno;
    uint8_t *run_tag;  /* per entry: its tag byte */
    int32_t *run_slot; /* per entry: its slot */
};

struct ld_pbdesc {
    dset_t set;
    pplan_t **plans; /* every plan, for freeing */
    uint32_t nplans, capplans;
    pplan_t *root;
    char **paths; /* owned entry paths */
    uint32_t npaths, cappaths;
    int32_t *clear;
    uint32_t nclear, capclear;
    ld_fv_t *def; /* per slot: the value when absent (FV_ABSENT: none) */
    int32_t *defslots;
    uint32_t ndefs;
    uint8_t *found;
    const ld_fmap_t *fm;
    uint32_t *index_path; /* Confluent message-index path of the message */
    uint32_t nindex;
    const char *message; /* full name, in set */
    /* a writer schema's decoder (ld_pbdesc_new_writer): the local one,
     * whose field types the writer's must agree with */
    const ld_pbdesc_t *local;
    int32_t local_mi;
};

/* The wire type that a field of descriptor type `type` is encoded with. */
static inline uint8_t wire_of(uint32_t type)
{
    switch (type) {
    case T_DOUBLE:
    case T_FIXED64:
    case T_SFIXED64:
        return LD_PB_WT_FIXED64;
    case T_FLOAT:
    case T_FIXED32:
    case T_SFIXED32:
        return LD_PB_WT_FIXED32;
    case T_STRING:
    case T_BYTES:
    case T_MESSAGE:
        return LD_PB_WT_LEN;
    case T_GROUP:
        return LD_PB_WT_SGROUP;
    default:
        return LD_PB_WT_VARINT;
    }
}

/* Descriptor type names for messages, indexed by T_*. */
extern const char *const ld_pbdesc_type_names[T_SINT64 + 1];

#endif
