//! When openh264 stands in for the hardware encoder and when the hardware
//! gets its next chance, sans-IO: events and capture times in, the mode
//! out.
//!
//! A hardware encoder that failed is tried again after 30 s, then after
//! twice as long each time it fails again, up to 5 min, and from then on
//! every 5 min for as long as it fails: never given up for good. One that
//! then ran for 10 min worked, and its next failure starts the backoff
//! afresh. A reopened encoder is on trial first: it encodes the same frames
//! as openh264, whose pictures still go out, until it has returned
//! [`TRIAL_PICTURES`] of them; then it takes over from its next keyframe,
//! so a device that opens but does not work costs no frame at all.

use std::time::{Duration, Instant};

/// The first retry after a failure.
pub(super) const RETRY_FIRST: Duration = Duration::from_secs(30);
/// Retries back off to this at most, and go on at this pace.
pub(super) const RETRY_MAX: Duration = Duration::from_secs(5 * 60);
/// A hardware encoder on air this long worked: its next failure is retried
/// after [`RETRY_FIRST`] again.
pub(super) const STABLE: Duration = Duration::from_secs(10 * 60);
/// Pictures a reopened hardware encoder returns before it takes over.
pub(super) const TRIAL_PICTURES: u32 = 10;
/// Pictures it may still owe then (those in flight).
const TRIAL_SLACK: u32 = 3;
/// Frames a trial may take: more, and too many pictures were lost.
pub(super) const TRIAL_FRAMES: u32 = 3 * TRIAL_PICTURES;
/// Frames the hardware has to deliver its first keyframe in the handover.
pub(super) const HANDOVER_FRAMES: u32 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// The hardware encodes.
    Hardware,
    /// openh264 encodes; the hardware is tried again at `retry_at`.
    Software { retry_at: Instant },
    /// openh264's pictures go out while the reopened hardware encodes the
    /// same frames: `fed` so far, `got` pictures back (thrown away).
    Trial { fed: u32, got: u32 },
    /// The hardware encodes, every frame asking for a keyframe; its pictures
    /// go out from the first keyframe captured after `after` (the trial's
    /// last frame).
    Handover { after: Instant, frames: u32 },
}

/// Where a trial or a handover stands after a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    Going,
    Passed,
    Failed,
}

#[derive(Debug)]
pub(super) struct Policy {
    mode: Mode,
    /// The wait before the next retry.
    delay: Duration,
    /// Since when the hardware is on air.
    since: Option<Instant>,
}

impl Policy {
    /// The hardware opened: it encodes.
    pub(super) fn on_hardware(now: Instant) -> Self {
        Policy {
            mode: Mode::Hardware,
            delay: RETRY_FIRST,
            since: Some(now),
        }
    }

    /// The hardware did not open: openh264, the hardware tried later.
    pub(super) fn on_software(now: Instant) -> Self {
        let mut policy = Policy {
            mode: Mode::Hardware,
            delay: RETRY_FIRST,
            since: None,
        };
        policy.back_off(now);
        policy
    }

    pub(super) fn mode(&self) -> Mode {
        self.mode
    }

    /// Whether the hardware's next chance has come.
    pub(super) fn retry_due(&self, now: Instant) -> bool {
        matches!(self.mode, Mode::Software { retry_at } if now >= retry_at)
    }

    /// The hardware reopened: on trial from the next frame.
    pub(super) fn trial_started(&mut self) {
        self.mode = Mode::Trial { fed: 0, got: 0 };
    }

    /// The hardware failed (on air, on trial, in the handover) or did not
    /// reopen: openh264 alone until the returned time.
    pub(super) fn hardware_failed(&mut self, now: Instant) -> Instant {
        if self
            .since
            .is_some_and(|t| now.saturating_duration_since(t) >= STABLE)
        {
            self.delay = RETRY_FIRST;
        }
        self.since = None;
        self.back_off(now)
    }

    fn back_off(&mut self, now: Instant) -> Instant {
        let retry_at = now + self.delay;
        self.delay = (self.delay * 2).min(RETRY_MAX);
        self.mode = Mode::Software { retry_at };
        retry_at
    }

    /// Pictures the hardware on trial returned.
    pub(super) fn trial_pictures(&mut self, n: u32) {
        if let Mode::Trial { got, .. } = &mut self.mode {
            *got = got.saturating_add(n);
        }
    }

