#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""An example downstream deployer for learnd's trigger topic.

It consumes trigger events (isolation.level=read_committed), and for every
event that says a checkpoint was published (decision.action "publish",
verdict "PASS") it fetches the checkpoint through its CheckpointManifest,
verifies every SHA-256 on the way, writes the model atomically into a
directory and logs the decision. Events are idempotent on idempotency_key:
a re-delivered or re-emitted event is logged as a duplicate and changes
nothing.

Experiment events on the same topic (docs/EXPERIMENTS.md, keys
"<experiment>/decision/<n>" and "<experiment>/weights/<n>") switch what is
served: PROMOTE writes the treatment's name to the experiment's `serving`
file, ROLLBACK (and INCONCLUSIVE) the control's; routing weights replace its
`routing.json` when they are newer than the file's.

Layout written under --models-dir:

    <model>/<version>.ckpt   the serialized learnd.v1.Checkpoint, verified
    <model>/current          symlink to the deployed <version>.ckpt
    experiments/<name>/serving       the variant to serve, one line
    experiments/<name>/routing.json  {"seq": n, "weights": {variant: w}}
    .deployer-state.json     idempotency keys seen and versions deployed

Messages come from code generated from schemas/learnd.proto (learnd_pb2);
see setup.sh. Exit codes: 0 ok, 1 an event was refused (--once) or a Kafka
error, 2 usage error.
"""

import argparse
import hashlib
import hmac
import json
import os
import re
import signal
import sys
import tempfile
import time

try:
    from confluent_kafka import (OFFSET_BEGINNING, Consumer, KafkaError,
                                 KafkaException, TopicPartition)
except ImportError:  # pragma: no cover - told to the user, not a test path
    sys.exit("deployer: confluent-kafka is missing: run examples/deployer/setup.sh")

try:
    import learnd_pb2  # generated: protoc --python_out from schemas/learnd.proto
except ImportError:  # pragma: no cover
    sys.exit("deployer: learnd_pb2 is missing: run examples/deployer/setup.sh "
             "(it generates it from schemas/learnd.proto)")

STATE_FILE = ".deployer-state.json"
# The Checkpoint's own sha256 is field 15 (bytes), written last: tag 0x7a,
# length 32, then the digest of every byte before the tag.
CKPT_SHA_TRAILER = b"\x7a\x20"


class Refused(Exception):
    """The announced checkpoint cannot be deployed (missing, corrupt)."""


# learnd's own rule for model names (publish/publish.h, ld_publish_name_ok):
# one path component of ASCII letters, digits, '.', '_', '-', not starting
# with '.'. The name comes from the trigger event, which anyone who can write
# the topic controls: "../x" or "/tmp/x" joined to --models-dir would write
# outside it.
MODEL_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")


def safe_model_dir(models_dir, name):
    """Returns the directory of model name under models_dir, or raises
    Refused when name is not a single safe path component."""
    if not isinstance(name, str) or not MODEL_NAME.fullmatch(name):
        raise Refused("model name %r is not a single safe path component "
                      "(letters, digits, '.', '_', '-'; not starting with '.')"
                      % (name,))
    root = os.path.realpath(models_dir)
    mdir = os.path.join(root, name)
    # Defence in depth: a symlink planted in the models dir must not lead
    # out of it either.
    if os.path.dirname(os.path.realpath(mdir)) != root:
        raise Refused("%s leads outside --models-dir" % mdir)
    return mdir


# ---- Logging: one logfmt line per decision, like learnd's own logs --------

_ESC = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _q(v):
    """A logfmt value: quoted when needed; quotes, backslashes and control
    characters escaped, so a value from an event (a model name) can never
    end the line or forge another key."""
    s = str(v)
    if s == "" or any(c in s for c in ' "=\\') or any(ord(c) < 0x20 or ord(c) == 0x7f for c in s):
        return '"' + "".join(_ESC.get(c) or ("\\u%04x" % ord(c) if ord(c) < 0x20 or ord(c) == 0x7f else c)
                             for c in s) + '"'
    return s


def log(level, msg, **kv):
    now = time.time()
    ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
    ts += ".%03dZ" % int((now % 1) * 1000)
    parts = ["ts=" + ts, "level=" + level, "mod=deployer", "msg=" + _q(msg)]
    parts += ["%s=%s" % (k, _q(v)) for k, v in kv.items() if v is not None]
    print(" ".join(parts), file=sys.stderr, flush=True)


# ---- Trigger events: JSON (schemas/trigger.schema.json) or protobuf --------

def _enum_name(enum, value, prefix):
    return enum.Name(value)[len(prefix):]


def decode_trigger(value):
    """Returns the trigger event as the JSON shape of trigger.schema.json."""
    if value[:1] == b"{":
        return json.loads(value)
    ev = learnd_pb2.TriggerEvent()
    ev.ParseFromString(value)
    m = ev.model
    published = m.WhichOneof("opt_manifest_offset") is not None
    return {
        "trigger_id": ev.trigger_id,
        "type": _enum_name(learnd_pb2.TriggerType, ev.type, "TRIGGER_TYPE_").lower(),
        "idempotency_key": ev.idempotency_key,
        "model": {
            "name": m.name,
            "challenger_version": m.challenger_version or None,
            "checkpoint_topic": m.checkpoint_topic,
            "checkpoint_partition": m.checkpoint_partition if published else None,
            "manifest_offset": m.manifest_offset if published else None,
            "checkpoint_sha256": m.checkpoint_sha256.hex() or None,
        },
        "decision": {
            "action": _enum_name(learnd_pb2.Action, ev.decision.action, "ACTION_").lower(),
            "verdict": _enum_name(learnd_pb2.Verdict, ev.decision.verdict, "VERDICT_"),
            "reason": ev.decision.reason,
        },
    }


EXPERIMENT_KEY = re.compile(r"(.+)/(decision|weights)/([1-9][0-9]*)")


def _arms(arms):
    return [{"variant": a.variant, "n": a.n, "mean": a.mean,
             "weight": a.weight} for a in arms]


# learnd.type header of each kind of record on the triggers topic.
EXPERIMENT_TYPES = {"ExperimentDecision": "decision",
                    "RoutingWeights": "weights"}


def record_type(headers):
    """The learnd.type header (docs/TRIGGERS.md, "Headers"), or None for a
    record of a learnd that did not write it."""
    for name, value in headers or ():
        if name == "learnd.type" and value is not None:
            return value.decode("utf-8", "replace")
    return None


def decode_experiment(key, value, rtype=None):
    """Returns an experiment event (schemas/experiment.schema.json shape),
    or None when the record is a trigger event: told by its learnd.type
    header (rtype), or by its key when it has none."""
    if rtype is not None:
        kind = EXPERIMENT_TYPES.get(rtype)
    else:
        m = EXPERIMENT_KEY.fullmatch(key or "")
        kind = m.group(2) if m else None
    if kind is None:
        return None
    if value[:1] == b"{":
        return json.loads(value)
    if kind == "weights":
        w = learnd_pb2.RoutingWeights()
        w.ParseFromString(value)
        return {"kind": "routing_weights", "experiment": w.experiment,
                "idempotency_key": w.idempotency_key, "seq": w.seq,
                "arms": _arms(w.arms)}
    d = learnd_pb2.ExperimentDecision()
    d.ParseFromString(value)
    verdict = learnd_pb2.ExperimentVerdict.Name(d.verdict)
    return {"kind": "experiment_decision", "experiment": d.experiment,
            "idempotency_key": d.idempotency_key, "seq": d.seq,
            "verdict": verdict[len("EXPERIMENT_VERDICT_"):],
            "reason": d.reason, "effect": d.effect, "arms": _arms(d.arms)}


def handle_experiment(ev, args, state):
    """Acts on one experiment event: the variant to serve, or the routing
    weights. Returns the decision word."""
    key, name = ev.get("idempotency_key"), ev.get("experiment")
    ctx = dict(experiment=name, idempotency_key=key)
    if not key:
        log("warn", "skip: event without idempotency_key", **ctx)
        return "invalid"
    if key in state.seen:
        log("info", "skip: duplicate", previous=state.seen[key], **ctx)
        return "duplicate"
    try:
        edir = safe_model_dir(os.path.join(args.models_dir, "experiments"), name)
    except Refused as e:
        log("error", "refused", why=str(e), **ctx)
        return "refused"
    os.makedirs(edir, exist_ok=True)
    arms = [a.get("variant") for a in ev.get("arms") or []]
    if ev.get("kind") == "routing_weights":
        path = os.path.join(edir, "routing.json")
        cur = 0
        if os.path.exists(path):
            with open(path) as f:
                cur = json.load(f).get("seq", 0)
        if ev.get("seq", 0) <= cur:
            decision = "stale"
            log("info", "weights not newer than routing.json", seq=ev.get("seq"),
                current=cur, **ctx)
        else:
            weights = {a["variant"]: a["weight"] for a in ev["arms"]}
            write_atomic(path, json.dumps({"seq": ev["seq"], "weights": weights},
                                          sort_keys=True).encode() + b"\n")
            decision = "routed"
            log("notice", "routing weights written", seq=ev["seq"],
                weights=json.dumps(weights, sort_keys=True), **ctx)
    else:
        verdict = ev.get("verdict")
        if len(arms) != 2 or verdict not in ("PROMOTE", "ROLLBACK", "INCONCLUSIVE"):
            log("error", "refused: not a decision", verdict=verdict, **ctx)
            return "refused"
        serve = arms[1] if verdict == "PROMOTE" else arms[0]
        write_atomic(os.path.join(edir, "serving"), (serve + "\n").encode())
        decision = verdict.lower()
        log("notice", "serving switched" if verdict != "INCONCLUSIVE"
            else "inconclusive: serving the control", serving=serve,
            verdict=verdict, reason=ev.get("reason"), **ctx)
    state.seen[key] = decision
    state.save()
    return decision


# ---- State: idempotency keys and deployed versions --------------------------

def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path, data):
    """Temp file in the same directory, fsync, rename, fsync the directory:
    a reader sees the old file or the whole new one, also after a crash."""
    d = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o644)  # mkstemp's 0600: scorers must read it
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(d)


def symlink_atomic(target, link):
    tmp = "%s.tmp-%d" % (link, os.getpid())
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, link)
    fsync_dir(os.path.dirname(link))


class State:
    def __init__(self, models_dir):
        self.path = os.path.join(models_dir, STATE_FILE)
        self.seen = {}      # idempotency_key -> decision
        self.deployed = {}  # model -> {"version": n, "sha256": hex}
        if os.path.exists(self.path):
            with open(self.path) as f:
                s = json.load(f)
            self.seen = s.get("seen", {})
            self.deployed = s.get("deployed", {})

    def save(self):
        body = json.dumps({"seen": self.seen, "deployed": self.deployed},
                          indent=1, sort_keys=True).encode() + b"\n"
        write_atomic(self.path, body)


# ---- Fetching a checkpoint through its manifest ------------------------------

class Fetcher:
    """Reads records at given offsets of the checkpoint topic."""

    def __init__(self, kafka_conf, timeout_s):
        conf = dict(kafka_conf)
        conf.update({
            "group.id": "learnd-deployer-fetch",  # never joins: assign only
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        })
        self.c = Consumer(conf)
        self.timeout_s = timeout_s

    def close(self):
        self.c.close()

    def read(self, topic, partition, first, stop, want):
        """Records of topic/partition from offset first (inclusive) to stop
        (exclusive), until want(msg) says done. Yields messages."""
        self.c.assign([TopicPartition(topic, partition, first)])
        deadline = time.monotonic() + self.timeout_s
        try:
            while time.monotonic() < deadline:
                m = self.c.poll(0.5)
                if m is None:
                    continue
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        return
                    raise Refused("fetch %s[%d]: %s" % (topic, partition, m.error()))
                if stop is not None and m.offset() >= stop:
                    return
                yield m
                if want(m):
                    return
            raise Refused("fetch %s[%d] from %d: timed out" % (topic, partition, first))
        finally:
            self.c.unassign()


def sha256(b):
    return hashlib.sha256(b).digest()


# CheckpointManifest.hmac_sha256 is field 15 (bytes), written last when
# learnd has checkpoint.manifest_secret: HMAC-SHA256 over every byte before
# the tag.
MANIFEST_HMAC_TAG = b"\x7a\x20"


def verify_manifest_hmac(value, key):
    """Raises Refused unless the manifest record value ends with a valid
    HMAC-SHA256 under key. Checksums prove integrity; this proves origin:
    only a holder of the key can make a manifest (and, through its sha256,
    the checkpoint) that passes."""
    if len(value) < 34 or value[-34:-32] != MANIFEST_HMAC_TAG:
        raise Refused("manifest is not signed (learnd has no "
                      "checkpoint.manifest_secret, or the record was forged)")
    want = hmac.new(key, value[:-34], hashlib.sha256).digest()
    if not hmac.compare_digest(want, value[-32:]):
        raise Refused("manifest HMAC does not verify under the deployer's key")


def fetch_checkpoint(fetcher, ev, key=None):
    """Returns (manifest, checkpoint bytes), every hash verified, and the
    manifest's HMAC when key is given."""
    m = ev["model"]
    name, version = m["name"], m["challenger_version"]
    topic, part, moff = m["checkpoint_topic"], m["checkpoint_partition"], m["manifest_offset"]
    if None in (version, part, moff, m["checkpoint_sha256"]):
        raise Refused("PASS event without checkpoint coordinates")

    # The manifest, at the offset the trigger event announced.
    got = list(fetcher.read(topic, part, moff, moff + 1, lambda _m: True))
    if not got or got[0].offset() != moff:
        raise Refused("no committed record at %s[%d]@%d (retention, or an "
                      "aborted publication)" % (topic, part, moff))
    rec = got[0]
    if (rec.key() or b"").decode("utf-8", "replace") != name:
        raise Refused("record at the manifest offset is keyed %r, not %r"
                      % (rec.key(), name))
    if key is not None:
        verify_manifest_hmac(rec.value(), key)  # before trusting any field
    man = learnd_pb2.CheckpointManifest()
    man.ParseFromString(rec.value())
    if man.model != name or man.version != version:
        raise Refused("manifest is %s v%d, the event announced %s v%d"
                      % (man.model, man.version, name, version))
    if man.sha256.hex() != m["checkpoint_sha256"]:
        raise Refused("manifest sha256 %s differs from the event's %s"
                      % (man.sha256.hex(), m["checkpoint_sha256"]))
    if man.chunk_count == 0 or man.first_chunk_offset < 0:
        raise Refused("manifest names no chunks")
    if man.first_chunk_offset >= moff:
        raise Refused("chunks start after the manifest")
    if man.topic and (man.topic != topic or man.partition != part):
        raise Refused("chunks on %s[%d], not beside the manifest"
                      % (man.topic, man.partition))

    # The chunks: consecutive records keyed <model>/<version>/<index>
    # between first_chunk_offset and the manifest.
    prefix = "%s/%d/" % (name, version)
    chunks = {}

    def done(_m):
        return len(chunks) == man.chunk_count

    for r in fetcher.read(topic, part, man.first_chunk_offset, moff, done):
        key = (r.key() or b"").decode("utf-8", "replace")
        if not key.startswith(prefix):
            continue  # another model's record between ours
        ch = learnd_pb2.CheckpointChunk()
        ch.ParseFromString(r.value())
        if (ch.model != name or ch.version != version or ch.count != man.chunk_count
                or ch.index >= man.chunk_count or key != prefix + str(ch.index)):
            raise Refused("chunk %r at offset %d does not match the manifest"
                          % (key, r.offset()))
        if sha256(ch.data) != ch.sha256:
            raise Refused("chunk %d: sha256 mismatch" % ch.index)
        chunks[ch.index] = ch.data
    if len(chunks) != man.chunk_count:
        raise Refused("found %d of %d chunks" % (len(chunks), man.chunk_count))
    blob = b"".join(chunks[i] for i in range(man.chunk_count))
    if len(blob) != man.total_size:
        raise Refused("checkpoint is %d bytes, manifest says %d" % (len(blob), man.total_size))
    if sha256(blob) != man.sha256:
        raise Refused("checkpoint sha256 does not match the manifest")
    verify_checkpoint(blob, name, version, man)
    return man, blob


