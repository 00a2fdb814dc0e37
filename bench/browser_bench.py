#!/usr/bin/env python3
"""Browser benchmark: rtcam (test source) on loopback, watched by headless Chromium pages.

Prints numbers, asserts nothing. Phase 1: one viewer (click-to-first-frame, stamp-to-display
latency, fps, rtcam CPU and memory). Phase 2: N viewers at once, the same figures.

    python3 bench/browser_bench.py [--seconds 10] [--size 1280x720] [--fps 30] [--viewers 10]

RTCAM_BIN (default target/release/rtcam), RTCAM_CHROMIUM (default /usr/bin/chromium).
rtcam gets a known password (rtcam passwd) and every viewer logs in through the login form
before the clock starts; all viewers come from 127.0.0.1, so the per-address limit is raised.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "browser"))

import rtcam_harness as h  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402


def fmt(v, unit="", digits=0):
    if v is None:
        return "–"
    return f"{v:.{digits}f}{unit}"


class Sampler:
    """rtcam's CPU (utime+stime) and memory over a window, plus the whole machine's load."""

    def __init__(self, pid: int):
        self.pid = pid

    def start(self):
        self.t0 = time.monotonic()
        self.cpu0 = h.proc_cpu_seconds(self.pid)
        self.host0 = h.host_cpu_times()
        self.rss_max = 0
        self.sample()

    def sample(self):
        m = h.proc_mem_kib(self.pid)
        self.rss_max = max(self.rss_max, m.get("VmRSS", 0))

    def stop(self) -> dict:
        self.sample()
        elapsed = time.monotonic() - self.t0
        cpu = h.proc_cpu_seconds(self.pid) - self.cpu0
        busy1, total1 = h.host_cpu_times()
        busy = (busy1 - self.host0[0]) / max(1, total1 - self.host0[1])
        mem = h.proc_mem_kib(self.pid)
        return {
            "cpu_pct": 100 * cpu / elapsed,
            "rss_max_mib": self.rss_max / 1024,
            "hwm_mib": mem.get("VmHWM", 0) / 1024,
            "host_busy_pct": 100 * busy,
            "cores": os.cpu_count(),
        }


def open_viewers(browser, url: str, n: int, password: str):
    """n pages, each in its own context: pages sharing a context are tabs of one window, and
    only the front tab renders (the others get no requestVideoFrameCallback, so no latency)."""
    ctxs, pages = [], []
    for _ in range(n):
        ctx = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 860})
        h.maybe_serve_web_from_disk(ctx)
        page = ctx.new_page()
        h.login(page, url, password)
        page.wait_for_function("() => window.rtcam && window.rtcam.state === 'idle'", timeout=10_000)
        ctxs.append(ctx)
        pages.append(page)
    return ctxs, pages


def call_all(pages, timeout_ms: float):
    for p in pages:
        p.click("#call")
    firsts, phases = [], []
    for p in pages:
        try:
            h.wait_state(p, "live", timeout_ms)
        except Exception:
            s = h.snapshot(p)
            print(f"  a viewer did not go live: state {s['state']!r} {s.get('reason', '')!r}", file=sys.stderr)
            continue
        snap = h.snapshot(p)
        firsts.append(snap["clickToFirstFrameMs"])
        phases.append(snap.get("phases") or {})
    return firsts, phases


STEPS = ("ws", "offer", "answer", "ice", "dtls", "track", "frame")


def steps_line(steps: dict) -> str:
    """The page's rtcam.phases in call order: signaling open, offer sent, answer, ICE, DTLS,
    video track, first frame."""
    return ", ".join(f"{k} {steps[k]:.0f}" for k in STEPS if k in steps)


def measure(pages, sampler: Sampler, seconds: float) -> dict:
    for p in pages:
        h.wait_stats_after(p, None)
    before = [h.snapshot(p) for p in pages]
    sampler.start()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(min(0.5, max(0.0, end - time.monotonic())))
        sampler.sample()
    res = sampler.stop()
    # A getStats sample taken after the window closed, for every page.
    after = []
    for p, b in zip(pages, before):
        h.wait_stats_after(p, b["statsTime"] + seconds * 1000)
        after.append(h.snapshot(p, latencies=True))
    fps, lat, ok, bad, skipped, dropped = [], [], 0, 0, 0, 0
    for b, a in zip(before, after):
        dt = (a["statsTime"] - b["statsTime"]) / 1000
        fps.append((a["framesDecoded"] - b["framesDecoded"]) / dt if dt > 0 else 0.0)
        lat += h.window_latencies(b, a)
        ok += a["stripeFrames"] - b["stripeFrames"]
        bad += a["stripeInvalid"] - b["stripeInvalid"]
        skipped += a["stripeSkipped"] - b["stripeSkipped"]
        dropped += a["framesDropped"] - b["framesDropped"]
    res.update({
        "fps_min": min(fps) if fps else None,
        "fps_avg": sum(fps) / len(fps) if fps else None,
        "lat_p50": h.percentile(lat, 50),
        "lat_p95": h.percentile(lat, 95),
        "lat_max": max(lat) if lat else None,
        "stamps": len(lat),
        "stripe_ok": ok,
        "stripe_bad": bad,
        "stripe_skipped": skipped,
        "frames": sum(a["framesDecoded"] - b["framesDecoded"] for b, a in zip(before, after)),
        "dropped": dropped,
        "codec": after[0]["codec"] if after else "",
        "res": f"{after[0]['width']}x{after[0]['height']}" if after else "",
        "live": sum(1 for a in after if a["state"] == "live"),
    })
    return res


def hang_up(pages):
    for p in pages:
        h.hang_up_quietly(p)
    for p in pages:
        try:
            h.wait_state(p, "ended", 5_000)
        except Exception:
            pass


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0, help="sampling window per phase (default 10)")
    ap.add_argument("--size", default="1280x720", help="picture size WxH (default 1280x720)")
    ap.add_argument("--fps", type=int, default=30, help="frame rate (default 30)")
    ap.add_argument("--viewers", type=int, default=10, help="viewers in phase 2 (default 10; 0 skips it)")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds to wait after going live (default 2)")
    ap.add_argument("--log", default=None, help="copy rtcam's log here when done (RUST_LOG sets what it holds)")
    ap.add_argument("--bitrate", type=int, default=None, help="rtcam --bitrate in kbit/s (default: rtcam's)")
    ap.add_argument("--audio-in", default=None,
                    help="rtcam --audio-in (e.g. test, or off): run twice, off and test, to see what audio "
                         "costs the video's latency (bench/audio.sh does)")
    args = ap.parse_args()

    binary = h.rtcam_binary("target/release/rtcam")
    cap = str(max(16, args.viewers + 1))
    extra = ["--max-viewers", cap, "--max-viewers-per-address", cap]
    if args.bitrate:
        extra += ["--bitrate", str(args.bitrate)]
    if args.audio_in:
        extra += ["--audio-in", args.audio_in, "--audio-out", "off"]
    columns = []
    with tempfile.TemporaryDirectory(prefix="rtcam-bench-") as tmp:
        srv = h.Rtcam(binary, size=args.size, fps=args.fps, extra=extra, workdir=tmp)
        srv.start(timeout=30, cold=True)
        try:
            with sync_playwright() as pw:
                browser = h.launch_chromium(pw, tmp)
                try:
                    idle = h.proc_mem_kib(srv.pid)
                    phases = [1] + ([args.viewers] if args.viewers > 0 else [])
                    for n in phases:
                        print(f"phase: {n} viewer(s)...", file=sys.stderr)
                        ctxs, pages = open_viewers(browser, srv.url, n, srv.password)
                        t_call = time.monotonic()
                        firsts, steps = call_all(pages, 20_000 + 2_000 * n)
                        all_live = time.monotonic() - t_call
                        time.sleep(args.settle)
                        r = measure(pages, Sampler(srv.pid), args.seconds)
                        r["n"] = n
                        r["first_avg"] = sum(firsts) / len(firsts) if firsts else None
                        r["first_max"] = max(firsts) if firsts else None
                        r["all_live_s"] = all_live
                        r["steps"] = steps
                        columns.append(r)
                        hang_up(pages)
                        for ctx in ctxs:
                            ctx.close()
                        time.sleep(1.0)
                finally:
                    browser.close()
        finally:
            srv.stop()
            if args.log:
                shutil.copy(srv.log_path, args.log)

    print()
    print(f"rtcam browser bench: test source {args.size}@{args.fps}, audio-in {args.audio_in or 'default'}, "
          f"{args.seconds:g} s windows, "
          f"{binary}, Chromium {h.CHROMIUM}, {os.cpu_count()} cores")
    print(f"rtcam before any viewer: VmRSS {idle.get('VmRSS', 0) / 1024:.1f} MiB")
    rows = [
        ("viewers live / asked", lambda r: f"{r['live']} / {r['n']}"),
        ("resolution, codec", lambda r: f"{r['res']} {r['codec']}"),
        ("click-to-first-frame avg", lambda r: fmt(r["first_avg"], " ms")),
        ("click-to-first-frame max", lambda r: fmt(r["first_max"], " ms")),
        ("fps per viewer min / avg", lambda r: f"{fmt(r['fps_min'], '', 1)} / {fmt(r['fps_avg'], '', 1)}"),
        ("frames dropped (all)", lambda r: str(r["dropped"])),
        ("latency p50 (stamp→display)", lambda r: fmt(r["lat_p50"], " ms", 1)),
        ("latency p95", lambda r: fmt(r["lat_p95"], " ms", 1)),
        ("latency max", lambda r: fmt(r["lat_max"], " ms", 1)),
        ("frames decoded (all viewers)", lambda r: str(r["frames"])),
        ("stamps ok / invalid / busy", lambda r: f"{r['stripe_ok']} / {r['stripe_bad']} / {r['stripe_skipped']}"),
        ("rtcam CPU (% of one core)", lambda r: fmt(r["cpu_pct"], " %", 1)),
        ("rtcam VmRSS max", lambda r: fmt(r["rss_max_mib"], " MiB", 1)),
        ("rtcam VmHWM", lambda r: fmt(r["hwm_mib"], " MiB", 1)),
        ("machine busy (all cores)", lambda r: fmt(r["host_busy_pct"], " %", 0)),
    ]
    heads = [f"{r['n']} viewer{'s' if r['n'] != 1 else ''}" for r in columns]
    w0 = max(len(name) for name, _ in rows)
    cells = [[f(r) for r in columns] for _, f in rows]
    ws = [max(len(heads[i]), *(len(c[i]) for c in cells)) for i in range(len(columns))]
    print(f"{'':<{w0}}  " + "  ".join(f"{hd:>{w}}" for hd, w in zip(heads, ws)))
    print(f"{'-' * w0}  " + "  ".join("-" * w for w in ws))
    for (name, _), c in zip(rows, cells):
        print(f"{name:<{w0}}  " + "  ".join(f"{v:>{w}}" for v, w in zip(c, ws)))
    for r in columns:
        if r["steps"]:
            print(f"call start, {r['n']} viewer(s), ms after the click (first viewer): {steps_line(r['steps'][0])}")
    print("\n(the browser decodes every viewer on the same machine: with many viewers its CPU use, "
          "not rtcam's, dominates fps and latency; see 'machine busy')")


if __name__ == "__main__":
    main()
