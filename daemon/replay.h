/* SPDX-License-Identifier: Apache-2.0 */
/* `learnd replay`: rebuild a published model from its input and compare. */
#ifndef LD_DAEMON_REPLAY_H
#define LD_DAEMON_REPLAY_H

/* argv[0] is "replay". Returns the exit code: 0 replayed (and, with
 * --verify, identical), 1 different or the replay failed, 2 usage or
 * config error. */
int ld_cmd_replay(int argc, char **argv);

#endif /* LD_DAEMON_REPLAY_H */
