"""Two rtcams find each other on a LAN by mDNS, and an independent browser sees them.

Two network namespaces (each with its own host name: a UTS namespace too) joined by a veth pair
with link-local addresses (169.254.x.x), so the test's multicast never leaves the machine. The
first namespace's interface also carries a public address (203.0.113.5, TEST-NET-3): rtcam must
not announce it. Python's `zeroconf` browses from the second namespace. Needs root (CI runs as
root), like the Firefox tests' namespace.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import rtcam_harness as h

A_IP, B_IP, PUBLIC_IP = "169.254.10.1", "169.254.10.2", "203.0.113.5"
PORT = 8443


class Namespace:
    """A network and UTS namespace held open by a `cat` on a pipe (gone when we are)."""

    def __init__(self, hostname: str):
        self.hostname = hostname
        self.proc = subprocess.Popen(
            ["unshare", "-n", "-u", "sh", "-c",
             f"set -e; hostname {hostname}; ip link set lo up; echo ready; exec cat >/dev/null"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], 10)
        line = self.proc.stdout.readline() if ready else ""
        if line.strip() != "ready":
            raise RuntimeError(f"namespace setup failed: {line!r} {self.proc.stderr.read()}")

    @property
    def prefix(self) -> list[str]:
        pid = self.proc.pid
        nsenter = shutil.which("nsenter") or "/usr/bin/nsenter"  # execv wants a path
        return [nsenter, f"--net=/proc/{pid}/ns/net", f"--uts=/proc/{pid}/ns/uts", "--"]

    def sh(self, script: str):
        subprocess.run(self.prefix + ["sh", "-c", script], check=True, capture_output=True, text=True,
                       timeout=10)

    def close(self):
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except Exception:
            self.proc.kill()


def api_peers(ns: Namespace) -> list[dict]:
    """GET /api/peers from inside `ns` (its rtcam trusts loopback)."""
    out = subprocess.run(ns.prefix + ["curl", "-sk", "--max-time", "3", f"https://127.0.0.1:{PORT}/api/peers"],
                         capture_output=True, text=True, timeout=10)
    try:
        return json.loads(out.stdout)
    except json.JSONDecodeError:
        return []


def wait_for(what: str, check, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.25)
    pytest.fail(f"{what}: not within {timeout:.0f} s")


class Device:
    """rtcam in a namespace: HTTPS on every address (the other finds its port), mDNS on."""

    def __init__(self, ns: Namespace, binary: Path, workdir: Path):
        self.ns = ns
        state = workdir / f"state-{ns.hostname}"
        state.mkdir(mode=0o700)
        self.log = open(workdir / f"{ns.hostname}.log", "w")
        self.args = ns.prefix + [
            str(binary), "--source", "bars", "--size", "320x240", "--fps", "10",
            "--http", f"0.0.0.0:{PORT}", "--rtc", f"0.0.0.0:{PORT}", "--state-dir", str(state),
            "--trust-loopback", "--mdns", "on", "--audio-in", "off", "--audio-out", "off",
        ]
        subprocess.run([str(binary), "passwd", "--password-stdin", "--state-dir", str(state)],
                       input=h.PASSWORD, text=True, check=True, capture_output=True)
        self.proc: subprocess.Popen | None = None

    def start(self):
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(f"{self.ns.hostname} up", lambda: subprocess.run(
            self.ns.prefix + ["curl", "-sk", "-o", "/dev/null", f"https://127.0.0.1:{PORT}/login"],
            capture_output=True).returncode == 0, 20)

    def stop(self, sig: int = 15):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=10)


BROWSE = r"""
import json, sys, time
from zeroconf import ServiceBrowser, Zeroconf, IPVersion
found = {}
class L:
    def add_service(self, zc, type_, name):
        info = zc.get_service_info(type_, name, timeout=3000)
        if info:
            found[name] = {"type": type_, "server": info.server, "port": info.port,
                           "addresses": info.parsed_addresses(),
                           "txt": {k.decode(): (v or b"").decode() for k, v in info.properties.items()}}
    def update_service(self, *a): pass
    def remove_service(self, *a): pass
zc = Zeroconf(ip_version=IPVersion.V4Only)
ServiceBrowser(zc, ["_rtcam._tcp.local.", "_https._tcp.local."], L())
end = time.time() + float(sys.argv[1])
while time.time() < end and len(found) < 2:
    time.sleep(0.2)
