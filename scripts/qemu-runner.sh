#!/bin/sh
# Cargo's runner for the ARM targets (.cargo/config.toml): runs a test or
# binary under qemu-user with Debian's cross libraries, and tells the test
# harness (tests/common) to start rtcam the same way: an emulated test
# process cannot exec an ARM binary by itself without binfmt_misc.
#   scripts/qemu-runner.sh aarch64|arm PROGRAM [ARGS...]
set -e
arch=$1; shift
case "$arch" in
  aarch64) libs=/usr/aarch64-linux-gnu ;;
  arm) libs=/usr/arm-linux-gnueabihf ;;
  *) echo "qemu-runner: unknown arch $arch" >&2; exit 2 ;;
esac
RTCAM_TEST_WRAPPER="qemu-$arch -L $libs"
export RTCAM_TEST_WRAPPER
exec "qemu-$arch" -L "$libs" "$@"
