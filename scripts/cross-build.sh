#!/usr/bin/env bash
# Builds rtcam for the Raspberry Pi targets with Debian's cross compilers
# (see .cargo/config.toml), and prints each stripped binary's size.
#   scripts/cross-build.sh                 # aarch64 and armv7, release
#   scripts/cross-build.sh aarch64-unknown-linux-gnu
#   scripts/cross-build.sh --toolchain-only TARGET...   # install the cross compilers and Rust target only
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

# libvpx.a (VP8, linked statically by build.rs) for each target, unpacked from
# Debian's libvpx-dev for that architecture into target/vpx/<triple>/ through
# a private apt state. Not multiarch-installed: that brings libc6:arm64 into
# /usr/lib/aarch64-linux-gnu and the host's ld.so.cache, and qemu-user's
# programs then load that libc beside the cross ld.so and hang.
# .cargo/config.toml points build.rs there (RTCAM_VPX_LIB_DIR_<target>).
# build.rs generates the bindings from that package's own headers.
fetch_libvpx() {
  local arch=$1 triple=$2 dir=target/vpx/$2 apt_dir=$PWD/target/vpx/apt-$1
  [ -f "$dir/usr/lib/$triple/libvpx.a" ] && return 0
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$apt_dir/sources.d" "$dir"
  printf 'deb [arch=%s] http://deb.debian.org/debian %s main\n' \
    "$arch" bookworm "$arch" bookworm-updates >"$apt_dir/sources.list"
  printf 'deb [arch=%s] http://deb.debian.org/debian-security bookworm-security main\n' "$arch" >>"$apt_dir/sources.list"
  local opts=(-o APT::Architecture="$arch" -o APT::Architectures="$arch"
    -o Dir::Etc::SourceList="$apt_dir/sources.list" -o Dir::Etc::SourceParts="$apt_dir/sources.d"
    -o Dir::State::Lists="$apt_dir/lists" -o Dir::State::Status=/dev/null
    -o Dir::Cache="$apt_dir" -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
  # A mirror mid-sync may fail one index (seen: bookworm-security armhf);
  # the download below says whether the package still resolves.
  apt-get "${opts[@]}" update -qq >/dev/null 2>&1 || echo "cross-build: apt index for $arch incomplete (continuing)" >&2
  (cd "$apt_dir/archives" && apt-get "${opts[@]}" download "libvpx-dev:$arch" >/dev/null)
  dpkg-deb -x "$(ls -v "$apt_dir/archives"/libvpx-dev_*_"$arch".deb | tail -n 1)" "$dir"
  echo "cross-build: libvpx for $arch in $dir"
}
for t in "${targets[@]}"; do
  case "$t" in
    aarch64-*) fetch_libvpx arm64 aarch64-linux-gnu ;;
    armv7-*) fetch_libvpx armhf arm-linux-gnueabihf ;;
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
