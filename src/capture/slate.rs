//! The "camera lost" slate viewers see while the camera is gone: a dark
//! picture that says so in large letters, with a dot that moves so the
//! viewer can tell the stream itself is alive. It carries no timestamp
//! stripe: it is not a picture of anything.

use std::time::Instant;

use crate::frame::RawFrame;

/// 5x7 glyphs, one byte a row, the low five bits left to right.
const GLYPHS: [(char, [u8; 7]); 10] = [
    ('C', [0x0e, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0e]),
    ('A', [0x0e, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11]),
    ('M', [0x11, 0x1b, 0x15, 0x15, 0x11, 0x11, 0x11]),
    ('E', [0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x1f]),
    ('R', [0x1e, 0x11, 0x11, 0x1e, 0x14, 0x12, 0x11]),
    ('L', [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1f]),
    ('O', [0x0e, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e]),
    ('S', [0x0f, 0x10, 0x10, 0x0e, 0x01, 0x01, 0x1e]),
    ('T', [0x1f, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04]),
    (' ', [0; 7]),
];

const TEXT: &str = "CAMERA LOST";
const BACKGROUND: u8 = 40;
const INK: u8 = 200;

/// The slate at one size, drawn once; each frame copies it and moves the dot.
pub struct Slate {
    base: RawFrame,
    frames: u64,
}

impl Slate {
    pub fn new(width: usize, height: usize) -> Self {
        let mut base = RawFrame::black(width, height);
        let (y, _, _) = base.planes_mut();
        y.fill(BACKGROUND);
        draw_text(y, width, height);
        Slate { base, frames: 0 }
    }

    /// The next slate frame, stamped with the time it was made.
    pub fn next_frame(&mut self, out: &mut RawFrame) {
        out.width = self.base.width;
        out.height = self.base.height;
        out.data.clear();
        out.data.extend_from_slice(&self.base.data);
        let (w, h) = (out.width, out.height);
        let dot = (h / 40).max(2);
        let span = w.saturating_sub(dot).max(1);
        let x0 = (self.frames as usize * (w / 60).max(1)) % span;
        let y0 = h.saturating_sub(3 * dot);
        let (y, _, _) = out.planes_mut();
        for row in y0..(y0 + dot).min(h) {
            y[row * w + x0.min(w)..row * w + (x0 + dot).min(w)].fill(INK);
        }
        self.frames += 1;
        out.captured = Instant::now();
        out.stamp_ms = 0;
    }
}

/// The text in the middle, each glyph pixel a square of `scale` pixels.
fn draw_text(y: &mut [u8], width: usize, height: usize) {
    let cells = TEXT.len() * 6 - 1;
    let scale = (width * 3 / 4 / cells).min(height / 4 / 7).max(1);
    let (tw, th) = (cells * scale, 7 * scale);
    if tw > width || th > height {
        return;
    }
    let (left, top) = ((width - tw) / 2, (height - th) / 2);
    for (i, ch) in TEXT.chars().enumerate() {
        let Some((_, rows)) = GLYPHS.iter().find(|(c, _)| *c == ch) else {
            continue;
        };
        for (r, bits) in rows.iter().enumerate() {
            for c in 0..5 {
                if bits & (0x10 >> c) == 0 {
                    continue;
                }
                let x = left + (i * 6 + c) * scale;
                for yy in top + r * scale..top + (r + 1) * scale {
                    y[yy * width + x..yy * width + x + scale].fill(INK);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slate_is_dark_with_bright_letters_and_a_moving_dot() {
        let mut slate = Slate::new(640, 360);
        let mut a = RawFrame::black(2, 2);
        let mut b = RawFrame::black(2, 2);
        slate.next_frame(&mut a);
        slate.next_frame(&mut b);
        assert_eq!((a.width, a.height), (640, 360));
        let (y, u, _) = a.planes();
        let ink = y.iter().filter(|&&v| v == INK).count();
        assert!(ink > 640 * 360 / 50, "letters drawn: {ink}");
        assert!(ink < 640 * 360 / 4);
        assert!(u.iter().all(|&c| c == 128), "grey");
        assert_ne!(a.data, b.data, "the dot moves");
        assert_eq!(a.stamp_ms, 0, "no timestamp stripe");
    }

    #[test]
    fn tiny_pictures_do_not_panic() {
        for (w, h) in [(2, 2), (16, 16), (64, 8), (8, 64)] {
            let mut f = RawFrame::black(2, 2);
            Slate::new(w, h).next_frame(&mut f);
        }
    }
}
