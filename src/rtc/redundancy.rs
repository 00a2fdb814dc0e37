//! How many times a viewer's datagrams go out, sans-IO: its loss reports
//! and link estimate in, `Copies` out.
//!
//! On a link that loses packets at random (Wi-Fi, a busy radio), NACK and
//! retransmission repair a lost packet in one round trip, but a browser that
//! receives only (ours) knows no round-trip time and asks again only after
//! 100 ms when a NACK or its answer is lost too: at 5 % loss that is a
//! visible freeze several times a minute. Sending every datagram twice
//! makes a loss need both copies lost (0.25 % at 5 %), three times 0.0125 %;
//! the repairs go out as many times. A copy costs bandwidth, not latency:
//! the browser's SRTP replay check drops all but the first to arrive, and
//! the transport-wide sequence numbers the estimate counts are the same, so
//! the estimate sees the copies only as the queueing they cause.
//!
//! Copies are for loss that is not congestion: they start only while the
//! round trip shows no queue and the link's estimate carries what the
//! encoder sends, and stop as soon as a queue builds or the estimate falls
//! (copies would make congestion worse). Loss under copies is only the
//! packets whose every copy was lost, too few in a second to tell whether the
//! link got better: every `TRIAL_AFTER` a few seconds of single copies ask.

use std::time::{Duration, Instant};

/// Loss on the wire (fraction over a second, from transport-wide feedback)
/// that calls for two copies, and for three.
pub const LOSSY: f32 = 0.02;
pub const VERY_LOSSY: f32 = 0.04;
/// Loss under copies that says they make things worse: an overflowing link
/// lost 16-25 % under three copies in Chromium. Less is noise: a quarter
/// second's report counts the feedback the return path lost as lost too
/// (2 % seen under copies through 5 % random loss each way).
pub const COPIES_FAIL: f32 = 0.08;
/// A link that loses while its round trip is within `QUEUE_CALM` of the
/// shortest seen, and its estimate carries the target, loses at random:
/// copies help. A queue building (the round trip `QUEUE_FULL` over its
/// shortest) or the estimate falling under `CONGESTED` of the target means
/// the loss is the link overflowing, and copies would add to it.
pub const QUEUE_CALM: Duration = Duration::from_millis(40);
pub const QUEUE_FULL: Duration = Duration::from_millis(70);
pub const CARRIED: f64 = 1.0;
pub const CONGESTED: f64 = 0.75;
/// How long copies last before a trial of single copies.
pub const TRIAL_AFTER: Duration = Duration::from_secs(30);
/// A trial's verdict waits this long: the first report after it started
/// still counts mostly copied packets.
pub const TRIAL_LENGTH: Duration = Duration::from_millis(2500);
/// How long copies that did not hide the loss are not tried again.
pub const REFUSED_FOR: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Copies {
    #[default]
    Single,
    /// One report's loss (in tenths of a per cent) looked random: copies
    /// if it and the next, half a second later, lose enough together while
    /// the link stays calm (at a few hundred kbit/s one report holds too
    /// few packets to tell). The loss of a queue overflowing comes before
    /// the estimate's fall (it is what makes the estimate fall), and copies
    /// started on it would triple what an overflowing link is sent.
    Suspect { permille: u16 },
    /// Every datagram `n` times (2 or 3), since then.
    Many { n: u8, since: Instant },
    /// Single copies for a while after a long `Many`, to see whether the
    /// link still loses.
    Trial { since: Instant },
    /// Copies did not hide the loss: the loss was the link overflowing
    /// (and copies made more of it). None for `REFUSED_FOR`.
    Refused { since: Instant },
}

impl Copies {
    /// How many times each datagram goes out now.
    pub fn count(&self) -> u8 {
        match self {
            Copies::Many { n, .. } => *n,
            _ => 1,
        }
    }

    /// A loss report (twice a second). Returns whether the count changed.
    pub fn report(&mut self, now: Instant, link: Report) -> bool {
        let next = match *self {
            Copies::Refused { since } if now.saturating_duration_since(since) < REFUSED_FOR => {
                *self
            }
            Copies::Refused { .. } | Copies::Single if link.random_loss() => Copies::Suspect {
                permille: (link.loss * 1000.0) as u16,
            },
            Copies::Refused { .. } => Copies::Single,
            Copies::Suspect { permille } => {
                let both = Report {
                    loss: (f32::from(permille) / 1000.0 + link.loss) / 2.0,
                    ..link
                };
                if both.random_loss() {
                    both.many(now)
                } else {
                    Copies::Single
                }
            }
            _ if link.congested() => Copies::Single,
            Copies::Single => Copies::Single,
            // Random loss under copies is only packets whose every copy was
            // lost: this much, once the copies' own seconds are measured
            // (the first report after they start still counts single
            // copies), is an overflowing link.
            Copies::Many { since, .. }
                if link.loss >= COPIES_FAIL
                    && now.saturating_duration_since(since) >= TRIAL_LENGTH =>
            {
                Copies::Refused { since: now }
            }
            Copies::Many { since, .. } if now.saturating_duration_since(since) >= TRIAL_AFTER => {
                Copies::Trial { since: now }
            }
            m @ Copies::Many { .. } => m,
            Copies::Trial { since } if now.saturating_duration_since(since) < TRIAL_LENGTH => *self,
            Copies::Trial { .. } if link.loss >= LOSSY => link.many(now),
            Copies::Trial { .. } => Copies::Single,
        };
        let changed = next.count() != self.count();
        *self = next;
        changed
    }
}

