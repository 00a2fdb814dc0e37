//! One codec's encoder thread, and how the pool holds a started one.

use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use tokio::sync::mpsc as tokio_mpsc;

use super::board::StatusBoard;
use super::tap::{EncodedTap, Inbox, Mail};
use super::{Factory, IDLE_POLL, WorkerControl};
use crate::encode::{Encoder, EncoderSettings};
use crate::frame::{EncodedFrame, RawFrame, VideoCodec};

/// A started thread, as the pool holds it. Dropping it tells the thread to
/// stop.
pub(super) struct Running {
    control: Road,
    pub(super) thread: std::thread::JoinHandle<()>,
    pub(super) started: Instant,
}

/// How the pool reaches a started thread.
pub(super) enum Road {
    /// An encoder's mailbox, which its pictures come through too.
    Encoder(Sender<Mail>),
    Forwarder(mpsc::Sender<WorkerControl>),
}

impl Running {
    /// Tells the thread; one that already ended has nothing left to hear.
    pub(super) fn tell(&self, control: WorkerControl) {
        match &self.control {
            Road::Encoder(tx) => {
                let _ = tx.send(Mail::Control(control));
            }
            Road::Forwarder(tx) => {
                let _ = tx.send(control);
            }
        }
    }

    pub(super) fn spawn(
        name: String,
        control: Road,
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

impl Drop for Running {
    fn drop(&mut self) {
        self.tell(WorkerControl::Stop);
    }
}

/// One codec's encoder thread.
pub(super) struct Worker {
    pub(super) codec: VideoCodec,
    pub(super) factory: Arc<Factory>,
    pub(super) board: StatusBoard,
    /// Its pictures and the pool's controls.
    pub(super) inbox: Inbox,
    pub(super) frames: tokio_mpsc::Sender<EncodedFrame>,
    pub(super) record: Option<Arc<dyn EncodedTap>>,
    pub(super) viewers: usize,
    /// Warm for the first viewer (`Start`).
    pub(super) warm: bool,
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
        let enc = match self.factory.make(codec) {
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
        let mut run = Run {
            start: Start::new(self.warm),
            enc,
            scaled: None,
            errors: 0,
            fell_back: false,
            lost: 0,
        };
        while let Some(frame) = self.next_picture(&mut run) {
            self.encode(&frame, &mut run);
            self.drain(&mut run.enc, &mut run.lost);
        }
    }

    /// Waits for the next picture, applying controls as they come, and any
    /// that came behind it before it is encoded (the first keyframe ask
    /// ends warming: that picture is then a P-frame after the kept one).
    /// `None`: the pool let go.
    fn next_picture(&self, run: &mut Run) -> Option<Arc<RawFrame>> {
        loop {
            match self.inbox.recv_timeout(IDLE_POLL) {
                Ok(Mail::Picture(mut frame)) => loop {
                    match self.inbox.try_recv() {
                        Some(Mail::Control(WorkerControl::Stop)) => return None,
                        Some(Mail::Control(c)) => self.apply(c, run),
                        Some(Mail::Picture(newer)) => {
                            self.board.update(self.codec, |s| s.frames_dropped += 1);
                            frame = newer;
                        }
                        None => return Some(frame),
                    }
                },
                Ok(Mail::Control(WorkerControl::Stop)) => return None,
                Ok(Mail::Control(c)) => self.apply(c, run),
                Err(RecvTimeoutError::Timeout) => self.drain(&mut run.enc, &mut run.lost),
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Encodes one picture and sends what comes out; a warming encoder's
    /// keyframe is kept instead. On an encoder's failure, its fallback.
    fn encode(&self, frame: &RawFrame, run: &mut Run) {
        let codec = self.codec;
        let input = fit(frame, &mut run.scaled, run.enc.settings());
        let keyframe = run.start.keyframe(frame.captured);
        let started = Instant::now();
        let result = if keyframe {
            run.enc
                .encode_keyframe(input)
                .map(|out| run.start.encoded(out))
        } else {
            run.enc.encode(input)
        };
        let took = started.elapsed().as_secs_f64();
        self.board.update(codec, |s| {
            s.frames_encoded += 1;
            s.encode_seconds += took;
        });
        match result {
            Ok(Some(out)) => self.send(out, &mut run.enc, &mut run.lost),
            Ok(None) => {}
            Err(e) => match (!run.fell_back)
                .then(|| self.factory.fallback(codec))
                .flatten()
            {
                Some(fallback) => {
                    run.fell_back = true;
                    tracing::error!(
                        "{codec} encoder {} failed ({e}); switching to {}",
                        run.enc.implementation(),
                        fallback.implementation()
                    );
                    run.enc = fallback;
                    self.board.running(&run.enc, self.board_viewers());
                }
                None => {
                    run.errors += 1;
                    if run.errors.is_power_of_two() {
                        tracing::error!("{codec} encode: {e} ({} errors so far)", run.errors);
                    }
                }
            },
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

    /// A keyframe ask or a bitrate, the moment it comes. The first ask
    /// while warming is answered with the keyframe kept, at once.
    fn apply(&self, control: WorkerControl, run: &mut Run) {
        match control {
            WorkerControl::Keyframe => match run.start.asked() {
                Some(kept) => self.send(kept, &mut run.enc, &mut run.lost),
                None => run.enc.request_keyframe(),
            },
            WorkerControl::Bitrate(kbps) => {
                if kbps != run.enc.settings().bitrate_kbps {
                    run.start.rate_changed();
                }
                match run.enc.set_bitrate(kbps) {
                    Ok(()) => self.board.update(self.codec, |s| s.bitrate_kbps = kbps),
                    Err(e) => tracing::warn!("{} bitrate {kbps} kbit/s refused: {e}", self.codec),
                }
            }
            WorkerControl::Stop => {}
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

/// A running encoder and what its thread keeps beside it.
struct Run {
    enc: Encoder,
    start: Start,
    /// Only for a board that runs VP8 smaller than the camera (`fit`).
    scaled: Option<RawFrame>,
    errors: u64,
    fell_back: bool,
    /// Frames the media loop had no room for.
    lost: u64,
}

/// The longest an encoder warms (see [`Start`]): every picture a keyframe
/// costs an IDR's encode per frame (openh264 at 720p: 11-30 ms, against
/// 4-5 ms for a P-frame), for the time a first viewer takes to connect
/// (about 60 ms on a LAN, seconds across the internet).
const WARM_FOR: Duration = Duration::from_secs(2);

/// An encoder's start, until the first keyframe is asked for. It starts
/// with its first viewer's offer, while that viewer still connects; when
/// the viewer is connected it asks for a keyframe, and the next picture
/// comes up to a frame interval later and then takes an IDR's encode: at
/// 720p on this machine 11-30 ms. So while warming every picture is made a
/// keyframe and the last one kept, and the ask is answered with it at once
/// (it went to nobody: no viewer was connected). Sans-IO: the pictures'
/// capture times are its clock.
#[derive(Debug)]
enum Start {
    Warming {
        /// Set by the first picture.
        until: Option<Instant>,
        kept: Option<EncodedFrame>,
    },
    /// The first keyframe was asked for, or warming ran out, or this
    /// encoder does not warm: the recorder's (it runs without viewers, and
    /// its clips must not be all keyframes), one started again for viewers
    /// already watching, and one that holds pictures in flight (the
    /// hardware one: it could hand back a keyframe after the kept one).
    Done,
}

impl Start {
    fn new(warm: bool) -> Start {
        if warm {
            Start::Warming {
                until: None,
                kept: None,
            }
        } else {
            Start::Done
        }
    }

    /// Whether the picture captured at `captured` is to be a keyframe.
    fn keyframe(&mut self, captured: Instant) -> bool {
        let Start::Warming { until, .. } = self else {
            return false;
        };
        if captured < *until.get_or_insert(captured + WARM_FOR) {
            return true;
        }
        *self = Start::Done;
        false
    }

    /// What a picture made a keyframe came out as: while warming it is
    /// kept, and nothing goes out (no viewer is connected yet, and the
    /// first must get exactly one keyframe, the one its ask is answered
    /// with: two on a slow link would overfill its queue). Otherwise it is
    /// handed back to go out. Nothing out (the encoder holds the picture)
    /// ends warming.
    fn encoded(&mut self, out: Option<EncodedFrame>) -> Option<EncodedFrame> {
        let Start::Warming { kept, .. } = self else {
            return out;
        };
        match out {
            Some(f) if f.keyframe => {
                *kept = Some(f);
                None
            }
            other => {
                *self = Start::Done;
                other
            }
        }
    }

    /// The target changed: the keyframe kept was made for another rate (a
    /// slow link's first keyframe must be made at its start rate), so the
    /// next picture makes the one to keep.
    fn rate_changed(&mut self) {
        if let Start::Warming { kept, .. } = self {
            *kept = None;
        }
    }

    /// The first keyframe was asked for: the one kept, if there is one.
    /// Warming ends either way.
    fn asked(&mut self) -> Option<EncodedFrame> {
        match std::mem::replace(self, Start::Done) {
            Start::Warming { kept, .. } => kept,
            Start::Done => None,
        }
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

    fn encoded(captured: Instant, keyframe: bool) -> EncodedFrame {
        EncodedFrame {
            codec: VideoCodec::H264,
            data: Arc::from(&[0u8][..]),
            keyframe,
            droppable: false,
            width: 16,
            height: 16,
            captured,
            stamp_ms: 0,
            seq: 0,
        }
    }

    const FRAME: Duration = Duration::from_millis(33);

    /// A picture at `at` through a warming start: whether it was made a
    /// keyframe (and then it came out as one).
    fn picture(start: &mut Start, at: Instant) -> bool {
        let keyframe = start.keyframe(at);
        if keyframe {
            assert!(start.encoded(Some(encoded(at, true))).is_none(), "kept");
        }
        keyframe
    }

    #[test]
    fn warming_makes_keyframes_and_the_ask_gets_the_last() {
        let t0 = Instant::now();
        let mut start = Start::new(true);
        for n in 0..3 {
            assert!(picture(&mut start, t0 + n * FRAME));
        }
        let kept = start.asked().expect("a keyframe kept");
        assert_eq!(kept.captured, t0 + 2 * FRAME);
        assert!(!start.keyframe(t0 + 3 * FRAME), "over");
        assert!(start.asked().is_none(), "only the first ask");
    }

    #[test]
    fn a_keyframe_made_for_another_rate_is_not_kept() {
        let t0 = Instant::now();
        let mut start = Start::new(true);
        assert!(picture(&mut start, t0));
        start.rate_changed();
        assert!(start.keyframe(t0 + FRAME), "still warming");
        assert!(start.asked().is_none(), "asked before a new one was made");
        let mut start = Start::new(true);
        assert!(picture(&mut start, t0));
        start.rate_changed();
        assert!(picture(&mut start, t0 + FRAME));
        assert_eq!(start.asked().map(|f| f.captured), Some(t0 + FRAME));
    }

    #[test]
    fn an_ask_before_any_picture_is_an_ordinary_ask() {
        let mut start = Start::new(true);
        assert!(start.asked().is_none());
        let t0 = Instant::now();
        assert!(!start.keyframe(t0), "over");
        let out = start.encoded(Some(encoded(t0, true)));
        assert!(out.is_some(), "a keyframe made now goes out");
    }

    #[test]
    fn warming_runs_out() {
        let t0 = Instant::now();
        let mut start = Start::new(true);
        let mut at = t0;
        while picture(&mut start, at) {
            at += FRAME;
        }
        assert!(at >= t0 + WARM_FOR && at < t0 + WARM_FOR + FRAME);
        assert!(start.asked().is_none(), "nothing kept once over");
    }

    #[test]
    fn an_encoder_that_holds_pictures_does_not_warm_on() {
        let t0 = Instant::now();
        let mut start = Start::new(true);
        assert!(start.keyframe(t0));
        start.encoded(None);
        assert!(!start.keyframe(t0 + FRAME));
        assert!(start.asked().is_none());
    }

    #[test]
    fn a_recorders_encoder_never_warms() {
        let mut start = Start::new(false);
        assert!(!start.keyframe(Instant::now()));
        assert!(start.asked().is_none());
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
