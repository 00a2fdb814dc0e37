//! `/ws`: JSON signaling over secure WebSocket. A thin shell: messages go
//! through [`Signaling`], and its actions are carried out here.

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::oneshot;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;

use super::guard::{Peer, lock, session_cookie};
use super::{AppState, Conn, Lease};
use crate::rtc::{EndReason, Grant, ViewerId};
use crate::signal::{Action, MAX_MESSAGE_BYTES, RateLimit, ServerMessage, Signaling};

/// Signaling messages one socket may send per second: a browser sends a
/// handful per call (offer, a few candidates, hang-up).
const MESSAGES_PER_SECOND: u32 = 50;

/// How often a quiet socket is pinged, and how long it may stay silent
/// (no message, no pong) before it is closed: a vanished browser must not
/// hold a connection slot.
const PING_EVERY: Duration = Duration::from_secs(15);
const SILENT_FOR: Duration = Duration::from_secs(45);
/// A send that does not complete in this time (a client that stopped
/// reading) closes the socket.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the socket's login session is looked at again.
const SESSION_CHECK: Duration = Duration::from_secs(1);

pub async fn upgrade(
    ws: WebSocketUpgrade,
    State(state): State<AppState>,
    peer: Option<axum::Extension<Peer>>,
    conn: Option<axum::Extension<Arc<Conn>>>,
    headers: HeaderMap,
) -> Response {
    let from = peer.map_or(IpAddr::from([0, 0, 0, 0]), |p| p.0.0.ip());
    // The socket counts against the connection limits for its whole life.
    let lease = conn.map(|c| Lease::take(&c.0));
    let login = session_cookie(&headers).map(str::to_owned);
    // Up to twice our limit reaches `Signaling`, which answers with a clear
    // error; beyond that tungstenite closes with 1009 (message too big).
    ws.max_message_size(2 * MAX_MESSAGE_BYTES)
        .max_frame_size(2 * MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| async move {
            let _lease = lease;
            session(socket, state, from, login).await
        })
}

async fn session(socket: WebSocket, state: AppState, from: IpAddr, login: Option<String>) {
    let (tx, mut rx) = socket.split();
    let mut tx = TimedSink(tx);
    let mut signaling = Signaling::new();
    let mut rate = RateLimit::new(MESSAGES_PER_SECOND);
    // The live viewer and the notice of its end.
    let mut live: Option<(ViewerId, oneshot::Receiver<EndReason>)> = None;
    let mut tick = tokio::time::interval(SESSION_CHECK);
    let (mut heard, mut pinged) = (Instant::now(), Instant::now());
    loop {
        let actions = tokio::select! {
            _ = tick.tick() => {
                let now = Instant::now();
                match Upkeep::of(&state, login.as_deref(), now, heard, pinged) {
                    Upkeep::Fine => continue,
                    Upkeep::Ping => {
                        pinged = now;
                        if !tx.send(Message::Ping(Default::default())).await {
                            return close(&mut signaling, &state, from, &mut live, &mut tx).await;
                        }
                        continue;
                    }
                    Upkeep::Silent => {
                        tracing::debug!(%from, "signaling socket silent for {SILENT_FOR:?}: closing");
                        return close(&mut signaling, &state, from, &mut live, &mut tx).await;
                    }
                    Upkeep::LoggedOut => vec![
                        Action::Send(ServerMessage::Error {
                            message: "the login session ended: log in again".into(),
                        }),
                        Action::Close,
                    ],
                }
            }
            msg = rx.next() => { heard = Instant::now(); match msg {
                Some(Ok(Message::Text(_) | Message::Binary(_))) if !rate.allow(Instant::now()) => {
                    tracing::warn!(%from, "signaling flood: more than {MESSAGES_PER_SECOND} messages/s; closing");
                    super::metrics::LimitHits::hit(&state.limits.signaling_floods);
                    vec![
                        Action::Send(ServerMessage::Error {
                            message: format!("too many messages (limit {MESSAGES_PER_SECOND} per second)"),
                        }),
                        Action::Close,
                    ]
                }
                Some(Ok(Message::Text(text))) => signaling.on_text(text.as_str()),
                Some(Ok(Message::Binary(_))) => signaling.on_binary(),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Close(_))) | None => {
                    return close(&mut signaling, &state, from, &mut live, &mut tx).await;
                }
                Some(Err(e)) => {
                    tracing::debug!("signaling socket error: {e}");
                    return close(&mut signaling, &state, from, &mut live, &mut tx).await;
                }
            }},
            reason = async {
                match live.as_mut() {
                    Some((_, ended)) => ended.await.unwrap_or(EndReason::Shutdown),
                    None => std::future::pending().await,
                }
            } => {
                let Some((id, _)) = live.take() else { continue };
                signaling.viewer_ended(id, &reason)
            }
        };
        if !run(actions, &mut signaling, &state, from, &mut live, &mut tx).await {
            close(&mut signaling, &state, from, &mut live, &mut tx).await;
            let _ = tokio::time::timeout(WRITE_TIMEOUT, tx.0.close()).await;
            return;
        }
    }
}

