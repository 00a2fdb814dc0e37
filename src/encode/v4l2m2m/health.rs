//! Whether the hardware encoder still works, sans-IO: events and time in,
//! a verdict out.
//!
//! One late, dropped or failed picture costs its frame and nothing more; the
//! device counts as failed only on a pattern: pictures owed for 1.5 s with
//! none coming back (a stalled driver), errors on every call for a second
//! with no picture between (a broken one), or half of the last 32 pictures
//! written off (one that loses too many to be watchable). The silence clock
//! runs only while pictures are in flight, so a camera that pauses after a
//! dropped picture does not make the encoder look dead.

use std::time::{Duration, Instant};

/// Pictures owed this long, none back: the device is silent.
pub(super) const SILENCE_LIMIT: Duration = Duration::from_millis(1500);
/// Errors this long with no picture between: the device is failing.
pub(super) const ERROR_LIMIT: Duration = Duration::from_secs(1);
/// Fewer errors than this are a hiccup, however long apart.
const MIN_ERRORS: u32 = 8;
/// The pictures whose fate is remembered.
const WINDOW: u32 = u32::BITS;
/// Written off among the last [`WINDOW`]: too many to be of use.
const LOSSY: u32 = WINDOW / 2;

/// Why the device counts as failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("no picture came back for {0:?} while pictures were owed")]
    Silent(Duration),
    #[error("{errors} errors and no picture for {over:?}")]
    Erring { errors: u32, over: Duration },
    #[error("{lost} of the last {of} pictures never came back in time")]
    Lossy { lost: u32, of: u32 },
}

#[derive(Debug, Default)]
pub(super) struct Health {
    /// Time pictures were owed since the last one came back, up to
    /// `owed_from`.
    owed: Duration,
    /// Since when pictures are owed; `None` while none is in flight.
    owed_from: Option<Instant>,
    /// Errors since the last picture, and since when.
    errors: u32,
    erring_since: Option<Instant>,
    /// The last pictures' fates, newest in bit 0: 1 written off, 0 back.
    fates: u32,
    known: u32,
}

impl Health {
    /// The pictures in flight now: the silence clock runs while there are.
    pub(super) fn observe(&mut self, now: Instant, in_flight: usize) {
        if let Some(from) = self.owed_from {
            self.owed += now.saturating_duration_since(from);
        }
        self.owed_from = (in_flight > 0).then_some(now);
    }

    /// A picture came back and went out: the device works.
    pub(super) fn picture(&mut self, now: Instant) {
        self.owed = Duration::ZERO;
        self.owed_from = self.owed_from.map(|_| now);
        self.errors = 0;
        self.erring_since = None;
        self.fate(false);
    }

    /// A picture was written off.
    pub(super) fn lost(&mut self) {
        self.fate(true);
    }

    /// A call failed (the frame it hit is skipped).
    pub(super) fn error(&mut self, now: Instant) {
        self.errors = self.errors.saturating_add(1);
        self.erring_since.get_or_insert(now);
    }

    fn fate(&mut self, lost: bool) {
        self.fates = (self.fates << 1) | u32::from(lost);
        self.known = (self.known + 1).min(WINDOW);
    }

    /// `Some` once the device counts as failed.
    pub(super) fn verdict(&self, now: Instant) -> Option<Failure> {
        let since =
            |t: Option<Instant>| t.map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        let owed = self.owed + since(self.owed_from);
        if owed >= SILENCE_LIMIT {
            return Some(Failure::Silent(owed));
        }
        let over = since(self.erring_since);
        if self.errors >= MIN_ERRORS && over >= ERROR_LIMIT {
            return Some(Failure::Erring {
                errors: self.errors,
                over,
            });
        }
        let lost = self.fates.count_ones();
        if self.known == WINDOW && lost >= LOSSY {
            return Some(Failure::Lossy { lost, of: WINDOW });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: Duration = Duration::from_millis(33);

    #[test]
    fn silence_counts_only_while_pictures_are_owed() {
        let t0 = Instant::now();
        let mut h = Health::default();
        h.observe(t0, 1);
        h.observe(t0 + Duration::from_millis(800), 0);
        // The camera pauses for a minute: nothing is owed, nothing counts.
        h.observe(t0 + Duration::from_secs(60), 1);
        assert_eq!(h.verdict(t0 + Duration::from_millis(60_600)), None);
        let at = t0 + Duration::from_millis(60_700);
        assert_eq!(
            h.verdict(at),
            Some(Failure::Silent(Duration::from_millis(1500)))
        );
        h.picture(at);
        assert_eq!(h.verdict(at + Duration::from_millis(1400)), None);
    }

    #[test]
    fn errors_fail_the_device_only_when_they_last() {
        let t0 = Instant::now();
        let mut h = Health::default();
        for i in 0..20 {
            h.error(t0 + FRAME * i);
        }
        assert_eq!(h.verdict(t0 + FRAME * 20), None, "under a second");
        h.picture(t0 + FRAME * 20);
        for i in 21..60 {
            h.error(t0 + FRAME * i);
            if FRAME * (i - 21) < ERROR_LIMIT {
                assert_eq!(h.verdict(t0 + FRAME * i), None, "frame {i}");
            }
        }
        assert!(matches!(
            h.verdict(t0 + FRAME * 60),
            Some(Failure::Erring { errors: 39, .. })
        ));
    }

    #[test]
    fn a_lost_picture_now_and_then_is_no_failure_but_half_of_them_is() {
        let t0 = Instant::now();
        let mut h = Health::default();
        for i in 0..200u32 {
            if i.is_multiple_of(5) {
                h.lost();
            } else {
                h.picture(t0);
            }
        }
        assert_eq!(h.verdict(t0), None);
        for i in 0..WINDOW {
            if i.is_multiple_of(2) {
                h.lost();
            } else {
                h.picture(t0);
            }
        }
        assert_eq!(h.verdict(t0), Some(Failure::Lossy { lost: 16, of: 32 }));
    }
}
