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

impl EncodedFrame {
    /// The encoding of `picture`: its size, capture time and stamp carried
    /// over; `seq` is for the encoder wrapper to fill in.
    pub fn of(picture: &RawFrame, codec: VideoCodec, data: &[u8], keyframe: bool) -> Self {
        EncodedFrame {
            codec,
            data: Arc::from(data),
            keyframe,
            droppable: codec == VideoCodec::H264 && h264_unreferenced(data),
            width: picture.width,
            height: picture.height,
            captured: picture.captured,
            stamp_ms: picture.stamp_ms,
            seq: 0,
        }
    }
}

/// Whether an H.264 access unit (Annex-B) is referenced by no other
/// picture: it has slices, and every one has nal_ref_idc 0.
pub fn h264_unreferenced(au: &[u8]) -> bool {
    let mut slices = nal_units(au)
        .filter(|n| matches!(n[0] & 0x1f, 1 | 5))
        .peekable();
    slices.peek().is_some() && slices.all(|n| n[0] & 0x60 == 0)
}

/// The NAL units of an Annex-B stream (without their start codes).
pub fn nal_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let ends: Vec<usize> = starts
        .iter()
        .skip(1)
        .map(|&s| {
            let mut e = s - 3;
            // A four-byte start code leaves one more zero behind.
            while e > 0 && data[e - 1] == 0 {
                e -= 1;
            }
            e
        })
        .chain(std::iter::once(data.len()))
        .collect();
    starts
        .into_iter()
        .zip(ends)
        .filter(|(s, e)| s < e)
        .map(move |(s, e)| &data[s..e])
}

impl RawFrame {
    /// Scales this picture down into `dst` at `width`x`height` (even), each
    /// output pixel the mean of the 2x2 source pixels at its position: a box
    /// filter for 2:1, close enough to one for other ratios. Times and stamp
    /// are carried over.
    pub fn scale_into(&self, dst: &mut RawFrame, width: usize, height: usize) {
        dst.width = width;
        dst.height = height;
        dst.data.resize(RawFrame::i420_len(width, height), 0);
        dst.captured = self.captured;
        dst.stamp_ms = self.stamp_ms;
        let (sy, su, sv) = self.planes();
        let (dy, du, dv) = dst.planes_mut();
        let (sw, sh) = (self.width, self.height);
        scale_plane(sy, sw, sh, dy, width, height);
        scale_plane(su, sw / 2, sh / 2, du, width / 2, height / 2);
        scale_plane(sv, sw / 2, sh / 2, dv, width / 2, height / 2);
    }
}

fn scale_plane(src: &[u8], sw: usize, sh: usize, dst: &mut [u8], dw: usize, dh: usize) {
    if sw == 0 || sh == 0 || dw == 0 || dh == 0 {
        return;
    }
    let cols: Vec<(usize, usize)> = (0..dw)
        .map(|x| {
            let c = x * sw / dw;
            (c, (c + 1).min(sw - 1))
        })
        .collect();
    for (y, line) in dst.chunks_exact_mut(dw).take(dh).enumerate() {
        let r0 = y * sh / dh;
        let r1 = (r0 + 1).min(sh - 1);
        let (a, b) = (&src[r0 * sw..(r0 + 1) * sw], &src[r1 * sw..(r1 + 1) * sw]);
        for (px, &(c0, c1)) in line.iter_mut().zip(&cols) {
            let sum = a[c0] as u16 + a[c1] as u16 + b[c0] as u16 + b[c1] as u16;
            *px = ((sum + 2) / 4) as u8;
        }
    }
}

/// The video codecs rtcam sends. A viewer is bound to one, from its offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum VideoCodec {
    /// H.264 constrained baseline, packetization-mode 1.
    #[serde(rename = "H264")]
    H264,
    /// VP8: what a browser without H.264 (Firefox offline) plays.
    #[serde(rename = "VP8")]
    Vp8,
}

impl VideoCodec {
    pub const ALL: [VideoCodec; 2] = [VideoCodec::H264, VideoCodec::Vp8];
}

impl std::fmt::Display for VideoCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VideoCodec::H264 => "H.264",
            VideoCodec::Vp8 => "VP8",
        })
    }
}

/// A piece of a camera's own H.264 (Annex B), on its way to passthrough:
/// one V4L2 buffer (a whole access unit) or a read of `rpicam-vid`'s stdout.
#[derive(Debug, Clone)]
pub struct CodedChunk {
    pub data: Vec<u8>,
    /// Whether the bytes so far end an access unit (a V4L2 buffer does; a
    /// pipe read does not say).
    pub end_of_unit: bool,
    pub captured: Instant,
    pub stamp_ms: u64,
}

/// One encoded picture, shared by every viewer of its codec: an H.264
/// access unit in Annex-B form, or one VP8 frame.
///
/// The payload is an `Arc` so that fan-out to N viewers costs N pointer
/// copies, not N buffer copies.
#[derive(Debug, Clone)]
pub struct EncodedFrame {
    pub codec: VideoCodec,
    pub data: Arc<[u8]>,
    /// A keyframe (an IDR for H.264): a viewer that joins may start here.
    pub keyframe: bool,
    /// No later frame refers to this one (H.264 nal_ref_idc 0, a VP8 frame
    /// that updates no reference): a viewer may be sent the stream without
    /// it. Encoders with temporal layers make every other frame so.
    pub droppable: bool,
    pub width: usize,
    pub height: usize,
    /// Monotonic capture time of the source frame.
    pub captured: Instant,
    /// Wall-clock capture time in Unix milliseconds.
    pub stamp_ms: u64,
    /// Running frame number, for logs and tests.
    pub seq: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_halves_a_picture_and_keeps_its_stamp() {
        let mut src = RawFrame::black(8, 4);
        src.stamp_ms = 42;
        let (y, _, _) = src.planes_mut();
        for (i, p) in y.iter_mut().enumerate() {
            *p = if i % 8 < 4 { 20 } else { 220 };
        }
        let mut dst = RawFrame::black(2, 2);
        src.scale_into(&mut dst, 4, 2);
        assert_eq!((dst.width, dst.height, dst.stamp_ms), (4, 2, 42));
        assert_eq!(dst.data.len(), RawFrame::i420_len(4, 2));
        assert_eq!(dst.planes().0, &[20, 20, 220, 220, 20, 20, 220, 220]);
        assert!(dst.planes().1.iter().all(|&c| c == 128));
    }
}
