#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# Writes the pipeline fixtures: events and labels in Avro (Confluent framing,
# schema id 1 / 2), Protobuf (learnd.v1.Event / Label) and JSON, encoded here
# by hand from the specs with the Python standard library only, so learnd's
# decoders are checked against an independent encoder; the expected key,
# time, dense block and hashed slots of every record come from an independent
# MurmurHash3_x86_32 in this file. Also a poison corpus with the reason each
# record must be dead-lettered for.
#
# Output files are kcat input: key KDELIM value DELIM ... (kcat -K/-D).
# usage: gen_fixtures.py OUTDIR
import json
import math
import os
import random
import struct
import sys

KDELIM = b"\xf1\xf2\xf3\xf4"
DELIM = b"\xf5\xf6\xf7\xf8"
N_EVENTS = 200
N_LABELS = 120
SEED = 42  # pipeline.hash_seed of tests/data/pipeline/*.yaml
BITS = 18  # pipeline.hash_bits
COUNTRIES = ["DE", "FR", "US", "JP", "BR", "IN", "ZA"]
DEVICES = ["desktop", "mobile", "tablet", "tv"]
TAGS = ["sports", "news", "tech", "travel", "food", "Grüße", "日本"]


def murmur3(data: bytes, seed: int) -> int:
    c1, c2 = 0xCC9E2D51, 0x1B873593
    h = seed & 0xFFFFFFFF
    n = len(data) // 4
    for i in range(n):
        k = struct.unpack_from("<I", data, 4 * i)[0]
        k = (k * c1) & 0xFFFFFFFF
        k = ((k << 15) | (k >> 17)) & 0xFFFFFFFF
        k = (k * c2) & 0xFFFFFFFF
        h ^= k
        h = ((h << 13) | (h >> 19)) & 0xFFFFFFFF
        h = (h * 5 + 0xE6546B64) & 0xFFFFFFFF
    tail = data[4 * n:]
    k = 0
    if len(tail) >= 3:
        k ^= tail[2] << 16
    if len(tail) >= 2:
        k ^= tail[1] << 8
    if len(tail) >= 1:
        k ^= tail[0]
        k = (k * c1) & 0xFFFFFFFF
        k = ((k << 15) | (k >> 17)) & 0xFFFFFFFF
        k = (k * c2) & 0xFFFFFFFF
        h ^= k
    h ^= len(data)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    h ^= h >> 16
    return h


# hash_fields of the fixture config, grouped by namespace in order of first
# appearance: (namespace, field)
HASHED = [("country", "country"), ("ad_id", "ad_id"), ("device", "device"),
          ("ctx", "publisher"), ("ctx", "tags"), ("user", "user_segment")]
CROSSES = [["country", "ad_id"], ["device", "user"]]


def slots(ev):
    """Expected sparse slots of an event, in learnd's emission order."""
    out, by_ns = [], {}
    for ns, field in HASHED:
        fseed = murmur3(field.encode(), murmur3(ns.encode(), SEED))
        vals = ev[field]
        if vals is None:
            vals = []
        elif not isinstance(vals, list):
            vals = [vals]
        for v in vals:
            h = murmur3(v.encode(), fseed)
            by_ns.setdefault(ns, []).append(h)
            out.append(h)
    for cross in CROSSES:
        lists = [by_ns.get(ns, []) for ns in cross]
        combos = [[]]
        for lst in lists:
            combos = [c + [h] for c in combos for h in lst]
        if any(not lst for lst in lists):
            combos = []
        for c in combos:
            out.append(murmur3(b"".join(struct.pack("<I", h) for h in c), SEED))
    return [h & ((1 << BITS) - 1) for h in out]


# ---- Avro binary (spec 1.11 "Binary Encoding") ----
def zz(n):
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def a_str(s):
    b = s.encode() if isinstance(s, str) else s
    return zz(len(b)) + b


def avro_event(ev):
    out = a_str(ev["event_id"]) + zz(ev["event_time"])
    for i in range(20):
        out += struct.pack("<f", ev["f"][i])
    for k in ("country", "ad_id", "device", "publisher"):
        out += a_str(ev[k])
    out += zz(0) if ev["user_segment"] is None else zz(1) + a_str(ev["user_segment"])
    if ev["tags"]:
        out += zz(len(ev["tags"])) + b"".join(a_str(t) for t in ev["tags"])
    out += zz(0)
    return out


