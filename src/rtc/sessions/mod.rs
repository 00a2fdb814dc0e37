//! The table of viewers, sans-IO: datagrams, frames, commands and time go
//! in; datagrams to send, events and the next deadline come out.
//!
//! No sockets and no clocks in here (str0m's shape), so every behaviour —
//! fan-out, keyframe asks, timeouts, limits — is tested in one process on
//! simulated time. The IO shell is `udp.rs`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant, UNIX_EPOCH};

use rand::Rng;
use str0m::Input;
use str0m::net::{Protocol, Receive};
use thiserror::Error;

mod audio;
mod channels;
mod drain;
mod join;
mod publish;
mod sdp;
mod setup;
mod video;

use drain::drain;

use super::rate::{MARGIN, RatePolicy, RateRange};

use super::redundancy::{CRASH_BY, Report};
use super::viewer::{EndReason, Transport, Viewer, ViewerId, ViewerStats};
use crate::audio::TalkPacket;
use crate::control::{AudioTelemetry, Control, Telemetry};
use crate::encode::SdpParams;
use crate::frame::VideoCodec;

pub use publish::PublishSpec;
pub use str0m::net::Transmit;

#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Host candidates every viewer is told about (ICE-lite: all of them
    /// go in the answer).
    pub candidates: Vec<SocketAddr>,
    pub max_viewers: usize,
    /// Most viewers from one IP address (one household should not be able
    /// to take every slot).
    pub max_per_address: usize,
    /// What each encoder produces, in order of preference: a viewer is
    /// bound to the first its offer accepts.
    pub codecs: Vec<SdpParams>,
    /// A viewer that has not connected by then is dropped.
    pub connect_timeout: Duration,
    /// A connected viewer we hear nothing from (no RTCP, no consent checks)
    /// for this long has vanished.
    pub idle_timeout: Duration,
    /// Ask the browser to render frames as soon as they are decoded
    /// (playout-delay 0): its jitter buffer is otherwise the largest part
    /// of the latency.
    pub zero_playout_delay: bool,
    /// The bitrate range of each codec's encoder. Bandwidth estimation runs
    /// for every viewer of a codec listed here, and `rate::RatePolicy` turns
    /// the estimates into `SessionEvent::Bitrate`; a codec not listed keeps
    /// its encoder's rate (a passthrough camera's own H.264).
    pub rates: Vec<(VideoCodec, RateRange)>,
    /// Wall-clock time (Unix ms) at the table's start: chat lines carry
    /// the time they were said.
    pub wall_epoch_ms: u64,
    /// The largest datagram any session sends (`--mtu`): RTP, RTCP, DTLS
    /// and SCTP alike.
    pub mtu: usize,
}

