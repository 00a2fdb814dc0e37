//! Two sides in one process on simulated time, str0m style: the appliance's
//! session table and str0m peers standing in for browsers, datagrams
//! passed by hand. No sockets, no sleeping: fast and deterministic.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtcam::encode::SdpParams;
use rtcam::frame::{EncodedFrame, VideoCodec};
use rtcam::rtc::{SessionConfig, SessionEvent, Sessions, ViewerId};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

pub const SERVER: &str = "10.0.0.1:8443";

pub struct Peer {
    pub rtc: Rtc,
    pub addr: SocketAddr,
    pub id: Option<ViewerId>,
    pub mid: Option<Mid>,
    pub connected: bool,
    pub frames: Vec<Arc<[u8]>>,
    /// A peer that stopped talking (vanished browser).
    pub silent: bool,
    /// Its `rtcam` data channel once open, and the text messages on it.
    pub channel: Option<str0m::channel::ChannelId>,
    pub messages: Vec<String>,
    /// Its `serial` channel once open, and the bytes on it.
    pub serial: Option<str0m::channel::ChannelId>,
    pub serial_bytes: Vec<u8>,
    /// Its audio section, and the audio packets it received.
    pub audio_mid: Option<Mid>,
    pub audio: Vec<Arc<[u8]>>,
}

impl Peer {
    /// A peer of the table, its session `id`, before anything arrived.
    fn new(
        rtc: Rtc,
        addr: SocketAddr,
        id: ViewerId,
        mid: Option<Mid>,
        audio_mid: Option<Mid>,
    ) -> Peer {
        Peer {
            rtc,
            addr,
            id: Some(id),
            mid,
            connected: false,
            frames: Vec::new(),
            silent: false,
            channel: None,
            messages: Vec::new(),
            serial: None,
            serial_bytes: Vec::new(),
            audio_mid,
            audio: Vec::new(),
        }
    }
}

pub struct Sim {
    pub now: Instant,
    pub sessions: Sessions,
    pub peers: Vec<Peer>,
    pub events: Vec<SessionEvent>,
    /// The largest datagram the table sent so far.
    pub largest_datagram: usize,
    seq: u64,
}

impl Sim {
    pub fn new(max_viewers: usize) -> Sim {
        Sim::with_codecs(max_viewers, codecs())
    }

    /// A table that sends `codecs` (a passthrough camera's own H.264, say).
    pub fn with_codecs(max_viewers: usize, codecs: Vec<SdpParams>) -> Sim {
        Sim::with_config(SessionConfig::new(
            vec![SERVER.parse().unwrap()],
            max_viewers,
            codecs,
        ))
    }

    /// A table with its own configuration (its candidate must be [`SERVER`]).
    pub fn with_config(config: SessionConfig) -> Sim {
        let now = Instant::now();
        Sim {
            now,
            sessions: Sessions::new(config, now),
            peers: Vec::new(),
            events: Vec::new(),
            largest_datagram: 0,
            seq: 0,
        }
    }

    /// Rebuilds the table with a per-address limit (before anyone joins).
    pub fn sessions_config_per_address(&mut self, n: usize) {
        let mut config = SessionConfig::new(vec![SERVER.parse().unwrap()], 8, codecs());
        config.max_per_address = n;
        self.sessions = Sessions::new(config, self.now);
    }

    /// A browser-like offer: recvonly video with the usual H.264 profiles.
    pub fn offer(&self, index: usize) -> (Rtc, String, str0m::change::SdpPendingOffer, SocketAddr) {
        let (rtc, offer, pending, addr, _) = self.offer_mid(index, Browser::Chromium);
        (rtc, offer, pending, addr)
    }

    fn offer_mid(
        &self,
        index: usize,
        browser: Browser,
    ) -> (Rtc, String, str0m::change::SdpPendingOffer, SocketAddr, Mid) {
        let (rtc, offer, pending, addr, mid, _) = self.offer_of(index, browser, &[], None);
        (rtc, offer, pending, addr, mid)
    }