def verify_checkpoint(blob, name, version, man):
    """Checks the Checkpoint message itself: its trailing self-digest, the
    lineage and params_sha256 (SHA-256 over the tensors' data, in order)."""
    if len(blob) < 34 or blob[-34:-32] != CKPT_SHA_TRAILER:
        raise Refused("checkpoint does not end with its sha256 field")
    if sha256(blob[:-34]) != blob[-32:]:
        raise Refused("checkpoint self-digest mismatch")
    ck = learnd_pb2.Checkpoint()
    ck.ParseFromString(blob)
    if ck.format_version != 1:
        raise Refused("checkpoint format_version %d is not 1" % ck.format_version)
    if ck.lineage.model != name or ck.lineage.version != version:
        raise Refused("checkpoint lineage is %s v%d" % (ck.lineage.model, ck.lineage.version))
    if ck.HasField("delta"):
        return ck  # its parameters are checked once rebuilt (apply_delta)
    h = hashlib.sha256()
    for t in ck.tensors:
        n = 4
        for d in t.shape:
            n *= d
        if len(t.data) != n:
            raise Refused("tensor %s: %d bytes for shape %s" % (t.name, len(t.data), list(t.shape)))
        h.update(t.data)
    if h.digest() != ck.lineage.params_sha256:
        raise Refused("params_sha256 mismatch")
    if man.params_sha256 and man.params_sha256 != ck.lineage.params_sha256:
        raise Refused("manifest params_sha256 differs from the lineage's")
    return ck


