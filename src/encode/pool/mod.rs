//! The encoders as threads: one per codec in use, each fed the newest raw
//! frame, all feeding the rtc task. The IO shell around [`Demand`].
//!
//! The capture thread publishes each frame to a [`FrameTap`]; every running
//! encoder has a one-frame mailbox there that drops rather than queues, so a
//! slow encoder (VP8 on a small board) costs its own viewers frames, never
//! latency, and never the other codec's rate. The rtc task sends
//! [`EncoderControl`] messages (viewer counts, keyframe asks, bitrates);
//! the pool turns viewer counts into starts and stops. Everything ends when
//! the rtc task drops its sender: the pool returns, dropping each worker's
//! control sender, and each worker returns.
//!
//! Here the pool and what it makes encoders from; `tap.rs` where frames
//! come in, `worker.rs` and `forwarder.rs` the threads, `board.rs` what
//! they report.

mod board;
mod forwarder;
mod tap;
mod worker;

pub use board::{EncoderStatus, StatusBoard};
pub use tap::{EncodedTap, FrameTap, PictureTap};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc as tokio_mpsc;

use super::demand::{Action, Demand};
use super::openh264::OpenH264;
use super::v4l2m2m::Supervised;
use super::vp8::Vp8;
use super::{EncodeError, Encoder, EncoderSettings};
use crate::frame::{EncodedFrame, VideoCodec};
use forwarder::Forwarder;
use worker::{Running, Worker};

/// How long an encoder outlives its last viewer.
pub const GRACE: Duration = Duration::from_secs(5);
/// The longest a worker waits for a frame before looking at its controls.
const IDLE_POLL: Duration = Duration::from_millis(200);
/// How often the pool looks for a worker that died while its codec still
/// has viewers, and the least time between two starts of one codec.
const RESTART_AFTER: Duration = Duration::from_secs(2);

/// What the rtc task tells the encoders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncoderControl {
    /// This many viewers are bound to the codec now.
    Viewers(VideoCodec, usize),
    /// A viewer of this codec needs a keyframe (throttled by the encoder).
    Keyframe(VideoCodec),
    /// A new target for this codec's encoder, without a keyframe.
    Bitrate(VideoCodec, u32),
}

/// Which H.264 implementation runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum H264Plan {
    OpenH264,
    /// The hardware encoder; openh264 stands in while it is failed, and
    /// it is tried again until it works ([`Supervised`]).
    V4l2M2m(PathBuf),
    /// The camera's own H.264, forwarded (`passthrough`).
    Passthrough,
}

/// Makes each codec's encoder, and the fallback when hardware fails.
#[derive(Debug, Clone)]
pub struct Factory {
    pub h264: H264Plan,
    pub h264_settings: EncoderSettings,
    pub vp8_settings: EncoderSettings,
}

impl Factory {
    pub fn make(&self, codec: VideoCodec) -> Result<Encoder, EncodeError> {
        Ok(Encoder::new(match (codec, &self.h264) {
            (VideoCodec::Vp8, _) => Box::new(Vp8::new(self.vp8_settings)?),
            (VideoCodec::H264, H264Plan::Passthrough) => {
                return Err(EncodeError::Passthrough);
            }
            (VideoCodec::H264, H264Plan::OpenH264) => Box::new(OpenH264::new(self.h264_settings)?),
            (VideoCodec::H264, H264Plan::V4l2M2m(path)) => {
                Box::new(Supervised::open(path, self.h264_settings)?)
            }
        }))
    }

    /// What replaces an encoder that failed as a whole. The hardware
    /// encoder's own failures are covered inside [`Supervised`]; this is
    /// for its openh264 failing too: a fresh supervisor on openh264 that
    /// still tries the hardware later, never openh264 for good.
    pub fn fallback(&self, codec: VideoCodec) -> Option<Encoder> {
        match (codec, &self.h264) {
            (VideoCodec::H264, H264Plan::V4l2M2m(path)) => {
                Supervised::standing_in(path, self.h264_settings)
                    .map(|e| Encoder::new(Box::new(e)))
                    .map_err(|e| tracing::error!("the openh264 fallback failed too: {e}"))
                    .ok()
            }
            _ => None,
        }
    }

    /// The size an encoder of `codec` works at.
    pub fn settings(&self, codec: VideoCodec) -> EncoderSettings {
        match codec {
            VideoCodec::H264 => self.h264_settings,
            VideoCodec::Vp8 => self.vp8_settings,
        }
    }
}

/// Everything the pool thread owns.
pub struct Pool {
    pub factory: Arc<Factory>,
    pub tap: Arc<FrameTap>,
    pub board: StatusBoard,
    pub control: Receiver<EncoderControl>,
    pub frames: tokio_mpsc::Sender<EncodedFrame>,
    /// The recorder: while it is on, the H.264 encoder runs with or
    /// without viewers, and it gets every H.264 frame.
    pub record: Option<Arc<dyn EncodedTap>>,
}

/// A worker's own control road.
enum WorkerControl {
    Keyframe,
    Bitrate(u32),
}

