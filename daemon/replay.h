/* SPDX-License-Identifier: Apache-2.0 */
/* `learnd replay`: rebuild a published model from its input and compare. */
#ifndef LD_DAEMON_REPLAY_H
#define LD_DAEMON_REPLAY_H

#include <stddef.h>

/* argv[0] is "replay". Returns the exit code: 0 replayed (and, with
 * --verify, identical), 1 different or the replay failed, 2 usage or
 * config error. */
int ld_cmd_replay(int argc, char **argv);

struct ld_config;

/* The file a --checkpoint argument names: all digits, that version in the
 * config's model store; else a path as given. Returns 1 for a version. */
int ld_replay_ckpt_path(const struct ld_config *conf, const char *which,
                        char *file, size_t size);

#endif /* LD_DAEMON_REPLAY_H */
