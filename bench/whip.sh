#!/usr/bin/env bash
# What publishing once to an SFU saves the device (tests/bench_whip.rs,
# release build): rtcam's CPU and upload with N direct viewers against one
# WHIP publish into Janus plus N Janus subscribers (N = 1, 10, 50 light str0m
# subscribers), then stamp-to-decoded latency direct against through Janus.
# Janus and simple-whip-server run in a network namespace of their own
# (bench/whip.py, with the Janus test's tests/browser/janus_support.py), as
# does the benchmark. Needs root. Prints; asserts nothing.
#   bench/whip.sh
#   RTCAM_BENCH_VIEWERS=1,5 RTCAM_BENCH_SECONDS=5 bench/whip.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "bench/whip.sh needs root: Janus runs in a network namespace with a veth pair" >&2
  exit 1
fi
scripts/setup.sh --test >/dev/null
bin=$(cargo test --release --locked --test integration --no-run --message-format=json 2>/dev/null |
  .venv/bin/python -c 'import json, sys
exes = [m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable")]
print([e for e in exes if "/integration-" in e][-1])')
exec .venv/bin/python bench/whip.py "$bin"
