//! Where pictures come from: a V4L2 camera (raw, MJPEG or its own H.264), a
//! CSI camera through `rpicam-vid`, or the synthetic test pattern; and the
//! supervision that brings a lost camera back (`supervise`, `run`).

pub mod annexb;
pub mod controls;
pub mod find;
pub mod mjpeg;
pub mod pattern;
pub mod range;
pub mod rpicam;
pub mod run;
pub mod scene;
pub mod slate;
pub mod stripe;
pub mod supervise;
pub mod uvc_h264;
pub mod v4l2;

use std::path::PathBuf;

use thiserror::Error;

use crate::frame::{CodedChunk, RawFrame};
use pattern::{Look, TestPattern};
use rpicam::RpicamSource;
pub use supervise::CameraId;
use v4l2::V4l2Source;

/// What the owner asked for with `--source`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SourceSpec {
    /// A CSI camera through rpicam-vid, else the first V4L2 capture device
    /// that works, else the test pattern.
    #[default]
    Auto,
    /// The camera-like scene.
    Test,
    /// Colour bars: cheap to draw and encode (emulated CPUs).
    /// The scene from a fixed camera: still but for sensor noise, and an
    /// object crossing it for 3 s of every 12 (from 6 s to 9 s): what
    /// motion detection is tested and measured on.
    TestStill,
    Bars,
    Device(PathBuf),
    /// CSI camera N through `rpicam-vid`.
    Rpicam(u32),
}

impl std::str::FromStr for SourceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(SourceSpec::Auto),
            "test" => Ok(SourceSpec::Test),
            "test:still" => Ok(SourceSpec::TestStill),
            "bars" => Ok(SourceSpec::Bars),
            "rpicam" => Ok(SourceSpec::Rpicam(0)),
            p if p.starts_with("rpicam:") => p["rpicam:".len()..]
                .parse()
                .map(SourceSpec::Rpicam)
                .map_err(|_| format!("bad CSI camera number in '{p}': expected rpicam:N")),
            p if p.starts_with('/') => Ok(SourceSpec::Device(PathBuf::from(p))),
            other => Err(format!(
                "unknown source '{other}': expected auto, test, bars, rpicam[:N] or a device path such as /dev/video0"
            )),
        }
    }
}

impl std::fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceSpec::Auto => f.write_str("auto"),
            SourceSpec::Test => f.write_str("test"),
            SourceSpec::TestStill => f.write_str("test:still"),
            SourceSpec::Bars => f.write_str("bars"),
            SourceSpec::Device(p) => write!(f, "{}", p.display()),
            SourceSpec::Rpicam(n) => write!(f, "rpicam:{n}"),
        }
    }
}

/// `--capture-format`: what to take from a V4L2 camera (or `rpicam-vid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptureFormat {
    /// Raw at the asked size and rate if the camera has it, else MJPEG,
    /// else H.264 passthrough.
    #[default]
    Auto,
    Raw,
    Mjpeg,
    /// Passthrough: the camera's own H.264 to the viewers, untouched.
    H264,
}

impl std::str::FromStr for CaptureFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(CaptureFormat::Auto),
            "raw" => Ok(CaptureFormat::Raw),
            "mjpeg" => Ok(CaptureFormat::Mjpeg),
            "h264" => Ok(CaptureFormat::H264),
            other => Err(format!(
                "unknown capture format '{other}': expected auto, raw, mjpeg or h264"
            )),
        }
    }
}

impl std::fmt::Display for CaptureFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CaptureFormat::Auto => "auto",
            CaptureFormat::Raw => "raw",
            CaptureFormat::Mjpeg => "mjpeg",
            CaptureFormat::H264 => "h264",
        })
    }
}

/// What the owner asked of the camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub format: CaptureFormat,
}

#[derive(Debug, Error)]
pub enum CaptureError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is not a video capture device with streaming I/O")]
    NotCapture(PathBuf),
    #[error("{0} is a {1} node of the Pi's camera system, not a camera")]
    NotACamera(PathBuf, String),
    #[error("{path} offers nothing rtcam can use for --capture-format {asked} (it offers: {})", offered.join(", "))]
    NoFormat {
        path: PathBuf,
        asked: CaptureFormat,
        offered: Vec<String>,
    },
    #[error("{0} is busy or cannot stream: {1}")]
    Busy(PathBuf, std::io::Error),
    #[error("{0} stopped delivering frames")]
    Stalled(PathBuf),
    #[error("reading {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("frame of {got} bytes is too short for {width}x{height}")]
    ShortBuffer {
        got: usize,
        width: usize,
        height: usize,
    },
    #[error("no camera found ({0})")]
    NoCamera(String),
    #[error("{0} is not connected")]
    Missing(String),
    #[error("the camera's H.264 cannot be passed through: {0}")]
    Passthrough(String),
    #[error(transparent)]
    Rpicam(#[from] rpicam::RpicamError),
    #[error("{0}")]
    Unsupported(String),
}

