#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The cost of `learnd freshness` (issue #19): freshness with five cadences
# (0, 10m, 1h, 6h, 1d) against a plain `learnd replay` of the same range,
# side by side in one run, at hash_bits 20 and 22, on the test broker of
# tests/kafka/ (started here on loopback, stopped at the end). Prints
# examples/s of each and the bytes each cadence's scoring copy holds. The
# input is the demo stream (`learnd demo --bootstrap`, N events, default
# 600000), trained once by `learnd run --until-caught-up` so that replay has
# a version to rebuild. Text only, never a pass/fail test.
#
# usage: bench/freshness.sh [BUILD_DIR] [EVENTS]
#   LD_TEST_BOOTSTRAP=HOST:PORT uses a broker that is already running.
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-"$here/build"}
events=${2:-600000}
learnd="$build/daemon/learnd"
[ -x "$learnd" ] || { echo "no $learnd: build first (make build)"; exit 2; }

work=$(mktemp -d /tmp/bench-freshness.XXXXXX)
cleanup="rm -rf $work"
trap 'eval "$cleanup"' EXIT INT TERM
if [ -n "${LD_TEST_BOOTSTRAP:-}" ]; then
    boot=$LD_TEST_BOOTSTRAP
else
    kdir="$work/broker"
    mkdir -p "$kdir"
    cleanup="$here/tests/kafka/stop.sh $kdir >/dev/null 2>&1; $cleanup"
    boot=$("$here/tests/kafka/start.sh" "$kdir")
fi
echo "load: $(cat /proc/loadavg)  cores: $(nproc)  broker: $boot"

# The stream: events and labels, event times ending a minute ago.
"$learnd" demo --bootstrap "$boot" --events "$events" >"$work/demo.log" 2>&1 ||
    { tail -20 "$work/demo.log"; exit 1; }
now_ms=$(($(date +%s) * 1000))
from=$((now_ms - 2 * 86400000))
to=$((now_ms + 3600000))

config() { # config BITS
    cat <<EOF2
kafka:
  bootstrap.servers: $boot
daemon:
  transactional_id: bench-fresh-$1
  state_topic: learnd.state
  checkpoint_topic: learnd.checkpoints
  trigger_topic: learnd.triggers
log:
  level: warn
metrics:
  enabled: false
pipeline:
  events_topic: events
  labels_topic: labels
  dlq_topic: learnd.dlq
  group_id: bench-fresh-$1
  format: avro
  event_schema: $here/schemas/event.avsc
  label_schema: $here/schemas/label.avsc
  key_field: event_id
  event_time_field: event_time
  label_time_field: label_time
  dense_fields: [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9,
                 f10, f11, f12, f13, f14, f15, f16, f17, f18, f19]
  hash_fields: [country, ad_id, device, "ctx:publisher", "ctx:tags",
                "user:user_segment"]
  crosses: [[country, ad_id]]
  label_field: clicked
labeling:
  window: 60s
  max_out_of_orderness: 1s
  idle_timeout: 0
trainer:
  name: bench-fresh-$1
  hash_bits: $1
checkpoint:
  dir: $work/models
triggers:
  time_enabled: false
  performance_enabled: false
  drift_enabled: false
  gate_enabled: false
  volume_examples: 1000000000
EOF2
}

secs() { # secs COMMAND...: wall seconds of COMMAND (output to $work/cmd.log)
    t0=$(date +%s.%N)
    "$@" >"$work/cmd.log" 2>&1 || { tail -20 "$work/cmd.log"; exit 1; }
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
}

printf '%-6s %-28s %10s %12s %14s\n' bits what seconds examples/s bytes/cadence
for bits in 20 22; do
    cfg="$work/bits$bits.yaml"
    config "$bits" >"$cfg"
    "$learnd" run -c "$cfg" --until-caught-up --from-scratch \
        >"$work/run$bits.log" 2>&1 || { tail -20 "$work/run$bits.log"; exit 1; }
    for round in 1 2; do
        r=$(secs "$learnd" replay -c "$cfg" --checkpoint 1 --verify)
        f=$(secs "$learnd" freshness -c "$cfg" -q --from "$from" --to "$to" \
            --cadence 0,10m,1h,6h,1d --json "$work/f.json")
        n=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['counts']['trained'])" "$work/f.json")
        b=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['counts']['bytes_per_copy'])" "$work/f.json")
        printf '%-6s %-28s %10.2f %12.0f %14s\n' "$bits" "replay (round $round)" "$r" \
            "$(echo "$n / $r" | bc -l)" -
        printf '%-6s %-28s %10.2f %12.0f %14s\n' "$bits" "freshness x5 (round $round)" "$f" \
            "$(echo "$n / $f" | bc -l)" "$b"
        printf '%-6s %-28s %10.2f\n' "$bits" "ratio freshness/replay" \
            "$(echo "$f / $r" | bc -l)"
    done
done
