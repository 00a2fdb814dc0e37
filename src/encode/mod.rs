//! H.264 once for everyone: openh264, constrained baseline, realtime.
//!
//! Settings favour latency over everything: no B-frames (baseline has
//! none), one slice per ~1,200 bytes so each NAL fits one RTP packet, frame
//! skipping under bitrate pressure rather than queueing, and IDRs only when
//! asked (throttled), plus a slow periodic one as a safety net.

pub mod keyframe;
pub mod level;

use std::sync::Arc;
use std::time::Duration;

use openh264::OpenH264API;
use openh264::encoder::{
    BitRate, Complexity, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, Profile,
    RateControlMode, UsageType,
};
use openh264::formats::YUVSource;
use thiserror::Error;

use crate::frame::{EncodedFrame, RawFrame};
use keyframe::KeyframeThrottle;

/// The largest NAL we ask for: fits one RTP packet after SRTP and headers.
const MAX_SLICE_BYTES: u32 = 1_100;
/// No two forced IDRs closer than this.
const KEYFRAME_MIN_INTERVAL: Duration = Duration::from_millis(500);
/// A periodic IDR as a safety net for viewers whose PLIs get lost.
const PERIODIC_IDR_SECONDS: u32 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderSettings {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub bitrate_kbps: u32,
    /// openh264 worker threads (the board profile's choice).
    pub threads: u16,
}

impl EncoderSettings {
    /// A bitrate that looks good for the size and rate when none is given:
    /// about 0.07 bits per pixel per frame (2 Mbit/s at 720p30).
    pub fn default_bitrate_kbps(width: u32, height: u32, fps: u32) -> u32 {
        let bps = width as f64 * height as f64 * fps as f64 * 0.07;
        ((bps / 1000.0) as u32).clamp(200, 8_000)
    }
}

#[derive(Debug, Error)]
pub enum EncodeError {
    #[error("H.264 cannot carry {0}x{1} at {2} fps (above level 5.2)")]
    NoLevel(u32, u32, u32),
    #[error("openh264: {0}")]
    Codec(#[from] openh264::Error),
    #[error("frame is {got_w}x{got_h}, encoder was set up for {want_w}x{want_h}")]
    SizeChanged {
        got_w: usize,
        got_h: usize,
        want_w: u32,
        want_h: u32,
    },
}

pub struct H264Encoder {
    encoder: Encoder,
    settings: EncoderSettings,
    level_idc: u8,
    throttle: KeyframeThrottle,
    seq: u64,
    sps_checked: bool,
    out: Vec<u8>,
}

impl H264Encoder {
    pub fn new(settings: EncoderSettings) -> Result<Self, EncodeError> {
        let EncoderSettings {
            width,
            height,
            fps,
            bitrate_kbps,
            threads,
        } = settings;
        let level_idc =
            level::level_idc(width, height, fps).ok_or(EncodeError::NoLevel(width, height, fps))?;
        let config = EncoderConfig::new()
            .bitrate(BitRate::from_bps(bitrate_kbps.saturating_mul(1000)))
            .max_frame_rate(FrameRate::from_hz(fps as f32))
            .rate_control_mode(RateControlMode::Bitrate)
            .skip_frames(true)
            .usage_type(UsageType::CameraVideoRealTime)
            .profile(Profile::Baseline)
            .level(level::openh264_level(level_idc))
            .complexity(Complexity::Medium)
            .max_slice_len(MAX_SLICE_BYTES)
            .intra_frame_period(IntraFramePeriod::from_num_frames(
                fps.max(1) * PERIODIC_IDR_SECONDS,
            ))
            .num_threads(threads.max(1))
            .background_detection(false)
            .scene_change_detect(false);
        let encoder = Encoder::with_api_config(OpenH264API::from_source(), config)?;
        Ok(H264Encoder {
            encoder,
            settings,
            level_idc,
            throttle: KeyframeThrottle::new(KEYFRAME_MIN_INTERVAL),
            seq: 0,
            sps_checked: false,
            out: Vec::with_capacity(256 * 1024),
        })
    }

    /// The `profile-level-id` every viewer's SDP must carry.
    pub fn profile_level_id(&self) -> u32 {
        level::profile_level_id(self.level_idc)
    }

    pub fn settings(&self) -> EncoderSettings {
        self.settings
    }

    /// A viewer joined or reported loss: the next frames will include an
    /// IDR, at most one per throttle window.
    pub fn request_keyframe(&mut self) {
        self.throttle.request();
    }

