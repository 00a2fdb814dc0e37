#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests, the
# page's own tests and the real-browser test. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test

echo "== cargo fmt";    cargo fmt --all -- --check
echo "== cargo clippy"; cargo clippy --locked --all-targets -- -D warnings
echo "== cargo test";   cargo test --locked --all-targets
echo "== systemd unit exposure (must be 1.5 or lower)"
systemd-analyze security --offline=true --threshold=15 systemd/rtcam.service | tail -n 1
echo "== fuzz (10 s per target)"; scripts/fuzz.sh 10
echo "== page tests";   node --test tests/web/
echo "== browser test"
cargo build --locked --bin rtcam
RTCAM_BIN="$PWD/target/debug/rtcam" .venv/bin/python -m pytest -q -s tests/browser
