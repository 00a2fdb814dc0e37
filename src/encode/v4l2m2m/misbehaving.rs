//! The asynchronous encoder against a fake driver that misbehaves, on
//! simulated time: frames come every 33 ms, the device's clock follows
//! them, and a poll that finds nothing moves it on instead of sleeping.
//!
//! What each test shows: a dropped picture costs that frame alone; late
//! and swapped pictures keep their own capture times and leave in capture
//! order; a picture later than the reorder wait is written off alone; no
//! call holds the thread longer than the wait (under a frame interval);
//! a device counts as failed only on a pattern (silent, erring, or losing
//! most pictures) within about a second; and the supervisor falls back to
//! openh264 then, and goes back to the hardware once it works.

use std::time::Duration;

use super::fake::{Config, FRAME, Failure, Rig, has_nal, open_on, settings};
use super::supervise::{Opener, Supervised};
use super::{M2mError, V4l2M2m};
use crate::encode::{EncodeError, EncoderSettings, VideoEncoder};
use crate::frame::{EncodedFrame, RawFrame, VideoCodec};

const W: usize = 160;
const H: usize = 120;
/// The longest a call may hold the thread: the wait (3/4 of a frame
/// interval at 30 fps), plus the shortest poll.
const HOLD: Duration = Duration::from_millis(26);

/// Which frame a picture is of (the fake stamps frame n with 33 n ms).
fn index(f: &EncodedFrame) -> u64 {
    (f.stamp_ms - 1_700_000_000_000) / 33
}

/// Encodes frame `n` at its capture time and takes every picture that is
/// out, `encode`'s first; checks the call held the thread no longer than
/// [`HOLD`].
fn step(
    enc: &mut dyn VideoEncoder,
    rig: &Rig,
    n: u64,
    key: bool,
) -> Result<Vec<EncodedFrame>, EncodeError> {
    let f = rig.frame(W, H, n);
    rig.at(f.captured);
    let mut out: Vec<EncodedFrame> = enc.encode(&f, key)?.into_iter().collect();
    while let Some(late) = enc.poll_output()? {
        out.push(late);
    }
    let held = rig.now().saturating_duration_since(f.captured);
    assert!(held <= HOLD, "frame {n} held the thread {held:?}");
    Ok(out)
}

/// Runs frames `0..frames` (the first a keyframe): each picture with the
/// frame at which it came out.
fn run(enc: &mut V4l2M2m, rig: &Rig, frames: u64) -> Vec<(u64, EncodedFrame)> {
    let mut got = Vec::new();
    for n in 0..frames {
        let out = step(enc, rig, n, n == 0).unwrap_or_else(|e| panic!("frame {n}: {e}"));
        got.extend(out.into_iter().map(|p| (n, p)));
    }
    got
}

/// Every picture carries its own frame's capture times.
fn check_stamps(got: &[(u64, EncodedFrame)], rig: &Rig) {
    for (_, p) in got {
        let f = rig.frame(W, H, index(p));
        assert_eq!((p.captured, p.stamp_ms), (f.captured, f.stamp_ms));
    }
}

fn indices(got: &[(u64, EncodedFrame)]) -> Vec<u64> {
    got.iter().map(|(_, p)| index(p)).collect()
}

fn open(cfg: Config) -> (V4l2M2m, Rig) {
    let rig = Rig::new();
    let enc = open_on(cfg, settings(W as u32, H as u32), &rig).unwrap();
    (enc, rig)
}

#[test]
fn a_dropped_picture_costs_that_frame_alone() {
    let (mut enc, rig) = open(Config {
        drop: vec![5],
        ..Config::default()
    });
    let got = run(&mut enc, &rig, 30);
    let expected: Vec<u64> = (0..30).filter(|&n| n != 5).collect();
    assert_eq!(indices(&got), expected);
    check_stamps(&got, &rig);
    // The one after it waited a frame for it; every other came out at once.
    for (at, p) in &got {
        let lag = at - index(p);
        assert!(
            lag <= u64::from(index(p) == 6),
            "frame {} lag {lag}",
            index(p)
        );
    }
    // The pictures after the lost one may refer to it: the next frame
    // queued is a keyframe, with its parameter sets.
    let key: Vec<u64> = got
        .iter()
        .filter(|(_, p)| p.keyframe)
        .map(|(_, p)| index(p))
        .collect();
    assert_eq!(key, [0, 8]);
    assert!(got.iter().all(|(_, p)| p.keyframe == has_nal(&p.data, 7)));
}

