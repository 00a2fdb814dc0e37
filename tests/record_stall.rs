//! A disk that stalls for 5 s under the real recorder thread (the disk is
//! this test, holding the writes): the encoder's hand-off never waits; the
//! queue rides the stall out; with a shorter queue the clip ends where it
//! was whole, the state says "stalled", and recording goes on by itself once
//! the disk has caught up.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rtcam::encode::pool::EncodedTap;
use rtcam::frame::{EncodedFrame, VideoCodec};
use rtcam::record::disk::DiskOp;
use rtcam::record::recorder::{Recorder, RecorderConfig};
use rtcam::record::status::{DiskState, RecordStatus};
use rtcam::record::tap::RecorderThread;
use rtcam::record::{EventBoard, RecordMode};

/// What the disk saw: (clip, op, fragment number).
type Log = Vec<(String, &'static str, Option<u32>)>;

fn au(keyframe: bool) -> Arc<[u8]> {
    let nals: Vec<&[u8]> = if keyframe {
        vec![
            &[0x67, 0x42, 0xc0, 0x1f, 0x8c, 0x8d, 0x40],
            &[0x68, 0xce, 0x3c, 0x80],
            &[0x65, 0x88, 0x84, 0x00],
        ]
    } else {
        vec![&[0x41, 0x9a, 0x02, 0x03]]
    };
    let mut v = Vec::new();
    for n in nals {
        v.extend_from_slice(&[0, 0, 0, 1]);
        v.extend_from_slice(n);
    }
    v.into()
}

/// A fragment's sequence number (mfhd, right after the moof's header).
fn fragment_seq(bytes: &[u8]) -> u32 {
    assert_eq!(&bytes[4..8], b"moof");
    assert_eq!(&bytes[12..16], b"mfhd");
    u32::from_be_bytes(bytes[20..24].try_into().unwrap())
}

/// What the disk saw, and the status at the end.
struct Run {
    log: Log,
    longest: Duration,
    stalled_seen: bool,
    status: RecordStatus,
}

/// 14 s of a 30 fps encoder into the real recorder thread, with a disk that
/// stalls for 5 s after its third fragment and a queue of `disk_queue`.
fn run(disk_queue: usize) -> Run {
    let status = RecordStatus::new(RecordMode::Continuous, None);
    let (ops_tx, ops) = std::sync::mpsc::channel::<DiskOp>();
    let queued = Arc::new(AtomicUsize::new(0));
    let asked = Arc::new(AtomicU64::new(0));
    let a = asked.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let (tap, thread) = RecorderThread {
        recorder: Recorder::new(RecorderConfig::new(
            RecordMode::Continuous,
            Duration::from_secs(2),
            Duration::from_secs(2),
            Duration::from_secs(300),
        )),
        status: status.clone(),
        events: EventBoard::default(),
        disk: ops_tx,
        queued: queued.clone(),
        keyframe: Box::new(move || {
            a.fetch_add(1, Ordering::Relaxed);
        }),
        broken: None,
        disk_queue,
        stop: stop.clone(),
    }
    .spawn()
    .unwrap();

    // The disk: takes each write at once, except that after the third
    // fragment it stalls for 5 s.
    let log: Arc<Mutex<Log>> = Arc::default();
    let l = log.clone();
    let q = queued.clone();
    let disk = std::thread::spawn(move || {
        let mut appends = 0;
        for op in ops {
            let entry = match &op {
                DiskOp::Open { id, .. } => (id.to_string(), "open", None),
                DiskOp::Append { id, bytes } => {
                    appends += 1;
                    (id.to_string(), "append", Some(fragment_seq(bytes)))
                }
                DiskOp::Close { id, .. } => (id.to_string(), "close", None),
            };
            l.lock().unwrap().push(entry);
            if appends == 3 && matches!(op, DiskOp::Append { .. }) {
                std::thread::sleep(Duration::from_secs(5));
            }
            q.fetch_sub(1, Ordering::Relaxed);
        }
    });

    // The encoder: 30 frames a second for 14 s, a keyframe when asked.
    let t0 = Instant::now();
    let (mut seen_asks, mut longest, mut stalled_seen) = (0, Duration::ZERO, false);
    for n in 0..(14 * 30) {
        let at = t0 + Duration::from_millis(n * 1000 / 30);
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        let asks = asked.load(Ordering::Relaxed);
        let keyframe = n == 0 || asks > seen_asks;
        seen_asks = asks;
        let frame = EncodedFrame {
            codec: VideoCodec::H264,
            data: au(keyframe),
            keyframe,
            droppable: false,
            width: 640,
            height: 360,
            captured: Instant::now(),
            stamp_ms: n * 33,
            seq: n,
        };
        let handed = Instant::now();
        tap.encoded(&frame);
        longest = longest.max(handed.elapsed());
        stalled_seen |= status.get().disk == DiskState::Stalled;
    }
    stop.store(true, Ordering::Relaxed);
    thread.join().unwrap();
    drop(tap);
    disk.join().unwrap();

    let log = log.lock().unwrap().clone();
    Run {
        log,
        longest,
        stalled_seen,
        status,
    }
}

fn clips(log: &Log) -> Vec<String> {
    log.iter()
        .filter(|e| e.1 == "open")
        .map(|e| e.0.clone())
        .collect()
}

/// Every clip's fragments are 1, 2, 3... (none after a hole), and it is closed.
fn assert_whole(log: &Log) {
    for id in clips(log) {
        let seqs: Vec<u32> = log
            .iter()
            .filter(|e| e.0 == id && e.1 == "append")
            .filter_map(|e| e.2)
            .collect();
        let whole = seqs.iter().enumerate().all(|(i, s)| *s == i as u32 + 1);
        assert!(whole, "{id}: fragments {seqs:?} (none after a hole)");
        assert!(
            log.iter().any(|e| e.0 == id && e.1 == "close"),
            "{id} is closed"
        );
    }
}

#[test]
fn a_5_s_stall_is_ridden_out_and_the_encoder_never_waits() {
    let r = run(rtcam::record::tap::DISK_QUEUE);
    assert!(
        r.longest < Duration::from_millis(500),
        "the hand-off waited {:?}",
        r.longest
    );
    assert!(!r.stalled_seen, "8 fragments of queue ride out 5 s");
    assert_eq!(r.status.get().dropped, 0);
    assert_eq!(clips(&r.log).len(), 1, "one clip, whole: {:?}", r.log);
    assert_whole(&r.log);
}

#[test]
fn a_stall_longer_than_the_queue_ends_the_clip_whole_and_recording_goes_on() {
    let r = run(2);
    assert!(
        r.longest < Duration::from_millis(500),
        "the hand-off waited {:?}",
        r.longest
    );
    assert!(
        r.stalled_seen,
        "the state said stalled while the disk was stuck"
    );
    assert_eq!(
        r.status.get().disk,
        DiskState::Ready,
        "back once it caught up"
    );
    assert!(r.status.get().dropped > 0);
    assert!(
        clips(&r.log).len() >= 2,
        "recording went on after the stall: {:?}",
        r.log
    );
    assert_whole(&r.log);
}
