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
  timeout 20 "$learnd" "$@" >"$out" 2>"$err"
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
expect check-no-file 2 "learnd config check: needs -c FILE" -- config check
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
# Control bytes in a checkpoint's strings are escaped, never sent raw to a
# terminal (issue 15 item 7).
expect inspect-escapes 0 'model              m\x1b]0;pwned\x07\x1b[2J version 1' \
  -- inspect "$data/trainer/hostile-strings.ckpt"
expect inspect-escapes-crlf 0 'trigger_id         t\x0d\x0aversion 999\x7f' \
  -- inspect "$data/trainer/hostile-strings.ckpt"
expect inspect-json-escapes 0 '"model":"m\u001b]0;pwned\u0007\u001b[2J"' \
  -- inspect --json "$data/trainer/hostile-strings.ckpt"
for fmt in "" --json; do
  "$learnd" inspect $fmt "$data/trainer/hostile-strings.ckpt" >"$out" 2>&1
  if LC_ALL=C grep -q "$(printf '[\001-\010\013-\037\177]')" "$out"; then
    echo "FAIL inspect $fmt printed a raw control byte"; fails=$((fails+1))
  else
    passes=$((passes+1))
  fi
done
# All three errors of the acceptance file, each with file:line:column.
"$learnd" config check -c "$data/config/three-errors.yaml" 2>"$err"
n=$(grep -cE '^[^:]+three-errors.yaml:[0-9]+:[0-9]+: pipeline\.' "$err")
if [ "$n" -eq 3 ]; then passes=$((passes+1)); else
  echo "FAIL three-errors: $n located errors, want 3"; cat "$err"; fails=$((fails+1)); fi

# Issue 15 item 6: what `run` refuses, `config check` finds, and both exit 2
# with file:line:column and the key. The broker address is a closed port:
# `run` must stop at the config and never reach Kafka (exit 124 from the
# 20 s timeout, or 1, would mean it went further).
schemas=$(cd "$data/../../schemas" && pwd)
base=$(mktemp) bad=$(mktemp)
trap 'rm -f "$out" "$err" "$base" "$bad"' EXIT
cat >"$base" <<EOF
kafka:
  bootstrap.servers: 127.0.0.1:1
trainer:
  name: ctr
metrics:
  port: 0
pipeline:
  events_topic: events
  labels_topic: labels
  event_schema: $schemas/event.avsc
  label_schema: $schemas/label.avsc
  key_field: event_id
  label_field: clicked
  dense_fields: [f0, f1]
  hash_fields: [country, ad_id]
  crosses: [[country, ad_id]]
EOF
expect base-valid 0 ": ok" -- config check -c "$base"
# refused LINE REPLACEMENT WANT: the base with line LINE replaced is refused
# by both commands with WANT after the file name.
refused() {
  awk -v n="$1" -v t="$2" 'NR == n { print t; next } { print }' "$base" >"$bad"
  expect "check:$2" 2 "$bad:$3" -- config check -c "$bad"
  expect "run:$2" 2 "$bad:$3" -- run -c "$bad" --until-caught-up
}
refused 14 "  dense_fields: [f0, nope]" "14:22: pipeline.dense_fields[1]: field 'nope'"
refused 15 "  hash_fields: [country, ad_id, zzz]" "15:33: pipeline.hash_fields[2]: field 'zzz'"
refused 13 "  label_field: clickd" "13:16: pipeline.label_field: field 'clickd'"
refused 13 "  label_field: clicked
  label_mode: equals" "7:1: pipeline.label_equals: empty with label_mode equals"
refused 13 "  label_field: clicked
  label_mode: equals
  label_equals: \"\"" "15:17: pipeline.label_equals: empty with label_mode equals"
refused 12 "  key_field: id" "12:14: pipeline.key_field: field 'id'"
refused 12 "  event_time_field: ts" "12:21: pipeline.event_time_field: field 'ts'"
refused 16 "  crosses: [[country, nope]]" "16:13: pipeline.crosses[0]: 'nope' is not a namespace"
refused 11 "  label_schema: /nonexistent.avsc" "11:17: pipeline.label_schema: cannot read schema"
refused 6 "  listen: localhost" "6:11: metrics.listen: 'localhost' is not an IPv4 or IPv6 address"
refused 8 '  events_topic: ""' "8:17: pipeline.events_topic: empty topic name"
refused 2 "  no.such.property: 1" "2:3: kafka.no.such.property: unknown librdkafka property"
refused 2 '  bootstrap.servers: ${LEARND_BOOT' "2:22: kafka.bootstrap.servers: unterminated"
refused 4 "  name: ../../etc" "4:9: trainer.name: '../../etc' is not a model name"
refused 4 "  name: /abs" "4:9: trainer.name: '/abs' is not a model name"
refused 4 "  name: a/b" "4:9: trainer.name: 'a/b' is not a model name"
refused 4 '  name: ""' "4:9: trainer.name: '' is not a model name"
refused 9 "  labels_topic: labels
  dlq_topic: events" "10:14: pipeline.dlq_topic: 'events' is also pipeline.events_topic"

# Issue 17: getopt_long conventions. The value of an option in any of its
# forms; options and operands in any order; unique prefixes.
valid=$data/config/valid.yaml
expect long-equals 0 "valid.yaml: ok" -- config check --config="$valid"
expect long-space 0 "valid.yaml: ok" -- config check --config "$valid"
expect short-joined 0 "valid.yaml: ok" -- config check -c"$valid"
expect prefix 0 "valid.yaml: ok" -- config check --conf="$valid"
expect print-first 0 'sasl.password: "<redacted>"' -- config check --print --config="$valid"
expect json-first 0 '"version"' -- inspect --json "$data/trainer/small.ckpt"
expect dashdash 2 "learnd inspect: one FILE only, not also '--json'" \
  -- inspect -- "$data/trainer/small.ckpt" --json
