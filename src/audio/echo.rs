//! The echo canceller: WebRTC's AEC3 (`sonora`, pure Rust) removes what the
//! speaker played from what the microphone hears, with the speaker's
//! samples as the reference.
//!
//! AEC3 finds the echo's delay itself, starting from a hint: the closer the
//! hint, the sooner it converges and the better it holds against a loud
//! talker in the room (in the simulated room, a hint 40 ms short left it
//! unconverged for seconds where an exact one did not). The hint comes from
//! ALSA's reported delays ([`Alignment`], sans-IO). Only the canceller runs (and the high-pass filter AEC3
//! enforces): no noise suppression or gain control, which would reshape the
//! talker's voice and break the audio stamp's tones that tests read.
//!
//! Outside, 20 ms frames of S16 at 48 kHz (ours); inside, AEC3's 10 ms.
//! The microphone's thread owns it: the speaker's frames reach it through a
//! bounded road and are handed over just before each capture frame.

use std::time::{Duration, Instant};

use sonora::config::EchoCanceller as Aec3;
use sonora::{AudioProcessing, Config, StreamConfig};
use thiserror::Error;

use super::RATE;

/// AEC3 works on 10 ms.
const CHUNK: usize = RATE as usize / 100;
/// The largest delay hint AEC3 takes (it clamps to 0..=500 ms).
pub const MAX_HINT: Duration = Duration::from_millis(500);

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum EchoError {
    #[error("echo canceller: a frame of {0} samples is not whole 10 ms chunks")]
    FrameLength(usize),
    #[error("echo canceller: {0}")]
    Library(#[from] sonora::Error),
}

/// A frame the speaker wrote, on its way to the canceller.
#[derive(Debug, Clone)]
pub struct Reference {
    pub pcm: Vec<i16>,
    /// Its write's time plus the delay ALSA reported just before it.
    pub plays_at: Instant,
}

/// What the canceller tells `/metrics` and the telemetry.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EchoStats {
    /// Capture frames cancelled, and speaker frames taken as reference.
    pub frames: u64,
    pub render_frames: u64,
    /// AEC3's echo return loss enhancement (its linear filter's), dB, once
    /// it has one.
    pub erle_db: Option<f64>,
    /// AEC3's estimate of the echo's delay, and the hint it was given.
    pub delay_ms: Option<i32>,
    pub hint_ms: i32,
}

/// Where the speaker's stream stands against the microphone's, sans-IO.
///
/// AEC3 wants `(t_render - t_analyze) + (t_process - t_capture)`: how long
/// after being handed to the canceller the newest speaker frame plays, plus
/// how long ago the capture frame being processed was captured. ALSA tells
/// both: a speaker frame plays at its write time plus the delay ALSA
/// reported, and the capture clock dates each microphone frame. The
/// microphone's thread hands the speaker's frames over just before it
/// processes a capture frame, so both are handed over at `now`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Alignment {
    /// When the newest speaker frame plays.
    plays_at: Option<Instant>,
}

impl Alignment {
    /// The newest speaker frame plays at `plays_at`.
    pub fn rendered(&mut self, plays_at: Instant) {
        self.plays_at = Some(plays_at);
    }

    /// The hint for a capture frame captured at `captured` and processed
    /// (the speaker's frames handed over) at `now`, clamped to what AEC3
    /// takes. Before any speaker frame, the capture's age alone.
    pub fn hint(&self, captured: Instant, now: Instant) -> Duration {
        let ahead = self.plays_at.map_or(0, |p| signed_ns(p, now));
        let total = (ahead + signed_ns(now, captured)).clamp(0, MAX_HINT.as_nanos() as i128);
        Duration::from_nanos(total as u64)
    }
}

/// `a - b` in nanoseconds, negative when `a` is earlier.
fn signed_ns(a: Instant, b: Instant) -> i128 {
    match a.checked_duration_since(b) {
        Some(d) => d.as_nanos() as i128,
        None => -(b.duration_since(a).as_nanos() as i128),
    }
}

/// AEC3 on 48 kHz mono, fed 20 ms frames.
pub struct EchoCanceller {
    apm: AudioProcessing,
    alignment: Alignment,
    /// The input of a capture chunk, and the (unused) output of a render one.
    scratch: [i16; CHUNK],
    stats: EchoStats,
}

impl Default for EchoCanceller {
    fn default() -> Self {
        Self::new()
    }
}

impl EchoCanceller {
    pub fn new() -> Self {
        let config = Config {
            echo_canceller: Some(Aec3::default()),
            ..Default::default()
        };
        let mono = StreamConfig::new(RATE, 1);
        let apm = AudioProcessing::builder()
            .config(config)
            .capture_config(mono)
            .render_config(mono)
            .build();
        EchoCanceller {
            apm,
            alignment: Alignment::default(),
            scratch: [0; CHUNK],
            stats: EchoStats::default(),
        }
    }

    /// The speaker's samples as written, which play at `plays_at` (the
    /// write's time plus the delay ALSA reported). Handed over just before
    /// the capture frame that follows.
    pub fn render(&mut self, frame: &[i16], plays_at: Instant) -> Result<(), EchoError> {
        whole_chunks(frame)?;
        for chunk in frame.chunks(CHUNK) {
            self.apm.process_render_i16(chunk, &mut self.scratch)?;
        }
        self.alignment.rendered(plays_at);
        self.stats.render_frames += 1;
        Ok(())
    }

