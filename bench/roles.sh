#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Runs bench_roles (the join and train roles against raw consumes of their
# inputs, and the latency the examples topic adds) against the real test
# broker of tests/kafka/, started here on loopback and stopped at the end
# (or LD_TEST_BOOTSTRAP=HOST:PORT, a broker already running).
#
# usage: bench/roles.sh [BUILD_DIR] [-- bench_roles args...]
#   Example: bench/roles.sh build -- --events 200000 --repeats 2 \
#       --commit-interval 1s --rate 20000 --seconds 20
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
build="$here/build"
while [ $# -gt 0 ]; do
    case "$1" in
    --) shift; break ;;
    *) build="$1" ;;
    esac
    shift
done
cmake --build "$build" -j2 --target bench_roles >/dev/null
if [ -z "${LD_TEST_BOOTSTRAP:-}" ]; then
    kdir=$(mktemp -d /tmp/bench-roles-broker.XXXXXX)
    trap '"$here/tests/kafka/stop.sh" "$kdir" >/dev/null 2>&1; rm -rf "$kdir"' EXIT INT TERM
    LD_TEST_BOOTSTRAP=$("$here/tests/kafka/start.sh" "$kdir")
    export LD_TEST_BOOTSTRAP
fi
echo "load: $(cat /proc/loadavg)  cores: $(nproc)"
"$build/bench/bench_roles" "$@"
