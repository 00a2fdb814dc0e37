//! Snapshots: the next captured picture, as a JPEG.
//!
//! [`Snapshots`] is a one-picture slot in the encoders' tap: it costs
//! nothing per frame until someone asks, then keeps the next picture the
//! camera delivers (an MJPEG camera's frames are decoded for it even with
//! nobody watching). [`encode_jpeg`] writes it with `jpeg-encoder`, a
//! pure-Rust baseline encoder (no C library to cross-build), reading the
//! I420 planes directly, converted from the limited range the pipeline
//! carries to JFIF's full range, at 4:2:0 like the picture itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jpeg_encoder::{Encoder, EncodingError, ImageBuffer, JpegColorType, SamplingFactor};

use crate::frame::RawFrame;

/// JPEG quality: photos of a camera's picture, not archival copies.
pub const QUALITY: u8 = 85;

#[derive(Debug)]
pub struct Snapshots {
    wanted: AtomicBool,
    latest: Mutex<Option<Arc<RawFrame>>>,
    /// One JPEG is made at a time: a flood of requests waits its turn
    /// (or is refused) instead of encoding many pictures at once.
    pub busy: tokio::sync::Semaphore,
}

impl Default for Snapshots {
    fn default() -> Self {
        Snapshots {
            wanted: AtomicBool::new(false),
            latest: Mutex::new(None),
            busy: tokio::sync::Semaphore::new(1),
        }
    }
}

impl Snapshots {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a picture is wanted (the capture decodes one for it).
    pub fn wanted(&self) -> bool {
        self.wanted.load(Ordering::Relaxed)
    }

    /// The capture's picture, kept if one is wanted.
    pub fn offer(&self, frame: &Arc<RawFrame>) {
        if self.wanted.swap(false, Ordering::Relaxed) {
            *self.latest.lock().unwrap_or_else(|p| p.into_inner()) = Some(frame.clone());
        }
    }

    /// The next picture the camera delivers, waiting at most `patience`.
    pub async fn next(&self, patience: Duration) -> Option<Arc<RawFrame>> {
        self.latest.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.wanted.store(true, Ordering::Relaxed);
        let deadline = tokio::time::Instant::now() + patience;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if let Some(frame) = self.latest.lock().unwrap_or_else(|p| p.into_inner()).take() {
                return Some(frame);
            }
        }
        self.wanted.store(false, Ordering::Relaxed);
        None
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("a {0}x{1} picture does not fit a JPEG (at most 65,535 pixels a side)")]
    TooLarge(usize, usize),
    #[error("the picture's planes are short: {0} bytes")]
    Short(usize),
    #[error("JPEG encoding: {0}")]
    Encode(#[from] EncodingError),
}

/// `frame` as a baseline JPEG.
pub fn encode_jpeg(frame: &RawFrame, quality: u8) -> Result<Vec<u8>, SnapshotError> {
    let (w, h) = (frame.width, frame.height);
    let (Ok(width), Ok(height)) = (u16::try_from(w), u16::try_from(h)) else {
        return Err(SnapshotError::TooLarge(w, h));
    };
    if frame.data.len() < RawFrame::i420_len(w, h) {
        return Err(SnapshotError::Short(frame.data.len()));
    }
    let mut out = Vec::with_capacity(w * h / 4);
    let mut encoder = Encoder::new(&mut out, quality);
    encoder.set_sampling_factor(SamplingFactor::F_2_2);
    encoder.encode_image(I420 {
        frame,
        width,
        height,
        luma: &LUMA_TO_FULL,
        chroma: &CHROMA_TO_FULL,
    })?;
    Ok(out)
}

struct I420<'a> {
    frame: &'a RawFrame,
    width: u16,
    height: u16,
    luma: &'a [u8; 256],
    chroma: &'a [u8; 256],
}

impl ImageBuffer for I420<'_> {
    fn get_jpeg_color_type(&self) -> JpegColorType {
        JpegColorType::Ycbcr
    }

    fn width(&self) -> u16 {
        self.width
    }

    fn height(&self) -> u16 {
        self.height
    }

    fn fill_buffers(&self, row: u16, buffers: &mut [Vec<u8>; 4]) {
        let (w, h) = (self.frame.width, self.frame.height);
        let row = row as usize;
        let y = &self.frame.data[row * w..(row + 1) * w];
        let cw = w / 2;
        let chroma_row = (row / 2) * cw;
        let u = &self.frame.data[w * h + chroma_row..][..cw];
        let v = &self.frame.data[w * h + cw * (h / 2) + chroma_row..][..cw];
        for (x, &luma) in y.iter().enumerate() {
            buffers[0].push(self.luma[luma as usize]);
            buffers[1].push(self.chroma[u[x / 2] as usize]);
            buffers[2].push(self.chroma[v[x / 2] as usize]);
        }
    }
}

/// BT.601 limited range (16-235, 16-240) to JFIF's full range.
static LUMA_TO_FULL: [u8; 256] = expand(16, 219);
static CHROMA_TO_FULL: [u8; 256] = expand_chroma();

const fn expand(low: i32, span: i32) -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = clamp_u8(((i as i32 - low) * 255 + span / 2) / span);
        i += 1;
    }
    t
}

/// Chroma about 128, rounded away from it.
const fn expand_chroma() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let half = if i >= 128 { 112 } else { -112 };
        t[i] = clamp_u8(128 + ((i as i32 - 128) * 255 + half) / 224);
        i += 1;
    }
    t
}

const fn clamp_u8(v: i32) -> u8 {
    if v < 0 {
        0
    } else if v > 255 {
        255
    } else {
        v as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_picture_becomes_a_jpeg_that_decodes_to_the_same_picture() {
        let mut frame = RawFrame::black(320, 240);
        // Left half white, right half limited-range mid grey.
        for row in 0..240 {
            for x in 0..320 {
                frame.data[row * 320 + x] = if x < 160 { 235 } else { 126 };
            }
        }
        let jpeg = encode_jpeg(&frame, QUALITY).unwrap();
        assert_eq!(&jpeg[..2], &[0xff, 0xd8], "SOI");
        let mut decoder = zune_jpeg::JpegDecoder::new(std::io::Cursor::new(&jpeg));
        let rgb = decoder.decode().unwrap();
        let info = decoder.info().unwrap();
        assert_eq!((info.width, info.height), (320, 240));
        let px = |x: usize, y: usize| rgb[(y * 320 + x) * 3] as i32;
        assert!(px(40, 120) >= 250, "white stays white: {}", px(40, 120));
        assert!((px(280, 120) - 128).abs() <= 3, "grey: {}", px(280, 120));
        assert_eq!(LUMA_TO_FULL[16], 0);
        assert_eq!(LUMA_TO_FULL[235], 255);
        assert_eq!(CHROMA_TO_FULL[128], 128);
        assert_eq!(CHROMA_TO_FULL[240], 255);
        assert_eq!(CHROMA_TO_FULL[16], 0);
    }

    #[tokio::test]
    async fn the_slot_costs_nothing_until_asked_then_keeps_the_next_picture() {
        let slots = Arc::new(Snapshots::new());
        let frame = Arc::new(RawFrame::black(64, 64));
        slots.offer(&frame);
        assert_eq!(Arc::strong_count(&frame), 1, "not kept unasked");
        let s = slots.clone();
        let f = frame.clone();
        tokio::spawn(async move {
            while !s.wanted() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            s.offer(&f);
        });
        let got = slots.next(Duration::from_secs(2)).await;
        assert!(got.is_some_and(|g| Arc::ptr_eq(&g, &frame)));
        assert!(!slots.wanted());
    }
}
