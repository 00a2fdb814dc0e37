//! Talking back, sans-IO: one viewer at a time holds the talk floor and its
//! voice goes to the device's speaker; everyone is told who holds it.
//!
//! A viewer asks with `{"type":"talk","on":true}` when its user starts
//! talking and lets go with `{"type":"talk","on":false}`. A holder whose
//! audio has been silent for [`SILENCE_RELEASE`] (or who sends none, or
//! leaves) loses the floor, so a forgotten lock or a closed laptop never
//! keeps others from talking. A viewer without the `rtcam` channel (a
//! plain WHEP player allowed to talk) takes a free floor by speaking.

use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::messages::{Outgoing, Send};
use super::refusal::Refusal;
use super::{Control, default_name, to_json};

/// A holder whose audio was silent (or absent) this long lets go.
pub const SILENCE_RELEASE: Duration = Duration::from_secs(5);

/// Who holds the floor, and when it last heard them.
#[derive(Debug)]
pub struct TalkFloor<Id> {
    holder: Option<(Id, Instant)>,
}

impl<Id> Default for TalkFloor<Id> {
    fn default() -> Self {
        TalkFloor { holder: None }
    }
}

/// What an ask for the floor got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TalkTurn<Id> {
    /// It took a free floor.
    Taken,
    /// It held it already.
    Kept,
    /// Someone else holds it.
    HeldBy(Id),
}

impl<Id: Copy + PartialEq> TalkFloor<Id> {
    pub fn holder(&self) -> Option<Id> {
        self.holder.map(|(id, _)| id)
    }

    /// `id` wants to talk at `now`.
    pub fn ask(&mut self, now: Instant, id: Id) -> TalkTurn<Id> {
        self.tick(now);
        match self.holder {
            Some((h, _)) if h != id => TalkTurn::HeldBy(h),
            Some(_) => {
                self.holder = Some((id, now));
                TalkTurn::Kept
            }
            None => {
                self.holder = Some((id, now));
                TalkTurn::Taken
            }
        }
    }

    /// Audio from `id` at `now`; `voiced` when it is louder than silence.
    /// Only the holder's voice keeps the floor.
    pub fn heard(&mut self, now: Instant, id: Id, voiced: bool) {
        if let Some((h, at)) = &mut self.holder
            && *h == id
            && voiced
        {
            *at = now;
        }
    }

    /// Lets a silent holder go; whether the floor was freed.
    pub fn tick(&mut self, now: Instant) -> bool {
        match self.holder {
            Some((_, at)) if now.saturating_duration_since(at) >= SILENCE_RELEASE => {
                self.holder = None;
                true
            }
            _ => false,
        }
    }

    /// `id` let go or left; whether it held the floor.
    pub fn release(&mut self, id: Id) -> bool {
        if self.holder() == Some(id) {
            self.holder = None;
            return true;
        }
        false
    }

    /// When the holder's silence frees the floor.
    pub fn deadline(&self) -> Option<Instant> {
        self.holder.map(|(_, at)| at + SILENCE_RELEASE)
    }
}

/// One audio device as viewers are told about it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeviceView {
    pub state: DeviceState,
    /// The ALSA PCM (or "test"), when one is chosen.
    pub device: Option<String>,
    /// Why it is not open, when it is not.
    pub problem: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceState {
    /// Capturing or playing.
    Open,
    /// Chosen but not there (missing, vanished, busy): opened again when
    /// it returns.
    Absent,
    /// None chosen (`off`, or `auto` found none).
    #[default]
    Off,
}

/// The device's sound, as the protocol tells viewers about it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AudioView {
    pub microphone: DeviceView,
    pub speaker: DeviceView,
    /// The echo mode in force ("cancel", "half-duplex", "off").
    pub echo: &'static str,
}

impl<Id: Ord + Copy + fmt::Display> Control<Id> {
    /// The device's microphone and speaker now: told to every viewer when
    /// it changes.
    pub fn audio(&mut self, view: AudioView) {
        if view == self.audio {
            return;
        }
        self.audio = view;
        if self.audio.speaker.state != DeviceState::Open && self.talk.holder().is_some() {
            self.talk = TalkFloor::default();
            self.broadcast_talk();
        }
        let ids: Vec<Id> = self.members.keys().copied().collect();
        for to in ids {
            let text = self.audio_message(to);
            self.out.push_back(Send { to, text });
        }
    }

    /// Who holds the talk floor: only its audio goes to the speaker.
    pub fn talker(&self) -> Option<Id> {
        self.talk.holder()
    }

