"""End-to-end: the rtcam binary (test source) and the page in a real headless Chromium.

Run from the repository root (after `cargo build`):

    pip install -r tests/browser/requirements.txt
    pytest -s tests/browser/          # -s shows the measured numbers

Environment: RTCAM_BIN (default target/debug/rtcam), RTCAM_CHROMIUM (default /usr/bin/chromium),
RTCAM_BROWSER_TEST=skip to skip. A missing Chromium fails the test; it is never downloaded.
RTCAM_WEB_FROM_DISK=1 serves web/ from disk instead of the copy embedded in the binary (page work
without a rebuild; signaling and media still come from rtcam).
"""

from __future__ import annotations

import os
import statistics
import time

import pytest

if os.environ.get("RTCAM_BROWSER_TEST") == "skip":
    pytest.skip("RTCAM_BROWSER_TEST=skip", allow_module_level=True)

from playwright.sync_api import sync_playwright  # noqa: E402

import rtcam_harness as h  # noqa: E402

LIVE_TIMEOUT_MS = 20_000
WINDOW_S = 5.0


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not os.path.exists(h.CHROMIUM):
        pytest.fail(f"{h.CHROMIUM} is missing: apt-get install -y chromium (or set RTCAM_CHROMIUM)")
    shim_dir = tmp_path_factory.mktemp("chromium")
    with sync_playwright() as p:
        b = h.launch_chromium(p, shim_dir)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def start_rtcam(tmp_path):
    """Factory: start_rtcam(extra_args) -> a running Rtcam; stopped (and its log shown) at teardown."""
    started = []

    def start(extra=None):
        srv = h.Rtcam(h.rtcam_binary("target/debug/rtcam"), size="1280x720", fps=30, extra=extra,
                      workdir=str(tmp_path / f"rtcam{len(started)}"))
        started.append(srv)
        return srv.start(timeout=30)

    yield start
    for srv in started:
        code = srv.stop()
        print(f"\n--- rtcam log (exit {code}), last lines ---\n{srv.log_tail(40)}")


@pytest.fixture
def open_page(browser):
    """Factory: open_page(url) -> a page in its own context, with its console kept for failures."""
    opened = []

    def open_(url):
        ctx = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 860})
        h.maybe_serve_web_from_disk(ctx)
        page = ctx.new_page()
        page.console_lines = []
        page.on("console", lambda m: page.console_lines.append(f"[{m.type}] {m.text}"))
        page.on("pageerror", lambda e: page.console_lines.append(f"[pageerror] {e}"))
        page.goto(url)
        page.wait_for_function("() => window.rtcam && window.rtcam.state === 'idle'", timeout=10_000)
        opened.append((ctx, page))
        return page

    yield open_
    for ctx, page in opened:
        h.hang_up_quietly(page)  # closes the peer connection: no zombie session on the server
        if page.console_lines:
            print(f"\n--- console of {page.url} ---\n" + "\n".join(page.console_lines[-40:]))
        ctx.close()


def state_of(page):
    return page.get_attribute("#state", "data-state"), page.text_content("#state")


def go_live(page):
    page.click("#call")
    try:
        h.wait_state(page, "live", LIVE_TIMEOUT_MS)
    except Exception:
        pytest.fail(f"not live within {LIVE_TIMEOUT_MS / 1000:.0f} s; state line {state_of(page)}, "
                    f"rtcam {h.snapshot(page)}")
    assert page.get_attribute("#state", "data-state") == "live"


def measure(page, seconds: float):
    """Two getStats samples at least `seconds` apart; returns (before, after-with-latencies)."""
    h.wait_stats_after(page, None)
    before = h.snapshot(page)
    h.wait_stats_after(page, before["statsTime"] + seconds * 1000, timeout_ms=seconds * 1000 + 10_000)
    after = h.snapshot(page, latencies=True)
    return before, after


