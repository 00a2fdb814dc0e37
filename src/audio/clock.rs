//! Capture times for the microphone, sans-IO: sample `n` of the stream was
//! captured at `t0 + n / RATE`, on the monotonic clock the video frames use,
//! so the RTP times and sender reports of audio and video line up.
//!
//! A sound card's clock is not the system's: they drift apart by tens of
//! parts per million (a few ms a minute). Each read tells when its samples
//! were really captured (the read's time minus what ALSA still holds); when
//! the counted time and that truth part by more than [`MAX_DRIFT`] the clock
//! is set again. A read is only ever late (scheduling), never early, so a
//! counted time later than the truth is corrected at once, an earlier one
//! only once it has held for [`LATE_FOR`] (a single late wake-up is not a
//! drift).

use std::time::{Duration, Instant};

use super::duration_of;

/// How far the counted and the measured capture time may part.
pub const MAX_DRIFT: Duration = Duration::from_millis(20);
/// How long the counted time must lag before it is moved on.
pub const LATE_FOR: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub struct CaptureClock {
    /// Capture time of sample 0, once known.
    t0: Option<Instant>,
    /// Samples handed out so far.
    samples: u64,
    /// Since when reads have said the counted time runs early.
    behind_since: Option<Instant>,
    /// Times the clock was set again (for the log and tests).
    pub resets: u64,
}

impl CaptureClock {
    pub fn new() -> Self {
        Self::default()
    }

    /// `len` samples were read at `now` with `queued` more still waiting in
    /// the device: the capture time of their first sample.
    pub fn frame(&mut self, now: Instant, len: usize, queued: usize) -> Instant {
        let measured = measured(now, len, queued);
        let counted = self.t0.map(|t0| t0 + duration_of(self.samples));
        let at = match counted {
            None => self.set(measured),
            Some(c) if c > measured + MAX_DRIFT => self.set(measured),
            Some(c) if measured > c + MAX_DRIFT => {
                let since = *self.behind_since.get_or_insert(now);
                if now.saturating_duration_since(since) >= LATE_FOR {
                    self.set(measured)
                } else {
                    c
                }
            }
            Some(c) => {
                self.behind_since = None;
                c
            }
        };
        self.samples += len as u64;
        at
    }

    fn set(&mut self, measured: Instant) -> Instant {
        if self.t0.is_some() {
            self.resets += 1;
        }
        self.t0 = Some(
            measured
                .checked_sub(duration_of(self.samples))
                .unwrap_or(measured),
        );
        self.behind_since = None;
        measured
    }
}

/// What this one read says: `len` samples read at `now` with `queued` more
/// waiting were captured from `now - (len + queued)`. Noisier than the
/// counted clock (the period's granularity), but it follows a glitch at
/// once where the clock takes [`LATE_FOR`]: the echo canceller's alignment
/// and the half-duplex gate use it.
pub fn measured(now: Instant, len: usize, queued: usize) -> Instant {
    now.checked_sub(duration_of((len + queued) as u64))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_reads_count_samples_exactly() {
        let t = Instant::now();
        let mut c = CaptureClock::new();
        let first = c.frame(t + Duration::from_millis(25), 960, 240);
        assert_eq!(first, t);
        for n in 1..500u64 {
            // Reads wake 0-9 ms late: the counted times do not wobble.
            let jitter = Duration::from_millis(n * 7 % 10);
            let now = t + Duration::from_millis(20 * n + 25) + jitter;
            assert_eq!(c.frame(now, 960, 240), t + Duration::from_millis(20 * n));
        }
        assert_eq!(c.resets, 0);
    }

    #[test]
    fn a_card_running_slow_is_followed_after_a_second_a_fast_one_at_once() {
        let t = Instant::now();
        let mut c = CaptureClock::new();
        c.frame(t + Duration::from_millis(20), 960, 0);
        // One late wake-up of 50 ms: not a drift.
        let late = c.frame(t + Duration::from_millis(90), 960, 0);
        assert_eq!(late, t + Duration::from_millis(20));
        c.frame(t + Duration::from_millis(60), 960, 0);
        assert_eq!(c.resets, 0);
        // The card runs 1 % slow (a frame every 20.2 ms): once the lag
        // passes MAX_DRIFT and has held for a second, the clock follows.
        let mut now = t + Duration::from_millis(60);
        let mut last = now;
        let mut worst = Duration::ZERO;
        for _ in 0..1000 {
            now += Duration::from_micros(20_200);
            last = c.frame(now, 960, 0);
            worst = worst.max(now.saturating_duration_since(last));
        }
        assert!(c.resets >= 1);
        // The frame itself (20 ms), the drift allowed, and a second's 1 %.
        let bound = Duration::from_millis(20) + MAX_DRIFT + Duration::from_millis(12);
        assert!(worst <= bound, "{worst:?}");
        // Samples arriving sooner than counted: set at once.
        let resets = c.resets;
        let early = c.frame(last, 960, 0);
        assert_eq!(c.resets, resets + 1);
        assert!(early <= last);
    }
}
