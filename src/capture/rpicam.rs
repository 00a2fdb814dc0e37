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

/// The tool's names, preferred first: Bookworm and later ship `rpicam-vid`
/// (with `libcamera-vid` as a legacy alias), Bullseye only `libcamera-vid`.
const TOOLS: [&str; 2] = ["rpicam-vid", "libcamera-vid"];
/// `--list-cameras` configures every sensor mode to report its frame rate:
/// a second or so on a Pi. A wedged camera stack must not hang the caller.
const LIST_TIMEOUT: Duration = Duration::from_secs(10);
/// Camera start-up (sensor power-up, AGC/AWB convergence) before frame one.
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// A running camera that sends nothing for this long is stuck.
const FRAME_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a child gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(1);
/// How long the H.264 probe reads at open for an SPS and a few slices: the
/// first frame can take a second on a Pi (sensor start, AGC/AWB).
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// What the probe keeps at most (delivered first, so the first IDR is not
/// lost): far more than the few frames it needs, and a bound on memory.
const PROBE_MAX_BYTES: usize = 8 * 1024 * 1024;
const PROBE_MAX_CHUNKS: usize = 4096;
/// The most one read of the H.264 pipe takes (the pipe's own buffer size).
const CHUNK_BYTES: usize = 64 * 1024;
/// Lines of the child's stderr kept for the error that reports its exit.
const STDERR_TAIL: usize = 12;
/// The driver name in a CSI camera's identity (see `capture::find`).
const DRIVER: &str = super::find::CSI_DRIVER;

/// A camera as `rpicam-vid --list-cameras` describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct CsiCamera {
    /// What `--camera` takes.
    pub index: u32,
    /// libcamera's model name, e.g. `imx708`, `imx708_wide`, `imx477`.
    pub sensor: String,
    /// The sensor's own modes as listed: width, height and maximum frame
    /// rate (NaN where the tool printed none, as versions before mid-2022 did).
    pub modes: Vec<(u32, u32, f64)>,
    /// The libcamera camera id in parentheses, e.g.
    /// `/base/soc/i2c0mux/i2c@1/imx708@1a`.
    pub path: String,
}

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

/// The ISP that lays out rpicam-vid's buffers, which decides the row stride.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isp {
    /// VideoCore IV (`bcm2835-isp`): Pi Zero, 1, 2, 3, 4 and their CMs.
    Vc4,
    /// PiSP (`pispbe` behind the RP1 `rp1-cfe`): Pi 5 and CM5.
    Pisp,
}

impl Isp {
    /// The ISP of this machine, found as rpicam-apps finds its platform
    /// (`core/options.cpp` `get_platform` asks each `/dev/video*` for its
    /// card name): here from the node names in sysfs, else the device
    /// tree's SoC. VC4 when neither says, which is also what the test
    /// stand-in pads for.
    pub fn detect() -> Isp {
        static DETECTED: OnceLock<Isp> = OnceLock::new();
        *DETECTED.get_or_init(|| {
            Isp::from_video_names(&video_node_names())
                .or_else(|| {
                    let compatible = std::fs::read("/proc/device-tree/compatible");
                    Isp::from_compatible(&compatible.unwrap_or_default())
                })
                .unwrap_or(Isp::Vc4)
        })
    }

    /// From V4L2 node names (`/sys/class/video4linux/*/name`): the ISP's own
    /// nodes, or the CSI receiver that comes with it.
    fn from_video_names(names: &[String]) -> Option<Isp> {
        let has = |prefix: &str| names.iter().any(|n| n.trim().starts_with(prefix));
        if has("pispbe") || has("rp1-cfe") {
            Some(Isp::Pisp)
        } else if has("bcm2835-isp") || has("unicam") {
            Some(Isp::Vc4)
        } else {
            None
        }
    }

    /// From the device tree's NUL-separated `compatible` list.
    fn from_compatible(compatible: &[u8]) -> Option<Isp> {
        let text = String::from_utf8_lossy(compatible);
        let socs: Vec<&str> = text.split('\0').collect();
        if socs.contains(&"brcm,bcm2712") {
            Some(Isp::Pisp)
        } else if socs.iter().any(|s| {
            [
                "brcm,bcm2835",
                "brcm,bcm2836",
                "brcm,bcm2837",
                "brcm,bcm2711",
            ]
            .contains(s)
        }) {
            Some(Isp::Vc4)
        } else {
            None
        }
    }
}

impl std::fmt::Display for Isp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Isp::Vc4 => "VC4",
            Isp::Pisp => "PiSP",
        })
    }
}

fn video_node_names() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/sys/class/video4linux") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("name")).ok())
        .collect()
}

/// Bytes per luma row of rpicam-vid's YUV420 at `width`; each chroma row
/// is half of it.
///
/// - VC4: the bcm2835-isp driver sets `bytesperline = ALIGN(width, 64)` for
///   YUV420, so that both chroma planes start 32-byte aligned (raspberrypi/linux
///   `bcm2835-isp-fmts.h`, PR #4419; rpicam-apps issue #188: 780 wide comes
///   out 832; issue #151: 4056x3040 frames are 4096*3040*1.5 bytes).
/// - PiSP: libcamera aligns the chroma stride to 64 (libpisp
///   `compute_optimal_stride`) and makes the luma stride twice that
///   (`pisp.cpp` `computeOptimalStride`), i.e. `2 * ALIGN(width/2, 64)`:
///   1296 wide is 1408 here but 1344 on VC4.
///
/// No rows are added: the buffer is `stride * height * 3/2` bytes on both.
pub fn yuv420_stride(isp: Isp, width: usize) -> usize {
    match isp {
        Isp::Vc4 => width.next_multiple_of(64),
        Isp::Pisp => 2 * (width / 2).next_multiple_of(64),
    }
}

/// Bytes of one frame on the pipe.
fn frame_len(stride: usize, height: usize) -> usize {
    stride * height + 2 * (stride / 2) * (height / 2)
}

/// The arguments rtcam runs rpicam-vid with: raw YUV420 to stdout, no
/// preview window, no time limit, each frame flushed as it is written (the
/// default stdio buffering would hold back the end of every frame).
pub fn video_args(camera: u32, width: u32, height: u32, fps: u32) -> Vec<String> {
    let mut args = common_args(camera, width, height, fps);
    args.extend(["--codec", "yuv420"].map(String::from));
    args.extend(OUTPUT_ARGS.map(String::from));
    args
}

