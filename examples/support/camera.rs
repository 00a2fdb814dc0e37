//! What a camera would send, made from an I420 picture: shared by the
//! examples that play a camera (`capture_bench`, `loopback_frames`).

use jpeg_encoder::{ColorType, Encoder as JpegEncoder, SamplingFactor};
use rtcam::frame::RawFrame;

/// I420 (limited range) to a JFIF JPEG as UVC webcams send it: full-range
/// YCbCr, 4:2:2, quality 80, the standard Huffman tables.
pub fn to_jpeg(f: &RawFrame) -> Vec<u8> {
    let (w, h) = (f.width, f.height);
    let (y, u, v) = f.planes();
    let full = |x: u8| ((x.saturating_sub(16) as u32 * 255 + 109) / 219).min(255) as u8;
    let chroma = |x: u8| ((x as i32 - 128) * 255 / 224 + 128).clamp(0, 255) as u8;
    let mut ycc = Vec::with_capacity(3 * w * h);
    for row in 0..h {
        for col in 0..w {
            let c = (row / 2) * (w / 2) + col / 2;
            ycc.extend_from_slice(&[full(y[row * w + col]), chroma(u[c]), chroma(v[c])]);
        }
    }
    let mut jpeg = Vec::new();
    let mut enc = JpegEncoder::new(&mut jpeg, 80);
    enc.set_sampling_factor(SamplingFactor::R_4_2_2);
    enc.encode(&ycc, w as u16, h as u16, ColorType::Ycbcr)
        .expect("jpeg");
    jpeg
}
