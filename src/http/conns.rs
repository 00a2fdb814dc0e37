//! Who may hold one of the server's connections, sans-IO.
//!
//! A connection that has not finished its TLS handshake, or has no request
//! in flight, costs the server a slot and gives nothing: a crowd of silent
//! connections used to lock every user out (129 from one address, held for
//! as long as the handshake deadline allowed, renewed by a few a second).
//! So each address may hold only so many, and when the server (or that
//! address) is full, a newcomer takes a slot of the heaviest address (the
//! slots it holds and the connections it opened lately, [`super::churn`]):
//! the connection longest in its handshake, else the one idle longest,
//! else the request whose body has been arriving longest (a body trickled
//! in a byte a second held every slot: an honest body arrives in
//! milliseconds). A request being answered is never displaced, and
//! WebSockets may hold only part of the table, so that logged-in sockets
//! can never take the owner's login page away. Only when every slot is
//! being answered or leased is a newcomer refused.
//!
//! The IO shell (`http::serve`) asks [`Connections::admit`] and tells it
//! when its TLS handshake is done, when a request starts, when its body is
//! whole and when it ends, when a WebSocket leases a connection and when a
//! connection closes; the handle `T` it keeps per connection is how it
//! tells one to go.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use super::churn::Churn;

/// A connection's number in the table.
pub type ConnId = u64;

/// Why a newcomer gets no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Every slot has a request being answered, or a WebSocket.
    Full,
    /// Its address holds its share, each being answered or leased.
    AddressFull,
}

/// Why a WebSocket may not keep its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseRefusal {
    /// WebSockets hold all the slots they may: the rest are kept for pages.
    Full,
    /// Its address holds its share of WebSockets.
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

/// What a connection is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    /// Accepted then, not yet through its TLS handshake.
    Handshaking(Instant),
    /// Through TLS, nothing in flight since then.
    Idle(Instant),
    /// A request whose body has been arriving since then.
    Receiving(Instant),
    /// A whole request being answered.
    Answering,
}

#[derive(Debug)]
struct Conn<T> {
    ip: IpAddr,
    now: Use,
    /// Kept by a WebSocket: never displaced while it lives.
    leased: bool,
    handle: T,
}

impl<T> Conn<T> {
    /// Whether a newcomer may take its slot, and how early it goes: those
    /// still in their handshake first (they have shown nothing), then the
    /// idle, then the longest-receiving, each oldest first.
    fn displaceable(&self) -> Option<(u8, Instant)> {
        match (self.leased, self.now) {
            (true, _) | (_, Use::Answering) => None,
            (false, Use::Handshaking(t)) => Some((0, t)),
            (false, Use::Idle(t)) => Some((1, t)),
            (false, Use::Receiving(t)) => Some((2, t)),
        }
    }
}

/// The limits of the table.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub total: usize,
    pub per_address: usize,
    /// Slots WebSockets may hold in all; the rest stay for requests.
    pub leases: usize,
    pub leases_per_address: usize,
}

/// The connection table.
#[derive(Debug)]
pub struct Connections<T> {
    limits: Limits,
    conns: HashMap<ConnId, Conn<T>>,
    next: ConnId,
    /// How many connections each address opened lately.
    churn: Churn,
}

impl<T> Connections<T> {
    pub fn new(limits: Limits) -> Self {
        Connections {
            limits,
            conns: HashMap::new(),
            next: 1,
            churn: Churn::default(),
        }
    }

    /// A new connection from `ip`: in (perhaps displacing a connection of
    /// its address, or of all), or refused.
    pub fn admit(&mut self, ip: IpAddr, now: Instant, handle: T) -> Admission<T> {
        let mut evicted = Vec::new();
        self.churn.opened(ip, now);
        if self.count_of(ip) >= self.limits.per_address {
            match self.first_to_go(Some(ip)) {
                Some(id) => evicted.extend(self.remove(id)),
                None => return Admission::Refused(Refusal::AddressFull),
            }
        }
        if self.conns.len() >= self.limits.total {
            match self.heaviest_first_to_go(now) {
                Some(id) => evicted.extend(self.remove(id)),
                None => return Admission::Refused(Refusal::Full),
            }
        }
        let id = self.next;
        self.next += 1;
        let conn = Conn {
            ip,
            now: Use::Handshaking(now),
            leased: false,
            handle,
        };
        self.conns.insert(id, conn);
        Admission::In { id, evicted }
    }

    /// `id` is through its TLS handshake: idle from now, and displaced only
    /// after every connection still in its handshake (under a flood of new
    /// connections, a browser about to send its request must not be the
    /// first to go).
    pub fn secured(&mut self, id: ConnId, now: Instant) {
        self.set(id, Use::Idle(now));
    }

    /// A request arrived on `id`; `has_body` when a body is still to come.
    pub fn request_started(&mut self, id: ConnId, has_body: bool, now: Instant) {
        self.set(
            id,
            if has_body {
                Use::Receiving(now)
            } else {
                Use::Answering
            },
        );
    }

