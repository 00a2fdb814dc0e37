#!/usr/bin/env bash
# Runs every fuzz target for N seconds (default 10): scripts/fuzz.sh 600 for a
# longer run. cargo-fuzz needs nightly flags; this toolchain is stable, so
# RUSTC_BOOTSTRAP=1 unlocks them. No sanitizer: the targets are safe Rust
# parsers, and panics (what we look for) need none; it also keeps the build small.
# A libFuzzer run is one process on one core: as many run at once as there are
# cores, each for its full N seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz@0.13.2
export RUSTC_BOOTSTRAP=1
targets=(signaling whep_offer trickle_sdpfrag config_file login_form mjpeg annexb datagram channel_message talk_audio)
(cd fuzz && cargo fuzz build --sanitizer none -O)
bin="fuzz/target/$(rustc -vV | sed -n 's/^host: //p')/release"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

# One target: its own working copy of the corpus (what a run discovers is not
# committed), its output and status in $out.
fuzz_one() {
  local t=$1 work="$out/$1.corpus"
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t" "$work"
  cp -r "fuzz/corpus/$t/." "$work/" 2>/dev/null || true
  local rc=0
  "$bin/$t" -artifact_prefix="fuzz/artifacts/$t/" -max_total_time="$secs" -max_len=65536 \
    -print_final_stats=1 "$work" >"$out/$t.log" 2>&1 || rc=$?
  echo "$rc" >"$out/$t.rc"
}

for t in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$(nproc)" ]; do wait -n || true; done
  fuzz_one "$t" &
done
wait

failed=0
for t in "${targets[@]}"; do
  if [ "$(cat "$out/$t.rc")" != 0 ]; then
    tail -n 40 "$out/$t.log"
    echo "fuzz: $t FAILED"
    failed=1
    continue
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$t.log")
  echo "fuzz: $t ok, ${runs:-?} executions in ${secs} s, corpus $(ls "$out/$t.corpus" | wc -l)"
done
exit "$failed"
