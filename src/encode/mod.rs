//! One seam for every encoder: raw frames in, encoded frames out.
//!
//! Every implementation (openh264, libvpx VP8, the Pi's V4L2 memory-to-memory
//! H.264) implements [`VideoEncoder`]; [`Encoder`] wraps one and puts the
//! keyframe throttle in front of it, so a PLI storm costs one keyframe
//! whatever the encoder. The SDP parameters a viewer is answered with come
//! from what the encoder really writes (for H.264, its own SPS), learned by
//! [`Encoder::probe`] before any viewer is answered.
//!
//! Which encoders run, and when, is `pool/` (threads) driven by
//! `demand.rs` (sans-IO: first viewer of a codec starts its encoder, the
//! last one leaving stops it after a grace period).

pub mod demand;
pub mod jpeg;
pub mod keyframe;
pub mod level;
pub mod openh264;
pub mod passthrough;
pub mod pool;
pub mod v4l2m2m;
pub mod vp8;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::frame::{EncodedFrame, RawFrame, VideoCodec};
use keyframe::KeyframeThrottle;

/// No two forced keyframes closer than this.
const KEYFRAME_MIN_INTERVAL: Duration = Duration::from_millis(500);
/// A periodic keyframe as a safety net for viewers whose PLIs get lost: one
/// a minute (joins and PLIs bring their own, throttled).
pub const PERIODIC_KEYFRAME_SECONDS: u32 = 60;
/// Frames a probe may take before a keyframe must have come out (hardware
/// encoders hold a frame or two).
const PROBE_FRAMES: usize = 8;
/// How long a probe then still waits for a hardware encoder's first
/// picture (it sets itself up on its first frame), looking this often.
const PROBE_WAIT: Duration = Duration::from_secs(1);
const PROBE_POLL: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderSettings {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub bitrate_kbps: u32,
    /// Software encoder worker threads (the board profile's choice).
    pub threads: u16,
    /// The largest slice (NAL unit) an encoder that can cut its pictures
    /// should make, so each slice fits one RTP packet under `--mtu`
    /// ([`slice_bytes_for`]). A larger NAL still goes out, split into
    /// fragmentation units.
    pub slice_bytes: u32,
}

/// What an RTP packet carries besides its payload: the 12-byte header, our
/// header extensions (transport-wide sequence, capture time, playout delay,
/// mid: up to about 40 bytes), SRTP's 10-byte tag and its block alignment.
const RTP_OVERHEAD: u32 = 100;

/// The slice size for a datagram size (`--mtu`).
pub const fn slice_bytes_for(mtu: u32) -> u32 {
    mtu.saturating_sub(RTP_OVERHEAD)
}

/// The slice size for the default MTU of 1150 bytes.
pub const DEFAULT_SLICE_BYTES: u32 = slice_bytes_for(crate::rtc::DEFAULT_MTU);

impl EncoderSettings {
    /// A bitrate that looks good for the size and rate when none is given:
    /// about 0.07 bits per pixel per frame (2 Mbit/s at 720p30).
    pub fn default_bitrate_kbps(width: u32, height: u32, fps: u32) -> u32 {
        let bps = width as f64 * height as f64 * fps as f64 * 0.07;
        ((bps / 1000.0) as u32).clamp(200, 8_000)
    }
}

/// `--encoder`: which H.264 encoder to use.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum H264Choice {
    /// The board profile's hardware encoder when it opens, else openh264.
    #[default]
    Auto,
    OpenH264,
    /// The V4L2 memory-to-memory encoder at this device (or the board's).
    V4l2M2m(Option<PathBuf>),
}

impl std::str::FromStr for H264Choice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(H264Choice::Auto),
            "openh264" => Ok(H264Choice::OpenH264),
            "v4l2m2m" => Ok(H264Choice::V4l2M2m(None)),
            _ => match s.strip_prefix("v4l2m2m:") {
                Some(p) if p.starts_with('/') => Ok(H264Choice::V4l2M2m(Some(p.into()))),
                _ => Err(format!(
                    "unknown encoder '{s}': expected auto, openh264, v4l2m2m or v4l2m2m:/dev/videoN"
                )),
            },
        }
    }
}

