//! MJPEG from UVC webcams, decoded to the I420 our encoders take.
//!
//! Most USB cameras offer their larger sizes at full rate only as MJPEG
//! (USB 2 cannot carry 720p30 YUYV), each buffer one baseline JPEG, usually
//! 4:2:2. The decoder is zune-jpeg, pure Rust: bench/jpeg-decoders.sh
//! measured it against libjpeg-turbo, and a C library to cross-build for
//! two ARM targets was not worth the difference.
//!
//! Camera buffers are untrusted input: a flaky USB link delivers truncated
//! frames, some drivers report a wrong `bytesused`, and a hostile device can
//! send anything. So the headers are walked here first, before the decoder
//! sees a byte: the size is checked (refused above 4096x4096, and against
//! the negotiated size) before anything is allocated, a frame without its
//! EOI is refused as truncated rather than shown half grey, and bytes after
//! the EOI are ignored. Nothing here panics on any input; a panic inside the
//! decoder is caught and reported as corruption, so one bad frame cannot take
//! the capture thread down (a fuzzer still sees it: its panic hook aborts).
//!
//! Colour: JPEG (JFIF) YCbCr is full range, while our encoders assume the
//! limited range of video (Y 16..235, C 16..240). Lookup tables convert:
//! `Y' = 16 + Y*219/255`, `C' = 128 + (C-128)*224/255`, rounded.

use std::borrow::Cow;
use std::panic::{AssertUnwindSafe, catch_unwind};

use zune_jpeg::JpegDecoder;
use zune_jpeg::errors::DecodeErrors;
use zune_jpeg::zune_core::bytestream::ZCursor;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;

use crate::frame::RawFrame;

/// Largest width or height accepted: above any UVC camera's, and a bound on
/// what a lying header can make us allocate (4096x4096x3 bytes of scratch).
pub const MAX_SIDE: u32 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum MjpegError {
    #[error("not a JPEG (no SOI marker)")]
    NotJpeg,
    #[error("JPEG truncated (data ends before its EOI marker)")]
    Truncated,
    #[error("corrupt JPEG: {0}")]
    Corrupt(String),
    #[error("JPEG is {}x{}, not the negotiated {}x{}", .got.0, .got.1, .want.0, .want.1)]
    SizeMismatch {
        got: (u32, u32),
        want: (usize, usize),
    },
    #[error("unsupported JPEG: {0}")]
    Unsupported(String),
    #[error("JPEG declares {width}x{height}, above the {MAX_SIDE}x{MAX_SIDE} limit")]
    TooLarge { width: u32, height: u32 },
}

/// Decodes camera JPEGs to I420, reusing its scratch buffers from frame to
/// frame: after the first frame of a size, only the decoder's own per-image
/// state is allocated, never a growing buffer.
#[derive(Default)]
pub struct MjpegDecoder {
    /// The decoder's output: full-size interleaved YCbCr (zune-jpeg upsamples
    /// chroma and offers no planar output).
    ycc: Vec<u8>,
    /// The frame with the standard Huffman tables inserted, for cameras that
    /// omit them.
    patched: Vec<u8>,
}

impl MjpegDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes one camera buffer into `out` (I420). `out.width/out.height`
    /// are the negotiated size, already set by the caller; a frame of another
    /// size is an error. Never panics on any input. Capture times are the
    /// caller's to set.
    pub fn decode(&mut self, jpeg: &[u8], out: &mut RawFrame) -> Result<(), MjpegError> {
        let header = parse_header(jpeg)?;
        let (w, h) = (usize::from(header.width), usize::from(header.height));
        if (w, h) != (out.width, out.height) {
            return Err(MjpegError::SizeMismatch {
                got: (header.width.into(), header.height.into()),
                want: (out.width, out.height),
            });
        }
        let end = find_eoi(jpeg, header.scan)?;
        let jpeg = jpeg.get(..end).ok_or(MjpegError::Truncated)?;
        let jpeg = if header.has_dht {
            jpeg
        } else {
            self.patched.clear();
            insert_tables(jpeg, header.sos, &mut self.patched);
            &self.patched[..]
        };
        out.data.resize(RawFrame::i420_len(w, h), 0);
        if header.components == 1 {
            decode_grey(jpeg, out)
        } else {
            decode_into(jpeg, ColorSpace::YCbCr, (w, h), &mut self.ycc)?;
            ycc_to_i420(&self.ycc, w, out);
            Ok(())
        }
    }
}