#[test]
fn late_pictures_keep_their_capture_times() {
    // The driver hands each picture back two frames late, in order.
    let (mut enc, rig) = open(Config {
        latency: 2,
        ..Config::default()
    });
    let got = run(&mut enc, &rig, 20);
    assert_eq!(indices(&got), (0..18).collect::<Vec<u64>>());
    check_stamps(&got, &rig);
    assert!(got.iter().all(|(at, p)| at - index(p) == 2));
    assert!(got.iter().all(|(_, p)| p.keyframe == (index(p) == 0)));
}

#[test]
fn swapped_pictures_leave_in_capture_order() {
    // Picture 4 comes back after picture 5 (and 9 after 10).
    let (mut enc, rig) = open(Config {
        delay: vec![(4, 1), (9, 1)],
        ..Config::default()
    });
    let got = run(&mut enc, &rig, 14);
    assert_eq!(indices(&got), (0..14).collect::<Vec<u64>>());
    check_stamps(&got, &rig);
    let late: Vec<(u64, u64)> = got
        .iter()
        .map(|(at, p)| (index(p), *at))
        .filter(|(n, at)| n != at)
        .collect();
    assert_eq!(late, [(4, 5), (9, 10)]);
}

#[test]
fn a_picture_later_than_the_reorder_wait_is_written_off_alone() {
    // Picture 4 comes back after 5, 6 and 7: too late, it is dropped.
    let (mut enc, rig) = open(Config {
        delay: vec![(4, 3)],
        ..Config::default()
    });
    let got = run(&mut enc, &rig, 12);
    let expected: Vec<u64> = (0..12).filter(|&n| n != 4).collect();
    assert_eq!(indices(&got), expected);
    check_stamps(&got, &rig);
    assert!(got.iter().all(|(at, p)| at - index(p) <= 1));
    let first_key_after = got.iter().find(|(_, p)| index(p) > 4 && p.keyframe);
    assert_eq!(first_key_after.map(|(_, p)| index(p)), Some(7));
}

/// Encodes from frame `from` on until the encoder fails: the frame it
/// failed at, and the error. Every frame before yields no picture.
fn until_failed(enc: &mut V4l2M2m, rig: &Rig, from: u64) -> (u64, M2mError) {
    for n in from..from + 200 {
        match step(enc, rig, n, false) {
            Ok(out) => assert!(out.is_empty(), "frame {n} gave a picture"),
            Err(EncodeError::V4l2M2m(e)) => return (n, e),
            Err(e) => panic!("frame {n}: {e}"),
        }
    }
    panic!("the encoder never failed");
}

/// The device was given up after between 0.8 and 2 s of trouble: not at
/// its first miss, and not much later than the health limits.
fn check_trouble_lasted(frames: u64) {
    let after = FRAME * frames as u32;
    assert!(
        after >= Duration::from_millis(800) && after <= Duration::from_secs(2),
        "given up after {after:?}"
    );
}

fn check_failed_after(frames: u64, e: &M2mError) {
    check_trouble_lasted(frames);
    assert!(matches!(e, M2mError::Failed(_)) && e.is_fatal(), "{e}");
}

#[test]
fn a_stalled_device_fails_after_a_second_not_at_its_first_late_picture() {
    let (mut enc, rig) = open(Config::default());
    assert_eq!(run(&mut enc, &rig, 10).len(), 10);
    rig.state().stalled = true;
    let (at, e) = until_failed(&mut enc, &rig, 10);
    check_failed_after(at - 10, &e);
}

#[test]
fn a_device_that_errs_on_every_call_fails_after_a_second() {
    let (mut enc, rig) = open(Config::default());
    assert_eq!(run(&mut enc, &rig, 10).len(), 10);
    rig.state().failing = true;
    let (at, e) = until_failed(&mut enc, &rig, 10);
    check_failed_after(at - 10, &e);
}

#[test]
fn pictures_flagged_failed_cost_their_frames_then_fail_the_device() {
    let cfg = Config {
        fail: Some((2, Failure::BufferFlag)),
        ..Config::default()
    };
    let (mut enc, rig) = open(cfg);
    assert_eq!(run(&mut enc, &rig, 2).len(), 2);
    let (at, e) = until_failed(&mut enc, &rig, 2);
    check_failed_after(at - 2, &e);
    drop(enc);
    assert_eq!(rig.state().log.stream_offs.len(), 2, "the streams stopped");
}

#[test]
fn a_device_that_errs_for_a_moment_goes_on() {
    let (mut enc, rig) = open(Config::default());
    let mut got = run(&mut enc, &rig, 10);
    rig.state().failing = true;
    for n in 10..20 {
        let out = step(&mut enc, &rig, n, false).unwrap();
        assert!(out.is_empty(), "frame {n}");
    }
    rig.state().failing = false;
    for n in 20..40 {
        let out = step(&mut enc, &rig, n, false).unwrap();
        got.extend(out.into_iter().map(|p| (n, p)));
    }
    let expected: Vec<u64> = (0..10).chain(20..40).collect();
    assert_eq!(indices(&got), expected);
    check_stamps(&got, &rig);
    assert!(got.iter().all(|(at, p)| *at == index(p)), "no lag after it");
}

