//! A V4L2 camera through mmap streaming.
//!
//! We negotiate a raw format we turn into I420 cheaply (YU12, NV12, YUYV),
//! MJPEG (decoded here, `mjpeg`), or the camera's own H.264 (passed through
//! as it is), by `choose`: raw when the camera has the asked size and rate
//! raw (USB 2.0 webcams mostly do not at 720p30), else MJPEG, else H.264.
//! The frame rate is set explicitly: many drivers (vivid among them)
//! default to 5 fps.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use std::collections::VecDeque;

use v4l::buffer::Type;
use v4l::capability::Flags;
use v4l::control::{Control, Value};
use v4l::frameinterval::FrameIntervalEnum;
use v4l::io::mmap::Stream;
use v4l::io::traits::CaptureStream;
use v4l::video::Capture;
use v4l::video::capture::Parameters;
use v4l::{Device, Format, FourCC};

use super::annexb::H264Probe;
use super::controls::{self, CameraControl, ControlError, ControlKind, MenuItem};
use super::mjpeg::MjpegDecoder;
use super::pattern::unix_ms;
use super::uvc_h264;
use super::{CameraId, CaptureError, CaptureFormat, Delivery, Want};
use crate::frame::{CodedChunk, RawFrame};

mod choose;
mod convert;
mod device;

pub use choose::*;
pub use convert::*;
pub use device::*;
#[cfg(test)]
mod tests;

/// Few buffers: every queued buffer is a frame of latency when we fall behind.
const BUFFERS: u32 = 3;

/// `V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME`: a button some H.264 cameras have.
const CID_FORCE_KEY_FRAME: u32 = 0x0099_0900 + 229;

pub struct V4l2Source {
    path: PathBuf,
    id: CameraId,
    kind: Kind,
    width: usize,
    height: usize,
    stride: usize,
    fps: f64,
    why: String,
    corrupt: u64,
    mjpeg: Option<MjpegDecoder>,
    /// Buffers read while probing an H.264 camera, delivered first.
    pending: VecDeque<CodedChunk>,
    passthrough: Option<String>,
    keyframes: KeyframeRoute,
    stream: Stream<'static>,
    // Keeps the file descriptor open for the stream's lifetime.
    device: Device,
}

/// How an H.264 camera is asked for an IDR, if it can be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyframeRoute {
    /// `V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME`.
    Control,
    /// The UVC H.264 extension unit with this ID (`uvc_h264`).
    UvcUnit(u8),
    /// Neither: the camera's own GOP decides.
    None,
}

impl KeyframeRoute {
    fn find(device: &Device, path: &Path) -> KeyframeRoute {
        if device.control(CID_FORCE_KEY_FRAME).is_ok() {
            return KeyframeRoute::Control;
        }
        uvc_h264::descriptors_of(path)
            .and_then(|d| uvc_h264::find_h264_unit(&d))
            .map_or(KeyframeRoute::None, KeyframeRoute::UvcUnit)
    }

    fn describe(self) -> String {
        match self {
            KeyframeRoute::Control => "keyframes on request (V4L2 force-key-frame)".into(),
            KeyframeRoute::UvcUnit(u) => {
                format!("keyframes on request (UVC H.264 extension unit {u})")
            }
            KeyframeRoute::None => {
                "no keyframes on request: new viewers wait for the camera's next IDR".into()
            }
        }
    }
}

