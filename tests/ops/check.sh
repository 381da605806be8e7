#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Checks what operators install next to the binary, with the tools they
# would use: the Grafana dashboard (JSON, datasource, and every PromQL
# expression in it through `promtool check rules`), the Prometheus alert
# rules (`promtool check rules` and their unit tests), the man page
# (`mandoc -Tlint`), the systemd unit (`systemd-analyze verify`, where
# systemd runs) and docker-compose.yml (`docker-compose config -q`).
#
# Usage: tests/ops/check.sh [LEARND]   (LEARND: a built learnd binary, for
# the unit's ExecStart; default build/daemon/learnd). Installs missing tools
# with apt-get when run as root (Debian: prometheus ships promtool, mandoc,
# docker-compose, systemd). Exits 1 on the first failed check.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
learnd=${1:-$src/build/daemon/learnd}
work=$(mktemp -d "${TMPDIR:-/tmp}/ld-ops.XXXXXX")
trap 'rm -rf "$work"' EXIT

say() { echo "check.sh: $*"; }
fail() { echo "check.sh: FAIL: $*" >&2; exit 1; }

# Installs the Debian packages whose commands are missing.
need() { # need COMMAND PACKAGE
    command -v "$1" >/dev/null && return 0
    if [ "$(id -u)" -ne 0 ]; then
        fail "$1 not found: apt-get install $2"
    fi
    say "installing $2 (for $1)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$2" \
        >"$work/apt.log" 2>&1 ||
        { apt-get update -q >>"$work/apt.log" 2>&1 &&
          DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$2" \
              >>"$work/apt.log" 2>&1; } ||
        { tail -n 20 "$work/apt.log" >&2; fail "apt-get install $2"; }
}
need promtool prometheus
need mandoc mandoc
need docker-compose docker-compose
need python3 python3

# ---- Grafana dashboard --------------------------------------------------------
# Valid JSON, unique panel ids, every panel on the provisioned Prometheus
# datasource, and every expression (panels and annotations) into a rules
# file for promtool, with Grafana's template variables given a value.
dash=$src/packaging/grafana/learnd.json
python3 - "$dash" "$src/packaging/grafana/provisioning/datasources/prometheus.yml" \
    "$work/dashboard-rules.yml" <<'EOF' || fail "packaging/grafana/learnd.json"
import json, re, sys
dash_path, ds_path, out = sys.argv[1:4]
d = json.load(open(dash_path))
uid = re.search(r"^\s*uid:\s*(\S+)", open(ds_path).read(), re.M).group(1)
errors, exprs, ids = [], [], set()
if d.get("uid") != "learnd" or not d.get("title"):
    errors.append("dashboard uid/title")
variables = {v["name"]: v.get("allValue", ".*") for v in d["templating"]["list"]}
def walk(panels):
    for p in panels:
        yield p
        yield from walk(p.get("panels", []))
for p in walk(d["panels"]):
    if p["id"] in ids:
        errors.append(f"panel id {p['id']} twice")
    ids.add(p["id"])
    if p["type"] == "row":
        continue
    if p.get("datasource", {}).get("uid") != uid:
        errors.append(f"panel {p['title']!r}: datasource is not uid {uid}")
    if not p.get("targets"):
        errors.append(f"panel {p['title']!r}: no targets")
    for t in p.get("targets", []):
        exprs.append((p["title"], t["expr"]))
for a in d.get("annotations", {}).get("list", []):
    if "expr" in a:
        exprs.append(("annotation " + a["name"], a["expr"]))
def subst(e):
    for k, v in variables.items():
        e = e.replace("$" + k, v)
    if "$" in e:
        errors.append(f"unknown variable in {e!r}")
    return e
with open(out, "w") as f:
    f.write("groups:\n  - name: grafana-dashboard\n    rules:\n")
    for i, (title, e) in enumerate(exprs):
        f.write(f"      # {title}\n      - record: dashboard:expr_{i}\n"
                f"        expr: {json.dumps(subst(e))}\n")
with open(out + ".names", "w") as f:
    for title, e in exprs:
        for name in sorted(set(re.findall(r"\blearnd_[a-z_]+", e))):
            f.write(f"{name} {title}\n")
if errors:
    sys.exit("\n".join(errors))
print(f"check.sh: dashboard: {len(ids)} panels, {len(exprs)} expressions")
EOF
promtool check rules "$work/dashboard-rules.yml" >"$work/promtool.log" 2>&1 ||
    { cat "$work/promtool.log" >&2; fail "a dashboard expression does not parse"; }
# Every learnd_* name in the dashboard and the alert rules is a family the
# daemon declares (daemon/run.c, ld_metrics_family), so renames break here.
cat "$src"/daemon/*.c | tr '\n' ' ' | grep -o 'ld_metrics_family([^"]*"[a-z_]*"' |
    sed 's/.*"\([a-z_]*\)"/learnd_\1/' | sort -u >"$work/exported"
[ -s "$work/exported" ] || fail "no metric family found in daemon/*.c"
grep -ho 'learnd_[a-z_]*' "$src/packaging/prometheus/learnd-alerts.yml" |
    sed 's/$/ learnd-alerts.yml/' >>"$work/dashboard-rules.yml.names"
while read -r name where; do
    grep -qx "$name" "$work/exported" ||
        fail "$where uses $name, which learnd does not export (daemon/run.c)"
done <"$work/dashboard-rules.yml.names"
say "dashboard: every expression parses and names exported metrics"

# ---- Prometheus alert rules ------------------------------------------------------
promtool check rules "$src/packaging/prometheus/learnd-alerts.yml" ||
    fail "packaging/prometheus/learnd-alerts.yml"
promtool test rules "$src/packaging/prometheus/learnd-alerts.test.yml" ||
    fail "packaging/prometheus/learnd-alerts.test.yml"

# ---- Man page --------------------------------------------------------------------
mandoc -Tlint -W warning "$src/docs/learnd.1" || fail "mandoc -Tlint docs/learnd.1"
# Every verb of `learnd --help` has a section in the man page.
if [ -x "$learnd" ]; then
    for verb in $("$learnd" --help | sed -n 's/^  \([a-z]\+\) .*/\1/p' | sort -u); do
        grep -q "^\.B[I]* \"*$verb\b" "$src/docs/learnd.1" ||
            fail "docs/learnd.1 has no entry for '$verb' (learnd --help lists it)"
    done
fi
say "man page: mandoc -Tlint clean, every verb described"

# ---- systemd unit ------------------------------------------------------------------
# The unit as cmake configures it, with the binary and config where this
# checkout has them (verify wants ExecStart's binary to exist).
if command -v systemd-analyze >/dev/null && [ -x "$learnd" ]; then
    mkdir -p "$work/unit"
    sed -e "s|@LD_FULL_BINDIR@|$(cd "$(dirname "$learnd")" && pwd)|g" \
        -e "s|@LD_FULL_SYSCONFDIR@|$work/etc|g" \
        -e "s|@LD_FULL_DOCDIR@|$src/docs|g" \
        "$src/packaging/learnd.service.in" >"$work/unit/learnd.service"
    grep -q '@LD_' "$work/unit/learnd.service" &&
        fail "learnd.service.in has a placeholder this check does not fill"
    # Without a running systemd (containers) verify cannot load units from
    # the manager; --man=no: man:learnd(1) is not installed here.
    # It exits 0 on what it "ignores" (a bad value, an unknown key): any
    # output is a finding.
    if systemd-analyze verify --man=no "$work/unit/learnd.service" \
        >"$work/verify.log" 2>&1 && [ ! -s "$work/verify.log" ]; then
        say "systemd unit: systemd-analyze verify clean"
    elif grep -q 'System has not been booted with systemd\|Failed to connect to bus\|Failed to initialize manager' \
        "$work/verify.log"; then
        say "systemd unit: skipped (no systemd here): $(head -n 1 "$work/verify.log")"
    else
        cat "$work/verify.log" >&2
        fail "systemd-analyze verify packaging/learnd.service.in"
    fi
else
    say "systemd unit: skipped (no systemd-analyze or no $learnd)"
fi

# ---- docker-compose.yml ---------------------------------------------------------------
(cd "$src" && docker-compose -f docker-compose.yml config -q) ||
    fail "docker-compose.yml"
for f in packaging/grafana/learnd.json packaging/grafana/provisioning \
    packaging/prometheus/prometheus.yml packaging/prometheus/learnd-alerts.yml; do
    grep -q "\./$f:" "$src/docker-compose.yml" || fail "docker-compose.yml does not mount $f"
done
say "docker-compose.yml: valid, mounts the dashboard and the Prometheus files"
say "all checks passed"
