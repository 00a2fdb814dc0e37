#!/usr/bin/env bash
# The cost of motion detection and recording (tests/bench_record.rs, release
# build): CPU by thread and for the whole process with one viewer, at
# 1280x720 30 fps on the camera-like scene, without motion or recording,
# with motion detection, with continuous recording, and on the still scene
# recording on motion; bytes written an hour and the write amplification
# against the stream's own bytes; motion event to viewer. Prints; asserts
# nothing.
#   bench/record.sh
#   RTCAM_BENCH_SECONDS=20 bench/record.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test >/dev/null
cargo test --release --locked --test integration -- --ignored --nocapture --test-threads 1 bench_record:: 2>&1 |
  grep -E '^(one viewer|motion|test result)'
