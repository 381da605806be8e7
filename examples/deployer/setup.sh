#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Prepares the example deployer: a virtualenv with its packages, and
# learnd_pb2.py generated from schemas/learnd.proto (generated code is never
# committed). Idempotent: an up-to-date venv and generated module are reused.
#
# Usage: setup.sh VENV_DIR [GEN_DIR]
#   VENV_DIR  the virtualenv to create or reuse
#   GEN_DIR   where learnd_pb2.py goes (default: VENV_DIR/gen)
# Then: PYTHONPATH=GEN_DIR VENV_DIR/bin/python deployer.py --help
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 VENV_DIR [GEN_DIR]" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
proto_dir=$(cd "$here/../../schemas" && pwd)
venv=$1
gen=${2:-$venv/gen}
# Debian's python3 (python3-venv): an interpreter from pyenv or conda may
# lack the venv module or ensurepip.
python=${LD_DEPLOYER_PYTHON:-/usr/bin/python3}
[ -x "$python" ] || python=python3

stamp=$venv/.requirements.sha256
want=$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup.sh: creating $venv" >&2
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        -r "$here/requirements.txt"
    echo "$want" > "$stamp"
fi

mkdir -p "$gen"
if [ ! -f "$gen/learnd_pb2.py" ] || [ "$proto_dir/learnd.proto" -nt "$gen/learnd_pb2.py" ]; then
    "$venv/bin/python" -m grpc_tools.protoc --proto_path="$proto_dir" \
        --python_out="$gen" "$proto_dir/learnd.proto"
fi
echo "setup.sh: ready: PYTHONPATH=$gen $venv/bin/python $here/deployer.py" >&2