/// The arguments for the hardware encoder's H.264, to be passed through:
/// SPS and PPS before every IDR (`--inline`: a viewer can start at any
/// IDR), an IDR every second (`--intra fps`: rpicam-vid takes no keyframe
/// requests, so a new viewer waits at most that long), the baseline
/// profile (no B-frames, which WebRTC cannot carry) at level 4.1 (the
/// encoder takes 4, 4.1 and 4.2 only; rpicam-vid raises it to 4.2 by
/// itself above 4.1's macroblock rate).
pub fn h264_args(camera: u32, width: u32, height: u32, fps: u32) -> Vec<String> {
    let mut args = common_args(camera, width, height, fps);
    let intra = fps.max(1).to_string();
    args.extend(
        [
            "--codec",
            "h264",
            "--inline",
            "--intra",
            &intra,
            "--profile",
            "baseline",
            "--level",
            "4.1",
        ]
        .map(String::from),
    );
    args.extend(OUTPUT_ARGS.map(String::from));
    args
}

/// No time limit, no preview window, each frame flushed, to stdout.
const OUTPUT_ARGS: [&str; 6] = ["--timeout", "0", "--nopreview", "--flush", "--output", "-"];

fn common_args(camera: u32, width: u32, height: u32, fps: u32) -> Vec<String> {
    vec![
        "--camera".into(),
        camera.to_string(),
        "--width".into(),
        width.to_string(),
        "--height".into(),
        height.to_string(),
        "--framerate".into(),
        fps.to_string(),
    ]
}

/// rpicam-vid (else libcamera-vid) on `PATH`.
pub fn tool() -> Option<PathBuf> {
    find_tool(std::env::var_os("PATH").as_deref())
}

fn find_tool(path: Option<&OsStr>) -> Option<PathBuf> {
    let path = path?;
    TOOLS.iter().find_map(|name| {
        std::env::split_paths(path)
            .map(|dir| dir.join(name))
            .find(|p| is_executable(p))
    })
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The cameras `rpicam-vid --list-cameras` reports.
pub fn list_cameras() -> Result<Vec<CsiCamera>, RpicamError> {
    let tool = tool().ok_or(RpicamError::NoTool)?;
    list_cameras_with(&tool, &[], LIST_TIMEOUT)
}

/// `list_cameras` with a given tool, extra environment and time limit.
fn list_cameras_with(
    tool: &Path,
    envs: &[(&str, &str)],
    timeout: Duration,
) -> Result<Vec<CsiCamera>, RpicamError> {
    let mut child = spawn_piped(
        Command::new(tool)
            .arg("--list-cameras")
            .envs(envs.iter().copied()),
    )?;
    let stdout = read_all_in_thread(child.stdout.take());
    let stderr = read_all_in_thread(child.stderr.take());
    let status = match wait_timeout(&mut child, timeout) {
        Ok(Some(status)) => status,
        Ok(None) => {
            stop_group(&mut child);
            return Err(RpicamError::Timeout(timeout));
        }
        Err(e) => {
            stop_group(&mut child);
            return Err(RpicamError::Io(e));
        }
    };
    // Anything the tool left in its group would hold the pipes open.
    signal_group(&child, libc::SIGKILL);
    let text = stdout.join().unwrap_or_default();
    let err = stderr.join().unwrap_or_default();
    if !status.success() {
        return Err(RpicamError::Exited {
            status: status.to_string(),
            stderr_tail: tail_of(&err),
        });
    }
    Ok(parse_camera_list(&String::from_utf8_lossy(&text)))
}

fn read_all_in_thread(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut out);
        }
        out
    })
}

fn tail_of(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(STDERR_TAIL)..].join("\n")
}

/// Parses `--list-cameras` output (rpicam-apps `core/options.cpp`):
///
/// ```text
/// Available cameras
/// -----------------
/// 0 : imx708 [4608x2592 10-bit RGGB] (/base/axi/pcie@120000/rp1/i2c@88000/imx708@1a)
///     Modes: 'SRGGB10_CSI2P' : 1536x864 [120.13 fps - (768, 432)/3072x1728 crop]
///                              2304x1296 [56.03 fps - (0, 0)/4608x2592 crop]
/// ```
///
/// Older versions print `[4608x2592]` alone, and sizes without the
/// bracket (`1332x990 2028x1080`); "No cameras available!" gives none.
/// Lines it does not know (the `-v` control list, log lines) are skipped.
pub fn parse_camera_list(text: &str) -> Vec<CsiCamera> {
    let mut cameras: Vec<CsiCamera> = Vec::new();
    let mut in_modes = false;
    for line in text.lines() {
        if let Some(camera) = parse_camera_line(line) {
            cameras.push(camera);
            in_modes = false;
            continue;
        }
        let trimmed = line.trim();
        let Some(camera) = cameras.last_mut() else {
            continue;
        };
        let modes = if let Some(rest) = trimmed.strip_prefix("Modes:") {
            in_modes = true;
            rest
        } else if in_modes
            && line.starts_with(' ')
            && trimmed.starts_with(|c: char| c == '\'' || c.is_ascii_digit())
        {
            trimmed
        } else {
            in_modes = false;
            continue;
        };
        camera.modes.extend(parse_modes(modes));
    }
    cameras
}

/// `0 : imx708 [4608x2592 10-bit RGGB] (/base/...)`.
fn parse_camera_line(line: &str) -> Option<CsiCamera> {
    let (index, rest) = line.split_once(" : ")?;
    let index = index.parse().ok()?;
    let (head, path) = rest.trim_end().strip_suffix(')')?.rsplit_once(" (")?;
    // With no properties to show the tool overwrites the '[' with ']'.
    let sensor = match head.find(" [") {
        Some(i) => &head[..i],
        None => head.trim_end_matches(']'),
    };
    let sensor = sensor.trim();
    (!sensor.is_empty()).then(|| CsiCamera {
        index,
        sensor: sensor.to_string(),
        modes: Vec::new(),
        path: path.to_string(),
    })
}

