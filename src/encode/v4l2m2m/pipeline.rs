//! The pictures the driver holds, sans-IO: frames queued, coded results
//! and time in; pictures in capture order and written-off frames out.
//!
//! V4L2 copies each OUTPUT buffer's timestamp to the CAPTURE buffer coded
//! from it, so a result finds its frame (and the frame's capture times)
//! however late it comes. Pictures leave in capture order, which for
//! constrained baseline (no B-frames: the encoder codes frames in the order
//! they are queued) is also the bitstream's decode order: a driver that
//! hands two results back swapped still gives a stream a decoder can read.
//!
//! A picture that is not back within its deadline (three frame intervals,
//! 50-200 ms) is written off alone: that frame is skipped, the ones after
//! it go on. One overtaken by a newer picture's result gets one frame
//! interval more to come (a driver that reorders), then is written off
//! too: an in-order driver has dropped it, and the newer pictures must not
//! wait longer for it. A result that comes after its frame was written off
//! is too late and dropped: the pictures after it have left.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Bounds of a picture's deadline (three frame intervals).
const DEADLINE_MIN: Duration = Duration::from_millis(50);
const DEADLINE_MAX: Duration = Duration::from_millis(200);
/// The deadline until a first result has come: a driver sets itself up
/// on its first frame.
const FIRST_DEADLINE: Duration = Duration::from_secs(1);

/// The waits, from the frame rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Timing {
    /// How long a picture may take once the driver has answered once.
    pub(super) deadline: Duration,
    /// How long the pictures before the first answer may take.
    pub(super) first_deadline: Duration,
    /// How long an overtaken picture may still come.
    pub(super) reorder_wait: Duration,
    /// How long `encode` waits for a picture before it returns without
    /// one: under a frame interval, so the next frame never waits for it.
    pub(super) wait: Duration,
}

impl Timing {
    pub(super) fn for_fps(fps: u32) -> Self {
        let interval = Duration::from_secs(1) / fps.max(1);
        let deadline = (interval * 3).clamp(DEADLINE_MIN, DEADLINE_MAX);
        Timing {
            deadline,
            first_deadline: FIRST_DEADLINE,
            reorder_wait: interval.min(deadline),
            wait: interval * 3 / 4,
        }
    }
}

/// A queued frame's capture times, found again by its result's stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Frame {
    pub(super) captured: Instant,
    pub(super) stamp_ms: u64,
}

/// Why a frame was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WriteOff {
    /// Not back within its deadline.
    Deadline,
    /// A newer picture came back and this one did not follow in time.
    Overtaken,
    /// The driver flagged its buffer as failed.
    Flagged,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Out<T> {
    /// A coded picture, in capture order.
    Picture { frame: Frame, coded: T },
    /// A frame that will have no picture.
    WrittenOff { frame: Frame, why: WriteOff },
}

/// What became of a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Returned {
    /// Matched to its frame.
    Matched,
    /// Its frame already left (written off): dropped.
    TooLate,
    /// A stamp no queued frame had.
    Unknown,
}

#[derive(Debug)]
enum State<T> {
    Awaited { overtaken: Option<Instant> },
    Back(T),
    Flagged,
}

#[derive(Debug)]
struct Entry<T> {
    ts_us: u64,
    frame: Frame,
    deadline: Instant,
    state: State<T>,
}

#[derive(Debug)]
pub(super) struct Pipeline<T> {
    timing: Timing,
    /// At most this many in flight.
    limit: usize,
    /// Oldest first; stamps strictly increasing.
    entries: VecDeque<Entry<T>>,
    out: VecDeque<Out<T>>,
    /// The newest stamp that has left.
    left_through: u64,
    /// A result has come back: the driver is past its setup.
    warm: bool,
}

impl<T> Pipeline<T> {
    pub(super) fn new(timing: Timing, limit: usize) -> Self {
        Pipeline {
            timing,
            limit,
            entries: VecDeque::new(),
            out: VecDeque::new(),
            left_through: 0,
            warm: false,
        }
    }

    pub(super) fn has_room(&self) -> bool {
        self.entries.len() < self.limit
    }

    /// Frames queued whose pictures have not left yet.
    pub(super) fn in_flight(&self) -> usize {
        self.entries.len()
    }

    /// A frame went to the driver stamped `ts_us` (greater than any before).
    pub(super) fn queued(&mut self, ts_us: u64, frame: Frame, now: Instant) {
        let wait = if self.warm {
            self.timing.deadline
        } else {
            self.timing.first_deadline
        };
        self.entries.push_back(Entry {
            ts_us,
            frame,
            deadline: now + wait,
            state: State::Awaited { overtaken: None },
        });
    }

