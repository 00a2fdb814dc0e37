#!/usr/bin/env bash
# Capture-to-encoded time per frame on the camera-like scene
# (examples/capture_bench.rs): raw YUYV (convert + openh264), MJPEG (decode +
# openh264) and H.264 passthrough (split only), p50/p95 and CPU share at the
# frame rate, natively and under qemu-aarch64 (emulated: read those figures
# relative to each other, not as a Pi's). Prints; asserts nothing.
#   bench/capture.sh [--size 1280x720] [--fps 30] [--frames 150]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
arm64=aarch64-unknown-linux-gnu
scripts/cross-build.sh --toolchain-only "$arm64"
cargo build --release --locked --example capture_bench
cargo build --release --locked --target "$arm64" --example capture_bench
quiet() { grep -v '^\[OpenH264\]'; }
echo "== x86_64 ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
target/release/examples/capture_bench "$@" 2>&1 | quiet
echo "== aarch64 under qemu-aarch64 (emulated)"
qemu-aarch64 -L /usr/aarch64-linux-gnu "target/$arm64/release/examples/capture_bench" "$@" 2>&1 | quiet
