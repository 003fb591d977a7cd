#!/usr/bin/env bash
# spillpool beside ArcticDB on ArcticDB's LMDB-tutorial workload, same machine,
# same run; prints spillpool/ArcticDB per storage, size and operation.
#   bench/peers/compare.sh                            the full workload (3 rounds, about 10 minutes)
#   ROUNDS=1 bench/peers/compare.sh --sizes 50MB --symbols 1000   a quick one
# The two alternate, one repeat each per round (ROUNDS, default 3), so a
# shared disk that slows down for minutes slows both. Extra arguments go to
# both benchmarks (`--repeats N`: N repeats per round). Results:
# target/peers/{spillpool,arcticdb}.csv
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
case " $* " in
  *" --repeats "*) per_round=() ;;
  *) per_round=(--repeats 1) ;;
esac
: >"$out/spillpool.txt"
for round in $(seq 1 "${ROUNDS:-3}"); do
  "$bin" bench store --storages "$storages" --dir "$PWD/$out" --out "$out/spillpool-$round.csv" \
    "${per_round[@]}" "$@" >>"$out/spillpool.txt"
  "$venv/bin/python" bench/peers/arcticdb_bench.py --storages "$storages" --dir "$PWD/$out" \
    --out "$out/arcticdb-$round.csv" "${per_round[@]}" "$@"
done
for side in spillpool arcticdb; do
  # One header, then every round's rows.
  awk 'FNR > 1 || NR == 1' "$out/$side"-[0-9]*.csv >"$out/$side.csv"
  rm -f "$out/$side"-[0-9]*.csv
done
"$venv/bin/python" bench/peers/compare.py "$out/spillpool.csv" "$out/arcticdb.csv"
