//! The data-channel protocol, sans-IO: what viewers say on their `rtcam`
//! channel in, what to send to whom out.
//!
//! Each message is a JSON object with a `type`. Today:
//! - `{"type":"hello","name":NAME}`: the display name for this viewer's chat
//!   lines (a WHEP viewer's is its token's name and cannot be changed).
//! - `{"type":"chat","text":TEXT}`: sent to every viewer, the sender
//!   included, as `{"type":"chat","from":NAME,"text":TEXT,"at":UNIX_MS}`.
//!   A viewer whose channel opens gets the last `HISTORY` lines first.
//!
//! A message that breaks a rule gets `{"type":"error","reason":R,"message":M}`
//! back on the same channel; the session goes on. No clocks in here: time
//! comes in with every message (str0m's shape), so the limits are tested on
//! simulated time.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Chat lines kept for viewers who join later.
pub const HISTORY: usize = 50;
/// The longest chat text, in characters.
pub const MAX_TEXT_CHARS: usize = 1_000;
/// The longest display name, in characters.
pub const MAX_NAME_CHARS: usize = 40;
/// The largest message on the `rtcam` channel, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;
/// Messages per second per viewer (a burst of as many is allowed).
pub const MESSAGES_PER_SECOND: u32 = 5;

/// Why a viewer's message was refused, told back to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Binary data on the text channel.
    NotText,
    TooLarge {
        bytes: usize,
    },
    NotJson(String),
    UnknownType(String),
    TextTooLong {
        chars: usize,
    },
    EmptyText,
    BadName,
    /// The name comes from the viewer's token.
    NameFixed,
    TooFast,
}

impl Refusal {
    /// A short machine-readable reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::NotText => "not_text",
            Refusal::TooLarge { .. } => "too_large",
            Refusal::NotJson(_) => "bad_json",
            Refusal::UnknownType(_) => "unknown_type",
            Refusal::TextTooLong { .. } => "text_too_long",
            Refusal::EmptyText => "empty_text",
            Refusal::BadName => "bad_name",
            Refusal::NameFixed => "name_fixed",
            Refusal::TooFast => "too_fast",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotText => f.write_str("this channel takes JSON text, not binary data"),
            Refusal::TooLarge { bytes } => {
                write!(f, "message of {bytes} bytes; at most {MAX_MESSAGE_BYTES}")
            }
            Refusal::NotJson(why) => write!(f, "not a JSON object with a \"type\": {why}"),
            Refusal::UnknownType(t) => write!(f, "unknown message type \"{t}\""),
            Refusal::TextTooLong { chars } => {
                write!(
                    f,
                    "chat text of {chars} characters; at most {MAX_TEXT_CHARS}"
                )
            }
            Refusal::EmptyText => f.write_str("empty chat text"),
            Refusal::BadName => write!(
                f,
                "a name is 1 to {MAX_NAME_CHARS} characters, without control characters"
            ),
            Refusal::NameFixed => f.write_str("this viewer's name comes from its token"),
            Refusal::TooFast => write!(
                f,
                "too many messages: at most {MESSAGES_PER_SECOND} a second"
            ),
        }
    }
}

/// What viewers send.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Incoming {
    Hello { name: String },
    Chat { text: String },
}

/// What viewers are sent.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Outgoing<'a> {
    Chat(&'a ChatLine),
    Telemetry(&'a Telemetry),
    Error {
        reason: &'static str,
        message: String,
    },
}

/// How the stream and one viewer's link are doing, pushed to it once a
/// second as `{"type":"telemetry",...}`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Telemetry {
    /// Viewers watching the device.
    pub viewers: usize,
    /// Its codec ("H.264", "VP8") and the encoder's target, kbit/s.
    pub codec: String,
    pub bitrate_kbps: Option<u32>,
    /// Frames sent to it in the last second.
    pub fps: f64,
    /// Its link, from str0m's stats.
    pub rtt_ms: Option<f64>,
    /// Lost after repairs, and on the wire before them (fractions).
    pub loss: Option<f32>,
    pub wire_loss: Option<f32>,
    pub nacks: u64,
    pub bwe_kbps: Option<u64>,
    /// How many times each datagram goes out (a lossy link gets 2 or 3).
    pub copies: u8,
    /// Below the bitrate floor: it gets only referenced frames.
    pub thinned: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ChatLine {
    pub from: String,
    pub text: String,
    /// Wall-clock time it was said, Unix milliseconds.
    pub at: u64,
}

/// A message for one viewer's `rtcam` channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Send<Id> {
    pub to: Id,
    pub text: String,
}

