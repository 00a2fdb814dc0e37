#!/bin/sh
# Cargo's runner for the ARM targets (.cargo/config.toml): runs a test or
# binary under qemu-user with Debian's cross libraries, and tells the test
# harness (tests/common) to start rtcam the same way: an emulated test
# process cannot exec an ARM binary by itself without binfmt_misc.
#   scripts/qemu-runner.sh aarch64|arm PROGRAM [ARGS...]
set -e
arch=$1; shift
# aarch64 runs as a Cortex-A72, the Pi 4's core, not qemu's default "max".
# An rtcam under test sometimes died at start-up with SIGABRT and no message
# (about one CI run in three; not reproduced in 30 starts by hand). The
# suspect: "max" offers the ARMv8.5 random-number instruction (RNDR), which
# aws-lc uses when present and answers with abort() when it reports failure
# (crypto/fipsmodule/rand). No Pi has RNDR, so the A72 is also the truer CPU.
case "$arch" in
  aarch64) libs=/usr/aarch64-linux-gnu cpu="-cpu cortex-a72" triple=aarch64-linux-gnu ;;
  arm) libs=/usr/arm-linux-gnueabihf cpu="" triple=arm-linux-gnueabihf ;;
  *) echo "qemu-runner: unknown arch $arch" >&2; exit 2 ;;
esac
# libasound.so.2 (linked dynamically by alsa-sys) is not in the cross
# toolchain's libraries: it comes from the sysroot scripts/cross-build.sh
# unpacks. -L stays on the toolchain (the loader and libc); the guest's
# loader finds libasound through LD_LIBRARY_PATH, which the emulated
# program's children (rtcam started through RTCAM_TEST_WRAPPER) inherit.
# The host's loader skips these ARM libraries for qemu itself.
sysroot_lib=$(cd "$(dirname "$0")/.." && pwd)/target/sysroot/$triple/usr/lib/$triple
LD_LIBRARY_PATH=$sysroot_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export LD_LIBRARY_PATH
RTCAM_TEST_WRAPPER="qemu-$arch $cpu -L $libs"
export RTCAM_TEST_WRAPPER
# shellcheck disable=SC2086 # $cpu is two words or none
exec "qemu-$arch" $cpu -L "$libs" "$@"
