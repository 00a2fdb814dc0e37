//! Encoder benchmark on the camera-like scene: per-frame encode time
//! (p50/p95), the CPU share that is at the frame rate, what bitrate the
//! encoder really spends against its target, and frames it skipped. Also
//! the scene's own drawing cost. Prints a table; asserts nothing.
//!
//!     cargo run --release --example encode_bench -- [--size 1280x720] [--fps 30] [--kbps 1935] [--frames 300]
//!
//! bench/encode.sh runs it natively and under qemu-aarch64.

use std::time::{Duration, Instant};

use rtcam::capture::scene::Scene;
use rtcam::encode::openh264::OpenH264;
use rtcam::encode::vp8::Vp8;
use rtcam::encode::{Encoder, EncoderSettings, VideoEncoder};
use rtcam::frame::RawFrame;

struct Args {
    width: u32,
    height: u32,
    fps: u32,
    kbps: u32,
    frames: u64,
}

fn args() -> Args {
    let mut a = Args {
        width: 1280,
        height: 720,
        fps: 30,
        kbps: 1935,
        frames: 300,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let v = pair.get(1).map(String::as_str).unwrap_or("");
        match pair[0].as_str() {
            "--size" => {
                let (w, h) = v.split_once('x').expect("--size WxH");
                (a.width, a.height) = (w.parse().unwrap(), h.parse().unwrap());
            }
            "--fps" => a.fps = v.parse().unwrap(),
            "--kbps" => a.kbps = v.parse().unwrap(),
            "--frames" => a.frames = v.parse().unwrap(),
            other => panic!("unknown option {other}"),
        }
    }
    a
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let a = args();
    let scene = Scene::new(a.width as usize, a.height as usize);
    let mut raw = RawFrame::black(2, 2);
    let mut draw = Vec::new();
    for n in 0..a.frames {
        let t = Instant::now();
        scene.draw(&mut raw, n, n);
        draw.push(t.elapsed().as_secs_f64() * 1e3);
    }
    draw.sort_by(f64::total_cmp);
    println!(
        "scene {}x{}: draw p50 {:.2} ms, p95 {:.2} ms",
        a.width,
        a.height,
        percentile(&draw, 0.5),
        percentile(&draw, 0.95)
    );
    let settings = EncoderSettings {
        width: a.width,
        height: a.height,
        fps: a.fps,
        bitrate_kbps: a.kbps,
        threads: 1,
        slice_bytes: rtcam::encode::DEFAULT_SLICE_BYTES,
    };
    println!(
        "{:<9} {:>9} {:>9} {:>9} {:>10} {:>9} {:>8} {:>8}",
        "encoder", "p50 ms", "p95 ms", "max ms", "CPU@fps", "kbit/s", "of target", "skipped"
    );
    let encoders: Vec<Box<dyn VideoEncoder>> = vec![
        Box::new(OpenH264::new(settings).expect("openh264")),
        Box::new(Vp8::new(settings).expect("libvpx")),
    ];
    for inner in encoders {
        let name = inner.implementation();
        let mut enc = Encoder::new(inner);
        let (mut times, mut bytes, mut skipped) = (Vec::new(), 0usize, 0u64);
        let t0 = Instant::now();
        for n in 0..a.frames {
            scene.draw(&mut raw, n, n);
            raw.captured = t0 + Duration::from_secs_f64(n as f64 / a.fps as f64);
            let t = Instant::now();
            let out = enc.encode(&raw).expect("encode");
            times.push(t.elapsed().as_secs_f64() * 1e3);
            match out {
                Some(f) => bytes += f.data.len(),
                None => skipped += 1,
            }
        }
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        times.sort_by(f64::total_cmp);
        let kbps = bytes as f64 * 8.0 * a.fps as f64 / a.frames as f64 / 1000.0;
        println!(
            "{:<9} {:>9.2} {:>9.2} {:>9.2} {:>9.1}% {:>9.0} {:>8.0}% {:>8}",
            name,
            percentile(&times, 0.5),
            percentile(&times, 0.95),
            times.last().copied().unwrap_or(0.0),
            mean * a.fps as f64 / 10.0,
            kbps,
            kbps / a.kbps as f64 * 100.0,
            skipped
        );
    }
}
