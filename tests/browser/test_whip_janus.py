"""rtcam publishes by WHIP into a real SFU (Debian's Janus VideoRoom behind meetecho's
simple-whip-server), and a real Chromium watches it through Janus.

For each codec (H.264, VP8), one rtcam (`--source test --size 1280x720 --whip ... --whip-codec X`)
publishes into room 1234 while:
  * a Chromium page subscribes through Janus (tests/browser/janus/subscriber.html, Debian's
    janus.js over Janus's HTTP API) and must show >= 25 fps of 1280x720 frames, counted by the
    timestamp stripe the test scene stamps on every frame (stamp-to-display latency from it too);
  * at the same time rtcam's own page (logged in, Call) still plays in another Chromium page;
  * Janus is stopped and started again: the publish must be back (/api/status whip state "live",
    and the subscriber decoding frames again) within RECOVER_S of Janus answering again;
  * rtcam gets SIGTERM: the endpoint must be free at once (simple-whip-server lists no publisher
    on it; otherwise every new POST would get 403 "Endpoint ID already in use" for minutes).

Everything runs in one network namespace (rtcam_harness.NetNs, janus_support.py says why): Janus
gathers on the veth address 198.51.100.1, rtcam advertises 198.51.100.2, Chromium runs inside
too. One Janus, one simple-whip-server and one Chromium serve both codecs (they take seconds to
start, and the CI budget is tight); rtcam is started afresh for each.

If rtcam's publish itself fails, the failure message carries rtcam's WHIP log lines, Janus's log
and simple-whip-server's log (which has the offer rtcam posted).

Run from the repository root as root (after `cargo build --bin rtcam` and `scripts/setup.sh
--test`, which runs scripts/janus-setup.sh):

    RTCAM_BIN=$PWD/target/debug/rtcam .venv/bin/python -m pytest -q -s tests/browser/test_whip_janus.py

Environment: RTCAM_BIN (default target/debug/rtcam), RTCAM_CHROMIUM (default /usr/bin/chromium),
RTCAM_JANUS (default /usr/bin/janus), RTCAM_BROWSER_TEST=skip to skip.
"""

from __future__ import annotations

import json
import os
import statistics
import time

import pytest

if os.environ.get("RTCAM_BROWSER_TEST") == "skip":
    pytest.skip("RTCAM_BROWSER_TEST=skip", allow_module_level=True)

from playwright.sync_api import sync_playwright  # noqa: E402

import janus_support as js  # noqa: E402
import rtcam_harness as h  # noqa: E402

WINDOW_S = 5.0
MIN_FPS = 25.0
LIVE_TIMEOUT_S = 20.0  # rtcam start until the subscriber shows frames
RECOVER_S = 10.0  # Janus answering again until the publish is live again
MAX_P50_MS = 500.0
TOKEN = "rtcam-whip-test-token"
MIME = {"h264": "video/H264", "vp8": "video/VP8"}

SUB_SNAPSHOT_JS = """(withStamps) => {
  const s = window.sub;
  if (!s) return null;
  const out = {};
  for (const [k, v] of Object.entries(s)) {
    if (k === 'stamps' && !withStamps) continue;
    out[k] = Array.isArray(v) ? v.slice() : v;
  }
  return out;
}"""


# ------------------------------------------------------------------ fixtures (one SFU for both codecs)


@pytest.fixture(scope="module")
def sfu_ns():
    """The namespace Janus, simple-whip-server, rtcam and Chromium share (root only)."""
    if os.geteuid() != 0:
        pytest.fail("the WHIP/Janus test makes a network namespace with a veth pair: run it as root (CI does)")
    ns = h.NetNs().start()
    yield ns
    ns.stop()


@pytest.fixture(scope="module")
def sfu(sfu_ns, tmp_path_factory):
    js.check_installed()
    t = time.monotonic()
    s = js.JanusSfu(sfu_ns, tmp_path_factory.mktemp("janus"), TOKEN).start()
    print(f"\nJanus + simple-whip-server up in {time.monotonic() - t:.1f} s; endpoint {s.endpoint_url}")
    yield s
    s.stop()


