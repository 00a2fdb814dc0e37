//! Where pictures come from: a V4L2 camera, or the synthetic test pattern.

pub mod pattern;
pub mod scene;
pub mod stripe;
pub mod v4l2;

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::frame::RawFrame;
use pattern::{Look, TestPattern};
use v4l2::V4l2Source;

/// What the owner asked for with `--source`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// The first V4L2 capture device that works, else the test pattern.
    Auto,
    /// The camera-like scene.
    Test,
    /// Colour bars: cheap to draw and encode (emulated CPUs).
    Bars,
    Device(PathBuf),
}

impl std::str::FromStr for SourceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(SourceSpec::Auto),
            "test" => Ok(SourceSpec::Test),
            "bars" => Ok(SourceSpec::Bars),
            p if p.starts_with('/') => Ok(SourceSpec::Device(PathBuf::from(p))),
            other => Err(format!(
                "unknown source '{other}': expected auto, test, bars or a device path such as /dev/video0"
            )),
        }
    }
}

impl std::fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceSpec::Auto => f.write_str("auto"),
            SourceSpec::Test => f.write_str("test"),
            SourceSpec::Bars => f.write_str("bars"),
            SourceSpec::Device(p) => write!(f, "{}", p.display()),
        }
    }
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
    #[error("{path} offers none of YU12, NV12, YUYV (it offers: {})", offered.join(", "))]
    NoFormat { path: PathBuf, offered: Vec<String> },
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
    #[error("{0}")]
    Unsupported(String),
}

/// The negotiated capture, as reported to owners (`/api/status`) and in the
/// log: the one description of a source.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SourceInfo {
    /// `v4l2`, `test-scene` or `test-bars`.
    pub kind: &'static str,
    pub device: Option<String>,
    /// The driver's card name (`VIDIOC_QUERYCAP`), e.g. "vivid".
    pub card: Option<String>,
    /// FourCC of the frames as captured.
    pub format: &'static str,
    pub width: usize,
    pub height: usize,
    pub fps: f64,
}

impl std::fmt::Display for SourceInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (w, h, fps) = (self.width, self.height, self.fps);
        match (&self.device, &self.card) {
            (Some(device), Some(card)) => {
                write!(
                    f,
                    "V4L2 {device} ({card}) {w}x{h} {} @ {fps:.1} fps",
                    self.format
                )
            }
            _ => write!(f, "{} {w}x{h} @ {fps:.0} fps", self.kind),
        }
    }
}

/// An open source of raw frames.
pub enum Source {
    Pattern(TestPattern),
    V4l2(Box<V4l2Source>),
}

impl Source {
    /// Opens what `spec` names. `Auto` never fails: it falls back to the
    /// test pattern and says why in the log.
    pub fn open(
        spec: &SourceSpec,
        width: u32,
        height: u32,
        fps: u32,
    ) -> Result<Self, CaptureError> {
        match spec {
            SourceSpec::Test | SourceSpec::Bars => {
                let look = match spec {
                    SourceSpec::Bars => Look::Bars,
                    _ => Look::Scene,
                };
                let (w, h) = (width as usize, height as usize);
                Ok(Source::Pattern(TestPattern::new(w, h, fps, look)?))
            }
            SourceSpec::Device(path) => Ok(Source::V4l2(Box::new(V4l2Source::open(
                path, width, height, fps,
            )?))),
            SourceSpec::Auto => {
                for path in video_devices() {
                    match V4l2Source::open(&path, width, height, fps) {
                        Ok(s) => return Ok(Source::V4l2(Box::new(s))),
                        Err(e) => tracing::info!("source auto: skipping {}: {e}", path.display()),
                    }
                }
                tracing::info!("source auto: no usable camera found, using the test pattern");
                Source::open(&SourceSpec::Test, width, height, fps)
            }
        }
    }

    pub fn describe(&self) -> String {
        self.info().to_string()
    }

    pub fn size(&self) -> (usize, usize) {
        match self {
            Source::Pattern(p) => p.size(),
            Source::V4l2(v) => v.size(),
        }
    }

    /// What the source delivers, as `/api/status` reports it: the owner (and
    /// the system test) can see which camera, format and rate were agreed.
    pub fn info(&self) -> SourceInfo {
        match self {
            Source::Pattern(p) => p.info(),
            Source::V4l2(v) => v.info(),
        }
    }

    /// Blocks until the next frame is ready and writes it into `frame`.
    pub fn next_frame(&mut self, frame: &mut RawFrame) -> Result<(), CaptureError> {
        match self {
            Source::Pattern(p) => {
                p.next_frame(frame);
                Ok(())
            }
            Source::V4l2(v) => v.next_frame(frame),
        }
    }
}

/// `/dev/video*` in numeric order.
fn video_devices() -> Vec<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(Path::new("/dev"))
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    let n = name.strip_prefix("video")?.parse().ok()?;
                    Some((n, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.into_iter().map(|(_, p)| p).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_describes_itself_from_its_info() {
        let pattern = Source::open(&SourceSpec::Test, 640, 360, 30).unwrap();
        assert_eq!(pattern.describe(), "test-scene 640x360 @ 30 fps");
        let camera = SourceInfo {
            kind: "v4l2",
            device: Some("/dev/video0".into()),
            card: Some("vivid".into()),
            format: "YU12",
            width: 640,
            height: 360,
            fps: 15.0,
        };
        assert_eq!(
            camera.to_string(),
            "V4L2 /dev/video0 (vivid) 640x360 YU12 @ 15.0 fps"
        );
    }

    #[test]
    fn parses_source_specs() {
        assert_eq!("auto".parse(), Ok(SourceSpec::Auto));
        assert_eq!("test".parse(), Ok(SourceSpec::Test));
        assert_eq!("bars".parse(), Ok(SourceSpec::Bars));
        assert_eq!(
            "/dev/video3".parse(),
            Ok(SourceSpec::Device(PathBuf::from("/dev/video3")))
        );
        assert!("webcam".parse::<SourceSpec>().is_err());
    }

    #[test]
    fn missing_device_is_a_clear_error() {
        let err = Source::open(&SourceSpec::Device("/dev/video-none".into()), 640, 480, 30)
            .err()
            .expect("fails");
        assert!(err.to_string().contains("/dev/video-none"), "{err}");
    }
}
