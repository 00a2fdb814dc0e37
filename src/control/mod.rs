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
//! - `{"type":"set","control":ID,"value":N}`: changes one of the camera's
//!   controls, checked against its range and the viewer's right to (a WHEP
//!   token made without `--control` may only watch). The capture applies it;
//!   every viewer then gets the fresh `{"type":"controls",...}` list, as it
//!   does when its channel opens, with `{"type":"camera",...}` (live, lost).
//!
//! A message that breaks a rule gets `{"type":"error","reason":R,"message":M}`
//! back on the same channel; the session goes on. No clocks in here: time
//! comes in with every message (str0m's shape), so the limits are tested on
//! simulated time.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

pub mod images;
mod messages;
mod refusal;
mod serial;
pub mod talk;
pub mod uploads;

use crate::capture::controls::{self, ControlError};
use crate::serial::SerialView;
use crate::serial::floor::Floor;
use images::{Image, Kept};
pub use messages::{AudioTelemetry, CameraView, ChatLine, Request, Send, Telemetry};
use messages::{Incoming, Outgoing};
pub use refusal::Refusal;

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
    /// It may change the camera's settings.
    may_control: bool,
    /// Told its serial bytes were refused, since its last accepted write.
    told_serial: bool,
    /// Its serial writes the port's full queue dropped since its last
    /// queued one: it is told at the first, not at each.
    serial_dropped: u64,
}

/// The protocol's state: who is on the channel, the chat history, and
/// what is to be sent. `Id` names a viewer (the rtc task's `ViewerId`).
#[derive(Debug)]
pub struct Control<Id> {
    members: BTreeMap<Id, Member>,
    history: VecDeque<ChatLine>,
    out: VecDeque<Send<Id>>,
    camera: CameraView,
    requests: VecDeque<Request<Id>>,
    serial: SerialView,
    floor: Floor<Id>,
    /// Pictures shared in the chat, for viewers to fetch, and the uploads
    /// under way.
    kept: Kept,
    uploads: uploads::Uploads<Id>,
    /// Who talks to the device's speaker, and its sound devices.
    talk: talk::TalkFloor<Id>,
    audio: talk::AudioView,
}

impl<Id: Ord + Copy + fmt::Display> Default for Control<Id> {
    fn default() -> Self {
        Control {
            members: BTreeMap::new(),
            history: VecDeque::new(),
            out: VecDeque::new(),
            camera: CameraView::default(),
            requests: VecDeque::new(),
            serial: SerialView::default(),
            floor: Floor::default(),
            kept: Kept::default(),
            uploads: uploads::Uploads::default(),
            talk: talk::TalkFloor::default(),
            audio: talk::AudioView::default(),
        }
    }
}

impl<Id: Ord + Copy + fmt::Display> Control<Id> {
    pub fn new() -> Self {
        Self::default()
    }

