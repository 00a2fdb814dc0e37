"""Two-way audio through a real sound server and a real echo path, with a real Chromium page talking and listening.

The room: a private PulseAudio (Debian's `pulseaudio`, no sound card needed) with null sinks:

    rtcam --audio-out rtcam_speaker --> sink `speaker` --(module-loopback, ~35 ms: the echo)--+
                                                                                             +--> sink `micmix`
    the near-end talker (pacat: the audio stamp of the wall clock) -------------------------+         |
    rtcam --audio-in rtcam_mic <------------------------------ `micmix.monitor` (the microphone) <----+

`rtcam_mic` / `rtcam_speaker` are ALSA `pulse` PCMs (libasound2-plugins) from an ALSA config file given to rtcam
with ALSA_CONFIG_PATH; the test runs twice, rtcam with `--echo half-duplex` and with `--echo cancel`. Two `parec`s record what the device played
(`speaker.monitor`) and what its microphone heard (`micmix.monitor`), each sample timed by its arrival. The room's
processes run ahead of everything else (PulseAudio's own real-time threads; chrt for the talker and the recorders):
they stand for hardware, which a busy CPU does not starve. rtcam and the browser keep the normal priority.

The page (Debian's Chromium through Playwright) talks and listens. Before it loads, getUserMedia is replaced by a
WebAudio track: the 'stamp-gen' AudioWorklet (shared/audio/stamp-worklet.js) over a looped voice-like bed
(syllables of speech-band noise 10 dB under the stamp: an echo canceller adapts on a broadband voice, not on the
stamp's single tones) -> MediaStreamAudioDestination, the stamp of the page's wall clock with none of the browser's echo cancelling, noise suppression or gain control,
whatever the page asks for. What it hears is the <video>'s received audio track -> the 'recorder' worklet ->
Python. The worklet module is answered at /__audio_test__/stamp-worklet.js of the page's own origin through the
DevTools protocol's Fetch domain (the page's CSP allows scripts from 'self' only, no blob: or data: worklets, and
Playwright's routing does not see a worklet's request). The reference detector (shared/audio/audio_stamp.py) reads
every recording.

1. Listening (6 s after a warm-up, up to 18 s until 8 stamps in a row): the page hears the near-end stamps, 8 or
   more with consecutive slots. Printed: near-end -> page latency (the talker's hand-off -> the page's AudioContext
   render), split into the room's part (-> micmix.monitor) and the device's (micmix.monitor -> the page).
2. Talking (`rtcam.startTalking()`, the floor held, the room quiet): after 3 s (the speaker's jitter buffer settles,
   the canceller converges), for 6 s (up to 18 s until 8 in a row) the speaker must play the page's stamps, 8 or
   more in a row (printed: page -> speaker latency, the page's render -> speaker.monitor). The echo path is checked
   to be real (the speaker's sound is in the microphone at 0 +- 3 dB; delay printed), and the page must not hear
   itself: no stamp decodable in what it received, and its loudest 160 ms at least 20 dB under the level of the
   near-end stamps it heard in phase 1 (the attenuation printed). With the room quiet, anything the page hears is
   its own voice coming back. Then 3 s of double talk (reported: half-duplex lets none of the room through while
   the page's voice plays, the canceller some). The room is quiet first because both ends send the same chirp on
   the same wall-clock grid: in double talk that looks like an echo path to a canceller.
3. Let go (the near-end talking again): the first near-end stamp heard again is the one that starts once the
   microphone is open again, with half-duplex at most 250 ms (its hangover) + 20 ms + one slot after the speaker's
   last sound, and within 1.5 s of letting go (printed).

PulseAudio as root: `pulseaudio -n --daemonize=no --exit-idle-time=-1` runs as root without `--system` (it warns
"This program is not intended to be run as root"), with a private XDG_RUNTIME_DIR and HOME, the native protocol on
a socket of its own (auth-anonymous=1), every client (rtcam's ALSA PCMs, pacat, parec, pactl) pointed at it by
PULSE_SERVER and the PCMs' `server`. The browser is never told about it. Skipped only when pulseaudio, pacat, parec
or pactl is missing (scripts/setup.sh --test installs them); needs numpy (tests/browser/requirements.txt) and
shared/audio beside the clone (or RTCAM_SHARED_DIR). RTCAM_BROWSER_TEST=skip skips it like the other browser tests.
A failure leaves the recordings in the test's tmp dir (audio-dump.npz); RTCAM_AUDIO_DUMP=FILE keeps them always.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

if os.environ.get("RTCAM_BROWSER_TEST") == "skip":
    pytest.skip("RTCAM_BROWSER_TEST=skip", allow_module_level=True)

import numpy as np  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

import rtcam_harness as h  # noqa: E402

from audio_support import FS, SHARED_AUDIO, PrivatePulse, Recorder, st, stop_process  # noqa: E402

STAMP_S = st.STAMP_S  # 160 ms of signal per 500 ms slot
LISTEN_S = 6.0
TALK_S = 6.0
WARMUP_S = 3.0  # after the floor is granted: the speaker's jitter buffer settles, the canceller converges
DOUBLE_TALK_S = 3.0  # talking while the near-end talks too
QUIET_SETTLE_S = 1.0  # the near-end's last stamp reaches the page
MIN_STAMPS = 8
ECHO_DB = 20.0
# The detector's chirp threshold. libopus 1.6.1 (rtcam's, and PyAV's) at 32 kbit/s codes the 30 ms chirp poorly at
# some alignments to its 20 ms frames: rho 0.41-0.49 measured on rtcam's stream (constant through a call, as the
# alignment is), as low as 0.14 offline, with the slot still read cleanly (symbol margins 18-19 dB). The reference's
# 0.5 then drops every stamp of such a call. The CRC and the symbols' 3 dB margins still reject a damaged stamp.
DETECT_RHO = 0.2
LOOPBACK_MS = 30  # module-loopback's latency: the echo's delay (about 35 ms measured)
# The room's echo path holds still when every stamp the speaker played is in the microphone with a correlation of at
# least this (0.97-0.99 in every run recorded here; 0.31-0.69 in the one where module-loopback's delay jumped from 34
# to 100 ms mid-phase).
ROOM_STILL_RHO = 0.9
WORKLET_PATH = "/__audio_test__/stamp-worklet.js"
# A promise in the page, given up after 10 s (Playwright's evaluate waits for ever).
BOUNDED = ("() => Promise.race([%s, "
           "new Promise((_, no) => setTimeout(() => no(new Error('no answer in 10 s')), 10000))])")
LIVE_TIMEOUT_MS = 20_000

# ---------------------------------------------------------------- the room: PulseAudio


class RoomMoved(AssertionError):
    """A check of the page's sound failed while the room's echo path was not the one the test set up (PulseAudio's
    loopback changed its delay under load): such a run says nothing about rtcam, and it is run again once
    (pytest-rerunfailures, `only_rerun`). Any other failure is not."""


class PulseRoom(PrivatePulse):
    """A private PulseAudio with the sinks `speaker`, `micmix` and `void` (the default, so that a stray client
    plays into nothing that matters) and a loopback from speaker.monitor to micmix (the echo path). Its threads run
    at real-time priority: the room stands for hardware, which a busy CPU does not starve. Its clients also get an
    ALSA config with rtcam's PCMs on it."""

    def __init__(self, workdir: Path):
        spec = "rate=48000 channels=1 format=s16le"
        super().__init__(workdir, workdir / "native", [
            f"module-null-sink sink_name=void {spec}",
            f"module-null-sink sink_name=speaker {spec}",
            f"module-null-sink sink_name=micmix {spec}",
            f"module-loopback source=speaker.monitor sink=micmix latency_msec={LOOPBACK_MS} "
            "source_dont_move=1 sink_dont_move=1 remix=0",
        ], default_sink="void", default_source="void.monitor", realtime=True)
        self.alsa_conf = workdir / "rtcam-pcms.conf"

    @property
    def env(self) -> dict:
        """What every client of this room gets (never the browser)."""
        return dict(super().env, ALSA_CONFIG_PATH=f"/usr/share/alsa/alsa.conf:{self.alsa_conf}")

    def start(self, timeout: float = 15.0) -> "PulseRoom":
        super().start(timeout)
        self.alsa_conf.write_text(
            "# rtcam's microphone and speaker: ALSA pulse PCMs (libasound2-plugins) on the test's PulseAudio\n"
            f'pcm.rtcam_mic {{ type pulse; server "unix:{self.socket}"; device "micmix.monitor" }}\n'
            f'pcm.rtcam_speaker {{ type pulse; server "unix:{self.socket}"; device "speaker" }}\n')
        return self


