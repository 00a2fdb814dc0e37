//! Capture-to-encoded time per frame, on the camera-like scene, for the
//! three ways a camera's frames reach viewers: raw (YUYV converted to I420,
//! then openh264), MJPEG (decoded by capture::mjpeg, then openh264) and
//! H.264 passthrough (split into access units, no decode, no encode). The
//! camera's work (packing YUYV, compressing JPEG, encoding the H.264 it
//! would send) is done beforehand and not timed. Prints p50/p95 and the
//! CPU share at the frame rate; asserts nothing.
//!
//!     cargo run --release --example capture_bench -- [--size 1280x720] [--fps 30] [--frames 150]
//!
//! bench/capture.sh runs it natively and under qemu-aarch64.

#[path = "support/camera.rs"]
mod camera;

use std::time::{Duration, Instant};

use rtcam::capture::mjpeg::MjpegDecoder;
use rtcam::capture::scene::Scene;
use rtcam::capture::v4l2::{PixelFormat, convert};
use rtcam::encode::openh264::OpenH264;
use rtcam::encode::passthrough::Passthrough;
use rtcam::encode::{Encoder, EncoderSettings};
use rtcam::frame::RawFrame;

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let (mut w, mut h, mut fps, mut frames) = (1280usize, 720usize, 30u32, 150usize);
    for pair in argv.chunks(2) {
        let v = pair.get(1).map(String::as_str).unwrap_or("");
        match pair[0].as_str() {
            "--size" => {
                let (a, b) = v.split_once('x').expect("--size WxH");
                (w, h) = (a.parse().unwrap(), b.parse().unwrap());
            }
            "--fps" => fps = v.parse().unwrap(),
            "--frames" => frames = v.parse().unwrap(),
            other => panic!("unknown option {other}"),
        }
    }
    let scene = Scene::new(w, h);
    let pictures: Vec<RawFrame> = (0..frames as u64)
        .map(|n| {
            let mut f = RawFrame::black(w, h);
            scene.draw(&mut f, n, 1_700_000_000_000 + n * 33);
            f
        })
        .collect();
    let settings = EncoderSettings {
        width: w as u32,
        height: h as u32,
        fps,
        bitrate_kbps: EncoderSettings::default_bitrate_kbps(w as u32, h as u32, fps),
        threads: 1,
        slice_bytes: rtcam::encode::DEFAULT_SLICE_BYTES,
    };
    let budget = Duration::from_secs_f64(1.0 / fps as f64);
    println!("{w}x{h} @ {fps} fps, {frames} frames of the camera-like scene, one core");
    println!(
        "{:<34} {:>9} {:>9} {:>11}",
        "path", "p50 ms", "p95 ms", "CPU at fps"
    );

    // Raw: a YUYV camera.
    let yuyv: Vec<Vec<u8>> = pictures.iter().map(to_yuyv).collect();
    let mut enc = Encoder::new(Box::new(OpenH264::new(settings).expect("openh264")));
    let mut out = RawFrame::black(w, h);
    report(
        "raw YUYV -> I420 -> openh264",
        budget,
        yuyv.iter().map(|buf| {
            let t = Instant::now();
            convert(PixelFormat::Yuyv, buf, w, h, 2 * w, &mut out).expect("converts");
            enc.encode(&out).expect("encodes");
            t.elapsed()
        }),
    );

    // MJPEG: what a UVC webcam sends at 720p30 (4:2:2, quality 80).
    let jpegs: Vec<Vec<u8>> = pictures.iter().map(camera::to_jpeg).collect();
    let mean_kb = jpegs.iter().map(Vec::len).sum::<usize>() / jpegs.len() / 1024;
    let mut enc = Encoder::new(Box::new(OpenH264::new(settings).expect("openh264")));
    let mut decoder = MjpegDecoder::new();
    let mut decode_only = Vec::new();
    report(
        &format!("MJPEG ({mean_kb} KiB) -> decode -> openh264"),
        budget,
        jpegs.iter().map(|jpeg| {
            let t = Instant::now();
            decoder.decode(jpeg, &mut out).expect("decodes");
            decode_only.push(t.elapsed());
            enc.encode(&out).expect("encodes");
            t.elapsed()
        }),
    );
    report(
        "  of which the MJPEG decode",
        budget,
        decode_only.into_iter(),
    );

    // Passthrough: the camera's own H.264, one access unit a buffer.
    let mut camera = Encoder::new(Box::new(OpenH264::new(settings).expect("openh264")));
    let units: Vec<Vec<u8>> = pictures
        .iter()
        .filter_map(|p| camera.encode(p).expect("encodes").map(|f| f.data.to_vec()))
        .collect();
    let mut stream = Passthrough::new();
    report(
        "H.264 passthrough (split only)",
        budget,
        units.iter().map(|au| {
            let t = Instant::now();
            stream.push(au);
            stream.end_of_unit();
            while let Some(unit) = stream.next_access_unit() {
                std::hint::black_box(unit.expect("a clean stream"));
            }
            t.elapsed()
        }),
    );
}

fn report(name: &str, budget: Duration, times: impl Iterator<Item = Duration>) {
    let mut t: Vec<Duration> = times.collect();
    t.sort();
    let at = |q: f64| t[((t.len() - 1) as f64 * q) as usize].as_secs_f64() * 1000.0;
    let mean = t.iter().sum::<Duration>().as_secs_f64() / t.len() as f64;
    println!(
        "{name:<34} {:>9.2} {:>9.2} {:>10.1}%",
        at(0.5),
        at(0.95),
        100.0 * mean / budget.as_secs_f64()
    );
}

/// The picture as a YUYV camera buffer.
fn to_yuyv(f: &RawFrame) -> Vec<u8> {
    let (w, h) = (f.width, f.height);
    let (y, u, v) = f.planes();
    let mut out = vec![0u8; 2 * w * h];
    for row in 0..h {
        for i in 0..w / 2 {
            let c = (row / 2) * (w / 2) + i;
            let o = row * 2 * w + 4 * i;
            out[o..o + 4].copy_from_slice(&[
                y[row * w + 2 * i],
                u[c],
                y[row * w + 2 * i + 1],
                v[c],
            ]);
        }
    }
    out
}