impl SessionConfig {
    pub fn new(candidates: Vec<SocketAddr>, max_viewers: usize, codecs: Vec<SdpParams>) -> Self {
        SessionConfig {
            candidates,
            max_viewers,
            max_per_address: max_viewers,
            codecs,
            connect_timeout: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(10),
            zero_playout_delay: true,
            rates: Vec::new(),
            wall_epoch_ms: std::time::SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            mtu: super::DEFAULT_MTU as usize,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// ICE and DTLS are up and media flows.
    Connected(ViewerId),
    /// Somebody needs a keyframe of its codec: a new viewer, or PLI/FIR.
    KeyframeWanted(ViewerId, VideoCodec),
    /// The viewer is gone and removed from the table.
    Ended(ViewerId, EndReason),
    /// A new target for the codec's encoder, kbit/s, from the viewers'
    /// bandwidth estimates (`rate.rs`).
    Bitrate(VideoCodec, u32),
    /// A viewer asked to set the camera's control `control` to `value`
    /// (checked against its range and the viewer's rights); a refusal by
    /// the camera comes back through [`Sessions::control_refused`].
    SetControl {
        from: ViewerId,
        control: String,
        value: i64,
    },
    /// Bytes for the serial port from the viewer holding it (the floor
    /// rule is checked); a full port queue is told back through
    /// [`Sessions::serial_overflow`].
    SerialWrite(ViewerId, Vec<u8>),
    /// The talker's voice, for the speaker.
    Talk(TalkPacket),
}

/// What happened on a viewer's `rtcam` data channel, for `control.rs`.
#[derive(Debug)]
pub enum ChannelInput {
    Open,
    Data {
        data: Vec<u8>,
        binary: bool,
    },
    Closed,
    /// Bytes on its `serial` channel, for the serial port.
    Serial(Vec<u8>),
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SessionError {
    #[error("the camera is already serving its maximum of {0} viewers")]
    Full(usize),
    #[error("this address already has its maximum of {0} viewers")]
    TooManyFromAddress(usize),
    #[error("malformed SDP offer: {0}")]
    BadOffer(String),
    #[error("the offer has no video section to receive the camera on")]
    NoVideo,
    #[error(
        "the offer accepts none of what this camera sends ({}); it offered: {}",
        ours.join(" or "),
        if offered.is_empty() { "no video codec".to_string() } else { offered.join(", ") }
    )]
    NoCodec {
        offered: Vec<String>,
        /// What we send, e.g. "H.264 constrained baseline (profile-level-id
        /// 42e01f, packetization-mode=1)", "VP8".
        ours: Vec<String>,
    },
    #[error("no such session")]
    UnknownViewer,
    #[error("bad ICE candidate: {0}")]
    BadCandidate(String),
    #[error("too many ICE candidates: a viewer may send at most {0}")]
    TooManyCandidates(usize),
    #[error("the viewer has no open `rtcam` data channel")]
    NoChannel,
    #[error("the receiver's answer does not apply: {0}")]
    BadAnswer(String),
    #[error("no offer of ours is waiting for an answer in that session")]
    NoPendingOffer,
    #[error("cannot set up the session: {0}")]
    Internal(String),
}

pub struct Sessions {
    config: SessionConfig,
    viewers: Vec<Viewer>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<SessionEvent>,
    /// RTP time zero: all viewers share one media clock.
    epoch: Instant,
    /// The data-channel protocol (chat, telemetry), sans-IO.
    control: Control<ViewerId>,
    /// When telemetry goes out next (while any viewer has its channel).
    next_telemetry: Instant,
    /// The latest time any input carried (estimates arrive inside str0m's
    /// output, which has no time of its own).
    now: Instant,
    rate: RatePolicy,
    /// Frames a second the camera delivers, as the shell measures them.
    capture_fps: Option<f64>,
    /// The speaker's side of every viewer's audio telemetry.
    speaker: AudioTelemetry,
    largest_datagram: usize,
}

impl Sessions {
    pub fn new(config: SessionConfig, now: Instant) -> Self {
        str0m::crypto::from_feature_flags().install_process_default();
        Sessions {
            viewers: Vec::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            epoch: now,
            now,
            control: Control::new(),
            next_telemetry: now + TELEMETRY_EVERY,
            rate: RatePolicy::new(&config.rates),
            config,
            capture_fps: None,
            speaker: AudioTelemetry::default(),
            largest_datagram: 0,
        }
    }

    /// Viewers (joining or connected), WHIP publishes not counted.
    pub fn len(&self) -> usize {
        self.viewers.iter().filter(|v| !v.is_publisher()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn ids(&self) -> Vec<ViewerId> {
        self.viewers.iter().map(|v| v.id).collect()
    }

    /// Frames sent to a viewer so far, for stats and tests.
    /// Every viewer's link, as str0m last reported it.
    pub fn viewer_stats(&self) -> Vec<(ViewerId, Option<VideoCodec>, ViewerStats)> {
        self.links(false)
    }

    /// Every WHIP publish's link, as str0m last reported it.
    pub fn publish_stats(&self) -> Vec<(ViewerId, Option<VideoCodec>, ViewerStats)> {
        self.links(true)
    }

    fn links(&self, publishers: bool) -> Vec<(ViewerId, Option<VideoCodec>, ViewerStats)> {
        self.viewers
            .iter()
            .filter(|v| v.is_publisher() == publishers)
            .map(|v| {
                let mut stats = v.stats.clone();
                stats.thinned = self.rate.thinned(v.id);
                stats.copies = v.copies.count();
                (v.id, v.codec, stats)
            })
            .collect()
    }

    pub fn frames_sent(&self, id: ViewerId) -> Option<u64> {
        self.viewer(id).map(|v| v.frames_sent)
    }

    /// Ends a viewer's session (hang-up, DELETE, shutdown).
    pub fn end(&mut self, id: ViewerId, reason: EndReason) -> Result<(), SessionError> {
        let i = self.viewer_index(id).ok_or(SessionError::UnknownViewer)?;
        self.viewers[i].ending.get_or_insert(reason);
        self.reap();
        Ok(())
    }

    /// Ends every session (shutdown), telling each browser.
    pub fn end_all(&mut self, reason: EndReason) {
        for v in &mut self.viewers {
            v.ending.get_or_insert(reason.clone());
        }
        self.reap();
    }

    /// A datagram arrived. `destination` must be one of the configured
    /// candidate addresses (the shell maps real local addresses to
    /// advertised ones). Returns whether any viewer took it.
    pub fn handle_receive(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) -> bool {
        let Ok(contents) = data.try_into() else {
            return false;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination,
                contents,
            },
        );
        let Some(i) = self.viewers.iter().position(|v| v.rtc.accepts(&input)) else {
            return false;
        };
        self.now = self.now.max(now);
        let v = &mut self.viewers[i];
        v.last_input = now;
        if let Err(e) = v.rtc.handle_input(input) {
            v.ending.get_or_insert(EndReason::Failed(e.to_string()));
        }
        self.drain_at(i);
        if !self.viewers[i].inbox.is_empty() {
            self.route_channels();
        }
        self.reap();
        true
    }

    /// Time moves on: str0m's timers, our connect and idle timeouts.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        self.rate.handle_timeout(now);
        self.push_targets();
        for i in 0..self.viewers.len() {
            let v = &mut self.viewers[i];
            if now >= v.next_timeout {
                self.timeouts_at(i, now);
            }
            let v = &mut self.viewers[i];
            // Not ready: DTLS done or not, a path never nominated is no
            // connection (a client could hold a slot with DTLS alone).
            let ready = v.transport == Transport::Ready;
            if !ready && now.saturating_duration_since(v.created) >= self.config.connect_timeout {
                v.ending.get_or_insert(EndReason::ConnectTimeout);
            } else if ready
                && now.saturating_duration_since(v.last_input) >= self.config.idle_timeout
            {
                v.ending.get_or_insert(EndReason::Idle);
            }
        }
        self.publish_keyframes(now);
        self.overdue_keyframes();
        if now >= self.next_telemetry {
            self.next_telemetry = now + TELEMETRY_EVERY;
            self.push_telemetry();
        }
        self.control.tick(now);
        self.route_channels();
        self.reap();
    }