_PRIORITY: list[str] | None = None


def room_priority() -> list[str]:
    """A command prefix that runs the room's processes (PulseAudio, the talker, the recorders) ahead of everything
    else: they stand for hardware (a sound card's DMA does not wait for the CPU), so a busy machine must not
    starve them. Round-robin real time where allowed (root), else a higher nice level, else nothing. rtcam and the
    browser keep the normal priority."""
    global _PRIORITY
    if _PRIORITY is None:
        _PRIORITY = []
        for prefix in (["chrt", "-r", "20"], ["nice", "-n", "-10"]):
            if shutil.which(prefix[0]) and subprocess.run(prefix + ["true"], capture_output=True).returncode == 0:
                _PRIORITY = prefix
                break
    return list(_PRIORITY)




# ---------------------------------------------------------------- the near-end talker

# Runs as a process of its own (no GIL shared with Playwright and numpy): every 10 ms chunk of the stamp is
# rendered for the wall time it is handed to pacat, and handed over at that time. pacat reads its stdin only when
# its stream has room, and the pipe is shrunk to one page: a stall upstream never turns into a standing queue.
# A chunk more than 30 ms late starts the timeline again from now (a gap, never a false time).
TALKER = r'''
import fcntl, os, select, subprocess, sys, time
sys.path.insert(0, sys.argv[1])
import audio_stamp as st
cmd = ["pacat", "--playback", "-d", "micmix", "--raw", "--format=s16le", "--rate=48000", "--channels=1",
       "--latency-msec=20", "--client-name=near-end-talker", "--stream-name=near-end"]
p = subprocess.Popen(cmd, stdin=subprocess.PIPE)
try:
    fcntl.fcntl(p.stdin.fileno(), 1031, 4096)  # F_SETPIPE_SZ
except OSError:
    pass
N, STEP = 480, 10_000_000
quiet = False
t = (time.time_ns() // STEP + 1) * STEP
try:
    while p.poll() is None:
        if select.select([0], [], [], 0)[0]:
            cmd = os.read(0, 256)
            if not cmd:
                break  # the test went away
            for w in cmd.split():
                quiet = {b"quiet": True, b"talk": False}.get(w, quiet)
        now = time.time_ns()
        if t > now:
            time.sleep((t - now) / 1e9)
        elif now - t > 30_000_000:
            print(f"talker: {(now - t) / 1e6:.0f} ms late, starting again from now", file=sys.stderr, flush=True)
            t = now
        x = st.render(0, N, 48000, t_start_ns=t) * (0.0 if quiet else 1.0)
        p.stdin.write(st.to_s16(x).tobytes())
        p.stdin.flush()
        t += STEP
finally:
    p.kill()
    p.wait()
'''


class NearEndTalker:
    def __init__(self, room: PulseRoom, workdir: Path):
        self.room = room
        self.log_path = workdir / "talker.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "NearEndTalker":
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(room_priority() + [sys.executable, "-c", TALKER, str(SHARED_AUDIO)],
                                     stdin=subprocess.PIPE,
                                     stdout=self._log, stderr=subprocess.STDOUT, env=self.room.client_env())
        return self

    def say(self, what: str) -> float:
        """'quiet' (digital silence, the stream goes on) or 'talk'; returns when it was said."""
        self.proc.stdin.write(what.encode() + b"\n")
        self.proc.stdin.flush()
        return time.time()

    def stop(self):
        if self.proc is not None:
            try:
                self.proc.stdin.close()  # it stops at the end of its input
                self.proc.wait(timeout=3)
            except (OSError, subprocess.TimeoutExpired):
                pass
            stop_process(self.proc)
            self._log.close()
            self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


