#!/usr/bin/env bash
# Ten minutes of viewers coming and going (tests/bench_soak.rs, release build): ten light str0m viewers
# on a 1280x720@30 stream, the oldest replaced every 10 s, a decoding probe once a minute. Every minute:
# rtcam's RSS, open fds, the probe's stamp-to-receipt latency, the viewers' fps; then the drift from
# the first minute to the last. Prints; asserts nothing.
#   bench/soak.sh                                          # 600 s, churn 10 s
#   RTCAM_SOAK_SECONDS=120 RTCAM_SOAK_CHURN=5 bench/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --release --locked --test integration -- --ignored --nocapture bench_soak:: 2>&1 | grep -v '^\[OpenH264\]'