def network_changed_retry(action, attempts: int = 5):
    """Runs a navigating `action`; repeats it when Chromium aborts the navigation with
    net::ERR_NETWORK_CHANGED. A freshly started Chromium in this namespace did that once on its
    first navigation (its network-change notifier settling after start): nothing of rtcam's."""
    for attempt in range(attempts):
        try:
            return action()
        except Exception as e:
            if "ERR_NETWORK_CHANGED" not in str(e) or attempt == attempts - 1:
                raise
            print(f"\n(Chromium: {str(e).splitlines()[0]}; navigating again)")
            time.sleep(0.5)


def _open_page(page, rtcam, console: list[str], attempts: int = 3):
    """Logs in to rtcam's page and waits for it to be ready to call. A fresh Chromium in the
    namespace once failed one of the page's own requests (not the navigation) with
    net::ERR_NETWORK_CHANGED, and the page never got ready: then the page is opened again."""
    for attempt in range(attempts):
        seen = len(console)
        network_changed_retry(lambda: h.login(page, rtcam.url, rtcam.password))
        try:
            return h.wait_state(page, "idle", 10_000)
        except Exception:
            changed = any("ERR_NETWORK_CHANGED" in line for line in console[seen:])
            if not changed or attempt == attempts - 1:
                raise
            print("\n(Chromium: a request of the page failed with ERR_NETWORK_CHANGED; opening it again)")
            time.sleep(0.5)


@pytest.fixture(scope="module")
def browser(sfu_ns, sfu, tmp_path_factory):
    """One Chromium inside the namespace for every page of the module."""
    if not os.path.exists(h.CHROMIUM):
        pytest.fail(f"{h.CHROMIUM} is missing: apt-get install -y chromium (or set RTCAM_CHROMIUM)")
    with sync_playwright() as p:
        b = h.launch_chromium(p, tmp_path_factory.mktemp("chromium"), prefix=sfu_ns.prefix)
        yield b
        b.close()


@pytest.fixture
def token_file(tmp_path):
    f = tmp_path / "whip-token"
    f.write_text(TOKEN + "\n")
    f.chmod(0o600)  # rtcam refuses a token file others can read
    return f


def _page(browser, lines: list[str], name: str):
    """A page in a context of its own (two pages: the subscriber and rtcam's own)."""
    ctx = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 860})
    page = ctx.new_page()
    page.on("console", lambda m: lines.append(f"[{name} {m.type}] {m.text}"))
    page.on("pageerror", lambda e: lines.append(f"[{name} pageerror] {e}"))
    return ctx, page


# ------------------------------------------------------------------ measuring


def sub_snapshot(page, stamps: bool = False) -> dict:
    return page.evaluate(SUB_SNAPSHOT_JS, stamps)


