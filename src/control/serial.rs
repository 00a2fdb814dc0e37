//! The serial bridge as the protocol sees it: who holds the port (the
//! floor), who is told what.

use std::fmt;
use std::time::Instant;

use super::messages::{Outgoing, Send};
use super::refusal::Refusal;
use super::{Control, default_name, to_json};
use crate::serial::floor::Turn;
use crate::serial::{MAX_CHUNK, SerialState, SerialView};

impl<Id: Ord + Copy + fmt::Display> Control<Id> {
    /// The serial bridge now (open, absent, off).
    pub fn serial(&mut self, view: SerialView) {
        if view != self.serial {
            self.serial = view;
            self.broadcast_serial();
        }
    }

    /// Viewer `id` wrote `len` bytes on its `serial` channel at `now`:
    /// whether they go to the port (else it is told why not).
    pub fn serial_write(&mut self, now: Instant, id: Id, len: usize) -> bool {
        if !self.members.contains_key(&id) {
            return false; // no `rtcam` channel: it cannot be told who holds the port
        }
        let member = &self.members[&id];
        let refusal = if !member.may_control {
            Refusal::NotAllowed
        } else if len > MAX_CHUNK {
            Refusal::SerialTooLarge { bytes: len }
        } else if self.serial.state != SerialState::Open {
            let why = self.serial.problem.clone();
            Refusal::SerialUnavailable(why.unwrap_or_else(|| "no serial port is set up".into()))
        } else {
            match self.floor.write(now, id) {
                Turn::Kept => {
                    self.serial_told(id, false);
                    return true;
                }
                Turn::Taken => {
                    self.serial_told(id, false);
                    self.broadcast_serial();
                    return true;
                }
                Turn::HeldBy(h) => Refusal::SerialBusy {
                    holder: self
                        .members
                        .get(&h)
                        .map_or_else(|| default_name(h), |m| m.name.clone()),
                },
            }
        };
        if !self.serial_told(id, true) {
            self.refuse(id, &refusal);
        }
        false
    }

    /// The serial port's write queue was full: `id`'s bytes were dropped.
    pub fn serial_overflow(&mut self, id: Id) {
        if !self.serial_told(id, true) {
            let why = "it is not keeping up; bytes were dropped".to_string();
            self.refuse(id, &Refusal::SerialUnavailable(why));
        }
    }

    /// Whether `id` was told about a refused serial write since its last
    /// accepted one (a stream of refused bytes gets one error, not one per
    /// message); sets it to `told`.
    fn serial_told(&mut self, id: Id, told: bool) -> bool {
        self.members
            .get_mut(&id)
            .is_some_and(|m| std::mem::replace(&mut m.told_serial, told))
    }

    pub(super) fn broadcast_serial(&mut self) {
        let ids: Vec<Id> = self.members.keys().copied().collect();
        for to in ids {
            let text = self.serial_message(to);
            self.out.push_back(Send { to, text });
        }
    }

    pub(super) fn serial_message(&self, to: Id) -> String {
        let holder = self.floor.holder();
        let name = holder
            .and_then(|h| self.members.get(&h))
            .map(|m| m.name.as_str());
        to_json(&Outgoing::Serial {
            state: self.serial.state,
            path: self.serial.path.as_deref(),
            baud: self.serial.baud,
            holder: name,
            you_hold: holder == Some(to),
            problem: self.serial.problem.as_deref(),
        })
    }
}