/// What the socket's regular look says.
enum Upkeep {
    Fine,
    Ping,
    Silent,
    LoggedOut,
}

impl Upkeep {
    fn of(
        state: &AppState,
        login: Option<&str>,
        now: Instant,
        heard: Instant,
        pinged: Instant,
    ) -> Self {
        // A socket opened with a login ends with it (logout, expiry, a
        // password change); one let in as trusted loopback has none.
        if let Some(id) = login
            && !lock(&state.auth.logins).check(id, now)
        {
            return Upkeep::LoggedOut;
        }
        if now.duration_since(heard) >= SILENT_FOR {
            Upkeep::Silent
        } else if now.duration_since(heard) >= PING_EVERY
            && now.duration_since(pinged) >= PING_EVERY
        {
            Upkeep::Ping
        } else {
            Upkeep::Fine
        }
    }
}

/// The socket is done: its viewer ends with it.
async fn close(
    signaling: &mut Signaling,
    state: &AppState,
    from: IpAddr,
    live: &mut Option<(ViewerId, oneshot::Receiver<EndReason>)>,
    tx: &mut TimedSink,
) {
    run(signaling.on_closed(), signaling, state, from, live, tx).await;
}

/// The socket's sending half, every send bounded by [`WRITE_TIMEOUT`].
struct TimedSink(futures_util::stream::SplitSink<WebSocket, Message>);

impl TimedSink {
    /// False when the send failed or the client stopped reading.
    async fn send(&mut self, msg: Message) -> bool {
        matches!(
            tokio::time::timeout(WRITE_TIMEOUT, self.0.send(msg)).await,
            Ok(Ok(()))
        )
    }
}

/// Carries out actions (and the ones they lead to). False: close the socket.
async fn run(
    mut actions: Vec<Action>,
    signaling: &mut Signaling,
    state: &AppState,
    from: IpAddr,
    live: &mut Option<(ViewerId, oneshot::Receiver<EndReason>)>,
    tx: &mut TimedSink,
) -> bool {
    let mut queue: std::collections::VecDeque<Action> = actions.drain(..).collect();
    while let Some(action) = queue.pop_front() {
        match action {
            Action::CreateViewer(offer) => {
                let next = match state.rtc.add_viewer(offer, from, Grant::owner()).await {
                    Ok(ticket) => {
                        *live = Some((ticket.id, ticket.ended));
                        signaling.viewer_created(ticket.id, ticket.answer)
                    }
                    Err(e) => signaling.viewer_refused(e.to_string()),
                };
                queue.extend(next);
            }
            Action::AddCandidate(id, candidate) => {
                if let Err(e) = state.rtc.add_candidate(id, candidate).await {
                    let msg = ServerMessage::Error {
                        message: e.to_string(),
                    };
                    queue.push_back(Action::Send(msg));
                }
            }
            Action::EndViewer(id) => {
                if live.as_ref().is_some_and(|(l, _)| *l == id) {
                    *live = None;
                }
                let _ = state.rtc.end(id, EndReason::HangUp).await;
            }
            Action::Send(msg) => {
                if !tx.send(Message::Text(msg.to_json().into())).await {
                    return false;
                }
            }
            Action::Close => return false,
        }
    }
    true
}
