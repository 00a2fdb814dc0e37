#!/usr/bin/env python3
"""Screenshots of rtcam's page in each of its states, at phone (390x844) and desktop (1280x800) size.

Not a test: a script that starts rtcam through the harness (rtcam_harness.Rtcam, colour bars at
640x360), drives Debian's headless Chromium (never a downloaded one) and saves small PNGs:

    .venv/bin/python tests/browser/screenshots.py [--out docs/screenshots]

Environment: RTCAM_BIN (default target/debug/rtcam), RTCAM_WEB_FROM_DISK=1 (the page's files from
web/ on disk, no rebuild), RTCAM_CHROMIUM.

States: the login form; a live call with the link readout and two pages chatting (the desktop page
and the phone page are in the same call); the camera controls drawer; the camera lost (a second
rtcam whose --source is a missing /dev/video99, so it serves its "camera lost" slate); the serial
panel, open, with text from the port.

The controls, camera and serial states need the server's messages on the data channel
({"type":"controls"}, {"type":"camera"}, {"type":"serial"} and bytes on the `serial` channel). The
script waits up to 3 s for the real ones; when none came it feeds made-up ones through the page's
test hook window.rtcam.inject / window.rtcam.injectSerial (the same code path as the channel) and
says so. It prints, for each, whether it used the server's or injected ones.
"""

from __future__ import annotations

import argparse
import os
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

# Made-up messages (protocol.md), used only when the server sent none.
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
FAKE_SERIAL_TEXT = (
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
    "sensor-node login: "
)


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
        # No blinking caret, and no animation caught half way.
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(h.REPO_ROOT / "docs" / "screenshots"), help="where the PNGs go")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    binary = h.rtcam_binary("target/debug/rtcam")
    log(f"rtcam {binary}; page from {'web/ on disk' if os.environ.get('RTCAM_WEB_FROM_DISK') == '1' else 'the binary'}")

    work = tempfile.TemporaryDirectory(prefix="rtcam-shots-")
    servers = []
    how = {}
    try:
        # Colour bars (with the timestamp stripe): flat colours keep the PNGs small.
        srv = h.Rtcam(binary, size="640x360", fps=30, workdir=os.path.join(work.name, "a"))
        srv.args[srv.args.index("--source") + 1] = "bars"
        srv.start()
        servers.append(srv)
        # The camera-lost state: an rtcam whose camera is not there (it serves its slate).
        lost = h.Rtcam(binary, size="640x360", fps=30, workdir=os.path.join(work.name, "b"))
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
                desk.wait_for_function("() => window.rtcam.chat.lines.length >= 3", timeout=5_000)
                phone.wait_for_function("() => window.rtcam.chat.lines.length >= 3", timeout=5_000)
                for pg in (desk, phone):
                    wait_readout(pg)
                s.shot(desk, "live-desktop")
                s.shot(phone, "live-phone")
                phone.click("#stats-toggle")
                phone.wait_for_timeout(700)
                s.shot(phone, "stats-phone", full_page=True)
                phone.click("#stats-toggle")

                # ---- the controls drawer
                log("controls drawer")
                how["controls"] = real_or_injected(
                    [desk, phone], "controls", "() => window.rtcam.controls.received > 0",
                    lambda pg: pg.evaluate("(m) => window.rtcam.inject(m)", FAKE_CONTROLS))
                for label, pg in (("desktop", desk), ("phone", phone)):
                    pg.click("#controls-toggle")
                    pg.wait_for_selector("#controls", state="visible")
                    pg.wait_for_timeout(300)
                    s.shot(pg, f"controls-{label}")
                # View only (a token made without --control): everything disabled, with a note.
                if how["controls"] == "injected":
                    view_only = dict(FAKE_CONTROLS, may_set=False)
                    phone.evaluate("(m) => window.rtcam.inject(m)", view_only)
                    phone.wait_for_timeout(200)
                    s.shot(phone, "controls-view-only-phone")
                for pg in (desk, phone):
                    pg.keyboard.press("Escape")
                    pg.wait_for_selector("#controls", state="hidden")

                # ---- the serial panel
                log("serial panel")
                how["serial"] = real_or_injected(
                    [desk, phone], "serial state", "() => window.rtcam.serial.state !== null",
                    lambda pg: pg.evaluate("(m) => window.rtcam.inject(m)", FAKE_SERIAL))
                how["serial bytes"] = real_or_injected(
                    [desk, phone], "serial bytes", "() => window.rtcam.serial.receivedBytes > 0",
                    lambda pg: pg.evaluate("(t) => window.rtcam.injectSerial(t)", FAKE_SERIAL_TEXT))
                if how["serial"] == "injected":
                    # As if Ann typed her user name: she holds the port now, Ben sees that.
                    desk.evaluate("(m) => window.rtcam.inject(m)", dict(FAKE_SERIAL, holder="Ann", you_hold=True))
                    phone.evaluate("(m) => window.rtcam.inject(m)", dict(FAKE_SERIAL, holder="Ann", you_hold=False))
                if how["serial bytes"] == "injected":
                    for pg in (desk, phone):
                        pg.evaluate("(t) => window.rtcam.injectSerial(t)", "pi\r\nPassword: ")
                desk.fill("#serial-text", "uptime")
                desk.wait_for_timeout(400)
                s.shot(desk, "serial-desktop")
                s.shot(phone, "serial-phone", full_page=True)

                # ---- the camera lost
                log("camera lost")
                lost_pages = []
                for label, vp in (("desktop", DESKTOP), ("phone", PHONE)):
                    pg = s.page(vp, lost.url, name="Ann" if label == "desktop" else "Ben")
                    go_live(pg)
                    lost_pages.append((label, pg))
                deadline = time.monotonic() + REAL_WAIT_S
                while time.monotonic() < deadline and not all(
                        pg.evaluate("() => window.rtcam.camera.from === 'message'") for _, pg in lost_pages):
                    time.sleep(0.1)
                for label, pg in lost_pages:
                    src = pg.evaluate("() => window.rtcam.camera.from")
                    if src is None:
                        pg.evaluate("(m) => window.rtcam.inject(m)", {
                            "type": "camera", "state": "lost", "name": "/dev/video99",
                            "problem": "cannot open /dev/video99: No such file or directory (os error 2)"})
                        src = "injected"
                    log(f"  camera lost ({label}): from {src}")
                    how[f"camera lost ({label})"] = src
                    pg.wait_for_selector("#camera-notice", state="visible", timeout=5_000)
                    wait_readout(pg)
                    s.shot(pg, f"camera-lost-{label}")
            finally:
                s.close()
                browser.close()
    finally:
        for srv in servers:
            srv.stop()
        work.cleanup()

    log("\nsummary:")
    for what, src in how.items():
        log(f"  {what}: {src}")
    for name, size in s.saved:
        flag = "  (over 150 KiB)" if size > 150 * 1024 else ""
        log(f"  {name}: {size // 1024} KiB{flag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