    /// Encodes one frame. `None` when the rate control skipped it: a skipped
    /// frame is never sent. The frame's capture time is the throttle's clock,
    /// so the encoder holds no clock of its own.
    pub fn encode(&mut self, frame: &RawFrame) -> Result<Option<EncodedFrame>, EncodeError> {
        if frame.width != self.settings.width as usize
            || frame.height != self.settings.height as usize
        {
            return Err(EncodeError::SizeChanged {
                got_w: frame.width,
                got_h: frame.height,
                want_w: self.settings.width,
                want_h: self.settings.height,
            });
        }
        let now = frame.captured;
        if self.throttle.poll(now) {
            self.encoder.force_intra_frame();
        }
        let stream = self.encoder.encode(&I420(frame))?;
        let keyframe = match stream.frame_type() {
            FrameType::Skip | FrameType::Invalid => return Ok(None),
            FrameType::IDR => true,
            _ => false,
        };
        self.out.clear();
        stream.write_vec(&mut self.out);
        if self.out.is_empty() {
            return Ok(None);
        }
        if keyframe {
            self.throttle.idr_sent(now);
            if !self.sps_checked {
                self.sps_checked = true;
                self.check_sps();
            }
        }
        self.seq += 1;
        Ok(Some(EncodedFrame {
            data: Arc::from(&self.out[..]),
            keyframe,
            width: frame.width,
            height: frame.height,
            captured: frame.captured,
            stamp_ms: frame.stamp_ms,
            seq: self.seq,
        }))
    }

    fn check_sps(&self) {
        match level::sps_profile_level(&self.out) {
            Some(sps) if level::sps_matches(sps, self.level_idc) => tracing::debug!(
                "encoder SPS {:02x}{:02x}{:02x} matches profile-level-id {:06x}",
                sps.0,
                sps.1,
                sps.2,
                self.profile_level_id()
            ),
            other => tracing::error!(
                "encoder SPS {other:02x?} does not match the advertised profile-level-id {:06x}: \
                 browsers may refuse the stream",
                self.profile_level_id()
            ),
        }
    }
}

/// Borrowed view of a RawFrame for openh264.
struct I420<'a>(&'a RawFrame);

impl YUVSource for I420<'_> {
    fn dimensions(&self) -> (usize, usize) {
        (self.0.width, self.0.height)
    }
    fn strides(&self) -> (usize, usize, usize) {
        (self.0.width, self.0.width / 2, self.0.width / 2)
    }
    fn y(&self) -> &[u8] {
        self.0.planes().0
    }
    fn u(&self) -> &[u8] {
        self.0.planes().1
    }
    fn v(&self) -> &[u8] {
        self.0.planes().2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::pattern::TestPattern;
    use crate::capture::stripe;
    use openh264::decoder::Decoder;

    fn settings(width: u32, height: u32) -> EncoderSettings {
        EncoderSettings {
            width,
            height,
            fps: 30,
            bitrate_kbps: 1500,
            threads: 1,
        }
    }

    #[test]
    fn first_frame_is_an_idr_whose_sps_matches_the_sdp() {
        let mut enc = H264Encoder::new(settings(1280, 720)).unwrap();
        assert_eq!(enc.profile_level_id(), 0x42e01f);
        let mut pattern = TestPattern::new(1280, 720, 1000).unwrap();
        let mut raw = RawFrame::black(2, 2);
        pattern.next_frame(&mut raw);
        let f = enc.encode(&raw).unwrap().expect("first frame encoded");
        assert!(f.keyframe);
        let sps = level::sps_profile_level(&f.data).expect("IDR carries an SPS");
        assert!(level::sps_matches(sps, 31), "SPS {sps:02x?}");
        assert!(
            level::nal_units(&f.data).all(|n| n.len() <= MAX_SLICE_BYTES as usize + 64),
            "slices fit a packet"
        );
    }

    #[test]
    fn keyframes_come_on_request_and_stripe_survives_the_round_trip() {
        let mut enc = H264Encoder::new(settings(640, 480)).unwrap();
        let mut dec = Decoder::new().unwrap();
        let mut pattern = TestPattern::new(640, 480, 1000).unwrap();
        let mut raw = RawFrame::black(2, 2);
        let mut keyframes = Vec::new();
        let mut read = 0;
        let t0 = std::time::Instant::now();
        for i in 0..40u32 {
            if i == 20 {
                enc.request_keyframe();
            }
            pattern.next_frame(&mut raw);
            // Simulated capture times, 30 fps: frame 20 is past the throttle window.
            raw.captured = t0 + i * Duration::from_millis(33);
            let Some(f) = enc.encode(&raw).unwrap() else {
                continue;
            };
            if f.keyframe {
                keyframes.push(i);
            }
            if let Some(yuv) = dec.decode(&f.data).unwrap() {
                let (w, h) = yuv.dimensions();
                assert_eq!((w, h), (640, 480));
                let d = stripe::decode_luma(yuv.y(), w, h, yuv.strides().0).expect("stripe");
                assert_eq!(d.stamp_ms, f.stamp_ms);
                read += 1;
            }
        }
        assert_eq!(keyframes.first(), Some(&0));
        assert!(
            keyframes.contains(&20),
            "requested IDR at frame 20: {keyframes:?}"
        );
        assert!(read >= 35, "decoded {read} frames");
    }

    #[test]
    fn a_frame_of_another_size_is_refused() {
        let mut enc = H264Encoder::new(settings(640, 480)).unwrap();
        let raw = RawFrame::black(320, 240);
        assert!(matches!(
            enc.encode(&raw),
            Err(EncodeError::SizeChanged { .. })
        ));
    }
}
