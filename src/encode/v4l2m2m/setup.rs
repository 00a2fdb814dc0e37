//! Everything before the first frame, as dev-encoder.rst orders it: caps,
//! the coded format then the raw one (whose layout, stride and aligned
//! height, says where a frame's bytes go), frame rate, controls, buffers.
//!
//! A required control the driver refuses fails the open; an optional one
//! is warned about once and skipped.

use std::io;
use std::sync::Mutex;

use v4l2_sys_mit as sys;

use super::device::{Device, PIX_FMT_H264, PIX_FMT_NV12, PIX_FMT_YUV420, PixFormat, Queue};
use super::error::{M2mError, ioctl_error};
use crate::encode::{EncodeError, EncoderSettings, PERIODIC_KEYFRAME_SECONDS, level};
use crate::frame::RawFrame;

/// The smallest coded buffer we accept: a 1080p IDR at a high bitrate can
/// pass 512 KiB (bcm2835-codec's own default for 720p and below).
pub(super) const CODED_BUFFER_MIN: u32 = 512 * 1024;

// --- formats and layout -----------------------------------------------------

pub(super) fn fourcc_name(code: u32) -> String {
    code.to_le_bytes().iter().map(|&b| b as char).collect()
}

fn fourcc_list(codes: &[u32]) -> String {
    if codes.is_empty() {
        return "none".into();
    }
    codes
        .iter()
        .map(|&c| fourcc_name(c))
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe(f: &PixFormat) -> String {
    format!(
        "{} {}x{} ({} plane(s), bytesperline {}, sizeimage {})",
        fourcc_name(f.fourcc),
        f.width,
        f.height,
        f.planes,
        f.bytesperline,
        f.sizeimage
    )
}

/// Where the driver wants the raw frame's bytes in one OUTPUT buffer: the
/// luma rows at its stride over its (possibly aligned) height, then the
/// chroma where its single-plane layout puts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Layout {
    fourcc: u32,
    stride: usize,
    rows: usize,
}

impl Layout {
    /// Checks what S_FMT returned: our format, our width, at least our
    /// height, one plane, a stride that holds a row.
    fn new(asked: &PixFormat, got: &PixFormat) -> Result<Self, M2mError> {
        let fits = got.fourcc == asked.fourcc
            && got.width == asked.width
            && got.height >= asked.height
            && got.planes == 1
            && got.bytesperline >= asked.width
            && (got.fourcc != PIX_FMT_YUV420 || got.bytesperline.is_multiple_of(2));
        if !fits {
            return Err(M2mError::FormatRefused {
                queue: Queue::Output.name(),
                asked: describe(asked),
                got: describe(got),
            });
        }
        Ok(Layout {
            fourcc: got.fourcc,
            stride: got.bytesperline as usize,
            rows: got.height as usize,
        })
    }

    fn luma_size(&self) -> usize {
        self.stride * self.rows
    }

    /// One chroma plane of YU12: half the stride, half the rows.
    fn chroma_plane(&self) -> usize {
        (self.stride / 2) * (self.rows / 2)
    }

    /// Bytes of one frame in this layout.
    pub(super) fn size(&self) -> usize {
        match self.fourcc {
            PIX_FMT_NV12 => self.luma_size() + self.stride * (self.rows / 2),
            _ => self.luma_size() + 2 * self.chroma_plane(),
        }
    }

    /// Copies an I420 frame row by row into `dst`; returns the bytes used.
    pub(super) fn copy(&self, frame: &RawFrame, dst: &mut [u8]) -> Result<usize, M2mError> {
        let size = self.size();
        if dst.len() < size {
            return Err(M2mError::BufferTooSmall {
                queue: Queue::Output.name(),
                have: dst.len(),
                need: size,
            });
        }
        let (y, u, v) = frame.planes();
        let (w, h) = (frame.width, frame.height);
        let (luma, chroma) = dst[..size].split_at_mut(self.luma_size());
        copy_plane(y, w, h, luma, self.stride);
        if self.fourcc == PIX_FMT_NV12 {
            interleave(u, v, w / 2, h / 2, chroma, self.stride);
        } else {
            let (cu, cv) = chroma.split_at_mut(self.chroma_plane());
            copy_plane(u, w / 2, h / 2, cu, self.stride / 2);
            copy_plane(v, w / 2, h / 2, cv, self.stride / 2);
        }
        Ok(size)
    }
}

