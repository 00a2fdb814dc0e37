"""Pictures in the chat, between real Chromium pages over each call's `rtcam` data channel.

A shares a snapshot of the camera with the chat's snapshot button: it goes out in base64 chunks paced
by the channel's bufferedAmount, with a progress bar that reaches 100 % and goes away; B shows it as an
<img> from the device's URL at the stream's size (640x360), and opens it full size in the lightbox.
A page that calls later gets it in the history. A picked file that is no picture (text named x.png)
gets A the device's not_an_image note and B nothing. A 1.4 MB PNG picked from a file goes out without
the send buffer ever holding much more than 256 KiB. A line whose picture the device no longer keeps
says so, and a lost camera's slate is not shared. Times are printed with -s.
"""

from __future__ import annotations

import os
import struct
import time
import zlib

import pytest

if os.environ.get("RTCAM_BROWSER_TEST") == "skip":
    pytest.skip("RTCAM_BROWSER_TEST=skip", allow_module_level=True)

import rtcam_harness as h  # noqa: E402
from test_browser import browser, go_live, open_page, start_rtcam  # noqa: E402,F401  (fixtures)

HIGH_WATER = 256 * 1024  # web/chat.js: the page waits for the buffer to drain above this
CHUNK_JSON = 11_000  # one image_chunk message: 8 KiB of base64 and its JSON
PICTURE_LINES = "() => window.rtcam.chat.lines.filter(l => l.image)"


def wait_chat_open(page):
    page.wait_for_function("() => window.rtcam && window.rtcam.chat && window.rtcam.chat.open", timeout=15_000)


def name_page(page, name):
    page.fill("#chat-name", name)
    page.dispatch_event("#chat-name", "change")


def wait_picture_loaded(page, url, timeout_ms=5_000):
    page.wait_for_function(
        "(u) => window.rtcam.chat.lines.some(l => l.image && l.image.url === u && l.image.state === 'loaded')",
        arg=url, timeout=timeout_ms)
    return page.evaluate("""(u) => {
        const img = [...document.querySelectorAll('#chat-log img')].find(i => i.getAttribute('src') === u);
        return img && {w: img.naturalWidth, h: img.naturalHeight, alt: img.alt, loading: img.loading,
                       shownW: img.clientWidth, shownH: img.clientHeight,
                       from: img.closest('li').querySelector('.chat-from').textContent,
                       at: img.closest('li').querySelector('.chat-at').textContent};
    }""", url)


