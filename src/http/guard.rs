//! Who gets through, and the headers every answer carries.
//!
//! Every route is in one class: public (the login page and what it needs),
//! page (session cookie), `/ws` (session cookie and a same-origin `Origin`),
//! WHEP (bearer token, as the WHEP draft describes), API (either). There is
//! no switch that turns this off, except `--trust-loopback` for clients on
//! the loopback interface, and that is off by default.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use super::AppState;
use crate::auth::{CheckQueue, LoginBackoff, Logins, TokenStore, logins};

/// The peer's address, put into each request's extensions by the server.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

pub struct AuthState {
    pub state_dir: std::path::PathBuf,
    pub logins: Mutex<Logins>,
    pub backoff: Mutex<LoginBackoff>,
    pub tokens: Mutex<TokenStore>,
    /// Password checks (each Argon2 hash takes 7 MiB and a core for a
    /// moment): a crowd of logins waits here, best standing first, not in
    /// memory.
    pub checks: Mutex<CheckQueue<super::login::Waiting>>,
    pub trust_loopback: bool,
}

/// At most this many password checks at once.
pub const PASSWORD_CHECKS: usize = 2;
/// At most this many logins wait for one (a few tenths of a second of
/// checks on a Pi).
const CHECKS_WAITING: usize = 16;
/// How often the password file is looked at for a change.
const PASSWORD_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

impl AuthState {
    pub fn new(state_dir: &std::path::Path, trust_loopback: bool) -> Arc<Self> {
        Arc::new(AuthState {
            state_dir: state_dir.to_path_buf(),
            logins: Mutex::new(Logins::new()),
            backoff: Mutex::new(LoginBackoff::new()),
            tokens: Mutex::new(TokenStore::open(state_dir)),
            checks: Mutex::new(CheckQueue::new(PASSWORD_CHECKS, CHECKS_WAITING)),
            trust_loopback,
        })
    }

    /// Ends every login session when the password file changes (`rtcam
    /// passwd`, run beside the service): whoever knew the old password is
    /// out, and their open signaling sockets close within a second.
    pub async fn end_logins_when_the_password_changes(self: Arc<Self>) {
        let path = crate::auth::PasswordFile::path(&self.state_dir);
        let stamp = || std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        let mut seen = stamp();
        loop {
            tokio::time::sleep(PASSWORD_CHECK).await;
            let now = stamp();
            if now != seen {
                seen = now;
                let ended = lock(&self.logins).clear();
                tracing::warn!("the password changed: {ended} login session(s) ended");
            }
        }
    }

    pub fn session_ok(&self, headers: &HeaderMap) -> bool {
        let Some(id) = session_cookie(headers) else {
            return false;
        };
        lock(&self.logins).check(id, Instant::now())
    }

    pub fn bearer_ok(&self, headers: &HeaderMap) -> bool {
        self.bearer_name(headers).is_some()
    }

    /// The name of the valid token a request carries.
    pub fn bearer_name(&self, headers: &HeaderMap) -> Option<String> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)?;
        lock(&self.tokens).check(token)
    }

    /// Whether the token `name`'s players may change the camera's settings.
    pub fn token_may_control(&self, name: &str) -> bool {
        lock(&self.tokens).may_control(name)
    }

    /// Whether a token of this name is still valid (not revoked).
    pub fn token_named(&self, name: &str) -> bool {
        lock(&self.tokens)
            .names()
            .is_ok_and(|names| names.iter().any(|n| n == name))
    }
}

/// The session id in a request's `Cookie` headers, if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    cookie(headers, logins::COOKIE)
}

/// The device cookie's id in a request, if any (sent to `/login` only).
pub fn device_cookie(headers: &HeaderMap) -> Option<&str> {
    cookie(headers, logins::DEVICE_COOKIE)
}

fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|h| logins::cookie(h, name))
}

/// The token in an `Authorization: Bearer <token>` value.
pub fn bearer_token(value: &str) -> Option<&str> {
    // The scheme is case-insensitive (RFC 7235 section 2.1).
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && token.len() <= 256)
        .then_some(token)
}

/// A poisoned lock only means another request panicked mid-update of a
/// plain table; the data is still usable.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Public,
    Page,
    WebSocket,
    Whep,
    Api,
}

pub fn classify(method: &Method, path: &str) -> Class {
    match path {
        "/login" if method == Method::GET || method == Method::POST => Class::Public,
        "/login.js" | "/style.css" | "/favicon.ico" => Class::Public,
        "/ws" => Class::WebSocket,
        "/metrics" => Class::Api,
        "/whep" => Class::Whep,
        p if p.starts_with("/whep/") => Class::Whep,
        p if p.starts_with("/api/") => Class::Api,
        _ => Class::Page,
    }
}

/// The decision itself: which credential each class of route needs, and
/// the one exemption (loopback peers, only when the owner turned it on).
pub fn admits(
    class: Class,
    trust_loopback: bool,
    peer: Option<SocketAddr>,
    session: impl Fn() -> bool,
    bearer: impl Fn() -> bool,
) -> bool {
    if trust_loopback && peer.is_some_and(|p| p.ip().is_loopback()) {
        return true;
    }
    match class {
        Class::Public => true,
        Class::Page | Class::WebSocket => session(),
        Class::Whep => bearer(),
        Class::Api => session() || bearer(),
    }
}

