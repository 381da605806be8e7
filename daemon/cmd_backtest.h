/* SPDX-License-Identifier: Apache-2.0 */
/* `learnd backtest` and `learnd freshness`: score checkpoints and deployed
 * copies refreshed at cadences on an event-time range of the input topics;
 * and `learnd demo --freshness`, the same on the demo stream. */
#ifndef LD_DAEMON_CMD_BACKTEST_H
#define LD_DAEMON_CMD_BACKTEST_H

#include "daemon/config.h"
#include "daemon/demo.h"

/* argv[0] is "backtest" or "freshness". Returns the exit code: 0 done, 1
 * runtime failure (unreadable or corrupt checkpoint, Kafka, a range that
 * retention deleted), 2 usage or config error (bad time, duration or
 * cadence, T1 <= T0, a checkpoint of another model or feature map). */
int ld_cmd_backtest(int argc, char **argv);

/* `learnd demo --freshness`: the freshness experiment on n events of the
 * demo generator (gconf, borrowed), decoded with conf's (the demo config's)
 * decoders and fed to the engine without a broker; prints the cadence
 * table; writes the JSON and SVG when json_path / svg_path are set.
 * Returns the exit code. */
int ld_demo_freshness(const ld_config_t *conf, const ld_demo_gen_conf_t *gconf,
                      const char *json_path, const char *svg_path);

#endif /* LD_DAEMON_CMD_BACKTEST_H */