/// One line of modes: an optional `'FORMAT' :`, then sizes each with an
/// optional `[fps fps - crop]` (or `(fps fps)`).
fn parse_modes(line: &str) -> Vec<(u32, u32, f64)> {
    let mut s = line.trim_start();
    if let Some(quoted) = s.strip_prefix('\'') {
        match quoted
            .split_once('\'')
            .and_then(|(_, r)| r.trim_start().strip_prefix(':'))
        {
            Some(rest) => s = rest,
            None => return Vec::new(),
        }
    }
    let mut modes = Vec::new();
    loop {
        s = s.trim_start_matches([' ', ',']);
        let end = s.find([' ', ',', '[', '(']).unwrap_or(s.len());
        let Some((w, h)) = parse_size(&s[..end]) else {
            return modes;
        };
        s = s[end..].trim_start();
        let mut fps = f64::NAN;
        if let Some(close) = s.chars().next().and_then(|c| match c {
            '[' => Some(']'),
            '(' => Some(')'),
            _ => None,
        }) {
            let inside_end = s.find(close).unwrap_or(s.len());
            let inside = &s[1..inside_end];
            fps = inside
                .split_whitespace()
                .next()
                .and_then(|f| f.parse().ok())
                .unwrap_or(f64::NAN);
            s = s.get(inside_end + 1..).unwrap_or("");
        }
        modes.push((w, h, fps));
    }
}

fn parse_size(token: &str) -> Option<(u32, u32)> {
    let (w, h) = token.split_once('x')?;
    Some((w.parse().ok()?, h.parse().ok()?))
}

/// What libcamera's log (the child's stderr) says about the stream:
/// `configuring streams: (0) 640x360-YUV420/sYCC (1) ...`. The colour space
/// suffix is there in newer libcamera only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Configured {
    width: u32,
    height: u32,
    /// `Some(true)` for sYCC, `Some(false)` for the limited-range video
    /// colour spaces, `None` when the line does not say.
    full_range: Option<bool>,
}

fn parse_configured(line: &str) -> Option<Configured> {
    let (_, rest) = line.split_once("configuring streams: (0) ")?;
    let stream = rest.split_whitespace().next()?;
    let (size, format) = stream.split_once('-')?;
    let (width, height) = parse_size(size)?;
    let full_range = format.split_once('/').and_then(|(_, cs)| match cs {
        "sYCC" | "JPEG" => Some(true),
        "SMPTE170M" | "Rec709" | "Rec2020" => Some(false),
        _ => None,
    });
    Some(Configured {
        width,
        height,
        full_range,
    })
}

/// What the stderr thread learnt, shared with the reader.
#[derive(Debug, Default)]
struct Diagnostics {
    tail: VecDeque<String>,
    configured: Option<Configured>,
}

type Shared = Arc<Mutex<Diagnostics>>;

/// Full-range to limited-range tables (`Y' = 16 + Y*219/255`,
/// `C' = 128 + (C-128)*224/255`, rounded), as `capture::mjpeg` converts.
struct Range {
    y: [u8; 256],
    c: [u8; 256],
}

impl Range {
    const fn full_to_limited() -> Range {
        Range {
            y: super::range::luma_table(),
            c: super::range::chroma_table(),
        }
    }

    const fn identity() -> Range {
        let mut t = [0u8; 256];
        let mut i = 0;
        while i < 256 {
            t[i] = i as u8;
            i += 1;
        }
        Range { y: t, c: t }
    }
}

static FULL_TO_LIMITED: Range = Range::full_to_limited();
static IDENTITY: Range = Range::identity();

/// Copies one padded frame (`stride` per luma row, `stride/2` per chroma
/// row) into `out` as tight I420 at `w`x`h`, each sample through `range`.
/// False when `src` is too short.
fn unpad_i420(
    src: &[u8],
    w: usize,
    h: usize,
    stride: usize,
    range: &Range,
    out: &mut RawFrame,
) -> bool {
    let cs = stride / 2;
    if stride < w || src.len() < frame_len(stride, h) {
        return false;
    }
    out.width = w;
    out.height = h;
    out.data.resize(RawFrame::i420_len(w, h), 0);
    let (y, u, v) = out.planes_mut();
    let (cw, ch) = (w / 2, h / 2);
    let (src_y, src_c) = src.split_at(stride * h);
    let (src_u, src_v) = src_c.split_at(cs * ch);
    copy_plane(src_y, stride, y, w, &range.y);
    copy_plane(src_u, cs, u, cw, &range.c);
    copy_plane(src_v, cs, v, cw, &range.c);
    true
}

fn copy_plane(src: &[u8], stride: usize, dst: &mut [u8], width: usize, table: &[u8; 256]) {
    if width == 0 {
        return;
    }
    for (row, line) in src.chunks(stride).zip(dst.chunks_exact_mut(width)) {
        for (d, &s) in line.iter_mut().zip(&row[..width]) {
            *d = table[usize::from(s)];
        }
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

/// Starts the tool in a process group of its own (so stopping it stops
/// what it started), stdout and stderr piped, no stdin.
fn spawn_piped(cmd: &mut Command) -> Result<Child, RpicamError> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(RpicamError::Spawn)
}

/// How rpicam-vid is started: the tool, its environment, rtcam's
/// arguments and the image options viewers set.
struct Spawn {
    tool: PathBuf,
    envs: Vec<(String, String)>,
    args: Vec<String>,
    options: BTreeMap<String, i64>,
}

impl Spawn {
    fn start(&self) -> Result<(Child, Shared, Option<JoinHandle<()>>), RpicamError> {
        let mut child = spawn_piped(
            Command::new(&self.tool)
                .args(&self.args)
                .args(controls::rpicam_args(&self.options))
                .envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        )?;
        let shared = Shared::default();
        let stderr_thread = child
            .stderr
            .take()
            .map(|e| forward_stderr(e, tool_name(&self.tool), shared.clone()));
        Ok((child, shared, stderr_thread))
    }
}

/// The log prefix: the tool's file name.
fn tool_name(tool: &Path) -> String {
    tool.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "rpicam-vid".into())
}

/// Forwards each line of the child's stderr to the log, keeping the last
/// few for errors and noting what libcamera configured.
fn forward_stderr(stderr: ChildStderr, name: String, shared: Shared) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stderr);
        let mut raw = Vec::new();
        loop {
            raw.clear();
            match reader.read_until(b'\n', &mut raw) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let line = String::from_utf8_lossy(&raw);
            let line = line.trim_end();
            if line.is_empty() {
                continue;
            }
            if line.contains("ERROR") || line.contains(" WARN ") {
                tracing::warn!("{name}: {line}");
            } else {
                tracing::info!("{name}: {line}");
            }
            let Ok(mut d) = shared.lock() else { break };
            if let Some(c) = parse_configured(line) {
                d.configured = Some(c);
            }
            if d.tail.len() == STDERR_TAIL {
                d.tail.pop_front();
            }
            d.tail.push_back(line.to_string());
        }
    })
}

