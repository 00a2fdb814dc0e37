//! H.264 passthrough's thread: the camera's own stream, cut into access
//! units, to the rtc task.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};

use tokio::sync::mpsc as tokio_mpsc;

use super::board::StatusBoard;
use super::tap::{EncodedTap, FrameTap};
use super::{IDLE_POLL, WorkerControl};
use crate::encode::EncoderSettings;
use crate::encode::passthrough::Passthrough;
use crate::frame::{CodedChunk, EncodedFrame, VideoCodec};

/// H.264 passthrough's thread: the camera's stream cut into access units
/// (SPS and PPS before every IDR), to the rtc task. It starts, like an
/// encoder, with the first viewer, and drops everything before the next
/// IDR; it asks the camera for one, which only some cameras can give.
pub(super) struct Forwarder {
    pub(super) tap: Arc<FrameTap>,
    pub(super) board: StatusBoard,
    pub(super) input: Receiver<CodedChunk>,
    pub(super) control: Receiver<WorkerControl>,
    pub(super) frames: tokio_mpsc::Sender<EncodedFrame>,
    pub(super) record: Option<Arc<dyn EncodedTap>>,
    pub(super) settings: EncoderSettings,
    pub(super) viewers: usize,
}

impl Forwarder {
    pub(super) fn run(self) {
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
