//! Who may hold one of the server's connections, sans-IO.
//!
//! A connection that has not finished its TLS handshake, or has no request
//! in flight, costs the server a slot and gives nothing: a crowd of silent
//! connections used to lock every user out (129 from one address, held for
//! as long as the handshake deadline allowed, renewed by a few a second).
//! So each address may hold only so many, and when the server (or that
//! address) is full, a newcomer takes the slot of the connection that has
//! been idle longest. Only when every slot has a request in flight is the
//! newcomer refused. The IO shell (`http::serve`) asks [`Connections::admit`]
//! and tells it when a request starts and ends and when a connection closes;
//! the handle `T` it keeps per connection is how it tells one to go.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// A connection's number in the table.
pub type ConnId = u64;

/// Why a newcomer gets no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Every slot has a request in flight.
    Full,
    /// Its address holds its share, each with a request in flight.
    AddressFull,
}

/// What [`Connections::admit`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission<T> {
    /// In, as `id`; `evicted` are the handles of the connections it
    /// displaced, to be told to close.
    In {
        id: ConnId,
        evicted: Vec<T>,
    },
    Refused(Refusal),
}

#[derive(Debug)]
struct Conn<T> {
    ip: IpAddr,
    /// Since when it has had nothing in flight (its start, before TLS).
    idle_since: Option<Instant>,
    in_flight: u32,
    handle: T,
}

/// The connection table.
#[derive(Debug)]
pub struct Connections<T> {
    max_total: usize,
    max_per_address: usize,
    conns: HashMap<ConnId, Conn<T>>,
    next: ConnId,
}

impl<T> Connections<T> {
    pub fn new(max_total: usize, max_per_address: usize) -> Self {
        Connections {
            max_total,
            max_per_address,
            conns: HashMap::new(),
            next: 1,
        }
    }

    /// A new connection from `ip`: in (perhaps displacing the idlest
    /// connection of its address, or of all), or refused.
    pub fn admit(&mut self, ip: IpAddr, now: Instant, handle: T) -> Admission<T> {
        let mut evicted = Vec::new();
        if self.count_of(ip) >= self.max_per_address {
            match self.idlest(Some(ip)) {
                Some(id) => evicted.extend(self.remove(id)),
                None => return Admission::Refused(Refusal::AddressFull),
            }
        }
        if self.conns.len() >= self.max_total {
            match self.idlest(None) {
                Some(id) => evicted.extend(self.remove(id)),
                None => return Admission::Refused(Refusal::Full),
            }
        }
        let id = self.next;
        self.next += 1;
        self.conns.insert(
            id,
            Conn {
                ip,
                idle_since: Some(now),
                in_flight: 0,
                handle,
            },
        );
        Admission::In { id, evicted }
    }

    /// A request arrived on `id`: it is not to be displaced until answered.
    pub fn request_started(&mut self, id: ConnId) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.in_flight += 1;
            c.idle_since = None;
        }
    }

    /// A request on `id` was answered.
    pub fn request_ended(&mut self, id: ConnId, now: Instant) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.in_flight = c.in_flight.saturating_sub(1);
            if c.in_flight == 0 {
                c.idle_since = Some(now);
            }
        }
    }

    /// `id` closed (or was displaced: then this does nothing).
    pub fn closed(&mut self, id: ConnId) {
        self.conns.remove(&id);
    }

    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    fn count_of(&self, ip: IpAddr) -> usize {
        self.conns.values().filter(|c| c.ip == ip).count()
    }

    /// The connection idle longest (of `ip`, or of all).
    fn idlest(&self, ip: Option<IpAddr>) -> Option<ConnId> {
        self.conns
            .iter()
            .filter(|(_, c)| ip.is_none_or(|ip| c.ip == ip))
            .filter_map(|(id, c)| c.idle_since.map(|t| (t, *id)))
            .min()
            .map(|(_, id)| id)
    }

    fn remove(&mut self, id: ConnId) -> Option<T> {
        self.conns.remove(&id).map(|c| c.handle)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, n])
    }

    fn id_of(a: &Admission<&'static str>) -> ConnId {
        match a {
            Admission::In { id, .. } => *id,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_newcomer_displaces_the_idlest_when_full() {
        let t0 = Instant::now();
        let mut c = Connections::new(3, 3);
        let a = id_of(&c.admit(ip(1), t0, "a"));
        let b = id_of(&c.admit(ip(2), t0 + Duration::from_secs(1), "b"));
        let _ = id_of(&c.admit(ip(3), t0 + Duration::from_secs(2), "c"));
        // a is busy: b, idle longest among the rest, goes.
        c.request_started(a);
        let d = c.admit(ip(4), t0 + Duration::from_secs(3), "d");
        assert!(
            matches!(&d, Admission::In { evicted, .. } if evicted == &["b"]),
            "{d:?}"
        );
        assert_eq!(c.len(), 3);
        c.closed(b); // its task ends later: harmless
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn only_when_every_slot_is_busy_is_a_newcomer_refused() {
        let t0 = Instant::now();
        let mut c = Connections::new(2, 2);
        let a = id_of(&c.admit(ip(1), t0, "a"));
        let b = id_of(&c.admit(ip(2), t0, "b"));
        c.request_started(a);
        c.request_started(b);
        assert_eq!(c.admit(ip(3), t0, "c"), Admission::Refused(Refusal::Full));
        c.request_ended(b, t0 + Duration::from_secs(1));
        assert!(
            matches!(c.admit(ip(3), t0, "c"), Admission::In { evicted, .. } if evicted == ["b"])
        );
    }

    #[test]
    fn an_address_holds_its_share_and_displaces_only_its_own() {
        let t0 = Instant::now();
        let mut c = Connections::new(10, 2);
        let other = id_of(&c.admit(ip(9), t0, "other"));
        let a1 = id_of(&c.admit(ip(1), t0 + Duration::from_secs(1), "a1"));
        let _a2 = id_of(&c.admit(ip(1), t0 + Duration::from_secs(2), "a2"));
        let a3 = c.admit(ip(1), t0 + Duration::from_secs(3), "a3");
        assert!(
            matches!(&a3, Admission::In { evicted, .. } if evicted == &["a1"]),
            "its own idlest, not the older one of another address: {a3:?}"
        );
        assert!(c.conns.contains_key(&other));
        assert!(!c.conns.contains_key(&a1));
        // All of its share busy: refused, the others untouched.
        for id in c.conns.keys().copied().collect::<Vec<_>>() {
            if id != other {
                c.request_started(id);
            }
        }
        assert_eq!(
            c.admit(ip(1), t0, "a4"),
            Admission::Refused(Refusal::AddressFull)
        );
        assert!(matches!(c.admit(ip(2), t0, "b"), Admission::In { .. }));
    }

    #[test]
    fn a_thousand_silent_connections_cannot_keep_a_newcomer_out() {
        let t0 = Instant::now();
        let mut c = Connections::new(128, 16);
        for i in 0..1000u32 {
            let from = ip((i % 10) as u8 + 10);
            assert!(
                matches!(
                    c.admit(from, t0 + Duration::from_millis(i.into()), ()),
                    Admission::In { .. }
                ),
                "silent connection {i}"
            );
        }
        assert!(c.len() <= 128);
        let newcomer = c.admit(ip(1), t0 + Duration::from_secs(2), ());
        assert!(matches!(newcomer, Admission::In { .. }));
    }
}
