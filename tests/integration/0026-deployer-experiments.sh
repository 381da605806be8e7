#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The example deployer acting on experiment events (issue #20) against the
# real broker: learnd's own encoder output (a PROMOTE decision and routing
# weights, JSON, written by test_experiments) and a protobuf ROLLBACK, with
# repeats, on a triggers topic. PROMOTE serves the treatment, ROLLBACK the
# control, newer weights replace routing.json and older ones do not; a
# second run from the beginning changes nothing.
#
# Usage: 0026-deployer-experiments.sh VENV_DIR EVENTS_DIR
set -euo pipefail
venv=$1
events=$2
bs=${LD_TEST_BOOTSTRAP:?}
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/ld-0026.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$src/examples/deployer/setup.sh" "$venv" "$work/gen" >/dev/null
py() { PYTHONPATH=$work/gen "$venv/bin/python" "$@"; }
topic="ld-0026-$$-$RANDOM.triggers"

py - "$bs" "$topic" "$events" <<'PY'
import json, sys
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
import learnd_pb2
bs, topic, events = sys.argv[1:4]
admin = AdminClient({"bootstrap.servers": bs})  # alive until the result
admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
d = open(events + "/valid-decision.json", "rb").read()
w1 = json.load(open(events + "/valid-weights.json"))
w2 = dict(w1, seq=2, idempotency_key="bd/weights/2",
          arms=[dict(a, weight=1 - a["weight"]) for a in w1["arms"]])
pb = learnd_pb2.ExperimentDecision(
    experiment="pb", verdict=learnd_pb2.EXPERIMENT_VERDICT_ROLLBACK,
    type=learnd_pb2.EXPERIMENT_TYPE_CANARY, reason="guard_calibration",
    idempotency_key="pb/decision/1", seq=1, schema_version=1,
    arms=[learnd_pb2.ExperimentArm(variant="stable", n=5000),
          learnd_pb2.ExperimentArm(variant="canary", n=1200)])
p = Producer({"bootstrap.servers": bs})
for key, val in [("ab/decision/1", d), ("ab/decision/1", d),
                 ("bd/weights/2", json.dumps(w2).encode()),
                 ("bd/weights/1", json.dumps(w1).encode()),
                 ("pb/decision/1", pb.SerializeToString()),
                 ("bd/weights/2", json.dumps(w2).encode())]:
    p.produce(topic, key=key, value=val)
p.flush(30)
PY

deploy() {
    py "$src/examples/deployer/deployer.py" --bootstrap "$bs" --topic "$topic" \
        --models-dir "$work/models" --group "g-$1" --once --from-beginning \
        > "$work/$1.log" 2>&1 || { cat "$work/$1.log"; exit 1; }
}
deploy first
fail() { echo "FAIL: $*"; cat "$work/first.log"; exit 1; }
[ "$(cat "$work/models/experiments/ab/serving")" = treatment ] \
    || fail "PROMOTE did not serve the treatment"
[ "$(cat "$work/models/experiments/pb/serving")" = stable ] \
    || fail "protobuf ROLLBACK did not serve the control"
"$venv/bin/python" - "$work/models/experiments/bd/routing.json" <<'PY' \
    || fail "routing.json is not weights seq 2"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["seq"] == 2, r
assert abs(r["weights"]["control"] - 0.99) < 1e-9, r
assert abs(r["weights"]["treatment"] - 0.01) < 1e-9, r
PY
grep -q 'msg=stopped.*duplicate=2.*promote=1.*rollback=1.*routed=1.*stale=1' \
    "$work/first.log" || fail "counts of the first run"
before=$(cat "$work/models/experiments/"*/* | sha256sum)
deploy second
grep -q 'msg=stopped duplicate=6' "$work/second.log" \
    || { cat "$work/second.log"; echo "FAIL: second run acted"; exit 1; }
[ "$(cat "$work/models/experiments/"*/* | sha256sum)" = "$before" ] \
    || { echo "FAIL: second run changed files"; exit 1; }
echo "ok: 6 events, 2 duplicates, promote, rollback, weights; rerun idempotent"
