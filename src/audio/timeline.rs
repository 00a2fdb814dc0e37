//! The speaker's sound as it played, for the echo canceller, sans-IO.
//!
//! AEC3 aligns the speaker's samples (its render stream) with the
//! microphone's by counting them: it assumes that the render chunks it is
//! handed played one after another, and that each arrives about when the
//! capture chunks around it were recorded. Threads break both on a busy
//! CPU. A speaker thread held up past its short ALSA buffer leaves a gap of
//! silence in what plays, which the frames it hands on do not show; and
//! the frames reach the microphone's thread in bursts, so a capture chunk
//! can come with 100 ms of render at once or none. In the simulated room
//! (`room.rs`, `echo.rs`) the first took the echo from 34 dB down to 23,
//! and frames handed over 100 ms late once a second to 2.
//!
//! So the frames are placed on the clock they play by (`plays_at`, from
//! ALSA's reported delay) and handed to AEC3 in step with the capture:
//! before each capture chunk, exactly what played until that chunk ends,
//! silence where nothing did. AEC3 then sees one render chunk per capture
//! chunk, and the same delay whatever the threads did.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::RATE;

/// AEC3 works on 10 ms chunks.
pub const CHUNK: usize = RATE as usize / 100;
pub const CHUNK_TIME: Duration = Duration::from_millis(10);
/// A frame that starts within this of where the one before it ended plays
/// right after it: ALSA's delay reports move by a few ms from one write to
/// the next. Further off, it is a gap (the speaker ran dry) or an overlap
/// (its buffer shrank), and the frame goes where it says.
pub const JITTER: Duration = Duration::from_millis(6);
/// What is kept ahead of the microphone: a second.
pub const CAPACITY: usize = 100;
/// The most silence handed over at once (a microphone's thread held up for
/// longer gets only the last of it): what AEC3's render queue holds.
pub const MOST_SILENCE: u32 = 50;

const SILENCE: [i16; CHUNK] = [0; CHUNK];

/// What the timeline had to make up for, counted since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimelineStats {
    /// Frames that started clearly after the one before ended (the speaker
    /// ran dry) or before it (its buffer shrank).
    pub gaps: u64,
    pub overlaps: u64,
    /// Chunks of silence handed over where nothing played.
    pub silence: u64,
    /// Chunks that arrived after their time was handed over, or that found
    /// the timeline full: dropped.
    pub dropped: u64,
}

struct Chunk {
    at: Instant,
    pcm: [i16; CHUNK],
}

/// The speaker's chunks by when they play.
#[derive(Default)]
pub struct Timeline {
    queue: VecDeque<Chunk>,
    /// Where the last frame pushed ends.
    end: Option<Instant>,
    /// Everything that plays before this has been handed over.
    handed: Option<Instant>,
    stats: TimelineStats,
}

impl Timeline {
    /// A frame of whole chunks the speaker wrote, which plays from
    /// `plays_at`.
    pub fn push(&mut self, pcm: &[i16], plays_at: Instant) {
        let start = self.place(plays_at);
        let mut at = start;
        for chunk in pcm.chunks_exact(CHUNK) {
            if self.handed.is_some_and(|h| at + CHUNK_TIME / 2 <= h) {
                self.stats.dropped += 1;
            } else {
                if self.queue.len() == CAPACITY {
                    self.queue.pop_front();
                    self.stats.dropped += 1;
                }
                let mut c = SILENCE;
                c.copy_from_slice(chunk);
                self.queue.push_back(Chunk { at, pcm: c });
            }
            at += CHUNK_TIME;
        }
        self.end = Some(at);
    }

    /// Where a frame reported to play at `plays_at` goes: right after the
    /// one before when that is within [`JITTER`].
    fn place(&mut self, plays_at: Instant) -> Instant {
        let Some(end) = self.end else {
            return plays_at;
        };
        if plays_at > end + JITTER {
            self.stats.gaps += 1;
            plays_at
        } else if plays_at + JITTER < end {
            // The buffer shrank: what was queued from here on will not play
            // where it was put.
            self.stats.overlaps += 1;
            self.keep_only(|c| c.at + CHUNK_TIME / 2 <= plays_at);
            plays_at
        } else {
            end
        }
    }