def noise_png(width, height, seed=1) -> bytes:
    """A valid PNG of noise (it does not compress): width*height*3 bytes and a little more."""
    rnd = bytearray()
    x = seed
    for _ in range(height):
        row = bytearray(width * 3)
        for i in range(0, len(row), 4):
            x = (x * 1103515245 + 12345) & 0xFFFFFFFF
            row[i:i + 4] = x.to_bytes(4, "little")[: len(row) - i]
        rnd += b"\x00" + row
    raw = zlib.compress(bytes(rnd), 1)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def test_a_snapshot_shared_in_the_chat_shows_in_the_other_page(start_rtcam, open_page):
    srv = start_rtcam(size="640x360")
    a, b = open_page(srv.url), open_page(srv.url)
    name_page(a, "Ann")
    for p in (a, b):
        go_live(p)
        wait_chat_open(p)
    assert a.is_enabled("#chat-share-snapshot") and a.is_enabled("#chat-file")

    t0 = time.time() * 1000
    a.click("#chat-share-snapshot")
    a.wait_for_selector("#chat-upload", state="visible", timeout=3_000)
    a.wait_for_function("() => window.rtcam.chat.upload.done", timeout=10_000)
    up = a.evaluate("() => window.rtcam.chat.upload")
    done_ms = time.time() * 1000 - t0
    assert up["error"] is None and not up["busy"], up
    assert up["sent"] == up["size"] and up["size"] > 5_000, up
    assert up["percent"] == 100 and a.evaluate("() => document.getElementById('chat-upload-bar').value") == 100
    assert up["url"].startswith("/api/chat/images/"), up
    # The bar goes away by itself.
    a.wait_for_selector("#chat-upload", state="hidden", timeout=5_000)

    # B shows the picture at the stream's size, with its sender and time.
    got = wait_picture_loaded(b, up["url"])
    assert got["w"] == 640 and got["h"] == 360, got
    assert got["alt"] == up["name"] and got["loading"] == "lazy", got
    assert got["from"] == "Ann" and got["at"], got
    assert 0 < got["shownW"] <= 400 and abs(got["shownW"] / got["shownH"] - 640 / 360) < 0.05, got
    line = b.evaluate(PICTURE_LINES)[-1]
    line_ms, shown_ms = line["received"] - t0, line["image"]["loadedAt"] - t0
    assert shown_ms < 3_000, (line_ms, shown_ms)
    assert line["from"] == "Ann" and line["text"] == up["name"], line
    assert line["image"]["mime"] == "image/jpeg" and line["image"]["size"] == up["size"], line
    # A shows its own picture too.
    assert wait_picture_loaded(a, up["url"])["w"] == 640
    print(f"\nsnapshot {up['size']} bytes: shared in {up['ms']} ms from the first chunk to A's own line "
          f"({done_ms:.0f} ms from the click, snapshot included); B got the line {line_ms:.0f} ms and showed "
          f"the picture {shown_ms:.0f} ms after the click; most buffered {up['maxBuffered']} bytes")

    # Enter on the picture opens it full size in the lightbox; Esc closes it, the focus goes back.
    b.focus(f"#chat-log a[href='{up['url']}']")
    b.keyboard.press("Enter")
    b.wait_for_selector("#lightbox[open]", timeout=3_000)
    b.wait_for_function("() => document.getElementById('lightbox-img').naturalWidth === 640", timeout=3_000)
    assert b.get_attribute("#lightbox-open", "href") == up["url"]
    b.keyboard.press("Escape")
    b.wait_for_selector("#lightbox", state="hidden", timeout=3_000)
    assert b.evaluate("(u) => document.activeElement.getAttribute('href') === u", up["url"])
    assert b.evaluate("() => window.rtcam.state") == "live"

    # A page that calls later gets the picture in the history.
    c = open_page(srv.url)
    go_live(c)
    wait_chat_open(c)
    assert wait_picture_loaded(c, up["url"])["w"] == 640

    # A picked file that is no picture: the device refuses it; A says so, B gets nothing.
    b_lines = len(b.evaluate("() => window.rtcam.chat.lines"))
    a.set_input_files("#chat-file", files=[{"name": "x.png", "mimeType": "image/png",
                                            "buffer": b"this is text, not a picture\n"}])
    a.wait_for_function("() => window.rtcam.chat.upload.reason !== null && !window.rtcam.chat.upload.busy",
                        timeout=5_000)
    up = a.evaluate("() => window.rtcam.chat.upload")
    assert up["reason"] == "not_an_image" and not up["done"], up
    note = a.text_content("#chat-note")
    assert a.is_visible("#chat-note") and "x.png" in note and "not a JPEG" in note, note
    assert a.is_hidden("#chat-upload")
    time.sleep(1.0)
    assert len(b.evaluate("() => window.rtcam.chat.lines")) == b_lines
    assert b.evaluate("() => window.rtcam.chat.errors") == []
    assert b.is_hidden("#chat-note")

    # Refused on the page itself: a file over 2 MiB never goes out.
    a.set_input_files("#chat-file", files=[{"name": "big.jpg", "mimeType": "image/jpeg",
                                            "buffer": b"\xff\xd8\xff" + b"\0" * (2 * 1024 * 1024)}])
    a.wait_for_function("() => window.rtcam.chat.upload.reason === 'local'", timeout=3_000)
    assert "2 MB" in a.text_content("#chat-note")
    assert a.evaluate("() => window.rtcam.chat.errors") == ["not_an_image"]
    assert [m for m in a.console_lines + b.console_lines if "Content Security Policy" in m] == []


