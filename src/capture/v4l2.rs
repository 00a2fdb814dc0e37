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

/// Raw formats we convert, best first (YU12 needs no conversion at all).
const PREFERRED: [PixelFormat; 3] = [PixelFormat::Yu12, PixelFormat::Nv12, PixelFormat::Yuyv];

/// Few buffers: every queued buffer is a frame of latency when we fall behind.
const BUFFERS: u32 = 3;

/// Drivers whose capture nodes are parts of the Pi's camera and codec
/// system, not cameras: the ISP and the codecs (which `auto` must not pick
/// up as a webcam), and the CSI receivers that give raw Bayer (a CSI camera
/// is read through rpicam-vid).
const NOT_CAMERAS: [&str; 7] = [
    "bcm2835-isp",
    "bcm2835-codec",
    "unicam",
    "rp1-cfe",
    "pispbe",
    "rpivid",
    "rpi-hevc-dec",
];

/// `V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME`: a button some H.264 cameras have.
const CID_FORCE_KEY_FRAME: u32 = 0x0099_0900 + 229;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    Yuyv,
    Nv12,
    Yu12,
}

impl PixelFormat {
    pub fn name(self) -> &'static str {
        match self {
            PixelFormat::Yuyv => "YUYV",
            PixelFormat::Nv12 => "NV12",
            PixelFormat::Yu12 => "YU12",
        }
    }
}

/// What a camera's frames are, as far as rtcam is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Raw(PixelFormat),
    Mjpeg,
    H264,
}

impl Kind {
    fn of(fourcc: FourCC) -> Option<Kind> {
        match &fourcc.repr {
            b"YU12" => Some(Kind::Raw(PixelFormat::Yu12)),
            b"NV12" => Some(Kind::Raw(PixelFormat::Nv12)),
            b"YUYV" => Some(Kind::Raw(PixelFormat::Yuyv)),
            b"MJPG" | b"JPEG" => Some(Kind::Mjpeg),
            b"H264" => Some(Kind::H264),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Raw(p) => p.name(),
            Kind::Mjpeg => "MJPG",
            Kind::H264 => "H264",
        }
    }

    fn rank(self) -> usize {
        match self {
            Kind::Raw(p) => PREFERRED.iter().position(|&q| q == p).unwrap_or(0),
            Kind::Mjpeg => 3,
            Kind::H264 => 4,
        }
    }

    fn allowed(self, asked: CaptureFormat) -> bool {
        matches!(
            (asked, self),
            (CaptureFormat::Auto, _)
                | (CaptureFormat::Raw, Kind::Raw(_))
                | (CaptureFormat::Mjpeg, Kind::Mjpeg)
                | (CaptureFormat::H264, Kind::H264)
        )
    }
}

/// One size a camera offers in one format, with its fastest rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mode {
    pub kind: Kind,
    pub fourcc: [u8; 4],
    pub width: u32,
    pub height: u32,
    /// The highest rate at this size (0 when the driver does not say).
    pub max_fps: f64,
}

/// The format and size to ask for, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub mode: Mode,
    pub why: String,
}

/// `auto`: raw at the asked size and rate if the camera has it, else MJPEG
/// at that size and rate, else H.264; failing all, the mode nearest the
/// asked size in the best format, at its best rate. A forced format picks
/// only among its own modes. Odd sizes are never picked.
pub fn choose(modes: &[Mode], want: &Want) -> Option<Choice> {
    let usable: Vec<&Mode> = modes
        .iter()
        .filter(|m| m.kind.allowed(want.format) && m.width % 2 == 0 && m.height % 2 == 0)
        .collect();
    let fast_enough = |m: &Mode| m.max_fps == 0.0 || m.max_fps + 0.5 >= want.fps as f64;
    let exact = usable
        .iter()
        .filter(|m| (m.width, m.height) == (want.width, want.height) && fast_enough(m))
        .min_by_key(|m| m.kind.rank());
    if let Some(m) = exact {
        let why = match m.kind {
            Kind::Raw(_) => format!(
                "raw {} has {}x{} at {} fps",
                m.kind.name(),
                m.width,
                m.height,
                want.fps
            ),
            _ => format!(
                "{} at {}x{} {} fps{}",
                m.kind.name(),
                m.width,
                m.height,
                want.fps,
                slower_raw(&usable, want)
            ),
        };
        return Some(Choice { mode: **m, why });
    }
    let size_of = |m: &&&Mode| (m.width, m.height);
    let sizes: Vec<(u32, u32)> = usable.iter().map(|m| (m.width, m.height)).collect();
    let near = nearest_size(&sizes, (want.width, want.height))?;
    let m = usable
        .iter()
        .filter(|m| size_of(m) == near)
        .min_by(|a, b| {
            // At the nearest size: fast enough first, then the best format.
            (!fast_enough(a), a.kind.rank()).cmp(&(!fast_enough(b), b.kind.rank()))
        })?;
    Some(Choice {
        mode: **m,
        why: format!(
            "no format has {}x{} at {} fps; nearest: {} {}x{} at up to {:.1} fps",
            want.width,
            want.height,
            want.fps,
            m.kind.name(),
            m.width,
            m.height,
            m.max_fps
        ),
    })
}