    /// Hands `feed` every chunk that starts playing before `until`, oldest
    /// first, with a chunk of silence for each 10 ms where nothing played.
    /// Nothing before the first frame.
    pub fn hand_until(&mut self, until: Instant, mut feed: impl FnMut(&[i16; CHUNK])) {
        let Some(mut at) = self.handed.or_else(|| self.queue.front().map(|c| c.at)) else {
            return;
        };
        if let Some(floor) = until.checked_sub(CHUNK_TIME * MOST_SILENCE)
            && at < floor
        {
            self.keep_only(|c| c.at + CHUNK_TIME / 2 > floor);
            at = floor;
        }
        while at < until {
            match self.queue.front() {
                Some(c) if c.at < at + CHUNK_TIME / 2 => {
                    feed(&c.pcm);
                    at = c.at + CHUNK_TIME;
                    self.queue.pop_front();
                }
                _ => {
                    feed(&SILENCE);
                    self.stats.silence += 1;
                    at += CHUNK_TIME;
                }
            }
        }
        self.handed = Some(at);
    }

    /// Drops the queued chunks `keep` refuses, counted.
    fn keep_only(&mut self, keep: impl Fn(&Chunk) -> bool) {
        let before = self.queue.len();
        self.queue.retain(keep);
        self.stats.dropped += (before - self.queue.len()) as u64;
    }

    /// Starts again with the next frame (nobody listened meanwhile); the
    /// counts go on, as `/metrics` counters must.
    pub fn restart(&mut self) {
        self.queue.clear();
        self.end = None;
        self.handed = None;
    }

    pub fn stats(&self) -> TimelineStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// A 20 ms frame whose two chunks are `v` and `v + 1`.
    fn frame(v: i16) -> Vec<i16> {
        let mut f = vec![v; CHUNK];
        f.extend([v + 1; CHUNK]);
        f
    }

    /// The first sample of each chunk handed over until `until`.
    fn hand(t: &mut Timeline, until: Instant) -> Vec<i16> {
        let mut out = Vec::new();
        t.hand_until(until, |c| out.push(c[0]));
        out
    }

    #[test]
    fn frames_that_play_back_to_back_are_handed_over_in_step_with_the_capture() {
        let t0 = Instant::now();
        let mut t = Timeline::default();
        // ALSA's reports wobble by a few ms: still back to back.
        t.push(&frame(10), t0);
        t.push(&frame(20), t0 + 23 * MS);
        t.push(&frame(30), t0 + 38 * MS);
        // One capture chunk at a time: what played until it ends.
        assert_eq!(hand(&mut t, t0 + 10 * MS), vec![10]);
        assert_eq!(hand(&mut t, t0 + 20 * MS), vec![11]);
        assert_eq!(hand(&mut t, t0 + 25 * MS), vec![20]);
        // Nothing is handed twice, and the rest comes when its time does.
        assert_eq!(hand(&mut t, t0 + 25 * MS), Vec::<i16>::new());
        assert_eq!(hand(&mut t, t0 + 60 * MS), vec![21, 30, 31]);
        assert_eq!(t.stats(), TimelineStats::default());
    }

    #[test]
    fn a_speaker_that_ran_dry_played_silence_in_between() {
        let t0 = Instant::now();
        let mut t = Timeline::default();
        t.push(&frame(10), t0);
        // Held up: its next frame plays 30 ms after the first ended.
        t.push(&frame(20), t0 + 50 * MS);
        assert_eq!(hand(&mut t, t0 + 70 * MS), vec![10, 11, 0, 0, 0, 20, 21]);
        let s = t.stats();
        assert_eq!((s.gaps, s.silence, s.dropped), (1, 3, 0));
    }

