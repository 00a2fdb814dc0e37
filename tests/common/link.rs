//! The session table and str0m peers behind emulated links, on simulated
//! time: each peer has a link each way (`str0m-netem`: rate, buffer, delay,
//! loss), and a stand-in encoder writes frames of the size its bitrate
//! target asks, the way openh264 does (two temporal layers: every other
//! frame droppable). Time jumps to whatever is due next: a frame, a packet
//! leaving a link, a timer of the table or of a peer.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rtcam::encode::SdpParams;
use rtcam::frame::{EncodedFrame, VideoCodec};
use rtcam::rtc::rate::RateRange;
use rtcam::rtc::{SessionConfig, SessionEvent, Sessions, ViewerId};
use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use str0m_netem::{Bitrate, DataSize, Netem, NetemConfig, Probability, RandomLoss};

pub const SERVER: &str = "10.0.0.1:8443";

/// One direction of a peer's path.
#[derive(Debug, Clone, Copy)]
pub struct Path {
    pub kbps: u64,
    pub delay: Duration,
    pub loss: f32,
}

impl Path {
    pub fn lan() -> Path {
        Path {
            kbps: 50_000,
            delay: Duration::from_millis(2),
            loss: 0.0,
        }
    }

    pub fn capped(kbps: u64) -> Path {
        Path {
            kbps,
            delay: Duration::from_millis(20),
            loss: 0.0,
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

    fn netem(&self, seed: u64) -> Netem<Datagram> {
        Netem::new(self.config(seed))
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

pub struct LinkPeer {
    pub rtc: Rtc,
    pub addr: SocketAddr,
    pub id: ViewerId,
    /// Server to peer, and back.
    down: Netem<Datagram>,
    up: Netem<Datagram>,
    pub connected: bool,
    /// (arrival, bytes, droppable) of every frame it received.
    pub frames: Vec<(Instant, usize, bool)>,
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
}

/// What the stand-in encoder did.
pub struct FakeEncoder {
    pub initial_kbps: u32,
    pub target_kbps: u32,
    pub fps: u32,
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
                seq: 0,
                next_frame: now,
                keyframe_due: true,
                last_key: None,
                since_key: 0,
                changes: Vec::new(),
            },
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
            down: down.netem(seed),
            up: up.netem(seed + 1),
            connected: false,
            frames: Vec::new(),
            timeout: self.now,
        });
        index
    }

    /// Peer `i`'s links change (the queue in them is kept).
    pub fn set_paths(&mut self, i: usize, down: Path, up: Path) {
        let seed = 100 + i as u64 * 2;
        self.peers[i].down.set_config(down.config(seed));
        self.peers[i].up.set_config(up.config(seed + 1));
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

    /// The encoder target the table asked for last, at or before `t`.
    pub fn target_at(&self, t: Instant) -> u32 {
        self.encoder
            .changes
            .iter()
            .rev()
            .find(|(at, _)| *at <= t)
            .map_or(self.encoder.initial_kbps, |(_, k)| *k)
    }

    /// Runs until `secs` after the start.
    pub fn run_until(&mut self, secs: f64) {
        let end = self.at(secs);
        while self.now < end {
            self.exchange();
            let next = self.next_due().min(end).max(self.now);
            self.now = next;
            self.tick();
        }
    }

    /// Moves everything that is due now: the table's datagrams into the
    /// links, links' arrivals into their receivers, peers' output.
    fn exchange(&mut self) {
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
                    p.down.handle_input(str0m_netem::Input::Packet(self.now, d));
                }
            }
            for p in &mut self.peers {
                moved |= drain_peer(p, self.now);
                while let Some(out) = p.down.poll_output() {
                    if let str0m_netem::Output::Packet(d) = out {
                        moved = true;
                        let input = Input::Receive(self.now, receive(&d));
                        let _ = p.rtc.handle_input(input);
                    }
                }
            }
            for i in 0..self.peers.len() {
                while let Some(out) = self.peers[i].up.poll_output() {
                    if let str0m_netem::Output::Packet(d) = out {
                        moved = true;
                        self.sessions
                            .handle_receive(self.now, d.source, d.destination, &d.data);
                    }
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
            next = next
                .min(p.timeout)
                .min(p.down.poll_timeout())
                .min(p.up.poll_timeout());
        }
        next
    }

    fn tick(&mut self) {
        let now = self.now;
        for p in &mut self.peers {
            p.down.handle_input(str0m_netem::Input::Timeout(now));
            p.up.handle_input(str0m_netem::Input::Timeout(now));
            if now >= p.timeout {
                let _ = p.rtc.handle_input(Input::Timeout(now));
            }
        }
        self.sessions.handle_timeout(now);
        if now >= self.encoder.next_frame {
            let frame = self.encoder.next(now);
            self.sessions.write_frame(&frame);
        }
    }
}

impl FakeEncoder {
    /// The next frame: the target's share of a second, split in NAL units
    /// of at most 1,100 bytes; a keyframe (8x the size) when asked, at most
    /// once a second; every other frame droppable.
    fn next(&mut self, now: Instant) -> EncodedFrame {
        self.seq += 1;
        self.next_frame = now + Duration::from_secs(1) / self.fps;
        let throttled = self
            .last_key
            .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1));
        let keyframe = self.keyframe_due && !throttled;
        if keyframe {
            self.keyframe_due = false;
            self.last_key = Some(now);
        }
        self.since_key = if keyframe { 0 } else { self.since_key + 1 };
        let droppable = self.since_key % 2 == 1;
        let per_frame = (self.target_kbps as usize * 1000 / 8 / self.fps as usize).max(200);
        let size = if keyframe { per_frame * 8 } else { per_frame };
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

/// A peer's output: datagrams into its uplink, events noted. Whether
/// anything came out.
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
                p.up.handle_input(str0m_netem::Input::Packet(now, d));
            }
            Ok(Output::Event(e)) => match e {
                Event::Connected => p.connected = true,
                Event::MediaData(d) => {
                    let droppable = rtcam::frame::h264_unreferenced(&d.data);
                    p.frames.push((now, d.data.len(), droppable));
                }
                _ => {}
            },
        }
    }
}
