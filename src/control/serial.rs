//! The serial bridge as the protocol sees it: who holds the port (the
//! floor), who is told what.

use std::fmt;
use std::time::Instant;

use super::messages::{Outgoing, Send};
use super::refusal::Refusal;
use super::{Control, default_name, to_json};
use crate::serial::floor::Turn;
use crate::serial::queue::QueueFull;
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

    /// The serial port's queue was full: `id`'s bytes were dropped. It is
    /// told at the first drop since its last queued write, not at each (a
    /// flood gets one error, however many messages it loses).
    pub fn serial_overflow(&mut self, id: Id, full: QueueFull) {
        let Some(m) = self.members.get_mut(&id) else {
            return;
        };
        m.serial_dropped += 1;
        if m.serial_dropped == 1 {
            self.refuse(id, &Refusal::SerialQueueFull(full));
        }
    }

    /// `id`'s bytes went into the serial port's queue: a later overflow is
    /// told again. How many of its writes were dropped since its last
    /// queued one.
    pub fn serial_queued(&mut self, id: Id) -> u64 {
        self.members
            .get_mut(&id)
            .map_or(0, |m| std::mem::take(&mut m.serial_dropped))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> SerialView {
        SerialView {
            state: SerialState::Open,
            path: Some("/dev/ttyUSB0".into()),
            baud: 9600,
            problem: None,
        }
    }

    fn full() -> QueueFull {
        QueueFull {
            bytes: 1024,
            queued: 3500,
            limit: MAX_CHUNK,
        }
    }

    /// The errors sent since the last call, as (to, reason, message).
    fn errors(c: &mut Control<u8>) -> Vec<(u8, String, String)> {
        std::iter::from_fn(|| c.poll_output())
            .filter_map(|s| {
                let v: serde_json::Value = serde_json::from_str(&s.text).ok()?;
                let reason = v["reason"].as_str()?.to_string();
                let message = v["message"].as_str()?.to_string();
                (v["type"] == "error").then_some((s.to, reason, message))
            })
            .collect()
    }

    #[test]
    fn a_flood_into_a_full_queue_gets_one_error_until_a_write_is_queued_again() {
        let now = Instant::now();
        let mut c: Control<u8> = Control::new();
        c.serial(open());
        c.join(now, 1, None, true);
        c.join(now, 2, None, true);
        for _ in 0..50 {
            // The floor takes each write (1 holds it); the queue drops it.
            assert!(c.serial_write(now, 1, 1024));
            c.serial_overflow(1, full());
        }
        let told = errors(&mut c);
        assert_eq!(told.len(), 1, "one error, not one per message: {told:?}");
        let (to, reason, message) = &told[0];
        assert_eq!((*to, reason.as_str()), (1, "serial_queue_full"));
        assert!(message.contains("serial queue full"), "{message}");
        assert!(message.contains("1024 bytes"), "{message}");

        assert!(c.serial_write(now, 1, 10));
        assert_eq!(c.serial_queued(1), 50, "how many it lost");
        assert_eq!(c.serial_queued(1), 0);
        c.serial_overflow(1, full());
        c.serial_overflow(1, full());
        let told = errors(&mut c);
        assert_eq!(told.len(), 1, "a new run of drops is told again: {told:?}");
        assert_eq!(told[0].0, 1, "nobody else hears of it");
    }

    #[test]
    fn drops_and_the_floors_refusals_are_told_apart() {
        let now = Instant::now();
        let mut c: Control<u8> = Control::new();
        c.serial(open());
        c.join(now, 1, None, true);
        c.join(now, 2, None, true);
        assert!(c.serial_write(now, 1, 5));
        assert!(!c.serial_write(now, 2, 5), "1 holds the port");
        assert!(!c.serial_write(now, 2, 5));
        c.serial_overflow(1, full());
        let told = errors(&mut c);
        let reasons: Vec<(u8, &str)> = told.iter().map(|(to, r, _)| (*to, r.as_str())).collect();
        assert_eq!(reasons, [(2, "serial_busy"), (1, "serial_queue_full")]);
        c.serial_overflow(9, full()); // gone: nothing to tell
        assert_eq!(c.serial_queued(9), 0);
        assert!(errors(&mut c).is_empty());
    }
}