/// What a viewer's link did in the last second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Report {
    /// Fraction lost on the wire.
    pub loss: f32,
    /// What its estimate (less the margin) carries, as a share of the
    /// encoder's target.
    pub headroom: f64,
    /// How much longer its round trip is than the shortest seen; `None`
    /// before the first round trip is known.
    pub queue: Option<Duration>,
    /// Its estimate has been known a while and has not fallen lately
    /// ([`Peaks::steady`]). Loss that comes with a fall, or in a link's
    /// first seconds (its first keyframe's tail), is the link overflowing
    /// (the round trip, from receiver reports, is often too stale to show
    /// the queue), and gets no copies.
    pub estimate_steady: bool,
    /// Its estimate fell by [`CRASH_BY`] within the last second
    /// ([`Peaks::fell_by`]).
    pub estimate_crashed: bool,
}

/// A link's recent estimates: whether it fell lately.
#[derive(Debug, Clone, Default)]
pub struct Peaks {
    recent: std::collections::VecDeque<(Instant, u64)>,
    /// When the first estimate came.
    since: Option<Instant>,
}

/// How far back [`Peaks::fell`] looks, and what counts as a fall.
const FELL_WITHIN: Duration = Duration::from_secs(1);
const FELL_BY: f64 = 0.1;
/// A fall this deep is the link overflowing, and ends copies.
pub const CRASH_BY: f64 = 0.3;
/// How long a link's estimate must be known before its loss can be called
/// random: its first keyframe's tail, lost in a slow link's queue, is not.
const KNOWN_FOR: Duration = Duration::from_secs(1);

impl Peaks {
    pub fn push(&mut self, now: Instant, kbps: u64) {
        while self
            .recent
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > FELL_WITHIN)
        {
            self.recent.pop_front();
        }
        self.recent.push_back((now, kbps));
        self.since.get_or_insert(now);
    }

    /// Estimates go back [`KNOWN_FOR`] and the latest did not fall.
    pub fn steady(&self, now: Instant) -> bool {
        let known = self
            .since
            .is_some_and(|t| now.saturating_duration_since(t) >= KNOWN_FOR);
        known && !self.fell(now)
    }

    /// The latest estimate is more than [`FELL_BY`] under the highest of the
    /// last [`FELL_WITHIN`].
    pub fn fell(&self, now: Instant) -> bool {
        self.fell_by(now, FELL_BY)
    }

    /// The latest estimate is more than `share` under the highest of the
    /// last [`FELL_WITHIN`].
    pub fn fell_by(&self, now: Instant, share: f64) -> bool {
        let within = |t: &Instant| now.saturating_duration_since(*t) <= FELL_WITHIN;
        let peak = self
            .recent
            .iter()
            .filter(|(t, _)| within(t))
            .map(|(_, k)| *k)
            .max();
        let last = self.recent.back().map(|(_, k)| *k);
        peak.zip(last)
            .is_some_and(|(p, l)| (l as f64) < p as f64 * (1.0 - share))
    }
}

impl Report {
    fn random_loss(&self) -> bool {
        self.loss >= LOSSY
            && self.estimate_steady
            && self.headroom >= CARRIED
            && self.queue.is_some_and(|q| q <= QUEUE_CALM)
    }

    /// A queue, an estimate that no longer carries the target, or one that
    /// crashed: the encoder's target follows the estimate down, so a link
    /// overflowing keeps its headroom and shows only in the crash (copies
    /// on an overflowing 800 kbit/s link tripled what it was sent and held
    /// its estimate under 100 kbit/s for 15 s in Chromium). A smaller fall
    /// is the noise of an estimate on a lossy link.
    fn congested(&self) -> bool {
        self.headroom < CONGESTED
            || self.queue.is_none_or(|q| q >= QUEUE_FULL)
            || self.estimate_crashed
    }

