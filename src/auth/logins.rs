//! Login sessions behind the page's cookie: random ids, stored as digests,
//! expiring. In memory: a restart logs everybody out, which is fine for a
//! camera.

use std::collections::HashMap;
use std::time::{Duration, Instant};

pub const COOKIE: &str = "rtcam_session";
pub const TTL: Duration = Duration::from_secs(12 * 3600);
const MAX_SESSIONS: usize = 256;
/// A browser that logged in is remembered this long (its device cookie):
/// its next logins are checked before strangers' (see `auth::queue`).
pub const DEVICE_COOKIE: &str = "rtcam_device";
pub const DEVICE_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
const MAX_DEVICES: usize = 256;

/// Random secrets handed out, kept as digests until they expire; at most
/// `max`, the one expiring first making room.
#[derive(Debug)]
struct Secrets {
    /// digest of the secret -> expiry
    expiry: HashMap<String, Instant>,
    ttl: Duration,
    max: usize,
}

impl Secrets {
    fn new(ttl: Duration, max: usize) -> Self {
        Secrets {
            expiry: HashMap::new(),
            ttl,
            max,
        }
    }

    /// A new secret, valid for `ttl` from `now`.
    fn issue(&mut self, now: Instant) -> String {
        self.expiry.retain(|_, exp| *exp > now);
        if self.expiry.len() >= self.max
            && let Some(oldest) = self
                .expiry
                .iter()
                .min_by_key(|(_, exp)| **exp)
                .map(|(k, _)| k.clone())
        {
            self.expiry.remove(&oldest);
        }
        let id = super::random_hex(32);
        self.expiry.insert(super::sha256_hex(&id), now + self.ttl);
        id
    }

    fn holds(&self, id: &str, now: Instant) -> bool {
        self.expiry
            .get(&super::sha256_hex(id))
            .is_some_and(|exp| *exp > now)
    }

    fn remove(&mut self, id: &str) {
        self.expiry.remove(&super::sha256_hex(id));
    }

    fn len(&self) -> usize {
        self.expiry.len()
    }
}

#[derive(Debug)]
pub struct Logins {
    sessions: Secrets,
    /// Browsers that logged in (device cookies).
    devices: Secrets,
}

impl Default for Logins {
    fn default() -> Self {
        Logins {
            sessions: Secrets::new(TTL, MAX_SESSIONS),
            devices: Secrets::new(DEVICE_TTL, MAX_DEVICES),
        }
    }
}

impl Logins {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a session; returns the id for the cookie.
    pub fn create(&mut self, now: Instant) -> String {
        self.sessions.issue(now)
    }

    /// Remembers a browser that logged in; returns its device cookie's id.
    pub fn remember_device(&mut self, now: Instant) -> String {
        self.devices.issue(now)
    }

    /// Whether a device cookie is one this server gave out.
    pub fn knows_device(&self, id: &str, now: Instant) -> bool {
        self.devices.holds(id, now)
    }

    pub fn check(&self, id: &str, now: Instant) -> bool {
        self.sessions.holds(id, now)
    }

    pub fn remove(&mut self, id: &str) {
        self.sessions.remove(id);
    }

    /// Ends every session (the password changed); returns how many.
    pub fn clear(&mut self) -> usize {
        let n = self.sessions.len();
        self.sessions.expiry.clear();
        n
    }
}

/// The session id in a `Cookie` header, if any.
pub fn from_cookie_header(header: &str) -> Option<&str> {
    cookie(header, COOKIE)
}

/// The value of cookie `name` in a `Cookie` header, if any.
pub fn cookie<'h>(header: &'h str, name: &str) -> Option<&'h str> {
    header
        .split(';')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// The `Set-Cookie` value for a new session.
pub fn set_cookie(id: &str) -> String {
    format!(
        "{COOKIE}={id}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={}",
        TTL.as_secs()
    )
}

/// The `Set-Cookie` value for a remembered browser: sent to `/login` only.
pub fn set_device_cookie(id: &str) -> String {
    format!(
        "{DEVICE_COOKIE}={id}; Path=/login; HttpOnly; Secure; SameSite=Strict; Max-Age={}",
        DEVICE_TTL.as_secs()
    )
}

/// The `Set-Cookie` value that ends a session in the browser.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_and_can_be_ended() {
        let mut l = Logins::new();
        let t0 = Instant::now();
        let id = l.create(t0);
        assert!(l.check(&id, t0 + Duration::from_secs(60)));
        assert!(!l.check(&id, t0 + TTL), "expired");
        assert!(!l.check("forged", t0));
        l.remove(&id);
        assert!(!l.check(&id, t0));
    }

    #[test]
    fn the_table_is_bounded() {
        let mut l = Logins::new();
        let t0 = Instant::now();
        for i in 0..(MAX_SESSIONS as u32 + 10) {
            l.create(t0 + Duration::from_millis(i as u64));
        }
        assert!(l.sessions.len() <= MAX_SESSIONS);
    }

    #[test]
    fn a_remembered_browser_is_known_until_it_expires() {
        let mut l = Logins::new();
        let t0 = Instant::now();
        let id = l.remember_device(t0);
        assert!(l.knows_device(&id, t0 + TTL));
        assert!(!l.knows_device(&id, t0 + DEVICE_TTL));
        assert!(!l.knows_device("forged", t0));
        assert!(!l.check(&id, t0), "a device cookie is not a session");
        for i in 0..(MAX_DEVICES as u64 + 10) {
            l.remember_device(t0 + Duration::from_millis(i));
        }
        assert!(l.devices.len() <= MAX_DEVICES);
        let header = format!("rtcam_session=s; rtcam_device={id}");
        assert_eq!(cookie(&header, DEVICE_COOKIE), Some(id.as_str()));
        assert!(set_device_cookie(&id).contains("Path=/login"));
    }

    #[test]
    fn cookie_parsing() {
        assert_eq!(
            from_cookie_header("a=1; rtcam_session=abc; b=2"),
            Some("abc")
        );
        assert_eq!(from_cookie_header("rtcam_session="), None);
        assert_eq!(from_cookie_header("other=abc"), None);
        let c = set_cookie("abc");
        for attr in [
            "HttpOnly",
            "Secure",
            "SameSite=Strict",
            "Max-Age=43200",
            "Path=/",
        ] {
            assert!(c.contains(attr), "{c}");
        }
    }
}
