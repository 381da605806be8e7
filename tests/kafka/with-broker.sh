#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs one integration test against the test broker: exports
# LD_TEST_BOOTSTRAP (kept if already set, else read from OUTDIR/bootstrap,
# which start.sh wrote), LD_TEST_BROKER_LOG and LD_TEST_BROKER_DIR (OUTDIR,
# for stop.sh --kill and start.sh --again), runs the command, and when it
# fails prints what the broker logged while it ran.
#
# Usage: with-broker.sh OUTDIR cmd [args...]
set -uo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 OUTDIR cmd [args...]" >&2
    exit 2
fi
outdir=$1
shift
log=$outdir/broker.log

if [ -z "${LD_TEST_BOOTSTRAP:-}" ]; then
    if [ ! -s "$outdir/bootstrap" ]; then
        echo "with-broker.sh: no $outdir/bootstrap: the kafka_start fixture" \
             "did not run or failed (or set LD_TEST_BOOTSTRAP)" >&2
        exit 1
    fi
    LD_TEST_BOOTSTRAP=$(cat "$outdir/bootstrap")
fi
export LD_TEST_BOOTSTRAP
export LD_TEST_BROKER_LOG=$log
LD_TEST_BROKER_DIR=$(cd "$outdir" && pwd)
export LD_TEST_BROKER_DIR

# Where the broker log stood when the test started, to show only its part.
start_bytes=0
[ -f "$log" ] && start_bytes=$(stat -c %s "$log")

"$@"
rc=$?
if [ "$rc" -ne 0 ]; then
    echo "with-broker.sh: '$*' exited $rc (LD_TEST_BOOTSTRAP=$LD_TEST_BOOTSTRAP)" >&2
    if [ -f "$log" ]; then
        echo "---- broker log during the test (last 80 lines; full log: $log) ----" >&2
        tail -c "+$((start_bytes + 1))" "$log" | tail -n 80 >&2
        echo "---- end of broker log ----" >&2
    fi
fi
exit "$rc"