impl std::fmt::Display for H264Choice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            H264Choice::Auto => f.write_str("auto"),
            H264Choice::OpenH264 => f.write_str("openh264"),
            H264Choice::V4l2M2m(None) => f.write_str("v4l2m2m"),
            H264Choice::V4l2M2m(Some(p)) => write!(f, "v4l2m2m:{}", p.display()),
        }
    }
}

/// What a viewer's SDP answer says about the stream an encoder produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdpParams {
    /// Constrained baseline, packetization-mode 1, this profile-level-id
    /// (read from the encoder's own SPS).
    H264 {
        profile_level_id: u32,
    },
    Vp8,
}

impl std::fmt::Display for SdpParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SdpParams::H264 { profile_level_id } => {
                write!(f, "H264 profile-level-id {profile_level_id:06x}")
            }
            SdpParams::Vp8 => f.write_str("VP8"),
        }
    }
}

impl SdpParams {
    pub fn codec(&self) -> VideoCodec {
        match self {
            SdpParams::H264 { .. } => VideoCodec::H264,
            SdpParams::Vp8 => VideoCodec::Vp8,
        }
    }
}

#[derive(Debug, Error)]
pub enum EncodeError {
    #[error("H.264 cannot carry {0}x{1} at {2} fps (above level 5.2)")]
    NoLevel(u32, u32, u32),
    #[error("openh264: {0}")]
    OpenH264(#[from] ::openh264::Error),
    #[error(transparent)]
    Vpx(#[from] vp8::VpxError),
    #[error(transparent)]
    V4l2M2m(#[from] v4l2m2m::M2mError),
    #[error("frame is {got_w}x{got_h}, encoder was set up for {want_w}x{want_h}")]
    SizeChanged {
        got_w: usize,
        got_h: usize,
        want_w: u32,
        want_h: u32,
    },
    #[error(
        "the encoder writes H.264 profile {0} (constraint flags {1:#04x}, level {2}), \
         not constrained baseline"
    )]
    NotConstrainedBaseline(u8, u8, u8),
    #[error("the encoder gave no keyframe with an SPS in its first {0} frames")]
    NoKeyframe(usize),
    #[error("H.264 passthrough encodes nothing: the camera does")]
    Passthrough,
}

/// What every encoder implementation does. Implementations hold no clock and
/// no throttle: [`Encoder`] decides when a keyframe is due.
pub trait VideoEncoder: Send {
    fn codec(&self) -> VideoCodec;
    /// For `/api/status` and logs: `openh264`, `libvpx`, `v4l2m2m /dev/video11`.
    fn implementation(&self) -> String;
    fn settings(&self) -> EncoderSettings;
    /// Encodes one I420 frame; `keyframe` forces a keyframe (an IDR with
    /// SPS and PPS for H.264). `None`: no output for this frame (a hardware
    /// encoder still holding it). The output's capture time and stamp are
    /// those of the frame it came from; `seq` is filled in by [`Encoder`].
    fn encode(
        &mut self,
        frame: &RawFrame,
        keyframe: bool,
    ) -> Result<Option<EncodedFrame>, EncodeError>;
    /// A picture that came out after the `encode` of its frame returned:
    /// a hardware encoder with several frames in flight hands back late
    /// ones here, in capture order. Callers take them until `None`, after
    /// each `encode` and when no frame came for a while. Encoders that
    /// answer each frame at once have none.
    fn poll_output(&mut self) -> Result<Option<EncodedFrame>, EncodeError> {
        Ok(None)
    }
    /// A new target, in effect from the next frame, without a keyframe.
    fn set_bitrate(&mut self, kbps: u32) -> Result<(), EncodeError>;
}

/// Rejects frames of another size than the encoder was set up for.
pub fn check_size(settings: &EncoderSettings, frame: &RawFrame) -> Result<(), EncodeError> {
    if frame.width != settings.width as usize || frame.height != settings.height as usize {
        return Err(EncodeError::SizeChanged {
            got_w: frame.width,
            got_h: frame.height,
            want_w: settings.width,
            want_h: settings.height,
        });
    }
    Ok(())
}

/// One running encoder with the keyframe throttle in front of it.
pub struct Encoder {
    inner: Box<dyn VideoEncoder>,
    throttle: KeyframeThrottle,
    seq: u64,
    bitrate_kbps: u32,
}

impl Encoder {
    pub fn new(inner: Box<dyn VideoEncoder>) -> Self {
        let bitrate_kbps = inner.settings().bitrate_kbps;
        Encoder {
            inner,
            throttle: KeyframeThrottle::new(KEYFRAME_MIN_INTERVAL),
            seq: 0,
            bitrate_kbps,
        }
    }