#[derive(Debug)]
struct Member {
    name: String,
    /// The name came from a token (WHEP): `hello` cannot change it.
    fixed: bool,
    /// Token bucket: messages it may still send now, refilled with time.
    tokens: f64,
    refilled: Instant,
    /// Told it is too fast since its last accepted message: a flood gets
    /// one error, not one per message.
    told_too_fast: bool,
}

/// The protocol's state: who is on the channel, the chat history, and
/// what is to be sent. `Id` names a viewer (the rtc task's `ViewerId`).
#[derive(Debug)]
pub struct Control<Id> {
    members: BTreeMap<Id, Member>,
    history: VecDeque<ChatLine>,
    out: VecDeque<Send<Id>>,
}

impl<Id: Ord + Copy + fmt::Display> Default for Control<Id> {
    fn default() -> Self {
        Control {
            members: BTreeMap::new(),
            history: VecDeque::new(),
            out: VecDeque::new(),
        }
    }
}

impl<Id: Ord + Copy + fmt::Display> Control<Id> {
    pub fn new() -> Self {
        Self::default()
    }

    /// A viewer's `rtcam` channel opened. `token_name`: the name of the
    /// token it was admitted with (WHEP), which is then its fixed name.
    /// It is sent the chat history.
    pub fn join(&mut self, now: Instant, id: Id, token_name: Option<&str>) {
        let (name, fixed) = match token_name {
            Some(n) => (clean_name(n).unwrap_or_else(|| default_name(id)), true),
            None => (default_name(id), false),
        };
        self.members.insert(
            id,
            Member {
                name,
                fixed,
                tokens: MESSAGES_PER_SECOND as f64,
                refilled: now,
                told_too_fast: false,
            },
        );
        let lines: Vec<String> = self
            .history
            .iter()
            .map(|line| to_json(&Outgoing::Chat(line)))
            .collect();
        for text in lines {
            self.out.push_back(Send { to: id, text });
        }
    }

    /// The viewer left (or its channel closed).
    pub fn leave(&mut self, id: Id) {
        self.members.remove(&id);
    }

    pub fn members(&self) -> usize {
        self.members.len()
    }

    /// A message on a viewer's `rtcam` channel, at `now` (`wall_ms` for the
    /// chat line's time).
    pub fn handle(&mut self, now: Instant, wall_ms: u64, id: Id, data: &[u8], binary: bool) {
        if let Err(refusal) = self.try_handle(now, wall_ms, id, data, binary) {
            if refusal == Refusal::TooFast {
                match self.members.get_mut(&id) {
                    Some(m) if !m.told_too_fast => m.told_too_fast = true,
                    _ => return,
                }
            }
            let text = to_json(&Outgoing::Error {
                reason: refusal.reason(),
                message: refusal.to_string(),
            });
            self.out.push_back(Send { to: id, text });
        }
    }

    /// Telemetry for a viewer whose channel is open.
    pub fn telemetry(&mut self, to: Id, t: &Telemetry) {
        if self.members.contains_key(&to) {
            let text = to_json(&Outgoing::Telemetry(t));
            self.out.push_back(Send { to, text });
        }
    }

    /// The next message to send.
    pub fn poll_output(&mut self) -> Option<Send<Id>> {
        self.out.pop_front()
    }

