//! `/whep`: the WHEP protocol (draft-ietf-wish-whep) so standard players
//! can pull the stream. POST an offer -> 201 with the answer and a session
//! resource; PATCH that resource with trickle fragments; DELETE to leave.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use super::AppState;
use super::guard::{Peer, lock};
use crate::rtc::{EndReason, Grant, RtcCallError, SessionError, ViewerId};
use crate::signal::parse_sdpfrag;

/// Which token made each WHEP session: only it may PATCH or DELETE the
/// session, and revoking it ends the session. `None` for a session made
/// without one (`--trust-loopback`).
#[derive(Default)]
pub struct Owners(Mutex<HashMap<ViewerId, Option<String>>>);

impl Owners {
    fn owner(&self, id: ViewerId) -> Option<Option<String>> {
        lock(&self.0).get(&id).cloned()
    }
}

/// How often a WHEP session's token is looked at again.
const REVOCATION_CHECK: Duration = Duration::from_secs(1);

const SDP: &str = "application/sdp";
const SDPFRAG: &str = "application/trickle-ice-sdpfrag";

pub async fn create(
    State(state): State<AppState>,
    peer: Option<axum::Extension<Peer>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !content_type_is(&headers, SDP) {
        return problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a WHEP offer must be sent as Content-Type: application/sdp",
        );
    }
    let Ok(offer) = std::str::from_utf8(&body) else {
        return problem(StatusCode::BAD_REQUEST, "the SDP offer is not UTF-8 text");
    };
    let from = peer.map_or(IpAddr::from([0, 0, 0, 0]), |p| p.0.0.ip());
    let owner = state.auth.bearer_name(&headers);
    let grant = match &owner {
        Some(name) => Grant {
            token_name: Some(name.clone()),
            may_control: state.auth.token_may_control(name),
        },
        None => Grant::owner(),
    };
    match state.rtc.add_viewer(offer.to_string(), from, grant).await {
        Ok(ticket) => {
            let location = format!("/whep/{}", ticket.id);
            lock(&state.whep.0).insert(ticket.id, owner.clone());
            tokio::spawn(watch_session(state.clone(), ticket.id, owner, ticket.ended));
            (
                StatusCode::CREATED,
                [
                    (header::CONTENT_TYPE, HeaderValue::from_static(SDP)),
                    (
                        header::LOCATION,
                        HeaderValue::from_str(&location).expect("hex id is a valid header"),
                    ),
                ],
                ticket.answer,
            )
                .into_response()
        }
        Err(e) => call_error(e),
    }
}

/// Until the session ends: revoking its token ends it. Then it is
/// forgotten.
async fn watch_session(
    state: AppState,
    id: ViewerId,
    owner: Option<String>,
    mut ended: tokio::sync::oneshot::Receiver<EndReason>,
) {
    loop {
        tokio::select! {
            _ = &mut ended => break,
            _ = tokio::time::sleep(REVOCATION_CHECK), if owner.is_some() => {
                if let Some(name) = &owner
                    && !state.auth.token_named(name)
                {
                    tracing::info!("token '{name}' was revoked: ending its WHEP session {id}");
                    let _ = state.rtc.end(id, EndReason::Revoked).await;
                    break;
                }
            }
        }
    }
    lock(&state.whep.0).remove(&id);
}

/// The session `id`, when the request comes from the token that made it;
/// `None` (answered like a session that does not exist) otherwise.
fn own_session(state: &AppState, headers: &HeaderMap, id: &str) -> Option<ViewerId> {
    let id = id.parse::<ViewerId>().ok()?;
    let owner = state.whep.owner(id)?;
    (owner == state.auth.bearer_name(headers)).then_some(id)
}

fn no_such_session() -> Response {
    problem(StatusCode::NOT_FOUND, "no such WHEP session")
}

pub async fn patch(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(id) = own_session(&state, &headers, &id) else {
        return no_such_session();
    };
    if !content_type_is(&headers, SDPFRAG) {
        return problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "trickle ICE must be sent as Content-Type: application/trickle-ice-sdpfrag",
        );
    }
    let Ok(text) = std::str::from_utf8(&body) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "the SDP fragment is not UTF-8 text",
        );
    };
    let candidates = match parse_sdpfrag(text) {
        Ok(c) => c,
        Err(e) => return problem(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    if candidates.len() > MAX_PER_PATCH {
        return problem(
            StatusCode::BAD_REQUEST,
            &format!("at most {MAX_PER_PATCH} ICE candidates in one PATCH"),
        );
    }
    for c in candidates {
        if let Err(e) = state.rtc.add_candidate(id, c).await {
            return call_error(e);
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

/// The most candidates one trickle PATCH may carry.
const MAX_PER_PATCH: usize = 16;

pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(id) = own_session(&state, &headers, &id) else {
        return no_such_session();
    };
    match state.rtc.end(id, EndReason::HangUp).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => call_error(e),
    }
}

fn content_type_is(headers: &HeaderMap, want: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(want))
}

fn call_error(e: RtcCallError) -> Response {
    let status = match &e {
        RtcCallError::Session(SessionError::Full(_)) | RtcCallError::Gone => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        RtcCallError::Session(SessionError::UnknownViewer) => StatusCode::NOT_FOUND,
        RtcCallError::Session(SessionError::TooManyFromAddress(_)) => StatusCode::TOO_MANY_REQUESTS,
        RtcCallError::Session(SessionError::Internal(_)) => StatusCode::INTERNAL_SERVER_ERROR,
        RtcCallError::Session(_) => StatusCode::BAD_REQUEST,
    };
    let mut r = problem(status, &e.to_string());
    if status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    r
}

/// A plain-text error body: players log it, people read it.
fn problem(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{message}\n"),
    )
        .into_response()
}