/// `rows` rows of `width` bytes from a tight plane into one of `stride`.
fn copy_plane(src: &[u8], width: usize, rows: usize, dst: &mut [u8], stride: usize) {
    for (s, d) in src
        .chunks_exact(width)
        .take(rows)
        .zip(dst.chunks_mut(stride))
    {
        d[..width].copy_from_slice(s);
    }
}

/// NV12's chroma: U and V rows interleaved byte by byte at `stride`.
fn interleave(u: &[u8], v: &[u8], width: usize, rows: usize, dst: &mut [u8], stride: usize) {
    let rows_in = u.chunks_exact(width).zip(v.chunks_exact(width)).take(rows);
    for ((ur, vr), d) in rows_in.zip(dst.chunks_mut(stride)) {
        for (pair, (&a, &b)) in d[..2 * width].chunks_exact_mut(2).zip(ur.iter().zip(vr)) {
            pair[0] = a;
            pair[1] = b;
        }
    }
}

// --- controls -------------------------------------------------------------

/// One codec control set at open. A required one the driver refuses fails
/// the open; an optional one is warned about once and skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Control {
    name: &'static str,
    id: u32,
    value: i32,
    required: bool,
}

/// The V4L2 menu value of an H.264 level_idc.
fn v4l2_level(level_idc: u8) -> u32 {
    match level_idc {
        10 => sys::v4l2_mpeg_video_h264_level_V4L2_MPEG_VIDEO_H264_LEVEL_1_0,
        11 => sys::v4l2_mpeg_video_h264_level_V4L2_MPEG_VIDEO_H264_LEVEL_1_1,
        12 => sys::v4l2_mpeg_video_h264_level_V4L2_MPEG_VIDEO_H264_LEVEL_1_2,
        13 => sys::v4l2_mpeg_video_h264_level_V4L2_MPEG_VIDEO_H264_LEVEL_1_3,
        20 => sys::v4l2_mpeg_video_h264_level_V4L2_MPEG_VIDEO_H264_LEVEL_2_0,
        21 => sys::v4l2_mpeg_video_h264_level_V4L2_MPEG_VIDEO_H264_LEVEL_2_1,
        22 => sys::v4l2_mpeg_video_h264_level_V4L2_MPEG_VIDEO_H264_LEVEL_2_2,
        30 => sys::v4l2_mpeg_video_h264_level_V4L2_MPEG_VIDEO_H264_LEVEL_3_0,
        31 => sys::v4l2_mpeg_video_h264_level_V4L2_MPEG_VIDEO_H264_LEVEL_3_1,
        32 => sys::v4l2_mpeg_video_h264_level_V4L2_MPEG_VIDEO_H264_LEVEL_3_2,
        40 => sys::v4l2_mpeg_video_h264_level_V4L2_MPEG_VIDEO_H264_LEVEL_4_0,
        41 => sys::v4l2_mpeg_video_h264_level_V4L2_MPEG_VIDEO_H264_LEVEL_4_1,
        42 => sys::v4l2_mpeg_video_h264_level_V4L2_MPEG_VIDEO_H264_LEVEL_4_2,
        50 => sys::v4l2_mpeg_video_h264_level_V4L2_MPEG_VIDEO_H264_LEVEL_5_0,
        51 => sys::v4l2_mpeg_video_h264_level_V4L2_MPEG_VIDEO_H264_LEVEL_5_1,
        _ => sys::v4l2_mpeg_video_h264_level_V4L2_MPEG_VIDEO_H264_LEVEL_5_2,
    }
}

pub(super) fn bitrate_bps(kbps: u32) -> i32 {
    kbps.saturating_mul(1000).min(i32::MAX as u32) as i32
}

