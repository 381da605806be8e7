#!/bin/sh
# Checks learnd's command line: exit codes 0 / 2, help, version, config check.
# usage: cli.sh LEARND TESTDATA
set -u
learnd=$1 data=$2
fails=0 passes=0
out=$(mktemp) err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT

# expect NAME CODE GREP-IN-OUTPUT -- ARGS...: runs learnd ARGS, checks the exit
# code and that stdout+stderr contain the fixed string.
expect() {
  name=$1 code=$2 text=$3; shift 4
  "$learnd" "$@" >"$out" 2>"$err"
  rc=$?
  if [ "$rc" -ne "$code" ]; then
    echo "FAIL $name: exit $rc, want $code"; cat "$out" "$err"; fails=$((fails+1)); return
  fi
  if ! cat "$out" "$err" | grep -qF -- "$text"; then
    echo "FAIL $name: output lacks '$text'"; cat "$out" "$err"; fails=$((fails+1)); return
  fi
  passes=$((passes+1))
}

expect help 0 "usage: learnd <command>" -- --help
expect version 0 "librdkafka 2." -- --version
expect no-verb 2 "missing command" --
expect bad-verb 2 "unknown command 'frobnicate'" -- frobnicate
expect config-help 0 "usage: learnd config check" -- config --help
expect check-no-file 2 "config check needs -c FILE" -- config check
expect check-valid 0 "valid.yaml: ok" -- config check -c "$data/config/valid.yaml"
expect check-three 2 "three-errors.yaml:7:14: pipeline.hash_seed: value -1 out of range [0, 4294967295]" \
  -- config check -c "$data/config/three-errors.yaml"
expect check-missing 2 "cannot open" -- config check -c /nonexistent/learnd.yaml
LD_TEST_SECRET=never-shown expect print-redacts 0 'sasl.password: "<redacted>"' \
  -- config check --print -c "$data/config/valid.yaml"
if LD_TEST_SECRET=never-shown "$learnd" config check --print -c "$data/config/valid.yaml" 2>&1 \
   | grep -q never-shown; then
  echo "FAIL secret printed"; fails=$((fails+1))
else
  passes=$((passes+1))
fi
expect inspect-good 0 "version" -- inspect "$data/trainer/small.ckpt"
expect inspect-json 0 '"version"' -- inspect "$data/trainer/small.ckpt" --json
expect inspect-corrupt 1 "checksum mismatch" -- inspect "$data/trainer/corrupt.ckpt"
expect inspect-truncated 1 "truncated.ckpt" -- inspect "$data/trainer/truncated.ckpt"
expect inspect-usage 2 "usage" -- inspect
# All three errors of the acceptance file, each with file:line:column.
"$learnd" config check -c "$data/config/three-errors.yaml" 2>"$err"
n=$(grep -cE '^[^:]+three-errors.yaml:[0-9]+:[0-9]+: pipeline\.' "$err")
if [ "$n" -eq 3 ]; then passes=$((passes+1)); else
  echo "FAIL three-errors: $n located errors, want 3"; cat "$err"; fails=$((fails+1)); fi

echo "cli: $passes passed, $fails failed"
[ "$fails" -eq 0 ]
