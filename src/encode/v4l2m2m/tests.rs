//! The encoder against the fake driver when the driver behaves: layout,
//! negotiation, controls, stamps, headers, the probe, and the real ioctl
//! path on files that are no encoder. `misbehaving.rs` has the rest.

use std::path::Path;
use std::time::Instant;

use v4l2_sys_mit as sys;

use super::device::{PIX_FMT_H264, PIX_FMT_NV12, PIX_FMT_YUV420, Queue};
use super::fake::{Config, Failure, PPS, SPS, frame, has_nal, open_err, open_ok, settings};
use super::setup::CODED_BUFFER_MIN;
use super::{M2mError, V4l2M2m};
use crate::encode::{EncodeError, VideoEncoder};
use crate::frame::VideoCodec;

#[test]
fn the_driver_stride_and_height_are_honoured() {
    let (mut enc, rig) = open_ok(Config::default(), settings(100, 60));
    let f = frame(100, 60, 3, Instant::now());
    enc.encode(&f, false).unwrap().expect("a picture");
    let state = rig.state();
    let log = &state.log;
    let (q, coded) = log.formats[0];
    assert_eq!(
        (q, coded.fourcc, coded.width, coded.height),
        (Queue::Capture, PIX_FMT_H264, 100, 60)
    );
    assert!(coded.sizeimage >= CODED_BUFFER_MIN);
    let (q, raw) = log.formats[1];
    assert_eq!(
        (q, raw.fourcc, raw.bytesperline, raw.height),
        (Queue::Output, PIX_FMT_YUV420, 128, 64)
    );
    let got = &log.inputs[0];
    assert_eq!(got.len(), 128 * 64 * 3 / 2);
    let (y, u, v) = f.planes();
    for r in 0..60 {
        assert_eq!(&got[r * 128..][..100], &y[r * 100..][..100], "Y row {r}");
    }
    let (u_at, v_at) = (128 * 64, 128 * 64 + 64 * 32);
    for r in 0..30 {
        assert_eq!(&got[u_at + r * 64..][..50], &u[r * 50..][..50], "U row {r}");
        assert_eq!(&got[v_at + r * 64..][..50], &v[r * 50..][..50], "V row {r}");
    }
}

#[test]
fn nv12_gets_interleaved_chroma() {
    let cfg = Config {
        no_yuv420: true,
        ..Config::default()
    };
    let (mut enc, rig) = open_ok(cfg, settings(64, 32));
    let f = frame(64, 32, 1, Instant::now());
    enc.encode(&f, false).unwrap().expect("a picture");
    let state = rig.state();
    assert_eq!(state.log.formats[1].1.fourcc, PIX_FMT_NV12);
    let got = &state.log.inputs[0];
    let (y, u, v) = f.planes();
    assert_eq!(&got[..64 * 32], y);
    let uv = &got[64 * 32..];
    for r in 0..16 {
        for c in 0..32 {
            assert_eq!(uv[r * 64 + 2 * c], u[r * 32 + c]);
            assert_eq!(uv[r * 64 + 2 * c + 1], v[r * 32 + c]);
        }
    }
}

#[test]
fn frames_round_trip_with_their_stamps() {
    let (mut enc, rig) = open_ok(Config::default(), settings(320, 240));
    for n in 0..10 {
        let f = rig.frame(320, 240, n);
        rig.at(f.captured);
        let out = enc
            .encode(&f, n == 0)
            .unwrap()
            .expect("one out per frame in");
        assert_eq!(out.stamp_ms, f.stamp_ms);
        assert_eq!(out.captured, f.captured);
        assert_eq!(out.keyframe, n == 0, "frame {n}");
        assert_eq!(
            (out.width, out.height, out.codec),
            (320, 240, VideoCodec::H264)
        );
        assert_eq!(has_nal(&out.data, 7), n == 0, "SPS only on the IDR");
        assert!(enc.poll_output().unwrap().is_none());
    }
    assert_eq!(rig.state().log.inputs.len(), 10);
    assert_eq!(enc.implementation(), "v4l2m2m /dev/fake");
}

