//! Where the capture thread hands its frames over: a one-frame mailbox per
//! running encoder, passthrough H.264's queue, the snapshot and motion
//! detection's pictures; and the recorder's tap on encoded frames.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::WorkerControl;
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
    mailboxes: Mutex<Vec<Mailbox>>,
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

/// What an encoder's thread is handed: the newest picture, or a word from
/// the pool. One road for both, so a keyframe asked for is seen at once,
/// not when the next picture comes.
pub(super) enum Mail {
    Picture(Arc<RawFrame>),
    Control(WorkerControl),
}

/// The tap's side of an encoder's mailbox.
struct Mailbox {
    codec: VideoCodec,
    tx: Sender<Mail>,
    slot: Arc<Slot>,
}

/// Whether a picture waits in a mailbox (it holds one at most: a busy
/// encoder misses the next), and whether its encoder is gone.
#[derive(Default)]
struct Slot {
    full: AtomicBool,
    closed: AtomicBool,
}

/// The encoder's side of its mailbox.
pub(super) struct Inbox {
    rx: Receiver<Mail>,
    slot: Arc<Slot>,
}

impl Inbox {
    pub(super) fn recv_timeout(&self, wait: Duration) -> Result<Mail, RecvTimeoutError> {
        let mail = self.rx.recv_timeout(wait)?;
        if let Mail::Picture(_) = mail {
            self.slot.full.store(false, Ordering::Release);
        }
        Ok(mail)
    }

    /// What already waits, without waiting.
    pub(super) fn try_recv(&self) -> Option<Mail> {
        let mail = self.rx.try_recv().ok()?;
        if let Mail::Picture(_) = mail {
            self.slot.full.store(false, Ordering::Release);
        }
        Some(mail)
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.slot.closed.store(true, Ordering::Release);
    }
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
        boxes.retain(|b| {
            if b.slot.closed.load(Ordering::Acquire) {
                return false;
            }
            if b.slot.full.swap(true, Ordering::AcqRel) {
                self.board.update(b.codec, |s| s.frames_dropped += 1);
                return true;
            }
            let sent = b.tx.send(Mail::Picture(frame.clone())).is_ok();
            took += usize::from(sent);
            sent
        });
        took
    }

    /// A mailbox for `codec`'s encoder: its end, and the pool's road into
    /// it for controls.
    pub(super) fn subscribe(&self, codec: VideoCodec) -> (Inbox, Sender<Mail>) {
        let (tx, rx) = mpsc::channel();
        let slot = Arc::new(Slot::default());
        let mut boxes = self.mailboxes.lock().unwrap_or_else(|p| p.into_inner());
        boxes.push(Mailbox {
            codec,
            tx: tx.clone(),
            slot: slot.clone(),
        });
        (Inbox { rx, slot }, tx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picture() -> Arc<RawFrame> {
        Arc::new(RawFrame::black(16, 16))
    }

    fn tap() -> FrameTap {
        FrameTap::new(StatusBoard::default(), None)
    }

    const NOW: Duration = Duration::ZERO;

    #[test]
    fn a_busy_encoder_misses_pictures_and_never_queues_them() {
        let tap = tap();
        let (inbox, _) = tap.subscribe(VideoCodec::H264);
        let (first, second) = (picture(), picture());
        assert_eq!(tap.publish(&first), 1);
        assert_eq!(tap.publish(&second), 0, "the mailbox holds one");
        let Ok(Mail::Picture(got)) = inbox.recv_timeout(NOW) else {
            panic!("the first picture")
        };
        assert!(Arc::ptr_eq(&got, &first));
        assert!(inbox.recv_timeout(NOW).is_err(), "the second was missed");
        assert_eq!(tap.publish(&second), 1, "room again once taken");
    }

    #[test]
    fn controls_come_through_a_full_mailbox_in_order() {
        let tap = tap();
        let (inbox, control) = tap.subscribe(VideoCodec::H264);
        tap.publish(&picture());
        control
            .send(Mail::Control(WorkerControl::Keyframe))
            .unwrap();
        assert!(matches!(inbox.recv_timeout(NOW), Ok(Mail::Picture(_))));
        assert!(matches!(
            inbox.recv_timeout(NOW),
            Ok(Mail::Control(WorkerControl::Keyframe))
        ));
    }

    #[test]
    fn a_gone_encoders_mailbox_is_let_go_of() {
        let tap = tap();
        let (inbox, _control) = tap.subscribe(VideoCodec::H264);
        tap.publish(&picture()); // full when its encoder goes
        assert!(tap.wants_pictures());
        drop(inbox);
        assert_eq!(tap.publish(&picture()), 0);
        assert!(!tap.wants_pictures());
    }
}
