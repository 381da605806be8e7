#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Checks the rollout-tool examples of docs/EXPERIMENTS.md: the Argo Rollouts
AnalysisTemplate (Web provider), the Flagger MetricTemplate and the Canary
analysis that uses it parse as YAML, have the keys each tool requires, and
name what learnd serves: the JSONPath resolves in a real /experiments/<name>
document (written by test_experiments), the verdicts compared are learnd's,
the metric queried is one learnd exports.

    docs_experiments.py DOC STATE_JSON SOURCE_DIR
"""
import json
import re
import sys

import yaml

VERDICTS = {"CONTINUE", "PROMOTE", "ROLLBACK", "INCONCLUSIVE"}


def blocks(doc):
    """The ```yaml blocks whose first line is '# learnd-<name>'."""
    out = {}
    for body in re.findall(r"```yaml\n(.*?)```", doc, re.S):
        first = body.splitlines()[0]
        if first.startswith("# learnd-"):
            out[first[2:].strip()] = yaml.safe_load(body)
    return out


def need(cond, what):
    if not cond:
        sys.exit("docs_experiments: " + what)


def check_argo(t, state):
    need(t.get("apiVersion") == "argoproj.io/v1alpha1", "argo: apiVersion")
    need(t.get("kind") == "AnalysisTemplate", "argo: kind")
    need(t["metadata"].get("name"), "argo: metadata.name")
    spec = t["spec"]
    args = {a["name"] for a in spec.get("args", [])}
    need(spec.get("metrics"), "argo: spec.metrics")
    for m in spec["metrics"]:
        need(m.get("name"), "argo: metric name")
        web = m["provider"]["web"]
        url = web["url"]
        need(url.startswith("http"), "argo: url")
        for a in re.findall(r"\{\{args\.([\w-]+)\}\}", url):
            need(a in args, "argo: url uses undeclared arg " + a)
        need(re.search(r"/experiments/\{\{args\.[\w-]+\}\}$", url),
             "argo: url is not /experiments/<name>")
        path = re.fullmatch(r"\{\$\.(\w+)\}", web["jsonPath"])
        need(path, "argo: jsonPath is not {$.key}")
        need(path.group(1) in state,
             "argo: jsonPath key %s not in /experiments/<name>" % path.group(1))
        conds = [m.get("successCondition"), m.get("failureCondition")]
        need(any(conds), "argo: no success or failure condition")
        for c in filter(None, conds):
            need("result" in c, "argo: condition without result: " + c)
            for v in re.findall(r'"([A-Z]+)"', c):
                need(v in VERDICTS, "argo: %s is not a learnd verdict" % v)


def check_flagger(t, src):
    need(t.get("apiVersion") == "flagger.app/v1beta1", "flagger: apiVersion")
    need(t.get("kind") == "MetricTemplate", "flagger: kind")
    need(t["metadata"].get("name"), "flagger: metadata.name")
    p = t["spec"]["provider"]
    need(p.get("type") in {"prometheus", "datadog", "cloudwatch", "newrelic",
                           "graphite", "influxdb", "dynatrace",
                           "stackdriver"}, "flagger: provider.type")
    need(p.get("address", "").startswith("http"), "flagger: provider.address")
    q = t["spec"]["query"]
    for name in re.findall(r"learnd_(\w+)\{", q):
        need(('"%s"' % name) in src,
             "flagger: learnd_%s is not a metric learnd exports" % name)
    need(re.findall(r"learnd_\w+", q), "flagger: the query reads no learnd metric")


def check_canary(a, template):
    an = a["analysis"]
    need(an.get("interval"), "canary: analysis.interval")
    refs = [m for m in an["metrics"] if "templateRef" in m]
    need(refs, "canary: no metric uses the template")
    for m in refs:
        need(m["templateRef"]["name"] == template["metadata"]["name"],
             "canary: templateRef names another template")
        tr = m["thresholdRange"]
        need("min" in tr or "max" in tr, "canary: thresholdRange")
        need(tr.get("max", 1) >= 1 and tr.get("max", 1) < 2,
             "canary: max must pass PROMOTE (1) and fail ROLLBACK (2)")


def main():
    doc_path, state_path, src_dir = sys.argv[1:4]
    b = blocks(open(doc_path, encoding="utf-8").read())
    for k in ("learnd-analysis-template", "learnd-flagger-metric-template",
              "learnd-flagger-canary-analysis"):
        need(k in b, "block %s missing" % k)
    state = json.load(open(state_path))
    src = open(src_dir + "/daemon/run_exp.c").read()
    check_argo(b["learnd-analysis-template"], state)
    check_flagger(b["learnd-flagger-metric-template"], src)
    check_canary(b["learnd-flagger-canary-analysis"],
                 b["learnd-flagger-metric-template"])
    print("docs_experiments: 3 examples ok")


if __name__ == "__main__":
    main()
