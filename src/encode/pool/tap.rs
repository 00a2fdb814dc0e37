//! Where the capture thread hands its frames over: a one-frame mailbox per
//! running encoder, passthrough H.264's queue, the snapshot and motion
//! detection's pictures; and the recorder's tap on encoded frames.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use super::board::StatusBoard;
use crate::capture::run::FrameSink;
use crate::encode::jpeg::Snapshots;
use crate::frame::{CodedChunk, EncodedFrame, RawFrame, VideoCodec};

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
    pub(super) coded_lost: AtomicBool,
    pub(super) keyframe: AtomicBool,
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

    pub(super) fn subscribe_coded(&self) -> Receiver<CodedChunk> {
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

    pub(super) fn subscribe(&self, codec: VideoCodec) -> Receiver<Arc<RawFrame>> {
        let (tx, rx) = mpsc::sync_channel(1);
        let mut boxes = self.mailboxes.lock().unwrap_or_else(|p| p.into_inner());
        boxes.push((codec, tx));
        rx
    }
}
