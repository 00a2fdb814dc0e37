//! The camera-like test scene: what `--source test` shows.
//!
//! Flat colour bars encode to a thirtieth of a camera's bitrate, so every
//! benchmark and loss test on them measures a stream no camera produces.
//! This scene has what a camera picture has: texture at several scales,
//! motion over the whole picture (the view sways like a hand-held camera),
//! an object moving across it, and sensor-like noise that changes every
//! frame. Everything costly is computed once: the textured "world" the
//! view pans over, and a table of noise samples that each row reads from a
//! different place each frame. A frame is a pure function of its number,
//! so tests can reproduce it.

use super::stripe;
use crate::frame::RawFrame;
use crate::xorshift::XorShift;

/// How far the view may sway from the world's centre, in pixels.
const SWAY_X: usize = 96;
const SWAY_Y: usize = 48;
/// Noise samples in the table; rows start at pseudo-random offsets.
const NOISE_LEN: usize = 1 << 16;
/// Peak sensor noise on luma (about sigma 3: a camera in good light).
const NOISE_LUMA: i16 = 6;
/// The moving object's size.
const OBJECT: usize = 112;

pub struct Scene {
    width: usize,
    height: usize,
    /// Luma of the world, `world_w` x `world_h`; chroma at half size.
    world_y: Vec<u8>,
    world_u: Vec<u8>,
    world_v: Vec<u8>,
    world_w: usize,
    noise: Vec<i8>,
    /// A fixed camera: no sway, and the object only in its visits.
    still: bool,
}

/// The still scene's object visits: 3 s of every 12, from 6 s on.
pub const VISIT_PERIOD: u64 = 12 * 30;
pub const VISIT_FROM: u64 = 6 * 30;
pub const VISIT_FRAMES: u64 = 3 * 30;

impl Scene {
    /// Precomputes the world and the noise table for a `width`x`height`
    /// picture (even sizes; at least 2x the object size).
    pub fn new(width: usize, height: usize) -> Self {
        let (world_w, world_h) = (width + 2 * SWAY_X, height + 2 * SWAY_Y);
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let lattice = Lattice::new(&mut rng);
        let mut world_y = vec![0u8; world_w * world_h];
        for (i, px) in world_y.iter_mut().enumerate() {
            let (x, y) = ((i % world_w) as f32, (i / world_w) as f32);
            *px = luma_at(&lattice, x, y);
        }
        let (cw, ch) = (world_w / 2, world_h / 2);
        let mut world_u = vec![0u8; cw * ch];
        let mut world_v = vec![0u8; cw * ch];
        for i in 0..cw * ch {
            let (x, y) = ((i % cw) as f32 * 2.0, (i / cw) as f32 * 2.0);
            let (u, v) = chroma_at(&lattice, x, y);
            world_u[i] = u;
            world_v[i] = v;
        }
        let noise = (0..NOISE_LEN + width)
            .map(|_| triangular(&mut rng, NOISE_LUMA))
            .collect();
        Scene {
            width,
            height,
            world_y,
            world_u,
            world_v,
            world_w,
            noise,
            still: false,
        }
    }

    /// The same world from a fixed camera (`--source test:still`).
    pub fn still(self) -> Self {
        Scene {
            still: true,
            ..self
        }
    }

    /// Whether the object is in frame `n`.
    fn object_in(&self, n: u64) -> bool {
        let phase = n % VISIT_PERIOD;
        !self.still || (VISIT_FROM..VISIT_FROM + VISIT_FRAMES).contains(&phase)
    }

    /// Draws frame number `n` into `frame` and stamps it with `stamp_ms`.
    pub fn draw(&self, frame: &mut RawFrame, n: u64, stamp_ms: u64) {
        let (w, h) = (self.width, self.height);
        frame.width = w;
        frame.height = h;
        frame.data.resize(RawFrame::i420_len(w, h), 0);
        let (ox, oy) = if self.still {
            (SWAY_X, SWAY_Y)
        } else {
            sway(n)
        };
        let (y, u, v) = frame.planes_mut();
        copy_window(&self.world_y, self.world_w, y, w, h, ox, oy);
        copy_window(
            &self.world_u,
            self.world_w / 2,
            u,
            w / 2,
            h / 2,
            ox / 2,
            oy / 2,
        );
        copy_window(
            &self.world_v,
            self.world_w / 2,
            v,
            w / 2,
            h / 2,
            ox / 2,
            oy / 2,
        );
        if self.object_in(n) {
            self.draw_object(y, u, v, n);
        }
        self.add_noise(y, n);
        stripe::draw_i420(y, u, v, w, stamp_ms);
        frame.stamp_ms = stamp_ms;
    }

