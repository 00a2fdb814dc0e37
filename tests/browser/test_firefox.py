"""End-to-end in a real headless Firefox (VP8), and Firefox + Chromium watching one rtcam at once.

Debian's firefox-esr offers no H.264 (only VP8/VP9/AV1), and it gathers host candidates only on
its default route's interface, never on loopback (shared/notes/firefox-testing.md). So each test
makes a network namespace of its own (rtcam_harness.NetNs: lo + a veth pair with a default route,
nothing leaves it); rtcam binds its media socket to 0.0.0.0:8443 there, as an appliance does, and
advertises the veth peer 198.51.100.2; the page is loaded from https://127.0.0.1:8443/. (Replies
must leave from the address each viewer reached: towards 198.51.100.1, itself a local address
here, the kernel would pick 198.51.100.1 as the source, and Firefox drops STUN answers from an
address it did not send to. rtcam/udp.rs's ReplyFrom sees to it; this test is where it showed.)
Firefox is driven by
tests/browser/firefox/watch.mjs (puppeteer-core over WebDriver BiDi, /usr/bin/firefox-esr, never
a downloaded browser); Chromium by Python Playwright as in test_browser.py, launched inside the
same namespace.

Run from the repository root as root (after `cargo build --bin rtcam` and
`scripts/setup.sh --test`, which installs firefox-esr and `npm ci`s tests/browser/firefox/):

    RTCAM_BIN=$PWD/target/debug/rtcam .venv/bin/python -m pytest -q -s tests/browser/test_firefox.py

Environment: RTCAM_BIN (default target/debug/rtcam), RTCAM_FIREFOX (default /usr/bin/firefox-esr),
RTCAM_CHROMIUM (default /usr/bin/chromium), RTCAM_BROWSER_TEST=skip to skip.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

import pytest

if os.environ.get("RTCAM_BROWSER_TEST") == "skip":
    pytest.skip("RTCAM_BROWSER_TEST=skip", allow_module_level=True)

from playwright.sync_api import sync_playwright  # noqa: E402

import rtcam_harness as h  # noqa: E402

WINDOW_S = 5.0
MIN_FPS = 25.0
LIVE_TIMEOUT_S = 30  # launch + login + Call until the first frame
MAX_P50_MS = 500.0
# Both browsers at once watch 640x360: two browsers decoding 720p beside two 720p encoders is more
# than a 2-core CI machine has: in one CI run rtcam's bandwidth estimate for Firefox (on a veth, no
# rate limit) fell to 281 kbit/s, so it sent Firefox only the frames it may drop: 16 fps. This test
# is about the two codecs at once; 720p is each browser's own test (test_firefox_watches_vp8 here).
TOGETHER_SIZE = (640, 360)


@pytest.fixture
def rtcam(netns, tmp_path, request):
    """rtcam at 1280x720, or at the size a test asks for (indirect parametrization)."""
    width, height = getattr(request, "param", (1280, 720))
    srv = h.Rtcam(h.rtcam_binary("target/debug/rtcam"), size=f"{width}x{height}", fps=30,
                  workdir=str(tmp_path / "rtcam"), netns=netns)
    srv.start(timeout=30)
    yield srv
    code = srv.stop()
    print(f"\n--- rtcam log (exit {code}), last lines ---\n{srv.log_tail(40)}")


@pytest.fixture
def firefox(netns, rtcam, tmp_path):
    """A Firefox (watch.mjs) opening rtcam's page inside the namespace; closed at teardown
    (peer connections first, then the browser)."""
    h.FirefoxWatcher.check_installed()
    fx = h.FirefoxWatcher(rtcam.url, rtcam.password, seconds=WINDOW_S, prefix=netns.prefix,
                          log_path=tmp_path / "firefox.log")
    fx.start()
    yield fx
    fx.close_and_report()


def firefox_live(fx) -> dict:
    t = time.monotonic()
    launched = fx.wait_for("launched", timeout=30)
    fx.wait_for("idle", timeout=20)
    live = fx.wait_for("live", timeout=LIVE_TIMEOUT_S)
    print(f"\nFirefox {launched['version']}: live {time.monotonic() - t:.1f} s after start, "
          f"click-to-first-frame {live['snapshot']['clickToFirstFrameMs']:.0f} ms")
    return live


def describe_firefox(r: dict) -> str:
    d = r.get("direct") or {}
    p50, p95 = r["latencyP50"], r["latencyP95"]
    return (f"{r['width']}x{r['height']} {r['mimeType']} (page: {r['codec']!r}), {r['fps']:.1f} fps "
            f"({r['frames']} frames in {r['seconds']:.2f} s, {r['framesDropped']} dropped), "
            f"stamp-to-display p50 {None if p50 is None else round(p50, 1)} ms / "
            f"p95 {None if p95 is None else round(p95, 1)} ms over {r['latencyCount']} stamps, "
            f"stripe ok {r['stripeOk']} bad {r['stripeInvalid']} skipped {r['stripeSkipped']} "
            f"(min margin {r['stripeMargin']}, {r['stripeMethod']}), jitter buffer {r['jitterBufferMs']}, "
            f"nacks {d.get('nackCount')} plis {d.get('pliCount')} lost {d.get('packetsLost')}, "
            f"pair {d.get('local')} -> {d.get('remote')}")


def check_firefox(r: dict, size=(1280, 720)):
    assert r["state"] == "live", r["state"]
    assert r["mimeType"] == "video/VP8", f"codec from getStats {r['mimeType']!r} (page shows {r['codec']!r})"
    assert (r["width"], r["height"]) == size, (r["width"], r["height"])
    assert r["seconds"] >= WINDOW_S - 0.1, r["seconds"]
    assert r["fps"] >= MIN_FPS, f"Firefox decoded {r['fps']:.1f} fps ({r['frames']} frames in {r['seconds']:.2f} s)"
    # Every stripe the page read must check out (markers + CRC), and most frames must be read.
    assert r["stripeInvalid"] == 0, f"{r['stripeInvalid']} frames with an invalid stripe"
    assert r["stripeOk"] >= 0.6 * r["frames"], f"only {r['stripeOk']} of {r['frames']} frames had a stripe read"
    assert r["latencyP50"] is not None and 0 < r["latencyP50"] < MAX_P50_MS, f"median latency {r['latencyP50']} ms"
    assert r["latencyMin"] > -5, f"a stamp from the future: {r['latencyMin']} ms"


def test_firefox_watches_vp8(rtcam, firefox):
    t0 = time.monotonic()
    firefox_live(firefox)
    r = firefox.measure()
    print(f"Firefox alone: {describe_firefox(r)}")
    status = status_from_inside(rtcam)
    print(f"/api/status while Firefox watches: {json.dumps(status)}")
    check_firefox(r)
    # Firefox's one viewer is on a VP8 encoder (no H.264 one runs: nobody watches in H.264).
    assert "encoders" in status, f"/api/status has no 'encoders' field: {status}"
    vp8 = [e for e in status["encoders"] if str(e.get("codec", "")).upper() == "VP8"]
    assert len(vp8) == 1 and vp8[0].get("viewers") == 1, f"encoders {status['encoders']}"
    assert (vp8[0].get("width"), vp8[0].get("height")) == (1280, 720), vp8[0]
    print(f"(measured {time.monotonic() - t0:.1f} s after the Firefox driver started)")


_STATUS_SCRIPT = r"""
import http.cookiejar, json, ssl, sys, urllib.parse, urllib.request
base, password = sys.argv[1], sys.argv[2]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
op = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx),
                                 urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
