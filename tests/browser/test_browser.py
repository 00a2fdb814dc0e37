"""End-to-end: the rtcam binary (test source) and the page in a real headless Chromium.

Run from the repository root (after `cargo build`):

    pip install -r tests/browser/requirements.txt
    pytest -s tests/browser/          # -s shows the measured numbers

Environment: RTCAM_BIN (default target/debug/rtcam), RTCAM_CHROMIUM (default /usr/bin/chromium),
RTCAM_BROWSER_TEST=skip to skip. A missing Chromium fails the test; it is never downloaded.
Each rtcam gets the password rtcam_harness.PASSWORD (rtcam passwd) and every page logs in first.
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

    def start(extra=None, size="1280x720"):
        srv = h.Rtcam(h.rtcam_binary("target/debug/rtcam"), size=size, fps=30, extra=extra,
                      workdir=str(tmp_path / f"rtcam{len(started)}"))
        started.append(srv)
        return srv.start(timeout=30)

    yield start
    for srv in started:
        code = srv.stop()
        print(f"\n--- rtcam log (exit {code}), last lines ---\n{srv.log_tail(40)}")


@pytest.fixture
def open_page(browser):
    """Factory: open_page(url, login=True) -> a page in its own context (so its own cookies),
    logged in and showing the idle viewer; login=False only opens the url. The console is kept
    for failures."""
    opened = []

    def open_(url, login=True, password=h.PASSWORD):
        ctx = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 860})
        h.maybe_serve_web_from_disk(ctx)
        page = ctx.new_page()
        page.console_lines = []
        page.on("console", lambda m: page.console_lines.append(f"[{m.type}] {m.text}"))
        page.on("pageerror", lambda e: page.console_lines.append(f"[pageerror] {e}"))
        opened.append((ctx, page))
        if not login:
            h.goto(page, url)
            return page
        h.login(page, url, password)
        page.wait_for_function("() => window.rtcam && window.rtcam.state === 'idle'", timeout=10_000)
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


def csp_violations(page):
    return [line for line in page.console_lines if "Content Security Policy" in line]


def session_cookie(page):
    return next((c for c in page.context.cookies() if c["name"] == "rtcam_session"), None)


def login_message(page):
    return page.text_content("#login-message") or ""


def submit_password(page, password):
    """Types `password` and presses Enter (the form's submit); returns the status of the POST /login."""
    page.fill("#password", password)
    with page.expect_response(lambda r: r.url.endswith("/login") and r.request.method == "POST") as info:
        page.press("#password", "Enter")
    status = info.value.status
    # login.js shows "Checking…" while the request is out; wait for its verdict.
    page.wait_for_function("() => location.pathname !== '/login'"
                           " || document.getElementById('login-message').textContent !== 'Checking…'",
                           timeout=10_000)
    return status


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


def test_login_required(start_rtcam, open_page):
    srv = start_rtcam()
    login_url = srv.url + "login"
    page = open_page(srv.url, login=False)

    # Not logged in: "/" sends the browser to the login form.
    assert page.url == login_url, page.url
    r = page.context.request.get(srv.url, max_redirects=0)
    assert (r.status, r.headers.get("location")) == (303, "/login"), (r.status, r.headers)
    assert page.is_visible("#password") and page.is_visible("#login")
    assert page.get_attribute("#password", "autocomplete") == "current-password"
    assert session_cookie(page) is None

    # A wrong password: an error, still on the form, no session.
    page.fill("#password", "not-the-password")
    with page.expect_response(lambda r: r.url == login_url and r.request.method == "POST") as info:
        page.click("#login")
    assert info.value.status == 401
    page.wait_for_function("() => document.getElementById('login-message').textContent === 'Wrong password.'",
                           timeout=10_000)
    assert page.url == login_url
    assert session_cookie(page) is None
    print(f"\nwrong password: message {login_message(page)!r}, still at {page.url}")

    # The right one: the viewer, a strict session cookie, and a call that goes live.
    page.fill("#password", srv.password)
    page.click("#login")
    page.wait_for_url(srv.url, timeout=15_000)
    page.wait_for_selector("#call", state="visible", timeout=10_000)
    h.wait_state(page, "idle", 10_000)
    c = session_cookie(page)
    assert c is not None, page.context.cookies()
    assert c["httpOnly"] and c["secure"] and c["sameSite"] == "Strict", c
    assert c["path"] == "/", c
    go_live(page)
    print(f"logged in, call live after {h.snapshot(page)['clickToFirstFrameMs']:.0f} ms; "
          f"cookie HttpOnly Secure SameSite=Strict, expires in {c['expires'] - time.time():.0f} s")

    # Log out in the middle of the call: back to the form, the cookie gone, "/" refused again.
    with page.expect_response(lambda r: r.url == srv.url + "logout" and r.request.method == "POST") as info:
        page.click("#logout")
    assert info.value.status == 204
    page.wait_for_url(login_url, timeout=10_000)
    assert session_cookie(page) is None
    h.goto(page, srv.url)
    assert page.url == login_url, page.url
    page.wait_for_selector("#password", state="visible")
    # The server ended the session too, not just the browser: an old cookie value no longer works.
    old = page.context.request.get(srv.url + "api/status", headers={"Cookie": f"rtcam_session={c['value']}"})
    assert old.status == 401, old.status

    assert not csp_violations(page), csp_violations(page)


def test_login_throttled_then_allowed(start_rtcam, open_page):
    """Wrong passwords (Enter key, no click) until rtcam asks to wait: login.js shows the wait,
    keeps the button off for it, and the right password works afterwards."""
    srv = start_rtcam()
    page = open_page(srv.url, login=False)
    statuses = []
    for _ in range(10):
        statuses.append(submit_password(page, "still-not-it"))
        if statuses[-1] == 429:
            break
        assert statuses[-1] == 401 and login_message(page) == "Wrong password.", (statuses, login_message(page))
    assert statuses[-1] == 429, statuses
    msg = login_message(page)
    print(f"\nlogin statuses {statuses}; message {msg!r}")
    assert msg.startswith("Too many attempts: try again in ") and msg.endswith(" s."), msg
    assert page.is_disabled("#login")
    # The button comes back once the wait is over (at most 2 s at this point of the backoff).
    t0 = time.monotonic()
    page.wait_for_function("() => !document.getElementById('login').disabled", timeout=10_000)
    print(f"button back after {time.monotonic() - t0:.1f} s")
    assert login_message(page) == ""
    assert submit_password(page, srv.password) == 204
    page.wait_for_url(srv.url, timeout=15_000)
    page.wait_for_selector("#call", state="visible", timeout=10_000)
    assert not csp_violations(page), csp_violations(page)


def test_ended_session_sends_the_page_to_login(start_rtcam, open_page):
    """Logged out elsewhere (another tab of the same browser): the next Call cannot open /ws,
    the page asks /api/status, gets 401 and goes to the login form instead of retrying."""
    srv = start_rtcam()
    page = open_page(srv.url)
    other = page.context.new_page()
    other.goto(srv.url)
    other.wait_for_selector("#logout", state="visible")
    other.click("#logout")
    other.wait_for_url(srv.url + "login", timeout=10_000)

    t0 = time.monotonic()
    page.click("#call")
    page.wait_for_url(srv.url + "login", timeout=15_000)
    print(f"\nCall without a session: at the login form after {time.monotonic() - t0:.2f} s")
    page.wait_for_selector("#password", state="visible")
