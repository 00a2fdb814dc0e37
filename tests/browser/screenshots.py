#!/usr/bin/env python3
"""Screenshots of rtcam's page in each of its states, at phone (390x844) and desktop (1280x800) size.

Not a test: a script that starts rtcam through the harness (rtcam_harness.Rtcam, its colour bars at
640x360: the test scene's noise would make the PNGs 2-3 times larger), drives Debian's headless
Chromium (never a downloaded one) and saves small PNGs:

    .venv/bin/python tests/browser/screenshots.py [--out docs/screenshots] [--source bars|test]

Environment: RTCAM_BIN (default target/debug/rtcam), RTCAM_WEB_FROM_DISK=1 (the page's files from
web/ on disk, no rebuild), RTCAM_CHROMIUM. Needs socat for the serial states.

Three rtcams: one for the login, the live call (the desktop page "Ann" and the phone page "Ben" in the
same call, chatting), the detailed stats, a snapshot shared in the chat (and opened in the lightbox)
and the camera controls; one with a serial bridge to a socat pty pair, whose other end plays a small
board (a boot log, a shell that answers what Ann types, so Ann holds the port and Ben's page says so);
one whose --source is a missing /dev/video99, so it serves its "camera lost" slate.

Everything on the pages comes from the server's own messages ({"type":"camera"}, {"type":"controls"},
{"type":"serial"}, chat lines, bytes on the `serial` channel). Only if one does not come within a few
seconds (an older binary) does the script feed a made-up one through the page's test hook
window.rtcam.inject / window.rtcam.injectSerial (the same code path as the channel), and it says so:
the summary lists, for each, whether it was the server's or injected.
"""

from __future__ import annotations

import argparse
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from playwright.sync_api import sync_playwright  # noqa: E402

import rtcam_harness as h  # noqa: E402

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
REAL_WAIT_S = 3.0
LIVE_TIMEOUT_MS = 25_000

# Made-up messages (README, "Talking to the device"), used only when the server sent none.
FAKE_CONTROLS = {
    "type": "controls",
    "may_set": True,
    "controls": [
        {"id": "brightness", "name": "Brightness", "kind": "integer", "min": 0, "max": 255, "step": 1,
         "default": 128, "value": 152, "restarts": False},
        {"id": "contrast", "name": "Contrast", "kind": "integer", "min": 0, "max": 255, "step": 1,
         "default": 128, "value": 128, "restarts": False},
        {"id": "saturation", "name": "Saturation", "kind": "integer", "min": 0, "max": 255, "step": 1,
         "default": 128, "value": 110, "restarts": False},
        {"id": "white_balance_automatic", "name": "White Balance, Automatic", "kind": "boolean", "min": 0,
         "max": 1, "step": 1, "default": 1, "value": 1, "restarts": False},
        {"id": "power_line_frequency", "name": "Power Line Frequency", "kind": "menu", "min": 0, "max": 2,
         "step": 1, "default": 1, "value": 2, "restarts": False,
         "items": [{"value": 0, "label": "Disabled"}, {"value": 1, "label": "50 Hz"}, {"value": 2, "label": "60 Hz"}]},
        {"id": "sharpness", "name": "Sharpness", "kind": "integer", "min": 0, "max": 16, "step": 1,
         "default": 1, "value": 1, "restarts": True},
    ],
}
FAKE_CAMERA_LIVE = {"type": "camera", "state": "live", "name": "rtcam test pattern", "problem": None}
FAKE_SERIAL = {"type": "serial", "state": "open", "path": "/dev/ttyUSB0", "baud": 115200, "holder": None,
               "you_hold": False, "problem": None}
# What the board on the far end of the serial pty says: a boot log, then a shell prompt.
BOOT_TEXT = (
    "U-Boot SPL 2024.01 (Jan 12 2026 - 10:02:11 +0000)\r\n"
    "Trying to boot from MMC1\r\n"
    "\r\n"
    "Starting kernel ...\r\n"
    "[    0.000000] Booting Linux on physical CPU 0x0000000000 [0x410fd083]\r\n"
    "[    0.000000] Linux version 6.6.31+rpt-rpi-v8 (gcc 12.2.0)\r\n"
    "[    1.204518] mmc0: new high speed SDHC card at address aaaa\r\n"
    "[    2.871230] EXT4-fs (mmcblk0p2): mounted filesystem with ordered data mode\r\n"
    "\r\n"
    "Debian GNU/Linux 12 sensor-node ttyS0\r\n"
    "\r\n"
    "sensor-node login: pi\r\n"
    "Password: \r\n"
    "Last login: Mon Jan 12 09:58:40 UTC 2026 on ttyS0\r\n"
    "pi@sensor-node:~$ "
)
SHELL_ANSWERS = {
    "uptime": " 10:04:17 up 12 days,  3:41,  1 user,  load average: 0.08, 0.03, 0.01",
}
FAKE_SERIAL_TEXT = BOOT_TEXT  # the fallback feeds the same text