enum ReadError {
    Eof,
    Stalled,
    Io(std::io::Error),
}

/// Fills `buf` from the pipe, giving up when `timeout` passes first.
fn read_frame(src: &mut ChildStdout, buf: &mut [u8], timeout: Duration) -> Result<(), ReadError> {
    let deadline = Instant::now() + timeout;
    let mut filled = 0;
    while filled < buf.len() {
        filled += read_before(src, &mut buf[filled..], deadline)?;
    }
    Ok(())
}

/// One read of what the pipe has (at least a byte, at most `buf.len()`),
/// giving up when `timeout` passes first.
fn read_some(src: &mut ChildStdout, buf: &mut [u8], timeout: Duration) -> Result<usize, ReadError> {
    read_before(src, buf, Instant::now() + timeout)
}

/// Waits (poll) until the pipe is readable or `deadline`, then reads once.
fn read_before(
    src: &mut ChildStdout,
    buf: &mut [u8],
    deadline: Instant,
) -> Result<usize, ReadError> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadError::Stalled);
        }
        let mut pfd = libc::pollfd {
            fd: src.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: poll(2) on one valid pollfd that lives across the call.
        let ready = unsafe { libc::poll(&mut pfd, 1, ms) };
        if ready < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(ReadError::Io(e));
        }
        if ready == 0 {
            continue;
        }
        match src.read(buf) {
            Ok(0) => return Err(ReadError::Eof),
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
}

/// Waits for the child up to `timeout`; `None` if it is still running.
fn wait_timeout(child: &mut Child, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
    let until = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= until {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// SIGTERM to the child's group, SIGKILL after [`STOP_GRACE`], then reaps it.
fn stop_group(child: &mut Child) -> ExitStatus {
    signal_child_and_group(child, libc::SIGTERM);
    if let Ok(Some(status)) = wait_timeout(child, STOP_GRACE) {
        return status;
    }
    signal_child_and_group(child, libc::SIGKILL);
    match child.wait() {
        Ok(status) => status,
        // Only if it was reaped already (it cannot be: try_wait would have
        // said). A stand-in status keeps the error path simple.
        Err(_) => std::os::unix::process::ExitStatusExt::from_raw(libc::SIGKILL),
    }
}

/// Signals the child's process group (it leads one: `process_group(0)`).
/// Safe after the child was reaped: a group outlives its leader.
fn signal_group(child: &Child, signal: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) with a negative pid signals that process group;
        // ESRCH (already gone) is fine.
        unsafe { libc::kill(-pid, signal) };
    }
}

