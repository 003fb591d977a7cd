#!/usr/bin/env bash
# Bounded fuzzing with cargo-fuzz / libFuzzer:
#   frame_decode    any bytes into the frame, filter-chunk and Arrow IPC decoder
#   model_backend   operation sequences on mem/file/lmdb against a BTreeMap model
#   model_pool      operation sequences on a 1 MiB pool against a model
#   model_store     operation sequences on the named store against a model
#
#   scripts/fuzz.sh                     CI: 100,000 runs of frame_decode, then
#                                       MODEL_SECONDS (default 60) of each model target
#   FUZZ_RUNS=-1 FUZZ_SECONDS=3600 MODEL_SECONDS=3600 scripts/fuzz.sh   the long version
#   scripts/fuzz.sh model_store         one target
# cargo-fuzz needs nightly compiler flags; RUSTC_BOOTSTRAP=1 lets the stable
# toolchain accept them (no other toolchain can be installed here).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$HOME/.cache/spillpool/fuzz-target}
targets=("${@:-frame_decode model_backend model_pool model_store}")
status=0
for target in ${targets[*]}; do
  corpus=$(mktemp -d)
  if [ -d "corpus/$target" ]; then cp "corpus/$target"/* "$corpus"/; fi
  if [ "$target" = frame_decode ]; then
    limits=(-runs="${FUZZ_RUNS:-100000}" -max_total_time="${FUZZ_SECONDS:-0}" -max_len=200000)
  else
    limits=(-max_total_time="${MODEL_SECONDS:-60}" -max_len=4096)
  fi
  echo "== $target"
  rc=0
  cargo fuzz run "$target" "$corpus" -- -seed=1 "${limits[@]}" \
    -rss_limit_mb=2048 -print_final_stats=1 >"$corpus.log" 2>&1 || rc=$?
  grep -E "^(Done|stat::number_of_executed_units|INFO: Seed|==[0-9]+==|SUMMARY)|panicked|artifact" "$corpus.log" || true
  if [ "$rc" -ne 0 ]; then
    tail -40 "$corpus.log" >&2
    echo "fuzz: $target failed (exit $rc); the input is in fuzz/artifacts/$target/" >&2
    status=$rc
  fi
  rm -rf "$corpus" "$corpus.log"
done
exit "$status"
