/* SPDX-License-Identifier: Apache-2.0 */
/* Inside the daemon's config: the loader state and the error reporting
 * shared by config.c (loading) and config_check.c (cross-key validation).
 * Not for other modules. */
#ifndef LD_DAEMON_CONFIG_LOAD_H
#define LD_DAEMON_CONFIG_LOAD_H

#include <stdio.h>
#include <yaml.h>

#include "daemon/config.h"

/* Where errors go and how many were seen. */
typedef struct loader {
    const char *path;
    FILE *errs;
    int nerr;
    yaml_document_t doc;
    ld_config_t *conf;
    yaml_node_t *experiments; /* the `experiments:` list, for errors */
} loader_t;

/* Counts an error and prints it to ld->errs as path:line:column: key: msg
 * (node NULL: line 1; key NULL: left out). */
void ld_config_report(loader_t *ld, const yaml_node_t *node, const char *key,
                      const char *fmt, ...) LD_PRINTF(4, 5);

static inline const char *ld_config_scalar(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

/* Reports what `run` would refuse that no single key shows (config_check.c). */
void ld_config_validate(loader_t *ld);

#endif
