#!/usr/bin/env python3
"""Motion detection and recording under qemu-aarch64 (a Cortex-A72, the Pi 4's core), relative to the H.264
encoder in the same run: what share of rtcam's CPU each thread takes at 640x360 30 fps on the still test scene
(motion detection on, recording continuous, no viewer: the recorder keeps the encoder running). Uses the ARM
build .ci/run makes (scripts/cross-build.sh; a debug build, so compare threads within it, not with x86).
Prints; asserts nothing.
    bench/record_qemu.py [target/aarch64-unknown-linux-gnu/debug/rtcam] [seconds]
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target/aarch64-unknown-linux-gnu/debug/rtcam")
SECONDS = float(sys.argv[2]) if len(sys.argv) > 2 else 30.0
QEMU = ["qemu-aarch64", "-cpu", "cortex-a72", "-L", "/usr/aarch64-linux-gnu"]
SYSROOT_LIB = os.path.join(ROOT, "target/sysroot/aarch64-linux-gnu/usr/lib/aarch64-linux-gnu")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def thread_cpu(pid: int) -> dict[str, float]:
    hz = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = open(f"/proc/{pid}/task/{tid}/stat").read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        f = stat[stat.rindex(")") + 1:].split()
        out[name] = out.get(name, 0.0) + (int(f[11]) + int(f[12])) / hz
    return out


def main():
    if not os.path.exists(BIN) or shutil.which("qemu-aarch64") is None:
        sys.exit(f"needs {BIN} (scripts/cross-build.sh, as .ci/run) and qemu-aarch64 (qemu-user)")
    env = dict(os.environ, LD_LIBRARY_PATH=SYSROOT_LIB)
    work = tempfile.mkdtemp(prefix="rtcam-qemu-rec-")
    state, clips = os.path.join(work, "state"), os.path.join(work, "clips")
    os.makedirs(clips)
    subprocess.run(QEMU + [BIN, "passwd", "--password-stdin", "--state-dir", state], input=b"bench-password-1\n",
                   env=env, check=True, capture_output=True)
    args = ["--source", "test:still", "--size", "640x360", "--fps", "30", "--record", "continuous",
            "--record-dir", clips, "--motion", "on", "--state-dir", state, "--mdns", "off",
            "--http", f"127.0.0.1:{free_port()}", "--rtc", f"127.0.0.1:{free_port()}", "--audio-in", "off"]
    log = open(os.path.join(work, "log"), "wb")
    p = subprocess.Popen(QEMU + [BIN] + args, env=env, stdout=log, stderr=log)
    try:
        time.sleep(15)  # start-up under emulation, the first segment
        before, t0 = thread_cpu(p.pid), time.monotonic()
        time.sleep(SECONDS)
        after, secs = thread_cpu(p.pid), time.monotonic() - t0
    finally:
        p.terminate()
        p.wait(timeout=20)
    use = {k: (after[k] - before.get(k, 0.0)) / secs * 100 for k in after}
    whole = sum(use.values())
    enc = next((v for k, v in use.items() if k.startswith("encode-")), 0.0)
    print(f"qemu-aarch64 (Cortex-A72), 640x360 30 fps, still scene, continuous recording + motion, {secs:.0f} s:")
    print(f"  whole process {whole:.1f} % of a host core; by thread: "
          + ", ".join(f"{k} {v:.1f}" for k, v in sorted(use.items(), key=lambda kv: -kv[1]) if v >= 0.05))
    for name in ("motion", "recorder", "record-disk"):
        v = use.get(name, 0.0)
        print(f"  {name}: {v:.2f} % ({v / whole * 100:.1f} % of rtcam's CPU, {v / enc * 100 if enc else 0:.1f} % of the encoder's)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
