//! The echo canceller: WebRTC's AEC3 (`sonora`, pure Rust) removes what the
//! speaker played from what the microphone hears, with the speaker's
//! samples as the reference.
//!
//! AEC3 finds the echo's delay itself, by counting samples: the speaker's
//! frames reach it through a [`Timeline`] of when they play (from ALSA's
//! reported delays), handed over in step with the capture chunks (dated by
//! ALSA too), so the delay it sees is the room's whatever the threads did.
//! Only the canceller runs (and the high-pass filter AEC3 enforces): no
//! noise suppression or gain control, which would reshape the talker's
//! voice and break the audio stamp's tones that tests read.
//!
//! Outside, 20 ms frames of S16 at 48 kHz (ours); inside, AEC3's 10 ms.
//! The microphone's thread owns it: the speaker's frames reach it through a
//! bounded road and are handed over just before each capture frame.

use std::time::Instant;

use sonora::config::EchoCanceller as Aec3;
use sonora::{AudioProcessing, Config, StreamConfig};
use thiserror::Error;

use super::RATE;
use super::timeline::{CHUNK, CHUNK_TIME, Timeline, TimelineStats};

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
    /// AEC3's estimate of the echo's delay.
    pub delay_ms: Option<i32>,
    /// What the speaker's timeline made up for.
    pub timeline: TimelineStats,
}

/// AEC3 on 48 kHz mono, fed 20 ms frames.
pub struct EchoCanceller {
    apm: AudioProcessing,
    timeline: Timeline,
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
            timeline: Timeline::default(),
            scratch: [0; CHUNK],
            stats: EchoStats::default(),
        }
    }

    /// The speaker's samples as written, which play at `plays_at` (the
    /// write's time plus the delay ALSA reported). Handed to AEC3 with the
    /// capture chunks recorded while they play.
    pub fn render(&mut self, frame: &[i16], plays_at: Instant) -> Result<(), EchoError> {
        whole_chunks(frame)?;
        self.timeline.push(frame, plays_at);
        self.stats.render_frames += 1;
        Ok(())
    }

    /// Cancels the echo in `frame`, whose first sample was captured at
    /// `captured`, in place: before each of its chunks, AEC3 gets what the
    /// speaker played until that chunk ends.
    pub fn capture(&mut self, frame: &mut [i16], captured: Instant) -> Result<(), EchoError> {
        whole_chunks(frame)?;
        let mut ends = captured;
        for chunk in frame.chunks_mut(CHUNK) {
            ends += CHUNK_TIME;
            self.hand_render(ends)?;
            self.scratch.copy_from_slice(chunk);
            self.apm.process_capture_i16(&self.scratch, chunk)?;
        }
        let s = self.apm.statistics();
        self.stats.erle_db = s.echo_return_loss_enhancement;
        self.stats.delay_ms = s.delay_ms;
        self.stats.timeline = self.timeline.stats();
        self.stats.frames += 1;
        Ok(())
    }

    /// Nobody listens: what the speaker plays meanwhile is not handed over,
    /// and the timeline starts again with the next frame.
    pub fn idle(&mut self) {
        self.timeline.restart();
    }

    /// What played until `until`, to AEC3.
    fn hand_render(&mut self, until: Instant) -> Result<(), EchoError> {
        let (apm, scratch) = (&mut self.apm, &mut self.scratch);
        let mut result = Ok(());
        self.timeline.hand_until(until, |chunk| {
            if result.is_ok() {
                result = apm.process_render_i16(chunk, scratch);
            }
        });
        Ok(result?)
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
    use crate::audio::room::{Room, Stalls, trial};
    use std::time::Duration;

    #[test]
    fn frames_must_be_whole_10_ms_chunks() {
        let mut c = EchoCanceller::new();
        let t = Instant::now();
        let mut odd = vec![0i16; 500];
        assert_eq!(c.capture(&mut odd, t), Err(EchoError::FrameLength(500)));
        assert_eq!(c.render(&[], t), Err(EchoError::FrameLength(0)));
        let mut frame = vec![0i16; 960];
        c.render(&frame.clone(), t).unwrap();
        c.capture(&mut frame, t).unwrap();
        let s = c.stats();
        assert_eq!((s.frames, s.render_frames), (1, 1));
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
             AEC3's ERLE {:?} dB, delay {:?} ms",
            t.attenuation_db,
            seconds.join(" "),
            t.stamps_heard,
            t.stamps_sent,
            t.stats.erle_db.map(|e| e.round()),
            t.stats.delay_ms,
        );
        assert!(t.attenuation_db >= 25.0, "{:.1} dB", t.attenuation_db);
        // Converged by the fourth second: each second from there on too.
        assert!(t.seconds_db[1..].iter().all(|&d| d.is_nan() || d >= 25.0));
        assert!(t.stamps_sent >= 15);
        assert_eq!(t.missing, Vec::<u16>::new(), "near-end stamps lost");
        assert_eq!(t.stamps_heard, t.stamps_sent);
    }

    /// The same room on a busy CPU: the speaker's thread held up 60 ms
    /// every 1.1 s (it runs dry for 41 ms: silence plays that its frames do
    /// not show) and the microphone's 100 ms every 1.3 s (then it takes
    /// 100 ms of the speaker's frames at once).
    #[test]
    fn threads_held_up_on_a_busy_cpu_do_not_misalign_the_canceller() {
        let ms = |v| Duration::from_millis(v);
        let stalls = |every, length| Stalls {
            every: ms(every),
            length: ms(length),
        };
        for (speaker, mic) in [
            (Some(stalls(1100, 60)), None),
            (None, Some(stalls(1300, 100))),
            (Some(stalls(1100, 60)), Some(stalls(1300, 100))),
        ] {
            let room = Room {
                speaker_stalls: speaker,
                mic_stalls: mic,
                ..Room::default()
            };
            let t = trial(&room);
            let seconds: Vec<String> = t.seconds_db.iter().map(|d| format!("{d:.0}")).collect();
            eprintln!(
                "speaker {speaker:?}, microphone {mic:?}: {:.1} dB down after 2 s (each second: {}), \
                 {} of {} near-end stamps, timeline {:?}",
                t.attenuation_db,
                seconds.join(" "),
                t.stamps_heard,
                t.stamps_sent,
                t.stats.timeline,
            );
            assert!(t.attenuation_db >= 25.0, "{:.1} dB", t.attenuation_db);
            assert!(t.worst_second_db >= 20.0, "{:.1} dB", t.worst_second_db);
            assert_eq!(t.stamps_heard, t.stamps_sent);
        }
    }
}
