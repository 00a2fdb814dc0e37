//! How hard each address has been opening connections lately, sans-IO.
//!
//! A crowd that reconnects as soon as it is displaced (or answered) keeps
//! the connection table full of fresh handshakes, each of which displaces
//! the oldest one still under way. A browser's handshake takes a few tens
//! of milliseconds on a busy server, and under such a crowd (150 addresses
//! sending wrong logins back to back) the owner's was displaced before it
//! was through. So the table weighs an address by the connections it holds
//! *and* by how many it opened in the last seconds: the crowd's connections
//! go first, whatever their age. A browser opens a handful at most when it
//! loads the page, and then keeps them. At a slower reconnecting the table's
//! oldest-first order is enough: a handshake is through long before it is
//! the oldest.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// An address's count of opened connections halves in this long: long
/// enough that a browser's one burst (a page load) weighs less than a
/// crowd's steady reconnecting, even at one connection a second.
const HALF_LIFE: Duration = Duration::from_secs(10);
/// Counts that have decayed under this are forgotten when the map is
/// pruned: the address opened its last connection seconds ago.
const FORGET_BELOW: f64 = 0.5;
/// The map is pruned when it holds this many addresses (then twice what
/// is left), so pruning costs little per connection however many come.
const PRUNE_FROM: usize = 512;

#[derive(Debug, Clone, Copy)]
struct Count {
    value: f64,
    at: Instant,
}

impl Count {
    fn at(&self, now: Instant) -> f64 {
        let age = now.saturating_duration_since(self.at).as_secs_f64();
        self.value * 0.5f64.powf(age / HALF_LIFE.as_secs_f64())
    }
}

/// Recent connections per address, decaying.
#[derive(Debug)]
pub struct Churn {
    counts: HashMap<IpAddr, Count>,
    prune_at: usize,
}

impl Default for Churn {
    fn default() -> Self {
        Churn {
            counts: HashMap::new(),
            prune_at: PRUNE_FROM,
        }
    }
}

impl Churn {
    /// `ip` opened a connection.
    pub fn opened(&mut self, ip: IpAddr, now: Instant) {
        let value = self.counts.get(&ip).map_or(0.0, |c| c.at(now)) + 1.0;
        self.counts.insert(ip, Count { value, at: now });
        if self.counts.len() >= self.prune_at {
            self.counts.retain(|_, c| c.at(now) >= FORGET_BELOW);
            self.prune_at = (2 * self.counts.len()).max(PRUNE_FROM);
        }
    }

    /// About how many connections `ip` opened in the last [`HALF_LIFE`] or
    /// two, in whole connections (the one it opened just now counts 1).
    pub fn recent(&self, ip: IpAddr, now: Instant) -> usize {
        self.counts.get(&ip).map_or(0, |c| c.at(now) as usize)
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.counts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(std::net::Ipv4Addr::from(0x7f00_0000u32 + n))
    }

    #[test]
    fn an_address_reconnecting_weighs_more_than_a_browser() {
        let t0 = Instant::now();
        let mut c = Churn::default();
        // A browser loads the page: four connections at once.
        for _ in 0..4 {
            c.opened(ip(1), t0);
        }
        // A crowd's address reconnects once a second for 10 s.
        for i in 0..10u64 {
            c.opened(ip(2), t0 + Duration::from_secs(i));
        }
        let now = t0 + Duration::from_secs(10);
        assert_eq!(c.recent(ip(1), now), 2, "4 halved");
        assert_eq!(c.recent(ip(2), now), 6);
        assert_eq!(c.recent(ip(3), now), 0);
    }

    #[test]
    fn counts_fade() {
        let t0 = Instant::now();
        let mut c = Churn::default();
        for _ in 0..8 {
            c.opened(ip(1), t0);
        }
        assert_eq!(c.recent(ip(1), t0), 8);
        assert_eq!(c.recent(ip(1), t0 + HALF_LIFE), 4);
        assert_eq!(c.recent(ip(1), t0 + 4 * HALF_LIFE), 0);
    }

    #[test]
    fn the_map_stays_bounded_by_the_addresses_of_the_last_seconds() {
        let t0 = Instant::now();
        let mut c = Churn::default();
        // 200,000 addresses, one connection each, 1,000 a second.
        for i in 0..200_000u32 {
            c.opened(ip(i), t0 + Duration::from_millis(i.into()));
        }
        // Counts of 1 fall under FORGET_BELOW after one half-life: about
        // 10,000 addresses are remembered, never the 200,000.
        assert!(c.tracked() <= 2 * 10_000 + PRUNE_FROM, "{}", c.tracked());
    }
}