def test_a_large_picture_file_is_paced_by_the_send_buffer(start_rtcam, open_page):
    srv = start_rtcam(size="640x360")
    a, b = open_page(srv.url), open_page(srv.url)
    for p in (a, b):
        go_live(p)
        wait_chat_open(p)
    png = noise_png(800, 600)
    assert 1_400_000 < len(png) <= 2 * 1024 * 1024, len(png)
    name = "noise <b>1</b>.png"  # text, never HTML; the device drops the slash (no paths in names)
    # The bar moves: every figure it shows on the way, as shown.
    a.evaluate("""() => {
        window.seenPct = [];
        new MutationObserver(() => window.seenPct.push(document.getElementById('chat-upload-pct').textContent))
            .observe(document.getElementById('chat-upload-pct'), {childList: true, characterData: true, subtree: true});
    }""")
    a.set_input_files("#chat-file", files=[{"name": name, "mimeType": "image/png", "buffer": png}])
    a.wait_for_function("() => !window.rtcam.chat.upload.busy", timeout=15_000)
    seen = [int(t.split()[0]) for t in a.evaluate("() => window.seenPct") if t]
    up = a.evaluate("() => window.rtcam.chat.upload")
    assert up["done"] and up["error"] is None, up
    assert up["size"] == len(png) and up["sent"] == len(png), up
    assert any(0 < v < 100 for v in seen) and seen[-1] == 100 and seen == sorted(seen), seen
    assert up["maxBuffered"] <= HIGH_WATER + CHUNK_JSON, up
    got = wait_picture_loaded(b, up["url"])
    assert got["w"] == 800 and got["h"] == 600 and got["alt"] == "noise <b>1<b>.png", got
    li = b.locator("#chat-log li.has-pic").last
    assert li.locator("b").count() == 0 and "&lt;b&gt;" in li.inner_html()
    print(f"\n{len(png)} byte PNG: {up['ms']} ms from the first chunk to A's own line "
          f"({len(png) / max(1, up['ms']) * 1000 / 1e6:.1f} MB/s), most buffered {up['maxBuffered']} bytes, "
          f"the bar showed {seen} %")
    # The chat goes on meanwhile and after.
    a.fill("#chat-text", "after the picture")
    a.press("#chat-text", "Enter")
    b.wait_for_function("() => window.rtcam.chat.lines.some(l => l.text === 'after the picture')", timeout=2_000)


def test_a_picture_the_device_no_longer_keeps_says_so(start_rtcam, open_page):
    srv = start_rtcam(size="640x360")
    page = open_page(srv.url)
    go_live(page)
    wait_chat_open(page)
    page.evaluate("""() => window.rtcam.inject({type: 'chat', from: 'Ann', text: 'old.jpg', at: Date.now(),
        image: {url: '/api/chat/images/999', name: 'old.jpg', mime: 'image/jpeg', size: 1234}})""")
    page.wait_for_selector("#chat-log .chat-pic-gone", timeout=5_000)
    assert page.text_content("#chat-log .chat-pic-gone") == "picture no longer kept"
    assert page.evaluate(PICTURE_LINES)[-1]["image"]["state"] == "gone"
    # A line pointing anywhere but the device's pictures shows as text, with no <img>.
    page.evaluate("""() => window.rtcam.inject({type: 'chat', from: 'Eve', text: 'x', at: Date.now(),
        image: {url: 'https://example.invalid/x.png', name: 'x', mime: 'image/png', size: 1}})""")
    li = page.locator("#chat-log li").last
    assert li.locator("img").count() == 0 and li.locator(".chat-line").text_content() == "x"
    # While the camera is lost the device's snapshot is its slate: nothing to share.
    page.evaluate("() => window.rtcam.inject({type: 'camera', state: 'lost', name: 'cam', problem: 'unplugged'})")
    page.click("#chat-share-snapshot")
    page.wait_for_function("() => window.rtcam.chat.upload.reason === 'local'", timeout=3_000)
    assert "camera is lost" in page.text_content("#chat-note")