/// The controls set at open. Profile and bitrate are required: the answer
/// promises constrained baseline, and without a bitrate the congestion
/// control has no handle. Level, I-period and repeated headers are
/// optional: the probe reads the level from the SPS the encoder really
/// writes, a driver default period still gives keyframes, and missing
/// headers on an IDR are put back from the last SPS/PPS seen.
fn controls(s: &EncoderSettings, level_idc: u8) -> [Control; 5] {
    let period = s.fps.max(1).saturating_mul(PERIODIC_KEYFRAME_SECONDS);
    [
        Control {
            name: "H264_PROFILE",
            id: sys::V4L2_CID_MPEG_VIDEO_H264_PROFILE,
            value:
                sys::v4l2_mpeg_video_h264_profile_V4L2_MPEG_VIDEO_H264_PROFILE_CONSTRAINED_BASELINE
                    as i32,
            required: true,
        },
        Control {
            name: "H264_LEVEL",
            id: sys::V4L2_CID_MPEG_VIDEO_H264_LEVEL,
            value: v4l2_level(level_idc) as i32,
            required: false,
        },
        Control {
            name: "BITRATE",
            id: sys::V4L2_CID_MPEG_VIDEO_BITRATE,
            value: bitrate_bps(s.bitrate_kbps),
            required: true,
        },
        Control {
            name: "H264_I_PERIOD",
            id: sys::V4L2_CID_MPEG_VIDEO_H264_I_PERIOD,
            value: period.min(i32::MAX as u32) as i32,
            required: false,
        },
        Control {
            name: "REPEAT_SEQ_HEADER",
            id: sys::V4L2_CID_MPEG_VIDEO_REPEAT_SEQ_HEADER,
            value: 1,
            required: false,
        },
    ]
}

/// Warns once per process about an optional setting the driver refused:
/// the encoder is reopened each time viewers come back.
fn warn_once(key: u32, what: &str, err: &io::Error) {
    static WARNED: Mutex<Vec<u32>> = Mutex::new(Vec::new());
    let first = WARNED.lock().map_or(true, |mut seen| {
        let first = !seen.contains(&key);
        if first {
            seen.push(key);
        }
        first
    });
    if first {
        tracing::warn!("v4l2m2m: the driver refused {what} ({err}); going on without it");
    }
}

/// An answer that means "this driver does not do that" rather than "broken".
fn is_refusal(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::ENOTTY | libc::ERANGE)
    )
}

fn apply_controls(dev: &mut dyn Device, list: &[Control]) -> Result<(), M2mError> {
    for c in list {
        match dev.set_control(c.id, c.value) {
            Ok(()) => {}
            Err(e) if !c.required && is_refusal(&e) => warn_once(c.id, c.name, &e),
            Err(source) => {
                return Err(M2mError::ControlRefused {
                    control: c.name,
                    value: c.value,
                    source,
                });
            }
        }
    }
    Ok(())
}

// --- negotiation ----------------------------------------------------------

fn check_caps(dev: &mut dyn Device) -> Result<(), M2mError> {
    let caps = dev.querycap().map_err(ioctl_error("VIDIOC_QUERYCAP"))?;
    let want = sys::V4L2_CAP_VIDEO_M2M_MPLANE | sys::V4L2_CAP_STREAMING;
    if caps.caps & want != want {
        return Err(M2mError::NotAnEncoder {
            driver: caps.driver,
            card: caps.card,
            caps: caps.caps,
        });
    }
    Ok(())
}

/// The coded format first, as dev-encoder.rst orders it; bcm2835 also takes
/// the coded size from it.
fn negotiate_capture(dev: &mut dyn Device, s: &EncoderSettings) -> Result<(), M2mError> {
    let offered = dev
        .enum_formats(Queue::Capture)
        .map_err(ioctl_error("VIDIOC_ENUM_FMT(CAPTURE)"))?;
    if !offered.contains(&PIX_FMT_H264) {
        return Err(M2mError::NoH264 {
            offered: fourcc_list(&offered),
        });
    }
    let asked = PixFormat {
        fourcc: PIX_FMT_H264,
        width: s.width,
        height: s.height,
        bytesperline: 0,
        sizeimage: CODED_BUFFER_MIN.max(s.width.saturating_mul(s.height) / 2),
        planes: 1,
    };
    let got = dev
        .set_format(Queue::Capture, &asked)
        .map_err(ioctl_error("VIDIOC_S_FMT(CAPTURE)"))?;
    if got.fourcc != PIX_FMT_H264 || got.planes != 1 {
        return Err(M2mError::FormatRefused {
            queue: Queue::Capture.name(),
            asked: describe(&asked),
            got: describe(&got),
        });
    }
    if got.sizeimage < CODED_BUFFER_MIN {
        return Err(M2mError::BufferTooSmall {
            queue: Queue::Capture.name(),
            have: got.sizeimage as usize,
            need: CODED_BUFFER_MIN as usize,
        });
    }
    Ok(())
}

