//! The timestamp stripe (shared/TIMESTAMP_STRIPE.md, version 1).
//!
//! Every frame carries its capture time as 64 black/white blocks in its top
//! 32 rows, so a receiver on the same host measures glass-to-glass latency
//! per frame from the pixels alone. Blocks are macroblock-aligned at 1280
//! wide and protected by markers and a CRC-8, so a damaged stripe is
//! rejected rather than misread.

/// Rows the stripe covers.
pub const ROWS: usize = 32;
const BLOCKS: usize = 64;
const START: [bool; 4] = [true, false, true, false];
const END: [bool; 4] = [false, true, false, true];
/// Timestamps are Unix milliseconds modulo 2^48.
const STAMP_MASK: u64 = (1 << 48) - 1;

/// Luma of a one bit and a zero bit (limited range, as H.264 usually is).
const WHITE: u8 = 235;
const BLACK: u8 = 16;

/// Block width for a picture of this width, or `None` when the picture is
/// too narrow to carry a stripe (below 384 pixels).
pub fn block_width(width: usize) -> Option<usize> {
    if width >= 1024 {
        Some(16)
    } else if width >= 384 {
        Some(width / 64)
    } else {
        None
    }
}

/// CRC-8/SMBUS: polynomial 0x07, init 0, no reflection, no final XOR.
pub fn crc8(bytes: &[u8]) -> u8 {
    let mut crc = 0u8;
    for &b in bytes {
        crc ^= b;
        for _ in 0..8 {
            crc = if crc & 0x80 != 0 {
                (crc << 1) ^ 0x07
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The 64 block values for a stamp, left to right.
pub fn blocks(stamp_ms: u64) -> [bool; BLOCKS] {
    let ts = stamp_ms & STAMP_MASK;
    let bytes = &ts.to_be_bytes()[2..];
    let crc = crc8(bytes);
    let mut out = [false; BLOCKS];
    out[..4].copy_from_slice(&START);
    for bit in 0..48 {
        out[4 + bit] = (ts >> (47 - bit)) & 1 == 1;
    }
    for bit in 0..8 {
        out[52 + bit] = (crc >> (7 - bit)) & 1 == 1;
    }
    out[60..].copy_from_slice(&END);
    out
}

/// Draws the stripe into an I420 picture: luma rows 0..32 get the blocks
/// (black right of the last one), chroma rows 0..16 become neutral so the
/// stripe is achromatic. Returns false (drawing nothing) when the picture is
/// too small to carry one.
pub fn draw_i420(y: &mut [u8], u: &mut [u8], v: &mut [u8], width: usize, stamp_ms: u64) -> bool {
    let Some(bw) = block_width(width) else {
        return false;
    };
    if y.len() < width * ROWS {
        return false;
    }
    let values = blocks(stamp_ms);
    let row0 = &mut y[..width];
    row0.fill(BLACK);
    for (i, &one) in values.iter().enumerate() {
        if one {
            row0[i * bw..(i + 1) * bw].fill(WHITE);
        }
    }
    let (first, rest) = y[..width * ROWS].split_at_mut(width);
    for row in rest.chunks_exact_mut(width) {
        row.copy_from_slice(first);
    }
    let cw = width / 2;
    let chroma_rows = (ROWS / 2) * cw;
    let (un, vn) = (chroma_rows.min(u.len()), chroma_rows.min(v.len()));
    u[..un].fill(128);
    v[..vn].fill(128);
    true
}

/// A stripe read back from pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    /// Unix milliseconds modulo 2^48.
    pub stamp_ms: u64,
    /// Smallest distance of a block average from the threshold (0..=127):
    /// a quality figure, about 107..127 for a clean stripe.
    pub margin: u8,
}

/// Reads the stripe from a luma plane (`stride` bytes per row). Tries the
/// native geometry first, then the one scaled from a 1280-wide original.
/// `None` when the markers or the CRC do not hold: never a guess.
pub fn decode_luma(luma: &[u8], width: usize, height: usize, stride: usize) -> Option<Decoded> {
    if height < ROWS / 2 || stride < width || luma.len() < stride * height.min(ROWS) {
        return None;
    }
    if let Some(bw) = block_width(width)
        && let Some(d) = decode_with(luma, width, height, stride, bw as f64, ROWS as f64)
    {
        return Some(d);
    }
    let scale = width as f64 / 1280.0;
    decode_with(luma, width, height, stride, 16.0 * scale, 32.0 * scale)
}

fn decode_with(
    luma: &[u8],
    width: usize,
    height: usize,
    stride: usize,
    bw: f64,
    rows: f64,
) -> Option<Decoded> {
    if bw < 1.0 || (BLOCKS as f64 * bw).ceil() as usize > width {
        return None;
    }
    let y0 = (rows / 4.0).floor() as usize;
    let y1 = ((3.0 * rows / 4.0).ceil() as usize).min(height);
    if y1 <= y0 {
        return None;
    }
    let mut bits = [false; BLOCKS];
    let mut margin = u8::MAX;
    for (i, bit) in bits.iter_mut().enumerate() {
        let x0 = (i as f64 * bw + bw / 4.0).floor() as usize;
        let x1 = ((i as f64 * bw + 3.0 * bw / 4.0).ceil() as usize).min(width);
        if x1 <= x0 {
            return None;
        }
        let mut sum = 0u64;
        for row in y0..y1 {
            let line = luma.get(row * stride + x0..row * stride + x1)?;
            sum += line.iter().map(|&p| p as u64).sum::<u64>();
        }
        let avg = sum as f64 / ((x1 - x0) * (y1 - y0)) as f64;
        *bit = avg >= 128.0;
        margin = margin.min((avg - 128.0).abs().min(127.0) as u8);
    }
    if bits[..4] != START || bits[60..] != END {
        return None;
    }
    let ts = bits[4..52]
        .iter()
        .fold(0u64, |acc, &b| (acc << 1) | b as u64);
    let crc = bits[52..60]
        .iter()
        .fold(0u8, |acc, &b| (acc << 1) | b as u8);
    if crc8(&ts.to_be_bytes()[2..]) != crc {
        return None;
    }
    Some(Decoded {
        stamp_ms: ts,
        margin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Section 7 of the spec: stamp, CRC, and the 64 blocks as text.
    const VECTORS: &[(u64, u8, &str)] = &[
        (
            0,
            0x00,
            "1010000000000000000000000000000000000000000000000000000000000101",
        ),
        (
            1_700_000_000_000,
            0x2A,
            "1010000000011000101111001111111001010110100000000000001010100101",
        ),
        (
            1_767_225_600_123,
            0x0B,
            "1010000000011001101101110110110110101010100001111011000010110101",
        ),
    ];

    fn picture(width: usize, height: usize, stamp: u64) -> Vec<u8> {
        let mut y = vec![90u8; width * height];
        let mut u = vec![200u8; width * height / 4];
        let mut v = vec![60u8; width * height / 4];
        assert!(draw_i420(&mut y, &mut u, &mut v, width, stamp));
        assert!(u[..ROWS / 2 * width / 2].iter().all(|&c| c == 128));
        assert_eq!(
            u[ROWS / 2 * width / 2],
            200,
            "chroma below the stripe untouched"
        );
        y
    }

    #[test]
    fn crc_check_value() {
        assert_eq!(crc8(b"123456789"), 0xF4);
    }

    #[test]
    fn test_vectors_blocks_and_crc() {
        for &(ts, crc, text) in VECTORS {
            assert_eq!(crc8(&ts.to_be_bytes()[2..]), crc, "crc of {ts}");
            let got: String = blocks(ts)
                .iter()
                .map(|&b| if b { '1' } else { '0' })
                .collect();
            assert_eq!(got, text, "blocks of {ts}");
        }
    }

    #[test]
    fn drawn_pixels_match_vectors_at_1280() {
        for &(ts, _, text) in VECTORS {
            let y = picture(1280, 720, ts);
            for (i, c) in text.chars().enumerate() {
                let want = if c == '1' { WHITE } else { BLACK };
                assert_eq!(y[20 * 1280 + 16 * i + 8], want, "block {i} of {ts}");
            }
            assert!(
                y[1024..1280].iter().all(|&p| p == BLACK),
                "remainder is black"
            );
            assert_eq!(y[32 * 1280], 90, "row 32 untouched");
            let d = decode_luma(&y, 1280, 720, 1280).expect("decodes");
            assert_eq!(d.stamp_ms, ts);
            assert!(d.margin >= 107);
        }
    }

    #[test]
    fn round_trip_at_narrow_widths() {
        for width in [384usize, 640, 800, 1000] {
            let y = picture(width, 360, 1_767_225_600_123);
            let d = decode_luma(&y, width, 360, width).expect("decodes");
            assert_eq!(d.stamp_ms, 1_767_225_600_123, "width {width}");
        }
    }

    #[test]
    fn too_narrow_draws_nothing() {
        let mut y = vec![7u8; 320 * 240];
        let mut u = vec![7u8; 320 * 60];
        let mut v = u.clone();
        assert!(!draw_i420(&mut y, &mut u, &mut v, 320, 5));
        assert!(y.iter().all(|&p| p == 7));
    }

    #[test]
    fn scaled_down_picture_decodes_with_scaled_geometry() {
        let big = picture(1280, 720, 1_700_000_000_000);
        // Halve by point sampling: 640x360, whose blocks are 8 px wide.
        let mut small = vec![0u8; 640 * 360];
        for yy in 0..360 {
            for xx in 0..640 {
                small[yy * 640 + xx] = big[(2 * yy) * 1280 + 2 * xx];
            }
        }
        let d = decode_luma(&small, 640, 360, 640).expect("scaled geometry");
        assert_eq!(d.stamp_ms, 1_700_000_000_000);
    }

    #[test]
    fn damaged_stripe_is_rejected_not_guessed() {
        let mut y = picture(1280, 720, 1_700_000_000_000);
        // Flip one timestamp block (block 20) to the other colour.
        for row in 0..32 {
            let px = &mut y[row * 1280 + 320..row * 1280 + 336];
            let flip = if px[0] == WHITE { BLACK } else { WHITE };
            px.fill(flip);
        }
        assert_eq!(decode_luma(&y, 1280, 720, 1280), None);
        let grey = vec![128u8; 1280 * 720];
        assert_eq!(decode_luma(&grey, 1280, 720, 1280), None);
        assert_eq!(decode_luma(&[], 1280, 720, 1280), None);
    }

    #[test]
    fn stride_larger_than_width() {
        let y = picture(640, 480, 42);
        let stride = 704;
        let mut padded = vec![0u8; stride * 480];
        for row in 0..480 {
            padded[row * stride..row * stride + 640]
                .copy_from_slice(&y[row * 640..(row + 1) * 640]);
        }
        assert_eq!(
            decode_luma(&padded, 640, 480, stride).map(|d| d.stamp_ms),
            Some(42)
        );
    }
}