    /// Audio from viewer `id` at `now` (`voiced`: louder than silence, by
    /// its audio level). Whether it goes to the speaker: from the floor's
    /// holder, or from a viewer without a channel that may talk and finds
    /// the floor free.
    pub fn voice(&mut self, now: Instant, id: Id, voiced: bool, may_talk: bool) -> bool {
        if self.talk.tick(now) {
            self.broadcast_talk();
        }
        let silent_player = !self.members.contains_key(&id) && may_talk && voiced;
        if self.talk.holder().is_none() && silent_player && self.speaker_open() {
            self.talk.ask(now, id);
            self.broadcast_talk();
        }
        self.talk.heard(now, id, voiced);
        self.talk.holder() == Some(id)
    }

    /// When the holder's silence frees the floor (the caller's next tick).
    pub fn talk_deadline(&self) -> Option<Instant> {
        self.talk.deadline()
    }

    /// `{"type":"talk","on":..}` from `id`.
    pub(super) fn ask_talk(&mut self, now: Instant, id: Id, on: bool) -> Result<(), Refusal> {
        if !on {
            if self.talk.release(id) {
                self.broadcast_talk();
            }
            return Ok(());
        }
        if !self.members[&id].may_control {
            return Err(Refusal::NotAllowed);
        }
        if !self.speaker_open() {
            let why = self.audio.speaker.problem.clone();
            return Err(Refusal::TalkUnavailable(
                why.unwrap_or_else(|| "the device has no speaker".into()),
            ));
        }
        match self.talk.ask(now, id) {
            TalkTurn::Taken => self.broadcast_talk(),
            TalkTurn::Kept => {}
            TalkTurn::HeldBy(h) => {
                return Err(Refusal::TalkBusy {
                    holder: self.name_of(h),
                });
            }
        }
        Ok(())
    }

    /// Time passes: a silent talker lets go.
    pub(super) fn tick_talk(&mut self, now: Instant) {
        if self.talk.tick(now) {
            self.broadcast_talk();
        }
    }

    /// `id` left: the floor is free if it held it.
    pub(super) fn leave_talk(&mut self, id: Id) {
        if self.talk.release(id) {
            self.broadcast_talk();
        }
    }

    fn speaker_open(&self) -> bool {
        self.audio.speaker.state == DeviceState::Open
    }

    fn name_of(&self, id: Id) -> String {
        self.members
            .get(&id)
            .map_or_else(|| default_name(id), |m| m.name.clone())
    }

    pub(super) fn broadcast_talk(&mut self) {
        let ids: Vec<Id> = self.members.keys().copied().collect();
        for to in ids {
            let text = self.talk_message(to);
            self.out.push_back(Send { to, text });
        }
    }

    pub(super) fn talk_message(&self, to: Id) -> String {
        let holder = self.talk.holder();
        to_json(&Outgoing::Talk {
            holder: holder.map(|h| self.name_of(h)),
            you_hold: holder == Some(to),
        })
    }

    pub(super) fn audio_message(&self, to: Id) -> String {
        let may_talk = self.members.get(&to).is_some_and(|m| m.may_control);
        to_json(&Outgoing::Audio {
            view: &self.audio,
            may_talk: may_talk && self.speaker_open(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_talker_at_a_time_until_it_lets_go() {
        let t0 = Instant::now();
        let mut f = TalkFloor::default();
        assert_eq!(f.ask(t0, 1), TalkTurn::Taken);
        assert_eq!(f.ask(t0, 2), TalkTurn::HeldBy(1));
        assert_eq!(f.ask(t0, 1), TalkTurn::Kept);
        assert!(!f.release(2), "only the holder lets go");
        assert!(f.release(1));
        assert_eq!(f.ask(t0, 2), TalkTurn::Taken);
    }

    #[test]
    fn a_silent_holder_loses_the_floor_a_talking_one_keeps_it() {
        let t0 = Instant::now();
        let mut f = TalkFloor::default();
        f.ask(t0, 1);
        // Voice every second for 20 s: kept.
        for s in 1..=20 {
            let now = t0 + Duration::from_secs(s);
            f.heard(now, 1, true);
            f.heard(now, 2, true); // others' audio changes nothing
            assert!(!f.tick(now));
        }
        let last = t0 + Duration::from_secs(20);
        // Packets keep coming, but silent: released after SILENCE_RELEASE.
        f.heard(last + Duration::from_secs(1), 1, false);
        assert!(!f.tick(last + SILENCE_RELEASE - Duration::from_millis(1)));
        assert_eq!(f.deadline(), Some(last + SILENCE_RELEASE));
        assert!(f.tick(last + SILENCE_RELEASE));
        assert_eq!(f.holder(), None);
    }
}
