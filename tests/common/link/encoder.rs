//! What feeds the table: a stand-in encoder that writes frames of the size
//! its bitrate target asks, the way openh264 does, or the real one on the
//! camera-like scene.

use super::*;

/// What the stand-in encoder did.
pub struct FakeEncoder {
    pub initial_kbps: u32,
    pub target_kbps: u32,
    pub fps: u32,
    /// A keyframe's size: this many times a frame's share of the target,
    /// and at least `keyframe_floor` bytes.
    pub keyframe_ratio: f64,
    pub keyframe_floor: usize,
    /// At most one keyframe asked for in this long.
    pub keyframe_every: Duration,
    pub(super) seq: u64,
    pub(super) next_frame: Instant,
    pub(super) keyframe_due: bool,
    pub(super) last_key: Option<Instant>,
    pub(super) since_key: u64,
    /// (time, target) of every change the table asked for.
    pub changes: Vec<(Instant, u32)>,
}

impl FakeEncoder {
    /// Keyframes as openh264 makes them at 720p: 37.1 KB against 7.7 KB
    /// for the other frames at 1935 kbit/s (README, the recorder's
    /// measurement), about 4.8 frames; at low rates openh264 cannot raise
    /// an IDR's QP past its cap, so a floor (9 KB: a placeholder until
    /// `src/encode/openh264.rs` measures it); at most one each 500 ms
    /// (`encode::KEYFRAME_MIN_INTERVAL`).
    pub fn like_openh264(&mut self) {
        self.keyframe_ratio = 4.8;
        self.keyframe_floor = 9_000;
        self.keyframe_every = Duration::from_millis(500);
    }

    /// The next frame: the target's share of a second, split in NAL units
    /// of at most 1,100 bytes; a keyframe (`keyframe_ratio` times the
    /// size) when asked, at most once each `keyframe_every`; every other
    /// frame droppable.
    pub(super) fn next(&mut self, now: Instant) -> EncodedFrame {
        self.seq += 1;
        self.next_frame = now + Duration::from_secs(1) / self.fps;
        let throttled = self
            .last_key
            .is_some_and(|t| now.saturating_duration_since(t) < self.keyframe_every);
        let keyframe = self.keyframe_due && !throttled;
        if keyframe {
            self.keyframe_due = false;
            // As `Encoder::encode`: the first keyframe, made before any
            // viewer is connected, does not hold back the one a viewer asks
            // for on connecting.
            if self.seq > 1 {
                self.last_key = Some(now);
            }
        }
        self.since_key = if keyframe { 0 } else { self.since_key + 1 };
        let droppable = !self.since_key.is_multiple_of(2);
        let per_frame = (self.target_kbps as usize * 1000 / 8 / self.fps as usize).max(200);
        let size = if keyframe {
            ((per_frame as f64 * self.keyframe_ratio) as usize).max(self.keyframe_floor)
        } else {
            per_frame
        };
        let mut data = Vec::with_capacity(size + 64);
        if keyframe {
            data.extend_from_slice(&[0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1f, 0x8c]);
            data.extend_from_slice(&[0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80]);
        }
        let header = match (keyframe, droppable) {
            (true, _) => 0x65,
            (false, true) => 0x01,
            (false, false) => 0x41,
        };
        let mut left = size;
        while left > 0 {
            let n = left.min(1100);
            data.extend_from_slice(&[0, 0, 0, 1, header]);
            data.extend((0..n).map(|i| (i as u64 ^ self.seq) as u8 | 1));
            left -= n;
        }
        EncodedFrame {
            codec: VideoCodec::H264,
            data: data.into(),
            keyframe,
            droppable,
            width: 1280,
            height: 720,
            captured: now,
            stamp_ms: 0,
            seq: self.seq,
        }
    }
}

/// openh264 encoding the camera-like scene (`capture::scene`, what
/// `--source test` shows) at the stand-in's times, targets and keyframe
/// asks: the whole send path with real frames.
pub struct SceneSource {
    pub(super) scene: rtcam::capture::scene::Scene,
    pub(super) raw: rtcam::frame::RawFrame,
    pub(super) encoder: rtcam::encode::Encoder,
    pub(super) n: u64,
    pub(super) kbps: u32,
}

impl SceneSource {
    pub fn openh264(width: u32, height: u32, fps: u32, kbps: u32) -> SceneSource {
        let settings = rtcam::encode::EncoderSettings {
            width,
            height,
            fps,
            bitrate_kbps: kbps,
            threads: 1,
            slice_bytes: rtcam::encode::DEFAULT_SLICE_BYTES,
        };
        let inner = rtcam::encode::openh264::OpenH264::new(settings).expect("openh264");
        SceneSource {
            scene: rtcam::capture::scene::Scene::new(width as usize, height as usize),
            raw: rtcam::frame::RawFrame::black(2, 2),
            encoder: rtcam::encode::Encoder::new(Box::new(inner)),
            n: 0,
            kbps,
        }
    }

    /// The next picture encoded; `stand_in` (whose frame was just made and
    /// is thrown away) says the target and whether a keyframe was asked.
    pub(super) fn next(
        &mut self,
        stand_in: &mut FakeEncoder,
        now: Instant,
    ) -> Option<EncodedFrame> {
        if stand_in.target_kbps != self.kbps {
            self.kbps = stand_in.target_kbps;
            self.encoder.set_bitrate(self.kbps).expect("bitrate");
        }
        if stand_in.since_key == 0 {
            self.encoder.request_keyframe();
        }
        self.n += 1;
        self.scene.draw(&mut self.raw, self.n, self.n);
        self.raw.captured = now;
        self.encoder.encode(&self.raw).expect("encode")
    }
}
