//! The microphone's thread: 20 ms frames from ALSA (or the test stamp),
//! stamped with their capture time, through the echo canceller (fed the
//! speaker's frames just before each capture frame) or the half-duplex
//! gate, encoded once with Opus while anyone listens, and handed to the rtc
//! task without ever waiting on it (a full road drops the frame, counted).
//!
//! A missing, busy or vanished device is said once per reason (a log line,
//! the status viewers see) and opened again every [`RETRY`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use alsa::Direction;
use alsa::pcm::PCM;
use tokio::sync::{mpsc, watch};

use super::clock::{self, CaptureClock};
use super::device::{self, DeviceError, PERIOD, STALL};
use super::echo::{EchoCanceller, Reference};
use super::gate::{HalfDuplex, Voiced};
use super::opus::VoiceEncoder;
use super::stamp::StampSource;
use super::{AudioStats, EchoMode, EncodedAudio, FRAME, FRAME_TIME, RATE, level_dbov, unix_ns};
use crate::control::talk::{DeviceState, DeviceView};

/// How long after the speaker's last voiced frame plays its echo may still
/// be in the microphone (the room's reverberation, the devices' buffers):
/// the canceller's output is used until then.
const ECHO_RINGS: Duration = Duration::from_millis(500);

/// How often a missing device is looked for.
pub const RETRY: Duration = Duration::from_secs(2);
/// The capture buffer: 80 ms, room for a late wake-up or two.
const PERIODS: usize = 8;

/// When the test stamp's first sample is captured, on both clocks, from
/// the time it is asked at: the next 20 ms of the wall clock, so that every
/// stamp (one each 500 ms of it) starts on the first sample of a frame.
///
/// Any start would be a true capture time, but not every one encodes well:
/// libopus 1.6.1 at 32 kbit/s turns a stamp that starts 14.3-15.1 ms into a
/// frame into packets of up to 380 B whose sound clips, and the detector
/// then finds 2-8 stamps in 5 s instead of 10 (a CI run's aiortc test, and
/// 5 of 16 such runs on a busy machine). A test signal that is the same in
/// every run keeps a test from drawing that lot; voice has no such grid.
pub fn stamp_start(now: Instant, wall_ns: u64) -> (Instant, u64) {
    const FRAME_NS: u64 = FRAME_TIME.as_nanos() as u64;
    let wall0 = wall_ns.next_multiple_of(FRAME_NS);
    (now + Duration::from_nanos(wall0 - wall_ns), wall0)
}

/// Where the frames come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MicSource {
    /// The audio stamp rendered from the wall clock, paced like a device.
    Test,
    /// An ALSA PCM.
    Alsa(String),
}

impl MicSource {
    pub fn name(&self) -> &str {
        match self {
            MicSource::Test => "test",
            MicSource::Alsa(d) => d,
        }
    }
}

pub struct Microphone {
    pub source: MicSource,
    pub bitrate_kbps: u32,
    /// Off, cancel or half-duplex (resolved).
    pub echo: EchoMode,
    /// The speaker's frames, for the echo canceller.
    pub reference: Option<Receiver<Reference>>,
    /// Encoded frames for the rtc task.
    pub packets: mpsc::Sender<EncodedAudio>,
    pub status: watch::Sender<DeviceView>,
    /// Viewers receiving audio: no encode while it is 0.
    pub listeners: Arc<AtomicUsize>,
    pub speaker: Arc<Voiced>,
    pub stats: Arc<AudioStats>,
    pub stop: Arc<AtomicBool>,
    /// The recorder: while it is on, the microphone is encoded with or
    /// without listeners, and it gets every packet.
    pub record: Option<Arc<dyn super::AudioTap>>,
}

/// One frame as it leaves the device, before the gate and the encoder.
struct Captured<'a> {
    pcm: &'a mut [i16],
    /// Its capture time on the counted clock (RTP times, sender reports).
    at: Instant,
    /// What the device said of this very read ([`clock::measured`]): the
    /// echo control aligns to it, as the counted clock lags a glitch (the
    /// PulseAudio test saw it 400 ms off for the first 2 s of a call, and
    /// AEC3, started then, aligned its buffers to a 460 ms hint).
    heard: Instant,
    wall_ns: u64,
}

/// What keeps the echo out, per the mode: one of them runs.
struct EchoControl {
    gate: HalfDuplex,
    canceller: Option<EchoCanceller>,
    /// The canceller's output, beside the raw frame until it is known which
    /// one goes on (kept: no allocation per frame).
    cancelled: Vec<i16>,
}

impl EchoControl {
    fn new(mode: EchoMode) -> Self {
        EchoControl {
            gate: HalfDuplex::new(),
            canceller: (mode == EchoMode::Cancel).then(EchoCanceller::new),
            cancelled: Vec::with_capacity(FRAME),
        }
    }
}

