#!/usr/bin/env bash
# The sound's cost and latency. Prints; asserts nothing.
#  1. CPU (examples/audio_bench.rs): Opus encode, jitter buffer + decode with
#     5 % loss, the half-duplex gate, the echo canceller, per 20 ms frame,
#     natively and under qemu-aarch64 (emulated: read those relative to each
#     other, not as a Pi's; QEMU's float NEON is slow, the canceller's worst);
#     and the canceller's attenuation and double talk in 20 simulated rooms.
#  2. Latency each way and the echo, in real Chromium through PulseAudio
#     (tests/browser/test_audio.py prints p50/p95 device -> page and page ->
#     device, and the echo's attenuation), and device -> an independent
#     player (tests/browser/test_aiortc_audio.py).
#   bench/audio.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
arm64=aarch64-unknown-linux-gnu
scripts/cross-build.sh --toolchain-only "$arm64"
cargo build --release --locked --example audio_bench
cargo build --release --locked --target "$arm64" --example audio_bench
echo "== x86_64 ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), one core"
target/release/examples/audio_bench "${1:-60}"
echo "== aarch64 under qemu-aarch64 (emulated)"
scripts/qemu-runner.sh aarch64 "target/$arm64/release/examples/audio_bench" "${1:-60}"
echo "== video latency in Chromium without and with the device's audio (the page offers audio either way)"
echo "   three alternating rounds: one run's p50 wanders by about 12 ms, more than what is looked for (5 ms)"
cargo build --release --locked --bin rtcam
for round in 1 2 3; do
  for a in off test; do
    RTCAM_BIN="$PWD/target/release/rtcam" .venv/bin/python bench/browser_bench.py --viewers 0 --seconds 15 \
      --audio-in "$a" 2>/dev/null | grep -E "audio-in|latency|CPU|RSS|viewer"
  done
done
echo "== latency each way, echo (real Chromium, PulseAudio), and an aiortc player"
cargo build --locked --bin rtcam
RTCAM_BIN="$PWD/target/debug/rtcam" .venv/bin/python -m pytest -q -s \
  tests/browser/test_audio.py tests/browser/test_aiortc_audio.py 2>&1 |
  grep -E "latency|p50|p95|dB|offset|passed|failed"
