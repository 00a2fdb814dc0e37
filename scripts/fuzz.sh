#!/usr/bin/env bash
# Runs every fuzz target for N seconds (default 10): scripts/fuzz.sh 600 for a
# longer run. cargo-fuzz needs nightly flags; this toolchain is stable, so
# RUSTC_BOOTSTRAP=1 unlocks them. No sanitizer: the targets are safe Rust
# parsers, and panics (what we look for) need none; it also keeps the build small.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz@0.13.2
export RUSTC_BOOTSTRAP=1
targets=(signaling whep_offer trickle_sdpfrag config_file login_form mjpeg annexb datagram channel_message talk_audio)
(cd fuzz && cargo fuzz build --sanitizer none -O)
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  # A working copy of the corpus: what a run discovers is not committed.
  work="$(mktemp -d)"
  cp -r "fuzz/corpus/$t/." "$work/" 2>/dev/null || true
  out=$(cd fuzz && cargo fuzz run --sanitizer none -O "$t" "$work" -- \
          -max_total_time="$secs" -max_len=65536 -print_final_stats=1 2>&1) || {
    echo "$out" | tail -n 40
    echo "fuzz: $t FAILED"
    exit 1
  }
  runs=$(echo "$out" | sed -n 's/^stat::number_of_executed_units: *//p')
  echo "fuzz: $t ok, ${runs:-?} executions in ${secs} s, corpus $(ls "$work" | wc -l)"
  rm -rf "$work"
done
