"""What the audio tests share: the reference stamp detector from shared/audio (AUDIO_STAMP.md), a parec
recorder that times every read by its arrival, and stopping a child process politely.

    from audio_support import FS, Recorder, st, stop_process
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