    /// A bright disc with a dark rim crossing the picture on its own path.
    fn draw_object(&self, y: &mut [u8], u: &mut [u8], v: &mut [u8], n: u64) {
        let (w, h) = (self.width, self.height);
        let t = n as f32 / 30.0;
        let cx = (w - OBJECT) as f32 * (0.5 + 0.45 * (t * 0.7).sin()) + OBJECT as f32 / 2.0;
        let top = stripe::ROWS as f32 + OBJECT as f32 / 2.0;
        let cy = top + (h as f32 - top - OBJECT as f32 / 2.0) * (0.5 + 0.45 * (t * 1.1).cos());
        let r = OBJECT as f32 / 2.0;
        let (x0, y0) = ((cx - r).max(0.0) as usize, (cy - r).max(0.0) as usize);
        for row in y0..(y0 + OBJECT).min(h) {
            for col in x0..(x0 + OBJECT).min(w) {
                let d = ((col as f32 - cx).powi(2) + (row as f32 - cy).powi(2)).sqrt();
                if d < r {
                    y[row * w + col] = if d > r - 8.0 { 40 } else { 200 - (d as u8) };
                    if row % 2 == 0 && col % 2 == 0 {
                        let c = (row / 2) * (w / 2) + col / 2;
                        u[c] = 96;
                        v[c] = 200;
                    }
                }
            }
        }
    }

    /// Sensor noise: each row adds the table from a per-frame, per-row offset.
    fn add_noise(&self, y: &mut [u8], n: u64) {
        let w = self.width;
        let mut rng = XorShift(n.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
        for line in y.chunks_exact_mut(w).skip(stripe::ROWS) {
            let start = (rng.next_u64() as usize) % NOISE_LEN;
            for (px, &dn) in line.iter_mut().zip(&self.noise[start..start + w]) {
                *px = (*px as i16 + dn as i16).clamp(16, 235) as u8;
            }
        }
    }
}

/// The view's offset into the world for frame `n`: a slow, smooth sway
/// plus a faster tremor, like a camera on a hand or a pole in wind.
fn sway(n: u64) -> (usize, usize) {
    let t = n as f32 / 30.0;
    let x = (t * 0.9).sin() * 0.8 + (t * 3.7).sin() * 0.2;
    let y = (t * 0.6).cos() * 0.8 + (t * 4.3).sin() * 0.2;
    let ox = (SWAY_X as f32 * (1.0 + x)) as usize;
    let oy = (SWAY_Y as f32 * (1.0 + y)) as usize;
    (ox & !1, oy & !1)
}

fn copy_window(src: &[u8], src_w: usize, dst: &mut [u8], w: usize, h: usize, ox: usize, oy: usize) {
    for (row, line) in dst.chunks_exact_mut(w).take(h).enumerate() {
        let s = (oy + row) * src_w + ox;
        line.copy_from_slice(&src[s..s + w]);
    }
}

/// Luma of the world at a point: large soft shapes, mid-scale blotches and
/// fine grain (value noise at three scales), plus a few hard edges (a
/// brick-like grid) of the kind real scenes are full of.
fn luma_at(l: &Lattice, x: f32, y: f32) -> u8 {
    let coarse = l.value(x / 160.0, y / 160.0);
    let mid = l.value(x / 24.0 + 17.0, y / 24.0 + 5.0);
    let fine = l.value(x / 4.0 + 3.0, y / 4.0 + 11.0);
    let bricks = if (x as u32 % 64 < 3) || (y as u32 % 32 < 3) {
        -0.25
    } else {
        0.0
    };
    let v = 0.55 * coarse + 0.3 * mid + 0.15 * fine + bricks;
    (40.0 + 170.0 * v.clamp(0.0, 1.0)) as u8
}

/// Chroma: slowly varying hues, like a scene's objects and light.
fn chroma_at(l: &Lattice, x: f32, y: f32) -> (u8, u8) {
    let a = l.value(x / 200.0 + 40.0, y / 200.0);
    let b = l.value(x / 120.0, y / 120.0 + 40.0);
    (
        (128.0 + 60.0 * (a - 0.5)) as u8,
        (128.0 + 60.0 * (b - 0.5)) as u8,
    )
}

/// Smooth value noise on a 64x64 lattice of random values.
struct Lattice([f32; 64 * 64]);

impl Lattice {
    fn new(rng: &mut XorShift) -> Self {
        let mut v = [0f32; 64 * 64];
        for p in &mut v {
            *p = (rng.next_u64() % 1024) as f32 / 1023.0;
        }
        Lattice(v)
    }