def avro_label(lb):
    return (a_str(lb["event_id"]) + zz(lb["label_time"]) +
            bytes([1 if lb["clicked"] else 0]) + struct.pack("<d", lb["value"]))


def confluent(schema_id, body):
    return b"\x00" + struct.pack(">I", schema_id) + body


# ---- Protobuf (encoding guide: varint, LEN, I64) ----
def varint(n):
    n &= 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_len(field, b):
    return varint(field << 3 | 2) + varint(len(b)) + b


def pb_str(field, s):
    return pb_len(field, s.encode())


def pb_feature(name, kind, v):
    out = pb_str(1, name)
    if kind == "num":
        out += varint(2 << 3 | 1) + struct.pack("<d", v)
    elif kind == "str":
        out += pb_str(3, v)
    elif kind == "tags":
        out += pb_len(4, b"".join(pb_str(1, t) for t in v))
    return out


def pb_event(ev):
    out = pb_str(1, ev["event_id"]) + varint(2 << 3) + varint(ev["event_time"])
    for i in range(20):
        out += pb_len(3, pb_feature("f%d" % i, "num", ev["f"][i]))
    for k in ("country", "ad_id", "device", "publisher"):
        out += pb_len(3, pb_feature(k, "str", ev[k]))
    if ev["user_segment"] is not None:
        out += pb_len(3, pb_feature("user_segment", "str", ev["user_segment"]))
    out += pb_len(3, pb_feature("tags", "tags", ev["tags"]))
    return out


def pb_label(lb):
    return (pb_str(1, lb["event_id"]) + varint(2 << 3) + varint(lb["label_time"]) +
            varint(3 << 3 | 1) + struct.pack("<d", 1.0 if lb["clicked"] else 0.0))


def json_event(ev):
    d = {"event_id": ev["event_id"], "event_time": ev["event_time"]}
    for i in range(19):
        d["f%d" % i] = ev["f"][i]
    d["m"] = {"f19": ev["f"][19]}  # nested on purpose: dense field m.f19
    for k in ("country", "ad_id", "device", "publisher", "user_segment"):
        d[k] = ev[k]
    d["tags"] = ev["tags"]
    return json.dumps(d, ensure_ascii=False).encode()


def json_label(lb):
    return json.dumps({"event_id": lb["event_id"], "label_time": lb["label_time"],
                       "clicked": lb["clicked"]}).encode()


def make_data():
    rnd = random.Random(7)
    evs, lbs = [], []
    t0 = 1700000000000
    for i in range(N_EVENTS):
        evs.append({
            "event_id": "ev-%05d" % i,
            "event_time": t0 + 1000 * i + rnd.randrange(1000),
            "f": [rnd.randrange(-64, 64) / 8.0 for _ in range(20)],
            "country": rnd.choice(COUNTRIES),
            "ad_id": "ad-%d" % rnd.randrange(50),
            "device": rnd.choice(DEVICES),
            "publisher": "pub%d.example" % rnd.randrange(9),
            "user_segment": None if i % 4 == 0 else "seg%d" % rnd.randrange(5),
            "tags": rnd.sample(TAGS, rnd.randrange(0, 4)),
        })
    for i in range(N_LABELS):
        ev = evs[rnd.randrange(N_EVENTS)]
        lbs.append({"event_id": ev["event_id"],
                    "label_time": ev["event_time"] + rnd.randrange(1, 60000),
                    "clicked": rnd.random() < 0.4, "value": 0.0})
    return evs, lbs