impl V4l2Source {
    pub fn open(path: &Path, want: &Want) -> Result<Self, CaptureError> {
        let open_err = |source| CaptureError::Open {
            path: path.to_path_buf(),
            source,
        };
        let device = Device::with_path(path).map_err(open_err)?;
        let caps = device.query_caps().map_err(open_err)?;
        if let Some(part) = NOT_CAMERAS.iter().find(|d| caps.driver == **d) {
            return Err(CaptureError::NotACamera(
                path.to_path_buf(),
                part.to_string(),
            ));
        }
        if !caps.capabilities.contains(Flags::VIDEO_CAPTURE)
            || !caps.capabilities.contains(Flags::STREAMING)
        {
            return Err(CaptureError::NotCapture(path.to_path_buf()));
        }
        let (modes, offered) = modes(&device).map_err(open_err)?;
        let mut choice = choose(&modes, want).ok_or_else(|| CaptureError::NoFormat {
            path: path.to_path_buf(),
            asked: want.format,
            offered,
        })?;
        let fourcc = FourCC::new(&choice.mode.fourcc);
        let got = device
            .set_format(&Format::new(choice.mode.width, choice.mode.height, fourcc))
            .map_err(open_err)?;
        if got.fourcc != fourcc || got.width % 2 != 0 || got.height % 2 != 0 {
            return Err(CaptureError::Unsupported(format!(
                "{} accepted {}x{} {} instead of {}x{} {}",
                path.display(),
                got.width,
                got.height,
                got.fourcc,
                choice.mode.width,
                choice.mode.height,
                choice.mode.kind.name()
            )));
        }
        let fps = match device.set_params(&Parameters::with_fps(want.fps)) {
            Ok(p) => fps_of(p.interval.numerator, p.interval.denominator),
            _ => 0.0,
        };
        let kind = choice.mode.kind;
        let min_stride = match kind {
            Kind::Raw(PixelFormat::Yuyv) => got.width * 2,
            _ => got.width,
        };
        let mut stream = Stream::with_buffers(&device, Type::VideoCapture, BUFFERS)
            .map_err(|e| CaptureError::Busy(path.to_path_buf(), e))?;
        // A camera that stops delivering must surface as an error, not a hang.
        stream.set_timeout(Duration::from_secs(3));
        if (got.width, got.height) != (want.width, want.height) {
            tracing::warn!(
                "{} offers no {}x{}; using the nearest size {}x{}",
                path.display(),
                want.width,
                want.height,
                got.width,
                got.height
            );
        }
        choice.why = format!("{}: {}", kind.name(), choice.why);
        let keyframes = match kind {
            Kind::H264 => KeyframeRoute::find(&device, path),
            _ => KeyframeRoute::None,
        };
        if kind == Kind::H264 {
            tracing::info!(
                "{}: H.264 passthrough, {}",
                path.display(),
                keyframes.describe()
            );
        }
        let mut source = V4l2Source {
            path: path.to_path_buf(),
            id: identity_of(path, &caps),
            kind,
            width: got.width as usize,
            height: got.height as usize,
            stride: got.stride.max(min_stride) as usize,
            fps,
            why: choice.why,
            corrupt: 0,
            mjpeg: (kind == Kind::Mjpeg).then(MjpegDecoder::new),
            pending: VecDeque::new(),
            passthrough: None,
            keyframes,
            stream,
            device,
        };
        if kind == Kind::H264 {
            source.probe_h264()?;
        }
        Ok(source)
    }

    /// Reads the camera's H.264 until its SPS says what it streams (the SDP
    /// needs its profile-level-id before any viewer is answered), refusing
    /// B-frames. What was read is delivered first, so the first IDR is kept.
    fn probe_h264(&mut self) -> Result<(), CaptureError> {
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut probe = H264Probe::default();
        while Instant::now() < deadline && self.pending.len() < 120 {
            let chunk = self.read_chunk()?;
            let verdict = probe.feed(&chunk.data);
            self.pending.push_back(chunk);
            match verdict {
                Err(e) => return Err(CaptureError::Passthrough(e)),
                Ok(Some(profile_level_id)) => {
                    self.passthrough = Some(profile_level_id);
                    return Ok(());
                }
                Ok(None) => {}
            }
        }
        Err(CaptureError::Passthrough(format!(
            "{} sent no SPS in {} buffers",
            self.path.display(),
            self.pending.len()
        )))
    }

