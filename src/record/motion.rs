//! Motion, sans-IO: small luma pictures and their times go in, motion
//! started / ended events come out. No clocks, no threads.
//!
//! A slowly adapting background, a per-pixel threshold on the difference
//! after the picture's mean brightness is taken out (so lights switched on
//! or auto-exposure moving every pixel alike is not motion), a minimum
//! changed area, and zones to watch or ignore. A picture that differs
//! almost everywhere (a scene cut, the camera-lost slate, a camera
//! bumped) is not motion either: the background starts again from it.
//!
//! The pictures are about 128 pixels wide ([`small_luma`]), made from
//! frames capture already delivers: never a second capture or decode.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The width [`small_luma`] aims at.
pub const SMALL_WIDTH: usize = 128;

#[derive(Debug, Clone, PartialEq)]
pub struct MotionConfig {
    /// A pixel has changed when it differs from the background by more
    /// than this (0-255 luma, after the mean brightness is taken out).
    pub threshold: u8,
    /// Motion needs at least this fraction of the watched pixels changed.
    pub min_area: f32,
    /// More than this fraction changed at once is a global change (a cut,
    /// the slate, a bump), never motion.
    pub global: f32,
    /// How fast the background follows the picture (per picture, 0..1).
    pub adapt: f32,
    /// Pictures in a row with motion before an event starts (one is noise).
    pub confirm: u32,
    /// Quiet this long ends an event.
    pub quiet: Duration,
    pub zones: Vec<Zone>,
}

impl Default for MotionConfig {
    fn default() -> Self {
        MotionConfig {
            threshold: 24,
            min_area: 0.004,
            global: 0.4,
            adapt: 0.05,
            confirm: 2,
            quiet: Duration::from_secs(3),
            zones: Vec::new(),
        }
    }
}