impl Pool {
    pub fn spawn(self) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("encoders".into())
            .spawn(move || self.run())
    }

    fn run(self) {
        let mut demand = Demand::new(GRACE);
        let mut workers: BTreeMap<VideoCodec, Running> = BTreeMap::new();
        // The bitrate policy's latest target per codec: an encoder that
        // starts (or restarts) starts there, not at its ceiling.
        let mut targets: BTreeMap<VideoCodec, u32> = BTreeMap::new();
        // The recorder counts as one more H.264 viewer, always there.
        let standing = usize::from(self.record.is_some());
        demand.set_viewers(Instant::now(), VideoCodec::H264, standing);
        loop {
            let now = Instant::now();
            let wait = demand
                .poll_timeout()
                .map_or(RESTART_AFTER, |t| t.saturating_duration_since(now))
                .min(RESTART_AFTER);
            match self.control.recv_timeout(wait) {
                Ok(EncoderControl::Viewers(codec, n)) => {
                    let extra = if codec == VideoCodec::H264 {
                        standing
                    } else {
                        0
                    };
                    demand.set_viewers(Instant::now(), codec, n + extra);
                    self.board.update(codec, |s| s.viewers = n);
                }
                Ok(EncoderControl::Keyframe(codec)) => {
                    if let Some(w) = workers.get(&codec) {
                        let _ = w.control.send(WorkerControl::Keyframe);
                    }
                }
                Ok(EncoderControl::Bitrate(codec, kbps)) => {
                    targets.insert(codec, kbps);
                    if let Some(w) = workers.get(&codec) {
                        let _ = w.control.send(WorkerControl::Bitrate(kbps));
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            demand.handle_timeout(Instant::now());
            while let Some(action) = demand.poll_action() {
                match action {
                    Action::Start(codec) => {
                        if let Some(w) = self.start(codec, demand.viewers(codec), &targets) {
                            workers.insert(codec, w);
                        }
                    }
                    Action::Stop(codec) => {
                        let what = match (codec, &self.factory.h264) {
                            (VideoCodec::H264, H264Plan::Passthrough) => "passthrough",
                            _ => "encoder",
                        };
                        tracing::info!("{codec} {what} stopped: no viewers for {GRACE:?}");
                        workers.remove(&codec);
                        self.board.stopped(codec);
                    }
                }
            }
            self.restart_dead(&demand, &mut workers, &targets);
        }
    }

    /// A worker that ended by itself (its encoder did not open, or it
    /// panicked) while its codec still has viewers is started again, at most
    /// once per `RESTART_AFTER`: its viewers must not wait for all of them to
    /// leave first.
    fn restart_dead(
        &self,
        demand: &Demand,
        workers: &mut BTreeMap<VideoCodec, Running>,
        targets: &BTreeMap<VideoCodec, u32>,
    ) {
        for codec in VideoCodec::ALL {
            let missing = match workers.get(&codec) {
                None => true,
                Some(w) => w.thread.is_finished() && w.started.elapsed() >= RESTART_AFTER,
            };
            if !demand.is_running(codec) || !missing {
                continue;
            }
            self.board.stopped(codec);
            tracing::warn!("{codec} encoder is not running while viewers wait: starting it again");
            match self.start(codec, demand.viewers(codec), targets) {
                Some(w) => workers.insert(codec, w),
                None => workers.remove(&codec),
            };
        }
    }

    fn start(
        &self,
        codec: VideoCodec,
        viewers: usize,
        targets: &BTreeMap<VideoCodec, u32>,
    ) -> Option<Running> {
        if codec == VideoCodec::H264 && self.factory.h264 == H264Plan::Passthrough {
            return self.start_forwarder(viewers);
        }
        let running = self.start_encoder(codec, viewers)?;
        if let Some(&kbps) = targets.get(&codec) {
            let _ = running.control.send(WorkerControl::Bitrate(kbps));
        }
        Some(running)
    }

    fn start_encoder(&self, codec: VideoCodec, viewers: usize) -> Option<Running> {
        let (tx, rx) = mpsc::channel();
        let worker = Worker {
            codec,
            factory: self.factory.clone(),
            board: self.board.clone(),
            input: self.tap.subscribe(codec),
            control: rx,
            frames: self.frames.clone(),
            record: self.record_tap(codec),
            viewers,
        };
        Running::spawn(format!("encode-{codec}"), tx, move || worker.run())
    }
}

impl Pool {
    fn record_tap(&self, codec: VideoCodec) -> Option<Arc<dyn EncodedTap>> {
        self.record.clone().filter(|_| codec == VideoCodec::H264)
    }

    fn start_forwarder(&self, viewers: usize) -> Option<Running> {
        let (tx, rx) = mpsc::channel();
        let forwarder = Forwarder {
            tap: self.tap.clone(),
            board: self.board.clone(),
            input: self.tap.subscribe_coded(),
            control: rx,
            frames: self.frames.clone(),
            record: self.record_tap(VideoCodec::H264),
            settings: self.factory.h264_settings,
            viewers,
        };
        Running::spawn("passthrough".into(), tx, move || forwarder.run())
    }
}
