#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# Writes the seed corpus of tests/fuzz/fuzz_decode_pbdesc.c: shop.v1
# messages (shop.proto) encoded by hand from the Protobuf wire-format spec
# with the standard library only, covering every construct the
# descriptor-driven decoder handles (Timestamp, nested message, enum,
# wrapper, repeated string, packed and unpacked repeated enum, both maps,
# oneof, sint64, unknown fields of every wire type, groups).
# With --fixtures it also writes events-pbdesc.kcat and labels-pbdesc.kcat:
# the JSON fixtures (tests/data/pipeline/*-json.kcat) as shop.v1.Impression /
# Click, for bench_ingest and bench_pbdesc (test_pbdesc checks they decode
# to what the JSON decoder gives).
# usage: gen_seeds.py OUTDIR [--fixtures FIXTURE_DIR]
import json
import os
import struct
import sys


def varint(v):
    v &= (1 << 64) - 1
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def tag(num, wt):
    return varint(num << 3 | wt)


def ln(num, payload):
    return tag(num, 2) + varint(len(payload)) + payload


def s(num, text):
    return ln(num, text.encode())


def vi(num, v):
    return tag(num, 0) + varint(v)


def f32(num, x):
    return tag(num, 5) + struct.pack("<f", x)


def f64(num, x):
    return tag(num, 1) + struct.pack("<d", x)


def zz(v):
    return (v << 1) ^ (v >> 63)


def ts(num, ms):
    return ln(num, vi(1, ms // 1000) + vi(2, (ms % 1000) * 1000000))


def impression(i):
    b = s(1, "ev-%05d" % i) + ts(2, 1700000000000 + 137 * i)
    for k in range(19):
        b += f32(3 + k, (k - 9) * 0.25 * (i + 1))
    b += ln(22, f32(1, 1.5 * i))
    b += s(23, ["DE", "FR", "US"][i % 3]) + s(24, "ad-%d" % i)
    b += vi(25, 1 + i % 4) + s(26, "pub%d.example" % i)
    if i % 2:
        b += ln(27, s(1, "seg%d" % i))
    for t in ["sports", "news", "Grüße"][: i % 4]:
        b += s(28, t)
    b += ln(29, s(1, "ctr") + f64(2, 0.01 * i))
    b += ln(30, s(1, "browser") + s(2, "firefox"))
    b += s(31, "top") if i % 2 else vi(32, i)
    b += vi(33, 1700000000000 + i)
    b += ln(34, varint(1) + varint(4)) + vi(34, 2)
    b += ln(35, f64(1, 0.5 * i)) + vi(36, zz(-i))
    return b


def click(i):
    return s(1, "ev-%05d" % i) + vi(2, 1700000001000 + i) + vi(3, i % 2)


KDELIM = b"\xf1\xf2\xf3\xf4"
DELIM = b"\xf5\xf6\xf7\xf8"
DEVICES = {"desktop": 1, "mobile": 2, "tablet": 3, "tv": 4}


def from_json(j):
    """Impression or Click with the values of a JSON fixture record."""
    if "label_time" in j:
        b = s(1, j["event_id"]) + vi(2, j["label_time"])
        return b + (vi(3, 1) if j["clicked"] else b"")
    b = s(1, j["event_id"]) + ts(2, j["event_time"])
    for k in range(19):
        if j["f%d" % k] != 0:
            b += f32(3 + k, j["f%d" % k])
    b += ln(22, f32(1, j["m"]["f19"]) if j["m"]["f19"] != 0 else b"")
    b += s(23, j["country"]) + s(24, j["ad_id"])
    b += vi(25, DEVICES[j["device"]]) + s(26, j["publisher"])
    if j["user_segment"] is not None:
        b += ln(27, s(1, j["user_segment"]))
    for t in j["tags"]:
        b += s(28, t)
    return b


def split_kcat(data):
    recs = []
    for chunk in data.split(DELIM):
        if chunk:
            k, v = chunk.split(KDELIM, 1)
            recs.append((k, v))
    return recs


def fixtures(src, out):
    for kind in ("events", "labels"):
        with open(os.path.join(src, kind + "-json.kcat"), "rb") as f:
            recs = split_kcat(f.read())
        with open(os.path.join(out, kind + "-pbdesc.kcat"), "wb") as f:
            for k, v in recs:
                f.write(k + KDELIM + from_json(json.loads(v)) + DELIM)


def main():
    out = sys.argv[1]
    if len(sys.argv) == 4 and sys.argv[2] == "--fixtures":
        fixtures(sys.argv[3], sys.argv[3])
    os.makedirs(out, exist_ok=True)
    seeds = {"impression-%d" % i: impression(i) for i in range(4)}
    seeds.update({"click-%d" % i: click(i) for i in range(2)})
    unknown = (vi(99, 1 << 62) + tag(100, 1) + b"\xff" * 8 + s(101, "junk")
               + tag(102, 3) + vi(1, 5) + tag(102, 4) + tag(103, 5) + b"\0" * 4)
    seeds["unknown"] = impression(5) + unknown
    seeds["confluent"] = b"\x00\x00\x00\x00\x07\x00" + impression(6)
    seeds["empty-map-entry"] = s(1, "e") + vi(33, 1) + ln(29, b"") + ln(30, s(1, "browser"))
    for name, b in seeds.items():
        with open(os.path.join(out, name + ".bin"), "wb") as f:
            f.write(b)


if __name__ == "__main__":
    main()
