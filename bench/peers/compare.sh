#!/usr/bin/env bash
# spillpool beside ArcticDB on ArcticDB's LMDB-tutorial workload, same machine,
# same run; prints spillpool/ArcticDB per storage, size and operation.
#   bench/peers/compare.sh                            the full workload (about 10 minutes)
#   bench/peers/compare.sh --sizes 50MB --repeats 2 --symbols 1000   a quick one
# Extra arguments go to both benchmarks. Results: target/peers/{spillpool,arcticdb}.csv
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=${SPILLPOOL_PEERS_VENV:-$HOME/.cache/spillpool/peers-venv}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check arcticdb pandas numpy
cargo build --release -p spillpool-cli
bin=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/release/spillpool
out=target/peers
mkdir -p "$out"
storages=lmdb,lmdb-tmpfs,mem
"$bin" bench store --storages "$storages" --dir "$PWD/$out" --out "$out/spillpool.csv" "$@" >"$out/spillpool.txt"
"$venv/bin/python" bench/peers/arcticdb_bench.py --storages "$storages" --dir "$PWD/$out" --out "$out/arcticdb.csv" "$@"
"$venv/bin/python" bench/peers/compare.py "$out/spillpool.csv" "$out/arcticdb.csv"
