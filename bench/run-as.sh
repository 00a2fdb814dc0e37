#!/usr/bin/env bash
# RTCAM_TEST_WRAPPER for the benchmarks: runs $RTCAM_BENCH_REAL (a release
# rtcam, or an older one to compare) in place of the test's own binary, whose
# path comes first and is dropped; the emulated-CPU "bars" source the tests
# then ask for is turned back into the camera-like scene.
set -euo pipefail
shift
args=()
for a in "$@"; do [ "$a" = bars ] && a=test; args+=("$a"); done
# Started as a boot finds it, read from storage (bench/compare.sh, cold).
dd if="${RTCAM_BENCH_REAL:?a release rtcam}" iflag=nocache count=0 status=none
exec "$RTCAM_BENCH_REAL" "${args[@]}"