/// [`signal_group`], and the child itself, which is not reaped yet (so its
/// pid is still ours): a child that never got as far as its setpgid (a
/// fork that hung before exec: qemu-user's did once in CI) leads no group,
/// and signalling only the group left `child.wait()` waiting forever.
fn signal_child_and_group(child: &Child, signal: libc::c_int) {
    signal_group(child, signal);
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) on our unreaped child; ESRCH is fine.
        unsafe { libc::kill(pid, signal) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::stripe;

    /// Pi 5, Camera Module 3 (the stand-in's default answer).
    const IMX708: &str = "Available cameras
-----------------
0 : imx708 [4608x2592 10-bit RGGB] (/base/axi/pcie@120000/rp1/i2c@88000/imx708@1a)
    Modes: 'SRGGB10_CSI2P' : 1536x864 [120.13 fps - (768, 432)/3072x1728 crop]
                             2304x1296 [56.03 fps - (0, 0)/4608x2592 crop]
                             4608x2592 [14.35 fps - (0, 0)/4608x2592 crop]

";

    /// raspberrypi/documentation PR #2587 (libcamera-apps, 2022): two
    /// cameras, two formats for the first.
    const IMX219_IMX477: &str = "Available cameras
-----------------
0 : imx219 [3280x2464] (/base/soc/i2c0mux/i2c@1/imx219@10)
    Modes: 'SRGGB10_CSI2P' : 640x480 [206.65 fps - (1000, 752)/1280x960 crop]
                             1640x1232 [41.85 fps - (0, 0)/3280x2464 crop]
                             1920x1080 [47.57 fps - (680, 692)/1920x1080 crop]
                             3280x2464 [21.19 fps - (0, 0)/3280x2464 crop]
           'SRGGB8' : 640x480 [206.65 fps - (1000, 752)/1280x960 crop]
                      1640x1232 [41.85 fps - (0, 0)/3280x2464 crop]
                      1920x1080 [47.57 fps - (680, 692)/1920x1080 crop]
                      3280x2464 [21.19 fps - (0, 0)/3280x2464 crop]

1 : imx477 [4056x3040] (/base/soc/i2c0mux/i2c@1/imx477@1a)
    Modes: 'SRGGB10_CSI2P' : 1332x990 [120.05 fps - (696, 528)/2664x1980 crop]
           'SRGGB12_CSI2P' : 2028x1080 [50.03 fps - (0, 440)/4056x2160 crop]
                             2028x1520 [40.01 fps - (0, 0)/4056x3040 crop]
                             4056x3040 [10.00 fps - (0, 0)/4056x3040 crop]

";

    /// raspberrypi/linux PR #6208: an HQ camera on a Pi 5 with `-v`, the
    /// control list after the modes.
    const IMX477_PI5_VERBOSE: &str = "Available cameras
-----------------
0 : imx477 [4056x3040 12-bit RGGB] (/base/axi/pcie@1000120000/rp1/i2c@80000/imx477@1a)
    Modes: 'SRGGB10_CSI2P' : 1332x990 [169.87 fps - (696, 528)/2664x1980 crop]
           'SRGGB12_CSI2P' : 2028x1080 [105.95 fps - (0, 440)/4056x2160 crop]
                             2028x1520 [75.36 fps - (0, 0)/4056x3040 crop]
                             4056x2160 [27.48 fps - (0, 440)/4056x3040 crop]
                             4056x3040 [19.53 fps - (0, 0)/4056x3040 crop]

    Available controls for 4056x3040 SRGGB12_CSI2P mode:
    ----------------------------------------------------
    AeEnable : [false..true]
    ScalerCrop : [(0, 0)/64x64..(0, 0)/4056x3040]

";

    /// rpicam-apps issue #215 (libcamera-apps, December 2021): no rates.
    const IMX477_2021: &str = "Available cameras
-----------------
0 : imx477 [4056x3040] (/base/soc/i2c0mux/i2c@1/imx477@1a)
    Modes: 'SRGGB10_CSI2P' : 1332x990 
           'SRGGB12_CSI2P' : 2028x1080 2028x1520 4056x3040
";

    fn sizes(c: &CsiCamera) -> Vec<(u32, u32)> {
        c.modes.iter().map(|&(w, h, _)| (w, h)).collect()
    }

    #[test]
    fn parses_a_camera_module_3() {
        let cams = parse_camera_list(IMX708);
        assert_eq!(
            cams,
            vec![CsiCamera {
                index: 0,
                sensor: "imx708".into(),
                modes: vec![
                    (1536, 864, 120.13),
                    (2304, 1296, 56.03),
                    (4608, 2592, 14.35)
                ],
                path: "/base/axi/pcie@120000/rp1/i2c@88000/imx708@1a".into(),
            }]
        );
    }

    #[test]
    fn parses_two_cameras_and_formats() {
        let cams = parse_camera_list(IMX219_IMX477);
        assert_eq!(cams.len(), 2);
        assert_eq!((cams[0].index, cams[0].sensor.as_str()), (0, "imx219"));
        assert_eq!(cams[0].path, "/base/soc/i2c0mux/i2c@1/imx219@10");
        assert_eq!(cams[0].modes.len(), 8, "both formats' modes, as listed");
        assert_eq!(cams[0].modes[0], (640, 480, 206.65));
        assert_eq!(cams[0].modes[7], (3280, 2464, 21.19));
        assert_eq!((cams[1].index, cams[1].sensor.as_str()), (1, "imx477"));
        assert_eq!(
            sizes(&cams[1]),
            [(1332, 990), (2028, 1080), (2028, 1520), (4056, 3040)]
        );
        assert_eq!(cams[1].modes[3].2, 10.0);
    }

    #[test]
    fn skips_the_control_list_and_reads_old_output() {
        let cams = parse_camera_list(IMX477_PI5_VERBOSE);
        assert_eq!(cams.len(), 1);
        assert_eq!(cams[0].sensor, "imx477");
        assert_eq!(cams[0].modes.len(), 5, "{:?}", cams[0].modes);
        assert_eq!(cams[0].modes[0], (1332, 990, 169.87));

        let old = parse_camera_list(IMX477_2021);
        assert_eq!(
            sizes(&old[0]),
            [(1332, 990), (2028, 1080), (2028, 1520), (4056, 3040)]
        );
        assert!(old[0].modes.iter().all(|m| m.2.is_nan()), "no rates listed");
    }

    #[test]
    fn no_cameras_and_noise_give_none() {
        assert!(parse_camera_list("No cameras available!\n").is_empty());
        assert!(parse_camera_list("").is_empty());
        let log =
            "[0:01:43.688918622] [2074]  INFO Camera camera_manager.cpp:284 libcamera v0.2.0\n";
        assert!(parse_camera_list(log).is_empty());
        // A camera without properties: the tool turns "[" into "]".
        let bare = parse_camera_list("0 : ov5647] (/base/soc/i2c0mux/i2c@1/ov5647@36)\n");
        assert_eq!(bare[0].sensor, "ov5647");
    }

    #[test]
    fn stride_follows_each_isp() {
        for (w, vc4, pisp) in [
            (640, 640, 640),
            (1280, 1280, 1280),
            (1920, 1920, 1920),
            (1296, 1344, 1408),
            (1332, 1344, 1408),
            (800, 832, 896),
            (780, 832, 896),
            (2028, 2048, 2048),
            (4056, 4096, 4096),
            (100, 128, 128),
        ] {
            assert_eq!(yuv420_stride(Isp::Vc4, w), vc4, "VC4 at {w}");
            assert_eq!(yuv420_stride(Isp::Pisp, w), pisp, "PiSP at {w}");
        }
        // rpicam-apps issue #151: 4056x3040 frames of 18677760 bytes.
        assert_eq!(frame_len(yuv420_stride(Isp::Vc4, 4056), 3040), 18_677_760);
    }

    #[test]
    fn detects_the_isp() {
        let names = |n: &[&str]| n.iter().map(|s| format!("{s}\n")).collect::<Vec<_>>();
        assert_eq!(
            Isp::from_video_names(&names(&["unicam-image", "bcm2835-isp-capture0"])),
            Some(Isp::Vc4)
        );
        assert_eq!(
            Isp::from_video_names(&names(&["rp1-cfe-fe_image0", "pispbe-output0"])),
            Some(Isp::Pisp)
        );
        assert_eq!(Isp::from_video_names(&names(&["vivid-000-vid-cap"])), None);
        assert_eq!(
            Isp::from_compatible(b"raspberrypi,5-model-b\0brcm,bcm2712\0"),
            Some(Isp::Pisp)
        );
        assert_eq!(
            Isp::from_compatible(b"raspberrypi,4-model-b\0brcm,bcm2711\0"),
            Some(Isp::Vc4)
        );
        assert_eq!(Isp::from_compatible(b"qemu,virt\0"), None);
    }

    #[test]
    fn unpads_and_converts_full_range() {
        // 4x2, stride 8: luma rows then U and V rows of stride 4.
        let src = [
            0, 255, 128, 1, 9, 9, 9, 9, //
            2, 3, 4, 5, 9, 9, 9, 9, //
            0, 255, 9, 9, //
            128, 64, 9, 9,
        ];
        let mut f = RawFrame::black(2, 2);
        assert!(unpad_i420(&src, 4, 2, 8, &FULL_TO_LIMITED, &mut f));
        assert_eq!((f.width, f.height), (4, 2));
        let (y, u, v) = f.planes();
        assert_eq!(y, &[16, 235, 126, 17, 18, 19, 19, 20]);
        assert_eq!(u, &[16, 240]);
        assert_eq!(v, &[128, 72]);
        assert!(!unpad_i420(&src[..20], 4, 2, 8, &FULL_TO_LIMITED, &mut f));
        assert!(unpad_i420(&src, 4, 2, 8, &IDENTITY, &mut f));
        assert_eq!(f.planes().0, &[0, 255, 128, 1, 2, 3, 4, 5]);
        // The tables are monotonic and end where limited range ends.
        let r = &FULL_TO_LIMITED;
        assert!(r.y.windows(2).all(|p| p[0] <= p[1]) && r.c.windows(2).all(|p| p[0] <= p[1]));
        assert_eq!(
            (r.y[0], r.y[255], r.c[0], r.c[128], r.c[255]),
            (16, 235, 16, 128, 240)
        );
    }

    #[test]
    fn parses_what_libcamera_configured() {
        let old = "[0:00:01.1] [2667]  INFO Camera camera.cpp:1202 configuring streams: (0) 3280x2464-YUV420 (1) 3280x2464-BGGR_PISP_COMP1";
        assert_eq!(
            parse_configured(old),
            Some(Configured {
                width: 3280,
                height: 2464,
                full_range: None
            })
        );
        let new = "INFO Camera camera.cpp:1215 configuring streams: (0) 640x360-YUV420/sYCC (1) 1536x864-BGGR_PISP_COMP1/RAW";
        assert_eq!(parse_configured(new).and_then(|c| c.full_range), Some(true));
        let video = "configuring streams: (0) 1280x720-YUV420/Rec709 (1) 2304x1296-SBGGR10_CSI2P";
        assert_eq!(
            parse_configured(video).and_then(|c| c.full_range),
            Some(false)
        );
        assert_eq!(parse_configured("Mode selection for 640:360:12:P"), None);
    }

    #[test]
    fn the_command_line() {
        assert_eq!(
            video_args(1, 640, 360, 30).join(" "),
            "--camera 1 --width 640 --height 360 --framerate 30 --codec yuv420 \
             --timeout 0 --nopreview --flush --output -"
        );
    }

    #[test]
    fn the_h264_command_line() {
        assert_eq!(
            h264_args(0, 1280, 720, 30).join(" "),
            "--camera 0 --width 1280 --height 720 --framerate 30 --codec h264 --inline \
             --intra 30 --profile baseline --level 4.1 \
             --timeout 0 --nopreview --flush --output -"
        );
        // One IDR a second at any rate.
        let args = h264_args(1, 640, 480, 15);
        let intra = args.iter().position(|a| a == "--intra").unwrap();
        assert_eq!(args[intra + 1], "15");
        assert_eq!(h264_args(0, 640, 480, 0)[intra + 1], "1");
    }

    #[test]
    fn finds_the_tool_on_a_path() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake-rpicam");
        let path = std::env::join_paths(["/nonexistent".into(), dir.clone()]).unwrap();
        assert_eq!(find_tool(Some(&path)), Some(dir.join("rpicam-vid")));
        assert_eq!(find_tool(Some(OsStr::new("/nonexistent"))), None);
        assert_eq!(find_tool(None), None);
    }

    // ------------------------------------------------ against the stand-in

    fn fake() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake-rpicam/rpicam-vid")
    }

    fn want(width: u32, height: u32, fps: u32) -> Want {
        Want {
            width,
            height,
            fps,
            format: CaptureFormat::Auto,
        }
    }

    fn open_fake(
        isp: Isp,
        envs: &[(&str, &str)],
        camera: u32,
        want: &Want,
    ) -> Result<RpicamSource, RpicamError> {
        let tool = fake();
        let launch = Launch {
            tool: &tool,
            isp,
            envs,
        };
        RpicamSource::open_with(&launch, camera, want)
    }

    fn temp_log(name: &str) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("rtcam-rpicam-{}-{name}.log", std::process::id()));
        let _ = std::fs::remove_file(&path);
        path
    }

    fn gone(pid: u32) -> bool {
        !Path::new(&format!("/proc/{pid}")).exists()
    }

    /// The stand-in's background: full-range `(x + y + 4n) % 256` below the
    /// stripe in frame `n`, U a ramp across.
    fn expected_luma(x: usize, y: usize, n: usize) -> u8 {
        FULL_TO_LIMITED.y[(x + y + 4 * n) % 256]
    }

    fn check_frame(f: &RawFrame, n: usize, before_ms: u64) {
        let (w, h) = (f.width, f.height);
        let (y, u, _) = f.planes();
        let d = stripe::decode_luma(y, w, h, w).expect("the stripe decodes");
        assert!(
            d.stamp_ms >= before_ms && d.stamp_ms <= f.stamp_ms,
            "{d:?} {}",
            f.stamp_ms
        );
        assert!(
            f.stamp_ms - d.stamp_ms < 1000,
            "drawn just before it was written"
        );
        // The converted stripe is exactly limited-range white and black.
        assert!(y[..w].iter().all(|&p| p == 16 || p == 235));
        for (px, py) in [(0, 40), (w - 1, 40), (w - 1, h - 1), (w / 3, h / 2)] {
            assert_eq!(
                y[py * w + px],
                expected_luma(px, py, n),
                "Y({px},{py}) of frame {n}"
            );
        }
        let cw = w / 2;
        assert_eq!(
            u[(h / 2 - 1) * cw + cw - 1],
            FULL_TO_LIMITED.c[64 + 96 * (cw - 1) / cw]
        );
        assert_eq!(u[0], 128, "the stripe is achromatic");
    }

    #[test]
    fn reads_stamped_frames_from_the_stand_in() {
        let before = unix_ms(SystemTime::now());
        let mut src = open_fake(Isp::Vc4, &[], 0, &want(640, 360, 30)).expect("opens");
        assert_eq!(src.size(), (640, 360));
        assert!(src.full_range());
        let info = src.info();
        assert_eq!(
            (
                info.kind,
                info.device.as_deref(),
                info.card.as_deref(),
                info.format
            ),
            ("rpicam", Some("csi:0"), Some("imx708"), "YU12")
        );
        assert_eq!(src.identity().bus, "csi:0");
        let mut f = RawFrame::black(2, 2);
        let mut last = 0;
        for n in 0..5 {
            src.next_frame(&mut f).expect("a frame");
            assert_eq!((f.width, f.height), (640, 360));
            check_frame(&f, n, before);
            assert!(f.stamp_ms > last || n == 0);
            last = f.stamp_ms;
        }
    }

    #[test]
    fn unpads_the_pi5_layout() {
        // 800 wide: stride 896 on PiSP (832 on VC4), so wrong unpadding
        // would shear every row and break the stripe and the ramp.
        let before = unix_ms(SystemTime::now());
        let envs = [("RTCAM_FAKE_RPICAM_ISP", "pisp")];
        let mut src = open_fake(Isp::Pisp, &envs, 0, &want(800, 450, 30)).expect("opens");
        assert_eq!(src.stride, 896);
        let mut f = RawFrame::black(2, 2);
        for n in 0..3 {
            src.next_frame(&mut f).expect("a frame");
            check_frame(&f, n, before);
        }
    }

    #[test]
    fn a_crash_is_an_exit_with_its_last_words() {
        let envs = [("RTCAM_FAKE_RPICAM_EXIT_AFTER", "2")];
        let mut src = open_fake(Isp::Vc4, &envs, 0, &want(640, 360, 60)).expect("opens");
        let mut f = RawFrame::black(2, 2);
        src.next_frame(&mut f).expect("frame 1");
        src.next_frame(&mut f).expect("frame 2");
        match src.next_frame(&mut f) {
            Err(RpicamError::Exited {
                status,
                stderr_tail,
            }) => {
                assert!(status.contains('1'), "{status}");
                assert!(stderr_tail.contains("simulated crash"), "{stderr_tail}");
            }
            other => panic!("want Exited, got {:?}", other.err()),
        }
        let err = src.next_frame(&mut f).expect_err("still exited");
        assert!(err.to_string().contains("simulated crash"), "{err}");
        let pid = src.child.id();
        drop(src);
        assert!(gone(pid));
    }

    #[test]
    fn drop_stops_and_reaps_the_child() {
        let log = temp_log("drop");
        let log_s = log.display().to_string();
        let envs = [("RTCAM_FAKE_RPICAM_LOG", log_s.as_str())];
        let mut src = open_fake(Isp::Vc4, &envs, 0, &want(640, 360, 30)).expect("opens");
        let mut f = RawFrame::black(2, 2);
        src.next_frame(&mut f).expect("a frame");
        let pid = src.child.id();
        assert!(!gone(pid));
        let start = Instant::now();
        drop(src);
        assert!(
            start.elapsed() < Duration::from_millis(900),
            "SIGTERM sufficed"
        );
        assert!(gone(pid), "no zombie, no orphan");
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        let mine = format!("\"pid\": {pid}");
        assert!(
            text.lines()
                .any(|l| l.contains(&mine) && l.contains("sigterm")),
            "{text}"
        );
    }

    #[test]
    fn a_missing_camera_is_named() {
        let none = [("RTCAM_FAKE_RPICAM_CAMERAS", "0")];
        match open_fake(Isp::Vc4, &none, 0, &want(640, 360, 30)) {
            Err(RpicamError::NoCamera { index: 0, found: 0 }) => {}
            other => panic!("want NoCamera, got {:?}", other.err()),
        }
        match open_fake(Isp::Vc4, &[], 1, &want(640, 360, 30)) {
            Err(e @ RpicamError::NoCamera { index: 1, found: 1 }) => {
                assert_eq!(
                    e.to_string(),
                    "there is no CSI camera 1: rpicam-vid lists 1"
                );
            }
            other => panic!("want NoCamera, got {:?}", other.err()),
        }
        let two = [("RTCAM_FAKE_RPICAM_CAMERAS", "2")];
        let src = open_fake(Isp::Vc4, &two, 1, &want(640, 480, 30)).expect("camera 1");
        assert_eq!(src.info().card.as_deref(), Some("imx219"));
    }

    #[test]
    fn refuses_what_it_cannot_deliver() {
        let odd = open_fake(Isp::Vc4, &[], 0, &want(641, 360, 30));
        assert!(matches!(odd, Err(RpicamError::BadSize { .. })));
        let mjpeg = Want {
            format: CaptureFormat::Mjpeg,
            ..want(640, 360, 30)
        };
        assert!(matches!(
            open_fake(Isp::Vc4, &[], 0, &mjpeg),
            Err(RpicamError::Unsupported(_))
        ));
    }

    fn want_h264(width: u32, height: u32, fps: u32) -> Want {
        Want {
            format: CaptureFormat::H264,
            ..want(width, height, fps)
        }
    }

    #[test]
    fn the_pi5_is_refused_h264_before_anything_runs() {
        let log = temp_log("pi5-h264");
        let log_s = log.display().to_string();
        let envs = [
            ("RTCAM_FAKE_RPICAM_ISP", "pisp"),
            ("RTCAM_FAKE_RPICAM_LOG", log_s.as_str()),
        ];
        let err = open_fake(Isp::Pisp, &envs, 0, &want_h264(640, 360, 30))
            .err()
            .expect("refused");
        assert!(matches!(err, RpicamError::Unsupported(_)), "{err:?}");
        let text = err.to_string();
        for needle in ["Pi 5", "hardware H.264 encoder", "--capture-format raw"] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
        assert!(!log.exists(), "nothing was started");
        // Raw on the Pi 5 is fine.
        assert!(open_fake(Isp::Pisp, &envs[..1], 0, &want(640, 360, 30)).is_ok());
    }

    /// An openh264 stream like the hardware encoder's: constrained baseline,
    /// SPS and PPS before each IDR, an IDR every `idr_every` frames.
    fn openh264_stream(frames: usize, idr_every: usize) -> Vec<u8> {
        use crate::encode::VideoEncoder;
        let settings = crate::encode::EncoderSettings {
            width: 640,
            height: 360,
            fps: 30,
            bitrate_kbps: 600,
            threads: 1,
            slice_bytes: crate::encode::DEFAULT_SLICE_BYTES,
        };
        let mut enc = crate::encode::openh264::OpenH264::new(settings).unwrap();
        let mut frame = RawFrame::black(640, 360);
        let mut out = Vec::new();
        for n in 0..frames {
            let y = frame.planes_mut().0;
            y[(n % 300) * 640..(n % 300 + 40) * 640].fill(200);
            if let Some(f) = enc.encode(&frame, n % idr_every == 0).unwrap() {
                out.extend_from_slice(&f.data);
            }
        }
        out
    }

    fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
        let path = std::env::temp_dir().join(format!("rtcam-rpicam-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn passes_the_stand_ins_h264_through() {
        use crate::encode::passthrough::Passthrough;
        let file = openh264_stream(20, 10);
        let sps = crate::encode::level::sps_profile_level(&file).unwrap();
        let id = format!("{:02x}{:02x}{:02x}", sps.0, sps.1, sps.2);
        let h264 = temp_file("stream.h264", &file);
        let log = temp_log("h264");
        let (h264_s, log_s) = (h264.display().to_string(), log.display().to_string());
        let envs = [
            ("RTCAM_FAKE_RPICAM_H264", h264_s.as_str()),
            ("RTCAM_FAKE_RPICAM_LOG", log_s.as_str()),
        ];
        let mut src = open_fake(Isp::Vc4, &envs, 0, &want_h264(640, 360, 60)).expect("opens");
        let info = src.info();
        assert_eq!(
            (info.format, info.passthrough.as_deref(), info.full_range),
            ("H264", Some(id.as_str()), false)
        );
        assert!(info.why.contains("--codec h264"), "{}", info.why);
        assert!(!src.full_range());
        let mut frame = RawFrame::black(2, 2);
        assert!(
            src.next_frame(&mut frame).is_err(),
            "no pictures in H.264 mode"
        );
        // The stream from its first byte (the probe's reads come first),
        // looping, cut into access units that start on IDRs.
        let mut got = Vec::new();
        let mut stream = Passthrough::new();
        let (mut units, mut idrs) = (0, 0);
        while got.len() < 2 * file.len() {
            let chunk = match src.next(&mut frame).expect("reads") {
                Delivery::Coded(c) => c,
                other => panic!("want a chunk, got {other:?}"),
            };
            assert!(!chunk.end_of_unit && !chunk.data.is_empty());
            assert!(chunk.data.len() <= CHUNK_BYTES);
            stream.push(&chunk.data);
            got.extend_from_slice(&chunk.data);
            while let Some(au) = stream.next_access_unit() {
                let au = au.expect("a good access unit");
                units += 1;
                idrs += au.keyframe as usize;
            }
        }
        assert_eq!(&got[..file.len()], &file[..], "the file, byte for byte");
        assert_eq!(&got[file.len()..2 * file.len()], &file[..], "looped");
        assert!(units >= 35 && idrs >= 3, "{units} units, {idrs} IDRs");
        let pid = src.child.id();
        drop(src);
        assert!(gone(pid));
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        let _ = std::fs::remove_file(&h264);
        let h264_event: serde_json::Value = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["event"] == "h264")
            .expect("the stand-in logged its H.264 options");
        assert_eq!(h264_event["inline"], true, "{h264_event}");
        assert_eq!(h264_event["intra"], 60, "{h264_event}");
        assert_eq!(h264_event["profile"], "baseline", "{h264_event}");
        assert_eq!(h264_event["level"], "4.1", "{h264_event}");
    }

    #[test]
    fn h264_failures_are_named() {
        use crate::capture::annexb::tests::BitWriter;
        // No encoder (the stand-in without a stream says what the real
        // tool says without /dev/video11).
        match open_fake(Isp::Vc4, &[], 0, &want_h264(640, 360, 30)) {
            Err(RpicamError::Exited { stderr_tail, .. }) => {
                assert!(
                    stderr_tail.contains("failed to open V4L2 H264 encoder"),
                    "{stderr_tail}"
                );
            }
            other => panic!("want Exited, got {:?}", other.err()),
        }
        // B-frames: a main-profile SPS, then I, P, B slices.
        let mut w = BitWriter::default();
        w.u(8, 77)
            .u(8, 0)
            .u(8, 40)
            .ue(0)
            .ue(0)
            .ue(0)
            .ue(0)
            .ue(1)
            .u(1, 0);
        w.ue(39).ue(22).u(1, 1).u(1, 1).u(1, 0).u(1, 0);
        let mut stream = [0, 0, 0, 1].to_vec();
        stream.extend(w.nal(0x67));
        for (header, slice_type) in [(0x65, 7), (0x41, 5), (0x01, 6), (0x41, 5)] {
            let mut w = BitWriter::default();
            w.ue(0).ue(slice_type).ue(0).u(8, 0x5a);
            stream.extend([0, 0, 0, 1]);
            stream.extend(w.nal(header));
        }
        let path = temp_file("bframes.h264", &stream);
        let path_s = path.display().to_string();
        let envs = [("RTCAM_FAKE_RPICAM_H264", path_s.as_str())];
        let result = open_fake(Isp::Vc4, &envs, 0, &want_h264(640, 360, 60));
        let _ = std::fs::remove_file(&path);
        match result {
            Err(e @ RpicamError::Passthrough(_)) => {
                assert!(e.to_string().contains("B-frames"), "{e}");
            }
            other => panic!("want Passthrough, got {:?}", other.err()),
        }
        // A crash after the probe: the pending chunks, then the exit.
        let file = openh264_stream(10, 10);
        let path = temp_file("crash.h264", &file);
        let path_s = path.display().to_string();
        let envs = [
            ("RTCAM_FAKE_RPICAM_H264", path_s.as_str()),
            ("RTCAM_FAKE_RPICAM_EXIT_AFTER", "15"),
        ];
        let mut src = open_fake(Isp::Vc4, &envs, 0, &want_h264(640, 360, 60)).expect("opens");
        let _ = std::fs::remove_file(&path);
        let err = loop {
            match src.next_chunk() {
                Ok(_) => {}
                Err(e) => break e,
            }
        };
        assert!(err.to_string().contains("simulated crash"), "{err}");
    }

    #[test]
    fn a_hung_list_times_out_and_is_killed() {
        let log = temp_log("hang");
        let log_s = log.display().to_string();
        let envs = [
            ("RTCAM_FAKE_RPICAM_HANG", "1"),
            ("RTCAM_FAKE_RPICAM_LOG", log_s.as_str()),
        ];
        let start = Instant::now();
        // Long enough for the stand-in to start and log on a loaded machine
        // (at 500 ms it was once killed before it had written a line).
        let result = list_cameras_with(&fake(), &envs, Duration::from_secs(2));
        assert!(matches!(result, Err(RpicamError::Timeout(_))), "{result:?}");
        assert!(start.elapsed() < Duration::from_secs(6));
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        let start: serde_json::Value = text
            .lines()
            .find_map(|l| serde_json::from_str(l).ok())
            .expect("the stand-in logged its start");
        let pid = start["pid"].as_u64().expect("pid") as u32;
        assert!(gone(pid), "the hung child was killed and reaped");
    }

    #[test]
    fn the_stand_in_parses_like_boost() {
        let run = |args: &[&str]| {
            let out = Command::new(fake()).args(args).output().expect("runs");
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        let (code, err) = run(&["--foo"]);
        assert_eq!(code, Some(255));
        assert!(err.contains("unrecognised option '--foo'"), "{err}");
        let (code, err) = run(&["--width"]);
        assert_eq!(code, Some(255));
        assert!(
            err.contains("the required argument for option '--width' is missing"),
            "{err}"
        );
        let out = Command::new(fake())
            .args(["--list-cameras", "--camera=0", "-t", "0", "-n"])
            .output()
            .expect("runs");
        assert!(out.status.success());
        let cams = parse_camera_list(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(cams, parse_camera_list(IMX708), "the real tool's format");
    }
}
