//! CSI camera modules through `rpicam-vid` (rpicam-apps; `libcamera-vid` on
//! Bullseye), as a child process writing raw YUV420 to a pipe, or (with
//! `--capture-format h264`) the H.264 of the Pi's hardware encoder, passed
//! through to viewers.
//!
//! Why a child and not libcamera itself: libcamera is C++ with no stable C
//! API, and rpicam-vid is what Raspberry Pi OS ships and keeps working with
//! every sensor and ISP. The price is a pipe with no framing, so the frame
//! layout must be known exactly:
//!
//! - `--codec yuv420` selects rpicam-apps' `NullEncoder`, which hands the
//!   whole dma-buf of each frame (libcamera's `StreamConfiguration::frameSize`)
//!   to the output; `--flush` makes `FileOutput` flush after every frame
//!   (rpicam-apps `encoder/null_encoder.cpp`, `output/file_output.cpp`,
//!   `core/rpicam_app.cpp` `setupCapture`).
//! - That buffer is single-plane YUV420 with rows padded to the ISP's
//!   alignment, the chroma planes at half the luma stride and no padding
//!   between planes: `stride*h + 2*(stride/2)*(h/2)` bytes. The stride
//!   depends on the ISP, see [`yuv420_stride`].
//! - The colour is full range: rpicam-vid asks for `ColorSpace::Sycc` (the
//!   JPEG colour space) for `yuv420` and `mjpeg` (`apps/rpicam_vid.cpp`
//!   `get_colourspace_flags`, `core/rpicam_app.cpp` `ConfigureVideo`), and
//!   the ISPs then emit 0..255 (libcamera `pisp.cpp` `setupOutputClipping`,
//!   bcm2835-isp `V4L2_COLORSPACE_JPEG`). rtcam's encoders signal limited
//!   range, so samples are mapped through lookup tables.
//!
//! H.264 (`--codec h264`, [`h264_args`]): rpicam-apps' `H264Encoder` drives
//! the VC4's V4L2 encoder (`/dev/video11`) and writes one access unit per
//! encoder buffer; `--inline` repeats SPS and PPS before every IDR
//! (`V4L2_CID_MPEG_VIDEO_REPEAT_SEQ_HEADER`), `--intra` sets the IDR period
//! (`V4L2_CID_MPEG_VIDEO_H264_I_PERIOD`), `--profile` takes baseline, main or
//! high and `--level` 4, 4.1 or 4.2 (`encoder/h264_encoder.cpp`). The colour
//! is limited range (Rec709 from 1280x720 up, SMPTE170M below: `core/rpicam_app.cpp`
//! `ConfigureVideo`). The Pi 5 has no H.264 encoder: there rpicam-vid would
//! run libx264 through libav (`encoder/encoder.cpp` `h264_codec_select`),
//! which rtcam's own encoders beat, so it is refused. The pipe has no
//! framing: reads go out as they come ([`CodedChunk`] with `end_of_unit`
//! false) and `encode::passthrough` finds the access units.
//!
//! The child runs in its own process group and is stopped with SIGTERM (it
//! has no handler for it, so it ends at once), then SIGKILL, and is always
//! reaped. Restarting is the capture supervisor's job: a source that fails
//! is dropped and opened again.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use thiserror::Error;

use super::annexb::H264Probe;
use super::controls::{self, CameraControl, ControlError};
use super::pattern::unix_ms;
use super::{CameraId, CaptureError, CaptureFormat, Delivery, SourceInfo, Want};
use crate::frame::{CodedChunk, RawFrame};

mod child;
mod layout;
mod tool;

use child::*;
use layout::*;
pub use layout::{Isp, yuv420_stride};
use tool::*;
pub use tool::{CsiCamera, h264_args, list_cameras, parse_camera_list, tool, video_args};
#[cfg(test)]
mod tests;

/// Camera start-up (sensor power-up, AGC/AWB convergence) before frame one.
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// A running camera that sends nothing for this long is stuck.
const FRAME_TIMEOUT: Duration = Duration::from_secs(3);

