#!/usr/bin/env bash
# Instructions per frame, counted by valgrind's callgrind (stable on a noisy
# machine, unlike time): openh264 encoding the camera-like scene at
# 1280x720@30, 1 Mbit/s, and the session table sending each frame to 1 and
# to 10 str0m viewers on simulated time (tests/bench_send_path.rs). Prints
# per frame: the encoder alone, the send path (Sessions::write_frame,
# handle_timeout, handle_receive, poll_transmit), and per added viewer.
# Asserts nothing.
#   bench/callgrind.sh                # viewers 1 and 10
#   RTCAM_BENCH_STEPS="1 2" bench/callgrind.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
command -v valgrind > /dev/null || sudo apt-get install -y valgrind
bin=$(cargo test --release --locked --test integration --no-run --message-format=json 2> /dev/null |
  sed -n 's/.*"executable":"\([^"]*integration[^"]*\)".*/\1/p' | tail -n 1)
out=$(mktemp -d)
frames=300
fn() { # inclusive instructions of functions matching $2 in callgrind file $1
  callgrind_annotate --inclusive=yes --threshold=100 "$1" 2> /dev/null |
    grep -E "$2" | awk '{gsub(",", "", $1); print $1}' | sort -n | tail -n 1
}
printf '%-8s %16s %16s %16s\n' viewers "encoder/frame" "send path/frame" "window/frame"
for n in ${RTCAM_BENCH_STEPS:-1 10}; do
  RTCAM_BENCH_VIEWERS=$n valgrind --tool=callgrind --callgrind-out-file="$out/cg.$n" \
    --collect-atstart=no --toggle-collect='*measured_window*' \
    "$bin" --ignored --exact bench_send_path::send_path_instructions --test-threads 1 > /dev/null 2>&1
  window=$(fn "$out/cg.$n" 'measured_window')
  enc=$(fn "$out/cg.$n" 'rtcam::encode::Encoder::encode')
  send=0
  for f in 'Sessions::write_frame' 'Sessions::handle_timeout' 'Sessions::handle_receive' 'Sessions::poll_transmit'; do
    send=$(( send + $(fn "$out/cg.$n" "$f" || echo 0) ))
  done
  printf '%-8s %16d %16d %16d\n' "$n" $(( enc / frames )) $(( send / frames )) $(( window / frames ))
done
echo "(callgrind files in $out; per added viewer: the send path's difference over the added viewers)"
