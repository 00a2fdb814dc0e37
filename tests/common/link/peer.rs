//! A str0m peer behind its path, showing frames as a browser does: a gap
//! freezes its picture until the next keyframe, which it asks for again
//! every [`PLI_EVERY`].

use super::*;

/// How often a browser whose picture waits for a keyframe asks for one
/// again (Chromium's `kMaxWaitForKeyFrameMs`).
pub(super) const PLI_EVERY: Duration = Duration::from_millis(200);

pub struct LinkPeer {
    pub rtc: Rtc,
    pub addr: SocketAddr,
    pub id: ViewerId,
    /// Server to peer, and back.
    pub(super) down: Wire,
    pub(super) up: Wire,
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
    pub(super) waiting: bool,
    /// Whether it asks for a keyframe while waiting ([`LinkSim::ask_keyframes`]).
    pub(super) asks_keyframes: bool,
    pub(super) mid: Option<Mid>,
    pub(super) timeout: Instant,
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
    pub(super) fn decode(&mut self, now: Instant, keyframe: bool, contiguous: bool) {
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
    pub(super) fn ask_keyframe(&mut self, now: Instant) {
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

pub(super) fn receive(d: &Datagram) -> Receive<'_> {
    Receive {
        proto: Protocol::Udp,
        source: d.source,
        destination: d.destination,
        contents: (&d.data[..]).try_into().unwrap(),
    }
}

/// Whether an H.264 access unit holds an IDR slice: a decoder can start
/// there.
pub(super) fn h264_keyframe(au: &[u8]) -> bool {
    rtcam::frame::nal_units(au).any(|n| n.first().is_some_and(|b| b & 0x1f == 5))
}

/// A peer's output: datagrams into its uplink, events noted, frames shown.
/// Whether anything came out.
pub(super) fn drain_peer(p: &mut LinkPeer, now: Instant) -> bool {
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
