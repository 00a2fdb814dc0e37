//! The pool with a real openh264 worker: frames in through the tap, control
//! from the rtc task's side, encoded frames out.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc as tokio_mpsc;

use super::*;
use crate::capture::run::FrameSink;
use crate::frame::RawFrame;

const WAIT: Duration = Duration::from_secs(10);

struct Harness {
    tap: Arc<FrameTap>,
    board: StatusBoard,
    control: mpsc::Sender<EncoderControl>,
    frames: tokio_mpsc::Receiver<EncodedFrame>,
    t0: Instant,
}

impl Harness {
    /// A pool (spawn it, or start its encoders by hand) and its surroundings.
    fn new(record: Option<Arc<dyn EncodedTap>>) -> (Harness, Pool) {
        let settings = EncoderSettings {
            width: 320,
            height: 180,
            fps: 30,
            bitrate_kbps: 300,
            threads: 1,
            slice_bytes: crate::encode::DEFAULT_SLICE_BYTES,
        };
        let tap = Arc::new(FrameTap::new(StatusBoard::default(), None));
        let board = StatusBoard::default();
        let (control, rx) = mpsc::channel();
        let (frames_tx, frames) = tokio_mpsc::channel(64);
        let pool = Pool {
            factory: Arc::new(Factory {
                h264: H264Plan::OpenH264,
                h264_settings: settings,
                vp8_settings: settings,
            }),
            tap: tap.clone(),
            board: board.clone(),
            control: rx,
            frames: frames_tx,
            record,
        };
        let harness = Harness {
            tap,
            board,
            control,
            frames,
            t0: Instant::now(),
        };
        (harness, pool)
    }

    /// The pool running, its first H.264 viewer bound.
    fn start(record: Option<Arc<dyn EncodedTap>>) -> Harness {
        let (harness, pool) = Harness::new(record);
        pool.spawn().unwrap();
        harness
            .control
            .send(EncoderControl::Viewers(VideoCodec::H264, 1))
            .unwrap();
        harness
    }

    /// Publishes picture `n` (captured n frames after t0) once the worker
    /// takes it.
    fn publish(&self, n: u32) {
        let mut frame = RawFrame::black(320, 180);
        frame.captured = self.t0 + n * Duration::from_millis(33);
        frame.data[..320 * 180].fill(16 + (n % 10) as u8 * 20);
        let frame = Arc::new(frame);
        let until = Instant::now() + WAIT;
        while self.tap.publish(&frame) == 0 {
            assert!(Instant::now() < until, "the worker never took picture {n}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn next(&mut self) -> EncodedFrame {
        let until = Instant::now() + WAIT;
        loop {
            if let Ok(f) = self.frames.try_recv() {
                return f;
            }
            assert!(Instant::now() < until, "no frame came out");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits until the encoder has encoded `n` pictures.
    fn encoded(&self, n: u64) {
        let until = Instant::now() + WAIT;
        let done = || {
            self.board
                .snapshot()
                .first()
                .map_or(0, |s| s.frames_encoded)
        };
        while done() < n {
            assert!(Instant::now() < until, "the encoder never encoded {n}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn ask(&self) {
        self.control
            .send(EncoderControl::Keyframe(VideoCodec::H264))
            .unwrap();
    }

    fn at(&self, n: u32) -> Instant {
        self.t0 + n * Duration::from_millis(33)
    }
}

/// The encoder warms while its first viewer connects: every picture a
/// keyframe, kept and sent to nobody. The viewer's ask is answered with the
/// last one at once (no picture to wait for, none to encode), and the
/// pictures after it are P-frames.
#[test]
fn the_first_keyframe_asked_for_is_the_kept_one_at_once() {
    let mut pool = Harness::start(None);
    pool.publish(0);
    pool.publish(1);
    pool.encoded(2);
    assert!(pool.frames.try_recv().is_err(), "warming: nothing goes out");
    pool.ask();
    let kept = pool.next(); // no new picture published
    assert!(kept.keyframe);
    assert_eq!(kept.captured, pool.at(1), "the last picture");
    pool.publish(2);
    let next = pool.next();
    assert!(!next.keyframe, "warming is over");
    assert_eq!(next.captured, pool.at(2));
    assert_eq!(next.seq, kept.seq + 1);

    // Later asks wait for the next picture, as always.
    std::thread::sleep(Duration::from_millis(600)); // past the throttle's window
    pool.ask();
    std::thread::sleep(Duration::from_millis(100));
    assert!(pool.frames.try_recv().is_err(), "nothing without a picture");
    pool.publish(30);
    let later = pool.next();
    assert!(later.keyframe);
    assert_eq!(later.captured, pool.at(30));
}

struct Clips;
impl EncodedTap for Clips {
    fn encoded(&self, _: &EncodedFrame) {}
}

/// The recorder's encoder runs without viewers: its clips must not be all
/// keyframes, so it does not warm.
#[test]
fn the_recorders_encoder_does_not_warm() {
    let mut pool = Harness::start(Some(Arc::new(Clips)));
    pool.publish(0);
    assert!(pool.next().keyframe);
    pool.publish(1);
    assert!(!pool.next().keyframe);
    pool.ask();
    std::thread::sleep(Duration::from_millis(100));
    assert!(pool.frames.try_recv().is_err(), "no keyframe kept");
    pool.publish(2);
    assert!(pool.next().keyframe);
}

/// When the rtc task lets go, the pool tells its encoder to stop, and the
/// tap stops handing it pictures.
#[test]
fn the_encoder_stops_with_the_pool() {
    let Harness { tap, control, .. } = Harness::start(None);
    let picture = Arc::new(RawFrame::black(320, 180));
    let until = Instant::now() + WAIT;
    while tap.publish(&picture) == 0 {
        assert!(Instant::now() < until, "the encoder never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(control);
    while tap.wants_pictures() {
        assert!(Instant::now() < until, "the encoder never stopped");
        tap.publish(&picture);
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// An encoder started again while its viewers watch (the last one died)
/// does not warm: its frames must reach them at once.
#[test]
fn an_encoder_started_again_for_viewers_watching_does_not_warm() {
    let (mut harness, pool) = Harness::new(None);
    let _worker = pool
        .start_encoder(VideoCodec::H264, 1, Warm::No)
        .expect("started");
    harness.publish(0);
    assert!(harness.next().keyframe);
    harness.publish(1);
    let p = harness.next();
    assert!(!p.keyframe);
    assert_eq!(p.captured, harness.at(1));
}