zc.close()
print(json.dumps(found))
"""


def page_shows_peer(ns: Namespace, work: Path):
    """A's page (Chromium in A's namespace; loopback is trusted) lists cam-b as a card."""
    from playwright.sync_api import sync_playwright

    shim_dir = work / "chromium"
    shim_dir.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = h.launch_chromium(p, shim_dir, prefix=ns.prefix)
        try:
            page = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 800}).new_page()
            page.goto(f"https://127.0.0.1:{PORT}/")
            card = page.locator("#peers-list a.peer", has_text="cam-b")
            card.wait_for(timeout=15_000)
            assert card.get_attribute("href") == f"https://cam-b.local:{PORT}/"
            assert B_IP in (card.get_attribute("title") or "")
            assert page.locator("#peers").is_visible()
            if os.environ.get("RTCAM_SCREENSHOTS"):
                page.locator("#peers").screenshot(path=os.environ["RTCAM_SCREENSHOTS"] + "/peers.png")
        finally:
            browser.close()


@pytest.fixture
def lan():
    if os.geteuid() != 0:
        pytest.fail("the mDNS test makes network namespaces with a veth pair: run it as root (CI does)")
    for tool in ("unshare", "nsenter", "ip", "curl"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not found")
    a, b = Namespace("cam-a"), Namespace("cam-b")
    a.sh(f"ip link add v0 type veth peer name v1 netns {b.proc.pid}; "
         f"ip addr add {A_IP}/16 dev v0; ip addr add {PUBLIC_IP}/24 dev v0; ip link set v0 up")
    b.sh(f"ip addr add {B_IP}/16 dev v1; ip link set v1 up")
    yield a, b
    a.close()
    b.close()


def test_two_rtcams_find_each_other_and_zeroconf_sees_them(lan):
    a_ns, b_ns = lan
    binary = h.rtcam_binary("target/debug/rtcam")
    with tempfile.TemporaryDirectory(prefix="rtcam-mdns-") as tmp:
        work = Path(tmp)
        a, b = Device(a_ns, binary, work), Device(b_ns, binary, work)
        try:
            a.start()
            b.start()
            def lists(ns, host):
                return any(p["host"] == host and p["live"] for p in api_peers(ns))

            t = wait_for("A lists B, live", lambda: lists(a_ns, "cam-b.local"), 20)
            wait_for("B lists A, live", lambda: lists(b_ns, "cam-a.local"), 20)
            peer_b = next(p for p in api_peers(a_ns) if p["host"] == "cam-b.local")
            peer_a = next(p for p in api_peers(b_ns) if p["host"] == "cam-a.local")
            print(f"\nmDNS: found each other within {t:.1f} s; A sees {peer_b}")
            assert peer_b["live"] is True
            assert peer_b["url"] == f"https://cam-b.local:{PORT}/"
            assert B_IP in peer_b["addresses"]
            assert peer_b["camera"] and peer_b["board"] and peer_b["version"]
            assert "H.264" in peer_b["codecs"]
            assert PUBLIC_IP not in peer_a["addresses"], f"a public address was announced: {peer_a}"
            assert all(p["host"] != "cam-a.local" for p in api_peers(a_ns)), "not itself"

            # An independent browser (Python's zeroconf) in B's namespace.
            out = subprocess.run(b_ns.prefix + [sys.executable, "-c", BROWSE, "10"],
                                 capture_output=True, text=True, timeout=30)
            found = json.loads(out.stdout or "{}")
            print(f"zeroconf from cam-b: {json.dumps(found, indent=1)}")
            mine = {n: s for n, s in found.items() if s["server"] == "cam-a.local."}
            types = {s["type"] for s in mine.values()}
            assert types == {"_rtcam._tcp.local.", "_https._tcp.local."}, (found, out.stderr)
            for s in mine.values():
                assert s["port"] == PORT
                assert s["addresses"] == [A_IP], f"only the link-local address: {s}"
                txt = s["txt"]
                assert txt["path"] == "/" and txt["version"] and txt["board"] and txt["camera"], txt
                assert "H.264" in txt["codecs"], txt

            # A's page shows B in its row of cameras, opening B by its .local name.
            page_shows_peer(a_ns, work)

            # A clean stop says goodbye: gone from A's list at once.
            b.stop()
            gone = wait_for("B gone after SIGTERM", lambda: not api_peers(a_ns), 10)
            print(f"mDNS: a stopped rtcam left the other's list after {gone:.1f} s")

            # A device that loses power says nothing: gone within a minute all the same.
            b.start()
            wait_for("B back", lambda: any(p["host"] == "cam-b.local" for p in api_peers(a_ns)), 20)
            b.stop(9)
            went = wait_for("B gone after SIGKILL", lambda: not api_peers(a_ns), 60)
            print(f"mDNS: a killed rtcam left the other's list after {went:.1f} s")
        finally:
            a.stop()
            b.stop()
            for name in ("cam-a", "cam-b"):
                log = (work / f"{name}.log").read_text(errors="replace")
                print(f"--- {name} log (mDNS lines) ---")
                print("\n".join(l for l in log.splitlines() if "LAN" in l or "mdns" in l.lower()))