# ---- Delta checkpoints (checkpoint.delta_every > 1) ---------------------------

def apply_delta(parent_blob, delta_blob, name, version, man):
    """Rebuilds the full checkpoint a delta describes on top of its parent
    (the full checkpoint of the version before, as this deployer wrote it),
    and returns its bytes, every hash verified: the link (the parent's
    params_sha256), then the rebuilt parameters against the manifest's."""
    ck = learnd_pb2.Checkpoint()
    ck.ParseFromString(delta_blob)
    d = ck.delta
    parent = learnd_pb2.Checkpoint()
    parent.ParseFromString(parent_blob)
    if parent.lineage.version != d.parent_version:
        raise Refused("delta v%d applies to v%d, the deployed version is v%d: "
                      "a missing link (the next full version restarts the "
                      "chain)" % (version, d.parent_version,
                                  parent.lineage.version))
    if parent.lineage.params_sha256 != d.parent_params_sha256:
        raise Refused("delta v%d applies to other parameters than the "
                      "deployed v%d (a different link)"
                      % (version, parent.lineage.version))
    k = max(ck.spec.num_classes, 1) if ck.spec.kind == learnd_pb2.MODEL_KIND_SOFTMAX else 1
    # "w" and its optimizer planes, in the order a row stores them.
    ptens = [parent.tensors[0]] + [t for t in parent.optimizer.tensors
                                   if t.name.startswith("w.")]
    planes = [memoryview(bytearray(t.data)).cast("f") for t in ptens]
    s = len(planes)
    per = k * s
    rows = memoryview(d.rows).cast("f")
    nslots = len(planes[0]) // k
    if len(rows) != len(d.slots) * per:
        raise Refused("delta v%d: %d row floats for %d slots of %d"
                      % (version, len(rows), len(d.slots), per))
    for n, slot in enumerate(d.slots):
        if slot >= nslots:
            raise Refused("delta v%d: slot %d out of range" % (version, slot))
        base = n * per
        for j in range(k):
            for p in range(s):
                planes[p][slot * k + j] = rows[base + j * s + p]
    full = learnd_pb2.Checkpoint()
    full.CopyFrom(ck)
    full.ClearField("delta")
    full.ClearField("sha256")
    full.tensors[0].data = planes[0].tobytes()
    wopt = [t for t in full.optimizer.tensors if t.name.startswith("w.")]
    for t, pl in zip(wopt, planes[1:]):
        t.data = pl.tobytes()
    body = full.SerializeToString()
    blob = body + CKPT_SHA_TRAILER + sha256(body)
    verify_checkpoint(blob, name, version, man)  # params_sha256 included
    return blob


