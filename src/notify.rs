//! systemd's notify protocol, spoken directly (a datagram to
//! `$NOTIFY_SOCKET`): READY once we serve, WATCHDOG from the media loop,
//! STOPPING on shutdown. Outside systemd every call is a no-op.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

pub struct Notifier {
    socket: Option<(UnixDatagram, std::os::unix::net::SocketAddr)>,
    /// Half the watchdog interval systemd asked for, if any.
    watchdog_every: Option<Duration>,
    last_ping: Option<Instant>,
}

impl Notifier {
    pub fn from_env() -> Notifier {
        let socket = std::env::var("NOTIFY_SOCKET").ok().and_then(|path| {
            let addr = if let Some(name) = path.strip_prefix('@') {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).ok()?
            } else {
                std::os::unix::net::SocketAddr::from_pathname(&path).ok()?
            };
            Some((UnixDatagram::unbound().ok()?, addr))
        });
        let watchdog_every = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|_| {
                // WATCHDOG_PID, when set, must be us.
                std::env::var("WATCHDOG_PID")
                    .ok()
                    .and_then(|p| p.parse::<u32>().ok())
                    .is_none_or(|p| p == std::process::id())
            })
            .map(|usec| Duration::from_micros(usec / 2));
        Notifier {
            socket,
            watchdog_every,
            last_ping: None,
        }
    }

    pub fn is_active(&self) -> bool {
        self.socket.is_some()
    }

    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog_every
    }

    fn send(&self, state: &str) {
        if let Some((sock, addr)) = &self.socket
            && let Err(e) = sock.send_to_addr(state.as_bytes(), addr)
        {
            tracing::debug!("sd_notify {state}: {e}");
        }
    }

    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}"));
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    /// Called on every turn of the media loop; pings at most twice per
    /// watchdog interval.
    pub fn watchdog(&mut self, now: Instant) {
        let Some(every) = self.watchdog_every else {
            return;
        };
        if self
            .last_ping
            .is_none_or(|t| now.saturating_duration_since(t) >= every)
        {
            self.last_ping = Some(now);
            self.send("WATCHDOG=1");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speaks_to_the_socket_systemd_names() {
        let dir = std::env::temp_dir().join(format!("rtcam-notify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        listener
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let addr = std::os::unix::net::SocketAddr::from_pathname(&path).unwrap();
        let mut n = Notifier {
            socket: Some((UnixDatagram::unbound().unwrap(), addr)),
            watchdog_every: Some(Duration::from_secs(5)),
            last_ping: None,
        };
        let mut buf = [0u8; 256];
        n.ready("serving");
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=serving");
        let t0 = Instant::now();
        n.watchdog(t0);
        n.watchdog(t0 + Duration::from_secs(1));
        n.watchdog(t0 + Duration::from_secs(6));
        for _ in 0..2 {
            let len = listener.recv(&mut buf).unwrap();
            assert_eq!(&buf[..len], b"WATCHDOG=1");
        }
        listener.set_nonblocking(true).unwrap();
        assert!(
            listener.recv(&mut buf).is_err(),
            "only two pings in 6 s at a 5 s interval"
        );
        n.stopping();
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn without_systemd_nothing_happens() {
        let mut n = Notifier {
            socket: None,
            watchdog_every: None,
            last_ping: None,
        };
        n.ready("x");
        n.watchdog(Instant::now());
        assert!(!n.is_active());
    }
}
