//! Recorded frames for the QEMU system test's v4l2loopback cameras: what an
//! MJPEG webcam and an H.264 webcam would send, made from rtcam's own test
//! pattern (colour bars, a moving box and the timestamp stripe) at 640x360.
//! Inside the guest, `tests/qemu/loopback-feed.c` writes them to the
//! loopback devices at 15 fps, in a loop.
//!
//!     cargo run --example loopback_frames -- OUT_DIR [--frames 30]
//!
//! writes OUT_DIR/mjpeg.frames (JPEG, 4:2:2, full range, as webcams send)
//! and OUT_DIR/h264.frames (openh264's constrained baseline, one access unit
//! per record, an IDR with SPS and PPS every 15 frames), each a run of
//! `[u32 little-endian length][bytes]` records. Every frame is checked on
//! the way out: decoded again, its stripe must read back.

#[path = "support/camera.rs"]
mod camera;

use std::io::Write;

use rtcam::capture::mjpeg::MjpegDecoder;
use rtcam::capture::pattern::{Look, TestPattern};
use rtcam::capture::stripe;
use rtcam::encode::openh264::OpenH264;
use rtcam::encode::{EncoderSettings, VideoEncoder};
use rtcam::frame::RawFrame;

const W: usize = 640;
const H: usize = 360;
const FPS: u32 = 15;

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let out = std::path::PathBuf::from(
        argv.first()
            .expect("usage: loopback_frames OUT_DIR [--frames N]"),
    );
    let frames: usize = match argv.get(1).map(String::as_str) {
        Some("--frames") => argv[2].parse().expect("--frames N"),
        _ => 30,
    };
    std::fs::create_dir_all(&out).unwrap();
    // A high rate only so that next_frame never sleeps; the stamps are the
    // wall clock at drawing time.
    let mut pattern = TestPattern::new(W, H, 1000, Look::Bars).unwrap();
    let pictures: Vec<RawFrame> = (0..frames)
        .map(|_| {
            let mut f = RawFrame::black(W, H);
            pattern.next_frame(&mut f);
            f
        })
        .collect();

    let mut decoder = MjpegDecoder::new();
    let mut back = RawFrame::black(W, H);
    let mut mjpeg = Vec::new();
    let mut decoding = std::time::Duration::ZERO;
    for (i, p) in pictures.iter().enumerate() {
        let jpeg = camera::to_jpeg(p);
        let t = std::time::Instant::now();
        decoder.decode(&jpeg, &mut back).expect("our JPEG decodes");
        decoding += t.elapsed();
        let d = stripe::decode_luma(back.planes().0, W, H, W).expect("stripe survives JPEG");
        assert_eq!(d.stamp_ms, p.stamp_ms, "frame {i}");
        record(&mut mjpeg, &jpeg);
    }

    let settings = EncoderSettings {
        width: W as u32,
        height: H as u32,
        fps: FPS,
        bitrate_kbps: 400,
        threads: 1,
        slice_bytes: rtcam::encode::DEFAULT_SLICE_BYTES,
    };
    let mut enc = OpenH264::new(settings).expect("openh264");
    let mut check = openh264::decoder::Decoder::new().unwrap();
    let mut h264 = Vec::new();
    let mut idrs = 0;
    for (i, p) in pictures.iter().enumerate() {
        let f = enc
            .encode(p, i % FPS as usize == 0)
            .expect("encodes")
            .expect("openh264 gives a unit per frame");
        assert_eq!(f.keyframe, i % FPS as usize == 0, "frame {i}");
        idrs += f.keyframe as usize;
        let yuv = check
            .decode(&f.data)
            .expect("our H.264 decodes")
            .expect("a picture per unit");
        use openh264::formats::YUVSource;
        let (y_stride, _, _) = yuv.strides();
        let d = stripe::decode_luma(yuv.y(), W, H, y_stride).expect("stripe survives H.264");
        assert_eq!(d.stamp_ms, p.stamp_ms, "frame {i}");
        record(&mut h264, &f.data);
    }
    std::fs::write(out.join("mjpeg.frames"), &mjpeg).unwrap();
    std::fs::write(out.join("h264.frames"), &h264).unwrap();
    println!(
        "{frames} frames {W}x{H}: mjpeg.frames {} KiB (rtcam decodes one in {:.1} ms here), \
         h264.frames {} KiB ({idrs} IDRs), in {}",
        mjpeg.len() / 1024,
        decoding.as_secs_f64() * 1000.0 / frames as f64,
        h264.len() / 1024,
        out.display()
    );
}

fn record(out: &mut Vec<u8>, bytes: &[u8]) {
    out.write_all(&(bytes.len() as u32).to_le_bytes()).unwrap();
    out.write_all(bytes).unwrap();
}
