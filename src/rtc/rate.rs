//! The bitrate policy, sans-IO: every viewer's bandwidth estimate in, one
//! target per encoder out.
//!
//! One encoder serves every viewer of its codec, so its bitrate is a choice
//! among links: the slowest *healthy* link sets it (a margin under its
//! estimate), going down at once and up gently, between a floor and the
//! configured ceiling (`--bitrate`). A viewer whose link cannot carry even the
//! floor does not drag everyone down: it is *thinned* instead (it is sent
//! only the frames nothing else refers to, about half of them, see
//! `EncodedFrame::droppable`), and the others keep the rate their links take.
//!
//! No clocks in here: time comes in with every call, so the policy is tested
//! on simulated time (`tests/rate_*.rs` drive it behind emulated links).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::viewer::ViewerId;
use crate::frame::VideoCodec;

/// What share of a link's estimate the encoder may fill: the estimate
/// counts everything sent (RTP and SRTP headers, retransmissions, padding).
pub const MARGIN: f64 = 0.85;
/// A wanted rise must hold this long before the target follows it; and the
/// least time between two rises. The estimates themselves already grow
/// gently (str0m's delay-based estimator, like libwebrtc's, about 8 % a
/// second); this only keeps one noisy report from moving the encoder.
pub const RISE_AFTER: Duration = Duration::from_secs(1);
/// Each rise is at most this share of the current target (or `RISE_MIN_KBPS`):
/// from the floor back to the ceiling in about 8 s.
pub const RISE_STEP: f64 = 0.25;
pub const RISE_MIN_KBPS: u32 = 50;
/// A fall smaller than this share is not worth an encoder change.
const FALL_DEADBAND: f64 = 0.03;
/// A thinned viewer is sent every frame again once its link carries this
/// much more than the floor (so it does not flap at the edge).
const UNTHIN_ABOVE: f64 = 1.25;

/// The range one codec's encoder may be driven in, kbit/s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateRange {
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

    fn clamp(&self, kbps: u32) -> u32 {
        kbps.clamp(self.floor_kbps, self.ceiling_kbps)
    }
}

/// One viewer's link as the policy sees it.
#[derive(Debug, Clone, Copy)]
struct Link {
    codec: VideoCodec,
    /// What the encoder may fill of this link (estimate x margin), kbit/s.
    usable_kbps: u32,
    thinned: bool,
}

#[derive(Debug, Clone, Copy)]
struct Encoder {
    range: RateRange,
    target_kbps: u32,
    /// Since when the links have wanted more than the target.
    rise_wanted_since: Option<Instant>,
    /// The last change of the target (either way).
    changed_at: Option<Instant>,
    /// Links of this codec that are not thinned, as of the last decision:
    /// whether thinning protects anyone (`thinned`, asked per frame).
    healthy: usize,
}

impl Encoder {
    /// When a wanted rise may happen: it has held `RISE_AFTER`, and the
    /// last change is as old.
    fn rise_due(&self) -> Option<Instant> {
        let since = self.rise_wanted_since?;
        let after_change = self.changed_at.map_or(since, |c| c + RISE_AFTER);
        Some((since + RISE_AFTER).max(after_change))
    }
}

#[derive(Debug)]
pub struct RatePolicy {
    encoders: BTreeMap<VideoCodec, Encoder>,
    links: BTreeMap<ViewerId, Link>,
    targets: VecDeque<(VideoCodec, u32)>,
}