/// Same-origin check for the WebSocket: `Origin` must be `https://<Host>`.
pub fn origin_ok(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    match (host, origin) {
        (Some(host), Some(origin)) => origin
            .strip_prefix("https://")
            .is_some_and(|o| o.eq_ignore_ascii_case(host)),
        _ => false,
    }
}

pub async fn require_auth(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let auth = &state.auth;
    let class = classify(req.method(), req.uri().path());
    let peer = req.extensions().get::<Peer>().map(|p| p.0);
    let headers = req.headers();
    let allowed = admits(
        class,
        auth.trust_loopback,
        peer,
        || auth.session_ok(headers),
        || auth.bearer_ok(headers),
    );
    if class == Class::WebSocket && !origin_ok(headers) {
        crate::warn_limited!(
            ?peer,
            "refused a WebSocket from a foreign or missing Origin"
        );
        return (StatusCode::FORBIDDEN, "cross-origin WebSocket refused\n").into_response();
    }
    if allowed {
        return next.run(req).await;
    }
    let path = req.uri().path();
    if class == Class::Page && req.method() == Method::GET && (path == "/" || path == "/index.html")
    {
        return Redirect::to("/login").into_response();
    }
    tracing::debug!(?peer, path, "refused: not authenticated");
    let mut r = (StatusCode::UNAUTHORIZED, "authentication required\n").into_response();
    if class == Class::Whep || class == Class::Api {
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    r
}

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self' wss:; media-src 'self' blob:; object-src 'none'; \
                   base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Headers for every answer, refusals included; and a log line for every
/// limit that was hit, so an owner can see who is knocking.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<Peer>().map(|p| p.0);
    let path = req.uri().path().to_owned();
    let conn = req.extensions().get::<Arc<super::Conn>>().cloned();
    let mut r = next.run(req).await;
    // Whatever the handler made of a body that came too slowly: 408.
    if conn.is_some_and(|c| c.body_was_too_slow()) {
        r = super::body::too_slow();
    }
    let status = r.status();
    // One throttle per kind: a flood of one does not hide the others.
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            crate::warn_limited!(?peer, path, "limit: answered {status}")
        }
        StatusCode::REQUEST_TIMEOUT => {
            crate::warn_limited!(?peer, path, "limit: answered {status}")
        }
        StatusCode::TOO_MANY_REQUESTS => {
            crate::warn_limited!(?peer, path, "limit: answered {status}")
        }
        StatusCode::SERVICE_UNAVAILABLE => {
            crate::warn_limited!(?peer, path, "limit: answered {status}")
        }
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => {
            crate::warn_limited!(?peer, path, "limit: answered {status}")
        }
        _ => {}
    }
    let h = r.headers_mut();
    h.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearerabc"), None);
        assert_eq!(bearer_token(&format!("Bearer {}", "a".repeat(257))), None);
    }

    #[test]
    fn every_route_has_a_class() {
        let g = Method::GET;
        let p = Method::POST;
        assert_eq!(classify(&g, "/login"), Class::Public);
        assert_eq!(classify(&p, "/login"), Class::Public);
        assert_eq!(classify(&Method::DELETE, "/login"), Class::Page);
        assert_eq!(classify(&g, "/style.css"), Class::Public);
        assert_eq!(classify(&g, "/"), Class::Page);
        assert_eq!(classify(&g, "/app.js"), Class::Page);
        assert_eq!(classify(&g, "/anything"), Class::Page);
        assert_eq!(classify(&p, "/logout"), Class::Page);
        assert_eq!(classify(&g, "/ws"), Class::WebSocket);
        assert_eq!(classify(&p, "/whep"), Class::Whep);
        assert_eq!(classify(&Method::PATCH, "/whep/00"), Class::Whep);
        assert_eq!(classify(&g, "/api/status"), Class::Api);
    }

    #[test]
    fn who_is_admitted_where() {
        let lan: Option<SocketAddr> = Some("192.168.1.5:40000".parse().unwrap());
        let lo: Option<SocketAddr> = Some("127.0.0.1:40000".parse().unwrap());
        let yes = || true;
        let no = || false;
        for class in [Class::Page, Class::WebSocket, Class::Whep, Class::Api] {
            assert!(!admits(class, false, lan, no, no), "{class:?}");
            assert!(
                !admits(class, false, lo, no, no),
                "loopback is not exempt by default"
            );
            assert!(
                !admits(class, true, lan, no, no),
                "the exemption is for loopback only"
            );
            assert!(admits(class, true, lo, no, no));
        }
        assert!(admits(Class::Public, false, lan, no, no));
        assert!(admits(Class::Page, false, lan, yes, no));
        assert!(
            !admits(Class::Page, false, lan, no, yes),
            "a token is not a page session"
        );
        assert!(
            !admits(Class::Whep, false, lan, yes, no),
            "WHEP takes bearer tokens"
        );
        assert!(admits(Class::Whep, false, lan, no, yes));
        assert!(admits(Class::Api, false, lan, no, yes) && admits(Class::Api, false, lan, yes, no));
    }

    #[test]
    fn origin_must_match_host() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("cam.local:8443"));
        assert!(!origin_ok(&h), "missing Origin");
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://cam.local:8443"),
        );
        assert!(origin_ok(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(!origin_ok(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://cam.local:8443"),
        );
        assert!(!origin_ok(&h), "plain http origin");
    }
}
