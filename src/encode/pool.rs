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

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc as tokio_mpsc;

use super::demand::{Action, Demand};
use super::jpeg::Snapshots;
use super::openh264::OpenH264;
use super::passthrough::Passthrough;
use super::v4l2m2m::Supervised;
use super::vp8::Vp8;
use super::{EncodeError, Encoder, EncoderSettings};
use crate::capture::run::FrameSink;
use crate::frame::{CodedChunk, EncodedFrame, RawFrame, VideoCodec};

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

/// One running encoder, as `/api/status` lists it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EncoderStatus {
    pub codec: VideoCodec,
    pub implementation: String,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub bitrate_kbps: u32,
    pub viewers: usize,
    /// Frames the encoder was too slow to take.
    pub frames_dropped: u64,
    /// Frames encoded, and the time spent encoding them (seconds).
    pub frames_encoded: u64,
    pub encode_seconds: f64,
}

/// The running encoders, shared with the HTTP plane.
#[derive(Debug, Clone, Default)]
pub struct StatusBoard(Arc<Mutex<BTreeMap<VideoCodec, EncoderStatus>>>);

impl StatusBoard {
    pub fn snapshot(&self) -> Vec<EncoderStatus> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<VideoCodec, EncoderStatus>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, codec: VideoCodec, f: impl FnOnce(&mut EncoderStatus)) {
        if let Some(s) = self.lock().get_mut(&codec) {
            f(s);
        }
    }

    fn running(&self, enc: &Encoder, viewers: usize) {
        let s = enc.settings();
        self.lock().insert(
            enc.codec(),
            EncoderStatus {
                codec: enc.codec(),
                implementation: enc.implementation(),
                width: s.width,
                height: s.height,
                fps: s.fps,
                bitrate_kbps: s.bitrate_kbps,
                viewers,
                frames_dropped: 0,
                frames_encoded: 0,
                encode_seconds: 0.0,
            },
        );
    }

    fn passthrough(&self, s: EncoderSettings, viewers: usize) {
        self.lock().insert(
            VideoCodec::H264,
            EncoderStatus {
                codec: VideoCodec::H264,
                implementation: "passthrough (the camera's own H.264)".into(),
                width: s.width,
                height: s.height,
                fps: s.fps,
                bitrate_kbps: 0,
                viewers,
                frames_dropped: 0,
                frames_encoded: 0,
                encode_seconds: 0.0,
            },
        );
    }

    fn stopped(&self, codec: VideoCodec) {
        self.lock().remove(&codec);
    }
}

/// A consumer of encoded frames beside the viewers (the recorder): handed
/// each one, it must never wait.
pub trait EncodedTap: Send + Sync {
    fn encoded(&self, frame: &EncodedFrame);
}

/// A consumer of pictures beside the encoders (motion detection), at its
/// own rate: it must never wait.
pub trait PictureTap: Send + Sync {
    /// Whether it wants the next picture (an MJPEG camera decodes one).
    fn wants(&self) -> bool;
    fn offer(&self, frame: &Arc<RawFrame>);
}

/// Where the capture thread hands each frame to every running encoder, and
/// passthrough H.264 to its forwarder.
#[derive(Default)]
pub struct FrameTap {
    mailboxes: Mutex<Vec<(VideoCodec, SyncSender<Arc<RawFrame>>)>>,
    /// The passthrough forwarder's queue, while it runs.
    coded: Mutex<Option<SyncSender<CodedChunk>>>,
    /// A chunk was dropped (the forwarder was behind): the stream is broken
    /// until the next IDR.
    coded_lost: AtomicBool,
    keyframe: AtomicBool,
    board: StatusBoard,
    /// The next picture, for `/api/snapshot.jpg`.
    snapshots: Arc<Snapshots>,
    /// Motion detection's pictures.
    watcher: Option<Arc<dyn PictureTap>>,
}

/// Camera H.264 waiting for the forwarder: a second or so at 30 fps. More
/// would only be latency; fewer drops at the forwarder's first hiccup.
const CODED_QUEUE: usize = 32;

impl FrameSink for FrameTap {
    fn picture(&self, frame: &Arc<RawFrame>) {
        self.snapshots.offer(frame);
        if let Some(w) = &self.watcher {
            w.offer(frame);
        }
        self.publish(frame);
    }

