"""The browser half of the QEMU system test: the page, served by rtcam inside the emulated arm64
board, plays the guest's vivid camera in headless Chromium on the host.

scripts/qemu-test.sh boots the guest and runs this with RTCAM_QEMU_URL (the forwarded
https://127.0.0.1:PORT) and RTCAM_QEMU_PASSWORD; without them it is skipped.
"""

from __future__ import annotations

import os

import pytest

if not os.environ.get("RTCAM_QEMU_URL"):
    pytest.skip("RTCAM_QEMU_URL is not set: run scripts/qemu-test.sh", allow_module_level=True)

from test_browser import browser, go_live, measure, open_page  # noqa: E402,F401  (fixtures)


def test_page_plays_the_guest_vivid_camera(open_page):
    page = open_page(os.environ["RTCAM_QEMU_URL"], password=os.environ["RTCAM_QEMU_PASSWORD"])
    go_live(page)
    before, after = measure(page, 4.0)
    dt = (after["statsTime"] - before["statsTime"]) / 1000
    frames = after["framesDecoded"] - before["framesDecoded"]
    print(f"\nguest camera in Chromium: {after['width']}x{after['height']} {after['codec']}, "
          f"{frames / dt:.1f} fps over {dt:.1f} s, click-to-first-frame {after['clickToFirstFrameMs']:.0f} ms, "
          f"stripe frames {after['stripeFrames']}")
    assert (after["width"], after["height"]) == (640, 360)
    assert "h264" in (after["codec"] or "").lower(), after["codec"]
    # vivid's picture, not rtcam's test source: no frame carries the timestamp stripe.
    assert after["stripeFrames"] == 0
    assert frames >= 20, f"{frames} frames decoded in {dt:.1f} s"
    page.click("#hangup")
