#!/usr/bin/env bash
# Checks an rtcam .deb as an owner would meet it: what it holds, with which
# permissions, then installs it with dpkg into a throwaway root, checks the
# installed files, that the maintainer scripts enable and start the service,
# that the installed binary serves with the installed config, and that purge
# removes the state.
#   scripts/deb-check.sh target/debian/rtcam_0.1.0-1_amd64.deb
#
# The throwaway root is a folder with busybox as its /bin/sh (dpkg runs the
# maintainer scripts chrooted into it) and stand-ins for systemctl and
# deb-systemd-helper/-invoke that record what they were asked to do: there is
# no systemd to talk to in a folder.
set -euo pipefail
cd "$(dirname "$0")/.."
deb=${1:?usage: scripts/deb-check.sh PACKAGE.deb}
[ "$(id -u)" -eq 0 ] || { echo "deb-check: needs root (dpkg --root chroots into the throwaway root)" >&2; exit 2; }
need=()
command -v busybox >/dev/null || need+=(busybox-static)
command -v curl >/dev/null || need+=(curl)
if [ "${#need[@]}" -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 "${need[@]}" >/dev/null 2>&1
fi

fail() { echo "deb-check: FAIL: $*" >&2; exit 1; }
ok() { echo "deb-check: ok: $*"; }

# --- what the package holds -------------------------------------------------
field() { dpkg-deb --field "$deb" "$1"; }
[ "$(field Package)" = rtcam ] || fail "package name is $(field Package)"
arch=$(field Architecture)
echo "deb-check: $(basename "$deb"): $arch, $(stat -c %s "$deb") bytes, depends: $(field Depends)"
contents=$(dpkg-deb --contents "$deb")
mode_of() { awk -v p="./$1" '$6 == p { print $1 " " $2 }' <<<"$contents"; }
unit_path=$(awk '$6 ~ /systemd\/system\/rtcam\.service$/ { print substr($6, 3) }' <<<"$contents")
[ -n "$unit_path" ] || fail "no rtcam.service in the package"
for want in "usr/bin/rtcam -rwxr-xr-x" "etc/rtcam/rtcam.toml -rw-r--r--" "$unit_path -rw-r--r--"; do
  set -- $want
  got=$(mode_of "$1")
  [ "$got" = "$2 root/root" ] || [ "$got" = "$2 0/0" ] || fail "$1: expected $2 root/root, got '${got:-missing}'"
done
ok "files and modes: usr/bin/rtcam 0755, etc/rtcam/rtcam.toml 0644, $unit_path 0644, all root:root"
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles | grep -qx /etc/rtcam/rtcam.toml \
  || fail "/etc/rtcam/rtcam.toml is not a conffile"
ok "/etc/rtcam/rtcam.toml is a conffile"

# Every shared library the binary loads (NEEDED) comes from a package in
# Depends: cargo-deb's depends are written by hand (no dpkg-shlibdeps for the
# ARM binaries), so a new dynamic library (libasound.so.2 from alsa-sys) must
# be added there too.
bin_tmp=$(mktemp -d /tmp/rtcam-deb-bin.XXXXXX)
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$bin_tmp" ./usr/bin/rtcam
needed=$(readelf -d "$bin_tmp/usr/bin/rtcam" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
rm -rf "$bin_tmp"
depends=" $(field Depends | sed 's/ *([^)]*)//g; s/ *|[^,]*//g; s/,/ /g') "
for lib in $needed; do
  case "$lib" in
    libc.so.*|libm.so.*|libdl.so.*|libpthread.so.*|librt.so.*|ld-linux*.so.*) pkg=libc6 ;;
    libgcc_s.so.1) pkg=libgcc-s1 ;;
    libstdc++.so.6) pkg=libstdc++6 ;;
    libasound.so.2) pkg=libasound2 ;;
    *) fail "the binary needs $lib, which this check cannot map to a package: add it here and to depends in Cargo.toml" ;;
  esac
  case "$depends" in *" $pkg "*) ;; *) fail "the binary needs $lib (package $pkg), which Depends ($(field Depends)) lacks" ;; esac
done
ok "every NEEDED library is in Depends: $(echo $needed)"

# --- install into a throwaway root -----------------------------------------
root=$(mktemp -d /tmp/rtcam-deb-root.XXXXXX)
trap '[ -n "${KEEP_ROOT:-}" ] || rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,usr/bin,usr/sbin,sbin,tmp,etc,run/systemd/system,var/lib/dpkg/{info,updates,triggers}}
touch "$root/var/lib/dpkg/status" "$root/var/lib/dpkg/available"
# The scripts send output to /dev/null; without it every such line fails.
mkdir -p "$root/dev" && { mknod -m 666 "$root/dev/null" c 1 3 2>/dev/null || touch "$root/dev/null"; }
cp "$(command -v busybox)" "$root/bin/busybox"
for tool in sh cat rm mkdir grep sed test printf echo true ln; do ln -s busybox "$root/bin/$tool"; done
for tool in systemctl deb-systemd-helper deb-systemd-invoke; do
  printf '#!/bin/sh\necho "%s $*" >> /systemd.log\n' "$tool" >"$root/usr/bin/$tool"
  chmod 755 "$root/usr/bin/$tool"
