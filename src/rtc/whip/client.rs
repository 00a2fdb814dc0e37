//! One WHIP target's HTTP side as a state machine (RFC 9725): time, HTTP
//! responses and the publishing peer's fate go in; requests, peer actions
//! and the next deadline come out. No sockets, no clocks (str0m's shape):
//! the shell (`task.rs`) runs the requests and the session table runs the
//! peer.
//!
//! The exchange, and what real receivers do differently:
//! - POST the offer, candidates in it (no trickle by default: several
//!   receivers drop or refuse PATCH), `Content-Type` exactly
//!   `application/sdp`, CRLF line ends, a bearer token if given.
//! - `201` with a `Location` (absolute or relative: resolved against the
//!   URL posted to) and maybe an `ETag`; a 307/308 is followed once.
//! - The answer is checked, not only the status: Janus answers 201 with the
//!   video section at port 0 / `a=inactive` when the room refuses the codec.
//! - With trickle on, the candidates go in one PATCH after the 201 with
//!   `If-Match: <ETag>`; a failed PATCH is logged and nothing more (rtcam is
//!   the controlling ICE agent: the receiver learns our address from our
//!   connectivity checks anyway).
//! - The session ends (ICE failure, DTLS close, receiver gone): DELETE, then
//!   publish again with a fresh session after a backoff of 1 s doubling to
//!   30 s (back to 1 s once live). `stop` sends the DELETE and ends.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

pub use super::exchange::{Method, Request, Response, Transport, WhipError};
use super::sdp::{split_candidates, video_refused, with_crlf};
use super::url::Url;
use crate::rtc::ViewerId;

/// The first wait after a failure, and the longest.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How one target is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub url: Url,
    /// Sent as `Authorization: Bearer ...` (from `--whip-token-file`).
    pub token: Option<String>,
    /// Candidates in a PATCH after the 201 instead of in the offer.
    pub trickle: bool,
}

/// What the client asks of the shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Make a publishing peer and hand its offer to [`WhipClient::offer`].
    CreatePeer,
    Http(Request),
    /// Give the receiver's answer to the peer (then [`WhipClient::connected`]
    /// or [`WhipClient::peer_ended`]; a refusal to
    /// [`WhipClient::answer_failed`]).
    Answer {
        peer: ViewerId,
        sdp: String,
    },
    /// The peer's session is over: end it.
    EndPeer(ViewerId),
}

/// Where a target is, for `/api/status`, `/metrics` and the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Waiting to publish (again).
    Waiting,
    /// Offer made and posted; waiting for the answer.
    Offering,
    /// Answer applied; ICE and DTLS under way.
    Connecting,
    Live,
    /// DELETE under way.
    Stopping,
    Stopped,
}

/// The resource the receiver made for our session.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Session {
    peer: ViewerId,
    url: Url,
    etag: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Waiting {
        at: Instant,
    },
    MakingOffer,
    /// The offer is out (to the endpoint, or where it redirected).
    Posting(Posted),
    Connecting(Session),
    Live(Session),
    Deleting {
        req: u64,
        then: Then,
        /// A peer still up, ended once the DELETE is answered (the
        /// receiver hears the DELETE before the DTLS close).
        peer: Option<ViewerId>,
    },
    Stopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    Retry,
    Stop,
}

pub struct WhipClient {
    endpoint: Endpoint,
    state: State,
    backoff: Duration,
    stopping: bool,
    next_id: u64,
    /// The PATCH in flight, if any (its result is only logged).
    patch: Option<u64>,
    outputs: VecDeque<Output>,
    since: Instant,
    last_error: Option<WhipError>,
    /// Told once each: what the log should say (a PATCH refused...).
    notes: VecDeque<String>,
}

