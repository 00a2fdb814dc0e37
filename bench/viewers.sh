#!/usr/bin/env bash
# rtcam's cost per viewer (tests/bench_viewers.rs, release build): light
# str0m viewers (no decoding) join a 1280x720@30 stream in steps up to 100;
# per step rtcam's CPU, RSS and the frames each viewer got per second, and
# per added viewer the CPU and RSS it cost. The viewers share this machine.
# Prints; asserts nothing.
#   bench/viewers.sh                         # steps 1,10,25,50,100, 10 s each
#   RTCAM_BENCH_VIEWERS=1,5 RTCAM_BENCH_SECONDS=5 bench/viewers.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --release --locked --test integration -- --ignored --nocapture bench_viewers:: 2>&1 | grep -v '^\[OpenH264\]'
