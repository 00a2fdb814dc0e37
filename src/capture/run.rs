//! The capture thread: the IO shell around [`Supervisor`]. It reads the
//! camera, hands each picture (or passthrough H.264) to the sink, shows the
//! "camera lost" slate while the camera is gone, and opens what the
//! supervisor asks for. The stream keeps the size it started with: a camera
//! that comes back at another size is scaled to it, so encoders and viewers
//! never notice.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::controls::{self, ControlError, Saved};
use super::find;
use super::slate::Slate;
use super::supervise::{CameraState, Failure, Supervisor, Target};
use super::{CaptureError, Delivery, Source, SourceInfo, SourceSpec, Want};
use crate::frame::{CodedChunk, RawFrame};
use crate::log_limit::{Throttle, more};

/// How often the slate is sent while the camera is gone: enough for a new
/// viewer's keyframe and a moving dot, little work for the encoders.
const SLATE_INTERVAL: Duration = Duration::from_millis(200);
/// The least time between two log lines about the same kind of trouble.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Where captured frames go (the encoders' tap).
pub trait FrameSink: Send + Sync {
    /// A picture for every encoder that wants one.
    fn picture(&self, frame: &Arc<RawFrame>);
    /// A piece of the camera's own H.264, for passthrough.
    fn coded(&self, chunk: CodedChunk);
    /// Whether any encoder takes pictures now (else an MJPEG camera's
    /// frames are not decoded).
    fn wants_pictures(&self) -> bool;
    /// Whether a viewer asked for a keyframe since the last call (the
    /// passthrough camera is asked, where it can be).
    fn take_keyframe_request(&self) -> bool;
}

/// A setting a viewer asked for (checked by the data-channel protocol;
/// the camera checks again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetControl {
    pub control: String,
    pub value: i64,
    /// Who asked: told if the camera refuses (the rtc task's viewer id).
    pub from: u64,
}

/// The camera refused a setting, or there was no camera to take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlRefused {
    pub from: u64,
    pub error: ControlError,
}

/// The capture thread's control road: settings in, refusals out (applied
/// ones show in `status`).
pub struct ControlRoad {
    pub requests: std::sync::mpsc::Receiver<SetControl>,
    pub refusals: tokio::sync::mpsc::Sender<ControlRefused>,
    /// The values viewers set, kept in the state directory.
    pub saved: Saved,
}

/// Everything the capture thread owns.
pub struct Capture {
    pub spec: SourceSpec,
    pub want: Want,
    /// The stream's picture size, fixed for the process's life.
    pub size: (usize, usize),
    pub sink: Arc<dyn FrameSink>,
    pub status: watch::Sender<SourceInfo>,
    /// Frames delivered, slate included: the watchdog's sign of life.
    pub captured: Arc<AtomicU64>,
    pub stop: Arc<AtomicBool>,
    pub control: ControlRoad,
}