    /// The request's body on `id` is whole: it is not to be displaced until
    /// answered.
    pub fn body_done(&mut self, id: ConnId) {
        self.set(id, Use::Answering);
    }

    /// A request on `id` was answered.
    pub fn request_ended(&mut self, id: ConnId, now: Instant) {
        self.set(id, Use::Idle(now));
    }

    /// A WebSocket keeps `id` for its life, within the share WebSockets have.
    pub fn lease(&mut self, id: ConnId) -> Result<(), LeaseRefusal> {
        let Some(ip) = self.conns.get(&id).map(|c| c.ip) else {
            return Ok(()); // already displaced: the socket ends with it
        };
        let leased = |c: &&Conn<T>| c.leased;
        if self.conns.values().filter(leased).count() >= self.limits.leases {
            return Err(LeaseRefusal::Full);
        }
        let of_ip = self.conns.values().filter(leased).filter(|c| c.ip == ip);
        if of_ip.count() >= self.limits.leases_per_address {
            return Err(LeaseRefusal::AddressFull);
        }
        if let Some(c) = self.conns.get_mut(&id) {
            c.leased = true;
        }
        Ok(())
    }

    /// The WebSocket on `id` ended.
    pub fn unlease(&mut self, id: ConnId, now: Instant) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.leased = false;
            c.now = Use::Idle(now);
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