/// How long the H.264 probe reads at open for an SPS and a few slices: the
/// first frame can take a second on a Pi (sensor start, AGC/AWB).
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the probe keeps at most (delivered first, so the first IDR is not
/// lost): far more than the few frames it needs, and a bound on memory.
const PROBE_MAX_BYTES: usize = 8 * 1024 * 1024;

const PROBE_MAX_CHUNKS: usize = 4096;

/// The most one read of the H.264 pipe takes (the pipe's own buffer size).
const CHUNK_BYTES: usize = 64 * 1024;

#[derive(Debug, Error)]
pub enum RpicamError {
    #[error("neither rpicam-vid nor libcamera-vid is on PATH (install rpicam-apps)")]
    NoTool,
    #[error("there is no CSI camera {index}: rpicam-vid lists {found}")]
    NoCamera { index: u32, found: usize },
    #[error("rpicam-vid cannot deliver {width}x{height}: width and height must be even")]
    BadSize { width: u32, height: u32 },
    #[error("{0}")]
    Unsupported(String),
    #[error("rpicam-vid's H.264 cannot be passed through: {0}")]
    Passthrough(String),
    #[error("cannot start rpicam-vid: {0}")]
    Spawn(std::io::Error),
    #[error("rpicam-vid exited ({status}){}", last_words(stderr_tail))]
    Exited { status: String, stderr_tail: String },
    #[error("reading rpicam-vid's output: {0}")]
    Io(std::io::Error),
    #[error("rpicam-vid sent no frame for {} s", .0.as_secs())]
    Stalled(Duration),
    #[error("rpicam-vid --list-cameras did not answer within {} s", .0.as_secs())]
    Timeout(Duration),
    #[error(
        "rpicam-vid configured {}x{} instead of the {}x{} asked for",
        got.0, got.1, want.0, want.1
    )]
    Adjusted { want: (u32, u32), got: (u32, u32) },
}

fn last_words(tail: &str) -> String {
    match tail.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(line) => format!(": {}", line.trim()),
        None => String::new(),
    }
}

/// How to run the tool: the real one on PATH, or a stand-in in tests, with
/// the ISP layout to expect and extra environment for the child.
struct Launch<'a> {
    tool: &'a Path,
    isp: Isp,
    envs: &'a [(&'a str, &'a str)],
}

/// What rpicam-vid writes to the pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    /// Padded full-range YUV420 frames, for rtcam's encoders.
    Yuv420,
    /// The hardware encoder's H.264, passed through.
    H264,
}

/// A CSI camera streaming through a running rpicam-vid.
pub struct RpicamSource {
    /// How the child was started, and the options viewers set.
    spawn: Spawn,
    child: Child,
    /// Taken (closed) first when stopping.
    stdout: Option<ChildStdout>,
    /// Set once the child has been waited for.
    exit: Option<ExitStatus>,
    shared: Shared,
    stderr_thread: Option<JoinHandle<()>>,
    camera: u32,
    sensor: String,
    width: usize,
    height: usize,
    stride: usize,
    fps: u32,
    isp: Isp,
    full_range: bool,
    codec: Codec,
    /// One padded frame as read from the pipe; for H.264, one read.
    buf: Vec<u8>,
    /// Frames (H.264: reads) delivered so far.
    frames: u64,
    /// H.264: the stream's profile-level-id, once the probe read it.
    passthrough: Option<String>,
    /// H.264: what the probe read at open, delivered before anything new.
    pending: VecDeque<CodedChunk>,
}

impl RpicamSource {
    /// Starts rpicam-vid for CSI camera `camera` (its `--list-cameras`
    /// index) at `want`'s size and rate, once the camera is known to exist.
    pub fn open(camera: u32, want: &Want) -> Result<Self, RpicamError> {
        let tool = tool().ok_or(RpicamError::NoTool)?;
        let launch = Launch {
            tool: &tool,
            isp: Isp::detect(),
            envs: &[],
        };
        Self::open_with(&launch, camera, want)
    }

