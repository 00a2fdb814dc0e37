//! The bitrate policy, sans-IO: every viewer's bandwidth estimate in, one
//! target per encoder out, and whether each viewer's video is paced.
//!
//! One encoder serves every viewer of its codec, so its bitrate is a choice
//! among links: the slowest *measured, healthy* link sets it (a margin under
//! its estimate), going down at once and up gently, between a floor and the
//! configured ceiling (`--bitrate`). A viewer whose link cannot carry even the
//! floor does not drag everyone down: it is *thinned* instead (it is sent
//! only the frames nothing else refers to, about half of them, see
//! `EncodedFrame::droppable`), and the others keep the rate their links take.
//!
//! The start (issue #20). Nothing is known of a new viewer's link, and a
//! keyframe at the ceiling (37 KB at 720p) overfills a slow link's queue:
//! hundreds of packets lost and seconds of frozen picture. So a viewer's
//! estimate starts low ([`START_ESTIMATE_KBPS`]), an encoder none of whose
//! viewers is measured yet runs at the start rate (its first keyframe is
//! then small), and that keyframe is the probe: its packets leave back to
//! back, and their arrival times in the viewer's transport-wide feedback
//! measure the link within a round trip. For [`FAST_WINDOW`] after a link's
//! first measurement the target follows it up at once (a LAN is at the
//! ceiling a few hundred milliseconds after connecting); after that, rises
//! wait and step as before. A viewer that joins while others are measured
//! does not count until it is measured itself. A link that never gives a
//! measurement (no transport-wide feedback) stops counting
//! [`MEASURE_WITHIN`] after connecting.
//!
//! A link that limits the stream is *paced* (str0m sends at 1.1 x its
//! estimate), so a keyframe or a burst of repairs never overfills it; a link
//! far faster than the ceiling is not, so a LAN gets each frame at once.
//!
//! No clocks in here: time comes in with every call, so the policy is tested
//! on simulated time (`tests/rate_*.rs` drive it behind emulated links).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::viewer::ViewerId;
use crate::frame::VideoCodec;

#[cfg(test)]
mod tests;

/// What share of a link's estimate the encoder may fill: the estimate
/// counts everything sent (RTP and SRTP headers, retransmissions, padding).
pub const MARGIN: f64 = 0.85;
/// Where every viewer's estimate starts (libwebrtc's default): what is sent
/// before the first measurement must fit any link a camera is watched over.
pub const START_ESTIMATE_KBPS: u32 = 300;
/// The least an encoder is driven at, for a lone viewer on a very slow
/// link (below the floor, with nobody faster to protect).
pub const MIN_KBPS: u32 = 100;
/// After a link's first measurement, rises follow the estimate at once for
/// this long: the estimate then comes from probes, not from the slow
/// additive growth a hold is there to smooth.
pub const FAST_WINDOW: Duration = Duration::from_secs(1);
/// A connected viewer whose link has given no measurement in this long
/// (its browser sends no transport-wide feedback) no longer holds its
/// encoder at the start rate: it does not count at all.
pub const MEASURE_WITHIN: Duration = Duration::from_secs(2);
/// A wanted rise must hold this long before the target follows it; and the
/// least time between two rises. The estimates themselves already grow
/// gently (str0m's delay-based estimator, like libwebrtc's, about 8 % a
/// second); this only keeps one noisy report from moving the encoder.
pub const RISE_AFTER: Duration = Duration::from_secs(1);
/// Each rise is at most this share of the current target (or `RISE_MIN_KBPS`):
/// from the floor back to the ceiling in about 8 s.
pub const RISE_STEP: f64 = 0.1;
pub const RISE_MIN_KBPS: u32 = 50;
/// A link's estimate falling by this share at once is the link overflowing
/// (its estimate crashes on the loss, often to a fifth of the link) ...
const BIG_FALL: f64 = 0.2;
/// ... and the encoder's rises back to this share of the level it fell
/// from come in one step each, not `RISE_STEP` at a time: the link carried
/// that (10 % steps from the crash kept an 800 kbit/s link at 60 % in
/// Chromium). From there to `NEAR_ABOVE` the level it fell from, the
/// estimate has been wrong before (str0m's overshoots a link by up to
/// 40 %): rises step `NEAR_STEP` and hold `NEAR_HOLD`, so overflows come
/// seldom.
pub const RECOVER_SHARE: f64 = 0.85;
pub const NEAR_STEP: f64 = 0.05;
/// How far above the level it fell from rises stay that careful.
pub const NEAR_ABOVE: f64 = 1.25;
pub const NEAR_HOLD: Duration = Duration::from_secs(3);
/// A fall smaller than this share is not worth an encoder change.
const FALL_DEADBAND: f64 = 0.03;
/// A thinned viewer is sent every frame again once its link carries this
/// much more than the floor (so it does not flap at the edge).
const UNTHIN_ABOVE: f64 = 1.25;
/// A link is paced while what it carries (its usable rate) is under this
/// many times the ceiling, and unpaced again only above `UNPACE_ABOVE`: a
/// keyframe is about five frames' worth, which a link this much faster than
/// the stream takes unpaced into a 100 ms queue.
const PACE_BELOW: f64 = 1.5;
const UNPACE_ABOVE: f64 = 1.75;