    fn set(&mut self, id: ConnId, now: Use) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.now = now;
        }
    }

    fn count_of(&self, ip: IpAddr) -> usize {
        self.conns.values().filter(|c| c.ip == ip).count()
    }

    /// The connection a newcomer displaces (of `ip`, or of all).
    fn first_to_go(&self, ip: Option<IpAddr>) -> Option<ConnId> {
        self.conns
            .iter()
            .filter(|(_, c)| ip.is_none_or(|ip| c.ip == ip))
            .filter_map(|(id, c)| c.displaceable().map(|rank| (rank, *id)))
            .min()
            .map(|(_, id)| id)
    }

    /// The connection a newcomer displaces when the table is full: of the
    /// heaviest address, by the slots it holds and the connections it
    /// opened lately (a crowd from a few addresses, or a crowd that keeps
    /// reconnecting, gives way before a lone newcomer still in its
    /// handshake), then as [`Connections::first_to_go`] orders them.
    fn heaviest_first_to_go(&self, now: Instant) -> Option<ConnId> {
        let mut weight: HashMap<IpAddr, usize> = HashMap::new();
        for c in self.conns.values() {
            *weight
                .entry(c.ip)
                .or_insert_with(|| self.churn.recent(c.ip, now)) += 1;
        }
        self.conns
            .iter()
            .filter_map(|(id, c)| {
                let (rank, since) = c.displaceable()?;
                Some((std::cmp::Reverse(weight[&c.ip]), rank, since, *id))
            })
            .min()
            .map(|(.., id)| id)
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

    fn limits(total: usize, per_address: usize) -> Limits {
        Limits {
            total,
            per_address,
            leases: total * 3 / 4,
            leases_per_address: per_address / 2,
        }
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
        let mut c = Connections::new(limits(3, 3));
        let a = id_of(&c.admit(ip(1), t0, "a"));
        let b = id_of(&c.admit(ip(2), t0 + Duration::from_secs(1), "b"));
        let _ = id_of(&c.admit(ip(3), t0 + Duration::from_secs(2), "c"));
        // a is busy: b, idle longest among the rest, goes.
        c.request_started(a, false, t0);
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
    fn a_connection_through_tls_outlasts_every_handshake() {
        let t0 = Instant::now();
        let mut c = Connections::new(limits(2, 2));
        let owner = id_of(&c.admit(ip(1), t0, "owner"));
        let _ = id_of(&c.admit(ip(2), t0 + Duration::from_secs(1), "slow"));
        c.secured(owner, t0 + Duration::from_secs(2));
        let d = c.admit(ip(3), t0 + Duration::from_secs(3), "new");
        assert!(
            matches!(&d, Admission::In { evicted, .. } if evicted == &["slow"]),
            "{d:?}"
        );
        // Newer handshakes go before it too.
        let e = c.admit(ip(4), t0 + Duration::from_secs(4), "newer");
        assert!(
            matches!(&e, Admission::In { evicted, .. } if evicted == &["new"]),
            "{e:?}"
        );
    }

    #[test]
    fn only_when_every_slot_is_busy_is_a_newcomer_refused() {
        let t0 = Instant::now();
        let mut c = Connections::new(limits(2, 2));
        let a = id_of(&c.admit(ip(1), t0, "a"));
        let b = id_of(&c.admit(ip(2), t0, "b"));
        c.request_started(a, false, t0);
        c.request_started(b, false, t0);
        assert_eq!(c.admit(ip(3), t0, "c"), Admission::Refused(Refusal::Full));
        c.request_ended(b, t0 + Duration::from_secs(1));
        assert!(
            matches!(c.admit(ip(3), t0, "c"), Admission::In { evicted, .. } if evicted == ["b"])
        );
    }

    #[test]
    fn an_address_holds_its_share_and_displaces_only_its_own() {
        let t0 = Instant::now();
        let mut c = Connections::new(limits(10, 2));
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
                c.request_started(id, false, t0);
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
        let mut c = Connections::new(limits(128, 16));
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

    #[test]
    fn a_trickled_body_is_displaced_before_an_answered_request() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut c = Connections::new(limits(3, 3));
        // Three addresses each trickle a body; one request is being answered.
        let slow = id_of(&c.admit(ip(1), t0, "slow"));
        let slower = id_of(&c.admit(ip(2), t0, "slower"));
        let answered = id_of(&c.admit(ip(3), t0, "answered"));
        c.request_started(slower, true, t0);
        c.request_started(slow, true, t0 + s);
        c.request_started(answered, true, t0);
        c.body_done(answered);
        let d = c.admit(ip(4), t0 + 2 * s, "newcomer");
        assert!(
            matches!(&d, Admission::In { evicted, .. } if evicted == &["slower"]),
            "the body arriving longest goes: {d:?}"
        );
        let e = c.admit(ip(5), t0 + 2 * s, "another");
        assert!(
            matches!(&e, Admission::In { evicted, .. } if evicted == &["newcomer"]),
            "an idle one goes before a receiving one: {e:?}"
        );
        assert!(c.conns.contains_key(&answered) && c.conns.contains_key(&slow));
    }

    #[test]
    fn a_crowd_gives_way_before_a_lone_newcomer() {
        let t0 = Instant::now();
        let ms = Duration::from_millis(1);
        let mut c = Connections::new(limits(8, 8));
        for i in 0..6u32 {
            let id = id_of(&c.admit(ip(1), t0 + i * ms, "crowd"));
            c.request_started(id, true, t0 + i * ms);
        }
        let _ = id_of(&c.admit(ip(2), t0 + 10 * ms, "crowd of two"));
        let _ = id_of(&c.admit(ip(2), t0 + 10 * ms, "crowd of two"));
        // A newcomer in its handshake, then the crowd keeps coming.
        let lone = id_of(&c.admit(ip(3), t0 + 20 * ms, "lone"));
        for i in 0..20u32 {
            let from = ip(1 + (i % 2) as u8);
            let _ = c.admit(from, t0 + (30 + i) * ms, "crowd");
        }
        assert!(
            c.conns.contains_key(&lone),
            "the lone newcomer keeps its slot"
        );
        assert_eq!(c.len(), 8);
    }

    #[test]
    fn a_crowd_that_keeps_reconnecting_gives_way_before_an_older_handshake() {
        let t0 = Instant::now();
        let ms = Duration::from_millis(1);
        let mut c = Connections::new(limits(8, 8));
        // Eight addresses, each reconnecting as soon as it is displaced.
        let mut t = t0;
        let crowd = |c: &mut Connections<&'static str>, t: &mut Instant, n: u32| {
            for i in 0..n {
                *t += 10 * ms;
                let _ = id_of(&c.admit(ip(10 + (i % 8) as u8), *t, "crowd"));
            }
        };
        crowd(&mut c, &mut t, 80);
        // The owner's browser, then the crowd goes on while its handshake
        // is under way: it is the oldest handshake, and it stays.
        let owner = id_of(&c.admit(ip(1), t, "owner"));
        crowd(&mut c, &mut t, 80);
        assert!(c.conns.contains_key(&owner), "the owner's handshake stays");
        assert_eq!(c.len(), 8);
    }

    #[test]
    fn websockets_leave_room_for_pages() {
        let t0 = Instant::now();
        let mut c = Connections::new(limits(8, 8));
        let mut leased = 0;
        for i in 0..8u8 {
            let id = id_of(&c.admit(ip(10 + i), t0, "ws"));
            if c.lease(id).is_ok() {
                leased += 1;
            } else {
                assert_eq!(c.lease(id), Err(LeaseRefusal::Full));
            }
        }
        assert_eq!(leased, 6, "three quarters of the table");
        // The two refused sockets' connections are idle again: a page gets in.
        assert!(matches!(c.admit(ip(1), t0, "page"), Admission::In { .. }));
        assert!(matches!(c.admit(ip(2), t0, "page"), Admission::In { .. }));
    }

    #[test]
    fn an_address_holds_its_share_of_websockets() {
        let t0 = Instant::now();
        let mut c = Connections::new(limits(16, 8));
        let ids: Vec<_> = (0..5).map(|_| id_of(&c.admit(ip(1), t0, "ws"))).collect();
        let refused = ids.iter().filter(|id| c.lease(**id).is_err()).count();
        assert_eq!(refused, 1, "four per address");
        let other = id_of(&c.admit(ip(2), t0, "ws"));
        assert_eq!(c.lease(other), Ok(()));
        c.unlease(ids[0], t0);
        assert_eq!(c.lease(ids[4]), Ok(()), "a socket that ended makes room");
    }
}
