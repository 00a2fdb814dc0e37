//! Signaling, sans-IO: what the browser says over `/ws` (and WHEP's trickle
//! fragments) becomes commands for the rtc task; what happens to the viewer
//! becomes messages back.
//!
//! The WebSocket handler only moves text and calls these methods, so every
//! ordering question (a candidate before the offer, a hang-up while the
//! answer is being made, a second offer) is answered and tested here.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::rtc::{EndReason, ViewerId};

/// The largest signaling message we read. A browser offer is 3-8 KiB.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Candidates held while the answer is being made.
const MAX_EARLY_CANDIDATES: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ClientMessage {
    Offer {
        sdp: String,
    },
    Candidate {
        /// Empty or absent: end of candidates.
        #[serde(default)]
        candidate: Option<String>,
        #[serde(default, rename = "sdpMid")]
        sdp_mid: Option<String>,
        #[serde(default, rename = "sdpMLineIndex")]
        sdp_mline_index: Option<u32>,
        #[serde(default, rename = "usernameFragment")]
        username_fragment: Option<String>,
    },
    Hangup,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerMessage {
    Answer { sdp: String },
    Hangup { reason: String },
    Error { message: String },
}

impl ServerMessage {
    pub fn to_json(&self) -> String {
        // Serializing these plain structs cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| r#"{"type":"error"}"#.into())
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SignalError {
    #[error("message too large ({0} bytes; the limit is {MAX_MESSAGE_BYTES})")]
    TooLarge(usize),
    #[error("malformed message: {0}")]
    Malformed(String),
}

/// Parses one text message from the browser.
pub fn parse(text: &str) -> Result<ClientMessage, SignalError> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(SignalError::TooLarge(text.len()));
    }
    serde_json::from_str(text).map_err(|e| SignalError::Malformed(e.to_string()))
}

/// What the IO shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Ask the rtc task for a viewer; report back with `viewer_created` or
    /// `viewer_refused`.
    CreateViewer(String),
    AddCandidate(ViewerId, String),
    EndViewer(ViewerId),
    Send(ServerMessage),
    /// Close the socket (after sending what came before).
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No call yet, or the last one ended: an offer starts one.
    Idle,
    /// The offer is with the rtc task.
    Negotiating,
    Live(ViewerId),
}

/// One signaling connection's state.
#[derive(Debug)]
pub struct Signaling {
    state: State,
    early_candidates: Vec<String>,
    hangup_pending: bool,
}

impl Default for Signaling {
    fn default() -> Self {
        Self::new()
    }
}

impl Signaling {
    pub fn new() -> Self {
        Signaling {
            state: State::Idle,
            early_candidates: Vec::new(),
            hangup_pending: false,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn on_text(&mut self, text: &str) -> Vec<Action> {
        match parse(text) {
            Ok(msg) => self.on_message(msg),
            Err(e @ SignalError::TooLarge(_)) => vec![error(e.to_string()), Action::Close],
            Err(e) => vec![error(e.to_string())],
        }
    }

    /// A binary frame: we speak JSON text only.
    pub fn on_binary(&mut self) -> Vec<Action> {
        vec![error(
            "binary messages are not understood; send JSON text".into(),
        )]
    }

    pub fn on_message(&mut self, msg: ClientMessage) -> Vec<Action> {
        match (msg, self.state) {
            (ClientMessage::Offer { sdp }, State::Idle) => {
                self.state = State::Negotiating;
                self.early_candidates.clear();
                self.hangup_pending = false;
                vec![Action::CreateViewer(sdp)]
            }
            (ClientMessage::Offer { .. }, _) => vec![error(
                "a call is already in progress on this connection; hang up first".into(),
            )],
            (ClientMessage::Candidate { candidate, .. }, State::Idle) => {
                if candidate.as_deref().unwrap_or("").is_empty() {
                    vec![]
                } else {
                    vec![error("ICE candidate before any offer".into())]
                }
            }
            (ClientMessage::Candidate { candidate, .. }, State::Negotiating) => {
                let c = candidate.unwrap_or_default();
                if !c.is_empty() && self.early_candidates.len() < MAX_EARLY_CANDIDATES {
                    self.early_candidates.push(c);
                }
                vec![]
            }
            (ClientMessage::Candidate { candidate, .. }, State::Live(id)) => {
                match candidate.filter(|c| !c.is_empty()) {
                    Some(c) => vec![Action::AddCandidate(id, c)],
                    None => vec![],
                }
            }
            (ClientMessage::Hangup, State::Live(id)) => {
                self.state = State::Idle;
                vec![Action::EndViewer(id)]
            }
            (ClientMessage::Hangup, State::Negotiating) => {
                self.hangup_pending = true;
                vec![]
            }
            (ClientMessage::Hangup, State::Idle) => vec![],
        }
    }

    pub fn viewer_created(&mut self, id: ViewerId, answer: String) -> Vec<Action> {
        if self.state != State::Negotiating || self.hangup_pending {
            // The browser hung up (or left) while we were answering.
            self.state = State::Idle;
            self.hangup_pending = false;
            return vec![Action::EndViewer(id)];
        }
        self.state = State::Live(id);
        let mut actions = vec![Action::Send(ServerMessage::Answer { sdp: answer })];
        actions.extend(
            self.early_candidates
                .drain(..)
                .map(|c| Action::AddCandidate(id, c)),
        );
        actions
    }

    pub fn viewer_refused(&mut self, why: String) -> Vec<Action> {
        self.state = State::Idle;
        self.early_candidates.clear();
        self.hangup_pending = false;
        vec![error(why)]
    }

    /// The rtc task ended the viewer (ICE lost, timeout, shutdown...).
    pub fn viewer_ended(&mut self, id: ViewerId, reason: &EndReason) -> Vec<Action> {
        if self.state != State::Live(id) {
            return vec![];
        }
        self.state = State::Idle;
        vec![Action::Send(ServerMessage::Hangup {
            reason: reason.to_string(),
        })]
    }

    /// The socket closed: whatever call it carried ends with it.
    pub fn on_closed(&mut self) -> Vec<Action> {
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Live(id) => vec![Action::EndViewer(id)],
            State::Negotiating => {
                self.hangup_pending = true;
                self.state = State::Negotiating;
                vec![]
            }
            State::Idle => vec![],
        }
    }
}

fn error(message: String) -> Action {
    Action::Send(ServerMessage::Error { message })
}

/// At most `per_second` messages in any one-second window (fixed windows:
/// simple, and a burst can be at most twice the rate).
#[derive(Debug)]
pub struct RateLimit {
    per_second: u32,
    window_start: Option<std::time::Instant>,
    count: u32,
}

impl RateLimit {
    pub fn new(per_second: u32) -> Self {
        RateLimit {
            per_second,
            window_start: None,
            count: 0,
        }
    }

