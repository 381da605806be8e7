#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# learnd's default config vs Vowpal Wabbit and River: progressive logloss,
# AUC and examples/s on several streams (bench/quality.py); learnd's
# examples/s include decoding its input, Avro (the production decoder) and
# JSON. Installs vowpalwabbit and river from PyPI into a venv under OUTDIR
# once.
# Usage: quality.sh BENCH_QUALITY OUTDIR   (env N = examples per generated
# stream, default 100000; LEARND_SET="key=value ..." overrides trainer keys;
# REPEAT = timing runs of learnd and VW, best kept, default 3)
set -eu
BENCH=$1
OUT=$2
N=${N:-100000}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT"
if [ ! -x "$OUT/venv/bin/python" ]; then
  python3 -m venv "$OUT/venv"
  "$OUT/venv/bin/pip" install -q vowpalwabbit river
fi
OPENBLAS_NUM_THREADS=1 "$OUT/venv/bin/python" "$HERE/quality.py" "$BENCH" \
  "$OUT" "$N"
