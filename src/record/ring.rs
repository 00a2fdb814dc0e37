//! The pre-roll, sans-IO: the encoded stream of the last few seconds in
//! RAM, always starting at a keyframe, so a clip can start before the
//! motion that began it.
//!
//! It keeps everything from the newest keyframe that is at least `pre`
//! old (so `pre` seconds are always covered, and up to one keyframe
//! interval more), bounded in bytes: a stream that stops sending
//! keyframes loses its pre-roll, never the device's memory.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One encoded H.264 access unit as the recorder keeps it.
#[derive(Debug, Clone)]
pub struct Unit {
    pub data: Arc<[u8]>,
    pub keyframe: bool,
    /// Monotonic capture time, and the wall clock's (Unix ms).
    pub captured: Instant,
    pub stamp_ms: u64,
}

/// One Opus packet of the microphone (20 ms).
#[derive(Debug, Clone)]
pub struct AudioUnit {
    pub data: Arc<[u8]>,
    /// Monotonic capture time of its first sample.
    pub captured: Instant,
}

#[derive(Debug)]
pub struct Ring {
    pre: Duration,
    max_bytes: usize,
    units: VecDeque<Unit>,
    bytes: usize,
    /// The microphone over the same span (from the first video unit on).
    audio: VecDeque<AudioUnit>,
}

impl Ring {
    pub fn new(pre: Duration, max_bytes: usize) -> Self {
        Ring {
            pre,
            max_bytes,
            units: VecDeque::new(),
            bytes: 0,
            audio: VecDeque::new(),
        }
    }

    /// Keeps a microphone packet while there is video to go with it.
    pub fn push_audio(&mut self, unit: AudioUnit) {
        if !self.units.is_empty() {
            self.audio.push_back(unit);
            self.trim_audio();
        }
    }

    /// Drops the audio from before the first video unit.
    fn trim_audio(&mut self) {
        let Some(start) = self.units.front().map(|u| u.captured) else {
            self.audio.clear();
            return;
        };
        while self.audio.front().is_some_and(|a| a.captured < start) {
            self.audio.pop_front();
        }
    }

    /// Keeps `unit`; a ring that does not start at a keyframe takes nothing
    /// until one comes (a unit without its reference is useless).
    pub fn push(&mut self, unit: Unit) {
        if self.units.is_empty() && !unit.keyframe {
            return;
        }
        let now = unit.captured;
        self.bytes += unit.data.len();
        self.units.push_back(unit);
        self.trim(now);
    }

    /// Drops what is older than the newest keyframe at least `pre` old,
    /// then whole keyframe intervals while over the byte bound (the last
    /// interval is never split: all of it or nothing).
    fn trim(&mut self, now: Instant) {
        let cut = self
            .units
            .iter()
            .enumerate()
            .rev()
            .find(|(_, u)| u.keyframe && now.saturating_duration_since(u.captured) >= self.pre)
            .map_or(0, |(i, _)| i);
        self.drop_front(cut);
        while self.bytes > self.max_bytes {
            let next = self
                .units
                .iter()
                .skip(1)
                .position(|u| u.keyframe)
                .map_or(self.units.len(), |i| i + 1);
            self.drop_front(next);
        }
    }

    fn drop_front(&mut self, n: usize) {
        for u in self.units.drain(..n) {
            self.bytes -= u.data.len();
        }
        self.trim_audio();
    }

    /// Everything kept, oldest first (a keyframe first, when not empty),
    /// and the microphone over the same time.
    pub fn take(&mut self) -> (Vec<Unit>, Vec<AudioUnit>) {
        self.bytes = 0;
        (
            self.units.drain(..).collect(),
            self.audio.drain(..).collect(),
        )
    }

    /// A segment rolled over at `unit` (a keyframe): what came before it
    /// is written, so the ring keeps from it on (and the sound from then).
    pub fn restart(&mut self, unit: Unit) {
        self.units.clear();
        self.bytes = 0;
        self.push(unit);
    }

    /// A gap in the stream (a dropped unit): what is kept cannot be
    /// continued, start again at the next keyframe.
    pub fn clear(&mut self) {
        self.units.clear();
        self.audio.clear();
        self.bytes = 0;
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn span(&self) -> Duration {
        match (self.units.front(), self.units.back()) {
            (Some(a), Some(b)) => b.captured.saturating_duration_since(a.captured),
            _ => Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(t0: Instant, ms: u64, keyframe: bool, size: usize) -> Unit {
        Unit {
            data: vec![0; size].into(),
            keyframe,
            captured: t0 + Duration::from_millis(ms),
            stamp_ms: ms,
        }
    }

    #[test]
    fn it_starts_at_a_keyframe_and_covers_the_pre_roll() {
        let t0 = Instant::now();
        let mut ring = Ring::new(Duration::from_secs(5), usize::MAX);
        ring.push(unit(t0, 0, false, 10)); // no keyframe yet: not kept
        // A keyframe every 2 s, 10 frames a second, for 20 s.
        for i in 1..=200u64 {
            ring.push(unit(t0, i * 100, i % 20 == 0, 10));
        }
        let kept = ring.take().0;
        assert!(kept[0].keyframe);
        let span = kept.last().unwrap().captured - kept[0].captured;
        assert!(span >= Duration::from_secs(5), "{span:?}");
        assert!(span < Duration::from_secs(7), "{span:?}");
    }

    #[test]
    fn the_byte_bound_drops_whole_intervals() {
        let t0 = Instant::now();
        let mut ring = Ring::new(Duration::from_secs(60), 1_000);
        for i in 0..100u64 {
            ring.push(unit(t0, i * 100, i % 10 == 0, 30));
        }
        assert!(ring.bytes() <= 1_000);
        let kept = ring.take().0;
        assert!(kept[0].keyframe);
        assert_eq!(kept.len(), 30, "three whole intervals of 300 bytes");
    }

    #[test]
    fn without_keyframes_it_keeps_nothing_past_the_bound() {
        let t0 = Instant::now();
        let mut ring = Ring::new(Duration::from_secs(5), 1_000);
        ring.push(unit(t0, 0, true, 30));
        for i in 1..1000u64 {
            ring.push(unit(t0, i * 33, false, 30));
        }
        assert!(ring.bytes() <= 1_000, "{}", ring.bytes());
    }
}
