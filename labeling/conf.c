/* SPDX-License-Identifier: Apache-2.0 */
/* The `labeling:` config table: one row per key, read by the YAML loader,
 * `learnd config check` and the generated docs/CONFIGURATION.md. */
#include <stddef.h>

#include "labeling/labeling.h"

#define DAY_MS (86400.0 * 1000.0)
#define OFF(f) offsetof(ld_labeling_conf_t, f)

static const ld_conf_row_t rows[] = {
    {"window", LD_CONF_DURATION, OFF(window_ms), "30m", 1, 7 * DAY_MS, NULL,
     "event time an event waits for its labels (inclusive)"},
    {"max_out_of_orderness", LD_CONF_DURATION, OFF(max_ooo_ms), "5s", 0, DAY_MS,
     NULL, "watermark lag behind the newest event time seen on a partition"},
    {"idle_timeout", LD_CONF_DURATION, OFF(idle_timeout_ms), "30s", 0, DAY_MS,
     NULL, "no record for this long advances a partition's watermark; 0 never"},
    {"late_horizon", LD_CONF_DURATION, OFF(late_horizon_ms), "1h", 0,
     7 * DAY_MS, NULL,
     "how long after its window an event is kept for late labels"},
    {"aggregate", LD_CONF_ENUM, OFF(aggregate), "first", 0, 0,
     "first|last|max|sum", "how several labels inside the window combine"},
    {"default_label", LD_CONF_DOUBLE, OFF(default_label), "0", -1e30, 1e30,
     NULL, "label of an event whose window closes without a label"},
    {"mode", LD_CONF_ENUM, OFF(mode), "window", 0, 0, "window|fake_negative",
     "wait for the window, or emit a fake negative at once"},
    {"late_policy", LD_CONF_ENUM, OFF(late_policy), "drop", 0, 0,
     "drop|correct",
     "labels after the window: count them, or emit a delayed_pos copy"},
    {"max_pending", LD_CONF_INT, OFF(max_pending), "2000000", 16, 1e9, NULL,
     "pending events plus labels before at_bound applies"},
    {"at_bound", LD_CONF_ENUM, OFF(at_bound), "pause", 0, 0,
     "expire_oldest|pause",
     "at max_pending: evict the oldest (breaks determinism) or pause"},
    {"output_topic", LD_CONF_STRING, OFF(output_topic), "", 0, 0, NULL,
     "audit topic for every labelled example; empty for none"},
    {"output_format", LD_CONF_ENUM, OFF(output_format), "protobuf", 0, 0,
     "protobuf|json", "encoding of audit records"},
};

const ld_conf_section_t ld_labeling_conf_section = {
    "labeling", "windowed join of delayed labels (docs/LABELING.md)",
    LD_CONF_ROWS(rows)};
