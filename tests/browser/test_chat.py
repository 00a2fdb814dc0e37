"""Chat between two real Chromium pages over the `rtcam` data channel each call makes.

Two pages log in and press Call; a line typed in one shows in the other within 1 s, as text (a `<b>` in
it stays literal). Twenty lines, one each 250 ms (under the 5 a second limit), give the chat latency
between the two viewers (typed in A, on B's screen), p50 / p95, printed with -s.
"""

from __future__ import annotations

import os
import time

import pytest

if os.environ.get("RTCAM_BROWSER_TEST") == "skip":
    pytest.skip("RTCAM_BROWSER_TEST=skip", allow_module_level=True)

import rtcam_harness as h  # noqa: E402
from test_browser import browser, go_live, open_page, start_rtcam  # noqa: E402,F401  (fixtures)


def wait_chat_open(page):
    page.wait_for_function("() => window.rtcam && window.rtcam.chat && window.rtcam.chat.open", timeout=15_000)


def say(page, text):
    page.fill("#chat-text", text)
    page.press("#chat-text", "Enter")


def test_a_chat_line_shows_in_the_other_page_as_text(start_rtcam, open_page):
    srv = start_rtcam(size="640x360")
    a, b = open_page(srv.url), open_page(srv.url)
    a.fill("#chat-name", "Ann")
    a.dispatch_event("#chat-name", "change")
    for p in (a, b):
        go_live(p)
        wait_chat_open(p)
    t0 = time.time() * 1000
    say(a, "<b>hello</b> from A")
    b.wait_for_function("() => window.rtcam.chat.lines.some(l => l.text === '<b>hello</b> from A')",
                        timeout=1_000)
    line = b.locator("#chat-log li").last
    assert line.locator(".chat-line").text_content() == "<b>hello</b> from A"
    assert "&lt;b&gt;" in line.inner_html(), "rendered as text, not HTML"
    assert line.locator("b").count() == 0
    assert line.locator(".chat-from").text_content() == "Ann"
    got = b.evaluate("() => window.rtcam.chat.lines.at(-1)")
    first_ms = got["received"] - t0

    delays = []
    for i in range(20):
        sent = time.time() * 1000
        say(a, f"line {i}")
        b.wait_for_function("(t) => window.rtcam.chat.lines.some(l => l.text === t)", arg=f"line {i}",
                            timeout=1_000)
        recv = b.evaluate("(t) => window.rtcam.chat.lines.find(l => l.text === t).received", f"line {i}")
        delays.append(recv - sent)
        time.sleep(0.25)
    p50, p95 = h.percentile(delays, 50), h.percentile(delays, 95)
    print(f"\nchat A -> B: first line {first_ms:.0f} ms; 20 lines p50 {p50:.0f} ms, p95 {p95:.0f} ms "
          f"(typed in A until on B's page; includes Playwright's fill and keypress)")
    # The sender sees its own line too, and nobody got an error.
    assert a.evaluate("() => window.rtcam.chat.lines.length") == 21
    assert b.evaluate("() => window.rtcam.chat.errors.length") == 0
    assert p95 < 1000

    # The link readout under the video, from the telemetry pushed once a second.
    b.wait_for_function("() => window.rtcam.chat.telemetry !== null", timeout=3_000)
    t = b.evaluate("() => window.rtcam.chat.telemetry")
    assert t["viewers"] == 2 and t["fps"] > 20, t
    assert "fps" in b.text_content("#link-readout")
