//! The IO shell of LAN discovery: announces this rtcam by mDNS/DNS-SD
//! (`_rtcam._tcp`, and `_https._tcp` so ordinary service browsers list
//! it) on LAN addresses only, browses for the others and keeps
//! [`PeersBoard`] current. The decisions are `peers.rs`'s.
//!
//! `mdns-sd` does the protocol: a maintained pure-Rust responder and
//! browser with no C and no system daemon to talk to (Avahi is not on
//! every image, and its D-Bus API would add a dependency tree of its own).
//! It runs one thread of its own; ours feeds its events to [`Peers`] and
//! makes the reachability checks.

use std::collections::HashMap;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mdns_sd::{IfKind, IfPredicate, ServiceDaemon, ServiceEvent, ServiceInfo};

use super::host::announceable;
use super::peers::{Announcement, PeerView, Peers};

pub const RTCAM_SERVICE: &str = "_rtcam._tcp.local.";
pub const HTTPS_SERVICE: &str = "_https._tcp.local.";

/// What this rtcam tells the LAN about itself.
#[derive(Debug, Clone)]
pub struct Announce {
    pub hostname: String,
    /// A short stable suffix that tells apart devices with the same host
    /// name (every fresh Pi is `raspberrypi`).
    pub id: String,
    pub port: u16,
    pub board: String,
    pub camera: String,
    pub codecs: Vec<String>,
}

impl Announce {
    pub fn instance(&self) -> String {
        format!("{} ({})", self.hostname, self.id)
    }

    fn txt(&self) -> HashMap<String, String> {
        [
            ("path", "/".to_string()),
            ("version", env!("CARGO_PKG_VERSION").to_string()),
            ("board", self.board.clone()),
            ("camera", self.camera.chars().take(64).collect()),
            ("codecs", self.codecs.join(",")),
            ("id", self.id.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

/// The peers found, for `/api/peers` and the page.
#[derive(Clone, Default)]
pub struct PeersBoard(Arc<Mutex<Vec<PeerView>>>);

impl PeersBoard {
    pub fn snapshot(&self) -> Vec<PeerView> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }

    fn set(&self, list: Vec<PeerView>) {
        if let Ok(mut v) = self.0.lock() {
            *v = list;
        }
    }
}

/// Announcing and browsing, until [`Lan::stop`].
pub struct Lan {
    daemon: ServiceDaemon,
    registered: Vec<String>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Lan {
    pub fn start(a: &Announce, board: PeersBoard) -> Result<Lan, mdns_sd::Error> {
        let daemon = ServiceDaemon::new()?;
        // LAN addresses only: never announce a public address.
        daemon.disable_interface(IfKind::All)?;
        daemon.enable_interface(IfKind::Predicate(IfPredicate::new(|i| {
            announceable(i.ip())
        })))?;
        let host = format!("{}.local.", a.hostname);
        let mut registered = Vec::new();
        for service in [RTCAM_SERVICE, HTTPS_SERVICE] {
            let info = ServiceInfo::new(service, &a.instance(), &host, "", a.port, a.txt())?
                .enable_addr_auto();
            registered.push(info.get_fullname().to_string());
            daemon.register(info)?;
        }
        let events = daemon.browse(RTCAM_SERVICE)?;
        let stop = Arc::new(AtomicBool::new(false));
        let own = registered[0].clone();
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("mdns-peers".into())
            .spawn(move || browse(events, Peers::new(&own), board, stopping))
            .map_err(|e| mdns_sd::Error::Msg(e.to_string()))?;
        Ok(Lan {
            daemon,
            registered,
            stop,
            thread: Some(thread),
        })
    }

    /// Says goodbye (the others drop us at once) and stops.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for name in &self.registered {
            if let Ok(done) = self.daemon.unregister(name) {
                let _ = done.recv_timeout(Duration::from_millis(500));
            }
        }
        if let Ok(done) = self.daemon.shutdown() {
            let _ = done.recv_timeout(Duration::from_millis(500));
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn browse(
    events: mdns_sd::Receiver<ServiceEvent>,
    mut peers: Peers,
    board: PeersBoard,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let wait = peers
            .poll_timeout()
            .map_or(Duration::from_secs(1), |at| {
                at.saturating_duration_since(now)
            })
            .clamp(Duration::from_millis(10), Duration::from_secs(1));
        match events.recv_timeout(wait) {
            Ok(ServiceEvent::ServiceResolved(info)) => {
                let ann = Announcement {
                    fullname: info.get_fullname().to_string(),
                    host: info.get_hostname().to_string(),
                    addrs: info
                        .get_addresses()
                        .iter()
                        .map(|a| a.to_ip_addr())
                        .collect(),
                    port: info.get_port(),
                    txt: info
                        .txt_properties
                        .iter()
                        .map(|p| (p.key().to_string(), p.val_str().to_string()))
                        .collect(),
                };
                peers.resolved(Instant::now(), ann);
            }
            Ok(ServiceEvent::ServiceRemoved(_, fullname)) => peers.removed(&fullname),
            Ok(_) => {}
            Err(mdns_sd::RecvTimeoutError::Timeout) => {}
            Err(_) => break, // the daemon is gone
        }
        while let Some((name, addr)) = peers.poll_check(Instant::now()) {
            let reachable = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok();
            peers.checked(Instant::now(), &name, reachable);
        }
        board.set(peers.list());
    }
}

/// A short stable id for this machine: from `/etc/machine-id`, hashed (the
/// id itself is meant to stay private), else random for this run.
pub fn machine_tag() -> String {
    let seed = std::fs::read_to_string("/etc/machine-id")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    match seed {
        Some(s) => {
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes());
            digest.as_ref()[..2]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        }
        None => format!("{:04x}", rand::random::<u16>()),
    }
}
