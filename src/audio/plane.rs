//! Starting the sound: which devices `auto` means, the microphone's and the
//! speaker's threads, and the roads between them and the rtc task.

use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, OnceLock};

use alsa::Direction;
use anyhow::Context;
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use super::device::Listed;
use super::gate::Voiced;
use super::mic::{MicSource, Microphone};
use super::speaker::Speaker;
use super::{AudioConfig, AudioIn, AudioOut, AudioStats, EchoMode, EncodedAudio, TalkPacket};
use crate::control::talk::{AudioView, DeviceState, DeviceView};

/// Encoded microphone frames waiting for the rtc task (320 ms).
const MIC_QUEUE: usize = 16;
/// Talk packets waiting for the speaker's thread (about a second).
const TALK_QUEUE: usize = 64;
/// Speaker frames waiting for the echo canceller (320 ms): the microphone's
/// thread takes them every 20 ms.
const REFERENCE_QUEUE: usize = 16;

/// The rtc task's side of the sound.
pub struct AudioRoad {
    /// The microphone, Opus-encoded, for every listener (a road whose
    /// sender is gone: no microphone).
    pub packets: mpsc::Receiver<EncodedAudio>,
    /// The talker's packets, for the speaker (`None`: no speaker).
    pub talk: Option<SyncSender<TalkPacket>>,
    /// Viewers receiving audio (the microphone encodes only while any do).
    pub listeners: Arc<AtomicUsize>,
    pub status: AudioStatus,
}

/// The sound as `/api/status`, `/metrics` and viewers see it.
#[derive(Clone)]
pub struct AudioStatus {
    pub microphone: watch::Receiver<DeviceView>,
    pub speaker: watch::Receiver<DeviceView>,
    /// The echo mode in force.
    pub echo: EchoMode,
    pub bitrate_kbps: u32,
    pub stats: Arc<AudioStats>,
    /// What ALSA lists, capture and playback devices: listed on the first
    /// report, not at start, since listing reads ALSA's configuration,
    /// which loads its plugins (PulseAudio's: libpulse and a dozen more
    /// libraries, 3 MB) that a camera with sound off would carry for good.
    pub listed: Arc<OnceLock<[Vec<Listed>; 2]>>,
}

/// `/api/status`'s `audio`.
#[derive(Debug, Serialize)]
pub struct AudioReport {
    pub microphone: DeviceView,
    pub speaker: DeviceView,
    pub echo: &'static str,
    pub codec: String,
    /// The devices ALSA lists, by the names the flags take.
    pub capture_devices: Vec<Listed>,
    pub playback_devices: Vec<Listed>,
}

impl AudioStatus {
    pub fn view(&self) -> AudioView {
        AudioView {
            microphone: self.microphone.borrow().clone(),
            speaker: self.speaker.borrow().clone(),
            echo: self.echo.name(),
        }
    }

    /// The report; the first one lists the devices, blocking (see
    /// [`report_listed`](Self::report_listed) for the runtime).
    pub fn report(&self) -> AudioReport {
        let [capture, playback] = self.devices();
        AudioReport {
            microphone: self.microphone.borrow().clone(),
            speaker: self.speaker.borrow().clone(),
            echo: self.echo.name(),
            codec: format!(
                "Opus 48 kHz mono, 20 ms frames, in-band FEC, {} kbit/s",
                self.bitrate_kbps
            ),
            capture_devices: capture.clone(),
            playback_devices: playback.clone(),
        }
    }

    /// [`report`](Self::report) from async code: the first listing, which
    /// may load ALSA's plugins, runs on a blocking thread.
    pub async fn report_listed(&self) -> AudioReport {
        if self.listed.get().is_none() {
            let status = self.clone();
            let _ = tokio::task::spawn_blocking(move || {
                status.devices();
            })
            .await;
        }
        self.report()
    }

    fn devices(&self) -> &[Vec<Listed>; 2] {
        self.listed.get_or_init(|| {
            [
                super::device::listed(Direction::Capture),
                super::device::listed(Direction::Playback),
            ]
        })
    }
}

pub struct AudioPlane {
    pub road: AudioRoad,
    pub threads: Vec<std::thread::JoinHandle<()>>,
}