    /// Copies for this loss (measured with single copies).
    fn many(&self, since: Instant) -> Copies {
        let n = if self.loss >= VERY_LOSSY { 3 } else { 2 };
        Copies::Many { n, since }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lossy(loss: f32) -> Report {
        Report {
            loss,
            headroom: 1.5,
            queue: Some(Duration::from_millis(5)),
            estimate_steady: true,
            estimate_crashed: false,
        }
    }

    #[test]
    fn loss_as_the_estimate_falls_is_congestion() {
        let t0 = Instant::now();
        let mut c = Copies::default();
        let falling = Report {
            estimate_steady: false,
            ..lossy(0.05)
        };
        assert!(
            !c.report(t0, falling),
            "an overflowing queue, its round trip stale"
        );
        let mut p = Peaks::default();
        p.push(t0, 1000);
        assert!(!p.steady(t0), "just measured");
        p.push(t0 + Duration::from_millis(500), 700);
        assert!(p.fell(t0 + Duration::from_millis(500)));
        assert!(
            !p.steady(t0 + Duration::from_secs(1)),
            "known 1 s, fell 0.5 s ago"
        );
        p.push(t0 + Duration::from_millis(2600), 700);
        assert!(!p.fell(t0 + Duration::from_millis(2600)), "the peak is old");
        p.push(t0 + Duration::from_millis(2800), 720);
        assert!(
            !p.fell(t0 + Duration::from_millis(2800)),
            "a rise is no fall"
        );
        assert!(p.steady(t0 + Duration::from_millis(2800)));
    }

    #[test]
    fn random_loss_on_a_fast_link_copies_until_a_trial_says_it_is_gone() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let mut c = Copies::default();
        assert!(!c.report(s(1), lossy(0.01)), "1 % is repaired well enough");
        assert!(!c.report(s(2), lossy(0.03)), "one lossy second");
        assert!(c.report(s(3), lossy(0.01)), "and two together");
        assert_eq!(c.count(), 2);
        for n in 4..33 {
            assert!(!c.report(s(n), lossy(0.0)), "the copies hide the loss");
        }
        // 30 s on: single copies for a trial, and the link loses more now.
        assert!(c.report(s(33), lossy(0.0)));
        assert_eq!(c.count(), 1);
        assert!(!c.report(s(34), lossy(0.01)), "too early to tell");
        assert!(c.report(s(36), lossy(0.05)));
        assert_eq!(c.count(), 3);
        // Later the loss is gone.
        for n in 37..67 {
            c.report(s(n), lossy(0.0));
        }
        assert!(matches!(c, Copies::Trial { .. }));
        c.report(s(68), lossy(0.0));
        c.report(s(70), lossy(0.0));
        assert_eq!(c, Copies::Single);
    }

    #[test]
    fn congestion_loss_gets_no_copies_and_ends_them() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let mut c = Copies::default();
        let queued = Report {
            queue: Some(Duration::from_millis(150)),
            ..lossy(0.10)
        };
        assert!(
            !c.report(s(0), queued),
            "a queue overflowing: copies would add to it"
        );
        let throttled = Report {
            headroom: 0.9,
            ..lossy(0.10)
        };
        assert!(
            !c.report(s(1), throttled),
            "the estimate does not carry the target"
        );
        let unknown = Report {
            queue: None,
            ..lossy(0.10)
        };
        assert!(!c.report(s(2), unknown), "no round trip known yet");
        assert!(!c.report(s(3), lossy(0.05)));
        assert!(c.report(s(3), lossy(0.05)));
        let wobble = Report {
            headroom: 0.8,
            queue: Some(Duration::from_millis(60)),
            ..lossy(0.0)
        };
        assert!(!c.report(s(4), wobble), "a wobble keeps the copies");
        assert!(c.report(s(5), queued));
        assert_eq!(c, Copies::Single);
        // The loss of an overflow's start looks random for a second: the
        // estimate falls only after it (and the target with it: the
        // headroom holds), the round trip stale and calm.
        assert!(!c.report(s(6), lossy(0.14)));
        let falling = Report {
            estimate_steady: false,
            estimate_crashed: true,
            ..lossy(0.20)
        };
        assert!(!c.report(s(7), falling), "no copies: the estimate fell");
        assert_eq!(c, Copies::Single);
        // Copies that started end at a fall too.
        c.report(s(8), lossy(0.03));
        assert!(c.report(s(9), lossy(0.03)));
        let noisy = Report {
            estimate_steady: false,
            ..lossy(0.001)
        };
        assert!(!c.report(s(10), noisy), "a lossy link's noise keeps them");
        assert!(c.report(s(11), falling), "a crash ends the copies");
        assert_eq!(c, Copies::Single);
        // Copies that do not hide the loss (a third of the packets lost
        // with every copy, the estimate steady as the target falls with it)
        // end, and are not tried again for a while.
        c.report(s(12), lossy(0.05));
        assert!(c.report(s(13), lossy(0.05)));
        assert!(
            !c.report(s(14), lossy(0.05)),
            "the first report counts single copies still"
        );
        assert!(c.report(s(16), lossy(0.25)));
        assert_eq!(c.count(), 1);
        for n in 17..46 {
            assert!(!c.report(s(n), lossy(0.05)), "refused");
        }
        c.report(s(47), lossy(0.05));
        assert!(c.report(s(48), lossy(0.05)), "tried again after 30 s");
    }
}
