#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# learnd vs Vowpal Wabbit vs River on the same synthetic stream (40 hashed
# categorical features, logistic loss, FTRL where available). Installs
# vowpalwabbit and river from PyPI into a venv under the build directory.
# Usage: compare_vw_river.sh BENCH_TRAINER OUTDIR   (env N = examples)
set -eu
BENCH=$1
OUT=$2
N=${N:-300000}
RIVER_N=${RIVER_N:-20000}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT"
if [ ! -x "$OUT/venv/bin/python" ]; then
  python3 -m venv "$OUT/venv"
  "$OUT/venv/bin/pip" install -q vowpalwabbit river
fi
"$BENCH" --n "$N" --write-vw "$OUT/stream.vw" --write-river "$OUT/stream.txt"
"$BENCH" --n "$N" --learn-only | tee "$OUT/learnd.txt"
"$OUT/venv/bin/python" "$HERE/compare_vw_river.py" "$OUT" "$RIVER_N"