def write_kcat(path, recs):
    out = bytearray()
    for key, val in recs:
        for part in (key, val):
            assert KDELIM not in part and DELIM not in part, path
        out += key + KDELIM + val + DELIM
    with open(path, "wb") as f:
        f.write(out)


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(__file__)
    evs, lbs = make_data()
    enc = {
        "avro": (lambda e: confluent(1, avro_event(e)),
                 lambda l: confluent(2, avro_label(l))),
        "protobuf": (pb_event, pb_label),
        "json": (json_event, json_label),
    }
    for fmt, (fe, fl) in enc.items():
        write_kcat(os.path.join(outdir, "events-%s.kcat" % fmt),
                   [(e["event_id"].encode(), fe(e)) for e in evs])
        write_kcat(os.path.join(outdir, "labels-%s.kcat" % fmt),
                   [(l["event_id"].encode(), fl(l)) for l in lbs])
    with open(os.path.join(outdir, "events-expected.txt"), "w") as f:
        f.write("# key time dense(20, %g) slots(sorted as emitted)\n")
        for e in evs:
            f.write("%s %d %s %s\n" % (
                e["event_id"], e["event_time"],
                ",".join("%g" % v for v in e["f"]),
                ",".join(str(s) for s in slots(e)) or "-"))
    with open(os.path.join(outdir, "labels-expected.txt"), "w") as f:
        f.write("# key time label\n")
        for l in lbs:
            f.write("%s %d %d\n" % (l["event_id"], l["label_time"],
                                    1 if l["clicked"] else 0))

    # Poison corpus (Avro, Confluent framing), good records in between.
    good = [confluent(1, avro_event(e)) for e in evs[:8]]
    body = avro_event(evs[8])
    nan_ev = dict(evs[9], f=[float("nan")] + evs[9]["f"][1:])
    poison = [
        ("ok", b"p-ok-0", good[0]),
        ("decode", b"p-trunc", confluent(1, body[: len(body) // 2])),
        ("ok", b"p-ok-1", good[1]),
        # string length claims 1000 bytes, 3 remain
        ("decode", b"p-len", confluent(1, zz(1000) + b"abc")),
        ("ok", b"p-ok-2", good[2]),
        ("bad_magic", b"p-magic", b"\x07" + good[3][1:]),
        ("unknown_schema", b"p-schema", b"\x00\x00\x00\x00\x63" + body),
        ("ok", b"p-ok-3", good[3]),
        ("bad_utf8", b"p-utf8", confluent(1, avro_event_bad_utf8(evs[10]))),
        ("not_finite", b"p-nan", confluent(1, avro_event(nan_ev))),
        ("ok", b"p-ok-4", good[4]),
        ("empty", b"p-empty", b""),
        ("missing_key", b"", confluent(1, avro_event(dict(evs[11], event_id="")))),
        ("ok", b"p-ok-5", good[5]),
        ("decode", b"p-trailing", confluent(1, body + b"\x00\x00")),
        ("ok", b"p-ok-6", good[6]),
    ]
    with open(os.path.join(outdir, "poison-avro.bin"), "wb") as f:
        # binary, not kcat input (keys may be empty): u32 BE key len, key,
        # u32 BE value len, value
        for _, k, v in poison:
            f.write(struct.pack(">I", len(k)) + k + struct.pack(">I", len(v)) + v)
    with open(os.path.join(outdir, "poison-avro.txt"), "w") as f:
        f.write("# expected outcome of each poison-avro.bin record, in order\n")
        for reason, k, _ in poison:
            f.write("%s %s\n" % (reason, k.decode() or "-"))


def avro_event_bad_utf8(ev):
    # country is hashed: invalid UTF-8 there must be caught
    out = avro_event(dict(ev, country="XX"))
    i = out.index(a_str("XX"))
    return out[:i] + zz(2) + b"\xc3\x28" + out[i + 3:]


if __name__ == "__main__":
    main()


def write_corpora(outdir):
    """Seed corpora of the fuzz targets: the first records of every fixture
    and the poison corpus, one file per value."""
    for fmt in ("avro", "protobuf", "json"):
        d = os.path.join(outdir, "fuzz", fmt)
        os.makedirs(d, exist_ok=True)
        n = 0
        for kind in ("events", "labels"):
            data = open(os.path.join(outdir, "%s-%s.kcat" % (kind, fmt)), "rb").read()
            for rec in data.split(DELIM)[:6]:
                if rec:
                    with open(os.path.join(d, "%s-%d" % (kind, n)), "wb") as f:
                        f.write(rec.split(KDELIM, 1)[1])
                    n += 1
    d = os.path.join(outdir, "fuzz", "avro")
    data = open(os.path.join(outdir, "poison-avro.bin"), "rb").read()
    i = n = 0
    while i < len(data):
        kl = struct.unpack_from(">I", data, i)[0]
        i += 4 + kl
        vl = struct.unpack_from(">I", data, i)[0]
        with open(os.path.join(d, "poison-%d" % n), "wb") as f:
            f.write(data[i + 4:i + 4 + vl])
        i += 4 + vl
        n += 1


if __name__ == "__main__" and len(sys.argv) > 1:
    write_corpora(sys.argv[1])
