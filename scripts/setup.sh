#!/usr/bin/env bash
# Installs what building (and, with --test, testing) rtcam needs on Debian 12.
# Idempotent and quick when everything is there already.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

sudo_cmd=()
[ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)

need=()
command -v clang >/dev/null || need+=(clang)          # v4l's bindgen needs libclang
command -v nasm >/dev/null || need+=(nasm)            # openh264's x86 SIMD (plain C without it)
command -v pkg-config >/dev/null || need+=(pkg-config)
[ -f /usr/include/vpx/vp8cx.h ] || need+=(libvpx-dev)  # VP8, linked statically (build.rs)
command -v cmake >/dev/null || need+=(cmake)          # opusic-sys builds its bundled libopus with cmake
# ALSA: alsa-sys finds libasound through pkg-config and links it dynamically
# (Debian ships no libasound.a); libasound2-dev brings libasound2 with it.
[ -f /usr/include/alsa/asoundlib.h ] || need+=(libasound2-dev)
if [ "$want_test" = 1 ]; then
  command -v chromium >/dev/null || need+=(chromium)  # Debian's browser for the page test
  command -v node >/dev/null || need+=(nodejs)        # the page's stripe decoder test
  command -v npm >/dev/null || need+=(npm)            # puppeteer-core for the Firefox test
  command -v ip >/dev/null || need+=(iproute2)        # the Firefox test's network namespace
  command -v systemd-analyze >/dev/null || need+=(systemd)  # the unit's exposure check
  command -v socat >/dev/null || need+=(socat)        # a pty pair for the serial bridge test
  python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
  command -v aplay >/dev/null || need+=(alsa-utils)   # aplay/arecord: the audio tests' file PCMs
fi
if [ "${#need[@]}" -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  "${sudo_cmd[@]}" apt-get update -qq || echo "setup: apt-get update reported errors (continuing)" >&2
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq \
    -o DPkg::Lock::Timeout=600 "${need[@]}" >/dev/null
fi

# Firefox for the VP8 browser test. Without recommends: the browser alone, no desktop extras.
if [ "$want_test" = 1 ] && ! command -v firefox-esr >/dev/null; then
  echo "setup: installing firefox-esr"
  "${sudo_cmd[@]}" apt-get update -qq || echo "setup: apt-get update reported errors (continuing)" >&2
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
    -o DPkg::Lock::Timeout=600 firefox-esr >/dev/null
fi

# PulseAudio with null sinks: the audio tests' real-time ALSA device (its
# `pulse` PCM comes from libasound2-plugins) and a speaker-to-microphone path.
# Without recommends: the sound server alone, no desktop session extras.
if [ "$want_test" = 1 ]; then
  need=()
  command -v pulseaudio >/dev/null || need+=(pulseaudio)
  command -v ffprobe >/dev/null || need+=(ffmpeg)  # tests/recording.rs checks and decodes clips
  dpkg-query -W -f='${Status}' libasound2-plugins 2>/dev/null | grep -q 'ok installed' || need+=(libasound2-plugins)
  if [ "${#need[@]}" -gt 0 ]; then
    echo "setup: installing ${need[*]}"
    "${sudo_cmd[@]}" apt-get update -qq || echo "setup: apt-get update reported errors (continuing)" >&2
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
      -o DPkg::Lock::Timeout=600 "${need[@]}" >/dev/null
  fi
fi

# promtool checks /metrics (tests/whep.rs): taken out of Debian's prometheus package, which is
# downloaded, not installed (no server, no service, no user).
promtool=target/tools/promtool
if [ "$want_test" = 1 ] && [ ! -x "$promtool" ]; then
  echo "setup: extracting promtool from Debian's prometheus package"
  tmp=$(mktemp -d)
  if ! (cd "$tmp" && apt-get download -qq prometheus 2>/dev/null); then
    "${sudo_cmd[@]}" apt-get update -qq || echo "setup: apt-get update reported errors (continuing)" >&2
    (cd "$tmp" && apt-get download -qq prometheus 2>/dev/null)
  fi
  dpkg-deb --fsys-tarfile "$tmp"/prometheus_*.deb | tar -x -C "$tmp" ./usr/bin/promtool
  mkdir -p "$(dirname "$promtool")"
  mv "$tmp/usr/bin/promtool" "$promtool"
  rm -rf "$tmp"
fi

if [ "$want_test" = 1 ]; then
  rustup component add clippy rustfmt >/dev/null 2>&1 || true
  # Every top-level package of requirements.txt: an older .venv without one gets it installed.
  if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import playwright, pytest, aiortc, numpy, zeroconf, pytest_rerunfailures' 2>/dev/null; then
    echo "setup: creating .venv with the browser test's Python packages"
    python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check -r tests/browser/requirements.txt
  fi
  # The Firefox test's driver: puppeteer-core exactly as package-lock.json pins it (no browser
  # download: the -core package has none, and --ignore-scripts runs no install scripts).
  ff=tests/browser/firefox
  if [ ! -f "$ff/node_modules/.package-lock.json" ] || [ "$ff/package-lock.json" -nt "$ff/node_modules/.package-lock.json" ]; then
    echo "setup: npm ci in $ff"
    npm ci --prefix "$ff" --ignore-scripts --no-audit --no-fund --prefer-offline --loglevel=error >/dev/null
  fi
  # The WHIP test's SFU: Janus, janus.js/adapter.js, simple-whip-server (tests/browser/test_whip_janus.py).
  scripts/janus-setup.sh
fi