def test_call_live_stats_latency_hangup(start_rtcam, open_page):
    srv = start_rtcam()
    page = open_page(srv.url)
    go_live(page)

    before, after = measure(page, WINDOW_S)
    dt = (after["statsTime"] - before["statsTime"]) / 1000
    frames = after["framesDecoded"] - before["framesDecoded"]
    fps = frames / dt
    stripe = after["stripeFrames"] - before["stripeFrames"]
    bad = after["stripeInvalid"] - before["stripeInvalid"]
    lat = h.window_latencies(before, after)
    p50 = statistics.median(lat) if lat else None
    p95 = h.percentile(lat, 95)
    print(
        f"\nlive call: {after['width']}x{after['height']} {after['codec']}, {fps:.1f} fps "
        f"({frames} frames in {dt:.2f} s, {after['framesDropped']} dropped), "
        f"click-to-first-frame {after['clickToFirstFrameMs']:.0f} ms, "
        f"stamp-to-display p50 {p50 if p50 is None else round(p50, 1)} ms / p95 {p95 if p95 is None else round(p95, 1)} ms "
        f"over {len(lat)} stamps, stripe ok {stripe} bad {bad} (min margin {after['stripeMargin']}, "
        f"{after['stripeMethod']}), jitter buffer {after['jitterBufferMs']}"
    )

    assert frames >= 125, f"{frames} frames decoded in {dt:.2f} s"
    assert fps >= 25, f"{fps:.1f} fps"
    assert (after["width"], after["height"]) == (1280, 720)
    assert "h264" in (after["codec"] or "").lower(), after["codec"]
    assert stripe >= 100, f"only {stripe} frames with a valid stripe ({bad} invalid)"
    assert p50 is not None and 0 < p50 < 1000, f"median latency {p50}"
    assert after["clickToFirstFrameMs"] is not None and after["clickToFirstFrameMs"] > 0

    page.click("#hangup")
    h.wait_state(page, "ended", 5_000)
    assert page.get_attribute("#state", "data-state") == "ended"
    # The peer connection is gone: no more frames.
    time.sleep(1.0)
    a = h.snapshot(page)
    assert a["state"] == "ended"


def test_refused_call_shows_error_and_first_viewer_keeps_playing(start_rtcam, open_page):
    srv = start_rtcam(["--max-viewers", "1"])
    first = open_page(srv.url)
    go_live(first)

    second = open_page(srv.url)
    second.click("#call")
    try:
        # Either the server refuses with an error message at once, or (if it just closes the
        # socket) the page gives up after its retries: both must end in 'error' with a reason.
        h.wait_state(second, "error", 30_000)
    except Exception:
        pytest.fail(f"second viewer not in error: state line {state_of(second)}")
    state, text = state_of(second)
    reason = h.snapshot(second)["reason"]
    print(f"\nrefused viewer: state line {text!r}")
    assert state == "error"
    assert reason and reason.strip(), "error without a reason"
    assert reason in text

    # The first viewer is untouched and still decoding.
    before, after = measure(first, 2.0)
    frames = after["framesDecoded"] - before["framesDecoded"]
    dt = (after["statsTime"] - before["statsTime"]) / 1000
    print(f"first viewer meanwhile: {frames / dt:.1f} fps, state {after['state']}")
    assert after["state"] == "live"
    assert frames / dt >= 20, f"first viewer at {frames / dt:.1f} fps"
    assert first.get_attribute("#state", "data-state") == "live"

    # Once the first viewer hangs up, the slot is free again.
    first.click("#hangup")
    h.wait_state(first, "ended", 5_000)
    deadline = time.monotonic() + 15
    while True:
        second.click("#call")
        second.wait_for_function("() => ['live', 'error'].includes(window.rtcam.state)", timeout=LIVE_TIMEOUT_MS)
        if h.snapshot(second)["state"] == "live":
            break
        # The server may take a moment to release the slot: try again while refused.
        if time.monotonic() > deadline:
            pytest.fail(f"second viewer not live after the first hung up: {state_of(second)}")
        time.sleep(1.0)
    second.click("#hangup")
    h.wait_state(second, "ended", 5_000)
