//! The recorder thread and the tap that feeds it: the H.264 encoder's
//! access units (the same the viewers get: never a second encode) and
//! motion, in; the recorder's writes, out to the disk thread.
//!
//! Nothing waits on it: the tap drops a unit when the thread is behind
//! (and the recorder starts again at a keyframe), and the thread drops a
//! fragment when the disk is behind (the clip ends where it was whole,
//! "stalled" is said, and recording goes on once the disk caught up).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use super::Trigger;
use super::disk::DiskOp;
use super::events::EventBoard;
use super::recorder::{Disk, Output, Recorder};
use super::ring::{AudioUnit, Unit};
use super::status::{DiskState, RecordStatus};
use crate::encode::pool::EncodedTap;
use crate::frame::{EncodedFrame, VideoCodec};

/// Units waiting for the recorder thread: about three seconds of video
/// (30 a second) and sound (50 a second); each is a pointer and a time.
const UNITS_QUEUE: usize = 256;
/// Writes waiting for the disk: at about one fragment a second, a disk
/// that stalls for longer than about this many seconds stops the clip
/// (and RAM stays bounded: 8 fragments are 2 MB at 2 Mbit/s).
pub const DISK_QUEUE: usize = 8;
/// The recorder thread looks at motion and the disk this often at least.
const TURN: Duration = Duration::from_millis(100);

enum Input {
    Video(Unit),
    Audio(AudioUnit),
    /// Units were dropped before this point.
    Gap,
}

pub struct RecordTap {
    tx: SyncSender<Input>,
    /// A unit was dropped: a gap goes first next time.
    lost: AtomicBool,
    /// Shared with the recorder thread, which holds no tap: it ends when
    /// every tap (the encoders', the motion thread's) is gone.
    moving: Arc<AtomicBool>,
    status: RecordStatus,
}

impl EncodedTap for RecordTap {
    fn encoded(&self, frame: &EncodedFrame) {
        if frame.codec != VideoCodec::H264 {
            return;
        }
        if self.lost.load(Ordering::Relaxed) {
            match self.tx.try_send(Input::Gap) {
                Ok(()) => self.lost.store(false, Ordering::Relaxed),
                Err(_) => return,
            }
        }
        let unit = Unit {
            data: frame.data.clone(),
            keyframe: frame.keyframe,
            captured: frame.captured,
            stamp_ms: frame.stamp_ms,
        };
        if let Err(TrySendError::Full(_)) = self.tx.try_send(Input::Video(unit)) {
            self.lost.store(true, Ordering::Relaxed);
            self.status.update(|s| s.dropped += 1);
        }
    }
}

impl crate::audio::AudioTap for RecordTap {
    fn encoded(&self, packet: &crate::audio::EncodedAudio) {
        let unit = AudioUnit {
            data: packet.data.clone(),
            captured: packet.captured,
        };
        if let Err(TrySendError::Full(_)) = self.tx.try_send(Input::Audio(unit)) {
            self.status.update(|s| s.dropped += 1);
        }
    }
}

impl RecordTap {
    /// Motion started (true) or ended, from the motion thread.
    pub fn motion(&self, moving: bool) {
        self.moving.store(moving, Ordering::Relaxed);
    }
}

/// Everything the recorder thread owns.
pub struct RecorderThread {
    pub recorder: Recorder,
    pub status: RecordStatus,
    pub events: EventBoard,
    pub disk: Sender<DiskOp>,
    /// Ops sent to the disk thread and not yet done.
    pub queued: Arc<AtomicUsize>,
    /// Asks the H.264 encoder for a keyframe.
    pub keyframe: Box<dyn Fn() + Send>,
    /// The clip whose fragment was dropped: none of its later ones may be
    /// written after the hole.
    pub broken: Option<super::ClipId>,
    /// Writes waiting for the disk at most ([`DISK_QUEUE`]).
    pub disk_queue: usize,
    /// The appliance is stopping: the clip is closed and the thread ends
    /// (it holds the road to the encoders, which must close for them to end).
    pub stop: Arc<AtomicBool>,
}