/// The JPEG with the standard Huffman tables of ITU-T T.81 Annex K.3
/// inserted before SOS when it has no DHT segment (many UVC cameras send
/// "motion JPEG" without DHT, per the AVI1/MJPEG convention: the tables are
/// implied); borrowed unchanged otherwise, or when its headers cannot be read.
pub fn with_standard_huffman_tables(jpeg: &[u8]) -> Cow<'_, [u8]> {
    match parse_header(jpeg) {
        Ok(h) if !h.has_dht => {
            let mut out = Vec::with_capacity(jpeg.len() + STANDARD_DHT.len());
            insert_tables(jpeg, h.sos, &mut out);
            Cow::Owned(out)
        }
        _ => Cow::Borrowed(jpeg),
    }
}

fn insert_tables(jpeg: &[u8], sos: usize, out: &mut Vec<u8>) {
    let (head, scan) = jpeg.split_at(sos.min(jpeg.len()));
    out.extend_from_slice(head);
    out.extend_from_slice(&STANDARD_DHT);
    out.extend_from_slice(scan);
}

/// Runs zune-jpeg on a checked JPEG of `size` into `buf`, resized to fit.
/// Its errors become ours; a panic in it becomes `Corrupt`.
fn decode_into(
    jpeg: &[u8],
    colour: ColorSpace,
    size: (usize, usize),
    buf: &mut Vec<u8>,
) -> Result<(), MjpegError> {
    let len = size.0 * size.1 * colour.num_components();
    let options = DecoderOptions::default()
        .jpeg_set_out_colorspace(colour)
        .set_max_width(MAX_SIDE as usize)
        .set_max_height(MAX_SIDE as usize);
    let mut decoder = JpegDecoder::new_with_options(ZCursor::new(jpeg), options);
    let run = catch_unwind(AssertUnwindSafe(|| -> Result<(), MjpegError> {
        decoder.decode_headers().map_err(decoder_error)?;
        let input = decoder.input_colorspace();
        if !matches!(input, Some(ColorSpace::YCbCr | ColorSpace::Luma)) {
            return Err(MjpegError::Unsupported(format!("colour space {input:?}")));
        }
        if decoder.dimensions() != Some(size) || decoder.output_buffer_size() != Some(len) {
            return Err(MjpegError::Corrupt("headers disagree on the size".into()));
        }
        buf.resize(len, 0);
        decoder.decode_into(buf).map_err(decoder_error)
    }));
    run.unwrap_or_else(|_| Err(MjpegError::Corrupt("the decoder panicked".into())))
}

fn decoder_error(e: DecodeErrors) -> MjpegError {
    match e {
        DecodeErrors::ExhaustedData => MjpegError::Truncated,
        DecodeErrors::Unsupported(s) => MjpegError::Unsupported(format!("{s:?}")),
        other => MjpegError::Corrupt(other.to_string()),
    }
}

/// Greyscale: luma straight into the Y plane, range-converted in place;
/// chroma neutral.
fn decode_grey(jpeg: &[u8], out: &mut RawFrame) -> Result<(), MjpegError> {
    let size = (out.width, out.height);
    let mut y = std::mem::take(&mut out.data);
    y.truncate(size.0 * size.1);
    let result = decode_into(jpeg, ColorSpace::Luma, size, &mut y);
    y.resize(RawFrame::i420_len(out.width, out.height), 128);
    out.data = y;
    result?;
    let (y, u, v) = out.planes_mut();
    for p in y.iter_mut() {
        *p = RANGE.y[usize::from(*p)];
    }
    u.fill(128);
    v.fill(128);
    Ok(())
}

/// Full-size interleaved YCbCr (`3 * w` bytes a row) to limited-range I420:
/// luma through the table, chroma the mean of each 2x2 block (the decoder
/// upsampled it, whatever the JPEG's sampling). Odd sizes drop the last
/// column and row of chroma, as I420's plane sizes do. (One fused pass over
/// each pair of rows measured no faster: the table lookups dominate, about
/// 0.4 ms a 720p frame on x86.)
fn ycc_to_i420(ycc: &[u8], w: usize, out: &mut RawFrame) {
    let (y, u, v) = out.planes_mut();
    for (dst, src) in y.chunks_exact_mut(w).zip(ycc.chunks_exact(3 * w)) {
        for (d, s) in dst.iter_mut().zip(src.chunks_exact(3)) {
            *d = RANGE.y[usize::from(s[0])];
        }
    }
    let cw = w / 2;
    if cw == 0 {
        return;
    }
    let rows = u.chunks_exact_mut(cw).zip(v.chunks_exact_mut(cw));
    for ((ur, vr), pair) in rows.zip(ycc.chunks_exact(6 * w)) {
        let (a, b) = pair.split_at(3 * w);
        let blocks = a.chunks_exact(6).zip(b.chunks_exact(6));
        for ((du, dv), (pa, pb)) in ur.iter_mut().zip(vr.iter_mut()).zip(blocks) {
            let sum = |i: usize| {
                usize::from(pa[i])
                    + usize::from(pa[i + 3])
                    + usize::from(pb[i])
                    + usize::from(pb[i + 3])
            };
            *du = RANGE.c4[sum(1)];
            *dv = RANGE.c4[sum(2)];
        }
    }
}

