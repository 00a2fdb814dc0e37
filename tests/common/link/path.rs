//! The emulated links: str0m-netem's (rate, buffer, delay, loss) or a
//! drop-tail bottleneck of our own, each way of a peer's path.

use super::*;

/// One direction of a peer's path.
#[derive(Debug, Clone, Copy)]
pub struct Path {
    pub kbps: u64,
    pub delay: Duration,
    pub loss: f32,
    /// A drop-tail queue of this long at the link's rate ([`DropTail`]).
    /// `None`: str0m-netem's byte buffer of about 200 ms (`config`).
    pub queue: Option<Duration>,
}

impl Path {
    pub fn lan() -> Path {
        Path {
            kbps: 50_000,
            delay: Duration::from_millis(2),
            loss: 0.0,
            queue: None,
        }
    }

    /// A wired gigabit LAN: a keyframe's burst reaches the viewer within
    /// the 250 us its transport-wide feedback can tell apart, so a probe
    /// riding on that burst alone measures nothing.
    pub fn gigabit() -> Path {
        Path {
            kbps: 1_000_000,
            delay: Duration::from_micros(200),
            loss: 0.0,
            queue: None,
        }
    }

    pub fn capped(kbps: u64) -> Path {
        Path {
            kbps,
            delay: Duration::from_millis(20),
            loss: 0.0,
            queue: None,
        }
    }

    /// A home link's bottleneck: `kbps` behind a drop-tail queue of
    /// `queue_ms` at that rate (a datagram that would wait longer for the
    /// link is dropped), then 20 ms to the viewer.
    ///
    /// Not str0m-netem's link: its buffer counts a datagram from arrival
    /// until delivery, so the bytes in the delay stage count as queued (a
    /// buffer of rate × (queue + delay) is the queue only while the link
    /// is full; below that a burst gets more room), and it hands each
    /// datagram over when the link starts sending it rather than when the
    /// last byte has left.
    pub fn bottleneck(kbps: u64, queue_ms: u64) -> Path {
        Path {
            queue: Some(Duration::from_millis(queue_ms)),
            ..Path::capped(kbps)
        }
    }

    pub fn lossy(loss: f32) -> Path {
        Path {
            loss,
            delay: Duration::from_millis(10),
            ..Path::lan()
        }
    }

    pub(super) fn config(&self, seed: u64) -> NetemConfig {
        // A buffer of about 200 ms at the link's rate, like a home router's.
        let buffer = (self.kbps * 1000 / 8 / 5).max(15_000);
        NetemConfig::new()
            .latency(self.delay)
            .loss(RandomLoss::new(Probability::new(self.loss)))
            .link(Bitrate::kbps(self.kbps), DataSize::bytes(buffer as i64))
            .seed(seed)
    }

    /// How long the link takes to send `bytes`.
    pub(super) fn serialize(&self, bytes: usize) -> Duration {
        Duration::from_nanos(bytes as u64 * 8_000_000 / self.kbps.max(1))
    }
}

#[derive(Debug, Clone)]
pub struct Datagram {
    pub(super) source: SocketAddr,
    pub(super) destination: SocketAddr,
    pub(super) data: Vec<u8>,
}

impl AsRef<[u8]> for Datagram {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

/// One direction of a peer's path, and what it did with the datagrams.
pub(super) struct Wire {
    pub(super) link: Link,
    /// Links `set_paths` replaced with one of the other kind, still
    /// delivering what they hold.
    pub(super) old: Vec<Link>,
    pub(super) offered: usize,
    /// When each datagram it dropped (queue full, or lost at random) was
    /// offered.
    pub(super) dropped: Vec<Instant>,
    /// (arrival, bytes) of each datagram it delivered.
    pub(super) delivered: Vec<(Instant, usize)>,
}

impl Wire {
    pub(super) fn new(path: Path, seed: u64) -> Wire {
        Wire {
            link: Link::new(path, seed),
            old: Vec::new(),
            offered: 0,
            dropped: Vec::new(),
            delivered: Vec::new(),
        }
    }

    pub(super) fn send(&mut self, now: Instant, d: Datagram) {
        self.offered += 1;
        if !self.link.send(now, d) {
            self.dropped.push(now);
        }
    }

    /// A datagram that has arrived by `now`.
    pub(super) fn poll(&mut self, now: Instant) -> Option<Datagram> {
        let d = self
            .old
            .iter_mut()
            .chain(std::iter::once(&mut self.link))
            .find_map(|l| l.poll(now))?;
        self.delivered.push((now, d.data.len()));
        Some(d)
    }