impl Microphone {
    pub fn spawn(self) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("microphone".into())
            .spawn(move || self.run())
    }

    fn run(self) {
        let mut encoder = match VoiceEncoder::new(self.bitrate_kbps) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!("microphone: {e}; no sound for viewers");
                self.tell(DeviceState::Absent, Some(e.to_string()));
                return;
            }
        };
        let mut echo = EchoControl::new(self.echo);
        let mut last_problem = String::new();
        while !self.stop.load(Ordering::Relaxed) {
            let ended = match &self.source {
                MicSource::Test => {
                    self.tell(DeviceState::Open, None);
                    tracing::info!("microphone: the audio test stamp, 48 kHz mono");
                    self.test_stamp(&mut echo, &mut encoder);
                    return;
                }
                MicSource::Alsa(name) => self.alsa(name, &mut echo, &mut encoder),
            };
            let Err(problem) = ended else { return };
            let problem = problem.to_string();
            if problem != last_problem {
                tracing::warn!("microphone: {problem}; trying again every 2 s");
                last_problem = problem.clone();
            }
            self.tell(DeviceState::Absent, Some(problem));
            self.wait(RETRY);
        }
    }

    /// The test stamp: sample `i` is the stamp at `t0 + i / RATE`, and a
    /// frame is handed on when its last sample is due, as a device would.
    fn test_stamp(&self, echo: &mut EchoControl, encoder: &mut VoiceEncoder) {
        let (t0, wall0) = stamp_start(Instant::now(), unix_ns());
        let mut stamp = StampSource::new(wall0, RATE);
        let mut pcm = vec![0i16; FRAME];
        for n in 0u64.. {
            let first = t0 + FRAME_TIME * n as u32;
            sleep_until(first + FRAME_TIME);
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            stamp.next_frame(&mut pcm);
            let wall_ns = stamp.time_of(n * FRAME as u64);
            let frame = Captured {
                pcm: &mut pcm,
                at: first,
                heard: first,
                wall_ns,
            };
            self.deliver(frame, echo, encoder);
        }
    }

    /// An ALSA device, until it fails or the appliance stops.
    fn alsa(
        &self,
        name: &str,
        echo: &mut EchoControl,
        encoder: &mut VoiceEncoder,
    ) -> Result<(), DeviceError> {
        let pcm = device::open(name, Direction::Capture, PERIODS)?;
        let io_error = |e: alsa::Error| DeviceError::Io {
            device: name.into(),
            why: device::describe(&e),
        };
        pcm.start().map_err(io_error)?;
        tracing::info!("microphone: {name} open, 48 kHz mono, {PERIODS} periods of 10 ms");
        self.tell(DeviceState::Open, None);
        let mut clock = CaptureClock::new();
        let mut pcm_buf = vec![0i16; FRAME];
        let mut pace = Pace::new(Instant::now());
        for n in 1u64.. {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            self.read_frame(&pcm, name, &mut pcm_buf)?;
            let now = Instant::now();
            let queued = device::queued(&pcm);
            let at = clock.frame(now, FRAME, queued);
            let wall_ns =
                unix_ns().saturating_sub(now.saturating_duration_since(at).as_nanos() as u64);
            let frame = Captured {
                pcm: &mut pcm_buf,
                at,
                heard: clock::measured(now, FRAME, queued),
                wall_ns,
            };
            self.deliver(frame, echo, encoder);
            pace.frame_done(n, now);
        }
        Ok(())
    }

    /// Reads one whole frame, waiting at most [`STALL`] for progress.
    fn read_frame(&self, pcm: &PCM, name: &str, out: &mut [i16]) -> Result<(), DeviceError> {
        let io = pcm.io_i16().map_err(|e| DeviceError::Io {
            device: name.into(),
            why: device::describe(&e),
        })?;
        let mut filled = 0;
        let mut progress = Instant::now();
        while filled < out.len() {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            if progress.elapsed() >= STALL {
                return Err(DeviceError::Stalled {
                    device: name.into(),
                });
            }
            match io.readi(&mut out[filled..]) {
                Ok(n) if n > 0 => {
                    filled += n;
                    progress = Instant::now();
                }
                Ok(_) => wait_ready(pcm),
                Err(e) if e.errno() == libc::EAGAIN => wait_ready(pcm),
                Err(e) if e.errno() == libc::EPIPE || e.errno() == libc::ESTRPIPE => {
                    AudioStats::add(&self.stats.mic_overruns, 1);
                    pcm.try_recover(e, true).map_err(|e| DeviceError::Io {
                        device: name.into(),
                        why: device::describe(&e),
                    })?;
                    let _ = pcm.start();
                }
                Err(e) => {
                    return Err(DeviceError::Io {
                        device: name.into(),
                        why: device::describe(&e),
                    });
                }
            }
        }
        Ok(())
    }

    /// The canceller or the gate, then the encoder while anyone listens,
    /// then the rtc task.
    fn deliver(&self, frame: Captured<'_>, echo: &mut EchoControl, encoder: &mut VoiceEncoder) {
        AudioStats::add(&self.stats.mic_frames, 1);
        let listening = self.listeners.load(Ordering::Relaxed) > 0;
        if self.echo == EchoMode::HalfDuplex {
            let gate = &mut echo.gate;
            let muted = gate.muted_frames;
            gate.apply(frame.heard, self.speaker.last(), frame.pcm);
            AudioStats::add(&self.stats.mic_muted, gate.muted_frames - muted);
        }
        if let Some(canceller) = &mut echo.canceller {
            let out = &mut echo.cancelled;
            self.cancel(frame.pcm, frame.heard, canceller, out, listening);
        }
        if !listening && self.record.is_none() {
            return;
        }
        encoder.set_expected_loss(AudioStats::get(&self.stats.fec_loss_percent) as u8);
        let data = match encoder.encode(frame.pcm) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("microphone: {e}");
                return;
            }
        };
        AudioStats::add(&self.stats.mic_encoded, 1);
        let packet = EncodedAudio {
            data,
            captured: frame.at,
            wall_ns: frame.wall_ns,
            level: level_dbov(frame.pcm),
        };
        if let Some(r) = &self.record {
            r.encoded(&packet);
        }
        if listening && self.packets.try_send(packet).is_err() {
            AudioStats::add(&self.stats.mic_dropped, 1);
        }
    }

    /// Hands the speaker's frames written so far to the canceller, then
    /// cancels the echo in `pcm` (captured at `at`; `cancelled` is where
    /// the canceller writes before it is known whether that is used). While nobody listens
    /// the road is only emptied: cancelling what nobody hears would cost
    /// CPU for nothing (a viewer who talks back listens too, so the
    /// canceller is running before the speaker plays a voice).
    fn cancel(
        &self,
        pcm: &mut [i16],
        at: Instant,
        canceller: &mut EchoCanceller,
        cancelled: &mut Vec<i16>,
        listening: bool,
    ) {
        let Some(road) = &self.reference else { return };
        for reference in road.try_iter() {
            if listening && let Err(e) = canceller.render(&reference.pcm, reference.plays_at) {
                tracing::warn!("microphone: {e}");
            }
        }
        if !listening {
            canceller.idle();
            return;
        }
        // The canceller always runs (it stays aligned and converged), but
        // its output is used only while the speaker plays a voice or its
        // echo may still ring: with nothing playing there is no echo to
        // remove, and AEC3's suppressor still bit into a talker in the room
        // (the PulseAudio test heard 14 of 34 stamps with it on a silent
        // speaker).
        cancelled.clear();
        cancelled.extend_from_slice(pcm);
        if let Err(e) = canceller.capture(cancelled, at) {
            tracing::warn!("microphone: {e}");
        }
        let ringing = self
            .speaker
            .last()
            .is_some_and(|voiced| at.saturating_duration_since(voiced) < ECHO_RINGS);
        if ringing {
            pcm.copy_from_slice(cancelled);
        }
        self.publish(canceller);
    }

    /// The canceller's figures, for `/metrics` and the telemetry.
    fn publish(&self, canceller: &EchoCanceller) {
        let (e, s) = (canceller.stats(), &self.stats);
        s.echo_frames.store(e.frames, Ordering::Relaxed);
        s.echo_reference.store(e.render_frames, Ordering::Relaxed);
        s.echo_erle_db.set(e.erle_db.unwrap_or(f64::NAN));
        let delay = e.delay_ms.map_or(0, |d| d.max(0) as u64);
        s.echo_delay_ms.store(delay, Ordering::Relaxed);
        let t = e.timeline;
        s.echo_timeline_gaps.store(t.gaps, Ordering::Relaxed);
        s.echo_timeline_overlaps
            .store(t.overlaps, Ordering::Relaxed);
        s.echo_timeline_silence.store(t.silence, Ordering::Relaxed);
        s.echo_timeline_dropped.store(t.dropped, Ordering::Relaxed);
    }

    fn tell(&self, state: DeviceState, problem: Option<String>) {
        let view = DeviceView {
            state,
            device: Some(self.source.name().to_string()),
            problem,
        };
        self.status.send_if_modified(|v| {
            let changed = *v != view;
            *v = view;
            changed
        });
    }

    fn wait(&self, total: Duration) {
        let until = Instant::now() + total;
        while !self.stop.load(Ordering::Relaxed) && Instant::now() < until {
            // The speaker's frames meanwhile are stale by the time the
            // microphone is back.
            if let Some(road) = &self.reference {
                while road.try_recv().is_ok() {}
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A PCM with no clock of its own (a file, a null device) gives or takes
/// samples as fast as the program goes: once one has moved twice as fast as
/// real time it is paced by the system's clock. A device with a clock is
/// left to pace itself (its clock drifts from the system's; pacing it by
/// ours would overrun its buffer in the end).
#[derive(Debug)]
pub struct Pace {
    started: Instant,
    unpaced: bool,
}

impl Pace {
    pub fn new(started: Instant) -> Self {
        Pace {
            started,
            unpaced: false,
        }
    }

    /// Frame `n` (counting from 1) went through the device at `now`.
    pub fn frame_done(&mut self, n: u64, now: Instant) {
        let due = self.started + FRAME_TIME * n as u32;
        if !self.unpaced && n >= 25 {
            let took = now.saturating_duration_since(self.started);
            self.unpaced = took * 2 < FRAME_TIME * n as u32;
            if self.unpaced {
                tracing::info!(
                    "audio: the device has no clock of its own; pacing it by the system's"
                );
            }
        }
        if self.unpaced {
            sleep_until(due);
        }
    }
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

/// Waits for the device to have a period, at most 100 ms (so `stop` and
/// stalls are noticed).
fn wait_ready(pcm: &PCM) {
    if pcm.wait(Some(100)).is_err() {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// How many samples a period is (for the README's latency figures).
pub const fn period_ms() -> usize {
    PERIOD * 1000 / RATE as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::opus::{VoiceDecoder, VoiceEncoder};
    use crate::audio::stamp;

    /// What came out of Opus: each stamp's margin, and how many samples
    /// were at full scale.
    struct Heard {
        margins: Vec<f32>,
        clipped: usize,
    }

    impl Heard {
        /// At least `n` stamps, none under `margin_db`.
        fn holds(&self, n: usize, margin_db: f32) -> bool {
            self.margins.len() >= n && self.margins.iter().all(|&m| m >= margin_db)
        }
    }

    /// The test source started at `wall_ns` by [`stamp_start`], `frames`
    /// long, through the encoder (planning for `loss` %) and a decoder.
    fn through_opus(wall_ns: u64, loss: u8, frames: usize) -> Heard {
        let (_, wall0) = stamp_start(Instant::now(), wall_ns);
        let mut source = StampSource::new(wall0, RATE);
        let mut enc = VoiceEncoder::new(super::super::DEFAULT_BITRATE_KBPS).unwrap();
        enc.set_expected_loss(loss);
        let mut dec = VoiceDecoder::new().unwrap();
        let (mut pcm, mut out) = (vec![0i16; FRAME], Vec::new());
        for _ in 0..frames {
            source.next_frame(&mut pcm);
            let packet = enc.encode(&pcm).unwrap();
            let slot = crate::audio::jitter::Playout::Packet(packet.to_vec());
            out.extend_from_slice(dec.decode(&slot));
        }
        Heard {
            margins: stamp::detect_i16(&out, RATE)
                .iter()
                .map(|d| d.margin_db)
                .collect(),
            clipped: out.iter().filter(|s| s.unsigned_abs() >= 32_767).count(),
        }
    }

    #[test]
    fn the_test_stamp_starts_on_a_frame_of_both_clocks() {
        let now = Instant::now();
        let (t0, wall0) = stamp_start(now, 1_767_225_600_014_600_001);
        assert_eq!(wall0, 1_767_225_600_020_000_000);
        assert_eq!(t0 - now, Duration::from_nanos(5_399_999));
        // Already on a frame: no wait.
        assert_eq!(stamp_start(now, wall0), (now, wall0));
    }

    #[test]
    fn the_test_stamp_survives_opus_whenever_it_starts() {
        // Start times across a stamp's period (500 ms). Started at its own
        // time instead of on a frame, the fourth (7.38 ms into a frame) lost
        // stamps under FEC: 2 in 3 s. Eight starts, not 25: each takes 2 s
        // of a core under qemu-aarch64.
        let slot0 = 1_767_225_600_000_000_000u64;
        let starts = [0u64, 3, 7, 10, 14, 17, 20, 23]
            .map(|i| slot0 + i * 20_700_000 + (i * 137_931) % 1_000_000);
        for start in starts {
            let clean = through_opus(start, 0, 150);
            assert!(clean.holds(5, 20.0), "start {start}: {:?}", clean.margins);
            assert_eq!(clean.clipped, 0, "start {start}: {:?}", clean.margins);
            // In-band FEC for a lossy listener costs margin (and clips a
            // few samples) but no stamp.
            let fec = through_opus(start, 10, 150);
            assert!(fec.holds(5, 10.0), "start {start}, FEC: {:?}", fec.margins);
        }
    }
}
