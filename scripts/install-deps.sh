#!/usr/bin/env bash
# Installs what learnd needs to build and test, and only what is missing.
# Idempotent: a second run on a ready machine does nothing and prints one line.
set -euo pipefail

pkgs=(
  build-essential cmake pkg-config git
  librdkafka-dev libavro-dev libprotobuf-c-dev protobuf-c-compiler
  libprotobuf-dev libcurl4-openssl-dev
  libopenblas-dev libyaml-dev libmicrohttpd-dev libcmocka-dev libjansson-dev
  kcat clang-format docker-compose python3 python3-jsonschema python3-venv
  librsvg2-bin
)
# --fuzz: clang and its sanitizer/libFuzzer runtime too (make fuzz).
if [ "${1:-}" = --fuzz ]; then pkgs+=(clang-14 libclang-rt-14-dev); fi
# The test broker needs Java 17+ and Maven; keep any JDK that is already there.
if ! command -v java >/dev/null 2>&1; then pkgs+=(openjdk-17-jre-headless); fi
if ! command -v mvn >/dev/null 2>&1; then pkgs+=(maven); fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
    || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