/// A rectangle of the picture, in fractions of its size (0..1), so zones
/// survive a change of resolution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Zone {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
    pub kind: ZoneKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneKind {
    /// Only these areas count (when any watch zone is set).
    Watch,
    /// Never counts (a tree in the wind, a busy road).
    Ignore,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MotionEvent {
    Started {
        at: Instant,
        /// The changed fraction of the watched area.
        area: f32,
    },
    Ended {
        at: Instant,
        /// From its start to the last picture with motion.
        lasted: Duration,
    },
}

enum State {
    Quiet { streak: u32 },
    Moving { since: Instant, last: Instant },
}

pub struct MotionDetector {
    config: MotionConfig,
    /// The background, 8.8 fixed point, and its size.
    background: Vec<u16>,
    size: (usize, usize),
    /// Which pixels count (zones applied), for this size.
    watched: Vec<bool>,
    state: State,
    events: VecDeque<MotionEvent>,
}

impl MotionDetector {
    pub fn new(config: MotionConfig) -> Self {
        MotionDetector {
            config,
            background: Vec::new(),
            size: (0, 0),
            watched: Vec::new(),
            state: State::Quiet { streak: 0 },
            events: VecDeque::new(),
        }
    }

    /// One small luma picture (`width` x `height`, no padding) taken at `now`.
    pub fn feed(&mut self, now: Instant, luma: &[u8], width: usize, height: usize) {
        if width == 0 || height == 0 || luma.len() < width * height {
            return;
        }
        if self.size != (width, height) {
            self.restart(luma, width, height);
            return;
        }
        let changed = self.changed_fraction(luma);
        match changed {
            Some(f) if f > self.config.global => self.restart(luma, width, height),
            Some(f) => {
                self.judge(now, f);
                self.adapt(luma);
            }
            None => self.adapt(luma),
        }
    }

    pub fn poll_event(&mut self) -> Option<MotionEvent> {
        self.events.pop_front()
    }

    /// New zones, from the next picture on (the background is kept).
    pub fn set_zones(&mut self, zones: Vec<Zone>) {
        self.config.zones = zones;
        if self.size.0 > 0 {
            self.watched = watched_pixels(&self.config.zones, self.size.0, self.size.1);
        }
    }

    pub fn moving(&self) -> bool {
        matches!(self.state, State::Moving { .. })
    }

    /// The changed fraction of the watched pixels, or None when nothing is
    /// watched.
    fn changed_fraction(&self, luma: &[u8]) -> Option<f32> {
        let n = luma.len().min(self.background.len());
        let mean = |v: &mut dyn Iterator<Item = u32>| {
            let (sum, count) = v.fold((0u64, 0u64), |(s, c), x| (s + x as u64, c + 1));
            (sum / count.max(1)) as i32
        };
        let pic_mean = mean(&mut luma[..n].iter().map(|&p| u32::from(p) << 8));
        let bg_mean = mean(&mut self.background[..n].iter().map(|&b| u32::from(b)));
        let shift = pic_mean - bg_mean;
        let threshold = i32::from(self.config.threshold) << 8;
        let (mut watched, mut changed) = (0u32, 0u32);
        let pixels = luma.iter().zip(&self.background).zip(&self.watched);
        for ((&p, &b), _) in pixels.filter(|(_, w)| **w) {
            watched += 1;
            let d = (i32::from(p) << 8) - i32::from(b) - shift;
            changed += u32::from(d.abs() > threshold);
        }
        (watched > 0).then(|| changed as f32 / watched as f32)
    }

    fn judge(&mut self, now: Instant, changed: f32) {
        let motion = changed >= self.config.min_area;
        match &mut self.state {
            State::Quiet { streak } if motion => {
                *streak += 1;
                if *streak >= self.config.confirm {
                    self.state = State::Moving {
                        since: now,
                        last: now,
                    };
                    self.events.push_back(MotionEvent::Started {
                        at: now,
                        area: changed,
                    });
                }
            }
            State::Quiet { streak } => *streak = 0,
            State::Moving { last, .. } if motion => *last = now,
            State::Moving { since, last } => {
                if now.saturating_duration_since(*last) >= self.config.quiet {
                    let lasted = last.saturating_duration_since(*since);
                    self.events
                        .push_back(MotionEvent::Ended { at: now, lasted });
                    self.state = State::Quiet { streak: 0 };
                }
            }
        }
    }

    fn adapt(&mut self, luma: &[u8]) {
        let rate = (self.config.adapt.clamp(0.0, 1.0) * 256.0) as i32;
        for (b, &p) in self.background.iter_mut().zip(luma) {
            let target = i32::from(p) << 8;
            let cur = i32::from(*b);
            *b = (cur + (target - cur) * rate / 256) as u16;
        }
    }

    /// The background starts again from this picture (first picture, a new
    /// size, or a global change). An event under way goes on: its end comes
    /// from quiet as ever.
    fn restart(&mut self, luma: &[u8], width: usize, height: usize) {
        self.size = (width, height);
        self.background = luma[..width * height]
            .iter()
            .map(|&p| u16::from(p) << 8)
            .collect();
        self.watched = watched_pixels(&self.config.zones, width, height);
        if let State::Quiet { streak } = &mut self.state {
            *streak = 0;
        }
    }
}

/// Which pixels count: inside a watch zone (or anywhere, with none), and
/// outside every ignore zone.
fn watched_pixels(zones: &[Zone], width: usize, height: usize) -> Vec<bool> {
    let inside = |z: &Zone, x: usize, y: usize| {
        let (fx, fy) = (
            (x as f32 + 0.5) / width as f32,
            (y as f32 + 0.5) / height as f32,
        );
        fx >= z.x && fx < z.x + z.w && fy >= z.y && fy < z.y + z.h
    };
    let any_watch = zones.iter().any(|z| z.kind == ZoneKind::Watch);
    (0..width * height)
        .map(|i| {
            let (x, y) = (i % width, i / width);
            let watched = !any_watch
                || zones
                    .iter()
                    .any(|z| z.kind == ZoneKind::Watch && inside(z, x, y));
            watched
                && !zones
                    .iter()
                    .any(|z| z.kind == ZoneKind::Ignore && inside(z, x, y))
        })
        .collect()
}

/// A luma plane (`stride` bytes a row) shrunk by a box filter to about
/// [`SMALL_WIDTH`] pixels wide, aspect kept: (pixels, width, height).
pub fn small_luma(y: &[u8], stride: usize, width: usize, height: usize) -> (Vec<u8>, usize, usize) {
    let step = width.div_ceil(SMALL_WIDTH).max(1);
    let (w, h) = (width / step, height / step);
    let mut out = Vec::with_capacity(w * h);
    for by in 0..h {
        for bx in 0..w {
            let mut sum = 0u32;
            for dy in 0..step {
                let row = (by * step + dy) * stride + bx * step;
                sum += y[row..row + step]
                    .iter()
                    .map(|&p| u32::from(p))
                    .sum::<u32>();
            }
            out.push((sum / (step * step) as u32) as u8);
        }
    }
    (out, w, h)
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: usize = 128;
    const H: usize = 72;

    /// A textured scene (so a brightness step is not a flat field), with an
    /// optional dark square at (x, y), sensor noise of +-`noise`, and a
    /// brightness offset.
    fn scene(square: Option<(usize, usize)>, noise: u8, offset: i32, seed: &mut u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(W * H);
        for y in 0..H {
            for x in 0..W {
                let mut v = 90 + ((x * 7 + y * 13) % 40) as i32 + offset;
                if let Some((sx, sy)) = square
                    && (sx..sx + 12).contains(&x)
                    && (sy..sy + 12).contains(&y)
                {
                    v = 20 + offset;
                }
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                let n = if noise == 0 {
                    0
                } else {
                    (*seed % (2 * noise as u64 + 1)) as i32 - noise as i32
                };
                out.push((v + n).clamp(0, 255) as u8);
            }
        }
        out
    }

    fn run(d: &mut MotionDetector, frames: impl Iterator<Item = Vec<u8>>) -> Vec<MotionEvent> {
        let t0 = Instant::now();
        let mut events = Vec::new();
        for (i, f) in frames.enumerate() {
            d.feed(t0 + Duration::from_millis(100 * i as u64), &f, W, H);
            while let Some(e) = d.poll_event() {
                events.push(e);
            }
        }
        events
    }

    #[test]
    fn a_moving_object_starts_an_event_and_quiet_ends_it() {
        let mut seed = 1;
        let mut d = MotionDetector::new(MotionConfig::default());
        let mut frames: Vec<Vec<u8>> = (0..10).map(|_| scene(None, 3, 0, &mut seed)).collect();
        frames.extend((0..20).map(|i| scene(Some((10 + 4 * i, 30)), 3, 0, &mut seed)));
        frames.extend((0..50).map(|_| scene(None, 3, 0, &mut seed)));
        let events = run(&mut d, frames.into_iter());
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(matches!(events[0], MotionEvent::Started { area, .. } if area > 0.01));
        match events[1] {
            MotionEvent::Ended { lasted, .. } => {
                assert!(lasted >= Duration::from_millis(1500), "{lasted:?}")
            }
            ref e => panic!("{e:?}"),
        }
        assert!(!d.moving());
    }

    #[test]
    fn sensor_noise_is_not_motion() {
        let mut seed = 7;
        let mut d = MotionDetector::new(MotionConfig::default());
        let events = run(&mut d, (0..200).map(|_| scene(None, 8, 0, &mut seed)));
        assert!(events.is_empty(), "{events:?}");
    }

    #[test]
    fn lights_switched_on_are_not_motion() {
        let mut seed = 3;
        let mut d = MotionDetector::new(MotionConfig::default());
        let frames = (0..60).map(|i| scene(None, 3, if i < 20 { 0 } else { 70 }, &mut seed));
        let events = run(&mut d, frames);
        assert!(events.is_empty(), "{events:?}");
    }

    #[test]
    fn a_cut_to_another_picture_is_not_motion() {
        // The camera-lost slate: a flat picture with text, nothing like the
        // scene: everything changes at once.
        let mut seed = 5;
        let mut d = MotionDetector::new(MotionConfig::default());
        let slate: Vec<u8> = (0..W * H)
            .map(|i| if (i / W) % 9 == 4 { 230 } else { 16 })
            .collect();
        let frames = (0..60).map(|i| {
            if (20..40).contains(&i) {
                slate.clone()
            } else {
                scene(None, 3, 0, &mut seed)
            }
        });
        let events = run(&mut d, frames);
        assert!(events.is_empty(), "{events:?}");
    }

    #[test]
    fn zones_are_honoured() {
        let moving = |seed: &mut u64| -> Vec<Vec<u8>> {
            let mut f: Vec<Vec<u8>> = (0..5).map(|_| scene(None, 3, 0, seed)).collect();
            // The square moves in the left third only.
            f.extend((0..15).map(|i| scene(Some((4 + 2 * i, 30)), 3, 0, seed)));
            f
        };
        let left = Zone {
            x: 0.0,
            y: 0.0,
            w: 0.34,
            h: 1.0,
            kind: ZoneKind::Ignore,
        };
        let mut seed = 9;
        let mut ignoring = MotionDetector::new(MotionConfig {
            zones: vec![left],
            ..Default::default()
        });
        assert!(run(&mut ignoring, moving(&mut seed).into_iter()).is_empty());
        let mut watching_right = MotionDetector::new(MotionConfig {
            zones: vec![Zone {
                x: 0.5,
                kind: ZoneKind::Watch,
                ..left
            }],
            ..Default::default()
        });
        assert!(run(&mut watching_right, moving(&mut seed).into_iter()).is_empty());
        let mut watching_left = MotionDetector::new(MotionConfig {
            zones: vec![Zone {
                kind: ZoneKind::Watch,
                ..left
            }],
            ..Default::default()
        });
        let events = run(&mut watching_left, moving(&mut seed).into_iter());
        assert!(
            matches!(events.first(), Some(MotionEvent::Started { .. })),
            "{events:?}"
        );
    }

    #[test]
    fn small_luma_keeps_the_aspect_and_averages() {
        let (w, h) = (1280, 720);
        let y: Vec<u8> = (0..w * h)
            .map(|i| if (i % w) < w / 2 { 0 } else { 200 })
            .collect();
        let (small, sw, sh) = small_luma(&y, w, w, h);
        assert_eq!((sw, sh), (128, 72));
        assert_eq!(small.len(), 128 * 72);
        assert_eq!(small[0], 0);
        assert_eq!(small[127], 200);
    }

    /// The still test scene (`--source test:still`) at 10 pictures a
    /// second: its noise is not motion, its object's visit is, and the
    /// event ends after it left.
    #[test]
    fn the_still_test_scene_moves_only_while_its_object_visits() {
        use crate::capture::scene::{Scene, VISIT_FRAMES, VISIT_FROM};
        use crate::frame::RawFrame;
        let scene = Scene::new(640, 360).still();
        let mut frame = RawFrame::black(640, 360);
        let mut d = MotionDetector::new(MotionConfig::default());
        let t0 = Instant::now();
        let mut events = Vec::new();
        for n in (0..VISIT_FROM + VISIT_FRAMES + 150).step_by(3) {
            scene.draw(&mut frame, n, 1_796_571_012_345 + n * 33);
            let (mut luma, w, h) = small_luma(frame.planes().0, 640, 640, 360);
            crate::record::watch::hide_stripe(frame.planes().0, &frame, &mut luma, w, h);
            d.feed(t0 + Duration::from_millis(n * 1000 / 30), &luma, w, h);
            while let Some(e) = d.poll_event() {
                events.push((n, e));
            }
        }
        assert_eq!(events.len(), 2, "{events:?}");
        let (start, end) = (events[0].0, events[1].0);
        assert!(matches!(events[0].1, MotionEvent::Started { .. }));
        assert!(
            (VISIT_FROM..VISIT_FROM + 10).contains(&start),
            "started at frame {start}"
        );
        let left = VISIT_FROM + VISIT_FRAMES;
        assert!(
            (left + 80..left + 110).contains(&end),
            "ended at frame {end}, 3 s after {left}"
        );
    }

    /// The camera lost (its slate, with the dot that moves so viewers see
    /// the stream is alive) and back: neither the cuts nor the dot are
    /// motion.
    #[test]
    fn the_camera_lost_slate_and_the_camera_back_are_not_motion() {
        use crate::capture::scene::Scene;
        use crate::capture::slate::Slate;
        use crate::frame::RawFrame;
        let scene = Scene::new(1280, 720).still();
        let mut slate = Slate::new(1280, 720);
        let mut frame = RawFrame::black(1280, 720);
        let mut d = MotionDetector::new(MotionConfig::default());
        let t0 = Instant::now();
        // 5 s of the empty scene, 10 s of the slate at 5 fps, 5 s of the scene.
        for i in 0..150u64 {
            let (n, at) = match i {
                0..50 => (i * 3, i * 100),
                50..100 => (0, 5_000 + (i - 50) * 200),
                _ => (i * 3, 15_000 + (i - 100) * 100),
            };
            if (50..100).contains(&i) {
                slate.next_frame(&mut frame);
            } else {
                scene.draw(&mut frame, n % 150, 0);
            }
            let (luma, w, h) = small_luma(frame.planes().0, 1280, 1280, 720);
            d.feed(t0 + Duration::from_millis(at), &luma, w, h);
            assert_eq!(d.poll_event(), None, "picture {i}");
        }
    }
}