#[test]
fn the_controls_are_set_and_bitrate_changes_live() {
    let (mut enc, rig) = open_ok(Config::default(), settings(1280, 720));
    let expected = vec![
        (sys::V4L2_CID_MPEG_VIDEO_H264_PROFILE, 1),
        (
            sys::V4L2_CID_MPEG_VIDEO_H264_LEVEL,
            sys::v4l2_mpeg_video_h264_level_V4L2_MPEG_VIDEO_H264_LEVEL_3_1 as i32,
        ),
        (sys::V4L2_CID_MPEG_VIDEO_BITRATE, 1_500_000),
        (sys::V4L2_CID_MPEG_VIDEO_H264_I_PERIOD, 1800),
        (sys::V4L2_CID_MPEG_VIDEO_REPEAT_SEQ_HEADER, 1),
    ];
    assert_eq!(rig.state().log.controls, expected);
    assert_eq!(rig.state().log.frame_rate, Some(30));
    let t0 = Instant::now();
    enc.encode(&frame(1280, 720, 0, t0), true).unwrap();

    rig.state().log.controls.clear();
    enc.set_bitrate(800).unwrap();
    assert_eq!(enc.settings().bitrate_kbps, 800);
    let out = enc
        .encode(&frame(1280, 720, 1, t0), false)
        .unwrap()
        .unwrap();
    assert!(!out.keyframe, "a bitrate change costs no keyframe");
    assert_eq!(
        rig.state().log.controls,
        vec![(sys::V4L2_CID_MPEG_VIDEO_BITRATE, 800_000)]
    );

    let out = enc.encode(&frame(1280, 720, 2, t0), true).unwrap().unwrap();
    assert!(out.keyframe && has_nal(&out.data, 7) && has_nal(&out.data, 8));
    assert_eq!(
        rig.state().log.controls.last(),
        Some(&(sys::V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME, 1))
    );
}

#[test]
fn a_refused_optional_control_is_skipped_and_headers_are_put_back() {
    let cfg = Config {
        refuse: vec![
            sys::V4L2_CID_MPEG_VIDEO_REPEAT_SEQ_HEADER,
            sys::V4L2_CID_MPEG_VIDEO_H264_LEVEL,
        ],
        ..Config::default()
    };
    let (mut enc, _rig) = open_ok(cfg, settings(640, 480));
    let t0 = Instant::now();
    let first = enc.encode(&frame(640, 480, 0, t0), true).unwrap().unwrap();
    assert!(has_nal(&first.data, 7));
    enc.encode(&frame(640, 480, 1, t0), false).unwrap();
    let idr = enc.encode(&frame(640, 480, 2, t0), true).unwrap().unwrap();
    assert!(idr.keyframe);
    assert!(
        idr.data.starts_with(&SPS) && has_nal(&idr.data, 8) && has_nal(&idr.data, 5),
        "the SPS/PPS of the first IDR come again: {:02x?}",
        &idr.data[..]
    );
    assert!(idr.data[SPS.len()..].starts_with(&PPS));
}

#[test]
fn a_refused_required_control_fails_the_open() {
    let cfg = Config {
        refuse: vec![sys::V4L2_CID_MPEG_VIDEO_BITRATE],
        ..Config::default()
    };
    assert!(matches!(
        open_err(cfg, settings(640, 480)),
        M2mError::ControlRefused {
            control: "BITRATE",
            ..
        }
    ));
    let cfg = Config {
        missing: vec![sys::V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME],
        ..Config::default()
    };
    assert!(matches!(
        open_err(cfg, settings(640, 480)),
        M2mError::MissingControl {
            control: "FORCE_KEY_FRAME"
        }
    ));
}

#[test]
fn a_device_that_is_no_h264_encoder_is_refused() {
    let cfg = Config {
        caps: Some(sys::V4L2_CAP_VIDEO_CAPTURE | sys::V4L2_CAP_STREAMING),
        ..Config::default()
    };
    let e = open_err(cfg, settings(640, 480));
    assert!(
        matches!(
            e,
            M2mError::NotAnEncoder {
                caps: 0x0400_0001,
                ..
            }
        ),
        "{e}"
    );
    let cfg = Config {
        no_h264: true,
        ..Config::default()
    };
    let e = open_err(cfg, settings(640, 480));
    assert!(
        matches!(&e, M2mError::NoH264 { offered } if offered == "MJPG"),
        "{e}"
    );
}

