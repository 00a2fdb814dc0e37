"""Chat between an independent WebRTC stack and the page: aiortc (PyPI) as a WHEP player.

aiortc plays the part of a third-party WHEP player that also offers the `rtcam` data channel (README,
"Data channel"): it offers recvonly video plus the channel, gathers all its candidates, POSTs the offer to
/whep with its bearer token (self-signed TLS, not verified), takes the answer, decodes real video frames, and
chats both ways with a real Chromium page viewer:

- a line aiortc sends shows in the page within 1 s, from the token's name, as text (no HTML);
- a line typed in the page reaches aiortc within 1 s as {"type":"chat","from":<page name>,"text":...}, and a
  line said before aiortc came reaches it as history when its channel opens;
- aiortc's hello gets {"type":"error","reason":"name_fixed"} (a WHEP viewer's name is its token's) and the
  session goes on under the token's name; telemetry reaches it too;
- DELETE of the WHEP resource (its Location) ends the session: 200, aiortc's connection closes, the page's
  telemetry counts one viewer, and a second DELETE gets 404.

The latency both ways (p50 / p95 of ten lines each, one each 250 ms, under the 5 a second limit; page to
aiortc from the page's own form submit, so without Playwright's round trips) is printed with -s. aiortc runs
on its own asyncio loop in a thread (Playwright's sync API owns the main thread's). Needs aiortc
(tests/browser/requirements.txt, installed into .venv by scripts/setup.sh --test).
RTCAM_BIN (default target/debug/rtcam); RTCAM_BROWSER_TEST=skip skips it, like the other browser tests.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import urljoin

import pytest

if os.environ.get("RTCAM_BROWSER_TEST") == "skip":
    pytest.skip("RTCAM_BROWSER_TEST=skip", allow_module_level=True)

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription  # noqa: E402

import rtcam_harness as h  # noqa: E402
from test_browser import browser, go_live, open_page, start_rtcam  # noqa: E402,F401  (fixtures)
from test_chat import say, wait_chat_open  # noqa: E402

TOKEN_NAME = "aiortc-player"
PAGE_NAME = "Ann"
LINES = 10


def now_ms() -> float:
    """Wall-clock ms, the same clock as the page's Date.now()."""
    return time.time() * 1000


