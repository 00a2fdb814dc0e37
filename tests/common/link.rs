//! The session table and str0m peers behind emulated links, on simulated
//! time: each peer has a link each way (`str0m-netem`: rate, buffer, delay,
//! loss; or a drop-tail bottleneck of our own, [`Path::bottleneck`]), and a
//! stand-in encoder writes frames of the size its bitrate target asks, the
//! way openh264 does (two temporal layers: every other frame droppable).
//! Each peer shows frames as a browser does: a gap freezes its picture until
//! the next keyframe. Time jumps to whatever is due next: a frame, a packet
//! leaving a link, a timer of the table or of a peer.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rtcam::encode::SdpParams;
use rtcam::frame::{EncodedFrame, VideoCodec};
use rtcam::rtc::rate::RateRange;
use rtcam::rtc::{SessionConfig, SessionEvent, Sessions, ViewerId};
use str0m::change::SdpAnswer;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use str0m_netem::{Bitrate, DataSize, Netem, NetemConfig, Probability, RandomLoss};

pub const SERVER: &str = "10.0.0.1:8443";

/// How often a browser whose picture waits for a keyframe asks for one
/// again (Chromium's `kMaxWaitForKeyFrameMs`).
const PLI_EVERY: Duration = Duration::from_millis(200);
/// How often the table's bandwidth estimates are noted for [`LinkSim::report`].
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

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

    fn config(&self, seed: u64) -> NetemConfig {
        // A buffer of about 200 ms at the link's rate, like a home router's.
        let buffer = (self.kbps * 1000 / 8 / 5).max(15_000);
        NetemConfig::new()
            .latency(self.delay)
            .loss(RandomLoss::new(Probability::new(self.loss)))
            .link(Bitrate::kbps(self.kbps), DataSize::bytes(buffer as i64))
            .seed(seed)
    }

    /// How long the link takes to send `bytes`.
    fn serialize(&self, bytes: usize) -> Duration {
        Duration::from_nanos(bytes as u64 * 8_000_000 / self.kbps.max(1))
    }
}

#[derive(Debug, Clone)]
pub struct Datagram {
    source: SocketAddr,
    destination: SocketAddr,
    data: Vec<u8>,
}

impl AsRef<[u8]> for Datagram {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

/// One direction of a peer's path, and what it did with the datagrams.
struct Wire {
    link: Link,
    /// Links `set_paths` replaced with one of the other kind, still
    /// delivering what they hold.
    old: Vec<Link>,
    offered: usize,
    /// When each datagram it dropped (queue full, or lost at random) was
    /// offered.
    dropped: Vec<Instant>,
    /// (arrival, bytes) of each datagram it delivered.
    delivered: Vec<(Instant, usize)>,
}

impl Wire {
    fn new(path: Path, seed: u64) -> Wire {
        Wire {
            link: Link::new(path, seed),
            old: Vec::new(),
            offered: 0,
            dropped: Vec::new(),
            delivered: Vec::new(),
        }
    }

    fn send(&mut self, now: Instant, d: Datagram) {
        self.offered += 1;
        if !self.link.send(now, d) {
            self.dropped.push(now);
        }
    }

    /// A datagram that has arrived by `now`.
    fn poll(&mut self, now: Instant) -> Option<Datagram> {
        let d = self
            .old
            .iter_mut()
            .chain(std::iter::once(&mut self.link))
            .find_map(|l| l.poll(now))?;
        self.delivered.push((now, d.data.len()));
        Some(d)
    }

    fn next_arrival(&self) -> Option<Instant> {
        self.old
            .iter()
            .chain(std::iter::once(&self.link))
            .filter_map(Link::next_arrival)
            .min()
    }

