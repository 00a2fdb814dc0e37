//! What to ask the camera for: its modes as the driver lists them, and
//! `choose`'s pick among them (raw, else MJPEG, else H.264; the size and
//! rate nearest what was asked).

use super::*;

/// Raw formats we convert, best first (YU12 needs no conversion at all).
pub(super) const PREFERRED: [PixelFormat; 3] =
    [PixelFormat::Yu12, PixelFormat::Nv12, PixelFormat::Yuyv];

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
    pub(super) fn of(fourcc: FourCC) -> Option<Kind> {
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

    pub(super) fn rank(self) -> usize {
        match self {
            Kind::Raw(p) => PREFERRED.iter().position(|&q| q == p).unwrap_or(0),
            Kind::Mjpeg => 3,
            Kind::H264 => 4,
        }
    }

    pub(super) fn allowed(self, asked: CaptureFormat) -> bool {
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
pub(super) fn slower_raw(usable: &[&Mode], want: &Want) -> String {
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

/// Every mode the device offers in a format rtcam can use.
pub(super) fn modes(device: &Device) -> std::io::Result<(Vec<Mode>, Vec<String>)> {
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

pub(super) fn fps_of(num: u32, den: u32) -> f64 {
    if num == 0 {
        0.0
    } else {
        den as f64 / num as f64
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