# ---------------------------------------------------------------- recorders




# ---------------------------------------------------------------- the page

# Before the page's own scripts: getUserMedia gives a WebAudio track of the stamp (the page asks with its own
# constraints, echo cancellation included; a WebAudio track has none of that processing whatever it asks), and
# window.__audioTest.record() taps the <video>'s received audio into the 'recorder' worklet.
INIT_JS = """
(() => {
  const WORKLET = %(worklet)s;
  // Under the stamp, a voice-like bed: syllables (120-280 ms, short gaps, a
  // longer pause every eighth) of noise in the speech band, peaking 10 dB
  // under the stamp. A talker's voice is broadband; the stamp is one tone at
  // a time, and AEC3 does not adapt its filter on narrow-band sound, so the
  // stamp alone would test the canceller on a signal no viewer sends.
  const voiceBed = (ctx) => {
    const fs = ctx.sampleRate, n = 8 * fs, x = new Float32Array(n);
    let seed = 0x2545f491;
    const rnd = () => { seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5; return (seed >>> 0) / 4294967296; };
    const lp = (fc) => 1 - Math.exp(-2 * Math.PI * fc / fs);
    const [aLo, aHi] = [lp(250), lp(3400)];
    let [lo, hi] = [0, 0];
    for (let at = 0, said = 0; at < n; said++) {
      const len = Math.floor((0.12 + 0.16 * rnd()) * fs), loud = 0.3 + 0.7 * rnd();
      for (let i = 0; i < len && at + i < n; i++) {
        const w = rnd() * 2 - 1;
        hi += aHi * (w - hi); lo += aLo * (w - lo);
        x[at + i] = loud * (hi - lo) * Math.sin(Math.PI * i / len);
      }
      at += len + Math.floor((0.04 + 0.11 * rnd()) * fs) + (said %% 8 === 7 ? Math.floor((0.4 + 0.4 * rnd()) * fs) : 0);
    }
    const peak = x.reduce((m, v) => Math.max(m, Math.abs(v)), 0) || 1;
    for (let i = 0; i < n; i++) x[i] *= 0.15 / peak;
    const buf = ctx.createBuffer(1, n, fs);
    buf.copyToChannel(x, 0);
    return buf;
  };
  const T = window.__audioTest = { asked: [], chunks: [], sampleRate: null, genAnchor: null, errors: [],
                                   recording: false, genDiag: [], recDiag: [] };
  const md = navigator.mediaDevices;
  if (!md) { T.errors.push('no navigator.mediaDevices'); return; }
  md.getUserMedia = async (constraints) => {
    T.asked.push(JSON.stringify(constraints));
    const ctx = new AudioContext({ sampleRate: 48000, latencyHint: 'interactive' });
    await ctx.audioWorklet.addModule(WORKLET);
    const gen = new AudioWorkletNode(ctx, 'stamp-gen', { numberOfInputs: 0, numberOfOutputs: 1,
                                                         outputChannelCount: [1] });
    gen.port.onmessage = (ev) => { T.genAnchor = ev.data.anchor; T.genDiag.push(...ev.data.diag); };
    const dest = ctx.createMediaStreamDestination();
    dest.channelCount = 1;
    gen.connect(dest);
    const bed = ctx.createBufferSource();
    bed.buffer = voiceBed(ctx);
    bed.loop = true;
    bed.connect(dest);
    bed.start();
    if (ctx.state !== 'running') await ctx.resume();
    T.genCtx = ctx;
    return dest.stream;
  };
  T.record = async () => {
    const video = document.getElementById('video');
    const stream = video && video.srcObject;
    const track = stream && stream.getAudioTracks()[0];
    if (!track) throw new Error('no received audio track on the <video>');
    const ctx = new AudioContext({ sampleRate: 48000, latencyHint: 'interactive' });
    await ctx.audioWorklet.addModule(WORKLET);
    const src = ctx.createMediaStreamSource(new MediaStream([track]));
    const rec = new AudioWorkletNode(ctx, 'recorder', { numberOfInputs: 1, numberOfOutputs: 1,
                                                        outputChannelCount: [1] });
    rec.port.onmessage = (ev) => {
      T.chunks.push(ev.data);
      if (ev.data.diag && ev.data.diag.length) T.recDiag.push(...ev.data.diag);
    };
    src.connect(rec);
    rec.connect(ctx.destination);  // pulled by the graph; its output is silence
    if (ctx.state !== 'running') await ctx.resume();
    T.recCtx = ctx;
    T.sampleRate = ctx.sampleRate;
    T.recording = true;
    return ctx.sampleRate;
  };
  const b64 = (f32) => {
    const u8 = new Uint8Array(f32.buffer, f32.byteOffset, f32.byteLength);
    let s = '';
    for (let i = 0; i < u8.length; i += 0x8000) s += String.fromCharCode.apply(null, u8.subarray(i, i + 0x8000));
    return btoa(s);
  };
  T.take = () => T.chunks.splice(0).map((m) => ({ frame0: m.frame0, anchor: m.anchor, data: b64(m.samples) }));
})();
"""


class PageRecording:
    """What the page's recorder worklet handed over: samples by AudioContext frame, anchored to the wall clock
    (the worklet's anchor: the earliest Date.now() - frame / rate of its first second, then frozen)."""

    def __init__(self):
        self.parts: dict[int, np.ndarray] = {}
        self.anchor_ms: float | None = None

    def pull(self, page):
        for c in page.evaluate("() => window.__audioTest.take()"):
            self.parts[int(c["frame0"])] = np.frombuffer(base64.b64decode(c["data"]), dtype="<f4")
            self.anchor_ms = c["anchor"] if self.anchor_ms is None else min(self.anchor_ms, c["anchor"])

    def signal(self) -> tuple[float, np.ndarray, int]:
        """(unix time of sample 0, samples, frames missing in between)."""
        if not self.parts:
            return 0.0, np.zeros(0), 0
        f0 = min(self.parts)
        end = max(k + len(v) for k, v in self.parts.items())
        x = np.zeros(end - f0)
        covered = 0
        for k, v in self.parts.items():
            x[k - f0:k - f0 + len(v)] = v
            covered += len(v)
        return (self.anchor_ms + f0 / FS * 1000) / 1000, x, (end - f0) - covered