# A usage error names the option as typed, prints the verb's usage after
# it, and exits 2 before anything runs (the config below does not exist:
# reading it would be exit 2 with "cannot open", the broker exit 1).
expect run-c-missing 2 "learnd run: option '-c' requires a value" -- run -c
expect run-config-missing 2 "learnd run: option '--config' requires a value" -- run --config
expect run-config-empty 2 "learnd run: option '--config' requires a non-empty value" -- run --config=
expect run-c-empty 2 "learnd run: option '-c' requires a non-empty value" -- run -c ""
expect run-config-empty-sep 2 "learnd run: option '--config' requires a non-empty value" -- run --config ""
expect run-role-bad 2 "learnd run: --role is all, join or train, not 'x'" -- run -c x.yaml --role x
expect run-unknown 2 "learnd run: unknown option '--frob'" -- run -c /nonexistent.yaml --frob
expect run-unknown-value 2 "learnd run: unknown option '--frob'" -- run --frob=1 -c /nonexistent.yaml
expect run-unknown-short 2 "learnd run: unknown option '-x'" -- run -x -c /nonexistent.yaml
expect run-no-value 2 "learnd run: option '--from-scratch' takes no value" \
  -- run -c /nonexistent.yaml --from-scratch=yes
expect run-operand 2 "learnd run: unexpected argument 'extra'" -- run -c /nonexistent.yaml extra
expect run-usage-after 2 "usage: learnd run -c FILE" -- run --frob
expect run-needs-c 2 "learnd run: needs -c FILE" -- run --until-caught-up
expect replay-missing 2 "learnd replay: option '--checkpoint' requires a value" \
  -- replay -c /nonexistent.yaml --checkpoint
expect replay-unknown 2 "learnd replay: unknown option '--verfy'" -- replay --verfy
expect replay-needs 2 "learnd replay: needs -c FILE and --checkpoint" -- replay -c /nonexistent.yaml
expect demo-missing 2 "learnd demo: option '--events' requires a value" -- demo --events
expect demo-missing-json 2 "learnd demo: option '--summary-json' requires a value" -- demo --summary-json
expect demo-ambiguous 2 "learnd demo: ambiguous option '--s' (--seed, --summary-json, --svg)" -- demo --s 1
expect demo-unknown 2 "learnd demo: unknown option '--bootstrapp'" -- demo --bootstrapp x:1
expect demo-bad-events 2 "learnd demo: --events needs a number >= 50000, not '12'" -- demo --events=12
expect demo-bad-seed 2 "learnd demo: --seed needs a number, not '-1'" -- demo --seed=-1
expect demo-run-id-alone 2 "--run-id needs --bootstrap" -- demo --run-id a
expect inspect-unknown 2 "learnd inspect: unknown option '--jsn'" -- inspect --jsn "$data/trainer/small.ckpt"
expect inspect-none 2 "learnd inspect: needs FILE" -- inspect --json
expect config-doc-extra 2 "learnd config doc: unexpected argument 'x'" -- config doc x
expect config-doc-option 2 "learnd config doc: unknown option '--print'" -- config doc --print
expect config-none 2 "learnd config: missing command (check or doc)" -- config
expect config-unknown 2 "learnd config: unknown command 'frob'" -- config frob
expect check-c-missing 2 "learnd config check: option '-c' requires a value" -- config check -c
expect top-unknown 2 "learnd: unknown option '--frob'" -- --frob

# Every verb's --help (and -h) lists every option the verb takes, on
# stdout with exit 0, and the man page names each of them too.
man=$data/../../docs/learnd.1
helps() { # helps VERB... -- OPTION...
  verb=
  while [ "$1" != -- ]; do verb="$verb $1"; shift; done; shift
  for h in --help -h; do
    # shellcheck disable=SC2086
    if ! "$learnd" $verb $h >"$out" 2>"$err" || [ -s "$err" ]; then
      echo "FAIL$verb $h: exit or stderr"; cat "$err"; fails=$((fails+1)); continue
    fi
    for o in "$@"; do
      if grep -qE -- "(^|[ ,\[])$o([ =,]|$)" "$out"; then passes=$((passes+1)); else
        echo "FAIL$verb $h does not list $o"; cat "$out"; fails=$((fails+1)); fi
    done
  done
  for o in "$@"; do
    m=$(printf '%s' "$o" | sed 's/-/\\-/g')
    if grep -qF -- "$m" "$man"; then passes=$((passes+1)); else
      echo "FAIL docs/learnd.1 does not name$verb $o"; fails=$((fails+1)); fi
  done
}
helps run -- -c --config --until-caught-up --from-scratch --role --examples-topic --instance -h --help
helps replay -- -c --config --checkpoint --verify --examples-topic -h --help
helps demo -- --events --seed --keep --poison --summary-json --bootstrap --run-id --freshness --svg -h --help
helps backtest -- -c --config --checkpoint --from --to --bucket --json --svg -q --quiet -h --help
helps freshness -- -c --config --from --to --cadence --checkpoint --warmup --staleness --eval-window --bucket --json --svg -q --quiet -h --help
helps inspect -- --json -h --help
helps config -- -c --config --print -h --help

echo "cli: $passes passed, $fails failed"
[ "$fails" -eq 0 ]
