"""Real Chromium through a bad link: a userspace UDP relay (relay.py) between the page and rtcam's media
socket loses, delays and rate-limits datagrams (this kernel has no netem). The picture is the camera-like
scene at 1280x720, 30 fps.

- 5 % random loss each way, +10 ms: once rtcam has told the loss is random and sends copies (1.5-2 s into
  the call: loss in a link's first second cannot be told from its first keyframe overflowing a slow link), the
  video plays with no freeze over 200 ms (the longest time between two frames on screen, from
  requestVideoFrameCallback), at >= 25 fps. The gaps before that, repaired by NACKs alone, are printed.
- An 800 kbit/s link towards the browser: within 5 s rtcam sends under 800 kbit/s (what reaches the
  relay, before its cap) and the page keeps >= 25 fps.
- The same link at 1280x720 with a home router's 100 ms drop-tail queue, from the first second (issue
  #20): no freeze over 200 ms from the first frame on, >= 600 kbit/s delivered after 10 s, >= 25 fps.
  Not met yet (marked xfail, its figures printed, with when the queue overflowed and when the link
  delivered frames far apart): the longest still 167-217 ms in five runs, 539-613 kbit/s.

Run with the rest of tests/browser (see test_browser.py); -s prints the figures.
"""

from __future__ import annotations

import os
import statistics
import time

import pytest

if os.environ.get("RTCAM_BROWSER_TEST") == "skip":
    pytest.skip("RTCAM_BROWSER_TEST=skip", allow_module_level=True)

import rtcam_harness as h  # noqa: E402
from relay import Direction, Relay, frame_gaps, overflow_bursts  # noqa: E402
from test_browser import browser, go_live, open_page, start_rtcam  # noqa: E402,F401  (fixtures)

WATCH_S = 20.0
# 640x360 at the 720p bitrate (the same packets a second, so the same exposure to loss): headless Chromium
# decoding 720p in software on a 2-core machine next to rtcam stalls 100-150 ms now and then with no loss
# at all, which would hide what the link does.
SIZE = os.environ.get("RTCAM_LINK_SIZE", "640x360")
BITRATE = ["--bitrate", "1935"]


@pytest.fixture
def relayed(start_rtcam):
    """Factory: relayed(down, up) -> (rtcam, relay): rtcam advertises only the relay's address."""
    relays = []

    def start(down: Direction, up: Direction, extra=None, size=SIZE):
        srv = start_rtcam(["--advertise", Relay.FRONT_IP] + list(extra or []), size=size)
        relay = Relay(srv.rtc_port, down=down, up=up).start()
        relays.append(relay)
        return srv, relay

    yield start
    for r in relays:
        r.stop()


def describe(before: dict, after: dict, seconds: float) -> tuple[float, str]:
    frames = after["framesDecoded"] - before["framesDecoded"]
    fps = frames / seconds
    lat = h.window_latencies(before, after)
    p50 = statistics.median(lat) if lat else float("nan")
    p95 = h.percentile(lat, 95) or float("nan")
    gaps = [g for _, g in after["gaps"]]
    text = (f"{fps:.1f} fps ({frames} frames), longest gap {after['longestGapMs']:.0f} ms, gaps over 100 ms "
            f"{gaps}, stamp-to-display p50 {p50:.0f} / p95 {p95:.0f} ms; the browser: "
            f"{after['nacks'] - before['nacks']} NACKs, {after['retransmitted'] - before['retransmitted']} "
            f"retransmissions received, {after['plis'] - before['plis']} PLIs, "
            f"{after['packetsLost'] - before['packetsLost']} packets lost for good, "
            f"{after['freezes'] - before['freezes']} freezes")
    return fps, text


def relay_text(relay: Relay) -> str:
    d, u = relay.down, relay.up
    return (f"down: {d.offered} offered, {d.lost} lost, {d.overflowed} overflowed; "
            f"up: {u.offered} offered, {u.lost} lost")


LOSS = float(os.environ.get("RTCAM_LINK_LOSS", "0.05"))


COPIES_WITHIN_S = 5.0


