#!/bin/sh
# `learnd config check` on users' own Protobuf messages (docs/INPUT.md):
# the descriptor set, the message names and the field mapping are checked
# at load time, exit 2, each error at file:line:column of its key.
# usage: cli_pbdesc.sh LEARND DESCRIPTOR_DIR
set -u
learnd=$1 desc=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fails=0

cat >"$dir/base.yaml" <<YAML
pipeline:
  events_topic: ev
  labels_topic: lab
  format: protobuf
  descriptor_set: $desc/shop.desc
  event_message: shop.v1.Impression
  label_message: shop.v1.Click
  key_field: event_id
  label_field: clicked
  dense_fields: [f0, m.f19, scores.ctr]
  hash_fields: [country, ctx:tags, attrs.browser]
YAML

# check NAME CODE EXACT-STDERR-FIRST-LINE SED-EXPRESSION
check() {
  name=$1 code=$2 want=$3 edit=$4
  sed "$edit" "$dir/base.yaml" >"$dir/$name.yaml"
  (cd "$dir" && "$learnd" config check -c "$name.yaml") >"$dir/out" 2>"$dir/err"
  rc=$?
  got=$(head -n 1 "$dir/err")
  if [ "$rc" -ne "$code" ] || [ "$got" != "$want" ]; then
    echo "FAIL $name: exit $rc (want $code)"
    echo "  got:  $got"
    echo "  want: $want"
    fails=$((fails+1))
  fi
}

check good 0 "" "s|x|x|"
check no-imports 2 \
  "no-imports.yaml:5:19: pipeline.descriptor_set: $desc/shop-noimports.desc: shop.proto imports google/protobuf/timestamp.proto, which is not in the descriptor set (protoc --include_imports)" \
  "s|shop.desc|shop-noimports.desc|"
check no-message 2 \
  "no-message.yaml:7:18: pipeline.label_message: no message shop.v1.Nope in $desc/shop.desc" \
  "s|shop.v1.Click|shop.v1.Nope|"
check no-field 2 \
  "no-field.yaml:10:22: pipeline.dense_fields[1]: field 'm.f20' is not in message shop.v1.Impression of $desc/shop.desc" \
  "s|m.f19|m.f20|"
check message-field 2 \
  "message-field.yaml:11:26: pipeline.hash_fields[1]: field m is a message (shop.v1.Impression.Inner): map its fields as m.<name>" \
  "s|ctx:tags|ctx:m|"
check not-a-set 2 \
  "not-a-set.yaml:5:19: pipeline.descriptor_set: $desc/shop.proto.missing: No such file or directory" \
  "s|shop.desc|shop.proto.missing|"

[ "$fails" -eq 0 ] && echo "cli_pbdesc: all passed"
exit "$fails"