/// The range one codec's encoder may be driven in, kbit/s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateRange {
    /// Below this a viewer is thinned when someone faster watches too.
    pub floor_kbps: u32,
    pub ceiling_kbps: u32,
}

impl RateRange {
    /// A range for a ceiling: the floor is a fifth of it, at least 100 kbit/s
    /// (below that a camera picture is not worth watching).
    pub fn from_ceiling(ceiling_kbps: u32) -> Self {
        RateRange {
            floor_kbps: (ceiling_kbps / 5).max(100).min(ceiling_kbps),
            ceiling_kbps,
        }
    }

    /// The target while the encoder's viewers are not measured yet: what
    /// their start estimate allows.
    pub fn start_kbps(&self) -> u32 {
        usable(START_ESTIMATE_KBPS as u64).min(self.ceiling_kbps)
    }
}

/// A link's bandwidth estimate, kbit/s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Estimate {
    /// str0m's own, from the viewer's transport-wide feedback, as it
    /// stands (not str0m's 3 s average, which hides a fall for seconds).
    Twcc(u64),
    /// What the receiver says reaches it (REMB; an SFU's).
    Remb(u64),
}

/// Where a link is in its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Joined; ICE and DTLS under way.
    Joining,
    /// Connected, its first measurement awaited until then.
    Starting {
        until: Instant,
    },
    /// Sent the stream before it was measured (a joiner whose measurement
    /// is late): it counts at the start rate, which any link takes.
    Streaming {
        until: Instant,
    },
    Measured {
        usable_kbps: u32,
    },
}

/// One viewer's link as the policy sees it.
#[derive(Debug, Clone, Copy)]
struct Link {
    codec: VideoCodec,
    phase: Phase,
    thinned: bool,
    paced: bool,
}

impl Link {
    fn usable(&self) -> Option<u32> {
        match self.phase {
            Phase::Measured { usable_kbps } => Some(usable_kbps),
            _ => None,
        }
    }

