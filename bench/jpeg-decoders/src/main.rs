//! Which JPEG decoder rtcam uses for MJPEG cameras, by measurement.
//!
//! Frames of the camera-like scene (`capture::scene`, moving, with sensor
//! noise) are encoded as a UVC camera sends them: baseline JPEG, standard
//! Huffman tables, full-range JFIF YCbCr, quality 80, 4:2:2 (what most UVC
//! cameras send) and 4:2:0. Each decoder then turns them into the limited-range
//! I420 the encoders take, everything included: entropy decode, IDCT, any
//! upsampling the decoder does, and our conversion to I420 (chroma
//! downsampling and the full-to-limited range lookup tables). The decoders
//! alternate frame by frame, so a neighbour's build on this shared machine
//! slows both alike. Prints p50/p95 per frame; asserts nothing.
//!
//! Rows:
//! - zune-jpeg: pure Rust; it only outputs full-resolution interleaved YCbCr,
//!   so we downsample 2x2 to I420.
//! - libjpeg-turbo (turbojpeg crate, its bundled 3.1 built with SIMD): raw
//!   planes at the JPEG's own sampling (`tj3DecompressToYUV8`), so 4:2:0
//!   needs only the range tables and 4:2:2 a vertical chroma average.
//! - rtcam MjpegDecoder: the module as shipped (`capture::mjpeg`), as a check
//!   that it costs what its decoder's row says.

use std::time::{Duration, Instant};

use jpeg_encoder::{ColorType, Encoder, SamplingFactor};
use rtcam::capture::mjpeg::MjpegDecoder;
use rtcam::capture::scene::Scene;
use rtcam::frame::RawFrame;
use zune_jpeg::JpegDecoder;
use zune_jpeg::zune_core::bytestream::ZCursor;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;

const WIDTH: usize = 1280;
const HEIGHT: usize = 720;
const QUALITY: u8 = 80;
/// Different scene frames (it sways, an object crosses, the noise changes).
const FRAMES: u64 = 8;
const DECODES: usize = 300;
const WARMUP: usize = 20;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let decodes = args.iter().find_map(|a| a.parse().ok()).unwrap_or(DECODES);
    let dump = args
        .iter()
        .position(|a| a == "--dump")
        .and_then(|i| args.get(i + 1));
    let scene = Scene::new(WIDTH, HEIGHT);
    let sources: Vec<RawFrame> = (0..FRAMES)
        .map(|i| {
            let mut f = RawFrame::black(WIDTH, HEIGHT);
            scene.draw(&mut f, i * 37, 1_767_225_600_000 + i * 33);
            f
        })
        .collect();
    println!(
        "{WIDTH}x{HEIGHT}, {FRAMES} scene frames, quality {QUALITY}, baseline, standard Huffman tables; \
         {decodes} decodes per row, one thread"
    );
    println!(
        "{:<8} {:<34} {:>8} {:>8} {:>8} {:>9} {:>9}",
        "sampling", "decoder (to I420)", "p50 ms", "p95 ms", "mean ms", "luma MAE", "jpeg KiB"
    );
    for (name, sampling) in [
        ("4:2:2", SamplingFactor::R_4_2_2),
        ("4:2:0", SamplingFactor::R_4_2_0),
    ] {
        let jpegs: Vec<Vec<u8>> = sources.iter().map(|f| encode(f, sampling)).collect();
        if let Some(dir) = dump {
            for (i, j) in jpegs.iter().enumerate() {
                let path = format!("{dir}/scene-{}-{i}.jpg", name.replace(':', ""));
                std::fs::write(&path, j).expect("writes the JPEG");
            }
        }
        let kib = jpegs.iter().map(Vec::len).sum::<usize>() as f64 / jpegs.len() as f64 / 1024.0;
        for (decoder, times, mae) in run(&jpegs, &sources, decodes) {
            let s = Stats::of(times);
            let mae = mae.map_or("-".to_string(), |m| format!("{m:.2}"));
            println!(
                "{name:<8} {decoder:<34} {:>8.3} {:>8.3} {:>8.3} {mae:>9} {kib:>9.1}",
                s.p50, s.p95, s.mean
            );
        }
    }
}

