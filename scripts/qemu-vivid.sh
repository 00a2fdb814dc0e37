#!/usr/bin/env bash
# Boots an emulated arm64 board that runs rtcam on a real V4L2 camera: Debian's
# own arm64 kernel under qemu-system-aarch64, and an initramfs holding busybox,
# the kernel's vivid driver (a V4L2 webcam in software), virtio networking, the
# aarch64 rtcam with its shared libraries, and a state dir made on the host.
# QEMU forwards the HTTPS port (TCP) and the media port (UDP) from 127.0.0.1.
#
#   scripts/qemu-vivid.sh start BIN STATE_DIR WORKDIR HTTP_PORT UDP_PORT [CONTROL_PORT]
#   scripts/qemu-vivid.sh stop WORKDIR
#
# With CONTROL_PORT, a TCP connection to 127.0.0.1:CONTROL_PORT that sends the
# line "unplug" unplugs the camera inside the guest the way a pulled USB cable
# does (vivid's Disconnect control, then the module unloaded), waits 3 s, and
# plugs it back in (the module loaded again); the console says
# "init: vivid unplugged" and "init: vivid reloaded".
#
# `start` returns once rtcam serves (its "listening on https://" line on the
# serial console, WORKDIR/serial.log) and fails with the console's tail if it
# does not. Downloads are cached in target/qemu-cache/. Facts behind the
# choices: ../shared/notes/qemu-vivid.md.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

die() { echo "qemu-vivid: $*" >&2; exit 1; }

