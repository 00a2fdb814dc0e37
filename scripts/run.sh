#!/usr/bin/env bash
# Builds rtcam (release) and runs it. Any arguments go to rtcam, e.g.
#   scripts/run.sh --source test --http 127.0.0.1:8443
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked
exec target/release/rtcam "$@"