/// Full-range to limited-range lookup tables.
struct Range {
    /// Luma: `16 + Y*219/255`.
    y: [u8; 256],
    /// Chroma indexed by the sum of four samples (a 2x2 block), so the mean
    /// and the range conversion round once: `128 + (sum/4 - 128)*224/255`.
    c4: [u8; 1021],
}

static RANGE: Range = Range::new();

impl Range {
    const fn new() -> Self {
        let y = super::range::luma_table();
        let mut c4 = [0u8; 1021];
        let mut s = 0;
        while s < 1021 {
            // 128 + round((s - 512) * 224 / 1020), as floor((2040*128 + 448*(s-512) + 1020) / 2040):
            // the numerator stays positive for every s.
            let scaled = 2040 * 128 + 448 * (s as i64 - 512) + 1020;
            c4[s] = (scaled / 2040) as u8;
            s += 1;
        }
        Range { y, c4 }
    }
}

/// What the headers before the first scan say.
#[derive(Debug)]
struct Header {
    width: u16,
    height: u16,
    /// 1 (greyscale) or 3 (YCbCr).
    components: u8,
    /// A DHT segment before the first scan.
    has_dht: bool,
    /// Offset of the first SOS marker.
    sos: usize,
    /// Offset of the first scan's entropy-coded data.
    scan: usize,
}

/// Walks the marker segments up to the first SOS, checking every length
/// against the buffer, and reads the frame header on the way. Refuses a size
/// above `MAX_SIDE` as soon as it is read.
fn parse_header(jpeg: &[u8]) -> Result<Header, MjpegError> {
    if !jpeg.starts_with(&[0xFF, 0xD8]) {
        return Err(MjpegError::NotJpeg);
    }
    let mut frame = None;
    let mut has_dht = false;
    let mut at = 2;
    loop {
        let seg = segment(jpeg, at)?;
        match seg.marker {
            0xC4 => has_dht = true,
            0xC0..=0xC2 => frame = Some(parse_sof(seg.body)?),
            0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                return Err(MjpegError::Unsupported(format!(
                    "SOF{} (lossless, hierarchical or arithmetic coding)",
                    seg.marker - 0xC0
                )));
            }
            0xDA => {
                let (width, height, components) = frame
                    .ok_or_else(|| MjpegError::Corrupt("scan before the frame header".into()))?;
                return Ok(Header {
                    width,
                    height,
                    components,
                    has_dht,
                    sos: seg.at,
                    scan: seg.next,
                });
            }
            _ => {}
        }
        at = seg.next;
    }
}

/// One marker segment. Standalone markers have an empty body.
struct Segment<'a> {
    marker: u8,
    /// Offset of the 0xFF right before the marker byte.
    at: usize,
    body: &'a [u8],
    /// Where the next segment starts.
    next: usize,
}

/// The marker segment at `at`, its length checked against the buffer.
fn segment(jpeg: &[u8], mut at: usize) -> Result<Segment<'_>, MjpegError> {
    match jpeg.get(at) {
        None => return Err(MjpegError::Truncated),
        Some(0xFF) => {}
        Some(_) => return Err(MjpegError::Corrupt(format!("no marker at byte {at}"))),
    }
    // Any number of 0xFF fill bytes may precede a marker.
    while jpeg.get(at + 1) == Some(&0xFF) {
        at += 1;
    }
    let marker = *jpeg.get(at + 1).ok_or(MjpegError::Truncated)?;
    match marker {
        0x01 | 0xD0..=0xD7 => {
            return Ok(Segment {
                marker,
                at,
                body: &[],
                next: at + 2,
            });
        }
        0x00 | 0xD8 | 0xD9 => {
            return Err(MjpegError::Corrupt(format!(
                "marker {marker:#04x} before the scan"
            )));
        }
        _ => {}
    }
    let len = be16(jpeg, at + 2).ok_or(MjpegError::Truncated)?;
    if len < 2 {
        return Err(MjpegError::Corrupt(format!("segment length {len}")));
    }
    let end = at + 2 + usize::from(len);
    let body = jpeg.get(at + 4..end).ok_or(MjpegError::Truncated)?;
    Ok(Segment {
        marker,
        at,
        body,
        next: end,
    })
}