    /// Telemetry to every viewer with an open channel.
    fn push_telemetry(&mut self) {
        let viewers = self.viewers.len();
        for v in &mut self.viewers {
            if v.channel.is_none() {
                continue;
            }
            let sent = v.frames_sent - v.frames_at_telemetry;
            v.frames_at_telemetry = v.frames_sent;
            let s = &v.stats;
            let t = Telemetry {
                viewers,
                codec: v.codec.map(|c| c.to_string()).unwrap_or_default(),
                bitrate_kbps: v.codec.and_then(|c| self.rate.target(c)),
                fps: sent as f64 / TELEMETRY_EVERY.as_secs_f64(),
                rtt_ms: s.rtt_ms,
                loss: s.loss,
                wire_loss: s.wire_loss,
                nacks: s.nacks,
                bwe_kbps: s.bwe_kbps,
                copies: v.copies.count(),
                thinned: self.rate.thinned(v.id),
                capture_fps: self.capture_fps,
                audio: v.audio.map(|_| AudioTelemetry {
                    packets_sent: v.audio_sent,
                    packets_received: v.audio_received,
                    ..self.speaker.clone()
                }),
            };
            self.control.telemetry(v.id, &t);
        }
    }

    /// Viewers bound to `codec` (joining or connected, not ending): what
    /// decides whether its encoder runs.
    pub fn viewers_of(&self, codec: VideoCodec) -> usize {
        self.viewers
            .iter()
            .filter(|v| v.codec == Some(codec) && v.ending.is_none())
            .count()
    }

    /// The codec a viewer was bound to from its offer.
    pub fn codec_of(&self, id: ViewerId) -> Option<VideoCodec> {
        self.viewer(id).and_then(|v| v.codec)
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = self.transmits.pop_front()?;
        self.largest_datagram = self.largest_datagram.max(t.contents.len());
        Some(t)
    }

    /// The largest datagram sent so far (it must fit `--mtu`).
    pub fn largest_datagram(&self) -> usize {
        self.largest_datagram
    }

    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.viewers
            .iter()
            .map(|v| {
                let ours = if v.transport == Transport::Ready {
                    v.last_input + self.config.idle_timeout
                } else {
                    v.created + self.config.connect_timeout
                };
                v.next_timeout.min(ours)
            })
            .chain(self.rate.poll_timeout())
            .chain(self.next_publish_keyframe())
            .chain(self.next_overdue_keyframe())
            .chain(
                self.viewers
                    .iter()
                    .any(|v| v.channel.is_some())
                    .then_some(self.next_telemetry),
            )
            .min()
    }

    /// The encoder target the bitrate policy holds for `codec` (kbit/s).
    pub fn bitrate_target(&self, codec: VideoCodec) -> Option<u32> {
        self.rate.target(codec)
    }

