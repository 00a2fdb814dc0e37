//! One viewer: its str0m `Rtc` and what we track about it.

use std::fmt;
use std::net::IpAddr;
use std::time::Instant;

use str0m::Rtc;
use str0m::media::{Mid, Pt};

use super::redundancy::Copies;
use crate::frame::VideoCodec;

/// Identifies a viewer in logs, in the WHEP resource URL and in signaling.
/// Random, so a resource URL cannot be guessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ViewerId(pub u64);

impl fmt::Display for ViewerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl std::str::FromStr for ViewerId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 16 {
            // Reuse ParseIntError's "invalid digit" for a wrong length.
            return u64::from_str_radix("x", 16).map(ViewerId);
        }
        u64::from_str_radix(s, 16).map(ViewerId)
    }
}

/// Why a viewer's session ended; told to its signaling channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    HangUp,
    IceDisconnected,
    ConnectTimeout,
    Idle,
    PeerClosed,
    Shutdown,
    /// The token it was admitted with was revoked.
    Revoked,
    Failed(String),
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndReason::HangUp => f.write_str("hung up"),
            EndReason::IceDisconnected => f.write_str("connection lost (ICE disconnected)"),
            EndReason::ConnectTimeout => f.write_str("could not connect in time (ICE timeout)"),
            EndReason::Idle => f.write_str("viewer went silent"),
            EndReason::PeerClosed => f.write_str("the other end closed the connection"),
            EndReason::Shutdown => f.write_str("the camera is shutting down"),
            EndReason::Revoked => f.write_str("its token was revoked"),
            EndReason::Failed(why) => write!(f, "session failed: {why}"),
        }
    }
}

/// How a viewer's link is doing, from str0m's stats (once a second): its
/// receiver reports and our own view of the path.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ViewerStats {
    /// Round-trip time, from RTCP receiver reports.
    pub rtt_ms: Option<f64>,
    /// Fraction of packets the viewer reported lost (0..1), last interval,
    /// after repairs (retransmitted packets count as received).
    pub loss: Option<f32>,
    /// Fraction lost on the wire over the last second, before repairs (from
    /// transport-wide feedback; with copies, both copies lost).
    pub wire_loss: Option<f32>,
    /// NACKs, PLIs and FIRs the viewer sent so far.
    pub nacks: u64,
    pub plis: u64,
    pub firs: u64,
    /// Bytes sent to it so far (retransmissions included).
    pub bytes_sent: u64,
    /// The bandwidth estimate towards it, when estimation runs.
    pub bwe_kbps: Option<u64>,
    /// How many times each datagram to it goes out (a lossy link gets 2 or
    /// 3, `redundancy.rs`); filled in by `Sessions::viewer_stats`.
    pub copies: u8,
    /// Its link is below the floor: it gets only referenced frames.
    pub thinned: bool,
}

/// A viewer's audio section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioLink {
    pub mid: Mid,
    /// The Opus payload type its offer gave.
    pub pt: Pt,
    /// Our answer sends on it (sendrecv, or sendonly to a recvonly offer).
    pub sends: bool,
}

/// What a row of the session table is.
pub enum Role {
    /// A browser or WHEP player: it offered, we answer (ICE-lite).
    Viewer,
    /// A WHIP publish to an SFU: we offered (full ICE, controlling).
    Publisher(Publish),
}

/// A publish's own state.
pub struct Publish {
    /// Our offer, until the receiver's answer is applied.
    pub pending: Option<str0m::change::SdpPendingOffer>,
    /// A keyframe at least this often, for receivers that want one
    /// (`--whip-keyframe-interval`), and when the next is due.
    pub keyframe_every: Option<std::time::Duration>,
    pub next_keyframe: Option<Instant>,
}

/// Where a viewer's bandwidth estimation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probing {
    /// None: its codec's rate is not ours to drive (a camera's own H.264).
    Off,
    /// Its probes (up to this rate) wait for its first keyframe: they ride
    /// on it, so nothing but that small keyframe meets an unmeasured link.
    Armed { up_to_kbps: u64 },
    /// Its first probes went out at `since`; no measurement has come back.
    Probed { since: Instant },
    /// Measured (or probed a second time): estimating.
    On,
}

/// When a viewer's first keyframe is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyframeDue {
    /// It just connected: at once, unless it joins an encoder running far
    /// above the start rate (`Sessions::first_keyframe`).
    Now,
    /// Once its link is measured, or at this time at the latest: a keyframe
    /// at the others' rate must not meet an unmeasured link.
    Measured { by: Instant },
}

/// How far a viewer's transport has come. The browser's ICE nominating a
/// path and DTLS securing it finish in either order: our ICE-lite agent
/// answers DTLS from the first check's path (`vendor/is`), while a browser
/// nominates with a later check (Chromium's came 50-60 ms later).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    #[default]
    Opening,
    /// DTLS is done; the browser has not nominated its path yet.
    Secured,
    /// The browser nominated its path; DTLS is not done yet.
    Nominated,
    /// Both: media may flow. (Chromium stamped media that came before its
    /// nomination with one arrival time, which wrecked the probes riding on
    /// the first keyframe, and showed it only once it had nominated.)
    Ready,
}

impl Transport {
    /// DTLS finished.
    pub fn secured(self) -> Self {
        match self {
            Transport::Opening | Transport::Secured => Transport::Secured,
            Transport::Nominated | Transport::Ready => Transport::Ready,
        }
    }

    /// ICE nominated a path.
    pub fn nominated(self) -> Self {
        match self {
            Transport::Opening | Transport::Nominated => Transport::Nominated,
            Transport::Secured | Transport::Ready => Transport::Ready,
        }
    }
}