    fn coded(&self, chunk: CodedChunk) {
        let mut slot = self.coded.lock().unwrap_or_else(|p| p.into_inner());
        let Some(tx) = slot.as_ref() else {
            return;
        };
        match tx.try_send(chunk) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.coded_lost.store(true, Ordering::Relaxed);
                self.board
                    .update(VideoCodec::H264, |s| s.frames_dropped += 1);
            }
            Err(TrySendError::Disconnected(_)) => *slot = None,
        }
    }

    fn wants_pictures(&self) -> bool {
        self.snapshots.wanted()
            || self.watcher.as_ref().is_some_and(|w| w.wants())
            || !self
                .mailboxes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_empty()
    }

    fn take_keyframe_request(&self) -> bool {
        self.keyframe.swap(false, Ordering::Relaxed)
    }
}

impl FrameTap {
    pub fn new(board: StatusBoard, watcher: Option<Arc<dyn PictureTap>>) -> Self {
        FrameTap {
            board,
            snapshots: Arc::new(Snapshots::new()),
            watcher,
            ..FrameTap::default()
        }
    }

    /// Where `/api/snapshot.jpg` takes its picture.
    pub fn snapshots(&self) -> Arc<Snapshots> {
        self.snapshots.clone()
    }

    fn subscribe_coded(&self) -> Receiver<CodedChunk> {
        let (tx, rx) = mpsc::sync_channel(CODED_QUEUE);
        *self.coded.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
        self.coded_lost.store(false, Ordering::Relaxed);
        rx
    }