done
# busybox has no ldconfig or start-stop-daemon; dpkg would refuse to run
# without them in PATH, though rtcam's scripts need neither.
dpkg_root=(dpkg --root="$root" --force-bad-path --force-depends --force-architecture)
"${dpkg_root[@]}" -i "$deb" >"$root/tmp/install.log" 2>&1 || { cat "$root/tmp/install.log"; fail "dpkg -i"; }
sed -n '/rtcam is installed/,$p' "$root/tmp/install.log"

[ "$(stat -c '%a %U:%G' "$root/usr/bin/rtcam")" = "755 root:root" ] || fail "installed binary mode"
[ "$(stat -c '%a' "$root/etc/rtcam/rtcam.toml")" = 644 ] || fail "installed config mode"
cmp -s "$root/$unit_path" systemd/rtcam.service || fail "installed unit differs from systemd/rtcam.service"
cmp -s "$root/etc/rtcam/rtcam.toml" etc/rtcam.toml || fail "installed config differs from etc/rtcam.toml"
ok "installed: binary, config and unit in place with their modes; unit identical to systemd/rtcam.service"
grep -q "enable rtcam.service" "$root/systemd.log" || { cat "$root/systemd.log"; fail "postinst did not enable the service"; }
grep -Eq "(start|restart) .*rtcam.service" "$root/systemd.log" || { cat "$root/systemd.log"; fail "postinst did not start the service"; }
ok "postinst enabled and started rtcam.service: $(tr '\n' ';' <"$root/systemd.log")"

# The installed binary with the installed (all-commented) config serves the
# login page: natively, or for an ARM package under qemu-user.
# libasound.so.2 (a Depends of the package, not in the cross libraries) for
# the emulated binary from scripts/cross-build.sh's sysroot, as
# scripts/qemu-runner.sh does; natively from the host's libasound2.
emulator=()
case "$arch" in
  "$(dpkg --print-architecture)") ;;
  # A Cortex-A72 (the Pi 4), as in scripts/qemu-runner.sh (why: there).
  arm64) emulator=(qemu-aarch64 -cpu cortex-a72
    -E "LD_LIBRARY_PATH=$PWD/target/sysroot/aarch64-linux-gnu/usr/lib/aarch64-linux-gnu" -L /usr/aarch64-linux-gnu) ;;
  armhf) emulator=(qemu-arm
    -E "LD_LIBRARY_PATH=$PWD/target/sysroot/arm-linux-gnueabihf/usr/lib/arm-linux-gnueabihf" -L /usr/arm-linux-gnueabihf) ;;
esac
if [ "$arch" = "$(dpkg --print-architecture)" ] || { [ "${#emulator[@]}" -gt 0 ] && command -v "${emulator[0]}" >/dev/null && [ -d "${emulator[-1]}" ]; }; then
  port=$((20000 + RANDOM % 20000))
  state=$(mktemp -d /tmp/rtcam-deb-state.XXXXXX)
  ${emulator[@]+"${emulator[@]}"} "$root/usr/bin/rtcam" --config "$root/etc/rtcam/rtcam.toml" --state-dir "$state" \
    --source test --size 640x360 --fps 5 --http "127.0.0.1:$port" --rtc "127.0.0.1:$port" \
    >"$state/log" 2>&1 &
  pid=$!
  served=0
  for _ in $(seq 1 100); do
    if curl -sk --max-time 2 "https://127.0.0.1:$port/login" | grep -qi "<form"; then served=1; break; fi
    sleep 0.2
  done
  kill -TERM "$pid" 2>/dev/null || true; wait "$pid" || true
  [ "$served" = 1 ] || { cat "$state/log"; rm -rf "$state"; fail "installed binary did not serve the login page"; }
  rm -rf "$state"
  ok "installed binary serves https://127.0.0.1:$port/login with the installed config${emulator[0]:+ (under ${emulator[0]})}"
fi

# --- purge ------------------------------------------------------------------
# What the service would have made at run time, where DynamicUser= keeps it.
mkdir -p "$root/var/lib/private/rtcam"
echo hash >"$root/var/lib/private/rtcam/password"
ln -s private/rtcam "$root/var/lib/rtcam"
"${dpkg_root[@]}" --purge rtcam >"$root/tmp/purge.log" 2>&1 || { cat "$root/tmp/purge.log"; fail "dpkg --purge"; }
for gone in usr/bin/rtcam etc/rtcam/rtcam.toml "$unit_path" var/lib/private/rtcam var/lib/rtcam; do
  [ ! -e "$root/$gone" ] && [ ! -L "$root/$gone" ] || fail "$gone is still there after purge"
done
grep -q "stop rtcam.service" "$root/systemd.log" || { cat "$root/systemd.log"; fail "prerm did not stop the service"; }
ok "purge removed the binary, config, unit and the state in /var/lib/private/rtcam"
echo "deb-check: $(basename "$deb") passed"
