/* SPDX-License-Identifier: Apache-2.0 */
/* `learnd inspect FILE [--json]`: print a checkpoint's spec, version,
 * parent, lineage, metrics and hashes, or refuse a corrupt file. */
#ifndef LD_DAEMON_CMD_INSPECT_H
#define LD_DAEMON_CMD_INSPECT_H

/* argv[0] is the verb ("inspect"); the rest are its arguments: FILE, and
 * --json for one JSON object on stdout instead of text. Errors go to
 * stderr. Returns the process exit code: 0 ok, 1 corrupt or unreadable
 * file, 2 usage error. */
int ld_cmd_inspect(int argc, char **argv);

#endif /* LD_DAEMON_CMD_INSPECT_H */
