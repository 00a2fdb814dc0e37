"""A real SFU for tests/browser/test_whip_janus.py: Debian's Janus (its VideoRoom) and meetecho's
simple-whip-server in front of it, both inside a rtcam_harness.NetNs.

Why a namespace: Janus 1.1.2 never offers a loopback candidate (shared/notes/whip-janus.md), so it
gathers on the veth address NetNs.BROWSER_IP (ice_enforce_list) and rtcam, which advertises
NetNs.DEVICE_IP, reaches it across the veth pair; nothing leaves the namespace.

What scripts/janus-setup.sh provides (scripts/setup.sh --test runs it): the janus package,
libjs-janus-gateway and libjs-webrtc-adapter (the subscriber page's janus.js and adapter.js), and
simple-whip-server unpacked with its node modules into target/tools/whip-server (it cannot be
installed next to the image's Node 20).

Janus gets configs of its own (tests/browser/janus/*.jcfg) and folders holding only the plugin
and transports it needs. simple-whip-server runs from a folder of its own: copies of server.js and
whip-janus.js beside our config.js (the packaged one is a symlink into /etc), and a web/ folder it
serves statically, which here holds the subscriber page (tests/browser/janus/subscriber.html),
janus.js, adapter.js and the page's own stripe decoder (web/stripe.js). The page is loaded from
http://127.0.0.1 (a secure context: WebCodecs' VideoFrame, which the stripe reader uses, exists
only there) and talks to Janus's HTTP API on 127.0.0.1 too; its media goes to BROWSER_IP.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import signal
import subprocess
import time
from pathlib import Path

import rtcam_harness as h

JANUS = os.environ.get("RTCAM_JANUS", "/usr/bin/janus")
JANUS_LIB = Path("/usr/lib/x86_64-linux-gnu/janus")
JANUS_JS = Path("/usr/share/javascript/janus-gateway/janus.js")
ADAPTER_JS = Path("/usr/share/javascript/webrtc-adapter/adapter.js")
WHIP_TOOLS = h.REPO_ROOT / "target" / "tools" / "whip-server"
WHIP_ROOT = WHIP_TOOLS / "root"
WHIP_SRC = WHIP_ROOT / "usr" / "share" / "simple-whip-server" / "src"
TEMPLATES = h.REPO_ROOT / "tests" / "browser" / "janus"
STRIPE_JS = h.REPO_ROOT / "web" / "stripe.js"

ROOM = 1234
ENDPOINT_ID = "cam"
HTTP_PORT = 8088  # Janus's HTTP API (the subscriber page)
WS_PORT = 8188  # Janus's WebSockets API (simple-whip-server)
WHIP_PORT = 7080  # simple-whip-server: the WHIP API and the subscriber page
JANUS_IP = h.NetNs.BROWSER_IP  # the veth address Janus gathers on (v0)

PLUGINS = ["libjanus_videoroom.so"]
TRANSPORTS = ["libjanus_http.so", "libjanus_websockets.so"]


def check_installed():
    """Raises FileNotFoundError naming the setup step when a piece is missing."""
    hint = "scripts/janus-setup.sh (scripts/setup.sh --test runs it)"
    for path in (Path(JANUS), JANUS_JS, ADAPTER_JS, JANUS_LIB / "plugins" / PLUGINS[0]):
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: {hint}")
    if not (WHIP_TOOLS / ".complete").exists() or not (WHIP_SRC / "server.js").exists():
        raise FileNotFoundError(f"simple-whip-server is not unpacked in {WHIP_TOOLS}: {hint}")
    if shutil.which("node") is None:
        raise FileNotFoundError("node not found (apt-get install nodejs)")


def _fill(template: str, values: dict[str, object]) -> str:
    """Fills the templates' @NAME@ placeholders (jcfg and JavaScript both use braces and dollars,
    so neither str.format nor string.Template fits); a placeholder left over is an error."""
    for key, value in values.items():
        template = template.replace(f"@{key}@", str(value))
    left = re.findall(r"@[A-Z_]+@", template)
    if left:
        raise ValueError(f"unfilled placeholders {left}")
    return template


class JanusSfu:
    """Janus + simple-whip-server inside `netns`, with configs generated into `workdir`.

    The test process itself is outside the namespace, so every HTTP request to them goes through
    `netns.run` (a small Python client started with the nsenter prefix)."""

    def __init__(self, netns: h.NetNs, workdir: Path, token: str):
        self.netns = netns
        self.workdir = Path(workdir)
        self.token = token
        self.janus: subprocess.Popen | None = None
        self.whip: subprocess.Popen | None = None
        self.janus_log = self.workdir / "janus.log"
        self.whip_log = self.workdir / "simple-whip-server.log"
        self.janus_starts = 0
        self._janus_log_fh = None
        self._whip_log_fh = None
        self._write_configs()

    # ---- files

    def _write_configs(self):
        """Janus's config folder and its plugin/transport folders (symlinks to just what we need),
        and simple-whip-server's folder (its two sources, our config.js, the page in web/)."""
        w = self.workdir
        conf, plugins, transports, empty = w / "janus-conf", w / "janus-plugins", w / "janus-transports", w / "janus-none"
        for d in (conf, plugins, transports, empty):
            d.mkdir(parents=True, exist_ok=True)
        for name in PLUGINS:
            (plugins / name).symlink_to(JANUS_LIB / "plugins" / name)
        for name in TRANSPORTS:
            (transports / name).symlink_to(JANUS_LIB / "transports" / name)
        values = {
            "CONFIGS": conf, "PLUGINS": plugins, "TRANSPORTS": transports, "EVENTS": empty,
            "LOGGERS": empty, "ICE_IP": JANUS_IP, "ROOM": ROOM, "HTTP_PORT": HTTP_PORT,
            "WS_PORT": WS_PORT, "WHIP_PORT": WHIP_PORT,
        }
        for name in ("janus.jcfg", "janus.plugin.videoroom.jcfg", "janus.transport.http.jcfg",
                     "janus.transport.websockets.jcfg"):
            (conf / name).write_text(_fill((TEMPLATES / name).read_text(), values))

        srv = self.whip_dir = w / "whip-server"
        (srv / "web").mkdir(parents=True, exist_ok=True)
        for name in ("server.js", "whip-janus.js"):
            shutil.copy(WHIP_SRC / name, srv / name)
        (srv / "config.js").write_text(_fill((TEMPLATES / "whip-config.js").read_text(), values))
        # The page and what it loads: copies, so express.static serves plain files.
        for src, name in ((TEMPLATES / "subscriber.html", "subscriber.html"), (TEMPLATES / "subscriber.js", "subscriber.js"),
                          (JANUS_JS, "janus.js"), (ADAPTER_JS, "adapter.js"), (STRIPE_JS, "stripe.js")):
            shutil.copy(src, srv / "web" / name)

    # ---- processes

    def start(self, timeout: float = 20.0) -> "JanusSfu":
        """Janus, then simple-whip-server (which connects to Janus before it serves), then the
        endpoint `cam` for room 1234 with our token."""
        self.start_janus(timeout)
        env = dict(os.environ,
                   NODE_PATH=f"{WHIP_ROOT}/usr/share/nodejs:{WHIP_ROOT}/usr/lib/x86_64-linux-gnu/nodejs",
                   DEBUG="whip:*", DEBUG_COLORS="0", NO_COLOR="1")
        self._whip_log_fh = open(self.whip_log, "ab")
        # cwd: express.static('web') is relative to it.
        self.whip = subprocess.Popen(self.netns.prefix + [shutil.which("node") or "node", "server.js"],
                                     cwd=self.whip_dir, env=env, stdin=subprocess.DEVNULL,
                                     stdout=self._whip_log_fh, stderr=subprocess.STDOUT)
        self._wait(lambda: self.request("GET", "/whip/healthcheck")[0] == 200, timeout,
                   "simple-whip-server's /whip/healthcheck", self.whip, self.whip_log)
        status, _, body = self.request("POST", "/whip/create", json.dumps(
            {"id": ENDPOINT_ID, "room": ROOM, "token": self.token}).encode(), {"Content-Type": "application/json"})
        if status != 200:
            raise RuntimeError(f"POST /whip/create: {status} {body[:200]!r}\n{self.whip_log_tail()}")
        return self

    def start_janus(self, timeout: float = 20.0):
        """Janus in the namespace; returns once its HTTP API answers /janus/info."""
        self._janus_log_fh = open(self.janus_log, "ab")
        self.janus_starts += 1
        self._janus_log_fh.write(f"\n===== janus start #{self.janus_starts} =====\n".encode())
        self._janus_log_fh.flush()
        conf = self.workdir / "janus-conf"
        self.janus = subprocess.Popen(
            self.netns.prefix + [JANUS, "--configs-folder", str(conf), "--config", str(conf / "janus.jcfg"),
                                 "--disable-colors", "--debug-timestamps"],
            stdin=subprocess.DEVNULL, stdout=self._janus_log_fh, stderr=subprocess.STDOUT)
        self._wait(self.janus_ready, timeout, "Janus's /janus/info", self.janus, self.janus_log)

    def janus_ready(self) -> bool:
        status, _, body = self.request("GET", f"http://127.0.0.1:{HTTP_PORT}/janus/info")
        return status == 200 and b'"janus"' in body

    def stop_janus(self, timeout: float = 8.0) -> float:
        """SIGTERM to Janus (SIGKILL after `timeout`); returns how long it took to exit."""
        t = time.monotonic()
        if self.janus is not None and self.janus.poll() is None:
            self.janus.send_signal(signal.SIGTERM)
            try:
                self.janus.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.janus.kill()
                self.janus.wait(timeout=5)
        if self._janus_log_fh:
            self._janus_log_fh.close()
            self._janus_log_fh = None
        return time.monotonic() - t

    def stop(self):
        """simple-whip-server, then Janus (SIGTERM; SIGKILL after 5 s)."""
        if self.whip is not None and self.whip.poll() is None:
            self.whip.send_signal(signal.SIGTERM)
            try:
                self.whip.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.whip.kill()
                self.whip.wait(timeout=5)
        if self._whip_log_fh:
            self._whip_log_fh.close()
            self._whip_log_fh = None
        self.stop_janus()

    def _wait(self, ready, timeout: float, what: str, proc: subprocess.Popen, log: Path):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{what}: the process exited with {proc.returncode}\n{_tail(log)}")
            try:
                if ready():
                    return
            except Exception:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{what} not ready within {timeout:.0f} s\n{_tail(log)}")

    # ---- HTTP from inside the namespace

    def request(self, method: str, path_or_url: str, body: bytes | None = None,
                headers: dict | None = None, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
        """One request made inside the namespace (simple-whip-server and Janus listen there).
        `path_or_url` is a path on simple-whip-server or a full URL. Status 0: no connection."""
        url = path_or_url if "://" in path_or_url else f"http://127.0.0.1:{WHIP_PORT}{path_or_url}"
        script = (
            "import json, sys, urllib.request, urllib.error\n"
            "a = json.loads(sys.stdin.read())\n"
            "req = urllib.request.Request(a['url'], data=a['body'].encode('latin-1') if a['body'] is not None else None,"
            " method=a['method'], headers=a['headers'])\n"
            "op = urllib.request.build_opener(urllib.request.ProxyHandler({}))\n"
            "try:\n"
            "    r = op.open(req, timeout=a['timeout']); st, hd, b = r.status, dict(r.headers), r.read()\n"
            "except urllib.error.HTTPError as e:\n"
            "    st, hd, b = e.code, dict(e.headers), e.read()\n"
            "except OSError as e:\n"
            "    st, hd, b = 0, {}, str(e).encode()\n"
            "print(json.dumps({'status': st, 'headers': hd, 'body': b.decode('latin-1')}))\n"
        )
        arg = json.dumps({"url": url, "method": method, "headers": dict(headers or {}), "timeout": timeout,
                          "body": body.decode("latin-1") if body is not None else None})
        r = subprocess.run(self.netns.prefix + [sys.executable, "-c", script], input=arg,
                           capture_output=True, text=True, timeout=timeout + 10)
        if r.returncode != 0:
            raise RuntimeError(f"request {method} {url} from inside the namespace failed: {r.stderr[-500:]}")
        out = json.loads(r.stdout)
        return out["status"], out["headers"], out["body"].encode("latin-1")

    # ---- the WHIP endpoint

    @property
    def endpoint_url(self) -> str:
        """The WHIP endpoint as rtcam, inside the namespace, reaches it (the veth address: the
        same one Janus's candidates carry, though any local address would do for HTTP)."""
        return f"http://{JANUS_IP}:{WHIP_PORT}/whip/endpoint/{ENDPOINT_ID}"

    @property
    def page_url(self) -> str:
        """The subscriber page (served by simple-whip-server, on loopback: a secure context)."""
        return f"http://127.0.0.1:{WHIP_PORT}/subscriber.html"

    @property
    def janus_http_url(self) -> str:
        return f"http://127.0.0.1:{HTTP_PORT}/janus"

    def endpoint(self) -> dict | None:
        """simple-whip-server's record of our endpoint (GET /whip/endpoints): `enabled` is true
        while a publisher holds it ("in use": every further POST gets 403)."""
        status, _, body = self.request("GET", "/whip/endpoints")
        if status != 200:
            raise RuntimeError(f"GET /whip/endpoints: {status} {body[:200]!r}")
        return next((e for e in json.loads(body) if e.get("id") == ENDPOINT_ID), None)

    def endpoint_in_use(self) -> bool:
        e = self.endpoint()
        return bool(e and e.get("enabled"))

    def participants(self) -> list[dict]:
        """The room's participants through Janus's HTTP API (a session and handle of its own)."""
        base = self.janus_http_url
        tx = lambda: os.urandom(6).hex()  # noqa: E731
        _, _, b = self.request("POST", base, json.dumps({"janus": "create", "transaction": tx()}).encode())
        sid = json.loads(b)["data"]["id"]
        try:
            _, _, b = self.request("POST", f"{base}/{sid}", json.dumps(
                {"janus": "attach", "plugin": "janus.plugin.videoroom", "transaction": tx()}).encode())
            hid = json.loads(b)["data"]["id"]
            _, _, b = self.request("POST", f"{base}/{sid}/{hid}", json.dumps(
                {"janus": "message", "transaction": tx(), "body": {"request": "listparticipants", "room": ROOM}}).encode())
            return json.loads(b)["plugindata"]["data"].get("participants", [])
        finally:
            self.request("POST", f"{base}/{sid}", json.dumps({"janus": "destroy", "transaction": tx()}).encode())

    # ---- logs

    def janus_log_tail(self, lines: int = 60) -> str:
        return f"--- janus log ---\n{_tail(self.janus_log, lines)}"

    def whip_log_tail(self, lines: int = 60) -> str:
        return f"--- simple-whip-server log ---\n{_tail(self.whip_log, lines)}"


def _tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