/// Why raw was passed over, for the log.
fn slower_raw(usable: &[&Mode], want: &Want) -> String {
    usable
        .iter()
        .filter(|m| {
            matches!(m.kind, Kind::Raw(_)) && (m.width, m.height) == (want.width, want.height)
        })
        .map(|m| {
            format!(
                " (raw {} is only {:.1} fps at that size)",
                m.kind.name(),
                m.max_fps
            )
        })
        .next()
        .unwrap_or_default()
}

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

/// The camera at `path`, without opening a stream: what the supervisor
/// matches a returning camera against.
pub fn identify(path: &Path) -> Result<CameraId, CaptureError> {
    let device = Device::with_path(path).map_err(|source| CaptureError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let caps = device.query_caps().map_err(|source| CaptureError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(identity_of(path, &caps))
}

fn identity_of(path: &Path, caps: &v4l::capability::Capabilities) -> CameraId {
    CameraId {
        driver: caps.driver.clone(),
        card: caps.card.clone(),
        bus: caps.bus.clone(),
        by_id: by_id_name(path),
    }
}

/// The `/dev/v4l/by-id/` link that points at `path`, if udev made one.
fn by_id_name(path: &Path) -> Option<String> {
    let node = std::fs::canonicalize(path).ok()?;
    std::fs::read_dir("/dev/v4l/by-id")
        .ok()?
        .filter_map(|e| e.ok())
        .find(|e| std::fs::canonicalize(e.path()).ok().as_deref() == Some(node.as_path()))
        .and_then(|e| e.file_name().into_string().ok())
}

/// A V4L2 control as viewers see it, if rtcam offers it.
fn describe_control(device: &Device, d: v4l::control::Description) -> Option<CameraControl> {
    use v4l::control::{Flags as CtrlFlags, MenuItem as V4lItem, Type as CtrlType};
    let key = controls::v4l2_key(d.id)?;
    if d.flags
        .intersects(CtrlFlags::DISABLED | CtrlFlags::READ_ONLY | CtrlFlags::GRABBED)
    {
        return None;
    }
    let items = |d: &v4l::control::Description| -> Vec<MenuItem> {
        d.items
            .iter()
            .flatten()
            .map(|(i, item)| MenuItem {
                value: i64::from(*i),
                label: match item {
                    V4lItem::Name(n) => n.clone(),
                    V4lItem::Value(v) => v.to_string(),
                },
            })
            .collect()
    };
    let kind = match d.typ {
        CtrlType::Integer | CtrlType::Integer64 => ControlKind::Integer {
            min: d.minimum,
            max: d.maximum,
            step: i64::try_from(d.step.max(1)).unwrap_or(1),
        },
        CtrlType::Boolean => ControlKind::Boolean,
        CtrlType::Menu | CtrlType::IntegerMenu => ControlKind::Menu { items: items(&d) },
        _ => return None,
    };
    let value = match device.control(d.id).ok()?.value {
        Value::Integer(v) => v,
        Value::Boolean(b) => i64::from(b),
        _ => return None,
    };
    Some(CameraControl {
        id: key.into(),
        name: d.name,
        kind,
        default: d.default,
        value,
        restarts: false,
    })
}

/// Every mode the device offers in a format rtcam can use.
fn modes(device: &Device) -> std::io::Result<(Vec<Mode>, Vec<String>)> {
    let mut modes = Vec::new();
    let mut offered = Vec::new();
    for desc in device.enum_formats()? {
        offered.push(desc.fourcc.to_string());
        let Some(kind) = Kind::of(desc.fourcc) else {
            continue;
        };
        let sizes: Vec<(u32, u32)> = device
            .enum_framesizes(desc.fourcc)
            .unwrap_or_default()
            .into_iter()
            .flat_map(|s| s.size.to_discrete())
            .map(|d| (d.width, d.height))
            .collect();
        for (width, height) in sizes {
            let max_fps = device
                .enum_frameintervals(desc.fourcc, width, height)
                .unwrap_or_default()
                .iter()
                .map(|i| match &i.interval {
                    FrameIntervalEnum::Discrete(f) => fps_of(f.numerator, f.denominator),
                    FrameIntervalEnum::Stepwise(s) => fps_of(s.min.numerator, s.min.denominator),
                })
                .fold(0.0, f64::max);
            modes.push(Mode {
                kind,
                fourcc: desc.fourcc.repr,
                width,
                height,
                max_fps,
            });
        }
    }
    Ok((modes, offered))
}

fn fps_of(num: u32, den: u32) -> f64 {
    if num == 0 {
        0.0
    } else {
        den as f64 / num as f64
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

/// One raw buffer into I420 (public for examples/capture_bench.rs).
pub fn convert(
    p: PixelFormat,
    data: &[u8],
    w: usize,
    h: usize,
    stride: usize,
    frame: &mut RawFrame,
) -> Result<(), String> {
    let ok = match p {
        PixelFormat::Yu12 => yu12_to_i420(data, w, h, stride, frame),
        PixelFormat::Nv12 => nv12_to_i420(data, w, h, stride, frame),
        PixelFormat::Yuyv => yuyv_to_i420(data, w, h, stride, frame),
    };
    ok.then_some(())
        .ok_or_else(|| format!("a {}-byte buffer is too short", data.len()))
}

/// How long ago the driver stamped the buffer (its timestamps are
/// CLOCK_MONOTONIC). Zero when the stamp is missing or implausible.
fn capture_age(sec: i64, usec: i64) -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec to a valid pointer.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) } != 0 || sec <= 0 {
        return Duration::ZERO;
    }
    // time_t and c_long are 32-bit on armhf: widen before multiplying (a
    // no-op on 64-bit targets, hence the allow).
    #[allow(clippy::useless_conversion)]
    let now_us = i64::from(now.tv_sec) * 1_000_000 + i64::from(now.tv_nsec) / 1000;
    let age_us = now_us - (sec * 1_000_000 + usec);
    if (0..1_000_000).contains(&age_us) {
        Duration::from_micros(age_us as u64)
    } else {
        Duration::ZERO
    }
}

/// The offered size closest in area (then in shape) to the one wanted.
pub fn nearest_size(offered: &[(u32, u32)], want: (u32, u32)) -> Option<(u32, u32)> {
    offered
        .iter()
        .copied()
        .filter(|(w, h)| w % 2 == 0 && h % 2 == 0)
        .min_by_key(|&(w, h)| {
            let area = (w as i64 * h as i64 - want.0 as i64 * want.1 as i64).abs();
            let shape = (w as i64 - want.0 as i64).abs() + (h as i64 - want.1 as i64).abs();
            (area, shape)
        })
}

fn yu12_to_i420(src: &[u8], w: usize, h: usize, stride: usize, out: &mut RawFrame) -> bool {
    let cs = stride / 2;
    if src.len() < stride * h + 2 * cs * (h / 2) - (stride - w) {
        return false;
    }
    let (y, u, v) = out.planes_mut();
    for row in 0..h {
        y[row * w..(row + 1) * w].copy_from_slice(&src[row * stride..row * stride + w]);
    }
    let (cw, ch) = (w / 2, h / 2);
    let u_off = stride * h;
    let v_off = u_off + cs * ch;
    for row in 0..ch {
        u[row * cw..(row + 1) * cw].copy_from_slice(&src[u_off + row * cs..u_off + row * cs + cw]);
        if let Some(s) = src.get(v_off + row * cs..v_off + row * cs + cw) {
            v[row * cw..(row + 1) * cw].copy_from_slice(s);
        } else {
            return false;
        }
    }
    true
}

fn nv12_to_i420(src: &[u8], w: usize, h: usize, stride: usize, out: &mut RawFrame) -> bool {
    let (cw, ch) = (w / 2, h / 2);
    if src.len() < stride * h + stride * (ch - 1) + w {
        return false;
    }
    let (y, u, v) = out.planes_mut();
    for row in 0..h {
        y[row * w..(row + 1) * w].copy_from_slice(&src[row * stride..row * stride + w]);
    }
    let uv = &src[stride * h..];
    for row in 0..ch {
        let line = &uv[row * stride..row * stride + w];
        for (i, pair) in line.chunks_exact(2).enumerate() {
            u[row * cw + i] = pair[0];
            v[row * cw + i] = pair[1];
        }
    }
    true
}

fn yuyv_to_i420(src: &[u8], w: usize, h: usize, stride: usize, out: &mut RawFrame) -> bool {
    if src.len() < stride * (h - 1) + 2 * w {
        return false;
    }
    let cw = w / 2;
    let (y, u, v) = out.planes_mut();
    for row in (0..h).step_by(2) {
        let a = &src[row * stride..row * stride + 2 * w];
        let b = &src[(row + 1) * stride..(row + 1) * stride + 2 * w];
        let (ya, yb) = y[row * w..(row + 2) * w].split_at_mut(w);
        let ur = &mut u[(row / 2) * cw..(row / 2 + 1) * cw];
        let vr = &mut v[(row / 2) * cw..(row / 2 + 1) * cw];
        for i in 0..cw {
            let pa = &a[4 * i..4 * i + 4];
            let pb = &b[4 * i..4 * i + 4];
            ya[2 * i] = pa[0];
            ya[2 * i + 1] = pa[2];
            yb[2 * i] = pb[0];
            yb[2 * i + 1] = pb[2];
            ur[i] = (pa[1] as u16 + pb[1] as u16).div_ceil(2) as u8;
            vr[i] = (pa[3] as u16 + pb[3] as u16).div_ceil(2) as u8;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(kind: Kind, width: u32, height: u32, max_fps: f64) -> Mode {
        let fourcc = *b"XXXX";
        Mode {
            kind,
            fourcc,
            width,
            height,
            max_fps,
        }
    }

    fn want(format: CaptureFormat) -> Want {
        Want {
            width: 1280,
            height: 720,
            fps: 30,
            format,
        }
    }

    /// A C920-class webcam: YUYV at 720p only 10 fps over USB 2.0, MJPEG
    /// and H.264 at 30.
    fn webcam() -> Vec<Mode> {
        vec![
            mode(Kind::Raw(PixelFormat::Yuyv), 640, 480, 30.0),
            mode(Kind::Raw(PixelFormat::Yuyv), 1280, 720, 10.0),
            mode(Kind::Mjpeg, 640, 480, 30.0),
            mode(Kind::Mjpeg, 1280, 720, 30.0),
            mode(Kind::H264, 1280, 720, 30.0),
            mode(Kind::H264, 1920, 1080, 30.0),
        ]
    }

    #[test]
    fn auto_takes_raw_when_it_has_the_size_and_rate() {
        let c = choose(
            &webcam(),
            &Want {
                width: 640,
                height: 480,
                ..want(CaptureFormat::Auto)
            },
        )
        .unwrap();
        assert_eq!(c.mode.kind, Kind::Raw(PixelFormat::Yuyv));
        assert_eq!((c.mode.width, c.mode.height), (640, 480));
    }

    #[test]
    fn auto_takes_mjpeg_when_raw_is_too_slow_and_says_why() {
        let c = choose(&webcam(), &want(CaptureFormat::Auto)).unwrap();
        assert_eq!(c.mode.kind, Kind::Mjpeg);
        assert!(c.why.contains("raw YUYV is only 10.0 fps"), "{}", c.why);
    }

    #[test]
    fn auto_takes_h264_when_nothing_else_has_the_rate() {
        let modes: Vec<Mode> = webcam()
            .into_iter()
            .filter(|m| m.kind != Kind::Mjpeg)
            .collect();
        let c = choose(&modes, &want(CaptureFormat::Auto)).unwrap();
        assert_eq!(c.mode.kind, Kind::H264);
    }

    #[test]
    fn a_forced_format_is_kept_even_when_slower() {
        let c = choose(&webcam(), &want(CaptureFormat::Raw)).unwrap();
        assert_eq!(c.mode, mode(Kind::Raw(PixelFormat::Yuyv), 1280, 720, 10.0));
        let c = choose(&webcam(), &want(CaptureFormat::H264)).unwrap();
        assert_eq!(c.mode.kind, Kind::H264);
        let only_raw = vec![mode(Kind::Raw(PixelFormat::Yu12), 640, 360, 30.0)];
        assert_eq!(choose(&only_raw, &want(CaptureFormat::Mjpeg)), None);
    }

    #[test]
    fn without_the_size_the_nearest_fast_enough_mode_wins() {
        // vivid: raw only, 720p at 12.5 fps.
        let vivid = vec![
            mode(Kind::Raw(PixelFormat::Yu12), 640, 360, 40.0),
            mode(Kind::Raw(PixelFormat::Yu12), 1280, 720, 12.5),
            mode(Kind::Raw(PixelFormat::Yuyv), 1280, 720, 12.5),
        ];
        let c = choose(&vivid, &want(CaptureFormat::Auto)).unwrap();
        assert_eq!(c.mode, vivid[1], "the size first, at its best rate");
        let c = choose(
            &vivid,
            &Want {
                width: 800,
                height: 450,
                ..want(CaptureFormat::Auto)
            },
        )
        .unwrap();
        assert_eq!((c.mode.width, c.mode.height), (640, 360));
        assert!(c.why.starts_with("no format has 800x450"), "{}", c.why);
    }

    #[test]
    fn nearest_size_prefers_exact_then_area() {
        let offered = [
            (320, 180),
            (640, 360),
            (640, 480),
            (1280, 720),
            (1920, 1080),
        ];
        assert_eq!(nearest_size(&offered, (1280, 720)), Some((1280, 720)));
        assert_eq!(nearest_size(&offered, (1200, 700)), Some((1280, 720)));
        assert_eq!(nearest_size(&offered, (800, 600)), Some((640, 480)));
        assert_eq!(nearest_size(&[], (800, 600)), None);
    }

    #[test]
    fn yuyv_converts_luma_and_averages_chroma() {
        // 4x2 YUYV: Y values 1..8, U 100/110, V 200/210 on the two rows.
        let src = [
            1, 100, 2, 200, 3, 100, 4, 200, //
            5, 110, 6, 210, 7, 110, 8, 210,
        ];
        let mut f = RawFrame::black(4, 2);
        assert!(yuyv_to_i420(&src, 4, 2, 8, &mut f));
        let (y, u, v) = f.planes();
        assert_eq!(y, &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(u, &[105, 105]);
        assert_eq!(v, &[205, 205]);
        assert!(
            !yuyv_to_i420(&src[..10], 4, 2, 8, &mut f),
            "short buffer refused"
        );
    }

    #[test]
    fn nv12_deinterleaves_with_stride() {
        // 2x2 picture, stride 4: Y rows padded, one UV row.
        let src = [10, 11, 0, 0, 12, 13, 0, 0, 50, 60, 0, 0];
        let mut f = RawFrame::black(2, 2);
        assert!(nv12_to_i420(&src, 2, 2, 4, &mut f));
        let (y, u, v) = f.planes();
        assert_eq!(
            (y, u, v),
            (&[10u8, 11, 12, 13][..], &[50u8][..], &[60u8][..])
        );
    }

    #[test]
    fn yu12_copies_planes() {
        let src = [1, 2, 3, 4, 5, 6];
        let mut f = RawFrame::black(2, 2);
        assert!(yu12_to_i420(&src, 2, 2, 2, &mut f));
        assert_eq!(f.data, src);
    }
}