op.open(base + "login", data=urllib.parse.urlencode({"password": password}).encode(), timeout=5).read()
print(op.open(base + "api/status", timeout=5).read().decode())
"""


def status_from_inside(rtcam) -> dict:
    """/api/status as a logged-in client sees it: a little Python client inside the namespace,
    with a session of its own (a fresh login through the form's POST)."""
    r = rtcam.netns.run([sys.executable, "-c", _STATUS_SCRIPT, rtcam.url, rtcam.password])
    try:
        return json.loads(r.stdout)
    except ValueError:
        raise AssertionError(f"/api/status from inside the namespace: exit {r.returncode}, "
                             f"{r.stdout[:300]!r} {r.stderr[-600:]!r}") from None


# ------------------------------------------------------------------ Chromium and Firefox at once


@pytest.fixture
def chromium_page(netns, tmp_path):
    """A Chromium page in the same namespace (Playwright stays outside; it talks over pipes)."""
    if not os.path.exists(h.CHROMIUM):
        pytest.fail(f"{h.CHROMIUM} is missing: apt-get install -y chromium (or set RTCAM_CHROMIUM)")
    shim_dir = tmp_path / "chromium"
    shim_dir.mkdir()
    with sync_playwright() as p:
        b = h.launch_chromium(p, shim_dir, prefix=netns.prefix)
        ctx = b.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 860})
        page = ctx.new_page()
        page.console_lines = []
        page.on("console", lambda m: page.console_lines.append(f"[{m.type}] {m.text}"))
        page.on("pageerror", lambda e: page.console_lines.append(f"[pageerror] {e}"))
        try:
            yield page
        finally:
            h.hang_up_quietly(page)  # the page's peer connection closes before the browser does
            try:  # and its hangup message has left before the context goes
                page.wait_for_function("() => !window.rtcam || window.rtcam.state !== 'live'", timeout=2000)
                page.wait_for_timeout(200)
            except Exception:
                pass
            if page.console_lines:
                print("\n--- Chromium console ---\n" + "\n".join(page.console_lines[-30:]))
            ctx.close()
            b.close()


