#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# TEST FIXTURE ONLY, never part of anything a user runs: a stand-in for a
# schema registry, serving the one call learnd makes, as the Confluent
# Schema Registry API reference documents it
# (https://docs.confluent.io/platform/current/schema-registry/develop/api.html,
# "GET /schemas/ids/{int: id}" and "GET /subjects/(string: subject)/versions/
# (versionId: version)"):
#   200 {"schema": "<text>"}                    Avro (schemaType omitted)
#   200 {"schemaType": "PROTOBUF", "schema": ..., "references": [...]}
#   404 {"error_code": 40403, "message": "Schema not found"}
#   401 {"error_code": 401, "message": "Unauthorized"} without the right
#       basic-auth credentials (when --user is given)
# ?format=serialized on a Protobuf schema answers its FileDescriptorProto in
# base64 instead of the .proto text (the documented "serialized" format),
# when the schema was given with a descriptor set (ID=FILE:PROTOBUF:SET,
# SET from protoc --descriptor_set_out --include_imports, holding FILE's
# basename). Its imports are then registered as subjects named by the import
# (Confluent's default reference subject name strategy), version 1, and
# listed in "references" as {"name", "subject", "version"}; with
# --skip-known-types the google/protobuf/ imports are not (as Confluent's
# serializers do by default with skip.known.types). A Protobuf schema given
# without SET is answered as text whatever the format: the part of a
# registry that ignores format=serialized.
# under an optional path prefix (Apicurio Registry serves the same API
# under /apis/ccompat/v7). No real registry could be started here: Apicurio
# publishes no runnable jar on Maven Central and Docker is absent, so
# learnd's client (pipeline/registry.c) is tested against this file.
#
# Test hooks (not in the API): GET <prefix>/_count answers the number of
# schema requests served so far, as {"count": N}.
#
# usage: fixture_registry.py [--port N] [--prefix /p] [--user U --password P]
#                            [--status-5xx N] [--skip-known-types]
#                            ID=FILE[:TYPE[:SET]] ...
# Prints "port N" on stdout once listening, then serves until killed.
import base64
import http.server
import json
import os
import sys
import urllib.parse


def varint(b, i):
    v, shift = 0, 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return v, i


def fields(b):
    """(number, wire type, value) of each field of wire-format bytes b;
    length-delimited values as bytes."""
    i = 0
    while i < len(b):
        key, i = varint(b, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(b, i)
        elif wt == 1:
            v, i = b[i:i + 8], i + 8
        elif wt == 5:
            v, i = b[i:i + 4], i + 4
        elif wt == 2:
            n, i = varint(b, i)
            v, i = b[i:i + n], i + n
        else:
            raise ValueError("wire type %d" % wt)
        yield num, wt, v


def descriptor_files(path):
    """{name: (FileDescriptorProto bytes, [imports])} of a
    FileDescriptorSet file."""
    out = {}
    with open(path, "rb") as f:
        data = f.read()
    for num, wt, fdp in fields(data):
        if num != 1 or wt != 2:
            continue
        name, deps = None, []
        for n2, w2, v in fields(fdp):
            if n2 == 1 and w2 == 2:
                name = v.decode()
            elif n2 == 3 and w2 == 2:
                deps.append(v.decode())
        out[name] = (fdp, deps)
    return out


def main():
    args = sys.argv[1:]
    port, prefix, user, password, fail5xx = 0, "", None, None, 0
    skip_known = False
    schemas = {}  # id: (text, type, FileDescriptorProto or None, references)
    subjects = {}  # (subject, version): id

    def add_subjects(files, deps):
        """Registers each import of deps (and theirs) as a subject; returns
        the references of deps."""
        refs = []
        for dep in deps:
            if skip_known and dep.startswith("google/protobuf/"):
                continue
            refs.append({"name": dep, "subject": dep, "version": 1})
            if (dep, 1) in subjects:
                continue
            fdp, sub = files[dep]
            sid = 1000 + len(subjects)
            subjects[(dep, 1)] = sid
            schemas[sid] = ("// %s (text not kept by the fixture)\n" % dep,
                            "PROTOBUF", fdp, add_subjects(files, sub))
        return refs
    while args:
        a = args.pop(0)
        if a == "--port":
            port = int(args.pop(0))
        elif a == "--prefix":
            prefix = args.pop(0).rstrip("/")
        elif a == "--user":
            user = args.pop(0)
        elif a == "--password":
            password = args.pop(0)
        elif a == "--status-5xx":
            fail5xx = int(args.pop(0))
        elif a == "--skip-known-types":
            skip_known = True
        else:
            sid, spec = a.split("=", 1)
            path, stype, dset = (spec.split(":") + [None, None])[:3]
            with open(path, encoding="utf-8") as f:
                schemas[int(sid)] = (f.read(), stype or None, None, [])
            if dset:
                files = descriptor_files(dset)
                name = os.path.basename(path)
                fdp, deps = files[name]
                refs = add_subjects(files, deps)
                schemas[int(sid)] = (schemas[int(sid)][0], stype, fdp, refs)
    state = {"count": 0, "fail5xx": fail5xx}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def answer(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type",
                             "application/vnd.schemaregistry.v1+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if user is not None:
                want = "Basic " + base64.b64encode(
                    ("%s:%s" % (user, password)).encode()).decode()
                if self.headers.get("Authorization") != want:
                    self.answer(401, {"error_code": 401,
                                      "message": "Unauthorized"})
                    return
            if self.path == prefix + "/_count":
                self.answer(200, {"count": state["count"]})
                return
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            serialized = query.get("format") == ["serialized"]
            head = prefix + "/schemas/ids/"
            shead = prefix + "/subjects/"
            sid, subject = -1, None
            if url.path.startswith(head):
                try:
                    sid = int(url.path[len(head):])
                except ValueError:
                    pass
            elif url.path.startswith(shead) and "/versions/" in url.path:
                subject, _, ver = url.path[len(shead):].partition("/versions/")
                subject = urllib.parse.unquote(subject)
                try:
                    sid = subjects.get((subject, int(ver)), -1)
                except ValueError:
                    pass
            else:
                self.answer(404, {"error_code": 404, "message": "HTTP 404 Not Found"})
                return
            state["count"] += 1
            if state["fail5xx"] > 0:
                state["fail5xx"] -= 1
                self.answer(503, {"error_code": 50003,
                                  "message": "Error while forwarding the request"})
                return
            if sid not in schemas:
                if subject is not None:
                    self.answer(404, {"error_code": 40401,
                                      "message": "Subject not found"})
                    return
                self.answer(404, {"error_code": 40403,
                                  "message": "Schema %d not found" % sid})
                return
            text, stype, fdp, refs = schemas[sid]
            body = {"schema": text}
            if serialized and fdp is not None:
                body["schema"] = base64.b64encode(fdp).decode()
            if stype:
                body["schemaType"] = stype
            if refs:
                body["references"] = refs
            if subject is not None:
                body.update({"subject": subject, "version": 1, "id": sid})
            self.answer(200, body)

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print("port %d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