    fn at(&self, x: i64, y: i64) -> f32 {
        self.0[(y.rem_euclid(64) * 64 + x.rem_euclid(64)) as usize]
    }

    /// Bilinear interpolation with a smoothstep, in 0..1.
    fn value(&self, x: f32, y: f32) -> f32 {
        let (xi, yi) = (x.floor() as i64, y.floor() as i64);
        let s = |t: f32| t * t * (3.0 - 2.0 * t);
        let (fx, fy) = (s(x - x.floor()), s(y - y.floor()));
        let top = self.at(xi, yi) * (1.0 - fx) + self.at(xi + 1, yi) * fx;
        let bottom = self.at(xi, yi + 1) * (1.0 - fx) + self.at(xi + 1, yi + 1) * fx;
        top * (1.0 - fy) + bottom * fy
    }
}

/// Triangular noise in -peak..=peak (the sum of two uniforms), from the
/// generator used for precomputation and per-frame row offsets only, never
/// per pixel per frame.
fn triangular(rng: &mut XorShift, peak: i16) -> i8 {
    let span = (peak + 1) as u64;
    let a = rng.below(span) as i16;
    let b = rng.below(span) as i16;
    (a - b) as i8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_frame_carries_its_stamp_and_differs_everywhere() {
        let s = Scene::new(640, 360);
        let mut a = RawFrame::black(2, 2);
        let mut b = RawFrame::black(2, 2);
        s.draw(&mut a, 10, 1_700_000_000_000);
        s.draw(&mut b, 11, 1_700_000_000_033);
        let d = stripe::decode_luma(a.planes().0, 640, 360, 640).expect("stripe");
        assert_eq!(d.stamp_ms, 1_700_000_000_000);
        // Motion and noise over the whole picture: every 16-row band below
        // the stripe changes from one frame to the next.
        let (ya, yb) = (a.planes().0, b.planes().0);
        for band in (stripe::ROWS..360 - 16).step_by(16) {
            let r = band * 640..(band + 16) * 640;
            let changed = ya[r.clone()]
                .iter()
                .zip(&yb[r])
                .filter(|(p, q)| p != q)
                .count();
            assert!(
                changed > 640 * 8,
                "band at row {band}: {changed} pixels changed"
            );
        }
    }

    #[test]
    fn a_frame_is_a_function_of_its_number() {
        let s = Scene::new(640, 360);
        let mut a = RawFrame::black(2, 2);
        let mut b = RawFrame::black(2, 2);
        s.draw(&mut a, 7, 0);
        s.draw(&mut b, 7, 0);
        assert_eq!(a.data, b.data);
    }

    #[test]
    fn it_is_textured_not_flat() {
        let s = Scene::new(1280, 720);
        let mut f = RawFrame::black(2, 2);
        s.draw(&mut f, 0, 0);
        let y = &f.planes().0[64 * 1280..];
        let mean = y.iter().map(|&p| p as f64).sum::<f64>() / y.len() as f64;
        let var = y.iter().map(|&p| (p as f64 - mean).powi(2)).sum::<f64>() / y.len() as f64;
        assert!(
            var.sqrt() > 20.0,
            "luma standard deviation {:.1}",
            var.sqrt()
        );
        let (_, u, _) = f.planes();
        assert!(
            u.iter().any(|&c| c < 120) && u.iter().any(|&c| c > 136),
            "it has colour"
        );
    }
}