# ---------------------------------------------------------------- analysis helpers


def stamps(anchor: float, x: np.ndarray, t0: float | None = None, t1: float | None = None) -> list[dict]:
    """Detected stamps of x (sample 0 at unix time `anchor`) whose first sample lies in [t0, t1): each with its
    time `t` (unix s), `slot`, `slot_t` (its slot's start) and `lat` (ms)."""
    a = 0 if t0 is None else max(0, int((t0 - anchor) * FS))
    b = len(x) if t1 is None else min(len(x), int((t1 - anchor) * FS) + int(STAMP_S * FS) + 10)
    out = []
    if b - a <= 0:
        return out
    for d in st.detect(x[a:b], FS, rho_min=DETECT_RHO):
        t = anchor + (a + d["pos"]) / FS
        if (t0 is not None and t < t0) or (t1 is not None and t >= t1):
            continue
        s_t = st.slot_time(d["slot"], t)
        out.append(dict(d, t=t, slot_t=s_t, lat=(t - s_t) * 1000))
    return out


def consecutive(ds: list[dict]) -> bool:
    return all(round((b["slot_t"] - a["slot_t"]) / st.PERIOD_S) == 1 for a, b in zip(ds, ds[1:]))


def pcts(values) -> str:
    if not values:
        return "none"
    return (f"p50 {np.percentile(values, 50):.1f} ms, p95 {np.percentile(values, 95):.1f} ms "
            f"(min {min(values):.1f}, max {max(values):.1f}, n={len(values)})")


def power(anchor: float, x: np.ndarray, t: float, length_s: float = STAMP_S) -> float:
    """Mean square of x over [t, t + length)."""
    a = int(round((t - anchor) * FS))
    seg = x[max(0, a):max(0, a + int(length_s * FS))]
    return float(np.mean(seg * seg)) if len(seg) else float("nan")


def db(p: float) -> float:
    return 10 * np.log10(max(p, 1e-15))


def echo_of(spk: tuple[float, np.ndarray], mix: tuple[float, np.ndarray], t: float,
            max_lag_s: float = 0.25) -> tuple[float, float, float]:
    """The speaker's stamp that starts at unix time t, found again in the microphone: (delay ms, gain dB,
    normalised correlation) at the strongest lag in [0, max_lag) of the 160 ms from the speaker against the
    microphone (a stamp at a time: module-loopback resamples to follow the clocks, so long windows drift).
    Lags are >= 0: the near-end stamp of the same slot (the same waveform) is earlier in the microphone."""
    (a_s, s), (a_m, m) = spk, mix
    i = int(round((t - a_s) * FS))
    ref = s[i:i + int(STAMP_S * FS)]
    j = int(round((t - a_m) * FS))
    L = int(max_lag_s * FS)
    seg = m[j:j + len(ref) + L]
    if len(ref) < int(STAMP_S * FS) or len(seg) < len(ref) + L or j < 0:
        return float("nan"), float("nan"), 0.0
    n = len(seg)
    nfft = 1 << (n - 1).bit_length()
    c = np.fft.irfft(np.fft.rfft(seg, nfft) * np.conj(np.fft.rfft(ref, nfft)), nfft)[:L]
    k = int(np.argmax(c))
    er = float(np.dot(ref, ref))
    em = float(np.dot(seg[k:k + len(ref)], seg[k:k + len(ref)]))
    rho = c[k] / np.sqrt(er * em) if er > 0 and em > 0 else 0.0
    # the two recordings' sample grids are offset by a fraction of a sample: count it in
    delay = (k + (j - (t - a_m) * FS) - (i - (t - a_s) * FS)) / FS * 1000
    return delay, 20 * np.log10(max(c[k] / er, 1e-9)), rho


def serve_worklet(ctx, page, body: bytes):
    """Answers the page's requests for WORKLET_PATH with `body`, through the DevTools protocol's Fetch domain
    (Playwright's routing does not see a worklet's module request: it reached rtcam, 404)."""
    cdp = ctx.new_cdp_session(page)
    b64 = base64.b64encode(body).decode()

    def paused(ev):
        cdp.send("Fetch.fulfillRequest", {
            "requestId": ev["requestId"], "responseCode": 200, "body": b64,
            "responseHeaders": [{"name": "Content-Type", "value": "text/javascript; charset=utf-8"},
                                {"name": "Cache-Control", "value": "no-store"}]})

    cdp.on("Fetch.requestPaused", paused)
    cdp.send("Fetch.enable", {"patterns": [{"urlPattern": f"*{WORKLET_PATH}", "requestStage": "Request"}]})
    return cdp


# ---------------------------------------------------------------- the test


@pytest.fixture
def room(tmp_path):
    missing = [t for t in ("pulseaudio", "pacat", "parec", "pactl") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not found: apt-get install --no-install-recommends pulseaudio "
                    "pulseaudio-utils libasound2-plugins (scripts/setup.sh --test)")
    if not Path("/usr/share/alsa/alsa.conf").exists():
        pytest.fail("/usr/share/alsa/alsa.conf missing (libasound2)")
    r = PulseRoom(tmp_path / "pulse")
    r.dir.mkdir()
    started = []
    try:
        r.start()
        yield r, started
    finally:
        for p in reversed(started):
            try:
                p.stop()
            except Exception as e:  # keep cleaning up
                print(f"stopping {p}: {e}")
        r.stop()


