/* SPDX-License-Identifier: Apache-2.0 */
/* Signal handling: SIGTERM/SIGINT ask for a clean stop, SIGHUP for reopened
 * logs; the run loop polls the flags. */
#ifndef LD_DAEMON_SIGNALS_H
#define LD_DAEMON_SIGNALS_H

/* Installs the handlers (SA_RESTART) and ignores SIGPIPE. Returns 0, or -1
 * with errno set. */
int ld_signals_install(void);

/* The signal that asked for a stop (SIGTERM or SIGINT), or 0. */
int ld_signals_stop_requested(void);

/* True once after each SIGHUP (the flag is cleared by the call). */
int ld_signals_take_reopen(void);

/* Asks for a stop from inside the program (tests, fatal errors). */
void ld_signals_request_stop(int sig);

#endif /* LD_DAEMON_SIGNALS_H */