def sub_window(before: dict, after: dict) -> dict:
    """The subscriber's figures between two snapshots (taken with their wall times).

    fps: distinct stripe stamps among the frames the decoder put out in the window (read from
    the track itself, every frame: what Janus delivered, each frame checked by markers and CRC).
    display_fps: the same among the frames requestVideoFrameCallback saw shown; on this 2-core
    machine, with two pages playing 720p, Chromium's display coalesces some frames (rtcam's own
    page showed 23-26 stamps a second for 30 decoded), so the display count is reported, not held
    to 25. Latency: stamp to expected display time of the shown frames, as web/app.js measures."""
    t0, t1 = before["_wall"], after["_wall"]
    dt = (t1 - t0) / 1000
    decoded = sorted({s for w, s in after["decodedStamps"] if t0 <= w <= t1})
    shown = [(w, s) for w, s in after["stamps"] if t0 <= w <= t1]
    gaps = [b - a for a, b in zip(decoded, decoded[1:])]
    lat = [w - s for w, s in shown]
    same = before["subscriptions"] == after["subscriptions"]
    return {
        "seconds": dt,
        "fps": len(decoded) / dt if dt > 0 else 0.0,
        "stamps": len(decoded),
        "decoded_invalid": after["decodedInvalid"] - before["decodedInvalid"],
        "reader": after["decodedReader"],
        "display_fps": len({s for _, s in shown}) / dt if dt > 0 else 0.0,
        "stats_fps": (after["framesDecoded"] - before["framesDecoded"]) / dt if same and dt > 0 else None,
        "stripe_invalid": after["stripeInvalid"] - before["stripeInvalid"],
        "p50": statistics.median(lat) if lat else None,
        "p95": h.percentile(lat, 95),
        "min": min(lat) if lat else None,
        "width": after["width"], "height": after["height"], "mime": after["mimeType"],
        "fmtp": after["sdpFmtpLine"], "method": after["stripeMethod"], "margin": after["stripeMargin"],
        "jitter_ms": after["jitterBufferMs"], "nacks": after["nackCount"], "plis": after["pliCount"],
        "lost": after["packetsLost"], "same_subscription": same,
        "dropped": after["framesDropped"] - before["framesDropped"],
        "gaps_over_50ms": sum(1 for g in gaps if g > 50), "max_gap": max(gaps) if gaps else None,
    }


def timed_snapshot(page, stamps: bool = False) -> dict:
    s = sub_snapshot(page, stamps)
    s["_wall"] = page.evaluate("Date.now()")
    return s


def page_status(page) -> dict:
    """/api/status with rtcam's page's own session."""
    r = page.evaluate("""async () => {
        const r = await fetch('/api/status', { cache: 'no-store', credentials: 'same-origin' });
        return { httpStatus: r.status, body: r.ok ? await r.json() : await r.text() };
    }""")
    assert r["httpStatus"] == 200, f"/api/status: {r}"
    return r["body"]


def whip_entry(status: dict) -> dict:
    assert "whip" in status, f"/api/status has no 'whip' list: {status}"
    assert len(status["whip"]) == 1, f"one --whip target, /api/status lists {status['whip']}"
    return status["whip"][0]


def local_window(page, seconds: float) -> dict:
    """rtcam's own page over one getStats window (its window.rtcam figures), as test_firefox.py."""
    h.wait_stats_after(page, None)
    before = h.snapshot(page)
    h.wait_stats_after(page, before["statsTime"] + seconds * 1000, timeout_ms=seconds * 1000 + 10_000)
    after = h.snapshot(page, latencies=True)
    dt = (after["statsTime"] - before["statsTime"]) / 1000
    lat = h.window_latencies(before, after)
    return {
        "fps": (after["framesDecoded"] - before["framesDecoded"]) / dt if dt > 0 else 0.0,
        "width": after["width"], "height": after["height"], "codec": after["codec"], "state": after["state"],
        "stripe_invalid": after["stripeInvalid"] - before["stripeInvalid"],
        "stripe_fps": (after["stripeFrames"] - before["stripeFrames"]) / dt if dt > 0 else 0.0,
        "p50": statistics.median(lat) if lat else None, "p95": h.percentile(lat, 95),
    }


def fmt_ms(v) -> str:
    return "-" if v is None else f"{v:.1f}"


# ------------------------------------------------------------------ the test


