#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# What Kafka's record compression would save on the state topic (issue
# #18): `bench_trainer --state BITS N --state-dump DIR` writes the records
# of formats 4 and 3 (keys and values, commits after the first) as
# producer batches (<= 1 MB, <= 10 000 records: librdkafka's batch.size
# and batch.num.messages; a producer compresses a batch as a whole); this
# compresses each batch with lz4 (level 1, librdkafka's lz4 default) and
# zstd (level 3, librdkafka's zstd default) and prints raw and compressed
# bytes per format, with the CPU time of each codec. Text only, never a
# pass/fail test.
#
# usage: bench/state_compress.sh [BUILD_DIR] [BITS] [EXAMPLES_PER_COMMIT] [N]
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-"$here/build"}
bits=${2:-22}
every=${3:-50000}
n=${4:-1000000}
command -v zstd >/dev/null && command -v lz4 >/dev/null ||
  { echo "needs the zstd and lz4 command-line tools"; exit 2; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/f4" "$dir/f3"
"$build/bench/bench_trainer" --n "$n" --state "$bits" "$every" \
  --state-dump "$dir" | grep '^state'

# Sums a codec's output over every batch of one format; prints bytes and
# the codec's CPU seconds (user + sys, /usr/bin/time over the whole loop).
sum() { # codec-command format
  local out
  out=$(/usr/bin/time -f "%U %S" bash -c '
    total=0
    for f in "$2"/batch-*; do
      total=$((total + $($1 <"$f" | wc -c)))
    done
    echo "$total"' _ "$1" "$dir/$2" 2>&1)
  echo "$out" | tr '\n' ' ' | awk '{printf "%d %.2f\n", $1, $2 + $3}'
}
for fmt in f4 f3; do
  raw=$(cat "$dir/$fmt"/batch-* | wc -c)
  nb=$(ls "$dir/$fmt" | wc -l)
  set -- $(sum "lz4 -1 -c" $fmt)
  lz=$1 lzt=$2
  set -- $(sum "zstd -3 -c" $fmt)
  zs=$1 zst=$2
  awk -v f="$fmt" -v raw="$raw" -v nb="$nb" -v lz="$lz" -v zs="$zs" \
      -v lzt="$lzt" -v zst="$zst" 'BEGIN {
    printf "format %s: %d batches, %.1f MB raw; lz4 %.1f MB (%.1f %%, %.2f s cpu), zstd %.1f MB (%.1f %%, %.2f s cpu)\n",
      substr(f, 2), nb, raw / 1e6, lz / 1e6, 100 * lz / raw, lzt,
      zs / 1e6, 100 * zs / raw, zst }'
done
