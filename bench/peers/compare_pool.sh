#!/usr/bin/env bash
# spillpool's pool beside Ray's object store spilling, same machine, same run:
# 40 arrays of 100 MB through a 1 GB memory bound (4 GB working set), put,
# then get in put order and in random order; prints spillpool/Ray and each
# against the raw disk measured by `spillpool bench pool` in the same run.
#   bench/peers/compare_pool.sh                        the full workload (about 5 minutes)
#   bench/peers/compare_pool.sh --data 400MB --memory-limit 200MB --repeats 1   a quick one
# Extra arguments go to both benchmarks. Results: target/peers/{spillpool-pool,ray}.csv
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=${SPILLPOOL_PEERS_VENV:-$HOME/.cache/spillpool/peers-venv}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check "ray==2.60.0" numpy
cargo build --release -p spillpool-cli
bin=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/release/spillpool
out=target/peers
mkdir -p "$out"
args=(--memory-limit 1GB --data 4000MB --value-size 100MB --repeats 3)
"$bin" bench pool "${args[@]}" --dir "${TMPDIR:-/tmp}" --out "$out/spillpool-pool.csv" "$@" >"$out/spillpool-pool.txt"
"$venv/bin/python" bench/peers/ray_bench.py "${args[@]}" --dir "${TMPDIR:-/tmp}" --out "$out/ray.csv" "$@"
"$venv/bin/python" bench/peers/compare.py "$out/spillpool-pool.csv" "$out/ray.csv" Ray