    pub fn allow(&mut self, now: std::time::Instant) -> bool {
        let start = *self.window_start.get_or_insert(now);
        if now.saturating_duration_since(start) >= std::time::Duration::from_secs(1) {
            self.window_start = Some(now);
            self.count = 0;
        }
        self.count += 1;
        self.count <= self.per_second
    }
}

/// Candidates in a WHEP trickle body (`application/trickle-ice-sdpfrag`,
/// RFC 8840): every `a=candidate:` line, in order. An ICE restart (new
/// credentials without candidates) is not supported.
pub fn parse_sdpfrag(body: &str) -> Result<Vec<String>, SignalError> {
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(SignalError::TooLarge(body.len()));
    }
    let mut candidates = Vec::new();
    let mut saw_sdp_line = false;
    for line in body.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let Some((kind, value)) = line.split_once('=') else {
            return Err(SignalError::Malformed(format!(
                "'{}' is not an SDP line",
                line.chars().take(60).collect::<String>()
            )));
        };
        if kind.len() != 1 {
            return Err(SignalError::Malformed(format!(
                "bad SDP line type '{kind}'"
            )));
        }
        saw_sdp_line = true;
        if kind == "a" && value.starts_with("candidate:") {
            candidates.push(value.to_string());
        }
    }
    if !saw_sdp_line {
        return Err(SignalError::Malformed("empty SDP fragment".into()));
    }
    Ok(candidates)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: ViewerId = ViewerId(7);
    const CAND: &str = "candidate:1 1 udp 2122260223 192.168.1.5 50000 typ host";

    fn offer() -> String {
        r#"{"type":"offer","sdp":"v=0..."}"#.into()
    }

    fn cand(c: &str) -> String {
        format!(r#"{{"type":"candidate","candidate":"{c}","sdpMid":"0","sdpMLineIndex":0}}"#)
    }

    #[test]
    fn offer_answer_and_trickle() {
        let mut s = Signaling::new();
        assert_eq!(
            s.on_text(&offer()),
            vec![Action::CreateViewer("v=0...".into())]
        );
        assert_eq!(s.state(), State::Negotiating);
        // Candidates that overtake the answer are held, then delivered.
        assert_eq!(s.on_text(&cand(CAND)), vec![]);
        let acts = s.viewer_created(ID, "answer".into());
        assert_eq!(
            acts,
            vec![
                Action::Send(ServerMessage::Answer {
                    sdp: "answer".into()
                }),
                Action::AddCandidate(ID, CAND.into())
            ]
        );
        assert_eq!(
            s.on_text(&cand(CAND)),
            vec![Action::AddCandidate(ID, CAND.into())]
        );
        assert_eq!(s.on_text(&cand("")), vec![], "end of candidates");
        assert_eq!(
            s.on_text(r#"{"type":"hangup"}"#),
            vec![Action::EndViewer(ID)]
        );
        assert_eq!(s.state(), State::Idle);
    }

    #[test]
    fn a_second_offer_during_a_call_is_refused() {
        let mut s = Signaling::new();
        s.on_text(&offer());
        s.viewer_created(ID, "a".into());
        let acts = s.on_text(&offer());
        assert!(matches!(
            &acts[..],
            [Action::Send(ServerMessage::Error { .. })]
        ));
        assert_eq!(s.state(), State::Live(ID));
    }

    #[test]
    fn a_new_call_after_the_last_one_ended() {
        let mut s = Signaling::new();
        s.on_text(&offer());
        s.viewer_created(ID, "a".into());
        let acts = s.viewer_ended(ID, &EndReason::IceDisconnected);
        assert!(matches!(
            &acts[..],
            [Action::Send(ServerMessage::Hangup { .. })]
        ));
        assert_eq!(s.on_text(&offer()).len(), 1);
        assert_eq!(s.state(), State::Negotiating);
    }

    #[test]
    fn hangup_while_answering_ends_the_new_viewer() {
        let mut s = Signaling::new();
        s.on_text(&offer());
        assert_eq!(s.on_text(r#"{"type":"hangup"}"#), vec![]);
        assert_eq!(
            s.viewer_created(ID, "a".into()),
            vec![Action::EndViewer(ID)]
        );
        assert_eq!(s.state(), State::Idle);
    }

    #[test]
    fn socket_closing_mid_negotiation_ends_the_viewer_when_it_arrives() {
        let mut s = Signaling::new();
        s.on_text(&offer());
        assert_eq!(s.on_closed(), vec![]);
        assert_eq!(
            s.viewer_created(ID, "a".into()),
            vec![Action::EndViewer(ID)]
        );
        let mut live = Signaling::new();
        live.on_text(&offer());
        live.viewer_created(ID, "a".into());
        assert_eq!(live.on_closed(), vec![Action::EndViewer(ID)]);
    }

    #[test]
    fn refusal_is_reported_and_allows_a_retry() {
        let mut s = Signaling::new();
        s.on_text(&offer());
        let acts = s.viewer_refused("full".into());
        assert_eq!(
            acts,
            vec![Action::Send(ServerMessage::Error {
                message: "full".into()
            })]
        );
        assert_eq!(s.state(), State::Idle);
    }

    #[test]
    fn garbage_gets_an_error_and_the_connection_stays() {
        let mut s = Signaling::new();
        for text in [
            "",
            "{",
            "null",
            "[]",
            r#"{"type":"dance"}"#,
            r#"{"type":"offer"}"#,
            r#"{"type":"offer","sdp":5}"#,
        ] {
            let acts = s.on_text(text);
            assert!(
                matches!(&acts[..], [Action::Send(ServerMessage::Error { .. })]),
                "{text:?} -> {acts:?}"
            );
        }
        assert!(matches!(
            &s.on_text(&cand(CAND))[..],
            [Action::Send(ServerMessage::Error { .. })]
        ));
        assert_eq!(s.state(), State::Idle);
    }

    #[test]
    fn oversized_message_closes_the_connection() {
        let mut s = Signaling::new();
        let big = format!(
            r#"{{"type":"offer","sdp":"{}"}}"#,
            "x".repeat(MAX_MESSAGE_BYTES)
        );
        let acts = s.on_text(&big);
        assert_eq!(acts.last(), Some(&Action::Close));
    }

    #[test]
    fn early_candidates_are_bounded() {
        let mut s = Signaling::new();
        s.on_text(&offer());
        for _ in 0..1000 {
            s.on_text(&cand(CAND));
        }
        assert_eq!(
            s.viewer_created(ID, "a".into()).len(),
            1 + MAX_EARLY_CANDIDATES
        );
    }

    #[test]
    fn server_messages_are_the_documented_json() {
        let m = ServerMessage::Answer { sdp: "v=0".into() };
        assert_eq!(m.to_json(), r#"{"type":"answer","sdp":"v=0"}"#);
        let m = ServerMessage::Hangup {
            reason: "bye".into(),
        };
        assert_eq!(m.to_json(), r#"{"type":"hangup","reason":"bye"}"#);
    }

    #[test]
    fn rate_limit_windows() {
        let t0 = std::time::Instant::now();
        let mut r = RateLimit::new(3);
        assert!((0..3).all(|_| r.allow(t0)));
        assert!(!r.allow(t0));
        assert!(r.allow(t0 + std::time::Duration::from_millis(1000)));
    }

    #[test]
    fn sdpfrag_candidates() {
        let body = "a=ice-ufrag:abcd\r\na=ice-pwd:efgh\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\n\
                    a=candidate:1 1 udp 2122260223 192.168.1.5 50000 typ host\r\na=end-of-candidates\r\n";
        assert_eq!(
            parse_sdpfrag(body).unwrap(),
            vec!["candidate:1 1 udp 2122260223 192.168.1.5 50000 typ host".to_string()]
        );
        assert!(parse_sdpfrag("").is_err());
        assert!(parse_sdpfrag("hello world").is_err());
        assert!(parse_sdpfrag("ab=c").is_err());
    }
}