/// A baseline, extended or progressive frame header: (width, height, components).
fn parse_sof(body: &[u8]) -> Result<(u16, u16, u8), MjpegError> {
    let short = || MjpegError::Corrupt("short frame header".into());
    let (&precision, rest) = body.split_first().ok_or_else(short)?;
    let height = be16(rest, 0).ok_or_else(short)?;
    let width = be16(rest, 2).ok_or_else(short)?;
    let count = *rest.get(4).ok_or_else(short)?;
    if u32::from(width) > MAX_SIDE || u32::from(height) > MAX_SIDE {
        return Err(MjpegError::TooLarge {
            width: width.into(),
            height: height.into(),
        });
    }
    if width == 0 || height == 0 {
        return Err(MjpegError::Unsupported(format!(
            "{width}x{height} (size set by a DNL marker)"
        )));
    }
    if precision != 8 {
        return Err(MjpegError::Unsupported(format!("{precision}-bit samples")));
    }
    let comps = rest.get(5..5 + 3 * usize::from(count)).ok_or_else(short)?;
    check_sampling(count, comps)?;
    Ok((width, height, count))
}

/// Greyscale, or YCbCr with full-resolution chroma components and luma at
/// 1 or 2 times that in each direction (4:4:4, 4:2:2, 4:2:0, 4:4:0): what
/// cameras send, and the decoder's well-trodden paths.
fn check_sampling(count: u8, comps: &[u8]) -> Result<(), MjpegError> {
    let hv = |c: u8| (c >> 4, c & 15);
    match (count, comps) {
        (1, _) => Ok(()),
        (3, &[_, y, _, _, cb, _, _, cr, _]) => match (hv(y), hv(cb), hv(cr)) {
            ((1..=2, 1..=2), (1, 1), (1, 1)) => Ok(()),
            f => Err(MjpegError::Unsupported(format!("sampling factors {f:?}"))),
        },
        (n, _) => Err(MjpegError::Unsupported(format!("{n} colour components"))),
    }
}

/// The offset just past the EOI marker, scanning from the first scan's data.
/// In entropy-coded data 0xFF is followed by 0x00 (a stuffed byte), a restart
/// marker or a fill byte; any other marker is a segment between scans
/// (progressive JPEG), skipped by its length. Data past the EOI is ignored.
fn find_eoi(jpeg: &[u8], mut at: usize) -> Result<usize, MjpegError> {
    loop {
        let rest = jpeg.get(at..).ok_or(MjpegError::Truncated)?;
        let ff = at
            + rest
                .iter()
                .position(|&b| b == 0xFF)
                .ok_or(MjpegError::Truncated)?;
        match jpeg.get(ff + 1) {
            None => return Err(MjpegError::Truncated),
            Some(0xD9) => return Ok(ff + 2),
            Some(0x00 | 0xD0..=0xD7) => at = ff + 2,
            Some(0xFF) => at = ff + 1,
            Some(_) => at = segment(jpeg, ff)?.next,
        }
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let bytes = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([bytes[0], bytes[1]]))
}

/// Code lengths (16 counts) and values of the four tables of T.81 Annex K.3.
const DC_LUMA: ([u8; 16], [u8; 12]) = (
    [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0],
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
);
const DC_CHROMA: ([u8; 16], [u8; 12]) = (
    [0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0],
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
);
#[rustfmt::skip]
const AC_LUMA: ([u8; 16], [u8; 162]) = (
    [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7d],
    [
        0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61, 0x07,
        0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52, 0xd1, 0xf0,
        0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25, 0x26, 0x27, 0x28,
        0x29, 0x2a, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49,
        0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69,
        0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89,
        0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
        0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5,
        0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe1, 0xe2,
        0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8,
        0xf9, 0xfa,
    ],
);
#[rustfmt::skip]
const AC_CHROMA: ([u8; 16], [u8; 162]) = (
    [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77],
    [
        0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61, 0x71,
        0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xa1, 0xb1, 0xc1, 0x09, 0x23, 0x33, 0x52, 0xf0,
        0x15, 0x62, 0x72, 0xd1, 0x0a, 0x16, 0x24, 0x34, 0xe1, 0x25, 0xf1, 0x17, 0x18, 0x19, 0x1a, 0x26,
        0x27, 0x28, 0x29, 0x2a, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48,
        0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68,
        0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87,
        0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5,
        0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3,
        0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda,
        0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8,
        0xf9, 0xfa,
    ],
);

/// One DHT segment holding all four standard tables (DC 0, DC 1, AC 0, AC 1),
/// the one the OpenDML (AVI1) MJPEG convention implies.
const STANDARD_DHT: [u8; 420] = standard_dht();