impl RatePolicy {
    /// Each encoder starts at its ceiling: a LAN, the usual place for a
    /// camera, carries it, and a slower link says so within a second.
    pub fn new(ranges: &[(VideoCodec, RateRange)]) -> Self {
        let encoders = ranges
            .iter()
            .map(|&(codec, range)| {
                let e = Encoder {
                    range,
                    target_kbps: range.ceiling_kbps,
                    rise_wanted_since: None,
                    changed_at: None,
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

    /// A viewer's link was estimated (str0m's TWCC estimate, kbit/s).
    pub fn estimate(&mut self, now: Instant, id: ViewerId, codec: VideoCodec, kbps: u64) {
        let Some(enc) = self.encoders.get(&codec) else {
            return;
        };
        let usable_kbps = (kbps as f64 * MARGIN).min(u32::MAX as f64) as u32;
        let was_thinned = self.links.get(&id).is_some_and(|l| l.thinned);
        let floor = enc.range.floor_kbps;
        let thinned = if was_thinned {
            (usable_kbps as f64) < floor as f64 * UNTHIN_ABOVE
        } else {
            usable_kbps < floor
        };
        if thinned != was_thinned {
            tracing::info!(
                viewer = %id,
                "{codec} viewer's link carries {usable_kbps} kbit/s, floor {floor}: {}",
                if thinned { "sending it only the frames it can drop" } else { "sending it every frame again" }
            );
        }
        self.links.insert(
            id,
            Link {
                codec,
                usable_kbps,
                thinned,
            },
        );
        self.decide(now, codec);
    }

    /// A viewer left: its link no longer counts.
    pub fn remove(&mut self, now: Instant, id: ViewerId) {
        if let Some(link) = self.links.remove(&id) {
            self.decide(now, link.codec);
        }
    }

    /// Time passes: a rise that was wanted long enough happens. Only a due
    /// rise can change anything without a new estimate, so only those
    /// codecs are looked at (this runs on every turn of the media loop).
    pub fn handle_timeout(&mut self, now: Instant) {
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

    /// When `handle_timeout` has something to do: the next possible rise.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.encoders.values().filter_map(Encoder::rise_due).min()
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
    /// of the codec below the floor) the encoder runs at the floor and
    /// everyone gets every frame.
    pub fn thinned(&self, id: ViewerId) -> bool {
        self.links.get(&id).is_some_and(|l| {
            l.thinned && self.encoders.get(&l.codec).is_some_and(|e| e.healthy > 0)
        })
    }

    /// What the links of `codec` want: the slowest one that is not thinned.
    /// With none estimated, the ceiling; with all thinned, the floor. And
    /// how many are not thinned.
    fn wanted(&self, codec: VideoCodec, range: RateRange) -> (u32, usize) {
        let (mut any, mut healthy, mut slowest) = (false, 0, None::<u32>);
        for l in self.links.values().filter(|l| l.codec == codec) {
            any = true;
            if !l.thinned {
                healthy += 1;
                slowest = Some(slowest.map_or(l.usable_kbps, |s| s.min(l.usable_kbps)));
            }
        }
        if !any {
            return (range.ceiling_kbps, 0);
        }
        (range.clamp(slowest.unwrap_or(range.floor_kbps)), healthy)
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
                || wanted == enc.range.floor_kbps
            {
                next.target_kbps = wanted;
            }
        } else if wanted > current {
            let since = *next.rise_wanted_since.get_or_insert(now);
            let settled = now.saturating_duration_since(since) >= RISE_AFTER
                && enc
                    .changed_at
                    .is_none_or(|c| now.saturating_duration_since(c) >= RISE_AFTER);
            if settled {
                let step = ((current as f64 * RISE_STEP) as u32).max(RISE_MIN_KBPS);
                next.target_kbps = wanted.min(current.saturating_add(step));
                // The next step waits its own turn.
                next.rise_wanted_since = (next.target_kbps < wanted).then_some(now);
            }
        } else {
            next.rise_wanted_since = None;
        }
        if next.target_kbps != current {
            next.changed_at = Some(now);
            self.targets.push_back((codec, next.target_kbps));
        }
        self.encoders.insert(codec, next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: VideoCodec = VideoCodec::H264;

    fn policy() -> (RatePolicy, Instant) {
        let range = RateRange {
            floor_kbps: 300,
            ceiling_kbps: 2000,
        };
        (RatePolicy::new(&[(H, range)]), Instant::now())
    }

    fn drain(p: &mut RatePolicy) -> Vec<u32> {
        std::iter::from_fn(|| p.poll_target())
            .map(|(_, k)| k)
            .collect()
    }

    /// Runs the policy's own timer until `until`.
    fn run_until(p: &mut RatePolicy, until: Instant) {
        while let Some(t) = p.poll_timeout().filter(|t| *t <= until) {
            p.handle_timeout(t);
        }
    }

    #[test]
    fn starts_at_the_ceiling_and_falls_at_once_to_the_slowest_link() {
        let (mut p, t0) = policy();
        assert_eq!(p.target(H), Some(2000));
        p.estimate(t0, ViewerId(1), H, 5000);
        assert_eq!(
            drain(&mut p),
            Vec::<u32>::new(),
            "a fast link keeps the ceiling"
        );
        p.estimate(t0, ViewerId(2), H, 1000);
        assert_eq!(drain(&mut p), vec![850]);
        assert!(!p.thinned(ViewerId(2)));
    }

    #[test]
    fn rises_gently_after_holding() {
        let (mut p, t0) = policy();
        p.estimate(t0, ViewerId(1), H, 1000);
        assert_eq!(drain(&mut p), vec![850]);
        p.estimate(t0 + Duration::from_millis(100), ViewerId(1), H, 3000);
        assert_eq!(drain(&mut p), Vec::<u32>::new(), "no rise at once");
        run_until(&mut p, t0 + Duration::from_secs(20));
        let steps = drain(&mut p);
        assert_eq!(*steps.last().unwrap(), 2000);
        for w in steps.windows(2) {
            assert!(
                w[1] as f64 <= w[0] as f64 * (1.0 + RISE_STEP) + 1.0,
                "{steps:?}"
            );
        }
        assert!(steps.len() >= 3, "in steps: {steps:?}");
    }

    #[test]
    fn a_link_below_the_floor_is_thinned_and_does_not_lower_the_others() {
        let (mut p, t0) = policy();
        p.estimate(t0, ViewerId(1), H, 1500);
        p.estimate(t0, ViewerId(2), H, 200);
        assert!(p.thinned(ViewerId(2)));
        assert!(!p.thinned(ViewerId(1)));
        assert_eq!(drain(&mut p), vec![1275]);
        // It recovers only well above the floor.
        p.estimate(t0, ViewerId(2), H, 380);
        assert!(p.thinned(ViewerId(2)), "323 kbit/s usable is at the edge");
        p.estimate(t0, ViewerId(2), H, 500);
        assert!(!p.thinned(ViewerId(2)));
        assert_eq!(drain(&mut p), vec![425]);
    }

    #[test]
    fn every_link_below_the_floor_means_the_floor_and_every_frame() {
        let (mut p, t0) = policy();
        p.estimate(t0, ViewerId(1), H, 100);
        assert_eq!(drain(&mut p), vec![300]);
        assert!(!p.thinned(ViewerId(1)), "nobody to protect");
        p.estimate(t0, ViewerId(2), H, 200);
        assert!(!p.thinned(ViewerId(1)) && !p.thinned(ViewerId(2)));
        p.estimate(t0, ViewerId(3), H, 3000);
        assert!(p.thinned(ViewerId(1)) && p.thinned(ViewerId(2)));
    }

    #[test]
    fn the_slowest_viewer_leaving_lets_the_rate_rise() {
        let (mut p, t0) = policy();
        p.estimate(t0, ViewerId(1), H, 4000);
        p.estimate(t0, ViewerId(2), H, 800);
        assert_eq!(drain(&mut p), vec![680]);
        p.remove(t0 + Duration::from_secs(1), ViewerId(2));
        run_until(&mut p, t0 + Duration::from_secs(30));
        assert_eq!(drain(&mut p).last(), Some(&2000));
        p.remove(t0 + Duration::from_secs(31), ViewerId(1));
        assert_eq!(p.target(H), Some(2000));
    }

    #[test]
    fn small_wobbles_do_not_touch_the_encoder() {
        let (mut p, t0) = policy();
        p.estimate(t0, ViewerId(1), H, 1000);
        drain(&mut p);
        p.estimate(t0, ViewerId(1), H, 990);
        assert_eq!(drain(&mut p), Vec::<u32>::new());
    }

    #[test]
    fn codecs_are_decided_apart() {
        let t0 = Instant::now();
        let mut p = RatePolicy::new(&[
            (H, RateRange::from_ceiling(2000)),
            (VideoCodec::Vp8, RateRange::from_ceiling(1000)),
        ]);
        p.estimate(t0, ViewerId(1), VideoCodec::Vp8, 600);
        assert_eq!(p.poll_target(), Some((VideoCodec::Vp8, 510)));
        assert_eq!(p.target(H), Some(2000));
        assert_eq!(RateRange::from_ceiling(2000).floor_kbps, 400);
        assert_eq!(RateRange::from_ceiling(80).floor_kbps, 80);
    }
}