impl Capture {
    pub fn spawn(self, first: Option<Source>) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("capture".into())
            .spawn(move || self.run(first))
    }

    fn run(mut self, first: Option<Source>) {
        let mut sup = Supervisor::new(&self.spec, Instant::now());
        let mut source = None;
        let mut problem = Problem::default();
        match first {
            Some(mut s) => {
                let _ = sup.poll_open(Instant::now());
                self.went_live(&mut sup, &mut s);
                source = Some(s);
            }
            None => self.report_lost(&sup, None),
        }
        let mut buffers = Buffers::default();
        // Each a picture (1.35 MB at 720p), made only when needed: the spare
        // once a camera comes back at another size (`read`), the slate while
        // the camera is gone.
        let mut spare: Option<RawFrame> = None;
        let mut slate: Option<Slate> = None;
        let mut next_slate = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            self.apply_settings(source.as_mut());
            self.control.saved.write_if_due(Instant::now());
            let now = Instant::now();
            if let Some(target) = sup.poll_open(now) {
                self.try_open(&mut sup, &target, &mut source, &mut problem);
                continue;
            }
            let Some(s) = source.as_mut() else {
                let until = sup
                    .poll_timeout()
                    .unwrap_or(now + SLATE_INTERVAL)
                    .min(next_slate);
                std::thread::sleep(until.saturating_duration_since(now));
                if Instant::now() >= next_slate {
                    next_slate += SLATE_INTERVAL;
                    let mut frame = buffers.take(self.size);
                    if let Some(raw) = Arc::get_mut(&mut frame) {
                        let (w, h) = self.size;
                        slate
                            .get_or_insert_with(|| Slate::new(w, h))
                            .next_frame(raw);
                        self.deliver(frame, &mut buffers);
                    }
                }
                continue;
            };
            // The camera is back: the slate waits for the next loss.
            slate = None;
            if self.sink.take_keyframe_request() {
                s.request_keyframe();
            }
            match self.read(s, &mut buffers, &mut problem, &mut spare) {
                Ok(()) => {}
                Err(e) => {
                    problem.log(format!("capture: {e}; looking for the camera again"));
                    source = None;
                    sup.failed(Instant::now(), Failure::Stopped);
                    self.report_lost(&sup, Some(e.to_string()));
                    next_slate = Instant::now();
                }
            }
        }
        self.control.saved.write_now();
    }

    /// One read of the camera, delivered.
    fn read(
        &self,
        source: &mut Source,
        buffers: &mut Buffers,
        problem: &mut Problem,
        spare: &mut Option<RawFrame>,
    ) -> Result<(), CaptureError> {
        let mut frame = buffers.take(self.size);
        let Some(raw) = Arc::get_mut(&mut frame) else {
            return Ok(());
        };
        let delivery = match source.next(raw, self.sink.wants_pictures()) {
            Ok(d) => d,
            Err(e) => {
                buffers.give_back(frame);
                return Err(e);
            }
        };
        match delivery {
            Delivery::Picture => {
                if (raw.width, raw.height) != self.size {
                    // Scaled into the spare, which then takes the camera's
                    // buffer for next time: no allocation per frame.
                    let (w, h) = self.size;
                    let spare = spare.get_or_insert_with(|| RawFrame::black(w, h));
                    raw.scale_into(spare, w, h);
                    std::mem::swap(raw, spare);
                }
                self.deliver(frame, buffers);
            }
            Delivery::Coded(chunk) => {
                buffers.give_back(frame);
                self.captured.fetch_add(1, Ordering::Relaxed);
                self.sink.coded(chunk);
            }
            Delivery::Unwatched => {
                buffers.give_back(frame);
                self.captured.fetch_add(1, Ordering::Relaxed);
            }
            Delivery::Dropped(why) => {
                buffers.give_back(frame);
                problem.log(format!("capture: dropped a broken camera frame: {why}"));
                self.status.send_modify(|i| i.corrupt_frames += 1);
            }
        }
        Ok(())
    }

    fn deliver(&self, frame: Arc<RawFrame>, buffers: &mut Buffers) {
        self.captured.fetch_add(1, Ordering::Relaxed);
        self.sink.picture(&frame);
        buffers.give_back(frame);
    }

    /// Settings viewers asked for since the last frame, as one batch: a
    /// slider dragged sends several values of one control, and only the
    /// last is applied (rpicam-vid is restarted once for all of them).
    fn apply_settings(&mut self, source: Option<&mut Source>) {
        let mut batch: Vec<(String, i64)> = Vec::new();
        let mut askers: Vec<(String, u64)> = Vec::new();
        while let Ok(ask) = self.control.requests.try_recv() {
            batch.retain(|(id, _)| *id != ask.control);
            batch.push((ask.control.clone(), ask.value));
            askers.push((ask.control, ask.from));
        }
        if batch.is_empty() {
            return;
        }
        controls::in_apply_order(&mut batch);
        let results = match source {
            Some(s) => {
                let results = s.set_controls(&batch);
                let key = s.settings_key();
                for ((id, value), r) in batch.iter().zip(&results) {
                    if r.is_ok() {
                        self.control.saved.remember(&key, id, *value);
                    }
                }
                let controls = s.controls();
                self.status.send_modify(|i| i.controls = controls);
                results
            }
            None => batch
                .iter()
                .map(|(id, _)| {
                    Err(ControlError::Failed {
                        id: id.clone(),
                        why: "the camera is not there".into(),
                    })
                })
                .collect(),
        };
        for ((id, value), result) in batch.iter().zip(results) {
            match result {
                Ok(()) => tracing::debug!("camera: {id} = {value}"),
                Err(error) => {
                    tracing::debug!("camera: {id} = {value} refused: {error}");
                    for (_, from) in askers.iter().filter(|(c, _)| c == id) {
                        let error = error.clone();
                        let _ = self
                            .control
                            .refusals
                            .try_send(ControlRefused { from: *from, error });
                    }
                }
            }
        }
    }

    fn try_open(
        &self,
        sup: &mut Supervisor,
        target: &Target,
        source: &mut Option<Source>,
        problem: &mut Problem,
    ) {
        let rescan = source.is_some();
        match find::open(&self.spec, target, &self.want, sup.preferred()) {
            Ok(mut s) => {
                self.went_live(sup, &mut s);
                *source = Some(s);
            }
            Err(e) if rescan => tracing::debug!("source auto: still no camera: {e}"),
            Err(e) => {
                problem.log(format!("capture: {e}; trying again"));
                sup.failed(Instant::now(), Failure::Open);
                self.report_lost(sup, Some(e.to_string()));
            }
        }
    }

    fn went_live(&self, sup: &mut Supervisor, s: &mut Source) {
        let was_lost = sup.state() == CameraState::Lost;
        sup.opened(Instant::now(), s.identity());
        s.restore(&self.control.saved.values(&s.settings_key()));
        let mut info = s.info();
        info.controls = s.controls();
        if (info.width, info.height) != self.size {
            tracing::warn!(
                "{} delivers {}x{}; the stream stays at {}x{} (scaled)",
                s.describe(),
                info.width,
                info.height,
                self.size.0,
                self.size.1
            );
        }
        info.corrupt_frames = self.status.borrow().corrupt_frames;
        if was_lost {
            tracing::info!("video source back: {}", s.describe());
        }
        self.status.send_replace(info);
    }

    fn report_lost(&self, sup: &Supervisor, problem: Option<String>) {
        self.status.send_modify(|info| {
            info.state = sup.state();
            if problem.is_some() {
                info.problem = problem;
            }
        });
    }
}

