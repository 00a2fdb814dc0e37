//! Failed logins from one address slow that address down.
//!
//! The first few mistakes are free (people mistype); after that each
//! failure doubles the wait before the next attempt is even looked at, up to
//! five minutes. A success clears the slate. The table is bounded so a
//! flood of addresses cannot grow it without limit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

const FREE_FAILURES: u32 = 3;
const FIRST_DELAY: Duration = Duration::from_secs(1);
const MAX_DELAY: Duration = Duration::from_secs(300);
const MAX_ADDRESSES: usize = 4096;
/// An address quiet for this long is forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    blocked_until: Instant,
    last: Instant,
}

#[derive(Debug, Default)]
pub struct LoginBackoff {
    entries: HashMap<IpAddr, Entry>,
}

impl LoginBackoff {
    pub fn new() -> Self {
        Self::default()
    }

    /// `Err(wait)` when this address must wait before trying again.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        match self.entries.get(&ip) {
            Some(e) if e.blocked_until > now => Err(e.blocked_until - now),
            _ => Ok(()),
        }
    }

    /// How this address stands before its password is checked.
    pub fn standing(&self, ip: IpAddr) -> super::queue::Standing {
        match self.entries.get(&ip) {
            Some(e) if e.failures > 0 => super::queue::Standing::Failing(e.failures),
            _ => super::queue::Standing::Clean,
        }
    }

    /// Starts a login attempt: refused while the address must wait, else
    /// counted as a failure at once, before the password is checked, so
    /// that attempts sent together cannot all slip through one open door;
    /// [`LoginBackoff::succeeded`] clears it if the password was right.
    pub fn begin(&mut self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        self.check(ip, now)?;
        self.failed(ip, now);
        Ok(())
    }

    /// Records a failure; returns how long the address must now wait.
    pub fn failed(&mut self, ip: IpAddr, now: Instant) -> Duration {
        if self.entries.len() >= MAX_ADDRESSES && !self.entries.contains_key(&ip) {
            self.entries
                .retain(|_, e| now.saturating_duration_since(e.last) < FORGET_AFTER);
            if self.entries.len() >= MAX_ADDRESSES {
                // Still full: drop the quietest.
                if let Some(oldest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.last)
                    .map(|(k, _)| *k)
                {
                    self.entries.remove(&oldest);
                }
            }
        }
        let e = self.entries.entry(ip).or_insert(Entry {
            failures: 0,
            blocked_until: now,
            last: now,
        });
        e.failures += 1;
        e.last = now;
        let delay = if e.failures <= FREE_FAILURES {
            Duration::ZERO
        } else {
            let doublings = (e.failures - FREE_FAILURES - 1).min(16);
            (FIRST_DELAY * 2u32.pow(doublings)).min(MAX_DELAY)
        };
        e.blocked_until = now + delay;
        delay
    }

    pub fn succeeded(&mut self, ip: IpAddr) {
        self.entries.remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_after_the_free_failures_and_success_clears() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let mut b = LoginBackoff::new();
        let mut now = Instant::now();
        let mut delays = Vec::new();
        for _ in 0..7 {
            assert_eq!(b.check(ip, now), Ok(()));
            let d = b.failed(ip, now);
            delays.push(d.as_secs());
            if d > Duration::ZERO {
                assert_eq!(b.check(ip, now), Err(d), "blocked right after");
                assert_eq!(b.check(other, now), Ok(()), "other addresses unaffected");
            }
            now += d;
        }
        assert_eq!(delays, vec![0, 0, 0, 1, 2, 4, 8]);
        b.succeeded(ip);
        assert_eq!(b.failed(ip, now), Duration::ZERO);
    }

    #[test]
    fn attempts_sent_together_are_counted_before_they_are_checked() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mut b = LoginBackoff::new();
        let now = Instant::now();
        // Forty at once, none answered yet: the free three and the one that
        // set the first wait get through; the rest are refused.
        let admitted = (0..40).filter(|_| b.begin(ip, now).is_ok()).count();
        assert_eq!(admitted, 4);
        // The right password among them clears the slate.
        b.succeeded(ip);
        assert_eq!(b.begin(ip, now), Ok(()));
    }

    #[test]
    fn the_cap_holds() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mut b = LoginBackoff::new();
        let now = Instant::now();
        let mut last = Duration::ZERO;
        for _ in 0..40 {
            last = b.failed(ip, now);
        }
        assert_eq!(last, MAX_DELAY);
    }

    #[test]
    fn the_table_is_bounded() {
        let mut b = LoginBackoff::new();
        let now = Instant::now();
        for i in 0..(MAX_ADDRESSES as u32 + 100) {
            b.failed(IpAddr::from(i.to_be_bytes()), now);
        }
        assert!(b.entries.len() <= MAX_ADDRESSES);
    }
}
