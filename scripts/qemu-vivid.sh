#!/usr/bin/env bash
# Boots an emulated arm64 board that runs rtcam on a real V4L2 camera: Debian's
# own arm64 kernel under qemu-system-aarch64, and an initramfs holding busybox,
# the kernel's vivid driver (a V4L2 webcam in software), virtio networking, the
# aarch64 rtcam with its shared libraries (libasound.so.2 among them, and
# tests/qemu/alsa.conf as ALSA's config), and a state dir made on the host.
# QEMU forwards the HTTPS port (TCP) and the media port (UDP) from 127.0.0.1.
#
#   scripts/qemu-vivid.sh start BIN STATE_DIR WORKDIR HTTP_PORT UDP_PORT [CONTROL_PORT
#                               [MJPEG_PORT H264_PORT FRAMES_DIR]]
#   scripts/qemu-vivid.sh stop WORKDIR
#
# With CONTROL_PORT, a TCP connection to 127.0.0.1:CONTROL_PORT that sends the
# line "unplug" unplugs the camera inside the guest the way a pulled USB cable
# does (vivid's Disconnect control, then the module unloaded), waits 3 s, and
# plugs it back in (the module loaded again, as /dev/video3); the console says
# "init: vivid unplugged" and "init: vivid reloaded".
#
# With MJPEG_PORT and H264_PORT, the guest also has two cameras that send
# MJPEG and H.264: Debian's v4l2loopback (built here for the guest's kernel,
# once per kernel, cached) as /dev/video1 and /dev/video2, each fed by
# tests/qemu/loopback-feed.c with FRAMES_DIR/mjpeg.frames or h264.frames
# (examples/loopback_frames.rs) at 640x360 15 fps, each read by one more
# rtcam (--capture-format mjpeg / h264) on that port (TCP and UDP, as for
# HTTP_PORT). Their console lines start with "mjpeg| " and "h264| ". They
# start only when asked, so the vivid tests run on an idle board:
#
#   scripts/qemu-vivid.sh loopback WORKDIR CONTROL_PORT
#
# sends the control command "loopback" and returns once both rtcams serve.
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
  command -v make >/dev/null || need+=(make)
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
deb [arch=arm64,amd64] http://deb.debian.org/debian bookworm main
deb [arch=arm64,amd64] http://deb.debian.org/debian bookworm-updates main
deb [arch=arm64,amd64] http://deb.debian.org/debian-security bookworm-security main
EOF
  apt_opts=(-o APT::Architecture=arm64 -o APT::Architectures=arm64,amd64
    -o Dir::Etc::SourceList="$apt_dir/sources.list" -o Dir::Etc::SourceParts="$apt_dir/sources.d"
    -o Dir::State::Lists="$apt_dir/lists" -o Dir::State::Status=/dev/null
    -o Dir::Cache="$apt_dir" -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
  apt-get "${apt_opts[@]}" update -qq >/dev/null
  kpkg=$(apt-cache "${apt_opts[@]}" depends linux-image-arm64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*-arm64\)$/\1/p' | head -n 1)
  [ -n "$kpkg" ] || die "cannot resolve linux-image-arm64"
  kver=${kpkg#linux-image-}
  for pkg in "$kpkg" busybox-static alsa-utils; do
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
  # aplay plays the audio stamp into snd-aloop, whose other end is rtcam's
  # microphone (busybox has no ALSA player).
  alsaroot=$cache/alsa-utils
  if [ ! -x "$alsaroot/usr/bin/aplay" ]; then
    rm -rf "$alsaroot"
    dpkg -x "$(ls "$cache/debs/alsa-utils_"*_arm64.deb | tail -n 1)" "$alsaroot"
  fi
}

# Debian's v4l2loopback (the source in v4l2loopback-dkms) built out of tree
# for the guest's kernel, as dkms would on the board, but cross-compiled: the
# arm64 headers (their kbuild Makefiles), the amd64 linux-kbuild (fixdep,
# modpost and the scripts the headers link to, for this build host) and
# Debian's aarch64-linux-gnu-gcc-12 (the compiler the kernel was built with).
# Nothing is installed: the packages are unpacked into a scratch tree that is
# removed once the module is in the cache. The module is unsigned: the
# kernel (CONFIG_MODULE_SIG_FORCE unset) loads it and taints itself.
build_loopback() {
  local cache=$1 out=$2
  [ -s "$out" ] && return 0
  local t0=$SECONDS build=$cache/loopback-build
  rm -rf "$build"
  mkdir -p "$build/debs"
  local hdr=linux-headers-$kver
  local common
  common=$(apt-cache "${apt_opts[@]}" depends "$hdr" | sed -n 's/^ *Depends: \(linux-headers-.*-common\)$/\1/p' | head -n 1)
  [ -n "$common" ] || die "cannot resolve the common headers of $hdr"
  # linux-kbuild for the build host (amd64: the private apt state holds
  # both architectures' indexes, so apt checks every download's checksum).
  (cd "$build/debs" && apt-get "${apt_opts[@]}" download "$hdr:arm64" "$common:arm64" \
    v4l2loopback-dkms "linux-kbuild-6.1:$(dpkg --print-architecture)" >/dev/null) ||
    die "cannot download the headers, linux-kbuild and v4l2loopback-dkms"
  for deb in "$build"/debs/*.deb; do dpkg -x "$deb" "$build/root"; done
  local src=$build/root/usr/src
  # The headers' Makefile includes the common tree by its absolute path.
  sed -i "s|/usr/src/$common|$src/$common|" "$src/$hdr/Makefile"
  local lb
  lb=$(ls -d "$src"/v4l2loopback-* | head -n 1)
  command -v aarch64-linux-gnu-gcc-12 >/dev/null || die "aarch64-linux-gnu-gcc-12 is missing"
  make -s -C "$src/$hdr" M="$lb" ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu- modules >"$build/make.log" 2>&1 ||
    { cat "$build/make.log" >&2; die "building v4l2loopback failed"; }
  local magic
  magic=$(modinfo -F vermagic "$lb/v4l2loopback.ko")
  case "$magic" in
    "$kver "*) ;;
    *) die "v4l2loopback's vermagic '$magic' is not the guest kernel's $kver" ;;
  esac
  aarch64-linux-gnu-strip --strip-debug -o "$out.tmp" "$lb/v4l2loopback.ko"
  mv "$out.tmp" "$out"
  echo "qemu-vivid: built $(basename "$lb") for $kver in $((SECONDS - t0)) s (vermagic $magic)"
  rm -rf "$build"
}

# Every shared library BIN needs, found in Debian's arm64 cross libraries
# (the loader, libc, libm, libgcc_s, libstdc++) or in the sysroot
# scripts/cross-build.sh unpacks (libasound.so.2, which alsa-sys links
# dynamically).
copy_libraries() {
  local bin=$1 dest=$2
  local libdirs=(/usr/aarch64-linux-gnu/lib "$repo/target/sysroot/aarch64-linux-gnu/usr/lib/aarch64-linux-gnu")
  local queue=("$bin") seen=" "
  while [ "${#queue[@]}" -gt 0 ]; do
    local file=${queue[0]}
    queue=("${queue[@]:1}")
    for lib in $(aarch64-linux-gnu-readelf -d "$file" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
      case "$seen" in *" $lib "*) continue ;; esac
      seen="$seen$lib "
      local found= libdir
      for libdir in "${libdirs[@]}"; do
        [ -e "$libdir/$lib" ] && { found=$libdir/$lib; break; }
      done
      [ -n "$found" ] || die "$lib (needed by $file) is in none of ${libdirs[*]} (scripts/cross-build.sh --toolchain-only aarch64-unknown-linux-gnu unpacks the sysroot)"
      cp -L "$found" "$dest/$lib"
      queue+=("$found")
    done
  done
}

# The guest's tools, static: vivid-disconnect presses vivid's Disconnect
# button (the guest has no v4l2-ctl); loopback-feed plays a camera.
build_tool() {
  local out=$1 src=$repo/tests/qemu/$(basename "$1").c
  if [ ! -x "$out" ] || [ "$src" -nt "$out" ]; then
    command -v aarch64-linux-gnu-gcc >/dev/null || die "aarch64-linux-gnu-gcc is missing (scripts/cross-build.sh --toolchain-only installs it)"
    aarch64-linux-gnu-gcc -static -O2 -o "$out" "$src" -lm
  fi
}

start() {
  local bin=$1 state=$2 work=$3 http_port=$4 udp_port=$5 control_port=${6:-}
  local mjpeg_port=${7:-} h264_port=${8:-} frames=${9:-}
  if [ -n "$mjpeg_port" ]; then
    [ -s "$frames/mjpeg.frames" ] && [ -s "$frames/h264.frames" ] || die "no mjpeg.frames and h264.frames in $frames"
  fi
  [ -x "$bin" ] || die "no binary at $bin"
  [ -d "$state" ] || die "no state dir at $state"
  od -An -tx1 -j18 -N2 "$bin" | grep -q "b7 00" || die "$bin is not an aarch64 binary"
  # QEMU exits at once when a forward cannot bind: say why instead.
  python3 - "$http_port" "$udp_port" <<'EOF' || die "port $4 (TCP) or $5 (UDP) is in use on 127.0.0.1"
import socket, sys
t = socket.socket(); t.bind(("127.0.0.1", int(sys.argv[1]))); t.close()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", int(sys.argv[2]))); u.close()
EOF
  for p in $mjpeg_port $h264_port; do
    python3 - "$p" <<'EOF' || die "port $p (TCP or UDP) is in use on 127.0.0.1"
import socket, sys
t = socket.socket(); t.bind(("127.0.0.1", int(sys.argv[1]))); t.close()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", int(sys.argv[1]))); u.close()
EOF
  done
  install_tools
  mkdir -p "$work"
  stop "$work"
  local cache=$repo/target/qemu-cache
  local t0=$SECONDS
  fetch_guest_packages "$cache"
  echo "qemu-vivid: kernel $kver, packages ready in $((SECONDS - t0)) s"
  local loopback_ko=
  if [ -n "$mjpeg_port" ]; then
    loopback_ko=$cache/v4l2loopback-$kver.ko
    build_loopback "$cache" "$loopback_ko"
  fi

  # The initramfs.
  local root=$work/initramfs
  rm -rf "$root"
  mkdir -p "$root"/{bin,lib,modules,proc,sys,dev,tmp,run}
  cp "$bbroot/bin/busybox" "$root/bin/busybox"
  build_tool "$cache/vivid-disconnect"
  cp "$cache/vivid-disconnect" "$root/bin/vivid-disconnect"
  cp "$bin" "$root/rtcam"
  copy_libraries "$bin" "$root/lib"
  # The microphone's sound: the audio stamp (tests/qemu/stamp-feed.c) through
  # aplay into snd-aloop's playback side; rtcam captures the other side.
  build_tool "$cache/stamp-feed"
  cp "$cache/stamp-feed" "$root/bin/stamp-feed"
  cp "$alsaroot/usr/bin/aplay" "$root/bin/aplay"
  copy_libraries "$alsaroot/usr/bin/aplay" "$root/lib"
  # alsa-lib's one config file, at its default path (no ALSA_CONFIG_PATH).
  mkdir -p "$root/usr/share/alsa"
  cp "$repo/tests/qemu/alsa.conf" "$root/usr/share/alsa/alsa.conf"
  cp -a "$state" "$root/state"
  chmod 700 "$root/state"
  # insmod order for each module and what it depends on, deduplicated.
  : >"$root/modules/order"
  for mod in virtio_pci virtio_net virtio_rng vivid snd-aloop; do
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
  # The MJPEG and H.264 cameras: v4l2loopback after vivid (which keeps
  # /dev/video0), a feeder each, and an rtcam each with its own state copy.
  if [ -n "$loopback_ko" ]; then
    build_tool "$cache/loopback-feed"
    cp "$cache/loopback-feed" "$root/bin/loopback-feed"
    cp "$loopback_ko" "$root/modules/v4l2loopback.ko"
    cp "$frames/mjpeg.frames" "$frames/h264.frames" "$root/"
    cp -a "$state" "$root/state-mjpeg"
    cp -a "$state" "$root/state-h264"
    chmod 700 "$root/state-mjpeg" "$root/state-h264"
    # Started by the control command "loopback" (after the vivid tests, so
    # that they run on an otherwise idle board as before): guest shell,
    # verbatim after the ports.
    {
      echo '#!/bin/busybox sh'
      echo "mjpeg_port=$mjpeg_port h264_port=$h264_port"
      cat <<'EOF'
# max_buffers=8 (not 2): the writer fills its buffers round-robin whether
# or not a reader still holds one; with two, a reader that falls a frame
# behind gets a buffer overwritten under it (a torn, truncated JPEG).
insmod /modules/v4l2loopback.ko devices=2 video_nr=1,2 exclusive_caps=1,1 max_buffers=8 \
  card_label=loopback-mjpeg,loopback-h264 ||
  echo "init: insmod v4l2loopback.ko failed"
loopback-feed /dev/video1 MJPG 640 360 15 /mjpeg.frames 10 2>&1 | awk '{ print "mjpeg| " $0; fflush() }' &
loopback-feed /dev/video2 H264 640 360 15 /h264.frames 30 2>&1 | awk '{ print "h264| " $0; fflush() }' &
echo "init: v4l2loopback loaded (kernel taint flags $(cat /proc/sys/kernel/tainted))"
sleep 0.5
for cam in mjpeg:1:$mjpeg_port h264:2:$h264_port; do
  name=${cam%%:*}; rest=${cam#*:}; nr=${rest%%:*}; port=${rest#*:}
  ( NO_COLOR=1 RUST_LOG=info LD_LIBRARY_PATH=/lib /rtcam --state-dir /state-$name --board qemu-virt \
      --source /dev/video$nr --capture-format $name \
      --http 0.0.0.0:$port --rtc 0.0.0.0:$port --advertise 127.0.0.1 2>&1
    echo "init: rtcam exited with status $?" ) | awk -v p="$name| " '{ print p $0; fflush() }' &
done
EOF
    } >"$root/loopback"
    chmod 755 "$root/loopback"
  fi
  cat >"$root/control" <<EOF
#!/bin/busybox sh
# One command per connection (nc -e): "unplug" pulls the camera out and puts it back;
# "clock" answers the guest's wall clock in ns.
read -r cmd
case "\$cmd" in
  clock) stamp-feed --now ;;
  unplug)
    echo "init: unplugging vivid" >/dev/console
    vivid-disconnect /dev/video0 || echo "init: vivid-disconnect failed" >/dev/console
    # rtcam closes the vanished node on its next read; then the module can go.
    i=0
    until rmmod vivid 2>/dev/null; do i=\$((i + 1)); [ \$i -gt 100 ] && break; sleep 0.1; done
    echo "init: vivid unplugged (\$(echo /dev/video*))" >/dev/console
    sleep 3
    # Back under another node number, as a replugged USB camera may be:
    # rtcam must find it by who it is, not where it was.
    insmod /modules/vivid.ko $vivid_params vid_cap_nr=3
    echo "init: vivid reloaded (\$(echo /dev/video*))" >/dev/console
    echo done ;;
  loopback)
    [ -x /loopback ] || { echo "no loopback cameras in this guest"; exit 0; }
    # Once: the host asks again when it heard no answer.
    [ -e /tmp/loopback.started ] || {
      : >/tmp/loopback.started
      setsid /loopback </dev/null >/dev/console 2>&1 &
    }
    echo started ;;
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
echo "init: \$(echo /dev/video*) \$(echo /dev/snd/*)"
( while true; do nc -l -p 2323 -e /control; done ) &
# The room rtcam's microphone hears: the stamp, played into snd-aloop. Both
# run at a higher priority with 200 ms of buffer: the emulated CPU stalls for
# tens of ms, and an underrun would cut a stamp (the feed then runs late and
# whole instead; the test reads latency, not the room's sound quality). aplay
# on snd-aloop can die of an EIO under the emulated CPU (a CI run): the room
# then plays again, as a real room would, rather than going silent for good.
( while true; do
    sh -c 'renice -n -10 -p \$\$ >/dev/null; exec stamp-feed' |
    sh -c 'renice -n -10 -p \$\$ >/dev/null; LD_LIBRARY_PATH=/lib exec aplay -q -D hw:Loopback,0,0 \
      -t raw -f S16_LE -r 48000 -c 1 --buffer-time=200000 --period-time=10000' 2>&1 | sed 's/^/aplay: /'
    echo "init: the stamp feed ended; playing it again"
    sleep 1
  done ) &
echo "init: starting rtcam"
NO_COLOR=1 RUST_LOG=info LD_LIBRARY_PATH=/lib /rtcam --state-dir /state --board qemu-virt \\
  --http 0.0.0.0:$http_port --rtc 0.0.0.0:$udp_port --advertise 127.0.0.1 \\
  --audio-in plughw:Loopback,1,0 --audio-out off
echo "init: rtcam exited with status \$?"
poweroff -f
EOF
  chmod 755 "$root/init"
  (cd "$root" && find . | cpio -o -H newc --quiet) >"$work/initramfs.cpio"

  local extra_fwd=
  for p in $mjpeg_port $h264_port; do
    extra_fwd="$extra_fwd,hostfwd=tcp:127.0.0.1:$p-:$p,hostfwd=udp:127.0.0.1:$p-:$p"
  done
  : >"$work/serial.log"
  # TCG always: /dev/kvm on these machines is a nested device that kills
  # stock kernels. cortex-a72 is the Pi 4's core, and boots fastest.
  qemu-system-aarch64 -M virt -cpu cortex-a72 -accel tcg -smp 2 -m 512 \
    -kernel "$kroot/boot/vmlinuz-$kver" -initrd "$work/initramfs.cpio" \
    -append "console=ttyAMA0 rdinit=/init panic=-1 loglevel=4" \
    -display none -serial "file:$work/serial.log" -no-reboot \
    -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$http_port-:$http_port,hostfwd=udp:127.0.0.1:$udp_port-:$udp_port${control_port:+,hostfwd=tcp:127.0.0.1:$control_port-:2323}$extra_fwd" \
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

# Loads v4l2loopback in the running guest, starts the feeders and the two
# rtcams (the "loopback" control command), and returns once both serve.
loopback() {
  local work=$1 control_port=$2 t0=$SECONDS
  # QEMU's forward accepts on the host at once and only then connects to the
  # guest's nc, which the guest restarts after every command: a command that
  # comes while it restarts is reset unread (seen once in CI). The guest's
  # "loopback" is idempotent, so asking again is safe.
  local reply="" try
  for try in 1 2 3 4 5 6 7 8 9 10; do
    if exec 3<>"/dev/tcp/127.0.0.1/$control_port"; then
      { echo loopback >&3 && read -r reply <&3; } 2>/dev/null || reply=""
      exec 3<&-
    fi
    [ -n "$reply" ] && break
    echo "qemu-vivid: the guest's control port did not answer (try $try of 10)" >&2
    sleep 1
  done
  [ "$reply" = started ] || {
    tail -n 40 "$work/serial.log" >&2
    die "the guest said: ${reply:-nothing}"
  }
  until grep -aq "^mjpeg| .*listening on https://" "$work/serial.log" &&
    grep -aq "^h264| .*listening on https://" "$work/serial.log"; do
    if grep -aq -E "^(mjpeg|h264)\| init: rtcam exited|init: insmod v4l2loopback.ko failed" "$work/serial.log" ||
      [ $((SECONDS - t0)) -gt 60 ]; then
      grep -a -E "^(mjpeg|h264)\||v4l2loopback" "$work/serial.log" | tail -n 40 >&2
      die "the MJPEG and H.264 cameras' rtcams did not serve"
    fi
    sleep 0.2
  done
  echo "qemu-vivid: MJPEG and H.264 cameras serve after $((SECONDS - t0)) s"
  grep -a -E "v4l2loopback|loopback-feed|^(mjpeg|h264)\| .*(video source|encoders:)" "$work/serial.log" | sed 's/^/  guest: /'
}

case "${1:-}" in
  start) [ $# -eq 6 ] || [ $# -eq 7 ] || [ $# -eq 10 ] ||
    die "usage: $0 start BIN STATE_DIR WORKDIR HTTP_PORT UDP_PORT [CONTROL_PORT [MJPEG_PORT H264_PORT FRAMES_DIR]]"
    start "${@:2}" ;;
  loopback) [ $# -eq 3 ] || die "usage: $0 loopback WORKDIR CONTROL_PORT"; loopback "$2" "$3" ;;
  stop) [ $# -eq 2 ] || die "usage: $0 stop WORKDIR"; stop "$2" ;;
  *) die "usage: $0 start BIN STATE_DIR WORKDIR HTTP_PORT UDP_PORT [CONTROL_PORT [MJPEG_PORT H264_PORT FRAMES_DIR]] | loopback WORKDIR CONTROL_PORT | stop WORKDIR" ;;
esac
