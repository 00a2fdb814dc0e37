//! The synthetic source, paced by the clock at the requested rate: the
//! camera-like scene (`--source test`, see `scene.rs`) or cheap colour bars
//! with a moving box (`--source bars`, for emulated CPUs), both with the
//! timestamp stripe.
//!
//! It is the default when no camera is present and what most tests use: the
//! stripe lets any receiver check each frame and measure its latency.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::controls::{ControlError, SceneLook};
use super::scene::Scene;
use super::{CaptureError, stripe};
use crate::frame::RawFrame;

/// What the synthetic source draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    /// Texture, motion over the whole picture and sensor noise: encodes
    /// like a camera.
    Scene,
    /// Flat bars and a box: nearly free to draw and to encode.
    Bars,
    /// The scene from a fixed camera, an object crossing it now and then
    /// (`Scene::still`).
    Still,
}

/// BT.601 limited-range colour bars: white, yellow, cyan, green, magenta, red, blue, black.
const BARS: [(u8, u8, u8); 8] = [
    (180, 128, 128),
    (168, 44, 136),
    (145, 147, 44),
    (133, 63, 52),
    (63, 193, 204),
    (51, 109, 212),
    (28, 212, 120),
    (16, 128, 128),
];

const BOX: usize = 96;

pub struct TestPattern {
    scene: Option<Box<Scene>>,
    width: usize,
    height: usize,
    interval: Duration,
    next_due: Option<Instant>,
    frame_no: u64,
    look: SceneLook,
    /// The luma mapping for `look`, unless it is the default.
    table: Option<Box<[u8; 256]>>,
}

impl TestPattern {
    pub fn new(width: usize, height: usize, fps: u32, look: Look) -> Result<Self, CaptureError> {
        if width < 2 * BOX
            || height < 2 * BOX
            || !width.is_multiple_of(2)
            || !height.is_multiple_of(2)
        {
            return Err(CaptureError::Unsupported(format!(
                "test pattern needs an even size of at least {}x{}, not {width}x{height}",
                2 * BOX,
                2 * BOX
            )));
        }
        Ok(TestPattern {
            scene: match look {
                Look::Scene => Some(Box::new(Scene::new(width, height))),
                Look::Still => Some(Box::new(Scene::new(width, height).still())),
                Look::Bars => None,
            },
            width,
            height,
            interval: Duration::from_secs_f64(1.0 / fps.max(1) as f64),
            next_due: None,
            frame_no: 0,
            look: SceneLook::default(),
            table: None,
        })
    }

    /// Its brightness and contrast (`controls::SceneLook`).
    pub fn look(&self) -> SceneLook {
        self.look
    }

    pub fn set_control(&mut self, id: &str, value: i64) -> Result<(), ControlError> {
        self.look.set(id, value)?;
        self.table = (!self.look.is_default()).then(|| Box::new(self.look.table()));
        Ok(())
    }

    /// Brightness and contrast, below the stripe.
    fn apply_look(&self, frame: &mut RawFrame) {
        let Some(table) = &self.table else { return };
        let start = stripe::ROWS * frame.width;
        let (y, _, _) = frame.planes_mut();
        for px in &mut y[start..] {
            *px = table[*px as usize];
        }
    }

