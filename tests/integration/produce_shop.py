#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# Producer of tests/integration/0016-python-protobuf.c: the JSON fixtures of
# tests/data/pipeline as a user's own Protobuf messages (shop.v1.Impression
# / Click of tests/data/pipeline/pbdesc/shop.proto), encoded by the official
# Python protobuf runtime (shop_pb2 from grpc_tools.protoc) and produced by
# confluent-kafka with Confluent framing: magic 0, schema id 7, message-index
# path [0] (Impression) or [1] (Click). Each record goes to partition
# FNV-1a-32(key) % PARTITIONS, in fixture order, as the test's Avro
# producer does, so both streams have the same partitions and offsets.
#
# usage: produce_shop.py BOOTSTRAP GEN_DIR FIXTURE_DIR EVENTS LABELS PARTITIONS
import json
import sys

from confluent_kafka import Producer

KDELIM = b"\xf1\xf2\xf3\xf4"
DELIM = b"\xf5\xf6\xf7\xf8"


def fnv1a(data):
    h = 2166136261
    for b in data:
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def records(path):
    with open(path, "rb") as f:
        for chunk in f.read().split(DELIM):
            if chunk:
                k, v = chunk.split(KDELIM, 1)
                yield k, json.loads(v)


def impression(shop_pb2, j):
    m = shop_pb2.Impression()
    m.event_id = j["event_id"]
    m.event_time.seconds = j["event_time"] // 1000
    m.event_time.nanos = (j["event_time"] % 1000) * 1000000
    for k in range(19):
        setattr(m, "f%d" % k, j["f%d" % k])
    m.m.f19 = j["m"]["f19"]
    m.country = j["country"]
    m.ad_id = j["ad_id"]
    m.device = shop_pb2.Device.Value(j["device"])
    m.publisher = j["publisher"]
    if j["user_segment"] is not None:
        m.user_segment.value = j["user_segment"]
    m.tags.extend(j["tags"])
    return m


def click(shop_pb2, j):
    return shop_pb2.Click(event_id=j["event_id"], label_time=j["label_time"],
                          clicked=j["clicked"])


def main():
    bootstrap, gen, fixtures, events, labels, parts = sys.argv[1:7]
    sys.path.insert(0, gen)
    import shop_pb2  # noqa: E402 (generated into GEN_DIR by the test)

    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    n = 0
    for topic, kind, header, build in (
            (events, "events", b"\x00\x00\x00\x00\x07\x00", impression),
            (labels, "labels", b"\x00\x00\x00\x00\x07\x02\x02", click)):
        for key, j in records("%s/%s-json.kcat" % (fixtures, kind)):
            value = header + build(shop_pb2, j).SerializeToString()
            p.produce(topic, value=value, key=key,
                      partition=fnv1a(key) % int(parts))
            p.poll(0)
            n += 1
    left = p.flush(60)
    if left:
        sys.exit("produce_shop.py: %d records not delivered" % left)
    print("produce_shop.py: %d records" % n)


if __name__ == "__main__":
    main()
