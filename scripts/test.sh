#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests, the
# page's own tests and the real-browser test. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
# Each step's heading says how far into the run it starts: what to trim first.
# CI builds every target once from a clean clone, so incremental compilation
# only costs disk: its caches were 9 GB of a 27 GB target directory, and a CI
# run died of a full disk. Each heading also says how much disk is left.
export CARGO_INCREMENTAL=0
t0=$SECONDS
step() {
  echo "== [$(( (SECONDS - t0) / 60 ))m$(( (SECONDS - t0) % 60 ))s]" \
       "[$(df -BG --output=avail . | tail -n 1 | tr -d ' ') free] $*"
}

step "cargo fmt";    cargo fmt --all -- --check
step "cargo clippy"; cargo clippy --locked --all-targets -- -D warnings
step "cargo test";   RTCAM_PROMTOOL="$PWD/target/tools/promtool" cargo test --locked --all-targets
step "the vendored crates are the ones built, and the patched ICE agent's own tests (vendor/README.md)"
# A [patch] that no longer matches what str0m or openh264 asks for is only a
# warning to cargo, and the patch would silently be gone.
for c in is openh264-sys2; do
  built=$(cargo tree --locked -i "$c" --prefix none | sed -n 1p)
  [[ $built == *"($PWD/vendor/$c)"* ]] ||
    { echo "$c is not built from vendor/$c ($built): its [patch] in Cargo.toml is unused" >&2; exit 1; }
done
CARGO_TARGET_DIR=target/vendor-is cargo test --locked --manifest-path vendor/is/Cargo.toml --features sha1
step "systemd unit exposure (must be 1.5 or lower)"
systemd-analyze security --offline=true --threshold=15 systemd/rtcam.service | tail -n 1
step "fuzz (10 s per target)"; scripts/fuzz.sh 10
step "page tests";   node --test tests/web/
step "browser test"
cargo build --locked --bin rtcam
RTCAM_BIN="$PWD/target/debug/rtcam" .venv/bin/python -m pytest -q -s tests/browser \
  --ignore=tests/browser/test_firefox.py --ignore=tests/browser/test_firefox_audio.py
step "browser test: Firefox (VP8), then Firefox and Chromium together (network namespace, root)"
RTCAM_BIN="$PWD/target/debug/rtcam" .venv/bin/python -m pytest -q -s tests/browser/test_firefox.py
step "browser test: Firefox plays the device's sound and talks (PulseAudio, network namespace)"
RTCAM_BIN="$PWD/target/debug/rtcam" .venv/bin/python -m pytest -q -s tests/browser/test_firefox_audio.py

# The Pi: the suite again on an emulated arm64 CPU, the 32-bit build, the
# whole appliance on an emulated board with a real V4L2 driver, the packages.
arm64=aarch64-unknown-linux-gnu armhf=armv7-unknown-linux-gnueabihf
scripts/cross-build.sh --toolchain-only "$arm64" "$armhf"
step "cargo test for $arm64 (under qemu-aarch64)"
# Bounded: a fork in an emulated process can hang in qemu-user itself (seen
# once: the child never reached exec); better a clear failure here than the
# whole CI budget gone. The step takes about 13 minutes from nothing. The
# examples (x86 benchmarks, built and linted above) are not built for it:
# --lib --bins --tests is every target that has tests.
timeout --kill-after=30 1800 cargo test --locked --target "$arm64" --lib --bins --tests ||
  { rc=$?; [ "$rc" = 124 ] && echo "cargo test for $arm64 did not finish in 30 minutes" >&2; exit "$rc"; }
step "cargo build for $armhf"
cargo build --locked --target "$armhf" --bin rtcam
# Through the runner: it adds the sysroot's libasound.so.2 to the cross libraries.
scripts/qemu-runner.sh arm "target/$armhf/debug/rtcam" --version
step "system test (qemu-system-aarch64, vivid camera)"
scripts/qemu-test.sh "target/$arm64/debug/rtcam"
step "packages"
scripts/package.sh --profile dev "$(rustc -vV | sed -n 's/^host: //p')" "$arm64" "$armhf"
for deb in target/debian/rtcam_*_amd64.deb target/debian/rtcam_*_arm64.deb target/debian/rtcam_*_armhf.deb; do
  scripts/deb-check.sh "$deb"
done
step "done"