impl WhipClient {
    /// A client that publishes at once.
    pub fn new(endpoint: Endpoint, now: Instant) -> Self {
        WhipClient {
            endpoint,
            state: State::Waiting { at: now },
            backoff: FIRST_BACKOFF,
            stopping: false,
            next_id: 0,
            patch: None,
            outputs: VecDeque::new(),
            since: now,
            last_error: None,
            notes: VecDeque::new(),
        }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    pub fn phase(&self) -> Phase {
        match self.state {
            State::Waiting { .. } => Phase::Waiting,
            State::MakingOffer | State::Posting(_) => Phase::Offering,
            State::Connecting(_) => Phase::Connecting,
            State::Live(_) => Phase::Live,
            State::Deleting { .. } => Phase::Stopping,
            State::Stopped => Phase::Stopped,
        }
    }

    /// When the current phase began.
    pub fn since(&self) -> Instant {
        self.since
    }

    pub fn last_error(&self) -> Option<&WhipError> {
        self.last_error.as_ref()
    }

    /// The publishing peer, while there is one.
    pub fn peer(&self) -> Option<ViewerId> {
        match &self.state {
            State::Posting(p) => Some(p.peer),
            State::Connecting(s) | State::Live(s) => Some(s.peer),
            _ => None,
        }
    }

    /// The session's resource URL, while there is one.
    pub fn resource(&self) -> Option<&Url> {
        match &self.state {
            State::Connecting(s) | State::Live(s) => Some(&s.url),
            _ => None,
        }
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Something worth a log line that is not an error of the session.
    pub fn poll_note(&mut self) -> Option<String> {
        self.notes.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Waiting { at } => Some(at),
            _ => None,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let State::Waiting { at } = self.state
            && now >= at
        {
            self.enter(now, State::MakingOffer);
            self.outputs.push_back(Output::CreatePeer);
        }
    }

    /// The peer's offer: POST it.
    pub fn offer(&mut self, now: Instant, peer: ViewerId, sdp: &str) {
        if self.state != State::MakingOffer {
            self.outputs.push_back(Output::EndPeer(peer));
            return;
        }
        let sdp = with_crlf(sdp);
        let (offer, trickle) = if self.endpoint.trickle {
            let (bare, frag) = split_candidates(&sdp);
            (bare, Some(frag))
        } else {
            (sdp, None)
        };
        let url = self.endpoint.url.clone();
        let req = self.post(url.clone(), offer.clone());
        let posted = Posted {
            req,
            peer,
            offer,
            trickle,
            url,
            redirected: false,
        };
        self.enter(now, State::Posting(posted));
    }

    /// No offer could be made (the media side refused): try again later.
    pub fn offer_failed(&mut self, now: Instant, why: String) {
        if self.state == State::MakingOffer {
            self.fail(now, WhipError::Offer(why), None);
        }
    }

    /// A request's outcome.
    pub fn response(&mut self, now: Instant, id: u64, outcome: Result<Response, Transport>) {
        if self.patch == Some(id) {
            self.patch = None;
            self.patched(outcome);
            return;
        }
        match self.state.clone() {
            State::Posting(posted) if posted.req == id => self.posted(now, posted, outcome),
            State::Deleting { req, then, peer } if req == id => {
                if let Some(peer) = peer {
                    self.outputs.push_back(Output::EndPeer(peer));
                }
                if let Ok(r) = &outcome
                    && !(200..300).contains(&r.status)
                {
                    self.notes
                        .push_back(format!("DELETE of the session answered {}", r.status));
                }
                match then {
                    Then::Stop => self.enter(now, State::Stopped),
                    Then::Retry => self.wait(now),
                }
            }
            _ => {} // a late answer to a request we gave up on
        }
    }

    /// The peer connected: media flows to the receiver.
    pub fn connected(&mut self, now: Instant, peer: ViewerId) {
        if let State::Connecting(s) = &self.state
            && s.peer == peer
        {
            let s = s.clone();
            self.backoff = FIRST_BACKOFF;
            self.last_error = None;
            self.enter(now, State::Live(s));
        }
    }

    /// The peer's session ended (ICE failure, DTLS close, timeout).
    pub fn peer_ended(&mut self, now: Instant, peer: ViewerId, why: String) {
        if self.peer() == Some(peer) {
            self.fail_session(now, WhipError::Media(why), false);
        }
    }

    /// The peer would not take the receiver's answer.
    pub fn answer_failed(&mut self, now: Instant, peer: ViewerId, why: String) {
        if self.peer() == Some(peer) {
            self.fail_session(now, WhipError::BadAnswer(why), true);
        }
    }

    /// Shutdown or a change of configuration: DELETE the session, then
    /// stop. Nothing is published again.
    pub fn stop(&mut self, now: Instant) {
        self.stopping = true;
        match self.state.clone() {
            State::Connecting(s) | State::Live(s) => self.delete(now, &s, Then::Stop, true),
            State::Posting(Posted { peer, .. }) => {
                // Its 201, if it comes, is deleted at once (`posted`).
                self.outputs.push_back(Output::EndPeer(peer));
            }
            State::Deleting { req, peer, .. } => {
                self.state = State::Deleting {
                    req,
                    then: Then::Stop,
                    peer,
                }
            }
            State::Waiting { .. } | State::MakingOffer => self.enter(now, State::Stopped),
            State::Stopped => {}
        }
    }

    pub fn is_stopped(&self) -> bool {
        self.state == State::Stopped
    }

    /// Whether the client waits on nothing but a request's outcome.
    pub fn awaits_response(&self) -> bool {
        matches!(self.state, State::Posting(_) | State::Deleting { .. })
    }

    fn posted(&mut self, now: Instant, p: Posted, outcome: Result<Response, Transport>) {
        let r = match outcome {
            Ok(r) => r,
            Err(e) => return self.fail(now, e.into(), Some(p.peer)),
        };
        match r.status {
            201 => self.created(now, p, r),
            307 | 308 => self.redirect(now, p, r),
            401 | 403 => self.fail(now, WhipError::Unauthorized(r.status), Some(p.peer)),
            404 => self.fail(now, WhipError::NotFound, Some(p.peer)),
            s @ 500..=599 => self.fail(now, WhipError::Server(s), Some(p.peer)),
            s => self.fail(now, WhipError::Status(s), Some(p.peer)),
        }
    }

    fn created(&mut self, now: Instant, p: Posted, r: Response) {
        let Some(location) = r.location.as_deref() else {
            return self.fail(now, WhipError::NoLocation, Some(p.peer));
        };
        let url = match p.url.join(location) {
            Ok(url) => url,
            Err(e) => return self.fail(now, WhipError::BadLocation(e.to_string()), Some(p.peer)),
        };
        let session = Session {
            peer: p.peer,
            url,
            etag: r.etag.clone(),
        };
        if self.stopping {
            return self.delete(now, &session, Then::Stop, false);
        }
        let content_type = r.content_type.as_deref().unwrap_or("");
        let media_type = content_type.split(';').next().unwrap_or("").trim();
        let error = if !media_type.eq_ignore_ascii_case("application/sdp") {
            Some(WhipError::NotSdp(content_type.chars().take(60).collect()))
        } else if video_refused(&r.body) {
            Some(WhipError::CodecRefused)
        } else {
            None
        };
        if let Some(error) = error {
            self.last_error = Some(error);
            self.outputs.push_back(Output::EndPeer(p.peer));
            return self.delete(now, &session, Then::Retry, false);
        }
        self.outputs.push_back(Output::Answer {
            peer: p.peer,
            sdp: r.body,
        });
        if let Some(frag) = p.trickle {
            let id = self.request_id();
            let mut headers = self.auth();
            headers.push(("Content-Type", "application/trickle-ice-sdpfrag".into()));
            if let Some(etag) = &session.etag {
                headers.push(("If-Match", etag.clone()));
            }
            self.patch = Some(id);
            self.outputs.push_back(Output::Http(Request {
                id,
                method: Method::Patch,
                url: session.url.clone(),
                headers,
                body: Some(frag),
            }));
        }
        self.enter(now, State::Connecting(session));
    }

    fn redirect(&mut self, now: Instant, p: Posted, r: Response) {
        if p.redirected {
            return self.fail(now, WhipError::TooManyRedirects, Some(p.peer));
        }
        let target = match r.location.as_deref().map(|l| p.url.join(l)) {
            Some(Ok(url)) => url,
            Some(Err(e)) => {
                return self.fail(now, WhipError::BadLocation(e.to_string()), Some(p.peer));
            }
            None => return self.fail(now, WhipError::NoLocation, Some(p.peer)),
        };
        self.notes
            .push_back(format!("redirected ({}) to {target}", r.status));
        let req = self.post(target.clone(), p.offer.clone());
        self.state = State::Posting(Posted {
            req,
            url: target,
            redirected: true,
            ..p
        });
    }

    fn patched(&mut self, outcome: Result<Response, Transport>) {
        let note = match outcome {
            Ok(r) if (200..300).contains(&r.status) => return,
            Ok(r) => format!(
                "the receiver did not take our trickled candidates ({}); it learns our address from our connectivity checks",
                r.status
            ),
            Err(e) => format!("PATCH with our candidates failed ({e}); carrying on"),
        };
        self.notes.push_back(note);
    }

    /// A session that had a resource ended: DELETE it, then publish again.
    fn fail_session(&mut self, now: Instant, error: WhipError, end_peer: bool) {
        let (State::Connecting(s) | State::Live(s)) = self.state.clone() else {
            return;
        };
        if end_peer {
            self.outputs.push_back(Output::EndPeer(s.peer));
        }
        self.last_error = Some(error);
        self.delete(now, &s, Then::Retry, false);
    }

    /// Publishing failed before there was a resource.
    fn fail(&mut self, now: Instant, error: WhipError, peer: Option<ViewerId>) {
        if let Some(peer) = peer {
            self.outputs.push_back(Output::EndPeer(peer));
        }
        self.last_error = Some(error);
        if self.stopping {
            self.enter(now, State::Stopped);
        } else {
            self.wait(now);
        }
    }

    fn wait(&mut self, now: Instant) {
        if self.stopping {
            return self.enter(now, State::Stopped);
        }
        let at = now + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        self.enter(now, State::Waiting { at });
    }

    /// DELETEs the session; `end_peer`: its peer is still up and ends when
    /// the DELETE is answered.
    fn delete(&mut self, now: Instant, s: &Session, then: Then, end_peer: bool) {
        let req = self.request_id();
        self.outputs.push_back(Output::Http(Request {
            id: req,
            method: Method::Delete,
            url: s.url.clone(),
            headers: self.auth(),
            body: None,
        }));
        let peer = end_peer.then_some(s.peer);
        self.enter(now, State::Deleting { req, then, peer });
    }

    fn post(&mut self, url: Url, offer: String) -> u64 {
        let id = self.request_id();
        let mut headers = self.auth();
        headers.push(("Content-Type", "application/sdp".into()));
        headers.push(("Accept", "application/sdp".into()));
        self.outputs.push_back(Output::Http(Request {
            id,
            method: Method::Post,
            url,
            headers,
            body: Some(offer),
        }));
        id
    }

    fn auth(&self) -> Vec<(&'static str, String)> {
        self.endpoint
            .token
            .iter()
            .map(|t| ("Authorization", format!("Bearer {t}")))
            .collect()
    }

    fn request_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn enter(&mut self, now: Instant, state: State) {
        let phase_before = self.phase();
        self.state = state;
        if self.phase() != phase_before {
            self.since = now;
        }
    }
}

/// A POST whose outcome is awaited.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Posted {
    req: u64,
    peer: ViewerId,
    offer: String,
    /// The candidates, when they go in a PATCH.
    trickle: Option<String>,
    url: Url,
    redirected: bool,
}
