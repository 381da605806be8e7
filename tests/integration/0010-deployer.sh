#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The example deployer (examples/deployer/) against the real broker: after
# `learnd demo --bootstrap`, it deploys exactly the checkpoints that PASS
# trigger events announced, byte for byte what learnd wrote to its local
# store (hashes as `learnd inspect --json` reports them); a second run from
# the beginning writes nothing; an event whose hash does not match the
# manifest is refused and writes nothing.
#
# Usage: 0010-deployer.sh LEARND VENV_DIR   (LD_TEST_BOOTSTRAP set by
# with-broker.sh). The demo's topic names are fixed, so ctest runs this under
# RESOURCE_LOCK learnd_demo_topics; each demo run trains a model of its own
# (demo-ctr-<run id>), and only that model's trigger events count here.
set -euo pipefail

if [ $# -ne 2 ] || [ -z "${LD_TEST_BOOTSTRAP:-}" ]; then
    echo "usage: LD_TEST_BOOTSTRAP=HOST:PORT $0 LEARND VENV_DIR" >&2
    exit 2
fi
learnd=$1
venv=$2
bs=$LD_TEST_BOOTSTRAP
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
deployer=$src/examples/deployer/deployer.py
py=/usr/bin/python3  # for the test's own JSON checks: stdlib only

work=$(mktemp -d "${TMPDIR:-/tmp}/ld-0010.XXXXXX")
kept=""
cleanup() { rm -rf "$work"; [ -z "$kept" ] || rm -rf "$(dirname "$kept")"; }
trap cleanup EXIT

fails=0
passes=0
check() { # check DESCRIPTION COMMAND...
    if "${@:2}"; then
        passes=$((passes + 1)); echo "ok: $1"
    else
        fails=$((fails + 1)); echo "FAIL: $1" >&2
    fi
}
fatal() { echo "FAIL: $*" >&2; echo "$passes passed, $((fails + 1)) failed"; exit 1; }

# ---- The deployer's venv and learnd_pb2 generated from learnd.proto ----------
"$src/examples/deployer/setup.sh" "$venv" "$work/gen" \
    || fatal "examples/deployer/setup.sh (pip needs the package index)"
deploy() { PYTHONPATH=$work/gen "$venv/bin/python" "$deployer" --bootstrap "$bs" "$@"; }

# ---- A demo run publishes checkpoints and trigger events -------------------------
"$learnd" demo --bootstrap "$bs" --events 100000 --keep > "$work/demo.out" 2>&1 \
    || { cat "$work/demo.out" >&2; fatal "learnd demo exited $?"; }
kept=$(sed -n 's/^checkpoints kept in \(.*\) (try.*/\1/p' "$work/demo.out")
demo_model=$(sed -n 's/^run [^:]*: model \([^,]*\),.*/\1/p' "$work/demo.out")
[ -n "$demo_model" ] || fatal "demo did not name its model"
[ -d "$kept/$demo_model" ] || fatal "demo did not say where it kept its checkpoints"

# What the trigger topic announces (read_committed, as a deployer reads it).
# Only this run's model: other demo runs on the broker wrote there too.
kcat -C -b "$bs" -t learnd.triggers -X isolation.level=read_committed -e -q \
    -f '%s\n' > "$work/all-triggers.jsonl"
"$py" -c 'import json, sys
for line in open(sys.argv[1]):
    if json.loads(line)["model"]["name"] == sys.argv[2]:
        sys.stdout.write(line)' "$work/all-triggers.jsonl" "$demo_model" > "$work/triggers.jsonl"
"$py" - "$work/triggers.jsonl" > "$work/expected" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    ev = json.loads(line)
    d, m = ev["decision"], ev["model"]
    if d["action"] == "publish" and d["verdict"] == "PASS":
        print(m["name"], m["challenger_version"], m["checkpoint_sha256"])
EOF
nevents=$(wc -l < "$work/triggers.jsonl")
npass=$(wc -l < "$work/expected")
echo "demo: $nevents trigger events, $npass PASS; local store $kept"
check "the demo published at least one checkpoint" [ "$npass" -ge 1 ]

# ---- First run: deploys every PASS checkpoint ----------------------------------
out=$work/models
deploy --models-dir "$out" --group ld-0010-a-$$ --model "$demo_model" --once 2> "$work/run1.log" \
    || { cat "$work/run1.log" >&2; fatal "deployer run 1 exited non-zero"; }
cat "$work/run1.log"

# Exactly the expected files: one .ckpt per PASS version, `current` pointing
# at the newest, the state file; nothing else (no temp files left).
{
    echo ".deployer-state.json"
    last=""
    while read -r model version _; do
        echo "$model/$version.ckpt"; last="$model $version"
    done < "$work/expected"
    set -- $last
    echo "$1/current -> $2.ckpt"
} | sort > "$work/want-files"
(cd "$out" && find . -mindepth 1 \( -type f -printf '%P\n' \) -o \
    \( -type l -printf '%P -> %l\n' \)) | sort > "$work/got-files"
check "the models dir holds exactly the announced versions" \
    diff -u "$work/want-files" "$work/got-files"

while read -r model version sha; do
    f=$out/$model/$version.ckpt
    got_sha=$(sha256sum "$f" | cut -d' ' -f1)
    check "$model v$version: file sha256 is the trigger's checkpoint_sha256" \
        [ "$got_sha" = "$sha" ]
    "$learnd" inspect "$f" --json > "$work/inspect-deployed.json" \
        || fatal "learnd inspect refused the deployed $f"
    "$learnd" inspect "$kept/$model/$version.ckpt" --json > "$work/inspect-kept.json" \
        || fatal "learnd inspect refused the demo's $kept/$model/$version.ckpt"
    read -r i_sha i_ver i_params k_sha k_params < <("$py" - "$work"/inspect-deployed.json \
        "$work"/inspect-kept.json <<'EOF'
import json, sys
d, k = (json.load(open(p)) for p in sys.argv[1:3])
print(d["sha256"], d["lineage"]["version"], d["lineage"]["params_sha256"],
      k["sha256"], k["lineage"]["params_sha256"])
EOF
    )
    check "$model v$version: learnd inspect sha256 of the deployed file" [ "$i_sha" = "$sha" ]
    check "$model v$version: same sha256 as learnd's local store" [ "$k_sha" = "$sha" ]
    check "$model v$version: lineage version" [ "$i_ver" = "$version" ]
    check "$model v$version: params_sha256 as in the local store" [ "$i_params" = "$k_params" ]
    check "$model v$version: byte-identical to the local store" \
        cmp -s "$f" "$kept/$model/$version.ckpt"
done < "$work/expected"
check "one 'deployed' line per PASS event" \
    [ "$(grep -c 'msg=deployed' "$work/run1.log")" -eq "$npass" ]

# ---- Second run from the beginning: idempotent, writes nothing ------------------
snapshot() { (cd "$out" && find . -printf '%P %i %s %T@ %l\n' | sort); }
snapshot > "$work/snap1"
deploy --models-dir "$out" --group ld-0010-b-$$ --model "$demo_model" --once --from-beginning 2> "$work/run2.log" \
    || { cat "$work/run2.log" >&2; fatal "deployer run 2 exited non-zero"; }
cat "$work/run2.log"
snapshot > "$work/snap2"
check "second run: no file written, renamed or touched" diff -u "$work/snap1" "$work/snap2"
check "second run: every event is a duplicate" \
    [ "$(grep -c 'msg="skip: duplicate"' "$work/run2.log")" -eq "$nevents" ]
check "second run: nothing deployed" [ "$(grep -c 'msg=deployed' "$work/run2.log" || true)" -eq 0 ]

# ---- A PASS event whose hash does not match its manifest is refused -------------
tampered=ld-0010-tampered-$$
"$py" - "$work/triggers.jsonl" > "$work/tampered.jsonl" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    ev = json.loads(line)
    if ev["decision"]["verdict"] == "PASS":
        sha = ev["model"]["checkpoint_sha256"]
        ev["model"]["checkpoint_sha256"] = ("0" if sha[0] != "0" else "1") + sha[1:]
        ev["idempotency_key"] = "tampered/" + ev["idempotency_key"]
        print(json.dumps(ev))
        break
EOF
kcat -P -b "$bs" -t "$tampered" -k "$demo_model" "$work/tampered.jsonl" \
    || fatal "cannot produce to $tampered"
rc=0
deploy --models-dir "$work/models-t" --group ld-0010-c-$$ --once --topic "$tampered" \
    2> "$work/run3.log" || rc=$?
cat "$work/run3.log"
check "tampered event: deployer exits 1" [ "$rc" -eq 1 ]
check "tampered event: refused for its sha256" \
    grep -q 'msg=refused why="manifest sha256 .* differs from the event' "$work/run3.log"
check "tampered event: no model written" \
    [ -z "$(find "$work/models-t" -name '*.ckpt' 2>/dev/null)" ]

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
