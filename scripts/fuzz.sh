#!/usr/bin/env bash
# Bounded fuzzing of the frame and chunk decoder (cargo-fuzz / libFuzzer).
#   scripts/fuzz.sh                 100,000 runs from seed 1: deterministic, about a minute (CI)
#   FUZZ_RUNS=-1 FUZZ_SECONDS=3600 scripts/fuzz.sh    an hour of open-ended fuzzing
# cargo-fuzz needs nightly compiler flags; RUSTC_BOOTSTRAP=1 lets the stable
# toolchain accept them (no other toolchain can be installed here).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$HOME/.cache/spillpool/fuzz-target}
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
cp corpus/frame_decode/* "$corpus"/
status=0
cargo fuzz run frame_decode "$corpus" -- \
  -seed=1 -runs="${FUZZ_RUNS:-100000}" -max_total_time="${FUZZ_SECONDS:-0}" \
  -rss_limit_mb=1024 -max_len=200000 -print_final_stats=1 >"$corpus.log" 2>&1 || status=$?
grep -E "^(Done|stat::|INFO: Seed|==[0-9]+==|SUMMARY)|panicked|artifact" "$corpus.log" || true
rm -f "$corpus.log"
if [ "$status" -ne 0 ]; then
  echo "fuzz: the decoder crashed (exit $status); the input is in fuzz/artifacts/frame_decode/" >&2
fi
exit "$status"
