"""Camera controls and snapshots in two real Chromium pages.

Both pages call; each gets the camera's controls on its `rtcam` channel. A slider moved in one page (by
keyboard, as a person would: focus it and press End) is applied by the camera (the test scene's
brightness, in software), moves in the other page, shows in /api/status and makes the picture brighter. The
snapshot button saves a JPEG of the picture.
"""

from __future__ import annotations

import os
import time

import pytest

if os.environ.get("RTCAM_BROWSER_TEST") == "skip":
    pytest.skip("RTCAM_BROWSER_TEST=skip", allow_module_level=True)

import rtcam_harness as h  # noqa: E402
from test_browser import browser, go_live, open_page, start_rtcam  # noqa: E402,F401  (fixtures)

BRIGHTNESS_ROW = '.ctl[data-control="brightness"]'


def wait_controls(page):
    page.wait_for_function("() => window.rtcam.controls && window.rtcam.controls.received > 0", timeout=15_000)


def slider_value(page) -> int:
    return int(page.locator(f"{BRIGHTNESS_ROW} input").input_value())


def status_brightness(page) -> int | None:
    r = page.request.get(page.url.split("#")[0].rstrip("/") + "/api/status")
    assert r.ok, r.status
    controls = r.json()["source"].get("controls", [])
    return next((c["value"] for c in controls if c["id"] == "brightness"), None)


def snapshot_mean_luma(page) -> float:
    """The mean of a JPEG snapshot's first bytes of scan data is no measure; decode it in the page."""
    return page.evaluate("""async () => {
        const r = await fetch('/api/snapshot.jpg', {cache: 'no-store'});
        const bmp = await createImageBitmap(await r.blob());
        const c = new OffscreenCanvas(bmp.width, bmp.height);
        const g = c.getContext('2d');
        g.drawImage(bmp, 0, 0);
        const d = g.getImageData(0, 40, bmp.width, bmp.height - 40).data;  // below the stripe
        let sum = 0;
        for (let i = 0; i < d.length; i += 4) sum += 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
        return sum / (d.length / 4);
    }""")


def test_a_slider_moved_in_one_page_moves_in_the_other_and_in_the_status(start_rtcam, open_page):
    srv = start_rtcam(size="640x360")
    a, b = open_page(srv.url), open_page(srv.url)
    for p in (a, b):
        go_live(p)
        wait_controls(p)
    assert a.evaluate("() => window.rtcam.controls.maySet") is True
    assert slider_value(b) == 128 and status_brightness(a) == 128
    before = snapshot_mean_luma(a)

    a.click("#controls-toggle")
    slider = a.locator(f"{BRIGHTNESS_ROW} input")
    slider.focus()
    t0 = time.time()
    a.keyboard.press("End")
    b.wait_for_function(
        "() => Number(document.querySelector('.ctl[data-control=\"brightness\"] input').value) === 255",
        timeout=3_000)
    moved_ms = (time.time() - t0) * 1000
    assert slider_value(a) == 255
    assert status_brightness(b) == 255, "the device applied it"
    after = snapshot_mean_luma(b)
    print(f"\nslider in A -> B's slider moved in {moved_ms:.0f} ms; picture luma {before:.0f} -> {after:.0f}")
    assert after > before + 40, (before, after)
    assert a.evaluate("() => window.rtcam.controls.errors.length") == 0

    # Reset, from the other page, by keyboard too.
    b.click("#controls-toggle")
    b.locator(f"{BRIGHTNESS_ROW} .ctl-reset").click()
    a.wait_for_function(
        "() => Number(document.querySelector('.ctl[data-control=\"brightness\"] input').value) === 128",
        timeout=3_000)
    b.keyboard.press("Escape")
    assert b.locator("#controls").is_hidden() or b.get_attribute("#controls", "aria-hidden") == "true" \
        or b.evaluate("() => !window.rtcam.controls.open")


def test_the_snapshot_button_saves_a_jpeg(start_rtcam, open_page):
    srv = start_rtcam(size="640x360")
    page = open_page(srv.url)
    go_live(page)
    with page.expect_download(timeout=10_000) as dl:
        page.click("#snapshot")
    d = dl.value
    data = open(d.path(), "rb").read()
    assert data[:2] == b"\xff\xd8" and len(data) > 5_000, len(data)
    assert d.suggested_filename.startswith("rtcam-") and d.suggested_filename.endswith(".jpg")
    state = page.evaluate("() => window.rtcam.snapshot.last")
    assert state["ok"] and state["bytes"] == len(data), state
