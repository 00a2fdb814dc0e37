//! The tool itself: where it is, the arguments rtcam gives it, and what it
//! prints (`--list-cameras`, the configured stream).

use super::*;

/// The tool's names, preferred first: Bookworm and later ship `rpicam-vid`
/// (with `libcamera-vid` as a legacy alias), Bullseye only `libcamera-vid`.
pub(super) const TOOLS: [&str; 2] = ["rpicam-vid", "libcamera-vid"];

/// `--list-cameras` configures every sensor mode to report its frame rate:
/// a second or so on a Pi. A wedged camera stack must not hang the caller.
pub(super) const LIST_TIMEOUT: Duration = Duration::from_secs(10);

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
pub(super) const OUTPUT_ARGS: [&str; 6] =
    ["--timeout", "0", "--nopreview", "--flush", "--output", "-"];

pub(super) fn common_args(camera: u32, width: u32, height: u32, fps: u32) -> Vec<String> {
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

pub(super) fn find_tool(path: Option<&OsStr>) -> Option<PathBuf> {
    let path = path?;
    TOOLS.iter().find_map(|name| {
        std::env::split_paths(path)
            .map(|dir| dir.join(name))
            .find(|p| is_executable(p))
    })
}

pub(super) fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The cameras `rpicam-vid --list-cameras` reports.
pub fn list_cameras() -> Result<Vec<CsiCamera>, RpicamError> {
    let tool = tool().ok_or(RpicamError::NoTool)?;
    list_cameras_with(&tool, &[], LIST_TIMEOUT)
}

/// `list_cameras` with a given tool, extra environment and time limit.
pub(super) fn list_cameras_with(
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

pub(super) fn read_all_in_thread(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut out);
        }
        out
    })
}

pub(super) fn tail_of(bytes: &[u8]) -> String {
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
pub(super) fn parse_camera_line(line: &str) -> Option<CsiCamera> {
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
pub(super) fn parse_modes(line: &str) -> Vec<(u32, u32, f64)> {
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

pub(super) fn parse_size(token: &str) -> Option<(u32, u32)> {
    let (w, h) = token.split_once('x')?;
    Some((w.parse().ok()?, h.parse().ok()?))
}

/// What libcamera's log (the child's stderr) says about the stream:
/// `configuring streams: (0) 640x360-YUV420/sYCC (1) ...`. The colour space
/// suffix is there in newer libcamera only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Configured {
    pub(super) width: u32,
    pub(super) height: u32,
    /// `Some(true)` for sYCC, `Some(false)` for the limited-range video
    /// colour spaces, `None` when the line does not say.
    pub(super) full_range: Option<bool>,
}

pub(super) fn parse_configured(line: &str) -> Option<Configured> {
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
