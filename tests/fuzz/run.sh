#!/usr/bin/env bash
# Runs every libFuzzer target for a bounded time (FUZZ_SECONDS each, 60 by
# default) on a clang build whose libraries are instrumented too
# (-DLD_LIBFUZZER=ON: coverage, ASan, UBSan), seeded with the shipped corpora
# (tests/data and tests/fuzz/corpus/<target>/, left unchanged: libFuzzer
# writes to a scratch copy). Prints executions and edges covered per target;
# exits 1 on any crash, sanitizer report, leak or hang, and prints the
# reproducer to keep under tests/fuzz/corpus/<target>/.
set -uo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
secs=${FUZZ_SECONDS:-60}
build=${FUZZ_BUILD:-$src/build-fuzz}
cc=${FUZZ_CC:-clang-14}
targets=(fuzz_checkpoint fuzz_state fuzz_decode_avro fuzz_decode_json fuzz_decode_protobuf
         fuzz_decode_pbdesc)

# shellcheck disable=SC2086 # CMAKE_ARGS is a list of arguments
CC=$cc cmake -S "$src" -B "$build" -DLD_LIBFUZZER=ON ${CMAKE_ARGS:-} >/dev/null \
  || exit 1
cmake --build "$build" -j "$(nproc)" --target "${targets[@]}" >/dev/null || {
  cmake --build "$build" -j 1 --target "${targets[@]}" 2>&1 | tail -40
  exit 1
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=0
printf '%-22s %10s %8s %8s %8s  %s\n' target execs exec/s edges features result
for t in "${targets[@]}"; do
  seeds=("$src/tests/fuzz/corpus/$t")
  dict=()
  case $t in
    fuzz_checkpoint) seeds+=("$src/tests/data/trainer") ;;
    fuzz_decode_*)
      seeds+=("$src/tests/data/pipeline/fuzz/${t#fuzz_decode_}")
      dict=(-dict="$src/tests/fuzz/pair.dict") ;;
  esac
  mkdir -p "$work/$t/corpus" "$work/$t/crash"
  log=$work/$t/log
  "$build/tests/fuzz/$t" "${dict[@]}" -max_total_time="$secs" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$work/$t/crash/" "$work/$t/corpus" "${seeds[@]}" \
    >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  crashes=$(find "$work/$t/crash" -type f | wc -l)
  result=ok
  if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
    result="FAILED (exit $rc, $crashes reproducer(s))"
    failed=1
  fi
  printf '%-22s %10s %8s %8s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" \
    "${cov:-?}" "${ft:-?}" "$result"
  if [ "$result" != ok ]; then
    grep -v -e '^#[0-9]' -e '^"' "$log" | tail -60
    for f in "$work/$t/crash"/*; do
      [ -f "$f" ] || continue
      echo "--- reproducer $(basename "$f") (base64; save it under" \
        "tests/fuzz/corpus/$t/ once fixed):"
      base64 -w 0 "$f"
      echo
    done
  fi
done
exit $failed