    pub(super) fn next_arrival(&self) -> Option<Instant> {
        self.old
            .iter()
            .chain(std::iter::once(&self.link))
            .filter_map(Link::next_arrival)
            .min()
    }

    /// What is sent from now on takes `path`; what is on the way arrives
    /// as it would have.
    pub(super) fn set_path(&mut self, path: Path, seed: u64) {
        let same_kind = matches!(
            (&self.link, path.queue),
            (Link::Netem(_), None) | (Link::DropTail(_), Some(_))
        );
        if !same_kind {
            let old = std::mem::replace(&mut self.link, Link::new(path, seed));
            self.old.push(old);
            return;
        }
        match &mut self.link {
            Link::Netem(n) => n.set_config(path.config(seed)),
            Link::DropTail(q) => q.path = path,
        }
    }
}

pub(super) enum Link {
    Netem(Box<Netem<Datagram>>),
    DropTail(DropTail),
}

impl Link {
    pub(super) fn new(path: Path, seed: u64) -> Link {
        match path.queue {
            Some(_) => Link::DropTail(DropTail::new(path, seed)),
            None => Link::Netem(Box::new(Netem::new(path.config(seed)))),
        }
    }

    /// Whether the link took the datagram (false: dropped).
    pub(super) fn send(&mut self, now: Instant, d: Datagram) -> bool {
        match self {
            // str0m-netem drops silently, and only on the way in: a
            // datagram it took is one more in its queue.
            Link::Netem(n) => {
                let before = n.queue_len();
                n.handle_input(str0m_netem::Input::Packet(now, d));
                n.queue_len() > before
            }
            Link::DropTail(q) => q.send(now, d),
        }
    }

    pub(super) fn poll(&mut self, now: Instant) -> Option<Datagram> {
        match self {
            Link::Netem(n) => {
                n.handle_input(str0m_netem::Input::Timeout(now));
                while let Some(out) = n.poll_output() {
                    if let str0m_netem::Output::Packet(d) = out {
                        return Some(d);
                    }
                }
                None
            }
            Link::DropTail(q) => q.poll(now),
        }
    }

    pub(super) fn next_arrival(&self) -> Option<Instant> {
        match self {
            Link::Netem(n) => (!n.is_empty()).then(|| n.poll_timeout()),
            Link::DropTail(q) => q.flight.front().map(|(t, _)| *t),
        }
    }
}

/// A link of `path.kbps` behind a drop-tail queue of `path.queue`, as in a
/// home router: datagrams leave one after another at the link's rate, one
/// that would wait longer than the queue for the link is dropped, and each
/// arrives `path.delay` after its last byte left. It counts datagram bytes
/// (UDP payload), as str0m-netem and the browser tests' relay do.
pub(super) struct DropTail {
    pub(super) path: Path,
    /// When the link will have sent everything it took.
    pub(super) free_at: Option<Instant>,
    /// What it took, in order, with when each arrives.
    pub(super) flight: VecDeque<(Instant, Datagram)>,
    /// xorshift64 state for random loss (str0m-netem's generator is its
    /// own).
    pub(super) rng: u64,
}

impl DropTail {
    pub(super) fn new(path: Path, seed: u64) -> DropTail {
        DropTail {
            path,
            free_at: None,
            flight: VecDeque::new(),
            rng: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
        }
    }

    pub(super) fn send(&mut self, now: Instant, d: Datagram) -> bool {
        if self.lost() {
            return false;
        }
        let start = self.free_at.map_or(now, |t| t.max(now));
        if start - now > self.path.queue.unwrap_or(Duration::MAX) {
            return false;
        }
        let done = start + self.path.serialize(d.data.len());
        self.free_at = Some(done);
        // A shorter delay from `set_paths` does not overtake what is on
        // the way.
        let last = self.flight.back().map_or(now, |(t, _)| *t);
        self.flight
            .push_back(((done + self.path.delay).max(last), d));
        true
    }

    pub(super) fn poll(&mut self, now: Instant) -> Option<Datagram> {
        if self.flight.front()?.0 > now {
            return None;
        }
        self.flight.pop_front().map(|(_, d)| d)
    }

    pub(super) fn lost(&mut self) -> bool {
        if self.path.loss <= 0.0 {
            return false;
        }
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        ((self.rng >> 40) as f32 / (1u32 << 24) as f32) < self.path.loss
    }
}