def test_five_percent_loss_plays_without_freezes(relayed, open_page):
    srv, relay = relayed(Direction(loss=LOSS, delay_s=0.010), Direction(loss=LOSS, delay_s=0.010), BITRATE)
    page = open_page(srv.url)
    go_live(page)
    t_live = time.monotonic()
    page.evaluate("() => { window.rtcam.longestGapMs = 0; window.rtcam.gaps = []; }")
    # rtcam's telemetry says when it sends each datagram more than once
    page.wait_for_function("() => { const t = window.rtcam.chat.telemetry; return t && t.copies > 1; }",
                           timeout=COPIES_WITHIN_S * 1000)
    t_copies = time.monotonic()
    early = h.snapshot(page)
    print(f"\n5 % loss: copies {t_copies - t_live:.1f} s after the first frame; until then (NACKs alone) the "
          f"longest gap was {early['longestGapMs']:.0f} ms, gaps over 100 ms {[g for _, g in early['gaps']]}")
    page.evaluate("() => { window.rtcam.longestGapMs = 0; window.rtcam.gaps = []; }")
    before = h.snapshot(page)
    t0 = time.monotonic()
    time.sleep(WATCH_S)
    t1 = time.monotonic()
    after = h.snapshot(page, latencies=True)
    fps, text = describe(before, after, t1 - t0)
    print(f"5 % loss each way, +10 ms, from the copies on: {text}; {relay_text(relay)}; "
          f"rtcam sent {relay.down.kbps_offered(t0, t1):.0f} kbit/s")
    assert relay.down.lost > 100 or LOSS < 0.05, "the link did lose packets"
    assert after["longestGapMs"] <= 200, text
    assert fps >= 25, text


def test_an_800_kbit_link_settles_under_it_and_keeps_the_frame_rate(relayed, open_page):
    srv, relay = relayed(Direction(kbps=800, delay_s=0.010), Direction(delay_s=0.010), BITRATE)
    page = open_page(srv.url)
    t_live, _, before, after, t0, t1 = watch_from_live(page, 5.0)
    fps, text = describe(before, after, t1 - t0)
    sent = relay.down.kbps_offered(t0, t1)
    print(f"\n800 kbit/s link: rtcam sent {sent:.0f} kbit/s from 5 s on (per second from live: "
          f"{per_second(relay.down.kbps_offered, t_live, t1)}); {text}; {relay_text(relay)}")
    assert sent < 800, f"rtcam sent {sent:.0f} kbit/s into an 800 kbit/s link"
    assert fps >= 25, text


def watch_from_live(page, settle_s: float):
    """Live (the first frame on screen), its gaps counted from there, `settle_s` more, then watching until
    WATCH_S from live: (t_live, at live, before, after, t0, t1), times monotonic."""
    go_live(page)
    t_live = time.monotonic()
    page.evaluate("() => { window.rtcam.longestGapMs = 0; window.rtcam.gaps = []; }")
    first = h.snapshot(page)
    time.sleep(settle_s)
    before = h.snapshot(page)
    t0 = time.monotonic()
    time.sleep(WATCH_S - settle_s)
    t1 = time.monotonic()
    return t_live, first, before, h.snapshot(page, latencies=True), t0, t1


def per_second(rate, t_live: float, t1: float) -> list[int]:
    return [round(rate(t_live + i, t_live + i + 1)) for i in range(int(t1 - t_live))]


@pytest.mark.xfail(strict=False, reason="issue #20, open: the first 720p keyframe (14 KB, openh264's least at "
                   "720p) overfills the 10 KB queue and the estimate crashes in the first second (a still of "
                   "about 200 ms near the start); later stills are rarer since frames are bounded: 539-613 kbit/s "
                   "delivered")
def test_an_800_kbit_link_at_720p_never_freezes_from_the_start(relayed, open_page):
    # 100 ms of queue at 800 kbit/s, as in a home router; rtcam's estimate starts low, its first
    # keyframe is the probe, and the link is paced once measured.
    down = Direction(kbps=800, buffer_bytes=10_000, delay_s=0.010)
    srv, relay = relayed(down, Direction(delay_s=0.010), BITRATE, size="1280x720")
    page = open_page(srv.url)
    t_live, first, before, after, t0, t1 = watch_from_live(page, 10.0)
    fps, text = describe(before, after, t1 - t0)
    whole_fps, _ = describe(first, after, t1 - t_live)
    delivered = relay.down.kbps_delivered(t0, t1)
    print(f"\n800 kbit/s, 100 ms queue, 1280x720: {delivered:.0f} kbit/s delivered from 10 s on (per second "
          f"from the first frame: {per_second(relay.down.kbps_delivered, t_live, t1)}); {whole_fps:.1f} fps over "
          f"the whole call; {text}; {relay_text(relay)}")
    live = first["firstFrameTime"] / 1000  # wall time, s
    print(f"  from the first frame (s): overflows {overflow_bursts(relay.down, live)}; "
          f"gaps {[(round(at / 1000 - live, 2), g) for at, g in after['gaps']]}; the link "
          f"delivered frames over 100 ms apart at {frame_gaps(relay.down, live)}")
    assert after["longestGapMs"] <= 200, text
    assert delivered >= 600, f"{delivered:.0f} kbit/s delivered from 10 s on"
    assert fps >= 25, text