    /// A viewer's `rtcam` channel opened. `token_name`: the name of the
    /// token it was admitted with (WHEP), which is then its fixed name;
    /// `may_control`: whether it may change the camera's settings. It is
    /// sent the camera's state and controls, then the chat history.
    pub fn join(&mut self, now: Instant, id: Id, token_name: Option<&str>, may_control: bool) {
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
                may_control,
                told_serial: false,
                serial_dropped: 0,
            },
        );
        let mut texts = vec![
            self.camera_message(),
            self.controls_message(may_control),
            self.serial_message(id),
        ];
        // A device with no sound says nothing of it; one with sound says
        // what it has and who talks.
        if self.audio != talk::AudioView::default() {
            texts.push(self.audio_message(id));
        }
        if self.talker().is_some() {
            texts.push(self.talk_message(id));
        }
        for text in texts {
            self.out.push_back(Send { to: id, text });
        }
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
        self.uploads.leave(id);
        if self.floor.leave(id) {
            self.broadcast_serial();
        }
        self.leave_talk(id);
    }

    /// Time passes: an idle holder of the serial port lets go, and a
    /// picture that fell behind its pace is cancelled.
    pub fn tick(&mut self, now: Instant) {
        if self.floor.tick(now) {
            self.broadcast_serial();
        }
        self.tick_talk(now);
        self.tick_uploads(now);
    }

    /// A picture shared in the chat (`/api/chat/images/N`).
    pub fn image(&self, n: u64) -> Option<Image> {
        self.kept.get(n)
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
            self.refuse(id, &refusal);
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

    /// The next thing to do outside the protocol.
    pub fn poll_request(&mut self) -> Option<Request<Id>> {
        self.requests.pop_front()
    }

    /// The camera now: what changed is told to every viewer.
    pub fn camera(&mut self, view: CameraView) {
        let state_changed = (&view.state, &view.name, &view.problem)
            != (&self.camera.state, &self.camera.name, &self.camera.problem);
        let controls_changed = view.controls != self.camera.controls;
        self.camera = view;
        let ids: Vec<(Id, bool)> = self
            .members
            .iter()
            .map(|(i, m)| (*i, m.may_control))
            .collect();
        if state_changed {
            let text = self.camera_message();
            for (to, _) in &ids {
                self.out.push_back(Send {
                    to: *to,
                    text: text.clone(),
                });
            }
        }
        if controls_changed {
            for (to, may) in ids {
                let text = self.controls_message(may);
                self.out.push_back(Send { to, text });
            }
        }
    }

    /// Motion started or ended: every viewer is told.
    pub fn motion(&mut self, notice: &crate::record::MotionNotice) {
        let text = to_json(&Outgoing::Motion(notice));
        for to in self.members.keys() {
            self.out.push_back(Send {
                to: *to,
                text: text.clone(),
            });
        }
    }

    /// The camera refused what `to` asked for.
    pub fn refused(&mut self, to: Id, error: ControlError) {
        if self.members.contains_key(&to) {
            self.refuse(to, &Refusal::Control(error));
        }
    }

    fn refuse(&mut self, to: Id, refusal: &Refusal) {
        let text = to_json(&Outgoing::Error {
            reason: refusal.reason(),
            message: refusal.to_string(),
        });
        self.out.push_back(Send { to, text });
    }

    fn camera_message(&self) -> String {
        to_json(&Outgoing::Camera {
            state: self.camera.state,
            name: &self.camera.name,
            problem: self.camera.problem.as_deref(),
        })
    }

    fn controls_message(&self, may_set: bool) -> String {
        to_json(&Outgoing::Controls {
            may_set,
            controls: &self.camera.controls,
        })
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
        let parsed = (!binary && data.len() <= MAX_MESSAGE_BYTES)
            .then(|| serde_json::from_slice::<Incoming>(data));
        if let Some(Ok(Incoming::ImageChunk { id: upload, data })) = parsed {
            // A picture's chunks come faster than chat lines: they are
            // bounded by the picture's announced size instead.
            return self.image_chunk(now, wall_ms, id, upload, &data);
        }
        take_token(member, now)?;
        member.told_too_fast = false;
        if binary {
            return Err(Refusal::NotText);
        }
        let Some(parsed) = parsed else {
            return Err(Refusal::TooLarge { bytes: data.len() });
        };
        let message: Incoming = parsed.map_err(|e| {
            let why = e.to_string();
            match type_of(data) {
                Some(t) if why.starts_with("unknown variant") => Refusal::UnknownType(t),
                _ => Refusal::NotJson(why.chars().take(120).collect()),
            }
        })?;
        match message {
            Incoming::Hello { name } => self.hello(id, &name),
            Incoming::Chat { text } => self.chat(id, wall_ms, text),
            Incoming::Image {
                id: upload,
                name,
                size,
            } => self.begin_image(now, id, upload, &name, size),
            Incoming::ImageChunk { .. } => Ok(()), // handled above
            Incoming::Set { control, value } => self.set(id, control, value),
            Incoming::Talk { on } => self.ask_talk(now, id, on),
        }
    }

    fn hello(&mut self, id: Id, name: &str) -> Result<(), Refusal> {
        let member = self.members.get_mut(&id).expect("a member");
        if member.fixed {
            return Err(Refusal::NameFixed);
        }
        member.name = clean_name(name).ok_or(Refusal::BadName)?;
        Ok(())
    }

    fn chat(&mut self, id: Id, wall_ms: u64, text: String) -> Result<(), Refusal> {
        let chars = text.chars().count();
        if chars > MAX_TEXT_CHARS {
            return Err(Refusal::TextTooLong { chars });
        }
        if text.trim().is_empty() {
            return Err(Refusal::EmptyText);
        }
        let line = ChatLine {
            from: self.members[&id].name.clone(),
            text,
            at: wall_ms,
            image: None,
        };
        self.say(line);
        Ok(())
    }

    /// A camera setting, checked against the viewer's right and the
    /// control's range, is asked of the camera.
    fn set(&mut self, id: Id, control: String, value: i64) -> Result<(), Refusal> {
        if !self.members[&id].may_control {
            return Err(Refusal::NotAllowed);
        }
        let value =
            controls::check(&self.camera.controls, &control, value).map_err(Refusal::Control)?;
        self.requests.push_back(Request::SetControl {
            from: id,
            id: control,
            value,
        });
        Ok(())
    }

    /// A line to everyone, kept for latecomers.
    fn say(&mut self, line: ChatLine) {
        self.broadcast(&line);
        self.history.push_back(line);
        if self.history.len() > HISTORY {
            self.history.pop_front();
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
    use crate::capture::supervise::CameraState;

    type Id = u32;

    /// What was sent, but the camera's state and controls (every join
    /// gets those first; the controls tests look at them).
    fn sent(c: &mut Control<Id>) -> Vec<Send<Id>> {
        all_sent(c)
            .into_iter()
            .filter(|s| !s.text.contains(r#""type":"camera""#))
            .filter(|s| !s.text.contains(r#""type":"controls""#))
            .filter(|s| !s.text.contains(r#""type":"serial""#))
            .collect()
    }

    fn all_sent(c: &mut Control<Id>) -> Vec<Send<Id>> {
        std::iter::from_fn(|| c.poll_output()).collect()
    }

    fn vivid() -> CameraView {
        CameraView {
            state: CameraState::Live,
            name: "V4L2 /dev/video0 (vivid)".into(),
            problem: None,
            controls: crate::capture::controls::SceneLook::default().controls(),
        }
    }

    #[test]
    fn a_joining_viewer_learns_the_camera_and_its_controls() {
        let t0 = Instant::now();
        let mut c = Control::new();
        c.camera(vivid());
        c.join(t0, A, None, true);
        c.join(t0, B, Some("watcher"), false);
        let out: Vec<_> = all_sent(&mut c)
            .into_iter()
            .filter(|s| !s.text.contains(r#""type":"serial""#))
            .collect();
        assert_eq!(out.len(), 4);
        let m = json(&out[0]);
        assert_eq!(
            (m["type"].as_str(), m["state"].as_str()),
            (Some("camera"), Some("live"))
        );
        let m = json(&out[1]);
        assert_eq!(m["type"], "controls");
        assert_eq!(m["may_set"], true);
        assert_eq!(m["controls"][0]["id"], "brightness");
        assert_eq!(m["controls"][0]["kind"], "integer");
        assert_eq!(m["controls"][0]["max"], 255);
        assert_eq!(json(&out[3])["may_set"], false, "a watch-only token");
    }

    #[test]
    fn a_set_is_checked_then_asked_and_its_result_goes_to_everyone() {
        let t0 = Instant::now();
        let mut c = Control::new();
        c.camera(vivid());
        c.join(t0, A, None, true);
        c.join(t0, B, Some("watcher"), false);
        all_sent(&mut c);
        let set = br#"{"type":"set","control":"brightness","value":200}"#;
        c.handle(t0, 0, A, set, false);
        assert_eq!(
            c.poll_request(),
            Some(Request::SetControl {
                from: A,
                id: "brightness".into(),
                value: 200
            })
        );
        assert!(
            all_sent(&mut c).is_empty(),
            "nothing until the camera applies it"
        );
        let mut applied = vivid();
        applied.controls[0].value = 200;
        c.camera(applied.clone());
        let out = all_sent(&mut c);
        assert_eq!(out.len(), 2, "the controls, to both: {out:?}");
        assert!(out.iter().all(|s| json(s)["controls"][0]["value"] == 200));
        c.camera(applied);
        assert!(all_sent(&mut c).is_empty(), "no change, nothing sent");
        let t = t0 + Duration::from_secs(1);
        let cases: [(Id, &[u8], &str); 4] = [
            (B, set, "not_allowed"),
            (
                A,
                br#"{"type":"set","control":"zoom","value":1}"#,
                "unknown_control",
            ),
            (
                A,
                br#"{"type":"set","control":"brightness","value":999}"#,
                "out_of_range",
            ),
            (
                A,
                br#"{"type":"set","control":"brightness","value":"x"}"#,
                "bad_json",
            ),
        ];
        for (who, msg, reason) in cases {
            c.handle(t, 0, who, msg, false);
            let out = all_sent(&mut c);
            assert_eq!(out.len(), 1, "{reason}");
            assert_eq!(
                (out[0].to, json(&out[0])["reason"].as_str()),
                (who, Some(reason))
            );
        }
        assert_eq!(c.poll_request(), None);
        let why = ControlError::Failed {
            id: "brightness".into(),
            why: "busy".into(),
        };
        c.refused(A, why);
        assert_eq!(json(&all_sent(&mut c)[0])["reason"], "control_failed");
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
        c.join(t0, A, None, true);
        c.join(t0, B, Some("kitchen-tablet"), false);
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
        c.join(t0, A, None, true);
        for i in 0..60u64 {
            let t = t0 + one_message() * i as u32;
            let msg = format!(r#"{{"type":"chat","text":"line {i}"}}"#);
            c.handle(t, i, A, msg.as_bytes(), false);
        }
        sent(&mut c);
        c.join(t0, B, None, true);
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
        c.join(t0, A, None, true);
        c.join(t0, B, Some("cam-token"), false);
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
        c.join(t0, A, None, true);
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
    fn a_picture_comes_in_chunks_past_the_chat_limit_and_everyone_gets_its_url() {
        use base64::Engine;
        let t0 = Instant::now();
        let mut c = Control::new();
        c.join(t0, A, None, true);
        c.join(t0, B, None, true);
        c.handle(t0, 0, A, br#"{"type":"hello","name":"Ann"}"#, false);
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.resize(100_000, 1);
        let start = format!(
            r#"{{"type":"image","id":7,"name":"door.png","size":{}}}"#,
            png.len()
        );
        c.handle(t0, 0, A, start.as_bytes(), false);
        let again = r#"{"type":"image","id":8,"name":"x.png","size":10}"#;
        c.handle(t0, 0, A, again.as_bytes(), false);
        let out = sent(&mut c);
        assert_eq!(json(&out[0])["reason"], "upload_busy", "one at a time");
        for part in png.chunks(images::MAX_CHUNK_BYTES) {
            let b64 = base64::engine::general_purpose::STANDARD.encode(part);
            let msg = format!(r#"{{"type":"image_chunk","id":7,"data":"{b64}"}}"#);
            c.handle(t0, 5, A, msg.as_bytes(), false);
        }
        let out = sent(&mut c);
        assert_eq!(out.len(), 2, "one line to each, no too_fast: {out:?}");
        let line = json(&out[1]);
        assert_eq!(
            (line["from"].as_str(), line["text"].as_str()),
            (Some("Ann"), Some("door.png"))
        );
        assert_eq!(line["image"]["url"], "/api/chat/images/1");
        assert_eq!(line["image"]["mime"], "image/png");
        assert_eq!(c.image(1).unwrap().bytes.len(), 100_000);
        // Chunks for no picture are let go without an answer.
        c.handle(
            t0,
            0,
            B,
            br#"{"type":"image_chunk","id":1,"data":"AAAA"}"#,
            false,
        );
        assert!(sent(&mut c).is_empty());
        // A picture that is not one is refused when whole.
        c.handle(
            t0 + Duration::from_secs(1),
            0,
            B,
            br#"{"type":"image","id":1,"name":"a","size":3}"#,
            false,
        );
        c.handle(
            t0,
            0,
            B,
            br#"{"type":"image_chunk","id":1,"data":"PHM+"}"#,
            false,
        );
        assert_eq!(json(&sent(&mut c)[0])["reason"], "not_an_image");
    }

    #[test]
    fn a_viewer_who_left_gets_nothing() {
        let t0 = Instant::now();
        let mut c = Control::new();
        c.join(t0, A, None, true);
        c.join(t0, B, None, true);
        c.leave(B);
        c.handle(t0, 0, A, br#"{"type":"chat","text":"still here?"}"#, false);
        c.handle(t0, 0, B, br#"{"type":"chat","text":"gone"}"#, false);
        let out = sent(&mut c);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].to, A);
        assert_eq!(c.members(), 1);
    }
}