def chromium_window(page, seconds: float) -> dict:
    """One getStats window of the page's own figures (window.rtcam), like test_browser.measure."""
    h.wait_stats_after(page, None)
    before = h.snapshot(page)
    h.wait_stats_after(page, before["statsTime"] + seconds * 1000, timeout_ms=seconds * 1000 + 10_000)
    after = h.snapshot(page, latencies=True)
    dt = (after["statsTime"] - before["statsTime"]) / 1000
    frames = after["framesDecoded"] - before["framesDecoded"]
    lat = h.window_latencies(before, after)
    return {
        "seconds": dt, "frames": frames, "fps": frames / dt if dt > 0 else 0.0,
        "width": after["width"], "height": after["height"], "codec": after["codec"], "state": after["state"],
        "stripeOk": after["stripeFrames"] - before["stripeFrames"],
        "stripeInvalid": after["stripeInvalid"] - before["stripeInvalid"],
        "p50": statistics.median(lat) if lat else None, "p95": h.percentile(lat, 95), "n": len(lat),
        "t0": before["statsTime"], "t1": after["statsTime"],
    }


def page_status(page) -> dict:
    """/api/status with the page's own session (same origin, its cookie)."""
    return page.evaluate("""async () => {
        const r = await fetch('/api/status', { cache: 'no-store', credentials: 'same-origin' });
        return { httpStatus: r.status, body: r.ok ? await r.json() : await r.text() };
    }""")


def check_encoders(status: dict, size: tuple):
    """Both encoders listed, one viewer each (the `encoders` field of /api/status)."""
    body = status["body"]
    assert status["httpStatus"] == 200, status
    # /api/status `encoders`: a list of {codec, implementation, width, height, fps, bitrate_kbps,
    # viewers, ...}, one per running encoder (an encoder runs while its codec has viewers).
    assert "encoders" in body, f"/api/status has no 'encoders' field: {body}"
    encoders = body["encoders"]
    by_codec = {}
    for e in encoders:
        by_codec.setdefault(str(e.get("codec", "")).upper().replace(".", ""), []).append(e)
    for codec in ("H264", "VP8"):
        got = by_codec.get(codec, [])
        assert len(got) == 1, f"{codec}: {len(got)} encoders listed: {encoders}"
        e = got[0]
        assert e.get("viewers") == 1, f"{codec} encoder has {e.get('viewers')} viewers: {e}"
        assert (e.get("width"), e.get("height")) == size, e
        for field in ("implementation", "fps", "bitrate_kbps"):
            assert field in e, f"{codec} encoder without {field}: {e}"


@pytest.mark.parametrize("rtcam", [TOGETHER_SIZE], indirect=True, ids=["640x360"])
def test_chromium_and_firefox_watch_together(netns, rtcam, chromium_page, firefox):
    t0 = time.monotonic()
    page = chromium_page
    h.login(page, rtcam.url, rtcam.password)
    h.wait_state(page, "idle", 10_000)
    page.click("#call")
    try:
        h.wait_state(page, "live", LIVE_TIMEOUT_S * 1000)
    except Exception:
        pytest.fail(f"Chromium not live: {h.snapshot(page)}")
    firefox_live(firefox)
    print(f"both live {time.monotonic() - t0:.1f} s into the test")

    status = page_status(page)
    print(f"/api/status while both watch: {json.dumps(status['body'])}")
    check_encoders(status, TOGETHER_SIZE)

    # Both windows at once: Firefox measures in its own process while Chromium is measured here.
    firefox.command("measure")
    c = chromium_window(page, WINDOW_S)
    f = firefox.wait_for("result", timeout=WINDOW_S + 20)
    status_after = page_status(page)

    print(f"Chromium: {c['width']}x{c['height']} {c['codec']}, {c['fps']:.1f} fps ({c['frames']} frames in "
          f"{c['seconds']:.2f} s), p50 {c['p50'] and round(c['p50'], 1)} ms / p95 {c['p95'] and round(c['p95'], 1)} ms "
          f"over {c['n']} stamps, stripe bad {c['stripeInvalid']}")
    print(f"Firefox:  {describe_firefox(f)}")
    print(f"/api/status after: {json.dumps(status_after['body'])}")

    # The two windows (wall-clock getStats sample times, one host) overlap by most of their length.
    overlap = (min(c["t1"], f["statsTime1"]) - max(c["t0"], f["statsTime0"])) / 1000
    print(f"windows overlap {overlap:.2f} s")
    assert overlap >= WINDOW_S - 2.0, f"measurement windows overlap only {overlap:.2f} s"
    assert c["state"] == "live"
    assert "h264" in (c["codec"] or "").lower(), c["codec"]
    assert (c["width"], c["height"]) == TOGETHER_SIZE
    assert c["fps"] >= MIN_FPS, f"Chromium decoded {c['fps']:.1f} fps while Firefox watched"
    assert c["stripeInvalid"] == 0 and c["stripeOk"] >= 0.6 * c["frames"], c
    assert c["p50"] is not None and 0 < c["p50"] < MAX_P50_MS, c
    check_firefox(f, TOGETHER_SIZE)
    check_encoders(status_after, TOGETHER_SIZE)
    print(f"(both checked {time.monotonic() - t0:.1f} s into the test)")
