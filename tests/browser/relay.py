"""A userspace UDP relay that stands for a bad network link (this kernel has no sch_netem).

rtcam binds its media socket on 127.0.0.1:P and advertises 127.0.0.2 (`--advertise`), so its only ICE
candidate is 127.0.0.2:P: the browser sends there, to the relay, which forwards each datagram to
127.0.0.1:P from a socket of its own per browser address, and sends rtcam's answers back from
127.0.0.2:P. rtcam maps the address a datagram really reached (127.0.0.1:P) to its advertised candidate,
as it does behind QEMU's port forward.

Each direction has its own random loss and delay; the way to the browser ("down") can also be capped in
rate, with a tail-drop buffer (a home router's queue). Counters say what went through, so a test can
tell what rtcam sent (offered) and what reached the browser (delivered), per second.
"""

from __future__ import annotations

import heapq
import random
import select
import socket
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Direction:
    loss: float = 0.0
    delay_s: float = 0.0
    kbps: float | None = None  # rate cap; None: unlimited
    buffer_bytes: int = 0  # tail-drop queue for the cap (0: 200 ms worth)
    # counters
    offered: int = 0
    offered_bytes: int = 0
    lost: int = 0
    overflowed: int = 0
    delivered: int = 0
    # (time, bytes) of every datagram offered, for rates over a window
    offered_log: list = field(default_factory=list)
    delivered_log: list = field(default_factory=list)
    # wall time (time.time(), as the page's clock) of every datagram the full queue dropped
    overflow_log: list = field(default_factory=list)
    # (wall time, SSRC) of every delivered RTP packet with the marker bit: a video frame's last packet
    marker_log: list = field(default_factory=list)
    # link state
    _free_at: float = 0.0  # when the cap's "wire" is free again
    _queued_bytes: int = 0

    def kbps_offered(self, t0: float, t1: float) -> float:
        return _rate(self.offered_log, t0, t1)

    def kbps_delivered(self, t0: float, t1: float) -> float:
        return _rate(self.delivered_log, t0, t1)


def frame_gaps(d: Direction, t0: float, over_s: float = 0.1) -> list[tuple[float, int]]:
    """When the link delivered video frames (the busiest SSRC's packets with the marker bit) more than
    `over_s` apart: (seconds after wall time t0, gap in ms), from t0 on."""
    if not d.marker_log:
        return []
    counts: dict[int, int] = {}
    for _, ssrc in d.marker_log:
        counts[ssrc] = counts.get(ssrc, 0) + 1
    video = max(counts, key=counts.get)
    times = [t for t, ssrc in d.marker_log if ssrc == video and t >= t0]
    return [(round(b - t0, 2), round((b - a) * 1000)) for a, b in zip(times, times[1:]) if b - a > over_s]


def overflow_bursts(d: Direction, t0: float, apart_s: float = 0.2) -> list[tuple[float, int]]:
    """The datagrams the full queue dropped, in bursts no more than `apart_s` apart: (seconds after wall
    time t0 the burst began, how many)."""
    out: list[tuple[float, int]] = []
    last = None
    for t in d.overflow_log:
        if last is None or t - last > apart_s:
            out.append((round(t - t0, 2), 0))
        out[-1] = (out[-1][0], out[-1][1] + 1)
        last = t
    return out


def _rate(log, t0, t1) -> float:
    b = sum(n for t, n in log if t0 <= t < t1)
    return b * 8 / 1000 / max(t1 - t0, 1e-6)


class Relay:
    """Relay(port, down=Direction(...), up=Direction(...)).start(); .stop()."""

    FRONT_IP = "127.0.0.2"
    BACK_IP = "127.0.0.1"

    def __init__(self, port: int, down: Direction | None = None, up: Direction | None = None, seed: int = 1):
        self.port = port
        self.down = down or Direction()
        self.up = up or Direction()
        if self.down.kbps and not self.down.buffer_bytes:
            self.down.buffer_bytes = max(int(self.down.kbps * 1000 / 8 / 5), 15_000)
        self.rng = random.Random(seed)
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.front.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.front.bind((self.FRONT_IP, port))
        self.front.setblocking(False)
        self.backs: dict[tuple, socket.socket] = {}  # browser address -> its socket towards rtcam
        self.clients: dict[socket.socket, tuple] = {}
        self.queue: list = []  # (due, seq, sock, data, addr, direction)
        self.seq = 0
        self.lock = threading.Lock()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="relay", daemon=True)

    def start(self) -> "Relay":
        self.thread.start()
        return self

    def stop(self):
        self.stopping = True
        self.thread.join(timeout=5)
        for s in list(self.backs.values()) + [self.front]:
            s.close()

    def _back_for(self, client) -> socket.socket:
        s = self.backs.get(client)
        if s is None:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            s.bind((self.BACK_IP, 0))
            s.connect((self.BACK_IP, self.port))
            s.setblocking(False)
            self.backs[client] = s
            self.clients[s] = client
        return s

    def _admit(self, d: Direction, now: float, data: bytes, sock, addr):
        d.offered += 1
        d.offered_bytes += len(data)
        d.offered_log.append((now, len(data)))
        if d.loss and self.rng.random() < d.loss:
            d.lost += 1
            return
        due = now + d.delay_s
        if d.kbps:
            if d._queued_bytes + len(data) > d.buffer_bytes:
                d.overflowed += 1
                d.overflow_log.append(time.time())
                return
            start = max(now, d._free_at)
            d._free_at = start + len(data) * 8 / (d.kbps * 1000)
            due = d._free_at + d.delay_s
            d._queued_bytes += len(data)
        self.seq += 1
        heapq.heappush(self.queue, (due, self.seq, sock, data, addr, d))

    def _run(self):
        while not self.stopping:
            now = time.monotonic()
            while self.queue and self.queue[0][0] <= now:
                _, _, sock, data, addr, d = heapq.heappop(self.queue)
                if d.kbps:
                    d._queued_bytes -= len(data)
                d.delivered += 1
                d.delivered_log.append((now, len(data)))
                # SRTP leaves the RTP header readable: version 2, not RTCP (payload types 72-76 with the marker)
                if len(data) >= 12 and data[0] >> 6 == 2 and data[1] & 0x80 and not 72 <= data[1] & 0x7F <= 76:
                    d.marker_log.append((time.time(), int.from_bytes(data[8:12], "big")))
                try:
                    if addr is None:
                        sock.send(data)
                    else:
                        sock.sendto(data, addr)
                except OSError:
                    pass
            timeout = 0.05
            if self.queue:
                timeout = max(0.0, min(timeout, self.queue[0][0] - time.monotonic()))
            socks = [self.front] + list(self.backs.values())
            readable, _, _ = select.select(socks, [], [], timeout)
            now = time.monotonic()
            for s in readable:
                for _ in range(64):
                    try:
                        data, addr = s.recvfrom(65536)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        break
                    if s is self.front:
                        self._admit(self.up, now, data, self._back_for(addr), None)
                    else:
                        self._admit(self.down, now, data, self.front, self.clients[s])