    /// Cancels the echo in `frame` (captured at `captured`, processed at
    /// `now`) in place.
    pub fn capture(
        &mut self,
        frame: &mut [i16],
        captured: Instant,
        now: Instant,
    ) -> Result<(), EchoError> {
        whole_chunks(frame)?;
        let hint = self.alignment.hint(captured, now).as_millis() as i32;
        // In range by construction: a clamp report cannot happen.
        let _ = self.apm.set_stream_delay_ms(hint);
        for chunk in frame.chunks_mut(CHUNK) {
            self.scratch.copy_from_slice(chunk);
            self.apm.process_capture_i16(&self.scratch, chunk)?;
        }
        let s = self.apm.statistics();
        self.stats.erle_db = s.echo_return_loss_enhancement;
        self.stats.delay_ms = s.delay_ms;
        self.stats.hint_ms = hint;
        self.stats.frames += 1;
        Ok(())
    }

    pub fn stats(&self) -> EchoStats {
        self.stats
    }
}

fn whole_chunks(frame: &[i16]) -> Result<(), EchoError> {
    if frame.is_empty() || !frame.len().is_multiple_of(CHUNK) {
        return Err(EchoError::FrameLength(frame.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::room::{Room, trial};

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_hint_is_the_speakers_lead_plus_the_captures_age() {
        let t = Instant::now();
        let mut a = Alignment::default();
        // No speaker frame yet: the capture's age alone.
        assert_eq!(a.hint(t, t + 25 * MS), 25 * MS);
        // ALSA held 30 ms when the speaker wrote at t+10: it plays at t+40.
        // Handed over with the capture frame captured at t and processed at
        // t+22, it plays 18 ms later: 18 + 22.
        a.rendered(t + 40 * MS);
        assert_eq!(a.hint(t, t + 22 * MS), 40 * MS);
        // A newer frame replaces it; a capture processed later counts both
        // ways (the speaker's lead shrinks, the capture's age grows).
        a.rendered(t + 60 * MS);
        assert_eq!(a.hint(t + 20 * MS, t + 42 * MS), 40 * MS);
        assert_eq!(a.hint(t + 20 * MS, t + 50 * MS), 40 * MS);
    }

    #[test]
    fn the_hint_stays_within_what_aec3_takes() {
        let t = Instant::now() + Duration::from_secs(10);
        let mut a = Alignment::default();
        // A speaker frame handed over long after it played (a stalled
        // road): its lead is negative.
        a.rendered(t);
        assert_eq!(a.hint(t + 90 * MS, t + 100 * MS), Duration::ZERO);
        // A speaker buffer of a second.
        a.rendered(t + Duration::from_secs(1));
        assert_eq!(a.hint(t, t + 20 * MS), MAX_HINT);
    }

    #[test]
    fn frames_must_be_whole_10_ms_chunks() {
        let mut c = EchoCanceller::new();
        let t = Instant::now();
        let mut odd = vec![0i16; 500];
        assert_eq!(c.capture(&mut odd, t, t), Err(EchoError::FrameLength(500)));
        assert_eq!(c.render(&[], t), Err(EchoError::FrameLength(0)));
        let mut frame = vec![0i16; 960];
        c.render(&frame.clone(), t + 40 * MS).unwrap();
        c.capture(&mut frame, t, t + 21 * MS).unwrap();
        let s = c.stats();
        assert_eq!((s.frames, s.render_frames, s.hint_ms), (1, 1, 40));
    }

    /// The room: a talker on the speaker 40 ms (unreported) and a
    /// 60 ms reverberation away from the microphone, and the audio stamp as
    /// the talker in the room, 10 s in 20 ms frames fed as the threads do
    /// (`room.rs` says how, and which talker and why).
    #[test]
    fn a_rooms_echo_is_25_db_down_after_2_s_and_every_near_end_stamp_survives() {
        let room = Room::default();
        let t = trial(&room);
        let seconds: Vec<String> = t.seconds_db.iter().map(|d| format!("{d:.0}")).collect();
        eprintln!(
            "echo: {:.1} dB down after 2 s (each second: {}), {} of {} near-end stamps, \
             AEC3's ERLE {:?} dB, delay {:?} ms for a hint of {} ms",
            t.attenuation_db,
            seconds.join(" "),
            t.stamps_heard,
            t.stamps_sent,
            t.stats.erle_db.map(|e| e.round()),
            t.stats.delay_ms,
            t.stats.hint_ms,
        );
        assert!(t.attenuation_db >= 25.0, "{:.1} dB", t.attenuation_db);
        // Converged by the fourth second: each second from there on too.
        assert!(t.seconds_db[1..].iter().all(|&d| d.is_nan() || d >= 25.0));
        assert!(t.stamps_sent >= 15);
        assert_eq!(t.missing, Vec::<u16>::new(), "near-end stamps lost");
        assert_eq!(t.stamps_heard, t.stamps_sent);
    }
}
