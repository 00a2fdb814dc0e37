#!/usr/bin/env bash
# Encoder benchmark on the camera-like scene (examples/encode_bench.rs):
# encode time per frame p50/p95/max, CPU share at the frame rate, bitrate
# spent against the target and frames skipped, for openh264 and libvpx VP8,
# natively and under qemu-aarch64 (an emulated CPU: read those figures
# relative to each other, not as a Pi's). Then the stripped aarch64 release
# binary's size. Prints; asserts nothing.
#   bench/encode.sh [--size 1280x720] [--fps 30] [--kbps 1935] [--frames 300]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
arm64=aarch64-unknown-linux-gnu
scripts/cross-build.sh --toolchain-only "$arm64"
cargo build --release --locked --example encode_bench
cargo build --release --locked --target "$arm64" --example encode_bench --bin rtcam
quiet() { grep -v '^\[OpenH264\]'; }
echo "== x86_64 ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), one core each"
target/release/examples/encode_bench "$@" 2>&1 | quiet
echo "== aarch64 under qemu-aarch64 (emulated)"
qemu-aarch64 -L /usr/aarch64-linux-gnu "target/$arm64/release/examples/encode_bench" "$@" 2>&1 | quiet
aarch64-linux-gnu-strip -o "target/$arm64/release/rtcam.stripped" "target/$arm64/release/rtcam"
echo "== stripped aarch64 release binary: $(stat -c %s "target/$arm64/release/rtcam.stripped") bytes"
