//! `/login` and `/logout`: the page's password form and its session cookie.

use std::time::{Duration, Instant};

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use super::guard::{Peer, lock, session_cookie};
use crate::auth::{PasswordFile, logins};

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    password: String,
}

/// The form body as axum's `Form` reads it (public for the fuzz target).
pub fn parse_form(body: &[u8]) -> Result<LoginForm, serde_urlencoded::de::Error> {
    serde_urlencoded::from_bytes(body)
}

/// How long a login waits for a free password check before it is told to
/// come back.
const CHECK_QUEUE_WAIT: Duration = Duration::from_secs(10);

pub async fn login(
    State(state): State<AppState>,
    peer: Option<axum::Extension<Peer>>,
    Form(form): Form<LoginForm>,
) -> Response {
    let auth = state.auth.clone();
    let ip = peer
        .map(|p| p.0.0.ip())
        .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
    if form.password.len() > 1024 {
        return (StatusCode::BAD_REQUEST, "password too long\n").into_response();
    }
    if let Err(wait) = lock(&auth.backoff).begin(ip, Instant::now()) {
        // Round up: a client that waits as told must find the door open.
        super::metrics::LimitHits::hit(&state.limits.logins_throttled);
        let secs = (wait.as_millis().div_ceil(1000) as u64).max(1);
        tracing::warn!("login from {ip} refused: throttled for {secs} s after failures");
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, secs.to_string())],
            format!("too many failed logins: try again in {secs} s\n"),
        )
            .into_response();
    }
    let Ok(Ok(permit)) = tokio::time::timeout(
        CHECK_QUEUE_WAIT,
        auth.password_checks.clone().acquire_owned(),
    )
    .await
    else {
        super::metrics::LimitHits::hit(&state.limits.logins_busy);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "2")],
            "too many logins at once: try again in 2 s\n",
        )
            .into_response();
    };
    let dir = auth.state_dir.clone();
    // Argon2 is slow on purpose: keep it off the async workers. The permit
    // goes with the hash, so a client that hangs up does not free its slot
    // before the work is done.
    let verified = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        PasswordFile::load(&dir).map(|f| f.verify(&form.password))
    })
    .await;
    match verified {
        Ok(Ok(true)) => {
            lock(&auth.backoff).succeeded(ip);
            let id = lock(&auth.logins).create(Instant::now());
            tracing::info!("login from {ip}");
            let cookie = HeaderValue::from_str(&logins::set_cookie(&id)).expect("hex cookie");
            (StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response()
        }
        Ok(Ok(false)) => {
            // Counted when it began.
            let wait = lock(&auth.backoff)
                .check(ip, Instant::now())
                .err()
                .unwrap_or_default();
            tracing::warn!(
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

pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(id) = session_cookie(&headers) {
        lock(&state.auth.logins).remove(id);
    }
    let clear = HeaderValue::from_str(&logins::clear_cookie()).expect("static cookie");
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, clear)]).into_response()
}