/// The most audio packets heard from one viewer and not yet routed.
pub const MAX_HEARD: usize = 64;

pub struct Viewer {
    pub id: ViewerId,
    pub role: Role,
    /// The address that signaled this viewer (for per-address limits).
    pub from: IpAddr,
    pub rtc: Rtc,
    /// The video m-line we send on, once str0m reports it.
    pub mid: Option<Mid>,
    /// The codec this viewer was bound to from its offer (H.264 when it
    /// takes ours, else VP8), and the payload type the browser gave it.
    pub codec: Option<VideoCodec>,
    pub pt: Option<Pt>,
    /// Its audio section, when its offer had one with Opus.
    pub audio: Option<AudioLink>,
    /// Audio packets sent to it and heard from it.
    pub audio_sent: u64,
    pub audio_received: u64,
    /// Its audio that str0m gave us, for the talk floor to route.
    pub heard: std::collections::VecDeque<str0m::media::MediaData>,
    pub transport: Transport,
    /// Nothing is sent until the first IDR: P-frames before it are useless.
    pub awaiting_keyframe: bool,
    pub created: Instant,
    pub last_input: Instant,
    pub next_timeout: Instant,
    pub frames_sent: u64,
    /// Frames left out because its link is below the floor.
    pub frames_thinned: u64,
    /// `frames_sent` at the last telemetry.
    pub frames_at_telemetry: u64,
    /// A bandwidth estimate str0m gave that the policy has not seen yet.
    pub estimate: Option<super::rate::Estimate>,
    /// When str0m took its latest statistics (the estimate in `stats`).
    pub stats_at: Option<Instant>,
    /// Where its bandwidth estimation is.
    pub probing: Probing,
    /// Whether str0m paces its video (the policy's `paced`, as applied).
    pub paced: bool,
    /// Its first keyframe, to be asked for once it is connected.
    pub keyframe_due: Option<KeyframeDue>,
    /// A loss report not judged yet, when the last was judged, and how
    /// many times datagrams go out.
    pub loss_report: Option<f32>,
    pub copies_judged: Option<Instant>,
    /// Its recent bandwidth estimates: whether its loss is a fall's.
    pub estimates: super::redundancy::Peaks,
    pub copies: Copies,
    /// The shortest round trip seen: the path with no queue in it.
    pub shortest_rtt_ms: Option<f64>,
    /// Its `rtcam` data channel, once open; messages to it lost because
    /// its send buffer was full.
    pub channel: Option<str0m::channel::ChannelId>,
    /// Its `serial` channel (raw bytes to and from the serial bridge).
    pub serial_channel: Option<str0m::channel::ChannelId>,
    pub channel_dropped: u64,
    /// What arrived on that channel, not yet given to the protocol.
    pub inbox: std::collections::VecDeque<super::sessions::ChannelInput>,
    /// The token it was admitted with (WHEP): its name in the chat.
    pub token_name: Option<String>,
    /// It may change the camera's settings and write to the serial port (a
    /// logged-in page, or a token made with `--control`).
    pub may_control: bool,
    /// Remote candidates received so far (bounded).
    pub remote_candidates: usize,
    pub stats: ViewerStats,
    pub ending: Option<EndReason>,
}

impl Viewer {
    pub fn new(id: ViewerId, rtc: Rtc, now: Instant, from: IpAddr) -> Self {
        Viewer {
            id,
            role: Role::Viewer,
            from,
            rtc,
            mid: None,
            codec: None,
            pt: None,
            audio: None,
            audio_sent: 0,
            audio_received: 0,
            heard: Default::default(),
            transport: Transport::Opening,
            awaiting_keyframe: true,
            created: now,
            last_input: now,
            next_timeout: now,
            frames_sent: 0,
            frames_thinned: 0,
            frames_at_telemetry: 0,
            estimate: None,
            stats_at: None,
            probing: Probing::Off,
            paced: false,
            keyframe_due: None,
            loss_report: None,
            copies_judged: None,
            estimates: Default::default(),
            copies: Copies::Single,
            shortest_rtt_ms: None,
            channel: None,
            serial_channel: None,
            channel_dropped: 0,
            inbox: Default::default(),
            token_name: None,
            // Until the shell grants more (`Sessions::grant`).
            may_control: false,
            remote_candidates: 0,
            stats: ViewerStats::default(),
            ending: None,
        }
    }

    pub fn is_publisher(&self) -> bool {
        matches!(self.role, Role::Publisher(_))
    }

    /// Ready to receive media.
    pub fn sending(&self) -> bool {
        self.transport == Transport::Ready
            && self.mid.is_some()
            && self.pt.is_some()
            && self.ending.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transport_is_ready_once_nominated_and_secured_in_either_order() {
        let t = Transport::Opening;
        assert_eq!(t.secured().nominated(), Transport::Ready);
        assert_eq!(t.nominated().secured(), Transport::Ready);
        assert_eq!(t.secured(), Transport::Secured);
        assert_eq!(t.nominated().nominated(), Transport::Nominated);
        assert_eq!(Transport::Ready.nominated().secured(), Transport::Ready);
    }

    #[test]
    fn id_round_trips_through_text() {
        let id = ViewerId(0x00ab_cdef_0123_4567);
        assert_eq!(id.to_string(), "00abcdef01234567");
        assert_eq!("00abcdef01234567".parse::<ViewerId>(), Ok(id));
        assert!("abc".parse::<ViewerId>().is_err());
        assert!("zzzzzzzzzzzzzzzz".parse::<ViewerId>().is_err());
    }
}
