#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# TEST FIXTURE ONLY, never part of anything a user runs: a stand-in for a
# schema registry, serving the one call learnd makes, as the Confluent
# Schema Registry API reference documents it
# (https://docs.confluent.io/platform/current/schema-registry/develop/api.html,
# "GET /schemas/ids/{int: id}"):
#   200 {"schema": "<text>"}                    Avro (schemaType omitted)
#   200 {"schemaType": "PROTOBUF", "schema": ...} other types
#   404 {"error_code": 40403, "message": "Schema not found"}
#   401 {"error_code": 401, "message": "Unauthorized"} without the right
#       basic-auth credentials (when --user is given)
# under an optional path prefix (Apicurio Registry serves the same API
# under /apis/ccompat/v7). No real registry could be started here: Apicurio
# publishes no runnable jar on Maven Central and Docker is absent, so
# learnd's client (pipeline/registry.c) is tested against this file.
#
# Test hooks (not in the API): GET <prefix>/_count answers the number of
# schema requests served so far, as {"count": N}.
#
# usage: fixture_registry.py [--port N] [--prefix /p] [--user U --password P]
#                            [--status-5xx N] ID=FILE[:TYPE] ...
# Prints "port N" on stdout once listening, then serves until killed.
import base64
import http.server
import json
import sys


def main():
    args = sys.argv[1:]
    port, prefix, user, password, fail5xx = 0, "", None, None, 0
    schemas = {}
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
        else:
            sid, spec = a.split("=", 1)
            path, _, stype = spec.partition(":")
            with open(path, encoding="utf-8") as f:
                schemas[int(sid)] = (f.read(), stype or None)
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
            head = prefix + "/schemas/ids/"
            if not self.path.startswith(head):
                self.answer(404, {"error_code": 404, "message": "HTTP 404 Not Found"})
                return
            state["count"] += 1
            if state["fail5xx"] > 0:
                state["fail5xx"] -= 1
                self.answer(503, {"error_code": 50003,
                                  "message": "Error while forwarding the request"})
                return
            try:
                sid = int(self.path[len(head):])
            except ValueError:
                sid = -1
            if sid not in schemas:
                self.answer(404, {"error_code": 40403,
                                  "message": "Schema %d not found" % sid})
                return
            text, stype = schemas[sid]
            body = {"schema": text}
            if stype:
                body["schemaType"] = stype
            self.answer(200, body)

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print("port %d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