def longest_run(ds: list[dict]) -> list[dict]:
    """The longest stretch of stamps with consecutive slots."""
    best, cur = [], []
    for d in ds:
        if cur and round((d["slot_t"] - cur[-1]["slot_t"]) / st.PERIOD_S) != 1:
            cur = []
        cur.append(d)
        if len(cur) > len(best):
            best = list(cur)
    return best


def missing(ds: list[dict]) -> list[int]:
    """Slot numbers absent between the first and the last stamp."""
    out = []
    for a, b in zip(ds, ds[1:]):
        n = round((b["slot_t"] - a["slot_t"]) / st.PERIOD_S)
        out += [(a["slot"] + i) & 0xFFFF for i in range(1, n)]
    return out


# Half-duplex (what `auto` means) and the echo canceller (`--echo cancel`), each through this echo path
# (34 ms, 0 dB, linear).
@pytest.mark.parametrize("echo", ["half-duplex", "cancel"])
@pytest.mark.flaky(reruns=1, only_rerun=[RoomMoved])
def test_talk_and_listen_through_a_real_echo_path(room, tmp_path, echo):
    room, started = room
    talker = NearEndTalker(room, tmp_path)
    started.append(talker)
    talker.start()
    spk_rec = Recorder("speaker.monitor", room.client_env(), room_priority(), "test-rec-speaker")
    started.append(spk_rec)
    spk_rec.start()
    mix_rec = Recorder("micmix.monitor", room.client_env(), room_priority(), "test-rec-micmix")
    started.append(mix_rec)
    mix_rec.start()

    # A small picture: the sound is what is measured, and the machine has two cores.
    srv = h.Rtcam(h.rtcam_binary("target/debug/rtcam"), size="384x216", fps=15,
                  extra=["--audio-in", "rtcam_mic", "--audio-out", "rtcam_speaker", "--echo", echo],
                  workdir=str(tmp_path / "rtcam"), env=room.env)
    started.append(srv)
    srv.start(timeout=30)

    t_test = time.monotonic()
    rig = Rig(srv=srv, room=room, talker=talker, spk_rec=spk_rec, mix_rec=mix_rec, rec=PageRecording())
    with sync_playwright() as p:
        args = list(h.CHROMIUM_ARGS) + ["--allow-loopback-in-peer-connection", "--use-fake-ui-for-media-stream"]
        if os.environ.get("RTCAM_WEB_FROM_DISK") == "1":
            args.append("--disable-features=LocalNetworkAccessChecks")  # as rtcam_harness.launch_chromium does
        # The browser plays into no sink of the room (it is never told where the room's PulseAudio is).
        env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_") and k != "ALSA_CONFIG_PATH"}
        browser = p.chromium.launch(executable_path=h.chromium_shim(tmp_path), headless=True,
                                    chromium_sandbox=False, args=args, env=env)
        ctx = browser.new_context(ignore_https_errors=True, viewport={"width": 1000, "height": 760})
        console: list[str] = []
        try:
            h.maybe_serve_web_from_disk(ctx)
            ctx.add_init_script(INIT_JS % {"worklet": json.dumps(WORKLET_PATH)})
            rig.page = ctx.new_page()
            serve_worklet(ctx, rig.page, (SHARED_AUDIO / "stamp-worklet.js").read_bytes())
            rig.page.on("console", lambda m: console.append(f"[{m.type}] {m.text}"))
            rig.page.on("pageerror", lambda e: console.append(f"[pageerror] {e}"))
            run_phases(rig, echo)
            print(f"[audio] the test took {time.monotonic() - t_test:.0f} s from rtcam's start")
        except BaseException:
            dump = Path(os.environ.get("RTCAM_AUDIO_DUMP") or tmp_path / "audio-dump.npz")
            rig.dump(dump)
            print(f"\n--- recordings: {dump} (numpy .npz: page, speaker.monitor, micmix.monitor, with anchors)")
            print("--- page console ---\n" + "\n".join(console[-40:]))
            print(f"--- pulseaudio log ---\n{room.log_tail()}\n--- talker log ---\n{talker.log()[-2000:]}")
            print(f"--- pactl sink-inputs ---\n{room.pactl('list', 'short', 'sink-inputs', check=False).stdout}"
                  f"--- source-outputs ---\n{room.pactl('list', 'short', 'source-outputs', check=False).stdout}")
            raise
        finally:
            if rig.page is not None:
                h.hang_up_quietly(rig.page)
            ctx.close()
            browser.close()
            code = srv.stop()
            print(f"--- rtcam log (exit {code}), audio lines ---\n" + "\n".join(
                line for line in srv.log().splitlines()
                if any(w in line for w in ("audio", "microphone", "speaker", "talk", "WARN", "ERROR")))[-3000:])
        if os.environ.get("RTCAM_AUDIO_DUMP"):
            rig.dump(Path(os.environ["RTCAM_AUDIO_DUMP"]))