    /// A frame of the trial was fed to the hardware, captured at `now`.
    pub(super) fn trial_frame(&mut self, now: Instant) -> Step {
        let Mode::Trial { fed, got } = self.mode else {
            return Step::Going;
        };
        let fed = fed + 1;
        if got >= TRIAL_PICTURES && fed.saturating_sub(got) <= TRIAL_SLACK {
            self.mode = Mode::Handover {
                after: now,
                frames: 0,
            };
            return Step::Passed;
        }
        if fed >= TRIAL_FRAMES {
            self.hardware_failed(now);
            return Step::Failed;
        }
        self.mode = Mode::Trial { fed, got };
        Step::Going
    }

    /// A frame of the handover brought no keyframe yet.
    pub(super) fn handover_frame(&mut self, now: Instant) -> Step {
        let Mode::Handover { after, frames } = self.mode else {
            return Step::Going;
        };
        if frames + 1 >= HANDOVER_FRAMES {
            self.hardware_failed(now);
            return Step::Failed;
        }
        self.mode = Mode::Handover {
            after,
            frames: frames + 1,
        };
        Step::Going
    }

    /// The hardware's keyframe went out: it is on air.
    pub(super) fn handed_over(&mut self, now: Instant) {
        self.mode = Mode::Hardware;
        self.since = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn retry_at(p: &Policy) -> Instant {
        match p.mode() {
            Mode::Software { retry_at } => retry_at,
            other => panic!("not on openh264: {other:?}"),
        }
    }

    /// The reopened hardware returns every picture: the trial passes on its
    /// tenth frame.
    fn pass_trial(p: &mut Policy, now: Instant) {
        p.trial_started();
        for n in 1..=TRIAL_PICTURES {
            p.trial_pictures(1);
            let step = p.trial_frame(now);
            assert_eq!(step == Step::Passed, n == TRIAL_PICTURES, "frame {n}");
        }
        assert!(matches!(p.mode(), Mode::Handover { after, .. } if after == now));
    }

    #[test]
    fn retries_back_off_and_never_stop() {
        let t0 = Instant::now();
        let mut p = Policy::on_hardware(t0);
        let mut now = t0 + 60 * S;
        let mut waits = Vec::new();
        for _ in 0..8 {
            let at = p.hardware_failed(now);
            waits.push((at - now).as_secs());
            assert!(!p.retry_due(at - S) && p.retry_due(at));
            // The device still does not open.
            now = at;
        }
        assert_eq!(waits, [30, 60, 120, 240, 300, 300, 300, 300]);
        assert_eq!(retry_at(&p), now);
        assert_eq!(p.hardware_failed(now), now + RETRY_MAX);
    }

    #[test]
    fn a_trial_passes_hands_over_and_a_long_run_resets_the_backoff() {
        let t0 = Instant::now();
        let mut p = Policy::on_software(t0);
        assert_eq!(retry_at(&p), t0 + RETRY_FIRST);
        let now = t0 + RETRY_FIRST;
        pass_trial(&mut p, now);
        assert_eq!(p.handover_frame(now + S), Step::Going);
        p.handed_over(now + 2 * S);
        assert_eq!(p.mode(), Mode::Hardware);
        // Failing again soon: the wait has doubled.
        let at = p.hardware_failed(now + 10 * S);
        assert_eq!(at, now + 10 * S + 2 * RETRY_FIRST);
        pass_trial(&mut p, at);
        p.handed_over(at);
        // After a long run the next failure is retried soon again.
        let later = at + STABLE;
        assert_eq!(p.hardware_failed(later), later + RETRY_FIRST);
    }

    #[test]
    fn a_trial_that_loses_pictures_fails_and_backs_off() {
        let t0 = Instant::now();
        let mut p = Policy::on_software(t0);
        p.trial_started();
        let mut steps = Vec::new();
        for n in 0..TRIAL_FRAMES {
            // One picture back for every other frame.
            p.trial_pictures(n % 2);
            steps.push(p.trial_frame(t0 + RETRY_FIRST));
        }
        assert_eq!(steps.last(), Some(&Step::Failed));
        assert!(steps[..steps.len() - 1].iter().all(|s| *s == Step::Going));
        assert_eq!(retry_at(&p), t0 + RETRY_FIRST * 3);
    }

    #[test]
    fn a_handover_without_a_keyframe_fails() {
        let t0 = Instant::now();
        let mut p = Policy::on_software(t0);
        pass_trial(&mut p, t0);
        for _ in 1..HANDOVER_FRAMES {
            assert_eq!(p.handover_frame(t0), Step::Going);
        }
        assert_eq!(p.handover_frame(t0), Step::Failed);
        assert!(matches!(p.mode(), Mode::Software { .. }));
    }
}
