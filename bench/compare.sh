#!/usr/bin/env bash
# Issue #20's figures for two rtcam binaries in one run, each measured the
# same way on the camera-like scene at 1280x720@30: RSS idle; click-to-first-
# frame in Chromium (median of 5, with RSS and CPU for that one viewer); RSS
# and CPU with 1, 10 and 100 light str0m viewers; then, for this tree only,
# instructions per frame (bench/callgrind.sh) and the slow-link start on
# simulated time (tests/rate_start.rs). Prints; asserts nothing.
#   bench/compare.sh BEFORE_BINARY [AFTER_BINARY (default target/release/rtcam)]
set -euo pipefail
cd "$(dirname "$0")/.."
before=$(realpath "${1:?an older rtcam binary to compare with}")
after=$(realpath -m "${2:-target/release/rtcam}")
scripts/setup.sh
[ -n "${2:-}" ] || cargo build --release --locked --bin rtcam
py=.venv/bin/python

# Drops binary $1 from the page cache, so it starts as a boot finds it (read
# from storage): one just built or copied shows about 1-1.5 MB more resident
# code (tests/browser/rtcam_harness.py, evict_page_cache).
cold() { dd if="$1" iflag=nocache count=0 status=none; }

idle_rss() { # VmRSS (MiB) of $1 idle for 10 s, test source 720p, started cold
  local dir; dir=$(mktemp -d)
  cold "$1"
  "$1" --source test --size 1280x720 --fps 30 --state-dir "$dir" --http 127.0.0.1:0 \
    --rtc 127.0.0.1:0 --mdns off > "$dir/log" 2>&1 &
  local pid=$!
  sleep 10
  awk '/VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$pid/status"
  kill "$pid"; wait "$pid" 2> /dev/null || true
  rm -rf "$dir"
}

first_frames() { # click-to-first-frame (ms), one line per run, and the last run's table
  for _ in 1 2 3 4 5; do
    RTCAM_BIN="$1" "$py" bench/browser_bench.py --seconds 3 --viewers 0 2> /dev/null |
      tee -a "$2" | awk '/click-to-first-frame avg/ { print $3 }'
  done
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

for which in before after; do
  bin=$([ "$which" = before ] && echo "$before" || echo "$after")
  echo "== $which: $bin"
  echo "idle RSS: $(idle_rss "$bin") MiB"
  table=$(mktemp)
  runs=$(first_frames "$bin" "$table" | tr '\n' ' ')
  echo "click-to-first-frame in Chromium, 5 runs: $runs-> median $(echo "$runs" | tr ' ' '\n' | grep . | median) ms"
  grep -E 'rtcam (CPU|VmRSS max|VmHWM)' "$table" | tail -n 3 | sed 's/^/one Chromium viewer, last run: /'
  RTCAM_TEST_WRAPPER="$PWD/bench/run-as.sh" RTCAM_BENCH_REAL="$bin" RTCAM_BENCH_VIEWERS=1,10,100 \
    RTCAM_BENCH_SECONDS=6 cargo test --release --locked --test integration -- --ignored --nocapture bench_viewers:: 2>&1 |
    grep -v '^\[OpenH264\]' | grep -E '^ *(viewers|[0-9]+ )|per added' || true
done
echo "== this tree: instructions per frame"
bench/callgrind.sh
echo "== this tree: the slow-link start on simulated time"
cargo test --locked --test integration -- --nocapture --test-threads 1 rate_start:: 2>&1 |
  grep -E '^behind|of video|first frame .* after connecting'