    pub fn size(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    pub fn info(&self) -> super::SourceInfo {
        super::SourceInfo {
            kind: if self.scene.is_some() {
                "test-scene"
            } else {
                "test-bars"
            },
            device: None,
            card: None,
            format: "YU12",
            fps: 1.0 / self.interval.as_secs_f64(),
            why: "the test pattern".into(),
            ..super::SourceInfo::none(self.width, self.height, 0)
        }
    }

    /// Waits for the next frame's slot, then draws it into `frame`.
    pub fn next_frame(&mut self, frame: &mut RawFrame) {
        let now = Instant::now();
        let due = self.next_due.unwrap_or(now);
        if due > now {
            std::thread::sleep(due - now);
        }
        // When we fall more than a frame behind (a stalled consumer), skip
        // ahead instead of bursting to catch up.
        let after = Instant::now();
        self.next_due = Some(if after > due + self.interval {
            after + self.interval
        } else {
            due + self.interval
        });
        self.draw(frame);
        self.frame_no += 1;
    }

    /// Draws frame number `self.frame_no` and stamps it with the current time,
    /// taken immediately before the frame is handed on (as the spec asks).
    fn draw(&self, frame: &mut RawFrame) {
        if let Some(scene) = &self.scene {
            let stamp = unix_ms(SystemTime::now());
            scene.draw(frame, self.frame_no, stamp);
            self.apply_look(frame);
            frame.captured = Instant::now();
            frame.stamp_ms = stamp;
            return;
        }
        frame.width = self.width;
        frame.height = self.height;
        frame
            .data
            .resize(RawFrame::i420_len(self.width, self.height), 0);
        let (w, h) = (self.width, self.height);
        let (y, u, v) = frame.planes_mut();
        // Colour bars with a soft vertical ramp, drawn a bar segment at a
        // time: as cheap as copying a template, without keeping one.
        let bar_x = |i: usize, width: usize| i * width / BARS.len();
        for row in 0..h {
            let ramp = (row * 24 / h) as u8;
            let line = &mut y[row * w..(row + 1) * w];
            for (i, bar) in BARS.iter().enumerate() {
                line[bar_x(i, w)..bar_x(i + 1, w)].fill(bar.0.saturating_sub(ramp).max(16));
            }
        }
        let cw = w / 2;
        for row in 0..h / 2 {
            for (i, bar) in BARS.iter().enumerate() {
                let span = row * cw + bar_x(i, cw)..row * cw + bar_x(i + 1, cw);
                u[span.clone()].fill(bar.1);
                v[span].fill(bar.2);
            }
        }
        // A box that bounces left-right and up-down below the stripe.
        let span_x = w - BOX;
        let span_y = h - BOX - stripe::ROWS;
        let t = self.frame_no as usize * 6;
        let bx = bounce(t, span_x) & !1;
        let by = (stripe::ROWS + bounce(t / 2, span_y)) & !1;
        for row in by..by + BOX {
            y[row * w + bx..row * w + bx + BOX].fill(235);
        }
        for row in by / 2..(by + BOX) / 2 {
            let cw = w / 2;
            u[row * cw + bx / 2..row * cw + (bx + BOX) / 2].fill(90);
            v[row * cw + bx / 2..row * cw + (bx + BOX) / 2].fill(240);
        }
        let stamp = unix_ms(SystemTime::now());
        stripe::draw_i420(y, u, v, w, stamp);
        self.apply_look(frame);
        frame.captured = Instant::now();
        frame.stamp_ms = stamp;
    }
}

fn bounce(t: usize, span: usize) -> usize {
    if span == 0 {
        return 0;
    }
    let p = t % (2 * span);
    if p < span { p } else { 2 * span - p }
}

pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_frame_carries_a_fresh_readable_stamp() {
        let mut p = TestPattern::new(640, 480, 1000, Look::Bars).unwrap();
        let mut f = RawFrame::black(2, 2);
        let mut last = 0;
        for _ in 0..5 {
            p.next_frame(&mut f);
            assert_eq!((f.width, f.height), (640, 480));
            assert_eq!(f.data.len(), RawFrame::i420_len(640, 480));
            let (y, _, _) = f.planes();
            let d = stripe::decode_luma(y, 640, 480, 640).expect("stripe");
            assert_eq!(d.stamp_ms, f.stamp_ms);
            assert!(f.stamp_ms >= last);
            last = f.stamp_ms;
        }
    }

    #[test]
    fn the_scene_is_stamped_too() {
        let mut p = TestPattern::new(640, 360, 1000, Look::Scene).unwrap();
        let mut f = RawFrame::black(2, 2);
        p.next_frame(&mut f);
        let d = stripe::decode_luma(f.planes().0, 640, 360, 640).expect("stripe");
        assert_eq!(d.stamp_ms, f.stamp_ms);
        assert_eq!(p.info().kind, "test-scene");
    }

    #[test]
    fn the_box_moves() {
        let mut p = TestPattern::new(640, 480, 1000, Look::Bars).unwrap();
        let mut a = RawFrame::black(2, 2);
        let mut b = RawFrame::black(2, 2);
        p.next_frame(&mut a);
        p.next_frame(&mut b);
        assert_ne!(a.data[32 * 640..], b.data[32 * 640..]);
    }

    #[test]
    fn rejects_odd_or_tiny_sizes() {
        assert!(TestPattern::new(641, 480, 30, Look::Scene).is_err());
        assert!(TestPattern::new(100, 100, 30, Look::Bars).is_err());
    }
}
