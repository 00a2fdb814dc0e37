//! Full-range (JPEG/sYCC) to limited-range (video) sample tables, shared by
//! the sources that deliver full range: MJPEG cameras and rpicam-vid's
//! YUV420. `Y' = 16 + Y*219/255`, `C' = 128 + (C-128)*224/255`, rounded.

/// Luma: `16 + round(Y * 219 / 255)`.
pub const fn luma_table() -> [u8; 256] {
    let mut y = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        y[i] = (16 + (i * 219 * 2 + 255) / 510) as u8;
        i += 1;
    }
    y
}

/// Chroma: `128 + round((C - 128) * 224 / 255)`, kept non-negative as
/// `floor((510*128 + 448*(C-128) + 255) / 510)`.
pub const fn chroma_table() -> [u8; 256] {
    let mut c = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        c[i] = ((510 * 128 + 448 * (i as i64 - 128) + 255) / 510) as u8;
        i += 1;
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ends_map_onto_the_limited_range() {
        let (y, c) = (luma_table(), chroma_table());
        assert_eq!((y[0], y[255]), (16, 235));
        assert_eq!((c[0], c[128], c[255]), (16, 128, 240));
    }
}