def create_token(srv: h.Rtcam, name: str) -> str:
    """`rtcam token create NAME` on the running rtcam's state dir; returns the token (stdout)."""
    r = subprocess.run([str(srv.binary), "token", "create", "--state-dir", str(srv.state_dir), name],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"rtcam token create exited with {r.returncode}:\n{r.stdout}{r.stderr}"
    token = r.stdout.strip()
    assert token and "\n" not in token, f"unexpected token output {r.stdout!r}"
    return token


class AiortcPlayer:
    """A WHEP player on aiortc, its asyncio loop in a thread of its own. The methods not marked async
    are called from the test's thread; every wait has a timeout."""

    def __init__(self, base_url: str, token: str):
        self.base_url = base_url
        self.token = token
        self.location: str | None = None
        self.answer_sdp: str | None = None
        self.messages: queue.Queue = queue.Queue()  # (received ms, message dict), every message in order
        self.seen: list[dict] = []                  # everything taken off the queue, for failure messages
        self.frames = 0
        self.frame_size: tuple[int, int] | None = None
        self.first_frame_ms: float | None = None
        self.track_error: BaseException | None = None
        self.pc: RTCPeerConnection | None = None
        self.dc = None
        self._tls = ssl.create_default_context()
        self._tls.check_hostname = False
        self._tls.verify_mode = ssl.CERT_NONE  # rtcam's self-signed certificate
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="aiortc", daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    # ---- HTTP (blocking; called through the loop's executor or from the test's thread)

    def http(self, method: str, url: str, body: bytes | None = None, content_type: str | None = None):
        """(status, headers, body text); non-2xx answers are returned, not raised."""
        headers = {"Authorization": f"Bearer {self.token}"}
        if content_type:
            headers["Content-Type"] = content_type
        req = urllib.request.Request(url, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, context=self._tls, timeout=10) as resp:
                return resp.status, resp.headers, resp.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read().decode(errors="replace")

    # ---- the call

    async def _connect(self) -> float:
        loop = asyncio.get_running_loop()
        # aiortc's default bundle policy (balanced), not max-bundle: rtcam's answer bundles both and lists its
        # candidates in the first m-section only (RFC 8843 allows it), and aiortc 1.16 with max-bundle keeps only
        # the last m-section's candidates for the shared transport (none), so ICE never starts a check.
        self.pc = pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.dc_open = asyncio.Event()

        @pc.on("track")
        def on_track(track):
            if track.kind == "video":
                loop.create_task(self._read_frames(track))

        pc.addTransceiver("video", direction="recvonly")
        self.dc = pc.createDataChannel("rtcam")  # before the offer, so the offer carries it

        @self.dc.on("open")
        def on_open():
            self.dc_open.set()

        @self.dc.on("message")
        def on_message(data):
            t = now_ms()
            try:
                m = json.loads(data) if isinstance(data, str) else {"type": "<binary>", "data": data}
            except ValueError:
                m = {"type": "<not json>", "data": data}
            self.messages.put((t, m))

        await pc.setLocalDescription(await pc.createOffer())  # aiortc gathers here
        while pc.iceGatheringState != "complete":
            await asyncio.sleep(0.01)
        t0 = time.monotonic()
        status, headers, body = await loop.run_in_executor(
            None, self.http, "POST", urljoin(self.base_url, "/whep"), pc.localDescription.sdp.encode(),
            "application/sdp")
        assert status == 201, f"POST /whep: {status} {body!r}"
        assert headers.get("Content-Type", "").startswith("application/sdp"), headers.get("Content-Type")
        assert headers.get("Location"), "201 without a Location"
        self.location = urljoin(self.base_url, headers["Location"])
        self.answer_sdp = body
        await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
        await asyncio.wait_for(self.dc_open.wait(), 15)
        return (time.monotonic() - t0) * 1000

    async def _read_frames(self, track):
        try:
            while True:
                frame = await track.recv()
                if self.first_frame_ms is None:
                    self.first_frame_ms = now_ms()
                self.frames += 1
                self.frame_size = (frame.width, frame.height)
        except Exception as e:  # MediaStreamError when the call ends
            self.track_error = e

    def connect(self) -> float:
        """Offer, POST, answer, channel open; returns ms from the POST to the channel's open."""
        return self.run(self._connect(), timeout=30)

    def wait_frames(self, n: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.frames < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.frames

    def send(self, msg: dict) -> float:
        """Sends one JSON text message on the channel; returns the wall-clock ms just before the send."""
        async def go():
            t = now_ms()
            self.dc.send(json.dumps(msg))
            return t
        return self.run(go(), timeout=5)

    def wait_message(self, pred, timeout: float, what: str) -> tuple[float, dict]:
        """The first message (received ms, dict) matching pred, skipping others (telemetry, history)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                t, m = self.messages.get(timeout=max(0.0, left))
            except queue.Empty:
                raise AssertionError(f"aiortc: no {what} within {timeout} s; got "
                                     f"{[x for x in self.seen if x.get('type') != 'telemetry'][-10:]}") from None
            self.seen.append(m)
            if pred(m):
                return t, m

    def codec(self) -> str:
        """The codec rtcam chose: the first payload type of the answer's video section, with its profile."""
        video = self.answer_sdp.split("m=video", 1)[1].split("\nm=", 1)[0]
        pt = video.split("\n", 1)[0].split()[2]  # " 9 UDP/TLS/RTP/SAVPF 101 ..."
        name = re.search(rf"a=rtpmap:{pt} ([^/\s]+)", video)
        plid = re.search(rf"a=fmtp:{pt} .*profile-level-id=([0-9a-fA-F]+)", video)
        return (name.group(1) if name else f"payload type {pt}") + (f" {plid.group(1)}" if plid else "")

    def states(self) -> tuple[str, str]:
        """(connectionState, the channel's readyState), read on the loop."""
        async def go():
            return self.pc.connectionState, self.dc.readyState
        return self.run(go(), timeout=5)

    def delete(self) -> int:
        status, _, body = self.http("DELETE", self.location)
        self.delete_body = body
        return status

    def close(self):
        if self.pc is not None:
            try:
                self.run(self.pc.close(), timeout=10)
            except Exception:
                pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


@pytest.fixture
def aiortc_player(start_rtcam):
    """Factory: aiortc_player(base_url, token) -> AiortcPlayer; closed at teardown (before rtcam stops)."""
    made = []

    def make(base_url, token):
        p = AiortcPlayer(base_url, token)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


# Puts `text` in the chat box and submits the form as Enter would; returns the page's wall clock (ms, sub-ms).
SUBMIT_JS = """(text) => {
  const input = document.getElementById('chat-text');
  input.value = text;
  const t = performance.timeOrigin + performance.now();
  input.form.requestSubmit();
  return t;
}"""


def page_line(page, text):
    return page.evaluate("(t) => window.rtcam.chat.lines.find(l => l.text === t) || null", text)


def test_aiortc_whep_player_chats_with_the_page(start_rtcam, open_page, aiortc_player):
    srv = start_rtcam(size="640x360")
    token = create_token(srv, TOKEN_NAME)  # a running rtcam sees a new token at once

    page = open_page(srv.url)
    page.fill("#chat-name", PAGE_NAME)
    page.dispatch_event("#chat-name", "change")
    go_live(page)
    wait_chat_open(page)
    # A line from before aiortc came: it gets it first, from the history.
    earlier = "said before aiortc came"
    say(page, earlier)
    page.wait_for_function("(t) => window.rtcam.chat.lines.some(l => l.text === t)", arg=earlier, timeout=1_000)

    player = aiortc_player(srv.url, token)
    open_ms = player.connect()
    _, hist = player.wait_message(lambda m: m.get("type") == "chat", 2, "the history")
    assert (hist["from"], hist["text"]) == (PAGE_NAME, earlier), hist
    # A real player: it decodes the video rtcam sends it.
    got = player.wait_frames(10, timeout=15)
    assert got >= 10, (f"aiortc decoded {got} frames in 15 s (first at {player.first_frame_ms}, "
                       f"error {player.track_error!r})")
    assert player.frame_size == (640, 360), player.frame_size
    codec = player.codec()

    # aiortc -> page: on the page within 1 s, from the token's name, as text.
    first = "<i>hi</i> from aiortc"
    sent = player.send({"type": "chat", "text": first})
    page.wait_for_function("(t) => window.rtcam.chat.lines.some(l => l.text === t)", arg=first, timeout=1_000)
    line = page.locator("#chat-log li").last
    assert line.locator(".chat-line").text_content() == first
    assert line.locator(".chat-from").text_content() == TOKEN_NAME
    assert "&lt;i&gt;" in line.inner_html(), "rendered as text, not HTML"
    assert line.locator("i").count() == 0
    first_to_page = page_line(page, first)["received"] - sent
    # The sender gets its own line back, under the token's name.
    _, echo = player.wait_message(lambda m: m.get("type") == "chat" and m.get("text") == first, 1, "echo of its line")
    assert echo["from"] == TOKEN_NAME and isinstance(echo.get("at"), int), echo

    # page -> aiortc: a typed line arrives as {"type":"chat","from":<page name>,"text":...} within 1 s.
    typed = "hello <b>aiortc</b>"
    t0 = now_ms()
    say(page, typed)
    t1, m = player.wait_message(lambda m: m.get("type") == "chat" and m.get("text") == typed, 1, "the page's line")
    assert m["from"] == PAGE_NAME, m
    assert set(m) >= {"type", "from", "text", "at"}, m
    first_to_aiortc = t1 - t0

    # Ten lines each way, one each 250 ms (under the 5 a second limit per viewer).
    # The page stamps what it receives with Date.now() (whole ms): aiortc -> page is good to about 1 ms.
    to_page, to_aiortc = [], []
    for i in range(LINES):
        text = f"aiortc line {i}"
        sent = player.send({"type": "chat", "text": text})
        page.wait_for_function("(t) => window.rtcam.chat.lines.some(l => l.text === t)", arg=text, timeout=1_000)
        l = page_line(page, text)
        assert l["from"] == TOKEN_NAME, l
        to_page.append(l["received"] - sent)
        time.sleep(0.25)
    for i in range(LINES):
        # Sent through the page's own form, stamped in the page: no Playwright round trip in the figure.
        text = f"page line {i}"
        t0 = page.evaluate(SUBMIT_JS, text)
        t1, m = player.wait_message(lambda m: m.get("type") == "chat" and m.get("text") == text, 1, text)
        assert m["from"] == PAGE_NAME, m
        to_aiortc.append(t1 - t0)
        time.sleep(0.25)

    # A WHEP viewer cannot rename itself: name_fixed, and the session goes on under the token's name.
    player.send({"type": "hello", "name": "x"})
    _, err = player.wait_message(lambda m: m.get("type") == "error", 2, "an error for its hello")
    assert err["reason"] == "name_fixed", err
    after = "still me"
    player.send({"type": "chat", "text": after})
    page.wait_for_function("(t) => window.rtcam.chat.lines.some(l => l.text === t)", arg=after, timeout=1_000)
    assert page_line(page, after)["from"] == TOKEN_NAME

    # Nobody got an error but that one; the page saw every line of both (1 + 1 + 1 + 10 + 10 + 1).
    assert page.evaluate("() => window.rtcam.chat.lines.length") == 2 * LINES + 4
    assert page.evaluate("() => window.rtcam.chat.errors.length") == 0, page.evaluate("() => window.rtcam.chat.errors")
    errors = [x for x in player.seen if x.get("type") == "error"]
    assert errors == [err], errors
    # Telemetry reaches a WHEP viewer too, counting both viewers.
    _, tel = player.wait_message(lambda m: m.get("type") == "telemetry", 3, "telemetry")
    assert tel["viewers"] == 2, tel

    def stats(col):
        return f"p50 {h.percentile(col, 50):.1f} / p95 {h.percentile(col, 95):.1f} ms"

    frames = player.frames
    print(f"\naiortc WHEP player ({codec}, {player.frame_size[0]}x{player.frame_size[1]}, {frames} frames decoded; "
          f"POST to channel open {open_ms:.0f} ms)")
    print(f"chat aiortc -> page: first line {first_to_page:.1f} ms; {LINES} lines {stats(to_page)} "
          f"(dc.send until in the page's chat lines; the page's clock has 1 ms steps)")
    print(f"chat page -> aiortc: first line {first_to_aiortc:.1f} ms typed (Playwright's fill and Enter included); "
          f"{LINES} lines {stats(to_aiortc)} (the page's form submit until aiortc's on('message'))")
    assert max(to_page) < 1000 and max(to_aiortc) < 1000

    # Frames kept coming while we chatted.
    assert player.wait_frames(frames + 10, timeout=5) >= frames + 10, "video stopped during the chat"

    # DELETE the WHEP resource: 200; rtcam closes the connection (aiortc sees it end), the page counts one
    # viewer again, and the resource is gone (404).
    assert player.delete() == 200, player.delete_body
    deadline = time.monotonic() + 5
    while player.states() != ("closed", "closed") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert player.states() == ("closed", "closed"), f"after DELETE: {player.states()}"
    page.wait_for_function("() => window.rtcam.chat.telemetry.viewers === 1", timeout=3_000)
    assert player.delete() == 404, player.delete_body
