#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Experiment events against schemas/experiment.schema.json: those the
# encoder wrote (test_experiments) must pass, the committed invalid ones
# (tests/data/schemas/experiment-invalid-*.json) must each fail.
# usage: experiment_schema.sh PYTHON SCHEMA_DIR EVENTS_DIR FIXTURE_DIR
set -u
py=$1 schemas=$2 events=$3 fixtures=$4
v="$py $schemas/validate_trigger.py $schemas/experiment.schema.json"
n=0
for f in "$events"/*.json; do
    [ -e "$f" ] || { echo "no events in $events"; exit 1; }
    $v "$f" || { echo "FAIL: $f should be valid"; exit 1; }
    n=$((n + 1))
done
m=0
for f in "$fixtures"/experiment-invalid-*.json; do
    [ -e "$f" ] || { echo "no invalid fixtures in $fixtures"; exit 1; }
    if $v "$f" >/dev/null 2>&1; then
        echo "FAIL: $f should be invalid"
        exit 1
    fi
    m=$((m + 1))
done
echo "$n valid, $m invalid as expected"
