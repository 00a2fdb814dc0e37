#!/usr/bin/env bash
# The measurement behind capture::mjpeg's decoder (bench/jpeg-decoders/):
# zune-jpeg (pure Rust, what rtcam uses) against libjpeg-turbo (turbojpeg
# crate, its bundled 3.1 built by cmake with SIMD), decoding 1280x720 frames
# of the camera-like scene encoded as a UVC camera sends them (baseline,
# standard Huffman tables, full range, quality 80, 4:2:2 and 4:2:0) all the
# way to limited-range I420. p50/p95/mean per frame, release build, one
# thread; prints, asserts nothing. The bench is its own crate (own target
# dir, own lock file), so it never touches rtcam's build.
#   bench/jpeg-decoders.sh [DECODES] [--dump DIR]   # DECODES per row, default 300
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
sudo_cmd=()
[ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
# libjpeg-turbo's build: cmake; its x86 SIMD needs nasm (setup.sh has it).
# Debian 12's libturbojpeg0-dev (2.1.5) is too old for the turbojpeg crate (>= 3.0).
if ! command -v cmake >/dev/null; then
  "${sudo_cmd[@]}" apt-get update -qq || echo "jpeg-decoders: apt-get update reported errors (continuing)" >&2
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq \
    -o DPkg::Lock::Timeout=600 cmake >/dev/null
fi
cd bench/jpeg-decoders
cargo build --release --quiet
echo "== x86_64 ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
target/release/jpeg-decoders "$@"