    fn try_handle(
        &mut self,
        now: Instant,
        wall_ms: u64,
        id: Id,
        data: &[u8],
        binary: bool,
    ) -> Result<(), Refusal> {
        let Some(member) = self.members.get_mut(&id) else {
            return Ok(()); // its channel is not open (a race with leaving)
        };
        take_token(member, now)?;
        member.told_too_fast = false;
        if binary {
            return Err(Refusal::NotText);
        }
        if data.len() > MAX_MESSAGE_BYTES {
            return Err(Refusal::TooLarge { bytes: data.len() });
        }
        let message: Incoming = serde_json::from_slice(data).map_err(|e| {
            let why = e.to_string();
            match type_of(data) {
                Some(t) if why.starts_with("unknown variant") => Refusal::UnknownType(t),
                _ => Refusal::NotJson(why.chars().take(120).collect()),
            }
        })?;
        match message {
            Incoming::Hello { name } => {
                if member.fixed {
                    return Err(Refusal::NameFixed);
                }
                member.name = clean_name(&name).ok_or(Refusal::BadName)?;
                Ok(())
            }
            Incoming::Chat { text } => {
                let chars = text.chars().count();
                if chars > MAX_TEXT_CHARS {
                    return Err(Refusal::TextTooLong { chars });
                }
                if text.trim().is_empty() {
                    return Err(Refusal::EmptyText);
                }
                let line = ChatLine {
                    from: member.name.clone(),
                    text,
                    at: wall_ms,
                };
                self.broadcast(&line);
                self.history.push_back(line);
                if self.history.len() > HISTORY {
                    self.history.pop_front();
                }
                Ok(())
            }
        }
    }

    fn broadcast(&mut self, line: &ChatLine) {
        let text = to_json(&Outgoing::Chat(line));
        for &to in self.members.keys() {
            self.out.push_back(Send {
                to,
                text: text.clone(),
            });
        }
    }
}

fn take_token(member: &mut Member, now: Instant) -> Result<(), Refusal> {
    let rate = MESSAGES_PER_SECOND as f64;
    let elapsed = now.saturating_duration_since(member.refilled);
    member.tokens = (member.tokens + elapsed.as_secs_f64() * rate).min(rate);
    member.refilled = now;
    if member.tokens < 1.0 {
        return Err(Refusal::TooFast);
    }
    member.tokens -= 1.0;
    Ok(())
}

/// The `type` of a JSON object that did not parse as a known message.
fn type_of(data: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(data).ok()?;
    let t = v.get("type")?.as_str()?;
    Some(t.chars().take(32).collect())
}

fn clean_name(name: &str) -> Option<String> {
    let name = name.trim();
    let chars = name.chars().count();
    let ok = (1..=MAX_NAME_CHARS).contains(&chars) && !name.chars().any(char::is_control);
    ok.then(|| name.to_string())
}

fn default_name(id: impl fmt::Display) -> String {
    let short: String = id.to_string().chars().take(4).collect();
    format!("viewer {short}")
}

fn to_json(message: &Outgoing<'_>) -> String {
    serde_json::to_string(message).unwrap_or_else(|_| "{}".into())
}

