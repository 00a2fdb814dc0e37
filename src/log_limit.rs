//! Log lines a client can cause, rate-limited: the first at once, then at
//! most one per interval carrying how many were held back, so a flood
//! neither fills the journal nor makes journald's own limit drop the events
//! that matter.

use std::time::{Duration, Instant};

/// One kind of line.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    last: Option<Instant>,
    held: u64,
}

impl Throttle {
    pub const fn new(every: Duration) -> Self {
        Throttle {
            every,
            last: None,
            held: 0,
        }
    }

    /// `Some(held)` when a line may be written now (`held` lines of this
    /// kind were swallowed since the last one), `None` to stay quiet.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.saturating_duration_since(t) < self.every => {
                self.held += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held))
            }
        }
    }
}

/// How often a line of one call site of [`warn_limited!`] may be written.
pub const EVERY: Duration = Duration::from_secs(10);

/// [`Throttle::allow`] on a call site's own throttle (a poisoned lock still
/// counts: a log line is never worth a panic).
pub fn allow_at(site: &std::sync::Mutex<Throttle>, now: Instant) -> Option<u64> {
    site.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .allow(now)
}

/// A `tracing` event at `level` for a line a client can cause: each call
/// site writes at most one line per [`EVERY`], the next one carrying
/// `held_back`, the number swallowed in between.
#[macro_export]
macro_rules! log_limited {
    ($level:expr, $($arg:tt)+) => {{
        static SITE: ::std::sync::Mutex<$crate::log_limit::Throttle> =
            ::std::sync::Mutex::new($crate::log_limit::Throttle::new($crate::log_limit::EVERY));
        if let Some(held) = $crate::log_limit::allow_at(&SITE, ::std::time::Instant::now()) {
            ::tracing::event!($level, held_back = held, $($arg)+);
        }
    }};
}

/// [`log_limited!`] at warn level; same arguments as `tracing::warn!`.
#[macro_export]
macro_rules! warn_limited {
    ($($arg:tt)+) => { $crate::log_limited!(::tracing::Level::WARN, $($arg)+) };
}

/// [`log_limited!`] at info level.
#[macro_export]
macro_rules! info_limited {
    ($($arg:tt)+) => { $crate::log_limited!(::tracing::Level::INFO, $($arg)+) };
}

/// ", and N more like it" when some were held back, for the end of a line.
pub fn more(held: u64) -> String {
    if held == 0 {
        String::new()
    } else {
        format!(" ({held} more like it since the last line)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count() {
        let t0 = Instant::now();
        let mut t = Throttle::new(Duration::from_secs(10));
        assert_eq!(t.allow(t0), Some(0));
        for i in 1..=99 {
            assert_eq!(t.allow(t0 + Duration::from_millis(i * 10)), None);
        }
        assert_eq!(t.allow(t0 + Duration::from_secs(10)), Some(99));
        assert_eq!(t.allow(t0 + Duration::from_secs(11)), None);
        assert_eq!(more(0), "");
        assert!(more(3).contains("3 more"));
    }

    #[test]
    fn a_call_site_keeps_its_own_throttle() {
        let site = std::sync::Mutex::new(Throttle::new(EVERY));
        let other = std::sync::Mutex::new(Throttle::new(EVERY));
        let t0 = Instant::now();
        assert_eq!(allow_at(&site, t0), Some(0));
        assert_eq!(allow_at(&site, t0), None);
        assert_eq!(
            allow_at(&other, t0),
            Some(0),
            "another site is not held back"
        );
        assert_eq!(allow_at(&site, t0 + EVERY), Some(1));
    }
}