/// YU12 (our own layout, a plain copy) when offered, else NV12.
fn negotiate_output(dev: &mut dyn Device, s: &EncoderSettings) -> Result<Layout, M2mError> {
    let offered = dev
        .enum_formats(Queue::Output)
        .map_err(ioctl_error("VIDIOC_ENUM_FMT(OUTPUT)"))?;
    let fourcc = [PIX_FMT_YUV420, PIX_FMT_NV12]
        .into_iter()
        .find(|f| offered.contains(f))
        .ok_or_else(|| M2mError::InputFormatRefused {
            offered: fourcc_list(&offered),
        })?;
    let asked = PixFormat {
        fourcc,
        width: s.width,
        height: s.height,
        bytesperline: s.width,
        sizeimage: 0,
        planes: 1,
    };
    let got = dev
        .set_format(Queue::Output, &asked)
        .map_err(ioctl_error("VIDIOC_S_FMT(OUTPUT)"))?;
    Layout::new(&asked, &got)
}

/// REQBUFS and mmap of every buffer; each must hold `need` bytes.
pub(super) fn setup_queue(
    dev: &mut dyn Device,
    q: Queue,
    count: u32,
    need: usize,
) -> Result<usize, M2mError> {
    let call = match q {
        Queue::Output => "VIDIOC_REQBUFS(OUTPUT)",
        Queue::Capture => "VIDIOC_REQBUFS(CAPTURE)",
    };
    let granted = dev.request_buffers(q, count).map_err(ioctl_error(call))? as usize;
    if granted == 0 {
        return Err(M2mError::NoBuffers { queue: q.name() });
    }
    for index in 0..granted {
        let len = dev
            .map_buffer(q, index)
            .map_err(ioctl_error("VIDIOC_QUERYBUF/mmap"))?;
        if len < need {
            return Err(M2mError::BufferTooSmall {
                queue: q.name(),
                have: len,
                need,
            });
        }
    }
    Ok(granted)
}

/// Caps, coded then raw format, frame rate and controls: everything before
/// the buffers. Returns where a frame's bytes go.
pub(super) fn configure(d: &mut dyn Device, s: &EncoderSettings) -> Result<Layout, EncodeError> {
    let level_idc = level::level_idc(s.width, s.height, s.fps)
        .ok_or(EncodeError::NoLevel(s.width, s.height, s.fps))?;
    let even = |n: u32| n > 0 && n.is_multiple_of(2);
    if !even(s.width) || !even(s.height) {
        return Err(M2mError::BadSize {
            width: s.width,
            height: s.height,
        }
        .into());
    }
    check_caps(d)?;
    negotiate_capture(d, s)?;
    let layout = negotiate_output(d, s)?;
    if let Err(e) = d.set_frame_rate(s.fps.max(1)) {
        warn_once(0, "the frame rate (VIDIOC_S_PARM)", &e);
    }
    apply_controls(d, &controls(s, level_idc))?;
    // Without it a joining viewer waits for the periodic IDR.
    require_control(
        d,
        sys::V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME,
        "FORCE_KEY_FRAME",
    )?;
    Ok(layout)
}

/// A control used later, checked now without side effects (QUERYCTRL).
fn require_control(d: &mut dyn Device, id: u32, control: &'static str) -> Result<(), M2mError> {
    if d.has_control(id).map_err(ioctl_error("VIDIOC_QUERYCTRL"))? {
        Ok(())
    } else {
        Err(M2mError::MissingControl { control })
    }
}