class Rig:
    def __init__(self, **kw):
        self.page = None
        self.marks: dict[str, float] = {}
        self.__dict__.update(kw)

    def js(self, expr, arg=None):
        return self.page.evaluate(expr, arg)

    def pull_for(self, seconds: float):
        """Keeps taking the page's recording for `seconds`."""
        end = time.monotonic() + seconds
        while True:
            self.rec.pull(self.page)
            left = end - time.monotonic()
            if left <= 0:
                return
            self.page.wait_for_timeout(min(300, left * 1000))

    def heard(self, t0=None, t1=None) -> list[dict]:
        a, x, _ = self.rec.signal()
        return stamps(a, x, t0, t1)

    def metrics(self) -> str:
        """rtcam's audio counters (/metrics, with the page's login)."""
        try:
            text = self.js(BOUNDED % "fetch('/metrics').then(r => r.ok ? r.text() : `HTTP ${r.status}`)")
        except Exception as e:
            return f"(no /metrics: {e})"
        return " ".join(line.replace("rtcam_audio_", "") for line in text.splitlines()
                        if line.startswith("rtcam_audio_") and "_open" not in line)

    def page_lateness(self) -> str:
        """How far the page's AudioContexts fell behind real time (the worklets' diagnostics: now - frame time,
        against the frozen anchor): a stalled render thread shows here, not as rtcam's latency."""
        try:
            d = self.js("() => ({gen: window.__audioTest.genDiag.map(x => x[1]), genA: window.__audioTest.genAnchor,"
                        " rec: window.__audioTest.recDiag.map(x => x[1])})")
        except Exception as e:
            return f"({e})"
        out = []
        for name, vals, anchor in (("talk generator", d["gen"], d["genA"]), ("recorder", d["rec"], self.rec.anchor_ms)):
            if vals and anchor is not None:
                out.append(f"{name} up to {max(vals) - anchor:.0f} ms behind")
        return ", ".join(out) or "no data"

    def dump(self, path: Path):
        try:
            if self.page is not None and not self.page.is_closed():
                self.rec.pull(self.page)
        except Exception:
            pass
        a, x, gaps = self.rec.signal()
        a_s, s = self.spk_rec.signal()
        a_m, m = self.mix_rec.signal()
        np.savez(path, page_anchor=a, page=x.astype(np.float32), spk_anchor=a_s, spk=s.astype(np.float32),
                 mix_anchor=a_m, mix=m.astype(np.float32), marks=json.dumps(self.marks))


