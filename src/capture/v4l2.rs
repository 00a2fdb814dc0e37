//! A V4L2 camera through mmap streaming.
//!
//! We negotiate one of the raw formats we can turn into I420 cheaply (YU12,
//! NV12, YUYV), at the requested size or the nearest one the device offers,
//! and set the frame rate explicitly: many drivers (vivid among them)
//! default to 5 fps. H.264 passthrough will be another `Source` variant.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use v4l::buffer::Type;
use v4l::capability::Flags;
use v4l::io::mmap::Stream;
use v4l::io::traits::CaptureStream;
use v4l::video::Capture;
use v4l::video::capture::Parameters;
use v4l::{Device, Format, FourCC};

use super::CaptureError;
use super::pattern::unix_ms;
use crate::frame::RawFrame;

/// Raw formats we convert, best first (YU12 needs no conversion at all).
const PREFERRED: [PixelFormat; 3] = [PixelFormat::Yu12, PixelFormat::Nv12, PixelFormat::Yuyv];

/// Few buffers: every queued buffer is a frame of latency when we fall behind.
const BUFFERS: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    Yuyv,
    Nv12,
    Yu12,
}

impl PixelFormat {
    fn fourcc(self) -> FourCC {
        FourCC::new(match self {
            PixelFormat::Yuyv => b"YUYV",
            PixelFormat::Nv12 => b"NV12",
            PixelFormat::Yu12 => b"YU12",
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            PixelFormat::Yuyv => "YUYV",
            PixelFormat::Nv12 => "NV12",
            PixelFormat::Yu12 => "YU12",
        }
    }
}

pub struct V4l2Source {
    path: PathBuf,
    card: String,
    format: PixelFormat,
    width: usize,
    height: usize,
    stride: usize,
    fps: f64,
    stream: Stream<'static>,
    // Keeps the file descriptor open for the stream's lifetime.
    _device: Device,
}

impl V4l2Source {
    pub fn open(path: &Path, width: u32, height: u32, fps: u32) -> Result<Self, CaptureError> {
        let open_err = |source| CaptureError::Open {
            path: path.to_path_buf(),
            source,
        };
        let device = Device::with_path(path).map_err(open_err)?;
        let caps = device.query_caps().map_err(open_err)?;
        if !caps.capabilities.contains(Flags::VIDEO_CAPTURE)
            || !caps.capabilities.contains(Flags::STREAMING)
        {
            return Err(CaptureError::NotCapture(path.to_path_buf()));
        }
        let offered: Vec<FourCC> = device
            .enum_formats()
            .map_err(open_err)?
            .into_iter()
            .map(|d| d.fourcc)
            .collect();
        let Some(format) = PREFERRED
            .into_iter()
            .find(|f| offered.contains(&f.fourcc()))
        else {
            return Err(CaptureError::NoFormat {
                path: path.to_path_buf(),
                offered: offered.iter().map(|f| f.to_string()).collect(),
            });
        };
        let sizes: Vec<(u32, u32)> = device
            .enum_framesizes(format.fourcc())
            .unwrap_or_default()
            .into_iter()
            .flat_map(|s| s.size.to_discrete())
            .map(|d| (d.width, d.height))
            .collect();
        let (w, h) = nearest_size(&sizes, (width, height)).unwrap_or((width, height));
        let want = Format::new(w, h, format.fourcc());
        let got = device.set_format(&want).map_err(open_err)?;
        if got.fourcc != format.fourcc() || got.width % 2 != 0 || got.height % 2 != 0 {
            return Err(CaptureError::Unsupported(format!(
                "{} accepted {}x{} {} instead of {}x{} {}",
                path.display(),
                got.width,
                got.height,
                got.fourcc,
                w,
                h,
                format.name()
            )));
        }
        let fps_got = match device.set_params(&Parameters::with_fps(fps)) {
            Ok(p) if p.interval.numerator > 0 => {
                p.interval.denominator as f64 / p.interval.numerator as f64
            }
            _ => 0.0,
        };
        let min_stride = match format {
            PixelFormat::Yuyv => got.width * 2,
            _ => got.width,
        };
        let mut stream = Stream::with_buffers(&device, Type::VideoCapture, BUFFERS)
            .map_err(|e| CaptureError::Busy(path.to_path_buf(), e))?;
        // A camera that stops delivering must surface as an error, not a hang.
        stream.set_timeout(Duration::from_secs(3));
        let source = V4l2Source {
            path: path.to_path_buf(),
            card: caps.card,
            format,
            width: got.width as usize,
            height: got.height as usize,
            stride: got.stride.max(min_stride) as usize,
            fps: fps_got,
            stream,
            _device: device,
        };
        if (got.width, got.height) != (width, height) {
            tracing::warn!(
                "{} offers no {width}x{height}; using the nearest size {}x{}",
                path.display(),
                got.width,
                got.height
            );
        }
        Ok(source)
    }

    pub fn size(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    pub fn info(&self) -> super::SourceInfo {
        super::SourceInfo {
            kind: "v4l2",
            device: Some(self.path.display().to_string()),
            card: Some(self.card.clone()),
            format: self.format.name(),
            width: self.width,
            height: self.height,
            fps: self.fps,
        }
    }

    pub fn pixel_format(&self) -> PixelFormat {
        self.format
    }

    pub fn next_frame(&mut self, frame: &mut RawFrame) -> Result<(), CaptureError> {
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
        let data = &buf[..used];
        frame.width = self.width;
        frame.height = self.height;
        frame
            .data
            .resize(RawFrame::i420_len(self.width, self.height), 0);
        let ok = match self.format {
            PixelFormat::Yu12 => yu12_to_i420(data, self.width, self.height, self.stride, frame),
            PixelFormat::Nv12 => nv12_to_i420(data, self.width, self.height, self.stride, frame),
            PixelFormat::Yuyv => yuyv_to_i420(data, self.width, self.height, self.stride, frame),
        };
        if !ok {
            return Err(CaptureError::ShortBuffer {
                got: used,
                width: self.width,
                height: self.height,
            });
        }
        frame.captured = Instant::now() - age;
        frame.stamp_ms = unix_ms(SystemTime::now() - age);
        Ok(())
    }
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
