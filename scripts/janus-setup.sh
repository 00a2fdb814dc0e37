#!/usr/bin/env bash
# The real-SFU test's tools (tests/browser/test_whip_janus.py): Debian's Janus (the VideoRoom is
# the SFU), janus.js + adapter.js for the subscriber page, and meetecho's simple-whip-server (the
# WHIP front end for the VideoRoom) unpacked into target/tools/whip-server.
#
# simple-whip-server is not installed: its node-websocket depends on Debian's Node 18 (libnode108),
# which conflicts with the image's Node 20 (shared/notes/whip-janus.md). Instead it and the node-*
# / libjs-* packages it needs are `apt-get download`ed and `dpkg-deb -x`ed into a folder of our
# own (no dpkg database change); the test runs src/server.js on the image's node with NODE_PATH.
# Packages that are only virtual (node-side-channel comes from node-deep-equal) and modules express
# needs without declaring them (has-symbols, function-bind) are found by loading the server's
# modules and mapping each "Cannot find module X" to the package that has (or provides) node-X.
#
# Idempotent: quick when everything is there. Prints one line saying what it did.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo_cmd=()
[ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)

dest=target/tools/whip-server
root=$dest/root
stamp=$dest/.complete
did=()

# A private archive dir and a lock timeout: another apt run on this shared machine (and Debian's
# docker-clean hook) must not delete our .debs or make us fail on its lock.
archives=${TMPDIR:-/tmp}/rtcam-janus-apt-archives
apt_opts=(-o DPkg::Lock::Timeout=600 -o "Dir::Cache::Archives=$archives")

updated=0
apt_update() {
  [ "$updated" = 1 ] && return 0
  "${sudo_cmd[@]}" apt-get update -qq "${apt_opts[@]}" || echo "janus-setup: apt-get update reported errors (continuing)" >&2
  updated=1
}

# 1. Janus and the two browser libraries (janus.js needs adapter.js, which it does not depend on).
need=()
for p in janus libjs-janus-gateway libjs-webrtc-adapter; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ]; then
  mkdir -p "$archives/partial"
  if ! DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${apt_opts[@]}" "${need[@]}" >/dev/null; then
    apt_update
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${apt_opts[@]}" "${need[@]}" >/dev/null
  fi
  rm -rf "$archives"
  did+=("installed ${need[*]}")
  # The package enables and (on a machine running systemd) starts a system-wide Janus on ports
  # 8088/8188. The test runs its own inside a network namespace: stop the one we just installed.
  if [[ " ${need[*]} " == *" janus "* ]] && [ -d /run/systemd/system ]; then
    "${sudo_cmd[@]}" systemctl disable --now janus.service >/dev/null 2>&1 || true
    did+=("disabled the janus service the package started")
  fi
fi

# 2. simple-whip-server and its modules, unpacked.
node_path="$PWD/$root/usr/share/nodejs:$PWD/$root/usr/lib/x86_64-linux-gnu/nodejs"
# Loads every module server.js and whip-janus.js require (express's lazily loaded parts too).
check_js='for (const m of ["async", "express", "cors", "colors/safe", "debug", "websocket", "body-parser"]) require(m);
const express = require("express"); express().use(express.static("/nonexistent"));
const bp = require("body-parser"); bp.json(); bp.text({ type: "application/sdp" });'
modules_load() { NODE_PATH="$node_path" node -e "$check_js" 2>&1; }

if [ -f "$stamp" ] && [ -f "$root/usr/share/simple-whip-server/src/server.js" ] && modules_load >/dev/null; then
  :
else
  command -v node >/dev/null || { echo "janus-setup: node not found (apt-get install nodejs)" >&2; exit 1; }
  rm -rf "$dest"
  mkdir -p "$root" "$dest/debs"
  debs=$(cd "$dest/debs" && pwd)

  # Every node-* / libjs-* package reachable by Depends from simple-whip-server's node-* deps
  # (its web page's libjs-bootstrap and friends are not needed). Virtual dependencies are left to
  # the missing-module loop below: following their providers' own Depends (node-deep-equal ->
  # node-es-abstract -> node-tape -> babel...) would unpack 250 packages instead of 70. One
  # apt-cache call per level: this image's apt keeps no binary cache (Dir::Cache::pkgcache ""),
  # so every call parses all package lists (about 1 s).
  deps_of() {
    apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces \
      --no-enhances "$@" 2>/dev/null | sed -n 's/^  |\?Depends: \([^<]\)/\1/p' |
      grep -E '^(node-|libjs-)' | sort -u || true
  }
  pkgs=(simple-whip-server)
  level=$(deps_of simple-whip-server | grep '^node-' || true)
  while [ -n "$level" ]; do
    pkgs+=($level)
    level=$(deps_of $level | grep -v -x -F "$(printf '%s\n' "${pkgs[@]}")" || true)
  done
  # A virtual package (a module we find missing below) downloads as the package providing it.
  real_pkg() {
    if apt-cache show "$1" 2>/dev/null | grep -q '^Package:'; then echo "$1"; return; fi
    apt-cache showpkg "$1" 2>/dev/null | sed -n '/^Reverse Provides:/,$p' | tail -n +2 | awk 'NF {print $1; exit}'
  }
  download() {  # apt-get download into $debs (run as root it warns that _apt cannot write there: harmless)
    (cd "$debs" && apt-get download -qq "$@" 2>&1 | grep -v 'unsandboxed' >&2) || true
    for p in "$@"; do ls "$debs/${p}"_*.deb >/dev/null 2>&1 || return 1; done
  }
  download "${pkgs[@]}" || { apt_update; download "${pkgs[@]}"; } ||
    { echo "janus-setup: apt-get download of simple-whip-server's packages failed" >&2; exit 1; }
  for f in "$debs"/*.deb; do dpkg-deb -x "$f" "$root"; done

  # The modules nobody declared: load, map "Cannot find module X" to node-X, unpack, again.
  extra=()
  for _ in $(seq 20); do
    out=$(modules_load) && break
    m=$(printf '%s\n' "$out" | sed -n "s/.*Cannot find module '\([^'./][^']*\)'.*/\1/p" | head -1)
    [ -n "$m" ] || { echo "janus-setup: simple-whip-server's modules do not load:" >&2; printf '%s\n' "$out" | tail -5 >&2; exit 1; }
    p=$(real_pkg "node-${m%%/*}")
    [ -n "$p" ] || { echo "janus-setup: no Debian package has node module '$m'" >&2; exit 1; }
    download "$p" || { echo "janus-setup: apt-get download $p failed" >&2; exit 1; }
    for f in "$debs/${p}"_*.deb; do dpkg-deb -x "$f" "$root"; done
    extra+=("$m->$p")
  done
  modules_load >/dev/null || { echo "janus-setup: simple-whip-server's modules still do not load" >&2; modules_load | tail -5 >&2; exit 1; }
  rm -rf "$debs"
  printf '%s\n' "${pkgs[@]}" "${extra[@]}" | sort > "$stamp"
  did+=("unpacked simple-whip-server and $(($(wc -l < "$stamp") - 1)) node packages into $dest${extra:+ (undeclared: ${extra[*]})}")
fi

if [ "${#did[@]}" -gt 0 ]; then
  joined=$(printf '%s; ' "${did[@]}")
  echo "janus-setup: ${joined%; }"
else
  echo "janus-setup: Janus $(dpkg-query -W -f='${Version}' janus) and simple-whip-server in $dest already in place"
fi
