#!/usr/bin/env bash
# The system test: rtcam for aarch64 boots on Debian's arm64 kernel under
# qemu-system-aarch64 (scripts/qemu-vivid.sh) and captures from the kernel's
# vivid camera; on the host, the str0m viewer of tests/qemu_vivid.rs and the
# page in Chromium (tests/browser/test_qemu_guest.py) receive its video
# through QEMU's port forwards. Then the guest loads v4l2loopback as an
# MJPEG and an H.264 camera, each read by one more rtcam, and
# tests/qemu_vivid.rs watches those too.
#   scripts/qemu-test.sh [AARCH64_RTCAM]
# Default binary: target/aarch64-unknown-linux-gnu/debug/rtcam (built if
# missing; scripts/test.sh has built it already for the qemu-user run).
set -euo pipefail
cd "$(dirname "$0")/.."
target=aarch64-unknown-linux-gnu
bin=${1:-target/$target/debug/rtcam}
if [ ! -x "$bin" ]; then
  scripts/cross-build.sh --toolchain-only "$target"
  cargo build --locked --target "$target" --bin rtcam
fi
[ -x target/debug/rtcam ] || cargo build --locked --bin rtcam
[ -x .venv/bin/python ] || scripts/setup.sh --test

work=$(mktemp -d /tmp/rtcam-qemu.XXXXXX)
cleanup() { scripts/qemu-vivid.sh stop "$work" || true; }
trap cleanup EXIT

# The guest's state, made on the host with the host's rtcam: a password for
# the page and a WHEP token for the str0m viewer (with --control: it sets
# vivid's brightness over the data channel).
password="qemu-system-test-$RANDOM$RANDOM"
printf '%s\n' "$password" | target/debug/rtcam passwd --password-stdin --state-dir "$work/state" >/dev/null
token=$(target/debug/rtcam token create qemu-test --control --state-dir "$work/state")

# One port number for HTTPS (TCP) and media (UDP), free on the host for both:
# the forward keeps the number, so the guest's ICE candidate 127.0.0.1:PORT
# is right on the host. One for the vivid rtcam, one each for the MJPEG and
# H.264 cameras' (v4l2loopback).
read -r port mjpeg_port h264_port < <(python3 - <<'EOF'
import socket
ports = []
while len(ports) < 3:
    t = socket.socket(); t.bind(("127.0.0.1", 0)); p = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", p))
        if p not in ports:
            ports.append(p)
    except OSError:
        pass
    finally:
        t.close(); u.close()
print(*ports)
EOF
)
control=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# What the MJPEG and H.264 cameras send: rtcam's stamped test pattern,
# recorded on the host (made each run: it must match rtcam's stripe).
cargo run --locked -q --example loopback_frames -- "$work/frames" 2>"$work/frames.log" ||
  { cat "$work/frames.log" >&2; exit 1; }
scripts/qemu-vivid.sh start "$bin" "$work/state" "$work" "$port" "$port" "$control" \
  "$mjpeg_port" "$h264_port" "$work/frames"

export RTCAM_QEMU_HTTP="127.0.0.1:$port" RTCAM_QEMU_RTC="127.0.0.1:$port" \
  RTCAM_QEMU_TOKEN="$token" RTCAM_QEMU_LOG="$work/serial.log" \
  RTCAM_QEMU_URL="https://127.0.0.1:$port" RTCAM_QEMU_PASSWORD="$password" \
  RTCAM_QEMU_CONTROL="127.0.0.1:$control"
for cam in MJPEG:$mjpeg_port H264:$h264_port; do
  export "RTCAM_QEMU_${cam%%:*}_HTTP=127.0.0.1:${cam#*:}" "RTCAM_QEMU_${cam%%:*}_RTC=127.0.0.1:${cam#*:}" \
    "RTCAM_QEMU_${cam%%:*}_TOKEN=$token" "RTCAM_QEMU_${cam%%:*}_LOG=$work/serial.log"
done
echo "== system test: str0m viewer on the host"
cargo test --locked --test integration -- --ignored --nocapture --exact qemu_vivid::vivid_camera_in_an_arm64_guest_reaches_a_host_viewer
echo "== system test: the page in Chromium on the host (then the camera unplugged and back)"
.venv/bin/python -m pytest -q -s tests/browser/test_qemu_guest.py
echo "== system test: the guest's microphone (snd-aloop, fed the audio stamp) to a player on the host"
cargo test --locked --test integration -- --ignored --nocapture --exact qemu_vivid::snd_aloop_microphone_in_an_arm64_guest_reaches_a_host_player
echo "== system test: an MJPEG and an H.264 camera (v4l2loopback) in the guest, str0m viewers on the host"
scripts/qemu-vivid.sh loopback "$work" "$control"
# One at a time: the emulated board has two CPUs.
cargo test --locked --test integration -- --ignored --nocapture --test-threads=1 \
  qemu_vivid::mjpeg_camera_in_an_arm64_guest qemu_vivid::h264_camera_in_an_arm64_guest
echo "== system test: the guest's rtcam log"
grep -a -E "board:|video source|encoders:|encoder started|listening on|viewer|vivid|capture|loopback|passthrough|audio|microphone|aplay|snd" "$work/serial.log" | tail -n 60