    /// A coded result stamped `ts_us` came back.
    pub(super) fn returned(&mut self, ts_us: u64, coded: T, now: Instant) -> Returned {
        self.answer(ts_us, State::Back(coded), now)
    }

    /// A result stamped `ts_us` came back flagged as failed.
    pub(super) fn flagged(&mut self, ts_us: u64, now: Instant) -> Returned {
        self.answer(ts_us, State::Flagged, now)
    }

    fn answer(&mut self, ts_us: u64, state: State<T>, now: Instant) -> Returned {
        let Some(i) = self.awaited(ts_us) else {
            return if ts_us <= self.left_through {
                Returned::TooLate
            } else {
                Returned::Unknown
            };
        };
        self.warm = true;
        self.entries[i].state = state;
        for e in self.entries.range_mut(..i) {
            if let State::Awaited { overtaken } = &mut e.state {
                overtaken.get_or_insert(now);
            }
        }
        self.release(now);
        Returned::Matched
    }

    /// The entry awaiting `ts_us` (a second result for one frame matches
    /// nothing: its frame has its picture).
    fn awaited(&self, ts_us: u64) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.ts_us == ts_us && matches!(e.state, State::Awaited { .. }))
    }

    pub(super) fn handle_timeout(&mut self, now: Instant) {
        self.release(now);
    }

    /// When the oldest picture will be written off if it does not come.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        let front = self.entries.front()?;
        match front.state {
            State::Awaited { overtaken } => Some(overtaken.map_or(front.deadline, |t| {
                (t + self.timing.reorder_wait).min(front.deadline)
            })),
            State::Back(_) | State::Flagged => Some(front.deadline),
        }
    }

    pub(super) fn poll_output(&mut self) -> Option<Out<T>> {
        self.out.pop_front()
    }

    /// Lets out, oldest first, every picture that is back and every frame
    /// whose picture will not come, up to the first still awaited.
    fn release(&mut self, now: Instant) {
        loop {
            let Some(front) = self.entries.front() else {
                return;
            };
            let overdue = self.overdue(front, now);
            if matches!(front.state, State::Awaited { .. }) && overdue.is_none() {
                return;
            }
            let Some(e) = self.entries.pop_front() else {
                return;
            };
            self.left_through = e.ts_us;
            let frame = e.frame;
            self.out.push_back(match e.state {
                State::Back(coded) => Out::Picture { frame, coded },
                State::Flagged => Out::WrittenOff {
                    frame,
                    why: WriteOff::Flagged,
                },
                State::Awaited { .. } => Out::WrittenOff {
                    frame,
                    why: overdue.unwrap_or(WriteOff::Deadline),
                },
            });
        }
    }

    /// Why an awaited picture is given up now, if it is.
    fn overdue(&self, e: &Entry<T>, now: Instant) -> Option<WriteOff> {
        let State::Awaited { overtaken } = e.state else {
            return None;
        };
        if now >= e.deadline {
            Some(WriteOff::Deadline)
        } else if overtaken.is_some_and(|t| now >= t + self.timing.reorder_wait) {
            Some(WriteOff::Overtaken)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// 30 fps: deadline 100 ms, reorder wait 33.3 ms.
    fn pipeline() -> (Pipeline<u64>, Instant) {
        let mut p = Pipeline::new(Timing::for_fps(30), 3);
        p.warm = true;
        (p, Instant::now())
    }

    fn frame(t0: Instant, n: u32) -> Frame {
        Frame {
            captured: t0 + 33 * MS * n,
            stamp_ms: u64::from(n),
        }
    }

    /// Queues frame `n` at its capture time, stamped n + 1.
    fn queue(p: &mut Pipeline<u64>, t0: Instant, n: u32) {
        let f = frame(t0, n);
        p.queued(u64::from(n) + 1, f, f.captured);
    }

    fn outs(p: &mut Pipeline<u64>) -> Vec<Out<u64>> {
        std::iter::from_fn(|| p.poll_output()).collect()
    }

    fn picture(t0: Instant, n: u32) -> Out<u64> {
        Out::Picture {
            frame: frame(t0, n),
            coded: u64::from(n),
        }
    }

    #[test]
    fn timing_follows_the_frame_rate_within_bounds() {
        let t = Timing::for_fps(30);
        assert_eq!(t.deadline, Duration::from_nanos(99_999_999));
        assert_eq!(t.wait, Duration::from_nanos(24_999_999));
        assert_eq!(Timing::for_fps(5).deadline, DEADLINE_MAX);
        assert_eq!(Timing::for_fps(5).reorder_wait, DEADLINE_MAX);
        assert_eq!(Timing::for_fps(120).deadline, DEADLINE_MIN);
    }

    #[test]
    fn late_results_find_their_frames() {
        let (mut p, t0) = pipeline();
        for n in 0..3 {
            queue(&mut p, t0, n);
        }
        assert!(!p.has_room());
        let now = t0 + 80 * MS;
        assert_eq!(p.returned(1, 0, now), Returned::Matched);
        assert_eq!(outs(&mut p), vec![picture(t0, 0)]);
        assert_eq!(p.returned(2, 1, now), Returned::Matched);
        assert_eq!(p.returned(3, 2, now), Returned::Matched);
        assert_eq!(outs(&mut p), vec![picture(t0, 1), picture(t0, 2)]);
        assert_eq!(p.in_flight(), 0);
        assert_eq!(p.poll_timeout(), None);
    }

    #[test]
    fn swapped_results_leave_in_capture_order() {
        let (mut p, t0) = pipeline();
        queue(&mut p, t0, 0);
        queue(&mut p, t0, 1);
        let now = t0 + 40 * MS;
        assert_eq!(p.returned(2, 1, now), Returned::Matched);
        assert!(outs(&mut p).is_empty(), "1 waits for 0");
        assert!(p.poll_timeout().is_some_and(|t| t > now));
        assert_eq!(p.returned(1, 0, now + 10 * MS), Returned::Matched);
        assert_eq!(outs(&mut p), vec![picture(t0, 0), picture(t0, 1)]);
    }

    #[test]
    fn an_overtaken_picture_is_written_off_after_the_reorder_wait() {
        let (mut p, t0) = pipeline();
        queue(&mut p, t0, 0);
        queue(&mut p, t0, 1);
        let back = t0 + 40 * MS;
        p.returned(2, 1, back);
        let due = p.poll_timeout().unwrap();
        assert!(due > back && due <= back + 34 * MS, "{:?}", due - back);
        p.handle_timeout(due - MS);
        assert!(outs(&mut p).is_empty());
        p.handle_timeout(due);
        let written_off = Out::WrittenOff {
            frame: frame(t0, 0),
            why: WriteOff::Overtaken,
        };
        assert_eq!(outs(&mut p), vec![written_off, picture(t0, 1)]);
        assert_eq!(p.returned(1, 0, due), Returned::TooLate);
        assert_eq!(p.returned(99, 0, due), Returned::Unknown);
    }

    #[test]
    fn a_dropped_picture_is_written_off_alone_at_its_deadline() {
        let (mut p, t0) = pipeline();
        queue(&mut p, t0, 0);
        assert_eq!(
            p.poll_timeout(),
            Some(t0 + Duration::from_nanos(99_999_999))
        );
        queue(&mut p, t0, 1);
        p.handle_timeout(t0 + 99 * MS);
        assert!(outs(&mut p).is_empty());
        p.handle_timeout(t0 + 100 * MS);
        let written_off = Out::WrittenOff {
            frame: frame(t0, 0),
            why: WriteOff::Deadline,
        };
        assert_eq!(outs(&mut p), vec![written_off]);
        assert_eq!(p.returned(2, 1, t0 + 101 * MS), Returned::Matched);
        assert_eq!(outs(&mut p), vec![picture(t0, 1)]);
    }

    #[test]
    fn a_flagged_picture_is_written_off_at_once() {
        let (mut p, t0) = pipeline();
        queue(&mut p, t0, 0);
        queue(&mut p, t0, 1);
        assert_eq!(p.flagged(1, t0 + 5 * MS), Returned::Matched);
        p.returned(2, 1, t0 + 40 * MS);
        let written_off = Out::WrittenOff {
            frame: frame(t0, 0),
            why: WriteOff::Flagged,
        };
        assert_eq!(outs(&mut p), vec![written_off, picture(t0, 1)]);
    }

    #[test]
    fn the_first_pictures_get_the_setup_deadline() {
        let mut p: Pipeline<u64> = Pipeline::new(Timing::for_fps(30), 3);
        let t0 = Instant::now();
        queue(&mut p, t0, 0);
        assert_eq!(p.poll_timeout(), Some(t0 + FIRST_DEADLINE));
        p.handle_timeout(t0 + 500 * MS);
        assert_eq!(p.returned(1, 0, t0 + 500 * MS), Returned::Matched);
        assert!(p.warm);
        queue(&mut p, t0, 1);
        assert_eq!(
            p.poll_timeout(),
            Some(t0 + 33 * MS + Duration::from_nanos(99_999_999))
        );
    }
}