    #[test]
    fn a_burst_of_frames_waits_for_its_time() {
        let t0 = Instant::now();
        let mut t = Timeline::default();
        t.push(&frame(10), t0);
        assert_eq!(hand(&mut t, t0 + 20 * MS), vec![10, 11]);
        // The speaker's next frames reach the microphone's thread all at
        // once, 80 ms ahead of playing: each is handed over in its time.
        for (i, v) in [20, 30, 40, 50].into_iter().enumerate() {
            t.push(&frame(v), t0 + MS * (20 + 20 * i as u32));
        }
        assert_eq!(hand(&mut t, t0 + 30 * MS), vec![20]);
        assert_eq!(hand(&mut t, t0 + 40 * MS), vec![21]);
        assert_eq!(hand(&mut t, t0 + 100 * MS), vec![30, 31, 40, 41, 50, 51]);
        assert_eq!(t.stats(), TimelineStats::default());
    }

    #[test]
    fn what_comes_after_its_time_was_handed_over_is_dropped() {
        let t0 = Instant::now();
        let mut t = Timeline::default();
        t.push(&frame(10), t0);
        // The capture got ahead of the speaker's frames: silence then.
        assert_eq!(hand(&mut t, t0 + 40 * MS), vec![10, 11, 0, 0]);
        // The frame for 20-40 ms arrives late: it cannot be handed over
        // any more; the next one is on time.
        t.push(&frame(20), t0 + 20 * MS);
        t.push(&frame(30), t0 + 40 * MS);
        assert_eq!(hand(&mut t, t0 + 60 * MS), vec![30, 31]);
        let s = t.stats();
        assert_eq!((s.silence, s.dropped), (2, 2));
    }

    #[test]
    fn a_buffer_that_shrank_replaces_what_would_have_played_later() {
        let t0 = Instant::now();
        let mut t = Timeline::default();
        t.push(&frame(10), t0);
        t.push(&frame(20), t0 + 20 * MS);
        // The next frame plays 20 ms earlier than the one before ended.
        t.push(&frame(30), t0 + 20 * MS);
        assert_eq!(hand(&mut t, t0 + 40 * MS), vec![10, 11, 30, 31]);
        let s = t.stats();
        assert_eq!((s.overlaps, s.dropped, s.silence), (1, 2, 0));
    }

    #[test]
    fn a_microphone_held_up_for_seconds_gets_half_a_second_of_what_played() {
        let t0 = Instant::now();
        let mut t = Timeline::default();
        t.push(&frame(10), t0);
        let handed = hand(&mut t, t0 + Duration::from_secs(3));
        assert_eq!(handed.len(), MOST_SILENCE as usize);
        assert!(handed.iter().all(|&v| v == 0));
        assert_eq!(t.stats().dropped, 2);
    }

    #[test]
    fn a_speaker_far_ahead_is_kept_for_a_second_at_most() {
        let t0 = Instant::now();
        let mut t = Timeline::default();
        for i in 0..60u64 {
            t.push(&frame(i as i16 * 2), t0 + 20 * MS * i as u32);
        }
        // 120 chunks pushed, 100 kept: the oldest 20 went.
        let handed = hand(&mut t, t0 + Duration::from_millis(700));
        assert_eq!(handed.len(), 50);
        assert_eq!(handed[0], 20);
        assert_eq!(t.stats().dropped, 20);
    }

    #[test]
    fn a_restart_forgets_the_frames_but_keeps_the_counts() {
        let t0 = Instant::now();
        let mut t = Timeline::default();
        t.push(&frame(10), t0);
        t.push(&frame(20), t0 + 50 * MS);
        t.restart();
        // A frame long after: no gap, nothing from before handed over.
        t.push(&frame(30), t0 + Duration::from_secs(5));
        assert_eq!(hand(&mut t, t0 + Duration::from_millis(5020)), vec![30, 31]);
        assert_eq!(t.stats().gaps, 1);
    }
}