def log(msg: str):
    print(msg, flush=True)


class Shooter:
    def __init__(self, browser, out: Path):
        self.browser = browser
        self.out = out
        self.saved: list[tuple[str, int]] = []
        self.contexts = []

    def page(self, viewport: dict, url: str | None = None, login: bool = True, name: str | None = None):
        ctx = self.browser.new_context(ignore_https_errors=True, viewport=viewport, device_scale_factor=1,
                                       accept_downloads=True)
        h.maybe_serve_web_from_disk(ctx)
        page = ctx.new_page()
        page.console_lines = []
        page.on("console", lambda m: page.console_lines.append(f"[{m.type}] {m.text}"))
        page.on("pageerror", lambda e: page.console_lines.append(f"[pageerror] {e}"))
        self.contexts.append((ctx, page))
        if url is not None:
            if login:
                h.login(page, url)
                h.wait_state(page, "idle", 10_000)
                if name:
                    page.fill("#chat-name", name)
                    page.dispatch_event("#chat-name", "change")
            else:
                h.goto(page, url)
        return page

    def shot(self, page, name: str, full_page: bool = False):
        # No blinking caret, no animation caught half way, no button left hovered by a click.
        page.mouse.move(1, page.viewport_size["height"] - 1)
        page.wait_for_timeout(150)
        path = self.out / f"{name}.png"
        page.screenshot(path=str(path), full_page=full_page, scale="css", animations="disabled", caret="hide")
        size = path.stat().st_size
        self.saved.append((path.name, size))
        log(f"  saved {path} ({size // 1024} KiB)")

    def close(self):
        for ctx, page in self.contexts:
            h.hang_up_quietly(page)
        for ctx, page in self.contexts:
            try:
                page.wait_for_timeout(100)
            except Exception:
                pass
            errors = [line for line in page.console_lines if "pageerror" in line or "[error]" in line]
            if errors:
                log(f"  console errors on {page.url}:\n    " + "\n    ".join(errors[-10:]))
            ctx.close()


def go_live(page):
    page.click("#call")
    h.wait_state(page, "live", LIVE_TIMEOUT_MS)
    page.wait_for_function("() => window.rtcam.chat.open", timeout=10_000)


def real_or_injected(pages, what: str, has_real_js: str, inject) -> str:
    """Waits up to REAL_WAIT_S for the server's own message on every page (has_real_js true);
    otherwise runs inject(page) on each. Returns 'real' or 'injected' and prints it."""
    deadline = time.monotonic() + REAL_WAIT_S
    while time.monotonic() < deadline:
        if all(p.evaluate(has_real_js) for p in pages):
            log(f"  {what}: the server's own messages")
            return "real"
        time.sleep(0.1)
    for p in pages:
        inject(p)
    log(f"  {what}: none from the server within {REAL_WAIT_S:.0f} s: injected through window.rtcam.inject")
    return "injected"


def chat(page, text: str):
    page.fill("#chat-text", text)
    page.press("#chat-text", "Enter")


def wait_readout(page):
    page.wait_for_function(
        "() => !document.getElementById('link-readout').hidden && window.rtcam.link.fps !== null"
        " && window.rtcam.chat.telemetry !== null", timeout=10_000)
    page.wait_for_timeout(1200)  # a second getStats window: bitrate and loss have figures


