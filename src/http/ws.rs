//! `/ws`: JSON signaling over secure WebSocket. A thin shell: messages go
//! through [`Signaling`], and its actions are carried out here.

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::oneshot;

use std::net::IpAddr;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;

use super::conns::LeaseRefusal;
use super::guard::{Peer, lock, session_cookie};
use super::{AppState, Conn, Lease};
use crate::rtc::{EndReason, Grant, ViewerId};
use crate::signal::{Action, MAX_MESSAGE_BYTES, RateLimit, ServerMessage, Signaling};

/// Signaling messages one socket may send per second: a browser sends a
/// handful per call (offer, a few candidates, hang-up).
const MESSAGES_PER_SECOND: u32 = 50;

/// How often a socket is pinged, and how long it may leave the pings
/// unanswered before it is closed: a vanished browser, or one that stopped
/// reading (browsers answer pings by themselves), must not hold a slot.
/// Its own messages do not count: they say it writes, not that it reads.
const PING_EVERY: Duration = Duration::from_secs(15);
const SILENT_FOR: Duration = Duration::from_secs(45);
/// The kernel's send buffer for a signaling socket (doubled by the kernel):
/// an answer is a few KiB, and a peer that stops reading blocks our next
/// send after this, so the write timeout closes it.
const SEND_BUFFER: i32 = 32 * 1024;
/// A send that does not complete in this time (a client that stopped
/// reading) closes the socket.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the socket's login session is looked at again.
const SESSION_CHECK: Duration = Duration::from_secs(1);
/// tungstenite's read buffer, allocated up front for each socket (128 KiB
/// by default, for every open page), and how much it gathers before
/// writing. A signaling message is a few KiB; a larger one grows the read
/// buffer, up to the message limit below.
const READ_BUFFER: usize = 8 * 1024;
const WRITE_BUFFER: usize = 8 * 1024;

pub async fn upgrade(
    ws: WebSocketUpgrade,
    State(state): State<AppState>,
    peer: Option<axum::Extension<Peer>>,
    conn: Option<axum::Extension<Arc<Conn>>>,
    headers: HeaderMap,
) -> Response {
    let from = peer.map_or(IpAddr::from([0, 0, 0, 0]), |p| p.0.0.ip());
    // The socket counts against the connection limits for its whole life,
    // within the share sockets have.
    let lease = match conn.as_ref().map(|c| Lease::take(&c.0)).transpose() {
        Ok(lease) => lease,
        Err(why) => return refuse(&state, from, why),
    };
    let fd = conn.map(|c| c.0.fd);
    if let Some(fd) = fd
        && let Err(e) = crate::net::tcp::limit_send_buffer(fd, SEND_BUFFER)
    {
        tracing::debug!("signaling socket: send buffer: {e}");
    }
    let login = session_cookie(&headers).map(str::to_owned);
    // Up to twice our limit reaches `Signaling`, which answers with a clear
    // error; beyond that tungstenite closes with 1009 (message too big).
    ws.max_message_size(2 * MAX_MESSAGE_BYTES)
        .max_frame_size(2 * MAX_MESSAGE_BYTES)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .on_upgrade(move |socket| async move {
            let _lease = lease;
            session(socket, state, from, login, fd).await
        })
}

/// No room for another socket: 503, with the reason.
fn refuse(state: &AppState, from: IpAddr, why: LeaseRefusal) -> Response {
    super::metrics::LimitHits::hit(&state.limits.connections_refused);
    let why = match why {
        LeaseRefusal::Full => "too many open pages: try again shortly",
        LeaseRefusal::AddressFull => "too many open pages from your address",
    };
    crate::info_limited!(%from, "signaling socket refused: {why}");
    let retry = [(axum::http::header::RETRY_AFTER, "5")];
    (StatusCode::SERVICE_UNAVAILABLE, retry, format!("{why}\n")).into_response()
}

/// A peer that stopped reading or answering: what is queued for it is
/// dropped when the socket closes (a reset), not kept for minutes.
fn rude(fd: Option<RawFd>) {
    if let Some(fd) = fd
        && let Err(e) = crate::net::tcp::discard_on_close(fd)
    {
        tracing::debug!("signaling socket: linger: {e}");
    }
}

