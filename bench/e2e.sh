#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Builds and runs bench_e2e (docs/ARCHITECTURE.md, "Performance targets": the whole daemon vs a raw
# consume of the same topics) against the real test broker of tests/kafka/
# (started here on loopback and stopped at the end; the broker's own CPU is
# reported too), or with --mock on librdkafka's in-process mock cluster.
# With --perf, records a cpu-clock profile of the measured part and prints
# where the loop thread's time goes, per source file of learnd (no frame
# pointers needed).
#
# usage: bench/e2e.sh [--perf] [--mock] [BUILD_DIR] [-- bench_e2e args...]
#   BUILD_DIR defaults to build-e2e next to this script's repository.
#   LD_TEST_BOOTSTRAP=HOST:PORT uses a broker that is already running.
#   Example: bench/e2e.sh --perf -- --bits 18 --repeats 1 --only daemon
#
# The "few partitions, real writes" profile (issue #18; bench_e2e.c, "few
# partitions"): learnd binaries as processes on 4 + 4 partitions with
# transactions, commit points every 2 s, a publication every 40 000
# examples, without and with a protobuf audit topic, replay --verify, and a
# raw consume of the same topics, in one run; several binaries alternate
# (old and new), then the loop's longest stall in process:
#   bench/e2e.sh -- --profile few --partitions 4 --events 400000 \
#       --bits 18,22 --repeats 2 --learnd OLD/learnd,build-e2e/daemon/learnd
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
perf=0
mock=0
build="$here/build-e2e"
while [ $# -gt 0 ]; do
    case "$1" in
    --perf) perf=1 ;;
    --mock) mock=1 ;;
    --) shift; break ;;
    *) build="$1" ;;
    esac
    shift
done

cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j2 --target bench_e2e >/dev/null

cleanup=:
if [ "$mock" = 0 ]; then
    if [ -n "${LD_TEST_BOOTSTRAP:-}" ]; then
        boot=$LD_TEST_BOOTSTRAP
    else
        kdir=$(mktemp -d /tmp/bench-e2e-broker.XXXXXX)
        cleanup="$here/tests/kafka/stop.sh $kdir >/dev/null 2>&1; rm -rf $kdir"
        trap 'eval "$cleanup"' EXIT INT TERM
        boot=$("$here/tests/kafka/start.sh" "$kdir")
        # broker.pid names the timeout(1) wrapper; its child is the JVM.
        jvm=$(pgrep -P "$(cat "$kdir/broker.pid")" java || true)
        [ -n "$jvm" ] && export BENCH_E2E_BROKER_PID="$jvm"
    fi
    set -- --bootstrap "$boot" "$@"
fi
echo "load: $(cat /proc/loadavg)  cores: $(nproc)"
if [ "$perf" = 0 ]; then
    "$build/bench/bench_e2e" "$@"
    exit
fi

data=$(mktemp /tmp/bench-e2e-perf.XXXXXX)
map=$(mktemp /tmp/bench-e2e-syms.XXXXXX)
cleanup="$cleanup; rm -f $data $map"
trap 'eval "$cleanup"' EXIT INT TERM
# Skip generation and topic fill (a few seconds) with -D.
perf record -q -D 6000 -e cpu-clock -o "$data" "$build/bench/bench_e2e" "$@"
for a in $(find "$build" -name 'libld_*.a'); do
    nm -A --defined-only "$a" 2>/dev/null
done | awk '{ split($1, p, ":"); print $NF, p[2] }' | sort -u >"$map"
echo
echo "== share of all samples by thread =="
perf report -i "$data" --stdio --no-children --sort comm 2>/dev/null |
    grep -E '^ +[0-9]' | head -8
echo
echo "== loop thread (comm bench_e2e) by learnd object file / library =="
perf report -i "$data" --stdio --no-children --comm bench_e2e \
    --sort dso,sym 2>/dev/null | grep -E '^ +[0-9]' |
    awk 'NR == FNR { m[$1] = $2; next }
         { pct = $1; sub("%", "", pct); o = ($4 in m) ? m[$4] : $2;
           s[o] += pct }
         END { for (k in s) printf "%6.2f%%  %s\n", s[k], k }' "$map" - |
    sort -rn | head -20
echo
echo "== top symbols =="
perf report -i "$data" --stdio --no-children --comm bench_e2e \
    --sort dso,sym 2>/dev/null | grep -E '^ +[0-9]' | head -30