stop() {
  local work=$1
  [ -f "$work/qemu.pid" ] || return 0
  local pid
  pid=$(cat "$work/qemu.pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$work/qemu.pid"
}

install_tools() {
  local need=()
  command -v qemu-system-aarch64 >/dev/null || need+=(qemu-system-arm)
  command -v cpio >/dev/null || need+=(cpio)
  command -v depmod >/dev/null || need+=(kmod)
  command -v aarch64-linux-gnu-readelf >/dev/null || need+=(binutils-aarch64-linux-gnu)
  [ -e /usr/aarch64-linux-gnu/lib/libstdc++.so.6 ] || need+=(libstdc++6-arm64-cross)
  [ "${#need[@]}" -eq 0 ] && return 0
  local sudo_cmd=()
  [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
  echo "qemu-vivid: installing ${need[*]}"
  "${sudo_cmd[@]}" apt-get update -qq
  # --no-install-recommends: QEMU's recommends pull in a desktop's worth of
  # graphics libraries a headless test never uses.
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
    -o DPkg::Lock::Timeout=600 "${need[@]}" >/dev/null
}

# The guest's packages, through a private apt state for arm64 so the host's
# dpkg never hears of them. The kernel metapackage is resolved every time:
# old kernel ABIs vanish from the mirror after security updates.
fetch_guest_packages() {
  local cache=$1 apt_dir=$1/apt
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$apt_dir/sources.d"
  cat >"$apt_dir/sources.list" <<'EOF'
deb [arch=arm64] http://deb.debian.org/debian bookworm main
deb [arch=arm64] http://deb.debian.org/debian bookworm-updates main
deb [arch=arm64] http://deb.debian.org/debian-security bookworm-security main
EOF
  apt_opts=(-o APT::Architecture=arm64 -o APT::Architectures=arm64
    -o Dir::Etc::SourceList="$apt_dir/sources.list" -o Dir::Etc::SourceParts="$apt_dir/sources.d"
    -o Dir::State::Lists="$apt_dir/lists" -o Dir::State::Status=/dev/null
    -o Dir::Cache="$apt_dir" -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
  apt-get "${apt_opts[@]}" update -qq >/dev/null
  kpkg=$(apt-cache "${apt_opts[@]}" depends linux-image-arm64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*-arm64\)$/\1/p' | head -n 1)
  [ -n "$kpkg" ] || die "cannot resolve linux-image-arm64"
  kver=${kpkg#linux-image-}
  for pkg in "$kpkg" busybox-static; do
    if ! ls "$cache/debs/${pkg}_"*_arm64.deb >/dev/null 2>&1; then
      mkdir -p "$cache/debs"
      (cd "$cache/debs" && apt-get "${apt_opts[@]}" download "$pkg:arm64" >/dev/null)
    fi
  done
  kroot=$cache/kernel-$kver
  if [ ! -e "$kroot/.unpacked" ]; then
    rm -rf "$kroot"
    dpkg -x "$(ls "$cache/debs/${kpkg}_"*_arm64.deb | tail -n 1)" "$kroot"
    # The package ships no modules.dep.
    depmod -b "$kroot" "$kver"
    touch "$kroot/.unpacked"
  fi
  bbroot=$cache/busybox
  if [ ! -x "$bbroot/bin/busybox" ]; then
    rm -rf "$bbroot"
    dpkg -x "$(ls "$cache/debs/busybox-static_"*_arm64.deb | tail -n 1)" "$bbroot"
  fi
}

# Every shared library BIN needs, found in Debian's arm64 cross libraries.
copy_libraries() {
  local bin=$1 dest=$2 libdir=/usr/aarch64-linux-gnu/lib
  local queue=("$bin") seen=" "
  while [ "${#queue[@]}" -gt 0 ]; do
    local file=${queue[0]}
    queue=("${queue[@]:1}")
    for lib in $(aarch64-linux-gnu-readelf -d "$file" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
      case "$seen" in *" $lib "*) continue ;; esac
      seen="$seen$lib "
      [ -e "$libdir/$lib" ] || die "$lib (needed by $file) is not in $libdir"
      cp -L "$libdir/$lib" "$dest/$lib"
      queue+=("$libdir/$lib")
    done
  done
}

# The guest's tool that presses vivid's Disconnect button (it has no v4l2-ctl).
build_disconnect() {
  local out=$1 src=$repo/tests/qemu/vivid-disconnect.c
  if [ ! -x "$out" ] || [ "$src" -nt "$out" ]; then
    command -v aarch64-linux-gnu-gcc >/dev/null || die "aarch64-linux-gnu-gcc is missing (scripts/cross-build.sh --toolchain-only installs it)"
    aarch64-linux-gnu-gcc -static -O2 -o "$out" "$src"
  fi
}

start() {
  local bin=$1 state=$2 work=$3 http_port=$4 udp_port=$5 control_port=${6:-}
  [ -x "$bin" ] || die "no binary at $bin"
  [ -d "$state" ] || die "no state dir at $state"
  od -An -tx1 -j18 -N2 "$bin" | grep -q "b7 00" || die "$bin is not an aarch64 binary"
  # QEMU exits at once when a forward cannot bind: say why instead.
  python3 - "$http_port" "$udp_port" <<'EOF' || die "port $4 (TCP) or $5 (UDP) is in use on 127.0.0.1"
import socket, sys
t = socket.socket(); t.bind(("127.0.0.1", int(sys.argv[1]))); t.close()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", int(sys.argv[2]))); u.close()
EOF
  install_tools
  mkdir -p "$work"
  stop "$work"
  local cache=$repo/target/qemu-cache
  local t0=$SECONDS
  fetch_guest_packages "$cache"
  echo "qemu-vivid: kernel $kver, packages ready in $((SECONDS - t0)) s"

  # The initramfs.
  local root=$work/initramfs
  rm -rf "$root"
  mkdir -p "$root"/{bin,lib,modules,proc,sys,dev,tmp,run}
  cp "$bbroot/bin/busybox" "$root/bin/busybox"
  build_disconnect "$cache/vivid-disconnect"
  cp "$cache/vivid-disconnect" "$root/bin/vivid-disconnect"
  cp "$bin" "$root/rtcam"
  copy_libraries "$bin" "$root/lib"
  cp -a "$state" "$root/state"
  chmod 700 "$root/state"
  # insmod order for each module and what it depends on, deduplicated.
  : >"$root/modules/order"
  for mod in virtio_pci virtio_net virtio_rng vivid; do
    modprobe -d "$kroot" -S "$kver" --show-depends "$mod" | while read -r kind path _; do
      [ "$kind" = insmod ] || continue
      local name
      name=$(basename "$path")
      name=${name%.xz}
      grep -qx "$name" "$root/modules/order" && continue
      case "$path" in
        *.xz) xz -dc "$path" >"$root/modules/$name" ;;
        *) cp "$path" "$root/modules/$name" ;;
      esac
      echo "$name" >>"$root/modules/order"
    done
  done
  # One webcam-like capture node on the single-planar API. Error injection
  # stays available: its Disconnect control is how the test unplugs it.
  local vivid_params="n_devs=1 node_types=0x1 num_inputs=1 input_types=0x0 multiplanar=1"
  cat >"$root/control" <<EOF
#!/bin/busybox sh
# One command per connection (nc -e): "unplug" pulls the camera out and puts it back.
read -r cmd
case "\$cmd" in
  unplug)
    echo "init: unplugging vivid" >/dev/console
    vivid-disconnect /dev/video0 || echo "init: vivid-disconnect failed" >/dev/console
    # rtcam closes the vanished node on its next read; then the module can go.
    i=0
    until rmmod vivid 2>/dev/null; do i=\$((i + 1)); [ \$i -gt 100 ] && break; sleep 0.1; done
    echo "init: vivid unplugged (\$(ls /dev/video* 2>&1))" >/dev/console
    sleep 3
    insmod /modules/vivid.ko $vivid_params
    echo "init: vivid reloaded (\$(ls /dev/video* 2>&1))" >/dev/console
    echo done ;;
  *) echo "unknown command: \$cmd" ;;
esac
EOF
  chmod 755 "$root/control"
  cat >"$root/init" <<EOF
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
for m in \$(cat /modules/order); do
  case "\$m" in
    vivid.ko) insmod /modules/\$m $vivid_params ;;
    *) insmod /modules/\$m ;;
  esac || echo "init: insmod \$m failed"
