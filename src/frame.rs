//! Frame types shared by capture, encode and rtc.
//!
//! `rtc` sees encoded frames only through this module, never the encoder,
//! so another encoder (hardware, or H.264 passthrough) can slot in later.

use std::sync::Arc;
use std::time::Instant;

/// One raw picture in planar I420 (YU12), the encoder's native input.
///
/// Buffers are recycled between capture and encode, so `data` keeps its
/// allocation from frame to frame.
#[derive(Debug, Clone)]
pub struct RawFrame {
    pub width: usize,
    pub height: usize,
    /// Y plane (`width * height`), then U and V (`width/2 * height/2` each).
    pub data: Vec<u8>,
    /// Monotonic capture time: what RTP timestamps and latency are derived from.
    pub captured: Instant,
    /// Wall-clock capture time in Unix milliseconds (the stripe's stamp).
    pub stamp_ms: u64,
}

impl RawFrame {
    /// An all-black I420 frame. Width and height must be even.
    pub fn black(width: usize, height: usize) -> Self {
        let y = width * height;
        let mut data = vec![16u8; y + y / 2];
        data[y..].fill(128);
        RawFrame {
            width,
            height,
            data,
            captured: Instant::now(),
            stamp_ms: 0,
        }
    }

    pub fn i420_len(width: usize, height: usize) -> usize {
        width * height + 2 * (width / 2) * (height / 2)
    }

    pub fn planes(&self) -> (&[u8], &[u8], &[u8]) {
        let y = self.width * self.height;
        let c = (self.width / 2) * (self.height / 2);
        let (yp, rest) = self.data.split_at(y);
        let (u, v) = rest.split_at(c);
        (yp, u, &v[..c])
    }

    pub fn planes_mut(&mut self) -> (&mut [u8], &mut [u8], &mut [u8]) {
        let y = self.width * self.height;
        let c = (self.width / 2) * (self.height / 2);
        let (yp, rest) = self.data.split_at_mut(y);
        let (u, v) = rest.split_at_mut(c);
        (yp, u, &mut v[..c])
    }
}

/// One encoded H.264 access unit in Annex-B form, shared by every viewer.
///
/// The payload is an `Arc` so that fan-out to N viewers costs N pointer
/// copies, not N buffer copies.
#[derive(Debug, Clone)]
pub struct EncodedFrame {
    pub data: Arc<[u8]>,
    /// An IDR: a viewer that joins may start here.
    pub keyframe: bool,
    pub width: usize,
    pub height: usize,
    /// Monotonic capture time of the source frame.
    pub captured: Instant,
    /// Wall-clock capture time in Unix milliseconds.
    pub stamp_ms: u64,
    /// Running frame number, for logs and tests.
    pub seq: u64,
}
