//! `/ws`: JSON signaling over secure WebSocket. A thin shell: messages go
//! through [`Signaling`], and its actions are carried out here.

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::oneshot;

use std::net::IpAddr;
use std::time::Instant;

use super::AppState;
use super::guard::Peer;
use crate::rtc::{EndReason, ViewerId};
use crate::signal::{Action, MAX_MESSAGE_BYTES, RateLimit, ServerMessage, Signaling};

/// Signaling messages one socket may send per second: a browser sends a
/// handful per call (offer, a few candidates, hang-up).
const MESSAGES_PER_SECOND: u32 = 50;

pub async fn upgrade(
    ws: WebSocketUpgrade,
    State(state): State<AppState>,
    peer: Option<axum::Extension<Peer>>,
) -> Response {
    let from = peer.map_or(IpAddr::from([0, 0, 0, 0]), |p| p.0.0.ip());
    // Up to twice our limit reaches `Signaling`, which answers with a clear
    // error; beyond that tungstenite closes with 1009 (message too big).
    ws.max_message_size(2 * MAX_MESSAGE_BYTES)
        .max_frame_size(2 * MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| session(socket, state, from))
}

async fn session(socket: WebSocket, state: AppState, from: IpAddr) {
    let (mut tx, mut rx) = socket.split();
    let mut signaling = Signaling::new();
    let mut rate = RateLimit::new(MESSAGES_PER_SECOND);
    // The live viewer and the notice of its end.
    let mut live: Option<(ViewerId, oneshot::Receiver<EndReason>)> = None;
    loop {
        let actions = tokio::select! {
            msg = rx.next() => match msg {
                Some(Ok(Message::Text(_) | Message::Binary(_))) if !rate.allow(Instant::now()) => {
                    tracing::warn!(%from, "signaling flood: more than {MESSAGES_PER_SECOND} messages/s; closing");
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
                    run(signaling.on_closed(), &mut signaling, &state, from, &mut live, &mut tx).await;
                    return;
                }
                Some(Err(e)) => {
                    tracing::debug!("signaling socket error: {e}");
                    run(signaling.on_closed(), &mut signaling, &state, from, &mut live, &mut tx).await;
                    return;
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
            run(
                signaling.on_closed(),
                &mut signaling,
                &state,
                from,
                &mut live,
                &mut tx,
            )
            .await;
            let _ = tx.close().await;
            return;
        }
    }
}

/// Carries out actions (and the ones they lead to). False: close the socket.
async fn run<S>(
    mut actions: Vec<Action>,
    signaling: &mut Signaling,
    state: &AppState,
    from: IpAddr,
    live: &mut Option<(ViewerId, oneshot::Receiver<EndReason>)>,
    tx: &mut S,
) -> bool
where
    S: SinkExt<Message> + Unpin,
{
    let mut queue: std::collections::VecDeque<Action> = actions.drain(..).collect();
    while let Some(action) = queue.pop_front() {
        match action {
            Action::CreateViewer(offer) => {
                let next = match state.rtc.add_viewer(offer, from).await {
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
                if tx.send(Message::Text(msg.to_json().into())).await.is_err() {
                    return false;
                }
            }
            Action::Close => return false,
        }
    }
    true
}
