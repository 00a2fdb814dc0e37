"""Recordings in the page, in real Chromium and Firefox: rtcam records continuous 2 s segments of the test scene; the page's
Recordings panel lists the clips with their thumbnails' place and sizes; Play opens a <video> that plays the clip
from the device (byte ranges), and the frame it shows carries a readable timestamp stripe (so the picture is the
recorded one, decoded); Delete removes the clip from the device and the list.
"""

from __future__ import annotations

import os
import time

import pytest

if os.environ.get("RTCAM_BROWSER_TEST") == "skip":
    pytest.skip("RTCAM_BROWSER_TEST=skip", allow_module_level=True)

import rtcam_harness as h  # noqa: E402
from test_browser import browser, open_page, start_rtcam  # noqa: E402,F401  (fixtures)

CLIP_READY = """() => {
  const r = window.rtcam && window.rtcam.recordings;
  return !!(r && r.items && r.items.some((i) => i.kind === 'clip' && i.play && !i.recording));
}"""

STRIPE_OF_VIDEO = """async () => {
  const { decodeStripe, lumaFromRGBA } = await import('/stripe.js');
  const v = document.querySelector('#rec-player video');
  const c = document.createElement('canvas');
  c.width = v.videoWidth;
  c.height = v.videoHeight;
  const g = c.getContext('2d');
  g.drawImage(v, 0, 0);
  const img = g.getImageData(0, 0, c.width, c.height);
  const d = decodeStripe(lumaFromRGBA(img.data, c.width, c.height, c.width * 4), c.width, c.height);
  return { w: c.width, h: c.height, stamp: d ? d.stamp : null, t: v.currentTime };
}"""


def test_a_recorded_clip_plays_in_the_page_and_can_be_deleted(start_rtcam, open_page, tmp_path):
    rec_dir = tmp_path / "clips"
    rec_dir.mkdir()
    srv = start_rtcam(extra=["--record", "continuous", "--record-segment", "2", "--record-dir", str(rec_dir)],
                      size="640x360")
    page = open_page(srv.url)
    # The panel refreshes every 10 s; clips close every 2 s or so.
    page.wait_for_function(CLIP_READY, timeout=30_000)
    page.wait_for_selector("#recordings .rec-play", timeout=15_000)
    state = page.text_content("#recordings")
    assert "continuous" in state.lower() or "recording" in state.lower(), state

    page.click("#recordings .rec-play")
    page.wait_for_function(
        "() => { const v = document.querySelector('#rec-player video');"
        " return v && v.readyState >= 2 && v.currentTime > 0.3 && !v.error; }",
        timeout=15_000,
    )
    seen = page.evaluate(STRIPE_OF_VIDEO)
    print(f"\n[recordings] the clip plays in Chromium: {seen}")
    assert (seen["w"], seen["h"]) == (640, 360), seen
    assert seen["stamp"], f"no timestamp stripe on the played frame: {seen}"
    errors = [line for line in page.console_lines if "[pageerror]" in line]
    assert not errors, errors

    # Delete the clip that played (the page asks to confirm).
    played = page.evaluate("() => window.rtcam.recordings.playing")
    page.on("dialog", lambda d: d.accept())
    item = page.locator(f"#recordings li[data-key='{played}']")
    item.locator(".rec-delete, button:has-text('Delete')").first.click()
    clip_id = played.split(":", 1)[-1]
    page.wait_for_function(
        "(id) => !window.rtcam.recordings.items.some((i) => i.key && i.key.endsWith(id))",
        arg=clip_id, timeout=15_000)
    assert not any(p.name.startswith(clip_id) for p in rec_dir.iterdir()), list(rec_dir.iterdir())


PLAY_IN_A_VIDEO = """async () => {
  const { decodeStripe, lumaFromRGBA } = await import('/stripe.js');
  const list = await (await fetch('/api/recordings', { credentials: 'same-origin' })).json();
  const clip = list.clips.find((c) => !c.recording);
  if (!clip) return { error: 'no whole clip yet', list };
  const v = document.createElement('video');
  v.muted = true;
  v.src = `/api/recordings/${clip.id}.mp4`;
  document.body.append(v);
  await v.play();
  const t0 = Date.now();
  while (v.currentTime < 0.5 && Date.now() - t0 < 10000 && !v.error) await new Promise((r) => setTimeout(r, 50));
  v.pause();
  const c = document.createElement('canvas');
  c.width = v.videoWidth;
  c.height = v.videoHeight;
  const g = c.getContext('2d');
  g.drawImage(v, 0, 0);
  const img = g.getImageData(0, 0, c.width, c.height);
  const d = decodeStripe(lumaFromRGBA(img.data, c.width, c.height, c.width * 4), c.width, c.height);
  return { id: clip.id, w: c.width, h: c.height, t: v.currentTime, error: v.error && v.error.message,
           stamp: d ? d.stamp : null };
}"""


def test_a_recorded_clip_plays_in_firefox(netns, tmp_path):
    """Firefox (Debian's firefox-esr, which plays H.264 in <video> through the system's libavcodec) plays a
    clip from the device and shows its recorded picture. Driven by watch.mjs, inside a network namespace as
    every Firefox test (shared/notes/firefox-testing.md); it joins the call first, as watch.mjs does."""
    h.FirefoxWatcher.check_installed()
    rec_dir = tmp_path / "clips"
    rec_dir.mkdir()
    srv = h.Rtcam(h.rtcam_binary("target/debug/rtcam"), size="640x360", fps=30, workdir=str(tmp_path / "rtcam"),
                  netns=netns, extra=["--record", "continuous", "--record-segment", "2",
                                      "--record-dir", str(rec_dir)])
    srv.start(timeout=30)
    fx = h.FirefoxWatcher(srv.url, srv.password, seconds=2, prefix=netns.prefix, log_path=tmp_path / "firefox.log")
    try:
        fx.start()
        fx.wait_for("launched", timeout=30)
        fx.wait_for("idle", timeout=20)
        fx.wait_for("live", timeout=30)
        seen = None
        for _ in range(20):
            seen = fx.evaluate(PLAY_IN_A_VIDEO, timeout=30)
            if seen.get("error") != "no whole clip yet":
                break
            time.sleep(0.5)
        print(f"\n[recordings] the clip plays in Firefox: {seen}")
        assert not seen.get("error"), seen
        assert (seen["w"], seen["h"]) == (640, 360), seen
        assert seen["t"] >= 0.5, seen
        assert seen["stamp"], f"no timestamp stripe on the played frame: {seen}"
    finally:
        fx.close_and_report()
        code = srv.stop()
        print(f"\n--- rtcam log (exit {code}), last lines ---\n{srv.log_tail(30)}")
