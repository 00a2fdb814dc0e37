//! One codec's encoder thread, and how the pool holds a started one.

use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Instant;

use tokio::sync::mpsc as tokio_mpsc;

use super::board::StatusBoard;
use super::tap::EncodedTap;
use super::{Factory, IDLE_POLL, WorkerControl};
use crate::encode::{Encoder, EncoderSettings};
use crate::frame::{EncodedFrame, RawFrame, VideoCodec};

/// A started worker, as the pool holds it.
pub(super) struct Running {
    pub(super) control: mpsc::Sender<WorkerControl>,
    pub(super) thread: std::thread::JoinHandle<()>,
    pub(super) started: Instant,
}

impl Running {
    pub(super) fn spawn(
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
pub(super) struct Worker {
    pub(super) codec: VideoCodec,
    pub(super) factory: Arc<Factory>,
    pub(super) board: StatusBoard,
    pub(super) input: Receiver<Arc<RawFrame>>,
    pub(super) control: Receiver<WorkerControl>,
    pub(super) frames: tokio_mpsc::Sender<EncodedFrame>,
    pub(super) record: Option<Arc<dyn EncodedTap>>,
    pub(super) viewers: usize,
}

impl Worker {
    /// Encodes until the pool lets go, then gives the encoder's memory
    /// back: openh264 holds about 20 MB at 720p, and once it is dropped
    /// glibc would keep all of it in the heap, so the process stayed at
    /// its one-viewer size (49 MB) long after the last viewer left.
    pub(super) fn run(self) {
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
