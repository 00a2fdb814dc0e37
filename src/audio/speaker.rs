//! The speaker's thread: the talker's packets into the jitter buffer, one
//! 20 ms frame out of it whenever the device has room, decoded (FEC and
//! concealment on gaps) and written to ALSA with a short buffer.
//!
//! It plays silence while nobody talks, so its timing is steady when a
//! voice starts and the half-duplex gate knows when the speaker is voiced.
//! With the echo canceller, every frame written goes on to the
//! microphone's thread as its reference, with when ALSA will play it; a
//! full road drops it (counted), never waits.
//! A missing, busy or vanished device is said once per reason and opened
//! again every [`RETRY`]; the rtc task only ever `try_send`s to it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::{Duration, Instant};

use alsa::Direction;
use alsa::pcm::PCM;
use tokio::sync::watch;

use super::device::{self, DeviceError, STALL};
use super::echo::Reference;
use super::gate::Voiced;
use super::jitter::{JitterBuffer, Playout};
use super::mic::{Pace, RETRY};
use super::opus::VoiceDecoder;
use super::{AudioStats, SILENCE_DBOV, TalkPacket, duration_of, level_dbov};
use crate::control::talk::{DeviceState, DeviceView};

/// The playback buffer: four 10 ms periods. With a 20 ms frame written
/// whenever 20 ms are free, 20-40 ms are queued.
const PERIODS: usize = 4;

pub struct Speaker {
    pub device: String,
    pub packets: Receiver<TalkPacket>,
    pub status: watch::Sender<DeviceView>,
    pub voiced: Arc<Voiced>,
    /// The echo canceller's reference, when it runs.
    pub reference: Option<SyncSender<Reference>>,
    pub stats: Arc<AudioStats>,
    pub stop: Arc<AtomicBool>,
}

impl Speaker {
    pub fn spawn(self) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("speaker".into())
            .spawn(move || self.run())
    }

    fn run(self) {
        let mut decoder = match VoiceDecoder::new() {
            Ok(d) => d,
            Err(e) => {
                tracing::error!("speaker: {e}; viewers cannot talk");
                self.tell(DeviceState::Absent, Some(e.to_string()));
                return;
            }
        };
        let mut last_problem = String::new();
        while !self.stop.load(Ordering::Relaxed) {
            let Err(problem) = self.play(&mut decoder) else {
                return;
            };
            let problem = problem.to_string();
            if problem != last_problem {
                tracing::warn!("speaker: {problem}; trying again every 2 s");
                last_problem = problem.clone();
            }
            self.tell(DeviceState::Absent, Some(problem));
            let until = Instant::now() + RETRY;
            while !self.stop.load(Ordering::Relaxed) && Instant::now() < until {
                // What arrives meanwhile is stale by the time it could play.
                while self.packets.try_recv().is_ok() {}
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Plays until the device fails or the appliance stops.
    fn play(&self, decoder: &mut VoiceDecoder) -> Result<(), DeviceError> {
        let pcm = device::open(&self.device, Direction::Playback, PERIODS)?;
        tracing::info!(
            "speaker: {} open, 48 kHz mono, {PERIODS} periods of 10 ms",
            self.device
        );
        self.tell(DeviceState::Open, None);
        let mut jitter = JitterBuffer::new();
        let mut pace = Pace::new(Instant::now());
        for n in 1u64.. {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            for p in self.packets.try_iter() {
                jitter.push(p.arrived, p.seq, p.rtp_time, p.data);
            }
            let now = Instant::now();
            let slot = jitter.pop(now);
            // Skipped to shrink the delay: decoded all the same (their
            // sound dropped), so the next packet decodes from the right state.
            for skipped in jitter.take_skipped() {
                decoder.decode(&Playout::Packet(skipped));
            }
            let samples = decoder.decode(&slot);
            let plays_at = Instant::now() + duration_of(device::queued(&pcm) as u64);
            // The echo lasts from when the voice plays, not when it is decoded.
            if level_dbov(samples) < SILENCE_DBOV {
                self.voiced.mark(plays_at);
            }
            self.write(&pcm, samples)?;
            self.hand_on(samples, plays_at);
            self.count(&jitter, decoder);
            pace.frame_done(n, Instant::now());
        }
        Ok(())
    }

    /// Writes one frame, waiting at most [`STALL`] for room.
    fn write(&self, pcm: &PCM, samples: &[i16]) -> Result<(), DeviceError> {
        let io_error = |e: alsa::Error| DeviceError::Io {
            device: self.device.clone(),
            why: device::describe(&e),
        };
        let io = pcm.io_i16().map_err(io_error)?;
        let mut done = 0;
        let mut progress = Instant::now();
        while done < samples.len() {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            if progress.elapsed() >= STALL {
                return Err(DeviceError::Stalled {
                    device: self.device.clone(),
                });
            }
            match io.writei(&samples[done..]) {
                Ok(n) if n > 0 => {
                    done += n;
                    progress = Instant::now();
                }
                Ok(_) => wait_room(pcm),
                Err(e) if e.errno() == libc::EAGAIN => wait_room(pcm),
                Err(e) if e.errno() == libc::EPIPE || e.errno() == libc::ESTRPIPE => {
                    AudioStats::add(&self.stats.underruns, 1);
                    pcm.try_recover(e, true).map_err(io_error)?;
                }
                Err(e) => return Err(io_error(e)),
            }
        }
        Ok(())
    }

    /// The frame just written, to the echo canceller.
    fn hand_on(&self, samples: &[i16], plays_at: Instant) {
        let Some(road) = &self.reference else { return };
        let frame = Reference {
            pcm: samples.to_vec(),
            plays_at,
        };
        if road.try_send(frame).is_err() {
            AudioStats::add(&self.stats.echo_reference_dropped, 1);
        }
    }

    fn count(&self, jitter: &JitterBuffer, decoder: &VoiceDecoder) {
        let j = jitter.stats();
        let s = &self.stats;
        s.played.fetch_add(1, Ordering::Relaxed);
        s.concealed.store(decoder.concealed, Ordering::Relaxed);
        s.recovered.store(decoder.recovered, Ordering::Relaxed);
        s.late.store(j.late, Ordering::Relaxed);
        s.jitter_target_ms
            .store(j.target_ms as u64, Ordering::Relaxed);
        s.jitter_buffered_ms
            .store(j.buffered_ms as u64, Ordering::Relaxed);
    }

    fn tell(&self, state: DeviceState, problem: Option<String>) {
        let view = DeviceView {
            state,
            device: Some(self.device.clone()),
            problem,
        };
        self.status.send_if_modified(|v| {
            let changed = *v != view;
            *v = view;
            changed
        });
    }
}

/// Waits for room for a period, at most 100 ms.
fn wait_room(pcm: &PCM) {
    if pcm.wait(Some(100)).is_err() {
        std::thread::sleep(Duration::from_millis(10));
    }
}
