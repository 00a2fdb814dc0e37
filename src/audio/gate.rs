//! Half-duplex, sans-IO: while the speaker plays a viewer's voice (and for
//! the room's echo after it) the microphone's stream is muted, so nobody
//! hears themselves. What intercoms without an echo canceller do; the talker
//! cannot hear the room while talking, everyone else hears nothing of the
//! speaker.

use std::time::{Duration, Instant};

/// The echo outlives the voice by the speaker's buffer and the room's
/// reverberation: the microphone stays muted this long after.
pub const HANGOVER: Duration = Duration::from_millis(250);

/// A mute or unmute fades over this many samples (5 ms): no click.
const FADE: usize = 240;

#[derive(Debug, Default)]
pub struct HalfDuplex {
    /// Gain applied to the last sample of the previous frame (0 or 1).
    gain: f32,
    /// Frames muted so far (telemetry).
    pub muted_frames: u64,
}

impl HalfDuplex {
    pub fn new() -> Self {
        HalfDuplex {
            gain: 1.0,
            muted_frames: 0,
        }
    }

    /// Mutes `frame` (captured at `now`) if the speaker played a voice
    /// within [`HANGOVER`] (`voiced_at`: its last voiced frame).
    pub fn apply(&mut self, now: Instant, voiced_at: Option<Instant>, frame: &mut [i16]) {
        let mute = voiced_at.is_some_and(|at| now.saturating_duration_since(at) < HANGOVER);
        let target = if mute { 0.0 } else { 1.0 };
        if mute {
            self.muted_frames += 1;
        }
        if target == self.gain && target == 1.0 {
            return;
        }
        let from = self.gain;
        for (i, s) in frame.iter_mut().enumerate() {
            let g = if i >= FADE {
                target
            } else {
                from + (target - from) * i as f32 / FADE as f32
            };
            *s = (*s as f32 * g) as i16;
        }
        self.gain = target;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_microphone_is_muted_while_the_speaker_talks_and_a_little_after() {
        let t = Instant::now();
        let mut g = HalfDuplex::new();
        let mut frame = vec![1000i16; 960];
        g.apply(t, None, &mut frame);
        assert!(
            frame.iter().all(|&s| s == 1000),
            "nothing played: untouched"
        );

        let mut frame = vec![1000i16; 960];
        g.apply(t, Some(t), &mut frame);
        assert_eq!(frame[0], 1000, "fades out, no click");
        assert!(frame[FADE..].iter().all(|&s| s == 0));

        let mut frame = vec![1000i16; 960];
        g.apply(t + HANGOVER - Duration::from_millis(1), Some(t), &mut frame);
        assert!(
            frame.iter().all(|&s| s == 0),
            "the echo's tail is muted too"
        );

        let mut frame = vec![1000i16; 960];
        g.apply(t + HANGOVER, Some(t), &mut frame);
        assert_eq!(frame[0], 0, "fades back in");
        assert!(frame[FADE..].iter().all(|&s| s == 1000));
        assert_eq!(g.muted_frames, 2);
    }
}

/// When the speaker last played a voice, shared by the speaker's thread
/// (which marks it) and the microphone's (which mutes by it).
#[derive(Debug)]
pub struct Voiced {
    base: Instant,
    /// Nanoseconds after `base`, plus one (0: never).
    at: std::sync::atomic::AtomicU64,
}

impl Default for Voiced {
    fn default() -> Self {
        Voiced {
            base: Instant::now(),
            at: Default::default(),
        }
    }
}

impl Voiced {
    pub fn mark(&self, now: Instant) {
        let ns = now.saturating_duration_since(self.base).as_nanos() as u64 + 1;
        self.at.store(ns, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn last(&self) -> Option<Instant> {
        match self.at.load(std::sync::atomic::Ordering::Relaxed) {
            0 => None,
            ns => Some(self.base + Duration::from_nanos(ns - 1)),
        }
    }
}