/// A decoder's name, its times, and its mean luma error against the source
/// (`None` for a row whose output is not I420).
type Row = (&'static str, Vec<Duration>, Option<f64>);

/// A decoder under test: decodes one JPEG into `out`; true when `out` is
/// then the picture in I420.
type Decode<'a> = Box<dyn FnMut(&[u8], &mut RawFrame) -> bool + 'a>;

/// Times every decoder on the same frames, alternating between them.
fn run(jpegs: &[Vec<u8>], sources: &[RawFrame], decodes: usize) -> Vec<Row> {
    let mut zune = ZuneToI420::default();
    let mut zune_only = ZuneToI420::default();
    let mut turbo = TurboToI420::new();
    let mut rtcam = MjpegDecoder::new();
    let mut decoders: Vec<(&'static str, Decode)> = vec![
        ("zune-jpeg 0.5.15", Box::new(|j, o| zune.decode(j, o, true))),
        (
            "libjpeg-turbo 3.1 (SIMD)",
            Box::new(|j, o| turbo.decode(j, o)),
        ),
        (
            "rtcam MjpegDecoder (zune-jpeg)",
            Box::new(|j, o| rtcam.decode(j, o).map(|()| true).expect("rtcam decodes")),
        ),
        (
            "zune-jpeg, decode only (no I420)",
            Box::new(|j, o| zune_only.decode(j, o, false)),
        ),
    ];
    let mut out = RawFrame::black(WIDTH, HEIGHT);
    let mut times = vec![Vec::with_capacity(decodes); decoders.len()];
    let mut mae: Vec<Option<f64>> = vec![Some(0.0); decoders.len()];
    for i in 0..WARMUP + decodes {
        let k = i % jpegs.len();
        for (d, (_, decode)) in decoders.iter_mut().enumerate() {
            let start = Instant::now();
            let is_i420 = decode(&jpegs[k], &mut out);
            let took = start.elapsed();
            if i >= WARMUP {
                times[d].push(took);
            }
            if i < jpegs.len() {
                mae[d] = mae[d]
                    .filter(|_| is_i420)
                    .map(|m| m + luma_mae(&out, &sources[k]) / jpegs.len() as f64);
            }
        }
    }
    decoders
        .into_iter()
        .zip(times)
        .zip(mae)
        .map(|(((name, _), t), m)| (name, t, m))
        .collect()
}

/// A camera's JPEG of `frame`: full-range YCbCr (JFIF), chroma at `sampling`.
fn encode(frame: &RawFrame, sampling: SamplingFactor) -> Vec<u8> {
    let (w, h) = (frame.width, frame.height);
    let (y, u, v) = frame.planes();
    let full = |x: u8, lo: f32, span: f32| {
        ((x as f32 - lo) * 255.0 / span).round().clamp(0.0, 255.0) as u8
    };
    let mut ycc = Vec::with_capacity(w * h * 3);
    for row in 0..h {
        for col in 0..w {
            let c = (row / 2) * (w / 2) + col / 2;
            ycc.push(full(y[row * w + col], 16.0, 219.0));
            ycc.push(full(u[c], 16.0, 224.0));
            ycc.push(full(v[c], 16.0, 224.0));
        }
    }
    let mut jpeg = Vec::new();
    let mut enc = Encoder::new(&mut jpeg, QUALITY);
    enc.set_sampling_factor(sampling);
    enc.set_optimized_huffman_tables(false);
    enc.encode(&ycc, w as u16, h as u16, ColorType::Ycbcr)
        .expect("encodes");
    jpeg
}

fn luma_mae(a: &RawFrame, b: &RawFrame) -> f64 {
    let (ya, yb) = (a.planes().0, b.planes().0);
    let sum: u64 = ya
        .iter()
        .zip(yb)
        .map(|(&p, &q)| (p as i32 - q as i32).unsigned_abs() as u64)
        .sum();
    sum as f64 / ya.len() as f64
}

/// Full range (JFIF) to the limited range our encoders assume, rounded:
/// `16 + Y*219/255` and `128 + (C-128)*224/255`, as in `capture::mjpeg`.
struct Range {
    y: [u8; 256],
    c: [u8; 256],
}

impl Range {
    const fn new() -> Self {
        let mut y = [0u8; 256];
        let mut c = [0u8; 256];
        let mut i = 0;
        while i < 256 {
            y[i] = (16 + (i * 438 + 255) / 510) as u8;
            c[i] = ((510 * 128 + 448 * (i as i64 - 128) + 255) / 510) as u8;
            i += 1;
        }
        Range { y, c }
    }
}

static RANGE: Range = Range::new();

/// zune-jpeg to full-size interleaved YCbCr, then 2x2 to I420.
#[derive(Default)]
struct ZuneToI420 {
    ycc: Vec<u8>,
}

impl ZuneToI420 {
    /// Decodes, and converts to I420 when `convert` (else leaves `out` alone).
    fn decode(&mut self, jpeg: &[u8], out: &mut RawFrame, convert: bool) -> bool {
        let options = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::YCbCr);
        let mut dec = JpegDecoder::new_with_options(ZCursor::new(jpeg), options);
        dec.decode_headers().expect("headers");
        let size = dec.output_buffer_size().expect("size");
        self.ycc.resize(size, 0);
        dec.decode_into(&mut self.ycc).expect("decodes");
        if !convert {
            return false;
        }
        let (w, h) = (out.width, out.height);
        let (y, u, v) = out.planes_mut();
        let cw = w / 2;
        for cy in 0..h / 2 {
            let a = &self.ycc[2 * cy * w * 3..(2 * cy + 1) * w * 3];
            let b = &self.ycc[(2 * cy + 1) * w * 3..(2 * cy + 2) * w * 3];
            let (ya, yb) = y[2 * cy * w..(2 * cy + 2) * w].split_at_mut(w);
            for (d, s) in ya.iter_mut().zip(a.chunks_exact(3)) {
                *d = RANGE.y[s[0] as usize];
            }
            for (d, s) in yb.iter_mut().zip(b.chunks_exact(3)) {
                *d = RANGE.y[s[0] as usize];
            }
            let ur = &mut u[cy * cw..(cy + 1) * cw];
            let vr = &mut v[cy * cw..(cy + 1) * cw];
            for (i, (pa, pb)) in a.chunks_exact(6).zip(b.chunks_exact(6)).enumerate() {
                let su = pa[1] as u16 + pa[4] as u16 + pb[1] as u16 + pb[4] as u16;
                let sv = pa[2] as u16 + pa[5] as u16 + pb[2] as u16 + pb[5] as u16;
                ur[i] = RANGE.c[((su + 2) >> 2) as usize];
                vr[i] = RANGE.c[((sv + 2) >> 2) as usize];
            }
        }
        true
    }
}

