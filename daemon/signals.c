/* SPDX-License-Identifier: Apache-2.0 */
/* Async-signal-safe flags set by handlers and read by the run loop. */
#include "daemon/signals.h"

#include <signal.h>
#include <stddef.h>

static volatile sig_atomic_t stop_sig;
static volatile sig_atomic_t reopen;

static void on_stop(int sig)
{
    if (!stop_sig)
        stop_sig = sig;
}

static void on_hup(int sig)
{
    (void)sig;
    reopen = 1;
}

int ld_signals_install(void)
{
    struct sigaction sa = {0};
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sa.sa_handler = on_stop;
    if (sigaction(SIGTERM, &sa, NULL) || sigaction(SIGINT, &sa, NULL))
        return -1;
    sa.sa_handler = on_hup;
    if (sigaction(SIGHUP, &sa, NULL))
        return -1;
    sa.sa_handler = SIG_IGN;
    return sigaction(SIGPIPE, &sa, NULL);
}

int ld_signals_stop_requested(void)
{
    return (int)stop_sig;
}

int ld_signals_take_reopen(void)
{
    if (!reopen)
        return 0;
    reopen = 0;
    return 1;
}

void ld_signals_request_stop(int sig)
{
    on_stop(sig);
}