# ---- Deciding ------------------------------------------------------------------

def handle(ev, args, state, fetcher):
    """Acts on one trigger event. Returns the decision word."""
    key = ev.get("idempotency_key")
    m = ev.get("model") or {}
    d = ev.get("decision") or {}
    name, version = m.get("name"), m.get("challenger_version")
    ctx = dict(trigger_id=ev.get("trigger_id"), type=ev.get("type"), model=name,
               version=version, idempotency_key=key)
    if not key:
        log("warn", "skip: event without idempotency_key", **ctx)
        return "invalid"
    if key in state.seen:
        log("info", "skip: duplicate", previous=state.seen[key], **ctx)
        return "duplicate"
    if args.model and name != args.model:
        log("debug", "skip: another model", **ctx)
        return "other-model"
    if d.get("action") != "publish" or d.get("verdict") != "PASS":
        decision = "ignored"
        log("info", "no deploy: nothing was published", action=d.get("action"),
            verdict=d.get("verdict"), reason=d.get("reason"), **ctx)
    else:
        try:
            mdir = safe_model_dir(args.models_dir, name)
            if not isinstance(version, int) or isinstance(version, bool) or version < 1:
                raise Refused("challenger_version %r is not a positive integer" % (version,))
        except Refused as e:
            log("error", "refused", why=str(e), **ctx)
            return "refused"
        cur = state.deployed.get(name, {}).get("version", 0)
        if version <= cur:
            decision = "stale"
            log("info", "no deploy: not newer than the deployed version",
                deployed=cur, **ctx)
        else:
            try:
                man, blob = fetch_checkpoint(fetcher, ev, args.manifest_key)
            except Refused as e:
                log("error", "refused", why=str(e), **ctx)
                # Not remembered: a later run with --from-beginning retries it.
                return "refused"
            os.makedirs(mdir, exist_ok=True)
            if man.chain:  # a delta: rebuilt on the deployed version
                try:
                    if man.chain[-1] != cur:
                        raise Refused(
                            "delta v%d needs v%d, the deployed version is v%d: "
                            "a missing link (waiting for the next full "
                            "version)" % (version, man.chain[-1], cur))
                    with open(os.path.join(mdir, "%d.ckpt" % cur), "rb") as f:
                        parent_blob = f.read()
                    blob = apply_delta(parent_blob, blob, name, version, man)
                except (Refused, OSError) as e:
                    log("error", "refused", why=str(e), **ctx)
                    return "refused"
            fname = "%d.ckpt" % version
            write_atomic(os.path.join(mdir, fname), blob)
            symlink_atomic(fname, os.path.join(mdir, "current"))
            state.deployed[name] = {"version": version, "sha256": man.sha256.hex()}
            decision = "deployed"
            log("notice", "deployed", sha256=man.sha256.hex(), bytes=len(blob),
                chunks=man.chunk_count, path=os.path.join(mdir, fname),
                delta_of=man.chain[-1] if man.chain else None, **ctx)
    state.seen[key] = decision
    state.save()
    return decision


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Deploy the checkpoints learnd announces on its trigger topic.")
    p.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers")
    p.add_argument("--models-dir", required=True, help="where models are written")
    p.add_argument("--topic", default="learnd.triggers", help="trigger topic")
    p.add_argument("--group", default="learnd-deployer", help="consumer group")
    p.add_argument("--model", help="deploy this model only")
    p.add_argument("--once", action="store_true",
                   help="exit once the topic is read to its end (exit 1 if an "
                        "event was refused)")
    p.add_argument("--from-beginning", action="store_true",
                   help="ignore the group's committed offsets")
    p.add_argument("--fetch-timeout", type=float, default=60.0,
                   help="seconds to fetch one checkpoint")
    p.add_argument("-X", dest="props", action="append", default=[],
                   metavar="KEY=VALUE", help="extra librdkafka property")
    p.add_argument("--manifest-key-env", metavar="NAME",
                   help="environment variable holding learnd's "
                        "checkpoint.manifest_secret: deploy only checkpoints "
                        "whose manifest HMAC verifies under it")
    args = p.parse_args(argv)
    args.manifest_key = None
    if args.manifest_key_env:
        # From the environment, never the command line (ps shows that).
        k = os.environ.get(args.manifest_key_env, "")
        if len(k) < 16:
            p.error("--manifest-key-env: $%s is unset or shorter than 16 bytes"
                    % args.manifest_key_env)
        args.manifest_key = k.encode()
    kafka = {"bootstrap.servers": args.bootstrap}
    for kv in args.props:
        if "=" not in kv:
            p.error("-X needs KEY=VALUE")
        k, v = kv.split("=", 1)
        kafka[k] = v
    args.kafka = kafka
    return args


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.models_dir, exist_ok=True)
    state = State(args.models_dir)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))

    conf = dict(args.kafka)
    conf.update({
        "group.id": args.group,
        "enable.auto.commit": False,      # commit after acting, below
        "isolation.level": "read_committed",  # never act on an aborted publish
        "auto.offset.reset": "earliest",
        "enable.partition.eof": True,
    })
    consumer = Consumer(conf)
    fetcher = Fetcher(args.kafka, args.fetch_timeout)
    assigned, at_eof = set(), set()

    def on_assign(c, parts):
        if args.from_beginning:
            for tp in parts:
                tp.offset = OFFSET_BEGINNING
        assigned.update((tp.topic, tp.partition) for tp in parts)
        c.assign(parts)

    def on_revoke(c, parts):
        for tp in parts:
            assigned.discard((tp.topic, tp.partition))
            at_eof.discard((tp.topic, tp.partition))

    consumer.subscribe([args.topic], on_assign=on_assign, on_revoke=on_revoke)
    log("info", "started", topic=args.topic, group=args.group,
        models_dir=args.models_dir,
        manifest_hmac="required" if args.manifest_key else "not checked")
    counts = {}
    code = 0
    try:
        while not stop:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            err = msg.error()
            if err:
                if err.code() == KafkaError._PARTITION_EOF:
                    at_eof.add((msg.topic(), msg.partition()))
                    if args.once and assigned and at_eof >= assigned:
                        break
                    continue
                if err.fatal() or err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                    raise KafkaException(err)
                log("warn", "consumer error", err=str(err))
                continue
            at_eof.discard((msg.topic(), msg.partition()))
            key = (msg.key() or b"").decode("utf-8", "replace")
            rtype = record_type(msg.headers())
            try:
                xev = decode_experiment(key, msg.value(), rtype)
                ev = None if xev else decode_trigger(msg.value())
            except Exception as e:  # undecodable: log it, never wedge on it
                log("error", "skip: undecodable trigger event", offset=msg.offset(),
                    partition=msg.partition(), err=str(e))
                decision = "undecodable"
            else:
                decision = (handle_experiment(xev, args, state) if xev
                            else handle(ev, args, state, fetcher))
            counts[decision] = counts.get(decision, 0) + 1
            if decision == "refused":
                code = 1
            # At-least-once on the topic, exactly-once in effect through the
            # idempotency keys in the state file.
            consumer.commit(message=msg, asynchronous=False)
    except KafkaException as e:
        log("error", "kafka error: exiting", err=str(e))
        code = 1
    finally:
        consumer.close()
        fetcher.close()
    log("info", "stopped", **{k: v for k, v in sorted(counts.items())})
    return code


if __name__ == "__main__":
    sys.exit(main())