async fn session(
    socket: WebSocket,
    state: AppState,
    from: IpAddr,
    login: Option<String>,
    fd: Option<RawFd>,
) {
    let (tx, mut rx) = socket.split();
    let mut tx = TimedSink {
        sink: tx,
        stuck: false,
    };
    let mut signaling = Signaling::new();
    let mut rate = RateLimit::new(MESSAGES_PER_SECOND);
    // The live viewer and the notice of its end.
    let mut live: Option<(ViewerId, oneshot::Receiver<EndReason>)> = None;
    let mut tick = tokio::time::interval(SESSION_CHECK);
    let (mut answered, mut pinged) = (Instant::now(), Instant::now());
    loop {
        let actions = tokio::select! {
            _ = tick.tick() => {
                let now = Instant::now();
                let logged_in = login.as_deref().is_none_or(|id| lock(&state.auth.logins).check(id, now));
                match Upkeep::of(logged_in, now, answered, pinged) {
                    Upkeep::Fine => continue,
                    Upkeep::Ping => {
                        pinged = now;
                        if !tx.send(Message::Ping(Default::default())).await {
                            close(&mut signaling, &state, from, &mut live, &mut tx).await;
                            return rude(fd);
                        }
                        continue;
                    }
                    Upkeep::Silent => {
                        tracing::debug!(%from, "signaling socket left pings unanswered for {SILENT_FOR:?}: closing");
                        close(&mut signaling, &state, from, &mut live, &mut tx).await;
                        return rude(fd);
                    }
                    Upkeep::LoggedOut => vec![
                        Action::Send(ServerMessage::Error {
                            message: "the login session ended: log in again".into(),
                        }),
                        Action::Close,
                    ],
                }
            }
            msg = rx.next() => match msg {
                Some(Ok(Message::Text(_) | Message::Binary(_))) if !rate.allow(Instant::now()) => {
                    crate::warn_limited!(%from, "signaling flood: more than {MESSAGES_PER_SECOND} messages/s; closing");
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
                Some(Ok(Message::Pong(_))) => {
                    answered = Instant::now();
                    continue;
                }
                Some(Ok(Message::Ping(_))) => continue,
                Some(Ok(Message::Close(_))) | None => {
                    return close(&mut signaling, &state, from, &mut live, &mut tx).await;
                }
                Some(Err(e)) => {
                    tracing::debug!("signaling socket error: {e}");
                    close(&mut signaling, &state, from, &mut live, &mut tx).await;
                    return rude(fd);
                }
            },
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
            if tx.stuck {
                return rude(fd);
            }
            let _ = tokio::time::timeout(WRITE_TIMEOUT, tx.sink.close()).await;
            return;
        }
    }
}

/// What the socket's regular look says.
#[derive(Debug, PartialEq, Eq)]
enum Upkeep {
    Fine,
    Ping,
    Silent,
    LoggedOut,
}

impl Upkeep {
    /// `logged_in`: the socket's login still holds (a socket opened with a
    /// login ends with it; one let in as trusted loopback has none).
    fn of(logged_in: bool, now: Instant, answered: Instant, pinged: Instant) -> Self {
        if !logged_in {
            Upkeep::LoggedOut
        } else if now.duration_since(answered) >= SILENT_FOR {
            Upkeep::Silent
        } else if now.duration_since(pinged) >= PING_EVERY {
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
struct TimedSink {
    sink: futures_util::stream::SplitSink<WebSocket, Message>,
    /// A send failed or timed out: the peer stopped reading.
    stuck: bool,
}

impl TimedSink {
    /// False when the send failed or the client stopped reading.
    async fn send(&mut self, msg: Message) -> bool {
        let sent = matches!(
            tokio::time::timeout(WRITE_TIMEOUT, self.sink.send(msg)).await,
            Ok(Ok(()))
        );
        self.stuck |= !sent;
        sent
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_must_answer_its_pings() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(Upkeep::of(true, at(1), t0, t0), Upkeep::Fine);
        assert_eq!(Upkeep::of(true, at(15), t0, t0), Upkeep::Ping);
        assert_eq!(Upkeep::of(true, at(16), t0, at(15)), Upkeep::Fine);
        // Pinged at 15 and 30, never answered: gone at 45 whatever it sent.
        assert_eq!(Upkeep::of(true, at(45), t0, at(30)), Upkeep::Silent);
        assert_eq!(Upkeep::of(true, at(45), at(31), at(30)), Upkeep::Ping);
        assert_eq!(Upkeep::of(false, at(1), t0, t0), Upkeep::LoggedOut);
    }
}
