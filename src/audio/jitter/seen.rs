//! The sequence numbers seen lately: a duplicate (a retransmission, a
//! copy, a replay) is dropped, not played twice.

/// How far back a sequence number is remembered.
const SPAN: u64 = 128;

/// The newest sequence number seen and the [`SPAN`] before it, as bits:
/// bit `i` is `hi - i`.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct SeqWindow {
    hi: Option<u64>,
    bits: u128,
}

impl SeqWindow {
    /// Whether `seq` was seen (one older than the window never counts).
    pub(super) fn contains(&self, seq: u64) -> bool {
        match self.hi {
            Some(hi) if seq <= hi => hi - seq < SPAN && (self.bits >> (hi - seq)) & 1 == 1,
            _ => false,
        }
    }

    pub(super) fn insert(&mut self, seq: u64) {
        match self.hi {
            Some(hi) if seq <= hi => {
                if hi - seq < SPAN {
                    self.bits |= 1 << (hi - seq);
                }
            }
            Some(hi) if seq - hi < SPAN => {
                self.bits = (self.bits << (seq - hi)) | 1;
                self.hi = Some(seq);
            }
            _ => {
                self.bits = 1;
                self.hi = Some(seq);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_is_seen_once_inserted_and_within_the_window() {
        let mut w = SeqWindow::default();
        assert!(!w.contains(1000));
        w.insert(1000);
        w.insert(1002);
        assert!(w.contains(1000) && w.contains(1002) && !w.contains(1001));
        // Late, then filled in.
        w.insert(1001);
        assert!(w.contains(1001));
        // Ahead by less than the window: the old ones are kept.
        w.insert(1000 + SPAN);
        assert!(w.contains(1001) && !w.contains(1000));
    }

    #[test]
    fn a_jump_past_the_window_forgets_what_came_before() {
        let mut w = SeqWindow::default();
        w.insert(5);
        w.insert(5 + 10 * SPAN);
        assert!(!w.contains(5) && w.contains(5 + 10 * SPAN));
        // Too old to remember: never reported as seen, never stored.
        w.insert(5);
        assert!(!w.contains(5));
    }
}