    fn offer_of(
        &self,
        index: usize,
        browser: Browser,
        channels: &[&str],
        audio: Option<Direction>,
    ) -> (
        Rtc,
        String,
        str0m::change::SdpPendingOffer,
        SocketAddr,
        Mid,
        Option<Mid>,
    ) {
        let addr: SocketAddr = format!("10.0.0.{}:5000", 10 + index).parse().unwrap();
        let builder = Rtc::builder().clear_codecs().enable_opus(true, false);
        let builder = match browser {
            // Chromium offers both; we must pick H.264.
            Browser::Chromium => builder.enable_vp8(true).enable_h264(true),
            // Firefox without its OpenH264 plugin.
            Browser::FirefoxOffline => builder.enable_vp8(true).enable_vp9(true),
        };
        let mut rtc = builder.build(self.now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        let mut api = rtc.sdp_api();
        let audio_mid = audio.map(|dir| api.add_media(MediaKind::Audio, dir, None, None, None));
        let mid = api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        for label in channels {
            api.add_channel(label.to_string());
        }
        let (offer, pending) = api.apply().unwrap();
        (rtc, offer.to_sdp_string(), pending, addr, mid, audio_mid)
    }

    /// Adds a peer and answers its offer. Returns its index.
    pub fn join(&mut self) -> usize {
        self.join_as(Browser::Chromium)
    }

    /// Adds a peer that offers what `browser` offers.
    pub fn join_as(&mut self, browser: Browser) -> usize {
        self.join_with(browser, &[])
    }

    /// Adds a Chromium-like peer whose offer makes the `rtcam` data channel.
    pub fn join_with_channel(&mut self) -> usize {
        self.join_with(Browser::Chromium, &["rtcam"])
    }

    /// Adds a peer that makes the `rtcam` and the `serial` channels.
    pub fn join_with_serial(&mut self) -> usize {
        self.join_with(Browser::Chromium, &["rtcam", "serial"])
    }

    fn join_with(&mut self, browser: Browser, channels: &[&str]) -> usize {
        self.join_full(browser, channels, None)
    }

    /// Adds a peer whose offer has an audio section in `audio`'s direction
    /// (sendrecv: a page that may talk; recvonly: a WHEP player).
    pub fn join_full(
        &mut self,
        browser: Browser,
        channels: &[&str],
        audio: Option<Direction>,
    ) -> usize {
        let index = self.peers.len();
        let (mut rtc, offer, pending, addr, mid, audio_mid) =
            self.offer_of(index, browser, channels, audio);
        let (id, answer) = self
            .sessions
            .add_viewer(self.now, &offer, addr.ip())
            .expect("answered");
        rtc.sdp_api()
            .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
            .unwrap();
        // As the shell does for a logged-in page.
        self.sessions.grant(id, rtcam::rtc::Grant::owner());
        self.peers
            .push(Peer::new(rtc, addr, id, Some(mid), audio_mid));
        index
    }

    /// Starts a WHIP publish to a str0m receiver standing in for an SFU
    /// (full ICE, answering), whose codecs `receiver` enables. Returns its
    /// index, or the table's refusal of the answer.
    pub fn publish(
        &mut self,
        spec: rtcam::rtc::PublishSpec,
        receiver: impl FnOnce(str0m::RtcConfig) -> str0m::RtcConfig,
    ) -> Result<usize, rtcam::rtc::SessionError> {
        let index = self.peers.len();
        let addr: SocketAddr = format!("10.0.1.{}:7000", 10 + index).parse().unwrap();
        let (id, offer) = self.sessions.add_publisher(self.now, spec).expect("offer");
        assert!(offer.contains("a=candidate:"), "candidates in the offer");
        let mut rtc = receiver(Rtc::builder().clear_codecs()).build(self.now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        let answer = rtc
            .sdp_api()
            .accept_offer(SdpOffer::from_sdp_string(&offer).unwrap())
            .unwrap();
        self.sessions
            .publisher_answer(self.now, id, &answer.to_sdp_string())?;
        self.peers.push(Peer::new(rtc, addr, id, None, None));
        Ok(index)
    }

    /// Peer `i` sends `text` on its `rtcam` channel.
    pub fn say(&mut self, i: usize, text: &str) {
        let p = &mut self.peers[i];
        let id = p.channel.expect("the channel is open");
        assert!(
            p.rtc
                .channel(id)
                .unwrap()
                .write(false, text.as_bytes())
                .unwrap()
        );
    }

    /// Peer `i` writes `bytes` on its `serial` channel.
    pub fn write_serial(&mut self, i: usize, bytes: &[u8]) {
        let p = &mut self.peers[i];
        let id = p.serial.expect("the serial channel is open");
        assert!(p.rtc.channel(id).unwrap().write(true, bytes).unwrap());
    }

    /// The JSON messages peer `i` received so far.
    pub fn received(&self, i: usize) -> Vec<serde_json::Value> {
        self.peers[i]
            .messages
            .iter()
            .map(|m| serde_json::from_str(m).expect("JSON"))
            .collect()
    }

    /// Moves every pending datagram both ways, then advances time by `dt`.
    /// Steps until every peer's `rtcam` data channel is open (2 s at most).
    pub fn open_channels(&mut self) {
        for _ in 0..200 {
            if self.peers.iter().all(|p| p.channel.is_some()) {
                return;
            }
            self.step(Duration::from_millis(10));
        }
        panic!("data channels did not open");
    }

    pub fn step(&mut self, dt: Duration) {
        // A peer reads what arrived after every few datagrams, as a browser
        // does (str0m's DTLS holds at most 30 unread datagrams).
        for _ in 0..400 {
            let mut moved = false;
            let mut delivered = 0;
            while delivered < 16
                && let Some(t) = self.sessions.poll_transmit()
            {
                moved = true;
                delivered += 1;
                super::assert_fits_mtu(&t.contents);
                self.largest_datagram = self.largest_datagram.max(t.contents.len());
                if let Some(p) = self.peers.iter_mut().find(|p| p.addr == t.destination) {
                    if p.silent {
                        continue;
                    }
                    let input = Input::Receive(
                        self.now,
                        Receive {
                            proto: Protocol::Udp,
                            source: t.source,
                            destination: t.destination,
                            contents: (&t.contents[..]).try_into().unwrap(),
                        },
                    );
                    p.rtc.handle_input(input).unwrap();
                }
            }
            for i in 0..self.peers.len() {
                for (to, data) in self.drain_peer(i) {
                    moved = true;
                    let from = self.peers[i].addr;
                    self.sessions.handle_receive(self.now, from, to, &data);
                }
            }
            while let Some(e) = self.sessions.poll_event() {
                self.events.push(e);
            }
            if !moved {
                break;
            }
        }
        self.now += dt;
        self.sessions.handle_timeout(self.now);
        for p in self.peers.iter_mut().filter(|p| !p.silent) {
            let _ = p.rtc.handle_input(Input::Timeout(self.now));
        }
        while let Some(e) = self.sessions.poll_event() {
            self.events.push(e);
        }
    }

    fn drain_peer(&mut self, i: usize) -> Vec<(SocketAddr, Vec<u8>)> {
        let p = &mut self.peers[i];
        let mut out = Vec::new();
        loop {
            match p.rtc.poll_output() {
                Ok(Output::Timeout(_)) | Err(_) => break,
                Ok(Output::Transmit(t)) => {
                    if !p.silent {
                        out.push((t.destination, t.contents.to_vec()));
                    }
                }
                Ok(Output::Event(e)) => match e {
                    Event::Connected => p.connected = true,
                    Event::MediaAdded(m) if m.kind == MediaKind::Audio => p.audio_mid = Some(m.mid),
                    Event::MediaAdded(m) => p.mid = Some(m.mid),
                    Event::MediaData(d) if Some(d.mid) == p.audio_mid => p.audio.push(d.data),
                    Event::MediaData(d) => p.frames.push(d.data),
                    Event::ChannelOpen(id, label) if label == "serial" => p.serial = Some(id),
                    Event::ChannelOpen(id, _) => p.channel = Some(id),
                    Event::ChannelData(d) if Some(d.id) == p.serial => {
                        p.serial_bytes.extend_from_slice(&d.data)
                    }
                    Event::ChannelData(d) => p
                        .messages
                        .push(String::from_utf8_lossy(&d.data).into_owned()),
                    _ => {}
                },
            }
        }
        out
    }

    /// Runs until every peer is connected (or panics after 10 s simulated).
    pub fn connect_all(&mut self) {
        for _ in 0..1000 {
            if self.peers.iter().all(|p| p.connected || p.silent) {
                // One more turn so the server side sees its Connected too.
                self.step(Duration::from_millis(10));
                return;
            }
            self.step(Duration::from_millis(10));
        }
        panic!("peers did not connect");
    }

    /// One encoded H.264 frame (fake but well-formed Annex-B) to every viewer.
    pub fn frame(&mut self, keyframe: bool) {
        self.frame_of(VideoCodec::H264, keyframe);
    }

    /// One encoded frame of `codec`: fake but well-formed Annex-B, or a
    /// VP8 frame header (keyframe: start code and size).
    pub fn frame_of(&mut self, codec: VideoCodec, keyframe: bool) {
        self.frame_sized(codec, keyframe, 300);
    }

    /// A frame of `codec` with `size` bytes of payload after its headers.
    pub fn frame_sized(&mut self, codec: VideoCodec, keyframe: bool, size: usize) {
        self.seq += 1;
        let mut data = Vec::new();
        if codec == VideoCodec::Vp8 {
            let tag = if keyframe { 0x10 } else { 0x11 };
            data.extend_from_slice(&[tag, 0x02, 0x00]);
            if keyframe {
                data.extend_from_slice(&[0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01]);
            }
        } else if keyframe {
            data.extend_from_slice(&[0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1f, 0x8c]);
            data.extend_from_slice(&[0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80]);
            data.extend_from_slice(&[0, 0, 0, 1, 0x65]);
        } else {
            data.extend_from_slice(&[0, 0, 0, 1, 0x41]);
        }
        data.extend((0..size).map(|i| (i as u64 * self.seq) as u8 | 1));
        let frame = EncodedFrame {
            codec,
            data: data.into(),
            keyframe,
            droppable: false,
            width: 640,
            height: 360,
            captured: self.now,
            stamp_ms: 0,
            seq: self.seq,
        };
        self.sessions.write_frame(&frame);
    }

    /// Sends `n` frames at 30 fps, the first a keyframe when `key_first`.
    pub fn frames(&mut self, n: usize, key_first: bool) {
        for i in 0..n {
            self.frame(key_first && i == 0);
            self.step(Duration::from_millis(33));
        }
    }

    pub fn keyframe_asks(&self) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, SessionEvent::KeyframeWanted(..)))
            .count()
    }

    pub fn ended(&self, id: ViewerId) -> Option<&rtcam::rtc::EndReason> {
        self.events.iter().find_map(|e| match e {
            SessionEvent::Ended(i, r) if *i == id => Some(r),
            _ => None,
        })
    }

    pub fn request_keyframe(&mut self, peer: usize) {
        let p = &mut self.peers[peer];
        let mid = p.mid.expect("media");
        p.rtc
            .writer(mid)
            .unwrap()
            .request_keyframe(None, KeyframeRequestKind::Pli)
            .unwrap();
    }
}

/// What the simulated table offers: H.264 as openh264 writes it, then VP8.
pub fn codecs() -> Vec<SdpParams> {
    vec![
        SdpParams::H264 {
            profile_level_id: 0x42e01f,
        },
        SdpParams::Vp8,
    ]
}

/// Which browser a simulated peer stands for (what its offer holds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Browser {
    Chromium,
    FirefoxOffline,
}

/// An offer text from a str0m offerer with the codecs `codecs` enables.
pub fn offer_with(codecs: impl FnOnce(str0m::RtcConfig) -> str0m::RtcConfig) -> String {
    let mut rtc = codecs(Rtc::builder().clear_codecs()).build(Instant::now());
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    let (offer, _): (SdpOffer, _) = api.apply().unwrap();
    offer.to_sdp_string()
}
