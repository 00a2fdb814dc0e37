//! `/login` and `/logout`: the page's password form and its session cookie.

use std::time::{Duration, Instant};

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::AppState;
use super::guard::{AuthState, Peer, device_cookie, lock, session_cookie};
use crate::auth::{PasswordFile, QueueRefusal, Standing, logins, queue};

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    password: String,
}

/// The form body as axum's `Form` reads it (public for the fuzz target).
pub fn parse_form(body: &[u8]) -> Result<LoginForm, serde_urlencoded::de::Error> {
    serde_urlencoded::from_bytes(body)
}

/// The largest login form: a password of at most 1,024 characters, each
/// up to three percent-encoded bytes, and its name.
pub const MAX_BODY: usize = 4096;

/// How long a login waits for a free password check before it is told to
/// come back.
const CHECK_QUEUE_WAIT: Duration = Duration::from_secs(10);

/// A login waiting for its turn: its address, and how it is told.
pub type Waiting = (IpAddr, oneshot::Sender<()>);

pub async fn login(
    State(state): State<AppState>,
    peer: Option<axum::Extension<Peer>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let auth = state.auth.clone();
    let ip = peer
        .map(|p| p.0.0.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    if form.password.len() > 1024 {
        return (StatusCode::BAD_REQUEST, "password too long\n").into_response();
    }
    let standing = standing(&auth, ip, &headers);
    let turn = match Turn::take(&auth, ip, standing).await {
        Ok(turn) => turn,
        Err(why) => return busy(&state, why),
    };
    if let Err(wait) = lock(&auth.backoff).begin(ip, Instant::now()) {
        return throttled(&state, ip, wait);
    }
    let dir = auth.state_dir.clone();
    // Argon2 is slow on purpose: keep it off the async workers. The turn
    // goes with the hash, so a client that hangs up does not free its
    // worker before the work is done.
    let verified = tokio::task::spawn_blocking(move || {
        let _turn = turn;
        PasswordFile::load(&dir).map(|f| f.verify(&form.password))
    })
    .await;
    match verified {
        Ok(Ok(true)) => logged_in(&auth, ip),
        Ok(Ok(false)) => {
            // Counted when it began.
            let wait = lock(&auth.backoff)
                .check(ip, Instant::now())
                .err()
                .unwrap_or_default();
            crate::warn_limited!(
                "failed login from {ip}; next attempt allowed in {} s",
                wait.as_secs()
            );
            (StatusCode::UNAUTHORIZED, "wrong password\n").into_response()
        }
        Ok(Err(e)) => {
            tracing::error!("login: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the password store cannot be read\n",
            )
                .into_response()
        }
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "login failed\n").into_response(),
    }
}

/// How far this login is trusted before its password is checked.
fn standing(auth: &AuthState, ip: IpAddr, headers: &HeaderMap) -> Standing {
    let now = Instant::now();
    if device_cookie(headers).is_some_and(|id| lock(&auth.logins).knows_device(id, now)) {
        return Standing::Known;
    }
    lock(&auth.backoff).standing(ip)
}

/// The right password: a session, and the browser is remembered.
fn logged_in(auth: &AuthState, ip: IpAddr) -> Response {
    lock(&auth.backoff).succeeded(ip);
    let now = Instant::now();
    let (id, device) = {
        let mut logins = lock(&auth.logins);
        (logins.create(now), logins.remember_device(now))
    };
    crate::info_limited!("login from {ip}");
    let cookie = HeaderValue::from_str(&logins::set_cookie(&id)).expect("hex cookie");
    let device = HeaderValue::from_str(&logins::set_device_cookie(&device)).expect("hex cookie");
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().append(header::SET_COOKIE, cookie);
    r.headers_mut().append(header::SET_COOKIE, device);
    r
}

fn throttled(state: &AppState, ip: IpAddr, wait: Duration) -> Response {
    // Round up: a client that waits as told must find the door open.
    super::metrics::LimitHits::hit(&state.limits.logins_throttled);
    let secs = (wait.as_millis().div_ceil(1000) as u64).max(1);
    crate::warn_limited!("login from {ip} refused: throttled for {secs} s after failures");
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, secs.to_string())],
        format!("too many failed logins: try again in {secs} s\n"),
    )
        .into_response()
}

fn busy(state: &AppState, why: Busy) -> Response {
    super::metrics::LimitHits::hit(&state.limits.logins_busy);
    let text = match why {
        Busy::Queue(QueueRefusal::AddressBusy) => {
            "a login from your address is being checked: try again in 2 s\n"
        }
        Busy::Queue(QueueRefusal::Full) | Busy::Displaced | Busy::Waited => {
            "too many logins at once: try again in 2 s\n"
        }
    };
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "2")],
        text,
    )
        .into_response()
}

/// Why a login got no password check.
#[derive(Debug, Clone, Copy)]
enum Busy {
    Queue(QueueRefusal),
    /// A login of better standing took its place in the queue.
    Displaced,
    /// It waited [`CHECK_QUEUE_WAIT`] in vain.
    Waited,
}

/// A login's hold on a password-check worker: when it drops, the worker
/// goes to the next login in the queue.
struct Turn {
    auth: Arc<AuthState>,
    ip: IpAddr,
}

impl Turn {
    async fn take(auth: &Arc<AuthState>, ip: IpAddr, standing: Standing) -> Result<Turn, Busy> {
        let held = || Turn {
            auth: auth.clone(),
            ip,
        };
        let (tx, mut rx) = oneshot::channel();
        let asked = lock(&auth.checks).request(ip, standing, (ip, tx));
        let ticket = match asked.map_err(Busy::Queue)? {
            queue::Turn::Now => return Ok(held()),
            queue::Turn::Wait { ticket, displaced } => {
                drop(displaced); // its login hears the sender go: busy
                ticket
            }
        };
        match tokio::time::timeout(CHECK_QUEUE_WAIT, &mut rx).await {
            Ok(Ok(())) => Ok(held()),
            Ok(Err(_)) => Err(Busy::Displaced),
            Err(_) => {
                lock(&auth.checks).cancel(ticket);
                // Handed a worker just as it gave up: pass it on.
                if rx.try_recv().is_ok() {
                    drop(held());
                }
                Err(Busy::Waited)
            }
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut checks = lock(&self.auth.checks);
        let mut ip = self.ip;
        // A login that left while waiting cannot take the worker: next.
        while let Some((next, tx)) = checks.finished(ip) {
            if tx.send(()).is_ok() {
                break;
            }
            ip = next;
        }
    }
}

pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(id) = session_cookie(&headers) {
        lock(&state.auth.logins).remove(id);
    }
    let clear = HeaderValue::from_str(&logins::clear_cookie()).expect("static cookie");
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, clear)]).into_response()
}