// --- the supervisor ---------------------------------------------------------

/// The last bytes of openh264's stand-in's pictures.
const SW: [u8; 2] = [0x53, 0x57];

/// openh264's stand-in: a picture for every frame, marked.
struct StandIn(EncoderSettings);

impl VideoEncoder for StandIn {
    fn codec(&self) -> VideoCodec {
        VideoCodec::H264
    }
    fn implementation(&self) -> String {
        "openh264".into()
    }
    fn settings(&self) -> EncoderSettings {
        self.0
    }
    fn encode(&mut self, f: &RawFrame, key: bool) -> Result<Option<EncodedFrame>, EncodeError> {
        let nal = if key { 0x65 } else { 0x41 };
        let data = [0, 0, 0, 1, nal, SW[0], SW[1]];
        Ok(Some(EncodedFrame::of(f, VideoCodec::H264, &data, key)))
    }
    fn set_bitrate(&mut self, _: u32) -> Result<(), EncodeError> {
        Ok(())
    }
}

fn from_software(p: &EncodedFrame) -> bool {
    p.data.ends_with(&SW)
}

/// A supervisor whose hardware is a fake device of `rig` (each reopen a
/// fresh fake of the same device) and whose openh264 is the stand-in.
fn supervised(rig: &Rig) -> Supervised {
    let s = settings(W as u32, H as u32);
    let device = rig.clone();
    let mut open_hw: Opener = Box::new(
        move |s: EncoderSettings| -> Result<Box<dyn VideoEncoder>, EncodeError> {
            let enc: Box<dyn VideoEncoder> = Box::new(open_on(Config::default(), s, &device)?);
            Ok(enc)
        },
    );
    let open_sw: Opener = Box::new(
        |s: EncoderSettings| -> Result<Box<dyn VideoEncoder>, EncodeError> {
            let enc: Box<dyn VideoEncoder> = Box::new(StandIn(s));
            Ok(enc)
        },
    );
    let hw = open_hw(s).unwrap();
    Supervised::build(
        "v4l2m2m /dev/fake".into(),
        (open_hw, open_sw),
        s,
        Some(hw),
        rig.t0,
    )
    .unwrap()
}

#[test]
fn a_failed_device_falls_back_and_comes_back_when_it_works() {
    let rig = Rig::new();
    let mut enc = supervised(&rig);
    let hardware = "v4l2m2m /dev/fake";
    let mut got: Vec<(u64, EncodedFrame)> = Vec::new();
    let mut fell = None;
    let mut back = None;
    for n in 0..2_900u64 {
        // The device fails at frame 30 (1 s in) and works again from frame
        // 1200 (40 s in): the first retry, 30 s after the fallback, finds it
        // still failing; the second, 60 s after that, puts it back.
        match n {
            30 => rig.state().failing = true,
            1_200 => rig.state().failing = false,
            _ => {}
        }
        let out = step(&mut enc, &rig, n, n == 0).unwrap_or_else(|e| panic!("frame {n}: {e}"));
        for p in out {
            let sw = from_software(&p);
            if sw && fell.is_none() {
                fell = Some(n);
                assert!(p.keyframe, "openh264 takes over with a keyframe");
                assert_eq!(
                    enc.implementation(),
                    format!("openh264, standing in for {hardware}")
                );
            }
            if !sw && fell.is_some() && back.is_none() {
                back = Some(n);
                assert!(p.keyframe, "the hardware takes over with a keyframe");
            }
            got.push((n, p));
        }
    }
    let (fell, back) = (fell.expect("fell back"), back.expect("came back"));
    check_trouble_lasted(fell - 30);
    let away = FRAME * (back - fell) as u32;
    assert!(
        away >= Duration::from_secs(90) && away <= Duration::from_secs(91),
        "the hardware came back after {away:?}"
    );
    assert_eq!(enc.implementation(), hardware);
    // From the fallback on, every frame has exactly one picture, on time:
    // openh264's until the hardware's keyframe, the hardware's after.
    let since: Vec<&(u64, EncodedFrame)> = got.iter().filter(|(at, _)| *at >= fell).collect();
    let frames: Vec<u64> = since.iter().map(|(_, p)| index(p)).collect();
    assert_eq!(frames, (fell..2_900).collect::<Vec<u64>>());
    assert!(since.iter().all(|(at, p)| *at == index(p)));
    assert!(
        since
            .iter()
            .all(|(_, p)| from_software(p) == (index(p) < back))
    );
    check_stamps(&got, &rig);
}