const fn standard_dht() -> [u8; 420] {
    let mut out = [0u8; 420];
    out[0] = 0xFF;
    out[1] = 0xC4;
    out[2] = (418 >> 8) as u8;
    out[3] = (418 & 0xFF) as u8;
    let mut at = 4;
    at = put_table(&mut out, at, 0x00, &DC_LUMA.0, &DC_LUMA.1);
    at = put_table(&mut out, at, 0x01, &DC_CHROMA.0, &DC_CHROMA.1);
    at = put_table(&mut out, at, 0x10, &AC_LUMA.0, &AC_LUMA.1);
    at = put_table(&mut out, at, 0x11, &AC_CHROMA.0, &AC_CHROMA.1);
    assert!(at == 420, "the four tables fill the segment exactly");
    out
}

/// Writes one table (class/id byte, 16 counts, values) at `at`; returns the end.
const fn put_table(
    out: &mut [u8; 420],
    mut at: usize,
    id: u8,
    bits: &[u8; 16],
    vals: &[u8],
) -> usize {
    out[at] = id;
    at += 1;
    let mut total = 0;
    let mut i = 0;
    while i < 16 {
        out[at] = bits[i];
        total += bits[i] as usize;
        at += 1;
        i += 1;
    }
    assert!(total == vals.len(), "code counts match the values");
    let mut i = 0;
    while i < vals.len() {
        out[at] = vals[i];
        at += 1;
        i += 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use jpeg_encoder::{ColorType, Encoder, SamplingFactor};

    use super::*;
    use crate::capture::scene::Scene;
    use crate::capture::stripe;

    const STAMP: u64 = 1_767_225_600_123;

    fn scene_frame(width: usize, height: usize, n: u64) -> RawFrame {
        let mut f = RawFrame::black(width, height);
        Scene::new(width, height).draw(&mut f, n, STAMP);
        f
    }

    /// A smooth picture with texture, of any size (odd ones too).
    fn synthetic(width: usize, height: usize) -> RawFrame {
        let mut f = RawFrame {
            width,
            height,
            data: vec![0; RawFrame::i420_len(width, height)],
            captured: Instant::now(),
            stamp_ms: 0,
        };
        let (y, u, v) = f.planes_mut();
        for (i, p) in y.iter_mut().enumerate() {
            let (x, r) = (i % width, i / width);
            *p = (40 + (x * 5 + r * 3) % 160 + (x * r) % 7) as u8;
        }
        for (i, (pu, pv)) in u.iter_mut().zip(v.iter_mut()).enumerate() {
            *pu = (70 + i % 90) as u8;
            *pv = (180 - i % 80) as u8;
        }
        f
    }

    /// What a camera encodes for this I420 picture: full-range (JFIF)
    /// interleaved YCbCr at full size.
    fn full_range_ycc(f: &RawFrame) -> Vec<u8> {
        let full =
            |x: u8, span: f32| ((x as f32 - 16.0) * 255.0 / span).round().clamp(0.0, 255.0) as u8;
        let (w, h) = (f.width, f.height);
        let (cw, ch) = ((w / 2).max(1), (h / 2).max(1));
        let (y, u, v) = f.planes();
        let mut ycc = Vec::with_capacity(w * h * 3);
        for row in 0..h {
            for col in 0..w {
                let c = (row / 2).min(ch - 1) * cw + (col / 2).min(cw - 1);
                let chroma = |plane: &[u8]| plane.get(c).map_or(128, |&p| full(p, 224.0));
                ycc.extend([full(y[row * w + col], 219.0), chroma(u), chroma(v)]);
            }
        }
        ycc
    }

    /// Baseline, quality 80, the standard Huffman tables (not optimized ones).
    fn encode_with(
        f: &RawFrame,
        sampling: SamplingFactor,
        tweak: impl FnOnce(&mut Encoder<&mut Vec<u8>>),
    ) -> Vec<u8> {
        let mut jpeg = Vec::new();
        let mut enc = Encoder::new(&mut jpeg, 80);
        enc.set_sampling_factor(sampling);
        enc.set_optimized_huffman_tables(false);
        tweak(&mut enc);
        enc.encode(
            &full_range_ycc(f),
            f.width as u16,
            f.height as u16,
            ColorType::Ycbcr,
        )
        .expect("encodes");
        jpeg
    }

    fn encode(f: &RawFrame, sampling: SamplingFactor) -> Vec<u8> {
        encode_with(f, sampling, |_| {})
    }

    fn frame_for(w: usize, h: usize) -> RawFrame {
        let mut f = RawFrame::black(2, 2);
        f.width = w;
        f.height = h;
        f
    }

    fn decode(jpeg: &[u8], w: usize, h: usize) -> Result<RawFrame, MjpegError> {
        let mut out = frame_for(w, h);
        MjpegDecoder::new().decode(jpeg, &mut out).map(|()| out)
    }

    fn mae(a: &[u8], b: &[u8]) -> f64 {
        assert_eq!(a.len(), b.len());
        let sum: u64 = a
            .iter()
            .zip(b)
            .map(|(&p, &q)| u64::from(p.abs_diff(q)))
            .sum();
        sum as f64 / a.len() as f64
    }

    /// The JPEG without its DHT segments, as many UVC cameras send it.
    fn strip_dht(jpeg: &[u8]) -> Vec<u8> {
        let mut out = jpeg[..2].to_vec();
        let mut at = 2;
        loop {
            let seg = segment(jpeg, at).expect("a valid JPEG");
            if seg.marker == 0xDA {
                out.extend_from_slice(&jpeg[seg.at..]);
                return out;
            }
            if seg.marker != 0xC4 {
                out.extend_from_slice(&jpeg[seg.at..seg.next]);
            }
            at = seg.next;
        }
    }

    use crate::xorshift::XorShift;

    /// A value in `0..n` as an index (0 when `n` is 0).
    fn below(rng: &mut XorShift, n: usize) -> usize {
        rng.below(n as u64) as usize
    }

    #[test]
    fn scene_decodes_like_its_source_at_camera_samplings() {
        let src = scene_frame(640, 360, 11);
        for sampling in [
            SamplingFactor::R_4_2_2,
            SamplingFactor::R_4_2_0,
            SamplingFactor::R_4_4_4,
        ] {
            let out = decode(&encode(&src, sampling), 640, 360).expect("decodes");
            let ((ya, ua, va), (yb, ub, vb)) = (out.planes(), src.planes());
            let (luma, cb, cr) = (mae(ya, yb), mae(ua, ub), mae(va, vb));
            assert!(luma < 4.0, "{sampling:?}: luma error {luma:.2}");
            assert!(
                cb < 4.0 && cr < 4.0,
                "{sampling:?}: chroma error {cb:.2} {cr:.2}"
            );
            let stamp = stripe::decode_luma(ya, 640, 360, 640).expect("the stripe survives");
            assert_eq!(stamp.stamp_ms, STAMP, "{sampling:?}");
        }
    }

    #[test]
    fn greyscale_gets_neutral_chroma() {
        let src = synthetic(64, 48);
        let luma: Vec<u8> = full_range_ycc(&src).chunks_exact(3).map(|p| p[0]).collect();
        let mut jpeg = Vec::new();
        Encoder::new(&mut jpeg, 90)
            .encode(&luma, 64, 48, ColorType::Luma)
            .expect("encodes");
        let out = decode(&jpeg, 64, 48).expect("decodes");
        let (y, u, v) = out.planes();
        assert!(mae(y, src.planes().0) < 3.0);
        assert!(u.iter().chain(v).all(|&c| c == 128));
    }

    #[test]
    fn full_range_maps_onto_the_limited_range() {
        assert_eq!((RANGE.y[0], RANGE.y[128], RANGE.y[255]), (16, 126, 235));
        assert_eq!((RANGE.c4[0], RANGE.c4[512], RANGE.c4[1020]), (16, 128, 240));
        // The chroma table is the mean of four then 128 + (C-128)*224/255.
        assert_eq!(
            RANGE.c4[4 * 64],
            (128.0 + (64.0 - 128.0) * 224.0 / 255.0f64).round() as u8
        );
        assert!(RANGE.y.windows(2).all(|w| w[0] <= w[1]));
        assert!(RANGE.c4.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn odd_sizes_decode() {
        for (w, h) in [(33, 17), (1, 1), (2, 3), (17, 2)] {
            let src = synthetic(w, h);
            for sampling in [
                SamplingFactor::R_4_2_2,
                SamplingFactor::R_4_2_0,
                SamplingFactor::R_4_4_4,
            ] {
                let out = decode(&encode(&src, sampling), w, h).expect("decodes");
                assert_eq!(out.data.len(), RawFrame::i420_len(w, h));
                assert!(
                    mae(out.planes().0, src.planes().0) < 6.0,
                    "{w}x{h} {sampling:?}"
                );
            }
        }
    }

    #[test]
    fn motion_jpeg_without_huffman_tables() {
        let src = scene_frame(640, 360, 3);
        let jpeg = encode(&src, SamplingFactor::R_4_2_2);
        let bare = strip_dht(&jpeg);
        assert!(parse_header(&jpeg).expect("header").has_dht);
        assert!(!parse_header(&bare).expect("header").has_dht);
        let fixed = with_standard_huffman_tables(&bare);
        assert!(matches!(fixed, Cow::Owned(_)));
        assert!(parse_header(&fixed).expect("header").has_dht);
        let want = decode(&jpeg, 640, 360).expect("the original decodes").data;
        assert_eq!(decode(&fixed, 640, 360).expect("with tables").data, want);
        assert_eq!(
            decode(&bare, 640, 360).expect("bare, tables inserted").data,
            want
        );
        let mut ycc = Vec::new();
        assert!(
            decode_into(&bare, ColorSpace::YCbCr, (640, 360), &mut ycc).is_err(),
            "the decoder needs the tables"
        );
        let same = with_standard_huffman_tables(&jpeg);
        assert!(matches!(same, Cow::Borrowed(b) if std::ptr::eq(b, &jpeg[..])));
        assert!(matches!(
            with_standard_huffman_tables(b"junk"),
            Cow::Borrowed(b"junk")
        ));
    }

    #[test]
    fn the_standard_tables_are_t81_annex_k3() {
        assert_eq!(&STANDARD_DHT[..4], &[0xFF, 0xC4, 0x01, 0xA2]);
        // Class/id bytes at the start of each table.
        assert_eq!(
            (
                STANDARD_DHT[4],
                STANDARD_DHT[33],
                STANDARD_DHT[62],
                STANDARD_DHT[241]
            ),
            (0x00, 0x01, 0x10, 0x11)
        );
    }

    #[test]
    fn truncated_frames_are_errors_at_every_length() {
        let jpeg = encode(&synthetic(64, 48), SamplingFactor::R_4_2_2);
        for len in 0..jpeg.len() {
            let err = decode(&jpeg[..len], 64, 48).expect_err("truncated");
            if len > 2 {
                assert!(matches!(err, MjpegError::Truncated), "{len}: {err}");
            }
        }
        let big = encode(&scene_frame(640, 360, 5), SamplingFactor::R_4_2_0);
        for len in (0..big.len()).step_by(997) {
            assert!(decode(&big[..len], 640, 360).is_err(), "{len}");
        }
        assert!(decode(&big, 640, 360).is_ok());
    }

    #[test]
    fn bytes_after_the_eoi_are_ignored() {
        let jpeg = encode(&synthetic(64, 48), SamplingFactor::R_4_2_0);
        let want = decode(&jpeg, 64, 48).expect("decodes").data;
        // bytesused larger than the frame: zero padding, or stale bytes of
        // an earlier, longer frame.
        let mut padded = jpeg.clone();
        padded.extend([0u8; 4096]);
        assert_eq!(decode(&padded, 64, 48).expect("padded").data, want);
        let mut stale = jpeg.clone();
        stale.extend_from_slice(&jpeg[jpeg.len() / 3..]);
        assert_eq!(decode(&stale, 64, 48).expect("stale tail").data, want);
    }

    #[test]
    fn not_a_jpeg() {
        for junk in [
            &b""[..],
            &[0xFF],
            &[0xD8, 0xFF],
            b"\x89PNG\r\n\x1a\n",
            &[0u8; 64],
        ] {
            assert!(
                matches!(decode(junk, 64, 48), Err(MjpegError::NotJpeg)),
                "{junk:?}"
            );
        }
    }

    #[test]
    fn wrong_size_is_a_size_mismatch() {
        let jpeg = encode(&synthetic(64, 48), SamplingFactor::R_4_2_2);
        let err = decode(&jpeg, 320, 240).expect_err("mismatch");
        assert!(
            matches!(
                err,
                MjpegError::SizeMismatch {
                    got: (64, 48),
                    want: (320, 240)
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn huge_sizes_are_refused_before_allocating() {
        let mut jpeg = encode(&synthetic(64, 48), SamplingFactor::R_4_2_2);
        let sof = jpeg
            .windows(2)
            .position(|w| w == [0xFF, 0xC0])
            .expect("SOF0");
        jpeg[sof + 5..sof + 9].copy_from_slice(&[0x20, 0x00, 0x20, 0x00]); // 8192x8192
        let mut out = frame_for(8192, 8192);
        let err = MjpegDecoder::new()
            .decode(&jpeg, &mut out)
            .expect_err("too large");
        assert!(
            matches!(
                err,
                MjpegError::TooLarge {
                    width: 8192,
                    height: 8192
                }
            ),
            "{err}"
        );
        assert_eq!(
            out.data.len(),
            RawFrame::i420_len(2, 2),
            "nothing allocated"
        );
        // Refused from the frame header alone, whatever follows.
        assert!(matches!(
            decode(&jpeg[..sof + 19], 8192, 8192),
            Err(MjpegError::TooLarge { .. })
        ));
    }

    #[test]
    fn other_colour_models_are_unsupported() {
        let f = synthetic(16, 16);
        let cmyk: Vec<u8> = full_range_ycc(&f)
            .chunks_exact(3)
            .flat_map(|p| [p[0], p[1], p[2], 9])
            .collect();
        let mut jpeg = Vec::new();
        Encoder::new(&mut jpeg, 80)
            .encode(&cmyk, 16, 16, ColorType::Cmyk)
            .expect("encodes");
        assert!(matches!(
            decode(&jpeg, 16, 16),
            Err(MjpegError::Unsupported(_))
        ));
        let mut odd = encode(&f, SamplingFactor::R_4_1_1);
        assert!(matches!(
            decode(&odd, 16, 16),
            Err(MjpegError::Unsupported(_))
        ));
        let sof = odd
            .windows(2)
            .position(|w| w == [0xFF, 0xC0])
            .expect("SOF0");
        odd[sof + 1] = 0xC9; // arithmetic coding
        assert!(matches!(
            decode(&odd, 16, 16),
            Err(MjpegError::Unsupported(_))
        ));
    }

    #[test]
    fn restart_markers_and_progressive_frames_decode() {
        let src = synthetic(64, 48);
        let want = src.planes().0;
        for jpeg in [
            encode_with(&src, SamplingFactor::R_4_2_2, |e| e.set_restart_interval(2)),
            encode_with(&src, SamplingFactor::R_4_2_0, |e| e.set_progressive(true)),
        ] {
            let out = decode(&jpeg, 64, 48).expect("decodes");
            assert!(mae(out.planes().0, want) < 4.0);
        }
    }

    #[test]
    fn damaged_and_random_input_never_panics() {
        let small = encode(&synthetic(48, 32), SamplingFactor::R_4_2_2);
        let progressive = encode_with(&synthetic(48, 32), SamplingFactor::R_4_2_0, |e| {
            e.set_progressive(true)
        });
        let bare = strip_dht(&small);
        let header_len = parse_header(&small).expect("header").scan;
        let mut rng = XorShift(0x1234_5678_9abc_def1);
        let mut decoder = MjpegDecoder::new();
        let mut out = frame_for(48, 32);
        for round in 0..3000 {
            let base = [&small, &progressive, &bare][round % 3];
            let mut bad = base.clone();
            for _ in 0..1 + below(&mut rng, 4) {
                // Half the damage in the headers, where sizes and lengths are.
                let at = if rng.next_u64() & 1 == 0 {
                    below(&mut rng, header_len)
                } else {
                    below(&mut rng, bad.len())
                };
                bad[at] ^= 1 << below(&mut rng, 8);
            }
            if below(&mut rng, 4) == 0 {
                bad.truncate(below(&mut rng, bad.len()));
            }
            (out.width, out.height) = (48, 32);
            if decoder.decode(&bad, &mut out).is_ok() {
                assert_eq!(out.data.len(), RawFrame::i420_len(48, 32));
            }
        }
        for round in 0..500 {
            let mut junk: Vec<u8> = (0..below(&mut rng, 3000))
                .map(|_| rng.next_u64() as u8)
                .collect();
            if round % 2 == 0 && junk.len() >= 2 {
                junk[..2].copy_from_slice(&[0xFF, 0xD8]);
            }
            (out.width, out.height) = (48, 32);
            assert!(decoder.decode(&junk, &mut out).is_err());
        }
    }

    #[test]
    fn scratch_buffers_are_reused() {
        let src = scene_frame(640, 360, 1);
        let jpegs: Vec<Vec<u8>> = (0..3)
            .map(|i| {
                let sampling = [SamplingFactor::R_4_2_2, SamplingFactor::R_4_2_0][i % 2];
                strip_dht(&encode(&src, sampling))
            })
            .collect();
        let mut decoder = MjpegDecoder::new();
        let mut out = RawFrame::black(640, 360);
        decoder.decode(&jpegs[0], &mut out).expect("decodes");
        let (ycc, patched) = (decoder.ycc.capacity(), decoder.patched.capacity());
        let data = out.data.as_ptr();
        for jpeg in &jpegs {
            decoder.decode(jpeg, &mut out).expect("decodes");
        }
        assert_eq!(
            (decoder.ycc.capacity(), decoder.patched.capacity()),
            (ycc, patched)
        );
        assert_eq!(out.data.as_ptr(), data, "the caller's buffer is kept");
    }
}
