//! The device's sound: the microphone to every viewer (one Opus encode,
//! fanned out like video) and one viewer's voice to the speaker.
//!
//! ```text
//! microphone thread (mic.rs): ALSA or the test stamp -> echo canceller or gate -> Opus -> rtc task
//! rtc task -> talk packets -> speaker thread (speaker.rs): jitter buffer -> Opus -> ALSA
//!                                     speaker thread -> what it wrote -> echo canceller
//! ```
//! What decides anything is sans-IO and tested on simulated time: the
//! jitter buffer (`jitter/`), the half-duplex gate (`gate.rs`), the
//! capture clock (`clock.rs`), the echo canceller's alignment (`echo.rs`,
//! tested in a simulated room, `room.rs`), the loss the encoder's FEC plans
//! for (`fec.rs`); the threads around them are thin.

pub mod clock;
pub mod device;
pub mod echo;
pub mod fec;
pub mod gate;
pub mod jitter;
pub mod mic;
pub mod opus;
pub mod plane;
pub mod room;
pub mod speaker;
pub mod stamp;
pub mod timeline;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Everything runs at 48 kHz mono: Opus's native rate, what WebRTC sends.
pub const RATE: u32 = 48_000;
/// One Opus frame: 20 ms.
pub const FRAME: usize = 960;
/// `FRAME` as a duration.
pub const FRAME_TIME: std::time::Duration = std::time::Duration::from_millis(20);

/// 20 ms of the microphone, Opus-encoded, for every listener.
#[derive(Debug, Clone)]
pub struct EncodedAudio {
    pub data: Arc<[u8]>,
    /// Monotonic capture time of its first sample: on the same clock as
    /// video frames' `captured`, so RTP times and sender reports line up.
    pub captured: Instant,
    /// Wall-clock capture time of its first sample (Unix ns).
    pub wall_ns: u64,
    /// RFC 6464 level, -dBov (0 loudest, 127 silence).
    pub level: u8,
}

/// A consumer of the microphone's packets beside the viewers (the
/// recorder): handed each one, it must never wait.
pub trait AudioTap: Send + Sync {
    fn encoded(&self, packet: &EncodedAudio);
}

/// A packet of a talking viewer's voice, for the speaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TalkPacket {
    /// RTP sequence number and time (48 kHz), extended to 64 bits.
    pub seq: u64,
    pub rtp_time: u64,
    pub data: Vec<u8>,
    pub arrived: Instant,
}

/// Where the microphone comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AudioIn {
    /// The first capture device that is not HDMI, else none.
    #[default]
    Auto,
    Off,
    /// The audio stamp (`stamp.rs`), paced like a microphone.
    Test,
    /// An ALSA PCM name, e.g. `plughw:CARD=Device,DEV=0`.
    Pcm(String),
}

impl FromStr for AudioIn {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.trim() {
            "auto" => AudioIn::Auto,
            "off" => AudioIn::Off,
            "test" => AudioIn::Test,
            "" => return Err("audio-in: expected auto, off, test or an ALSA PCM name".into()),
            pcm => AudioIn::Pcm(pcm.to_string()),
        })
    }
}

/// Where a viewer's voice is played.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AudioOut {
    /// The first playback device that is not HDMI, else none.
    #[default]
    Auto,
    Off,
    Pcm(String),
}

impl FromStr for AudioOut {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.trim() {
            "auto" => AudioOut::Auto,
            "off" => AudioOut::Off,
            "" => return Err("audio-out: expected auto, off or an ALSA PCM name".into()),
            pcm => AudioOut::Pcm(pcm.to_string()),
        })
    }
}

/// What keeps the speaker's sound out of the microphone's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EchoMode {
    /// Half-duplex when the device has both a microphone and a speaker
    /// (see [`EchoMode::resolve`]).
    #[default]
    Auto,
    /// The echo canceller (`echo.rs`): both ways at once.
    Cancel,
    /// The microphone's stream is muted while the speaker plays a voice
    /// (what intercoms without a canceller do).
    HalfDuplex,
    Off,
}

impl FromStr for EchoMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "auto" => Ok(EchoMode::Auto),
            "cancel" => Ok(EchoMode::Cancel),
            "half-duplex" => Ok(EchoMode::HalfDuplex),
            "off" => Ok(EchoMode::Off),
            other => Err(format!(
                "echo: '{other}': expected auto, cancel, half-duplex or off"
            )),
        }
    }
}

impl EchoMode {
    /// The mode in force once the devices are known: with no speaker or
    /// no microphone there is no echo to keep out. `auto` is half-duplex:
    /// the canceller takes 39-65 dB off the PulseAudio test's echo path
    /// once converged, but needs 2-3 s of a viewer's voice to get there
    /// and has not run on a Pi (README "Audio").
    pub fn resolve(self, mic: bool, speaker: bool) -> EchoMode {
        match self {
            _ if !(mic && speaker) => EchoMode::Off,
            EchoMode::Auto => EchoMode::HalfDuplex,
            m => m,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            EchoMode::Auto => "auto",
            EchoMode::Cancel => "cancel",
            EchoMode::HalfDuplex => "half-duplex",
            EchoMode::Off => "off",
        }
    }
}

/// The sound settings, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioConfig {
    pub input: AudioIn,
    pub output: AudioOut,
    /// Opus bitrate, kbit/s.
    pub bitrate_kbps: u32,
    pub echo: EchoMode,
}

impl Default for AudioConfig {
    fn default() -> Self {
        AudioConfig {
            input: AudioIn::Auto,
            output: AudioOut::Auto,
            bitrate_kbps: DEFAULT_BITRATE_KBPS,
            echo: EchoMode::Auto,
        }
    }
}

