//! The shell around one WHIP target's client: runs its requests, makes and
//! ends its publishing peer through the rtc task, feeds the peer's fate
//! back, and shows where it is on the [`WhipBoard`]. On shutdown it sends
//! the DELETE (the caller bounds how long that may take).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{mpsc, watch};

use super::client::{Endpoint, Output, Phase, Response, Transport, WhipClient};
use super::http::HttpClient;
use crate::rtc::{EndReason, PeerEvent, PublishSpec, RtcHandle, ViewerId};

/// Every target's state, for `/api/status`, `/metrics` and the page.
#[derive(Clone, Default)]
pub struct WhipBoard(Arc<Mutex<Vec<TargetView>>>);

impl WhipBoard {
    pub fn snapshot(&self) -> Vec<TargetView> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }

    fn slot(&self, view: TargetView) -> usize {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        all.push(view);
        all.len() - 1
    }

    fn set(&self, slot: usize, view: TargetView) {
        if let Ok(mut all) = self.0.lock()
            && let Some(v) = all.get_mut(slot)
        {
            *v = view;
        }
    }
}

/// One target as the owner sees it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TargetView {
    /// The endpoint without its query (where some receivers put secrets).
    pub url: String,
    pub codec: String,
    pub state: Phase,
    /// When it entered that state (Unix ms).
    pub since_ms: u64,
    pub last_error: Option<String>,
    /// The publishing peer, to find its link in the rtc stats.
    #[serde(skip)]
    pub peer: Option<ViewerId>,
}

/// What one target's task needs.
pub struct WhipTask {
    pub endpoint: Endpoint,
    pub spec: PublishSpec,
    pub rtc: RtcHandle,
    pub http: Arc<HttpClient>,
    pub board: WhipBoard,
    pub shutdown: watch::Receiver<bool>,
}

type InFlight = FuturesUnordered<BoxFuture<'static, (u64, Result<Response, Transport>)>>;

impl WhipTask {
    pub async fn run(mut self) {
        let started = Instant::now();
        let mut client = WhipClient::new(self.endpoint.clone(), started);
        let slot = self.board.slot(self.view(&client));
        let (events_tx, mut events) = mpsc::channel::<PeerEvent>(16);
        let mut in_flight: InFlight = FuturesUnordered::new();
        let mut logged = LogState::default();
        loop {
            self.act(&mut client, &events_tx, &mut in_flight).await;
            logged.report(&mut client, &self.endpoint);
            self.board.set(slot, self.view(&client));
            if client.is_stopped() {
                break;
            }
            let sleep = client
                .poll_timeout()
                .map_or(Duration::from_secs(3600), |at| {
                    at.saturating_duration_since(Instant::now())
                });
            tokio::select! {
                Some((id, outcome)) = in_flight.next(), if !in_flight.is_empty() => {
                    client.response(Instant::now(), id, outcome);
                }
                Some(event) = events.recv() => match event {
                    PeerEvent::Connected(id) => client.connected(Instant::now(), id),
                    PeerEvent::Ended(id, reason) => {
                        client.peer_ended(Instant::now(), id, reason.to_string())
                    }
                },
                _ = tokio::time::sleep(sleep) => client.handle_timeout(Instant::now()),
                _ = self.shutdown.changed() => {
                    if *self.shutdown.borrow() {
                        client.stop(Instant::now());
                    }
                }
            }
        }
    }

    /// Carries out what the client asked for.
    async fn act(
        &self,
        client: &mut WhipClient,
        events: &mpsc::Sender<PeerEvent>,
        in_flight: &mut InFlight,
    ) {
        let mut pending: VecDeque<Output> = VecDeque::new();
        loop {
            while let Some(out) = client.poll_output() {
                pending.push_back(out);
            }
            let Some(out) = pending.pop_front() else {
                return;
            };
            let now = Instant::now;
            match out {
                Output::CreatePeer => {
                    match self.rtc.add_publisher(self.spec, events.clone()).await {
                        Ok((peer, offer)) => client.offer(now(), peer, &offer),
                        Err(e) => client.offer_failed(now(), e.to_string()),
                    }
                }
                Output::Http(req) => {
                    let http = self.http.clone();
                    in_flight.push(Box::pin(async move {
                        let outcome = http.send(&req).await;
                        (req.id, outcome)
                    }));
                }
                Output::Answer { peer, sdp } => {
                    if let Err(e) = self.rtc.publisher_answer(peer, sdp).await {
                        client.answer_failed(now(), peer, e.to_string());
                    }
                }
                Output::EndPeer(peer) => {
                    // Already gone is fine: the session ended on its own.
                    let _ = self.rtc.end(peer, EndReason::HangUp).await;
                }
            }
        }
    }

    fn view(&self, client: &WhipClient) -> TargetView {
        let since = SystemTime::now()
            .checked_sub(client.since().elapsed())
            .unwrap_or(UNIX_EPOCH);
        let url = self.endpoint.url.to_string();
        TargetView {
            url: url.split('?').next().unwrap_or("").to_string(),
            codec: self.spec.codec.to_string(),
            state: client.phase(),
            since_ms: since
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            last_error: client.last_error().map(|e| e.to_string()),
            peer: client.peer(),
        }
    }
}

/// Logs each change of state once, and each distinct error once until the
/// target is live again (a receiver down for an hour is not 120 lines).
#[derive(Default)]
struct LogState {
    phase: Option<Phase>,
    error: Option<String>,
}

impl LogState {
    fn report(&mut self, client: &mut WhipClient, endpoint: &Endpoint) {
        let url = endpoint.url.to_string();
        let url = url.split('?').next().unwrap_or("");
        while let Some(note) = client.poll_note() {
            tracing::info!(target = %url, "WHIP: {note}");
        }
        let error = client.last_error().map(|e| e.to_string());
        if error.is_some() && error != self.error {
            let retry = client
                .poll_timeout()
                .map(|at| at.saturating_duration_since(Instant::now()).as_secs_f32());
            tracing::warn!(
                target = %url,
                retry_in_s = retry,
                "WHIP publish failed: {}",
                error.as_deref().unwrap_or("")
            );
        }
        self.error = error;
        let phase = client.phase();
        if self.phase != Some(phase) {
            match phase {
                Phase::Live => tracing::info!(target = %url, "WHIP: publishing"),
                Phase::Stopped => tracing::info!(target = %url, "WHIP: stopped"),
                _ => tracing::debug!(target = %url, "WHIP: {phase:?}"),
            }
            self.phase = Some(phase);
        }
    }
}