    pub fn codec(&self) -> VideoCodec {
        self.inner.codec()
    }

    pub fn implementation(&self) -> String {
        self.inner.implementation()
    }

    pub fn settings(&self) -> EncoderSettings {
        EncoderSettings {
            bitrate_kbps: self.bitrate_kbps,
            ..self.inner.settings()
        }
    }

    /// A viewer joined or reported loss: a later frame will be a keyframe,
    /// at most one per throttle window.
    pub fn request_keyframe(&mut self) {
        self.throttle.request();
    }

    pub fn set_bitrate(&mut self, kbps: u32) -> Result<(), EncodeError> {
        if kbps != self.bitrate_kbps {
            self.inner.set_bitrate(kbps)?;
            self.bitrate_kbps = kbps;
        }
        Ok(())
    }

    /// Encodes one frame; its capture time is the throttle's clock, so no
    /// encoder holds a clock of its own.
    ///
    /// The first frame out is a keyframe whatever the implementation, and it
    /// does not count for the throttle: an encoder starts with its first
    /// viewer's offer, so that keyframe usually leaves before the viewer is
    /// connected, and the keyframe the viewer asks for on connecting must not
    /// wait out a throttle window for it.
    pub fn encode(&mut self, frame: &RawFrame) -> Result<Option<EncodedFrame>, EncodeError> {
        let force = self.seq == 0 || self.throttle.poll(frame.captured);
        let out = self.inner.encode(frame, force)?;
        Ok(out.map(|out| self.number(out)))
    }

    /// A picture that came out after its frame's `encode` returned (see
    /// [`VideoEncoder::poll_output`]): take them until `None`.
    pub fn poll_output(&mut self) -> Result<Option<EncodedFrame>, EncodeError> {
        let out = self.inner.poll_output()?;
        Ok(out.map(|out| self.number(out)))
    }

    /// Numbers a picture on its way out; a keyframe after the first counts
    /// for the throttle, at its own capture time.
    fn number(&mut self, mut out: EncodedFrame) -> EncodedFrame {
        if out.keyframe && self.seq > 0 {
            self.throttle.idr_sent(out.captured);
        }
        self.seq += 1;
        out.seq = self.seq;
        out
    }

    /// Encodes black frames until a keyframe comes out and returns the SDP
    /// parameters of what this encoder really writes. The next real frame
    /// is a keyframe again (a probe frame is never sent). Call it before the
    /// first `encode`.
    pub fn probe(&mut self) -> Result<SdpParams, EncodeError> {
        let s = self.inner.settings();
        let mut black = RawFrame::black(s.width as usize, s.height as usize);
        let t0 = black.captured;
        for i in 0..PROBE_FRAMES {
            black.captured = t0 + i as u32 * Duration::from_millis(1);
            let first = self.inner.encode(&black, i == 0)?;
            if let Some(sdp) = self.probe_pictures(first)? {
                return Ok(sdp);
            }
        }
        // A hardware encoder's first picture may come late.
        let until = Instant::now() + PROBE_WAIT;
        while Instant::now() < until {
            std::thread::sleep(PROBE_POLL);
            if let Some(sdp) = self.probe_pictures(None)? {
                return Ok(sdp);
            }
        }
        Err(EncodeError::NoKeyframe(PROBE_FRAMES))
    }