/// The negotiated capture, as reported to owners (`/api/status`) and in the
/// log: the one description of a source.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SourceInfo {
    /// `v4l2`, `rpicam`, `test-scene`, `test-bars`, or `none` (no camera yet).
    pub kind: &'static str,
    pub device: Option<String>,
    /// The driver's card name (`VIDIOC_QUERYCAP`), e.g. "vivid", or the
    /// CSI sensor.
    pub card: Option<String>,
    /// FourCC of the frames as captured (`YUYV`, `MJPG`, `H264`, ...).
    pub format: &'static str,
    pub width: usize,
    pub height: usize,
    pub fps: f64,
    /// Why this source and format were chosen.
    pub why: String,
    /// Whether the camera delivers full-range colour (converted to the
    /// limited range the encoders signal).
    pub full_range: bool,
    /// H.264 passthrough: the camera's own `profile-level-id`.
    pub passthrough: Option<String>,
    /// Live, lost (viewers see the "camera lost" slate) or starting.
    pub state: supervise::CameraState,
    /// What went wrong last, while the camera is lost.
    pub problem: Option<String>,
    /// Camera frames dropped because they were corrupt or truncated.
    pub corrupt_frames: u64,
    /// Its settings, with their current values.
    pub controls: Vec<controls::CameraControl>,
}

impl SourceInfo {
    /// A source that has not delivered yet: the size the stream runs at.
    pub fn none(width: usize, height: usize, fps: u32) -> Self {
        SourceInfo {
            kind: "none",
            device: None,
            card: None,
            format: "-",
            width,
            height,
            fps: fps as f64,
            why: String::new(),
            full_range: false,
            passthrough: None,
            state: supervise::CameraState::Starting,
            problem: None,
            corrupt_frames: 0,
            controls: Vec::new(),
        }
    }
}

impl std::fmt::Display for SourceInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (w, h, fps) = (self.width, self.height, self.fps);
        match (&self.device, &self.card) {
            (Some(device), Some(card)) => {
                let kind = if self.kind == "rpicam" {
                    "rpicam-vid"
                } else {
                    "V4L2"
                };
                write!(
                    f,
                    "{kind} {device} ({card}) {w}x{h} {} @ {fps:.1} fps",
                    self.format
                )
            }
            _ => write!(f, "{} {w}x{h} @ {fps:.0} fps", self.kind),
        }
    }
}

/// Applies each checked value of `batch` with `set`.
fn each(
    batch: &[(String, i64)],
    checked: Vec<Result<i64, controls::ControlError>>,
    mut set: impl FnMut(&str, i64) -> Result<(), controls::ControlError>,
) -> Vec<Result<(), controls::ControlError>> {
    batch
        .iter()
        .zip(checked)
        .map(|((id, _), c)| c.and_then(|v| set(id, v)))
        .collect()
}

/// What one read of a source gave.
#[derive(Debug)]
pub enum Delivery {
    /// A picture, written into the frame passed in.
    Picture,
    /// A piece of the camera's own H.264 (passthrough).
    Coded(CodedChunk),
    /// A frame the camera sent broken (counted, not shown).
    Dropped(String),
    /// A frame read and let go undecoded: no encoder wanted pictures.
    Unwatched,
}

/// An open source of frames.
pub enum Source {
    Pattern(TestPattern),
    V4l2(Box<V4l2Source>),
    Rpicam(Box<RpicamSource>),
}

impl Source {
    /// The test pattern `spec` names (`test` or `bars`).
    pub fn pattern(spec: &SourceSpec, want: &Want) -> Result<Self, CaptureError> {
        let look = match spec {
            SourceSpec::Bars => Look::Bars,
            SourceSpec::TestStill => Look::Still,
            _ => Look::Scene,
        };
        let (w, h) = (want.width as usize, want.height as usize);
        Ok(Source::Pattern(TestPattern::new(w, h, want.fps, look)?))
    }

    /// Opens what `spec` names as given; for `auto`, the first camera that
    /// works, else the test pattern (and the log says why).
    pub fn open(spec: &SourceSpec, want: &Want) -> Result<Self, CaptureError> {
        find::open(spec, &supervise::Target::AsGiven, want, None)
    }

    pub fn describe(&self) -> String {
        self.info().to_string()
    }

    pub fn size(&self) -> (usize, usize) {
        match self {
            Source::Pattern(p) => p.size(),
            Source::V4l2(v) => v.size(),
            Source::Rpicam(r) => r.size(),
        }
    }

    /// What the source delivers, as `/api/status` reports it: the owner (and
    /// the system test) can see which camera, format and rate were agreed.
    pub fn info(&self) -> SourceInfo {
        let mut info = match self {
            Source::Pattern(p) => p.info(),
            Source::V4l2(v) => v.info(),
            Source::Rpicam(r) => r.info(),
        };
        info.state = supervise::CameraState::Live;
        info
    }

