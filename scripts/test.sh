#!/usr/bin/env bash
# The whole test suite: Rust unit, integration and doc tests, then the Python
# interop tests that use pyarrow as an independent reader. Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --workspace --all-features
# Every micro-benchmark once, untimed (criterion's test mode): they still work.
cargo test -p spillpool --all-features --benches
cargo build -p spillpool-cli

target_dir=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
venv=${SPILLPOOL_VENV:-$HOME/.cache/spillpool/venv}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
SPILLPOOL_BIN="$target_dir/debug/spillpool" "$venv/bin/python" -m pytest -q tests/python
