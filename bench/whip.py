"""Runs tests/bench_whip.rs (in the integration binary, argv[1]) inside a network namespace with Janus
and simple-whip-server: Janus never offers 127.0.0.1 (shared/notes/whip-janus.md), so it, rtcam
and the subscribers meet on a veth pair that never leaves the machine. Used by bench/whip.sh."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "browser"))

import janus_support as js  # noqa: E402
import rtcam_harness as h  # noqa: E402

TOKEN = "bench-whip-token"


def main(bench: str) -> int:
    js.check_installed()
    with tempfile.TemporaryDirectory(prefix="rtcam-bench-whip-") as tmp:
        work = Path(tmp)
        token_file = work / "token"
        token_file.write_text(TOKEN + "\n")
        token_file.chmod(0o600)
        ns = h.NetNs().start()
        sfu = None
        try:
            sfu = js.JanusSfu(ns, work, TOKEN).start()
            env = dict(os.environ,
                       RTCAM_BENCH_JANUS_API=sfu.janus_http_url,
                       RTCAM_BENCH_WHIP=sfu.endpoint_url,
                       RTCAM_BENCH_WHIP_TOKEN_FILE=str(token_file),
                       RTCAM_BENCH_ROOM=str(js.ROOM),
                       RTCAM_BENCH_ADVERTISE=h.NetNs.DEVICE_IP)
            run = subprocess.run(ns.prefix + [bench, "--ignored", "--nocapture", "--test-threads=1", "bench_whip::"],
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for line in run.stdout.splitlines():
                if not line.startswith("[OpenH264]"):
                    print(line)
            if os.environ.get("RTCAM_BENCH_DEBUG"):
                print(sfu.janus_log_tail(120))
            return run.returncode
        finally:
            if sfu is not None:
                sfu.stop()
            ns.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
