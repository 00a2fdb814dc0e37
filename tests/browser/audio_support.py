"""What the audio tests share: the reference stamp detector from shared/audio (AUDIO_STAMP.md), a private
PulseAudio, a parec recorder that times every read by its arrival, and stopping a child process politely.

    from audio_support import FS, PrivatePulse, Recorder, st, stop_process
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import rtcam_harness as h

FS = 48_000

SHARED_AUDIO = Path(os.environ.get("RTCAM_SHARED_DIR", h.REPO_ROOT.parent / "shared")) / "audio"
if not (SHARED_AUDIO / "audio_stamp.py").is_file():
    pytest.fail(f"{SHARED_AUDIO / 'audio_stamp.py'} not found: the shared/ directory belongs beside the clone "
                "(or set RTCAM_SHARED_DIR)", pytrace=False)
sys.path.insert(0, str(SHARED_AUDIO))
import audio_stamp as st  # noqa: E402,F401  (re-exported)


def stop_process(proc: subprocess.Popen | None, grace: float = 5.0):
    """SIGTERM, then SIGKILL after `grace` s (this process only)."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


class PrivatePulse:
    """A private PulseAudio: its own runtime directory and home under `workdir`, the native protocol with anonymous
    auth on `socket`, the `modules` given, and `default_sink` (and `default_source`) set once it answers. Only the
    processes given `env` (or `client_env()`) see it. `realtime`: as root, pulseaudio gives its sink and source
    threads SCHED_RR itself (a room standing for hardware); without, they run at the normal priority."""

    def __init__(self, workdir: Path, socket: Path, modules: list[str], default_sink: str,
                 default_source: str | None = None, realtime: bool = False):
        self.dir = workdir
        self.run_dir = workdir / "run"
        self.socket = socket
        self.modules = modules
        self.default_sink = default_sink
        self.default_source = default_source
        self.realtime = realtime
        self.log_path = workdir / "pulseaudio.log"
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def env(self) -> dict:
        """What every client of it gets."""
        return {"XDG_RUNTIME_DIR": str(self.run_dir), "PULSE_SERVER": f"unix:{self.socket}",
                "PULSE_COOKIE": str(self.dir / "cookie")}

    def client_env(self) -> dict:
        return dict(os.environ, **self.env)

    def start(self, timeout: float = 15.0):
        home = self.dir / "home"
        for d in (self.run_dir, self.socket.parent, home):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        env = dict(os.environ, XDG_RUNTIME_DIR=str(self.run_dir), HOME=str(home),
                   XDG_CONFIG_HOME=str(home / ".config"))
        env.pop("PULSE_SERVER", None)
        rt = "yes" if self.realtime else "no"
        cmd = ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no", "--disallow-exit",
               f"--realtime={rt}", f"--high-priority={rt}", "--log-target=stderr", "--log-level=notice",
               "-L", f"module-native-protocol-unix auth-anonymous=1 socket={self.socket}"]
        for m in self.modules:
            cmd += ["-L", m]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=env, cwd=str(self.dir))
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pulseaudio exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self.socket.exists() and self.pactl("info", check=False).returncode == 0:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"pulseaudio did not answer within {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.1)
        self.pactl("set-default-sink", self.default_sink)
        if self.default_source:
            self.pactl("set-default-source", self.default_source)
        return self

    def pactl(self, *args, check=True) -> subprocess.CompletedProcess:
        r = subprocess.run(["pactl", *args], capture_output=True, text=True, env=self.client_env(), timeout=10)
        if check and r.returncode != 0:
            raise RuntimeError(f"pactl {' '.join(args)}: {r.stderr.strip()}\n{self.log_tail()}")
        return r

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def stop(self):
        if self.proc is not None:
            stop_process(self.proc)
            self._log.close()
            self.proc = None


class Recorder:
    """parec from a PulseAudio source, raw s16le 48 kHz mono, every read timed by its arrival. Sample i's time is
    anchor + i / FS, with anchor = the earliest (arrival - samples so far / FS) after the first second (a sample is
    never timed earlier than it arrived; the start-up is left out). `prefix` runs parec under e.g. chrt."""

    def __init__(self, source: str, env: dict, prefix: list[str] | None = None, name: str = "test-recorder"):
        self.source = source
        self.env = env
        self.prefix = prefix or []
        self.name = name
        self.proc: subprocess.Popen | None = None
        self.reads: list[tuple[float, bytes]] = []
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def start(self) -> "Recorder":
        cmd = self.prefix + ["parec", "-d", self.source, "--raw", "--format=s16le", "--rate=48000",
                             "--channels=1", "--latency-msec=10", f"--client-name={self.name}"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL, env=self.env)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        return self

    def _read(self):
        fd = self.proc.stdout.fileno()
        while True:
            b = os.read(fd, 1 << 16)
            if not b:
                return
            t = time.time()
            with self.lock:
                self.reads.append((t, b))

    def signal(self) -> tuple[float, np.ndarray]:
        """(anchor: unix time of sample 0, samples as float in [-1, 1))."""
        with self.lock:
            reads = list(self.reads)
        data = b"".join(b for _, b in reads)
        x = np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.float64) / 32768.0
        if not reads:
            return 0.0, x
        t_first, n, cands = reads[0][0], 0, []
        for t, b in reads:
            n += len(b) // 2
            if t - t_first >= 1.0:
                cands.append(t - n / FS)
        return (min(cands) if cands else reads[-1][0] - n / FS), x

    def stop(self):
        if self.proc is not None:
            stop_process(self.proc)
            if self.thread:
                self.thread.join(timeout=5)
            self.proc = None