    /// Who the camera is; `None` for the test pattern.
    pub fn identity(&self) -> Option<CameraId> {
        match self {
            Source::Pattern(_) => None,
            Source::V4l2(v) => Some(v.identity().clone()),
            Source::Rpicam(r) => Some(r.identity()),
        }
    }

    /// The camera's settings with their current values.
    pub fn controls(&self) -> Vec<controls::CameraControl> {
        match self {
            Source::Pattern(p) => p.look().controls(),
            Source::V4l2(v) => v.controls(),
            Source::Rpicam(r) => r.controls(),
        }
    }

    /// Applies several settings, each checked once against
    /// [`Self::controls`] (one query of the camera for the batch);
    /// rpicam-vid is restarted once for all of them.
    pub fn set_controls(
        &mut self,
        batch: &[(String, i64)],
    ) -> Vec<Result<(), controls::ControlError>> {
        let known = self.controls();
        let checked: Vec<_> = batch
            .iter()
            .map(|(id, v)| controls::check(&known, id, *v))
            .collect();
        match self {
            Source::Rpicam(r) => r.set_controls(batch, checked),
            Source::Pattern(p) => each(batch, checked, |id, v| p.set_control(id, v)),
            Source::V4l2(s) => each(batch, checked, |id, v| s.set_control(id, v)),
        }
    }

    /// Applies the settings kept for this camera (automatic modes first);
    /// ones it no longer takes are skipped (logged).
    pub fn restore(&mut self, values: &[(String, i64)]) {
        let mut values = values.to_vec();
        controls::in_apply_order(&mut values);
        for ((id, value), r) in values.iter().zip(self.set_controls(&values)) {
            if let Err(e) = r {
                tracing::info!("camera setting {id} = {value} not restored: {e}");
            }
        }
    }

    /// Which camera the kept settings belong to: driver and card (a
    /// replugged camera, or another of the same model, gets the same).
    pub fn settings_key(&self) -> String {
        match self.identity() {
            Some(id) => format!("{}/{}", id.driver, id.card),
            None => "test-scene".into(),
        }
    }

    /// Asks a passthrough camera for a keyframe, where it can take one.
    pub fn request_keyframe(&mut self) {
        if let Source::V4l2(v) = self {
            v.request_keyframe();
        }
    }

    /// Blocks until the camera delivers; a picture goes into `frame`.
    /// Without `wanted` (no encoder is running) a camera whose frames cost
    /// work to turn into pictures (MJPEG) is read but not decoded.
    pub fn next(&mut self, frame: &mut RawFrame, wanted: bool) -> Result<Delivery, CaptureError> {
        match self {
            Source::Pattern(p) => {
                p.next_frame(frame);
                Ok(Delivery::Picture)
            }
            Source::V4l2(v) => v.next(frame, wanted),
            Source::Rpicam(r) => r.next(frame),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WANT: Want = Want {
        width: 640,
        height: 360,
        fps: 30,
        format: CaptureFormat::Auto,
    };

    #[test]
    fn a_source_describes_itself_from_its_info() {
        let pattern = Source::open(&SourceSpec::Test, &WANT).unwrap();
        assert_eq!(pattern.describe(), "test-scene 640x360 @ 30 fps");
        let camera = SourceInfo {
            kind: "v4l2",
            device: Some("/dev/video0".into()),
            card: Some("vivid".into()),
            format: "YU12",
            fps: 15.0,
            ..SourceInfo::none(640, 360, 15)
        };
        assert_eq!(
            camera.to_string(),
            "V4L2 /dev/video0 (vivid) 640x360 YU12 @ 15.0 fps"
        );
    }

    #[test]
    fn parses_source_specs_and_formats() {
        assert_eq!("auto".parse(), Ok(SourceSpec::Auto));
        assert_eq!("test".parse(), Ok(SourceSpec::Test));
        assert_eq!("bars".parse(), Ok(SourceSpec::Bars));
        assert_eq!("rpicam".parse(), Ok(SourceSpec::Rpicam(0)));
        assert_eq!("rpicam:1".parse(), Ok(SourceSpec::Rpicam(1)));
        assert!("rpicam:x".parse::<SourceSpec>().is_err());
        assert_eq!(
            "/dev/video3".parse(),
            Ok(SourceSpec::Device(PathBuf::from("/dev/video3")))
        );
        assert!("webcam".parse::<SourceSpec>().is_err());
        assert_eq!("mjpeg".parse(), Ok(CaptureFormat::Mjpeg));
        assert_eq!("h264".parse(), Ok(CaptureFormat::H264));
        assert!("yuv".parse::<CaptureFormat>().is_err());
    }

    #[test]
    fn missing_device_is_a_clear_error() {
        let err = Source::open(&SourceSpec::Device("/dev/video-none".into()), &WANT)
            .err()
            .expect("fails");
        assert!(err.to_string().contains("/dev/video-none"), "{err}");
    }
}
