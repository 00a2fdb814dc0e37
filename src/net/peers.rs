//! The other rtcams on the LAN, sans-IO: what mDNS browsing found and what
//! reachability checks say go in, with the time; the list for
//! `/api/peers` and the next check to make come out.
//!
//! mDNS tells us when a peer says goodbye (a clean stop), but a peer that
//! loses power says nothing, and its records live on in caches for two
//! minutes. So each peer's HTTPS port is tried every [`CHECK_EVERY`]: one
//! that cannot be reached is shown as not live at once and forgotten after
//! [`FORGET_AFTER`], well within a minute of its end.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

pub const CHECK_EVERY: Duration = Duration::from_secs(10);
pub const FORGET_AFTER: Duration = Duration::from_secs(30);
/// The most peers kept: a LAN with more rtcams than this is not a home.
pub const MAX_PEERS: usize = 64;

/// What a peer's announcement said (`_rtcam._tcp` SRV, TXT and addresses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    /// The mDNS instance's full name: the key.
    pub fullname: String,
    /// Its host name, e.g. `frontdoor.local.`.
    pub host: String,
    pub addrs: Vec<IpAddr>,
    pub port: u16,
    pub txt: HashMap<String, String>,
}

/// A peer as `/api/peers` and the page show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PeerView {
    /// Its instance name (e.g. `frontdoor (3fa2)`).
    pub name: String,
    /// `frontdoor.local`.
    pub host: String,
    pub addresses: Vec<IpAddr>,
    pub port: u16,
    /// Where its page is: by its `.local` name.
    pub url: String,
    pub camera: String,
    pub board: String,
    pub version: String,
    pub codecs: String,
    /// Its port answered the last check.
    pub live: bool,
}

struct Entry {
    ann: Announcement,
    live: bool,
    /// When it last answered (or was announced, before any check).
    last_ok: Instant,
    next_check: Instant,
    checking: bool,
}

pub struct Peers {
    /// Our own instance, which browsing finds too.
    own: String,
    table: BTreeMap<String, Entry>,
}

impl Peers {
    pub fn new(own_fullname: &str) -> Peers {
        Peers {
            own: own_fullname.to_string(),
            table: BTreeMap::new(),
        }
    }

    /// An announcement was resolved (new, or records changed).
    pub fn resolved(&mut self, now: Instant, ann: Announcement) {
        if ann.fullname == self.own || ann.addrs.is_empty() {
            return;
        }
        if let Some(e) = self.table.get_mut(&ann.fullname) {
            // New addresses (an IPv4 one often follows the first, link-local
            // IPv6, answer): try them at once rather than at the next round.
            if e.ann.addrs != ann.addrs && !e.checking {
                e.next_check = now;
            }
            e.ann = ann;
            return;
        }
        if self.table.len() >= MAX_PEERS {
            return;
        }
        let entry = Entry {
            ann: ann.clone(),
            live: true,
            last_ok: now,
            next_check: now,
            checking: false,
        };
        self.table.insert(ann.fullname, entry);
    }

    /// The peer said goodbye (a clean stop).
    pub fn removed(&mut self, fullname: &str) {
        self.table.remove(fullname);
    }

    /// The next reachability check due: a peer and the address to try.
    pub fn poll_check(&mut self, now: Instant) -> Option<(String, SocketAddr)> {
        let (name, e) = self
            .table
            .iter_mut()
            .find(|(_, e)| !e.checking && e.next_check <= now)?;
        e.checking = true;
        // An IPv4 address first: a link-local IPv6 one needs its scope.
        let ip = e
            .ann
            .addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or(e.ann.addrs.first())?;
        Some((name.clone(), SocketAddr::new(*ip, e.ann.port)))
    }

    /// A check's outcome.
    pub fn checked(&mut self, now: Instant, fullname: &str, reachable: bool) {
        let Some(e) = self.table.get_mut(fullname) else {
            return;
        };
        e.checking = false;
        e.live = reachable;
        e.next_check = now + CHECK_EVERY;
        if reachable {
            e.last_ok = now;
        } else if now.saturating_duration_since(e.last_ok) >= FORGET_AFTER {
            self.table.remove(fullname);
        }
    }

    /// When the next check is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.table
            .values()
            .filter(|e| !e.checking)
            .map(|e| e.next_check)
            .min()
    }

    pub fn list(&self) -> Vec<PeerView> {
        self.table.values().map(view).collect()
    }
}

