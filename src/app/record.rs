//! Starting motion detection and recording (`record/`): the motion
//! thread, the recorder thread and the disk thread, and what the HTTP plane
//! and the rtc task get of them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::mpsc as std_mpsc;

use tokio::sync::mpsc;

use crate::audio::AudioIn;
use crate::config::Config;
use crate::encode::pool::{EncodedTap, EncoderControl, PictureTap};
use crate::frame::{RawFrame, VideoCodec};
use crate::record::disk::{DiskThread, Wanted};
use crate::record::hook::Hook;
use crate::record::recorder::{Recorder, RecorderConfig};
use crate::record::status::RecordStatus;
use crate::record::tap::RecorderThread;
use crate::record::watch::{MotionTap, MotionThread, Zones};
use crate::record::{EventBoard, MotionNotice, RecordMode, RecordView};

pub struct RecordPlane {
    pub view: RecordView,
    pub threads: Vec<std::thread::JoinHandle<()>>,
    pub pictures: Option<Arc<dyn PictureTap>>,
    pub encoded: Option<Arc<dyn EncodedTap>>,
    pub audio: Option<Arc<dyn crate::audio::AudioTap>>,
    pub notices: mpsc::Receiver<MotionNotice>,
}

impl PictureTap for MotionTap {
    fn wants(&self) -> bool {
        MotionTap::wants(self)
    }
    fn offer(&self, frame: &Arc<RawFrame>) {
        MotionTap::offer(self, frame);
    }
}

/// Motion events a viewer has not been told yet, at most.
const NOTICES: usize = 16;

pub fn start(
    config: &Config,
    encoders: std_mpsc::SyncSender<EncoderControl>,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<RecordPlane> {
    let r = &config.record;
    let status = RecordStatus::new(r.mode, r.endurance_tbw);
    let events = EventBoard::default();
    let zones = Zones::load(&config.state_dir);
    let mut threads = Vec::new();
    // Clips a power cut or a crash left half written are cut back to their
    // last whole fragment (also when recording is off now).
    crate::record::disk::recover(&r.dir);
    let encoded = if r.mode == RecordMode::Off {
        None
    } else {
        let (tap, t) = start_recorder(config, &status, &events, encoders, stop)?;
        threads.extend(t);
        Some(tap)
    };
    let (notices_tx, notices) = mpsc::channel(NOTICES);
    let motion = r.motion || r.mode == RecordMode::Motion;
    let pictures: Option<Arc<dyn PictureTap>> = if motion {
        let hook = r.on_event.clone().map(Hook::start).transpose()?;
        let (tap, thread) = MotionThread {
            board: events.clone(),
            zones: zones.clone(),
            viewers: notices_tx,
            recorder: encoded.clone(),
            hook,
            stop: stop.clone(),
        }
        .spawn()?;
        threads.push(thread);
        Some(tap)
    } else {
        None
    };
    Ok(RecordPlane {
        view: RecordView {
            status,
            events,
            zones,
            dir: r.dir.clone(),
            motion,
        },
        threads,
        pictures,
        audio: encoded
            .clone()
            .map(|t| t as Arc<dyn crate::audio::AudioTap>),
        encoded: encoded.map(|t| t as Arc<dyn EncodedTap>),
        notices,
    })
}

type Started = (
    Arc<crate::record::RecordTap>,
    Vec<std::thread::JoinHandle<()>>,
);

fn start_recorder(
    config: &Config,
    status: &RecordStatus,
    events: &EventBoard,
    encoders: std_mpsc::SyncSender<EncoderControl>,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<Started> {
    let r = &config.record;
    // The default folder is ours to make; one the owner named must be
    // there (a USB disk that is not mounted must not fill the card).
    if r.dir == config.state_dir.join("recordings") {
        crate::state_dir::ensure_private_dir(&r.dir)?;
    }
    let (ops_tx, ops) = std_mpsc::channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let disk = DiskThread {
        dir: r.dir.clone(),
        wanted: Wanted {
            max_size: r.max_size,
            max_age: r.max_age,
            min_free: r.min_free,
        },
        status: status.clone(),
        ops,
        queued: queued.clone(),
    }
    .spawn()?;
    let (tap, recorder) = RecorderThread {
        recorder: Recorder::new(RecorderConfig {
            // A named microphone; `auto`'s is found later (a segment opened
            // before it was heard rolls over at the next keyframe).
            microphone: matches!(config.audio.input, AudioIn::Test | AudioIn::Pcm(_)),
            ..RecorderConfig::new(r.mode, r.pre, r.post, r.segment)
        }),
        status: status.clone(),
        events: events.clone(),
        disk: ops_tx,
        queued,
        keyframe: Box::new(move || {
            let _ = encoders.try_send(EncoderControl::Keyframe(VideoCodec::H264));
        }),
        broken: None,
        disk_queue: crate::record::tap::DISK_QUEUE,
        stop: stop.clone(),
    }
    .spawn()?;
    tracing::info!(
        "recording: {} into {} ({} s before, {} s after, segments of {} s)",
        r.mode,
        r.dir.display(),
        r.pre.as_secs_f64(),
        r.post.as_secs_f64(),
        r.segment.as_secs()
    );
    Ok((tap, vec![disk, recorder]))
}