def run_phases(rig: Rig, echo: str):
    page, js = rig.page, rig.js

    # -- the call
    h.login(page, rig.srv.url)
    page.wait_for_function("() => window.rtcam && window.rtcam.state === 'idle'", timeout=10_000)
    page.click("#call")
    h.wait_state(page, "live", LIVE_TIMEOUT_MS)
    t_live = rig.marks["live"] = time.time()
    # Both devices open (a PulseAudio stream that starts late can make rtcam give a device up for a while, then
    # open it again), at most 20 s
    try:
        page.wait_for_function(
            "() => { const m = window.rtcam.audio.message; return window.rtcam.audio.tracks >= 1 && m"
            " && m.microphone && m.microphone.state === 'open' && m.speaker && m.speaker.state === 'open'"
            " && window.rtcam.talk.may; }", timeout=20_000)
    except Exception:
        pytest.fail(f"the device's microphone and speaker not both open 20 s into the call: "
                    f"{js('() => window.rtcam.audio.message')}, talk {js('() => window.rtcam.talk')}")
    audio_msg = js("() => window.rtcam.audio.message")
    assert audio_msg.get("may_talk") is True, audio_msg
    assert (audio_msg.get("speaker") or {}).get("state") == "open", audio_msg
    assert (audio_msg.get("microphone") or {}).get("state") == "open", audio_msg
    rate = js(BOUNDED % "window.__audioTest.record()")
    assert rate == FS, f"the page's AudioContext runs at {rate} Hz"

    # -- warm-up: until the page hears three consecutive near-end stamps (the room's first streams may start
    # a second or two late), at most 20 s
    deadline = time.monotonic() + 20
    while True:
        rig.pull_for(1.0)
        ds = rig.heard(time.time() - 3.0)
        if len(ds) >= 3 and consecutive(ds[-3:]):
            break
        if time.monotonic() > deadline:
            pytest.fail(f"the page heard no steady near-end stamps within 20 s of the call: {ds}; "
                        f"audio {js('() => window.rtcam.audio')}; {rig.metrics()}")
    t_warm = time.time()
    print(f"\n[audio] call live; the page hears the near-end stamps steadily {t_warm - t_live:.1f} s later")

    # -- phase 1: listening. LISTEN_S, or longer (at most three times) until MIN_STAMPS in a row were heard.
    t1_0 = rig.marks["listen"] = time.time()
    rig.pull_for(LISTEN_S)
    while True:
        heard = rig.heard(t1_0, time.time() - 0.3)
        run = longest_run(heard)
        if len(run) >= MIN_STAMPS or time.time() - t1_0 > 3 * LISTEN_S:
            break
        rig.pull_for(1.0)
    t1_1 = rig.marks["listen_end"] = time.time() - 0.3
    print(f"[audio] phase 1, listening {t1_1 - t1_0:.1f} s: {len(heard)} near-end stamps heard, slots "
          f"{heard[0]['slot'] if heard else '-'}..{heard[-1]['slot'] if heard else '-'}, missing {missing(heard)}; "
          f"rho {min([d['rho'] for d in heard] or [0]):.2f}..{max([d['rho'] for d in heard] or [0]):.2f}")
    assert len(run) >= MIN_STAMPS, (f"phase 1: the page heard {len(heard)} near-end stamps, at most {len(run)} in a "
                                    f"row (missing {missing(heard)}): {rig.page_lateness()}; {rig.metrics()}")
    heard = run
    lat_ne = [d["lat"] for d in heard]
    assert all(0 < v < 1000 for v in lat_ne), f"near-end -> page latencies (ms) out of bounds: {lat_ne}"
    a, x, _ = rig.rec.signal()
    ne_power = float(np.mean([power(a, x, d["t"]) for d in heard]))
    # the same stamps in the microphone (micmix.monitor): the talker's injection, and microphone -> page
    am, m = rig.mix_rec.signal()
    at_mic = {d["slot_t"]: d for d in stamps(am, m, t1_0 - 0.5, t1_1)}
    inj = [at_mic[d["slot_t"]]["lat"] for d in heard if d["slot_t"] in at_mic]
    mic_to_page = [d["lat"] - at_mic[d["slot_t"]]["lat"] for d in heard if d["slot_t"] in at_mic]
    assert len(mic_to_page) >= MIN_STAMPS // 2, f"phase 1: near-end stamps in the microphone: {sorted(at_mic)}"
    r_mid = float(np.median(mic_to_page))
    stats1 = js("() => window.rtcam.audio")
    print(f"[audio] near-end -> page (the talker's hand-off -> the page's AudioContext render): {pcts(lat_ne)}")
    print(f"[audio]   into the microphone (hand-off -> micmix.monitor): {pcts(inj)}")
    print(f"[audio]   device -> page (micmix.monitor -> the page's render): {pcts(mic_to_page)}")
    print(f"[audio]   near-end stamps' level at the page {db(ne_power):.1f} dBFS (mean square over each 160 ms); "
          f"the page's getStats: jitter buffer {fmt(stats1.get('jitterBufferMs'))} ms, concealed "
          f"{fmt(stats1.get('concealedPct'), 2)} %, lost {stats1.get('packetsLost')}, {stats1.get('codec')}")

    # -- phase 2: talking. First with the room quiet: whatever the page hears then can only be its own voice
    # coming back. Then with the near-end talking too (double talk: reported). In this order because both ends
    # send the same chirp on the same wall-clock grid (the stamp): in double talk, the near-end's chirps line up
    # with the page's in the speaker's signal, a false echo path that a canceller may take for the real one
    # (AEC3 did, at a 448 ms delay, until the room went quiet). A real room and a real viewer share no waveform.
    rig.marks["quiet"] = rig.talker.say("quiet")
    rig.pull_for(QUIET_SETTLE_S)  # the near-end's last stamp reaches the page
    ok = js(BOUNDED % "window.rtcam.startTalking()")
    assert ok is True, f"startTalking() gave {ok}: {js('() => window.rtcam.talk')}"
    page.wait_for_function("() => window.rtcam.talk.youHold", timeout=5_000)
    t_hold = rig.marks["hold"] = time.time()
    asked = js("() => window.__audioTest.asked")
    rig.pull_for(WARMUP_S)
    t2_0 = rig.marks["talk"] = time.time()
    rig.pull_for(TALK_S)
    while True:
        a_s, s = rig.spk_rec.signal()
        played = stamps(a_s, s, t2_0, time.time() - 0.3)
        run2 = longest_run(played)
        if len(run2) >= MIN_STAMPS or time.time() - t2_0 > 3 * TALK_S:
            break
        rig.pull_for(1.0)
    t2_1 = rig.marks["talk_end"] = time.time() - 0.3  # the last stamp heard whole
    t_resume = rig.marks["resume"] = rig.talker.say("talk")
    rig.pull_for(DOUBLE_TALK_S)
    talk_state = js("() => window.rtcam.talk")
    assert talk_state["talking"] and talk_state["youHold"], f"the floor went away while talking: {talk_state}"
    print(f"[audio] phase 2, talking (the page's getUserMedia asked for {', '.join(asked)}; it got the stamp "
          f"track and a voice-like bed): {t2_1 - t2_0:.1f} s measured with the room quiet (from {t2_0 - t_hold:.1f} s "
          f"after the floor was granted), then {DOUBLE_TALK_S:.1f} s of double talk")
    print(f"[audio]   the speaker played {len(played)} of the page's stamps, missing {missing(played)}, rho "
          f"{min([d['rho'] for d in played] or [0]):.2f}..{max([d['rho'] for d in played] or [0]):.2f}")
    assert len(run2) >= MIN_STAMPS, (f"phase 2: the speaker played {len(played)} of the page's stamps, at most "
                                     f"{len(run2)} in a row (missing {missing(played)}): {rig.page_lateness()}; "
                                     f"{rig.metrics()}")
    lat_pd = [d["lat"] for d in run2]
    assert all(0 < v < 1000 for v in lat_pd), f"page -> speaker latencies (ms) out of bounds: {lat_pd}"
    print(f"[audio] page -> device speaker (the page's render -> speaker.monitor): {pcts(lat_pd)}")

    # the echo path is real: with the room quiet, the microphone hears the speaker, at its level
    am, m = rig.mix_rec.signal()
    echoes = [echo_of((a_s, s), (am, m), d["t"]) for d in run2]
    e_ok = [v for v in echoes if v[2] > 0.5]
    e_gain = db(mean_power(am, m, t2_0 + 0.25, t2_1)) - db(mean_power(a_s, s, t2_0, t2_1 - 0.25))
    print(f"[audio] the room's echo (speaker.monitor -> micmix.monitor): gain {e_gain:+.1f} dB (energy over the "
          f"quiet stretch); per stamp delay {pcts([v[0] for v in e_ok])}, gain "
          f"{np.median([v[1] for v in e_ok] or [np.nan]):+.1f} dB median, correlation "
          f"{min(v[2] for v in echoes):.2f}..{max(v[2] for v in echoes):.2f}")
    assert abs(e_gain) < 3 and e_ok, \
        f"the speaker's sound is not in the microphone at its level (no echo path to test): {e_gain:.1f} dB, {echoes}"

    # what the page heard meanwhile: none of its stamps, nothing within 20 dB of the near-end's level
    rig.rec.pull(page)
    a, x, _ = rig.rec.signal()
    back = rig.heard(t2_0, t2_1)
    loudest, at = loudest_window(a, x, t2_0, t2_1 + STAMP_S)
    att = db(ne_power) - db(loudest)
    print(f"[audio] while talking with the room quiet, the page heard {len(back)} stamps "
          f"({', '.join(str(d['slot']) for d in back) or 'none'}); its loudest 160 ms ({at - t2_0:.2f} s in) was "
          f"{db(loudest):.1f} dBFS: the echo is {att:.1f} dB under the near-end stamps' level")
    rhos = [v[2] for v in echoes]
    moved = None if min(rhos) >= ROOM_STILL_RHO else (
        f"the room's echo path moved under the test (speaker -> microphone correlation {min(rhos):.2f}..{max(rhos):.2f}, "
        f"delay {pcts([v[0] for v in e_ok])})")
    room_check(not back, moved, f"the page heard its own stamps back: {back}")
    room_check(att >= ECHO_DB, moved, f"the page's own sound came back only {att:.1f} dB down")

    # double talk (reported): half-duplex lets the room through in the page's pauses, the canceller throughout
    rig.rec.pull(page)
    a, x, _ = rig.rec.signal()
    t_dt = t_resume + QUIET_SETTLE_S  # the near-end's first stamp has reached the page by now
    open_ms, total_ms = unmuted(a, x, t_dt, t_resume + DOUBLE_TALK_S)
    heard_dt = rig.heard(t_dt, t_resume + DOUBLE_TALK_S)
    print(f"[audio] double talk ({DOUBLE_TALK_S - QUIET_SETTLE_S:.1f} s from {QUIET_SETTLE_S:.1f} s after the room "
          f"talked again): the page heard the room for {open_ms:.0f} of {total_ms:.0f} ms "
          f"({100 * open_ms / max(total_ms, 1):.0f} %), {len(heard_dt)} whole stamps")

    # -- phase 3: let go; the near-end stamps come back. Half-duplex opens the microphone 250 ms after the
    # speaker's last voice: the first near-end stamp that starts after that is heard again.
    rig.pull_for(0.5)
    js("() => window.rtcam.stopTalking()")
    t_stop = rig.marks["stop"] = time.time()
    page.wait_for_function("() => !window.rtcam.talk.youHold", timeout=3_000)
    rig.pull_for(3.5)
    a_s, s = rig.spk_rec.signal()
    voice_end = last_sound(a_s, s, t_stop - 1.0, time.time())
    back = rig.heard(t_stop, time.time() - 0.3)
    assert back, "phase 3: no near-end stamps within 3.5 s of letting go"
    first = back[0]
    print(f"[audio] phase 3, let go: the speaker's last sound ended {(voice_end - t_stop) * 1000:+.0f} ms from "
          f"letting go; the first near-end stamp heard again {(first['t'] - t_stop) * 1000:.0f} ms after letting go "
          f"(its slot started {(first['slot_t'] - t_stop) * 1000:.0f} ms after it, "
          f"{(first['slot_t'] - voice_end) * 1000:.0f} ms after the speaker went quiet); {len(back)} near-end stamps "
          f"in the {time.time() - 0.3 - t_stop:.1f} s after, missing {missing(back)}; latency now "
          f"{pcts([d['lat'] for d in back])}")
    # 250 ms of hangover, a 20 ms frame, then the next slot boundary (at most 500 ms on), and a little margin.
    # The canceller has no hangover, but AEC3's suppressor may bite into the first stamp after a voice (reported).
    if echo == "half-duplex":
        assert first["slot_t"] - voice_end <= 0.25 + 0.02 + 0.5 + 0.08, \
            (f"the near-end stamps came back only with the slot {first['slot_t'] - voice_end:.2f} s after the "
             f"speaker went quiet: {[d['slot'] for d in back]}")
    assert first["slot_t"] - t_stop <= 1.5, f"the near-end came back {first['slot_t'] - t_stop:.2f} s after letting go"

    # the A/V offset, roughly: the picture's camera -> display latency (the page's timestamp stripe) against the
    # sound's microphone -> render
    vlat = h.snapshot(page, latencies=True).get("latencies") or []
    if vlat:
        v50 = float(np.median(vlat[-90:]))
        print(f"[audio] A/V at the page, roughly: picture camera -> display p50 {v50:.0f} ms, sound microphone -> "
              f"render p50 {r_mid:.0f} ms (phase 1): the sound {r_mid - v50:+.0f} ms against the picture")
    print(f"[audio] rtcam: {rig.metrics()}")
    print(f"[audio] the page's render threads: {rig.page_lateness()}; talker: {rig.talker.log().strip() or 'on time'}")


