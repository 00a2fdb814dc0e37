//! Who may write to the serial port, sans-IO: the first viewer to write
//! holds it until it has been idle for [`IDLE_RELEASE`] or leaves; others
//! are told who holds it. Time comes in with every call.

use std::time::{Duration, Instant};

/// A holder that wrote nothing for this long lets go.
pub const IDLE_RELEASE: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct Floor<Id> {
    holder: Option<(Id, Instant)>,
}

impl<Id> Default for Floor<Id> {
    fn default() -> Self {
        Floor { holder: None }
    }
}

/// What a write asked of the floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn<Id> {
    /// It holds the floor now, as it did before.
    Kept,
    /// It took a free floor.
    Taken,
    /// Someone else holds it.
    HeldBy(Id),
}

impl<Id: Copy + PartialEq> Floor<Id> {
    pub fn holder(&self) -> Option<Id> {
        self.holder.map(|(id, _)| id)
    }

    /// `id` wants to write at `now`.
    pub fn write(&mut self, now: Instant, id: Id) -> Turn<Id> {
        self.tick(now);
        match self.holder {
            Some((h, _)) if h != id => Turn::HeldBy(h),
            Some(_) => {
                self.holder = Some((id, now));
                Turn::Kept
            }
            None => {
                self.holder = Some((id, now));
                Turn::Taken
            }
        }
    }

    /// Lets an idle holder go; whether the floor was freed.
    pub fn tick(&mut self, now: Instant) -> bool {
        match self.holder {
            Some((_, at)) if now.saturating_duration_since(at) >= IDLE_RELEASE => {
                self.holder = None;
                true
            }
            _ => false,
        }
    }

    /// `id` left; whether it held the floor.
    pub fn leave(&mut self, id: Id) -> bool {
        if self.holder() == Some(id) {
            self.holder = None;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_writer_holds_until_idle_or_gone() {
        let t0 = Instant::now();
        let mut f = Floor::default();
        assert_eq!(f.write(t0, 1), Turn::Taken);
        assert_eq!(f.write(t0, 2), Turn::HeldBy(1));
        let t = t0 + Duration::from_secs(9);
        assert_eq!(f.write(t, 1), Turn::Kept, "writing keeps it");
        assert_eq!(f.write(t + Duration::from_secs(9), 2), Turn::HeldBy(1));
        assert!(f.tick(t + IDLE_RELEASE));
        assert_eq!(f.holder(), None);
        let t = t + IDLE_RELEASE;
        assert_eq!(f.write(t, 2), Turn::Taken);
        assert!(!f.leave(1));
        assert!(f.leave(2));
        assert_eq!(f.write(t, 1), Turn::Taken);
    }
}