/// libjpeg-turbo to planes at the JPEG's own sampling, then to I420.
struct TurboToI420 {
    dec: turbojpeg::Decompressor,
    planes: Vec<u8>,
}

impl TurboToI420 {
    fn new() -> Self {
        TurboToI420 {
            dec: turbojpeg::Decompressor::new().expect("turbojpeg"),
            planes: Vec::new(),
        }
    }

    fn decode(&mut self, jpeg: &[u8], out: &mut RawFrame) -> bool {
        let header = self.dec.read_header(jpeg).expect("header");
        let (w, h) = (header.width, header.height);
        let len = turbojpeg::yuv_pixels_len(w, 1, h, header.subsamp).expect("len");
        self.planes.resize(len, 0);
        let image = turbojpeg::YuvImage {
            pixels: &mut self.planes[..],
            width: w,
            align: 1,
            height: h,
            subsamp: header.subsamp,
        };
        self.dec.decompress_to_yuv(jpeg, image).expect("decodes");
        let (cw, ch) = (w / 2, h / 2);
        let tall = matches!(header.subsamp, turbojpeg::Subsamp::Sub2x1);
        let src_ch = if tall { h } else { ch };
        let (sy, rest) = self.planes.split_at(w * h);
        let (su, sv) = rest.split_at(cw * src_ch);
        let (y, u, v) = out.planes_mut();
        for (d, &s) in y.iter_mut().zip(sy) {
            *d = RANGE.y[s as usize];
        }
        for (dst, src) in [(u, su), (v, sv)] {
            if tall {
                for (row, line) in dst.chunks_exact_mut(cw).enumerate() {
                    let a = &src[2 * row * cw..(2 * row + 1) * cw];
                    let b = &src[(2 * row + 1) * cw..(2 * row + 2) * cw];
                    for ((d, &p), &q) in line.iter_mut().zip(a).zip(b) {
                        *d = RANGE.c[((p as u16 + q as u16 + 1) >> 1) as usize];
                    }
                }
            } else {
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d = RANGE.c[s as usize];
                }
            }
        }
        true
    }
}

struct Stats {
    p50: f64,
    p95: f64,
    mean: f64,
}

impl Stats {
    fn of(mut times: Vec<Duration>) -> Self {
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let at = |q: f64| ms(times[((times.len() - 1) as f64 * q).round() as usize]);
        Stats {
            p50: at(0.50),
            p95: at(0.95),
            mean: times.iter().copied().map(ms).sum::<f64>() / times.len() as f64,
        }
    }
}