    /// Until when a connected link's first measurement is awaited.
    fn waits_until(&self) -> Option<Instant> {
        match self.phase {
            Phase::Starting { until } | Phase::Streaming { until } => Some(until),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Encoder {
    range: RateRange,
    target_kbps: u32,
    /// Since when the links have wanted more than the target.
    rise_wanted_since: Option<Instant>,
    /// The last change of the target (either way).
    changed_at: Option<Instant>,
    /// Until when rises follow at once (a link's first measurement).
    fast_until: Option<Instant>,
    /// The target when a link last overflowed (see `RECOVER_SHARE`).
    fell_from: Option<u32>,
    /// A measured link's estimate crashed since the last decision: a fall
    /// now is an overflow, not a joiner's start.
    crashed: bool,
    /// Links of this codec that are not thinned, as of the last decision:
    /// whether thinning protects anyone (`thinned`, asked per frame).
    healthy: usize,
}

impl Encoder {
    /// When a wanted rise may happen: it has held `RISE_AFTER`, and the
    /// last change is as old.
    fn rise_due(&self) -> Option<Instant> {
        let since = self.rise_wanted_since?;
        let hold = self.hold();
        let after_change = self.changed_at.map_or(since, |c| c + hold);
        Some((since + hold).max(after_change))
    }

    /// Near the level a link last overflowed at.
    fn near(&self) -> bool {
        self.fell_from.is_some_and(|f| {
            let above = (f as f64 * NEAR_ABOVE) as u32;
            (recovered(f)..above).contains(&self.target_kbps)
        })
    }

    fn hold(&self) -> Duration {
        if self.near() { NEAR_HOLD } else { RISE_AFTER }
    }

    /// The next step up towards `wanted`.
    fn rise(&self, wanted: u32) -> u32 {
        let current = self.target_kbps;
        let (share, least) = if self.near() {
            (NEAR_STEP, RISE_MIN_KBPS / 2)
        } else {
            (RISE_STEP, RISE_MIN_KBPS)
        };
        let step = ((current as f64 * share) as u32).max(least);
        let mut next = current.saturating_add(step);
        if let Some(f) = self.fell_from {
            let back = recovered(f);
            if current < back {
                next = next.max(back);
            }
        }
        wanted.min(next)
    }

    fn fast(&self, now: Instant) -> bool {
        self.fast_until.is_some_and(|t| now < t)
    }
}

/// Where rises from an overflow at `fell_from` come back to in one step.
fn recovered(fell_from: u32) -> u32 {
    (fell_from as f64 * RECOVER_SHARE) as u32
}

/// What the encoder may fill of a link estimated at `kbps`.
fn usable(kbps: u64) -> u32 {
    (kbps as f64 * MARGIN).min(u32::MAX as f64) as u32
}

#[derive(Debug)]
pub struct RatePolicy {
    encoders: BTreeMap<VideoCodec, Encoder>,
    links: BTreeMap<ViewerId, Link>,
    targets: VecDeque<(VideoCodec, u32)>,
}

impl RatePolicy {
    /// Each encoder starts at its ceiling: with nobody watching, the
    /// recorder (if any) gets the best picture; a first viewer brings it
    /// down to the start rate until its link is measured.
    pub fn new(ranges: &[(VideoCodec, RateRange)]) -> Self {
        let encoders = ranges
            .iter()
            .map(|&(codec, range)| {
                let e = Encoder {
                    range,
                    target_kbps: range.ceiling_kbps,
                    rise_wanted_since: None,
                    changed_at: None,
                    fast_until: None,
                    fell_from: None,
                    crashed: false,
                    healthy: 0,
                };
                (codec, e)
            })
            .collect();
        RatePolicy {
            encoders,
            links: BTreeMap::new(),
            targets: VecDeque::new(),
        }
    }

    /// A viewer of `codec` joined: unmeasured, it holds an encoder none of
    /// whose viewers is measured at the start rate.
    pub fn join(&mut self, now: Instant, id: ViewerId, codec: VideoCodec) {
        if !self.encoders.contains_key(&codec) {
            return;
        }
        let link = Link {
            codec,
            phase: Phase::Joining,
            thinned: false,
            paced: false,
        };
        self.links.insert(id, link);
        self.decide(now, codec);
    }

    /// The viewer connected: its first measurement is awaited from now on
    /// for [`MEASURE_WITHIN`]. Called on every turn of a connected viewer;
    /// only the first counts.
    pub fn connected(&mut self, now: Instant, id: ViewerId) {
        if let Some(l) = self.links.get_mut(&id)
            && l.phase == Phase::Joining
        {
            l.phase = Phase::Starting {
                until: now + MEASURE_WITHIN,
            };
        }
    }

    /// The viewer was sent its first frame. Unmeasured, it counts at the
    /// start rate from now on.
    pub fn streaming(&mut self, now: Instant, id: ViewerId) {
        let Some(l) = self.links.get_mut(&id) else {
            return;
        };
        let until = match l.phase {
            Phase::Joining => now + MEASURE_WITHIN,
            Phase::Starting { until } => until,
            _ => return,
        };
        l.phase = Phase::Streaming { until };
        let codec = l.codec;
        self.decide(now, codec);
    }

    /// A viewer's link was estimated.
    pub fn estimate(&mut self, now: Instant, id: ViewerId, codec: VideoCodec, e: Estimate) {
        let Some(enc) = self.encoders.get_mut(&codec) else {
            return;
        };
        let (kbps, start_value) = match e {
            Estimate::Twcc(k) => (k, k == START_ESTIMATE_KBPS as u64),
            Estimate::Remb(k) => (k, false),
        };
        let link = self.links.entry(id).or_insert(Link {
            codec,
            phase: Phase::Joining,
            thinned: false,
            paced: false,
        });
        if link.usable().is_none() {
            // Before a measurement str0m reports where it started.
            if start_value {
                return;
            }
            enc.fast_until = Some(now + FAST_WINDOW);
        }
        let usable_kbps = usable(kbps);
        // The link's own estimate crashed: it overflowed.
        let crashed = link
            .usable()
            .is_some_and(|was| (usable_kbps as f64) < was as f64 * (1.0 - BIG_FALL));
        link.phase = Phase::Measured { usable_kbps };
        let floor = enc.range.floor_kbps;
        let was_thinned = link.thinned;
        link.thinned = if was_thinned {
            (usable_kbps as f64) < floor as f64 * UNTHIN_ABOVE
        } else {
            usable_kbps < floor
        };
        if link.thinned != was_thinned {
            tracing::info!(
                viewer = %id,
                "{codec} viewer's link carries {usable_kbps} kbit/s, floor {floor}: {}",
                if link.thinned { "sending it only the frames it can drop" } else { "sending it every frame again" }
            );
        }
        let ceiling = enc.range.ceiling_kbps as f64;
        link.paced = if link.paced {
            (usable_kbps as f64) < ceiling * UNPACE_ABOVE
        } else {
            (usable_kbps as f64) < ceiling * PACE_BELOW
        };
        enc.crashed |= crashed;
        self.decide(now, codec);
    }

    /// A viewer left: its link no longer counts.
    pub fn remove(&mut self, now: Instant, id: ViewerId) {
        if let Some(link) = self.links.remove(&id) {
            // The link that overflowed may be this one: what the others
            // carry is measured afresh.
            if let Some(enc) = self.encoders.get_mut(&link.codec) {
                enc.fell_from = None;
            }
            self.decide(now, link.codec);
        }
    }

    /// Time passes: a rise that was wanted long enough happens, and a link
    /// that gave no measurement in time stops counting. Only those codecs
    /// are looked at (this runs on every turn of the media loop).
    pub fn handle_timeout(&mut self, now: Instant) {
        let unmeasured: Vec<_> = self
            .links
            .iter()
            .filter(|(_, l)| l.waits_until().is_some_and(|t| t <= now))
            .map(|(&id, l)| (id, l.codec))
            .collect();
        for (id, codec) in unmeasured {
            tracing::info!(
                viewer = %id,
                "{codec} viewer's link gave no bandwidth estimate within {} s: it does not count",
                MEASURE_WITHIN.as_secs()
            );
            self.remove(now, id);
        }
        let due: Vec<_> = self
            .encoders
            .iter()
            .filter(|(_, e)| e.rise_due().is_some_and(|t| t <= now))
            .map(|(&c, _)| c)
            .collect();
        for codec in due {
            self.decide(now, codec);
        }
    }

    /// When `handle_timeout` has something to do: the next possible rise,
    /// or a link's wait for its first measurement ending.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let rises = self.encoders.values().filter_map(Encoder::rise_due);
        let waits = self.links.values().filter_map(Link::waits_until);
        rises.chain(waits).min()
    }

    /// The next target change for an encoder, in the order they happened.
    pub fn poll_target(&mut self) -> Option<(VideoCodec, u32)> {
        self.targets.pop_front()
    }

    pub fn target(&self, codec: VideoCodec) -> Option<u32> {
        self.encoders.get(&codec).map(|e| e.target_kbps)
    }

    pub fn range(&self, codec: VideoCodec) -> Option<RateRange> {
        self.encoders.get(&codec).map(|e| e.range)
    }

    /// A viewer below the floor while others of its codec are not: send it
    /// only the frames others refer to. With nobody to protect (every link
    /// of the codec below the floor) the encoder runs at the slowest link
    /// and everyone gets every frame.
    pub fn thinned(&self, id: ViewerId) -> bool {
        self.links.get(&id).is_some_and(|l| {
            l.thinned && self.encoders.get(&l.codec).is_some_and(|e| e.healthy > 0)
        })
    }

    /// Whether a viewer's link has been measured.
    pub fn measured(&self, id: ViewerId) -> bool {
        self.links.get(&id).is_some_and(|l| l.usable().is_some())
    }

    /// Whether a viewer's video is paced: its link is measured and not
    /// much faster than the ceiling.
    pub fn paced(&self, id: ViewerId) -> bool {
        self.links.get(&id).is_some_and(|l| l.paced)
    }

    /// What the links of `codec` want: the slowest measured one that is
    /// not thinned (one streaming unmeasured counts at the start rate);
    /// with every measured one thinned, the slowest of them (at least
    /// [`MIN_KBPS`]); with none measured, the start rate while some are
    /// starting and the ceiling when there are none. And how many are not
    /// thinned.
    fn wanted(&self, codec: VideoCodec, range: RateRange) -> (u32, usize) {
        let (mut any, mut healthy) = (false, 0);
        let (mut slowest, mut slowest_thinned) = (None::<u32>, None::<u32>);
        let mut streaming = false;
        let min = |a: Option<u32>, b: u32| Some(a.map_or(b, |a| a.min(b)));
        for l in self.links.values().filter(|l| l.codec == codec) {
            any = true;
            match (l.phase, l.thinned) {
                (Phase::Measured { usable_kbps: u }, false) => {
                    healthy += 1;
                    slowest = min(slowest, u);
                }
                (Phase::Measured { usable_kbps: u }, true) => {
                    slowest_thinned = min(slowest_thinned, u)
                }
                (Phase::Streaming { .. }, _) => streaming = true,
                (Phase::Joining | Phase::Starting { .. }, _) => {}
            }
        }
        let wanted = match (slowest, slowest_thinned, any) {
            (Some(u), ..) => u.clamp(range.floor_kbps, range.ceiling_kbps),
            (None, Some(u), _) => u.clamp(MIN_KBPS.min(range.ceiling_kbps), range.ceiling_kbps),
            (None, None, true) => range.start_kbps(),
            (None, None, false) => range.ceiling_kbps,
        };
        if streaming {
            return (wanted.min(range.start_kbps()), healthy + 1);
        }
        (wanted, healthy)
    }

    fn decide(&mut self, now: Instant, codec: VideoCodec) {
        let Some(&enc) = self.encoders.get(&codec) else {
            return;
        };
        let (wanted, healthy) = self.wanted(codec, enc.range);
        let current = enc.target_kbps;
        let mut next = enc;
        next.healthy = healthy;
        if wanted < current {
            next.rise_wanted_since = None;
            if (current - wanted) as f64 >= current as f64 * FALL_DEADBAND
                || wanted <= enc.range.floor_kbps
            {
                next.target_kbps = wanted;
            }
            // A link that overflowed (also at its first measurement, when
            // its first keyframe overfilled it), not a joiner's start or
            // first measurement bringing the encoder down.
            if enc.crashed && (current - wanted) as f64 >= current as f64 * BIG_FALL {
                next.fell_from = Some(current);
            }
        } else if wanted > current && enc.fast(now) {
            next.rise_wanted_since = None;
            next.target_kbps = wanted;
        } else if wanted > current {
            next.rise_wanted_since.get_or_insert(now);
            if next.rise_due().is_some_and(|t| now >= t) {
                next.target_kbps = enc.rise(wanted);
                // The next step waits its own turn.
                next.rise_wanted_since = (next.target_kbps < wanted).then_some(now);
            }
        } else {
            next.rise_wanted_since = None;
        }
        next.crashed = false;
        if next.target_kbps != current {
            next.changed_at = Some(now);
            self.targets.push_back((codec, next.target_kbps));
        }
        self.encoders.insert(codec, next);
    }
}