    fn open_with(launch: &Launch, camera: u32, want: &Want) -> Result<Self, RpicamError> {
        let codec = match want.format {
            CaptureFormat::Auto | CaptureFormat::Raw => Codec::Yuv420,
            CaptureFormat::H264 if launch.isp == Isp::Pisp => {
                return Err(RpicamError::Unsupported(
                    "--capture-format h264 is not available with --source rpicam on a Pi 5: \
                     it has no hardware H.264 encoder, so rpicam-vid would encode with libx264 \
                     in software; use --capture-format raw (or auto) instead: rtcam's own \
                     encoder does better (keyframes for new viewers, bitrate control)"
                        .into(),
                ));
            }
            CaptureFormat::H264 => Codec::H264,
            CaptureFormat::Mjpeg => {
                return Err(RpicamError::Unsupported(format!(
                    "rpicam-vid is read as raw YUV420 (or its H.264 passed through); \
                     --capture-format {} is not available for CSI cameras",
                    want.format
                )));
            }
        };
        let (width, height) = (want.width, want.height);
        if width == 0 || height == 0 || width % 2 != 0 || height % 2 != 0 {
            return Err(RpicamError::BadSize { width, height });
        }
        let cameras = list_cameras_with(launch.tool, launch.envs, LIST_TIMEOUT)?;
        let Some(found) = cameras.iter().find(|c| c.index == camera) else {
            return Err(RpicamError::NoCamera {
                index: camera,
                found: cameras.len(),
            });
        };
        let args = match codec {
            Codec::Yuv420 => video_args(camera, width, height, want.fps),
            Codec::H264 => h264_args(camera, width, height, want.fps),
        };
        let spawn = Spawn {
            tool: launch.tool.to_path_buf(),
            envs: launch
                .envs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            args,
            options: BTreeMap::new(),
        };
        let (mut child, shared, stderr_thread) = spawn.start()?;
        let (w, h) = (width as usize, height as usize);
        let stride = yuv420_stride(launch.isp, w);
        match codec {
            Codec::Yuv420 => tracing::info!(
                "rpicam-vid: camera {camera} ({}) {w}x{h} at {} fps, {} ISP, row stride {stride}",
                found.sensor,
                want.fps,
                launch.isp
            ),
            Codec::H264 => tracing::info!(
                "rpicam-vid: camera {camera} ({}) {w}x{h} at {} fps, H.264 from the hardware \
                 encoder, an IDR every second, passed through",
                found.sensor,
                want.fps
            ),
        }
        let mut source = RpicamSource {
            spawn,
            stdout: child.stdout.take(),
            child,
            exit: None,
            shared,
            stderr_thread,
            camera,
            sensor: found.sensor.clone(),
            width: w,
            height: h,
            stride,
            fps: want.fps,
            isp: launch.isp,
            // rpicam-vid's H.264 is limited range, and nothing is converted.
            full_range: codec == Codec::Yuv420,
            codec,
            buf: match codec {
                Codec::Yuv420 => vec![0; frame_len(stride, h)],
                Codec::H264 => vec![0; CHUNK_BYTES],
            },
            frames: 0,
            passthrough: None,
            pending: VecDeque::new(),
        };
        if codec == Codec::H264 {
            source.probe_h264()?;
        }
        Ok(source)
    }

    /// Reads the H.264 until its SPS says what it streams (the SDP needs its
    /// profile-level-id before any viewer is answered), refusing B-frames,
    /// as the V4L2 H.264 path does. What was read is delivered first, so the
    /// first IDR is kept. A child that dies meanwhile is reported with its
    /// last words (e.g. "failed to open V4L2 H264 encoder").
    fn probe_h264(&mut self) -> Result<(), RpicamError> {
        let deadline = Instant::now() + PROBE_TIMEOUT;
        let mut probe = H264Probe::for_stream();
        let mut bytes = 0;
        while bytes < PROBE_MAX_BYTES && self.pending.len() < PROBE_MAX_CHUNKS {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let chunk = match self.read_chunk(left) {
                Ok(chunk) => chunk,
                Err(RpicamError::Stalled(_)) => break,
                Err(e) => return Err(e),
            };
            bytes += chunk.data.len();
            let verdict = probe.feed(&chunk.data);
            self.pending.push_back(chunk);
            match verdict {
                Err(e) => return Err(RpicamError::Passthrough(e)),
                Ok(Some(profile_level_id)) => {
                    tracing::info!(
                        "rpicam-vid: H.264 profile-level-id {profile_level_id} \
                         ({bytes} bytes read to find it)"
                    );
                    self.passthrough = Some(profile_level_id);
                    return Ok(());
                }
                Ok(None) => {}
            }
        }
        self.pending.clear();
        Err(RpicamError::Passthrough(format!(
            "rpicam-vid sent no readable SPS and first pictures within {} s ({bytes} bytes)",
            PROBE_TIMEOUT.as_secs()
        )))
    }