impl RecorderThread {
    pub fn spawn(self) -> std::io::Result<(Arc<RecordTap>, std::thread::JoinHandle<()>)> {
        let (tx, rx) = mpsc::sync_channel(UNITS_QUEUE);
        let moving = Arc::new(AtomicBool::new(false));
        let tap = Arc::new(RecordTap {
            tx,
            lost: AtomicBool::new(false),
            moving: moving.clone(),
            status: self.status.clone(),
        });
        let thread = std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || self.run(rx, &moving))?;
        Ok((tap, thread))
    }

    fn run(mut self, rx: Receiver<Input>, motion: &AtomicBool) {
        let mut moving = false;
        let mut disk = Disk::Ready;
        loop {
            let now = Instant::now();
            let wait = self
                .recorder
                .poll_timeout()
                .map_or(TURN, |t| t.saturating_duration_since(now))
                .min(TURN);
            let input = match rx.recv_timeout(wait) {
                Ok(i) => Some(i),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            let now = Instant::now();
            let m = motion.load(Ordering::Relaxed);
            if m != moving {
                moving = m;
                self.recorder.motion(now, m);
            }
            let d = self.disk_state();
            if d != disk {
                disk = d;
                self.recorder.disk(d);
            }
            match input {
                Some(Input::Video(unit)) => self.recorder.video(now, unit),
                Some(Input::Audio(unit)) => self.recorder.audio(unit),
                Some(Input::Gap) => self.recorder.gap(),
                None => self.recorder.handle_timeout(now),
            }
            self.drain();
        }
        // The end: the clip is closed, so it is whole.
        self.recorder.disk(Disk::Unavailable);
        self.drain();
    }

    /// The disk's state; a stall is over once the disk thread caught up.
    fn disk_state(&self) -> Disk {
        let state = self.status.disk();
        if state == DiskState::Stalled && self.queued.load(Ordering::Relaxed) == 0 {
            self.status.disk_ready();
            return Disk::Ready;
        }
        match state {
            DiskState::Ready => Disk::Ready,
            _ => Disk::Unavailable,
        }
    }

    fn drain(&mut self) {
        while let Some(out) = self.recorder.poll_output() {
            let op = match out {
                Output::Keyframe => {
                    (self.keyframe)();
                    continue;
                }
                Output::Open {
                    id,
                    trigger,
                    start_ms,
                    init,
                } => {
                    self.broken = None;
                    let thumbnail = match trigger {
                        Trigger::Motion => {
                            self.events.recorded(&id);
                            self.events.newest_snapshot()
                        }
                        Trigger::Continuous => None,
                    };
                    DiskOp::Open {
                        id,
                        trigger,
                        start_ms,
                        init,
                        thumbnail,
                    }
                }
                Output::Append { id, bytes } => {
                    if self.broken.as_ref() == Some(&id) {
                        continue;
                    }
                    if self.queued.load(Ordering::Relaxed) >= self.disk_queue {
                        self.broken = Some(id);
                        self.stalled();
                        continue;
                    }
                    DiskOp::Append { id, bytes }
                }
                Output::Close { id, duration } => DiskOp::Close { id, duration },
            };
            self.queued.fetch_add(1, Ordering::Relaxed);
            if self.disk.send(op).is_err() {
                self.queued.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// The disk is behind: this fragment is dropped and the clip ends at
    /// its last whole one (its Close still goes: it is small and ends the
    /// file properly once the disk answers).
    fn stalled(&mut self) {
        self.status.update(|s| s.dropped += 1);
        let n = self.queued.load(Ordering::Relaxed);
        if self.status.disk_unavailable(
            DiskState::Stalled,
            &format!("the disk is not keeping up ({n} writes waiting)"),
        ) {
            tracing::error!(
                "recording stopped: the disk is not keeping up ({n} writes waiting); it goes on when the disk has caught up"
            );
        }
        self.recorder.disk(Disk::Unavailable);
    }
}