/// Rate-limited trouble: a new kind of line at once, the same kind again
/// at most once every [`LOG_EVERY`] with how many were held back.
#[derive(Default)]
struct Problem {
    last: Option<(String, Throttle)>,
}

impl Problem {
    fn log(&mut self, line: String) {
        let now = Instant::now();
        let kind = line.split(':').take(2).collect::<Vec<_>>().join(":");
        let throttle = match &mut self.last {
            Some((k, t)) if *k == kind => t,
            slot => &mut slot.insert((kind, Throttle::new(LOG_EVERY))).1,
        };
        if let Some(held) = throttle.allow(now) {
            tracing::warn!("{line}{}", more(held));
        }
    }
}

/// Raw frame buffers, recycled once no encoder holds them any more.
#[derive(Default)]
struct Buffers(Vec<Arc<RawFrame>>);

impl Buffers {
    /// Most buffers kept: one filling, and for each of the two encoders one
    /// in its mailbox and one being encoded, and a spare.
    const KEEP: usize = 6;

    fn take(&mut self, (w, h): (usize, usize)) -> Arc<RawFrame> {
        match self.0.iter().position(|b| Arc::strong_count(b) == 1) {
            Some(i) => self.0.swap_remove(i),
            None => Arc::new(RawFrame::black(w, h)),
        }
    }

    fn give_back(&mut self, frame: Arc<RawFrame>) {
        if self.0.len() < Self::KEEP {
            self.0.push(frame);
        }
    }
}
