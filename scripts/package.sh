#!/usr/bin/env bash
# Builds rtcam's Debian packages with cargo-deb (see [package.metadata.deb] in
# Cargo.toml): release builds for this machine (amd64), the 64-bit Pi OS
# (arm64) and the 32-bit Pi OS on ARMv7 boards (armhf).
#   scripts/package.sh                               # all three
#   scripts/package.sh aarch64-unknown-linux-gnu     # one: arm64
#   scripts/package.sh --profile dev TARGET          # package an existing dev build (what CI checks)
# The packages land in target/debian/ (every target).
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_DEB_VERSION=3.8.0

profile=release
if [ "${1:-}" = "--profile" ]; then profile=${2:?}; shift 2; fi
targets=("$@")
host=$(rustc -vV | sed -n 's/^host: //p')
[ "${#targets[@]}" -eq 0 ] && targets=("$host" aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf)

if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
  echo "package: installing cargo-deb $CARGO_DEB_VERSION"
  cargo install --locked --quiet cargo-deb --version "$CARGO_DEB_VERSION"
fi
for t in "${targets[@]}"; do
  [ "$t" = "$host" ] || scripts/cross-build.sh --toolchain-only "$t"
done

for t in "${targets[@]}"; do
  args=(--locked --profile "$profile")
  [ "$t" = "$host" ] || args+=(--target "$t")
  if [ "$profile" != release ]; then
    # The binary is there already (CI's test build): package it as it is.
    args+=(--no-build)
  fi
  start=$(date +%s)
  deb=$(cargo deb "${args[@]}" | tail -n 1)
  echo "package: $t ($profile) in $(( $(date +%s) - start )) s: $deb ($(stat -c %s "$deb") bytes)"
done