#[test]
fn a_driver_that_ends_mid_stream_stops_the_encoder_at_once() {
    let cfg = Config {
        fail: Some((2, Failure::Epipe)),
        ..Config::default()
    };
    let (mut enc, rig) = open_ok(cfg, settings(320, 240));
    for n in 0..2 {
        let f = rig.frame(320, 240, n);
        rig.at(f.captured);
        assert!(enc.encode(&f, n == 0).unwrap().is_some());
    }
    let f = rig.frame(320, 240, 2);
    rig.at(f.captured);
    match enc.encode(&f, false) {
        Err(EncodeError::V4l2M2m(e)) => {
            assert!(matches!(e, M2mError::Stopped { .. }), "{e}");
            assert!(e.is_fatal());
        }
        other => panic!("{other:?}"),
    }
    drop(enc);
    assert_eq!(
        rig.state().log.stream_offs,
        vec![Queue::Capture, Queue::Output]
    );
}

#[test]
fn headers_in_a_buffer_of_their_own_join_their_idr() {
    let cfg = Config {
        separate_headers: true,
        ..Config::default()
    };
    let (mut enc, rig) = open_ok(cfg, settings(320, 240));
    for n in 0..3 {
        let f = rig.frame(320, 240, n);
        let out = enc.encode(&f, n == 0).unwrap().unwrap();
        assert_eq!(out.stamp_ms, f.stamp_ms);
        assert_eq!(out.keyframe, n == 0);
        assert_eq!(has_nal(&out.data, 7), n == 0);
    }
}

#[test]
fn a_picture_split_over_full_buffers_is_joined() {
    let cfg = Config {
        split: true,
        ..Config::default()
    };
    let (mut enc, rig) = open_ok(cfg, settings(320, 240));
    enc.encode(&rig.frame(320, 240, 0), true).unwrap();
    let f = rig.frame(320, 240, 1);
    let out = enc.encode(&f, false).unwrap().unwrap();
    assert_eq!(out.stamp_ms, f.stamp_ms);
    assert_eq!(out.data.len(), CODED_BUFFER_MIN as usize + 2);
    assert_eq!(&out.data[..6], &[0, 0, 0, 1, 0x41, 0xff]);
    assert_eq!(&out.data[out.data.len() - 2..], &[0x9a, 1]);
}

#[test]
fn the_probe_finds_constrained_baseline() {
    let (enc, _rig) = open_ok(Config::default(), settings(1280, 720));
    let mut enc = crate::encode::Encoder::new(Box::new(enc));
    assert_eq!(
        enc.probe().unwrap(),
        crate::encode::SdpParams::H264 {
            profile_level_id: 0x42e01f
        }
    );
}

#[test]
fn a_missing_device_names_its_path() {
    let path = Path::new("/nonexistent/rtcam-video99");
    let Err(e) = V4l2M2m::open(path, settings(640, 480)) else {
        panic!("opened a device that does not exist");
    };
    let text = e.to_string();
    assert!(text.contains("/nonexistent/rtcam-video99"), "{text}");
    assert!(matches!(e, EncodeError::V4l2M2m(M2mError::Open { .. })));
}

#[test]
fn a_file_that_is_no_v4l2_device_fails_querycap() {
    let Err(e) = V4l2M2m::open(Path::new("/dev/null"), settings(640, 480)) else {
        panic!("/dev/null opened as an encoder");
    };
    match e {
        EncodeError::V4l2M2m(M2mError::Ioctl { call, source }) => {
            assert_eq!(call, "VIDIOC_QUERYCAP");
            // qemu-user answers an ioctl it does not know with ENOSYS.
            let errno = source.raw_os_error();
            assert!(
                matches!(errno, Some(libc::ENOTTY | libc::ENOSYS)),
                "{errno:?}"
            );
        }
        other => panic!("{other}"),
    }
}