    pub fn size(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    /// Whether the frames arrive in full range (and are converted).
    pub fn full_range(&self) -> bool {
        self.full_range
    }

    pub fn identity(&self) -> CameraId {
        CameraId {
            driver: DRIVER.into(),
            card: self.sensor.clone(),
            bus: format!("csi:{}", self.camera),
            by_id: None,
        }
    }

    pub fn info(&self) -> SourceInfo {
        if self.codec == Codec::H264 {
            return SourceInfo {
                kind: "rpicam",
                device: Some(format!("csi:{}", self.camera)),
                card: Some(self.sensor.clone()),
                format: "H264",
                fps: f64::from(self.fps),
                why: "rpicam-vid --codec h264 (the Pi's hardware encoder), passthrough".into(),
                full_range: false,
                passthrough: self.passthrough.clone(),
                ..SourceInfo::none(self.width, self.height, 0)
            };
        }
        SourceInfo {
            kind: "rpicam",
            device: Some(format!("csi:{}", self.camera)),
            card: Some(self.sensor.clone()),
            format: "YU12",
            fps: f64::from(self.fps),
            why: format!(
                "rpicam-vid --codec yuv420 {}x{} ({} ISP, row stride {})",
                self.width, self.height, self.isp, self.stride
            ),
            full_range: self.full_range,
            ..SourceInfo::none(self.width, self.height, 0)
        }
    }

    /// [`RpicamSource::next_frame`] (or, for H.264, [`RpicamSource::next_chunk`])
    /// as the capture loop reads sources.
    pub fn next(&mut self, frame: &mut RawFrame) -> Result<Delivery, CaptureError> {
        if self.codec == Codec::H264 {
            return Ok(Delivery::Coded(self.next_chunk()?));
        }
        self.next_frame(frame)?;
        Ok(Delivery::Picture)
    }

    /// The H.264 mode's next piece of the stream: what the probe read first,
    /// then whatever one read of the pipe gives (up to 64 KiB), stamped when
    /// it arrived. Access units are found downstream (`encode::passthrough`).
    pub fn next_chunk(&mut self) -> Result<CodedChunk, RpicamError> {
        if self.codec != Codec::H264 {
            return Err(RpicamError::Unsupported(
                "this rpicam-vid writes YUV420 frames, not H.264".into(),
            ));
        }
        if let Some(chunk) = self.pending.pop_front() {
            return Ok(chunk);
        }
        // The probe read the first frames already: the first-frame grace
        // is over.
        self.read_chunk(FRAME_TIMEOUT)
    }

    /// One read of the H.264 pipe, waiting at most `timeout` for it.
    fn read_chunk(&mut self, timeout: Duration) -> Result<CodedChunk, RpicamError> {
        let Some(stdout) = self.stdout.as_mut() else {
            return Err(self.exited());
        };
        let n = match read_some(stdout, &mut self.buf, timeout) {
            Ok(n) => n,
            Err(ReadError::Eof) => return Err(self.exited()),
            Err(ReadError::Stalled) => return Err(RpicamError::Stalled(timeout)),
            Err(ReadError::Io(e)) => return Err(RpicamError::Io(e)),
        };
        let captured = Instant::now();
        let stamp_ms = unix_ms(SystemTime::now());
        self.check_configuration()?;
        self.frames += 1;
        Ok(CodedChunk {
            data: self.buf[..n].to_vec(),
            end_of_unit: false,
            captured,
            stamp_ms,
        })
    }

    /// Blocks for the next frame and writes it into `frame` as limited-range
    /// I420, stamped with the time it arrived (rpicam-vid's pipe carries no
    /// capture time; the frame left the ISP a few milliseconds earlier).
    pub fn next_frame(&mut self, frame: &mut RawFrame) -> Result<(), RpicamError> {
        if self.codec == Codec::H264 {
            return Err(RpicamError::Unsupported(
                "this rpicam-vid writes H.264, not YUV420 frames".into(),
            ));
        }
        let timeout = if self.frames == 0 {
            FIRST_FRAME_TIMEOUT
        } else {
            FRAME_TIMEOUT
        };
        let Some(stdout) = self.stdout.as_mut() else {
            return Err(self.exited());
        };
        match read_frame(stdout, &mut self.buf, timeout) {
            Ok(()) => {}
            Err(ReadError::Eof) => return Err(self.exited()),
            Err(ReadError::Stalled) => return Err(RpicamError::Stalled(timeout)),
            Err(ReadError::Io(e)) => return Err(RpicamError::Io(e)),
        }
        let now = SystemTime::now();
        let captured = Instant::now();
        self.check_configuration()?;
        let range = if self.full_range {
            &FULL_TO_LIMITED
        } else {
            &IDENTITY
        };
        // The buffer is always frame_len(stride, h): this cannot fail.
        unpad_i420(
            &self.buf,
            self.width,
            self.height,
            self.stride,
            range,
            frame,
        );
        frame.captured = captured;
        frame.stamp_ms = unix_ms(now);
        self.frames += 1;
        Ok(())
    }

    /// What libcamera said it configured, checked against what was asked.
    fn check_configuration(&mut self) -> Result<(), RpicamError> {
        let configured = self.shared.lock().map(|d| d.configured).unwrap_or_default();
        let Some(c) = configured else {
            return Ok(());
        };
        let want = (self.width as u32, self.height as u32);
        if (c.width, c.height) != want {
            return Err(RpicamError::Adjusted {
                want,
                got: (c.width, c.height),
            });
        }
        // The YUV420 range decides the conversion; H.264 is not converted.
        if let (Some(full), Codec::Yuv420) = (c.full_range, self.codec) {
            self.full_range = full;
        }
        Ok(())
    }

    /// The error for a child that closed its output: its status once it
    /// has exited (killed if it lingers), and its last lines.
    fn exited(&mut self) -> RpicamError {
        self.stdout = None;
        let status = match self.exit {
            Some(s) => s,
            None => match wait_timeout(&mut self.child, STOP_GRACE) {
                Ok(Some(s)) => s,
                _ => stop_group(&mut self.child),
            },
        };
        self.exit = Some(status);
        // The last lines may still be on their way through the stderr thread.
        if let Some(thread) = &self.stderr_thread {
            let until = Instant::now() + Duration::from_millis(300);
            while !thread.is_finished() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let stderr_tail = self
            .shared
            .lock()
            .map(|d| Vec::from(d.tail.clone()).join("\n"))
            .unwrap_or_default();
        RpicamError::Exited {
            status: status.to_string(),
            stderr_tail,
        }
    }
}

impl Drop for RpicamSource {
    /// Stops the child and reaps it: no zombie, and no orphan holding the
    /// camera (which would make the next open fail with "device busy").
    fn drop(&mut self) {
        self.stop_child();
    }
}

impl RpicamSource {
    fn stop_child(&mut self) {
        // SIGTERM first, with the pipe still open: closing it first would
        // race the signal (the child's next write fails with EPIPE and it
        // exits as if rtcam had crashed). A write it is blocked in is
        // interrupted by the signal either way.
        if self.exit.is_none() {
            self.exit = Some(stop_group(&mut self.child));
        } else {
            // The leader is gone; anything it left in its group goes too.
            signal_group(&self.child, libc::SIGKILL);
        }
        self.stdout = None;
        // The stderr thread ends at EOF; it is not joined, so a stray
        // holder of the pipe cannot hang the caller.
        self.stderr_thread = None;
    }

    /// rpicam-vid's image options as controls, with the values set.
    pub fn controls(&self) -> Vec<CameraControl> {
        controls::rpicam_controls(&self.spawn.options)
    }

    /// rpicam-vid takes its options only when it starts: several options
    /// with one restart (about a second without frames on a Pi), and none
    /// when the arguments stay the same. `checked` holds each one's
    /// check. A restart that fails fails them all.
    pub fn set_controls(
        &mut self,
        batch: &[(String, i64)],
        checked: Vec<Result<i64, ControlError>>,
    ) -> Vec<Result<(), ControlError>> {
        let before = self.spawn.options.clone();
        for ((id, _), c) in batch.iter().zip(&checked) {
            if let Ok(v) = c {
                self.spawn.options.insert(id.clone(), *v);
            }
        }
        let changed = controls::rpicam_args(&self.spawn.options) != controls::rpicam_args(&before);
        let restarted = if changed { self.restart() } else { Ok(()) };
        batch
            .iter()
            .zip(checked)
            .map(|((id, _), c)| {
                let _ = c?;
                restarted.as_ref().map_err(|e| ControlError::Failed {
                    id: id.clone(),
                    why: e.to_string(),
                })?;
                Ok(())
            })
            .collect()
    }

    fn restart(&mut self) -> Result<(), RpicamError> {
        self.stop_child();
        let (mut child, shared, stderr_thread) = self.spawn.start()?;
        self.stdout = child.stdout.take();
        self.child = child;
        self.exit = None;
        self.shared = shared;
        self.stderr_thread = stderr_thread;
        self.pending.clear();
        self.frames = 0;
        tracing::info!(
            "rpicam-vid restarted with {}",
            controls::rpicam_args(&self.spawn.options).join(" ")
        );
        if self.codec == Codec::H264 {
            self.probe_h264()?;
        }
        Ok(())
    }
}