    /// Offers the frame to every encoder; one still busy with the last
    /// frame misses this one. Returns how many took it.
    pub fn publish(&self, frame: &Arc<RawFrame>) -> usize {
        let mut boxes = self.mailboxes.lock().unwrap_or_else(|p| p.into_inner());
        let mut took = 0;
        boxes.retain(|(codec, tx)| match tx.try_send(frame.clone()) {
            Ok(()) => {
                took += 1;
                true
            }
            Err(TrySendError::Full(_)) => {
                self.board.update(*codec, |s| s.frames_dropped += 1);
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        });
        took
    }

    fn subscribe(&self, codec: VideoCodec) -> Receiver<Arc<RawFrame>> {
        let (tx, rx) = mpsc::sync_channel(1);
        let mut boxes = self.mailboxes.lock().unwrap_or_else(|p| p.into_inner());
        boxes.push((codec, tx));
        rx
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

/// H.264 passthrough's thread: the camera's stream cut into access units
/// (SPS and PPS before every IDR), to the rtc task. It starts, like an
/// encoder, with the first viewer, and drops everything before the next
/// IDR; it asks the camera for one, which only some cameras can give.
struct Forwarder {
    tap: Arc<FrameTap>,
    board: StatusBoard,
    input: Receiver<CodedChunk>,
    control: Receiver<WorkerControl>,
    frames: tokio_mpsc::Sender<EncodedFrame>,
    record: Option<Arc<dyn EncodedTap>>,
    settings: EncoderSettings,
    viewers: usize,
}

impl Forwarder {
    fn run(self) {
        self.board.passthrough(self.settings, self.viewers);
        tracing::info!("H.264 passthrough started: the camera's stream goes to viewers as it is");
        self.tap.keyframe.store(true, Ordering::Relaxed);
        let mut stream = Passthrough::new();
        let mut errors = 0u64;
        let mut seq = 0u64;
        loop {
            let chunk = match self.input.recv_timeout(IDLE_POLL) {
                Ok(c) => Some(c),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            if !self.apply_controls() {
                return;
            }
            let Some(chunk) = chunk else { continue };
            if self.tap.coded_lost.swap(false, Ordering::Relaxed) {
                stream.resync();
                self.tap.keyframe.store(true, Ordering::Relaxed);
            }
            stream.push(&chunk.data);
            if chunk.end_of_unit {
                stream.end_of_unit();
            }
            while let Some(unit) = stream.next_access_unit() {
                match unit {
                    Ok(au) => {
                        let (width, height) = stream
                            .stream()
                            .map_or((self.settings.width, self.settings.height), |s| {
                                (s.width, s.height)
                            });
                        seq += 1;
                        let frame = EncodedFrame {
                            codec: VideoCodec::H264,
                            droppable: crate::frame::h264_unreferenced(&au.data),
                            data: Arc::from(au.data),
                            keyframe: au.keyframe,
                            width: width as usize,
                            height: height as usize,
                            captured: chunk.captured,
                            stamp_ms: chunk.stamp_ms,
                            seq,
                        };
                        if let Some(r) = &self.record {
                            r.encoded(&frame);
                        }
                        if self.frames.try_send(frame).is_err() {
                            stream.resync();
                        }
                    }
                    Err(e) => {
                        errors += 1;
                        if errors.is_power_of_two() {
                            tracing::error!("H.264 passthrough: {e} ({errors} so far)");
                        }
                    }
                }
            }
        }
    }

    /// Keyframe asks go to the camera; bitrates are the camera's own.
    fn apply_controls(&self) -> bool {
        loop {
            match self.control.try_recv() {
                Ok(WorkerControl::Keyframe) => self.tap.keyframe.store(true, Ordering::Relaxed),
                Ok(WorkerControl::Bitrate(_)) => {}
                Err(mpsc::TryRecvError::Empty) => return true,
                Err(mpsc::TryRecvError::Disconnected) => return false,
            }
        }
    }
}

/// A started worker, as the pool holds it.
struct Running {
    control: mpsc::Sender<WorkerControl>,
    thread: std::thread::JoinHandle<()>,
    started: Instant,
}

impl Running {
    fn spawn(
        name: String,
        control: mpsc::Sender<WorkerControl>,
        run: impl FnOnce() + Send + 'static,
    ) -> Option<Running> {
        match std::thread::Builder::new().name(name.clone()).spawn(run) {
            Ok(thread) => Some(Running {
                control,
                thread,
                started: Instant::now(),
            }),
            Err(e) => {
                tracing::error!("cannot start the {name} thread: {e}");
                None
            }
        }
    }
}

/// One codec's encoder thread.
struct Worker {
    codec: VideoCodec,
    factory: Arc<Factory>,
    board: StatusBoard,
    input: Receiver<Arc<RawFrame>>,
    control: Receiver<WorkerControl>,
    frames: tokio_mpsc::Sender<EncodedFrame>,
    record: Option<Arc<dyn EncodedTap>>,
    viewers: usize,
}

impl Worker {
    /// Encodes until the pool lets go, then gives the encoder's memory
    /// back: openh264 holds about 20 MB at 720p, and once it is dropped
    /// glibc would keep all of it in the heap, so the process stayed at
    /// its one-viewer size (49 MB) long after the last viewer left.
    fn run(self) {
        self.encode_until_stopped();
        crate::mem::give_back();
    }

    fn encode_until_stopped(self) {
        let codec = self.codec;
        let mut enc = match self.factory.make(codec) {
            Ok(e) => e,
            Err(e) => match self.factory.fallback(codec) {
                Some(fallback) => {
                    tracing::warn!(
                        "{codec} encoder did not open ({e}); using {}",
                        fallback.implementation()
                    );
                    fallback
                }
                None => {
                    tracing::error!("{codec} encoder did not start: {e}");
                    return;
                }
            },
        };
        self.board.running(&enc, self.viewers);
        let s = enc.settings();
        tracing::info!(
            "{codec} encoder started: {} {}x{} @ {} fps, {} kbit/s",
            enc.implementation(),
            s.width,
            s.height,
            s.fps,
            s.bitrate_kbps
        );
        // Only for a board that runs VP8 smaller than the camera (`fit`).
        let mut scaled: Option<RawFrame> = None;
        let mut errors = 0u64;
        let mut fell_back = false;
        let mut lost = 0u64;
        loop {
            let frame = match self.input.recv_timeout(IDLE_POLL) {
                Ok(f) => f,
                Err(RecvTimeoutError::Timeout) => {
                    if !self.apply_controls(&mut enc) {
                        return;
                    }
                    self.drain(&mut enc, &mut lost);
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
            if !self.apply_controls(&mut enc) {
                return;
            }
            let input = fit(&frame, &mut scaled, enc.settings());
            let started = Instant::now();
            let result = enc.encode(input);
            let took = started.elapsed().as_secs_f64();
            self.board.update(codec, |s| {
                s.frames_encoded += 1;
                s.encode_seconds += took;
            });
            match result {
                Ok(Some(out)) => self.send(out, &mut enc, &mut lost),
                Ok(None) => {}
                Err(e) => match (!fell_back).then(|| self.factory.fallback(codec)).flatten() {
                    Some(fallback) => {
                        fell_back = true;
                        tracing::error!(
                            "{codec} encoder {} failed ({e}); switching to {}",
                            enc.implementation(),
                            fallback.implementation()
                        );
                        enc = fallback;
                        self.board.running(&enc, self.board_viewers());
                    }
                    None => {
                        errors += 1;
                        if errors.is_power_of_two() {
                            tracing::error!("{codec} encode: {e} ({errors} errors so far)");
                        }
                    }
                },
            }
            self.drain(&mut enc, &mut lost);
        }
    }

    /// Pictures a hardware encoder hands back after their frame's
    /// `encode` returned.
    fn drain(&self, enc: &mut Encoder, lost: &mut u64) {
        loop {
            match enc.poll_output() {
                Ok(Some(out)) => self.send(out, enc, lost),
                Ok(None) => return,
                Err(e) => {
                    crate::warn_limited!("{} encoder: {e}", self.codec);
                    return;
                }
            }
        }
    }

    /// Applies keyframe asks and bitrates; false when the pool let go.
    fn apply_controls(&self, enc: &mut Encoder) -> bool {
        loop {
            match self.control.try_recv() {
                Ok(WorkerControl::Keyframe) => enc.request_keyframe(),
                Ok(WorkerControl::Bitrate(kbps)) => match enc.set_bitrate(kbps) {
                    Ok(()) => self.board.update(self.codec, |s| s.bitrate_kbps = kbps),
                    Err(e) => tracing::warn!("{} bitrate {kbps} kbit/s refused: {e}", self.codec),
                },
                Err(mpsc::TryRecvError::Empty) => return true,
                Err(mpsc::TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn send(&self, out: EncodedFrame, enc: &mut Encoder, lost: &mut u64) {
        if out.keyframe {
            // A switch of implementation (the hardware encoder and openh264
            // standing in for it) always starts with a keyframe.
            let implementation = enc.implementation();
            self.board
                .update(self.codec, |s| s.implementation = implementation);
        }
        if let Some(r) = &self.record {
            r.encoded(&out);
        }
        match self.frames.try_send(out) {
            Ok(()) | Err(tokio_mpsc::error::TrySendError::Closed(_)) => {}
            Err(tokio_mpsc::error::TrySendError::Full(_)) => {
                // A lost frame breaks the picture until the next keyframe.
                *lost += 1;
                if lost.is_power_of_two() {
                    tracing::warn!(
                        "media loop is behind: {lost} {} frames dropped so far",
                        self.codec
                    );
                }
                enc.request_keyframe();
            }
        }
    }

    fn board_viewers(&self) -> usize {
        self.board
            .snapshot()
            .iter()
            .find(|s| s.codec == self.codec)
            .map_or(self.viewers, |s| s.viewers)
    }
}

/// The frame at the encoder's size: itself, or scaled into `scaled` (a
/// board that runs VP8 smaller than the camera), which is made on the first
/// frame that needs it: an encoder at the camera's size (H.264 always)
/// never holds a second picture.
fn fit<'a>(
    frame: &'a RawFrame,
    scaled: &'a mut Option<RawFrame>,
    s: EncoderSettings,
) -> &'a RawFrame {
    let (w, h) = (s.width as usize, s.height as usize);
    if frame.width == w && frame.height == h {
        return frame;
    }
    let scaled = scaled.get_or_insert_with(|| RawFrame::black(w, h));
    frame.scale_into(scaled, w, h);
    scaled
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(width: u32, height: u32) -> EncoderSettings {
        EncoderSettings {
            width,
            height,
            fps: 30,
            bitrate_kbps: 1000,
            threads: 1,
            slice_bytes: crate::encode::DEFAULT_SLICE_BYTES,
        }
    }

    #[test]
    fn a_frame_at_the_encoders_size_needs_no_second_picture() {
        let frame = RawFrame::black(64, 36);
        let mut scaled = None;
        let out = fit(&frame, &mut scaled, settings(64, 36));
        assert!(std::ptr::eq(out, &frame));
        assert!(scaled.is_none());
    }

    #[test]
    fn a_smaller_encoder_gets_the_frame_scaled_into_one_kept_picture() {
        let frame = RawFrame::black(64, 36);
        let mut scaled = None;
        let out = fit(&frame, &mut scaled, settings(32, 18));
        assert_eq!((out.width, out.height), (32, 18));
        assert_eq!(out.data.len(), RawFrame::i420_len(32, 18));
        let kept = scaled.as_ref().map(|f| f.data.as_ptr());
        fit(&frame, &mut scaled, settings(32, 18));
        assert_eq!(scaled.as_ref().map(|f| f.data.as_ptr()), kept, "reused");
    }
}