fn view(e: &Entry) -> PeerView {
    let txt = |k: &str| e.ann.txt.get(k).cloned().unwrap_or_default();
    let host = e.ann.host.trim_end_matches('.').to_string();
    let name = e
        .ann
        .fullname
        .split("._rtcam.")
        .next()
        .unwrap_or(&e.ann.fullname)
        .replace("\\ ", " ");
    let path = Some(txt("path"))
        .filter(|p| p.starts_with('/'))
        .unwrap_or_else(|| "/".into());
    PeerView {
        url: format!("https://{host}:{}{path}", e.ann.port),
        name,
        host,
        addresses: e.ann.addrs.clone(),
        port: e.ann.port,
        camera: txt("camera"),
        board: txt("board"),
        version: txt("version"),
        codecs: txt("codecs"),
        live: e.live,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: &str = "porch (aaaa)._rtcam._tcp.local.";

    fn ann(name: &str, ip: &str) -> Announcement {
        Announcement {
            fullname: format!("{name}._rtcam._tcp.local."),
            host: format!("{name}.local."),
            addrs: vec![ip.parse().unwrap()],
            port: 8443,
            txt: [("camera", "HD Webcam"), ("board", "pi-4"), ("path", "/")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn peers_are_listed_but_not_ourselves() {
        let now = Instant::now();
        let mut p = Peers::new(OWN);
        p.resolved(now, ann("porch (aaaa)", "169.254.0.1"));
        p.resolved(now, ann("garage", "169.254.0.2"));
        let list = p.list();
        assert_eq!(list.len(), 1);
        let g = &list[0];
        assert_eq!(
            (g.name.as_str(), g.host.as_str()),
            ("garage", "garage.local")
        );
        assert_eq!(g.url, "https://garage.local:8443/");
        assert_eq!((g.camera.as_str(), g.board.as_str()), ("HD Webcam", "pi-4"));
        assert!(g.live);
    }

    #[test]
    fn a_goodbye_removes_a_peer_at_once() {
        let now = Instant::now();
        let mut p = Peers::new(OWN);
        p.resolved(now, ann("garage", "169.254.0.2"));
        p.removed("garage._rtcam._tcp.local.");
        assert!(p.list().is_empty());
    }

    #[test]
    fn a_silent_peer_is_not_live_at_once_and_forgotten_within_a_minute() {
        let t0 = Instant::now();
        let mut p = Peers::new(OWN);
        p.resolved(t0, ann("garage", "169.254.0.2"));
        let (name, addr) = p.poll_check(t0).expect("checked at once");
        assert_eq!(addr, "169.254.0.2:8443".parse().unwrap());
        assert_eq!(p.poll_check(t0), None, "one check at a time per peer");
        p.checked(t0, &name, true);
        assert_eq!(p.poll_timeout(), Some(t0 + CHECK_EVERY));
        // It loses power.
        let mut now = t0;
        let mut gone_at = None;
        for _ in 0..10 {
            now = p.poll_timeout().unwrap();
            let (name, _) = p.poll_check(now).unwrap();
            p.checked(now, &name, false);
            assert!(p.list().iter().all(|v| !v.live));
            if p.list().is_empty() {
                gone_at = Some(now);
                break;
            }
        }
        let gone = gone_at.expect("forgotten").duration_since(t0 + CHECK_EVERY);
        assert!(gone <= Duration::from_secs(60), "{gone:?} after it stopped");
        // Announced again (it came back): listed again.
        p.resolved(now, ann("garage", "169.254.0.2"));
        assert_eq!(p.list().len(), 1);
    }

    #[test]
    fn new_addresses_are_checked_at_once() {
        let t0 = Instant::now();
        let mut p = Peers::new(OWN);
        p.resolved(t0, ann("garage", "fe80::1"));
        let (name, addr) = p.poll_check(t0).unwrap();
        assert_eq!(addr.ip(), "fe80::1".parse::<IpAddr>().unwrap());
        p.checked(t0, &name, false);
        assert!(!p.list()[0].live);
        // Its IPv4 address arrives a moment later: tried then, not in 10 s.
        let t1 = t0 + Duration::from_millis(200);
        let mut both = ann("garage", "169.254.0.2");
        both.addrs.insert(0, "fe80::1".parse().unwrap());
        p.resolved(t1, both);
        let (_, addr) = p.poll_check(t1).expect("checked again at once");
        assert_eq!(addr, "169.254.0.2:8443".parse().unwrap());
    }

    #[test]
    fn the_table_is_bounded() {
        let now = Instant::now();
        let mut p = Peers::new(OWN);
        for i in 0..(MAX_PEERS + 10) {
            p.resolved(now, ann(&format!("cam{i}"), "10.0.0.9"));
        }
        assert_eq!(p.list().len(), MAX_PEERS);
    }
}