    /// What is sent from now on takes `path`; what is on the way arrives
    /// as it would have.
    fn set_path(&mut self, path: Path, seed: u64) {
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

enum Link {
    Netem(Box<Netem<Datagram>>),
    DropTail(DropTail),
}

impl Link {
    fn new(path: Path, seed: u64) -> Link {
        match path.queue {
            Some(_) => Link::DropTail(DropTail::new(path, seed)),
            None => Link::Netem(Box::new(Netem::new(path.config(seed)))),
        }
    }

    /// Whether the link took the datagram (false: dropped).
    fn send(&mut self, now: Instant, d: Datagram) -> bool {
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

    fn poll(&mut self, now: Instant) -> Option<Datagram> {
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

    fn next_arrival(&self) -> Option<Instant> {
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
struct DropTail {
    path: Path,
    /// When the link will have sent everything it took.
    free_at: Option<Instant>,
    /// What it took, in order, with when each arrives.
    flight: VecDeque<(Instant, Datagram)>,
    /// xorshift64 state for random loss (str0m-netem's generator is its
    /// own).
    rng: u64,
}

impl DropTail {
    fn new(path: Path, seed: u64) -> DropTail {
        DropTail {
            path,
            free_at: None,
            flight: VecDeque::new(),
            rng: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
        }
    }

    fn send(&mut self, now: Instant, d: Datagram) -> bool {
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

    fn poll(&mut self, now: Instant) -> Option<Datagram> {
        if self.flight.front()?.0 > now {
            return None;
        }
        self.flight.pop_front().map(|(_, d)| d)
    }

    fn lost(&mut self) -> bool {
        if self.path.loss <= 0.0 {
            return false;
        }
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        ((self.rng >> 40) as f32 / (1u32 << 24) as f32) < self.path.loss
    }
}

pub struct LinkPeer {
    pub rtc: Rtc,
    pub addr: SocketAddr,
    pub id: ViewerId,
    /// Server to peer, and back.
    down: Wire,
    up: Wire,
    pub connected: bool,
    /// When it saw ICE and DTLS up.
    pub connected_at: Option<Instant>,
    /// (arrival, bytes, droppable) of every frame it received.
    pub frames: Vec<(Instant, usize, bool)>,
    /// When each frame it could decode arrived: what a browser shows.
    pub shown: Vec<Instant>,
    /// When each keyframe arrived.
    pub keyframes: Vec<Instant>,
    /// When a frame after a gap broke its picture.
    pub breaks: Vec<Instant>,
    /// When it asked for a keyframe (PLI).
    pub plis: Vec<Instant>,
    /// The table's bandwidth estimate towards it, noted when it changed
    /// (sampled every [`SAMPLE_EVERY`]).
    pub estimates: Vec<(Instant, u64)>,
    /// (time, count) of every change in how many times its datagrams go out.
    pub copies: Vec<(Instant, u8)>,
    /// Its picture waits for a keyframe: none came yet, or a gap since.
    waiting: bool,
    /// Whether it asks for a keyframe while waiting ([`LinkSim::ask_keyframes`]).
    asks_keyframes: bool,
    mid: Option<Mid>,
    timeout: Instant,
}

impl LinkPeer {
    /// Frames per second received in [from, to).
    pub fn fps(&self, from: Instant, to: Instant) -> f64 {
        let n = self
            .frames
            .iter()
            .filter(|(t, ..)| *t >= from && *t < to)
            .count();
        n as f64 / (to - from).as_secs_f64()
    }

    /// Droppable frames received in [from, to).
    pub fn droppable(&self, from: Instant, to: Instant) -> usize {
        let window = self.frames.iter().filter(|(t, ..)| *t >= from && *t < to);
        window.filter(|(_, _, d)| *d).count()
    }

    /// Video payload kbit/s received in [from, to).
    pub fn kbps(&self, from: Instant, to: Instant) -> f64 {
        let bytes: usize = self
            .frames
            .iter()
            .filter(|(t, ..)| *t >= from && *t < to)
            .map(|(_, b, _)| b)
            .sum();
        bytes as f64 * 8.0 / 1000.0 / (to - from).as_secs_f64()
    }

    /// When it showed its first frame.
    pub fn first_frame_at(&self) -> Option<Instant> {
        self.shown.first().copied()
    }

    /// Frames shown per second in [from, to).
    pub fn shown_fps(&self, from: Instant, to: Instant) -> f64 {
        let n = self
            .shown
            .iter()
            .filter(|t| **t >= from && **t < to)
            .count();
        n as f64 / (to - from).as_secs_f64()
    }

    /// The stretches of [from, to] its picture stood still, as (start,
    /// length): from `from` to the first frame shown after it, between
    /// frames shown, and from the last to `to` (a picture that stopped
    /// for good is frozen until the end).
    pub fn stills(&self, from: Instant, to: Instant) -> Vec<(Instant, Duration)> {
        let mut points = vec![from];
        points.extend(self.shown.iter().copied().filter(|t| *t > from && *t < to));
        points.push(to);
        points.windows(2).map(|w| (w[0], w[1] - w[0])).collect()
    }

    /// The longest its picture stood still within [from, to].
    pub fn max_freeze(&self, from: Instant, to: Instant) -> Duration {
        let stills = self.stills(from, to).into_iter();
        stills.map(|(_, d)| d).max().unwrap_or_default()
    }

    /// Each stretch of [from, to] its picture stood still longer than
    /// `over`, as (start, length).
    pub fn freezes(&self, over: Duration, from: Instant, to: Instant) -> Vec<(Instant, Duration)> {
        let stills = self.stills(from, to).into_iter();
        stills.filter(|(_, d)| *d > over).collect()
    }

    /// Datagrams to it that its link dropped in [from, to).
    pub fn drops(&self, from: Instant, to: Instant) -> usize {
        let dropped = self.down.dropped.iter();
        dropped.filter(|t| **t >= from && **t < to).count()
    }

    /// What its link carried to it in [from, to), kbit/s of datagrams.
    pub fn wire_kbps(&self, from: Instant, to: Instant) -> f64 {
        let bytes: usize = self
            .down
            .delivered
            .iter()
            .filter(|(t, _)| *t >= from && *t < to)
            .map(|(_, b)| b)
            .sum();
        bytes as f64 * 8.0 / 1000.0 / (to - from).as_secs_f64()
    }

    /// A whole frame arrived; a browser shows it if it can decode it. A
    /// gap before it (packets str0m stopped waiting for: not
    /// `contiguous`) means a frame it refers to may be gone, and nothing
    /// decodes again until a keyframe. Chromium knows no H.264 frame's
    /// references but "the frame before" (it cannot tell that the lost one
    /// was droppable), so any gap does.
    fn decode(&mut self, now: Instant, keyframe: bool, contiguous: bool) {
        if keyframe {
            self.keyframes.push(now);
            self.waiting = false;
        } else if !contiguous && !self.waiting {
            self.waiting = true;
            self.breaks.push(now);
        }
        if !self.waiting {
            self.shown.push(now);
        }
    }

    /// While its picture waits for a keyframe, a browser asks for one, and
    /// again each [`PLI_EVERY`] until one comes: at once when a frame it
    /// cannot decode arrives, and from its timer when none does.
    fn ask_keyframe(&mut self, now: Instant) {
        if !self.asks_keyframes || !self.waiting || self.frames.is_empty() {
            return;
        }
        let recent = self.plis.last();
        if recent.is_some_and(|t| now.saturating_duration_since(*t) < PLI_EVERY) {
            return;
        }
        let Some(mid) = self.mid else {
            return;
        };
        let asked = self
            .rtc
            .writer(mid)
            .is_some_and(|mut w| w.request_keyframe(None, KeyframeRequestKind::Pli).is_ok());
        if asked {
            self.plis.push(now);
        }
    }
}

/// What the stand-in encoder did.
pub struct FakeEncoder {
    pub initial_kbps: u32,
    pub target_kbps: u32,
    pub fps: u32,
    /// A keyframe's size: this many times a frame's share of the target,
    /// and at least `keyframe_floor` bytes.
    pub keyframe_ratio: f64,
    pub keyframe_floor: usize,
    /// At most one keyframe asked for in this long.
    pub keyframe_every: Duration,
    seq: u64,
    next_frame: Instant,
    keyframe_due: bool,
    last_key: Option<Instant>,
    since_key: u64,
    /// (time, target) of every change the table asked for.
    pub changes: Vec<(Instant, u32)>,
}

pub struct LinkSim {
    pub start: Instant,
    pub now: Instant,
    pub sessions: Sessions,
    pub peers: Vec<LinkPeer>,
    pub events: Vec<(Instant, SessionEvent)>,
    pub encoder: FakeEncoder,
    /// Whether peers that join from now on ask for a keyframe (PLI) while
    /// their picture waits for one, as browsers do. Off unless asked for:
    /// older tests count the table's keyframe requests.
    pub ask_keyframes: bool,
    /// Frames from a real encoder on the camera-like scene instead of the
    /// stand-in's (the send-path benchmark).
    pub scene: Option<SceneSource>,
    next_sample: Instant,
}

impl LinkSim {
    /// A table sending H.264 at up to `ceiling` kbit/s, 30 fps.
    pub fn new(ceiling: u32) -> LinkSim {
        let now = Instant::now();
        let codecs = vec![SdpParams::H264 {
            profile_level_id: 0x42e01f,
        }];
        let mut config = SessionConfig::new(vec![SERVER.parse().unwrap()], 16, codecs);
        config.rates = vec![(VideoCodec::H264, RateRange::from_ceiling(ceiling))];
        LinkSim {
            start: now,
            now,
            sessions: Sessions::new(config, now),
            peers: Vec::new(),
            events: Vec::new(),
            encoder: FakeEncoder {
                initial_kbps: ceiling,
                target_kbps: ceiling,
                fps: 30,
                keyframe_ratio: 8.0,
                keyframe_floor: 0,
                keyframe_every: Duration::from_secs(1),
                seq: 0,
                next_frame: now,
                keyframe_due: true,
                last_key: None,
                since_key: 0,
                changes: Vec::new(),
            },
            ask_keyframes: false,
            scene: None,
            next_sample: now,
        }
    }

    /// A browser-like peer behind `down` (to it) and `up` (from it).
    pub fn join(&mut self, down: Path, up: Path) -> usize {
        let index = self.peers.len();
        let addr: SocketAddr = format!("10.0.1.{}:5000", 10 + index).parse().unwrap();
        let mut rtc = Rtc::builder()
            .clear_codecs()
            .enable_h264(true)
            .build(self.now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        let mut api = rtc.sdp_api();
        api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        let (offer, pending) = api.apply().unwrap();
        let (id, answer) = self
            .sessions
            .add_viewer(self.now, &offer.to_sdp_string(), addr.ip())
            .expect("answered");
        rtc.sdp_api()
            .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
            .unwrap();
        let seed = 7 + index as u64 * 2;
        self.peers.push(LinkPeer {
            rtc,
            addr,
            id,
            down: Wire::new(down, seed),
            up: Wire::new(up, seed + 1),
            connected: false,
            connected_at: None,
            frames: Vec::new(),
            shown: Vec::new(),
            keyframes: Vec::new(),
            breaks: Vec::new(),
            plis: Vec::new(),
            estimates: Vec::new(),
            copies: Vec::new(),
            waiting: true,
            asks_keyframes: self.ask_keyframes,
            mid: None,
            timeout: self.now,
        });
        index
    }

    /// Peer `i`'s links change (what is on the way in them is kept).
    pub fn set_paths(&mut self, i: usize, down: Path, up: Path) {
        let seed = 100 + i as u64 * 2;
        self.peers[i].down.set_path(down, seed);
        self.peers[i].up.set_path(up, seed + 1);
    }

    /// How many times the table sends each of peer `i`'s datagrams.
    pub fn copies(&self, i: usize) -> u8 {
        let id = self.peers[i].id;
        let stats = self.sessions.viewer_stats();
        let copies = stats
            .iter()
            .find(|(v, ..)| *v == id)
            .map(|(_, _, s)| s.copies);
        copies.unwrap_or(1)
    }

    /// Peer `i` hangs up.
    pub fn leave(&mut self, i: usize) {
        let p = self.peers.remove(i);
        let _ = self.sessions.end(p.id, rtcam::rtc::EndReason::HangUp);
    }

    pub fn at(&self, secs: f64) -> Instant {
        self.start + Duration::from_secs_f64(secs)
    }

    /// Seconds from the start to `t`.
    pub fn secs(&self, t: Instant) -> f64 {
        t.saturating_duration_since(self.start).as_secs_f64()
    }

    /// The encoder target the table asked for last, at or before `t`.
    pub fn target_at(&self, t: Instant) -> u32 {
        self.encoder
            .changes
            .iter()
            .rev()
            .find(|(at, _)| *at <= t)
            .map_or(self.encoder.initial_kbps, |(_, k)| *k)
    }

    /// Peer `i`'s picture's stills over `over` in [from, to], as "start s
    /// +length ms" from the start, for a test's message.
    pub fn freezes_text(&self, i: usize, over: Duration, from: Instant, to: Instant) -> String {
        let freezes = self.peers[i].freezes(over, from, to).into_iter();
        let text = freezes.map(|(t, d)| format!("{:.2} s +{} ms", self.secs(t), d.as_millis()));
        text.collect::<Vec<_>>().join(", ")
    }

    /// What peer `i` went through, for a test's output: its start, when
    /// keyframes came, its picture broke and it asked for keyframes, where
    /// its picture stood still over 100 ms, then second by second the
    /// datagrams its link dropped, what reached it (on the wire, in video,
    /// in frames shown), and the bandwidth estimate and encoder target.
    pub fn report(&self, i: usize) -> String {
        let p = &self.peers[i];
        let when = |t: Option<Instant>| {
            t.map_or_else(|| "never".to_string(), |t| format!("{:.3} s", self.secs(t)))
        };
        let mut out = String::new();
        let _ = writeln!(
            out,
            "peer {i}: connected {}, first frame shown {}; its link dropped {} of {} datagrams",
            when(p.connected_at),
            when(p.first_frame_at()),
            p.down.dropped.len(),
            p.down.offered,
        );
        let _ = writeln!(out, "  keyframes at [{}]", self.times(&p.keyframes));
        let _ = writeln!(out, "  picture broke at [{}]", self.times(&p.breaks));
        let _ = writeln!(out, "  PLIs at [{}]", self.times(&p.plis));
        let from = p.first_frame_at().unwrap_or(self.start);
        let still = self.freezes_text(i, Duration::from_millis(100), from, self.now);
        let _ = writeln!(out, "  still over 100 ms after the first frame: [{still}]");
        let _ = writeln!(
            out,
            "     s  drops  wire kbps  video kbps  shown fps  estimate  target  copies"
        );
        let whole = self.now.saturating_duration_since(self.start).as_secs();
        for s in 0..whole {
            let (a, b) = (self.at(s as f64), self.at(s as f64 + 1.0));
            let estimate = p.estimates.iter().rev().find(|(t, _)| *t < b);
            let estimate = estimate.map_or_else(|| "-".to_string(), |(_, k)| k.to_string());
            let copies = p.copies.iter().rev().find(|(t, _)| *t < b);
            let _ = writeln!(
                out,
                "  {s:>4} {:>6} {:>10.0} {:>11.0} {:>10.1} {:>9} {:>7} {:>7}",
                p.drops(a, b),
                p.wire_kbps(a, b),
                p.kbps(a, b),
                p.shown_fps(a, b),
                estimate,
                self.target_at(b),
                copies.map_or(1, |(_, n)| *n),
            );
        }
        out
    }

    /// The encoder target's changes, as "time s: kbit/s" from the start.
    pub fn changes_text(&self) -> String {
        let changes = self.encoder.changes.iter();
        let text = changes.map(|(t, k)| format!("{:.2} s: {k}", self.secs(*t)));
        text.collect::<Vec<_>>().join(", ")
    }

    /// `ts` in seconds from the start.
    fn times(&self, ts: &[Instant]) -> String {
        let secs = ts.iter().map(|t| format!("{:.2}", self.secs(*t)));
        secs.collect::<Vec<_>>().join(" ")
    }

    /// Runs until `secs` after the start.
    pub fn run_until(&mut self, secs: f64) {
        let end = self.at(secs);
        while self.now < end {
            self.exchange();
            let next = self.next_due().min(end).max(self.now);
            self.now = next;
            self.tick();
            if self.now >= self.next_sample {
                self.sample();
                self.next_sample = self.now + SAMPLE_EVERY;
            }
        }
    }

    /// Moves everything that is due now: the table's datagrams into the
    /// links, links' arrivals into their receivers, peers' output.
    fn exchange(&mut self) {
        let now = self.now;
        for _ in 0..50 {
            let mut moved = false;
            while let Some(t) = self.sessions.poll_transmit() {
                moved = true;
                super::assert_fits_mtu(&t.contents);
                if let Some(p) = self.peers.iter_mut().find(|p| p.addr == t.destination) {
                    let d = Datagram {
                        source: t.source,
                        destination: t.destination,
                        data: t.contents.to_vec(),
                    };
                    p.down.send(now, d);
                }
            }
            for p in &mut self.peers {
                moved |= drain_peer(p, now);
                while let Some(d) = p.down.poll(now) {
                    moved = true;
                    let _ = p.rtc.handle_input(Input::Receive(now, receive(&d)));
                }
            }
            for p in &mut self.peers {
                while let Some(d) = p.up.poll(now) {
                    moved = true;
                    self.sessions
                        .handle_receive(now, d.source, d.destination, &d.data);
                }
            }
            while let Some(e) = self.sessions.poll_event() {
                self.on_event(e);
            }
            if !moved {
                return;
            }
        }
    }

    fn on_event(&mut self, e: SessionEvent) {
        match e {
            SessionEvent::Bitrate(VideoCodec::H264, kbps) => {
                self.encoder.target_kbps = kbps;
                self.encoder.changes.push((self.now, kbps));
            }
            SessionEvent::KeyframeWanted(..) => self.encoder.keyframe_due = true,
            _ => {}
        }
        self.events.push((self.now, e));
    }

    fn next_due(&self) -> Instant {
        let mut next = self.encoder.next_frame;
        if let Some(t) = self.sessions.poll_timeout() {
            next = next.min(t);
        }
        for p in &self.peers {
            next = next.min(p.timeout);
            let arrivals = [p.down.next_arrival(), p.up.next_arrival()];
            for t in arrivals.into_iter().flatten() {
                next = next.min(t);
            }
        }
        next
    }

    fn tick(&mut self) {
        let now = self.now;
        for p in &mut self.peers {
            if now >= p.timeout {
                let _ = p.rtc.handle_input(Input::Timeout(now));
            }
            p.ask_keyframe(now);
        }
        self.sessions.handle_timeout(now);
        if now >= self.encoder.next_frame {
            let frame = self.encoder.next(now);
            let frame = match &mut self.scene {
                Some(scene) => scene.next(&mut self.encoder, now),
                None => Some(frame),
            };
            if let Some(frame) = frame {
                self.sessions.write_frame(&frame);
            }
        }
    }

    /// Notes each peer's bandwidth estimate as the table has it.
    fn sample(&mut self) {
        let stats = self.sessions.viewer_stats();
        for p in &mut self.peers {
            let mine = stats.iter().find(|(v, ..)| *v == p.id);
            let kbps = mine.and_then(|(_, _, s)| s.bwe_kbps);
            let copies = mine.map_or(1, |(_, _, s)| s.copies);
            if p.copies.last().map_or(1, |(_, n)| *n) != copies {
                p.copies.push((self.now, copies));
            }
            let last = p.estimates.last().map(|(_, k)| *k);
            if let Some(k) = kbps.filter(|k| last != Some(*k)) {
                p.estimates.push((self.now, k));
            }
        }
    }
}

impl FakeEncoder {
    /// Keyframes as openh264 makes them at 720p: 37.1 KB against 7.7 KB
    /// for the other frames at 1935 kbit/s (README, the recorder's
    /// measurement), about 4.8 frames; at low rates openh264 cannot raise
    /// an IDR's QP past its cap, so a floor (9 KB: a placeholder until
    /// `src/encode/openh264.rs` measures it); at most one each 500 ms
    /// (`encode::KEYFRAME_MIN_INTERVAL`).
    pub fn like_openh264(&mut self) {
        self.keyframe_ratio = 4.8;
        self.keyframe_floor = 9_000;
        self.keyframe_every = Duration::from_millis(500);
    }

    /// The next frame: the target's share of a second, split in NAL units
    /// of at most 1,100 bytes; a keyframe (`keyframe_ratio` times the
    /// size) when asked, at most once each `keyframe_every`; every other
    /// frame droppable.
    fn next(&mut self, now: Instant) -> EncodedFrame {
        self.seq += 1;
        self.next_frame = now + Duration::from_secs(1) / self.fps;
        let throttled = self
            .last_key
            .is_some_and(|t| now.saturating_duration_since(t) < self.keyframe_every);
        let keyframe = self.keyframe_due && !throttled;
        if keyframe {
            self.keyframe_due = false;
            // As `Encoder::encode`: the first keyframe, made before any
            // viewer is connected, does not hold back the one a viewer asks
            // for on connecting.
            if self.seq > 1 {
                self.last_key = Some(now);
            }
        }
        self.since_key = if keyframe { 0 } else { self.since_key + 1 };
        let droppable = !self.since_key.is_multiple_of(2);
        let per_frame = (self.target_kbps as usize * 1000 / 8 / self.fps as usize).max(200);
        let size = if keyframe {
            ((per_frame as f64 * self.keyframe_ratio) as usize).max(self.keyframe_floor)
        } else {
            per_frame
        };
        let mut data = Vec::with_capacity(size + 64);
        if keyframe {
            data.extend_from_slice(&[0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1f, 0x8c]);
            data.extend_from_slice(&[0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80]);
        }
        let header = match (keyframe, droppable) {
            (true, _) => 0x65,
            (false, true) => 0x01,
            (false, false) => 0x41,
        };
        let mut left = size;
        while left > 0 {
            let n = left.min(1100);
            data.extend_from_slice(&[0, 0, 0, 1, header]);
            data.extend((0..n).map(|i| (i as u64 ^ self.seq) as u8 | 1));
            left -= n;
        }
        EncodedFrame {
            codec: VideoCodec::H264,
            data: data.into(),
            keyframe,
            droppable,
            width: 1280,
            height: 720,
            captured: now,
            stamp_ms: 0,
            seq: self.seq,
        }
    }
}

fn receive(d: &Datagram) -> Receive<'_> {
    Receive {
        proto: Protocol::Udp,
        source: d.source,
        destination: d.destination,
        contents: (&d.data[..]).try_into().unwrap(),
    }
}

/// Whether an H.264 access unit holds an IDR slice: a decoder can start
/// there.
fn h264_keyframe(au: &[u8]) -> bool {
    rtcam::frame::nal_units(au).any(|n| n.first().is_some_and(|b| b & 0x1f == 5))
}

/// A peer's output: datagrams into its uplink, events noted, frames shown.
/// Whether anything came out.
fn drain_peer(p: &mut LinkPeer, now: Instant) -> bool {
    let mut moved = false;
    loop {
        match p.rtc.poll_output() {
            Ok(Output::Timeout(t)) => {
                p.timeout = t;
                return moved;
            }
            Err(_) => {
                p.timeout = now + Duration::from_secs(3600);
                return moved;
            }
            Ok(Output::Transmit(t)) => {
                moved = true;
                let d = Datagram {
                    source: t.source,
                    destination: t.destination,
                    data: t.contents.to_vec(),
                };
                p.up.send(now, d);
            }
            Ok(Output::Event(e)) => match e {
                Event::Connected => {
                    p.connected = true;
                    p.connected_at.get_or_insert(now);
                }
                Event::MediaData(d) => {
                    let droppable = rtcam::frame::h264_unreferenced(&d.data);
                    p.frames.push((now, d.data.len(), droppable));
                    p.mid = Some(d.mid);
                    p.decode(now, h264_keyframe(&d.data), d.contiguous);
                    p.ask_keyframe(now);
                }
                _ => {}
            },
        }
    }
}

/// openh264 encoding the camera-like scene (`capture::scene`, what
/// `--source test` shows) at the stand-in's times, targets and keyframe
/// asks: the whole send path with real frames.
pub struct SceneSource {
    scene: rtcam::capture::scene::Scene,
    raw: rtcam::frame::RawFrame,
    encoder: rtcam::encode::Encoder,
    n: u64,
    kbps: u32,
}

impl SceneSource {
    pub fn openh264(width: u32, height: u32, fps: u32, kbps: u32) -> SceneSource {
        let settings = rtcam::encode::EncoderSettings {
            width,
            height,
            fps,
            bitrate_kbps: kbps,
            threads: 1,
            slice_bytes: rtcam::encode::DEFAULT_SLICE_BYTES,
        };
        let inner = rtcam::encode::openh264::OpenH264::new(settings).expect("openh264");
        SceneSource {
            scene: rtcam::capture::scene::Scene::new(width as usize, height as usize),
            raw: rtcam::frame::RawFrame::black(2, 2),
            encoder: rtcam::encode::Encoder::new(Box::new(inner)),
            n: 0,
            kbps,
        }
    }

    /// The next picture encoded; `stand_in` (whose frame was just made and
    /// is thrown away) says the target and whether a keyframe was asked.
    fn next(&mut self, stand_in: &mut FakeEncoder, now: Instant) -> Option<EncodedFrame> {
        if stand_in.target_kbps != self.kbps {
            self.kbps = stand_in.target_kbps;
            self.encoder.set_bitrate(self.kbps).expect("bitrate");
        }
        if stand_in.since_key == 0 {
            self.encoder.request_keyframe();
        }
        self.n += 1;
        self.scene.draw(&mut self.raw, self.n, self.n);
        self.raw.captured = now;
        self.encoder.encode(&self.raw).expect("encode")
    }
}
