#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Stops the test broker that start.sh started in OUTDIR: SIGTERM (a clean
# controlled shutdown), then SIGKILL after LD_TEST_BROKER_STOP_TIMEOUT seconds
# (default 30). Removes the data dir and the address; keeps broker.log.
#
# --kill crashes it instead: SIGKILL at once (no controlled shutdown, no
# flush, no clean-shutdown marker), and keeps the data dir, server.properties
# and the address, so that `start.sh --again OUTDIR` brings the same broker
# back on the same data and ports. For tests of a broker restart (0007).
#
# Usage: stop.sh [--kill] OUTDIR
set -euo pipefail

crash=0
if [ "${1:-}" = "--kill" ]; then
    crash=1
    shift
fi
if [ $# -ne 1 ]; then
    echo "usage: $0 [--kill] OUTDIR" >&2
    exit 2
fi
if [ ! -d "$1" ]; then
    echo "stop.sh: $1 does not exist: nothing to stop" >&2
    exit 0
fi
outdir=$(cd "$1" && pwd)
pidfile=$outdir/broker.pid
grace_s=${LD_TEST_BROKER_STOP_TIMEOUT:-30}

say() { echo "stop.sh: $*" >&2; }

# The pid is ours only while its command line still names our
# server.properties: after a reboot or a long pause it may be someone else's.
ours() {
    [ -r "/proc/$1/cmdline" ] &&
        tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF "$outdir/server.properties"
}

alive() { kill -0 "$1" 2>/dev/null; }

if [ "$crash" -eq 1 ]; then
    pid=$(cat "$pidfile" 2>/dev/null || true)
    if [ -z "$pid" ] || ! alive "$pid" || ! ours "$pid"; then
        say "--kill: no running broker of $outdir to kill"
        exit 1
    fi
    # The whole group (see below): the JVM must die now, like a crash.
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid"
    while alive "$pid"; do sleep 0.05; done
    # The JVM may outlive the group leader by a moment: wait until nothing
    # of the broker holds its data dir's lock any more.
    while pgrep -f -- "$outdir/server.properties" >/dev/null; do sleep 0.05; done
    rm -f "$pidfile"
    say "broker (pid $pid) killed with SIGKILL; data kept in $outdir/data"
    exit 0
fi

if [ -s "$pidfile" ]; then
    pid=$(cat "$pidfile")
    if alive "$pid" && ours "$pid"; then
        # The pid leads its own process group (setsid in start.sh): signal the
        # group so the JVM gets the signal even if timeout(1) is gone.
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        end=$(( $(date +%s) + grace_s ))
        while alive "$pid" && [ "$(date +%s)" -lt "$end" ]; do
            sleep 0.2
        done
        if alive "$pid"; then
            say "broker (pid $pid) still up after ${grace_s}s: SIGKILL"
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
            while alive "$pid"; do sleep 0.1; done
        fi
        say "broker (pid $pid) stopped; log kept at $outdir/broker.log"
    else
        say "broker (pid $pid) not running"
    fi
elif [ -n "${LD_TEST_BOOTSTRAP:-}" ]; then
    say "external broker ($LD_TEST_BOOTSTRAP): left running"
else
    say "no broker.pid in $outdir: nothing to stop"
fi
rm -f "$pidfile" "$outdir/bootstrap"
rm -rf "$outdir/data"
