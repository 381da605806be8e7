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

# ---- A model name that is not one path component is refused (issue 15) --------
# The name comes from the event: joined to --models-dir, "../x" or an
# absolute path would write outside it. Each event below is a real PASS
# event of the demo with only the name (and idempotency key) changed.
escape=ld-0010-escape-$$
mkdir -p "$work/inside/models"
"$py" - "$work/triggers.jsonl" "$work" > "$work/escape.jsonl" <<'EOF'
import json, sys
work = sys.argv[2]
for line in open(sys.argv[1]):
    ev = json.loads(line)
    if ev["decision"]["verdict"] == "PASS":
        break
for i, name in enumerate(["../escaped", work + "/abs-escaped", "a/b", "..", ".hidden"]):
    ev["model"]["name"] = name
    ev["idempotency_key"] = "escape/%d" % i
    print(json.dumps(ev))
EOF
kcat -P -b "$bs" -t "$escape" -k demo-ctr < "$work/escape.jsonl" \
    || fatal "cannot produce to $escape"
rc=0
deploy --models-dir "$work/inside/models" --group ld-0010-d --once --topic "$escape" \
    2> "$work/run4.log" || rc=$?
cat "$work/run4.log"
check "unsafe model names: deployer exits 1" [ "$rc" -eq 1 ]
check "unsafe model names: each of the 5 events refused for its name" \
    [ "$(grep -c 'msg=refused why=".* is not a single safe path component' "$work/run4.log")" -eq 5 ]
check "unsafe model names: nothing written outside --models-dir" \
    [ ! -e "$work/inside/escaped" ] && [ ! -e "$work/abs-escaped" ] && [ ! -e "$work/inside/models/a" ]
check "unsafe model names: no checkpoint written anywhere" \
    [ -z "$(find "$work/inside" "$work" -maxdepth 3 -name '*.ckpt' -newer "$work/escape.jsonl" 2>/dev/null)" ]

# ---- Manifest HMAC: origin, not only integrity (issue 15) ------------------------
# With --manifest-key-env the deployer deploys only checkpoints whose
# manifest carries a valid HMAC-SHA256 under the key (learnd writes it with
# checkpoint.manifest_secret; the demo signs nothing).
export LD_0010_KEY=0010-test-key-0123456789abcdef
rc=0
deploy --models-dir "$work/models-u" --group ld-0010-e --once \
    --manifest-key-env LD_0010_KEY 2> "$work/run5.log" || rc=$?
cat "$work/run5.log"
check "unsigned manifests with a key required: deployer exits 1" [ "$rc" -eq 1 ]
# Counted for this demo's model only: learnd.triggers is shared with the
# other tests that run `learnd demo --bootstrap` (0014, 0016), whose events
# are refused too when they ran first.
check "unsigned manifests: every PASS event refused as not signed" \
    [ "$(grep 'msg=refused why="manifest is not signed' "$work/run5.log" |
         grep -c " model=$demo_model ")" -eq "$npass" ]
check "unsigned manifests: nothing deployed" \
    [ -z "$(find "$work/models-u" -name '*.ckpt' 2>/dev/null)" ]

# The first PASS checkpoint copied to a topic of its own with a manifest
# signed as learnd signs it (field 15 = HMAC-SHA256 of the bytes before it):
# once under a wrong key, then under the right one.
signed=ld-0010-signed-$$
PYTHONPATH=$work/gen "$venv/bin/python" - "$bs" "$work/triggers.jsonl" "$signed" \
    > "$work/signed.out" <<'EOF' || fatal "cannot write the signed copy"
import hashlib, hmac, json, os, sys
from confluent_kafka import Consumer, Producer, TopicPartition, KafkaError
import learnd_pb2
bs, triggers, topic = sys.argv[1:4]
for line in open(triggers):
    ev = json.loads(line)
    if ev["decision"]["verdict"] == "PASS":
        break
m = ev["model"]
c = Consumer({"bootstrap.servers": bs, "group.id": "ld-0010-copy",
              "isolation.level": "read_committed", "enable.auto.commit": False,
              "enable.partition.eof": True})
def records(first, stop):
    c.assign([TopicPartition(m["checkpoint_topic"], m["checkpoint_partition"], first)])
    while True:
        r = c.poll(10)
        if r is None or (r.error() and r.error().code() == KafkaError._PARTITION_EOF):
            return
        if r.offset() >= stop:
            return
        yield r
man_rec = next(records(m["manifest_offset"], m["manifest_offset"] + 1))
man = learnd_pb2.CheckpointManifest()
man.ParseFromString(man_rec.value())
prefix = ("%s/%d/" % (m["name"], m["challenger_version"])).encode()
chunks = [r for r in records(man.first_chunk_offset, m["manifest_offset"])
          if r.key().startswith(prefix)]
assert len(chunks) == man.chunk_count, (len(chunks), man.chunk_count)
p = Producer({"bootstrap.servers": bs, "enable.idempotence": True})
for r in chunks:
    p.produce(topic, key=r.key(), value=r.value(), partition=0)
man.first_chunk_offset, man.topic, man.partition = 0, topic, 0
body = man.SerializeToString()
for i, key in enumerate([b"wrong-key-0123456789abcdef", os.environ["LD_0010_KEY"].encode()]):
    sig = b"\x7a\x20" + hmac.new(key, body, hashlib.sha256).digest()
    p.produce(topic, key=m["name"].encode(), value=body + sig, partition=0)
    e = json.loads(json.dumps(ev))
    e["idempotency_key"] = "signed/%d" % i
    e["model"].update(checkpoint_topic=topic, checkpoint_partition=0,
                      manifest_offset=len(chunks) + i)
    p.produce(topic + ".triggers", key=m["name"].encode(), value=json.dumps(e), partition=0)
    p.flush(30)  # the bad event first
assert p.flush(30) == 0
c.close()
print(m["name"], m["challenger_version"])
EOF
read -r s_model s_version < "$work/signed.out"
rc=0
deploy --models-dir "$work/models-s" --group ld-0010-f --once --topic "$signed.triggers" \
    --manifest-key-env LD_0010_KEY 2> "$work/run6.log" || rc=$?
cat "$work/run6.log"
check "signed manifests: exit 1 for the one under a wrong key" [ "$rc" -eq 1 ]
check "signed manifests: the wrong key's manifest refused" \
    [ "$(grep -c 'msg=refused why="manifest HMAC does not verify' "$work/run6.log")" -eq 1 ]
check "signed manifests: the right key's checkpoint deployed" \
    [ "$(grep -c 'msg=deployed' "$work/run6.log")" -eq 1 ]
check "signed manifests: deployed file byte-identical to learnd's store" \
    cmp -s "$work/models-s/$s_model/$s_version.ckpt" "$kept/$s_model/$s_version.ckpt"

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