    /// The SDP parameters of the first keyframe among `first` and the
    /// pictures that came out late.
    fn probe_pictures(
        &mut self,
        first: Option<EncodedFrame>,
    ) -> Result<Option<SdpParams>, EncodeError> {
        let codec = self.inner.codec();
        if let Some(sdp) = first.map(|p| sdp_of(codec, &p)).transpose()?.flatten() {
            return Ok(Some(sdp));
        }
        while let Some(p) = self.inner.poll_output()? {
            if let Some(sdp) = sdp_of(codec, &p)? {
                return Ok(Some(sdp));
            }
        }
        Ok(None)
    }
}

/// What a keyframe says for the SDP; `None` for any other picture (and for
/// an H.264 keyframe without an SPS).
fn sdp_of(codec: VideoCodec, out: &EncodedFrame) -> Result<Option<SdpParams>, EncodeError> {
    if !out.keyframe {
        return Ok(None);
    }
    match codec {
        VideoCodec::Vp8 => Ok(Some(SdpParams::Vp8)),
        VideoCodec::H264 => {
            let Some(sps) = level::sps_profile_level(&out.data) else {
                return Ok(None);
            };
            let profile_level_id = level::sps_profile_level_id(sps)
                .ok_or(EncodeError::NotConstrainedBaseline(sps.0, sps.1, sps.2))?;
            Ok(Some(SdpParams::H264 { profile_level_id }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An encoder that keyframes exactly when told to.
    struct Obedient(EncoderSettings);

    impl VideoEncoder for Obedient {
        fn codec(&self) -> VideoCodec {
            VideoCodec::Vp8
        }
        fn implementation(&self) -> String {
            "obedient".into()
        }
        fn settings(&self) -> EncoderSettings {
            self.0
        }
        fn encode(&mut self, f: &RawFrame, key: bool) -> Result<Option<EncodedFrame>, EncodeError> {
            Ok(Some(EncodedFrame::of(
                f,
                VideoCodec::Vp8,
                &[key as u8],
                key,
            )))
        }
        fn set_bitrate(&mut self, _: u32) -> Result<(), EncodeError> {
            Ok(())
        }
    }

    #[test]
    fn the_start_keyframe_does_not_hold_back_the_first_viewers_ask() {
        let s = EncoderSettings {
            width: 64,
            height: 64,
            fps: 30,
            bitrate_kbps: 100,
            threads: 1,
            slice_bytes: crate::encode::DEFAULT_SLICE_BYTES,
        };
        let mut enc = Encoder::new(Box::new(Obedient(s)));
        let t0 = Instant::now();
        let mut frame = RawFrame::black(64, 64);
        let mut at = |enc: &mut Encoder, ms: u64| {
            frame.captured = t0 + Duration::from_millis(ms);
            enc.encode(&frame).unwrap().unwrap().keyframe
        };
        assert!(at(&mut enc, 0), "the first frame is a keyframe");
        assert!(!at(&mut enc, 33));
        // The viewer connects 100 ms later and asks: granted at once.
        enc.request_keyframe();
        assert!(at(&mut enc, 100));
        // Its neighbour asks right after: that one waits out the window.
        enc.request_keyframe();
        assert!(!at(&mut enc, 133));
        assert!(at(&mut enc, 600));
    }

    #[test]
    fn parses_encoder_choices() {
        assert_eq!("auto".parse(), Ok(H264Choice::Auto));
        assert_eq!("openh264".parse(), Ok(H264Choice::OpenH264));
        assert_eq!("v4l2m2m".parse(), Ok(H264Choice::V4l2M2m(None)));
        assert_eq!(
            "v4l2m2m:/dev/video11".parse(),
            Ok(H264Choice::V4l2M2m(Some("/dev/video11".into())))
        );
        assert!("x264".parse::<H264Choice>().is_err());
        assert!("v4l2m2m:video11".parse::<H264Choice>().is_err());
        assert_eq!(
            H264Choice::V4l2M2m(Some("/dev/video11".into())).to_string(),
            "v4l2m2m:/dev/video11"
        );
    }
}
