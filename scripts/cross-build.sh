#!/usr/bin/env bash
# Builds rtcam for the Raspberry Pi targets with Debian's cross compilers
# (see .cargo/config.toml), and prints each stripped binary's size.
#   scripts/cross-build.sh                 # aarch64 and armv7, release
#   scripts/cross-build.sh aarch64-unknown-linux-gnu
#   scripts/cross-build.sh --toolchain-only TARGET...   # no build: the cross compilers, Rust
#                                   targets and the targets' libvpx and libasound only
# arm-unknown-linux-gnueabihf (ARMv6: Pi 1, Zero W) is not built: see the
# README's "Put it on a Pi" section for why.
set -euo pipefail
cd "$(dirname "$0")/.."
toolchain_only=0
if [ "${1:-}" = "--toolchain-only" ]; then toolchain_only=1; shift; fi
targets=("$@")
[ "${#targets[@]}" -eq 0 ] && targets=(aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf)

sudo_cmd=()
[ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
need=()
command -v clang >/dev/null || need+=(clang)
# opusic-sys builds libopus with cmake (cross: the CC_<target> compiler).
command -v cmake >/dev/null || need+=(cmake)
# qemu-user: cargo's runner for these targets (tests, and a quick run here).
command -v qemu-aarch64 >/dev/null || need+=(qemu-user)
for t in "${targets[@]}"; do
  case "$t" in
    aarch64-unknown-linux-gnu) command -v aarch64-linux-gnu-g++ >/dev/null || need+=(gcc-aarch64-linux-gnu g++-aarch64-linux-gnu) ;;
    armv7-unknown-linux-gnueabihf) command -v arm-linux-gnueabihf-g++ >/dev/null || need+=(gcc-arm-linux-gnueabihf g++-arm-linux-gnueabihf) ;;
    *) echo "cross-build: unsupported target $t" >&2; exit 2 ;;
  esac
done
if [ "${#need[@]}" -gt 0 ]; then
  # A mirror mid-sync may fail one index (seen: bookworm-security armhf); what
  # the install needs usually still resolves, and the install says if not.
  "${sudo_cmd[@]}" apt-get update -qq || echo "cross-build: apt-get update reported errors (continuing)" >&2
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
    -o DPkg::Lock::Timeout=600 "${need[@]}" >/dev/null
fi
rustup target add "${targets[@]}" >/dev/null

# Debian's own libraries for each target, unpacked with dpkg-deb from that
# architecture's packages, downloaded through a private apt state
# (target/apt/<arch>). Not multiarch-installed: that brings libc6:arm64 into
# /usr/lib/aarch64-linux-gnu and the host's ld.so.cache, and qemu-user's
# programs then load that libc beside the cross ld.so and hang.
apt_ready=" "
# unpack_debs ARCH DIR PACKAGE...: the packages (this architecture's) unpacked into DIR.
unpack_debs() {
  local arch=$1 dir=$2 apt_dir=$PWD/target/apt/$1
  shift 2
  local opts=(-o APT::Architecture="$arch" -o APT::Architectures="$arch"
    -o Dir::Etc::SourceList="$apt_dir/sources.list" -o Dir::Etc::SourceParts="$apt_dir/sources.d"
    -o Dir::State::Lists="$apt_dir/lists" -o Dir::State::Status=/dev/null
    -o Dir::Cache="$apt_dir" -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
  case "$apt_ready" in
    *" $arch "*) ;;
    *)
      mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$apt_dir/sources.d"
      printf 'deb [arch=%s] http://deb.debian.org/debian %s main\n' \
        "$arch" bookworm "$arch" bookworm-updates >"$apt_dir/sources.list"
      printf 'deb [arch=%s] http://deb.debian.org/debian-security bookworm-security main\n' "$arch" >>"$apt_dir/sources.list"
      # A mirror mid-sync may fail one index (seen: bookworm-security armhf);
      # the download below says whether the packages still resolve.
      apt-get "${opts[@]}" update -qq >/dev/null 2>&1 || echo "cross-build: apt index for $arch incomplete (continuing)" >&2
      apt_ready="$apt_ready$arch "
      ;;
  esac
  (cd "$apt_dir/archives" && apt-get "${opts[@]}" download "${@/%/:$arch}" >/dev/null)
  mkdir -p "$dir"
  local pkg
  for pkg in "$@"; do
    dpkg-deb -x "$(ls -v "$apt_dir/archives/${pkg}_"*"_$arch.deb" | tail -n 1)" "$dir"
  done
}

# fetch_libs ARCH TRIPLE
fetch_libs() {
  local arch=$1 triple=$2
  # libvpx.a (VP8, linked statically by build.rs) from Debian's libvpx-dev,
  # into target/vpx/<triple>/. .cargo/config.toml points build.rs there
  # (RTCAM_VPX_LIB_DIR_<target>); build.rs generates the bindings from that
  # package's own headers.
  local vpx=target/vpx/$triple
  if [ ! -f "$vpx/usr/lib/$triple/libvpx.a" ]; then
    unpack_debs "$arch" "$vpx" libvpx-dev
    echo "cross-build: libvpx for $arch in $vpx"
  fi
  # libasound (ALSA) into the sysroot target/sysroot/<triple>/: alsa-sys
  # finds it through pkg-config (PKG_CONFIG_*_<target> in .cargo/config.toml)
  # and links it dynamically (Debian ships no libasound.a), so the ARM runs
  # need libasound.so.2 too: scripts/qemu-runner.sh, scripts/deb-check.sh and
  # the QEMU guest (scripts/qemu-vivid.sh) take it from here. libasound2
  # needs only libc and libm, which the cross toolchain has. The package list
  # is kept in .debs: another list unpacks a fresh sysroot.
  local sysroot=target/sysroot/$triple pkgs=(libasound2-dev libasound2)
  if [ "$(cat "$sysroot/.debs" 2>/dev/null)" != "${pkgs[*]}" ]; then
    rm -rf "$sysroot"
    unpack_debs "$arch" "$sysroot" "${pkgs[@]}"
    echo "${pkgs[*]}" >"$sysroot/.debs"
    echo "cross-build: ${pkgs[*]} for $arch in $sysroot"
  fi
}
for t in "${targets[@]}"; do
  case "$t" in
    aarch64-*) fetch_libs arm64 aarch64-linux-gnu ;;
    armv7-*) fetch_libs armhf arm-linux-gnueabihf ;;
  esac
done
[ "$toolchain_only" = 1 ] && exit 0

for t in "${targets[@]}"; do
  start=$(date +%s)
  cargo build --release --locked --target "$t"
  bin="target/$t/release/rtcam"
  strip_tool="${t%%-unknown-*}"
  case "$t" in
    aarch64-*) strip_tool=aarch64-linux-gnu-strip ;;
    armv7-*) strip_tool=arm-linux-gnueabihf-strip ;;
  esac
  "$strip_tool" -o "$bin.stripped" "$bin"
  echo "cross-build: $t in $(( $(date +%s) - start )) s, stripped $(stat -c %s "$bin.stripped") bytes: $bin.stripped"
done
