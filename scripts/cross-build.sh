#!/usr/bin/env bash
# Builds rtcam for the Raspberry Pi targets with Debian's cross compilers
# (see .cargo/config.toml), and prints each stripped binary's size.
#   scripts/cross-build.sh                 # aarch64 and armv7, release
#   scripts/cross-build.sh aarch64-unknown-linux-gnu
#   scripts/cross-build.sh --toolchain-only TARGET...   # install the cross compilers and Rust target only
# arm-unknown-linux-gnueabihf (ARMv6: Pi 1, Zero W) is not built: see the
# README's "Put it on a Pi" section for why.
set -euo pipefail
cd "$(dirname "$0")/.."
toolchain_only=0
if [ "${1:-}" = "--toolchain-only" ]; then toolchain_only=1; shift; fi
targets=("$@")
[ "${#targets[@]}" -eq 0 ] && targets=(aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf)

sudo_cmd=()
[ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
need=()
command -v clang >/dev/null || need+=(clang)
# qemu-user: cargo's runner for these targets (tests, and a quick run here).
command -v qemu-aarch64 >/dev/null || need+=(qemu-user)
for t in "${targets[@]}"; do
  case "$t" in
    aarch64-unknown-linux-gnu) command -v aarch64-linux-gnu-g++ >/dev/null || need+=(gcc-aarch64-linux-gnu g++-aarch64-linux-gnu) ;;
    armv7-unknown-linux-gnueabihf) command -v arm-linux-gnueabihf-g++ >/dev/null || need+=(gcc-arm-linux-gnueabihf g++-arm-linux-gnueabihf) ;;
    *) echo "cross-build: unsupported target $t" >&2; exit 2 ;;
  esac
done
if [ "${#need[@]}" -gt 0 ]; then
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq -o DPkg::Lock::Timeout=600 "${need[@]}" >/dev/null
fi
rustup target add "${targets[@]}" >/dev/null
[ "$toolchain_only" = 1 ] && exit 0

for t in "${targets[@]}"; do
  start=$(date +%s)
  cargo build --release --locked --target "$t"
  bin="target/$t/release/rtcam"
  strip_tool="${t%%-unknown-*}"
  case "$t" in
    aarch64-*) strip_tool=aarch64-linux-gnu-strip ;;
    armv7-*) strip_tool=arm-linux-gnueabihf-strip ;;
  esac
  "$strip_tool" -o "$bin.stripped" "$bin"
  echo "cross-build: $t in $(( $(date +%s) - start )) s, stripped $(stat -c %s "$bin.stripped") bytes: $bin.stripped"
done