/// Time for the bucket to give one message back (for tests and docs).
pub const fn one_message() -> Duration {
    Duration::from_millis(1000 / MESSAGES_PER_SECOND as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Id = u32;

    fn sent(c: &mut Control<Id>) -> Vec<Send<Id>> {
        std::iter::from_fn(|| c.poll_output()).collect()
    }

    fn json(s: &Send<Id>) -> serde_json::Value {
        serde_json::from_str(&s.text).unwrap()
    }

    const A: Id = 0xaaaa;
    const B: Id = 0xbbbb;

    #[test]
    fn chat_goes_to_everyone_with_the_senders_name_and_time() {
        let t0 = Instant::now();
        let mut c = Control::new();
        c.join(t0, A, None);
        c.join(t0, B, Some("kitchen-tablet"));
        c.handle(t0, 1_000, A, br#"{"type":"hello","name":"Ann"}"#, false);
        c.handle(
            t0,
            2_000,
            A,
            br#"{"type":"chat","text":"<b>hi</b>"}"#,
            false,
        );
        let out = sent(&mut c);
        assert_eq!(out.len(), 2);
        let to: Vec<Id> = out.iter().map(|s| s.to).collect();
        assert_eq!(to, vec![A, B]);
        let m = json(&out[1]);
        assert_eq!(m["type"], "chat");
        assert_eq!(m["from"], "Ann");
        assert_eq!(m["text"], "<b>hi</b>", "text stays text");
        assert_eq!(m["at"], 2_000);
        c.handle(t0, 3_000, B, br#"{"type":"chat","text":"hello"}"#, false);
        assert_eq!(json(&sent(&mut c)[0])["from"], "kitchen-tablet");
    }

    #[test]
    fn a_late_viewer_gets_the_last_fifty_lines() {
        let t0 = Instant::now();
        let mut c = Control::new();
        c.join(t0, A, None);
        for i in 0..60u64 {
            let t = t0 + one_message() * i as u32;
            let msg = format!(r#"{{"type":"chat","text":"line {i}"}}"#);
            c.handle(t, i, A, msg.as_bytes(), false);
        }
        sent(&mut c);
        c.join(t0, B, None);
        let out = sent(&mut c);
        assert_eq!(out.len(), HISTORY);
        assert!(out.iter().all(|s| s.to == B));
        assert_eq!(json(&out[0])["text"], "line 10");
        assert_eq!(json(&out[49])["text"], "line 59");
    }

    #[test]
    fn broken_rules_are_answered_with_an_error_and_nothing_else() {
        let t0 = Instant::now();
        let mut c = Control::new();
        c.join(t0, A, None);
        c.join(t0, B, Some("cam-token"));
        let long = format!(r#"{{"type":"chat","text":"{}"}}"#, "x".repeat(1001));
        let cases: Vec<(Id, Vec<u8>, bool, &str)> = vec![
            (A, b"\x00\x01".to_vec(), true, "not_text"),
            (A, b"not json".to_vec(), false, "bad_json"),
            (A, br#"{"type":"dance"}"#.to_vec(), false, "unknown_type"),
            (A, long.into_bytes(), false, "text_too_long"),
            (
                B,
                br#"{"type":"chat","text":"  "}"#.to_vec(),
                false,
                "empty_text",
            ),
            (
                B,
                br#"{"type":"hello","name":"x"}"#.to_vec(),
                false,
                "name_fixed",
            ),
            (
                A,
                br#"{"type":"hello","name":""}"#.to_vec(),
                false,
                "bad_name",
            ),
            (A, vec![b' '; MAX_MESSAGE_BYTES + 1], false, "too_large"),
        ];
        for (i, (who, data, binary, reason)) in cases.into_iter().enumerate() {
            let t = t0 + Duration::from_secs(i as u64);
            c.handle(t, 0, who, &data, binary);
            let out = sent(&mut c);
            assert_eq!(out.len(), 1, "{reason}: {out:?}");
            assert_eq!(out[0].to, who);
            let m = json(&out[0]);
            assert_eq!(m["type"], "error");
            assert_eq!(m["reason"], reason, "{m}");
            assert!(m["message"].as_str().is_some_and(|s| !s.is_empty()));
        }
    }

    #[test]
    fn five_messages_a_second_then_too_fast_then_again() {
        let t0 = Instant::now();
        let mut c = Control::new();
        c.join(t0, A, None);
        for _ in 0..5 {
            c.handle(t0, 0, A, br#"{"type":"chat","text":"spam"}"#, false);
        }
        c.handle(t0, 0, A, br#"{"type":"chat","text":"spam"}"#, false);
        for _ in 0..100 {
            c.handle(t0, 0, A, br#"{"type":"chat","text":"flood"}"#, false);
        }
        let out = sent(&mut c);
        assert_eq!(out.len(), 6, "five lines and one error for the flood");
        assert_eq!(json(&out[5])["reason"], "too_fast");
        c.handle(
            t0 + one_message(),
            0,
            A,
            br#"{"type":"chat","text":"ok"}"#,
            false,
        );
        assert_eq!(json(&sent(&mut c)[0])["type"], "chat");
    }

    #[test]
    fn a_viewer_who_left_gets_nothing() {
        let t0 = Instant::now();
        let mut c = Control::new();
        c.join(t0, A, None);
        c.join(t0, B, None);
        c.leave(B);
        c.handle(t0, 0, A, br#"{"type":"chat","text":"still here?"}"#, false);
        c.handle(t0, 0, B, br#"{"type":"chat","text":"gone"}"#, false);
        let out = sent(&mut c);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].to, A);
        assert_eq!(c.members(), 1);
    }
}