class SerialBoard:
    """A socat pty pair: rtcam bridges DIR/ttyRTCAM, and this end (DIR/ttyPEER) plays the board."""

    def __init__(self, directory: Path):
        self.dev = directory / "ttyRTCAM"
        self.peer = directory / "ttyPEER"
        self.proc: subprocess.Popen | None = None
        self.fd: int | None = None
        self.heard = b""

    def start(self, timeout: float = 5.0) -> "SerialBoard":
        socat = shutil.which("socat")
        if socat is None:
            raise FileNotFoundError("socat not found (apt-get install socat)")
        self.proc = subprocess.Popen([socat, f"pty,raw,echo=0,link={self.dev}", f"pty,raw,echo=0,link={self.peer}"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while not (self.dev.exists() and self.peer.exists()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"socat made no pty pair: {self.proc.stderr.read() if self.proc.stderr else ''}")
            time.sleep(0.05)
        self.fd = os.open(self.peer, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        return self

    def write(self, text: str):
        data = text.encode()
        while data:
            select.select([], [self.fd], [], 2.0)
            n = os.write(self.fd, data[:1024])
            data = data[n:]

    def read_line(self, timeout: float = 5.0) -> str | None:
        """The next line a viewer typed (what rtcam wrote to the port), without its end."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.heard:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    self.heard += os.read(self.fd, 4096)
                except BlockingIOError:
                    pass
        line, self.heard = self.heard.split(b"\n", 1)
        return line.decode(errors="replace").rstrip("\r")

    def stop(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def wait_until(pages, js: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if all(p.evaluate(js) for p in pages):
            return True
        time.sleep(0.1)
    return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(h.REPO_ROOT / "docs" / "screenshots"), help="where the PNGs go")
    ap.add_argument("--source", default="bars", choices=["bars", "test"],
                    help="the picture: rtcam's colour bars (default: flat colours keep the PNGs under 200 KB) or "
                         "its test scene (noise and a grid: 400-550 KB at desktop size)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    binary = h.rtcam_binary("target/debug/rtcam")
    log(f"rtcam {binary}; page from {'web/ on disk' if os.environ.get('RTCAM_WEB_FROM_DISK') == '1' else 'the binary'}"
        f"; source {args.source}")

    # A short directory: the serial panel shows the pty's path.
    work = tempfile.TemporaryDirectory(prefix="rtcam-")
    wdir = Path(work.name)
    servers = []
    board = None
    how = {}
    s = None
    try:
        srv = h.Rtcam(binary, size="640x360", fps=30, workdir=str(wdir / "a"))
        srv.args[srv.args.index("--source") + 1] = args.source
        srv.start()
        servers.append(srv)
        # The serial states: an rtcam bridging one end of a pty pair; the other end plays the board.
        board = SerialBoard(wdir).start()
        ser = h.Rtcam(binary, size="640x360", fps=30, workdir=str(wdir / "s"),
                      extra=["--serial", str(board.dev), "--serial-baud", "115200"])
        ser.args[ser.args.index("--source") + 1] = args.source
        ser.start()
        servers.append(ser)
        # The camera-lost state: an rtcam whose camera is not there (it serves its slate).
        lost = h.Rtcam(binary, size="640x360", fps=30, workdir=str(wdir / "l"))
        lost.args[lost.args.index("--source") + 1] = "/dev/video99"
        lost.start()
        servers.append(lost)

        with sync_playwright() as p:
            browser = h.launch_chromium(p, work.name)
            s = Shooter(browser, out)
            try:
                # ---- login
                log("login")
                for label, vp in (("phone", PHONE), ("desktop", DESKTOP)):
                    page = s.page(vp, srv.url, login=False)
                    page.wait_for_selector("#password", state="visible")
                    s.shot(page, f"login-{label}")

                # ---- a live call, two pages chatting (desktop "Ann", phone "Ben")
                log("live call with chat")
                desk = s.page(DESKTOP, srv.url, name="Ann")
                phone = s.page(PHONE, srv.url, name="Ben")
                for pg in (desk, phone):
                    go_live(pg)
                how["camera"] = real_or_injected(
                    [desk, phone], "camera state", "() => window.rtcam.camera.from === 'message'",
                    lambda pg: pg.evaluate("(m) => window.rtcam.inject(m)", FAKE_CAMERA_LIVE))
                chat(desk, "Morning! Is the printer done yet?")
                phone.wait_for_function("() => window.rtcam.chat.lines.length >= 1", timeout=5_000)
                time.sleep(0.3)
                chat(phone, "Two more layers, looks clean so far")
                time.sleep(0.3)
                chat(desk, "Nice. I'll turn the lights up a bit")
                for pg in (desk, phone):
                    pg.wait_for_function("() => window.rtcam.chat.lines.length >= 3", timeout=5_000)
                    wait_readout(pg)
                s.shot(desk, "live-desktop")
                s.shot(phone, "live-phone")
                for pg, label in ((phone, "phone"), (desk, "desktop")):
                    pg.click("#stats-toggle")
                    pg.wait_for_timeout(700)
                    s.shot(pg, f"stats-{label}", full_page=label == "phone")
                    pg.click("#stats-toggle")

                # ---- a snapshot shared in the chat (Ann's snapshot button), then opened on the phone
                log("a picture in the chat")
                desk.click("#chat-share-snapshot")
                desk.wait_for_function("() => window.rtcam.chat.upload.done || window.rtcam.chat.upload.error",
                                       timeout=15_000)
                up = desk.evaluate("() => window.rtcam.chat.upload")
                if up["error"]:
                    raise RuntimeError(f"the snapshot did not go out: {up}")
                log(f"  shared {up['name']} ({up['size']} bytes) in {up['ms']} ms")
                loaded = "(u) => window.rtcam.chat.lines.some(l => l.image && l.image.url === u && l.image.state === 'loaded')"
                # Taken while the bar still says "Shared" at 100 % (it stays 1.5 s).
                desk.wait_for_function(loaded, arg=up["url"], timeout=5_000)
                bar = desk.is_visible("#chat-upload")
                s.shot(desk, "picture-desktop")
                log(f"  the upload bar {'was' if bar else 'was no longer'} in the shot")
                phone.wait_for_function(loaded, arg=up["url"], timeout=10_000)
                chat(phone, "Looks good, the first layer stuck")
                for pg in (desk, phone):
                    pg.wait_for_function("() => window.rtcam.chat.lines.length >= 5", timeout=5_000)
                desk.wait_for_selector("#chat-upload", state="hidden", timeout=5_000)
                phone.locator("#chat").scroll_into_view_if_needed()
                s.shot(phone, "picture-phone")
                phone.click(f"#chat-log a[href='{up['url']}']")
                phone.wait_for_selector("#lightbox[open]")
                phone.wait_for_function("() => document.getElementById('lightbox-img').complete"
                                        " && document.getElementById('lightbox-img').naturalWidth > 0")
                s.shot(phone, "lightbox-phone")
                phone.keyboard.press("Escape")
                phone.wait_for_selector("#lightbox", state="hidden")
                phone.evaluate("() => window.scrollTo(0, 0)")
                desk.click(f"#chat-log a[href='{up['url']}']")
                desk.wait_for_selector("#lightbox[open]")
                desk.wait_for_function("() => document.getElementById('lightbox-img').complete"
                                       " && document.getElementById('lightbox-img').naturalWidth > 0")
                s.shot(desk, "lightbox-desktop")
                desk.keyboard.press("Escape")
                desk.wait_for_selector("#lightbox", state="hidden")

                # ---- the controls drawer (Ann turns the brightness up a little first)
                log("controls drawer")
                how["controls"] = real_or_injected(
                    [desk, phone], "controls", "() => window.rtcam.controls.received > 0",
                    lambda pg: pg.evaluate("(m) => window.rtcam.inject(m)", FAKE_CONTROLS))
                desk.click("#controls-toggle")
                desk.wait_for_selector("#controls", state="visible")
                if how["controls"] == "real":
                    row = '.ctl[data-control="brightness"] input'
                    if desk.locator(row).count():
                        desk.locator(row).fill("150")
                        phone.wait_for_function(
                            "() => (window.rtcam.controls.list.find(c => c.id === 'brightness') || {}).value === 150",
                            timeout=5_000)
                desk.wait_for_timeout(1200)  # the controls' own hold after a move, and a new picture
                s.shot(desk, "controls-desktop")
                phone.click("#controls-toggle")
                phone.wait_for_selector("#controls", state="visible")
                phone.wait_for_timeout(300)
                s.shot(phone, "controls-phone")
                # View only (a token made without --control) is not a state a logged-in page can be in.
                if how["controls"] == "injected":
                    view_only = dict(FAKE_CONTROLS, may_set=False)
                    phone.evaluate("(m) => window.rtcam.inject(m)", view_only)
                    phone.wait_for_timeout(200)
                    s.shot(phone, "controls-view-only-phone")
                for pg in (desk, phone):
                    pg.keyboard.press("Escape")
                    pg.wait_for_selector("#controls", state="hidden")

                # ---- the serial panel, on the rtcam with the bridge
                log("serial panel")
                sdesk = s.page(DESKTOP, ser.url, name="Ann")
                sphone = s.page(PHONE, ser.url, name="Ben")
                for pg in (sdesk, sphone):
                    go_live(pg)
                open_js = "() => window.rtcam.serial.open && (window.rtcam.serial.state || {}).state === 'open'"
                if wait_until([sdesk, sphone], open_js, 6.0):
                    how["serial"] = "real"
                    log(f"  serial state: the server's own messages ({sdesk.evaluate('() => window.rtcam.serial.state.path')})")
                    board.write(BOOT_TEXT)
                    got = wait_until([sdesk, sphone],
                                     "() => window.rtcam.serial.received.includes('pi@sensor-node:~$')", 5.0)
                    how["serial bytes"] = "real" if got else "missing"
                    log(f"  serial bytes from the board: {'arrived' if got else 'did not arrive'}")
                    # Ann types a command: she holds the port now; the board answers it.
                    sdesk.fill("#serial-text", "uptime")
                    sdesk.press("#serial-text", "Enter")
                    typed = board.read_line()
                    log(f"  the board heard {typed!r}")
                    if typed is not None:
                        board.write(f"{typed}\r\n{SHELL_ANSWERS.get(typed, '-bash: ' + typed + ': command not found')}"
                                    "\r\npi@sensor-node:~$ ")
                    wait_until([sdesk, sphone], "() => window.rtcam.serial.received.includes('load average')", 5.0)
                    wait_until([sphone], "() => (window.rtcam.serial.state || {}).holder === 'Ann'", 5.0)
                    wait_until([sdesk], "() => (window.rtcam.serial.state || {}).you_hold === true", 5.0)
                else:
                    how["serial"] = how["serial bytes"] = "injected"
                    log("  serial state: none from the server: injected through window.rtcam.inject")
                    sdesk.evaluate("(m) => window.rtcam.inject(m)", dict(FAKE_SERIAL, holder="Ann", you_hold=True))
                    sphone.evaluate("(m) => window.rtcam.inject(m)", dict(FAKE_SERIAL, holder="Ann", you_hold=False))
                    for pg in (sdesk, sphone):
                        pg.evaluate("(t) => window.rtcam.injectSerial(t)", FAKE_SERIAL_TEXT)
                chat(sphone, "Is the sensor node back up?")
                sdesk.wait_for_function("() => window.rtcam.chat.lines.length >= 1", timeout=5_000)
                time.sleep(0.3)
                chat(sdesk, "Yes, 12 days of uptime. Checking its log now")
                for pg in (sdesk, sphone):
                    pg.wait_for_function("() => window.rtcam.chat.lines.length >= 2", timeout=5_000)
                    wait_readout(pg)
                sdesk.fill("#serial-text", "dmesg | tail")
                sdesk.wait_for_timeout(400)
                s.shot(sdesk, "serial-desktop")
                s.shot(sphone, "serial-phone", full_page=True)

                # ---- the camera lost
                log("camera lost")
                lost_pages = []
                for label, vp in (("desktop", DESKTOP), ("phone", PHONE)):
                    pg = s.page(vp, lost.url, name="Ann" if label == "desktop" else "Ben")
                    go_live(pg)
                    lost_pages.append((label, pg))
                wait_until([pg for _, pg in lost_pages], "() => window.rtcam.camera.from === 'message'", REAL_WAIT_S)
                for label, pg in lost_pages:
                    src = pg.evaluate("() => window.rtcam.camera.from")
                    if src is None:
                        pg.evaluate("(m) => window.rtcam.inject(m)", {
                            "type": "camera", "state": "lost", "name": "/dev/video99",
                            "problem": "cannot open /dev/video99: No such file or directory (os error 2)"})
                        src = "injected"
                    log(f"  camera lost ({label}): from {src}")
                    how[f"camera lost ({label})"] = "real" if src == "message" else src
                    pg.wait_for_selector("#camera-notice", state="visible", timeout=5_000)
                    wait_readout(pg)
                    s.shot(pg, f"camera-lost-{label}")
            finally:
                s.close()
                browser.close()
    finally:
        for srv_ in servers:
            srv_.stop()
        if board is not None:
            board.stop()
        work.cleanup()

    log("\nsummary:")
    for what, src in how.items():
        log(f"  {what}: {src}")
    for name, size in s.saved:
        flag = "  (over 200 KB)" if size > 200_000 else ""
        log(f"  {name}: {size // 1024} KiB{flag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