/// Chooses the devices and starts their threads.
pub fn start(
    config: &AudioConfig,
    stop: Arc<AtomicBool>,
    record: Option<Arc<dyn super::AudioTap>>,
) -> anyhow::Result<AudioPlane> {
    let (mic_source, mic_note) = microphone(&config.input);
    let (speaker_device, speaker_note) = speaker(&config.output);
    let echo = config
        .echo
        .resolve(mic_source.is_some(), speaker_device.is_some());
    tracing::info!(
        "audio: microphone {}, speaker {}, echo {}",
        mic_source
            .as_ref()
            .map_or(mic_note.as_str(), MicSource::name),
        speaker_device.as_deref().unwrap_or(&speaker_note),
        echo.name()
    );
    let off = |note: String| DeviceView {
        state: DeviceState::Off,
        device: None,
        problem: Some(note),
    };
    let (mic_status, mic_rx) = watch::channel(off(mic_note));
    let (speaker_status, speaker_rx) = watch::channel(off(speaker_note));
    let (packets_tx, packets) = mpsc::channel(MIC_QUEUE);
    let stats = Arc::new(AudioStats::default());
    let voiced = Arc::new(Voiced::default());
    let listeners = Arc::new(AtomicUsize::new(0));
    let (reference_tx, reference) = match echo {
        EchoMode::Cancel => {
            let (tx, rx) = std::sync::mpsc::sync_channel(REFERENCE_QUEUE);
            (Some(tx), Some(rx))
        }
        _ => (None, None),
    };
    let mut threads = Vec::new();
    if let Some(source) = mic_source {
        let mic = Microphone {
            source,
            bitrate_kbps: config.bitrate_kbps,
            echo,
            reference,
            packets: packets_tx,
            status: mic_status,
            listeners: listeners.clone(),
            speaker: voiced.clone(),
            stats: stats.clone(),
            stop: stop.clone(),
            record,
        };
        threads.push(mic.spawn().context("starting the microphone thread")?);
    }
    let mut talk = None;
    if let Some(device) = speaker_device {
        let (tx, rx) = std::sync::mpsc::sync_channel(TALK_QUEUE);
        talk = Some(tx);
        let speaker = Speaker {
            device,
            packets: rx,
            status: speaker_status,
            voiced,
            reference: reference_tx,
            stats: stats.clone(),
            stop,
        };
        threads.push(speaker.spawn().context("starting the speaker thread")?);
    }
    let status = AudioStatus {
        microphone: mic_rx,
        speaker: speaker_rx,
        echo,
        bitrate_kbps: config.bitrate_kbps,
        stats,
        listed: Arc::default(),
    };
    Ok(AudioPlane {
        road: AudioRoad {
            packets,
            talk,
            listeners,
            status,
        },
        threads,
    })
}

/// The microphone `--audio-in` means, or why there is none.
fn microphone(input: &AudioIn) -> (Option<MicSource>, String) {
    match input {
        AudioIn::Off => (None, "off".into()),
        AudioIn::Test => (Some(MicSource::Test), "test".into()),
        AudioIn::Pcm(name) => (Some(MicSource::Alsa(name.clone())), name.clone()),
        AudioIn::Auto => match super::device::auto(Direction::Capture) {
            Some(name) => (Some(MicSource::Alsa(name.clone())), name),
            None => (None, "no capture device found (--audio-in auto)".into()),
        },
    }
}

/// The speaker `--audio-out` means, or why there is none.
fn speaker(output: &AudioOut) -> (Option<String>, String) {
    match output {
        AudioOut::Off => (None, "off".into()),
        AudioOut::Pcm(name) => (Some(name.clone()), name.clone()),
        AudioOut::Auto => match super::device::auto(Direction::Playback) {
            Some(name) => (Some(name.clone()), name),
            None => (None, "no playback device found (--audio-out auto)".into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sound_off_lists_no_devices_until_a_report_asks() {
        let config = AudioConfig {
            input: AudioIn::Off,
            output: AudioOut::Off,
            ..AudioConfig::default()
        };
        let plane = start(&config, Arc::new(AtomicBool::new(false)), None).unwrap();
        let status = plane.road.status;
        assert!(status.listed.get().is_none(), "not listed at start");
        let report = status.report_listed().await;
        let listed = status.listed.get().expect("listed by the report");
        assert_eq!(report.capture_devices, listed[0]);
        assert_eq!(report.playback_devices, listed[1]);
    }
}