@pytest.mark.parametrize("codec", ["h264", "vp8"])
def test_whip_publish_through_janus(codec, sfu_ns, sfu, browser, token_file, tmp_path):
    t_test = time.monotonic()
    assert not sfu.endpoint_in_use(), f"endpoint still in use before the test: {sfu.endpoint()}"
    console: list[str] = []
    rtcam = h.Rtcam(h.rtcam_binary("target/debug/rtcam"), size="1280x720", fps=30,
                    workdir=str(tmp_path / "rtcam"), netns=sfu_ns,
                    extra=["--whip", sfu.endpoint_url, "--whip-token-file", str(token_file),
                           "--whip-codec", codec])
    contexts = []

    def diagnostics() -> str:
        whip_lines = [ln for ln in rtcam.log().splitlines() if "WHIP" in ln]
        return ("\n--- rtcam log lines with WHIP ---\n" + "\n".join(whip_lines[-40:])
                + "\n--- rtcam log, last lines ---\n" + rtcam.log_tail(25)
                + "\n" + sfu.janus_log_tail(50) + "\n" + sfu.whip_log_tail(80)
                + "\n--- Chromium console ---\n" + "\n".join(console[-30:]))

    try:
        rtcam.start(timeout=30)
        t_start = time.monotonic()

        # rtcam's own page: log in, Call (the page plays while the publish runs).
        ctx, local = _page(browser, console, "rtcam")
        contexts.append(ctx)
        _open_page(local, rtcam, console)
        local.click("#call")
        h.wait_state(local, "live", 30_000)

        # The subscriber through Janus.
        ctx, sub = _page(browser, console, "janus")
        contexts.append(ctx)
        network_changed_retry(lambda: sub.goto(sfu.page_url))
        sub.wait_for_function("() => window.sub && window.sub.stripeFrames > 5",
                              timeout=LIVE_TIMEOUT_S * 1000)
        t_live = time.monotonic() - t_start
        status = page_status(local)
        entry = whip_entry(status)
        print(f"\n[{codec}] subscriber showing frames {t_live:.1f} s after rtcam started; "
              f"whip {json.dumps(entry)}")
        assert entry["state"] == "live", entry
        assert entry["codec"].lower().replace(".", "") == codec, entry

        # One window measured on both pages at once.
        before = timed_snapshot(sub)
        loc = local_window(local, WINDOW_S)
        after = timed_snapshot(sub, stamps=True)
        w = sub_window(before, after)
        status = page_status(local)
        entry = whip_entry(status)
        print(f"[{codec}] through Janus: {w['width']}x{w['height']} {w['mime']} ({w['fmtp']}), "
              f"{w['fps']:.1f} fps by stripe ({w['stamps']} stamps decoded in {w['seconds']:.2f} s, "
              f"{w['reader']}; getStats {fmt_ms(w['stats_fps'])} fps; shown {w['display_fps']:.1f} fps), "
              f"latency p50 {fmt_ms(w['p50'])} / p95 {fmt_ms(w['p95'])} ms (min {fmt_ms(w['min'])}), "
              f"stripe bad {w['decoded_invalid']} decoded / {w['stripe_invalid']} shown (margin {w['margin']}, "
              f"{w['method']}), jitter buffer {fmt_ms(w['jitter_ms'])} ms, nacks {w['nacks']} plis {w['plis']} "
              f"lost {w['lost']} dropped {w['dropped']}, stamp gaps > 50 ms {w['gaps_over_50ms']} "
              f"(longest {w['max_gap']} ms)")
        print(f"[{codec}] rtcam's page meanwhile: {loc['width']}x{loc['height']} {loc['codec']}, "
              f"{loc['fps']:.1f} fps ({loc['stripe_fps']:.1f} shown by stripe), latency p50 {fmt_ms(loc['p50'])} / "
              f"p95 {fmt_ms(loc['p95'])} ms, stripe bad {loc['stripe_invalid']}")
        print(f"[{codec}] whip {json.dumps(entry)}; encoders {json.dumps(status.get('encoders'))}")

        assert (w["width"], w["height"]) == (1280, 720), w
        assert w["mime"] == MIME[codec], f"the subscriber decodes {w['mime']}, rtcam publishes {codec}"
        assert w["reader"] == "track-processor", f"the subscriber could not read decoded frames: {w}"
        assert w["fps"] >= MIN_FPS, f"the subscriber decoded {w['fps']:.1f} fps (stripe stamps) through Janus: {w}"
        assert w["decoded_invalid"] == 0 and w["stripe_invalid"] == 0, \
            f"frames with an invalid stripe through Janus: {w['decoded_invalid']} decoded, {w['stripe_invalid']} shown"
        assert w["p50"] is not None and 0 < w["p50"] < MAX_P50_MS, w
        # expectedDisplayTime is the compositor's estimate: seen up to 10 ms before the stamp here
        # (headless Chromium, 60 Hz begin-frames); more than one 60 Hz frame is a clock problem.
        assert w["min"] > -17, f"a stamp from the future: {w['min']} ms"
        assert loc["state"] == "live" and (loc["width"], loc["height"]) == (1280, 720), loc
        assert loc["fps"] >= MIN_FPS, f"rtcam's own page played {loc['fps']:.1f} fps while publishing"
        assert loc["stripe_invalid"] == 0, loc
        assert entry["state"] == "live" and entry["bytes_sent"] > 0, entry
        # One encode per codec: the publish shares the page's H.264 encoder (h264), or adds the
        # one VP8 encoder (vp8; Chromium's page takes H.264).
        codecs = [str(e.get("codec", "")).upper().replace(".", "") for e in status.get("encoders", [])]
        assert codecs.count("H264") == 1 and codecs.count(codec.upper()) == 1, f"encoders {status.get('encoders')}"

        # Janus goes away and comes back: the publish must come back by itself.
        subs_before = sub.evaluate("window.sub.subscriptions")
        stop_s = sfu.stop_janus()
        t_down = time.monotonic()
        sfu.start_janus()
        t_up = time.monotonic()
        up_wall = sub.evaluate("Date.now()")
        down_s = t_up - t_down
        back_live = back_frames = None
        states = []
        deadline = t_up + RECOVER_S + 10
        while time.monotonic() < deadline and (back_live is None or back_frames is None):
            e = whip_entry(page_status(local))
            if not states or states[-1][1] != e["state"]:
                states.append((round(time.monotonic() - t_up, 2), e["state"], e.get("last_error")))
            if back_live is None and e["state"] == "live":
                back_live = time.monotonic() - t_up
            s = sub_snapshot(sub)
            if (back_frames is None and s["subscriptions"] > subs_before and s["lastFrameWall"]
                    and s["lastFrameWall"] > up_wall and s["stripeFrames"] > 0):
                back_frames = time.monotonic() - t_up
            time.sleep(0.2)
        print(f"[{codec}] Janus stopped in {stop_s:.1f} s, answering again {down_s:.1f} s later; whip live again "
              f"{fmt_ms(back_live)} s and the subscriber showing frames {fmt_ms(back_frames)} s after Janus was up; "
              f"whip states (s after up, state, last_error): {states}")
        assert back_live is not None and back_live <= RECOVER_S, \
            f"the publish was not live within {RECOVER_S:.0f} s of Janus being up: {states}"
        assert back_frames is not None and back_frames <= RECOVER_S, \
            f"the subscriber saw no frames within {RECOVER_S:.0f} s of Janus being up (whip live after {back_live} s)"

        # SIGTERM: rtcam hangs up; the endpoint is free at once.
        assert sfu.endpoint_in_use(), "the endpoint should be in use while rtcam publishes"
        h.hang_up_quietly(local)
        t_term = time.monotonic()
        code = rtcam.stop()
        t_stopped = time.monotonic()
        in_use = sfu.endpoint_in_use()
        participants = sfu.participants()
        print(f"[{codec}] rtcam exited {code} {t_stopped - t_term:.2f} s after SIGTERM; endpoint in use right after: "
              f"{in_use}; room participants {[(p.get('id'), p.get('publisher')) for p in participants]}; "
              f"test took {time.monotonic() - t_test:.1f} s")
        assert code == 0, f"rtcam exited with {code} on SIGTERM"
        assert not in_use, f"the endpoint is still in use after rtcam stopped: {sfu.endpoint()}"
        assert not any(p.get("publisher") for p in participants), f"a publisher is still in the room: {participants}"
    except BaseException:
        print(diagnostics())
        raise
    finally:
        for ctx in contexts:
            try:
                ctx.close()
            except Exception:
                pass
        rtcam.stop()