    pub fn size(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    pub fn identity(&self) -> &CameraId {
        &self.id
    }

    pub fn info(&self) -> super::SourceInfo {
        super::SourceInfo {
            kind: "v4l2",
            device: Some(self.path.display().to_string()),
            card: Some(self.id.card.clone()),
            format: self.kind.name(),
            fps: self.fps,
            why: self.why.clone(),
            full_range: self.kind == Kind::Mjpeg,
            passthrough: self.passthrough.clone(),
            corrupt_frames: self.corrupt,
            ..super::SourceInfo::none(self.width, self.height, 0)
        }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The controls rtcam offers (`controls::V4L2_CONTROLS`) that this
    /// camera has, enabled and writable, with their current values.
    pub fn controls(&self) -> Vec<CameraControl> {
        match self.device.query_controls() {
            Ok(list) => list
                .into_iter()
                .filter_map(|d| describe_control(&self.device, d))
                .collect(),
            Err(e) => {
                tracing::debug!("{}: no controls: {e}", self.path.display());
                Vec::new()
            }
        }
    }

    /// Sets control `key` (checked by the caller against [`Self::controls`]).
    pub fn set_control(&mut self, key: &str, value: i64) -> Result<(), ControlError> {
        let id = controls::v4l2_cid(key).ok_or_else(|| ControlError::Unknown(key.into()))?;
        self.device
            .set_control(Control {
                id,
                value: Value::Integer(value),
            })
            .map_err(|e| ControlError::Failed {
                id: key.into(),
                why: e.to_string(),
            })
    }

    /// Asks an H.264 camera for an IDR, where it can take one; else its
    /// own GOP decides when viewers get a keyframe. A camera that refuses
    /// once is not asked again.
    pub fn request_keyframe(&mut self) {
        let asked = match self.keyframes {
            KeyframeRoute::Control => self.device.set_control(Control {
                id: CID_FORCE_KEY_FRAME,
                value: Value::None,
            }),
            KeyframeRoute::UvcUnit(unit) => uvc_h264::request_idr(self.device.handle().fd(), unit),
            KeyframeRoute::None => return,
        };
        if let Err(e) = asked {
            tracing::warn!(
                "{}: the camera refused a keyframe request ({e}); its own GOP applies from now on",
                self.path.display()
            );
            self.keyframes = KeyframeRoute::None;
        }
    }

    fn read_chunk(&mut self) -> Result<CodedChunk, CaptureError> {
        let (data, age) = self.read()?;
        let data = data.to_vec();
        Ok(CodedChunk {
            data,
            end_of_unit: true,
            captured: Instant::now() - age,
            stamp_ms: unix_ms(SystemTime::now() - age),
        })
    }

    /// The next buffer's bytes and how long ago the driver filled it.
    fn read(&mut self) -> Result<(&[u8], Duration), CaptureError> {
        let (buf, meta) = self.stream.next().map_err(|e| {
            if e.kind() == std::io::ErrorKind::TimedOut {
                CaptureError::Stalled(self.path.clone())
            } else {
                CaptureError::Io(self.path.clone(), e)
            }
        })?;
        // time_t is 32-bit on armhf: widen (a no-op on 64-bit targets).
        #[allow(clippy::useless_conversion)]
        let age = capture_age(
            i64::from(meta.timestamp.sec),
            i64::from(meta.timestamp.usec),
        );
        let used = (meta.bytesused as usize).min(buf.len());
        Ok((&buf[..used], age))
    }

    pub fn next(&mut self, frame: &mut RawFrame, wanted: bool) -> Result<Delivery, CaptureError> {
        if self.kind == Kind::Mjpeg && !wanted {
            // Dequeued (and queued again on the next read), not decoded.
            self.read()?;
            return Ok(Delivery::Unwatched);
        }
        if self.kind == Kind::H264 {
            return match self.pending.pop_front() {
                Some(chunk) => Ok(Delivery::Coded(chunk)),
                None => self.read_chunk().map(Delivery::Coded),
            };
        }
        let (width, height, stride, kind) = (self.width, self.height, self.stride, self.kind);
        let mut decoder = self.mjpeg.take();
        let result = self.read().map(|(data, age)| {
            frame.width = width;
            frame.height = height;
            frame.data.resize(RawFrame::i420_len(width, height), 0);
            let converted = match (kind, decoder.as_mut()) {
                (Kind::Raw(p), _) => convert(p, data, width, height, stride, frame),
                (Kind::Mjpeg, Some(d)) => d.decode(data, frame).map_err(|e| e.to_string()),
                _ => Err("no decoder".to_string()),
            };
            (converted, data.len(), age)
        });
        self.mjpeg = decoder;
        let (converted, used, age) = result?;
        if let Err(why) = converted {
            self.corrupt += 1;
            return match kind {
                Kind::Raw(_) => Err(CaptureError::ShortBuffer {
                    got: used,
                    width,
                    height,
                }),
                _ => Ok(Delivery::Dropped(why)),
            };
        }
        frame.captured = Instant::now() - age;
        frame.stamp_ms = unix_ms(SystemTime::now() - age);
        Ok(Delivery::Picture)
    }
}