def room_check(ok: bool, moved: str | None, message: str):
    """An assertion about what the page heard of the room: RoomMoved when it fails while the room moved."""
    if ok:
        return
    if moved:
        raise RoomMoved(f"{moved}: {message}")
    raise AssertionError(message)


def last_sound(anchor: float, x: np.ndarray, t0: float, t1: float, floor_db: float = -50.0) -> float:
    """The end of the last 10 ms block above floor_db in [t0, t1) (t0 if none)."""
    i0, i1 = max(0, int((t0 - anchor) * FS)), min(len(x), int((t1 - anchor) * FS))
    n = (i1 - i0) // 480
    if n <= 0:
        return t0
    e = np.mean(x[i0:i0 + n * 480].reshape(n, 480) ** 2, axis=1)
    loud = np.flatnonzero(e > 10 ** (floor_db / 10))
    return anchor + (i0 + (int(loud[-1]) + 1) * 480) / FS if len(loud) else t0


def mean_power(anchor: float, x: np.ndarray, t0: float, t1: float) -> float:
    i0, i1 = max(0, int((t0 - anchor) * FS)), min(len(x), int((t1 - anchor) * FS))
    return float(np.mean(x[i0:i1] ** 2)) if i1 > i0 else float("nan")


def loudest_window(anchor: float, x: np.ndarray, t0: float, t1: float, length_s: float = STAMP_S):
    """(mean square, start time) of the loudest `length_s` of x within [t0, t1)."""
    i0, i1 = max(0, int((t0 - anchor) * FS)), min(len(x), int((t1 - anchor) * FS))
    n = int(length_s * FS)
    seg = x[i0:i1]
    if len(seg) < n:
        return float("nan"), t0
    c = np.concatenate(([0.0], np.cumsum(seg * seg)))
    e = (c[n:] - c[:-n]) / n
    k = int(np.argmax(e))
    return float(e[k]), anchor + (i0 + k) / FS


def unmuted(anchor: float, x: np.ndarray, t0: float, t1: float, floor_db: float = -50.0):
    """(ms of 10 ms blocks above floor_db, ms in all) of x within [t0, t1)."""
    i0, i1 = max(0, int((t0 - anchor) * FS)), min(len(x), int((t1 - anchor) * FS))
    seg = x[i0:i1]
    n = len(seg) // 480
    if n == 0:
        return 0.0, 0.0
    e = np.mean(seg[:n * 480].reshape(n, 480) ** 2, axis=1)
    return float(np.sum(e > 10 ** (floor_db / 10)) * 10), float(n * 10)


def fmt(v, digits=0):
    return "-" if v is None else f"{v:.{digits}f}"