/// A voice bitrate: wideband speech with room for in-band FEC.
pub const DEFAULT_BITRATE_KBPS: u32 = 32;

/// RFC 6464 level (-dBov, 0..=127) of S16 samples.
pub fn level_dbov(samples: &[i16]) -> u8 {
    if samples.is_empty() {
        return 127;
    }
    let energy: f64 = samples.iter().map(|&s| (s as f64).powi(2)).sum();
    let rms = (energy / samples.len() as f64).sqrt() / 32768.0;
    if rms <= 0.0 {
        return 127;
    }
    (-20.0 * rms.log10()).clamp(0.0, 127.0) as u8
}

/// A level below this (-dBov) is silence: room noise, a muted track.
pub const SILENCE_DBOV: u8 = 60;

/// What the sound threads count, read by `/metrics`, `/api/status` and the
/// viewers' telemetry.
#[derive(Debug, Default)]
pub struct AudioStats {
    /// Microphone frames captured, encoded, and lost because the rtc task
    /// was not taking them; capture overruns (the device's buffer filled).
    pub mic_frames: AtomicU64,
    pub mic_encoded: AtomicU64,
    pub mic_dropped: AtomicU64,
    pub mic_overruns: AtomicU64,
    /// Frames muted by half-duplex.
    pub mic_muted: AtomicU64,
    /// Talk packets that reached the speaker's thread, and those the rtc
    /// task had to drop (its queue full).
    pub talk_packets: AtomicU64,
    pub talk_dropped: AtomicU64,
    /// Speaker frames played, concealed, recovered by FEC; playback
    /// underruns; packets late for their slot.
    pub played: AtomicU64,
    pub concealed: AtomicU64,
    pub recovered: AtomicU64,
    pub underruns: AtomicU64,
    pub late: AtomicU64,
    /// The jitter buffer's target and what it holds, ms.
    pub jitter_target_ms: AtomicU64,
    pub jitter_buffered_ms: AtomicU64,
    /// The echo canceller: microphone frames cancelled, speaker frames
    /// taken as its reference, and speaker frames dropped on the way (the
    /// road to the microphone's thread full).
    pub echo_frames: AtomicU64,
    pub echo_reference: AtomicU64,
    pub echo_reference_dropped: AtomicU64,
    /// AEC3's echo return loss enhancement, dB (NaN until it has one).
    pub echo_erle_db: Gauge,
    /// AEC3's estimate of the echo's delay, ms.
    pub echo_delay_ms: AtomicU64,
    /// What the speaker's timeline made up for (`timeline.rs`): gaps and
    /// overlaps, and 10 ms chunks of silence handed over or dropped.
    pub echo_timeline_gaps: AtomicU64,
    pub echo_timeline_overlaps: AtomicU64,
    pub echo_timeline_silence: AtomicU64,
    pub echo_timeline_dropped: AtomicU64,
    /// The loss the encoder's in-band FEC plans for, percent (`fec.rs`,
    /// set by the rtc task from the listeners' reports).
    pub fec_loss_percent: AtomicU64,
}

impl AudioStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// A measure that is not a count, shared between threads: f64 bits in an
/// atomic, NaN until set.
#[derive(Debug)]
pub struct Gauge(AtomicU64);

impl Default for Gauge {
    fn default() -> Self {
        Gauge(AtomicU64::new(f64::NAN.to_bits()))
    }
}

impl Gauge {
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }

    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }
}

/// How long `samples` last at [`RATE`].
pub fn duration_of(samples: u64) -> std::time::Duration {
    std::time::Duration::from_nanos(samples * 1_000_000_000 / RATE as u64)
}

/// Unix time now, in nanoseconds.
pub fn unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_parse_and_auto_cancels_when_there_is_an_echo() {
        assert_eq!("test".parse::<AudioIn>(), Ok(AudioIn::Test));
        assert_eq!(
            "plughw:CARD=Device,DEV=0".parse::<AudioIn>(),
            Ok(AudioIn::Pcm("plughw:CARD=Device,DEV=0".into()))
        );
        assert_eq!("off".parse::<AudioOut>(), Ok(AudioOut::Off));
        assert!("".parse::<AudioOut>().is_err());
        assert_eq!("half-duplex".parse::<EchoMode>(), Ok(EchoMode::HalfDuplex));
        assert_eq!("cancel".parse::<EchoMode>(), Ok(EchoMode::Cancel));
        assert!("aec".parse::<EchoMode>().is_err());
        assert_eq!(EchoMode::Auto.resolve(true, true), EchoMode::HalfDuplex);
        assert_eq!(EchoMode::Cancel.resolve(true, true), EchoMode::Cancel);
        assert_eq!(EchoMode::Auto.resolve(true, false), EchoMode::Off);
        assert_eq!(EchoMode::Cancel.resolve(false, true), EchoMode::Off);
        assert_eq!(
            EchoMode::HalfDuplex.resolve(true, true),
            EchoMode::HalfDuplex
        );
        assert!(AudioStats::default().echo_erle_db.get().is_nan());
    }

    #[test]
    fn levels_follow_rfc6464() {
        assert_eq!(level_dbov(&[0; 960]), 127);
        let full: Vec<i16> = (0..960)
            .map(|i| if i % 2 == 0 { 32767 } else { -32767 })
            .collect();
        assert_eq!(level_dbov(&full), 0);
        let quiet = vec![33i16; 960]; // about -60 dBov
        assert!((59..=60).contains(&level_dbov(&quiet)));
    }
}
