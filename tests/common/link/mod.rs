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

mod encoder;
mod path;
mod peer;

pub use encoder::*;
pub use path::*;
pub use peer::*;

pub const SERVER: &str = "10.0.0.1:8443";

/// How often the table's bandwidth estimates are noted for [`LinkSim::report`].
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

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