done
ip link set lo up
ip addr add 10.0.2.15/24 dev eth0
ip link set eth0 up
ip route add default via 10.0.2.2
echo "init: \$(ls /dev/video* 2>&1)"
( while true; do nc -l -p 2323 -e /control; done ) &
echo "init: starting rtcam"
NO_COLOR=1 RUST_LOG=info LD_LIBRARY_PATH=/lib /rtcam --state-dir /state --board qemu-virt \\
  --http 0.0.0.0:$http_port --rtc 0.0.0.0:$udp_port --advertise 127.0.0.1
echo "init: rtcam exited with status \$?"
poweroff -f
EOF
  chmod 755 "$root/init"
  (cd "$root" && find . | cpio -o -H newc --quiet) >"$work/initramfs.cpio"

  : >"$work/serial.log"
  # TCG always: /dev/kvm on these machines is a nested device that kills
  # stock kernels. cortex-a72 is the Pi 4's core, and boots fastest.
  qemu-system-aarch64 -M virt -cpu cortex-a72 -accel tcg -smp 2 -m 512 \
    -kernel "$kroot/boot/vmlinuz-$kver" -initrd "$work/initramfs.cpio" \
    -append "console=ttyAMA0 rdinit=/init panic=-1 loglevel=4" \
    -display none -serial "file:$work/serial.log" -no-reboot \
    -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$http_port-:$http_port,hostfwd=udp:127.0.0.1:$udp_port-:$udp_port${control_port:+,hostfwd=tcp:127.0.0.1:$control_port-:2323}" \
    -device virtio-net-pci,netdev=n0,romfile= -device virtio-rng-pci \
    -pidfile "$work/qemu.pid" >"$work/qemu.log" 2>&1 &
  local qemu=$!
  local boot=$SECONDS
  until grep -aq "listening on https://" "$work/serial.log"; do
    if ! kill -0 "$qemu" 2>/dev/null || grep -aq "rtcam exited" "$work/serial.log"; then
      cat "$work/qemu.log" >&2
      tail -n 60 "$work/serial.log" >&2
      die "the guest stopped before rtcam served"
    fi
    if [ $((SECONDS - boot)) -gt 120 ]; then
      tail -n 60 "$work/serial.log" >&2
      stop "$work"
      die "rtcam did not serve within 120 s"
    fi
    sleep 0.5
  done
  echo "qemu-vivid: rtcam serves after $((SECONDS - boot)) s: https://127.0.0.1:$http_port/ (media udp $udp_port)"
  grep -a -E "init: /dev/video|board:|video source|encoders:|encoder started" "$work/serial.log" | sed 's/^/  guest: /'
}

case "${1:-}" in
  start) [ $# -eq 6 ] || [ $# -eq 7 ] || die "usage: $0 start BIN STATE_DIR WORKDIR HTTP_PORT UDP_PORT [CONTROL_PORT]"; start "${@:2}" ;;
  stop) [ $# -eq 2 ] || die "usage: $0 stop WORKDIR"; stop "$2" ;;
  *) die "usage: $0 start BIN STATE_DIR WORKDIR HTTP_PORT UDP_PORT [CONTROL_PORT] | stop WORKDIR" ;;
esac