    /// Whether a viewer is below the floor and sent only droppable frames.
    pub fn thinned(&self, id: ViewerId) -> bool {
        self.rate.thinned(id)
    }

    /// Target changes become events for the encoders.
    fn push_targets(&mut self) {
        while let Some((codec, kbps)) = self.rate.poll_target() {
            tracing::debug!("{codec} encoder target {kbps} kbit/s");
            self.events.push_back(SessionEvent::Bitrate(codec, kbps));
        }
    }

    fn fresh_id(&self) -> ViewerId {
        let mut rng = rand::rng();
        loop {
            let id = ViewerId(rng.random());
            if self.viewer(id).is_none() {
                return id;
            }
        }
    }

    fn viewer(&self, id: ViewerId) -> Option<&Viewer> {
        self.viewers.iter().find(|v| v.id == id)
    }

    fn viewer_mut(&mut self, id: ViewerId) -> Option<&mut Viewer> {
        self.viewers.iter_mut().find(|v| v.id == id)
    }

    fn viewer_index(&self, id: ViewerId) -> Option<usize> {
        self.viewers.iter().position(|v| v.id == id)
    }

    /// A fresh loss report decides how many times the viewer's datagrams go
    /// out (`redundancy.rs`).
    fn judge_copies(&mut self, i: usize) {
        let v = &mut self.viewers[i];
        // Stats come four times a second; copies are judged twice.
        if v.copies_judged
            .is_some_and(|t| self.now < t + COPIES_JUDGED_EVERY)
        {
            return;
        }
        let Some(loss) = v.loss_report.take() else {
            return;
        };
        v.copies_judged = Some(self.now);
        let target = v.codec.and_then(|c| self.rate.target(c));
        let headroom = match (v.stats.bwe_kbps, target) {
            (Some(estimate), Some(target)) => estimate as f64 * MARGIN / target.max(1) as f64,
            _ => 0.0,
        };
        let queue = v
            .stats
            .rtt_ms
            .zip(v.shortest_rtt_ms)
            .map(|(rtt, shortest)| Duration::from_secs_f64((rtt - shortest).max(0.0) / 1000.0));
        let report = Report {
            loss,
            headroom,
            queue,
            estimate_steady: v.estimates.steady(self.now),
            estimate_crashed: v.estimates.fell_by(self.now, CRASH_BY),
        };
        if v.copies.report(self.now, report) {
            tracing::info!(
                viewer = %v.id,
                "sending each of its datagrams {} time(s): {:.1} % lost on the wire, link estimate {:?} kbit/s",
                v.copies.count(),
                loss * 100.0,
                v.stats.bwe_kbps
            );
        }
    }

    /// Removes viewers whose session is over, politely closing them first
    /// (DTLS close_notify lets the browser notice at once).
    fn reap(&mut self) {
        let mut i = 0;
        while i < self.viewers.len() {
            if self.viewers[i].ending.is_none() && self.viewers[i].rtc.is_alive() {
                i += 1;
                continue;
            }
            let mut v = self.viewers.swap_remove(i);
            let reason = v.ending.take().unwrap_or(EndReason::PeerClosed);
            if v.rtc.is_alive() && v.rtc.close().is_ok() {
                let mut ignored = VecDeque::new();
                drain(&mut v, &mut self.transmits, &mut ignored, &self.config);
            }
            if v.is_publisher() {
                tracing::info!(publish = %v.id, frames = v.frames_sent, "WHIP publish ended: {reason}");
            } else {
                tracing::info!(viewer = %v.id, frames = v.frames_sent, "viewer left: {reason}");
            }
            self.events.push_back(SessionEvent::Ended(v.id, reason));
            self.control.leave(v.id);
            self.rate.remove(self.now, v.id);
            self.push_targets();
        }
    }
}

/// The data channel the viewer makes in its offer for the JSON protocol
/// (`control.rs`).
pub const CONTROL_CHANNEL: &str = "rtcam";

/// The data channel for the serial bridge's raw bytes.
pub const SERIAL_CHANNEL: &str = "serial";

/// How often a viewer's loss is judged for copies (`redundancy.rs`): twice
/// a second, so the two lossy reports copies wait for take half a second.
const COPIES_JUDGED_EVERY: Duration = Duration::from_millis(500);

/// How often each viewer with a channel is sent telemetry.
const TELEMETRY_EVERY: Duration = Duration::from_secs(1);

/// The most remote candidates one viewer may send, whether str0m takes them
/// or they are ignored (mDNS, TCP).
pub const MAX_REMOTE_CANDIDATES: usize = 32;
